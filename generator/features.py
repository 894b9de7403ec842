"""Conditioning layers -> model inputs, shared by training and sampling (numpy only).

Every mapping here is fixed (no per-shot or per-window normalisation), so neighbouring
windows and different shots see the same value for the same surface: a per-window
normalisation would make overlapping windows disagree and show as seams.

Map features, per frame (T, c, H, W) float32 in about [-1, 1]:
    depth (1):        2 / (1 + d) - 1 for metric depth d > 0 (1 m -> 0), -1 on sky
    pose (3):         OpenPose colours / 127.5 - 1
    segmentation (3): palette colours / 127.5 - 1
    albedo (3):       base colours / 127.5 - 1 (black, so -1, on sky)
    normals (3):      unit camera-frame normals as they are (0 on sky)
    events (1):       log1p(impulse splat), clipped to [0, 4]
Audio control, per mel frame (L, 1): the contact-event envelope, sum over events of
log1p(impulse) splatted with a Gaussian of one mel frame.
"""
from __future__ import annotations

import numpy as np


def _depth(layers, sl):
    d = np.asarray(layers["depth"][sl], np.float32)
    return np.where(d > 0, 2.0 / (1.0 + np.maximum(d, 0)) - 1.0, -1.0)[:, None]


def _rgb(name):
    def f(layers, sl):
        return (np.asarray(layers[name][sl], np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)
    return f


def _normals(layers, sl):
    return np.asarray(layers["normals"][sl], np.float32).transpose(0, 3, 1, 2)


def _events(layers, sl):
    return np.clip(np.log1p(np.maximum(np.asarray(layers["events"][sl], np.float32), 0)), 0, 4)[:, None]


# control map name -> (conditioning layer it reads, feature function); the order is
# the order of the model configs, the CLI's scale lists and the dataset's map mask.
MAP_FEATURES = {
    "depth": ("depth", _depth),
    "pose": ("pose", _rgb("pose")),
    "segmentation": ("segmentation_rgb", _rgb("segmentation_rgb")),
    "albedo": ("albedo", _rgb("albedo")),
    "normals": ("normals", _normals),
    "events": ("events", _events),
}

MAP_CHANNELS = {"depth": 1, "pose": 3, "segmentation": 3, "albedo": 3, "normals": 3, "events": 1}
MAP_NAMES = tuple(MAP_CHANNELS)


def control_maps(layers: dict, sl: slice = slice(None), maps=tuple(MAP_FEATURES)) -> dict:
    """{map name: (T, c, H, W) float32} for the maps whose layer is present."""
    out = {}
    for m in maps:
        layer, fn = MAP_FEATURES[m]
        if layer in layers:
            out[m] = np.ascontiguousarray(fn(layers, sl))
    return out


def event_envelope(events: list, num_frames: int, frame_rate: float) -> np.ndarray:
    """(num_frames, 1) float32 contact-event envelope on a grid of ``frame_rate`` Hz."""
    env = np.zeros(num_frames, np.float64)
    k = np.arange(num_frames)
    for e in events:
        x = float(e["time"]) * frame_rate
        imp = float(e.get("impulse", 1.0))
        lo, hi = max(0, int(x) - 3), min(num_frames, int(x) + 5)
        env[lo:hi] += np.log1p(max(imp, 0.0)) * np.exp(-0.5 * (k[lo:hi] - x) ** 2)
    return env.astype(np.float32)[:, None]


def audio_span(t0: float, num_video_frames: int, fps: float, mel_rate: float) -> tuple[int, int]:
    """(first mel frame, mel frame count) covering a window of video frames starting at
    ``t0`` seconds; both training and sampling cut audio with this."""
    return int(round(t0 * mel_rate)), int(np.ceil(num_video_frames / fps * mel_rate))


def resample_noise(noise: np.ndarray, h: int, w: int) -> np.ndarray:
    """(T, C, hn, wn) -> (T, C, h, w) by nearest cell (keeps N(0, 1) per value and the
    anchoring to surfaces; only used when the bridge rendered another latent grid)."""
    T, C, hn, wn = noise.shape
    if (hn, wn) == (h, w):
        return noise
    rows = np.minimum((np.arange(h) + 0.5) * hn / h, hn - 1).astype(int)
    cols = np.minimum((np.arange(w) + 0.5) * wn / w, wn - 1).astype(int)
    return noise[:, :, rows][:, :, :, cols]
