"""The one generation mechanism every physcut backend shares.

Owns:
- the backend registry (``register_backend``, ``available``, ``load``);
- ``GeneratedClip``, the frozen result of a generation (assembled timeline frames,
  per-shot raw frames, one continuous audio track) with ``save``;
- ``ShotPipeline``, the shot loop: validation of the conditioning against the model,
  overlapping windows blended with linear ramps for shots longer than the model's
  window, initial noise (3D-anchored from the bridge, or i.i.d.), assembly of the
  shots with their cuts/crossfades through ``bridge.assemble``, and audio over the
  GLOBAL timeline in overlapping windows (never per shot, so sound does not restart
  at a cut).

A backend subclasses ``ShotPipeline`` and implements ``generate_window`` (and
optionally ``generate_audio_window``); it registers with ``@register_backend(name)``.
Heavy imports (torch, diffusers) stay inside the backends' methods.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

CLIP_SCHEMA = 1


# --------------------------------------------------------------------------- errors
class GeneratorError(ValueError):
    """Bad input to a generator: unknown backend, bad option, unusable conditioning."""


class CheckpointError(GeneratorError):
    """A model directory or weights file that cannot be loaded (names the file)."""


class ConditioningMismatchError(GeneratorError):
    """Conditioning whose resolution, frame count or layers do not fit the model."""


# --------------------------------------------------------------------------- registry
_BACKENDS: dict[str, type] = {}
# Modules that register backends when imported; imported on first use so that
# `import generator` stays light. generator.backends is helper BACKENDS' package.
_BACKEND_MODULES = ("generator.preview", "generator.builtin", "generator.backends")


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator: make a ``ShotPipeline`` subclass loadable as ``load(name)``."""
    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, ShotPipeline)):
            raise TypeError(f"register_backend({name!r}): {cls!r} is not a ShotPipeline subclass")
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"generator backend {name!r} is already registered "
                             f"({_BACKENDS[name].__module__}.{_BACKENDS[name].__qualname__})")
        cls.name = name
        _BACKENDS[name] = cls
        return cls
    return deco


def _discover() -> None:
    for mod in _BACKEND_MODULES:
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(mod)


def available() -> tuple[str, ...]:
    """Names of all registered generator backends."""
    _discover()
    return tuple(sorted(_BACKENDS))


