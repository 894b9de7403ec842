"""Controlled failures applied to clean tracks, and the detection table that
proves each metric catches the failure it is meant for.

A corruption is one registered function ``fn(tracks, size, rng) -> (Tracks, info)``
that returns the corrupted copy and where it struck (``info``: frame, object), or
``None`` when the tracks offer no valid place for it (e.g. no airborne stretch for
a mid-air kick). ``size`` is in the corruption's unit.

`detection_table` runs every metric on clean crops of the bundled scenes and on
corrupted copies (many random placements per corruption and size) and reports
true- and false-positive rates.
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import metrics as M
from .tracks import Tracks


@dataclass(frozen=True)
class CorruptionSpec:
    name: str
    fn: Callable
    metric: str          # the metric meant to catch it
    unit: str
    min_size: float      # the stated minimum size it must be detected at
    sizes: tuple         # sizes the table reports
    summary: str


CORRUPTIONS: dict[str, CorruptionSpec] = {}


def corruption(name: str, *, metric: str, unit: str, min_size: float, sizes: tuple):
    def deco(fn):
        CORRUPTIONS[name] = CorruptionSpec(name, fn, metric, unit, float(min_size), tuple(sizes),
                                           (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def apply(name: str, tracks: Tracks, size: float, seed: int = 0):
    """Apply corruption ``name`` of ``size``; returns (Tracks, info) or None."""
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption '{name}' (valid choices: {', '.join(CORRUPTIONS)})")
    return CORRUPTIONS[name].fn(tracks, float(size), np.random.default_rng(seed))


# --------------------------------------------------------------------------- helpers
def _unit(rng, horizontal=False) -> np.ndarray:
    v = rng.normal(size=3)
    if horizontal:
        v[2] = 0.0
    return v / np.linalg.norm(v)


def _dynamic(tr: Tracks) -> np.ndarray:
    return np.nonzero(tr.kind_mask("prop", "com"))[0]


def _with_arrays(tr: Tracks, **arrays) -> Tracks:
    return tr.replace(**{k: np.array(v, copy=True) for k, v in arrays.items()})


def _airborne_starts(tr: Tracks, o: int, before: int, after: int) -> np.ndarray:
    """Frames k with object o visible and contact-free (one-frame padded contacts,
    no cut) over intervals k-before+1 .. k+after."""
    F = tr.num_frames
    bad = tr.contact_mask(pad=1)[:, o] | ~tr.visible[:, o]
    bad[np.asarray(tr.cuts, np.int64)] = True
    from numpy.lib.stride_tricks import sliding_window_view
    if F < before + after + 1:
        return np.zeros(0, np.int64)
    win = sliding_window_view(bad, before + after, axis=0).any(-1)  # window starting at interval j
    ks = np.arange(len(win)) + before                             # k = j + before - 1 + 1
    ok = ~win & (ks < F)
    return ks[ok]


# --------------------------------------------------------------------------- corruptions
@corruption("teleport", metric="teleport_rate", unit="m", min_size=0.3, sizes=(0.05, 0.1, 0.3, 0.6))
def teleport(tr: Tracks, size: float, rng):
    """Shift one dynamic object by ``size`` m (random direction) from a random frame on."""
    cand = [(k, o) for o in _dynamic(tr) for k in np.nonzero(tr.visible[1:, o] & tr.visible[:-1, o])[0] + 1]
    if not cand:
        return None
    k, o = cand[rng.integers(len(cand))]
    pos = tr.positions.copy()
    pos[k:, o] += size * _unit(rng)
    return tr.replace(positions=pos), {"frame": int(k), "object": int(o)}


@corruption("kick", metric="ballistic_residual", unit="m/s", min_size=1.0, sizes=(0.25, 0.5, 1.0, 2.0))
def kick(tr: Tracks, size: float, rng):
    """Mid-air velocity kick: add ``size`` m/s (random direction) to an airborne
    object's velocity at frame k (positions follow: p_i += dv (t_i - t_{k-1}))."""
    cand = [(k, o) for o in _dynamic(tr) for k in _airborne_starts(tr, o, 4, 4)]
    if not cand:
        return None
    k, o = cand[rng.integers(len(cand))]
    dv = size * _unit(rng)
    return _add_velocity_change(tr, k, o, dv)


@corruption("scenery_shift", metric="static_geometry", unit="m", min_size=0.2, sizes=(0.005, 0.02, 0.2, 0.5))
def scenery_shift(tr: Tracks, size: float, rng):
    """Move one static object by ``size`` m (random horizontal direction) at a cut,
    for the rest of the timeline."""
    st = np.nonzero(tr.kind_mask("static"))[0]
    if not len(st) or not len(tr.cuts):
        return None
    c = int(tr.cuts[rng.integers(len(tr.cuts))])
    s = int(st[rng.integers(len(st))])
    pos = tr.positions.copy()
    pos[c:, s] += size * _unit(rng, horizontal=True)
    return tr.replace(positions=pos), {"frame": c, "object": s}


