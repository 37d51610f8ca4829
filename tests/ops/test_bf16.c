/* The bf16 matrix products (ops/bf16.c) and the convolutions in bf16 mode (DD_PLAN_BF16),
 * against double-precision references, within bounds derived from bfloat16's 8 significant
 * bits.
 *
 * The bound.  Rounding to bfloat16 (nearest even) changes a value by at most u = 2^-8 of its
 * magnitude (half a unit in the 8th significant bit).  A product of two rounded values is
 * exact in float32 (8 + 8 bits <= 24), and off from the exact product by at most
 * (2u + u^2) |a||b|.  Summing K products (and a bias) in float32 adds at most
 * gamma_K = K 2^-24 / (1 - K 2^-24) of the sum of magnitudes.  So each output obeys
 *   |C - C_exact| <= (2u + u^2 + gamma_(K+1)) * (sum_k |A(i,k)||B(k,j)| + |bias_i|)
 * which is k * 2^-8 * sum|a||b| with k = 2 (two roundings) plus terms of order 2^-16.  The
 * tests compute that sum of magnitudes in double beside the reference and hold every output
 * to it.  Winograd's products round the transformed values instead, so its bound is the same
 * expression taken through the transforms' absolute-value matrices (see wino_bound), plus
 * the float32 Winograd path's own tolerance (tests/ops/test_winograd.c).
 *
 * Each kernel the CPU lacks is skipped, saying so.  Every test also checks that bf16 really
 * ran: the error must exceed what float32 would make.  The convolutions must also give the
 * same bits on 1 and 3 threads as on the default number. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"
#include "ops/bf16.h"
#include "ops/sgemm.h"

#define U_BF16 (1.0 / 256)

static double bound_factor(int64_t terms) {
  double g = (double)terms * 0x1p-24;
  return 2 * U_BF16 + U_BF16 * U_BF16 + g / (1 - g);
}

static const char *isa_name(dd_bf16_isa isa) {
  return isa == DD_BF16_AMX ? "AMX-BF16" : isa == DD_BF16_AVX512 ? "AVX512-BF16" : "none";
}

Test(bf16, rounding_is_to_nearest_even) {
  /* the unit in the last place of 1 is 2^-7: 1 + 2^-8 is a tie (to 1, even), 1 + 3 * 2^-8 a
   * tie the other way (to 1 + 2^-6), 1 + 2^-8 + 2^-20 above the tie */
  cr_assert_eq(dd_bf16_round(1.f + 0x1p-8f), 1.f);
  cr_assert_eq(dd_bf16_round(1.f + 3 * 0x1p-8f), 1.f + 0x1p-6f);
  cr_assert_eq(dd_bf16_round(1.f + 0x1p-8f + 0x1p-20f), 1.f + 0x1p-7f);
  cr_assert_eq(dd_bf16_round(-1.f - 0x1p-9f), -1.f);
  cr_assert_eq(dd_bf16_round(3.f), 3.f);
  cr_assert(isinf(dd_bf16_round(INFINITY)));
  cr_assert(isnan(dd_bf16_round(NAN)));
  /* the largest float rounds up to infinity, as the instruction does */
  cr_assert(isinf(dd_bf16_round(3.4028235e38f)));
}

/* C of m x n from A (m x k, stored as `layout` says) and B; the reference in double and the
 * sum of magnitudes. */
typedef struct gcase {
  int64_t m, n, k;
} gcase;

