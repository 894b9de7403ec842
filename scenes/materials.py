"""The named material table: friction, restitution, density and an acoustic class.

Engines read friction and restitution; the bridge's contact audio reads the
acoustic class. Scenes may define their own materials (``Scene.materials``), which
shadow the built-in ones of the same name.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Acoustic classes understood by the contact-audio synthesiser.
ACOUSTIC_CLASSES = ("concrete", "wood", "metal", "rubber", "glass", "flesh", "plastic", "ceramic")


@dataclass(frozen=True)
class Material:
    """A surface material.

    Attributes:
        friction: Coulomb sliding friction coefficient mu, >= 0.
        restitution: coefficient of restitution e in [0, 1] (bounce height ratio e^2).
        density: kg/m^3, used when a prop gives neither mass nor density.
        acoustic: acoustic class for contact sound, one of ``ACOUSTIC_CLASSES``.
        color: RGBA in [0, 1] used by preview renders when a body sets no colour.
    """

    friction: float = 0.8
    restitution: float = 0.3
    density: float = 1000.0
    acoustic: str = "wood"
    color: tuple[float, float, float, float] = (0.6, 0.6, 0.6, 1.0)

    def __post_init__(self):
        from .errors import SceneError
        if not self.friction >= 0:
            raise SceneError("friction", f"must be >= 0, got {self.friction}")
        if not 0.0 <= self.restitution <= 1.0:
            raise SceneError("restitution", f"must be in [0, 1], got {self.restitution}")
        if not self.density > 0:
            raise SceneError("density", f"must be > 0, got {self.density}")
        if self.acoustic not in ACOUSTIC_CLASSES:
            raise SceneError("acoustic", f"unknown acoustic class '{self.acoustic}'",
                             choices=ACOUSTIC_CLASSES)


#: Built-in materials. Friction/restitution are typical engineering-table values.
MATERIALS: dict[str, Material] = {
    "concrete": Material(1.0, 0.2, 2400.0, "concrete", (0.55, 0.55, 0.52, 1.0)),
    "wood": Material(0.5, 0.45, 600.0, "wood", (0.62, 0.45, 0.25, 1.0)),
    "metal": Material(0.4, 0.55, 7800.0, "metal", (0.7, 0.72, 0.75, 1.0)),
    "rubber": Material(1.0, 0.8, 1100.0, "rubber", (0.15, 0.15, 0.15, 1.0)),
    "glass": Material(0.6, 0.6, 2500.0, "glass", (0.7, 0.85, 0.9, 1.0)),
    "flesh": Material(0.9, 0.05, 1000.0, "flesh", (0.85, 0.65, 0.55, 1.0)),
    "plastic": Material(0.4, 0.5, 1000.0, "plastic", (0.2, 0.4, 0.8, 1.0)),
    "ceramic": Material(0.5, 0.5, 2300.0, "ceramic", (0.95, 0.95, 0.92, 1.0)),
}


def resolve(name: str, overrides: dict[str, Material] | None = None, path: str = "material") -> Material:
    """Look a material up, scene overrides first; unknown names raise naming the field."""
    from .errors import SceneError
    if overrides and name in overrides:
        return overrides[name]
    if name in MATERIALS:
        return MATERIALS[name]
    choices = sorted(set(MATERIALS) | set(overrides or {}))
    raise SceneError(path, f"unknown material '{name}'", choices=choices)
