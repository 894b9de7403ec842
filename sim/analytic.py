"""Analytic-physics check cases shared by the engine tests (MuJoCo and PyBullet).

Each ``*_case`` builds a small `scenes.Scene`, and each ``measure_*`` turns the
resulting `Trajectory` into the quantity to compare with the closed-form value
the case returns. The tests state the tolerances; nothing here asserts.
"""
from __future__ import annotations

import math

import numpy as np

import scenes
from scenes import Box, Material, Scene, Sphere, StaticRig

G = 9.81


def _finish(s: Scene) -> Scene:
    s.add_camera("cam", StaticRig(pos=(0.0, -6.0, 2.0), look_at=(0.0, 0.0, 0.5)))
    s.shot("cam", 0.0, s.duration)
    return s.validate()


def free_fall_case(height: float = 5.0, duration: float = 1.0, physics_hz: int = 480):
    """(scene, expected z(t) function) of a ball falling from rest, nothing below."""
    s = Scene(name="free_fall", duration=duration, fps=24, physics_hz=physics_hz)
    s.add_static("floor", Box((1.0, 1.0, 0.1)), pos=(50.0, 0.0, -50.0))
    s.add_prop("ball", Sphere(0.1), pos=(0.0, 0.0, height), mass=1.0, material="rubber")
    return _finish(s), (lambda t: height - 0.5 * G * np.asarray(t) ** 2)


def projectile_case(speed: float = 6.0, angle_deg: float = 40.0, physics_hz: int = 960):
    """(scene, expected range) of a ball launched from z=2 m, range measured back at z=2 m."""
    a = math.radians(angle_deg)
    v = (speed * math.cos(a), 0.0, speed * math.sin(a))
    s = Scene(name="projectile", duration=1.5, fps=48, physics_hz=physics_hz)
    s.add_static("floor", Box((1.0, 1.0, 0.1)), pos=(50.0, 0.0, -50.0))
    s.add_prop("ball", Sphere(0.05), pos=(0.0, 0.0, 2.0), mass=0.5, linvel=v)
    return _finish(s), speed ** 2 * math.sin(2 * a) / G


def measure_range(traj, body: str = "ball", z0: float = 2.0) -> float:
    """x distance travelled when the body comes back down through height z0
    (linear interpolation between frames)."""
    i = traj.body_index(body)
    p = traj.body_pos[:, i]
    down = np.nonzero((p[1:, 2] < z0) & (p[:-1, 2] >= z0) & (np.arange(1, len(p)) > 2))[0]
    k = int(down[0])
    w = (p[k, 2] - z0) / (p[k, 2] - p[k + 1, 2])
    return float(p[k, 0] + w * (p[k + 1, 0] - p[k, 0]) - p[0, 0])


def bounce_case(restitution: float, drop: float = 1.0, physics_hz: int = 960):
    """(scene, expected first-bounce height ratio e^2): a ball of radius 0.1 dropped
    ``drop`` m onto a floor of the same material."""
    s = Scene(name="bounce", duration=2.5, fps=120, physics_hz=physics_hz)
    s.add_material("test", Material(friction=0.5, restitution=restitution, density=1000.0))
    s.add_static("floor", Box((2.0, 2.0, 0.1)), pos=(0.0, 0.0, -0.1), material="test")
    s.add_prop("ball", Sphere(0.1), pos=(0.0, 0.0, 0.1 + drop), mass=0.5, material="test")
    return _finish(s), restitution ** 2


def measure_bounce_ratio(traj, drop: float = 1.0, body: str = "ball", radius: float = 0.1) -> float:
    """Apex height after the first impact divided by the drop height."""
    z = traj.body_pos[:, traj.body_index(body), 2] - radius
    vz = traj.body_linvel[:, traj.body_index(body), 2]
    hit = int(np.argmax(vz > 0.05))                 # first frame moving up after the impact
    nxt = hit + int(np.argmax((vz[hit:] < 0) & (z[hit:] < 0.02)))  # until it comes back down
    return float(z[hit:nxt if nxt > hit else None].max() / drop)


def sliding_case(speed: float = 3.0, friction: float = 0.5, physics_hz: int = 480):
    """(scene, expected sliding distance v^2 / (2 mu g)) of a flat box launched
    along a floor of the same material."""
    s = Scene(name="sliding", duration=2.0, fps=48, physics_hz=physics_hz)
    s.add_material("test", Material(friction=friction, restitution=0.0, density=500.0))
    s.add_static("floor", Box((10.0, 2.0, 0.1)), pos=(0.0, 0.0, -0.1), material="test")
    s.add_prop("block", Box((0.2, 0.2, 0.05)), pos=(0.0, 0.0, 0.0505), mass=2.0, material="test",
               linvel=(speed, 0.0, 0.0))
    return _finish(s), speed ** 2 / (2 * friction * G)


def collision_case(physics_hz: int = 960):
    """(scene, (m1, m2)) of two spheres colliding head-on in zero gravity."""
    s = Scene(name="collision", duration=1.0, fps=48, physics_hz=physics_hz, gravity=(0.0, 0.0, 0.0))
    s.add_static("far", Box((0.5, 0.5, 0.5)), pos=(0.0, 50.0, 0.0))
    s.add_prop("a", Sphere(0.15), pos=(-0.6, 0.0, 1.0), mass=2.0, material="rubber", linvel=(2.0, 0.0, 0.0))
    s.add_prop("b", Sphere(0.1), pos=(0.6, 0.02, 1.0), mass=0.7, material="metal", linvel=(-1.0, 0.0, 0.0))
    return _finish(s), (2.0, 0.7)


def pendulum_period(length: float, amplitude_rad: float) -> float:
    """Exact period of a simple pendulum (complete elliptic integral)."""
    from scipy.special import ellipk
    k = math.sin(amplitude_rad / 2)
    return 4 * math.sqrt(length / G) * float(ellipk(k * k))


def truncated(scene: Scene, seconds: float) -> Scene:
    """A copy of ``scene`` cut to its first ``seconds`` (actions, impulses and
    forces after that dropped; one shot on the first camera)."""
    s = scene.copy()
    s.duration = seconds
    for c in s.characters:
        c.actions = [a for a in c.actions if a.at < seconds]
    s.impulses = [i for i in s.impulses if i.time < seconds]
    s.forces = [f for f in s.forces if f.start < seconds]
    s.shots = [scenes.Shot(s.cameras[0].name, 0.0, seconds)]
    return s.validate()
