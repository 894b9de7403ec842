"""`Trajectory`: the whole simulated timeline at frame rate, engine-independent.

It is the one contract between the simulator and everything after it (bridge,
generator, benchmarks). Saved as ``NAME.npz`` (arrays) plus ``NAME.json`` (names,
metadata and the full scene description, so the world can be rebuilt and rendered
without the original Python code).

Conventions: world frame z-up, metres, seconds; quaternions (w, x, y, z);
F = frames, B = bodies, C = characters, J = joints per character (the same body
model for every character), K = contact events, N = cameras.

Body order: every static (``scene.statics`` order), then every prop, then each
character's links as ``"<character>/<link>"`` in the character model's link order.
Segmentation ids downstream are ``body index + 1`` (0 = sky / nothing).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRAJECTORY_SCHEMA = 1

#: COCO-17 keypoint order used for ``keypoints``.
COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
          "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")

BODY_KINDS = ("static", "prop", "character")


class TrajectoryError(ValueError):
    """A trajectory file or array set that does not meet the schema."""


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One simulated timeline, sampled at the frame rate (t_i = i / fps).

    Bodies:
        body_names: (B,) str. See module docstring for the order.
        body_kind: (B,) str, one of ``BODY_KINDS``.
        body_material: (B,) str, material name (resolves through the scene).
        body_character: (B,) int, index into ``character_names`` or -1.
        body_pos: (F, B, 3) float64, m, world position of each body frame origin
            (for props, the centre of mass).
        body_quat: (F, B, 4) float64, world orientation, (w, x, y, z), unit norm.
        body_linvel: (F, B, 3) float64, m/s, world linear velocity of the body origin.
        body_angvel: (F, B, 3) float64, rad/s, world angular velocity.
        body_mass: (B,) float64, kg (0 for statics).

    Characters:
        character_names: (C,) str.
        joint_names: (J,) str, hinge joints of the humanoid model, shared by all characters.
        joint_angles: (F, C, J) float64, rad.
        keypoints: (F, C, 17, 3) float64, m, COCO-17 order (``COCO17``), world frame.
        com_pos: (F, C, 3) float64, m, whole-body centre of mass, world.
        com_vel: (F, C, 3) float64, m/s, centre-of-mass velocity, world.
        com_acc: (F, C, 3) float64, m/s^2, centre-of-mass acceleration averaged over
            the physics steps of the frame interval ending at frame i (zeros at i=0).
        support: (F, C) bool, true when a foot (or any body of the character) touched
            a support during the physics steps ending at frame i. False means the
            character was airborne for the whole frame interval.
        assist_force: (F, C, 3) float64, N, mean external assist force applied to the
            character over the frame interval (zero when airborne, by construction).

    Contacts (K events, time ordered; one per body pair per frame, plus one extra
    event for every impact onset above ``scene.contact_threshold`` so no impact is
    merged away):
        contact_time: (K,) float64, s, time of the physics step of the event.
        contact_frame: (K,) int64, the frame interval containing it (frame i covers
            (t_{i-1}, t_i]).
        contact_body: (K, 2) int64, body indices (a, b); the normal points from a to b.
        contact_pos: (K, 3) float64, m, world contact point (impulse-weighted mean).
        contact_normal: (K, 3) float64, unit world normal, a -> b.
        contact_impulse: (K, 2) float64, N s: [normal, tangential magnitude].
        contact_speed: (K,) float64, m/s, relative normal approach speed at onset
            (>= 0 approaching).
        contact_onset: (K,) bool, true when the pair was not in contact the step before.
            Precisely (`sim.recorder`): an onset is a real impact -- the pair was
            apart for at least 2 physics steps before touching and the relative
            normal approach speed at the first contact step is at least 0.05 m/s
            (``sim.recorder.ONSET_MIN_SPEED``), or 0.2 m/s
            (``ONSET_RATTLE_SPEED``) if the pair was apart for less than 10 ms
            (``ONSET_MIN_GAP``). A resting, rolling or leaning body that loses
            touch for a few steps makes no onset.

    Cameras (N cameras of the scene):
        camera_names: (N,) str.
        camera_K: (N, 3, 3) float64, pinhole intrinsics in pixels at the camera's
            native resolution ``camera_size``; OpenCV convention (x right, y down).
        camera_size: (N, 2) int64, (width, height) in pixels.
        camera_w2c: (F, N, 4, 4) float64, world-to-camera, OpenCV camera frame
            (x right, y down, z forward): x_cam = R x_world + t.
        active_shot: (F,) int64, index into ``scene["shots"]`` of the shot on screen.

    Metadata:
        times: (F,) float64, s.
        fps, physics_hz: ints.
        engine, engine_version, seed, scene_hash, schema_version.
        scene: the scene description as a plain dict (``Scene.to_dict()``).
        status: "ok" or a message naming the first bad step of a divergent rollout
            (the arrays then stop at the last good frame).
        extra: free-form engine notes (JSON-serialisable).
    """

    times: np.ndarray
    body_names: tuple
    body_kind: tuple
    body_material: tuple
    body_character: np.ndarray
    body_pos: np.ndarray
    body_quat: np.ndarray
    body_linvel: np.ndarray
    body_angvel: np.ndarray
    body_mass: np.ndarray
    character_names: tuple
    joint_names: tuple
    joint_angles: np.ndarray
    keypoints: np.ndarray
    com_pos: np.ndarray
    com_vel: np.ndarray
    com_acc: np.ndarray
    support: np.ndarray
    assist_force: np.ndarray
    contact_time: np.ndarray
    contact_frame: np.ndarray
    contact_body: np.ndarray
    contact_pos: np.ndarray
    contact_normal: np.ndarray
    contact_impulse: np.ndarray
    contact_speed: np.ndarray
    contact_onset: np.ndarray
    camera_names: tuple
    camera_K: np.ndarray
    camera_size: np.ndarray
    camera_w2c: np.ndarray
    active_shot: np.ndarray
    fps: int
    physics_hz: int
    engine: str
    engine_version: str
    seed: int
    scene_hash: str
    scene: dict
    status: str = "ok"
    schema_version: int = TRAJECTORY_SCHEMA
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ queries
    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def body_index(self, name: str) -> int:
        try:
            return self.body_names.index(name)
        except ValueError:
            raise KeyError(f"unknown body '{name}'; bodies: {', '.join(self.body_names)}") from None

    def character_index(self, name: str) -> int:
        try:
            return self.character_names.index(name)
        except ValueError:
            raise KeyError(f"unknown character '{name}'; characters: {', '.join(self.character_names)}") from None

    def scene_obj(self):
        """The `scenes.Scene` this trajectory was simulated from."""
        from scenes import Scene
        return Scene.from_dict(self.scene)

    def shots(self) -> list[dict]:
        return list(self.scene.get("shots", []))

    def shot_frames(self, shot: int) -> np.ndarray:
        """Frame indices whose active shot is ``shot`` (ignoring crossfade overlap)."""
        return np.nonzero(self.active_shot == shot)[0]

    def cut_frames(self) -> list[int]:
        """First frame index of every shot after the first."""
        return [int(i) for i in np.nonzero(np.diff(self.active_shot))[0] + 1]

    def replace(self, **changes) -> "Trajectory":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Trajectory":
        """Check shapes and finiteness; raise TrajectoryError naming the field."""
        F, B, C, J = self.num_frames, len(self.body_names), len(self.character_names), len(self.joint_names)
        K, N = self.contact_time.shape[0], len(self.camera_names)
        expect = {
            "times": (F,), "body_character": (B,), "body_pos": (F, B, 3), "body_quat": (F, B, 4),
            "body_linvel": (F, B, 3), "body_angvel": (F, B, 3), "body_mass": (B,),
            "joint_angles": (F, C, J), "keypoints": (F, C, 17, 3), "com_pos": (F, C, 3),
            "com_vel": (F, C, 3), "com_acc": (F, C, 3), "support": (F, C), "assist_force": (F, C, 3),
            "contact_frame": (K,), "contact_body": (K, 2), "contact_pos": (K, 3),
            "contact_normal": (K, 3), "contact_impulse": (K, 2), "contact_speed": (K,),
            "contact_onset": (K,), "camera_K": (N, 3, 3), "camera_size": (N, 2),
            "camera_w2c": (F, N, 4, 4), "active_shot": (F,),
        }
        for name, shape in expect.items():
            arr = getattr(self, name)
            if tuple(arr.shape) != shape:
                raise TrajectoryError(f"field '{name}': shape {tuple(arr.shape)}, expected {shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                bad = np.argwhere(~np.isfinite(arr))[0]
                raise TrajectoryError(f"field '{name}': non-finite value at index {tuple(bad)}")
        for name in ("body_kind", "body_material"):
            if len(getattr(self, name)) != B:
                raise TrajectoryError(f"field '{name}': {len(getattr(self, name))} entries, expected {B}")
        return self

    # ------------------------------------------------------------------ I/O
    _META = ("fps", "physics_hz", "engine", "engine_version", "seed", "scene_hash", "status",
             "schema_version", "extra", "scene", "body_names", "body_kind", "body_material",
             "character_names", "joint_names", "camera_names")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (.npz) and its ``.json`` sidecar; returns the .npz path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in self._META}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        meta = {k: _jsonable(getattr(self, k)) for k in self._META}
        meta["format"] = "physcut.trajectory"
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trajectory":
        """Read a trajectory written by `save`; raise TrajectoryError naming the file."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        side = path.with_suffix(".json")
        for p in (path, side):
            if not p.exists():
                raise TrajectoryError(f"{p}: file not found (a trajectory is a .npz plus a .json sidecar)")
        try:
            meta = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TrajectoryError(f"{side}: not valid JSON ({e})") from None
        if meta.get("format") != "physcut.trajectory":
            raise TrajectoryError(f"{side}: not a physcut trajectory sidecar (format={meta.get('format')!r})")
        version = meta.get("schema_version")
        if version != TRAJECTORY_SCHEMA:
            raise TrajectoryError(f"{side}: field 'schema_version': unsupported trajectory schema version "
                                  f"{version!r} (this physcut reads {TRAJECTORY_SCHEMA})")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile/ValueError on corrupt files
            raise TrajectoryError(f"{path}: cannot read arrays ({e})") from None
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in cls._META:
                if f.name not in meta:
                    raise TrajectoryError(f"{side}: missing field '{f.name}'")
                v = meta[f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) and f.name.endswith(("names", "kind", "material")) else v
            else:
                if f.name not in arrays:
                    raise TrajectoryError(f"{path}: missing array '{f.name}'")
                kwargs[f.name] = arrays[f.name]
        traj = cls(**kwargs)
        try:
            return traj.validate()
        except TrajectoryError as e:
            raise TrajectoryError(f"{path}: {e}") from None


def _jsonable(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, np.generic):
        return v.item()
    return v
