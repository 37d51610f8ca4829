/* Normalizations: BatchNormalization (inference mode) and LayerNormalization.
 *
 * BatchNormalization in inference mode: y = (x - mean) / sqrt(var + eps) * scale + bias per
 * channel (dim 1), i.e. y = x * a[c] + b[c].  Training mode (batch statistics) is refused.
 * The per-channel a and b are recomputed on each call: C divisions and square roots are
 * nothing next to the N*C*H*W multiply-adds, and infer may not write the node's params. */
#include <math.h>
#include <stdlib.h>

#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/transpose16.h" /* dd_widen16 */

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

typedef struct bn_params {
  float eps;
} bn_params;

static int bn_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"epsilon", "momentum", "spatial", "training_mode",
                                      "is_test", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  int64_t training = 0, spatial = 1;
  float eps;
  rc = dd_attr_int(node, "training_mode", 0, &training, err);
  if (!rc) rc = dd_attr_int(node, "spatial", 1, &spatial, err);
  if (!rc) rc = dd_attr_float(node, "epsilon", 1e-5f, &eps, err);
  if (rc) return rc;
  if (training)
    return dd_fail(err, DD_EUNSUPPORTED, "BatchNormalization with training_mode=1 (batch "
                   "statistics) is not supported; only inference mode is");
  if (spatial != 1)
    return dd_fail(err, DD_EUNSUPPORTED, "BatchNormalization with spatial=0 (per-activation "
                   "statistics, opset < 9) is not supported");
  if (!(eps >= 0.f)) return dd_fail(err, DD_EFORMAT, "epsilon must be >= 0, got %g", eps);
  if (node->n_in != 5)
    return dd_fail(err, DD_EFORMAT, "BatchNormalization needs 5 inputs (X, scale, B, mean, "
                   "var), got %d", node->n_in);
  bn_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->eps = eps;
  node->params = p;
  return DD_OK;
}

static int bn_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                    size_t *scratch, dd_err *err) {
  static const char *const names[] = {"X", "scale", "B", "mean", "var"};
  char sb[128];
  for (int i = 0; i < 5; i++) {
    if (!in[i]) return dd_fail(err, DD_EFORMAT, "input %s is missing", names[i]);
    if (in[i]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "%s must be float32", names[i]);
  }
  const dd_shape *xs = &in[0]->shape;
  if (xs->ndim < 2)
    return dd_fail(err, DD_ESHAPE, "X must have at least 2 dims (N x C x ...), got %s",
                   dd_shape_str(xs, sb, sizeof sb));
  int64_t c = xs->d[1];
  for (int i = 1; i < 5; i++)
    if (in[i]->shape.ndim != 1 || in[i]->shape.d[0] != c)
      return dd_fail(err, DD_ESHAPE, "%s has shape %s, expected [%lld] (the channels of X)",
                     names[i], dd_shape_str(&in[i]->shape, sb, sizeof sb), (long long)c);
  for (int k = 1; k < node->n_out; k++)
    if (out[k])
      return dd_fail(err, DD_EUNSUPPORTED, "output %d (running or saved statistics) exists "
                     "only in training mode, which is not supported", k);
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = *xs;
  }
  *scratch = 0;
  return DD_OK;
}

/* The factor a[c] = scale / sqrt(var + eps) and the shift b[c] = bias - mean * a[c]. */
static inline void bn_coef(const dd_node *node, const dd_tensor *const *in, int64_t c,
                           float *a, float *b) {
  const bn_params *p = node->params;
  float s = dd_f32(in[1])[c], bias = dd_f32(in[2])[c];
  float mean = dd_f32(in[3])[c], var = dd_f32(in[4])[c];
  *a = s / sqrtf(var + p->eps);
  *b = bias - mean * *a;
}

