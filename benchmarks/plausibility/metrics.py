"""The plausibility metrics: one pure function each (arrays in, numbers out).

Every metric is registered with ``@metric(name, inputs=...)``; ``inputs`` maps a
`Tracks` (plus optional extras: video frames, depth maps, audio onsets) to the
metric's keyword arguments, or says which input is missing. Each metric returns
a flat dict of numbers, plus ``flagged`` (bool: the metric found a failure with
its default thresholds) and ``frames`` (offending frame indices, for plots).

Shapes: F frames, O objects, K contacts. dt = 1 / fps. g is the gravity vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

BT1359 = (-125.0, 45.0)  # ms: ITU-R BT.1359 detectability window (sound late, sound early)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable
    inputs: Callable          # (tracks, extras) -> kwargs dict, or a str naming what is missing
    summary: str
    number: int


METRICS: dict[str, MetricSpec] = {}


def metric(name: str, *, number: int, inputs: Callable):
    """Decorator: register a pure metric function under ``name``."""
    def deco(fn):
        if name in METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        METRICS[name] = MetricSpec(name, fn, inputs, doc, number)
        fn.metric_name = name
        return fn
    return deco


def available() -> list[str]:
    return sorted(METRICS, key=lambda n: METRICS[n].number)


def run(name: str, tracks, extras: dict | None = None, **overrides) -> dict:
    """Run one registered metric on ``tracks``; a metric whose inputs are missing
    returns ``{"skipped": reason}``."""
    if name not in METRICS:
        raise KeyError(f"unknown metric '{name}' (valid choices: {', '.join(available())})")
    spec = METRICS[name]
    kw = spec.inputs(tracks, extras or {})
    if isinstance(kw, str):
        return {"skipped": kw}
    kw.update(overrides)
    return spec.fn(**kw)


# --------------------------------------------------------------------------- helpers
def _velocity(pos: np.ndarray, vel: np.ndarray | None, fps: float, cuts) -> np.ndarray:
    """Recorded velocities, or finite differences (central inside a shot, one-sided
    at shot edges) median-filtered over 5 frames so a single jump does not leak."""
    if vel is not None:
        return np.asarray(vel, float)
    from scipy.ndimage import median_filter
    F = pos.shape[0]
    bounds = [0] + [int(c) for c in cuts] + [F]
    out = np.zeros_like(pos, dtype=float)
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = np.nan_to_num(pos[a:b])
        if b - a >= 2:
            v = np.gradient(seg, 1.0 / fps, axis=0)
            out[a:b] = median_filter(v, size=(min(5, b - a),) + (1,) * (pos.ndim - 1), mode="nearest")
    return out


def _cut_interval_mask(F: int, cuts) -> np.ndarray:
    """(F,) bool: interval (t_{i-1}, t_i] spans a shot boundary."""
    m = np.zeros(F, bool)
    m[np.asarray(cuts, np.int64)] = True
    return m


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else 0.0


def _tracks_basic(tr, need_vel=False):
    if tr.positions is None:
        return "needs 3D 'positions'"
    kw = dict(pos=tr.positions, visible=tr.visible, contact=tr.contact_mask(), fps=tr.fps,
              gravity=tr.gravity, cuts=tr.cuts)
    return kw


# --------------------------------------------------------------------------- 1 teleport
def _teleport_inputs(tr, ex):
    kw = _tracks_basic(tr)
    if isinstance(kw, str):
        return kw
    kw.update(vel=tr.velocities, dynamic=~tr.kind_mask("static"), actuated=tr.kind_mask("character"))
    return kw


@metric("teleport_rate", number=1, inputs=_teleport_inputs)
def teleport_rate(pos, visible, contact, fps, gravity, cuts, vel=None, dynamic=None, actuated=None,
                  residual_threshold=0.1, slack=0.01) -> dict:
    """Teleports per object-interval: frame-to-frame jumps no motion explains.

    For each dynamic object o and frame interval (t_{i-1}, t_i] with the object
    visible at both ends and no contact of o in the interval:
        d_i = |p_i - p_{i-1}|,  v_max,i = max(|v_{i-1}|, |v_i|) + |g| dt,
        r_i = |p_i - p_{i-1} - dt (v_{i-1} + v_i) / 2|   (trapezoid rule: exact
              for constant acceleration, so ~0 for free flight),
        tau_i = min(residual_threshold, |v_{i-1} + v_i| dt / 4 + slack),
        teleport_i = d_i > 1.5 v_max,i dt + slack  or  r_i > tau_i
    (the relative part of tau catches skipped and repeated frames of moving
    objects: their residual is the whole displacement |v| dt).
    Intervals with a contact of o may change the velocity once inside them,
    which bounds the trapezoid error by |v_i - v_{i-1}| dt / 2; they are
    teleports when  r_i > tau_i + |v_i - v_{i-1}| dt / 2.
    Actuated bodies (character links: motors and impacts spike their speed
    between samples) use the plain rule d_i > 1.5 v_max dt + slack with v_max the
    largest sampled speed over frames i-2 .. i+1 (plus |g| dt); a character as a
    whole is checked through its centre of mass.
    v is the recorded velocity, else median-filtered finite differences.
    rate = teleports / checked intervals. Intervals across cuts are checked too
    (a persistent world stays continuous there).
    """
    pos = np.asarray(pos, float)
    F, O, _ = pos.shape
    dt = 1.0 / fps
    v = _velocity(pos, vel, fps, cuts)
    dyn = np.ones(O, bool) if dynamic is None else np.asarray(dynamic, bool)
    ok = visible[1:] & visible[:-1] & dyn[None, :]
    dp = np.nan_to_num(pos[1:] - pos[:-1])
    d = np.linalg.norm(dp, axis=-1)
    sp = np.linalg.norm(v, axis=-1)
    vmax = np.maximum(sp[1:], sp[:-1]) + np.linalg.norm(gravity) * dt
    r = np.linalg.norm(dp - dt * 0.5 * (v[1:] + v[:-1]), axis=-1)
    dv = np.linalg.norm(v[1:] - v[:-1], axis=-1)
    touch = contact[1:]
    vbar = np.linalg.norm(0.5 * (v[1:] + v[:-1]), axis=-1)
    thr = np.minimum(residual_threshold, 0.5 * vbar * dt + slack)
    free_tele = ~touch & ((d > 1.5 * vmax * dt + slack) | (r > thr))
    # through a contact the velocity may jump once inside the interval; the
    # trapezoid residual is then at most |dv| dt / 2, positions stay continuous
    touch_tele = touch & (r > thr + 0.5 * dv * dt)
    act = np.zeros(O, bool) if actuated is None else np.asarray(actuated, bool)
    tele = ok & (free_tele | touch_tele) & ~act[None, :]
    if act.any():
        # motors and impacts can spike a link's speed between samples: the
        # 1.5 v_max dt rule with v_max over the four samples around the interval
        from scipy.ndimage import maximum_filter1d
        vwin = maximum_filter1d(sp[:, act], size=4, axis=0, mode="nearest")
        vw = np.maximum(vwin[1:], vwin[:-1]) + np.linalg.norm(gravity) * dt
        tele[:, act] = ok[:, act] & (d[:, act] > 1.5 * vw * dt + slack)
    n = int(ok.sum())
    fr, ob = np.nonzero(tele)
    return {"rate": float(tele.sum() / max(n, 1)), "count": int(tele.sum()), "checked": n,
            "max_residual_m": float(r[ok].max()) if n else 0.0,
            "flagged": bool(tele.any()), "frames": sorted({int(f) + 1 for f in fr}),
            "objects": sorted({int(o) for o in ob})}


# --------------------------------------------------------------------------- 2 ballistic
def _ballistic_inputs(tr, ex):
    kw = _tracks_basic(tr)
    if isinstance(kw, str):
        return kw
    kw["contact"] = tr.contact_mask(pad=1)
    kw["ballistic"] = tr.kind_mask("prop", "com")
    return kw


def parabola_accel_operator(window: int, fps: float) -> np.ndarray:
    """(window,) weights w with a = w . x: the second-derivative (2 c_2) of the
    least-squares parabola x(t) = c_0 + c_1 t + c_2 t^2 through ``window`` samples."""
    t = (np.arange(window) - (window - 1) / 2) / fps
    V = np.stack([np.ones_like(t), t, t * t], 1)
    return 2.0 * np.linalg.pinv(V)[2]


@metric("ballistic_residual", number=2, inputs=_ballistic_inputs)
def ballistic_residual(pos, visible, contact, fps, gravity, cuts, ballistic=None, window=7,
                       threshold=1.0) -> dict:
    """Mid-air acceleration error: |a - g| of least-squares parabolas.

    Windows of ``window`` (5-9) consecutive frames of one object, all visible, in
    one shot, with no contact (dilated by one frame) in any interval inside:
        a = sum_j w_j p_{i+j}  (w: second derivative of the least-squares
            parabola through the window, `parabola_accel_operator`),
        e = |a - g|  (m/s^2).
    Reports median and p95 of e, and the share of windows with e > threshold
    (mid-air momentum changes). Objects: props and characters' centres of mass.
    """
    pos = np.asarray(pos, float)
    F, O, _ = pos.shape
    W = int(window)
    out = {"median": 0.0, "p95": 0.0, "max": 0.0, "share_above": 0.0, "windows": 0,
           "flagged": False, "frames": [], "objects": []}
    if F < W:
        return out
    w = parabola_accel_operator(W, fps)
    from numpy.lib.stride_tricks import sliding_window_view
    bal = np.ones(O, bool) if ballistic is None else np.asarray(ballistic, bool)
    cutm = _cut_interval_mask(F, cuts)
    bad_int = contact | cutm[:, None] | ~visible | np.roll(~visible, 1, axis=0)
    bad_int[0] = ~visible[0]
    # window starting at frame s covers intervals s+1 .. s+W-1 and frames s .. s+W-1
    bad_win = sliding_window_view(bad_int[1:], W - 1, axis=0).any(-1)[: F - W + 1]
    bad_win |= ~visible[: F - W + 1]
    ok = ~bad_win & bal[None, :]
    idx_s, idx_o = np.nonzero(ok)
    if not len(idx_s):
        return out
    win = sliding_window_view(np.nan_to_num(pos), W, axis=0)  # (F-W+1, O, 3, W)
    a = win[idx_s, idx_o] @ w                                   # (N, 3)
    e = np.linalg.norm(a - np.asarray(gravity)[None], axis=-1)
    above = e > threshold
    centre = idx_s + W // 2
    return {"median": float(np.median(e)), "p95": _pct(e, 95), "max": float(e.max()),
            "share_above": float(above.mean()), "windows": int(len(e)), "flagged": bool(above.any()),
            "frames": sorted({int(c) for c in centre[above]}),
            "objects": sorted({int(o) for o in idx_o[above]})}


# --------------------------------------------------------------------------- 3 cut continuity
def _continuity_inputs(tr, ex):
    kw = _tracks_basic(tr)
    if isinstance(kw, str):
        return kw
    if not len(tr.cuts):
        return "no cuts in the shot list"
    kw.update(vel=tr.velocities, substeps=tr.substeps, dynamic=tr.kind_mask("prop", "com"),
              contact=tr.contact_mask(pad=1))
    return kw


def propagate_ballistic(p, v, gravity, dt, substeps=0):
    """State one frame later under gravity alone. ``substeps`` > 0: the semi-implicit
    Euler integrator of the engine (v += g h; p += v h; h = dt / substeps),
    p' = p + v dt + g h^2 S (S + 1) / 2; 0: exact continuous time, p' = p + v dt + g dt^2 / 2.
    v' = v + g dt in both."""
    g = np.asarray(gravity, float)
    if substeps and substeps > 0:
        h = dt / substeps
        return p + v * dt + g * h * h * substeps * (substeps + 1) / 2, v + g * dt
    return p + v * dt + 0.5 * g * dt * dt, v + g * dt


