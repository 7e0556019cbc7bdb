"""Config validation and the parameter breakdown of the paper's four configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from learn2diss.cli import console, main
from learn2diss.pretrain.config import ConfigError, config_path, load_config


def _write(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(config_path("l2d_w12").read_text())
    edit(data)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["model"]["frame"].update(mask_prop=0.5), r"unknown key\(s\) model\.frame\.mask_prop"),
        (lambda d: d["model"]["utterance"].pop("embed_dim"), r"missing key\(s\) model\.utterance\.embed_dim"),
        (lambda d: d["model"]["parent"].update(num_layers="12"), r"model\.parent\.num_layers: expected int"),
        (lambda d: d["model"]["parent"].update(kind="wav2vec"), r"model\.parent\.kind: 'wav2vec' is not one of"),
        (lambda d: d["model"]["frame"].update(mask_prob=1.5), r"model\.frame\.mask_prob = 1\.5, must be in \[0, 1\]$"),
        (lambda d: d["model"]["frame"].update(num_frozen_layers=12),
         r"model\.frame\.num_frozen_layers = 12, must be in \[0, 11\] \(parent\.num_layers - 1\)$"),
        (lambda d: d["data"].update(max_utterance_seconds=30.0),
         r"data\.max_utterance_seconds = 30\.0, must be <= max_batch_seconds = 25\.0$"),
        (lambda d: d["joint"]["frame_optimizer"].update(warmup_steps=-1),
         r"joint\.frame_optimizer\.warmup_steps = -1, must be >= 0$"),
        (lambda d: d["frame_targets"].update(layer=13),
         r"frame_targets\.layer = 13, must be <= model\.parent\.num_layers = 12, or mfcc$"),
        (lambda d: d["model"]["parent"].update(embed_dim=770),
         r"model\.parent\.embed_dim = 770, must be a multiple of num_heads \(12\)$"),
        (lambda d: (d["model"]["frame"].update(num_frozen_layers=6), d["joint"].update(feature_grad_mult=0.1)),
         r"joint\.feature_grad_mult = 0\.1, must be 0 when model\.frame\.num_frozen_layers > 0"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, edit)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_every_range_problem_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        load_config("l2d_w12", ["joint.club.weight=-1", "joint.club.inner_steps=-2", "joint.club.hidden_dim=4"])
    assert str(info.value).endswith(
        "l2d_w12.yaml: joint.club.weight = -1.0, must be finite and >= 0; joint.club.inner_steps = -2, must be >= 0")


def test_overrides_are_validated_too():
    config = load_config("l2d_w12", ["model.frame.mask_prob=0.65"])
    assert config.model.frame.mask_prob == 0.65
    with pytest.raises(ConfigError, match="unknown key 'model.frame.nope'"):
        load_config("l2d_w12", ["model.frame.nope=1"])


@pytest.mark.parametrize(("name", "paper"), [("h6", 61), ("h12", 103), ("w6", 61), ("w12", 103)])
def test_params_match_table1_within_5_percent(capsys, name, paper):
    assert main(["params", "--config", f"l2d_{name}"]) == 0
    out = capsys.readouterr().out
    learnable = float(re.search(r"total learnable\s*\|\s*([\d.]+)", out).group(1))
    assert abs(learnable - paper) / paper < 0.05, out
    assert "ECAPA-TDNN" in out and "W_g" in out


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 1
    assert "params" in capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LEARN2DISS_DEBUG", raising=False)
    path = _write(tmp_path, lambda d: d["model"]["frame"].update(mask_prop=0.5))
    with pytest.raises(ConfigError):
        main(["params", "--config", str(path)])
    assert console(["params", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("learn2diss params: error: ") and "model.frame.mask_prop" in err
    assert "Traceback" not in err
