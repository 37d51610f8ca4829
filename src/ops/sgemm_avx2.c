/* dd_sgemm on the AVX2 path (ops/cpu.h: a CPU with AVX2 and FMA but not AVX-512, such as AMD's
 * Zen 3): the AVX-512 kernel's design (ops/sgemm.c) in 8-float registers.  A 6 x 16 register
 * tile (12 accumulators, B's 16 columns in two registers, A broadcast from memory), KC values
 * of k at a time, B's KC rows copied a panel of 16-column blocks at a time to a buffer on the
 * stack (or read in place when they are in L1 already), then MC rows of A at a time passed
 * over each block; a 12 x 8 tile for a block's last 8 columns or fewer.
 *
 * Against cblas_sgemm, which the generic path calls, it packs nothing of A (a convolution's
 * weights are read in place), folds the Relu into the tile's store and the other activations
 * into a pass over each chunk of rows while it is in L2, and runs on the caller's OpenMP
 * threads with the AVX-512 kernel's split: every element of C gets the same operations
 * whatever the thread count (each in k order, one fused multiply-add per k).  OpenBLAS packs
 * both operands on every call, and on a product of 7 x 7 pixels or 197 tokens the copies
 * were a tenth of its time (session 17's profiles, bench/README.md). */
#include "ops/sgemm_avx2.h"

#ifdef DD_AVX512_KERNELS

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/act.h"
#include "ops/common.h"
#include "ops/cpu.h"

#define MR DD_SGEMM_AVX2_MR
#define NR DD_SGEMM_AVX2_NR
#ifndef KC
#define KC 256
#endif
#define PANEL 4
/* The most blocks a panel takes when k is short (k < KC): 256 columns. */
#define MAX_PANEL 16
/* Rows of A per pass over a panel's blocks: 120 x KC floats, 120 KiB, stay in L2 (512 KiB on
 * a Zen 3) while the panel's 4 blocks meet them, where all the rows of a tall A would come
 * from L3 for each block. */
#ifndef MC
#define MC 120
#endif

enum { INIT_ZERO, INIT_BIAS, INIT_LOAD, INIT_CBIAS, INIT_RELU = 4 /* or'ed */ };

/* The lanes of a block's 16 columns below w, as maskload/maskstore masks. */
static inline DD_TARGET_AVX2 void block_masks(int64_t w, __m256i *m0, __m256i *m1) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int w0 = w < 8 ? (int)w : 8, w1 = w < 8 ? 0 : w < 16 ? (int)(w - 8) : 8;
  *m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(w0), lane);
  *m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(w1), lane);
}

/* rows x w (w <= NR; masks m0, m1 when w < NR) of C from A and the kc x NR block b, its rows
 * bs apart. */
static inline __attribute__((always_inline)) DD_TARGET_AVX2 void
tile(const int rows, int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b,
     int64_t bs, float *c, int64_t ldc, int init, const float *bias, int full, __m256i m0,
     __m256i m1) {
  __m256 c0[MR], c1[MR];
  int relu = init & INIT_RELU;
  init &= ~INIT_RELU;
#pragma GCC unroll 6
  for (int r = 0; r < rows; r++) {
    const float *src = init == INIT_LOAD ? c + r * ldc : bias;
    if (init == INIT_LOAD || init == INIT_CBIAS) {
      c0[r] = full ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, m0);
      c1[r] = full ? _mm256_loadu_ps(src + 8) : _mm256_maskload_ps(src + 8, m1);
    } else {
      c0[r] = c1[r] = init == INIT_BIAS ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps();
    }
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(b + k * bs);
    __m256 b1 = _mm256_loadu_ps(b + k * bs + 8);
    const float *ak = a + k * acs;
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++) {
      __m256 av = _mm256_broadcast_ss(ak + r * ars);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
  const __m256 zero = _mm256_setzero_ps(); /* max_ps returns this operand for NaN and -0 */
#pragma GCC unroll 6
  for (int r = 0; r < rows; r++) {
    __m256 v0 = c0[r], v1 = c1[r];
    if (relu) {
      v0 = _mm256_max_ps(v0, zero);
      v1 = _mm256_max_ps(v1, zero);
    }
    if (full) {
      _mm256_storeu_ps(c + r * ldc, v0);
      _mm256_storeu_ps(c + r * ldc + 8, v1);
    } else {
      _mm256_maskstore_ps(c + r * ldc, m0, v0);
      _mm256_maskstore_ps(c + r * ldc + 8, m1, v1);
    }
  }
}

