/* Element-wise arithmetic with numpy (multidirectional) broadcasting: Add, Sub, Mul, Div, Pow,
 * PRelu and the variadic Sum, Max and Min, on float32 or int64 (the shape arithmetic exporters
 * emit).  The backward pass reduces the output gradient over the dims an input was broadcast
 * along.
 *
 * Every kernel walks the output as rows of its innermost (collapsed) dim: dims of size 1 are
 * dropped and neighbours that are contiguous for every operand are merged, so a per-channel
 * constant against NCHW is C rows of H*W, and same-shape operands are one long row cut into
 * blocks for the threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/broadcast.h"

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN, OP_PRELU };

#define BLOCK DD_BCAST_BLOCK

/* Strides of `in` aligned to the right of `out` (already checked to broadcast). */
static void aligned_strides(const dd_shape *out, const dd_shape *in, int64_t *s) {
  int64_t st = 1;
  for (int i = out->ndim - 1; i >= 0; i--) {
    int j = i - (out->ndim - in->ndim);
    if (j < 0 || in->d[j] == 1) {
      s[i] = 0;
    } else {
      s[i] = st;
      st *= in->d[j];
    }
  }
}

void bcast_make(bcast *b, const dd_shape *out, const dd_shape *a, const dd_shape *c) {
  int64_t s[3][DD_MAX_DIMS];
  aligned_strides(out, out, s[0]);
  aligned_strides(out, a, s[1]);
  aligned_strides(out, c, s[2]);
  b->nd = 0;
  for (int i = 0; i < out->ndim; i++) {
    if (out->d[i] == 1) continue;
    int n = b->nd;
    int merge = n > 0;
    for (int k = 0; k < 3 && merge; k++) merge = s[k][i] * out->d[i] == b->s[k][n - 1] ||
                                                  (s[k][i] == 0 && b->s[k][n - 1] == 0);
    if (merge) {
      b->d[n - 1] *= out->d[i];
      for (int k = 0; k < 3; k++) b->s[k][n - 1] = s[k][i];
      continue;
    }
    b->d[n] = out->d[i];
    for (int k = 0; k < 3; k++) b->s[k][n] = s[k][i];
    b->nd++;
  }
  if (b->nd == 0) { /* a scalar, or all dims 1 */
    b->nd = 1;
    b->d[0] = 1;
    for (int k = 0; k < 3; k++) b->s[k][0] = 0;
  }
  int64_t inner = b->d[b->nd - 1];
  b->rows = 1;
  for (int i = 0; i < b->nd - 1; i++) b->rows *= b->d[i];
  b->nblk = inner > BLOCK ? (inner + BLOCK - 1) / BLOCK : 1;
  if (inner == 0) b->rows = 0;
}

/* ---- forward ---- */

static inline int64_t idiv(int64_t a, int64_t b) {
  /* Division by zero and INT64_MIN / -1 trap on x86: give 0 rather than crash. */
  if (b == 0 || (b == -1 && a == INT64_MIN)) return 0;
  return a / b;
}

/* y[i] = a[i*sa] OP c[i*sc] for one block; sa, sc are 0 or 1 (the innermost strides).
 * TA, TC: the element types of a and c.  In vector lanes (omp simd: y is a, c or neither,
 * never a partial overlap, and each element is one operation, so the same values): GCC 12 at
 * -O2 left these loops scalar, and a squeeze-excitation scale of 576 channels on 7x7 planes
 * (MobileNet v3's last blocks) took 16 us. */
#define BINARY_BLOCK(TA, TC, EXPR)                                        \
  do {                                                                    \
    if (sa && sc) {                                                       \
      _Pragma("omp simd")                                                 \
      for (int64_t i = i0; i < i1; i++) { TA x = pa[i]; TC z = pc[i]; py[i] = EXPR; } \
    } else if (sa) {                                                      \
      const TC z = pc[0];                                                 \
      _Pragma("omp simd")                                                 \
      for (int64_t i = i0; i < i1; i++) { TA x = pa[i]; py[i] = EXPR; }   \
    } else if (sc) {                                                      \
      const TA x = pa[0];                                                 \
      _Pragma("omp simd")                                                 \
      for (int64_t i = i0; i < i1; i++) { TC z = pc[i]; py[i] = EXPR; }   \
    } else {                                                              \
      for (int64_t i = i0; i < i1; i++) { TA x = pa[0]; TC z = pc[0]; py[i] = EXPR; } \
    }                                                                     \
  } while (0)

