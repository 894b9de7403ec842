"""The `rooftop_chase` scene: a chase across two rooftops with a gap jump."""
from __future__ import annotations

import scenes
from scenes import (Box, DollyRig, FollowRig, Handheld, OrbitRig, Scene, StaticRig,
                    crossfade, cut)


@scenes.register("rooftop_chase", tags=("characters", "cameras"))
def rooftop_chase(gap: float = 1.5, run_speed: float = 3.0, crates: int = 3,
                  duration: float = 7.0, fps: int = 24, physics_hz: int = 480) -> Scene:
    """Two runners cross a rooftop; the hero jumps the gap to the next building.

    The hero starts near the far end of roof A, runs to its edge knocking over a
    stack of wooden crates and, without stopping, jumps the ``gap`` (m) to roof B
    (both roofs at z = 0, the street 10 m below), lands hard and tumbles onto roof B. The pursuer follows along
    a parallel line, runs through a second crate stack and stops at the edge.
    Four shots from four cameras: a handheld follow camera on the hero, a dolly
    along roof A, a static side view of the gap (entered with a cut) and an orbit
    around the hero on roof B (entered with a crossfade).

    Parameters: ``gap`` width between the roofs (m), ``run_speed`` (m/s), ``crates``
    per stack, timeline ``duration`` (s), ``fps`` and ``physics_hz``.
    """
    s = Scene(name="rooftop_chase", duration=duration, fps=fps, physics_hz=physics_hz,
              description="Two humanoids chase across a rooftop; the hero jumps the gap.")
    roof = (0.42, 0.42, 0.45, 1.0)
    s.add_static("street", Box((40.0, 40.0, 0.5)), pos=(0.0, 0.0, -10.5), color=(0.25, 0.25, 0.27, 1.0))
    s.add_static("building_a", Box((8.0, 5.0, 5.0)), pos=(-8.0, 0.0, -5.0), color=roof)
    s.add_static("building_b", Box((8.0, 5.0, 5.0)), pos=(gap + 8.0, 0.0, -5.0), color=roof)
    # parapets along the long sides and a roof-top service box (scenery)
    for name, x0 in (("a", -8.0), ("b", gap + 8.0)):
        for side, y in (("n", 4.9), ("s", -4.9)):
            s.add_static(f"parapet_{name}{side}", Box((8.0, 0.1, 0.25)), pos=(x0, y, 0.25), color=roof)
    s.add_static("vent_box", Box((0.6, 0.5, 0.5)), pos=(-10.0, 2.8, 0.5), material="metal")

    run_up_end = -1.3                # the takeoff stride starts here (0.35 s to the edge)
    land = (gap + 0.4, 0.0, 0.0)
    apex = 0.25
    hero = s.add_character("hero", pos=(-11.0, 0.0), yaw=0.0, color=(0.2, 0.35, 0.8, 1.0))
    # a running jump: reach the takeoff stride at full speed (one 4 m/s^2 ramp)
    t_jump = round(0.2 + (run_up_end + 11.0) / run_speed + run_speed / 8.0 + 0.35 + 0.005, 2)
    hero.run_to((run_up_end, 0.0), speed=run_speed, at=0.2)
    hero.jump(at=t_jump, to=land, apex=apex)
    # keep running out of the landing (flight time of an equal-height jump)
    t_land = t_jump + 2.0 * (2.0 * apex / 9.81) ** 0.5
    # he lands hard, stumbles and tumbles onto roof B (a ragdoll fall)
    hero.fall(at=round(t_land + 0.1, 3))

    chaser = s.add_character("pursuer", pos=(-14.0, 1.2), yaw=0.0, color=(0.75, 0.2, 0.15, 1.0))
    chaser.run_to((-0.6, 1.2), speed=run_speed, at=0.5)

    # crate stacks in the runners' paths
    for stack, (x, y) in enumerate(((-7.0, 0.0), (-9.0, 1.2))):
        for k in range(crates):
            s.add_prop(f"crate_{stack}_{k}", Box((0.2, 0.2, 0.2)), pos=(x + 0.02 * k, y, 0.2 + 0.4 * k + 0.001),
                       material="wood", mass=2.0)

    s.add_camera("follow", FollowRig(target="hero", offset=(-3.5, -3.0, 1.6), halflife=0.3),
                 fov=55.0, shake=Handheld(rotation_deg=0.5, translation=0.01, frequency=1.2, seed=1))
    s.add_camera("dolly", DollyRig(points=[(-9.0, -4.2, 1.4), (-5.0, -4.6, 1.8), (-1.5, -4.2, 1.6)],
                                   start=2.4, end=4.4, target="hero"), fov=50.0)
    s.add_camera("gap_side", StaticRig(pos=(gap / 2, -7.5, 1.2), look_at=(gap / 2, 0.0, 0.4)), fov=60.0)
    s.add_camera("orbit", OrbitRig(target="hero", radius=4.5, height=1.2, period=12.0, phase=-1.9), fov=50.0)
    t1, t2 = 2.4, round(t_jump - 0.6, 3)
    t3 = round(min(t_jump + 1.4, duration - 0.5), 3)
    s.shot("follow", 0.0, t1, prompt="a man in a blue jacket sprints across a gravel rooftop at dusk")
    s.shot("dolly", t1, t2, cut(), prompt="tracking shot along the rooftop, the pursuer close behind")
    s.shot("gap_side", t2, t3, cut(), prompt="side view: he leaps the gap between two buildings")
    s.shot("orbit", t3, duration, crossfade(0.5), prompt="he tumbles across the roof; the pursuer stops at the edge")
    return s
