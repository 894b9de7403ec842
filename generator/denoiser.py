"""Joint video + audio denoiser of the built-in model (a small two-stream DiT).

Two token streams share every block: video tokens (latent patches of a window of
frames) and audio tokens (mel frames). Each block does self-attention within a
stream, cross-attention between the streams (video queries audio and audio queries
video, as LTX-2 and Ovi do) and an MLP, all modulated (adaLN-Zero) by the stream's
flow-matching timestep plus a learned style embedding. Both streams share one clock
embedding (seconds since the window start), so cross-attention can align a sound with
the frame it belongs to.

Each stream has its own timestep: training draws them independently (sometimes 0 =
clean), so the same model samples video given clean audio, audio given clean video,
or both jointly. Style index 0 is the null style (classifier-free guidance).

Shapes (B batch, T frames, C latent channels, h x w latent size, p patch, D width,
L mel frames, A = audio channels * n_mels):
    video (B, T, C, h, w) -> tokens (B, T * h/p * w/p, D)
    audio (B, L, A)       -> tokens (B, L, D)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class JointBlock(nn.Module):
    """Self-attention per stream, cross-attention between streams, MLP per stream."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        # 9 = (shift, scale, gate) x (self-attn, cross-attn, mlp); zero init = identity block.
        self.mod_v, self.mod_a = nn.Linear(dim, 9 * dim), nn.Linear(dim, 9 * dim)
        for m in (self.mod_v, self.mod_a):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        mha = lambda: nn.MultiheadAttention(dim, num_heads, batch_first=True)  # noqa: E731
        self.self_v, self.self_a, self.cross_v, self.cross_a = mha(), mha(), mha(), mha()
        hid = int(dim * mlp_ratio)
        mlp = lambda: nn.Sequential(nn.Linear(dim, hid), nn.GELU(approximate="tanh"), nn.Linear(hid, dim))  # noqa: E731
        self.mlp_v, self.mlp_a = mlp(), mlp()

    def forward(self, hv, ha, ev, ea):
        # hv (B, Nv, D), ha (B, L, D), ev / ea (B, D)
        mv = self.mod_v(F.silu(ev)).chunk(9, dim=-1)
        ma = self.mod_a(F.silu(ea)).chunk(9, dim=-1)
        x = modulate(self.norm(hv), mv[0], mv[1])
        hv = hv + mv[2][:, None] * self.self_v(x, x, x, need_weights=False)[0]
        y = modulate(self.norm(ha), ma[0], ma[1])
        ha = ha + ma[2][:, None] * self.self_a(y, y, y, need_weights=False)[0]
        x = modulate(self.norm(hv), mv[3], mv[4])
        y = modulate(self.norm(ha), ma[3], ma[4])
        hv = hv + mv[5][:, None] * self.cross_v(x, y, y, need_weights=False)[0]   # video <- audio
        ha = ha + ma[5][:, None] * self.cross_a(y, x, x, need_weights=False)[0]   # audio <- video
        hv = hv + mv[8][:, None] * self.mlp_v(modulate(self.norm(hv), mv[6], mv[7]))
        ha = ha + ma[8][:, None] * self.mlp_a(modulate(self.norm(ha), ma[6], ma[7]))
        return hv, ha


