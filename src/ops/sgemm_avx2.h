/* The AVX2 path's product (ops/sgemm_avx2.c), called by dd_sgemm and its kin (ops/sgemm.h)
 * when dd_kernels_avx2() says so.  The arguments are dd_sgemm's; `packed`, when not NULL, is B
 * packed by dd_sgemm_avx2_pack (B itself is then not read).  Not DD_SGEMM_EXACT's loop: its
 * tile already gives every element of C the same operations. */
#ifndef DREAM_OPS_SGEMM_AVX2_H
#define DREAM_OPS_SGEMM_AVX2_H

#include <stdint.h>

#include "ops/cpu.h"

/* The register tile: MR rows by NR columns of C. */
#define DD_SGEMM_AVX2_MR 6
#define DD_SGEMM_AVX2_NR 16

#ifdef DD_AVX512_KERNELS
void dd_sgemm_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                   const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
                   const float *bias, int parallel, const float *packed);
int dd_sgemm_avx2_splits_rows(int64_t m, int64_t n, int64_t nt);
int64_t dd_sgemm_avx2_pack_floats(int64_t k, int64_t n);
void dd_sgemm_avx2_pack(int64_t k, int64_t n, const float *b, int64_t ldb, int tb, float *pack,
                        int parallel);
#endif

#endif
