"""The published checkpoint formats of the parents, in both directions: what a name or field means in each.

Learn2Diss's frame path (f then g) is its parent's whole architecture, so it reads and writes the formats the
field already loads:

* **fairseq** HuBERT / wav2vec 2.0 / data2vec audio (``{"cfg": {"model", "task"}, "model"}``, or old
  ``{"args", "model"}``) and **Microsoft's WavLM** (``{"cfg", "model"}``, a flat config);
* **Hugging Face** ``HubertModel`` / ``WavLMModel`` / ``Wav2Vec2Model`` / ``Data2VecAudioModel``.

Inside learn2diss the parent lives under torchaudio's ``Wav2Vec2Model`` / WavLM names. Everything below is a
table read in both directions: :data:`FAIRSEQ_KEYS` and :data:`HUGGINGFACE_KEYS` map weight names (templates
whose ``{i}``, ``{p}``, ``{proj}``, ``{rest}`` slots match a layer index, ``weight|bias``, an attention
projection, any suffix), :data:`FAIRSEQ_FIELDS` and :data:`HUGGINGFACE_FIELDS` map config fields. The tables
use one intermediate naming: torchaudio's, with WavLM's fused ``in_proj`` split into the ``q/k/v_proj`` that
every published format keeps (:func:`split_qkv`, :func:`fuse_qkv`). :func:`learn2diss_keys` places the torchaudio
names in f and g of a Learn2Diss model, and :func:`from_first_layout` reads the weight names of our own
checkpoints' first layout.

The functions here translate dictionaries and configs; reading and writing files is
:mod:`learn2diss.upstream.checkpoints`.
"""

from __future__ import annotations

import argparse
import ast
import re
from functools import cache

import torch
from torch import Tensor

from learn2diss.errors import Learn2DissError
from learn2diss.upstream.config import SAMPLE_RATE, ModelConfig, ParentConfig


class CheckpointError(Learn2DissError, ValueError):
    """A checkpoint that cannot be used, with the file and the reason."""


# The parent's trained mask embedding travels in a torchaudio-named state under this key (outside torchaudio's names).
MASK_EMBEDDING_KEY = "mask_embedding"

_SLOTS = {"i": r"\d+", "p": r"weight|bias", "proj": r"(?:q|k|v|out)_proj", "rest": r".+"}

# (torchaudio name, fairseq / Microsoft WavLM name); the extractor's norm depends on its mode (below).
FAIRSEQ_KEYS: tuple[tuple[str, str], ...] = (
    ("feature_extractor.conv_layers.{i}.conv.{p}", "feature_extractor.conv_layers.{i}.0.{p}"),
    ("encoder.feature_projection.projection.{p}", "post_extract_proj.{p}"),
    ("encoder.feature_projection.layer_norm.{p}", "layer_norm.{p}"),
    ("encoder.transformer.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias"),
    ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g"),
    ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v"),
    ("encoder.transformer.pos_conv_embed.layers.{i}.conv.{p}", "encoder.pos_conv.{i}.0.{p}"),  # data2vec
    ("encoder.transformer.layer_norm.{p}", "encoder.layer_norm.{p}"),
    ("encoder.transformer.layers.{i}.attention.{proj}.{p}", "encoder.layers.{i}.self_attn.{proj}.{p}"),
    ("encoder.transformer.layers.{i}.attention.rel_attn_embed.weight",
     "encoder.layers.{i}.self_attn.relative_attention_bias.weight"),  # WavLM
    ("encoder.transformer.layers.{i}.attention.gru_rel_pos_linear.{p}", "encoder.layers.{i}.self_attn.grep_linear.{p}"),
    ("encoder.transformer.layers.{i}.attention.gru_rel_pos_const", "encoder.layers.{i}.self_attn.grep_a"),
    ("encoder.transformer.layers.{i}.layer_norm.{p}", "encoder.layers.{i}.self_attn_layer_norm.{p}"),
    ("encoder.transformer.layers.{i}.feed_forward.intermediate_dense.{p}", "encoder.layers.{i}.fc1.{p}"),
    ("encoder.transformer.layers.{i}.feed_forward.output_dense.{p}", "encoder.layers.{i}.fc2.{p}"),
    ("encoder.transformer.layers.{i}.final_layer_norm.{p}", "encoder.layers.{i}.final_layer_norm.{p}"),
    (MASK_EMBEDDING_KEY, "mask_emb"),
)
# fairseq's "default" extractor has one group norm after the first convolution; "layer_norm" one per convolution.
FAIRSEQ_EXTRACTOR_NORM: dict[str, tuple[str, str]] = {
    "group_norm": ("feature_extractor.conv_layers.0.layer_norm.{p}", "feature_extractor.conv_layers.0.2.{p}"),
    "layer_norm": ("feature_extractor.conv_layers.{i}.layer_norm.{p}", "feature_extractor.conv_layers.{i}.2.1.{p}"),
}
# Pretraining heads of the published files, with no place in learn2diss (our own heads are W_g and W_h).
FAIRSEQ_PRETRAINING_ONLY = re.compile(
    r"(label_embs_concat|final_proj\.|untie_final_proj|quantizer|input_quantizer|project_q|project_inp|target_glu|_ema$)"
)

