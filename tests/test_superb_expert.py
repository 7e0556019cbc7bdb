"""The s3prl upstream: keys, shapes and strides, the default key per task, -s checks, entry errors."""

from __future__ import annotations

import pytest
import torch
import yaml
from superb_fixtures import LEXICON, STRIDE, make_checkpoint, make_librispeech, make_voxceleb1

from learn2diss.downstream_runs.launcher import LauncherError, s3prl_arguments
from learn2diss.upstream import hubconf
from learn2diss.upstream.expert import FEATURE_KEYS, UpstreamExpert


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    return make_checkpoint(tmp_path_factory.mktemp("superb_expert") / "tiny")


@pytest.fixture(scope="module")
def expert(checkpoint) -> UpstreamExpert:
    return hubconf.learn2diss_local(ckpt=str(checkpoint), model_config=None, refresh=False)


def test_keys_shapes_and_strides(expert: UpstreamExpert) -> None:
    wavs = [torch.randn(16000), torch.randn(8000)]
    with torch.no_grad():
        features = expert(wavs)
    assert set(features) == set(FEATURE_KEYS)
    frames = round(16000 / STRIDE)
    config = expert.model.config
    frame = features["hidden_states"]
    assert len(frame) == config.parent.num_layers + 1
    assert all(t.shape == (2, frames - 1, config.parent.embed_dim) for t in frame)  # conv frames of 1 s
    utt = features["utt_hidden_states"]
    assert len(utt) == len(config.utterance.channels) + 1  # A^l z^l for the 5 ECAPA layers, then z^L
    assert all(t.shape == (2, frames - 1, config.utterance.embed_dim) for t in utt)
    for key in FEATURE_KEYS:
        assert expert.get_downsample_rates(key) == STRIDE == config.parent.stride
    # task keys: semantic tasks read frame layers, non-semantic tasks the utterance layers
    assert all(features[k] is frame for k in ("pr", "asr", "ks", "ic", "sf", "frame_hidden_states"))
    assert all(features[k] is utt for k in ("sid", "asv", "er"))
    # z^L is the same in every frame, and the sum of the terms is z̄ of eq. 9
    assert torch.allclose(utt[-1][:, :1].expand_as(utt[-1]), utt[-1])
    output = expert.model(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([16000, 8000]))
    zbar = expert.model.h.aggregate(
        type("U", (), {"layers": output.utt_hidden_states, "embedding": output.utt_embedding})())
    assert torch.allclose(torch.stack(utt).sum(0), zbar, atol=1e-5)


def test_s3prl_featurizer_reads_selected_layers(expert: UpstreamExpert) -> None:
    from s3prl.upstream.interfaces import Featurizer

    config = expert.model.config
    for key, dim, layers in (("asv", config.utterance.embed_dim, 6), ("pr", config.parent.embed_dim, 4)):
        featurizer = Featurizer(expert, feature_selection=key, upstream_device="cpu")
        assert (featurizer.output_dim, featurizer.downsample_rate, featurizer.layer_num) == (dim, STRIDE, layers)
        wavs = [torch.randn(8000), torch.randn(4000)]
        with torch.no_grad():
            features = expert(wavs)
            out = featurizer(wavs, features)
        frames = features["hidden_states"][0].shape[1]  # conv frames of the longest wav; s3prl cuts to len/stride
        assert [tuple(f.shape) for f in out] == [(min(frames, 100), dim), (50, dim)]


def test_default_key_per_task(tmp_path, checkpoint) -> None:
    make_voxceleb1(tmp_path / "VoxCeleb1")
    make_librispeech(tmp_path / "LibriSpeech")
    for task, downstream in (("asv", "sv_voxceleb1"), ("pr", "ctc")):
        expdir = tmp_path / f"run_{task}"
        args = s3prl_arguments(["-m", "train", "-u", "learn2diss_local", "-k", str(checkpoint), "-d", task,
                                "-p", str(expdir), "--data-root", str(tmp_path), "--device", "cpu"])
        assert args[args.index("-s") + 1] == task
        assert args[args.index("-d") + 1] == downstream
        config = args[args.index("-c") + 1]
        assert config == str(expdir / f"learn2diss_{task}.yaml")
        written = yaml.safe_load((expdir / f"learn2diss_{task}.yaml").read_text())
        assert "null" not in yaml.safe_dump(written["downstream_expert"])  # every data path filled
    phones = (tmp_path / "run_pr" / "metadata" / "phoneme.txt").read_text().split()
    assert phones == sorted({phone for phones in LEXICON.values() for phone in phones.split()})


def test_misspelled_feature_key_is_an_error(checkpoint) -> None:
    with pytest.raises(LauncherError, match="unknown upstream feature key -s 'utt_hiden_states'.*utt_hidden_states"):
        s3prl_arguments(["-m", "train", "-u", "learn2diss_local", "-k", str(checkpoint), "-d", "asv",
                         "-s", "utt_hiden_states", "-n", "x"])
    with pytest.raises(ValueError, match="valid|learn2diss upstreams output"):
        UpstreamExpert(checkpoint).get_downsample_rates("hidden_state")


