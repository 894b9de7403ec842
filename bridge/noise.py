"""3D-anchored Gaussian noise: noise that belongs to surfaces, not to pixels.

Each latent pixel (an ``f x f`` block of the image, sampled at its centre pixel)
gets 4 channels of standard Gaussian noise that are a deterministic function of
the surface point seen there:

* moving bodies (props, character links): the point in body-local coordinates,
  so the noise travels with the body;
* statics: the point in world coordinates;
* sky: the unit ray direction.

The coordinate is quantised to cubic cells, and the integer cell, the cell size,
the body id and the seed are hashed with a counter-based generator (SplitMix64
finaliser) into uniforms, then Box-Muller. No state, no global RNG. Each frame
is finally standardised (minus its mean, over its standard deviation): an affine
map that makes the frame statistics exact and changes no correlation.

Cell size. By default it follows the latent pixel's footprint on the surface
(``z * f / fx`` metres; ``f / fx`` radians on the sky), rounded down to a power of
two: neighbouring latent pixels are at least one cell apart, so they fall into
different cells (no spatial correlation beyond the latent grid), while the same
surface point seen at a similar scale -- in another frame or another shot --
falls into the same cell and gets the same noise. Scale changes of more than an
octave switch to the next level of cells (like mip levels). A fixed ``cell``
(metres) anchors everything to one lattice instead (exactly scale-independent,
but blocky where the footprint is smaller than the cell).
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

#: Angular cell (rad) of the sky when none is given.
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


def octave_cells(footprint: np.ndarray) -> np.ndarray:
    """Power-of-two cell sizes no larger than ``footprint`` (same units)."""
    return np.exp2(np.floor(np.log2(np.maximum(footprint, 1e-9))))


def anchored_noise(seg: np.ndarray, points: np.ndarray, dirs: np.ndarray, body_pos: np.ndarray,
                   body_quat: np.ndarray, moving: np.ndarray, *, cell=0.05,
                   sky_cell=SKY_CELL, seed: int = 0, channels: int = 4) -> np.ndarray:
    """Noise at N sample points.

    Args:
        seg: (N,) int, body index + 1 (0 = sky).
        points: (N, 3) world points (ignored on sky); dirs: (N, 3) unit world ray directions.
        body_pos, body_quat: (B, 3), (B, 4) body poses at this frame.
        moving: (B,) bool, true for bodies whose noise moves with them.
        cell: cell size in metres, a scalar or (N,) per sample (see `octave_cells`);
        sky_cell: angular cell (rad) of sky samples, scalar or (N,).
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
    size = np.broadcast_to(np.asarray(cell, np.float64), seg.shape).copy()
    size[sky] = np.broadcast_to(np.asarray(sky_cell, np.float64), seg.shape)[sky]
    q = np.floor(coords / size[:, None])
    q[sky] = np.floor(dirs[sky] / size[sky, None])
    # the cell size is part of the key: cells of different levels are independent
    level = np.round(np.log2(size) * 16).astype(np.int64)
    keys = hash_cells(seg.astype(np.int64) * 4096 + level, q, seed)
    return gaussian_from_keys(keys, channels)


def latent_samples(width: int, height: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns sampled for a latent grid of ``factor``-pixel cells."""
    h, w = max(1, height // factor), max(1, width // factor)
    rows = np.minimum(np.arange(h) * factor + factor // 2, height - 1)
    cols = np.minimum(np.arange(w) * factor + factor // 2, width - 1)
    return rows, cols


def anchored_noise_for_view(view) -> np.ndarray:
    """(4, h, w) float32 anchored noise of one rendered frame (h = H // factor)."""
    from .layers import rowmat
    o = view.options
    factor = int(o.get("latent_factor", 8))
    rows, cols = latent_samples(view.width, view.height, factor)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    seg = view.segmentation[rr, cc].ravel()
    K, R, t = view.K, view.w2c[:3, :3], view.w2c[:3, 3]
    rays = np.stack([(cc.ravel() - K[0, 2]) / K[0, 0], (rr.ravel() - K[1, 2]) / K[1, 1],
                     np.ones(rr.size)], -1)
    rays_w = rowmat(rays, R)                                     # camera -> world directions
    pts = view.depth[rr, cc].reshape(-1, 1) * rays_w + (-R.T @ t)
    dirs = rays_w / np.linalg.norm(rays_w, axis=1, keepdims=True)
    traj = view.traj
    moving = o.get("_moving")
    if moving is None:
        moving = o["_moving"] = np.array([k != "static" for k in traj.body_kind], bool)
    fixed = o.get("noise_cell")
    f = 0.5 * (K[0, 0] + K[1, 1])
    if fixed is None:
        z = view.depth[rr, cc].ravel()
        cell = octave_cells(z * factor / f)
    else:
        cell = float(fixed)
    n = anchored_noise(seg, pts, dirs, traj.body_pos[view.frame], traj.body_quat[view.frame], moving,
                       cell=cell, sky_cell=octave_cells(np.array(factor / f)), seed=int(o.get("seed", 0)))
    # Standardise the frame: a few thousand samples leave the sample mean about
    # 1/sqrt(n) ~ 0.01 off zero; an affine map per frame makes every frame exactly
    # zero-mean and unit-variance and leaves all correlations (the anchoring) intact.
    n = (n - n.mean()) / max(float(n.std()), 1e-6)
    return n.T.reshape(4, len(rows), len(cols)).astype(np.float32)
