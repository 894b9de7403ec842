"""Everything `physcut render` writes into its output directory.

    conditioning.json, shot_XX.npz, audio.wav   the raw bundle (`Conditioning.save`)
    shot_XX/{depth,pose,segmentation,normals,flow,rgb}.mp4
                                                8-bit RGB H.264 control videos at the scene fps
    shot_XX/cameras_re10k.txt                   RealEstate10K-style camera lines of the shot
    cameras.json                                OpenCV K, w2c, c2w per shot and frame
    cameras_re10k.txt                           the on-screen camera of every timeline frame
    audio_events.json                           contact audio events
    scene.glb                                   the persistent world at t = 0 (trimesh)
    preview.mp4                                 all shots assembled (cuts, crossfades) + audio
    contact_sheet.png                           a row per shot: rgb, depth, pose, segmentation
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CAMERA_CONVENTION = (
    "OpenCV pinhole cameras. Camera frame: x right, y down, z forward (looking along +z). "
    "w2c maps world to camera: x_cam = R @ x_world + t with w2c = [[R, t], [0, 0, 0, 1]]; "
    "c2w is its inverse (c2w[:3, 3] is the camera centre in the world). K is in pixels for an "
    "image of (width, height); pixel centres sit at integer (u, v), so the image spans "
    "[-0.5, width - 0.5]. A world point X projects to (u, v) = (K @ x_cam)[:2] / x_cam[2]. "
    "World frame: right-handed, z up, metres; time in seconds (t = frame / fps). "
    "depth maps store x_cam[2] (metres along z), 0 where nothing is hit.")

RE10K_CONVENTION = (
    "RealEstate10K-style lines: timestamp_us fx/W fy/H cx/W cy/H 0 0 followed by the 3x4 "
    "world-to-camera matrix [R | t] row-major (OpenCV axes). cx/W and cy/H use continuous "
    "image coordinates ((cx + 0.5) / W), so 0.5 is the image centre.")


def cameras_dict(cond, traj) -> dict:
    shots = []
    for s in cond.shots:
        W, H = s.resolution
        frames = []
        for i, f in enumerate(s.frames):
            frames.append({"frame": int(f), "time": float(traj.times[f]), "active": bool(traj.active_shot[f] == s.shot),
                           "K": s.K[i].tolist(), "w2c": s.w2c[i].tolist(),
                           "c2w": np.linalg.inv(s.w2c[i]).tolist()})
        shots.append({"shot": s.shot, "camera": s.camera, "width": W, "height": H,
                      "transition": s.transition, "frames": frames})
    return {"format": "physcut.cameras", "version": 1, "convention": CAMERA_CONVENTION,
            "fps": cond.fps, "num_frames": cond.num_frames, "shots": shots}


def re10k_lines(times, Ks, w2cs, width, height, header: str) -> str:
    lines = [header]
    n = len(times)
    widths = np.broadcast_to(np.asarray(width, float), (n,))
    heights = np.broadcast_to(np.asarray(height, float), (n,))
    for t, K, w2c, width, height in zip(times, Ks, w2cs, widths, heights):
        intr = [K[0, 0] / width, K[1, 1] / height, (K[0, 2] + 0.5) / width, (K[1, 2] + 0.5) / height]
        vals = [f"{int(round(t * 1e6))}"] + [f"{v:.9g}" for v in intr] + ["0", "0"]
        vals += [f"{v:.9g}" for v in np.asarray(w2c)[:3, :4].ravel()]
        lines.append(" ".join(vals))
    return "\n".join(lines) + "\n"


def normals_to_rgb(n: np.ndarray) -> np.ndarray:
    """Camera-frame normals -> 8-bit RGB ((n + 1) / 2 per axis, x->R, y->G, z->B); black on sky."""
    valid = np.any(n != 0, axis=-1, keepdims=True)
    return (np.round((n + 1.0) * 127.5) * valid).astype(np.uint8)


def flow_to_rgb(flow: np.ndarray, max_mag: float | None = None) -> np.ndarray:
    """Optical flow (T, H, W, 2) -> colour-wheel RGB (hue = direction, value = magnitude
    normalised by ``max_mag``, default the 99th percentile of the clip)."""
    import cv2
    mag = np.linalg.norm(flow, axis=-1)
    if max_mag is None:
        max_mag = float(np.percentile(mag, 99)) if mag.size else 1.0
    max_mag = max(max_mag, 1e-6)
    ang = (np.degrees(np.arctan2(flow[..., 1], flow[..., 0])) % 360.0) / 2.0     # OpenCV hue 0..180
    hsv = np.empty(flow.shape[:-1] + (3,), np.uint8)
    hsv[..., 0] = ang.astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / max_mag * 255.0, 0, 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(h, cv2.COLOR_HSV2RGB) for h in hsv.reshape((-1,) + hsv.shape[-3:])]
                    ).reshape(hsv.shape)


#: Video name -> (layer array, converter to 8-bit RGB).
CONTROL_VIDEOS = {
    "depth": ("depth_vis", None),
    "pose": ("pose", None),
    "segmentation": ("segmentation_rgb", None),
    "albedo": ("albedo", None),
    "normals": ("normals", normals_to_rgb),
    "flow": ("flow", flow_to_rgb),
    "rgb": ("rgb", None),
}


def export_scene_glb(traj, path, frame: int = 0, base_dir=None) -> Path:
    """The world at ``frame`` as glTF binary: one named node per trajectory body
    (its geoms merged, in world coordinates, with their colours). glTF is y-up, so
    world (x, y, z) is stored as (x, z, -y); Blender's importer turns it back to z-up."""
    import mujoco
    import trimesh
    from sim.mujoco_engine import compile_scene, set_frame
    comp = compile_scene(traj.scene_obj(), base_dir=base_dir)
    m = comp.model
    d = mujoco.MjData(m)
    set_frame(comp, d, traj, frame)
    body_ids = np.asarray(comp.body_ids)
    b2t = np.full(m.nbody, -1)
    b2t[body_ids] = np.arange(body_ids.size)
    for b in range(1, m.nbody):
        if b2t[b] < 0 and m.body_parentid[b] > 0:
            b2t[b] = b2t[m.body_parentid[b]]
    G = mujoco.mjtGeom
    per_body: dict[int, list] = {}
    for g in range(m.ngeom):
        t = b2t[m.geom_bodyid[g]]
        if t < 0 or m.geom_group[g] > 2:
            continue
        gt, s = int(m.geom_type[g]), m.geom_size[g]
        if gt == G.mjGEOM_BOX:
            mesh = trimesh.creation.box(extents=2 * s)
        elif gt == G.mjGEOM_SPHERE:
            mesh = trimesh.creation.icosphere(subdivisions=3, radius=s[0])
        elif gt == G.mjGEOM_ELLIPSOID:
            mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
            mesh.apply_scale(s)
        elif gt == G.mjGEOM_CAPSULE:
            mesh = trimesh.creation.capsule(height=2 * s[1], radius=s[0], count=[24, 12])
        elif gt == G.mjGEOM_CYLINDER:
            mesh = trimesh.creation.cylinder(radius=s[0], height=2 * s[1], sections=32)
        elif gt == G.mjGEOM_PLANE:
            ext = [2 * s[0] if s[0] > 0 else 200.0, 2 * s[1] if s[1] > 0 else 200.0, 1e-3]
            mesh = trimesh.creation.box(extents=ext)
        elif gt == G.mjGEOM_MESH:
            mid = m.geom_dataid[g]
            va, vn = m.mesh_vertadr[mid], m.mesh_vertnum[mid]
            fa, fn = m.mesh_faceadr[mid], m.mesh_facenum[mid]
            mesh = trimesh.Trimesh(m.mesh_vert[va:va + vn].copy(), m.mesh_face[fa:fa + fn].copy(), process=False)
        else:
            continue
        T = np.eye(4)
        T[:3, :3] = d.geom_xmat[g].reshape(3, 3)
        T[:3, 3] = d.geom_xpos[g]
        mesh.apply_transform(T)
        mesh.visual.face_colors = np.round(np.clip(m.geom_rgba[g], 0, 1) * 255).astype(np.uint8)
        per_body.setdefault(int(t), []).append(mesh)
    zup_to_yup = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
    scene = trimesh.Scene()
    for t, meshes in sorted(per_body.items()):
        mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
        mesh.apply_transform(zup_to_yup)
        name = traj.body_names[t]
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    path = Path(path)
    path.write_bytes(scene.export(file_type="glb"))
    return path


