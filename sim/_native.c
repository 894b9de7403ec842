/* sim._native: the per-physics-step part of a MuJoCo rollout in C.
 *
 * `sim.rollout` on MuJoCo hands this module runs of physics steps between two
 * control updates (`sim.controller.CONTROL_DECIMATION` steps) or frame ends. Per
 * step it does exactly what the Python loop does (sim/controller.py
 * `Controller.before_step` / `after_step`, sim/mujoco_engine.py `MujocoEngine.step`
 * / `touching_characters` / `_extract_contacts` / `check_step`), in the same order
 * and with the same floating-point operations, so both paths give bit-identical
 * trajectories (tests/test_sim_native.py):
 *
 *   1. contact gate: which characters touch anything / touch a support with a foot
 *      in this step (d->contact after mj_step1 are the contacts the step resolves);
 *   2. for each character with a foot on a support and the assist on: the torso
 *      orientation PD torque (plus the push-off's spin-cancelling torque), the
 *      commanded assist force and torque clipped into the feet's friction cone and
 *      torque bound, applied as xfrc_applied (force at the extrapolated COM);
 *   3. mj_step2; the step's contacts with their constraint forces are appended to
 *      an output buffer and the feet's support force / friction measured;
 *   4. applied forces cleared, mj_step1, divergence check (|qvel| <= limit and no
 *      bad-acceleration warning); a failing step ends the run and Python looks
 *      closer (`MujocoEngine.check_step`): a real divergence is named and the failed
 *      step's contacts dropped, a false alarm (a fast spinning link) goes on.
 *
 * Every CONTROL_DECIMATION steps, before step 1, the control update runs here too
 * ("control" section below: plans, poses, PD targets, assist command); at frame
 * ends `sample` writes the recorder's per-frame arrays. Python keeps planning,
 * scripted kicks and pushes (one-step runs), contact events and everything else.
 *
 * The controller's per-step state lives in a (C, NCOL) float64 array shared with
 * Python (column layout: sim/mujoco_engine.py `NativeStepper`). Only the standard
 * CPython API is used (no numpy headers): arrays come in through the buffer
 * protocol and stay referenced by the context object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <mujoco/mujoco.h>

/* per-character state columns (keep in sync with NativeStepper in mujoco_engine.py) */
enum {
  C_ASSIST_ON = 0, C_FORCE = 1, C_YAW = 4, C_YAW_RATE = 5, C_SPINNING = 6, C_SPIN = 7,
  C_COM = 10, C_COMV = 13, C_PUSH_ON = 16, C_PUSH_POINT = 17, C_MU = 20, C_FN = 21, C_FT = 22,
  C_COM_HEIGHT = 23, C_FRAME_FORCE = 24, C_FRAME_SUPPORT = 27, C_FOOT_TOUCH = 28,
  C_ROT_INERTIA = 29, C_PELVIS = 30, C_TORSO = 31, NCOL = 32
};
/* scalar parameters */
enum {
  P_T_UPDATE = 0, P_DT, P_KP_ROT, P_KD_ROT, P_FOOT_LEVER, P_PUSH_POSE_WEIGHT,
  P_CONE_INCLUDES_ASSIST, P_TORQUE_FROM_FRICTION, P_MAX_QVEL, P_FRAME_STEPS, NPARAM
};
/* one output contact row: step, body a, body b, pos(3), normal(3), fn, ft, vn, depth */
#define ROW 13

typedef struct {
  PyObject_HEAD
  const mjModel* m;
  mjData* d;
  PyObject* owner_m;            /* the MjModel / MjData objects, kept alive */
  PyObject* owner_d;
  Py_buffer cs, par, geom_code, geom_body, foot_char, body_char, mu_table;
  Py_buffer cc, ds, segs, gtab, ovs, jumps, kpar;   /* control tables (set_control) */
  Py_buffer r_pos, r_quat, r_lin, r_ang, r_jq, r_com, r_comv;      /* recorder arrays (bind) */
  Py_buffer r_ids, r_root, r_static, r_qadr, r_pelvis, r_support, r_assist;
  int bound, F, J;
  int control;                  /* run the control update in C */
  int decimation;
  int C, B, ngeom;
  int badqacc;                  /* mjWARN_BADQACC count already reported */
  double* rows;                 /* buffered contact rows */
  Py_ssize_t nrows, caprows;
} Ctx;

static double py_max(double a, double b) { return (b > a) ? b : a; }   /* Python max(a, b) */
static double py_min(double a, double b) { return (b < a) ? b : a; }   /* Python min(a, b) */

static double py_mod(double a, double b) {                             /* Python a % b */
  double r = fmod(a, b);
  if (r != 0.0) {
    if ((b < 0) != (r < 0)) r += b;
  } else {
    r = copysign(0.0, b);
  }
  return r;
}

static int grow(Ctx* c, Py_ssize_t need) {
  if (c->nrows + need <= c->caprows) return 0;
  Py_ssize_t cap = c->caprows ? c->caprows : 1024;
  while (cap < c->nrows + need) cap *= 2;
  double* p = (double*)PyMem_Realloc(c->rows, (size_t)cap * ROW * sizeof(double));
  if (!p) { PyErr_NoMemory(); return -1; }
  c->rows = p;
  c->caprows = cap;
  return 0;
}

/* Python MujocoEngine.apply_force(body, (fx, fy, fz), torque, point): accumulate in
 * the same order (force, then r x F about xipos, then the torque) */
static void apply_force(Ctx* c, int bid, double fx, double fy, double fz,
                        const double* torque, const double* point) {
  double* xf = c->d->xfrc_applied + 6 * bid;
  double w0 = xf[0], w1 = xf[1], w2 = xf[2], w3 = xf[3], w4 = xf[4], w5 = xf[5];
  w0 += fx;
  w1 += fy;
  w2 += fz;
  if (point) {
    const double* ci = c->d->xipos + 3 * bid;
    double rx = point[0] - ci[0], ry = point[1] - ci[1], rz = point[2] - ci[2];
    w3 += ry * fz - rz * fy;
    w4 += rz * fx - rx * fz;
    w5 += rx * fy - ry * fx;
  }
  if (torque) {
    w3 += torque[0];
    w4 += torque[1];
    w5 += torque[2];
  }
  xf[0] = w0; xf[1] = w1; xf[2] = w2; xf[3] = w3; xf[4] = w4; xf[5] = w5;
}

/* Controller.before_step's gate and assist for one step (time t). */
static void gate_and_assist(Ctx* c, double t) {
  const mjData* d = c->d;
  double* cs = (double*)c->cs.buf;
  const double* par = (const double*)c->par.buf;
  const int64_t* code = (const int64_t*)c->geom_code.buf;
  int C = c->C;
  char hit[2 * 64 + 1];
  memset(hit, 0, (size_t)(2 * C + 1));
  for (int i = 0; i < d->ncon; i++) {
    hit[code[d->contact[i].geom[0]]] = 1;
    hit[code[d->contact[i].geom[1]]] = 1;
  }
  const double kp = par[P_KP_ROT], kd = par[P_KD_ROT], lever = par[P_FOOT_LEVER];
  const double dt_up = t - par[P_T_UPDATE];
  const int cone_assist = par[P_CONE_INCLUDES_ASSIST] != 0.0;
  const int torque_friction = par[P_TORQUE_FROM_FRICTION] != 0.0;
  for (int ci = 0; ci < C; ci++) {
    double* s = cs + NCOL * ci;
    int foot = hit[C + ci];
    int touching = hit[ci] | foot;
    if (touching) s[C_FRAME_SUPPORT] = 1.0;
    s[C_FOOT_TOUCH] = foot ? 1.0 : 0.0;
    if (!(foot && s[C_ASSIST_ON] != 0.0)) continue;
    /* Controller._orient_torque on the torso */
    int torso = (int)s[C_TORSO], pel = (int)s[C_PELVIS];
    const double* q = d->xquat + 4 * torso;
    const double* av = d->cvel + 6 * torso;
    double w = q[0], x = q[1], y = q[2], z = q[3];
    double wx = av[0], wy = av[1], wz = av[2];
    double upx = 2 * (x * z + w * y), upy = 2 * (y * z - w * x);
    double yaw = atan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z));
    double err_yaw = py_mod(s[C_YAW] - yaw + M_PI, 2 * M_PI) - M_PI;
    double I = s[C_ROT_INERTIA];
    double tq[3] = {I * (kp * upy - kd * wx), I * (kp * -upx - kd * wy),
                    I * (kp * err_yaw - kd * (wz - s[C_YAW_RATE]))};
    if (s[C_SPINNING] != 0.0) {
      double ppw = par[P_PUSH_POSE_WEIGHT];
      tq[0] = s[C_SPIN] + ppw * tq[0];
      tq[1] = s[C_SPIN + 1] + ppw * tq[1];
      tq[2] = s[C_SPIN + 2] + ppw * tq[2];
    }
    /* Controller._clip */
    double fx = s[C_FORCE], fy = s[C_FORCE + 1], fz = s[C_FORCE + 2];
    fz = py_max(fz, 0.0);
    double mu = s[C_MU], fcon = s[C_FN], tcon = s[C_FT];
    double fn = fcon + (cone_assist ? fz : 0.0);
    double ft = sqrt(fx * fx + fy * fy);       /* controller._norm2 */
    double lim = py_max(mu * fn - (cone_assist ? tcon : 0.0), 0.0);
    if (ft > lim) {
      double sc = lim / ft;
      fx *= sc;
      fy *= sc;
    }
    double tx = tq[0], ty = tq[1], tz = tq[2];
    double spare = torque_friction ? py_max(lim - sqrt(fx * fx + fy * fy), 0.0) : 0.0;
    double tlim = lever * fn + spare * s[C_COM_HEIGHT];
    double tn = sqrt(tx * tx + ty * ty);
    if (tn > tlim) {
      double sc = tlim / tn;
      tx *= sc;
      ty *= sc;
    }
    double ylim = mu * fn * lever;
    tz = py_max(-ylim, py_min(ylim, tz));
    /* apply: the force at the extrapolated COM (the push-off's horizontal part at
     * the push point), the torque on the torso */
    double point[3] = {s[C_COM] + s[C_COMV] * dt_up, s[C_COM + 1] + s[C_COMV + 1] * dt_up,
                       s[C_COM + 2] + s[C_COMV + 2] * dt_up};
    if (s[C_PUSH_ON] != 0.0) {
      apply_force(c, pel, 0.0, 0.0, fz, NULL, point);
      apply_force(c, pel, fx, fy, 0.0, NULL, s + C_PUSH_POINT);
    } else {
      apply_force(c, pel, fx, fy, fz, NULL, point);
    }
    double tq2[3] = {tx, ty, tz};
    apply_force(c, torso, 0.0, 0.0, 0.0, tq2, NULL);
    s[C_FRAME_FORCE] += fx;
    s[C_FRAME_FORCE + 1] += fy;
    s[C_FRAME_FORCE + 2] += fz;
  }
}