/* 12 rows x w (w <= 8: mask m0 when w < 8) of C from the first 8 columns of the packed kc x NR
 * block b: a block's last columns when they are at most 8 (a 7x7 plane's 49th), where the
 * 6 x 16 tile would spend half its multiply-adds on zeros.  Each element gets the operations
 * the wide tile gives it. */
static inline __attribute__((always_inline)) DD_TARGET_AVX2 void
tile_narrow(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t bs,
            float *c, int64_t ldc, int init, const float *bias, int full, __m256i m0) {
  __m256 acc[2 * MR];
  int relu = init & INIT_RELU;
  init &= ~INIT_RELU;
#pragma GCC unroll 12
  for (int r = 0; r < 2 * MR; r++) {
    const float *src = init == INIT_LOAD ? c + r * ldc : bias;
    if (init == INIT_LOAD || init == INIT_CBIAS)
      acc[r] = full ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, m0);
    else
      acc[r] = init == INIT_BIAS ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(b + k * bs);
    const float *ak = a + k * acs;
#pragma GCC unroll 12
    for (int r = 0; r < 2 * MR; r++)
      acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(ak + r * ars), b0, acc[r]);
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 12
  for (int r = 0; r < 2 * MR; r++) {
    __m256 v = relu ? _mm256_max_ps(acc[r], zero) : acc[r];
    if (full)
      _mm256_storeu_ps(c + r * ldc, v);
    else
      _mm256_maskstore_ps(c + r * ldc, m0, v);
  }
}

/* All rows of C's columns [0, w), w <= NR, from the kc x NR block bk, its rows bs apart (NR:
 * packed; columns past w are read, and must be there, but do not reach C). */
DD_TARGET_AVX2 static void rows_of_block(int64_t m, int64_t w, int64_t kc, const float *a,
                                         int64_t ars, int64_t acs, const float *bk, int64_t bs,
                                         float *c, int64_t ldc, int init, const float *bias) {
  __m256i m0, m1;
  block_masks(w, &m0, &m1);
  const int full = w == NR;
  int64_t i = 0;
  if (w <= NR / 2) /* 12 rows at a time by the narrow tile, the rest by the wide one */
    for (; i + 2 * MR <= m; i += 2 * MR)
      tile_narrow(kc, a + i * ars, ars, acs, bk, bs, c + i * ldc, ldc, init,
                  bias && (init & ~INIT_RELU) == INIT_BIAS ? bias + i : bias, w == NR / 2, m0);
  for (; i < m; i += MR) {
    const float *ai = a + i * ars;
    float *ci = c + i * ldc;
    const float *bi = bias && (init & ~INIT_RELU) == INIT_BIAS ? bias + i : bias;
    switch (m - i < MR ? (int)(m - i) : MR) {
      case 6: tile(6, kc, ai, ars, acs, bk, bs, ci, ldc, init, bi, full, m0, m1); break;
      case 5: tile(5, kc, ai, ars, acs, bk, bs, ci, ldc, init, bi, full, m0, m1); break;
      case 4: tile(4, kc, ai, ars, acs, bk, bs, ci, ldc, init, bi, full, m0, m1); break;
      case 3: tile(3, kc, ai, ars, acs, bk, bs, ci, ldc, init, bi, full, m0, m1); break;
      case 2: tile(2, kc, ai, ars, acs, bk, bs, ci, ldc, init, bi, full, m0, m1); break;
      default: tile(1, kc, ai, ars, acs, bk, bs, ci, ldc, init, bi, full, m0, m1); break;
    }
  }
}

/* Rows [k0, k0 + kc) of B's columns [0, w) into nb blocks of kc x NR (columns past w zero):
 * B(q, j) is b[q * ldb + j], or b[j * ldb + q] with tb (stored transposed). */
