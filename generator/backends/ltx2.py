"""LTX-2 (joint audio + video) through diffusers' ``LTX2InContextPipeline``.

Control: the IC-LoRA mechanism. Each control map (``depth_vis``, ``pose``, or Canny
edges of the preview) becomes an ``LTX2ReferenceCondition`` whose VAE latents are
appended to the noisy tokens; an IC-LoRA adapter trained for that control (``ic_lora=``;
e.g. Lightricks' depth / pose / canny IC-LoRAs) makes the transformer follow it. Its
``reference_downscale_factor`` is read from the LoRA file's safetensors metadata.

What physcut passes per window (frames [a, b) of a shot):
    reference_conditions: the control videos at the generation resolution (multiple of
        32 for the real VAE: ``vae.spatial_compression_ratio``), padded to 8k + 1
        frames (``vae.temporal_compression_ratio``), strength ``control_strength``;
    frame_rate: the conditioning's fps, so the audio stream spans the same seconds;
    latents + noise_scale=0: the 3D-anchored noise mapped onto the (128, 1 + (F-1)/8,
        H/32, W/32) latent grid (``common.map_noise``), passed in the pipeline's
        de-normalised latent space so that its normalisation returns exactly the mapped
        noise; ``noise_scale=0`` stops the pipeline from blending fresh noise in (in
        diffusers 0.42 ``latents`` are otherwise treated as clean latents);
    audio_latents: the bridge's contact audio for the window's time span, turned into
        the audio VAE's input (log-mel: torchaudio MelSpectrogram, Hann window,
        n_fft 1024, the VAE's hop and mel bins, Slaney scale, power 1, log(max(x, 1e-5))),
        encoded (posterior mode), normalised, and mixed with seeded noise
        ``sqrt(1 - g^2) * eps + g * z`` (g = ``audio_guide``) so the joint audio stream
        starts from noise that carries the contact timing. With ``audio_guide=0`` the
        event timing goes into the prompt instead ("impact at 0.42 s: wood");
    prompt or prompt_embeds (+ attention masks): shot prompt + call prompt + style.
Audio: LTX-2's own generated audio for each window (vocoder output resampled to the
conditioning's rate), laid on the global timeline by ``generator.base`` and
crossfaded where windows and shots overlap.
"""
from __future__ import annotations

import math

import numpy as np

from ..base import CheckpointError, GeneratorError, register_backend
from .common import PretrainedBackend, edge_map, map_noise, pad_frames, resize_frames, round_up_frames, to_pil

CONTROL_LAYERS = {"depth": "depth_vis", "pose": "pose", "edge": "rgb"}


