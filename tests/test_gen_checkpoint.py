"""The shipped default checkpoint (generator/checkpoints/builtin): safetensors only,
at most 50 MB, the recipe that made it recorded, loaded by ``generator.load("builtin")``
with no arguments, and its control branch changes what it generates."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generator.builtin import COMPONENTS, DEFAULT_MODEL_DIR, MODEL_INDEX, PICKLE_SUFFIXES  # noqa: E402


def test_shipped_checkpoint_files_and_recipe():
    d = DEFAULT_MODEL_DIR
    assert (d / MODEL_INDEX).exists(), f"{d}: the default checkpoint is not installed"
    files = [p for p in d.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 50 * 2 ** 20
    assert not [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    for name in COMPONENTS:
        assert (d / name / "config.json").exists()
        assert (d / name / "diffusion_pytorch_model.safetensors").exists()
    meta = json.loads((d / MODEL_INDEX).read_text())
    recipe = meta["recipe"]
    assert recipe["command"].startswith("physcut train") and "--seed" in recipe["command"]
    assert recipe["data"]["kind"] == "simulated" and recipe["data"]["num_scenes"] > 0
    assert recipe["steps_done"] > recipe["ae_steps"]              # the diffusion stage ran
    assert (d / "README.md").exists()


def test_default_builtin_generates_and_follows_its_control():
    import generator
    from benchmarks.generator_speed import synthetic_bundle
    pipe = generator.load("builtin", num_inference_steps=2)        # the shipped checkpoint
    m = pipe.model
    cond = synthetic_bundle(10, tuple(m.config.resolution), m.latent_size, noise_period=pipe.window,
                            noise_means=pipe.noise_means)
    a = pipe(cond, seed=0, progress=False)
    W, H = m.config.resolution
    assert a.frames.shape == (10, H, W, 3) and a.audio.shape == cond.audio.shape
    b = pipe(cond, seed=0, progress=False)
    assert np.array_equal(a.frames, b.frames)                      # same seed, same sample
    saved = dict(m.config.control_scales)
    m.config.control_scales = {k: 0.0 for k in saved}
    try:
        off = pipe(cond, seed=0, progress=False)
    finally:
        m.config.control_scales = saved
    assert np.abs(a.frames.astype(float) - off.frames).mean() > 1.0  # trained control is in use
