"""`render`: one trajectory -> per-shot conditioning maps (the `Conditioning` bundle).

Owns the parts every layer shares: which frames each shot covers (its active
frames plus the crossfade margins on each side), intrinsics at the render
resolution, the MuJoCo raw passes of one frame (one GL pass giving geom ids and the
depth buffer together, an optional lit GL pass, ray casting with `mj_multiRay`) and
the loop over shots and frames. The layers themselves are registered in
`bridge.layers`.

Speed: the GL passes run on one worker thread (its own `MjData`, its own EGL
context); while the layers of frame t are computed with numpy, the worker draws
and reads back frame t + 1 (`frame_views`). The GL pass has no MSAA, shadows,
reflections, skybox or haze. Normals and the shaded preview share one
`bridge.layers.Surface` per frame (flat faces are one table lookup per pixel).
Figures: `benchmarks/render_speed.py`.

Exactness: the id pass says which geom each pixel sees; for curved primitives
(spheres, capsules, cylinders, ellipsoids), whose rasterised meshes are
tessellated, the depth is then replaced by the closed-form ray entry into that geom,
and normals come from the geom's closed form too. Flat faces keep the 24-bit depth
buffer (error about 6e-8 z^2 / near). So every layer costs one GL draw per frame.

Camera conventions: trajectories carry OpenCV cameras (x right, y down, z forward,
``x_cam = R x_world + t``); MuJoCo's GL camera looks along -z with y up. We write
the GL camera of the `mjvScene` directly (position, forward, up and an off-centre
frustum built from K), so principal points off the image centre and any roll are
reproduced exactly. Pixel centres are at integer (u, v) as in OpenCV.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .conditioning import Conditioning, ShotConditioning
from .layers import LAYERS, RenderError, _GeomTypes, layer_names, rowmat
from .noise import KINDS as NOISE_KINDS, MEANS as NOISE_MEANS, design as noise_design

#: Largest width or height ``render`` accepts (pixels).
MAX_RESOLUTION = 2048
#: Preview sky colours (RGB 0-255) at the horizon and the zenith.
SKY_HORIZON = np.array([214.0, 224.0, 235.0])
SKY_ZENITH = np.array([96.0, 140.0, 200.0])
#: Sample rate of the contact-audio track.
SAMPLE_RATE = 48000


# --------------------------------------------------------------------------- shots
def shot_frame_ranges(traj) -> list[np.ndarray]:
    """Global frame indices rendered for each shot: its active frames (where
    ``traj.active_shot`` names it) plus, for a crossfade of ``s`` seconds, about
    ``s / 2`` seconds of margin on each side of the boundary it joins."""
    shots = traj.shots()
    F = traj.num_frames
    margins = [0] * (len(shots) + 1)       # margins[i]: frames of crossfade into shot i
    for i, s in enumerate(shots):
        tr = s.get("transition") or {"type": "cut"}
        if i > 0 and tr.get("type") == "crossfade":
            margins[i] = int(round(float(tr["seconds"]) / 2 * traj.fps))
    out = []
    for i in range(len(shots)):
        active = traj.shot_frames(i)
        if active.size == 0:
            out.append(active.astype(np.int64))
            continue
        lo = max(0, int(active[0]) - margins[i])
        hi = min(F, int(active[-1]) + 1 + margins[i + 1])
        out.append(np.arange(lo, hi, dtype=np.int64))
    return out


def scale_intrinsics(K: np.ndarray, native: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """K of a camera of native (width, height) for an image of ``size``; pixel
    centres stay at integer coordinates (the image edges map to each other)."""
    sx, sy = size[0] / native[0], size[1] / native[1]
    K2 = np.array(K, dtype=np.float64, copy=True)
    K2[0, 0] *= sx
    K2[1, 1] *= sy
    K2[0, 1] *= sx
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K2


def check_resolution(resolution) -> tuple[int, int] | None:
    if resolution is None:
        return None
    try:
        w, h = (int(v) for v in resolution)
    except (TypeError, ValueError):
        raise RenderError(f"resolution: expected (width, height), got {resolution!r}") from None
    if w <= 0 or h <= 0:
        raise RenderError(f"resolution: width and height must be positive, got {w}x{h}")
    if w > MAX_RESOLUTION or h > MAX_RESOLUTION:
        raise RenderError(f"resolution: {w}x{h} exceeds the maximum of {MAX_RESOLUTION} pixels per side")
    return w, h


# --------------------------------------------------------------------------- engine side
class _GLPass:
    """One offscreen EGL/OSMesa context at a fixed size with an `MjrContext` and
    `MjvScene` -- the same machinery as `mujoco.Renderer`, but the id pass reads
    colour and depth buffers together so geom ids and depth cost one draw."""

    def __init__(self, model, width: int, height: int):
        import mujoco
        self.mj = mujoco
        self.width, self.height = width, height
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.gl = mujoco.GLContext(width, height)
        self.gl.make_current()
        # No multisampling: ids and depth must not be blended across edges anyway,
        # and on a software rasteriser (llvmpipe) 4x MSAA costs about a third of the
        # frame time (measured 16.5 -> 11.1 ms at 512x512, identical ids and depth).
        samples = model.vis.quality.offsamples
        model.vis.quality.offsamples = 0
        try:
            self.ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        finally:
            model.vis.quality.offsamples = samples
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.ctx)
        self.scene = mujoco.MjvScene(model, maxgeom=10000)
        self.opt = mujoco.MjvOption()
        self.cam = mujoco.MjvCamera()
        self.rect = mujoco.MjrRect(0, 0, width, height)
        f = mujoco.mjtRndFlag
        for flag in (f.mjRND_SHADOW, f.mjRND_REFLECTION, f.mjRND_SKYBOX, f.mjRND_HAZE, f.mjRND_FOG):
            self.scene.flags[flag] = False
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._depth = np.empty((height, width), np.float32)

    def update(self, model, data, K, w2c, near, far):
        mj = self.mj
        self.gl.make_current()
        mj.mjv_updateScene(model, data, self.opt, None, self.cam, mj.mjtCatBit.mjCAT_ALL, self.scene)
        R, t = w2c[:3, :3], w2c[:3, 3]
        pos, fwd, up = -R.T @ t, R[2], -R[1]
        W, H = self.width, self.height
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        left, right = (-0.5 - cx) * near / fx, (W - 0.5 - cx) * near / fx
        top, bottom = (cy + 0.5) * near / fy, -(H - 0.5 - cy) * near / fy
        for cam in self.scene.camera:
            cam.pos[:] = pos
            cam.forward[:] = fwd
            cam.up[:] = up
            cam.frustum_near, cam.frustum_far = near, far
            cam.frustum_center = (left + right) / 2
            cam.frustum_width = (right - left) / 2
            cam.frustum_bottom, cam.frustum_top = bottom, top
            cam.orthographic = 0

    def ids_depth(self, near, far):
        """(segid map (H, W) uint8 or int32: scene geom index + 1 or 0, depth (H, W)
        float32 m along the camera z axis)."""
        mj, f = self.mj, self.mj.mjtRndFlag
        self.scene.flags[f.mjRND_SEGMENT] = True
        self.scene.flags[f.mjRND_IDCOLOR] = True
        mj.mjr_render(self.rect, self.scene, self.ctx)
        mj.mjr_readPixels(self._rgb, self._depth, self.rect, self.ctx)
        self.scene.flags[f.mjRND_SEGMENT] = False
        self.scene.flags[f.mjRND_IDCOLOR] = False
        flipped = self._rgb[::-1]
        if self.scene.ngeom < 255:      # ids fit the red channel: skip the 24-bit decode
            ids = flipped[..., 0]
        else:
            c = flipped.astype(np.int32)
            ids = c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)
        # GL depth buffer -> metres along z: z = n f / (f - d (f - n)), with the
        # denominator written as f (1 - d) + n d, whose terms are exact in float32
        # (1 - d is exact for d >= 1/2), so float32 loses nothing against float64
        d = self._depth[::-1]
        den = (1.0 - d) * np.float32(far)
        den += d * np.float32(near)
        z = np.float32(near * far) / den
        return ids, z

    def rgb(self, sky: bool = True):
        """(lit image (H, W, 3) uint8, sky mask (H, W) bool where nothing was drawn,
        or None when ``sky`` is false: reading the depth buffer is not free)."""
        mj = self.mj
        mj.mjr_render(self.rect, self.scene, self.ctx)
        mj.mjr_readPixels(self._rgb, self._depth if sky else None, self.rect, self.ctx)
        return self._rgb[::-1].copy(), (self._depth[::-1] >= 1.0) if sky else None

    def segid_to_geom(self) -> np.ndarray:
        """(ngeom_scene + 1,) int32: MuJoCo geom id of each id-colour value, -1 else."""
        scn = self.scene
        lut = np.full(max(scn.ngeom + 1, 256), -1, np.int32)
        geom_type = int(self.mj.mjtObj.mjOBJ_GEOM)
        for i in range(scn.ngeom):
            g = scn.geoms[i]
            if g.objtype == geom_type and g.segid >= 0:
                lut[g.segid + 1] = g.objid
        return lut

    def close(self):
        if self.gl is not None:
            self.gl.make_current()
            self.ctx.free()
            self.gl.free()
            self.gl = None


class SceneRenderer:
    """A compiled trajectory world that can be posed at any frame and rendered from
    any OpenCV camera. Holds one `_GLPass` per resolution (reused across frames)."""

    def __init__(self, traj, base_dir=None):
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco
        from sim.mujoco_engine import compile_scene, set_frame
        self.mj = mujoco
        self.traj = traj
        self._set_frame = set_frame
        self.compiled = compile_scene(traj.scene_obj(), base_dir=base_dir)
        self.model = self.compiled.model
        self.data = mujoco.MjData(self.model)
        body_ids = np.asarray(self.compiled.body_ids, dtype=np.int64)
        if body_ids.shape != (len(traj.body_names),):
            raise RenderError(f"compiled scene has {body_ids.shape[0]} bodies, trajectory "
                              f"{len(traj.body_names)}: trajectory and scene description disagree")
        # MuJoCo body -> trajectory index (+1; 0 = none), walking up to the nearest
        # ancestor that is a trajectory body (helper bodies inherit their parent's id).
        m = self.model
        b2t = np.zeros(m.nbody, np.int32)
        b2t[body_ids] = np.arange(1, body_ids.size + 1)
        for b in range(1, m.nbody):     # parents precede children in MuJoCo's body order
            if b2t[b] == 0 and m.body_parentid[b] > 0:
                b2t[b] = b2t[m.body_parentid[b]]
        self.geom_to_seg = b2t[m.geom_bodyid].astype(np.int32)   # (ngeom,) trajectory index + 1
        self.geom_to_seg_ext = np.append(self.geom_to_seg, 0).astype(np.int32)   # [-1] -> 0 (sky)
        T = _GeomTypes()
        curved = np.isin(m.geom_type, [T.mjGEOM_SPHERE, T.mjGEOM_ELLIPSOID, T.mjGEOM_CAPSULE,
                                       T.mjGEOM_CYLINDER])
        self.curved_ext = np.append(curved, False)            # [-1] (sky) -> False
        self._passes: dict[tuple[int, int], _GLPass] = {}
        self.data_gl = mujoco.MjData(self.model)        # posed by the GL worker thread
        self._gl_exec = None
        self._pending: dict = {}
        self._frame = None
        self._dirs: dict = {}
        self._rays_key, self._rays = None, None
        cams = {c["name"]: c for c in traj.scene.get("cameras", [])}
        self.clip = {n: (float(cams.get(n, {}).get("near", 0.05)), float(cams.get(n, {}).get("far", 200.0)))
                     for n in traj.camera_names}

    # ----- posing
    def set_frame(self, frame: int):
        if self._frame != frame:
            self._set_frame(self.compiled, self.data, self.traj, int(frame))
            self._frame = frame

    # ----- GL passes, on one worker thread
    # Every GL call runs on one worker thread that owns the contexts (an EGL context
    # is current in one thread), posing its own `MjData`. MuJoCo releases the GIL in
    # its render calls, so the rasteriser draws frame t + 1 (`prefetch`) while this
    # thread computes the layers of frame t with numpy.
    def _run_gl(self, fn, *args):
        if self._gl_exec is None:
            from concurrent.futures import ThreadPoolExecutor
            self._gl_exec = ThreadPoolExecutor(1, thread_name_prefix="physcut-gl")
        return self._gl_exec.submit(fn, *args)

    def gl(self, width: int, height: int) -> _GLPass:
        """The `_GLPass` of this size (call only on the GL worker thread)."""
        key = (width, height)
        if key not in self._passes:
            self._passes[key] = _GLPass(self.model, width, height)
        return self._passes[key]

    def _ids_depth_job(self, frame, K, w2c, width, height, near, far, exact):
        self._set_frame(self.compiled, self.data_gl, self.traj, int(frame))
        p = self.gl(width, height)
        p.update(self.model, self.data_gl, K, w2c, near, far)
        ids, z = p.ids_depth(near, far)
        lut = p.segid_to_geom()
        geom = lut[ids] if ids.dtype == np.uint8 and lut.size >= 256 else lut[np.minimum(ids, p.scene.ngeom)]
        z[geom < 0] = 0.0
        if exact:
            # The rasteriser tessellates curved primitives; replace their depth by the
            # closed-form ray entry into the geom the id pass says is visible. Flat
            # faces are exact up to the 24-bit depth buffer (~6e-8 z^2 / near).
            hit = np.flatnonzero(self.curved_ext[geom.ravel()])
            if hit.size:
                row, col = np.divmod(hit, width)
                ray = np.empty((hit.size, 3))
                ray[:, 0] = (col - K[0, 2]) / K[0, 0]
                ray[:, 1] = (row - K[1, 2]) / K[1, 1]
                ray[:, 2] = 1.0
                rays = rowmat(ray, w2c[:3, :3])
                origin = -w2c[:3, :3].T @ w2c[:3, 3]
                ze, ok = primitive_depth(self.model, self.data_gl, geom.ravel()[hit], origin, rays)
                z.ravel()[hit[ok]] = ze[ok]
        seg = np.take(self.geom_to_seg_ext, geom)          # index -1 (sky) hits the trailing 0
        return geom, z, seg

    def ids_depth(self, frame, K, w2c, width, height, near, far, exact: bool = True):
        """(geom id (H, W) int32 or -1 on sky, depth z (H, W) float32 m, 0 on sky,
        segmentation (H, W) int32: trajectory body index + 1, 0 on sky) of ``frame``
        seen by an OpenCV camera: one GL draw, both buffers read back together;
        ``exact``: curved primitives get their closed-form depth. Runs on the GL
        worker and uses the result of a matching `prefetch` when there is one."""
        key = (int(frame), K.tobytes(), np.asarray(w2c).tobytes(), width, height, near, far, bool(exact))
        fut = self._pending.pop(key, None)
        if fut is None:
            fut = self._run_gl(self._ids_depth_job, frame, K, w2c, width, height, near, far, bool(exact))
        return fut.result()

    def prefetch(self, frame, K, w2c, width, height, near, far, exact: bool = True):
        """Start `ids_depth` of a frame on the GL worker."""
        key = (int(frame), K.tobytes(), np.asarray(w2c).tobytes(), width, height, near, far, bool(exact))
        while len(self._pending) >= 4:               # prefetches nobody asked for
            self._pending.pop(next(iter(self._pending))).exception()
        if key not in self._pending:
            self._pending[key] = self._run_gl(self._ids_depth_job, frame, K, w2c, width, height, near, far,
                                              bool(exact))

    def lit_rgb(self, frame, K, w2c, width, height, near, far, sky: bool = True):
        """MuJoCo's lit GL pass of ``frame``: (image (H, W, 3) uint8, sky mask or None)."""
        def job():
            self._set_frame(self.compiled, self.data_gl, self.traj, int(frame))
            p = self.gl(width, height)
            p.update(self.model, self.data_gl, K, w2c, near, far)
            return p.rgb(sky)
        return self._run_gl(job).result()

    def pixel_rays(self, K, width, height):
        """Flat (H*W,) float32 x/z and y/z of every pixel centre's camera ray (cached
        per intrinsics and size)."""
        key = ("flat", K.tobytes(), width, height)
        if self._rays_key != key:
            xn = ((np.arange(width) - K[0, 2]) / K[0, 0]).astype(np.float32)
            yn = ((np.arange(height) - K[1, 2]) / K[1, 1]).astype(np.float32)
            self._rays = (np.tile(xn, height), np.repeat(yn, width))
            self._rays_key = key
        return self._rays

    # ----- ray casting
    def _ray_dirs(self, K, width, height):
        key = (K.tobytes(), width, height)
        if key not in self._dirs:
            u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
            d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
            d = d.reshape(-1, 3)
            n = np.linalg.norm(d, axis=1)
            self._dirs = {key: (d / n[:, None], 1.0 / n)}     # unit dirs, cos to the optical axis
        return self._dirs[key]

    def cast(self, K, w2c, width, height, far, normals=False, pixels=None, threads=2):
        """Ray-cast the posed world: (geom id (N,) int32 or -1, z depth (N,) m, world
        normals (N, 3) or None) for all pixels (row-major) or the flat ``pixels``."""
        mj = self.mj
        dirs, cos = self._ray_dirs(K, width, height)
        if pixels is not None:
            dirs, cos = dirs[pixels], cos[pixels]
        R, t = w2c[:3, :3], w2c[:3, 3]
        origin = -R.T @ t
        vec = np.ascontiguousarray(rowmat(dirs, R))   # camera -> world: d_w = R^T d_c
        n = vec.shape[0]
        geom = np.empty(n, np.int32)
        dist = np.empty(n, np.float64)
        nrm = np.empty((n, 3), np.float64) if normals else None
        group = np.asarray(mujoco_geomgroup(), np.uint8)

        def run(lo, hi):
            if hi > lo:
                mj.mj_multiRay(self.model, self.data, origin, vec[lo:hi].ravel(), group, 1, -1,
                               geom[lo:hi], dist[lo:hi], None if nrm is None else nrm[lo:hi].ravel(),
                               hi - lo, far)
        if threads > 1 and n > 4096:
            from concurrent.futures import ThreadPoolExecutor
            bounds = np.linspace(0, n, threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(lambda i: run(bounds[i], bounds[i + 1]), range(threads)))
        else:
            run(0, n)
        z = np.where(geom >= 0, dist * cos, 0.0)
        return geom, z, nrm

    def close(self):
        if self._gl_exec is None:
            return
        for fut in self._pending.values():
            fut.exception()                       # wait; a failed prefetch is dropped
        self._pending.clear()

        def free():
            for p in self._passes.values():
                p.close()
            self._passes.clear()
        try:
            self._gl_exec.submit(free).result()
        finally:
            self._gl_exec.shutdown()
            self._gl_exec = None


