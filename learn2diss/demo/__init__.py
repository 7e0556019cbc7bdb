"""The end-to-end demo (``learn2diss demo``, ``make demo``): corpus, parent, two Learn2Diss runs, evaluations, report."""
