"""MuJoCo backend: compile a `scenes.Scene` with MjSpec and step it.

`compile_scene(scene)` builds the model (also used by the bridge to render poses
from a trajectory with `set_frame`); `MujocoEngine` implements `sim.engine.Engine`.

Modelling choices:
    * every static is its own fixed body (segmentation by body id); a non-convex
      static mesh becomes one thin prism per triangle, since MuJoCo collides mesh
      geoms as convex hulls; props collide as their convex hull;
    * materials: friction and restitution follow `sim.engine.pair_material` through
      geom priority (the geom with higher restitution, then friction, governs);
      restitution e becomes the damping ratio of the contact spring, calibrated by
      simulating a bounce in MuJoCo at the scene's timestep (`contact_solref`);
    * elliptic friction cones (so the solver's contact rows are the normal and two
      tangential forces), implicit-fast integration (stiff PD gains are stable);
    * each character's links collide with everything except its own links;
    * character joints are driven by position actuators (kp, kv: exact joint PD in
      the solver, no Python per step).
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from scenes import Box, Capsule, Cylinder, Mesh, Scene, SceneError, Sphere

from . import humanoid
from .engine import Contacts, Engine, load_mesh

#: Natural frequency (rad/s) of the contact spring (mass-normalised): a body at
#: rest sinks g / w0^2 ~ 1 mm; an impact lasts about pi / w0 ~ 31 ms.
CONTACT_OMEGA = 100.0
#: Impedance of contacts (solimp dmin, dmax, width, mid, power): near-hard contacts
#: so the spring-damper of `contact_solref` alone sets the bounce.
CONTACT_SOLIMP = (0.99, 0.99, 0.001, 0.5, 2.0)
#: Name of the free-standing world camera that `sim.preview` poses per frame.
PREVIEW_CAMERA = "physcut_view"
_EMPTY = Contacts.empty()
#: Set PHYSCUT_NATIVE=0 to step every MuJoCo rollout with the Python loop.
NATIVE_ENV = "PHYSCUT_NATIVE"
#: Largest |qvel| entry (m/s or rad/s) a step may end with before `check_step`
#: looks closer (both loops).
QVEL_CHECK = 200.0
#: Thickness (m) of the prism extruded below each triangle of a static mesh.
MESH_PRISM_THICKNESS = 0.02


#: Impact speed (m/s) of the calibration drop: a fall from about 1 m.
CALIBRATION_SPEED = 4.43


def _bounce_ratio(zeta: float, timestep: float, gravity: float) -> float:
    """Measured rebound/impact speed ratio of a MuJoCo contact with damping ratio
    ``zeta``: a sphere hitting a plane at `CALIBRATION_SPEED` under ``gravity``,
    first touching half a step after a step boundary (the average phase)."""
    import mujoco
    k, b = CONTACT_OMEGA ** 2, 2 * zeta * CONTACT_OMEGA
    v0 = CALIBRATION_SPEED
    imp = " ".join(map(str, CONTACT_SOLIMP))
    xml = f"""<mujoco><option timestep="{timestep!r}" cone="elliptic" integrator="implicitfast"
      gravity="0 0 {-gravity!r}"/><worldbody><geom type="plane" size="5 5 .1" solref="{-k} {-b}"
      solimp="{imp}"/><body pos="0 0 {0.1 + 0.51 * v0 * timestep!r}"><freejoint/><geom type="sphere"
      size="0.1" mass="1" solref="{-k} {-b}" solimp="{imp}"/></body></worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    d.qvel[2] = -v0
    touched = False
    for _ in range(int(0.5 / timestep)):
        mujoco.mj_step(m, d)
        touched |= d.ncon > 0
        if touched and d.qvel[2] > 0 and d.ncon == 0:
            break
    return max(0.0, float(d.qvel[2]) / v0)


@functools.lru_cache(maxsize=8)
def _restitution_table(timestep: float, gravity: float) -> tuple[np.ndarray, np.ndarray]:
    """(restitution, zeta) calibration of MuJoCo's contact spring-damper at this
    timestep. A linear spring-damper half cycle gives e = exp(-pi z / sqrt(1-z^2)),
    but the unilateral contact lets go before the spring is relaxed and gravity
    acts during the contact, so e is measured in MuJoCo itself rather than taken
    from the formula (about 30 short simulations, a few ms each)."""
    # damping b = 2 zeta w0 must stay well below 1 / dt, or stiff light contacts
    # (hand against hand) turn unstable
    zmax = min(8.0, 0.5 / (2 * CONTACT_OMEGA * timestep))
    zetas = np.concatenate([np.linspace(0.0, 1.0, 21), np.linspace(1.0, zmax, 10)[1:]])
    es = np.array([_bounce_ratio(float(z), timestep, gravity) for z in zetas])
    es = np.minimum.accumulate(es)  # monotone for interpolation
    return es[::-1].copy(), zetas[::-1].copy()


def contact_dampratio(restitution: float, timestep: float, gravity: float = 9.81) -> float:
    """Damping ratio of the contact spring that bounces with ``restitution``
    (bounce-height ratio e^2) at this physics timestep."""
    es, zetas = _restitution_table(float(timestep), round(float(gravity), 6))
    return float(np.interp(restitution, es, zetas))


def contact_solref(restitution: float, timestep: float, gravity: float = 9.81) -> tuple[float, float]:
    """MuJoCo ``solref`` in its direct form (-stiffness, -damping), mass-normalised,
    for a contact with restitution ``restitution``."""
    z = contact_dampratio(restitution, timestep, gravity)
    return -CONTACT_OMEGA ** 2, -2.0 * z * CONTACT_OMEGA


