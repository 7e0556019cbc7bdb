"""The project's error classes: a problem with the user's input, config, files or environment, not a bug.

Library code raises a :class:`Learn2DissError` subclass whose message names the file, key or option. The
``learn2diss`` command (:func:`learn2diss.cli.console`) prints such an error as one ``error:`` line and
exits with status 2; any other exception is a bug and keeps its traceback. ``LEARN2DISS_DEBUG=1`` shows the
traceback of a project error too. Only the command-line layer exits (``SystemExit``); library code raises.

Each class also derives from the built-in class a caller would catch (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working. Modules with errors of their own
(:class:`learn2diss.upstream.checkpoints.CheckpointError`, :class:`learn2diss.data.audio.AudioError`, ...)
subclass :class:`Learn2DissError` the same way.

Example::

    if not path.is_file():
        raise MissingInputError(f"{path}: alignment file not found")
"""


class Learn2DissError(Exception):
    """Mixed into every error class that reports bad input rather than a bug."""


class InputError(Learn2DissError, ValueError):
    """A value in a file, an option or the data that the command cannot use; the message names which."""


class UsageError(InputError):
    """Command-line options that do not fit together (one is missing or excludes another)."""


class MissingInputError(Learn2DissError, FileNotFoundError):
    """A file, folder or program the input names does not exist; the message names it."""


class OutputExistsError(Learn2DissError, FileExistsError):
    """The output already exists and the command will not overwrite it; the message names it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with where the command stopped and how to continue (``interrupted at step N; resume with --resume``).

    A ``KeyboardInterrupt``, so nothing that catches ``Exception`` swallows it; the console prints its message as
    one line (exit status 130).
    """
