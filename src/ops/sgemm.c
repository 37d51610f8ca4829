/* dd_sgemm (see sgemm.h).  With AVX-512: an 8 x 32 register tile (16 accumulators), B's 32
 * columns loaded once per k and A broadcast from memory, 256 values of k at a time.  That
 * 256 x 32 block of B is first copied to a contiguous buffer on the stack (32 KiB, in L1)
 * while all the rows of A pass over it: read in place, its rows would sit one page apart
 * for wide images and every k would miss the TLB.  Elsewhere: cblas_sgemm. */
#include "ops/sgemm.h"

#include <cblas.h>
#include <stdint.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "ops/common.h"

#ifdef __AVX512F__

#define MR 8
#define NR 32
#define KC 256

enum { INIT_ZERO, INIT_BIAS, INIT_LOAD };

/* rows x w (w <= NR: masks m0, m1) of C from A and the packed block b (kc x NR). */
static inline __attribute__((always_inline)) void tile(const int rows, int64_t kc,
                                                       const float *a, int64_t ars,
                                                       int64_t acs, const float *b, float *c,
                                                       int64_t ldc, int init,
                                                       const float *bias, __mmask16 m0,
                                                       __mmask16 m1) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++) {
    if (init == INIT_LOAD) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    } else {
      c0[r] = c1[r] = init == INIT_BIAS ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b + k * NR);
    __m512 b1 = _mm512_load_ps(b + k * NR + 16);
    const float *ak = a + k * acs;
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
      __m512 av = _mm512_set1_ps(ak[r * ars]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

/* Columns [j, j + w) of C, w <= NR. */
static void column_block(int64_t m, int64_t w, int64_t k, const float *a, int64_t ars,
                         int64_t acs, const float *b, int64_t ldb, float *c, int64_t ldc,
                         int accumulate, const float *bias) {
  __mmask16 m0 = (__mmask16)(w >= 16 ? 0xffff : (1u << w) - 1);
  __mmask16 m1 = (__mmask16)(w >= 32 ? 0xffff : w > 16 ? (1u << (w - 16)) - 1 : 0);
  float pack[KC * NR] __attribute__((aligned(64)));
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    int64_t kc = k - k0 < KC ? k - k0 : KC;
    int init = k0 > 0 || accumulate ? INIT_LOAD : bias ? INIT_BIAS : INIT_ZERO;
    const float *bk = pack;
    if (ldb == NR && w == NR && !((uintptr_t)b & 63)) {
      bk = b + k0 * ldb; /* already a packed block */
    } else {
      for (int64_t kk = 0; kk < kc; kk++) {
        const float *src = b + (k0 + kk) * ldb;
        _mm512_store_ps(pack + kk * NR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(pack + kk * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
    }
    for (int64_t i = 0; i < m; i += MR) {
      const float *ai = a + i * ars + k0 * acs;
      float *ci = c + i * ldc;
      const float *bi = bias ? bias + i : NULL;
      switch (m - i < MR ? (int)(m - i) : MR) {
        case 8: tile(8, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        case 7: tile(7, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        case 6: tile(6, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        case 5: tile(5, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        case 4: tile(4, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        case 3: tile(3, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        case 2: tile(2, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
        default: tile(1, kc, ai, ars, acs, bk, ci, ldc, init, bi, m0, m1); break;
      }
    }
  }
}

void dd_sgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m && !accumulate; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = bias ? bias[i] : 0.f;
    return;
  }
  int64_t blocks = (n + NR - 1) / NR;
#pragma omp parallel for if (parallel && blocks > 1 && m * n * k > 4 * DD_PAR_MIN) \
    schedule(static)
  for (int64_t jb = 0; jb < blocks; jb++) {
    int64_t j = jb * NR, w = n - j < NR ? n - j : NR;
    column_block(m, w, k, a, ars, acs, b + j, ldb, c + j, ldc, accumulate, bias);
  }
}

#else

void dd_sgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel) {
  (void)parallel;
  if (m <= 0 || n <= 0) return;
  if (!accumulate)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = bias ? bias[i] : 0.f;
  if (k <= 0) return;
  int trans = acs != 1;
  cblas_sgemm(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, CblasNoTrans, (int)m, (int)n,
              (int)k, 1.f, a, (int)(trans ? acs : ars), b, (int)ldb, 1.f, c, (int)ldc);
}

#endif