@dataclass
class Compiled:
    """A compiled scene. ``body_ids[i]`` is the MuJoCo body of trajectory body i."""
    model: object                       # mujoco.MjModel
    body_ids: np.ndarray                # (B,) int
    body_names: tuple
    body_kind: tuple
    body_material: tuple
    body_character: np.ndarray          # (B,) int
    geom_body: np.ndarray               # (ngeom,) trajectory body index of each geom
    prop_qadr: np.ndarray               # (P,) qpos address of each prop's free joint
    prop_dadr: np.ndarray               # (P,) qvel address
    prop_body: np.ndarray               # (P,) trajectory body index
    root_qadr: np.ndarray               # (C,) qpos address of each character's free joint
    root_dadr: np.ndarray               # (C,)
    joint_qadr: np.ndarray              # (C, J) qpos addresses of the hinges
    joint_dadr: np.ndarray              # (C, J)
    actuator_ids: np.ndarray            # (C, J)
    char_body_ids: np.ndarray           # (C, L) MuJoCo body ids of each character's links
    humanoids: list = field(default_factory=list)   # humanoid.Body per character
    init_qpos: np.ndarray | None = None
    init_qvel: np.ndarray | None = None


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (n, 3) arrays (np.cross costs more on small arrays)."""
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[:, 0] = a1 * b2 - a2 * b1
    out[:, 1] = a2 * b0 - a0 * b2
    out[:, 2] = a0 * b1 - a1 * b0
    return out


def _quat_to_mat(q) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _material_rgba(scene: Scene, color, material) -> list:
    return list(color if color is not None else material.color)


class _Builder:
    def __init__(self, scene: Scene, base_dir):
        import mujoco
        self.mj = mujoco
        self.scene = scene
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.spec = spec = mujoco.MjSpec()
        spec.modelname = scene.name or "scene"
        spec.option.timestep = 1.0 / scene.physics_hz
        spec.option.gravity = list(scene.gravity)
        spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        spec.compiler.autolimits = True
        spec.compiler.degree = False          # joint ranges are in radians
        spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
        spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]
        spec.visual.map.znear = 0.01
        spec.stat.extent = 10.0
        light = spec.worldbody.add_light()
        light.pos = [0.0, 0.0, 30.0]
        light.dir = [0.3, 0.2, -1.0]
        light.castshadow = False
        spec.visual.global_.offwidth = 2048
        spec.visual.global_.offheight = 2048
        view = spec.worldbody.add_camera()     # posed per frame by `sim.preview`
        view.name = PREVIEW_CAMERA
        # priorities: rank of (restitution, friction) over all materials in use
        names = {s.material for s in scene.statics} | {p.material for p in scene.props} | \
            {c.material for c in scene.characters}
        self.mats = {}
        for group, items in (("statics", scene.statics), ("props", scene.props),
                             ("characters", scene.characters)):
            for i, it in enumerate(items):
                self.mats[it.material] = scene.material(it.material, f"{group}[{i}].material")
        keys = sorted({(m.restitution, m.friction) for m in self.mats.values()})
        self.priority = {n: keys.index((m.restitution, m.friction)) for n, m in self.mats.items()}
        del names
        self.body_names, self.body_kind, self.body_material, self.body_character = [], [], [], []
        self.mj_bodies = []   # spec bodies in trajectory order
        self.geom_owner = {}  # geom name -> trajectory index
        self.nmesh = 0

    # -------------------------------------------------------------- geoms
    def _material_geom(self, g, material: str, char: int = -1):
        m = self.mats[material]
        g.friction = [m.friction, 0.005, 0.0001]
        g.solref = list(contact_solref(m.restitution, self.spec.option.timestep,
                                       float(np.linalg.norm(self.scene.gravity))))
        g.solimp = list(CONTACT_SOLIMP)
        g.priority = self.priority[material]
        g.condim = 3
        if char < 0:
            g.contype, g.conaffinity = 1, (1 << 31) - 1
        else:
            bit = 1 << (char + 1)
            g.contype, g.conaffinity = bit, ((1 << 31) - 1) & ~bit

    def _add_mesh_asset(self, verts: np.ndarray, faces: np.ndarray | None) -> str:
        name = f"mesh{self.nmesh}"
        self.nmesh += 1
        mesh = self.spec.add_mesh()
        mesh.name = name
        mesh.uservert = np.asarray(verts, float).ravel().tolist()
        if faces is not None:
            mesh.userface = np.asarray(faces, int).ravel().tolist()
        return name

    def _load_mesh(self, shape: Mesh, fieldpath: str):
        return load_mesh(shape.path, shape.scale, fieldpath, self.base_dir)

    def _add_shape(self, body, shape, material: str, rgba, fieldpath: str, *, prop: bool,
                   mass: Optional[float] = None, density: Optional[float] = None):
        mj = self.mj
        geoms = []
        if isinstance(shape, Mesh):
            mesh = self._load_mesh(shape, f"{fieldpath}.path")
            if prop or shape.convex:
                hull = mesh.convex_hull
                verts = hull.vertices - (hull.center_mass if prop else 0.0)
                g = body.add_geom()
                g.type = mj.mjtGeom.mjGEOM_MESH
                g.meshname = self._add_mesh_asset(verts, hull.faces)
                geoms.append(g)
            else:
                if len(mesh.faces) > 20000:
                    raise SceneError(fieldpath, f"static mesh has {len(mesh.faces)} triangles; "
                                     "at most 20000 are supported (decimate it)")
                tri = mesh.vertices[mesh.faces]                     # (T, 3, 3)
                normals = mesh.face_normals                          # (T, 3)
                for t, n in zip(tri, normals):
                    verts = np.concatenate([t, t - MESH_PRISM_THICKNESS * n])
                    g = body.add_geom()
                    g.type = mj.mjtGeom.mjGEOM_MESH
                    g.meshname = self._add_mesh_asset(verts, None)
                    geoms.append(g)
        else:
            g = body.add_geom()
            if isinstance(shape, Box):
                g.type, g.size = mj.mjtGeom.mjGEOM_BOX, list(shape.half_extents)
            elif isinstance(shape, Sphere):
                g.type, g.size = mj.mjtGeom.mjGEOM_SPHERE, [shape.radius, 0, 0]
            elif isinstance(shape, Capsule):
                g.type, g.size = mj.mjtGeom.mjGEOM_CAPSULE, [shape.radius, shape.half_length, 0]
            elif isinstance(shape, Cylinder):
                g.type, g.size = mj.mjtGeom.mjGEOM_CYLINDER, [shape.radius, shape.half_length, 0]
            else:
                raise SceneError(fieldpath, f"unsupported shape {type(shape).__name__}")
            geoms.append(g)
        for g in geoms:
            self._material_geom(g, material)
            g.rgba = rgba
            if prop:
                if mass is not None:
                    g.mass = mass / len(geoms)
                else:
                    g.density = density
        return geoms

    # -------------------------------------------------------------- bodies
    def _register(self, sbody, name, kind, material, char, geoms):
        idx = len(self.body_names)
        self.body_names.append(name)
        self.body_kind.append(kind)
        self.body_material.append(material)
        self.body_character.append(char)
        self.mj_bodies.append(sbody)
        for k, g in enumerate(geoms):
            g.name = f"{name}#{k}"
            self.geom_owner[g.name] = idx

    def build(self) -> Compiled:
        bodies_h = self.populate()
        try:
            model = self.spec.compile()
        except ValueError as e:
            raise SceneError("scene", f"MuJoCo could not compile the scene: {e}") from None
        return self._finish(model, bodies_h)

    def populate(self) -> list:
        """Add every body of the scene to the spec; returns the humanoid bodies."""
        mj, scene, spec = self.mj, self.scene, self.spec
        for i, s in enumerate(scene.statics):
            b = spec.worldbody.add_body()
            b.name = s.name
            b.pos, b.quat = list(s.pos), list(s.quat)
            geoms = self._add_shape(b, s.shape, s.material, _material_rgba(scene, s.color, self.mats[s.material]),
                                    f"statics[{i}].shape", prop=False)
            self._register(b, s.name, "static", s.material, -1, geoms)
        for i, p in enumerate(scene.props):
            mat = self.mats[p.material]
            b = spec.worldbody.add_body()
            b.name = p.name
            b.pos, b.quat = list(p.pos), list(p.quat)
            j = b.add_freejoint()
            j.name = f"{p.name}#free"
            density = p.density if p.density is not None else mat.density
            geoms = self._add_shape(b, p.shape, p.material, _material_rgba(scene, p.color, mat),
                                    f"props[{i}].shape", prop=True, mass=p.mass, density=density)
            self._register(b, p.name, "prop", p.material, -1, geoms)
        bodies_h = []
        for ci, c in enumerate(scene.characters):
            hb = humanoid.build(c)
            bodies_h.append(hb)
            self._add_character(ci, c, hb)
        return bodies_h

    def _add_character(self, ci: int, c, hb: "humanoid.Body"):
        mj, spec = self.mj, self.spec
        mat = self.mats[c.material]
        rgba = _material_rgba(self.scene, c.color, mat)
        sbodies = {}
        joints_of = {}
        for j in hb.joints:
            joints_of.setdefault(j.link, []).append(j)
        for link in hb.links:
            parent = spec.worldbody if link.parent is None else sbodies[link.parent]
            b = parent.add_body()
            b.name = f"{c.name}/{link.name}"
            if link.parent is None:
                from .controller import support_height
                b.pos = [c.pos[0], c.pos[1], support_height(self.scene, c.pos[0], c.pos[1]) + hb.pelvis_height]
                b.quat = [math.cos(c.yaw / 2), 0, 0, math.sin(c.yaw / 2)]
                fj = b.add_freejoint()
                fj.name = f"{c.name}/root"
            else:
                b.pos = list(link.pos)
            b.explicitinertial = True
            b.mass = link.mass
            b.ipos = list(link.com)
            b.inertia = list(link.inertia)
            for j in joints_of.get(link.name, []):
                sj = b.add_joint()
                sj.name = f"{c.name}/{j.name}"
                sj.type = mj.mjtJoint.mjJNT_HINGE
                sj.axis = list(j.axis)
                sj.range = list(j.range)
                sj.limited = mj.mjtLimited.mjLIMITED_TRUE
                sj.damping = [humanoid.PASSIVE_DAMPING, 0.0, 0.0]
                sj.armature = humanoid.ARMATURE
                a = spec.add_actuator()
                a.name = f"{c.name}/{j.name}"
                a.target = sj.name
                a.trntype = mj.mjtTrn.mjTRN_JOINT
                a.set_to_position(kp=j.kp, kv=j.kd)
                a.forcelimited = mj.mjtLimited.mjLIMITED_TRUE
                a.forcerange = [-j.torque, j.torque]
                a.ctrllimited = mj.mjtLimited.mjLIMITED_FALSE
            geoms = []
            for k, g in enumerate(link.geoms):
                sg = b.add_geom()
                if g.kind == "capsule":
                    sg.type = mj.mjtGeom.mjGEOM_CAPSULE
                    sg.fromto = list(g.fromto)
                    sg.size = [g.size[0], 0, 0]
                elif g.kind == "sphere":
                    sg.type = mj.mjtGeom.mjGEOM_SPHERE
                    sg.size = [g.size[0], 0, 0]
                    sg.pos = list(g.pos)
                else:
                    sg.type = mj.mjtGeom.mjGEOM_BOX
                    sg.size = list(g.size)
                    sg.pos = list(g.pos)
                self._material_geom(sg, c.material, ci)
                if link.name.endswith("_hand"):
                    # frictionless hands: two light hands in frictional contact could
                    # blow up the elliptic-cone solve (seen in `brawl`)
                    sg.condim = 1
                sg.rgba = rgba
                geoms.append(sg)
            sbodies[link.name] = b
            self._register(b, f"{c.name}/{link.name}", "character", c.material, ci, geoms)

    def _finish(self, model, bodies_h) -> Compiled:
        mj = self.mj
        body_ids = np.array([sb.id for sb in self.mj_bodies], dtype=np.int64)
        geom_body = np.full(model.ngeom, -1, dtype=np.int64)
        for name, idx in self.geom_owner.items():
            geom_body[mj.mj_name2id(model, mj.mjtObj.mjOBJ_GEOM, name)] = idx
        P = len(self.scene.props)
        prop_j = [mj.mj_name2id(model, mj.mjtObj.mjOBJ_JOINT, f"{p.name}#free") for p in self.scene.props]
        C, J = len(self.scene.characters), len(humanoid.JOINT_NAMES)
        root_j = [mj.mj_name2id(model, mj.mjtObj.mjOBJ_JOINT, f"{c.name}/root") for c in self.scene.characters]
        hinge = np.array([[mj.mj_name2id(model, mj.mjtObj.mjOBJ_JOINT, f"{c.name}/{n}")
                           for n in humanoid.JOINT_NAMES] for c in self.scene.characters],
                         dtype=np.int64).reshape(C, J)
        act = np.array([[mj.mj_name2id(model, mj.mjtObj.mjOBJ_ACTUATOR, f"{c.name}/{n}")
                         for n in humanoid.JOINT_NAMES] for c in self.scene.characters],
                       dtype=np.int64).reshape(C, J)
        nl = len(humanoid.LINK_NAMES)
        char_ids = body_ids[len(self.scene.statics) + P:].reshape(C, nl)
        comp = Compiled(
            model=model, body_ids=body_ids, body_names=tuple(self.body_names),
            body_kind=tuple(self.body_kind), body_material=tuple(self.body_material),
            body_character=np.array(self.body_character, dtype=np.int64), geom_body=geom_body,
            prop_qadr=np.array([model.jnt_qposadr[j] for j in prop_j], dtype=np.int64),
            prop_dadr=np.array([model.jnt_dofadr[j] for j in prop_j], dtype=np.int64),
            prop_body=np.arange(len(self.scene.statics), len(self.scene.statics) + P),
            root_qadr=np.array([model.jnt_qposadr[j] for j in root_j], dtype=np.int64),
            root_dadr=np.array([model.jnt_dofadr[j] for j in root_j], dtype=np.int64),
            joint_qadr=model.jnt_qposadr[hinge].reshape(C, J).astype(np.int64),
            joint_dadr=model.jnt_dofadr[hinge].reshape(C, J).astype(np.int64),
            actuator_ids=act, char_body_ids=char_ids, humanoids=bodies_h)
        # initial velocities: MuJoCo's free-joint angular velocity is in the body frame
        qvel = np.zeros(model.nv)
        for p, dadr in zip(self.scene.props, comp.prop_dadr):
            R = _quat_to_mat(np.asarray(p.quat) / np.linalg.norm(p.quat))
            qvel[dadr:dadr + 3] = p.linvel
            qvel[dadr + 3:dadr + 6] = R.T @ np.asarray(p.angvel, float)
        comp.init_qpos = model.qpos0.copy()
        comp.init_qvel = qvel
        return comp


def compile_scene(scene: Scene, base_dir: Optional[str | Path] = None) -> Compiled:
    """Compile ``scene`` into a MuJoCo model (see `Compiled`). Raises SceneError
    for unknown materials and missing or unreadable meshes, naming the field."""
    return _Builder(scene, base_dir).build()


def scene_spec(scene: Scene, base_dir: Optional[str | Path] = None):
    """The uncompiled `mujoco.MjSpec` of ``scene`` (same options, materials and
    bodies as `compile_scene`), e.g. to add a test-only joint."""
    b = _Builder(scene, base_dir)
    b.populate()
    return b.spec


def set_frame(compiled: Compiled, data, traj, frame_index: int) -> None:
    """Pose every body of ``data`` from trajectory frame ``frame_index`` (props from
    their pose, characters from root pose + joint angles), then `mj_kinematics`."""
    import mujoco
    f = int(frame_index)
    qpos = data.qpos
    for k, (adr, b) in enumerate(zip(compiled.prop_qadr, compiled.prop_body)):
        qpos[adr:adr + 3] = traj.body_pos[f, b]
        qpos[adr + 3:adr + 7] = traj.body_quat[f, b]
    if len(compiled.root_qadr):
        nstat_prop = len(compiled.prop_body) + int(np.sum(np.array(compiled.body_kind) == "static"))
        nl = len(humanoid.LINK_NAMES)
        for c, adr in enumerate(compiled.root_qadr):
            pelvis = nstat_prop + c * nl
            qpos[adr:adr + 3] = traj.body_pos[f, pelvis]
            qpos[adr + 3:adr + 7] = traj.body_quat[f, pelvis]
        qpos[compiled.joint_qadr] = traj.joint_angles[f]
    mujoco.mj_kinematics(compiled.model, data)


class MujocoEngine(Engine):
    """`Engine` on MuJoCo (MjSpec-compiled; see module docstring)."""

    name = "mujoco"

    def __init__(self, scene: Scene, base_dir=None):
        super().__init__(scene, base_dir)
        import mujoco
        self._mj = mujoco
        self.compiled = c = compile_scene(scene, base_dir)
        self.model = m = c.model
        self.data = d = mujoco.MjData(m)
        d.qpos[:] = c.init_qpos
        d.qvel[:] = c.init_qvel
        # standing pose: actuators hold 0
        self._nstat = int(sum(k == "static" for k in c.body_kind))
        self._static_mask = np.array([k == "static" for k in c.body_kind])
        self._ids = c.body_ids
        self._ids_list = c.body_ids.tolist()
        self._gains: dict = {}                # character -> (gains key, kd, kp) last written
        self._dyn_ids = c.body_ids[~self._static_mask]
        self._rootid = m.body_rootid[c.body_ids]
        self._pelvis = c.char_body_ids[:, 0] if len(c.char_body_ids) else np.zeros(0, np.int64)
        self._masses = np.where(self._static_mask, 0.0, m.body_mass[c.body_ids])
        self._geom_body = c.geom_body
        self._badqacc = 0
        self._root_lin = c.root_dadr[:, None] + np.arange(3)    # (C, 3) qvel of the roots' velocity
        # per-step hot path: cached views of MjData buffers (they never move) and
        # geom lookup tables, so a step costs a handful of vectorised numpy calls
        self._qvel = d.qvel
        self._xfrc = d.xfrc_applied
        self._xipos = d.xipos
        self._qfrc = d.qfrc_applied
        self._warnings = d.warning
        self._badqacc_id = int(mujoco.mjtWarning.mjWARN_BADQACC)
        self._efc_rows = np.arange(3)
        C = len(c.char_body_ids)
        chars = c.body_character[np.maximum(c.geom_body, 0)]
        self._geom_char = np.where((c.geom_body >= 0) & (chars >= 0), chars, C)   # (ngeom,) C = none
        self._foot_src = None                 # is_foot array the geom code table was built for
        self._nchar = C
        self._has_frictionless = bool((m.geom_condim < 3).any())
        self._forces_dirty = True
        mujoco.mj_forward(m, d)
        self._contacts = self._extract_contacts(with_forces=False)
        self.check_initial_overlap()
        # split stepping: after mj_step1 the kinematics match the state (see step)
        mujoco.mj_step1(m, d)

    # ------------------------------------------------------------- description
    @property
    def version(self) -> str:
        return f"mujoco {self._mj.__version__}"

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def body_names(self):
        return self.compiled.body_names

    @property
    def body_kind(self):
        return self.compiled.body_kind

    @property
    def body_material(self):
        return self.compiled.body_material

    @property
    def body_character(self):
        return self.compiled.body_character

    @property
    def body_mass(self):
        return self._masses.copy()

    # ------------------------------------------------------------- state
    def body_states(self):
        d = self.data
        ids = self._ids
        pos = d.xpos[ids]                 # fancy indexing copies
        quat = d.xquat[ids]
        cvel = d.cvel[ids]
        ang = cvel[:, :3]
        # cvel's linear part is the velocity of the point subtree_com[root] moving with the body
        lin = cvel[:, 3:] + _cross(ang, pos - d.subtree_com[self._rootid])
        lin[self._static_mask] = 0.0
        ang = np.where(self._static_mask[:, None], 0.0, ang)
        return pos, quat, lin, ang

    def joint_states(self):
        c, d = self.compiled, self.data
        return d.qpos[c.joint_qadr].copy(), d.qvel[c.joint_dadr].copy()

    def root_states(self):
        # a root link's free joint sits at its origin: its qvel's linear part is the
        # origin's world velocity (fancy indexing copies)
        d, ids = self.data, self._pelvis
        return d.xpos[ids], d.xquat[ids], d.qvel[self._root_lin], d.cvel[ids, :3]

    def link_orientations(self, bodies):
        ids = self._ids[bodies]
        return self.data.xquat[ids], self.data.cvel[ids, :3]

    def angular_momentum(self):
        self._mj.mj_subtreeVel(self.model, self.data)
        return self.data.subtree_angmom[self._pelvis].copy()

    def com_states(self):
        self._mj.mj_subtreeVel(self.model, self.data)
        ids = self._pelvis
        return self.data.subtree_com[ids].copy(), self.data.subtree_linvel[ids].copy()

    def contacts(self) -> Contacts:
        return self._contacts

    def _extract_contacts(self, with_forces: bool) -> Contacts:
        """The contacts in ``d.contact`` read in one vectorised pass: body pair,
        point, normal, depth, approach speed and (``with_forces``, valid between
        mj_step2 and the next mj_step1) the normal and friction force from the
        contact's constraint rows in ``efc_force``."""
        d = self.data
        n = d.ncon
        if n == 0:
            return _EMPTY
        con = d.contact
        adr = con.efc_address
        geom, pos, normal, dist = con.geom, con.pos, con.frame[:, :3], con.dist
        keep = None
        if np.minimum.reduce(adr) < 0:      # contacts inside the margin without a constraint
            keep = adr >= 0
            adr, geom, pos, normal, dist = adr[keep], geom[keep], pos[keep], normal[keep], dist[keep]
            if adr.size == 0:
                return _EMPTY
        else:
            pos, normal = pos.copy(), normal.copy()
        body = self._geom_body[geom]                                   # (n, 2)
        if with_forces:
            # rows of a contact: normal, then two tangential (elliptic cone, condim 3)
            rows = d.efc_force.take(adr[:, None] + self._efc_rows, mode="clip")   # (n, 3)
            fn = rows[:, 0].copy()
            ft = np.sqrt(rows[:, 1] * rows[:, 1] + rows[:, 2] * rows[:, 2])
            # condim 1 (hands): a normal row only. Contact rows come last in efc and
            # number 3 per contact when every contact has condim 3
            if self._has_frictionless and (keep is not None or d.nefc - int(adr[0]) != 3 * adr.size):
                dim = con.dim if keep is None else con.dim[keep]
                ft[dim < 3] = 0.0
        else:
            fn = ft = np.zeros(adr.size)
        vn = -d.efc_vel[adr]
        return Contacts.of(body, pos, normal, fn, ft, vn, -dist)

    # ------------------------------------------------------------- control
    def set_pd_targets(self, character, q_target, kp, kd, qd_target=None):
        m, act = self.model, self.compiled.actuator_ids[character]
        # position actuator: force = kp*ctrl - kp*q - kv*qd; a velocity target is
        # folded into ctrl (kp*(q* + kd/kp qd*)) so the PD stays exact.
        kp = np.asarray(kp, float)
        kd = np.asarray(kd, float)
        key = kp.tobytes() + kd.tobytes()      # cheaper than comparing arrays
        last = self._gains.get(character)
        if last is None or last[0] != key:
            m.actuator_gainprm[act, 0] = kp
            m.actuator_biasprm[act, 1] = -kp
            m.actuator_biasprm[act, 2] = -kd
            pos = kp > 0
            # kd (kp > 0 only) and kp (1 where 0) for the velocity term kd qd* / kp
            last = (key, np.where(pos, kd, 0.0), np.where(pos, kp, 1.0))
            self._gains[character] = last
        ctrl = np.asarray(q_target, float)
        if qd_target is not None:
            ctrl = ctrl + last[1] * qd_target / last[2]
        self.data.ctrl[act] = ctrl

    def set_pd_gains(self, character, kp, kd):
        """Gains only (targets unchanged)."""
        m, act = self.model, self.compiled.actuator_ids[character]
        self._gains.pop(character, None)
        m.actuator_gainprm[act, 0] = kp
        m.actuator_biasprm[act, 1] = -np.asarray(kp, float)
        m.actuator_biasprm[act, 2] = -np.asarray(kd, float)

    def apply_joint_torques(self, character, tau):
        self.data.qfrc_applied[self.compiled.joint_dadr[character]] += tau
        self._forces_dirty = True

    def apply_force(self, body, force, torque=None, point=None):
        bid = self._ids_list[body]
        fx, fy, fz = float(force[0]), float(force[1]), float(force[2])
        xf = self._xfrc[bid]
        # accumulate in floats and write the row once (numpy scalar updates cost more)
        w0, w1, w2, w3, w4, w5 = xf.tolist()
        w0 += fx
        w1 += fy
        w2 += fz
        # xfrc_applied acts at the body's centre of mass (xipos): add r x F
        if point is not None:
            cx, cy, cz = self._xipos[bid].tolist()
            rx, ry, rz = float(point[0]) - cx, float(point[1]) - cy, float(point[2]) - cz
            w3 += ry * fz - rz * fy
            w4 += rz * fx - rx * fz
            w5 += rx * fy - ry * fx
        if torque is not None:
            w3 += float(torque[0])
            w4 += float(torque[1])
            w5 += float(torque[2])
        xf[:] = (w0, w1, w2, w3, w4, w5)
        self._forces_dirty = True

    def apply_forces(self, bodies, forces, torques=None, points=None):
        ids = self._ids[bodies]
        forces = np.asarray(forces, float)
        tq = np.zeros_like(forces) if torques is None else np.array(torques, float)
        if points is not None:
            # xfrc_applied acts at the body's centre of mass (xipos): add r x F
            r = points - self.data.xipos[ids]
            tq[:, 0] += r[:, 1] * forces[:, 2] - r[:, 2] * forces[:, 1]
            tq[:, 1] += r[:, 2] * forces[:, 0] - r[:, 0] * forces[:, 2]
            tq[:, 2] += r[:, 0] * forces[:, 1] - r[:, 1] * forces[:, 0]
        np.add.at(self._xfrc, ids, np.concatenate([forces, tq], axis=1))
        self._forces_dirty = True

    def step(self):
        mj, m, d = self._mj, self.model, self.data
        mj.mj_step2(m, d)
        # contact forces of this step are valid between mj_step2 and the next mj_step1
        self._contacts = self._extract_contacts(with_forces=True)
        if self._forces_dirty:
            self._xfrc[:] = 0.0
            self._qfrc[:] = 0.0
            self._forces_dirty = False
        mj.mj_step1(m, d)

    def native_stepper(self, controller=None):
        nat = native_module()
        if nat is None or (controller is not None and controller.C > nat.MAXC):
            return None
        return NativeStepper(self, controller, nat)

    def geom_codes(self, is_foot) -> np.ndarray:
        """(ngeom,) int64 code of each geom for the support gate: its character
        (0..C-1), C + its character for a foot geom (``is_foot``: (B,) bool per
        trajectory body), 2C for a geom of no character."""
        if is_foot is not self._foot_src:
            C = self._nchar
            gb = self._geom_body
            foot_geom = (gb >= 0) & is_foot[np.maximum(gb, 0)] & (self._geom_char < C)
            self._geom_code = np.where(foot_geom, C + self._geom_char, np.where(self._geom_char < C,
                                                                                self._geom_char, 2 * C))
            self._foot_src = is_foot
        return self._geom_code

    def touching_characters(self, is_foot):
        # after mj_step1, d.contact holds exactly the contacts the next step resolves.
        # A character's links never collide with each other (contype/conaffinity), so
        # every contact of a character geom is with a body that is not its own.
        d = self.data
        C = self._nchar
        if not d.ncon:
            return np.zeros(C, bool), np.zeros(C, bool)
        hit = np.zeros(2 * C + 1, bool)
        hit[self.geom_codes(is_foot)[d.contact.geom]] = True
        foot = hit[C:2 * C]
        return hit[:C] | foot, foot

    def check_step(self):
        # cheap per-step test: the largest |qvel| is finite and small (NaN fails the
        # comparison) and MuJoCo raised no bad-acceleration warning (it resets the
        # state on one); only then the per-body check that names the body
        v = np.maximum.reduce(np.abs(self._qvel))
        w = self._warnings[self._badqacc_id].number
        if v <= QVEL_CHECK and w == self._badqacc:
            return None
        d = self.data
        if w > self._badqacc or not (np.isfinite(d.qvel).all() and np.isfinite(d.qpos).all()):
            self._badqacc = w
            pos, _, lin, ang = self.body_states()
            msg = self.check_state(pos, lin, ang)
            return msg or "MuJoCo reported a non-finite acceleration (state reset)"
        pos, _, lin, ang = self.body_states()
        return self.check_state(pos, lin, ang)


