"""Conditioning layers: a registry of one function per layer.

A frame layer is ``fn(view: FrameView) -> dict[name, array]`` for one frame (the
arrays are stacked over the shot's frames); a shot layer is ``fn(ctx) -> dict`` for
a whole shot. ``post(arrays, ctx)`` may derive shot-normalised arrays (depth_vis).
Adding a layer is one decorated function::

    @register_layer("albedo")
    def albedo(view):
        return {"albedo": view.rgb}

Array shapes and units are documented in `bridge.conditioning`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


def first3(a: np.ndarray) -> np.ndarray:
    """Contiguous copy of the first 3 of 4 channels of ``a`` (..., 4): one strided
    copy per channel is several times faster than numpy's generic strided copy."""
    out = np.empty(a.shape[:-1] + (3,), a.dtype)
    for k in range(3):
        out[..., k] = a[..., k]
    return out


def rowmat(a: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``a @ M`` for (N, 3) rows and a 3x3 ``M`` without BLAS: for such thin
    products a multithreaded BLAS spends more time waking threads than computing
    (measured 6x slower on a loaded 2-core machine)."""
    M = M.astype(a.dtype, copy=False)
    return a[:, 0:1] * M[0] + a[:, 1:2] * M[1] + a[:, 2:3] * M[2]


class RenderError(ValueError):
    """Bad input to the renderer (resolution, layer name, trajectory)."""


@dataclass(frozen=True)
class LayerSpec:
    name: str
    fn: Callable
    per: str = "frame"                  # "frame" or "shot"
    post: Optional[Callable] = None
    doc: str = ""


LAYERS: dict[str, LayerSpec] = {}


def register_layer(name: str, *, per: str = "frame", post: Callable | None = None):
    """Decorator: register a layer renderer under ``name``."""
    if per not in ("frame", "shot"):
        raise ValueError(f"per: expected 'frame' or 'shot', got {per!r}")

    def deco(fn):
        if name in LAYERS and LAYERS[name].fn is not fn:
            raise ValueError(f"layer '{name}' is already registered")
        LAYERS[name] = LayerSpec(name, fn, per, post, (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def _audio_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("bridge.audio") is not None


def default_layers() -> tuple[str, ...]:
    """Every built-in layer; ``events`` only when `bridge.audio` is installed."""
    names = ("depth", "segmentation", "albedo", "normals", "pose", "flow", "rgb", "noise", "events")
    return tuple(n for n in names if n in LAYERS and (n != "events" or _audio_available()))


def layer_names(layers) -> tuple[str, ...]:
    if layers is None:
        return default_layers()
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s]
    out = []
    for n in layers:
        if n not in LAYERS:
            raise RenderError(f"layers: unknown layer '{n}' (choices: {', '.join(sorted(LAYERS))})")
        if n not in out:
            out.append(n)
    if not out:
        raise RenderError("layers: no layer requested")
    return tuple(out)


# --------------------------------------------------------------------------- depth
def _depth_vis(arrays, ctx):
    """Normalised inverse depth over the whole shot (no per-frame flicker): the 1st
    and 99th percentiles of 1/z map to black .. white, near = bright."""
    z = arrays["depth"]
    # the percentiles from about 200k pixels spread over the shot
    zs = z.ravel()[:: max(1, z.size // 400000)]
    zs = zs[zs > 0]
    if zs.size:
        lo, hi = np.percentile(np.float32(1.0) / zs, [1.0, 99.0])
        if hi - lo < 1e-9:
            lo, hi = lo * 0.5, hi * 1.5 + 1e-9
    else:
        lo, hi = 0.0, 1.0
    # frame by frame: the float temporaries of one frame stay in cache
    v16 = np.empty(z.shape, np.uint16)
    v8 = np.empty(z.shape + (3,), np.uint8)
    scale = np.float32(1.0 / (hi - lo))
    t = np.empty(z.shape[1:], np.float32)
    for i in range(z.shape[0]):
        with np.errstate(divide="ignore"):
            np.divide(np.float32(1.0), z[i], out=t)        # inf on sky (z = 0): fixed below
        t -= np.float32(lo)
        t *= scale
        np.clip(t, 0.0, 1.0, out=t)
        t[z[i] <= 0] = 0.0                                 # sky: black
        t *= np.float32(65535)
        t += np.float32(0.5)
        v16[i] = t                                         # float -> uint16 truncates: rounded
        t *= np.float32(255.0 / 65535.0)
        t += np.float32(0.5 - 0.5 * 255.0 / 65535.0)
        for k in range(3):
            v8[i, ..., k] = t
    return {"depth_vis": v8, "depth_vis16": v16,
            "_depth_vis_range": np.array([1.0 / hi, 1.0 / max(lo, 1e-12)])}


@register_layer("depth", post=_depth_vis)
def depth(view):
    """Metric depth along the camera z axis (float32 m, 0 on sky) + depth_vis/16."""
    return {"depth": view.depth.astype(np.float32)}


# --------------------------------------------------------------------------- segmentation
@register_layer("segmentation")
def segmentation(view):
    """Instance ids (body index + 1, 0 = sky) and their fixed-palette colours."""
    from .render import golden_palette
    seg = view.segmentation
    pal = view.options.get("_palette32")
    if pal is None:      # RGBA packed in one uint32: a 1-D gather instead of a row gather
        c = golden_palette(len(view.traj.body_names)).astype(np.uint32)
        pal = view.options["_palette32"] = c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16)
    rgb = first3(np.take(pal, seg).view(np.uint8).reshape(*seg.shape, 4))
    return {"segmentation": seg, "segmentation_rgb": rgb}


# --------------------------------------------------------------------------- albedo
@register_layer("albedo")
def albedo(view):
    """Base colour (unlit geom RGB, the material colour of the scene) of the visible
    surface; black on sky."""
    pal = view.options.get("_albedo32")
    if pal is None:      # (ngeom + 1,) packed RGBA; index -1 (sky) hits the trailing black
        m = view.r.model
        pal = view.options["_albedo32"] = np.append(_pack_rgb(m.geom_rgba[:, :3]), np.uint32(0xFF000000))
    g = view.geom
    return {"albedo": first3(np.take(pal, g).view(np.uint8).reshape(*g.shape, 4))}


# --------------------------------------------------------------------------- normals
def geom_normals(model, data, geom: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact world normals of primitive geoms at surface points ``pts`` (N, 3).

    Returns (normals (N, 3) float32, ok (N,) bool); ``ok`` is false for geoms
    without a closed form (meshes, height fields), which callers ray-cast instead.
    """
    T = _GeomTypes()
    gtype = model.geom_type[geom]
    n = np.zeros((len(geom), 3), np.float32)
    ok = np.zeros(len(geom), bool)
    xmat = data.geom_xmat.astype(np.float32).reshape(-1, 3, 3)
    for kind in np.unique(gtype):
        idx = np.flatnonzero(gtype == kind)
        g = geom[idx]
        if kind == T.mjGEOM_PLANE:
            n[idx] = xmat[g, :, 2]
            ok[idx] = True
            continue
        if kind not in (T.mjGEOM_SPHERE, T.mjGEOM_ELLIPSOID, T.mjGEOM_CAPSULE, T.mjGEOM_CYLINDER,
                        T.mjGEOM_BOX):
            continue
        # float32 is ample for a direction and halves the memory traffic of the gathers
        Rg = xmat[g]
        s = model.geom_size[g].astype(np.float32)
        p = np.einsum("nji,nj->ni", Rg, (pts[idx] - data.geom_xpos[g]).astype(np.float32))  # geom-local
        if kind == T.mjGEOM_SPHERE:
            nl = p
        elif kind == T.mjGEOM_ELLIPSOID:
            nl = p / np.square(s)
        elif kind == T.mjGEOM_CAPSULE:
            nl = p.copy()
            nl[:, 2] -= np.clip(p[:, 2], -s[:, 1], s[:, 1])
        elif kind == T.mjGEOM_CYLINDER:
            radial = np.hypot(p[:, 0], p[:, 1])
            side = np.abs(radial - s[:, 0]) < np.abs(np.abs(p[:, 2]) - s[:, 1])
            nl = np.zeros_like(p)
            nl[side, :2] = p[side, :2]
            nl[~side, 2] = np.sign(p[~side, 2])
        else:                                            # box: the face of the largest scaled coordinate
            axis = np.argmax(np.abs(p) / s, axis=1)
            r = np.arange(len(p))
            # the world normal is +-1 times a column of the geom's rotation: no product needed
            n[idx] = Rg[r, :, axis] * np.sign(p[r, axis])[:, None]
            ok[idx] = True
            continue
        nw = np.einsum("nij,nj->ni", Rg, nl)
        n[idx] = nw / np.maximum(np.linalg.norm(nw, axis=1, keepdims=True), 1e-12)
        ok[idx] = True
    return n, ok


@register_layer("normals")
def normals(view):
    """Unit surface normals in the OpenCV camera frame (float32, 0 on sky); exact for
    primitives, ray-cast (`mj_multiRay`) for meshes."""
    return {"normals": view.normals}


class Surface:
    """What the normals and the shaded preview of one frame share.

    Every flat face in view (box faces, planes) has one camera-frame normal and one
    shaded colour, so those pixels are a table lookup by face id; only pixels of
    curved geoms (and meshes) get per-pixel normals.

    fid: (H*W,) int32 face id, ``(geom + 1) * 6 + face`` (face = 2 axis + (side < 0));
    face_normal: (G*6, 4) float32 camera-frame normal of each face id (4th column
    padding; sky and curved rows zero); other: (N,) flat indices of pixels on
    curved geoms or meshes, other_normal: (N, 3) float32 their camera-frame normals.
    """

    def __init__(self, view):
        T = _GeomTypes()
        m, d = view.r.model, view.r.data
        view.r.set_frame(view.frame)
        H, W = view.height, view.width
        geom = view.geom.ravel()
        z = view.depth.ravel()
        R, t = view.w2c[:3, :3], view.w2c[:3, 3]
        G = m.ngeom + 1                                    # row 0: sky
        gtype = np.full(G, -1)
        gtype[1:] = m.geom_type
        box, plane = gtype == T.mjGEOM_BOX, gtype == T.mjGEOM_PLANE
        # camera-from-geom rotations Q and geom centres c in the camera frame
        Q = np.zeros((G, 3, 3))
        Q[1:] = R @ d.geom_xmat.reshape(-1, 3, 3)
        c = np.zeros((G, 3))
        c[1:] = d.geom_xpos @ R.T + t
        size = np.ones((G, 3))
        size[1:] = m.geom_size
        gi = (geom + 1).astype(np.intp)
        self.fid = gi.astype(np.int32) * 6
        bidx = np.flatnonzero(box[gi])
        if bidx.size:
            # geom-local coordinates of the surface point behind each box pixel,
            # p_k = z (Q_0k x_n + Q_1k y_n + Q_2k) - (Q^T c)_k; the face is the axis of
            # the largest |p_k| / size_k, its side the sign of p_k. The four per-geom
            # factors of each k are gathered at once as one 16-byte element.
            xn, yn = view.r.pixel_rays(view.K, W, H)
            xb, yb, zb = xn[bidx], yn[bidx], z[bidx]
            gb = gi[bidx]
            tab = np.zeros((G, 4, 4), np.float32)          # [g, k] = (Q_0k, Q_1k, Q_2k, (Q^T c)_k)
            tab[:, :3, :3] = Q.transpose(0, 2, 1)
            tab[:, :3, 3] = np.einsum("gji,gj->gi", Q, c)
            tab[:, 3, :3] = np.divide(1.0, size, out=np.zeros_like(size), where=box[:, None])
            tab[~box] = 0.0
            flat = tab.view(np.complex128)[..., 0]         # (G, 4)
            p, a = [], []
            inv = np.take(flat[:, 3], gb).view(np.float32).reshape(-1, 4)
            for k in range(3):
                f = np.take(flat[:, k], gb).view(np.float32).reshape(-1, 4)
                pk = zb * (f[:, 0] * xb + f[:, 1] * yb + f[:, 2]) - f[:, 3]
                p.append(pk)
                a.append(np.abs(pk) * inv[:, k])
            ax1 = a[1] > a[0]
            ax2 = a[2] > np.maximum(a[0], a[1])
            neg = np.where(ax2, p[2] < 0, np.where(ax1, p[1] < 0, p[0] < 0))
            face = np.where(ax2, 4, ax1 * np.int32(2)).astype(np.int32) + neg
            self.fid[bidx] += face
        # the face table: outward normal +-Q[:, axis] of box faces, Q[:, 2] of planes,
        # each turned towards the camera (constant over a flat face: the camera is on
        # one side of its plane)
        fn = np.zeros((G, 6, 3))
        fc = np.zeros((G, 6, 3))
        for k in range(3):
            for side, sign in ((0, 1.0), (1, -1.0)):
                fn[:, 2 * k + side] = sign * Q[:, :, k]
                fc[:, 2 * k + side] = c + sign * size[:, k:k + 1] * Q[:, :, k]
        fn[plane] = Q[plane, None, :, 2]
        fc[plane] = c[plane, None, :]
        fn[~(box | plane)] = 0.0
        flip = np.einsum("gfi,gfi->gf", fn, fc) > 0
        fn[flip] *= -1
        self.face_normal = np.zeros((G * 6, 4), np.float32)
        self.face_normal[:, :3] = fn.reshape(-1, 3)
        # curved geoms and meshes: closed-form normals per pixel
        other = ~(box | plane)
        other[0] = False
        self.other = np.flatnonzero(other[gi])
        self.other_normal = np.zeros((0, 3), np.float32)
        if self.other.size:
            hit = self.other
            K = view.K
            row, col = np.divmod(hit, W)
            ray = np.empty((hit.size, 3))                  # camera-frame ray (x/z, y/z, 1)
            ray[:, 0] = (col - K[0, 2]) / K[0, 0]
            ray[:, 1] = (row - K[1, 2]) / K[1, 1]
            ray[:, 2] = 1.0
            pts = rowmat(ray * z[hit, None], R) + (-R.T @ t)     # world points
            nw, ok = geom_normals(m, d, geom[hit], pts)
            if not ok.all():
                px = hit[~ok]
                g, _, nr = view.r.cast(view.K, view.w2c, W, H, view.far, normals=True, pixels=px)
                nw[~ok] = np.where((g >= 0)[:, None], nr, nw[~ok])
            nc = rowmat(nw, R.T)
            # face the camera (a ray hits the outside)
            flip = np.einsum("ni,ni->n", nc, ray.astype(np.float32)) > 0
            nc[flip] *= -1
            self.other_normal = nc.astype(np.float32)

    def gather(self, table: np.ndarray) -> np.ndarray:
        """(H*W, ...) rows of a per-face-id ``table``; 16-byte rows are gathered as
        one complex128 each (a 1-D take: several times faster than a row gather)."""
        if table.dtype == np.float32 and table.shape[1:] == (4,):
            return np.take(table.view(np.complex128).ravel(), self.fid).view(np.float32).reshape(-1, 4)
        return np.take(table, self.fid, axis=0)


def camera_normals(view) -> np.ndarray:
    """(H, W, 3) float32 camera-frame normals of a `FrameView` (see `normals`)."""
    s = view.surface
    out = first3(s.gather(s.face_normal))
    if s.other.size:
        out[s.other] = s.other_normal
    return out.reshape(view.height, view.width, 3)


# --------------------------------------------------------------------------- pose
#: OpenPose-18 keypoint built from COCO-17 (index, or a pair averaged: the neck).
_OP_FROM_COCO = (0, (5, 6), 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
#: OpenPose limbs (0-based) and colours, the convention pose ControlNets were trained on.
OPENPOSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
                  (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
OPENPOSE_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
                   (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
                   (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
                   (255, 0, 255), (255, 0, 170), (255, 0, 85))
#: A joint centre lies inside its limb; the visible surface in front of it is at
#: most about this far (m) nearer to the camera unless something else occludes it.
POSE_DEPTH_TOLERANCE = 0.2


def project_keypoints(kp_world: np.ndarray, K: np.ndarray, w2c: np.ndarray, depth: np.ndarray | None,
                      near: float = 0.05, tol: float = POSE_DEPTH_TOLERANCE) -> np.ndarray:
    """(C, 17, 3) world keypoints -> (C, 17, 3) float32 (u, v, visible).

    Visible: in front of the camera, inside the image, and not behind the depth map
    by more than ``tol`` at its pixel (sky counts as not occluding)."""
    H, W = depth.shape if depth is not None else (None, None)
    pc = kp_world @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[..., 2]
    zs = np.where(np.abs(z) > 1e-9, z, 1e-9)
    u = K[0, 0] * pc[..., 0] / zs + K[0, 1] * pc[..., 1] / zs + K[0, 2]
    v = K[1, 1] * pc[..., 1] / zs + K[1, 2]
    vis = z > near
    if depth is not None:
        iu, iv = np.round(u).astype(np.int64), np.round(v).astype(np.int64)
        inside = (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
        vis &= inside
        d = np.zeros_like(z)
        d[inside] = depth[iv[inside], iu[inside]]
        vis &= (d <= 0) | (d >= z - tol)
    return np.stack([u, v, vis.astype(np.float64)], -1).astype(np.float32)


def _openpose18(person: np.ndarray) -> np.ndarray:
    """(17, 3) COCO (u, v, visible) -> (18, 3) OpenPose order (neck = mid-shoulders)."""
    pts = np.zeros((18, 3))
    for i, src in enumerate(_OP_FROM_COCO):
        if isinstance(src, tuple):
            a, b = person[src[0]], person[src[1]]
            pts[i] = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2])]
        else:
            pts[i] = person[src]
    return pts


def draw_openpose(kp2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenPose-style skeleton image (H, W, 3) uint8 from (C, 17, 3) (u, v, visible)."""
    import cv2
    canvas = np.zeros((height, width, 3), np.uint8)
    limbs = np.zeros_like(canvas)
    scale = max(1.0, min(width, height) / 512)
    stick, radius = max(1, int(round(4 * scale))), max(2, int(round(4 * scale)))
    for person in kp2d:
        pts = _openpose18(person)
        for (a, b), col in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS):
            if pts[a, 2] <= 0 or pts[b, 2] <= 0:
                continue
            (x0, y0), (x1, y1) = pts[a, :2], pts[b, :2]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            length = float(np.hypot(x1 - x0, y1 - y0))
            angle = float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))
            poly = cv2.ellipse2Poly((int(mx), int(my)), (max(1, int(length / 2)), stick), int(angle), 0, 360, 1)
            cv2.fillConvexPoly(limbs, poly, tuple(int(c) for c in col))
    # limbs at 60 % over black as in the OpenPose renderer (blended once for all
    # limbs rather than once per limb: same colours, one full-image pass)
    canvas = cv2.addWeighted(canvas, 0.4, limbs, 0.6, 0)
    for person in kp2d:
        pts = _openpose18(person)
        for i in range(18):
            if pts[i, 2] > 0:
                cv2.circle(canvas, (int(pts[i, 0]), int(pts[i, 1])), radius,
                           tuple(int(c) for c in OPENPOSE_COLORS[i]), thickness=-1)
    return canvas


@register_layer("pose")
def pose(view):
    """COCO-17 keypoints projected with a depth visibility test, drawn as OpenPose."""
    kp = view.traj.keypoints[view.frame]                  # (C, 17, 3)
    kp2d = project_keypoints(kp, view.K, view.w2c, view.depth, view.near)
    return {"pose": draw_openpose(kp2d, view.width, view.height), "keypoints_2d": kp2d}


# --------------------------------------------------------------------------- flow
def _rigid(pos, quat):
    """(B, 4, 4) body-to-world transforms from positions and (w, x, y, z) quats."""
    w, x, y, z = (quat[:, i] for i in range(4))
    T = np.zeros((len(pos), 4, 4))
    T[:, 0, 0] = 1 - 2 * (y * y + z * z)
    T[:, 0, 1] = 2 * (x * y - w * z)
    T[:, 0, 2] = 2 * (x * z + w * y)
    T[:, 1, 0] = 2 * (x * y + w * z)
    T[:, 1, 1] = 1 - 2 * (x * x + z * z)
    T[:, 1, 2] = 2 * (y * z - w * x)
    T[:, 2, 0] = 2 * (x * z - w * y)
    T[:, 2, 1] = 2 * (y * z + w * x)
    T[:, 2, 2] = 1 - 2 * (x * x + y * y)
    T[:, :3, 3] = pos
    T[:, 3, 3] = 1
    return T


def flow_between(view, next_frame: int) -> np.ndarray:
    """(H, W, 2) float32 flow of every pixel of ``view`` to frame ``next_frame`` seen
    by the same camera: each surface point moves rigidly with its body (statics do
    not move); sky pixels move as points at infinity (camera rotation only)."""
    traj, f, g = view.traj, view.frame, int(next_frame)
    cam = view.camera
    w2c1 = traj.camera_w2c[g, cam]
    Kinv4 = np.eye(4)
    Kinv4[:3, :3] = np.linalg.inv(view.K)
    pre = np.linalg.inv(view.w2c) @ Kinv4            # (u z, v z, z, w) -> world
    post = view.K @ w2c1[:3]                         # world -> next image (homogeneous)
    H, W = view.height, view.width
    seg = view.segmentation
    sky = seg == 0
    # Sky pixels are points at infinity: a depth of 1e8 m makes the translation
    # column of A vanish below float32 resolution, exactly as for a direction.
    zz = np.where(sky, np.float32(1e8), view.depth)
    u = np.arange(W, dtype=np.float32)[None, :]
    v = np.arange(H, dtype=np.float32)[:, None]

    # Everything that does not move (statics, sky) shares one matrix; moving bodies
    # are corrected on their own pixels only. Per row k of A: h_k = z (A_k0 u +
    # A_k1 v + A_k2) + A_k3, where the bracket is separable in u and v.
    A = (post @ pre).astype(np.float32)
    h = []
    for k in range(3):
        hk = A[k, 0] * u + (A[k, 1] * v + A[k, 2])      # (H, W) from a row and a column
        hk *= zz
        hk += A[k, 3]
        h.append(hk)
    with np.errstate(divide="ignore"):
        inv = np.float32(1.0) / h[2]
    inv[~np.isfinite(inv)] = np.float32(1e12)
    flow = np.empty((H, W, 2), np.float32)
    h[0] *= inv
    h[1] *= inv
    np.subtract(h[0], u, out=flow[..., 0])
    np.subtract(h[1], v, out=flow[..., 1])
    moving = view.options.get("_moving_ext")
    if moving is None:       # (B + 1,) bool by segmentation id: bodies that move
        moving = view.options["_moving_ext"] = np.array([False] + [k != "static" for k in traj.body_kind])
    mov = np.flatnonzero(moving) - 1
    if mov.size:
        idx = np.nonzero(np.take(moving, seg))
        if idx[0].size:
            T0 = _rigid(traj.body_pos[f, mov], traj.body_quat[f, mov])
            T1 = _rigid(traj.body_pos[g, mov], traj.body_quat[g, mov])
            A = np.zeros((traj.body_pos.shape[1] + 1, 3, 4))
            A[mov + 1] = post @ (T1 @ np.linalg.inv(T0)) @ pre
            b = seg[idx]
            Ab = A[b]                                              # (n, 3, 4)
            uu, vv = idx[1].astype(np.float64), idx[0].astype(np.float64)
            z = zz[idx]
            q = np.stack([uu * z, vv * z, z, np.ones_like(z)], -1)
            hm = np.einsum("nij,nj->ni", Ab, q)
            den = np.where(np.abs(hm[:, 2]) > 1e-12, hm[:, 2], 1e-12)
            flow[idx[0], idx[1], 0] = hm[:, 0] / den - uu
            flow[idx[0], idx[1], 1] = hm[:, 1] / den - vv
    return flow


@register_layer("flow")
def flow(view):
    """Exact forward optical flow t -> t+1 from body and camera motion (pixels);
    the timeline's last frame extrapolates the motion of the interval before it."""
    F = view.traj.num_frames
    if view.frame + 1 < F:
        return {"flow": flow_between(view, view.frame + 1)}
    if F < 2:
        return {"flow": np.zeros((view.height, view.width, 2), np.float32)}
    return {"flow": -flow_between(view, view.frame - 1)}


# --------------------------------------------------------------------------- rgb
@register_layer("rgb")
def rgb(view):
    """Lit preview (no shadows): by default shaded in numpy from the exact normals and
    the geom colours with the model's lights (Lambert + ambient, headlight included),
    which reuses the id + depth pass instead of drawing the scene a second time;
    ``options["rgb"] = "gl"`` uses MuJoCo's lit GL pass instead (shadows,
    reflections, skybox and haze off)."""
    if view.options.get("rgb", "shaded") == "gl":
        return {"rgb": view.rgb}
    return {"rgb": shade(view)}


def lambert(model, data, R: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(N, 3) float32 light (ambient + diffuse, headlight included) reaching unit
    camera-frame normals ``n`` (N, 3) under the model's lights (``data`` posed,
    `mj_camlight` done); ``R`` is the world-to-camera rotation."""
    n = np.asarray(n, np.float32)
    light = np.zeros((n.shape[0], 3), np.float32)
    hl = model.vis.headlight
    if hl.active:       # at the camera, shining along its axis: cos = -n_z
        light += np.asarray(hl.ambient, np.float32) + np.asarray(hl.diffuse, np.float32) * \
            np.maximum(-n[:, 2:3], 0.0)
    for i in range(model.nlight):
        if not model.light_active[i]:
            continue
        to_light = -(R @ data.light_xdir[i]).astype(np.float32)     # camera frame
        cos = np.maximum(n @ to_light, 0.0)[:, None]
        light += model.light_ambient[i].astype(np.float32) + model.light_diffuse[i].astype(np.float32) * cos
    return light


def _pack_rgb(rgb01: np.ndarray) -> np.ndarray:
    """(N, 3) colours in [0, 1] -> (N,) uint32 little-endian RGBA (alpha 255)."""
    c = (np.clip(rgb01, 0.0, 1.0) * 255 + 0.5).astype(np.uint32)
    return c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16) | np.uint32(0xFF000000)


def shade(view) -> np.ndarray:
    """(H, W, 3) uint8 Lambert shading of the visible geoms from their exact normals:
    flat faces take one colour each (a table lookup by face id), curved geoms are
    shaded per pixel, the sky is a gradient by ray elevation."""
    import mujoco
    from .render import sky_packed
    m, d = view.r.model, view.r.data
    view.r.set_frame(view.frame)
    mujoco.mj_camlight(m, d)
    H, W = view.height, view.width
    s = view.surface
    R = view.w2c[:3, :3]
    albedo = np.zeros((m.ngeom + 1, 3), np.float32)
    albedo[1:] = m.geom_rgba[:, :3]
    fn = s.face_normal[:, :3]
    face_rgb = _pack_rgb(np.repeat(albedo, 6, axis=0) * lambert(m, d, R, fn))
    img = np.take(face_rgb, s.fid)
    sky = view.geom.ravel() < 0
    np.copyto(img, sky_packed(view.K, view.w2c, W, H, view.r).ravel(), where=sky)
    if s.other.size:
        g = view.geom.ravel()[s.other]
        img[s.other] = _pack_rgb(albedo[g + 1] * lambert(m, d, R, s.other_normal))
    return first3(img.view(np.uint8).reshape(H, W, 4))


# --------------------------------------------------------------------------- noise
@register_layer("noise")
def noise(view):
    """3D-anchored Gaussian noise at the latent resolution (see `bridge.noise`)."""
    from .noise import anchored_noise_for_view
    return {"noise": anchored_noise_for_view(view)}


# --------------------------------------------------------------------------- events
@register_layer("events", per="shot")
def events(ctx):
    """Contact-event map from `bridge.audio.event_map` (impulse splats, N s)."""
    from .audio import event_map
    m = event_map(ctx["traj"], ctx["frames"], ctx["K"][0], ctx["w2c"], ctx["width"], ctx["height"])
    return {"events": np.asarray(m, np.float32)}



class _GeomTypes:
    """MuJoCo geom type codes as plain ints (comparing numpy arrays with pybind
    enums falls back to slow object comparisons)."""

    def __init__(self):
        import mujoco
        for name in ("PLANE", "HFIELD", "SPHERE", "CAPSULE", "ELLIPSOID", "CYLINDER", "BOX", "MESH"):
            setattr(self, f"mjGEOM_{name}", int(getattr(mujoco.mjtGeom, f"mjGEOM_{name}")))
