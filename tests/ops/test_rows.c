/* ops/rows.c, the row walk under Transpose and Slice, against the definition: element e of
 * the output (row-major over the dims as given, before any merging) reads the input at base +
 * sum_i idx_i(e) xs[i].  Random geometries from a transposed and sliced buffer (size-1 dims,
 * negative steps, whole inner dims that merge), sized so that two threads split the rows
 * mid-way through the outer dims; the scatter-add (the gradient) the same way. */
#include <criterion/criterion.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "ops/rows.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

/* A walk over n dims: a random permutation of an input of sizes d (strides st), each output
 * dim a random slice (start, step) of its input dim. */
typedef struct geo {
  int n;
  int64_t len[DD_MAX_DIMS], xs[DD_MAX_DIMS], base, in_numel;
} geo;

static void random_geo(geo *g, int64_t min_out) {
  for (;;) {
    g->n = 1 + (int)(next() % 6);
    int64_t d[DD_MAX_DIMS], st[DD_MAX_DIMS], acc = 1;
    for (int i = 0; i < g->n; i++) d[i] = next() % 5 == 0 ? 1 : 1 + (int64_t)(next() % 12);
    for (int i = g->n - 1; i >= 0; i--) st[i] = acc, acc *= d[i];
    g->in_numel = acc;
    int perm[DD_MAX_DIMS];
    for (int i = 0; i < g->n; i++) perm[i] = i;
    if (next() % 3) /* else: the identity (slices only) */
      for (int i = g->n - 1; i > 0; i--) {
        int j = (int)(next() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
      }
    g->base = 0;
    int64_t out = 1;
    for (int i = 0; i < g->n; i++) {
      int a = perm[i];
      int64_t step = next() % 3 ? 1 : (next() % 2 ? 2 : -1);
      if (next() % 2) step = 1, g->len[i] = d[a]; /* whole: merges with its neighbour */
      else g->len[i] = 1 + (int64_t)(next() % (uint64_t)d[a]);
      int64_t span = (g->len[i] - 1) * (step < 0 ? -step : step);
      if (span >= d[a]) step = 1, span = g->len[i] - 1;
      int64_t start = step > 0 ? (int64_t)(next() % (uint64_t)(d[a] - span)) : d[a] - 1;
      g->base += start * st[a];
      g->xs[i] = step * st[a];
      out *= g->len[i];
    }
    if (out >= min_out) return;
  }
}

/* The input offset of output element e, from the unmerged dims. */
static int64_t offset_of(const geo *g, int64_t e) {
  int64_t off = g->base;
  for (int i = g->n - 1; i >= 0; i--) {
    off += (e % g->len[i]) * g->xs[i];
    e /= g->len[i];
  }
  return off;
}

Test(rows, gather_and_scatter_add_match_the_definition) {
  omp_set_num_threads(2);
  int walks = 0;
  for (int trial = 0; trial < 300; trial++) {
    geo g;
    random_geo(&g, trial % 2 ? 40000 : 1); /* half of them past the threading threshold */
    int64_t out = 1;
    for (int i = 0; i < g.n; i++) out *= g.len[i];
    dd_rows w;
    dd_rows_make(&w, g.n, g.len, g.xs, g.base);
    cr_assert_eq(w.rows * w.inner, out, "trial %d: %lld rows of %lld for %lld elements", trial,
                 (long long)w.rows, (long long)w.inner, (long long)out);
    float *x = malloc((size_t)g.in_numel * sizeof *x), *y = malloc((size_t)out * sizeof *y);
    int64_t *xi = malloc((size_t)g.in_numel * sizeof *xi), *yi = malloc((size_t)out * sizeof *yi);
    for (int64_t i = 0; i < g.in_numel; i++) x[i] = (float)i, xi[i] = i * 7 - 3;
    dd_rows_gather(&w, x, y, sizeof *x, 1);
    dd_rows_gather(&w, xi, yi, sizeof *xi, 1);
    for (int64_t e = 0; e < out; e++) {
      int64_t src = offset_of(&g, e);
      cr_assert_eq(y[e], x[src], "trial %d: y[%lld] = %g, want x[%lld]", trial, (long long)e,
                   y[e], (long long)src);
      cr_assert_eq(yi[e], xi[src]);
    }
    /* the gradient: dx[src(e)] += dy[e], every input read at most once (steps nonzero) */
    float *dx = malloc((size_t)g.in_numel * sizeof *dx), *want = malloc((size_t)g.in_numel * sizeof *want);
    for (int64_t i = 0; i < g.in_numel; i++) dx[i] = want[i] = 0.5f;
    for (int64_t e = 0; e < out; e++) y[e] = (float)(e % 97) - 40.f;
    for (int64_t e = 0; e < out; e++) want[offset_of(&g, e)] += y[e];
    dd_rows_scatter_add(&w, y, dx, 1);
    cr_assert(!memcmp(dx, want, (size_t)g.in_numel * sizeof *dx), "trial %d: scatter-add", trial);
    walks += w.nd < g.n - 1; /* some dims merged or dropped */
    free(x), free(y), free(xi), free(yi), free(dx), free(want);
  }
  cr_assert_gt(walks, 50, "the random geometries rarely merged dims");
}

/* The permutes of a channels-last network (ConvNeXt's NCHW -> NHWC and back), where the
 * AVX-512 kernels gather 16 x 16 blocks through the registers: odd sizes (blocks cut by the
 * plane's end, by the row's end and by the split between two threads) and the plane merged
 * across H and W, against the definition, on each kernel path. */
static void rows_channel_permutes_on(void);
Test(rows, channel_permutes_match_the_definition) { th_each_kernels(rows_channel_permutes_on); }
static void rows_channel_permutes_on(void) {
  omp_set_num_threads(2);
  static const int64_t shapes[][4] = {{2, 37, 9, 7}, {1, 96, 56, 56}, {3, 16, 4, 4}, {1, 5, 17, 3}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int dir = 0; dir < 2; dir++) {
      const int64_t *d = shapes[si]; /* N, C, H, W */
      geo g = {4, {0}, {0}, 0, d[0] * d[1] * d[2] * d[3]};
      if (!dir) { /* NCHW input, output N H W C */
        int64_t len[4] = {d[0], d[2], d[3], d[1]}, xs[4] = {d[1] * d[2] * d[3], d[3], 1, d[2] * d[3]};
        memcpy(g.len, len, sizeof len), memcpy(g.xs, xs, sizeof xs);
      } else { /* NHWC input, output N C H W */
        int64_t len[4] = {d[0], d[1], d[2], d[3]}, xs[4] = {d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]};
        memcpy(g.len, len, sizeof len), memcpy(g.xs, xs, sizeof xs);
      }
      dd_rows w;
      dd_rows_make(&w, 4, g.len, g.xs, 0);
      float *x = malloc((size_t)g.in_numel * sizeof *x), *y = malloc((size_t)g.in_numel * sizeof *y);
      for (int64_t i = 0; i < g.in_numel; i++) x[i] = (float)i;
      for (int parallel = 0; parallel < 2; parallel++) {
        memset(y, 0xff, (size_t)g.in_numel * sizeof *y);
        dd_rows_gather(&w, x, y, sizeof *x, parallel);
        for (int64_t e = 0; e < g.in_numel; e++)
          cr_assert_eq(y[e], x[offset_of(&g, e)], "shape %zu dir %d: y[%lld] = %g, want %g", si,
                       dir, (long long)e, y[e], x[offset_of(&g, e)]);
      }
      free(x), free(y);
    }
}
