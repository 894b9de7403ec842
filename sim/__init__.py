"""physcut simulation: compile a `scenes.Scene` into an engine and roll out one
continuous timeline into a `Trajectory`.

    traj = sim.rollout(scenes.load("rooftop_chase"), engine="mujoco", seed=0)

The stepping loop here, the character controller (`sim.controller`), the recorder
(`sim.recorder`) and the camera rigs (`sim.cameras`) are engine-independent; an
engine only implements `sim.engine.Engine`. Engines register lazily in `ENGINES`
(name -> "module:Class") so importing `sim` never imports a physics engine.

An engine may offer a native stepper (`Engine.native_stepper`): MuJoCo's runs the
physics steps of a frame, the controller's per-step gate and assist, its control
updates and the frame sampling in C (`sim/_native.c`), bit-identical to the Python
loop (`_run_python`), which PyBullet uses and ``PHYSCUT_NATIVE=0`` forces.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import numpy as np

from .engine import DivergenceError, Engine
from .trajectory import COCO17, Trajectory, TrajectoryError

#: Engine registry: name -> "module:Class" (imported on first use).
ENGINES: dict[str, str] = {
    "mujoco": "sim.mujoco_engine:MujocoEngine",
    "pybullet": "sim.pybullet_engine:PybulletEngine",
}


def engine_class(name: str) -> type:
    """The `Engine` subclass registered as ``name``."""
    from scenes import SceneError
    if name not in ENGINES:
        raise SceneError("engine", f"unknown engine '{name}'", choices=sorted(ENGINES))
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_engine(scene, engine: str = "mujoco", base_dir: Optional[str | Path] = None) -> Engine:
    """Validate ``scene`` and compile it into engine ``engine``."""
    scene.validate()
    return engine_class(engine)(scene, base_dir=base_dir)


def perturbed(scene, seed: int, perturb: float):
    """A copy of ``scene`` whose props get random initial velocity offsets:
    N(0, ``perturb``) m/s per linear and N(0, ``perturb``) rad/s per angular
    component, drawn from ``seed``. Used for "second takes" of the same scene."""
    scene = scene.copy()
    rng = np.random.default_rng([seed, 0x5EED])
    for p in scene.props:
        p.linvel = tuple(float(v) for v in np.add(p.linvel, rng.normal(0.0, perturb, 3)))
        p.angvel = tuple(float(v) for v in np.add(p.angvel, rng.normal(0.0, perturb, 3)))
    return scene


def rollout(scene, engine: str = "mujoco", seed: int = 0, *, perturb: float = 0.0,
            progress: bool = False, base_dir: Optional[str | Path] = None) -> Trajectory:
    """Simulate the whole timeline of ``scene`` and return its `Trajectory`.

    ``seed`` picks the handheld camera noise (and the ``perturb`` offsets); the same
    scene, seed and engine give a bit-identical trajectory. ``perturb`` > 0 adds
    random initial prop velocities (see `perturbed`). ``base_dir`` resolves relative
    mesh paths.

    Raises `scenes.SceneError` for bad input, `scenes.ChoreographyError` for an
    impossible choreography (before any step), and `DivergenceError` (carrying the
    partial ``.trajectory`` up to the last good frame) if the state becomes NaN or
    explodes.
    """
    from .recorder import Recorder

    if perturb:
        scene.validate()
        scene = perturbed(scene, seed, perturb)
    canonical = scene.canonical()                            # validates too
    eng = engine_class(engine)(scene, base_dir=base_dir)     # validated above
    ctrl = None
    if scene.characters:
        from .controller import Controller
        ctrl = Controller(scene, eng)
    rec = Recorder(scene, eng, seed, controller=ctrl, canonical=canonical)
    kicks = _scripted_kicks(scene, eng)
    pushes = _scripted_pushes(scene, eng)

    frames = range(1, scene.frame_count)
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, desc=f"simulate {scene.name} ({engine})", unit="frame")
    native = eng.native_stepper(ctrl)
    if native is not None:
        status = _run_native(scene, eng, ctrl, rec, native, kicks, pushes, frames)
    else:
        status = _run_python(scene, eng, ctrl, rec, kicks, pushes, frames)
    traj = rec.finish(status)
    if status != "ok":
        raise DivergenceError(status, traj)
    return traj


def _diverged(step: int, dt: float, frame: int, bad: str) -> str:
    return f"diverged at t={step * dt:.6f} s (physics step {step}, frame {frame}): {bad}"


def _apply_scripted(eng, kicks, pushes, step: int, dt: float) -> None:
    """Apply the scripted kicks (impulse over one step) and pushes active in physics
    step ``step`` (time ``step * dt``)."""
    t = step * dt
    for body, impulse, point in kicks.get(step, ()):
        eng.apply_force(body, impulse / dt, point=point)
    for body, force, start, end in pushes:
        if start <= t < end:
            eng.apply_force(body, force)


def _run_python(scene, eng, ctrl, rec, kicks, pushes, frames) -> str:
    """The rollout loop, one Python iteration per physics step. Returns the status."""
    dt = eng.timestep
    substeps = scene.substeps
    step = 0
    for _frame in frames:
        for _ in range(substeps):
            t = step * dt
            _apply_scripted(eng, kicks, pushes, step, dt)
            if ctrl is not None:
                ctrl.before_step(step, t)
            eng.step()
            step += 1
            bad = eng.check_step()
            if bad is not None:
                return _diverged(step, dt, _frame, bad)
            contacts = eng.contacts()
            if ctrl is not None:
                ctrl.after_step(contacts)
            rec.after_step(step, contacts)
        rec.end_frame()
    return "ok"


def _run_native(scene, eng, ctrl, rec, native, kicks, pushes, frames) -> str:
    """The same rollout as `_run_python`, with the physics steps between two control
    updates (or scripted forces, or frame ends) taken in one call of the engine's
    native stepper. Steps with a scripted kick or push are taken one at a time, the
    forces applied from Python first, as in the Python loop."""
    import bisect
    from .controller import CONTROL_DECIMATION as D

    dt = eng.timestep
    substeps = scene.substeps
    total = (scene.frame_count - 1) * substeps
    special = set(kicks)
    for _body, _force, start, end in pushes:
        # the steps k with start <= k * dt < end (the same test as the Python loop)
        k0 = max(int(start / dt) - 1, 0)
        special.update(k for k in range(k0, min(int(end / dt) + 2, total))
                       if start <= k * dt < end)
    special = sorted(special)
    last = scene.frame_count - 1
    if hasattr(rec, "sampler"):
        native.bind_recorder(rec)
    step = 0
    for _frame in frames:
        s_end = step + substeps
        while step < s_end:
            t = step * dt
            py_control = ctrl is not None and not native.control
            if py_control and step % D == 0:
                native.measured()
                ctrl.update(t)
                native.load()
            i = bisect.bisect_left(special, step)
            if i < len(special) and special[i] == step:
                _apply_scripted(eng, kicks, pushes, step, dt)
                n = 1
            else:
                stop = s_end if not py_control else min(s_end, (step // D + 1) * D)
                if i < len(special):
                    stop = min(stop, special[i])
                n = stop - step
            done, fault = native.run(step, n)
            step += done
            if fault:
                bad = eng.check_step()
                if bad is not None:
                    steps, contacts = native.take()
                    keep = steps < step          # the failed step's contacts are not kept
                    if keep.any():
                        rec.add_steps(steps[keep], contacts.subset(keep))
                    return _diverged(step, dt, _frame, bad)
        if rec.flush_due or _frame == last:        # hand the contacts over in bulk
            steps, contacts = native.take()
            if len(contacts):
                rec.add_steps(steps, contacts)
        native.end_frame()
        rec.end_frame()
    return "ok"


def _scripted_kicks(scene, eng) -> dict[int, list]:
    names = eng.body_names
    out: dict[int, list] = {}
    for imp in scene.impulses:
        step = int(round(imp.time * scene.physics_hz))
        point = None if imp.point is None else np.asarray(imp.point, float)
        out.setdefault(step, []).append((names.index(imp.body), np.asarray(imp.impulse, float), point))
    return out


def _scripted_pushes(scene, eng) -> list:
    names = eng.body_names
    return [(names.index(f.body), np.asarray(f.force, float), f.start, f.end) for f in scene.forces]


__all__ = ["rollout", "ENGINES", "engine_class", "make_engine", "perturbed", "Engine",
           "DivergenceError", "Trajectory", "TrajectoryError", "COCO17"]
