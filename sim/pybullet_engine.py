"""PyBullet backend: compile a `scenes.Scene` into a private PyBullet world and step it.

`PybulletEngine` implements `sim.engine.Engine` with the same body order and
conventions as the MuJoCo backend, so the stepping loop, controller and recorder
in `sim/` run unchanged on it.

Modelling choices (and why):
    * every engine instance owns its own ``p.connect(p.DIRECT)`` client; every call
      passes that client id, so two engines never share state. Overlapping pairs are
      processed in a deterministic order (``deterministicOverlappingPairs``).
    * statics are fixed multibodies (mass 0), one per scene static; a non-convex
      static mesh is a concave triangle mesh (``GEOM_MESH`` with indices), a convex
      one its hull. Props are single-link multibodies whose frame sits at the centre
      of mass (a convex mesh prop is re-centred on its hull's centre of mass, as in
      the MuJoCo backend); mass and the full inertia tensor are set explicitly
      (PyBullet's own estimate for hulls is a bounding box).
    * contacts: Bullet treats contacts within the breaking threshold as
      "speculative" and lets the solver close the gap in one step; with
      restitution that swallows most of a bounce (a rubber ball kept e = 0.57 of
      0.8). We therefore process only touching contacts
      (``contactProcessingThreshold = 0``) and use a small contact ERP
      (`CONTACT_ERP`) so penetration recovery adds little energy: measured bounce
      height ratios are within 1.5 % of e^2 for e in [0.3, 0.8] at 960 Hz, and
      stacks stay put (tests/test_pybullet_physics.py). Reported contacts are the
      touching ones; the normal is negated to point from body a to body b, and the
      approach speed comes from the bodies' velocities before the step.
    * materials: Bullet combines the two bodies' coefficients by multiplication
      (mu = mu_a mu_b, e = e_a e_b), whereas physcut's rule (`pair_material`, shared
      with MuJoCo) lets the material with the higher restitution govern. Each
      (static/dynamic, material) gets factors fitted in log space (see
      `material_factors`): with one static material every static-dynamic pair is
      exact, and so is everything when one material moves; otherwise
      dynamic-dynamic pairs are approximated without ever bouncing more than the
      rule. The fit is reported in ``material_fit`` (and in the engine's `extra`
      notes).
    * characters: the humanoid MJCF of `sim.humanoid` through ``loadMJCF`` (one
      floating-base multibody; each hinge moves an intermediate link of the
      reader's, the named links keep their frames). The reader recomputes inertia,
      so masses and inertias are set again from `sim.humanoid.build`; the model's
      joint armature becomes the rotational inertia of the intermediate links. A
      character's links do not collide with each other (as in MuJoCo). The joint
      PD runs in Python every step as a whole-body, contact-aware *stable PD*
      (see `PybulletEngine._joint_torques`); passive joint damping is part of it.
      Airborne, the centre of mass follows gravity frame by frame within about
      0.3 m/s^2 at 480 Hz (0.9 while the body spins at 20+ rad/s): Bullet
      integrates in generalised coordinates, an error proportional to the step
      (MuJoCo's is of the same size).
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
from typing import Optional

import numpy as np

from scenes import Box, Capsule, Cylinder, Mesh, Scene, SceneError, Sphere

from . import humanoid
from .engine import Contacts, Engine, pair_material

#: Solver iterations per step (stacks of dominoes and bowling pins need many).
SOLVER_ITERATIONS = 100
#: Error reduction of contact penetration per step; small so that position
#: recovery after an impact adds little kinetic energy (see module docstring).
CONTACT_ERP = 0.02
#: Relative normal speed (m/s) below which a contact does not bounce.
RESTITUTION_VELOCITY_THRESHOLD = 0.05
#: Physics steps between updates of a character's joint-space inertia (it changes
#: slowly with the pose; computing it costs about two physics steps).
MASS_MATRIX_INTERVAL = 4
#: Mass (kg) given to the reader's intermediate hinge links (see `_load_character`).
HINGE_LINK_MASS = 1e-3
#: Floors for fitting coefficients in log space (0 has no logarithm).
_FRICTION_FLOOR = 1e-3
_RESTITUTION_FLOOR = 1e-3
#: Weight of a static-dynamic material pair relative to a dynamic-dynamic pair.
_STATIC_PAIR_WEIGHT = 25.0


# ----------------------------------------------------------------------------- helpers
def _xyzw(q) -> list[float]:
    w, x, y, z = q
    return [float(x), float(y), float(z), float(w)]


def _wxyz(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([w, x, y, z], float)


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) wxyz quaternions."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _rows(rows, n: int, width: int) -> np.ndarray:
    """(n, width) float array from an iterable of n flat tuples (twice as fast as
    np.array on the list)."""
    return np.fromiter(itertools.chain.from_iterable(rows), float, count=n * width).reshape(n, width)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of (..., 3) arrays (np.cross is slow on small arrays)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) vectors by (..., 4) wxyz unit quaternions."""
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def _matrix_to_quat(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def material_factors(static: set[str], dynamic: set[str], mats: dict) -> tuple[dict, dict, dict]:
    """Per-body (friction, restitution) factors for Bullet's product rule.

    Bullet combines coefficients as f_a * f_b; physcut's rule is `pair_material`.
    Factors are chosen per (role, material), role "static" or "dynamic", since
    statics only ever meet dynamic bodies. With one static material s every
    static-dynamic pair is matched exactly (f_d = F_sd / f_s) and the one free
    factor f_s is fitted to the dynamic-dynamic pairs (least squares in log space);
    for restitution f_s is raised where needed so that no dynamic pair bounces
    more than its rule value (the fit errs towards losing energy, never gaining
    it). With several static materials all pairs are fitted together (static pairs
    weighted `_STATIC_PAIR_WEIGHT` times more), then restitution is scaled down
    uniformly until no pair exceeds its rule value.

    Returns (friction factors, restitution factors, pair targets), the factors keyed
    by ("static" | "dynamic", material), the targets by such key pairs -> (F, E).
    """
    S = sorted(("static", m) for m in static)
    D = sorted(("dynamic", m) for m in dynamic)
    pairs, weights = {}, {}
    for a in S:
        for b in D:
            pairs[(a, b)] = pair_material(mats[a[1]], mats[b[1]])
            weights[(a, b)] = _STATIC_PAIR_WEIGHT
    dyn_pairs = [(a, b) for i, a in enumerate(D) for b in D[i:]]
    for a, b in dyn_pairs:
        pairs[(a, b)] = pair_material(mats[a[1]], mats[b[1]])
        weights[(a, b)] = 1.0
    factors = []
    for which in (0, 1):
        floor = (_FRICTION_FLOOR, _RESTITUTION_FLOOR)[which]
        target = {k: math.log(max(v[which], floor)) for k, v in pairs.items()}
        if len(S) <= 1:
            ys = 0.0
            base = {d: target[(S[0], d)] if S else 0.0 for d in D}   # y_d = base_d - y_s
            # dynamic pair (a, b): y_a + y_b = base_a + base_b - 2 y_s = target
            need = [(base[a] + base[b] - target[(a, b)]) / 2 for a, b in dyn_pairs]
            if S and need:
                ys = float(np.mean(need))
                if which == 1:
                    ys = max(ys, max(need))
            elif not S:
                base = {d: target[(d, d)] / 2 for d in D}
            y = {d: base[d] - ys for d in D}
            for k in S:
                y[k] = ys
        else:
            names = S + D
            col = {n: i for i, n in enumerate(names)}
            keys = sorted(pairs)
            A = np.zeros((max(len(keys), 1), len(names)))
            for r, (a, b) in enumerate(keys):
                A[r, col[a]] += 1.0
                A[r, col[b]] += 1.0
            w = np.sqrt([weights[k] for k in keys] or [1.0])
            rhs = np.array([target[k] for k in keys] or [0.0]) * w
            sol = np.linalg.lstsq(A * w[:, None], rhs, rcond=None)[0]
            y = {n: float(sol[col[n]]) for n in names}
            if which == 1 and keys:
                excess = max(y[a] + y[b] - target[(a, b)] for a, b in keys)
                if excess > 0:
                    y = {n: v - excess / 2 for n, v in y.items()}
        factors.append({n: math.exp(v) for n, v in y.items()})
    return factors[0], factors[1], pairs


# ----------------------------------------------------------------------------- engine
class PybulletEngine(Engine):
    """`Engine` on PyBullet (see module docstring)."""

    name = "pybullet"

    def __init__(self, scene: Scene, base_dir=None):
        super().__init__(scene, base_dir)
        import pybullet
        self._p = p = pybullet
        self._cid = p.connect(p.DIRECT)
        if self._cid < 0:
            raise RuntimeError("PyBullet could not create a physics client")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------- compilation
    def _build(self):
        p, cid, scene = self._p, self._cid, self.scene
        self._dt = 1.0 / scene.physics_hz
        self._nstep = 0
        p.setGravity(*scene.gravity, physicsClientId=cid)
        p.setPhysicsEngineParameter(fixedTimeStep=self._dt, numSubSteps=0,
                                    numSolverIterations=SOLVER_ITERATIONS,
                                    deterministicOverlappingPairs=1, contactERP=CONTACT_ERP,
                                    restitutionVelocityThreshold=RESTITUTION_VELOCITY_THRESHOLD,
                                    enableConeFriction=1, physicsClientId=cid)
        for group, items in (("statics", scene.statics), ("props", scene.props), ("characters", scene.characters)):
            for i, item in enumerate(items):
                self.material(item.material, f"{group}[{i}].material")      # names the field if unknown
        self._fit_materials()

        names, kinds, mats, chars, masses = [], [], [], [], []
        self._uid: list[int] = []      # PyBullet body id of each trajectory body
        self._link: list[int] = []     # its link index (-1 = base)
        self._lookup: dict[tuple[int, int], int] = {}

        def register(name, kind, material, char, mass, uid, link):
            idx = len(names)
            names.append(name)
            kinds.append(kind)
            mats.append(material)
            chars.append(char)
            masses.append(mass)
            self._uid.append(uid)
            self._link.append(link)
            self._lookup[(uid, link)] = idx

        for i, s in enumerate(scene.statics):
            shape = self._collision_shape(s.shape, f"statics[{i}].shape", prop=False)[0]
            uid = p.createMultiBody(0.0, shape, -1, list(s.pos), _xyzw(s.quat), physicsClientId=cid)
            self._set_material(uid, -1, s.material, "static")
            register(s.name, "static", s.material, -1, 0.0, uid, -1)
        self._static_pose = [(np.array(s.pos, float), np.array(s.quat, float)) for s in scene.statics]

        # props: frame at the centre of mass; q_inertial = rotation from the body
        # frame to the principal axes (identity for primitives)
        self._prop_qin = []
        for i, pr in enumerate(scene.props):
            mat = self.material(pr.material, f"props[{i}].material")
            shape, volume, inertia_unit = self._collision_shape(pr.shape, f"props[{i}].shape", prop=True)
            density = pr.density if pr.density is not None else mat.density
            mass = pr.mass if pr.mass is not None else density * volume
            I = inertia_unit * mass                     # (3, 3) about the COM, body axes
            moments, axes = np.linalg.eigh(I)
            if np.allclose(I, np.diag(np.diag(I)), atol=1e-12 * max(1.0, np.abs(I).max())):
                moments, qin = np.diag(I).copy(), np.array([1.0, 0.0, 0.0, 0.0])
            else:
                if np.linalg.det(axes) < 0:
                    axes[:, 2] *= -1
                qin = _matrix_to_quat(axes)
            uid = p.createMultiBody(mass, shape, -1, list(pr.pos), _xyzw(pr.quat),
                                    baseInertialFramePosition=[0.0, 0.0, 0.0],
                                    baseInertialFrameOrientation=_xyzw(qin), physicsClientId=cid)
            p.changeDynamics(uid, -1, localInertiaDiagonal=[float(m) for m in moments], physicsClientId=cid)
            self._set_material(uid, -1, pr.material)
            p.resetBaseVelocity(uid, list(pr.linvel), list(pr.angvel), physicsClientId=cid)
            self._prop_qin.append(qin)
            register(pr.name, "prop", pr.material, -1, float(mass), uid, -1)
        self._prop_qin = np.array(self._prop_qin).reshape(-1, 4)

        self._chars = []
        for ci, c in enumerate(scene.characters):
            ch = self._load_character(ci, c)
            self._chars.append(ch)
            for k, lname in enumerate(humanoid.LINK_NAMES):
                register(f"{c.name}/{lname}", "character", c.material, ci, ch["mass"][k],
                         ch["uid"], ch["link"][k])

        self._names = tuple(names)
        self._kinds = tuple(kinds)
        self._mats = tuple(mats)
        self._chars_of = np.array(chars, dtype=np.int64)
        self._masses = np.array(masses, float)
        self._nstat = len(scene.statics)
        self._props = np.arange(self._nstat, self._nstat + len(scene.props))
        self._prop_uids = [self._uid[k] for k in self._props]
        # collision groups: statics (bit 0) never collide with each other, props (bit 1)
        # collide with everything, and each character (bit ci + 2) with everything
        # but its own links (as in MuJoCo); beyond 29 characters own-link pairs are
        # filtered one by one
        everything = (1 << 31) - 1
        for i in range(len(names)):
            if kinds[i] == "static":
                p.setCollisionFilterGroupMask(self._uid[i], self._link[i], 1, everything & ~1, physicsClientId=cid)
            elif kinds[i] == "prop":
                p.setCollisionFilterGroupMask(self._uid[i], self._link[i], 2, everything, physicsClientId=cid)
        for ci, ch in enumerate(self._chars):
            uid = ch["uid"]
            n = p.getNumJoints(uid, physicsClientId=cid)
            group, mask = (1 << (ci + 2), everything & ~(1 << (ci + 2))) if ci < 29 else (2, everything)
            for link in range(-1, n):
                p.setCollisionFilterGroupMask(uid, link, group, mask, physicsClientId=cid)
            if ci >= 29:
                for a in range(-1, n):
                    for b in range(a + 1, n):
                        p.setCollisionFilterPair(uid, uid, a, b, 0, physicsClientId=cid)

        # (PyBullet body id, link + 1) -> trajectory body index (-1: not a body of ours)
        nlinks = max((lk for _, lk in self._lookup), default=-1) + 2
        self._body_table = np.full((max(self._uid, default=0) + 1, max(nlinks, 1)), -1, np.int64)
        for (uid, link), idx in self._lookup.items():
            self._body_table[uid, link + 1] = idx
        B = len(names)
        self._com0 = np.zeros((B, 3))
        self._rot0 = np.zeros((B, 4))
        self._rot0[:, 3] = 1.0
        for k, (pos, quat) in enumerate(self._static_pose):
            self._com0[k], self._rot0[k] = pos, _xyzw(quat)
        qin = self._prop_qin.copy()
        qin[:, 1:] *= -1
        self._prop_qin_conj = qin
        off = self._nstat + len(scene.props)
        for ci, ch in enumerate(self._chars):
            ch["first"] = off + ci * len(humanoid.LINK_NAMES)
        self._snapshot()
        self._pre = (self._com, self._lin, self._ang)
        p.performCollisionDetection(physicsClientId=cid)
        self._contacts = self._read_contacts()
        self.check_initial_overlap()

    def _fit_materials(self):
        scene = self.scene
        static = {s.material for s in scene.statics}
        dynamic = {pr.material for pr in scene.props} | {c.material for c in scene.characters}
        mats = {n: scene.material(n) for n in static | dynamic}
        self._friction, self._restitution, pairs = material_factors(static, dynamic, mats)
        fr, re = self._friction, self._restitution
        #: "static concrete|dynamic rubber" -> {"target": [mu, e], "achieved": [mu, e]}
        #: for every pair of materials that can touch in this scene
        self.material_fit = {
            f"{' '.join(a)}|{' '.join(b)}": {"target": [float(v) for v in pairs[(a, b)]],
                                             "achieved": [fr[a] * fr[b], re[a] * re[b]]}
            for a, b in sorted(pairs)}

    def _set_material(self, uid: int, link: int, material: str, role: str = "dynamic"):
        key = (role, material)
        self._p.changeDynamics(uid, link, lateralFriction=self._friction[key],
                               restitution=self._restitution[key],
                               rollingFriction=0.0, spinningFriction=0.0,
                               linearDamping=0.0, angularDamping=0.0,
                               contactProcessingThreshold=0.0,
                               activationState=self._p.ACTIVATION_STATE_DISABLE_SLEEPING,
                               physicsClientId=self._cid)

    def _collision_shape(self, shape, fieldpath: str, *, prop: bool):
        """(PyBullet shape id, volume m^3, inertia per unit mass (3, 3) about the
        centre of mass in body axes). Props' meshes are re-centred on their hull's
        centre of mass."""
        p, cid = self._p, self._cid
        if isinstance(shape, Box):
            hx, hy, hz = shape.half_extents
            sid = p.createCollisionShape(p.GEOM_BOX, halfExtents=list(shape.half_extents), physicsClientId=cid)
            unit = np.diag([hy * hy + hz * hz, hx * hx + hz * hz, hx * hx + hy * hy]) / 3.0
            return sid, 8.0 * hx * hy * hz, unit
        if isinstance(shape, Sphere):
            r = shape.radius
            sid = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=cid)
            return sid, 4.0 / 3.0 * math.pi * r ** 3, np.eye(3) * 0.4 * r * r
        if isinstance(shape, Cylinder):
            r, h = shape.radius, shape.half_length
            sid = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=2 * h, physicsClientId=cid)
            ixx = (3 * r * r + 4 * h * h) / 12.0
            return sid, math.pi * r * r * 2 * h, np.diag([ixx, ixx, r * r / 2])
        if isinstance(shape, Capsule):
            r, h = shape.radius, shape.half_length
            sid = p.createCollisionShape(p.GEOM_CAPSULE, radius=r, height=2 * h, physicsClientId=cid)
            vc, vs = math.pi * r * r * 2 * h, 4.0 / 3.0 * math.pi * r ** 3
            # solid capsule: cylinder plus two hemispheres (parallel-axis shifted)
            izz = (vc * r * r / 2 + vs * 0.4 * r * r) / (vc + vs)
            ixx = (vc * (3 * r * r + 4 * h * h) / 12.0
                   + vs * (0.4 * r * r + h * h + 0.75 * h * r)) / (vc + vs)
            return sid, vc + vs, np.diag([ixx, ixx, izz])
        if isinstance(shape, Mesh):
            mesh = self.load_mesh(shape.path, shape.scale, f"{fieldpath}.path")
            if prop or shape.convex:
                hull = mesh.convex_hull
                verts = hull.vertices - (hull.center_mass if prop else 0.0)
                sid = p.createCollisionShape(p.GEOM_MESH, vertices=verts.tolist(), physicsClientId=cid)
                volume = float(hull.volume)
                unit = np.asarray(hull.moment_inertia, float) / float(hull.mass)
                return sid, volume, unit
            sid = p.createCollisionShape(p.GEOM_MESH, vertices=mesh.vertices.tolist(),
                                         indices=mesh.faces.ravel().astype(int).tolist(), physicsClientId=cid)
            return sid, 0.0, np.zeros((3, 3))
        raise SceneError(fieldpath, f"unsupported shape {type(shape).__name__}")

    def _load_character(self, ci: int, c) -> dict:
        p, cid = self._p, self._cid
        body = humanoid.build(c)
        xml = humanoid.humanoid_mjcf(c, name=c.name, actuators=False, free_root=False)
        fd, path = tempfile.mkstemp(suffix=".xml", prefix="physcut_humanoid_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(xml)
            uids = p.loadMJCF(path, physicsClientId=cid)
        finally:
            os.unlink(path)
        if len(uids) != 1:
            raise RuntimeError(f"PyBullet loaded {len(uids)} bodies from the humanoid MJCF, expected 1")
        uid = uids[0]
        links, joints = {}, {}
        for j in range(p.getNumJoints(uid, physicsClientId=cid)):
            info = p.getJointInfo(uid, j, physicsClientId=cid)
            links[info[12].decode()] = j
            joints[info[1].decode()] = j
        links[humanoid.ROOT_LINK] = -1
        link_idx = [links[n] for n in humanoid.LINK_NAMES]
        joint_idx = [joints[n] for n in humanoid.JOINT_NAMES]
        # masses and inertias from the model table (the MJCF reader recomputes them)
        for k, bl in enumerate(body.links):
            p.changeDynamics(uid, link_idx[k], mass=float(bl.mass),
                             localInertiaDiagonal=[float(v) for v in bl.inertia], physicsClientId=cid)
        # Each hinge moves a massless intermediate link of the reader's (the named
        # link hangs off the last one by a fixed joint). Bullet has no joint
        # armature; giving those links the model's armature as rotational inertia
        # plays its part (rotor inertia on every hinge) and keeps the articulated
        # inertia of three-hinge chains (shoulders, hips) from going singular when
        # two of their axes line up, which otherwise blows the arms up.
        hinge_links = [j for j in range(p.getNumJoints(uid, physicsClientId=cid))
                       if p.getJointInfo(uid, j, physicsClientId=cid)[2] == p.JOINT_REVOLUTE]
        for j in hinge_links:
            p.changeDynamics(uid, j, mass=HINGE_LINK_MASS, localInertiaDiagonal=[humanoid.ARMATURE] * 3,
                             physicsClientId=cid)
        self._set_material(uid, -1, c.material)
        for j in range(p.getNumJoints(uid, physicsClientId=cid)):
            self._set_material(uid, j, c.material)
            p.changeDynamics(uid, j, jointDamping=0.0, maxJointVelocity=1000.0, physicsClientId=cid)
        # no built-in motors: torques come from our PD
        p.setJointMotorControlArray(uid, joint_idx, p.VELOCITY_CONTROL, forces=[0.0] * len(joint_idx),
                                    physicsClientId=cid)
        # the base's reported pose is its centre-of-mass frame
        com_local = np.array(p.getDynamicsInfo(uid, -1, physicsClientId=cid)[3], float)
        q = np.array([math.cos(c.yaw / 2), 0.0, 0.0, math.sin(c.yaw / 2)])
        frame = np.array([c.pos[0], c.pos[1], body.pelvis_height])
        p.resetBasePositionAndOrientation(uid, (frame + _quat_rotate(q, com_local)).tolist(), _xyzw(q),
                                          physicsClientId=cid)
        for j in joint_idx:
            p.resetJointState(uid, j, 0.0, 0.0, physicsClientId=cid)
        J = len(joint_idx)
        torque = np.array([j.torque for j in body.joints])
        return {"uid": uid, "link": link_idx, "joint": joint_idx, "mass": [bl.mass for bl in body.links],
                "inertia": np.array([bl.inertia for bl in body.links], float), "hinge_links": hinge_links,
                "base_com": com_local, "total_mass": float(sum(bl.mass for bl in body.links)),
                "masses": np.array([bl.mass for bl in body.links]),
                "torque_limit": torque, "q_target": np.zeros(J), "qd_target": np.zeros(J),
                "kp": np.zeros(J), "kd": np.zeros(J), "tau_extra": np.zeros(J)}

    # ------------------------------------------------------------- description
    @property
    def version(self) -> str:
        from importlib.metadata import version
        return f"pybullet {version('pybullet')}"

    @property
    def timestep(self) -> float:
        return self._dt

    @property
    def time(self) -> float:
        return self._nstep * self._dt

    @property
    def body_names(self):
        return self._names

    @property
    def body_kind(self):
        return self._kinds

    @property
    def body_material(self):
        return self._mats

    @property
    def body_character(self):
        return self._chars_of.copy()

    @property
    def body_mass(self):
        return self._masses.copy()

    @property
    def extra(self) -> dict:
        """Engine notes for the trajectory (JSON-serialisable)."""
        return {"pybullet_material_fit": self.material_fit,
                "pybullet_solver_iterations": SOLVER_ITERATIONS, "pybullet_contact_erp": CONTACT_ERP}

    # ------------------------------------------------------------- state
    def _snapshot(self):
        """Read the state of every body after a step: centre-of-mass position,
        orientation of the inertial frame, linear and angular velocity (B, ...),
        plus each link's frame origin and orientation. Used by every state query,
        for the contact speeds of the next step and for the divergence check."""
        p, cid = self._p, self._cid
        com, rot = self._com0.copy(), self._rot0.copy()
        lin, ang = np.zeros_like(com), np.zeros_like(com)
        frame_pos, frame_rot = com.copy(), rot.copy()
        if len(self._props):
            gp, gv = p.getBasePositionAndOrientation, p.getBaseVelocity
            flat = _rows((a[0] + a[1] + b[0] + b[1] for a, b in
                          ((gp(u, physicsClientId=cid), gv(u, physicsClientId=cid)) for u in self._prop_uids)),
                         len(self._prop_uids), 13)
            props = self._props
            com[props], rot[props], lin[props], ang[props] = flat[:, 0:3], flat[:, 3:7], flat[:, 7:10], flat[:, 10:13]
        for ch in self._chars:
            uid, k0 = ch["uid"], ch["first"]
            pos, q = p.getBasePositionAndOrientation(uid, physicsClientId=cid)
            v, w = p.getBaseVelocity(uid, physicsClientId=cid)
            states = p.getLinkStates(uid, ch["link"][1:], computeLinkVelocity=1,
                                     computeForwardKinematics=1, physicsClientId=cid)
            com[k0], rot[k0], lin[k0], ang[k0] = pos, q, v, w
            sl = slice(k0 + 1, k0 + len(ch["link"]))
            com[sl] = [s[0] for s in states]
            rot[sl] = [s[1] for s in states]
            lin[sl] = [s[6] for s in states]
            ang[sl] = [s[7] for s in states]
            frame_pos[sl] = [s[4] for s in states]
            frame_rot[sl] = [s[5] for s in states]
        # PyBullet quaternions are (x, y, z, w)
        rot = rot[:, [3, 0, 1, 2]]
        frame_rot = frame_rot[:, [3, 0, 1, 2]]
        if len(self._props):
            frame_pos[self._props] = com[self._props]
            # reported frame = principal axes; body frame = that times conj(q_in)
            frame_rot[self._props] = _quat_mul(rot[self._props], self._prop_qin_conj)
        for ch in self._chars:
            # pelvis (the base): frame origin = COM - R c_local (no inertial rotation)
            k0 = ch["first"]
            frame_rot[k0] = rot[k0]
            frame_pos[k0] = com[k0] - _quat_rotate(rot[k0], ch["base_com"])
        self._com, self._rot, self._lin, self._ang = com, rot, lin, ang
        self._frame_pos, self._frame_rot = frame_pos, frame_rot

    def body_states(self):
        pos = self._frame_pos.copy()
        lin = self._lin + _cross(self._ang, pos - self._com)   # velocity of the frame origin
        return pos, self._frame_rot.copy(), lin, self._ang.copy()

    def joint_states(self):
        C, J = len(self._chars), len(humanoid.JOINT_NAMES)
        q, qd = np.zeros((C, J)), np.zeros((C, J))
        for ci, ch in enumerate(self._chars):
            st = self._p.getJointStates(ch["uid"], ch["joint"], physicsClientId=self._cid)
            q[ci] = [s[0] for s in st]
            qd[ci] = [s[1] for s in st]
        return q, qd

    def root_states(self):
        idx = np.array([ch["first"] for ch in self._chars], dtype=np.int64)
        pos = self._frame_pos[idx]
        lin = self._lin[idx] + _cross(self._ang[idx], pos - self._com[idx])
        return pos.copy(), self._frame_rot[idx].copy(), lin, self._ang[idx].copy()

    def link_orientations(self, bodies):
        bodies = np.asarray(bodies, dtype=np.int64)
        return self._frame_rot[bodies].copy(), self._ang[bodies].copy()

    def angular_momentum(self):
        """(C, 3) exact whole-body angular momentum about each character's centre
        of mass: sum of m (c - c_com) x (v - v_com) + R I R^T w over its links,
        plus the spin of the intermediate hinge links that carry the armature."""
        C = len(self._chars)
        out = np.zeros((C, 3))
        com, comv = self.com_states()
        nl = len(humanoid.LINK_NAMES)
        for ci, ch in enumerate(self._chars):
            sl = slice(ch["first"], ch["first"] + nl)
            m = ch["masses"][:, None]
            L = (m * _cross(self._com[sl] - com[ci], self._lin[sl] - comv[ci])).sum(0)
            # spin: R diag(I) R^T w, with R the inertial frame (= link frame here)
            q, w = self._rot[sl], self._ang[sl]
            conj = q * np.array([1.0, -1.0, -1.0, -1.0])
            w_local = _quat_rotate(conj, w)
            out[ci] = L + _quat_rotate(q, ch["inertia"] * w_local).sum(0)
            hinges = self._p.getLinkStates(ch["uid"], ch["hinge_links"], computeLinkVelocity=1,
                                           physicsClientId=self._cid)
            out[ci] += humanoid.ARMATURE * np.array([h[7] for h in hinges]).sum(0)
        return out

    def com_states(self):
        C = len(self._chars)
        pos, vel = np.zeros((C, 3)), np.zeros((C, 3))
        off = self._nstat + len(self._props)
        nl = len(humanoid.LINK_NAMES)
        for ci, ch in enumerate(self._chars):
            sl = slice(ch["first"], ch["first"] + nl)
            m = ch["masses"][:, None]
            pos[ci] = (m * self._com[sl]).sum(0) / ch["total_mass"]
            vel[ci] = (m * self._lin[sl]).sum(0) / ch["total_mass"]
        return pos, vel

    def contacts(self) -> Contacts:
        return self._contacts

    def _read_contacts(self) -> Contacts:
        """Touching contacts of the last step. PyBullet reports the normal on B
        pointing from B to A; ours points from a to b, so it is negated."""
        pts = self._p.getContactPoints(physicsClientId=self._cid)
        if not pts:
            return Contacts.empty()
        # one flat row per contact: posA (3), posB (3), normalOnB (3), distance,
        # normal force, friction 1, friction 2, body A, link A, body B, link B
        flat = _rows((c[5] + c[6] + c[7] + (c[8], c[9], c[10], c[12], c[1], c[3], c[2], c[4])
                      for c in pts), len(pts), 17)
        flat = flat[(flat[:, 9] <= 0.0) | (flat[:, 10] > 0.0)]
        if not len(flat):
            return Contacts.empty()
        ids = flat[:, 13:].astype(np.int64)
        body = self._body_of(ids[:, 0], ids[:, 1])
        body = np.stack([body, self._body_of(ids[:, 2], ids[:, 3])], axis=1)
        pa, pb = flat[:, 0:3], flat[:, 3:6]
        normal = -flat[:, 6:9]
        dist, fn = flat[:, 9], flat[:, 10]
        ft = np.hypot(flat[:, 11], flat[:, 12])
        pos = 0.5 * (pa + pb)
        # approach speed from the velocities before this step (the snapshot)
        a, b = body[:, 0], body[:, 1]
        va = self._prev_lin[a] + _cross(self._prev_ang[a], pos - self._prev_com[a])
        vb = self._prev_lin[b] + _cross(self._prev_ang[b], pos - self._prev_com[b])
        speed = np.einsum("ij,ij->i", va - vb, normal)
        return Contacts(body, pos, normal, fn, ft, speed, -dist)

    def _body_of(self, uid: np.ndarray, link: np.ndarray) -> np.ndarray:
        """Trajectory body index of PyBullet (body id, link index) pairs."""
        return self._body_table[uid, link + 1]

    @property
    def _prev_com(self):
        return self._pre[0]

    @property
    def _prev_lin(self):
        return self._pre[1]

    @property
    def _prev_ang(self):
        return self._pre[2]

    def touching_characters(self, is_foot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact for the coming step: Bullet detects a step's contacts on the poses at
        its start, so a collision pass now finds the contacts the step will solve
        (touching, distance <= 0, as ``contactProcessingThreshold = 0`` demands)."""
        C = len(self._chars)
        any_, foot = np.zeros(C + 1, bool), np.zeros(C + 1, bool)
        if not C:
            return any_[:C], foot[:C]
        p, cid = self._p, self._cid
        p.performCollisionDetection(physicsClientId=cid)
        look = self._lookup
        chars = self._chars_of
        touched: set[int] = set()
        for c in p.getContactPoints(physicsClientId=cid):
            if c[8] > 0.0:
                continue
            a, b = look[(c[1], c[3])], look[(c[2], c[4])]
            ca, cb = chars[a], chars[b]
            if ca == cb:
                continue
            for x, cx in ((a, ca), (b, cb)):
                if cx >= 0:
                    any_[cx] = True
                    foot[cx] |= bool(is_foot[x])
                    touched.add(int(x))
        self._touching = (self._nstep, touched)
        return any_[:C], foot[:C]

    def _touching_links(self, ch) -> list[int]:
        """PyBullet link indices of character ``ch`` touching something else in the
        coming step (from `touching_characters` when it ran for this step, else the
        last step's contacts)."""
        step, touched = getattr(self, "_touching", (-1, set()))
        if step != self._nstep:
            c = self._contacts
            chars = self._chars_of
            touched = {int(x) for a, b in c.body for x in (a, b) if chars[a] != chars[b] and chars[x] >= 0}
        first, n = ch["first"], len(ch["link"])
        return [ch["link"][k - first] for k in sorted(touched) if first <= k < first + n]

    # ------------------------------------------------------------- control
    def set_pd_targets(self, character, q_target, kp, kd, qd_target=None):
        ch = self._chars[character]
        ch["q_target"] = np.asarray(q_target, float).copy()
        ch["kp"] = np.asarray(kp, float).copy()
        ch["kd"] = np.asarray(kd, float).copy()
        ch["qd_target"] = np.zeros_like(ch["q_target"]) if qd_target is None else np.asarray(qd_target, float).copy()

    def set_pd_gains(self, character, kp, kd):
        """Gains only (targets unchanged)."""
        ch = self._chars[character]
        ch["kp"] = np.asarray(kp, float).copy()
        ch["kd"] = np.asarray(kd, float).copy()

    def apply_joint_torques(self, character, tau):
        self._chars[character]["tau_extra"] = self._chars[character]["tau_extra"] + np.asarray(tau, float)

    def apply_force(self, body, force, torque=None, point=None):
        p, cid = self._p, self._cid
        uid, link = self._uid[body], self._link[body]
        if self._kinds[body] == "static":
            return
        at = self._com[body] if point is None else np.asarray(point, float)
        p.applyExternalForce(uid, link, [float(v) for v in force], [float(v) for v in at],
                             p.WORLD_FRAME, physicsClientId=cid)
        if torque is not None:
            p.applyExternalTorque(uid, link, [float(v) for v in torque], p.WORLD_FRAME, physicsClientId=cid)

    def _joint_torques(self, ch) -> np.ndarray:
        """Joint PD plus passive damping as a *stable PD* (Tan et al. 2011): the
        torques the PD would exert with the joint angles and velocities at the end
        of the step, q + dt qd' and qd', solved through the whole-body joint-space
        inertia (floating base included) with the links that touch a support held
        in place; gravity and Coriolis forces are neglected in that prediction.
        Explicit PD with the model's gains is unstable at 480 Hz (the light pelvis
        between stiff hip and abdomen joints oscillates). Torques are then clipped
        to the joint limits."""
        p, cid, dt = self._p, self._cid, self._dt
        st = p.getJointStates(ch["uid"], ch["joint"], physicsClientId=cid)
        q = np.array([s[0] for s in st])
        qd = np.array([s[1] for s in st])
        kp, kd = ch["kp"], ch["kd"]
        damp = kd + humanoid.PASSIVE_DAMPING
        tau0 = (kp * (ch["q_target"] - q - dt * qd) + kd * (ch["qd_target"] - qd)
                - humanoid.PASSIVE_DAMPING * qd)
        stiff = kp * dt * dt + damp * dt                       # (J,) implicit terms
        if "M" not in ch or self._nstep % MASS_MATRIX_INTERVAL == 0:
            ch["M"] = self._mass_matrix(ch, q)
            ch["J"] = {}
        dofs = ch["dofs"]
        n = ch["M"].shape[0]
        # the centre of mass of every link touching a support is held in place in
        # the prediction (the contact forces will do that). Without it a planted
        # leg is predicted to swing freely and its PD torques are cut by a third,
        # so characters sag; holding the links' rotation too over-stiffens a foot
        # on an edge and kicks it off the ground.
        links = self._touching_links(ch)
        J = [self._link_jacobian(ch, link, q) for link in links]
        m = 3 * len(J)
        A = np.zeros((n + m, n + m))
        A[:n, :n] = ch["M"]
        A[dofs, dofs] += stiff
        if m:
            Jc = np.vstack(J)
            A[n:, :n] = Jc
            A[:n, n:] = Jc.T
            A[n:, n:] = -1e-6 * np.eye(m)          # tolerates redundant contact rows
        rhs = np.zeros(n + m)
        rhs[dofs] = tau0
        qdd = np.linalg.solve(A, rhs)[dofs]
        tau = np.clip(tau0 - stiff * qdd, -ch["torque_limit"], ch["torque_limit"])
        return tau + ch["tau_extra"]

    def _link_jacobian(self, ch, link: int, q: np.ndarray) -> np.ndarray:
        """(3, 6 + n) linear Jacobian of a link's centre of mass in the mass
        matrix's coordinates (base angular DoF first, then linear, then joints),
        refreshed with the mass matrix."""
        J = ch["J"].get(link)
        if J is None and link == -1:          # the base (pelvis): its linear DoF
            J = ch["J"][link] = np.eye(6, ch["M"].shape[0])[3:]
        if J is None:
            p, cid = self._p, self._cid
            full = dict(zip(ch["joint"], q))
            pos = [float(full.get(j, 0.0)) for j in ch["movable"]]
            zero = [0.0] * len(pos)
            lin, ang = p.calculateJacobian(ch["uid"], link, [0.0, 0.0, 0.0], pos, zero, zero,
                                           physicsClientId=cid)
            J = ch["J"][link] = np.asarray(lin, float)
        return J

    def _mass_matrix(self, ch, q: np.ndarray) -> np.ndarray:
        """(6 + n, 6 + n) joint-space inertia at joint angles ``q`` (base DoF first);
        also stores in ``ch["dofs"]`` the matrix index of each humanoid joint."""
        p, cid = self._p, self._cid
        if "movable" not in ch:
            n = p.getNumJoints(ch["uid"], physicsClientId=cid)
            ch["movable"] = [j for j in range(n)
                             if p.getJointInfo(ch["uid"], j, physicsClientId=cid)[2] != p.JOINT_FIXED]
            where = {j: 6 + i for i, j in enumerate(ch["movable"])}
            ch["dofs"] = np.array([where[j] for j in ch["joint"]])
        full = dict(zip(ch["joint"], q))
        return np.array(p.calculateMassMatrix(ch["uid"], [float(full.get(j, 0.0)) for j in ch["movable"]],
                                              physicsClientId=cid))

    def step(self):
        p, cid = self._p, self._cid
        for ch in self._chars:
            tau = self._joint_torques(ch)
            p.setJointMotorControlArray(ch["uid"], ch["joint"], p.TORQUE_CONTROL,
                                        forces=tau.tolist(), physicsClientId=cid)
            ch["tau_extra"] = np.zeros_like(ch["tau_extra"])
        self._pre = (self._com, self._lin, self._ang)
        p.stepSimulation(physicsClientId=cid)
        self._nstep += 1
        self._snapshot()
        self._contacts = self._read_contacts()

    def check_step(self) -> Optional[str]:
        if (np.isfinite(self._com).all() and np.isfinite(self._lin).all() and np.isfinite(self._ang).all()
                and np.abs(self._lin).max(initial=0.0) < 100.0 and np.abs(self._ang).max(initial=0.0) < 1000.0):
            return None
        pos, _, lin, ang = self.body_states()
        return self.check_state(pos, lin, ang)

    # ------------------------------------------------------------- lifetime
    def close(self):
        """Disconnect the private PyBullet client (idempotent)."""
        cid = getattr(self, "_cid", -1)
        if cid >= 0:
            try:
                self._p.disconnect(physicsClientId=cid)
            except Exception:  # already gone (interpreter shutdown)
                pass
            self._cid = -1

    def __del__(self):
        self.close()
