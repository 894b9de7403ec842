"""Rendering speed of the bridge layers against the raw passes they use and
against PyBullet's TinyRenderer.

    python -m benchmarks.render_speed [--scene rooftop_chase] [--frames 24] [--repeats 5]

For each resolution (256x256 and 512x512) on the scene's first shot:
  * every layer alone, depth+segmentation+rgb together and all frame layers
    together (frames per second of the per-frame loop, one shared `FrameView` per
    frame; the one-off model compile and GL context set-up are excluded), and
    `bridge.render` of the whole shot end to end (every layer, outputs stacked,
    shot post-processing, model compile and GL set-up included; audio off);
  * the raw MuJoCo passes: `mujoco.Renderer` depth, segmentation and RGB passes
    with the bridge's GL settings (no MSAA, shadows, reflections, skybox or haze),
    the bridge's single id+depth GL pass, and `mj_multiRay` depth + geom ids on 2
    threads;
  * PyBullet's TinyRenderer (`getCameraImage`, rgb + depth + segmentation in one
    call) on the same scene, posed from the same trajectory.
All contenders are timed round-robin (one pass of each per repeat) so that load
drifting on this shared machine affects them alike; each figure is the median of
``--repeats`` passes. The load average is recorded before and after each
resolution. Writes ``benchmarks/results/render_speed.json`` and a Markdown table
next to it (``render_speed.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "render_speed.json"
#: Issue 3, acceptance 9: targets on the 2-core machine.
TARGETS = {"all_layers_fps_512": 10.0, "max_overhead_vs_raw": 1.5, "min_speedup_vs_tinyrenderer": 3.0}
RESOLUTIONS = ((256, 256), (512, 512))


def _measure(fns: dict, frames, repeats) -> tuple[dict, dict]:
    """Median frames per second of each ``fn(frames)`` (one call renders all
    ``frames``, or as many frames as it returns). The callables are timed round-robin, one call of each per repeat,
    so that load drifting on a shared machine affects all of them alike.
    Returns (median fps, every repeat's fps)."""
    for fn in fns.values():
        fn(frames[:1])                    # warm caches / contexts
    rates = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            n = fn(frames)
            rates[k].append((len(frames) if n is None else n) / (time.perf_counter() - t))
    return {k: float(np.median(v)) for k, v in rates.items()}, rates


def _per_frame(fn):
    def run(frames):
        for f in frames:
            fn(f)
    return run


def bridge_layers(traj, shot, size, names, noise_kind: str = "point"):
    """Callables rendering each layer alone, and all ``names`` together (one shared
    FrameView per frame), plus a closer."""
    from bridge.layers import LAYERS
    from bridge.render import SceneRenderer, frame_views, scale_intrinsics
    r = SceneRenderer(traj)
    cam_name = traj.shots()[shot]["camera"]
    cam = traj.camera_names.index(cam_name)
    native = tuple(int(v) for v in traj.camera_size[cam])
    K = scale_intrinsics(traj.camera_K[cam], native, size)
    near, far = r.clip[cam_name]
    options = {"seed": 0, "latent_factor": 8, "noise_cell": None, "rgb": "shaded", "noise_kind": noise_kind}

    def run(layer_names, opts=options):
        def frames_loop(frames):        # the loop of `bridge.render` (next GL pass prefetched)
            for view in frame_views(r, frames, shot, cam, K, size[0], size[1], near, far, opts):
                for n in layer_names:
                    LAYERS[n].fn(view)
        return frames_loop
    fns = {n: run([n]) for n in names}
    fns["depth+segmentation+rgb"] = run(["depth", "segmentation", "rgb"])
    fns["rgb_gl_pass"] = run(["rgb"], dict(options, rgb="gl"))
    fns["all"] = run(names)

    def end_to_end(frames):
        """`bridge.render` of the whole shot (every default layer, events included;
        audio off), model compile and GL set-up included; returns the frame count.
        ``frames`` of one frame (the warm-up) renders just that frame."""
        import bridge
        window = (int(frames[0]), int(frames[0]) + 1) if len(frames) == 1 else None
        cond = bridge.render(traj, resolution=size, shots=[shot], frames=window, audio=False,
                             noise_kind=noise_kind)
        return len(cond.shots[0].frames)
    fns["render_end_to_end"] = end_to_end
    return fns, r.close


def raw_passes(traj, shot, size):
    """Callables for the raw MuJoCo passes at ``size``, plus a closer."""
    import mujoco
    from bridge.render import SceneRenderer, scale_intrinsics
    r = SceneRenderer(traj)
    W, H = size
    cam_name = traj.shots()[shot]["camera"]
    cam = traj.camera_names.index(cam_name)
    K = scale_intrinsics(traj.camera_K[cam], tuple(int(v) for v in traj.camera_size[cam]), size)
    near, far = r.clip[cam_name]
    model = r.model
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, W)
    model.vis.global_.offheight = max(model.vis.global_.offheight, H)
    samples = model.vis.quality.offsamples
    model.vis.quality.offsamples = 0            # the bridge's GL settings: no MSAA
    try:
        renderer = mujoco.Renderer(model, H, W)
    finally:
        model.vis.quality.offsamples = samples
    f_ = mujoco.mjtRndFlag
    for flag in (f_.mjRND_SHADOW, f_.mjRND_REFLECTION, f_.mjRND_SKYBOX, f_.mjRND_HAZE):
        renderer.scene.flags[flag] = False
    free = mujoco.MjvCamera()

    def place(f):
        r.set_frame(int(f))
        w2c = traj.camera_w2c[f, cam]
        renderer.update_scene(r.data, free)
        # same camera as the bridge: overwrite the GL camera of the scene
        R, t = w2c[:3, :3], w2c[:3, 3]
        for c in renderer.scene.camera:
            c.pos[:], c.forward[:], c.up[:] = -R.T @ t, R[2], -R[1]

    def gl(kind):
        def one(f):
            place(f)
            if kind == "depth":
                renderer.enable_depth_rendering()
            elif kind == "segmentation":
                renderer.enable_segmentation_rendering()
            else:
                renderer.disable_depth_rendering()
                renderer.disable_segmentation_rendering()
            renderer.render()
        return one

    def id_depth(f):                    # synchronous: no overlap with other work
        r.ids_depth(int(f), K, traj.camera_w2c[f, cam], W, H, near, far, exact=False)

    def ray(f):
        r.set_frame(int(f))
        r.cast(K, traj.camera_w2c[f, cam], W, H, far, threads=2)

    def close():
        renderer.close()
        r.close()
    return {"renderer_depth": _per_frame(gl("depth")), "renderer_segmentation": _per_frame(gl("segmentation")),
            "renderer_rgb": _per_frame(gl("rgb")), "bridge_id_depth_pass": _per_frame(id_depth),
            "multiray_depth_ids_2threads": _per_frame(ray)}, close


