"""The bundled scene library: every registered factory is documented, valid,
deterministic and survives scene files; dominoes, bowling and drop_test start
without contact and do what their docstrings say (MuJoCo rollouts)."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import scenes
from scenes import Scene
from scenes.files import dumps, loads

MINE = ("dominoes", "bowling", "drop_test")
BUNDLED = MINE + ("rooftop_chase", "brawl")
G = 9.81


def tilt_deg(quat: np.ndarray) -> np.ndarray:
    """Angle (deg) between each body's z axis and world z; quat (..., 4) wxyz."""
    x, y = quat[..., 1], quat[..., 2]
    return np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1.0, 1.0)))


def test_library_modules_are_all_imported():
    import scenes.library as lib
    for name in BUNDLED:
        assert hasattr(lib, name), f"scenes/library/__init__.py does not import {name}"
    assert set(BUNDLED) <= set(scenes.available())


@pytest.mark.parametrize("name", sorted(scenes.available()))
def test_factory_is_documented_and_parametrised(name):
    fn = scenes.get(name)
    doc = inspect.getdoc(fn)
    assert doc, f"{name} has no docstring"
    info = scenes.registry.describe(name)
    assert info["summary"] and "\n" not in doc.split("\n\n")[0], "first paragraph must be one line"
    assert len(doc.split("\n\n")) >= 2, "summary plus a description of parameters"
    for pname, p in inspect.signature(fn).parameters.items():
        assert p.default is not inspect.Parameter.empty, f"{name}({pname}) needs a default"
        if name in MINE:
            assert pname in doc, f"parameter {pname} of {name} is not described in its docstring"


@pytest.mark.parametrize("name", sorted(scenes.available()))
def test_scene_validates_and_round_trips_through_files(name):
    scene = scenes.load(name)
    assert isinstance(scene, Scene) and scene.name == name
    assert scene.physics_hz % scene.fps == 0
    assert scene.shots[0].start == 0.0 and math.isclose(scene.shots[-1].end, scene.duration)
    assert len({s.camera for s in scene.shots}) >= 2, "at least two cameras in the shot list"
    # the factory is deterministic and the scene survives both file formats
    assert scenes.load(name).content_hash() == scene.content_hash()
    for fmt in ("yaml", "json"):
        assert loads(dumps(scene, fmt), fmt).content_hash() == scene.content_hash()


@pytest.mark.parametrize("name", MINE)
def test_clocks(name):
    scene = scenes.load(name)
    assert scene.fps in (24, 30) and scene.physics_hz in (480, 960)


def test_parameters_change_the_scene():
    d = scenes.load("dominoes", count=70)
    assert sum(p.name.startswith("domino_") for p in d.props) == 70
    assert scenes.load("dominoes", seed=1).content_hash() != scenes.load("dominoes").content_hash()
    assert scenes.load("drop_test", seed=1).content_hash() != scenes.load("drop_test").content_hash()
    b = scenes.load("bowling", speed=7.0)
    ball = next(p for p in b.props if p.name == "ball")
    assert ball.linvel == (7.0, 0.0, 0.0) and ball.mass == 7.0
    with pytest.raises(scenes.SceneError, match="params.count.*unknown parameter.*valid choices: speed"):
        scenes.load("bowling", count=3)


def test_dominoes_geometry():
    scene = scenes.load("dominoes")
    dom = [p for p in scene.props if p.name.startswith("domino_")]
    assert len(dom) >= 60
    h = 2 * dom[0].shape.half_extents[2]
    pos = np.array([p.pos for p in dom])
    gaps = np.linalg.norm(np.diff(pos[:, :2], axis=0), axis=1)
    assert np.all((gaps > 0.55 * h) & (gaps < 0.75 * h)), "spacing 0.6-0.7 of the height"
    # a curve, not a line: the heading turns by more than 90 degrees overall
    head = np.unwrap([2 * math.atan2(p.quat[3], p.quat[0]) for p in dom])
    assert np.ptp(head) > math.pi / 2


