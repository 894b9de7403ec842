"""The native MuJoCo stepping loop and control update (sim/_native.c) against the
Python loop: the same rollout, bit for bit, with characters (gait, gate, assist,
crouch, push-off, flight, landing, punches, kicks, hits, ragdolls), props only,
scripted kicks and pushes, and a divergence."""
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
    DivergenceError raised. The native loop with the control updates in Python
    must give the same as well (checked here too)."""
    out = []
    for flag, control in (("0", "0"), ("1", "0"), ("1", "1")):
        monkeypatch.setenv(mujoco_engine.NATIVE_ENV, flag)
        monkeypatch.setenv(mujoco_engine.NATIVE_CONTROL_ENV, control)
        try:
            out.append(sim.rollout(scene, **kw))
        except sim.DivergenceError as e:
            out.append(e)
    py, mixed, nat = out
    if isinstance(py, sim.DivergenceError):
        assert str(py) == str(mixed)
        _assert_identical(py.trajectory, mixed.trajectory)
    else:
        _assert_identical(py, mixed)
    return py, nat


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
    from sim.controller import Controller
    assert mujoco_engine.native_module() is not None, "sim._native is not built (pip install -e . compiles it)"
    scene = _kicked_scene()
    eng = sim.make_engine(scene)
    stepper = eng.native_stepper(Controller(scene, eng))
    assert isinstance(stepper, mujoco_engine.NativeStepper) and stepper.control


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


def _repertoire_scene() -> Scene:
    """Every action kind: turn, walk, run, punch at a character, kick at a body,
    receive a hit, a jump with a given velocity and one to a target, land, fall,
    get up."""
    s = Scene(name="repertoire", duration=6.0, physics_hz=480)
    s.add_ground()
    a = s.add_character("a", pos=(0.0, 0.0))
    a.turn(0.6, at=0.1, duration=0.4).walk_to((0.9, 0.0), at=0.6, speed=1.0)
    a.punch("b", at=2.0).kick("b", at=2.6, foot="left")
    a.jump(at=3.6, velocity=(1.0, 0.0, 2.5)).run_to((3.0, 1.0), at=4.6, speed=2.0)
    b = s.add_character("b", pos=(1.6, 0.0), yaw=3.14)
    b.receive_hit(at=2.1).kick("a/torso", at=3.0).jump(at=3.8, to=(2.2, -0.5, 0.0))
    b.fall(at=4.7).get_up(at=5.2, duration=0.8)
    s.add_camera("c", StaticRig())
    s.shot("c", 0.0, s.duration)
    return s


def test_native_control_covers_every_action(monkeypatch):
    from sim.controller import plan_character
    scene = _repertoire_scene()
    kinds = {o.kind for ci in range(2) for o in plan_character(scene, ci).overlays}
    segs = {sg.kind for ci in range(2) for sg in plan_character(scene, ci).segments}
    assert kinds >= {"punch", "kick", "hit", "crouch", "push", "flight", "land", "fall", "get_up"}, kinds
    assert segs >= {"hold", "move", "turn", "flight"}, segs
    py, nat = _both(monkeypatch, scene)
    _assert_identical(py, nat)


def test_native_loop_with_a_character_starting_in_the_air(monkeypatch):
    """No contact at all in the first step (the gate's geom table must not depend
    on one): a character dropped from 0.3 m."""
    s = Scene(name="dropped", duration=1.0, physics_hz=480)
    s.add_ground()
    s.add_static("plinth", Box((0.5, 0.5, 0.15)), pos=(3.0, 0.0, 0.15))
    c = s.add_character("c", pos=(0.0, 0.0))
    c.walk_to((0.8, 0.0), at=0.3, speed=1.0)
    s.add_camera("cam", StaticRig())
    s.shot("cam", 0.0, s.duration)
    eng = sim.make_engine(s)
    eng.data.qpos[eng.compiled.root_qadr[0] + 2] += 0.3      # lift the character off the ground
    import mujoco
    mujoco.mj_forward(eng.model, eng.data)
    assert eng.data.ncon == 0
    from sim.controller import Controller
    stepper = eng.native_stepper(Controller(s, eng))
    assert stepper is not None and stepper.control


def test_native_loop_on_a_generated_scene_without_initial_contacts(monkeypatch):
    from generator.data import random_scene
    scene = random_scene(900001)                  # its character starts clear of the ground
    assert sim.make_engine(scene).data.ncon == 0
    py, nat = _both(monkeypatch, scene)
    _assert_identical(py, nat)
