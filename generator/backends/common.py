"""What the three pretrained backends share: locating and checking a diffusers model
directory, device/dtype policy, prompts, control-map resizing, frame-count rounding
and the mapping of the bridge's 3D-anchored noise onto each model's latent grid.

Each backend (``ltx2.py``, ``vace.py``, ``cosmos.py``) subclasses ``PretrainedBackend``,
which is a ``generator.base.ShotPipeline``: the shot loop, windows, assembly and the
timeline audio are the shared mechanism of ``generator/base.py``; a backend only turns
one window of a shot into the keyword arguments of its diffusers pipeline
(``window_inputs``) and the pipeline output back into frames (``window_outputs``).
torch and diffusers are imported inside functions only.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ..base import CheckpointError, GeneratorError, ShotPipeline

# Model-directory side file written by ``tiny.save_tiny`` (and optionally by users):
# {"family": ..., "random_weights": bool, "defaults": {pipeline kwarg: value}}.
PHYSCUT_JSON = "physcut.json"
# Precomputed text embeddings for pipelines saved without a text encoder.
PROMPT_EMBEDS_FILE = "physcut_prompt_embeds.safetensors"

# Pipeline class (model_index.json "_class_name") -> physcut generator name, for hints.
FAMILY_OF_CLASS = {
    "LTX2Pipeline": "ltx2", "LTX2ConditionPipeline": "ltx2", "LTX2InContextPipeline": "ltx2",
    "LTX2ImageToVideoPipeline": "ltx2",
    "WanVACEPipeline": "vace",
    "Cosmos2_5_TransferPipeline": "cosmos",
    "WanPipeline": "(none: plain Wan text-to-video has no control input; use a VACE checkpoint)",
    "Cosmos2_5_PredictBasePipeline": "(none: Cosmos-Predict has no control input; use Cosmos-Transfer2.5)",
}

# Text for the named styles of generator/styles.py; any other style string is used as is.
STYLE_PROMPTS = {
    "preview": "clean CGI render, soft studio lighting, simple materials",
    "toon": "cel-shaded cartoon, flat colours, bold dark outlines",
    "night": "night scene, moonlight, deep blue shadows",
    "sepia": "old sepia-toned film footage, grain",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------- model dirs
def resolve_model(model, family: str, accepted: tuple[str, ...]) -> tuple[str, bool]:
    """Return (model, is_local). A local directory must exist and hold a
    ``model_index.json`` whose ``_class_name`` is one of ``accepted``; anything that
    is not an existing path must look like a hub id ``org/name``."""
    if model is None:
        raise GeneratorError(f"generator {family!r}: pass model=PATH (a local diffusers model "
                             "directory) or a hub id (physcut run ... --model PATH)")
    p = Path(str(model)).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"{p}: not a directory (the {family} backend needs a diffusers "
                                  "model directory with model_index.json)")
        check_family(p, family, accepted)
        return str(p), True
    s = str(model)
    if _HUB_ID.match(s) and not s.startswith((".", "/", "~")):
        return s, False
    raise CheckpointError(f"{p}: model directory does not exist (generator {family!r}; pass a local "
                          "diffusers model directory or a hub id such as org/name)")


def check_family(path: Path, family: str, accepted: tuple[str, ...]) -> str:
    """The pipeline class named by ``path/model_index.json``; raises when it is missing,
    unreadable or of another model family (naming the class and the right generator)."""
    mi = Path(path) / "model_index.json"
    if not mi.exists():
        raise CheckpointError(f"{mi}: file not found ({path} is not a diffusers pipeline directory; "
                              f"the {family} backend needs one saved with save_pretrained)")
    try:
        cls = json.loads(mi.read_text()).get("_class_name")
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{mi}: not valid JSON ({e})") from None
    if cls not in accepted:
        other = FAMILY_OF_CLASS.get(cls)
        hint = f"; use --generator {other}" if other and not other.startswith("(") else (
            f"; {other}" if other else "")
        raise CheckpointError(f"{mi}: field '_class_name' is {cls!r}, a model of another family; "
                              f"the {family} backend needs one of {', '.join(accepted)}{hint}")
    return cls


def read_physcut_json(path: str | None) -> dict:
    if path is None:
        return {}
    f = Path(path) / PHYSCUT_JSON
    if not f.exists():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: not valid JSON ({e})") from None


# --------------------------------------------------------------------------- device
def resolve_device_dtype(device: str, dtype: str, cpu_offload: bool):
    """(torch.device, torch.dtype). GPU-only options on a machine without CUDA raise:
    device='cuda', cpu_offload (it moves modules to an accelerator one at a time) and
    half precision (bf16/fp16 is how the real models run on GPUs; on CPU physcut runs
    float32 because half-precision CPU kernels are missing or very slow)."""
    import torch
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if str(device).startswith("cuda") and not has_cuda:
        raise GeneratorError(f"device={device!r} is GPU-only and no CUDA device is available on this "
                             "machine; use device='cpu' (or 'auto')")
    if cpu_offload and not has_cuda:
        raise GeneratorError("cpu_offload=True is GPU-only (it streams modules to a CUDA device) and no "
                             "CUDA device is available on this machine")
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        dt = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    elif dtype in names:
        dt = names[dtype]
    else:
        raise GeneratorError(f"dtype must be one of auto, {', '.join(names)}; got {dtype!r}")
    if dt != torch.float32 and not str(device).startswith("cuda"):
        raise GeneratorError(f"dtype={dtype!r} is GPU-only in physcut (bf16/fp16 inference on a CUDA "
                             "device); this run is on the CPU: use dtype='float32' (or 'auto')")
    return torch.device(device), dt


# --------------------------------------------------------------------------- frames
def round_up_frames(n: int, ratio: int) -> int:
    """Smallest k * ratio + 1 >= n (the frame counts causal video VAEs accept)."""
    return max(1, math.ceil((n - 1) / ratio)) * ratio + 1 if n > 1 else 1


def snap_resolution(width: int, height: int, multiple: int) -> tuple[int, int]:
    """(width, height) rounded to the nearest multiple (at least one multiple)."""
    def snap(v):
        return max(multiple, int(round(v / multiple)) * multiple)
    return snap(width), snap(height)


def resize_frames(frames: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3) uint8. Nearest keeps palette colours and
    skeleton colours exact (segmentation, pose); area/linear otherwise (depth, rgb)."""
    import cv2
    if frames.shape[1:3] == (height, width):
        return frames
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if width < frames.shape[2] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def pad_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Repeat the last frame so there are ``n`` frames (n >= len(frames))."""
    if frames.shape[0] >= n:
        return frames[:n]
    return np.concatenate([frames, np.repeat(frames[-1:], n - frames.shape[0], axis=0)])


def to_pil(frames: np.ndarray) -> list:
    from PIL import Image
    return [Image.fromarray(np.ascontiguousarray(f)) for f in frames]


def edge_map(frames: np.ndarray) -> np.ndarray:
    """Canny edges (T, H, W, 3) uint8 of (T, H, W, 3) uint8 frames (what edge ControlNets
    expect: white edges on black)."""
    import cv2
    out = []
    for f in frames:
        e = cv2.Canny(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 50, 150)
        out.append(np.repeat(e[..., None], 3, axis=-1))
    return np.stack(out)


def blur_map(frames: np.ndarray, sigma: float) -> np.ndarray:
    import cv2
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


# --------------------------------------------------------------------------- noise
def map_noise(noise: np.ndarray, channels: int, latent_frames: int, latent_h: int, latent_w: int,
              temporal_ratio: int):
    """Map the bridge's noise (t, 4, h, w) onto a model's latent grid
    (channels, latent_frames, latent_h, latent_w) as a float32 torch tensor.

    - Time: latent frame k of a causal video VAE summarises pixel frames up to
      k * temporal_ratio, so it takes the noise of pixel frame min(k * r, t - 1).
    - Space and channels: the noise is resampled by nearest neighbour (values stay
      exact N(0, 1) samples) to (latent_h * f, latent_w * f) with f = ceil(sqrt(C / 4)),
      then space-to-depth by f gives 4 f^2 >= C channels, of which the first C are kept.
      When the bridge's grid is at least f times finer than the model's (render with
      ``latent_factor=4``), every output value is a distinct anchored sample, so channels
      are independent; on coarser grids some channels repeat values. Either way a
      surface point keeps its noise in every shot and window.
    - Finally the tensor is divided by its standard deviation (unit variance).
    """
    import torch
    import torch.nn.functional as F
    x = torch.as_tensor(np.asarray(noise, np.float32))                        # (t, 4, h, w)
    t = x.shape[0]
    idx = [min(k * temporal_ratio, t - 1) for k in range(latent_frames)]
    x = x[idx]                                                                  # (T, 4, h, w)
    f = max(1, math.ceil(math.sqrt(channels / x.shape[1])))
    x = F.interpolate(x, size=(latent_h * f, latent_w * f), mode="nearest-exact")
    x = F.pixel_unshuffle(x, f)[:, :channels]                                  # (T, C, H, W)
    x = x.permute(1, 0, 2, 3).contiguous()                                     # (C, T, H, W)
    std = x.std()
    return x / std if float(std) > 0 else x


# --------------------------------------------------------------------------- base class
class PretrainedBackend(ShotPipeline):
    """A diffusers pipeline driven by physcut's conditioning (see module docstring).

    Options common to every pretrained backend:
        model: local diffusers directory or hub id.
        device: "auto" | "cpu" | "cuda[:i]"; dtype: "auto" | "float32" | "bfloat16" | "float16".
        cpu_offload: diffusers model CPU offload (CUDA only); vae_tiling: tiled VAE decode.
        steps, guidance_scale: sampler settings (default: the model card's).
        resolution: (width, height) to generate at; default: the conditioning's
            resolution snapped to the model's multiple.
        window, overlap: frames per pipeline call and frames shared by neighbours
            (long shots are split by the shared window mechanism of generator.base).
        style_prompt: text added to every shot's prompt (default: from ``style``).
        negative_prompt: text; prompt_embeds: safetensors file of precomputed
            embeddings for pipelines without a text encoder (default: the model
            directory's physcut_prompt_embeds.safetensors).
        pipeline_kwargs: extra keyword arguments for the diffusers pipeline call.
    """
    family = "base"
    accepted_classes: tuple[str, ...] = ()
    default_window = 81
    default_overlap = 8
    default_steps = 30
    default_guidance = 5.0
    spatial_multiple = 16
    temporal_ratio = 4

    def __init__(self, model=None, device: str = "auto", dtype: str = "auto", cpu_offload: bool = False,
                 vae_tiling: bool = False, steps: int | None = None, guidance_scale: float | None = None,
                 resolution: tuple[int, int] | None = None, window: int | None = None,
                 overlap: int | None = None, style_prompt: str | None = None,
                 negative_prompt: str | None = None, prompt_embeds=None,
                 pipeline_kwargs: dict | None = None, pipeline=None):
        self.device, self.dtype = resolve_device_dtype(device, dtype, cpu_offload)
        if pipeline is not None:            # an already-built pipeline (tests, benchmarks)
            self.model, self.local = None, False
            self.pipe = pipeline
        else:
            self.model, self.local = resolve_model(model, self.family, self.accepted_classes)
            self.pipe = self._load_pipeline(self.model, self.local)
        self.side = read_physcut_json(self.model if self.local else None)
        defaults = dict(self.side.get("defaults", {}))
        self.steps = int(steps if steps is not None else defaults.pop("num_inference_steps", self.default_steps))
        self.guidance_scale = float(guidance_scale if guidance_scale is not None
                                    else defaults.pop("guidance_scale", self.default_guidance))
        defaults.pop("num_inference_steps", None)
        defaults.pop("guidance_scale", None)
        self.pipeline_kwargs = {**defaults, **(pipeline_kwargs or {})}
        self.window = int(window if window is not None else self.side.get("window", self.default_window))
        self.overlap = int(overlap if overlap is not None else self.side.get("overlap", self.default_overlap))
        if self.window < 1 or not 0 <= self.overlap < self.window:
            raise GeneratorError(f"window must be >= 1 and 0 <= overlap < window; got window={self.window}, "
                                 f"overlap={self.overlap}")
        self.gen_resolution = None if resolution is None else tuple(int(v) for v in resolution)
        if self.gen_resolution is not None:
            w, h = self.gen_resolution
            if w % self.spatial_multiple or h % self.spatial_multiple:
                raise GeneratorError(f"resolution {w}x{h}: width and height must be multiples of "
                                     f"{self.spatial_multiple} for the {self.family} backend")
        self.style_prompt = style_prompt
        self.negative_prompt = negative_prompt
        if pipeline is not None and self.pipe.dtype != self.dtype:
            self.pipe.to(dtype=self.dtype)      # from_pretrained already loaded in self.dtype
        if not cpu_offload:
            self.pipe.to(self.device)
        else:
            self.pipe.enable_model_cpu_offload(device=self.device)
        self.cpu_offload, self.vae_tiling = cpu_offload, vae_tiling
        if vae_tiling:
            self.pipe.vae.enable_tiling()
        self.pipe.set_progress_bar_config(disable=True)
        self.embeds = self._load_embeds(prompt_embeds)

    # ---- loading
    def _load_pipeline(self, model: str, local: bool):
        raise NotImplementedError

    def _from_pretrained(self, cls, model: str, local: bool, **kw):
        if local:
            # Components saved as absent (e.g. no text encoder) must be passed as None.
            index = json.loads((Path(model) / "model_index.json").read_text())
            absent = {k: None for k, v in index.items() if isinstance(v, list) and v[:2] == [None, None]}
            kw = {**absent, **kw}
        try:
            return cls.from_pretrained(model, dtype=self.dtype, local_files_only=local, **kw)
        except (OSError, ValueError, EnvironmentError) as e:
            where = model if local else f"hub id {model!r}"
            raise CheckpointError(f"{where}: could not load a {cls.__name__} ({type(e).__name__}: {e})") from None

    def _load_embeds(self, prompt_embeds):
        """Precomputed embeddings when the pipeline has no text encoder, else None."""
        if getattr(self.pipe, "text_encoder", None) is not None and prompt_embeds is None:
            return None
        import torch
        if isinstance(prompt_embeds, dict):
            return {k: torch.as_tensor(v) for k, v in prompt_embeds.items()}
        f = Path(prompt_embeds) if prompt_embeds is not None else (
            Path(self.model) / PROMPT_EMBEDS_FILE if self.local else None)
        if f is None or not f.exists():
            raise CheckpointError(f"{f or self.model}: the {self.family} pipeline has no text encoder and no "
                                  f"precomputed embeddings ({PROMPT_EMBEDS_FILE}); add a text encoder to the "
                                  "model directory or pass prompt_embeds=FILE.safetensors")
        from safetensors.torch import load_file
        try:
            return load_file(str(f))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{f}: not a safetensors file ({e})") from None

    # ---- prompts
    def compose_prompt(self, shot, style: str, prompt: str | None) -> str:
        """Shot prompt + call prompt + global style prompt, in that order."""
        style_text = self.style_prompt if self.style_prompt is not None else STYLE_PROMPTS.get(style, style)
        parts = [p.strip() for p in (shot.prompt, prompt or "", style_text or "") if p and p.strip()]
        return ". ".join(parts)

    def prompt_inputs(self, text: str, masks: bool = False) -> dict:
        """Pipeline kwargs for the prompt: the text (pipelines with a text encoder) or the
        precomputed embeddings (and attention masks where the pipeline takes them)."""
        cfg = self.guidance_scale > 1.0
        if self.embeds is None:
            kw = {"prompt": text}
            if cfg and self.negative_prompt is not None:
                kw["negative_prompt"] = self.negative_prompt
            return kw
        e = self.embeds
        kw = {"prompt_embeds": e["prompt_embeds"].to(self.device, self.dtype)}
        if masks and "prompt_attention_mask" in e:
            kw["prompt_attention_mask"] = e["prompt_attention_mask"].to(self.device)
        if cfg:
            neg = e.get("negative_prompt_embeds", torch_zeros_like(e["prompt_embeds"]))
            kw["negative_prompt_embeds"] = neg.to(self.device, self.dtype)
            if masks and "prompt_attention_mask" in e:
                kw["negative_prompt_attention_mask"] = e.get(
                    "negative_prompt_attention_mask", e["prompt_attention_mask"]).to(self.device)
        return kw

    # ---- geometry
    def target_resolution(self, shot) -> tuple[int, int]:
        if self.gen_resolution is not None:
            return self.gen_resolution
        w, h = shot.resolution
        return snap_resolution(w, h, self.spatial_multiple)

    def generator(self, seed: int):
        import torch
        return torch.Generator(device="cpu").manual_seed(int(seed))

    # ---- the window hook of generator.base.ShotPipeline
    def window_inputs(self, shot, frame_slice: slice, style: str, prompt: str | None, seed: int,
                      init_noise) -> dict:
        """Keyword arguments of one diffusers pipeline call for these frames."""
        raise NotImplementedError

    def window_outputs(self, output, n: int, shot, frame_slice: slice):
        """Pipeline output -> (n, H, W, 3) uint8 frames (or (frames, audio))."""
        frames = np.asarray(output.frames[0])                                  # (T, H, W, 3) in [0, 1]
        return np.clip(np.rint(frames[:n] * 255.0), 0, 255).astype(np.uint8)

    def generate_window(self, shot, frame_slice, style, prompt, seed, init_noise):
        kw = self.window_inputs(shot, frame_slice, style, prompt, seed, init_noise)
        out = self.pipe(**kw)
        n = len(range(*frame_slice.indices(shot.num_frames)))
        return self.window_outputs(out, n, shot, frame_slice)

    def describe(self) -> dict:
        return {"model": self.model, "pipeline": type(self.pipe).__name__, "device": str(self.device),
                "dtype": str(self.dtype).replace("torch.", ""), "steps": self.steps,
                "guidance_scale": self.guidance_scale, "cpu_offload": self.cpu_offload,
                "vae_tiling": self.vae_tiling, "random_weights": bool(self.side.get("random_weights", False)),
                "prompt_source": "text_encoder" if self.embeds is None else "precomputed_embeddings"}


def torch_zeros_like(x):
    import torch
    return torch.zeros_like(x)