@corruption("penetration", metric="penetration", unit="m", min_size=0.05, sizes=(0.005, 0.02, 0.05, 0.1))
def penetration(tr: Tracks, size: float, rng):
    """Sink one prop resting on or touching something by ``size`` m for 3 frames."""
    if tr.shape is None:
        return None
    props = [o for o in np.nonzero(tr.kind_mask("prop"))[0] if tr.shape[o] in ("box", "sphere", "capsule", "cylinder")]
    cm = tr.contact_mask()
    cand = [(k, o) for o in props for k in np.nonzero(cm[:, o])[0] if k + 3 <= tr.num_frames]
    if not cand:
        return None
    k, o = cand[rng.integers(len(cand))]
    pos = tr.positions.copy()
    pos[k:k + 3, o, 2] -= size
    return tr.replace(positions=pos), {"frame": int(k), "object": int(o)}


@corruption("energy_injection", metric="energy", unit="fraction", min_size=0.1, sizes=(0.01, 0.05, 0.1, 0.3))
def energy_injection(tr: Tracks, size: float, rng):
    """Speed an airborne object up by a factor (1 + size) at frame k (positions follow)."""
    cand = [(k, o) for o in _dynamic(tr) for k in _airborne_starts(tr, o, 3, 3)
            if np.linalg.norm(_vel(tr)[k - 1, o]) > 0.5]
    if not cand:
        return None
    k, o = cand[rng.integers(len(cand))]
    dv = size * _vel(tr)[k - 1, o]
    return _add_velocity_change(tr, k, o, dv)


def _add_velocity_change(tr: Tracks, k: int, o: int, dv) -> tuple:
    """Object ``o`` gains velocity ``dv`` (m/s) from frame ``k`` on: later positions
    drift by ``dv * t``; returns the corrupted tracks and where the change is."""
    pos, vel = tr.positions.copy(), None if tr.velocities is None else tr.velocities.copy()
    t = (np.arange(tr.num_frames - k) + 1) / tr.fps
    pos[k:, o] += dv[None] * t[:, None]
    if vel is not None:
        vel[k:, o] += dv
    return tr.replace(positions=pos, velocities=vel), {"frame": int(k), "object": int(o)}


def _vel(tr):
    return M._velocity(tr.positions, tr.velocities, tr.fps, tr.cuts)


@corruption("audio_shift", metric="audio_alignment", unit="ms", min_size=40.0, sizes=(5.0, 15.0, 40.0, 80.0))
def audio_shift(tr: Tracks, size: float, rng):
    """Delay (or, with random sign, advance) the audio by ``size`` ms."""
    if tr.audio is None:
        return None
    n = int(round(size / 1000.0 * tr.sample_rate)) * (1 if rng.random() < 0.5 else -1)
    a = np.zeros_like(tr.audio)
    if n >= 0:
        a[:, n:] = tr.audio[:, :tr.audio.shape[1] - n]
    else:
        a[:, :n] = tr.audio[:, -n:]
    return tr.replace(audio=a), {"frame": 0, "object": -1, "shift_ms": n / tr.sample_rate * 1000}


@corruption("vanish", metric="persistence", unit="objects", min_size=1, sizes=(1, 2))
def vanish(tr: Tracks, size: float, rng):
    """``size`` dynamic objects in view before a cut are gone after it (rest of the shot)."""
    if not len(tr.cuts):
        return None
    c = int(tr.cuts[rng.integers(len(tr.cuts))])
    cand = [o for o in np.nonzero(~tr.kind_mask("static") & tr.visible[c - 1] & tr.visible[c])[0]]
    if tr.camera_K is not None and tr.positions is not None and tr.image_size is not None and cand:
        inside = M.expected_in_view(tr.positions[c - 1, cand], tr.camera_K[c], tr.camera_w2c[c],
                                    tr.image_size, margin=2.0)
        cand = [o for o, i in zip(cand, inside) if i]
    n = int(size)
    if len(cand) < n:
        return None
    objs = rng.choice(cand, size=n, replace=False)
    end = ([int(x) for x in tr.cuts if x > c] + [tr.num_frames])[0]
    vis = tr.visible.copy()
    vis[c:end, objs] = False
    return tr.replace(visible=vis), {"frame": c, "object": int(objs[0])}


