"""Surface memory: what earlier shots generated on static surfaces, carried into later ones.

Anchored initial noise gives a surface the same noise in every shot, but a model whose
output depends on the whole frame still renders it differently from another view
(`benchmarks.noise_ablation`: even noise pasted exactly across the cut gains nothing
over the anchored kind). The surface memory hands over the *result* instead: the clean
latents the pipeline generated for static bodies in earlier shots, looked up by
reprojection through the rendered depth and cameras, in the manner of RePaint's known
region (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion
Probabilistic Models"): during the first steps of sampling a later window, each latent
pixel that sees a remembered static surface is set to that surface's remembered latent
noised to the current flow-matching time with the window's own (anchored) noise,
``(1 - sigma) x0 + sigma eps``; the last steps run free, so the model blends the
remembered surfaces into the rest of the frame.

Everything here is numpy on latent-resolution geometry: a latent pixel is used only
where all ``factor x factor`` image pixels under it show one static body (no edges),
at their mean depth, and a remembered pixel must see the same body at a depth agreeing
within ``DEPTH_TOLERANCE``.
"""
from __future__ import annotations

import numpy as np

#: Relative depth agreement for a remembered pixel to count as the same surface point.
DEPTH_TOLERANCE = 0.08


def unproject(u, v, z, K, w2c) -> np.ndarray:
    """World points (N, 3) of pixels (``u``, ``v``) at camera depth ``z`` (OpenCV camera
    ``K``, world-to-camera ``w2c``; pixel ``u`` is centred on ``u``, the renderer's convention)."""
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z, np.ones_like(z)])
    return (np.linalg.inv(w2c) @ cam)[:3].T


def project(points, K, w2c) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, z): pixel coordinates (not rounded) and camera depth of world ``points``
    (N, 3); valid where z > 0."""
    cam = (w2c @ np.c_[points, np.ones(len(points))].T)[:3]
    uv = K @ cam
    return uv[0] / np.maximum(uv[2], 1e-9), uv[1] / np.maximum(uv[2], 1e-9), cam[2]


def latent_geometry(shot, j: int, factor: int, static: np.ndarray):
    """Frame ``j`` of ``shot`` at latent resolution: (K (3, 3) of the latent grid, w2c,
    depth (h, w), body id (h, w), usable (h, w)), sampled at the image pixel
    ``factor * U + factor // 2`` of each latent pixel U (its centre, or next to it);
    usable where that pixel shows a static body (ids in ``static``) at a positive depth
    and so do its 4 neighbours."""
    seg = np.asarray(shot.layers["segmentation"][j])
    depth = np.asarray(shot.layers["depth"][j], np.float64)
    H, W = seg.shape
    h, w = H // factor, W // factor
    c = factor // 2
    ids = seg[c:h * factor:factor, c:w * factor:factor]
    d = depth[c:h * factor:factor, c:w * factor:factor]
    # interior of a static body: the 4 neighbours show the same body (a latent pixel on an
    # edge mixes two surfaces, and reprojects onto the wrong one where views differ)
    p = np.pad(ids, 1, mode="edge")
    interior = (p[:-2, 1:-1] == ids) & (p[2:, 1:-1] == ids) & (p[1:-1, :-2] == ids) & (p[1:-1, 2:] == ids)
    usable = np.isin(ids, static) & (d > 0) & interior
    K = np.array(shot.K[j], np.float64).copy()
    # pixel u is centred on u (the renderer's convention): latent pixel U samples image
    # pixel factor * U + c
    K[0, 0] /= factor
    K[1, 1] /= factor
    K[0, 2] = (K[0, 2] - c) / factor
    K[1, 2] = (K[1, 2] - c) / factor
    return K, np.asarray(shot.w2c[j], np.float64), d, ids, usable


class SurfaceMemory:
    """Clean latents of static surfaces from the frames of finished shots.

    ``add(shot, latents)`` remembers every ``stride``-th frame of a finished shot and its
    last one, keeping the latest ``max_frames`` (the lookup's cost grows with them: 64
    frames cover about 250 generated frames); ``lookup(shot, frame_slice)`` returns, for
    a window about to be sampled, the remembered latents at its usable latent pixels and
    where any was found (the most recently remembered frame that sees the point wins)."""

    def __init__(self, static_ids, factor: int, stride: int = 4, max_frames: int = 64):
        self.static = np.asarray(static_ids, np.int64)
        self.factor, self.stride, self.max_frames = int(factor), int(stride), int(max_frames)
        self.frames: list[tuple] = []          # (K, w2c, depth, ids, usable, latent (C, h, w))

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, shot, latents: np.ndarray) -> None:
        T = len(latents)
        keep = sorted(set(range(0, T, self.stride)) | {T - 1})
        for j in keep:
            self.frames.append(latent_geometry(shot, j, self.factor, self.static)
                               + (np.asarray(latents[j], np.float32),))
        del self.frames[:max(0, len(self.frames) - self.max_frames)]

    def lookup(self, shot, frame_slice: slice, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """(known (T, C, h, w) float32, mask (T, 1, h, w) float32) for the frames of
        ``shot`` at ``frame_slice``; ``shape`` is the window's latent shape (T, C, h, w)."""
        T, C, h, w = shape
        known = np.zeros(shape, np.float32)
        mask = np.zeros((T, 1, h, w), np.float32)
        if not self.frames:
            return known, mask
        for k, j in enumerate(range(*frame_slice.indices(shot.num_frames))):
            K, w2c, d, ids, usable = latent_geometry(shot, j, self.factor, self.static)
            v, u = np.nonzero(usable[:h, :w])
            if not u.size:
                continue
            world = unproject(u, v, d[v, u], K, w2c)
            body = ids[v, u]
            todo = np.ones(u.size, bool)
            for Km, w2cm, dm, idm, usm, lat in reversed(self.frames):
                if not todo.any():
                    break
                uf, vf, z = project(world[todo], Km, w2cm)
                um, vm = np.rint(uf).astype(np.int64), np.rint(vf).astype(np.int64)
                hm, wm = dm.shape
                ok = (z > 1e-6) & (um >= 0) & (um < wm) & (vm >= 0) & (vm < hm)
                um, vm = np.where(ok, um, 0), np.where(ok, vm, 0)
                ok &= usm[vm, um] & (idm[vm, um] == body[todo]) & (np.abs(dm[vm, um] - z) < DEPTH_TOLERANCE * z)
                if not ok.any():
                    continue
                idx = np.flatnonzero(todo)[ok]
                known[k, :, v[idx], u[idx]] = lat[:, vm[ok], um[ok]].T
                mask[k, 0, v[idx], u[idx]] = 1.0
                todo[idx] = False
        return known, mask