DD_TARGET_AVX2 static void pack_rows(const float *b, int64_t ldb, int tb, int64_t k0, int64_t kc,
                                     int64_t w, int64_t nb, float *pack) {
  if (tb) { /* each column of B is a run of b: read along it, write down the block */
    for (int64_t jb = 0; jb < nb; jb++) {
      float *dst = pack + jb * kc * NR;
      for (int64_t jj = 0; jj < NR; jj++) {
        int64_t j = jb * NR + jj;
        if (j < w) {
          const float *src = b + j * ldb + k0;
          for (int64_t kk = 0; kk < kc; kk++) dst[kk * NR + jj] = src[kk];
        } else {
          for (int64_t kk = 0; kk < kc; kk++) dst[kk * NR + jj] = 0.f;
        }
      }
    }
    return;
  }
  for (int64_t kk = 0; kk < kc; kk++) {
    const float *src = b + (k0 + kk) * ldb;
    for (int64_t jb = 0; jb < nb; jb++) {
      float *dst = pack + (jb * kc + kk) * NR;
      if (w - jb * NR >= NR) {
        _mm256_store_ps(dst, _mm256_loadu_ps(src + jb * NR));
        _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + jb * NR + 8));
      } else {
        __m256i m0, m1;
        block_masks(w - jb * NR, &m0, &m1);
        _mm256_store_ps(dst, _mm256_maskload_ps(src + jb * NR, m0));
        _mm256_store_ps(dst + 8, _mm256_maskload_ps(src + jb * NR + 8, m1));
      }
    }
  }
}

/* Columns [0, w) of C, w <= the panel's width: each KC rows of B packed for the panel, then
 * MC rows of A at a time meet each block of the pack; once a chunk of rows has its sums
 * complete, the activation other than Relu over them (still in L2: a tall C, 3136 x 384 in
 * ConvNeXt-T's first stage, would have left it), in the caller's MXCSR `csr`: the floats of
 * the op's own pass, which runs without the products' flush to zero (a GELU of -13 is a
 * denormal times 13, a normal float the flush would make 0). */
DD_TARGET_AVX2 static void column_panel(int64_t m, int64_t w, int64_t k, const float *a,
                                        int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                        float *c, int64_t ldc, int accumulate, const float *bias,
                                        const float *packed, int64_t npad, int64_t jb0,
                                        unsigned csr) {
  float pack[PANEL * KC * NR] __attribute__((aligned(32))); /* nb * kc * NR <= this */
  int64_t nb = (w + NR - 1) / NR;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    int64_t kc = k - k0 < KC ? k - k0 : KC;
    int init = k0 > 0 || (accumulate & DD_SGEMM_ACCUMULATE) ? INIT_LOAD
               : bias ? (accumulate & DD_SGEMM_COL_BIAS ? INIT_CBIAS : INIT_BIAS)
                      : INIT_ZERO;
    if ((accumulate & DD_SGEMM_RELU) && k0 + kc >= k) init |= INIT_RELU;
    const float *bk = pack;
    /* B's rows read in place for its whole blocks when they are in L1 already (a block of a
     * convolution's column matrix, 32 KiB: fused_forward's), rather than copied there */
    const int in_place = !packed && !(accumulate & DD_SGEMM_TRANS_B) && kc * ldb <= 8192;
    if (packed)
      bk = packed + k0 * npad + jb0 * kc * NR;
    else if (!in_place)
      pack_rows(b, ldb, (accumulate & DD_SGEMM_TRANS_B) != 0, k0, kc, w, nb, pack);
    else if (w % NR) /* the last, partial block packed (its columns past w zero) */
      pack_rows(b + w / NR * NR + k0 * ldb, ldb, 0, 0, kc, w % NR, 1, pack);
    const int act = k0 + kc >= k ? dd_sgemm_act(accumulate) : DD_ACT_NONE;
    for (int64_t i0 = 0; i0 < m; i0 += MC) { /* MC rows of A in L2 over the panel's blocks */
      int64_t rows = m - i0 < MC ? m - i0 : MC;
      for (int64_t jb = 0; jb < nb; jb++) {
        int64_t bw = w - jb * NR < NR ? w - jb * NR : NR;
        const float *bi = !bias                             ? NULL
                          : accumulate & DD_SGEMM_COL_BIAS ? bias + jb * NR
                                                            : bias + i0;
        const int own = in_place && bw == NR; /* read where it is */
        rows_of_block(rows, bw, kc, a + i0 * ars + k0 * acs, ars, acs,
                      own ? b + k0 * ldb + jb * NR : in_place ? pack : bk + jb * kc * NR,
                      own ? ldb : NR, c + i0 * ldc + jb * NR, ldc, init, bi);
      }
      if (act) { /* these rows' sums are complete, and in L2 */
        unsigned flush = _mm_getcsr();
        _mm_setcsr(csr);
        for (int64_t i = i0; i < i0 + rows; i++) dd_act_rows(c + i * ldc, w, act, 0);
        _mm_setcsr(flush);
      }
    }
  }
}

