"""The humanoid body model shared by every engine.

An engine-neutral link/joint table (`LINKS`, `JOINTS`, `KEYPOINTS`), scaled per
`scenes.Character` by `build(character)`, plus `humanoid_mjcf(character)`: the same
model as MJCF XML that both MuJoCo (``MjSpec.from_string``) and
``pybullet.loadMJCF`` read.

Model: 15 links, a free root (the pelvis) and 27 hinges (33 DoF). Standing pose =
all joint angles 0: upright, arms hanging, facing the link frame's +x (the
character's forward), +y to its left, +z up. Each link's frame origin is the joint
that attaches it to its parent (the pelvis frame sits between the hip joints).
Positive joint angles are: flexion (limb forward / knee and elbow bend / trunk leans
forward / toes up), abduction (limb away from the body midline) and twist to the
character's left (about +z).

Mass distribution: de Leva (1996) segment fractions (male), lower trunk -> pelvis,
middle+upper trunk -> torso. Lengths scale with ``height / 1.75``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

REFERENCE_HEIGHT = 1.75


@dataclass(frozen=True)
class Geom:
    """Collision/visual shape in its link frame: ``kind`` "capsule" (``fromto`` two
    end points, ``size`` radius), "sphere" (``pos``, radius) or "box" (``pos``,
    ``size`` = half extents)."""
    kind: str
    size: tuple
    pos: tuple = (0.0, 0.0, 0.0)
    fromto: tuple | None = None


@dataclass(frozen=True)
class Link:
    name: str
    parent: str | None
    pos: tuple            # joint origin in the parent link frame (m, unscaled)
    mass_fraction: float  # of the whole body
    geoms: tuple


@dataclass(frozen=True)
class Joint:
    name: str
    link: str             # the child link it moves
    axis: tuple           # in the link frame
    range: tuple          # (lo, hi) rad
    torque: float         # torque limit for a 70 kg body, N m (scales with mass)
    kp: float             # PD stiffness for a 70 kg body, N m / rad
    kd: float             # PD damping, N m s / rad


def _cap(a, b, r):
    return Geom("capsule", (r,), fromto=tuple(a) + tuple(b))


# Reference geometry for a 1.75 m body: ankle 0.08 m, knee 0.51 m, hip 0.93 m,
# shoulder 1.41 m, top of head 1.75 m.
LINKS: tuple[Link, ...] = (
    Link("pelvis", None, (0.0, 0.0, 0.93), 0.1117, (_cap((0, -0.08, 0.02), (0, 0.08, 0.02), 0.095),)),
    Link("torso", "pelvis", (0.0, 0.0, 0.10), 0.3229,
         (_cap((0, 0, 0.06), (0, 0, 0.20), 0.11), _cap((0, -0.09, 0.30), (0, 0.09, 0.30), 0.09))),
    Link("head", "torso", (0.0, 0.0, 0.45), 0.0694,
         (_cap((0, 0, 0.0), (0, 0, 0.06), 0.045), Geom("sphere", (0.105,), pos=(0.01, 0, 0.16)))),
    Link("left_upper_arm", "torso", (0.0, 0.19, 0.37), 0.0271, (_cap((0, 0, -0.03), (0, 0, -0.26), 0.045),)),
    Link("left_forearm", "left_upper_arm", (0.0, 0.0, -0.29), 0.0162, (_cap((0, 0, -0.02), (0, 0, -0.23), 0.04),)),
    Link("left_hand", "left_forearm", (0.0, 0.0, -0.26), 0.0061, (Geom("sphere", (0.045,), pos=(0, 0, -0.06)),)),
    Link("right_upper_arm", "torso", (0.0, -0.19, 0.37), 0.0271, (_cap((0, 0, -0.03), (0, 0, -0.26), 0.045),)),
    Link("right_forearm", "right_upper_arm", (0.0, 0.0, -0.29), 0.0162, (_cap((0, 0, -0.02), (0, 0, -0.23), 0.04),)),
    Link("right_hand", "right_forearm", (0.0, 0.0, -0.26), 0.0061, (Geom("sphere", (0.045,), pos=(0, 0, -0.06)),)),
    Link("left_thigh", "pelvis", (0.0, 0.09, 0.0), 0.1416, (_cap((0, 0, -0.04), (0, 0, -0.38), 0.065),)),
    Link("left_shin", "left_thigh", (0.0, 0.0, -0.42), 0.0433, (_cap((0, 0, -0.03), (0, 0, -0.38), 0.05),)),
    Link("left_foot", "left_shin", (0.0, 0.0, -0.43), 0.0137, (Geom("box", (0.11, 0.045, 0.025), pos=(0.05, 0, -0.055)),)),
    Link("right_thigh", "pelvis", (0.0, -0.09, 0.0), 0.1416, (_cap((0, 0, -0.04), (0, 0, -0.38), 0.065),)),
    Link("right_shin", "right_thigh", (0.0, 0.0, -0.42), 0.0433, (_cap((0, 0, -0.03), (0, 0, -0.38), 0.05),)),
    Link("right_foot", "right_shin", (0.0, 0.0, -0.43), 0.0137, (Geom("box", (0.11, 0.045, 0.025), pos=(0.05, 0, -0.055)),)),
)
LINK_NAMES: tuple[str, ...] = tuple(l.name for l in LINKS)
FOOT_LINKS = ("left_foot", "right_foot")
ROOT_LINK = "pelvis"
#: Height of the pelvis frame above the ground in the standing pose (unscaled).
PELVIS_HEIGHT = 0.93

_d = math.radians
_Y, _NY, _X, _NX, _Z = (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1)
JOINTS: tuple[Joint, ...] = (
    Joint("abdomen_flex", "torso", _Y, (_d(-30), _d(70)), 300, 900, 60),
    Joint("abdomen_bend", "torso", _X, (_d(-35), _d(35)), 300, 900, 60),
    Joint("abdomen_twist", "torso", _Z, (_d(-45), _d(45)), 200, 500, 40),
    Joint("neck_flex", "head", _Y, (_d(-50), _d(60)), 50, 120, 8),
    Joint("neck_twist", "head", _Z, (_d(-70), _d(70)), 40, 80, 6),
    Joint("left_shoulder_flex", "left_upper_arm", _NY, (_d(-60), _d(180)), 120, 250, 12),
    Joint("left_shoulder_abd", "left_upper_arm", _X, (_d(-20), _d(160)), 120, 250, 12),
    Joint("left_shoulder_twist", "left_upper_arm", _Z, (_d(-80), _d(80)), 80, 120, 8),
    Joint("left_elbow_flex", "left_forearm", _NY, (_d(0), _d(150)), 80, 120, 6),
    Joint("left_wrist_flex", "left_hand", _NY, (_d(-70), _d(70)), 20, 20, 1),
    Joint("right_shoulder_flex", "right_upper_arm", _NY, (_d(-60), _d(180)), 120, 250, 12),
    Joint("right_shoulder_abd", "right_upper_arm", _NX, (_d(-20), _d(160)), 120, 250, 12),
    Joint("right_shoulder_twist", "right_upper_arm", _Z, (_d(-80), _d(80)), 80, 120, 8),
    Joint("right_elbow_flex", "right_forearm", _NY, (_d(0), _d(150)), 80, 120, 6),
    Joint("right_wrist_flex", "right_hand", _NY, (_d(-70), _d(70)), 20, 20, 1),
    Joint("left_hip_flex", "left_thigh", _NY, (_d(-30), _d(120)), 350, 1200, 60),
    Joint("left_hip_abd", "left_thigh", _X, (_d(-30), _d(60)), 300, 900, 50),
    Joint("left_hip_twist", "left_thigh", _Z, (_d(-45), _d(45)), 200, 500, 30),
    Joint("left_knee_flex", "left_shin", _Y, (_d(0), _d(150)), 350, 1000, 50),
    Joint("left_ankle_flex", "left_foot", _NY, (_d(-50), _d(35)), 200, 500, 25),
    Joint("left_ankle_inv", "left_foot", _X, (_d(-25), _d(25)), 120, 300, 15),
    Joint("right_hip_flex", "right_thigh", _NY, (_d(-30), _d(120)), 350, 1200, 60),
    Joint("right_hip_abd", "right_thigh", _NX, (_d(-30), _d(60)), 300, 900, 50),
    Joint("right_hip_twist", "right_thigh", _Z, (_d(-45), _d(45)), 200, 500, 30),
    Joint("right_knee_flex", "right_shin", _Y, (_d(0), _d(150)), 350, 1000, 50),
    Joint("right_ankle_flex", "right_foot", _NY, (_d(-50), _d(35)), 200, 500, 25),
    Joint("right_ankle_inv", "right_foot", _NX, (_d(-25), _d(25)), 120, 300, 15),
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)
JOINT_INDEX = {n: i for i, n in enumerate(JOINT_NAMES)}
#: Passive joint damping (N m s / rad) that remains when the PD is off (ragdoll).
PASSIVE_DAMPING = 2.0
ARMATURE = 0.02

#: COCO-17 keypoints as (link, point in the link frame, unscaled), `COCO17` order.
KEYPOINTS: tuple[tuple[str, tuple], ...] = (
    ("head", (0.115, 0.0, 0.15)),          # nose
    ("head", (0.095, 0.035, 0.185)),       # left eye
    ("head", (0.095, -0.035, 0.185)),      # right eye
    ("head", (0.0, 0.1, 0.165)),           # left ear
    ("head", (0.0, -0.1, 0.165)),          # right ear
    ("left_upper_arm", (0.0, 0.0, 0.0)),   # shoulders
    ("right_upper_arm", (0.0, 0.0, 0.0)),
    ("left_forearm", (0.0, 0.0, 0.0)),     # elbows
    ("right_forearm", (0.0, 0.0, 0.0)),
    ("left_hand", (0.0, 0.0, 0.0)),        # wrists
    ("right_hand", (0.0, 0.0, 0.0)),
    ("left_thigh", (0.0, 0.0, 0.0)),       # hips
    ("right_thigh", (0.0, 0.0, 0.0)),
    ("left_shin", (0.0, 0.0, 0.0)),        # knees
    ("right_shin", (0.0, 0.0, 0.0)),
    ("left_foot", (0.0, 0.0, 0.0)),        # ankles
    ("right_foot", (0.0, 0.0, 0.0)),
)


@dataclass(frozen=True)
class BuiltLink:
    name: str
    parent: str | None
    pos: np.ndarray       # (3,) joint origin in the parent frame, m
    mass: float           # kg
    com: np.ndarray       # (3,) centre of mass in the link frame
    inertia: np.ndarray   # (3,) principal moments about the COM (link axes), kg m^2
    geoms: tuple          # scaled `Geom`s


@dataclass(frozen=True)
class Body:
    """A humanoid scaled to one character (see `build`)."""
    scale: float
    mass: float
    links: tuple[BuiltLink, ...]
    joints: tuple[Joint, ...]            # torque/kp/kd already scaled with mass
    keypoint_link: np.ndarray            # (17,) int link index
    keypoint_offset: np.ndarray          # (17, 3) m in the link frame
    pelvis_height: float                 # m


def _scale_geom(g: Geom, s: float) -> Geom:
    return Geom(g.kind, tuple(v * s for v in g.size), tuple(v * s for v in g.pos),
                None if g.fromto is None else tuple(v * s for v in g.fromto))


def _geom_volume_and_centre(g: Geom) -> tuple[float, np.ndarray]:
    if g.kind == "capsule":
        a, b = np.array(g.fromto[:3]), np.array(g.fromto[3:])
        r, L = g.size[0], float(np.linalg.norm(b - a))
        return math.pi * r * r * L + 4 / 3 * math.pi * r ** 3, (a + b) / 2
    if g.kind == "sphere":
        return 4 / 3 * math.pi * g.size[0] ** 3, np.array(g.pos)
    return 8 * float(np.prod(g.size)), np.array(g.pos)


def _link_inertia(geoms, mass: float) -> tuple[np.ndarray, np.ndarray]:
    """COM and diagonal inertia of ``mass`` spread over the geoms by volume
    (solid-body formulas, parallel-axis to the common COM, link axes)."""
    vols, centres = zip(*(_geom_volume_and_centre(g) for g in geoms))
    vols = np.array(vols)
    masses = mass * vols / vols.sum()
    com = (masses[:, None] * np.array(centres)).sum(0) / mass
    inertia = np.zeros(3)
    for g, m, c in zip(geoms, masses, centres):
        if g.kind == "capsule":
            a, b = np.array(g.fromto[:3]), np.array(g.fromto[3:])
            r = g.size[0]
            L = float(np.linalg.norm(b - a)) + 2 * r  # capsule approximated by a cylinder of full length
            axis = int(np.argmax(np.abs(b - a)))
            i = np.full(3, m * (3 * r * r + L * L) / 12)
            i[axis] = m * r * r / 2
        elif g.kind == "sphere":
            i = np.full(3, 0.4 * m * g.size[0] ** 2)
        else:
            hx, hy, hz = g.size
            i = m / 3 * np.array([hy * hy + hz * hz, hx * hx + hz * hz, hx * hx + hy * hy])
        d = c - com
        inertia += i + m * (d @ d - d * d)
    return com, inertia


def build(character=None, height: float = REFERENCE_HEIGHT, mass: float = 70.0) -> Body:
    """Scale the reference model to ``character`` (or ``height``/``mass``). The
    result is shared between callers (cached per size) and read-only: its arrays
    do not accept writes."""
    if character is not None:
        height, mass = character.height, character.mass
    return _build(float(height), float(mass))


@functools.lru_cache(maxsize=64)
def _build(height: float, mass: float) -> Body:
    s = height / REFERENCE_HEIGHT
    m = mass / 70.0
    links = []
    for l in LINKS:
        geoms = tuple(_scale_geom(g, s) for g in l.geoms)
        lm = l.mass_fraction * mass
        com, inertia = _link_inertia(geoms, lm)
        links.append(BuiltLink(l.name, l.parent, np.array(l.pos) * s, lm, com, inertia, geoms))
    # gains scale with mass * length^2 (gravity torques scale with mass * length)
    g = m * s * s
    joints = tuple(Joint(j.name, j.link, j.axis, j.range, j.torque * m * s, j.kp * g, j.kd * g)
                   for j in JOINTS)
    li = {n: i for i, n in enumerate(LINK_NAMES)}
    kl = np.array([li[k] for k, _ in KEYPOINTS])
    ko = np.array([p for _, p in KEYPOINTS]) * s
    for a in [kl, ko] + [x for l in links for x in (l.pos, l.com, l.inertia)]:
        a.setflags(write=False)
    return Body(s, mass, tuple(links), joints, kl, ko, PELVIS_HEIGHT * s)


def _f(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.atleast_1d(v))


def humanoid_mjcf(character=None, *, name: str = "humanoid", actuators: bool = True,
                  free_root: bool = True, height: float = REFERENCE_HEIGHT, mass: float = 70.0) -> str:
    """MJCF XML of one humanoid standing with its feet on z=0 at the origin, facing
    +x. Link bodies are named like `LINK_NAMES`, joints like `JOINT_NAMES`; the root
    has a free joint named ``root``. ``actuators`` adds one position actuator (exact
    PD: kp, kv, torque limit) per hinge, named after its joint. ``free_root=False``
    leaves out the root's free joint (PyBullet's MJCF reader warns about it; its
    base is free anyway)."""
    body = build(character, height, mass)
    joints_of: dict[str, list[Joint]] = {}
    for j in body.joints:
        joints_of.setdefault(j.link, []).append(j)
    children: dict[str | None, list[BuiltLink]] = {}
    for l in body.links:
        children.setdefault(l.parent, []).append(l)

    out = [f'<mujoco model="{name}">',
           '  <compiler angle="radian" inertiafromgeom="false"/>',
           '  <default><geom condim="3" friction="0.9 0.005 0.0001"/></default>',
           '  <worldbody>']

    def emit(link: BuiltLink, depth: int):
        pad = "  " * depth
        pos = link.pos if link.parent is not None else np.array([0, 0, body.pelvis_height])
        out.append(f'{pad}<body name="{link.name}" pos="{_f(pos)}">')
        if link.parent is None and free_root:
            out.append(f'{pad}  <joint name="root" type="free"/>')
        out.append(f'{pad}  <inertial pos="{_f(link.com)}" mass="{link.mass:.6g}" '
                   f'diaginertia="{_f(link.inertia)}"/>')
        for j in joints_of.get(link.name, []):
            out.append(f'{pad}  <joint name="{j.name}" type="hinge" axis="{_f(j.axis)}" '
                       f'range="{_f(j.range)}" limited="true" damping="{PASSIVE_DAMPING}" '
                       f'armature="{ARMATURE}"/>')
        for k, g in enumerate(link.geoms):
            gname = f'{link.name}_geom{k}'
            if g.kind == "capsule":
                out.append(f'{pad}  <geom name="{gname}" type="capsule" size="{_f(g.size)}" '
                           f'fromto="{_f(g.fromto)}"/>')
            else:
                out.append(f'{pad}  <geom name="{gname}" type="{g.kind}" size="{_f(g.size)}" '
                           f'pos="{_f(g.pos)}"/>')
        for c in children.get(link.name, []):
            emit(c, depth + 1)
        out.append(f'{pad}</body>')

    emit(children[None][0], 2)
    out.append('  </worldbody>')
    if actuators:
        out.append('  <actuator>')
        for j in body.joints:
            out.append(f'    <position name="{j.name}" joint="{j.name}" kp="{j.kp:.6g}" '
                       f'kv="{j.kd:.6g}" forcerange="{-j.torque:.6g} {j.torque:.6g}" '
                       f'forcelimited="true"/>')
        out.append('  </actuator>')
    out.append('</mujoco>')
    return "\n".join(out) + "\n"
