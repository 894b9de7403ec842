"""ControlNet-style control branch of the built-in model.

A trainable copy of the first ``num_layers`` blocks of the ``JointDenoiser``. It reads
the base's embedded tokens plus the bridge's maps (depth, pose, segmentation colours,
albedo, normals, the contact-event map) and, for the audio stream, the contact-event envelope.
Each map type has its own small strided CNN down to the video token grid and its own
conditioning scale; their sum enters through a linear projection. The output of
control block i goes through a zero-initialised projection (the ControlNet "zero
conv") and is added to the output of base block i, so a fresh branch leaves the base
model's output exactly unchanged.

Shapes: maps[name] (B, T, c, H, W) with H = h * downsample (image resolution);
audio_control (B, L, E); scales[name] (B,) or float; returns a list of
(rv (B, Nv, D), ra (B, L, D)) residuals, one per copied block.
"""
from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .denoiser import JointBlock, JointDenoiser
from .features import MAP_CHANNELS as CONTROL_MAPS  # map type -> channels, in config order


def zero_linear(dim_in: int, dim_out: int, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(dim_in, dim_out, bias=bias)
    nn.init.zeros_(lin.weight)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class MapEncoder(nn.Module):
    """(N, c, H, W) -> (N, D, H / stride, W / stride) by log2(stride) stride-2 convs."""

    def __init__(self, in_channels: int, hidden: int, out_dim: int, stride: int):
        super().__init__()
        n = int(round(math.log2(stride)))
        if 2 ** n != stride:
            raise ValueError(f"control stride must be a power of two, got {stride}")
        layers, c = [nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU()], hidden
        for i in range(n):
            nc = out_dim if i == n - 1 else min(hidden * 2 ** (i + 1), out_dim)
            layers += [nn.Conv2d(c, nc, 3, stride=2, padding=1)] + ([nn.SiLU()] if i < n - 1 else [])
            c = nc
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ControlBranch(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, hidden_dim: int = 128, num_heads: int = 4, mlp_ratio: float = 4.0, num_layers: int = 2,
                 token_stride: int = 8, maps: tuple = tuple(CONTROL_MAPS), map_hidden: int = 16,
                 audio_control_channels: int = 1):
        super().__init__()
        D = hidden_dim
        unknown = [m for m in maps if m not in CONTROL_MAPS]
        if unknown:
            raise ValueError(f"unknown control map(s) {unknown}; valid: {', '.join(CONTROL_MAPS)}")
        self.map_encoders = nn.ModuleDict({m: MapEncoder(CONTROL_MAPS[m], map_hidden, D, token_stride)
                                           for m in maps})
        self.audio_encoder = nn.Sequential(nn.Linear(audio_control_channels, D), nn.SiLU(), nn.Linear(D, D))
        # No bias on the hint projections: a map at scale 0 is exactly a map left out.
        # They are NOT zero-initialised: the zero output projections below already make
        # a fresh branch a no-op, and a second zero layer in series would leave both
        # without gradient until the other moves (measured: no structure after 100 CPU steps).
        self.hint_v, self.hint_a = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.blocks = nn.ModuleList(JointBlock(D, num_heads, mlp_ratio) for _ in range(num_layers))
        self.out_v = nn.ModuleList(zero_linear(D, D) for _ in range(num_layers))
        self.out_a = nn.ModuleList(zero_linear(D, D) for _ in range(num_layers))

    @classmethod
    def from_denoiser(cls, base: JointDenoiser, num_layers: int = 2, token_stride: int | None = None,
                      maps: tuple = tuple(CONTROL_MAPS), map_hidden: int = 16,
                      audio_control_channels: int = 1) -> "ControlBranch":
        """A branch whose blocks start as copies of the base's first ``num_layers``."""
        c = base.config
        if num_layers > c.num_layers:
            raise ValueError(f"control num_layers {num_layers} > base num_layers {c.num_layers}")
        ctrl = cls(hidden_dim=c.hidden_dim, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, num_layers=num_layers,
                   token_stride=token_stride or 8, maps=tuple(maps), map_hidden=map_hidden,
                   audio_control_channels=audio_control_channels)
        for i in range(num_layers):
            ctrl.blocks[i].load_state_dict(base.blocks[i].state_dict())
        return ctrl.to(base.device)

    def forward(self, hv, ha, ev, ea, maps: dict, audio_control=None, scales: dict | None = None,
                audio_scale=1.0):
        """Residuals for the first ``num_layers`` base blocks (see module docstring)."""
        B, Nv, D = hv.shape
        hint = torch.zeros_like(hv)
        scales = scales or {}
        for name, enc in self.map_encoders.items():
            if name not in maps or maps[name] is None:
                continue          # a missing map contributes nothing (as if dropped)
            x = maps[name]                                      # (B, T, c, H, W)
            f = enc(x.flatten(0, 1).to(hv.dtype))               # (B*T, D, h', w')
            f = f.flatten(2).transpose(1, 2).reshape(B, -1, D)  # (B, T*h'*w', D), token order of the base
            if f.shape[1] != Nv:
                raise ValueError(f"control map {name!r} gives {f.shape[1]} tokens, the video has {Nv} "
                                 f"(map resolution must be latent size x {self.config.token_stride})")
            hint = hint + _scale(scales.get(name, 1.0), B, hv) * f
        hv = hv + self.hint_v(hint)
        if audio_control is not None:
            ha = ha + self.hint_a(_scale(audio_scale, B, ha) * self.audio_encoder(audio_control.to(ha.dtype)))
        out = []
        for blk, pv, pa in zip(self.blocks, self.out_v, self.out_a):
            hv, ha = blk(hv, ha, ev, ea)
            out.append((pv(hv), pa(ha)))
        return out


def _scale(s, B, like):
    t = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    return t.reshape(B, 1, 1) if t.ndim == 1 else t


def predict(base: JointDenoiser, control: ControlBranch | None, video, audio, t_video, t_audio, style,
            frame_times, audio_times, maps=None, audio_control=None, scales=None, audio_scale=1.0):
    """One joint forward pass of base + control branch (control skipped when None)."""
    T, h, w = video.shape[1], video.shape[3], video.shape[4]
    hv, ha, ev, ea = base.embed(video, audio, t_video, t_audio, style, frame_times, audio_times)
    res = None
    if control is not None and (maps is not None or audio_control is not None):
        res = control(hv, ha, ev, ea, maps or {}, audio_control, scales, audio_scale)
    hv, ha = base.run_blocks(hv, ha, ev, ea, res)
    return base.unembed(hv, ha, ev, ea, T, h, w)