/* Planes of H*W (or whatever the trailing dims hold) per (n, c). */
static void bn_dims(const dd_tensor *x, int64_t *n, int64_t *c, int64_t *hw) {
  *n = x->shape.d[0];
  *c = x->shape.d[1];
  *hw = 1;
  for (int i = 2; i < x->shape.ndim; i++) *hw *= x->shape.d[i];
}

static void bn_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       void *scratch) {
  if (!out[0]) return;
  int64_t n, c, hw;
  bn_dims(in[0], &n, &c, &hw);
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t planes = n * c;
#pragma omp parallel for if (planes * hw > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < planes; pl++) {
    float a, b;
    bn_coef(node, in, pl % c, &a, &b);
    const float *xp = x + pl * hw;
    float *yp = y + pl * hw;
    for (int64_t i = 0; i < hw; i++) yp[i] = xp[i] * a + b;
  }
}

/* dX += dY * a.  The gradients of the statistics are given too when asked for (a plan only
 * asks when they depend on the input), each reduced per channel. */
static void bn_backward(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out, const dd_tensor *const *dout,
                        dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  int64_t n, c, hw;
  bn_dims(in[0], &n, &c, &hw);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  int64_t planes = n * c;
  if (din[0]) {
    float *dx = dd_f32(din[0]);
#pragma omp parallel for if (planes * hw > DD_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
      float a, b;
      bn_coef(node, in, pl % c, &a, &b);
      const float *g = dy + pl * hw;
      float *d = dx + pl * hw;
      for (int64_t i = 0; i < hw; i++) d[i] += g[i] * a;
    }
  }
  if (!din[1] && !din[2] && !din[3] && !din[4]) return;
  const bn_params *p = node->params;
#pragma omp parallel for if (planes * hw > DD_PAR_MIN) schedule(static)
  for (int64_t ch = 0; ch < c; ch++) {
    double sg = 0, sgx = 0; /* sum dy, sum dy * x over the channel */
    for (int64_t b = 0; b < n; b++) {
      const float *g = dy + (b * c + ch) * hw, *xp = x + (b * c + ch) * hw;
      for (int64_t i = 0; i < hw; i++) {
        sg += g[i];
        sgx += (double)g[i] * xp[i];
      }
    }
    double s = dd_f32(in[1])[ch], mean = dd_f32(in[3])[ch], var = dd_f32(in[4])[ch];
    double inv = 1.0 / sqrt(var + p->eps);
    double sxhat = (sgx - mean * sg) * inv; /* sum dy * (x - mean) / sqrt(var + eps) */
    if (din[1]) dd_f32(din[1])[ch] += (float)sxhat;
    if (din[2]) dd_f32(din[2])[ch] += (float)sg;
    if (din[3]) dd_f32(din[3])[ch] += (float)(-sg * s * inv);
    if (din[4]) dd_f32(din[4])[ch] += (float)(-0.5 * s * sxhat / (var + p->eps));
  }
}

static int64_t bn_flops(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out) {
  return 2 * dd_tensor_numel(in[0]);
}

const dd_op dd_op_BatchNormalization = {"BatchNormalization", bn_init, bn_infer, bn_forward,
                                        bn_backward, bn_flops, 0};

/* ---- LayerNormalization (opset 17) ----
 * Each "row" -- the dims from `axis` on, D elements contiguous in memory -- is normalized by
 * its own mean and variance: y = (x - mean) * invstd * scale + bias, invstd =
 * 1 / sqrt(var + eps), var the biased variance (divided by D).  Scale and B broadcast to the
 * normalized dims X[axis:] (numpy rules, aligned right); they are expanded to D values in the
 * workspace, so the kernels index them directly.  The optional outputs Mean and InvStdDev have
 * X's shape with the normalized dims set to 1.  Statistics are accumulated in double
 * (stash_type 1, float32 storage; other stash types are refused). */

typedef struct ln_params {
  int64_t axis;
  float eps;
} ln_params;