def _shift_frames(tr: Tracks, k: int, drop: bool) -> Tracks:
    """Drop frame k (later frames move one earlier, the last repeats) or duplicate
    it (later frames move one later)."""
    ch = {}
    for name in ("positions", "velocities", "orientations", "visible", "pixels", "pixel_size"):
        a = getattr(tr, name)
        if a is None:
            continue
        a = a.copy()
        if drop:
            a[k:-1] = a[k + 1:].copy()
        else:
            a[k + 1:] = a[k:-1].copy()
        ch[name] = a
    ct = np.asarray(tr.contact_time, float).copy()
    tk = k / tr.fps
    if drop:
        ct[ct > tk] -= 1.0 / tr.fps
    else:
        ct[ct > tk] += 1.0 / tr.fps
    ch["contact_time"] = ct
    return tr.replace(**ch)


def _shift_random_frames(tr: Tracks, size: float, rng, drop: bool):
    """Drop (or repeat) ``size`` random frames inside shots; reports the first one."""
    F = tr.num_frames
    out = tr
    ks = []
    for _ in range(int(size)):
        k = int(rng.integers(2, F - 2))
        out = _shift_frames(out, k, drop=drop)
        ks.append(k)
    return out, {"frame": ks[0], "object": -1}


@corruption("drop_frames", metric="teleport_rate", unit="frames", min_size=1, sizes=(1, 2))
def drop_frames(tr: Tracks, size: float, rng):
    """Drop ``size`` frames inside shots (the clip plays them skipped)."""
    return _shift_random_frames(tr, size, rng, drop=True)


@corruption("duplicate_frames", metric="teleport_rate", unit="frames", min_size=1, sizes=(1, 2))
def duplicate_frames(tr: Tracks, size: float, rng):
    """Show ``size`` frames twice (later frames delayed by one each)."""
    return _shift_random_frames(tr, size, rng, drop=False)


# --------------------------------------------------------------------------- detection table
#: scenes left out of the last table, with the reason
SKIPPED: dict = {}

TRACK_METRICS = ("teleport_rate", "ballistic_residual", "cut_continuity", "contact_response",
                 "penetration", "energy", "static_geometry", "persistence", "audio_alignment")


def evaluate_flags(tr: Tracks, names=TRACK_METRICS) -> dict:
    """{metric: flagged (bool) or None when skipped} for the track metrics."""
    out = {}
    for n in names:
        r = M.run(n, tr)
        out[n] = None if "skipped" in r else bool(r["flagged"])
    return out


def clean_tracks(scene_names=None, engine="mujoco", seed=0, audio=True, progress=False, cache=None):
    """{scene: Tracks} from clean rollouts of the bundled scenes (with contact audio
    from `bridge.audio.synthesize` when ``audio``). ``cache(name)`` may supply the
    trajectory (tests pass their rollout cache)."""
    import scenes
    import sim
    from .tracks import from_trajectory
    names = list(scene_names or scenes.available())
    out = {}
    for n in names:
        try:
            traj = cache(n) if cache is not None else sim.rollout(scenes.load(n), engine=engine, seed=seed)
        except Exception as e:   # a scene that cannot be simulated is reported, not fatal
            SKIPPED[n] = f"{type(e).__name__}: {e}"
            continue
        a, sr, ev = None, 0, None
        if audio:
            from bridge.audio import synthesize
            a, ev = synthesize(traj, sample_rate=48000, seed=seed)
            sr = 48000
        out[n] = from_trajectory(traj, audio=a, sample_rate=sr, audio_events=ev)
    return out


def _crops(tr: Tracks, n: int, rng, min_len: int, need_cut: bool):
    F = tr.num_frames
    L = min(F, max(min_len, int(F * 0.6)))
    out = []
    for _ in range(n):
        for _try in range(20):
            s = int(rng.integers(0, F - L + 1))
            cr = tr.crop(s, s + L)
            if not need_cut or len(cr.cuts):
                out.append(cr)
                break
    return out


