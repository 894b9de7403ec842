"""The `dominoes` scene: a chain reaction of wooden dominoes along an S curve."""
from __future__ import annotations

import math
import random

from scenes import (Box, DollyRig, Scene, SceneError, StaticRig, crossfade, quat_from_yaw,
                    register)


def s_curve(length: float, radius: float, n: int) -> list[tuple[float, float, float]]:
    """``n`` points (x, y, heading) evenly spaced by arc length along an S curve of
    total ``length``: an arc of ``radius`` turning left, then one turning right.
    Starts at the origin heading +x."""
    out = []
    half = length / 2
    # end of the first arc (centre at (0, radius))
    turn = half / radius
    x1, y1 = radius * math.sin(turn), radius * (1 - math.cos(turn))
    for i in range(n):
        s = length * i / max(n - 1, 1)
        if s <= half:
            a = s / radius
            out.append((radius * math.sin(a), radius * (1 - math.cos(a)), a))
        else:
            # second arc: centre on the right of the heading at the junction
            a = (s - half) / radius
            cx, cy = x1 + radius * math.sin(turn), y1 - radius * math.cos(turn)
            h = turn - a
            out.append((cx - radius * math.sin(h), cy + radius * math.cos(h), h))
    return out


@register("dominoes", tags=("props", "chain-reaction"))
def dominoes(count: int = 64, height: float = 0.2, spacing: float = 0.65, radius: float = 2.5,
             push: float = 0.08, seed: int = 0) -> Scene:
    """A chain reaction of 64 wooden dominoes toppling one another along an S curve.

    ``count`` dominoes of ``height`` metres (proportions 1 : 0.5 : 0.15, like a
    scaled-up wooden domino) stand ``spacing`` x height apart along an S made of two
    arcs of ``radius`` metres. At t = 0.3 s a scripted impulse of ``push`` N s near
    the top of the first domino starts the chain. ``seed`` adds a small layout
    jitter (a few millimetres and a degree). Cameras: a low dolly travelling along
    the chain with the wave, a close static at the start and an overhead view.
    """
    if count < 2:
        raise SceneError("params.count", f"a chain needs at least 2 dominoes, got {count}")
    if not (height > 0 and spacing > 0.15 and radius > 0):
        raise SceneError("params", "height and radius must be > 0 and spacing > 0.15 "
                         "(the domino thickness, in heights)")
    rng = random.Random(seed)
    h, w, t = height, 0.5 * height, 0.15 * height
    gap = spacing * h
    length = gap * (count - 1)
    # measured: the wave runs at about 1.2 sqrt(g h) at this spacing (MuJoCo,
    # 64 dominoes of 0.2 m); the first domino takes ~0.3 s to reach its neighbour
    wave_speed = 1.2 * math.sqrt(9.81 * h)
    push_at = 0.3
    t_wave_end = push_at + 0.3 + length / wave_speed
    # three shots: the push (to 1.5 s), the wave, the aftermath (at least 1 s)
    cut1, cut2 = 1.5, max(2.0, round(t_wave_end * 2) / 2)
    duration = max(math.ceil((t_wave_end + 1.5) * 2) / 2, cut2 + 1.0)

    scene = Scene(name="dominoes", duration=duration, fps=30, physics_hz=480,
                  description=f"{count} wooden dominoes in an S-curve chain reaction")
    scene.add_ground(size=40.0, material="wood", color=(0.45, 0.32, 0.2, 1.0))
    path = s_curve(length, radius, count)
    for i, (x, y, heading) in enumerate(path):
        x += rng.uniform(-0.002, 0.002)
        y += rng.uniform(-0.002, 0.002)
        yaw = heading + math.radians(rng.uniform(-1.0, 1.0))
        tone = 0.85 + 0.15 * rng.random()
        # the thin side faces along the path; 1 mm above the floor so nothing
        # starts in contact
        scene.add_prop(f"domino_{i:02d}", Box((t / 2, w / 2, h / 2)), pos=(x, y, h / 2 + 0.001),
                       quat=quat_from_yaw(yaw), material="wood",
                       color=(0.93 * tone, 0.9 * tone, 0.82 * tone, 1.0))
    x0, y0, a0 = path[0]
    scene.kick("domino_00", (push * math.cos(a0), push * math.sin(a0), 0.0), at=push_at,
               point=(x0, y0, 0.9 * h))

    xs = [p[0] for p in path]
    ys = [p[1] for p in path]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    span = max(max(xs) - min(xs), max(ys) - min(ys))
    # dolly rail: every 8th domino and the last, 1.2 m to the right of the path, 0.6 m up
    stops = sorted(set(range(0, count, 8)) | {count - 1})
    rail = [(path[i][0] + 1.2 * math.sin(path[i][2]), path[i][1] - 1.2 * math.cos(path[i][2]), 0.6)
            for i in stops]
    scene.add_camera("start", StaticRig(pos=(x0 - 1.0, y0 - 0.9, 0.5), look_at=(x0 + 0.6, y0, 0.1)),
                     fov=45.0)
    scene.add_camera("dolly", DollyRig(points=rail, start=0.8, end=max(t_wave_end, 1.5),
                                       look_at=(cx, cy, 0.0)), fov=55.0)
    scene.add_camera("overhead", StaticRig(pos=(cx, cy - 0.3 * span, 0.75 * span + 1.0),
                                           look_at=(cx, cy, 0.0)), fov=60.0)
    scene.shot("start", 0.0, cut1, prompt="a row of wooden dominoes starts to topple")
    scene.shot("dolly", cut1, cut2, transition=crossfade(0.5),
               prompt="tracking shot along a chain of falling dominoes")
    scene.shot("overhead", cut2, duration, transition=crossfade(0.5),
               prompt="overhead view of the fallen domino S curve")
    return scene
