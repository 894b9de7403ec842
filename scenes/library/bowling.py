"""The `bowling` scene: a ball rolled down a lane into ten pins."""
from __future__ import annotations

import math

from scenes import (Cylinder, FollowRig, Material, Scene, SceneError, Sphere, StaticRig,
                    crossfade, register)

# regulation figures (USBC), metres and kilograms
LANE_LENGTH = 18.29     # foul line to head pin
LANE_WIDTH = 1.054      # 41.5 in
GUTTER_WIDTH = 0.235
PIN_SPACING = 0.3048    # 12 in between neighbouring pin centres
PIN_HEIGHT = 0.381
PIN_RADIUS = 0.057      # a cylinder between the 2.03 in base and 4.77 in belly
PIN_MASS = 1.53
BALL_RADIUS = 0.109     # 8.5 in diameter


def pin_positions(head: tuple[float, float]) -> list[tuple[float, float]]:
    """(x, y) of the ten pins in standard order 1..10: row k (0..3) holds k+1 pins
    spaced 12 in apart, rows 12 in * cos 30 deg apart along +x."""
    out = []
    for row in range(4):
        for j in range(row + 1):
            out.append((head[0] + row * PIN_SPACING * math.cos(math.pi / 6),
                        head[1] + (row / 2 - j) * PIN_SPACING))
    return out


@register("bowling", tags=("props",))
def bowling(speed: float = 8.0, spin: float = 3.0, aim: float = -0.06, ball_mass: float = 7.0,
            lane_length: float = LANE_LENGTH, duration: float = 5.0) -> Scene:
    """A 7 kg bowling ball rolled with side spin down a lane into ten pins.

    The ``ball_mass`` kg ball leaves the foul line at ``speed`` m/s with half of its rolling spin and
    ``spin`` rad/s of side roll about the direction of travel, which hooks it toward
    -y once the skid ends; it starts offset so that the hook brings it to lateral
    position ``aim`` (m) at the head pin (-0.06: the right-hand pocket). Pins are
    1.53 kg cylinders in the regulation triangle; lane, gutters, kickbacks, pit and
    backstop are static; ``lane_length`` is foul line to head pin (m), the timeline
    lasts ``duration`` s. Cameras: a spring-damped follow camera behind the ball
    and a static camera at the pin deck.
    """
    r = BALL_RADIUS
    L = lane_length
    # a solid sphere with side roll w ends its skid moving sideways at (2/7) r w
    drift = 2.0 / 7.0 * r * spin * (L / speed)
    y0 = max(-0.4, min(0.4, aim + drift))

    scene = Scene(name="bowling", duration=duration, fps=30, physics_hz=960,
                  description="a bowling ball hooks into the pocket and scatters ten pins")
    scene.add_material("pin", Material(friction=0.35, restitution=0.6, density=900.0,
                                       acoustic="plastic", color=(0.95, 0.95, 0.93, 1.0)))
    scene.add_material("lane", Material(friction=0.2, restitution=0.3, density=700.0,
                                        acoustic="wood", color=(0.82, 0.66, 0.45, 1.0)))
    deck_end = L + 3 * PIN_SPACING * math.cos(math.pi / 6) + 0.3
    half_w = LANE_WIDTH / 2
    outer = half_w + GUTTER_WIDTH

    def block(name, x, y, z, material, color=None):
        """A static box spanning the intervals x, y, z."""
        scene.add_box(name, (x[1] - x[0], y[1] - y[0], z[1] - z[0]),
                      ((x[0] + x[1]) / 2, (y[0] + y[1]) / 2, (z[0] + z[1]) / 2), material=material,
                      color=color)

    # a closed box around the lane: lane top at z = 0 standing on a floor at -0.5;
    # behind the pin deck the pit (the floor itself) is walled in by the kickbacks
    # and the backstop, so nothing leaves the set
    block("floor", (-12.0, deck_end + 2.5), (-4.0, 4.0), (-0.6, -0.5), "concrete")
    block("lane", (-6.0, deck_end), (-half_w, half_w), (-0.5, 0.0), "lane")
    for side, sign in (("left", 1), ("right", -1)):
        block(f"gutter_{side}", (-6.0, deck_end), sorted((sign * half_w, sign * outer)), (-0.5, -0.07),
              "metal", (0.3, 0.3, 0.32, 1.0))
        block(f"kickback_{side}", (L - 0.6, deck_end + 1.8), sorted((sign * outer, sign * (outer + 0.1))),
              (-0.5, 0.65), "wood", (0.25, 0.2, 0.18, 1.0))
    block("backstop", (deck_end + 1.6, deck_end + 1.8), (-outer, outer), (-0.5, 1.0), "wood",
          (0.08, 0.08, 0.08, 1.0))

    for i, (x, y) in enumerate(pin_positions((L, 0.0))):
        # 2 mm above the deck: they settle in the first frames, nothing starts in contact
        scene.add_prop(f"pin_{i + 1:02d}", Cylinder(PIN_RADIUS, PIN_HEIGHT / 2),
                       pos=(x, y, PIN_HEIGHT / 2 + 0.002), material="pin", mass=PIN_MASS)
    # rolling about +y moves the ball along +x; side roll about +x hooks it toward -y
    scene.add_prop("ball", Sphere(r), pos=(0.0, y0, r + 0.002), material="plastic", mass=ball_mass,
                   linvel=(speed, 0.0, 0.0), angvel=(spin, 0.5 * speed / r, 0.0),
                   color=(0.1, 0.15, 0.55, 1.0))

    # a short half-life: at 7 m/s a softer spring would trail metres behind
    scene.add_camera("follow", FollowRig(target="ball", offset=(-1.8, 0.45, 0.6), halflife=0.05,
                                         target_offset=(2.5, 0.0, 0.0)), fov=50.0)
    scene.add_camera("pins", StaticRig(pos=(L - 2.6, 0.4, 0.85), look_at=(L + 0.45, 0.0, 0.1)),
                     fov=40.0)
    # the ball slows to about 6/7 of its speed while it skids; cut just before impact
    t_hit = (L - 2.5) / (0.86 * speed)
    # (on a whole frame, leaving both shots at least one frame for short timelines)
    frames = round(duration * scene.fps)
    if frames < 2:
        raise SceneError("params.duration", f"bowling needs at least 2 frames, got {duration} s")
    cut = min(max(round(t_hit * 10) * scene.fps // 10, 1), frames - 1, int(0.75 * frames)) / scene.fps
    fade = min(0.4, cut, duration - cut)
    scene.shot("follow", 0.0, cut, prompt="a bowling ball rolls down a polished lane")
    scene.shot("pins", cut, duration, transition=crossfade(fade),
               prompt="the ball crashes into the pins, which scatter")
    return scene
