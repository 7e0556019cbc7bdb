"""The base of the project's error classes: a problem with the user's input, config or files.

The ``learn2diss`` command prints such an error as one line naming the file or key, without a
traceback (set ``LEARN2DISS_DEBUG=1`` to see it).
"""


class Learn2DissError(Exception):
    """Mixed into every error class that reports bad input rather than a bug."""