/* MujocoEngine._extract_contacts (with forces) into the row buffer, and
 * Controller.after_step's support measurements into fn/ft/mu. Returns the number
 * of rows written (not yet committed), or -1 on error. */
static Py_ssize_t extract(Ctx* c, int64_t step, double* fn, double* ft, double* mu) {
  const mjData* d = c->d;
  const int64_t* gb = (const int64_t*)c->geom_body.buf;
  const int64_t* foot = (const int64_t*)c->foot_char.buf;
  const int64_t* chars = (const int64_t*)c->body_char.buf;
  const double* table = (const double*)c->mu_table.buf;
  int C = c->C, B = c->B;
  for (int ci = 0; ci < C; ci++) { fn[ci] = 0.0; ft[ci] = 0.0; mu[ci] = INFINITY; }
  if (grow(c, d->ncon) < 0) return -1;
  double* out = c->rows + c->nrows * ROW;
  Py_ssize_t n = 0;
  for (int i = 0; i < d->ncon; i++) {
    const mjContact* con = d->contact + i;
    int adr = con->efc_address;
    if (adr < 0) continue;                     /* inside the margin, no constraint */
    int64_t a = gb[con->geom[0]], b = gb[con->geom[1]];
    double f = d->efc_force[adr], t = 0.0;
    if (con->dim >= 3) {
      double r1 = d->efc_force[adr + 1], r2 = d->efc_force[adr + 2];
      t = sqrt(r1 * r1 + r2 * r2);
    }
    double* r = out + n * ROW;
    r[0] = (double)step;
    r[1] = (double)a;
    r[2] = (double)b;
    r[3] = con->pos[0]; r[4] = con->pos[1]; r[5] = con->pos[2];
    r[6] = con->frame[0]; r[7] = con->frame[1]; r[8] = con->frame[2];
    r[9] = f;
    r[10] = t;
    r[11] = -d->efc_vel[adr];
    r[12] = -con->dist;
    n++;
    if (a < 0 || b < 0) continue;
    int64_t ca = foot[a], cb = foot[b];
    if (ca < C && chars[b] != ca) {
      fn[ca] += f;
      ft[ca] += t;
      mu[ca] = py_min(mu[ca], table[ca * B + b]);
    }
    if (cb < C && chars[a] != cb) {
      fn[cb] += f;
      ft[cb] += t;
      mu[cb] = py_min(mu[cb], table[cb * B + a]);
    }
  }
  return n;
}

/* ========================================================================= control
 * The control update (sim/controller.py `Controller._update` with `root_reference`,
 * `_feet`, `Gait`, `_pose`, `_punch`, `_kick`, `_takeoff_velocity`, `leg_ik` and
 * `MujocoEngine.set_pd_targets`), run every CONTROL_DECIMATION steps before the
 * gate. The plans are exported once by Python (sim/mujoco_engine.py
 * `NativeStepper._export_control`) as tables whose columns are listed here. Every
 * expression keeps the Python evaluation order, so the result is bit-identical. */
#define MAXJ 32
#define MAXOV 32
/* per-character constants (cc) */
enum {
  K_MASS = 0, K_THIGH, K_SHIN, K_ANKLE_H, K_HIP_OFF, K_PELVIS_HEIGHT, K_SCALE, K_SHOULDER_Z,
  K_SHOULDER_Y, K_PELVIS_ID, K_ROOT_DADR, K_FOOT0_ID, K_FOOT1_ID, K_SEG0, K_NSEG, K_OV0, K_NOV,
  K_JUMP0, K_NJUMP, K_CHEST_ID, K_KP0, K_KD0 = K_KP0 + MAXJ, K_QLO = K_KD0 + MAXJ,
  K_QHI = K_QLO + MAXJ, K_ACT = K_QHI + MAXJ, KCOL = K_ACT + MAXJ
};
/* per-character dynamic state (ds) */
enum { D_ZREF = 0, D_SWAY, D_LEGH = 3, D_QTIME, D_RAGDOLL, D_QPREV, DCOL = D_QPREV + MAXJ };
/* segments */
enum {
  S_KIND = 0, S_T0, S_T1, S_P0, S_P1 = 5, S_YAW0 = 7, S_YAW1, S_GROUND, S_GAIT,
  S_TRAP = 11, /* L, a, v, v0, v1, ta, td, da, dd, tc */
  S_COM0 = 21, S_VEL0 = 24, S_ENDS = 27, /* x0, y0, x1, y1, L */
  S_GTAB = 32, S_GLEN, S_DUTY, S_LIFT, S_GSWAY, S_GL, S_DIR = 38, S_PHASE_END = 40, S_GRUN,
  S_GSCALE, SCOL
};
enum { SEG_HOLD = 0, SEG_MOVE, SEG_TURN, SEG_FLIGHT };
enum { GAIT_NONE = 0, GAIT_WALK, GAIT_RUN };
/* overlays */
enum { O_KIND = 0, O_T0, O_T1, O_SIDE, O_TARGET, O_TARGET_CHEST, O_JUMP, OCOL };
enum { OV_PUNCH = 1, OV_KICK, OV_HIT, OV_CROUCH, OV_LAND, OV_PUSH, OV_FALL, OV_GET_UP, OV_FLIGHT };
/* jumps: t_off, t_land, v(3), has_land, land(3), z0 */
enum { J_TOFF = 0, J_TLAND, J_V, J_HAS_LAND = 5, J_LAND, J_Z0 = 9, JCOL };
/* control parameters (kpar) */
enum {
  Q_G = 0, Q_KP_XY, Q_KD_XY, Q_KP_Z, Q_KD_Z, Q_MAX_VA, Q_PUSH_VA, Q_CROUCH_BACK, Q_CROUCH_DEPTH,
  Q_LAND_DEPTH, Q_PUSH_POINT, Q_PUSH_PRESS, Q_PUSH_LEG_K, Q_PUSH_LEAD, Q_FLIGHT_REACH,
  Q_FLIGHT_TRUNK, Q_LAND_TIME, Q_LAND_EARLY, Q_LAND_BRAKE, Q_LAND_VA, Q_WEIGHT_SHARE,
  Q_GAIT_CROUCH, Q_RUN_STEP0, Q_RUN_STEP1, Q_RUN_STEP2, Q_TOE_LEVER, Q_SETTLE, Q_DECIMATION,
  Q_NJ, Q_LEG_L = 29, Q_LEG_R = 35, Q_ARM_L = 41, Q_ARM_R = 46, Q_AB_FLEX = 51, Q_AB_TWIST,
  Q_NECK_FLEX, NKPAR
};

