"""Simulation speed of `rooftop_chase` on MuJoCo, measured in one run.

    python -m benchmarks.sim_speed [--scene rooftop_chase] [--repeats 3] [--reference dominoes]
                                   [-o benchmarks/results/sim_speed.json]

Figures (median over ``--repeats``, one CPU core, wall clock):
    * raw_step_rate: plain ``mj_step`` of the compiled scene model over the whole
      timeline from the initial state, no controller, no recording (steps/s; for
      props-only scenes the very same motion as the rollout, for characters a
      standing-still pose held by the actuators);
    * controlled_step_rate: the engine stepped with the character controller on
      (PD targets, contact-gated root assist), no recording;
    * rollout_step_rate: the full ``sim.rollout`` (controller, contact events,
      frame sampling, cameras), physics steps / total wall time including compile;
    * ratios to the raw rate and real-time factors (simulated seconds per second).
Targets from the issue: rollout >= 0.8 x raw, and >= 10 x real time.
``--reference`` adds the same figures (one repeat) for a props-only scene, which
separates the recorder's overhead from the character controller's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def _raw_rate(scene, steps: int | None = None) -> float:
    """mj_step over the scene's whole timeline (or ``steps``) from its initial state."""
    import mujoco
    from sim.mujoco_engine import compile_scene
    comp = compile_scene(scene)
    m = comp.model
    d = mujoco.MjData(m)
    d.qpos[:] = comp.init_qpos
    d.qvel[:] = comp.init_qvel
    mujoco.mj_forward(m, d)
    steps = steps or (scene.frame_count - 1) * scene.substeps
    t = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(m, d)
    return steps / (time.perf_counter() - t)


def _controlled_rate(scene) -> float:
    import sim
    from sim.controller import Controller
    eng = sim.make_engine(scene)
    ctrl = Controller(scene, eng) if scene.characters else None
    n = (scene.frame_count - 1) * scene.substeps
    dt = eng.timestep
    t = time.perf_counter()
    for k in range(n):
        if ctrl is not None:
            ctrl.before_step(k, k * dt)
        eng.step()
        if ctrl is not None:
            ctrl.after_step(eng.contacts())
    return n / (time.perf_counter() - t)


def _rollout_rate(scene) -> float:
    import sim
    n = (scene.frame_count - 1) * scene.substeps
    t = time.perf_counter()
    sim.rollout(scene)
    return n / (time.perf_counter() - t)


def measure(scene_name: str = "rooftop_chase", repeats: int = 3, raw_steps: int | None = None) -> dict:
    import mujoco
    import scenes
    scene = scenes.load(scene_name)
    raw = statistics.median(_raw_rate(scene, raw_steps) for _ in range(repeats))
    ctl = statistics.median(_controlled_rate(scene) for _ in range(repeats))
    rol = statistics.median(_rollout_rate(scene) for _ in range(repeats))
    hz = scene.physics_hz
    return {
        "scene": scene_name, "physics_hz": hz, "fps": scene.fps, "duration_s": scene.duration,
        "bodies": len(scene.statics) + len(scene.props), "characters": len(scene.characters),
        "raw_step_rate": round(raw, 1),
        "controlled_step_rate": round(ctl, 1),
        "rollout_step_rate": round(rol, 1),
        "rollout_vs_raw": round(rol / raw, 3),
        "controlled_vs_raw": round(ctl / raw, 3),
        "raw_realtime_factor": round(raw / hz, 2),
        "rollout_realtime_factor": round(rol / hz, 2),
        "targets": {"rollout_vs_raw": 0.8, "rollout_realtime_factor": 10.0},
        "meets_targets": bool(rol / raw >= 0.8 and rol / hz >= 10.0),
        "repeats": repeats, "mujoco": mujoco.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="physcut bench sim_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default="rooftop_chase")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference", default="dominoes", help="props-only scene measured once ('' to skip)")
    ap.add_argument("-o", "--out", default=str(Path(__file__).parent / "results" / "sim_speed.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    res = measure(args.scene, args.repeats)
    if args.reference:
        res["reference"] = measure(args.reference, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    for k in ("raw_step_rate", "controlled_step_rate", "rollout_step_rate", "rollout_vs_raw",
              "rollout_realtime_factor", "meets_targets"):
        print(f"{k:>24}: {res[k]}")
    if "reference" in res:
        r = res["reference"]
        print(f"{'reference ' + r['scene']:>24}: raw {r['raw_step_rate']}, rollout {r['rollout_step_rate']} "
              f"({r['rollout_vs_raw']} x raw, {r['rollout_realtime_factor']} x real time)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