static void run_gemm_checks(dd_bf16_isa isa) {
  if (!dd_bf16_has(isa))
    cr_skip_test("this CPU lacks %s: its kernel is not tested here", isa_name(isa));
  static const gcase cases[] = {{1, 1, 1},    {8, 32, 2},   {7, 33, 3},   {9, 31, 255},
                                {17, 129, 256}, {130, 70, 257}, {24, 200, 600}, {3, 17, 1},
                                {64, 96, 513}, {1, 300, 40}, {260, 33, 9}};
  uint64_t st = 11;
  double worst_ratio = 0, seen_err = 0;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (int mode = 0; mode < 8; mode++) {
      /* mode bits: 1 A transposed (row stride 1), 2 accumulate, 4 bias and Relu; layout 3
       * (both strides > 1) is taken by mode 1 with k == 1 or m == 1 and by the case below */
      const gcase *g = &cases[ci];
      int64_t m = g->m, n = g->n, k = g->k, ldb = n + 3, ldc = n + 5;
      int trans = mode & 1, acc = (mode & 2) != 0, bias_relu = (mode & 4) != 0;
      int64_t ars = trans ? 1 : k + 1, acs = trans ? m + 2 : 1;
      float *a = malloc((size_t)((m + 2) * (k + 1)) * sizeof *a);
      float *b = malloc((size_t)(k * ldb) * sizeof *b);
      float *c = malloc((size_t)(m * ldc) * sizeof *c), *bias = malloc((size_t)m * sizeof *bias);
      for (int64_t i = 0; i < (m + 2) * (k + 1); i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < k * ldb; i++) b[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m * ldc; i++) c[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m; i++) bias[i] = th_rand_uniform(&st, -1, 1);
      double *ref = malloc((size_t)(m * n) * sizeof *ref);
      double *mag = malloc((size_t)(m * n) * sizeof *mag);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
          double s = acc ? c[i * ldc + j] : bias_relu ? bias[i] : 0, t = fabs(s);
          for (int64_t q = 0; q < k; q++) {
            double p = (double)a[i * ars + q * acs] * b[q * ldb + j];
            s += p;
            t += fabs(p);
          }
          ref[i * n + j] = bias_relu ? fmax(s, 0) : s;
          mag[i * n + j] = t;
        }
      int flags = (acc ? DD_SGEMM_ACCUMULATE : 0) | (bias_relu ? DD_SGEMM_RELU : 0);
      cr_assert_eq(dd_bgemm_on(isa, m, n, k, a, ars, acs, b, ldb, c, ldc, flags,
                               bias_relu ? bias : NULL, (int)(ci & 1)),
                   0, "%s has no kernel", isa_name(isa));
      double f = bound_factor(k + 1);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
          double e = fabs(c[i * ldc + j] - ref[i * n + j]), lim = f * mag[i * n + j];
          cr_assert(e <= lim, "%s %lldx%lldx%lld mode %d: C[%lld][%lld] = %.9g, exact %.9g, "
                    "error %g over the bf16 bound %g",
                    isa_name(isa), (long long)m, (long long)n, (long long)k, mode,
                    (long long)i, (long long)j, c[i * ldc + j], ref[i * n + j], e, lim);
          if (lim > 0) worst_ratio = fmax(worst_ratio, e / lim);
          if (mag[i * n + j] > 0) seen_err = fmax(seen_err, e / mag[i * n + j]);
        }
      free(a), free(b), free(c), free(bias), free(ref), free(mag);
    }
  /* float32 would stay near 2^-24 k; bf16 rounding shows as errors near 2^-9 */
  cr_assert(seen_err > 0x1p-12, "%s: largest relative error %g: the product was not rounded "
            "to bf16", isa_name(isa), seen_err);
  cr_log_info("%s: worst error %.3f of the bf16 bound, largest error/sum|ab| %.3g",
              isa_name(isa), worst_ratio, seen_err);
}

Test(bf16, avx512_bf16_kernel_within_bf16_bound) { run_gemm_checks(DD_BF16_AVX512); }
Test(bf16, amx_kernel_within_bf16_bound) {
  run_gemm_checks(DD_BF16_AMX);
  cr_assert_eq(dd_bf16_kernel(), DD_BF16_AMX,
               "the AMX kernel passes here but failed its self-check (amx_check in bf16.c)");
}

