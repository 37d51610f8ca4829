/* Comparisons, logic and selection, with numpy broadcasting (ops/broadcast.h): Equal, Less,
 * Greater, LessOrEqual, GreaterOrEqual (float32 or int64 in, bool out; Equal also on bool),
 * And, Or, Xor, Not (bool), Where (a bool condition picks from X or Y) and Mod (float32 or
 * int64, fmod 0 or 1).  These build the masks of attention exports (Swin's shifted windows)
 * and mostly fold at plan time; they also run when a value depends on the image.
 *
 * Gradients: a bool output carries none (the planner stops the gradient at non-float values),
 * so comparisons and logic have no backward.  Where passes the output gradient to X where the
 * condition holds and to Y elsewhere; Mod's is 1 w.r.t. the dividend and -q w.r.t. the
 * divisor (q the integer quotient it used), summed over broadcast dims. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/broadcast.h"

/* The numpy broadcast of shapes a and b into *out. */
static int broadcast_pair(const dd_shape *a, const dd_shape *b, dd_shape *out, dd_err *err) {
  char s1[128], s2[128];
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  dd_shape r = {.ndim = nd};
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
    int64_t x = ia >= 0 ? a->d[ia] : 1, y = ib >= 0 ? b->d[ib] : 1;
    if (x != y && x != 1 && y != 1)
      return dd_fail(err, DD_ESHAPE, "shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                     dd_shape_str(a, s1, sizeof s1), dd_shape_str(b, s2, sizeof s2), i,
                     (long long)x, (long long)y);
    r.d[i] = x == 1 ? y : x;
  }
  *out = r;
  return DD_OK;
}

static int no_attrs_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  return dd_node_check_attrs(node, known, err);
}

/* Sets of element types, as bit masks. */
enum { T_F32 = 1, T_I64 = 2, T_BOOL = 4 };

static int dtype_in(dd_dtype t, unsigned mask) {
  return (t == DD_F32 && (mask & T_F32)) || (t == DD_I64 && (mask & T_I64)) ||
         (t == DD_BOOL && (mask & T_BOOL));
}

static const char *dtype_list(unsigned mask) {
  static const char *const names[] = {"", "float32", "int64", "float32 or int64", "bool",
                                      "float32 or bool", "int64 or bool",
                                      "float32, int64 or bool"};
  return names[mask & 7];
}

/* Two inputs of one type among `mask`, broadcast; out[0] of type `out_dt` (0: the inputs'). */
static int pair_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      unsigned mask, dd_dtype out_dt, dd_err *err) {
  if (node->n_in != 2 || !in[0] || !in[1])
    return dd_fail(err, DD_EFORMAT, "needs 2 inputs, got %d", node->n_in);
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  for (int k = 0; k < 2; k++)
    if (!dtype_in(in[k]->dtype, mask))
      return dd_fail(err, DD_EUNSUPPORTED, "input %d is %s; %s supports %s", k,
                     dd_dtype_name(in[k]->dtype), node->op_type, dtype_list(mask));
  if (in[0]->dtype != in[1]->dtype)
    return dd_fail(err, DD_EFORMAT, "inputs have different types (%s and %s)",
                   dd_dtype_name(in[0]->dtype), dd_dtype_name(in[1]->dtype));
  dd_shape s;
  int rc = broadcast_pair(&in[0]->shape, &in[1]->shape, &s, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = out_dt ? out_dt : in[0]->dtype;
    out[0]->shape = s;
  }
  return DD_OK;
}

/* y[i] = EXPR(x, z) over the broadcast of a (operand 1) and c (operand 2) into y. */
#define PAIR_KERNEL(TA, TY, EXPR)                                                        \
  do {                                                                                   \
    bcast b;                                                                             \
    bcast_make(&b, &out[0]->shape, &in[0]->shape, &in[1]->shape);                        \
    const int64_t sa = b.s[1][b.nd - 1], sc = b.s[2][b.nd - 1];                          \
    const int64_t nblk = b.rows * b.nblk, total = dd_tensor_numel(out[0]);               \
    const TA *a = (const TA *)in[0]->data, *c = (const TA *)in[1]->data;                 \
    TY *y = (TY *)out[0]->data;                                                          \
    _Pragma("omp parallel for if (total > DD_PAR_MIN) schedule(static)")                 \
    for (int64_t blk = 0; blk < nblk; blk++) {                                           \
      int64_t off[3], i0, i1;                                                            \
      bcast_block(&b, blk, off, &i0, &i1);                                               \
      const TA *pa = a + off[1], *pc = c + off[2];                                       \
      TY *py = y + off[0];                                                               \
      for (int64_t i = i0; i < i1; i++) {                                                \
        TA x = pa[i * sa], z = pc[i * sc];                                               \
        py[i] = EXPR;                                                                    \
      }                                                                                  \
    }                                                                                    \
  } while (0)

