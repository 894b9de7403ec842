"""Training data of the built-in model, made by domain randomisation through
scenes -> sim -> bridge (and a procedural stand-in for quick tests).

Recipe (``random_scene(seed)``): a ground of random material and colour; 0-3 static
boxes behind the action; 2-6 non-overlapping props (box / sphere / cylinder / capsule,
random material, random colour, dropped from 0.4-2.4 m, some thrown or kicked); with
probability 0.5 a character beside them that walks, runs (away from the props) or jumps; 2-3 cameras on random rigs (static, orbit,
look-at, dolly) with random field of view and optional handheld shake; 2-3 shots
joined by cuts or crossfades; 2-4 s at 24 fps. Each scene is rolled out with MuJoCo
and rendered by the bridge at the model resolution with every control layer; every
shot is cut into windows of ``window`` frames (stride ``window // 2``).

A window sample (``WindowSample`` arrays, T frames, H x W):
    maps:  {name: (T, c, H, W) float16} features from ``generator.features``
    rgb:   (T, H, W, 3) uint8 preview render (styles are applied at training time)
    seg:   (T, H, W) uint8 instance ids (body index + 1, 0 = sky; for evaluation), when rendered
    audio: (2, n) float32 contact audio of the window's time span at ``sample_rate``
    env:   (L, 1) float32 contact-event envelope on the mel grid of the window
    noise: (T, C, h, w) float16 the bridge's 3D-anchored noise on the latent grid, when
           rendered without a time period (the same for a surface in every frame);
           training mixes it with i.i.d. noise. The pipeline samples from the same
           noise drawn afresh in every frame of a window (`bridge.noise`, "Time"),
           which within a window has the statistics of the i.i.d. half
Shards are ``.npz`` files (no pickle) with one stacked array per field.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .features import MAP_CHANNELS, MAP_NAMES, audio_span, control_maps, event_envelope

LAYERS = ("rgb", "depth", "segmentation", "albedo", "normals", "pose", "events", "noise")


# --------------------------------------------------------------------------- scenes
def random_scene(seed: int, duration: float | None = None):
    """A domain-randomised scene (see the module docstring); same seed, same scene."""
    import scenes
    from scenes import Box, Capsule, Cylinder, Sphere

    rng = np.random.default_rng(seed)
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    col = lambda: (u(0.05, 1), u(0.05, 1), u(0.05, 1), 1.0)  # noqa: E731
    mats = [m for m in scenes.MATERIALS if m != "flesh"]
    dur = duration or float(rng.choice([2.0, 2.5, 3.0]))
    sc = scenes.Scene(name=f"random_{seed}", duration=dur, fps=24, physics_hz=480,
                      description="domain-randomised training scene")
    sc.add_ground(size=40.0, material=str(rng.choice(mats)), color=col())
    for i in range(int(rng.integers(0, 4))):
        sc.add_box(f"block{i}", (u(0.3, 2), u(0.3, 2), u(0.3, 1.5)), (u(-4, 4), u(4.5, 8), 0.0),
                   yaw=u(0, math.pi))
    actor = (u(-2.5, -1.5), u(-2.5, -1.5)) if rng.random() < 0.5 else None
    names, placed = [], []                 # placed: (x, y, z, bounding radius), to avoid overlaps
    for i in range(int(rng.integers(2, 7))):
        kind = int(rng.integers(4))
        s = u(0.08, 0.35)
        shape = [Box((s, s * u(0.5, 1.5), s * u(0.5, 1.5))), Sphere(s), Cylinder(s, s * u(0.5, 2)),
                 Capsule(s * 0.7, s)][kind]
        rad = s * 2.2                      # >= half-diagonal of every shape above
        for _try in range(30):
            pos = (u(-2, 2), u(-1.5, 1.5), u(max(0.4, rad + 0.05), 2.4))
            if all(math.dist(pos, q[:3]) > rad + q[3] for q in placed) and \
                    (actor is None or math.dist(pos[:2], actor) > rad + 0.6):
                break
        else:
            continue
        placed.append((*pos, rad))
        name = f"prop{i}"
        vel = (u(-3, 3), u(-3, 3), u(0, 3)) if rng.random() < 0.3 else (0.0, 0.0, 0.0)
        sc.add_prop(name, shape, pos, material=str(rng.choice(mats)),
                    linvel=vel, angvel=(u(-3, 3), u(-3, 3), u(-3, 3)), color=col())
        names.append(name)
        if rng.random() < 0.3:
            sc.kick(name, (u(-2, 2), u(-2, 2), u(0, 2)), at=u(0.2, dur * 0.6))
    if actor is not None:
        ch = sc.add_character("actor", actor, yaw=u(0, 2 * math.pi), color=col())
        act = int(rng.integers(3))
        if act == 0:
            ch.walk_to((u(0, 2), u(-3, -2)), at=u(0, 0.5))
        elif act == 1:
            ch.run_to((u(1, 3), u(-3.5, -2.5)), at=u(0, 0.5))
        else:
            ch.jump(at=u(0.3, 1.0), velocity=(u(-1, 1), u(-1, 1), u(2, 3.5)))
        names.append("actor")
    ncam = int(rng.integers(2, 4))
    for k in range(ncam):
        target = str(rng.choice(names))
        r, a = u(3.5, 7), u(0, 2 * math.pi)
        pos = (r * math.cos(a), r * math.sin(a), u(0.6, 3.5))
        rig = int(rng.integers(4))
        if rig == 0:
            rigo = scenes.StaticRig(pos=pos, look_at=(u(-0.5, 0.5), u(-0.5, 0.5), u(0.2, 1.0)))
        elif rig == 1:
            rigo = scenes.OrbitRig(center=(0.0, 0.0, 0.5), radius=r, height=pos[2], period=u(6, 16), phase=a)
        elif rig == 2:
            rigo = scenes.LookAtRig(pos=pos, target=target)
        else:
            p2 = (pos[0] + u(-2, 2), pos[1] + u(-2, 2), pos[2])
            rigo = scenes.DollyRig(points=[pos, p2], start=0.0, end=dur, look_at=(0.0, 0.0, 0.5))
        shake = scenes.Handheld(seed=int(rng.integers(1 << 16))) if rng.random() < 0.3 else None
        sc.add_camera(f"cam{k}", rigo, fov=u(35, 70), width=256, height=256, shake=shake)
    cuts = np.sort(rng.choice(np.arange(1, int(dur * 2)), size=ncam - 1, replace=False)) / 2.0
    bounds = [0.0, *cuts.tolist(), dur]
    for k in range(ncam):
        tr = scenes.crossfade(0.25) if (k and rng.random() < 0.3) else scenes.cut()
        sc.shot(f"cam{k}", bounds[k], bounds[k + 1], transition=tr)
    return sc.validate()


def simulate_and_render(seed: int, resolution=(64, 64), latent_factor: int = 4, noise_kind: str = "point"):
    """Conditioning of ``random_scene(seed)`` at ``resolution``."""
    import bridge
    import sim
    traj = sim.rollout(random_scene(seed), engine="mujoco", seed=seed)
    cond = bridge.render(traj, layers=LAYERS, resolution=tuple(resolution), seed=seed,
                         latent_factor=latent_factor, noise_kind=noise_kind)
    return cond


# --------------------------------------------------------------------------- windows
def windows_from_conditioning(cond, window: int, sample_rate: int = 16000, mel_rate: float = 100.0,
                              stride: int | None = None) -> dict:
    """Cut every shot of a Conditioning into window samples (stacked arrays)."""
    from scipy.signal import resample_poly
    stride = stride or max(1, window // 2)
    g = math.gcd(int(sample_rate), int(cond.sample_rate))
    audio = resample_poly(cond.audio, sample_rate // g, cond.sample_rate // g, axis=1).astype(np.float32)
    env_all = event_envelope(cond.events, int(audio.shape[1] / sample_rate * mel_rate) + 64, mel_rate)
    out = {"rgb": [], "seg": [], "audio": [], "env": [], **{f"map_{m}": [] for m in MAP_NAMES}, "mask": []}
    for s in cond.shots:
        T = s.num_frames
        for st in range(0, max(T - window, 0) + 1, stride):
            if T < window:
                break
            sl = slice(st, st + window)
            t0 = float(s.frames[st]) / cond.fps
            m0, L = audio_span(t0, window, cond.fps, mel_rate)
            n = int(round((L - 1) * sample_rate / mel_rate))
            a0 = int(round(m0 * sample_rate / mel_rate))
            a = np.zeros((2, n), np.float32)
            seg = audio[:, a0:a0 + n]
            a[:, :seg.shape[1]] = seg
            maps = control_maps(s.layers, sl, MAP_NAMES)
            out["rgb"].append(np.asarray(s.layers["rgb"][sl], np.uint8))
            if "noise" in s.layers:
                out.setdefault("noise", []).append(np.asarray(s.layers["noise"][sl], np.float16))
            if "segmentation" in s.layers:
                out["seg"].append(np.minimum(np.asarray(s.layers["segmentation"][sl]), 255).astype(np.uint8))
            out["audio"].append(a)
            out["env"].append(env_all[m0:m0 + L] if m0 + L <= len(env_all) else
                              np.pad(env_all[m0:], ((0, m0 + L - len(env_all)), (0, 0))))
            H, W = out["rgb"][-1].shape[1:3]
            out["mask"].append(np.array([m in maps for m in MAP_NAMES]))
            for m in MAP_NAMES:
                out[f"map_{m}"].append(maps[m].astype(np.float16) if m in maps else
                                       np.zeros((window, MAP_CHANNELS[m], H, W), np.float16))
    return {k: np.stack(v) for k, v in out.items() if v}


def synthetic_windows(num: int, seed: int, window: int = 8, size=(32, 32), fps: float = 24.0,
                      sample_rate: int = 16000, mel_rate: float = 100.0) -> dict:
    """Procedural stand-in for simulated windows (no engine needed; for tests and smoke
    runs): coloured discs falling onto a floor under a perspective-like depth ramp;
    segmentation colours = albedo = object colours; the preview = shaded object colours; an
    impact click in the audio and a spike in the envelope when a disc hits the floor."""
    rng = np.random.default_rng(seed)
    W, H = size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = {k: [] for k in ["rgb", "audio", "env", "mask"] + [f"map_{m}" for m in MAP_NAMES]}
    L = audio_span(0.0, window, fps, mel_rate)[1]
    n = int(round((L - 1) * sample_rate / mel_rate))
    for _ in range(num):
        floor_col = rng.uniform(40, 200, 3)
        rgb = np.zeros((window, H, W, 3), np.float32) + floor_col * (0.6 + 0.4 * yy / H)[..., None]
        seg = np.zeros((window, H, W, 3), np.float32) + floor_col
        depth = np.broadcast_to(2.0 + 6.0 * (1 - yy / H), (window, H, W)).copy()
        audio = np.zeros((2, n), np.float32)
        env_times = []
        for _k in range(int(rng.integers(1, 4))):
            col = rng.uniform(0, 255, 3)
            r = rng.uniform(2.5, 6) * W / 32
            cx, y0, v = rng.uniform(r, W - r), rng.uniform(0, H / 2), rng.uniform(1, 4) * H / 32
            floor = H - r - 1
            for t in range(window):
                cy = min(y0 + v * t, floor)
                if cy == floor and (t == 0 or y0 + v * (t - 1) < floor):
                    env_times.append(t / fps)
                m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
                shade = 0.7 + 0.3 * np.clip((cx - xx + cy - yy) / (2 * r), -1, 1)
                rgb[t][m] = col * shade[m][:, None]
                seg[t][m] = col
                depth[t][m] = 2.0 + 6.0 * (1 - cy / H) - 0.2
        for te in env_times:
            i0 = int(te * sample_rate)
            k = np.arange(n - i0) / sample_rate
            audio[:, i0:] += 0.5 * np.sin(2 * np.pi * rng.uniform(300, 2000) * k) * np.exp(-k * 40)
        layers = {"rgb": rgb.astype(np.uint8), "depth": depth.astype(np.float32),
                  "segmentation_rgb": seg.astype(np.uint8), "albedo": seg.astype(np.uint8)}
        maps = control_maps(layers, slice(None), MAP_NAMES)
        out["rgb"].append(layers["rgb"])
        out["audio"].append(np.clip(audio, -1, 1))
        out["env"].append(event_envelope([{"time": t, "impulse": 2.0} for t in env_times], L, mel_rate))
        out["mask"].append(np.array([m in maps for m in MAP_NAMES]))
        for m in MAP_NAMES:
            out[f"map_{m}"].append(maps[m].astype(np.float16) if m in maps else
                                   np.zeros((window, MAP_CHANNELS[m], H, W), np.float16))
    return {k: np.stack(v) for k, v in out.items()}


# --------------------------------------------------------------------------- dataset
def build_dataset(out_dir, num_scenes: int, seed: int = 0, resolution=(64, 64), window: int = 8,
                  latent_factor: int = 4, progress: bool = True, noise_kind: str = "point") -> Path:
    """Simulate and render ``num_scenes`` random scenes into ``out_dir/shard_XXXXX.npz``
    (one per scene; existing shards are kept, so an interrupted build resumes). A
    directory holding a dataset of another recipe (seed, resolution, window, latent
    grid, layers, noise construction) is an error, not silently reused. ``noise_kind``:
    the anchored noise's construction (`bridge.noise.KINDS`)."""
    from tqdm.auto import tqdm
    from bridge.noise import design as noise_design, recorded_kind
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"num_scenes": num_scenes, "seed": seed, "resolution": list(resolution), "window": window,
              "latent_factor": latent_factor, "layers": list(LAYERS), "noise": noise_design(noise_kind),
              "generator": "generator.data.random_scene"}
    rfile = out / "recipe.json"
    if rfile.exists():
        old = json.loads(rfile.read_text())
        old["noise"] = noise_design(recorded_kind(old.get("noise")))
        diff = sorted(k for k in recipe if k != "num_scenes" and old.get(k) != recipe[k])
        if diff:
            raise ValueError(f"{rfile}: the dataset there was built with another recipe ("
                             + ", ".join(f"{k}: {old.get(k)!r} there, {recipe[k]!r} asked" for k in diff)
                             + "); use another directory or the same settings (--data-seed for the seed)")
    rfile.write_text(json.dumps(recipe, indent=1))
    failures = []
    for i in tqdm(range(num_scenes), desc="dataset scenes", disable=not progress):
        shard = out / f"shard_{i:05d}.npz"
        if shard.exists():
            continue
        scene_seed = seed * 100_003 + i
        try:
            cond = simulate_and_render(scene_seed, resolution, latent_factor, noise_kind)
        except Exception as e:  # noqa: BLE001 - a random scene may be infeasible; record and go on
            failures.append({"scene_seed": scene_seed, "error": f"{type(e).__name__}: {e}"[:300]})
            continue
        w = windows_from_conditioning(cond, window)
        if w:
            tmp = shard.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **w)
            tmp.replace(shard)
    if failures:
        (out / "failures.json").write_text(json.dumps(failures, indent=1))
    return out


def load_dataset(data_dir) -> dict:
    """Concatenate all shards of a dataset directory (stacked arrays)."""
    d = Path(data_dir)
    shards = sorted(d.glob("shard_*.npz"))
    shards = [s for s in shards if not s.name.endswith(".tmp.npz")]
    if not shards:
        raise FileNotFoundError(f"{d}: no shard_*.npz files (build the dataset first)")
    parts = []
    for s in shards:
        with np.load(s, allow_pickle=False) as z:
            parts.append({k: z[k] for k in z.files})
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}