def contact_sheet(cond, path, tile_width: int = 256) -> Path:
    """PNG with a row per shot (its middle active frame): rgb, depth, pose, segmentation."""
    from PIL import Image, ImageDraw
    cols = (("rgb", "rgb"), ("depth_vis", "depth"), ("pose", "pose"), ("segmentation_rgb", "segmentation"))
    rows = []
    for s in cond.shots:
        W, H = s.resolution
        th = max(2, int(round(tile_width * H / W)))
        mid = s.num_frames // 2
        tiles = []
        for key, label in cols:
            arr = s.layers.get(key)
            img = np.zeros((H, W, 3), np.uint8) if arr is None else arr[mid]
            if key == "pose" and "rgb" in s.layers:     # skeleton over a dimmed frame reads better
                img = np.maximum((s.layers["rgb"][mid] * 0.35).astype(np.uint8), img)
            tile = Image.fromarray(img).resize((tile_width, th), Image.BILINEAR)
            ImageDraw.Draw(tile).text((4, 2), f"shot {s.shot} {label}" + ("" if arr is not None else " (n/a)"),
                                      fill=(255, 255, 255))
            tiles.append(tile)
        row = Image.new("RGB", (tile_width * len(cols), th))
        for i, t in enumerate(tiles):
            row.paste(t, (i * tile_width, 0))
        rows.append(row)
    sheet = Image.new("RGB", (tile_width * len(cols), sum(r.height for r in rows)))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    path = Path(path)
    sheet.save(path)
    return path


