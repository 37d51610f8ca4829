/* The fast convolution paths: Winograd F(4x4, 3x3) (Conv picks it for 3x3 stride-1 kernels
 * with >= 8 channels in and out) and dd_sgemm, each against a naive double-precision
 * reference written from the definition, on shapes that reach every border case: tiles cut
 * by the image edge, rows of 16 tiles inside and outside it, padding larger than 1 and
 * asymmetric, several chunks of tiles, groups of 16 tiles that wrap onto the next rows of
 * tiles (one to sixteen of them), channel counts that fill 16 lanes partly, rows and columns
 * that are not multiples of the register tile, k longer than one block. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <xmmintrin.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"
#include "ops/sgemm.h"

typedef struct wcase {
  const char *what;
  int64_t n, c, h, w, m;
  int64_t pt, pl, pb, pr;
  int bias;
} wcase;

static const wcase wcases[] = {
    {"pad 1, fast and border rows of tiles", 2, 8, 37, 70, 9, 1, 1, 1, 1, 1},
    {"no padding, wide", 1, 12, 9, 150, 8, 0, 0, 0, 0, 0},
    {"pads 2 and asymmetric", 1, 8, 21, 23, 16, 2, 1, 0, 2, 1},
    {"image smaller than a tile", 1, 9, 3, 5, 8, 1, 1, 1, 1, 1},
    {"several chunks of tiles", 1, 8, 212, 244, 8, 1, 1, 1, 1, 1},
    {"one tile wide: a group of 16 tiles spans 16 rows of tiles", 1, 8, 70, 3, 8, 1, 1, 1, 1, 1},
    {"rows of exactly 16 tiles", 1, 8, 10, 64, 8, 1, 1, 1, 1, 0},
    {"rows of 17 tiles, the last one column wide", 1, 8, 9, 65, 8, 1, 1, 1, 1, 1},
    {"channels not a multiple of 16, pads only left and bottom", 2, 17, 13, 29, 23, 0, 2, 2, 0, 1},
};

static void naive(const wcase *k, const float *x, const float *w, const float *b, double *y,
                  const float *dy, double *dx) {
  int64_t ho = k->h + k->pt + k->pb - 2, wo = k->w + k->pl + k->pr - 2;
  for (int64_t n = 0; n < k->n; n++)
    for (int64_t m = 0; m < k->m; m++)
      for (int64_t oh = 0; oh < ho; oh++)
        for (int64_t ow = 0; ow < wo; ow++) {
          int64_t yi = ((n * k->m + m) * ho + oh) * wo + ow;
          double acc = b ? b[m] : 0;
          for (int64_t c = 0; c < k->c; c++)
            for (int64_t i = 0; i < 3; i++)
              for (int64_t j = 0; j < 3; j++) {
                int64_t ih = oh - k->pt + i, iw = ow - k->pl + j;
                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
                int64_t xi = ((n * k->c + c) * k->h + ih) * k->w + iw;
                double wv = w[((m * k->c + c) * 3 + i) * 3 + j];
                acc += wv * x[xi];
                if (dx) dx[xi] += wv * dy[yi];
              }
          if (y) y[yi] = acc;
        }
}

static void setup(th_node *t, const wcase *k) {
  th_init(t, "Conv", k->bias ? 3 : 2, 1);
  int64_t pads[4] = {k->pt, k->pl, k->pb, k->pr};
  th_attr_ints(t, "pads", 4, pads);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s", err.msg);
}

static void winograd_conv_matches_naive_reference_on(void);
Test(winograd, conv_matches_naive_reference) {
  th_each_kernels(winograd_conv_matches_naive_reference_on);
}
static void winograd_conv_matches_naive_reference_on(void) {
  for (size_t ci = 0; ci < sizeof wcases / sizeof wcases[0]; ci++) {
    const wcase *k = &wcases[ci];
    th_node t;
    setup(&t, k);
    int64_t xd[4] = {k->n, k->c, k->h, k->w}, wd[4] = {k->m, k->c, 3, 3};
    dd_tensor *in[3] = {th_random(4, xd, 10 + ci, -1, 1), th_random(4, wd, 20 + ci, -1, 1),
                        k->bias ? th_random(1, &k->m, 30 + ci, -1, 1) : NULL};
    dd_tensor *y[1];
    dd_err err;
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s: %s", k->what, err.msg);
    int64_t ho = k->h + k->pt + k->pb - 2, wo = k->w + k->pl + k->pr - 2;
    int64_t ny = k->n * k->m * ho * wo, nx = k->n * k->c * k->h * k->w;
    cr_assert_eq(dd_tensor_numel(y[0]), ny, "%s: output size", k->what);
    double *ref = calloc((size_t)ny, sizeof(double)), *dref = calloc((size_t)nx, sizeof(double));
    naive(k, dd_f32(in[0]), dd_f32(in[1]), in[2] ? dd_f32(in[2]) : NULL, ref, NULL, NULL);
    double scale = 1, e = 0;
    for (int64_t i = 0; i < ny; i++) scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < ny; i++) e = fmax(e, fabs(dd_f32(y[0])[i] - ref[i]));
    cr_assert(e <= 1e-5 * scale, "%s: forward differs by %g (scale %g)", k->what, e, scale);

    /* the data gradient accumulates into what is there */
    dd_tensor *dy = th_random(4, y[0]->shape.d, 40 + ci, -1, 1);
    dd_tensor *dx = th_tensor(4, xd);
    for (int64_t i = 0; i < nx; i++) dd_f32(dx)[i] = 0.25f, dref[i] = 0.25;
    naive(k, dd_f32(in[0]), dd_f32(in[1]), NULL, NULL, dd_f32(dy), dref);
    size_t scratch = 0;
    dd_tensor shape, *outs[1] = {&shape};
    cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
    void *s = malloc(scratch ? scratch : 1);
    dd_tensor *din[3] = {dx, NULL, NULL};
    const dd_tensor *dout[1] = {dy}, *out[1] = {y[0]};
    t.node.op->backward(&t.node, (const dd_tensor *const *)in, out, dout, din, s);
    double dscale = 1, de = 0;
    for (int64_t i = 0; i < nx; i++) dscale = fmax(dscale, fabs(dref[i]));
    for (int64_t i = 0; i < nx; i++) de = fmax(de, fabs(dd_f32(dx)[i] - dref[i]));
    cr_assert(de <= 1e-5 * dscale, "%s: data gradient differs by %g (scale %g)", k->what, de,
              dscale);
    free(s);
    free(ref);
    free(dref);
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    free(t.node.params);
  }
}

