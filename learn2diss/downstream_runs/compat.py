"""Run s3prl's SUPERB recipes on today's stack without editing the installed s3prl, and without running code
from the files it is handed.

Each function fixes one known trap (docs/superb.md, "Traps handled") and is applied by
:func:`install` inside the ``run_downstream.py`` process only:

* files are untrusted (:func:`refuse_unpickling`): s3prl's builders of ``mockingjay_local``,
  ``distiller_local`` and others load with full unpickling (``torch.load`` with weights-only off), which runs any code a pickle
  carries; such a load is refused with one line naming the file (no option loads it: convert such a
  checkpoint to a weights-only file where it came from). Every other ``torch.load`` runs with ``weights_only=True`` (also
  under ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), and torch's refusal becomes the same one line;
* s3prl's model builders ``eval()`` strings of a checkpoint's config (``conv_feature_layers`` of
  ``wavlm_local``, ``hubert_local``, ``wav2vec2_local`` ...), which runs any Python a file puts there: in
  those modules ``eval`` only evaluates literals (lists, tuples, numbers, strings, ``+`` and ``*``) and
  dotted names of imported modules (:func:`evaluate_config_strings_literally`);

* downstream checkpoints (``states-*.ckpt``) hold an ``argparse.Namespace``: that one class is
  allowed for ``torch.load(weights_only=True)``; weights_only is never turned off;
* ``torchaudio.load`` needs TorchCodec since torchaudio 2.9: replaced by :func:`read_audio`
  (soundfile; 16 kHz mono, the same reader as pretraining);
* ``torchaudio.sox_effects`` is gone since 2.9 (KS, ASV): ``channels``/``rate``/``gain`` are done in
  Python, any other effect (ASV's ``silence`` VAD) by the ``sox`` program;
* ``catalyst`` (KS under DDP only) is not installed: a stand-in that says so when used;
* the PR/SF corpus readers (``s3prl.downstream.ctc.corpus``) are missing from the wheel:
  :mod:`learn2diss.downstream_runs.ctc_corpus` provides them;
* PR/SF's loader factory pops ``num_workers`` out of the corpus config, so only the first loader keeps the
  (capped) value and the others start its default of 12 workers: each loader gets a copy of the config;
* SID and ASV cache file lists inside the s3prl package folder, so a cache made for one dataset
  is silently reused for another: the caches are kept per data root under ``cache_dir``
  (ASV's VAD pass also runs on :func:`vad_jobs` processes instead of a fixed 12);
* ASV moves an attention mask to CUDA unconditionally: on CPU runs that move is a no-op;
* s3prl writes ``states-*.ckpt`` in place, so a run killed while saving left a truncated checkpoint that
  the next start took for a finished one: checkpoints written to a path go through
  :func:`learn2diss.io.save_torch` (temporary file, fsync, rename).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learn2diss.data.audio import AudioError, read_audio
from learn2diss.errors import Learn2DissError, MissingInputError
from learn2diss.io import save_torch
from learn2diss.upstream.config import SAMPLE_RATE

_PYTHON_EFFECTS = {"channels", "rate", "gain"}


class UntrustedFileError(Learn2DissError, ValueError):
    """A file s3prl was handed would run code to load (a pickle, an expression); nothing of it was executed."""


def refuse_unpickling(described: dict[str, str] | None = None) -> None:
    """``torch.load`` in this process: ``weights_only=True`` always; a file that needs more is refused.

    ``described`` maps a path to what it is for the message (``the -k checkpoint of upstream mockingjay_local``).
    A refused load raises :class:`UntrustedFileError`: ``refused: FILE needs arbitrary unpickling; nothing
    executed``.
    """
    import pickle

    original = getattr(torch.load, "_learn2diss_original", torch.load)
    names = {os.path.realpath(p): what for p, what in (described or {}).items()}

    def refusal(f: object) -> UntrustedFileError:
        name = os.fspath(f) if isinstance(f, str | os.PathLike) else repr(f)
        what = names.get(os.path.realpath(name)) if isinstance(f, str | os.PathLike) else None
        return UntrustedFileError(f"refused: {name}{f' ({what})' if what else ''} needs arbitrary unpickling; "
                                  "nothing executed")

    @functools.wraps(original)
    def load(f: Any, *args: Any, weights_only: bool | None = None, **kwargs: Any) -> Any:
        if weights_only is False:
            raise refusal(f)
        try:
            return original(f, *args, weights_only=True, **kwargs)
        except pickle.UnpicklingError:
            raise refusal(f) from None

    load._learn2diss_original = original
    torch.load = load


# s3prl modules that eval() strings of a checkpoint's or a config's model settings (conv_feature_layers ...)
EVAL_OF_CONFIG_STRINGS = (
    "s3prl.upstream.baseline.extracter", "s3prl.upstream.data2vec.data2vec_model", "s3prl.upstream.distiller.model",
    "s3prl.upstream.hubert.hubert_model", "s3prl.upstream.lighthubert.lighthubert.lighthubert",
    "s3prl.upstream.multires_hubert.hubert_model", "s3prl.upstream.roberta.roberta_model",
    "s3prl.upstream.wav2vec.wav2vec_model", "s3prl.upstream.wav2vec2.wav2vec2_model", "s3prl.upstream.wavlm.WavLM",
)


def literal_expression(text: str, namespace: dict[str, object], where: str) -> object:
    """The value of ``text`` if it is a literal expression: numbers, strings, lists, tuples, dicts, ``+ - *`` and
    dotted names of modules in ``namespace`` (``torchaudio.compliance.kaldi.fbank``); else :class:`UntrustedFileError`."""
    import ast

    def value(node: ast.AST | None) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {value(k): value(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left - right if isinstance(node.op, ast.Sub) \
                else left * right
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
            owner = module_of(node.value)
            return getattr(owner, node.attr)
        raise ValueError(ast.dump(node)[:60] if node is not None else "None")

    def module_of(node: ast.AST) -> types.ModuleType:
        owner = namespace.get(node.id) if isinstance(node, ast.Name) else value(node) \
            if isinstance(node, ast.Attribute) else None
        if not isinstance(owner, types.ModuleType):
            raise ValueError("not a module")
        return owner

    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, AttributeError):
        raise UntrustedFileError(f"refused: {where} would evaluate {text[:120]!r}, which is not a literal; "
                                 "nothing executed") from None


def evaluate_config_strings_literally(source: str = "the upstream's checkpoint or config") -> None:
    """In the s3prl modules of :data:`EVAL_OF_CONFIG_STRINGS`, ``eval`` is :func:`literal_expression`; ``source``
    names where the strings come from in the refusal."""
    for name in EVAL_OF_CONFIG_STRINGS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an upstream whose optional dependency is missing: s3prl cannot build it either
            continue
        where = f"{source}: s3prl's {name.removeprefix('s3prl.upstream.')}"
        module.eval = functools.partial(_eval_literal, namespace=vars(module), where=where)


def _eval_literal(text: object, *scopes: object, namespace: dict[str, object], where: str) -> object:
    if not isinstance(text, str):
        raise UntrustedFileError(f"refused: {where} would evaluate a {type(text).__name__}; nothing executed")
    return literal_expression(text, namespace, where)


def allow_namespace_in_checkpoints() -> None:
    """s3prl stores its command-line ``Args`` (an ``argparse.Namespace``) in every downstream checkpoint."""
    torch.serialization.add_safe_globals([argparse.Namespace])


def load_audio(path: str | Path, *args: object, **kwargs: object) -> tuple[torch.Tensor, int]:
    """Stand-in for ``torchaudio.load``: (1, samples) float32 at 16 kHz, mono; errors name the file."""
    wav = read_audio(path, SAMPLE_RATE)
    return torch.from_numpy(wav)[None, :], SAMPLE_RATE


def _gain_db(effects: Sequence[Sequence[str]]) -> float:
    return sum(float(effect[1]) for effect in effects if effect[0] == "gain")


def apply_effects_file(
    path: str | Path, effects: Sequence[Sequence[str]], normalize: bool = True, channels_first: bool = True,
    format: str | None = None,
) -> tuple[torch.Tensor, int]:
    """Stand-in for ``torchaudio.sox_effects.apply_effects_file``: returns ((1, samples), 16000).

    ``channels 1``, ``rate 16000`` and ``gain`` are applied in Python; a chain with any other
    effect runs through the ``sox`` program, so its semantics are exactly sox's.
    """
    names = {effect[0] for effect in effects}
    for effect in effects:
        if effect[0] == "channels" and effect[1] != "1" or effect[0] == "rate" and int(float(effect[1])) != SAMPLE_RATE:
            raise ValueError(f"{path}: unsupported sox effect {effect} (the SUPERB recipes use mono 16 kHz)")
    if names <= _PYTHON_EFFECTS:
        wav = read_audio(path, SAMPLE_RATE) * np.float32(10 ** (_gain_db(effects) / 20))
    else:
        wav = _sox(path, effects)
    tensor = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None, :]
    return (tensor if channels_first else tensor.T), SAMPLE_RATE


def _sox(path: str | Path, effects: Sequence[Sequence[str]]) -> np.ndarray:
    import soundfile as sf

    program = shutil.which("sox")
    if program is None:
        raise MissingInputError(f"the sox effects {[e[0] for e in effects]} need the `sox` program "
                           "(Debian/Ubuntu: apt-get install sox)")
    command = [program, "-V1", str(path), "-t", "wav", "-e", "floating-point", "-b", "32", "-",
               *(str(part) for effect in effects for part in effect)]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise AudioError(f"{path}: sox failed: {result.stderr.decode(errors='replace').strip()}")
    data, _ = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    if data.shape[0] == 0:  # sox's silence effect removed everything: keep one frame of zeros
        return np.zeros(SAMPLE_RATE // 100, dtype=np.float32)
    return data.mean(axis=1)


def replace_torchaudio_io() -> None:
    """torchaudio >= 2.9 dropped sox_effects and routes load() through TorchCodec."""
    import torchaudio

    torchaudio.load = load_audio
    sox_effects = types.ModuleType("torchaudio.sox_effects")
    sox_effects.apply_effects_file = apply_effects_file
    sys.modules["torchaudio.sox_effects"] = sox_effects
    torchaudio.sox_effects = sox_effects


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


class _CatalystMissing:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise MissingInputError("KS under torchrun needs catalyst's DistributedSamplerWrapper: pip install catalyst "
                           "(single-process runs do not use it)")


def provide_catalyst_stand_in() -> None:
    """KS imports ``catalyst.data.sampler.DistributedSamplerWrapper`` at module level but uses it under DDP only."""
    if not _missing("catalyst"):
        return
    for name in ("catalyst", "catalyst.data"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sampler = types.ModuleType("catalyst.data.sampler")
    sampler.DistributedSamplerWrapper = _CatalystMissing
    sys.modules["catalyst.data.sampler"] = sampler


def provide_ctc_corpus() -> None:
    """PR (``libriphone``) and SF (``snips``) import ``s3prl.downstream.ctc.corpus.*``, which the wheel lacks."""
    if not _missing("s3prl.downstream.ctc.corpus"):
        return
    from learn2diss.downstream_runs import ctc_corpus

    package = types.ModuleType("s3prl.downstream.ctc.corpus")
    package.__path__ = []
    sys.modules[package.__name__] = package
    for name, cls in (("libriphone", ctc_corpus.LibriPhoneDataset), ("snips", ctc_corpus.SnipsDataset)):
        module = types.ModuleType(f"{package.__name__}.{name}")
        setattr(module, cls.__name__, cls)
        sys.modules[module.__name__] = module
        setattr(package, name, module)


def cache_folder(cache_dir: Path, task: str, *keys: object) -> Path:
    """A cache folder for ``task`` that depends on the data root(s) and list files it was made from."""
    digest = hashlib.sha1("\n".join(str(Path(str(k)).resolve()) for k in keys).encode()).hexdigest()[:16]
    return cache_dir / task / digest


def _before_init(cls: type, before: Callable[[dict[str, object]], None]) -> None:
    """Run ``before(arguments by name, defaults filled in)`` ahead of ``cls.__init__``; it may change them."""
    original = cls.__init__
    if getattr(original, "_learn2diss_wrapped", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: object, *args: object, **kwargs: object) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        before(bound.arguments)  # may change arguments
        original(*bound.args, **bound.kwargs)

    __init__._learn2diss_wrapped = True
    cls.__init__ = __init__


def vad_jobs() -> int:
    """Processes for ASV's one-time VAD pass over the training audio (s3prl: always 12):
    ``$LEARN2DISS_S3PRL_JOBS``, default the CPU count up to 12; 1 runs it in this process."""
    return int(os.environ.get("LEARN2DISS_S3PRL_JOBS") or min(12, os.cpu_count() or 1))


def redirect_dataset_caches(cache_dir: Path) -> None:
    """Keep SID's file-list cache and ASV's VAD-length cache per data root, outside site-packages;
    ASV's VAD pass uses :func:`vad_jobs` processes."""
    sid = importlib.import_module("s3prl.downstream.voxceleb1.dataset")
    asv = importlib.import_module("s3prl.downstream.sv_voxceleb1.dataset")

    def sid_cache(arguments: dict[str, object]) -> None:
        folder = cache_folder(cache_dir, "sid", arguments["file_path"], arguments["meta_data"])
        sid.CACHE_PATH = f"{folder}/"

    def asv_cache(arguments: dict[str, object]) -> None:
        # the dataset writes <dirname(__file__)>/.wav_lengths/<key>_length.pt: point __file__ at our folder
        vad = arguments["vad_config"]
        folder = cache_folder(cache_dir, "asv", *arguments["file_path"], vad.get("min_sec") if isinstance(vad, dict) else vad)
        folder.mkdir(parents=True, exist_ok=True)
        asv.__file__ = str(folder / "dataset.py")
        arguments["n_jobs"] = vad_jobs()

    _before_init(sid.SpeakerClassifiDataset, sid_cache)
    _before_init(asv.SpeakerVerifi_train, asv_cache)


