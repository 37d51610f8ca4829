/* dd_sgemm (see sgemm.h).  On the AVX-512 path (ops/cpu.h, chosen at run time from cpuid):
 * an 8 x 32 register tile (16 accumulators), B's 32 columns loaded once per k and A broadcast
 * from memory, 256 values of k at a time.  Those 256 rows of B are first copied, 4 blocks of
 * 32 columns at a time, to a contiguous buffer on the stack (128 KiB) while all the rows of A
 * pass over each block (32 KiB, in L1): read in place, B's rows would sit one page apart for
 * wide images and every k would miss the TLB; and 4 blocks rather than 1, because a row of
 * one block is a run of 128 bytes that the prefetchers do not follow, while 4 make it a
 * 512-byte run they do (figures in bench/README.md).  On the generic path: cblas_sgemm. */
#include "ops/sgemm.h"

#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/act.h"
#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/sgemm_avx2.h"
#include "ops/transpose16.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

/* C = max(0, C) over m x n (NaN and -0 become +0, as Relu does). */
static void relu_rows(int64_t m, int64_t n, float *c, int64_t ldc) {
  for (int64_t i = 0; i < m; i++)
#pragma omp simd
    for (int64_t j = 0; j < n; j++) c[i * ldc + j] = c[i * ldc + j] > 0.f ? c[i * ldc + j] : 0.f;
}

/* C = SiLU(C), HardSwish(C) or GELU(C) over m x n as their ops compute them (DD_SGEMM_SILU,
 * DD_SGEMM_HARDSWISH, DD_SGEMM_GELU). */
static void act_rows(int64_t m, int64_t n, float *c, int64_t ldc, int accumulate) {
  int act = dd_sgemm_act(accumulate);
  for (int64_t i = 0; i < m && act; i++) dd_act_rows(c + i * ldc, n, act, 0);
}

/* The AVX-512 kernels' register tile: MR rows by NR columns of C. */
#define MR 8
#define NR 32

#ifdef DD_AVX512_KERNELS

#define KC 256
/* Blocks of NR columns packed together: the pack is PANEL x 32 KiB on the stack. */
#ifndef PANEL
#define PANEL 4
#endif
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 8
#endif

/* INIT_CBIAS: bias per column, bias[0..NR) the block's own */
enum { INIT_ZERO, INIT_BIAS, INIT_LOAD, INIT_CBIAS, INIT_RELU = 4 /* or'ed: max(0, C) at the store */,
       INIT_SILU = 8 /* or'ed: C sigmoid(C) at the store */,
       INIT_HSWISH = 16 /* or'ed: HardSwish(C) at the store */,
       INIT_GELU = 32 /* or'ed: GELU(C) at the store */ };

/* rows x w (w <= NR: masks m0, m1) of C from A and the packed block b (kc x NR). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void tile(const int rows, int64_t kc,
                                                       const float *a, int64_t ars,
                                                       int64_t acs, const float *b, float *c,
                                                       int64_t ldc, int init,
                                                       const float *bias, __mmask16 m0,
                                                       __mmask16 m1, const float *pf,
                                                       const float *radd) {
  __m512 c0[MR], c1[MR];
  int relu = init & INIT_RELU, silu = init & INIT_SILU, hswish = init & INIT_HSWISH,
      gelu = init & INIT_GELU;
  init &= ~(INIT_RELU | INIT_SILU | INIT_HSWISH | INIT_GELU);
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++) {
    if (init == INIT_LOAD) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    } else if (init == INIT_CBIAS) {
      c0[r] = _mm512_maskz_loadu_ps(m0, bias);
      c1[r] = _mm512_maskz_loadu_ps(m1, bias + 16);
    } else {
      c0[r] = c1[r] = init == INIT_BIAS ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b + k * NR);
    __m512 b1 = _mm512_load_ps(b + k * NR + 16);
    const float *ak = a + k * acs;
    if (pf) { /* the next packed block's row k, into L2 (into L1 it would evict this one) */
      _mm_prefetch((const char *)(pf + k * NR), _MM_HINT_T1);
      _mm_prefetch((const char *)(pf + k * NR + 16), _MM_HINT_T1);
    }
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
      __m512 av = _mm512_set1_ps(ak[r * ars]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  /* the activation row by row as it is stored, the accumulators staying in registers (a
   * separate loop over all rows for each activation had GCC spill them to the stack and read
   * them back: 15% of a 16 -> 96 convolution with SiLU on a 112 x 112 plane) */
  const __m512 zero = _mm512_setzero_ps(); /* max_ps returns this operand for NaN and -0 */
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++) {
    __m512 v0 = c0[r], v1 = c1[r];
    if (relu) {
      v0 = _mm512_max_ps(v0, zero);
      v1 = _mm512_max_ps(v1, zero);
    }
    if (silu) {
      v0 = dd_sigmoid16(v0, 1);
      v1 = dd_sigmoid16(v1, 1);
    }
    if (hswish) {
      v0 = dd_hardswish16(v0);
      v1 = dd_hardswish16(v1);
    }
    if (gelu) {
      v0 = dd_gelu16(v0);
      v1 = dd_gelu16(v1);
    }
    if (radd) { /* the residual, last (dd_sgemm_scaled_add) */
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, radd + r * ldc));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, radd + r * ldc + 16));
    }
    _mm512_mask_storeu_ps(c + r * ldc, m0, v0);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, v1);
  }
}

