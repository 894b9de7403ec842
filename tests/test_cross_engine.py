"""MuJoCo and PyBullet agree: on the bundled `drop_test` and `bowling` scenes, and on
an analytic pendulum (a ball rolling in a spherical bowl) run on both engines.

Tolerances are stated at each assertion. Trajectories of the bundled scenes come
from the shared `rollout_cache` fixture (one rollout per engine and code version).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("mujoco")

import sim  # noqa: E402
from scenes import Material, Mesh, Scene, Sphere, StaticRig  # noqa: E402

G = 9.81
ENGINES = ("mujoco", "pybullet")


def _first_apex_after(z: np.ndarray, i0: int) -> float:
    interior = np.nonzero((z[1:-1] > z[:-2]) & (z[1:-1] >= z[2:]))[0] + 1
    later = interior[interior > i0]
    assert len(later), "no bounce after the impact"
    return float(z[later[0]])


# ----------------------------------------------------------------------------- drop_test
@pytest.fixture(scope="module")
def drops(rollout_cache):
    import scenes
    return scenes.load("drop_test"), {e: rollout_cache("drop_test", engine=e) for e in ENGINES}


def test_drop_test_impacts_agree(drops):
    """Every object hits the ground at the same step with the same speed, the free
    fall sqrt(2 g h) (h = 1.5 m, lowest point to ground)."""
    scene, trajs = drops
    h = 1.5
    for k, prop in enumerate(scene.props):
        b = len(scene.statics) + k
        hits = []
        for e, tr in trajs.items():
            m = (tr.contact_body == [0, b]).all(1) & tr.contact_onset
            assert m.any(), f"{prop.name} never touched the ground on {e}"
            hits.append((tr.contact_time[m][0], tr.contact_speed[m][0]))
        (t_mj, v_mj), (t_pb, v_pb) = hits
        assert abs(t_mj - t_pb) <= 1.0 / scene.physics_hz + 1e-9, prop.name     # within one step
        assert v_pb == pytest.approx(v_mj, rel=0.01), prop.name                  # within 1 %
        assert t_pb == pytest.approx(math.sqrt(2 * h / G), abs=2.0 / scene.physics_hz)
        assert v_pb == pytest.approx(math.sqrt(2 * G * h), rel=0.01)


@pytest.mark.parametrize("name", ["rubber_ball", "glass_sphere", "plastic_capsule"])
def test_drop_test_bounce_apex_agrees(drops, name):
    """Round objects (whose bounce does not hinge on which edge lands first) reach
    the same first apex on both engines within 8 %; the spheres also within 8 % of
    the analytic e^2 h above their resting height (e = the object's restitution,
    which governs against concrete)."""
    scene, trajs = drops
    k = [p.name for p in scene.props].index(name)
    b = len(scene.statics) + k
    prop = scene.props[k]
    apex = {}
    for e, tr in trajs.items():
        m = (tr.contact_body == [0, b]).all(1) & tr.contact_onset
        i0 = int(math.ceil(tr.contact_time[m][0] * tr.fps))
        apex[e] = _first_apex_after(tr.body_pos[:, b, 2], i0)
    assert apex["pybullet"] == pytest.approx(apex["mujoco"], rel=0.08)
    if isinstance(prop.shape, Sphere):
        r, e = prop.shape.radius, scene.material(prop.material).restitution
        for eng, a in apex.items():
            assert (a - r) == pytest.approx(e * e * 1.5, rel=0.08), eng


def _resting_heights(shape) -> list[float]:
    """Heights of the centre above the ground when lying on a face / side / end."""
    from scenes import Box, Capsule, Cylinder
    if isinstance(shape, Box):
        return list(shape.half_extents)
    if isinstance(shape, Cylinder):
        return [shape.radius, shape.half_length]
    if isinstance(shape, Capsule):
        return [shape.radius, shape.radius + shape.half_length]
    return [shape.radius]


def test_drop_test_everything_settles(drops):
    """On both engines every object except the e = 0.8 rubber ball (MuJoCo's still
    bounces at 4 s) ends on the ground, lying on a face or side (centre height
    within 3 mm of a half extent) and no longer bouncing (|v_z| < 2 cm/s; a
    cylinder on its side may still roll)."""
    scene, trajs = drops
    for k, prop in enumerate(scene.props):
        if prop.material == "rubber":
            continue
        b = len(scene.statics) + k
        for e, tr in trajs.items():
            z = tr.body_pos[-1, b, 2]
            assert min(abs(z - h) for h in _resting_heights(prop.shape)) < 3e-3, (e, prop.name, z)
            assert abs(tr.body_linvel[-1, b, 2]) < 0.02, (e, prop.name)


# ----------------------------------------------------------------------------- bowling
@pytest.fixture(scope="module")
def bowls(rollout_cache):
    import scenes
    return scenes.load("bowling"), {e: rollout_cache("bowling", engine=e) for e in ENGINES}


def _pins_down(tr, pins) -> int:
    q = tr.body_quat[-1, pins]
    axis_z = 1 - 2 * (q[:, 1] ** 2 + q[:, 2] ** 2)            # pin axis' z component
    return int(((axis_z < math.cos(math.radians(45))) | (tr.body_pos[-1, pins, 2] < 0.0)).sum())


def test_bowling_outcomes_agree(bowls):
    scene, trajs = bowls
    names = list(trajs["mujoco"].body_names)
    ball = names.index("ball")
    pins = [i for i, n in enumerate(names) if n.startswith("pin_")]
    hit, down = {}, {}
    for e, tr in trajs.items():
        m = np.isin(tr.contact_body, pins).any(1) & (tr.contact_body == ball).any(1)
        assert m.any(), f"the ball missed every pin on {e}"
        hit[e] = tr.contact_time[m].min()
        down[e] = _pins_down(tr, pins)
    # the ball reaches the pins at the same time (within one frame) ...
    assert abs(hit["mujoco"] - hit["pybullet"]) <= 1.0 / scene.fps
    # ... along the same path (hook included): within 2 cm at every frame before
    n = int(min(hit.values()) * scene.fps)
    gap = np.linalg.norm(trajs["mujoco"].body_pos[:n, ball] - trajs["pybullet"].body_pos[:n, ball], axis=1)
    assert gap.max() < 0.02, gap.max()
    # and knocks down about as many pins: at least 8 each, within 2 of each other
    assert min(down.values()) >= 8, down
    assert abs(down["mujoco"] - down["pybullet"]) <= 2, down


# ----------------------------------------------------------------------------- pendulum
@pytest.fixture(scope="module")
def bowl_mesh(tmp_path_factory):
    """The bottom cap of a 1 m sphere, faces pointing inward (toward the ball)."""
    trimesh = pytest.importorskip("trimesh")
    ico = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    keep = ico.triangles_center[:, 2] < -0.75
    cap = trimesh.Trimesh(ico.vertices, ico.faces[keep][:, ::-1], process=True)
    cap.remove_unreferenced_vertices()
    path = tmp_path_factory.mktemp("bowl") / "bowl.stl"
    cap.export(path)
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_pendulum_period_ball_in_bowl(engine, bowl_mesh):
    """A ball rolling without slipping in a spherical bowl is a pendulum of period
    T = 2 pi sqrt(7 (R - r) / (5 g)) (1 + theta0^2 / 16); within 1.5 %."""
    R, r, theta0 = 1.0, 0.1, math.radians(8.0)
    d = R - r
    s = Scene(name="bowl", duration=5.0, fps=120, physics_hz=960)
    s.add_material("m", Material(friction=0.8, restitution=0.0, density=1000.0, acoustic="ceramic"))
    s.add_static("bowl", Mesh(path=bowl_mesh.name, convex=False), pos=(0.0, 0.0, R), material="m")
    s.add_prop("ball", Sphere(r), pos=(d * math.sin(theta0), 0.0, R - d * math.cos(theta0)), material="m")
    s.add_camera("cam", StaticRig())
    s.shot("cam", 0.0, s.duration)
    tr = sim.rollout(s, engine=engine, base_dir=bowl_mesh.parent)
    x = tr.body_pos[:, 1, 0]
    i = np.nonzero((x[1:] < 0) != (x[:-1] < 0))[0]
    crossings = tr.times[i] + x[i] / (x[i] - x[i + 1]) / s.fps
    assert len(crossings) >= 4
    period = 2 * np.diff(crossings).mean()
    expected = 2 * math.pi * math.sqrt(7 * d / (5 * G)) * (1 + theta0 ** 2 / 16)
    assert period == pytest.approx(expected, rel=0.015)
    # little energy lost: the last swing still reaches 90 % of the start amplitude
    assert np.abs(x[-int(1.2 * s.fps):]).max() > 0.9 * d * math.sin(theta0)


# ----------------------------------------------------------------------------- characters
def _upright(traj, link: int) -> np.ndarray:
    """(F,) bool: the link's z axis within 30 degrees of vertical."""
    q = traj.body_quat[:, link]
    return 1 - 2 * (q[:, 1] ** 2 + q[:, 2] ** 2) > math.cos(math.radians(30))


