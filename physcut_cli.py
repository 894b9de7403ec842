"""`physcut`: the command line, and the one composition root of the project.

Each subcommand mirrors a stage and reads the previous stage's file:

    physcut scenes                         list the bundled scenes
    physcut simulate SCENE -o traj.npz     scene (name or YAML/JSON file) -> trajectory
    physcut inspect traj.npz               summarise a trajectory
    physcut render traj.npz -o DIR         trajectory -> conditioning maps, audio, previews
    physcut generate DIR -o OUT            conditioning -> video + audio
    physcut run SCENE -o DIR               all of the above
    physcut train ...                      train the built-in generator
    physcut bench NAME ...                 benchmarks (sim, render, plausibility, ...)

Shared flags mean the same everywhere: ``--seed``, ``--fps``, ``-o``. Stages are
imported lazily, so ``physcut --help`` and ``physcut simulate`` start fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

GENERATORS = ("preview", "builtin", "ltx2", "vace", "cosmos")
BENCHES = ("sim", "render", "audio", "plausibility", "plausibility-speed", "generator-speed",
           "generator-quality", "noise-ablation", "backend-overhead", "all")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- helpers
def _parse_params(items):
    """``k=v`` strings -> dict, values parsed as JSON when they parse (numbers, lists)."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise CLIError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _parse_resolution(text):
    if text is None:
        return None
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise CLIError(f"--resolution expects WIDTHxHEIGHT, e.g. 512x288, got {text!r}") from None
    return (w, h)


def _load_scene(spec, params, fps=None):
    import scenes
    scene = scenes.load(spec, **params)
    if fps is not None:
        scene.fps = int(fps)
        scene.validate()
    return scene


def _base_dir(spec):
    p = Path(spec)
    return p.resolve().parent if p.is_file() else None


def _simulate(spec, params, engine, seed, fps, out, progress=True, preview=None):
    import sim
    scene = _load_scene(spec, params, fps)
    t0 = time.perf_counter()
    try:
        traj = sim.rollout(scene, engine=engine, seed=seed, progress=progress, base_dir=_base_dir(spec))
    except sim.DivergenceError as e:
        if out is not None and getattr(e, "trajectory", None) is not None:
            path = e.trajectory.save(out)
            raise CLIError(f"{e} (trajectory up to the last good frame saved to {path})") from None
        raise CLIError(str(e)) from None
    dt = time.perf_counter() - t0
    print(f"simulated '{scene.name}' on {traj.engine}: {traj.num_frames} frames "
          f"({traj.duration:.2f} s) in {dt:.2f} s ({traj.duration / max(dt, 1e-9):.1f}x real time)")
    if out is not None:
        print(f"wrote {traj.save(out)}")
    if preview:
        from sim.preview import write_preview
        print(f"wrote {write_preview(traj, preview, base_dir=_base_dir(spec))}")
    return traj


# --------------------------------------------------------------------------- commands
def cmd_scenes(args):
    import scenes
    from scenes.registry import describe
    if args.name:
        scene = scenes.load(args.name, **_parse_params(args.param))
        if args.save:
            from scenes.files import save_file
            print(f"wrote {save_file(scene, args.save)}")
        else:
            print(describe(args.name)["doc"] if args.name in scenes.available() else scene.description)
        return
    if args.save:
        raise CLIError("--save needs a scene name: physcut scenes NAME --save FILE.yaml")
    rows = [describe(n) for n in scenes.available()]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return
    for r in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in r["params"].items())
        print(f"{r['name']:<16} {r['summary']}")
        if params:
            print(f"{'':<16} params: {params}")


def cmd_simulate(args):
    _simulate(args.scene, _parse_params(args.param), args.engine, args.seed, args.fps,
              args.output, progress=not args.quiet, preview=args.preview)


