"""Camera rigs of `scenes.core` evaluated per frame into intrinsics and
world-to-camera poses (OpenCV: x right, y down, z forward), plus the active shot.

Rig conventions (the description leaves these to the evaluator):
    * a ``target`` naming a character follows its centre of mass; a body name or
      ``character/link`` follows that body's frame origin;
    * follow: critically damped spring (half-life ``halflife``) from the rig's
      desired position (target + offset), starting at rest on it;
    * dolly: uniform Catmull-Rom through ``points`` (end points repeated), moved at
      constant arc-length speed from ``start`` to ``end``, holding outside;
    * orbit: position = centre + (r cos a, r sin a, ``height``), a = phase + 2 pi t / period;
    * crane: the arm starts pointing from ``base`` towards the aim point's ground
      projection, swings by ``swing`` and rises ``height_start`` -> ``height_end``
      with smoothstep over [start, end];
    * handheld shake: Gaussian-filtered Gaussian noise (filter sigma = 1 / (2 pi
      ``frequency``) s) normalised to unit standard deviation, scaled to
      ``rotation_deg`` / ``translation`` and applied in the camera frame; seeded by
      (rollout seed, ``shake.seed``, camera index).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraTracks:
    K: np.ndarray            # (N, 3, 3)
    size: np.ndarray         # (N, 2) int64 (width, height)
    w2c: np.ndarray          # (F, N, 4, 4)
    active_shot: np.ndarray  # (F,) int64


def intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K for a vertical field of view ``fov_deg`` (square pixels)."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(F, 4, 4) OpenCV world-to-camera matrices for eyes (F,3) aimed at targets (F,3), z up."""
    eye = np.asarray(eye, float)
    fwd = np.asarray(target, float) - eye
    fwd /= np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-12)
    up = np.broadcast_to(np.array([0.0, 0.0, 1.0]), fwd.shape).copy()
    parallel = np.abs(fwd[..., 2]) > 0.999
    up[parallel] = (0.0, 1.0, 0.0)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd], axis=-2)                 # rows: camera axes in world
    out = np.zeros(eye.shape[:-1] + (4, 4))
    out[..., :3, :3] = R
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", R, eye)
    out[..., 3, 3] = 1.0
    return out


def critically_damped(goal: np.ndarray, dt: float, halflife: float) -> np.ndarray:
    """Position of a critically damped spring chasing ``goal`` (F, 3) sampled every
    ``dt``; starts at rest on ``goal[0]``; ``halflife`` 0 follows rigidly."""
    if halflife <= 0:
        return goal.copy()
    y = 2.0 * math.log(2.0) / halflife          # = damping / 2
    e = math.exp(-y * dt)
    x, v = goal[0].copy(), np.zeros(3)
    out = np.empty_like(goal)
    out[0] = x
    for i in range(1, len(goal)):
        j0 = x - goal[i]
        j1 = v + j0 * y
        x = e * (j0 + j1 * dt) + goal[i]
        v = e * (v - j1 * y * dt)
        out[i] = x
    return out


def catmull_rom(points: np.ndarray, samples_per_segment: int = 64) -> np.ndarray:
    """Dense polyline along a uniform Catmull-Rom spline through ``points`` (P, 3)."""
    p = np.asarray(points, float)
    if len(p) == 1:
        return p.copy()
    ext = np.concatenate([p[:1], p, p[-1:]])
    u = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[:, None]
    out = []
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3))
    out.append(p[-1:])
    return np.concatenate(out)