def tiny_renderer(traj, shot, size):
    """A callable rendering rgb + depth + segmentation with PyBullet's TinyRenderer
    of the same scene, plus a closer.

    The PyBullet world holds one visual body per MuJoCo geom (same shapes, sizes
    and colours), posed every frame from the MuJoCo kinematics of the trajectory,
    so both renderers draw exactly the same geometry."""
    import mujoco
    import pybullet as p
    from bridge.render import SceneRenderer, scale_intrinsics
    r = SceneRenderer(traj)
    m = r.model
    cid = p.connect(p.DIRECT)
    G = mujoco.mjtGeom
    uids = []
    try:
        for g in range(m.ngeom):
            if m.geom_group[g] > 2 or r.geom_to_seg[g] == 0:
                continue
            t, sz, rgba = int(m.geom_type[g]), m.geom_size[g], m.geom_rgba[g].tolist()
            if t == G.mjGEOM_BOX:
                vs = p.createVisualShape(p.GEOM_BOX, halfExtents=sz.tolist(), rgbaColor=rgba, physicsClientId=cid)
            elif t == G.mjGEOM_SPHERE:
                vs = p.createVisualShape(p.GEOM_SPHERE, radius=float(sz[0]), rgbaColor=rgba, physicsClientId=cid)
            elif t == G.mjGEOM_CAPSULE:
                vs = p.createVisualShape(p.GEOM_CAPSULE, radius=float(sz[0]), length=float(2 * sz[1]),
                                         rgbaColor=rgba, physicsClientId=cid)
            elif t == G.mjGEOM_CYLINDER:
                vs = p.createVisualShape(p.GEOM_CYLINDER, radius=float(sz[0]), length=float(2 * sz[1]),
                                         rgbaColor=rgba, physicsClientId=cid)
            elif t == G.mjGEOM_PLANE:
                vs = p.createVisualShape(p.GEOM_BOX, halfExtents=[sz[0] or 100.0, sz[1] or 100.0, 1e-3],
                                         rgbaColor=rgba, physicsClientId=cid)
            elif t == G.mjGEOM_MESH:
                mid = m.geom_dataid[g]
                va, vn = m.mesh_vertadr[mid], m.mesh_vertnum[mid]
                fa, fn = m.mesh_faceadr[mid], m.mesh_facenum[mid]
                vs = p.createVisualShape(p.GEOM_MESH, vertices=m.mesh_vert[va:va + vn].tolist(),
                                         indices=m.mesh_face[fa:fa + fn].ravel().tolist(), rgbaColor=rgba,
                                         physicsClientId=cid)
            else:
                continue
            uids.append((g, p.createMultiBody(baseMass=0, baseVisualShapeIndex=vs, physicsClientId=cid)))
        W, H = size
        cam = traj.camera_names.index(traj.shots()[shot]["camera"])
        K = scale_intrinsics(traj.camera_K[cam], tuple(int(v) for v in traj.camera_size[cam]), size)
        near, far = r.clip[traj.camera_names[cam]]
        P = np.zeros((4, 4))          # OpenGL projection from K
        P[0, 0], P[1, 1] = 2 * K[0, 0] / W, 2 * K[1, 1] / H
        P[0, 2], P[1, 2] = 1 - 2 * (K[0, 2] + 0.5) / W, 2 * (K[1, 2] + 0.5) / H - 1
        P[2, 2], P[2, 3] = -(far + near) / (far - near), -2 * far * near / (far - near)
        P[3, 2] = -1
        proj = P.T.ravel().tolist()
        flip = np.diag([1.0, -1.0, -1.0, 1.0])
        quat = np.zeros(4)

        def one(f):
            r.set_frame(int(f))
            for g, uid in uids:
                mujoco.mju_mat2Quat(quat, r.data.geom_xmat[g])
                p.resetBasePositionAndOrientation(uid, r.data.geom_xpos[g].tolist(),
                                                  [quat[1], quat[2], quat[3], quat[0]], physicsClientId=cid)
            view = (flip @ traj.camera_w2c[f, cam]).T.ravel().tolist()
            img = p.getCameraImage(W, H, viewMatrix=view, projectionMatrix=proj, shadow=0,
                                   renderer=p.ER_TINY_RENDERER, physicsClientId=cid)
            one.seg_nonempty = bool(np.any(np.asarray(img[4]) >= 0))
        one.seg_nonempty = False
        one.bodies = len(uids)
    except BaseException:
        p.disconnect(physicsClientId=cid)
        r.close()
        raise

    def close():
        p.disconnect(physicsClientId=cid)
        r.close()
    return _per_frame(one), one, close


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default="rooftop_chase")
    ap.add_argument("--trajectory", default=None, help="a saved trajectory instead of a fresh rollout")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-pybullet", action="store_true")
    from bridge.noise import KINDS
    ap.add_argument("--noise-kind", default="point", choices=KINDS,
                    help="construction of the anchored-noise layer (bridge.render's noise_kind)")
    ap.add_argument("--sizes", default=",".join(str(w) for w, _ in RESOLUTIONS),
                    help="square resolutions to measure, comma-separated (default 256,512)")
    args = ap.parse_args(argv)
    sizes = [(int(v), int(v)) for v in args.sizes.split(",") if v]
    os.environ.setdefault("MUJOCO_GL", "egl")
    import scenes
    import sim
    from bridge.layers import LAYERS
    from sim.trajectory import Trajectory
    if args.trajectory:
        traj = Trajectory.load(args.trajectory)
    else:
        traj = sim.rollout(scenes.load(args.scene), seed=0)
    shot = 0
    fr = traj.shot_frames(shot)
    frames = fr[np.linspace(0, len(fr) - 1, min(args.frames, len(fr))).astype(int)]
    names = [n for n, s in LAYERS.items() if s.per == "frame"]
    res = {"scene": traj.scene.get("name"), "frames": len(frames), "repeats": args.repeats,
           "frame_layers": names, "noise_kind": args.noise_kind, "targets": TARGETS,
           "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                       "platform": platform.platform(), "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
                       "gl_renderer": _gl_renderer()},
           "results": {}}
    for size in sizes:
        key = f"{size[0]}x{size[1]}"
        print(f"[{key}] measuring ...", flush=True)
        load_start = os.getloadavg()
        fns, closers = {}, []
        bl, c = bridge_layers(traj, shot, size, names, args.noise_kind)
        fns.update({f"bridge/{k}": v for k, v in bl.items()})
        closers.append(c)
        raw, c = raw_passes(traj, shot, size)
        fns.update({f"raw/{k}": v for k, v in raw.items()})
        closers.append(c)
        tiny_one = None
        if not args.no_pybullet:
            fns["tiny"], tiny_one, c = tiny_renderer(traj, shot, size)
            closers.append(c)
        try:
            fps, runs = _measure(fns, frames, args.repeats)
        finally:
            for c in closers:
                c()
        layers = {k[7:]: v for k, v in fps.items() if k.startswith("bridge/")}
        raw = {k[4:]: v for k, v in fps.items() if k.startswith("raw/")}
        # depth, segmentation and rgb as mujoco.Renderer gives them: three passes
        raw3 = 1.0 / (1.0 / raw["renderer_depth"] + 1.0 / raw["renderer_segmentation"] + 1.0 / raw["renderer_rgb"])
        entry = {"loadavg_start": load_start, "bridge_fps": layers, "raw_fps": raw,
                 "raw_depth_segmentation_rgb_passes_fps": raw3,
                 "overhead_vs_raw": {      # > 1: the bridge is slower than the raw passes
                     "depth_vs_renderer_depth": raw["renderer_depth"] / layers["depth"],
                     "segmentation_vs_renderer_segmentation": raw["renderer_segmentation"] / layers["segmentation"],
                     "rgb_vs_renderer_rgb": raw["renderer_rgb"] / layers["rgb"],
                     "depth+segmentation+rgb_vs_three_renderer_passes": raw3 / layers["depth+segmentation+rgb"],
                     "all_layers_vs_three_renderer_passes": raw3 / layers["all"],
                     "all_layers_vs_bridge_id_depth_pass": raw["bridge_id_depth_pass"] / layers["all"]}}
        if tiny_one is not None:
            t = fps["tiny"]
            entry["tinyrenderer"] = {"rgb_depth_seg_fps": t, "bodies": tiny_one.bodies,
                                     "segmentation_nonempty": tiny_one.seg_nonempty}
            entry["speedup_vs_tinyrenderer"] = {
                "depth+segmentation+rgb": layers["depth+segmentation+rgb"] / t,
                "all_layers": layers["all"] / t,
                "render_end_to_end": layers["render_end_to_end"] / t}
        entry["loadavg_end"] = os.getloadavg()
        entry["runs_fps"] = {k: [round(x, 2) for x in v] for k, v in runs.items()}
        res["results"][key] = entry
        print(json.dumps({key: {k: v for k, v in entry.items() if k != "runs_fps"}}, indent=1), flush=True)
    res["meets_targets"] = {}
    for key, r in res["results"].items():
        ov = r["overhead_vs_raw"]
        m = {"overhead_vs_raw": max(ov["depth+segmentation+rgb_vs_three_renderer_passes"],
                                    ov["all_layers_vs_three_renderer_passes"]) <= TARGETS["max_overhead_vs_raw"]}
        if key == "512x512":
            m["all_layers_fps"] = r["bridge_fps"]["all"] >= TARGETS["all_layers_fps_512"]
        if "speedup_vs_tinyrenderer" in r:
            sp = r["speedup_vs_tinyrenderer"]
            for name in ("depth+segmentation+rgb", "all_layers"):
                m[f"speedup_vs_tinyrenderer_{name}"] = sp[name] >= TARGETS["min_speedup_vs_tinyrenderer"]
        res["meets_targets"][key] = m
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    md = out.with_suffix(".md")
    md.write_text(markdown_table(res))
    print(f"wrote {out} and {md}")
    return res


