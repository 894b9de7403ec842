"""The `brawl` scene: two fighters trade punches and kicks until one goes down."""
from __future__ import annotations

import math

import scenes
from scenes import Box, FollowRig, Handheld, OrbitRig, Scene, StaticRig, crossfade, cut


@scenes.register("brawl", tags=("characters", "cameras"))
def brawl(distance: float = 0.7, duration: float = 5.0, fps: int = 24,
          physics_hz: int = 480) -> Scene:
    """Two humanoids exchange punches and kicks in a parking garage; one falls.

    The brawler (blue) throws a right punch, the thug (red) flinches and answers
    with a kick, the brawler bounces on his toes (a small jump) and lands a left;
    the thug goes down as a ragdoll. ``distance`` (m) between the fighters' pelvises
    at the start; a crate and a pillar stand by. Three shots from three cameras:
    a static wide, an orbit around the fight (cut) and a handheld follow on the
    thug as he falls (crossfade).
    """
    s = Scene(name="brawl", duration=duration, fps=fps, physics_hz=physics_hz,
              description="Two humanoids trade blows; the thug goes down.")
    s.add_ground(size=30.0, color=(0.35, 0.35, 0.37, 1.0))
    s.add_static("pillar", Box((0.3, 0.3, 1.5)), pos=(1.2, 2.2, 1.5), color=(0.6, 0.6, 0.6, 1.0))
    s.add_prop("crate", Box((0.25, 0.25, 0.25)), pos=(-1.6, 1.4, 0.251), material="wood", mass=6.0)
    d = distance / 2
    a = s.add_character("brawler", pos=(-d, 0.0), yaw=0.0, color=(0.2, 0.35, 0.8, 1.0))
    b = s.add_character("thug", pos=(d, 0.0), yaw=math.pi, color=(0.75, 0.2, 0.15, 1.0), mass=85.0)
    a.punch("thug", at=0.6, hand="right")
    b.receive_hit(at=0.85)
    b.kick("brawler", at=1.5, foot="right")
    a.receive_hit(at=1.85)
    a.jump(at=2.5, velocity=(0.0, 0.0, 2.2))       # bouncing on his toes: airborne ~0.45 s
    a.punch("thug", at=3.2, hand="left")
    b.receive_hit(at=3.4)
    b.fall(at=3.55)

    s.add_camera("wide", StaticRig(pos=(0.0, -4.5, 1.5), look_at=(0.0, 0.0, 1.0)), fov=55.0)
    s.add_camera("orbit", OrbitRig(center=(0.0, 0.0, 1.0), radius=3.2, height=0.6, period=10.0,
                                   phase=-1.2), fov=50.0)
    s.add_camera("follow", FollowRig(target="thug", offset=(2.0, -2.5, 1.2), halflife=0.3), fov=50.0,
                 shake=Handheld(rotation_deg=0.8, translation=0.015, frequency=1.5, seed=2))
    s.shot("wide", 0.0, 1.4, prompt="two men square off in an empty parking garage")
    s.shot("orbit", 1.4, 3.3, cut(), prompt="the camera circles them as they trade punches and kicks")
    s.shot("follow", 3.3, duration, crossfade(0.4), prompt="a final left hook; the man in red goes down")
    return s
