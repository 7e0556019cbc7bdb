"""The study's fast evaluations of one checkpoint on one split of a corpus in the demo corpus's layout.

Features are extracted once per utterance (``frame:last``, ``utt:embedding`` and the per-frame utterance layer),
then scored with the project's evaluation functions: linear speaker-ID and phone probes of both encoders
(:mod:`learn2diss.eval.probes`), ZeroSpeech ABX within/across speaker of ``frame:last``
(:mod:`learn2diss.eval.abx`), phone purity / PNMI of ``frame:last`` clusters and speaker purity of z^L
(:mod:`learn2diss.eval.purity`), and the per-position feature-variance diagnostic of g
(:mod:`learn2diss.eval.variance`, when this checkout has it).

A corpus in the demo layout has, for a split ``S``: ``LibriSpeech-style/S/`` (audio), ``alignments/S.tsv``
(phone segments), ``splits/S.tsv`` (utt_id ... speaker columns) and ``abx/S.item``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.study.grid import StudyError

FRAME, UTT, UTT_FRAMES = "frame:last", "utt:embedding", "utt:5"


@dataclass(frozen=True)
class EvalSizes:
    """Sizes of the fast evaluations (the demo's; docs/demo.md explains them)."""

    purity_clusters: int = 100  # frame k-means K (the paper's 2048 needs ~100x more frames)
    probe_max_frames: int = 20_000  # frames per phone-probe split
    probe_test_fraction: float = 0.5  # share of each speaker's utterances the probes are scored on


@dataclass(frozen=True)
class Measurement:
    """One number of one evaluation (percent unless the metric says otherwise)."""

    eval: str
    condition: str
    metric: str
    value: float
    features: str
    details: str = ""

    @property
    def key(self) -> str:
        return f"{self.eval}/{self.condition}/{self.metric}"


@dataclass(frozen=True)
class CorpusSplit:
    """One split of a corpus in the demo layout."""

    root: Path
    name: str

    @property
    def audio(self) -> Path:
        return self.root / "LibriSpeech-style" / self.name

    @property
    def alignments(self) -> Path:
        return self.root / "alignments" / f"{self.name}.tsv"

    @property
    def speakers(self) -> Path:
        return self.root / "splits" / f"{self.name}.tsv"

    @property
    def item(self) -> Path:
        return self.root / "abx" / f"{self.name}.item"

    def check(self) -> None:
        """Every file the evaluations read is there; the error names the first missing one."""
        for path in (self.audio, self.alignments, self.speakers, self.item):
            if not path.exists():
                hint = (" (a demo corpus built without validation speakers: rebuild it with `learn2diss data synth "
                        "--val-speakers N`)" if self.name == "val" else "")
                raise StudyError(f"corpus split {self.name!r}: {path} not found{hint}")


def variance_diagnostic(model, audio: dict[str, Path], device: str, batch_size: int = 8,
                        seed: int = 0) -> list[Measurement] | None:
    """The per-position feature-variance diagnostic of g (``learn2diss.eval.variance``, issue 10) on ``audio``.

    Per-dimension variance of ``frame:last`` on the inference pass and inside one masked pass, at the masked and
    the unmasked positions. None when this checkout has no ``learn2diss.eval.variance`` (then nothing is
    reported in its place).
    """
    try:
        from learn2diss.eval.variance import feature_variance
    except ImportError:
        return None

    from learn2diss.data.audio import read_audio
    from learn2diss.upstream.padding import pad_waveforms

    waves = sorted((read_audio(path) for path in audio.values()), key=len)
    batches = []
    for start in range(0, len(waves), batch_size):
        padded, lengths = pad_waveforms(waves[start:start + batch_size])
        batches.append((padded.to(device), lengths.to(device)))
    stats = feature_variance(model.to(device), batches, seed=seed)
    return [Measurement("variance", FRAME, key, float(value), FRAME, "per-dimension variance, mean over dims")
            for key, value in stats.items() if key.startswith("frame_var_")]


def evaluate_split(model, split: CorpusSplit, sizes: EvalSizes, features_dir: Path, device: str,
                   seed: int = 0) -> list[Measurement]:
    """Probes, ABX, purity/PNMI of ``model`` on ``split``; features are cached in ``features_dir`` (resumable)."""
    from learn2diss.eval.abx import AbxSettings, score_abx
    from learn2diss.eval.alignments import read_alignments
    from learn2diss.eval.commands.common import read_speakers
    from learn2diss.eval.features import (
        FeatureSpec,
        extract_features,
        find_audio,
        frame_shift,
        load_features,
        pool_utterance,
    )
    from learn2diss.eval.probes import ProbeData, probe_encoder, speaker_stratified_split
    from learn2diss.eval.purity import frame_phone_scores, utterance_speaker_purity

    split.check()
    alignments = read_alignments(split.alignments)
    utterances = sorted(alignments)
    speakers = read_speakers(split.speakers, utterances)
    specs = [FeatureSpec.parse(s) for s in (FRAME, UTT, UTT_FRAMES)]
    folders = {str(s): features_dir / str(s).replace(":", "_") for s in specs}
    extract_features(model, find_audio(split.audio, utterances), specs, folders, device=device, progress=False)
    feats = {str(s): load_features(folders[str(s)], utterances) for s in specs}
    shift = frame_shift(model)
    phones = {u: alignments[u].frame_labels(len(feats[FRAME][u]), shift) for u in utterances}
    train, test = speaker_stratified_split(utterances, speakers, sizes.probe_test_fraction, seed)
    out: list[Measurement] = []
    probe_details = f"{len(train)} train / {len(test)} test utterances"
    for encoder, pooled_spec, frame_spec in (("frame", FRAME, FRAME), ("utterance", UTT, UTT_FRAMES)):
        pooled = {u: pool_utterance(a) for u, a in feats[pooled_spec].items()}
        scores = probe_encoder(ProbeData(pooled, feats[frame_spec]), train, test, speakers, phones,
                               sizes.probe_max_frames, seed)
        out.append(Measurement("probes", encoder, "speaker_id_acc", scores["speaker_id_acc"], pooled_spec,
                               probe_details))
        out.append(Measurement("probes", encoder, "phone_acc", scores["phone_acc"], frame_spec, probe_details))
    for score in score_abx(folders[FRAME], split.item, AbxSettings(frame_shift=shift)):
        out.append(Measurement("abx", score.speaker_mode, "abx_error", score.error, FRAME, "zrc_abx2, cosine"))
    phone = frame_phone_scores([feats[FRAME][u] for u in utterances], [phones[u] for u in utterances],
                               k=sizes.purity_clusters, seed=seed)
    details = f"k-means K={phone.clusters} on {phone.frames} frames"
    out += [Measurement("purity", FRAME, "phone_purity", phone.phone_purity, FRAME, details),
            Measurement("purity", FRAME, "pnmi", phone.pnmi, FRAME, details)]
    out += variance_diagnostic(model, find_audio(split.audio, utterances), device, seed=seed) or []
    embeddings = np.stack([feats[UTT][u] for u in utterances])
    labels = [speakers[u] for u in utterances]
    purity, q = utterance_speaker_purity(embeddings, labels, q=len(set(labels)), seed=seed)
    out.append(Measurement("purity", UTT, "speaker_purity", purity, UTT, f"Q={q} clusters"))
    return out
