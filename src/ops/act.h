/* The activations a producer applies to its output as it stores it, when the plan folds the
 * activation node into it (DD_OP_FOLD_RELU, DD_OP_FOLD_ACT): the codes its kernels take, and
 * the SiLU and HardSwish that their ops (ops/activation.c, ops/unary.c) and every folding
 * kernel compute alike, so that a folded activation gives the floats of the node it
 * replaces. */
#ifndef DREAM_OPS_ACT_H
#define DREAM_OPS_ACT_H

#include <stdint.h>

#include "ops/cpu.h"
#include "ops/sgemm.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

/* The plan's relu_out codes (plan/plan.h) too; DD_ACT_SIGMOID is the Sigmoid op's own, which
 * no plan folds. */
enum {
  DD_ACT_NONE = 0,
  DD_ACT_RELU = 1,
  DD_ACT_SILU = 2,
  DD_ACT_HARDSWISH = 3,
  DD_ACT_GELU = 4,
  DD_ACT_SIGMOID = 5
};

/* dd_sgemm's bits for the folded activation `act`: DD_SGEMM_RELU, _SILU, _HARDSWISH or _GELU,
 * 0 for none. */
static inline int dd_act_sgemm(int act) {
  return act == DD_ACT_RELU        ? DD_SGEMM_RELU
         : act == DD_ACT_SILU      ? DD_SGEMM_SILU
         : act == DD_ACT_HARDSWISH ? DD_SGEMM_HARDSWISH
         : act == DD_ACT_GELU      ? DD_SGEMM_GELU
                                   : 0;
}

/* The folded activation other than Relu that dd_sgemm's bits `accumulate` ask for
 * (DD_ACT_SILU, DD_ACT_HARDSWISH, DD_ACT_GELU), DD_ACT_NONE for none: dd_act_sgemm's
 * inverse, for the products that apply it after their sums. */
static inline int dd_sgemm_act(int accumulate) {
  return accumulate & DD_SGEMM_SILU        ? DD_ACT_SILU
         : accumulate & DD_SGEMM_HARDSWISH ? DD_ACT_HARDSWISH
         : accumulate & DD_SGEMM_GELU      ? DD_ACT_GELU
                                            : DD_ACT_NONE;
}

/* HardSwish's x * clamp(x / 6 + 1/2, 0, 1), as the HardSwish op computes it (a product, then
 * a sum: no fused multiply-add, C11 contracts none). */
#define DD_HARDSWISH_A (1.f / 6.f)
#define DD_HARDSWISH_B 0.5f

/* y = x * sigmoid(x) over n floats (y may be x), on the threads when `parallel`: the Silu
 * op's forward. */
void dd_silu_rows(const float *x, float *y, int64_t n, int parallel);
/* y = act(x) in place over n floats for act DD_ACT_SILU, DD_ACT_HARDSWISH or DD_ACT_GELU:
 * their ops' forwards (the activation a kernel left to a pass after it). */
void dd_act_rows(float *y, int64_t n, int act, int parallel);
/* y += r over n floats on the threads: a residual Add folded into the node before it
 * (DD_OP_FOLD_ADD) where that node's path cannot add it as it stores. */
void dd_add_rows(float *y, const float *r, int64_t n);
/* y = x Phi(x) over n floats (y may be x), on the threads when `parallel`: the Gelu op's
 * exact form (ops/unary.c). */
void dd_gelu_rows(const float *x, float *y, int64_t n, int parallel);

/* The coefficients of s^5 .. s^1 in dd_exp_reduced16 (below) and its AVX2 twin
 * (ops/act_avx2.c). */
#define DD_EXP_REDUCED_C5 (-8.290272122e-3f)
#define DD_EXP_REDUCED_C4 4.189816037e-2f
#define DD_EXP_REDUCED_C3 (-1.666763813e-1f)
#define DD_EXP_REDUCED_C2 4.999914784e-1f
#define DD_EXP_REDUCED_C1 (-9.999997063e-1f)

#ifdef DD_AVX512_KERNELS
/* exp(-s) of 16 lanes for |s| <= ln2 / 2 (a reduced argument): a degree-5 polynomial fitted
 * for relative error (tests/ref/fit_exp_poly.py: 0.77 ulp in exact arithmetic), written in s
 * = -r, so its odd coefficients are negated. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 __m512 dd_exp_reduced16(__m512 s) {
  __m512 p = _mm512_set1_ps(DD_EXP_REDUCED_C5);
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(DD_EXP_REDUCED_C4));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(DD_EXP_REDUCED_C3));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(DD_EXP_REDUCED_C2));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(DD_EXP_REDUCED_C1));
  return _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.f));
}

/* exp(-a) of 16 lanes, a >= 0 (or a rounding below), 0 above 87.3 (where it would leave the
 * normal floats): 2^n exp(r) with n = round(-a log2 e) and r = -a - n ln 2 in one fused
 * multiply-add (|n| <= 126, so ln 2's rounding moves r by at most 2.4e-7), exp(r) by
 * dd_exp_reduced16, 2^n by vscalefps.  Within 4.8 ulp (measured over 128M points: the most
 * near a = 87, from ln 2's rounding times n); 11 instructions (Cody and Waite's two-part
 * reduction and a degree-7 polynomial took 16). */