def preview_frames(cond, key: str = "rgb") -> np.ndarray:
    """All shots' ``key`` images assembled on the timeline (resized to the first
    shot's size when shots differ)."""
    import cv2
    from .assemble import assemble_shots
    W0, H0 = cond.shots[0].resolution
    parts = []
    for s in cond.shots:
        im = s.layers[key]
        if im.shape[1:3] != (H0, W0):
            im = np.stack([cv2.resize(x, (W0, H0), interpolation=cv2.INTER_AREA) for x in im])
        parts.append((s.frames, im))
    covered = np.unique(np.concatenate([s.frames for s in cond.shots]))
    F = cond.num_frames
    if covered.size != F:       # a partial render (frame window): assemble what exists
        remap = np.full(F, -1)
        remap[covered] = np.arange(covered.size)
        parts = [(remap[fr], im) for fr, im in parts]
        F = covered.size
    return assemble_shots(parts, [s.transition for s in cond.shots], F)


def export_all(traj, out_dir, layers=None, resolution=None, progress: bool = True, **kw) -> Path:
    """Render ``traj`` and write every export into ``out_dir`` (see module docstring)."""
    from .assemble import write_mp4
    from .render import _as_trajectory, render
    traj = _as_trajectory(traj)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cond = render(traj, layers=layers, resolution=resolution, progress=progress, **kw)
    cond.save(out)
    items = [(s, name, key, conv) for s in cond.shots for name, (key, conv) in CONTROL_VIDEOS.items()
             if key in s.layers]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(items) + 4, unit="file", desc="export")
    for s, name, key, conv in items:
        d = out / f"shot_{s.shot:02d}"
        d.mkdir(exist_ok=True)
        arr = s.layers[key]
        write_mp4(d / f"{name}.mp4", conv(arr) if conv else arr, cond.fps)
        if bar is not None:
            bar.update(1)
    for s in cond.shots:
        d = out / f"shot_{s.shot:02d}"
        d.mkdir(exist_ok=True)
        W, H = s.resolution
        (d / "cameras_re10k.txt").write_text(
            re10k_lines(traj.times[s.frames], s.K, s.w2c, W, H, f"shot_{s.shot:02d}/rgb.mp4"))
    (out / "cameras.json").write_text(json.dumps(cameras_dict(cond, traj), indent=1))
    # timeline file: the active shot's camera at every rendered frame
    rows = {}
    for s in cond.shots:
        W, H = s.resolution
        for i, f in enumerate(s.frames):
            if traj.active_shot[f] == s.shot:
                rows[int(f)] = (traj.times[f], s.K[i], s.w2c[i], W, H)
    if rows:
        fr = sorted(rows)
        (out / "cameras_re10k.txt").write_text(re10k_lines(
            [rows[f][0] for f in fr], [rows[f][1] for f in fr], [rows[f][2] for f in fr],
            [rows[f][3] for f in fr], [rows[f][4] for f in fr], "preview.mp4"))
    (out / "audio_events.json").write_text(json.dumps(
        {"format": "physcut.audio_events", "sample_rate": cond.sample_rate, "fps": cond.fps,
         "events": cond.events}, indent=1, default=_json_default))
    if bar is not None:
        bar.update(1)
    export_scene_glb(traj, out / "scene.glb", base_dir=kw.get("base_dir"))
    if bar is not None:
        bar.update(1)
    if all("rgb" in s.layers for s in cond.shots):
        frames = preview_frames(cond, "rgb")
        a0 = int(round(frames_start(cond) / cond.fps * cond.sample_rate))
        audio = cond.audio[:, a0:a0 + int(round(frames.shape[0] / cond.fps * cond.sample_rate))]
        write_mp4(out / "preview.mp4", frames, cond.fps, audio=audio, sample_rate=cond.sample_rate)
    if bar is not None:
        bar.update(1)
    contact_sheet(cond, out / "contact_sheet.png")
    if bar is not None:
        bar.update(1)
        bar.close()
    return out


def frames_start(cond) -> int:
    return int(min(int(s.frames[0]) for s in cond.shots))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