/* Column blocks [b0, b1) of C (n columns), a panel at a time, with denormals flushed and read
 * as zero on this thread for the call (ops/sgemm.c's column_run says why). */
DD_TARGET_AVX2 static void column_run(int64_t m, int64_t n, int64_t k, const float *a,
                                      int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                      float *c, int64_t ldc, int accumulate, const float *bias,
                                      const float *packed, int64_t b0, int64_t b1) {
  unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15), DAZ (bit 6) */
  /* as many blocks per panel as the pack holds: a short k (a transformer's 96 or a 1x1
   * convolution's 16 channels) packs more of B's columns, and a tall A, which each panel
   * reads again, is read fewer times */
  const int64_t panel = PANEL * KC / (k < KC ? k : KC) < MAX_PANEL ? PANEL * KC / (k < KC ? k : KC)
                                                                   : MAX_PANEL;
  for (int64_t jb = b0; jb < b1; jb += panel) {
    int64_t j = jb * NR, j1 = (jb + panel < b1 ? jb + panel : b1) * NR;
    if (j1 > n) j1 = n;
    const float *bj = packed                          ? b
                      : accumulate & DD_SGEMM_TRANS_B ? b + j * ldb
                                                      : b + j;
    column_panel(m, j1 - j, k, a, ars, acs, bj, ldb, c + j, ldc, accumulate,
                 bias && (accumulate & DD_SGEMM_COL_BIAS) ? bias + j : bias, packed,
                 (n + NR - 1) / NR * NR, jb, csr);
  }
  _mm_setcsr(csr);
}

/* C's one column with A's rows and B's column contiguous: each C[i] a dot product in 16 lanes
 * (four rows sharing B's loads), the lanes then added pairwise, then the start value.  The
 * tiles would spend a block of 16 columns on it: a squeeze-excitation's 1x1 convolutions. */
DD_TARGET_AVX2 static void one_column(int64_t m, int64_t k, const float *a, int64_t ars,
                                      const float *b, float *c, int64_t ldc, int accumulate,
                                      const float *bias) {
  unsigned csr = _mm_getcsr();
  const int act = dd_sgemm_act(accumulate);
  for (int64_t i = 0; i < m; i += 4) {
    int rows = m - i < 4 ? (int)(m - i) : 4;
    /* two accumulators a row, for 16 floats of k a step: eight chains of multiply-adds
     * where four left the core waiting on their latency */
    __m256 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    _mm_setcsr(csr | 0x8040u); /* the sums flushed as column_run's */
    int64_t q = 0;
    /* every row the same operations, in a group of 4 or of fewer (the last) */
#define ONE_COLUMN_STEPS(ROWS)                                                  \
  for (; q + 16 <= k; q += 16) {                                                \
    const __m256 b0 = _mm256_loadu_ps(b + q), b1 = _mm256_loadu_ps(b + q + 8);  \
    _Pragma("GCC unroll 4") for (int r = 0; r < (ROWS); r++) {                  \
      const float *ar = a + (i + r) * ars + q;                                  \
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(ar), b0, acc[r][0]);          \
      acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(ar + 8), b1, acc[r][1]);      \
    }                                                                           \
  }
    if (rows == 4) {
      ONE_COLUMN_STEPS(4)
    } else {
      ONE_COLUMN_STEPS(rows)
    }