def cmd_inspect(args):
    from sim.trajectory import Trajectory
    t = Trajectory.load(args.trajectory)
    print(f"trajectory {args.trajectory}: scene '{t.scene.get('name')}' (hash {t.scene_hash})")
    print(f"  engine {t.engine} {t.engine_version}, seed {t.seed}, status: {t.status}")
    print(f"  {t.num_frames} frames at {t.fps} fps ({t.duration:.2f} s), physics {t.physics_hz} Hz")
    kinds = {k: t.body_kind.count(k) for k in ("static", "prop", "character")}
    print(f"  bodies: {len(t.body_names)} ({kinds['static']} static, {kinds['prop']} props, "
          f"{kinds['character']} character links); characters: {', '.join(t.character_names) or '-'}")
    onsets = int(t.contact_onset.sum())
    print(f"  contacts: {t.contact_time.shape[0]} events, {onsets} impact onsets, "
          f"max normal impulse {t.contact_impulse[:, 0].max(initial=0):.3f} N s")
    print(f"  cameras: {', '.join(t.camera_names)}")
    for i, s in enumerate(t.shots()):
        tr = s.get("transition", {}).get("type", "cut")
        print(f"  shot {i}: {s['camera']:<12} {s['start']:6.2f}-{s['end']:6.2f} s  ({tr})")
    for ci, name in enumerate(t.character_names):
        air = ~t.support[:, ci]
        print(f"  character {name}: airborne in {int(air.sum())} frames, root travel "
              f"{float(abs(t.com_pos[-1, ci] - t.com_pos[0, ci])[:2].sum()):.2f} m")


def _render_options(args) -> dict:
    kw = {"seed": args.seed, "backend": args.backend, "rgb": args.rgb,
          "layers": args.layers.split(",") if getattr(args, "layers", None) else None,
          "resolution": _parse_resolution(args.resolution), "progress": not args.quiet}
    if args.latent_factor is not None:
        kw["latent_factor"] = args.latent_factor
    if args.noise_kind is not None:
        kw["noise_kind"] = args.noise_kind
    if args.noise_period is not None:
        kw["noise_period"] = args.noise_period
    if args.noise_means is not None:
        kw["noise_means"] = args.noise_means
    return kw


def cmd_render(args):
    import bridge
    from sim.trajectory import Trajectory
    traj = Trajectory.load(args.trajectory)
    out = bridge.render_to_dir(traj, args.output, **_render_options(args))
    print(f"wrote {out}")