typedef struct {
  double pos[3], vel[3], acc[3], yaw, yaw_rate, speed, ground, distance;
  int gait, airborne;
} Ref;

typedef struct { int kind; double t0, t1; int side, target, chest, jump; } Ov;

static double smooth_bump(double t, double t0, double t1, double rise) {
  double x = (t - t0) / py_max(t1 - t0, 1e-9);
  double u;
  if (x <= 0 || x >= 1) return 0.0;
  if (x < rise) u = x / rise;
  else if (x > 1 - rise) u = (1 - x) / rise;
  else return 1.0;
  return u * u * (3 - 2 * u);
}

static double wrap(double a) { return py_mod(a + M_PI, 2 * M_PI) - M_PI; }

static double norm2(double x, double y) { return sqrt(x * x + y * y); }

static void leg_ik(double dx, double dz, double l1, double l2, double* hip, double* knee) {
  double L = py_min(py_max(norm2(dx, dz), 0.25 * (l1 + l2)), 0.999 * (l1 + l2));
  *knee = M_PI - acos(py_max(-1.0, py_min(1.0, (l1 * l1 + l2 * l2 - L * L) / (2 * l1 * l2))));
  double alpha = acos(py_max(-1.0, py_min(1.0, (l1 * l1 + L * L - l2 * l2) / (2 * l1 * L))));
  *hip = atan2(dx, -dz) + alpha;
}

/* Python's _interp(x, xp, fp) on n points */
static double interp(double x, const double* xp, const double* fp, int n) {
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  int lo = 0, hi = n;                      /* bisect_right */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (x < xp[mid]) hi = mid; else lo = mid + 1;
  }
  int j = lo - 1;
  double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  return slope * (x - xp[j]) + fp[j];
}

typedef struct { const double* s; const double* gt; } Gt;

static double gait_phase(const Gt* g, double d) {
  int n = (int)g->s[S_GLEN];
  const double* tab = g->gt + (Py_ssize_t)g->s[S_GTAB];
  return interp(d, tab, tab + n, n);
}

static double gait_plant(const Gt* g, double k, double offset) {
  double ph = k - offset + g->s[S_DUTY] / 2;
  if (ph >= g->s[S_PHASE_END]) return g->s[S_GL];
  int n = (int)g->s[S_GLEN];
  const double* tab = g->gt + (Py_ssize_t)g->s[S_GTAB];
  return interp(py_max(ph, 0.0), tab + n, tab, n);
}

static void gait_foot(const Gt* g, double phase, double offset, double* dist, double* sw) {
  double duty = g->s[S_DUTY];
  double x = phase + offset;
  double n = floor(x);
  if (x - n < duty) { *dist = gait_plant(g, n, offset); *sw = -1.0; return; }
  double a = gait_plant(g, n, offset), b = gait_plant(g, n + 1, offset);
  if (b - a < 1e-6) { *dist = b; *sw = -1.0; return; }
  double p0 = py_max(n - offset + duty, 0.0);
  double p1 = n + 1 - offset;
  double u = py_min(py_max((phase - p0) / py_max(p1 - p0, 1e-9), 0.0), 1.0);
  *dist = a + (b - a) * u * u * (3 - 2 * u);
  *sw = u;
}

static double step_length(const double* s, const double* kpar, double v) {
  if (s[S_GRUN] != 0.0)
    return py_min(kpar[Q_RUN_STEP0] + kpar[Q_RUN_STEP1] * v, kpar[Q_RUN_STEP2]) * s[S_GSCALE];
  return py_min(0.25 + 0.2 * v, 0.7) * s[S_GSCALE];
}

static const double* plan_segment(const double* segs, const double* cc, double t) {
  int s0 = (int)cc[K_SEG0], n = (int)cc[K_NSEG];
  for (int i = 0; i < n; i++) {
    const double* s = segs + (Py_ssize_t)(s0 + i) * SCOL;
    if (s[S_T0] <= t && t < s[S_T1]) return s;
  }
  return segs + (Py_ssize_t)(s0 + n - 1) * SCOL;
}

static void profile(const double* s, double t, double* d, double* v_out, double* a_out) {
  const double* p = s + S_TRAP;
  double L = p[0], a = p[1], v = p[2], v0 = p[3], v1 = p[4], ta = p[5], td = p[6], da = p[7],
         tc = p[9];
  double tau = t - s[S_T0];
  if (tau <= 0) { *d = 0.0; *v_out = v0; *a_out = 0.0; return; }
  if (tau < ta) { *d = v0 * tau + a * tau * tau / 2; *v_out = v0 + a * tau; *a_out = a; return; }
  tau -= ta;
  if (tau < tc) { *d = da + v * tau; *v_out = v; *a_out = 0.0; return; }
  tau -= tc;
  if (tau < td) {
    *d = da + v * tc + v * tau - a * tau * tau / 2; *v_out = v - a * tau; *a_out = -a; return;
  }
  *d = L; *v_out = v1; *a_out = 0.0;
}

static void root_reference(const double* segs, const double* cc, double t, double G, Ref* r) {
  const double* s = plan_segment(segs, cc, t);
  int kind = (int)s[S_KIND];
  memset(r, 0, sizeof(*r));
  r->ground = s[S_GROUND];
  if (kind == SEG_MOVE) {
    const double* e = s + S_ENDS;
    double x0 = e[0], y0 = e[1], x1 = e[2], y1 = e[3], L = e[4];
    double d, v, a;
    profile(s, t, &d, &v, &a);
    double ux = 0.0, uy = 0.0;
    if (L > 1e-9) { ux = (x1 - x0) / L; uy = (y1 - y0) / L; }
    double dm = py_min(d, L);
    double turn = py_min(1.0, py_max(0.0, (t - s[S_T0]) / 0.25));
    r->yaw = s[S_YAW0] + wrap(s[S_YAW1] - s[S_YAW0]) * (turn * turn * (3 - 2 * turn));
    r->pos[0] = x0 + ux * dm; r->pos[1] = y0 + uy * dm; r->pos[2] = s[S_GROUND];
    r->vel[0] = ux * v; r->vel[1] = uy * v; r->vel[2] = 0.0;
    r->acc[0] = ux * a; r->acc[1] = uy * a; r->acc[2] = 0.0;
    r->gait = v > 0.05 ? (int)s[S_GAIT] : GAIT_NONE;
    r->speed = v;
    r->distance = d;
    return;
  }
  if (kind == SEG_TURN) {
    double x = (t - s[S_T0]) / py_max(s[S_T1] - s[S_T0], 1e-9);
    x = py_min(py_max(x, 0.0), 1.0);
    double w = wrap(s[S_YAW1] - s[S_YAW0]);
    r->yaw = s[S_YAW0] + w * x * x * (3 - 2 * x);
    r->yaw_rate = w * 6 * x * (1 - x) / py_max(s[S_T1] - s[S_T0], 1e-9);
    r->pos[0] = s[S_P0]; r->pos[1] = s[S_P0 + 1]; r->pos[2] = s[S_GROUND];
    return;
  }
  if (kind == SEG_FLIGHT) {
    double tau = t - s[S_T0];
    const double c[3] = {0.0, 0.0, -G / 2}, gv[3] = {0.0, 0.0, -G};
    double p[3], v[3];
    for (int i = 0; i < 3; i++) {
      p[i] = s[S_COM0 + i] + s[S_VEL0 + i] * tau + c[i] * tau * tau;
      v[i] = s[S_VEL0 + i] + gv[i] * tau;
    }
    r->pos[0] = p[0]; r->pos[1] = p[1]; r->pos[2] = s[S_GROUND];
    r->vel[0] = v[0]; r->vel[1] = v[1]; r->vel[2] = 0.0;
    r->yaw = s[S_YAW0];
    r->airborne = 1;
    return;
  }
  r->pos[0] = s[S_P0]; r->pos[1] = s[S_P0 + 1]; r->pos[2] = s[S_GROUND];
  r->yaw = s[S_YAW0];
}

typedef struct {
  Ctx* c;
  const double *cc, *segs, *gt, *ovs, *jumps, *kpar;
  double* ds;
  int NJ;
} Ctl;