/* ---- comparisons: bool out ---- */

enum { CMP_EQ, CMP_LT, CMP_GT, CMP_LE, CMP_GE };

typedef struct cmp_params {
  int op;
} cmp_params;

static int cmp_init_op(dd_node *node, int op, dd_err *err) {
  int rc = no_attrs_init(node, err);
  if (rc) return rc;
  cmp_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->op = op;
  node->params = p;
  return DD_OK;
}
static int equal_init(dd_node *node, dd_err *err) { return cmp_init_op(node, CMP_EQ, err); }
static int less_init(dd_node *node, dd_err *err) { return cmp_init_op(node, CMP_LT, err); }
static int greater_init(dd_node *node, dd_err *err) { return cmp_init_op(node, CMP_GT, err); }
static int less_eq_init(dd_node *node, dd_err *err) { return cmp_init_op(node, CMP_LE, err); }
static int greater_eq_init(dd_node *node, dd_err *err) { return cmp_init_op(node, CMP_GE, err); }

static int cmp_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  const cmp_params *p = node->params;
  *scratch = 0;
  return pair_infer(node, in, out, p->op == CMP_EQ ? T_F32 | T_I64 | T_BOOL : T_F32 | T_I64,
                    DD_BOOL, err);
}

#define CMP_TYPED(T)                                                 \
  do {                                                               \
    switch (p->op) {                                                 \
      case CMP_EQ: PAIR_KERNEL(T, uint8_t, x == z); break;           \
      case CMP_LT: PAIR_KERNEL(T, uint8_t, x < z); break;            \
      case CMP_GT: PAIR_KERNEL(T, uint8_t, x > z); break;            \
      case CMP_LE: PAIR_KERNEL(T, uint8_t, x <= z); break;           \
      default: PAIR_KERNEL(T, uint8_t, x >= z); break;               \
    }                                                                \
  } while (0)

static void cmp_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const cmp_params *p = node->params;
  if (in[0]->dtype == DD_F32) CMP_TYPED(float);
  else if (in[0]->dtype == DD_I64) CMP_TYPED(int64_t);
  else CMP_TYPED(uint8_t);
}

static int64_t out_flops(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out) {
  return out[0] ? dd_tensor_numel(out[0]) : 0;
}

const dd_op dd_op_Equal = {"Equal", equal_init, cmp_infer, cmp_forward, NULL, out_flops, 0};
const dd_op dd_op_Less = {"Less", less_init, cmp_infer, cmp_forward, NULL, out_flops, 0};
const dd_op dd_op_Greater = {"Greater", greater_init, cmp_infer, cmp_forward, NULL, out_flops,
                             0};
const dd_op dd_op_LessOrEqual = {"LessOrEqual", less_eq_init, cmp_infer, cmp_forward, NULL,
                                 out_flops, 0};
const dd_op dd_op_GreaterOrEqual = {"GreaterOrEqual", greater_eq_init, cmp_infer, cmp_forward,
                                    NULL, out_flops, 0};

/* ---- And, Or, Xor, Not: bool in, bool out ---- */

enum { LOGIC_AND, LOGIC_OR, LOGIC_XOR };

static int and_init(dd_node *node, dd_err *err) { return cmp_init_op(node, LOGIC_AND, err); }
static int or_init(dd_node *node, dd_err *err) { return cmp_init_op(node, LOGIC_OR, err); }
static int xor_init(dd_node *node, dd_err *err) { return cmp_init_op(node, LOGIC_XOR, err); }

static int logic_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  *scratch = 0;
  return pair_infer(node, in, out, T_BOOL, DD_BOOL, err);
}

static void logic_forward(const dd_node *node, const dd_tensor *const *in,
                          dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const cmp_params *p = node->params;
  switch (p->op) {
    case LOGIC_AND: PAIR_KERNEL(uint8_t, uint8_t, x && z); break;
    case LOGIC_OR: PAIR_KERNEL(uint8_t, uint8_t, x || z); break;
    default: PAIR_KERNEL(uint8_t, uint8_t, !x != !z); break;
  }
}

const dd_op dd_op_And = {"And", and_init, logic_infer, logic_forward, NULL, out_flops, 0};
const dd_op dd_op_Or = {"Or", or_init, logic_infer, logic_forward, NULL, out_flops, 0};
const dd_op dd_op_Xor = {"Xor", xor_init, logic_infer, logic_forward, NULL, out_flops, 0};

static int not_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  if (node->n_in != 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs one input");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (in[0]->dtype != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "input is %s; Not supports bool",
                   dd_dtype_name(in[0]->dtype));
  if (out[0]) {
    out[0]->dtype = DD_BOOL;
    out[0]->shape = in[0]->shape;
  }
  *scratch = 0;
  return DD_OK;
}