/* y = EXPR(x, z) with x of type TA, z of TC and y of TY. */
#define BINARY_KERNEL_T(TA, TC, TY, EXPR)                                        \
  do {                                                                           \
    const int64_t sa = b->s[1][b->nd - 1], sc = b->s[2][b->nd - 1];              \
    const int64_t nblk = b->rows * b->nblk;                                      \
    _Pragma("omp parallel for if (total > DD_PAR_MIN) schedule(static)")         \
    for (int64_t blk = 0; blk < nblk; blk++) {                                   \
      int64_t off[3], i0, i1;                                                    \
      bcast_block(b, blk, off, &i0, &i1);                                        \
      const TA *pa = (const TA *)a + off[1];                                     \
      const TC *pc = (const TC *)c + off[2];                                     \
      TY *py = (TY *)y + off[0];                                                 \
      BINARY_BLOCK(TA, TC, EXPR);                                                \
    }                                                                            \
  } while (0)
#define BINARY_KERNEL(T, EXPR) BINARY_KERNEL_T(T, T, T, EXPR)

/* numpy's maximum and minimum: a NaN on either side gives NaN. */
#define FMAX_NAN(x, z) ((x) > (z) || (x) != (x) ? (x) : (z))
#define FMIN_NAN(x, z) ((x) < (z) || (x) != (x) ? (x) : (z))

/* y = a OP c over the iteration `b` (y dense in the output shape; y may alias a). */
static void binary_run(int op, dd_dtype dt, const bcast *b, const void *a, const void *c,
                       void *y, int64_t total) {
  if (dt == DD_F32) {
    switch (op) {
      case OP_ADD: BINARY_KERNEL(float, x + z); break;
      case OP_SUB: BINARY_KERNEL(float, x - z); break;
      case OP_MUL: BINARY_KERNEL(float, x * z); break;
      case OP_DIV: BINARY_KERNEL(float, x / z); break;
      case OP_MAX: BINARY_KERNEL(float, FMAX_NAN(x, z)); break;
      case OP_MIN: BINARY_KERNEL(float, FMIN_NAN(x, z)); break;
      default: BINARY_KERNEL(float, x < 0.f ? z * x : x); break; /* OP_PRELU */
    }
  } else {
    /* Wrapping arithmetic via unsigned, as numpy's int64 does, without signed overflow. */
    switch (op) {
      case OP_ADD: BINARY_KERNEL(int64_t, (int64_t)((uint64_t)x + (uint64_t)z)); break;
      case OP_SUB: BINARY_KERNEL(int64_t, (int64_t)((uint64_t)x - (uint64_t)z)); break;
      case OP_MUL: BINARY_KERNEL(int64_t, (int64_t)((uint64_t)x * (uint64_t)z)); break;
      case OP_DIV: BINARY_KERNEL(int64_t, idiv(x, z)); break;
      case OP_MAX: BINARY_KERNEL(int64_t, x > z ? x : z); break;
      default: BINARY_KERNEL(int64_t, x < z ? x : z); break; /* OP_MIN */
    }
  }
}

/* ---- backward ----
 * dt += reduce(f(dy, t, o)) where t is the input whose gradient is wanted (operand 1 of the
 * iteration) and o the other input (operand 2).  When t is broadcast the reduction writes
 * one element from many positions, so it runs serially; otherwise every output position
 * owns its element and the blocks run in parallel. */
enum {
  G_ONE, G_NEG, G_MUL_OTHER, G_DIV_OTHER, G_DIV_DENOM,
  G_POW_BASE,     /* d(t^o)/dt, o float32 */
  G_POW_BASE_I64, /* d(t^o)/dt, o int64 */
  G_POW_EXP,      /* d(o^t)/dt */
  G_PRELU_X,      /* d prelu(t; slope o)/dt */
  G_PRELU_SLOPE   /* d prelu(o; slope t)/dt */
};