@metric("cut_continuity", number=3, inputs=_continuity_inputs)
def cut_continuity(pos, visible, contact, fps, gravity, cuts, vel=None, substeps=0, dynamic=None,
                   threshold=1e-3, contact_threshold=0.05) -> dict:
    """Momentum continuity across cuts: state after the cut vs state propagated.

    For each cut at frame c and each dynamic object visible at c-1 and c:
      free (no contact around the cut): (p^, v^) = propagate_ballistic(p_{c-1},
        v_{c-1}); e_rel = max(|p_c - p^| / (|v_{c-1}| dt + |g| dt^2),
                              |v_c - v^| / (|v_{c-1}| + |g| dt));
        without recorded velocities p^ = 3 p_{c-1} - 3 p_{c-2} + p_{c-3} and only
        the position term is used.
      in contact: e_contact = |p_c - p_{c-1} - dt (v_{c-1} + v_c) / 2| (m), the
        trapezoid residual (contacts change velocity, not position).
    flagged when max e_rel > threshold or max e_contact > contact_threshold.
    """
    pos = np.asarray(pos, float)
    F, O, _ = pos.shape
    dt = 1.0 / fps
    g = np.asarray(gravity, float)
    dyn = np.ones(O, bool) if dynamic is None else np.asarray(dynamic, bool)
    rel, cres, frames = [], [], set()
    has_vel = vel is not None
    v_all = _velocity(pos, vel, fps, cuts) if has_vel else None
    for c in np.asarray(cuts, np.int64):
        if c < 1:
            continue
        ok = visible[c] & visible[c - 1] & dyn
        for o in np.nonzero(ok)[0]:
            free = not contact[c, o]
            if has_vel:
                p0, v0 = pos[c - 1, o], v_all[c - 1, o]
                if free:
                    ph, vh = propagate_ballistic(p0, v0, g, dt, substeps)
                    sp = np.linalg.norm(v0)
                    e = max(np.linalg.norm(pos[c, o] - ph) / (sp * dt + np.linalg.norm(g) * dt * dt),
                            np.linalg.norm(v_all[c, o] - vh) / (sp + np.linalg.norm(g) * dt))
                    rel.append(e)
                    if e > threshold:
                        frames.add(int(c))
                else:
                    r = np.linalg.norm(pos[c, o] - p0 - dt * 0.5 * (v0 + v_all[c, o]))
                    cres.append(r)
                    if r > contact_threshold:
                        frames.add(int(c))
            elif c >= 3 and visible[c - 3:c, o].all():
                ph = 3 * pos[c - 1, o] - 3 * pos[c - 2, o] + pos[c - 3, o]
                sp = np.linalg.norm(pos[c - 1, o] - pos[c - 2, o]) / dt
                e = np.linalg.norm(pos[c, o] - ph) / (sp * dt + np.linalg.norm(g) * dt * dt)
                (rel if free else cres).append(e if free else np.linalg.norm(pos[c, o] - ph))
                if (free and e > threshold) or (not free and cres[-1] > contact_threshold):
                    frames.add(int(c))
    rel_a, cres_a = np.asarray(rel), np.asarray(cres)
    return {"max_rel": float(rel_a.max()) if len(rel_a) else 0.0,
            "median_rel": float(np.median(rel_a)) if len(rel_a) else 0.0,
            "free_checked": int(len(rel_a)),
            "max_contact_residual_m": float(cres_a.max()) if len(cres_a) else 0.0,
            "contact_checked": int(len(cres_a)), "cuts": int(len(cuts)),
            "flagged": bool(frames), "frames": sorted(frames)}


# --------------------------------------------------------------------------- 4 contact response
def _contact_inputs(tr, ex):
    if tr.positions is None or tr.velocities is None and tr.positions is None:
        return "needs 3D positions"
    if not len(tr.contact_time):
        return "no contacts"
    return dict(vel=_velocity(tr.positions, tr.velocities, tr.fps, tr.cuts), masses=tr.masses,
                dynamic=tr.kind_mask("prop"), contact_frame=tr.contact_frame,
                contact_ids=tr.contact_ids, contact_normal=tr.contact_normal,
                contact_impulse=tr.contact_impulse, contact_onset=tr.contact_onset,
                friction=tr.friction, fps=tr.fps, gravity=tr.gravity,
                sphere=None if tr.shape is None else np.asarray(tr.shape) == "sphere")


@metric("contact_response", number=4, inputs=_contact_inputs)
def contact_response(vel, contact_frame, contact_ids, fps, gravity, masses=None, dynamic=None,
                     contact_normal=None, contact_impulse=None, contact_onset=None, friction=None,
                     sphere=None, restitution_slack=0.1, momentum_threshold=0.2) -> dict:
    """Contact response: restitution, friction cone, momentum, impulse balance.

    For each onset contact k between objects a and b in interval (t_{i-1}, t_i]
    (b = -1 or a static: the world, velocity 0), n the contact normal a -> b,
    with only this contact for these bodies in the interval:
      restitution e = -(v_b - v_a)_i . n / (v_b - v_a)_{i-1} . n for approaching
        pairs; violation when e < -slack or e > 1 + slack;
      friction cone: J_t <= mu J_n (mu = the larger friction of the pair);
      two-body momentum residual (both dynamic):
        |m_a dv_a + m_b dv_b - (m_a + m_b) g dt| / (m_a |dv_a| + m_b |dv_b|);
      impulse vs velocity change (b is the world):
        |(m_a |dv_a - g dt|) - |J|| / max(m_a |dv_a - g dt|, |J|), |J| = |(J_n, J_t)|.
    flagged when any restitution, friction-cone or momentum check fails.
    """
    vel = np.asarray(vel, float)
    F, O, _ = vel.shape
    dt = 1.0 / fps
    g = np.asarray(gravity, float)
    dyn = np.ones(O, bool) if dynamic is None else np.asarray(dynamic, bool)
    ids = np.asarray(contact_ids, np.int64).reshape(-1, 2)
    fr = np.asarray(contact_frame, np.int64)
    K = len(fr)
    onset = np.ones(K, bool) if contact_onset is None else np.asarray(contact_onset, bool)
    # how many contacts each body has in each interval (only isolated contacts are checked)
    cnt = np.zeros((F, O + 1), np.int64)
    np.add.at(cnt, (fr, ids[:, 0]), 1)
    np.add.at(cnt, (fr, ids[:, 1]), 1)
    a, b = ids[:, 0], ids[:, 1]
    ac, bc = np.maximum(a, 0), np.maximum(b, 0)
    i, ip = fr, np.maximum(fr - 1, 0)
    valid = (i >= 1) & (a >= 0) & dyn[ac]
    bdyn = (b >= 0) & dyn[bc]
    frames = set()
    cone_bad = np.zeros(K, bool)
    cone_n = 0
    if contact_impulse is not None and friction is not None:
        J = np.asarray(contact_impulse, float).reshape(-1, 2)
        fin = valid & np.isfinite(J).all(1)
        mu = np.maximum(np.asarray(friction)[ac], np.where(b >= 0, np.asarray(friction)[bc], 0.0))
        cone_bad = fin & (J[:, 1] > mu * J[:, 0] * 1.05 + 1e-6)
        cone_n = int(fin.sum())
        frames |= set(i[cone_bad].tolist())
    iso = valid & onset & (cnt[i, ac] == 1) & ((b < 0) | (cnt[i, bc] == 1))
    dva = vel[i, ac] - vel[ip, ac]
    rest = np.zeros(0)
    rest_bad = 0
    if contact_normal is not None:
        n = np.asarray(contact_normal, float).reshape(-1, 3)
        sph = np.ones(K, bool) if sphere is None else (np.asarray(sphere)[ac] & (~bdyn | np.asarray(sphere)[bc]))
        vb0 = np.where(bdyn[:, None], vel[ip, bc], 0.0)
        vb1 = np.where(bdyn[:, None], vel[i, bc], 0.0)
        approach = ((vb0 - vel[ip, ac]) * n).sum(-1)
        sel = iso & sph & (approach < -0.3)    # closing above 0.3 m/s: a measurable bounce
        e = -((vb1[sel] - vel[i[sel], ac[sel]]) * n[sel]).sum(-1) / approach[sel]
        rest = e
        bad = (e < -restitution_slack) | (e > 1 + restitution_slack)
        rest_bad = int(bad.sum())
        frames |= set(i[sel][bad].tolist())
    mom = imp = np.zeros(0)
    if masses is not None:
        m = np.asarray(masses, float)
        two = iso & bdyn
        dvb = vel[i, bc] - vel[ip, bc]
        den = m[ac] * np.linalg.norm(dva, axis=-1) + m[bc] * np.linalg.norm(dvb, axis=-1)
        two &= den > 1e-9
        res = np.linalg.norm(m[ac, None] * dva + m[bc, None] * dvb - (m[ac] + m[bc])[:, None] * g * dt, axis=-1)
        mom = res[two] / den[two]
        frames |= set(i[two][mom > momentum_threshold].tolist())
        if contact_impulse is not None:
            J = np.asarray(contact_impulse, float).reshape(-1, 2)
            one = iso & ~bdyn & np.isfinite(J).all(1)
            lhs = m[ac] * np.linalg.norm(dva - g * dt, axis=-1)
            Jn = np.linalg.norm(np.nan_to_num(J), axis=1)
            big = np.maximum(lhs, Jn)
            one &= big > 1e-9
            imp = np.abs(lhs - Jn)[one] / big[one]
    return {"restitution_median": float(np.median(rest)) if len(rest) else 0.0,
            "restitution_out_of_range": int(rest_bad), "bounces": int(len(rest)),
            "friction_cone_violations": int(cone_bad.sum()), "friction_checked": cone_n,
            "momentum_residual_median": float(np.median(mom)) if len(mom) else 0.0,
            "momentum_residual_max": float(mom.max()) if len(mom) else 0.0,
            "impulse_error_median": float(np.median(imp)) if len(imp) else 0.0,
            "flagged": bool(frames), "frames": sorted(int(f) for f in frames)}