def keep_ctc_worker_cap() -> None:
    """s3prl's ``ctc/data.py:load_dataset`` pops ``num_workers`` from the shared corpus config: the train loader
    gets the config's value, the dev and test loaders 12 workers. Each call gets a copy of the config instead."""
    expert = importlib.import_module("s3prl.downstream.ctc.expert")
    original = expert.load_dataset
    if getattr(original, "_learn2diss_wrapped", False):
        return

    @functools.wraps(original)
    def load_dataset(split: str, tokenizer: object, corpus: dict) -> object:
        return original(split, tokenizer, dict(corpus))

    load_dataset._learn2diss_wrapped = True
    expert.load_dataset = load_dataset


@contextlib.contextmanager
def _cuda_is_noop() -> Iterator[None]:
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def allow_asv_on_cpu() -> None:
    """ASV's forward calls ``attention_mask.cuda()``; on a CPU run that call leaves the tensor where it is."""
    expert = importlib.import_module("s3prl.downstream.sv_voxceleb1.expert").DownstreamExpert
    original = expert.forward
    if getattr(original, "_learn2diss_wrapped", False):
        return

    @functools.wraps(original)
    def forward(self: object, mode: str, features: list[torch.Tensor], *args: object, **kwargs: object) -> object:
        if features and features[0].is_cuda:
            return original(self, mode, features, *args, **kwargs)
        with _cuda_is_noop():
            return original(self, mode, features, *args, **kwargs)

    forward._learn2diss_wrapped = True
    expert.forward = forward


