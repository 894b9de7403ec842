"""physcut description layer: scenes, bodies, characters, actions, cameras, shots.

Pure data plus the choreography API; never imports an engine.

    from scenes import Scene, Box, FollowRig
    scene = scenes.load("rooftop_chase")          # a registered scene ...
    scene = scenes.load("my_scene.yaml")          # ... or a scene file
"""
from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .errors import ChoreographyError, SceneError
from .materials import ACOUSTIC_CLASSES, MATERIALS, Material
from .registry import available, get, load, register

__all__ = list(_core_all) + ["register", "available", "get", "load", "ACOUSTIC_CLASSES"]