/* TO: the element type of the other operand. */
#define GRAD_BLOCK(TO, EXPR)                                                            \
  do {                                                                                  \
    if (st) {                                                                           \
      for (int64_t i = i0; i < i1; i++) {                                               \
        float g = pdy[i], t = pt[i];                                                    \
        TO o = po[i * so];                                                              \
        (void)t; (void)o;                                                               \
        pdt[i] += EXPR;                                                                 \
      }                                                                                 \
    } else {                                                                            \
      float acc = 0.f, t = pt[0];                                                       \
      (void)t;                                                                          \
      for (int64_t i = i0; i < i1; i++) {                                               \
        float g = pdy[i];                                                               \
        TO o = po[i * so];                                                              \
        (void)o;                                                                        \
        acc += EXPR;                                                                    \
      }                                                                                 \
      pdt[0] += acc;                                                                    \
    }                                                                                   \
  } while (0)

#define GRAD_KERNEL_T(TO, EXPR)                                                         \
  do {                                                                                  \
    _Pragma("omp parallel for if (par) schedule(static)")                               \
    for (int64_t blk = 0; blk < nblk; blk++) {                                          \
      int64_t off[3], i0, i1;                                                           \
      bcast_block(b, blk, off, &i0, &i1);                                               \
      const float *pdy = dy + off[0], *pt = t + off[1];                                 \
      const TO *po = (const TO *)o + off[2];                                            \
      float *pdt = dt + off[1];                                                         \
      GRAD_BLOCK(TO, EXPR);                                                             \
    }                                                                                   \
  } while (0)
#define GRAD_KERNEL(EXPR) GRAD_KERNEL_T(float, EXPR)

/* d(x^e)/dx = e x^(e-1), and 0 where e = 0 (as PyTorch: x^0 is 1 even at x = 0). */
static inline float pow_dbase(float x, float e) { return e == 0.f ? 0.f : e * powf(x, e - 1.f); }
/* d(x^e)/de = x^e log x where x > 0, and 0 elsewhere: where x < 0 a real x^e exists only at
 * integer e, around which it does not, and at x = 0 the limit of x^e log x is 0 for e > 0. */
static inline float pow_dexp(float x, float e) { return x > 0.f ? powf(x, e) * logf(x) : 0.f; }

static void grad_run(int kind, const dd_tensor *dout, const dd_tensor *target,
                     const dd_tensor *other, dd_tensor *dtarget) {
  bcast bb;
  const bcast *b = &bb;
  bcast_make(&bb, &dout->shape, &target->shape, &other->shape);
  const int64_t st = b->s[1][b->nd - 1], so = b->s[2][b->nd - 1];
  const int64_t nblk = b->rows * b->nblk, total = dd_tensor_numel(dout);
  const int par = total > DD_PAR_MIN && dd_tensor_numel(target) == total;
  const float *dy = dd_f32(dout), *t = dd_f32(target);
  const void *o = other->data;
  float *dt = dd_f32(dtarget);
  switch (kind) {
    case G_ONE: GRAD_KERNEL(g); break;
    case G_NEG: GRAD_KERNEL(-g); break;
    case G_MUL_OTHER: GRAD_KERNEL(g * o); break;
    case G_DIV_OTHER: GRAD_KERNEL(g / o); break;
    case G_DIV_DENOM: GRAD_KERNEL(-g * o / (t * t)); break; /* d(o/t)/dt */
    case G_POW_BASE: GRAD_KERNEL(g * pow_dbase(t, o)); break;
    case G_POW_BASE_I64: GRAD_KERNEL_T(int64_t, g * pow_dbase(t, (float)o)); break;
    case G_POW_EXP: GRAD_KERNEL(g * pow_dexp(o, t)); break;
    /* As PyTorch: at x = 0 the gradient is the slope's side. */
    case G_PRELU_X: GRAD_KERNEL(t > 0.f ? g : g * o); break;
    default: GRAD_KERNEL(o > 0.f ? 0.f : g * o); break; /* G_PRELU_SLOPE */
  }
}

/* ---- the ops ---- */

typedef struct bin_params {
  int op;
} bin_params;

static int binary_init_op(dd_node *node, int op, dd_err *err) {
  static const char *const known[] = {NULL};
  if (dd_node_attr(node, "broadcast") || dd_node_attr(node, "axis"))
    return dd_fail(err, DD_EUNSUPPORTED,
                   "the legacy 'broadcast'/'axis' attributes (opset < 7) are not supported; "
                   "re-export the model with opset 7 or later (numpy broadcasting)");
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  bin_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->op = op;
  node->params = p;
  return DD_OK;
}

