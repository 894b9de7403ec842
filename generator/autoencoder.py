"""Video autoencoder of the built-in model: diffusers' ``AutoencoderKL`` with a small
config, applied frame by frame (the denoiser models time; the autoencoder only
compresses space).

Shapes: frames (B, T, 3, H, W) in [-1, 1]  <->  latents (B, T, C, H/f, W/f), scaled by
``scaling_factor`` so the latents are roughly unit variance (matching the bridge's
N(0, 1) anchored noise). f = 2 ** (len(block_out_channels) - 1).
"""
from __future__ import annotations

from diffusers import AutoencoderKL


def autoencoder_config(block_out_channels=(32, 64, 64), latent_channels: int = 4,
                       layers_per_block: int = 1, norm_num_groups: int = 16, sample_size: int = 64,
                       scaling_factor: float = 1.0) -> dict:
    """A small per-frame AutoencoderKL config (downsampling 2 ** (levels - 1))."""
    n = len(block_out_channels)
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(block_out_channels),
                layers_per_block=layers_per_block, latent_channels=latent_channels,
                norm_num_groups=norm_num_groups, sample_size=sample_size, scaling_factor=scaling_factor,
                mid_block_add_attention=False)


class FrameAutoencoder(AutoencoderKL):
    """``AutoencoderKL`` plus video helpers; saves/loads exactly like its parent."""

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode_video(self, frames, sample: bool = False, generator=None):
        """(B, T, 3, H, W) in [-1, 1] -> (B, T, C, h, w) scaled latents (posterior mean
        unless ``sample``)."""
        B, T = frames.shape[:2]
        dist = self.encode(frames.flatten(0, 1)).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        z = (z - (self.config.shift_factor or 0.0)) * self.config.scaling_factor
        return z.unflatten(0, (B, T))

    def decode_video(self, latents):
        """(B, T, C, h, w) scaled latents -> (B, T, 3, H, W) in about [-1, 1]."""
        B, T = latents.shape[:2]
        z = latents.flatten(0, 1) / self.config.scaling_factor + (self.config.shift_factor or 0.0)
        return self.decode(z).sample.unflatten(0, (B, T))
