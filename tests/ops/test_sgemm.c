/* dd_sgemm, the products' kernel, against a naive double-precision reference written from
 * the definition, on rows and columns that are not multiples of the register tile and k
 * longer than one block; its packed, scaled and transposed-B forms against the floats of the
 * plain product; the caller's floating-point mode kept. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <xmmintrin.h>

#include "helper_kernels.h"
#include "helper_ops.h"
#include "ops/act.h"
#include "ops/sgemm.h"

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
 * thread and split over the threads by columns and by rows.  The AVX-512 and AVX2 kernels take
 * a pack, in blocks of 32 and 16 columns (dd_sgemm_pack_floats is 0 on the generic path,
 * which is checked too). */
static void sgemm_packed_b_gives_the_same_floats_on(void);
Test(sgemm, packed_b_gives_the_same_floats) {
  th_each_kernels(sgemm_packed_b_gives_the_same_floats_on);
}
static void sgemm_packed_b_gives_the_same_floats_on(void) {
  if (th_kernels_now == DD_KERNELS_GENERIC) {
    cr_assert_eq(dd_sgemm_pack_floats(8, 40), 0, "the generic path takes no pack");
    return;
  }
  const int64_t nr = th_kernels_now == DD_KERNELS_AVX512 ? 32 : 16;
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
      cr_assert_eq(floats, (n + nr - 1) / nr * nr * k);
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
 * copy of B^T: the same floats on the AVX-512 and AVX2 kernels; within rounding on the
 * generic path (cblas_sgemm's transposed B). */
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
      if (th_kernels_now != DD_KERNELS_GENERIC) {
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

/* On the hand-written kernels each element of C gets the same operations whichever thread
 * takes it and however the threads split C (by columns or by rows), and a folded activation
 * (SiLU, HardSwish, GELU) gives the floats of the product then the op's own pass
 * (dd_act_rows): the product on 1 thread against all of them, and folded against unfolded.
 * The generic path promises neither (OpenBLAS splits its sums by thread count). */
static void sgemm_threads_and_folds_keep_the_floats_on(void);
Test(sgemm, threads_and_folded_activations_keep_the_floats) {
  th_each_kernels(sgemm_threads_and_folds_keep_the_floats_on);
}
static void sgemm_threads_and_folds_keep_the_floats_on(void) {
  if (th_kernels_now == DD_KERNELS_GENERIC) {
    cr_log_info("the generic path: OpenBLAS's sums depend on the thread count, not checked");
    return;
  }
  /* split by columns (many columns), by rows (a 7x7 plane), short tiles and blocks */
  static const int64_t shapes[][3] = {{96, 3136, 16}, {1152, 49, 192}, {13, 197, 300},
                                      {7, 45, 9}};
  static const int acts[] = {0, DD_SGEMM_RELU, DD_SGEMM_SILU, DD_SGEMM_HARDSWISH,
                             DD_SGEMM_GELU};
  uint64_t st = 31;
  int threads = omp_get_max_threads();
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
      int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(k * n));
      float *bias = malloc(sizeof(float) * (size_t)m);
      float *c1 = malloc(sizeof(float) * (size_t)(m * n)), *cn = malloc(sizeof(float) * (size_t)(m * n));
      float *cu = malloc(sizeof(float) * (size_t)(m * n));
      for (int64_t i = 0; i < m * k; i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < k * n; i++) b[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m; i++) bias[i] = th_rand_uniform(&st, -1, 1);
      omp_set_num_threads(1);
      dd_sgemm(m, n, k, a, k, 1, b, n, c1, n, acts[ai], bias, 1);
      omp_set_num_threads(threads);
      dd_sgemm(m, n, k, a, k, 1, b, n, cn, n, acts[ai], bias, 1);
      cr_assert_eq(memcmp(c1, cn, sizeof(float) * (size_t)(m * n)), 0,
                   "%lldx%lldx%lld act %d: 1 thread and %d differ", (long long)m, (long long)n,
                   (long long)k, acts[ai], threads);
      if (acts[ai] != 0 && acts[ai] != DD_SGEMM_RELU) {
        dd_sgemm(m, n, k, a, k, 1, b, n, cu, n, 0, bias, 1);
        int act = acts[ai] == DD_SGEMM_SILU ? DD_ACT_SILU
                  : acts[ai] == DD_SGEMM_GELU ? DD_ACT_GELU
                                              : DD_ACT_HARDSWISH;
        dd_act_rows(cu, m * n, act, 1);
        /* The AVX-512 tiles compute the activation in registers, in the products' flush to
         * zero (ops/sgemm.c's column_run): there a result below 2^-120 (a GELU of -13 is
         * 13 times a denormal) may be 0.  Every other float is the same. */
        const int avx512 = th_kernels_now == DD_KERNELS_AVX512;
        for (int64_t i = 0; i < m * n; i++)
          if (memcmp(&cu[i], &cn[i], sizeof cu[i]) &&
              !(avx512 && cn[i] == 0.f && fabsf(cu[i]) < 0x1p-120f))
            cr_assert_fail("%lldx%lldx%lld act %d at %lld: folded %a, unfolded %a", (long long)m,
                           (long long)n, (long long)k, acts[ai], (long long)i, cn[i], cu[i]);
      }
      free(a), free(b), free(bias), free(c1), free(cn), free(cu);
    }
}