# --------------------------------------------------------------------------- 5 penetration
def _penetration_inputs(tr, ex):
    if tr.positions is None:
        return "needs 3D positions"
    if tr.shape is None or tr.sizes is None:
        return "needs object 'shape' and 'sizes'"
    return dict(pos=tr.positions, quat=tr.orientations, shape=tr.shape, sizes=tr.sizes,
                static=tr.kind_mask("static"), visible=tr.visible, tolerance=tr.contact_tolerance,
                vel=_velocity(tr.positions, tr.velocities, tr.fps, tr.cuts),
                omega=float((tr.meta or {}).get("contact_omega", 0.0)), fps=tr.fps)


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


_BOX_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
_RIM = np.array([[np.cos(a), np.sin(a), s] for s in (-1, 1) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)])


def _probe_points(shape: str, size: np.ndarray):
    """Local probe points and their radii: a body is the union of balls around them
    (exact for spheres and capsules; corners/rim points for boxes and cylinders)."""
    if shape == "sphere":
        return np.zeros((1, 3)), np.array([size[0]])
    if shape == "capsule":
        h = size[2] - size[0]
        return np.array([[0, 0, -h], [0, 0, h]], float), np.full(2, size[0])
    if shape == "box":
        return _BOX_CORNERS * size, np.zeros(8)
    if shape == "cylinder":
        return _RIM * np.array([size[0], size[0], size[2]]), np.zeros(len(_RIM))
    return np.zeros((0, 3)), np.zeros(0)