#undef ONE_COLUMN_STEPS
    for (; q < k; q += 8) { /* the rest of k, 8 at a time, masked */
      __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(k - q >= 8 ? 8 : (int)(k - q)),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      __m256 bv = _mm256_maskload_ps(b + q, mk);
      for (int r = 0; r < rows; r++)
        acc[r][0] =
            _mm256_fmadd_ps(_mm256_maskload_ps(a + (i + r) * ars + q, mk), bv, acc[r][0]);
    }
    for (int r = 0; r < rows; r++) {
      const __m256 sum = _mm256_add_ps(acc[r][0], acc[r][1]);
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      float *e = c + (i + r) * ldc;
      float init = accumulate & DD_SGEMM_ACCUMULATE ? *e
                   : !bias                          ? 0.f
                   : accumulate & DD_SGEMM_COL_BIAS ? bias[0]
                                                    : bias[i + r];
      *e = init + _mm_cvtss_f32(h);
    }
    _mm_setcsr(csr); /* the activation in the caller's mode, as column_panel's */
    for (int r = 0; r < rows; r++) {
      float *e = c + (i + r) * ldc;
      if (act) dd_act_rows(e, 1, act, 0);
      if (accumulate & DD_SGEMM_RELU) *e = *e > 0.f ? *e : 0.f;
    }
  }
}

int dd_sgemm_avx2_splits_rows(int64_t m, int64_t n, int64_t nt) {
  int64_t blocks = (n + NR - 1) / NR, tiles = (m + MR - 1) / MR;
  return (tiles + nt - 1) / nt * blocks < (blocks + nt - 1) / nt * tiles;
}

void dd_sgemm_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                   const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
                   const float *bias, int parallel, const float *packed) {
  if (m <= 0 || n <= 0) return;
  const int act = dd_sgemm_act(accumulate);
  if (k <= 0) {
    for (int64_t i = 0; i < m && !(accumulate & DD_SGEMM_ACCUMULATE); i++)
      for (int64_t j = 0; j < n; j++)
        c[i * ldc + j] = !bias ? 0.f : accumulate & DD_SGEMM_COL_BIAS ? bias[j] : bias[i];
    for (int64_t i = 0; i < m; i++) {
      float *ci = c + i * ldc;
      if (accumulate & DD_SGEMM_RELU)
        for (int64_t j = 0; j < n; j++) ci[j] = ci[j] > 0.f ? ci[j] : 0.f;
      if (act) dd_act_rows(ci, n, act, 0);
    }
    return;
  }
  if (n == 1 && acs == 1 && (ldb == 1 || (accumulate & DD_SGEMM_TRANS_B)) && !packed &&
      !(accumulate & DD_SGEMM_EXACT)) {
    one_column(m, k, a, ars, b, c, ldc, accumulate, bias);
    return;
  }
  int64_t blocks = (n + NR - 1) / NR, tiles = (m + MR - 1) / MR;
  if (!parallel || (blocks == 1 && tiles == 1) || m * n * k <= 4 * DD_PAR_MIN) {
    column_run(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, packed, 0, blocks);
    return;
  }
  /* one contiguous run of column blocks per thread, or of MR-row tiles over every column when
   * that leaves the busiest thread fewer tiles (ops/sgemm.c says more) */
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (dd_sgemm_avx2_splits_rows(m, n, nt)) {
      int64_t i0 = tiles * t / nt * MR, i1 = tiles * (t + 1) / nt * MR;
      if (i1 > m) i1 = m;
      if (i0 < i1)
        column_run(i1 - i0, n, k, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc,
                   accumulate, bias && !(accumulate & DD_SGEMM_COL_BIAS) ? bias + i0 : bias,
                   packed, 0, blocks);
    } else {
      column_run(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, packed,
                 blocks * t / nt, blocks * (t + 1) / nt);
    }
  }
}

int64_t dd_sgemm_avx2_pack_floats(int64_t k, int64_t n) {
  return k > 0 && n > 0 ? (n + NR - 1) / NR * NR * k : 0;
}

DD_TARGET_AVX2 void dd_sgemm_avx2_pack(int64_t k, int64_t n, const float *b, int64_t ldb, int tb,
                                       float *pack, int parallel) {
  int64_t npad = (n + NR - 1) / NR * NR;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    int64_t kc = k - k0 < KC ? k - k0 : KC;
#pragma omp parallel for schedule(static) if (parallel && kc * n > DD_PAR_MIN)
    for (int64_t jb = 0; jb < npad / NR; jb++) {
      int64_t w = n - jb * NR < NR ? n - jb * NR : NR;
      pack_rows(tb ? b + jb * NR * ldb : b + jb * NR, ldb, tb, k0, kc, w, 1,
                pack + k0 * npad + jb * kc * NR);
    }
  }
}

#endif