static int add_init(dd_node *node, dd_err *err) { return binary_init_op(node, OP_ADD, err); }
static int sub_init(dd_node *node, dd_err *err) { return binary_init_op(node, OP_SUB, err); }
static int mul_init(dd_node *node, dd_err *err) { return binary_init_op(node, OP_MUL, err); }
static int div_init(dd_node *node, dd_err *err) { return binary_init_op(node, OP_DIV, err); }

/* The numpy broadcast of the shapes of in[0..n-1] into *out, whatever their element types. */
static int broadcast_dims(const dd_tensor *const *in, int n, dd_shape *out, dd_err *err) {
  char s1[128], s2[128];
  dd_shape r = {0};
  for (int k = 0; k < n; k++) {
    if (!in[k]) return dd_fail(err, DD_EFORMAT, "input %d is missing", k);
    const dd_shape *s = &in[k]->shape;
    int nd = s->ndim > r.ndim ? s->ndim : r.ndim;
    dd_shape m = {.ndim = nd};
    for (int i = 0; i < nd; i++) {
      int ir = i - (nd - r.ndim), is = i - (nd - s->ndim);
      int64_t a = ir >= 0 ? r.d[ir] : 1, b = is >= 0 ? s->d[is] : 1;
      if (a != b && a != 1 && b != 1)
        return dd_fail(err, DD_ESHAPE, "shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                       dd_shape_str(&r, s1, sizeof s1), dd_shape_str(s, s2, sizeof s2), i,
                       (long long)a, (long long)b);
      m.d[i] = a == 1 ? b : a;
    }
    r = m;
  }
  *out = r;
  return DD_OK;
}

/* The numpy broadcast of the shapes of in[0..n-1] into *out, all of one element type. */
static int broadcast_shapes(const dd_tensor *const *in, int n, dd_shape *out, dd_dtype *dt,
                            dd_err *err) {
  for (int k = 0; k < n; k++) {
    if (!in[k]) return dd_fail(err, DD_EFORMAT, "input %d is missing", k);
    if (in[k]->dtype != DD_F32 && in[k]->dtype != DD_I64)
      return dd_fail(err, DD_EUNSUPPORTED, "input %d must be float32 or int64", k);
    if (in[k]->dtype != in[0]->dtype)
      return dd_fail(err, DD_EUNSUPPORTED, "inputs have different types (%s and %s)",
                     dd_dtype_name(in[0]->dtype), dd_dtype_name(in[k]->dtype));
  }
  *dt = n > 0 ? in[0]->dtype : DD_F32;
  return broadcast_dims(in, n, out, err);
}

static int binary_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  if (node->n_in != 2) return dd_fail(err, DD_EFORMAT, "needs 2 inputs, got %d", node->n_in);
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  dd_shape s;
  dd_dtype dt;
  int rc = broadcast_shapes(in, 2, &s, &dt, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = dt;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

static void binary_forward(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const bin_params *p = node->params;
  bcast b;
  bcast_make(&b, &out[0]->shape, &in[0]->shape, &in[1]->shape);
  binary_run(p->op, out[0]->dtype, &b, in[0]->data, in[1]->data, out[0]->data,
             dd_tensor_numel(out[0]));
}

static void binary_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!dout[0] || in[0]->dtype != DD_F32) return;
  const bin_params *p = node->params;
  static const int ka[] = {G_ONE, G_ONE, G_MUL_OTHER, G_DIV_OTHER};
  static const int kb[] = {G_ONE, G_NEG, G_MUL_OTHER, G_DIV_DENOM};
  if (din[0]) grad_run(ka[p->op], dout[0], in[0], in[1], din[0]);
  if (din[1]) grad_run(kb[p->op], dout[0], in[1], in[0], din[1]);
}

static int64_t binary_flops(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out) {
  return out[0] ? dd_tensor_numel(out[0]) : 0;
}

const dd_op dd_op_Add = {"Add", add_init, binary_infer, binary_forward, binary_backward,
                         binary_flops, 0};
const dd_op dd_op_Sub = {"Sub", sub_init, binary_infer, binary_forward, binary_backward,
                         binary_flops, 0};
