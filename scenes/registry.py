"""Registry of bundled scene factories, and `load` for names and scene files.

A factory is a function returning a `Scene`; its keyword parameters are the
scene's parameters and its docstring is the scene's description
(`physcut scenes` lists both). Adding a scene is one decorated function.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from .errors import SceneError

_REGISTRY: dict[str, Callable] = {}


def register(name: str | None = None, *, tags: tuple[str, ...] = ()):
    """Decorator: register a scene factory under ``name`` (default: function name)."""
    def deco(fn):
        key = name or fn.__name__
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise ValueError(f"scene '{key}' is already registered")
        fn.scene_tags = tuple(tags)
        _REGISTRY[key] = fn
        return fn
    return deco


def _ensure_library():
    from . import library  # noqa: F401  (registers the bundled scenes)


def available() -> dict[str, Callable]:
    """Registered scene factories by name, sorted."""
    _ensure_library()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Callable:
    _ensure_library()
    if name not in _REGISTRY:
        raise SceneError("scene", f"unknown scene '{name}'", choices=sorted(_REGISTRY))
    return _REGISTRY[name]


def describe(name: str) -> dict:
    """Name, first docstring paragraph and parameters (with defaults) of a scene."""
    fn = get(name)
    params = {k: (None if p.default is inspect.Parameter.empty else p.default)
              for k, p in inspect.signature(fn).parameters.items()}
    doc = inspect.getdoc(fn) or ""
    return {"name": name, "doc": doc, "summary": doc.split("\n\n")[0].replace("\n", " "),
            "params": params, "tags": getattr(fn, "scene_tags", ())}


def load(name_or_path, **params):
    """A registered scene by name (with factory parameters), or a YAML/JSON scene file."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml", ".json")) or Path(s).is_file():
        if params:
            raise SceneError("params", "scene files take no factory parameters")
        from .files import load_file
        return load_file(s)
    fn = get(s)
    sig = inspect.signature(fn)
    for k in params:
        if k not in sig.parameters:
            raise SceneError(f"params.{k}", f"unknown parameter for scene '{s}'", choices=list(sig.parameters))
    scene = fn(**params)
    return scene.validate()
