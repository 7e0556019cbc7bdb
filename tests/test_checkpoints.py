"""Parent import (Hugging Face directories, fairseq/WavLM .pt files), untrusted files, our own format."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest
import torch
import transformers
from conftest import randomize_, tiny_config
from safetensors.torch import load_file

from learn2diss.upstream import formats
from learn2diss.upstream.checkpoints import (
    CheckpointError,
    import_parent,
    load_model,
    read_model_config,
    read_parent,
    save_model,
)
from learn2diss.upstream.config import ModelConfig
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.parent import build_parent

HF_TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
               conv_dim=(32, 32, 32), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2),
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _model_from_parent(path: Path, frozen: int) -> Learn2Diss:
    parent, _ = read_parent(path)
    base = tiny_config(parent.kind, frozen)
    model = Learn2Diss(ModelConfig(parent=parent, frame=base.frame, utterance=base.utterance))
    import_parent(model, path)
    return model.eval()


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
@pytest.mark.parametrize("safe_serialization", [True, False])
def test_huggingface_directory_import_matches_hidden_states(tmp_path, kind, safe_serialization, waveforms):
    config_cls, model_cls = {"hubert": (transformers.HubertConfig, transformers.HubertModel),
                             "wavlm": (transformers.WavLMConfig, transformers.WavLMModel)}[kind]
    torch.manual_seed(0)
    hf = randomize_(model_cls(config_cls(**HF_TINY))).eval()
    hf.save_pretrained(tmp_path, safe_serialization=safe_serialization)
    with torch.no_grad():
        expected = hf(waveforms, output_hidden_states=True).hidden_states
    for frozen in (0, 1):
        model = _model_from_parent(tmp_path, frozen)
        with torch.no_grad():
            ours = model(waveforms).frame_hidden_states
        assert len(ours) == len(expected) == 4
        for layer, (a, b) in enumerate(zip(ours, expected, strict=True)):
            assert (a - b).abs().max() <= 1e-4, f"{kind} N={frozen} layer {layer}"


def _fairseq_state(parent: torch.nn.Module, kind: str) -> dict[str, torch.Tensor]:
    """The published fairseq HuBERT / Microsoft WavLM parameter names, written by hand (not by our mapping)."""
    sd = parent.state_dict()
    out = {"mask_emb": torch.randn(32), "label_embs_concat": torch.randn(5, 8), "final_proj.weight": torch.randn(8, 32)}
    out["feature_extractor.conv_layers.0.2.weight"] = sd["feature_extractor.conv_layers.0.layer_norm.weight"]
    out["feature_extractor.conv_layers.0.2.bias"] = sd["feature_extractor.conv_layers.0.layer_norm.bias"]
    for i in range(3):
        out[f"feature_extractor.conv_layers.{i}.0.weight"] = sd[f"feature_extractor.conv_layers.{i}.conv.weight"]
    out["layer_norm.weight"] = sd["encoder.feature_projection.layer_norm.weight"]
    out["layer_norm.bias"] = sd["encoder.feature_projection.layer_norm.bias"]
    out["post_extract_proj.weight"] = sd["encoder.feature_projection.projection.weight"]
    out["post_extract_proj.bias"] = sd["encoder.feature_projection.projection.bias"]
    pos = "encoder.transformer.pos_conv_embed.conv."
    out["encoder.pos_conv.0.bias"] = sd[pos + "bias"]
    out["encoder.pos_conv.0.weight_g"] = sd[pos + "parametrizations.weight.original0"]
    out["encoder.pos_conv.0.weight_v"] = sd[pos + "parametrizations.weight.original1"]
    out["encoder.layer_norm.weight"] = sd["encoder.transformer.layer_norm.weight"]
    out["encoder.layer_norm.bias"] = sd["encoder.transformer.layer_norm.bias"]
    for i in range(3):
        src, dst = f"encoder.transformer.layers.{i}.", f"encoder.layers.{i}."
        for a, b in [("layer_norm", "self_attn_layer_norm"), ("final_layer_norm", "final_layer_norm"),
                     ("feed_forward.intermediate_dense", "fc1"), ("feed_forward.output_dense", "fc2")]:
            for p in ("weight", "bias"):
                out[f"{dst}{b}.{p}"] = sd[f"{src}{a}.{p}"]
        if kind == "hubert":
            for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
                for w in ("weight", "bias"):
                    out[f"{dst}self_attn.{p}.{w}"] = sd[f"{src}attention.{p}.{w}"]
        else:
            for w in ("weight", "bias"):
                q, k, v = sd[f"{src}attention.attention.in_proj_{w}"].chunk(3)
                out[f"{dst}self_attn.q_proj.{w}"], out[f"{dst}self_attn.k_proj.{w}"] = q, k
                out[f"{dst}self_attn.v_proj.{w}"] = v
                out[f"{dst}self_attn.out_proj.{w}"] = sd[f"{src}attention.attention.out_proj.{w}"]
                out[f"{dst}self_attn.grep_linear.{w}"] = sd[f"{src}attention.gru_rel_pos_linear.{w}"]
            out[f"{dst}self_attn.grep_a"] = sd[f"{src}attention.gru_rel_pos_const"]
            if i == 0:
                out[f"{dst}self_attn.relative_attention_bias.weight"] = sd[f"{src}attention.rel_attn_embed.weight"]
    return out


FAIRSEQ_CFG = {"_name": "hubert", "extractor_mode": "default", "encoder_layers": 3, "encoder_embed_dim": 32,
               "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 2, "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] + [(32,2,2)] * 1",
               "conv_pos": 16, "conv_pos_groups": 2, "layer_norm_first": False, "conv_bias": False, "normalize": False}


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_fairseq_layout_import_matches_torchaudio(tmp_path, kind, waveforms, monkeypatch):
    parent = randomize_(build_parent(tiny_config(kind).parent)).eval()
    state = _fairseq_state(parent, kind)
    if kind == "hubert":  # fairseq hydra layout, with a task_state holding fairseq Dictionary objects
        fake = types.ModuleType("fairseq.data.dictionary")
        fake.Dictionary = type("Dictionary", (), {"__module__": "fairseq.data.dictionary"})
        for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
            monkeypatch.setitem(sys.modules, name, fake)
        dictionary = fake.Dictionary()
        dictionary.symbols = ["<s>", "0", "1"]
        ckpt = {"cfg": {"model": FAIRSEQ_CFG, "task": {"_name": "hubert_pretraining"}}, "model": state,
                "task_state": {"dictionaries": [dictionary]}}
    else:  # Microsoft's WavLM release: {"cfg": model config, "model": weights}
        ckpt = {"cfg": {**FAIRSEQ_CFG, "relative_position_embedding": True, "num_buckets": 320, "max_distance": 800,
                        "gru_rel_pos": True}, "model": state}
    path = tmp_path / f"{kind}_base.pt"
    torch.save(ckpt, path)
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    model = _model_from_parent(path, frozen=1)
    assert model.config.parent.kind == kind
    with torch.no_grad():
        expected = parent.extract_features(waveforms)[0]
        ours = model(waveforms).frame_hidden_states[1:]
    for a, b in zip(ours, expected, strict=True):
        assert (a - b).abs().max() <= 1e-5
    assert torch.equal(model.g.mask_embedding.detach(), state["mask_emb"])  # the parent's trained mask embedding


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_huggingface_masked_spec_embed_becomes_the_mask_embedding(tmp_path, kind):
    config_cls, model_cls = {"hubert": (transformers.HubertConfig, transformers.HubertModel),
                             "wavlm": (transformers.WavLMConfig, transformers.WavLMModel)}[kind]
    hf = model_cls(config_cls(**HF_TINY))
    with torch.no_grad():
        hf.masked_spec_embed.copy_(torch.linspace(-1, 1, 32))
    hf.save_pretrained(tmp_path)
    model = _model_from_parent(tmp_path, frozen=1)
    assert torch.equal(model.g.mask_embedding.detach(), torch.linspace(-1, 1, 32))


def test_huggingface_parent_without_mask_embedding_keeps_a_fresh_one(tmp_path):
    hf = transformers.HubertModel(transformers.HubertConfig(**HF_TINY, mask_time_prob=0.0, mask_feature_prob=0.0))
    assert not hasattr(hf, "masked_spec_embed")
    hf.save_pretrained(tmp_path)
    parent, _ = read_parent(tmp_path)
    base = tiny_config("hubert", 1)
    model = Learn2Diss(ModelConfig(parent=parent, frame=base.frame, utterance=base.utterance))
    fresh = model.g.mask_embedding.detach().clone()
    import_parent(model, tmp_path)
    assert torch.equal(model.g.mask_embedding.detach(), fresh)


def test_max_distance_that_differs_from_the_config_is_refused(tmp_path):
    hf = transformers.WavLMModel(transformers.WavLMConfig(**HF_TINY, max_bucket_distance=400, num_buckets=160))
    hf.save_pretrained(tmp_path)
    model = Learn2Diss(tiny_config("wavlm"))
    with pytest.raises(CheckpointError, match=r"num_buckets: config 320, checkpoint 160; "
                                              r"max_distance: config 800, checkpoint 400"):
        import_parent(model, tmp_path)


def test_architecture_mismatch_names_the_field(tmp_path):
    hf = transformers.HubertModel(transformers.HubertConfig(**HF_TINY))
    hf.save_pretrained(tmp_path)
    model = Learn2Diss(tiny_config("wavlm"))
    with pytest.raises(CheckpointError, match="kind: config 'wavlm', checkpoint 'hubert'"):
        import_parent(model, tmp_path)


class _TouchOnLoad:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"cfg": {}, "model": {"x": torch.zeros(1)}, "payload": _TouchOnLoad(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load.*nothing in the file was executed"):
        read_parent(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="x.pt"):
        read_parent(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="needs config.json"):
        read_parent(tmp_path)


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_our_format_round_trips_exactly(tmp_path, kind, waveforms):
    model = randomize_(Learn2Diss(tiny_config(kind, 1))).eval()
    save_model(model, tmp_path / "ckpt", extra={"step": 7})
    save_model(model, tmp_path / "ckpt")  # overwriting an existing checkpoint is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    torch.testing.assert_close(model(waveforms).utt_embedding, loaded(waveforms).utt_embedding, rtol=0, atol=0)


def test_load_model_explains_a_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="learn2diss export"):
        load_model(tmp_path)


def test_our_checkpoint_is_a_parent_too(tmp_path, waveforms):
    """The demo's small HuBERT-style parent is saved in our format and imported like any parent."""
    parent = randomize_(Learn2Diss(tiny_config("hubert", 0))).eval()
    save_model(parent, tmp_path / "parent")
    child = _model_from_parent(tmp_path / "parent", frozen=1)
    for a, b in zip(parent(waveforms).frame_hidden_states, child(waveforms).frame_hidden_states, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(child.g.mask_embedding, parent.g.mask_embedding)


FIRST_LAYOUT = Path(__file__).parent / "data" / "first_layout"


@pytest.mark.parametrize("name", ["wavlm_base_n1", "hubert_large_n0", "data2vec_n1"])
def test_checkpoint_of_the_first_layout_loads_and_computes_what_its_code_did(name):
    """Checkpoints that save_model wrote when f's and g's modules sat flat on the model (tests/data/first_layout)."""
    folder = FIRST_LAYOUT / name
    expected = load_file(folder / "expected.safetensors")
    model = load_model(folder).eval()
    assert not any(formats.in_first_layout(key) for key in model.state_dict())
    with torch.no_grad():
        out = model(expected["waveforms"], expected["lengths"])
        features = model.extract(expected["waveforms"], expected["lengths"])
        frames = model.encode_frames(features, expected["mask"])
        utt = model.encode_utterance(features.x, features.lengths)
    got = {"frame_logits": frames.logits, "utt_logits": utt.logits, "utt_embedding": out.utt_embedding,
           **{f"frame_hidden_states.{i}": h for i, h in enumerate(out.frame_hidden_states)},
           **{f"masked_frame_layers.{i}": h for i, h in enumerate(frames.layers)},
           **{f"utt_hidden_states.{i}": h for i, h in enumerate(out.utt_hidden_states)}}
    assert set(got) == set(expected) - {"waveforms", "lengths", "mask"}
    for key, tensor in got.items():  # computed on one thread: another thread count rounds differently (~1e-6)
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=1e-5, msg=key)


