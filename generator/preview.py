"""The ``preview`` backend: the bridge's lit preview render in a named style.

No model: it is the reference the built-in model is trained towards and the
baseline the quality benchmark compares against; it also exercises the shared shot
loop end to end without torch.
"""
from __future__ import annotations

import numpy as np

from .base import ShotPipeline, register_backend
from .styles import STYLES, apply_style


@register_backend("preview")
class PreviewPipeline(ShotPipeline):
    required_layers = ("rgb",)
    styles = tuple(STYLES)

    def __init__(self, window: int | None = None, overlap: int = 0):
        self.window, self.overlap = window, overlap

    def generate_window(self, shot, frame_slice, style, prompt, seed, init_noise):
        return apply_style(np.asarray(shot.layers["rgb"][frame_slice]), style)