def backend_class(name: str) -> type:
    _discover()
    if name not in _BACKENDS:
        raise GeneratorError(f"unknown generator {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]


def load(name: str, **kw) -> "ShotPipeline":
    """Build the backend registered as ``name``; keyword options go to its constructor
    (e.g. ``model=`` a local directory, ``device=``, ``dtype=``)."""
    cls = backend_class(name)
    try:
        return cls(**kw)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            import inspect
            params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise GeneratorError(f"generator {name!r}: {e}; valid options: {', '.join(params)}") from None
        raise


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class GeneratedClip:
    """A generated multi-shot clip.

    Attributes:
        frames: (F, H, W, 3) uint8, the assembled timeline (F = conditioning.num_frames),
            cuts and crossfades applied.
        shot_frames: per shot ``(frame_idx (T,) int64, images (T, H, W, 3) uint8)``: the
            raw generated frames of each shot before assembly (incl. crossfade margins).
        audio: (2, S) float32 in [-1, 1], one continuous track for the whole timeline.
        fps: frames per second; sample_rate: audio Hz.
        meta: provenance (backend, style, seed, noise mode, model config, timings).
    """
    frames: np.ndarray
    shot_frames: list
    audio: np.ndarray
    fps: int
    sample_rate: int
    meta: dict = field(default_factory=dict)
    schema_version: int = CLIP_SCHEMA

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def save(self, path: str | os.PathLike) -> Path:
        """Write MP4 (H.264 + AAC), WAV and raw frames (.npz) and a JSON sidecar.

        ``path`` ending in ``.mp4`` names the video (the others go beside it with the
        same stem); any other path is a directory receiving ``video.mp4``,
        ``audio.wav``, ``frames.npz`` and ``clip.json``. Returns the MP4 path.
        """
        from bridge.assemble import write_mp4
        from bridge.audio_io import write_wav
        p = Path(path)
        if p.suffix.lower() == ".mp4":
            p.parent.mkdir(parents=True, exist_ok=True)
            mp4, stem = p, p.with_suffix("")
            wav, npz, js = Path(f"{stem}.wav"), Path(f"{stem}.frames.npz"), Path(f"{stem}.json")
        else:
            p.mkdir(parents=True, exist_ok=True)
            mp4, wav, npz, js = p / "video.mp4", p / "audio.wav", p / "frames.npz", p / "clip.json"
        write_mp4(mp4, self.frames, self.fps, audio=self.audio, sample_rate=self.sample_rate)
        write_wav(wav, self.audio, self.sample_rate)
        arrays = {"frames": self.frames}
        for i, (idx, img) in enumerate(self.shot_frames):
            arrays[f"shot_{i:02d}_frames"] = np.asarray(idx, np.int64)
            arrays[f"shot_{i:02d}_images"] = img
        np.savez_compressed(npz, **arrays)
        js.write_text(json.dumps({"format": "physcut.clip", "schema_version": self.schema_version,
                                  "fps": self.fps, "sample_rate": self.sample_rate,
                                  "num_frames": self.num_frames, "num_shots": len(self.shot_frames),
                                  "video": mp4.name, "audio": wav.name, "frames": npz.name,
                                  "meta": self.meta}, indent=1, default=str))
        return mp4

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GeneratedClip":
        """Read back what ``save`` wrote (raw frames + WAV, not the lossy MP4)."""
        from bridge.audio_io import read_wav
        p = Path(path)
        js = p / "clip.json" if p.is_dir() else p.with_suffix(".json")
        if not js.exists():
            raise GeneratorError(f"{js}: file not found (not a saved GeneratedClip)")
        meta = json.loads(js.read_text())
        if meta.get("format") != "physcut.clip":
            raise GeneratorError(f"{js}: not a physcut clip file")
        with np.load(js.parent / meta["frames"], allow_pickle=False) as z:
            frames = z["frames"]
            shots = [(z[f"shot_{i:02d}_frames"], z[f"shot_{i:02d}_images"])
                     for i in range(meta["num_shots"])]
        audio, sr = read_wav(js.parent / meta["audio"])
        return cls(frames, shots, audio, meta["fps"], sr, meta.get("meta", {}))


# --------------------------------------------------------------------------- windows
def window_starts(num_frames: int, window: int | None, overlap: int) -> list[int]:
    """Start indices of windows of ``window`` frames covering ``num_frames`` with at
    least ``overlap`` frames shared between neighbours; the last window ends exactly
    at ``num_frames`` (so no window is shorter than the model's window)."""
    if window is None or num_frames <= window:
        return [0]
    if not 0 <= overlap < window:
        raise GeneratorError(f"window overlap must be in [0, {window}), got {overlap}")
    stride = window - overlap
    n = int(np.ceil((num_frames - window) / stride)) + 1
    # Spread the starts evenly so every overlap is >= the requested one.
    return [int(round(i * (num_frames - window) / (n - 1))) for i in range(n)]


def blend_weights(length: int, ramp_in: int, ramp_out: int) -> np.ndarray:
    """(length,) float64 weights: linear ramps over the first ``ramp_in`` and last
    ``ramp_out`` frames (strictly positive so a frame never gets zero total weight)."""
    w = np.ones(length)
    if ramp_in > 0:
        w[:ramp_in] = np.arange(1, ramp_in + 1) / (ramp_in + 1)
    if ramp_out > 0:
        w[length - ramp_out:] = np.minimum(w[length - ramp_out:],
                                           np.arange(ramp_out, 0, -1) / (ramp_out + 1))
    return w


def blend_windows(total: int, pieces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Overlap-add ``(start, array (n, ...))`` pieces along axis 0 with linear ramps over
    each overlap; identical values in an overlap reproduce exactly."""
    pieces = sorted(pieces, key=lambda p: p[0])
    shape = (total,) + pieces[0][1].shape[1:]
    acc = np.zeros(shape, np.float64)
    wsum = np.zeros(total, np.float64)
    for k, (start, arr) in enumerate(pieces):
        n = arr.shape[0]
        ov_in = (pieces[k - 1][0] + pieces[k - 1][1].shape[0] - start) if k > 0 else 0
        ov_out = (start + n - pieces[k + 1][0]) if k + 1 < len(pieces) else 0
        w = blend_weights(n, max(ov_in, 0), max(ov_out, 0))
        acc[start:start + n] += arr * w.reshape((-1,) + (1,) * (arr.ndim - 1))
        wsum[start:start + n] += w
    if np.any(wsum == 0):
        raise GeneratorError("windows do not cover the whole range")
    return acc / wsum.reshape((-1,) + (1,) * (len(shape) - 1))


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integers (seed, shot, window start), stable across runs."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


# --------------------------------------------------------------------------- pipeline
class ShotPipeline:
    """Base of every backend: ``pipe(conditioning, style=, seed=, ...) -> GeneratedClip``.

    Class attributes a backend sets (or sets per instance in ``__init__``):
        window: frames per ``generate_window`` call (None: a whole shot at once).
        overlap: frames shared by neighbouring windows (blended by linear ramps).
        resolution: (width, height) the model needs, or None for any.
        required_layers: layer names each shot must have.
        audio_source: "conditioning" (use the bridge's contact audio), "global"
            (``generate_audio_window`` over the global timeline) or "video_windows"
            (``generate_window`` returns audio for its frames; laid on the timeline by time).
        audio_window_s / audio_overlap_s: global audio window length and overlap (s).
        styles: names accepted by ``style`` (None: any string).
    """
    name = "base"
    window: int | None = None
    overlap: int = 0
    resolution: tuple[int, int] | None = None
    required_layers: tuple[str, ...] = ()
    audio_source = "conditioning"
    audio_window_s: float = 4.0
    audio_overlap_s: float = 0.5
    styles: tuple[str, ...] | None = None
    default_style = "preview"

    # ---- backend hooks
    def generate_window(self, shot, frame_slice: slice, style: str, prompt: str | None, seed: int,
                        init_noise: np.ndarray | None):
        """Frames of ``shot`` at ``frame_slice`` (local indices into the shot's arrays).

        Returns (t, H, W, 3) uint8 or float in [0, 255] (or any (t, ...) array that
        ``finish_shot`` turns into frames), or, when ``audio_source ==
        "video_windows"``, a tuple (frames, audio (2, s) float32 covering these frames'
        time span at the conditioning's sample rate). ``init_noise`` is (t, 4, h, w)
        float32 (the bridge's anchored noise or i.i.d. N(0, 1)) or None.
        """
        raise NotImplementedError

    def finish_shot(self, shot, blended: np.ndarray) -> np.ndarray:
        """The blended windows of one shot -> (T, H, W, 3) frames in [0, 255]. Identity
        by default; a latent model may return latents from ``generate_window`` (blended
        in latent space) and decode each frame once here."""
        return blended

    def generate_audio_window(self, conditioning, start: int, stop: int, style: str,
                              prompt: str | None, seed: int, video: np.ndarray | None = None) -> np.ndarray:
        """Audio for global units [start, stop): an array (..., stop - start) with the
        window on the last axis. Units are samples by default ((2, n) float32 audio);
        a backend working in another audio representation (e.g. mel frames) overrides
        ``audio_layout`` and ``decode_audio``. ``video`` is the assembled timeline
        (F, H, W, 3) uint8 generated so far, for models that condition audio on it."""
        raise NotImplementedError

    def audio_layout(self, conditioning) -> tuple[int, int, int]:
        """(total units, window units, overlap units) of the global audio windows."""
        sr = conditioning.sample_rate
        return (conditioning.audio.shape[1], int(round(self.audio_window_s * sr)),
                int(round(self.audio_overlap_s * sr)))

    def decode_audio(self, conditioning, blended: np.ndarray) -> np.ndarray:
        """Blended windows (..., total units) -> (2, S) float32 waveform."""
        return blended

    def prepare(self, conditioning, style: str, noise: str, seed: int) -> None:
        """Called once per call after validation, before any window (cache per-call
        state such as the fps or encoded audio)."""

    def describe(self) -> dict:
        """Provenance recorded in the clip's meta (model config, device, ...)."""
        return {}

    def render_options(self) -> dict:
        """Keyword arguments for ``bridge.render`` / ``render_to_dir`` that make a
        conditioning bundle fit this model (e.g. ``resolution``, ``latent_factor``)."""
        return {"resolution": tuple(self.resolution)} if self.resolution is not None else {}

    # ---- validation
    def check_conditioning(self, conditioning, style: str, noise: str) -> None:
        """Raise ``ConditioningMismatchError`` naming the shot/layer when the
        conditioning does not fit this model."""
        c = conditioning
        if not c.shots:
            raise ConditioningMismatchError("conditioning has no shots")
        if self.styles is not None and style not in self.styles:
            raise GeneratorError(f"generator {self.name!r}: unknown style {style!r}; "
                                 f"valid: {', '.join(self.styles)}")
        if noise not in ("anchored", "iid"):
            raise GeneratorError(f"noise must be 'anchored' or 'iid', got {noise!r}")
        for s in c.shots:
            T = s.num_frames
            if T == 0:
                raise ConditioningMismatchError(f"shot {s.shot}: no frames")
            if s.frames.min() < 0 or s.frames.max() >= c.num_frames:
                raise ConditioningMismatchError(
                    f"shot {s.shot}: frame indices {int(s.frames.min())}..{int(s.frames.max())} "
                    f"outside the timeline of {c.num_frames} frames")
            if np.any(np.diff(s.frames) != 1):
                raise ConditioningMismatchError(f"shot {s.shot}: frame indices are not contiguous")
            for name in self.required_layers:
                if name not in s.layers:
                    raise ConditioningMismatchError(
                        f"shot {s.shot}: layer {name!r} missing (has {', '.join(sorted(s.layers))}); "
                        f"generator {self.name!r} needs {', '.join(self.required_layers)}")
            for name, arr in s.layers.items():
                if arr.shape[0] != T:
                    raise ConditioningMismatchError(
                        f"shot {s.shot}: layer {name!r} has {arr.shape[0]} frames, the shot has {T}")
            if self.resolution is not None:
                W, H = s.resolution
                if (W, H) != tuple(self.resolution):
                    raise ConditioningMismatchError(
                        f"shot {s.shot}: conditioning resolution {W}x{H} does not match the model's "
                        f"{self.resolution[0]}x{self.resolution[1]} (render with --resolution "
                        f"{self.resolution[0]}x{self.resolution[1]})")
            if noise == "anchored" and "noise" not in s.layers:
                raise ConditioningMismatchError(
                    f"shot {s.shot}: layer 'noise' missing for noise='anchored' "
                    "(render it, or generate with noise='iid')")
        expect = int(round(c.num_frames / c.fps * c.sample_rate))
        if c.audio.ndim != 2 or abs(c.audio.shape[1] - expect) > c.sample_rate / c.fps:
            raise ConditioningMismatchError(
                f"conditioning audio has shape {c.audio.shape}, expected (2, {expect}) for "
                f"{c.num_frames} frames at {c.fps} fps and {c.sample_rate} Hz")

    # ---- noise
    def initial_noise(self, shot, frame_slice: slice, noise: str, seed: int) -> np.ndarray | None:
        """(t, 4, h, w) float32: the bridge's anchored noise for these frames, or
        i.i.d. N(0, 1) of the same shape from ``seed`` (None when neither is known)."""
        if "noise" in shot.layers:
            anchored = np.asarray(shot.layers["noise"][frame_slice], np.float32)
            if noise == "anchored":
                return anchored
            rng = np.random.default_rng(derive_seed(seed, shot.shot, frame_slice.start, 1))
            return rng.standard_normal(anchored.shape, dtype=np.float32)
        return None

    # ---- the shot loop
    def __call__(self, conditioning, style: str | None = None, seed: int = 0, prompt: str | None = None,
                 noise: str = "anchored", progress: bool = True) -> GeneratedClip:
        import time
        from tqdm.auto import tqdm
        from bridge.assemble import assemble_shots

        style = self.default_style if style is None else style
        c = conditioning
        self.check_conditioning(c, style, noise)
        t0 = time.perf_counter()
        self.prepare(c, style, noise, seed)
        plans = [(s, window_starts(s.num_frames, self.window, self.overlap)) for s in c.shots]
        total = sum(len(st) for _, st in plans)
        shot_frames, win_audio = [], []
        bar = tqdm(total=total, desc=f"{self.name}: video windows", unit="win", disable=not progress)
        for s, starts in plans:
            n = s.num_frames if self.window is None else min(self.window, s.num_frames)
            pieces = []
            for st in starts:
                sl = slice(st, st + n)
                wseed = derive_seed(seed, s.shot, st)
                out = self.generate_window(s, sl, style, prompt, wseed,
                                           self.initial_noise(s, sl, noise, seed))
                if isinstance(out, tuple):
                    out, aud = out
                    if aud is not None:
                        win_audio.append((int(s.frames[st]), n, np.asarray(aud, np.float32)))
                out = np.asarray(out)
                if out.ndim < 2 or out.shape[0] != n:
                    raise GeneratorError(f"backend {self.name!r} returned an array of shape {out.shape} "
                                         f"for a window of {n} frames (expected {n} along axis 0)")
                pieces.append((st, out.astype(np.float32)))
                bar.update(1)
            blended = pieces[0][1] if len(pieces) == 1 else blend_windows(s.num_frames, pieces)
            frames = _to_uint8(np.asarray(self.finish_shot(s, blended)))
            if frames.shape[0] != s.num_frames or frames.ndim != 4 or frames.shape[-1] != 3:
                raise GeneratorError(f"backend {self.name!r} produced frames of shape {frames.shape} for "
                                     f"shot {s.shot} (expected ({s.num_frames}, H, W, 3))")
            shot_frames.append((np.asarray(s.frames, np.int64), frames))
        bar.close()
        t_video = time.perf_counter() - t0
        timeline = assemble_shots(shot_frames, [s.transition for s in c.shots], c.num_frames)
        audio = self._timeline_audio(c, style, prompt, seed, win_audio, progress, timeline)
        meta = {"backend": self.name, "style": style, "seed": seed, "noise": noise, "prompt": prompt,
                "window": self.window, "overlap": self.overlap, "audio_source": self.audio_source,
                "scene_hash": c.scene_hash, "seconds_video": t_video,
                "seconds_total": time.perf_counter() - t0, **self.describe()}
        return GeneratedClip(timeline, shot_frames, audio, c.fps, c.sample_rate, meta)

    # ---- audio over the global timeline
    def _timeline_audio(self, c, style, prompt, seed, win_audio, progress, timeline) -> np.ndarray:
        S = c.audio.shape[1]
        if self.audio_source == "conditioning":
            return np.asarray(c.audio, np.float32).copy()
        if self.audio_source == "video_windows":
            if not win_audio:
                raise GeneratorError(f"backend {self.name!r}: audio_source 'video_windows' but no window returned audio")
            spf = c.sample_rate / c.fps
            pieces = []
            for f0, n, aud in win_audio:
                a0 = int(round(f0 * spf))
                a = aud[:, :max(0, min(aud.shape[1], S - a0))]
                if a.shape[1]:
                    pieces.append((a0, a.T))
            pieces = _cover(pieces, S, 2)
            return np.clip(blend_windows(S, pieces).T, -1, 1).astype(np.float32)
        if self.audio_source != "global":
            raise GeneratorError(f"backend {self.name!r}: unknown audio_source {self.audio_source!r}")
        from tqdm.auto import tqdm
        total, win, ov = self.audio_layout(c)
        starts = window_starts(total, win, ov)
        n = min(win, total)
        pieces = []
        for st in tqdm(starts, desc=f"{self.name}: audio windows", unit="win", disable=not progress):
            a = np.asarray(self.generate_audio_window(c, st, st + n, style, prompt,
                                                      derive_seed(seed, 1_000_003, st), video=timeline))
            if a.shape[-1] != n:
                raise GeneratorError(f"backend {self.name!r} returned an audio window of shape {a.shape}, "
                                     f"expected the last axis to be {n}")
            pieces.append((st, np.moveaxis(a, -1, 0)))
        audio = np.asarray(self.decode_audio(c, np.moveaxis(blend_windows(total, pieces), 0, -1)), np.float32)
        if audio.shape != c.audio.shape:
            raise GeneratorError(f"backend {self.name!r} produced audio of shape {audio.shape}, "
                                 f"expected {c.audio.shape}")
        return np.clip(audio, -1, 1)


def _cover(pieces: list, total: int, channels: int) -> list:
    """Fill samples no piece covers with silence, so blending is defined everywhere."""
    covered = np.zeros(total, bool)
    for st, a in pieces:
        covered[st:st + a.shape[0]] = True
    gaps = np.flatnonzero(~covered)
    if gaps.size:
        splits = np.split(gaps, np.flatnonzero(np.diff(gaps) > 1) + 1)
        pieces = pieces + [(int(g[0]), np.zeros((g.size, channels), np.float32)) for g in splits]
    return pieces
