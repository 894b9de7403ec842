"""The scene description: one persistent world and its shot list.

Pure data plus the choreography API. Nothing here imports an engine: `sim`
compiles a `Scene` into physics, `bridge` renders the resulting trajectory.

Conventions (shared by every stage):
    * world frame: right-handed, z up, metres, seconds, kilograms;
    * quaternions: (w, x, y, z), scalar first (MuJoCo's convention);
    * ``yaw``: rotation about +z in radians, 0 facing +x;
    * a character's ``pos`` is the ground point between its feet at t=0.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Optional

from . import schema
from .errors import ChoreographyError, SceneError
from .materials import MATERIALS, Material
from .schema import Union_, field, tagged

Vec2 = tuple[float, float]
Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]
RGBA = tuple[float, float, float, float]

IDENTITY: Quat = (1.0, 0.0, 0.0, 0.0)


def quat_from_yaw(yaw: float) -> Quat:
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def quat_from_axis_angle(axis: Vec3, angle: float) -> Quat:
    n = math.sqrt(sum(a * a for a in axis))
    if n == 0:
        raise SceneError("axis", "rotation axis must be non-zero")
    s = math.sin(angle / 2) / n
    return (math.cos(angle / 2), axis[0] * s, axis[1] * s, axis[2] * s)


# --------------------------------------------------------------------------- shapes
@tagged("shape")
@dataclass(frozen=True)
class Box:
    """Axis-aligned box in its body frame. ``half_extents`` in metres."""
    kind: ClassVar[str] = "box"
    half_extents: Vec3 = field(min=0.0, min_exclusive=True)


@tagged("shape")
@dataclass(frozen=True)
class Sphere:
    kind: ClassVar[str] = "sphere"
    radius: float = field(min=0.0, min_exclusive=True)


@tagged("shape")
@dataclass(frozen=True)
class Capsule:
    """Capsule along the body's local z; ``half_length`` of the cylinder part."""
    kind: ClassVar[str] = "capsule"
    radius: float = field(min=0.0, min_exclusive=True)
    half_length: float = field(min=0.0, min_exclusive=True)


@tagged("shape")
@dataclass(frozen=True)
class Cylinder:
    """Cylinder along the body's local z."""
    kind: ClassVar[str] = "cylinder"
    radius: float = field(min=0.0, min_exclusive=True)
    half_length: float = field(min=0.0, min_exclusive=True)


@tagged("shape")
@dataclass(frozen=True)
class Mesh:
    """Triangle mesh from a file (OBJ/STL/GLB/PLY, read with trimesh by the engine).

    ``path`` is relative to the scene file's folder (or absolute). Static meshes
    collide as triangle meshes; props as their convex hull (``convex`` must be true
    for props). ``scale`` multiplies vertex coordinates.
    """
    kind: ClassVar[str] = "mesh"
    path: str = ""
    scale: float = field(1.0, min=0.0, min_exclusive=True)
    convex: bool = True


Shape = Annotated[object, Union_("shape")]


# --------------------------------------------------------------------------- bodies
@dataclass
class Static:
    """A fixed piece of the environment (ground, building, wall, ramp step, mesh)."""
    name: str
    shape: Shape
    pos: Vec3 = (0.0, 0.0, 0.0)
    quat: Quat = IDENTITY
    material: str = "concrete"
    color: Optional[RGBA] = None


@dataclass
class Prop:
    """A free rigid body. Give ``mass`` (kg) or ``density`` (kg/m^3); else the
    material's density is used. Velocities are world-frame (m/s, rad/s)."""
    name: str
    shape: Shape
    pos: Vec3 = (0.0, 0.0, 0.0)
    quat: Quat = IDENTITY
    material: str = "wood"
    mass: Optional[float] = field(None, min=0.0, min_exclusive=True)
    density: Optional[float] = field(None, min=0.0, min_exclusive=True)
    linvel: Vec3 = (0.0, 0.0, 0.0)
    angvel: Vec3 = (0.0, 0.0, 0.0)
    color: Optional[RGBA] = None


