"""Pretrained backends (LTX-2, Wan VACE, Cosmos-Transfer2.5) on tiny random-weight
pipelines of the real diffusers classes, driven by a bundled scene's conditioning
(drop_test: sim.rollout + bridge.render at 64x32) through physcut's call on CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import generator  # noqa: E402
from generator.base import CheckpointError, GeneratorError  # noqa: E402
from generator.backends import common, tiny  # noqa: E402
from generator.backends.ltx2 import event_timing_text  # noqa: E402

FAMILIES = tiny.FAMILIES
CONTROL_LAYERS = {"ltx2": ("depth_vis", "pose"), "vace": ("depth_vis",), "cosmos": ("depth_vis", "segmentation_rgb")}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cond(rollout_cache):
    import bridge
    traj = rollout_cache("drop_test", duration=1.0)
    return bridge.render(traj, layers=("depth", "pose", "segmentation", "rgb", "noise"), resolution=(64, 32))


_PIPES = {}


def tiny_backend(family, **kw):
    """A backend around a (cached) tiny pipeline; options as the saved tiny model's."""
    if family not in _PIPES:
        pipe, embeds = tiny.build_tiny(family)
        extra = tiny.tiny_cosmos_controlnets() if family == "cosmos" else {}
        _PIPES[family] = (pipe, embeds, extra)
    pipe, embeds, extra = _PIPES[family]
    d = dict(tiny.TINY_DEFAULTS[family])
    opts = dict(pipeline=pipe, prompt_embeds=embeds, window=tiny.TINY_WINDOW[family], overlap=4,
                steps=d.pop("num_inference_steps"), guidance_scale=d.pop("guidance_scale"), pipeline_kwargs=d)
    if family == "cosmos":
        opts["controlnets"] = {"depth": "controlnet", **extra}
    if family == "ltx2":
        opts["controls"] = ("depth", "pose")
    opts.update(kw)
    return generator.load(family, **opts)


def with_layers(cond, fn):
    """The conditioning with every shot's layers replaced by fn(layers)."""
    from bridge.conditioning import ShotConditioning
    shots = [ShotConditioning(s.shot, s.camera, s.frames, s.K, s.w2c, fn(dict(s.layers)), s.transition, s.prompt)
             for s in cond.shots]
    return cond.replace(shots=shots)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_pipeline_shapes_audio_determinism(family, cond):
    b = tiny_backend(family)
    clip = b(cond, seed=3, progress=False)
    W, H = common.snap_resolution(64, 32, b.spatial_multiple)
    assert clip.frames.shape == (cond.num_frames, H, W, 3) and clip.frames.dtype == np.uint8
    assert [len(f) for f, _ in clip.shot_frames] == [s.num_frames for s in cond.shots]
    assert all(img.shape == (s.num_frames, H, W, 3) for (_, img), s in zip(clip.shot_frames, cond.shots))
    assert clip.audio.shape == cond.audio.shape and clip.sample_rate == cond.sample_rate
    assert np.isfinite(clip.audio).all() and np.abs(clip.audio).max() <= 1.0
    if family == "ltx2":   # its own generated sound, laid on the timeline
        assert np.abs(clip.audio).max() > 0 and not np.array_equal(clip.audio, cond.audio)
    else:                  # the bridge's contact audio
        assert np.array_equal(clip.audio, cond.audio)
    again = b(cond, seed=3, progress=False)
    assert np.array_equal(clip.frames, again.frames) and np.array_equal(clip.audio, again.audio)
    # With anchored noise the start latents come from the bridge; the seed drives i.i.d. noise.
    iid3, iid4 = (b(cond, seed=k, noise="iid", progress=False).frames for k in (3, 4))
    assert not np.array_equal(iid3, iid4)
    assert not np.array_equal(clip.frames, iid3)       # the anchored noise reaches the latents
    assert clip.meta["backend"] == family and clip.meta["steps"] == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_control_video_changes_output(family, cond):
    b = tiny_backend(family)
    base = b(cond, seed=0, progress=False).frames.astype(int)
    for layer in CONTROL_LAYERS[family]:
        changed = with_layers(cond, lambda L: {**L, layer: (255 - L[layer]).astype(np.uint8)})
        diff = np.abs(b(changed, seed=0, progress=False).frames.astype(int) - base).max()
        assert diff >= 1, f"{family}: changing {layer} did not change the output"


def test_cosmos_control_weights_are_exact_and_matter(cond):
    depth_only = tiny_backend("cosmos", controlnets={"depth": "controlnet"})(cond, seed=0, progress=False).frames
    muted = tiny_backend("cosmos", control_weights={"seg": 0.0, "edge": 0.0})(cond, seed=0, progress=False).frames
    full = tiny_backend("cosmos")(cond, seed=0, progress=False).frames
    assert np.array_equal(depth_only, muted)          # weight 0 removes a control exactly
    assert not np.array_equal(muted, full)


def test_ltx2_contact_audio_reaches_the_audio_stream(cond):
    b = tiny_backend("ltx2", audio_guide=0.6)
    loud = b(cond, seed=0, progress=False).audio
    silent = b(cond.replace(audio=np.zeros_like(cond.audio)), seed=0, progress=False).audio
    assert not np.array_equal(loud, silent)
    # audio_guide=0: no audio latents are offered; the event timing goes into the prompt.
    b0 = tiny_backend("ltx2", audio_guide=0.0)
    b0._cond = cond
    shot = cond.shots[0]
    kw = b0.window_inputs(shot, slice(0, shot.num_frames), "preview", None, 0, None)
    assert "audio_latents" not in kw and "audio_latents" in b.__class__.window_inputs(
        _with_cond(b, cond), shot, slice(0, shot.num_frames), "preview", None, 0, None)
    text = b0.window_prompt(shot, "preview", None, 0.0, cond.num_frames / cond.fps)
    assert shot.prompt in text and "CGI" in text
    if cond.events:
        assert "impact at" in text


