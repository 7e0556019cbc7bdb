"""Reading and writing the project's files: the one way to do it, atomic writes, safe reads, one error naming the file.

Every module reads and writes files through this one (``tests/test_reliability_io.py`` walks the syntax tree of
the package to keep it so): no other module calls ``open(..., "w")``, ``Path.write_*``, ``Path.replace``,
``json.load``, ``yaml.safe_load``, ``np.load``/``np.save`` or ``torch.load``/``torch.save``.

Writes never leave a half-written file or folder under the final name, and never a temporary file
behind when they fail:

- :func:`atomic_path` yields a temporary path beside the destination (same folder, so the rename is
  atomic); on success the file and the folder are fsynced and the file is renamed over the
  destination. Permissions are the usual ``0666 & ~umask`` (0644 under umask 022), not mkstemp's 0600.
  :func:`write_text`, :func:`write_lines`, :func:`write_bytes`, :func:`write_json`, :func:`write_yaml`,
  :func:`save_npy`, :func:`save_npz`, :func:`save_torch`, :func:`save_safetensors`, :func:`save_figure` and
  :func:`atomic_open` (an open handle, for a writer that streams) are built on it.
- :func:`atomic_dir` does the same for a folder (a checkpoint): the new folder is written beside the old
  one and swapped in so that a complete folder exists at every instant: with one atomic
  ``renameat2(RENAME_EXCHANGE)`` on Linux, else with renames (``.NAME.new`` complete -> ``NAME`` moved
  to ``.NAME.old`` -> ``.NAME.new`` renamed in). :func:`recover_dir` finishes an interrupted swap at
  start-up.
- :func:`locked` serialises read-modify-write updates of one file by several processes (results files).
- A write that fails for an OS reason (disk full, read-only file system, permission) raises
  :class:`FileWriteError` naming the destination; the temporary file is removed.

Reads never run code from a file: YAML with the safe loader and no key twice (:func:`read_yaml`,
:func:`parse_yaml`), arrays with ``allow_pickle=False`` (:func:`load_npy`, :func:`load_npz`, :func:`parse_npy`),
PyTorch files with ``weights_only=True`` (:func:`load_torch`); :func:`read_bytes` and :func:`regular_file`
refuse a symbolic link. They raise :class:`FileReadError` whose message starts with the path and says why
(missing, unreadable, not valid YAML, a Python tag, a key given twice, an object array ...). The
``learn2diss`` command prints both as one ``error:`` line.

Example::

    from learn2diss.io import read_yaml, save_npz, write_json
    save_npz("runs/x/kmeans.npz", centroids=centroids)
    write_json("runs/x/done.json", {"step": 4})
    config = read_yaml("runs/x/config.yaml", "run config")
"""

from __future__ import annotations

import collections.abc
import contextlib
import ctypes
import errno
import io
import json
import os
import secrets
import shutil
import stat
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from learn2diss.errors import Learn2DissError

__all__ = [
    "FileReadError", "FileWriteError",
    "atomic_path", "atomic_open", "atomic_dir", "publish_dir", "recover_dir", "remove_temporaries", "locked", "move", "open_append",
    "write_text", "write_lines", "write_bytes", "write_json", "write_yaml", "save_npy", "save_npz", "save_torch",
    "save_safetensors", "save_figure", "npy_bytes",
    "read_text", "read_bytes", "regular_file", "read_json", "parse_json", "read_yaml", "parse_yaml", "load_npy",
    "load_npz", "parse_npy", "load_torch",
]

_TEMP = ".tmp-"  # temporary names: .NAME.tmp-XXXXXXXX


class FileReadError(Learn2DissError, ValueError):
    """A file that cannot be read or parsed; the message starts with its path."""


class FileWriteError(Learn2DissError, OSError):
    """A file or folder that cannot be written (disk full, read-only, permission); the message names it."""


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    return str(err)


def _write_error(path: Path, err: BaseException) -> FileWriteError:
    return FileWriteError(f"{path}: cannot write: {_reason(err)}")


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}{_TEMP}{secrets.token_hex(4)}")


