"""Run SUPERB tasks with the protocol of paper Table 2 and collect their test metrics.

Protocol (SUPERB, paper §4.1): the upstream is frozen, s3prl learns a weighted sum of the layers
of the task's feature key and trains the task's head; only the learning rate is swept. For each
task and learning rate one s3prl run goes to ``OUT/<task>/lr<LR>`` (ER: ``.../lr<LR>/fold<N>``):

* training is launched, resumed from its last ``states-*.ckpt``, or skipped when
  ``states-<total_steps>.ckpt`` exists;
* evaluation: the best dev checkpoint on the test split (and on dev, to pick the learning rate);
  s3prl writes ``<dev>-best.ckpt`` only when the dev metric beats its starting value (ASR: WER
  < 100 %, SF: slot-type F1 > 0, KS/IC/SID/ER: accuracy > 0), so without one the last
  ``states-*.ckpt`` is scored and the result says so (status ``last-checkpoint``); ASV has no dev set: every saved checkpoint is scored on the test trials and the lowest EER is
  kept (SUPERB's ``test_expdir.sh``), its ``test_predict.txt`` copied into the run folder;
  ER is the mean over the five folds;
* metrics are read from the lines s3prl prints, stored in ``learn2diss_result.json`` per run,
  and the selected learning rate's numbers go to ``results/superb.csv`` (percentages);
* a grid (:func:`run`) goes on past a task that fails: its rows say ``failed`` with the reason
  (value NaN), and :class:`Cell` lists every task's status and wall time for the summary.
"""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from learn2diss.downstream_runs import smoke
from learn2diss.downstream_runs.tasks import Task
from learn2diss.errors import Learn2DissError
from learn2diss.eval.results import ResultRow, append_rows, checkpoint_config, checkpoint_hash
from learn2diss.io import read_json, read_yaml, write_json, write_text
from learn2diss.runlock import FolderInUseError

RESULT_FILE = "learn2diss_result.json"
OK, LAST_CHECKPOINT, FAILED = "ok", "last-checkpoint", "failed"
# the dev value s3prl's recipe must beat before it writes <dev>-best.ckpt (PR's PER always does)
_BEST_STARTS = {"asr": "WER < 100 %", "sf": "slot-type F1 > 0", "ks": "accuracy > 0", "ic": "accuracy > 0",
                "sid": "accuracy > 0", "er": "accuracy > 0"}


class RunError(Learn2DissError, RuntimeError):
    """An s3prl run that failed or printed no metric; the message names its log."""


@dataclass(frozen=True)
class RunSpec:
    """What every run of one ``superb run`` invocation shares."""

    upstream: str
    checkpoint: str | None
    data_root: Path
    out: Path
    override: str = ""  # extra s3prl -o options for training (e.g. a short smoke schedule)
    device: str | None = None
    feature_key: str | None = None  # None: the task's default key
    smoke: bool = False  # the tiny settings of downstream_runs/smoke.py under ``override`` (ER: fold1 only)


def feature_key(task: Task, spec: RunSpec) -> str:
    """The key a run reads: ``-s`` if given, else the task's key for learn2diss upstreams, else hidden_states."""
    if spec.feature_key:
        return spec.feature_key
    return task.feature_key if spec.upstream.startswith("learn2diss_") else "hidden_states"


def default_lrs(task: Task, spec: RunSpec) -> list[float]:
    """The learning rate when no sweep is asked for: the task config's (s3prl's default), ``smoke.LR`` for --smoke."""
    return [smoke.LR] if spec.smoke else [float(task.config()["optimizer"]["lr"])]


def lr_dir(out: Path, task: Task, lr: float, fold: str | None = None) -> Path:
    path = out / task.name / f"lr{lr:g}"
    return path / fold if fold else path