# --------------------------------------------------------------------------- native loop


#: Set PHYSCUT_NATIVE_CONTROL=0 to keep the control updates in Python (the per-step
#: loop still runs in C).
NATIVE_CONTROL_ENV = "PHYSCUT_NATIVE_CONTROL"


def native_module():
    """`sim._native` when it is built for the MuJoCo in use and not switched off by
    ``PHYSCUT_NATIVE=0``; else None (the rollout then steps in Python)."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None
    try:
        import mujoco
        from . import _native
    except ImportError:
        return None
    return _native if _native.header_version() == mujoco.mj_version() else None


class NativeStepper:
    """Runs physics steps of a `MujocoEngine` (and its `Controller`'s per-step gate
    and assist) in C: `sim._native`, the same operations as `Controller.before_step`
    / `after_step` and `MujocoEngine.step` / `check_step`, so a rollout is
    bit-identical either way. Python keeps the control updates (`Controller.update`),
    scripted kicks and pushes (applied before a one-step `run`) and the recorder.

    The controller's per-step state is mirrored in ``cs`` (C, NCOL): `load` copies
    the control update's outputs in, `measured` hands the support measurements back
    before the next update, `end_frame` the frame's support flags and mean assist.
    """

    # columns of cs (sim/_native.c)
    ASSIST_ON, FORCE, YAW, SPINNING, SPIN, COM, COMV, PUSH_ON, PUSH_POINT = 0, 1, 4, 6, 7, 10, 13, 16, 17
    MU, FN, FT, COM_HEIGHT, FRAME_FORCE, FRAME_SUPPORT, FOOT_TOUCH = 20, 21, 22, 23, 24, 27, 28
    ROT_INERTIA, PELVIS, TORSO = 29, 30, 31
    # entries of par
    T_UPDATE, DT, KP_ROT, KD_ROT, FOOT_LEVER, PUSH_POSE_WEIGHT = 0, 1, 2, 3, 4, 5
    CONE_INCLUDES_ASSIST, TORQUE_FROM_FRICTION, MAX_QVEL, FRAME_STEPS = 6, 7, 8, 9

    def __init__(self, engine: "MujocoEngine", controller=None, module=None):
        nat = module or native_module()
        if nat is None:
            raise RuntimeError("sim._native is not available")
        self.engine, self.ctrl = engine, controller
        m, d = engine.model, engine.data
        B = len(engine.body_names)
        C = controller.C if controller is not None else 0
        self.C = C
        self.cs = np.zeros((C, nat.NCOL))
        self.par = np.zeros(nat.NPARAM)
        self.par[self.DT] = engine.timestep
        self.par[self.MAX_QVEL] = QVEL_CHECK
        gb = np.asarray(engine.compiled.geom_body, np.int64)
        if controller is not None:
            from . import controller as K
            self.par[[self.KP_ROT, self.KD_ROT, self.FOOT_LEVER, self.PUSH_POSE_WEIGHT,
                      self.CONE_INCLUDES_ASSIST, self.TORQUE_FROM_FRICTION]] = (
                K.KP_ROT, K.KD_ROT, K.FOOT_LEVER, K.PUSH_POSE_WEIGHT,
                float(K.CONE_INCLUDES_ASSIST), float(K.TORQUE_FROM_FRICTION))
            code = np.asarray(engine.geom_codes(controller.is_foot), np.int64)
            foot_char = np.asarray(controller._foot_char, np.int64)
            mu_table = np.ascontiguousarray(controller._mu_table, float).reshape(C, B)
            self.cs[:, self.ROT_INERTIA] = controller.rot_inertia
            self.cs[:, self.PELVIS] = engine._ids[controller.pelvis]
            self.cs[:, self.TORSO] = engine._ids[controller._torque_body]
            self.cs[:, self.MU] = controller._mu
            self.cs[:, self.FN] = controller._fn
            self.cs[:, self.FT] = controller._ft
        else:
            code = np.zeros(m.ngeom, np.int64)
            foot_char = np.zeros(B, np.int64)
            mu_table = np.zeros((0, B))
        body_char = np.asarray(engine.body_character, np.int64)
        self._arrays = (code, gb, foot_char, body_char, mu_table)   # kept alive with the stepper
        self._h = nat.stepper(m, d, m._address, d._address, C, B, self.cs, self.par,
                              code, gb, foot_char, body_char, mu_table)
        self.ROW = nat.ROW
        self._summaries_in_c = False         # set by bind_recorder
        #: True when the control updates run in C too (`Controller.update` is then
        #: not called from Python; see `_export_control`)
        self.control = False
        if controller is not None and os.environ.get(NATIVE_CONTROL_ENV, "1") != "0":
            self._export_control(nat)

    _SEG_KINDS = {"hold": 0, "move": 1, "turn": 2, "flight": 3}
    _OV_KINDS = {"punch": 1, "kick": 2, "hit": 3, "crouch": 4, "land": 5, "push": 6, "fall": 7,
                 "get_up": 8, "flight": 9}

    def _export_control(self, nat) -> None:
        """Hand the controller's plans, bodies and constants to C as tables (column
        layouts in sim/_native.c, "control" section) so that the control update runs
        there too. Python keeps planning (`plan_character`: choreography errors,
        gait tables) and everything else."""
        from . import controller as K
        from . import humanoid
        k, eng = self.ctrl, self.engine
        C, NJ, MAXJ = k.C, K.NJ, nat.MAXJ
        if K.PUSH_FREEZE_FEET or K.TORQUE_BODY != "torso" or NJ > MAXJ:
            return
        if any(len(p.overlays) > nat.MAXOV for p in k.plans):
            return                                  # more than C's fixed table holds
        names = list(eng.body_names)
        chars = [c.name for c in self.ctrl.scene.characters]
        ids = eng._ids
        K0 = 20                                     # first column of kp0 in cc
        cc = np.zeros((C, nat.KCOL))
        ds = np.zeros((C, nat.DCOL))
        segs, gtab, ovs, jumps = [], [], [], []
        nl = len(humanoid.LINK_NAMES)
        for ci, (plan, body) in enumerate(zip(k.plans, k.bodies)):
            if not plan.segments:
                return
            row = cc[ci]
            row[:20] = (k.mass[ci], k._thigh_list[ci], k._shin_list[ci], k._ankle_list[ci],
                        k._hip_off[ci], body.pelvis_height, body.scale,
                        body.links[1].pos[2] + body.links[3].pos[2], body.links[3].pos[1],
                        ids[k.pelvis[ci]], eng.compiled.root_dadr[ci],
                        ids[k._feet_bodies[ci][0]], ids[k._feet_bodies[ci][1]],
                        len(segs), len(plan.segments), len(ovs), len(plan.overlays),
                        len(jumps), len(plan.jumps), ids[k.torso[ci]])
            row[K0:K0 + NJ] = k.kp0[ci]
            row[K0 + MAXJ:K0 + MAXJ + NJ] = k.kd0[ci]
            lo, hi = k._q_range[ci]
            row[K0 + 2 * MAXJ:K0 + 2 * MAXJ + NJ] = lo
            row[K0 + 3 * MAXJ:K0 + 3 * MAXJ + NJ] = hi
            row[K0 + 4 * MAXJ:K0 + 4 * MAXJ + NJ] = eng.compiled.actuator_ids[ci]
            ds[ci, :6] = (k._z_ref[ci], k._sway[ci][0], k._sway[ci][1], k._gait_leg_height[ci],
                          k._q_time[ci], float(k._ragdoll[ci]))
            ds[ci, 6:6 + NJ] = k._q_prev[ci]
            for sg in plan.segments:
                r = np.zeros(nat.SCOL)
                r[:11] = (self._SEG_KINDS[sg.kind], sg.t0, sg.t1, sg.p0[0], sg.p0[1], sg.p1[0], sg.p1[1],
                          sg.yaw0, sg.yaw1, sg.ground, {None: 0, "walk": 1, "run": 2}[sg.gait])
                r[11:21] = K._trapezoid(sg) if sg.kind == "move" else 0.0
                if sg.com0 is not None:
                    r[21:24] = sg.com0
                if sg.vel0 is not None:
                    r[24:27] = sg.vel0
                r[27:32] = sg.ends
                if sg.kind == "move":
                    g = k._gait(ci, sg)
                    r[32:43] = (len(gtab), len(g._s_list), g.duty, g.lift, g.sway, g.L,
                                g.direction_xy[0], g.direction_xy[1], g.phase_end, float(g.run), g.scale)
                    gtab.extend(g._s_list)
                    gtab.extend(g._phase_list)
                segs.append(r)
            for o in plan.overlays:
                target, chest, jump = 0, 0, -1
                if o.kind in ("punch", "kick"):
                    if "/" in o.target:
                        target = ids[names.index(o.target)]
                    else:
                        target, chest = ids[k.torso[chars.index(o.target)]], 1
                if o.kind == "push":
                    jump = next(i for i, j in enumerate(plan.jumps) if abs(j[0] - o.t1) < 1e-9)
                ovs.append((self._OV_KINDS[o.kind], o.t0, o.t1, 0.0 if o.side == "left" else 1.0,
                            target, chest, jump))
            for t_off, t_land, v, land, z0 in plan.jumps:
                jumps.append((t_off, t_land, *v, 0.0 if land is None else 1.0,
                              *((0.0, 0.0, 0.0) if land is None else land), z0))
        kpar = np.zeros(nat.NKPAR)
        kpar[:29] = (K.G, K.KP_XY, K.KD_XY, K.KP_Z, K.KD_Z, K.MAX_VERTICAL_ASSIST,
                     K.PUSH_VERTICAL_ASSIST, K.CROUCH_BACK, K.CROUCH_DEPTH, K.LAND_DEPTH,
                     K.PUSH_POINT, K.PUSH_PRESS, K.PUSH_LEG_STIFFNESS, K.PUSH_LEAD, K.FLIGHT_REACH,
                     K.FLIGHT_TRUNK, K.LAND_TIME, K.LAND_EARLY, K.LAND_BRAKE_TIME,
                     K.LAND_VERTICAL_ASSIST, K.WEIGHT_SHARE, K.GAIT_CROUCH, *K.RUN_STEP,
                     K.TOE_LEVER, K.SETTLE_TIME, K.CONTROL_DECIMATION, NJ)
        kpar[29:35], kpar[35:41] = K.LEG["left"], K.LEG["right"]
        kpar[41:46], kpar[46:51] = K.ARM["left"], K.ARM["right"]
        kpar[51:54] = (K.AB_FLEX, K.AB_TWIST, K.NECK_FLEX)
        self._control_arrays = (cc, ds, np.array(segs, float).reshape(-1, nat.SCOL),
                                np.array(gtab, float), np.array(ovs, float).reshape(-1, nat.OCOL),
                                np.array(jumps, float).reshape(-1, nat.JCOL), kpar)
        self._h.set_control(*self._control_arrays)
        self.control = True

    # ------------------------------------------------------------ controller state
    def load(self) -> None:
        """Copy the last control update's per-step inputs into ``cs``."""
        k = self.ctrl
        par, cs = self.par, self.cs
        par[self.T_UPDATE] = k._t_update
        rows = []
        for ci in range(self.C):
            pp = k._push_point[ci]
            rows.append([1.0 if k._assist_on[ci] else 0.0, *k._step_force[ci], *k._yaw_ref[ci],
                         1.0 if k._spinning[ci] else 0.0, *k._spin_list[ci], *k._com_list[ci],
                         *k._comv_list[ci], 0.0 if pp is None else 1.0,
                         *((0.0, 0.0, 0.0) if pp is None else pp)])
        cs[:, :self.MU] = rows
        cs[:, self.COM_HEIGHT] = k._com_height_list

    def measured(self) -> None:
        """Hand the last step's support measurements (friction, normal and friction
        force of the feet) and foot contact back to the controller."""
        k = self.ctrl
        mu, fn, ft, _h, _f0, _f1, _f2, _s, touch = self.cs[:, self.MU:self.FOOT_TOUCH + 1].T.tolist()
        k._mu, k._fn, k._ft = mu, fn, ft
        k._foot_touch = np.array(touch) > 0

    def end_frame(self) -> None:
        """Move the frame's support flags, summed assist and step count into the
        controller (for `Controller.frame_summary`)."""
        k, cs = self.ctrl, self.cs
        if k is None or self._summaries_in_c:
            return
        block = cs[:, self.FRAME_FORCE:self.FRAME_SUPPORT + 1]
        rows = block.tolist()
        k._frame_support |= block[:, 3] > 0
        for ff, (fx, fy, fz, _s) in zip(k._frame_force_list, rows):
            ff[0] += fx
            ff[1] += fy
            ff[2] += fz
        k._frame_steps += int(self.par[self.FRAME_STEPS])
        block[:] = 0.0
        self.par[self.FRAME_STEPS] = 0.0

    def bind_recorder(self, rec) -> None:
        """Let C write the recorder's per-frame samples (`Recorder.sampler`): body
        poses and velocities, joint angles, centres of mass -- the same values as
        `MujocoEngine.body_states` / `joint_states` / `com_states` -- and the frame's
        support flags and mean assist (`Controller.frame_summary`)."""
        eng = self.engine
        c = eng.compiled
        C = self.C
        J = len(eng.joint_names)
        self._rec_arrays = (
            np.ascontiguousarray(eng._ids, np.int64), np.ascontiguousarray(eng._rootid, np.int64),
            np.ascontiguousarray(eng._static_mask, np.int64),
            np.ascontiguousarray(c.joint_qadr, np.int64).reshape(C * J),
            np.ascontiguousarray(eng._pelvis, np.int64).reshape(C))
        self._h.bind(rec.F, J, rec.pos, rec.quat, rec.linvel, rec.angvel, rec.jq.reshape(-1),
                     rec.com.reshape(-1), rec.comv.reshape(-1), *self._rec_arrays,
                     rec.support.reshape(-1), rec.assist.reshape(-1))
        rec.sampler = self._h.sample
        self._summaries_in_c = True

    # ------------------------------------------------------------ stepping
    def run(self, step0: int, n: int) -> tuple[int, bool]:
        """Take ``n`` physics steps (``step0`` = steps done before). Returns (steps
        taken, fault): fault means the last step failed the quick divergence test,
        and `MujocoEngine.check_step` should look closer."""
        done, fault = self._h.run(step0, n)
        self.engine._forces_dirty = False
        return done, bool(fault)

    def take(self) -> tuple[np.ndarray, Contacts]:
        """The contacts of the steps run since the last call: (step of each row (n,)
        int64, `Contacts`)."""
        rows = np.frombuffer(self._h.take(), np.float64).reshape(-1, self.ROW)
        if not len(rows):
            return np.zeros(0, np.int64), _EMPTY
        return rows[:, 0].astype(np.int64), Contacts.of(
            rows[:, 1:3].astype(np.int64), rows[:, 3:6], rows[:, 6:9], rows[:, 9], rows[:, 10],
            rows[:, 11], rows[:, 12])
