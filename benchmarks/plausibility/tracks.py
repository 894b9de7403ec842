"""`Tracks`: the engine-free track format every plausibility metric reads.

Tracks from any source (a physcut `Trajectory`, another simulator, a tracker run
on another generator's video) are converted into this one format, so the metrics
never see an engine. Saved as ``NAME.npz`` (arrays) plus ``NAME.json`` (format,
schema version, ids and scalars), or as one ``NAME.json`` holding everything
(arrays as nested lists, ``null`` for missing values).

Conventions: world frame z-up, metres, seconds, quaternions (w, x, y, z), OpenCV
cameras (x right, y down, z forward). F = frames, O = objects, K = contact events.
Frame i is at t_i = i / fps; contact event k lies in the frame interval
(t_{i-1}, t_i] with i = ``contact_frame[k]``.

Required:
    fps: frames per second (> 0).
    ids: (O,) str, object names, unique.
    kind: (O,) str, one of ``KINDS``: "static" (scenery, never moves), "prop"
        (free rigid body), "character" (actuated link of a character, not
        ballistic), "com" (a character's whole-body centre of mass: ballistic
        whenever it has no support contact).
    visible: (F, O) bool, the object exists / is seen in frame i. Position
        entries of invisible objects are ignored (NaN allowed there).
    cuts: (S-1,) int, first frame of every shot after the first (shot list).
    At least one of
    positions: (F, O, 3) float64, m, world position (centre of mass for props).
    pixels: (F, O, 2) float64, px, image position in the frame's camera.
Optional (``None`` when unknown):
    velocities: (F, O, 3) m/s, world linear velocity.
    orientations: (F, O, 4) unit quaternions.
    shape: (O,) str in ``SHAPES``; sizes: (O, 3) m, shape parameters
        (box: half extents; sphere: (r, r, r); capsule/cylinder: (r, r, half length
        + r for capsules / half length for cylinders); point: zeros).
    masses: (O,) kg (0 for statics). friction / restitution: (O,) material values.
    pixel_size: (F, O) px, apparent size (square root of the image area).
    contact_time: (K,) s; contact_ids: (K, 2) int object indices (-1 = unknown
        or the world); contact_impulse: (K, 2) N s [normal, tangential];
        contact_normal: (K, 3) unit, from the first object to the second;
        contact_onset: (K,) bool (a new contact, i.e. an impact).
    camera_K: (F, 3, 3) px; camera_w2c: (F, 4, 4); image_size: (2,) (width, height).
    audio: (C, S) float32 in [-1, 1]; sample_rate: Hz.
    gravity: (3,) m/s^2 (default (0, 0, -9.81)).
    substeps: physics steps per frame of the semi-implicit integrator that
        produced the tracks (0 = unknown: continuous-time propagation is used).
    contact_tolerance: m, penetration the producing engine allows at rest
        (``meta['contact_omega']``, rad/s, adds the speed-dependent sink v / omega
        of a soft contact spring).
    source: free text (where the tracks came from); meta: JSON-serialisable dict.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRACKS_FORMAT = "physcut.tracks"
TRACKS_SCHEMA = 1
KINDS = ("static", "prop", "character", "com")
SHAPES = ("box", "sphere", "capsule", "cylinder", "mesh", "point")
GRAVITY = (0.0, 0.0, -9.81)


class TracksError(ValueError):
    """Track data or a track file that does not meet the schema (names field/frame)."""


# name -> (shape template, dtype kind); "F", "O", "K", "C", "S" are symbolic sizes.
_ARRAYS: dict[str, tuple[tuple, str]] = {
    "visible": (("F", "O"), "b"),
    "positions": (("F", "O", 3), "f"),
    "pixels": (("F", "O", 2), "f"),
    "velocities": (("F", "O", 3), "f"),
    "orientations": (("F", "O", 4), "f"),
    "sizes": (("O", 3), "f"),
    "masses": (("O",), "f"),
    "friction": (("O",), "f"),
    "restitution": (("O",), "f"),
    "pixel_size": (("F", "O"), "f"),
    "contact_time": (("K",), "f"),
    "contact_ids": (("K", 2), "i"),
    "contact_impulse": (("K", 2), "f"),
    "contact_normal": (("K", 3), "f"),
    "contact_onset": (("K",), "b"),
    "camera_K": (("F", 3, 3), "f"),
    "camera_w2c": (("F", 4, 4), "f"),
    "image_size": ((2,), "i"),
    "cuts": (("S",), "i"),
    "audio": (("C", "A"), "f"),
    "gravity": ((3,), "f"),
}
# Arrays where NaN is allowed only on invisible (frame, object) entries.
_MASKED = ("positions", "pixels", "velocities", "orientations", "pixel_size")
# Arrays where NaN means "unknown" (e.g. the impulse of a support contact).
_NAN_OK = ("contact_impulse",)


@dataclass(frozen=True, eq=False)
class Tracks:
    """Per-frame object tracks plus contacts, cameras, shot list and audio.

    See the module docstring for every field's shape, units and frame.
    """

    fps: float
    ids: tuple
    kind: tuple
    visible: np.ndarray
    cuts: np.ndarray
    positions: np.ndarray | None = None
    pixels: np.ndarray | None = None
    velocities: np.ndarray | None = None
    orientations: np.ndarray | None = None
    shape: tuple | None = None
    sizes: np.ndarray | None = None
    masses: np.ndarray | None = None
    friction: np.ndarray | None = None
    restitution: np.ndarray | None = None
    pixel_size: np.ndarray | None = None
    contact_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    contact_ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    contact_impulse: np.ndarray | None = None
    contact_normal: np.ndarray | None = None
    contact_onset: np.ndarray | None = None
    camera_K: np.ndarray | None = None
    camera_w2c: np.ndarray | None = None
    image_size: np.ndarray | None = None
    audio: np.ndarray | None = None
    sample_rate: int = 0
    gravity: np.ndarray = field(default_factory=lambda: np.asarray(GRAVITY))
    substeps: int = 0
    contact_tolerance: float = 0.005
    source: str = ""
    meta: dict = field(default_factory=dict)
    version: int = TRACKS_SCHEMA

    # ------------------------------------------------------------------ queries
    @property
    def num_frames(self) -> int:
        return int(self.visible.shape[0])

    @property
    def num_objects(self) -> int:
        return len(self.ids)

    @property
    def dt(self) -> float:
        return 1.0 / self.fps

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.num_frames) / self.fps

    @property
    def contact_frame(self) -> np.ndarray:
        """(K,) frame index i of the interval (t_{i-1}, t_i] holding each contact."""
        return np.clip(np.ceil(np.asarray(self.contact_time) * self.fps - 1e-6), 0,
                       self.num_frames - 1).astype(np.int64)

    def shot_index(self) -> np.ndarray:
        """(F,) shot number of every frame."""
        s = np.zeros(self.num_frames, np.int64)
        for c in np.asarray(self.cuts, np.int64):
            s[c:] += 1
        return s

    def kind_mask(self, *kinds: str) -> np.ndarray:
        return np.isin(np.asarray(self.kind), kinds)

    def contact_mask(self, pad: int = 0) -> np.ndarray:
        """(F, O) bool: object o has a contact in interval (t_{i-1}, t_i], dilated
        by ``pad`` frames on each side. Contacts with id -1 touch nothing here."""
        F, O = self.num_frames, self.num_objects
        m = np.zeros((F, O), bool)
        if len(self.contact_time):
            fr = self.contact_frame
            for col in (0, 1):
                ids = np.asarray(self.contact_ids)[:, col]
                ok = ids >= 0
                m[fr[ok], ids[ok]] = True
        if pad:
            from scipy.ndimage import binary_dilation
            m = binary_dilation(m, structure=np.ones((2 * pad + 1, 1), bool))
        return m

    def replace(self, **changes) -> "Tracks":
        return dataclasses.replace(self, **changes)

    def crop(self, start: int, stop: int) -> "Tracks":
        """Frames [start, stop) as new tracks starting at t = 0 (contacts, cuts and
        audio shifted with them)."""
        F = self.num_frames
        start, stop = max(0, int(start)), min(F, int(stop))
        if stop - start < 2:
            raise TracksError(f"crop [{start}, {stop}) keeps fewer than 2 of {F} frames")
        sl = slice(start, stop)
        t0 = start / self.fps
        ch = {k: getattr(self, k)[sl] for k in ("visible", "positions", "pixels", "velocities",
                                                 "orientations", "pixel_size", "camera_K", "camera_w2c")
              if getattr(self, k) is not None}
        ct = np.asarray(self.contact_time)
        keep = (ct > t0 - 1e-9) & (ct <= (stop - 1) / self.fps + 1e-9)
        for k in ("contact_ids", "contact_impulse", "contact_normal", "contact_onset"):
            if getattr(self, k) is not None:
                ch[k] = np.asarray(getattr(self, k))[keep]
        ch["contact_time"] = ct[keep] - t0
        cuts = np.asarray(self.cuts, np.int64)
        ch["cuts"] = cuts[(cuts > start) & (cuts < stop)] - start
        if self.audio is not None:
            a, b = int(round(t0 * self.sample_rate)), int(round(stop / self.fps * self.sample_rate))
            ch["audio"] = self.audio[:, a:b]
        meta = dict(self.meta or {})
        if meta.get("audio_events"):
            meta["audio_events"] = [dict(e, time=e["time"] - t0) for e in meta["audio_events"]
                                    if t0 - 1e-9 < e["time"] <= (stop - 1) / self.fps]
        ch["meta"] = meta
        return dataclasses.replace(self, **ch)

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Tracks":
        """Check shapes, kinds and finiteness; raise `TracksError` naming the field
        (and the frame / object for bad values)."""
        if not (isinstance(self.fps, (int, float, np.number)) and math.isfinite(self.fps) and self.fps > 0):
            raise TracksError(f"field 'fps': must be a positive number, got {self.fps!r}")
        if self.version != TRACKS_SCHEMA:
            raise TracksError(f"field 'version': unsupported tracks schema version {self.version!r} "
                              f"(this physcut reads {TRACKS_SCHEMA})")
        O = len(self.ids)
        if len(set(self.ids)) != O:
            dup = sorted({i for i in self.ids if list(self.ids).count(i) > 1})
            raise TracksError(f"field 'ids': duplicate object ids {dup}")
        if len(self.kind) != O:
            raise TracksError(f"field 'kind': {len(self.kind)} entries, expected one per object ({O})")
        for o, k in enumerate(self.kind):
            if k not in KINDS:
                raise TracksError(f"field 'kind[{o}]' ('{self.ids[o]}'): unknown kind {k!r} "
                                  f"(valid choices: {', '.join(KINDS)})")
        if self.shape is not None:
            if len(self.shape) != O:
                raise TracksError(f"field 'shape': {len(self.shape)} entries, expected {O}")
            for o, s in enumerate(self.shape):
                if s not in SHAPES:
                    raise TracksError(f"field 'shape[{o}]' ('{self.ids[o]}'): unknown shape {s!r} "
                                      f"(valid choices: {', '.join(SHAPES)})")
        if self.positions is None and self.pixels is None:
            raise TracksError("missing field 'positions' (or 'pixels'): tracks need 3D positions "
                              "or 2D pixel tracks")
        if self.pixels is not None and (self.camera_K is None or self.camera_w2c is None) \
                and self.positions is None:
            raise TracksError("missing field 'camera_K'/'camera_w2c': 2D pixel tracks need the "
                              "camera of every frame")
        F = int(np.asarray(self.visible).shape[0]) if np.ndim(self.visible) else -1
        K = int(np.asarray(self.contact_time).shape[0])
        sizes = {"F": F, "O": O, "K": K}
        for name, (tmpl, dkind) in _ARRAYS.items():
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if len(tmpl) != arr.ndim:
                raise TracksError(f"field '{name}': {arr.ndim} dimensions {arr.shape}, expected "
                                  f"{len(tmpl)} {_fmt(tmpl)}")
            for axis, (want, got) in enumerate(zip(tmpl, arr.shape)):
                if isinstance(want, str):
                    if want in sizes and sizes[want] != got:
                        what = {"F": "frame count", "O": "object count", "K": "contact count"}[want]
                        raise TracksError(f"field '{name}': shape {arr.shape} does not match the "
                                          f"{what} {sizes[want]} (axis {axis}; mismatched "
                                          f"{'frame counts' if want == 'F' else what + 's'})")
                elif want != got:
                    raise TracksError(f"field '{name}': shape {arr.shape}, expected {_fmt(tmpl)}")
            if dkind == "f" and arr.dtype.kind not in "fiu":
                raise TracksError(f"field '{name}': dtype {arr.dtype}, expected numbers")
            if dkind == "f" and name not in _MASKED + _NAN_OK and arr.size and not np.all(np.isfinite(arr)):
                bad = tuple(int(x) for x in np.argwhere(~np.isfinite(arr))[0])
                raise TracksError(f"field '{name}': non-finite value (NaN/inf) at index {bad}")
        vis = np.asarray(self.visible, bool)
        for name in _MASKED:
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr, float)
            bad = ~np.isfinite(arr.reshape(F, O, -1)).all(-1) & vis
            if bad.any():
                f, o = (int(x) for x in np.argwhere(bad)[0])
                raise TracksError(f"field '{name}': NaN/inf at frame {f} for visible object "
                                  f"'{self.ids[o]}' (index {o}); mark the object invisible there "
                                  f"or give a value")
        cuts = np.asarray(self.cuts, np.int64)
        if cuts.size and (np.any(np.diff(cuts) <= 0) or cuts[0] <= 0 or cuts[-1] >= F):
            raise TracksError(f"field 'cuts': {cuts.tolist()} must be increasing frame indices in "
                              f"[1, {F - 1}]")
        if K:
            ids = np.asarray(self.contact_ids)
            if ids.min() < -1 or ids.max() >= O:
                k = int(np.argwhere((ids < -1) | (ids >= O))[0][0])
                raise TracksError(f"field 'contact_ids[{k}]': object index {ids[k].tolist()} "
                                  f"outside [-1, {O - 1}]")
        if self.audio is not None and not self.sample_rate > 0:
            raise TracksError("field 'sample_rate': audio given without a positive sample rate")
        return self

    # ------------------------------------------------------------------ I/O
    _SCALARS = ("fps", "ids", "kind", "shape", "sample_rate", "substeps", "contact_tolerance",
                "source", "meta", "version")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path``: ``.npz`` (+ ``.json`` sidecar) or a single ``.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"format": TRACKS_FORMAT}
        for k in self._SCALARS:
            v = getattr(self, k)
            meta[k] = list(v) if isinstance(v, tuple) else (v.item() if isinstance(v, np.generic) else v)
        arrays = {k: np.asarray(getattr(self, k)) for k in _ARRAYS if getattr(self, k) is not None}
        if path.suffix == ".json":
            meta["arrays"] = {k: _to_list(v) for k, v in arrays.items()}
            path.write_text(json.dumps(meta))
            return path
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tracks":
        """Read tracks written by `save` (or by any tool following the schema)."""
        path = Path(path)
        if path.suffix not in (".npz", ".json"):
            raise TracksError(f"{path}: unknown track format '{path.suffix}' (expected .npz + .json "
                              f"sidecar, or a single .json)")
        side = path.with_suffix(".json")
        if not side.exists():
            raise TracksError(f"{side}: file not found")
        try:
            meta = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TracksError(f"{side}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != TRACKS_FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise TracksError(f"{side}: unknown format {got!r} (expected 'format': '{TRACKS_FORMAT}')")
        if path.suffix == ".json" and "arrays" in meta:
            raw = meta["arrays"]
            if not isinstance(raw, dict):
                raise TracksError(f"{side}: field 'arrays' must be an object of named arrays")
            arrays = {}
            for k, v in raw.items():
                try:
                    arrays[k] = np.asarray(_from_list(v), dtype=float)
                except (ValueError, TypeError) as e:
                    raise TracksError(f"{side}: field 'arrays.{k}': not a rectangular numeric array ({e})") from None
        else:
            npz = path.with_suffix(".npz")
            if not npz.exists():
                raise TracksError(f"{npz}: file not found (tracks are a .npz plus a .json sidecar)")
            try:
                with np.load(npz, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except Exception as e:
                raise TracksError(f"{npz}: cannot read arrays ({e})") from None
        return cls.from_dict(meta, arrays, where=str(side))

    @classmethod
    def from_dict(cls, meta: dict, arrays: dict, where: str = "tracks") -> "Tracks":
        """Build from a metadata dict and named arrays; raise `TracksError` naming the field."""
        unknown = sorted(set(arrays) - set(_ARRAYS))
        if unknown:
            raise TracksError(f"{where}: unknown array field(s) {unknown} (valid: {', '.join(_ARRAYS)})")
        for req in ("fps", "ids", "kind"):
            if req not in meta:
                raise TracksError(f"{where}: missing field '{req}'")
        for req in ("visible", "cuts"):
            if req not in arrays:
                raise TracksError(f"{where}: missing field '{req}'")
        kw: dict[str, Any] = {}
        for k in cls._SCALARS:
            if k in meta and meta[k] is not None:
                kw[k] = tuple(meta[k]) if k in ("ids", "kind", "shape") else meta[k]
        for k, v in arrays.items():
            tmpl, dk = _ARRAYS[k]
            v = np.asarray(v)
            if v.size == 0 and len(tmpl) > 1:  # JSON writes empty (0, n) arrays as []
                v = v.reshape((0,) + tuple(t if isinstance(t, int) else 0 for t in tmpl[1:]))
            kw[k] = v.astype(bool) if dk == "b" else (v.astype(np.int64) if dk == "i" else v.astype(np.float64))
        if "audio" in kw:
            kw["audio"] = kw["audio"].astype(np.float32)
        try:
            return cls(**kw).validate()
        except TracksError as e:
            raise TracksError(f"{where}: {e}") from None


def _fmt(tmpl) -> str:
    return "(" + ", ".join(str(t) for t in tmpl) + ")"


def _to_list(a: np.ndarray):
    if a.dtype.kind == "f":
        return np.where(np.isfinite(a), a, None).tolist() if a.size else a.tolist()
    return a.tolist()


def _from_list(v):
    def fix(x):
        if isinstance(x, list):
            return [fix(y) for y in x]
        return np.nan if x is None else x
    return fix(v)


# --------------------------------------------------------------------------- conversion
def shape_params(shape: dict) -> tuple[str, tuple[float, float, float]]:
    """(shape kind, sizes) of a scene shape dict (see the module docstring)."""
    k = shape.get("type") or shape.get("shape") or shape.get("kind")
    if k == "box":
        return "box", tuple(float(x) for x in shape["half_extents"])
    if k == "sphere":
        r = float(shape["radius"])
        return "sphere", (r, r, r)
    if k == "capsule":
        r, h = float(shape["radius"]), float(shape["half_length"])
        return "capsule", (r, r, h + r)
    if k == "cylinder":
        r, h = float(shape["radius"]), float(shape["half_length"])
        return "cylinder", (r, r, h)
    if k == "mesh":
        return "mesh", (0.0, 0.0, 0.0)
    return "point", (0.0, 0.0, 0.0)


def from_trajectory(traj, *, camera: str | None = None, audio: np.ndarray | None = None,
                    sample_rate: int = 0, audio_events: list | None = None) -> Tracks:
    """Convert a physcut `Trajectory` into `Tracks`.

    Objects: every body (statics, props, character links) in trajectory order,
    then one ``"<character>/com"`` object per character (its centre of mass, with
    the character's support contacts as contacts against the world). Cameras: the
    active shot's camera of every frame (or ``camera`` for all frames). ``audio``
    (C, S) at ``sample_rate``: the timeline audio, when there is one.
    """
    F, B, C = traj.num_frames, len(traj.body_names), len(traj.character_names)
    ids = tuple(traj.body_names) + tuple(f"{c}/com" for c in traj.character_names)
    kind = tuple("prop" if k == "prop" else k for k in traj.body_kind) + ("com",) * C
    pos = np.concatenate([traj.body_pos, traj.com_pos], axis=1)
    vel = np.concatenate([traj.body_linvel, traj.com_vel], axis=1)
    quat = np.concatenate([traj.body_quat, np.tile([1.0, 0, 0, 0], (F, C, 1))], axis=1)
    scene = traj.scene
    shapes = {}
    for group in ("statics", "props"):
        for b in scene.get(group, []):
            shapes[b["name"]] = shape_params(b["shape"])
    shape = tuple(shapes.get(n, ("point", (0, 0, 0)))[0] for n in ids)
    sizes = np.asarray([shapes.get(n, ("point", (0.0, 0.0, 0.0)))[1] for n in ids], float)
    masses = np.concatenate([traj.body_mass, [sum(c.get("mass", 70.0) for c in scene.get("characters", [])
                                                  if c["name"] == name) for name in traj.character_names]])
    fr, rs = [], []
    overrides = scene.get("materials", {}) or {}
    from scenes.materials import MATERIALS
    for m in tuple(traj.body_material) + ("flesh",) * C:
        mat = overrides.get(m)
        if isinstance(mat, dict):
            fr.append(float(mat.get("friction", 0.8)))
            rs.append(float(mat.get("restitution", 0.3)))
        else:
            mm = MATERIALS.get(m, MATERIALS["concrete"])
            fr.append(mm.friction)
            rs.append(mm.restitution)
    # contacts: engine contact events, plus a world contact for every supported
    # frame of a character's centre of mass.
    ct = [np.asarray(traj.contact_time, float)]
    cid = [np.asarray(traj.contact_body, np.int64).reshape(-1, 2)]
    cimp = [np.asarray(traj.contact_impulse, float).reshape(-1, 2)]
    cn = [np.asarray(traj.contact_normal, float).reshape(-1, 3)]
    con = [np.asarray(traj.contact_onset, bool)]
    for ci in range(C):
        sup = np.nonzero(np.asarray(traj.support)[:, ci])[0]
        n = len(sup)
        ct.append(sup / traj.fps)
        cid.append(np.stack([np.full(n, B + ci), np.full(n, -1)], 1))
        cimp.append(np.full((n, 2), np.nan))
        cn.append(np.tile([0.0, 0.0, 1.0], (n, 1)))
        con.append(np.zeros(n, bool))
        # character links touching anything count as contacts of the com too
        links = np.nonzero(np.asarray(traj.body_character) == ci)[0]
        if len(links) and len(traj.contact_time):
            hit = np.isin(traj.contact_body, links).any(1)
            ct.append(np.asarray(traj.contact_time)[hit])
            cid.append(np.stack([np.full(hit.sum(), B + ci), np.full(hit.sum(), -1)], 1))
            cimp.append(np.full((hit.sum(), 2), np.nan))
            cn.append(np.tile([0.0, 0.0, 1.0], (hit.sum(), 1)))
            con.append(np.zeros(hit.sum(), bool))
    order = np.argsort(np.concatenate(ct), kind="stable")
    if camera is None:
        shots = traj.shots()
        cam_of_shot = [traj.camera_names.index(s["camera"]) for s in shots] if shots else [0]
        cam_idx = np.asarray(cam_of_shot)[np.clip(traj.active_shot, 0, len(cam_of_shot) - 1)]
    else:
        cam_idx = np.full(F, traj.camera_names.index(camera))
    if len(traj.camera_names):
        K = np.asarray(traj.camera_K)[cam_idx]
        w2c = np.asarray(traj.camera_w2c)[np.arange(F), cam_idx]
        size = np.asarray(traj.camera_size)[cam_idx[0]]
    else:
        K = w2c = size = None
    tol, omega = _engine_tolerance(traj)
    return Tracks(
        fps=float(traj.fps), ids=ids, kind=kind, visible=np.ones((F, len(ids)), bool),
        cuts=np.asarray(traj.cut_frames(), np.int64), positions=pos, velocities=vel,
        orientations=quat, shape=shape, sizes=sizes, masses=np.asarray(masses, float),
        friction=np.asarray(fr), restitution=np.asarray(rs),
        contact_time=np.concatenate(ct)[order], contact_ids=np.concatenate(cid)[order],
        contact_impulse=np.concatenate(cimp)[order], contact_normal=np.concatenate(cn)[order],
        contact_onset=np.concatenate(con)[order], camera_K=K, camera_w2c=w2c, image_size=size,
        audio=None if audio is None else np.asarray(audio, np.float32), sample_rate=int(sample_rate),
        gravity=np.asarray(scene.get("gravity", GRAVITY), float),
        substeps=int(traj.physics_hz // traj.fps), contact_tolerance=tol,
        source=f"trajectory:{traj.engine}:{traj.scene_hash}:seed{traj.seed}",
        meta={"scene": scene.get("name", ""), "audio_events": list(audio_events or []),
              "contact_omega": omega},
    ).validate()


def _engine_tolerance(traj) -> tuple[float, float]:
    """(rest tolerance m, contact spring natural frequency rad/s) the producing
    engine states: ``traj.extra`` keys ``contact_tolerance`` / ``contact_omega``, else
    MuJoCo's `sim.mujoco_engine.CONTACT_OMEGA` (a body at rest sinks g / omega^2;
    allowed: ten times that, a body under the weight of a stack or a leaning chain
    of up to ten bodies), else 5 mm and rigid."""
    extra = traj.extra or {}
    omega = extra.get("contact_omega")
    if omega is None and traj.engine == "mujoco":
        try:
            from sim.mujoco_engine import CONTACT_OMEGA as omega
        except ImportError:
            omega = None
    omega = float(omega or 0.0)
    g = float(np.linalg.norm(traj.scene.get("gravity", GRAVITY)))
    rest = 10.0 * g / omega ** 2 if omega else 0.005
    return float(extra.get("contact_tolerance", rest)), omega
