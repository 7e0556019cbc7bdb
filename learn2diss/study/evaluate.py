"""The study's fast evaluations of one checkpoint on one split of a corpus in the demo corpus's layout.

Features are extracted once per utterance (``frame:last``, ``utt:embedding`` and the per-frame utterance layer),
then scored with the project's evaluation functions: linear speaker-ID and phone probes of both encoders and a
per-frame speaker probe of g, with their accuracies and cross-entropies (:mod:`learn2diss.eval.probes`),
speaker-verification EER of both encoders (:mod:`learn2diss.eval.verification`), ZeroSpeech ABX within/across
speaker of ``frame:last`` (:mod:`learn2diss.eval.abx`), phone purity / PNMI of ``frame:last`` clusters and
speaker purity of z^L (:mod:`learn2diss.eval.purity`), the PER of a linear CTC head on ``frame:last``
(:mod:`learn2diss.eval.phone_recognition`) and the per-position feature-variance diagnostic of g
(:mod:`learn2diss.eval.variance`). :func:`score_frame_features` scores any per-frame features the same way, so
MFCC floors are measured by the same code on the same frames and items as the models.

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
    asr_train_utterances: int = 300  # train-split utterances of the phone-recognition head (0: no PER)
    asr_epochs: int = 20  # passes of its CTC training
    variance: bool = True  # the feature-variance diagnostic of g


def asr_utterances(corpus: Path, count: int) -> list[str]:
    """The training utterances of the phone-recognition head: ``count`` spread evenly over the train split."""
    from learn2diss.eval.alignments import read_alignments

    utts = sorted(read_alignments(corpus / "alignments" / "train.tsv"))
    return utts[:: max(1, len(utts) // count)][:count]


def phone_error_rate_of(train_folder: Path, folder: Path, split: CorpusSplit, sizes: EvalSizes, seed: int = 0
                        ) -> tuple[float, str]:
    """PER (%) on ``split`` of the linear CTC head trained on the features in ``train_folder`` (of the
    :func:`asr_utterances`), scored on those in ``folder``."""
    from learn2diss.data.synth.phones import SILENCE
    from learn2diss.eval.alignments import read_alignments
    from learn2diss.eval.features import load_features
    from learn2diss.eval.phone_recognition import HeadSettings, phone_error_rate

    train_al = read_alignments(split.root / "alignments" / "train.tsv")
    test_al = read_alignments(split.alignments)
    train = asr_utterances(split.root, sizes.asr_train_utterances)
    phones = {u: [p for p in a.phones if p != SILENCE] for al in (train_al, test_al) for u, a in al.items()}
    return phone_error_rate(load_features(train_folder, train), phones, load_features(folder, sorted(test_al)),
                            phones, HeadSettings(epochs=sizes.asr_epochs, seed=seed))


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
                        seed: int = 0) -> list[Measurement]:
    """The per-position feature-variance diagnostic of g (:mod:`learn2diss.eval.variance`) on ``audio``.

    Per-dimension variance of ``frame:last`` on the inference pass and inside one masked pass, at the masked and
    the unmasked positions.
    """
    from learn2diss.data.audio import read_audio
    from learn2diss.eval.variance import feature_variance
    from learn2diss.upstream.padding import pad_waveforms

    waves = sorted((read_audio(path) for path in audio.values()), key=len)
    batches = []
    for start in range(0, len(waves), batch_size):
        padded, lengths = pad_waveforms(waves[start:start + batch_size])
        batches.append((padded.to(device), lengths.to(device)))
    stats = feature_variance(model.to(device), batches, seed=seed)
    return [Measurement("variance", FRAME, key, float(value), FRAME, "per-dimension variance, mean over dims")
            for key, value in stats.items() if key.startswith("frame_var_")]


@dataclass(frozen=True)
class SplitLabels:
    """What the probes of one split know: utterances, speakers, per-frame phones and the probes' utterance split."""

    utterances: list[str]
    speakers: dict[str, str]
    phones: dict[str, np.ndarray]  # per utterance, one label per frame ("" unaligned)
    train: list[str]
    test: list[str]

    @classmethod
    def read(cls, split: CorpusSplit, frames: dict[str, int], shift: float, sizes: EvalSizes, seed: int) -> SplitLabels:
        """Labels of ``split`` for features with ``frames[utt]`` frames of ``shift`` seconds."""
        from learn2diss.eval.alignments import read_alignments
        from learn2diss.eval.commands.common import read_speakers
        from learn2diss.eval.probes import speaker_stratified_split

        alignments = read_alignments(split.alignments)
        utterances = sorted(alignments)
        speakers = read_speakers(split.speakers, utterances)
        phones = {u: alignments[u].frame_labels(frames[u], shift) for u in utterances}
        train, test = speaker_stratified_split(utterances, speakers, sizes.probe_test_fraction, seed)
        return cls(utterances, speakers, phones, train, test)