/* Controller._feet: ankle targets (x, y, lift), lifts and the pelvis sway */
static void feet_targets(Ctl* k, const Ref* ref, double t, double feet[2][3], double lifts[2],
                         double sway[2]) {
  const double* cc = k->cc;
  const double* seg = plan_segment(k->segs, cc, t);
  double hip_off = cc[K_HIP_OFF];
  double full = cc[K_PELVIS_HEIGHT] - cc[K_ANKLE_H] - 0.006;
  const double* move = NULL;
  double phase = 0.0, v_now = 0.0;
  Gt g;
  if ((int)seg[S_KIND] == SEG_MOVE) {
    move = seg;
    g.s = move; g.gt = k->gt;
    v_now = ref->speed;
    phase = gait_phase(&g, ref->distance);
  } else {
    int s0 = (int)cc[K_SEG0], n = (int)cc[K_NSEG];
    for (int i = 0; i < n; i++) {
      const double* sg = k->segs + (Py_ssize_t)(s0 + i) * SCOL;
      if ((int)sg[S_KIND] == SEG_MOVE && sg[S_T1] <= t && t < sg[S_T1] + k->kpar[Q_SETTLE]) {
        move = sg;
        phase = sg[S_PHASE_END] + (t - sg[S_T1]) / k->kpar[Q_SETTLE];
      }
    }
    if (move) { g.s = move; g.gt = k->gt; }
  }
  if (!move) {
    double c = cos(ref->yaw), sn = sin(ref->yaw);
    double lx = -sn * hip_off, ly = c * hip_off;
    double bx = ref->pos[0], by = ref->pos[1];
    k->ds[D_LEGH] = full;
    feet[0][0] = bx + lx; feet[0][1] = by + ly; feet[0][2] = 0.0;
    feet[1][0] = bx - lx; feet[1][1] = by - ly; feet[1][2] = 0.0;
    lifts[0] = lifts[1] = 0.0;
    sway[0] = sway[1] = 0.0;
    return;
  }
  double ux = move[S_DIR], uy = move[S_DIR + 1];
  double lx = -uy * hip_off, ly = ux * hip_off;
  double x0 = move[S_ENDS], y0 = move[S_ENDS + 1];
  double step = step_length(move, k->kpar, v_now);
  double reach = 0.99 * (cc[K_THIGH] + cc[K_SHIN]);
  double duty = move[S_DUTY];
  double h_gait = sqrt(py_max(pow(reach, 2.0) - pow(duty * step + 0.04, 2.0), 0.0)) -
                  k->kpar[Q_GAIT_CROUCH] * py_min(1.0, v_now / 0.5);
  double kk = py_min(1.0, v_now / 0.5);
  k->ds[D_LEGH] = full + (py_min(h_gait, full) - full) * kk;
  const double offs[2] = {duty / 2, duty / 2 + 0.5}, signs[2] = {1.0, -1.0};
  for (int i = 0; i < 2; i++) {
    double d, sw;
    gait_foot(&g, phase, offs[i], &d, &sw);
    double lift = sw >= 0 ? move[S_LIFT] * pow(sin(M_PI * sw), 2.0) : 0.0;
    feet[i][0] = x0 + ux * d + signs[i] * lx;
    feet[i][1] = y0 + uy * d + signs[i] * ly;
    feet[i][2] = lift;
    lifts[i] = lift;
  }
  double m = 1.0, b = phase / 0.5;
  if (b < m) m = b;
  b = py_max(0.0, (move[S_PHASE_END] + 0.5 - phase) / 0.5);
  if (b < m) m = b;
  double amp = move[S_GSWAY] * m;
  double c = cos(2 * M_PI * phase);
  sway[0] = lx / hip_off * amp * c;
  sway[1] = ly / hip_off * amp * c;
}

static double yaw_of(const double* q) {
  double w = q[0], x = q[1], y = q[2], z = q[3];
  return atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z));
}

/* Controller._local: v in the heading frame of rquat */
static void local(const double* rquat, const double* v, double* out) {
  double yaw = yaw_of(rquat);
  double c = cos(yaw), s = sin(yaw);
  out[0] = c * v[0] + s * v[1];
  out[1] = -s * v[0] + c * v[1];
  out[2] = v[2];
}

/* Controller._target_point: a body's position, or a character's chest (torso + 0.25 m) */
static void target_point(Ctl* k, const Ov* o, double* out) {
  const double* p = k->c->d->xpos + 3 * o->target;
  if (o->chest) {
    out[0] = p[0] + 0.0; out[1] = p[1] + 0.0; out[2] = p[2] + 0.25;
  } else {
    out[0] = p[0]; out[1] = p[1]; out[2] = p[2];
  }
}

static const double* arm(const double* kpar, int side) { return kpar + (side ? Q_ARM_R : Q_ARM_L); }
static const double* leg(const double* kpar, int side) { return kpar + (side ? Q_LEG_R : Q_LEG_L); }
#define IDX(p, i) ((int)(p)[i])

static void punch(Ctl* k, double* q, double* kps, const Ov* o, double w, double t,
                  const double* rpos, const double* rquat) {
  const double* kp = k->kpar;
  const double* cc = k->cc;
  double sgn = o->side == 0 ? 1.0 : -1.0;
  double tgt[3], shoulder[3], rel[3], d[3];
  target_point(k, o, tgt);
  shoulder[0] = rpos[0] + 0; shoulder[1] = rpos[1] + 0; shoulder[2] = rpos[2] + cc[K_SHOULDER_Z];
  for (int i = 0; i < 3; i++) rel[i] = tgt[i] - shoulder[i];
  local(rquat, rel, d);
  d[1] -= sgn * cc[K_SHOULDER_Y];
  double flex = atan2(d[0], -d[2]);
  double horiz = norm2(d[0], d[2]);
  double abd = atan2(sgn * d[1], horiz);
  double ext = smooth_bump(t, o->t0 + 0.25 * (o->t1 - o->t0), o->t1, 0.3);
  const double* ai = arm(kp, o->side);
  q[IDX(ai, 0)] = (1 - ext) * 1.2 * w + ext * flex;
  q[IDX(ai, 1)] = (1 - ext) * 0.15 + ext * abd;
  q[IDX(ai, 3)] = (1 - ext) * 2.0 * w + ext * 0.05;
  q[IDX(kp, Q_AB_TWIST)] += -sgn * 0.35 * ext;
  const double* other = arm(kp, !o->side);
  q[IDX(other, 0)] = 1.0 * w;
  q[IDX(other, 3)] = 2.0 * w;
  for (int i = 0; i < 5; i++) kps[IDX(ai, i)] = 1.0;
}

static void kick(Ctl* k, double* q, double* kps, const Ov* o, double w, double t,
                 const double* rpos, const double* rquat) {
  const double* kp = k->kpar;
  double tgt[3], rel[3], d[3];
  target_point(k, o, tgt);
  for (int i = 0; i < 3; i++) rel[i] = tgt[i] - rpos[i];
  local(rquat, rel, d);
  double flex = py_min(1.6, py_max(0.6, atan2(d[0], -(d[2] - 0.0))));
  double chamber = smooth_bump(t, o->t0, o->t1, 0.3);
  double ext = smooth_bump(t, o->t0 + 0.3 * (o->t1 - o->t0), o->t1 - 0.15 * (o->t1 - o->t0), 0.35);
  const double* li = leg(kp, o->side);
  q[IDX(li, 0)] = chamber * (1.2 * (1 - ext) + flex * ext);
  q[IDX(li, 3)] = chamber * (1.8 * (1 - ext) + 0.1 * ext);
  q[IDX(li, 4)] = -0.4 * chamber;
  q[IDX(kp, Q_AB_FLEX)] += -0.25 * ext;
  for (int s = 0; s < 2; s++) {
    q[IDX(arm(kp, s), 0)] = 0.6 * chamber;
    q[IDX(arm(kp, s), 3)] = 1.6 * chamber;
  }
  for (int i = 0; i < 6; i++) kps[IDX(li, i)] = 1.0;
}

/* Controller._place_leg: hip, knee and ankle of leg ``li`` reaching the ankle target
 * (dx ahead, dz above the hip); beyond reach and with ``may_rise`` the foot rises
 * onto its toes (lever ``toe``) */
static void place_leg(double* q, const double* li, double dx, double dz, int may_rise, double l1,
                      double l2, double reach, double toe_lever) {
  double excess = norm2(dx, dz) - reach;
  double toe = 0.0;
  if (may_rise && excess > 0) {
    toe = asin(py_min(1.0, excess / toe_lever));
    dz += toe_lever * sin(toe);
  }
  double hip, knee;
  leg_ik(dx, dz, l1, l2, &hip, &knee);
  q[IDX(li, 0)] = hip;
  q[IDX(li, 3)] = knee;
  q[IDX(li, 4)] = knee - hip - toe;
}