def _with_cond(backend, cond):
    backend._cond = cond
    return backend


def test_event_timing_text():
    ev = [{"time": 0.5, "material": "wood"}, {"time": 2.0, "material": "steel"}]
    assert event_timing_text(ev, 0.25, 1.0) == "Sound: impact at 0.25 s (wood)"
    assert event_timing_text(ev, 3.0, 4.0) == ""


def test_map_noise_keeps_anchored_samples_and_unit_variance():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((9, 4, 32, 32)).astype(np.float32)
    x = common.map_noise(noise, channels=16, latent_frames=3, latent_h=8, latent_w=8, temporal_ratio=4)
    assert tuple(x.shape) == (16, 3, 8, 8)
    assert abs(float(x.std()) - 1.0) < 1e-4
    corr = np.corrcoef(x.reshape(16, -1).numpy())
    assert np.abs(corr - np.eye(16)).max() < 0.35     # channels are distinct samples, not copies
    # Deterministic, and latent frame k reads pixel frame 4k: changing frame 1 changes nothing.
    y = noise.copy()
    y[1] += 5.0
    assert torch.equal(common.map_noise(noise, 16, 3, 8, 8, 4), x)
    assert torch.equal(common.map_noise(y, 16, 3, 8, 8, 4), x)
    y[4] += 5.0
    assert not torch.equal(common.map_noise(y, 16, 3, 8, 8, 4), x)


def test_frame_and_resolution_rounding():
    assert [common.round_up_frames(n, 4) for n in (1, 2, 5, 6, 81)] == [1, 5, 5, 9, 81]
    assert common.round_up_frames(100, 8) == 105
    assert common.snap_resolution(64, 32, 32) == (64, 32) and common.snap_resolution(50, 10, 16) == (48, 16)


# --------------------------------------------------------------------------- model dirs + CLI
@pytest.mark.parametrize("family", FAMILIES)
def test_saved_tiny_dir_loads_and_runs(family, cond, tmp_path):
    d = tiny.save_tiny(family, tmp_path / family)
    b = generator.load(family, model=str(d))
    assert b.describe()["random_weights"] and b.describe()["prompt_source"] == "precomputed_embeddings"
    clip = b(cond, seed=0, progress=False)
    assert clip.frames.shape[0] == cond.num_frames
    mp4 = clip.save(tmp_path / "out")
    assert mp4.exists() and mp4.stat().st_size > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_run_with_local_model_dir(family, tmp_path):
    import physcut_cli
    d = tiny.save_tiny(family, tmp_path / family)
    out = tmp_path / "run"
    rc = physcut_cli.main(["run", "drop_test", "--param", "duration=1.0", "--resolution", "32x32",
                           "--generator", family, "--model", str(d), "-o", str(out), "-q"])
    assert rc == 0
    from generator.base import GeneratedClip
    clip = GeneratedClip.load(out / "generated")
    assert (out / "generated" / "video.mp4").exists()
    assert clip.meta["backend"] == family and clip.meta["random_weights"]
    assert clip.frames.shape[1:] == (32, 32, 3)
    assert clip.audio.shape[1] == round(clip.frames.shape[0] / clip.fps * clip.sample_rate)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_model_directory(family, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        generator.load(family, model=str(tmp_path / "no_such_model"))
    with pytest.raises(GeneratorError, match="model=PATH"):
        generator.load(family)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model_index.json"):
        generator.load(family, model=str(tmp_path / "empty"))


@pytest.mark.parametrize("family", FAMILIES)
def test_directory_of_another_model_family(family, tmp_path):
    other = {"ltx2": "WanVACEPipeline", "vace": "Cosmos2_5_TransferPipeline", "cosmos": "LTX2Pipeline"}[family]
    d = tmp_path / "other"
    d.mkdir()
    (d / "model_index.json").write_text(json.dumps({"_class_name": other, "_diffusers_version": "0.42.1"}))
    with pytest.raises(CheckpointError, match=f"'{other}', a model of another family.*use --generator"):
        generator.load(family, model=str(d))
    (d / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(CheckpointError, match="StableDiffusionPipeline"):
        generator.load(family, model=str(d))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's errors")
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("opt,match", [({"device": "cuda"}, "GPU-only"), ({"dtype": "bfloat16"}, "GPU-only"),
                                       ({"dtype": "float16"}, "GPU-only"), ({"cpu_offload": True}, "GPU-only"),
                                       ({"dtype": "float64"}, "dtype must be one of")])
def test_gpu_only_options_on_cpu(family, opt, match, tmp_path):
    with pytest.raises(GeneratorError, match=match):
        generator.load(family, model=str(tmp_path), **opt)


def test_bad_options_name_the_field():
    with pytest.raises(GeneratorError, match="control must be one of"):
        generator.load("vace", control="normals", model="x/y")
    with pytest.raises(GeneratorError, match="unknown control type"):
        generator.load("cosmos", control_weights={"canny": 1.0}, model="x/y")
    with pytest.raises(GeneratorError, match="audio_guide"):
        generator.load("ltx2", audio_guide=1.5, model="x/y")
    with pytest.raises(GeneratorError, match="valid options"):
        generator.load("vace", no_such_option=1)
