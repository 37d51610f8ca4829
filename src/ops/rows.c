/* Strided copies by rows (see rows.h). */
#include "ops/rows.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/cpu.h"
#include "ops/transpose16.h"
#include "util.h" /* DD_PAR_MIN */

void dd_rows_make(dd_rows *w, int n, const int64_t *len, const int64_t *xs, int64_t base) {
  int64_t l[DD_MAX_DIMS], s[DD_MAX_DIMS];
  int m = 0, empty = 0;
  for (int i = 0; i < n; i++) {
    if (len[i] == 0) empty = 1;
    if (len[i] == 1) continue;
    if (m && s[m - 1] == xs[i] * len[i]) { /* dim m-1 steps over whole runs of dim i */
      l[m - 1] *= len[i];
      s[m - 1] = xs[i];
    } else {
      l[m] = len[i];
      s[m++] = xs[i];
    }
  }
  if (m == 0) l[m] = 1, s[m++] = 1;
  w->nd = m - 1;
  w->inner = l[m - 1];
  w->ixs = s[m - 1];
  w->base = base;
  w->rows = empty ? 0 : 1;
  for (int i = 0; i < m - 1; i++) {
    w->len[i] = l[i];
    w->xs[i] = s[i];
    w->rows *= l[i];
  }
  if (empty) w->inner = 0;
}

/* The input offset of row r0, and its multi-index in idx. */
static int64_t start(const dd_rows *w, int64_t r0, int64_t *idx) {
  int64_t off = w->base, row = r0;
  for (int i = w->nd - 1; i >= 0; i--) {
    idx[i] = row % w->len[i];
    off += idx[i] * w->xs[i];
    row /= w->len[i];
  }
  return off;
}

/* The next row's offset: the last index counts up, carrying into the ones before it. */
static inline int64_t advance(const dd_rows *w, int64_t off, int64_t *idx) {
  for (int i = w->nd - 1; i >= 0; i--) {
    off += w->xs[i];
    if (++idx[i] < w->len[i]) return off;
    off -= w->xs[i] * w->len[i];
    idx[i] = 0;
  }
  return off;
}

#define GATHER_RUN(T)                                                         \
  do {                                                                        \
    const T *xt = x;                                                          \
    T *yt = y;                                                                \
    for (int64_t r = r0; r < r1; r++, off = advance(w, off, idx)) {           \
      const T *xr = xt + off;                                                 \
      T *yr = yt + r * n;                                                     \
      for (int64_t j = 0; j < n; j++) yr[j] = xr[j * s];                      \
    }                                                                         \
  } while (0)

#ifdef DD_AVX512_KERNELS
/* Rows [r0, r1) of a gather of 4-byte elements whose innermost outer dim reads with stride 1
 * (a transpose: NCHW to NHWC turns each image's C x HW matrix to HW x C): where 16 rows in a
 * row of that dim read 16 adjacent elements per column, they go as 16 x 16 blocks through
 * the registers (ops/transpose16.h), 16 loads and 16 stores of 16 elements, instead of one
 * element per load a stride apart (ConvNeXt-T's 18 permutes: 5.9 ms on one core). */
DD_TARGET_AVX512 static void gather_blocks(const dd_rows *w, const float *x, float *y,
                                           int64_t r0, int64_t r1) {
  int64_t idx[DD_MAX_DIMS], off = start(w, r0, idx), n = w->inner, s = w->ixs;
  const int last = w->nd - 1;
  for (int64_t r = r0; r < r1;) {
    if (r + 16 <= r1 && idx[last] + 16 <= w->len[last]) {
      /* column j of y's 16 rows is 16 adjacent elements at x + off + j * s */
      for (int64_t j0 = 0; j0 < n; j0 += 16)
        dd_transpose16_block(x + off + j0 * s, s, y + r * n + j0, n, n - j0 < 16 ? n - j0 : 16,
                             16, NULL);
      for (int i = 0; i < 16; i++) off = advance(w, off, idx);
      r += 16;
    } else {
      const float *xr = x + off;
      float *yr = y + r * n;
      for (int64_t j = 0; j < n; j++) yr[j] = xr[j * s];
      off = advance(w, off, idx);
      r++;
    }
  }
}
#endif

/* Rows [r0, r1) of the gather. */
static void gather_run(const dd_rows *w, const void *x, void *y, size_t esize, int64_t r0,
                       int64_t r1) {
#ifdef DD_AVX512_KERNELS
  if (esize == 4 && w->ixs != 1 && w->nd >= 1 && w->xs[w->nd - 1] == 1 &&
      w->len[w->nd - 1] >= 16 && dd_kernels_avx512()) {
    gather_blocks(w, x, y, r0, r1);
    return;
  }
#endif
  int64_t idx[DD_MAX_DIMS], off = start(w, r0, idx), n = w->inner, s = w->ixs;
  if (s == 1) {
    for (int64_t r = r0; r < r1; r++, off = advance(w, off, idx))
      memcpy((char *)y + (size_t)(r * n) * esize, (const char *)x + (size_t)off * esize,
             (size_t)n * esize);
  } else if (esize == 4) {
    GATHER_RUN(uint32_t);
  } else if (esize == 8) {
    GATHER_RUN(uint64_t);
  } else {
    GATHER_RUN(uint8_t);
  }
}

void dd_rows_gather(const dd_rows *w, const void *x, void *y, size_t esize, int parallel) {
  if (w->rows == 0 || w->inner == 0) return;
#pragma omp parallel if (parallel && w->rows * w->inner > DD_PAR_MIN)
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t r0 = w->rows * t / nt, r1 = w->rows * (t + 1) / nt;
    if (r0 < r1) gather_run(w, x, y, esize, r0, r1);
  }
}

void dd_rows_scatter_add(const dd_rows *w, const float *dy, float *dx, int parallel) {
  if (w->rows == 0 || w->inner == 0) return;
#pragma omp parallel if (parallel && w->rows * w->inner > DD_PAR_MIN)
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t r0 = w->rows * t / nt, r1 = w->rows * (t + 1) / nt, n = w->inner, s = w->ixs;
    int64_t idx[DD_MAX_DIMS], off = r0 < r1 ? start(w, r0, idx) : 0;
    for (int64_t r = r0; r < r1; r++, off = advance(w, off, idx)) {
      float *xr = dx + off;
      const float *yr = dy + r * n;
      if (s == 1) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) xr[j] += yr[j];
      } else {
        for (int64_t j = 0; j < n; j++) xr[j * s] += yr[j];
      }
    }
  }
}
