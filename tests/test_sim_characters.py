"""Characters: ballistic airborne centre of mass, choreography achieved, assist
limits, impossible requests, and the humanoid model."""
from __future__ import annotations

import math

import numpy as np
import pytest

import scenes
import sim
from sim import controller, humanoid
from sim.controller import plan_character

GRAVITY = np.array([0.0, 0.0, -9.81])


def _tilt_deg(q: np.ndarray) -> np.ndarray:
    """Angle between a body's z axis and world up, degrees; q (F, 4) wxyz."""
    upz = 1 - 2 * (q[:, 1] ** 2 + q[:, 2] ** 2)
    return np.degrees(np.arccos(np.clip(upz, -1, 1)))


@pytest.mark.parametrize("name,jumper", [("rooftop_chase", "hero"), ("brawl", "brawler")])
def test_airborne_centre_of_mass_is_ballistic(rollout_cache, name, jumper):
    traj = rollout_cache(name)
    for ci, cname in enumerate(traj.character_names):
        air = ~traj.support[:, ci]
        air[0] = False
        if cname == jumper:
            assert air.sum() >= 8, f"{cname} should be airborne for a while"
        if not air.any():
            continue
        # by construction: no assist force at all without a contact
        assert np.all(traj.assist_force[air, ci] == 0.0)
        err = np.linalg.norm(traj.com_acc[air, ci] - GRAVITY, axis=1)
        # No external force acts, but MuJoCo's integrator conserves momentum in
        # generalized coordinates; read back at the new configuration the COM
        # velocity carries an O(dt) discretisation error while the limbs move
        # fast (measured <= 0.45 m/s^2 at 480 Hz). Tolerance per frame 1.0 m/s^2
        # (10 % of g), mean 0.25 m/s^2.
        assert err.max() <= 1.0, (cname, err.max())
        assert err.mean() <= 0.25, (cname, err.mean())


def test_rooftop_chase_follows_the_choreography(rollout_cache):
    traj = rollout_cache("rooftop_chase")
    scene = traj.scene_obj()
    for ci, cname in enumerate(traj.character_names):
        plan = plan_character(scene, ci)
        pelvis = traj.body_pos[:, traj.body_index(f"{cname}/pelvis")]
        assert plan.waypoints, cname
        for t, point, label in plan.waypoints:
            if t > traj.duration:
                continue
            f = int(round(t * traj.fps))
            err = float(np.linalg.norm(pelvis[f, :2] - point[:2]))
            assert err <= 0.3, f"{cname}: {label} at t={t:.2f} s missed by {err:.2f} m"
        tilt = _tilt_deg(traj.body_quat[:, traj.body_index(f"{cname}/torso")])
        falls = [o.t0 for o in plan.overlays if o.kind == "fall"]
        upright = traj.times < (min(falls) if falls else math.inf)
        assert tilt[upright].max() <= 30.0, f"{cname} torso tilts {tilt[upright].max():.1f} deg"
    # the hero really crossed the gap and the crates were knocked over
    hero = traj.body_pos[-1, traj.body_index("hero/pelvis")]
    assert hero[0] > scene.statics[2].pos[0] - scene.statics[2].shape.half_extents[0]
    crates = [i for i, n in enumerate(traj.body_names) if n.startswith("crate")]
    moved = np.linalg.norm(traj.body_pos[-1, crates] - traj.body_pos[0, crates], axis=1)
    assert (moved > 0.3).sum() >= 4


def test_brawl_blows_land_and_the_thug_falls(rollout_cache):
    traj = rollout_cache("brawl")
    a = np.array([n.startswith("brawler/") for n in traj.body_names])
    b = np.array([n.startswith("thug/") for n in traj.body_names])
    cb = traj.contact_body
    hits = (a[cb[:, 0]] & b[cb[:, 1]]) | (b[cb[:, 0]] & a[cb[:, 1]])
    assert traj.contact_impulse[hits, 0].max() > 1.0
    thug = _tilt_deg(traj.body_quat[:, traj.body_index("thug/torso")])
    assert thug[-1] > 45.0                                  # on the ground at the end