def _gl_renderer() -> str | None:
    try:
        import mujoco
        from OpenGL import GL
        ctx = mujoco.GLContext(16, 16)
        ctx.make_current()
        try:
            return GL.glGetString(GL.GL_RENDERER).decode()
        finally:
            ctx.free()
    except Exception:          # informative only
        return None


def markdown_table(res: dict) -> str:
    """The README table: frames per second, median of the repeats."""
    keys = list(res["results"])
    rows = [("all frame layers (" + ", ".join(res["frame_layers"]) + ")", "bridge_fps", "all"),
            ("`bridge.render` of the whole shot, end to end (every layer, stacked, post-processed, set-up included)", "bridge_fps", "render_end_to_end"),
            ("depth + segmentation + rgb (bridge)", "bridge_fps", "depth+segmentation+rgb")]
    rows += [(f"{n} alone", "bridge_fps", n) for n in res["frame_layers"]]
    rows += [("raw: mujoco.Renderer depth pass", "raw_fps", "renderer_depth"),
             ("raw: mujoco.Renderer segmentation pass", "raw_fps", "renderer_segmentation"),
             ("raw: mujoco.Renderer rgb pass", "raw_fps", "renderer_rgb"),
             ("raw: the three mujoco.Renderer passes", "raw_depth_segmentation_rgb_passes_fps", None),
             ("raw: the bridge's one id+depth GL pass", "raw_fps", "bridge_id_depth_pass"),
             ("raw: mj_multiRay depth+ids (2 threads)", "raw_fps", "multiray_depth_ids_2threads"),
             ("PyBullet TinyRenderer rgb+depth+segmentation", "tinyrenderer", "rgb_depth_seg_fps")]

    def get(r, group, name):
        v = r.get(group)
        if isinstance(v, dict):
            v = v.get(name)
        return "-" if v is None else f"{v:.1f}"
    lines = [f"Render speed on `{res['scene']}` (shot 0, {res['frames']} frames, median of "
             f"{res['repeats']} round-robin repeats), frames per second, "
             f"{res['machine']['cpus']} shared CPU cores, {res['machine'].get('gl_renderer')}.", "",
             "| | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for label, group, name in rows:
        lines.append(f"| {label} | " + " | ".join(get(res["results"][k], group, name) for k in keys) + " |")
    lines += ["", "| ratio | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    ratios = [("speed-up vs TinyRenderer: depth+segmentation+rgb (target >= 3)", "speedup_vs_tinyrenderer", "depth+segmentation+rgb"),
              ("speed-up vs TinyRenderer: all layers (target >= 3)", "speedup_vs_tinyrenderer", "all_layers"),
              ("overhead vs raw: depth+segmentation+rgb / three renderer passes (target <= 1.5)", "overhead_vs_raw", "depth+segmentation+rgb_vs_three_renderer_passes"),
              ("overhead vs raw: all layers / three renderer passes (target <= 1.5)", "overhead_vs_raw", "all_layers_vs_three_renderer_passes"),
              ("overhead vs raw: all layers / the one id+depth pass", "overhead_vs_raw", "all_layers_vs_bridge_id_depth_pass")]
    for label, group, name in ratios:
        lines.append(f"| {label} | " + " | ".join(
            (lambda v: "-" if v is None else f"{v:.2f}")(res["results"][k].get(group, {}).get(name)) for k in keys) + " |")
    loads = ", ".join(f"{k}: {res['results'][k]['loadavg_start'][0]:.1f} -> {res['results'][k]['loadavg_end'][0]:.1f}"
                      for k in keys)
    met = "; ".join(f"{k}: " + ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in v.items())
                    for k, v in res.get("meets_targets", {}).items())
    lines += ["", f"1-minute load average during the runs: {loads}.", "", f"Targets met -- {met}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