/* Controller._pose: joint targets q, kp scale kps; returns the push's jump index or -1 */
static int pose(Ctl* k, double t, const Ref* ref, const Ov* over, int nover, const double* rpos,
                const double* rquat, double* q, double* kps) {
  const double* kp = k->kpar;
  const double* cc = k->cc;
  double* ds = k->ds;
  int NJ = k->NJ;
  for (int j = 0; j < NJ; j++) { q[j] = 0.0; kps[j] = 1.0; }
  double drop = 0.0, shift = 0.0;
  int push = -1;
  q[IDX(arm(kp, 0), 3)] = q[IDX(arm(kp, 1), 3)] = 0.25;
  q[IDX(arm(kp, 0), 1)] = q[IDX(arm(kp, 1), 1)] = 0.08;
  double feet[2][3], lift[2], sway[2];
  feet_targets(k, ref, t, feet, lift, sway);
  double yaw = yaw_of(rquat);
  double cy = cos(yaw), sy = sin(yaw);
  double hip_off = cc[K_HIP_OFF];
  double l1 = cc[K_THIGH], l2 = cc[K_SHIN], ankle_h = cc[K_ANKLE_H];
  double reach = 0.99 * (l1 + l2);
  double scale = cc[K_SCALE];
  double rx = rpos[0], ry = rpos[1], rz = rpos[2];
  double lhx = -sy * hip_off, lhy = cy * hip_off;
  double hips[2][2] = {{rx + lhx, ry + lhy}, {rx - lhx, ry - lhy}};
  double dxs[2];
  int stance[2];
  for (int i = 0; i < 2; i++) {
    dxs[i] = (feet[i][0] - hips[i][0]) * cy + (feet[i][1] - hips[i][1]) * sy;
    stance[i] = lift[i] < 0.01;
  }
  double h_leg = ds[D_LEGH];
  double z_ref = ref->ground + ankle_h + py_min(h_leg, cc[K_PELVIS_HEIGHT] - ankle_h - 0.006);
  double toe_lever = kp[Q_TOE_LEVER];
  for (int i = 0; i < 2; i++) {
    const double* li = leg(kp, i);
    double z_hip = stance[i] ? z_ref : py_min(rz, z_ref + 0.05);
    double dz = feet[i][2] + ankle_h + ref->ground - z_hip;
    place_leg(q, li, dxs[i], dz, stance[i] && dxs[i] < 0, l1, l2, reach, toe_lever * scale);
  }
  int ab_flex = IDX(kp, Q_AB_FLEX);
  if (ref->gait != GAIT_NONE) {
    int run = ref->gait == GAIT_RUN;
    for (int i = 0; i < 2; i++) {
      q[IDX(arm(kp, i), 0)] = -0.9 * dxs[i] * (run ? 1.6 : 1.2);
      q[IDX(arm(kp, i), 3)] = run ? 1.4 : 0.35;
    }
    q[ab_flex] = run ? 0.2 : 0.05;
  }
  ds[D_ZREF] = z_ref;
  int flying = 0;
  for (int n = 0; n < nover; n++) {
    const Ov* o = over + n;
    double w = smooth_bump(t, o->t0, o->t1, 0.35);
    if (o->kind == OV_CROUCH || o->kind == OV_PUSH || o->kind == OV_LAND) {
      double x = py_min(1.0, py_max(0.0, (t - o->t0) / py_max(o->t1 - o->t0, 1e-9)));
      double d;
      if (o->kind == OV_CROUCH) {
        d = kp[Q_CROUCH_DEPTH] * x * x * (3 - 2 * x);
        shift = -kp[Q_CROUCH_BACK] * x * x * (3 - 2 * x);
      } else if (o->kind == OV_PUSH) {
        d = kp[Q_CROUCH_DEPTH] * pow(1 - x, 2.0);
        push = o->jump;
        for (int s = 0; s < 2; s++)
          for (int i = 0; i < 6; i++) kps[IDX(leg(kp, s), i)] = kp[Q_PUSH_LEG_K];
        for (int s = 0; s < 2; s++) {
          q[IDX(arm(kp, s), 0)] = 0.8;
          q[IDX(arm(kp, s), 3)] = 0.6;
        }
        q[ab_flex] = 0.25 * (1 - x);
      } else {
        d = kp[Q_LAND_DEPTH] * smooth_bump(t, o->t0, o->t1, 0.3);
      }
      if (o->kind != OV_PUSH) {
        for (int s = 0; s < 2; s++)
          q[IDX(arm(kp, s), 0)] = o->kind == OV_CROUCH ? 0.8 * d / kp[Q_CROUCH_DEPTH] : 0.5;
        q[ab_flex] = (o->kind == OV_CROUCH ? 1.5 : -0.5) * d;
      }
      drop = py_max(drop, d);
    } else if (o->kind == OV_FLIGHT) {
      flying = 1;
      double x = (t - o->t0) / py_max(o->t1 - o->t0, 1e-9);
      double tuck = sin(M_PI * py_min(py_max(x, 0.0), 1.0));
      for (int s = 0; s < 2; s++) {
        const double* li = leg(kp, s);
        double lead = s == 0 ? 1.0 : 0.6;
        q[IDX(li, 0)] = (0.25 + 0.65 * tuck) * lead + kp[Q_FLIGHT_REACH] * x;
        q[IDX(li, 3)] = 0.25 + 1.1 * tuck * lead + 0.3 * x;
        q[IDX(li, 4)] = q[IDX(li, 3)] - q[IDX(li, 0)];
        q[IDX(arm(kp, s), 0)] = 0.8;
        q[IDX(arm(kp, s), 3)] = 0.6;
      }
      q[ab_flex] = kp[Q_FLIGHT_TRUNK];
    } else if (o->kind == OV_PUNCH) {
      punch(k, q, kps, o, w, t, rpos, rquat);
    } else if (o->kind == OV_KICK) {
      kick(k, q, kps, o, w, t, rpos, rquat);
    } else if (o->kind == OV_HIT) {
      q[ab_flex] += -0.35 * w;
      q[IDX(kp, Q_NECK_FLEX)] += -0.4 * w;
      for (int s = 0; s < 2; s++) {
        q[IDX(arm(kp, s), 0)] += 0.5 * w;
        q[IDX(arm(kp, s), 3)] += 0.8 * w;
      }
      double f = 1.0 - 0.6 * w;
      for (int j = 0; j < NJ; j++) kps[j] *= f;
    } else if (o->kind == OV_GET_UP) {
      double x = py_min(1.0, (t - o->t0) / py_max(o->t1 - o->t0, 1e-9));
      double f = 0.2 + 0.8 * x;
      for (int j = 0; j < NJ; j++) kps[j] *= f;
    }
  }
  if ((drop > 0 || push >= 0) && !flying) {
    z_ref = ds[D_ZREF] - drop;
    for (int i = 0; i < 2; i++) {
      const double* li = leg(kp, i);
      double dz = feet[i][2] + ankle_h + ref->ground - (push >= 0 ? rz : z_ref);
      if (push >= 0) dz -= kp[Q_PUSH_PRESS];
      place_leg(q, li, dxs[i], dz, push >= 0, l1, l2, reach, toe_lever * scale);
    }
    ds[D_ZREF] = z_ref;
  }
  ds[D_SWAY] = sway[0] + cos(ref->yaw) * shift;
  ds[D_SWAY + 1] = sway[1] + sin(ref->yaw) * shift;
  const double* lo = cc + K_QLO;
  const double* hi = cc + K_QHI;
  for (int j = 0; j < NJ; j++) {
    double v = q[j] < lo[j] ? lo[j] : q[j];        /* np.maximum(q, lo) */
    q[j] = v > hi[j] ? hi[j] : v;                    /* np.minimum(., hi) */
  }
  return push;
}

/* MujocoEngine.set_pd_targets(ci, q, kp, kd, qd) */
static void set_pd(Ctl* k, const double* q, const double* kp, const double* kd, const double* qd) {
  mjModel* m = (mjModel*)k->c->m;
  mjData* d = k->c->d;
  const double* act = k->cc + K_ACT;
  for (int j = 0; j < k->NJ; j++) {
    int a = (int)act[j];
    m->actuator_gainprm[a * mjNGAIN] = kp[j];
    m->actuator_biasprm[a * mjNBIAS + 1] = -kp[j];
    m->actuator_biasprm[a * mjNBIAS + 2] = -kd[j];
    double ctrl = q[j];
    if (qd) {
      int pos = kp[j] > 0;
      ctrl = q[j] + (pos ? kd[j] : 0.0) * qd[j] / (pos ? kp[j] : 1.0);
    }
    d->ctrl[a] = ctrl;
  }
}

/* Controller._takeoff_velocity */
static void takeoff_velocity(const double* jp, const double* com, double G, double* out) {
  const double* v = jp + J_V;
  if (jp[J_HAS_LAND] == 0.0) { out[0] = v[0]; out[1] = v[1]; out[2] = v[2]; return; }
  const double* land = jp + J_LAND;
  double z_apex = jp[J_Z0] + pow(v[2], 2.0) / (2 * G);
  if (z_apex <= com[2] + 0.05) { out[0] = v[0]; out[1] = v[1]; out[2] = v[2]; return; }
  double vz = sqrt(2 * G * (z_apex - com[2]));
  double T = vz / G + sqrt(py_max(2 * (z_apex - land[2]) / G, 0.0));
  out[0] = (land[0] - com[0]) / T;
  out[1] = (land[1] - com[1]) / T;
  out[2] = vz;
}

