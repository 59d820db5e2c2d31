"""Typed settings: dataclass schemas checked through OmegaConf structured configs, ranges in one place.

A schema is a dataclass whose field types OmegaConf enforces (int, float, bool, str, Optional,
list, Enum) and whose ``field(metadata=...)`` carries the range or choices:
``ge``/``gt``/``le``/``lt`` (bounds), ``choices`` (allowed values; for a list, of each item) and
``nonempty`` (a list). :func:`check` merges a config into its schema and raises
:class:`SettingError` -- one line naming the setting, the value and what is allowed -- for the first
problem. Keys the schema does not know are left alone unless ``closed`` (a yaml may gain keys;
hydra already refuses unknown keys typed on the command line).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import typing
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from worldgame.errors import WorldgameError


class SettingError(WorldgameError):
    """A setting with a wrong type, range or choice: ``key=value: allowed``."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={show(value)}: {allowed}")


def setting(default: Any = dataclasses.MISSING, **limits: Any) -> Any:
    """A dataclass field with limits (see the module docstring), e.g. ``setting(0, ge=0)``."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=limits)
    return dataclasses.field(default=default, metadata=limits)


def check(schema: type, cfg: Any, prefix: str = "", closed: bool = False) -> Any:
    """Check ``cfg`` (a mapping or DictConfig) against ``schema``; return the merged, typed config."""
    base = OmegaConf.structured(schema)
    _open(base, closed)
    for name, hint in typing.get_type_hints(schema).items():
        if typing.get_origin(hint) is dict:
            OmegaConf.set_struct(base[name], False)  # a free-form mapping: its own check() judges the keys
    data = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    try:
        merged = OmegaConf.merge(base, data)
    except OmegaConfBaseException as e:
        key = str(getattr(e, "full_key", "") or getattr(e, "key", "") or "")
        value = getattr(e, "value", None)
        if "not in struct" in str(e) or type(e).__name__ == "ConfigKeyError":
            unknown = key or _quoted(str(e))
            known = ", ".join(f.name for f in dataclasses.fields(schema))
            raise SettingError(prefix + unknown, _plain(_lookup(data, unknown)), f"not a setting here; known: {known}") from None
        path = re.sub(r"\[\d+\]", "", key)
        raise SettingError(prefix + key, _plain(value), describe(*_field(schema, path))) from None
    _check_limits(schema, merged, prefix, data)
    return merged


def _open(node: DictConfig, closed: bool) -> None:
    """Struct flags on every level (structured configs set them per node)."""
    OmegaConf.set_struct(node, closed)
    for key in node:
        if not OmegaConf.is_interpolation(node, key) and isinstance(node[key], DictConfig):
            _open(node[key], closed)


def describe(f: dataclasses.Field | None, hint: Any = None) -> str:
    """What a field (with its resolved type ``hint``) allows, in words."""
    if f is None:
        return "not an allowed value"
    kind, optional = _kind(hint)
    m = f.metadata
    if "choices" in m:
        text = "choose " + ("each from " if kind == "list" else "one of ") + ", ".join(show(c) for c in m["choices"])
    elif isinstance(kind, type) and issubclass(kind, enum.Enum):
        text = "choose one of " + ", ".join(str(c.value) for c in kind)
    else:
        words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
                 "list": "a list, e.g. [1,2,4]", "dict": "a mapping"}
        text = "must be " + words.get(str(kind), "a value")
        bounds = [f"{op} {show(m[k])}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in m]
        if bounds:
            text += (" (each " if kind == "list" else " ") + " and ".join(bounds) + (")" if kind == "list" else "")
    return text + (", or null" if optional else "")


def show(value: Any) -> str:
    """A value as the user would type it on the command line."""
    value = _plain(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _check_limits(schema: type, cfg: DictConfig, prefix: str, given: Any) -> None:
    """Ranges, choices and checks of every field; errors show the value as ``given`` (not converted)."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name not in cfg or OmegaConf.is_interpolation(cfg, f.name):
            continue  # interpolations are checked where they point
        value = cfg[f.name]
        key = prefix + f.name
        shown = _get(given, f.name, value)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            if value is not None:
                _check_limits(hint, value, key + ".", _get(given, f.name))
            continue
        if value is None:
            continue
        items = list(value) if isinstance(value, ListConfig) else [value]
        if isinstance(value, ListConfig) and f.metadata.get("nonempty") and not items:
            raise SettingError(key, shown, describe(f, hint) + " (at least one)")
        m = f.metadata
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise SettingError(key, shown, describe(f, hint) + " (finite)")
            if "choices" in m and item not in m["choices"]:
                raise SettingError(key, shown, describe(f, hint))
            if isinstance(item, (int, float)) and not isinstance(item, bool) and (
                ("ge" in m and not item >= m["ge"]) or ("gt" in m and not item > m["gt"])
                or ("le" in m and not item <= m["le"]) or ("lt" in m and not item < m["lt"])
            ):
                raise SettingError(key, shown, describe(f, hint))
        if "check" in m:
            problem = m["check"](_plain(value))
            if problem:
                raise SettingError(key, shown, problem)


def _field(schema: Any, path: str) -> tuple[dataclasses.Field | None, Any]:
    """The field at a dotted ``path`` of ``schema`` and its resolved type."""
    for name in path.split("."):
        if not dataclasses.is_dataclass(schema):
            return None, None
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if name not in fields:
            return None, None
        f, schema = fields[name], typing.get_type_hints(schema)[name]
    return f, schema


def _kind(hint: Any) -> tuple[Any, bool]:
    """(base kind, optional) of a field's type: 'int', 'float', 'bool', 'str', 'list', 'dict' or an Enum."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple):
        return "list", optional
    if origin is dict:
        return "dict", optional
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        return origin, optional
    return getattr(origin, "__name__", str(origin)), optional


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=False)
    return value


def _quoted(text: str) -> str:
    match = re.search(r"'([^']+)'", text)
    return match.group(1) if match else "?"


def _get(node: Any, key: str, default: Any = None) -> Any:
    """``node[key]`` without resolving interpolations; ``default`` when absent."""
    if isinstance(node, DictConfig) and key in node:
        return node._get_node(key)._value()
    if isinstance(node, dict):
        return node.get(key, default)
    return default


def _lookup(cfg: Any, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=None) if isinstance(cfg, DictConfig) else None
    except OmegaConfBaseException:
        return None
