"""Pretrained generator backends driven by physcut's conditioning: ``ltx2`` (LTX-2,
joint audio+video, IC-LoRA depth/pose reference control), ``vace`` (Wan VACE control
video + reference images) and ``cosmos`` (Cosmos-Transfer2.5, weighted multi-control).
Importing this package registers them with ``generator.base``; torch and diffusers
load only when a backend is built. ``tiny.save_tiny`` writes random-weight model
directories of the real classes for tests and offline end-to-end runs.
"""
from . import cosmos, ltx2, vace  # noqa: F401  (registers "cosmos", "ltx2", "vace")
