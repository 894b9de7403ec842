"""The built-in generator: a small joint video+audio flow-matching model with a
ControlNet-style control branch, trained on the simulator's own data.

A model directory holds one sub-directory per component (each ``config.json`` +
``diffusion_pytorch_model.safetensors``, loadable with ``from_pretrained``) and a
``physcut_model.json`` with the pipeline settings and the training recipe:

    autoencoder/   FrameAutoencoder (diffusers AutoencoderKL, per frame)
    denoiser/      JointDenoiser (video + audio streams, cross-attention between them)
    control/       ControlBranch (trainable copy of the first base blocks)
    audio_codec/   MelCodec (config only: log-mel + Griffin-Lim)

Sampling: video per shot window (the shared ``ShotPipeline`` loop) with the audio
stream held at the bridge's clean contact audio (t = 0); then audio over the global
timeline in mel-frame windows with the video stream held at the generated frames
(t = 0) and the contact-event envelope as audio control; the blended mel is vocoded
once (Griffin-Lim), so there is no seam at window or shot boundaries. With anchored
noise, static surfaces generated in earlier shots are held in later shots' sampling
(`generator.carry`, ``carry_fraction`` of the steps; ``carry=False`` turns it off).
Weights load only from safetensors.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .base import CheckpointError, GeneratorError, ShotPipeline, register_backend
from .features import MAP_NAMES

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "checkpoints" / "builtin"
MODEL_INDEX = "physcut_model.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
COMPONENTS = ("autoencoder", "denoiser", "control")


@dataclass
class BuiltinConfig:
    """Pipeline settings stored in ``physcut_model.json``."""
    resolution: tuple = (64, 64)          # (width, height) the model generates
    window: int = 8                       # video frames per window
    overlap: int = 2                      # frames shared by neighbouring windows
    fps: float = 24.0                     # frame rate of the training clips
    num_inference_steps: int = 12
    shift: float = 1.0                    # FlowMatchEulerDiscreteScheduler shift
    style_guidance: float = 1.0           # 1.0 = no extra pass
    control_guidance: float = 1.0
    control_scales: dict = field(default_factory=lambda: {m: 1.0 for m in MAP_NAMES})
    audio_control_scale: float = 1.0
    carry_fraction: float = 0.0           # share of the sampling steps the surface memory's known
                                          # region is held for (generator.carry; 0: off)
    recipe: dict = field(default_factory=dict)   # how the weights were made (command, seed, data)

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "BuiltinConfig":
        names = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CheckpointError(f"{source}: unknown field(s) {unknown}; valid: {', '.join(sorted(names))}")
        cfg = cls(**d)
        cfg.resolution = tuple(int(v) for v in cfg.resolution)
        if not 0 <= cfg.overlap < cfg.window:
            raise CheckpointError(f"{source}: field 'overlap' must be in [0, window={cfg.window}), got {cfg.overlap}")
        if not 0.0 <= float(cfg.carry_fraction) <= 1.0:
            raise CheckpointError(f"{source}: field 'carry_fraction' must be in [0, 1], got {cfg.carry_fraction}")
        return cfg


# --------------------------------------------------------------------------- loading
def _check_weights_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: component directory not found")
    cfg = folder / "config.json"
    if not cfg.exists():
        raise CheckpointError(f"{cfg}: file not found")
    wfile = folder / WEIGHTS_NAME
    if not wfile.exists():
        pickles = sorted(p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(f"{pickles[0]}: pickle weights are refused (they can run code when "
                                  f"loaded); physcut loads only safetensors ({WEIGHTS_NAME})")
        raise CheckpointError(f"{wfile}: file not found")
    return wfile


def load_component(cls, folder: Path):
    """``cls.from_pretrained(folder)`` after checking that the safetensors file exists,
    parses, and holds exactly the tensors (names, shapes) the config describes."""
    from safetensors import safe_open
    folder = Path(folder)
    wfile = _check_weights_dir(folder)
    cfg_file = folder / "config.json"
    try:
        config = cls.load_config(folder)
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise CheckpointError(f"{cfg_file}: unreadable config ({e})") from None
    try:
        reference = cls.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{cfg_file}: config does not build a {cls.__name__} ({e})") from None
    try:
        with safe_open(str(wfile), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{wfile}: corrupt or not a safetensors file ({e})") from None
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} e.g. {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatch(es) e.g. {k}: file {shapes[k]} vs config {expected[k]}")
        raise CheckpointError(f"{wfile} does not match {cfg_file}: " + "; ".join(parts))
    try:
        return cls.from_pretrained(str(folder), use_safetensors=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{wfile}: could not be loaded ({e})") from None


class BuiltinModel:
    """The four components plus ``BuiltinConfig``; ``save``/``load`` a model directory."""

    def __init__(self, autoencoder, denoiser, control, codec, config: BuiltinConfig, refiner=None):
        self.autoencoder, self.denoiser, self.control, self.codec = autoencoder, denoiser, control, codec
        self.refiner = refiner            # optional `FrameRefiner` (older checkpoints have none)
        self.config = config

    @property
    def components(self) -> tuple[str, ...]:
        """Names of the torch components present (the refiner is optional)."""
        return COMPONENTS + (("refiner",) if self.refiner is not None else ())

    # ---------------------------------------------------------------- build / io
    @classmethod
    def create(cls, config: BuiltinConfig | None = None, autoencoder: dict | None = None,
               denoiser: dict | None = None, control_layers: int = 2, codec: dict | None = None,
               seed: int = 0, refiner: dict | None = None) -> "BuiltinModel":
        """Fresh weights (seeded) from component config dicts (defaults: the shipped size);
        ``refiner``: a `FrameRefiner` config dict to add one (None: no refiner)."""
        import torch
        from .audio_codec import MelCodec
        from .autoencoder import FrameAutoencoder, autoencoder_config
        from .control import ControlBranch
        from .denoiser import JointDenoiser
        config = config or BuiltinConfig()
        torch.manual_seed(seed)   # module init has no generator argument; seeded here, once
        ae = FrameAutoencoder(**(autoencoder or autoencoder_config(sample_size=config.resolution[1])))
        mc = MelCodec(**(codec or {}))
        f = 2 ** (len(ae.config.block_out_channels) - 1)
        dcfg = dict(latent_channels=ae.config.latent_channels, audio_channels=mc.latent_channels,
                    max_latent_size=max(config.resolution) // f)
        dcfg.update(denoiser or {})
        den = JointDenoiser(**dcfg)
        ctrl = ControlBranch.from_denoiser(den, num_layers=control_layers,
                                           token_stride=f * den.config.patch_size)
        ref = None
        if refiner is not None:
            from .refiner import FrameRefiner
            ref = FrameRefiner(**refiner)
        return cls(ae, den, ctrl, mc, config, ref)

    def save(self, directory) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name in self.components:
            getattr(self, name).save_pretrained(str(d / name), safe_serialization=True)
        self.codec.save_config(str(d / "audio_codec"))
        (d / MODEL_INDEX).write_text(json.dumps({"format": "physcut.builtin", "version": 1,
                                                 **asdict(self.config)}, indent=1))
        return d

    @classmethod
    def load(cls, directory) -> "BuiltinModel":
        from .audio_codec import MelCodec
        from .autoencoder import FrameAutoencoder
        from .control import ControlBranch
        from .denoiser import JointDenoiser
        d = Path(directory)
        if d.is_file():
            if d.suffix.lower() in PICKLE_SUFFIXES:
                raise CheckpointError(f"{d}: pickle weights are refused; physcut loads only safetensors "
                                      "model directories")
            raise CheckpointError(f"{d}: is a file; pass the model directory (with {MODEL_INDEX})")
        if not d.is_dir():
            raise CheckpointError(f"{d}: model directory not found")
        idx = d / MODEL_INDEX
        if not idx.exists():
            raise CheckpointError(f"{idx}: file not found (not a physcut builtin model directory)")
        try:
            meta = json.loads(idx.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{idx}: not valid JSON ({e})") from None
        if meta.pop("format", None) != "physcut.builtin":
            raise CheckpointError(f"{idx}: field 'format' must be 'physcut.builtin'")
        meta.pop("version", None)
        config = BuiltinConfig.from_dict(meta, str(idx))
        ae = load_component(FrameAutoencoder, d / "autoencoder")
        den = load_component(JointDenoiser, d / "denoiser")
        ctrl = load_component(ControlBranch, d / "control")
        cc = d / "audio_codec" / "config.json"
        if not cc.exists():
            raise CheckpointError(f"{cc}: file not found")
        try:
            codec = MelCodec.from_config(MelCodec.load_config(str(d / "audio_codec")))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{cc}: unreadable config ({e})") from None
        if den.config.latent_channels != ae.config.latent_channels or \
                den.config.audio_channels != codec.latent_channels or \
                ctrl.config.hidden_dim != den.config.hidden_dim:
            raise CheckpointError(f"{d}: components do not fit together (latent channels "
                                  f"{ae.config.latent_channels}/{den.config.latent_channels}, audio channels "
                                  f"{codec.latent_channels}/{den.config.audio_channels}, width "
                                  f"{ctrl.config.hidden_dim}/{den.config.hidden_dim})")
        ref = None
        if (d / "refiner").exists():
            from .refiner import FrameRefiner
            ref = load_component(FrameRefiner, d / "refiner")
        return cls(ae, den, ctrl, codec, config, ref)

    def refine(self, frames, layers: dict, frame_slice: slice):
        """Decoded frames (t, 3, H, W) through the refiner (when the model has one) with
        the maps of ``layers[frame_slice]`` at the configured control scales."""
        if self.refiner is None:
            return frames
        import torch
        from .features import control_maps
        ref = self.refiner
        scales = {m: float(self.config.control_scales.get(m, 1.0)) for m in ref.config.maps}
        maps = {k: torch.from_numpy(v).to(frames.device)
                for k, v in control_maps(layers, frame_slice, ref.config.maps).items()}
        return ref(frames, maps, scales)

    # ---------------------------------------------------------------- properties
    @property
    def downsample(self) -> int:
        return 2 ** (len(self.autoencoder.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of the video latents."""
        W, H = self.config.resolution
        return H // self.downsample, W // self.downsample

    def to(self, device):
        for name in self.components:
            getattr(self, name).to(device)
        return self

    def eval(self):
        for name in self.components:
            getattr(self, name).eval()
        return self

    # ---------------------------------------------------------------- sampling
    def velocity(self, video, audio, t_video, t_audio, style_idx: int, frame_times, audio_times,
                 maps, audio_control, style_guidance: float, control_guidance: float, autocast: bool = False):
        """Guided velocity for one window (batch 1). Passes (style, control) are batched:
        full (s, c); plus (null, c) for style guidance; plus (null, none) or (s, none)
        for control guidance."""
        g = self.guidance_inputs(style_idx, frame_times, audio_times, maps, audio_control,
                                 style_guidance, control_guidance, video.device)
        return self.guided_velocity(g, video, audio, t_video, t_audio, autocast)

    def guidance_inputs(self, style_idx: int, frame_times, audio_times, maps, audio_control,
                        style_guidance: float, control_guidance: float, device) -> dict:
        """What ``velocity`` feeds the batched passes that stays the same over the steps of
        one window: the passes' style indices and control on/off, the per-map scales (for
        whichever maps are given), and the conditioning repeated once per pass. Maps are
        materialised in the batch once here, so the control branch does not copy them on
        every step."""
        import torch
        cs = self.config.control_scales
        passes = [(style_idx, True)]
        if style_guidance != 1.0:
            passes.append((0, True))
        if control_guidance != 1.0:
            passes.append((0 if style_guidance != 1.0 else style_idx, False))
        n = len(passes)
        rep = lambda x: x.expand(n, *x.shape[1:]) if x is not None else None  # noqa: E731
        on = torch.tensor([1.0 if p[1] else 0.0 for p in passes], device=device)
        return {"n": n, "style_guidance": style_guidance, "control_guidance": control_guidance,
                "style": torch.tensor([p[0] for p in passes], device=device),
                "frame_times": rep(frame_times), "audio_times": rep(audio_times),
                "maps": {k: rep(v).contiguous() for k, v in (maps or {}).items()},
                "audio_control": rep(audio_control),
                "scales": {m: on * float(cs.get(m, 1.0)) for m in (maps or {})},
                "audio_scale": on * self.config.audio_control_scale}

    def guided_velocity(self, g: dict, video, audio, t_video, t_audio, autocast: bool = False):
        """``velocity`` for the current noisy inputs, with the constants from ``guidance_inputs``."""
        import torch
        from .control import predict
        n, style_guidance, control_guidance = g["n"], g["style_guidance"], g["control_guidance"]
        rep = lambda x: x.expand(n, *x.shape[1:])  # noqa: E731
        with torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=autocast):
            vv, va = predict(self.denoiser, self.control, rep(video), rep(audio), rep(t_video), rep(t_audio),
                             g["style"], g["frame_times"], g["audio_times"], maps=g["maps"],
                             audio_control=g["audio_control"], scales=g["scales"], audio_scale=g["audio_scale"])
        vv, va = vv.float(), va.float()
        full_v, full_a = vv[:1], va[:1]
        if n == 1:
            return full_v, full_a
        if style_guidance != 1.0 and control_guidance != 1.0:
            # v = v(0,0) + gc (v(0,c) - v(0,0)) + gs (v(s,c) - v(0,c))
            return tuple(x[2:3] + control_guidance * (x[1:2] - x[2:3]) + style_guidance * (x[:1] - x[1:2])
                         for x in (vv, va))
        w = style_guidance if style_guidance != 1.0 else control_guidance
        return tuple(x[1:2] + w * (x[:1] - x[1:2]) for x in (vv, va))

    def sample(self, which: str, video, audio, style_idx: int, frame_times, audio_times, maps, audio_control,
               seed: int, steps: int | None = None, style_guidance: float | None = None,
               control_guidance: float | None = None, progress_cb=None, known=None):
        """Flow-matching Euler sampling of one stream (``which`` = "video" or "audio")
        from the noise already in it; the other stream stays clean (t = 0).

        ``known`` = (x0, mask, steps): for the first ``steps`` steps the stream is set,
        where ``mask`` is 1, to ``x0`` noised to the step's time with the initial noise,
        ``(1 - sigma) x0 + sigma x_init`` (`generator.carry`, RePaint's known region)."""
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler
        cfg = self.config
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=cfg.shift)
        sched.set_timesteps(steps or cfg.num_inference_steps, device=video.device)
        sg = cfg.style_guidance if style_guidance is None else style_guidance
        cg = cfg.control_guidance if control_guidance is None else control_guidance
        zero = torch.zeros(1, device=video.device)
        autocast = video.device.type == "cuda"
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        # Everything but the noisy stream and its timestep is the same at every step.
        g = self.guidance_inputs(style_idx, frame_times, audio_times, maps, audio_control, sg, cg, video.device)
        ts = sched.timesteps.to(video.device, torch.float32).reshape(-1, 1)
        x = video if which == "video" else audio
        x_init = x
        for i, t in enumerate(sched.timesteps):
            if known is not None and i < known[2]:
                sigma = float(sched.sigmas[i])
                x = torch.lerp(x, (1 - sigma) * known[0] + sigma * x_init, known[1])
            tv, ta = (ts[i], zero) if which == "video" else (zero, ts[i])
            v_in, a_in = (x, audio) if which == "video" else (video, x)
            vv, va = self.guided_velocity(g, v_in, a_in, tv, ta, autocast)
            x = sched.step(vv if which == "video" else va, t, x, generator=gen).prev_sample
            if progress_cb:
                progress_cb()
        return x