static int ln_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"axis", "epsilon", "stash_type", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  int64_t axis, stash;
  float eps;
  rc = dd_attr_int(node, "axis", -1, &axis, err);
  if (!rc) rc = dd_attr_int(node, "stash_type", 1, &stash, err);
  if (!rc) rc = dd_attr_float(node, "epsilon", 1e-5f, &eps, err);
  if (rc) return rc;
  if (stash != 1)
    return dd_fail(err, DD_EUNSUPPORTED, "LayerNormalization with stash_type=%lld is not "
                   "supported; only stash_type=1 (float32 statistics) is", (long long)stash);
  if (!(eps >= 0.f)) return dd_fail(err, DD_EFORMAT, "epsilon must be >= 0, got %g", eps);
  if (node->n_in < 2 || node->n_in > 3)
    return dd_fail(err, DD_EFORMAT, "LayerNormalization takes 2 or 3 inputs (X, Scale, B), "
                   "got %d", node->n_in);
  if (node->n_out < 1 || node->n_out > 3)
    return dd_fail(err, DD_EFORMAT, "LayerNormalization has 1 to 3 outputs (Y, Mean, "
                   "InvStdDev), got %d", node->n_out);
  ln_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->axis = axis;
  p->eps = eps;
  node->params = p;
  return DD_OK;
}

/* Rows and row length of X for the node's axis (already checked by infer). */
static void ln_dims(const dd_node *node, const dd_shape *xs, int *axis, int64_t *rows,
                    int64_t *d) {
  const ln_params *p = node->params;
  int a = (int)(p->axis < 0 ? p->axis + xs->ndim : p->axis);
  *axis = a;
  *rows = *d = 1;
  for (int i = 0; i < xs->ndim; i++) {
    if (i < a) *rows *= xs->d[i];
    else *d *= xs->d[i];
  }
}

/* `t` (Scale or B) broadcasts to the normalized dims xs[axis:]. */
static int ln_param_ok(const dd_tensor *t, const char *what, const dd_shape *xs, int axis,
                       dd_err *err) {
  char s1[128], s2[128];
  if (t->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "%s must be float32", what);
  int nk = xs->ndim - axis;
  int ok = t->shape.ndim <= nk;
  for (int i = 0; ok && i < t->shape.ndim; i++) {
    int64_t sd = t->shape.d[t->shape.ndim - 1 - i], xd = xs->d[xs->ndim - 1 - i];
    ok = sd == xd || sd == 1;
  }
  if (!ok) {
    dd_shape norm = {.ndim = nk};
    for (int i = 0; i < nk; i++) norm.d[i] = xs->d[axis + i];
    return dd_fail(err, DD_ESHAPE, "%s has shape %s, which does not broadcast to the "
                   "normalized dims %s", what, dd_shape_str(&t->shape, s1, sizeof s1),
                   dd_shape_str(&norm, s2, sizeof s2));
  }
  return DD_OK;
}

static int ln_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                    size_t *scratch, dd_err *err) {
  const ln_params *p = node->params;
  if (!in[0]) return dd_fail(err, DD_EFORMAT, "input X is missing");
  if (!in[1]) return dd_fail(err, DD_EFORMAT, "input Scale is missing");
  if (in[0]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "X must be float32");
  const dd_shape *xs = &in[0]->shape;
  int r = xs->ndim;
  if (r < 1) return dd_fail(err, DD_ESHAPE, "X is a scalar; LayerNormalization needs an axis");
  if (p->axis < -r || p->axis >= r)
    return dd_fail(err, DD_ESHAPE, "axis %lld is out of range for %d dims", (long long)p->axis, r);
  int axis;
  int64_t rows, d;
  ln_dims(node, xs, &axis, &rows, &d);
  int rc = ln_param_ok(in[1], "Scale", xs, axis, err);
  if (!rc && node->n_in > 2 && in[2]) rc = ln_param_ok(in[2], "B", xs, axis, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = *xs;
  }
  for (int k = 1; k < node->n_out; k++) {
    if (!out[k]) continue;
    out[k]->dtype = DD_F32;
    out[k]->shape = *xs;
    for (int i = axis; i < r; i++) out[k]->shape.d[i] = 1;
  }
  /* forward: scale and bias expanded (2 D); backward: scale expanded and the per-element
   * sums for dScale and dB (3 D) and each row's mean and invstd (2 rows) */
  *scratch = (size_t)(3 * d + 2 * rows) * sizeof(float);
  return DD_OK;
}

