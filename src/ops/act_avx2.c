/* Sigmoid, SiLU and GELU on the AVX2 path (ops/cpu.h): the AVX-512 kernels' formulas (ops/act.h:
 * exp by a degree-5 polynomial on a one-step reduction, Phi by Numerical Recipes' erfc fit)
 * in 8-float registers, with a division where those take a reciprocal estimate (AVX2's is
 * not the same float on every CPU), four registers at a time.
 *
 * Four at a time because each formula is one long chain of dependent operations (a division
 * and some twenty multiply-adds for GELU): the generic loops, one register per step, kept the
 * core waiting on that chain, at 1.66 ns a GELU and 0.67 ns a SiLU on a Zen 3.  Four
 * independent chains written step by step side by side fill the gaps.  Every element goes
 * through the same vector code, the last partial group through masked loads and stores, so
 * an element's float does not depend on its place. */
#include "ops/act.h"

#ifdef DD_AVX512_KERNELS

#include <immintrin.h>

#include "ops/common.h"

#define U 4 /* registers per step */

#define ALWAYS static inline __attribute__((always_inline)) DD_TARGET_AVX2

/* exp(-s) for |s| <= ln2 / 2: ops/act.h's dd_exp_reduced16. */
ALWAYS __m256 exp_reduced8(__m256 s) {
  __m256 p = _mm256_set1_ps(DD_EXP_REDUCED_C5);
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(DD_EXP_REDUCED_C4));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(DD_EXP_REDUCED_C3));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(DD_EXP_REDUCED_C2));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(DD_EXP_REDUCED_C1));
  return _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.f));
}

/* 2^n for integral n in [-126, 127], built in the exponent bits. */
ALWAYS __m256 pow2(__m256 n) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}

/* sigmoid(x), times x when `times_x` (SiLU), of U registers: ops/act.h's dd_sigmoid16 with a
 * division.  a = x clamped to [-87.3, 87.3] (the constant first: max and min return their
 * second operand for NaN, so NaN stays NaN); 0 below -87.3. */
ALWAYS void sigmoid8(__m256 x[U], int times_x) {
  __m256 a[U], n[U], d[U];
#pragma GCC unroll 4
  for (int u = 0; u < U; u++)
    a[u] = _mm256_min_ps(_mm256_set1_ps(87.3f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x[u]));
#pragma GCC unroll 4
  for (int u = 0; u < U; u++)
    n[u] = _mm256_round_ps(_mm256_mul_ps(a[u], _mm256_set1_ps(-1.44269504088896341f)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) /* -r */
    d[u] = exp_reduced8(_mm256_fmadd_ps(n[u], _mm256_set1_ps(0.693147180559945f), a[u]));
#pragma GCC unroll 4
  for (int u = 0; u < U; u++)
    d[u] = _mm256_add_ps(_mm256_mul_ps(d[u], pow2(n[u])), _mm256_set1_ps(1.f));
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) {
    __m256 q = _mm256_div_ps(_mm256_set1_ps(1.f), d[u]);
    __m256 keep = _mm256_cmp_ps(x[u], _mm256_set1_ps(-87.3f), _CMP_NLT_UQ);
    q = _mm256_and_ps(keep, q);
    x[u] = times_x ? _mm256_mul_ps(x[u], q) : q;
  }
}