# Our checkpoints' first layout (version 0.1.0's), the parent's modules flat on the model: (torchaudio name, first-layout name), and
# (current name, first-layout name) for our own heads. Read only, by :func:`from_first_layout`.
FIRST_LAYOUT_KEYS: tuple[tuple[str, str], ...] = (
    ("feature_extractor.{rest}", "feature_extractor.{rest}"),
    ("encoder.feature_projection.{rest}", "feature_projection.{rest}"),
    ("encoder.transformer.pos_conv_embed.{rest}", "pos_conv_embed.{rest}"),
    ("encoder.transformer.layer_norm.{rest}", "encoder_layer_norm.{rest}"),
    ("encoder.transformer.layers.{rest}", "layers.{rest}"),
    (MASK_EMBEDDING_KEY, "mask_embedding"),
)
FIRST_LAYOUT_HEADS: tuple[tuple[str, str], ...] = (("g.head.{rest}", "frame_head.{rest}"),
                                                   ("h.{rest}", "utterance_encoder.{rest}"))
_FIRST_LAYOUT_NAMES = frozenset(re.split(r"[.{]", old, maxsplit=1)[0]
                                for _, old in (*FIRST_LAYOUT_KEYS, *FIRST_LAYOUT_HEADS))

# (torchaudio name, Hugging Face name).
HUGGINGFACE_KEYS: tuple[tuple[str, str], ...] = (
    ("feature_extractor.{rest}", "feature_extractor.{rest}"),
    ("encoder.feature_projection.{rest}", "feature_projection.{rest}"),
    ("encoder.transformer.{rest}", "encoder.{rest}"),
    (MASK_EMBEDDING_KEY, "masked_spec_embed"),
)
# Task heads of the Hugging Face wrappers (…ForCTC, …ForPreTraining, …ForSequenceClassification): not the encoder.
HUGGINGFACE_HEADS = ("lm_head.", "projector.", "classifier.", "quantizer.", "project_q.", "project_hid.",
                     "dropout_features.")

# ParentConfig field -> fairseq / Microsoft WavLM model-config key, with fairseq's default (same value on both sides).
FAIRSEQ_FIELDS: dict[str, tuple[str, object]] = {
    "embed_dim": ("encoder_embed_dim", 768),
    "num_layers": ("encoder_layers", 12),
    "num_heads": ("encoder_attention_heads", 12),
    "ffn_dim": ("encoder_ffn_embed_dim", 3072),
    "pos_conv_groups": ("conv_pos_groups", 16),
    "conv_bias": ("conv_bias", False),
    "layer_norm_first": ("layer_norm_first", False),
    "dropout": ("dropout", 0.1),
    "attention_dropout": ("attention_dropout", 0.1),
}
FAIRSEQ_WAVLM_FIELDS: dict[str, tuple[str, object]] = {"num_buckets": ("num_buckets", 320),
                                                        "max_distance": ("max_distance", 800)}
# fairseq model names (cfg.model._name) and task names of each kind.
FAIRSEQ_NAMES = {"hubert": ("hubert", "hubert_pretraining"), "wav2vec2": ("wav2vec2", "audio_pretraining"),
                 "data2vec": ("data2vec_audio", "audio_pretraining"), "wavlm": ("wavlm", None)}
