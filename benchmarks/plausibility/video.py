"""Estimating tracks from a generated video and its conditioning (classical methods).

The conditioning bundle tells us the cameras (K, world-to-camera per frame), the
shot list and the segmentation palette; the video only shows pixels. Objects are
found either by nearest palette colour (videos in the segmentation palette, e.g.
the conditioning's own ``segmentation_rgb``) or by background subtraction (per
shot median background; foreground components take the conditioning id they
overlap most), then each object's pixel centroid is lifted to 3D: by its size
when known (depth z = f * 2 r / apparent size), else on the ground plane (the ray
through the blob's lowest pixel meets z = 0; the centroid sits above it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .tracks import Tracks


def read_video(path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(frames (F, H, W, 3) uint8, audio (C, S) float32 or None, sample rate) with PyAV."""
    import av
    frames, chunks, sr = [], [], 0
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
    try:
        with av.open(str(path)) as c:
            if c.streams.audio:
                st = c.streams.audio[0]
                sr = st.rate
                rs = av.AudioResampler(format="fltp", layout="stereo", rate=sr)
                for fr in c.decode(audio=0):
                    for g in rs.resample(fr):
                        chunks.append(g.to_ndarray())
    except Exception:   # a video without a decodable audio stream is still a video
        chunks = []
    if not frames:
        raise ValueError(f"{path}: no video frames")
    audio = np.concatenate(chunks, axis=1).astype(np.float32) if chunks else None
    return np.stack(frames), audio, int(sr)


# --------------------------------------------------------------------------- conditioning timeline
def conditioning_timeline(cond):
    """Per timeline frame: shot index, K (F, 3, 3), w2c (F, 4, 4), cut frames, and
    the (shot, local index) each frame is read from (the active shot; crossfade
    margins are split at their middle)."""
    F = int(cond.num_frames)
    shots = sorted(cond.shots, key=lambda s: int(s.frames[0]))
    cuts = []
    for prev, s in zip(shots[:-1], shots[1:]):
        cuts.append(int((int(s.frames[0]) + int(prev.frames[-1]) + 1) // 2))
    shot_of = np.zeros(F, np.int64)
    for c in cuts:
        shot_of[c:] += 1
    K = np.zeros((F, 3, 3))
    w2c = np.tile(np.eye(4), (F, 1, 1))
    local = np.zeros(F, np.int64)
    for i in range(F):
        s = shots[shot_of[i]]
        j = int(np.clip(np.searchsorted(s.frames, i), 0, len(s.frames) - 1))
        local[i] = j
        K[i], w2c[i] = s.K[j], s.w2c[j]
    return shots, shot_of, K, w2c, np.asarray(cuts, np.int64), local


def timeline_layer(cond, name: str) -> np.ndarray | None:
    """(F, ...) one conditioning layer along the timeline (active shot per frame)."""
    shots, shot_of, _, _, _, local = conditioning_timeline(cond)
    if any(name not in s.layers for s in shots):
        return None
    return np.stack([shots[shot_of[i]].layers[name][local[i]] for i in range(len(shot_of))])


def scale_K(K: np.ndarray, src_wh, dst_wh) -> np.ndarray:
    """Intrinsics for an image resized from src (w, h) to dst (w, h); pixel centres
    at integer coordinates (as the bridge renders)."""
    sx = (dst_wh[0] - 1) / max(src_wh[0] - 1, 1)
    sy = (dst_wh[1] - 1) / max(src_wh[1] - 1, 1)
    S = np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1.0]])
    return S @ K


# --------------------------------------------------------------------------- segmentation
_LUTS: dict = {}


def _lut(palette: np.ndarray) -> np.ndarray:
    key = np.asarray(palette, np.uint8).tobytes()
    if key not in _LUTS:
        _LUTS[key] = palette_lut(palette)
    return _LUTS[key]


def palette_lut(palette: np.ndarray, bits: int = 5, max_dist: float = 60.0) -> np.ndarray:
    """(2^bits)^3 lookup table: quantised RGB -> nearest palette row (scipy cKDTree);
    colours further than max_dist from every palette colour map to 0 (nothing)."""
    from scipy.spatial import cKDTree
    q = (np.arange(2 ** bits) + 0.5) * (256 / 2 ** bits)
    grid = np.stack(np.meshgrid(q, q, q, indexing="ij"), -1).reshape(-1, 3)
    d, idx = cKDTree(np.asarray(palette, float)).query(grid)
    idx[d > max_dist] = 0
    return idx.astype(np.int32)


