"""Audio representation of the built-in model: normalised log-mel spectrograms
(torchaudio ``MelSpectrogram``) and Griffin-Lim (``InverseMelScale`` + ``GriffinLim``)
as the vocoder. No learned weights, so it saves as a config only.

Shapes: waveform (B, C, S) at ``sample_rate``  <->  mel latents (B, L, C * n_mels) with
L = S // hop_length + 1 frames (centred STFT; frame i sits at i * hop_length samples).
"""
from __future__ import annotations

from diffusers.configuration_utils import ConfigMixin, register_to_config


class MelCodec(ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 160,
                 n_mels: int = 32, f_min: float = 20.0, f_max: float = 8000.0, channels: int = 2,
                 log_floor: float = 1e-5, log_mean: float = -7.0, log_std: float = 3.0,
                 griffin_lim_iters: int = 32):
        self._mods = None

    @property
    def latent_channels(self) -> int:
        return self.config.channels * self.config.n_mels

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.config.sample_rate / self.config.hop_length

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.config.hop_length + 1

    def _modules(self, device):
        import torchaudio
        c = self.config
        if self._mods is None or self._mods[0] != str(device):
            mel = torchaudio.transforms.MelSpectrogram(c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
                                                       f_min=c.f_min, f_max=c.f_max, n_mels=c.n_mels,
                                                       power=1.0, center=True).to(device)
            inv = torchaudio.transforms.InverseMelScale(c.n_fft // 2 + 1, n_mels=c.n_mels, sample_rate=c.sample_rate,
                                                        f_min=c.f_min, f_max=c.f_max).to(device)
            gl = torchaudio.transforms.GriffinLim(n_fft=c.n_fft, hop_length=c.hop_length, power=1.0,
                                                  n_iter=c.griffin_lim_iters, rand_init=False).to(device)
            self._mods = (str(device), mel, inv, gl)
        return self._mods[1:]

    def encode(self, audio):
        """(B, C, S) float waveform at ``sample_rate`` -> (B, L, C * n_mels) normalised log-mel."""
        import torch
        c = self.config
        mel, _, _ = self._modules(audio.device)
        m = mel(audio.float())                                   # (B, C, n_mels, L)
        m = (torch.log(m.clamp_min(c.log_floor)) - c.log_mean) / c.log_std
        return m.flatten(1, 2).transpose(1, 2).contiguous()      # (B, L, C * n_mels)

    def decode(self, latents, num_samples: int | None = None):
        """(B, L, C * n_mels) -> (B, C, S) waveform by Griffin-Lim (S = (L - 1) * hop)."""
        import torch
        c = self.config
        _, inv, gl = self._modules(latents.device)
        B, L, _ = latents.shape
        m = torch.exp(latents.float().transpose(1, 2) * c.log_std + c.log_mean)   # (B, C*n_mels, L)
        m = m.reshape(B * c.channels, c.n_mels, L)
        spec = inv(m).clamp_min(0)                               # (B*C, n_fft/2+1, L)
        n = num_samples if num_samples is not None else (L - 1) * c.hop_length
        wav = gl(spec, length=n) if _gl_takes_length(gl) else gl(spec)[..., :n]
        return wav.reshape(B, c.channels, -1)

    def from_waveform(self, audio, sample_rate: int):
        """(C, S) numpy/tensor at ``sample_rate`` -> (1, L, C * n_mels) latents."""
        import torch
        import torchaudio
        x = torch.as_tensor(audio, dtype=torch.float32)[None]
        if sample_rate != self.config.sample_rate:
            x = torchaudio.functional.resample(x, sample_rate, self.config.sample_rate)
        return self.encode(x)


def _gl_takes_length(gl) -> bool:
    import inspect
    return "length" in inspect.signature(gl.forward).parameters
