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
import ast
import json
import pickle
import re
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from learn2diss.errors import Learn2DissError
from learn2diss.io import FileReadError, atomic_dir, read_yaml, save_safetensors
from learn2diss.schema import ConfigError, from_dict, to_dict
from learn2diss.upstream.config import ModelConfig, ParentConfig
from learn2diss.upstream.model import Learn2Diss, build_parent

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(Learn2DissError, ValueError):
    """A checkpoint that cannot be used, with the file and the reason."""


class _InertObject:
    """Stand-in for harmless classes found in fairseq checkpoints: it only stores the pickled state."""

    def __setstate__(self, state: object) -> None:
        self.__dict__["state"] = state


# Classes that fairseq checkpoints carry next to the weights. Unpickling builds an inert stand-in
# (no code of the original class runs); argparse.Namespace holds old fairseq "args".
_ALLOWED_GLOBALS = [
    argparse.Namespace,
    (_InertObject, "fairseq.data.dictionary.Dictionary"),
]


def load_untrusted(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)``; a file that needs arbitrary unpickling is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)|global '?([\w.]+)", str(err))
        what = next((g for g in found.groups() if g), "an object") if found else "an object"
        raise CheckpointError(
            f"{path}: refused to load: it asks to construct {what}, which safe loading (weights_only=True) does not "
            "allow; nothing in the file was executed. Re-save the weights as a plain state dict or safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dictionary checkpoint, got {type(state).__name__}")
    return state


