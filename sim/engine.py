"""`Engine`: the small interface every physics backend implements.

An engine compiles one `scenes.Scene` into physics and exposes its state in the
trajectory's body order (statics, props, then each character's links as
``"<character>/<link>"`` in `sim.humanoid.LINKS` order). Everything else -- the
stepping loop, character control, recording, cameras -- is engine-independent and
lives in `sim/__init__.py`, `sim/controller.py`, `sim/recorder.py`, `sim/cameras.py`.

Conventions at this boundary (engines convert at their own edge):
    * world frame z up, metres, seconds, kg; quaternions (w, x, y, z);
    * body position = origin of the body frame: for statics their ``pos``, for props
      the centre of mass (engines put the prop frame there), for character links
      the link's joint origin as given by `sim.humanoid` (its COM is offset);
    * velocities are world-frame: linear velocity of the body origin, angular velocity;
    * contact normal points from body a to body b; body index -1 never occurs (every
      collider, the ground included, is a static body of the scene).

Material pairing (both engines use the same rule): in a contact the material with
the higher restitution governs friction and restitution; on a tie the higher
friction wins. `pair_material` implements it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from scenes import Scene, SceneError
from scenes.materials import Material


class DivergenceError(RuntimeError):
    """A rollout whose state became NaN or exploded. ``trajectory`` holds the frames
    up to the last good one (status names the first bad step)."""

    def __init__(self, message: str, trajectory=None):
        super().__init__(message)
        self.trajectory = trajectory


@dataclass(frozen=True)
class Contacts:
    """Raw contacts of the most recent physics step (n contacts).

    body: (n, 2) int64, trajectory body indices (a, b).
    pos: (n, 3) float64, m, world contact point.
    normal: (n, 3) float64, unit world normal from a to b.
    normal_force: (n,) float64, N, >= 0.
    tangent_force: (n,) float64, N, magnitude of the friction force.
    normal_speed: (n,) float64, m/s, relative approach speed along the normal before
        the step's contact impulse (> 0 approaching).
    depth: (n,) float64, m, penetration depth (> 0 overlapping).
    """

    body: np.ndarray
    pos: np.ndarray
    normal: np.ndarray
    normal_force: np.ndarray
    tangent_force: np.ndarray
    normal_speed: np.ndarray
    depth: np.ndarray

    def __len__(self) -> int:
        return int(self.body.shape[0])

    @classmethod
    def of(cls, body, pos, normal, normal_force, tangent_force, normal_speed, depth) -> "Contacts":
        """The same as the constructor, without the frozen dataclass' per-field
        ``object.__setattr__`` (engines build one per physics step)."""
        c = object.__new__(cls)
        c.__dict__.update(body=body, pos=pos, normal=normal, normal_force=normal_force,
                          tangent_force=tangent_force, normal_speed=normal_speed, depth=depth)
        return c

    def subset(self, keep: np.ndarray) -> "Contacts":
        """The rows selected by ``keep`` (a boolean mask or indices)."""
        return Contacts.of(self.body[keep], self.pos[keep], self.normal[keep], self.normal_force[keep],
                           self.tangent_force[keep], self.normal_speed[keep], self.depth[keep])

    @staticmethod
    def empty() -> "Contacts":
        z = np.zeros
        return Contacts(z((0, 2), np.int64), z((0, 3)), z((0, 3)), z(0), z(0), z(0), z(0))


def pair_material(a: Material, b: Material) -> tuple[float, float]:
    """(friction, restitution) of a contact between materials ``a`` and ``b``."""
    if (a.restitution, a.friction) >= (b.restitution, b.friction):
        return a.friction, a.restitution
    return b.friction, b.restitution


#: A state is "exploding" beyond these speeds (m/s, rad/s).
MAX_LINEAR_SPEED = 200.0
MAX_ANGULAR_SPEED = 2000.0

#: Allowed overlap of bodies at t=0 (m) before `check_initial_overlap` raises.
START_OVERLAP_TOLERANCE = 2e-3


class Engine(abc.ABC):
    """One compiled scene. Construct with ``Engine(scene, base_dir=None)``.

    Construction raises `scenes.SceneError` for an unknown material (naming the
    field), a missing or unreadable mesh (naming the field and file) and bodies that
    overlap at start (naming both bodies). Characters start in the humanoid's
    standing pose at ``Character.pos``/``yaw``.

    The rollout loop (`sim.rollout`) per physics step: scripted forces and the
    controller's commands, `step`, `check_step`, `contacts`.

    Control per step: `set_pd_targets` (joint PD run by the engine every step until
    changed), `apply_joint_torques` and `apply_force` (both for the next step only);
    then `step`.
    """

    #: registry name, e.g. "mujoco"
    name: str = ""

    def __init__(self, scene: Scene, base_dir: Optional[str | Path] = None):
        self.scene = scene
        self.base_dir = Path(base_dir) if base_dir is not None else None

    # ------------------------------------------------------------------ description
    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Engine version string, e.g. ``"mujoco 4.0.0"``."""

    @property
    @abc.abstractmethod
    def timestep(self) -> float:
        """Physics step in seconds (``1 / scene.physics_hz``)."""

    @property
    @abc.abstractmethod
    def time(self) -> float:
        """Simulated time in seconds."""

    @property
    @abc.abstractmethod
    def body_names(self) -> tuple[str, ...]:
        """(B,) trajectory body names (see module docstring for the order)."""

    @property
    @abc.abstractmethod
    def body_kind(self) -> tuple[str, ...]:
        """(B,) ``"static"``, ``"prop"`` or ``"character"``."""

    @property
    @abc.abstractmethod
    def body_material(self) -> tuple[str, ...]:
        """(B,) material names."""

    @property
    @abc.abstractmethod
    def body_character(self) -> np.ndarray:
        """(B,) int64 character index or -1."""

    @property
    @abc.abstractmethod
    def body_mass(self) -> np.ndarray:
        """(B,) float64 kg, 0 for statics."""

    @property
    def joint_names(self) -> tuple[str, ...]:
        """(J,) hinge joint names of the humanoid (same for every character)."""
        from .humanoid import JOINT_NAMES
        return JOINT_NAMES

    @property
    def num_characters(self) -> int:
        return len(self.scene.characters)

    # ------------------------------------------------------------------ state
    @abc.abstractmethod
    def body_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pos (B,3), quat (B,4) wxyz, linvel (B,3), angvel (B,3)), world frame.
        Returned arrays are fresh copies."""

    @abc.abstractmethod
    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """(angles (C,J) rad, velocities (C,J) rad/s) in `joint_names` order."""

    @abc.abstractmethod
    def root_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pelvis (root link) of each character: (pos (C,3), quat (C,4), linvel (C,3),
        angvel (C,3)), world frame."""

    def link_orientations(self, bodies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quat (n,4), angvel (n,3)) of trajectory bodies ``bodies``: a cheap read the
        controller makes every step (engines may override body_states' full copy)."""
        _, quat, _, ang = self.body_states()
        return quat[bodies], ang[bodies]

    def angular_momentum(self) -> np.ndarray:
        """(C, 3) whole-body angular momentum of each character about its centre of
        mass, world frame (kg m^2/s). Default: link frames as point masses (engines
        with the exact value override it)."""
        pos, _, lin, _ = self.body_states()
        com, comv = self.com_states()
        chars = np.asarray(self.body_character)
        m = np.asarray(self.body_mass)
        out = np.zeros((self.num_characters, 3))
        for c in range(self.num_characters):
            k = chars == c
            out[c] = (m[k, None] * np.cross(pos[k] - com[c], lin[k] - comv[c])).sum(0)
        return out

    @abc.abstractmethod
    def com_states(self) -> tuple[np.ndarray, np.ndarray]:
        """Whole-body centre of mass of each character: (pos (C,3), vel (C,3))."""

    @abc.abstractmethod
    def contacts(self) -> Contacts:
        """Contacts of the most recent step (after `step`; at t=0 after compile)."""

    def touching_characters(self, is_foot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which characters touch a body that is not their own in the step about to be
        taken: (any link (C,) bool, a link with ``is_foot[body]`` (C,) bool). The
        controller gates the root assist on it. Default: the last step's contacts;
        engines that know the coming step's contacts should override."""
        C = self.num_characters
        c = self.contacts()
        any_, foot = np.zeros(C + 1, bool), np.zeros(C + 1, bool)
        if len(c):
            chars = np.asarray(self.body_character)
            a, b = c.body[:, 0], c.body[:, 1]
            ca, cb = chars[a], chars[b]
            diff = ca != cb
            for x, cx in ((a, ca), (b, cb)):
                m = diff & (cx >= 0)
                any_[cx[m]] = True
                foot[cx[m & is_foot[x]]] = True
        return any_[:C], foot[:C]

    # ------------------------------------------------------------------ control
    @abc.abstractmethod
    def set_pd_targets(self, character: int, q_target: np.ndarray, kp: np.ndarray,
                       kd: np.ndarray, qd_target: Optional[np.ndarray] = None) -> None:
        """Joint PD for every following step until changed:
        tau = kp (q_target - q) + kd (qd_target - qd), clipped to the joint's torque
        limit (`sim.humanoid` gives limits). All arrays (J,); kp = kd = 0 is limp."""

    @abc.abstractmethod
    def apply_joint_torques(self, character: int, tau: np.ndarray) -> None:
        """Extra joint torques (J,) N m for the next step only (added to the PD)."""

    @abc.abstractmethod
    def apply_force(self, body: int, force: np.ndarray, torque: Optional[np.ndarray] = None,
                    point: Optional[np.ndarray] = None) -> None:
        """World force (N) at world ``point`` (default: the body's centre of mass)
        plus world torque (N m) on trajectory body ``body``, for the next step only.
        Calls accumulate."""

    def apply_forces(self, bodies: np.ndarray, forces: np.ndarray, torques: Optional[np.ndarray] = None,
                     points: Optional[np.ndarray] = None) -> None:
        """`apply_force` for n rows at once: trajectory bodies ``bodies`` (n,), world
        forces (n, 3) N at world ``points`` (n, 3) (default: centres of mass), world
        ``torques`` (n, 3) N m; a body may repeat (its rows add up). Engines may
        override with a vectorised version."""
        for k in range(len(bodies)):
            self.apply_force(int(bodies[k]), forces[k],
                             torque=None if torques is None else torques[k],
                             point=None if points is None else points[k])

    @abc.abstractmethod
    def step(self) -> None:
        """Advance one physics step; clear the one-step forces and torques."""

    def native_stepper(self, controller=None):
        """An object that runs whole stretches of physics steps, with
        ``controller``'s per-step gate and assist, in native code (see
        `sim.mujoco_engine.NativeStepper` for the protocol), or None: the rollout
        then calls `step` once per physics step."""
        return None

    # ------------------------------------------------------------------ helpers
    def check_initial_overlap(self) -> None:
        """Raise SceneError naming both bodies if any two bodies (not of the same
        character) overlap by more than `START_OVERLAP_TOLERANCE` at start."""
        c = self.contacts()
        if not len(c):
            return
        bad = np.nonzero(c.depth > START_OVERLAP_TOLERANCE)[0]
        chars = self.body_character
        for k in bad:
            a, b = (int(x) for x in c.body[k])
            if chars[a] >= 0 and chars[a] == chars[b]:
                continue
            names = self.body_names
            moving = b if self.body_kind[a] == "static" else a
            raise SceneError(self._pose_field(names[moving]),
                             f"'{names[a]}' and '{names[b]}' interpenetrate by "
                             f"{c.depth[k] * 1000:.1f} mm at start (t=0); move them apart")

    def _pose_field(self, body: str) -> str:
        """The scene field that places ``body`` (e.g. ``props[2].pos``)."""
        owner = body.split("/")[0]
        for group in ("props", "statics", "characters"):
            for i, item in enumerate(getattr(self.scene, group)):
                if item.name == owner:
                    return f"{group}[{i}].pos"
        return body

    def check_step(self) -> Optional[str]:
        """After `step`: None if the state is finite and not exploding, else a message
        naming the first bad body. Engines may override with a cheaper check."""
        pos, _, linvel, angvel = self.body_states()
        return self.check_state(pos, linvel, angvel)

    def check_state(self, pos: np.ndarray, linvel: np.ndarray, angvel: np.ndarray) -> Optional[str]:
        """None if the state is finite and not exploding, else a message naming the body."""
        kinds = self.body_kind
        for arr, limit, what in ((pos, None, "position"), (linvel, MAX_LINEAR_SPEED, "speed"),
                                 (angvel, MAX_ANGULAR_SPEED, "angular speed")):
            finite = np.isfinite(arr).all(axis=1)
            if not finite.all():
                i = int(np.nonzero(~finite)[0][0])
                return f"body '{self.body_names[i]}' has a non-finite {what}"
            if limit is not None:
                n = np.linalg.norm(arr, axis=1)
                n[np.array([k == "static" for k in kinds])] = 0.0
                if (n > limit).any():
                    i = int(np.argmax(n))
                    return f"body '{self.body_names[i]}' {what} {n[i]:.3g} exceeds {limit:g}"
        return None

    def load_mesh(self, path: str, scale: float, field: str):
        return load_mesh(path, scale, field, self.base_dir)

    def material(self, name: str, field: str) -> Material:
        return self.scene.material(name, field)


def load_mesh(path: str, scale: float, field: str, base_dir=None):
    """trimesh.Trimesh of a mesh field, scaled; relative paths resolve against
    ``base_dir`` (default: the working directory). SceneError naming ``field`` and
    the file if it is missing, unreadable or has no triangles."""
    import trimesh
    p = Path(path)
    if not p.is_absolute():
        p = (Path(base_dir) if base_dir is not None else Path.cwd()) / p
    if not p.is_file():
        raise SceneError(field, f"mesh file not found: {p}")
    try:
        mesh = trimesh.load(p, force="mesh")
    except Exception as e:  # trimesh raises many exception types on bad files
        raise SceneError(field, f"cannot read mesh {p}: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise SceneError(field, f"mesh {p} has no triangles")
    if scale != 1.0:
        mesh = mesh.copy()
        mesh.apply_scale(scale)
    return mesh
