/* numpy (multidirectional) broadcasting, shared by the element-wise families (binary.c,
 * logic.c): an iteration over an output with up to three operands, walked as rows of its
 * innermost (collapsed) dim cut into blocks for the threads.  Dims of size 1 are dropped and
 * neighbours contiguous for every operand are merged, so a per-channel constant against NCHW
 * is C rows of H*W, and same-shape operands are one long row. */
#ifndef DREAM_OPS_BROADCAST_H
#define DREAM_OPS_BROADCAST_H

#include "ops/common.h"

/* Elements per block of work: rows longer than this are split so threads share them. */
#define DD_BCAST_BLOCK 8192

/* Operand 0 is the output (or the tensor iterated densely), 1 and 2 are inputs; s[k][i] is
 * operand k's element stride along dim i, 0 where it is broadcast. */
typedef struct bcast {
  int nd;
  int64_t d[DD_MAX_DIMS];
  int64_t s[3][DD_MAX_DIMS];
  int64_t rows, nblk; /* rows of d[nd-1] elements, each cut into nblk blocks */
} bcast;

/* The iteration over `out` with operands a and c (already checked to broadcast to it). */
void bcast_make(bcast *b, const dd_shape *out, const dd_shape *a, const dd_shape *c);

/* Block `blk` (of b->rows * b->nblk) of the iteration: operand offsets, and the element range
 * [*i0, *i1) of its row. */
static inline void bcast_block(const bcast *b, int64_t blk, int64_t off[3], int64_t *i0,
                               int64_t *i1) {
  int64_t row = blk, part = 0;
  if (b->nblk > 1) row = blk / b->nblk, part = blk % b->nblk;
  off[0] = off[1] = off[2] = 0;
  if (b->nd == 2) { /* rows of one dim (a per-channel operand against NCHW): no division, which
                       cost more than the 49 multiplications of a 7x7 plane */
    for (int k = 0; k < 3; k++) off[k] = row * b->s[k][0];
  } else {
    for (int i = b->nd - 2; i >= 0; i--) {
      int64_t q = row % b->d[i];
      row /= b->d[i];
      for (int k = 0; k < 3; k++) off[k] += q * b->s[k][i];
    }
  }
  int64_t inner = b->d[b->nd - 1];
  *i0 = part * DD_BCAST_BLOCK;
  *i1 = *i0 + DD_BCAST_BLOCK < inner ? *i0 + DD_BCAST_BLOCK : inner;
}

#endif
