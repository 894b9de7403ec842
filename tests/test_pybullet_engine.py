"""The PyBullet backend as an `Engine`: determinism, bundled scenes, bad input,
mesh props, the material fit to Bullet's product rule, isolated clients and the
characters' airborne ballistics."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

import scenes  # noqa: E402
import sim  # noqa: E402
from scenes import Box, Material, Mesh, Scene, SceneError, Sphere, StaticRig  # noqa: E402
from sim.engine import pair_material  # noqa: E402
from sim.pybullet_engine import PybulletEngine, material_factors  # noqa: E402
from sim.trajectory import Trajectory  # noqa: E402

G = 9.81


def world(duration=1.0, fps=30, hz=480, gravity=(0.0, 0.0, -G), ground=True) -> Scene:
    s = Scene(name="t", duration=duration, fps=fps, physics_hz=hz, gravity=gravity)
    if ground:
        s.add_ground(size=20.0)
    s.add_camera("cam", StaticRig())
    s.shot("cam", 0.0, duration)
    return s


def assert_identical(a: Trajectory, b: Trajectory):
    for f in dataclasses.fields(Trajectory):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            assert np.array_equal(x, y), f"field '{f.name}' differs"
        else:
            assert x == y, f"field '{f.name}' differs"


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", sorted(scenes.available()))
def test_every_bundled_scene_simulates_without_nan(name, rollout_cache):
    traj = rollout_cache(name, engine="pybullet")
    assert traj.status == "ok"
    assert traj.engine == "pybullet" and traj.engine_version.startswith("pybullet ")
    traj.validate()                                   # shapes and finiteness of every array
    assert np.isfinite(traj.body_pos).all() and np.isfinite(traj.contact_impulse).all()
    assert traj.num_frames == scenes.load(name).frame_count
    # nothing fell through the world's floor while on screen
    moving = np.array([k != "static" for k in traj.body_kind])
    assert np.abs(traj.body_linvel[:, moving]).max(initial=0.0) < 100.0


def test_determinism_same_scene_and_seed_is_bit_identical():
    scene = scenes.load("drop_test", duration=2.0)
    assert_identical(sim.rollout(scene, engine="pybullet", seed=3),
                     sim.rollout(scene, engine="pybullet", seed=3))


def test_determinism_with_characters():
    s = world(duration=1.0)
    s.add_character("a", pos=(0.0, 0.0)).walk_to((1.0, 0.0), at=0.1)
    s.add_character("b", pos=(0.0, 1.5)).fall(at=0.3)
    s.add_prop("crate", Box((0.2, 0.2, 0.2)), pos=(1.0, 1.0, 0.2))
    assert_identical(sim.rollout(s, engine="pybullet", seed=1), sim.rollout(s, engine="pybullet", seed=1))


def test_engines_are_isolated_clients():
    s = world(duration=1.0)
    s.add_prop("ball", Sphere(0.1), pos=(0.0, 0.0, 2.0))
    a, b = PybulletEngine(s), PybulletEngine(s)
    for _ in range(100):
        a.step()
    assert a.body_states()[0][1, 2] < 2.0 - 0.1
    assert b.body_states()[0][1, 2] == pytest.approx(2.0)     # untouched by a's steps
    assert b.time == 0.0 and a.time == pytest.approx(100 / 480)
    a.close()
    a.close()                                                  # idempotent
    b.step()                                                   # b still works after a closed


# ----------------------------------------------------------------------------- bad input
def test_interpenetrating_bodies_are_named():
    s = world()
    s.add_prop("crate", Box((0.2, 0.2, 0.2)), pos=(0.0, 0.0, 0.2))
    s.add_prop("barrel", Sphere(0.2), pos=(0.0, 0.0, 0.45))          # 15 cm into the crate
    with pytest.raises(SceneError, match=r"'crate' and 'barrel' interpenetrate by 1[45]\d\.\d mm at start"):
        sim.rollout(s, engine="pybullet")


def test_missing_mesh_names_field_and_file(tmp_path):
    s = world()
    s.add_prop("rock", Mesh(path="nowhere/rock.obj"), pos=(0.0, 0.0, 1.0))
    with pytest.raises(SceneError, match=r"props\[0\]\.shape\.path.*nowhere/rock\.obj"):
        sim.rollout(s, engine="pybullet", base_dir=tmp_path)


def test_unreadable_mesh_names_field(tmp_path):
    (tmp_path / "broken.stl").write_text("this is not an STL file")
    s = world()
    s.add_static("ramp", Mesh(path="broken.stl", convex=False))
    with pytest.raises(SceneError, match=r"statics\[1\]\.shape\.path"):
        sim.rollout(s, engine="pybullet", base_dir=tmp_path)


# ----------------------------------------------------------------------------- mesh props
def _box_mesh(path, half, offset=(0.0, 0.0, 0.0), yaw=0.0):
    trimesh = pytest.importorskip("trimesh")
    m = trimesh.creation.box(extents=[2 * h for h in half])
    m.apply_transform(trimesh.transformations.rotation_matrix(yaw, (0, 0, 1)))
    m.apply_translation(offset)
    m.export(path)
    return path


def test_mesh_prop_centred_on_its_centre_of_mass(tmp_path):
    """A box mesh whose vertices sit 0.3 m off its origin lands and rests like the
    box primitive: the prop frame is the hull's centre of mass; mass = rho V."""
    half = (0.15, 0.1, 0.05)
    _box_mesh(tmp_path / "box.stl", half, offset=(0.3, 0.0, 0.0))
    s = world(duration=1.0)
    s.add_prop("mesh", Mesh(path="box.stl"), pos=(0.0, 0.0, 0.5), material="wood", density=500.0)
    s.add_prop("prim", Box(half), pos=(1.0, 0.0, 0.5), material="wood", density=500.0)
    traj = sim.rollout(s, engine="pybullet", base_dir=tmp_path)
    assert traj.body_mass[1] == pytest.approx(500.0 * 8 * np.prod(half), rel=1e-6)
    assert traj.body_mass[1] == pytest.approx(traj.body_mass[2], rel=1e-6)
    # the same free fall (to the micrometre) until the first impact ...
    falling = traj.body_pos[:, 2, 2] > half[2] + 0.05
    falling &= np.cumprod(falling).astype(bool)
    np.testing.assert_allclose(traj.body_pos[falling, 1], traj.body_pos[falling, 2] - (1.0, 0.0, 0.0), atol=1e-6)
    # ... and the same resting height (the hull has a 1 mm collision margin in Bullet)
    assert traj.body_pos[-1, 1, 2] == pytest.approx(half[2], abs=1.5e-3)
    assert np.linalg.norm(traj.body_pos[-1, 1, :2]) < 0.01        # the bounce moved it < 1 cm


