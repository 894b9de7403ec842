"""Video path: tracks estimated from a rendered video and its conditioning."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.plausibility import metrics as M
from benchmarks.plausibility import video as V


@pytest.fixture(scope="module")
def drop_video(rollout_cache):
    from bridge.render import render
    traj = rollout_cache("drop_test")
    cond = render(traj, layers=("segmentation", "rgb"), resolution=(192, 108), audio=False)
    return traj, cond


def test_palette_estimation_recovers_positions(drop_video):
    traj, cond = drop_video
    seg = V.timeline_layer(cond, "segmentation_rgb")
    tr = V.tracks_from_video(seg, cond, mode="palette", kinds=traj.body_kind)
    props = np.array(traj.body_kind) == "prop"
    vis = tr.visible & props[None]
    assert vis.mean() > 0.5 * props.mean()
    err = np.linalg.norm(tr.positions - traj.body_pos, axis=-1)[vis]
    assert np.median(err) < 0.25          # ground-plane lifting at 192 x 108
    assert list(tr.cuts) == traj.cut_frames()


def test_video_vanish_and_cut_timing(drop_video):
    traj, cond = drop_video
    seg = V.timeline_layer(cond, "segmentation_rgb").copy()
    tr = V.tracks_from_video(seg, cond, mode="palette", kinds=traj.body_kind)
    assert M.run("persistence", tr)["vanished"] == 0
    c = traj.cut_frames()[0]
    o = traj.body_index("wooden_cube")
    ids = V.segment_palette(seg, cond.palette)
    gone = seg[c:]
    gone[ids[c:] == o + 1] = cond.palette[0]          # the cube is not there after the cut
    tr2 = V.tracks_from_video(seg, cond, mode="palette", kinds=traj.body_kind)
    r = M.run("persistence", tr2)
    assert r["vanished"] >= 1 and c in r["frames"]
    rgb = V.timeline_layer(cond, "rgb")
    assert M.cut_timing(rgb, traj.cut_frames())["f1"] == 1.0


def test_score_video_file(drop_video, tmp_path):
    from bridge.assemble import write_mp4
    from benchmarks.plausibility import score
    traj, cond = drop_video
    d = cond.save(tmp_path / "cond")
    write_mp4(d / "clip.mp4", V.timeline_layer(cond, "rgb"), traj.fps)
    traj.save(tmp_path / "traj.npz")
    rep = score(d / "clip.mp4", reference=tmp_path / "traj.npz")
    assert rep["kind"] == "video" and rep["frames"] == traj.num_frames
    assert rep["metrics"]["cut_timing"]["f1"] == 1.0
    assert "noise_floor" in rep["metrics"]["cut_timing"]