/* Masks of the first w (<= NR) of a block's 32 columns, 16 per half. */
static inline DD_TARGET_AVX512 void block_masks(int64_t w, __mmask16 *m0, __mmask16 *m1) {
  *m0 = (__mmask16)(w >= 16 ? 0xffff : (1u << w) - 1);
  *m1 = (__mmask16)(w >= 32 ? 0xffff : w > 16 ? (1u << (w - 16)) - 1 : 0);
}

/* All rows of C's columns [0, w), w <= NR, from the packed kc x NR block bk; with pf, the
 * first row tile prefetches the kc x NR block there into L2 as it goes. */
DD_TARGET_AVX512 static void rows_of_block(int64_t m, int64_t w, int64_t kc, const float *a,
                                           int64_t ars, int64_t acs, const float *bk, float *c,
                                           int64_t ldc, int init, const float *bias,
                                           const float *pf, const float *radd) {
  __mmask16 m0, m1;
  block_masks(w, &m0, &m1);
  for (int64_t i = 0; i < m; i += MR) {
    const float *ai = a + i * ars, *ri = radd ? radd + i * ldc : NULL;
    float *ci = c + i * ldc;
    const float *bi =
        bias && (init & ~(INIT_RELU | INIT_SILU | INIT_HSWISH | INIT_GELU)) == INIT_BIAS ? bias + i
                                                                                       : bias;
    switch (m - i < MR ? (int)(m - i) : MR) {
      case 8: tile(8, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      case 7: tile(7, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      case 6: tile(6, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      case 5: tile(5, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      case 4: tile(4, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      case 3: tile(3, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      case 2: tile(2, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
      default: tile(1, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1, i ? NULL : pf, ri); break;
    }
  }
}

/* The pack of rows [k0, k0 + kc) of B's columns [0, w) (nb blocks of NR, columns past w zero)
 * when B is stored transposed (DD_SGEMM_TRANS_B: B[q][j] = b[j * ldb + q]): 16 x 16 blocks
 * of b, each 16 runs of 16 floats, transposed in registers into 16 rows of the pack. */
DD_TARGET_AVX512 static void pack_transposed(const float *b, int64_t ldb, int64_t k0,
                                             int64_t kc, int64_t w, int64_t nb, float *pack) {
  for (int64_t q0 = 0; q0 < kc; q0 += 16) {
    __mmask16 qm = (__mmask16)(kc - q0 >= 16 ? 0xffff : (1u << (kc - q0)) - 1);
    int rows = kc - q0 < 16 ? (int)(kc - q0) : 16;
    for (int64_t j0 = 0; j0 < nb * NR; j0 += 16) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; t++)
        r[t] = j0 + t < w ? _mm512_maskz_loadu_ps(qm, b + (j0 + t) * ldb + k0 + q0)
                          : _mm512_setzero_ps();
      dd_transpose16(r); /* r[t]: B's row k0 + q0 + t, columns j0 .. j0 + 15 */
      float *dst = pack + ((j0 / NR) * kc + q0) * NR + j0 % NR;
      for (int t = 0; t < rows; t++) _mm512_store_ps(dst + t * NR, r[t]);
    }
  }
}

/* Columns [0, w) of C, w <= PANEL * NR: each KC rows of B are packed for the whole panel at
 * once, reading every row of B as one run of w floats (the hardware prefetchers follow a few
 * long runs, not KC short ones a page apart), then each 32-column block of the pack meets
 * every row of A while it is in L1.  With `packed` (dd_sgemm_pack's layout, at the panel's
 * first block of the whole matrix's `npad` columns) B was packed before: its blocks are read
 * from there. */
DD_TARGET_AVX512 static void column_panel(int64_t m, int64_t w, int64_t k, const float *a,
                                          int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                          float *c, int64_t ldc, int accumulate,
                                          const float *bias, const float *packed,
                                          int64_t npad, int64_t jb0, const float *bscale,
                                          const float *radd) {
  float pack[PANEL * KC * NR] __attribute__((aligned(64)));
  int64_t nb = (w + NR - 1) / NR;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    int64_t kc = k - k0 < KC ? k - k0 : KC;
    int init = k0 > 0 || (accumulate & DD_SGEMM_ACCUMULATE) ? INIT_LOAD
               : bias ? (accumulate & DD_SGEMM_COL_BIAS ? INIT_CBIAS : INIT_BIAS)
                      : INIT_ZERO;
    if ((accumulate & DD_SGEMM_RELU) && k0 + kc >= k) init |= INIT_RELU;
    if ((accumulate & DD_SGEMM_SILU) && k0 + kc >= k) init |= INIT_SILU;
    if ((accumulate & DD_SGEMM_HARDSWISH) && k0 + kc >= k) init |= INIT_HSWISH;
    if ((accumulate & DD_SGEMM_GELU) && k0 + kc >= k) init |= INIT_GELU;
    const float *bk = pack;
    if (packed) {
      bk = packed + k0 * npad + jb0 * kc * NR;
    } else if (accumulate & DD_SGEMM_TRANS_B) {
      pack_transposed(b, ldb, k0, kc, w, nb, pack);
    } else if (ldb == NR && w == NR && !((uintptr_t)b & 63) && !bscale) {
      bk = b + k0 * ldb; /* already a packed block */
    } else {
      for (int64_t kk = 0; kk < kc; kk++) {
        const float *src = b + (k0 + kk) * ldb;
        /* the row PREFETCH_ROWS ahead (this panel's columns of it, one line in 16 floats): the
         * rows are ldb apart, a stride the hardware follows late, and a product with few
         * rows (a transformer's last stage: 16 tokens, 9 MB of weights) waits on them */
        if (kk + PREFETCH_ROWS < k - k0)
          for (int64_t j = 0; j < w; j += 16)
            _mm_prefetch((const char *)(src + PREFETCH_ROWS * ldb + j), _MM_HINT_T0);
        if (bscale) { /* B's row scaled as it is packed */
          const __m512 sk = _mm512_set1_ps(bscale[k0 + kk]);
          for (int64_t jb = 0; jb < nb; jb++) {
            __mmask16 m0, m1;
            block_masks(w - jb * NR, &m0, &m1);
            float *dst = pack + (jb * kc + kk) * NR;
            _mm512_store_ps(dst, _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, src + jb * NR), sk));
            _mm512_store_ps(dst + 16,
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, src + jb * NR + 16), sk));
          }
          continue;
        }
        for (int64_t jb = 0; jb < nb; jb++) {
          __mmask16 m0, m1;
          block_masks(w - jb * NR, &m0, &m1);
          float *dst = pack + (jb * kc + kk) * NR;
          _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src + jb * NR));
          _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + jb * NR + 16));
        }
      }
    }
    for (int64_t jb = 0; jb < nb; jb++) {
      int64_t bw = w - jb * NR < NR ? w - jb * NR : NR;
      /* a pack made before comes from memory (a layer's weights, read once per forward):
       * the next block of it is fetched while this one is in use */
      const float *pf = NULL;
      if (packed && jb + 1 < nb) {
        pf = bk + (jb + 1) * kc * NR;
      } else if (packed && k0 + kc < k) { /* the panel's first block, the next KC rows */
        int64_t kn = k - k0 - kc < KC ? k - k0 - kc : KC;
        pf = packed + (k0 + kc) * npad + jb0 * kn * NR;
      } else if (packed && jb0 + nb < npad / NR) { /* the next panel's first block */
        pf = packed + (jb0 + nb) * (k < KC ? k : KC) * NR;
      }
      rows_of_block(m, bw, kc, a + k0 * acs, ars, acs, bk + jb * kc * NR, c + jb * NR, ldc, init,
                    bias && (accumulate & DD_SGEMM_COL_BIAS) ? bias + jb * NR : bias, pf,
                    radd && k0 + kc >= k ? radd + jb * NR : NULL);
    }
  }
}