@register_backend("ltx2")
class LTX2Backend(PretrainedBackend):
    """``generator.load("ltx2", model=DIR_OR_HUB_ID, ic_lora=LORA, controls=("depth",))``.

    Extra options:
        controls: control types, each one reference condition ("depth", "pose", "edge").
        control_strength: reference strength in [0, 1] (1 = clean reference tokens).
        ic_lora: IC-LoRA weights (safetensors file, directory or hub id); lora_scale.
        reference_downscale_factor: override the LoRA metadata (default 1 without LoRA).
        audio_guide: in [0, 1): weight of the contact audio in the initial audio latents.
    """
    family = "ltx2"
    accepted_classes = ("LTX2Pipeline", "LTX2ConditionPipeline", "LTX2InContextPipeline",
                        "LTX2ImageToVideoPipeline")
    default_window = 121         # LTX2 pipelines' default num_frames
    default_overlap = 16
    default_steps = 30
    default_guidance = 3.0
    spatial_multiple = 32
    temporal_ratio = 8
    audio_source = "video_windows"

    def __init__(self, model=None, controls=("depth",), control_strength: float = 1.0, ic_lora=None,
                 lora_scale: float = 1.0, reference_downscale_factor: int | None = None,
                 audio_guide: float = 0.3, **kw):
        controls = (controls,) if isinstance(controls, str) else tuple(controls)
        for c in controls:
            if c not in CONTROL_LAYERS:
                raise GeneratorError(f"ltx2: unknown control {c!r}; valid: {', '.join(CONTROL_LAYERS)}")
        if not 0.0 <= audio_guide < 1.0:
            raise GeneratorError(f"ltx2: audio_guide must be in [0, 1), got {audio_guide}")
        self.controls, self.control_strength = controls, float(control_strength)
        self.required_layers = tuple(CONTROL_LAYERS[c] for c in controls)
        self.audio_guide = float(audio_guide)
        self._cond = None
        super().__init__(model=model, **kw)
        self.temporal_ratio = self.pipe.vae_temporal_compression_ratio
        # The pipeline checks multiples of 32 whatever the VAE (the real VAE compresses 32x).
        self.latent_scale = self.pipe.vae_spatial_compression_ratio * self.pipe.transformer_spatial_patch_size
        self.spatial_multiple = math.lcm(32, self.latent_scale)
        self.ic_lora, self.ref_downscale = ic_lora, 1
        if ic_lora is not None:
            self.ref_downscale = self._load_ic_lora(ic_lora, lora_scale)
        if reference_downscale_factor is not None:
            self.ref_downscale = int(reference_downscale_factor)

    def _load_pipeline(self, model, local):
        from diffusers import LTX2InContextPipeline
        return self._from_pretrained(LTX2InContextPipeline, model, local)

    def _load_ic_lora(self, lora, scale: float) -> int:
        """Load the IC-LoRA adapter; return its reference_downscale_factor (metadata)."""
        from pathlib import Path
        p = Path(str(lora))
        factor = 1
        try:
            if p.is_file():
                from safetensors import safe_open
                with safe_open(str(p), "pt") as f:
                    factor = int((f.metadata() or {}).get("reference_downscale_factor", 1))
                self.pipe.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name="ic_lora")
            else:
                self.pipe.load_lora_weights(str(lora), adapter_name="ic_lora")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{lora}: could not load the IC-LoRA ({type(e).__name__}: {e})") from None
        self.pipe.set_adapters("ic_lora", scale)
        return factor

    def __call__(self, conditioning, *args, **kw):
        # The window hook needs the timeline audio and events of the conditioning.
        self._cond = conditioning
        try:
            return super().__call__(conditioning, *args, **kw)
        finally:
            self._cond = None

    # ---- per window
    def control_video(self, shot, frame_slice, kind, W, H, n_gen) -> np.ndarray:
        src = np.asarray(shot.layers[CONTROL_LAYERS[kind]][frame_slice])
        v = resize_frames(src, W, H, nearest=kind == "pose")
        return pad_frames(edge_map(v) if kind == "edge" else v, n_gen)

    def window_inputs(self, shot, frame_slice, style, prompt, seed, init_noise):
        import torch
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition
        pipe, c = self.pipe, self._cond
        W, H = self.target_resolution(shot)
        n = len(range(*frame_slice.indices(shot.num_frames)))
        n_gen = round_up_frames(n, self.temporal_ratio)
        fps = float(c.fps) if c is not None else 24.0
        refs = [LTX2ReferenceCondition(frames=to_pil(self.control_video(shot, frame_slice, k, W, H, n_gen)),
                                       strength=self.control_strength) for k in self.controls]
        t0 = int(shot.frames[frame_slice.start]) / fps
        text = self.window_prompt(shot, style, prompt, t0, t0 + n_gen / fps)
        s, r = self.pipe.vae_spatial_compression_ratio, self.temporal_ratio
        T_lat, h, w = (n_gen - 1) // r + 1, H // s, W // s
        C = pipe.transformer.config.in_channels
        if init_noise is not None:
            x = map_noise(init_noise, C, T_lat, h, w, r)
        else:
            x = torch.randn((C, T_lat, h, w), generator=self.generator(seed + 1))
        vae = pipe.vae
        lat = pipe._denormalize_latents(x[None], vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        kw = dict(reference_conditions=refs, reference_downscale_factor=self.ref_downscale, height=H, width=W,
                  num_frames=n_gen, frame_rate=fps, num_inference_steps=self.steps,
                  guidance_scale=self.guidance_scale, latents=lat.to(self.device), noise_scale=0.0,
                  generator=self.generator(seed), output_type="np",
                  **self.prompt_inputs(text, masks=True))
        if self.audio_guide > 0.0 and c is not None:
            kw["audio_latents"] = self.audio_latents(c, t0, n_gen / fps, seed).to(self.device)
        kw.update(self.pipeline_kwargs)
        return kw

    def window_prompt(self, shot, style: str, prompt: str | None, t0: float, t1: float) -> str:
        """The window's prompt; without audio offering it carries the contact timing."""
        text = self.compose_prompt(shot, style, prompt)
        if self.audio_guide == 0.0 and self._cond is not None:
            timing = event_timing_text(self._cond.events, t0, t1)
            text = f"{text}. {timing}" if timing else text
        return text

    def audio_latents(self, c, t0: float, duration: float, seed: int):
        """Initial audio latents (1, C, L, M) from the contact audio of [t0, t0 + duration)."""
        import torch
        import torchaudio
        pipe = self.pipe
        avae = pipe.audio_vae
        sr_a, hop, bins = avae.config.sample_rate, avae.config.mel_hop_length, avae.config.mel_bins
        a0 = int(round(t0 * c.sample_rate))
        a1 = a0 + int(round(duration * c.sample_rate))
        wav = np.zeros((2, a1 - a0), np.float32)
        seg = np.asarray(c.audio[:, a0:min(a1, c.audio.shape[1])], np.float32)
        wav[:seg.shape[0], :seg.shape[1]] = seg
        if seg.shape[0] == 1:
            wav[1] = wav[0]
        x = torchaudio.functional.resample(torch.from_numpy(wav), c.sample_rate, sr_a)
        if getattr(self, "_mel", None) is None:       # the filterbank is built once per backend
            n_fft = 1024
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=sr_a, n_fft=n_fft, win_length=n_fft, hop_length=hop, f_min=0.0, f_max=sr_a / 2,
                n_mels=bins, window_fn=torch.hann_window, center=True, pad_mode="reflect", power=1.0,
                mel_scale="slaney", norm="slaney")
        mel = self._mel(x)                                                            # (2, bins, T)
        mel = torch.log(mel.clamp(min=1e-5)).permute(0, 2, 1)[None]                  # (1, 2, T, bins)
        with torch.no_grad():
            z = avae.encode(mel.to(self.device, avae.dtype)).latent_dist.mode().float().cpu()
        per_s = sr_a / hop / float(pipe.audio_vae_temporal_compression_ratio)
        L = round(duration * per_s)
        z = z[:, :, :L]
        if z.shape[2] < L:
            z = torch.cat([z, z.new_zeros(z.shape[:2] + (L - z.shape[2], z.shape[3]))], dim=2)
        M = z.shape[3]
        packed = pipe._pack_audio_latents(z)                                          # (1, L, C*M)
        mean, std = avae.latents_mean.float().cpu(), avae.latents_std.float().cpu()
        zn = pipe._normalize_audio_latents(packed, mean, std)
        eps = torch.randn(zn.shape, generator=self.generator(seed + 2))
        g = self.audio_guide
        mixed = (1.0 - g * g) ** 0.5 * eps + g * zn
        return pipe._unpack_audio_latents(pipe._denormalize_audio_latents(mixed, mean, std), L, num_mel_bins=M)

    def window_outputs(self, output, n, shot, frame_slice):
        import torch
        import torchaudio
        frames = super().window_outputs(output, n, shot, frame_slice)
        c = self._cond
        if c is None:
            return frames
        audio = output.audio
        audio = (audio if isinstance(audio, torch.Tensor) else torch.as_tensor(np.asarray(audio)))[0].float().cpu()
        if audio.ndim == 1:
            audio = audio[None]
        if audio.shape[0] == 1:
            audio = audio.repeat(2, 1)
        sr_v = int(self.pipe.vocoder.config.output_sampling_rate)
        audio = torchaudio.functional.resample(audio[:2], sr_v, c.sample_rate)
        want = int(round(n / c.fps * c.sample_rate))
        out = np.zeros((2, want), np.float32)
        k = min(want, audio.shape[1])
        out[:, :k] = audio[:, :k].numpy()
        return frames, np.clip(out, -1.0, 1.0)

    def describe(self):
        return {**super().describe(), "controls": list(self.controls), "control_strength": self.control_strength,
                "ic_lora": None if self.ic_lora is None else str(self.ic_lora),
                "reference_downscale_factor": self.ref_downscale, "audio_guide": self.audio_guide}


def event_timing_text(events: list, t0: float, t1: float) -> str:
    """Contact events of [t0, t1) as prompt text with times relative to t0."""
    parts = []
    for e in events:
        t = float(e.get("time", -1.0))
        if t0 <= t < t1:
            what = e.get("material") or "impact"
            parts.append(f"impact at {t - t0:.2f} s ({what})")
    return ("Sound: " + ", ".join(parts)) if parts else ""
