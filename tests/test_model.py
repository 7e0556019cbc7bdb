"""The Learn2Diss model: f, g and h composed, shapes, padding, masking, frozen parts, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import randomize_, tiny_config
from torch import Tensor, nn

from learn2diss.upstream import parent
from learn2diss.upstream.checkpoints import import_parent, save_model
from learn2diss.upstream.config import ModelConfig
from learn2diss.upstream.model import Learn2Diss, aggregate_frame_layers, build_parts, span_mask
from learn2diss.upstream.utterance import UtteranceOutput


def test_f_g_and_h_are_modules_that_compose_into_the_model(waveforms):
    model = randomize_(Learn2Diss(tiny_config("wavlm", 1))).eval()
    lengths = torch.tensor([4000, 3000])
    with torch.no_grad():
        features = model.f(waveforms, lengths, True)
        frames = model.g(features)
        utt = model.h(features.x, features.lengths)
        out = model(waveforms, lengths)
    assert len(features.hidden_states) == 2 and features.position_bias is not None  # WavLM's bias, from f's layer 1
    for a, b in zip(out.frame_hidden_states, [*features.hidden_states, *frames.layers], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(out.utt_embedding, utt.embedding) and frames.logits.shape == (2, features.x.shape[1], 20)


class MeanPooling(nn.Module):
    """A stand-in h: the features are its one per-frame layer, their mean over the valid frames z^L."""

    def forward(self, x: Tensor, lengths: Tensor) -> UtteranceOutput:
        valid = parent.valid_frames(lengths, x.shape[1])[..., None]
        pooled = (x * valid).sum(1) / lengths[:, None]
        return UtteranceOutput([x], pooled, pooled)


def test_a_part_can_be_swapped(waveforms):
    config = tiny_config("hubert", 1)
    torch.manual_seed(0)
    f, g, _ = build_parts(config)
    model = Learn2Diss(config, parts=(f, g, MeanPooling())).train()
    torch.manual_seed(0)
    reference = Learn2Diss(config).eval()  # the same f and g (h is built after them)
    lengths = torch.tensor([4000, 2500])
    assert not model.f.training and model.utterance_parameters() == []
    out = model.eval()(waveforms, lengths)
    for a, b in zip(out.frame_hidden_states, reference(waveforms, lengths).frame_hidden_states, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(out.utt_embedding[1], out.utt_hidden_states[0][1, :124].mean(0))


@pytest.mark.parametrize(("changes", "adapters"), [
    (dict(kind="wavlm"), (parent.Unchanged, parent.GroupNormConvEncoder, parent.LayerInput, parent.WavLMLayers)),
    (dict(kind="data2vec", pos_conv_layers=2, extractor_mode="layer_norm", normalize_waveform=True),
     (parent.WaveformNormalization, parent.ConvEncoder, parent.PaddedLayerInput, parent.TransformerLayers)),
])
def test_what_differs_between_parents_is_chosen_when_the_model_is_built(changes, adapters):
    base = tiny_config("hubert", 1)
    model = Learn2Diss(ModelConfig(dataclasses.replace(base.parent, **changes), base.frame, base.utterance))
    built = (model.f.normalize, model.f.conv, model.f.layer_input, model.f.layers)
    assert [type(module) for module in built] == list(adapters)
    assert type(model.g.layers) is adapters[-1] and isinstance(model.g.layer_input, parent.Unchanged)


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
@pytest.mark.parametrize("frozen", [0, 1])
def test_inference_shapes(kind, frozen, waveforms):
    model = Learn2Diss(tiny_config(kind, frozen)).eval()
    out = model(waveforms, torch.tensor([4000, 3000]))
    frames = out.frame_lengths.max()
    assert len(out.frame_hidden_states) == 4  # input of layer 1 + 3 layers
    assert all(h.shape == (2, frames, 32) for h in out.frame_hidden_states)
    assert out.frame_lengths.tolist() == [199, 149]
    assert [z.shape for z in out.utt_hidden_states] == [(2, frames, 32)] * 5
    assert out.utt_embedding.shape == (2, 16)


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
@pytest.mark.parametrize("frozen", [0, 2])
@pytest.mark.parametrize("extractor_mode", ["group_norm", "layer_norm"])
def test_padded_batch_equals_single(kind, frozen, extractor_mode, waveforms):
    """Padding never leaks into the frame path (the base models' group norm runs over the valid frames)."""
    model = randomize_(Learn2Diss(tiny_config(kind, frozen, extractor_mode=extractor_mode))).eval()
    batched = model(waveforms, torch.tensor([4000, 2500]))
    alone = model(waveforms[1:, :2500])
    frames = int(alone.frame_lengths[0])
    for b, a in zip(batched.frame_hidden_states, alone.frame_hidden_states, strict=True):
        torch.testing.assert_close(b[1, :frames], a[0], atol=1e-4, rtol=1e-4)


def test_frozen_layers_match_parent_hidden_states(tmp_path, waveforms):
    """Moving layers between f and g (a model with N = 2 imports one with N = 0) does not change inference outputs."""
    a = randomize_(Learn2Diss(tiny_config("wavlm", 0))).eval()
    b = Learn2Diss(tiny_config("wavlm", 2)).eval()
    import_parent(b, save_model(a, tmp_path / "a"))
    for x, y in zip(a(waveforms).frame_hidden_states, b(waveforms).frame_hidden_states, strict=True):
        torch.testing.assert_close(x, y)


def test_span_mask_stays_inside_valid_frames():
    lengths = torch.tensor([100, 37, 5, 1])
    generator = torch.Generator().manual_seed(0)
    masks = torch.stack([span_mask(lengths, 120, 0.8, 10, generator) for _ in range(50)])
    valid = torch.arange(120)[None, :] < lengths[:, None]
    assert not (masks & ~valid).any()
    ratio = masks[:, 0, :100].float().mean().item()
    assert 0.35 < ratio < 0.7  # 1 - exp(-0.8) ≈ 0.55 for overlapping spans
    again = span_mask(lengths, 120, 0.8, 10, torch.Generator().manual_seed(0))
    assert torch.equal(again, masks[0])


def test_masked_frames_use_mask_embedding(waveforms):
    model = Learn2Diss(tiny_config("hubert", 1)).eval()
    features = model.extract(waveforms)
    mask = torch.zeros(features.x.shape[:2], dtype=torch.bool)
    mask[:, 10:20] = True
    with torch.no_grad():
        model.g.mask_embedding.fill_(3.0)
    masked = model.encode_frames(features, mask)
    plain = model.encode_frames(features)
    assert not torch.allclose(masked.layers[-1][:, 10:20], plain.layers[-1][:, 10:20])
    assert masked.logits.shape == (2, features.x.shape[1], 20)


def test_gradients_reach_only_g_and_h(waveforms):
    model = Learn2Diss(tiny_config("wavlm", 1)).train()
    features = model.extract(waveforms)
    mask = model.sample_mask(features, torch.Generator().manual_seed(0))
    frames = model.encode_frames(features, mask)
    utt = model.encode_utterance(features.x, features.lengths)
    loss = aggregate_frame_layers(frames.layers).sum() + frames.logits.sum()
    loss = loss + model.aggregate_utterance_layers(utt).sum() + utt.logits.sum()
    loss.backward()
    trainable = {id(p) for p in model.frame_parameters() + model.utterance_parameters()}
    for name, param in model.named_parameters():
        if id(param) in trainable:
            assert param.requires_grad, name
        else:
            assert param.grad is None and not param.requires_grad, name
    assert model.g.mask_embedding.grad is not None and model.g.mask_embedding.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.h.layer_projections.parameters())