/* Column blocks [b0, b1) of C (of n columns), a panel at a time, with denormal operands read as zero and denormal results
 * flushed to zero (MXCSR's DAZ and FTZ, on this thread for this call only; the caller's
 * setting is restored).  A denormal is below 1.2e-38: flushing one changes a sum by less
 * than that times the other factor.  Reading one costs the core a microcode assist of about a
 * hundred cycles per instruction: EfficientNet-B0's last 1x1 convolution, whose input is the
 * squeeze-excitation product x * sigmoid(s) with gates near 1e-40 in places, took 1.36 ms
 * with them and 0.27 ms without (one thread).  ONNX Runtime never meets them there (its
 * logistic clamps its input to [-18, 18]); TensorFlow flushes them on all its threads. */
DD_TARGET_AVX512 static void column_run(int64_t m, int64_t n, int64_t k, const float *a,
                                        int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                        float *c, int64_t ldc, int accumulate, const float *bias,
                                        const float *packed, int64_t b0, int64_t b1,
                                        const float *bscale, const float *radd) {
  unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15), DAZ (bit 6) */
  for (int64_t jb = b0; jb < b1; jb += PANEL) {
    int64_t j = jb * NR, j1 = (jb + PANEL < b1 ? jb + PANEL : b1) * NR;
    if (j1 > n) j1 = n;
    const float *bj = packed                          ? b
                      : accumulate & DD_SGEMM_TRANS_B ? b + j * ldb
                                                      : b + j;
    column_panel(m, j1 - j, k, a, ars, acs, bj, ldb, c + j, ldc, accumulate,
                 bias && (accumulate & DD_SGEMM_COL_BIAS) ? bias + j : bias, packed,
                 (n + NR - 1) / NR * NR, jb, bscale, radd ? radd + j : NULL);
  }
  _mm_setcsr(csr);
}