def segment_palette(frames: np.ndarray, palette: np.ndarray, lut: np.ndarray | None = None, bits=5) -> np.ndarray:
    """(F, H, W) int32 ids (palette row = body index + 1, 0 = nothing) by nearest colour."""
    lut = palette_lut(palette, bits) if lut is None else lut
    sh = 8 - bits
    f = np.asarray(frames, np.uint8) >> sh
    return lut[(f[..., 0].astype(np.int32) << (2 * bits)) | (f[..., 1].astype(np.int32) << bits) | f[..., 2]]


def segment_background(frames: np.ndarray, shot_of: np.ndarray, reference_ids: np.ndarray,
                       threshold: float = 30.0, min_area: int = 4) -> np.ndarray:
    """(F, H, W) ids by background subtraction: per shot median background,
    foreground = |frame - background| summed over RGB > threshold (cleaned by a
    3x3 opening), each connected component (scipy.ndimage.label) labelled with the
    reference id it overlaps most (reference: the conditioning segmentation)."""
    from scipy import ndimage
    frames = np.asarray(frames)
    ids = np.zeros(frames.shape[:3], np.int32)
    for s in np.unique(shot_of):
        idx = np.nonzero(shot_of == s)[0]
        bg = np.median(frames[idx[:: max(1, len(idx) // 15)]], axis=0)
        for i in idx:
            fg = np.abs(frames[i].astype(np.float32) - bg).sum(-1) > threshold
            fg = ndimage.binary_opening(fg)
            lab, n = ndimage.label(fg)
            if not n:
                continue
            ref = reference_ids[i]
            for c, sl in enumerate(ndimage.find_objects(lab), start=1):
                comp = lab[sl] == c
                if comp.sum() < min_area:
                    continue
                r = ref[sl][comp]
                r = r[r > 0]
                if r.size:
                    ids[i][sl][comp] = np.bincount(r).argmax()
    return ids


def blob_stats(ids: np.ndarray, n_objects: int, chunk: int = 32):
    """Per frame and object: area (px), centroid (u, v), lowest pixel row (one
    bincount over (frame, row, id) per chunk of frames). Returns area (F, O),
    centroid (F, O, 2), bottom (F, O); object o has id o + 1."""
    F, H, W = ids.shape
    L = n_objects + 1
    area = np.zeros((F, n_objects))
    cen = np.full((F, n_objects, 2), np.nan)
    bottom = np.full((F, n_objects), np.nan)
    cols = np.arange(W, dtype=np.float64)
    for a in range(0, F, chunk):
        b = min(F, a + chunk)
        lab = np.clip(ids[a:b], 0, n_objects).astype(np.int64)              # (n, H, W)
        n = b - a
        key = (np.arange(n * H, dtype=np.int64).reshape(n, H, 1) * L + lab).ravel()
        rows = np.bincount(key, minlength=n * H * L).reshape(n, H, L)       # pixels per (frame, row, id)
        usum = np.bincount(key, weights=np.broadcast_to(cols, lab.shape).ravel(),
                           minlength=n * H * L).reshape(n, H, L)
        cnt = rows.sum(1)[:, 1:]
        su = usum.sum(1)[:, 1:]
        sv = (rows * np.arange(H)[None, :, None]).sum(1)[:, 1:]
        present = rows[:, :, 1:] > 0
        last = H - 1 - np.argmax(present[:, ::-1], axis=1)
        ok = cnt > 0
        area[a:b] = cnt
        with np.errstate(invalid="ignore", divide="ignore"):
            cen[a:b, :, 0] = np.where(ok, su / cnt, np.nan)
            cen[a:b, :, 1] = np.where(ok, sv / cnt, np.nan)
        bottom[a:b] = np.where(ok, last, np.nan)
    return area, cen, bottom


def lift(cen: np.ndarray, area: np.ndarray, bottom: np.ndarray, K: np.ndarray, w2c: np.ndarray,
         radius: np.ndarray | None = None, ground_z: float = 0.0) -> np.ndarray:
    """(F, O, 3) world positions from pixel centroids with known cameras.

    With a bounding radius r: depth z = f * 2 r / sqrt(4 A / pi) (the apparent
    diameter), point = c2w (z K^-1 [u v 1]). Without: the ray through (u, bottom)
    meets the plane z = ground_z at distance s; the centroid ray is cut at the
    same camera depth.
    """
    F, O, _ = cen.shape
    out = np.full((F, O, 3), np.nan)
    for i in range(F):
        Kinv = np.linalg.inv(K[i])
        c2w = np.linalg.inv(w2c[i])
        ok = np.isfinite(cen[i, :, 0]) & (area[i] > 0)
        if not ok.any():
            continue
        pix = np.stack([cen[i, ok, 0], cen[i, ok, 1], np.ones(ok.sum())], 0)
        rays = Kinv @ pix                                    # camera frame, z = 1
        if radius is not None and np.all(np.asarray(radius)[ok] > 0):
            diam = np.sqrt(4 * area[i, ok] / np.pi)
            z = K[i, 0, 0] * 2 * np.asarray(radius)[ok] / np.maximum(diam, 1e-6)
        else:
            bp = Kinv @ np.stack([cen[i, ok, 0], bottom[i, ok], np.ones(ok.sum())], 0)
            d = c2w[:3, :3] @ bp
            o = c2w[:3, 3]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (ground_z - o[2]) / d[2]
            z = np.where(s > 0, s, np.nan)                   # camera depth of the contact point
        Xc = rays * z
        out[i, ok] = (c2w[:3, :3] @ Xc + c2w[:3, 3:4]).T
    return out


def smooth_tracks(pos: np.ndarray, shot_of: np.ndarray, size: int = 5) -> np.ndarray:
    """Median filter (``size`` frames) of lifted positions along time, per object,
    within each shot and each visible run: removes single-frame lifting spikes
    (a blob clipped by the frame edge or an occluder) and keeps parabolas."""
    from scipy.ndimage import median_filter
    out = pos.copy()
    ok = np.isfinite(pos).all(-1)
    F, O, _ = pos.shape
    for o in range(O):
        run_id = np.cumsum(np.concatenate([[1], (np.diff(ok[:, o].astype(int)) != 0) | (np.diff(shot_of) != 0)]))
        for r in np.unique(run_id[ok[:, o]]):
            idx = np.nonzero((run_id == r) & ok[:, o])[0]
            if len(idx) >= 3:
                out[idx, o] = median_filter(pos[idx, o], size=(min(size, len(idx) | 1), 1), mode="nearest")
    return out


def tracks_from_video(frames: np.ndarray, cond, audio=None, sample_rate: int = 0, mode: str = "auto",
                      kinds=None, radius=None) -> Tracks:
    """`estimate` without the id maps."""
    return estimate(frames, cond, audio, sample_rate, mode, kinds, radius)[0]


def estimate(frames: np.ndarray, cond, audio=None, sample_rate: int = 0, mode: str = "auto",
             kinds=None, radius=None) -> tuple[Tracks, np.ndarray]:
    """Estimate `Tracks` (and the (F, H, W) id maps) from a video and its conditioning.

    mode: "palette" (nearest segmentation colour), "background" (background
    subtraction labelled by the conditioning segmentation) or "auto" (palette when
    most pixels lie near a palette colour). kinds / radius: per body (B,), when
    known (e.g. from the trajectory); bodies default to "prop" and ground-plane lifting.
    """
    frames = np.asarray(frames)
    F = min(len(frames), int(cond.num_frames))
    frames = frames[:F]
    shots, shot_of, K, w2c, cuts, _ = conditioning_timeline(cond)
    H, W = frames.shape[1:3]
    W0, H0 = shots[0].resolution
    if (W, H) != (W0, H0):
        K = np.stack([scale_K(k, (W0, H0), (W, H)) for k in K])
    B = len(cond.body_names)
    lut = _lut(cond.palette)
    if mode == "auto":
        sample = segment_palette(frames[:: max(1, F // 8)], cond.palette, lut)
        mode = "palette" if (sample > 0).mean() > 0.5 else "background"
    if mode == "palette":
        ids = segment_palette(frames, cond.palette, lut)
    elif mode == "background":
        ref = timeline_layer(cond, "segmentation")
        if ref is None:
            raise ValueError("background mode needs the conditioning 'segmentation' layer")
        ref = ref[:F]
        if ref.shape[1:] != (H, W):
            import cv2
            ref = np.stack([cv2.resize(r.astype(np.int32).astype(np.float32), (W, H),
                                       interpolation=cv2.INTER_NEAREST).astype(np.int32) for r in ref])
        ids = segment_background(frames, shot_of[:F], ref)
    else:
        raise ValueError(f"mode: unknown mode '{mode}' (valid choices: auto, palette, background)")
    area, cen, bottom = blob_stats(ids, B)
    kinds = tuple(kinds) if kinds is not None else ("prop",) * B
    rad = None if radius is None else np.asarray(radius, float)
    pos = smooth_tracks(lift(cen, area, bottom, K[:F], w2c[:F], rad), shot_of[:F])
    visible = (area >= 4) & np.isfinite(pos).all(-1)
    return Tracks(fps=float(cond.fps), ids=tuple(cond.body_names), kind=kinds, visible=visible,
                  cuts=cuts[cuts < F], positions=pos, pixels=cen,
                  pixel_size=np.where(area > 0, np.sqrt(area), np.nan),
                  sizes=None if rad is None else np.repeat(rad[:, None], 3, 1),
                  camera_K=K[:F], camera_w2c=w2c[:F], image_size=np.array([W, H]),
                  audio=None if audio is None else np.asarray(audio, np.float32), sample_rate=int(sample_rate),
                  contact_tolerance=0.05, source=f"video:{mode}",
                  meta={"audio_events": list(cond.events or [])}).validate(), ids


# --------------------------------------------------------------------------- video metrics
def static_consistency(frames: np.ndarray, K: np.ndarray, w2c: np.ndarray, cuts, static_mask=None) -> dict:
    """Metric 7 for videos: ORB matches between the last frame before and the first
    frame after every cut (static pixels only, when a mask (F, H, W) is given),
    scored against the fundamental matrix of the known cameras: median Sampson
    error (px) and inlier rate, averaged over cuts."""
    from .metrics import fundamental_consistency, match_features
    errs, inl, n = [], [], 0
    for c in np.asarray(cuts, np.int64):
        if c < 1 or c >= len(frames):
            continue
        ma = None if static_mask is None else static_mask[c - 1]
        mb = None if static_mask is None else static_mask[c]
        xa, xb = match_features(frames[c - 1], frames[c], ma, mb)
        r = fundamental_consistency(xa, xb, K[c - 1], K[c], w2c[c - 1], w2c[c])
        if np.isfinite(r["sampson_median_px"]):
            errs.append(r["sampson_median_px"])
            inl.append(r["inlier_rate"])
            n += r["matches"]
    return {"sampson_median_px": float(np.mean(errs)) if errs else float("nan"),
            "inlier_rate": float(np.mean(inl)) if inl else float("nan"), "matches": n, "cuts": len(errs)}


def video_metrics(frames: np.ndarray, K: np.ndarray, w2c: np.ndarray, cuts, static_mask=None,
                  pose_step: int = 4) -> dict:
    """The pixel metrics of a video: 7 (static geometry across cuts), 10 (camera
    path), 12 (cut timing)."""
    from .metrics import camera_path, cut_timing
    return {"static_geometry_video": static_consistency(frames, K, w2c, cuts, static_mask),
            "camera_path": camera_path(frames, K, w2c, cuts, step=pose_step, static_mask=static_mask),
            "cut_timing": cut_timing(frames, cuts)}


def video_extras(frames: np.ndarray, cond, ids=None, kinds=None) -> dict:
    """Extras for `metrics.run` on a video: frames, per-frame K at video resolution,
    and the pixel metrics' noise floor measured on the conditioning's own renders
    (``rgb`` layer, else ``segmentation_rgb``) -- the calibration the video's
    numbers are reported against."""
    shots, shot_of, K, w2c, cuts, _ = conditioning_timeline(cond)
    F = min(len(frames), int(cond.num_frames))
    H, W = frames.shape[1:3]
    W0, H0 = shots[0].resolution
    Kv = np.stack([scale_K(k, (W0, H0), (W, H)) for k in K]) if (W, H) != (W0, H0) else K
    out = {"frames": frames[:F], "K": Kv[:F]}
    mask = None
    if ids is not None:
        # static pixels: background (id 0) and static bodies; never a moving object
        static_ids = [0] + ([i + 1 for i, k in enumerate(kinds) if k == "static"] if kinds is not None else [])
        mask = np.isin(ids[:F], static_ids)
        out["static_mask"] = mask
    calib = {}
    for layer in ("rgb", "segmentation_rgb"):
        ref = timeline_layer(cond, layer)
        if ref is not None:
            ref = ref[:F]
            seg = timeline_layer(cond, "segmentation")
            rmask = None
            if seg is not None and ref.shape[1:3] == seg.shape[1:3]:
                static_ids = [0] + ([i + 1 for i, k in enumerate(kinds) if k == "static"] if kinds is not None else [])
                rmask = np.isin(seg[:F], static_ids)
            vm = video_metrics(ref, K[:F], w2c[:F], cuts[cuts < F], static_mask=rmask)
            calib = {"camera_path": vm["camera_path"], "cut_timing": vm["cut_timing"],
                     "static_geometry": vm["static_geometry_video"], "layer": layer}
            break
    vid = static_consistency(frames[:F], Kv[:F], w2c[:F], cuts[cuts < F], mask)
    out["static_video"] = vid
    out["calibration"] = {k: _floor(v) for k, v in calib.items() if k != "layer"}
    return out


def _floor(r: dict) -> dict:
    return {k: v for k, v in r.items() if isinstance(v, (int, float)) and k not in ("flagged",)}
