"""Checkpoints: import parents (HuBERT, WavLM, wav2vec 2.0, data2vec audio), save and load Learn2Diss models.

Parents (third-party, untrusted; read with ``torch.load(weights_only=True)`` only):

* an original fairseq HuBERT / wav2vec 2.0 / data2vec audio ``.pt`` or Microsoft's WavLM ``.pt``:
  a ``{"cfg", "model"}`` (or old ``{"args", "model"}``) dictionary with the published key names
  (fairseq itself is not needed);
* a Hugging Face ``HubertModel`` / ``WavLMModel`` / ``Wav2Vec2Model`` / ``Data2VecAudioModel``
  directory: ``config.json`` with ``model.safetensors`` or ``pytorch_model.bin``;
* one of our own checkpoint directories (its f and g are the parent), e.g. the small HuBERT-style
  parent that ``learn2diss demo`` pretrains.

Ours: a directory with ``config.yaml`` (the :class:`ModelConfig`) and ``model.safetensors``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from learn2diss.io import (
    FileReadError,
    atomic_dir,
    load_torch,
    read_json,
    read_yaml,
    save_safetensors,
    save_torch,
    write_text,
    write_yaml,
)
from learn2diss.schema import ConfigError, from_dict, to_dict
from learn2diss.upstream import formats
from learn2diss.upstream.config import SAMPLE_RATE, ModelConfig, ParentConfig
from learn2diss.upstream.formats import MASK_EMBEDDING_KEY, CheckpointError
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.parent import build_parent

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
FAIRSEQ_FILE = "model.pt"  # the checkpoint inside a `learn2diss export --format fairseq` folder
EXPORT_FORMATS = ("huggingface", "fairseq")

__all__ = ["CheckpointError", "MASK_EMBEDDING_KEY", "load_untrusted", "read_parent", "import_parent", "frame_path",
           "export_frame_path", "save_model", "load_model", "read_model_config"]


class _InertObject:
    """Stand-in for harmless classes found in fairseq checkpoints: it only stores the pickled state."""

    def __setstate__(self, state: object) -> None:
        self.__dict__["state"] = state


# Classes that fairseq checkpoints carry next to the weights. Unpickling builds an inert stand-in
# (no code of the original class runs); argparse.Namespace holds old fairseq "args".
_ALLOWED_GLOBALS: list[Any] = [
    argparse.Namespace,
    (_InertObject, "fairseq.data.dictionary.Dictionary"),
]


def load_untrusted(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` (:func:`learn2diss.io.load_torch`); a file that needs arbitrary
    unpickling is refused, naming the class it asks for."""
    try:
        state = load_torch(path, _ALLOWED_GLOBALS)
    except FileReadError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dictionary checkpoint, got {type(state).__name__}")
    return state


