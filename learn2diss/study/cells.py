"""One cell of a study: the joint stage of one (setting, seed) from a copy of the prepared run, exported and
evaluated; its rows are written to ``OUT/cells/<setting>/seed<seed>.json`` last, so a finished cell is skipped.

An interrupted cell resumes: the joint stage continues from its last checkpoint (``--resume``), feature
extraction skips the utterances already written.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from learn2diss.io import atomic_dir, write_json
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
        stored = json.loads(marker.read_text()).get("overrides") if marker.is_file() else None
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
        record = json.loads(path.read_text())
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