/* Controller._update at time t for every character */
static void control_update(Ctx* c, double t) {
  mjData* d = c->d;
  const mjModel* m = c->m;
  double* cs = (double*)c->cs.buf;
  double* par = (double*)c->par.buf;
  const double* kpar = (const double*)c->kpar.buf;
  const double G = kpar[Q_G];
  int C = c->C, NJ = (int)kpar[Q_NJ];
  Ctl k = {c, NULL, (const double*)c->segs.buf, (const double*)c->gtab.buf,
           (const double*)c->ovs.buf, (const double*)c->jumps.buf, kpar, NULL, NJ};
  mj_subtreeVel(m, d);
  par[P_T_UPDATE] = t;
  Ref refs[64];
  for (int ci = 0; ci < C; ci++) {
    const double* cc = (const double*)c->cc.buf + (Py_ssize_t)ci * KCOL;
    double* s = cs + NCOL * ci;
    double* ds = (double*)c->ds.buf + (Py_ssize_t)ci * DCOL;
    int pel = (int)cc[K_PELVIS_ID];
    for (int i = 0; i < 3; i++) {
      s[C_COM + i] = d->subtree_com[3 * pel + i];
      s[C_COMV + i] = d->subtree_linvel[3 * pel + i];
    }
    root_reference(k.segs, cc, t, G, refs + ci);
    double h = s[C_COM + 2] - d->xpos[3 * pel + 2] + ds[D_ZREF] - refs[ci].ground;
    s[C_COM_HEIGHT] = h < 0.3 ? 0.3 : h;            /* np.maximum(h, 0.3) */
    s[C_SPIN] = s[C_SPIN + 1] = s[C_SPIN + 2] = 0.0;
    s[C_SPINNING] = 0.0;
    s[C_PUSH_ON] = 0.0;
  }
  for (int ci = 0; ci < C; ci++) {
    const double* cc = (const double*)c->cc.buf + (Py_ssize_t)ci * KCOL;
    double* s = cs + NCOL * ci;
    double* ds = (double*)c->ds.buf + (Py_ssize_t)ci * DCOL;
    k.cc = cc;
    k.ds = ds;
    int pel = (int)cc[K_PELVIS_ID];
    const double* rpos = d->xpos + 3 * pel;
    const double* rquat = d->xquat + 4 * pel;
    const double* rlin = d->qvel + (int)cc[K_ROOT_DADR];
    /* active overlays (plan order), with an early touchdown turning flight into land */
    Ov over[MAXOV];
    int nover = 0, flight = -1;
    int o0 = (int)cc[K_OV0], no = (int)cc[K_NOV];
    for (int i = 0; i < no && nover < MAXOV; i++) {
      const double* o = k.ovs + (Py_ssize_t)(o0 + i) * OCOL;
      if (o[O_T0] <= t && t < o[O_T1]) {
        Ov v = {(int)o[O_KIND], o[O_T0], o[O_T1], (int)o[O_SIDE], (int)o[O_TARGET],
                (int)o[O_TARGET_CHEST], (int)o[O_JUMP]};
        if (v.kind == OV_FLIGHT && flight < 0) flight = nover;
        over[nover++] = v;
      }
    }
    if (flight >= 0 && t > over[flight].t0 + 0.1 && s[C_FOOT_TOUCH] != 0.0) {
      Ov fl = over[flight];
      int n2 = 0, has_land = 0;
      for (int i = 0; i < nover; i++) {
        if (over[i].kind == OV_FLIGHT) continue;
        if (over[i].kind == OV_LAND) has_land = 1;
        over[n2++] = over[i];
      }
      nover = n2;
      if (!has_land && nover < MAXOV) {
        Ov v = {OV_LAND, t - kpar[Q_LAND_EARLY], fl.t1 + kpar[Q_LAND_TIME], 1, 0, 0, -1};
        over[nover++] = v;
      }
    }
    int has[OV_FLIGHT + 1] = {0};
    for (int i = 0; i < nover; i++) has[over[i].kind] = 1;
    double mass = cc[K_MASS];
    if (has[OV_FALL]) {
      if (ds[D_RAGDOLL] == 0.0) {
        double zq[MAXJ] = {0}, kd1[MAXJ];
        for (int j = 0; j < NJ; j++) kd1[j] = 1.0;
        set_pd(&k, zq, zq, kd1, NULL);
        ds[D_RAGDOLL] = 1.0;
      }
      s[C_ASSIST_ON] = 0.0;
      continue;
    }
    ds[D_RAGDOLL] = 0.0;
    const Ref* ref = refs + ci;
    double q[MAXJ], kps[MAXJ], kp[MAXJ], kd[MAXJ], qd[MAXJ];
    int push = pose(&k, t, ref, over, nover, rpos, rquat, q, kps);
    for (int j = 0; j < NJ; j++) {
      kp[j] = cc[K_KP0 + j] * kps[j];
      kd[j] = cc[K_KD0 + j] * sqrt(kps[j] < 1e-6 ? 1e-6 : kps[j]);   /* np.maximum(kps, 1e-6) */
    }
    double hq = t - ds[D_QTIME];
    for (int j = 0; j < NJ; j++) {
      double v = (0 < hq && hq < 0.05) ? (q[j] - ds[D_QPREV + j]) / hq : 0.0;
      v = v < -15.0 ? -15.0 : v;                     /* np.maximum(qd, -15) */
      qd[j] = v > 15.0 ? 15.0 : v;                   /* np.minimum(., 15) */
      ds[D_QPREV + j] = q[j];
    }
    ds[D_QTIME] = t;
    set_pd(&k, q, kp, kd, qd);
    /* root assist command */
    if (has[OV_FLIGHT] || (ref->airborne && !has[OV_LAND])) {
      s[C_ASSIST_ON] = 0.0;
      continue;
    }
    s[C_ASSIST_ON] = 1.0;
    double z_ref = ds[D_ZREF];
    double f[3];
    if (push >= 0) {
      const double* jp = k.jumps + (Py_ssize_t)((int)cc[K_JUMP0] + push) * JCOL;
      double den = py_max(kpar[Q_PUSH_LEAD] * (jp[J_TOFF] - t), 0.04);
      for (int i = 0; i < 3; i++) s[C_SPIN + i] = -d->subtree_angmom[3 * pel + i] / den;
      s[C_SPINNING] = 1.0;
      const double* f0 = d->xpos + 3 * (int)cc[K_FOOT0_ID];
      const double* f1 = d->xpos + 3 * (int)cc[K_FOOT1_ID];
      const double* com = s + C_COM;
      for (int i = 0; i < 3; i++)
        s[C_PUSH_POINT + i] = com[i] + kpar[Q_PUSH_POINT] * ((f0[i] + f1[i]) / 2 - com[i]);
      s[C_PUSH_ON] = 1.0;
      double v_goal[3], a[3];
      takeoff_velocity(jp, com, G, v_goal);
      for (int i = 0; i < 3; i++) a[i] = (v_goal[i] - s[C_COMV + i]) / den;
      double fnc = s[C_FN];
      double fz = mass * (a[2] + G) - fnc;
      double lim = s[C_MU] * (fnc + py_max(fz, 0.0)) - s[C_FT];
      double ah = norm2(a[0], a[1]);
      if (mass * ah > lim && lim > 0) {
        double sc = lim / (mass * ah);
        for (int i = 0; i < 3; i++) a[i] *= sc;
      } else if (lim <= 0) {
        a[0] = a[1] = 0.0;
      }
      for (int i = 0; i < 3; i++) f[i] = mass * a[i];
      f[2] += mass * G - fnc;
      f[2] = py_min(py_max(f[2], 0.0), kpar[Q_PUSH_VA] * mass * G);
    } else {
      double ex = (ref->pos[0] - rpos[0]) + ds[D_SWAY];
      double ey = (ref->pos[1] - rpos[1]) + ds[D_SWAY + 1];
      f[0] = mass * (ref->acc[0] + kpar[Q_KP_XY] * ex + kpar[Q_KD_XY] * (ref->vel[0] - rlin[0]));
      f[1] = mass * (ref->acc[1] + kpar[Q_KP_XY] * ey + kpar[Q_KD_XY] * (ref->vel[1] - rlin[1]));
      double cvz = s[C_COMV + 2];
      double fz;
      if (has[OV_LAND] && cvz < -0.2) {
        fz = mass * (G - cvz / kpar[Q_LAND_BRAKE]) - s[C_FN];
        fz = py_min(py_max(fz, 0.0), kpar[Q_LAND_VA] * mass * G);
      } else {
        fz = mass * (kpar[Q_WEIGHT_SHARE] * G + kpar[Q_KP_Z] * (z_ref - rpos[2]) - kpar[Q_KD_Z] * rlin[2]);
        fz = py_min(py_max(fz, 0.0), kpar[Q_MAX_VA] * mass * G);
      }
      f[2] = fz;
    }
    s[C_FORCE] = f[0]; s[C_FORCE + 1] = f[1]; s[C_FORCE + 2] = f[2];
    s[C_YAW] = ref->yaw;
    s[C_YAW_RATE] = ref->yaw_rate;
  }
}

