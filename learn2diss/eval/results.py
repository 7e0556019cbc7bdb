"""Result rows shared by every evaluation command and read back by ``learn2diss tables``.

Each evaluation appends rows to ``RESULTS_DIR/<eval>.csv`` (one row per model x dataset x condition x
metric). A row carries its provenance: the checkpoint path and a short hash of its weights, the config
name and the date. Files are rewritten atomically under a lock (concurrent evaluations lose no row), and a
row with the same key replaces the old one, so re-running an evaluation updates its numbers instead of
duplicating them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

from learn2diss.errors import InputError, MissingInputError
from learn2diss.io import FileReadError, locked, parse_json, read_text, write_text

# Columns of every results CSV, in order. ``KEY_COLUMNS`` identify a row.
COLUMNS: tuple[str, ...] = (
    "eval", "model", "variant", "dataset", "condition", "metric", "value",
    "features", "checkpoint", "checkpoint_hash", "config", "date", "details", "status",
)
KEY_COLUMNS: tuple[str, ...] = ("eval", "model", "variant", "dataset", "condition", "metric", "features")


@dataclass(frozen=True)
class ResultRow:
    """One number with its provenance.

    Attributes:
        eval: evaluation name (``abx``, ``purity``, ``ctc``, ``probes``, ``superb``).
        model: display name of the model (``L2D-H12``, ``HuBERT``, a run name).
        dataset: evaluation set (``dev-clean``, ``test-other``, ``demo``).
        condition: eval-specific condition (``within``/``across`` speaker, ``10h``, ``frame``).
        metric: metric name (``abx_error``, ``phone_purity``, ``wer`` ...); percentages are stored as %.
        value: the number.
        variant: model variant for ablation tables (``no-mi``, ``final-layer-mi``); empty by default.
        features: feature spec the number was computed on (``frame:last``).
        checkpoint: checkpoint path as given by the user.
        checkpoint_hash: first 12 hex digits of the SHA-256 of the checkpoint weights.
        config: config name (model config or evaluation config).
        date: ISO date of the run.
        details: free text (engine settings, number of items ...).
        status: empty when the number is measured as the evaluation intends; otherwise what happened
            (superb: ``last-checkpoint`` = scored without a dev-best checkpoint, ``failed`` = no number,
            value NaN); the reason is in ``details``.
    """

    eval: str
    model: str
    dataset: str
    condition: str
    metric: str
    value: float
    variant: str = ""
    features: str = ""
    checkpoint: str = ""
    checkpoint_hash: str = ""
    config: str = ""
    date: str = field(default_factory=lambda: _dt.date.today().isoformat())
    details: str = ""
    status: str = ""

    def key(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, name)) for name in KEY_COLUMNS)


def checkpoint_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a checkpoint's weights: ``model.safetensors`` inside a checkpoint folder, or the file.

    For a safetensors file it covers each tensor's name, dtype, shape and bytes in name order, not the header:
    safetensors writes its metadata in a different order in each process, so equal weights saved by two runs
    give two different files.
    """
    target = Path(path)
    if target.is_dir():
        target = target / "model.safetensors"
    if not target.is_file():
        raise MissingInputError(f"checkpoint weights not found: {target}")
    digest = hashlib.sha256()
    try:
        with open(target, "rb") as handle:
            if target.suffix == ".safetensors":
                _digest_tensors(handle, digest.update, target)
            else:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    except OSError as err:
        raise FileReadError(f"{target}: cannot read the checkpoint weights: {err.strerror or err}") from None
    return digest.hexdigest()


def _digest_tensors(handle: BinaryIO, update: Callable[[bytes], None], path: Path) -> None:
    """Feed a safetensors file's tensors (name, dtype, shape, bytes; sorted by name) to ``update``."""
    try:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = parse_json(handle.read(size).decode("utf-8"), path)
    except (struct.error, ValueError) as err:
        raise InputError(f"{path}: not a safetensors file ({err})") from None
    start = 8 + size
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        begin, end = entry["data_offsets"]
        update(json.dumps([name, entry["dtype"], entry["shape"]]).encode())
        handle.seek(start + begin)
        update(handle.read(end - begin))