/* C's one column (n == 1) with A's rows and B's column contiguous (acs == 1, ldb == 1): each
 * C[i] a dot product of A's row i with B in 16 lanes (four rows at a time sharing B's loads),
 * the lanes added by _mm512_reduce_add_ps, then the start value (C, the bias or 0) added.
 * The tiles would spend a 32-column block on the one column: a squeeze-excitation's 1x1
 * convolutions on a 1x1 plane (1152 x 48 in EfficientNet-B0) took 60-70 us that way, 2 us
 * this way.  Denormals are flushed as in column_run. */
DD_TARGET_AVX512 static void one_column(int64_t m, int64_t k, const float *a, int64_t ars,
                                        const float *b, float *c, int64_t ldc, int accumulate,
                                        const float *bias, const float *bscale,
                                        const float *radd) {
  unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u);
  for (int64_t i = 0; i < m; i += 4) {
    int rows = m - i < 4 ? (int)(m - i) : 4;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int64_t q = 0; q < k; q += 16) {
      __mmask16 mk = (__mmask16)(k - q >= 16 ? 0xffff : (1u << (k - q)) - 1);
      __m512 bv = _mm512_maskz_loadu_ps(mk, b + q);
      if (bscale) bv = _mm512_mul_ps(bv, _mm512_maskz_loadu_ps(mk, bscale + q));
      for (int r = 0; r < rows; r++)
        acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + (i + r) * ars + q), bv, acc[r]);
    }
    for (int r = 0; r < rows; r++) {
      float *e = c + (i + r) * ldc;
      float init = accumulate & DD_SGEMM_ACCUMULATE ? *e
                   : !bias                          ? 0.f
                   : accumulate & DD_SGEMM_COL_BIAS ? bias[0]
                                                    : bias[i + r];
      float v = init + _mm512_reduce_add_ps(acc[r]);
      if (accumulate & DD_SGEMM_SILU) v = _mm512_cvtss_f32(dd_sigmoid16(_mm512_set1_ps(v), 1));
      if (accumulate & DD_SGEMM_HARDSWISH) v = _mm512_cvtss_f32(dd_hardswish16(_mm512_set1_ps(v)));
      if (accumulate & DD_SGEMM_GELU) v = _mm512_cvtss_f32(dd_gelu16(_mm512_set1_ps(v)));
      if (accumulate & DD_SGEMM_RELU) v = v > 0.f ? v : 0.f;
      *e = radd ? v + radd[(i + r) * ldc] : v;
    }
  }
  _mm_setcsr(csr);
}

