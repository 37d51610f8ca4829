/* Matrix products in bfloat16 with float32 accumulation, for plans in bf16 mode
 * (DD_PLAN_BF16): the convolutions of the dream loop, forward and data gradient.
 *
 * dd_bgemm computes what dd_sgemm (ops/sgemm.h) computes, with the same arguments, except
 * that A and B are rounded to bfloat16 (round to nearest even: 8 significant bits) as they
 * are packed; the products are exact in float32 and summed in float32.  So each output is
 * within about 2 * 2^-8 * sum_k |A(i,k) B(k,j)| of the float32 product (tests/ops/test_bf16.c
 * derives the bound).  C, the bias and the Relu are float32 as in dd_sgemm.
 *
 * The kernel is chosen at run time from cpuid: AMX tiles (AMX-BF16, after asking the kernel
 * for the tile state with arch_prctl(ARCH_REQ_XCOMP_PERM); a refusal means no AMX), once a
 * self-check finds the AMX kernel bit-exact with the AVX512-BF16 one on exact products (it
 * was written on a machine without AMX and has never run); else AVX512-BF16 (vdpbf16ps);
 * else none, and dd_bgemm is dd_sgemm. */
#ifndef DREAM_OPS_BF16_H
#define DREAM_OPS_BF16_H

#include <stdint.h>

typedef enum dd_bf16_isa {
  DD_BF16_NONE = 0,   /* no bf16 instructions: fp32 */
  DD_BF16_AVX512 = 1, /* AVX512-BF16: vdpbf16ps, 32 products per instruction */
  DD_BF16_AMX = 2,    /* AMX-BF16 tiles (tdpbf16ps), with AVX512-BF16 for the packing */
} dd_bf16_isa;

/* Whether the CPU (and the OS) offers `isa`; DD_BF16_NONE always.  Thread-safe; the AMX
 * permission is asked for once, and a refusal means no AMX. */
int dd_bf16_has(dd_bf16_isa isa);
/* The bf16 kernel dd_bgemm runs: AMX when the CPU has it and the kernel passed its
 * self-check, else AVX512-BF16 when the CPU has it, else DD_BF16_NONE. */
dd_bf16_isa dd_bf16_kernel(void);

/* Whether bf16 pays on this CPU: the AMX kernel is usable.  Read from the CPU, never timed,
 * so that --precision auto gives the same picture whatever the load.  On the Xeon of
 * bench/README.md vdpbf16ps nets half the multiply-add rate of its two FMA ports, so the
 * AVX512-BF16 kernel alone does not pay. */
int dd_bf16_pays(void);

/* dd_sgemm in bf16 on the kernel dd_bf16_kernel() names (dd_sgemm itself when none). */
void dd_bgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel);
/* The same on a given kernel, for the tests (no self-check): nonzero (and nothing done) when
 * the CPU lacks it. */
int dd_bgemm_on(dd_bf16_isa isa, int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                int64_t acs, const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
                const float *bias, int parallel);

/* x rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as a float. */
float dd_bf16_round(float x);

#endif