/* run(step0, nsteps) -> (steps done, 0 ok | 1 check failed after the last step) */
static PyObject* ctx_run(Ctx* c, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "run(step0, nsteps)");
    return NULL;
  }
  long long step0 = PyLong_AsLongLong(args[0]);
  long nsteps = PyLong_AsLong(args[1]);
  if (PyErr_Occurred()) return NULL;
  const mjModel* m = c->m;
  mjData* d = c->d;
  double* cs = (double*)c->cs.buf;
  double* par = (double*)c->par.buf;
  const double dt = par[P_DT], vmax = par[P_MAX_QVEL];
  int C = c->C;
  double fn[64], ft[64], mu[64];
  long done = 0;
  int fault = 0;
  for (long k = 0; k < nsteps; k++) {
    long long step = step0 + k;
    if (c->control && step % c->decimation == 0) control_update(c, (double)step * dt);
    if (C) gate_and_assist(c, (double)step * dt);
    par[P_FRAME_STEPS] += 1.0;
    mj_step2(m, d);
    Py_ssize_t n = extract(c, step + 1, fn, ft, mu);
    if (n < 0) return NULL;
    memset(d->xfrc_applied, 0, sizeof(mjtNum) * 6 * m->nbody);
    memset(d->qfrc_applied, 0, sizeof(mjtNum) * m->nv);
    mj_step1(m, d);
    done++;
    /* commit the step's contacts and measurements (a false alarm of the check below
     * goes on; after a real divergence Python drops the failed step's rows) */
    c->nrows += n;
    for (int ci = 0; ci < C; ci++) {
      double* s = cs + NCOL * ci;
      s[C_FN] = fn[ci];
      s[C_FT] = ft[ci];
      if (mu[ci] < INFINITY) s[C_MU] = mu[ci];
    }
    int bad = d->warning[mjWARN_BADQACC].number != c->badqacc;
    for (int i = 0; i < m->nv && !bad; i++) {
      if (!(fabs(d->qvel[i]) <= vmax)) bad = 1;
    }
    if (bad) { fault = 1; break; }
  }
  return Py_BuildValue("(li)", done, fault);
}

/* take() -> bytes of the buffered contact rows (float64, ROW per row); clears */
static PyObject* ctx_take(Ctx* c, PyObject* unused) {
  PyObject* out = PyBytes_FromStringAndSize((const char*)c->rows,
                                            c->nrows * ROW * (Py_ssize_t)sizeof(double));
  c->nrows = 0;
  return out;
}

static void ctx_dealloc(Ctx* c) {
  Py_buffer* bufs[] = {&c->cs, &c->par, &c->geom_code, &c->geom_body, &c->foot_char,
                       &c->body_char, &c->mu_table, &c->cc, &c->ds, &c->segs, &c->gtab,
                       &c->ovs, &c->jumps, &c->kpar, &c->r_pos, &c->r_quat, &c->r_lin,
                       &c->r_ang, &c->r_jq, &c->r_com, &c->r_comv, &c->r_ids, &c->r_root,
                       &c->r_static, &c->r_qadr, &c->r_pelvis, &c->r_support, &c->r_assist};
  for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
    if (bufs[i]->obj) PyBuffer_Release(bufs[i]);
  Py_XDECREF(c->owner_m);
  Py_XDECREF(c->owner_d);
  PyMem_Free(c->rows);
  Py_TYPE(c)->tp_free((PyObject*)c);
}

static int get(PyObject* obj, Py_buffer* view, const char* what, Py_ssize_t itemsize,
               Py_ssize_t count);

/* set_control(cc, ds, segs, gtab, ovs, jumps, kpar): run the control update in C */
static PyObject* ctx_set_control(Ctx* c, PyObject* args) {
  PyObject *occ, *ods, *osegs, *ogtab, *oovs, *ojumps, *okpar;
  if (!PyArg_ParseTuple(args, "OOOOOOO", &occ, &ods, &osegs, &ogtab, &oovs, &ojumps, &okpar))
    return NULL;
  if (c->control) {
    PyErr_SetString(PyExc_RuntimeError, "set_control: already set");
    return NULL;
  }
  Py_ssize_t nseg = PyObject_Length(osegs), ngt = PyObject_Length(ogtab);
  Py_ssize_t nov = PyObject_Length(oovs), nj = PyObject_Length(ojumps);
  if (nseg < 0 || ngt < 0 || nov < 0 || nj < 0) return NULL;
  if (get(occ, &c->cc, "cc", 8, (Py_ssize_t)c->C * KCOL) < 0 ||
      get(ods, &c->ds, "ds", 8, (Py_ssize_t)c->C * DCOL) < 0 ||
      get(osegs, &c->segs, "segs", 8, nseg * SCOL) < 0 ||
      get(ogtab, &c->gtab, "gtab", 8, ngt) < 0 ||
      get(oovs, &c->ovs, "ovs", 8, nov * OCOL) < 0 ||
      get(ojumps, &c->jumps, "jumps", 8, nj * JCOL) < 0 ||
      get(okpar, &c->kpar, "kpar", 8, NKPAR) < 0)
    return NULL;
  const double* kpar = (const double*)c->kpar.buf;
  c->decimation = (int)kpar[Q_DECIMATION];
  if (c->decimation < 1 || (int)kpar[Q_NJ] > MAXJ || c->C > 64) {
    PyErr_SetString(PyExc_ValueError, "set_control: bad decimation, joint or character count");
    return NULL;
  }
  c->control = 1;
  Py_RETURN_NONE;
}

/* bind(F, J, pos, quat, lin, ang, jq, com, comv, ids, rootid, static, qadr, pelvis,
 *      support, assist): the recorder's per-frame arrays and the index tables
 * `sample` needs */
static PyObject* ctx_bind(Ctx* c, PyObject* args) {
  PyObject *o[14];
  int F, J;
  if (!PyArg_ParseTuple(args, "iiOOOOOOOOOOOOOO", &F, &J, o, o + 1, o + 2, o + 3, o + 4, o + 5,
                        o + 6, o + 7, o + 8, o + 9, o + 10, o + 11, o + 12, o + 13))
    return NULL;
  if (c->bound) {
    PyErr_SetString(PyExc_RuntimeError, "bind: already bound");
    return NULL;
  }
  Py_ssize_t FB = (Py_ssize_t)F * c->B, FC = (Py_ssize_t)F * c->C;
  if (get(o[0], &c->r_pos, "pos", 8, FB * 3) < 0 || get(o[1], &c->r_quat, "quat", 8, FB * 4) < 0 ||
      get(o[2], &c->r_lin, "lin", 8, FB * 3) < 0 || get(o[3], &c->r_ang, "ang", 8, FB * 3) < 0 ||
      get(o[4], &c->r_jq, "jq", 8, FC * J) < 0 || get(o[5], &c->r_com, "com", 8, FC * 3) < 0 ||
      get(o[6], &c->r_comv, "comv", 8, FC * 3) < 0 || get(o[7], &c->r_ids, "ids", 8, c->B) < 0 ||
      get(o[8], &c->r_root, "rootid", 8, c->B) < 0 ||
      get(o[9], &c->r_static, "static", 8, c->B) < 0 ||
      get(o[10], &c->r_qadr, "qadr", 8, (Py_ssize_t)c->C * J) < 0 ||
      get(o[11], &c->r_pelvis, "pelvis", 8, c->C) < 0 ||
      get(o[12], &c->r_support, "support", 1, FC) < 0 ||
      get(o[13], &c->r_assist, "assist", 8, FC * 3) < 0)
    return NULL;
  c->F = F;
  c->J = J;
  c->bound = 1;
  Py_RETURN_NONE;
}

/* sample(i): frame i of the recorder's arrays from the current state (the same
 * values as MujocoEngine.body_states / joint_states / com_states) */
