"""Characters on the PyBullet backend: the bundled `brawl` (blows land, the thug
falls as a ragdoll, airborne frames are ballistic). The same checks run on MuJoCo
in tests/test_sim_characters.py; tolerances here are PyBullet's, stated below."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet")

GRAVITY = np.array([0.0, 0.0, -9.81])


def _tilt_deg(q: np.ndarray) -> np.ndarray:
    upz = 1 - 2 * (q[:, 1] ** 2 + q[:, 2] ** 2)
    return np.degrees(np.arccos(np.clip(upz, -1, 1)))


@pytest.fixture(scope="module")
def brawl(rollout_cache):
    return rollout_cache("brawl", engine="pybullet")


def test_brawl_blows_land_and_the_thug_falls(brawl):
    traj = brawl
    a = np.array([n.startswith("brawler/") for n in traj.body_names])
    b = np.array([n.startswith("thug/") for n in traj.body_names])
    cb = traj.contact_body
    hits = (a[cb[:, 0]] & b[cb[:, 1]]) | (b[cb[:, 0]] & a[cb[:, 1]])
    assert hits.any() and traj.contact_impulse[hits, 0].max() > 1.0        # N s (measured 39)
    assert _tilt_deg(traj.body_quat[:, traj.body_index("thug/torso")])[-1] > 45.0
    # the brawler ends on its feet (torso within 30 degrees of upright; it leans
    # further while landing its jump on PyBullet: 70 degrees at most, 27 on MuJoCo)
    assert _tilt_deg(traj.body_quat[:, traj.body_index("brawler/torso")])[-1] < 30.0


def test_brawl_airborne_frames_are_ballistic(brawl):
    """No assist force without contact; the centre of mass then accelerates at g,
    per frame within 1.0 m/s^2 and on average within 0.25 (the MuJoCo test's
    bounds; measured on PyBullet: max 0.05, mean 0.02)."""
    traj = brawl
    for ci, name in enumerate(traj.character_names):
        air = ~traj.support[:, ci]
        air[0] = False
        if name == "brawler":
            assert air.sum() >= 8, "the brawler should leave the ground (its jump)"
        if not air.any():
            continue
        assert np.all(traj.assist_force[air, ci] == 0.0)
        err = np.linalg.norm(traj.com_acc[air, ci] - GRAVITY, axis=1)
        assert err.max() <= 1.0 and err.mean() <= 0.25, (name, err.max(), err.mean())
