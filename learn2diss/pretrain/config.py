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

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from learn2diss.schema import (
    ConfigError,
    apply_overrides,
    deep_merge,
    from_dict,
    read_yaml,
    to_dict,
)
from learn2diss.upstream.config import ModelConfig

__all__ = ["Config", "ConfigError", "config_path", "config_to_dict", "load_config", "packaged_configs", "read_config"]


@dataclass(frozen=True)
class DataConfig:
    """Batching of the training stages."""

    max_batch_seconds: float = 25.0  # padded audio per micro-batch per GPU (25 s in the paper)
    max_utterance_seconds: float = 15.0  # longer utterances are randomly cropped (frame-aligned)
    min_utterance_seconds: float = 1.0  # shorter ones are left out of training, and counted
    segment_seconds: float = 1.0  # length of each of the two non-overlapping views for h (eq. 5)
    num_workers: int = 4  # DataLoader worker processes per GPU
    shards: str | None = None  # a `learn2diss data shard` folder: the training stages read WebDataset shards
    shuffle_buffer: int = 1000  # utterances in the shard loader's shuffle buffer (shards only)
    seed: int = 0  # batch order, crops and segment positions

    def __post_init__(self) -> None:
        if not 0 < self.min_utterance_seconds <= self.max_utterance_seconds <= self.max_batch_seconds:
            raise ValueError("need 0 < min_utterance_seconds <= max_utterance_seconds <= max_batch_seconds, got "
                             f"{self.min_utterance_seconds}, {self.max_utterance_seconds}, {self.max_batch_seconds}")
        if self.segment_seconds <= 0 or self.num_workers < 0 or self.shuffle_buffer < 1:
            raise ValueError("segment_seconds must be > 0, num_workers >= 0 and shuffle_buffer >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Engineering settings shared by the two training stages (utt-simclr and joint)."""

    seed: int = 0  # model init (random parent), dropout
    checkpoint_every: int = 1000  # optimiser steps between checkpoints
    keep_checkpoints: int = 3  # older ones are deleted
    log_every: int = 50  # optimiser steps between TensorBoard points
    max_nonfinite_steps: int = 100  # abort after this many skipped steps (NaN/inf loss) in a stage
    precision: Literal["bf16", "fp32"] = "bf16"  # autocast dtype on CUDA; the CPU always runs fp32

    def __post_init__(self) -> None:
        if min(self.checkpoint_every, self.keep_checkpoints, self.log_every) < 1 or self.max_nonfinite_steps < 0:
            raise ValueError("checkpoint_every, keep_checkpoints and log_every must be >= 1, "
                             "max_nonfinite_steps >= 0")


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam (Kingma & Ba) with a constant or warm-up + linear-decay learning rate."""

    lr: float  # peak (or constant) learning rate
    schedule: Literal["constant", "warmup_linear"]  # warmup_linear: initial_lr -> lr over warmup_steps, then -> final_lr
    initial_lr: float
    final_lr: float
    warmup_steps: int
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    clip_grad_norm: float  # 0 disables clipping

    def __post_init__(self) -> None:
        if min(self.lr, self.initial_lr, self.final_lr) < 0 or self.warmup_steps < 0 or self.clip_grad_norm < 0:
            raise ValueError("learning rates, warmup_steps and clip_grad_norm must be >= 0")


@dataclass(frozen=True)
class FrameTargetsConfig:
    """Stage a: k-means (K = model.frame.num_targets) on one parent layer -> a label per 20 ms frame."""

    # index into frame_hidden_states (0 = input of layer 1): 9 for HuBERT, 11 for WavLM; or "mfcc": HuBERT's
    # iteration 1 (39-d MFCC + deltas at 50 Hz, no parent needed; how the demo pretrains its small parent)
    layer: int | Literal["mfcc"] = 11
    fit_max_frames: int = 1_000_000  # random frames (from random utterances) used to fit k-means
    kmeans_iterations: int = 20
    batch_seconds: float = 200.0  # audio per extraction batch (inference, no gradient)
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.layer != "mfcc" and self.layer < 0) or self.fit_max_frames < 1 or self.kmeans_iterations < 1 \
                or self.batch_seconds <= 0:
            raise ValueError("layer >= 0 (or mfcc), fit_max_frames >= 1, kmeans_iterations >= 1, batch_seconds > 0 "
                             "required")


@dataclass(frozen=True)
class InfoNCEConfig:
    """Eq. 5."""

    temperature: float = 0.1  # eq. 5 as printed has none (tau = 1); SimCLR uses 0.1-0.5
    denominator: Literal["all_others", "paper"] = "all_others"  # NT-Xent, or eq. 5's indicator read literally

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class UttSimCLRConfig:
    """Stage b: h alone, InfoNCE on the two 1-s segments of each utterance."""

    steps: int
    grad_accum: int
    max_batch_seconds: float  # padded audio per micro-batch per GPU (only f runs on it, without gradient)
    optimizer: OptimizerConfig
    infonce: InfoNCEConfig

    def __post_init__(self) -> None:
        if self.steps < 0 or self.grad_accum < 1 or self.max_batch_seconds <= 0:
            raise ValueError("steps must be >= 0, grad_accum >= 1 and max_batch_seconds > 0")


@dataclass(frozen=True)
class UttTargetsConfig:
    """Stage c: k-means of the pooled embeddings z^L for several Q, knee point, labels."""

    cluster_counts: tuple[int, ...] = (250, 500, 1000, 1500, 2000, 2500, 3000, 4000)  # the Q of the knee curve
    use_knee: bool = True  # Q = knee point; false: Q = model.utterance.num_targets (the curve is still drawn)
    normalize: bool = True  # L2-normalise the embeddings first (InfoNCE trains cosine similarity)
    kmeans_iterations: int = 20
    batch_seconds: float = 200.0  # audio per embedding batch
    max_utterance_seconds: float = 35.0  # longer utterances are embedded from their first part
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.cluster_counts or min(self.cluster_counts) < 2 or list(self.cluster_counts) != sorted(
            set(self.cluster_counts)
        ):
            raise ValueError(f"cluster_counts must be increasing values >= 2, got {list(self.cluster_counts)}")
        if self.kmeans_iterations < 1 or self.batch_seconds <= 0 or self.max_utterance_seconds <= 0:
            raise ValueError("kmeans_iterations >= 1, batch_seconds > 0 and max_utterance_seconds > 0 required")


@dataclass(frozen=True)
class PseudoConConfig:
    """L_PC^g of eq. 3 (SupCon form; see learn2diss.pretrain.losses.pseudo_con_loss)."""

    weight: float = 1.0  # eq. 4 adds it with weight 1; 0 turns it off
    temperature: float = 0.1
    normalize: bool = True  # cosine similarity
    denominator: Literal["all_others", "negatives"] = "all_others"  # SupCon, or A(t) of eq. 3 as printed
    max_frames: int = 4096  # random subset of the selected frames per micro-batch (N^2 memory); 0 = all

    def __post_init__(self) -> None:
        if self.weight < 0 or self.temperature <= 0 or self.max_frames < 0:
            raise ValueError("weight >= 0, temperature > 0 and max_frames >= 0 required")


@dataclass(frozen=True)
class CLUBConfig:
    """L_MI of eq. 8-9 and its variational network q_phi (eq. 2)."""

    optimizer: OptimizerConfig  # q_phi's own Adam (1e-6 in the paper)
    weight: float = 1e-3  # lambda of eq. 10; 0 is Table 5's "without MI" (the estimate is still logged)
    representation: Literal["aggregate", "final"] = "aggregate"  # eq. 9, or (y^M, z^L): Table 6 without aggregation
    hidden_dim: int = 2048
    logvar_activation: Literal["tanh", "none"] = "tanh"
    inner_steps: int = 5  # q_phi NLL steps on detached features per micro-batch, before the main step
    negatives: Literal["same_time", "all_frames"] = "same_time"  # the j of eq. 8's negative term
    frame_reduction: Literal["sum", "mean"] = "sum"  # eq. 8 sums over frames and averages over utterances
    # not in the paper (docs/pretraining.md "Where the CLUB estimate can cheat"): y-bar, z-bar standardised per
    # dimension (no learned scale) before q_phi and the estimate, so that rescaling the features cannot lower it
    standardize: Literal["none", "batch", "running"] = "none"
    frame_pass: Literal["masked", "unmasked"] = "masked"  # y-bar from the masked g pass, or an extra unmasked one
    z_source: Literal["aggregate", "last"] = "aggregate"  # z-bar: eq. 9's aggregate, or z^L alone (y-bar unchanged)

    def __post_init__(self) -> None:
        if self.weight < 0 or self.hidden_dim < 1 or self.inner_steps < 0:
            raise ValueError("weight >= 0, hidden_dim >= 1 and inner_steps >= 0 required")


@dataclass(frozen=True)
class JointConfig:
    """Stage d: L_total of eq. 10."""

    steps: int
    grad_accum: int
    loss_frames: Literal["masked", "all"]  # frames of L_CE^g and L_PC^g (HuBERT: masked only)
    frame_optimizer: OptimizerConfig  # g (+ W_g)
    utterance_optimizer: OptimizerConfig  # h (+ W_h, A^l)
    pseudo_con: PseudoConConfig
    infonce: InfoNCEConfig
    club: CLUBConfig

    def __post_init__(self) -> None:
        if self.steps < 0 or self.grad_accum < 1:
            raise ValueError("steps must be >= 0 and grad_accum >= 1")


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
        if self.frame_targets.layer != "mfcc" and self.frame_targets.layer > self.model.parent.num_layers:
            raise ValueError(f"frame_targets.layer {self.frame_targets.layer} is past the parent's "
                             f"{self.model.parent.num_layers} layers")


def _packaged_dir() -> Path:
    return Path(str(resources.files("learn2diss") / "configs"))


def packaged_configs() -> list[str]:
    """Names of the run configs that ship with the package (``learn2diss/configs/*.yaml``)."""
    return sorted(p.stem for p in _packaged_dir().glob("*.yaml"))


def _packaged(name: str) -> Path | None:
    """The packaged file of ``name`` (``l2d_w12`` or ``l2d_w12.yaml``, no folder), or None."""
    stem = name.removesuffix(".yaml")
    return _packaged_dir() / f"{stem}.yaml" if "/" not in name and stem in packaged_configs() else None


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file of a run config: an existing file, or a packaged name (``l2d_w12`` or ``l2d_w12.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = _packaged(str(name_or_path))
    if packaged is not None:
        return packaged
    hint = f" (the configs moved into the package: --config {path.stem})" if path.stem in packaged_configs() else ""
    raise ConfigError(f"config {str(name_or_path)!r}: no such file and no packaged config of that name{hint}; "
                      f"packaged: {', '.join(packaged_configs())}")


def read_config(name_or_path: str | Path) -> dict:
    """The plain mapping of a run config with its ``base:`` chain merged in (not yet validated)."""
    return _read(config_path(name_or_path), ())


def _read(path: Path, chain: tuple[Path, ...]) -> dict:
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{chain[-1]}: base: cycle {cycle}")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: expected a config name or a path, got {base!r}")
    beside = path.parent / base
    base_path = beside if beside.is_file() else _packaged(base)
    if base_path is None:
        raise ConfigError(f"{path}: base: {base!r} is neither a file ({beside}) nor a packaged config; packaged: "
                          f"{', '.join(packaged_configs())}")
    return deep_merge(_read(base_path, (*chain, path.resolve())), data)


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read (with its bases), override and validate a run config given by packaged name or path."""
    path = config_path(name_or_path)
    data = read_config(path)
    try:
        apply_overrides(data, overrides or [])
        return from_dict(Config, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_to_dict(config: Config) -> dict:
    """Plain-data form, for saving next to checkpoints."""
    return to_dict(config)