static void winograd_gradient_matches_finite_differences_on(void);
Test(winograd, gradient_matches_finite_differences) {
  th_each_kernels(winograd_gradient_matches_finite_differences_on);
}
static void winograd_gradient_matches_finite_differences_on(void) {
  const wcase k = {"small", 1, 8, 6, 7, 8, 1, 1, 1, 1, 1};
  th_node t;
  setup(&t, &k);
  int64_t xd[4] = {1, 8, 6, 7}, wd[4] = {8, 8, 3, 3}, m = 8;
  dd_tensor *in[3] = {th_random(4, xd, 5, -1, 1), th_random(4, wd, 6, -1, 1),
                      th_random(1, &m, 7, -1, 1)};
  int skipped = -1;
  double e = th_gradcheck(&t, in, 0, 1e-2f, 9, &skipped);
  cr_assert(e >= 0 && e < 1e-2, "relative error %g", e);
  cr_assert_eq(skipped, 0);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  free(t.node.params);
}

/* dd_sgemm against a double-precision triple loop, A as given and transposed, with and
 * without accumulation, with a bias per row or per column, on shapes that cut its panels and blocks every way. */
static void sgemm_matches_naive_product_on(void);
Test(sgemm, matches_naive_product) { th_each_kernels(sgemm_matches_naive_product_on); }
static void sgemm_matches_naive_product_on(void) {
  static const int64_t shapes[][3] = {{1, 1, 1},   {8, 32, 5},   {7, 33, 300}, {19, 70, 9},
                                      {64, 100, 513}, {3, 17, 2}, {16, 31, 0},
                                      /* several panels of 4 blocks per thread, a short last
                                       * panel and a short last block, k over two passes */
                                      {9, 300, 40}, {5, 1000, 260}, {12, 161, 7},
                                      /* on 2 threads split by rows (7 blocks, 6 row
                                       * tiles, the last one short): a 14x14 plane */
                                      {46, 196, 64},
                                      /* one column with B contiguous (ldb 1): the AVX-512
                                       * path's dot products (a squeeze-excitation's 1x1
                                       * convolution on a 1x1 plane), 4-row groups and
                                       * their tails, k past and short of 16 */
                                      {1152, 1, 48}, {7, 1, 37}, {3, 1, 5}};
  uint64_t st = 3;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int mode = 0; mode < 6; mode++) {
      int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      /* modes 4, 5: a bias per column (DD_SGEMM_COL_BIAS) */
      int trans = mode & 1, acc = mode >> 1 == 1, colb = mode >= 4;
      /* the last three shapes: B's one column contiguous (ldb 1) */
      int tight = si + 3 >= sizeof shapes / sizeof shapes[0];
      int64_t lda = k + 3, ldb = tight ? 1 : n + 5, ldc = n + 2, ldat = m + 1;
      int relu = tight && (mode == 0 || mode == 4); /* Relu folded in, on the one column */
      float *a = malloc(sizeof(float) * (size_t)(m * lda + k * ldat + 1));
      float *b = malloc(sizeof(float) * (size_t)(k * ldb + 1));
      float *c = malloc(sizeof(float) * (size_t)(m * ldc));
      float *bias = malloc(sizeof(float) * (size_t)(m > n ? m : n));
      for (int64_t i = 0; i < m * lda + k * ldat + 1; i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < k * ldb + 1; i++) b[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m * ldc; i++) c[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < (m > n ? m : n); i++) bias[i] = th_rand_uniform(&st, -1, 1);
      float *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
      memcpy(c0, c, sizeof(float) * (size_t)(m * ldc));
      int64_t ars = trans ? 1 : lda, acs = trans ? ldat : 1;
      dd_sgemm(m, n, k, a, ars, acs, b, ldb, c, ldc,
               acc | (colb ? DD_SGEMM_COL_BIAS : 0) | (relu ? DD_SGEMM_RELU : 0),
               acc ? NULL : bias, 1);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ldc; j++) {
          if (j >= n) { /* outside the product: untouched */
            cr_assert_eq(c[i * ldc + j], c0[i * ldc + j]);
            continue;
          }
          double want = acc ? c0[i * ldc + j] : colb ? bias[j] : bias[i];
          for (int64_t q = 0; q < k; q++) want += (double)a[i * ars + q * acs] * b[q * ldb + j];
          if (relu && want < 0) want = 0;
          cr_assert(fabs(c[i * ldc + j] - want) <= 1e-5 * (1 + fabs(want)),
                    "%lldx%lldx%lld mode %d at (%lld, %lld): %g vs %g", (long long)m,
                    (long long)n, (long long)k, mode, (long long)i, (long long)j,
                    c[i * ldc + j], want);
        }
      free(a);
      free(b);
      free(c);
      free(c0);
      free(bias);
    }
}

