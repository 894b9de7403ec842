"""How many impacts of a scene's contact audio are audible as their own onset.

    python -m benchmarks.audio_onsets [--scenes rooftop_chase drop_test ...] [--tol-ms 2]
                                      [--isolation-ms 50] [-o benchmarks/results/audio_onsets.json]

For each scene: roll it out (MuJoCo, seed 0), synthesise the contact track
(`bridge.audio.synthesize`), detect onsets in it (`bridge.audio.onsets`) and count
the impact events with a detected onset within ``--tol-ms``: over all impacts, and
over the isolated ones (no other impact within ``--isolation-ms``). In busy mixes
impacts closer than a few ms merge and quiet ones hide under slide noise, so the
first share is lower than the second.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(name: str, tol: float = 0.002, isolation: float = 0.05, sample_rate: int = 48000) -> dict:
    import scenes
    import sim
    from bridge import audio as A
    traj = sim.rollout(scenes.load(name))
    x, events = A.synthesize(traj, sample_rate=sample_rate)
    det = np.sort(np.asarray(A.onsets(x, sample_rate), float))
    t = np.sort(np.array([e["time"] for e in events if e["kind"] == "impact"], float))
    if det.size and t.size:
        i = np.clip(np.searchsorted(det, t), 1, det.size - 1) if det.size > 1 else np.zeros(t.size, int)
        nearest = np.minimum(np.abs(det[i] - t), np.abs(det[np.maximum(i - 1, 0)] - t))
        hit = nearest <= tol
    else:
        hit = np.zeros(t.size, bool)
    gap = np.minimum(np.diff(np.r_[-np.inf, t]), np.diff(np.r_[t, np.inf]))
    iso = gap > isolation
    return {"scene": name, "impacts": int(t.size), "detected_onsets": int(det.size),
            "share_with_onset": round(float(hit.mean()), 3) if t.size else None,
            "isolated_impacts": int(iso.sum()),
            "isolated_share_with_onset": round(float(hit[iso].mean()), 3) if iso.any() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="physcut bench audio", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="+", default=["rooftop_chase", "brawl", "bowling", "drop_test"])
    ap.add_argument("--tol-ms", type=float, default=2.0)
    ap.add_argument("--isolation-ms", type=float, default=50.0)
    ap.add_argument("-o", "--out", default=str(Path(__file__).parent / "results" / "audio_onsets.json"))
    args = ap.parse_args(argv)
    rows = [measure(s, args.tol_ms / 1000, args.isolation_ms / 1000) for s in args.scenes]
    res = {"tol_ms": args.tol_ms, "isolation_ms": args.isolation_ms, "scenes": rows,
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    for r in rows:
        print(f"{r['scene']:>14}: {r['impacts']} impacts, {r['share_with_onset']} with an onset within "
              f"{args.tol_ms:g} ms; isolated {r['isolated_impacts']}: {r['isolated_share_with_onset']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
