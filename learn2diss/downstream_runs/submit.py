"""SUPERB leaderboard packaging: the public-set ``predict.zip`` and a hidden-set model package.

Public set: ``predict.zip`` holds ``predict/<task>_public/predict.<ext>`` for every task run (ER:
``predict/er_fold<N>_public/predict.txt`` for all five folds, or none), the prediction files s3prl
wrote on the test split (the layout of s3prl's ``submit/submit.py``, built here with ``zipfile``).
Tasks without predictions are left out and listed with the reason; the written zip is read back
and checked (:func:`check_predict_zip`: member names of the public set, each member's format).
The runs are taken at the learning rate recorded in ``results/superb.csv`` or, without it, the
one with the best dev score among ``RUNS/<task>/lr*/``. Every member is checked before it is
written: ``.ark`` lines ``<utterance> <tokens>``, KS/SID ``<file> <label>``, ASV
``<pair> <score>`` with a finite score, IC csv with ``file_id,action,object,location``, ER
``<file> <label>``.

Hidden set: a folder with ``expert.py`` + ``hubconf.py`` (an s3prl upstream that imports the
installed ``learn2diss`` package), the checkpoint (``config.yaml`` + ``model.safetensors``),
``requirements.txt`` and a README, ready to upload as a SUPERB "pretrained model" repository.

Both hold only regular files this module names itself: a prediction file or a checkpoint file that is a
symbolic link (or a FIFO, a device) is refused, never followed. :func:`check_submission` reads and checks
everything first; :func:`write_submission` then writes ``predict.zip`` and swaps the package folder in
atomically (:func:`learn2diss.io.atomic_dir`: a complete package exists at every instant).
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from learn2diss.downstream_runs.runner import RESULT_FILE
from learn2diss.downstream_runs.tasks import TASKS, Task
from learn2diss.errors import Learn2DissError
from learn2diss.io import FileReadError, atomic_dir, read_bytes, read_json, write_bytes


class SubmissionError(Learn2DissError, ValueError):
    """A prediction file that is missing or malformed; the message names it."""


def _lines(path: Path, text: str) -> list[list[str]]:
    """Whitespace-split lines; the first field (utterance, file or pair) must be unique."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise SubmissionError(f"{path}: empty prediction file")
    seen: set[str] = set()
    for n, row in enumerate(rows, 1):
        if row[0] in seen:
            raise SubmissionError(f"{path}:{n}: {row[0]!r} is listed twice")
        seen.add(row[0])
    return rows


def _check_ark(path: Path, text: str) -> None:
    _lines(path, text)  # '<utterance> <tokens...>'; a hypothesis may be empty


def _check_label(path: Path, text: str) -> None:
    for n, row in enumerate(_lines(path, text), 1):
        if len(row) != 2:
            raise SubmissionError(f"{path}:{n}: expected '<file> <label>', got {' '.join(row)!r}")


def _check_score(path: Path, text: str) -> None:
    for n, row in enumerate(_lines(path, text), 1):
        try:
            ok = len(row) == 2 and math.isfinite(float(row[1]))
        except ValueError:
            ok = False
        if not ok:
            raise SubmissionError(f"{path}:{n}: expected '<pair> <finite score>', got {' '.join(row)!r}")


def _check_intent_csv(path: Path, text: str) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or any(len(row) != 4 for row in rows):
        raise SubmissionError(f"{path}: expected 'file_id,action,object,location' rows")


CHECKS: dict[str, Callable[[Path, str], None]] = {
    "pr": _check_ark, "asr": _check_ark, "sf": _check_ark, "ks": _check_label, "sid": _check_label,
    "asv": _check_score, "ic": _check_intent_csv, "er": _check_label,
}


def chosen_run(runs: Path, task: Task, results_csv: Path | None = None) -> Path:
    """The ``RUNS/<task>/lr<LR>`` folder of the selected learning rate."""
    if results_csv is not None and results_csv.exists():
        from learn2diss.eval.results import read_rows

        for row in read_rows(results_csv):
            found = re.search(r"lr=([^;]+)", row.details)
            same_task = row.condition.partition("/")[2].split("-")[0] == task.title
            if row.eval == "superb" and same_task and found and (runs / task.name / f"lr{found[1]}").is_dir():
                return runs / task.name / f"lr{found[1]}"
    candidates = sorted((runs / task.name).glob("lr*"))
    if not candidates:
        raise SubmissionError(f"no runs of {task.name} under {runs / task.name}")
    primary = task.metrics[0]

    def dev_score(folder: Path) -> float:
        files = [folder / RESULT_FILE] if not task.folds else [folder / fold / RESULT_FILE for fold in task.folds]
        results = [read_json(f, "run result") for f in files if f.exists()]
        values = [r["dev"][primary.name] for r in results if r["dev"] is not None]
        if not values:
            return -math.inf if primary.higher_better else math.inf
        return sum(values) / len(values)

    return (max if primary.higher_better else min)(candidates, key=dev_score)


