"""physcut plausibility suite: metrics, track format, corruptions, per-shot baseline.

    from benchmarks.plausibility import score, write_report
    report = score(traj)                 # a Trajectory, Tracks, or a path (.npz/.json/.mp4)
    write_report(report, "out/")         # report.json, report.md, plots/*.png

`physcut bench plausibility INPUT [--corruptions] [--baseline] [-o DIR]` (or
`python -m benchmarks.plausibility ...`) runs `main`.
"""
from .metrics import METRICS, available, metric, run
from .report import InputError, load_input, main, score, write_report
from .tracks import TRACKS_SCHEMA, Tracks, TracksError, from_trajectory

__all__ = ["METRICS", "available", "metric", "run", "score", "write_report", "main", "load_input",
           "InputError", "Tracks", "TracksError", "from_trajectory", "TRACKS_SCHEMA"]