def _sdf(shape: str, size: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Signed distance of local points x (..., 3) to a shape (negative inside)."""
    if shape == "sphere":
        return np.linalg.norm(x, axis=-1) - size[0]
    if shape == "capsule":
        h = size[2] - size[0]
        z = np.clip(x[..., 2], -h, h)
        return np.linalg.norm(x - np.stack([0 * z, 0 * z, z], -1), axis=-1) - size[0]
    if shape == "cylinder":
        d = np.stack([np.linalg.norm(x[..., :2], axis=-1) - size[0], np.abs(x[..., 2]) - size[2]], -1)
        return np.minimum(d.max(-1), 0) + np.linalg.norm(np.maximum(d, 0), axis=-1)
    if shape == "box":
        q = np.abs(x) - size
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
    return np.full(x.shape[:-1], np.inf)


def _scatter_max(target: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """target[idx] = max(target[idx], vals) with repeated indices (sort + reduceat;
    much faster than np.maximum.at)."""
    if not len(idx):
        return
    o = np.argsort(idx, kind="stable")
    si = idx[o]
    starts = np.flatnonzero(np.concatenate([[True], si[1:] != si[:-1]]))
    mx = np.maximum.reduceat(vals[o], starts)
    target[si[starts]] = np.maximum(target[si[starts]], mx)


def _probe_batch(shape: str, size: np.ndarray):
    """`_probe_points` for N objects of one shape: points (N, p, 3), radii (N, p)."""
    N = len(size)
    if shape == "sphere":
        return np.zeros((N, 1, 3)), size[:, :1]
    if shape == "capsule":
        h = size[:, 2] - size[:, 0]
        pts = np.zeros((N, 2, 3))
        pts[:, 0, 2], pts[:, 1, 2] = -h, h
        return pts, np.repeat(size[:, :1], 2, 1)
    if shape == "box":
        return _BOX_CORNERS[None] * size[:, None, :], np.zeros((N, 8))
    if shape == "cylinder":
        return _RIM[None] * np.stack([size[:, 0], size[:, 0], size[:, 2]], 1)[:, None, :], np.zeros((N, len(_RIM)))
    return np.zeros((N, 0, 3)), np.zeros((N, 0))


def _sdf_batch(shape: str, size: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Signed distance of local points x (N, p, 3) to shapes of sizes (N, 1, 3)."""
    if shape == "sphere":
        return np.linalg.norm(x, axis=-1) - size[..., 0]
    if shape == "capsule":
        h = size[..., 2] - size[..., 0]
        z = np.clip(x[..., 2], -h, h)
        return np.linalg.norm(x - np.stack([0 * z, 0 * z, z], -1), axis=-1) - size[..., 0]
    if shape == "cylinder":
        d = np.stack([np.linalg.norm(x[..., :2], axis=-1) - size[..., 0], np.abs(x[..., 2]) - size[..., 2]], -1)
        return np.minimum(d.max(-1), 0) + np.linalg.norm(np.maximum(d, 0), axis=-1)
    if shape == "box":
        q = np.abs(x) - size
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
    return np.full(x.shape[:-1], np.inf)


def _bound_radius(shape: str, size: np.ndarray) -> float:
    if shape == "box":
        return float(np.linalg.norm(size))
    if shape == "cylinder":
        return float(np.hypot(size[0], size[2]))
    if shape in ("sphere", "capsule"):
        return float(size[2] if shape == "capsule" else size[0])
    return 0.0


@metric("penetration", number=5, inputs=_penetration_inputs)
def penetration(pos, shape, sizes, static, visible, quat=None, tolerance=0.005, vel=None,
                omega=0.0, fps=24.0) -> dict:
    """Interpenetration depth between objects (m).

    Each object is described by probe points with radii (`_probe_points`); the
    depth of a pair (a, b), not both static, is
        d_ab = max(0, max_j -(sdf_b(R_b^T (x_j - c_b)) - r_j))
    over a's probe points x_j (and the same with a and b swapped); candidate pairs
    come from a bounding-sphere broad phase. Per frame D_i = max over pairs.
    The allowed depth is the engine's stated tolerance: for a soft contact spring
    of natural frequency omega (rad/s; 0 = rigid) a pair closing at speed v sinks
    up to about v / omega, so tol_ab,i = tolerance + max_{j=i-2..i} s_ab,j / omega with
    s_ab = |v_a - v_b| + w_a rho_a + w_b rho_b a bound on the contact-point speed
    (w: angular speed from the orientation track, rho: bounding radius).
    Reports max D, p95 of D over frames with any contact candidate, the p95 of
    R_i = max_pairs d_ab / tol_ab (within tolerance: R <= 1) and the share of
    frames with R > 1; flagged when any frame has R > 1.
    """
    pos = np.asarray(pos, float)
    F, O, _ = pos.shape
    sizes = np.asarray(sizes, float)
    static = np.asarray(static, bool)
    R = _quat_to_mat(np.asarray(quat, float)) if quat is not None else np.broadcast_to(np.eye(3), (F, O, 3, 3))
    rad = np.array([_bound_radius(s, z) for s, z in zip(shape, sizes)])
    usable = np.array([s in ("box", "sphere", "capsule", "cylinder") for s in shape])
    depth = np.zeros(F)
    ratio = np.zeros(F)
    pairs_seen = np.zeros(F, bool)
    V = None if vel is None else np.nan_to_num(np.asarray(vel, float))
    spin = np.zeros((F, O))
    if quat is not None and F > 1:   # angular speed from orientation changes: 2 acos|q_i . q_{i-1}| / dt
        q = np.nan_to_num(np.asarray(quat, float))
        dots = np.clip(np.abs((q[1:] * q[:-1]).sum(-1)), 0, 1)
        spin[1:] = 2 * np.arccos(dots) * fps
        spin[:-1] = np.maximum(spin[:-1], spin[1:])
    # broad phase on bounding spheres -> candidate (frame, a, b) triples:
    # statics against every moving object (vectorised over frames), moving objects
    # among themselves with a k-d tree per frame (scipy cKDTree.query_pairs)
    from scipy.spatial import cKDTree
    idx = np.nonzero(usable)[0]
    P = np.nan_to_num(pos)
    st_i, dy_i = idx[static[idx]], idx[~static[idx]]
    tf, ta, tb = [], [], []
    for a in st_i:
        d = np.linalg.norm(P[:, dy_i] - P[:, a:a + 1], axis=-1)                # (F, D)
        near = (d < rad[a] + rad[dy_i][None] + tolerance) & visible[:, dy_i] & visible[:, a:a + 1]
        fi, di = np.nonzero(near)
        tf.append(fi)
        ta.append(np.full(len(fi), a))
        tb.append(dy_i[di])
    if len(dy_i) > 1:
        reach = 2 * rad[dy_i].max() + tolerance
        for f in range(F):
            pr = cKDTree(P[f, dy_i]).query_pairs(reach, output_type="ndarray")
            if not len(pr):
                continue
            a_, b_ = dy_i[pr[:, 0]], dy_i[pr[:, 1]]
            ok = (np.linalg.norm(P[f, a_] - P[f, b_], axis=-1) < rad[a_] + rad[b_] + tolerance) \
                & visible[f, a_] & visible[f, b_]
            tf.append(np.full(ok.sum(), f))
            ta.append(a_[ok])
            tb.append(b_[ok])
    tf = np.concatenate(tf).astype(np.int64) if tf else np.zeros(0, np.int64)
    ta = np.concatenate(ta).astype(np.int64) if ta else np.zeros(0, np.int64)
    tb = np.concatenate(tb).astype(np.int64) if tb else np.zeros(0, np.int64)
    pairs_seen[tf] = True
    tol = np.full(len(tf), float(tolerance))
    if V is not None and omega > 0 and len(tf):
        prev = [np.maximum(tf - k, 0) for k in (0, 1, 2)]
        rel = np.max([np.linalg.norm(V[f, ta] - V[f, tb], axis=-1) + spin[f, ta] * rad[ta] + spin[f, tb] * rad[tb]
                      for f in prev], axis=0)
        tol = tol + rel / omega
    # narrow phase, batched by (probe shape, partner shape)
    kinds = np.asarray(shape)
    for (u_idx, w_idx) in ((ta, tb), (tb, ta)):
        for ku in ("box", "sphere", "capsule", "cylinder"):
            for kw in ("box", "sphere", "capsule", "cylinder"):
                sel = np.nonzero((kinds[u_idx] == ku) & (kinds[w_idx] == kw))[0]
                if not len(sel):
                    continue
                f, u, w = tf[sel], u_idx[sel], w_idx[sel]
                pts, r = _probe_batch(ku, sizes[u])                              # (N, p, 3), (N, p)
                world = np.matmul(pts, np.swapaxes(R[f, u], 1, 2)) + P[f, u][:, None]   # R_u x + c_u
                local = np.matmul(world - P[f, w][:, None], R[f, w])                  # R_w^T (x - c_w)
                d = np.maximum(0.0, -(_sdf_batch(kw, sizes[w][:, None, :], local) - r)).max(-1)
                _scatter_max(depth, f, d)
                _scatter_max(ratio, f, d / tol[sel])
    checked = depth[pairs_seen]
    above = ratio > 1.0
    return {"max_m": float(depth.max()) if F else 0.0, "p95_m": _pct(checked, 95),
            "p95_ratio": _pct(ratio[pairs_seen], 95), "max_ratio": float(ratio.max()) if F else 0.0,
            "share_above": float(above.mean()) if F else 0.0, "tolerance_m": float(tolerance),
            "omega": float(omega),
            "flagged": bool(above.any()), "frames": np.nonzero(above)[0].tolist()}


# --------------------------------------------------------------------------- 6 energy
def _energy_inputs(tr, ex):
    if tr.positions is None:
        return "needs 3D positions"
    return dict(pos=tr.positions, vel=_velocity(tr.positions, tr.velocities, tr.fps, tr.cuts),
                masses=tr.masses, visible=tr.visible, contact=tr.contact_mask(pad=1),
                dynamic=tr.kind_mask("prop", "com"), fps=tr.fps, gravity=tr.gravity, cuts=tr.cuts,
                contact_frame=tr.contact_frame, contact_ids=tr.contact_ids,
                contact_onset=tr.contact_onset, prop=tr.kind_mask("prop"))


def mechanical_energy(pos, vel, masses, gravity):
    """E = m (|v|^2 / 2 - g . p)  (translational kinetic + potential, J)."""
    return masses[None, :] * (0.5 * (vel ** 2).sum(-1) - pos @ np.asarray(gravity, float))


@metric("energy", number=6, inputs=_energy_inputs)
def energy(pos, vel, visible, contact, fps, gravity, cuts, masses=None, dynamic=None,
           contact_frame=None, contact_ids=None, contact_onset=None, prop=None,
           drift_threshold=0.02, created_threshold=0.25) -> dict:
    """Energy drift in free flight and energy created at contacts.

    E_i = m (|v_i|^2 / 2 - g . p_i) per object (masses default to 1).
    Drift: for each contact-free, visible run of >= 3 frames inside one shot,
        drift = |E_end - E_start| / (m (|v|_max^2 / 2 + |g| * 0.1 m))
    (the largest kinetic energy of the run, floored by 10 cm of height).
    Created: for each onset contact between props in interval (t_{i-1}, t_i],
        created = (sum E_i - sum E_{i-1}) / (sum E_{i-1}^kin + sum m |g| 0.05 m)
        over the props involved (the 5 cm floor keeps resting contacts finite);
        rotational energy is not tracked, so spin turned into translation shows up
        here (the threshold leaves room for it).
    flagged when drift > drift_threshold. Contacts with created > created_threshold
    are counted (``created_above``) but do not flag: without spin and inertia in
    the tracks, spin turned into translation (a toppling domino, a spinning pin)
    looks the same as created energy.
    """
    pos = np.asarray(pos, float)
    vel = np.asarray(vel, float)
    F, O, _ = pos.shape
    m = np.ones(O) if masses is None else np.where(np.asarray(masses) > 0, masses, 1.0)
    dyn = np.ones(O, bool) if dynamic is None else np.asarray(dynamic, bool)
    g = np.asarray(gravity, float)
    gn = np.linalg.norm(g)
    E = mechanical_energy(np.nan_to_num(pos), np.nan_to_num(vel), m, g)
    cutm = _cut_interval_mask(F, cuts)
    good = visible & ~contact & ~cutm[:, None]   # interval i ends at frame i
    drifts, frames = [], set()
    for o in np.nonzero(dyn)[0]:
        col = good[:, o]
        # runs of consecutive good intervals
        edges = np.diff(np.concatenate([[0], col.astype(int), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        for s, e in zip(starts, ends):
            a, b = max(s - 1, 0), e - 1         # frames a..b joined by good intervals
            if b - a < 2 or not visible[a, o]:
                continue
            scale = m[o] * (0.5 * (vel[a:b + 1, o] ** 2).sum(-1).max() + gn * 0.1)
            d = abs(E[b, o] - E[a, o]) / scale
            drifts.append(d)
            if d > drift_threshold:
                frames.add(int(b))
    created, created_frames = np.zeros(0), set()
    if contact_frame is not None and len(contact_frame):
        pr = dyn if prop is None else np.asarray(prop, bool)
        onset = np.ones(len(contact_frame), bool) if contact_onset is None else np.asarray(contact_onset, bool)
        ids = np.asarray(contact_ids, np.int64).reshape(-1, 2)
        i = np.asarray(contact_frame, np.int64)
        ip = np.maximum(i - 1, 0)
        a, b = ids[:, 0], ids[:, 1]
        ac, bc = np.maximum(a, 0), np.maximum(b, 0)
        pa = (a >= 0) & pr[ac]
        pb = (b >= 0) & pr[bc] & (b != a)
        sel = onset & (i >= 1) & ~cutm[i] & (pa | pb)
        kin = 0.5 * (vel ** 2).sum(-1) * m[None]
        kin0 = np.where(pa, kin[ip, ac], 0) + np.where(pb, kin[ip, bc], 0)
        floor = (np.where(pa, m[ac], 0) + np.where(pb, m[bc], 0)) * gn * 0.05
        dE = np.where(pa, E[i, ac] - E[ip, ac], 0) + np.where(pb, E[i, bc] - E[ip, bc], 0)
        created = (dE / np.maximum(kin0 + floor, 1e-12))[sel]
        created_frames = set(i[sel][created > created_threshold].tolist())
    d_a, c_a = np.asarray(drifts), np.asarray(created)
    return {"drift_max": float(d_a.max()) if len(d_a) else 0.0,
            "drift_median": float(np.median(d_a)) if len(d_a) else 0.0, "segments": int(len(d_a)),
            "created_max": float(c_a.max()) if len(c_a) else 0.0, "contacts_checked": int(len(c_a)),
            "created_above": int((c_a > created_threshold).sum()), "created_frames": sorted(int(f) for f in created_frames)[:100],
            "flagged": bool(frames), "frames": sorted(frames)}


# --------------------------------------------------------------------------- 7 static geometry
def _static_inputs(tr, ex):
    if tr.positions is None:
        return "needs 3D positions"
    if not len(tr.cuts):
        return "no cuts in the shot list"
    st = tr.kind_mask("static")
    if not st.any():
        return "no static objects"
    kw = dict(pos=tr.positions, quat=tr.orientations, static=st, visible=tr.visible, cuts=tr.cuts)
    if tr.camera_K is not None and tr.image_size is not None and tr.shape is not None and tr.sizes is not None:
        kw.update(camera_K=tr.camera_K, camera_w2c=tr.camera_w2c, image_size=tr.image_size,
                  shape=tr.shape, sizes=tr.sizes)
    return kw


@metric("static_geometry", number=7, inputs=_static_inputs)
def static_geometry(pos, static, visible, cuts, quat=None, threshold=0.01, angle_threshold_deg=0.5,
                    camera_K=None, camera_w2c=None, image_size=None, shape=None, sizes=None,
                    depth_size=64) -> dict:
    """Scenery moved across cuts, from 3D tracks of static objects.

    For each cut c and static object s seen at c-1 and c:
        shift = |p_c - p_{c-1}| (m), turn = 2 acos(|q_c . q_{c-1}|) (deg).
    Also over the whole timeline, shift_total = max_i |p_i - p_0| per static.
    With cameras and static shapes: the depth of the static scenery is ray-cast
    (`static_depth`, depth_size px wide) in the last frame before the cut (statics
    as posed there) and the first after it, and scored with
    `depth_reprojection_absrel` (AbsRel on static pixels). Reported, not used
    for the flag: nearest-pixel lookups at grazing ground and occlusion edges give
    clean cuts an AbsRel of 0.02-0.2 at 64 px, and a horizontally moved ground
    plane leaves depth unchanged; the 3D shift is exact. For videos,
    `fundamental_consistency` scores feature matches instead.
    """
    pos = np.asarray(pos, float)
    shifts, turns, frames = [], [], set()
    for c in np.asarray(cuts, np.int64):
        for s in np.nonzero(np.asarray(static) & visible[c] & visible[c - 1])[0]:
            d = float(np.linalg.norm(pos[c, s] - pos[c - 1, s]))
            shifts.append(d)
            t = 0.0
            if quat is not None:
                dot = min(1.0, abs(float(np.dot(quat[c, s], quat[c - 1, s]))))
                t = float(np.degrees(2 * np.arccos(dot)))
            turns.append(t)
            if d > threshold or t > angle_threshold_deg:
                frames.add(int(c))
    st = np.nonzero(static)[0]
    with np.errstate(invalid="ignore"):
        norms = np.linalg.norm(pos[:, st] - pos[:1, st], axis=-1) if len(st) else np.zeros(1)
    total = float(np.nanmax(norms)) if np.isfinite(norms).any() else 0.0
    out = {"max_shift_m": float(max(shifts, default=0.0)), "max_turn_deg": float(max(turns, default=0.0)),
           "max_total_shift_m": total, "checked": len(shifts)}
    if camera_K is not None and shape is not None and len(st):
        W, H = int(image_size[0]), int(image_size[1])
        w = int(depth_size)
        h = max(2, int(round(w * H / W)))
        S = np.diag([(w - 1) / max(W - 1, 1), (h - 1) / max(H - 1, 1), 1.0])
        rels = []
        for c in np.asarray(cuts, np.int64):
            q = None if quat is None else quat
            Ka, Kb = S @ camera_K[c - 1], S @ camera_K[c]
            da = static_depth(Ka, camera_w2c[c - 1], (w, h), pos[c - 1, st], None if q is None else q[c - 1, st],
                              [shape[i] for i in st], np.asarray(sizes)[st])
            db = static_depth(Kb, camera_w2c[c], (w, h), pos[c, st], None if q is None else q[c, st],
                              [shape[i] for i in st], np.asarray(sizes)[st])
            r = depth_reprojection_absrel(da, db, Ka, Kb, camera_w2c[c - 1], camera_w2c[c])
            if r["pixels"]:
                rels.append((r["absrel"], r["median_rel"], r["share_above"]))
        if rels:
            a = np.asarray(rels)
            out.update(depth_absrel_max=float(a[:, 0].max()), depth_median_rel_max=float(a[:, 1].max()),
                       depth_share_above_max=float(a[:, 2].max()))
        out["depth_cuts_checked"] = len(rels)
    out.update(flagged=bool(frames), frames=sorted(frames))
    return out


def static_depth(K, w2c, size, pos, quat, shapes, sizes) -> np.ndarray:
    """(h, w) depth (m along the camera z axis; 0 = no hit) of static objects by
    ray casting: boxes (slab test in each box frame; cylinders and capsules by
    their bounding boxes) and spheres; pixel centres at integer coordinates."""
    w, h = size
    v, u = np.mgrid[0:h, 0:w]
    rays_c = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(h * w)])   # z = 1 in camera
    c2w = np.linalg.inv(w2c)
    d = (c2w[:3, :3] @ rays_c).T                                                       # (N, 3), camera z = 1
    o = c2w[:3, 3]
    best = np.full(h * w, np.inf)
    Rs = _quat_to_mat(np.asarray(quat, float)) if quat is not None else np.broadcast_to(np.eye(3), (len(pos), 3, 3))
    for k, (kind, sz) in enumerate(zip(shapes, sizes)):
        c = np.asarray(pos[k], float)
        if not np.isfinite(c).all():
            continue
        if kind == "sphere":
            oc = o - c
            b = d @ oc
            a = (d * d).sum(1)
            disc = b * b - a * ((oc @ oc) - sz[0] ** 2)
            t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
            t = np.where(t > 0, t, np.inf)
        elif kind in ("box", "cylinder", "capsule"):
            half = np.array([sz[0], sz[1], sz[2]]) if kind == "box" else np.array([sz[0], sz[0], sz[2]])
            R = Rs[k]
            ol = R.T @ (o - c)
            dl = d @ R
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-half - ol) / dl
                t2 = (half - ol) / dl
            tmin = np.nanmax(np.minimum(t1, t2), 1)
            tmax = np.nanmin(np.maximum(t1, t2), 1)
            t = np.where((tmax >= tmin) & (tmax > 0), np.where(tmin > 0, tmin, np.inf), np.inf)
        else:
            continue
        best = np.minimum(best, t)
    return np.where(np.isfinite(best), best, 0.0).reshape(h, w)


def depth_reprojection_absrel(depth_a, depth_b, K_a, K_b, w2c_a, w2c_b, mask_a=None,
                              rel_threshold=0.05) -> dict:
    """Depth reprojection across a cut, on static pixels.

    Back-project pixel (u, v) of frame a with depth d_a: X = c2w_a (d_a K_a^-1 [u v 1]);
    project into frame b: (u', v', z') = K_b w2c_b X; compare with the depth of b
    there: AbsRel = mean |z' - d_b(u', v')| / d_b(u', v') over pixels landing
    inside b on a surface, plus the share of those with relative error >
    rel_threshold (robust to the few occlusion pixels of a clean pair).
    """
    depth_a = np.asarray(depth_a, float)
    depth_b = np.asarray(depth_b, float)
    H, W = depth_a.shape
    v, u = np.mgrid[0:H, 0:W]
    m = depth_a > 0 if mask_a is None else (np.asarray(mask_a, bool) & (depth_a > 0))
    d = depth_a[m]
    pix = np.stack([u[m], v[m], np.ones_like(d)], 0)      # pixel centres at integer coordinates
    Xc = np.linalg.inv(K_a) @ pix * d
    c2w = np.linalg.inv(w2c_a)
    Xw = c2w[:3, :3] @ Xc + c2w[:3, 3:4]
    Xb = w2c_b[:3, :3] @ Xw + w2c_b[:3, 3:4]
    z = Xb[2]
    proj = K_b @ Xb
    with np.errstate(divide="ignore", invalid="ignore"):
        ub, vb = proj[0] / z, proj[1] / z
    ui, vi = np.round(ub).astype(np.int64), np.round(vb).astype(np.int64)
    Hb, Wb = depth_b.shape
    ok = (z > 1e-6) & (ui >= 0) & (ui < Wb) & (vi >= 0) & (vi < Hb)
    db = np.zeros_like(z)
    db[ok] = depth_b[vi[ok], ui[ok]]
    ok &= db > 0
    if not ok.any():
        return {"absrel": float("nan"), "share_above": float("nan"), "pixels": 0}
    rel = np.abs(z[ok] - db[ok]) / db[ok]
    return {"absrel": float(rel.mean()), "median_rel": float(np.median(rel)),
            "share_above": float((rel > rel_threshold).mean()), "pixels": int(ok.sum())}


def relative_fundamental(K_a, K_b, w2c_a, w2c_b) -> np.ndarray:
    """F with x_b^T F x_a = 0 from known cameras: F = K_b^-T [t]_x R K_a^-1,
    R = R_b R_a^T, t = t_b - R t_a."""
    R = w2c_b[:3, :3] @ w2c_a[:3, :3].T
    t = w2c_b[:3, 3] - R @ w2c_a[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(K_b).T @ tx @ R @ np.linalg.inv(K_a)


def sampson_error(Fm: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Sampson distance (px^2) of matches xa <-> xb (N, 2) under F:
    (x_b^T F x_a)^2 / ((F x_a)_1^2 + (F x_a)_2^2 + (F^T x_b)_1^2 + (F^T x_b)_2^2)."""
    ha = np.concatenate([xa, np.ones((len(xa), 1))], 1)
    hb = np.concatenate([xb, np.ones((len(xb), 1))], 1)
    Fx = ha @ Fm.T
    Ftx = hb @ Fm
    num = (hb * Fx).sum(1) ** 2
    den = Fx[:, 0] ** 2 + Fx[:, 1] ** 2 + Ftx[:, 0] ** 2 + Ftx[:, 1] ** 2
    return num / np.maximum(den, 1e-12)


def orb_features(img: np.ndarray, mask=None, max_features=500):
    """ORB keypoints (N, 2) and descriptors of one RGB/grey image (cv2)."""
    import cv2
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    orb = cv2.ORB_create(nfeatures=max_features, fastThreshold=5, edgeThreshold=15, patchSize=15)
    m = None if mask is None else np.asarray(mask, np.uint8) * 255
    kp, des = orb.detectAndCompute(g, m)
    pts = np.array([k.pt for k in kp], float).reshape(-1, 2)
    return pts, des


def match_orb(fa, fb):
    """Cross-checked Hamming matches between two `orb_features` results: (xa, xb)."""
    import cv2
    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(pa) < 2 or len(pb) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    xa = pa[[m.queryIdx for m in matches]].reshape(-1, 2)
    xb = pb[[m.trainIdx for m in matches]].reshape(-1, 2)
    return xa, xb


def match_features(img_a: np.ndarray, img_b: np.ndarray, mask_a=None, mask_b=None, max_features=500):
    """ORB keypoint matches (cross-checked, Hamming) between two RGB/grey images:
    returns (xa, xb), each (N, 2) float pixel coordinates."""
    return match_orb(orb_features(img_a, mask_a, max_features), orb_features(img_b, mask_b, max_features))


def fundamental_consistency(xa, xb, K_a, K_b, w2c_a, w2c_b, inlier_px=2.0) -> dict:
    """Static-scene matches scored against the fundamental matrix of the known
    cameras: median Sampson error (px) and inlier rate (sqrt(Sampson) < inlier_px)."""
    if len(xa) < 8:
        return {"sampson_median_px": float("nan"), "inlier_rate": float("nan"), "matches": int(len(xa))}
    e = np.sqrt(sampson_error(relative_fundamental(K_a, K_b, w2c_a, w2c_b), xa, xb))
    return {"sampson_median_px": float(np.median(e)), "inlier_rate": float((e < inlier_px).mean()),
            "matches": int(len(xa))}


# --------------------------------------------------------------------------- 8 persistence
def _persistence_inputs(tr, ex):
    if not len(tr.cuts):
        return "no cuts in the shot list"
    kw = dict(visible=tr.visible, cuts=tr.cuts, fps=tr.fps, dynamic=~tr.kind_mask("static"),
              unactuated=tr.kind_mask("prop", "com"),
              pos=tr.positions if tr.positions is not None else tr.pixels,
              contact=tr.contact_mask(pad=1), sizes=tr.sizes, shape=tr.shape)
    if tr.pixel_size is not None and tr.positions is not None and tr.camera_K is not None \
            and tr.sizes is not None:
        kw.update(pixel_size=tr.pixel_size, camera_K=tr.camera_K, camera_w2c=tr.camera_w2c)
    if tr.camera_K is not None and tr.positions is not None and tr.image_size is not None:
        kw.update(camera_K=tr.camera_K, camera_w2c=tr.camera_w2c, image_size=tr.image_size)
    return kw


def expected_in_view(pos, K, w2c, image_size, margin=0.0):
    """(N,) bool: world points pos (N, 3) project inside the image in front of the camera."""
    X = pos @ w2c[:3, :3].T + w2c[:3, 3]
    z = X[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (X @ K.T)[:, :2] / z[:, None]
    W, H = image_size
    return (z > 0) & (uv[:, 0] >= -margin) & (uv[:, 0] < W + margin) & (uv[:, 1] >= -margin) & (uv[:, 1] < H + margin)


@metric("persistence", number=8, inputs=_persistence_inputs)
def persistence(visible, cuts, fps, pos=None, dynamic=None, contact=None, sizes=None, shape=None,
                pixel_size=None, camera_K=None, camera_w2c=None, image_size=None,
                frozen_speed=0.2, frozen_eps=1e-4, window=3, size_threshold=0.25,
                moved=0.1, revert_eps=0.01, unactuated=None) -> dict:
    """Object persistence across cuts.

    At each cut c (window = frames checked after the cut):
      vanished: objects seen at c-1 and unseen in all of c .. c+window-1 (when the
        cameras are known, only objects whose last 3D position projects into the new
        view count: leaving the frame is not vanishing);
      duplicated: visible pairs after the cut with the same shape and sizes whose
        centres are closer than a quarter of the object size (two copies of one);
      frozen: dynamic objects moving faster than frozen_speed before the cut and
        displaced less than frozen_eps over the window after it, with no contact;
      reverted: props and centres of mass (not motor-driven links, which return
        to poses) that had moved more than ``moved`` from their first-frame
        position before the cut, jump by more than moved / 2 across it and land
        within revert_eps of that first position (the world restarted from its
        initial layout: what a segment-stitching generator does);
    apparent-size error (video tracks with pixel_size): median over visible
    frames of |s_px - f * 2 r / z| / (f * 2 r / z), r = mean size, z = depth.
    flagged when anything vanished, duplicated, froze or reverted, or size error > size_threshold.
    """
    visible = np.asarray(visible, bool)
    F, O = visible.shape
    dyn = np.ones(O, bool) if dynamic is None else np.asarray(dynamic, bool)
    vanished, duplicated, frozen, reverted, frames = 0, 0, 0, 0, set()
    details = []
    P = None if pos is None else np.asarray(pos, float)
    for c in np.asarray(cuts, np.int64):
        after = visible[c:c + window].any(0)
        gone = visible[c - 1] & ~after & dyn
        if camera_K is not None and P is not None and P.shape[-1] == 3 and image_size is not None and gone.any():
            idx = np.nonzero(gone)[0]
            inside = expected_in_view(np.nan_to_num(P[c - 1, idx]), camera_K[c], camera_w2c[c], image_size, margin=2.0)
            gone[idx[~inside]] = False
        for o in np.nonzero(gone)[0]:
            vanished += 1
            frames.add(int(c))
            details.append(("vanished", int(c), int(o)))
        if P is not None and sizes is not None:
            vis = np.nonzero(visible[c] & dyn)[0]
            if len(vis) > 1:
                S = np.asarray(sizes, float)[vis]
                D = np.linalg.norm(P[c, vis][:, None] - P[c, vis][None], axis=-1)
                same = np.all(np.abs(S[:, None] - S[None]) < 1e-6, -1)
                if shape is not None:
                    sh = np.asarray(shape)[vis]
                    same &= sh[:, None] == sh[None]
                r = np.maximum(S.mean(1), 1e-3)
                close = (D < 0.25 * r[:, None]) & same & np.triu(np.ones_like(same), 1)
                for i, j in zip(*np.nonzero(close)):
                    duplicated += 1
                    frames.add(int(c))
                    details.append(("duplicated", int(c), int(vis[j])))
        if P is not None and P.shape[-1] == 3:
            seen0 = np.argmax(visible, axis=0)                       # first frame each object is seen
            p0 = P[seen0, np.arange(O)]
            un = dyn if unactuated is None else np.asarray(unactuated, bool)
            ok = un & visible[c] & visible[c - 1] & visible.any(0)
            away = np.linalg.norm(np.nan_to_num(P[c - 1] - p0), axis=-1) > moved
            away &= np.linalg.norm(np.nan_to_num(P[c] - P[c - 1]), axis=-1) > moved / 2
            back = np.linalg.norm(np.nan_to_num(P[c] - p0, nan=np.inf), axis=-1) < revert_eps
            for o in np.nonzero(ok & away & back)[0]:
                reverted += 1
                frames.add(int(c))
                details.append(("reverted", int(c), int(o)))
        if P is not None and c >= 2 and c + window <= F:
            for o in np.nonzero(dyn & visible[c - 2] & visible[c - 1] & visible[c:c + window].all(0))[0]:
                if contact is not None and contact[c - 1:c + window, o].any():
                    continue
                before = np.linalg.norm(P[c - 1, o] - P[c - 2, o]) * fps
                moved = np.linalg.norm(P[c + window - 1, o] - P[c, o])
                if before > frozen_speed and moved < frozen_eps:
                    frozen += 1
                    frames.add(int(c))
                    details.append(("frozen", int(c), int(o)))
    size_err = float("nan")
    if pixel_size is not None and camera_K is not None and P is not None and sizes is not None:
        X = np.einsum("fij,foj->foi", camera_w2c[:, :3, :3], np.nan_to_num(P)) + camera_w2c[:, None, :3, 3]
        z = X[..., 2]
        f = camera_K[:, 0, 0][:, None]
        r = np.asarray(sizes, float).mean(1)[None]
        expect = f * 2 * r / np.maximum(z, 1e-6)
        ok = visible & (z > 0) & (r > 0) & np.isfinite(pixel_size) & dyn[None]
        if ok.any():
            size_err = float(np.median(np.abs(pixel_size[ok] - expect[ok]) / expect[ok]))
    flagged = bool(frames) or bool(np.isfinite(size_err) and size_err > size_threshold)
    return {"vanished": vanished, "duplicated": duplicated, "frozen": frozen, "reverted": reverted,
            "apparent_size_error": size_err, "cuts": int(len(cuts)), "flagged": flagged,
            "frames": sorted(frames), "events": details[:50]}


# --------------------------------------------------------------------------- 9 audio
def _audio_inputs(tr, ex):
    if tr.audio is None and "onsets" not in ex:
        return "no audio"
    ct = ex.get("sound_times")
    if ct is None:
        ct = sounding_contact_times(tr)
    if not len(ct):
        return "no sounding contacts"
    onsets = ex.get("onsets")
    if onsets is None:
        onsets = audio_onsets(tr.audio, tr.sample_rate)
    kw = dict(onset_times=onsets, contact_times=ct, fps=tr.fps)
    if tr.audio is not None:
        et, ew = sound_events(tr)
        if len(et):
            kw.update(envelope=onset_envelope(tr.audio, tr.sample_rate), event_times=et, event_weights=ew)
    return kw


def sound_events(tr) -> tuple[np.ndarray, np.ndarray]:
    """(times, weights) of every impact sound: audio events (slides excluded) or
    onset contacts; weight sqrt(impulse) (the synthesiser's amplitude law)."""
    ev = [e for e in (tr.meta or {}).get("audio_events") or [] if e.get("kind", "impact") != "slide"]
    if ev:
        return (np.asarray([float(e["time"]) for e in ev]),
                np.sqrt(np.maximum([float(e.get("impulse", 1.0)) for e in ev], 0.0)))
    if not len(tr.contact_time) or tr.contact_onset is None:
        return np.zeros(0), np.zeros(0)
    imp = np.ones(len(tr.contact_time)) if tr.contact_impulse is None else np.nan_to_num(tr.contact_impulse[:, 0])
    keep = tr.contact_onset & (imp > 0)
    return np.asarray(tr.contact_time)[keep], np.sqrt(imp[keep])


def onset_envelope(audio: np.ndarray, sample_rate: int, hop_s=0.001, win_s=0.008):
    """(t (N,), flux (N,)): spectral-flux onset strength of the mono mix,
    flux_n = sum_f max(0, log(1 + 1000 |Z_{f,n}|) - log(1 + 1000 |Z_{f,n-1}|))."""
    from scipy.signal import stft
    x = np.asarray(audio, np.float64)
    if x.ndim == 2:
        x = x.mean(0)
    sr = int(sample_rate)
    nper = max(16, int(round(win_s * sr)))
    hop = max(1, int(round(hop_s * sr)))
    if x.size < 2 * nper:
        return np.zeros(0), np.zeros(0)
    _, t, Z = stft(x, fs=sr, nperseg=nper, noverlap=nper - hop, boundary=None, padded=False)
    L = np.log1p(1e3 * np.abs(Z))
    return t[1:], np.maximum(0.0, np.diff(L, axis=1)).sum(0)


def sounding_contact_times(tr, min_impulse=0.05, loud=0.01, merge=0.005, isolation=0.03) -> np.ndarray:
    """Times of clearly audible, unambiguous impacts: the anchors for alignment.

    Events: the audio events recorded with the tracks (``meta['audio_events']``,
    slides excluded), else onset contacts with a normal impulse above
    ``min_impulse``. Events closer than ``merge`` s are one sound. Kept: sounds
    whose impulse is at least ``loud`` x the loudest (amplitude ~ sqrt(impulse):
    within 20 dB) and with no other sound within ``isolation`` s on either side
    (dense rattles cannot be attributed to one onset); all sounds if none is isolated.
    """
    ev = [e for e in (tr.meta or {}).get("audio_events") or [] if e.get("kind", "impact") != "slide"]
    if ev:
        t = np.asarray([float(e["time"]) for e in ev])
        imp = np.asarray([float(e.get("impulse", 1.0)) for e in ev])
    else:
        if not len(tr.contact_time):
            return np.zeros(0)
        keep = np.ones(len(tr.contact_time), bool)
        if tr.contact_onset is not None:
            keep &= tr.contact_onset
        imp = np.ones(len(tr.contact_time))
        if tr.contact_impulse is not None:
            imp = np.nan_to_num(tr.contact_impulse[:, 0])
            keep &= imp > min_impulse
        t, imp = np.asarray(tr.contact_time)[keep], imp[keep]
    if not len(t):
        return np.zeros(0)
    order = np.argsort(t, kind="stable")
    t, imp = t[order], imp[order]
    # merge near-simultaneous events into sounds (first time, largest impulse)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(t) > merge]))
    st, si = t[starts], np.maximum.reduceat(imp, starts)
    gap_before = np.concatenate([[np.inf], np.diff(st)])
    gap_after = np.concatenate([np.diff(st), [np.inf]])
    keep = (si >= loud * si.max()) & (gap_before > isolation) & (gap_after > isolation)
    return st[keep] if keep.any() else st


def merge_times(t: np.ndarray, gap: float) -> np.ndarray:
    """Keep the first of every group of times closer than ``gap`` to the previous kept one."""
    out = []
    for x in np.sort(np.asarray(t, float)):
        if not out or x - out[-1] > gap:
            out.append(x)
    return np.asarray(out)


_ONSET_MEMO: dict = {}


def audio_onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times (s): the bridge's detector (`bridge.audio.onsets`) when present,
    else `detect_onsets`. Memoised on the audio's content (the corruption table
    scores the same audio many times)."""
    import hashlib
    a = np.ascontiguousarray(audio)
    key = (hashlib.blake2b(a.view(np.uint8), digest_size=16).hexdigest(), a.shape, int(sample_rate))
    if key not in _ONSET_MEMO:
        try:
            from bridge.audio import onsets
        except ImportError:
            onsets = detect_onsets
        if len(_ONSET_MEMO) > 256:
            _ONSET_MEMO.clear()
        _ONSET_MEMO[key] = np.asarray(onsets(a, sample_rate), float)
    return _ONSET_MEMO[key]


def detect_onsets(audio: np.ndarray, sample_rate: int, hop_s=0.002, win_s=0.008, delta=3.0,
                  min_gap=0.03) -> np.ndarray:
    """Audio onset times (s): spectral flux peaks, refined on the waveform.

    Log-magnitude STFT (scipy.signal.stft, window win_s, hop hop_s) of the mono mix;
    flux_n = sum_f max(0, L_{f,n} - L_{f,n-1}); peaks above median + delta * MAD of
    a 0.5 s moving window (and above 1% of the largest flux) are onsets; each is
    refined to the first sample, within one window before the peak, whose
    0.5 ms-smoothed envelope exceeds 20% of the local envelope maximum.
    """
    from scipy.ndimage import maximum_filter1d, median_filter, uniform_filter1d
    from scipy.signal import find_peaks, stft
    x = np.asarray(audio, np.float64)
    if x.ndim == 2:
        x = x.mean(0)
    sr = int(sample_rate)
    if x.size < 16:
        return np.zeros(0)
    nper = max(16, int(round(win_s * sr)))
    hop = max(1, int(round(hop_s * sr)))
    _, t, Z = stft(x, fs=sr, nperseg=nper, noverlap=nper - hop, boundary=None, padded=False)
    L = np.log1p(1e3 * np.abs(Z))
    flux = np.maximum(0.0, np.diff(L, axis=1)).sum(0)
    tf = t[1:]
    med = median_filter(flux, size=max(3, int(0.5 / hop_s)), mode="nearest")
    mad = median_filter(np.abs(flux - med), size=max(3, int(0.5 / hop_s)), mode="nearest")
    thr = np.maximum(med + delta * 1.4826 * mad, 0.01 * flux.max() if flux.size else 0.0)
    peaks, _ = find_peaks(flux, height=thr, distance=max(1, int(min_gap / hop_s)))
    env = uniform_filter1d(np.abs(x), max(1, int(0.0005 * sr)))
    out = []
    for p in peaks:
        c = int(round(tf[p] * sr))
        a = max(0, c - nper)
        b = min(len(x), c + nper // 2)
        seg = env[a:b]
        if not seg.size:
            continue
        above = np.nonzero(seg >= 0.2 * seg.max())[0]
        out.append((a + above[0]) / sr)
    return merge_times(np.asarray(out), min_gap)


@metric("audio_alignment", number=9, inputs=_audio_inputs)
def audio_alignment(onset_times, contact_times, fps, envelope=None, event_times=None,
                    event_weights=None, max_offset=0.2, tolerance=None, match=0.01,
                    offset_threshold_ms=20.0) -> dict:
    """Contact-to-audio alignment.

    offset = t_contact - t_onset (ms; positive = sound early, the ITU-R BT.1359
    sign). Common lag L: with the audio's onset envelope (t, flux) and the impact
    events (t_k, w_k = sqrt(impulse_k)),
        L = argmax_{|L| <= max_offset} sum_k w_k max_{|u| <= 2 ms} flux(t_k - L + u)
    (cross-correlation of the event train with the onset strength, 0.5 ms steps;
    robust to dense rattles); without an envelope L is the mode of pairwise
    offsets. Each anchor contact (loud, isolated: `sounding_contact_times`) is
    paired with the detected onset nearest to t_c - L (within ``match``); the
    median of those offsets is reported (L itself when none pairs), with the
    share of anchors whose nearest onset lies in the BT.1359 window [-125, +45] ms,
    and onset precision / recall / F1 at zero lag (one-to-one within
    ``tolerance``, default max(1/fps, 50 ms), scipy linear_sum_assignment).
    flagged when |median offset| > offset_threshold_ms.
    """
    from scipy.optimize import linear_sum_assignment
    on = np.asarray(onset_times, float)
    ct = np.asarray(contact_times, float)
    tol = max(1.0 / fps, 0.05) if tolerance is None else tolerance
    lags = np.arange(-max_offset, max_offset + 1e-9, 0.0005)
    lag = float("nan")
    if envelope is not None and event_times is not None and len(envelope[0]) > 1 and len(event_times):
        te, flux = np.asarray(envelope[0]), np.asarray(envelope[1])
        from scipy.ndimage import maximum_filter1d
        hop = float(te[1] - te[0])
        fl = maximum_filter1d(flux, max(1, int(round(0.004 / hop)) + 1), mode="constant")
        et = np.asarray(event_times, float)
        w = np.ones(len(et)) if event_weights is None else np.asarray(event_weights, float)
        idx = np.rint((et[:, None] - lags[None, :] - te[0]) / hop).astype(np.int64)   # (K, lags)
        ok = (idx >= 0) & (idx < len(fl))
        score = (np.where(ok, fl[np.clip(idx, 0, len(fl) - 1)], 0.0) * w[:, None]).sum(0)
        best = np.flatnonzero(score >= score.max() - 1e-12)
        lag = float(lags[best[np.argmin(np.abs(lags[best]))]])
    elif len(on) and len(ct):
        D = (ct[:, None] - on[None, :]).ravel()
        hist = np.array([(np.abs(D - L) <= 0.002).sum() for L in lags])
        best = np.flatnonzero(hist == hist.max())
        lag = float(lags[best[np.argmin(np.abs(lags[best]))]])
    if not len(ct) or not np.isfinite(lag):
        return {"median_offset_ms": float("nan"), "lag_ms": float("nan"), "share_in_bt1359": 0.0,
                "precision": 0.0, "recall": 0.0, "f1": 0.0, "onsets": int(len(on)),
                "contacts": int(len(ct)), "flagged": True, "frames": []}
    off = np.zeros(0)
    inside, p, r, f1 = 0.0, 0.0, 0.0, 0.0
    if len(on):
        D = ct[:, None] - on[None, :]                                  # (K, N) s
        err = np.abs(D - lag)
        j = err.argmin(1)
        ok = err[np.arange(len(ct)), j] <= match
        off = 1000.0 * D[np.arange(len(ct)), j][ok]
        nearest = 1000.0 * D[np.arange(len(ct)), np.abs(D).argmin(1)]
        inside = float(((nearest >= BT1359[0]) & (nearest <= BT1359[1])).mean())
        cost = np.where(np.abs(D) <= tol, np.abs(D), 1e6)
        ri, ci = linear_sum_assignment(cost)
        hits = int((cost[ri, ci] < 1e6).sum())
        p, r = hits / len(on), hits / len(ct)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
    med = float(np.median(off)) if len(off) else 1000.0 * lag
    flagged = abs(med) > offset_threshold_ms
    return {"median_offset_ms": med, "lag_ms": 1000.0 * lag, "matched": int(len(off)),
            "share_in_bt1359": inside, "precision": float(p), "recall": float(r), "f1": float(f1),
            "onsets": int(len(on)), "contacts": int(len(ct)), "flagged": bool(flagged),
            "frames": sorted({int(round(t * fps)) for t in ct}) if flagged else []}


# --------------------------------------------------------------------------- 10 camera path
def _camera_inputs(tr, ex):
    if "frames" not in ex:
        return "needs a video"
    if tr.camera_K is None:
        return "needs the conditioning cameras"
    return dict(frames=ex["frames"], K=ex.get("K", tr.camera_K), w2c=tr.camera_w2c, cuts=tr.cuts,
                step=ex.get("pose_step", 4), static_mask=ex.get("static_mask"))


def relative_pose_error(xa, xb, K, w2c_a, w2c_b) -> dict:
    """Essential matrix from matches (cv2.findEssentialMat, RANSAC) and
    cv2.recoverPose vs the known relative pose R = R_b R_a^T, t = t_b - R t_a:
    rotation error = angle of R_est^T R (deg); translation-direction error =
    angle between t_est and t (deg; NaN when |t| < 1 mm: a pure rotation)."""
    import cv2
    if len(xa) < 8:
        return {"rot_err_deg": float("nan"), "trans_err_deg": float("nan"), "inliers": 0}
    E, mask = cv2.findEssentialMat(xa, xb, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    if E is None or E.shape != (3, 3):
        return {"rot_err_deg": float("nan"), "trans_err_deg": float("nan"), "inliers": 0}
    n, R_est, t_est, _ = cv2.recoverPose(E, xa, xb, K, mask=mask)
    R = w2c_b[:3, :3] @ w2c_a[:3, :3].T
    t = w2c_b[:3, 3] - R @ w2c_a[:3, 3]
    c = np.clip((np.trace(R_est.T @ R) - 1) / 2, -1, 1)
    rot = float(np.degrees(np.arccos(c)))
    tn = np.linalg.norm(t)
    if tn < 1e-3:
        terr = float("nan")
    else:
        ct = np.clip(float(t_est.ravel() @ t) / (np.linalg.norm(t_est) * tn), -1, 1)
        terr = float(np.degrees(np.arccos(ct)))
    return {"rot_err_deg": rot, "trans_err_deg": terr, "inliers": int(n)}


@metric("camera_path", number=10, inputs=_camera_inputs)
def camera_path(frames, K, w2c, cuts, step=4, static_mask=None, min_baseline=0.02,
                rot_threshold_deg=2.0, trans_threshold_deg=20.0) -> dict:
    """Camera-path agreement of a video with its conditioning cameras.

    Frame pairs (i, i + step) inside one shot: ORB matches -> essential matrix ->
    relative pose (R_est, t_est) (`relative_pose_error`), against the known
    R = R_{i+step} R_i^T, t = t_{i+step} - R t_i:
        rot_err = acos((trace(R_est^T R) - 1) / 2),  trans_err = angle(t_est, t);
    reports their medians (deg). Matches are taken on static pixels when
    ``static_mask`` (F, H, W) is given; pairs whose known camera baseline is
    below ``min_baseline`` m are skipped (the essential matrix needs parallax).
    flagged when the median rotation error exceeds rot_threshold_deg or the
    translation error trans_threshold_deg.
    """
    F = len(frames)
    shot = np.zeros(F, np.int64)
    for c in cuts:
        shot[c:] += 1
    rots, trans, bad = [], [], set()
    feats: dict = {}

    def feat(k):
        if k not in feats:
            feats[k] = orb_features(frames[k], None if static_mask is None else static_mask[k])
        return feats[k]
    for i in range(0, F - step, step):
        j = i + step
        if shot[i] != shot[j]:
            continue
        Rr = w2c[j][:3, :3] @ w2c[i][:3, :3].T
        if np.linalg.norm(w2c[j][:3, 3] - Rr @ w2c[i][:3, 3]) < min_baseline:
            continue
        xa, xb = match_orb(feat(i), feat(j))
        r = relative_pose_error(xa, xb, K[i], w2c[i], w2c[j])
        if np.isfinite(r["rot_err_deg"]):
            rots.append(r["rot_err_deg"])
            if r["rot_err_deg"] > rot_threshold_deg:
                bad.add(i)
        if np.isfinite(r["trans_err_deg"]):
            trans.append(r["trans_err_deg"])
    rm = float(np.median(rots)) if rots else float("nan")
    tm = float(np.median(trans)) if trans else float("nan")
    return {"rot_err_median_deg": rm, "trans_err_median_deg": tm, "pairs": len(rots),
            "flagged": bool((np.isfinite(rm) and rm > rot_threshold_deg) or
                            (np.isfinite(tm) and tm > trans_threshold_deg)), "frames": sorted(bad)}


# --------------------------------------------------------------------------- 11 physical variance
def _variance_inputs(tr, ex):
    if "reference" not in ex or "spread" not in ex:
        return "needs a reference trajectory and re-simulated spread (--variance K)"
    if tr.positions is None:
        return "needs 3D positions"
    return dict(pos=tr.positions, ref_pos=ex["reference"], spread_pos=ex["spread"],
                mask=tr.kind_mask("prop", "com")[None, :] & tr.visible)


@metric("physical_variance", number=11, inputs=_variance_inputs)
def physical_variance(pos, ref_pos, spread_pos, mask=None, floor=1e-4) -> dict:
    """Error normalised by physical variance (Physics-IQ style).

    error = RMS over (frame, object) entries in ``mask`` of |p - p_ref|; spread =
    mean over re-simulations k of the RMS of |p^(k) - p_ref| (tiny perturbations
    of the initial state); ratio = error / max(spread, floor); flagged when > 3. Ratio <= 1: the input deviates
    from the reference no more than physics itself does under perturbation.
    """
    pos, ref = np.asarray(pos, float), np.asarray(ref_pos, float)
    F = min(len(pos), len(ref))
    pos, ref = pos[:F], ref[:F]
    m = np.ones(pos.shape[:2], bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), pos.shape[:2])[:F]
    m = m & np.isfinite(pos).all(-1) & np.isfinite(ref).all(-1)
    d2 = np.where(m, np.sum((np.nan_to_num(pos) - np.nan_to_num(ref)) ** 2, -1), 0.0)
    err = float(np.sqrt(d2.sum() / max(m.sum(), 1)))
    sp = [np.sqrt(np.where(m, np.sum((np.asarray(s, float)[:F] - np.nan_to_num(ref)) ** 2, -1), 0.0).sum()
                  / max(m.sum(), 1)) for s in spread_pos]
    spread = float(np.mean(sp)) if sp else float("nan")
    ratio = err / max(spread, floor)
    per_frame = np.sqrt(d2.sum(1) / np.maximum(m.sum(1), 1))
    return {"error_m": err, "spread_m": spread, "ratio": float(ratio), "flagged": bool(ratio > 3.0),
            "frames": np.nonzero(per_frame > 3 * max(spread, floor))[0][:200].tolist()}


# --------------------------------------------------------------------------- 12 cut timing
def _cut_inputs(tr, ex):
    if "frames" not in ex:
        return "needs a video"
    return dict(frames=ex["frames"], true_cuts=tr.cuts)


def frame_differences(frames: np.ndarray, size: int = 64) -> np.ndarray:
    """(F,) mean absolute difference (0-255) between consecutive frames,
    downsampled to size x size grey (entry 0 is 0)."""
    import cv2
    small = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f,
                                 (size, size), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    d = np.zeros(len(frames))
    d[1:] = np.abs(np.diff(small, axis=0)).mean((1, 2))
    return d


def detect_cuts(diffs: np.ndarray, ratio=3.0, min_diff=8.0, radius=6) -> np.ndarray:
    """Cut frames: differences above min_diff and ratio x the median of the
    surrounding (2 radius + 1)-frame window, local maxima only."""
    from scipy.ndimage import maximum_filter1d, median_filter
    med = median_filter(diffs, size=2 * radius + 1, mode="nearest")
    peak = diffs >= maximum_filter1d(diffs, size=3, mode="nearest")
    return np.nonzero((diffs > min_diff) & (diffs > ratio * np.maximum(med, 1.0)) & peak)[0]


@metric("cut_timing", number=12, inputs=_cut_inputs)
def cut_timing(frames, true_cuts, tolerance=1) -> dict:
    """Detected cuts against the shot list, F1 within ``tolerance`` frames.

    d_i = mean |grey_i - grey_{i-1}| on 64 x 64 downsampled frames; a cut is a
    local maximum with d_i > 8 and d_i > 3 median(d_{i-6..i+6}) (`detect_cuts`);
    detected and true cuts are matched one-to-one within ``tolerance`` frames:
    P = hits / detected, R = hits / true, F1 = 2 P R / (P + R). flagged when F1 < 1.
    """
    det = detect_cuts(frame_differences(np.asarray(frames)))
    return cut_f1(det, true_cuts, tolerance)


def cut_f1(detected, true_cuts, tolerance=1) -> dict:
    """Precision / recall / F1 of detected vs true cut frames within ``tolerance``."""
    from scipy.optimize import linear_sum_assignment
    det, tru = np.asarray(detected, np.int64), np.asarray(true_cuts, np.int64)
    hits = 0
    if len(det) and len(tru):
        D = np.abs(tru[:, None] - det[None])
        ri, ci = linear_sum_assignment(np.where(D <= tolerance, D, 10 ** 6))
        hits = int((D[ri, ci] <= tolerance).sum())
    p = hits / len(det) if len(det) else (1.0 if not len(tru) else 0.0)
    r = hits / len(tru) if len(tru) else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    missed = sorted(set(tru.tolist()) - set(det.tolist()))
    extra = sorted(set(det.tolist()) - set(tru.tolist()))
    return {"precision": float(p), "recall": float(r), "f1": float(f1), "detected": det.tolist(),
            "flagged": bool(f1 < 1.0), "frames": sorted(set(missed + extra))}
