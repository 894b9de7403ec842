"""Rebuild docs/builtin_rooftop.png from the output of `make demo` (out/demo).

Rows: segmentation colours, albedo, preview render, built-in generator; two frames
per shot (at 1/3 and 2/3 of it), each 64x64 frame shown at 3x. Also prints, per shot,
the patch seams of the generated frames: the mean colour step across the denoiser's
patch boundaries (every 8 pixels: 4x4 latent patches, 2x latent factor) over the mean
step elsewhere, across rows and across columns (1.0: no seams).

    .venv/bin/python docs/builtin_figure.py [out/demo] [docs/builtin_rooftop.png]
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

demo = Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo")
out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).with_name("builtin_rooftop.png"))
gen = np.load(demo / "generated" / "frames.npz")
cols = []
for shot in sorted(demo.glob("conditioning/shot_*.npz")):
    c = np.load(shot)
    images = gen[f"{shot.stem}_images"]
    for i in (len(images) // 3, 2 * len(images) // 3):
        cols.append(np.concatenate([c["layer__segmentation_rgb"][i], c["layer__albedo"][i], c["layer__rgb"][i],
                                    images[i]], axis=0))
    f = images.astype(np.float64)
    seam = []
    for axis in (1, 2):
        step = np.abs(np.diff(f, axis=axis)).mean(axis=tuple(a for a in range(4) if a != axis))
        on = np.arange(step.size) % 8 == 7
        seam.append(step[on].mean() / step[~on].mean())
    print(f"{shot.stem}: patch seams across rows {seam[0]:.2f}, across columns {seam[1]:.2f}")
grid = np.concatenate(cols, axis=1).astype(np.uint8)
Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(out)
print(f"wrote {out}")
