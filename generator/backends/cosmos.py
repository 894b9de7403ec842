"""Cosmos-Transfer2.5 through diffusers' ``Cosmos2_5_TransferPipeline`` +
``CosmosControlNetModel``, with physcut's weighted multi-control.

diffusers 0.42 runs one ``CosmosControlNetModel`` per pipeline, and Transfer2.5 ships
one controlnet per control type (edge, depth, seg, vis). physcut combines several by
installing ``MultiControlNet`` as the pipeline's controlnet: every control type's
network sees its own control latents and their block outputs are summed, each scaled by
``control_scale * weight[type]`` (what the Cosmos framework calls per-hint weights; the
ControlNet-sum is also how diffusers' multi-ControlNet for images combines nets).

What physcut passes per window (frames [a, b) of a shot):
    controls: the first control type's video (the pipeline VAE-encodes it); the other
        types are encoded by ``MultiControlNet`` with the same VAE and normalisation:
        depth = ``depth_vis`` (near = bright), seg = ``segmentation_rgb`` (one fixed
        colour per body), edge = Canny edges of the preview ``rgb`` (of
        ``segmentation_rgb`` when no rgb), vis = the preview blurred (sigma = 1% of width);
        all resized to the generation resolution (multiple of 16) and padded to 4k + 1
        frames;
    num_frames = num_frames_per_chunk = the window's 4k + 1 frames: each call is one
        chunk, because the pipeline's own auto-regressive chunking reuses one
        ``latents`` tensor for every chunk, which would repeat the anchored noise
        (diffusers 0.42 ``prepare_latents(..., latents=latents_arg)`` per chunk); long
        shots use the shared overlapping windows instead;
    latents: the anchored noise on the (16, 1 + (F-1)/4, H/8, W/8) grid;
    prompt or prompt_embeds, controls_conditioning_scale.
Audio: the bridge's contact audio.

Safety checker: the real weights run with NVIDIA's ``cosmos_guardrail`` (the pipeline
builds it; install it with ``pip install cosmos_guardrail``). Only model directories
that physcut.json marks as random weights (``tiny.save_tiny``) get the pass-through
``RandomWeightsSafetyChecker``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import CheckpointError, GeneratorError, register_backend
from .common import (PretrainedBackend, blur_map, edge_map, map_noise, pad_frames, resize_frames,
                     round_up_frames, to_pil)

CONTROL_TYPES = ("depth", "seg", "edge", "vis")
HUB_CONTROLNET_REVISION = "diffusers/controlnet/general/{}"
HUB_PIPELINE_REVISION = "diffusers/general"


def _safety_checker_class():
    import torch
    from diffusers import ConfigMixin, ModelMixin

    class RandomWeightsSafetyChecker(ModelMixin, ConfigMixin):
        """Pass-through stand-in for ``cosmos_guardrail`` used ONLY with random-weight
        test pipelines (tiny.save_tiny); real Cosmos weights get the real guardrail."""

        def __init__(self):
            super().__init__()
            self.register_buffer("_where", torch.zeros(1), persistent=False)

        @property
        def device(self):
            return self._where.device

        @property
        def dtype(self):
            return self._where.dtype

        def check_text_safety(self, prompt: str) -> bool:
            return True

        def check_video_safety(self, frames):
            return frames

    return RandomWeightsSafetyChecker


def RandomWeightsSafetyChecker():  # noqa: N802  (a factory: the class needs diffusers at import)
    return _safety_checker_class()()


def _multi_controlnet_class():
    import torch
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.models.controlnets.controlnet_cosmos import CosmosControlNetOutput

    class MultiControlNet(ModelMixin, ConfigMixin):
        """Several ``CosmosControlNetModel`` behind the pipeline's controlnet call.

        The first type uses the control latents the pipeline encoded; the others are
        encoded from the videos given to ``set_window`` (once per window, cached).
        """

        def __init__(self, nets: dict, weights: dict):
            super().__init__()
            self.nets = torch.nn.ModuleDict(nets)
            self.types = list(nets)
            self.weights = dict(weights)
            self._videos, self._latents, self._encode = {}, {}, None

        def set_window(self, videos: dict, encode) -> None:
            self._videos, self._latents, self._encode = dict(videos), {}, encode

        def _control_latents(self, kind, like):
            if kind not in self._latents:
                if kind not in self._videos:
                    raise GeneratorError(f"cosmos: no control video for {kind!r} in this window")
                self._latents[kind] = self._encode(self._videos[kind]).to(like.device, like.dtype)
            return self._latents[kind]

        def forward(self, controls_latents, latents, timestep, encoder_hidden_states, condition_mask,
                    conditioning_scale=1.0, padding_mask=None, attention_mask=None, fps=None,
                    return_dict=True):
            total = None
            for kind in self.types:
                net = self.nets[kind]
                cl = controls_latents if kind == self.types[0] else self._control_latents(kind, controls_latents)
                scales = net._expand_conditioning_scale(conditioning_scale)
                w = self.weights.get(kind, 1.0)
                out = net(cl, latents, timestep, encoder_hidden_states, condition_mask,
                          conditioning_scale=[s * w for s in scales], padding_mask=padding_mask,
                          attention_mask=attention_mask, fps=fps, return_dict=False)[0]
                total = out if total is None else [a + b for a, b in zip(total, out)]
            if not return_dict:
                return (total,)
            return CosmosControlNetOutput(control_block_samples=total)

    return MultiControlNet


@register_backend("cosmos")
class CosmosTransferBackend(PretrainedBackend):
    """``generator.load("cosmos", model=DIR_OR_HUB_ID, control_weights={"depth": 1, "seg": 0.5})``.

    Extra options:
        controlnets: {type: local dir | subfolder of the model dir | "hub_id@revision"};
            default: physcut.json's "controls", else {control: "controlnet"} for a local
            directory, else the Transfer2.5 hub revisions for each type in control_weights.
        control: the type of the model directory's own ``controlnet`` (default "depth").
        control_weights: {type: weight}; default 1.0 for every loaded type.
        control_scale: global controls_conditioning_scale (default 1.0).
    """
    family = "cosmos"
    accepted_classes = ("Cosmos2_5_TransferPipeline",)
    default_window = 93          # num_frames_per_chunk of Transfer2.5
    default_overlap = 8
    default_steps = 36
    default_guidance = 3.0
    spatial_multiple = 16
    temporal_ratio = 4
    audio_source = "conditioning"

    def __init__(self, model=None, controlnets: dict | None = None, control: str = "depth",
                 control_weights: dict | None = None, control_scale: float = 1.0, **kw):
        for t in [control, *(controlnets or {}), *(control_weights or {})]:
            if t not in CONTROL_TYPES:
                raise GeneratorError(f"cosmos: unknown control type {t!r}; valid: {', '.join(CONTROL_TYPES)}")
        self._controlnets_opt, self._control = controlnets, control
        self._weights_opt = control_weights
        self.control_scale = float(control_scale)
        super().__init__(model=model, **kw)
        vae = self.pipe.vae
        self.temporal_ratio = 2 ** sum(vae.temperal_downsample)
        self.spatial_multiple = 2 ** len(vae.temperal_downsample) * self.pipe.transformer.config.patch_size[1]
        self._setup_controls(kw.get("pipeline") is not None)

    # ---- loading
    def _load_pipeline(self, model, local):
        from diffusers import Cosmos2_5_TransferPipeline
        from .common import read_physcut_json
        side = read_physcut_json(model if local else None)
        kw = {}
        if side.get("random_weights"):
            kw["safety_checker"] = RandomWeightsSafetyChecker()
        if not local:
            kw["revision"] = HUB_PIPELINE_REVISION
        try:
            return self._from_pretrained(Cosmos2_5_TransferPipeline, model, local, **kw)
        except ImportError as e:
            raise GeneratorError(f"{model}: Cosmos-Transfer2.5 runs with NVIDIA's guardrail (required by its "
                                 f"license); install it with `pip install cosmos_guardrail` ({e})") from None

    def _setup_controls(self, prebuilt: bool) -> None:
        """Resolve the control types, load extra controlnets, install MultiControlNet."""
        from diffusers import CosmosControlNetModel
        spec = self._controlnets_opt or self.side.get("controls")
        if prebuilt and not spec:
            spec = {self._control: "controlnet"}
        if not spec:
            if self.local:
                spec = {self._control: "controlnet"}
            else:
                types = list(self._weights_opt or {self._control: 1.0})
                spec = {t: f"{self.model}@{HUB_CONTROLNET_REVISION.format(t)}" for t in types}
                spec[types[0]] = "controlnet" if types[0] == self._control else spec[types[0]]
        # The model's own controlnet, even after an earlier backend replaced it in the slot.
        own = getattr(self.pipe, "_physcut_own_controlnet", None) or self.pipe.controlnet
        self.pipe._physcut_own_controlnet = own
        nets = {}
        for kind, where in spec.items():
            if isinstance(where, str) and where == "controlnet":
                nets[kind] = own
            elif not isinstance(where, str):          # an already-built model (tests)
                nets[kind] = where
            else:
                nets[kind] = self._load_controlnet(CosmosControlNetModel, kind, where)
        weights = {k: 1.0 for k in nets}
        for k, w in (self._weights_opt or {}).items():
            if k not in nets:
                raise GeneratorError(f"cosmos: control_weights names {k!r} but no controlnet for it is loaded "
                                     f"(loaded: {', '.join(nets)}); add it to controlnets=")
            weights[k] = float(w)
        self.control_types, self.control_weights = list(nets), weights
        self.required_layers = tuple(sorted({_layer_of(k) for k in nets}))
        if len(nets) > 1:
            multi = _multi_controlnet_class()(nets, weights).to(self.device)
            self.pipe.register_modules(controlnet=multi)
        elif next(iter(nets.values())) is not self.pipe.controlnet:
            self.pipe.register_modules(controlnet=next(iter(nets.values())).to(self.device))
        self._installed = self.pipe.controlnet
        self.multi = len(nets) > 1

    def _load_controlnet(self, cls, kind, where):
        if "@" in where and not Path(where).exists():
            repo, rev = where.split("@", 1)
            try:
                return cls.from_pretrained(repo, revision=rev, dtype=self.dtype)
            except (OSError, ValueError) as e:
                raise CheckpointError(f"hub id {repo!r} revision {rev!r}: could not load the {kind} controlnet "
                                      f"({type(e).__name__}: {e})") from None
        p = Path(where)
        if not p.is_absolute() and self.local:
            p = Path(self.model) / where
        if not (p / "config.json").exists():
            raise CheckpointError(f"{p}: {kind} controlnet directory not found (expected config.json + "
                                  "safetensors of a CosmosControlNetModel)")
        import json
        cls_name = json.loads((p / "config.json").read_text()).get("_class_name")
        if cls_name != "CosmosControlNetModel":
            raise CheckpointError(f"{p / 'config.json'}: field '_class_name' is {cls_name!r}, "
                                  "expected 'CosmosControlNetModel'")
        return cls.from_pretrained(str(p), dtype=self.dtype, local_files_only=True)

    # ---- per window
    def control_video(self, shot, frame_slice, kind, W, H, n_gen) -> np.ndarray:
        L = shot.layers
        if kind == "depth":
            v = resize_frames(np.asarray(L["depth_vis"][frame_slice]), W, H)
        elif kind == "seg":
            v = resize_frames(np.asarray(L["segmentation_rgb"][frame_slice]), W, H, nearest=True)
        elif kind == "edge":
            src = L["rgb"] if "rgb" in L else L["segmentation_rgb"]
            v = edge_map(resize_frames(np.asarray(src[frame_slice]), W, H, nearest="rgb" not in L))
        else:
            v = blur_map(resize_frames(np.asarray(L["rgb"][frame_slice]), W, H), sigma=max(1.0, 0.01 * W))
        return pad_frames(v, n_gen)

    def window_inputs(self, shot, frame_slice, style, prompt, seed, init_noise):
        W, H = self.target_resolution(shot)
        n = len(range(*frame_slice.indices(shot.num_frames)))
        n_gen = round_up_frames(n, self.temporal_ratio)
        videos = {k: self.control_video(shot, frame_slice, k, W, H, n_gen) for k in self.control_types}
        first = self.control_types[0]
        scale = self.control_scale * (1.0 if self.multi else self.control_weights[first])
        kw = dict(controls=to_pil(videos[first]), controls_conditioning_scale=scale, height=H, width=W,
                  num_frames=n_gen, num_frames_per_chunk=n_gen, num_inference_steps=self.steps,
                  guidance_scale=self.guidance_scale, generator=self.generator(seed), output_type="np",
                  **self.prompt_inputs(self.compose_prompt(shot, style, prompt)))
        if self.pipe.controlnet is not self._installed:
            self.pipe.register_modules(controlnet=self._installed)
        if self.multi:
            self.pipe.controlnet.set_window({k: v for k, v in videos.items() if k != first}, self._encoder(H, W))
        if init_noise is not None:
            s = 2 ** len(self.pipe.vae.temperal_downsample)
            C = self.pipe.transformer.config.in_channels - 1          # the last channel is the condition mask
            T_lat = (n_gen - 1) // self.temporal_ratio + 1
            kw["latents"] = map_noise(init_noise, C, T_lat, H // s, W // s, self.temporal_ratio)[None].to(self.device)
        kw.update(self.pipeline_kwargs)
        return kw

    def _encoder(self, H, W):
        """Encode a (T, H, W, 3) uint8 control video exactly as the pipeline encodes
        ``controls``: video processor to [-1, 1], VAE posterior mode, latent normalisation."""
        import torch
        pipe = self.pipe

        def encode(frames: np.ndarray):
            with torch.no_grad():
                x = pipe.video_processor.preprocess_video(to_pil(frames), H, W)
                x = x.to(self.device, pipe.vae.dtype)
                lat = pipe.vae.encode(x).latent_dist.mode()
                mean = pipe.latents_mean.to(lat.device, lat.dtype)
                std = pipe.latents_std.to(lat.device, lat.dtype)
                return (lat - mean) / std
        return encode

    def describe(self):
        return {**super().describe(), "controls": self.control_types, "control_weights": self.control_weights,
                "control_scale": self.control_scale}


def _layer_of(kind: str) -> str:
    return {"depth": "depth_vis", "seg": "segmentation_rgb", "edge": "segmentation_rgb", "vis": "rgb"}[kind]
