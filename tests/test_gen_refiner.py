"""The control-aware frame refiner: a fresh one is the identity, it follows the maps
once trained, scale 0 equals a missing map, it saves and loads with the model, and
one training step lowers the decoder-stage loss."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generator.builtin import BuiltinModel  # noqa: E402
from generator.refiner import REFINER_MAPS, FrameRefiner, degrade_latents  # noqa: E402
from test_gen_models import RES, one_step, randomise, tiny_model  # noqa: E402


def maps(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"depth": torch.randn(n, 1, RES, RES, generator=g), "segmentation": torch.randn(n, 3, RES, RES, generator=g),
            "albedo": torch.randn(n, 3, RES, RES, generator=g), "normals": torch.randn(n, 3, RES, RES, generator=g)}


def test_fresh_refiner_is_the_identity_and_trained_one_follows_maps():
    r = FrameRefiner(width=8, num_blocks=1)
    x = torch.rand(2, 3, RES, RES) * 2 - 1
    with torch.no_grad():
        assert torch.equal(r(x, maps()), x)
        randomise(r, seed=4, std=0.1)
        a, b = r(x, maps()), r(x, maps(seed=1))
        off = r(x, maps(), {m: 0.0 for m in REFINER_MAPS})
        absent = r(x, {})
        per_sample = r(x, maps(), {m: torch.tensor([1.0, 0.0]) for m in REFINER_MAPS})
    assert a.shape == x.shape and not torch.allclose(a, b)
    assert torch.allclose(off, absent, atol=1e-6)                  # scale 0 == the maps left out
    assert torch.allclose(per_sample[0], a[0], atol=1e-6) and torch.allclose(per_sample[1], absent[1], atol=1e-6)
    with pytest.raises(ValueError, match="unknown refiner map"):
        FrameRefiner(maps=("depth", "heat"))


def test_refiner_saves_and_loads_with_the_model(tmp_path):
    from generator.train import SIZES
    m = BuiltinModel.create(tiny_model().config, autoencoder=dict(tiny_model().autoencoder.config),
                            denoiser=SIZES["tiny"]["denoiser"], control_layers=1, codec=SIZES["tiny"]["codec"],
                            refiner=SIZES["tiny"]["refiner"])
    randomise(m.refiner, seed=2)
    m.save(tmp_path / "m")
    back = BuiltinModel.load(tmp_path / "m")
    assert back.components[-1] == "refiner"
    for k, v in m.refiner.state_dict().items():
        assert torch.equal(v, back.refiner.state_dict()[k])
    # a model directory without a refiner (older checkpoints) loads with none
    m.refiner = None
    m.save(tmp_path / "n")
    assert BuiltinModel.load(tmp_path / "n").refiner is None


def test_degradation_is_seeded_and_keeps_about_half():
    z = torch.randn(64, 4, 8, 8)
    a = degrade_latents(z, torch.Generator().manual_seed(0))
    b = degrade_latents(z, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    same = [(torch.equal(a[i], z[i])) for i in range(64)]
    assert 16 < sum(same) < 48


def test_one_refiner_training_step_lowers_the_decoder_loss():
    from generator.data import synthetic_windows
    from generator.features import MAP_NAMES
    from generator.train import decoder_loss
    m = tiny_model()
    r = FrameRefiner(width=8, num_blocks=1)
    d = synthetic_windows(2, seed=1, window=4, size=(RES, RES))
    frames = d["rgb"].reshape(-1, RES, RES, 3)
    mp = {k: torch.from_numpy(d[f"map_{k}"].reshape(-1, *d[f"map_{k}"].shape[2:]).astype(np.float32))
          for k in REFINER_MAPS if k in MAP_NAMES}
    before, after = one_step(lambda: decoder_loss(m.autoencoder, frames, r, mp, None,
                                                  torch.Generator().manual_seed(0)), list(r.parameters()))
    assert after < before - 1e-4