def test_training_state_of_the_first_layout_loads_under_a_prefix():
    """A training state (the CTC model holds Learn2Diss as ``model``) in the first layout loads strictly."""
    folder = FIRST_LAYOUT / "wavlm_base_n1"
    old = load_file(folder / "model.safetensors")
    wrapper = torch.nn.ModuleDict({"model": Learn2Diss(read_model_config(folder))})
    wrapper.load_state_dict({f"model.{key}": value for key, value in old.items()}, strict=True)
    reference = load_model(folder)
    for key, value in reference.state_dict().items():
        assert torch.equal(wrapper["model"].state_dict()[key], value), key
    assert formats.current_names(old, reference.config).keys() == reference.state_dict().keys()


@pytest.mark.parametrize("kind", ["hubert", "wavlm", "data2vec"])
@pytest.mark.parametrize("frozen", [0, 1, 2])
@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_every_weight_of_f_and_g_has_its_parent_name(kind, frozen, layer_norm_first):
    """formats.learn2diss_keys places each parent weight where build_parts puts its module, and nothing else."""
    base = tiny_config(kind, frozen)
    parent = dataclasses.replace(base.parent, layer_norm_first=layer_norm_first,
                                 pos_conv_layers=2 if kind == "data2vec" else 1)
    config = ModelConfig(parent, base.frame, base.utterance)
    names = {*build_parent(parent).state_dict(), formats.MASK_EMBEDDING_KEY}
    ours, unplaced = formats.rename(dict.fromkeys(names), formats.learn2diss_keys(config), to_torchaudio=False)
    frame_path = {key for key in Learn2Diss(config).state_dict() if not key.startswith(("g.head.", "h."))}
    assert not unplaced and set(ours) == frame_path
