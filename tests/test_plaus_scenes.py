"""Acceptance of the plausibility suite on clean rollouts of every bundled scene,
the per-shot baseline, and (slow) the corruption detection table."""
from __future__ import annotations

import numpy as np
import pytest

import scenes
from benchmarks.plausibility import metrics as M
from benchmarks.plausibility.tracks import from_trajectory

SCENES = sorted(scenes.available())


@pytest.fixture(scope="session")
def clean_scored(rollout_cache):
    """{scene: (trajectory, Tracks with contact audio)} computed once per session."""
    from bridge.audio import synthesize
    out = {}

    def get(name):
        if name not in out:
            traj = rollout_cache(name)
            audio, events = synthesize(traj, sample_rate=48000, seed=0)
            out[name] = traj, from_trajectory(traj, audio=audio, sample_rate=48000, audio_events=events)
        return out[name]
    return get


@pytest.mark.parametrize("name", SCENES)
def test_clean_rollout_is_plausible(clean_scored, name):
    traj, tr = clean_scored(name)
    assert traj.status == "ok"
    tele = M.run("teleport_rate", tr)
    assert tele["count"] == 0 and tele["rate"] == 0.0, tele["frames"]
    bal = M.run("ballistic_residual", tr)
    assert bal["p95"] < 0.5, bal
    cont = M.run("cut_continuity", tr)
    if "skipped" not in cont:
        assert cont["max_rel"] < 1e-6 and not cont["flagged"], cont
    pen = M.run("penetration", tr)
    assert pen["p95_ratio"] <= 1.0, pen          # within the engine's stated tolerance
    aud = M.run("audio_alignment", tr)
    if "skipped" not in aud:
        assert abs(aud["median_offset_ms"]) < 5.0, aud
    assert not M.run("static_geometry", tr).get("flagged")
    assert not M.run("persistence", tr).get("flagged")


def test_per_shot_baseline_fails_across_cuts(rollout_cache):
    from benchmarks.plausibility.baseline import side_by_side
    traj = rollout_cache("drop_test")
    res = side_by_side(traj, fresh=traj)
    assert not res["teleport_rate"]["persistent"]["flagged"]
    assert res["teleport_rate"]["per_shot"]["flagged"]
    assert not res["cut_continuity"]["persistent"]["flagged"]
    assert res["cut_continuity"]["per_shot"]["flagged"]
    assert not res["persistence"]["persistent"]["flagged"]
    assert res["persistence"]["per_shot"]["reverted"] > 0


def test_corruptions_detected_on_a_real_rollout(clean_scored):
    """A few placements of each required corruption at its stated minimum size."""
    from benchmarks.plausibility import corruptions as C
    _, tr = clean_scored("drop_test")
    for name in ("teleport", "kick", "scenery_shift", "audio_shift", "vanish"):
        spec = C.CORRUPTIONS[name]
        for seed in range(3):
            res = spec.fn(tr, spec.min_size, np.random.default_rng(seed))
            assert res is not None, name
            assert M.run(spec.metric, res[0])["flagged"], (name, seed, res[1])


@pytest.mark.slow
def test_detection_table_meets_targets(rollout_cache, tmp_path):
    from benchmarks.plausibility.corruptions import run_table
    res = run_table(tmp_path / "det.md", placements=40, progress=False, cache=rollout_cache)
    for r in res["rows"]:
        if r["at_min_size"] and r["corruption"] in ("teleport", "kick", "scenery_shift", "audio_shift", "vanish"):
            assert r["tpr"] >= 0.95 and r["fpr"] <= 0.01, r


def test_physical_variance_separates_stitched_from_persistent(rollout_cache):
    """Metric 11: the per-shot timeline deviates from the persistent world far more
    than two perturbed re-simulations deviate from each other."""
    from benchmarks.plausibility import score
    from benchmarks.plausibility.baseline import per_shot_world
    traj = rollout_cache("drop_test")
    clean = score(traj, variance=2, audio=False)["metrics"]["physical_variance"]
    assert clean["ratio"] == 0.0 and clean["spread_m"] > 0
    stitched = per_shot_world(traj, fresh=traj)
    r = score(stitched, variance=2, audio=False, reference=traj)["metrics"]["physical_variance"]
    assert r["ratio"] > 3.0 and r["flagged"]
