"""Engine-independent character control: choreography plan, procedural poses,
joint PD targets and contact-limited root assist.

`plan_character` turns a character's actions into a `Plan` before any physics
step (an impossible request raises `scenes.ChoreographyError` saying why and what
would work): a root path on the ground (position, velocity, acceleration, yaw),
gait and pose phases, jumps solved ballistically, and the choreographed
`Plan.waypoints`. `Controller` then runs inside the rollout loop:

    * every `CONTROL_DECIMATION` physics steps it evaluates the plan and the
      procedural pose (gait cycle, crouch, flight tuck, punch/kick aimed at the
      target body's current position, hit flinch) and hands joint targets and
      gains to the engine's joint PD (`Engine.set_pd_targets`);
    * every physics step it applies the root assist -- a force and a stabilising
      torque on the pelvis -- ONLY if one of the character's feet touches a
      support in that step. The assist's tangential part is clipped into the
      friction cone of the feet's contacts, |F_t| <= mu F_n, with F_n the normal
      force measured in the previous step; its normal part only pushes (a ground
      cannot pull); the torque is bounded by what the feet's contact forces can
      produce (F_n times the foot's half-length). Airborne characters get no
      external force or torque at all, so their centre of mass is ballistic.

Support means contact of a character's body with any body that is not part of
the same character, in the physics step being taken (`Engine.touching`).

On MuJoCo the rollout runs `Controller.update`, `before_step` and `after_step` in C
(sim/_native.c, "control" section; plans and constants exported by
`sim.mujoco_engine.NativeStepper`), operation by operation the same, so both give
bit-identical trajectories (tests/test_sim_native.py). A change here must be made
there too; ``PHYSCUT_NATIVE_CONTROL=0`` keeps the updates in Python.
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from scenes import (Box, ChoreographyError, Fall, GetUp, Jump, Kick, Land, Punch,
                    ReceiveHit, RunTo, Stand, Turn, WalkTo)

from . import humanoid

#: Physics steps between two evaluations of the plan and pose (PD targets in between
#: are held; the engine's PD runs every step).
CONTROL_DECIMATION = 4
G = 9.81

# root assist gains (per unit mass): horizontal PD and vertical PD, orientation PD
KP_XY, KD_XY = 60.0, 16.0
KP_Z, KD_Z = 150.0, 20.0
# orientation PD (per unit of the body's rotational inertia, ~m * 0.12 m^2) on the
# torso, evaluated every physics step: the torque is explicit, so it acts on the
# heavy torso rather than the light pelvis
KP_ROT, KD_ROT = 150.0, 20.0
TORQUE_BODY = "torso"
TORQUE_FROM_FRICTION = True
FOOT_LEVER = 0.12                  # m: half-length of the foot, bounds the assist torque
MAX_VERTICAL_ASSIST = 1.0          # x body weight while standing / moving
PUSH_VERTICAL_ASSIST = 6.0         # x body weight during a jump push-off
CROUCH_BACK = 0.12                 # m: the pelvis sits back over the heels in the crouch
CROUCH_DEPTH = 0.2                # m: pelvis drop before a jump
LAND_DEPTH = 0.15                  # m: pelvis drop absorbing a landing
WALK_ACCEL, RUN_ACCEL = 1.5, 4.0   # m/s^2, start/stop ramps of walk_to / run_to
PUSH_TIME = 0.35                   # s: jump push-off before takeoff
PUSH_POINT = 0.0                   # where the push's horizontal assist acts: 0 COM, 1 feet
PUSH_PRESS = 0.04                  # m: push-off leg targets reach this far into the ground
PUSH_LEG_STIFFNESS = 0.3          # leg PD gain scale during a push-off
PUSH_FREEZE_FEET = False
PUSH_POSE_WEIGHT = 1.0              # share of the torso-orientation torque during a push           # plant both feet where they are for the push
PUSH_TIME_RUNNING = 0.35           # s: the push of a running jump (one quick gather step)
PUSH_LEAD = 0.6                    # reach the takeoff velocity within this part of the push
CROUCH_TIME = 0.45                 # s: crouch before the push-off
FLIGHT_REACH = 0.35                # rad: extra hip flexion reaching for the landing
FLIGHT_TRUNK = -0.15               # rad: trunk extension in flight (keeps it upright)
LAND_TIME = 0.35                   # s: automatic landing crouch
LAND_EARLY = 0.08                  # s: the landing pose starts this much before touchdown
LAND_BRAKE_TIME = 0.12             # s: time scale of the landing's vertical braking
LAND_VERTICAL_ASSIST = 3.5         # x body weight while absorbing a landing
SWAY_WALK, SWAY_RUN = 0.05, 0.02   # m: lateral pelvis sway over the stance foot
WALK_DUTY = 0.6
WEIGHT_SHARE = 0.5                 # part of the body weight the vertical assist carries
CONE_INCLUDES_ASSIST = True
GAIT_CROUCH = 0.0                  # m: extra pelvis drop while moving
RUN_STEP = (0.6, 0.12, 1.2)        # step length = min(a + b * speed, c) m
RUN_LIFT = 0.16
TOE_LEVER = 0.15                   # m: ankle to the ball of the foot
RUN_DUTY = 0.45                    # fraction of a stride a foot is planted when running
SETTLE_TIME = 0.3                  # s: to finish the last step after a move
STRIDE_MAX = 2.0                   # m: longer than any stride (settling finishes a cycle)


# ---------------------------------------------------------------------------- scene geometry
def support_height(scene, x: float, y: float, below: float = 1e9) -> float:
    """Height of the highest static box top under (x, y) that is at most ``below``
    (0 if none). Other static shapes are ignored by the planner."""
    best = None
    origin = np.array([x, y, min(below, 1e6)], float)
    direction = np.array([0.0, 0.0, -1.0])
    for s in scene.statics:
        if not isinstance(s.shape, Box):
            continue
        w, qx, qy, qz = s.quat
        R = np.array([[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - w * qz), 2 * (qx * qz + w * qy)],
                      [2 * (qx * qy + w * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - w * qx)],
                      [2 * (qx * qz - w * qy), 2 * (qy * qz + w * qx), 1 - 2 * (qx * qx + qy * qy)]])
        o = R.T @ (origin - np.asarray(s.pos, float))
        d = R.T @ direction
        h = np.asarray(s.shape.half_extents, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-h - o) / d
            t2 = (h - o) / d
        # a ray parallel to a slab: unconstrained inside it, no hit outside it
        par = np.abs(d) < 1e-12
        inside = np.abs(o) <= h
        t1 = np.where(par, np.where(inside, -np.inf, np.inf), t1)
        t2 = np.where(par, np.where(inside, np.inf, np.inf), t2)
        tn = np.max(np.minimum(t1, t2))
        tf = np.min(np.maximum(t1, t2))
        if tn <= tf and tf >= 0:
            z = origin[2] - max(tn, 0.0)
            if best is None or z > best:
                best = z
    return 0.0 if best is None else float(best)


# ---------------------------------------------------------------------------- plan
@dataclass
class Segment:
    """Root motion between t0 and t1: ``kind`` is "hold", "move", "turn" or "flight"."""
    kind: str
    t0: float
    t1: float
    p0: np.ndarray                 # (2,) start ground point
    p1: np.ndarray                 # (2,) end ground point
    yaw0: float
    yaw1: float
    ground: float                  # support height (m)
    speed: float = 0.0             # cruise speed
    accel: float = 1.0
    v0: float = 0.0                # speed at t0 (run-up into a move)
    v1: float = 0.0                # speed at t1 (kept for a running jump)
    gait: Optional[str] = None     # "walk" / "run"
    # flight
    com0: Optional[np.ndarray] = None
    vel0: Optional[np.ndarray] = None
    ground1: float = 0.0

    @functools.cached_property
    def ends(self) -> tuple[float, float, float, float, float]:
        """(x0, y0, x1, y1, length) as floats (segments are never changed once
        planned; the control loop reads these every update)."""
        (x0, y0), (x1, y1) = self.p0[:2].tolist(), self.p1[:2].tolist()
        return x0, y0, x1, y1, math.hypot(x1 - x0, y1 - y0)


@dataclass
class Overlay:
    """A timed pose: punch, kick, hit, crouch, land, push, fall, get_up."""
    kind: str
    t0: float
    t1: float
    side: str = "right"
    target: str = ""


@dataclass
class Plan:
    character: int
    name: str
    segments: list[Segment]
    overlays: list[Overlay]
    waypoints: list[tuple[float, np.ndarray, str]] = field(default_factory=list)
    jumps: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (takeoff, land, v)

    def segment(self, t: float) -> Segment:
        for s in self.segments:
            if s.t0 <= t < s.t1:
                return s
        return self.segments[-1]

    def overlays_at(self, t: float) -> list[Overlay]:
        return [o for o in self.overlays if o.t0 <= t < o.t1]

    def falling(self, t: float) -> bool:
        """True from a `fall` until the end of the following `get_up` (if any)."""
        for o in self.overlays:
            if o.kind == "fall" and o.t0 <= t < o.t1:
                return True
        return False


def _length(s: Segment) -> float:
    """Ground distance from ``s.p0`` to ``s.p1`` (m)."""
    return s.ends[4]


def _trapezoid(s: Segment):
    """Phases of a move segment's speed trapezoid: (L, a, v, v0, v1, ta, td, da, dd, tc)
    = length, accel, cruise/start/end speeds, accel and decel times and distances, and
    the cruise time."""
    L = _length(s)
    a, v, v0, v1 = s.accel, s.speed, s.v0, s.v1
    ta = max(v - v0, 0.0) / a
    td = max(v - v1, 0.0) / a
    da = (v0 + v) / 2 * ta
    dd = (v + v1) / 2 * td
    tc = max(L - da - dd, 0.0) / v if v > 0 else 0.0
    return L, a, v, v0, v1, ta, td, da, dd, tc


def _profile(s: Segment, t: float) -> tuple[float, float, float]:
    """(distance, speed, acceleration) along a move segment at time t: trapezoid
    from v0 up to ``speed`` and down to v1 with ``accel``."""
    L, a, v, v0, v1, ta, td, da, dd, tc = _trapezoid(s)
    tau = t - s.t0
    if tau <= 0:
        return 0.0, v0, 0.0
    if tau < ta:
        return v0 * tau + a * tau * tau / 2, v0 + a * tau, a
    tau -= ta
    if tau < tc:
        return da + v * tau, v, 0.0
    tau -= tc
    if tau < td:
        return da + v * tc + v * tau - a * tau * tau / 2, v - a * tau, -a
    return L, v1, 0.0


def _profile_many(s: Segment, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, speed) of `_profile` at many times ``ts`` at once (the same
    arithmetic, element by element)."""
    L, a, v, v0, v1, ta, td, da, dd, tc = _trapezoid(s)
    tau = ts - s.t0
    t2 = tau - ta
    t3 = t2 - tc
    dist = np.full(tau.shape, L)
    vel = np.full(tau.shape, v1)
    m4 = t3 < td
    dist[m4] = da + v * tc + v * t3[m4] - a * t3[m4] * t3[m4] / 2
    vel[m4] = v - a * t3[m4]
    m3 = t2 < tc
    dist[m3] = da + v * t2[m3]
    vel[m3] = v
    m2 = tau < ta
    dist[m2] = v0 * tau[m2] + a * tau[m2] * tau[m2] / 2
    vel[m2] = v0 + a * tau[m2]
    m1 = tau <= 0
    dist[m1] = 0.0
    vel[m1] = v0
    return dist, vel


