/* LRN, local response normalization across channels (AlexNet, GoogLeNet):
 *   s[c] = bias + alpha / size * sum of x[c']^2 for c' in [c - lo, c + hi],
 *   y[c] = x[c] * s[c]^-beta,   lo = floor((size - 1) / 2), hi = ceil((size - 1) / 2).
 * Forward and backward side by side.  The input is viewed as N x C x S (S the product of
 * the spatial dims); a job is one chunk of S of one image, walked through all channels so
 * that the window's rows are reused from L1 and backward needs no full-size buffer.
 */
#include <math.h>
#include <stdlib.h>
#include "ops/common.h"
#include "ops/cpu.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

/* Spatial elements handled per chunk: small enough for the stack and for L1 with the window's
 * rows, long enough to vectorize. */
#define LRN_CHUNK 256
/* Windows up to this many channels keep backward's ring of rows on the stack. */
#define LRN_RING 16
/* Elements summed in registers at a time. */
#define LRN_VEC 16
/* How many channels ahead the rows are prefetched. */
#define LRN_AHEAD 2

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
  /* backward's rows of dy * x * s^(-beta-1) fit on the stack for small windows; wider ones
   * keep one for every element */
  const lrn_params *p = node->params;
  *scratch = p->size <= LRN_RING ? 0 : (size_t)dd_tensor_numel(in[0]) * sizeof(float);
  return DD_OK;
}

/* scale[i] = bias + alpha/size * sum of squares over the channel window of c, for the
 * chunk [s0, s0 + len) of image n. */
static inline void window_scale(const lrn_params *p, const float *x0, int64_t rows,
                                int64_t spatial, int64_t len, float *scale) {
  float a = p->alpha / (float)p->size, bias = p->bias;
  if (rows <= LRN_RING) { /* sums in registers, in the same order as below */
    int64_t i = 0;
    for (; i + LRN_VEC <= len; i += LRN_VEC) {
      float sum[LRN_VEC] = {0};
      for (int64_t k = 0; k < rows; k++) {
        const float *xk = x0 + k * spatial + i;
        for (int v = 0; v < LRN_VEC; v++) sum[v] += xk[v] * xk[v];
      }
      for (int v = 0; v < LRN_VEC; v++) scale[i + v] = bias + a * sum[v];
    }
    for (; i < len; i++) {
      float sum = 0.f;
      for (int64_t k = 0; k < rows; k++) sum += x0[k * spatial + i] * x0[k * spatial + i];
      scale[i] = bias + a * sum;
    }
    return;
  }
  for (int64_t i = 0; i < len; i++) scale[i] = 0.f;
  for (int64_t k = 0; k < rows; k++) {
    const float *xk = x0 + k * spatial;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) scale[i] += xk[i] * xk[i];
  }
#pragma omp simd
  for (int64_t i = 0; i < len; i++) scale[i] = bias + a * scale[i];
}

#ifdef DD_AVX512_KERNELS
/* s^-0.75, and s^-1.75 in *pws, for 16 lanes of s.  Estimates refined by one Newton step
 * whose residual is formed with FMAs: r = s^-1/2, q = sqrt(r) = s^-1/4, pw = r q, and 1/s
 * from rcp14 for pws = pw / s.  Measured against double precision over s in [1, 1e5]: pw
 * within 2.7 ulp and pws within 4.0 ulp, the square-root-and-divide path 3.8 and 4.1. */
static inline DD_TARGET_AVX512 __m512 pow_075_16(__m512 s, __m512 *pws) {
  const __m512 one = _mm512_set1_ps(1.f), half = _mm512_set1_ps(0.5f);
  const __m512 c38 = _mm512_set1_ps(0.375f);
  __m512 r0 = _mm512_rsqrt14_ps(s);
  /* r0 (1 - e)^-1/2 with e = 1 - s r0^2, to second order */
  __m512 e = _mm512_fnmadd_ps(s, _mm512_mul_ps(r0, r0), one);
  __m512 r = _mm512_fmadd_ps(r0, _mm512_mul_ps(e, _mm512_fmadd_ps(c38, e, half)), r0);
  __m512 u0 = _mm512_rsqrt14_ps(r);
  __m512 q0 = _mm512_mul_ps(r, u0);
  __m512 q = _mm512_fmadd_ps(_mm512_mul_ps(half, u0), _mm512_fnmadd_ps(q0, q0, r), q0);
  /* squares beyond float range: s = inf, whose residual is inf * 0; the powers are 0 */
  __mmask16 inf = _mm512_cmp_ps_mask(s, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ);
  __m512 pw = _mm512_mask_mov_ps(_mm512_mul_ps(r, q), inf, _mm512_setzero_ps());
  if (pws) {
    __m512 i0 = _mm512_rcp14_ps(s);
    __m512 ei = _mm512_fnmadd_ps(s, i0, one);
    __m512 inv = _mm512_fmadd_ps(i0, _mm512_fmadd_ps(ei, ei, ei), i0);
    *pws = _mm512_mask_mov_ps(_mm512_mul_ps(pw, inv), inf, _mm512_setzero_ps());
  }
  return pw;
}
#endif