/* The AVX-512 kernel reads denormal operands as zero and flushes denormal results (MXCSR's
 * DAZ and FTZ) for the length of its call only: the caller's threads, the calling one and the
 * OpenMP workers, get their own setting back (a host process's other code must not change
 * its arithmetic under it).  Products of denormals come out as zeros, never as NaN or junk. */
static void sgemm_restores_the_callers_floating_point_mode_on(void);
Test(sgemm, restores_the_callers_floating_point_mode) {
  th_each_kernels(sgemm_restores_the_callers_floating_point_mode_on);
}
static void sgemm_restores_the_callers_floating_point_mode_on(void) {
  const int64_t m = 48, n = 200, k = 64; /* large enough to run on every thread */
  float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n),
        *c = malloc(sizeof(float) * m * n);
  for (int64_t i = 0; i < m * k; i++) a[i] = 1e-39f * (float)(1 + i % 5); /* denormals */
  for (int64_t i = 0; i < k * n; i++) b[i] = 0.5f + (float)(i % 3);
  unsigned before = _mm_getcsr();
  int threads = omp_get_max_threads(), same = 0;
  for (int parallel = 0; parallel < 2; parallel++) {
    dd_sgemm(m, n, k, a, k, 1, b, n, c, n, 0, NULL, parallel);
    cr_assert_eq(_mm_getcsr(), before, "MXCSR %#x after the call, %#x before", _mm_getcsr(),
                 before);
#pragma omp parallel reduction(+ : same)
    same += _mm_getcsr() == before;
    cr_assert_eq(same, threads * (parallel + 1), "a worker kept another MXCSR");
    for (int64_t i = 0; i < m * n; i++)
      cr_assert(c[i] >= 0.f && c[i] < 1e-36f, "c[%lld] = %g", (long long)i, c[i]);
  }
  free(a);
  free(b);
  free(c);
}