def mujoco_geomgroup():
    """Geom groups drawn by default by MuJoCo's visualiser (0, 1, 2)."""
    return (1, 1, 1, 0, 0, 0)



# --------------------------------------------------------------------------- exact depth
def _sphere_entry(o, d, r):
    """Entry parameter of rays o + l d into spheres of radius r at the origin (inf: miss)."""
    a = np.einsum("ni,ni->n", d, d)
    b = np.einsum("ni,ni->n", o, d)
    c = np.einsum("ni,ni->n", o, o) - r * r
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = (-b - np.sqrt(disc)) / a
        hi = (-b + np.sqrt(disc)) / a
    ok = disc >= 0
    return np.where(ok, lo, np.inf), np.where(ok, hi, -np.inf)


def _slab(o, d, lo_b, hi_b):
    with np.errstate(invalid="ignore", divide="ignore"):
        t1, t2 = (lo_b - o) / d, (hi_b - o) / d
    t1 = np.where(np.isnan(t1), -np.inf, t1)
    t2 = np.where(np.isnan(t2), np.inf, t2)
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _solid_cylinder_entry(o, d, r, h):
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - r * r
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(a > 0, (-b - np.sqrt(disc)) / a, np.where(c <= 0, -np.inf, np.inf))
        hi = np.where(a > 0, (-b + np.sqrt(disc)) / a, np.where(c <= 0, np.inf, -np.inf))
    lo = np.where(disc >= 0, lo, np.inf)
    hi = np.where(disc >= 0, hi, -np.inf)
    s_lo, s_hi = _slab(o[:, 2], d[:, 2], -h, h)
    enter, leave = np.maximum(lo, s_lo), np.minimum(hi, s_hi)
    return np.where(enter <= leave, enter, np.inf)


