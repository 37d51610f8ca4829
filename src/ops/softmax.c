/* Softmax and LogSoftmax, forward and backward side by side.
 *
 * The semantics changed with opset 13: before, the input is coerced to 2-D at `axis`
 * (default 1) and the softmax runs over everything from axis on; from 13, it runs along the
 * one dim `axis` (default -1).  Both are "rows" of n elements, `inner` apart in memory:
 * outer x n x inner, with inner = 1 for the old rule.  The model's opset comes from
 * node->opset (0, unknown, takes the current rule).  LogSoftmax follows the same two rules
 * and shares the rows: y = x - max - log(sum(exp(x - max))), never exp of a positive number
 * nor the log of a softmax that underflowed to 0.
 */
#include <math.h>
#include <stdlib.h>

#include "ops/common.h"
#include "ops/fastexp.h"

typedef struct softmax_params {
  int64_t axis;
  int coerce_2d; /* opset < 13 */
  int is_log;    /* LogSoftmax */
} softmax_params;

static int softmax_init_kind(dd_node *node, int is_log, dd_err *err) {
  static const char *const known[] = {"axis", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  softmax_params p;
  p.coerce_2d = node->opset > 0 && node->opset < 13;
  p.is_log = is_log;
  rc = dd_attr_int(node, "axis", p.coerce_2d ? 1 : -1, &p.axis, err);
  if (rc) return rc;
  softmax_params *q = malloc(sizeof *q);
  if (!q) return dd_fail(err, DD_ENOMEM, "out of memory");
  *q = p;
  node->params = q;
  return DD_OK;
}

static int softmax_init(dd_node *node, dd_err *err) { return softmax_init_kind(node, 0, err); }
static int logsoftmax_init(dd_node *node, dd_err *err) { return softmax_init_kind(node, 1, err); }

/* Rows of the softmax: outer x n x inner elements. */
static void softmax_layout(const softmax_params *p, const dd_shape *s, int64_t *outer,
                           int64_t *n, int64_t *inner) {
  int a = (int)(p->axis < 0 ? p->axis + s->ndim : p->axis);
  *outer = *n = *inner = 1;
  for (int i = 0; i < s->ndim; i++) {
    if (i < a) *outer *= s->d[i];
    else if (i == a || p->coerce_2d) *n *= s->d[i];
    else *inner *= s->d[i];
  }
}

static int softmax_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         size_t *scratch, dd_err *err) {
  const softmax_params *p = node->params;
  if (node->n_in != 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs exactly one input");
  if (in[0]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "input must be float32");
  int r = in[0]->shape.ndim;
  if (r < 1) return dd_fail(err, DD_ESHAPE, "input is a scalar; %s needs an axis", node->op_type);
  if (p->axis < -r || p->axis >= r)
    return dd_fail(err, DD_ESHAPE, "axis %lld is out of range for %d dims", (long long)p->axis, r);
  if (node->n_out != 1) return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1", node->n_out);
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = in[0]->shape;
  }
  *scratch = 0;
  return DD_OK;
}

/* max and sum(exp(x - max)) of one row (dd_exp_neg: no libm call, see ops/fastexp.h). */
static inline void row_stats(const float *x, int64_t n, int64_t stride, float *mx, double *sum) {
  float m = x[0];
  for (int64_t j = 1; j < n; j++) m = x[j * stride] > m ? x[j * stride] : m;
  double s = 0;
  /* in vector lanes: the exps vectorize only with the sum split (Swin's 49-wide rows) */
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; j++) s += dd_exp_neg(m - x[j * stride]);
  *mx = m;
  *sum = s;
}

/* Softmax: y = exp(x - max) / sum.  LogSoftmax: y = (x - max) - log(sum). */
static void softmax_forward(const dd_node *node, const dd_tensor *const *in,
                            dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const softmax_params *p = node->params;
  int64_t outer, n, inner;
  softmax_layout(p, &in[0]->shape, &outer, &n, &inner);
  if (n == 0) return;
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  const int is_log = p->is_log;
#pragma omp parallel for if (outer * n * inner > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < outer * inner; r++) {
    int64_t base = r / inner * n * inner + r % inner;
    float m;
    double sum;
    row_stats(x + base, n, inner, &m, &sum);
    if (is_log) {
      float ls = (float)log(sum);
      for (int64_t j = 0; j < n; j++) y[base + j * inner] = (x[base + j * inner] - m) - ls;
    } else {
      float inv = (float)(1.0 / sum);
      for (int64_t j = 0; j < n; j++) y[base + j * inner] = dd_exp_neg(m - x[base + j * inner]) * inv;
    }
  }
}

/* With s = softmax(x), recomputed from x, along each row:
 *   Softmax:    dx = s * (dy - sum(dy * s))
 *   LogSoftmax: dx = dy - s * sum(dy) */
static void softmax_backward(const dd_node *node, const dd_tensor *const *in,
                             const dd_tensor *const *out, const dd_tensor *const *dout,
                             dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const softmax_params *p = node->params;
  int64_t outer, n, inner;
  softmax_layout(p, &in[0]->shape, &outer, &n, &inner);
  if (n == 0) return;
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  const int is_log = p->is_log;
#pragma omp parallel for if (outer * n * inner > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < outer * inner; r++) {
    int64_t base = r / inner * n * inner + r % inner;
    float m;
    double sum;
    row_stats(x + base, n, inner, &m, &sum);
    float inv = (float)(1.0 / sum);
    double dot = 0;
    for (int64_t j = 0; j < n; j++) {
      int64_t i = base + j * inner;
      dot += is_log ? (double)dy[i] : (double)dy[i] * (dd_exp_neg(m - x[i]) * inv);
    }
    for (int64_t j = 0; j < n; j++) {
      int64_t i = base + j * inner;
      float s = dd_exp_neg(m - x[i]) * inv;
      dx[i] += is_log ? dy[i] - s * (float)dot : s * (dy[i] - (float)dot);
    }
  }
}

static int64_t softmax_flops(const dd_node *node, const dd_tensor *const *in,
                             const dd_tensor *const *out) {
  return 4 * dd_tensor_numel(in[0]);
}

const dd_op dd_op_Softmax = {"Softmax", softmax_init, softmax_infer, softmax_forward,
                             softmax_backward, softmax_flops, 0};
const dd_op dd_op_LogSoftmax = {"LogSoftmax", logsoftmax_init, softmax_infer, softmax_forward,
                                softmax_backward, softmax_flops, 0};