def _move_duration(L: float, v: float, a: float, v0: float, v1: float) -> float:
    ta, td = max(v - v0, 0) / a, max(v - v1, 0) / a
    da, dd = (v0 + v) / 2 * ta, (v + v1) / 2 * td
    if da + dd <= L:
        return ta + td + (L - da - dd) / v
    # triangular profile: peak speed vp with (vp^2 - v0^2 + vp^2 - v1^2) / (2a) = L
    vp = math.sqrt(max((2 * a * L + v0 * v0 + v1 * v1) / 2, 0.0))
    return max(vp - v0, 0) / a + max(vp - v1, 0) / a


_ZERO3 = np.zeros(3)


def _v3(xy, z: float) -> np.ndarray:
    """(x, y, z) from the first two entries of ``xy`` and ``z`` (cheaper than np.r_)."""
    return np.array((xy[0], xy[1], z), dtype=float)


def _interp(x: float, xp: list, fp: list) -> float:
    """``np.interp`` of one float on lists (same arithmetic, without numpy's
    per-call overhead): clamped at the ends, linear in between."""
    if x <= xp[0]:
        return fp[0]
    if x >= xp[-1]:
        return fp[-1]
    j = bisect.bisect_right(xp, x) - 1
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    return slope * (x - xp[j]) + fp[j]


