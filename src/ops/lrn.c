/* LRN, local response normalization across channels (AlexNet, GoogLeNet):
 *   s[c] = bias + alpha / size * sum of x[c']^2 for c' in [c - lo, c + hi],
 *   y[c] = x[c] * s[c]^-beta,   lo = floor((size - 1) / 2), hi = ceil((size - 1) / 2).
 * Forward and backward side by side.  The input is viewed as N x C x S (S the product of
 * the spatial dims); work is split by (n, c) and, inside, over chunks of S held on the stack
 * so the channel sums vectorize.
 */
#include <math.h>
#include <stdlib.h>

#include "ops/common.h"

/* Spatial elements handled per chunk: small enough for the stack, long enough to vectorize. */
#define LRN_CHUNK 256

typedef struct lrn_params {
  int64_t size;
  float alpha, beta, bias;
} lrn_params;

static int lrn_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"alpha", "beta", "bias", "size", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  lrn_params p;
  if (!dd_node_attr(node, "size")) return dd_fail(err, DD_EFORMAT, "attribute 'size' is required");
  rc = dd_attr_int(node, "size", 1, &p.size, err);
  if (!rc) rc = dd_attr_float(node, "alpha", 1e-4f, &p.alpha, err);
  if (!rc) rc = dd_attr_float(node, "beta", 0.75f, &p.beta, err);
  if (!rc) rc = dd_attr_float(node, "bias", 1.0f, &p.bias, err);
  if (rc) return rc;
  if (p.size < 1 || p.size > (1 << 20))
    return dd_fail(err, DD_EFORMAT, "size is %lld, expected a positive channel count",
                   (long long)p.size);
  if (!isfinite(p.alpha) || !isfinite(p.beta) || !isfinite(p.bias))
    return dd_fail(err, DD_EFORMAT, "alpha, beta and bias must be finite");
  lrn_params *q = malloc(sizeof *q);
  if (!q) return dd_fail(err, DD_ENOMEM, "out of memory");
  *q = p;
  node->params = q;
  return DD_OK;
}

static int lrn_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  if (node->n_in != 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs exactly one input");
  if (in[0]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "input must be float32");
  if (in[0]->shape.ndim < 2)
    return dd_fail(err, DD_ESHAPE, "input has %d dims, expected N, C and spatial dims",
                   in[0]->shape.ndim);
  if (node->n_out != 1) return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1", node->n_out);
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = in[0]->shape;
  }
  /* backward keeps dy * x * s^(-beta-1) for every element */
  *scratch = (size_t)dd_tensor_numel(in[0]) * sizeof(float);
  return DD_OK;
}

/* pw = s^-beta, with GoogLeNet's and AlexNet's beta = 0.75 done by square roots, which
 * vectorize (powf does not). */
static inline void pow_neg_beta(const float *s, float beta, int64_t len, float *pw) {
  if (beta == 0.75f) {
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
      float r = sqrtf(s[i]);
      pw[i] = 1.f / (r * sqrtf(r));
    }
  } else {
    for (int64_t i = 0; i < len; i++) pw[i] = powf(s[i], -beta);
  }
}

/* scale[i] = bias + alpha/size * sum of squares over the channel window of c, for the
 * chunk [s0, s0 + len) of image n. */
static inline void window_scale(const lrn_params *p, const float *x, int64_t c_count,
                                int64_t spatial, int64_t n, int64_t c, int64_t s0, int64_t len,
                                float *scale) {
  int64_t lo = (p->size - 1) / 2, hi = p->size / 2;
  int64_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi >= c_count ? c_count - 1 : c + hi;
  for (int64_t i = 0; i < len; i++) scale[i] = 0.f;
  for (int64_t k = c0; k <= c1; k++) {
    const float *xk = x + (n * c_count + k) * spatial + s0;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) scale[i] += xk[i] * xk[i];
  }
  float a = p->alpha / (float)p->size;
#pragma omp simd
  for (int64_t i = 0; i < len; i++) scale[i] = p->bias + a * scale[i];
}

