"""The run config: one YAML file per model, packaged in ``learn2diss/configs/``, validated at load.

:class:`Config` is the whole run: ``model:`` (:class:`learn2diss.upstream.config.ModelConfig`) and one
frozen dataclass per pretraining section (paper §3.3). ``--config`` takes a packaged name (``l2d_w12``)
or a YAML path. A file may start from another with ``base: NAME`` (or a path relative to it) and give only
the keys it changes; mappings merge key by key. Every key is required and has no default in the
dataclasses: the YAML files are the one source of the settings (docs/pretraining.md, "Configs"). An
unknown, missing, mistyped or out-of-range key is a :class:`ConfigError` that names the file and the dotted
key; ``--set a.b=value`` overrides go through the same checks. docs/pretraining.md explains each switch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from learn2diss.schema import (
    ConfigError,
    check_ranges,
    find_config,
    load_config_file,
    non_negative,
    positive,
    read_config_data,
    to_dict,
)
from learn2diss.schema import packaged_configs as schema_packaged_configs
from learn2diss.training.config import OptimizerConfig, TrainConfig
from learn2diss.upstream.config import ModelConfig

__all__ = ["Config", "ConfigError", "config_path", "config_to_dict", "load_config", "packaged_configs", "read_config"]


@dataclass(frozen=True)
class DataConfig:
    """Batching of the training stages."""

    max_batch_seconds: float  # padded audio per micro-batch per GPU (25 s in the paper)
    max_utterance_seconds: float  # longer utterances are randomly cropped (frame-aligned)
    min_utterance_seconds: float  # shorter ones are left out of training, and counted
    segment_seconds: float  # length of each of the two non-overlapping views for h (eq. 5)
    num_workers: int  # DataLoader worker processes per GPU
    shards: str | None  # a `learn2diss data shard` folder: the training stages read WebDataset shards
    shuffle_buffer: int  # utterances in the shard loader's shuffle buffer (shards only)
    # > 0: each batch is padded to a multiple of this (and budgeted so), so that its shapes repeat: cuDNN's autotuned
    # convolutions and compiled graphs are reused (train.compile); 0: padded to its longest utterance
    bucket_seconds: float
    seed: int  # batch order, crops and segment positions

    def __post_init__(self) -> None:
        shortest, longest = self.min_utterance_seconds, self.max_utterance_seconds
        check_ranges(
            ("min_utterance_seconds", shortest, 0 < shortest <= longest, f"in (0, max_utterance_seconds = {longest}]"),
            ("max_utterance_seconds", longest, longest <= self.max_batch_seconds,
             f"<= max_batch_seconds = {self.max_batch_seconds}"),
            positive("max_batch_seconds", self.max_batch_seconds),
            positive("segment_seconds", self.segment_seconds),
            ("num_workers", self.num_workers, self.num_workers >= 0, ">= 0"),
            ("shuffle_buffer", self.shuffle_buffer, self.shuffle_buffer >= 1, ">= 1"),
            ("bucket_seconds", self.bucket_seconds, 0 <= self.bucket_seconds <= self.max_utterance_seconds,
             f"in [0, max_utterance_seconds = {longest}]"),
        )


@dataclass(frozen=True)
class FrameTargetsConfig:
    """Stage a: k-means (K = model.frame.num_targets) on one parent layer -> a label per 20 ms frame."""

    # index into frame_hidden_states (0 = input of layer 1): 9 for HuBERT, 11 for WavLM; or "mfcc": HuBERT's
    # iteration 1 (39-d MFCC + deltas at 50 Hz, no parent needed; how the demo pretrains its small parent)
    layer: int | Literal["mfcc"]
    fit_max_frames: int  # random frames (from random utterances) used to fit k-means
    kmeans_iterations: int
    batch_seconds: float  # audio per extraction batch (inference, no gradient)
    seed: int

    def __post_init__(self) -> None:
        check_ranges(
            ("layer", self.layer, self.layer == "mfcc" or self.layer >= 0, ">= 0 or mfcc"),
            ("fit_max_frames", self.fit_max_frames, self.fit_max_frames >= 1, ">= 1"),
            ("kmeans_iterations", self.kmeans_iterations, self.kmeans_iterations >= 1, ">= 1"),
            positive("batch_seconds", self.batch_seconds),
        )


@dataclass(frozen=True)
class InfoNCEConfig:
    """Eq. 5."""

    temperature: float  # eq. 5 as printed has none (tau = 1); SimCLR uses 0.1-0.5
    denominator: Literal["all_others", "paper"]  # NT-Xent, or eq. 5's indicator read literally

    def __post_init__(self) -> None:
        check_ranges(positive("temperature", self.temperature))


@dataclass(frozen=True)
class UttSimCLRConfig:
    """Stage b: h alone, InfoNCE on the two 1-s segments of each utterance."""

    steps: int
    grad_accum: int
    max_batch_seconds: float  # padded audio per micro-batch per GPU (only f runs on it, without gradient)
    optimizer: OptimizerConfig
    infonce: InfoNCEConfig

    def __post_init__(self) -> None:
        check_ranges(
            ("steps", self.steps, self.steps >= 0, ">= 0"),
            ("grad_accum", self.grad_accum, self.grad_accum >= 1, ">= 1"),
            positive("max_batch_seconds", self.max_batch_seconds),
        )


@dataclass(frozen=True)
class UttTargetsConfig:
    """Stage c: k-means of the pooled embeddings z^L for several Q, knee point, labels."""

    cluster_counts: tuple[int, ...]  # the Q of the knee curve
    use_knee: bool  # Q = knee point; false: Q = model.utterance.num_targets (the curve is still drawn)
    normalize: bool  # L2-normalise the embeddings first (InfoNCE trains cosine similarity)
    kmeans_iterations: int
    batch_seconds: float  # audio per embedding batch
    max_utterance_seconds: float  # longer utterances are embedded from their first part
    seed: int

    def __post_init__(self) -> None:
        counts = list(self.cluster_counts)
        check_ranges(
            ("cluster_counts", counts, bool(counts) and min(counts) >= 2 and counts == sorted(set(counts)),
             "increasing values >= 2"),
            ("kmeans_iterations", self.kmeans_iterations, self.kmeans_iterations >= 1, ">= 1"),
            positive("batch_seconds", self.batch_seconds),
            positive("max_utterance_seconds", self.max_utterance_seconds),
        )


@dataclass(frozen=True)
class PseudoConConfig:
    """L_PC^g of eq. 3 (SupCon form; see learn2diss.pretrain.losses.pseudo_con_loss)."""

    weight: float  # eq. 4 adds it with weight 1; 0 turns it off
    temperature: float
    normalize: bool  # cosine similarity
    denominator: Literal["all_others", "negatives"]  # SupCon, or A(t) of eq. 3 as printed
    max_frames: int  # random subset of the selected frames per micro-batch (N^2 memory); 0 = all

    def __post_init__(self) -> None:
        check_ranges(
            non_negative("weight", self.weight),
            positive("temperature", self.temperature),
            ("max_frames", self.max_frames, self.max_frames >= 0, ">= 0 (0: all)"),
        )


@dataclass(frozen=True)
class CLUBConfig:
    """L_MI of eq. 8-9 and its variational network q_phi (eq. 2)."""

    optimizer: OptimizerConfig  # q_phi's own Adam (1e-6 in the paper)
    weight: float  # lambda of eq. 10; 0 is Table 5's "without MI" (the estimate is still logged)
    representation: Literal["aggregate", "final"]  # eq. 9, or (y^M, z^L): Table 6 without aggregation
    hidden_dim: int
    logvar_activation: Literal["tanh", "none"]
    inner_steps: int  # q_phi NLL steps on detached features per micro-batch, before the main step
    negatives: Literal["same_time", "all_frames"]  # the j of eq. 8's negative term
    frame_reduction: Literal["sum", "mean"]  # eq. 8 sums over frames and averages over utterances
    # not in the paper (docs/pretraining.md "Where the CLUB estimate can cheat"): y-bar, z-bar standardised per
    # dimension (no learned scale) before q_phi and the estimate, so that rescaling the features cannot lower it
    standardize: Literal["none", "batch"]
    frame_pass: Literal["masked", "unmasked"]  # y-bar from the masked g pass, or an extra unmasked one
    z_source: Literal["aggregate", "last"]  # z-bar: eq. 9's aggregate, or z^L alone (y-bar unchanged)

    def __post_init__(self) -> None:
        check_ranges(
            non_negative("weight", self.weight),
            ("hidden_dim", self.hidden_dim, self.hidden_dim >= 1, ">= 1"),
            ("inner_steps", self.inner_steps, self.inner_steps >= 0, ">= 0"),
        )


@dataclass(frozen=True)
class JointConfig:
    """Stage d: L_total of eq. 10."""

    steps: int
    grad_accum: int
    loss_frames: Literal["masked", "all"]  # frames of L_CE^g and L_PC^g (HuBERT: masked only)
    # 0: f frozen (Learn2Diss, §3.2.1). > 0: a parent's own pretraining trains the front end too (conv encoder,
    # feature projection, positional conv) with the frame optimiser, the conv gradient times this (HuBERT's
    # feature_grad_mult, 0.1); needs model.frame.num_frozen_layers = 0
    feature_grad_mult: float
    frame_optimizer: OptimizerConfig  # g (+ W_g)
    utterance_optimizer: OptimizerConfig  # h (+ W_h, A^l)
    pseudo_con: PseudoConConfig
    infonce: InfoNCEConfig
    club: CLUBConfig

    def __post_init__(self) -> None:
        check_ranges(
            ("steps", self.steps, self.steps >= 0, ">= 0"),
            ("grad_accum", self.grad_accum, self.grad_accum >= 1, ">= 1"),
            ("feature_grad_mult", self.feature_grad_mult, self.feature_grad_mult >= 0, ">= 0 (0: f frozen)"),
        )


@dataclass(frozen=True)
class Config:
    """A whole run: the model architecture and the pretraining stages (docs/pretraining.md)."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    frame_targets: FrameTargetsConfig
    utt_simclr: UttSimCLRConfig
    utt_targets: UttTargetsConfig
    joint: JointConfig

    def __post_init__(self) -> None:
        layer, layers = self.frame_targets.layer, self.model.parent.num_layers
        check_ranges(("frame_targets.layer", layer, layer == "mfcc" or layer <= layers,
                      f"<= model.parent.num_layers = {layers}, or mfcc"),
                     ("joint.feature_grad_mult", self.joint.feature_grad_mult,
                      not self.joint.feature_grad_mult or not self.model.frame.num_frozen_layers,
                      "0 when model.frame.num_frozen_layers > 0 (a trainable front end is for a parent, N = 0)"))


def packaged_configs() -> list[str]:
    """Names of the run configs that ship with the package (``learn2diss/configs/*.yaml``)."""
    return schema_packaged_configs()


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file of a run config: an existing file, or a packaged name (``l2d_w12`` or ``l2d_w12.yaml``)."""
    return find_config(name_or_path)


def read_config(name_or_path: str | Path) -> dict:
    """The plain mapping of a run config with its ``base:`` chain merged in (not yet validated)."""
    return read_config_data(config_path(name_or_path))


def load_config(name_or_path: str | Path, overrides: Iterable[str | tuple[str, Any]] = ()) -> Config:
    """Read (with its bases), override and validate a run config given by packaged name or path."""
    return load_config_file(Config, name_or_path, overrides=overrides)


def config_to_dict(config: Config) -> dict:
    """Plain-data form, for saving next to checkpoints."""
    return to_dict(config)