def test_mesh_prop_inertia_off_axis_conserves_angular_momentum(tmp_path):
    """A box mesh yawed 30 degrees inside its file has an inertia tensor that is not
    diagonal in the prop frame; spinning freely, world angular momentum
    R I R^T w stays constant (within 0.5 %) and the reported frame turns with it."""
    trimesh = pytest.importorskip("trimesh")
    half = (0.3, 0.1, 0.05)
    path = _box_mesh(tmp_path / "tilted.stl", half, yaw=math.radians(30))
    s = world(duration=1.0, fps=60, gravity=(0.0, 0.0, 0.0), ground=False)
    s.add_prop("spinner", Mesh(path=path.name), pos=(0.0, 0.0, 1.0), mass=2.0, angvel=(1.0, 2.0, 3.0))
    traj = sim.rollout(s, engine="pybullet", base_dir=tmp_path)
    hull = trimesh.load(path).convex_hull
    I_body = hull.moment_inertia / hull.mass * 2.0
    L = []
    for q, w in zip(traj.body_quat[:, 0], traj.body_angvel[:, 0]):
        R = trimesh.transformations.quaternion_matrix(q)[:3, :3]       # (w, x, y, z)
        L.append(R @ I_body @ R.T @ w)
    L = np.array(L)
    assert np.linalg.norm(L - L[0], axis=1).max() < 5e-3 * np.linalg.norm(L[0])
    assert not np.allclose(traj.body_quat[-1, 0], traj.body_quat[0, 0], atol=0.1)   # it did turn