# --------------------------------------------------------------------------- pipeline
@register_backend("builtin")
class BuiltinPipeline(ShotPipeline):
    """``generator.load("builtin", model=DIR)``: see the module docstring."""
    audio_source = "global"

    def __init__(self, model: str | None = None, device: str | None = None, num_inference_steps: int | None = None,
                 style_guidance: float | None = None, control_guidance: float | None = None,
                 control_scales: dict | None = None, audio: bool = True, model_obj: BuiltinModel | None = None,
                 standardise_noise: bool = True, carry: bool = True):
        import torch
        if model_obj is None:
            path = Path(model) if model is not None else DEFAULT_MODEL_DIR
            if model is None and not path.exists():
                raise CheckpointError(f"{path}: the default checkpoint is not installed; train one with "
                                      "`physcut train` or pass model=DIR")
            model_obj = BuiltinModel.load(path)
        self.model = model_obj
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise GeneratorError(f"device {device!r} requested but CUDA is not available on this machine")
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        if self.device.type == "cpu":
            # NHWC convolutions: the per-frame decode is ~18% faster on CPU (measured at
            # 64x64, one thread); it is the largest cost outside the denoiser passes.
            self.model.autoencoder.to(memory_format=torch.channels_last)
        cfg = self.model.config
        if control_scales:
            unknown = sorted(set(control_scales) - set(cfg.control_scales))
            if unknown:
                raise GeneratorError(f"control_scales: unknown map(s) {unknown}; valid: {', '.join(cfg.control_scales)}")
            cfg.control_scales = {**cfg.control_scales, **control_scales}
        self.steps = num_inference_steps or cfg.num_inference_steps
        self.style_guidance, self.control_guidance = style_guidance, control_guidance
        self.window, self.overlap, self.resolution = cfg.window, cfg.overlap, tuple(cfg.resolution)
        self.styles = tuple(self.model.denoiser.config.styles)
        self.audio_source = "global" if audio else "conditioning"
        self.forward_passes = 0      # denoiser+control forward calls (batched passes count once)
        self.standardise_noise = bool(standardise_noise)   # see standardise_channels
        self.carry = bool(carry)     # surface memory across shots (anchored noise only; generator.carry)

    def describe(self) -> dict:
        return {"device": str(self.device), "steps": self.steps, "resolution": list(self.resolution),
                "surface_memory": getattr(self, "_memory", None) is not None,    # of the last call
                "recipe": self.model.config.recipe}

    #: Anchored means of the initial noise (`bridge.noise`, "Anchored means"): the
    #: built-in model's colours follow the noise's low frequencies, which "octaves"
    #: draws from the surfaces (white noise all the same; `benchmarks.noise_ablation`).
    noise_means = "octaves"

    def render_options(self) -> dict:
        """Render at the model resolution with the anchored noise on its latent grid, of
        the construction the model was trained on (`noise_kind`), with the model's window
        as the noise's time period (within a window the noise is temporally white, as the
        i.i.d. half of training, and a surface gets the same draws in every shot) and
        with its means over every octave of anchor cells drawn from the surface."""
        return {"resolution": tuple(self.resolution), "latent_factor": self.model.downsample,
                "noise_kind": self.noise_kind, "noise_period": self.window, "noise_means": self.noise_means}

    @property
    def noise_kind(self) -> str:
        """The anchored-noise construction of the model's last training data: "point"
        for models whose data recipe predates the field (all of them were)."""
        from bridge.noise import recorded_kind
        return recorded_kind(((self.model.config.recipe or {}).get("data") or {}).get("noise"))

    # ---------------------------------------------------------------- per call
    def prepare(self, c, style, noise, seed):
        import warnings
        import torch
        from bridge.noise import recorded_kind, recorded_means, recorded_period
        recorded = (c.meta or {}).get("noise")
        # the conditioning's noise design against the one render_options() asks for:
        # (given, wanted, what differs, CLI flag, consequence)
        checks = ((recorded_kind(recorded), self.noise_kind, "is {given!r}, but this model was trained on "
                   "{wanted!r} noise", "--noise-kind", ""),
                  (recorded_period(recorded), self.window, "has time period {given}, this model's window is "
                   "{wanted} frames", "--noise-period", ": within a window the model expects noise drawn "
                   "afresh in every frame"),
                  (recorded_means(recorded), self.noise_means, "has means {given!r}, this pipeline samples with "
                   "{wanted!r}", "--noise-means", ": the noise's low frequencies then do not follow the "
                   "surfaces across cuts"))
        for given, wanted, differs, flag, why in checks:
            if noise == "anchored" and given != wanted:
                warnings.warn("the conditioning's anchored noise " + differs.format(given=given, wanted=wanted)
                              + f" (render with **pipe.render_options(), or {flag} {wanted}){why}", stacklevel=3)
        self._fps = float(c.fps)
        self._style_idx = self.model.denoiser.style_index(style)
        codec = self.model.codec
        with torch.no_grad():
            self._mel = codec.from_waveform(c.audio, c.sample_rate)[0].to(self.device)   # (L_total, A)
        self._silence = (np.log(codec.config.log_floor) - codec.config.log_mean) / codec.config.log_std
        self._env = torch.from_numpy(event_envelope_for(c, self._mel.shape[0], codec.frame_rate)).to(self.device)
        self._video_latents = None
        self._shot_latents = []
        self._memory = None
        if noise == "anchored" and self.carry and self.model.config.carry_fraction > 0:
            kinds = (c.meta or {}).get("body_kind")
            lacking = sorted({"depth", "segmentation"} - set(c.shots[0].layers))
            if kinds is None or lacking:
                why = f"has no {' or '.join(lacking)} layer" if lacking else \
                    "records no body kinds (rendered before they were recorded)"
                warnings.warn(f"the conditioning {why}, so static surfaces are not carried across cuts "
                              "(render it again with the default layers)", stacklevel=3)
            else:
                from .carry import SurfaceMemory
                static = np.flatnonzero(np.asarray(kinds) == "static") + 1
                self._memory = SurfaceMemory(static, self.model.downsample)

    def _mel_slice(self, m0, L):
        import torch
        A = self._mel.shape[1]
        out = torch.full((L, A), float(self._silence), device=self.device)
        lo, hi = max(m0, 0), min(m0 + L, self._mel.shape[0])
        if hi > lo:
            out[lo - m0:hi - m0] = self._mel[lo:hi]
        return out

    def generate_window(self, shot, frame_slice, style, prompt, seed, init_noise):
        import torch
        from .features import audio_span, control_maps, resample_noise
        m = self.model
        T = len(shot.frames[frame_slice])
        h, w = m.latent_size
        C = m.autoencoder.config.latent_channels
        if init_noise is None:
            rng = np.random.default_rng(seed)
            init_noise = rng.standard_normal((T, C, h, w), dtype=np.float32)
        if init_noise.shape[1] != C:
            raise GeneratorError(f"initial noise has {init_noise.shape[1]} channels, the model's latents {C}")
        z = resample_noise(init_noise, h, w)
        z = standardise_channels(z) if self.standardise_noise else np.ascontiguousarray(z, np.float32)
        z = torch.from_numpy(z)[None].to(self.device)
        maps = {k: torch.from_numpy(v)[None].to(self.device)
                for k, v in control_maps(shot.layers, frame_slice, tuple(m.control.config.maps)).items()}
        t0 = float(shot.frames[frame_slice][0]) / self._fps
        m0, L = audio_span(t0, T, self._fps, m.codec.frame_rate)
        audio = self._mel_slice(m0, L)[None]
        frame_times = (torch.arange(T, device=self.device, dtype=torch.float32) / self._fps)[None]
        audio_times = ((m0 + torch.arange(L, device=self.device, dtype=torch.float32)) / m.codec.frame_rate - t0)[None]
        known = None
        if self._memory is not None and len(self._memory):
            x0, mask = self._memory.lookup(shot, frame_slice, tuple(z.shape[1:]))
            if mask.any():
                known = (torch.from_numpy(x0)[None].to(self.device), torch.from_numpy(mask)[None].to(self.device),
                         int(round(m.config.carry_fraction * self.steps)))
        with torch.no_grad():
            lat = m.sample("video", z, audio, self._style_idx, frame_times, audio_times, maps, None, seed,
                           self.steps, self.style_guidance, self.control_guidance, self._count, known)
        return lat[0].float().cpu().numpy()                                 # (T, C, h, w) latents

    def finish_shot(self, shot, blended):
        """Windows are blended in latent space; each frame is decoded once here."""
        import torch
        lat = torch.from_numpy(np.ascontiguousarray(blended, np.float32)).to(self.device)   # (T, C, h, w)
        self._shot_latents.append((np.asarray(shot.frames), lat))
        if self._memory is not None:
            self._memory.add(shot, blended)
        out = []
        with torch.no_grad():
            for i in range(0, lat.shape[0], 16):
                f = self.model.autoencoder.decode_video(lat[i:i + 16][None])[0]            # (t, 3, H, W)
                f = self.model.refine(f, shot.layers, slice(i, i + 16))
                out.append(((f.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)

    def _count(self):
        self.forward_passes += 1

    # ---------------------------------------------------------------- audio
    def audio_layout(self, c):
        from .features import audio_span
        rate = self.model.codec.frame_rate
        total = self._mel.shape[0]
        win = audio_span(0.0, self.window, self._fps, rate)[1]
        ov = audio_span(0.0, self.overlap, self._fps, rate)[1]
        return total, min(win, total), min(ov, max(win - 1, 0))

    def generate_audio_window(self, c, start, stop, style, prompt, seed, video=None):
        import torch
        m = self.model
        rate = m.codec.frame_rate
        F_ = video.shape[0]
        T = min(self.window, F_)
        t0 = start / rate
        f0 = int(np.clip(round(t0 * self._fps), 0, F_ - T))
        with torch.no_grad():
            if self._video_latents is None:
                self._video_latents = self._timeline_latents(video)             # (F, C, h, w)
            v = self._video_latents[f0:f0 + T][None]
            L = stop - start
            gen = torch.Generator(device="cpu").manual_seed(int(seed))
            a = torch.randn((1, L, m.codec.latent_channels), generator=gen).to(self.device)
            frame_times = ((f0 + torch.arange(T, device=self.device, dtype=torch.float32)) / self._fps - t0)[None]
            audio_times = (torch.arange(L, device=self.device, dtype=torch.float32) / rate)[None]
            env = self._env[start:stop][None]
            mel = m.sample("audio", v, a, self._style_idx, frame_times, audio_times, None, env, seed,
                           self.steps, self.style_guidance, self.control_guidance, self._count)
        return mel[0].T.cpu().numpy()                                           # (A, L)

    def _timeline_latents(self, video):
        """Latents of the assembled timeline: per frame, those the video pass sampled for
        the last shot showing it (no re-encoding); encoded from ``video`` otherwise."""
        import torch
        F_ = video.shape[0]
        if self._shot_latents:
            lat = torch.zeros((F_,) + tuple(self._shot_latents[0][1].shape[1:]), device=self.device)
            seen = np.zeros(F_, bool)
            for frames, z in self._shot_latents:
                lat[torch.from_numpy(frames).to(self.device)] = z
                seen[frames] = True
            if seen.all():
                return lat
        return self._encode_timeline(video)

    def _encode_timeline(self, video):
        import torch
        W, H = self.resolution
        if video.shape[1:3] != (H, W):
            raise GeneratorError(f"timeline frames are {video.shape[2]}x{video.shape[1]}, model {W}x{H}")
        out = []
        for i in range(0, video.shape[0], 16):
            x = torch.from_numpy(np.ascontiguousarray(video[i:i + 16])).to(self.device)
            x = x.permute(0, 3, 1, 2).float()[None] / 127.5 - 1
            out.append(self.model.autoencoder.encode_video(x)[0])
        return torch.cat(out)

    def decode_audio(self, c, blended):
        import torch
        import torchaudio
        codec = self.model.codec
        S = c.audio.shape[1]
        n_model = int(round(S * codec.config.sample_rate / c.sample_rate))
        mel = torch.from_numpy(np.ascontiguousarray(blended.T))[None].float()       # (1, L, A) on CPU
        wav = codec.decode(mel, num_samples=n_model)[0]                              # (C, n_model)
        wav = torchaudio.functional.resample(wav, codec.config.sample_rate, c.sample_rate)
        if wav.shape[0] == 1:
            wav = wav.expand(2, -1)
        out = np.zeros((2, S), np.float32)
        n = min(S, wav.shape[1])
        out[:, :n] = wav[:2, :n].numpy()
        return out


def standardise_channels(noise: np.ndarray) -> np.ndarray:
    """(T, C, h, w) initial noise -> float32 with every channel zero-mean and
    unit-variance over the window (anchored and i.i.d. alike).

    The built-in model's overall colour follows the noise's per-channel means (its
    training never varied them beyond sampling error: no offset noise), so windows
    whose noise means differ come out in different tints. Removing the means is an
    affine map per channel that leaves every correlation of the noise, so its
    anchoring, as it is. ``BuiltinPipeline(standardise_noise=False)`` turns it off;
    `benchmarks.noise_ablation` measures both ways.
    """
    n = np.asarray(noise, np.float64)
    n = n - n.mean(axis=(0, 2, 3), keepdims=True)
    return np.ascontiguousarray(n / np.maximum(n.std(axis=(0, 2, 3), keepdims=True), 1e-6), np.float32)


def event_envelope_for(c, num_frames: int, frame_rate: float) -> np.ndarray:
    from .features import event_envelope
    return event_envelope(c.events, num_frames, frame_rate)
