"""``physcut train``: train the built-in model on the simulator's own data.

Up to three stages on one step counter: (1) the per-frame autoencoder on the styled
preview frames (L1 + MSE from the posterior mean + a small latent L2), then its latent
scale is fitted; (2) the joint denoiser and the control branch together with flow
matching, the autoencoder frozen; (3, optional, ``--decoder-steps``) the decoder
alone, the encoder -- so the latent space the denoiser learnt -- frozen.
Stage 2 draws per sample a mode (joint / video given clean audio / audio given clean
video, with independent noise levels), a style (half preview, 10% null), and control
dropout (all maps off 10%, each map off 15%), so one model serves sampling and both
guidances.

Checkpoints (every ``--ckpt-every`` steps, on Ctrl-C / SIGTERM and at the end) go to
``OUT/state`` atomically: the raw weights (safetensors model directory), the EMA
weights, the optimiser state and the torch RNG state as safetensors, and
``train_state.json`` (step, stage, numpy RNG state, loss history, options). A rerun
of the same command resumes from the last checkpoint. ``OUT/model`` is the exported
inference model (EMA weights) with the recipe in ``physcut_model.json``;
``OUT/loss.png`` the loss curve.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .features import MAP_NAMES
from .styles import STYLES, apply_style

# Model sizes: "default" is what ships; "tiny" is for tests and smoke runs.
SIZES = {
    # f = 2 autoencoder (32x32x4 latents at 64x64) with 4x4 latent patches: the same 8x8
    # tokens per frame as f = 4 with 2x2 patches, but its reconstructions keep the
    # segmentation layout (class agreement 0.82-0.89 after 200 CPU steps vs 0.70 for f = 4).
    "default": dict(autoencoder=dict(block_out_channels=(32, 64), norm_num_groups=16),
                    denoiser=dict(hidden_dim=96, num_layers=4, num_heads=4, mlp_ratio=3.0, patch_size=4),
                    control_layers=2,
                    codec=dict(n_mels=32),
                    refiner=dict(width=16, num_blocks=3)),
    "tiny": dict(autoencoder=dict(block_out_channels=(8, 16, 16), norm_num_groups=8),
                 denoiser=dict(hidden_dim=32, num_layers=2, num_heads=2, mlp_ratio=2.0), control_layers=1,
                 codec=dict(n_mels=16, griffin_lim_iters=4), refiner=dict(width=8, num_blocks=1)),
}


@dataclass
class TrainOptions:
    out: str
    data: str | None = None            # dataset directory (built there when missing)
    init: str | None = None            # start from this model directory's weights (fine-tuning)
    synthetic: int = 0                 # > 0: train on this many procedural windows instead
    num_scenes: int = 48
    resolution: tuple = (64, 64)
    window: int = 8
    size: str = "default"
    seed: int = 0
    data_seed: int | None = None       # seed of the random scenes (default: ``seed``)
    ae_steps: int = 300
    steps: int = 600
    decoder_steps: int = 0             # stage 3: decoder fine-tuning on the frozen latent space
    batch: int = 8
    ae_batch: int = 16
    lr: float = 3e-4
    ae_lr: float = 1e-3
    ema_decay: float = 0.995
    ckpt_every: int = 100
    style_dropout: float = 0.1
    control_dropout: float = 0.1
    map_dropout: float = 0.15
    anchored_noise: float = 0.5         # share of samples noised with the data's anchored noise
    noise_kind: str = "point"           # construction of the data's anchored noise (bridge.noise.KINDS)
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    command: list = field(default_factory=list)


# --------------------------------------------------------------------------- batches
def to_unit(rgb_uint8):
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float tensor in [-1, 1]."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(rgb_uint8)).float() / 127.5 - 1.0
    return x.movedim(-1, -3)


# Style sampling weights: the default style (preview, the benchmarks' and the demo's)
# gets half of the samples so a short CPU run learns it first.
STYLE_WEIGHTS = {"preview": 0.5}


def style_probs(styles) -> np.ndarray:
    """Sampling probabilities of ``styles`` (STYLE_WEIGHTS; the rest share what is left)."""
    fixed = {s: STYLE_WEIGHTS[s] for s in styles if s in STYLE_WEIGHTS}
    rest = [s for s in styles if s not in fixed]
    left = max(0.0, 1.0 - sum(fixed.values()))
    p = np.array([fixed.get(s, left / len(rest) if rest else 0.0) for s in styles], np.float64)
    return p / p.sum()


def make_batch(data: dict, idx: np.ndarray, rng: np.random.Generator, styles=tuple(STYLES)) -> dict:
    """Numpy batch: styled targets, maps, audio, envelope, style ids (1-based), mask."""
    st = rng.choice(len(styles), size=len(idx), p=style_probs(styles))
    rgb = np.stack([apply_style(data["rgb"][i], styles[s]) for i, s in zip(idx, st)])
    out = {"rgb": rgb, "style": st + 1, "audio": data["audio"][idx], "env": data["env"][idx],
           "mask": data["mask"][idx], **{f"map_{m}": data[f"map_{m}"][idx] for m in MAP_NAMES}}
    if "noise" in data:
        out["noise"] = data["noise"][idx]
    return out


def flow_loss(model, batch: dict, gen, fps: float = 24.0, drop: dict | None = None, rng=None,
              anchored: float = 0.0):
    """Flow-matching loss of base + control on one batch (see the module docstring).

    ``gen`` (torch.Generator) draws the noise and noise levels, ``rng`` (numpy) the
    modes and dropouts; ``drop`` = {"style", "control", "map"} probabilities (None: no
    dropout, joint mode only -- a fixed objective for tests). ``anchored``: share of
    samples whose video noise is the batch's 3D-anchored noise (``batch["noise"]``)
    instead of i.i.d. noise: anchored noise is the same for a surface in every frame,
    which i.i.d. training never shows the model (cf. noise-warping models, trained on
    the warped noise they sample from)."""
    import torch
    from diffusers.training_utils import compute_density_for_timestep_sampling
    from .control import predict
    dev = model.denoiser.device
    B, T = batch["rgb"].shape[:2]
    with torch.no_grad():
        x0v = model.autoencoder.encode_video(to_unit(batch["rgb"]).to(dev))         # (B, T, C, h, w)
        x0a = model.codec.encode(torch.from_numpy(batch["audio"]).to(dev))           # (B, L, A)
    L = x0a.shape[1]
    env = torch.from_numpy(batch["env"][:, :L]).to(dev)
    sv = compute_density_for_timestep_sampling("logit_normal", B, 0.0, 1.0, generator=gen).to(dev)
    sa = compute_density_for_timestep_sampling("logit_normal", B, 0.0, 1.0, generator=gen).to(dev)
    style = torch.from_numpy(np.asarray(batch["style"])).long().to(dev)
    mask = torch.from_numpy(np.asarray(batch["mask"], np.float32)).to(dev)             # (B, maps)
    ctrl_on = torch.ones(B, device=dev)
    if drop is not None:
        mode = rng.choice(3, size=B, p=[0.4, 0.3, 0.3])                          # joint, video|audio, audio|video
        sa = torch.where(torch.from_numpy(mode == 1).to(dev), torch.zeros_like(sa), sa)
        sv = torch.where(torch.from_numpy(mode == 2).to(dev), torch.zeros_like(sv), sv)
        style = torch.where(torch.from_numpy(rng.random(B) < drop["style"]).to(dev), 0, style)
        ctrl_on = torch.from_numpy((rng.random(B) >= drop["control"]).astype(np.float32)).to(dev)
        mask = mask * torch.from_numpy((rng.random(mask.shape) >= drop["map"]).astype(np.float32)).to(dev)
    ev = torch.randn(x0v.shape, generator=gen).to(dev)
    ea = torch.randn(x0a.shape, generator=gen).to(dev)
    if anchored > 0 and batch.get("noise") is not None and rng is not None:
        from .features import resample_noise
        use = np.flatnonzero(rng.random(B) < anchored)
        if use.size:
            h, w = x0v.shape[-2:]
            nz = np.stack([resample_noise(np.asarray(batch["noise"][i], np.float32), h, w) for i in use])
            ev[torch.from_numpy(use)] = torch.from_numpy(nz).to(dev)
    xv = (1 - sv.view(B, 1, 1, 1, 1)) * x0v + sv.view(B, 1, 1, 1, 1) * ev
    xa = (1 - sa.view(B, 1, 1)) * x0a + sa.view(B, 1, 1) * ea
    maps = {m: torch.from_numpy(batch[f"map_{m}"].astype(np.float32)).to(dev) for m in MAP_NAMES}
    scales = {m: ctrl_on * mask[:, k] for k, m in enumerate(MAP_NAMES)}
    frame_times = (torch.arange(T, device=dev, dtype=torch.float32) / fps).expand(B, T)
    audio_times = (torch.arange(L, device=dev, dtype=torch.float32) / model.codec.frame_rate).expand(B, L)
    vv, va = predict(model.denoiser, model.control, xv, xa, sv * 1000, sa * 1000, style, frame_times,
                     audio_times, maps=maps, audio_control=env, scales=scales, audio_scale=ctrl_on)
    wv, wa = (sv > 0).float(), (sa > 0).float()        # a clean (conditioning) stream has no loss
    lv = ((vv.float() - (ev - x0v)) ** 2).mean(dim=(1, 2, 3, 4))
    la = ((va.float() - (ea - x0a)) ** 2).mean(dim=(1, 2))
    loss = (lv * wv).sum() / wv.sum().clamp_min(1) + (la * wa).sum() / wa.sum().clamp_min(1)
    return loss, {"video": float((lv * wv).detach().sum() / wv.sum().clamp_min(1)),
                  "audio": float((la * wa).detach().sum() / wa.sum().clamp_min(1))}


def decoder_loss(ae, rgb_uint8, refiner=None, maps=None, scales=None, gen=None):
    """Reconstruction (L1 + MSE) with the encoder frozen (decoder fine-tuning). With a
    ``refiner``, the latents are degraded first (`generator.refiner.degrade_latents`,
    drawn from ``gen``) and the refiner, given ``maps`` {name: (N, c, H, W)} at
    ``scales`` {name: (N,)}, corrects the decoded frames."""
    import torch
    x = to_unit(rgb_uint8).to(ae.device)
    with torch.no_grad():
        z = ae.encode(x).latent_dist.mean
        if refiner is not None:
            from .refiner import degrade_latents
            sf = ae.config.scaling_factor
            z = degrade_latents(z * sf, gen) / sf
    rec = ae.decode(z).sample
    if refiner is not None:
        rec = refiner(rec, maps or {}, scales)
    return (rec - x).abs().mean() + ((rec - x) ** 2).mean()


def autoencoder_loss(ae, rgb_uint8, gen):
    """Reconstruction (L1 + MSE) of (N, H, W, 3) uint8 frames from the posterior mean,
    plus a small L2 pull of the latents towards 0.

    The posterior mean rather than a sample: with a KL weight small enough for sharp
    reconstructions, sampling only adds unit noise the encoder must first learn to
    shrink, which slowed a CPU run to ~0.70 segmentation agreement of the
    reconstructions after 300 steps. The latent scale is normalised afterwards
    (``scaling_factor``), so the L2 term only keeps it bounded."""
    x = to_unit(rgb_uint8).to(ae.device)
    z = ae.encode(x).latent_dist.mean
    rec = ae.decode(z).sample
    return (rec - x).abs().mean() + ((rec - x) ** 2).mean() + 1e-4 * (z ** 2).mean()


# --------------------------------------------------------------------------- state io
def _save_optimizer(opt, path: Path) -> dict:
    from safetensors.torch import save_file
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if hasattr(v, "shape"):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(path))
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt, path: Path, meta: dict):
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    state = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Trainer:
    def __init__(self, opts: TrainOptions):
        import torch
        self.o = opts
        self.out = Path(opts.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.total = opts.ae_steps + opts.steps + opts.decoder_steps
        self.history: list = []       # [step, stage, loss, video, audio]
        self.stop_at_step: int | None = None   # simulate an interruption (tests)

    # ---------------------------------------------------------------- data
    def load_data(self) -> dict:
        from . import data as D
        o = self.o
        if o.synthetic:
            self.recipe = {"kind": "synthetic", "num_windows": o.synthetic, "seed": o.seed,
                           "resolution": list(o.resolution), "window": o.window}
            return D.synthetic_windows(o.synthetic, o.seed, o.window, tuple(o.resolution))
        ddir = Path(o.data) if o.data else self.out / "data"
        f = 2 ** (len(SIZES[o.size]["autoencoder"]["block_out_channels"]) - 1)
        D.build_dataset(ddir, o.num_scenes, seed=o.seed if o.data_seed is None else o.data_seed,
                        resolution=tuple(o.resolution), window=o.window, latent_factor=f, progress=o.progress,
                        noise_kind=o.noise_kind)
        self.recipe = {"kind": "simulated", "dir": str(ddir),
                       **json.loads((ddir / "recipe.json").read_text())}
        data = D.load_dataset(ddir)
        lacking = [m for m in MAP_NAMES if f"map_{m}" not in data]
        if lacking or data["mask"].shape[1] != len(MAP_NAMES):
            raise ValueError(f"{ddir}: dataset built without map(s) {lacking or '?'} (an older recipe); "
                             "build a new one (another --data directory)")
        return data

    # ---------------------------------------------------------------- model
    def build_model(self):
        from .autoencoder import autoencoder_config
        from .builtin import BuiltinConfig, BuiltinModel
        o = self.o
        size = SIZES[o.size]
        cfg = BuiltinConfig(resolution=tuple(o.resolution), window=o.window, overlap=max(1, o.window // 4),
                            fps=24.0)
        ae = autoencoder_config(sample_size=o.resolution[1], **size["autoencoder"])
        model = BuiltinModel.create(cfg, autoencoder=ae, denoiser=size["denoiser"],
                                    control_layers=size["control_layers"], codec=size["codec"], seed=o.seed,
                                    refiner=size.get("refiner"))
        return self._init_from(model, o.init) if o.init else model

    def _init_from(self, model, directory):
        """Fine-tuning start: every weight of the model in ``directory`` (its autoencoder
        with the fitted latent scale, its codec normalisation); parts it lacks keep their
        fresh initialisation: a refiner (zero output layer: the identity until trained)
        and encoders of control maps it was not trained with (their features enter the
        trained branch at once, so the first fine-tuning steps adapt to them)."""
        from .builtin import BuiltinModel
        src = BuiltinModel.load(directory)
        self.init_recipe = {"dir": str(directory), "recipe": src.config.recipe}
        for name in ("autoencoder", "denoiser"):
            try:
                getattr(model, name).load_state_dict(getattr(src, name).state_dict())
            except RuntimeError as e:
                raise ValueError(f"--init {directory}: its {name} does not fit --size's: {e}"[:400]) from None
        model.autoencoder.register_to_config(scaling_factor=src.autoencoder.config.scaling_factor)
        model.codec = src.codec
        missing, unexpected = model.control.load_state_dict(src.control.state_dict(), strict=False)
        bad = [k for k in missing if not k.startswith("map_encoders.")] + list(unexpected)
        if bad:
            raise ValueError(f"--init {directory}: control branch does not fit, e.g. {bad[:3]}")
        if getattr(src, "refiner", None) is not None and getattr(model, "refiner", None) is not None:
            model.refiner.load_state_dict(src.refiner.state_dict())
        return model

    def _make_opt(self, stage):
        import torch
        m = self.model
        if stage == "autoencoder":
            return torch.optim.AdamW(m.autoencoder.parameters(), lr=self.o.ae_lr, weight_decay=0.0)
        if stage == "decoder":
            return torch.optim.AdamW(self._decoder_params(), lr=self.o.ae_lr, weight_decay=0.0)
        return torch.optim.AdamW(list(m.denoiser.parameters()) + list(m.control.parameters()),
                                 lr=self.o.lr, weight_decay=0.01)

    def _decoder_params(self):
        ae, ref = self.model.autoencoder, self.model.refiner
        return list(ae.decoder.parameters()) + list(ae.post_quant_conv.parameters()) + \
            (list(ref.parameters()) if ref is not None else [])

    def _diffusion_params(self):
        return list(self.model.denoiser.parameters()) + list(self.model.control.parameters())

    # ---------------------------------------------------------------- checkpoints
    def save_state(self):
        import torch
        from safetensors.torch import save_file
        tmp = self.out / "state.new"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        self.model.save(tmp / "model")
        opt_meta = _save_optimizer(self.opt, tmp / "optimizer.safetensors")
        save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(self.ema.shadow_params)},
                  str(tmp / "ema.safetensors"))
        save_file({"torch_rng": self.gen.get_state(), "torch_cpu_rng": torch.get_rng_state()},
                  str(tmp / "rng.safetensors"))
        state = {"step": self.step, "stage": self.stage, "np_rng": self.rng.bit_generator.state,
                 "ema_step": self.ema.optimization_step, "history": self.history, "optimizer": opt_meta,
                 "options": asdict(self.o), "recipe": self.recipe}
        (tmp / "train_state.json").write_text(json.dumps(state, default=_json_default))
        final, old = self.out / "state", self.out / "state.old"
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
        self.export()
        self.plot()

    def try_resume(self) -> bool:
        import torch
        from safetensors.torch import load_file
        from .builtin import BuiltinModel
        d = self.out / "state"
        if not (d / "train_state.json").exists():
            d = self.out / "state.old"            # interrupted between the two renames
            if not (d / "train_state.json").exists():
                return False
        st = json.loads((d / "train_state.json").read_text())
        self.model = BuiltinModel.load(d / "model").to(self.device)
        self.step, self.history = st["step"], st["history"]
        # The saved stage, not the one the step implies: a checkpoint taken on the last
        # autoencoder step still needs the latent-scale fit when the run goes on.
        self._setup_stage(fresh=False, stage=st["stage"])
        _load_optimizer(self.opt, d / "optimizer.safetensors", st["optimizer"])
        ema = load_file(str(d / "ema.safetensors"))
        self.ema.shadow_params = [ema[str(i)].to(self.device) for i in range(len(ema))]
        self.ema.optimization_step = st["ema_step"]
        rng = load_file(str(d / "rng.safetensors"))
        self.gen.set_state(rng["torch_rng"])
        torch.set_rng_state(rng["torch_cpu_rng"])
        self.rng.bit_generator.state = st["np_rng"]
        return True

    def export(self):
        """OUT/model: the inference model (EMA weights of denoiser + control)."""
        import copy
        m = self.model
        den, ctrl = copy.deepcopy(m.denoiser), copy.deepcopy(m.control)
        if self.stage in ("diffusion", "decoder"):
            params = list(den.parameters()) + list(ctrl.parameters())
            for p, s in zip(params, self.ema.shadow_params):
                p.data.copy_(s.to(p.device))
        from .builtin import BuiltinModel
        cfg = copy.deepcopy(m.config)
        cfg.recipe = {"command": "physcut train " + " ".join(self.o.command), "seed": self.o.seed,
                      "steps_done": self.step, "ae_steps": self.o.ae_steps, "steps": self.o.steps,
                      "decoder_steps": self.o.decoder_steps,
                      "data": self.recipe}
        if self.o.init:
            cfg.recipe["init"] = getattr(self, "init_recipe", {"dir": self.o.init})
        BuiltinModel(m.autoencoder, den, ctrl, m.codec, cfg, m.refiner).save(self.out / "model")

    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        if not self.history:
            return
        h = np.array([[r[0], r[2], r[3], r[4]] for r in self.history], float)
        stage = np.array([r[1] for r in self.history])
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, name in zip(axes, ("autoencoder", "diffusion")):
            sel = (stage == name) | ((stage == "decoder") & (name == "autoencoder"))
            if sel.any():
                ax.plot(h[sel, 0], h[sel, 1], lw=0.6, alpha=0.4, label="loss")
                k = max(1, sel.sum() // 30)
                ax.plot(h[sel, 0][k - 1:], np.convolve(h[sel, 1], np.ones(k) / k, "valid"), label=f"mean of {k}")
                if name == "diffusion":
                    ax.plot(h[sel, 0], h[sel, 2], lw=0.5, alpha=0.5, label="video")
                    ax.plot(h[sel, 0], h[sel, 3], lw=0.5, alpha=0.5, label="audio")
                ax.set_yscale("log")
                ax.legend(fontsize=7)
            ax.set_title(name)
            ax.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(self.out / "loss.png", dpi=100)
        plt.close(fig)

    # ---------------------------------------------------------------- loop
    def _setup_stage(self, fresh: bool, stage: str | None = None):
        import torch
        from diffusers.training_utils import EMAModel
        o = self.o
        self.stage = stage or ("autoencoder" if self.step < o.ae_steps else
                               "diffusion" if self.step < o.ae_steps + o.steps else "decoder")
        self.opt = self._make_opt(self.stage)
        if not (self.stage == "decoder" and hasattr(self, "ema")):
            # the decoder stage keeps the diffusion EMA it follows (loaded on resume)
            self.ema = EMAModel(self._diffusion_params(), decay=o.ema_decay)
        if not hasattr(self, "gen"):
            self.gen = torch.Generator().manual_seed(self.o.seed)
            self.rng = np.random.default_rng(self.o.seed)
        self.model.autoencoder.requires_grad_(self.stage == "autoencoder")
        if self.stage == "decoder":
            for p in self._decoder_params():
                p.requires_grad_(True)
        self.model.denoiser.requires_grad_(self.stage == "diffusion")
        self.model.control.requires_grad_(self.stage == "diffusion")
        if self.model.refiner is not None:
            self.model.refiner.requires_grad_(self.stage == "decoder")

    def _refiner_inputs(self, wi, fi):
        """Maps of frames (window wi, frame fi) for the refiner, with the control and
        map dropout of the diffusion stage (a dropped map has scale 0)."""
        import torch
        dev, names = self.device, self.model.refiner.config.maps
        on = (self.rng.random(len(wi)) >= self.o.control_dropout).astype(np.float32)
        keep = (self.rng.random((len(wi), len(names))) >= self.o.map_dropout).astype(np.float32)
        mask = self.data["mask"][wi][:, [MAP_NAMES.index(m) for m in names]].astype(np.float32)
        maps = {m: torch.from_numpy(self.data[f"map_{m}"][wi, fi].astype(np.float32)).to(dev) for m in names}
        scales = {m: torch.from_numpy(on * keep[:, k] * mask[:, k]).to(dev) for k, m in enumerate(names)}
        return maps, scales

    def _enter_diffusion(self):
        """After the autoencoder stage: fit the latent and mel normalisation on data."""
        import torch
        m = self.model
        idx = self.rng.choice(len(self.data["rgb"]), size=min(32, len(self.data["rgb"])), replace=False)
        with torch.no_grad():
            frames = self.data["rgb"][idx].reshape(-1, *self.data["rgb"].shape[2:])
            z = m.autoencoder.encode(to_unit(frames).to(self.device)).latent_dist.mean
            m.autoencoder.register_to_config(scaling_factor=float(1.0 / z.std().clamp_min(1e-3)))
            logmel = torch.log(m.codec._modules(torch.device("cpu"))[0](
                torch.from_numpy(self.data["audio"][idx])).clamp_min(m.codec.config.log_floor))
            m.codec.register_to_config(log_mean=float(logmel.mean()), log_std=float(logmel.std().clamp_min(1e-3)))

    def run(self):
        import torch
        from tqdm.auto import tqdm
        self.data = self.load_data()
        n = len(self.data["rgb"])
        if n == 0:
            raise RuntimeError("training data is empty")
        resumed = False
        self.step = 0
        self.stage = None
        if self.try_resume():
            resumed = True
        else:
            self.model = self.build_model().to(self.device)
            self._setup_stage(fresh=True)
        stop = {"flag": False}
        prev = signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__("flag", True))
        bar = tqdm(total=self.total, initial=self.step, desc="train", disable=not self.o.progress)
        drop = {"style": self.o.style_dropout, "control": self.o.control_dropout, "map": self.o.map_dropout}
        t0 = time.time()
        try:
            while self.step < self.total:
                if self.stage == "autoencoder" and self.step >= self.o.ae_steps:
                    self._enter_diffusion()
                    self._setup_stage(fresh=True)
                if self.stage == "diffusion" and self.step >= self.o.ae_steps + self.o.steps:
                    self._setup_stage(fresh=True)
                if self.stage == "decoder":
                    # Decoder fine-tuning: the encoder (so the latent space the denoiser
                    # learnt) is frozen; only the reconstruction from it gets sharper.
                    self.model.autoencoder.decoder.train()
                    wi = self.rng.integers(n, size=self.o.ae_batch)
                    fi = self.rng.integers(self.data["rgb"].shape[1], size=self.o.ae_batch)
                    st = self.rng.choice(len(STYLES), size=self.o.ae_batch, p=style_probs(tuple(STYLES)))
                    frames = np.stack([apply_style(self.data["rgb"][w, f], list(STYLES)[s])
                                       for w, f, s in zip(wi, fi, st)])
                    ref = self.model.refiner
                    if ref is None:
                        loss = decoder_loss(self.model.autoencoder, frames)
                    else:
                        ref.train()
                        maps, scales = self._refiner_inputs(wi, fi)
                        loss = decoder_loss(self.model.autoencoder, frames, ref, maps, scales, self.gen)
                    parts = {"video": float("nan"), "audio": float("nan")}
                elif self.stage == "autoencoder":
                    self.model.autoencoder.train()
                    wi = self.rng.integers(n, size=self.o.ae_batch)
                    fi = self.rng.integers(self.data["rgb"].shape[1], size=self.o.ae_batch)
                    st = self.rng.integers(len(STYLES), size=self.o.ae_batch)
                    frames = np.stack([apply_style(self.data["rgb"][w, f], list(STYLES)[s])
                                       for w, f, s in zip(wi, fi, st)])
                    loss = autoencoder_loss(self.model.autoencoder, frames, self.gen)
                    parts = {"video": float("nan"), "audio": float("nan")}
                else:
                    self.model.denoiser.train()
                    self.model.control.train()
                    self.model.autoencoder.eval()
                    batch = make_batch(self.data, self.rng.integers(n, size=self.o.batch), self.rng)
                    loss, parts = flow_loss(self.model, batch, self.gen, drop=drop, rng=self.rng,
                                            anchored=self.o.anchored_noise)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                params = [p for g in self.opt.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                self.opt.step()
                if self.stage == "diffusion":
                    self.ema.step(self._diffusion_params())
                self.step += 1
                self.history.append([self.step, self.stage, loss.item(), parts["video"], parts["audio"]])
                bar.update(1)
                bar.set_postfix(stage=self.stage[:4], loss=f"{self.history[-1][2]:.4f}")
                if self.step % self.o.ckpt_every == 0 or self.step == self.total:
                    self.save_state()
                if stop["flag"] or self.step == self.stop_at_step:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.save_state()
            bar.close()
            print(f"interrupted at step {self.step}; checkpoint saved in {self.out / 'state'} "
                  "(rerun the same command to resume)", file=sys.stderr)
            raise
        finally:
            signal.signal(signal.SIGTERM, prev)
        bar.close()
        return {"model": str(self.out / "model"), "steps": self.step, "resumed": resumed,
                "seconds": time.time() - t0, "final_loss": self.history[-1][2] if self.history else None}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# --------------------------------------------------------------------------- CLI
def parse_args(argv) -> TrainOptions:
    d = TrainOptions(out="")
    p = argparse.ArgumentParser(prog="physcut train", description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", default="out/train", help="output directory (state, model, loss.png)")
    p.add_argument("--data", help="dataset directory (built there when missing; default OUT/data)")
    p.add_argument("--init", help="model directory to start from (fine-tuning; new control maps start fresh)")
    p.add_argument("--synthetic", type=int, default=0, help="train on N procedural windows (no simulator)")
    p.add_argument("--num-scenes", type=int, default=d.num_scenes, help="random scenes to simulate")
    p.add_argument("--resolution", default="64x64", help="WxH the model generates")
    p.add_argument("--window", type=int, default=d.window, help="frames per window")
    p.add_argument("--size", choices=tuple(SIZES), default=d.size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data-seed", type=int, default=None, help="seed of the random scenes (default: --seed)")
    p.add_argument("--ae-steps", type=int, default=d.ae_steps)
    p.add_argument("--steps", type=int, default=d.steps, help="denoiser + control steps")
    p.add_argument("--decoder-steps", type=int, default=d.decoder_steps,
                   help="decoder fine-tuning steps after the diffusion stage (encoder frozen)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--anchored-noise", type=float, default=d.anchored_noise,
                   help="share of training samples noised with the data's anchored noise (0-1)")
    from bridge.noise import KINDS
    p.add_argument("--noise-kind", choices=KINDS, default=d.noise_kind,
                   help="construction of the anchored noise in the built dataset (see bridge.noise)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        w, h = (int(v) for v in a.resolution.lower().split("x"))
    except ValueError:
        p.error(f"--resolution: expected WxH, got {a.resolution!r}")
    return TrainOptions(out=a.out, data=a.data, init=a.init, synthetic=a.synthetic, num_scenes=a.num_scenes, resolution=(w, h),
                        window=a.window, size=a.size, seed=a.seed, data_seed=a.data_seed, ae_steps=a.ae_steps, steps=a.steps,
                        decoder_steps=a.decoder_steps,
                        batch=a.batch, lr=a.lr, ckpt_every=a.ckpt_every, anchored_noise=a.anchored_noise,
                        noise_kind=a.noise_kind, device=a.device, threads=a.threads,
                        progress=not a.quiet, command=list(argv))


def train_main(argv=None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        res = Trainer(opts).run()
    except KeyboardInterrupt:
        return 130
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
