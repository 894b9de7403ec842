"""3D-anchored Gaussian noise: noise that belongs to surfaces, not to pixels.

Space is divided into cubic cells, and every cell holds 4 channels of standard
Gaussian noise that are a deterministic function of (body, cell, cell size, seed):
the integer cell is hashed with a counter-based generator (SplitMix64 finaliser)
into uniforms, then Box-Muller. No state, no global RNG. Cells are taken in

* body-local coordinates on moving bodies (props, character links): the noise
  travels with the body;
* world coordinates on statics;
* ray directions (angular cells) on the sky.

Two constructions of a latent pixel's (an ``f x f`` block's) noise:

``point`` (the default): the noise of the one cell holding the surface point seen at
the block's sample pixel, cells the power of two under the latent pixel's footprint.
Cheap, but two views' latent grids never line up, so the same surface rarely lands
in the same cell: 0.03 correlation across the cuts of the generator benchmark.

``integral`` (``noise_kind="integral"``): the *integral* of the white noise over the
surface the latent pixel sees (the integral noise of Chang et al., "How I Warped
Your Noise", ICLR 2024, here over a 3D lattice instead of the previous frame's
pixels): ``SUBSAMPLES x SUBSAMPLES`` sub-samples spread over the block are placed on
the surface (depth interpolated between pixels), and the pixel's noise is
``sum_c a_c n_c / sqrt(sum_c a_c^2)`` over the cells ``c`` they fall in (``a_c``:
sub-samples in ``c``) -- exactly N(0, 1). Two latent pixels are correlated by how
much of their footprints cover the same cells: the same surface seen from another
frame or another shot gets correlated noise even though its latent pixels do not
line up (0.18 across the benchmark's cuts and 0.24 across those of the tuning scenes
``random_scene(800000..)``, where point noise gives 0.03 and 0.06; 0.9 between frames
of a moving camera), while neighbouring latent pixels share only the cells on their
border (correlation about 0.1). It renders at 16.6 frames/s at 512x512, point noise
at 107 (about the speed of the depth layer alone); `benchmarks.render_speed`.

Integral cell size: ``CELL_RATIO`` of the latent pixel's footprint on the surface
(``z * f / fx`` metres; ``f / fx`` radians on the sky), between the two powers of two
around it, blended with weights ``sqrt(1 - w)`` and ``sqrt(w)`` (``w`` the fractional
octave): a surface seen at another scale shares the level it is closest to, so the
correlation falls off smoothly with the change of scale instead of at octave steps.
A fixed ``noise_cell`` (metres) anchors everything to one lattice instead. Each
frame is finally standardised (minus its mean, over its standard deviation): an
affine map that makes the frame statistics exact and changes no correlation.

Time: by default a surface has the same noise in every frame. With a ``period`` P
(``noise_period`` of `bridge.render`) the cells of frame ``f`` are drawn under a seed
derived from ``(seed, f mod P)``: the noise is anchored in space *and* in time modulo
P. Any P consecutive frames then hold P independent draws (temporally white, like
i.i.d. noise, so a model sees in one window of P frames exactly the statistics of
i.i.d. noise), while every P-frame window that sees a surface gives it the same P
draws in the same order (window-aligned: frame ``f`` and ``f + P`` share their noise).
A video model with a P-frame window generates a surface from the same noise in every
shot without the temporally frozen noise it would otherwise get.

Anchored means (``means``, ``noise_means`` of `bridge.render`): a model's appearance
follows the *low* frequencies of its initial noise as much as the high ones (swapping
only the band of 1-4 cycles per frame of the built-in model's 32x32 latent noise moves
its colours three quarters as far as swapping all of it: `benchmarks.noise_ablation
--bands`), and the low frequencies are what
point or integral cells anchor least: two views' latent grids and scales differ, so a
surface's regional noise sums come out independent from shot to shot. Anchored means
set them from the surface instead. Every frame's noise is split, over a region, into
its mean and the rest, and the mean is replaced by ``z_r / sqrt(K_r)``: ``z_r``
standard normal per channel, a function of (region, frame seed), ``K_r`` the region's
latent pixels in the frame. For white noise this changes nothing in distribution (the
mean of K i.i.d. N(0, 1) values is N(0, 1/K) and independent of the deviations from
it), so a model still sees noise of its training statistics.

* ``"body"``: one region per body seen (the sky is one).
* ``"octaves"``: first the anchor cells of every power of two above the latent pixels'
  own cells, finest first (a region: the samples of one body in one cell whose own
  cells are finer; `OCTAVES` levels above the coarsest), then the bodies. A mean set
  at one level is a sum of the finer levels' anchored means, so every scale coarser
  than both views' latent pixels is drawn from the surface: the noise stays white (flat
  spectrum, neighbour correlation 0.01) while, low-passed (Gaussian, sigma 2 latent
  pixels), it correlates at 0.44 across the 13 cuts of the generator benchmark's
  held-out scenes, and its values themselves at 0.15 (without: 0.03 on 9 of those
  cuts; -0.05 low-passed on the cut of ``random_scene(800001)``).
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

#: Angular cell (rad) of the sky when none is given.
SKY_CELL = 0.0125
#: Sub-samples per latent pixel side of the integral noise.
SUBSAMPLES = 8
#: Cell size of the integral noise as a fraction of the latent pixel's footprint.
CELL_RATIO = 0.5


#: Anchored-means regions: "body", "none" or "octaves" (see "Anchored means" in the
#: module docstring).
MEANS = ("body", "none", "octaves")
#: Octaves of anchored means above the coarsest cell of a frame ("octaves").
OCTAVES = 5
#: Key tag of the anchored means (keeps their draws apart from every cell's).
_MEANS_TAG = np.uint64(0xA5A5A5A5A5A5A5A5)

#: Noise constructions: "point" (the default: one cell per latent pixel, at the
#: pixel's sample point, cells of the footprint's octave) and "integral" (above; about
#: 5x the cost of all other layers together at 512x512, so opt-in).
KINDS = ("integral", "point")


def design(kind: str = "point", period: int | None = None, means: str = "none") -> dict:
    """The noise construction, recorded with conditioning and datasets (noise made
    another way is another distribution for a model trained on it); ``period``: see
    "Time", ``means``: see "Anchored means" in the module docstring (each recorded
    only when set)."""
    if means not in MEANS:
        raise ValueError(f"noise means must be one of {MEANS}, got {means!r}")
    if kind == "integral":
        out = {"kind": "integral", "subsamples": SUBSAMPLES, "cell_ratio": CELL_RATIO}
    elif kind == "point":
        out = {"kind": "point"}
    else:
        raise ValueError(f"noise kind must be one of {KINDS}, got {kind!r}")
    if period is not None:
        out["period"] = int(period)
    if means != "none":
        out["means"] = means
    return out


def recorded_means(design_record: dict | None) -> str:
    """The anchored-means regions of a recorded `design` ("none" when not recorded)."""
    return (design_record or {}).get("means", "none")


def recorded_period(design_record: dict | None) -> int | None:
    """The time period of a recorded `design` (None: the same noise in every frame)."""
    return (design_record or {}).get("period")


def recorded_kind(design_record: dict | None) -> str:
    """The kind of a recorded `design` (conditioning meta, dataset recipe); "point"
    when none is recorded: everything made before the field has point noise."""
    return (design_record or {}).get("kind", "point")


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


def frame_seed(seed: int, frame: int, period: int | None) -> int:
    """Seed of the cells of global frame ``frame``: ``seed`` itself without a period,
    else a 63-bit mix of (seed, frame mod period) (see "Time" in the module docstring)."""
    if period is None:
        return int(seed)
    mask = 0xFFFFFFFFFFFFFFFF
    key = (int(seed) & mask) ^ (((int(frame) % int(period) + 1) * int(_M1)) & mask)
    return int(splitmix64(np.array([key], np.uint64))[0]) >> 1


def anchor_coords(seg: np.ndarray, points: np.ndarray, dirs: np.ndarray, body_pos: np.ndarray,
                  body_quat: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """(N, 3) coordinates the cells are taken in: body-local points on moving bodies,
    world points on statics, unit ray directions on the sky (``seg`` 0).

    Args:
        seg: (N,) int, body index + 1 (0 = sky).
        points: (N, 3) world points (ignored on sky); dirs: (N, 3) unit world ray directions.
        body_pos, body_quat: (B, 3), (B, 4) body poses at this frame.
        moving: (B,) bool, true for bodies whose noise moves with them.
    """
    from .layers import _rigid
    coords = np.array(points, dtype=np.float64, copy=True)
    sky = seg == 0
    coords[sky] = dirs[sky]
    b = seg - 1
    mv = ~sky & moving[np.maximum(b, 0)]
    if mv.any():
        T = _rigid(body_pos, body_quat)
        bb = b[mv]
        coords[mv] = np.einsum("nji,nj->ni", T[bb, :3, :3], points[mv] - T[bb, :3, 3])
    return coords


def keys_at(seg: np.ndarray, coords: np.ndarray, size, seed: int = 0) -> np.ndarray:
    """(N,) uint64 keys of the cells of size ``size`` (scalar or (N,); angular on the
    sky) holding the `anchor_coords` ``coords``."""
    size = np.broadcast_to(np.asarray(size, np.float64), seg.shape)
    q = np.floor(coords / size[:, None])
    # the cell size is part of the key: cells of different levels are independent
    level = np.round(np.log2(size) * 16).astype(np.int64)
    return hash_cells(seg.astype(np.int64) * 4096 + level, q, seed)


def anchored_noise(seg, points, dirs, body_pos, body_quat, moving, *, cell=0.05,
                   sky_cell=SKY_CELL, seed: int = 0, channels: int = 4) -> np.ndarray:
    """(N, channels) float64 noise of the cells the N sample points fall in (arguments
    as `anchor_coords`; ``cell``: size in metres, scalar or (N,); ``sky_cell``: angular
    size of sky samples, scalar or (N,))."""
    size = np.broadcast_to(np.asarray(cell, np.float64), seg.shape).copy()
    sky = seg == 0
    size[sky] = np.broadcast_to(np.asarray(sky_cell, np.float64), seg.shape)[sky]
    coords = anchor_coords(seg, points, dirs, body_pos, body_quat, moving)
    return gaussian_from_keys(keys_at(seg, coords, size, seed), channels)


def integral_noise(keys: np.ndarray, channels: int = 4) -> np.ndarray:
    """Area-weighted cell noise of pixels: (P, S) keys of S sub-samples per pixel ->
    (P, channels) standard normals.

    A pixel's noise is ``sum_c a_c n_c / sqrt(sum_c a_c^2)`` over the cells ``c`` its
    sub-samples fall in, with ``a_c`` the number of its sub-samples in cell ``c`` and
    ``n_c`` the cell's i.i.d. normal: exactly N(0, 1), and two pixels are correlated
    by how much of their footprints cover the same cells (the integral noise of Chang
    et al., "How I Warped Your Noise", ICLR 2024, sampled on a 3D lattice). Each
    distinct cell of a pixel is drawn once (runs of equal keys after sorting).
    """
    P, S = keys.shape
    ks = np.sort(keys, axis=1)                     # a pixel's sub-samples, runs of equal cells
    first = np.ones((P, S), bool)
    first[:, 1:] = ks[:, 1:] != ks[:, :-1]
    pos = np.flatnonzero(first)                    # flat index where each run starts
    a = np.diff(np.append(pos, P * S)).astype(np.float64)
    pix = pos // S
    num = np.zeros((P, channels))
    np.add.at(num, pix, gaussian_from_keys(ks.ravel()[pos], channels) * a[:, None])
    return num / np.sqrt(np.bincount(pix, weights=a * a, minlength=P))[:, None]


def subsample_grid(width: int, height: int, factor: int, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (x, y), each (h, w, sub * sub), of ``sub x sub``
    sub-samples spread evenly over every latent pixel's ``factor x factor`` block
    (pixel ``c`` spans ``[c - 0.5, c + 0.5]``, the renderer's convention)."""
    h, w = max(1, height // factor), max(1, width // factor)
    off = (np.arange(sub) + 0.5) * factor / sub - 0.5
    ys = (np.arange(h)[:, None] * factor + off[None]).reshape(h, 1, sub, 1)
    xs = (np.arange(w)[:, None] * factor + off[None]).reshape(1, w, 1, sub)
    shape = (h, w, sub, sub)
    return (np.broadcast_to(xs, shape).reshape(h, w, -1), np.broadcast_to(ys, shape).reshape(h, w, -1))


def _sample_depth(depth: np.ndarray, seg: np.ndarray, x: np.ndarray, y: np.ndarray):
    """z-depth and id at continuous pixel coordinates: the nearest pixel's id, and the
    bilinear interpolation of the four surrounding pixels' depth where they all show
    that body at depths within 5% (a smooth surface), else the nearest pixel's depth."""
    H, W = depth.shape
    xi = np.clip(np.rint(x).astype(int), 0, W - 1)
    yi = np.clip(np.rint(y).astype(int), 0, H - 1)
    ids, z = seg[yi, xi], depth[yi, xi].astype(np.float64)
    if np.array_equal(xi, x) and np.array_equal(yi, y):      # on pixel centres: nothing to interpolate
        return z, ids
    x0 = np.clip(np.floor(x).astype(int), 0, W - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, H - 2)
    fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    zs = [depth[y0 + a, x0 + b].astype(np.float64) for a in (0, 1) for b in (0, 1)]
    same = np.all([seg[y0 + a, x0 + b] == ids for a in (0, 1) for b in (0, 1)], axis=0)
    zmin, zmax = np.minimum.reduce(zs), np.maximum.reduce(zs)
    smooth = same & (zmin > 0) & (zmax <= 1.05 * zmin)
    bil = (zs[0] * (1 - fx) + zs[1] * fx) * (1 - fy) + (zs[2] * (1 - fx) + zs[3] * fx) * fy
    return np.where(smooth, bil, z), ids


def _levels(footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two neighbouring power-of-two cell sizes around ``footprint`` and the weight of
    the coarser: ``(2**L, w)`` with ``L = floor(log2 footprint)``, ``w = frac(log2 footprint)``."""
    lg = np.log2(np.maximum(footprint, 1e-9))
    L = np.floor(lg)
    return np.exp2(L), lg - L


def _view_points(view, x: np.ndarray, y: np.ndarray, z: np.ndarray):
    """World points at z-depth ``z`` on the rays through pixel coordinates (x, y), and
    the rays' unit directions."""
    from .layers import rowmat
    K, R, t = view.K, view.w2c[:3, :3], view.w2c[:3, 3]
    rays = np.stack([(x - K[0, 2]) / K[0, 0], (y - K[1, 2]) / K[1, 1], np.ones(x.size)], -1)
    rays_w = rowmat(rays, R)                                     # camera -> world directions
    pts = z.reshape(-1, 1) * rays_w + (-R.T @ t)
    return pts, rays_w / np.linalg.norm(rays_w, axis=1, keepdims=True)


def _view_anchors(view, seg: np.ndarray, pts: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """`anchor_coords` at the view's frame (which bodies move is cached per render)."""
    o, traj = view.options, view.traj
    moving = o.get("_moving")
    if moving is None:
        moving = o["_moving"] = np.array([k != "static" for k in traj.body_kind], bool)
    return anchor_coords(seg, pts, dirs, traj.body_pos[view.frame], traj.body_quat[view.frame], moving)


def _view_seed(view) -> int:
    """`frame_seed` of the view's frame under the render's seed and noise period."""
    o = view.options
    return frame_seed(int(o.get("seed", 0)), view.frame, o.get("noise_period"))


def _standardised(n: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h*w, 4) noise -> (4, h, w) float32, the frame made exactly zero-mean and
    unit-variance: a few thousand samples leave the sample mean about 1/sqrt(n) ~ 0.01
    off zero, and an affine map per frame leaves all correlations (the anchoring) intact."""
    n = (n - n.mean()) / max(float(n.std()), 1e-6)
    return n.T.reshape(4, h, w).astype(np.float32)


def anchor_means(noise: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(N, C) noise with its mean over every region replaced by ``z_r / sqrt(K_r)``.

    ``keys`` (N,) uint64: the region of each sample (samples with equal keys form a
    region); ``z_r`` standard normal per channel drawn from the key; ``K_r`` the
    region's size. I.i.d. N(0, 1) noise stays i.i.d. N(0, 1) in distribution (see
    "Anchored means" in the module docstring).
    """
    noise = np.asarray(noise, np.float64)
    uniq, inv, count = np.unique(np.asarray(keys, np.uint64).ravel(), return_inverse=True, return_counts=True)
    mean = np.stack([np.bincount(inv, weights=noise[:, c], minlength=uniq.size)
                     for c in range(noise.shape[1])], 1) / count[:, None]
    z = gaussian_from_keys(splitmix64(uniq ^ _MEANS_TAG), noise.shape[1]) / np.sqrt(count)[:, None]
    return noise + (z - mean)[inv]


def region_keys(seg: np.ndarray, seed: int, coords: np.ndarray | None = None, size=None) -> np.ndarray:
    """(N,) uint64 keys of the anchored-means regions of samples: their body (``seg``)
    or, with ``coords`` and ``size``, the cells of that size they fall in (as
    `keys_at`, drawn apart from the noise's own cells)."""
    seg = np.asarray(seg, np.int64)
    if coords is None:
        return hash_cells(seg, np.zeros((seg.size, 3), np.int64), seed ^ 0x5EED)
    return keys_at(seg, coords, size, seed ^ 0x5EED)


def _sample_pixels(view, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) rows and columns of the pixel each latent pixel samples (its block's centre)."""
    h, w = max(1, view.height // factor), max(1, view.width // factor)
    rows = np.minimum(np.arange(h) * factor + factor // 2, view.height - 1)
    cols = np.minimum(np.arange(w) * factor + factor // 2, view.width - 1)
    return np.meshgrid(rows, cols, indexing="ij")


def anchored_noise_for_view(view) -> np.ndarray:
    """(4, h, w) float32 anchored noise of one rendered frame (h = H // factor), of
    the kind in ``view.options["noise_kind"]`` (default "point"), with the anchored
    means of ``view.options["noise_means"]`` (default "none")."""
    o = view.options
    factor = int(o.get("latent_factor", 8))
    h, w = max(1, view.height // factor), max(1, view.width // factor)
    means, point = o.get("noise_means", "none"), o.get("noise_kind", "point") == "point"
    anchors = _sample_anchors(view) if point or means != "none" else None
    n = _point_noise_for_view(view, anchors) if point else _integral_noise_for_view(view)
    if means != "none":
        seg, coords, size = anchors
        seed = _view_seed(view)
        if means == "octaves":
            level = np.round(np.log2(size)).astype(np.int64)
            for m in range(int(level.min()) + 1, int(level.max()) + OCTAVES + 1):
                inside = level < m                   # samples whose own cells are finer
                n[inside] = anchor_means(n[inside], region_keys(seg[inside], seed, coords[inside], 2.0 ** m))
        n = anchor_means(n, region_keys(seg, seed))
    return _standardised(n, h, w)


def _integral_noise_for_view(view) -> np.ndarray:
    """(h * w, 4) integral anchored noise of one frame.

    Every latent pixel is covered by `SUBSAMPLES` x `SUBSAMPLES` sub-samples on the
    surface seen through it (depth interpolated between pixels); its noise is the
    `integral_noise` of the cells they fall in, at the two power-of-two cell sizes around ``CELL_RATIO`` of the footprint
    (``z * factor * CELL_RATIO / fx``), weighted ``sqrt(1 - w)`` and ``sqrt(w)`` (see the
    module docstring). A fixed ``noise_cell`` uses one lattice for everything.
    """
    o = view.options
    factor = int(o.get("latent_factor", 8))
    xs, ys = subsample_grid(view.width, view.height, factor, SUBSAMPLES)
    h, w, S = xs.shape
    z, seg = _sample_depth(view.depth, view.segmentation, xs.ravel(), ys.ravel())
    pts, dirs = _view_points(view, xs.ravel(), ys.ravel(), z)
    f = 0.5 * (view.K[0, 0] + view.K[1, 1])
    # the scale of a latent pixel: the median depth of its surface sub-samples
    zs = np.where(seg > 0, z, np.inf).reshape(h * w, S)
    zs.sort(axis=1)
    nsurf = (seg > 0).reshape(h * w, S).sum(1)
    zc = zs[np.arange(h * w), np.maximum(nsurf - 1, 0) // 2]
    sky_size, sky_w = _levels(np.array(factor * CELL_RATIO / f))
    fixed = o.get("noise_cell")
    if fixed is None:
        size, wt = _levels(np.where(nsurf > 0, zc, 1.0) * factor * CELL_RATIO / f)
    else:
        size, wt = np.full(zc.shape, float(fixed)), np.zeros(zc.shape)
    wt = np.where(nsurf > 0, wt, sky_w)                          # per latent pixel
    size = np.repeat(size, S)
    coords = _view_anchors(view, seg, pts, dirs)
    size = np.where(seg == 0, float(sky_size), size)
    n = 0.0
    for scale, weight in ((1.0, np.sqrt(1.0 - wt)), (2.0, np.sqrt(wt))):
        if fixed is not None and scale != 1.0:
            continue
        keys = keys_at(seg, coords, size * scale, seed=_view_seed(view))
        n = n + weight[:, None] * integral_noise(keys.reshape(h * w, S))
    return n


def _sample_anchors(view) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seg, anchor coords, cell size) of the surface point at each latent pixel's
    sample pixel, row-major: cells the power of two under the latent pixel's footprint
    (angular on the sky), or the fixed ``noise_cell``."""
    o = view.options
    factor = int(o.get("latent_factor", 8))
    rr, cc = _sample_pixels(view, factor)
    seg, z = view.segmentation[rr, cc].ravel(), view.depth[rr, cc].ravel()
    pts, dirs = _view_points(view, cc.ravel(), rr.ravel(), z)
    fixed = o.get("noise_cell")
    f = 0.5 * (view.K[0, 0] + view.K[1, 1])
    size = _levels(z * factor / f)[0] if fixed is None else np.full(seg.shape, float(fixed))
    size = np.where(seg == 0, _levels(np.array(factor / f))[0], size)
    return seg, _view_anchors(view, seg, pts, dirs), size


def _point_noise_for_view(view, anchors=None) -> np.ndarray:
    """(h * w, 4) point-sampled anchored noise of one frame: each latent pixel takes
    the cell of the surface point at its sample pixel, cells the power of two under its
    footprint (``anchors``: the frame's `_sample_anchors`, when already computed)."""
    seg, coords, size = _sample_anchors(view) if anchors is None else anchors
    return gaussian_from_keys(keys_at(seg, coords, size, seed=_view_seed(view)))
