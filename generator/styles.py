"""Named visual styles as deterministic image operations on the preview render.

The built-in model learns one embedding per style; its training targets are the
bridge's preview RGB passed through these functions, so every style is exactly
reproducible from the simulator's own data. numpy only.
"""
from __future__ import annotations

import numpy as np


def _preview(img: np.ndarray) -> np.ndarray:
    return img


def _sepia(img: np.ndarray) -> np.ndarray:
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return img @ m.T


def _night(img: np.ndarray) -> np.ndarray:
    # Darker, blue-shifted, lifted gamma: a day-for-night grade.
    x = (img / 255.0) ** 1.6
    x = x * np.array([0.45, 0.55, 0.95], np.float32) + np.array([0.0, 0.01, 0.05], np.float32)
    return x * 255.0


def _toon(img: np.ndarray) -> np.ndarray:
    # Posterise to 4 levels per channel and draw dark outlines where luminance jumps.
    q = np.floor(img / 64.0) * 64.0 + 32.0
    lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
    gy = np.abs(np.diff(lum, axis=-2, append=lum[..., -1:, :]))
    gx = np.abs(np.diff(lum, axis=-1, append=lum[..., :, -1:]))
    edge = (np.maximum(gx, gy) > 24.0)[..., None]
    return np.where(edge, 16.0, q)


STYLES = {"preview": _preview, "toon": _toon, "night": _night, "sepia": _sepia}


def apply_style(images: np.ndarray, style: str) -> np.ndarray:
    """(..., H, W, 3) uint8 -> the same shape in ``style``, uint8."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    x = np.asarray(images, np.float32)
    return np.clip(np.rint(STYLES[style](x)), 0, 255).astype(np.uint8)
