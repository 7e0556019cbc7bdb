"""One cell of a study: the joint stage of one (setting, seed) from a copy of the prepared run, exported and
evaluated; its rows are written to ``OUT/cells/<setting>/seed<seed>.json`` last, so a finished cell is skipped.

An interrupted cell resumes: the joint stage continues from its last checkpoint (``--resume``), feature
extraction skips the utterances already written. :func:`run_cells` runs several cells at a time, each in its own
process on one thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from learn2diss.io import atomic_dir, read_json, write_json
from learn2diss.study.evaluate import CorpusSplit, EvalSizes, evaluate_split
from learn2diss.study.grid import Setting, StudyError
from learn2diss.version import __version__, git_commit


@dataclass(frozen=True)
class StudyInputs:
    """What every cell shares: the joint config, the training manifest, the prepared run and the corpus."""

    config: Path
    manifest: Path
    shared: Path
    corpus: Path
    common: tuple[str, ...] = ()  # --set for every cell (e.g. joint.steps=100)
    device: str = "cpu"


@dataclass(frozen=True)
class Cell:
    """A (setting, seed) pair."""

    setting: Setting
    seed: int

    @property
    def name(self) -> str:
        return f"{self.setting.name}-seed{self.seed}"

    def overrides(self, common: tuple[str, ...]) -> list[str]:
        """``--set`` values of its joint stage: common ones, the setting's, then the seed (batch order, masks,
        crops and q_phi's initialisation)."""
        return [*common, *self.setting.arguments(), f"train.seed={self.seed}", f"data.seed={self.seed}"]


