"""What the built-in generator's initial noise does to cross-cut consistency.

The generator-quality benchmark scores the shipped pipeline (anchored noise vs i.i.d.
noise) on held-out scenes. This one takes the pipeline apart on the *tuning* scenes
(``generator.data.random_scene(800000 + k)``, which neither training nor the held-out
benchmark uses; the choices of the pipeline were made on them), control on, style
"preview", averaged over ``--seeds`` noise seeds (render seed of the anchored noise,
seed of the i.i.d. noise):

    frozen_raw    point anchored noise the same in every frame (the bridge's default,
                  no time period), as the model was sampled before
    period_raw    point anchored noise with the model's window as its time period
                  (`bridge.noise`, "Time")
    period_std    the same, standardised per latent channel over each window
                  (`generator.builtin.standardise_channels`)
    body_std      the same with each body's noise mean in a frame drawn from the body
                  and frame (`bridge.noise`, "Anchored means")
    octaves_std   the same with the means over every coarser octave of anchor cells and
                  every body drawn from the surface (the shipped noise)
    pasted_std    octaves_std with, at every cut, the noise of the first window after it
                  at co-visible static latent pixels replaced by the noise of the same
                  phase before the cut at the pixels they reproject to, wherever that
                  source feeds one latent pixel only (where the second view magnifies
                  the first, several would repeat one value, and the noise would no
                  longer be white): a surface's noise the same on both sides of the cut
                  at most of the pixels the cut error is measured on, the best that
                  anchoring could hand over there
    integral_std  integral anchored noise (better anchored across views), period and
                  standardisation, no means
    carry_std     octaves_std with the surface memory (`generator.carry`): the shipped
                  pipeline. Every other variant runs without it (``carry=False``), so
                  that they compare the noise alone
    iid_raw       i.i.d. N(0, 1) noise
    iid_std       i.i.d. noise standardised the same way (the shipped i.i.d. mode)

Per variant: cross-cut colour error on co-visible static pixels (as in
`benchmarks.generator_quality`), PSNR against the preview render and per-pixel
structure agreement. Writes ``benchmarks/results/noise_ablation.json``.

``--bands`` measures instead which spatial frequencies of the initial noise move the
model's colours (what anchoring has to carry across a cut): per scene, frames generated
from i.i.d. noise, then from the same noise with one radial band of every frame's
spectrum (cycles per frame, `BANDS`) swapped for another draw's (still white noise),
and from the other draw entirely; reported: the mean absolute change of the frames per
band, and as a fraction of the change of a full swap. Writes ``noise_bands.json``.

    python -m benchmarks.noise_ablation [--scenes 10] [--seeds 1] [--variants period_std,iid_std]
    python -m benchmarks.noise_ablation --bands [--scenes 3]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from .generator_quality import (RESULTS, class_agreement, cut_consistency, cut_correspondences, psnr,
                                renoised, replace_noise, static_ids)
from .report import write_report

TUNING_SEED = 800_000
#: Radial frequency bands (cycles per frame, [lo, hi)) of `band_sensitivity`.
BANDS = ((0, 1), (1, 2), (2, 4), (1, 4), (4, 8), (8, 1000))
VARIANTS = ("frozen_raw", "period_raw", "period_std", "body_std", "octaves_std", "pasted_std", "integral_std",
            "carry_std", "iid_raw", "iid_std")


def pasted_noise(cond, corr, factor: int, window: int):
    """``cond`` with its noise pasted across each cut (the ``pasted_std`` variant):
    frame k < ``window`` of the shot after the cut takes, at the latent pixels of the
    `cut_correspondences` ``corr``, the noise of frame (last before the cut - window + 1
    + k) of the shot before it at the latent pixels they reproject to, where each such
    source pixel feeds one latent pixel only (so no value repeats)."""
    noise = [np.array(s.layers["noise"], np.float32) for s in cond.shots]
    for i, ia, (va, ua), (vb, ub) in corr:
        # latent pixel pairs; keep only sources that feed one latent pixel (no repeats)
        pairs = np.unique(np.stack([vb // factor, ub // factor, va // factor, ua // factor], 1), axis=0)
        pairs = pairs[np.unique(pairs[:, :2], axis=0, return_index=True)[1]]      # one source per target
        _, inv, cnt = np.unique(pairs[:, 2:], axis=0, return_inverse=True, return_counts=True)
        pairs = pairs[cnt[inv.ravel()] == 1]
        for k in range(min(window, len(noise[i]))):
            before = ia - window + 1 + k                    # the same phase of the noise period
            if before >= 0:
                noise[i][k][:, pairs[:, 0], pairs[:, 1]] = noise[i - 1][before][:, pairs[:, 2], pairs[:, 3]]
    return replace_noise(cond, noise)


def evaluate_scene(pipe, traj, seed: int = 0, variants=VARIANTS, seeds: int = 1) -> dict:
    """Variants of `VARIANTS` on one trajectory -> {variant: {psnr, structure, cut_error}},
    each averaged over noise seeds ``seed .. seed + seeds - 1``."""
    import bridge
    from bridge.noise import design
    opts = pipe.render_options()
    cond = bridge.render(traj, seed=seed, **opts)
    construction = {"frozen": {"noise_kind": "point", "noise_period": None, "noise_means": "none"},
                    "period": {"noise_kind": "point", "noise_means": "none"},
                    "body": {"noise_kind": "point", "noise_means": "body"},
                    "octaves": {"noise_kind": "point", "noise_means": "octaves"},
                    "integral": {"noise_kind": "integral", "noise_means": "none"}}

    def with_noise(name, s):
        if name == "iid":
            return cond
        if name == "carry":
            return with_noise("octaves", s)
        if name == "pasted":
            return pasted_noise(with_noise("octaves", s), corr, pipe.model.downsample, pipe.window)
        o = {**opts, **construction[name]}
        if s == seed and cond.meta["noise"] == design(o["noise_kind"], o.get("noise_period"), o["noise_means"]):
            return cond                                            # the rendered conditioning's own noise
        return renoised(cond, traj, s, o)
    statics = static_ids(traj)
    corr = cut_correspondences(cond, statics)
    rgb = np.concatenate([s.layers["rgb"] for s in cond.shots])
    seg = np.concatenate([s.layers["segmentation"] for s in cond.shots])
    out = {}
    saved = pipe.standardise_noise, pipe.carry
    try:
        for v in variants:
            noise, norm = v.split("_")
            pipe.standardise_noise, pipe.carry = norm == "std", noise == "carry"
            runs = []
            for s in range(seed, seed + seeds):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")     # the frozen / integral variants' warnings are the point
                    clip = pipe(with_noise(noise, s), style="preview", seed=s,
                                noise="iid" if noise == "iid" else "anchored", progress=False)
                frames = np.concatenate([f for _, f in clip.shot_frames])
                runs.append((psnr(frames, rgb), class_agreement(frames, seg),
                             cut_consistency(cond, clip.shot_frames, statics, corr)))
            out[v] = {"psnr": float(np.mean([r[0] for r in runs])), "structure": float(np.mean([r[1] for r in runs])),
                      "cut_error": np.mean([r[2] for r in runs], axis=0).tolist() if corr else []}
    finally:
        pipe.standardise_noise, pipe.carry = saved
    return out


def band_swap(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(..., h, w) ``a`` with the radial band ``lo <= |f| < hi`` (cycles per frame) of
    each frame's 2D spectrum taken from ``b``; for two white noises, white noise again."""
    h, w = a.shape[-2:]
    r = np.hypot(np.fft.fftfreq(h)[:, None] * h, np.fft.fftfreq(w)[None] * w)
    m = (r >= lo) & (r < hi)
    return np.real(np.fft.ifft2(np.where(m, np.fft.fft2(b), np.fft.fft2(a)))).astype(np.float32)