static void shape_ncs(const dd_shape *s, int64_t *n, int64_t *c, int64_t *sp) {
  *n = s->d[0];
  *c = s->d[1];
  *sp = 1;
  for (int i = 2; i < s->ndim; i++) *sp *= s->d[i];
}

static void lrn_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const lrn_params *p = node->params;
  int64_t nn, cc, sp;
  shape_ncs(&in[0]->shape, &nn, &cc, &sp);
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t chunks = (sp + LRN_CHUNK - 1) / LRN_CHUNK;
#pragma omp parallel for if (nn * cc * sp * p->size > DD_PAR_MIN) schedule(static)
  for (int64_t job = 0; job < nn * cc * chunks; job++) {
    int64_t n = job / (cc * chunks), c = job / chunks % cc, s0 = job % chunks * LRN_CHUNK;
    int64_t len = sp - s0 < LRN_CHUNK ? sp - s0 : LRN_CHUNK;
    float scale[LRN_CHUNK], pw[LRN_CHUNK];
    window_scale(p, x, cc, sp, n, c, s0, len, scale);
    pow_neg_beta(scale, p->beta, len, pw);
    int64_t base = (n * cc + c) * sp + s0;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) y[base + i] = x[base + i] * pw[i];
  }
}

static void lrn_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout,
                         dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const lrn_params *p = node->params;
  int64_t nn, cc, sp;
  shape_ncs(&in[0]->shape, &nn, &cc, &sp);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]), *t = scratch;
  int64_t chunks = (sp + LRN_CHUNK - 1) / LRN_CHUNK;
  int64_t jobs = nn * cc * chunks;
  int par = nn * cc * sp * p->size > DD_PAR_MIN;
  /* The direct term, and t = dy * x * s^(-beta-1) for the cross-channel term. */
#pragma omp parallel for if (par) schedule(static)
  for (int64_t job = 0; job < jobs; job++) {
    int64_t n = job / (cc * chunks), c = job / chunks % cc, s0 = job % chunks * LRN_CHUNK;
    int64_t len = sp - s0 < LRN_CHUNK ? sp - s0 : LRN_CHUNK;
    float scale[LRN_CHUNK], pw[LRN_CHUNK];
    window_scale(p, x, cc, sp, n, c, s0, len, scale);
    pow_neg_beta(scale, p->beta, len, pw);
    int64_t base = (n * cc + c) * sp + s0;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
      dx[base + i] += dy[base + i] * pw[i];
      t[base + i] = dy[base + i] * x[base + i] * pw[i] / scale[i];
    }
  }
  /* x[c] appears in the windows of channels c - hi .. c + lo. */
  float k = -2.f * p->alpha * p->beta / (float)p->size;
  int64_t lo = (p->size - 1) / 2, hi = p->size / 2;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t job = 0; job < jobs; job++) {
    int64_t n = job / (cc * chunks), c = job / chunks % cc, s0 = job % chunks * LRN_CHUNK;
    int64_t len = sp - s0 < LRN_CHUNK ? sp - s0 : LRN_CHUNK;
    int64_t j0 = c - hi < 0 ? 0 : c - hi, j1 = c + lo >= cc ? cc - 1 : c + lo;
    float acc[LRN_CHUNK];
    for (int64_t i = 0; i < len; i++) acc[i] = 0.f;
    for (int64_t j = j0; j <= j1; j++) {
      const float *tj = t + (n * cc + j) * sp + s0;
#pragma omp simd
      for (int64_t i = 0; i < len; i++) acc[i] += tj[i];
    }
    int64_t base = (n * cc + c) * sp + s0;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) dx[base + i] += k * x[base + i] * acc[i];
  }
}

static int64_t lrn_flops(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out) {
  const lrn_params *p = node->params;
  return dd_tensor_numel(in[0]) * (2 * p->size + 4);
}

const dd_op dd_op_LRN = {"LRN", lrn_init, lrn_infer, lrn_forward, lrn_backward, lrn_flops, 0};
