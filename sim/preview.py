"""Quick low-resolution preview video of a trajectory through its shot cameras
(MuJoCo renderer, shadows and reflections off), so motion can be checked by eye.
The bridge makes the real conditioning renders; this is a simulator-side check."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np


def camera_pose_mujoco(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion wxyz (4,)) of a MuJoCo camera (looks along -z,
    y up) equivalent to an OpenCV world-to-camera matrix (looks along +z, y down)."""
    from scipy.spatial.transform import Rotation
    R, t = w2c[:3, :3], w2c[:3, 3]
    c2w = R.T @ np.diag([1.0, -1.0, -1.0])
    x, y, z, w = Rotation.from_matrix(c2w).as_quat()
    return -R.T @ t, np.array([w, x, y, z])


def render_frames(traj, width: int = 320, frames: Optional[np.ndarray] = None,
                  base_dir=None, progress: bool = False) -> np.ndarray:
    """(T, H, W, 3) uint8 images of ``frames`` (default all) through each frame's
    active shot camera; H follows the camera's aspect ratio (rounded to even)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco
    from .mujoco_engine import PREVIEW_CAMERA, compile_scene, set_frame
    scene = traj.scene_obj()
    comp = compile_scene(scene, base_dir)
    m = comp.model
    d = mujoco.MjData(m)
    cam_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, PREVIEW_CAMERA)
    shots = traj.shots()
    cam_index = {n: i for i, n in enumerate(traj.camera_names)}
    w0, h0 = traj.camera_size[cam_index[shots[0]["camera"]]]
    height = max(2, int(round(width * h0 / w0 / 2)) * 2)
    width = int(width) // 2 * 2
    frames = np.arange(traj.num_frames) if frames is None else np.asarray(frames)
    renderer = mujoco.Renderer(m, height, width)
    opt = mujoco.MjvOption()
    out = np.zeros((len(frames), height, width, 3), np.uint8)
    it = enumerate(frames)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(frames), desc="preview", unit="frame")
    try:
        for k, f in it:
            set_frame(comp, d, traj, int(f))
            n = cam_index[shots[int(traj.active_shot[f])]["camera"]]
            K = traj.camera_K[n]
            pos, quat = camera_pose_mujoco(traj.camera_w2c[f, n])
            m.cam_pos[cam_id], m.cam_quat[cam_id] = pos, quat
            # vertical fov from the intrinsics, at the camera's aspect ratio
            m.cam_fovy[cam_id] = np.degrees(2 * np.arctan(traj.camera_size[n][1] / 2 / K[1, 1]))
            mujoco.mj_camlight(m, d)
            renderer.update_scene(d, camera=cam_id, scene_option=opt)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            out[k] = renderer.render()
    finally:
        renderer.close()
    return out


def write_preview(traj, path, width: int = 320, base_dir=None, progress: bool = False) -> Path:
    """Render every frame through the active shot camera and write an H.264 MP4."""
    import av
    frames = render_frames(traj, width, base_dir=base_dir, progress=progress)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(traj.fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
