"""Per-shot worlds: the baseline that shows what a persistent world prevents.

A segment-stitching generator has no shared state between shots: every shot's
world starts fresh from the scene's initial layout at the shot's start. We build
exactly that from the simulator: shot s of the stitched timeline shows frames
0 .. len_s - 1 of a fresh rollout of the scene (the world reset to its initial
state at the shot start), while the cameras and shot list stay those of the
scene. Rollouts are deterministic for a seed, so one fresh rollout serves every
shot. `side_by_side` scores the persistent and the stitched timeline on the
cross-cut metrics (1, 3, 7, 8).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics as M
from .tracks import from_trajectory

SIDE_BY_SIDE = ("teleport_rate", "cut_continuity", "static_geometry", "persistence")

_PER_FRAME = ("body_pos", "body_quat", "body_linvel", "body_angvel", "joint_angles", "keypoints",
              "com_pos", "com_vel", "com_acc", "support", "assist_force")


def per_shot_world(traj, fresh=None, engine: str | None = None, seed: int | None = None):
    """The stitched timeline of ``traj``: every shot replays a world reset to the
    initial layout at the shot's start. ``fresh``: a rollout of the same scene from
    its initial state (default: a new `sim.rollout`)."""
    if fresh is None:
        import sim
        fresh = sim.rollout(traj.scene_obj(), engine=engine or traj.engine,
                            seed=traj.seed if seed is None else seed)
    F = traj.num_frames
    src = np.zeros(F, np.int64)            # frame of the fresh world shown at each timeline frame
    starts = [0] + traj.cut_frames()
    bounds = starts + [F]
    for a, b in zip(bounds[:-1], bounds[1:]):
        src[a:b] = np.arange(b - a)
    src = np.minimum(src, fresh.num_frames - 1)
    changes = {k: np.asarray(getattr(fresh, k))[src] for k in _PER_FRAME}
    # contacts of the fresh world, replayed at every shot's offset
    dt = 1.0 / traj.fps
    ks = {k: [] for k in ("contact_time", "contact_frame", "contact_body", "contact_pos",
                          "contact_normal", "contact_impulse", "contact_speed", "contact_onset")}
    for a, b in zip(bounds[:-1], bounds[1:]):
        sel = (fresh.contact_frame > 0) & (fresh.contact_frame < b - a)
        for k in ks:
            v = np.asarray(getattr(fresh, k))[sel]
            if k == "contact_time":
                v = v + a * dt
            elif k == "contact_frame":
                v = v + a
            ks[k].append(v)
    for k, v in ks.items():
        changes[k] = np.concatenate(v)
    order = np.argsort(changes["contact_time"], kind="stable")
    for k in ks:
        changes[k] = changes[k][order]
    return traj.replace(extra=dict(traj.extra or {}, baseline="per-shot worlds"), **changes)


def side_by_side(traj, fresh=None) -> dict:
    """{metric: {"persistent": result, "per_shot": result}} on metrics 1, 3, 7, 8."""
    stitched = per_shot_world(traj, fresh=fresh)
    a, b = from_trajectory(traj), from_trajectory(stitched)
    return {m: {"persistent": M.run(m, a), "per_shot": M.run(m, b)} for m in SIDE_BY_SIDE}


_SHOW = {"teleport_rate": ("count", "teleports"), "cut_continuity": ("max_contact_residual_m", "contact residual m"),
         "static_geometry": ("max_shift_m", "max static shift m"), "persistence": ("reverted", "objects reverted to the initial layout")}


def _cell(m, r):
    if "skipped" in r:
        return "skipped"
    key, _ = _SHOW[m]
    extra = ""
    if m == "cut_continuity":
        extra = f", free max_rel {r['max_rel']:.2g}"
    if m == "persistence":
        extra = f", vanished {r['vanished']}, duplicated {r['duplicated']}, frozen {r['frozen']}"
    v = r[key]
    return f"{v:.3g}{extra}{' **(flagged)**' if r.get('flagged') else ''}"


def run_baseline_table(out_md="benchmarks/results/plausibility_baseline.md", scene_names=None, seed=0,
                       cache=None) -> str:
    """Roll out the bundled scenes and write the persistent vs per-shot table."""
    import scenes
    import sim
    names = list(scene_names or scenes.available())
    lines = ["# Persistent world vs per-shot worlds (segment stitching)", "",
             "Per-shot worlds: every shot restarts from the scene's initial layout at its start "
             "(`benchmarks.plausibility.baseline.per_shot_world`). Metrics 1, 3, 7, 8; "
             f"engine mujoco, seed {seed}.", "",
             "| scene | metric | persistent world | per-shot worlds |", "|---|---|---|---|"]
    for n in names:
        try:
            traj = cache(n) if cache is not None else sim.rollout(scenes.load(n), engine="mujoco", seed=seed)
        except Exception as e:   # a scene that cannot be simulated is reported, not fatal
            lines.append(f"| {n} | - | skipped: {type(e).__name__}: {e} | - |")
            continue
        if not traj.cut_frames():
            continue
        res = side_by_side(traj, fresh=traj)   # the clean rollout *is* the fresh world from t = 0
        for m in SIDE_BY_SIDE:
            lines.append(f"| {n} | {M.METRICS[m].number}. {m} ({_SHOW[m][1]}) | "
                         f"{_cell(m, res[m]['persistent'])} | {_cell(m, res[m]['per_shot'])} |")
    lines += ["", "Static geometry reads 0 in both: the per-shot worlds reset only the dynamic state; "
              "statics never move in either, so metric 7 cannot separate them on trajectories "
              "(on generated videos it scores re-imagined scenery)."]
    text = "\n".join(lines) + "\n"
    p = Path(out_md)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return text
