"""The study's grid file: named settings, each a set of dotted config overrides, and the figure's x axis.

Example (YAML)::

    x: joint.club.weight            # the figure's x axis (default joint.club.weight, i.e. lambda)
    settings:
      lambda-0: {joint.club.weight: 0.0}
      lambda-1e-3: {joint.club.weight: 1.0e-3}
      lambda-1e-3-std: {joint.club.weight: 1.0e-3, joint.club.standardize: true}

Each value is applied like ``learn2diss pretrain --set KEY=VALUE``. Settings that differ only in the x
key form one line of the figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from learn2diss.errors import Learn2DissError
from learn2diss.schema import packaged_names, packaged_yaml

DEFAULT_X = "joint.club.weight"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class StudyError(Learn2DissError, RuntimeError):
    """A study input (grid file, prepared run, corpus) is unusable, or a cell failed."""


@dataclass(frozen=True)
class Setting:
    """One named setting: its overrides as ``KEY=VALUE`` strings (YAML values)."""

    name: str
    overrides: tuple[str, ...]

    def value(self, key: str) -> object | None:
        """The override of ``key`` (parsed), or None when this setting leaves it at the config's value."""
        for item in self.overrides:
            k, v = item.split("=", 1)
            if k == key:
                return yaml.safe_load(v)
        return None

    def without(self, key: str) -> tuple[str, ...]:
        """The overrides other than ``key``: settings with equal ones form one line of the figure."""
        return tuple(item for item in self.overrides if item.split("=", 1)[0] != key)


@dataclass(frozen=True)
class Grid:
    """The settings of a study and the config key on the figure's x axis."""

    settings: tuple[Setting, ...]
    x: str = DEFAULT_X


def _override(key: object, value: object) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def parse_grid(data: object, where: str) -> Grid:
    """A grid from its YAML data; errors name ``where`` and the setting."""
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or not data["settings"]:
        raise StudyError(f"{where}: expected a mapping with 'settings: {{NAME: {{KEY: VALUE, ...}}, ...}}'")
    unknown = set(data) - {"settings", "x"}
    if unknown:
        raise StudyError(f"{where}: unknown top-level key(s) {sorted(unknown)}; allowed: settings, x")
    settings = []
    for name, overrides in data["settings"].items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise StudyError(f"{where}: setting name {name!r}: use letters, digits and . _ + - (a folder name)")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise StudyError(f"{where}: setting {name}: expected a mapping of dotted config keys to values")
        settings.append(Setting(name, tuple(_override(k, v) for k, v in overrides.items())))
    x = data.get("x", DEFAULT_X)
    if not isinstance(x, str):
        raise StudyError(f"{where}: x must be a dotted config key, got {x!r}")
    return Grid(tuple(settings), x)


GRIDS = "configs/grids"  # the packaged grids: learn2diss/configs/grids/*.yaml


def packaged_grids() -> list[str]:
    """Names of the grids that ship with the package (``learn2diss/configs/grids/*.yaml``)."""
    return packaged_names(GRIDS)


def read_grid(name_or_path: str | Path) -> Grid:
    """Read a grid file (YAML): a path, or the name of a packaged grid (``study_club``)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = packaged_yaml(name_or_path, GRIDS) or path
    if not path.is_file():
        raise StudyError(f"grid file not found: {name_or_path} (packaged grids: {', '.join(packaged_grids())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {err}") from None
    return parse_grid(data, str(path))
