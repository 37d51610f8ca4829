/* A 16 x 16 float transpose in AVX-512 registers, for the kernels that turn planes into
 * vector lanes and back (ops/depthwise.c), the transposing gathers (ops/rows.c) and the
 * convolutions' transposed products and im2col (ops/conv.c); and 16 floats widened to two
 * vectors of 8 doubles, for the sums those kernels and LayerNorm keep in double
 * (ops/depthwise.c, ops/norm.c). */
#ifndef DREAM_OPS_TRANSPOSE16_H
#define DREAM_OPS_TRANSPOSE16_H

#include "ops/cpu.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>

/* lo = lanes 0-7 of v as doubles, hi = lanes 8-15 (exact: every float is a double). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void dd_widen16(__m512 v,
                                                                             __m512d *lo,
                                                                             __m512d *hi) {
  *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* r[j] (j < 16) becomes column j of the 16 x 16 matrix whose rows were r[0..16): unpacks of
 * pairs, then of 64-bit pairs, then two rounds of 128-bit lane shuffles (64 shuffles). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void dd_transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  /* u[4 g + c], lane L: rows 4g .. 4g+3 of column 4L + c */
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    /* v: lanes 0 and 2 of row groups 0, 1 (2, 3 in v2); w: lanes 1 and 3 */
    __m512 v = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
    __m512 w = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
    __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    __m512 w2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_f32x4(v, v2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(w, w2, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v, v2, 0xdd);
    r[12 + c] = _mm512_shuffle_f32x4(w, w2, 0xdd);
  }
}

/* d (cols x rows, row stride ld) = the transpose of s (rows x cols, row stride ls), rows and
 * cols at most 16: masked loads (rows past `rows` zero), dd_transpose16, masked stores; with
 * add (d's layout), d = add + the transpose, each element by one float addition. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void dd_transpose16_block(
    const float *s, int64_t ls, float *d, int64_t ld, int64_t rows, int64_t cols,
    const float *add) {
  const __mmask16 cm = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
  const __mmask16 rm = (__mmask16)(rows >= 16 ? 0xffff : (1u << rows) - 1);
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, s + i * ls) : _mm512_setzero_ps();
  dd_transpose16(r); /* r[j]: column j of s */
#pragma GCC unroll 16
  for (int j = 0; j < 16; j++)
    if (j < cols)
      _mm512_mask_storeu_ps(d + j * ld, rm,
                            add ? _mm512_add_ps(r[j], _mm512_maskz_loadu_ps(rm, add + j * ld))
                                : r[j]);
}
#endif

#endif
