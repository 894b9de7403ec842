"""`Recorder`: samples an engine at frame rate into a `Trajectory`.

Frame 0 is the initial state; frame i is the state after ``i * substeps`` physics
steps and summarises the physics steps of the interval (t_{i-1}, t_i].

Contacts: the per-step contacts of a frame interval are turned into events. A body
pair's contact steps form *runs*: a run goes on across a break of one physics step
(a resting or rolling body that loses touch for a step stays in the same run), and
a new run starts after the pair was apart for `ONSET_MIN_GAP_STEPS` steps or more.
A run starts with an *onset* (an impact) only if the relative normal approach
speed at its first step is at least `ONSET_MIN_SPEED`, and, when the pair was
apart for less than `ONSET_MIN_GAP`, at least `ONSET_RATTLE_SPEED`; a run that
starts more gently (a body settling, creeping or jittering back into touch) is
contact, not an impact. Events:
    * one *impact* event for every onset whose run's impulse within the frame
      exceeds ``scene.contact_threshold``: time of the onset step, approach speed
      at onset, the run's impulse (onset true);
    * one *aggregate* event per body pair and frame with the rest of the pair's
      impulse in the frame (omitted when the impact events carry all of it):
      impulse-weighted mean point and normal, time of the step with the largest
      normal force; onset true only if it holds an onset (an impact whose impulse
      stayed below the threshold).
The events' impulses sum to the total contact impulse, so nothing is counted twice
and no impact above the threshold is merged away.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .engine import Contacts, Engine
from .trajectory import Trajectory

#: Smallest relative normal approach speed (m/s) at the first step of a contact run
#: for it to count as an impact onset (the slowest audible or visible impacts).
ONSET_MIN_SPEED = 0.05
#: A pair apart for fewer physics steps than this is still in the same contact run.
ONSET_MIN_GAP_STEPS = 2
#: After a separation shorter than `ONSET_MIN_GAP` (s), a new touch counts as an
#: impact only at `ONSET_RATTLE_SPEED` (m/s) or faster: resting and leaning bodies
#: jitter apart for a few ms and back at up to ~0.1 m/s (leaning dominoes), while a
#: rocking cylinder's rim or a rattling part hits again at tenths of m/s.
ONSET_MIN_GAP = 0.01
ONSET_RATTLE_SPEED = 0.2
#: Contacts are turned into events every this many frames, or sooner once this
#: many contact rows are buffered.
FLUSH_FRAMES = 24
FLUSH_ROWS = 20000


def onset_gap_steps(physics_hz: float) -> int:
    """Physics steps of `ONSET_MIN_GAP`: ``max(ONSET_MIN_GAP_STEPS, ceil(ONSET_MIN_GAP
    * physics_hz))`` (5 at 480 Hz, 10 at 1000 Hz)."""
    return max(ONSET_MIN_GAP_STEPS, int(np.ceil(ONSET_MIN_GAP * physics_hz - 1e-9)))


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4) wxyz."""
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis (np.cross costs more on small arrays)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _group_ends(x: np.ndarray) -> np.ndarray:
    """(n,) bool: True at the last element of each run of equal values of sorted ``x``."""
    out = np.empty(x.size, bool)
    out[-1:] = True
    np.not_equal(x[1:], x[:-1], out=out[:-1])
    return out


def _group_starts(x: np.ndarray) -> np.ndarray:
    """Indices of the first element of each run of equal values of sorted ``x``."""
    out = np.empty(x.size, bool)
    out[:1] = True
    np.not_equal(x[1:], x[:-1], out=out[1:])
    return np.flatnonzero(out)


