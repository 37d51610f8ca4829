/* Reductions over a set of axes: ReduceMean, ReduceSum, ReduceMax, one machinery.  The axes
 * come from the attribute or from the optional second input, which must then be constant;
 * which form a node uses is decided by what it carries (ONNX moved the axes to an input at
 * opset 13 for ReduceSum and at opset 18 for the others), so a mislabelled opset does not
 * matter.  Both at once is refused.
 *
 * The input's dims are split into kept and reduced ones, neighbours of the same kind merged:
 * a mean over H and W of NCHW is N*C outputs of H*W contiguous elements each.  Forward and
 * backward iterate over output elements, each owning its reduced elements, so they run in
 * parallel without races.
 *
 * ReduceMax's gradient goes to the first maximal element of each reduced group (in row-major
 * order of the input), all of it, as PyTorch's max with a dim does; a group whose maximum is
 * NaN sends it to its first NaN.  An empty group's maximum is -inf, its mean NaN, its sum 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/common.h"

enum { RED_MEAN, RED_SUM, RED_MAX };

typedef struct reduce_params {
  int kind;
  int64_t keepdims, noop_empty;
  int n_axes; /* -1: no attribute */
  int64_t axes[DD_MAX_DIMS];
} reduce_params;

static int reduce_init_kind(dd_node *node, int kind, dd_err *err) {
  static const char *const known[] = {"axes", "keepdims", "noop_with_empty_axes", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  reduce_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->kind = kind;
  rc = dd_attr_int(node, "keepdims", 1, &p->keepdims, err);
  if (!rc) rc = dd_attr_int(node, "noop_with_empty_axes", 0, &p->noop_empty, err);
  if (!rc) rc = dd_attr_ints(node, "axes", DD_MAX_DIMS, p->axes, &p->n_axes, err);
  if (!rc && p->n_axes >= 0 && node->n_in > 1 && node->in[1] >= 0)
    rc = dd_fail(err, DD_EFORMAT, "axes given both as attribute and as input");
  if (!rc && (node->n_in < 1 || node->n_in > 2))
    rc = dd_fail(err, DD_EFORMAT, "%s takes 1 or 2 inputs, got %d", node->op_type, node->n_in);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static int mean_init(dd_node *node, dd_err *err) { return reduce_init_kind(node, RED_MEAN, err); }
static int sum_init(dd_node *node, dd_err *err) { return reduce_init_kind(node, RED_SUM, err); }
static int max_init(dd_node *node, dd_err *err) { return reduce_init_kind(node, RED_MAX, err); }

/* The resolved reduction: which input dims are reduced (0 when the op is the identity). */
typedef struct reduction {
  int identity;
  unsigned char red[DD_MAX_DIMS];
} reduction;

static int reduce_resolve(const dd_node *node, const dd_tensor *const *in, reduction *r,
                          dd_err *err) {
  const reduce_params *p = node->params;
  const dd_tensor *x = in[0];
  int rank = x->shape.ndim;
  int64_t axes[DD_MAX_DIMS];
  int n = p->n_axes > 0 ? p->n_axes : 0;
  memcpy(axes, p->axes, sizeof axes);
  if (node->n_in > 1 && in[1]) {
    const dd_tensor *a = in[1];
    if (a->dtype != DD_I64 || a->shape.ndim > 1)
      return dd_fail(err, DD_EFORMAT, "axes input must be a 1-D int64 tensor");
    if (!a->data)
      return dd_fail(err, DD_EUNSUPPORTED, "axes input must be constant (an initializer or "
                     "computed from constants), it is computed at run time");
    int64_t na = dd_tensor_numel(a);
    if (na > DD_MAX_DIMS) return dd_fail(err, DD_EFORMAT, "axes has %lld values", (long long)na);
    n = (int)na;
    memcpy(axes, a->data, (size_t)na * sizeof *axes);
  }
  memset(r, 0, sizeof *r);
  if (n == 0) {
    if (p->noop_empty) r->identity = 1;
    else memset(r->red, 1, sizeof r->red);
    return DD_OK;
  }
  for (int i = 0; i < n; i++) {
    int64_t a = axes[i];
    if (a < -rank || a >= rank)
      return dd_fail(err, DD_EFORMAT, "axis %lld is out of range for %d dims", (long long)a, rank);
    if (a < 0) a += rank;
    if (r->red[a]) return dd_fail(err, DD_EFORMAT, "axis %lld is repeated", (long long)axes[i]);
    r->red[a] = 1;
  }
  return DD_OK;
}

static int reduce_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  const reduce_params *p = node->params;
  if (!in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  if (in[0]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "input must be float32");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  reduction r;
  int rc = reduce_resolve(node, in, &r, err);
  if (rc) return rc;
  dd_shape s = {0};
  for (int i = 0; i < in[0]->shape.ndim; i++) {
    if (!r.identity && r.red[i] && !p->keepdims) continue;
    s.d[s.ndim++] = !r.identity && r.red[i] ? 1 : in[0]->shape.d[i];
  }
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

/* Merged dims with their strides in x: kept ones (y is dense over them, in order) and
 * reduced ones. */
typedef struct rplan {
  int nk, nr;
  int64_t kd[DD_MAX_DIMS], kxs[DD_MAX_DIMS];
  int64_t rd[DD_MAX_DIMS], rxs[DD_MAX_DIMS];
  int64_t nout, count; /* output elements, elements reduced into each */
} rplan;

static void rplan_make(const dd_shape *xs, const reduction *r, rplan *q) {
  int64_t xst[DD_MAX_DIMS], st = 1;
  for (int i = xs->ndim - 1; i >= 0; i--) {
    xst[i] = st;
    st *= xs->d[i];
  }
  memset(q, 0, sizeof *q);
  q->nout = q->count = 1;
  int last = -1; /* kind of the previous merged dim: 0 kept, 1 reduced */
  for (int i = 0; i < xs->ndim; i++) {
    int red = !r->identity && r->red[i];
    int64_t d = xs->d[i];
    if (red) q->count *= d;
    else q->nout *= d;
    if (d == 1) continue;
    if (red) {
      if (last == 1) {
        q->rd[q->nr - 1] *= d;
        q->rxs[q->nr - 1] = xst[i];
      } else {
        q->rd[q->nr] = d;
        q->rxs[q->nr++] = xst[i];
      }
    } else {
      if (last == 0) {
        q->kd[q->nk - 1] *= d;
        q->kxs[q->nk - 1] = xst[i];
      } else {
        q->kd[q->nk] = d;
        q->kxs[q->nk++] = xst[i];
      }
    }
    last = red;
  }
}

static inline int64_t kept_offset(const rplan *q, int64_t o) {
  int64_t off = 0;
  for (int i = q->nk - 1; i >= 0; i--) {
    off += (o % q->kd[i]) * q->kxs[i];
    o /= q->kd[i];
  }
  return off;
}

/* Calls BODY(x_offset) for every reduced element of the output at x offset `base`, with the
 * innermost reduced dim as the tight loop. */
#define FOR_REDUCED(q, base, BODY)                                                   \
  do {                                                                               \
    int64_t idx_[DD_MAX_DIMS] = {0};                                                 \
    int nr_ = (q)->nr;                                                               \
    int64_t in_n_ = nr_ ? (q)->rd[nr_ - 1] : 1, in_s_ = nr_ ? (q)->rxs[nr_ - 1] : 0; \
    int64_t outer_ = 1;                                                              \
    for (int i_ = 0; i_ < nr_ - 1; i_++) outer_ *= (q)->rd[i_];                      \
    for (int64_t r_ = 0; r_ < outer_; r_++) {                                        \
      int64_t off_ = (base);                                                         \
      for (int i_ = 0; i_ < nr_ - 1; i_++) off_ += idx_[i_] * (q)->rxs[i_];          \
      for (int64_t j_ = 0; j_ < in_n_; j_++) {                                       \
        int64_t xo = off_ + j_ * in_s_;                                              \
        BODY;                                                                        \
      }                                                                              \
      for (int i_ = nr_ - 2; i_ >= 0; i_--) {                                        \
        if (++idx_[i_] < (q)->rd[i_]) break;                                         \
        idx_[i_] = 0;                                                                \
      }                                                                              \
    }                                                                                \
  } while (0)

/* Offset in x of the first maximal element of the group at `base` (the first NaN when there
 * is one); -1 for an empty group. */
static inline int64_t group_argmax(const rplan *q, const float *x, int64_t base) {
  int64_t best = -1;
  float m = 0.f;
  FOR_REDUCED(q, base, {
    float v = x[xo];
    if (best < 0 || (m == m && (v > m || v != v))) {
      m = v;
      best = xo;
    }
  });
  return best;
}

static void reduce_forward(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const reduce_params *p = node->params;
  reduction r;
  reduce_resolve(node, in, &r, NULL);
  rplan q;
  rplan_make(&in[0]->shape, &r, &q);
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  const int kind = p->kind;
  /* A mean over nothing is 0/0, NaN, as numpy gives. */
  const double inv = kind == RED_MEAN ? 1.0 / (double)q.count : 1.0;
  int64_t total = dd_tensor_numel(in[0]);
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t o = 0; o < q.nout; o++) {
    int64_t base = kept_offset(&q, o);
    if (kind == RED_MAX) {
      int64_t at = group_argmax(&q, x, base);
      y[o] = at < 0 ? -INFINITY : x[at];
      continue;
    }
    double acc = 0;
    FOR_REDUCED(&q, base, acc += x[xo]);
    y[o] = (float)(q.count || kind == RED_SUM ? acc * inv : acc / 0.0);
  }
}

static void reduce_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const reduce_params *p = node->params;
  reduction r;
  reduce_resolve(node, in, &r, NULL);
  rplan q;
  rplan_make(&in[0]->shape, &r, &q);
  if (q.count == 0) return;
  const float *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  const int kind = p->kind;
  const float inv = kind == RED_MEAN ? (float)(1.0 / (double)q.count) : 1.f;
  const float *x = kind == RED_MAX ? dd_f32(in[0]) : NULL;
  int64_t total = dd_tensor_numel(in[0]);
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t o = 0; o < q.nout; o++) {
    int64_t base = kept_offset(&q, o);
    if (kind == RED_MAX) {
      dx[group_argmax(&q, x, base)] += dy[o];
      continue;
    }
    float g = dy[o] * inv;
    FOR_REDUCED(&q, base, dx[xo] += g);
  }
}

static int64_t reduce_flops(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out) {
  return dd_tensor_numel(in[0]);
}

/* Sums and means read neither tensor in backward, only shapes; the max reads x. */
const dd_op dd_op_ReduceMean = {"ReduceMean", mean_init, reduce_infer, reduce_forward,
                                reduce_backward, reduce_flops,
                                DD_OP_BWD_NO_X | DD_OP_BWD_NO_OUT};
const dd_op dd_op_ReduceSum = {"ReduceSum", sum_init, reduce_infer, reduce_forward,
                               reduce_backward, reduce_flops, DD_OP_BWD_NO_X | DD_OP_BWD_NO_OUT};
const dd_op dd_op_ReduceMax = {"ReduceMax", max_init, reduce_infer, reduce_forward,
                               reduce_backward, reduce_flops, DD_OP_BWD_NO_OUT};