def test_named_entry_without_checkpoint_says_how_to_make_one(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LEARN2DISS_CHECKPOINTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        hubconf.learn2diss_w12(ckpt=None, model_config=None, refresh=False)
    message = str(error.value)
    assert str(tmp_path / "learn2diss_w12") in message
    assert "learn2diss pretrain --config l2d_w12 " in message and "learn2diss export" in message
    assert "-k" in message


def test_named_entry_checks_the_architecture(checkpoint) -> None:
    with pytest.raises(ValueError, match="learn2diss_h6: .* wavlm model with N=0 .* hubert with N=6"):
        hubconf.learn2diss_h6(ckpt=str(checkpoint))
    assert isinstance(hubconf.learn2diss_w12(ckpt=str(checkpoint)), UpstreamExpert)


def test_register_puts_entries_on_the_hub() -> None:
    import types

    hub = types.ModuleType("hub")
    hubconf.register(hub)
    assert {name for name in dir(hub) if name.startswith("learn2diss_")} == {
        "learn2diss_local", "learn2diss_h6", "learn2diss_h12", "learn2diss_w6", "learn2diss_w12"}


def test_each_key_runs_only_its_encoder_with_the_values_of_a_full_forward(expert: UpstreamExpert) -> None:
    model = expert.model
    calls = {"g": 0, "h": 0}
    hooks = [model.g.layers[-1].register_forward_hook(lambda *_: calls.__setitem__("g", calls["g"] + 1)),
             model.h.register_forward_hook(lambda *_: calls.__setitem__("h", calls["h"] + 1))]
    wavs = [torch.randn(12000), torch.randn(9000)]
    try:
        with torch.no_grad():
            full = model(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([12000, 9000]))
            calls.update(g=0, h=0)
            frame = expert(wavs)
            assert "hidden_states" in frame and len(frame) == len(FEATURE_KEYS) and calls == {"g": 0, "h": 0}
            hidden = frame["pr"]
            assert calls == {"g": 1, "h": 0} and frame.computed == ("frame",)
            utt = expert(wavs)["asv"]
            assert calls == {"g": 1, "h": 1}
    finally:
        for hook in hooks:
            hook.remove()
    assert all(torch.equal(a, b) for a, b in zip(hidden, full.frame_hidden_states, strict=True))
    projections = model.h.layer_projections
    projected = [proj(z) for proj, z in zip(projections, full.utt_hidden_states, strict=True)]
    assert all(torch.equal(a, b) for a, b in zip(utt[:-1], projected, strict=True))
    assert torch.equal(utt[-1][:, 0], full.utt_embedding)


def test_keys_read_later_keep_the_grad_mode_of_the_forward(expert: UpstreamExpert) -> None:
    with torch.no_grad():
        features = expert([torch.randn(8000)])
    assert not features["hidden_states"][-1].requires_grad  # read outside no_grad, computed as inside it
    assert expert([torch.randn(8000)])["hidden_states"][-1].requires_grad


def test_the_model_gives_the_utterance_terms_the_expert_returns(expert: UpstreamExpert) -> None:
    """The A^l projections are applied once, inside the model: the expert's utterance key is
    ``Learn2Diss.utterance_hidden_states``, equal to A^l z^l computed by hand and summing to z̄ of eq. 9."""
    model = expert.model
    wavs = [torch.randn(12000), torch.randn(9000)]
    with torch.no_grad():
        features = model.extract(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([12000, 9000]))
        utt = model.encode_utterance(features.x, features.lengths)
        terms = model.utterance_hidden_states(utt)
        read = expert(wavs)["utt_hidden_states"]
        zbar = model.aggregate_utterance_layers(utt)
    by_hand = [z @ proj.weight.T for z, proj in zip(utt.layers, model.h.layer_projections, strict=True)]
    assert len(terms) == len(by_hand) + 1
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(terms, by_hand, strict=False))
    assert torch.equal(terms[-1], utt.embedding[:, None, :].expand_as(terms[-1]))
    assert all(torch.equal(a, b) for a, b in zip(read, terms, strict=True))
    torch.testing.assert_close(torch.stack(terms).sum(0), zbar)
    # the former code (A^l applied by the caller) gives the same bits, for the expert's key and for z̄
    projections = model.h.layer_projections
    former = [proj(z) for proj, z in zip(projections, utt.layers, strict=True)]
    assert all(torch.equal(a, b) for a, b in zip(read[:-1], former, strict=True))
    assert torch.equal(zbar, utt.embedding[:, None, :] + sum(proj(z) for proj, z in zip(projections, utt.layers, strict=True)))