DD_TARGET_AVX512 static void sgemm_avx512(int64_t m, int64_t n, int64_t k, const float *a,
                                          int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                          float *c, int64_t ldc, int accumulate, const float *bias,
                                          int parallel, const float *packed,
                                          const float *bscale, const float *radd) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m && !(accumulate & DD_SGEMM_ACCUMULATE); i++)
      for (int64_t j = 0; j < n; j++)
        c[i * ldc + j] = !bias ? 0.f : accumulate & DD_SGEMM_COL_BIAS ? bias[j] : bias[i];
    if (accumulate & DD_SGEMM_RELU) relu_rows(m, n, c, ldc);
    act_rows(m, n, c, ldc, accumulate);
    for (int64_t i = 0; i < m && radd; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] += radd[i * ldc + j];
    return;
  }
  /* (B's one column is b[0 .. k) when stored transposed, whatever ldb) */
  if (n == 1 && acs == 1 && (ldb == 1 || (accumulate & DD_SGEMM_TRANS_B)) && !packed &&
      !(accumulate & DD_SGEMM_EXACT)) {
    one_column(m, k, a, ars, b, c, ldc, accumulate, bias, bscale, radd);
    return;
  }
  int64_t blocks = (n + NR - 1) / NR, tiles = (m + MR - 1) / MR;
  if (!parallel || (blocks == 1 && tiles == 1) || m * n * k <= 4 * DD_PAR_MIN) {
    column_run(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, packed, 0, blocks,
               bscale, radd);
    return;
  }
  /* Each thread takes one contiguous run of column blocks (balanced to a block) or, when that
   * leaves the busiest thread more MR x NR tiles, one run of MR-row tiles over every column:
   * a 7x7 plane's 49 columns are 2 blocks, 32 and 17 wide, which 2 threads share 65:35 by
   * columns and evenly by rows (each thread then packs all of B, a small part of the work).
   * Each element of C gets the same operations either way. */
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (dd_sgemm_splits_rows(m, n, nt)) {
      int64_t i0 = tiles * t / nt * MR, i1 = tiles * (t + 1) / nt * MR;
      if (i1 > m) i1 = m;
      if (i0 < i1)
        column_run(i1 - i0, n, k, a + i0 * ars, ars, acs, b, ldb, c + i0 * ldc, ldc,
                   accumulate, bias && !(accumulate & DD_SGEMM_COL_BIAS) ? bias + i0 : bias,
                   packed, 0, blocks, bscale, radd ? radd + i0 * ldc : NULL);
    } else {
      column_run(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, packed,
                 blocks * t / nt, blocks * (t + 1) / nt, bscale, radd);
    }
  }
}

#endif