# ----------------------------------------------------------------------------- materials
def _all_materials():
    return dict(scenes.MATERIALS)


def test_material_fit_single_static_material_is_exact():
    mats = _all_materials()
    dynamic = set(mats) - {"glass"}
    fr, re, pairs = material_factors({"concrete"}, dynamic, mats)
    for d in dynamic:
        mu, e = pair_material(mats["concrete"], mats[d])
        assert fr[("static", "concrete")] * fr[("dynamic", d)] == pytest.approx(mu, rel=1e-9)
        assert re[("static", "concrete")] * re[("dynamic", d)] == pytest.approx(e, rel=1e-9)


@pytest.mark.parametrize("static", [{"concrete"}, {"concrete", "wood", "metal", "rubber"}])
def test_material_fit_never_bounces_more_than_the_rule(static):
    mats = _all_materials()
    dynamic = set(mats)
    fr, re, pairs = material_factors(static, dynamic, mats)
    for (a, b), (mu, e) in pairs.items():
        assert re[a] * re[b] <= e * (1 + 1e-9), (a, b)
        assert fr[a] * fr[b] > 0.0
    # (known limit of Bullet's product rule: with all eight materials moving, some
    # dynamic-dynamic pairs bounce at half their rule value)


def test_material_fit_one_dynamic_material_is_exact():
    """The common case (dominoes: wooden pieces on any number of static materials
    with one static material; a crowd of characters): every pair matches."""
    mats = _all_materials()
    fr, re, pairs = material_factors({"concrete"}, {"wood"}, mats)
    for (a, b), (mu, e) in pairs.items():
        assert fr[a] * fr[b] == pytest.approx(mu, rel=1e-9)
        assert re[a] * re[b] == pytest.approx(e, rel=1e-9)


def test_scene_materials_reach_the_solver():
    """A user material's friction decides how far a block slides (v^2 / (2 mu g))."""
    s = world(duration=2.5, hz=480)
    s.add_material("ice", Material(friction=0.1, restitution=0.05, density=900.0, acoustic="glass"))
    s.statics[0].material = "ice"
    s.add_prop("block", Box((0.1, 0.1, 0.05)), pos=(0.0, 0.0, 0.05), material="ice", linvel=(2.0, 0.0, 0.0))
    traj = sim.rollout(s, engine="pybullet")
    assert traj.body_pos[-1, 1, 0] == pytest.approx(4.0 / (2 * 0.1 * G), rel=0.02)


# ----------------------------------------------------------------------------- characters
def test_airborne_character_is_ballistic():
    """A jumping humanoid gets no assist force in any frame without contact, and its
    centre of mass then falls at g: over the whole flight the vertical velocity
    drops by g T within 1 %, and frame by frame the acceleration is g within
    1 m/s^2 (the median within 0.05). Per frame, Bullet's integration in
    generalised coordinates errs in proportion to dt and to how fast the body
    spins: measured 0.86 m/s^2 in a frame where the pelvis turns at 23 rad/s,
    at most 0.35 otherwise, at 480 Hz."""
    s = world(duration=2.0, fps=30, hz=480)
    s.add_character("hero").jump(at=0.5, velocity=(1.0, 0.0, 2.5))
    traj = sim.rollout(s, engine="pybullet")
    air = ~traj.support[:, 0]
    air[0] = False
    assert air.sum() >= 5, "the character never left the ground"
    assert np.abs(traj.assist_force[air, 0]).max() == 0.0
    err = np.abs(traj.com_acc[air, 0] - np.array([0.0, 0.0, -G])).max(axis=1)
    assert err.max() < 1.0 and np.median(err) < 0.05, err
    # the longest flight: frames i0..i1 all airborne; com_vel[i0 - 1] is at takeoff
    runs = np.split(np.nonzero(air)[0], np.nonzero(np.diff(np.nonzero(air)[0]) > 1)[0] + 1)
    run = max(runs, key=len)
    assert len(run) >= 8, "no real flight phase"
    dv = traj.com_vel[run[-1], 0] - traj.com_vel[run[0] - 1, 0]
    T = len(run) / traj.fps
    np.testing.assert_allclose(dv, (0.0, 0.0, -G * T), atol=0.01 * G * T)