/* A single row or a single column of A leaves one of its strides unused: any value must do,
 * 1 included (cblas would refuse lda = 1 for a row of k > 1 and leave C unchanged). */
static void sgemm_degenerate_strides_of_a_single_row_or_column_on(void);
Test(sgemm, degenerate_strides_of_a_single_row_or_column) {
  th_each_kernels(sgemm_degenerate_strides_of_a_single_row_or_column_on);
}
static void sgemm_degenerate_strides_of_a_single_row_or_column_on(void) {
  static const int64_t shapes[][2] = {{1, 9}, {6, 1}}; /* m x k */
  uint64_t st = 8;
  for (size_t si = 0; si < 2; si++) {
    int64_t m = shapes[si][0], k = shapes[si][1], n = 37;
    float a[9], b[9 * 37], c[6 * 37];
    for (int64_t i = 0; i < m * k; i++) a[i] = th_rand_uniform(&st, -1, 1);
    for (int64_t i = 0; i < k * n; i++) b[i] = th_rand_uniform(&st, -1, 1);
    dd_sgemm(m, n, k, a, 1, 1, b, n, c, n, 0, NULL, 1);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double want = 0;
        for (int64_t q = 0; q < k; q++) want += (double)a[i + q] * b[q * n + j];
        cr_assert(fabs(c[i * n + j] - want) <= 1e-5 * (1 + fabs(want)), "%lldx%lld (%lld, %lld)",
                  (long long)m, (long long)k, (long long)i, (long long)j);
      }
  }
}

/* B packed once (dd_sgemm_pack, a plan's constant weights) gives the same floats as dd_sgemm
 * packing it on each call: every start (zero, a bias per row or per column, accumulation),
 * the Relu, A transposed, and shapes that cut the panels, the blocks and k's passes, on one
 * thread and split over the threads by columns and by rows.  Only the AVX-512 kernels take a
 * pack (dd_sgemm_pack_floats is 0 on the generic path, which is checked too). */