/* For channel c of the chunk [s0, s0 + len) of image n: pw = s^-beta and, when pws is not
 * NULL, pws = s^(-beta-1), s the window's scale.  The path without AVX-512, or for other
 * betas or windows wider than LRN_RING; beta = 0.75 by square roots, which vectorize (powf
 * does not). */
static inline void row_factors(const lrn_params *p, const float *x, int64_t c_count,
                               int64_t spatial, int64_t n, int64_t c, int64_t s0, int64_t len,
                               float *pw, float *pws) {
  int64_t lo = (p->size - 1) / 2, hi = p->size / 2;
  int64_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi >= c_count ? c_count - 1 : c + hi;
  const float *x0 = x + (n * c_count + c0) * spatial + s0;
  int64_t rows = c1 - c0 + 1;
  float s[LRN_CHUNK];
  window_scale(p, x0, rows, spatial, len, s);
  if (p->beta == 0.75f) {
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
      float r = sqrtf(s[i]);
      pw[i] = 1.f / (r * sqrtf(r));
    }
  } else {
    for (int64_t i = 0; i < len; i++) pw[i] = powf(s[i], -p->beta);
  }
  if (pws) {
#pragma omp simd
    for (int64_t i = 0; i < len; i++) pws[i] = pw[i] / s[i];
  }
}

/* Starts loading the chunk's row of a channel that a later step will read: rows are a whole
 * channel apart, a new page each, where the hardware prefetcher would stall on every row. */
static inline void prefetch_row(const float *row, int64_t len, int write) {
  for (int64_t i = 0; i < len; i += 16) {
    if (write)
      __builtin_prefetch(row + i, 1);
    else
      __builtin_prefetch(row + i, 0);
  }
}

static void shape_ncs(const dd_shape *s, int64_t *n, int64_t *c, int64_t *sp) {
  *n = s->d[0];
  *c = s->d[1];
  *sp = 1;
  for (int i = 2; i < s->ndim; i++) *sp *= s->d[i];
}

/* Chunk length for a spatial size: LRN_CHUNK, or shorter when the image is too small to give
 * every thread a few chunks (a job walks all channels of one chunk). */
static int64_t chunk_len(int64_t nn, int64_t sp) {
  int64_t len = LRN_CHUNK;
  while (len > 32 && nn * ((sp + len - 1) / len) < 8) len /= 2;
  return len;
}

#ifdef DD_AVX512_KERNELS
/* Forward of one channel for beta = 0.75 and windows of up to LRN_RING rows, everything in
 * registers: yc = xc s^-0.75, s from the window x0 (rows rows `spatial` apart). */
DD_TARGET_AVX512 static void forward_row_075(const lrn_params *p, int64_t len, const float *x0,
                                             int64_t rows, int64_t spatial, const float *xc,
                                             float *yc) {
  __m512 a = _mm512_set1_ps(p->alpha / (float)p->size), bias = _mm512_set1_ps(p->bias);
  for (int64_t i = 0; i < len; i += 16) {
    __mmask16 m = len - i >= 16 ? 0xffff : (__mmask16)((1u << (len - i)) - 1);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t k = 0; k < rows; k++) {
      __m512 v = _mm512_maskz_loadu_ps(m, x0 + k * spatial + i);
      sum = _mm512_fmadd_ps(v, v, sum);
    }
    __m512 pw = pow_075_16(_mm512_fmadd_ps(a, sum, bias), NULL);
    _mm512_mask_storeu_ps(yc + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xc + i), pw));
  }
}
#endif

static void lrn_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const lrn_params *p = node->params;
  int64_t nn, cc, sp;
  shape_ncs(&in[0]->shape, &nn, &cc, &sp);
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t chunk = chunk_len(nn, sp), chunks = (sp + chunk - 1) / chunk;
  int64_t hi = p->size / 2;
#ifdef DD_AVX512_KERNELS
  int64_t lo = (p->size - 1) / 2;
  int fused = p->size <= LRN_RING && p->beta == 0.75f && dd_kernels_avx512();
