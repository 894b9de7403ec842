"""One hand-made case with a known answer per plausibility metric."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.plausibility import metrics as M
from benchmarks.plausibility.tracks import Tracks

FPS = 24
G = np.array([0.0, 0.0, -9.81])


def thrown(F=96, v0=(1.0, 0.5, 6.0), p0=(0.0, 0.0, 1.0), cuts=(48,), extra=None):
    """A ground slab (static) and a ball in exact free flight (continuous time)."""
    t = np.arange(F) / FPS
    p = np.zeros((F, 2, 3))
    v = np.zeros((F, 2, 3))
    p[:, 0] = (0, 0, -0.5)
    p[:, 1] = np.asarray(p0) + np.outer(t, v0) + 0.5 * np.outer(t * t, G)
    v[:, 1] = np.asarray(v0) + np.outer(t, G)
    kw = dict(fps=FPS, ids=("ground", "ball"), kind=("static", "prop"), visible=np.ones((F, 2), bool),
              cuts=np.asarray(cuts, np.int64), positions=p, velocities=v, shape=("box", "sphere"),
              sizes=np.array([[50, 50, 0.5], [0.1, 0.1, 0.1]]), masses=np.array([0.0, 1.0]))
    kw.update(extra or {})
    return Tracks(**kw).validate()


def test_registry_has_twelve_numbered_metrics():
    assert [M.METRICS[n].number for n in M.available()] == list(range(1, 13))
    for n in M.available():
        assert M.METRICS[n].fn.__doc__ and "=" in M.METRICS[n].fn.__doc__, n  # formula in the docstring


def test_teleport_known_jump():
    tr = thrown()
    assert M.run("teleport_rate", tr)["count"] == 0
    p = tr.positions.copy()
    p[20:, 1] += (0.3, 0, 0)
    r = M.run("teleport_rate", tr.replace(positions=p))
    assert r["count"] == 1 and r["frames"] == [20] and r["objects"] == [1]
    # without velocity tracks (finite differences) the same jump is found
    r = M.run("teleport_rate", tr.replace(positions=p, velocities=None))
    assert r["frames"] == [20]


def test_ballistic_parabola_and_kick():
    tr = thrown()
    r = M.run("ballistic_residual", tr)
    assert r["windows"] > 50 and r["p95"] < 1e-9 and not r["flagged"]
    # a body falling at half gravity: |a - g| = 4.905 exactly in every window
    p = tr.positions.copy()
    t = np.arange(tr.num_frames) / FPS
    p[:, 1, 2] = 1.0 + 6 * t - 0.25 * 9.81 * t * t
    r = M.run("ballistic_residual", tr.replace(positions=p, velocities=None))
    assert r["median"] == pytest.approx(4.905, abs=1e-6) and r["share_above"] == 1.0
    # a 1 m/s mid-air kick at frame 30 is flagged there
    p = tr.positions.copy()
    p[30:, 1] += np.outer(np.arange(1, tr.num_frames - 29) / FPS, (1.0, 0, 0))
    r = M.run("ballistic_residual", tr.replace(positions=p))
    assert r["flagged"] and min(abs(f - 30) for f in r["frames"]) <= 3


def test_cut_continuity_exact_and_stitched():
    tr = thrown()
    r = M.run("cut_continuity", tr)
    assert r["free_checked"] == 1 and r["max_rel"] < 1e-9 and not r["flagged"]
    # semi-implicit integration with S substeps is propagated exactly too
    S, dt = 20, 1 / FPS
    h = dt / S
    p, v = np.zeros((60, 2, 3)), np.zeros((60, 2, 3))
    p[0, 1], v[0, 1] = (0, 0, 30), (2, 0, 3)
    x, u = p[0, 1].copy(), v[0, 1].copy()
    for i in range(1, 60):
        for _ in range(S):
            u = u + G * h
            x = x + u * h
        p[i, 1], v[i, 1] = x, u
    tr2 = thrown(F=60, cuts=(30,)).replace(positions=p, velocities=v, substeps=S)
    assert M.run("cut_continuity", tr2)["max_rel"] < 1e-9
    # a stitched shot: the ball restarts with a 0.5 m/s different velocity
    vel = tr.velocities.copy()
    vel[48:, 1] += (0.5, 0, 0)
    r = M.run("cut_continuity", tr.replace(velocities=vel))
    sp = np.linalg.norm(tr.velocities[47, 1])
    assert r["flagged"] and r["max_rel"] == pytest.approx(0.5 / (sp + 9.81 / FPS), rel=1e-6)


def _bounce(e_after):
    F, k = 40, 20
    p, v = np.zeros((F, 2, 3)), np.zeros((F, 2, 3))
    p[:, 0] = (0, 0, -0.5)
    p[:, 1, 2] = 0.1
    v[:k, 1, 2] = -4.0
    v[k:, 1, 2] = 4.0 * e_after
    return Tracks(fps=FPS, ids=("ground", "ball"), kind=("static", "prop"), visible=np.ones((F, 2), bool),
                  cuts=np.array([], np.int64), positions=p, velocities=v, shape=("box", "sphere"),
                  sizes=np.array([[5, 5, 0.5], [0.1] * 3]), masses=np.array([0.0, 2.0]),
                  friction=np.array([0.8, 0.8]), contact_time=np.array([(k - 0.5) / FPS]),
                  contact_ids=np.array([[1, 0]]), contact_normal=np.array([[0, 0, -1.0]]),
                  contact_impulse=np.array([[2.0 * 4.0 * (1 + e_after), 0.0]]),
                  contact_onset=np.array([True])).validate()


def test_contact_response_restitution():
    r = M.run("contact_response", _bounce(0.5))
    assert r["bounces"] == 1 and r["restitution_median"] == pytest.approx(0.5) and not r["flagged"]
    r = M.run("contact_response", _bounce(1.5))
    assert r["restitution_out_of_range"] == 1 and r["flagged"] and r["frames"] == [20]
    # friction cone: tangential impulse above mu * normal
    tr = _bounce(0.5)
    r = M.run("contact_response", tr.replace(contact_impulse=np.array([[12.0, 11.0]])))
    assert r["friction_cone_violations"] == 1 and r["flagged"]


def test_penetration_known_depth():
    tr = _bounce(0.5)
    assert M.run("penetration", tr)["max_m"] == pytest.approx(0.0, abs=1e-12)
    p = tr.positions.copy()
    p[5, 1, 2] = 0.05          # sphere of radius 0.1 centred 5 cm above the ground top
    r = M.run("penetration", tr.replace(positions=p))
    assert r["max_m"] == pytest.approx(0.05) and r["frames"] == [5] and r["flagged"]
    # a box corner: 45-degree yawed cube resting 2 cm too low
    q = np.tile([1.0, 0, 0, 0], (tr.num_frames, 2, 1))
    tr2 = tr.replace(shape=("box", "box"), sizes=np.array([[5, 5, 0.5], [0.1, 0.1, 0.1]]), orientations=q)
    p = tr2.positions.copy()
    p[:, 1, 2] = 0.08
    assert M.run("penetration", tr2.replace(positions=p))["max_m"] == pytest.approx(0.02)


def test_energy_drift():
    tr = thrown()
    r = M.run("energy", tr)
    assert r["segments"] == 2 and r["drift_max"] < 1e-12 and not r["flagged"]
    # 50% speed-up mid-air at frame 2: E jumps by (1.5^2 - 1) m |v_2|^2 / 2
    p, v = tr.positions.copy(), tr.velocities.copy()
    dv = 0.5 * v[2, 1]
    v[2:, 1] += dv
    p[2:, 1] += np.outer(np.arange(1, tr.num_frames - 1) / FPS, dv)
    r = M.run("energy", tr.replace(positions=p, velocities=v))
    E = M.mechanical_energy(p, v, np.ones(2), G)[:, 1]
    vmax2 = (v[:48, 1] ** 2).sum(-1).max()
    assert r["flagged"] and r["drift_max"] == pytest.approx((E[47] - E[0]) / (vmax2 / 2 + 0.981))
    v2 = tr.velocities[2, 1]   # kinetic gain, plus the potential gain of the 1/24 s head start
    assert E[47] - E[0] == pytest.approx(1.25 * 0.5 * (v2 ** 2).sum() + 9.81 * dv[2] / FPS)


def test_static_geometry_known_shift():
    tr = thrown()
    assert M.run("static_geometry", tr)["max_shift_m"] == 0.0
    p = tr.positions.copy()
    p[48:, 0] += (0.2, 0, 0)
    r = M.run("static_geometry", tr.replace(positions=p))
    assert r["max_shift_m"] == pytest.approx(0.2) and r["frames"] == [48] and r["flagged"]


def _cam(pos, look):
    from sim.cameras import look_at
    return look_at(pos, look)


def _plane_depth(K, w2c, H, W, z0=0.0):
    """Depth of the ground plane z = z0 seen by a camera (0 where not hit)."""
    v, u = np.mgrid[0:H, 0:W]
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(H * W)])
    c2w = np.linalg.inv(w2c)
    d = c2w[:3, :3] @ rays
    o = c2w[:3, 3]
    s = (z0 - o[2]) / d[2]
    depth = np.where(s > 0, s, 0.0)   # ray parameter along a camera ray with unit z = depth
    return depth.reshape(H, W)


def test_depth_reprojection_and_fundamental():
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    a, b = _cam((0, -4, 2), (0, 0, 0)), _cam((2, -3, 2.5), (0, 0.5, 0))
    da, db = _plane_depth(K, a, 48, 64), _plane_depth(K, b, 48, 64)
    r = M.depth_reprojection_absrel(da, db, K, K, a, b)
    assert r["pixels"] > 1000 and r["median_rel"] < 0.01
    moved = _plane_depth(K, b, 48, 64, z0=0.2)   # the ground raised 20 cm in shot b
    assert M.depth_reprojection_absrel(da, moved, K, K, a, b)["absrel"] > 0.05
    # matches of static points agree with the fundamental matrix of the cameras
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (50, 3))
    def proj(w2c, X):
        x = (X @ w2c[:3, :3].T + w2c[:3, 3]) @ K.T
        return x[:, :2] / x[:, 2:]
    r = M.fundamental_consistency(proj(a, X), proj(b, X), K, K, a, b)
    assert r["sampson_median_px"] < 1e-6 and r["inlier_rate"] == 1.0
    r = M.fundamental_consistency(proj(a, X), proj(b, X + (0, 0, 0.5)), K, K, a, b)
    assert r["sampson_median_px"] > 2.0 and r["inlier_rate"] < 0.5


def test_persistence_vanished_duplicated_frozen():
    F = 60
    t = np.arange(F) / FPS
    p = np.zeros((F, 3, 3))
    for o in range(3):
        p[:, o] = np.stack([t * (o + 1), np.full(F, o * 1.0), np.full(F, 0.1)], 1)
    base = Tracks(fps=FPS, ids=("a", "b", "c"), kind=("prop",) * 3, visible=np.ones((F, 3), bool),
                  cuts=np.array([30]), positions=p, shape=("sphere",) * 3, sizes=np.full((3, 3), 0.1))
    assert not M.run("persistence", base)["flagged"]
    vis = base.visible.copy()
    vis[30:, 1] = False
    r = M.run("persistence", base.replace(visible=vis))
    assert r["vanished"] == 1 and r["frames"] == [30]
    q = p.copy()
    q[30:, 2] = q[30:, 0]                 # c becomes a copy of a after the cut
    assert M.run("persistence", base.replace(positions=q))["duplicated"] == 1
    q = p.copy()
    q[30:, 0] = q[30, 0]                  # a stops dead at the cut
    assert M.run("persistence", base.replace(positions=q))["frozen"] == 1
    q = p.copy()
    q[30:, 1] = q[:30, 1]                 # b restarts from its initial position at the cut
    r = M.run("persistence", base.replace(positions=q))
    assert r["reverted"] == 1 and r["frames"] == [30]


def clicks(times, sr=48000, dur=3.0, seed=0):
    """Decaying 1.5 kHz pings at ``times`` over faint noise."""
    rng = np.random.default_rng(seed)
    x = 1e-4 * rng.normal(size=int(dur * sr))
    n = np.arange(int(0.15 * sr))
    ping = np.sin(2 * np.pi * 1500 * n / sr) * np.exp(-n / (0.01 * sr))
    for t in times:
        i = int(round(t * sr))
        x[i:i + len(ping)] += 0.5 * ping[: len(x) - i]
    return np.stack([x, x]).astype(np.float32)


@pytest.mark.parametrize("detector", ["own", "bridge"])
def test_audio_alignment_known_offset(detector):
    times = np.array([0.3, 0.71, 1.2, 1.65, 2.2, 2.6])
    audio = clicks(times + 0.040)          # sound 40 ms late
    det = M.detect_onsets if detector == "own" else M.audio_onsets
    on = det(audio, 48000)
    assert len(on) == len(times)
    r = M.audio_alignment(on, times, FPS)
    assert r["median_offset_ms"] == pytest.approx(-40.0, abs=2.0) and r["flagged"]
    assert r["share_in_bt1359"] == 1.0
    r = M.audio_alignment(det(clicks(times), 48000), times, FPS)
    assert abs(r["median_offset_ms"]) < 2.0 and r["f1"] == 1.0 and not r["flagged"]


def test_relative_pose_known_motion():
    K = np.array([[200.0, 0, 128], [0, 200.0, 128], [0, 0, 1]])
    a, b = _cam((0, -5, 1.5), (0, 0, 1)), _cam((0.5, -5, 1.6), (0.2, 0, 1))
    rng = np.random.default_rng(1)
    X = rng.uniform((-2, -1, 0), (2, 2, 2), (200, 3))
    def proj(w2c):
        x = (X @ w2c[:3, :3].T + w2c[:3, 3]) @ K.T
        return x[:, :2] / x[:, 2:] + rng.normal(0, 0.2, (len(X), 2))
    r = M.relative_pose_error(proj(a), proj(b), K, a, b)
    assert r["rot_err_deg"] < 0.5 and r["trans_err_deg"] < 5
    r = M.relative_pose_error(proj(a), proj(b), K, a, _cam((0.5, -5, 1.6), (1.0, 0, 1)))
    assert r["rot_err_deg"] > 5


def test_match_features_on_textured_plane():
    import cv2
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((256, 256, 3)) * 255).astype(np.uint8), (5, 5), 0)
    H = np.array([[1.0, 0.05, 6], [-0.03, 1.0, 4], [0, 0, 1]])
    warped = cv2.warpPerspective(tex, H, (256, 256))
    xa, xb = M.match_features(tex, warped)
    pred = cv2.perspectiveTransform(xa.reshape(-1, 1, 2), H).reshape(-1, 2)
    assert len(xa) > 50 and np.median(np.linalg.norm(pred - xb, axis=1)) < 1.0


def test_physical_variance_ratio():
    F = 10
    ref = np.zeros((F, 2, 3))
    spread = [ref + (0.01, 0, 0), ref - (0, 0.01, 0)]
    r = M.physical_variance(ref + (0, 0, 0.03), ref, spread)
    assert r["spread_m"] == pytest.approx(0.01) and r["ratio"] == pytest.approx(3.0)


def _video(F=48, cuts=(16, 33), seed=0):
    import cv2
    rng = np.random.default_rng(seed)
    frames, shot = [], -1
    bounds = [0, *cuts, F]
    for s in range(len(bounds) - 1):
        tex = cv2.GaussianBlur((rng.random((96, 96, 3)) * 255).astype(np.uint8), (9, 9), 0)
        for i in range(bounds[s], bounds[s + 1]):
            frames.append(np.roll(tex, i - bounds[s], axis=1))   # slow pan inside a shot
    return np.stack(frames)


def test_cut_timing_f1():
    v = _video()
    r = M.cut_timing(v, [16, 33])
    assert r["f1"] == 1.0 and not r["flagged"]
    r = M.cut_timing(v, [19, 33])
    assert r["recall"] == 0.5 and r["flagged"]


def test_static_depth_ray_cast():
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    cam = _cam((0, 0, 1), (5, 0, 1))                     # looking along +x at a wall
    wall = M.static_depth(K, cam, (64, 48), np.array([[5.1, 0, 1]]), None, ["box"], np.array([[0.1, 10, 10]]))
    assert wall[24, 32] == pytest.approx(5.0, abs=1e-9)  # front face at x = 5
    ball = M.static_depth(K, cam, (64, 48), np.array([[3.0, 0, 1]]), None, ["sphere"], np.array([[0.5] * 3]))
    assert ball[24, 32] == pytest.approx(2.5, abs=1e-2) and ball[ball > 0].min() >= 2.5 - 1e-9 and (ball == 0).any()