def _norm2(x: float, y: float) -> float:
    """sqrt(x^2 + y^2) as plain IEEE operations: the per-step assist clipping in
    sim/_native.c computes exactly the same (``math.hypot`` rounds differently from
    C's ``hypot`` in the last bit), so both rollout loops stay bit-identical."""
    return math.sqrt(x * x + y * y)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def plan_character(scene, ci: int) -> Plan:
    """The choreography plan of ``scene.characters[ci]`` (see module docstring)."""
    c = scene.characters[ci]
    body = humanoid.build(c)
    com_h = _com_height(body)
    actions = sorted(enumerate(c.actions), key=lambda ia: (ia[1].at, ia[0]))
    pos = np.array(c.pos, float)
    yaw = float(c.yaw)
    ground = support_height(scene, pos[0], pos[1])
    t = 0.0
    segs: list[Segment] = []
    overlays: list[Overlay] = []
    waypoints: list[tuple[float, np.ndarray, str]] = []
    jumps = []
    vel_end = np.zeros(2)    # ground velocity at the end of the last segment
    t_vel_end = -1.0
    end = scene.duration
    busy_until = 0.0         # end time of the last root motion
    path = f"characters[{ci}]"

    def vel_in(target, t0) -> float:
        """Speed carried into a move starting at t0 towards target (after a landing)."""
        if abs(t0 - t_vel_end) > 0.15 or not np.any(vel_end):
            return 0.0
        d = target - pos
        n = float(np.linalg.norm(d))
        return max(0.0, float(vel_end @ d) / n) if n > 1e-9 else 0.0

    def hold_until(t1):
        nonlocal t
        if t1 > t + 1e-9:
            segs.append(Segment("hold", t, t1, pos.copy(), pos.copy(), yaw, yaw, ground))
            t = t1

    for k, (ai, a) in enumerate(actions):
        apath = f"{path}.actions[{ai}]"
        nxt = next((b for _, b in actions[k + 1:] if not isinstance(b, (Punch, Kick, ReceiveHit, Land))), None)
        t_next = nxt.at if nxt is not None else math.inf   # the timeline may end mid-motion
        if a.at < busy_until - 1e-6 and not isinstance(a, (Punch, Kick, ReceiveHit, Land, Fall)):
            prev = segs[-1]
            raise ChoreographyError(apath + ".at", f"{a.kind} at t={a.at:g} s starts before the previous "
                                    f"motion ends at t={busy_until:.2f} s; start it at t >= {busy_until:.2f} s "
                                    f"or make the previous {prev.kind} shorter/faster")
        if isinstance(a, (WalkTo, RunTo)):
            hold_until(a.at)
            target = np.array(a.target, float)
            L = float(np.linalg.norm(target - pos))
            gait = "walk" if isinstance(a, WalkTo) else "run"
            acc = WALK_ACCEL if gait == "walk" else RUN_ACCEL
            # a running jump's run-up ends where its takeoff stride begins
            avail = t_next - a.at - (PUSH_TIME_RUNNING if isinstance(nxt, Jump) else 0.0)
            v0 = vel_in(target, a.at)
            speed = a.speed
            v1 = 0.0
            if isinstance(nxt, Jump) and L > 1e-6:
                # running jump: arrive at the takeoff point exactly at takeoff, at cruise speed
                need = _speed_for(L, avail, acc, a.speed, v0)
                if need <= a.speed + 1e-9:
                    speed = v1 = need
                else:
                    v1 = a.speed
            dur = _move_duration(L, speed, acc, v0, v1) if L > 1e-6 else 0.0
            if dur > avail + 1e-6:
                vmax = 2.5 if gait == "walk" else 9.0
                need = _speed_for(L, avail, acc, v1, v0)
                hint = (f"raise speed to {need:.2f} m/s" if need <= vmax else
                        f"the fastest {gait} ({vmax:g} m/s) needs "
                        f"{_move_duration(L, vmax, acc, v0, min(v1, vmax)):.2f} s: move the target closer "
                        f"than {_reach(avail, vmax, acc, v1, v0):.2f} m")
                raise ChoreographyError(apath, f"{a.kind} to {tuple(a.target)} covers {L:.2f} m and takes "
                                        f"{dur:.2f} s at {a.speed:g} m/s, but the next action starts "
                                        f"{avail:.2f} s later (t={t_next:g} s); {hint}, or start the next "
                                        f"action at t >= {a.at + dur:.2f} s")
            new_yaw = math.atan2(target[1] - pos[1], target[0] - pos[0]) if L > 1e-6 else yaw
            g1 = support_height(scene, target[0], target[1], ground + 0.5)
            segs.append(Segment("move", a.at, a.at + dur, pos.copy(), target.copy(), yaw, new_yaw, ground,
                                speed=speed, accel=acc, v0=v0, v1=v1, gait=gait))
            t = a.at + dur
            busy_until = t
            pos, yaw, ground = target, new_yaw, g1
            vel_end = (target - segs[-1].p0) / max(L, 1e-9) * v1
            t_vel_end = t
            waypoints.append((t, np.array([pos[0], pos[1], ground]), f"{a.kind} target"))
        elif isinstance(a, Turn):
            hold_until(a.at)
            segs.append(Segment("turn", a.at, a.at + a.duration, pos.copy(), pos.copy(), yaw, a.yaw, ground))
            t = a.at + a.duration
            busy_until = t
            yaw = a.yaw
        elif isinstance(a, Stand):
            hold_until(a.at)
        elif isinstance(a, Jump):
            # a running jump: the run-up ended at speed at its target; the takeoff
            # stride carries on at that speed to the takeoff point at `at`
            running = (bool(segs) and segs[-1].kind == "move" and segs[-1].v1 > 1.0
                       and abs(segs[-1].t1 - (a.at - PUSH_TIME_RUNNING)) < 0.05)
            if running:
                prev = segs[-1]
                u = (prev.p1 - prev.p0) / max(float(np.linalg.norm(prev.p1 - prev.p0)), 1e-9)
                p1 = pos + u * prev.v1 * (a.at - t)
                segs.append(Segment("move", t, a.at, pos.copy(), p1, yaw, yaw, ground, speed=prev.v1,
                                    accel=prev.accel, v0=prev.v1, v1=prev.v1, gait=prev.gait))
                pos, t = p1, a.at
            # takeoff from the plan's position at `at`
            hold_until(a.at)
            z0 = ground + com_h
            if a.to is not None:
                to = np.array(a.to, float)
                z1 = to[2] + com_h
                apex = max(z0, z1) + a.apex
                vz = math.sqrt(2 * G * (apex - z0))
                T = vz / G + math.sqrt(2 * (apex - z1) / G)
                vh = (to[:2] - pos) / T
                v = np.array([vh[0], vh[1], vz])
                speed = float(np.linalg.norm(v))
                if speed > c.max_takeoff_speed:
                    vh_max = math.sqrt(max(c.max_takeoff_speed ** 2 - vz * vz, 0.0))
                    dmax = vh_max * T
                    raise ChoreographyError(apath + ".to", f"jump from ({pos[0]:.2f}, {pos[1]:.2f}) to "
                                            f"{tuple(a.to)} needs a {speed:.1f} m/s takeoff (horizontal "
                                            f"{np.linalg.norm(vh):.1f}, vertical {vz:.1f}) but "
                                            f"max_takeoff_speed is {c.max_takeoff_speed:g} m/s: move the "
                                            f"landing within {dmax:.2f} m of the takeoff point, lower "
                                            f"apex, or raise max_takeoff_speed to {math.ceil(speed * 10) / 10:g}")
                land_xy, g1 = to[:2].copy(), float(to[2])
            else:
                v = np.array(a.velocity, float)
                speed = float(np.linalg.norm(v))
                if speed > c.max_takeoff_speed:
                    raise ChoreographyError(apath + ".velocity", f"takeoff speed {speed:.1f} m/s exceeds "
                                            f"max_takeoff_speed {c.max_takeoff_speed:g} m/s; scale the "
                                            f"velocity by {c.max_takeoff_speed / speed:.2f} or raise "
                                            f"max_takeoff_speed")
                g1 = ground
                for _ in range(3):   # landing height depends on where it lands
                    z1 = g1 + com_h
                    disc = v[2] ** 2 + 2 * G * (z0 - z1)
                    if disc < 0:
                        raise ChoreographyError(apath + ".velocity", "the jump cannot reach the support "
                                                f"height {g1:.2f} m at its landing point; jump higher")
                    T = (v[2] + math.sqrt(disc)) / G
                    land_xy = pos + v[:2] * T
                    g1 = support_height(scene, land_xy[0], land_xy[1], max(ground, g1) + 0.3)
            t_land = a.at + T
            if t_land > end + 1.0:
                raise ChoreographyError(apath + ".at", f"the jump lands at t={t_land:.2f} s, after the "
                                        f"end of the timeline ({end:g} s); jump earlier")
            if t_next < t_land - 1e-6 and nxt is not None:
                raise ChoreographyError(apath, f"the jump is airborne until t={t_land:.2f} s but the next "
                                        f"action starts at t={t_next:g} s; start it after the landing")
            push_t = PUSH_TIME_RUNNING if running else PUSH_TIME
            if not running:
                overlays.append(Overlay("crouch", a.at - push_t - CROUCH_TIME, a.at - push_t))
            overlays.append(Overlay("push", a.at - push_t, a.at))
            overlays.append(Overlay("flight", a.at, t_land))
            overlays.append(Overlay("land", t_land - LAND_EARLY, t_land + LAND_TIME))
            # the run-up segment ends at takeoff with the takeoff's horizontal velocity
            vh = v[:2]
            segs.append(Segment("flight", a.at, t_land, pos.copy(), land_xy.copy(), yaw, yaw, ground,
                                com0=np.array([pos[0], pos[1], z0]), vel0=v.copy(), ground1=g1))
            waypoints.append((a.at, np.array([pos[0], pos[1], ground]), "jump takeoff"))
            waypoints.append((t_land, np.array([land_xy[0], land_xy[1], g1]), "jump landing"))
            jumps.append((a.at, t_land, v.copy(),
                          None if a.to is None else np.array([land_xy[0], land_xy[1], g1 + com_h]), z0))
            pos, ground = land_xy.copy(), g1
            if np.linalg.norm(vh) > 0.3:
                yaw = math.atan2(vh[1], vh[0]) if a.to is None else yaw
            t = t_land
            busy_until = t_land
            vel_end, t_vel_end = vh.copy(), t_land
            nxt_move = isinstance(nxt, (WalkTo, RunTo)) and nxt.at <= t_land + 0.15
            sp = float(np.linalg.norm(vh))
            if not nxt_move and sp > 0.2:
                # run out the landing speed: brake along the flight direction
                stop = min(sp * sp / (2 * RUN_ACCEL), 3.0)
                u = vh / sp
                p_stop = pos + u * stop
                dur = _move_duration(stop, sp, RUN_ACCEL, sp, 0.0)
                if t_next < t_land + dur:
                    dur = max(t_next - t_land, 0.0)
                    stop = _profile(Segment("move", 0, dur, pos, p_stop, yaw, yaw, ground, speed=sp,
                                            accel=RUN_ACCEL, v0=sp, v1=0.0), dur)[0]
                    p_stop = pos + u * stop
                segs.append(Segment("move", t_land, t_land + dur, pos.copy(), p_stop.copy(), yaw, yaw, g1,
                                    speed=sp, accel=RUN_ACCEL, v0=sp, v1=0.0, gait="run"))
                t = t_land + dur
                busy_until = t
                pos = p_stop
        elif isinstance(a, Land):
            overlays.append(Overlay("land", a.at, a.at + a.duration))
        elif isinstance(a, Punch):
            overlays.append(Overlay("punch", a.at, a.at + a.duration, a.hand, a.target))
        elif isinstance(a, Kick):
            overlays.append(Overlay("kick", a.at, a.at + a.duration, a.foot, a.target))
        elif isinstance(a, ReceiveHit):
            overlays.append(Overlay("hit", a.at, a.at + a.duration))
        elif isinstance(a, Fall):
            nxt_up = next((b for _, b in actions[k + 1:] if isinstance(b, GetUp)), None)
            overlays.append(Overlay("fall", a.at, nxt_up.at if nxt_up is not None else end + 1.0))
            hold_until(a.at)
            busy_until = nxt_up.at if nxt_up is not None else end + 1.0
        elif isinstance(a, GetUp):
            overlays.append(Overlay("get_up", a.at, a.at + a.duration))
            busy_until = a.at + a.duration
    hold_until(end + 1.0)
    return Plan(ci, c.name, segs, overlays, waypoints, jumps)


def _speed_for(L: float, T: float, a: float, v1: float, v0: float = 0.0) -> float:
    """Smallest cruise speed covering L in time T (trapezoid with ramps of a; the
    end speed is the cruise speed when ``v1`` > 0)."""
    lo, hi = 1e-3, 50.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _move_duration(L, mid, a, v0, mid if v1 > 0 else 0.0) > T:
            lo = mid
        else:
            hi = mid
    return hi