def launch_environment() -> dict[str, str]:
    """The environment of an s3prl run: ours, with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set.

    PyTorch's OpenMP threads spin while they wait for each other. An RNN head (ASR, SF) runs
    thousands of tiny parallel regions per step, so beside other CPU jobs the spinning threads
    starve each other: on 2 busy cores a 2 x 64 BLSTM step went from 0.1 s (passive) to minutes.
    """
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def _launch(arguments: list[str], log: Path, spec: RunSpec) -> str:
    """``python -m learn2diss.downstream_runs.launcher ARGS``; stdout returned, stdout+stderr kept in ``log``."""
    command = [sys.executable, "-m", "learn2diss.downstream_runs.launcher", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=launch_environment())
    log.parent.mkdir(parents=True, exist_ok=True)
    write_text(log, f"$ {' '.join(command)}\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise RunError(f"s3prl run failed (exit {result.returncode}): {lines[-1].strip()} (log {log})\n"
                       + "\n".join(lines[-15:]))
    return result.stdout


def _states(expdir: Path) -> list[Path]:
    return sorted((Path(p) for p in glob.glob(str(expdir / "states-*.ckpt"))), key=lambda p: int(p.stem.split("-")[1]))


def total_steps(expdir: Path) -> int | None:
    """``runner.total_steps`` of the run, from the newest ``config_*.yaml`` s3prl wrote."""
    configs = sorted(expdir.glob("config_*.yaml"))
    if not configs:
        return None
    return int(read_yaml(configs[-1], "s3prl run config")["runner"]["total_steps"])


def training_finished(expdir: Path) -> bool:
    steps = total_steps(expdir)
    return steps is not None and (expdir / f"states-{steps}.ckpt").exists()


def train(task: Task, spec: RunSpec, lr: float, fold: str | None) -> Path:
    """Launch, resume or skip the training run of ``task`` at learning rate ``lr``."""
    expdir = lr_dir(spec.out, task, lr, fold)
    if training_finished(expdir):
        return expdir
    if _states(expdir):
        arguments = ["-m", "train", "-e", str(expdir)]
    else:
        options = [*(smoke.smoke_options(task) if spec.smoke else []), f"config.optimizer.lr={lr!r}"]
        if fold:
            options.append(f"config.downstream_expert.datarc.test_fold='{fold}'")
        if spec.override:
            options.append(spec.override)
        arguments = ["-m", "train", "-u", spec.upstream, "-d", task.name, "-p", str(expdir),
                     "--data-root", str(spec.data_root), "-o", ",,".join(options)]
        if spec.checkpoint:
            arguments += ["-k", spec.checkpoint]
        if spec.feature_key:
            arguments += ["-s", spec.feature_key]
    if spec.device:
        arguments += ["--device", spec.device]
    _launch(arguments, expdir / "learn2diss_train.log", spec)
    if not training_finished(expdir):
        raise RunError(f"{expdir}: training ended without states-{total_steps(expdir)}.ckpt")
    return expdir


def parse_metrics(task: Task, split: str, stdout: str) -> dict[str, float]:
    """The task's metrics printed for ``split`` (s3prl's raw scale)."""
    found = {}
    for metric in task.metrics:
        matches = re.findall(metric.pattern(split), stdout, flags=re.MULTILINE)
        if matches:
            found[metric.name] = float(matches[-1])
    return found


def _evaluate(task: Task, spec: RunSpec, checkpoint: Path, split: str, expdir: Path, log: Path) -> dict[str, float]:
    arguments = ["-m", "evaluate", "-e", str(checkpoint), "-t", split, "-o", f"args.expdir={expdir}"]
    if spec.device:
        arguments += ["--device", spec.device]
    metrics = parse_metrics(task, split, _launch(arguments, log, spec))
    if task.metrics[0].name not in metrics:
        raise RunError(f"{checkpoint}: s3prl printed no '{split} {task.metrics[0].key}' line; see {log}")
    return metrics


def no_best_reason(task: Task, expdir: Path) -> str:
    """Why a run has no ``<dev>-best.ckpt``, for the results and the summary."""
    configs = sorted(expdir.glob("config_*.yaml"))
    if configs:
        runner = read_yaml(configs[-1], "s3prl run config")["runner"]
        if int(runner["eval_step"]) > int(runner["total_steps"]):
            return (f"no {task.best_checkpoint}: {task.dev_split} was never evaluated (runner.eval_step "
                    f"{runner['eval_step']} > total_steps {runner['total_steps']})")
    start = _BEST_STARTS.get(task.name, "its starting value")
    return f"no {task.best_checkpoint}: the {task.dev_split} metric never reached {start}, s3prl's condition to save it"