def band_sensitivity(pipe, traj, seed: int = 0, bands=BANDS) -> dict:
    """{"full": change, "lo-hi": change, ...}: mean absolute change (0-255) of the frames
    generated from i.i.d. noise when a band of the noise (or all of it) is another draw."""
    import bridge
    cond = bridge.render(traj, seed=seed, **pipe.render_options())
    rng = np.random.default_rng(seed)
    n0 = [rng.standard_normal(s.layers["noise"].shape).astype(np.float32) for s in cond.shots]
    n1 = [rng.standard_normal(s.layers["noise"].shape).astype(np.float32) for s in cond.shots]

    def frames(noises):
        c = replace_noise(cond, noises)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # i.i.d. noise in the anchored slot: the point
            clip = pipe(c, style="preview", seed=seed, progress=False)
        return np.concatenate([f for _, f in clip.shot_frames]).astype(np.float64)
    base = frames(n0)
    out = {"full": float(np.abs(frames(n1) - base).mean())}
    for lo, hi in bands:
        out[f"{lo}-{hi}"] = float(np.abs(frames([band_swap(a, b, lo, hi) for a, b in zip(n0, n1)]) - base).mean())
    return out


def summarise(per: dict) -> dict:
    """Mean PSNR / structure over scenes and mean cut error over all cuts, per variant;
    for each anchored variant the cuts where it is below the i.i.d. variant of the same
    normalisation, and the standard error of that mean difference."""
    out = {}
    variants = [v for v in VARIANTS if all(v in r for r in per.values())]
    for v in variants:
        cuts = [e for r in per.values() for e in r[v]["cut_error"]]
        out[v] = {"psnr": float(np.mean([r[v]["psnr"] for r in per.values()])),
                  "structure": float(np.mean([r[v]["structure"] for r in per.values()])),
                  "cut_error": float(np.mean(cuts)) if cuts else None, "cuts": len(cuts)}
    for v in variants:
        ref = "iid_" + v.split("_")[1]
        if v.startswith("iid") or ref not in variants:
            continue
        d = np.subtract([e for r in per.values() for e in r[v]["cut_error"]],
                        [e for r in per.values() for e in r[ref]["cut_error"]])
        out[v]["cuts_lower_than_" + ref] = int(np.sum(d < 0))
        out[v]["difference_to_" + ref] = float(d.mean()) if d.size else None
        out[v]["difference_se"] = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else None
    return out


