/* exp of a non-positive number without a libm call, so that the loops calling it vectorize
 * (libm's expf does not, without -ffast-math). */
#ifndef DREAM_OPS_FASTEXP_H
#define DREAM_OPS_FASTEXP_H

#include <stdint.h>

/* a * b + c, rounded once where the build's ISA has FMA (the AVX-512 builds), else as two
 * operations (the portable x86-64-v2 build).  Explicit rather than left to the compiler's
 * contraction (off in C11 mode), so every element, vector body and scalar tail alike, gets
 * the same operations.  In the polynomials below it saves a third of the instructions
 * (SiLU on one core: 0.80 -> 0.50 ns an element, bench/README.md). */
#ifdef __FMA__
#define DD_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define DD_FMAF(a, b, c) ((a) * (b) + (c))
#endif

/* exp(-a) for a >= 0: Cephes' expf, a = n ln2 - r with |r| <= ln2 / 2, e^r by its degree-7
 * polynomial, times 2^-n built in the exponent bits.  Within 2.0e-7 relative of exp in double
 * (checked over every float a in [0, 100]); below 2^-126 (a > 87.3, where expf is denormal)
 * it gives 0. */
static inline float dd_exp_neg(float a) {
  float big = a > 87.3f ? 1.f : 0.f;
  a = a > 87.3f ? 87.3f : a;
  float n = nearbyintf(a * 1.44269504088896341f); /* 0 .. 126 */
  float r = DD_FMAF(n, 0.693359375f, -a);         /* -a + n ln2, in two parts */
  r = DD_FMAF(n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = DD_FMAF(p, r, 1.3981999507e-3f);
  p = DD_FMAF(p, r, 8.3334519073e-3f);
  p = DD_FMAF(p, r, 4.1665795894e-2f);
  p = DD_FMAF(p, r, 1.6666665459e-1f);
  p = DD_FMAF(p, r, 5.0000001201e-1f);
  p = DD_FMAF(p * r, r, r) + 1.f;
  union {
    uint32_t u;
    float f;
  } scale = {(uint32_t)(127 - (int32_t)n) << 23};
  return big != 0.f ? 0.f : p * scale.f;
}

#endif