def evaluate(task: Task, spec: RunSpec, expdir: Path, need_dev: bool = True) -> dict:
    """Score a finished run (cached in ``RESULT_FILE``): {"test": {...}, "dev": {...} or None, "checkpoint": ...,
    "status": ok | last-checkpoint, "reason": ...}.

    ``need_dev`` False skips the dev pass, which only serves to pick among several learning rates.
    """
    cached = expdir / RESULT_FILE
    result = read_json(cached, "run result") if cached.exists() else None
    if result is not None and (result["dev"] is not None or not need_dev):
        return {"status": OK, "reason": "", **result}
    if task.dev_split is None:  # ASV: every checkpoint on the test trials, keep the best
        scored = []
        for state in _states(expdir):
            folder = expdir / state.stem
            metrics = _evaluate(task, spec, state, task.test_split, folder, folder / "learn2diss_evaluate.log")
            scored.append((metrics, state, folder))
        if not scored:
            raise RunError(f"{expdir}: no states-*.ckpt to evaluate")
        primary = task.metrics[0]
        metrics, state, folder = (max if primary.higher_better else min)(scored, key=lambda s: s[0][primary.name])
        shutil.copyfile(folder / "test_predict.txt", expdir / "test_predict.txt")
        result = {"test": metrics, "dev": metrics, "checkpoint": str(state), "status": OK, "reason": ""}
    else:
        if result is None:
            checkpoint, status, reason = expdir / task.best_checkpoint, OK, ""
            if not checkpoint.exists():
                states = _states(expdir)
                if not states:
                    raise RunError(f"{expdir}: no {task.best_checkpoint} and no states-*.ckpt to evaluate")
                checkpoint, status = states[-1], LAST_CHECKPOINT
                reason = f"{no_best_reason(task, expdir)}; scored {checkpoint.name}"
            test = _evaluate(task, spec, checkpoint, task.test_split, expdir, expdir / "learn2diss_evaluate_test.log")
            result = {"test": test, "dev": None, "checkpoint": str(checkpoint), "status": status, "reason": reason}
        if need_dev:
            result["dev"] = _evaluate(task, spec, Path(result["checkpoint"]), task.dev_split, expdir,
                                      expdir / "learn2diss_evaluate_dev.log")
    write_json(cached, result)
    return {"status": OK, "reason": "", **result}


def task_folds(task: Task, spec: RunSpec) -> tuple[str | None, ...]:
    """ER's folds (smoke runs: the first only); ``(None,)`` for the other tasks."""
    if not task.folds:
        return (None,)
    return task.folds[:1] if spec.smoke else task.folds


def train_and_evaluate(task: Task, spec: RunSpec, lr: float, fold: str | None, need_dev: bool) -> dict:
    """One run of the grid (:func:`train` then :func:`evaluate`), as the one writer of its folder: a second
    process on the same run is refused, naming this one (:func:`learn2diss.runlock.hold`)."""
    from learn2diss.runlock import hold

    with hold(lr_dir(spec.out, task, lr, fold)):
        return evaluate(task, spec, train(task, spec, lr, fold), need_dev=need_dev)


def run_task(task: Task, spec: RunSpec, lrs: list[float] | None = None) -> dict[float, dict]:
    """Train and evaluate ``task`` at every learning rate; ER's per-lr result is the mean over its folds."""
    results: dict[float, dict] = {}
    lrs = lrs or default_lrs(task, spec)
    for lr in tqdm(lrs, desc=f"{task.name} learning rates", leave=False):
        per_fold = [train_and_evaluate(task, spec, lr, fold, need_dev=len(lrs) > 1) for fold in task_folds(task, spec)]
        mean = {split: None if per_fold[0][split] is None else
                {name: sum(r[split][name] for r in per_fold) / len(per_fold) for name in per_fold[0][split]}
                for split in ("test", "dev")}
        reasons = [r["reason"] for r in per_fold if r["status"] != OK]
        results[lr] = {**mean, "runs": [r["checkpoint"] for r in per_fold],
                       "status": LAST_CHECKPOINT if reasons else OK, "reason": "; ".join(dict.fromkeys(reasons))}
    return results


