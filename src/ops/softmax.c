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

/* The largest of n >= 1 floats `stride` apart, as the loop m = x[j] > m ? x[j] : m from m =
 * x[0] finds it (NaNs after the first are passed over); 16 lanes for a contiguous row. */
static inline __attribute__((always_inline)) float row_max(const float *x, int64_t n,
                                                           int64_t stride) {
  float m = x[0];
  int64_t j = 1;
  if (stride == 1 && n >= 16) {
    float lane[16];
    for (int l = 0; l < 16; l++) lane[l] = x[0];
    for (j = 0; j + 16 <= n; j += 16)
#pragma omp simd
      for (int l = 0; l < 16; l++) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    for (int l = 0; l < 16; l++) m = lane[l] > m ? lane[l] : m;
  }
  for (; j < n; j++) m = x[j * stride] > m ? x[j * stride] : m;
  return m;
}

/* max and sum(exp(x - max)) of one row (dd_exp_neg: no libm call, see ops/fastexp.h); e,
 * when not NULL, gets each exp(x - max) (`stride` apart too). */
static inline __attribute__((always_inline)) void row_stats(const float *x, int64_t n,
                                                            int64_t stride, float *mx,
                                                            double *sum, float *e) {
  float m = row_max(x, n, stride);
  double s = 0;
  if (stride == 1) {
    /* 16 double partial sums, added in lane order, then the tail: written out rather than
     * left to an omp simd reduction, which GCC 12 leaves scalar when it does not know the
     * CPU (Zen 4: 12 cycles an element in Swin-T's 49-wide rows) */
    double lane[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      float v[16];
#pragma omp simd
      for (int l = 0; l < 16; l++) v[l] = dd_exp_neg(m - x[j + l]);
      if (e)
        for (int l = 0; l < 16; l++) e[j + l] = v[l];
#pragma omp simd
      for (int l = 0; l < 16; l++) lane[l] += v[l];
    }
    for (int l = 0; l < 16; l++) s += lane[l];
    for (; j < n; j++) {
      float v = dd_exp_neg(m - x[j]);
      if (e) e[j] = v;
      s += v;
    }
  } else if (e) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
      float v = dd_exp_neg(m - x[j * stride]);
      e[j * stride] = v;
      s += v;
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += dd_exp_neg(m - x[j * stride]);
  }
  *mx = m;
  *sum = s;
}

/* One row of Softmax, y = exp(x - max) / sum (each exp computed once, kept in y while the
 * sum runs), or of LogSoftmax, y = (x - max) - log(sum).  Inlined twice: with stride 1 (the
 * last axis, where every loop runs in vector lanes) and with the row's stride. */
static inline __attribute__((always_inline)) void forward_row(const float *x, float *y,
                                                              int64_t n, int64_t stride,
                                                              int is_log) {
  float m;
  double sum;
  row_stats(x, n, stride, &m, &sum, is_log ? NULL : y);
  if (is_log) {
    float ls = (float)log(sum);
    for (int64_t j = 0; j < n; j++) y[j * stride] = (x[j * stride] - m) - ls;
  } else {
    float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j * stride] *= inv;
  }
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
    if (inner == 1)
      forward_row(x + base, y + base, n, 1, is_log);
    else
      forward_row(x + base, y + base, n, inner, is_log);
  }
}

/* One row of the backward, with s = softmax(x) recomputed from x:
 *   Softmax:    dx = s * (dy - sum(dy * s))
 *   LogSoftmax: dx = dy - s * sum(dy)
 * inlined with stride 1 and with the row's stride, as forward_row is. */
static inline __attribute__((always_inline)) void backward_row(const float *x, const float *dy,
                                                               float *dx, int64_t n,
                                                               int64_t stride, int is_log) {
  float m;
  double sum;
  row_stats(x, n, stride, &m, &sum, NULL);
  float inv = (float)(1.0 / sum);
  double dot = 0;
  for (int64_t j = 0; j < n; j++) {
    int64_t i = j * stride;
    dot += is_log ? (double)dy[i] : (double)dy[i] * (dd_exp_neg(m - x[i]) * inv);
  }
  for (int64_t j = 0; j < n; j++) {
    int64_t i = j * stride;
    float s = dd_exp_neg(m - x[i]) * inv;
    dx[i] += is_log ? dy[i] - s * (float)dot : s * (dy[i] - (float)dot);
  }
}

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
    if (inner == 1)
      backward_row(x + base, dy + base, dx + base, n, 1, is_log);
    else
      backward_row(x + base, dy + base, dx + base, n, inner, is_log);
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