static void sgemm_packed_b_gives_the_same_floats_on(void);
Test(sgemm, packed_b_gives_the_same_floats) {
  th_each_kernels(sgemm_packed_b_gives_the_same_floats_on);
}
static void sgemm_packed_b_gives_the_same_floats_on(void) {
  if (th_kernels_now != DD_KERNELS_AVX512) {
    cr_assert_eq(dd_sgemm_pack_floats(8, 40), 0, "the generic path takes no pack");
    return;
  }
  static const int64_t shapes[][3] = {{17, 768, 192}, {5, 33, 7},  {9, 300, 513},
                                      {46, 196, 64},  {64, 40, 12}, {16, 2304, 300},
                                      {3, 1, 5},      {130, 97, 256}};
  uint64_t st = 11;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int mode = 0; mode < 8; mode++) {
      int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      int trans = mode & 1, acc = (mode >> 1) % 2, colb = mode >= 4, relu = mode == 6;
      int parallel = (mode % 3) != 0;
      int64_t lda = k + 3, ldb = n + 5, ldc = n + 2, ldat = m + 1;
      int64_t floats = dd_sgemm_pack_floats(k, n);
      cr_assert_eq(floats, (n + 31) / 32 * 32 * k);
      float *a = malloc(sizeof(float) * (size_t)(m * lda + k * ldat));
      float *b = malloc(sizeof(float) * (size_t)(k * ldb));
      float *pack = aligned_alloc(64, ((size_t)floats * sizeof(float) + 63) / 64 * 64);
      float *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
      float *c1 = malloc(sizeof(float) * (size_t)(m * ldc));
      float *bias = malloc(sizeof(float) * (size_t)(m > n ? m : n));
      for (int64_t i = 0; i < m * lda + k * ldat; i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < k * ldb; i++) b[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m * ldc; i++) c0[i] = c1[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < (m > n ? m : n); i++) bias[i] = th_rand_uniform(&st, -1, 1);
      dd_sgemm_pack(k, n, b, ldb, 0, pack, parallel);
      int64_t ars = trans ? 1 : lda, acs = trans ? ldat : 1;
      int flags = acc | (colb ? DD_SGEMM_COL_BIAS : 0) | (relu ? DD_SGEMM_RELU : 0);
      dd_sgemm(m, n, k, a, ars, acs, b, ldb, c0, ldc, flags, acc ? NULL : bias, parallel);
      dd_sgemm_packed(m, n, k, a, ars, acs, pack, c1, ldc, flags, acc ? NULL : bias, parallel,
                      NULL);
      cr_assert_eq(memcmp(c0, c1, sizeof(float) * (size_t)(m * ldc)), 0,
                   "%lldx%lldx%lld mode %d: the packed product differs", (long long)m,
                   (long long)n, (long long)k, mode);
      free(a);
      free(b);
      free(pack);
      free(c0);
      free(c1);
      free(bias);
    }
}

/* dd_sgemm_scaled against dd_sgemm on a copy of B with its rows scaled: the kernels scale each
 * row as they pack it, one rounding per element as the copy has, so the floats are the same;
 * the generic path declines. */
static void sgemm_scaled_rows_give_the_floats_of_a_scaled_copy_on(void);
Test(sgemm, scaled_rows_give_the_floats_of_a_scaled_copy) {
  th_each_kernels(sgemm_scaled_rows_give_the_floats_of_a_scaled_copy_on);
}
static void sgemm_scaled_rows_give_the_floats_of_a_scaled_copy_on(void) {
  /* one column (which dd_sgemm takes as dot products), B already one aligned block, several
   * KC chunks and panels, a 7x7 plane */
  static const int64_t shapes[][3] = {{192, 49, 1152}, {5, 1, 40}, {8, 32, 300},
                                      {33, 200, 17},   {3, 7, 5}};
  uint64_t st = 23;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int mode = 0; mode < 4; mode++) {
      int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      int parallel = mode & 1, relu = mode >> 1;
      int64_t ldb = mode == 2 ? n : n + 3; /* ldb == n == 32: B is a packed block already */
      float *a = malloc(sizeof(float) * (size_t)(m * k));
      float *b = aligned_alloc(64, (sizeof(float) * (size_t)(k * ldb) + 63) / 64 * 64);
      float *bs = malloc(sizeof(float) * (size_t)(k * ldb));
      float *s = malloc(sizeof(float) * (size_t)k), *bias = malloc(sizeof(float) * (size_t)m);
      float *c0 = malloc(sizeof(float) * (size_t)(m * n)), *c1 = malloc(sizeof(float) * (size_t)(m * n));
      for (int64_t i = 0; i < m * k; i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < k; i++) s[i] = th_rand_uniform(&st, -2, 2);
      for (int64_t i = 0; i < m; i++) bias[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t q = 0; q < k; q++)
        for (int64_t j = 0; j < ldb; j++) {
          b[q * ldb + j] = th_rand_uniform(&st, -1, 1);
          bs[q * ldb + j] = b[q * ldb + j] * s[q];
        }
      int flags = relu ? DD_SGEMM_RELU : 0;
      int took = dd_sgemm_scaled(m, n, k, a, k, 1, b, ldb, s, c1, n, flags, bias, parallel);
      cr_assert_eq(took, th_kernels_now == DD_KERNELS_AVX512);
      if (took) {
        dd_sgemm(m, n, k, a, k, 1, bs, ldb, c0, n, flags, bias, parallel);
        cr_assert_eq(memcmp(c0, c1, sizeof(float) * (size_t)(m * n)), 0,
                     "%lldx%lldx%lld mode %d: the scaled product differs", (long long)m,
                     (long long)n, (long long)k, mode);
      }
      free(a), free(b), free(bs), free(s), free(bias), free(c0), free(c1);
    }
}