def prediction_members(runs: Path, tasks: list[Task],
                       results_csv: Path | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """Member name in predict.zip -> prediction file for every task with predictions (ER: all five folds),
    and task -> why it is left out for the others."""
    members: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for task in tasks:
        if not (runs / task.name).is_dir():
            missing[task.name] = f"no runs under {runs / task.name}"
            continue
        run = chosen_run(runs, task, results_csv)
        found: dict[str, Path] = {}
        for source, target in task.predictions.items():
            for fold in task.folds or (None,):
                file = (run / fold if fold else run) / source.format(fold=fold)
                if file.is_file():
                    found[f"predict/{target.format(fold=fold)}"] = file
                elif task.name not in missing:
                    what = f"ER {fold}" if fold else task.title
                    missing[task.name] = (f"missing {what} prediction file {file} (run the {what} evaluation"
                                          f"{'; ER is scored only with all five folds' if fold else ''})")
        if task.name not in missing:
            members.update(found)
    if not members:
        raise SubmissionError(f"no task has predictions under {runs}: " + "; ".join(missing.values()))
    return members, missing


def public_members() -> set[str]:
    """Every member name the SUPERB public set accepts from our tasks (s3prl's ``submit/submit.py`` layout)."""
    return {f"predict/{target.format(fold=fold)}" for task in TASKS.values()
            for target in task.predictions.values() for fold in task.folds or (None,)}


def _check_member(name: str, text: str, where: Path) -> None:
    task = name.split("/")[1].removesuffix("_public")
    CHECKS["er" if task.startswith("er_fold") else {"sv": "asv"}.get(task, task)](where, text)


def check_predict_zip(path: str | Path, data: bytes | None = None) -> list[str]:
    """Check a predict.zip (the file ``path``, or its bytes ``data`` named ``path``) against the public-set format;
    returns its member names.

    Member names must be public-set names, ER's folds all five or none, and every file must have
    its task's format (module docstring). Raises SubmissionError naming the member.
    """
    path = Path(path)
    with zipfile.ZipFile(path if data is None else io.BytesIO(data)) as archive:
        names = archive.namelist()
        unknown = sorted(set(names) - public_members())
        if unknown:
            raise SubmissionError(f"{path}: not public-set members: {', '.join(unknown)}")
        folds = [name for name in names if name.startswith("predict/er_fold")]
        if folds and len(folds) != 5:
            raise SubmissionError(f"{path}: ER needs all five folds, found {', '.join(sorted(folds))}")
        for name in names:
            _check_member(name, archive.read(name).decode("utf-8"), Path(f"{path}:{name}"))
    return sorted(names)


@dataclass(frozen=True)
class PredictZip:
    """A written predict.zip: its path, members, and the tasks left out with the reason."""

    path: Path
    members: list[str]
    missing: dict[str, str]


@dataclass(frozen=True)
class Submission:
    """A checked submission, held in memory until :func:`write_submission`: predict.zip's bytes, and the model
    package's files (name -> bytes) when a checkpoint was given."""

    predict: PredictZip
    zip_bytes: bytes
    package: dict[str, bytes] | None


def _read_text(file: Path, what: str) -> str:
    try:
        return read_bytes(file, what).decode("utf-8")
    except FileReadError as err:
        raise SubmissionError(str(err)) from None
    except UnicodeDecodeError as err:
        raise SubmissionError(f"{file}: the {what} is not UTF-8 text ({err})") from None


def check_predict_zip_members(runs: str | Path, out: str | Path, tasks: list[Task] | None = None,
                              results_csv: str | Path | None = None) -> tuple[PredictZip, bytes]:
    """predict.zip for ``OUT`` from the run folders that have predictions, built and checked in memory."""
    runs, out = Path(runs), Path(out)
    members, missing = prediction_members(runs, tasks or list(TASKS.values()),
                                          Path(results_csv) if results_csv else None)
    texts = {}
    for name, file in sorted(members.items()):
        texts[name] = _read_text(file, "prediction file")
        _check_member(name, texts[name], file)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in texts.items():
            archive.writestr(name, text)
    target = out / "predict.zip"
    names = check_predict_zip(target, buffer.getvalue())
    return PredictZip(target, names, missing), buffer.getvalue()


def build_predict_zip(runs: str | Path, out: str | Path, tasks: list[Task] | None = None,
                      results_csv: str | Path | None = None) -> PredictZip:
    """Write ``OUT/predict.zip`` (atomically) from the run folders that have predictions, checked first."""
    written, data = check_predict_zip_members(runs, out, tasks, results_csv)
    write_bytes(written.path, data)
    return written


_HIDDEN_EXPERT = '''"""SUPERB hidden-set upstream: the learn2diss expert on the checkpoint in this folder."""

from pathlib import Path

from learn2diss.upstream.expert import UpstreamExpert as _Expert


class UpstreamExpert(_Expert):
    def __init__(self, ckpt=None, model_config=None, **kwargs):
        super().__init__(ckpt or Path(__file__).parent / "checkpoint", model_config, **kwargs)
'''

_HIDDEN_HUBCONF = '''from expert import UpstreamExpert as _UpstreamExpert


def learn2diss(ckpt=None, *args, **kwargs):
    return _UpstreamExpert(ckpt, *args, **kwargs)
'''


def model_package_files(checkpoint: str | Path) -> dict[str, bytes]:
    """The files of the hidden-set package (name -> bytes): expert + hubconf + requirements + README, and the
    checkpoint's ``config.yaml`` and ``model.safetensors``, each a regular file (no link followed), and the
    checkpoint loaded to prove it works. Nothing is written."""
    from importlib.metadata import version

    from learn2diss.upstream.checkpoints import CONFIG_FILE, WEIGHTS_FILE, load_model

    checkpoint = Path(checkpoint)
    files = {f"checkpoint/{name}": read_bytes(checkpoint / name, "checkpoint file")
             for name in (CONFIG_FILE, WEIGHTS_FILE)}
    model = load_model(checkpoint)  # refuses a broken checkpoint
    readme = (f"# learn2diss upstream for SUPERB\n\nCheckpoint: {model.config.parent.kind} parent, "
              f"{model.config.frame.num_frozen_layers} frozen layers. Keys: hidden_states (frame layers), "
              "utt_hidden_states (utterance layers), task keys pr asr ks ic sf (frame) and sid asv er (utterance).\n")
    return files | {"expert.py": _HIDDEN_EXPERT.encode(), "hubconf.py": _HIDDEN_HUBCONF.encode(),
                    "requirements.txt": f"learn2diss=={version('learn2diss')}\n".encode(), "README.md": readme.encode()}


def write_model_package(files: dict[str, bytes], out: str | Path) -> Path:
    """``OUT/model_package`` holding ``files``, swapped in atomically (the old package stays until the new one is
    complete)."""
    package = Path(out) / "model_package"
    with atomic_dir(package) as tmp:
        for name, data in files.items():
            write_bytes(tmp / name, data)
    return package


def build_model_package(checkpoint: str | Path, out: str | Path) -> Path:
    """``OUT/model_package``: expert + hubconf + checkpoint + requirements, for a hidden-set upload."""
    return write_model_package(model_package_files(checkpoint), out)


def check_submission(runs: str | Path, out: str | Path, tasks: list[Task] | None = None,
                     results_csv: str | Path | None = None, checkpoint: str | Path | None = None) -> Submission:
    """Read and check everything a submission holds (predictions, and the checkpoint when given): nothing is
    written, so a refused input leaves no file behind."""
    predict, data = check_predict_zip_members(runs, out, tasks, results_csv)
    package = None
    if checkpoint is not None:
        try:
            package = model_package_files(checkpoint)
        except FileReadError as err:
            raise SubmissionError(str(err)) from None
    return Submission(predict, data, package)


def write_submission(submission: Submission, out: str | Path) -> Path | None:
    """Write a checked submission: ``predict.zip`` (atomically), then the model package (swapped in); returns the
    package folder, if any."""
    write_bytes(submission.predict.path, submission.zip_bytes)
    return write_model_package(submission.package, out) if submission.package is not None else None
