"""Assembling shots along the timeline, and writing MP4 (H.264 + AAC) with PyAV.

One mechanism shared by the bridge's previews and the generator's output: each
shot contributes images for its global frame indices (its active frames plus
crossfade margins); where two consecutive shots overlap and the later one is
entered by a crossfade, the images blend linearly across the overlap; a cut
switches at the later shot's first active frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class AssemblyError(ValueError):
    """Shots that do not tile the timeline, or images of mismatched shapes."""


def assemble_shots(shot_frames: list, transitions: list, num_frames: int) -> np.ndarray:
    """Lay shots on the global timeline.

    Args:
        shot_frames: per shot ``(frames (T,) int global indices, images (T, H, W, 3) uint8)``
            in timeline order; all images share (H, W).
        transitions: per shot, how it is entered (``{"type": "cut"}`` or
            ``{"type": "crossfade", "seconds": s}``); the first shot's is ignored.
        num_frames: F, frames on the timeline; every frame must be covered.
    Returns (F, H, W, 3) uint8.
    """
    if len(shot_frames) != len(transitions):
        raise AssemblyError(f"transitions: {len(transitions)} entries for {len(shot_frames)} shots")
    if not shot_frames:
        raise AssemblyError("shot_frames: no shots")
    shapes = {tuple(np.asarray(im).shape[1:]) for _, im in shot_frames if len(im)}
    if len(shapes) != 1:
        raise AssemblyError(f"shot images differ in shape: {sorted(shapes)} (resize them to one size first)")
    (H, W, C), = shapes
    if C != 3:
        raise AssemblyError(f"images must be (T, H, W, 3), got channel count {C}")
    out = np.zeros((num_frames, H, W, 3), np.float32)
    weight = np.zeros(num_frames, np.float32)
    owner = np.full(num_frames, -1)
    for i, (fr, im) in enumerate(shot_frames):
        fr = np.asarray(fr, np.int64)
        im = np.asarray(im)
        if im.shape[0] != fr.shape[0]:
            raise AssemblyError(f"shot {i}: {fr.shape[0]} frame indices but {im.shape[0]} images")
        if fr.size and (fr.min() < 0 or fr.max() >= num_frames):
            raise AssemblyError(f"shot {i}: frame indices outside [0, {num_frames})")
        w = np.ones(fr.shape[0], np.float32)
        prev = shot_frames[i - 1][0] if i > 0 else np.zeros(0, np.int64)
        nxt = shot_frames[i + 1][0] if i + 1 < len(shot_frames) else np.zeros(0, np.int64)
        tr_in = (transitions[i] or {}).get("type", "cut") if i > 0 else "cut"
        tr_out = (transitions[i + 1] or {}).get("type", "cut") if i + 1 < len(shot_frames) else "cut"
        ov_in = np.intersect1d(fr, prev)
        ov_out = np.intersect1d(fr, nxt)
        if ov_in.size:
            pos = np.searchsorted(ov_in, fr)
            inside = np.isin(fr, ov_in)
            if tr_in == "crossfade":
                ramp = (pos + 1) / (ov_in.size + 1)
            else:       # a cut inside an overlap: the later shot takes its second half
                ramp = (pos >= ov_in.size // 2).astype(np.float64)
            w = np.where(inside, ramp, w).astype(np.float32)
        if ov_out.size:
            pos = np.searchsorted(ov_out, fr)
            inside = np.isin(fr, ov_out)
            if tr_out == "crossfade":
                ramp = 1.0 - (pos + 1) / (ov_out.size + 1)
            else:
                ramp = (pos < ov_out.size // 2).astype(np.float64)
            w = np.where(inside, ramp, w).astype(np.float32)
        keep = w > 0
        out[fr[keep]] += w[keep, None, None, None] * im[keep].astype(np.float32)
        weight[fr[keep]] += w[keep]
        owner[fr[keep]] = i
    missing = np.nonzero(weight <= 0)[0]
    if missing.size:
        raise AssemblyError(f"frames not covered by any shot: {missing[:10].tolist()}"
                            f"{' ...' if missing.size > 10 else ''}")
    out /= weight[:, None, None, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_mp4(path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None,
              sample_rate: int = 48000, crf: int = 18) -> Path:
    """Write (F, H, W, 3) uint8 frames as H.264 yuv420p MP4, plus (C, S) float32
    audio in [-1, 1] as AAC. Odd sizes are padded by one edge pixel (yuv420p needs
    even dimensions). Writes to a temporary name first, so a failure never leaves
    a truncated file under ``path``."""
    import av
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected (F, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8, got {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("frames: no frames to write")
    if not fps or fps <= 0:
        raise ValueError(f"fps: must be positive, got {fps}")
    F, H, W, _ = frames.shape
    if H % 2 or W % 2:
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
        H, W = frames.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    from fractions import Fraction
    with av.open(str(tmp), mode="w") as container:
        vs = container.add_stream("libx264", rate=Fraction(int(fps), 1))
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "veryfast"}
        ast = None
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, np.float32))
            if audio.shape[0] > 2:
                raise ValueError(f"audio: expected (channels <= 2, samples), got {audio.shape}")
            ast = container.add_stream("aac", rate=int(sample_rate))
            ast.layout = "stereo" if audio.shape[0] == 2 else "mono"
            ast.bit_rate = 192000
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(pkt)
        for pkt in vs.encode():
            container.mux(pkt)
        if ast is not None:
            pcm = np.clip(audio, -1.0, 1.0)
            step = 1024
            for s0 in range(0, pcm.shape[1], step):
                chunk = np.ascontiguousarray(pcm[:, s0:s0 + step])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=ast.layout.name)
                af.sample_rate = int(sample_rate)
                af.pts = s0
                for pkt in ast.encode(af):
                    container.mux(pkt)
            for pkt in ast.encode():
                container.mux(pkt)
    tmp.replace(path)
    return path
