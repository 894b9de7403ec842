"""3D-anchored Gaussian noise: noise that belongs to surfaces, not to pixels.

Each latent pixel (an ``f x f`` block of the image, sampled at its centre pixel)
gets 4 channels of standard Gaussian noise that are a deterministic function of
the surface point seen there:

* moving bodies (props, character links): the point in body-local coordinates,
  so the noise travels with the body;
* statics: the point in world coordinates;
* sky: the unit ray direction.

The coordinate is quantised to cells of ``cell`` metres (sky: ``sky_cell``
radians), and the integer cell, the body id and the seed are hashed with a
counter-based generator (SplitMix64 finaliser) into uniforms, then Box-Muller.
The same surface cell therefore gets the same noise in every frame and every shot,
and different cells are independent: with the cell no larger than a latent
pixel's footprint, neighbouring latent pixels fall into different cells and there
is no spatial correlation beyond the latent grid. No state, no global RNG.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

#: Default angular cell (rad) of the sky: about a latent pixel of a 50 deg, 512 px camera.
SKY_CELL = 0.0125


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def hash_cells(ids: np.ndarray, cells: np.ndarray, seed: int) -> np.ndarray:
    """(N,) uint64 key of (id, integer cell (N, 3)) under ``seed``."""
    h = splitmix64(np.full(ids.shape, np.uint64(seed & 0xFFFFFFFFFFFFFFFF)) ^ ids.astype(np.uint64))
    for k in range(3):
        h = splitmix64(h ^ cells[:, k].astype(np.int64).view(np.uint64))
    return h


def gaussian_from_keys(keys: np.ndarray, channels: int = 4) -> np.ndarray:
    """(N,) uint64 keys -> (N, channels) independent standard normals (Box-Muller)."""
    pairs = (channels + 1) // 2
    out = np.empty((keys.shape[0], 2 * pairs))
    scale = 2.0 ** -53
    with np.errstate(over="ignore"):
        for p in range(pairs):
            a = splitmix64(keys ^ np.uint64(2 * p + 1) * _M2)
            b = splitmix64(keys ^ np.uint64(2 * p + 2) * _M2)
            u1 = ((a >> np.uint64(11)).astype(np.float64) + 0.5) * scale
            u2 = ((b >> np.uint64(11)).astype(np.float64) + 0.5) * scale
            r = np.sqrt(-2.0 * np.log(u1))
            out[:, 2 * p] = r * np.cos(2 * np.pi * u2)
            out[:, 2 * p + 1] = r * np.sin(2 * np.pi * u2)
    return out[:, :channels]


def anchored_noise(seg: np.ndarray, points: np.ndarray, dirs: np.ndarray, body_pos: np.ndarray,
                   body_quat: np.ndarray, moving: np.ndarray, *, cell: float = 0.05,
                   sky_cell: float = SKY_CELL, seed: int = 0, channels: int = 4) -> np.ndarray:
    """Noise at N sample points.

    Args:
        seg: (N,) int, body index + 1 (0 = sky).
        points: (N, 3) world points (ignored on sky); dirs: (N, 3) unit world ray directions.
        body_pos, body_quat: (B, 3), (B, 4) body poses at this frame.
        moving: (B,) bool, true for bodies whose noise moves with them.
    Returns (N, channels) float64.
    """
    from .layers import _rigid
    coords = np.array(points, dtype=np.float64, copy=True)
    sky = seg == 0
    b = seg - 1
    mv = ~sky & moving[np.maximum(b, 0)]
    if mv.any():
        T = _rigid(body_pos, body_quat)
        bb = b[mv]
        coords[mv] = np.einsum("nji,nj->ni", T[bb, :3, :3], points[mv] - T[bb, :3, 3])
    q = np.floor(coords / cell)
    q[sky] = np.floor(dirs[sky] / sky_cell)
    keys = hash_cells(seg, q, seed)
    return gaussian_from_keys(keys, channels)


def latent_samples(width: int, height: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns sampled for a latent grid of ``factor``-pixel cells."""
    h, w = max(1, height // factor), max(1, width // factor)
    rows = np.minimum(np.arange(h) * factor + factor // 2, height - 1)
    cols = np.minimum(np.arange(w) * factor + factor // 2, width - 1)
    return rows, cols


def anchored_noise_for_view(view) -> np.ndarray:
    """(4, h, w) float32 anchored noise of one rendered frame (h = H // factor)."""
    o = view.options
    factor = int(o.get("latent_factor", 8))
    rows, cols = latent_samples(view.width, view.height, factor)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    seg = view.segmentation[rr, cc].ravel()
    K, R, t = view.K, view.w2c[:3, :3], view.w2c[:3, 3]
    rays = np.stack([(cc.ravel() - K[0, 2]) / K[0, 0], (rr.ravel() - K[1, 2]) / K[1, 1],
                     np.ones(rr.size)], -1)
    rays_w = rays @ R                                            # camera -> world directions
    pts = view.depth[rr, cc].reshape(-1, 1) * rays_w + (-R.T @ t)
    dirs = rays_w / np.linalg.norm(rays_w, axis=1, keepdims=True)
    traj = view.traj
    moving = o.get("_moving")
    if moving is None:
        moving = o["_moving"] = np.array([k != "static" for k in traj.body_kind], bool)
    n = anchored_noise(seg, pts, dirs, traj.body_pos[view.frame], traj.body_quat[view.frame], moving,
                       cell=float(o.get("noise_cell", 0.05)), seed=int(o.get("seed", 0)))
    return n.T.reshape(4, len(rows), len(cols)).astype(np.float32)
