"""Built-in model classes at tiny configs: shapes, save/load, zero-init control,
one training step, determinism, and clear errors for bad checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generator import CheckpointError, ConditioningMismatchError  # noqa: E402
from generator.autoencoder import FrameAutoencoder, autoencoder_config  # noqa: E402
from generator.builtin import BuiltinConfig, BuiltinModel, BuiltinPipeline  # noqa: E402
from generator.control import ControlBranch, predict  # noqa: E402
from generator.denoiser import JointDenoiser  # noqa: E402
from generator.train import SIZES, flow_loss, make_batch  # noqa: E402
from generator.data import synthetic_windows  # noqa: E402
from test_gen_pipeline import synthetic_conditioning  # noqa: E402

T, RES = 4, 32


def tiny_model(seed=0) -> BuiltinModel:
    s = SIZES["tiny"]
    return BuiltinModel.create(BuiltinConfig(resolution=(RES, RES), window=T, overlap=1, num_inference_steps=3),
                               autoencoder=autoencoder_config(sample_size=RES, **s["autoencoder"]),
                               denoiser=s["denoiser"], control_layers=s["control_layers"], codec=s["codec"],
                               seed=seed)


def randomise(module, seed=0, std=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def inputs(m: BuiltinModel, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = RES // m.downsample
    L = 18
    video = torch.randn(B, T, 4, h, h, generator=g)
    audio = torch.randn(B, L, m.codec.latent_channels, generator=g)
    maps = {"depth": torch.randn(B, T, 1, RES, RES, generator=g),
            "segmentation": torch.randn(B, T, 3, RES, RES, generator=g)}
    return (video, audio, torch.full((B,), 700.0), torch.full((B,), 300.0), torch.tensor([1, 2][:B]),
            torch.arange(T).expand(B, T) / 24.0, torch.arange(L).expand(B, L) / 100.0), maps, \
        torch.rand(B, L, 1, generator=g)


def one_step(loss, params, lr=1e-2) -> tuple[float, float]:
    """(loss before, loss after) one Adam step on ``params`` of the closure ``loss``."""
    opt = torch.optim.Adam(params, lr=lr)
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    return before.item(), after.item()


def test_shapes_of_every_component():
    m = tiny_model()
    frames = torch.rand(2, T, 3, RES, RES) * 2 - 1
    z = m.autoencoder.encode_video(frames)
    assert z.shape == (2, T, 4, RES // 4, RES // 4)
    assert m.autoencoder.decode_video(z).shape == frames.shape
    args, maps, env = inputs(m)
    vv, va = m.denoiser(*args)
    assert vv.shape == args[0].shape and va.shape == args[1].shape
    hv, ha, ev, ea = m.denoiser.embed(*args)
    res = m.control(hv, ha, ev, ea, maps, env)
    assert len(res) == m.control.config.num_layers
    assert res[0][0].shape == hv.shape and res[0][1].shape == ha.shape
    wav = torch.zeros(1, 2, 1600)
    mel = m.codec.encode(wav)
    assert mel.shape == (1, 11, m.codec.latent_channels)
    assert m.codec.decode(mel, 1600).shape == (1, 2, 1600)


def test_zero_initialised_control_leaves_base_output_unchanged():
    m = tiny_model()
    randomise(m.denoiser)                      # a non-trivial base (fresh adaLN-Zero outputs are 0)
    ctrl = ControlBranch.from_denoiser(m.denoiser, num_layers=1, token_stride=8, map_hidden=8)
    args, maps, env = inputs(m)
    with torch.no_grad():
        base_v, base_a = m.denoiser(*args)
        with_v, with_a = predict(m.denoiser, ctrl, *args, maps=maps, audio_control=env)
    assert base_v.abs().mean() > 0
    assert torch.equal(base_v, with_v) and torch.equal(base_a, with_a)
    # ... and the control path is real: once its zero projections move, the output follows the maps.
    randomise(ctrl, seed=1)
    with torch.no_grad():
        a, _ = predict(m.denoiser, ctrl, *args, maps=maps, audio_control=env)
        maps2 = {k: v.flip(-1) for k, v in maps.items()}
        b, _ = predict(m.denoiser, ctrl, *args, maps=maps2, audio_control=env)
        off, _ = predict(m.denoiser, ctrl, *args, maps=maps, audio_control=env,
                         scales={k: 0.0 for k in maps}, audio_scale=0.0)
        absent, _ = predict(m.denoiser, ctrl, *args, maps={"pose": None}, audio_control=None)
    assert not torch.allclose(a, b)
    assert torch.allclose(off, absent, atol=1e-6)       # scale 0 == the maps absent (dropout at training)


def test_component_save_load_roundtrip(tmp_path):
    m = tiny_model()
    randomise(m.denoiser)
    randomise(m.control, seed=2)
    m.eval()                                  # from_pretrained returns eval-mode modules
    m.save(tmp_path / "m")
    assert not list(tmp_path.rglob("*.bin"))
    den = JointDenoiser.from_pretrained(str(tmp_path / "m" / "denoiser"))
    ae = FrameAutoencoder.from_pretrained(str(tmp_path / "m" / "autoencoder"))
    back = BuiltinModel.load(tmp_path / "m")
    args, maps, env = inputs(m)
    with torch.no_grad():
        ref = predict(m.denoiser, m.control, *args, maps=maps, audio_control=env)
        got = predict(back.denoiser, back.control, *args, maps=maps, audio_control=env)
        assert torch.equal(m.denoiser(*args)[0], den(*args)[0])
        x = torch.rand(1, T, 3, RES, RES)
        assert torch.equal(m.autoencoder.encode_video(x), ae.encode_video(x))
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    assert back.config == m.config


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    m = tiny_model()
    data = synthetic_windows(4, seed=0, window=T, size=(RES, RES))
    batch = make_batch(data, np.arange(4), np.random.default_rng(0))
    params = list(m.denoiser.parameters()) + list(m.control.parameters())
    before, after = one_step(lambda: flow_loss(m, batch, torch.Generator().manual_seed(0))[0], params)
    assert after < before - 1e-3


def test_autoencoder_training_step_lowers_reconstruction_loss():
    from generator.train import autoencoder_loss
    m = tiny_model()
    frames = synthetic_windows(2, seed=1, window=T, size=(RES, RES))["rgb"].reshape(-1, RES, RES, 3)
    opt = torch.optim.Adam(m.autoencoder.parameters(), lr=1e-3)
    before = autoencoder_loss(m.autoencoder, frames, torch.Generator().manual_seed(0))
    opt.zero_grad()
    before.backward()
    opt.step()
    after = autoencoder_loss(m.autoencoder, frames, torch.Generator().manual_seed(0))
    assert after.item() < before.item()


@pytest.fixture
def pipe_and_cond():
    pytest.importorskip("bridge.assemble")
    m = tiny_model()
    randomise(m.denoiser)
    randomise(m.control, seed=3)
    cond = synthetic_conditioning(shot_lengths=(4, 6), size=(RES, RES))
    pipe = BuiltinPipeline(model_obj=m, device="cpu", num_inference_steps=2)
    # anchored noise of the time period (its window) and means the pipeline asks the bridge for
    return pipe, cond.replace(meta={**cond.meta, "noise": {"kind": "point", "period": pipe.window,
                                                           "means": pipe.noise_means}})


def test_pipeline_matches_timeline_and_same_seed_same_sample(pipe_and_cond):
    pipe, cond = pipe_and_cond
    a = pipe(cond, style="toon", seed=1, progress=False)
    assert a.frames.shape == (cond.num_frames, RES, RES, 3) and a.frames.dtype == np.uint8
    assert a.audio.shape == cond.audio.shape and a.audio.dtype == np.float32
    assert np.isfinite(a.audio).all() and np.abs(a.audio).max() > 0
    assert [s[1].shape[0] for s in a.shot_frames] == [4, 6]
    b = pipe(cond, style="toon", seed=1, progress=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)
    c = pipe(cond, style="toon", seed=2, noise="iid", progress=False)
    assert not np.array_equal(a.frames, c.frames)


def test_pipeline_rejects_conditioning_of_the_wrong_resolution(pipe_and_cond):
    pipe, _ = pipe_and_cond
    with pytest.raises(ConditioningMismatchError, match="resolution 48x40 does not match the model's 32x32"):
        pipe(synthetic_conditioning(size=(48, 40)), progress=False)


# --------------------------------------------------------------------------- bad checkpoints
@pytest.fixture
def saved(tmp_path):
    d = tmp_path / "model"
    tiny_model().save(d)
    return d


def test_missing_model_directory_and_index(tmp_path, saved):
    with pytest.raises(CheckpointError, match="model directory not found"):
        BuiltinModel.load(tmp_path / "nope")
    (saved / "physcut_model.json").unlink()
    with pytest.raises(CheckpointError, match="physcut_model.json: file not found"):
        BuiltinModel.load(saved)


def test_pickle_weights_are_refused(tmp_path, saved):
    w = saved / "denoiser" / "diffusion_pytorch_model.safetensors"
    torch.save({"x": torch.zeros(1)}, saved / "denoiser" / "diffusion_pytorch_model.bin")
    w.unlink()
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.bin: pickle weights are refused"):
        BuiltinModel.load(saved)
    with pytest.raises(CheckpointError, match=r"weights\.pt: pickle weights are refused"):
        (tmp_path / "weights.pt").write_bytes(b"\x80\x04")
        BuiltinModel.load(tmp_path / "weights.pt")


def test_corrupt_and_missing_weights(saved):
    w = saved / "control" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"control/diffusion_pytorch_model\.safetensors: corrupt"):
        BuiltinModel.load(saved)
    w.unlink()
    with pytest.raises(CheckpointError, match=r"control/diffusion_pytorch_model\.safetensors: file not found"):
        BuiltinModel.load(saved)


def test_config_not_matching_weights_names_both_files(saved):
    cfg = saved / "denoiser" / "config.json"
    c = json.loads(cfg.read_text())
    c["hidden_dim"] = 48
    cfg.write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match=r"denoiser/diffusion_pytorch_model\.safetensors does not match "
                                              r".*denoiser/config\.json: .*shape mismatch"):
        BuiltinModel.load(saved)
    cfg.write_text("{ broken")
    with pytest.raises(CheckpointError, match=r"denoiser/config\.json: unreadable config"):
        BuiltinModel.load(saved)


def test_builtin_loads_by_name_and_missing_default_is_clear(tmp_path, saved):
    import generator
    pipe = generator.load("builtin", model=str(saved), device="cpu")
    assert pipe.resolution == (RES, RES) and pipe.window == T
    # the saved test model has no training recipe: like every model before the field, point noise
    assert pipe.render_options() == {"resolution": (RES, RES), "latent_factor": 4, "noise_kind": "point",
                                     "noise_period": T, "noise_means": "octaves"}
    pipe.model.config.recipe = {"data": {"kind": "simulated", "noise": {"kind": "integral"}}}
    assert pipe.render_options()["noise_kind"] == "integral"
    with pytest.raises(CheckpointError, match="model directory not found"):
        generator.load("builtin", model=str(tmp_path / "missing"))


def test_quality_metrics_on_known_inputs():
    from benchmarks.generator_quality import class_agreement, onset_f1, psnr
    seg = np.zeros((2, 8, 8), np.int32)
    seg[:, :, 4:] = 1
    seg[:, 6:, :] = 2
    colours = np.array([[10, 10, 10], [200, 30, 30], [30, 30, 200]], np.uint8)
    assert class_agreement(colours[seg], seg) == 1.0
    flat = np.full((2, 8, 8, 3), 90, np.uint8)
    assert class_agreement(flat, seg) < 0.7
    assert psnr(flat, flat) > 90
    r = onset_f1(np.array([0.10, 0.52, 0.90]), np.array([0.11, 0.50, 1.50]))
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert onset_f1(np.array([0.2]), np.array([0.25]))["f1"] == 0.0     # 50 ms off: outside 40 ms


def test_cut_statistics_and_summaries_of_earlier_runs(tmp_path):
    """(d)'s paired statistics, and --summarise: one file's summary recomputed from its
    scenes, several pooled, overlapping scenes refused."""
    import json
    from benchmarks.generator_quality import cut_statistics, main
    s = cut_statistics([10.0, 11.0, 12.0, 9.0, 10.0], [12.0, 13.0, 13.0, 12.0, 9.5])
    assert s["cuts_anchored_lower"] == 4
    assert s["cut_error_difference_se"] == pytest.approx(np.std([-2, -2, -1, -3, 0.5], ddof=1) / np.sqrt(5))
    assert 0 < s["cut_p_ttest"] < 0.05 and s["cut_p_sign"] == pytest.approx(6 / 32)
    assert cut_statistics([9.0, 10.0, 9.5], [5.0, 5.5, 5.0])["cut_p_ttest"] > 0.9

    def scene(a, i):
        return {"structure_on": 0.9, "structure_off": 0.4, "psnr_on": 17.0, "psnr_off": 11.0,
                "audio": {"f1": 0.9}, "audio_reference_conditioning": {"f1": 1.0},
                "audio_reference_vocoder": {"f1": 0.8}, "cut_error_anchored": a, "cut_error_iid": i,
                "cut_error_preview": [1.0] * len(a), "cut_noise_correlation": [0.1] * len(a),
                "cut_noise_correlation_lowpass": [0.4] * len(a)}
    files = []
    for k, scenes in enumerate([{"s0": scene([10.0], [12.0]), "s1": scene([], [])},
                                {"s2": scene([11.0, 30.0], [13.0, 20.0])}]):
        files.append(tmp_path / f"r{k}.json")
        files[-1].write_text(json.dumps({"benchmark": "generator_quality", "recipe": {"seed": k},
                                         "summary": {"cut_seeds": 3}, "scenes": scenes}))
    assert main(["--summarise", str(files[0]), "-o", str(files[0])]) == 0
    one = json.loads(files[0].read_text())
    assert one["recipe"] == {"seed": 0} and one["summary"]["cuts"] == 1
    assert one["summary"]["targets"]["cut error anchored < iid"] is True
    main(["--summarise", *map(str, files), "-o", str(tmp_path / "pooled.json")])
    pooled = json.loads((tmp_path / "pooled.json").read_text())["summary"]
    assert pooled["cuts"] == 3 and pooled["cuts_anchored_lower"] == 2
    assert pooled["cut_error_anchored"] == pytest.approx(17.0) and pooled["cut_error_iid"] == pytest.approx(15.0)
    assert pooled["targets"]["cut error anchored < iid"] is False
    with pytest.raises(SystemExit, match="s0"):
        main(["--summarise", str(files[0]), str(files[0])])


def test_cross_cut_error_reprojects_between_the_shots():
    """A wall 4 m in front of two cameras 0.25 m apart (focal 32 px): the same wall
    point is 2 px further right in the first shot. A colour ramp that follows the wall
    has no cross-cut error; the same image in both shots has the error of 2 px of ramp."""
    from types import SimpleNamespace
    from benchmarks.generator_quality import cut_consistency, cut_noise_correlation
    H = W = 16
    K = np.array([[32.0, 0, 7.5], [0, 32.0, 7.5], [0, 0, 1]])
    w2c_b = np.eye(4)
    w2c_b[0, 3] = -0.25

    def shot(k, frame, w2c, noise, transition):
        return SimpleNamespace(shot=k, frames=np.array([frame]), transition=transition, K=K[None], w2c=w2c[None],
                               layers={"depth": np.full((1, H, W), 4.0, np.float32),
                                       "segmentation": np.ones((1, H, W), np.int32), "noise": noise[None]})
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, H // 2, W // 2)).astype(np.float32)
    cond = SimpleNamespace(shots=[shot(0, 0, np.eye(4), noise, {}), shot(1, 1, w2c_b, noise, {"type": "cut"})])
    ramp = (np.arange(W) * 5.0)[None, None, :, None].repeat(H, 1).repeat(3, 3)
    a = ramp.astype(np.uint8)
    b = np.roll(ramp, -2, axis=2).astype(np.uint8)       # b[u] = a[u + 2]
    assert cut_consistency(cond, [(None, a), (None, b)], [1]) == [0.0]
    assert cut_consistency(cond, [(None, a), (None, a)], [1]) == [pytest.approx(10.0)]
    assert cut_consistency(cond, [(None, a), (None, b)], [2]) == []            # no static body in view
    cond.shots[1].transition = {"type": "crossfade"}
    assert cut_consistency(cond, [(None, a), (None, b)], [1]) == []            # crossfades are not cuts
    cond.shots[1].transition = {"type": "cut"}
    # the same noise at the same latent pixels would be correlation 1; shifted by one latent pixel it is not
    assert cut_noise_correlation(cond, [1], 2)[0] < 0.5
    cond.shots[1].layers["noise"] = np.roll(noise, -1, axis=2)[None]
    assert cut_noise_correlation(cond, [1], 2)[0] > 0.99
    # low-passed: white noise shifted by one latent pixel still shares its low frequencies
    shifted = cond.shots[1].layers["noise"]
    cond.shots[1].layers["noise"] = np.roll(noise, -2, axis=2)[None]
    assert cut_noise_correlation(cond, [1], 2)[0] < 0.5 < cut_noise_correlation(cond, [1], 2, sigma=2.0)[0]
    cond.shots[1].layers["noise"] = shifted
    # With a noise period P the first frame after the cut is compared with the frame of
    # the same phase, P frames before it (P = 2: the first of the two frames of shot a).
    other = rng.standard_normal(noise.shape).astype(np.float32)
    two = shot(0, 0, np.eye(4), noise, {})
    two.frames, two.K, two.w2c = np.array([0, 1]), K[None].repeat(2, 0), np.eye(4)[None].repeat(2, 0)
    two.layers = {k: np.concatenate([v, v]) for k, v in two.layers.items()}
    two.layers["noise"] = np.stack([noise, other])
    cond = SimpleNamespace(shots=[two, shot(1, 2, w2c_b, np.roll(noise, -1, axis=2), {"type": "cut"})],
                           meta={"noise": {"kind": "point", "period": 2}})
    assert cut_noise_correlation(cond, [1], 2)[0] > 0.99
    cond.meta = {"noise": {"kind": "point"}}                                     # no period: the last frame
    assert abs(cut_noise_correlation(cond, [1], 2)[0]) < 0.5


def test_pipeline_warns_when_the_noise_is_not_the_kind_the_model_was_trained_on(pipe_and_cond):
    import warnings
    pipe, cond = pipe_and_cond
    assert pipe.noise_kind == "point"                        # no recipe: a model from before the field
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe(cond.replace(meta={"noise": {"period": pipe.window, "means": "octaves"}}), seed=0,
             progress=False)                                                    # no kind: point
        pipe(cond.replace(meta={"noise": {"kind": "integral"}}), seed=0, noise="iid", progress=False)
    with pytest.warns(UserWarning, match="anchored noise is 'integral', but this model was trained on 'point'"):
        pipe(cond.replace(meta={"noise": {"kind": "integral", "period": pipe.window, "means": "octaves"}}),
             seed=0, progress=False)
    # noise frozen in time (the bridge's default, no period) or of another period than the window
    for meta in ({"noise": {"kind": "point", "means": "octaves"}}, {"noise": {"means": "octaves"}},
                 {"noise": {"kind": "point", "period": pipe.window + 1, "means": "octaves"}}):
        with pytest.warns(UserWarning, match=f"time period .*window is {pipe.window} frames.*--noise-period"):
            pipe(cond.replace(meta=meta), seed=0, progress=False)
    with warnings.catch_warnings(record=True) as caught:     # no record at all: frozen, no means
        warnings.simplefilter("always")
        pipe(cond.replace(meta={}), seed=0, progress=False)
    assert sorted("time period" in str(w.message) for w in caught) == [False, True]
    # means not drawn from the surfaces (the bridge's default), or only per body
    for means in ({}, {"means": "body"}):
        with pytest.warns(UserWarning, match="anchored noise has means .*samples with 'octaves'.*--noise-means"):
            pipe(cond.replace(meta={"noise": {"kind": "point", "period": pipe.window, **means}}), seed=0,
                 progress=False)


def test_initial_noise_is_standardised_per_channel_over_the_window():
    from generator.builtin import standardise_channels
    rng = np.random.default_rng(0)
    n = rng.standard_normal((4, 4, 8, 8)) * np.array([1.0, 2.0, 0.5, 1.0])[None, :, None, None] \
        + np.array([0.3, -1.0, 0.0, 2.0])[None, :, None, None]
    s = standardise_channels(n)
    assert s.dtype == np.float32 and s.shape == n.shape
    np.testing.assert_allclose(s.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(s.std(axis=(0, 2, 3)), 1, atol=1e-5)
    # an affine map per channel: every correlation (the anchoring) stays as it was
    for c in range(4):
        np.testing.assert_allclose(np.corrcoef(s[:, c].ravel(), n[:, c].ravel())[0, 1], 1.0, atol=1e-6)


def test_quality_and_noise_ablation_benchmarks_run_on_a_tiny_model():
    """Both benchmarks' per-scene evaluation on a simulated tuning scene, tiny model."""
    import bridge
    import sim
    from benchmarks import generator_quality, noise_ablation
    from generator.data import random_scene
    m = tiny_model()
    randomise(m.denoiser)
    randomise(m.control, seed=3)
    pipe = BuiltinPipeline(model_obj=m, device="cpu", num_inference_steps=2)
    traj = sim.rollout(random_scene(noise_ablation.TUNING_SEED), engine="mujoco", seed=0)
    cond = bridge.render(traj, **pipe.render_options())
    assert cond.meta["noise"] == {"kind": "point", "period": T, "means": "octaves"}
    m.config.carry_fraction = 1.0                                    # the surface memory on, as shipped
    r = generator_quality.evaluate_scene(pipe, traj, cond, 0, cut_seeds=2)
    n = len(r["cut_error_anchored"])
    assert n >= 1 and len(r["cut_error_iid"]) == len(r["cut_noise_correlation"]) == n
    assert len(r["cut_noise_correlation_lowpass"]) == len(r["cut_error_anchored_noise_only"]) == n
    assert np.all(np.isfinite(r["cut_error_anchored"] + r["cut_error_iid"] + r["cut_noise_correlation"]))
    # averaged over two seeds: not the first seed's sample alone
    statics = generator_quality.static_ids(traj)
    first = generator_quality.cut_consistency(cond, pipe(cond, style="preview", seed=0, progress=False).shot_frames,
                                              statics)
    assert not np.allclose(first, r["cut_error_anchored"])
    pipe.carry = False
    plain = generator_quality.cut_consistency(cond, pipe(cond, style="preview", seed=0, progress=False).shot_frames,
                                              statics)
    pipe.carry = True
    assert r["cut_error_anchored_noise_only"] == pytest.approx(plain) and plain != pytest.approx(first)
    a = noise_ablation.evaluate_scene(pipe, traj)
    assert set(a) == set(noise_ablation.VARIANTS) and pipe.standardise_noise and pipe.carry
    assert all(len(a[v]["cut_error"]) == n for v in a)
    assert a["carry_std"]["cut_error"] == pytest.approx(first)         # the shipped pipeline's own sample
    assert a["octaves_std"]["cut_error"] == pytest.approx(plain)       # its noise alone
    assert a["period_std"]["cut_error"] != pytest.approx(plain)
    assert a["pasted_std"]["cut_error"] != pytest.approx(plain)
    corr = generator_quality.cut_correspondences(cond, generator_quality.static_ids(traj))
    i, ia, (va, ua), (vb, ub) = corr[0]
    f = pipe.model.downsample
    pasted = noise_ablation.pasted_noise(cond, corr, f, pipe.window)
    after, before = pasted.shots[i].layers["noise"], cond.shots[i - 1].layers["noise"]
    changed = np.any(after[0] != cond.shots[i].layers["noise"][0], axis=0)
    targets = np.zeros_like(changed)
    targets[vb // f, ub // f] = True
    assert changed.any() and not np.any(changed & ~targets)          # pasted only at co-visible pixels
    vals = after[0][0][changed]
    assert np.isin(vals, before[ia - pipe.window + 1][0]).all() and len(np.unique(vals)) == vals.size
    s = noise_ablation.summarise({"x": a})
    assert s["octaves_std"]["cuts"] == n and 0 <= s["octaves_std"]["cuts_lower_than_iid_std"] <= n
    b = noise_ablation.band_sensitivity(pipe, traj, bands=((1, 4),))
    assert set(b) == {"full", "1-4"} and b["full"] > 0 and b["1-4"] > 0


def test_band_swap_takes_one_band_and_keeps_white_noise_white():
    from benchmarks.noise_ablation import band_swap
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 200, 4, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(band_swap(a, b, 0, 1000), b, atol=1e-5)       # every frequency: b
    np.testing.assert_allclose(band_swap(a, b, 100, 1000), a, atol=1e-5)     # none (|f| <= 22.7): a
    x = band_swap(a, b, 1, 4)
    assert abs(x.var() - 1) < 0.01 and abs(np.corrcoef(x[..., 1:].ravel(), x[..., :-1].ravel())[0, 1]) < 0.01
    low = lambda n: np.fft.fft2(n)[..., 0, 2]                                # a frequency inside the band
    np.testing.assert_allclose(low(x), low(b), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.fft.fft2(x)[..., 0, 8], np.fft.fft2(a)[..., 0, 8], rtol=1e-3, atol=1e-3)