# Width of the pretraining heads that the fairseq HuBERT / wav2vec 2.0 classes build (fairseq's base value).
FAIRSEQ_FINAL_DIM = 256

# ParentConfig field -> Hugging Face config attribute (same value on both sides).
HUGGINGFACE_FIELDS: dict[str, str] = {
    "embed_dim": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "ffn_dim": "intermediate_size",
    "pos_conv_groups": "num_conv_pos_embedding_groups",
    "conv_bias": "conv_bias",
    "dropout": "hidden_dropout",
    "attention_dropout": "attention_dropout",
}
HUGGINGFACE_WAVLM_FIELDS = {"num_buckets": "num_buckets", "max_distance": "max_bucket_distance"}
# kind -> (Hugging Face model_type, config class, model class, weight prefix inside the task heads' wrappers).
HUGGINGFACE_KINDS = {
    "hubert": ("hubert", "HubertConfig", "HubertModel", "hubert."),
    "wavlm": ("wavlm", "WavLMConfig", "WavLMModel", "wavlm."),
    "wav2vec2": ("wav2vec2", "Wav2Vec2Config", "Wav2Vec2Model", "wav2vec2."),
    "data2vec": ("data2vec-audio", "Data2VecAudioConfig", "Data2VecAudioModel", "data2vec_audio."),
}
# Options a Hugging Face config may carry that the torchaudio modules cannot build, with the supported value.
HUGGINGFACE_SUPPORTED = {"hidden_act": "gelu", "feat_extract_activation": "gelu", "conv_pos_batch_norm": False,
                         "add_adapter": False, "feat_proj_layer_norm": True}
# config.json key under which learn2diss records what the Hugging Face model config has no place for.
HUGGINGFACE_EXTRA = "learn2diss"


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, slot, literal, slot, ...
    return re.compile("".join(re.escape(part) if n % 2 == 0 else f"(?P<{part}>{_SLOTS[part]})"
                              for n, part in enumerate(parts)))


def rename(state: dict[str, Tensor], table: tuple[tuple[str, str], ...], to_torchaudio: bool,
           ) -> tuple[dict[str, Tensor], list[str]]:
    """``state`` renamed through ``table`` (torchaudio -> format, or back); also the keys no entry matches."""
    src, dst = (1, 0) if to_torchaudio else (0, 1)
    renamed, unmatched = {}, []
    for key, tensor in state.items():
        for entry in table:
            found = _pattern(entry[src]).fullmatch(key)
            if found:
                renamed[entry[dst].format(**found.groupdict())] = tensor
                break
        else:
            unmatched.append(key)
    return renamed, unmatched


def fairseq_keys(extractor_mode: str) -> tuple[tuple[str, str], ...]:
    """:data:`FAIRSEQ_KEYS` with the extractor norm of ``extractor_mode`` (``group_norm`` or ``layer_norm``)."""
    return (FAIRSEQ_EXTRACTOR_NORM[extractor_mode], *FAIRSEQ_KEYS)


def learn2diss_keys(config: ModelConfig) -> tuple[tuple[str, str], ...]:
    """(torchaudio name, name in Learn2Diss) of every weight of f and g, where :func:`learn2diss.upstream.model.build_parts`
    puts it for ``config``: layers 1..N in f, N+1..L in g; the positional convolution with layer 1 (f for N > 0,
    g for N = 0); the encoder layer norm with it or, where the parent applies it after the layers, at g's end."""
    n, parent = config.frame.num_frozen_layers, config.parent
    start = "f" if n else "g"
    norm = "g.final_norm" if parent.layer_norm_first else f"{start}.layer_input.norm"
    return (
        ("feature_extractor.{rest}", "f.conv.{rest}"),
        ("encoder.feature_projection.{rest}", "f.projection.{rest}"),
        ("encoder.transformer.pos_conv_embed.{rest}", f"{start}.layer_input.pos_conv.{{rest}}"),
        ("encoder.transformer.layer_norm.{p}", f"{norm}.{{p}}"),
        *((f"encoder.transformer.layers.{i}.{{rest}}", f"f.layers.{i}.{{rest}}") for i in range(n)),
        *((f"encoder.transformer.layers.{n + i}.{{rest}}", f"g.layers.{i}.{{rest}}")
          for i in range(parent.num_layers - n)),
        (MASK_EMBEDDING_KEY, "g.mask_embedding"),
    )