def main(argv=None) -> int:
    import torch
    import generator
    import sim
    from generator.data import random_scene
    p = argparse.ArgumentParser(prog="physcut bench noise-ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the shipped checkpoint)")
    p.add_argument("--scenes", type=int, default=10, help="tuning scenes random_scene(800000 + k)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="noise seeds each variant is averaged over")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    p.add_argument("--bands", action="store_true", help="measure the noise bands' effect instead (noise_bands.json)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--output", default=None, help="default: results/noise_ablation.json "
                   "(noise_bands.json with --bands)")
    a = p.parse_args(argv)
    a.output = a.output or str(RESULTS / ("noise_bands.json" if a.bands else "noise_ablation.json"))
    variants = [v for v in a.variants.split(",") if v]
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        p.error(f"--variants: unknown {bad}; choices: {', '.join(VARIANTS)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    pipe = generator.load("builtin", model=a.model)
    per, t0 = {}, time.time()
    if a.bands:
        for k in range(a.scenes):
            traj = sim.rollout(random_scene(TUNING_SEED + k), engine="mujoco", seed=a.seed)
            per[f"random_{TUNING_SEED + k}"] = r = band_sensitivity(pipe, traj, a.seed)
            print(f"random_{TUNING_SEED + k}", {b: round(x, 2) for b, x in r.items()}, flush=True)
        summary = {b: {"change": float(np.mean([r[b] for r in per.values()])),
                       "of_full": float(np.mean([r[b] / r["full"] for r in per.values()]))}
                   for b in next(iter(per.values()))}
        write_report(a.output, {"benchmark": "noise_bands", "model": str(a.model or "default"),
                                "seconds": time.time() - t0, "summary": summary, "scenes": per}, summary)
        return 0
    for k in range(a.scenes):
        traj = sim.rollout(random_scene(TUNING_SEED + k), engine="mujoco", seed=a.seed)
        per[f"random_{TUNING_SEED + k}"] = r = evaluate_scene(pipe, traj, a.seed, variants, a.seeds)
        print(f"random_{TUNING_SEED + k}", {v: [round(x, 1) for x in r[v]["cut_error"]] for v in variants}, flush=True)
    summary = summarise(per)
    out = {"benchmark": "noise_ablation", "model": str(a.model or "default"), "seconds": time.time() - t0,
           "seeds": a.seeds, "variants": variants,
           "summary": summary, "scenes": per}
    write_report(a.output, out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