static PyObject* ctx_sample(Ctx* c, PyObject* arg) {
  long i = PyLong_AsLong(arg);
  if (PyErr_Occurred()) return NULL;
  if (!c->bound || i < 0 || i >= c->F) {
    PyErr_SetString(PyExc_IndexError, "sample: not bound or frame out of range");
    return NULL;
  }
  const mjModel* m = c->m;
  mjData* d = c->d;
  const int64_t* ids = (const int64_t*)c->r_ids.buf;
  const int64_t* root = (const int64_t*)c->r_root.buf;
  const int64_t* stat = (const int64_t*)c->r_static.buf;
  double* pos = (double*)c->r_pos.buf + (Py_ssize_t)i * c->B * 3;
  double* quat = (double*)c->r_quat.buf + (Py_ssize_t)i * c->B * 4;
  double* lin = (double*)c->r_lin.buf + (Py_ssize_t)i * c->B * 3;
  double* ang = (double*)c->r_ang.buf + (Py_ssize_t)i * c->B * 3;
  for (int b = 0; b < c->B; b++) {
    int id = (int)ids[b];
    const double* p = d->xpos + 3 * id;
    const double* cv = d->cvel + 6 * id;
    const double* sc = d->subtree_com + 3 * (int)root[b];
    double r0 = p[0] - sc[0], r1 = p[1] - sc[1], r2 = p[2] - sc[2];
    memcpy(pos + 3 * b, p, 3 * sizeof(double));
    memcpy(quat + 4 * b, d->xquat + 4 * id, 4 * sizeof(double));
    if (stat[b]) {
      lin[3 * b] = lin[3 * b + 1] = lin[3 * b + 2] = 0.0;
      ang[3 * b] = ang[3 * b + 1] = ang[3 * b + 2] = 0.0;
      continue;
    }
    lin[3 * b] = cv[3] + (cv[1] * r2 - cv[2] * r1);
    lin[3 * b + 1] = cv[4] + (cv[2] * r0 - cv[0] * r2);
    lin[3 * b + 2] = cv[5] + (cv[0] * r1 - cv[1] * r0);
    memcpy(ang + 3 * b, cv, 3 * sizeof(double));
  }
  if (c->C) {
    const int64_t* qadr = (const int64_t*)c->r_qadr.buf;
    const int64_t* pel = (const int64_t*)c->r_pelvis.buf;
    double* jq = (double*)c->r_jq.buf + (Py_ssize_t)i * c->C * c->J;
    for (Py_ssize_t k = 0; k < (Py_ssize_t)c->C * c->J; k++) jq[k] = d->qpos[qadr[k]];
    mj_subtreeVel(m, d);
    double* com = (double*)c->r_com.buf + (Py_ssize_t)i * c->C * 3;
    double* comv = (double*)c->r_comv.buf + (Py_ssize_t)i * c->C * 3;
    for (int ci = 0; ci < c->C; ci++) {
      memcpy(com + 3 * ci, d->subtree_com + 3 * pel[ci], 3 * sizeof(double));
      memcpy(comv + 3 * ci, d->subtree_linvel + 3 * pel[ci], 3 * sizeof(double));
    }
    if (i > 0) {
      /* Controller.frame_summary: support flag and mean assist over the frame's steps */
      double* cs = (double*)c->cs.buf;
      double* par = (double*)c->par.buf;
      double n = par[P_FRAME_STEPS] < 1.0 ? 1.0 : par[P_FRAME_STEPS];
      char* sup = (char*)c->r_support.buf + (Py_ssize_t)i * c->C;
      double* as = (double*)c->r_assist.buf + (Py_ssize_t)i * c->C * 3;
      for (int ci = 0; ci < c->C; ci++) {
        double* st = cs + NCOL * ci;
        sup[ci] = st[C_FRAME_SUPPORT] != 0.0;
        for (int k = 0; k < 3; k++) {
          as[3 * ci + k] = st[C_FRAME_FORCE + k] / n;
          st[C_FRAME_FORCE + k] = 0.0;
        }
        st[C_FRAME_SUPPORT] = 0.0;
      }
      par[P_FRAME_STEPS] = 0.0;
    }
  }
  Py_RETURN_NONE;
}

static PyMethodDef ctx_methods[] = {
  {"bind", (PyCFunction)ctx_bind, METH_VARARGS, "bind the recorder's arrays (see sample)"},
  {"sample", (PyCFunction)ctx_sample, METH_O, "sample(i): record frame i"},
  {"set_control", (PyCFunction)ctx_set_control, METH_VARARGS,
   "set_control(cc, ds, segs, gtab, ovs, jumps, kpar): run the control update in C"},
  {"run", (PyCFunction)(void (*)(void))ctx_run, METH_FASTCALL,
   "run(step0, nsteps) -> (steps done, fault)"},
  {"take", (PyCFunction)ctx_take, METH_NOARGS, "take() -> bytes of contact rows"},
  {NULL, NULL, 0, NULL},
};

static PyTypeObject CtxType = {
  PyVarObject_HEAD_INIT(NULL, 0)
  .tp_name = "sim._native.Stepper",
  .tp_basicsize = sizeof(Ctx),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_dealloc = (destructor)ctx_dealloc,
  .tp_methods = ctx_methods,
  .tp_doc = "Native per-step rollout loop for one MjModel/MjData (see module docstring).",
};

static int get(PyObject* obj, Py_buffer* view, const char* what, Py_ssize_t itemsize,
               Py_ssize_t count) {
  if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) return -1;
  if (view->itemsize != itemsize || view->len != itemsize * count) {
    PyErr_Format(PyExc_ValueError, "stepper: %s must hold %zd items of %zd bytes", what, count,
                 itemsize);
    PyBuffer_Release(view);
    view->obj = NULL;
    return -1;
  }
  return 0;
}

/* stepper(model, data, model_addr, data_addr, C, B, cs, par, geom_code, geom_body,
 *         foot_char, body_char, mu_table) */
static PyObject* make_stepper(PyObject* self, PyObject* args) {
  PyObject *om, *od, *ocs, *opar, *ocode, *ogb, *ofoot, *ochar, *omu;
  unsigned long long am, ad;
  int C, B;
  if (!PyArg_ParseTuple(args, "OOKKiiOOOOOOO", &om, &od, &am, &ad, &C, &B, &ocs, &opar, &ocode,
                        &ogb, &ofoot, &ochar, &omu))
    return NULL;
  if (C < 0 || C > 64) {
    PyErr_SetString(PyExc_ValueError, "stepper: at most 64 characters");
    return NULL;
  }
  Ctx* c = PyObject_New(Ctx, &CtxType);
  if (!c) return NULL;
  memset((char*)c + sizeof(PyObject), 0, sizeof(Ctx) - sizeof(PyObject));
  c->m = (const mjModel*)(uintptr_t)am;
  c->d = (mjData*)(uintptr_t)ad;
  Py_INCREF(om);
  Py_INCREF(od);
  c->owner_m = om;
  c->owner_d = od;
  c->C = C;
  c->B = B;
  c->ngeom = c->m->ngeom;
  c->badqacc = c->d->warning[mjWARN_BADQACC].number;
  if (get(ocs, &c->cs, "cs", 8, (Py_ssize_t)C * NCOL) < 0 ||
      get(opar, &c->par, "par", 8, NPARAM) < 0 ||
      get(ocode, &c->geom_code, "geom_code", 8, c->ngeom) < 0 ||
      get(ogb, &c->geom_body, "geom_body", 8, c->ngeom) < 0 ||
      get(ofoot, &c->foot_char, "foot_char", 8, B) < 0 ||
      get(ochar, &c->body_char, "body_char", 8, B) < 0 ||
      get(omu, &c->mu_table, "mu_table", 8, (Py_ssize_t)C * B) < 0) {
    Py_DECREF(c);
    return NULL;
  }
  return (PyObject*)c;
}

static PyObject* header_version(PyObject* self, PyObject* unused) {
  return PyLong_FromLong(mjVERSION_HEADER);
}

static PyMethodDef methods[] = {
  {"stepper", make_stepper, METH_VARARGS, "Create a native stepper (see sim/mujoco_engine.py)."},
  {"header_version", header_version, METH_NOARGS, "mjVERSION_HEADER this module was built with."},
  {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
  if (PyType_Ready(&CtxType) < 0) return NULL;
  PyObject* mod = PyModule_Create(&module);
  if (!mod) return NULL;
  PyModule_AddIntConstant(mod, "NCOL", NCOL);
  PyModule_AddIntConstant(mod, "NPARAM", NPARAM);
  PyModule_AddIntConstant(mod, "ROW", ROW);
  PyModule_AddIntConstant(mod, "MAXJ", MAXJ);
  PyModule_AddIntConstant(mod, "MAXOV", MAXOV);
  PyModule_AddIntConstant(mod, "MAXC", 64);
  PyModule_AddIntConstant(mod, "KCOL", KCOL);
  PyModule_AddIntConstant(mod, "DCOL", DCOL);
  PyModule_AddIntConstant(mod, "SCOL", SCOL);
  PyModule_AddIntConstant(mod, "OCOL", OCOL);
  PyModule_AddIntConstant(mod, "JCOL", JCOL);
  PyModule_AddIntConstant(mod, "NKPAR", NKPAR);
  return mod;
}