def test_character_body_layout_matches_mujoco():
    """Same body names, kinds, masses and standing pose as the MuJoCo backend."""
    pytest.importorskip("mujoco")
    from sim.mujoco_engine import MujocoEngine
    s = world()
    s.add_character("hero", pos=(1.0, -0.5), yaw=0.7, height=1.9, mass=85.0)
    s.validate()
    pb, mj = PybulletEngine(s), MujocoEngine(s)
    assert pb.body_names == mj.body_names and pb.body_kind == mj.body_kind
    np.testing.assert_allclose(pb.body_mass, mj.body_mass, rtol=1e-6)
    (p1, q1, _, _), (p2, q2, _, _) = pb.body_states(), mj.body_states()
    np.testing.assert_allclose(p1, p2, atol=1e-6)
    np.testing.assert_allclose(np.abs((q1 * q2).sum(1)), 1.0, atol=1e-6)    # same rotation
    np.testing.assert_allclose(pb.com_states()[0], mj.com_states()[0], atol=1e-6)
    np.testing.assert_allclose(pb.joint_states()[0], mj.joint_states()[0], atol=1e-9)


def test_unknown_material_names_the_field():
    """Even without `Scene.validate` (the engine compiled directly)."""
    s = world()
    s.add_prop("crate", Box((0.2, 0.2, 0.2)), pos=(0.0, 0.0, 1.0), material="unobtainium")
    with pytest.raises(SceneError, match=r"props\[0\]\.material.*unobtainium.*valid choices"):
        PybulletEngine(s)


def test_angular_momentum_matches_mujoco():
    """`angular_momentum` (used by the controller to stop spin at takeoff): a
    floating humanoid moving its joints after a torque pulse on the pelvis carries
    the same angular momentum on both engines (within 0.01 kg m^2/s; measured
    0.003), and keeps it (drift < 0.05 over 0.4 s; measured 0.026 on both)."""
    pytest.importorskip("mujoco")
    from sim.mujoco_engine import MujocoEngine
    s = world(duration=1.0, gravity=(0.0, 0.0, 0.0), ground=False)
    s.add_character("hero", pos=(0.3, -0.2), yaw=0.4)
    s.validate()
    targets = np.random.default_rng(0).uniform(-0.4, 0.4, 27)
    L = {}
    for cls in (PybulletEngine, MujocoEngine):
        eng = cls(s)
        eng.set_pd_targets(0, targets, np.full(27, 30.0), np.full(27, 1.0))
        pelvis = list(eng.body_kind).index("character")
        for _ in range(5):
            eng.apply_force(pelvis, np.zeros(3), torque=np.array([20.0, -10.0, 5.0]))
            eng.step()
        series = []
        for _ in range(200):
            eng.step()
            series.append(eng.angular_momentum()[0])
        L[cls.name] = np.array(series)
    np.testing.assert_allclose(L["pybullet"][0], L["mujoco"][0], atol=0.01)
    assert np.abs(L["pybullet"] - L["pybullet"][0]).max() < 0.05


def test_engine_notes_reach_the_saved_trajectory(tmp_path):
    """PyBullet's material fit (how Bullet's product rule was matched) is provenance a user
    needs to interpret bounces; it travels with the trajectory file."""
    import scenes
    import sim
    from sim.trajectory import Trajectory
    tr = sim.rollout(scenes.load("drop_test", duration=1.0), engine="pybullet")
    back = Trajectory.load(tr.save(tmp_path / "t.npz"))
    assert back.extra["pybullet_material_fit"] == tr.extra["pybullet_material_fit"]
    assert back.extra["substeps"] == tr.physics_hz // tr.fps