/* Index into `t` (broadcast to the normalized dims nd[0..nk-1], aligned right) of every one of
 * the D positions, in order: calls BODY with j the position and k the index in t. */
#define LN_FOR_EXPANDED(t, nd, nk, BODY)                                             \
  do {                                                                               \
    int64_t st_[DD_MAX_DIMS], idx_[DD_MAX_DIMS] = {0}, acc_ = 1, k = 0, dtot_ = 1;   \
    int off_ = (nk) - (t)->shape.ndim;                                               \
    for (int i_ = (nk) - 1; i_ >= 0; i_--) {                                         \
      int ti_ = i_ - off_;                                                           \
      st_[i_] = ti_ >= 0 && (t)->shape.d[ti_] != 1 ? acc_ : 0;                       \
      if (ti_ >= 0) acc_ *= (t)->shape.d[ti_];                                       \
      dtot_ *= (nd)[i_];                                                             \
    }                                                                                \
    for (int64_t j = 0; j < dtot_; j++) {                                            \
      BODY;                                                                          \
      for (int i_ = (nk) - 1; i_ >= 0; i_--) {                                       \
        k += st_[i_];                                                                \
        if (++idx_[i_] < (nd)[i_]) break;                                            \
        k -= st_[i_] * (nd)[i_];                                                     \
        idx_[i_] = 0;                                                                \
      }                                                                              \
    }                                                                                \
  } while (0)

/* full[j] = t broadcast to the normalized dims (t NULL: `fill`). */
static void ln_expand(const dd_tensor *t, const dd_shape *xs, int axis, float fill, float *full) {
  int nk = xs->ndim - axis;
  const int64_t *nd = xs->d + axis;
  if (!t) {
    int64_t d = 1;
    for (int i = 0; i < nk; i++) d *= nd[i];
    for (int64_t j = 0; j < d; j++) full[j] = fill;
    return;
  }
  const float *v = dd_f32(t);
  LN_FOR_EXPANDED(t, nd, nk, full[j] = v[k]);
}

/* t += the sums of full over the positions that broadcast from each of t's elements. */
static void ln_reduce_into(const float *full, const dd_shape *xs, int axis, dd_tensor *t) {
  int nk = xs->ndim - axis;
  const int64_t *nd = xs->d + axis;
  float *v = dd_f32(t);
  LN_FOR_EXPANDED(t, nd, nk, v[k] += full[j]);
}

/* Mean and invstd of one row, in double: two passes, so a large mean does not cancel. */
#ifdef DD_AVX512_KERNELS
/* The floats x[j .. j + 16) (the first `w` of them, the rest 0) as two vectors of 8 doubles. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void ln_load16(const float *x,
                                                                            int64_t w,
                                                                            __m512d *lo,
                                                                            __m512d *hi) {
  dd_widen16(_mm512_maskz_loadu_ps((__mmask16)(w >= 16 ? 0xffff : (1u << w) - 1), x), lo, hi);
}

/* The 32 floats x[0 .. 32) as four vectors of 8 doubles. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void ln_widen32(const float *x,
                                                                             __m512d v[4]) {
  dd_widen16(_mm512_loadu_ps(x), &v[0], &v[1]);
  dd_widen16(_mm512_loadu_ps(x + 16), &v[2], &v[3]);
}

/* ln_stats in double lanes: four vectors of 8 while 32 floats remain, then two, each lane's
 * sum in row order, the lanes added at the end: GCC 12 left the omp simd double reductions
 * scalar on Zen 4, as it did Softmax's (ops/softmax.c). */