#endif
  /* A job is one chunk of one image through all its channels: the window's rows of x were
   * read by the previous channels and are still in L1. */
#pragma omp parallel for if (nn * cc * sp * p->size > DD_PAR_MIN) schedule(static)
  for (int64_t job = 0; job < nn * chunks; job++) {
    int64_t n = job / chunks, s0 = job % chunks * chunk;
    int64_t len = sp - s0 < chunk ? sp - s0 : chunk;
    float pw[LRN_CHUNK];
    for (int64_t c = 0; c < cc; c++) {
      if (c + hi + LRN_AHEAD < cc)
        prefetch_row(x + (n * cc + c + hi + LRN_AHEAD) * sp + s0, len, 0);
      int64_t base = (n * cc + c) * sp + s0;
#ifdef DD_AVX512_KERNELS
      if (fused) {
        int64_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi >= cc ? cc - 1 : c + hi;
        forward_row_075(p, len, x + (n * cc + c0) * sp + s0, c1 - c0 + 1, sp, x + base,
                        y + base);
        continue;
      }
#endif
      row_factors(p, x, cc, sp, n, c, s0, len, pw, NULL);
#pragma omp simd
      for (int64_t i = 0; i < len; i++) y[base + i] = x[base + i] * pw[i];
    }
  }
}

#ifdef DD_AVX512_KERNELS
/* One step of backward's pass over a chunk (see lrn_backward), for beta = 0.75 and windows
 * on the stack, with every intermediate in registers: when rows > 0, channel j's window x0
 * (rows rows `spatial` apart) gives t[j] (into tj) and dx[j]'s direct term; when m > 0,
 * channel c is finished from the m rows tq of t in its window. */
DD_TARGET_AVX512 static void backward_step_075(const lrn_params *p, int64_t len, const float *x0,
                                               int64_t rows, int64_t spatial, const float *xj,
                                               const float *dyj, float *dxj, int inplace, float *tj,
                                               const float *const *tq, int64_t m, const float *xc,
                                               float *dxc, float k) {
  __m512 a = _mm512_set1_ps(p->alpha / (float)p->size), bias = _mm512_set1_ps(p->bias);
  __m512 kv = _mm512_set1_ps(k);
  for (int64_t i = 0; i < len; i += 16) {
    __mmask16 mk = len - i >= 16 ? 0xffff : (__mmask16)((1u << (len - i)) - 1);
    if (rows) {
      __m512 sum = _mm512_setzero_ps(), pws;
      for (int64_t r = 0; r < rows; r++) {
        __m512 v = _mm512_maskz_loadu_ps(mk, x0 + r * spatial + i);
        sum = _mm512_fmadd_ps(v, v, sum);
      }
      __m512 pw = pow_075_16(_mm512_fmadd_ps(a, sum, bias), &pws);
      __m512 g = _mm512_maskz_loadu_ps(mk, dyj + i), xv = _mm512_maskz_loadu_ps(mk, xj + i);
      _mm512_mask_storeu_ps(tj + i, mk, _mm512_mul_ps(_mm512_mul_ps(g, xv), pws));
      __m512 d = _mm512_mul_ps(g, pw);
      if (!inplace) d = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dxj + i), d);
      _mm512_mask_storeu_ps(dxj + i, mk, d);
    }
    if (m) {
      __m512 acc = _mm512_maskz_loadu_ps(mk, tq[0] + i);
      for (int64_t r = 1; r < m; r++)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mk, tq[r] + i));
      __m512 kx = _mm512_mul_ps(kv, _mm512_maskz_loadu_ps(mk, xc + i));
      _mm512_mask_storeu_ps(dxc + i, mk,
                            _mm512_fmadd_ps(kx, acc, _mm512_maskz_loadu_ps(mk, dxc + i)));
    }
  }
}
#endif

/* dx[c] += dy[c] s[c]^-beta - 2 alpha beta / size * x[c] * sum of t[j] over the channels
 * j in [c - hi, c + lo], those whose window holds c; t[j] = dy[j] x[j] s[j]^(-beta-1).
 * One pass per chunk: channel j's t is made at step j, channel c = j - lo is finished at the
 * same step, so t lives in a ring of `size` rows (on the stack when small, else in scratch at
 * the tensor's own positions, which belong to this job alone).  When dx is dy's memory
 * (DD_OP_INPLACE_GRAD) dy[j] is read at step j just before dx[j] overwrites it. */