def _utterance_probe(pooled: dict[str, np.ndarray], labels: SplitLabels):
    from learn2diss.eval.probes import linear_probe_scores

    return linear_probe_scores(np.stack([pooled[u] for u in labels.train]), [labels.speakers[u] for u in labels.train],
                               np.stack([pooled[u] for u in labels.test]), [labels.speakers[u] for u in labels.test])


def _frame_probe(frames: dict[str, np.ndarray], labels: SplitLabels, target: str, max_frames: int, seed: int):
    """Linear probe of every aligned frame's phone (``target="phone"``) or speaker (``"speaker"``)."""
    from learn2diss.eval.probes import linear_probe_scores, sample_frames

    def sample(utts: list[str], offset: int):
        y = [labels.phones[u] if target == "phone" else np.where(labels.phones[u] != "", labels.speakers[u], "")
             for u in utts]
        return sample_frames([frames[u] for u in utts], y, max_frames, seed + offset)

    return linear_probe_scores(*sample(labels.train, 0), *sample(labels.test, 1))


def score_frame_features(folder: Path, split: CorpusSplit, labels: SplitLabels, shift: float, sizes: EvalSizes,
                         seed: int = 0, encoder: str = "frame", spec: str = FRAME,
                         asr_train: Path | None = None) -> list[Measurement]:
    """Every measure of per-frame features ``folder/<utt>.npy`` (a model's ``frame:last`` or MFCCs): speaker-ID
    from mean-pooled features, a per-frame speaker probe, speaker verification EER of the pooled features,
    the phone probe, ABX within/across speaker, phone purity / PNMI of k-means clusters and, given the same
    features of the :func:`asr_utterances` in ``asr_train``, the PER of the linear CTC head."""
    from learn2diss.eval.abx import AbxSettings, score_abx
    from learn2diss.eval.features import load_features, pool_utterance
    from learn2diss.eval.purity import frame_phone_scores
    from learn2diss.eval.verification import cosine_eer

    feats = load_features(folder, labels.utterances)
    pooled = {u: pool_utterance(a) for u, a in feats.items()}
    probe = f"{len(labels.train)} train / {len(labels.test)} test utterances"
    speaker = _utterance_probe(pooled, labels)
    speaker_frames = _frame_probe(feats, labels, "speaker", sizes.probe_max_frames, seed)
    phone = _frame_probe(feats, labels, "phone", sizes.probe_max_frames, seed)
    out = [Measurement("probes", encoder, "speaker_id_acc", speaker.accuracy, spec, probe),
           Measurement("probes", encoder, "speaker_id_bits", speaker.cross_entropy_bits, spec, probe),
           Measurement("probes", encoder, "speaker_frame_acc", speaker_frames.accuracy, spec, probe),
           Measurement("probes", encoder, "speaker_frame_bits", speaker_frames.cross_entropy_bits, spec, probe),
           Measurement("verification", encoder, "eer", cosine_eer(np.stack([pooled[u] for u in labels.utterances]),
                                                                 [labels.speakers[u] for u in labels.utterances]),
                       spec, f"centred cosine, every pair of {len(labels.utterances)} utterances"),
           Measurement("probes", encoder, "phone_acc", phone.accuracy, spec, probe),
           Measurement("probes", encoder, "phone_bits", phone.cross_entropy_bits, spec, probe)]
    for score in score_abx(folder, split.item, AbxSettings(frame_shift=shift)):
        out.append(Measurement("abx", score.speaker_mode, "abx_error", score.error, spec, "zrc_abx2, cosine"))
    scores = frame_phone_scores([feats[u] for u in labels.utterances], [labels.phones[u] for u in labels.utterances],
                                k=sizes.purity_clusters, seed=seed)
    details = f"k-means K={scores.clusters} on {scores.frames} frames"
    out += [Measurement("purity", spec, "phone_purity", scores.phone_purity, spec, details),
            Measurement("purity", spec, "pnmi", scores.pnmi, spec, details)]
    if asr_train is not None:
        per, details = phone_error_rate_of(asr_train, folder, split, sizes, seed)
        out.append(Measurement("asr", "linear-ctc", "per", per, spec, details))
    return out