def _read_fairseq(path: Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    return formats.from_fairseq(str(path), load_untrusted(path))


def _read_huggingface(directory: Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    """A Hugging Face directory, checked by loading it into the ``transformers`` model its config.json describes."""
    import transformers

    config_path = directory / "config.json"
    try:
        config = read_json(config_path, "Hugging Face config")
    except FileReadError as err:
        raise CheckpointError(str(err)) from None
    model_type = config.get("model_type")
    kinds = {hf_type: kind for kind, (hf_type, *_) in formats.HUGGINGFACE_KINDS.items()}
    if model_type not in kinds:
        raise CheckpointError(f"{config_path}: model_type {model_type!r} is not one of {', '.join(kinds)}")
    if (directory / "model.safetensors").is_file():
        weights = load_file(directory / "model.safetensors")
    elif (directory / "pytorch_model.bin").is_file():
        weights = load_untrusted(directory / "pytorch_model.bin")
    else:
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin next to config.json")
    kind = kinds[model_type]
    _, config_name, model_name, prefix = formats.HUGGINGFACE_KINDS[kind]
    hf_config = getattr(transformers, config_name).from_dict(config)
    unsupported = formats.huggingface_unsupported(hf_config)
    if unsupported:
        raise CheckpointError(f"{config_path}: unsupported parent architecture: " + "; ".join(unsupported))
    hf_model = getattr(transformers, model_name)(hf_config)
    weights = {k.removeprefix(prefix): v for k, v in weights.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith(formats.HUGGINGFACE_HEADS)}
    missing, unexpected = hf_model.load_state_dict(weights, strict=False)  # also renames old weight_g/weight_v
    missing = [k for k in missing if k != "masked_spec_embed"]
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not match config.json (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    parent = formats.parent_from_huggingface(kind, hf_config)
    hf_state = hf_model.state_dict()
    if "masked_spec_embed" not in weights:  # saved with mask_time_prob = mask_feature_prob = 0: none trained
        hf_state.pop("masked_spec_embed", None)
    return parent, formats.from_huggingface(parent, hf_state)


def frame_path(model: Learn2Diss) -> tuple[ParentConfig, dict[str, Tensor]]:
    """f then g of ``model``, which is its parent's whole architecture: the config and torchaudio-named weights
    (the mask embedding under ``MASK_EMBEDDING_KEY``). h, W_g, W_h and the A^l have no place in a parent."""
    state, _ = formats.rename(model.state_dict(), formats.learn2diss_keys(model.config), to_torchaudio=True)
    return model.config.parent, {key: tensor.detach() for key, tensor in state.items()}


def read_parent(path: str | Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    """The architecture and torchaudio-named weights of a parent: fairseq/WavLM ``.pt``, HF or our directory.

    The parent's trained mask embedding, where it has one, is in the state under ``MASK_EMBEDDING_KEY``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return frame_path(load_model(path))
        if (path / FAIRSEQ_FILE).is_file() and not (path / "config.json").is_file():
            return _read_fairseq(path / FAIRSEQ_FILE)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: a Hugging Face model directory needs config.json "
                                  f"(or {CONFIG_FILE} for a learn2diss checkpoint)")
        return _read_huggingface(path)
    return _read_fairseq(path)


def architecture_differences(ours: ParentConfig, theirs: ParentConfig) -> list[str]:
    """Each architecture field of ``theirs`` (a checkpoint) that differs from ``ours`` (a config), named.

    Every field that changes what the model computes is compared; dropout rates are training settings, and
    WavLM's relative-position fields only matter when both sides are WavLM.
    """
    names = ["kind", "conv_layers", "extractor_mode", "conv_bias", "embed_dim", "num_layers", "num_heads", "ffn_dim",
             "pos_conv_kernel", "pos_conv_groups", "pos_conv_layers", "layer_norm_first", "normalize_waveform"]
    if ours.kind == theirs.kind == "wavlm":
        names += ["num_buckets", "max_distance"]
    return [f"{name}: config {getattr(ours, name)!r}, checkpoint {getattr(theirs, name)!r}"
            for name in names if getattr(ours, name) != getattr(theirs, name)]


def import_parent(model: Learn2Diss, path: str | Path) -> None:
    """Initialise f and g of ``model`` from a parent checkpoint; its architecture must match ``model.config.parent``.

    g's mask embedding becomes the parent's trained one (fairseq/WavLM ``mask_emb``, HF ``masked_spec_embed``, ours);
    it stays freshly initialised only when the parent has none.
    """
    parent_config, state = read_parent(path)
    ours = model.config.parent
    diffs = architecture_differences(ours, parent_config)
    if diffs:
        hint = ("; the parent's normalize_waveform comes from fairseq's task.normalize / WavLM's cfg.normalize, "
                "and for a Hugging Face directory from its conv encoder (layer norm = normalised input) unless "
                f"config.json records it under {formats.HUGGINGFACE_EXTRA!r}"
                if ours.normalize_waveform != parent_config.normalize_waveform else "")
        raise CheckpointError(f"{path}: parent architecture differs from model.parent: " + "; ".join(diffs) + hint)
    mask_embedding = state.pop(MASK_EMBEDDING_KEY, None)
    if mask_embedding is not None and tuple(mask_embedding.shape) != (ours.embed_dim,):
        raise CheckpointError(f"{path}: the parent's mask embedding has shape {tuple(mask_embedding.shape)}, "
                              f"expected ({ours.embed_dim},)")
    parent = build_parent(ours)
    try:
        parent.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the architecture: {err}") from None
    checked = parent.state_dict()
    if mask_embedding is not None:
        checked[MASK_EMBEDDING_KEY] = mask_embedding
    weights, unplaced = formats.rename(checked, formats.learn2diss_keys(model.config), to_torchaudio=False)
    _, unexpected = model.load_state_dict(weights, strict=False)
    if unplaced or unexpected:  # formats.learn2diss_keys and model.build_parts disagree
        raise RuntimeError(f"no place in Learn2Diss for the parent's {unplaced or unexpected}")


def _write_huggingface(parent: ParentConfig, state: dict[str, Tensor], directory: Path) -> None:
    """config.json + model.safetensors (through the ``transformers`` model, which must take every weight) and
    preprocessor_config.json (16 kHz, the parent's waveform normalisation; attention masks for layer-norm
    convolutions, which ignore padding)."""
    import transformers

    _, _, model_name, _ = formats.HUGGINGFACE_KINDS[parent.kind]
    hf_model = getattr(transformers, model_name)(formats.huggingface_config(parent))
    hf_model.load_state_dict(formats.to_huggingface(parent, state), strict=True)
    hf_model.save_pretrained(directory, safe_serialization=True)
    extractor = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=parent.normalize_waveform,
        return_attention_mask=parent.extractor_mode == "layer_norm")
    extractor.save_pretrained(directory)
    umask = os.umask(0)
    os.umask(umask)
    for written in directory.iterdir():  # safetensors creates its file 0600; a model to share is readable as usual
        written.chmod(0o666 & ~umask)


def export_frame_path(model: Learn2Diss, directory: str | Path, fmt: str, files: dict[str, str] | None = None) -> Path:
    """Write the frame path (f then g) of ``model`` as a plain parent checkpoint folder, atomically.

    ``fmt``: ``huggingface`` (config.json, model.safetensors, preprocessor_config.json) or ``fairseq``
    (``model.pt``, the layout of :func:`learn2diss.upstream.formats.to_fairseq`, plain tensors and dicts that
    ``torch.load(weights_only=True)`` reads). ``files`` (name -> text, e.g. a model card) are written beside.
    """
    if fmt not in EXPORT_FORMATS:
        raise CheckpointError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
    parent, state = frame_path(model)
    formats.check_representable(parent, fmt)
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        if fmt == "huggingface":
            _write_huggingface(parent, state, tmp)
        else:
            save_torch(tmp / FAIRSEQ_FILE, formats.to_fairseq(parent, state))
        for name, text in (files or {}).items():
            write_text(tmp / name, text)
    return directory


def save_model(model: Learn2Diss, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``config.yaml`` + ``model.safetensors`` atomically; ``extra`` goes into config.yaml as provenance.

    The folder is written beside ``directory`` and swapped in (:func:`learn2diss.io.atomic_dir`): a complete
    checkpoint exists at every instant.
    """
    directory = Path(directory)
    meta = {"format_version": FORMAT_VERSION, "model": to_dict(model.config), **({"extra": extra} if extra else {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_dir(directory) as tmp:
        write_yaml(tmp / CONFIG_FILE, meta)
        save_safetensors(tmp / WEIGHTS_FILE, state, {"format": "learn2diss", "version": str(FORMAT_VERSION)})
    return directory


def read_model_config(directory: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` stored in one of our checkpoint directories; errors name the file."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a learn2diss checkpoint (no {CONFIG_FILE}); "
                              "make one with `learn2diss export RUN_DIR --out CKPT_DIR`")
    try:
        meta = read_yaml(path, "checkpoint config")
    except FileReadError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format_version') if isinstance(meta, dict) else meta!r}")
    model = meta.get("model")
    try:
        return from_dict(ModelConfig, model, "model")
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> Learn2Diss:
    """Rebuild a :class:`Learn2Diss` from ``config.yaml`` + ``model.safetensors``."""
    directory = Path(directory)
    model = Learn2Diss(read_model_config(directory))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory}: {WEIGHTS_FILE} is missing")
    try:
        state = load_file(weights, device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: weights do not match config.yaml: {err}") from None
    return model