static void lrn_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout,
                         dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const lrn_params *p = node->params;
  int64_t nn, cc, sp;
  shape_ncs(&in[0]->shape, &nn, &cc, &sp);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int inplace = (const float *)dx == dy;
  int64_t chunk = chunk_len(nn, sp), chunks = (sp + chunk - 1) / chunk;
  float k = -2.f * p->alpha * p->beta / (float)p->size;
  int64_t lo = (p->size - 1) / 2, hi = p->size / 2;
  int on_stack = p->size <= LRN_RING;
#ifdef DD_AVX512_KERNELS
  int fused = on_stack && p->beta == 0.75f && dd_kernels_avx512();
#endif
#pragma omp parallel for if (nn * cc * sp * p->size > DD_PAR_MIN) schedule(static)
  for (int64_t job = 0; job < nn * chunks; job++) {
    int64_t n = job / chunks, s0 = job % chunks * chunk;
    int64_t len = sp - s0 < chunk ? sp - s0 : chunk;
    float pw[LRN_CHUNK], pws[LRN_CHUNK], acc[LRN_CHUNK], ring[LRN_RING * LRN_CHUNK];
    /* row j of t is t + (j % rows) * stride */
    float *t = on_stack ? ring : (float *)scratch + n * cc * sp + s0;
    int64_t rows = on_stack ? p->size : cc, stride = on_stack ? chunk : sp;
    for (int64_t j = 0; j < cc + lo; j++) {
      if (j < cc) {
        int64_t ahead = (n * cc + j + LRN_AHEAD) * sp + s0;
        if (j + hi + LRN_AHEAD < cc) prefetch_row(x + ahead + hi * sp, len, 0);
        if (j + LRN_AHEAD < cc) {
          prefetch_row(dy + ahead, len, 0);
          if (!inplace) prefetch_row(dx + ahead, len, 1);
        }
      }
#ifdef DD_AVX512_KERNELS
      if (fused) {
        /* pointers of a missing channel j (>= cc) or c (< 0) are clamped and left unused */
        int64_t c = j - lo, j0 = j - lo < 0 ? 0 : j - lo, j1 = j + hi >= cc ? cc - 1 : j + hi;
        int64_t q0 = c - hi < 0 ? 0 : c - hi, q1 = c + lo >= cc ? cc - 1 : c + lo, m = 0;
        const float *tq[LRN_RING];
        for (int64_t q = q0; c >= 0 && q <= q1; q++) tq[m++] = t + q % rows * stride;
        int64_t bj = (n * cc + (j < cc ? j : 0)) * sp + s0;
        int64_t bc = (n * cc + (c < 0 ? 0 : c)) * sp + s0;
        backward_step_075(p, len, x + (n * cc + j0) * sp + s0, j < cc ? j1 - j0 + 1 : 0, sp,
                          x + bj, dy + bj, dx + bj, inplace, t + j % rows * stride, tq, m,
                          x + bc, dx + bc, k);
        continue;
      }
#endif
      if (j < cc) {
        row_factors(p, x, cc, sp, n, j, s0, len, pw, pws);
        int64_t base = (n * cc + j) * sp + s0;
        float *tj = t + j % rows * stride;
        if (inplace) {
#pragma omp simd
          for (int64_t i = 0; i < len; i++) {
            float g = dy[base + i];
            tj[i] = g * x[base + i] * pws[i];
            dx[base + i] = g * pw[i];
          }
        } else {
#pragma omp simd
          for (int64_t i = 0; i < len; i++) {
            tj[i] = dy[base + i] * x[base + i] * pws[i];
            dx[base + i] += dy[base + i] * pw[i];
          }
        }
      }
      int64_t c = j - lo;
      if (c < 0) continue;
      int64_t j0 = c - hi < 0 ? 0 : c - hi, j1 = c + lo >= cc ? cc - 1 : c + lo;
      for (int64_t i = 0; i < len; i++) acc[i] = 0.f;
      for (int64_t q = j0; q <= j1; q++) {
        const float *tq = t + q % rows * stride;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) acc[i] += tq[i];
      }
      int64_t base = (n * cc + c) * sp + s0;
#pragma omp simd
      for (int64_t i = 0; i < len; i++) dx[base + i] += k * x[base + i] * acc[i];
    }
  }
}

static int64_t lrn_flops(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out) {
  const lrn_params *p = node->params;
  return dd_tensor_numel(in[0]) * (2 * p->size + 4);
}

const dd_op dd_op_LRN = {"LRN", lrn_init, lrn_infer, lrn_forward, lrn_backward, lrn_flops,
                         DD_OP_BWD_NO_OUT | DD_OP_INPLACE_GRAD};
