"""Analytic physics on the PyBullet backend, through `sim.rollout(..., engine="pybullet")`.

The standard cases come from `sim.analytic` (shared with the MuJoCo tests in
tests/test_sim_physics.py); the rest build tiny scenes here. Tolerances are stated
next to each assertion, with the measured values where they are not obvious.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

import sim  # noqa: E402
from scenes import Box, Material, Scene, Sphere, StaticRig  # noqa: E402
from sim import analytic  # noqa: E402

G = analytic.G
ENGINE = "pybullet"


def world(duration: float = 2.0, fps: int = 60, hz: int = 480, gravity=(0.0, 0.0, -G),
          ground: str | None = None) -> Scene:
    """An empty scene with one static camera and one shot; ``ground`` adds a
    ground of that material."""
    s = Scene(name="analytic", duration=duration, fps=fps, physics_hz=hz, gravity=gravity)
    if ground is not None:
        s.add_ground(size=40.0, material=ground)
    s.add_camera("cam", StaticRig(pos=(0.0, -10.0, 2.0), look_at=(0.0, 0.0, 1.0)))
    s.shot("cam", 0.0, duration)
    return s


# ----------------------------------------------------------------------------- shared cases
def test_free_fall_matches_half_g_t_squared():
    scene, expected = analytic.free_fall_case(height=5.0, duration=1.0, physics_hz=480)
    traj = sim.rollout(scene, engine=ENGINE)
    ball = traj.body_index("ball")
    t = traj.times
    # semi-implicit Euler lags the parabola by exactly g dt t / 2 (1 cm after 1 s at
    # 480 Hz); nothing else may deviate by more than 1 micrometre
    err = np.abs(traj.body_pos[:, ball, 2] - expected(t))
    assert np.all(err <= 0.5 * G * t / scene.physics_hz + 1e-6), err.max()
    np.testing.assert_allclose(traj.body_linvel[:, ball, 2], -G * t, atol=1e-9)   # v = -g t


def test_projectile_range():
    scene, expected = analytic.projectile_case(speed=6.0, angle_deg=40.0)
    traj = sim.rollout(scene, engine=ENGINE)
    # within 0.5 % (integration offset g dt t / 2 and the interpolation between frames)
    assert analytic.measure_range(traj) == pytest.approx(expected, rel=5e-3)


@pytest.mark.parametrize("e", [0.3, 0.6, 0.8])
def test_bounce_height_ratio_is_e_squared(e):
    scene, expected = analytic.bounce_case(e, drop=1.0)
    traj = sim.rollout(scene, engine=ENGINE)
    ratio = analytic.measure_bounce_ratio(traj, drop=1.0)
    # within 5 % of e^2 (measured at 960 Hz: +0.7 to +1.3 %; the penetration
    # recovery of PyBullet adds a little energy, see sim/pybullet_engine.py)
    assert ratio == pytest.approx(expected, rel=0.05)


def test_second_bounce_keeps_the_ratio():
    r, h, e = 0.1, 1.0, 0.8
    s = world(duration=2.5, fps=240, hz=960, ground="bouncy")
    s.add_material("bouncy", Material(friction=0.5, restitution=e, density=1000.0, acoustic="rubber"))
    s.add_prop("ball", Sphere(r), pos=(0.0, 0.0, h + r), material="bouncy")
    traj = sim.rollout(s, engine=ENGINE)
    z = traj.body_pos[:, 1, 2] - r
    apex = z[1:-1][(z[1:-1] > z[:-2]) & (z[1:-1] >= z[2:])]
    assert apex[0] / h == pytest.approx(e * e, rel=0.05)
    assert apex[1] / apex[0] == pytest.approx(e * e, rel=0.08)     # measured +0.8 %


@pytest.mark.parametrize("mu", [0.3, 0.8])
def test_sliding_distance(mu):
    scene, expected = analytic.sliding_case(speed=3.0, friction=mu)
    traj = sim.rollout(scene, engine=ENGINE)
    block = traj.body_index("block")
    x = traj.body_pos[:, block, 0]
    assert abs(traj.body_linvel[-1, block, 0]) < 1e-3             # it stopped
    assert x[-1] - x[0] == pytest.approx(expected, rel=0.02)        # within 2 % (measured 0.5 %)
    # decelerating at mu g on the way: the mid-slide speed within 2 %
    k = int(0.5 * (3.0 / (mu * G)) * scene.fps)
    assert traj.body_linvel[k, block, 0] == pytest.approx(3.0 - mu * G * k / scene.fps, rel=0.02)


def test_two_body_collision_conserves_momentum():
    scene, (m1, m2) = analytic.collision_case()
    traj = sim.rollout(scene, engine=ENGINE)
    ia, ib = traj.body_index("a"), traj.body_index("b")
    p = m1 * traj.body_linvel[:, ia] + m2 * traj.body_linvel[:, ib]
    assert traj.contact_time.size > 0                                          # they collided
    assert np.linalg.norm(traj.body_linvel[-1, ia] - traj.body_linvel[0, ia]) > 0.5
    assert np.linalg.norm(p[-1] - p[0]) <= 0.01 * np.linalg.norm(p[0])          # within 1 %


@pytest.mark.parametrize("e", [0.0, 1.0])
def test_collision_momentum_at_restitution_extremes(e):
    s = world(duration=1.0, fps=60, hz=480, gravity=(0.0, 0.0, 0.0))
    s.add_material("m", Material(friction=0.3, restitution=e, density=1000.0, acoustic="metal"))
    s.add_prop("a", Sphere(0.1), pos=(-1.0, 0.0, 1.0), material="m", mass=3.0, linvel=(4.0, 0.0, 0.0))
    s.add_prop("b", Sphere(0.15), pos=(1.0, 0.05, 1.0), material="m", mass=1.0, linvel=(-2.0, 0.0, 0.0))
    traj = sim.rollout(s, engine=ENGINE)
    p = (traj.body_linvel * traj.body_mass[None, :, None]).sum(1)
    assert len(traj.contact_time) >= 1
    assert np.linalg.norm(p[-1] - p[0]) <= 0.01 * np.linalg.norm(p[0])          # within 1 %


@pytest.mark.parametrize("amplitude_deg", [10.0, 60.0])
def test_pendulum_period(amplitude_deg):
    """As in the MuJoCo test: props have no joints in the description, so the
    pendulum is the engine's own compiled scene (same solver settings and
    timestep as every rollout) with a test-only pivot: a point-to-point
    constraint L above the ball. A sphere on a rigid rod is a physical pendulum,
    T = 2 pi sqrt((L^2 + 2 r^2 / 5) / (g L)) scaled by the exact large-amplitude
    factor; within 0.5 % (measured 0.006 % at 10 degrees, 0.024 % at 60)."""
    from sim.pybullet_engine import PybulletEngine
    scene, _ = analytic.free_fall_case(height=3.0, physics_hz=480)
    eng = PybulletEngine(scene)
    p, cid = eng._p, eng._cid
    ball = eng.body_names.index("ball")
    uid = eng._uid[ball]
    L, r, a0 = 1.2, 0.1, math.radians(amplitude_deg)
    pivot = np.array([0.0, 0.0, 3.0 + L])
    start = pivot + L * np.array([math.sin(a0), 0.0, -math.cos(a0)])
    q = [0.0, -math.sin(a0 / 2), 0.0, math.cos(a0 / 2)]       # (x, y, z, w): the rod turns the ball
    p.resetBasePositionAndOrientation(uid, start.tolist(), q, physicsClientId=cid)
    p.createConstraint(uid, -1, -1, -1, p.JOINT_POINT2POINT, [0, 0, 0], [0.0, 0.0, L], pivot.tolist(),
                       physicsClientId=cid)
    ts, angle = [], []
    for _ in range(int(6.0 / eng.timestep)):
        eng.step()
        x, _, z = eng.body_states()[0][ball] - pivot
        ts.append(eng.time)
        angle.append(math.atan2(x, -z))
    t, th = np.array(ts), np.array(angle)
    up = np.nonzero((th[:-1] < 0) & (th[1:] >= 0))[0]
    tc = t[up] - th[up] * (t[up + 1] - t[up]) / (th[up + 1] - th[up])
    period = float(np.mean(np.diff(tc)))
    expected = analytic.pendulum_period((L * L + 0.4 * r * r) / L, a0)
    assert period == pytest.approx(expected, rel=0.005)


# ----------------------------------------------------------------------------- contacts, forces
def test_contacts_report_normal_impulse_and_speed():
    """A ball dropped on the ground: the impact event has the approach speed
    sqrt(2 g h), an upward normal from ground to ball, and an impulse m (1 + e) v."""
    r, h, e = 0.1, 0.8, 0.5
    s = world(duration=1.0, fps=60, hz=960, ground="m")
    s.add_material("m", Material(friction=0.5, restitution=e, density=1000.0, acoustic="rubber"))
    s.add_prop("ball", Sphere(r), pos=(0.0, 0.0, h + r), material="m", mass=2.0)
    traj = sim.rollout(s, engine=ENGINE)
    k = int(np.nonzero(traj.contact_onset)[0][0])
    v = math.sqrt(2 * G * h)
    assert tuple(traj.contact_body[k]) == (0, 1)
    np.testing.assert_allclose(traj.contact_normal[k], (0.0, 0.0, 1.0), atol=1e-6)
    assert traj.contact_speed[k] == pytest.approx(v, rel=0.02)            # within 2 %
    assert traj.contact_time[k] == pytest.approx(math.sqrt(2 * h / G), abs=2.0 / s.physics_hz)
    # first impact impulse within 6 % of m (1 + e) v
    assert traj.contact_impulse[k, 0] == pytest.approx(2.0 * (1 + e) * v, rel=0.06)
    assert abs(traj.contact_pos[k, 2]) < 0.01


def test_scripted_impulse_and_force():
    s = world(duration=1.0, fps=60, hz=480, gravity=(0.0, 0.0, 0.0))
    s.add_prop("kicked", Sphere(0.1), pos=(0.0, 0.0, 1.0), mass=2.0)
    s.add_prop("pushed", Sphere(0.1), pos=(0.0, 3.0, 1.0), mass=4.0)
    s.kick("kicked", impulse=(3.0, 0.0, 0.0), at=0.25)
    s.push("pushed", force=(0.0, 0.0, 8.0), start=0.0, end=0.5)
    traj = sim.rollout(s, engine=ENGINE)
    i = s.fps // 2
    np.testing.assert_allclose(traj.body_linvel[i, 0], (1.5, 0.0, 0.0), atol=1e-9)   # J / m
    # a = F / m = 2 m/s^2 for 0.5 s: v = 1 m/s, z = 0.25 m (exact to the step)
    np.testing.assert_allclose(traj.body_linvel[i, 1], (0.0, 0.0, 1.0), atol=1e-9)
    assert traj.body_pos[i, 1, 2] - 1.0 == pytest.approx(0.25, abs=2.0 / s.physics_hz)


def test_off_centre_impulse_spins_the_body():
    """An impulse J at offset r from the centre of mass gives v = J / m and
    w = I^-1 (r x J) (exact: one step of force J / dt)."""
    s = world(duration=1.0, fps=60, hz=480, gravity=(0.0, 0.0, 0.0))
    half = (0.2, 0.1, 0.05)
    s.add_prop("box", Box(half), pos=(-1.0, 0.0, 1.0), mass=3.0)
    s.kick("box", impulse=(0.0, 1.0, 0.0), at=0.25, point=(-0.8, 0.0, 1.0))
    traj = sim.rollout(s, engine=ENGINE)
    izz = 3.0 * ((2 * half[0]) ** 2 + (2 * half[1]) ** 2) / 12
    np.testing.assert_allclose(traj.body_linvel[-1, 0], (0.0, 1.0 / 3.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(traj.body_angvel[-1, 0], (0.0, 0.0, 0.2 / izz), rtol=1e-6, atol=1e-9)


def test_world_torque_on_a_rotated_body():
    """`apply_force(torque=...)` is a world-frame torque: one step of tau on a tilted
    box changes w by I_world^-1 tau dt."""
    from scipy.spatial.transform import Rotation

    from scenes import quat_from_axis_angle
    from sim.pybullet_engine import PybulletEngine
    s = world(gravity=(0.0, 0.0, 0.0))
    q = quat_from_axis_angle((1.0, 1.0, 0.0), 0.7)
    s.add_prop("box", Box((0.2, 0.1, 0.05)), pos=(0.0, 0.0, 1.0), mass=3.0, quat=q)
    s.validate()
    eng = PybulletEngine(s)
    eng.apply_force(0, np.zeros(3), torque=np.array([0.0, 0.0, 480.0]))
    eng.step()
    R = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
    I = np.diag(3.0 / 12 * np.array([0.2 ** 2 + 0.1 ** 2, 0.4 ** 2 + 0.1 ** 2, 0.4 ** 2 + 0.2 ** 2]))
    expected = np.linalg.solve(R @ I @ R.T, [0.0, 0.0, 480.0]) * eng.timestep
    np.testing.assert_allclose(eng.body_states()[3][0], expected, rtol=1e-6)
