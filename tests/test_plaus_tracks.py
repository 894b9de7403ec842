"""Track format: round trips and clear errors on bad input; the report and CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.plausibility import InputError, Tracks, TracksError, main, score, write_report

from test_plaus_metrics import thrown


def test_roundtrip_npz_and_json(tmp_path):
    tr = thrown()
    vis = tr.visible.copy()
    vis[5, 1] = False
    pos = tr.positions.copy()
    pos[5, 1] = np.nan                     # NaN is fine where the object is not visible
    tr = tr.replace(visible=vis, positions=pos)
    for name in ("t.npz", "t.json"):
        back = Tracks.load(tr.save(tmp_path / name))
        assert back.ids == tr.ids and back.num_frames == tr.num_frames
        np.testing.assert_array_equal(back.visible, tr.visible)
        np.testing.assert_allclose(back.positions[vis], tr.positions[vis])
        assert back.contact_ids.shape == (0, 2)


def test_unknown_format(tmp_path):
    with pytest.raises(TracksError, match="unknown track format '.txt'"):
        Tracks.load(tmp_path / "x.txt")
    (tmp_path / "x.json").write_text(json.dumps({"format": "somebody.else"}))
    with pytest.raises(TracksError, match="unknown format 'somebody.else'"):
        Tracks.load(tmp_path / "x.json")
    with pytest.raises(InputError, match="unknown format 'somebody.else'"):
        score(tmp_path / "x.json")
    with pytest.raises(InputError, match="unknown input format '.csv'"):
        score(tmp_path / "x.csv")


def test_missing_fields(tmp_path):
    p = thrown().save(tmp_path / "t.json")
    d = json.loads(p.read_text())
    del d["arrays"]["visible"]
    p.write_text(json.dumps(d))
    with pytest.raises(TracksError, match="missing field 'visible'"):
        Tracks.load(p)
    with pytest.raises(TracksError, match="missing field 'positions'"):
        thrown().replace(positions=None, velocities=None).validate()


def test_mismatched_frame_counts():
    tr = thrown()
    with pytest.raises(TracksError, match="field 'velocities'.*frame count 96.*mismatched frame counts"):
        tr.replace(velocities=tr.velocities[:-1]).validate()
    with pytest.raises(TracksError, match="field 'sizes'.*object count"):
        tr.replace(sizes=tr.sizes[:1]).validate()


def test_nan_names_field_frame_and_object():
    tr = thrown()
    pos = tr.positions.copy()
    pos[17, 1, 2] = np.nan
    with pytest.raises(TracksError, match="field 'positions': NaN/inf at frame 17 for visible object 'ball'"):
        tr.replace(positions=pos).validate()
    with pytest.raises(TracksError, match="field 'masses': non-finite value"):
        tr.replace(masses=np.array([0.0, np.inf])).validate()


def test_bad_kind_and_cuts():
    tr = thrown()
    with pytest.raises(TracksError, match=r"kind\[1\].*unknown kind 'robot'"):
        tr.replace(kind=("static", "robot")).validate()
    with pytest.raises(TracksError, match="field 'cuts'"):
        tr.replace(cuts=np.array([50, 40])).validate()


def test_score_writes_report_with_plots(tmp_path):
    tr = thrown()
    p = tr.positions.copy()
    p[20:, 1] += (0.3, 0, 0)
    rep = score(tr.replace(positions=p))
    assert rep["metrics"]["teleport_rate"]["frames"] == [20] and "teleport_rate" in rep["flagged"]
    d = write_report(rep, tmp_path / "rep")
    assert json.loads((d / "report.json").read_text())["summary"]["teleport_rate"] > 0
    assert "**yes**" in (d / "report.md").read_text()
    assert (d / "plots" / "timeline.png").stat().st_size > 1000
    assert (d / "plots" / "teleport_rate.png").exists()


def test_cli_main_on_tracks_file(tmp_path, capsys):
    f = thrown().save(tmp_path / "clip.npz")
    assert main([str(f), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").exists()
    assert main([str(tmp_path / "nope.npz")]) == 2
    assert "file not found" in capsys.readouterr().err


from hypothesis import given, settings, strategies as st


@settings(max_examples=25, deadline=None)
@given(F=st.integers(2, 12), O=st.integers(1, 4), seed=st.integers(0, 2 ** 16), fmt=st.sampled_from(["npz", "json"]))
def test_roundtrip_property(tmp_path_factory, F, O, seed, fmt):
    """Any valid tracks (random visibility, NaN where unseen, contacts, cuts) survive save/load."""
    rng = np.random.default_rng(seed)
    vis = rng.random((F, O)) > 0.3
    pos = rng.normal(size=(F, O, 3))
    pos[~vis] = np.nan
    K = int(rng.integers(0, 4))
    cuts = np.unique(rng.integers(1, F, size=int(rng.integers(0, 3))))
    tr = Tracks(fps=float(rng.integers(1, 60)), ids=tuple(f"o{i}" for i in range(O)), kind=("prop",) * O,
                visible=vis, cuts=cuts, positions=pos, contact_time=np.sort(rng.random(K)),
                contact_ids=rng.integers(-1, O, (K, 2))).validate()
    back = Tracks.load(tr.save(tmp_path_factory.mktemp("t") / f"t.{fmt}"))
    np.testing.assert_array_equal(back.visible, vis)
    np.testing.assert_allclose(back.positions[vis], pos[vis])
    np.testing.assert_array_equal(back.cuts, cuts)
    np.testing.assert_array_equal(back.contact_ids, tr.contact_ids)