def _generator_options(args) -> dict:
    """Backend constructor options given on the command line (unset ones omitted)."""
    kw = {}
    for name in ("model", "device", "dtype", "steps"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    for name in ("cpu_offload", "vae_tiling"):
        if getattr(args, name, False):
            kw[name] = True
    if getattr(args, "no_carry", False):
        kw["carry"] = False
    return kw


def _pipeline(generator, options):
    """Build a generator backend; ``steps`` is passed under the name the backend uses."""
    import inspect
    import generator as gen
    if "steps" in options:
        params = inspect.signature(gen.backend_class(generator).__init__).parameters
        if "steps" not in params and "num_inference_steps" in params:
            options = dict(options)
            options["num_inference_steps"] = options.pop("steps")
    return gen.load(generator, **options)


def _generate(cond_dir, out, generator, options, style, seed, noise, progress, pipe=None):
    from bridge import Conditioning
    cond = Conditioning.load(cond_dir)
    pipe = pipe or _pipeline(generator, options)
    clip = pipe(cond, style=style, seed=seed, noise=noise, progress=progress)
    path = clip.save(out)
    print(f"wrote {path}")
    return path


def cmd_generate(args):
    _generate(args.conditioning, args.output, args.generator, _generator_options(args), args.style,
              args.seed, args.noise, not args.quiet)


def cmd_run(args):
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    traj = _simulate(args.scene, _parse_params(args.param), args.engine, args.seed, args.fps,
                     out / "trajectory.npz", progress=not args.quiet)
    import bridge
    pipe = None
    render_kw = _render_options(args)
    if args.generator != "preview":
        # build the generator first: a bad model path fails before the render, and the
        # backend says which resolution / noise grid it wants its conditioning at
        pipe = _pipeline(args.generator, _generator_options(args))
        wanted = getattr(pipe, "render_options", lambda: {})() or {}
        given = {"resolution": args.resolution, "latent_factor": args.latent_factor, "layers": args.layers,
                 "noise_kind": args.noise_kind, "noise_period": args.noise_period, "noise_means": args.noise_means}
        for k, v in wanted.items():
            if given.get(k) is None:
                render_kw[k] = v
    cond_dir = bridge.render_to_dir(traj, out / "conditioning", base_dir=_base_dir(args.scene), **render_kw)
    print(f"wrote {cond_dir} (preview: {Path(cond_dir) / 'preview.mp4'})")
    if pipe is None:
        return
    _generate(cond_dir, out / "generated", args.generator, None, args.style, args.seed, args.noise,
              not args.quiet, pipe=pipe)


def cmd_train(args):
    from generator.train import train_main
    return train_main(args.rest)


def cmd_bench(args):
    rest = list(args.rest)
    name = args.name
    if name == "all":        # every benchmark with its defaults (options are not passed on)
        status = 0
        runs = [(each, []) for each in BENCHES[:-1] if each != "plausibility"]
        runs[2:2] = [("plausibility", ["--corruptions"]), ("plausibility", ["--baseline"])]
        for each, extra in runs:
            print(f"== physcut bench {each} {' '.join(extra)}", flush=True)
            status |= cmd_bench(argparse.Namespace(name=each, rest=extra)) or 0
        return status
    if name == "plausibility":
        from benchmarks.plausibility import main
        return main(rest)
    modules = {"sim": "benchmarks.sim_speed", "render": "benchmarks.render_speed",
               "audio": "benchmarks.audio_onsets",
               "plausibility-speed": "benchmarks.plausibility_speed",
               "generator-speed": "benchmarks.generator_speed",
               "generator-quality": "benchmarks.generator_quality",
               "noise-ablation": "benchmarks.noise_ablation",
               "backend-overhead": "benchmarks.backend_overhead"}
    import importlib
    mod = importlib.import_module(modules[name])
    return mod.main(rest)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="physcut", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run `physcut COMMAND --help` for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def shared(sp, seed=True, fps=False):
        if seed:
            sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        if fps:
            sp.add_argument("--fps", type=int, default=None, help="override the scene's frame rate")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def render_flags(sp):
        sp.add_argument("--layers", help="comma-separated layer names (default: all)")
        sp.add_argument("--resolution", help="WIDTHxHEIGHT (default: each camera's native size)")
        sp.add_argument("--backend", default="gl", choices=("gl", "ray"),
                        help="rasterised ids+depth (default) or mj_multiRay ray casting")
        sp.add_argument("--rgb", default="shaded", choices=("shaded", "gl"),
                        help="preview RGB shaded from exact normals (default) or MuJoCo's lit pass")
        sp.add_argument("--latent-factor", type=int, default=None,
                        help="pixels per latent cell of the anchored noise (default 8, or the generator's)")
        sp.add_argument("--noise-kind", default=None, choices=("integral", "point"),  # bridge.noise.KINDS
                        help="anchored-noise construction: point (default, or the one the generator was "
                             "trained on) or integral (better anchored across views, slower)")
        sp.add_argument("--noise-period", type=int, default=None, metavar="FRAMES",
                        help="anchored noise drawn afresh in each of FRAMES consecutive frames, repeating "
                             "every FRAMES frames (default: the same in every frame, or the generator's "
                             "window); give a video model's window length")
        sp.add_argument("--noise-means", default=None, choices=("body", "none", "octaves"),  # bridge.noise.MEANS
                        help="anchored noise whose mean over each body (body), and over each anchor cell of "
                             "every coarser octave (octaves), is drawn from the surface: its low frequencies "
                             "follow the surface across cuts (default none, or the generator's)")

    sp = sub.add_parser("scenes", help="list the bundled scenes, or describe/export one")
    sp.add_argument("name", nargs="?", help="a scene to describe or export (with --save)")
    sp.add_argument("--param", action="append", metavar="KEY=VALUE", help="scene factory parameter")
    sp.add_argument("--save", metavar="FILE", help="write the scene as a .yaml or .json scene file")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_scenes)

    def scene_flags(sp, output, help_output):
        sp.add_argument("scene", help="a bundled scene name or a .yaml/.json scene file")
        sp.add_argument("-o", "--output", default=output, help=help_output)
        sp.add_argument("--engine", default="mujoco", choices=("mujoco", "pybullet"))
        sp.add_argument("--param", action="append", metavar="KEY=VALUE", help="scene factory parameter")

    sp = sub.add_parser("simulate", help="roll out a scene into a trajectory (.npz + .json)")
    scene_flags(sp, "trajectory.npz", "output .npz (default trajectory.npz)")
    sp.add_argument("--preview", metavar="MP4", help="also write a quick low-resolution preview video")
    shared(sp, fps=True)
    sp.set_defaults(func=cmd_simulate)

    sp = sub.add_parser("inspect", help="summarise a trajectory file")
    sp.add_argument("trajectory")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("render", help="render conditioning maps, audio and previews from a trajectory")
    sp.add_argument("trajectory")
    sp.add_argument("-o", "--output", default="conditioning", help="output directory")
    render_flags(sp)
    shared(sp)
    sp.set_defaults(func=cmd_render)

    def gen_flags(sp, default):
        sp.add_argument("--generator", default=default, choices=GENERATORS)
        sp.add_argument("--model", help="local model directory (or hub id for pretrained backends)")
        sp.add_argument("--style", default="preview", help="visual style")
        sp.add_argument("--noise", default="anchored", choices=("anchored", "iid"),
                        help="initial noise: 3D-anchored (default) or i.i.d.")
        sp.add_argument("--device", help="cpu (default) or cuda")
        sp.add_argument("--dtype", help="float32 (default on CPU), bfloat16 or float16 (CUDA only)")
        sp.add_argument("--steps", type=int, help="sampling steps (default: the backend's)")
        sp.add_argument("--cpu-offload", action="store_true", help="model CPU offload (pretrained backends, CUDA)")
        sp.add_argument("--vae-tiling", action="store_true", help="tiled VAE decoding (pretrained backends)")
        sp.add_argument("--no-carry", action="store_true",
                        help="builtin: do not carry static surfaces from earlier shots into later ones "
                             "(generator.carry; anchored noise only)")

    sp = sub.add_parser("generate", help="generate video + audio from a conditioning directory")
    sp.add_argument("conditioning", help="directory written by `physcut render`")
    sp.add_argument("-o", "--output", default="generated", help="output directory")
    gen_flags(sp, "builtin")
    shared(sp)
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("run", help="simulate + render + generate in one go")
    scene_flags(sp, "out/run", "output directory")
    render_flags(sp)
    gen_flags(sp, "preview")
    shared(sp, fps=True)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("train", help="train the built-in generator (options: physcut train --help)",
                        add_help=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("bench", help="run a benchmark", add_help=True)
    sp.add_argument("name", choices=BENCHES)
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    sp.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        # argparse's REMAINDER cannot start with an option ("train -o DIR"): hand the
        # rest to train's own parser directly
        args = argparse.Namespace(command="train", func=cmd_train, rest=argv[1:])
    else:
        args = parser.parse_args(argv)
    from scenes.errors import SceneError
    known = (CLIError, SceneError, FileNotFoundError)
    try:
        from sim.trajectory import TrajectoryError
        from bridge.conditioning import ConditioningError
        from bridge import RenderError
        known = known + (TrajectoryError, ConditioningError, RenderError)
        if "generator" in sys.modules or args.command in ("generate", "run", "train"):
            from generator.base import GeneratorError
            known = known + (GeneratorError,)
    except ImportError:  # pragma: no cover - only when a stage is broken
        pass
    try:
        rc = args.func(args)
    except known as e:
        print(f"physcut: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physcut: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