def write_checkpoints_atomically() -> None:
    """``torch.save(obj, PATH)`` writes a temporary file and renames it (s3prl's runner saves ``states-*.ckpt``
    with it; a file object or extra arguments go to torch as they are)."""
    original = torch.save
    if getattr(original, "_learn2diss_wrapped", False):
        return

    @functools.wraps(original)
    def save(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, str | os.PathLike) and not args and not kwargs:
            save_torch(f, obj)
        else:
            original(obj, f, *args, **kwargs)

    save._learn2diss_wrapped = True
    torch.save = save


def install(cache_dir: Path, described: dict[str, str] | None = None, source: str | None = None) -> None:
    """Apply every fix above (idempotent; ``described``: :func:`refuse_unpickling`, ``source``:
    :func:`evaluate_config_strings_literally`). Call before s3prl's runner is imported; imports ``s3prl.hub``."""
    refuse_unpickling(described)
    allow_namespace_in_checkpoints()
    write_checkpoints_atomically()
    replace_torchaudio_io()
    provide_catalyst_stand_in()
    provide_ctc_corpus()
    keep_ctc_worker_cap()
    redirect_dataset_caches(cache_dir)
    allow_asv_on_cpu()
    import s3prl.hub  # noqa: F401 - imports every upstream's modules, whose eval is replaced next

    evaluate_config_strings_literally(*([source] if source else []))
