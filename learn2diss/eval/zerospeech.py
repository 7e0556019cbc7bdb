"""ZeroSpeech 2021 phonetic benchmark (abxLS) submission packages: layout, metadata and validation.

A package is the folder the ZeroSpeech tools (``zerospeech-benchmarks``, ``zrc submission verify``) take:

    meta.yaml       who made the system and how (authors, institution, year, paper, open_source,
                    train_set, GPU budget, description)
    params.yaml     ABX parameters: frame shift (``feature_size``), distance, speaker and context modes
    dev-clean/ dev-other/ test-clean/ test-other/
                    one ``<wav name>.npy`` per wav of the dataset's ``phonetic/<subset>/``: a 2-D float64
                    array, one row per frame, the same number of columns in every file of a subset

:func:`validate_package` applies the rules of ``zerospeech-benchmarks``' abxLS validator (0.9.4,
``zerospeech/submissions/abxLS.py``, ``validators/``, ``submissions/_model/meta_file.py``), and reports
every problem instead of the first: per subset, the file list against the dataset's wav list (extra and
missing files both), each file a numpy array (no pickled objects), of dtype ``float`` (float64), with 2
dimensions, and columns equal within the subset; its documentation adds at least 2 frames per file.
meta.yaml is checked against the package's schema (required fields and their types,
``benchmark_name: abxLS``, no ``<...>`` template value left, non-empty authors, institution,
description and train_set); params.yaml against the parameter types. The username and model id are the
ZeroSpeech platform's, set when the package is uploaded.

``zerospeech-benchmarks`` itself is not a dependency: it pins pydantic<2 and makes an HTTP request at
import (docs/release.md, "ZeroSpeech submission", says how its validator was run on these packages).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from learn2diss.errors import InputError, MissingInputError, OutputExistsError
from learn2diss.io import FileReadError, load_npy

SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
META_FILE = "meta.yaml"
PARAMS_FILE = "params.yaml"
BENCHMARK = "abxLS"
TEMPLATE = re.compile(r"<.*>")  # the package's template values: "<required(str): ...>"
# params.yaml values the package accepts (zerospeech/tasks/abx/abxLS_phoneme/params.py)
SPEAKER_MODES = ("all", "within", "across")
CONTEXT_MODES = ("all", "phoneme-any", "phoneme-within", "triphone-within")
DISTANCES = ("euclidian", "cosine", "kl", "kl_symmetric")
FILE_TYPES = (".npy", ".txt")


@dataclass(frozen=True)
class Problem:
    """One way a package breaks the rules: where (a file or folder), which rule, what is wrong."""

    where: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Dataset:
    """A ZeroSpeech 2021 dataset folder, phonetic part: ``ROOT/phonetic/<subset>/*.wav`` and ``<subset>.item``.

    ``items`` maps a subset to its item file, or None: the test subsets' item files are not published.
    """

    root: Path
    wavs: dict[str, dict[str, Path]]
    items: dict[str, Path | None]


def read_dataset(root: str | Path) -> Dataset:
    """The four subsets of the dataset at ``root``; a missing folder or an empty one is an error naming it."""
    root = Path(root)
    phonetic = root / "phonetic"
    problems, wavs, items = [], {}, {}
    for subset in SUBSETS:
        folder = phonetic / subset
        found = {p.stem: p for p in sorted(folder.glob("*.wav"))} if folder.is_dir() else {}
        if not found:
            problems.append(f"{folder}: {'no .wav files' if folder.is_dir() else 'missing'}")
        wavs[subset] = found
        items[subset] = next((p for p in (folder / f"{subset}.item", phonetic / f"{subset}.item") if p.is_file()), None)
    if problems:
        raise MissingInputError(f"{root} is not a ZeroSpeech 2021 dataset folder (ROOT/phonetic/<subset>/*.wav for "
                                f"{', '.join(SUBSETS)}): " + "; ".join(problems))
    return Dataset(root, wavs, items)


@dataclass(frozen=True)
class Meta:
    """The user's part of meta.yaml. Required: authors, institution, description, train_set, open_source."""

    authors: str = ""
    institution: str = ""
    description: str = ""
    train_set: str = ""
    open_source: bool | None = None
    year: int | None = None  # publication year; default this year
    paper_title: str | None = None
    paper_url: str | None = None
    gpu_budget: str | None = None  # "GPU training time estimation", e.g. "60 h on 1 H200"
    code_url: str | None = None
    team: str | None = None
    author_label: str | None = None  # "Surname et al."; default from the first author
    bib_reference: str | None = None
    doi: str | None = None

    @classmethod
    def from_sources(cls, file_values: dict | None, overrides: dict) -> Meta:
        """Values of a small YAML file (``--meta``), then the flags; unknown keys are an error."""
        values = dict(file_values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"--meta: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def missing(self) -> list[str]:
        """Required values that are absent or empty, and values left from a template."""
        absent = [name for name in ("authors", "institution", "description", "train_set")
                  if not str(getattr(self, name) or "").strip()]
        if self.open_source is None:
            absent.append("open_source")
        templated = [f.name for f in fields(self) if isinstance(getattr(self, f.name), str)
                     and TEMPLATE.match(getattr(self, f.name))]
        return absent + [f"{name} (a template value)" for name in templated]

    def to_yaml(self) -> dict:
        """meta.yaml in the package's layout (its ``MetaFile``), without the platform's username and ids."""
        missing = self.missing()
        if missing:
            raise InputError("meta.yaml needs " + ", ".join(missing) + " (--meta FILE or the flags of the same names)")
        first = self.authors.split(",")[0].strip().split()
        label = self.author_label or (f"{first[-1]} et al." if "," in self.authors else first[-1])
        publication = {"author_label": label, "authors": self.authors, "paper_title": self.paper_title,
                       "paper_url": self.paper_url, "publication_year": int(self.year or _dt.date.today().year),
                       "bib_reference": self.bib_reference, "DOI": self.doi, "institution": self.institution,
                       "team": self.team}
        model = {"system_description": self.description, "train_set": self.train_set, "gpu_budget": self.gpu_budget}
        return {"benchmark_name": BENCHMARK, "model_info": {k: v for k, v in model.items() if v is not None},
                "publication": {k: v for k, v in publication.items() if v is not None},
                "open_source": bool(self.open_source),
                **({"code_url": self.code_url} if self.code_url else {})}


def abx_params(frame_shift: float) -> dict:
    """params.yaml: the ZeroSpeech 2021 ABX settings with this model's frame shift (its conv stride, s).

    Cosine (angular) distance, within- and across-speaker, every context mode, 10 items per group, 5 X
    speakers, seed 3459, no pooling; ``cuda: false`` so that the evaluation runs on any machine.
    """
    return {"feature_size": float(frame_shift), "cuda": False, "speaker_mode": "all", "context": "all",
            "distance_mode": "cosine", "max_size_group": 10, "max_x_across": 5, "seed": 3459, "pooling": "none",
            "score_file_type": ".npy", "result_filename": "score_all_phonetic"}


def _check_meta(path: Path) -> list[Problem]:
    from learn2diss.io import FileReadError, read_yaml

    where = str(path)
    if not path.is_file():
        return [Problem(where, "meta", "missing")]
    try:
        meta = read_yaml(path, "meta.yaml")
    except FileReadError as err:
        return [Problem(where, "meta", str(err).removeprefix(f"{path}: "))]
    if not isinstance(meta, dict):
        return [Problem(where, "meta", "not a mapping")]
    problems = []

    def need(tree: dict, key: str, kind: type | tuple, required: bool, label: str) -> object:
        value = tree.get(key)
        if value is None:
            if required:
                problems.append(Problem(where, "meta", f"{label} is required"))
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(Problem(where, "meta", f"{label} must be {getattr(kind, '__name__', kind)}, got "
                                                   f"{type(value).__name__} {value!r}"))
            return None
        if isinstance(value, str) and TEMPLATE.match(value):
            problems.append(Problem(where, "meta", f"{label} has a value from the template: {value!r}"))
        return value

    if meta.get("benchmark_name") != BENCHMARK:
        problems.append(Problem(where, "meta", f"benchmark_name must be {BENCHMARK!r}, got {meta.get('benchmark_name')!r}"))
    need(meta, "open_source", bool, True, "open_source")
    for key in ("username", "submission_id", "code_url"):
        need(meta, key, str, False, key)
    sections = {"model_info": (("system_description", str, True), ("train_set", str, True),
                               ("gpu_budget", str, False), ("model_id", str, False)),
                "publication": (("authors", str, True), ("institution", str, True), ("publication_year", int, True),
                                ("author_label", str, False), ("paper_title", str, False), ("paper_url", str, False),
                                ("bib_reference", str, False), ("DOI", str, False), ("team", str, False))}
    for section, entries in sections.items():
        tree = meta.get(section)
        if not isinstance(tree, dict):
            problems.append(Problem(where, "meta", f"{section} is required (a mapping)"))
            continue
        for key, kind, required in entries:
            value = need(tree, key, kind, required, f"{section}.{key}")
            if required and isinstance(value, str) and not value.strip():
                problems.append(Problem(where, "meta", f"{section}.{key} is empty"))
    return problems


def _check_params(path: Path) -> tuple[list[Problem], str]:
    """Problems of params.yaml and the feature file type it names (``.npy`` when it names none usable)."""
    from learn2diss.io import FileReadError, read_yaml

    where = str(path)
    if not path.is_file():
        return [Problem(where, "params", "missing")], ".npy"
    try:
        params = read_yaml(path, "params.yaml")
    except FileReadError as err:
        return [Problem(where, "params", str(err).removeprefix(f"{path}: "))], ".npy"
    if not isinstance(params, dict):
        return [Problem(where, "params", "not a mapping")], ".npy"
    problems = []
    choices = {"speaker_mode": SPEAKER_MODES, "context": CONTEXT_MODES, "distance_mode": DISTANCES,
               "score_file_type": FILE_TYPES}
    for key, allowed in choices.items():
        if key in params and params[key] not in allowed:
            problems.append(Problem(where, "params", f"{key} must be one of {', '.join(allowed)}, got {params[key]!r}"))
    shift = params.get("feature_size")
    if shift is not None and not (isinstance(shift, int | float) and not isinstance(shift, bool)
                                  and math.isfinite(shift) and shift > 0):
        problems.append(Problem(where, "params", f"feature_size (the frame shift, s) must be a positive number, "
                                                 f"got {shift!r}"))
    for key in ("max_size_group", "max_x_across", "seed"):
        if key in params and (not isinstance(params[key], int) or isinstance(params[key], bool)):
            problems.append(Problem(where, "params", f"{key} must be an integer, got {params[key]!r}"))
    if "cuda" in params and not isinstance(params["cuda"], bool):
        problems.append(Problem(where, "params", f"cuda must be true or false, got {params['cuda']!r}"))
    kind = params.get("score_file_type", ".npy")
    return problems, kind if kind in FILE_TYPES else ".npy"


def _load_array(path: Path) -> np.ndarray | None:
    """The array of one feature file as the package loads it (numpy warnings are errors), or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.loadtxt(path) if path.suffix == ".txt" else load_npy(path)  # allow_pickle=False
        except (FileReadError, ValueError, OSError, UserWarning, EOFError):
            return None


def _check_subset(folder: Path, expected: set[str], suffix: str) -> list[Problem]:
    if not folder.is_dir():
        return [Problem(str(folder), "file list", f"missing: the subset needs one {suffix} file per wav "
                                                  f"({len(expected)} files)")]
    files = sorted(folder.rglob(f"*{suffix}"))
    given = {p.stem for p in files}
    problems = [Problem(str(folder / f"{stem}{suffix}"), "file list", "extra file: no wav of that name in the dataset")
                for stem in sorted(given - expected)]
    problems += [Problem(str(folder / f"{stem}{suffix}"), "file list", "expected file not found")
                 for stem in sorted(expected - given)]
    columns: dict[Path, int] = {}
    for path in files:
        array = _load_array(path)
        if array is None:
            problems.append(Problem(str(path), "numpy", "does not contain a numpy array"))
            continue
        if array.dtype != np.dtype("float"):
            problems.append(Problem(str(path), "dtype", f"must be float64 (numpy 'float'), got {array.dtype}"))
        if array.ndim != 2:
            problems.append(Problem(str(path), "2-D", f"must have 2 dimensions (frames, features), got shape "
                                                      f"{array.shape}"))
            continue
        if array.shape[0] < 2:
            problems.append(Problem(str(path), "frames", f"needs at least 2 frames, got {array.shape[0]}"))
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            problems.append(Problem(str(path), "finite", "contains NaN or infinite values (ABX would be NaN)"))
        columns[path] = array.shape[1]
    if len(set(columns.values())) > 1:
        usual, count = Counter(columns.values()).most_common(1)[0]
        problems += [Problem(str(path), "columns", f"{n} columns where {count} of the subset's {len(columns)} files "
                                                   f"have {usual}") for path, n in columns.items() if n != usual]
    return problems


def validate_package(folder: str | Path, dataset: Dataset) -> list[Problem]:
    """Every problem of the package at ``folder`` for ``dataset`` (empty when the package is valid)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [Problem(str(folder), "package", "not a folder")]
    problems = _check_meta(folder / META_FILE)
    param_problems, suffix = _check_params(folder / PARAMS_FILE)
    problems += param_problems
    for subset in SUBSETS:
        problems += _check_subset(folder / subset, set(dataset.wavs[subset]), suffix)
    return problems


class InvalidPackage(InputError):
    """A package that breaks the rules; ``problems`` names every one."""

    def __init__(self, folder: Path, problems: list[Problem], note: str = "") -> None:
        self.folder, self.problems = folder, problems
        rules = Counter(p.rule for p in problems)
        super().__init__(f"{folder}: {len(problems)} problem(s) ({', '.join(f'{r}: {n}' for r, n in rules.items())})"
                         + note)


def staging_dir(out: Path) -> Path:
    """Where the package at ``out`` is built and kept between runs until it is complete and valid."""
    return out.with_name(f".{out.name}.partial")


def is_package(folder: Path) -> bool:
    return (folder / META_FILE).is_file() and (folder / PARAMS_FILE).is_file() and all(
        (folder / subset).is_dir() for subset in SUBSETS)


def build_package(model, spec, dataset: Dataset, out: str | Path, meta: Meta, device: str = "cpu",
                  progress: bool = True, log=print) -> Path:
    """Extract ``spec`` for every wav of ``dataset`` into a package, validate it, and put it at ``out``.

    The package is built in :func:`staging_dir` (features in float64, each file written atomically with the
    extraction cache beside them): an interrupted or invalid build leaves ``out`` as it was, and the next run
    resumes where this one stopped (features of another checkpoint or spec are recomputed). Only a complete
    package without problems replaces ``out``, in one swap. Raises :class:`InvalidPackage` otherwise.
    """
    from learn2diss.eval.features import extract_features, frame_shift
    from learn2diss.io import publish_dir, recover_dir, write_yaml

    out = Path(out)
    recover_dir(out)
    if out.exists() and not is_package(out):
        raise OutputExistsError(f"{out} exists and is not a ZeroSpeech package: choose another --out")
    meta_yaml = meta.to_yaml()  # a missing field stops here, before any extraction
    staging = staging_dir(out)
    if staging.is_dir():
        log(f"resuming the package in {staging}")
    staging.mkdir(parents=True, exist_ok=True)
    write_yaml(staging / META_FILE, meta_yaml)
    write_yaml(staging / PARAMS_FILE, abx_params(frame_shift(model)))
    for subset in SUBSETS:
        folder = staging / subset
        extract_features(model, dataset.wavs[subset], [spec], {str(spec): folder}, device=device, progress=progress,
                         key={"dataset": f"zerospeech2021/{subset}"}, dtype=np.float64)
        for stale in folder.glob("*.npy"):  # of wavs an earlier run saw and the dataset no longer has
            if stale.stem not in dataset.wavs[subset]:
                stale.unlink()
    problems = validate_package(staging, dataset)
    if problems:
        bad = {Path(p.where) for p in problems if p.rule != "file list" and p.where.endswith(".npy")}
        for path in bad:  # the next run extracts them again (the cache knows a file only while it exists)
            path.unlink(missing_ok=True)
        raise InvalidPackage(staging, problems, f"; {len(bad)} feature file(s) with problems were removed from the "
                                                "staging folder and are extracted again on the next run" if bad else "")
    for subset in SUBSETS:
        for cache in (staging / subset).glob("*cache.json*"):  # the extraction cache and its lock
            cache.unlink()
    return publish_dir(staging, out)


def score_package(folder: Path, dataset: Dataset, frame_shift: float) -> dict[str, list]:
    """Our ABX (:func:`learn2diss.eval.abx.score_abx`, ZeroSpeech 2021 settings) of each subset with an item file."""
    from learn2diss.eval.abx import AbxSettings, score_abx

    settings = AbxSettings(frame_shift=frame_shift)
    return {subset: score_abx(folder / subset, item, settings) for subset, item in dataset.items.items() if item}


def score_table(scores: dict[str, list], dataset: Dataset, provenance: list[str]) -> str:
    """Markdown: ABX error (%) per subset and speaker mode; subsets without a published item file say so."""
    lines = ["# ABX error of the package, measured by learn2diss", "", *provenance, "",
             "| subset | within speaker | across speaker |", "|---|---:|---:|"]
    for subset in SUBSETS:
        if subset not in scores:
            lines.append(f"| {subset} | no item file in {dataset.root / 'phonetic'} (scored by the organisers) | |")
            continue
        by_mode = {s.speaker_mode: s.error for s in scores[subset]}
        lines.append(f"| {subset} | {by_mode.get('within', math.nan):.2f} | {by_mode.get('across', math.nan):.2f} |")
    return "\n".join(lines) + "\n"
