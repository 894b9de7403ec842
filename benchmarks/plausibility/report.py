"""`score`: load any supported input, run every applicable metric, write a report.

Inputs: a `Trajectory` (object or ``.npz``/``.json`` pair), `Tracks` (object,
``.npz`` + sidecar or a single ``.json``), or a generated video (``.mp4``) with its
conditioning directory. The report is a dict (JSON-serialisable); `write_report`
saves it as ``report.json``, ``report.md`` and PNG plots marking offending frames.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import metrics as M
from .tracks import Tracks, TracksError, from_trajectory

#: headline number of each metric in summaries
HEADLINE = {"teleport_rate": "rate", "ballistic_residual": "p95", "cut_continuity": "max_rel",
            "contact_response": "restitution_out_of_range", "penetration": "p95_m", "energy": "drift_max",
            "static_geometry": "max_shift_m", "persistence": "vanished", "audio_alignment": "median_offset_ms",
            "camera_path": "rot_err_median_deg", "physical_variance": "ratio", "cut_timing": "f1"}


class InputError(ValueError):
    """An input `score` cannot read (unknown format, missing files)."""


def load_input(path, conditioning=None):
    """(kind, object) for a path: ("trajectory", Trajectory), ("tracks", Tracks) or
    ("video", (frames, audio, sample_rate, fps, Conditioning))."""
    p = Path(path)
    if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"):
        from .video import read_video
        if not p.exists():
            raise InputError(f"{p}: file not found")
        cond_dir = Path(conditioning) if conditioning else p.parent
        from bridge.conditioning import Conditioning
        return "video", (read_video(p), Conditioning.load(cond_dir))
    if p.is_dir():
        raise InputError(f"{p}: a directory; give a trajectory (.npz), tracks (.npz/.json) or a video "
                         f"(.mp4) with --conditioning DIR")
    if p.suffix not in (".npz", ".json"):
        raise InputError(f"{p}: unknown input format '{p.suffix}' (expected a physcut trajectory .npz, "
                         f"tracks .npz/.json, or a video .mp4)")
    side = p.with_suffix(".json")
    if not side.exists():
        raise InputError(f"{side}: file not found (every input has a .json sidecar or is one)")
    try:
        fmt = json.loads(side.read_text()).get("format")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise InputError(f"{side}: not valid JSON ({e})") from None
    if fmt == "physcut.trajectory":
        from sim.trajectory import Trajectory
        return "trajectory", Trajectory.load(p.with_suffix(".npz"))
    if fmt == "physcut.tracks":
        return "tracks", Tracks.load(p)
    raise InputError(f"{side}: unknown format {fmt!r} (expected 'physcut.trajectory' or 'physcut.tracks')")


def _trajectory_tracks(traj, audio=True, seed=0) -> Tracks:
    a, sr, ev = None, 0, None
    if audio and traj.contact_time.shape[0]:
        try:
            from bridge.audio import synthesize
        except ImportError:
            synthesize = None
        if synthesize is not None:
            a, ev = synthesize(traj, sample_rate=48000, seed=seed)
            sr = 48000
    return from_trajectory(traj, audio=a, sample_rate=sr, audio_events=ev)


def physical_spread(traj, k: int = 2, perturb: float = 1e-4, progress=False) -> list[np.ndarray]:
    """Positions (F, O, 3) of ``k`` re-simulations of ``traj``'s scene with tiny
    perturbations (`sim.rollout(scene, seed=j, perturb=...)`), in Tracks object order."""
    import sim
    scene = traj.scene_obj()
    out = []
    for j in range(1, k + 1):
        r = sim.rollout(scene, engine=traj.engine, seed=traj.seed + j, perturb=perturb, progress=progress)
        t = from_trajectory(r)
        n = min(t.num_frames, traj.num_frames)
        pos = np.full((traj.num_frames,) + t.positions.shape[1:], np.nan)
        pos[:n] = t.positions[:n]
        out.append(np.nan_to_num(pos))
    return out


def score(inp, *, conditioning=None, audio=True, variance: int = 0, reference=None, seed=0,
          metrics=None, progress=False) -> dict:
    """Score ``inp`` (Trajectory, Tracks, or a path to one, or a video path) with
    every registered metric that has its inputs. ``variance`` > 0 re-simulates the
    scene that many times with tiny perturbations for metric 11 (trajectories, or
    videos whose conditioning came from a trajectory passed as ``reference``)."""
    t0 = time.time()
    extras: dict = {}
    name = getattr(inp, "__class__", type(inp)).__name__
    kind = None
    if isinstance(inp, (str, Path)):
        name = str(inp)
        kind, obj = load_input(inp, conditioning)
    else:
        obj = inp
        kind = "tracks" if isinstance(inp, Tracks) else "trajectory"
    calibration = None
    floor_tracks = None
    if isinstance(reference, (str, Path)):
        from sim.trajectory import Trajectory
        reference = Trajectory.load(reference)
    if kind == "trajectory":
        traj = obj
        tracks = _trajectory_tracks(traj, audio=audio, seed=seed)
        if variance:
            ref = reference if reference is not None else traj
            extras["reference"] = from_trajectory(ref).positions
            extras["spread"] = physical_spread(ref, variance, progress=progress)
    elif kind == "tracks":
        tracks = obj
    elif kind == "video":
        from .video import estimate, video_extras
        (frames, audio_arr, sr), cond = obj
        kinds = radius = None
        if reference is not None:          # the trajectory the conditioning was rendered from
            ref_tracks = from_trajectory(reference)
            B = len(reference.body_names)
            kinds = reference.body_kind
            radius = np.array([M._bound_radius(s, z) for s, z in zip(ref_tracks.shape[:B], ref_tracks.sizes[:B])])
            radius = radius if np.all(radius > 0) else None
        tracks, ids = estimate(frames, cond, audio=audio_arr, sample_rate=sr, kinds=kinds, radius=radius)
        extras.update(video_extras(frames, cond, ids=ids, kinds=kinds))
        floor_tracks = _floor_tracks(cond, kinds, radius, tracks.num_frames)
        if variance and reference is not None:
            B = len(reference.body_names)
            extras["reference"] = reference.body_pos[:tracks.num_frames]
            extras["spread"] = [s[:tracks.num_frames, :B] for s in physical_spread(reference, variance, progress=progress)]
        calibration = extras.pop("calibration", None)
    else:
        raise InputError(f"cannot score {type(inp).__name__}")
    names = metrics or M.available()
    floor_results = {}
    if kind == "video" and floor_tracks is not None:
        for n in names:
            if n in TRACK_FLOOR:
                try:
                    floor_results[n] = M.run(n, floor_tracks, {})
                except Exception as e:
                    floor_results[n] = {"error": str(e)}
    results = {}
    for n in names:
        try:
            results[n] = M.run(n, tracks, extras)
        except Exception as e:  # a metric failing must not lose the others' results
            results[n] = {"error": f"{type(e).__name__}: {e}"}
    for n, fr in floor_results.items():
        r = results.get(n, {})
        if "skipped" in r or "error" in r or "skipped" in fr or "error" in fr:
            continue
        key, margin = TRACK_FLOOR[n]
        v, f = r.get(key), fr.get(key)
        if v is None or f is None or not (np.isfinite(v) and np.isfinite(f)):
            continue
        r["noise_floor"] = {key: f, "source": "the same estimation on the conditioning's own render"}
        r["vs_floor"] = float(v / max(abs(f), 1e-9))
        r["flagged_absolute"] = r.get("flagged")
        r["flagged"] = bool(v > 2.0 * f + margin)   # beyond twice the render's noise floor
    if "static_video" in extras:
        sv = dict(extras["static_video"])
        floor = (calibration or {}).get("static_geometry")
        flagged = False
        if floor and np.isfinite(sv.get("sampson_median_px", np.nan)):
            sv["sampson_vs_floor"] = sv["sampson_median_px"] / max(floor.get("sampson_median_px", 0) or 0, 0.25)
            flagged = sv["sampson_median_px"] > 3 * (floor.get("sampson_median_px") or 0) + 1.0
        sv.update(flagged=flagged, frames=[int(c) for c in tracks.cuts] if flagged else [])
        results["static_geometry"] = sv if "skipped" in results.get("static_geometry", {}) else \
            dict(results["static_geometry"], video=sv)
    if calibration:
        for n, floor in calibration.items():
            if n in results and "skipped" not in results[n] and n != "static_geometry":
                results[n]["noise_floor"] = floor
        cp, fl = results.get("camera_path", {}), calibration.get("camera_path")
        if fl is not None and "rot_err_median_deg" in cp:
            v, f = cp["rot_err_median_deg"], fl.get("rot_err_median_deg")
            cp["flagged_absolute"] = cp["flagged"]
            # relative to the render's floor; no floor measurable -> no verdict
            cp["flagged"] = bool(f is not None and np.isfinite(f) and np.isfinite(v) and v > 2 * f + 1.0)
    summary = {n: _headline(n, r) for n, r in results.items()}
    return {"input": name, "kind": kind, "frames": tracks.num_frames, "fps": tracks.fps,
            "objects": tracks.num_objects, "cuts": [int(c) for c in tracks.cuts], "source": tracks.source,
            "metrics": _clean(results), "summary": _clean(summary),
            "flagged": [n for n, r in results.items() if r.get("flagged")],
            "seconds": round(time.time() - t0, 3), "_tracks": tracks}


#: track metrics re-scored on tracks estimated from the conditioning's own render
#: for video inputs: (number compared, absolute margin over twice the floor)
TRACK_FLOOR = {"teleport_rate": ("rate", 0.005), "ballistic_residual": ("p95", 1.0),
               "cut_continuity": ("max_rel", 0.1), "energy": ("drift_max", 0.05),
               "persistence": ("vanished", 0.5), "static_geometry": ("max_shift_m", 0.05)}


def _floor_tracks(cond, kinds, radius, F):
    """Tracks estimated from the conditioning's own render (``rgb`` layer, else
    ``segmentation_rgb``): the noise floor of video estimation."""
    from .video import estimate, timeline_layer
    for layer in ("rgb", "segmentation_rgb"):
        ref = timeline_layer(cond, layer)
        if ref is not None:
            return estimate(ref[:F], cond, kinds=kinds, radius=radius)[0]
    return None


def _headline(n, r):
    if "skipped" in r:
        return "skipped"
    if "error" in r:
        return "error"
    return r.get(HEADLINE.get(n, ""), None)


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if not k.startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


# --------------------------------------------------------------------------- writing
def report_markdown(report: dict) -> str:
    lines = [f"# Plausibility report: {report['input']}", "",
             f"{report['kind']}, {report['frames']} frames at {report['fps']:g} fps, {report['objects']} objects, "
             f"cuts at frames {report['cuts']}. Scored in {report['seconds']} s.", "",
             "| # | metric | headline | flagged | details |", "|---|---|---|---|---|"]
    for n, r in report["metrics"].items():
        num = M.METRICS[n].number if n in M.METRICS else ""
        if "skipped" in r:
            lines.append(f"| {num} | {n} | - | - | skipped: {r['skipped']} |")
            continue
        if "error" in r:
            lines.append(f"| {num} | {n} | - | - | error: {r['error']} |")
            continue
        det = ", ".join(f"{k}={_fmt(v)}" for k, v in r.items() if k not in ("flagged", "frames", "events", "objects", "detected"))
        fr = r.get("frames") or []
        more = f"; frames {fr[:10]}{'...' if len(fr) > 10 else ''}" if fr else ""
        lines.append(f"| {num} | {n} | {_fmt(report['summary'].get(n))} | {'**yes**' if r.get('flagged') else 'no'} | {det}{more} |")
    return "\n".join(lines) + "\n"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def plot_report(report: dict, tracks: Tracks | None, out: Path) -> list[Path]:
    """timeline.png: offending frames of every metric on one time axis (cuts
    dashed); one PNG per flagged metric with the involved objects' speed over
    time and its offending frames marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    names = list(report["metrics"])
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(names) + 1.2))
    for y, n in enumerate(names):
        fr = report["metrics"][n].get("frames") or []
        ax.scatter(fr, [y] * len(fr), marker="|", s=200, color="crimson")
    for c in report["cuts"]:
        ax.axvline(c, color="grey", ls="--", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, report["frames"])
    ax.set_xlabel("frame")
    ax.set_title("offending frames per metric (dashed: cuts)")
    fig.tight_layout()
    p = out / "timeline.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)
    if tracks is None or tracks.positions is None:
        return paths
    vel = M._velocity(tracks.positions, tracks.velocities, tracks.fps, tracks.cuts)
    speed = np.linalg.norm(vel, axis=-1)
    step = np.zeros_like(speed)
    step[1:] = np.linalg.norm(np.nan_to_num(np.diff(tracks.positions, axis=0)), axis=-1)
    t = np.arange(tracks.num_frames)
    for n, r in report["metrics"].items():
        if not r.get("flagged") or not r.get("frames"):
            continue
        objs = r.get("objects") or list(np.argsort(-np.nanmax(step, 0))[:3])
        fig, axes = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True)
        for o in objs[:6]:
            axes[0].plot(t, step[:, o], lw=1, label=tracks.ids[o])
            axes[1].plot(t, speed[:, o], lw=1, label=tracks.ids[o])
        for ax in axes:
            for f in r["frames"]:
                ax.axvline(f, color="crimson", alpha=0.5, lw=1)
            for c in report["cuts"]:
                ax.axvline(c, color="grey", ls="--", lw=0.8)
        axes[0].set_ylabel("|p_i - p_(i-1)| (m)")
        axes[1].set_ylabel("speed (m/s)")
        axes[1].set_xlabel("frame")
        axes[0].set_title(f"{n}: offending frames (red), cuts (dashed)")
        axes[0].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        p = out / f"{n}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


