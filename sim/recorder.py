"""`Recorder`: samples an engine at frame rate into a `Trajectory`.

Frame 0 is the initial state; frame i is the state after ``i * substeps`` physics
steps and summarises the physics steps of the interval (t_{i-1}, t_i].

Contacts: the per-step contacts of a frame interval are turned into events:
    * one *impact* event for every contact onset (a body pair touching that did not
      touch the step before) whose impulse over its run of consecutive contact
      steps in the frame exceeds ``scene.contact_threshold``: time of the onset
      step, approach speed at onset, the run's impulse;
    * one *aggregate* event per body pair and frame with the rest of the pair's
      impulse in the frame (omitted when the impact events carry all of it):
      impulse-weighted mean point and normal, time of the step with the largest
      normal force, onset true if the pair started touching in the frame.
The events' impulses sum to the total contact impulse, so nothing is counted twice
and no impact above the threshold is merged away.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .engine import Contacts, Engine
from .trajectory import Trajectory


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4) wxyz."""
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


class Recorder:
    def __init__(self, scene, engine: Engine, seed: int, controller=None):
        self.scene, self.engine, self.seed, self.ctrl = scene, engine, int(seed), controller
        self.F = F = scene.frame_count
        self.B = B = len(engine.body_names)
        self.C = C = len(scene.characters)
        self.J = J = len(engine.joint_names)
        self.dt = engine.timestep
        self.frame_dt = 1.0 / scene.fps
        self.pos = np.zeros((F, B, 3))
        self.quat = np.zeros((F, B, 4))
        self.linvel = np.zeros((F, B, 3))
        self.angvel = np.zeros((F, B, 3))
        self.jq = np.zeros((F, C, J))
        self.kp = np.zeros((F, C, 17, 3))
        self.com = np.zeros((F, C, 3))
        self.comv = np.zeros((F, C, 3))
        self.coma = np.zeros((F, C, 3))
        self.support = np.zeros((F, C), bool)
        self.assist = np.zeros((F, C, 3))
        self.n = 0                                   # frames recorded
        self._buf: list[tuple[int, Contacts]] = []   # (step, contacts) of this frame
        self._prev_keys = np.zeros(0, np.int64)      # pair keys touching at the last step
        self._events: list[dict] = []
        self._frame_first_step = 1
        self._last_step = 0
        if C:
            from . import humanoid
            nl = len(humanoid.LINK_NAMES)
            first = B - C * nl
            bodies = [humanoid.build(c) for c in scene.characters]
            # (C, 17) trajectory body index of each keypoint's link, (C, 17, 3) offsets
            self._kp_body = np.stack([first + c * nl + b.keypoint_link for c, b in enumerate(bodies)])
            self._kp_off = np.stack([b.keypoint_offset for b in bodies])
        self._record()

    # ------------------------------------------------------------------ per step
    def after_step(self, step: int, contacts: Contacts) -> None:
        """``step`` = number of steps done (the contacts are those of step ``step``)."""
        self._last_step = step
        if len(contacts):
            self._buf.append((step, contacts))

    def end_frame(self) -> None:
        self._flush_contacts()
        self._frame_first_step = self._last_step + 1
        self._record()

    # ------------------------------------------------------------------ sampling
    def _record(self) -> None:
        i = self.n
        e = self.engine
        pos, quat, lin, ang = e.body_states()
        self.pos[i], self.quat[i], self.linvel[i], self.angvel[i] = pos, quat, lin, ang
        if self.C:
            self.jq[i] = e.joint_states()[0]
            q = quat[self._kp_body]                                  # (C, 17, 4)
            self.kp[i] = pos[self._kp_body] + quat_rotate(q, self._kp_off)
            self.com[i], self.comv[i] = e.com_states()
            if i > 0:
                self.coma[i] = (self.comv[i] - self.comv[i - 1]) / self.frame_dt
                if self.ctrl is not None:
                    self.support[i], self.assist[i] = self.ctrl.frame_summary()
        self.n += 1

    def _flush_contacts(self) -> None:
        buf, self._buf = self._buf, []
        B, dt = self.B, self.dt
        s0, s1 = self._frame_first_step, self._last_step     # this frame's steps
        if not buf:
            self._prev_keys = np.zeros(0, np.int64)
            return
        st = np.concatenate([np.full(len(c), s, np.int64) for s, c in buf])
        body = np.concatenate([c.body for _, c in buf])
        pos = np.concatenate([c.pos for _, c in buf])
        normal = np.concatenate([c.normal for _, c in buf])
        fn = np.concatenate([c.normal_force for _, c in buf])
        ft = np.concatenate([c.tangent_force for _, c in buf])
        vn = np.concatenate([c.normal_speed for _, c in buf])
        # canonical pair order a < b (the normal flips with it)
        swap = body[:, 0] > body[:, 1]
        body = np.where(swap[:, None], body[:, ::-1], body)
        normal = np.where(swap[:, None], -normal, normal)
        key = body[:, 0] * B + body[:, 1]
        # unique (pair, step) rows, sorted by pair then step; onset = the pair did
        # not touch the step before (the previous frame's last step for s0)
        S = s1 - s0 + 2
        code = key * S + (st - s0 + 1)
        ucode, inv = np.unique(code, return_inverse=True)
        ukey, ust = ucode // S, ucode % S
        touched_before = np.isin(ucode - 1, ucode)
        at_first = ust == 1
        touched_before[at_first] = np.isin(ukey[at_first], self._prev_keys)
        onset_u = ~touched_before
        new_pair = np.r_[True, ukey[1:] != ukey[:-1]]
        run_u = np.cumsum(onset_u | new_pair) - 1            # runs of consecutive steps
        run = run_u[inv]
        nrun = int(run_u[-1]) + 1
        run_imp = np.bincount(run, weights=fn, minlength=nrun) * dt
        run_onset = np.zeros(nrun, bool)
        run_onset[run_u[onset_u]] = True
        impact_run = run_onset & (run_imp > self.scene.contact_threshold)
        onset_row = onset_u[inv]
        self._prev_keys = np.unique(key[st == s1])

        events = []
        for r in np.nonzero(impact_run)[0]:
            m = run == r
            events.append(self._event(st[m], body[m][0], pos[m], normal[m], fn[m], ft[m], vn[m],
                                      onset_step=int(st[m].min())))
        rest = ~impact_run[run]
        if rest.any():
            r_idx = np.nonzero(rest)[0]
            _, pinv = np.unique(key[r_idx], return_inverse=True)
            for p in range(int(pinv.max()) + 1):
                m = r_idx[pinv == p]
                on = onset_row[m]
                events.append(self._event(st[m], body[m][0], pos[m], normal[m], fn[m], ft[m], vn[m],
                                          onset_step=int(st[m][on].min()) if on.any() else None))
        events.sort(key=lambda ev: (ev["time"], ev["body"]))
        self._events.extend(events)

    def _event(self, st, pair, pos, normal, fn, ft, vn, onset_step: Optional[int]):
        dt = self.dt
        w = fn if fn.sum() > 0 else np.ones_like(fn)
        p = (w[:, None] * pos).sum(0) / w.sum()
        nrm = (w[:, None] * normal).sum(0)
        nn = np.linalg.norm(nrm)
        nrm = nrm / nn if nn > 0 else normal[0]
        onset = onset_step is not None
        if onset:
            step = onset_step
            speed = float(max(0.0, vn[st == onset_step].max()))
        else:
            step = int(st[np.argmax(fn)])
            speed = float(max(0.0, vn.max()))
        return {"time": step * dt, "frame": self.n, "body": (int(pair[0]), int(pair[1])),
                "pos": p, "normal": nrm, "impulse": (float(fn.sum() * dt), float(ft.sum() * dt)),
                "speed": speed, "onset": bool(onset)}

    # ------------------------------------------------------------------ result
    def finish(self, status: str = "ok") -> Trajectory:
        from .cameras import evaluate_cameras
        self._buf = []      # a divergent rollout: keep only events of recorded frames
        n = self.n
        e, scene = self.engine, self.scene
        times = np.arange(n) / scene.fps
        ev = self._events
        K = len(ev)
        cam = evaluate_cameras(scene, times, e.body_names, self.pos[:n], self.com[:n],
                               [c.name for c in scene.characters], self.seed)
        return Trajectory(
            times=times,
            body_names=tuple(e.body_names), body_kind=tuple(e.body_kind),
            body_material=tuple(e.body_material),
            body_character=np.asarray(e.body_character, np.int64),
            body_pos=self.pos[:n].copy(), body_quat=self.quat[:n].copy(),
            body_linvel=self.linvel[:n].copy(), body_angvel=self.angvel[:n].copy(),
            body_mass=np.asarray(e.body_mass, float),
            character_names=tuple(c.name for c in scene.characters),
            joint_names=tuple(e.joint_names),
            joint_angles=self.jq[:n].copy(), keypoints=self.kp[:n].copy(),
            com_pos=self.com[:n].copy(), com_vel=self.comv[:n].copy(), com_acc=self.coma[:n].copy(),
            support=self.support[:n].copy(), assist_force=self.assist[:n].copy(),
            contact_time=np.array([x["time"] for x in ev], float).reshape(K),
            contact_frame=np.array([x["frame"] for x in ev], np.int64).reshape(K),
            contact_body=np.array([x["body"] for x in ev], np.int64).reshape(K, 2),
            contact_pos=np.array([x["pos"] for x in ev], float).reshape(K, 3),
            contact_normal=np.array([x["normal"] for x in ev], float).reshape(K, 3),
            contact_impulse=np.array([x["impulse"] for x in ev], float).reshape(K, 2),
            contact_speed=np.array([x["speed"] for x in ev], float).reshape(K),
            contact_onset=np.array([x["onset"] for x in ev], bool).reshape(K),
            camera_names=tuple(c.name for c in scene.cameras),
            camera_K=cam.K, camera_size=cam.size, camera_w2c=cam.w2c, active_shot=cam.active_shot,
            fps=int(scene.fps), physics_hz=int(scene.physics_hz), engine=e.name,
            engine_version=e.version, seed=self.seed, scene_hash=scene.content_hash(),
            scene=scene.to_dict(), status=status,
            extra={"substeps": int(scene.substeps), "contact_threshold": float(scene.contact_threshold)},
        )
