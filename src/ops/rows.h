/* Strided copies by rows: the output walked in rows of `inner` contiguous elements, row r
 * read from the input at base + sum_i idx_i(r) xs[i] (idx: r's multi-index over the outer
 * dims len[0..nd-1), the last fastest), its elements ixs apart.  Transpose and Slice are
 * this walk with their own strides.
 *
 * Each thread takes one contiguous run of rows and keeps the multi-index and the offset as it
 * goes (an odometer): the offset of a row costs an addition, not the nd - 1 divisions that
 * computing it from r takes (Swin-T's attention transposes are rows of 32 floats, where the
 * divisions cost more than the copy).  Rows of contiguous elements are copied with memcpy. */
#ifndef DREAM_OPS_ROWS_H
#define DREAM_OPS_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "dream/tensor.h" /* DD_MAX_DIMS */

typedef struct dd_rows {
  int nd;                                          /* outer dims */
  int64_t len[DD_MAX_DIMS], xs[DD_MAX_DIMS];       /* their sizes and input strides */
  int64_t base, rows, inner, ixs;                  /* rows = prod len */
} dd_rows;

/* Builds the walk of dims 0..n-1 (sizes len, input strides xs; the last is the row) from base:
 * drops dims of size 1, merges a dim into the next inner one where its stride is the inner
 * one's extent (a slice that keeps whole inner dims reads long rows). */
void dd_rows_make(dd_rows *w, int n, const int64_t *len, const int64_t *xs, int64_t base);

/* y[r inner + j] = x[offset(r) + j ixs] for every row, elements of esize bytes (1, 4 or 8);
 * in parallel when `parallel` (rows split evenly, each written by one thread). */
void dd_rows_gather(const dd_rows *w, const void *x, void *y, size_t esize, int parallel);

/* dx[offset(r) + j ixs] += dy[r inner + j]: the gradient of the gather, whose rows read
 * distinct elements, so the threads write disjoint places. */
void dd_rows_scatter_add(const dd_rows *w, const float *dy, float *dx, int parallel);

#endif
