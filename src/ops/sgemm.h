/* A matrix product for the shapes convolutions make: few rows (output channels), many
 * columns (pixels or Winograd tiles).
 *
 *   C[i][j] = (accumulate ? C[i][j] : bias ? bias[i] : 0) + sum_k A(i, k) * B[k][j]
 *
 * (bias[j] with DD_SGEMM_COL_BIAS)
 *
 * for 0 <= i < m, 0 <= j < n, where A(i, k) is a[i * ars + k * acs] (so a row-major A has
 * ars = lda, acs = 1, and its transpose ars = 1, acs = lda), B and C are row-major with
 * leading dimensions ldb and ldc.
 *
 * Unlike cblas_sgemm it packs nothing (B is read in place, 32 columns at a time that stay in
 * L1 while every row of A passes over them), so a product with 16 rows costs no more per
 * flop than one with 256, and it runs on the OpenMP threads of the caller: `parallel` splits
 * the columns over them; 0 runs on the calling thread only (inside a parallel region). */
#ifndef DREAM_OPS_SGEMM_H
#define DREAM_OPS_SGEMM_H

#include <stdint.h>

/* Bits of dd_sgemm's `accumulate`: add to C (else start from bias or 0); and, once the sum is
 * complete, C = max(0, C) (a Relu folded into the product: with accumulation, the Relu is of
 * the sum C + A B). */
#define DD_SGEMM_ACCUMULATE 1
#define DD_SGEMM_RELU 2
/* Every element of C by the same sequence of operations, whichever column it is in
 * (DD_PLAN_EXACT): the AVX-512 kernel always does; without it, cblas_sgemm's edge blocks do
 * not, and a plain loop in k order runs instead (slower). */
#define DD_SGEMM_EXACT 4
/* bias is one value per column of C (C[i][j] starts from bias[j]: the bias of a linear layer
 * over token rows, MatMul + Add fused by the planner) instead of one per row. */
#define DD_SGEMM_COL_BIAS 8
/* Once the sum is complete, C = C * sigmoid(C) (a SiLU folded into the product, with the
 * floats of the Silu op: ops/act.h).  Not with DD_SGEMM_RELU. */
#define DD_SGEMM_SILU 16
/* The same for HardSwish and the exact GELU (ops/act.h). */
#define DD_SGEMM_HARDSWISH 32
#define DD_SGEMM_GELU 64
/* B is stored transposed: B[k][j] is b[j * ldb + k] (a layer's weights in a data gradient,
 * dY W^T, or the keys of an attention product, Q K^T).  The AVX-512 kernels transpose it as
 * they pack their blocks, 16 x 16 in registers, instead of the caller copying B^T first; the
 * floats are those of dd_sgemm on the copy.  Not with dd_sgemm_scaled. */
#define DD_SGEMM_TRANS_B 128

void dd_sgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel);

/* Whether dd_sgemm, with `parallel` on nt threads, gives each thread rows of C (m x n) rather
 * than columns: true where a split by its 32-column blocks would leave the busiest thread
 * more 8 x 32 tiles.  For work after the product that should stay on the core that wrote its
 * part (ops/conv.c's transpose back to planes). */
int dd_sgemm_splits_rows(int64_t m, int64_t n, int64_t nt);

/* dd_sgemm with B's row q scaled by bscale[q] (C = A diag(bscale) B + ...), the scale applied
 * as the AVX-512 kernels pack B, so it costs no pass of its own: returns 0, computing
 * nothing, on kernels that cannot (the generic path, DD_SGEMM_EXACT). */
int dd_sgemm_scaled(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                    const float *b, int64_t ldb, const float *bscale, float *c, int64_t ldc,
                    int accumulate, const float *bias, int parallel);

/* dd_sgemm_scaled (bscale may be NULL: no scale) then, once C's sum and its activation are
 * complete, C[i][j] += R[i][j] where R[i][j] is radd[i * ldc + j] (a residual Add folded into
 * the product, DD_OP_FOLD_ADD: the floats of the product, then of the Add), as each tile is
 * stored; radd may be NULL.  Returns 0, computing nothing, where dd_sgemm_scaled would. */
int dd_sgemm_scaled_add(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                        int64_t acs, const float *b, int64_t ldb, const float *bscale, float *c,
                        int64_t ldc, int accumulate, const float *bias, int parallel,
                        const float *radd);

/* B packed once for many products (a layer's constant weights): the floats the pack needs (a
 * multiple of 16), 0 when this CPU's kernels take no pack (then call dd_sgemm); the pack,
 * 64-byte aligned, of B (k x n, row-major with ldb), or with tb of B stored transposed (B(q,
 * j) = b[j * ldb + q]), on the OpenMP threads when `parallel`; the same into a new buffer
 * (free it; NULL when out of memory or no pack is taken); and the product from it, which
 * gives the same floats as dd_sgemm from B itself (the pack is the one dd_sgemm makes on
 * each call, made once), with radd (NULL: none) added last as in dd_sgemm_scaled_add. */
int64_t dd_sgemm_pack_floats(int64_t k, int64_t n);
void dd_sgemm_pack(int64_t k, int64_t n, const float *b, int64_t ldb, int tb, float *pack,
                   int parallel);
float *dd_sgemm_pack_new(int64_t k, int64_t n, const float *b, int64_t ldb, int tb,
                         int parallel);
void dd_sgemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                     const float *pack, float *c, int64_t ldc, int accumulate, const float *bias,
                     int parallel, const float *radd);

#endif
