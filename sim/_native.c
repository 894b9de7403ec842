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
 *      bad-acceleration warning); a failing step stops the run before its contacts
 *      and measurements are committed, and Python names the fault.
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
    if (C) gate_and_assist(c, (double)step * dt);
    par[P_FRAME_STEPS] += 1.0;
    mj_step2(m, d);
    Py_ssize_t n = extract(c, step + 1, fn, ft, mu);
    if (n < 0) return NULL;
    memset(d->xfrc_applied, 0, sizeof(mjtNum) * 6 * m->nbody);
    memset(d->qfrc_applied, 0, sizeof(mjtNum) * m->nv);
    mj_step1(m, d);
    done++;
    int bad = d->warning[mjWARN_BADQACC].number != c->badqacc;
    for (int i = 0; i < m->nv && !bad; i++) {
      if (!(fabs(d->qvel[i]) <= vmax)) bad = 1;
    }
    if (bad) { fault = 1; break; }
    c->nrows += n;
    for (int ci = 0; ci < C; ci++) {
      double* s = cs + NCOL * ci;
      s[C_FN] = fn[ci];
      s[C_FT] = ft[ci];
      if (mu[ci] < INFINITY) s[C_MU] = mu[ci];
    }
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
                       &c->body_char, &c->mu_table};
  for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
    if (bufs[i]->obj) PyBuffer_Release(bufs[i]);
  Py_XDECREF(c->owner_m);
  Py_XDECREF(c->owner_d);
  PyMem_Free(c->rows);
  Py_TYPE(c)->tp_free((PyObject*)c);
}

static PyMethodDef ctx_methods[] = {
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
  return mod;
}