def in_first_layout(key: str) -> bool:
    """Whether ``key`` is a weight name of our first layout (:data:`FIRST_LAYOUT_KEYS`)."""
    return key.split(".", 1)[0] in _FIRST_LAYOUT_NAMES


def from_first_layout(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """``state`` in our first layout renamed to the current one (names it does not know are kept, to be reported)."""
    parent, others = rename(state, FIRST_LAYOUT_KEYS, to_torchaudio=True)
    current, unplaced = rename(parent, learn2diss_keys(config), to_torchaudio=False)
    heads, unknown = rename({key: state[key] for key in others}, FIRST_LAYOUT_HEADS, to_torchaudio=True)
    return {**current, **heads, **{key: parent[key] for key in unplaced}, **{key: state[key] for key in unknown}}


def current_names(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """A Learn2Diss state dict under the current weight names, whichever layout it was written in."""
    old = [key for key in state if in_first_layout(key)]
    if not old:
        return state
    return {**{k: v for k, v in state.items() if k not in old}, **from_first_layout({k: state[k] for k in old}, config)}


def _attention(i: int) -> str:
    return f"encoder.transformer.layers.{i}.attention."


def fuse_qkv(state: dict[str, Tensor], num_layers: int) -> None:
    """In place: WavLM's separate q/k/v projections -> torchaudio's ``nn.MultiheadAttention`` in_proj (q, k, v)."""
    for i in range(num_layers):
        prefix = _attention(i)
        for p in ("weight", "bias"):
            state[f"{prefix}attention.in_proj_{p}"] = torch.cat([state.pop(f"{prefix}{x}_proj.{p}") for x in "qkv"])
            state[f"{prefix}attention.out_proj.{p}"] = state.pop(f"{prefix}out_proj.{p}")


def split_qkv(state: dict[str, Tensor], num_layers: int) -> None:
    """In place: the inverse of :func:`fuse_qkv`."""
    for i in range(num_layers):
        prefix = _attention(i)
        for p in ("weight", "bias"):
            for x, part in zip("qkv", state.pop(f"{prefix}attention.in_proj_{p}").chunk(3), strict=True):
                state[f"{prefix}{x}_proj.{p}"] = part.clone()
            state[f"{prefix}out_proj.{p}"] = state.pop(f"{prefix}attention.out_proj.{p}")


def parse_conv_layers(expr: str) -> tuple[tuple[int, int, int], ...]:
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


def format_conv_layers(layers: tuple[tuple[int, int, int], ...]) -> str:
    """The inverse of :func:`parse_conv_layers`, runs of equal layers written as fairseq does ("[(512,3,2)] * 4")."""
    runs: list[list] = []
    for layer in layers:
        if runs and runs[-1][0] == tuple(layer):
            runs[-1][1] += 1
        else:
            runs.append([tuple(layer), 1])
    return " + ".join(f"[({c},{k},{s})]" + (f" * {n}" if n > 1 else "") for (c, k, s), n in runs)


def fairseq_kind(where: str, cfg: dict, keys: set[str]) -> str:
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
    raise CheckpointError(f"{where}: cannot tell the model (cfg name {name!r}); expected a HuBERT, WavLM, "
                          "wav2vec 2.0 or data2vec audio pretraining checkpoint")


def parent_from_fairseq(where: str, cfg: dict, task: dict, kind: str) -> ParentConfig:
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
        raise CheckpointError(f"{where}: unsupported parent architecture: " + "; ".join(unsupported))
    depth = int(cfg.get("pos_conv_depth", 1))
    conv_pos = int(cfg.get("conv_pos", 128))
    fields = {**FAIRSEQ_FIELDS, **FAIRSEQ_WAVLM_FIELDS}
    return ParentConfig(
        kind=kind,
        conv_layers=parse_conv_layers(cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")),
        extractor_mode="group_norm" if cfg.get("extractor_mode", "default") == "default" else "layer_norm",
        pos_conv_kernel=max(3, conv_pos // depth) if depth > 1 else conv_pos,  # fairseq's TransformerEncoder
        pos_conv_layers=depth,
        normalize_waveform=bool(cfg.get("normalize", False) or task.get("normalize", False)),
        **{field: type(default)(cfg.get(key, default)) for field, (key, default) in fields.items()},
    )


def _unrepresentable(parent: ParentConfig, fmt: str) -> list[str]:
    """What of ``parent`` the format ``fmt`` (fairseq or huggingface) has no place for, named."""
    problems = []
    if parent.kind == "data2vec":
        if parent.pos_conv_layers == 1 and fmt == "huggingface":
            problems.append("pos_conv_layers 1 (Data2VecAudioModel always stacks its positional convolutions)")
        if fmt == "huggingface" and (parent.extractor_mode, parent.layer_norm_first) != ("layer_norm", False):
            problems.append(f"extractor_mode {parent.extractor_mode!r} / layer_norm_first {parent.layer_norm_first} "
                            "(Data2VecAudioModel has layer-norm convolutions and post-layer-norm layers)")
    elif parent.pos_conv_layers > 1:
        problems.append(f"pos_conv_layers {parent.pos_conv_layers} (a stacked positional convolution is data2vec's)")
    if fmt == "fairseq" and parent.kind == "data2vec" and parent.pos_conv_kernel < 3:
        problems.append(f"pos_conv_kernel {parent.pos_conv_kernel} (fairseq's data2vec uses at least 3)")
    return problems


def check_representable(parent: ParentConfig, fmt: str) -> None:
    """Raise :class:`CheckpointError` naming each field of ``parent`` that ``fmt`` cannot express."""
    problems = _unrepresentable(parent, fmt)
    if problems:
        raise CheckpointError(f"a {parent.kind} parent with " + "; ".join(problems) + f" has no {fmt} layout")


def fairseq_configs(parent: ParentConfig) -> tuple[dict, dict]:
    """(model config, task config) of the fairseq layout of ``parent``; WavLM's flat config has no task part."""
    check_representable(parent, "fairseq")
    fields = {**FAIRSEQ_FIELDS, **(FAIRSEQ_WAVLM_FIELDS if parent.kind == "wavlm" else {})}
    model, task = FAIRSEQ_NAMES[parent.kind]
    cfg = {"_name": model, "extractor_mode": "default" if parent.extractor_mode == "group_norm" else "layer_norm",
           "conv_feature_layers": format_conv_layers(parent.conv_layers),
           "conv_pos": parent.pos_conv_kernel * parent.pos_conv_layers,
           **{key: getattr(parent, field) for field, (key, _) in fields.items()},
           "activation_fn": "gelu", "activation_dropout": 0.0, "encoder_layerdrop": 0.0, "feature_grad_mult": 0.0}
    if parent.kind == "data2vec":
        cfg["pos_conv_depth"] = parent.pos_conv_layers
    if parent.kind == "hubert":
        cfg.update(label_rate=SAMPLE_RATE / parent.stride, final_dim=FAIRSEQ_FINAL_DIM)
    if parent.kind == "wav2vec2":
        cfg.update(quantize_targets=False, final_dim=FAIRSEQ_FINAL_DIM)
    if parent.kind == "wavlm":
        return {**cfg, "normalize": parent.normalize_waveform, "relative_position_embedding": True,
                "gru_rel_pos": True}, {}
    task_cfg = {"_name": task, "normalize": parent.normalize_waveform, "sample_rate": SAMPLE_RATE}
    if parent.kind == "hubert":
        task_cfg["label_rate"] = cfg["label_rate"]
    return cfg, task_cfg


def from_fairseq(where: str, ckpt: dict) -> tuple[ParentConfig, dict[str, Tensor]]:
    """The architecture and torchaudio-named weights of a loaded fairseq/WavLM checkpoint dictionary."""
    if "model" not in ckpt or not ("cfg" in ckpt or "args" in ckpt):
        raise CheckpointError(f"{where}: expected a fairseq/WavLM checkpoint with 'cfg' (or 'args') and 'model' keys, "
                              f"found {sorted(ckpt)}")
    cfg = _as_dict(ckpt.get("cfg") if ckpt.get("cfg") is not None else ckpt["args"])
    if isinstance(cfg.get("model"), dict | argparse.Namespace):  # fairseq hydra: {"model": ..., "task": ...}
        cfg, task = _as_dict(cfg["model"]), _as_dict(cfg.get("task"))
    else:  # old "args" files and WavLM: one flat config
        task = cfg
    weights = {key.removeprefix("w2v_model."): tensor for key, tensor in ckpt["model"].items()}
    kind = fairseq_kind(where, cfg, set(weights))
    parent = parent_from_fairseq(where, cfg, task, kind)
    weights = {k: v for k, v in weights.items() if k == "mask_emb" or not FAIRSEQ_PRETRAINING_ONLY.match(k)}
    state, unexpected = rename(weights, fairseq_keys(parent.extractor_mode), to_torchaudio=True)
    if unexpected:
        raise CheckpointError(f"{where}: unexpected parameter {unexpected[0]!r} for a {kind} checkpoint"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    if kind == "wavlm":
        fuse_qkv(state, parent.num_layers)
    return parent, state


def to_fairseq(parent: ParentConfig, state: dict[str, Tensor]) -> dict:
    """The fairseq / Microsoft WavLM checkpoint dictionary of a torchaudio-named parent (plain tensors and dicts).

    WavLM: Microsoft's ``{"cfg", "model"}``, what s3prl's ``wavlm_local`` reads. HuBERT, wav2vec 2.0 and data2vec:
    fairseq's ``{"cfg": {"model", "task"}, "model"}`` and, sharing the same objects (stored once), the converted
    layout that s3prl's ``hubert_local`` / ``wav2vec2_local`` / ``data2vec_local`` read (``task_cfg``,
    ``model_cfg``, ``model_weight``; HuBERT also ``dictionaries_symbols``). The pretraining heads those classes
    build are zeros (HuBERT ``final_proj``; wav2vec 2.0 ``project_q``, ``final_proj``) and the label dictionary
    is absent; data2vec's EMA teacher is an empty ``_ema``: the file gives features, not a pretraining state.
    """
    model_cfg, task_cfg = fairseq_configs(parent)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    if parent.kind == "wavlm":
        split_qkv(state, parent.num_layers)
    weights, unmatched = rename(state, fairseq_keys(parent.extractor_mode), to_torchaudio=False)
    if unmatched:
        raise CheckpointError(f"no fairseq name for {unmatched}")
    if parent.kind == "wavlm":
        return {"cfg": model_cfg, "model": weights}
    final = FAIRSEQ_FINAL_DIM
    if parent.kind == "hubert":
        weights.update({"final_proj.weight": torch.zeros(final, parent.embed_dim), "final_proj.bias": torch.zeros(final)})
    elif parent.kind == "wav2vec2":
        weights.update({"project_q.weight": torch.zeros(final, parent.conv_layers[-1][0]),
                        "project_q.bias": torch.zeros(final),
                        "final_proj.weight": torch.zeros(final, parent.embed_dim), "final_proj.bias": torch.zeros(final)})
    else:
        weights["_ema"] = {}
    ckpt = {"cfg": {"model": model_cfg, "task": task_cfg}, "model": weights,
            "model_cfg": model_cfg, "task_cfg": task_cfg, "model_weight": weights}
    if parent.kind == "hubert":
        ckpt["dictionaries_symbols"] = [None]  # s3prl's HubertModel: no label dictionary, as for fine-tuning
    return ckpt


def _as_dict(cfg: object) -> dict:
    return vars(cfg) if isinstance(cfg, argparse.Namespace) else dict(cfg or {})


def huggingface_unsupported(hf_config: object) -> list[str]:
    """Hugging Face options that the torchaudio modules cannot build, named."""
    return [f"{key} {getattr(hf_config, key)!r} (supported: {ok!r})" for key, ok in HUGGINGFACE_SUPPORTED.items()
            if getattr(hf_config, key, None) not in (None, ok)]


def parent_from_huggingface(kind: str, hf_config: object) -> ParentConfig:
    """The architecture of a ``transformers`` config of ``kind``.

    Waveform normalisation is not part of a Hugging Face model config. A learn2diss export records it under
    :data:`HUGGINGFACE_EXTRA`; otherwise it follows fairseq's rule, which every released parent obeys: normalised
    input exactly when the conv encoder uses layer norm (``preprocessor_config.json`` is unreliable: the hub's
    wav2vec 2.0 base says ``do_normalize: true`` although fairseq trained it without).
    """
    data2vec = kind == "data2vec"
    extractor_mode = "layer_norm" if data2vec else f"{hf_config.feat_extract_norm}_norm"
    fields = {**HUGGINGFACE_FIELDS, **(HUGGINGFACE_WAVLM_FIELDS if kind == "wavlm" else {})}
    extra = getattr(hf_config, HUGGINGFACE_EXTRA, None) or {}
    return ParentConfig(
        kind=kind,
        conv_layers=tuple(zip(hf_config.conv_dim, hf_config.conv_kernel, hf_config.conv_stride, strict=True)),
        extractor_mode=extractor_mode,
        pos_conv_kernel=hf_config.conv_pos_kernel_size if data2vec else hf_config.num_conv_pos_embeddings,
        pos_conv_layers=hf_config.num_conv_pos_embeddings if data2vec else 1,
        layer_norm_first=False if data2vec else hf_config.do_stable_layer_norm,
        normalize_waveform=bool(extra.get("normalize_waveform", extractor_mode == "layer_norm")),
        **{"num_buckets": 320, "max_distance": 800,  # WavLM's fields, ignored by the other kinds
           **{field: getattr(hf_config, key) for field, key in fields.items()}},
    )


def huggingface_config(parent: ParentConfig) -> object:
    """The ``transformers`` config of ``parent`` (the model class's own defaults for everything else)."""
    import transformers

    check_representable(parent, "huggingface")
    _, config_name, _, _ = HUGGINGFACE_KINDS[parent.kind]
    fields = {**HUGGINGFACE_FIELDS, **(HUGGINGFACE_WAVLM_FIELDS if parent.kind == "wavlm" else {})}
    channels, kernels, strides = zip(*parent.conv_layers, strict=True)
    values = {key: getattr(parent, field) for field, key in fields.items()}
    values.update(conv_dim=list(channels), conv_kernel=list(kernels), conv_stride=list(strides),
                  feat_proj_dropout=parent.dropout, activation_dropout=0.0, layerdrop=0.0,
                  hidden_act="gelu", feat_extract_activation="gelu",
                  **{HUGGINGFACE_EXTRA: {"normalize_waveform": parent.normalize_waveform}})
    if parent.kind == "data2vec":
        values.update(conv_pos_kernel_size=parent.pos_conv_kernel, num_conv_pos_embeddings=parent.pos_conv_layers)
    else:
        values.update(num_conv_pos_embeddings=parent.pos_conv_kernel, do_stable_layer_norm=parent.layer_norm_first,
                      feat_extract_norm=parent.extractor_mode.removesuffix("_norm"))
    if parent.kind == "hubert":
        values["feat_proj_layer_norm"] = True
    return getattr(transformers, config_name)(**values)


def from_huggingface(parent: ParentConfig, hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchaudio-named weights of a Hugging Face model's ``state_dict()`` (its names as this torch writes them)."""
    state, unmatched = rename(hf_state, HUGGINGFACE_KEYS, to_torchaudio=True)
    if unmatched:
        raise CheckpointError(f"no torchaudio name for the Hugging Face weights {unmatched}")
    if parent.kind == "wavlm":
        fuse_qkv(state, parent.num_layers)
    return state


def to_huggingface(parent: ParentConfig, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The Hugging Face names of a torchaudio-named parent's weights."""
    state = dict(state)
    if parent.kind == "wavlm":
        split_qkv(state, parent.num_layers)
    weights, unmatched = rename(state, HUGGINGFACE_KEYS, to_torchaudio=False)
    if unmatched:
        raise CheckpointError(f"no Hugging Face name for {unmatched}")
    return weights
