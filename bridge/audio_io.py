"""WAV read/write with the standard library (16-bit PCM), no torchcodec needed."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write (channels, samples) float audio in [-1, 1] as 16-bit PCM."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.T.copy().tobytes())
    return path


def read_wav(path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as (channels, samples) float32 and its sample rate."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported (sample width {w.getsampwidth()})")
        n, ch, sr = w.getnframes(), w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(n), dtype="<i2").reshape(-1, ch).T
    return (data.astype(np.float32) / 32767.0), sr