/* DD_SGEMM_TRANS_B (B stored transposed, transposed as it is packed) against dd_sgemm on a
 * copy of B^T: the same floats on the AVX-512 kernels; within rounding on the generic path
 * (cblas_sgemm's transposed B). */
static void sgemm_transposed_b_gives_the_floats_of_a_copy_on(void);
Test(sgemm, transposed_b_gives_the_floats_of_a_copy) {
  th_each_kernels(sgemm_transposed_b_gives_the_floats_of_a_copy_on);
}
static void sgemm_transposed_b_gives_the_floats_of_a_copy_on(void) {
  /* partial 16 x 16 blocks on both sides, several KC chunks and panels, one column */
  static const int64_t shapes[][3] = {{196, 384, 1536}, {33, 200, 17}, {9, 7, 300},
                                      {64, 129, 40},    {5, 1, 40},    {40, 31, 257}};
  uint64_t st = 29;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int mode = 0; mode < 4; mode++) {
      int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      int parallel = mode & 1, acc = mode >> 1;
      int64_t ldbt = k + 3; /* b: n x k, row j holds B's column j */
      float *a = malloc(sizeof(float) * (size_t)(m * k));
      float *bt = malloc(sizeof(float) * (size_t)(n * ldbt));
      float *b = malloc(sizeof(float) * (size_t)(k * n)), *bias = malloc(sizeof(float) * (size_t)n);
      float *c0 = malloc(sizeof(float) * (size_t)(m * n)), *c1 = malloc(sizeof(float) * (size_t)(m * n));
      for (int64_t i = 0; i < m * k; i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < n * ldbt; i++) bt[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t j = 0; j < n; j++) bias[j] = th_rand_uniform(&st, -1, 1);
      for (int64_t q = 0; q < k; q++)
        for (int64_t j = 0; j < n; j++) b[q * n + j] = bt[j * ldbt + q];
      for (int64_t i = 0; i < m * n; i++) c0[i] = c1[i] = th_rand_uniform(&st, -1, 1);
      int flags = acc ? DD_SGEMM_ACCUMULATE : DD_SGEMM_COL_BIAS;
      dd_sgemm(m, n, k, a, k, 1, b, n, c0, n, flags, acc ? NULL : bias, parallel);
      dd_sgemm(m, n, k, a, k, 1, bt, ldbt, c1, n, flags | DD_SGEMM_TRANS_B, acc ? NULL : bias,
               parallel);
      if (th_kernels_now == DD_KERNELS_AVX512) {
        cr_assert_eq(memcmp(c0, c1, sizeof(float) * (size_t)(m * n)), 0,
                     "%lldx%lldx%lld mode %d: the product of the stored transpose differs",
                     (long long)m, (long long)n, (long long)k, mode);
      } else { /* cblas_sgemm's transposed B: its own summation order */
        for (int64_t i = 0; i < m * n; i++)
          cr_assert(fabsf(c0[i] - c1[i]) <= 1e-5f * (float)k, "%lldx%lldx%lld mode %d at %lld",
                    (long long)m, (long long)n, (long long)k, mode, (long long)i);
      }
      free(a), free(bt), free(b), free(bias), free(c0), free(c1);
    }
}