static inline DD_TARGET_AVX512 __m512 dd_exp_neg16(__m512 a0) {
  const __mmask16 big = _mm512_cmp_ps_mask(a0, _mm512_set1_ps(87.3f), _CMP_GT_OQ);
  const __m512 a = _mm512_min_ps(a0, _mm512_set1_ps(87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(-1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 s = _mm512_fmadd_ps(n, _mm512_set1_ps(0.693147180559945f), a);
  return _mm512_maskz_scalef_ps((__mmask16)~big, dd_exp_reduced16(s), n);
}

/* sigmoid(x) (times x when `times_x`: SiLU) of 16 lanes on the AVX-512 kernels, in 17
 * instructions (exp(-|x|) and the branch on the sign took 25, and a fifth of EfficientNet-B0's
 * forward pass was SiLU):
 * - a = x clamped to [-87.3, 87.3] by one vrangeps (sign of x, the smaller magnitude);
 * - e = exp(-a) as dd_exp_neg16 takes it (without its cap: a is capped already);
 * - 1 / (1 + e) by the reciprocal estimate and one Newton step instead of a division;
 * - 0 below -87.3 (where 1 + e would need a reciprocal below the normal floats), then the
 *   product by x, so that SiLU is x times the Sigmoid op's float, -0 and all.
 * Measured over 128M points of [-100, 100]: within 4.1 ulp of sigmoid where it is above 1e-8
 * (x > -18), 6.1 ulp down to x = -87; NaN stays NaN. */
static inline DD_TARGET_AVX512 __m512 dd_sigmoid16(__m512 x, int times_x) {
  const __m512 a = _mm512_range_ps(x, _mm512_set1_ps(87.3f), 0x02);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(-1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 s = _mm512_fmadd_ps(n, _mm512_set1_ps(0.693147180559945f), a); /* -r */
  const __m512 d =
      _mm512_add_ps(_mm512_scalef_ps(dd_exp_reduced16(s), n), _mm512_set1_ps(1.f));
  __m512 q = _mm512_rcp14_ps(d);
  q = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, q, _mm512_set1_ps(1.f)), q, q);
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ);
  const __m512 sg = _mm512_maskz_mov_ps(keep, q);
  return times_x ? _mm512_mul_ps(x, sg) : sg;
}

/* HardSwish of 16 lanes: the HardSwish op's operations (NaN stays NaN: both tests fail). */
static inline DD_TARGET_AVX512 __m512 dd_hardswish16(__m512 x) {
  const __m512 v = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(DD_HARDSWISH_A)),
                                 _mm512_set1_ps(DD_HARDSWISH_B));
  __m512 h = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v,
                                  _mm512_setzero_ps());
  h = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_set1_ps(1.f), _CMP_GT_OQ), h,
                           _mm512_set1_ps(1.f));
  return _mm512_mul_ps(x, h);
}

/* Phi(x) of 16 lanes: the steps of ops/unary.c's phi (erfc by Numerical Recipes' erfcc
 * polynomial in t = 1 / (1 + z / 2), z = |x| / sqrt 2), t by the reciprocal estimate and a
 * Newton step instead of the division; GELU is x Phi(x). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 __m512 dd_phi16(__m512 v) {
  __m512 z = _mm512_mul_ps(_mm512_abs_ps(v), _mm512_set1_ps(0.7071067811865476f));
  z = _mm512_min_ps(z, _mm512_set1_ps(10.f));
  const __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, _mm512_set1_ps(1.f));
  __m512 t = _mm512_rcp14_ps(d);
  t = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, t, _mm512_set1_ps(1.f)), t, t);
  __m512 q = _mm512_set1_ps(0.17087277f);
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-0.82215223f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.48851587f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.13520398f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.27886807f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-0.18628806f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.09678418f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.37409196f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.00002368f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.26551223f));
  const __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), t),
                                         dd_exp_neg16(_mm512_fmsub_ps(z, z, q)));
  const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mask_sub_ps(half_erfc, pos, _mm512_set1_ps(1.f), half_erfc);
}

static inline DD_TARGET_AVX512 __m512 dd_gelu16(__m512 v) { return _mm512_mul_ps(v, dd_phi16(v)); }

/* GELU's derivative Phi(v) + v phi(v) of 16 lanes, phi(v) = exp(-v^2 / 2) / sqrt(2 pi) with
 * v^2 / 2 capped at 88 (a NaN v stays NaN through the factor v): ops/unary.c's gelu_grad. */
static inline DD_TARGET_AVX512 __m512 dd_gelu_grad16(__m512 v) {
  const __m512 h = _mm512_min_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), v),
                                 _mm512_set1_ps(88.f));
  return _mm512_fmadd_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.3989422804014327f)),
                         dd_exp_neg16(h), dd_phi16(v));
}

/* v after the folded activation `act` (DD_ACT_*).  Always inlined: out of line, the depthwise
 * lanes paid a call for every 16 floats (15% of their time in EfficientNet-B0). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 __m512 dd_act16(__m512 v,
                                                                              int act) {
  /* max_ps returns its second operand for NaN and -0, as Relu does */
  return act == DD_ACT_RELU        ? _mm512_max_ps(v, _mm512_setzero_ps())
         : act == DD_ACT_SILU      ? dd_sigmoid16(v, 1)
         : act == DD_ACT_HARDSWISH ? dd_hardswish16(v)
         : act == DD_ACT_GELU      ? dd_gelu16(v)
         : act == DD_ACT_SIGMOID   ? dd_sigmoid16(v, 0)
                                   : v;
}

/* y = act(x) over n floats by dd_act16 (y may be x), in blocks of 4096 on the threads when
 * `parallel`: the AVX-512 forwards of Sigmoid, SiLU and Gelu (ops/activation.c). */
void dd_act16_rows(const float *x, float *y, int64_t n, int act, int parallel);

/* The same on the AVX2 path (ops/act_avx2.c) for act DD_ACT_SILU, DD_ACT_SIGMOID or
 * DD_ACT_GELU: the forwards of Sigmoid, SiLU and Gelu there, and so of the activations its
 * kernels fold. */
void dd_act8_rows(const float *x, float *y, int64_t n, int act, int parallel);
#endif

#endif