/* Values that bf16 holds exactly (integers up to 8 bits) and sums float32 holds exactly:
 * any kernel must then give the exact result, whatever its packing -- a layout mistake
 * cannot hide inside the tolerance. */
static void exact_checks(dd_bf16_isa isa) {
  if (!dd_bf16_has(isa))
    cr_skip_test("this CPU lacks %s: its kernel is not tested here", isa_name(isa));
  int64_t m = 37, n = 75, k = 301;
  float *a = malloc((size_t)(m * k) * sizeof *a), *b = malloc((size_t)(k * n) * sizeof *b);
  float *c = malloc((size_t)(m * n) * sizeof *c), *ct = malloc((size_t)(m * n) * sizeof *ct);
  float *at = malloc((size_t)(m * k) * sizeof *at);
  uint64_t st = 5;
  for (int64_t i = 0; i < m * k; i++) a[i] = (float)((int)th_rand_uniform(&st, -100, 100));
  for (int64_t i = 0; i < k * n; i++) b[i] = (float)((int)th_rand_uniform(&st, -100, 100));
  for (int64_t i = 0; i < m; i++)
    for (int64_t q = 0; q < k; q++) at[q * m + i] = a[i * k + q];
  dd_bgemm_on(isa, m, n, k, a, k, 1, b, n, c, n, 0, NULL, 1);
  dd_bgemm_on(isa, m, n, k, at, 1, m, b, n, ct, n, 0, NULL, 0);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t q = 0; q < k; q++) s += (double)a[i * k + q] * b[q * n + j];
      cr_assert_eq(c[i * n + j], (float)s, "%s: C[%lld][%lld] = %g, exact %g", isa_name(isa),
                   (long long)i, (long long)j, c[i * n + j], s);
      cr_assert_eq(ct[i * n + j], (float)s, "%s, A transposed: C[%lld][%lld] = %g, exact %g",
                   isa_name(isa), (long long)i, (long long)j, ct[i * n + j], s);
    }
  free(a), free(b), free(c), free(ct), free(at);
}

Test(bf16, avx512_bf16_exact_on_values_bf16_holds) { exact_checks(DD_BF16_AVX512); }
Test(bf16, amx_exact_on_values_bf16_holds) { exact_checks(DD_BF16_AMX); }

/* ---- Conv in bf16 mode ---- */

typedef struct ccase {
  const char *what;
  int64_t c, h, w, m, k, stride, pad;
} ccase;

static const ccase ccases[] = {
    {"pointwise", 20, 13, 17, 24, 1, 1, 0},
    {"general 5x5 (few channels: no Winograd)", 6, 19, 23, 10, 5, 1, 2},
    {"general 3x3 stride 2, k over several blocks", 64, 21, 20, 40, 3, 2, 1},
    {"Winograd 3x3", 16, 20, 22, 24, 3, 1, 1},
};

/* y, dx and their sums of magnitudes in double, from the definition. */
static void conv_ref(const ccase *k, const float *x, const float *w, const float *b,
                     const float *dy, double *y, double *ymag, double *dx, double *dxmag) {
  int64_t ho = (k->h + 2 * k->pad - k->k) / k->stride + 1;
  int64_t wo = (k->w + 2 * k->pad - k->k) / k->stride + 1;
  for (int64_t m = 0; m < k->m; m++)
    for (int64_t oh = 0; oh < ho; oh++)
      for (int64_t ow = 0; ow < wo; ow++) {
        int64_t yi = (m * ho + oh) * wo + ow;
        double s = b[m], t = fabs(b[m]);
        for (int64_t c = 0; c < k->c; c++)
          for (int64_t i = 0; i < k->k; i++)
            for (int64_t j = 0; j < k->k; j++) {
              int64_t ih = oh * k->stride - k->pad + i, iw = ow * k->stride - k->pad + j;
              if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
              int64_t xi = (c * k->h + ih) * k->w + iw;
              double wv = w[((m * k->c + c) * k->k + i) * k->k + j];
              s += wv * x[xi];
              t += fabs(wv * x[xi]);
              dx[xi] += wv * dy[yi];
              dxmag[xi] += fabs(wv * dy[yi]);
            }
        y[yi] = s;
        ymag[yi] = t;
      }
}