def _parse_conv_layers(expr: str) -> tuple[tuple[int, int, int], ...]:
    """fairseq's ``conv_feature_layers`` string, e.g. "[(512,10,5)] + [(512,3,2)] * 4", without eval."""

    def value(node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Tuple | ast.List):
            items = [value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise CheckpointError(f"cannot parse conv_feature_layers {expr!r}")

    layers = value(ast.parse(expr, mode="eval").body)
    return tuple((int(c), int(k), int(s)) for c, k, s in layers)


def _as_dict(cfg: object) -> dict:
    return vars(cfg) if isinstance(cfg, argparse.Namespace) else dict(cfg or {})


def _fairseq_config(ckpt: dict) -> tuple[dict, dict]:
    """(model config, task config) of a fairseq/WavLM checkpoint; old ``args`` checkpoints hold both in one."""
    cfg = _as_dict(ckpt.get("cfg") if ckpt.get("cfg") is not None else ckpt["args"])
    if isinstance(cfg.get("model"), dict | argparse.Namespace):  # fairseq hydra: {"model": ..., "task": ...}
        return _as_dict(cfg["model"]), _as_dict(cfg.get("task"))
    return cfg, cfg


def _fairseq_kind(path: Path, cfg: dict, keys: set[str]) -> str:
    """The parent kind from the published parameter names, else from the config's model name."""
    name = str(cfg.get("_name") or cfg.get("arch") or "")
    if any(".relative_attention_bias." in k or ".grep_linear." in k for k in keys):
        return "wavlm"
    if "_ema" in keys or int(cfg.get("pos_conv_depth", 1)) > 1 or name.startswith("data2vec"):
        return "data2vec"
    if "label_embs_concat" in keys or name.startswith("hubert"):
        return "hubert"
    if any(k.startswith(("quantizer.", "project_q.")) for k in keys) or name.startswith("wav2vec"):
        return "wav2vec2"
    raise CheckpointError(f"{path}: cannot tell the model (cfg name {name!r}); expected a HuBERT, WavLM, "
                          "wav2vec 2.0 or data2vec audio pretraining checkpoint")


def _fairseq_parent_config(path: Path, cfg: dict, task: dict, kind: str) -> ParentConfig:
    """The architecture from a fairseq/WavLM config; options this model cannot build are named in one error."""
    unsupported = [f"{key} {cfg[key]!r} (supported: {ok!r})"
                   for key, ok in (("layer_type", "transformer"), ("activation_fn", "gelu"))
                   if cfg.get(key, ok) != ok]
    if cfg.get("extractor_mode", "default") not in ("default", "layer_norm"):
        unsupported.append(f"extractor_mode {cfg['extractor_mode']!r} (supported: 'default', 'layer_norm')")
    if kind == "wavlm":
        unsupported += [f"{key} False (torchaudio's WavLM needs it)" for key in ("relative_position_embedding",
                                                                                "gru_rel_pos") if not cfg.get(key, True)]
    if unsupported:
        raise CheckpointError(f"{path}: unsupported parent architecture: " + "; ".join(unsupported))
    depth = int(cfg.get("pos_conv_depth", 1))
    conv_pos = int(cfg.get("conv_pos", 128))
    return ParentConfig(
        kind=kind,
        conv_layers=_parse_conv_layers(cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")),
        extractor_mode="group_norm" if cfg.get("extractor_mode", "default") == "default" else "layer_norm",
        conv_bias=bool(cfg.get("conv_bias", False)),
        embed_dim=int(cfg.get("encoder_embed_dim", 768)),
        num_layers=int(cfg.get("encoder_layers", 12)),
        num_heads=int(cfg.get("encoder_attention_heads", 12)),
        ffn_dim=int(cfg.get("encoder_ffn_embed_dim", 3072)),
        pos_conv_kernel=max(3, conv_pos // depth) if depth > 1 else conv_pos,  # fairseq's TransformerEncoder
        pos_conv_groups=int(cfg.get("conv_pos_groups", 16)),
        pos_conv_layers=depth,
        layer_norm_first=bool(cfg.get("layer_norm_first", False)),
        num_buckets=int(cfg.get("num_buckets", 320)),
        max_distance=int(cfg.get("max_distance", 800)),
        normalize_waveform=bool(cfg.get("normalize", False) or task.get("normalize", False)),
        dropout=0.1, attention_dropout=0.1,  # training settings, not compared with the run config's
    )


# fairseq / Microsoft WavLM key → torchaudio Wav2Vec2Model key (``\1`` etc. are regex groups).
_FAIRSEQ_KEYS = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.transformer.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.pos_conv\.(\d+)\.0\.(weight|bias)", r"encoder.transformer.pos_conv_embed.layers.\1.conv.\2"),  # data2vec
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.((?:k|v|q|out)_proj\.(?:weight|bias))", r"encoder.transformer.layers.\1.attention.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight", r"encoder.transformer.layers.\1.attention.rel_attn_embed.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)", r"encoder.transformer.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.transformer.layers.\1.attention.gru_rel_pos_const"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.transformer.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.transformer.layers.\1.final_layer_norm.\2"),
]
_FAIRSEQ_PRETRAINING_ONLY = re.compile(
    r"(label_embs_concat|final_proj\.|untie_final_proj|quantizer|input_quantizer|project_q|project_inp|target_glu|_ema$)"
)
# The parent's trained mask embedding travels in the state under this key (outside torchaudio's names).
MASK_EMBEDDING_KEY = "mask_embedding"


def _fuse_wavlm_qkv(state: dict[str, Tensor], num_layers: int) -> None:
    """torchaudio's WavLM attention keeps q, k, v in one ``nn.MultiheadAttention`` in_proj (in that order)."""
    for i in range(num_layers):
        prefix = f"encoder.transformer.layers.{i}.attention."
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{prefix}{p}_proj.{kind}") for p in ("q", "k", "v")]
            state[f"{prefix}attention.in_proj_{kind}"] = torch.cat(parts)
            state[f"{prefix}attention.out_proj.{kind}"] = state.pop(f"{prefix}out_proj.{kind}")


