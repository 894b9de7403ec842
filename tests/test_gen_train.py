"""Training loop: resume after an interruption reproduces the uninterrupted run,
artefacts (safetensors only, loss curve, recipe), data windows, styles."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generator.data import synthetic_windows, windows_from_conditioning  # noqa: E402
from generator.styles import STYLES, apply_style  # noqa: E402
from generator.train import Trainer, TrainOptions, parse_args  # noqa: E402
from test_gen_pipeline import synthetic_conditioning  # noqa: E402


def opts(out):
    return TrainOptions(out=str(out), synthetic=6, resolution=(32, 32), window=4, size="tiny", seed=3,
                        ae_steps=2, steps=3, batch=2, ae_batch=2, ckpt_every=100, progress=False)


def weights(model_dir):
    from safetensors.torch import load_file
    return {f"{p.parent.name}/{k}": v for p in sorted(model_dir.rglob("*.safetensors"))
            for k, v in load_file(str(p)).items()}


@pytest.mark.parametrize("stop,stage", [(4, "diffusion"), (2, "autoencoder")])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, stop, stage):
    # stop = 2 is the last autoencoder step: the resumed run must still fit the latent
    # scale before the diffusion stage.
    full = Trainer(opts(tmp_path / "a"))
    res = full.run()
    assert res["steps"] == 5
    t = Trainer(opts(tmp_path / "b"))
    t.stop_at_step = stop
    with pytest.raises(KeyboardInterrupt):
        t.run()
    state = json.loads((tmp_path / "b" / "state" / "train_state.json").read_text())
    assert state["step"] == stop and state["stage"] == stage
    res2 = Trainer(opts(tmp_path / "b")).run()
    assert res2["resumed"] and res2["steps"] == 5
    wa, wb = weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    out = tmp_path / "a"
    assert (out / "loss.png").stat().st_size > 0
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    recipe = json.loads((out / "model" / "physcut_model.json").read_text())["recipe"]
    assert recipe["seed"] == 3 and recipe["data"]["kind"] == "synthetic" and recipe["steps_done"] == 5


def test_decoder_stage_changes_only_the_decoder(tmp_path):
    from dataclasses import replace
    Trainer(opts(tmp_path / "a")).run()
    Trainer(replace(opts(tmp_path / "b"), decoder_steps=2)).run()
    wa, wb = weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model")
    changed = {k for k in wa if not torch.equal(wa[k], wb[k])}
    assert changed and all(k.startswith(("autoencoder/decoder.", "autoencoder/post_quant_conv.", "refiner/"))
                           for k in changed)
    assert any(k.startswith("refiner/") for k in changed)          # the refiner trains with the decoder
    recipe = json.loads((tmp_path / "b" / "model" / "physcut_model.json").read_text())["recipe"]
    assert recipe["steps_done"] == 7 and recipe["decoder_steps"] == 2
    # a finished run extended by a decoder stage (rerun with --decoder-steps) is the same
    Trainer(opts(tmp_path / "c")).run()
    res = Trainer(replace(opts(tmp_path / "c"), decoder_steps=2)).run()
    assert res["resumed"] and res["steps"] == 7
    wc = weights(tmp_path / "c" / "model")
    assert all(torch.equal(wb[k], wc[k]) for k in wb)


def test_windows_from_conditioning_cut_shots_and_align_audio():
    cond = synthetic_conditioning(shot_lengths=(8, 12), size=(32, 24), fps=24, sr=48000)
    w = windows_from_conditioning(cond, window=4)
    n = 3 + 5                                             # stride 2 within each shot
    assert w["rgb"].shape == (n, 4, 24, 32, 3)
    assert w["map_depth"].shape == (n, 4, 1, 24, 32)
    assert w["mask"][:, 0].all() and not w["mask"][:, 1].any()   # depth present, pose absent
    L = w["env"].shape[1]
    assert w["audio"].shape == (n, 2, (L - 1) * 160)


def test_synthetic_windows_and_styles_are_deterministic():
    a, b = synthetic_windows(3, seed=5, window=4), synthetic_windows(3, seed=5, window=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    img = a["rgb"][0]
    for s in STYLES:
        out = apply_style(img, s)
        assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(apply_style(img, "night"), img)
    with pytest.raises(ValueError, match="unknown style 'neon'"):
        apply_style(img, "neon")


def test_train_cli_options():
    o = parse_args(["-o", "x", "--resolution", "48x32", "--steps", "7", "--seed", "2"])
    assert o.resolution == (48, 32) and o.steps == 7 and o.seed == 2
    with pytest.raises(SystemExit):
        parse_args(["--resolution", "big"])


def test_random_scenes_are_valid_and_deterministic():
    from generator.data import random_scene
    for seed in range(5):
        a, b = random_scene(seed), random_scene(seed)
        assert a == b and len(a.shots) >= 2 and a.props
    assert random_scene(0) != random_scene(1)


def test_init_fine_tunes_from_a_model_and_adds_new_maps(tmp_path):
    """--init: every weight of the source model carries over; a control map the source
    was not trained with gets a fresh encoder; the recipe records where it started."""
    from dataclasses import replace
    from generator.builtin import BuiltinModel
    from generator.control import ControlBranch
    Trainer(opts(tmp_path / "a")).run()
    src = BuiltinModel.load(tmp_path / "a" / "model")
    # pretend the source predates the albedo map: drop its encoder
    old = ControlBranch(**{**src.control.config, "maps": tuple(m for m in src.control.config.maps if m != "albedo")})
    sd = {k: v for k, v in src.control.state_dict().items() if not k.startswith("map_encoders.albedo")}
    old.load_state_dict(sd)
    src.control = old
    src.save(tmp_path / "old")
    t = Trainer(replace(opts(tmp_path / "b"), init=str(tmp_path / "old"), ae_steps=0, steps=0))
    t.data = t.load_data()
    m = t.build_model()
    for name in ("autoencoder", "denoiser"):
        for k, v in getattr(src, name).state_dict().items():
            assert torch.equal(v, getattr(m, name).state_dict()[k]), (name, k)
    assert m.autoencoder.config.scaling_factor == src.autoencoder.config.scaling_factor
    assert "albedo" in m.control.config.maps
    for k, v in sd.items():
        assert torch.equal(v, m.control.state_dict()[k]), k
    res = Trainer(replace(opts(tmp_path / "b"), init=str(tmp_path / "old"), ae_steps=0, steps=2)).run()
    assert res["steps"] == 2
    recipe = json.loads((tmp_path / "b" / "model" / "physcut_model.json").read_text())["recipe"]
    assert recipe["init"]["dir"] == str(tmp_path / "old") and recipe["init"]["recipe"]["seed"] == 3
    with pytest.raises(ValueError, match="does not fit"):
        Trainer(replace(opts(tmp_path / "c"), init=str(tmp_path / "old"), size="default")).build_model()


def test_train_command_takes_options_first(tmp_path, capsys):
    import physcut_cli
    rc = physcut_cli.main(["train", "-o", str(tmp_path / "t"), "--synthetic", "4", "--size", "tiny",
                           "--resolution", "32x32", "--window", "4", "--ae-steps", "1", "--steps", "1",
                           "--batch", "2", "-q"])
    assert rc == 0 and (tmp_path / "t" / "model" / "physcut_model.json").exists()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2


def test_windows_carry_anchored_noise_and_training_can_use_it():
    from generator.train import flow_loss, make_batch
    from test_gen_models import tiny_model
    cond = synthetic_conditioning(shot_lengths=(8,), size=(32, 32), fps=24, sr=48000)
    rng = np.random.default_rng(0)
    cond.shots[0].layers["noise"] = rng.standard_normal((8, 4, 8, 8)).astype(np.float32)
    w = windows_from_conditioning(cond, window=4)
    assert w["noise"].shape == (3, 4, 4, 8, 8) and w["noise"].dtype == np.float16
    np.testing.assert_array_equal(w["noise"][1], cond.shots[0].layers["noise"][2:6].astype(np.float16))
    m = tiny_model()
    data = synthetic_windows(2, seed=0, window=4, size=(32, 32))
    batch = make_batch(data, np.arange(2), np.random.default_rng(0))
    batch["noise"] = rng.standard_normal((2, 4, 4, 8, 8)).astype(np.float16)

    def loss(anchored, noise_scale=1.0):
        b = {**batch, "noise": batch["noise"] * noise_scale}
        with torch.no_grad():
            return flow_loss(m, b, torch.Generator().manual_seed(0), rng=np.random.default_rng(1),
                             anchored=anchored)[0].item()
    assert loss(1.0) == loss(1.0)                                  # deterministic
    assert loss(1.0) != loss(0.0) and loss(1.0) != loss(1.0, noise_scale=0.0)   # the batch noise is used
    assert loss(0.0) == loss(0.0, noise_scale=0.0)                 # ... and only when asked


def test_dataset_of_another_recipe_is_not_reused(tmp_path):
    from generator.data import build_dataset
    d = tmp_path / "data"
    d.mkdir()
    (d / "recipe.json").write_text(json.dumps({"num_scenes": 2, "seed": 0, "resolution": [32, 32], "window": 4,
                                               "latent_factor": 2, "layers": ["rgb"], "generator": "x"}))
    with pytest.raises(ValueError, match="another recipe.*seed: 0 there, 5 asked"):
        build_dataset(d, 0, seed=5, resolution=(32, 32), window=4, latent_factor=2, progress=False)
    assert parse_args(["--seed", "2", "--data-seed", "0"]).data_seed == 0
    # a dataset from before the noise field holds point-sampled anchored noise
    from generator.data import LAYERS
    (d / "recipe.json").write_text(json.dumps({"num_scenes": 0, "seed": 0, "resolution": [32, 32], "window": 4,
                                               "latent_factor": 2, "layers": list(LAYERS),
                                               "generator": "generator.data.random_scene"}))
    with pytest.raises(ValueError, match="noise: .*'point'.* there, .*'integral'.* asked"):
        build_dataset(d, 0, seed=0, resolution=(32, 32), window=4, latent_factor=2, progress=False,
                      noise_kind="integral")
    build_dataset(d, 0, seed=0, resolution=(32, 32), window=4, latent_factor=2, progress=False)
    assert json.loads((d / "recipe.json").read_text())["noise"] == {"kind": "point"}
    assert parse_args(["--noise-kind", "integral"]).noise_kind == "integral" and parse_args([]).noise_kind == "point"