class JointDenoiser(ModelMixin, ConfigMixin):
    """Predicts the flow-matching velocity (noise - data) of both streams."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, audio_channels: int = 64, patch_size: int = 2,
                 hidden_dim: int = 128, num_layers: int = 6, num_heads: int = 4, mlp_ratio: float = 4.0,
                 max_latent_size: int = 32, styles: tuple = ("preview", "toon", "night", "sepia"),
                 clock_scale: float = 100.0):
        super().__init__()
        D, p = hidden_dim, patch_size
        self.video_in = nn.Linear(latent_channels * p * p, D)
        self.audio_in = nn.Linear(audio_channels, D)
        g = max_latent_size // p
        self.pos_h = nn.Parameter(torch.randn(g, D) * 0.02)
        self.pos_w = nn.Parameter(torch.randn(g, D) * 0.02)
        self.clock_proj = Timesteps(D, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.clock_embed = nn.Linear(D, D)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, D)
        self.style_embed = nn.Embedding(len(styles) + 1, D)     # row 0: null style
        self.blocks = nn.ModuleList(JointBlock(D, num_heads, mlp_ratio) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mod_out_v, self.mod_out_a = nn.Linear(D, 2 * D), nn.Linear(D, 2 * D)
        self.video_out = nn.Linear(D, latent_channels * p * p)
        self.audio_out = nn.Linear(D, audio_channels)
        for m in (self.mod_out_v, self.mod_out_a, self.video_out, self.audio_out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- helpers
    def style_index(self, style: str | None) -> int:
        """Embedding row of a style name (None -> 0, the null style)."""
        if style is None:
            return 0
        styles = list(self.config.styles)
        if style not in styles:
            raise ValueError(f"unknown style {style!r}; this model knows: {', '.join(styles)}")
        return styles.index(style) + 1

    def patchify(self, video):
        # (B, T, C, h, w) -> (B, T * h/p * w/p, C * p * p)
        B, T, C, h, w = video.shape
        p = self.config.patch_size
        x = video.reshape(B, T, C, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(B, T * (h // p) * (w // p), C * p * p)

    def unpatchify(self, tokens, T, h, w):
        # (B, T * h/p * w/p, C * p * p) -> (B, T, C, h, w)
        B = tokens.shape[0]
        p, C = self.config.patch_size, self.config.latent_channels
        x = tokens.reshape(B, T, h // p, w // p, C, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, T, C, h, w)

    def clock(self, seconds):
        # (B, N) seconds -> (B, N, D)
        B, N = seconds.shape
        e = self.clock_proj((seconds * self.config.clock_scale).flatten())
        return self.clock_embed(e.to(self.video_in.weight.dtype)).reshape(B, N, -1)

    # ---------------------------------------------------------------- stages
    def embed(self, video, audio, t_video, t_audio, style, frame_times, audio_times):
        """Tokens and conditioning vectors: hv (B, Nv, D), ha (B, L, D), ev, ea (B, D)."""
        B, T, C, h, w = video.shape
        p, D = self.config.patch_size, self.config.hidden_dim
        if h % p or w % p or h // p > self.pos_h.shape[0] or w // p > self.pos_w.shape[0]:
            raise ValueError(f"latent size {h}x{w} not supported (patch {p}, max {self.config.max_latent_size})")
        hv = self.video_in(self.patchify(video)).reshape(B, T, h // p, w // p, D)
        hv = hv + self.pos_h[: h // p, None] + self.pos_w[None, : w // p]
        hv = hv + self.clock(frame_times)[:, :, None, None]
        hv = hv.reshape(B, -1, D)
        ha = self.audio_in(audio) + self.clock(audio_times)
        s = self.style_embed(style)
        dt = self.video_in.weight.dtype
        ev = self.time_embed(self.time_proj(t_video).to(dt)) + s
        ea = self.time_embed(self.time_proj(t_audio).to(dt)) + s
        return hv, ha, ev, ea

    def run_blocks(self, hv, ha, ev, ea, control_residuals=None):
        """The block stack; ``control_residuals[i] = (rv, ra)`` is added after block i."""
        for i, blk in enumerate(self.blocks):
            hv, ha = blk(hv, ha, ev, ea)
            if control_residuals is not None and i < len(control_residuals):
                rv, ra = control_residuals[i]
                hv, ha = hv + rv, ha + ra
        return hv, ha

    def unembed(self, hv, ha, ev, ea, T, h, w):
        sv, cv = self.mod_out_v(F.silu(ev)).chunk(2, dim=-1)
        sa, ca = self.mod_out_a(F.silu(ea)).chunk(2, dim=-1)
        vv = self.video_out(modulate(self.norm_out(hv), sv, cv))
        va = self.audio_out(modulate(self.norm_out(ha), sa, ca))
        return self.unpatchify(vv, T, h, w), va

    def forward(self, video, audio, t_video, t_audio, style, frame_times, audio_times,
                control_residuals=None):
        """video (B, T, C, h, w), audio (B, L, A), t_* (B,) in [0, 1000], style (B,) long,
        frame_times (B, T) / audio_times (B, L) seconds -> velocities of the same shapes."""
        T, h, w = video.shape[1], video.shape[3], video.shape[4]
        hv, ha, ev, ea = self.embed(video, audio, t_video, t_audio, style, frame_times, audio_times)
        hv, ha = self.run_blocks(hv, ha, ev, ea, control_residuals)
        return self.unembed(hv, ha, ev, ea, T, h, w)
