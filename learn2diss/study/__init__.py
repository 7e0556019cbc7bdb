"""``learn2diss study``: the joint stage over a grid of settings x seeds from one prepared run, evaluated and summarised."""