def select(task: Task, results: dict[float, dict]) -> float:
    """The learning rate with the best dev value of the task's first metric (ASV: its test EER)."""
    if len(results) == 1:
        return next(iter(results))
    primary = task.metrics[0]
    key = lambda lr: results[lr]["dev"][primary.name]  # noqa: E731
    return max(results, key=key) if primary.higher_better else min(results, key=key)


def table_column(task: Task, metric_name: str, feature_key: str) -> str:
    """The Table 2/5 column of a number: ``frame/PR``, ``utt/SID``, ``frame/SF-F1`` (the layers actually read)."""
    from learn2diss.upstream.expert import FRAME_KEYS

    prefix = "frame" if feature_key in FRAME_KEYS else "utt"
    suffix = f"-{metric_name.upper()}" if len(task.metrics) > 1 else ""
    return f"{prefix}/{task.title}{suffix}"


def result_rows(task: Task, spec: RunSpec, results: dict[float, dict], model: str, variant: str = "") -> list[ResultRow]:
    """Rows for ``results/superb.csv`` at the selected learning rate, as percentages."""
    lr = select(task, results)
    chosen = results[lr]
    key = feature_key(task, spec)
    details = f"lr={lr:g}; lrs={','.join(f'{x:g}' for x in results)}; runs={';'.join(chosen['runs'])}"
    status = chosen.get("status", OK)
    if status != OK:
        details += f"; {status}: {chosen['reason']}"
    return [
        ResultRow(eval="superb", model=model, variant=variant, dataset=task.dataset,
                  condition=table_column(task, metric.name, key), metric=metric.name,
                  value=chosen["test"][metric.name] * metric.scale, features=key,
                  checkpoint=spec.checkpoint or "", config=_config(spec),
                  checkpoint_hash=checkpoint_hash(spec.checkpoint) if spec.checkpoint else "", details=details,
                  status="" if status == OK else status)
        for metric in task.metrics if metric.name in chosen["test"]
    ]


def _config(spec: RunSpec) -> str:
    """The provenance's config: the checkpoint's training config when it records one, else the upstream entry."""
    return (checkpoint_config(spec.checkpoint) if spec.checkpoint else "") or spec.upstream


def failed_rows(task: Task, spec: RunSpec, reason: str, model: str, variant: str = "") -> list[ResultRow]:
    """One row per metric of a task that gave no number: value NaN, status ``failed``, the reason in details."""
    key = feature_key(task, spec)
    return [ResultRow(eval="superb", model=model, variant=variant, dataset=task.dataset,
                      condition=table_column(task, metric.name, key), metric=metric.name, value=math.nan,
                      features=key, checkpoint=spec.checkpoint or "", config=_config(spec),
                      details=f"failed: {reason}", status=FAILED)
            for metric in task.metrics]


@dataclass
class Cell:
    """One task of a grid: ``status`` ok, last-checkpoint or failed, why, its wall time and its rows."""

    task: Task
    status: str
    reason: str
    seconds: float
    rows: list[ResultRow] = field(default_factory=list)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def run(tasks: list[Task], spec: RunSpec, lrs: list[float] | None, results_csv: Path, model: str,
        variant: str = "", fail_fast: bool = False) -> list[Cell]:
    """Run every task at every learning rate and merge the selected numbers into ``results_csv``.

    A task that fails is recorded (rows with status ``failed``) and the grid goes on to the next
    one; ``fail_fast`` re-raises the first failure instead.
    """
    cells = []
    for task in tqdm(tasks, desc="SUPERB tasks"):
        start = time.monotonic()
        try:
            results = run_task(task, spec, lrs)
            rows = result_rows(task, spec, results, model, variant)
            chosen = results[select(task, results)]
            status, reason = chosen["status"], chosen["reason"]
        except Exception as error:  # one cell must not stop the grid; the reason goes to the CSV and summary
            if fail_fast or isinstance(error, FolderInUseError):  # another process runs it: not a result
                raise
            status, reason = FAILED, f"{type(error).__name__}: {_first_line(error)}"
            rows = failed_rows(task, spec, reason, model, variant)
        append_rows(results_csv, rows)
        cells.append(Cell(task, status, reason, time.monotonic() - start, rows))
    return cells
