"""physcut generators: conditioning bundle -> video + one continuous audio track.

``generator.load(name, **options)`` returns a pipeline ``pipe(conditioning, style=,
seed=, prompt=, noise=, progress=) -> GeneratedClip``. Every backend (the preview
pass-through, the built-in diffusion model, the pretrained LTX-2 / VACE / Cosmos
backends) is a ``ShotPipeline`` registered with ``@register_backend``, so they all
share one shot loop, window blending, noise handling, assembly and audio path.
"""
from .base import (CheckpointError, ConditioningMismatchError, GeneratedClip, GeneratorError,
                   ShotPipeline, available, backend_class, load, register_backend)
from .styles import STYLES, apply_style

__all__ = ["CheckpointError", "ConditioningMismatchError", "GeneratedClip", "GeneratorError",
           "ShotPipeline", "available", "backend_class", "load", "register_backend",
           "STYLES", "apply_style"]