def primitive_depth(model, data, geom: np.ndarray, origin: np.ndarray, rays_world: np.ndarray):
    """Exact ray entry of each ray into its geom (sphere, ellipsoid, capsule, cylinder,
    box, plane), by closed form. ``rays_world`` (N, 3) are camera rays scaled to unit
    camera-z, so the returned parameter is the depth along the camera z axis.
    Returns (z (N,), ok (N,) bool); not ok for meshes, height fields and misses."""
    T = _GeomTypes()
    gtype = model.geom_type[geom]
    size = model.geom_size[geom]
    R = data.geom_xmat[geom].reshape(-1, 3, 3)
    o = np.einsum("nji,nj->ni", R, origin[None, :] - data.geom_xpos[geom])
    d = np.einsum("nji,nj->ni", R, rays_world)
    z = np.full(len(geom), np.inf)
    m = gtype == T.mjGEOM_SPHERE
    if m.any():
        z[m] = _sphere_entry(o[m], d[m], size[m, 0])[0]
    m = gtype == T.mjGEOM_ELLIPSOID
    if m.any():
        z[m] = _sphere_entry(o[m] / size[m], d[m] / size[m], 1.0)[0]
    m = gtype == T.mjGEOM_CAPSULE
    if m.any():
        oo, dd, s = o[m], d[m], size[m]
        cap = np.stack([np.zeros_like(s[:, 1]), np.zeros_like(s[:, 1]), s[:, 1]], 1)
        top = _sphere_entry(oo - cap, dd, s[:, 0])[0]
        bot = _sphere_entry(oo + cap, dd, s[:, 0])[0]
        z[m] = np.minimum(np.minimum(top, bot), _solid_cylinder_entry(oo, dd, s[:, 0], s[:, 1]))
    m = gtype == T.mjGEOM_CYLINDER
    if m.any():
        z[m] = _solid_cylinder_entry(o[m], d[m], size[m, 0], size[m, 1])
    m = gtype == T.mjGEOM_BOX
    if m.any():
        oo, dd, s = o[m], d[m], size[m]
        enter, leave = np.full(len(oo), -np.inf), np.full(len(oo), np.inf)
        for k in range(3):
            a, b = _slab(oo[:, k], dd[:, k], -s[:, k], s[:, k])
            enter, leave = np.maximum(enter, a), np.minimum(leave, b)
        z[m] = np.where(enter <= leave, enter, np.inf)
    m = gtype == T.mjGEOM_PLANE
    if m.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            z[m] = np.where(d[m, 2] * o[m, 2] < 0, -o[m, 2] / d[m, 2], np.inf)
    ok = np.isfinite(z) & (z > 0)
    return z, ok


