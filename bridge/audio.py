"""Contact audio: one continuous stereo track for the whole timeline, from the
trajectory's contacts, by modal synthesis; its event list; a per-frame event map.

Sound model (per event kind):

* ``impact`` -- a contact onset whose collision impulse exceeds the scene's
  ``contact_threshold`` (see `contact_events`). Both bodies ring: each body is a bank of damped modes
  (two-pole resonators run by `scipy.signal.lfilter`) whose frequency ratios,
  decay times and spectral roll-off come from its material's acoustic class
  (`ACOUSTIC`) and whose fundamental scales as 1/size (size from the scene's
  shape, or a mass-based proxy for character links). The resonators are driven by
  a half-sine force pulse lasting the Hertzian contact duration (`contact_duration`:
  compliances of the pair add, duration ~ speed^(-1/5)), so soft contacts excite
  only low modes. The pulse itself is also heard directly: the short low-pass
  "click" of the contact that shapes the attack. Amplitude grows as the square
  root of the collision impulse (`_impact_impulse`); each hit varies the mode
  gains a little (seeded), as hitting a body at another point does. While a body
  rests on something (`_resting`) its decay times are capped at ``RESTING_T60``.
* ``footstep`` -- an onset above the threshold between a character's foot link
  and a static or a prop, after the foot was off the ground for at least
  ``FOOT_MIN_SWING``: a low-passed noise thud (heel), a short heel click and a
  soft excitation of the surface's modes.
* ``slide`` -- sustained (non-onset) contacts with tangential impulse and relative
  motion: band-passed noise (band from the acoustic classes of the pair, shifted up
  with speed) whose amplitude is sqrt(friction power) = sqrt(F_t * v_slip); rolling
  (contact-point slip small against the bodies' relative speed) gives a low-passed
  rumble scaled by sqrt(F_n * v_roll) instead.

Spatialisation (a choice, as films do it): a source stays where it is in the world
and the listener is the camera of the shot on screen. An impact is placed with the
camera of the shot active at its frame and keeps that placement for its whole ring,
so a cut never chops or re-pans a ringing tail (no clicks); the next event is heard
from the new camera. Slides are re-placed every frame, with gains interpolated
linearly between frame centres (one frame of smoothing, also across cuts). No
propagation delay is applied: sound is in sync with the picture, as in films.
Distance gain is ``min(1, 1 m / r)``; the pan is constant-power (gains
``cos``/``sin`` of ``(1 + s) pi / 4``) with ``s`` the sine of the source azimuth in
the camera's horizontal (x, z) plane, so a source straight ahead is centred and one
at 90 degrees to the right plays from the right channel only.

Gain law: the sum of all events is multiplied by one fixed global gain
(``MASTER_GAIN``) -- never normalised per track, so loudness compares across scenes
-- and then soft-clipped (`soft_clip`: linear up to 0.5, tanh above, peak < 1).

Timeline: sample n is time n / sample_rate; the track has
``round(num_frames / fps * sample_rate)`` samples and is built in one piece, so it
never restarts at a cut. Event times are the physics-step times of the contacts.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: Fixed master gain applied to the sum of all events before `soft_clip`.
MASTER_GAIN = 0.3
#: Distance (m) at and below which a source plays at full level (gain min(1, REF/r)).
REF_DISTANCE = 1.0
#: Sound-size clamp (m): statics (a 100 m ground slab) ring like a local patch.
MIN_SIZE, MAX_SIZE = 0.02, 1.5
#: Modal level of statics: a floor or wall is struck on a patch damped by the
#: surrounding structure, so it radiates less than a free prop of the same class.
STATIC_GAIN = 0.3
#: Decay time (s, -60 dB) that modes are capped at while the body rests on or is
#: pressed against something: the support soaks up the vibration (a steel bar on a
#: concrete floor clanks, held in the air it rings).
RESTING_T60 = 0.15
#: Approach speed (m/s) below which an onset is not an impact: soft contacts let
#: resting and rolling bodies lose touch for a step and land again at a few mm/s
#: (5 cm/s is a fall of 0.13 mm).
MIN_IMPACT_SPEED = 0.05
#: Slip speed (m/s) below which a sustained contact is silent.
MIN_SLIDE_SPEED = 0.05
#: Level of a footstep per sqrt(N s) relative to an impact.
FOOTSTEP_GAIN = 0.3
#: Level of sliding and rolling noise per sqrt(W) of dissipated power.
SLIDE_GAIN, ROLL_GAIN = 0.02, 0.006
#: Minimum spacing (s) of two onsets reported by `onsets` (its time resolution).
ONSET_RESOLUTION = 0.005
#: `onsets` averages the band rises over the ONSET_TOPK bands that rise most, so an
#: onset confined to part of the spectrum (a low thud, a bright tick) counts fully.
ONSET_TOPK = 14
#: A foot must have been off the ground this long (s) for a touch to be a footstep.
FOOT_MIN_SWING = 0.1
#: Share of a character's mass behind a striking link (see `_effective_masses`).
CHARACTER_STRIKE_MASS = 0.08
#: Substrings of a character link name that mark a foot.
FOOT_LINKS = ("foot", "toe", "heel")


@dataclass(frozen=True)
class AcousticClass:
    """Sound parameters of one acoustic class (see `scenes.materials.ACOUSTIC_CLASSES`).

    Attributes:
        ratios: mode frequencies relative to the fundamental.
        rolloff: mode k (1-based) has weight k**-rolloff before normalising to sum 1.
        f_size: Hz*m; the fundamental is f_size / size (size in m).
        t60: s, time for the fundamental to decay by 60 dB.
        t60_exp: higher modes decay faster: t60_k = t60 * (f_k / f_1)**-t60_exp.
        contact_ms: Hertzian contact duration at 1 m/s impact speed.
        click: level of the direct contact click relative to the modes.
        gain: overall level of the class.
        slide_band: (low, high) Hz band of sliding noise at 1 m/s.
    """

    ratios: tuple
    rolloff: float
    f_size: float
    t60: float
    t60_exp: float
    contact_ms: float
    click: float
    gain: float
    slide_band: tuple


#: Per-class parameters. Ratios: free-free bar (metal), wine-glass-like (glass),
#: plate-like (wood, plastic, ceramic), dense low clusters (concrete), few heavily
#: damped modes (rubber, flesh). Decay times and brightness follow "metal rings
#: long, wood short, rubber very damped, glass bright and long, concrete dull,
#: flesh thuds"; tests/test_audio_synthesis.py checks centroids and decays. Not
#: fitted to recordings.
ACOUSTIC: dict[str, AcousticClass] = {
    "metal": AcousticClass((1.0, 2.756, 5.404, 8.933, 13.34, 18.64), 0.4, 300.0, 2.5, 0.6,
                           0.15, 0.3, 1.0, (2000.0, 9000.0)),
    "glass": AcousticClass((1.0, 2.32, 4.25, 6.63, 9.38, 12.5), 0.2, 500.0, 1.6, 0.5,
                           0.15, 0.4, 0.8, (3000.0, 12000.0)),
    "ceramic": AcousticClass((1.0, 2.1, 3.6, 5.5, 7.8), 0.4, 400.0, 0.5, 0.6,
                             0.2, 0.5, 0.8, (1500.0, 8000.0)),
    "wood": AcousticClass((1.0, 2.57, 4.13, 5.92, 8.3), 0.9, 200.0, 0.12, 0.7,
                          0.5, 0.6, 0.9, (400.0, 3000.0)),
    "plastic": AcousticClass((1.0, 2.3, 3.9, 5.6), 0.9, 220.0, 0.08, 0.7,
                             0.6, 0.6, 0.7, (800.0, 5000.0)),
    "concrete": AcousticClass((1.0, 1.59, 2.14, 2.65, 3.16), 1.4, 150.0, 0.06, 1.0,
                              0.3, 0.8, 0.9, (300.0, 5000.0)),
    "rubber": AcousticClass((1.0, 1.8, 2.9), 2.0, 100.0, 0.03, 1.0,
                            2.5, 0.8, 0.6, (150.0, 1200.0)),
    "flesh": AcousticClass((1.0, 1.7, 2.6), 2.0, 70.0, 0.04, 1.0,
                           3.0, 0.7, 0.7, (200.0, 2000.0)),
}


# --------------------------------------------------------------------------- events
def _materials(traj) -> list:
    """`scenes.Material` of every body, resolving scene-defined materials first."""
    from scenes.materials import Material, resolve
    overrides = {}
    for name, m in (traj.scene.get("materials") or {}).items():
        m = dict(m)
        if m.get("color") is not None:
            m["color"] = tuple(m["color"])
        overrides[name] = Material(**m)
    return [resolve(mat, overrides, f"body_material[{i}] ({traj.body_names[i]})")
            for i, mat in enumerate(traj.body_material)]


def _acoustic_classes(traj, materials=None) -> list[str]:
    """Acoustic class of every body."""
    out = []
    for i, m in enumerate(materials or _materials(traj)):
        if m.acoustic not in ACOUSTIC:
            raise ValueError(f"body '{traj.body_names[i]}': acoustic class '{m.acoustic}' has no "
                             f"sound model; known: {', '.join(sorted(ACOUSTIC))}")
        out.append(m.acoustic)
    return out


def _shape_size(shape: dict) -> float | None:
    """Largest dimension (m) of a shape dict (``Scene.to_dict`` form); None if unknown."""
    kind = shape.get("type")
    if kind == "box":
        return 2.0 * max(shape["half_extents"])
    if kind == "sphere":
        return 2.0 * shape["radius"]
    if kind == "capsule":
        return 2.0 * (shape["radius"] + shape["half_length"])
    if kind == "cylinder":
        return 2.0 * max(shape["radius"], shape["half_length"])
    return None


def body_sizes(traj) -> np.ndarray:
    """(B,) characteristic size in m of every body, clamped to [MIN_SIZE, MAX_SIZE].

    Statics and props: the largest dimension of their scene shape. Character links
    and meshes: the diameter of a sphere of the body's mass at its material density
    (0.3 m for a static mesh).
    """
    shapes = {}
    for group in ("statics", "props"):
        for item in traj.scene.get(group, []) or []:
            shapes[item["name"]] = item.get("shape") or {}
    materials = _materials(traj)
    sizes = np.empty(len(traj.body_names))
    for i, name in enumerate(traj.body_names):
        size = _shape_size(shapes[name]) if name in shapes else None
        if size is None:  # character link or mesh
            mass = float(traj.body_mass[i])
            size = 2.0 * (3.0 * mass / (4.0 * math.pi * materials[i].density)) ** (1 / 3) if mass > 0 else 0.3
        sizes[i] = np.clip(size, MIN_SIZE, MAX_SIZE)
    return sizes


def _is_foot(traj, b: int) -> bool:
    """A character link that is a foot: one of the humanoid's foot links
    (`sim.humanoid.FOOT_LINKS`) or any link whose name contains ``FOOT_LINKS``."""
    from sim.humanoid import FOOT_LINKS as SIM_FEET
    if traj.body_kind[b] != "character":
        return False
    link = traj.body_names[b].split("/", 1)[-1].lower()
    return link in SIM_FEET or any(k in link for k in FOOT_LINKS)


def _foot_touch_times(traj) -> dict[int, np.ndarray]:
    """Sorted times of every contact event between each foot and a non-character."""
    out = {}
    for b in range(len(traj.body_names)):
        if not _is_foot(traj, b):
            continue
        pair = traj.contact_body
        other = np.where(pair[:, 0] == b, pair[:, 1], pair[:, 0])
        mine = ((pair[:, 0] == b) | (pair[:, 1] == b)) & (np.asarray(traj.body_kind)[other] != "character")
        out[b] = np.sort(traj.contact_time[mine])
    return out


def _listener(traj):
    """(F,) camera index of the shot on screen at each frame, or None without cameras."""
    if len(traj.camera_names) == 0:
        return None
    shots = traj.shots()
    if not shots:
        return np.zeros(traj.num_frames, dtype=np.int64)
    cam_of_shot = np.array([list(traj.camera_names).index(s["camera"]) for s in shots])
    return cam_of_shot[np.clip(traj.active_shot, 0, len(shots) - 1)]


def spatial_gains(traj, frames: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(n, 2) left/right gains of world points ``pos`` (n, 3) heard from the camera
    of the shot active at ``frames`` (n,): distance gain times constant-power pan."""
    frames = np.clip(np.asarray(frames, dtype=np.int64), 0, traj.num_frames - 1)
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    cams = _listener(traj)
    if cams is None:  # no camera: centred, full level
        return np.full((len(pos), 2), math.sqrt(0.5))
    w2c = traj.camera_w2c[frames, cams[frames]]                       # (n, 4, 4)
    pc = np.einsum("nij,nj->ni", w2c[:, :3, :3], pos) + w2c[:, :3, 3]  # (n, 3) camera frame
    dist = np.linalg.norm(pc, axis=1)
    level = np.minimum(1.0, REF_DISTANCE / np.maximum(dist, 1e-9))
    horiz = np.hypot(pc[:, 0], pc[:, 2])
    s = np.where(horiz > 1e-9, pc[:, 0] / np.maximum(horiz, 1e-9), 0.0)
    theta = (1.0 + s) * math.pi / 4
    return level[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def contact_events(traj) -> list[dict]:
    """The sound events of a trajectory, time ordered (see module docstring).

    Impacts and footsteps are contact onsets whose collision impulse
    (`_impact_impulse`: the recorded normal impulse, capped at what the collision
    itself can transfer) exceeds the scene's ``contact_threshold`` and whose
    approach speed is at least ``MIN_IMPACT_SPEED``; a resting or rolling body that
    loses touch for one physics step and lands again at a few mm/s is not an
    impact. Slides are runs of sustained contacts with slip or rolling motion.

    Each dict: ``time`` (s), ``frame``, ``bodies`` [name_a, name_b], ``impulse``
    (N s; the recorded normal impulse for impacts and footsteps, total tangential
    impulse for slides), ``material`` [acoustic_a, acoustic_b], ``position``
    [x, y, z] (world, m), ``kind`` ("impact" | "footstep" | "slide"). Impacts and
    footsteps also carry ``impact_impulse`` (N s, the collision's share, which sets
    loudness); slides ``duration`` (s), ``speed`` (peak m/s) and ``motion``
    ("slide" | "roll"). Keys starting with ``_`` are internal (arrays for
    synthesis) and are dropped by `synthesize`.
    """
    thr = float(traj.scene.get("contact_threshold", 0.05))
    materials = _materials(traj)
    masses = _effective_masses(traj)
    last_touch = _foot_touch_times(traj)
    acoustic = _acoustic_classes(traj, materials)
    names = traj.body_names
    dt_phys = 1.0 / traj.physics_hz if traj.physics_hz else 0.0
    events: list[dict] = []
    onset = np.asarray(traj.contact_onset, dtype=bool) & (traj.contact_impulse[:, 0] > thr)
    for k in np.nonzero(onset)[0]:
        a, b = (int(v) for v in traj.contact_body[k])
        t = float(traj.contact_time[k])
        jn, speed = float(traj.contact_impulse[k, 0]), float(traj.contact_speed[k])
        j_impact = _impact_impulse(masses, materials, a, b, jn, speed)
        if j_impact <= thr or speed < MIN_IMPACT_SPEED:  # a resting/rolling body re-touching
            continue
        kind = "impact"
        foot_a, foot_b = _is_foot(traj, a), _is_foot(traj, b)
        if (foot_a and traj.body_kind[b] != "character") or (foot_b and traj.body_kind[a] != "character"):
            kind = "footstep"
            if foot_b:  # keep the foot first, the surface second
                a, b = b, a
            # a foot that touched ground within the swing time is rocking in its
            # stance (the engine sees touch-lose-touch), not stepping
            before = last_touch[a][last_touch[a] < t - 0.5 * dt_phys]
            if before.size and t - before[-1] < FOOT_MIN_SWING:
                continue
        events.append({
            "time": t, "frame": int(traj.contact_frame[k]), "bodies": [names[a], names[b]],
            "impulse": jn, "material": [acoustic[a], acoustic[b]],
            "position": [float(v) for v in traj.contact_pos[k]], "kind": kind,
            "impact_impulse": j_impact,
            "_a": a, "_b": b, "_speed": speed,
        })
    events.extend(_slide_events(traj, acoustic))
    events.sort(key=lambda e: (e["time"], e["kind"]))
    return events


def _effective_masses(traj) -> np.ndarray:
    """(B,) mass (kg) a body brings into a collision; 0 = immovable (statics).

    Props: their mass. A character link strikes with more than its own mass, since
    the limb and body behind it follow: ``CHARACTER_STRIKE_MASS`` of the character's
    whole mass (heel strikes carry about 6-8% of body mass), or the link's mass
    when larger."""
    m = np.asarray(traj.body_mass, dtype=np.float64).copy()
    chars = np.asarray(traj.body_character)
    for c in np.unique(chars[chars >= 0]):
        links = chars == c
        m[links] = np.maximum(m[links], CHARACTER_STRIKE_MASS * m[links].sum())
    return m


def _impact_impulse(masses, materials, a: int, b: int, jn: float, speed: float) -> float:
    """The part of a contact's recorded normal impulse delivered by the collision.

    The recorder reports the impulse of the whole run of contact steps from the onset
    to the end of the frame, which includes resting support after the impact (and
    makes a resting body that loses contact for a step look like an impact). The
    collision itself transfers at most m_eff (1 + e) v_n (m_eff the reduced mass of
    `_effective_masses`, statics infinitely heavy; e the pair's restitution, the
    higher of the two as in the engines), so the sound uses min(recorded, that)."""
    ma, mb = float(masses[a]), float(masses[b])
    inv = (1.0 / ma if ma > 0 else 0.0) + (1.0 / mb if mb > 0 else 0.0)
    if inv == 0.0:
        return jn
    e = max(materials[a].restitution, materials[b].restitution)
    return float(min(jn, (1.0 + e) * max(speed, 0.0) / inv))


def _slide_events(traj, acoustic) -> list[dict]:
    """Group moving contacts of each body pair into slide/roll segments: runs of
    consecutive frames in which the pair stays in touch (non-onset events) with
    tangential impulse and slips or rolls faster than ``MIN_SLIDE_SPEED``. A gap of
    one frame is bridged, so a rolling body that loses touch for a step (an onset
    frame) keeps one continuous segment; onset frames themselves never start noise,
    which would sound before the impact that begins them."""
    F = traj.num_frames
    ks = np.nonzero(~np.asarray(traj.contact_onset, dtype=bool) & (traj.contact_impulse[:, 1] > 0))[0]
    a_, b_ = traj.contact_body[ks, 0], traj.contact_body[ks, 1]
    f_ = np.clip(traj.contact_frame[ks], 0, F - 1)
    p, n = traj.contact_pos[ks], traj.contact_normal[ks]

    def point_velocity(body):  # velocity of the material point of `body` at p, (k, 3)
        return traj.body_linvel[f_, body] + np.cross(traj.body_angvel[f_, body], p - traj.body_pos[f_, body])

    def tangential(v):
        return np.linalg.norm(v - np.sum(v * n, axis=1, keepdims=True) * n, axis=1)

    slip = tangential(point_velocity(b_) - point_velocity(a_))
    roll = tangential(traj.body_linvel[f_, b_] - traj.body_linvel[f_, a_])
    rolling = (roll > MIN_SLIDE_SPEED) & (slip < 0.5 * roll)
    audible = rolling | (slip >= MIN_SLIDE_SPEED)
    # one row per (pair, frame): [time, pos, jn, jt, speed, rolling]; impulses add up
    per_pair: dict[tuple, dict[int, list]] = {}
    for i in np.nonzero(audible)[0]:
        k = ks[i]
        rows = per_pair.setdefault((int(a_[i]), int(b_[i])), {})
        jn, jt = float(traj.contact_impulse[k, 0]), float(traj.contact_impulse[k, 1])
        speed = float(roll[i] if rolling[i] else slip[i])
        if int(f_[i]) in rows:
            r = rows[int(f_[i])]
            r[2] += jn
            r[3] += jt
            r[4] = max(r[4], speed)
        else:
            rows[int(f_[i])] = [float(traj.contact_time[k]), p[i], jn, jt, speed, bool(rolling[i])]
    out = []
    names = traj.body_names
    for (a, b), rows in per_pair.items():
        frames_all = np.array(sorted(rows))
        breaks = np.nonzero(np.diff(frames_all) > 2)[0] + 1
        for frames in np.split(frames_all, breaks):
            run = [rows[int(f)] for f in frames]
            roll_frac = float(np.mean([r[5] for r in run]))
            out.append({
                # the slide sounds from the start of its first frame interval
                "time": max(0.0, (int(frames[0]) - 1) / traj.fps), "frame": int(frames[0]),
                "bodies": [names[a], names[b]],
                "impulse": float(sum(r[3] for r in run)), "material": [acoustic[a], acoustic[b]],
                "position": [float(v) for v in np.mean([r[1] for r in run], axis=0)],
                "kind": "slide", "duration": (int(frames[-1]) - int(frames[0]) + 1) / traj.fps,
                "speed": float(max(r[4] for r in run)), "motion": "roll" if roll_frac > 0.5 else "slide",
                "_a": a, "_b": b, "_frames": frames, "_pos": np.array([r[1] for r in run]),
                "_jn": np.array([r[2] for r in run]), "_jt": np.array([r[3] for r in run]),
                "_v": np.array([r[4] for r in run]), "_rolling": np.array([r[5] for r in run]),
            })
    return out


# --------------------------------------------------------------------------- synthesis
def contact_duration(a: AcousticClass, b: AcousticClass, speed: float) -> float:
    """Hertzian contact duration (s) of a pair at impact ``speed`` (m/s).

    Hertz: duration ~ E*^(-2/5) v^(-1/5), with the pair's compliance 1/E* the sum of
    the bodies' compliances. A class's ``contact_ms`` is its duration at 1 m/s, so
    its compliance is proportional to contact_ms^(5/2): the softer body dominates."""
    tau = (a.contact_ms ** 2.5 + b.contact_ms ** 2.5) ** 0.4 * 1e-3
    return tau * max(speed, 0.1) ** -0.2


def _half_sine(tau_s: float, sample_rate: int) -> np.ndarray:
    n = max(2, int(round(tau_s * sample_rate)))
    return np.sin(np.pi * (np.arange(n) + 0.5) / n)


def _modes(cls: AcousticClass, size: float, sample_rate: int, rng) -> tuple:
    """(freqs, t60s, weights) of a body's modes; frequencies jittered +-2% per body."""
    f1 = np.clip(cls.f_size / size, 40.0, 6000.0)
    f = f1 * np.asarray(cls.ratios) * (1.0 + 0.02 * rng.uniform(-1, 1, len(cls.ratios)))
    f[0] = f1
    keep = f < 0.45 * sample_rate
    f = f[keep]
    k = np.arange(1, len(cls.ratios) + 1)[keep]
    w = k ** -cls.rolloff
    w /= w.sum()
    t60 = cls.t60 * (f / f1) ** -cls.t60_exp
    return f, t60, w


def soft_clip(x: np.ndarray, knee: float = 0.5) -> np.ndarray:
    """Identity below ``knee``, tanh saturation above; |output| < 1."""
    ax = np.abs(x)
    over = knee + (1.0 - knee) * np.tanh((ax - knee) / (1.0 - knee))
    return np.where(ax > knee, np.sign(x) * over, x)


def synthesize(traj, sample_rate: int = 48000, seed: int = 0, progress: bool = False):
    """Synthesise the contact audio of ``traj``.

    Returns ``(audio, events)``: audio (2, S) float32 in [-1, 1], S =
    round(num_frames / fps * sample_rate), one continuous track for the whole
    timeline; events as `contact_events` (internal keys removed). Deterministic for
    a given ``seed``.
    """
    from scipy.signal import butter, lfilter

    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate: must be an integer in [8000, 192000] Hz, got {sample_rate!r}")
    sr = int(sample_rate)
    S = int(round(traj.num_frames / traj.fps * sr))
    out = np.zeros((2, S))
    events = contact_events(traj)
    sizes = body_sizes(traj)
    acoustic = _acoustic_classes(traj)
    ss = np.random.SeedSequence([int(seed), 0x61756469])  # "audi"
    body_seed, event_seed = ss.spawn(2)
    body_rngs = [np.random.default_rng(s) for s in body_seed.spawn(len(traj.body_names))]
    ev_rngs = [np.random.default_rng(s) for s in event_seed.spawn(max(1, len(events)))]

    hits = [(i, e) for i, e in enumerate(events) if e["kind"] != "slide"]
    gains = (spatial_gains(traj, [e["frame"] for _, e in hits], [e["position"] for _, e in hits])
             if hits else np.zeros((0, 2)))                             # (n, 2) left/right
    # excitations of each body's resonator bank: list of (sample, (2,) gain, pulse, mode-gain rng)
    drive: dict[int, list] = {}
    for (i, e), g in zip(hits, gains):
        a, b = e["_a"], e["_b"]
        rng = ev_rngs[i]
        n0 = int(round(e["time"] * sr))
        amp = math.sqrt(e["impact_impulse"])
        ca, cb = ACOUSTIC[acoustic[a]], ACOUSTIC[acoustic[b]]
        speed = max(e["_speed"], 0.1)
        if e["kind"] == "impact":
            tau = contact_duration(ca, cb, speed)
            pulse = _half_sine(tau, sr)
            unit = pulse / pulse.sum()
            for body, cls in ((a, ca), (b, cb)):
                level = amp * cls.gain * (STATIC_GAIN if traj.body_kind[body] == "static" else 1.0)
                drive.setdefault(body, []).append((n0, g * level, unit, rng))
            click = 0.5 * (ca.click * ca.gain + cb.click * cb.gain) * amp
            _add(out, n0, g[:, None] * click * pulse[None, :])
        else:  # footstep: foot a on surface b
            level = FOOTSTEP_GAIN * amp
            n = int(0.2 * sr)  # 8 decay constants: the tail ends ~70 dB down
            t = np.arange(n) / sr
            env = np.exp(-t / 0.025) * np.minimum(1.0, t / 0.002)
            thud = lfilter(*butter(2, 180.0, fs=sr), rng.standard_normal(n) * env)
            thud *= np.minimum(1.0, (n - np.arange(n)) / (0.01 * sr))  # no step at the end
            thud /= max(np.abs(thud).max(), 1e-12)
            heel = _half_sine(0.0015, sr)
            _add(out, n0, g[:, None] * level * thud[None, :])
            _add(out, n0, g[:, None] * 0.5 * level * cb.click * heel[None, :])
            soft = _half_sine(0.004, sr)
            drive.setdefault(b, []).append((n0, g * 4.0 * level * cb.gain, soft / soft.sum(), rng))

    resting = _resting(traj)
    bodies = sorted(drive)
    if progress:
        from tqdm import tqdm
        bodies = tqdm(bodies, desc="audio: modes", unit="body")
    for body in bodies:
        f, t60, w = _modes(ACOUSTIC[acoustic[body]], sizes[body], sr, body_rngs[body])
        r = np.exp(-6.91 / (t60 * sr))
        ring = int(t60.max() * sr * 80 / 60)  # to -80 dB
        items = sorted(drive[body], key=lambda x: x[0])
        # per-hit mode gains (where a body is struck changes its mode mix)
        mode_gain = [w * rng.uniform(0.6, 1.0, len(w)) for (_, _, _, rng) in items]
        r_rest = np.exp(-6.91 / (np.minimum(t60, RESTING_T60) * sr))
        for s0, s1, idx in _clusters([(n, len(p)) for n, _, p, _ in items], ring, S):
            # sample ranges of the cluster with the body resting (damped) or free
            fr = np.minimum(np.ceil(np.arange(s0, s1) * traj.fps / sr).astype(np.int64), traj.num_frames - 1)
            state = resting[fr, body]
            edges = np.concatenate([[0], np.nonzero(np.diff(state))[0] + 1, [s1 - s0]])
            chunks = [(int(c0), int(c1), bool(state[c0])) for c0, c1 in zip(edges[:-1], edges[1:])]
            seg = np.zeros((2, s1 - s0))
            for k in range(len(f)):
                x = np.zeros((2, s1 - s0))
                for i in idx:
                    n, g, p, _ = items[i]
                    _add(x, n - s0, g[:, None] * mode_gain[i][k] * p[None, :])
                seg += _resonate(x, 2 * np.pi * f[k] / sr, chunks, r[k], r_rest[k], lfilter)
            if s1 < S:  # end the -80 dB tail with a short fade, not a step
                fade = min(int(0.02 * sr), (s1 - s0) // 4)
                seg[:, s1 - s0 - fade:] *= np.linspace(1.0, 0.0, fade)
            out[:, s0:s1] += seg

    for i, e in enumerate(events):
        if e["kind"] == "slide":
            _add_slide(out, traj, e, sr, ev_rngs[i])

    audio = soft_clip(MASTER_GAIN * out).astype(np.float32)
    public = [{k: v for k, v in e.items() if not k.startswith("_")} for e in events]
    return audio, public


def _resting(traj) -> np.ndarray:
    """(F, B) bool: frames in which a prop or character link is pressed on something
    -- its sustained (non-onset) contacts carry at least half its weight over the
    frame. Statics are never "resting" (their modes are a damped patch already)."""
    F, B = traj.num_frames, len(traj.body_names)
    load = np.zeros((F, B))
    sustained = ~np.asarray(traj.contact_onset, dtype=bool)
    f = np.clip(traj.contact_frame[sustained], 0, F - 1)
    for side in (0, 1):
        np.add.at(load, (f, traj.contact_body[sustained, side]), traj.contact_impulse[sustained, 0])
    gravity = float(np.linalg.norm(traj.scene.get("gravity", (0.0, 0.0, -9.81))))
    weight_impulse = np.asarray(traj.body_mass, dtype=np.float64) * gravity / traj.fps  # N s per frame
    return (weight_impulse > 0) & (load >= 0.5 * weight_impulse)


def _resonate(x, om: float, chunks, r_free: float, r_rest: float, lfilter) -> np.ndarray:
    """One two-pole mode (unit impulse response r^n sin(om n)) driven by ``x`` (2, n),
    with the decay switching between ``r_free`` and ``r_rest`` on ``chunks``
    [(start, stop, resting)]; the state carries over (`scipy.signal.lfiltic`)."""
    from scipy.signal import lfiltic
    y = np.empty_like(x)
    zi = None
    for c0, c1, rest in chunks:
        r = r_rest if rest else r_free
        b, a = [0.0, r * np.sin(om)], [1.0, -2 * r * np.cos(om), r * r]
        if c0 > 0:  # rebuild the filter state from the last two inputs and outputs
            zi = np.stack([lfiltic(b, a, y[c, c0 - 2:c0][::-1] if c0 >= 2 else [y[c, 0]],
                                   x[c, c0 - 2:c0][::-1] if c0 >= 2 else [x[c, 0]]) for c in range(2)])
        if zi is None:
            y[:, c0:c1] = lfilter(b, a, x[:, c0:c1], axis=-1)
        else:
            y[:, c0:c1], _ = lfilter(b, a, x[:, c0:c1], axis=-1, zi=zi)
    return y


def _add(buf: np.ndarray, n0: int, sig: np.ndarray):
    """buf[:, n0:n0+len] += sig, clipped to the buffer."""
    S = buf.shape[-1]
    lo, hi = max(n0, 0), min(n0 + sig.shape[-1], S)
    if hi > lo:
        buf[:, lo:hi] += sig[:, lo - n0:hi - n0]


def _clusters(starts_lens, ring: int, S: int):
    """Split a body's hits into independent sample ranges (a resonator has rung
    down by -80 dB before the next range starts). Yields (s0, s1, indices)."""
    cur, s0, s1 = [], None, None
    for i, (n, L) in enumerate(starts_lens):
        if cur and n > s1:
            yield s0, s1, cur
            cur = []
        if not cur:
            s0 = max(0, min(n, S))
            s1 = n
        cur.append(i)
        s1 = min(S, max(s1, n + L + ring))
    if cur and s1 > s0:
        yield s0, s1, cur


@functools.lru_cache(maxsize=512)
def _noise_filter(lo: float, hi: float, sr: int, rolling: bool) -> np.ndarray:
    """Second-order Butterworth (sos) shaping slide noise: band-pass, or low-pass
    at ``lo`` for rolling."""
    from scipy.signal import butter
    nyq = 0.45 * sr
    if rolling:
        return butter(2, min(lo, nyq), btype="lowpass", fs=sr, output="sos")
    return butter(2, [min(lo, 0.5 * nyq), min(hi, nyq)], btype="bandpass", fs=sr, output="sos")


def _add_slide(out, traj, e, sr, rng):
    """Add the noise of one slide/roll segment ``e`` (from `_slide_events`) to ``out``."""
    from scipy.signal import sosfilt
    fps = traj.fps
    frames = e["_frames"]
    rolling = e["motion"] == "roll"
    v = e["_v"]
    # per frame: sqrt of the friction power (sliding) or of F_n * v (rolling), with
    # the mean forces over the frame interval (N)
    level = np.where(e["_rolling"], ROLL_GAIN * np.sqrt(e["_jn"] * fps * v),
                     SLIDE_GAIN * np.sqrt(e["_jt"] * fps * v))
    g = spatial_gains(traj, frames, e["_pos"]) * level[:, None]  # (n, 2)
    # frame i covers (t_{i-1}, t_i]: control points at the interval centres, faded
    # in and out over half a frame at the ends
    tc = (frames - 0.5) / fps
    tk = np.concatenate([[tc[0] - 0.5 / fps], tc, [tc[-1] + 0.5 / fps]])
    gk = np.concatenate([np.zeros((1, 2)), g, np.zeros((1, 2))])
    s0, s1 = max(0, int(tk[0] * sr)), min(out.shape[1], int(math.ceil(tk[-1] * sr)) + 1)
    if s1 <= s0:
        return
    t = np.arange(s0, s1) / sr
    env = np.stack([np.interp(t, tk, gk[:, c]) for c in range(2)])
    ca, cb = ACOUSTIC[e["material"][0]], ACOUSTIC[e["material"][1]]
    lo = math.sqrt(ca.slide_band[0] * cb.slide_band[0])
    hi = math.sqrt(ca.slide_band[1] * cb.slide_band[1])
    # faster slides sound brighter: shift by sqrt(speed), in 1/8-octave steps so
    # filter designs are reused
    shift = 2.0 ** (round(8 * math.log2(float(np.clip(np.sqrt(np.mean(v)), 0.5, 2.0)))) / 8)
    noise = sosfilt(_noise_filter(lo * shift, hi * shift, sr, rolling), rng.standard_normal(s1 - s0))
    noise /= max(float(np.std(noise)), 1e-12)
    out[:, s0:s1] += env * noise[None, :]


# --------------------------------------------------------------------------- event map
def event_map(traj, frames, K, w2c, width: int, height: int, sigma_px: float = 3.0) -> np.ndarray:
    """(T, H, W) float32 map of the impacts and footsteps of each frame interval.

    ``frames`` (T,) frame indices, ``K`` (3, 3) intrinsics at (width, height),
    ``w2c`` (T, 4, 4) world-to-camera (OpenCV). Every impact event of frame
    ``frames[t]`` (interval (t_{i-1}, t_i]) adds a Gaussian of std ``sigma_px``
    centred on its projected contact point with peak value its normal impulse
    (N s); events behind the camera are skipped. Zero elsewhere.
    """
    frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    w2c = np.asarray(w2c, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if w2c.shape != (len(frames), 4, 4):
        raise ValueError(f"w2c: shape {w2c.shape}, expected ({len(frames)}, 4, 4) (one per frame)")
    if K.shape != (3, 3):
        raise ValueError(f"K: shape {K.shape}, expected (3, 3)")
    if width < 1 or height < 1:
        raise ValueError(f"width/height: must be >= 1, got {width}x{height}")
    if not sigma_px > 0:
        raise ValueError(f"sigma_px: must be > 0, got {sigma_px}")
    out = np.zeros((len(frames), height, width), dtype=np.float32)
    hits = [e for e in contact_events(traj) if e["kind"] != "slide"]
    by_frame: dict[int, list] = {}
    for e in hits:
        by_frame.setdefault(e["frame"], []).append(e)
    r = int(math.ceil(4 * sigma_px))
    for t, f in enumerate(frames):
        for e in by_frame.get(int(f), []):
            pc = w2c[t, :3, :3] @ np.asarray(e["position"]) + w2c[t, :3, 3]
            if pc[2] <= 1e-6:
                continue
            u, v = (K @ pc)[:2] / pc[2]
            x0, x1 = max(0, int(math.floor(u)) - r), min(width, int(math.floor(u)) + r + 2)
            y0, y1 = max(0, int(math.floor(v)) - r), min(height, int(math.floor(v)) + r + 2)
            if x1 <= x0 or y1 <= y0:
                continue
            gx = np.exp(-0.5 * ((np.arange(x0, x1) - u) / sigma_px) ** 2)
            gy = np.exp(-0.5 * ((np.arange(y0, y1) - v) / sigma_px) ** 2)
            out[t, y0:y1, x0:x1] += np.float32(e["impulse"]) * np.outer(gy, gx).astype(np.float32)
    return out


# --------------------------------------------------------------------------- onsets
def onsets(audio: np.ndarray, sample_rate: int, *, delta_db: float = 5.0,
           resolution: float = ONSET_RESOLUTION, rise: float = 0.003, smooth: float = 0.003,
           refine: bool = True, floor_db: float | None = None) -> np.ndarray:
    """Onset times (s) detected in ``audio`` ((C, S) or (S,)), sorted.

    Two stages: (1) spectral flux -- the rise over 3 hops of a log-band spectrum
    (28 log-spaced bands; 5.3 ms Hann window, 1 ms hop, power smoothed over 3 ms),
    averaged over the ``ONSET_TOPK`` bands that rise most (dB per band) -- picked
    where it is a local maximum exceeding its 50 ms local median by ``delta_db``;
    (2) each pick is refined on the residual of a linear predictor fitted just
    before it (`_refine_onset`), which whitens the ringing of earlier sounds.
    Picks closer than ``resolution`` s are one onset (the earliest). Resolution:
    two onsets about 6 ms apart or less come out as one.
    It reads only the waveform.

    The defaults are tuned for millisecond accuracy on physically synthesised audio.
    ``rise`` / ``smooth`` (s) set the time scale of the flux (rise over ``rise``,
    power smoothed over ``smooth``); with ``refine=False`` an onset is the middle of
    its rise window instead of stage (2). A coarser setting (10 ms, no refinement)
    suits audio that went through a spectrogram with 10 ms frames. ``floor_db``: drop
    onsets whose loudest 10 ms in the 40 ms after them is more than this many dB
    below the loudest 10 ms of the track (the flux is a relative rise, so without it
    the fluctuations of a near-silent stretch count as onsets too).
    """
    from scipy.ndimage import maximum_filter1d, median_filter, uniform_filter1d
    from scipy.signal import find_peaks, stft

    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    sr = int(sample_rate)
    nper, hop = 256 * sr // 48000, 48 * sr // 48000
    if x.size < nper:
        return np.zeros(0)
    f, _, Z = stft(x, fs=sr, window="hann", nperseg=nper, noverlap=nper - hop,
                   boundary="zeros", padded=True)
    # log-spaced bands (single bins at the bottom), so a low thud weighs as much as
    # a bright click
    edges = np.unique(np.concatenate([f[:8], np.geomspace(f[8], f[-1] + 1.0, 20)]))
    band = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 1)
    P = np.zeros((len(edges), Z.shape[1]))
    np.add.at(P, band, np.abs(Z) ** 2)
    P = P[np.bincount(band, minlength=len(edges)) > 0]
    floor = max(P.max(), 1e-30) * 1e-10                               # 100 dB below the loudest band
    size = 2 * (int(0.05 * sr / hop) // 2) + 1
    times = []
    # power smoothing against noise; rise over `lag` hops (default 3 ms each)
    ms_hops = sr / hop / 1000.0
    smooth, lag = max(1, int(round(smooth * 1000 * ms_hops))), max(1, int(round(rise * 1000 * ms_hops)))
    Ps = uniform_filter1d(P, smooth, axis=1, mode="nearest")
    L = 10.0 * np.log10(np.maximum(Ps, floor))                        # (bands, frames) dB
    # rise over `lag` hops, so an onset sweeping into the window is summed in one value
    flux = np.zeros(L.shape[1])
    rises = np.sort(np.maximum(L[:, lag:] - L[:, :-lag], 0.0), axis=0)
    flux[lag:] = rises[-ONSET_TOPK:].mean(axis=0)  # dB per band, over the bands that rise most
    local = median_filter(flux, size=size, mode="nearest")
    peaks, _ = find_peaks(flux, height=local + delta_db, distance=max(1, int(0.002 * sr / hop)))
    peaks = peaks[flux[peaks] >= maximum_filter1d(flux, 3)[peaks]]
    # frames reaching past the end see the track stop (a broadband step), not an onset;
    # a rise window reaching before the start sees it begin out of the zero padding
    peaks = peaks[peaks * hop + nper // 2 <= x.size]
    peaks = peaks[(peaks - lag) * hop - nper // 2 >= 0]
    if not refine:
        peaks = peaks.astype(np.float64) - 0.5 * lag
    for p in peaks:
        if not refine:
            times.append(p * hop / sr)
            continue
        c = p * hop  # frame centre (boundary-zero padding puts frame j's centre at j*hop)
        # isolated onsets fall 0.25 to 1.5 ms after the centre of the peak frame
        lo, hi = max(0, c - hop), min(len(x), c + 3 * hop)
        if hi > lo:
            times.append(_refine_onset(x, lo, hi, sr) / sr)
    times = np.sort(np.array(times))
    if floor_db is not None and times.size:
        n10 = max(1, sr // 100)
        rms = np.sqrt(np.maximum(uniform_filter1d(x * x, n10, mode="constant"), 0.0))
        peak = max(float(rms.max()), 1e-30)
        i0 = np.clip((times * sr).astype(int), 0, x.size - 1)
        i1 = np.minimum(i0 + int(0.04 * sr), x.size)
        loud = np.array([rms[a:b].max() if b > a else rms[a] for a, b in zip(i0, i1)])
        times = times[20 * np.log10(np.maximum(loud, 1e-30) / peak) >= -float(floor_db)]
    keep = []
    for t in times:
        if not keep or t - keep[-1] >= resolution:
            keep.append(t)
    return np.array(keep)


def _refine_onset(x: np.ndarray, lo: int, hi: int, sr: int, order: int = 24) -> int:
    """Sample in [lo, hi) where new excitation starts: ringing modes are an
    autoregressive process, so a linear predictor fitted on the 20 ms before ``lo``
    whitens the old tails and a new excitation stands out in the prediction
    residual. Returns the first sample whose residual energy (0.25 ms window)
    exceeds the pre-window level by a fifth of the rise to the window's peak."""
    from scipy.linalg import solve_toeplitz
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import lfilter

    t0 = max(0, lo - int(0.02 * sr))
    train = x[t0:lo]
    a = np.array([1.0])
    if train.size > 4 * order:
        r = np.correlate(train, train, mode="full")[train.size - 1:train.size + order]
        if r[0] > 1e-12:
            r = r * np.exp(-0.5 * (np.arange(order + 1) / (0.5 * order)) ** 2)  # lag window
            r[0] *= 1.0 + 1e-6                                                 # regularise
            a = np.concatenate([[1.0], -solve_toeplitz(r[:-1], r[1:])])
    seg = x[max(0, t0 - len(a)):hi]
    res = lfilter(a, [1.0], seg)[-(hi - t0):]        # residual over [t0, hi)
    e = uniform_filter1d(res * res, max(1, int(0.00025 * sr)), mode="nearest")
    pre = e[max(0, lo - t0 - int(0.003 * sr)): lo - t0]  # the residual level just before
    base = float(np.percentile(pre, 95)) if pre.size else 0.0
    peak = float(e[lo - t0:].max())
    above = np.nonzero(e[lo - t0:] >= base + 0.2 * (peak - base))[0]
    return lo + int(above[0]) if above.size else lo


def spectral_centroid(audio: np.ndarray, sample_rate: int, start: float = 0.0,
                      end: float | None = None) -> float:
    """Power-weighted mean frequency (Hz) of ``audio`` between ``start`` and ``end`` s."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    x = x[int(start * sample_rate): None if end is None else int(end * sample_rate)]
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    return float((f * p).sum() / max(p.sum(), 1e-30))


__all__ = ["synthesize", "event_map", "onsets", "contact_events", "spatial_gains", "body_sizes",
           "spectral_centroid", "soft_clip", "ACOUSTIC", "AcousticClass", "MASTER_GAIN"]