int dd_sgemm_splits_rows(int64_t m, int64_t n, int64_t nt) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx2()) return dd_sgemm_avx2_splits_rows(m, n, nt);
#endif
  int64_t blocks = (n + NR - 1) / NR, tiles = (m + MR - 1) / MR;
  return (tiles + nt - 1) / nt * blocks < (blocks + nt - 1) / nt * tiles;
}

#ifdef DD_AVX512_KERNELS
/* B (k x n) in the layout column_panel packs it to, for the whole matrix: for each KC rows
 * k0 (kc of them), for each block of NR columns jb, kc x NR floats (columns past n zero), at
 * pack + k0 * npad + jb * kc * NR with npad = n rounded up to NR.  With tb, B(q, j) is
 * b[j * ldb + q] (stored transposed), gathered element by element (once per plan). */
/* pack_b's block jb of rows [k0, k0 + kc).  A function of its own: Clang does not give the
 * outlined body of an OpenMP loop its function's target, and refuses zmm values there on a
 * build without -mavx512f (activation.c's act16_block says more). */
DD_TARGET_AVX512 static void pack_b_block(int64_t k0, int64_t kc, int64_t n, int64_t npad,
                                          int64_t jb, const float *b, int64_t ldb, int tb,
                                          float *pack) {
  __mmask16 m0, m1;
  block_masks(n - jb * NR, &m0, &m1);
  for (int64_t kk = 0; kk < kc; kk++) {
    const float *src = b + (k0 + kk) * ldb + jb * NR;
    float *dst = pack + k0 * npad + (jb * kc + kk) * NR;
    if (tb) {
      for (int64_t jj = 0; jj < NR; jj++)
        dst[jj] = jb * NR + jj < n ? b[(jb * NR + jj) * ldb + k0 + kk] : 0.f;
      continue;
    }
    _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src));
    _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + 16));
  }
}

DD_TARGET_AVX512 static void pack_b(int64_t k, int64_t n, const float *b, int64_t ldb, int tb,
                                    float *pack, int parallel) {
  int64_t npad = (n + NR - 1) / NR * NR;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    int64_t kc = k - k0 < KC ? k - k0 : KC;
#pragma omp parallel for schedule(static) if (parallel && kc * n > DD_PAR_MIN)
    for (int64_t jb = 0; jb < npad / NR; jb++) pack_b_block(k0, kc, n, npad, jb, b, ldb, tb, pack);
  }
}

#endif

int64_t dd_sgemm_pack_floats(int64_t k, int64_t n) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512() && k > 0 && n > 0) return (n + NR - 1) / NR * NR * k;
  if (dd_kernels_avx2()) return dd_sgemm_avx2_pack_floats(k, n);
#endif
  (void)k;
  (void)n;
  return 0;
}

void dd_sgemm_pack(int64_t k, int64_t n, const float *b, int64_t ldb, int tb, float *pack,
                   int parallel) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx2() && dd_sgemm_pack_floats(k, n) > 0)
    dd_sgemm_avx2_pack(k, n, b, ldb, tb, pack, parallel);
  else if (dd_sgemm_pack_floats(k, n) > 0)
    pack_b(k, n, b, ldb, tb, pack, parallel);
#else
  (void)k, (void)n, (void)b, (void)ldb, (void)tb, (void)pack, (void)parallel;
#endif
}

float *dd_sgemm_pack_new(int64_t k, int64_t n, const float *b, int64_t ldb, int tb,
                         int parallel) {
  int64_t floats = dd_sgemm_pack_floats(k, n); /* n padded to 32: whole 64-byte lines */
  float *pack = floats > 0 ? aligned_alloc(64, (size_t)floats * sizeof(float)) : NULL;
  if (pack) dd_sgemm_pack(k, n, b, ldb, tb, pack, parallel);
  return pack;
}

void dd_sgemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                     const float *pack, float *c, int64_t ldc, int accumulate, const float *bias,
                     int parallel, const float *radd) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx2()) {
    dd_sgemm_avx2(m, n, k, a, ars, acs, NULL, 0, c, ldc, accumulate, bias, parallel, pack);
    for (int64_t i = 0; i < m && radd; i++) /* the residual, once C is complete */
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] += radd[i * ldc + j];
    return;
  }
  sgemm_avx512(m, n, k, a, ars, acs, NULL, 0, c, ldc, accumulate, bias, parallel, pack, NULL,
               radd);