def test_rooftop_chase_choreography_agrees(rollout_cache):
    """The same controller drives the same bodies on both engines: while both
    torsos stay upright and before any jump, every character's pelvis follows the
    same path within 0.3 m (the choreography tolerance), for at least the first 2 s."""
    import scenes
    scene = scenes.load("rooftop_chase")
    trajs = {e: rollout_cache("rooftop_chase", engine=e) for e in ENGINES}
    mj, pb = trajs["mujoco"], trajs["pybullet"]
    for c in scene.characters:
        pelvis, torso = mj.body_index(f"{c.name}/pelvis"), mj.body_index(f"{c.name}/torso")
        jumps = [a.at for a in c.actions if type(a).__name__ == "Jump"]
        end = min(int(min(jumps, default=scene.duration) * scene.fps), mj.num_frames, pb.num_frames)
        both = _upright(mj, torso)[:end] & _upright(pb, torso)[:end]
        n = int(np.argmin(both)) if not both.all() else end
        assert n >= 2 * scene.fps, f"{c.name} fell within {n / scene.fps:.2f} s on one engine"
        gap = np.linalg.norm(mj.body_pos[:n, pelvis] - pb.body_pos[:n, pelvis], axis=1)
        assert gap.max() < 0.3, (c.name, float(gap.max()), int(gap.argmax()))