def test_a_parent_can_train_its_front_end_with_a_scaled_conv_gradient(waveforms):
    """HuBERT's feature_grad_mult: the conv encoder's gradient is scaled, the rest of the front end's is not."""
    grads = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(0)  # the same weights and dropout for both scales
        model = Learn2Diss(tiny_config("hubert", 0)).train()
        front_end = model.train_front_end(scale)
        assert {id(p) for p in front_end} == {id(p) for m in model.front_end_modules() for p in m.parameters()}
        assert model.f.conv.training and model.g.layer_input.training and not list(model.frozen_modules())
        features = model.extract(waveforms)
        model.encode_frames(features).logits.sum().backward()
        assert all(p.grad is not None for p in front_end)
        grads[scale] = (model.f.conv.conv_layers[0].conv.weight.grad, model.f.projection.projection.weight.grad)
    torch.testing.assert_close(grads[0.1][0], 0.1 * grads[1.0][0])
    torch.testing.assert_close(grads[0.1][1], grads[1.0][1])
    with torch.no_grad():
        assert not model.extract(waveforms).x.requires_grad
    with pytest.raises(ValueError, match="num_frozen_layers = 0"):
        Learn2Diss(tiny_config("hubert", 1)).train_front_end(0.1)


def test_frozen_part_stays_in_eval_mode():
    model = Learn2Diss(tiny_config("hubert", 2)).train()
    assert not model.f.conv.training and not model.f.layer_input.training and not model.f.layers[1].training
    assert model.g.layers[0].training and model.g.layers[0].dropout.training and model.h.training


def test_aggregate_utterance_is_eq9(waveforms):
    model = Learn2Diss(tiny_config()).eval()
    features = model.extract(waveforms)
    utt = model.encode_utterance(features.x, features.lengths)
    expected = utt.embedding[:, None, :] + sum(
        z @ proj.weight.T for z, proj in zip(utt.layers, model.h.layer_projections, strict=True)
    )
    torch.testing.assert_close(model.aggregate_utterance_layers(utt), expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m(torch.randn(2, 1, 4000)), "average or pick one channel"),
        (lambda m: m(torch.randn(4000)), r"\(batch, samples\)"),
        (lambda m: m(torch.randn(2, 4000), sample_rate=8000), "16000 Hz"),
        (lambda m: m(torch.randn(2, 50)), "too short: 50 samples, need at least 110"),
        (lambda m: m(torch.full((1, 4000), float("nan"))), "NaN or inf"),
        (lambda m: m(torch.randn(2, 4000), torch.tensor([4000, 5000])), r"lengths must be in \[1, 4000\]"),
        (lambda m: m(torch.randint(0, 5, (1, 4000))), "floating point"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    model = Learn2Diss(tiny_config()).eval()
    with pytest.raises(ValueError, match=message):
        call(model)