def write_report(report: dict, out_dir) -> Path:
    """report.json + report.md + plots/*.png under ``out_dir``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    tracks = report.get("_tracks")
    clean = _clean(report)
    (d / "report.json").write_text(json.dumps(clean, indent=1))
    (d / "report.md").write_text(report_markdown(clean))
    plot_report(clean, tracks, d / "plots")
    return d


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="physcut bench plausibility",
                                description="Score physical plausibility and cross-cut consistency.")
    p.add_argument("input", nargs="?", help="trajectory .npz, tracks .npz/.json, or a video .mp4")
    p.add_argument("--conditioning", help="conditioning directory of a video input (default: the video's folder)")
    p.add_argument("--trajectory", help="the trajectory a video's conditioning was rendered from (object kinds "
                   "and sizes for lifting; reference for --variance)")
    p.add_argument("--corruptions", action="store_true", help="run the corruption detection table on the bundled scenes")
    p.add_argument("--baseline", action="store_true", help="persistent world vs per-shot worlds side-by-side table")
    p.add_argument("--scenes", nargs="*", help="bundled scenes for --corruptions/--baseline (default: all)")
    p.add_argument("--placements", type=int, default=40, help="random placements per corruption, size and scene")
    p.add_argument("--variance", type=int, default=0, help="re-simulations for metric 11 (physical variance)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-audio", action="store_true", help="do not synthesise contact audio for trajectories")
    p.add_argument("-o", "--out", default=None, help="output directory (default: benchmarks/results)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.input or args.corruptions or args.baseline):
        build_parser().print_usage(sys.stderr)
        print("error: give an INPUT, --corruptions or --baseline", file=sys.stderr)
        return 2
    out = Path(args.out or "benchmarks/results")
    if args.input:
        try:
            rep = score(args.input, conditioning=args.conditioning, audio=not args.no_audio,
                        variance=args.variance, seed=args.seed, progress=True, reference=args.trajectory)
        except (InputError, TracksError, ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        d = write_report(rep, out if args.out else out / "plausibility_report")
        print(report_markdown(_clean(rep)))
        print(f"report written to {d}")
    if args.corruptions:
        from .corruptions import run_table, table_markdown
        md = (out if args.out else Path("benchmarks/results")) / "plausibility_detection.md"
        res = run_table(md, placements=args.placements, seed=args.seed, scene_names=args.scenes)
        print(table_markdown(res))
        print(f"table written to {md}")
    if args.baseline:
        from .baseline import run_baseline_table
        md = (out if args.out else Path("benchmarks/results")) / "plausibility_baseline.md"
        print(run_baseline_table(md, scene_names=args.scenes, seed=args.seed))
        print(f"table written to {md}")
    return 0