/* Winograd F(4x4, 3x3) in bf16 rounds U = G w G^T and V = B^T d B: the products' error is
 * at most (2u + u^2) |U||V| summed over channels, carried to the output by A^T . A, and
 * |U| <= |G||w||G^T|, |V| <= |B^T||d||B|.  So with the absolute-value matrices
 *   bound(tile) = (2u + u^2) |A^T| (sum_c (|G||w_c||G^T|) .* (|B^T||d_c||B|)) |A|.
 * in (ci, ih, iw) convolved with kernel kern(o, c, i, j) (3x3) at padding pad; out gets the
 * bound of each of the (co, oh, ow) outputs (oh = ih + 2 pad - 2). */
typedef double (*kern_fn)(const float *w, int64_t co, int64_t ci, int64_t o, int64_t c, int i,
                          int j);
static double kern_fwd(const float *w, int64_t co, int64_t ci, int64_t o, int64_t c, int i,
                       int j) {
  return w[((o * ci + c) * 3 + i) * 3 + j];
}
/* the data gradient: the flipped, transposed kernel (w is co' x ci' = m x c) */
static double kern_bwd(const float *w, int64_t co, int64_t ci, int64_t o, int64_t c, int i,
                       int j) {
  return w[((c * co + o) * 3 + 2 - i) * 3 + 2 - j];
}

static void wino_bound(const float *in, int64_t ci, int64_t ih, int64_t iw, const float *w,
                       kern_fn kern, int64_t co, int64_t pad, double *out) {
  static const double G[6][3] = {{1. / 4, 0, 0},           {1. / 6, 1. / 6, 1. / 6},
                                 {1. / 6, 1. / 6, 1. / 6}, {1. / 24, 1. / 12, 1. / 6},
                                 {1. / 24, 1. / 12, 1. / 6}, {0, 0, 1}};
  static const double BT[6][6] = {{4, 0, 5, 0, 1, 0}, {0, 4, 4, 1, 1, 0}, {0, 4, 4, 1, 1, 0},
                                  {0, 2, 1, 2, 1, 0}, {0, 2, 1, 2, 1, 0}, {0, 4, 0, 5, 0, 1}};
  static const double AT[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, 1, 2, 2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, 1, 8, 8, 1}};
  int64_t oh = ih + 2 * pad - 2, ow = iw + 2 * pad - 2;
  double *uabs = malloc((size_t)(co * ci * 36) * sizeof *uabs);
  for (int64_t o = 0; o < co; o++)
    for (int64_t c = 0; c < ci; c++)
      for (int a = 0; a < 6; a++)
        for (int bq = 0; bq < 6; bq++) {
          double s = 0;
          for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) s += G[a][i] * fabs(kern(w, co, ci, o, c, i, j)) * G[bq][j];
          uabs[(o * ci + c) * 36 + a * 6 + bq] = s;
        }
  double *vabs = malloc((size_t)ci * 36 * sizeof *vabs);
  for (int64_t ty = 0; ty < oh; ty += 4)
    for (int64_t tx = 0; tx < ow; tx += 4) {
      for (int64_t c = 0; c < ci; c++)
        for (int a = 0; a < 6; a++)
          for (int bq = 0; bq < 6; bq++) {
            double s = 0;
            for (int i = 0; i < 6; i++)
              for (int j = 0; j < 6; j++) {
                int64_t y = ty - pad + i, x = tx - pad + j;
                if (y < 0 || y >= ih || x < 0 || x >= iw) continue;
                s += BT[a][i] * fabs(in[(c * ih + y) * iw + x]) * BT[bq][j];
              }
            vabs[c * 36 + a * 6 + bq] = s;
          }
      for (int64_t o = 0; o < co; o++) {
        double mm[36] = {0};
        for (int64_t c = 0; c < ci; c++)
          for (int e = 0; e < 36; e++) mm[e] += uabs[(o * ci + c) * 36 + e] * vabs[c * 36 + e];
        for (int r = 0; r < 4 && ty + r < oh; r++)
          for (int q = 0; q < 4 && tx + q < ow; q++) {
            double s = 0;
            for (int a = 0; a < 6; a++)
              for (int bq = 0; bq < 6; bq++) s += AT[r][a] * mm[a * 6 + bq] * AT[q][bq];
            out[(o * oh + ty + r) * ow + tx + q] = (2 * U_BF16 + U_BF16 * U_BF16) * s;
          }
      }
    }
  free(uabs);
  free(vabs);
}

