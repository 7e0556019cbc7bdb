"""``learn2diss eval ...`` and ``learn2diss tables`` command modules (thin: parse, call, write results)."""