@dataclass
class Impulse:
    """An instantaneous impulse (N s, world frame) on ``body`` at ``time`` (s),
    applied at world ``point`` (default: the body's centre of mass)."""
    body: str
    time: float = field(min=0.0)
    impulse: Vec3 = (0.0, 0.0, 0.0)
    point: Optional[Vec3] = None


@dataclass
class Force:
    """A constant world-frame force (N) on ``body`` from ``start`` to ``end`` (s)."""
    body: str
    start: float = field(min=0.0)
    end: float = field(min=0.0)
    force: Vec3 = (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- actions
class _Action:
    """Base of all character actions: ``at`` is the start time in seconds."""


@tagged("action")
@dataclass
class Stand(_Action):
    """Hold a standing pose in place (the default when no action runs)."""
    kind: ClassVar[str] = "stand"
    at: float = field(0.0, min=0.0)


@tagged("action")
@dataclass
class WalkTo(_Action):
    """Walk to ground point ``target`` (x, y) at ``speed`` m/s, turning to face it."""
    kind: ClassVar[str] = "walk_to"
    at: float = field(0.0, min=0.0)
    target: Vec2 = (0.0, 0.0)
    speed: float = field(1.4, min=0.0, max=2.5, min_exclusive=True)


@tagged("action")
@dataclass
class RunTo(_Action):
    """Run to ground point ``target`` (x, y) at ``speed`` m/s."""
    kind: ClassVar[str] = "run_to"
    at: float = field(0.0, min=0.0)
    target: Vec2 = (0.0, 0.0)
    speed: float = field(4.0, min=0.0, max=9.0, min_exclusive=True)


@tagged("action")
@dataclass
class Turn(_Action):
    """Turn in place to face ``yaw`` (rad) over ``duration`` seconds."""
    kind: ClassVar[str] = "turn"
    at: float = field(0.0, min=0.0)
    yaw: float = 0.0
    duration: float = field(0.5, min=0.0, min_exclusive=True)


@tagged("action")
@dataclass
class Jump(_Action):
    """Jump at ``at``. Give ``velocity`` (takeoff velocity of the centre of mass,
    world m/s) or ``to`` (a landing point; the takeoff velocity is solved
    ballistically with apex height ``apex`` above the higher of takeoff and landing).
    Landing is automatic (see `Land`)."""
    kind: ClassVar[str] = "jump"
    at: float = field(0.0, min=0.0)
    velocity: Optional[Vec3] = None
    to: Optional[Vec3] = None
    apex: float = field(0.5, min=0.05, max=2.0)


@tagged("action")
@dataclass
class Land(_Action):
    """Absorb a landing: flex knees and hips for ``duration`` s, then stand."""
    kind: ClassVar[str] = "land"
    at: float = field(0.0, min=0.0)
    duration: float = field(0.3, min=0.0, min_exclusive=True)


@tagged("action")
@dataclass
class Punch(_Action):
    """Punch the body ``target`` (a character name, or ``character/link``)."""
    kind: ClassVar[str] = "punch"
    at: float = field(0.0, min=0.0)
    target: str = ""
    hand: str = field("right", choices=("left", "right"))
    duration: float = field(0.45, min=0.1, max=2.0)


@tagged("action")
@dataclass
class Kick(_Action):
    """Kick the body ``target`` (a character name, or ``character/link``)."""
    kind: ClassVar[str] = "kick"
    at: float = field(0.0, min=0.0)
    target: str = ""
    foot: str = field("right", choices=("left", "right"))
    duration: float = field(0.6, min=0.1, max=2.0)


@tagged("action")
@dataclass
class ReceiveHit(_Action):
    """Flinch from a hit: go compliant for ``duration`` s and recover."""
    kind: ClassVar[str] = "receive_hit"
    at: float = field(0.0, min=0.0)
    duration: float = field(0.4, min=0.05, max=3.0)


@tagged("action")
@dataclass
class Fall(_Action):
    """Fall as a ragdoll: all actuation off (joint damping only) from ``at``."""
    kind: ClassVar[str] = "fall"
    at: float = field(0.0, min=0.0)


@tagged("action")
@dataclass
class GetUp(_Action):
    """Get up from lying over ``duration`` s (optional after `Fall`)."""
    kind: ClassVar[str] = "get_up"
    at: float = field(0.0, min=0.0)
    duration: float = field(1.5, min=0.3, max=5.0)


Action = Annotated[object, Union_("action")]


@dataclass
class Character:
    """A humanoid (see `sim` for the body model) and its timed actions.

    ``height`` scales the standard 1.75 m body; ``mass`` is the total mass with the
    standard human distribution. ``max_takeoff_speed`` bounds jumps (m/s).
    """
    name: str
    pos: Vec2 = (0.0, 0.0)
    yaw: float = 0.0
    height: float = field(1.75, min=1.2, max=2.2)
    mass: float = field(70.0, min=30.0, max=150.0)
    material: str = "flesh"
    color: Optional[RGBA] = None
    max_takeoff_speed: float = field(6.5, min=1.0, max=12.0)
    actions: list[Action] = dataclasses.field(default_factory=list)

    # choreography API: each returns self so calls chain --------------------------
    def _add(self, action) -> "Character":
        self.actions.append(action)
        return self

    def stand(self, at: float = 0.0) -> "Character":
        return self._add(Stand(at=at))

    def walk_to(self, target: Vec2, speed: float = 1.4, at: float = 0.0) -> "Character":
        return self._add(WalkTo(at=at, target=tuple(target), speed=speed))

    def run_to(self, target: Vec2, speed: float = 4.0, at: float = 0.0) -> "Character":
        return self._add(RunTo(at=at, target=tuple(target), speed=speed))

    def turn(self, yaw: float, at: float = 0.0, duration: float = 0.5) -> "Character":
        return self._add(Turn(at=at, yaw=yaw, duration=duration))

    def jump(self, at: float, velocity: Vec3 | None = None, to: Vec3 | None = None,
             apex: float = 0.5) -> "Character":
        return self._add(Jump(at=at, velocity=None if velocity is None else tuple(velocity),
                              to=None if to is None else tuple(to), apex=apex))

    def land(self, at: float, duration: float = 0.3) -> "Character":
        return self._add(Land(at=at, duration=duration))

    def punch(self, target: str, at: float, hand: str = "right", duration: float = 0.45) -> "Character":
        return self._add(Punch(at=at, target=target, hand=hand, duration=duration))

    def kick(self, target: str, at: float, foot: str = "right", duration: float = 0.6) -> "Character":
        return self._add(Kick(at=at, target=target, foot=foot, duration=duration))

    def receive_hit(self, at: float, duration: float = 0.4) -> "Character":
        return self._add(ReceiveHit(at=at, duration=duration))

    def fall(self, at: float) -> "Character":
        return self._add(Fall(at=at))

    def get_up(self, at: float, duration: float = 1.5) -> "Character":
        return self._add(GetUp(at=at, duration=duration))


# --------------------------------------------------------------------------- cameras
@tagged("rig")
@dataclass
class StaticRig:
    """Fixed camera at ``pos`` looking at world point ``look_at``."""
    kind: ClassVar[str] = "static"
    pos: Vec3 = (0.0, -5.0, 1.6)
    look_at: Vec3 = (0.0, 0.0, 1.0)


@tagged("rig")
@dataclass
class LookAtRig:
    """Fixed position, always aimed at a body (``target``: body or character name)
    plus ``target_offset`` (world)."""
    kind: ClassVar[str] = "look_at"
    pos: Vec3 = (0.0, -5.0, 1.6)
    target: str = ""
    target_offset: Vec3 = (0.0, 0.0, 0.0)


@tagged("rig")
@dataclass
class FollowRig:
    """Follows ``target`` at world ``offset`` through a critically damped spring of
    half-life ``halflife`` seconds (0 = rigid), aimed at the target."""
    kind: ClassVar[str] = "follow"
    target: str = ""
    offset: Vec3 = (-4.0, -3.0, 2.0)
    halflife: float = field(0.25, min=0.0)
    target_offset: Vec3 = (0.0, 0.0, 0.9)


@tagged("rig")
@dataclass
class DollyRig:
    """Moves along a Catmull-Rom spline through ``points`` from ``start`` to ``end``
    (s, at constant arc-length speed), aimed at ``look_at`` (a point) or ``target``
    (a body name; takes precedence)."""
    kind: ClassVar[str] = "dolly"
    points: list[Vec3] = dataclasses.field(default_factory=list)
    start: float = field(0.0, min=0.0)
    end: float = field(1.0, min=0.0)
    look_at: Vec3 = (0.0, 0.0, 1.0)
    target: Optional[str] = None


@tagged("rig")
@dataclass
class OrbitRig:
    """Circles ``center`` (or body ``target``) at ``radius`` and ``height``,
    one revolution per ``period`` s starting at angle ``phase`` (rad)."""
    kind: ClassVar[str] = "orbit"
    center: Vec3 = (0.0, 0.0, 1.0)
    target: Optional[str] = None
    radius: float = field(5.0, min=0.0, min_exclusive=True)
    height: float = 2.0
    period: float = field(10.0, min_exclusive=True, min=0.0)
    phase: float = 0.0


@tagged("rig")
@dataclass
class CraneRig:
    """A crane: the camera rises from ``base`` + (0,0,``height_start``) to
    ``height_end`` between ``start`` and ``end`` (smoothstep), while the arm swings
    by ``swing`` rad about the base, aimed at ``look_at`` or body ``target``."""
    kind: ClassVar[str] = "crane"
    base: Vec3 = (0.0, -6.0, 0.0)
    arm: float = field(2.0, min=0.0)
    height_start: float = 1.0
    height_end: float = 6.0
    swing: float = 0.0
    start: float = field(0.0, min=0.0)
    end: float = field(1.0, min=0.0)
    look_at: Vec3 = (0.0, 0.0, 1.0)
    target: Optional[str] = None


Rig = Annotated[object, Union_("rig")]


@dataclass
class Handheld:
    """Seeded handheld shake composed on top of any rig: smooth noise of
    ``rotation_deg`` (std, degrees) and ``translation`` (std, m) with content up to
    ``frequency`` Hz. The rollout seed and ``seed`` together pick the noise."""
    rotation_deg: float = field(0.6, min=0.0, max=20.0)
    translation: float = field(0.01, min=0.0, max=1.0)
    frequency: float = field(1.5, min=0.05, max=20.0)
    seed: int = 0


@dataclass
class Camera:
    """A camera rig with pinhole intrinsics: vertical field of view ``fov`` in
    degrees and a native resolution (the bridge may render at another one with the
    same aspect ratio)."""
    name: str
    rig: Rig
    fov: float = field(50.0, min=5.0, max=150.0)
    width: int = field(512, min=8, max=4096)
    height: int = field(288, min=8, max=4096)
    near: float = field(0.05, min=0.0, min_exclusive=True)
    far: float = field(200.0, min=0.0, min_exclusive=True)
    shake: Optional[Handheld] = None


@tagged("transition")
@dataclass
class Cut:
    kind: ClassVar[str] = "cut"


@tagged("transition")
@dataclass
class Crossfade:
    """Blend from the previous shot over ``seconds`` centred on the shot boundary."""
    kind: ClassVar[str] = "crossfade"
    seconds: float = field(0.5, min=0.0, min_exclusive=True)


Transition = Annotated[object, Union_("transition")]


def cut() -> Cut:
    return Cut()


def crossfade(seconds: float = 0.5) -> Crossfade:
    return Crossfade(seconds=seconds)


@dataclass
class Shot:
    """Camera ``camera`` from ``start`` to ``end`` (s); ``transition`` is how this
    shot is entered from the previous one (ignored for the first shot)."""
    camera: str
    start: float = field(min=0.0)
    end: float = field(min=0.0)
    transition: Transition = dataclasses.field(default_factory=Cut)
    prompt: str = ""


# --------------------------------------------------------------------------- scene
SCHEMA_VERSION = 1


@dataclass
class Scene:
    """One persistent world, its cast, cameras and shot list.

    ``physics_hz`` must be a whole multiple of ``fps``: one clock for physics, one for
    frames. ``contact_threshold`` (N s) is the normal impulse above which a contact
    counts as an impact that is never merged away.
    """
    name: str = "untitled"
    duration: float = field(4.0, min=0.0, max=600.0, min_exclusive=True)
    fps: int = field(24, min=1, max=240)
    physics_hz: int = field(480, min=60, max=10000)
    gravity: Vec3 = (0.0, 0.0, -9.81)
    contact_threshold: float = field(0.05, min=0.0)
    statics: list[Static] = dataclasses.field(default_factory=list)
    props: list[Prop] = dataclasses.field(default_factory=list)
    characters: list[Character] = dataclasses.field(default_factory=list)
    impulses: list[Impulse] = dataclasses.field(default_factory=list)
    forces: list[Force] = dataclasses.field(default_factory=list)
    cameras: list[Camera] = dataclasses.field(default_factory=list)
    shots: list[Shot] = dataclasses.field(default_factory=list)
    materials: dict[str, Material] = dataclasses.field(default_factory=dict)
    description: str = ""

    # ----- choreography API -------------------------------------------------------
    def add_ground(self, size: float = 100.0, material: str = "concrete", name: str = "ground",
                   color: RGBA | None = None) -> Static:
        return self.add_static(name, Box((size, size, 0.5)), pos=(0.0, 0.0, -0.5),
                               material=material, color=color)

    def add_static(self, name: str, shape, pos: Vec3 = (0, 0, 0), quat: Quat = IDENTITY,
                   material: str = "concrete", color: RGBA | None = None) -> Static:
        s = Static(name, shape, tuple(map(float, pos)), tuple(map(float, quat)), material,
                   None if color is None else tuple(color))
        self.statics.append(s)
        return s

    def add_box(self, name: str, size: Vec3, pos: Vec3, yaw: float = 0.0,
                material: str = "concrete", color: RGBA | None = None) -> Static:
        """A static box of full ``size`` (x, y, z) whose centre is at ``pos``."""
        half = tuple(float(s) / 2 for s in size)
        return self.add_static(name, Box(half), pos, quat_from_yaw(yaw), material, color)

    def add_wall(self, name: str, start: Vec2, end: Vec2, height: float = 2.5,
                 thickness: float = 0.2, material: str = "concrete", color: RGBA | None = None) -> Static:
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy)
        if length <= 0:
            raise SceneError(f"statics.{name}", "wall start and end coincide")
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, height / 2)
        return self.add_box(name, (length, thickness, height), mid, math.atan2(dy, dx), material, color)

    def add_ramp(self, name: str, pos: Vec3, length: float, width: float, rise: float,
                 yaw: float = 0.0, thickness: float = 0.1, material: str = "concrete",
                 color: RGBA | None = None) -> Static:
        """A ramp rising ``rise`` metres over horizontal ``length`` along ``yaw``;
        ``pos`` is the ground point at the foot of the ramp's centre line."""
        slope = math.atan2(rise, length)
        hyp = math.hypot(length, rise)
        q_yaw = quat_from_yaw(yaw)
        q_pitch = quat_from_axis_angle((0.0, 1.0, 0.0), -slope)
        q = _qmul(q_yaw, q_pitch)
        # centre of the slab: halfway up, lowered by half the thickness along its normal
        cx = length / 2 + math.sin(slope) * thickness / 2
        cz = rise / 2 - math.cos(slope) * thickness / 2
        c, s = math.cos(yaw), math.sin(yaw)
        centre = (pos[0] + c * cx, pos[1] + s * cx, pos[2] + cz)
        return self.add_static(name, Box((hyp / 2, width / 2, thickness / 2)), centre, q, material, color)

    def add_stairs(self, name: str, pos: Vec3, steps: int, step_rise: float = 0.17,
                   step_run: float = 0.28, width: float = 1.2, yaw: float = 0.0,
                   material: str = "concrete", color: RGBA | None = None) -> list[Static]:
        """``steps`` solid steps climbing along ``yaw`` from ground point ``pos``;
        each step is its own static body ``{name}_{i}``."""
        out = []
        c, s = math.cos(yaw), math.sin(yaw)
        for i in range(steps):
            h = step_rise * (i + 1)
            d = step_run * (i + 0.5)
            centre = (pos[0] + c * d, pos[1] + s * d, pos[2] + h / 2)
            out.append(self.add_static(f"{name}_{i}", Box((step_run / 2, width / 2, h / 2)),
                                       centre, quat_from_yaw(yaw), material, color))
        return out

    def add_mesh(self, name: str, path: str, pos: Vec3 = (0, 0, 0), quat: Quat = IDENTITY,
                 scale: float = 1.0, material: str = "concrete", color: RGBA | None = None) -> Static:
        return self.add_static(name, Mesh(path=str(path), scale=scale, convex=False), pos, quat,
                               material, color)

    def add_prop(self, name: str, shape, pos: Vec3, quat: Quat = IDENTITY, material: str = "wood",
                 mass: float | None = None, density: float | None = None,
                 linvel: Vec3 = (0, 0, 0), angvel: Vec3 = (0, 0, 0), color: RGBA | None = None) -> Prop:
        p = Prop(name, shape, tuple(map(float, pos)), tuple(map(float, quat)), material, mass, density,
                 tuple(map(float, linvel)), tuple(map(float, angvel)),
                 None if color is None else tuple(color))
        self.props.append(p)
        return p

    def add_character(self, name: str, pos: Vec2 = (0.0, 0.0), yaw: float = 0.0, **kw) -> Character:
        c = Character(name, tuple(map(float, pos)), float(yaw), **kw)
        self.characters.append(c)
        return c

    def add_camera(self, name: str, rig, fov: float = 50.0, width: int = 512, height: int = 288,
                   shake: Handheld | None = None, **kw) -> Camera:
        cam = Camera(name, rig, fov, width, height, shake=shake, **kw)
        self.cameras.append(cam)
        return cam

    def kick(self, body: str, impulse: Vec3, at: float, point: Vec3 | None = None) -> "Scene":
        """Apply an impulse (N s) to a prop at time ``at`` (kick a crate, throw a ball)."""
        self.impulses.append(Impulse(body, at, tuple(map(float, impulse)),
                                     None if point is None else tuple(map(float, point))))
        return self

    def push(self, body: str, force: Vec3, start: float, end: float) -> "Scene":
        self.forces.append(Force(body, start, end, tuple(map(float, force))))
        return self

    def add_material(self, name: str, material: Material) -> Material:
        self.materials[name] = material
        return material

    def shot(self, camera: str, start: float, end: float, transition=None, prompt: str = "") -> "Scene":
        self.shots.append(Shot(camera, float(start), float(end), transition or Cut(), prompt))
        return self

    # ----- queries ------------------------------------------------------------------
    @property
    def frame_count(self) -> int:
        """Frames on the timeline: t = i / fps for i in [0, frame_count)."""
        return int(round(self.duration * self.fps))

    @property
    def substeps(self) -> int:
        """Physics steps per frame."""
        return self.physics_hz // self.fps

    def material(self, name: str, path: str = "material") -> Material:
        from .materials import resolve
        return resolve(name, self.materials, path)

    def body_names(self) -> list[str]:
        return [s.name for s in self.statics] + [p.name for p in self.props]

    def camera(self, name: str) -> Camera:
        for c in self.cameras:
            if c.name == name:
                return c
        raise SceneError("camera", f"unknown camera '{name}'", choices=[c.name for c in self.cameras])

    # ----- validation & (de)serialisation ------------------------------------------------
    def validate(self) -> "Scene":
        """Check everything that can be checked without an engine; raise SceneError."""
        self._check(schema.check)
        return self

    def canonical(self) -> dict:
        """`validate` and return `to_dict`, with one schema round trip for both."""
        out = []
        self._check(lambda obj: out.append(self._canonical_of(obj)))
        return out[0]

    def _canonical_of(self, obj) -> dict:
        d = schema.encode(schema.decode(Scene, schema.encode(obj)))
        d["schema_version"] = SCHEMA_VERSION
        return d

    def _check(self, schema_check) -> None:
        schema_check(self)
        if self.physics_hz % self.fps:
            raise SceneError("physics_hz", f"physics rate {self.physics_hz} Hz is not a whole "
                             f"multiple of the frame rate {self.fps} fps; try "
                             f"{self.fps * max(1, round(self.physics_hz / self.fps))}")
        if abs(self.frame_count / self.fps - self.duration) > 1e-9:
            raise SceneError("duration", f"duration {self.duration} s is not a whole number of "
                             f"frames at {self.fps} fps")
        seen: dict[str, str] = {}
        groups = (("statics", self.statics), ("props", self.props), ("characters", self.characters))
        for group, items in groups:
            for i, item in enumerate(items):
                if "/" in item.name or not item.name:
                    raise SceneError(f"{group}[{i}].name", f"invalid name {item.name!r} (non-empty, no '/')")
                if item.name in seen:
                    raise SceneError(f"{group}[{i}].name", f"duplicate name '{item.name}' "
                                     f"(already used in {seen[item.name]})")
                seen[item.name] = group
                self.material(item.material, f"{group}[{i}].material")
        for i, p in enumerate(self.props):
            if isinstance(p.shape, Mesh) and not p.shape.convex:
                raise SceneError(f"props[{i}].shape.convex", "props collide as convex hulls; set convex: true")
            if p.mass is not None and p.density is not None:
                raise SceneError(f"props[{i}]", "give mass or density, not both")
        for i, s in enumerate(self.statics + self.props):
            if isinstance(s.shape, Mesh) and not s.shape.path:
                raise SceneError(f"{'statics' if i < len(self.statics) else 'props'}"
                                 f"[{i if i < len(self.statics) else i - len(self.statics)}].shape.path",
                                 "mesh path is empty")
        bodies = set(seen)
        props = {p.name for p in self.props}
        for i, imp in enumerate(self.impulses):
            if imp.body not in props:
                raise SceneError(f"impulses[{i}].body", f"unknown prop '{imp.body}'", choices=sorted(props))
            if imp.time >= self.duration:
                raise SceneError(f"impulses[{i}].time", f"t={imp.time} s is outside the timeline [0, {self.duration})")
        for i, f in enumerate(self.forces):
            if f.body not in props:
                raise SceneError(f"forces[{i}].body", f"unknown prop '{f.body}'", choices=sorted(props))
            if f.end < f.start:
                raise SceneError(f"forces[{i}].end", f"end {f.end} s is before start {f.start} s")
        chars = {c.name for c in self.characters}
        for ci, c in enumerate(self.characters):
            for ai, a in enumerate(c.actions):
                path = f"characters[{ci}].actions[{ai}]"
                if a.at >= self.duration:
                    raise SceneError(f"{path}.at", f"t={a.at} s is outside the timeline [0, {self.duration})")
                if isinstance(a, Jump) and (a.velocity is None) == (a.to is None):
                    raise SceneError(path, "jump needs exactly one of 'velocity' or 'to'")
                if isinstance(a, (Punch, Kick)):
                    who = a.target.split("/")[0]
                    if who not in chars or who == c.name:
                        raise SceneError(f"{path}.target", f"unknown target '{a.target}'",
                                         choices=sorted(chars - {c.name}))
        cams = [c.name for c in self.cameras]
        if len(set(cams)) != len(cams):
            raise SceneError("cameras", "duplicate camera names")
        for i, cam in enumerate(self.cameras):
            for attr in ("target",):
                t = getattr(cam.rig, attr, None)
                if t and t.split("/")[0] not in bodies:
                    raise SceneError(f"cameras[{i}].rig.target", f"unknown body '{t}'", choices=sorted(bodies))
            if cam.far <= cam.near:
                raise SceneError(f"cameras[{i}].far", "far plane must lie beyond the near plane")
        self._validate_shots(set(cams))
        return self

    def _validate_shots(self, cams: set[str]):
        if not self.shots:
            raise SceneError("shots", "the shot list is empty; add at least one shot")
        eps = 0.5 / self.fps
        prev_end = 0.0
        for i, s in enumerate(self.shots):
            p = f"shots[{i}]"
            if s.camera not in cams:
                raise SceneError(f"{p}.camera", f"unknown camera '{s.camera}'", choices=sorted(cams))
            if s.end <= s.start:
                raise SceneError(f"{p}.end", f"shot ends at {s.end} s, not after its start {s.start} s")
            if s.end > self.duration + eps or s.start < 0:
                raise SceneError(f"{p}.start" if s.start < 0 else f"{p}.end", f"shot [{s.start}, {s.end}] s lies outside the timeline "
                                 f"[0, {self.duration}] s")
            if s.start < prev_end - eps:
                raise SceneError(f"{p}.start", f"shot starts at {s.start} s, overlapping the previous "
                                 f"shot which ends at {prev_end} s")
            if s.start > prev_end + eps:
                raise SceneError(f"{p}.start", f"gap in the shot list from {prev_end} s to {s.start} s")
            if isinstance(s.transition, Crossfade) and i > 0:
                half = s.transition.seconds / 2
                if half > (s.end - s.start) or half > (self.shots[i - 1].end - self.shots[i - 1].start):
                    raise SceneError(f"{p}.transition.seconds", "crossfade longer than the shots it joins")
            prev_end = s.end
        if abs(prev_end - self.duration) > eps:
            raise SceneError(f"shots[{len(self.shots) - 1}].end", f"the shot list ends at {prev_end} s "
                             f"but the timeline lasts {self.duration} s")

    def to_dict(self) -> dict:
        """Canonical plain-dict form (numbers normalised through the schema, so the
        API and a scene file with the same content give the same dict and hash)."""
        return self._canonical_of(self)

    @classmethod
    def from_dict(cls, data: dict, path: str = "") -> "Scene":
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SceneError("schema_version", f"unsupported scene schema version {version!r}",
                             choices=[SCHEMA_VERSION])
        return schema.decode(cls, data, path)

    def to_json(self, canonical: dict | None = None) -> str:
        """Canonical JSON (of ``canonical``, this scene's `to_dict` if already made)."""
        d = self.to_dict() if canonical is None else canonical
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    def content_hash(self, canonical: dict | None = None) -> str:
        """SHA-256 of the canonical JSON description (first 16 hex digits), with each
        mesh named by a digest of its file's bytes instead of its path: the same scene
        hashes the same from any folder or checkout, and editing a mesh file changes
        it (a missing file keeps its path). ``canonical``: this scene's `to_dict`, if
        the caller already has it (not modified)."""
        d = self.to_dict() if canonical is None else canonical
        meshes = {(g, i) for g in ("statics", "props") for i, b in enumerate(d.get(g, ()))
                  if b.get("shape", {}).get("type") == "mesh"}
        if meshes:
            d = {**d, **{g: [{**b, "shape": {**b["shape"], "path": _file_digest(b["shape"]["path"])}}
                             if (g, i) in meshes else b for i, b in enumerate(d[g])]
                         for g in {g for g, _ in meshes}}}
        return hashlib.sha256(self.to_json(d).encode()).hexdigest()[:16]

    def copy(self) -> "Scene":
        return Scene.from_dict(self.to_dict())


def _file_digest(path: str) -> str:
    """"sha256:<hex>" of a file's bytes, or ``path`` itself when it cannot be read."""
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except (OSError, TypeError, ValueError):
        return path


def _qmul(a: Quat, b: Quat) -> Quat:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw)


__all__ = [
    "Scene", "Static", "Prop", "Impulse", "Force", "Character", "Camera", "Handheld", "Shot",
    "Box", "Sphere", "Capsule", "Cylinder", "Mesh",
    "Stand", "WalkTo", "RunTo", "Turn", "Jump", "Land", "Punch", "Kick", "ReceiveHit", "Fall", "GetUp",
    "StaticRig", "LookAtRig", "FollowRig", "DollyRig", "OrbitRig", "CraneRig",
    "Cut", "Crossfade", "cut", "crossfade", "Material", "MATERIALS", "SceneError", "ChoreographyError",
    "quat_from_yaw", "quat_from_axis_angle", "SCHEMA_VERSION",
]
