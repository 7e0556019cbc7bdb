"""The study's grid file: named settings, each a set of typed config overrides, and the figure's x axis.

Example (YAML)::

    x: joint.club.weight            # the figure's x axis (lambda)
    settings:
      lambda-0: {joint.club.weight: 0.0}
      lambda-1e-3: {joint.club.weight: 1.0e-3}
      lambda-1e-3-std: {joint.club.weight: 1.0e-3, joint.club.standardize: batch}

Grids are configs like the others (:mod:`learn2diss.schema`): ``--grid`` takes a packaged name (``study_club``,
``learn2diss/configs/grids/``) or a path, and the file is typed (:class:`GridFile`). Each value is an override of
the run config, kept as the YAML typed it (:class:`Setting`), checked against the run config's schema before any
cell runs (:func:`check_grid`); it is written out as ``KEY=VALUE`` once, on the command line of a cell's
``learn2diss pretrain``. Settings that differ only in the x key form one line of the figure.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learn2diss.errors import Learn2DissError
from learn2diss.schema import (
    ConfigError,
    apply_overrides,
    find_config,
    format_override,
    from_dict,
    load_config_file,
    packaged_configs,
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class StudyError(Learn2DissError, RuntimeError):
    """A study input (grid file, prepared run, corpus) is unusable, or a cell failed."""


@dataclass(frozen=True)
class GridFile:
    """A grid file as written: the x axis (a dotted run-config key) and the settings, name -> {dotted key: value}
    (an empty or null setting is the run config as it is)."""

    x: str
    settings: dict[str, dict[str, Any] | None]


@dataclass(frozen=True)
class Setting:
    """One named setting: its overrides, ``(dotted key, value)`` with the value typed as in the YAML."""

    name: str
    overrides: tuple[tuple[str, Any], ...]

    def value(self, key: str) -> object | None:
        """The override of ``key``, or None when this setting leaves it at the config's value."""
        return dict(self.overrides).get(key)

    def without(self, key: str) -> tuple[tuple[str, Any], ...]:
        """The overrides other than ``key``: settings with equal ones form one line of the figure."""
        return tuple((k, v) for k, v in self.overrides if k != key)

    def arguments(self) -> list[str]:
        """The overrides as ``KEY=VALUE`` for ``learn2diss pretrain --set`` (the one place they become text)."""
        return [format_override(k, v) for k, v in self.overrides]


@dataclass(frozen=True)
class Grid:
    """The settings of a study and the config key on the figure's x axis."""

    settings: tuple[Setting, ...]
    x: str


def parse_grid(data: object, where: str) -> Grid:
    """A grid from its YAML data (typed as :class:`GridFile`); errors name ``where`` and the key or setting."""
    try:
        return _grid(from_dict(GridFile, data), where)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _grid(file: GridFile, where: str) -> Grid:
    if not file.settings:
        raise ConfigError(f"{where}: settings: expected at least one setting")
    for name in file.settings:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: setting name {name!r}: use letters, digits and . _ + - (a folder name)")
    return Grid(tuple(Setting(name, tuple((overrides or {}).items())) for name, overrides in file.settings.items()),
                file.x)


def check_grid(grid: Grid, config: dict) -> None:
    """Every setting's overrides (and the x key) applied to ``config``, the plain mapping of the study's run config
    with its common ``--set`` overrides, must give a valid run config: an unknown key or a mistyped value is an
    error naming the setting, before any cell runs."""
    from learn2diss.pretrain.config import Config

    for setting in grid.settings:
        try:
            from_dict(Config, apply_overrides(copy.deepcopy(config), setting.overrides, f"setting {setting.name}"))
        except ConfigError as err:
            raise ConfigError(f"grid setting {setting.name}: {err}") from None
    if grid.x and grid.x not in {k for s in grid.settings for k, _ in s.overrides}:
        apply_overrides(copy.deepcopy(config), [(grid.x, None)], "grid x")  # the key must exist


def packaged_grids() -> list[str]:
    """Names of the grids that ship with the package (``learn2diss/configs/grids/*.yaml``)."""
    return packaged_configs("grids")


def read_grid(name_or_path: str | Path) -> Grid:
    """Read a grid file: a path, or the name of a packaged grid (``study_club``)."""
    return _grid(load_config_file(GridFile, name_or_path, "grids"), str(find_config(name_or_path, "grids")))