/* exp(-a) for a >= 0, 0 above 87.3: ops/act.h's dd_exp_neg16. */
ALWAYS __m256 exp_neg8(__m256 a0) {
  const __m256 big = _mm256_cmp_ps(a0, _mm256_set1_ps(87.3f), _CMP_GT_OQ);
  const __m256 a = _mm256_min_ps(a0, _mm256_set1_ps(87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(-1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 s = _mm256_fmadd_ps(n, _mm256_set1_ps(0.693147180559945f), a);
  return _mm256_andnot_ps(big, _mm256_mul_ps(exp_reduced8(s), pow2(n)));
}

/* GELU, v Phi(v), of U registers: ops/act.h's dd_phi16 with a division for t. */
ALWAYS void gelu8(__m256 v[U]) {
  __m256 z[U], t[U], q[U];
  const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) {
    z[u] = _mm256_mul_ps(_mm256_and_ps(v[u], abs), _mm256_set1_ps(0.7071067811865476f));
    z[u] = _mm256_min_ps(z[u], _mm256_set1_ps(10.f));
  }
#pragma GCC unroll 4
  for (int u = 0; u < U; u++)
    t[u] = _mm256_div_ps(_mm256_set1_ps(1.f),
                         _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z[u], _mm256_set1_ps(1.f)));
  static const float c[] = {-0.82215223f, 1.48851587f,  -1.13520398f, 0.27886807f, -0.18628806f,
                            0.09678418f,  0.37409196f, 1.00002368f,  -1.26551223f};
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) q[u] = _mm256_set1_ps(0.17087277f);
#pragma GCC unroll 9
  for (int j = 0; j < 9; j++)
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) q[u] = _mm256_fmadd_ps(q[u], t[u], _mm256_set1_ps(c[j]));
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) {
    __m256 h = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), t[u]),
                             exp_neg8(_mm256_fmsub_ps(z[u], z[u], q[u])));
    __m256 pos = _mm256_cmp_ps(v[u], _mm256_setzero_ps(), _CMP_GE_OQ);
    __m256 phi = _mm256_blendv_ps(h, _mm256_sub_ps(_mm256_set1_ps(1.f), h), pos);
    v[u] = _mm256_mul_ps(v[u], phi);
  }
}

ALWAYS void act8(__m256 v[U], int act) {
  if (act == DD_ACT_SILU) sigmoid8(v, 1);
  else if (act == DD_ACT_SIGMOID) sigmoid8(v, 0);
  else gelu8(v);
}

/* y[i] = act(x[i]) for i in [i0, i1), act a constant where this is inlined. */
ALWAYS void act8_range(const float *x, float *y, int64_t i0, int64_t i1, int act) {
  int64_t i = i0;
  for (; i + 8 * U <= i1; i += 8 * U) {
    __m256 v[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) v[u] = _mm256_loadu_ps(x + i + 8 * u);
    act8(v, act);
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) _mm256_storeu_ps(y + i + 8 * u, v[u]);
  }
  if (i < i1) { /* the last partial group, masked (lanes past i1 read as 0, not stored) */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m[U];
    __m256 v[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
      int64_t left = i1 - i - 8 * u;
      m[u] = _mm256_cmpgt_epi32(_mm256_set1_epi32(left < 0 ? 0 : left > 8 ? 8 : (int)left), lane);
      v[u] = _mm256_maskload_ps(x + i + 8 * u, m[u]);
    }
    act8(v, act);
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) _mm256_maskstore_ps(y + i + 8 * u, m[u], v[u]);
  }
}

DD_TARGET_AVX2 static void act8_block(const float *x, float *y, int64_t i0, int64_t i1,
                                      int act) {
  if (act == DD_ACT_SILU) act8_range(x, y, i0, i1, DD_ACT_SILU);
  else if (act == DD_ACT_SIGMOID) act8_range(x, y, i0, i1, DD_ACT_SIGMOID);
  else if (act == DD_ACT_GELU) act8_range(x, y, i0, i1, DD_ACT_GELU);
}

void dd_act8_rows(const float *x, float *y, int64_t n, int act, int parallel) {
  if (!parallel || n <= DD_PAR_MIN) { /* no region, not even an idle one: dd_silu_rows */
    act8_block(x, y, 0, n, act);
    return;
  }
  const int64_t blocks = (n + 4095) / 4096;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; b++)
    act8_block(x, y, b * 4096, (b + 1) * 4096 < n ? (b + 1) * 4096 : n, act);
}

#endif