const dd_op dd_op_Mul = {"Mul", mul_init, binary_infer, binary_forward, binary_backward,
                         binary_flops, 0};
const dd_op dd_op_Div = {"Div", div_init, binary_infer, binary_forward, binary_backward,
                         binary_flops, 0};

/* ---- Sum: out = in0 + in1 + ... with all inputs broadcast together ---- */

static int sum_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  if (node->n_in < 1) return dd_fail(err, DD_EFORMAT, "Sum needs at least one input");
  return dd_node_check_attrs(node, known, err);
}

static int sum_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  dd_shape s;
  dd_dtype dt;
  int rc = broadcast_shapes(in, node->n_in, &s, &dt, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = dt;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

static void sum_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const dd_tensor *y = out[0];
  int64_t total = dd_tensor_numel(y);
  bcast b;
  if (node->n_in == 1) {
    memcpy(y->data, in[0]->data, (size_t)total * dd_dtype_size(y->dtype));
    return;
  }
  bcast_make(&b, &y->shape, &in[0]->shape, &in[1]->shape);
  binary_run(OP_ADD, y->dtype, &b, in[0]->data, in[1]->data, y->data, total);
  for (int k = 2; k < node->n_in; k++) { /* y += in[k], in place: y is operand 1 */
    bcast_make(&b, &y->shape, &y->shape, &in[k]->shape);
    binary_run(OP_ADD, y->dtype, &b, y->data, in[k]->data, y->data, total);
  }
}

static void sum_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout,
                         dd_tensor *const *din, void *scratch) {
  if (!dout[0] || in[0]->dtype != DD_F32) return;
  for (int k = 0; k < node->n_in; k++)
    if (din[k]) grad_run(G_ONE, dout[0], in[k], in[k], din[k]);
}

static int64_t sum_flops(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out) {
  return out[0] ? dd_tensor_numel(out[0]) * (node->n_in - 1) : 0;
}

const dd_op dd_op_Sum = {"Sum", sum_init, sum_infer, sum_forward, sum_backward, sum_flops, 0};

/* ---- Pow: base^exponent, base float32 or int64, exponent float32 or int64 ----
 * The output has the base's type (ONNX).  Gradients: w.r.t. a float32 base, and w.r.t. a
 * float32 exponent where the base is > 0 (0 elsewhere, see pow_dexp). */

static int pow_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  if (node->n_in != 2) return dd_fail(err, DD_EFORMAT, "Pow needs 2 inputs, got %d", node->n_in);
  return dd_node_check_attrs(node, known, err);
}

static int pow_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  for (int k = 0; k < 2; k++) {
    if (!in[k]) return dd_fail(err, DD_EFORMAT, "input %d is missing", k);
    if (in[k]->dtype != DD_F32 && in[k]->dtype != DD_I64)
      return dd_fail(err, DD_EUNSUPPORTED, "Pow %s of type %s is not supported (float32 or "
                     "int64)", k ? "exponent" : "base", dd_dtype_name(in[k]->dtype));
  }
  dd_shape s;
  int rc = broadcast_dims(in, 2, &s, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = in[0]->dtype;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

/* Integer power by squaring, wrapping as numpy's int64 does.  A negative exponent gives the
 * C truncation of 1 / x^-e: 1 for x = 1, +-1 for x = -1, 0 otherwise (and 0 for x = 0,
 * where numpy raises). */
static int64_t ipow(int64_t x, int64_t e) {
  if (e < 0) return x == 1 ? 1 : x == -1 ? ((e & 1) ? -1 : 1) : 0;
  uint64_t r = 1, b = (uint64_t)x;
  for (; e; e >>= 1, b *= b)
    if (e & 1) r *= b;
  return (int64_t)r;
}

/* An int64 base with a float32 exponent: the real power truncated toward 0, as numpy's
 * astype(int64); saturated where out of range, and 0 for NaN. */
static int64_t ipow_f(int64_t x, float e) {
  double r = pow((double)x, (double)e);
  if (isnan(r)) return 0;
  if (r >= 9223372036854775807.0) return INT64_MAX;
  if (r <= -9223372036854775808.0) return INT64_MIN;
  return (int64_t)r;
}

static void pow_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  bcast bb;
  const bcast *b = &bb;
  bcast_make(&bb, &out[0]->shape, &in[0]->shape, &in[1]->shape);
  const void *a = in[0]->data, *c = in[1]->data;
  void *y = out[0]->data;
  const int64_t total = dd_tensor_numel(out[0]);
  /* x^2 (the variance of a LayerNorm written out, opset < 17) without a powf per element:
   * the same correctly rounded x*x */
  int square = in[1]->dtype == DD_F32 && dd_tensor_numel(in[1]) == 1 && dd_f32(in[1])[0] == 2.f;
  if (in[0]->dtype == DD_F32 && square)
    BINARY_KERNEL(float, ((void)z, x * x));
  else if (in[0]->dtype == DD_F32 && in[1]->dtype == DD_F32)
    BINARY_KERNEL(float, powf(x, z));
  else if (in[0]->dtype == DD_F32) /* in double, as numpy promotes float32 ** int64 */
    BINARY_KERNEL_T(float, int64_t, float, (float)pow((double)x, (double)z));
  else if (in[1]->dtype == DD_I64)
    BINARY_KERNEL(int64_t, ipow(x, z));
  else
    BINARY_KERNEL_T(int64_t, float, int64_t, ipow_f(x, z));
}

