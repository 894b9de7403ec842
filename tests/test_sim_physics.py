"""Analytic physics on the MuJoCo backend (cases in `sim.analytic`, shared with the
PyBullet tests). Tolerances are stated per test with the reason."""
from __future__ import annotations

import math

import numpy as np
import pytest

import sim
from sim import analytic

ENGINE = "mujoco"


def test_free_fall_matches_gt2_over_2():
    scene, expected = analytic.free_fall_case(height=5.0, duration=1.0, physics_hz=480)
    traj = sim.rollout(scene, engine=ENGINE)
    z = traj.body_pos[:, traj.body_index("ball"), 2]
    # semi-implicit Euler lags the exact parabola by g t dt / 2 (1 cm after 1 s at 480 Hz)
    tol = analytic.G * traj.times * (1.0 / scene.physics_hz) / 2 + 1e-9
    assert np.all(np.abs(z - expected(traj.times)) <= tol * 1.01)
    vz = traj.body_linvel[:, traj.body_index("ball"), 2]
    np.testing.assert_allclose(vz, -analytic.G * traj.times, atol=1e-9)


def test_projectile_range_within_1_percent():
    scene, expected = analytic.projectile_case(speed=6.0, angle_deg=40.0)
    traj = sim.rollout(scene, engine=ENGINE)
    got = analytic.measure_range(traj)
    assert got == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("e", [0.3, 0.6, 0.8])
def test_bounce_height_ratio_is_e_squared(e):
    scene, expected = analytic.bounce_case(e, drop=1.0)
    traj = sim.rollout(scene, engine=ENGINE)
    ratio = analytic.measure_bounce_ratio(traj, drop=1.0)
    # restitution is the contact spring's damping, calibrated in MuJoCo at this
    # timestep: the rebound speed ratio sqrt(ratio) is within 0.05 of e
    assert math.sqrt(ratio) == pytest.approx(e, abs=0.05), (ratio, expected)


def test_sliding_distance_is_v2_over_2_mu_g():
    scene, expected = analytic.sliding_case(speed=3.0, friction=0.5)
    traj = sim.rollout(scene, engine=ENGINE)
    x = traj.body_pos[:, traj.body_index("block"), 0]
    assert abs(traj.body_linvel[-1, traj.body_index("block"), 0]) < 1e-3     # it stopped
    # elliptic Coulomb friction with a soft (1 mm) contact: within 3 %
    assert x[-1] - x[0] == pytest.approx(expected, rel=0.03)


def test_two_body_collision_conserves_momentum_within_1_percent():
    scene, (m1, m2) = analytic.collision_case()
    traj = sim.rollout(scene, engine=ENGINE)
    ia, ib = traj.body_index("a"), traj.body_index("b")
    p = m1 * traj.body_linvel[:, ia] + m2 * traj.body_linvel[:, ib]
    assert traj.contact_time.size > 0                          # they did collide
    assert np.linalg.norm(traj.body_linvel[-1, ia] - traj.body_linvel[0, ia]) > 0.5
    assert np.linalg.norm(p[-1] - p[0]) <= 0.01 * np.linalg.norm(p[0])


@pytest.mark.parametrize("amplitude_deg", [10.0, 60.0])
def test_pendulum_period(amplitude_deg):
    """Props have no joints in the description, so the pendulum is built from the
    engine's own compiled scene (`scene_spec`: same options, integrator and
    timestep as every rollout) with a test-only hinge replacing the free joint."""
    import mujoco
    from sim.mujoco_engine import scene_spec
    scene, _ = analytic.free_fall_case(height=3.0, physics_hz=480)
    spec = scene_spec(scene)
    ball = spec.body("ball")
    spec.delete(ball.first_joint())
    L = 1.2
    hinge = ball.add_joint()
    hinge.type = mujoco.mjtJoint.mjJNT_HINGE
    hinge.axis = [0.0, 1.0, 0.0]
    hinge.pos = [0.0, 0.0, L]             # pivot L above the ball's centre
    m = spec.compile()
    d = mujoco.MjData(m)
    a0 = math.radians(amplitude_deg)
    d.qpos[0] = a0
    ts, qs = [], []
    for _ in range(int(6.0 / m.opt.timestep)):
        mujoco.mj_step(m, d)
        ts.append(d.time)
        qs.append(d.qpos[0])
    q = np.array(qs)
    t = np.array(ts)
    # period from upward zero crossings (interpolated); a sphere's own inertia
    # makes it a physical pendulum: T = 2 pi sqrt((L^2 + 2 r^2 / 5) / (g L)) at
    # small amplitude, scaled by the exact large-amplitude factor
    up = np.nonzero((q[:-1] < 0) & (q[1:] >= 0))[0]
    tc = t[up] - q[up] * (t[up + 1] - t[up]) / (q[up + 1] - q[up])
    period = float(np.mean(np.diff(tc)))
    r = 0.1
    l_eq = (L * L + 0.4 * r * r) / L
    expected = analytic.pendulum_period(l_eq, a0)
    assert period == pytest.approx(expected, rel=0.005)
