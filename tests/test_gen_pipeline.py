"""The shared shot loop (generator/base.py): windows, blending, noise, audio, errors."""
from __future__ import annotations

import numpy as np
import pytest

import generator
from bridge import Conditioning, ShotConditioning
from generator.base import (ConditioningMismatchError, GeneratorError, ShotPipeline, blend_windows,
                            window_starts)


def synthetic_conditioning(shot_lengths=(7, 9), size=(32, 24), fps=12, sr=8000, crossfade=0, seed=0):
    """Shots back to back on one timeline; layers are simple functions of the frame index."""
    W, H = size
    rng = np.random.default_rng(seed)
    shots, f0 = [], 0
    for i, T in enumerate(shot_lengths):
        fr = np.arange(f0, f0 + T, dtype=np.int64)
        rgb = np.zeros((T, H, W, 3), np.uint8)
        rgb[..., 0] = (fr[:, None, None] * 7) % 256
        rgb[..., 1] = np.arange(W)[None, None, :] * 3
        layers = {"rgb": rgb, "depth": rng.uniform(1, 5, (T, H, W)).astype(np.float32),
                  "noise": rng.standard_normal((T, 4, H // 8, W // 8)).astype(np.float32)}
        tr = {"type": "cut"} if (i == 0 or not crossfade) else {"type": "crossfade", "frames": crossfade}
        shots.append(ShotConditioning(i, f"cam{i}", fr, np.tile(np.eye(3), (T, 1, 1)),
                                      np.tile(np.eye(4), (T, 1, 1)), layers, tr))
        f0 += T
    F = f0
    S = int(round(F / fps * sr))
    audio = (0.1 * np.sin(np.arange(S) / 7.0)).astype(np.float32)[None].repeat(2, 0)
    return Conditioning(shots, fps, F, audio, sr, [], ("a", "b"), np.zeros((3, 3), np.uint8))


class FrameIndexBackend(ShotPipeline):
    """Output is a known function of the global frame index: blending must reproduce it."""
    name = "frame-index"
    window, overlap = 4, 2

    def __init__(self):
        self.calls = []

    def generate_window(self, shot, frame_slice, style, prompt, seed, init_noise):
        self.calls.append((shot.shot, frame_slice.start, frame_slice.stop, init_noise))
        fr = shot.frames[frame_slice]
        W, H = shot.resolution
        out = np.zeros((len(fr), H, W, 3), np.uint8)
        out[...] = ((fr * 11) % 256)[:, None, None, None]
        return out


def test_window_starts_cover_with_overlap():
    for T in range(1, 40):
        for win, ov in [(4, 1), (5, 2), (8, 3), (16, 4)]:
            st = window_starts(T, win, ov)
            n = min(win, T)
            assert st[0] == 0 and st[-1] + n == T
            assert all(b - a <= win - ov for a, b in zip(st, st[1:]))


def test_blend_is_exact_for_consistent_windows():
    x = np.random.default_rng(0).normal(size=(23, 5))
    pieces = [(s, x[s:s + 6]) for s in window_starts(23, 6, 3)]
    np.testing.assert_allclose(blend_windows(23, pieces), x, atol=1e-12)


def test_blend_ramps_linearly_between_disagreeing_windows():
    a, b = np.zeros((6, 1)), np.ones((6, 1))
    out = blend_windows(9, [(0, a), (3, b)])[:, 0]
    assert out[0] == 0 and out[-1] == 1
    assert np.all(np.diff(out) >= 0)     # monotone ramp across the overlap, no jump
    assert np.max(np.diff(out)) < 0.5


@pytest.fixture(autouse=False)
def assemble():
    return pytest.importorskip("bridge.assemble")   # RENDER's module (assembly + MP4)


def test_windowed_shots_reproduce_frame_function_through_pipeline(assemble):
    cond = synthetic_conditioning(shot_lengths=(7, 11))
    be = FrameIndexBackend()
    clip = be(cond, seed=3, progress=False)
    assert clip.frames.shape == (18, 24, 32, 3) and clip.frames.dtype == np.uint8
    expect = ((np.arange(18) * 11) % 256).astype(np.uint8)
    np.testing.assert_array_equal(clip.frames[:, 0, 0, 0], expect)
    assert len({c[1] for c in be.calls if c[0] == 1}) >= 4      # shot 1 really split into windows
    assert clip.audio.shape == cond.audio.shape and clip.audio.dtype == np.float32
    np.testing.assert_allclose(clip.audio, cond.audio, atol=0)   # no model audio: the bridge's track


def test_anchored_noise_is_the_bridges_and_iid_is_seeded(assemble):
    cond = synthetic_conditioning()
    be = FrameIndexBackend()
    be(cond, progress=False)
    shot, st, sp, nz = be.calls[0]
    np.testing.assert_array_equal(nz, cond.shots[shot].layers["noise"][st:sp])
    be2, be3 = FrameIndexBackend(), FrameIndexBackend()
    be2(cond, noise="iid", seed=5, progress=False)
    be3(cond, noise="iid", seed=5, progress=False)
    assert not np.allclose(be2.calls[0][3], nz)
    np.testing.assert_array_equal(be2.calls[0][3], be3.calls[0][3])


class GlobalAudioBackend(FrameIndexBackend):
    audio_source = "global"
    audio_window_s, audio_overlap_s = 0.5, 0.1

    def generate_audio_window(self, c, start, stop, style, prompt, seed, video=None):
        t = np.arange(start, stop) / c.sample_rate
        return np.stack([np.sin(2 * np.pi * 50 * t)] * 2).astype(np.float32)


def test_global_audio_windows_are_continuous_across_cuts(assemble):
    cond = synthetic_conditioning()
    clip = GlobalAudioBackend()(cond, progress=False)
    t = np.arange(cond.audio.shape[1]) / cond.sample_rate
    np.testing.assert_allclose(clip.audio[0], np.sin(2 * np.pi * 50 * t), atol=1e-5)


def test_preview_backend_and_save_roundtrip(tmp_path, assemble):
    cond = synthetic_conditioning()
    clip = generator.load("preview")(cond, style="sepia", progress=False)
    mp4 = clip.save(tmp_path / "out")
    assert mp4.exists() and mp4.stat().st_size > 0
    back = generator.GeneratedClip.load(tmp_path / "out")
    np.testing.assert_array_equal(back.frames, clip.frames)
    assert back.audio.shape == clip.audio.shape and back.fps == clip.fps


def test_mismatched_conditioning_raises_clear_errors(assemble):
    cond = synthetic_conditioning()
    be = FrameIndexBackend()
    be.resolution = (64, 64)
    with pytest.raises(ConditioningMismatchError, match="resolution 32x24 .* 64x64"):
        be(cond, progress=False)
    bad = cond.shots[1]
    layers = dict(bad.layers, depth=bad.layers["depth"][:-2])
    cond2 = cond.replace(shots=[cond.shots[0], ShotConditioning(1, "cam1", bad.frames, bad.K, bad.w2c, layers)])
    with pytest.raises(ConditioningMismatchError, match="shot 1: layer 'depth' has 7 frames, the shot has 9"):
        FrameIndexBackend()(cond2, progress=False)
    with pytest.raises(ConditioningMismatchError, match="outside the timeline"):
        FrameIndexBackend()(cond.replace(num_frames=10, audio=cond.audio[:, :6667]), progress=False)
    with pytest.raises(GeneratorError, match="unknown generator 'nope'"):
        generator.load("nope")
    with pytest.raises(GeneratorError, match="unknown style"):
        generator.load("preview")(cond, style="vaporwave", progress=False)


@pytest.mark.slow
def test_builtin_and_preview_on_a_rendered_library_scene(rollout_cache, tmp_path):
    """Real bridge output (crossfade margins, events, anchored noise on the model's
    latent grid) through the shared loop: frame count, resolution, audio length."""
    import bridge
    from generator.builtin import BuiltinModel, BuiltinPipeline
    from generator.autoencoder import autoencoder_config
    from generator.train import SIZES
    traj = rollout_cache("drop_test")
    s = SIZES["tiny"]
    m = BuiltinModel.create(autoencoder=autoencoder_config(sample_size=32, **s["autoencoder"]),
                            denoiser=s["denoiser"], control_layers=1, codec=s["codec"])
    m.config.resolution = (32, 32)
    pipe = BuiltinPipeline(model_obj=m, device="cpu", num_inference_steps=1)
    cond = bridge.render(traj, **pipe.render_options())
    assert cond.shots[0].layers["noise"].shape[2:] == m.latent_size
    for p in (pipe, generator.load("preview")):
        clip = p(cond, seed=0, progress=False)
        assert clip.frames.shape == (cond.num_frames, 32, 32, 3)
        assert clip.audio.shape == cond.audio.shape
    assert clip.save(tmp_path / "out").exists()
