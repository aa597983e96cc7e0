"""Typed configs: YAML → dataclasses, with ``key=value`` overrides.

Unknown keys, wrong types and missing required fields fail at once with one message that
names the file and the dotted key path, and the closest valid key for a typo::

    configs/x.yaml: loss.betta: unknown key (did you mean 'beta'?)

A section whose dataclass has a ``resolve_class(name)`` classmethod is *registered*: it is
written ``key: name`` or ``key: {name: ..., <fields>}`` and validated against the class that
``resolve_class`` names (the ``method:`` section: each method has its own fields).

Which schema a file uses is named by its top-level ``trainer:`` key; the table of trainers is
``diffalign.train.TRAINERS`` (``diffalign.train.load_config`` reads a file). This module is
generic and torch-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = ["ConfigError", "parse_config", "read_yaml", "from_dict", "to_dict", "apply_overrides"]


class ConfigError(ValueError):
    """A config problem; the message names the file and the dotted key path."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _fail(where: str, path: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {path or '<top>'}: {msg}")


def _convert(value: Any, tp: Any, where: str, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (dataclasses, tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _fail(where, path, f"must not be null (expected {_type_name(tp)})")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(where, path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(where, path, f"must be one of {list(choices)}, got {value!r}{hint}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(where, path, f"expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        out = [_convert(v, item, where, f"{path}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, path, f"expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_convert(k, kt, where, path): _convert(v, vt, where, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and hasattr(tp, "resolve_class"):
        return _registered(tp, value, where, path)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, path)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, path, f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, path, f"expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(where, path, f"expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, path, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def _registered(tp: type, value: Any, where: str, path: str) -> Any:
    """A registered section: ``name`` or ``{name: ..., fields}`` → the named class's dataclass."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise _fail(where, path, f"expected a name or a mapping with a 'name' key, got {value!r}")
    try:
        cls = tp.resolve_class(value["name"])
    except ValueError as e:
        raise _fail(where, f"{path}.name", str(e)) from None
    return from_dict(cls, value, where, path)


def from_dict(cls: type, data: Any, where: str = "<config>", path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly (see module docstring)."""
    if not isinstance(data, dict):
        raise _fail(where, path, f"expected a mapping for {cls.__name__}, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(fields)})"
            raise _fail(where, f"{path}.{key}" if path else str(key), f"unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], where, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _fail(where, sub, "required key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError:
            raise
        except ValueError as e:
            raise _fail(where, path, str(e)) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict (for saving the resolved config next to outputs)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict, overrides: list[str], where: str = "<command line>") -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{where}: override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        value = yaml.load(raw, Loader=_Loader) if raw != "" else None
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if isinstance(nxt, str):  # a registered section given by name: `method: inpo` + `method.x=1`
                nxt = node[p] = {"name": nxt}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{where}: {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def parse_config(data: Any, schemas: dict[str, str], where: str = "<config>") -> Any:
    """Validate a config mapping against the schema its ``trainer:`` key names.

    Args:
        data: the mapping. schemas (dict[str, str]): trainer name → ``"module:Class"`` of its
            top-level config dataclass (imported lazily). where (str): the file, for errors.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the file must hold a mapping, got {type(data).__name__}")
    name = data.get("trainer")
    if name not in schemas:
        close = difflib.get_close_matches(str(name), list(schemas), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: trainer: must be one of {list(schemas)}, got {name!r}{hint}")
    module, cls = schemas[name].split(":")
    return from_dict(getattr(importlib.import_module(module), cls), data, where)


def read_yaml(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Read a YAML config file (``1e-4`` is a number) and apply ``key.path=value`` overrides.

    Raises:
        ConfigError: no such file, or invalid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{at}: {what}") from None
    if overrides:
        apply_overrides(data, overrides, where=f"{path} (overrides)")
    return data