DD_TARGET_AVX512 static void ln_stats_avx512(const float *x, int64_t d, float eps, double *mean,
                                             double *invstd) {
  /* two vectors of 16 floats a step: four chains of adds, not two latency-bound ones */
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  __m512d s2 = _mm512_setzero_pd(), s3 = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + 32 <= d; j += 32) {
    __m512d v[4];
    ln_widen32(x + j, v);
    s0 = _mm512_add_pd(s0, v[0]);
    s1 = _mm512_add_pd(s1, v[1]);
    s2 = _mm512_add_pd(s2, v[2]);
    s3 = _mm512_add_pd(s3, v[3]);
  }
  for (; j < d; j += 16) {
    __m512d lo, hi;
    ln_load16(x + j, d - j, &lo, &hi);
    s0 = _mm512_add_pd(s0, lo);
    s1 = _mm512_add_pd(s1, hi);
  }
  double m =
      _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3))) /
      (double)d;
  const __m512d mv = _mm512_set1_pd(m);
  __m512d v0 = _mm512_setzero_pd(), v1 = _mm512_setzero_pd();
  __m512d v2 = _mm512_setzero_pd(), v3 = _mm512_setzero_pd();
  for (j = 0; j + 32 <= d; j += 32) {
    __m512d v[4];
    ln_widen32(x + j, v);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) v[k] = _mm512_sub_pd(v[k], mv);
    v0 = _mm512_fmadd_pd(v[0], v[0], v0);
    v1 = _mm512_fmadd_pd(v[1], v[1], v1);
    v2 = _mm512_fmadd_pd(v[2], v[2], v2);
    v3 = _mm512_fmadd_pd(v[3], v[3], v3);
  }
  for (; j < d; j += 16) {
    __m512d lo, hi;
    ln_load16(x + j, d - j, &lo, &hi);
    int64_t w = d - j;
    /* lanes past d stay out: (0 - m)^2 is not 0 */
    __mmask8 ml = (__mmask8)(w >= 8 ? 0xff : (1u << w) - 1);
    __mmask8 mh = (__mmask8)(w >= 16 ? 0xff : w > 8 ? (1u << (w - 8)) - 1 : 0);
    lo = _mm512_maskz_sub_pd(ml, lo, mv);
    hi = _mm512_maskz_sub_pd(mh, hi, mv);
    v0 = _mm512_fmadd_pd(lo, lo, v0);
    v1 = _mm512_fmadd_pd(hi, hi, v1);
  }
  double v = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(v0, v1), _mm512_add_pd(v2, v3)));
  *mean = m;
  *invstd = 1.0 / sqrt(v / (double)d + eps);
}

/* y = (x - m) * is * scale + bias over one row, in 16 lanes: the floats of ln_forward's scalar
 * loop (the same operations in the same order, no contraction into an FMA). */
DD_TARGET_AVX512 static void ln_write_avx512(const float *x, int64_t d, float m, float is,
                                             const float *scale, const float *bias, float *y) {
  const __m512 mv = _mm512_set1_ps(m), iv = _mm512_set1_ps(is);
  for (int64_t j = 0; j < d; j += 16) {
    __mmask16 mk = (__mmask16)(d - j >= 16 ? 0xffff : (1u << (d - j)) - 1);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), mv), iv);
    v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, scale + j)),
                      _mm512_maskz_loadu_ps(mk, bias + j));
    _mm512_mask_storeu_ps(y + j, mk, v);
  }
}

/* ln_backward's sums over a row, sum g and sum g * xh with g = dy * scale (in double) and xh
 * = (x - m) * is (in float), in 16 double lanes as ln_stats_avx512. */