@dataclass(frozen=True)
class StudyPaths:
    """``out``: cells, tables, figures; ``work``: run folders, checkpoints, feature caches."""

    out: Path
    work: Path

    def cell_file(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.setting.name / f"seed{cell.seed}.json"

    def run(self, cell: Cell) -> Path:
        return self.work / "runs" / cell.name

    def checkpoint(self, cell: Cell | str) -> Path:
        return self.work / "checkpoints" / (cell if isinstance(cell, str) else cell.name)

    def features(self, cell: Cell | str) -> Path:
        """Feature caches of a cell (or a named model), one folder per split and representation."""
        return self.work / "features" / (cell if isinstance(cell, str) else cell.name)


def config_value(config: Path, overrides: list[str], key: str) -> object:
    """The value of dotted ``key`` in ``config`` (its ``base:`` merged in) after ``overrides`` (a cell's x)."""
    from learn2diss.pretrain.config import read_config
    from learn2diss.schema import apply_overrides

    node = apply_overrides(read_config(config), overrides)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise StudyError(f"{config}: the grid's x key {key!r} is not in the config")
        node = node[part]
    return node


def run_command(*argv: object) -> None:
    """Run one ``learn2diss`` command in this process; a non-zero exit is a :class:`StudyError`."""
    from learn2diss import commands

    commands.run_command(*argv, check=StudyError)


def train_cell(cell: Cell, inputs: StudyInputs, paths: StudyPaths) -> Path:
    """The joint stage of ``cell`` in its own copy of the prepared run, exported; returns the checkpoint."""
    run, overrides = paths.run(cell), cell.overrides(inputs.common)
    marker = run / "study_cell.json"
    if run.is_dir():
        stored = read_json(marker, "study cell marker").get("overrides") if marker.is_file() else None
        if stored != overrides:
            raise StudyError(f"{run} holds a run with other overrides ({stored}); delete it or use another --work-dir")
    else:
        with atomic_dir(run) as tmp:
            shutil.copytree(inputs.shared, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("joint", "tensorboard"))
            write_json(tmp / "study_cell.json", {"overrides": overrides})
    run_command("pretrain", "joint", "--config", inputs.config, "--data", inputs.manifest, "--out", run, "--resume",
         "--device", inputs.device, *[a for item in overrides for a in ("--set", item)])
    checkpoint = paths.checkpoint(cell)
    run_command("export", run, "--out", checkpoint)
    return checkpoint


def evaluate_checkpoint(checkpoint: Path, corpus: Path, splits: tuple[str, ...], sizes: EvalSizes,
                        features: Path, device: str) -> list[dict]:
    """The fast evaluations of ``checkpoint`` on each split: one dict per number (split, eval, condition ...)."""
    from learn2diss.upstream.checkpoints import load_model

    model = load_model(checkpoint)
    rows = []
    for split in splits:
        for m in evaluate_split(model, CorpusSplit(corpus, split), sizes, features / split, device):
            rows.append({"split": split, "eval": m.eval, "condition": m.condition, "metric": m.metric,
                         "value": m.value, "features": m.features, "details": m.details})
    return rows


def run_cell(cell: Cell, inputs: StudyInputs, paths: StudyPaths, splits: tuple[str, ...], sizes: EvalSizes,
             x_key: str, keep_features: bool = False) -> dict:
    """Train, export and evaluate ``cell`` unless its rows exist; returns the cell record.

    The feature caches of the cell are removed once its rows are written, unless ``keep_features``.
    """
    from learn2diss.eval.results import checkpoint_hash

    overrides = cell.overrides(inputs.common)
    path = paths.cell_file(cell)
    if path.is_file():
        record = read_json(path, "cell record")
        if record["overrides"] != overrides:
            raise StudyError(f"{path}: cell {cell.name} was run with other overrides ({record['overrides']}); "
                             "use another --out and --work-dir, or delete it")
        return record
    start = time.perf_counter()
    checkpoint = train_cell(cell, inputs, paths)
    trained = time.perf_counter()
    rows = evaluate_checkpoint(checkpoint, inputs.corpus, splits, sizes, paths.features(cell), inputs.device)
    record = {
        "setting": cell.setting.name, "seed": cell.seed, "overrides": overrides,
        "x": config_value(inputs.config, overrides, x_key), "x_key": x_key,
        "checkpoint": str(checkpoint), "checkpoint_hash": checkpoint_hash(checkpoint),
        "git_commit": git_commit() or "unknown", "version": __version__,
        "config": str(inputs.config), "shared": str(inputs.shared), "corpus": str(inputs.corpus),
        "seconds": {"train": round(trained - start, 1), "evaluate": round(time.perf_counter() - trained, 1)},
        "rows": rows,
    }
    write_json(path, record)
    if not keep_features:
        shutil.rmtree(paths.features(cell), ignore_errors=True)
    return record


@dataclass(frozen=True)
class CellTime:
    """Wall and CPU seconds of one cell, measured in the process that ran it."""

    wall: float
    cpu: float


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed_cell(cell: Cell, inputs: StudyInputs, paths: StudyPaths, splits: tuple[str, ...], sizes: EvalSizes,
                x_key: str, keep_features: bool) -> tuple[dict, CellTime]:
    wall, cpu = time.perf_counter(), process_cpu_seconds()
    record = run_cell(cell, inputs, paths, splits, sizes, x_key, keep_features)
    return record, CellTime(time.perf_counter() - wall, process_cpu_seconds() - cpu)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set (what spawned worker processes start with), restored afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cells(cells: Sequence[Cell], inputs: StudyInputs, paths: StudyPaths, splits: tuple[str, ...],
              sizes: EvalSizes, x_key: str, jobs: int = 1, keep_features: bool = False,
              done: Callable[[Cell, dict, CellTime], None] | None = None) -> list[dict]:
    """:func:`run_cell` for each cell, in order (``jobs`` = 1, in this process) or ``jobs`` at a time, each in its
    own spawned process on one thread (OpenMP and torch); ``done(cell, record, time)`` is called as each
    finishes. Returns the records in the order of ``cells``.

    A cell's numbers do not depend on ``jobs`` beyond the floating-point differences of the thread count: each
    cell is seeded by its own seed and runs alone in its process.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    records: dict[Cell, dict] = {}
    if jobs <= 1 or len(cells) <= 1:
        for cell in cells:
            records[cell], took = _timed_cell(cell, inputs, paths, splits, sizes, x_key, keep_features)
            if done:
                done(cell, records[cell], took)
        return [records[c] for c in cells]
    with _environment(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"), ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
        futures = {pool.submit(_timed_cell, cell, inputs, paths, splits, sizes, x_key, keep_features): cell
                   for cell in cells}
        try:
            for future in as_completed(futures):
                cell = futures[future]
                records[cell], took = future.result()
                if done:
                    done(cell, records[cell], took)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # the running cells finish (and resume later)
            raise
    return [records[c] for c in cells]