#else
  (void)m, (void)n, (void)k, (void)a, (void)ars, (void)acs, (void)pack, (void)c, (void)ldc;
  (void)accumulate, (void)bias, (void)parallel, (void)radd;
#endif
}

static void product(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                    const float *b, int64_t ldb, int tb, float *c, int64_t ldc);

typedef float vf8 __attribute__((vector_size(32)));

/* Rows [i0, i0 + 4) by columns [j0, j0 + 16) of product_in_order with B's rows contiguous
 * (bjs 1): the 4 x 16 sums in registers over the whole of k, each element c = c + a * b in k
 * order as below, with one load of B's 16 floats per 4 rows and no load or store of C inside
 * the loop (the loop below loads and stores C's row at every q: on the generic path, exact
 * plans, classify's among them, ran a whole GoogLeNet through it, and a fuzzing build, whose
 * sanitizer checks every access, took more than 80 s for one `dream class`). */
static void in_order_tile(int64_t k, const float *a, int64_t ars, int64_t acs, const float *b,
                          int64_t bqs, float *c, int64_t ldc) {
  vf8 acc[4][2];
  for (int r = 0; r < 4; r++) {
    memcpy(&acc[r][0], c + r * ldc, sizeof acc[r][0]);
    memcpy(&acc[r][1], c + r * ldc + 8, sizeof acc[r][1]);
  }
  for (int64_t q = 0; q < k; q++) {
    vf8 b0, b1;
    memcpy(&b0, b + q * bqs, sizeof b0);
    memcpy(&b1, b + q * bqs + 8, sizeof b1);
    for (int r = 0; r < 4; r++) {
      const float av = a[r * ars + q * acs];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  for (int r = 0; r < 4; r++) {
    memcpy(c + r * ldc, &acc[r][0], sizeof acc[r][0]);
    memcpy(c + r * ldc + 8, &acc[r][1], sizeof acc[r][1]);
  }
}

/* C += A B, each element by c += a * b in k order (DD_SGEMM_EXACT): the same for every column,
 * tiles and edges alike; B(q, j) = b[q * bqs + j * bjs]. */
static void product_in_order(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                             int64_t acs, const float *b, int64_t bqs, int64_t bjs, float *c,
                             int64_t ldc, int parallel) {
  const int64_t mt = bjs == 1 ? m / 4 * 4 : 0, nt = bjs == 1 ? n / 16 * 16 : 0;
#pragma omp parallel for if (parallel && m * n * k > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < m; i++) {
    if (i < mt && i % 4 == 0) /* rows i .. i + 3 of the tiles (the task of row i) */
      for (int64_t j = 0; j < nt; j += 16)
        in_order_tile(k, a + i * ars, ars, acs, b + j, bqs, c + i * ldc + j, ldc);
    int64_t j0 = i < mt ? nt : 0; /* the columns no tile covers */
    for (int64_t q = 0; q < k && j0 < n; q++) {
      float av = a[i * ars + q * acs];
      const float *bq = b + q * bqs;
      float *ci = c + i * ldc;
#pragma omp simd
      for (int64_t j = j0; j < n; j++) ci[j] += av * bq[j * bjs];
    }
  }
}

/* Columns of C per cblas_sgemm call on the generic path: the product and then its activation
 * a panel at a time, the panel still in L2 when the activation reads it (96 rows x 512
 * columns: 192 KiB), rather than the whole C through memory twice.  Every product is split so,
 * with an activation or without: cblas_sgemm's sums depend on the shape it is given, and a
 * plan that folds a Relu into its product must give the floats of one that does not
 * (graph/reuse_matches_on_googlenet). */
#define GENERIC_COLS 512

static void sgemm_generic(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel) {
  if (m <= 0 || n <= 0) return;
  int tb = (accumulate & DD_SGEMM_TRANS_B) != 0;
  if (n > GENERIC_COLS && !(accumulate & DD_SGEMM_EXACT)) {
    /* each element's sum is cblas_sgemm's on its panel, its activation then the same */
    for (int64_t j = 0; j < n; j += GENERIC_COLS) {
      int64_t w = n - j < GENERIC_COLS ? n - j : GENERIC_COLS;
      sgemm_generic(m, w, k, a, ars, acs, tb ? b + j * ldb : b + j, ldb, c + j, ldc, accumulate,
                    bias && (accumulate & DD_SGEMM_COL_BIAS) ? bias + j : bias, parallel);
    }
    return;
  }
  if (!(accumulate & DD_SGEMM_ACCUMULATE))
    for (int64_t i = 0; i < m; i++) { /* the start value, row by row (vectorized) */
      float *ci = c + i * ldc;
      if (bias && (accumulate & DD_SGEMM_COL_BIAS)) {
        memcpy(ci, bias, (size_t)n * sizeof *ci);
      } else {
        const float v = bias ? bias[i] : 0.f;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) ci[j] = v;
      }
    }
  if (k > 0 && (accumulate & DD_SGEMM_EXACT))
    product_in_order(m, n, k, a, ars, acs, b, tb ? 1 : ldb, tb ? ldb : 1, c, ldc, parallel);
  else if (k > 0)
    product(m, n, k, a, ars, acs, b, ldb, tb, c, ldc);
  if (accumulate & DD_SGEMM_RELU) relu_rows(m, n, c, ldc);
  act_rows(m, n, c, ldc, accumulate);
}

