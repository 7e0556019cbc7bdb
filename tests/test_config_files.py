"""The packaged run configs: found by name or path, ``base:`` includes, and the values they resolve to.

``data/resolved_configs.json`` holds ``config_to_dict(load_config(name))`` of every packaged config as it was
before the configs shared a base (commit a5ccec1, ten full files). A config change made on purpose updates
that file in the same commit.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import yaml

from learn2diss.io import read_yaml
from learn2diss.pretrain.config import (
    Config,
    ConfigError,
    config_path,
    config_to_dict,
    load_config,
    read_config,
)
from learn2diss.schema import KINDS, find_config, packaged_configs

REFERENCE = json.loads((Path(__file__).parent / "data" / "resolved_configs.json").read_text())


def test_packaged_configs_are_the_reference_set():
    assert packaged_configs() == sorted(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_packaged_config_resolves_to_its_reference(name):
    assert json.loads(json.dumps(config_to_dict(load_config(name)))) == REFERENCE[name]


def test_ablations_and_variants_hold_only_their_differences():
    assert read_yaml(config_path("l2d_w12_no_mi")) == {"base": "l2d_w12", "joint": {"club": {"weight": 0.0}}}
    assert read_yaml(config_path("l2d_h6")) == {"base": "l2d_h12", "model": {"frame": {"num_frozen_layers": 6}}}
    assert "base" not in read_yaml(config_path("l2d_w12"))


@pytest.mark.parametrize("given", ["l2d_w12", "l2d_w12.yaml"])
def test_a_config_is_found_by_packaged_name(given):
    path = config_path(given)
    assert path.name == "l2d_w12.yaml" and path.is_file()
    assert load_config(given) == load_config(path)


def test_a_path_wins_over_the_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("l2d_w12.yaml").write_text(yaml.safe_dump({"base": "l2d_w12", "train": {"seed": 7}}))
    assert load_config("l2d_w12.yaml").train.seed == 7
    assert load_config("l2d_w12").train.seed == 0


def test_unknown_name_lists_the_packaged_configs():
    with pytest.raises(ConfigError, match=r"config 'l2d_w13': no such file .*packaged: demo_l2d, .*l2d_w12, "):
        load_config("l2d_w13")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_config_follows_one_name_or_path_rule(kind, tmp_path, monkeypatch):
    """Run configs, CTC configs, study grids and SUPERB task configs: a packaged name (with or without .yaml), an
    existing file (which wins over a packaged name), and a name with a folder part is a path, never a packaged name."""
    name = packaged_configs(kind)[0]
    packaged = find_config(name, kind)
    assert packaged.parent.name == (kind or "configs") and find_config(f"{name}.yaml", kind) == packaged
    monkeypatch.chdir(tmp_path)
    Path(f"{name}.yaml").write_text(packaged.read_text())
    assert find_config(f"{name}.yaml", kind) == Path(f"{name}.yaml")
    with pytest.raises(ConfigError, match=f"no such file and no packaged {KINDS[kind]} of that name; packaged: .*{name}"):
        find_config(f"configs/{name}.yaml", kind)


def test_base_by_name_and_by_relative_path_deep_merges(tmp_path):
    (tmp_path / "mid.yaml").write_text(yaml.safe_dump(
        {"base": "l2d_w12.yaml", "joint": {"club": {"weight": 0.5}, "steps": 10}}))
    (tmp_path / "top.yaml").write_text(yaml.safe_dump({"base": "mid.yaml", "joint": {"club": {"hidden_dim": 64}}}))
    config = load_config(tmp_path / "top.yaml")
    paper = load_config("l2d_w12")
    assert (config.joint.club.weight, config.joint.club.hidden_dim, config.joint.steps) == (0.5, 64, 10)
    assert config.joint.club.optimizer == paper.joint.club.optimizer  # siblings of an overridden key stay
    assert config.model == paper.model and config.data == paper.data
    assert "base" not in read_config(tmp_path / "top.yaml")


def test_overrides_apply_after_the_base(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"base": "l2d_w12_no_mi"}))
    assert load_config(tmp_path / "c.yaml", ["joint.club.weight=0.25"]).joint.club.weight == 0.25


def test_base_cycle_names_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: base: cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")


def test_missing_base_names_the_file_and_the_base(tmp_path):
    (tmp_path / "c.yaml").write_text("base: l2d_w99\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: base: 'l2d_w99' is neither a file .* nor a packaged run config"):
        load_config(tmp_path / "c.yaml")


def test_base_must_be_a_name(tmp_path):
    (tmp_path / "c.yaml").write_text("base: [l2d_w12]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: base: expected a config name or a path"):
        load_config(tmp_path / "c.yaml")


def test_a_key_missing_from_the_whole_chain_names_the_file(tmp_path):
    data = yaml.safe_load(config_path("l2d_w12").read_text())
    del data["joint"]["club"]["hidden_dim"]
    (tmp_path / "full.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "c.yaml").write_text("base: full.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: missing key\(s\) joint\.club\.hidden_dim"):
        load_config(tmp_path / "c.yaml")


def _config_dataclasses(cls: type, seen: set[type]) -> set[type]:
    """``cls`` and every dataclass its fields hold (the whole run-config tree)."""
    seen.add(cls)
    for tp in typing.get_type_hints(cls).values():
        for arg in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(arg) and arg not in seen:
                _config_dataclasses(arg, seen)
    return seen


def test_the_yaml_is_the_one_source_of_settings():
    """No config dataclass declares a default: a value not written in the (merged) YAML is an error."""
    classes = _config_dataclasses(Config, set())
    assert {"ModelConfig", "ParentConfig", "DataConfig", "CLUBConfig", "OptimizerConfig"} <= {c.__name__ for c in classes}
    with_defaults = [f"{cls.__name__}.{f.name}" for cls in classes for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_defaults == []
