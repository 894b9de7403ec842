"""Control-aware refiner of the built-in model's decoded frames.

The diffusion model works on 8x8-pixel tokens and the autoencoder's decoder sees only
latents, so object boundaries come out soft and a little misplaced. The refiner is a
small convolutional network at pixel resolution that reads the decoded frame together
with the bridge's maps (depth, segmentation colours, albedo, normals -- the same
features as the control branch, `generator.features`) and adds a correction:

    frame = decoded + refiner(decoded, maps)

It is the decoder-side half of the control path: a two-level U-Net (full and half
resolution) whose output convolution is zero-initialised, so a fresh refiner returns
the decoded frame unchanged. Each map is multiplied by its conditioning scale (the
pipeline's ``control_scales``; 0 = the map is absent, as in training's map dropout),
so "control disabled" disables it too. It is trained in the decoder stage of
``physcut train`` on latents degraded the way the denoiser's are (blur + noise, the
"conditioning augmentation" of cascaded diffusion models), with the encoder frozen.

Shapes: decoded (N, 3, H, W) in [-1, 1]; maps[name] (N, c, H, W); scales[name] float
or (N,); returns (N, 3, H, W).
"""
from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .features import MAP_CHANNELS

REFINER_MAPS = ("depth", "segmentation", "albedo", "normals")


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.nn.functional.silu(self.a(torch.nn.functional.silu(x))))


class FrameRefiner(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, maps: tuple = REFINER_MAPS, width: int = 16, num_blocks: int = 3):
        super().__init__()
        unknown = [m for m in maps if m not in MAP_CHANNELS]
        if unknown:
            raise ValueError(f"unknown refiner map(s) {unknown}; valid: {', '.join(MAP_CHANNELS)}")
        cin = 3 + sum(MAP_CHANNELS[m] for m in maps)
        w = width
        self.inp = nn.Conv2d(cin, w, 3, padding=1)
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.mid = nn.Sequential(*[_Res(2 * w) for _ in range(num_blocks)])
        self.up = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.fuse = _Res(w)
        self.out = nn.Conv2d(w, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, decoded, maps: dict, scales: dict | None = None):
        N, _, H, W = decoded.shape
        scales = scales or {}
        parts = [decoded]
        for m in self.config.maps:
            x = maps.get(m)
            if x is None:
                parts.append(decoded.new_zeros(N, MAP_CHANNELS[m], H, W))
                continue
            s = torch.as_tensor(scales.get(m, 1.0), dtype=decoded.dtype, device=decoded.device)
            parts.append(x.to(decoded.dtype) * (s.reshape(N, 1, 1, 1) if s.ndim == 1 else s))
        h = self.inp(torch.cat(parts, 1))
        h = self.up(self.mid(self.down(torch.nn.functional.silu(h)))) + h
        return decoded + self.out(torch.nn.functional.silu(self.fuse(h)))


def degrade_latents(z, gen: torch.Generator):
    """Training augmentation: per sample, with probability 1/2 the latents as they are,
    else a Gaussian blur of random width (sigma 0-1.5 latent pixels) plus noise of
    random level (0-0.3 of the unit latent scale) -- what the few-step denoiser's
    estimates look like (soft, slightly off)."""
    N = z.shape[0]
    u = torch.rand(N, 3, generator=gen)
    keep = u[:, 0] < 0.5
    out = z.clone()
    for i in range(N):
        if keep[i]:
            continue
        sigma = float(u[i, 1]) * 1.5
        x = z[i:i + 1]
        if sigma > 0.2:
            r = int(min(3, max(1, round(2 * sigma))))
            k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=z.dtype) / sigma) ** 2)
            k = (k / k.sum()).to(z.device)
            C = x.shape[1]
            x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, 0, 0), mode="replicate"),
                                           k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
            x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, r, r), mode="replicate"),
                                           k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
        noise = torch.randn(x.shape, generator=gen).to(z.device)
        out[i:i + 1] = x + float(u[i, 2]) * 0.3 * noise
    return out