static void not_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const uint8_t *x = dd_bool(in[0]);
  uint8_t *y = dd_bool(out[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = !x[i];
}

const dd_op dd_op_Not = {"Not", no_attrs_init, not_infer, not_forward, NULL, out_flops,
                         DD_OP_INPLACE};

/* ---- backward of the broadcast ops ----
 * dt += reduce(EXPR) over the iteration (dy, t, o): t is the input whose gradient is wanted
 * (operand 1), o another input (operand 2, of type TO).  When t is broadcast, one of its
 * elements gathers from many positions and the blocks run serially; otherwise each output
 * position owns its element and they run in parallel. */
#define GRAD_KERNEL(TO, EXPR)                                                            \
  do {                                                                                   \
    bcast b;                                                                             \
    bcast_make(&b, &dout->shape, &target->shape, &other->shape);                         \
    const int64_t st = b.s[1][b.nd - 1], so = b.s[2][b.nd - 1];                          \
    const int64_t nblk = b.rows * b.nblk, total = dd_tensor_numel(dout);                 \
    const int par = total > DD_PAR_MIN && dd_tensor_numel(target) == total;              \
    const float *dy = dd_f32(dout), *tv = dd_f32(target);                                \
    const TO *ov = (const TO *)other->data;                                              \
    float *dt = dd_f32(dtarget);                                                         \
    _Pragma("omp parallel for if (par) schedule(static)")                                \
    for (int64_t blk = 0; blk < nblk; blk++) {                                           \
      int64_t off[3], i0, i1;                                                            \
      bcast_block(&b, blk, off, &i0, &i1);                                               \
      const float *pdy = dy + off[0], *pt = tv + off[1];                                 \
      const TO *po = ov + off[2];                                                        \
      float *pdt = dt + off[1];                                                          \
      for (int64_t i = i0; i < i1; i++) {                                                \
        float g = pdy[i], t = pt[i * st];                                                \
        TO o = po[i * so];                                                               \
        (void)t;                                                                         \
        (void)o;                                                                         \
        pdt[i * st] += EXPR;                                                             \
      }                                                                                  \
    }                                                                                    \
  } while (0)

/* ---- Where: out = cond ? X : Y, the three broadcast together ---- */

static int where_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  if (node->n_in != 3 || !in[0] || !in[1] || !in[2])
    return dd_fail(err, DD_EFORMAT, "needs 3 inputs (condition, X, Y), got %d", node->n_in);
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (in[0]->dtype != DD_BOOL)
    return dd_fail(err, DD_EFORMAT, "condition is %s, must be bool", dd_dtype_name(in[0]->dtype));
  if (in[1]->dtype != in[2]->dtype)
    return dd_fail(err, DD_EFORMAT, "X and Y have different types (%s and %s)",
                   dd_dtype_name(in[1]->dtype), dd_dtype_name(in[2]->dtype));
  dd_shape s;
  int rc = broadcast_pair(&in[0]->shape, &in[1]->shape, &s, err);
  if (!rc) rc = broadcast_pair(&s, &in[2]->shape, &s, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = in[1]->dtype;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

/* y = X broadcast, then y = cond ? y : Y in a second pass (an iteration has three operands:
 * y and two inputs). */
#define WHERE_TYPED(T)                                                                   \
  do {                                                                                   \
    bcast b;                                                                             \
    const int64_t total = dd_tensor_numel(out[0]);                                       \
    const T *xv = (const T *)in[1]->data, *yv = (const T *)in[2]->data;                  \
    const uint8_t *cv = dd_bool(in[0]);                                                  \
    T *ov = (T *)out[0]->data;                                                           \
    bcast_make(&b, &out[0]->shape, &in[1]->shape, &in[1]->shape);                        \
    int64_t nblk = b.rows * b.nblk, sx = b.s[1][b.nd - 1];                               \
    _Pragma("omp parallel for if (total > DD_PAR_MIN) schedule(static)")                 \
    for (int64_t blk = 0; blk < nblk; blk++) {                                           \
      int64_t off[3], i0, i1;                                                            \
      bcast_block(&b, blk, off, &i0, &i1);                                               \
      for (int64_t i = i0; i < i1; i++) ov[off[0] + i] = xv[off[1] + i * sx];             \
    }                                                                                    \
    bcast_make(&b, &out[0]->shape, &in[0]->shape, &in[2]->shape);                        \
    nblk = b.rows * b.nblk;                                                              \
    const int64_t sc = b.s[1][b.nd - 1], sy = b.s[2][b.nd - 1];                          \
    _Pragma("omp parallel for if (total > DD_PAR_MIN) schedule(static)")                 \
    for (int64_t blk = 0; blk < nblk; blk++) {                                           \
      int64_t off[3], i0, i1;                                                            \
      bcast_block(&b, blk, off, &i0, &i1);                                               \
      const uint8_t *pc = cv + off[1];                                                   \
      const T *py = yv + off[2];                                                         \
      T *po = ov + off[0];                                                               \
      for (int64_t i = i0; i < i1; i++)                                                  \
        if (!pc[i * sc]) po[i] = py[i * sy];                                             \
    }                                                                                    \
  } while (0)

static void where_forward(const dd_node *node, const dd_tensor *const *in,
                          dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  if (out[0]->dtype == DD_F32) WHERE_TYPED(float);
  else if (out[0]->dtype == DD_I64) WHERE_TYPED(int64_t);
  else WHERE_TYPED(uint8_t);
}

/* dX += sum(cond ? dy : 0), dY += sum(cond ? 0 : dy) over the dims each was broadcast along. */
static void where_backward(const dd_node *node, const dd_tensor *const *in,
                           const dd_tensor *const *out, const dd_tensor *const *dout_,
                           dd_tensor *const *din, void *scratch) {
  if (!dout_[0] || in[1]->dtype != DD_F32) return;
  const dd_tensor *dout = dout_[0], *other = in[0];
  if (din[1]) {
    const dd_tensor *target = in[1];
    dd_tensor *dtarget = din[1];
    GRAD_KERNEL(uint8_t, o ? g : 0.f);
  }
  if (din[2]) {
    const dd_tensor *target = in[2];
    dd_tensor *dtarget = din[2];
    GRAD_KERNEL(uint8_t, o ? 0.f : g);
  }
}

const dd_op dd_op_Where = {"Where", no_attrs_init, where_infer, where_forward, where_backward,
                           out_flops, DD_OP_BWD_NO_OUT};

/* ---- Mod ----
 * fmod 1: the remainder of truncated division (C's fmod and %), the sign of the dividend;
 * fmod 0: of floored division (Python's %), the sign of the divisor.  A zero divisor gives 0
 * for integers (as numpy does, where C would trap) and NaN for floats. */

typedef struct mod_params {
  int fmod;
} mod_params;

static int mod_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"fmod", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  int64_t f;
  if ((rc = dd_attr_int(node, "fmod", 0, &f, err))) return rc;
  if (f != 0 && f != 1)
    return dd_fail(err, DD_EFORMAT, "Mod attribute fmod is %lld, must be 0 or 1", (long long)f);
  mod_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->fmod = (int)f;
  node->params = p;
  return DD_OK;
}

static int mod_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  *scratch = 0;
  return pair_infer(node, in, out, T_F32 | T_I64, 0, err);
}