def _read_fairseq(path: Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    ckpt = load_untrusted(path)
    if "model" not in ckpt or not ("cfg" in ckpt or "args" in ckpt):
        raise CheckpointError(f"{path}: expected a fairseq/WavLM checkpoint with 'cfg' (or 'args') and 'model' keys, "
                              f"found {sorted(ckpt)}")
    cfg, task = _fairseq_config(ckpt)
    weights = {key.removeprefix("w2v_model."): tensor for key, tensor in ckpt["model"].items()}
    kind = _fairseq_kind(path, cfg, set(weights))
    parent = _fairseq_parent_config(path, cfg, task, kind)
    state: dict[str, Tensor] = {}
    for key, tensor in weights.items():
        if key == "mask_emb":
            state[MASK_EMBEDDING_KEY] = tensor
            continue
        if _FAIRSEQ_PRETRAINING_ONLY.match(key):
            continue
        for pattern, replacement in _FAIRSEQ_KEYS:
            if re.fullmatch(pattern, key):
                state[re.sub(pattern, replacement, key)] = tensor
                break
        else:
            raise CheckpointError(f"{path}: unexpected parameter {key!r} for a {kind} checkpoint")
    if kind == "wavlm":
        _fuse_wavlm_qkv(state, parent.num_layers)
    return parent, state


# Hugging Face model_type → (our kind, config class, model class, weight prefix of the task heads' wrapper).
_HF_KINDS = {
    "hubert": ("hubert", "HubertConfig", "HubertModel", "hubert."),
    "wavlm": ("wavlm", "WavLMConfig", "WavLMModel", "wavlm."),
    "wav2vec2": ("wav2vec2", "Wav2Vec2Config", "Wav2Vec2Model", "wav2vec2."),
    "data2vec-audio": ("data2vec", "Data2VecAudioConfig", "Data2VecAudioModel", "data2vec_audio."),
}
_HF_HEADS = ("lm_head.", "projector.", "classifier.", "quantizer.", "project_q.", "project_hid.", "dropout_features.")


def _huggingface_unsupported(hf_config: object) -> list[str]:
    """Hugging Face options that the torchaudio modules cannot build, named."""
    expected = {"hidden_act": "gelu", "feat_extract_activation": "gelu", "conv_pos_batch_norm": False,
                "add_adapter": False, "feat_proj_layer_norm": True}
    return [f"{key} {getattr(hf_config, key)!r} (supported: {ok!r})" for key, ok in expected.items()
            if getattr(hf_config, key, None) not in (None, ok)]


def _read_huggingface(directory: Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    """A Hugging Face directory, checked by loading it into the ``transformers`` model its config.json describes.

    config.json does not record waveform normalisation (``preprocessor_config.json`` does, unreliably: the hub's
    wav2vec 2.0 base says yes, fairseq trained it without); it is taken as fairseq's rule, normalised input
    exactly when the conv encoder uses layer norm (the Large models, data2vec), which every released parent follows.
    """
    import transformers
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    model_type = config.get("model_type")
    if model_type not in _HF_KINDS:
        raise CheckpointError(f"{config_path}: model_type {model_type!r} is not one of {', '.join(_HF_KINDS)}")
    if (directory / "model.safetensors").is_file():
        weights = load_file(directory / "model.safetensors")
    elif (directory / "pytorch_model.bin").is_file():
        weights = load_untrusted(directory / "pytorch_model.bin")
    else:
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin next to config.json")
    kind, config_name, model_name, prefix = _HF_KINDS[model_type]
    hf_config = getattr(transformers, config_name).from_dict(config)
    unsupported = _huggingface_unsupported(hf_config)
    if unsupported:
        raise CheckpointError(f"{config_path}: unsupported parent architecture: " + "; ".join(unsupported))
    hf_model = getattr(transformers, model_name)(hf_config)
    weights = {k.removeprefix(prefix): v for k, v in weights.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith(_HF_HEADS)}
    missing, unexpected = hf_model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "masked_spec_embed"]
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not match config.json (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    mask_embedding = weights.get("masked_spec_embed")  # absent when saved with mask_time_prob = mask_feature_prob = 0
    data2vec = kind == "data2vec"
    extractor_mode = "layer_norm" if data2vec else f"{hf_config.feat_extract_norm}_norm"
    parent = ParentConfig(
        kind=kind,
        conv_layers=tuple(zip(hf_config.conv_dim, hf_config.conv_kernel, hf_config.conv_stride, strict=True)),
        extractor_mode=extractor_mode,
        conv_bias=hf_config.conv_bias,
        embed_dim=hf_config.hidden_size,
        num_layers=hf_config.num_hidden_layers,
        num_heads=hf_config.num_attention_heads,
        ffn_dim=hf_config.intermediate_size,
        pos_conv_kernel=hf_config.conv_pos_kernel_size if data2vec else hf_config.num_conv_pos_embeddings,
        pos_conv_groups=hf_config.num_conv_pos_embedding_groups,
        pos_conv_layers=hf_config.num_conv_pos_embeddings if data2vec else 1,
        layer_norm_first=False if data2vec else hf_config.do_stable_layer_norm,
        num_buckets=getattr(hf_config, "num_buckets", 320),
        max_distance=getattr(hf_config, "max_bucket_distance", 800),
        normalize_waveform=extractor_mode == "layer_norm",
        dropout=0.1, attention_dropout=0.1,  # training settings, not compared with the run config's
    )
    if data2vec:  # torchaudio has no data2vec importer; HF's names are torchaudio's below these prefixes
        renames = {"feature_extractor.": "feature_extractor.", "feature_projection.": "encoder.feature_projection.",
                   "encoder.": "encoder.transformer."}
        state = {renames[p] + k.removeprefix(p): v for k, v in hf_model.state_dict().items()
                 for p in renames if k.startswith(p)}
    else:
        state = import_huggingface_model(hf_model).state_dict()
    if mask_embedding is not None:
        state[MASK_EMBEDDING_KEY] = mask_embedding
    return parent, state


def _read_ours(directory: Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    """f and g of one of our checkpoints, under torchaudio's ``Wav2Vec2Model`` names."""
    model = load_model(directory)
    renames = {"feature_extractor.": "feature_extractor.", "feature_projection.": "encoder.feature_projection.",
               "pos_conv_embed.": "encoder.transformer.pos_conv_embed.",
               "encoder_layer_norm.": "encoder.transformer.layer_norm.", "layers.": "encoder.transformer.layers."}
    state = {}
    for key, tensor in model.state_dict().items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is not None:
            state[renames[prefix] + key.removeprefix(prefix)] = tensor
    state[MASK_EMBEDDING_KEY] = model.mask_embedding.detach()
    return model.config.parent, state


def read_parent(path: str | Path) -> tuple[ParentConfig, dict[str, Tensor]]:
    """The architecture and torchaudio-named weights of a parent: fairseq/WavLM ``.pt``, HF or our directory.

    The parent's trained mask embedding, where it has one, is in the state under ``MASK_EMBEDDING_KEY``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return _read_ours(path)
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
                "and for a Hugging Face directory from its conv encoder (layer norm = normalised input)"
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
    transformer = parent.encoder.transformer
    model.feature_extractor.load_state_dict(parent.feature_extractor.state_dict())
    model.feature_projection.load_state_dict(parent.encoder.feature_projection.state_dict())
    model.pos_conv_embed.load_state_dict(transformer.pos_conv_embed.state_dict())
    model.encoder_layer_norm.load_state_dict(transformer.layer_norm.state_dict())
    model.layers.load_state_dict(transformer.layers.state_dict())
    if mask_embedding is not None:
        with torch.no_grad():
            model.mask_embedding.copy_(mask_embedding)


def save_model(model: Learn2Diss, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``config.yaml`` + ``model.safetensors`` atomically; ``extra`` goes into config.yaml as provenance.

    The folder is written beside ``directory`` and swapped in (:func:`learn2diss.io.atomic_dir`): a complete
    checkpoint exists at every instant.
    """
    directory = Path(directory)
    meta = {"format_version": FORMAT_VERSION, "model": to_dict(model.config), **({"extra": extra} if extra else {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_dir(directory) as tmp:
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
        save_safetensors(tmp / WEIGHTS_FILE, state, {"format": "learn2diss", "version": str(FORMAT_VERSION)})
    return directory


# Parent keys added after format version 1 was written, with the value every earlier checkpoint meant.
PARENT_KEYS_ADDED = {"pos_conv_layers": 1, "normalize_waveform": False}


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
    if isinstance(model, dict) and isinstance(model.get("parent"), dict):
        model["parent"] = {**PARENT_KEYS_ADDED, **model["parent"]}
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
