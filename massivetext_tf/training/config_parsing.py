"""Typed dataclasses from YAML and flag values: coercion to each field's annotated type, with
errors that name the dotted field (the machinery under `training/config.py`)."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml


def coerce(value, tp, where: str):
    """Converts a YAML/flag value to the annotated type, or raises naming the field."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return f
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        if isinstance(value, bool):  # YAML 'true' for jit_compile
            return "true" if value else "false"
        return str(value)
    if tp in (dict, list) or origin in (dict, list):
        base = origin or tp
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, base):
            raise ValueError(f"{where}: expected a {base.__name__}, got {value!r}")
        return value
    return value


def from_mapping(cls, data, prefix: str):
    """A `cls` dataclass from a mapping, nested dataclass fields from nested mappings; an
    unknown field or a value of the wrong type is a `ValueError` naming the dotted field."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ValueError(
            f"unknown config field {where}{unknown[0]}; valid fields{' of ' + prefix if prefix else ''}:"
            f" {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        where = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_mapping(tp, value, where)
        else:
            kwargs[name] = coerce(value, tp, where)
    return cls(**kwargs)


def walk(flat: dict, prefix: str = ""):
    """(dotted key, leaf value) of a flat section dict, descending into dicts and lists."""
    for key, value in flat.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from walk(value, where + ".")
        elif isinstance(value, (list, tuple)):
            yield from walk({f"{key}[{i}]": item for i, item in enumerate(value)}, prefix)
        else:
            yield where, value