class Recorder:
    def __init__(self, scene, engine: Engine, seed: int, controller=None, canonical: dict | None = None):
        """``canonical``: ``scene.to_dict()`` if the caller has it already."""
        self.scene, self.engine, self.seed, self.ctrl = scene, engine, int(seed), controller
        self._canonical = canonical
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
        # (step, frame, contacts) of the frames not yet turned into events: they are
        # flushed together (one vectorised pass over several frames is much cheaper
        # than one per frame) every `FLUSH_FRAMES` frames or `FLUSH_ROWS` contacts
        self._buf: list[tuple[int, int, Contacts]] = []
        self._buf_rows = 0
        self._buf_frames = 0
        self._gap = onset_gap_steps(scene.physics_hz)
        self._seen_keys = np.zeros(0, np.int64)      # sorted pair keys ever in contact
        self._seen_last = np.zeros(0, np.int64)      # and the last step each touched
        self._events: list[dict] = []                # batches of events (dicts of arrays)
        #: optional ``sampler(i)`` writing frame i of pos/quat/linvel/angvel/jq/com/comv
        #: and support/assist (an engine's native fast path, see
        #: `NativeStepper.bind_recorder`; `_record` reads the engine otherwise)
        self.sampler = None
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
        n = len(contacts)
        if n:
            self._buf.append((step, self.n, contacts))
            self._buf_rows += n

    def add_steps(self, steps: np.ndarray, contacts: Contacts) -> None:
        """The contacts of several physics steps at once (of the current frame or
        of frames since the last flush): ``steps`` (n,) gives the step (steps done)
        of each row of ``contacts``; its frame is ceil(step / substeps)."""
        n = len(contacts)
        if n:
            self._last_step = int(steps[-1])
            sub = self.scene.substeps
            self._buf.append((steps, (steps + (sub - 1)) // sub, contacts))
            self._buf_rows += n

    @property
    def flush_due(self) -> bool:
        """True when the next `end_frame` turns the buffered contacts into events."""
        return self._buf_frames + 1 >= FLUSH_FRAMES

    def end_frame(self) -> None:
        self._record()
        self._buf_frames += 1
        if self._buf_frames >= FLUSH_FRAMES or self._buf_rows >= FLUSH_ROWS:
            self._flush_contacts()

    # ------------------------------------------------------------------ sampling
    def _record(self) -> None:
        i = self.n
        e = self.engine
        if self.sampler is not None:           # also writes support and assist
            self.sampler(i)
        else:
            pos, quat, lin, ang = e.body_states()
            self.pos[i], self.quat[i], self.linvel[i], self.angvel[i] = pos, quat, lin, ang
            if self.C:
                self.jq[i] = e.joint_states()[0]
                self.com[i], self.comv[i] = e.com_states()
                if i > 0 and self.ctrl is not None:
                    self.support[i], self.assist[i] = self.ctrl.frame_summary()
        self.n += 1

    def _derive(self, n: int) -> None:
        """Keypoints and COM accelerations of frames [0, n), from the recorded link
        poses and COM velocities (one vectorised pass for the whole timeline)."""
        if not self.C or not n:
            return
        kb = self._kp_body                                           # (C, 17)
        self.kp[:n] = self.pos[:n][:, kb] + quat_rotate(self.quat[:n][:, kb], self._kp_off)
        self.coma[1:n] = (self.comv[1:n] - self.comv[:n - 1]) / self.frame_dt

    def _flush_contacts(self) -> None:
        """Turn the buffered contacts of complete frames into events (see the module
        docstring); every frame is handled on its own, several in one pass."""
        buf, self._buf = self._buf, []
        self._buf_rows = self._buf_frames = 0
        if not buf:
            return
        B, dt = self.B, self.dt
        counts = [len(c) for _, _, c in buf]
        # an entry's step and frame are ints (`after_step`) or one per row (`add_steps`)
        st = np.concatenate([np.full(n, s, np.int64) if isinstance(s, int) else s
                             for (s, _, _), n in zip(buf, counts)])
        fr = np.concatenate([np.full(n, f, np.int64) if isinstance(f, int) else f
                             for (_, f, _), n in zip(buf, counts)])
        body = np.concatenate([c.body for _, _, c in buf])
        pos = np.concatenate([c.pos for _, _, c in buf])
        normal = np.concatenate([c.normal for _, _, c in buf])
        fn = np.concatenate([c.normal_force for _, _, c in buf])
        ft = np.concatenate([c.tangent_force for _, _, c in buf])
        vn = np.concatenate([c.normal_speed for _, _, c in buf])
        # canonical pair order a < b (the normal flips with it)
        swap = body[:, 0] > body[:, 1]
        if swap.any():
            body = np.where(swap[:, None], body[:, ::-1], body)
            normal = np.where(swap[:, None], -normal, normal)
        key = body[:, 0] * B + body[:, 1]
        # unique (pair, step) rows, sorted by pair then step
        s0 = int(st.min())
        S = int(st.max()) - s0 + 1
        code = key * S + (st - s0)
        ucode, first_row, inv = np.unique(code, return_index=True, return_inverse=True)
        ukey, ust = ucode // S, ucode % S + s0
        ufr = fr[first_row]
        new_pair = np.empty(ukey.size, bool)
        new_pair[0] = True
        np.not_equal(ukey[1:], ukey[:-1], out=new_pair[1:])
        # a pair's contact steps in a new frame start a new group (runs end with
        # their frame; a run's impulse is the one within the frame)
        new_group = new_pair.copy()
        new_group[1:] |= ufr[1:] != ufr[:-1]
        # the step each pair last touched before: within the frame the previous
        # pair-step, for a pair's first step in the frame the remembered one
        prev = np.empty_like(ust)
        prev[1:] = ust[:-1]
        first_keys = ukey[new_pair]
        idx = np.searchsorted(self._seen_keys, first_keys)
        idx_c = np.minimum(idx, max(self._seen_keys.size - 1, 0))
        found = (idx < self._seen_keys.size) & (self._seen_keys[idx_c] == first_keys) \
            if self._seen_keys.size else np.zeros(first_keys.size, bool)
        never = np.iinfo(np.int64).min // 2
        prev[new_pair] = np.where(found, self._seen_last[idx_c] if self._seen_keys.size else never, never)
        apart = ust - prev - 1                                  # steps apart before
        run_start = apart >= ONSET_MIN_GAP_STEPS
        # approach speed of each pair-step (fastest of its contact points)
        v_ps = np.full(ucode.size, -np.inf)
        np.maximum.at(v_ps, inv, vn)
        onset_u = run_start & (v_ps >= ONSET_MIN_SPEED) & ((apart >= self._gap) | (v_ps >= ONSET_RATTLE_SPEED))
        run_u = np.cumsum(run_start | new_group) - 1           # runs within a frame
        run = run_u[inv]
        nrun = int(run_u[-1]) + 1
        run_imp = np.bincount(run, weights=fn, minlength=nrun) * dt
        run_onset = np.zeros(nrun, bool)
        run_onset[run_u[onset_u]] = True
        impact_run = run_onset & (run_imp > self.scene.contact_threshold)
        onset_row = onset_u[inv]
        self._remember(ukey, ust)

        imp_rows = impact_run[run]
        if imp_rows.any():
            m = imp_rows
            self._events.append(self._batch(run[m], fr[m], st[m], body[m], pos[m], normal[m], fn[m],
                                            ft[m], vn[m], onset_row[m]))
        if not imp_rows.all():
            m = ~imp_rows
            # one aggregate per body pair and frame
            gid = (fr[m] - fr[0]) * (B * B) + key[m]
            self._events.append(self._batch(gid, fr[m], st[m], body[m], pos[m], normal[m], fn[m],
                                            ft[m], vn[m], onset_row[m]))

    def _remember(self, ukey: np.ndarray, ust: np.ndarray) -> None:
        """Record the last contact step of each pair (``ukey``/``ust`` sorted by pair
        then step) in the sorted table of pairs seen so far."""
        last = _group_ends(ukey)
        keys = np.concatenate([self._seen_keys, ukey[last]])
        steps = np.concatenate([self._seen_last, ust[last]])
        order = np.lexsort((steps, keys))
        keys, steps = keys[order], steps[order]
        keep = _group_ends(keys)                               # latest step per pair
        self._seen_keys, self._seen_last = keys[keep], steps[keep]

    def _batch(self, gid, fr, st, body, pos, normal, fn, ft, vn, onset) -> dict:
        """One event per group ``gid`` (vectorised): impulse-weighted point and
        normal, time of the onset step (else of the peak force), approach speed at
        onset (else the largest), summed impulses."""
        dt = self.dt
        order = np.lexsort((-fn, gid))              # by group, strongest row first
        gid, fr, st, body, pos, normal, fn, ft, vn, onset = (
            x[order] for x in (gid, fr, st, body, pos, normal, fn, ft, vn, onset))
        starts = _group_starts(gid)
        cnt = np.diff(np.append(starts, gid.size))
        row_group = np.repeat(np.arange(starts.size), cnt)
        fsum = np.add.reduceat(fn, starts)
        w = np.where(fsum[row_group] > 0, fn, 1.0)   # unweighted if no force at all
        wsum = np.add.reduceat(w, starts)
        p = np.add.reduceat(w[:, None] * pos, starts) / wsum[:, None]
        nrm = np.add.reduceat(w[:, None] * normal, starts)
        nn = np.linalg.norm(nrm, axis=1)
        nrm = np.where(nn[:, None] > 0, nrm / np.maximum(nn, 1e-300)[:, None], normal[starts])
        big = np.iinfo(np.int64).max
        on_step = np.minimum.reduceat(np.where(onset, st, big), starts)
        has_on = on_step < big
        step = np.where(has_on, on_step, st[starts])
        v_on = np.maximum.reduceat(np.where(st == on_step[row_group], vn, -np.inf), starts)
        v_all = np.maximum.reduceat(vn, starts)
        speed = np.maximum(np.where(has_on, v_on, v_all), 0.0)
        return {"time": step * dt, "frame": fr[starts],
                "body": body[starts], "pos": p, "normal": nrm,
                "impulse": np.stack([fsum * dt, np.add.reduceat(ft, starts) * dt], axis=1),
                "speed": speed, "onset": has_on}

    # ------------------------------------------------------------------ result
    def finish(self, status: str = "ok") -> Trajectory:
        from .cameras import evaluate_cameras
        n = self.n
        # a divergent rollout: keep only the contacts of recorded frames
        self._buf = [_rows_before(b, n) for b in self._buf]
        self._buf = [b for b in self._buf if b is not None]
        self._flush_contacts()
        self._derive(n)
        e, scene = self.engine, self.scene
        times = np.arange(n) / scene.fps
        ev = _concat_events(self._events)
        K = ev["time"].shape[0]
        canonical = self._canonical if self._canonical is not None else scene.to_dict()
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
            contact_time=ev["time"].astype(float).reshape(K),
            contact_frame=ev["frame"].astype(np.int64).reshape(K),
            contact_body=ev["body"].astype(np.int64).reshape(K, 2),
            contact_pos=ev["pos"].astype(float).reshape(K, 3),
            contact_normal=ev["normal"].astype(float).reshape(K, 3),
            contact_impulse=ev["impulse"].astype(float).reshape(K, 2),
            contact_speed=ev["speed"].astype(float).reshape(K),
            contact_onset=ev["onset"].astype(bool).reshape(K),
            camera_names=tuple(c.name for c in scene.cameras),
            camera_K=cam.K, camera_size=cam.size, camera_w2c=cam.w2c, active_shot=cam.active_shot,
            fps=int(scene.fps), physics_hz=int(scene.physics_hz), engine=e.name,
            engine_version=e.version, seed=self.seed, scene_hash=scene.content_hash(canonical),
            scene=canonical, status=status,
            extra={"substeps": int(scene.substeps), "contact_threshold": float(scene.contact_threshold),
                   **getattr(e, "extra", {})},
        )


def _rows_before(entry, n: int):
    """A contact buffer entry cut to its rows of frames < ``n`` (None if none)."""
    s, f, c = entry
    if isinstance(f, int):
        return entry if f < n else None
    keep = f < n
    if keep.all():
        return entry
    if not keep.any():
        return None
    return s[keep], f[keep], c.subset(keep)


_EVENT_SHAPES = {"time": (0,), "frame": (0,), "body": (0, 2), "pos": (0, 3), "normal": (0, 3),
                 "impulse": (0, 2), "speed": (0,), "onset": (0,)}


def _concat_events(batches: list[dict]) -> dict:
    """All event batches as arrays, ordered by time, then body pair."""
    if not batches:
        return {k: np.zeros(shape) for k, shape in _EVENT_SHAPES.items()}
    ev = {k: np.concatenate([b[k] for b in batches]) for k in _EVENT_SHAPES}
    order = np.lexsort((ev["body"][:, 1], ev["body"][:, 0], ev["time"]))
    return {k: v[order] for k, v in ev.items()}
