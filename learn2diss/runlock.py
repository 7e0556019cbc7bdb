"""One writer per run folder: an exclusive lock on the folder that names its holder.

``with hold(folder):`` takes an exclusive ``flock`` on ``.NAME.lock`` beside ``folder`` and writes into it who
holds it (PID, host, start time, command). A second process that asks for the same folder is refused at once
with :class:`FolderInUseError`, one line naming the holder; it never waits and never writes. The lock file is
removed when the holder leaves the block; a process that was killed leaves it behind, and the next process
takes it over (``flock`` is released by the kernel when its holder dies) with a note naming the dead holder.
Leftover temporary files of a killed write (``.*.tmp-*``) in the folder are removed at that point.

Commands that write a run folder hold it while they run: ``pretrain`` (``--out``), ``export`` (``--out``),
``study`` (``--out``, and each cell's run folder through its ``pretrain``), CTC fine-tuning (its run
folder) and ``superb run`` (``--out``, and each task's run folder, also inside a scheduler job).

On a file system without ``flock`` (``flock`` fails with ``ENOLCK``, ``ENOSYS``, ``EOPNOTSUPP`` or ``EINVAL``:
Lustre mounted without ``-o flock``, some FUSE and old NFS set-ups) the lock falls back to its record alone:
a holder on this host is checked by its PID (a dead one is taken over), a holder on another host cannot be
checked and is refused until its lock file is deleted, and two processes that start at the same instant may
both get the folder.

Example::

    from learn2diss.runlock import hold
    with hold("runs/l2d_w12"):
        ...  # write the run folder
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from learn2diss.errors import Learn2DissError
from learn2diss.io import FileReadError, FileWriteError, parse_json, remove_temporaries

__all__ = ["FolderInUseError", "hold", "lock_path"]

_NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
_HELD: dict[str, int] = {}  # lock files this process holds -> depth (a command may call another on the same folder)


class FolderInUseError(Learn2DissError, RuntimeError):
    """Another process writes the folder; the message names it (PID, host, start time, command)."""


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file of ``folder``: ``.NAME.lock`` beside it (it survives the folder being replaced)."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _describe(record: dict) -> str:
    if not record:
        return "another process (it has not written its name yet)"
    return (f"PID {record.get('pid')} on {record.get('host')} since {record.get('started')} "
            f"({record.get('command')})")


def _read_record(fd: int, path: Path) -> dict:
    text = os.pread(fd, 65536, 0).decode("utf-8", errors="replace").strip()
    try:
        record = parse_json(text, path) if text else {}
    except FileReadError:
        return {"command": f"unreadable lock record {text[:80]!r}"}
    return record if isinstance(record, dict) else {}


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # another user's process, or a record we cannot read: assume it runs
    return True


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in _NO_FLOCK:
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    """The lock file still at ``path`` is the one ``fd`` holds (a leaving holder may have removed it)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _acquire(folder: Path, path: Path, note: Callable[[str], None]) -> int:
    """Open and lock ``path``; returns its descriptor with this process's record written."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            locked = _try_flock(fd)
            record = _read_record(fd, path)
            if locked is False:
                raise FolderInUseError(f"{folder}: in use by {_describe(record)}; wait for it to finish or use "
                                       f"another folder")
            if locked and not _same_file(fd, path):
                os.close(fd)  # its holder removed it while we opened it: start again on the new file
                continue
            if locked is None and record:
                here = record.get("host") == socket.gethostname()
                if not here or _alive(record.get("pid")):
                    where = "" if here else (f"; this file system has no flock, so a holder on another host cannot "
                                             f"be checked: delete {path} if it no longer runs")
                    raise FolderInUseError(f"{folder}: in use by {_describe(record)}{where}")
            if record:
                note(f"note: {folder}: taking over the lock of {_describe(record)}, which ended without releasing it")
            started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                    "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(mine) + "\n").encode(), 0)
            os.fsync(fd)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def hold(folder: str | os.PathLike[str], note: Callable[[str], None] = _stderr) -> Iterator[None]:
    """Be the one writer of ``folder`` for the block (see the module docstring); a second process is refused
    with :class:`FolderInUseError`. Holding a folder this process already holds is allowed (nested commands)."""
    folder = Path(folder)
    path = lock_path(folder)
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(folder, path, note)
    except OSError as err:
        raise FileWriteError(f"{path}: cannot write the lock file of {folder}: {err.strerror or err}") from None
    _HELD[key] = 1
    try:
        remove_temporaries(folder)  # left by a writer that was killed
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a process that opened it meanwhile sees it gone and retries
        os.close(fd)