static void pow_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout,
                         dd_tensor *const *din, void *scratch) {
  if (!dout[0] || in[0]->dtype != DD_F32) return;
  if (din[0])
    grad_run(in[1]->dtype == DD_F32 ? G_POW_BASE : G_POW_BASE_I64, dout[0], in[0], in[1], din[0]);
  if (din[1] && in[1]->dtype == DD_F32) grad_run(G_POW_EXP, dout[0], in[1], in[0], din[1]);
}

static int64_t pow_flops(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out) {
  return out[0] ? 8 * dd_tensor_numel(out[0]) : 0; /* a log and an exp, roughly */
}

const dd_op dd_op_Pow = {"Pow", pow_init, pow_infer, pow_forward, pow_backward, pow_flops,
                         DD_OP_BWD_NO_OUT};

/* ---- PRelu: x < 0 ? slope * x : x, the slope broadcast to x (unidirectionally) ---- */

static int prelu_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  if (node->n_in != 2) return dd_fail(err, DD_EFORMAT, "PRelu needs 2 inputs, got %d", node->n_in);
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  bin_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->op = OP_PRELU;
  node->params = p;
  return DD_OK;
}

static int prelu_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  dd_shape s;
  dd_dtype dt;
  int rc = broadcast_shapes(in, 2, &s, &dt, err);
  if (rc) return rc;
  if (dt != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "PRelu of int64 is not supported");
  char s1[128], s2[128];
  if (!dd_shape_eq(&s, &in[0]->shape))
    return dd_fail(err, DD_ESHAPE, "PRelu slope of shape %s does not broadcast to X's %s",
                   dd_shape_str(&in[1]->shape, s1, sizeof s1),
                   dd_shape_str(&in[0]->shape, s2, sizeof s2));
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

static void prelu_backward(const dd_node *node, const dd_tensor *const *in,
                           const dd_tensor *const *out, const dd_tensor *const *dout,
                           dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  if (din[0]) grad_run(G_PRELU_X, dout[0], in[0], in[1], din[0]);
  if (din[1]) grad_run(G_PRELU_SLOPE, dout[0], in[1], in[0], din[1]);
}

const dd_op dd_op_PRelu = {"PRelu", prelu_init, prelu_infer, binary_forward, prelu_backward,
                           binary_flops, DD_OP_BWD_NO_OUT};

/* ---- Max, Min: variadic, broadcast together ----
 * On ties the gradient goes to the first input holding the extreme (in input order), once
 * per output element: input k receives dy where it equals y and no earlier input does.  A
 * broadcast input competes as each of its copies.  Where y is NaN no input receives it. */

static int extreme_init(dd_node *node, int op, dd_err *err) {
  static const char *const known[] = {NULL};
  if (node->n_in < 1) return dd_fail(err, DD_EFORMAT, "%s needs at least one input", node->op_type);
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  bin_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->op = op;
  node->params = p;
  return DD_OK;
}