def checkpoint_hash(path: str | os.PathLike[str] | None) -> str:
    """Short SHA-256 of a checkpoint (first 12 hex digits of :func:`checkpoint_digest`).

    Returns an empty string when no checkpoint is given (precomputed features).
    """
    return checkpoint_digest(path)[:12] if path else ""


_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                       "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def state_digest(tensors: dict) -> str:
    """:func:`checkpoint_digest` of weights in memory (name -> tensor): the digest the file they are saved as
    (``save_model``) gets, computed without writing it. The one digest of a model's weights: result rows and the
    feature caches use it."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        dtype = _SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")]
        digest.update(json.dumps([name, dtype, list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_hash(tensors: dict) -> str:
    """:func:`checkpoint_hash` that the weights ``tensors`` get once saved: a model in memory compared with result
    rows."""
    return state_digest(tensors)[:12]


def checkpoint_config(path: str | os.PathLike[str]) -> str:
    """The config a checkpoint was trained with, for provenance: ``extra.config`` of its ``config.yaml``, or the
    pretraining run and step that ``learn2diss export`` records (``l2d_w12@100000``); empty when neither is there."""
    from learn2diss.io import read_yaml

    meta = read_yaml(Path(path) / "config.yaml", "checkpoint config") or {}
    extra = meta.get("extra") or {}
    config = str(extra.get("config") or extra.get("config_name") or "")
    if not config and extra.get("run"):
        config = Path(str(extra["run"])).name + (f"@{extra['step']}" if "step" in extra else "")
    return config


def read_rows(path: str | os.PathLike[str]) -> list[ResultRow]:
    """Read a results CSV written by :func:`append_rows`; unknown or missing columns are an error."""
    path = Path(path)
    reader = csv.DictReader(io.StringIO(read_text(path, "results file"), newline=""))
    header = tuple(reader.fieldnames or ())
    missing = [name for name in ("eval", "model", "dataset", "condition", "metric", "value") if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown:
        raise FileReadError(f"{path}: not a results file (missing columns {missing}, unknown columns {unknown})")
    rows = []
    for line_no, record in enumerate(reader, start=2):
        try:
            value = float(record["value"])
        except (TypeError, ValueError):
            raise FileReadError(f"{path}:{line_no}: value {record['value']!r} is not a number") from None
        known = {f.name for f in fields(ResultRow)}
        kwargs = {k: (v or "") for k, v in record.items() if k in known and k != "value"}
        rows.append(ResultRow(value=value, **kwargs))
    return rows


def format_rows(rows: Iterable[ResultRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = asdict(row)
        record["value"] = repr(float(row.value))
        writer.writerow(record)
    return buffer.getvalue()


def append_rows(path: str | os.PathLike[str], rows: Iterable[ResultRow]) -> Path:
    """Merge ``rows`` into the CSV at ``path`` (a row with the same key is replaced) and rewrite it atomically.

    The read-merge-write holds a lock on the file (:func:`learn2diss.io.locked`): evaluations that append to the
    same results folder at the same time lose no row.
    """
    path = Path(path)
    rows = list(rows)
    with locked(path):
        merged: dict[tuple[str, ...], ResultRow] = {}
        if path.exists():
            for old in read_rows(path):
                merged[old.key()] = old
        for row in rows:
            merged[row.key()] = row
        write_text(path, format_rows(merged.values()))
    return path


def read_results_dir(folder: str | os.PathLike[str]) -> list[ResultRow]:
    """All rows of every ``*.csv`` results file in ``folder`` (files with another schema are an error)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"results folder not found: {folder}")
    rows: list[ResultRow] = []
    for path in sorted(folder.glob("*.csv")):
        rows.extend(read_rows(path))
    return rows