def detection_table(tracks_by_scene: dict, placements: int = 40, seed: int = 0, progress: bool = True,
                    corruptions=None) -> dict:
    """True/false-positive rates per metric, corruption and size.

    Clean samples: ``placements`` random crops (60% of the timeline) per scene,
    every track metric run on each (false positives: a metric flags a clean crop).
    Corrupted samples: for each corruption and size, ``placements`` crops per scene
    with one random placement each (scenes offering no valid placement are
    skipped). Returns {"clean": {metric: {fp, n}}, "rows": [...], "matrix": ...}.
    """
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    names = list(corruptions or CORRUPTIONS)
    clean_flags = {m: [] for m in TRACK_METRICS}
    crops = {}
    for scene, tr in tracks_by_scene.items():
        crops[scene] = _crops(tr, placements, rng, min_len=int(2 * tr.fps), need_cut=True)
    t0 = time.time()
    for scene, cs in tqdm(crops.items(), desc="clean crops", disable=not progress):
        for cr in cs:
            for m, f in evaluate_flags(cr).items():
                if f is not None:
                    clean_flags[m].append(f)
    rows, matrix = [], {}
    jobs = [(c, s) for c in names for s in CORRUPTIONS[c].sizes]
    for cname, size in tqdm(jobs, desc="corruptions", disable=not progress):
        spec = CORRUPTIONS[cname]
        hits = {m: [] for m in TRACK_METRICS}
        scenes_used = []
        for scene, cs in crops.items():
            used = False
            for i, cr in enumerate(cs):
                res = spec.fn(cr, float(size), np.random.default_rng([seed, i, zlib.crc32(cname.encode()), int(size * 1000)]))
                if res is None:
                    continue
                used = True
                at_min = abs(size - spec.min_size) < 1e-9
                for m, f in evaluate_flags(res[0], TRACK_METRICS if at_min else (spec.metric,)).items():
                    if f is not None:
                        hits[m].append(f)
            if used:
                scenes_used.append(scene)
        meant = hits[spec.metric]
        fp = clean_flags[spec.metric]
        rows.append({"corruption": cname, "size": size, "unit": spec.unit, "metric": spec.metric,
                     "tpr": float(np.mean(meant)) if meant else float("nan"), "n": len(meant),
                     "fpr": float(np.mean(fp)) if fp else float("nan"), "n_clean": len(fp),
                     "at_min_size": bool(abs(size - spec.min_size) < 1e-9), "scenes": scenes_used})
        if abs(size - spec.min_size) < 1e-9:
            matrix[cname] = {m: (float(np.mean(v)) if v else None) for m, v in hits.items()}
    clean = {m: {"fpr": float(np.mean(v)) if v else None, "n": len(v)} for m, v in clean_flags.items()}
    return {"clean": clean, "rows": rows, "matrix": matrix, "placements": placements, "seed": seed,
            "scenes": list(tracks_by_scene), "seconds": round(time.time() - t0, 1)}


def table_markdown(result: dict) -> str:
    """The detection table as Markdown."""
    lines = ["# Plausibility metrics: detection of controlled corruptions", "",
             f"Scenes: {', '.join(result['scenes'])}; {result['placements']} random crops per scene "
             f"(clean and corrupted, one random placement per corrupted crop); seed {result['seed']}.",
             "TPR: share of corrupted crops the meant metric flags; FPR: share of clean crops it flags.",
             *[f"Skipped scene {k}: {v}" for k, v in result.get("skipped", {}).items()],
             "", "| corruption | size | metric | TPR | FPR | n (corrupted / clean) | meets 95% / 1% |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ok = ""
        if r["at_min_size"]:
            ok = "yes" if (r["tpr"] >= 0.95 and r["fpr"] <= 0.01) else "**no**"
        lines.append(f"| {r['corruption']} | {r['size']:g} {r['unit']}{' (min)' if r['at_min_size'] else ''} | "
                     f"{r['metric']} | {r['tpr']:.3f} | {r['fpr']:.3f} | {r['n']} / {r['n_clean']} | {ok} |")
    lines += ["", "## Every metric on every corruption (at the stated minimum size): TPR", ""]
    mets = list(TRACK_METRICS)
    lines.append("| corruption | " + " | ".join(mets) + " |")
    lines.append("|---|" + "---|" * len(mets))
    for c, row in result["matrix"].items():
        lines.append(f"| {c} | " + " | ".join("-" if row[m] is None else f"{row[m]:.2f}" for m in mets) + " |")
    lines.append("| *clean (FPR)* | " + " | ".join(
        "-" if result["clean"][m]["fpr"] is None else f"{result['clean'][m]['fpr']:.3f}" for m in mets) + " |")
    return "\n".join(lines) + "\n"


def run_table(out_md="benchmarks/results/plausibility_detection.md", placements=40, seed=0,
              scene_names=None, progress=True, cache=None) -> dict:
    """Roll out the bundled scenes, build the table, write Markdown + JSON."""
    trs = clean_tracks(scene_names, progress=progress, cache=cache)
    res = detection_table(trs, placements=placements, seed=seed, progress=progress)
    res["skipped"] = {k: v for k, v in SKIPPED.items() if not scene_names or k in scene_names}
    p = Path(out_md)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(table_markdown(res))
    p.with_suffix(".json").write_text(json.dumps(res, indent=1))
    return res
