"""Shared test fixtures.

`rollout_cache` gives trajectories of registered scenes, computed once per code
version and shared between pytest-xdist workers through a disk cache keyed by the
scene, its parameters, engine, seed and a hash of the scenes/ and sim/ sources (so
a code change never serves a stale trajectory).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

ROOT = Path(__file__).resolve().parents[1]


def _source_hash() -> str:
    h = hashlib.sha256()
    for pkg in ("scenes", "sim"):
        for p in sorted((ROOT / pkg).rglob("*")):
            if p.suffix in (".py", ".obj", ".stl", ".yaml", ".json") and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


class RolloutCache:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.code = _source_hash()
        self.memo = {}

    def __call__(self, scene_name: str, engine: str = "mujoco", seed: int = 0, **params):
        import scenes
        import sim
        from sim.trajectory import Trajectory
        key = hashlib.sha256(json.dumps([scene_name, engine, seed, params, self.code],
                                        sort_keys=True, default=str).encode()).hexdigest()[:20]
        if key in self.memo:
            return self.memo[key]
        path = self.dir / f"{scene_name}-{engine}-{key}.npz"
        if path.exists() and path.with_suffix(".json").exists():
            traj = Trajectory.load(path)
        else:
            traj = sim.rollout(scenes.load(scene_name, **params), engine=engine, seed=seed)
            tmp = self.dir / f"tmp-{os.getpid()}-{key}.npz"
            traj.save(tmp)
            os.replace(tmp.with_suffix(".json"), path.with_suffix(".json"))
            os.replace(tmp, path)
        self.memo[key] = traj
        return traj


@pytest.fixture(scope="session")
def rollout_cache(request):
    """Callable ``rollout_cache(name, engine="mujoco", seed=0, **params) -> Trajectory``."""
    return RolloutCache(Path(request.config.cache.mkdir("physcut_rollouts")))
