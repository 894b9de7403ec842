"""Simulation speed of `rooftop_chase` on MuJoCo, measured in one run.

    python -m benchmarks.sim_speed [--scene rooftop_chase] [--repeats 5] [--reference dominoes]
                                   [-o benchmarks/results/sim_speed.json]

Figures (median over ``--repeats``, one thread -- OMP/MKL/OpenBLAS threads are set
to 1 before numpy loads, and MuJoCo steps single-threaded -- wall clock):
    * raw_step_rate: plain ``mj_step`` of the compiled scene model (the same model
      the rollout steps) over the whole timeline from the initial state, controller
      off, no recording (steps/s; for props-only scenes the very same motion as the
      rollout, for characters their actuators holding the standing pose);
    * controlled_step_rate: the engine stepped with the character controller on
      (PD targets, contact-gated root assist), no recording;
    * rollout_step_rate: the full ``sim.rollout`` (controller, contact events,
      frame sampling, cameras), physics steps / total wall time including compile;
    * ratios to the raw rate and real-time factors (simulated seconds per second).
The repeats interleave raw, controlled and rollout runs so that a change in machine
load hits all three alike; the 1-minute load average before and after is recorded
(this machine is shared). Targets from the issue: rollout >= 0.8 x raw, and >= 10 x
real time. ``--reference`` adds the same figures (one repeat) for a props-only
scene, which separates the recorder's overhead from the character controller's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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


def measure(scene_name: str = "rooftop_chase", repeats: int = 5, raw_steps: int | None = None) -> dict:
    import mujoco
    import scenes
    import sim
    scene = scenes.load(scene_name)
    sim.rollout(scene)            # warm-up: imports, contact calibration tables
    load_before = os.getloadavg()
    raw, ctl, rol = [], [], []
    for _ in range(repeats):
        raw.append(_raw_rate(scene, raw_steps))
        ctl.append(_controlled_rate(scene))
        rol.append(_rollout_rate(scene))
    load_after = os.getloadavg()
    raw_m, ctl_m, rol_m = (statistics.median(x) for x in (raw, ctl, rol))
    hz = scene.physics_hz
    return {
        "scene": scene_name, "physics_hz": hz, "fps": scene.fps, "duration_s": scene.duration,
        "bodies": len(scene.statics) + len(scene.props), "characters": len(scene.characters),
        "raw_step_rate": round(raw_m, 1),
        "controlled_step_rate": round(ctl_m, 1),
        "rollout_step_rate": round(rol_m, 1),
        "rollout_vs_raw": round(rol_m / raw_m, 3),
        "controlled_vs_raw": round(ctl_m / raw_m, 3),
        "raw_realtime_factor": round(raw_m / hz, 2),
        "rollout_realtime_factor": round(rol_m / hz, 2),
        "targets": {"rollout_vs_raw": 0.8, "rollout_realtime_factor": 10.0},
        "meets_targets": bool(rol_m / raw_m >= 0.8 and rol_m / hz >= 10.0),
        "runs": {"raw": [round(x, 1) for x in raw], "controlled": [round(x, 1) for x in ctl],
                 "rollout": [round(x, 1) for x in rol]},
        "repeats": repeats, "threads": 1,
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in load_after],
        "mujoco": mujoco.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="physcut bench sim_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default="rooftop_chase")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference", default="dominoes", help="props-only scene measured once ('' to skip)")
    ap.add_argument("-o", "--out", default=str(Path(__file__).parent / "results" / "sim_speed.json"))
    args = ap.parse_args(argv)
    for var in _THREAD_VARS:      # effective only if numpy is not loaded yet (python -m)
        os.environ[var] = "1"
    res = measure(args.scene, args.repeats)
    if args.reference:
        res["reference"] = measure(args.reference, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    for k in ("raw_step_rate", "controlled_step_rate", "rollout_step_rate", "rollout_vs_raw",
              "rollout_realtime_factor", "meets_targets", "loadavg_1_5_15_before"):
        print(f"{k:>24}: {res[k]}")
    if "reference" in res:
        r = res["reference"]
        print(f"{'reference ' + r['scene']:>24}: raw {r['raw_step_rate']}, rollout {r['rollout_step_rate']} "
              f"({r['rollout_vs_raw']} x raw, {r['rollout_realtime_factor']} x real time)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
