"""The surface memory (generator.carry): reprojection of remembered latents between
views of a ground plane, RePaint's known region in the sampler, and the pipeline
carrying static surfaces from one shot into the next (anchored noise only)."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from generator.carry import SurfaceMemory, latent_geometry
from sim.cameras import look_at

F = 2            # latent factor
H = W = 32       # image size


def plane_shot(eye, target, box=None):
    """One frame of the ground plane z = 0 (body 1, static) seen from ``eye``; ``box``
    (u0, u1, v0, v1) paints body 2 there, 1 m in front of the ground."""
    K = np.array([[24.0, 0, (W - 1) / 2], [0, 24.0, (H - 1) / 2], [0, 0, 1]])
    w2c = look_at(eye, target)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])      # camera, z = 1
    world_dir = w2c[:3, :3].T @ rays
    t = -eye[2] / world_dir[2]
    depth = np.where(t > 0, t, 0.0).reshape(H, W)                                     # = camera z
    seg = np.where(depth > 0, 1, 0).astype(np.int32)
    if box is not None:
        u0, u1, v0, v1 = box
        seg[v0:v1, u0:u1] = 2
        depth[v0:v1, u0:u1] = np.maximum(depth[v0:v1, u0:u1] - 1.0, 0.1)
    return SimpleNamespace(K=K[None], w2c=w2c[None], num_frames=1,
                           layers={"depth": depth[None].astype(np.float32), "segmentation": seg[None]})


def world_latents(shot):
    """A latent field that is a function of the world point each latent pixel sees."""
    K, w2c, d, ids, usable = latent_geometry(shot, 0, F, np.array([1, 2]))
    h, w = d.shape
    v, u = np.mgrid[0:h, 0:w]
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d, np.ones_like(d)])
    X = np.einsum("ij,jhw->ihw", np.linalg.inv(w2c), cam)
    return np.stack([X[0], X[1], X[2], d]).astype(np.float32)[None]


def test_latent_geometry_samples_the_latent_pixels_and_keeps_body_interiors():
    s = plane_shot([0.0, -6.0, 3.0], [0.0, 2.0, 0.0], box=(10, 20, 20, 28))
    K, w2c, d, ids, usable = latent_geometry(s, 0, F, np.array([1]))
    assert d.shape == ids.shape == usable.shape == (H // F, W // F)
    assert np.array_equal(d, s.layers["depth"][0][1::2, 1::2])
    # latent pixel U sees image pixel 2U + 1: the latent K maps the same ray there
    p = np.linalg.inv(K) @ [3.0, 5.0, 1.0]
    q = np.linalg.inv(s.K[0]) @ [7.0, 11.0, 1.0]
    np.testing.assert_allclose(p, q)
    assert not usable[ids == 2].any()                       # body 2 is not static here
    box = ids == 2
    assert box.sum() == 5 * 4                               # latent rows 10-13, columns 5-9
    ring = np.zeros_like(box)
    ring[1:] |= box[:-1]
    ring[:-1] |= box[1:]
    ring[:, 1:] |= box[:, :-1]
    ring[:, :-1] |= box[:, 1:]
    ring &= ~box
    assert not usable[ring].any() and usable[9:15, 4:11][~(ring | box)[9:15, 4:11]].all()   # edges only
    assert usable[-1].all() and not usable[ids == 0].any()  # open ground; never the sky


def test_memory_finds_the_same_ground_point_from_another_view_and_respects_occlusion():
    a = plane_shot([0.0, -6.0, 3.0], [0.0, 2.0, 0.0])
    b = plane_shot([1.0, -5.0, 2.5], [0.5, 2.0, 0.0], box=(12, 20, 16, 24))
    mem = SurfaceMemory([1, 2], F)
    lat_a = world_latents(a)
    mem.add(a, lat_a)
    assert len(mem) == 1
    known, mask = mem.lookup(b, slice(0, 1), (1, 4, H // F, W // F))
    hit = mask[0, 0] > 0
    assert hit.mean() > 0.4
    # the world point remembered for each hit projects back onto that pixel of shot b
    # (to within the rounding to shot a's latent grid, magnified by the change of view)
    K, w2c, _, _, _ = latent_geometry(b, 0, F, np.array([1]))
    X = np.concatenate([known[0, :3][:, hit], np.ones((1, hit.sum()))])
    c = K @ (w2c @ X)[:3]
    v, u = np.nonzero(hit)
    off = np.hypot(c[0] / c[2] - u, c[1] / c[2] - v)
    assert np.median(off) < 0.5 and off.max() < 1.5
    assert not known[0][:, ~hit].any()
    # nothing remembered for the box (body 2 is not on the ground of shot a: depth disagrees)
    _, _, _, ids, _ = latent_geometry(b, 0, F, np.array([1, 2]))
    assert not hit[ids == 2].any()
    # the sky of shot b is never filled
    assert not hit[ids == 0].any()


def test_memory_prefers_the_latest_frame_and_keeps_strided_frames():
    a = plane_shot([0.0, -6.0, 3.0], [0.0, 2.0, 0.0])
    shot = SimpleNamespace(K=np.repeat(a.K, 9, 0), w2c=np.repeat(a.w2c, 9, 0), num_frames=9,
                           layers={k: np.repeat(v, 9, 0) for k, v in a.layers.items()})
    lat = np.arange(9, dtype=np.float32)[:, None, None, None] * np.ones((9, 4, H // F, W // F), np.float32)
    mem = SurfaceMemory([1], F, stride=4)
    mem.add(shot, lat)
    assert len(mem) == 3                                     # frames 0, 4, 8
    known, mask = mem.lookup(a, slice(0, 1), (1, 4, H // F, W // F))
    assert mask.any() and np.all(known[0][:, mask[0, 0] > 0] == 8.0)
    short = SurfaceMemory([1], F, stride=4, max_frames=2)
    short.add(shot, lat)
    assert len(short) == 2 and short.frames[0][-1][0, 0, 0] == 4.0          # the oldest frame went first


def test_sampler_holds_the_known_region():
    torch = pytest.importorskip("torch")
    from tests.test_gen_models import randomise, tiny_model
    m = tiny_model()
    randomise(m.denoiser)                                   # fresh output layers are zero
    h, w = m.latent_size
    C = m.autoencoder.config.latent_channels
    T = m.config.window
    g = torch.Generator().manual_seed(0)
    z = torch.randn((1, T, C, h, w), generator=g)
    audio = torch.randn((1, 6, m.codec.latent_channels), generator=g)
    ft = (torch.arange(T) / 24.0)[None]
    at = (torch.arange(6) / m.codec.frame_rate)[None]
    x0 = torch.randn((1, T, C, h, w), generator=g)

    def run(known):
        with torch.no_grad():
            return m.sample("video", z, audio, 1, ft, at, None, None, 0, 3, known=known)
    free = run(None)
    assert torch.equal(run((x0, torch.zeros(1, T, 1, h, w), 3)), free)      # empty mask: unchanged
    mask = torch.zeros(1, T, 1, h, w)
    mask[..., : h // 2, :] = 1
    held = run((x0, mask, 3))
    top, bottom = (slice(None), slice(None), slice(None), slice(0, h // 2)), \
        (slice(None), slice(None), slice(None), slice(h // 2, None))
    assert (held[top] - x0[top]).abs().mean() < 0.5 * (free[top] - x0[top]).abs().mean()
    assert not torch.equal(held[bottom], free[bottom])                       # the rest sees it (attention)
    assert torch.equal(run((x0, mask, 0)), free)                             # held for 0 steps: free


def test_pipeline_carries_static_surfaces_only_with_anchored_noise(rollout_cache):
    """On a rendered library scene with cuts: the first shot is untouched by the memory,
    a later shot changes; i.i.d. noise and carry=False are the pipeline without it; a
    conditioning without body kinds warns and generates without it."""
    pytest.importorskip("torch")
    import bridge
    from generator.builtin import BuiltinPipeline
    from tests.test_gen_models import randomise, tiny_model
    m = tiny_model()
    randomise(m.denoiser)
    randomise(m.control, seed=3)
    pipe = BuiltinPipeline(model_obj=m, device="cpu", num_inference_steps=2)
    traj = rollout_cache("rooftop_chase")
    cond = bridge.render(traj, **pipe.render_options())
    assert cond.meta["body_kind"] == list(traj.body_kind)
    m.config.carry_fraction = 1.0
    on = pipe(cond, seed=0, progress=False)
    again = pipe(cond, seed=0, progress=False)
    assert np.array_equal(on.frames, again.frames)                          # deterministic
    assert on.meta["surface_memory"] is True
    pipe.carry = False
    off = pipe(cond, seed=0, progress=False)
    pipe.carry = True
    assert np.array_equal(on.shot_frames[0][1], off.shot_frames[0][1])
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(on.shot_frames[1:], off.shot_frames[1:]))
    m.config.carry_fraction = 0.0
    assert np.array_equal(pipe(cond, seed=0, progress=False).frames, off.frames)
    m.config.carry_fraction = 1.0
    iid_on = pipe(cond, seed=0, noise="iid", progress=False)
    pipe.carry = False
    iid_off = pipe(cond, seed=0, noise="iid", progress=False)
    pipe.carry = True
    assert np.array_equal(iid_on.frames, iid_off.frames)
    assert iid_on.meta["surface_memory"] is False
    old = cond.replace(meta={k: v for k, v in cond.meta.items() if k != "body_kind"})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        clip = pipe(old, seed=0, progress=False)
    assert any("body kinds" in str(x.message) for x in w)
    assert np.array_equal(clip.frames, off.frames)


def test_carry_fraction_is_checked_when_loading(tmp_path):
    import json
    from generator.builtin import BuiltinConfig, CheckpointError
    with pytest.raises(CheckpointError, match="carry_fraction"):
        BuiltinConfig.from_dict({"carry_fraction": 1.5}, str(tmp_path / "physcut_model.json"))
    assert BuiltinConfig.from_dict(json.loads('{"carry_fraction": 0.5}'), "x").carry_fraction == 0.5