def test_bowling_pin_triangle():
    from scenes.library.bowling import PIN_SPACING, pin_positions
    pins = np.array(pin_positions((0.0, 0.0)))
    d = np.linalg.norm(pins[:, None] - pins[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.allclose(d.min(axis=1), PIN_SPACING)
    assert len(pins) == 10 and np.allclose(pins[:, 1].mean(), 0.0)


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
@pytest.mark.parametrize("name", MINE)
def test_nothing_touches_at_start(name, engine):
    """Small gaps everywhere: no contact with penetration at t=0 on either engine."""
    import sim
    eng = sim.make_engine(scenes.load(name), engine)
    try:
        c = eng.contacts()
        assert not len(c) or c.depth.max() <= 0.0, [
            (eng.body_names[a], eng.body_names[b]) for (a, b), dep in zip(c.body, c.depth) if dep > 0]
    finally:
        getattr(eng, "close", lambda: None)()


# --------------------------------------------------------------------------- outcomes
def test_dominoes_chain_reaction_completes_in_order(rollout_cache):
    traj = rollout_cache("dominoes")
    scene = scenes.load("dominoes")
    idx = [traj.body_names.index(p.name) for p in scene.props if p.name.startswith("domino_")]
    tilt = tilt_deg(traj.body_quat[:, idx])                       # (F, N)
    fallen = tilt > 45.0
    assert fallen[-1].all(), f"standing at the end: {np.nonzero(~fallen[-1])[0]}"
    first = fallen.argmax(axis=0)                                 # frame each one passes 45 deg
    assert np.all(np.diff(first) >= 0), "a domino fell before the one in front of it"
    assert np.all(np.diff(first) <= 0.2 * traj.fps), "the wave stalled somewhere"
    # the wave finishes with time to spare for the last (overhead) shot
    assert traj.times[first[-1]] < scene.shots[-1].start + 0.5
    assert traj.times[first[0]] >= 0.3, "nothing moves before the scripted push"


def test_bowling_ball_reaches_pins_and_scatters_them(rollout_cache):
    traj = rollout_cache("bowling")
    names = traj.body_names
    ball = names.index("ball")
    pins = [i for i, n in enumerate(names) if n.startswith("pin_")]
    # pins stand still until the ball arrives: no settling jolt, no early fall
    arrive = np.argmax(traj.body_pos[:, ball, 0] > traj.body_pos[0, pins[0], 0] - 0.4)
    assert arrive > 0
    assert tilt_deg(traj.body_quat[:arrive, pins]).max() < 1.0
    assert np.abs(traj.body_pos[:arrive, pins] - traj.body_pos[0, pins]).max() < 0.005
    # the ball rolls (not slides) before the impact: v = omega r within 2 %
    f = arrive - 5
    v = np.linalg.norm(traj.body_linvel[f, ball, :2])
    w = np.linalg.norm(traj.body_angvel[f, ball])
    assert 5.0 < v < 8.0 and abs(v - w * 0.109) < 0.02 * v
    down = tilt_deg(traj.body_quat[-1, pins]) > 45.0
    assert down.sum() >= 8, f"only {down.sum()} pins down"
    # everything stays inside the set (floor top at z = -0.5)
    assert traj.body_pos[:, pins + [ball], 2].min() > -0.5


def test_drop_test_falls_and_bounces_by_material(rollout_cache):
    traj = rollout_cache("drop_test")
    scene = scenes.load("drop_test")
    height = inspect.signature(scenes.get("drop_test")).parameters["height"].default
    t_hit = math.sqrt(2 * height / G)
    rebound = {}
    for p in scene.props:
        i = traj.body_names.index(p.name)
        z, vz = traj.body_pos[:, i, 2], traj.body_linvel[:, i, 2]
        up = int(np.argmax(vz > 0.05))  # first frame moving up: just after the impact
        assert abs(traj.times[up] - t_hit) <= 2.0 / traj.fps, p.name
        # free fall before it: z(t) = z0 - g t^2 / 2, within the g t dt / 2 that a
        # semi-implicit Euler step of dt = 1 / physics_hz adds, plus 0.5 mm
        k = up - 2
        t = traj.times[k]
        tol = 0.5 * G * t / traj.physics_hz + 0.0005
        assert abs(z[k] - (z[0] - 0.5 * G * t ** 2)) < tol, p.name
        rebound[p.name] = z[up:up + traj.fps].max() - z[-1]
        assert np.linalg.norm(traj.body_linvel[-1, i]) < 0.3, f"{p.name} has not settled"
    # restitution order: rubber 0.8 > glass 0.6 > wood 0.45 > concrete 0.2
    r = rebound
    assert r["rubber_ball"] > r["glass_sphere"] > r["concrete_block"]
    assert r["wooden_cube"] > r["concrete_block"]
    assert r["rubber_ball"] / height == pytest.approx(0.8 ** 2, abs=0.1)


@pytest.mark.parametrize("name, params", [
    ("dominoes", dict(count=2)), ("dominoes", dict(count=12, radius=0.8)),
    ("dominoes", dict(count=120, height=0.05, spacing=0.6)),
    ("bowling", dict(duration=0.1)), ("bowling", dict(duration=1.0, speed=3.0)),
    ("bowling", dict(duration=12.0, lane_length=5.0)),
    ("drop_test", dict(duration=2 / 30)), ("drop_test", dict(duration=1.0)),
    ("drop_test", dict(height=0.01, spacing=2.0, tilt_deg=0.0)),
])
def test_parameter_extremes_still_give_valid_scenes(name, params):
    scene = scenes.load(name, **params)
    assert scene.shots[-1].end == pytest.approx(scene.duration)


@pytest.mark.parametrize("name, params, field", [
    ("dominoes", dict(count=1), "params.count"), ("bowling", dict(duration=1 / 60), "params.duration"),
    ("drop_test", dict(height=-1.0), "params"),
])
def test_bad_parameters_raise_scene_errors(name, params, field):
    with pytest.raises(scenes.SceneError) as info:
        scenes.load(name, **params)
    assert info.value.path == field
