"""Every parent kind against code this project did not write.

Original layouts: s3prl's copies of the fairseq wav2vec 2.0 / data2vec / HuBERT and Microsoft WavLM model
classes (``s3prl/upstream/``), random weights saved with their own ``state_dict()`` names in the published
``{"cfg" | "args", "model"}`` layouts. Hugging Face: random ``transformers`` models saved with
``save_pretrained``. Both are imported through ``load_untrusted`` and compared on all frame hidden states.
Normalising parents get the reference's own normalisation (``F.layer_norm(wav, wav.shape)``, as s3prl's
experts do) on the reference side and raw audio on ours.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import randomize_, tiny_config

from learn2diss.upstream.checkpoints import CheckpointError, import_parent, read_parent
from learn2diss.upstream.config import ModelConfig, ParentConfig
from learn2diss.upstream.model import Learn2Diss

CONV = "[(24,10,5)] + [(24,3,2)] + [(24,2,2)]"  # narrower than the encoder, as in the real models
# variant -> (kind, extractor layer norm, layer_norm_first (Large), waveform normalisation, conv bias)
VARIANTS = {
    "wav2vec2_base": ("wav2vec2", False, False, False, False),
    "wav2vec2_large": ("wav2vec2", True, True, True, True),
    "data2vec_base": ("data2vec", True, False, True, False),
    "hubert_large": ("hubert", True, True, True, False),
    "wavlm_large": ("wavlm", True, True, True, False),
    "wavlm_base_plus": ("wavlm", False, False, False, False),
}
TOLERANCE = 1e-4


@pytest.fixture
def recording(waveforms: torch.Tensor) -> torch.Tensor:
    """Audio at a recording's level (std 0.1, an offset), so that waveform normalisation is far from the identity."""
    return 0.1 * waveforms + 0.02


def parent_config(variant: str) -> ParentConfig:
    """The tiny architecture of ``variant``, as our config states it."""
    kind, layer_norm, first, normalize, bias = VARIANTS[variant]
    data2vec = kind == "data2vec"
    return dataclasses.replace(
        tiny_config(kind).parent, conv_layers=((24, 10, 5), (24, 3, 2), (24, 2, 2)),
        extractor_mode="layer_norm" if layer_norm else "group_norm", layer_norm_first=first,
        normalize_waveform=normalize, conv_bias=bias, pos_conv_kernel=5 if data2vec else 16,
        pos_conv_layers=2 if data2vec else 1,
    )


def _fairseq_fields(variant: str) -> dict:
    kind, layer_norm, first, normalize, bias = VARIANTS[variant]
    fields = dict(encoder_layers=3, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                  conv_feature_layers=CONV, conv_pos=16, conv_pos_groups=2, layer_norm_first=first, conv_bias=bias,
                  extractor_mode="layer_norm" if layer_norm else "default")
    if kind == "data2vec":
        fields.update(conv_pos=10, pos_conv_depth=2)  # fairseq: kernel max(3, 10 // 2) = 5 per layer
    if kind == "wav2vec2":
        fields.update(final_dim=16, latent_vars=8, latent_groups=2)
    return fields