DD_TARGET_AVX512 static void ln_sums_avx512(const float *x, const float *dy, const float *scale,
                                            int64_t d, float m, float is, double *sg,
                                            double *sgx) {
  __m512d g0 = _mm512_setzero_pd(), g1 = _mm512_setzero_pd();
  __m512d x0 = _mm512_setzero_pd(), x1 = _mm512_setzero_pd();
  const __m512 mv = _mm512_set1_ps(m), iv = _mm512_set1_ps(is);
  for (int64_t j = 0; j < d; j += 16) {
    __mmask16 mk = (__mmask16)(d - j >= 16 ? 0xffff : (1u << (d - j)) - 1);
    __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), mv), iv);
    __m512d dl, dh, sl, sh, xl, xhh;
    ln_load16(dy + j, d - j, &dl, &dh); /* zero past d: those lanes add nothing */
    ln_load16(scale + j, d - j, &sl, &sh);
    dd_widen16(xh, &xl, &xhh);
    __m512d gl = _mm512_mul_pd(dl, sl), gh = _mm512_mul_pd(dh, sh);
    g0 = _mm512_add_pd(g0, gl);
    g1 = _mm512_add_pd(g1, gh);
    x0 = _mm512_fmadd_pd(gl, xl, x0);
    x1 = _mm512_fmadd_pd(gh, xhh, x1);
  }
  *sg = _mm512_reduce_add_pd(_mm512_add_pd(g0, g1));
  *sgx = _mm512_reduce_add_pd(_mm512_add_pd(x0, x1));
}
#endif

static inline void ln_stats(const float *x, int64_t d, float eps, double *mean, double *invstd) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512()) {
    ln_stats_avx512(x, d, eps, mean, invstd);
    return;
  }
#endif
  double s = 0, v = 0;
  /* in vector lanes (an order fixed at compile time, the same for every row and thread
   * count), which the strict sequential sum would not allow */
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < d; j++) s += x[j];
  double m = s / (double)d;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < d; j++) v += (x[j] - m) * (x[j] - m);
  *mean = m;
  *invstd = 1.0 / sqrt(v / (double)d + eps);
}

static void ln_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       void *scratch) {
  const ln_params *p = node->params;
  const dd_shape *xs = &in[0]->shape;
  int axis;
  int64_t rows, d;
  ln_dims(node, xs, &axis, &rows, &d);
  if (d == 0) return; /* no element in any row: Y is empty, and so would the stats be */
  float *scale = scratch, *bias = scale + d;
  ln_expand(in[1], xs, axis, 1.f, scale);
  ln_expand(node->n_in > 2 ? in[2] : NULL, xs, axis, 0.f, bias);
  const float *x = dd_f32(in[0]);
  float *y = out[0] ? dd_f32(out[0]) : NULL;
  float *mo = node->n_out > 1 && out[1] ? dd_f32(out[1]) : NULL;
  float *io = node->n_out > 2 && out[2] ? dd_f32(out[2]) : NULL;
#pragma omp parallel for if (rows * d > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    double mean, invstd;
    ln_stats(xr, d, p->eps, &mean, &invstd);
    if (mo) mo[r] = (float)mean;
    if (io) io[r] = (float)invstd;
    if (!y) continue;
    float *yr = y + r * d;
    const float m = (float)mean, is = (float)invstd;
#ifdef DD_AVX512_KERNELS
    if (dd_kernels_avx512()) {
      ln_write_avx512(xr, d, m, is, scale, bias, yr);
      continue;
    }
#endif
    for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * is * scale[j] + bias[j];
  }
}

/* With xh = (x - mean) * invstd and g = dY * scale, per row:
 *   dX += invstd * (g - mean(g) - xh * mean(g * xh))
 *       + dMean / D - dInvStdDev * invstd^2 * xh / D
 *   dScale += sum over rows of dY * xh,  dB += sum over rows of dY. */
