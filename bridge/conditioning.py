"""The conditioning bundle: everything a controllable video+audio model needs,
rendered from one trajectory, shot by shot, plus one continuous audio track.

Saved as a directory: ``conditioning.json`` (metadata, shot list, events) and one
``shot_XX.npz`` per shot holding that shot's layer arrays and cameras; the audio as
``audio.wav`` (16-bit PCM stereo). The bridge writes videos and previews beside them.

Layer arrays of a shot (T = frames of the shot, H x W = render resolution):
    depth:            (T, H, W) float32, metres along the camera z axis; 0 where no
                      surface is hit (sky).
    depth_vis:        (T, H, W, 3) uint8, normalised inverse depth, near = bright
                      (what depth ControlNets expect); ``depth_vis16`` (T, H, W) uint16.
    segmentation:     (T, H, W) int32, body index + 1 (0 = sky), stable over shots.
    segmentation_rgb: (T, H, W, 3) uint8, fixed palette: one colour per body.
    albedo:           (T, H, W, 3) uint8, base colour of the visible surface (the
                      scene's unlit geom colour; black on sky).
    normals:          (T, H, W, 3) float32, unit surface normal in the OpenCV camera
                      frame (x right, y down, z forward); 0 on sky.
    pose:             (T, H, W, 3) uint8, COCO-17 skeletons in OpenPose colours.
    keypoints_2d:     (T, C, 17, 3) float32, (u, v, visible) in pixels.
    flow:             (T, H, W, 2) float32, forward optical flow in pixels (u, v) from
                      frame t to t+1 of the *timeline* (the last frame repeats t-1's).
    rgb:              (T, H, W, 3) uint8, lit preview render.
    noise:            (T, 4, h, w) float32, 3D-anchored Gaussian noise at latent
                      resolution (h, w).
    events:           (T, H, W) float32, contact-event map (impulse splats, N s).
Cameras of a shot: ``K`` (T, 3, 3) at render resolution, ``w2c`` (T, 4, 4) OpenCV
world-to-camera.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CONDITIONING_SCHEMA = 1


class ConditioningError(ValueError):
    """A conditioning directory or bundle that does not meet the schema."""


@dataclass(frozen=True, eq=False)
class ShotConditioning:
    """One shot's maps. ``frames`` (T,) int64 are global timeline frame indices."""
    shot: int
    camera: str
    frames: np.ndarray
    K: np.ndarray
    w2c: np.ndarray
    layers: dict
    transition: dict = field(default_factory=lambda: {"type": "cut"})
    prompt: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        """(width, height) of the image layers."""
        for k, v in self.layers.items():
            if k not in ("keypoints_2d", "noise") and v.ndim >= 3:
                return int(v.shape[2]), int(v.shape[1])
        raise ConditioningError(f"shot {self.shot}: no image layer")


@dataclass(frozen=True, eq=False)
class Conditioning:
    """All shots of one trajectory plus the continuous timeline audio.

    Attributes:
        shots: per-shot conditioning in timeline order.
        fps: frame rate; num_frames: frames on the whole timeline.
        audio: (2, S) float32 in [-1, 1], stereo contact audio for the whole timeline
            (S = num_frames / fps * sample_rate).
        sample_rate: Hz.
        events: contact audio events: dicts with time, bodies, impulse, material, position.
        body_names: (B,) names; segmentation id = index + 1.
        palette: (B + 1, 3) uint8 colours of ``segmentation_rgb`` (row 0 = sky).
        scene_hash / meta: provenance (scene hash, engine, seed, layers, resolution).
    """
    shots: list
    fps: int
    num_frames: int
    audio: np.ndarray
    sample_rate: int
    events: list
    body_names: tuple
    palette: np.ndarray
    scene_hash: str = ""
    meta: dict = field(default_factory=dict)
    schema_version: int = CONDITIONING_SCHEMA

    def replace(self, **changes) -> "Conditioning":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ I/O
    def save(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        shots_meta = []
        for s in self.shots:
            name = f"shot_{s.shot:02d}.npz"
            np.savez_compressed(d / name, frames=s.frames, K=s.K, w2c=s.w2c,
                                **{f"layer__{k}": v for k, v in s.layers.items()})
            shots_meta.append({"shot": s.shot, "camera": s.camera, "file": name,
                               "transition": s.transition, "prompt": s.prompt})
        from .audio_io import write_wav
        write_wav(d / "audio.wav", self.audio, self.sample_rate)
        meta = {"format": "physcut.conditioning", "schema_version": self.schema_version,
                "fps": self.fps, "num_frames": self.num_frames, "sample_rate": self.sample_rate,
                "events": self.events, "body_names": list(self.body_names),
                "palette": self.palette.tolist(), "scene_hash": self.scene_hash,
                "meta": self.meta, "shots": shots_meta}
        (d / "conditioning.json").write_text(json.dumps(meta, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Conditioning":
        d = Path(directory)
        mf = d / "conditioning.json"
        if not mf.exists():
            raise ConditioningError(f"{mf}: file not found (is {d} a `physcut render` output directory?)")
        try:
            meta = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise ConditioningError(f"{mf}: not valid JSON ({e})") from None
        if meta.get("format") != "physcut.conditioning":
            raise ConditioningError(f"{mf}: not a physcut conditioning file")
        if meta.get("schema_version") != CONDITIONING_SCHEMA:
            raise ConditioningError(f"{mf}: field 'schema_version': unsupported version "
                                    f"{meta.get('schema_version')!r} (expected {CONDITIONING_SCHEMA})")
        shots = []
        for sm in meta["shots"]:
            f = d / sm["file"]
            if not f.exists():
                raise ConditioningError(f"{f}: file not found (listed in {mf})")
            with np.load(f, allow_pickle=False) as z:
                layers = {k[len("layer__"):]: z[k] for k in z.files if k.startswith("layer__")}
                shots.append(ShotConditioning(sm["shot"], sm["camera"], z["frames"], z["K"], z["w2c"],
                                              layers, sm.get("transition", {"type": "cut"}),
                                              sm.get("prompt", "")))
        from .audio_io import read_wav
        audio, sr = read_wav(d / "audio.wav")
        return cls(shots, meta["fps"], meta["num_frames"], audio, sr, meta["events"],
                   tuple(meta["body_names"]), np.asarray(meta["palette"], np.uint8),
                   meta.get("scene_hash", ""), meta.get("meta", {}))