def _reach(T: float, v: float, a: float, v1: float, v0: float = 0.0) -> float:
    lo, hi = 0.0, v * T + 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _move_duration(mid, v, a, v0, min(v1, v)) > T:
            hi = mid
        else:
            lo = mid
    return lo


def _com_height(body: "humanoid.Body") -> float:
    """Centre-of-mass height above the ground in the standing pose."""
    # standing pose: links are pure translations of each other
    pos = {}
    total = 0.0
    acc = 0.0
    for l in body.links:
        p = np.array([0, 0, body.pelvis_height]) if l.parent is None else pos[l.parent] + l.pos
        pos[l.name] = p
        acc += l.mass * (p[2] + l.com[2])
        total += l.mass
    return acc / total


# ---------------------------------------------------------------------------- reference state
@dataclass
class RootRef:
    pos: np.ndarray        # (3,) pelvis-frame reference: ground point xy + pelvis height z
    vel: np.ndarray        # (3,)
    acc: np.ndarray        # (3,)
    yaw: float
    yaw_rate: float
    gait: Optional[str]
    speed: float
    ground: float
    airborne_plan: bool
    distance: float = 0.0  # distance along a move segment (its `_profile`)


def root_reference(plan: Plan, t: float) -> RootRef:
    s = plan.segment(t)
    if s.kind == "move":
        x0, y0, x1, y1, L = s.ends
        d, v, a = _profile(s, t)
        ux, uy = ((x1 - x0) / L, (y1 - y0) / L) if L > 1e-9 else (0.0, 0.0)
        dm = min(d, L)
        turn = min(1.0, max(0.0, (t - s.t0) / 0.25))
        yaw = s.yaw0 + _wrap(s.yaw1 - s.yaw0) * (turn * turn * (3 - 2 * turn))
        return RootRef(np.array((x0 + ux * dm, y0 + uy * dm, s.ground)), np.array((ux * v, uy * v, 0.0)),
                       np.array((ux * a, uy * a, 0.0)), yaw, 0.0,
                       s.gait if v > 0.05 else None, v, s.ground, False, d)
    if s.kind == "turn":
        x = (t - s.t0) / max(s.t1 - s.t0, 1e-9)
        x = min(max(x, 0.0), 1.0)
        yaw = s.yaw0 + _wrap(s.yaw1 - s.yaw0) * x * x * (3 - 2 * x)
        rate = _wrap(s.yaw1 - s.yaw0) * 6 * x * (1 - x) / max(s.t1 - s.t0, 1e-9)
        return RootRef(_v3(s.p0, s.ground), np.zeros(3), np.zeros(3), yaw, rate, None, 0.0, s.ground, False)
    if s.kind == "flight":
        tau = t - s.t0
        p = s.com0 + s.vel0 * tau + np.array([0, 0, -G / 2]) * tau * tau
        v = s.vel0 + np.array([0, 0, -G]) * tau
        return RootRef(_v3(p, s.ground), _v3(v, 0.0), np.zeros(3), s.yaw0, 0.0, None,
                       0.0, s.ground, True)
    return RootRef(_v3(s.p0, s.ground), np.zeros(3), np.zeros(3), s.yaw0, 0.0, None, 0.0, s.ground, False)


# ---------------------------------------------------------------------------- poses
J = humanoid.JOINT_INDEX


def _idx(*names):
    return np.array([J[n] for n in names])


LEG = {side: _idx(f"{side}_hip_flex", f"{side}_hip_abd", f"{side}_hip_twist", f"{side}_knee_flex",
                  f"{side}_ankle_flex", f"{side}_ankle_inv") for side in ("left", "right")}
ARM = {side: _idx(f"{side}_shoulder_flex", f"{side}_shoulder_abd", f"{side}_shoulder_twist",
                  f"{side}_elbow_flex", f"{side}_wrist_flex") for side in ("left", "right")}
AB_FLEX, AB_BEND, AB_TWIST = J["abdomen_flex"], J["abdomen_bend"], J["abdomen_twist"]
NECK_FLEX = J["neck_flex"]
NJ = len(humanoid.JOINT_NAMES)


def _smooth_bump(t: float, t0: float, t1: float, rise: float = 0.3) -> float:
    """0 -> 1 -> 0 over [t0, t1], rising and falling in ``rise`` of the interval."""
    x = (t - t0) / max(t1 - t0, 1e-9)
    if x <= 0 or x >= 1:
        return 0.0
    if x < rise:
        u = x / rise
    elif x > 1 - rise:
        u = (1 - x) / rise
    else:
        return 1.0
    return u * u * (3 - 2 * u)


def leg_ik(dx: float, dz: float, l1: float, l2: float) -> tuple[float, float]:
    """(hip flex, knee flex) putting the ankle ``dx`` ahead of and ``dz`` above
    (negative: below) the hip in the sagittal plane; the knee bends forward."""
    L = min(max(_norm2(dx, dz), 0.25 * (l1 + l2)), 0.999 * (l1 + l2))
    knee = math.pi - math.acos(max(-1.0, min(1.0, (l1 * l1 + l2 * l2 - L * L) / (2 * l1 * l2))))
    alpha = math.acos(max(-1.0, min(1.0, (l1 * l1 + L * L - l2 * l2) / (2 * l1 * L))))
    return math.atan2(dx, -dz) + alpha, knee


def _place_leg(q: np.ndarray, li, dx: float, dz: float, may_rise: bool, l1: float, l2: float,
               reach: float, toe_lever: float) -> None:
    """Hip, knee and ankle targets of leg ``li`` (indices into ``q``) reaching the
    ankle target ``dx`` ahead of and ``dz`` above the hip; beyond reach and with
    ``may_rise`` the foot rises onto its toes (ball of the foot ``toe_lever`` m ahead)."""
    excess = _norm2(dx, dz) - reach
    toe = 0.0
    if may_rise and excess > 0:
        toe = math.asin(min(1.0, excess / toe_lever))
        dz += toe_lever * math.sin(toe)
    hip, knee = leg_ik(dx, dz, l1, l2)
    q[li[0]], q[li[3]], q[li[4]] = hip, knee, knee - hip - toe


def _yaw_of(q) -> float:
    w, x, y, z = q.tolist() if isinstance(q, np.ndarray) else q
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def crouch_angles(drop: float, thigh: float, shin: float) -> tuple[float, float, float]:
    """(hip flex, knee flex, ankle flex) lowering the pelvis by ``drop`` with the
    feet flat and the trunk upright."""
    c = 1.0 - drop / (thigh + shin)
    th = math.acos(min(1.0, max(-1.0, c)))
    return th, 2 * th, th


class Gait:
    """Footstep pattern of one move segment. The gait phase (strides) advances with
    distance at a stride length that grows with speed, tabulated over the segment's
    speed profile, so steps shorten while starting and stopping. A foot is planted
    for ``duty`` of each stride, under the pelvis at mid-stance; plants are clipped
    to the segment, so a move starts and ends with the feet together."""

    def __init__(self, move: Segment, scale: float):
        self.run = move.gait == "run"
        self.scale = scale
        self.duty = RUN_DUTY if self.run else WALK_DUTY
        self.lift = (RUN_LIFT if self.run else 0.08) * scale
        self.sway = (SWAY_RUN if self.run else SWAY_WALK) * scale
        L = float(np.linalg.norm(move.p1 - move.p0))
        self.L = L
        self.direction = ((move.p1 - move.p0) / L if L > 1e-9
                          else np.array([math.cos(move.yaw1), math.sin(move.yaw1)]))
        self.direction_xy = tuple(self.direction[:2].tolist())
        ts = np.linspace(move.t0, move.t1, 400)
        d, v = _profile_many(move, ts)
        d, idx = np.unique(d, return_index=True)
        v = v[idx]
        if len(d) < 2:
            d, v = np.array([0.0, max(L, 1e-6)]), np.array([0.0, 0.0])
        stride = 2 * np.array([self.step_length(x) for x in v])
        self.s_grid = d
        self.phase_grid = np.r_[0.0, np.cumsum(np.diff(d) * 2 / (stride[1:] + stride[:-1]))]
        self.phase_end = float(self.phase_grid[-1])
        self._s_list, self._phase_list = self.s_grid.tolist(), self.phase_grid.tolist()

    def step_length(self, v: float) -> float:
        if self.run:
            return min(RUN_STEP[0] + RUN_STEP[1] * v, RUN_STEP[2]) * self.scale
        return min(0.25 + 0.2 * v, 0.7) * self.scale

    def phase(self, d: float) -> float:
        return _interp(d, self._s_list, self._phase_list)

    def _plant(self, k: int, offset: float) -> float:
        ph = k - offset + self.duty / 2
        if ph >= self.phase_end:
            return self.L
        return _interp(max(ph, 0.0), self._phase_list, self._s_list)

    def foot(self, phase: float, offset: float) -> tuple[float, float]:
        """(distance along the segment, swing fraction or -1 in stance) of the leg
        with phase ``offset`` at gait ``phase``."""
        x = phase + offset
        n = math.floor(x)
        if x - n < self.duty:
            return self._plant(n, offset), -1.0
        a, b = self._plant(n, offset), self._plant(n + 1, offset)
        if b - a < 1e-6:
            return b, -1.0
        p0 = max(n - offset + self.duty, 0.0)
        p1 = n + 1 - offset
        u = min(max((phase - p0) / max(p1 - p0, 1e-9), 0.0), 1.0)
        return a + (b - a) * u * u * (3 - 2 * u), u


