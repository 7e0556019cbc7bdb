"""Typed configs from YAML: one reader for every config of the package, nested dataclasses, every key checked.

Every config (a run config, a CTC config, a study grid, a SUPERB task config) is found by one rule
(:func:`find_config`): an existing file wins, else the packaged config of that name in ``learn2diss/configs/``
(``configs/`` for run configs, ``configs/ctc``, ``configs/grids``, ``configs/superb``). A file may start from
another with ``base: NAME`` (a packaged name of its kind, or a path relative to it) and give only what it
changes; mappings merge key by key (:func:`read_config_data`). :func:`load_config_file` reads, overrides and
types it.

``from_dict(cls, data, where)`` builds dataclass ``cls`` from a plain mapping and raises
:class:`ConfigError` naming the file and the dotted key for an unknown key, a missing key or a
value of the wrong type. Range checks live in each dataclass's ``__post_init__``: :func:`check_ranges`
raises one :class:`RangeError` that names every failing field, its value and the allowed range, and
``from_dict`` prefixes each field with the dotted key of its section (``joint.club.weight = -1.0, must be
>= 0``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from learn2diss.errors import Learn2DissError
from learn2diss.io import FileReadError, parse_yaml, read_yaml

T = TypeVar("T")


class ConfigError(Learn2DissError, ValueError):
    """A config file or override that does not match its schema."""


class RangeError(ConfigError):
    """Values outside their allowed range: ``problems`` holds ``(key, value, allowed)`` for each one."""

    def __init__(self, problems: list[tuple[str, Any, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key} = {value!r}, must be {allowed}" for key, value, allowed in problems))


def check_ranges(*checks: tuple[str, Any, bool, str]) -> None:
    """Raise one :class:`RangeError` for every ``(field, value, ok, allowed)`` check with ``ok`` false."""
    problems = [(key, value, allowed) for key, value, ok, allowed in checks if not ok]
    if problems:
        raise RangeError(problems)


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def positive(field: str, value: float) -> tuple[str, Any, bool, str]:
    """The :func:`check_ranges` check "finite and > 0" (a learning rate, eps, a batch's seconds)."""
    return field, value, math.isfinite(value) and value > 0, "finite and > 0"


def non_negative(field: str, value: float) -> tuple[str, Any, bool, str]:
    """The :func:`check_ranges` check "finite and >= 0" (a loss weight, a schedule's end points)."""
    return field, value, math.isfinite(value) and value >= 0, "finite and >= 0"


DEVICES = re.compile(r"cpu|cuda(:\d+)?|mps")


@typing.overload
def check_device(device: str, option: str = ...) -> str: ...
@typing.overload
def check_device(device: None, option: str = ...) -> None: ...
def check_device(device: str | None, option: str = "--device") -> str | None:
    """``device`` if it names a torch device this package runs on (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else a
    :class:`ConfigError` naming the option; None (choose automatically) passes."""
    if device is not None and not DEVICES.fullmatch(device):
        raise ConfigError(f"{option} {device!r}: not a device; use cpu, cuda, cuda:N or mps")
    return device


def _check_value(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(typing.cast(type, tp), value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_value(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_check_value(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        checked = [_check_value(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(checked) if origin is tuple else checked
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {k: _check_value(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as a string: it needs a dot, 1.0e-3
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``where`` is the dotted key prefix used in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls)) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(_join(where, k) for k in unknown)} "
                          f"(valid keys here: {', '.join(fields)})")
    missing = [name for name in fields if name not in data]
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(_join(where, k) for k in missing)}")
    values = {name: _check_value(hints[name], data[name], _join(where, name)) for name in fields}
    try:
        return cls(**values)
    except RangeError as err:
        raise RangeError([(_join(where, key), value, allowed) for key, value, allowed in err.problems]) from None
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where or 'config'}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Plain (YAML-safe) form of a dataclass tree: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


KINDS = {"": "run config", "ctc": "CTC config", "grids": "study grid", "superb": "SUPERB task config"}


def _kind_folder(kind: str) -> str:
    return "/".join(["configs", kind] if kind else ["configs"])


def packaged_configs(kind: str = "") -> list[str]:
    """Names of the configs of ``kind`` (:data:`KINDS`) that ship with the package."""
    return packaged_names(_kind_folder(kind))


def find_config(name_or_path: str | Path, kind: str = "") -> Path:
    """The one name-or-path rule: an existing file, else the packaged config of ``kind`` of that name (``l2d_w12``
    or ``l2d_w12.yaml``; a name with a folder part is a path, never a packaged name), else a :class:`ConfigError`
    listing the packaged ones."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_yaml(name_or_path, _kind_folder(kind))
    if packaged is not None:
        return packaged
    what = KINDS[kind]
    raise ConfigError(f"{what} {str(name_or_path)!r}: no such file and no packaged {what} of that name; "
                      f"packaged: {', '.join(packaged_configs(kind))}")


def read_config_data(path: Path, kind: str = "", chain: tuple[Path, ...] = ()) -> dict:
    """The plain mapping of a config file with its ``base:`` chain merged in (not yet typed); errors name the file."""
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{chain[-1]}: base: cycle {cycle}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = read_yaml(path, "config file")
    except FileReadError as err:  # invalid YAML, a Python tag, a key given twice: a config error naming the file
        raise ConfigError(str(err)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: expected a config name or a path, got {base!r}")
    beside = path.parent / base
    base_path = beside if beside.is_file() else packaged_yaml(base, _kind_folder(kind))
    if base_path is None:
        raise ConfigError(f"{path}: base: {base!r} is neither a file ({beside}) nor a packaged {KINDS[kind]}; "
                          f"packaged: {', '.join(packaged_configs(kind))}")
    return deep_merge(read_config_data(base_path, kind, (*chain, path.resolve())), data)


def load_config_file(cls: type[T], name_or_path: str | Path, kind: str = "",
                     overrides: Iterable[str | tuple[str, Any]] = (), where: str = "") -> T:
    """Config ``cls`` of the file :func:`find_config` finds, its ``base:`` chain merged, ``overrides`` applied
    (:func:`apply_overrides`); every error names the file."""
    path = find_config(name_or_path, kind)
    data = read_config_data(path, kind)
    try:
        apply_overrides(data, overrides)
        return from_dict(cls, data, where)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def packaged_folder(folder: str) -> Path:
    """``learn2diss/<folder>`` of the installed package (package data, found with importlib.resources)."""
    return Path(str(resources.files("learn2diss").joinpath(*folder.split("/"))))


def packaged_names(folder: str) -> list[str]:
    """Names (stems) of the YAML files shipped in ``learn2diss/<folder>``."""
    return sorted(p.stem for p in packaged_folder(folder).glob("*.yaml"))


def packaged_yaml(name: str | Path, folder: str) -> Path | None:
    """The shipped ``learn2diss/<folder>/<name>.yaml`` of a bare name (``l2d_w12`` or ``l2d_w12.yaml``, no
    folder part), or None when ``name`` is not one."""
    path = Path(name)
    stem = path.name.removesuffix(".yaml")
    if path.parent != Path(".") or stem not in packaged_names(folder):
        return None
    return packaged_folder(folder) / f"{stem}.yaml"


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s keys on top; nested mappings merge key by key (a new dict, inputs unchanged)."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge(merged[key], value) if both else value
    return merged


def parse_override(item: str, where: str = "--set") -> tuple[str, Any]:
    """``"a.b.c=value"`` (a command-line override) -> ``("a.b.c", value)``, the value parsed as YAML.

    >>> parse_override("joint.club.weight=1.0e-3")
    ('joint.club.weight', 0.001)
    """
    if "=" not in item:
        raise ConfigError(f"{where}: expected KEY=VALUE, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        return key, parse_yaml(raw, f"{where} {key}={raw}")
    except FileReadError as err:
        raise ConfigError(str(err)) from None


def format_override(key: str, value: Any) -> str:
    """``("a.b", value)`` -> ``"a.b=value"`` for a command line (the value as YAML): :func:`parse_override`'s inverse.

    >>> format_override("utt_targets.cluster_counts", [2, 3])
    'utt_targets.cluster_counts=[2, 3]'
    """
    import yaml

    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def apply_overrides(data: dict, overrides: Iterable[str | tuple[str, Any]], where: str = "--set") -> dict:
    """Apply overrides to a nested mapping, in place: ``(dotted key, value)`` pairs, or ``"a.b.c=value"`` strings
    from a command line (:func:`parse_override`). The key must exist."""
    for item in overrides:
        key, value = parse_override(item, where) if isinstance(item, str) else item
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{where}: unknown key {key!r} (no section {part!r})")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{where}: unknown key {key!r}")
        node[parts[-1]] = value
    return data