def along_arclength(poly: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points at fractions ``s`` in [0, 1] of the polyline's arc length."""
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    cum = np.r_[0.0, np.cumsum(seg)]
    if cum[-1] <= 0:
        return np.repeat(poly[:1], len(s), axis=0)
    d = np.clip(s, 0.0, 1.0) * cum[-1]
    return np.stack([np.interp(d, cum, poly[:, k]) for k in range(3)], axis=-1)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _axis_angle_matrices(rv: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotation matrices of rotation vectors (F, 3) (Rodrigues)."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_rotvec(rv).as_matrix()


def shake_offsets(F: int, fps: int, shake, seed: int, cam_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(rotation vectors (F,3) rad, translations (F,3) m) of a handheld shake."""
    from scipy.ndimage import gaussian_filter1d
    rng = np.random.default_rng([int(seed), int(shake.seed), int(cam_index), 0xCA3])
    sigma = fps / (2 * math.pi * shake.frequency)          # frames
    pad = int(4 * sigma) + 1
    noise = rng.standard_normal((F + 2 * pad, 6))
    if sigma > 0.3:
        smooth = gaussian_filter1d(noise, sigma, axis=0, mode="nearest")
        # unit-variance normalisation of the filtered white noise (kernel energy)
        r = int(4 * sigma + 0.5)
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        k /= k.sum()
        smooth /= math.sqrt(float((k * k).sum()))
    else:
        smooth = noise
    smooth = smooth[pad:pad + F]
    return (np.radians(shake.rotation_deg) * smooth[:, :3], shake.translation * smooth[:, 3:])


def evaluate_cameras(scene, times: np.ndarray, body_names, body_pos: np.ndarray,
                     com_pos: np.ndarray, character_names, seed: int) -> CameraTracks:
    """Intrinsics, per-frame world-to-camera poses and the active shot of every
    camera of ``scene`` over frame ``times`` (F,), from recorded body positions
    (F, B, 3) and character centres of mass (F, C, 3)."""
    from scenes import CraneRig, DollyRig, FollowRig, LookAtRig, OrbitRig, StaticRig
    F, N = len(times), len(scene.cameras)
    names = list(body_names)
    chars = list(character_names)

    def track(name: str) -> np.ndarray:
        if name in chars:
            return com_pos[:, chars.index(name)]
        return body_pos[:, names.index(name)]

    dt = 1.0 / scene.fps
    w2c = np.zeros((F, N, 4, 4))
    Ks = np.zeros((N, 3, 3))
    size = np.zeros((N, 2), np.int64)
    for n, cam in enumerate(scene.cameras):
        rig = cam.rig
        Ks[n] = intrinsics(cam.fov, cam.width, cam.height)
        size[n] = (cam.width, cam.height)
        if F == 0:
            continue
        if isinstance(rig, StaticRig):
            eye = np.broadcast_to(np.asarray(rig.pos, float), (F, 3))
            aim = np.broadcast_to(np.asarray(rig.look_at, float), (F, 3))
        elif isinstance(rig, LookAtRig):
            eye = np.broadcast_to(np.asarray(rig.pos, float), (F, 3))
            aim = track(rig.target) + np.asarray(rig.target_offset, float)
        elif isinstance(rig, FollowRig):
            tgt = track(rig.target)
            eye = critically_damped(tgt + np.asarray(rig.offset, float), dt, rig.halflife)
            aim = tgt + np.asarray(rig.target_offset, float)
        elif isinstance(rig, DollyRig):
            pts = np.asarray(rig.points if rig.points else [(0.0, -5.0, 1.6)], float)
            span = max(rig.end - rig.start, 1e-9)
            eye = along_arclength(catmull_rom(pts), (times - rig.start) / span)
            aim = track(rig.target) if rig.target else np.broadcast_to(np.asarray(rig.look_at, float), (F, 3))
        elif isinstance(rig, OrbitRig):
            centre = track(rig.target) if rig.target else np.broadcast_to(np.asarray(rig.center, float), (F, 3))
            a = rig.phase + 2 * math.pi * times / rig.period
            eye = centre + np.stack([rig.radius * np.cos(a), rig.radius * np.sin(a),
                                     np.full(F, rig.height)], axis=-1)
            aim = centre
        elif isinstance(rig, CraneRig):
            aim = track(rig.target) if rig.target else np.broadcast_to(np.asarray(rig.look_at, float), (F, 3))
            base = np.asarray(rig.base, float)
            s = smoothstep((times - rig.start) / max(rig.end - rig.start, 1e-9))
            d0 = aim[0, :2] - base[:2]
            a0 = math.atan2(d0[1], d0[0]) if np.linalg.norm(d0) > 1e-9 else 0.0
            a = a0 + rig.swing * s
            h = rig.height_start + (rig.height_end - rig.height_start) * s
            eye = base + np.stack([rig.arm * np.cos(a), rig.arm * np.sin(a), h], axis=-1)
        else:
            raise TypeError(f"camera '{cam.name}': unsupported rig {type(rig).__name__}")
        M = look_at(np.array(eye, float), np.array(aim, float))
        if cam.shake is not None:
            rv, tr = shake_offsets(F, scene.fps, cam.shake, seed, n)
            Rs = _axis_angle_matrices(rv)                     # camera-frame wobble
            M2 = M.copy()
            M2[:, :3, :3] = Rs @ M[:, :3, :3]
            M2[:, :3, 3] = np.einsum("fij,fj->fi", Rs, M[:, :3, 3]) + tr
            M = M2
        w2c[:, n] = M
    return CameraTracks(Ks, size, w2c, active_shots(scene, times))


def active_shots(scene, times: np.ndarray) -> np.ndarray:
    """(F,) index of the shot on screen at each frame time (shot i covers
    [start_i, start_{i+1}); the last one runs to the end)."""
    starts = np.array([s.start for s in scene.shots], float)
    eps = 0.25 / scene.fps
    idx = np.searchsorted(starts, np.asarray(times) + eps, side="right") - 1
    return np.clip(idx, 0, len(starts) - 1).astype(np.int64)
