"""Typed configs from YAML: nested dataclasses, every key checked.

``from_dict(cls, data, where)`` builds dataclass ``cls`` from a plain mapping and raises
:class:`ConfigError` naming the file and the dotted key for an unknown key, a missing key or a
value of the wrong type. Range checks live in each dataclass's ``__post_init__``: :func:`check_ranges`
raises one :class:`RangeError` that names every failing field, its value and the allowed range, and
``from_dict`` prefixes each field with the dotted key of its section (``joint.club.weight = -1.0, must be
>= 0``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from learn2diss.errors import Learn2DissError

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


def _check_value(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
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
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
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


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` with an error that names the file (invalid YAML, a Python tag, unreadable)."""
    from learn2diss.io import FileReadError
    from learn2diss.io import read_yaml as read

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return read(path, "config file")
    except FileReadError as err:
        raise ConfigError(str(err)) from None


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


def apply_overrides(data: dict, overrides: list[str], where: str = "--set") -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{where}: expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{where}: unknown key {key!r} (no section {part!r})")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{where}: unknown key {key!r}")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            detail = " ".join(str(err).split())
            hint = " (Python tags are never loaded)" if "python/" in detail else ""
            raise ConfigError(f"{where} {key}: {raw!r} is not a valid YAML value{hint}: {detail}") from None
    return data