def write_original(variant: str, path: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """A reference model from s3prl's copy of the original code, saved in the published layout."""
    from s3prl.upstream.data2vec.data2vec_model import Data2VecAudioConfig, Data2VecAudioModel
    from s3prl.upstream.hubert.hubert_model import (
        HubertConfig,
        HubertModel,
        HubertPretrainingConfig,
    )
    from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Config, Wav2Vec2Model
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    kind, normalize = VARIANTS[variant][0], VARIANTS[variant][3]
    fields = _fairseq_fields(variant)
    torch.manual_seed(0)
    if kind == "wav2vec2":  # wav2vec_small.pt's layout: {"args": Namespace, "model"}
        cfg = Wav2Vec2Config(**fields)
        ref = Wav2Vec2Model(cfg)
        ckpt = {"args": argparse.Namespace(**dataclasses.asdict(cfg), arch="wav2vec2", normalize=normalize)}
    elif kind == "data2vec":  # audio_base_ls.pt: hydra {"cfg": {"model", "task"}, "model"} with the EMA teacher
        cfg = Data2VecAudioConfig(**fields)
        ref = Data2VecAudioModel(cfg)
        ckpt = {"cfg": {"model": {**dataclasses.asdict(cfg), "_name": "data2vec_audio"},
                        "task": {"_name": "audio_pretraining", "normalize": normalize}}}
    elif kind == "hubert":  # hubert_large_ll60k.pt: hydra layout
        cfg = HubertConfig(**fields, label_rate=50)
        task = HubertPretrainingConfig(label_rate=50, normalize=normalize)
        ref = HubertModel(cfg, task, [list(range(10))])
        ckpt = {"cfg": {"model": {**dataclasses.asdict(cfg), "_name": "hubert"}, "task": dataclasses.asdict(task)}}
    else:  # Microsoft's WavLM-Large.pt / WavLM-Base+.pt: {"cfg": WavLMConfig fields, "model"}
        cfg = WavLMConfig({**fields, "normalize": normalize, "relative_position_embedding": True, "gru_rel_pos": True,
                           "num_buckets": 320, "max_distance": 800})
        ref = WavLM(cfg)
        ckpt = {"cfg": dict(cfg.__dict__)}
    randomize_(ref).eval()
    state = ref.state_dict()
    if kind == "data2vec":  # the EMA teacher, stored as fairseq's Data2VecAudioModel.state_dict() adds it
        state["_ema"] = {k: v.clone() for k, v in ref.encoder.state_dict().items()}
    torch.save({**ckpt, "model": state}, path)
    return ref, state["mask_emb"]


def reference_hidden_states(ref: torch.nn.Module, wav: torch.Tensor, normalize: bool) -> list[torch.Tensor]:
    """Input of every transformer layer and the encoder output (the s3prl experts' hooks), on one utterance."""
    if normalize:
        wav = F.layer_norm(wav, wav.shape)
    states = []
    hooks = [layer.register_forward_hook(lambda m, inputs, out: states.append(inputs[0][:, 0]))  # (time, batch, dim)
             for layer in ref.encoder.layers]
    hooks.append(ref.encoder.register_forward_hook(lambda m, inputs, out: states.append(out[0][0])))
    with torch.no_grad():
        ref.extract_features(wav[None], None)
    for hook in hooks:
        hook.remove()
    return states


def _ours(path: Path, frozen: int) -> Learn2Diss:
    parent, _ = read_parent(path)
    base = tiny_config(parent.kind, frozen)
    model = Learn2Diss(ModelConfig(parent=parent, frame=base.frame, utterance=base.utterance))
    import_parent(model, path)
    return model.eval()


def _frames(model: Learn2Diss, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """All frame hidden states (the frame path of ``forward``, without h)."""
    with torch.no_grad():
        return model.frame_hidden_states(model.extract(waveforms, lengths))


def _max_diff(ours: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    assert len(ours) == len(expected) == 4
    return max((a[: b.shape[0]] - b[: a.shape[0]]).abs().max().item() for a, b in zip(ours, expected, strict=True))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_original_layout_matches_the_reference_code(tmp_path, variant, recording):
    ref, mask_emb = write_original(variant, tmp_path / f"{variant}.pt")
    parent, _ = read_parent(tmp_path / f"{variant}.pt")
    assert parent == parent_config(variant)
    normalize = VARIANTS[variant][3]
    for frozen, wav, length in ((0, recording[0], 4000), (2, recording[1], 3100)):
        model = _ours(tmp_path / f"{variant}.pt", frozen)
        assert torch.equal(model.g.mask_embedding.detach(), mask_emb)
        ours = [h[0] for h in _frames(model, wav[None, :length])]
        diff = _max_diff(ours, reference_hidden_states(ref, wav[:length], normalize))
        assert diff <= TOLERANCE, f"{variant} N={frozen}: max abs diff {diff:.2e}"


def hf_model(variant: str) -> torch.nn.Module:
    """A random ``transformers`` model of ``variant``'s architecture."""
    kind, layer_norm, first, _, bias = VARIANTS[variant]
    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(24, 24, 24), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), conv_bias=bias,
                  num_conv_pos_embedding_groups=2)
    if kind == "data2vec":
        config, cls = transformers.Data2VecAudioConfig(**common, num_conv_pos_embeddings=2, conv_pos_kernel_size=5), \
            transformers.Data2VecAudioModel
    else:
        config_cls, cls = {"wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
                           "hubert": (transformers.HubertConfig, transformers.HubertModel),
                           "wavlm": (transformers.WavLMConfig, transformers.WavLMModel)}[kind]
        config = config_cls(**common, num_conv_pos_embeddings=16, do_stable_layer_norm=first,
                            feat_extract_norm="layer" if layer_norm else "group")
    torch.manual_seed(0)
    return randomize_(cls(config)).eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_huggingface_directory_matches_transformers(tmp_path, variant, recording):
    hf = hf_model(variant)
    hf.save_pretrained(tmp_path)
    parent, _ = read_parent(tmp_path)
    assert parent == parent_config(variant)
    normalize = VARIANTS[variant][3]
    reference_input = F.layer_norm(recording, recording.shape[1:]) if normalize else recording
    with torch.no_grad():
        expected = hf(reference_input, output_hidden_states=True).hidden_states
    for frozen in (0, 2):
        model = _ours(tmp_path, frozen)
        assert torch.equal(model.g.mask_embedding.detach(), hf.masked_spec_embed.detach())
        ours = _frames(model, recording)
        diff = max(_max_diff([h[i] for h in ours], [h[i] for h in expected]) for i in range(2))
        assert diff <= TOLERANCE, f"{variant} N={frozen}: max abs diff {diff:.2e}"


@pytest.mark.parametrize(("variant", "frozen"), [(v, 0) for v in VARIANTS] + [("data2vec_base", 2), ("wavlm_large", 2)])
def test_padded_batch_equals_each_utterance_alone(variant, frozen, recording):
    """N = 0: g runs the positional convolution on a padded batch; N = 2: f does (and carries WavLM's bias)."""
    base = tiny_config(VARIANTS[variant][0], frozen)
    model = randomize_(Learn2Diss(ModelConfig(parent_config(variant), base.frame, base.utterance))).eval()
    lengths = torch.tensor([4000, 2500])
    batched = _frames(model, recording, lengths)
    for i, length in enumerate(lengths.tolist()):
        alone = _frames(model, recording[i : i + 1, :length])
        for b, a in zip(batched, alone, strict=True):
            torch.testing.assert_close(b[i, : a.shape[1]], a[0], atol=1e-5, rtol=1e-5)


def test_normalising_parent_ignores_the_recording_level(waveforms):
    """What the Large models were trained on: the level of the input does not reach the features."""
    base = tiny_config("hubert", 1)
    model = randomize_(Learn2Diss(ModelConfig(parent_config("hubert_large"), base.frame, base.utterance))).eval()
    lengths = torch.tensor([4000, 2500])
    with torch.no_grad():
        quiet = model.extract(0.01 * waveforms + 0.3, lengths)
        loud = model.extract(waveforms, lengths)
    torch.testing.assert_close(quiet.x, loud.x, atol=1e-4, rtol=1e-4)


def test_normalisation_mismatch_is_named(tmp_path):
    write_original("hubert_large", tmp_path / "large.pt")
    base = tiny_config("hubert")
    config = dataclasses.replace(parent_config("hubert_large"), normalize_waveform=False, layer_norm_first=False)
    model = Learn2Diss(ModelConfig(config, base.frame, base.utterance))
    with pytest.raises(CheckpointError, match="layer_norm_first: config False, checkpoint True; "
                                              "normalize_waveform: config False, checkpoint True"):
        import_parent(model, tmp_path / "large.pt")


def test_data2vec_positional_depth_mismatch_is_named(tmp_path):
    hf_model("data2vec_base").save_pretrained(tmp_path)
    base = tiny_config("data2vec")
    config = dataclasses.replace(parent_config("data2vec_base"), pos_conv_layers=3, pos_conv_kernel=7)
    model = Learn2Diss(ModelConfig(config, base.frame, base.utterance))
    with pytest.raises(CheckpointError, match="pos_conv_kernel: config 7, checkpoint 5; "
                                              "pos_conv_layers: config 3, checkpoint 2"):
        import_parent(model, tmp_path)


def test_unsupported_options_are_named(tmp_path):
    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                       conv_dim=(32,), conv_kernel=(10,), conv_stride=(5,), hidden_act="relu",
                                       conv_pos_batch_norm=True, num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=2)
    transformers.HubertModel(config).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"config.json: unsupported parent architecture: hidden_act 'relu' "
                                              r"\(supported: 'gelu'\); conv_pos_batch_norm True"):
        read_parent(tmp_path)
    ckpt = {"cfg": {"model": {"_name": "wav2vec2", "layer_type": "conformer", "activation_fn": "swish"},
                    "task": {}}, "model": {}}
    torch.save(ckpt, tmp_path / "conformer.pt")
    with pytest.raises(CheckpointError, match="conformer.pt: unsupported parent architecture: layer_type 'conformer' "
                                              r"\(supported: 'transformer'\); activation_fn 'swish'"):
        read_parent(tmp_path / "conformer.pt")


