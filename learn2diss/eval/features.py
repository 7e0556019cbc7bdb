"""Which representation an evaluation reads (``--features``) and its extraction to per-utterance files.

Feature specs:

============== ===================================================================================
``frame:last``  output of the last frame-encoder layer (the paper's choice for ABX, Table 3)
``frame:N``     frame hidden state N as s3prl numbers them: 0 = input of layer 1, N = output of layer N
``frame:mean``  mean of the M frame-encoder layers of g, i.e. ȳ / M (eq. 9; same clusters and cosines as ȳ)
``frame:all``   every frame hidden state, stacked: (layers + 1, frames, dim) (``learn2diss extract`` only)
``utt:N``       per-frame output z^N of ECAPA-TDNN layer N = 1 .. L-1 (1024-d in the paper)
``utt:embedding`` the pooled utterance embedding z^L (one vector per utterance)
============== ===================================================================================

Extraction runs the model on one utterance at a time (no padding, so group-norm parents see exactly
the samples of the utterance) and writes ``<folder>/<utt_id>.npy`` atomically. The folder is a cache
keyed by content: ``cache.json`` records the key (hash of the model's weights and config, spec, code
version) and each utterance's audio by its content (size and SHA-256; the path and modification time
only spare re-reading a file that has not moved or changed). A file is reused only when both match, so
an interrupted run resumes, the same audio in another folder (moved, copied) reuses its features, and
another checkpoint under the same name, other audio or a newer extraction code recomputes instead of
reusing stale numbers.

Example::

    from learn2diss.eval.features import FeatureSpec, extract_features, find_audio
    audio = find_audio("LibriSpeech/dev-clean")
    extract_features(model, audio, [FeatureSpec.parse("frame:last")], {"frame:last": "feats/dev-clean"})
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learn2diss import __version__
from learn2diss.errors import InputError, MissingInputError
from learn2diss.io import (
    FileReadError,
    load_npy,
    locked,
    read_json,
    remove_temporaries,
    save_npy,
    write_json,
)
from learn2diss.upstream.config import SAMPLE_RATE

AUDIO_EXTENSIONS = (".flac", ".wav")
# Seconds per frame of precomputed features (--features-dir) unless told: the conv stride of every parent
# here (320 samples) at 16 kHz, 0.02 s. With a model at hand, use :func:`frame_shift` of its own stride.
FRAME_SHIFT_S = 320 / SAMPLE_RATE


def frame_shift(model: Any) -> float:
    """Seconds per frame of ``model``'s frame features: its parent's conv stride over the sample rate."""
    return model.config.parent.stride / SAMPLE_RATE


@dataclass(frozen=True)
class FeatureSpec:
    """A parsed ``--features`` value: ``stream`` is ``frame`` or ``utt``; ``layer`` an int, ``last``,
    ``mean`` or ``embedding``."""

    stream: str
    layer: int | str

    @classmethod
    def parse(cls, text: str, stacked: bool = False) -> FeatureSpec:
        """``frame:last`` ... from its text; ``stacked`` allows ``frame:all`` (every layer in one array)."""
        stream, sep, layer = text.partition(":")
        if not sep or stream not in ("frame", "utt"):
            choices = "frame:all|" if stacked else ""
            raise InputError(f"--features {text!r}: expected {choices}frame:last|frame:N|frame:mean|utt:N|utt:embedding")
        if layer.isdigit():
            value = int(layer)
            if stream == "utt" and value < 1:
                raise InputError(f"--features {text!r}: utterance layers are numbered from 1 (z^1 .. z^(L-1))")
            return cls(stream, value)
        allowed = (("last", "mean", "all") if stacked else ("last", "mean")) if stream == "frame" else ("embedding",)
        if layer not in allowed:
            raise InputError(f"--features {text!r}: after '{stream}:' use a layer number or one of {allowed}")
        return cls(stream, layer)

    def __str__(self) -> str:
        return f"{self.stream}:{self.layer}"

    @property
    def per_frame(self) -> bool:
        """True for (frames, dim) features; False for the pooled utterance embedding."""
        return self.layer != "embedding"

    def trim(self, array: np.ndarray, frames: int) -> np.ndarray:
        """Keep the ``frames`` valid frames (the frame axis is 1 for ``frame:all``, else 0; embeddings as they are)."""
        if not self.per_frame:
            return array
        return array[:, :frames] if self.layer == "all" else array[:frames]

    def select(self, output, num_trainable_layers: int):
        """Pick this representation from an ``InferenceOutput`` of one utterance: (T, D) or (D,) tensor, or
        (L + 1, T, D) for ``frame:all``."""
        import torch

        if self.stream == "utt":
            if self.layer == "embedding":
                return output.utt_embedding[0]
            layers = output.utt_hidden_states
            assert isinstance(self.layer, int)  # parse: utt:N or utt:embedding
            if self.layer > len(layers):
                raise InputError(f"--features {self}: the utterance encoder has layers 1..{len(layers)}")
            return output.utt_hidden_states[self.layer - 1][0]
        states = output.frame_hidden_states
        if self.layer == "all":
            return torch.stack([state[0] for state in states])
        if self.layer == "last":
            return states[-1][0]
        if self.layer == "mean":
            return sum(states[-num_trainable_layers:])[0] / num_trainable_layers
        assert isinstance(self.layer, int)  # parse: frame:N or one of the names above
        if self.layer >= len(states):
            raise InputError(f"--features {self}: the frame path has hidden states 0..{len(states) - 1}")
        return states[self.layer][0]


def find_audio(folder: str | os.PathLike[str], utterances: Iterable[str] | None = None) -> dict[str, Path]:
    """``{utt_id: path}`` of the .flac/.wav files under ``folder`` (recursively), restricted to ``utterances``.

    Raises:
        FileNotFoundError: the folder is missing, holds no audio, or lacks some of ``utterances``.
    """
    folder = Path(folder)
    if folder.is_file():
        raise InputError(f"{folder}: a file, expected a folder of {'/'.join(AUDIO_EXTENSIONS)} files")
    if not folder.is_dir():
        raise MissingInputError(f"audio folder not found: {folder}")
    found = {p.stem: p for ext in AUDIO_EXTENSIONS for p in sorted(folder.rglob(f"*{ext}"))}
    if not found:
        raise MissingInputError(f"no {'/'.join(AUDIO_EXTENSIONS)} files under {folder}")
    if utterances is None:
        return found
    wanted = list(dict.fromkeys(utterances))
    missing = [u for u in wanted if u not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingInputError(f"{len(missing)} utterance(s) have no audio file under {folder}: {shown}")
    return {u: found[u] for u in wanted}


# Bump when extraction changes what is written or how cache.json identifies the audio: older caches are recomputed.
FEATURES_VERSION = 2
CACHE_FILE = "cache.json"




def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audio_identity(path: Path, known: Mapping[str, object] | None = None) -> dict[str, object]:
    """What identifies an audio file's content: its size and SHA-256, with its resolved path and modification time.

    ``known`` is an earlier identity of the utterance: when the path, size and modification time are the same,
    its hash is taken without reading the file again.
    """
    stat = path.stat()
    where = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if known and all(known.get(k) == v for k, v in where.items()) and known.get("sha256"):
        return {**where, "sha256": known["sha256"]}
    return {**where, "sha256": _sha256(path)}


def same_content(a: Mapping[str, object] | None, b: Mapping[str, object]) -> bool:
    """Two identities of the same bytes (the path and modification time do not matter)."""
    return a is not None and a.get("size") == b["size"] and a.get("sha256") == b["sha256"]


class _Cache:
    """``cache.json`` of one feature folder: the key and the audio identity of each valid ``<utt>.npy``."""

    def __init__(self, folder: Path, key: dict, log: Callable[[str], None]) -> None:
        self.folder, self.path = folder, folder / CACHE_FILE
        try:
            stored = read_json(self.path) if self.path.is_file() else None
        except FileReadError:  # unreadable: treated like no key at all
            stored = None
        key = {**key, "code": f"learn2diss {__version__}, features v{FEATURES_VERSION}"}
        stale = stored is None or stored.get("key") != key
        if stale and any(folder.glob("*.npy")):
            old_key = (stored or {}).get("key") or {}
            why = "it has no cache key" if stored is None else "it was computed for another " + ", ".join(
                k for k in key if old_key.get(k) != key[k])
            log(f"note: recomputing the features in {folder}: {why}")
            for old in folder.glob("*.npy"):
                old.unlink()
        self.key = key
        self.sources: dict[str, dict] = {} if stale or stored is None else dict(stored.get("sources", {}))

    def valid(self, utt: str, identity: Mapping[str, object]) -> bool:
        return same_content(self.sources.get(utt), identity) and (self.folder / f"{utt}.npy").is_file()

    def save(self) -> None:
        write_json(self.path, {"key": self.key, "sources": self.sources})


def extract_features(
    model,
    audio: Mapping[str, Path],
    specs: Sequence[FeatureSpec],
    folders: Mapping[str, str | os.PathLike[str]],
    device: str = "cpu",
    progress: bool = True,
    key: Mapping[str, str] | None = None,
    dtype: type = np.float32,
) -> None:
    """Run ``model`` on each utterance and write ``folders[str(spec)]/<utt>.npy`` for every spec (``dtype``).

    Each folder's ``cache.json`` holds the key: the weights' digest of ``model``
    (:func:`~learn2diss.eval.results.state_digest`, equal to its checkpoint's) and its config, the spec, the code version
    and ``key`` (anything else the features depend on). Files of a folder with another key, or whose audio
    content changed (:func:`audio_identity`), are recomputed; the others are skipped (resume), wherever the
    audio now lies. Each folder is locked while it is filled (concurrent runs take turns). Frame features are
    trimmed to the valid frames.
    """
    import torch
    from tqdm import tqdm

    from learn2diss.data.audio import read_audio
    from learn2diss.eval.results import state_digest
    from learn2diss.schema import to_dict

    targets = {str(spec): Path(folders[str(spec)]) for spec in specs}
    with contextlib.ExitStack() as stack:
        for folder in sorted(set(targets.values())):
            stack.enter_context(locked(folder / CACHE_FILE))
            remove_temporaries(folder)  # of a run that was killed while writing into it
        base = {"model": state_digest(model.state_dict()), "config": to_dict(model.config),
                "dtype": np.dtype(dtype).name, **(key or {})}
        caches = {name: _Cache(folder, {**base, "spec": name}, tqdm.write) for name, folder in targets.items()}
        identities = {}
        for utt, path in audio.items():
            known = next((c.sources[utt] for c in caches.values() if utt in c.sources), None)
            identities[utt] = audio_identity(Path(path), known)
        todo = [u for u in audio if not all(c.valid(u, identities[u]) for c in caches.values())]
        moved = False
        for cache in caches.values():  # same content, new place: remember where, to skip hashing next time
            for utt, identity in identities.items():
                if utt not in todo and cache.sources.get(utt) != identity:
                    cache.sources[utt], moved = identity, True
        if moved and not todo:
            for cache in caches.values():
                cache.save()
        if not todo:
            return
        model = model.to(device).eval()
        trainable = model.config.parent.num_layers - model.config.frame.num_frozen_layers
        try:
            with torch.inference_mode():
                for n, utt in enumerate(tqdm(todo, desc="extracting features", unit="utt", disable=not progress)):
                    wav = torch.from_numpy(read_audio(audio[utt]))[None].to(device)
                    try:
                        output = model(wav)
                    except InputError as err:  # the model's input checks (too short ...): name the file
                        raise InputError(f"{audio[utt]}: {err}") from None
                    frames = int(output.frame_lengths[0])
                    for spec in specs:
                        array = spec.trim(spec.select(output, trainable).float().cpu().numpy(), frames)
                        save_npy(targets[str(spec)] / f"{utt}.npy",
                                 np.ascontiguousarray(array, dtype=dtype))
                        caches[str(spec)].sources[utt] = identities[utt]
                    if n % 200 == 199:
                        for cache in caches.values():
                            cache.save()
        finally:  # an interrupted run keeps what it finished
            for cache in caches.values():
                cache.save()


def load_features(folder: str | os.PathLike[str], utterances: Iterable[str]) -> dict[str, np.ndarray]:
    """Read ``folder/<utt>.npy`` for each utterance (memory-mapped), checked: a missing file, an object array,
    NaN/inf values, or a shape other than (frames, D) / (D,) with the first file's D is an error naming the file."""
    folder = Path(folder)
    out: dict[str, np.ndarray] = {}
    first: tuple[Path, int] | None = None
    for utt in utterances:
        path = folder / f"{utt}.npy"
        if not path.is_file():
            raise MissingInputError(f"feature file missing: {path}")
        array = load_npy(path, mmap=True)
        if array.ndim not in (1, 2) or array.dtype.kind not in "fiu" or not array.size:
            raise InputError(f"{path}: features must be a non-empty (frames, dim) or (dim,) array of numbers, "
                             f"got {array.dtype} {array.shape}")
        if first is None:
            first = (path, array.shape[-1])
        elif array.shape[-1] != first[1]:
            raise InputError(f"{path}: {array.shape[-1]}-dimensional features, but {first[0]} has {first[1]}: "
                             "every file of a feature folder must come from one representation")
        if not np.isfinite(array).all():
            raise InputError(f"{path}: features contain NaN or infinite values")
        out[utt] = array
    return out


def pool_utterance(features: np.ndarray) -> np.ndarray:
    """Mean over frames of (T, D) features; a (D,) embedding is returned unchanged."""
    return features if features.ndim == 1 else np.asarray(features).mean(axis=0)