def test_assist_is_clipped_into_the_friction_cone():
    scene = scenes.load("brawl")
    eng = sim.make_engine(scene)
    ctrl = controller.Controller(scene, eng)
    rng = np.random.default_rng(0)
    for _ in range(200):
        ci = 0
        ctrl._step_force[ci] = rng.normal(0, 2000, 3)
        ctrl._step_torque[ci] = rng.normal(0, 500, 3)
        ctrl._fn[ci] = abs(rng.normal(0, 600))
        ctrl._ft[ci] = abs(rng.normal(0, 100))
        ctrl._mu[ci] = rng.uniform(0.2, 1.0)
        f, tq = ctrl._clip(ci)
        fn_total = ctrl._fn[ci] + f[2]
        assert f[2] >= 0.0                                   # a ground only pushes
        # the total reaction (contact + assist) stays in the cone
        assert math.hypot(f[0], f[1]) <= max(ctrl._mu[ci] * fn_total - ctrl._ft[ci], 0.0) + 1e-6
        assert math.hypot(tq[0], tq[1]) <= (controller.FOOT_LEVER * fn_total
                                           + ctrl._mu[ci] * fn_total * 2.0 + 1e-6)


def test_jump_too_far_says_why_and_what_would_work():
    s = scenes.load("rooftop_chase")
    s.characters[0].actions[1].to = (9.0, 0.0, 0.0)
    with pytest.raises(scenes.ChoreographyError) as e:
        sim.rollout(s)
    msg = str(e.value)
    assert "characters[0].actions[1].to" in msg
    assert "max_takeoff_speed is 6.5" in msg and "within" in msg and "m/s takeoff" in msg


def test_unreachable_run_says_why_and_what_would_work():
    s = scenes.Scene(duration=3.0)
    s.add_ground()
    c = s.add_character("runner")
    c.run_to((30.0, 0.0), speed=4.0, at=0.0)
    c.turn(1.0, at=2.0)
    s.add_camera("c", scenes.StaticRig())
    s.shot("c", 0.0, 3.0)
    with pytest.raises(scenes.ChoreographyError) as e:
        sim.rollout(s)
    msg = str(e.value)
    assert "covers 30.00 m" in msg and "next action starts" in msg and "move the target closer" in msg


def test_humanoid_model_and_mjcf():
    import mujoco
    body = humanoid.build(height=1.8, mass=80.0)
    assert len(body.links) == 15 and len(body.joints) == 27
    assert sum(l.mass for l in body.links) == pytest.approx(80.0)
    m = mujoco.MjModel.from_xml_string(humanoid.humanoid_mjcf(height=1.8, mass=80.0))
    assert m.nv == 6 + 27 and m.nu == 27
    assert m.body_mass.sum() == pytest.approx(80.0)
    for j in humanoid.JOINTS:
        lo, hi = m.jnt_range[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j.name)]
        assert (lo, hi) == pytest.approx(j.range, abs=1e-5)      # 6 significant digits in the XML


def test_humanoid_mjcf_loads_in_pybullet(tmp_path):
    pb = pytest.importorskip("pybullet")
    path = tmp_path / "h.xml"
    path.write_text(humanoid.humanoid_mjcf(actuators=False, free_root=False))
    cid = pb.connect(pb.DIRECT)
    try:
        uid = pb.loadMJCF(str(path), physicsClientId=cid)[0]
        names = {pb.getJointInfo(uid, j, physicsClientId=cid)[1].decode()
                 for j in range(pb.getNumJoints(uid, physicsClientId=cid))}
        assert set(humanoid.JOINT_NAMES) <= names
    finally:
        pb.disconnect(cid)


def _jump_world(jump: dict) -> scenes.Scene:
    s = scenes.Scene(name="early_jump", duration=1.6, fps=30, physics_hz=480)
    s.add_ground(size=20.0)
    s.add_camera("cam", scenes.StaticRig())
    s.shot("cam", 0.0, 1.6)
    s.add_character("hero").jump(at=0.5, **jump)
    return s


@pytest.mark.parametrize("jump", [{"to": (1.2, 0.0, 0.0)}, {"velocity": (1.0, 0.5, 2.5)}])
def test_jump_to_point_or_with_velocity_rolls_out(jump):
    """Both ways of asking for a jump plan and simulate (3-vectors throughout)."""
    traj = sim.rollout(_jump_world(jump))
    assert traj.status == "ok"
    assert (~traj.support[int(0.6 * traj.fps):int(0.8 * traj.fps), 0]).all()