static int max_init(dd_node *node, dd_err *err) { return extreme_init(node, OP_MAX, err); }
static int min_init(dd_node *node, dd_err *err) { return extreme_init(node, OP_MIN, err); }

/* Scratch: one byte per output element, set once an input has claimed its gradient. */
static int extreme_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         size_t *scratch, dd_err *err) {
  int rc = sum_infer(node, in, out, scratch, err);
  if (rc) return rc;
  if (out[0] && out[0]->dtype == DD_F32) *scratch = (size_t)dd_shape_numel(&out[0]->shape);
  return DD_OK;
}

static void extreme_forward(const dd_node *node, const dd_tensor *const *in,
                            dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const bin_params *p = node->params;
  const dd_tensor *y = out[0];
  int64_t total = dd_tensor_numel(y);
  bcast b;
  if (node->n_in == 1) {
    memcpy(y->data, in[0]->data, (size_t)total * dd_dtype_size(y->dtype));
    return;
  }
  bcast_make(&b, &y->shape, &in[0]->shape, &in[1]->shape);
  binary_run(p->op, y->dtype, &b, in[0]->data, in[1]->data, y->data, total);
  for (int k = 2; k < node->n_in; k++) { /* y = op(y, in[k]) in place: y is operand 1 */
    bcast_make(&b, &y->shape, &y->shape, &in[k]->shape);
    binary_run(p->op, y->dtype, &b, y->data, in[k]->data, y->data, total);
  }
}

/* Claims the unclaimed output elements where x == y, and adds dy there to dx (when not
 * NULL).  Blocks run in parallel unless x is broadcast and dx wanted: then one dx element
 * gathers from many output elements. */
static void extreme_grad_input(const dd_tensor *x, const dd_tensor *y, const dd_tensor *dy,
                               dd_tensor *dx, unsigned char *claimed) {
  bcast bb;
  const bcast *b = &bb;
  bcast_make(&bb, &y->shape, &x->shape, &y->shape);
  const int64_t sx = b->s[1][b->nd - 1], nblk = b->rows * b->nblk, total = dd_tensor_numel(y);
  const int par = total > DD_PAR_MIN && (!dx || dd_tensor_numel(x) == total);
  const float *px0 = dd_f32(x), *py0 = dd_f32(y), *pg0 = dd_f32(dy);
  float *pd0 = dx ? dd_f32(dx) : NULL;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t blk = 0; blk < nblk; blk++) {
    int64_t off[3], i0, i1;
    bcast_block(b, blk, off, &i0, &i1);
    const float *px = px0 + off[1], *py = py0 + off[0], *pg = pg0 + off[0];
    float *pd = pd0 ? pd0 + off[1] : NULL;
    unsigned char *pc = claimed + off[0];
    for (int64_t i = i0; i < i1; i++)
      if (!pc[i] && px[i * sx] == py[i]) {
        pc[i] = 1;
        if (pd) pd[i * sx] += pg[i];
      }
  }
}

static void extreme_backward(const dd_node *node, const dd_tensor *const *in,
                             const dd_tensor *const *out, const dd_tensor *const *dout,
                             dd_tensor *const *din, void *scratch) {
  if (!dout[0] || !out[0] || in[0]->dtype != DD_F32 || dd_tensor_numel(out[0]) == 0) return;
  unsigned char *claimed = scratch; /* (numel(y)) */
  memset(claimed, 0, (size_t)dd_tensor_numel(out[0]));
  /* Every input up to the last wanted one competes, wanted or not: an earlier input whose
   * gradient nobody asks for still takes the gradient away from later ones where it holds
   * the extreme. */
  int last = -1;
  for (int k = 0; k < node->n_in; k++)
    if (din[k]) last = k;
  for (int k = 0; k <= last; k++) extreme_grad_input(in[k], out[0], dout[0], din[k], claimed);
}

static int64_t extreme_flops(const dd_node *node, const dd_tensor *const *in,
                             const dd_tensor *const *out) {
  return out[0] ? dd_tensor_numel(out[0]) * (node->n_in - 1) : 0;
}

const dd_op dd_op_Max = {"Max", max_init, extreme_infer, extreme_forward, extreme_backward,
                         extreme_flops, 0};
const dd_op dd_op_Min = {"Min", min_init, extreme_infer, extreme_forward, extreme_backward,
                         extreme_flops, 0};