@pytest.mark.parametrize("variant", ["hubert_large", "data2vec_base"])
def test_s3prl_expert_normalises_like_the_parent(tmp_path, variant, recording):
    """Through the s3prl expert, a padded batch of raw audio equals the reference on each normalised utterance."""
    from learn2diss.upstream.checkpoints import save_model
    from learn2diss.upstream.expert import UpstreamExpert

    ref, _ = write_original(variant, tmp_path / "parent.pt")
    save_model(_ours(tmp_path / "parent.pt", frozen=2), tmp_path / "l2d")
    expert = UpstreamExpert(tmp_path / "l2d")
    lengths = (4000, 3100)
    with torch.no_grad():
        hidden = expert([wav[:n] for wav, n in zip(recording, lengths, strict=True)])["hidden_states"]
    for i, n in enumerate(lengths):
        expected = reference_hidden_states(ref, recording[i, :n], normalize=True)
        diff = _max_diff([h[i, : expected[-1].shape[0]] for h in hidden], expected)
        assert diff <= TOLERANCE, f"{variant} utterance {i}: max abs diff {diff:.2e}"


def test_our_data2vec_checkpoint_is_a_parent_too(tmp_path, recording):
    """Our format carries the stacked positional convolution and the normalisation flag to a child."""
    from learn2diss.upstream.checkpoints import save_model

    base = tiny_config("data2vec", 0)
    parent = randomize_(Learn2Diss(ModelConfig(parent_config("data2vec_base"), base.frame, base.utterance))).eval()
    save_model(parent, tmp_path / "parent")
    child = _ours(tmp_path / "parent", frozen=2)
    assert child.config.parent == parent.config.parent
    assert torch.equal(child.g.mask_embedding, parent.g.mask_embedding)
    for a, b in zip(_frames(parent, recording), _frames(child, recording), strict=True):
        torch.testing.assert_close(a, b)