def _fsync(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot fsync a folder
        if not directory or err.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it becomes ``path`` (fsync + rename).

    Write to exactly that path (``numpy.save`` appends ``.npy`` to a path: give it an open file). On any
    failure the temporary file is removed; an ``OSError`` becomes :class:`FileWriteError`.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = _temp_name(target)
            try:  # mode 0666 goes through the umask, like open()
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
                break
            except FileExistsError:
                continue
    except OSError as err:
        raise _write_error(target, err) from None
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent, directory=True)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not isinstance(err, Learn2DissError):
            raise _write_error(target, err) from None
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """An open file (``mode`` ``"w"``: UTF-8 text, or ``"wb"``) for a writer that streams (csv, a tar writer); it
    becomes ``path`` when the block succeeds (:func:`atomic_path`)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode 'w' or 'wb', not {mode!r}")
    text = {"encoding": "utf-8"} if mode == "w" else {}
    with atomic_path(path) as tmp, open(tmp, mode, **(text | kwargs)) as handle:
        yield handle


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Write ``lines``, each followed by a newline, atomically."""
    return write_text(path, "".join(f"{line}\n" for line in lines))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def write_yaml(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` with ``yaml.safe_dump`` (keys in their order) atomically."""
    import yaml

    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def save_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
    return Path(path)


def save_torch(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` atomically. On a full disk torch raises a ``RuntimeError`` ("unexpected pos") while it
    closes the archive; the ``OSError`` behind it (written through a Python file) is what gets reported."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as err:
            cause = err.__context__
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__context__
            if cause is None:
                raise
            raise cause from None
    return Path(path)


def save_safetensors(path: str | os.PathLike[str], tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` atomically; its I/O failures (reported as "os error N") are ``OSError``s,
    so a full disk is a :class:`FileWriteError` naming the file."""
    import re

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as err:
            found = re.search(r"os error (\d+)", str(err))
            if found is None:
                raise
            code = int(found.group(1))
            raise OSError(code, os.strerror(code)) from None
    return Path(path)


def save_figure(path: str | os.PathLike[str], figure: Any, **savefig: Any) -> Path:
    """A matplotlib figure saved atomically, in the format of ``path``'s suffix (``.png``, ``.pdf``, ...)."""
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format=target.suffix.lstrip(".") or "png", **savefig)
    return target


def move(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Rename ``source`` to ``target`` (same file system: atomic, replacing ``target``); errors name both."""
    try:
        os.replace(source, target)
        _fsync(Path(target).parent, directory=True)
    except OSError as err:
        raise FileWriteError(f"{source}: cannot move it to {target}: {_reason(err)}") from None
    return Path(target)


def open_append(path: str | os.PathLike[str]) -> IO[str]:
    """``path`` open for appending lines, for the caller to close: a log such as ``metrics.jsonl`` (not atomic;
    the writer flushes each line, a reader drops a last line cut short). Errors name the file."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return open(target, "a", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    except OSError as err:
        raise _write_error(target, err) from None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _side(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{suffix}")


def _swap_in(complete: Path, target: Path) -> None:
    """Put the complete folder ``complete`` at ``target``; a complete folder exists at every instant."""
    if not target.exists():
        os.rename(complete, target)
    elif _exchange(complete, target):
        _fsync(target.parent, directory=True)
        shutil.rmtree(complete)  # now the old folder
    else:
        new, old = _side(target, "new"), _side(target, "old")
        if complete != new:
            shutil.rmtree(new, ignore_errors=True)
            os.rename(complete, new)
        shutil.rmtree(old, ignore_errors=True)
        _fsync(target.parent, directory=True)
        os.rename(target, old)  # from here to the next rename, .NAME.new and .NAME.old are both complete
        os.rename(new, target)
        _fsync(target.parent, directory=True)
        shutil.rmtree(old)
        return
    _fsync(target.parent, directory=True)


def recover_dir(path: str | os.PathLike[str]) -> None:
    """Finish a folder swap that a crash interrupted: the newest complete copy ends up at ``path``.

    Removes unfinished temporary folders (``.NAME.tmp-*``), moves a complete ``.NAME.new`` in and
    deletes ``.NAME.old``. Call it (one process at a time) before reading or rewriting ``path``.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return
    try:
        for leftover in target.parent.glob(f".{target.name}{_TEMP}*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        new, old = _side(target, "new"), _side(target, "old")
        if new.is_dir():
            _swap_in(new, target)
        elif old.is_dir() and not target.exists():
            os.rename(old, target)
            _fsync(target.parent, directory=True)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise _write_error(target, err) from None


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder), directory=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it replaces ``path``.

    The old folder stays in place until the new one is complete and fsynced; on failure the temporary
    folder is removed and an ``OSError`` becomes :class:`FileWriteError`.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(target)
        tmp = _temp_name(target)
        os.mkdir(tmp)
    except OSError as err:
        raise _write_error(target, err) from None
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_in(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, FileWriteError) and str(err).startswith(str(tmp)):  # name the file by where it goes
            raise FileWriteError(str(target) + str(err)[len(str(tmp)):]) from None
        if isinstance(err, OSError) and not isinstance(err, Learn2DissError):
            raise _write_error(target, err) from None
        raise


def publish_dir(staged: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Swap the complete folder ``staged`` (beside ``path``, same file system) in at ``path``, as
    :func:`atomic_dir` does with its temporary folder: for output built in several runs (a resumable package)."""
    target = Path(path)
    try:
        recover_dir(target)
        _fsync_tree(Path(staged))
        _swap_in(Path(staged), target)
    except OSError as err:
        raise _write_error(target, err) from None
    return target


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of ``path`` (``flock`` on ``.NAME.lock`` beside it).

    Processes that update the same file (two evaluations appending to one results file) take turns; the
    lock is released when the block ends or the process dies. Temporary files of ``path`` that a killed holder
    left (``.NAME.tmp-*``) are removed when the lock is taken.
    """
    import fcntl

    target = Path(path)
    lock = target.with_name(f".{target.name}.lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 - closed below
    except OSError as err:
        raise _write_error(target, err) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            for leftover in target.parent.glob(f".{target.name}{_TEMP}*"):  # a holder that was killed mid-write
                leftover.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files and folders a killed writer left in ``folder`` (``.*.tmp-*``).

    Only for folders one process writes (a run's checkpoints), not a shared results folder.
    """
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for leftover in folder.glob(f".*{_TEMP}*"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` if it is a regular file itself: a symbolic link (to anything) or a special file (a FIFO, a device)
    is refused with :class:`FileReadError`, so a package holds only the files it names, not what a link points at."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise FileReadError(f"{path}: {what} not found") from None
    except OSError as err:
        raise FileReadError(f"{path}: cannot read the {what}: {_reason(err)}") from None
    if stat.S_ISLNK(mode):
        raise FileReadError(f"{path}: the {what} is a symbolic link (to {os.readlink(path)}); refused: copy the file "
                            "itself there")
    if not stat.S_ISREG(mode):
        raise FileReadError(f"{path}: the {what} is not a regular file; refused")
    return path


def read_bytes(path: str | os.PathLike[str], what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (:func:`regular_file`: no link is followed); errors name it."""
    path = regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise FileReadError(f"{path}: cannot read the {what}: {_reason(err)}") from None


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The UTF-8 text of ``path``; missing, unreadable or undecodable is a :class:`FileReadError`."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileReadError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FileReadError(f"{path}: cannot read the {what}: {_reason(err)}") from None


def parse_json(text: str, where: str | os.PathLike[str]) -> Any:
    """Parsed JSON of ``text`` read from ``where`` (a file, a process's output); errors name it and the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FileReadError(f"{where}: not valid JSON ({err})") from None


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parsed JSON of ``path``; errors name the file and the line."""
    return parse_json(read_text(path, what), path)


def _strict_loader() -> type:
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, collections.abc.Hashable) and key in seen:
                    raise DuplicateKeyError(f"{line}: key {key!r} given twice (first on line {seen[key]})")
                if isinstance(key, collections.abc.Hashable):
                    seen[key] = line
            return super().construct_mapping(node, deep)

    return StrictLoader


class DuplicateKeyError(ValueError):
    """Raised inside the YAML loader; :func:`parse_yaml` names the file."""


def parse_yaml(text: str, where: str | os.PathLike[str]) -> Any:
    """The YAML ``text`` read from ``where``: safe types only (a Python tag ``!!python/...`` is refused) and a key
    given twice in one mapping is an error naming ``where``, the line and the key."""
    import yaml

    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as err:
        raise FileReadError(f"{where}:{err}") from None
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        hint = " (Python tags are never loaded)" if "python/" in detail else ""
        raise FileReadError(f"{where}: not valid YAML{hint}: {detail}") from None


def read_yaml(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """The YAML file ``path`` (:func:`parse_yaml`): invalid YAML, a Python tag or a duplicated key names the file."""
    return parse_yaml(read_text(path, what), path)


def _npy_refusal(where: object, err: BaseException, what: str = ".npy array") -> FileReadError:
    reason = "it holds Python objects (a pickled object array), not numbers" if "object" in str(err).lower() \
        else _reason(err)
    return FileReadError(f"{where}: not a readable {what}: {reason}")


def load_npy(path: str | os.PathLike[str], mmap: bool = False) -> Any:
    """A numeric ``.npy`` array (memory-mapped with ``mmap``); pickled object arrays are refused, never loaded."""
    import numpy as np

    path = Path(path)
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise FileReadError(f"{path}: .npy file not found") from None
    except (ValueError, OSError, EOFError) as err:
        raise _npy_refusal(path, err) from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise FileReadError(f"{path}: expected one .npy array, found a .npz archive")
    return array


def npy_bytes(array: Any) -> bytes:
    """``array`` in the ``.npy`` format, as bytes (a member of a tar shard)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def parse_npy(data: bytes, where: str | os.PathLike[str]) -> Any:
    """The numeric array of ``.npy`` bytes read from ``where`` (a tar member); object arrays are refused."""
    import numpy as np

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _npy_refusal(where, err) from None
    if not isinstance(array, np.ndarray):
        raise FileReadError(f"{where}: expected one .npy array, found a .npz archive")
    return array


def save_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """``np.savez`` of ``arrays`` to exactly ``path``, atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)


def load_npz(path: str | os.PathLike[str], *names: str) -> dict[str, Any]:
    """The arrays ``names`` (default: all) of the ``.npz`` archive ``path``, read into memory; object arrays are
    refused, a missing name is an error naming the file."""
    import numpy as np

    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileReadError(f"{path}: .npz file not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise _npy_refusal(path, err, ".npz archive") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FileReadError(f"{path}: expected a .npz archive, found one .npy array")
    with archive:
        missing = [name for name in names if name not in archive.files]
        if missing:
            raise FileReadError(f"{path}: no array {', '.join(missing)} in the .npz archive")
        try:
            return {name: archive[name] for name in names or archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise _npy_refusal(path, err, ".npz archive") from None


def load_torch(path: str | os.PathLike[str], allowed: list | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with the extra ``allowed`` classes: a file that would need arbitrary
    unpickling is refused with :class:`FileReadError` naming it and the class it asks for; nothing in it runs."""
    import pickle
    import re

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileReadError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(allowed or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)|global '?([\w.]+)", str(err))
        what = next((g for g in found.groups() if g), "an object") if found else "an object"
        raise FileReadError(
            f"{path}: refused to load: it asks to construct {what}, which safe loading (weights_only=True) does not "
            "allow; nothing in the file was executed. Re-save the weights as a plain state dict or safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise FileReadError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