class Controller:
    """Drives every character of a scene through its plan (see module docstring)."""

    def __init__(self, scene, engine):
        self.scene, self.engine = scene, engine
        self.C = C = len(scene.characters)
        self.plans = [plan_character(scene, ci) for ci in range(C)]
        self.bodies = [humanoid.build(c) for c in scene.characters]
        self.mass = np.array([b.mass for b in self.bodies])
        self.dt = engine.timestep
        names = engine.body_names
        self.B = len(names)
        nl = len(humanoid.LINK_NAMES)
        first = self.B - C * nl
        self.link0 = first
        self.body_char = np.asarray(engine.body_character, np.int64)
        foot = np.zeros(self.B, bool)
        for ci in range(C):
            for f in humanoid.FOOT_LINKS:
                foot[first + ci * nl + humanoid.LINK_NAMES.index(f)] = True
        self.is_foot = foot
        self.pelvis = np.array([first + ci * nl for ci in range(C)])
        self.torso = self.pelvis + humanoid.LINK_NAMES.index("torso")
        # friction of a character's feet on what they stand on: the support's material
        from .engine import pair_material
        mats = [scene.material(m) for m in engine.body_material]
        self.body_mu = np.array([m.friction for m in mats])
        self.char_mat = [scene.material(c.material) for c in scene.characters]
        # friction of character ci's feet on body b (the shared pairing rule)
        self._mu_table = np.array([[pair_material(cm, bm)[0] for bm in mats] for cm in self.char_mat])
        self.thigh = np.array([b.links[humanoid.LINK_NAMES.index("left_shin")].pos[2] for b in self.bodies]) * -1
        self.shin = np.array([b.links[humanoid.LINK_NAMES.index("left_foot")].pos[2] for b in self.bodies]) * -1
        self.ankle_h = np.array([b.pelvis_height for b in self.bodies]) - self.thigh - self.shin
        self._thigh_list, self._shin_list = self.thigh.tolist(), self.shin.tolist()
        self._ankle_list = self.ankle_h.tolist()
        self.kp0 = np.array([[j.kp for j in b.joints] for b in self.bodies])
        self.kd0 = np.array([[j.kd for j in b.joints] for b in self.bodies])
        self.rot_inertia = self.mass * 0.12
        self._q_range = [(np.array([j.range[0] for j in b.joints]), np.array([j.range[1] for j in b.joints]))
                         for b in self.bodies]
        self._hip_off = [float(b.links[humanoid.LINK_NAMES.index("left_thigh")].pos[1]) for b in self.bodies]
        # state
        # per-character state read every physics step, kept as plain floats (lists)
        self._step_force = [(0.0, 0.0, 0.0)] * C   # commanded assist force (N)
        self._assist_on = np.zeros(C, bool)
        self._fn = [0.0] * C               # measured support normal force of the last step
        self._ft = [0.0] * C               # and the magnitude sum of its friction forces
        self._mu = [1.0] * C               # and the feet's friction coefficient
        self._touch_any = np.zeros(C, bool)
        self._frame_support = np.zeros(C, bool)
        self._frame_steps = 0
        self._gait_phase = np.zeros(C)
        self._last_t = np.zeros(C)
        self._push_feet = [None] * C
        self._foot_touch = np.zeros(C, bool)
        self._push_point = [None] * C
        self._feet_bodies = np.array([[first + ci * nl + humanoid.LINK_NAMES.index(f) for f in humanoid.FOOT_LINKS]
                                      for ci in range(C)]).reshape(C, 2)
        self._spin_torque = np.zeros((C, 3))
        self._spinning = np.zeros(C, bool)
        self._yaw_ref = [(float(c.yaw), 0.0) for c in scene.characters]
        self._step_torque = [(0.0, 0.0, 0.0)] * C
        self._spin_list = [(0.0, 0.0, 0.0)] * C
        self._com_list = [(0.0, 0.0, 0.0)] * C
        self._comv_list = [(0.0, 0.0, 0.0)] * C
        self._com_height_list = [1.0] * C
        self._frame_force_list = [[0.0, 0.0, 0.0] for _ in range(C)]
        self._pelvis_list = [int(b) for b in self.pelvis]
        self._rot_inertia_list = [float(v) for v in self.rot_inertia]
        # (B,) character index of each foot link, C for any other body; friction of
        # a character's feet on each body, with a row of inf for "no foot"
        self._foot_char = np.where(foot, self.body_char, C).astype(np.int64)
        self._foot_char_list = self._foot_char.tolist()
        self._mu_rows = self._mu_table.reshape(C, self.B).tolist()
        self._body_char_list = self.body_char.tolist()
        self._torque_body = self.torso if TORQUE_BODY == "torso" else self.pelvis
        self._torque_list = [int(b) for b in self._torque_body]
        self._com_height = np.ones(C)
        self._gaits: dict = {}
        self._gait_leg_height = [0.0] * C
        self._sway = np.zeros((C, 2))
        self._q_prev = np.zeros((C, NJ))
        self._q_time = np.full(C, -1.0)
        self._z_ref = np.array([b.pelvis_height for b in self.bodies])
        self._omega = np.zeros((C, 3))
        self._com = np.zeros((C, 3))
        self._comv = np.zeros((C, 3))
        self._t_update = 0.0
        self._ragdoll = np.zeros(C, bool)
        self._gain_cache: dict = {}        # (character, kp scale bytes) -> (kp, kd)
        # initial targets (standing)
        for ci in range(C):
            self.engine.set_pd_targets(ci, np.zeros(NJ), self.kp0[ci], self.kd0[ci])

    # ------------------------------------------------------------------ rollout hooks
    def before_step(self, step: int, t: float) -> None:
        """Per physics step: the control update every `CONTROL_DECIMATION` steps,
        then the contact gate: only characters with a foot on a support in this step
        get the assist (torso orientation PD, clipped into the feet's friction cone
        by `_clip`). Plain float math: with one or two characters it is several
        times cheaper than numpy on tiny arrays."""
        if step % CONTROL_DECIMATION == 0:
            self._update(t)
        touching, foot_touch = self.engine.touching_characters(self.is_foot)
        self._frame_support |= touching
        self._frame_steps += 1
        self._foot_touch = foot_touch
        active = [ci for ci, on in enumerate((foot_touch & self._assist_on).tolist()) if on]
        if not active:
            return
        # every character's torso (a constant index array: cheaper than selecting)
        quat, angvel = self.engine.link_orientations(self._torque_body)
        quat, angvel = quat.tolist(), angvel.tolist()
        eng = self.engine
        dt_up = t - self._t_update
        for ci in active:
            tq = self._orient_torque(ci, quat[ci], angvel[ci], self._yaw_ref[ci])
            if self._spinning[ci]:      # push-off: kill the spin, then the pose
                sx, sy, sz = self._spin_list[ci]
                tq = (sx + PUSH_POSE_WEIGHT * tq[0], sy + PUSH_POSE_WEIGHT * tq[1],
                      sz + PUSH_POSE_WEIGHT * tq[2])
            self._step_torque[ci] = tq
            f, tq = self._clip(ci)
            # the force acts at the whole-body centre of mass (extrapolated from the
            # last control update): like a ground reaction whose line of action
            # passes through the COM, it adds no spurious moment; the torque is
            # separate.
            cx, cy, cz = self._com_list[ci]
            vx, vy, vz = self._comv_list[ci]
            point = (cx + vx * dt_up, cy + vy * dt_up, cz + vz * dt_up)
            pel = self._pelvis_list[ci]
            if self._push_point[ci] is not None:
                # push-off: the horizontal part acts between the COM and the feet,
                # where its moment balances that of the feet's friction (a jumper's
                # ground reaction passes just below the COM)
                eng.apply_force(pel, (0.0, 0.0, f[2]), point=point)
                eng.apply_force(pel, (f[0], f[1], 0.0), point=self._push_point[ci])
            else:
                eng.apply_force(pel, f, point=point)
            eng.apply_force(self._torque_list[ci], (0.0, 0.0, 0.0), torque=tq)
            ff = self._frame_force_list[ci]
            ff[0] += f[0]
            ff[1] += f[1]
            ff[2] += f[2]

    def update(self, t: float) -> None:
        """The control update at time ``t`` (what `before_step` runs every
        `CONTROL_DECIMATION` steps): plan, pose, PD targets, assist command."""
        self._update(t)

    def after_step(self, contacts) -> None:
        """Measure the support normal force, friction force and friction coefficient
        of each character's feet (contacts with bodies not of that character).
        Plain Python over the step's contacts: cheaper than numpy for tens of rows."""
        C = self.C
        fn, ft, mu = [0.0] * C, [0.0] * C, [math.inf] * C
        if len(contacts):
            foot, chars, table = self._foot_char_list, self._body_char_list, self._mu_rows
            for (a, b), n, t in zip(contacts.body.tolist(), contacts.normal_force.tolist(),
                                    contacts.tangent_force.tolist()):
                ca, cb = foot[a], foot[b]
                if ca < C and chars[b] != ca:        # a foot of character ca on body b
                    fn[ca] += n
                    ft[ca] += t
                    mu[ca] = min(mu[ca], table[ca][b])
                if cb < C and chars[a] != cb:
                    fn[cb] += n
                    ft[cb] += t
                    mu[cb] = min(mu[cb], table[cb][a])
        self._fn, self._ft = fn, ft
        self._mu = [m if m < math.inf else old for m, old in zip(mu, self._mu)]

    def frame_summary(self) -> tuple[np.ndarray, np.ndarray]:
        """(support (C,) bool, mean assist force (C,3)) over the frame's steps; resets."""
        n = max(self._frame_steps, 1)
        out = self._frame_support.copy(), np.array(self._frame_force_list).reshape(self.C, 3) / n
        self._frame_force_list = [[0.0, 0.0, 0.0] for _ in range(self.C)]
        self._frame_support[:] = False
        self._frame_steps = 0
        return out

    # ------------------------------------------------------------------ assist
    def _clip(self, ci: int) -> tuple[tuple, tuple]:
        """The commanded assist of character ``ci`` clipped into its support's
        friction cone and torque bound: (force (3,), torque (3,)) as floats."""
        fx, fy, fz = self._step_force[ci]
        fz = max(fz, 0.0)
        mu, fcon, tcon = self._mu[ci], self._fn[ci], self._ft[ci]
        # the assist stands in for part of the ground reaction: the total reaction
        # (measured contact force + assist) must stay inside the friction cone,
        # |Ft_contact + Ft_assist| <= mu (Fn_contact + Fn_assist); conservatively
        # |Ft_assist| <= mu (Fn_contact + Fn_assist) - |Ft_contact|
        fn = fcon + (fz if CONE_INCLUDES_ASSIST else 0.0)
        ft = _norm2(fx, fy)
        lim = max(mu * fn - (tcon if CONE_INCLUDES_ASSIST else 0.0), 0.0)
        if ft > lim:
            s = lim / ft
            fx *= s
            fy *= s
        # the torque a ground reaction inside the same cone can add about the COM:
        # shifting the centre of pressure within the foot, plus the friction left
        # unused by the force above acting at the COM's height
        tx, ty, tz = self._step_torque[ci]
        spare = max(lim - _norm2(fx, fy), 0.0) if TORQUE_FROM_FRICTION else 0.0
        tlim = FOOT_LEVER * fn + spare * self._com_height_list[ci]
        tn = _norm2(tx, ty)
        if tn > tlim:
            s = tlim / tn
            tx *= s
            ty *= s
        ylim = mu * fn * FOOT_LEVER
        tz = max(-ylim, min(ylim, tz))
        return (fx, fy, fz), (tx, ty, tz)

    # ------------------------------------------------------------------ control update
    def _update(self, t: float) -> None:
        eng = self.engine
        rpos, rquat, rlin, rang = eng.root_states()
        com, comv = eng.com_states()
        self._com, self._comv, self._t_update = com, comv, t
        self._com_list, self._comv_list = com.tolist(), comv.tolist()
        refs = [root_reference(p, t) for p in self.plans]
        self._com_height = np.maximum(com[:, 2] - rpos[:, 2] + self._z_ref
                                      - np.array([r.ground for r in refs]), 0.3)
        self._com_height_list = self._com_height.tolist()
        bpos = None           # all body positions, read only when a pose needs them
        angmom = None
        self._spin_torque[:] = 0.0
        self._spinning[:] = False
        self._push_point = [None] * self.C
        for ci, plan in enumerate(self.plans):
            over = plan.overlays_at(t)
            fl = next((o for o in over if o.kind == "flight"), None)
            if fl is not None and t > fl.t0 + 0.1 and self._foot_touch[ci]:
                # touched down before the planned landing: land now
                over = [o for o in over if o.kind != "flight"]
                if not any(o.kind == "land" for o in over):
                    over.append(Overlay("land", t - LAND_EARLY, fl.t1 + LAND_TIME))
            kinds = {o.kind for o in over}
            m = self.mass[ci]
            if "fall" in kinds:
                if not self._ragdoll[ci]:
                    eng.set_pd_targets(ci, np.zeros(NJ), np.zeros(NJ), np.full(NJ, 1.0))
                    self._ragdoll[ci] = True
                self._assist_on[ci] = False
                continue
            self._ragdoll[ci] = False
            ref = refs[ci]
            need_targets = any(o.kind in ("punch", "kick") for o in over)
            if need_targets and bpos is None:
                bpos = eng.body_states()[0]
            q, kp_scale, push = self._pose(ci, t, ref, over, rpos[ci], rquat[ci], bpos)
            key = (ci, kp_scale.tobytes())
            gains = self._gain_cache.get(key)
            if gains is None:
                gains = (self.kp0[ci] * kp_scale, self.kd0[ci] * np.sqrt(np.maximum(kp_scale, 1e-6)))
                if len(self._gain_cache) < 256:
                    self._gain_cache[key] = gains
            kp, kd = gains
            # joint velocity feed-forward: the damping then only resists deviations
            h = t - self._q_time[ci]
            qd = (q - self._q_prev[ci]) / h if 0 < h < 0.05 else np.zeros(NJ)
            qd = np.minimum(np.maximum(qd, -15.0), 15.0)
            self._q_prev[ci], self._q_time[ci] = q, t
            eng.set_pd_targets(ci, q, kp, kd, qd_target=qd)
            # ---- root assist command (applied per step only while a foot touches)
            if "flight" in kinds or (ref.airborne_plan and "land" not in kinds):
                self._assist_on[ci] = False
                continue
            self._assist_on[ci] = True
            z_ref = self._z_ref[ci]
            if push is not None:
                # push-off: no spin at takeoff (flight keeps the angular momentum),
                # then the torso's orientation
                if angmom is None:
                    angmom = eng.angular_momentum()
                self._spin_torque[ci] = -angmom[ci] / max(PUSH_LEAD * (push[0] - t), 0.04)
                self._spinning[ci] = True
                if bpos is None:
                    bpos = eng.body_states()[0]
                feet_pts = bpos[self._feet_bodies[ci]]
                self._push_point[ci] = com[ci] + PUSH_POINT * (feet_pts.mean(0) - com[ci])
                # drive the centre of mass to the takeoff velocity that lands on
                # target from where it is now (re-aimed every update)
                v_goal = self._takeoff_velocity(ci, push, com[ci], t)
                dv = v_goal - comv[ci]
                a = dv / max(PUSH_LEAD * (push[0] - t), 0.04)
                # scale the whole acceleration so the friction cone keeps its
                # direction (else vertical speed comes first and the feet leave early)
                fz = m * (a[2] + G) - self._fn[ci]
                lim = self._mu[ci] * (self._fn[ci] + max(fz, 0.0)) - self._ft[ci]
                ah = _norm2(float(a[0]), float(a[1]))
                if m * ah > lim > 0:
                    a *= lim / (m * ah)
                elif lim <= 0:
                    a[:2] = 0.0
                f = m * a
                f[2] += m * G - self._fn[ci]      # what the legs' push does not already give
                f[2] = min(max(f[2], 0.0), PUSH_VERTICAL_ASSIST * m * G)
            else:
                # plain floats (the same arithmetic as on 3-vectors)
                px, py, _ = ref.pos.tolist()
                rx, ry, rz = rpos[ci].tolist()
                sx, sy = self._sway[ci].tolist()
                ex, ey = (px - rx) + sx, (py - ry) + sy
                vx, vy, _ = ref.vel.tolist()
                lx, ly, lz = rlin[ci].tolist()
                ax, ay, _ = ref.acc.tolist()
                m = float(m)
                fx = m * (ax + KP_XY * ex + KD_XY * (vx - lx))
                fy = m * (ay + KP_XY * ey + KD_XY * (vy - ly))
                cvz = float(comv[ci][2])
                if "land" in kinds and cvz < -0.2:
                    # absorbing a landing: brake the fall like a landing's ground reaction
                    fz = m * (G - cvz / LAND_BRAKE_TIME) - self._fn[ci]
                    fz = min(max(fz, 0.0), LAND_VERTICAL_ASSIST * m * G)
                else:
                    fz = m * (WEIGHT_SHARE * G + KP_Z * (float(z_ref) - rz) - KD_Z * lz)
                    fz = min(max(fz, 0.0), MAX_VERTICAL_ASSIST * m * G)
                f = (fx, fy, fz)
            self._step_force[ci] = tuple(float(v) for v in f)
            # orientation: pelvis upright with the planned yaw
            self._yaw_ref[ci] = (ref.yaw, ref.yaw_rate)
        self._spin_list = self._spin_torque.tolist()

    def _orient_torque(self, ci, quat, angvel, yaw_ref) -> tuple:
        """Torso orientation PD torque (3 floats) of character ``ci``: upright, with
        the planned (yaw, yaw rate) ``yaw_ref``; ``quat`` wxyz and ``angvel`` of the
        torso as sequences of floats (this runs every physics step)."""
        w, x, y, z = quat
        wx, wy, wz = angvel
        # current torso axes (the torso is the heavy link the torque acts on); the
        # tilt error is up x z_world
        upx, upy = 2 * (x * z + w * y), 2 * (y * z - w * x)
        yaw = math.atan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))
        err_yaw = _wrap(yaw_ref[0] - yaw)
        I = self._rot_inertia_list[ci]
        return (I * (KP_ROT * upy - KD_ROT * wx),
                I * (KP_ROT * -upx - KD_ROT * wy),
                I * (KP_ROT * err_yaw - KD_ROT * (wz - yaw_ref[1])))

    def _gait(self, ci: int, move: Segment) -> "Gait":
        key = (ci, id(move))
        if key not in self._gaits:
            self._gaits[key] = Gait(move, self.bodies[ci].scale)
        return self._gaits[key]

    def _feet(self, ci: int, t: float, ref: RootRef):
        """World ankle targets (2 x (3,), z = foot lift above the support) of the left
        and right foot, their swing lifts (0 in stance) and the pelvis sway (2,)."""
        plan = self.plans[ci]
        seg = plan.segment(t)
        body = self.bodies[ci]
        hip_off = self._hip_off[ci]
        full = body.pelvis_height - self._ankle_list[ci] - 0.006
        move, phase, v_now = None, 0.0, 0.0
        if seg.kind == "move":
            move = seg
            d, v_now = ref.distance, ref.speed        # root_reference's `_profile(seg, t)`
            phase = self._gait(ci, seg).phase(d)
        else:
            for sg in plan.segments:   # finish the last steps just after a move ends
                if sg.kind == "move" and sg.t1 <= t < sg.t1 + SETTLE_TIME:
                    move = sg
                    phase = self._gait(ci, sg).phase_end + (t - sg.t1) / SETTLE_TIME
        # plain floats: feet are (x, y, lift) tuples, the sway an (x, y) tuple
        if move is None:
            c, sn = math.cos(ref.yaw), math.sin(ref.yaw)
            lx, ly = -sn * hip_off, c * hip_off
            bx, by = ref.pos[:2].tolist()
            self._gait_leg_height[ci] = full
            return [(bx + lx, by + ly, 0.0), (bx - lx, by - ly, 0.0)], [0.0, 0.0], (0.0, 0.0)
        g = self._gait(ci, move)
        ux, uy = g.direction_xy
        lx, ly = -uy * hip_off, ux * hip_off
        x0, y0 = move.ends[:2]
        # pelvis height: at double support the feet are duty/2 strides from the pelvis
        step = g.step_length(v_now)
        reach = 0.99 * (self._thigh_list[ci] + self._shin_list[ci])
        h_gait = math.sqrt(max(reach ** 2 - (g.duty * step + 0.04) ** 2, 0.0)) - GAIT_CROUCH * min(1.0, v_now / 0.5)
        k = min(1.0, v_now / 0.5)
        self._gait_leg_height[ci] = full + (min(h_gait, full) - full) * k
        feet, lifts = [], []
        for off, sign in ((g.duty / 2, 1.0), (g.duty / 2 + 0.5, -1.0)):
            d, sw = g.foot(phase, off)
            lift = g.lift * math.sin(math.pi * sw) ** 2 if sw >= 0 else 0.0
            feet.append((x0 + ux * d + sign * lx, y0 + uy * d + sign * ly, lift))
            lifts.append(lift)
        # lateral sway of the pelvis over the single-stance foot (left at the left
        # leg's mid-stance), faded in over the first step and out over the last
        amp = g.sway * min(1.0, phase / 0.5, max(0.0, (g.phase_end + 0.5 - phase) / 0.5))
        c = math.cos(2 * math.pi * phase)
        return feet, lifts, (lx / hip_off * amp * c, ly / hip_off * amp * c)

    def _takeoff_velocity(self, ci, jump, com, t) -> np.ndarray:
        """Takeoff velocity from ``com`` that follows the planned jump: same apex
        height and landing point (for `to` jumps), else the planned velocity."""
        t_off, t_land, v, land, z0 = jump
        if land is None:
            return v
        z_apex = z0 + v[2] ** 2 / (2 * G)
        if z_apex <= com[2] + 0.05:
            return v
        vz = math.sqrt(2 * G * (z_apex - com[2]))
        T = vz / G + math.sqrt(max(2 * (z_apex - land[2]) / G, 0.0))
        vh = (land[:2] - com[:2]) / T
        return np.array([vh[0], vh[1], vz])

    def _pelvis_height(self, ci: int, q: np.ndarray) -> float:
        """Pelvis height above the ground when the lower foot rests on it."""
        l1, l2 = self.thigh[ci], self.shin[ci]
        ext = []
        for side in ("left", "right"):
            i = LEG[side]
            h, k = q[i[0]], q[i[3]]
            ext.append(l1 * math.cos(h) + l2 * math.cos(h - k))
        return max(ext) + self.ankle_h[ci] - 0.004

    # ------------------------------------------------------------------ procedural pose
    def _pose(self, ci: int, t: float, ref: RootRef, over, rpos, rquat, bpos):
        """(joint targets (J,), kp scale (J,), pelvis drop (m), push or None)."""
        q = np.zeros(NJ)
        kps = np.ones(NJ)
        drop = 0.0
        shift = 0.0          # pelvis shift along the heading (sitting back before a jump)
        push = None
        q[ARM["left"][3]] = q[ARM["right"][3]] = 0.25      # relaxed elbows
        q[ARM["left"][1]] = q[ARM["right"][1]] = 0.08
        # ---- legs: inverse kinematics from the pelvis to planned foot positions
        feet, lift, sway = self._feet(ci, t, ref)
        pushing = next((o for o in over if o.kind == "push"), None) if PUSH_FREEZE_FEET else None
        if pushing is not None:
            # take off from where the feet are when the push starts: both planted
            if self._push_feet[ci] is None or self._push_feet[ci][0] != pushing.t0:
                # both feet planted at the start of the takeoff stride
                sg = self.plans[ci].segment(pushing.t0 + 1e-6)
                c, sn = math.cos(ref.yaw), math.sin(ref.yaw)
                lat = np.array([-sn, c]) * self.bodies[ci].links[humanoid.LINK_NAMES.index("left_thigh")].pos[1]
                self._push_feet[ci] = (pushing.t0, [_v3(sg.p0 + lat, 0.0), _v3(sg.p0 - lat, 0.0)])
            feet, lift = self._push_feet[ci][1], [0.0, 0.0]
        yaw = _yaw_of(rquat)
        cy, sy = math.cos(yaw), math.sin(yaw)
        hip_off = self._hip_off[ci]
        l1, l2 = self._thigh_list[ci], self._shin_list[ci]
        ankle_h = self._ankle_list[ci]
        reach = 0.99 * (l1 + l2)
        body_scale = self.bodies[ci].scale
        rx, ry, rz = rpos.tolist()
        lhx, lhy = -sy * hip_off, cy * hip_off
        hips = [(rx + lhx, ry + lhy), (rx - lhx, ry - lhy)]
        dxs = [(f[0] - h[0]) * cy + (f[1] - h[1]) * sy for f, h in zip(feet, hips)]
        stance = [lf < 0.01 for lf in lift]
        # pelvis height: the stance legs must reach their planted feet
        h_leg = self._gait_leg_height[ci]
        z_ref = ref.ground + ankle_h + min(h_leg, self.bodies[ci].pelvis_height
                                                    - ankle_h - 0.006)
        for side, f, h, dx, st in zip(("left", "right"), feet, hips, dxs, stance):
            li = LEG[side]
            # stance legs hold the pelvis at z_ref; a swing foot clears the ground
            # by its lift measured from where the pelvis actually is
            z_hip = z_ref if st else min(rz, z_ref + 0.05)
            dz = f[2] + ankle_h + ref.ground - z_hip
            # toe-off: a trailing stance leg beyond reach rises onto its toes
            _place_leg(q, li, dx, dz, st and dx < 0, l1, l2, reach, TOE_LEVER * body_scale)
        if ref.gait is not None:
            run = ref.gait == "run"
            for side, dx in zip(("left", "right"), dxs):
                q[ARM[side][0]] = -0.9 * dx * (1.6 if run else 1.2)
                q[ARM[side][3]] = 1.4 if run else 0.35
            q[AB_FLEX] = 0.2 if run else 0.05
        self._z_ref[ci] = z_ref
        # ---- overlays
        for o in over:
            w = _smooth_bump(t, o.t0, o.t1, 0.35)
            if o.kind in ("crouch", "push", "land"):
                x = min(1.0, max(0.0, (t - o.t0) / max(o.t1 - o.t0, 1e-9)))
                if o.kind == "crouch":
                    d = CROUCH_DEPTH * x * x * (3 - 2 * x)
                    shift = -CROUCH_BACK * x * x * (3 - 2 * x)
                elif o.kind == "push":
                    d = CROUCH_DEPTH * (1 - x) ** 2
                    jump = next(j for j in self.plans[ci].jumps if abs(j[0] - o.t1) < 1e-9)
                    push = jump
                    # the assist does the pushing; soft legs only keep the feet down
                    for side in ("left", "right"):
                        kps[LEG[side]] = PUSH_LEG_STIFFNESS
                    # arms held forward: a swing that stops at takeoff would hand its
                    # angular momentum to the body in flight
                    for side in ("left", "right"):
                        q[ARM[side][0]] = 0.8
                        q[ARM[side][3]] = 0.6
                    q[AB_FLEX] = 0.25 * (1 - x)
                else:
                    d = LAND_DEPTH * _smooth_bump(t, o.t0, o.t1, 0.3)
                if o.kind != "push":
                    for side in ("left", "right"):
                        q[ARM[side][0]] = 0.8 * d / CROUCH_DEPTH if o.kind == "crouch" else 0.5
                    q[AB_FLEX] = (1.5 if o.kind == "crouch" else -0.5) * d
                drop = max(drop, d)
            elif o.kind == "flight":
                x = (t - o.t0) / max(o.t1 - o.t0, 1e-9)
                tuck = math.sin(math.pi * min(max(x, 0.0), 1.0))
                for k, side in enumerate(("left", "right")):
                    li = LEG[side]
                    lead = 1.0 if k == 0 else 0.6
                    # tuck, then reach forward for the landing
                    q[li[0]] = (0.25 + 0.65 * tuck) * lead + FLIGHT_REACH * x
                    q[li[3]] = 0.25 + 1.1 * tuck * lead + 0.3 * x
                    q[li[4]] = q[li[3]] - q[li[0]]
                    q[ARM[side][0]] = 0.8
                    q[ARM[side][3]] = 0.6
                q[AB_FLEX] = FLIGHT_TRUNK
            elif o.kind == "punch":
                self._punch(ci, q, kps, o, w, t, rpos, rquat, bpos)
            elif o.kind == "kick":
                self._kick(ci, q, kps, o, w, t, rpos, rquat, bpos)
            elif o.kind == "hit":
                q[AB_FLEX] += -0.35 * w
                q[NECK_FLEX] += -0.4 * w
                for side in ("left", "right"):
                    q[ARM[side][0]] += 0.5 * w
                    q[ARM[side][3]] += 0.8 * w
                kps *= 1.0 - 0.6 * w
            elif o.kind == "get_up":
                x = min(1.0, (t - o.t0) / max(o.t1 - o.t0, 1e-9))
                kps *= 0.2 + 0.8 * x
        flying = any(o.kind == "flight" for o in over)
        if (drop > 0 or push is not None) and not flying:
            # re-solve the legs with the pelvis lowered; in a push-off the planted
            # legs follow the pelvis the assist drives up, rising onto the toes
            z_ref = float(self._z_ref[ci]) - drop
            for side, f, dx in zip(("left", "right"), feet, dxs):
                li = LEG[side]
                dz = f[2] + ankle_h + ref.ground - (rz if push is not None else z_ref)
                if push is not None:
                    dz -= PUSH_PRESS      # keep the feet pressed down while the body rises
                _place_leg(q, li, dx, dz, push is not None, l1, l2, reach, TOE_LEVER * body_scale)
            self._z_ref[ci] = z_ref
        self._sway[ci] = (sway[0] + math.cos(ref.yaw) * shift, sway[1] + math.sin(ref.yaw) * shift)
        # clip to joint ranges
        lo, hi = self._q_range[ci]
        return np.minimum(np.maximum(q, lo), hi), kps, push

    def _target_point(self, target: str, bpos) -> np.ndarray:
        names = self.engine.body_names
        if "/" in target:
            return bpos[names.index(target)]
        ci = [c.name for c in self.scene.characters].index(target)
        # aim at the chest: the torso frame plus 0.25 m
        return bpos[self.torso[ci]] + np.array([0.0, 0.0, 0.25])

    def _local(self, rquat, v):
        w, x, y, z = rquat
        yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        c, s = math.cos(yaw), math.sin(yaw)
        return np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2]])

    def _punch(self, ci, q, kps, o, w, t, rpos, rquat, bpos):
        side = o.side
        sgn = 1.0 if side == "left" else -1.0
        tgt = self._target_point(o.target, bpos)
        body = self.bodies[ci]
        shoulder = rpos + np.array([0, 0, body.links[1].pos[2] + body.links[3].pos[2]])
        d = self._local(rquat, tgt - shoulder)
        d[1] -= sgn * body.links[3].pos[1]
        flex = math.atan2(d[0], -d[2])                 # 0 down, pi/2 forward
        horiz = _norm2(float(d[0]), float(d[2]))
        abd = math.atan2(sgn * d[1], horiz)
        x = (t - o.t0) / max(o.t1 - o.t0, 1e-9)
        # chamber (0-0.3), strike (0.3-0.55), hold, retract
        ext = _smooth_bump(t, o.t0 + 0.25 * (o.t1 - o.t0), o.t1, 0.3)
        ai = ARM[side]
        q[ai[0]] = (1 - ext) * 1.2 * w + ext * flex
        q[ai[1]] = (1 - ext) * 0.15 + ext * abd
        q[ai[3]] = (1 - ext) * 2.0 * w + ext * 0.05
        q[AB_TWIST] += -sgn * 0.35 * ext
        other = ARM["right" if side == "left" else "left"]
        q[other[0]] = 1.0 * w
        q[other[3]] = 2.0 * w
        kps[ai] = 1.0
        del x

    def _kick(self, ci, q, kps, o, w, t, rpos, rquat, bpos):
        side = o.side
        tgt = self._target_point(o.target, bpos)
        d = self._local(rquat, tgt - rpos)
        # hip flex to point the leg at the target (leg hangs -z)
        flex = min(1.6, max(0.6, math.atan2(d[0], -(d[2] - 0.0)) ))
        chamber = _smooth_bump(t, o.t0, o.t1, 0.3)
        ext = _smooth_bump(t, o.t0 + 0.3 * (o.t1 - o.t0), o.t1 - 0.15 * (o.t1 - o.t0), 0.35)
        li = LEG[side]
        q[li[0]] = chamber * (1.2 * (1 - ext) + flex * ext)
        q[li[3]] = chamber * (1.8 * (1 - ext) + 0.1 * ext)
        q[li[4]] = -0.4 * chamber
        q[AB_FLEX] += -0.25 * ext
        for s in ("left", "right"):
            q[ARM[s][0]] = 0.6 * chamber
            q[ARM[s][3]] = 1.6 * chamber
        kps[li] = 1.0
