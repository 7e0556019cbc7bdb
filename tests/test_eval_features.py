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


def test_frame_all_stacks_every_hidden_state(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    write_librispeech(tmp_path / "audio", {"11": ["A"]}, seconds=1.0)
    audio = find_audio(tmp_path / "audio")
    model = load_model(ckpt)
    spec = FeatureSpec.parse("frame:all", stacked=True)
    extract_features(model, audio, [spec], {"frame:all": tmp_path / "all"}, progress=False)
    with torch.inference_mode():
        out = model.eval()(torch.from_numpy(read_audio(audio["11-100-0000"]))[None])
    stacked = np.load(tmp_path / "all" / "11-100-0000.npy")
    assert stacked.shape == (len(out.frame_hidden_states), 49, 32)
    np.testing.assert_allclose(stacked[-1], out.frame_hidden_states[-1][0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="--features"):
        FeatureSpec.parse("frame:all")  # the evaluations read one layer


def test_the_cache_follows_the_audio_content_not_its_folder(tmp_path, capsys):
    """Moving (or copying) the audio reuses the features; other bytes under the same name recompute them."""
    import shutil

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    write_librispeech(tmp_path / "audio", {"11": ["A", "B"]}, seconds=1.0)
    model = load_model(ckpt)
    specs = [FeatureSpec.parse("frame:last")]
    folders = {"frame:last": tmp_path / "feats"}
    extract_features(model, find_audio(tmp_path / "audio"), specs, folders, progress=False)
    files = sorted((tmp_path / "feats").glob("*.npy"))
    stamps = [f.stat().st_mtime_ns for f in files]

    shutil.move(tmp_path / "audio", tmp_path / "moved")
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")  # new modification times too
    for folder in ("moved", "copy"):
        extract_features(model, find_audio(tmp_path / folder), specs, folders, progress=False)
        assert [f.stat().st_mtime_ns for f in files] == stamps
    assert "recomputing" not in capsys.readouterr().err

    other = next((tmp_path / "copy").rglob("11-100-0001.flac"))
    shutil.copy(next((tmp_path / "copy").rglob("11-100-0000.flac")), other)  # other bytes under that name
    extract_features(model, find_audio(tmp_path / "copy"), specs, folders, progress=False)
    assert [f.stat().st_mtime_ns for f in files][0] == stamps[0] and files[1].stat().st_mtime_ns != stamps[1]
