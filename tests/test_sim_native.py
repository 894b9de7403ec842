"""The native MuJoCo stepping loop (sim/_native.c) against the Python loop: the
same rollout, bit for bit, with characters (gate, assist, push-offs, landings,
ragdolls), props only, scripted kicks and pushes, and a divergence."""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

import scenes
import sim
from scenes import Box, Scene, Sphere, StaticRig
from sim import analytic, mujoco_engine


def _both(monkeypatch, scene, **kw):
    """(Python-loop result, native-loop result); a result is a Trajectory or the
    DivergenceError raised."""
    out = []
    for flag in ("0", "1"):
        monkeypatch.setenv(mujoco_engine.NATIVE_ENV, flag)
        try:
            out.append(sim.rollout(scene, **kw))
        except sim.DivergenceError as e:
            out.append(e)
    return out


def _assert_identical(a, b):
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), f.name
        else:
            assert x == y, f.name


def _kicked_scene() -> Scene:
    s = Scene(name="kicked", duration=1.5, physics_hz=480)
    s.add_ground()
    s.add_prop("crate", Box((0.15, 0.15, 0.15)), pos=(1.0, 0.0, 0.15), material="wood")
    s.add_prop("ball", Sphere(0.11), pos=(-1.0, 0.5, 0.11), material="rubber")
    s.kick("crate", (12.0, 0.0, 6.0), at=0.3, point=(1.0, 0.1, 0.25))
    s.push("ball", (30.0, 0.0, 0.0), start=0.5, end=0.8)
    c = s.add_character("runner", pos=(0.0, -1.5))
    c.walk_to((1.5, -1.5), at=0.2, speed=1.0)
    s.add_camera("c", StaticRig())
    s.shot("c", 0.0, s.duration)
    return s


def test_native_loop_is_built_and_used():
    assert mujoco_engine.native_module() is not None, "sim._native is not built (pip install -e . compiles it)"
    eng = sim.make_engine(_kicked_scene())
    assert isinstance(eng.native_stepper(), mujoco_engine.NativeStepper)


@pytest.mark.parametrize("name,seconds", [("rooftop_chase", None), ("brawl", 4.0), ("dominoes", 2.0)])
def test_native_and_python_loops_are_bit_identical(monkeypatch, name, seconds):
    scene = scenes.load(name)
    if seconds is not None:
        scene = analytic.truncated(scene, seconds)
    py, nat = _both(monkeypatch, scene)
    assert len(nat.contact_time) > 0
    _assert_identical(py, nat)


def test_native_loop_applies_scripted_kicks_and_pushes(monkeypatch):
    py, nat = _both(monkeypatch, _kicked_scene())
    _assert_identical(py, nat)
    crate = nat.body_index("crate")
    assert nat.body_linvel[int(0.3 * nat.fps) + 1, crate, 0] > 0.3          # the kick happened
    ball = nat.body_index("ball")
    assert nat.body_pos[-1, ball, 0] > -0.8                                # the push happened


def test_native_divergence_matches_python(monkeypatch):
    s = Scene(name="small", duration=2.0, physics_hz=480)
    s.add_ground()
    s.add_prop("ball", Sphere(0.1), pos=(0, 0, 1), mass=1.0)
    s.push("ball", (1e9, 0.0, 0.0), start=1.0, end=1.5)
    s.add_camera("c", StaticRig())
    s.shot("c", 0.0, s.duration)
    py, nat = _both(monkeypatch, s)
    assert isinstance(py, sim.DivergenceError) and isinstance(nat, sim.DivergenceError)
    assert str(py) == str(nat) and "physics step 481" in str(nat)
    _assert_identical(py.trajectory, nat.trajectory)
