"""Wan 2.1 / 2.2 VACE through diffusers' ``WanVACEPipeline``.

What physcut passes per window (frames [a, b) of a shot):
    video:  the control video: the bridge's ``depth_vis`` (near = bright), ``pose``
            (OpenPose colours) or ``segmentation_rgb``, resized to the generation
            resolution (multiple of 16) and padded to 4k + 1 frames by repeating the
            last frame; ``mask`` is left at its default (all ones: generate everywhere,
            the control video is the "reactive" VACE input);
    reference_images: optional identity images (same for every shot and window);
    conditioning_scale: the control strength;
    latents: the 3D-anchored noise mapped onto the (16, 1 + (F-1)/4 [+ refs], H/8, W/8)
            latent grid (see ``common.map_noise``); reference-image latent frames get
            seeded i.i.d. noise;
    prompt or prompt_embeds: shot prompt + call prompt + style prompt.
Audio: the bridge's contact audio (VACE makes no sound).
"""
from __future__ import annotations

import numpy as np

from ..base import GeneratorError, register_backend
from .common import PretrainedBackend, pad_frames, resize_frames, round_up_frames, to_pil, map_noise

CONTROL_LAYERS = {"depth": "depth_vis", "pose": "pose", "segmentation": "segmentation_rgb"}


@register_backend("vace")
class VACEBackend(PretrainedBackend):
    """``generator.load("vace", model=DIR_OR_HUB_ID, control="depth", ...)``.

    Extra options: control ("depth" | "pose" | "segmentation"), control_scale (float),
    reference_images (list of image paths or (H, W, 3) uint8 arrays).
    """
    family = "vace"
    accepted_classes = ("WanVACEPipeline",)
    default_window = 81          # Wan 2.1 VACE generates 81 frames per call
    default_overlap = 8
    default_steps = 50
    default_guidance = 5.0
    spatial_multiple = 16
    temporal_ratio = 4
    audio_source = "conditioning"

    def __init__(self, model=None, control: str = "depth", control_scale: float = 1.0,
                 reference_images=None, **kw):
        if control not in CONTROL_LAYERS:
            raise GeneratorError(f"vace: control must be one of {', '.join(CONTROL_LAYERS)}; got {control!r}")
        self.control, self.control_scale = control, float(control_scale)
        self.required_layers = (CONTROL_LAYERS[control],)
        self.reference_images = _load_images(reference_images)
        super().__init__(model=model, **kw)
        vae = self.pipe.vae
        self.temporal_ratio = 2 ** sum(vae.temperal_downsample)
        self.spatial_multiple = 2 ** len(vae.temperal_downsample) * self.pipe.transformer.config.patch_size[1]

    def _load_pipeline(self, model, local):
        from diffusers import WanVACEPipeline
        return self._from_pretrained(WanVACEPipeline, model, local)

    def window_inputs(self, shot, frame_slice, style, prompt, seed, init_noise):
        W, H = self.target_resolution(shot)
        ctrl = np.asarray(shot.layers[CONTROL_LAYERS[self.control]][frame_slice])
        n = ctrl.shape[0]
        n_gen = round_up_frames(n, self.temporal_ratio)
        ctrl = pad_frames(resize_frames(ctrl, W, H, nearest=self.control != "depth"), n_gen)
        kw = dict(video=to_pil(ctrl), height=H, width=W, num_frames=n_gen,
                  conditioning_scale=self.control_scale, num_inference_steps=self.steps,
                  guidance_scale=self.guidance_scale, generator=self.generator(seed), output_type="np",
                  **self.prompt_inputs(self.compose_prompt(shot, style, prompt)))
        refs = None
        if self.reference_images:
            refs = to_pil(np.stack([resize_frames(r[None], W, H)[0] for r in self.reference_images]))
            kw["reference_images"] = refs
        if init_noise is not None:
            import torch
            scale = 2 ** len(self.pipe.vae.temperal_downsample)
            C = self.pipe.transformer.config.in_channels
            T_lat = (n_gen - 1) // self.temporal_ratio + 1
            lat = map_noise(init_noise, C, T_lat, H // scale, W // scale, self.temporal_ratio)
            if refs:   # reference images occupy leading latent frames; their noise is seeded i.i.d.
                g = self.generator(seed + 1)
                lat = torch.cat([torch.randn((C, len(refs), H // scale, W // scale), generator=g), lat], dim=1)
            kw["latents"] = lat[None].to(self.device)
        kw.update(self.pipeline_kwargs)
        return kw

    def describe(self):
        return {**super().describe(), "control": self.control, "control_scale": self.control_scale,
                "reference_images": len(self.reference_images)}


def _load_images(images) -> list:
    if not images:
        return []
    out = []
    for im in images:
        if isinstance(im, np.ndarray):
            arr = im
        else:
            from PIL import Image
            try:
                arr = np.asarray(Image.open(im).convert("RGB"))
            except (OSError, ValueError) as e:
                raise GeneratorError(f"{im}: cannot read reference image ({e})") from None
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise GeneratorError(f"reference image must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
        out.append(arr)
    return out