static inline int64_t imod(int64_t a, int64_t b, int floored) {
  if (b == 0 || b == -1) return 0; /* INT64_MIN % -1 traps on x86; x % -1 is 0 anyway */
  int64_t r = a % b;
  if (floored && r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

static inline float fmodf_floored(float a, float b) {
  float r = fmodf(a, b);
  if (r != 0.f && ((r < 0.f) != (b < 0.f))) r += b;
  return r;
}

static void mod_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const mod_params *p = node->params;
  if (in[0]->dtype == DD_I64) {
    if (p->fmod) PAIR_KERNEL(int64_t, int64_t, imod(x, z, 0));
    else PAIR_KERNEL(int64_t, int64_t, imod(x, z, 1));
  } else {
    if (p->fmod) PAIR_KERNEL(float, float, fmodf(x, z));
    else PAIR_KERNEL(float, float, fmodf_floored(x, z));
  }
}

/* The integer quotient q of a = q*b + r, as the remainder defines it. */
static inline float mod_quotient(float a, float b, int fmod) {
  float q = a / b;
  return fmod ? truncf(q) : floorf(q);
}

static void mod_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout_,
                         dd_tensor *const *din, void *scratch) {
  if (!dout_[0] || in[0]->dtype != DD_F32) return;
  const mod_params *p = node->params;
  const int fm = p->fmod;
  const dd_tensor *dout = dout_[0];
  if (din[0]) { /* d(a - q*b)/da = 1 */
    const dd_tensor *target = in[0], *other = in[1];
    dd_tensor *dtarget = din[0];
    GRAD_KERNEL(float, g);
  }
  if (din[1]) { /* d(a - q*b)/db = -q, q piecewise constant */
    const dd_tensor *target = in[1], *other = in[0];
    dd_tensor *dtarget = din[1];
    GRAD_KERNEL(float, -g * mod_quotient(o, t, fm));
  }
}

const dd_op dd_op_Mod = {"Mod", mod_init, mod_infer, mod_forward, mod_backward, out_flops,
                         DD_OP_BWD_NO_OUT};