def evaluate_split(model, split: CorpusSplit, sizes: EvalSizes, features_dir: Path, device: str,
                   seed: int = 0) -> list[Measurement]:
    """Probes, verification, ABX, purity/PNMI of ``model`` on ``split``; features are cached in ``features_dir``
    (resumable). The frame encoder's ``frame:last`` is scored by :func:`score_frame_features`; the utterance
    encoder by speaker-ID, EER and speaker purity of z^L and the phone probe of its per-frame layer ``utt:5``."""
    from learn2diss.eval.alignments import read_alignments
    from learn2diss.eval.features import (
        FeatureSpec,
        extract_features,
        find_audio,
        frame_shift,
        load_features,
    )
    from learn2diss.eval.purity import utterance_speaker_purity
    from learn2diss.eval.verification import cosine_eer

    split.check()
    specs = [FeatureSpec.parse(s) for s in (FRAME, UTT, UTT_FRAMES)]
    folders = {str(s): features_dir / str(s).replace(":", "_") for s in specs}
    utterances = sorted(read_alignments(split.alignments))
    extract_features(model, find_audio(split.audio, utterances), specs, folders, device=device, progress=False)
    asr_train = None
    if sizes.asr_train_utterances:  # the head's training features, shared by the splits of one model
        asr_train = features_dir.parent / "asr-train" / "frame_last"
        train_audio = find_audio(split.root / "LibriSpeech-style" / "train",
                                 asr_utterances(split.root, sizes.asr_train_utterances))
        extract_features(model, train_audio, [specs[0]], {FRAME: asr_train}, device=device, progress=False)
    shift = frame_shift(model)
    frames = {u: len(a) for u, a in load_features(folders[FRAME], utterances).items()}
    labels = SplitLabels.read(split, frames, shift, sizes, seed)
    out = score_frame_features(folders[FRAME], split, labels, shift, sizes, seed, asr_train=asr_train)
    embeddings = load_features(folders[UTT], labels.utterances)
    speaker = _utterance_probe(embeddings, labels)
    phone = _frame_probe(load_features(folders[UTT_FRAMES], labels.utterances), labels, "phone",
                         sizes.probe_max_frames, seed)
    probe = f"{len(labels.train)} train / {len(labels.test)} test utterances"
    stacked = np.stack([embeddings[u] for u in labels.utterances])
    speakers = [labels.speakers[u] for u in labels.utterances]
    out += [Measurement("probes", "utterance", "speaker_id_acc", speaker.accuracy, UTT, probe),
            Measurement("probes", "utterance", "speaker_id_bits", speaker.cross_entropy_bits, UTT, probe),
            Measurement("verification", "utterance", "eer", cosine_eer(stacked, speakers), UTT,
                        f"centred cosine, every pair of {len(speakers)} utterances"),
            Measurement("probes", "utterance", "phone_acc", phone.accuracy, UTT_FRAMES, probe),
            Measurement("probes", "utterance", "phone_bits", phone.cross_entropy_bits, UTT_FRAMES, probe)]
    if sizes.variance:
        out += variance_diagnostic(model, find_audio(split.audio, labels.utterances), device, seed=seed)
    purity, q = utterance_speaker_purity(stacked, speakers, q=len(set(speakers)), seed=seed)
    out.append(Measurement("purity", UTT, "speaker_purity", purity, UTT, f"Q={q} clusters"))
    return out