/* C += A B in cblas_sgemm, or a plain loop for strides it cannot express; with tb, B stored
 * transposed. */
static void product(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                    const float *b, int64_t ldb, int tb, float *c, int64_t ldc) {
  /* A(i, q) = a[i * ars + q * acs] as cblas sees it: row-major with lda = ars (acs == 1), or
   * the transpose of a row-major k x m with lda = acs (ars == 1).  A stride that never moves
   * (one row, or one column) can be anything here, but cblas wants lda >= the row length. */
  int64_t lda;
  CBLAS_TRANSPOSE ta;
  if (acs == 1 && (m == 1 || ars >= k)) {
    ta = CblasNoTrans;
    lda = m == 1 ? k : ars;
  } else if (ars == 1 && (k == 1 || acs >= m)) {
    ta = CblasTrans;
    lda = k == 1 ? m : acs;
  } else { /* strides cblas cannot express */
    for (int64_t i = 0; i < m; i++)
      for (int64_t q = 0; q < k; q++) {
        float av = a[i * ars + q * acs];
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] += av * b[tb ? j * ldb + q : q * ldb + j];
      }
    return;
  }
  cblas_sgemm(CblasRowMajor, ta, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.f, a,
              (int)lda, b, (int)ldb, 1.f, c, (int)ldc);
}

void dd_sgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512()) {
    sgemm_avx512(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel, NULL, NULL,
                 NULL);
    return;
  }
  if (dd_kernels_avx2()) {
    dd_sgemm_avx2(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel, NULL);
    return;
  }
#endif
  sgemm_generic(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel);
}

int dd_sgemm_scaled_add(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                        int64_t acs, const float *b, int64_t ldb, const float *bscale, float *c,
                        int64_t ldc, int accumulate, const float *bias, int parallel,
                        const float *radd) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512() && !(accumulate & (DD_SGEMM_EXACT | DD_SGEMM_TRANS_B))) {
    sgemm_avx512(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel, NULL, bscale,
                 radd);
    return 1;
  }
#endif
  (void)m, (void)n, (void)k, (void)a, (void)ars, (void)acs, (void)b, (void)ldb, (void)bscale;
  (void)c, (void)ldc, (void)accumulate, (void)bias, (void)parallel, (void)radd;
  return 0;
}

int dd_sgemm_scaled(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                    const float *b, int64_t ldb, const float *bscale, float *c, int64_t ldc,
                    int accumulate, const float *bias, int parallel) {
  return dd_sgemm_scaled_add(m, n, k, a, ars, acs, b, ldb, bscale, c, ldc, accumulate, bias,
                             parallel, NULL);
}