static void ln_backward(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out, const dd_tensor *const *dout,
                        dd_tensor *const *din, void *scratch) {
  const ln_params *p = node->params;
  const dd_shape *xs = &in[0]->shape;
  int axis;
  int64_t rows, d;
  ln_dims(node, xs, &axis, &rows, &d);
  if (d == 0) return;
  const dd_tensor *dy_t = dout[0];
  const dd_tensor *dm_t = node->n_out > 1 ? dout[1] : NULL;
  const dd_tensor *di_t = node->n_out > 2 ? dout[2] : NULL;
  dd_tensor *ds_t = din[1], *db_t = node->n_in > 2 ? din[2] : NULL;
  if (!dy_t && !dm_t && !di_t) return;
  float *scale = scratch, *sd = scale + d, *bd = sd + d, *rm = bd + d, *ri = rm + rows;
  ln_expand(in[1], xs, axis, 1.f, scale);
  const float *x = dd_f32(in[0]);
  const float *dy = dy_t ? dd_f32(dy_t) : NULL;
  const float *dmean = dm_t ? dd_f32(dm_t) : NULL, *dinv = di_t ? dd_f32(di_t) : NULL;
  float *dx = din[0] ? dd_f32(din[0]) : NULL;
  const double invd = 1.0 / (double)d;
#pragma omp parallel for if (rows * d > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    double mean, invstd;
    ln_stats(xr, d, p->eps, &mean, &invstd);
    rm[r] = (float)mean;
    ri[r] = (float)invstd;
    if (!dx) continue;
    const float m = (float)mean, is = (float)invstd;
    double sg = 0, sgx = 0; /* sum g, sum g * xh */
#ifdef DD_AVX512_KERNELS
    if (dy && dd_kernels_avx512()) {
      ln_sums_avx512(xr, dy + r * d, scale, d, m, is, &sg, &sgx);
    } else
#endif
    if (dy) {
      const float *g = dy + r * d;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t j = 0; j < d; j++) {
        double gj = (double)g[j] * scale[j];
        sg += gj;
        sgx += gj * ((xr[j] - m) * is);
      }
    }
    const float a = (float)(sg * invd), b = (float)(sgx * invd);
    const float cm = dmean ? (float)(dmean[r] * invd) : 0.f;
    const float ci = dinv ? (float)(-dinv[r] * invstd * invstd * invd) : 0.f;
    float *dxr = dx + r * d;
    const float *dyr = dy ? dy + r * d : NULL;
    /* element by element (dx may be dy itself): in vector lanes, the same floats */
    if (dyr) {
#pragma omp simd
      for (int64_t j = 0; j < d; j++) {
        float xh = (xr[j] - m) * is;
        dxr[j] += is * (dyr[j] * scale[j] - a - xh * b) + cm + ci * xh;
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; j++) {
        float xh = (xr[j] - m) * is;
        dxr[j] += is * (0.f - a - xh * b) + cm + ci * xh;
      }
    }
  }
  if (!dy || (!ds_t && !db_t)) return;
#pragma omp parallel for if (rows * d > DD_PAR_MIN) schedule(static)
  for (int64_t j = 0; j < d; j++) {
    double s = 0, b = 0;
    for (int64_t r = 0; r < rows; r++) {
      float g = dy[r * d + j];
      s += (double)g * ((x[r * d + j] - rm[r]) * ri[r]);
      b += g;
    }
    sd[j] = (float)s;
    bd[j] = (float)b;
  }
  if (ds_t) ln_reduce_into(sd, xs, axis, ds_t);
  if (db_t) ln_reduce_into(bd, xs, axis, db_t);
}

static int64_t ln_flops(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out) {
  return 8 * dd_tensor_numel(in[0]);
}

const dd_op dd_op_LayerNormalization = {"LayerNormalization", ln_init, ln_infer, ln_forward,
                                        ln_backward, ln_flops, DD_OP_BWD_NO_OUT};
