"""Rebuild docs/cut_consistency.png: the built-in generator across cuts, anchored vs i.i.d. noise.

One row per cut: the first cuts of the held-out scenes ``random_scene(900036 + k)``
(the fresh set of the surface-memory run of `benchmarks.generator_quality`), in order,
not picked. Columns, each pair the last frame before the cut and the first frame after
it: the preview render, the shipped pipeline (anchored noise and the surface memory,
`generator.carry`), anchored noise alone (``carry=False``), i.i.d. noise (all seed 0),
and the co-visible static pixels the cross-cut error is measured on (white). Under each pair
its mean absolute colour error on those pixels (the benchmark's `cut_consistency`,
one seed here, where the benchmark averages three).

    MUJOCO_GL=egl .venv/bin/python docs/cut_figure.py [--cuts 4] [--threads 2] [-o docs/cut_consistency.png]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCALE = 3


def main(argv=None) -> int:
    import torch
    import bridge
    import generator
    import sim
    from benchmarks.generator_quality import HELD_OUT_SEED, cut_consistency, cut_correspondences, static_ids
    from generator.data import random_scene
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuts", type=int, default=4)
    p.add_argument("--first", type=int, default=36, help="first held-out scene index")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--output", default=str(Path(__file__).with_name("cut_consistency.png")))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    pipe = generator.load("builtin")
    rows, k = [], a.first
    while len(rows) < a.cuts:
        name = f"random_{HELD_OUT_SEED + k}"
        traj = sim.rollout(random_scene(HELD_OUT_SEED + k), engine="mujoco", seed=0)
        k += 1
        statics = static_ids(traj)
        cond = bridge.render(traj, seed=0, **pipe.render_options())
        corr = cut_correspondences(cond, statics)
        if not corr:
            continue
        corr = corr[:1]
        i, ia, (va, ua), (vb, ub) = corr[0]
        preview = [(s.frames, s.layers["rgb"]) for s in cond.shots]
        anchored = pipe(cond, style="preview", seed=0, progress=False).shot_frames
        pipe.carry = False
        noise_only = pipe(cond, style="preview", seed=0, progress=False).shot_frames
        pipe.carry = True
        iid = pipe(cond, style="preview", seed=0, noise="iid", progress=False).shot_frames
        H, W = cond.shots[i].layers["rgb"].shape[1:3]
        mask_a, mask_b = np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8)
        mask_a[va, ua], mask_b[vb, ub] = 255, 255
        pairs, labels = [], []
        for title, frames in (("preview", preview), ("anchored + memory", anchored), ("anchored noise only", noise_only),
                              ("i.i.d.", iid)):
            pairs.append((frames[i - 1][1][ia], frames[i][1][0]))
            labels.append(f"{title} {cut_consistency(cond, frames, statics, corr)[0]:.1f}")
        pairs.append((mask_a, mask_b))
        labels.append(f"{name} cut {i}")
        rows.append((pairs, labels))
        print(name, labels, flush=True)
    gap, text_h = 6, 14
    pw = 2 * W * SCALE
    img = Image.new("RGB", (len(rows[0][0]) * (pw + gap), len(rows) * (H * SCALE + text_h + gap)), "white")
    draw = ImageDraw.Draw(img)
    for r, (pairs, labels) in enumerate(rows):
        y = r * (H * SCALE + text_h + gap)
        for c, ((fa, fb), label) in enumerate(zip(pairs, labels)):
            x = c * (pw + gap)
            pair = np.concatenate([np.asarray(fa, np.uint8)[..., :3], np.asarray(fb, np.uint8)[..., :3]], axis=1)
            img.paste(Image.fromarray(pair).resize((pw, H * SCALE), Image.NEAREST), (x, y))
            draw.text((x + 2, y + H * SCALE + 1), label, fill="black")
    img.save(a.output)
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