Test(bf16, conv_forward_and_data_gradient_within_bf16_bound) {
  if (dd_bf16_kernel() == DD_BF16_NONE)
    cr_skip_test("this CPU has no bf16 kernel (AVX512-BF16): bf16 mode runs float32");
  for (size_t ci = 0; ci < sizeof ccases / sizeof ccases[0]; ci++) {
    const ccase *k = &ccases[ci];
    int wino = k->k == 3 && k->stride == 1 && k->c >= 8 && k->m >= 8;
    th_node t;
    th_init(&t, "Conv", 3, 1);
    int64_t ks[2] = {k->k, k->k}, st[2] = {k->stride, k->stride};
    int64_t pads[4] = {k->pad, k->pad, k->pad, k->pad};
    th_attr_ints(&t, "kernel_shape", 2, ks);
    th_attr_ints(&t, "strides", 2, st);
    th_attr_ints(&t, "pads", 4, pads);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t xd[4] = {1, k->c, k->h, k->w}, wd[4] = {k->m, k->c, k->k, k->k};
    dd_tensor *in[3] = {th_random(4, xd, 100 + ci, -1, 1), th_random(4, wd, 200 + ci, -1, 1),
                        th_random(1, &k->m, 300 + ci, -1, 1)};
    size_t scratch = 0;
    dd_tensor *y = th_tensor(4, xd), *outs[1] = {y};
    cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)in, outs, &scratch, &err), 0,
                 "%s", err.msg);
    dd_tensor *yt = th_tensor(4, y->shape.d);
    dd_tensor_free(y);
    y = yt;
    int64_t ny = dd_tensor_numel(y), nx = dd_tensor_numel(in[0]);
    void *s = malloc(scratch ? scratch : 1);
    dd_op_call call = {0, 0, 1};
    dd_tensor *yo[1] = {y};
    dd_op_forward(&t.node, (const dd_tensor *const *)in, yo, s, &call);
    /* the same bits on any number of threads (the README promises it of bf16 too) */
    for (int nt = 1; nt <= 3; nt += 2) {
      dd_tensor *y2 = th_tensor(4, y->shape.d), *yo2[1] = {y2};
      int saved = omp_get_max_threads();
      omp_set_num_threads(nt);
      dd_op_forward(&t.node, (const dd_tensor *const *)in, yo2, s, &call);
      omp_set_num_threads(saved);
      cr_assert(!memcmp(y2->data, y->data, (size_t)ny * sizeof(float)),
                "%s: forward on %d threads differs from %d threads", k->what, nt, saved);
      dd_tensor_free(y2);
    }
    dd_tensor *dy = th_random(4, y->shape.d, 400 + ci, -1, 1), *dx = th_tensor(4, xd);
    for (int64_t i = 0; i < nx; i++) dd_f32(dx)[i] = 0.25f; /* it accumulates */
    dd_tensor *din[3] = {dx, NULL, NULL};
    const dd_tensor *dout[1] = {dy}, *out[1] = {y};
    dd_op_backward(&t.node, (const dd_tensor *const *)in, out, dout, din, s, &call);
    for (int nt = 1; nt <= 3; nt += 2) {
      dd_tensor *dx2 = th_tensor(4, xd), *din2[3] = {dx2, NULL, NULL};
      for (int64_t i = 0; i < nx; i++) dd_f32(dx2)[i] = 0.25f;
      int saved = omp_get_max_threads();
      omp_set_num_threads(nt);
      dd_op_backward(&t.node, (const dd_tensor *const *)in, out, dout, din2, s, &call);
      omp_set_num_threads(saved);
      cr_assert(!memcmp(dx2->data, dx->data, (size_t)nx * sizeof(float)),
                "%s: data gradient on %d threads differs from %d threads", k->what, nt, saved);
      dd_tensor_free(dx2);
    }

    double *yr = calloc((size_t)ny, sizeof *yr), *ym = calloc((size_t)ny, sizeof *ym);
    double *dr = calloc((size_t)nx, sizeof *dr), *dm = calloc((size_t)nx, sizeof *dm);
    conv_ref(k, dd_f32(in[0]), dd_f32(in[1]), dd_f32(in[2]), dd_f32(dy), yr, ym, dr, dm);
    double *yb = malloc((size_t)ny * sizeof *yb), *db = malloc((size_t)nx * sizeof *db);
    double yscale = 1, dscale = 1, yseen = 0, dseen = 0;
    for (int64_t i = 0; i < ny; i++) yscale = fmax(yscale, fabs(yr[i]));
    for (int64_t i = 0; i < nx; i++) dscale = fmax(dscale, fabs(dr[i] + 0.25));
    if (wino) {
      /* plus the float32 Winograd path's own tolerance (tests/ops/test_winograd.c) */
      wino_bound(dd_f32(in[0]), k->c, k->h, k->w, dd_f32(in[1]), kern_fwd, k->m, k->pad, yb);
      wino_bound(dd_f32(dy), k->m, y->shape.d[2], y->shape.d[3], dd_f32(in[1]), kern_bwd, k->c,
                 2 - k->pad, db);
      for (int64_t i = 0; i < ny; i++) yb[i] += 1e-5 * yscale;
      for (int64_t i = 0; i < nx; i++) db[i] += 1e-5 * dscale;
    } else {
      int64_t terms = k->c * k->k * k->k + 1, dterms = k->m * k->k * k->k + 1;
      for (int64_t i = 0; i < ny; i++) yb[i] = bound_factor(terms) * ym[i];
      /* the data gradient adds each block of products into dx: one more float32 sum */
      for (int64_t i = 0; i < nx; i++) db[i] = bound_factor(dterms) * (dm[i] + 0.25);
    }
    for (int64_t i = 0; i < ny; i++) {
      double e = fabs(dd_f32(y)[i] - yr[i]);
      cr_assert(e <= yb[i], "%s: y[%lld] = %.9g, exact %.9g: error %g over the bound %g",
                k->what, (long long)i, dd_f32(y)[i], yr[i], e, yb[i]);
      yseen = fmax(yseen, e / yscale);
    }
    for (int64_t i = 0; i < nx; i++) {
      double e = fabs(dd_f32(dx)[i] - (dr[i] + 0.25));
      cr_assert(e <= db[i], "%s: dx[%lld] = %.9g, exact %.9g: error %g over the bound %g",
                k->what, (long long)i, dd_f32(dx)[i], dr[i] + 0.25, e, db[i]);
      dseen = fmax(dseen, e / dscale);
    }
    cr_assert(yseen > 1e-4 && dseen > 1e-4,
              "%s: errors %g and %g (relative to the largest value): float32-sized, so bf16 did "
              "not run",
              k->what, yseen, dseen);
    cr_log_info("%s: largest error / largest value: forward %.3g, data gradient %.3g", k->what,
                yseen, dseen);
    free(yr), free(ym), free(dr), free(dm), free(yb), free(db), free(s);
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    dd_tensor_free(y);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    free(t.node.params);
  }
}
