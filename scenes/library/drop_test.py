"""The `drop_test` scene: objects of different materials dropped side by side."""
from __future__ import annotations

import math
import random

from scenes import (Box, Capsule, Cylinder, OrbitRig, Scene, SceneError, Sphere, StaticRig,
                    crossfade, quat_from_axis_angle, register)

#: (name, shape, material, half height along z when upright)
OBJECTS = (
    ("rubber_ball", Sphere(0.1), "rubber", 0.1),
    ("wooden_cube", Box((0.075, 0.075, 0.075)), "wood", 0.075),
    ("metal_cylinder", Cylinder(0.05, 0.1), "metal", 0.1),
    ("glass_sphere", Sphere(0.08), "glass", 0.08),
    ("concrete_block", Box((0.15, 0.1, 0.075)), "concrete", 0.075),
    ("plastic_capsule", Capsule(0.05, 0.1), "plastic", 0.15),
    ("ceramic_mug", Cylinder(0.045, 0.05), "ceramic", 0.05),
)


@register("drop_test", tags=("props", "materials"))
def drop_test(height: float = 1.5, spacing: float = 0.5, tilt_deg: float = 8.0, seed: int = 0,
              duration: float = 6.0) -> Scene:
    """Seven objects of different materials dropped side by side onto concrete.

    A rubber ball, wooden cube, steel cylinder, glass sphere, concrete block,
    plastic capsule and ceramic mug start at rest with their lowest point
    ``height`` metres above the ground, ``spacing`` metres apart along x, and fall
    at t = 0; they bounce according to their restitution and settle. The
    non-spherical ones start tilted by up to ``tilt_deg`` degrees about a
    horizontal axis drawn from ``seed``. The timeline lasts ``duration`` s.
    Cameras: a static front view and an orbit.
    """
    if not (height > 0 and spacing > 0.35):
        raise SceneError("params", f"height must be > 0 and spacing > 0.35 m (the widest "
                         f"object), got height={height}, spacing={spacing}")
    rng = random.Random(seed)
    scene = Scene(name="drop_test", duration=duration, fps=30, physics_hz=960,
                  description="objects of several materials dropped side by side and bouncing")
    scene.add_ground(size=30.0, material="concrete")
    n = len(OBJECTS)
    x0 = -spacing * (n - 1) / 2
    for i, (name, shape, material, half_z) in enumerate(OBJECTS):
        quat = (1.0, 0.0, 0.0, 0.0)
        reach = half_z
        if not isinstance(shape, Sphere) and tilt_deg > 0:
            axis_angle = rng.uniform(0, 2 * math.pi)
            tilt = math.radians(tilt_deg) * rng.uniform(0.5, 1.0)
            quat = quat_from_axis_angle((math.cos(axis_angle), math.sin(axis_angle), 0.0), tilt)
            reach = _depth_below_centre(shape, quat)
        scene.add_prop(name, shape, pos=(x0 + i * spacing, 0.0, height + reach), quat=quat,
                       material=material)

    # the front camera frames the whole line-up from the ground to the release height
    span = spacing * (n - 1) + 0.6
    hfov = 2 * math.atan(math.tan(math.radians(25.0)) * 16 / 9)
    dist = max(span / 2 / math.tan(hfov / 2), (height + 0.5) / 2 / math.tan(math.radians(25.0)))
    mid_z = (height + 0.3) / 2
    scene.add_camera("front", StaticRig(pos=(0.0, -dist, mid_z + 0.1), look_at=(0.0, 0.0, mid_z)),
                     fov=50.0)
    scene.add_camera("orbit", OrbitRig(center=(0.0, 0.0, 0.15), radius=0.6 * span + 0.8, height=1.1,
                                       period=16.0, phase=-math.pi / 2), fov=50.0)
    frames = round(duration * scene.fps)
    if frames < 2:
        raise SceneError("params.duration", f"drop_test needs at least 2 frames, got {duration} s")
    half = (frames // 2) / scene.fps
    scene.shot("front", 0.0, half, prompt="objects of different materials fall side by side")
    scene.shot("orbit", half, duration, transition=crossfade(min(0.5, half)),
               prompt="the camera circles the objects as they bounce and settle")
    return scene


def _depth_below_centre(shape, quat) -> float:
    """How far the lowest point of ``shape`` rotated by ``quat`` lies below its centre."""
    w, x, y, z = quat
    # third row of the rotation matrix: the body axes' z components
    rz = (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))
    if isinstance(shape, Box):
        return sum(abs(r) * h for r, h in zip(rz, shape.half_extents))
    if isinstance(shape, Cylinder):
        return shape.half_length * abs(rz[2]) + shape.radius * math.hypot(rz[0], rz[1])
    if isinstance(shape, Capsule):
        return shape.half_length * abs(rz[2]) + shape.radius
    return shape.radius
