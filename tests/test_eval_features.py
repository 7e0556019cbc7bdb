"""Feature specs and extraction with a tiny random model saved with save_model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_helpers import tiny_checkpoint, write_librispeech

from learn2diss.data.audio import read_audio
from learn2diss.eval.features import FeatureSpec, extract_features, find_audio
from learn2diss.upstream.checkpoints import load_model


@pytest.mark.parametrize(
    ("text", "stream", "layer", "per_frame"),
    [("frame:last", "frame", "last", True), ("frame:3", "frame", 3, True), ("frame:mean", "frame", "mean", True),
     ("utt:2", "utt", 2, True), ("utt:embedding", "utt", "embedding", False)],
)
def test_parse_feature_specs(text, stream, layer, per_frame):
    spec = FeatureSpec.parse(text)
    assert (spec.stream, spec.layer, spec.per_frame, str(spec)) == (stream, layer, per_frame, text)


@pytest.mark.parametrize("text", ["frame", "frames:last", "frame:embedding", "utt:mean", "utt:0", "frame:-1"])
def test_bad_feature_specs_are_rejected(text):
    with pytest.raises(ValueError, match="--features"):
        FeatureSpec.parse(text)


def test_extraction_writes_50hz_features_and_resumes(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    write_librispeech(tmp_path / "audio", {"11": ["A B", "C"]}, seconds=1.0)
    audio = find_audio(tmp_path / "audio")
    model = load_model(ckpt)
    specs = [FeatureSpec.parse(s) for s in ("frame:last", "frame:0", "frame:mean", "utt:5", "utt:embedding")]
    folders = {str(s): tmp_path / "feats" / str(s).replace(":", "_") for s in specs}
    extract_features(model, audio, specs, folders, progress=False)

    utt = "11-100-0000"
    with torch.inference_mode():
        out = model.eval()(torch.from_numpy(read_audio(audio[utt]))[None])
    last = np.load(folders["frame:last"] / f"{utt}.npy")
    assert last.shape == (49, 32)  # 1 s at a 320-sample stride with a 400-sample receptive field
    np.testing.assert_allclose(last, out.frame_hidden_states[-1][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(folders["frame:0"] / f"{utt}.npy"), out.frame_hidden_states[0][0].numpy(),
                               atol=1e-5)
    mean = (out.frame_hidden_states[-1] + out.frame_hidden_states[-2])[0] / 2  # M = 3 - 1 frozen = 2 layers of g
    np.testing.assert_allclose(np.load(folders["frame:mean"] / f"{utt}.npy"), mean.numpy(), atol=1e-5)
    assert np.load(folders["utt:5"] / f"{utt}.npy").shape == (49, 24)
    assert np.load(folders["utt:embedding"] / f"{utt}.npy").shape == (16,)

    stamp = (folders["frame:last"] / f"{utt}.npy").stat().st_mtime_ns
    extract_features(model, audio, specs, folders, progress=False)  # everything exists: nothing is redone
    assert (folders["frame:last"] / f"{utt}.npy").stat().st_mtime_ns == stamp


def test_missing_audio_is_named(tmp_path):
    write_librispeech(tmp_path / "audio", {"11": ["A"]})
    with pytest.raises(FileNotFoundError, match="11-100-0007"):
        find_audio(tmp_path / "audio", ["11-100-0000", "11-100-0007"])
