"""Strict conversion between description dataclasses and plain dicts.

Every description class is a dataclass with type annotations; field metadata may
add ``min``/``max`` (inclusive unless ``min_exclusive``), ``choices`` and ``doc``.
Classes that are alternatives of one another (shapes, actions, rigs, transitions)
carry a ``kind`` class attribute and are written with a ``type`` key.

``decode`` never executes code: it only builds the registered dataclasses from
plain values, and raises `SceneError` naming the dotted field path, the valid
keys or choices, and the offending value.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, get_args, get_origin

from .errors import SceneError

#: union name -> {kind -> class}; filled by `tagged`.
UNIONS: dict[str, dict[str, type]] = {}


def tagged(union: str):
    """Class decorator: register a dataclass as one alternative of ``union``."""
    def deco(cls):
        UNIONS.setdefault(union, {})[cls.kind] = cls
        cls.union = union
        return cls
    return deco


class Union_:
    """Annotation marker for a field holding one alternative of a tagged union."""

    def __init__(self, name: str):
        self.name = name


@functools.lru_cache(maxsize=None)
def _hints(cls):
    """The resolved field annotations of dataclass ``cls`` (cached: resolving string
    annotations costs ~0.1 ms per class; callers only read the dict)."""
    return typing.get_type_hints(cls, include_extras=True)


def encode(obj: Any) -> Any:
    """Dataclass tree -> JSON-ready dicts/lists (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        if hasattr(type(obj), "kind") and hasattr(type(obj), "union"):
            out["type"] = type(obj).kind
        for f in dataclasses.fields(obj):
            if not f.init or f.name.startswith("_"):
                continue
            out[f.name] = encode(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        raise SceneError("", f"non-finite number {obj} cannot be written")
    return obj


def _typename(tp) -> str:
    if isinstance(tp, Union_):
        return f"one of {{{', '.join(sorted(UNIONS.get(tp.name, {})))}}}"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_range(value, meta: dict, path: str):
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        bad = value <= lo if meta.get("min_exclusive") else value < lo
        if bad:
            op = ">" if meta.get("min_exclusive") else ">="
            raise SceneError(path, f"must be {op} {lo}, got {value}")
    if hi is not None and value > hi:
        raise SceneError(path, f"must be <= {hi}, got {value}")
    if "choices" in meta and value not in meta["choices"]:
        raise SceneError(path, f"invalid value {value!r}", choices=meta["choices"])


def decode_value(tp, value, path: str, meta: dict | None = None):
    """Convert a plain value to annotation ``tp``; raise SceneError at ``path``."""
    meta = meta or {}
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = get_args(tp)
        for e in extra:
            if isinstance(e, Union_):
                return decode_value(e, value, path, meta)
        return decode_value(base, value, path, meta)
    if isinstance(tp, Union_):
        return decode_tagged(tp.name, value, path)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return decode_value(a, value, path, meta)
            except SceneError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise SceneError(path, f"expected {_typename(tp)}, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SceneError(path, f"expected a number, got {type(value).__name__} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise SceneError(path, f"must be finite, got {value}")
        _check_range(value, meta, path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SceneError(path, f"expected an integer, got {type(value).__name__} {value!r}")
        _check_range(value, meta, path)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SceneError(path, f"expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SceneError(path, f"expected a string, got {type(value).__name__} {value!r}")
        _check_range(value, meta, path)
        return value
    if origin is typing.Literal:
        choices = get_args(tp)
        if value not in choices:
            raise SceneError(path, f"invalid value {value!r}", choices=choices)
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SceneError(path, f"expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode_value(args[0], v, f"{path}[{i}]", meta) for i, v in enumerate(value))
        if len(value) != len(args):
            raise SceneError(path, f"expected {len(args)} values, got {len(value)}")
        return tuple(decode_value(a, v, f"{path}[{i}]", meta) for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        (a,) = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SceneError(path, f"expected a list, got {type(value).__name__}")
        return [decode_value(a, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        ka, va = get_args(tp)
        if not isinstance(value, dict):
            raise SceneError(path, f"expected a mapping, got {type(value).__name__}")
        return {decode_value(ka, k, f"{path}"): decode_value(va, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return decode(tp, value, path)
    raise TypeError(f"schema cannot decode annotation {tp!r} at {path}")


def decode_tagged(union: str, value, path: str):
    """Decode a ``{"type": kind, ...}`` mapping into the registered alternative."""
    options = UNIONS.get(union, {})
    if isinstance(value, str) and value in options:
        value = {"type": value}
    if not isinstance(value, dict):
        raise SceneError(path, f"expected a mapping with a 'type' key, got {value!r}",
                         choices=sorted(options))
    if "type" not in value:
        raise SceneError(path, "missing key 'type'", choices=sorted(options))
    kind = value["type"]
    if not isinstance(kind, str) or kind not in options:
        raise SceneError(f"{path}.type", f"unknown {union} type {kind!r}", choices=sorted(options))
    body = {k: v for k, v in value.items() if k != "type"}
    return decode(options[kind], body, path)


def decode(cls, data, path: str = ""):
    """Build dataclass ``cls`` from mapping ``data``; unknown keys and bad values raise."""
    if not isinstance(data, dict):
        raise SceneError(path, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    for key in data:
        if key not in fields:
            raise SceneError(_join(path, str(key)), f"unknown key '{key}' for {cls.__name__}",
                             choices=sorted(fields))
    kwargs = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SceneError(sub, f"missing required key '{name}' for {cls.__name__}")
            continue
        kwargs[name] = decode_value(hints[name], data[name], sub, dict(f.metadata))
    try:
        return cls(**kwargs)
    except SceneError as e:
        if path and not e.path.startswith(path):
            raise SceneError(_join(path, e.path), e.reason, choices=e.choices) from None
        raise


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def field(default=dataclasses.MISSING, *, min=None, max=None, min_exclusive=False, choices=None,
          doc: str = "", default_factory=dataclasses.MISSING):
    """``dataclasses.field`` with range/choice metadata checked by `decode` and `check`."""
    meta = {"doc": doc}
    if min is not None:
        meta["min"] = min
        meta["min_exclusive"] = min_exclusive
    if max is not None:
        meta["max"] = max
    if choices is not None:
        meta["choices"] = tuple(choices)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check(obj, path: str = ""):
    """Validate an already-built dataclass tree against its own annotations.

    The choreography API builds objects directly; running them through
    encode/decode applies exactly the checks a scene file gets.
    """
    decode(type(obj), {k: v for k, v in encode(obj).items() if k != "type"}, path)
