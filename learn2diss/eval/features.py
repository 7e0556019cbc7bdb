"""Which representation an evaluation reads (``--features``) and its extraction to per-utterance files.

Feature specs:

============== ===================================================================================
``frame:last``  output of the last frame-encoder layer (the paper's choice for ABX, Table 3)
``frame:N``     frame hidden state N as s3prl numbers them: 0 = input of layer 1, N = output of layer N
``frame:mean``  mean of the M frame-encoder layers of g, i.e. ȳ / M (eq. 9; same clusters and cosines as ȳ)
``utt:N``       per-frame output z^N of ECAPA-TDNN layer N = 1 .. L-1 (1024-d in the paper)
``utt:embedding`` the pooled utterance embedding z^L (one vector per utterance)
============== ===================================================================================

Extraction runs the model on one utterance at a time (no padding, so group-norm parents see exactly
the samples of the utterance), writes ``<folder>/<utt_id>.npy`` atomically and skips files that exist,
so an interrupted run resumes.

Example::

    from learn2diss.eval.features import FeatureSpec, extract_features, find_audio
    audio = find_audio("LibriSpeech/dev-clean")
    extract_features(model, audio, [FeatureSpec.parse("frame:last")], {"frame:last": "feats/dev-clean"})
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = (".flac", ".wav")


@dataclass(frozen=True)
class FeatureSpec:
    """A parsed ``--features`` value: ``stream`` is ``frame`` or ``utt``; ``layer`` an int, ``last``,
    ``mean`` or ``embedding``."""

    stream: str
    layer: int | str

    @classmethod
    def parse(cls, text: str) -> FeatureSpec:
        stream, sep, layer = text.partition(":")
        if not sep or stream not in ("frame", "utt"):
            raise ValueError(f"--features {text!r}: expected frame:last|frame:N|frame:mean|utt:N|utt:embedding")
        if layer.isdigit():
            value: int | str = int(layer)
            if stream == "utt" and value < 1:
                raise ValueError(f"--features {text!r}: utterance layers are numbered from 1 (z^1 .. z^(L-1))")
            return cls(stream, value)
        allowed = ("last", "mean") if stream == "frame" else ("embedding",)
        if layer not in allowed:
            raise ValueError(f"--features {text!r}: after '{stream}:' use a layer number or one of {allowed}")
        return cls(stream, layer)

    def __str__(self) -> str:
        return f"{self.stream}:{self.layer}"

    @property
    def per_frame(self) -> bool:
        """True for (frames, dim) features; False for the pooled utterance embedding."""
        return self.layer != "embedding"

    def select(self, output, num_trainable_layers: int):
        """Pick this representation from an ``InferenceOutput`` of one utterance: (T, D) or (D,) tensor."""
        if self.stream == "utt":
            if self.layer == "embedding":
                return output.utt_embedding[0]
            layers = output.utt_hidden_states
            if self.layer > len(layers):
                raise ValueError(f"--features {self}: the utterance encoder has layers 1..{len(layers)}")
            return output.utt_hidden_states[self.layer - 1][0]
        states = output.frame_hidden_states
        if self.layer == "last":
            return states[-1][0]
        if self.layer == "mean":
            return sum(states[-num_trainable_layers:])[0] / num_trainable_layers
        if self.layer >= len(states):
            raise ValueError(f"--features {self}: the frame path has hidden states 0..{len(states) - 1}")
        return states[self.layer][0]


def find_audio(folder: str | os.PathLike[str], utterances: Iterable[str] | None = None) -> dict[str, Path]:
    """``{utt_id: path}`` of the .flac/.wav files under ``folder`` (recursively), restricted to ``utterances``.

    Raises:
        FileNotFoundError: the folder is missing, holds no audio, or lacks some of ``utterances``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"audio folder not found: {folder}")
    found = {p.stem: p for ext in AUDIO_EXTENSIONS for p in sorted(folder.rglob(f"*{ext}"))}
    if not found:
        raise FileNotFoundError(f"no {'/'.join(AUDIO_EXTENSIONS)} files under {folder}")
    if utterances is None:
        return found
    wanted = list(dict.fromkeys(utterances))
    missing = [u for u in wanted if u not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} utterance(s) have no audio file under {folder}: {shown}")
    return {u: found[u] for u in wanted}


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def extract_features(
    model,
    audio: Mapping[str, Path],
    specs: Sequence[FeatureSpec],
    folders: Mapping[str, str | os.PathLike[str]],
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Run ``model`` on each utterance and write ``folders[str(spec)]/<utt>.npy`` for every spec.

    Utterances whose files all exist are skipped (resume). Frame features are trimmed to the valid frames.
    """
    import torch
    from tqdm import tqdm

    from learn2diss.data.audio import read_audio

    targets = {str(spec): Path(folders[str(spec)]) for spec in specs}
    todo = [u for u in audio if not all((targets[str(s)] / f"{u}.npy").exists() for s in specs)]
    if not todo:
        return
    model = model.to(device).eval()
    trainable = model.config.parent.num_layers - model.config.frame.num_frozen_layers
    with torch.inference_mode():
        for utt in tqdm(todo, desc="extracting features", unit="utt", disable=not progress):
            wav = torch.from_numpy(read_audio(audio[utt]))[None].to(device)
            try:
                output = model(wav)
            except ValueError as err:
                raise ValueError(f"{audio[utt]}: {err}") from None
            frames = int(output.frame_lengths[0])
            for spec in specs:
                array = spec.select(output, trainable).float().cpu().numpy()
                if spec.per_frame:
                    array = array[:frames]
                save_npy_atomic(targets[str(spec)] / f"{utt}.npy", np.ascontiguousarray(array, dtype=np.float32))


def load_features(folder: str | os.PathLike[str], utterances: Iterable[str]) -> dict[str, np.ndarray]:
    """Read ``folder/<utt>.npy`` for each utterance (memory-mapped); a missing file is an error naming it."""
    folder = Path(folder)
    out = {}
    for utt in utterances:
        path = folder / f"{utt}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"feature file missing: {path}")
        out[utt] = np.load(path, mmap_mode="r")
    return out


def pool_utterance(features: np.ndarray) -> np.ndarray:
    """Mean over frames of (T, D) features; a (D,) embedding is returned unchanged."""
    return features if features.ndim == 1 else np.asarray(features).mean(axis=0)