# --------------------------------------------------------------------------- one frame
@dataclass
class FrameView:
    """Everything the layers of one frame share, computed lazily and at most once.

    frame: global frame index; shot: shot index; K (3, 3) at (width, height);
    w2c (4, 4) OpenCV world-to-camera; near/far: clip distances of the shot camera.
    """
    r: SceneRenderer
    frame: int
    shot: int
    camera: int
    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int
    near: float
    far: float
    options: dict
    backend: str = "gl"

    @property
    def traj(self):
        return self.r.traj

    @cached_property
    def _raw(self):
        """(geom id (H, W) int32 or -1, depth z (H, W) float32 (0 on sky), segmentation
        (H, W) int32)."""
        self.r.set_frame(self.frame)
        if self.backend == "ray":
            geom, z, _ = self.r.cast(self.K, self.w2c, self.width, self.height, self.far)
            geom = geom.reshape(self.height, self.width)
            return geom, z.reshape(self.height, self.width).astype(np.float32), self.r.geom_to_seg_ext[geom]
        # exact_depth False: raw rasterised depth (benchmarks)
        return self.r.ids_depth(self.frame, self.K, self.w2c, self.width, self.height, self.near, self.far,
                                self.options.get("exact_depth", True))

    @property
    def geom(self) -> np.ndarray:
        return self._raw[0]

    @property
    def depth(self) -> np.ndarray:
        """(H, W) float64, metres along the camera z axis; 0 on sky."""
        return self._raw[1]

    @cached_property
    def segmentation(self) -> np.ndarray:
        """(H, W) int32, trajectory body index + 1, 0 on sky."""
        return self._raw[2]

    @cached_property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 lit preview; the sky is a gradient by ray elevation."""
        if self.backend == "ray":
            _ = self._raw
        args = (self.frame, self.K, self.w2c, self.width, self.height, self.near, self.far)
        if "_raw" in self.__dict__:          # the id pass already says where the sky is
            img, _ = self.r.lit_rgb(*args, sky=False)
            idx = np.flatnonzero(self.geom.ravel() < 0)
        else:
            img, sky = self.r.lit_rgb(*args)
            idx = np.flatnonzero(sky)
        sky_fill(img, idx, self.K, self.w2c)
        return img

    @cached_property
    def normals(self) -> np.ndarray:
        """(H, W, 3) float32 exact camera-frame normals (see `bridge.layers.normals`)."""
        from .layers import camera_normals
        return camera_normals(self)

    @cached_property
    def surface(self):
        """Face ids and normals shared by the normals and shaded rgb layers
        (see `bridge.layers.Surface`)."""
        from .layers import Surface
        return Surface(self)

    @cached_property
    def rays_cam(self) -> np.ndarray:
        """(H, W, 3) float64, (x/z, y/z, 1) of each pixel centre in the camera frame."""
        u = (np.arange(self.width) - self.K[0, 2]) / self.K[0, 0]
        v = (np.arange(self.height) - self.K[1, 2]) / self.K[1, 1]
        out = np.empty((self.height, self.width, 3))
        out[..., 0] = u[None, :]
        out[..., 1] = v[:, None]
        out[..., 2] = 1.0
        return out

    @cached_property
    def points_world(self) -> np.ndarray:
        """(H, W, 3) float64, world point seen at each pixel (meaningless on sky)."""
        # P = R^T (z (x_n, y_n, 1) - t): separable in rows and columns, so three
        # (H, W) multiply-adds instead of a per-pixel matrix product.
        R, t = self.w2c[:3, :3], self.w2c[:3, 3]
        xn = (np.arange(self.width) - self.K[0, 2]) / self.K[0, 0]
        yn = (np.arange(self.height) - self.K[1, 2]) / self.K[1, 1]
        z = self.depth
        out = np.empty((self.height, self.width, 3))
        origin = -R.T @ t
        for i in range(3):
            out[..., i] = z * (R[0, i] * xn[None, :] + (R[1, i] * yn + R[2, i])[:, None]) + origin[i]
        return out

    @property
    def c2w(self) -> np.ndarray:
        return np.linalg.inv(self.w2c)


def frame_views(r: SceneRenderer, frames, shot: int, camera: int, K, width: int, height: int,
                near: float, far: float, options: dict, backend: str = "gl"):
    """`FrameView` of each of ``frames`` seen by trajectory camera ``camera``; with the
    GL backend the id + depth pass of the next frame (with its exact curved depth and
    segmentation ids) is drawn on the GL worker while the caller computes the layers
    of the current one (measured on 2 cores, all layers: 512x512 37 -> 55 fps,
    256x256 90 -> 125 fps)."""
    w2c = r.traj.camera_w2c
    for i, f in enumerate(frames):
        if backend == "gl" and i + 1 < len(frames):
            g = int(frames[i + 1])
            r.prefetch(g, K, w2c[g, camera], width, height, near, far, options.get("exact_depth", True))
        yield FrameView(r, int(f), shot, camera, K, w2c[f, camera], width, height, near, far,
                        options, backend)


def sky_packed(K: np.ndarray, w2c: np.ndarray, W: int, H: int, cache=None) -> np.ndarray:
    """(H, W) uint32 RGBA (little-endian) sky gradient by ray elevation, horizon ..
    zenith colours. The elevation is quantised to 1/4096 (below one colour level)
    and looked up; ``cache`` (any object) keeps the per-K ray norms between frames."""
    key = ("_sky_norm", K.tobytes(), W, H)
    store = getattr(cache, "__dict__", {}) if cache is not None else {}
    if store.get("_sky_key") != key:
        xn = ((np.arange(W) - K[0, 2]) / K[0, 0]).astype(np.float32)
        yn = ((np.arange(H) - K[1, 2]) / K[1, 1]).astype(np.float32)
        store["_sky_inv"] = (np.float32(SKY_LEVELS) /
                             np.sqrt(xn[None, :] ** 2 + (yn ** 2 + 1.0)[:, None])).astype(np.float32)
        store["_sky_xy"] = (xn, yn)
        store["_sky_key"] = key
    inv, (xn, yn) = store["_sky_inv"], store["_sky_xy"]
    R = w2c[:3, :3]
    # world-z of the unit ray: separable in rows and columns before the norm
    dz = np.float32(R[0, 2]) * xn[None, :] + (np.float32(R[1, 2]) * yn + np.float32(R[2, 2]))[:, None]
    dz *= inv
    idx = np.clip(dz, 0, SKY_LEVELS).astype(np.int32)
    return np.take(_sky_lut(), idx)


SKY_LEVELS = 4096


def _sky_lut() -> np.ndarray:
    global _SKY_LUT
    if _SKY_LUT is None:
        t = np.sqrt((np.arange(SKY_LEVELS + 1) + 0.5) / (SKY_LEVELS + 1))[:, None]
        c = (SKY_HORIZON * (1 - t) + SKY_ZENITH * t + 0.5).astype(np.uint32)
        _SKY_LUT = c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16) | np.uint32(0xFF000000)
    return _SKY_LUT


_SKY_LUT = None


def sky_fill(img: np.ndarray, idx: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> None:
    """Paint the flat pixel indices ``idx`` of ``img`` (H, W, 3) with the sky gradient
    (see `sky_packed`)."""
    if not idx.size:
        return
    H, W = img.shape[:2]
    sky = sky_packed(K, w2c, W, H).view(np.uint8).reshape(H, W, 4)[..., :3]
    img.reshape(-1, 3)[idx] = sky.reshape(-1, 3)[idx]


# --------------------------------------------------------------------------- render
def _as_trajectory(traj):
    from sim.trajectory import TRAJECTORY_SCHEMA, Trajectory, TrajectoryError
    if isinstance(traj, (str, os.PathLike)):
        return Trajectory.load(traj)
    if not isinstance(traj, Trajectory):
        raise RenderError(f"trajectory: expected a sim.Trajectory or a path, got {type(traj).__name__}")
    if traj.schema_version != TRAJECTORY_SCHEMA:
        raise TrajectoryError(f"field 'schema_version': unsupported trajectory schema version "
                              f"{traj.schema_version!r} (this physcut reads {TRAJECTORY_SCHEMA})")
    if not traj.shots():
        raise RenderError("trajectory: its scene has no shots")
    return traj


def golden_palette(n_bodies: int) -> np.ndarray:
    """(n_bodies + 1, 3) uint8: row 0 (sky) black, then golden-ratio hues so that
    neighbouring ids get distant colours; the same for every shot."""
    import colorsys
    out = np.zeros((n_bodies + 1, 3), np.uint8)
    for i in range(n_bodies):
        h = (0.137 + i * 0.6180339887498949) % 1.0
        s = 0.55 + 0.35 * ((i * 7) % 3) / 2
        v = 0.95 - 0.25 * ((i * 5) % 2)
        out[i + 1] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def render(traj, layers=None, resolution=None, progress: bool = False, *, seed: int = 0,
           latent_factor: int = 8, noise_cell: float | None = None, noise_kind: str = "point",
           noise_period: int | None = None, noise_means: str = "none", backend: str = "gl",
           shots=None, frames=None, base_dir=None, audio: bool = True,
           rgb: str = "shaded") -> Conditioning:
    """Render conditioning maps for every shot of ``traj``.

    Args:
        traj: a `Trajectory` or the path of a saved one.
        layers: names from `LAYERS` (default: every built-in layer, see
            `bridge.layers.default_layers`).
        resolution: (width, height); default each shot camera's native size. At most
            `MAX_RESOLUTION` per side. Intrinsics are scaled to it.
        progress: tqdm bar over frames.
        seed: seed of the anchored noise; latent_factor: pixels per latent cell of
            the ``noise`` layer; noise_cell: fixed surface cell size (m) it is anchored
            to, or None for cells following the latent footprint; noise_kind: "point" (one
            cell per latent pixel) or "integral" (noise integrated over each latent pixel's
            footprint: far better anchored across views, slower; see `bridge.noise`);
            noise_period: None (a surface has the same noise in every frame) or P (fresh
            cells in each of P consecutive frames, repeating every P frames: temporally
            white within a P-frame model window, the same draws for a surface in every
            shot; give a video model's window length); noise_means: "none", "body"
            or "octaves" (the noise's mean over each body, and with "octaves" over each
            anchor cell of every coarser octave, drawn from the surface: its low
            frequencies follow the surface from shot to shot, and it stays white;
            "Anchored means" in `bridge.noise`).
        backend: "gl" (rasterised ids + depth) or "ray" (`mj_multiRay`).
        shots: optional subset of shot indices; frames: optional (lo, hi) global
            frame window each shot's frames are clipped to (for quick previews/tests).
        base_dir: folder that relative mesh paths of the scene resolve against.
        audio: synthesise the contact audio track (needs `bridge.audio`).
        rgb: "shaded" (preview shaded from exact normals, one GL pass per frame in
            all) or "gl" (MuJoCo's lit GL pass).
    """
    traj = _as_trajectory(traj)
    size = check_resolution(resolution)
    names = layer_names(layers)
    if backend not in ("gl", "ray"):
        raise RenderError(f"backend: unknown backend '{backend}' (choices: gl, ray)")
    if int(latent_factor) < 1:
        raise RenderError(f"latent_factor: must be >= 1, got {latent_factor}")
    if noise_cell is not None and not float(noise_cell) > 0:
        raise RenderError(f"noise_cell: must be > 0 (metres) or None, got {noise_cell}")
    if noise_kind not in NOISE_KINDS:
        raise RenderError(f"noise_kind: unknown kind '{noise_kind}' (choices: {', '.join(NOISE_KINDS)})")
    if noise_period is not None and (isinstance(noise_period, bool) or not isinstance(noise_period, (int, np.integer))
                                     or noise_period < 1):
        raise RenderError(f"noise_period: must be a whole number of frames >= 1 or None, got {noise_period!r}")
    if noise_means not in NOISE_MEANS:
        raise RenderError(f"noise_means: unknown regions {noise_means!r} (choices: {', '.join(NOISE_MEANS)})")
    if rgb not in ("shaded", "gl"):
        raise RenderError(f"rgb: unknown preview mode '{rgb}' (choices: shaded, gl)")
    options = {"seed": int(seed), "latent_factor": int(latent_factor),
               "noise_cell": None if noise_cell is None else float(noise_cell), "noise_kind": noise_kind,
               "noise_period": None if noise_period is None else int(noise_period), "noise_means": noise_means,
               "rgb": rgb}
    shot_list = traj.shots()
    ranges = shot_frame_ranges(traj)
    wanted = range(len(shot_list)) if shots is None else [int(s) for s in shots]
    for s in wanted:
        if not 0 <= s < len(shot_list):
            raise RenderError(f"shots: shot {s} does not exist (the scene has {len(shot_list)})")
    jobs = []
    for s in wanted:
        fr = ranges[s]
        if frames is not None:
            fr = fr[(fr >= frames[0]) & (fr < frames[1])]
        if fr.size:
            jobs.append((s, fr))
    if not jobs:
        raise RenderError(f"frames: the window {frames} holds no frame of the requested shots")
    total = sum(len(fr) for _, fr in jobs)

    r = SceneRenderer(traj, base_dir=base_dir)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="frame", desc="render")
    shot_out = []
    try:
        for s, fr in jobs:
            shot = shot_list[s]
            cam = traj.camera_names.index(shot["camera"])
            native = tuple(int(v) for v in traj.camera_size[cam])
            W, H = size or native
            K = scale_intrinsics(traj.camera_K[cam], native, (W, H))
            near, far = r.clip[shot["camera"]]
            arrays: dict[str, np.ndarray] = {}       # (T, ...) per output, filled frame by frame
            for i, view in enumerate(frame_views(r, fr, s, cam, K, W, H, near, far, options, backend)):
                for name in names:
                    spec = LAYERS[name]
                    if spec.per == "frame":
                        for k, v in spec.fn(view).items():
                            v = np.asarray(v)
                            if k not in arrays:
                                arrays[k] = np.empty((len(fr),) + v.shape, v.dtype)
                            arrays[k][i] = v
                if bar is not None:
                    bar.update(1)
            Ks = np.repeat(K[None], len(fr), axis=0)
            w2cs = traj.camera_w2c[fr, cam].copy()
            ctx = {"traj": traj, "frames": fr, "K": Ks, "w2c": w2cs, "width": W, "height": H,
                   "shot": s, "options": options}
            for name in names:
                spec = LAYERS[name]
                if spec.per == "shot":
                    arrays.update(spec.fn(ctx))
                if spec.post is not None:
                    arrays.update(spec.post(arrays, ctx))
            shot_out.append(ShotConditioning(s, shot["camera"], fr, Ks, w2cs, arrays,
                                             dict(shot.get("transition") or {"type": "cut"}),
                                             shot.get("prompt", "")))
    finally:
        if bar is not None:
            bar.close()
        r.close()

    audio_arr, events, audio_note = _audio(traj, seed) if audio else (None, [], "disabled")
    if audio_arr is None:
        n = int(round(traj.num_frames / traj.fps * SAMPLE_RATE))
        audio_arr = np.zeros((2, n), np.float32)
    meta = {"engine": traj.engine, "seed": traj.seed, "render_seed": int(seed), "layers": list(names),
            "resolution": list(size) if size else None, "backend": backend, "audio": audio_note,
            "rgb": rgb, "body_kind": list(traj.body_kind),
            "latent_factor": int(latent_factor), "noise_cell": options["noise_cell"],
            "noise": noise_design(noise_kind, options["noise_period"], noise_means),
            "depth_vis_range": {str(sc.shot): sc.layers.pop("_depth_vis_range").tolist()
                                for sc in shot_out if "_depth_vis_range" in sc.layers}}
    return Conditioning(shot_out, int(traj.fps), traj.num_frames, audio_arr, SAMPLE_RATE, events,
                        tuple(traj.body_names), golden_palette(len(traj.body_names)),
                        traj.scene_hash, meta)


def _audio(traj, seed):
    """(audio (2, S) float32, events, note); the synthesiser lives in `bridge.audio`."""
    try:
        from . import audio as audio_mod
    except ImportError as e:
        return None, [], f"unavailable ({e})"
    audio_arr, events = audio_mod.synthesize(traj, sample_rate=SAMPLE_RATE, seed=seed)
    return np.asarray(audio_arr, np.float32), list(events), "modal contact synthesis"


def render_to_dir(traj, out_dir, layers=None, resolution=None, progress: bool = True, **kw) -> Path:
    """Render and write everything `physcut render` produces into ``out_dir``."""
    from .exports import export_all
    return export_all(traj, out_dir, layers=layers, resolution=resolution, progress=progress, **kw)
