/* Pooling: MaxPool, AveragePool (1-D to 3-D windows), GlobalMaxPool, GlobalAveragePool.
 * Forward and backward side by side; backward accumulates into din.
 *
 * Every kernel works on one (n, c) plane at a time, so planes are split across threads and
 * the backward passes never add into the same element from two threads.  MaxPool's backward
 * recomputes the argmax rather than storing it: it costs one more pass over the window but
 * keeps the plan free of a per-node index buffer.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

#include "ops/common.h"
#include "ops/window.h"

enum { POOL_MAX, POOL_AVG, POOL_GLOBAL_MAX, POOL_GLOBAL_AVG };

typedef struct pool_params {
  int kind;
  dd_window_attrs win;
  int count_include_pad;
  int storage_order; /* of MaxPool's Indices: 0 row-major, 1 column-major */
} pool_params;

/* One pooling at one input shape. */
typedef struct pool_geom {
  dd_window w;     /* for the global kinds: a window covering the whole plane */
  int64_t planes;  /* N * C */
  int64_t in_sz;   /* elements of one input plane */
  int64_t out_sz;  /* elements of one output plane */
} pool_geom;

static int pool_init(dd_node *node, int kind, dd_err *err) {
  static const char *const max_known[] = {"auto_pad", "ceil_mode", "dilations", "kernel_shape",
                                          "pads", "storage_order", "strides", NULL};
  static const char *const avg_known[] = {"auto_pad", "ceil_mode", "count_include_pad",
                                          "dilations", "kernel_shape", "pads", "strides", NULL};
  static const char *const global_known[] = {NULL};
  const char *const *known =
      kind == POOL_MAX ? max_known : kind == POOL_AVG ? avg_known : global_known;
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  pool_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->kind = kind;
  if (kind == POOL_MAX || kind == POOL_AVG) {
    int64_t v = 0;
    rc = dd_window_parse(node, 1, &p->win, err);
    if (!rc && p->win.n_kernel < 0) rc = dd_fail(err, DD_EFORMAT, "kernel_shape is required");
    if (!rc && kind == POOL_AVG) {
      rc = dd_attr_int(node, "count_include_pad", 0, &v, err);
      if (!rc && v != 0 && v != 1)
        rc = dd_fail(err, DD_EFORMAT, "count_include_pad is %lld, expected 0 or 1", (long long)v);
      p->count_include_pad = (int)v;
    }
    if (!rc && kind == POOL_MAX) {
      rc = dd_attr_int(node, "storage_order", 0, &v, err);
      if (!rc && v != 0 && v != 1)
        rc = dd_fail(err, DD_EFORMAT, "storage_order is %lld, expected 0 or 1", (long long)v);
      p->storage_order = (int)v;
    }
  }
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static int maxpool_init(dd_node *node, dd_err *err) { return pool_init(node, POOL_MAX, err); }
static int avgpool_init(dd_node *node, dd_err *err) { return pool_init(node, POOL_AVG, err); }
static int gmaxpool_init(dd_node *node, dd_err *err) {
  return pool_init(node, POOL_GLOBAL_MAX, err);
}
static int gavgpool_init(dd_node *node, dd_err *err) {
  return pool_init(node, POOL_GLOBAL_AVG, err);
}

static int pool_geometry(const pool_params *p, const dd_shape *xs, pool_geom *g, dd_err *err) {
  if (xs->ndim < 3)
    return dd_fail(err, DD_ESHAPE, "input has %d dims, expected N, C and spatial dims", xs->ndim);
  memset(g, 0, sizeof *g);
  g->planes = xs->d[0] * xs->d[1];
  if (p->kind == POOL_GLOBAL_MAX || p->kind == POOL_GLOBAL_AVG) {
    g->in_sz = 1;
    for (int i = 2; i < xs->ndim; i++) g->in_sz *= xs->d[i];
    if (g->in_sz < 1) return dd_fail(err, DD_ESHAPE, "the input has no spatial elements");
    g->out_sz = 1;
    return DD_OK;
  }
  int nsp = xs->ndim - 2;
  if (nsp > DD_WIN_MAX)
    return dd_fail(err, DD_EUNSUPPORTED,
                   "pooling over %d spatial dims is not supported (1 to %d are)", nsp, DD_WIN_MAX);
  int rc = dd_window_resolve(&p->win, nsp, xs->d + 2, p->win.kernel, &g->w, err);
  if (rc) return rc;
  g->in_sz = g->w.in[0] * g->w.in[1] * g->w.in[2];
  g->out_sz = dd_window_out_numel(&g->w);
  return DD_OK;
}

static int pool_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  const pool_params *p = node->params;
  if (node->n_in != 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs exactly one input");
  if (in[0]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "input must be float32");
  pool_geom g;
  int rc = pool_geometry(p, &in[0]->shape, &g, err);
  if (rc) return rc;
  if (p->kind == POOL_MAX) {
    /* A window holding padding only has no maximum: refuse such pads. */
    const int64_t lo[DD_WIN_MAX] = {0, 0, 0};
    for (int i = 0; i < DD_WIN_MAX; i++)
      for (int64_t o = 0; o < g.w.out[i]; o++) {
        int64_t t0, t1;
        dd_window_taps(&g.w, i, o, lo[i], g.w.in[i], &t0, &t1);
        if (t1 <= t0)
          return dd_fail(err, DD_ESHAPE,
                         "the pads are so large that output %lld along spatial dim %d covers "
                         "padding only",
                         (long long)o, i - (DD_WIN_MAX - g.w.nsp));
      }
  }
  if (node->n_out > 1 && out[1] && p->kind != POOL_MAX)
    return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1", node->n_out);
  if (node->n_out > 2)
    return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1 or 2", node->n_out);
  dd_shape ys = in[0]->shape;
  for (int i = 2; i < ys.ndim; i++)
    ys.d[i] = p->kind >= POOL_GLOBAL_MAX ? 1 : g.w.out[DD_WIN_MAX - (ys.ndim - 2) + (i - 2)];
  for (int k = 0; k < node->n_out; k++)
    if (out[k]) {
      out[k]->dtype = k == 0 ? DD_F32 : DD_I64;
      out[k]->shape = ys;
    }
  *scratch = 0;
  return DD_OK;
}

/* What pool_plane does at each window. */
enum { WALK_MAX, WALK_AVG, WALK_MAX_BACK, WALK_AVG_BACK };

/* Taps of output o along dim i counted by an average: inside the input, or inside the padded
 * input with count_include_pad (never past the padding, where ceil_mode windows may reach). */
static inline int64_t taps_counted(const dd_window *w, int i, int64_t o, int include_pad) {
  int64_t t0, t1;
  if (include_pad)
    dd_window_taps(w, i, o, -w->pb[i], w->in[i] + w->pe[i], &t0, &t1);
  else
    dd_window_taps(w, i, o, 0, w->in[i], &t0, &t1);
  return t1 > t0 ? t1 - t0 : 0;
}

/* Row-major plane offset -> the Indices value for storage_order 1 (column-major spatial). */
static inline int64_t column_major(const dd_window *w, int64_t off) {
  int64_t iw = off % w->in[2], ih = off / w->in[2] % w->in[1], id = off / (w->in[2] * w->in[1]);
  return id + w->in[0] * (ih + w->in[1] * iw);
}

/* Walks every window of one (n, c) plane in output order and applies `what`:
 *   WALK_MAX       y = the first maximum (strict >, so ties go to the first in scan order,
 *                  as in PyTorch and Caffe); idx (may be NULL) = its Indices value
 *   WALK_AVG       y = the average
 *   WALK_MAX_BACK  dx[argmax] += dy
 *   WALK_AVG_BACK  dx[each tap] += dy / count
 * The tap ranges come per dim from the loop nest, so nothing is divided per tap. */
static void pool_plane(const pool_params *p, const dd_window *w, int what, const float *x,
                       float *y, int64_t *idx, int64_t idx_base, const float *dy, float *dx) {
  const int64_t H = w->in[1], W = w->in[2];
  const int avg = what == WALK_AVG || what == WALK_AVG_BACK;
  int64_t j = 0;
  for (int64_t od = 0; od < w->out[0]; od++) {
    int64_t a0, a1, d0 = od * w->s[0] - w->pb[0];
    dd_window_taps(w, 0, od, 0, w->in[0], &a0, &a1);
    int64_t nd = avg ? taps_counted(w, 0, od, p->count_include_pad) : 1;
    for (int64_t oh = 0; oh < w->out[1]; oh++) {
      int64_t b0, b1, h0 = oh * w->s[1] - w->pb[1];
      dd_window_taps(w, 1, oh, 0, H, &b0, &b1);
      int64_t nh = avg ? taps_counted(w, 1, oh, p->count_include_pad) : 1;
      for (int64_t ow = 0; ow < w->out[2]; ow++, j++) {
        int64_t c0, c1, w0 = ow * w->s[2] - w->pb[2];
        dd_window_taps(w, 2, ow, 0, W, &c0, &c1);
        if (!avg) {
          /* Branch-free: the data decides each comparison, so a branch would mispredict
           * often.  Strict > keeps the first maximum in scan order (as PyTorch and Caffe),
           * and -inf / NaN taps still leave `best` on the window's first tap. */
          int64_t best = ((d0 + a0 * w->d[0]) * H + h0 + b0 * w->d[1]) * W + w0 + c0 * w->d[2];
          float bv = -INFINITY;
          for (int64_t a = a0; a < a1; a++)
            for (int64_t b = b0; b < b1; b++) {
              int64_t rowoff = ((d0 + a * w->d[0]) * H + h0 + b * w->d[1]) * W + w0;
              for (int64_t c = c0; c < c1; c++) {
                int64_t off = rowoff + c * w->d[2];
                float v = x[off];
                int gt = v > bv;
                best = gt ? off : best;
                bv = gt ? v : bv;
              }
            }
          if (what == WALK_MAX_BACK) {
            dx[best] += dy[j];
          } else {
            if (y) y[j] = x[best];
            if (idx) idx[j] = idx_base + (p->storage_order ? column_major(w, best) : best);
          }
          continue;
        }
        int64_t count = nd * nh * taps_counted(w, 2, ow, p->count_include_pad);
        if (what == WALK_AVG) {
          float sum = 0.f;
          for (int64_t a = a0; a < a1; a++)
            for (int64_t b = b0; b < b1; b++) {
              int64_t rowoff = ((d0 + a * w->d[0]) * H + h0 + b * w->d[1]) * W + w0;
              for (int64_t c = c0; c < c1; c++) sum += x[rowoff + c * w->d[2]];
            }
          y[j] = count > 0 ? sum / (float)count : 0.f;
        } else if (count > 0) {
          float v = dy[j] / (float)count;
          for (int64_t a = a0; a < a1; a++)
            for (int64_t b = b0; b < b1; b++) {
              int64_t rowoff = ((d0 + a * w->d[0]) * H + h0 + b * w->d[1]) * W + w0;
              for (int64_t c = c0; c < c1; c++) dx[rowoff + c * w->d[2]] += v;
            }
        }
      }
    }
  }
}

/* ---- MaxPool over undilated 1-D and 2-D windows, the case of nearly every CNN ----
 *
 * The first maximum of a window in scan order (strict >, rows then columns) is the first, in
 * row order, of its rows' first maxima.  So each input row is folded once along the width for
 * the output columns (its "h": value and column of the first maximum of each window's taps in
 * that row), and an output row folds the h of its kh input rows.  For 3x3 stride 1 that is
 * 2 + 2 comparisons per output instead of 8, all on contiguous vectors, and the values and
 * argmaxes are bit for bit those of the windowed scan.  Backward recomputes the argmaxes this
 * way (the plan holds no index buffer) and adds dy to them serially, in output order.  Rows
 * are cut into strips of STRIP output columns so that the row buffers fit on the stack. */

#define MAX_KERNEL 8 /* larger 2-D kernels take the general walk */
#define STRIP 256

typedef struct max2d {
  const float *x;
  int64_t H, W, ho, wo, kh, kw, sh, sw, ph, pw;
  int64_t in0, in1; /* outputs of a row whose window columns all lie inside the input */
} max2d;

/* The h of the last kh input rows (slot r % kh), and the next input row to fold. */
typedef struct hring {
  float v[MAX_KERNEL][STRIP];
  int32_t i[MAX_KERNEL][STRIP];
  int64_t next;
} hring;

static void max2d_init(max2d *m, const dd_window *w, const float *x) {
  *m = (max2d){x,        w->in[1], w->in[2], w->out[1], w->out[2], w->k[1], w->k[2],
               w->s[1],  w->s[2],  w->pb[1], w->pb[2],  0,         0};
  m->in0 = (m->pw + m->sw - 1) / m->sw;
  m->in1 = m->W + m->pw - m->kw >= 0 ? (m->W + m->pw - m->kw) / m->sw + 1 : 0;
  if (m->in0 > m->wo) m->in0 = m->wo;
  if (m->in1 > m->wo) m->in1 = m->wo;
  if (m->in1 < m->in0) m->in1 = m->in0;
}

/* Input rows (and in backward the dx rows) are fetched this far ahead of their fold: a
 * plane's rows are short streams that the hardware prefetcher picks up late (the gain is in
 * bench/README.md). */
#define PREFETCH_ROWS 4

/* Prefetches the part of plane row r (if any) that the outputs [oa, ob) read, for writing
 * when `write`. */
static inline void prefetch_row(const float *plane, const max2d *m, int64_t r, int64_t oa,
                                int64_t ob, int write) {
  if (r >= m->H) return;
  int64_t c0 = oa * m->sw - m->pw, c1 = (ob - 1) * m->sw - m->pw + m->kw;
  c0 = c0 < 0 ? 0 : c0;
  c1 = c1 > m->W ? m->W : c1;
  const char *p = (const char *)(plane + r * m->W + c0);
  for (int64_t b = 0; b < (c1 - c0) * (int64_t)sizeof(float); b += 64) {
    if (write)
      __builtin_prefetch(p + b, 1);
    else
      __builtin_prefetch(p + b, 0);
  }
}

/* h of input row r for the outputs [oa, ob), at hv[ow - oa] and (with want_idx) hi[ow - oa]
 * as a plane offset.  Each fold starts on the window's first tap inside the input, so a row
 * of -inf still yields a tap of the window. */
static inline __attribute__((always_inline)) void hfold(const max2d *m, int64_t r, int64_t oa,
                                                        int64_t ob, float *hv, int32_t *hi,
                                                        const int64_t kw, const int64_t sw,
                                                        const int want_idx) {
  const float *xr = m->x + r * m->W;
  const int64_t rowoff = r * m->W, pw = m->pw, W = m->W;
  int64_t lo = m->in0 > oa ? m->in0 : oa, up = m->in1 < ob ? m->in1 : ob;
  if (lo > ob) lo = ob;
  if (up < lo) up = lo;
  for (int64_t ow = oa; ow < ob; ow++) {
    if (ow == lo && up > lo) {
      const int n = (int)(up - lo), s = (int)sw;
      const int32_t base = (int32_t)(rowoff + lo * sw - pw);
      const float *p = m->x + base;
      float *hvo = hv + (lo - oa);
      int32_t *hio = hi + (lo - oa);
#pragma omp simd
      for (int i = 0; i < n; i++) {
        const int32_t o = base + i * s;
        float bv = p[i * s];
        int32_t bi = o;
        for (int t = 1; t < (int)kw; t++) {
          float v = p[i * s + t];
          int gt = v > bv;
          bv = gt ? v : bv;
          if (want_idx) bi = gt ? o + t : bi;
        }
        hvo[i] = bv;
        if (want_idx) hio[i] = bi;
      }
      ow = up - 1;
      continue;
    }
    const int64_t w0 = ow * sw - pw;
    const int64_t c0 = w0 < 0 ? -w0 : 0, c1 = W - w0 < kw ? W - w0 : kw;
    float bv = xr[w0 + c0];
    int64_t bc = w0 + c0;
    for (int64_t c = c0 + 1; c < c1; c++) {
      float v = xr[w0 + c];
      int gt = v > bv;
      bc = gt ? w0 + c : bc;
      bv = gt ? v : bv;
    }
    hv[ow - oa] = bv;
    if (want_idx) hi[ow - oa] = (int32_t)(rowoff + bc);
  }
}

/* The first maxima of output row oh for the outputs [oa, ob): folds the input rows of its
 * window not in the ring yet, then folds their h down the window: values into bv, plane
 * offsets into bi when want_idx.  dx (may be NULL) is the backward's gradient plane, whose
 * rows are prefetched for writing along with the input's. */
static inline __attribute__((always_inline)) void row_first_max(const max2d *m, hring *h,
                                                                const float *dx,
                                                                int64_t oh, int64_t oa,
                                                                int64_t ob, float *bv,
                                                                int32_t *bi, const int64_t kh,
                                                                const int64_t kw,
                                                                const int64_t sw,
                                                                const int want_idx) {
  const int64_t h0 = oh * m->sh - m->ph, n = ob - oa;
  const int64_t rlo = h0 > 0 ? h0 : 0, rhi = h0 + kh < m->H ? h0 + kh : m->H;
  for (int64_t r = h->next > rlo ? h->next : rlo; r < rhi; r++) {
    prefetch_row(m->x, m, r + PREFETCH_ROWS, oa, ob, 0);
    if (dx) prefetch_row(dx, m, r + PREFETCH_ROWS, oa, ob, 1);
    hfold(m, r, oa, ob, h->v[r % kh], h->i[r % kh], kw, sw, want_idx);
  }
  if (rhi > h->next) h->next = rhi;
  const float *hv[MAX_KERNEL] = {NULL};
  const int32_t *hi[MAX_KERNEL] = {NULL};
  for (int64_t r = rlo; r < rhi; r++) {
    hv[r - rlo] = h->v[r % kh];
    hi[r - rlo] = h->i[r % kh];
  }
  if (rhi - rlo == kh) { /* the whole window inside: kh is a constant, one pass */
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
      float v = hv[0][j];
      int32_t b = want_idx ? hi[0][j] : 0;
      for (int64_t k = 1; k < kh; k++) {
        /* loaded unconditionally: a conditional load becomes a masked load and a spill */
        const float vk = hv[k][j];
        const int32_t bk = want_idx ? hi[k][j] : 0;
        int gt = vk > v;
        if (want_idx) b = gt ? bk : b;
        v = gt ? vk : v;
      }
      bv[j] = v;
      if (want_idx) bi[j] = b;
    }
    return;
  }
  memcpy(bv, hv[0], (size_t)n * sizeof *bv);
  if (want_idx) memcpy(bi, hi[0], (size_t)n * sizeof *bi);
  for (int64_t k = 1; k < rhi - rlo; k++) {
    const float *v = hv[k];
    const int32_t *o = hi[k];
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
      const float vk = v[j];
      const int32_t bk = want_idx ? o[j] : 0;
      int gt = vk > bv[j];
      if (want_idx) bi[j] = gt ? bk : bi[j];
      bv[j] = gt ? vk : bv[j];
    }
  }
}

/* One plane: forward (y and/or idx may be NULL) as pool_plane gives them, or with dx the
 * backward dx[argmax] += dy, in output order as the general walk adds them. */
static inline __attribute__((always_inline)) void max2d_plane(
    const max2d *m, hring *h, float *y, int64_t *idx, int64_t idx_base, int storage_order,
    const dd_window *w, const float *dy, float *dx, const int64_t kh, const int64_t kw,
    const int64_t sw) {
  float vb[STRIP];
  int32_t ib[STRIP];
  for (int64_t oa = 0; oa < m->wo; oa += STRIP) {
    const int64_t ob = oa + STRIP < m->wo ? oa + STRIP : m->wo, n = ob - oa;
    h->next = 0;
    for (int64_t oh = 0; oh < m->ho; oh++) {
      const int64_t j = oh * m->wo + oa;
      if (!idx && !dx) {
        row_first_max(m, h, NULL, oh, oa, ob, y + j, NULL, kh, kw, sw, 0);
        continue;
      }
      row_first_max(m, h, dx, oh, oa, ob, vb, ib, kh, kw, sw, 1);
      if (dx) {
        /* serial: overlapping windows often share their argmax */
        for (int64_t i = 0; i < n; i++) dx[ib[i]] += dy[j + i];
        continue;
      }
      for (int64_t i = 0; i < n; i++) {
        if (y) y[j + i] = vb[i];
        idx[j + i] = idx_base + (storage_order ? column_major(w, ib[i]) : ib[i]);
      }
    }
  }
}

/* ---- MaxPool over windows that tile the plane: kernel == stride, no padding, no dilation ----
 *
 * The 2x2 stride-2 pooling of small CNNs.  Every input element lies in at most one window, so
 * backward needs no serial adds: each tap gets dy where it is the window's argmax and 0
 * elsewhere, in one vector pass.  The argmax is the same first maximum in scan order as the
 * general walk's (strict >, starting from -inf on the first tap), so NaN and -inf windows
 * give the same value and gradient target. */

static int is_tiling_2d(const dd_window *w) {
  return w->in[0] == 1 && w->k[0] == 1 && w->out[0] == 1 && w->d[1] == 1 && w->d[2] == 1 &&
         w->k[1] == w->s[1] && w->k[2] == w->s[2] && w->pb[1] == 0 && w->pb[2] == 0 &&
         w->out[1] * w->k[1] <= w->in[1] && w->out[2] * w->k[2] <= w->in[2] &&
         w->k[1] * w->k[2] <= INT32_MAX;
}

/* One plane, or its outputs' columns [0, wo) of rows ys apart: forward y, or backward
 * dx += dy at each window's first maximum. */
static inline __attribute__((always_inline)) void tile_plane(const float *x, int64_t W,
                                                             int64_t ho, int64_t wo, int64_t ys,
                                                             const int64_t kh, const int64_t kw,
                                                             float *y, const float *dy,
                                                             float *dx) {
  for (int64_t oh = 0; oh < ho; oh++) {
    const float *xr = x + oh * kh * W;
    float *dxr = dx ? dx + oh * kh * W : NULL;
    const float *dyr = dx ? dy + oh * ys : NULL;
    float *yr = dx ? NULL : y + oh * ys;
#pragma omp simd
    for (int64_t ow = 0; ow < wo; ow++) {
      float bv = -INFINITY;
      int32_t bt = 0;
      for (int64_t a = 0; a < kh; a++)
        for (int64_t c = 0; c < kw; c++) {
          const float v = xr[a * W + ow * kw + c];
          const int gt = v > bv;
          bv = gt ? v : bv;
          bt = gt ? (int32_t)(a * kw + c) : bt;
        }
      if (dx) {
        const float g = dyr[ow];
        for (int64_t a = 0; a < kh; a++)
          for (int64_t c = 0; c < kw; c++)
            dxr[a * W + ow * kw + c] += bt == (int32_t)(a * kw + c) ? g : 0.f;
      } else {
        /* bt == 0 with no tap above -inf: the first tap, as the general walk gives */
        yr[ow] = bt == 0 ? xr[ow * kw] : bv;
      }
    }
  }
}

#ifdef DD_AVX512_KERNELS
/* 2x2 stride 2 with AVX-512, 16 outputs at a time (the last ones masked): the even and odd
 * columns of the window's two rows are its four taps, compared in scan order as tile_plane
 * does; backward puts dy back at the argmax tap and 0 at the others, interleaves them into
 * the rows' layout and adds them. */
DD_TARGET_AVX512 static void tile_plane_2x2(const float *x, int64_t W, int64_t ho, int64_t wo,
                                            float *y, const float *dy, float *dx) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  for (int64_t oh = 0; oh < ho; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    for (int64_t ow = 0; ow < wo; ow += 16) {
      const int n = wo - ow < 16 ? (int)(wo - ow) : 16; /* outputs, 2n inputs per row */
      const __mmask16 mo = (__mmask16)((1u << n) - 1);
      const __mmask16 m0 = (__mmask16)(n >= 8 ? 0xffff : (1u << (2 * n)) - 1);
      const __mmask16 m1 = (__mmask16)(n <= 8 ? 0 : (1u << (2 * n - 16)) - 1);
      const __m512 a0 = _mm512_maskz_loadu_ps(m0, r0 + 2 * ow);
      const __m512 a1 = _mm512_maskz_loadu_ps(m1, r0 + 2 * ow + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, r1 + 2 * ow);
      const __m512 b1 = _mm512_maskz_loadu_ps(m1, r1 + 2 * ow + 16);
      const __m512 t[4] = {_mm512_permutex2var_ps(a0, even, a1),
                           _mm512_permutex2var_ps(a0, odd, a1),
                           _mm512_permutex2var_ps(b0, even, b1),
                           _mm512_permutex2var_ps(b0, odd, b1)};
      __m512 bv = _mm512_set1_ps(-INFINITY);
      __m512i bt = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        const __mmask16 gt = _mm512_cmp_ps_mask(t[k], bv, _CMP_GT_OQ);
        bv = _mm512_mask_blend_ps(gt, bv, t[k]);
        bt = _mm512_mask_blend_epi32(gt, bt, _mm512_set1_epi32(k));
      }
      if (!dx) {
        /* bt == 0 with no tap above -inf: the first tap, as the general walk gives */
        const __mmask16 first = _mm512_cmpeq_epi32_mask(bt, _mm512_setzero_si512());
        _mm512_mask_storeu_ps(y + oh * wo + ow, mo, _mm512_mask_blend_ps(first, bv, t[0]));
        continue;
      }
      const __m512 g = _mm512_maskz_loadu_ps(mo, dy + oh * wo + ow);
      __m512 d[4];
      for (int k = 0; k < 4; k++)
        d[k] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(bt, _mm512_set1_epi32(k)), g);
      float *q[2] = {dx + 2 * oh * W + 2 * ow, dx + (2 * oh + 1) * W + 2 * ow};
      for (int rr = 0; rr < 2; rr++) {
        const __m512 l = _mm512_permutex2var_ps(d[2 * rr], lo, d[2 * rr + 1]);
        const __m512 h = _mm512_permutex2var_ps(d[2 * rr], hi, d[2 * rr + 1]);
        _mm512_mask_storeu_ps(q[rr], m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, q[rr]), l));
        _mm512_mask_storeu_ps(q[rr] + 16, m1,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m1, q[rr] + 16), h));
      }
    }
  }
}
#endif

static void tile_max_plane(const dd_window *w, const float *x, float *y, const float *dy,
                           float *dx) {
  const int64_t W = w->in[2], ho = w->out[1], wo = w->out[2];
#ifdef DD_AVX512_KERNELS
  if (w->k[1] == 2 && w->k[2] == 2 && dd_kernels_avx512()) {
    tile_plane_2x2(x, W, ho, wo, y, dy, dx);
    return;
  }
#endif
  if (w->k[1] == 2 && w->k[2] == 2)
    tile_plane(x, W, ho, wo, wo, 2, 2, y, dy, dx);
  else
    tile_plane(x, W, ho, wo, wo, w->k[1], w->k[2], y, dy, dx);
}

static int is_plain_2d(const dd_window *w) {
  return w->in[0] == 1 && w->k[0] == 1 && w->out[0] == 1 && w->d[1] == 1 && w->d[2] == 1 &&
         w->k[1] <= MAX_KERNEL && w->k[2] <= MAX_KERNEL && w->in[1] * w->in[2] <= INT32_MAX;
}

/* The max walk of one plane: the 2-D kernel when it applies (3x3 windows with stride 1 or 2
 * unroll as constants), else the general walk.  Forward gives y and/or idx, backward dy and
 * dx. */
static void max_plane(const pool_params *p, const dd_window *w, const float *x, float *y,
                      int64_t *idx, int64_t idx_base, const float *dy, float *dx) {
  if (!idx && is_tiling_2d(w)) {
    tile_max_plane(w, x, y, dy, dx);
    return;
  }
  if (!is_plain_2d(w)) {
    pool_plane(p, w, dx ? WALK_MAX_BACK : WALK_MAX, x, y, idx, idx_base, dy, dx);
    return;
  }
  max2d m;
  hring h;
  max2d_init(&m, w, x);
  const int so = p->storage_order;
  if (m.kh == 3 && m.kw == 3 && m.sw == 1)
    max2d_plane(&m, &h, y, idx, idx_base, so, w, dy, dx, 3, 3, 1);
  else if (m.kh == 3 && m.kw == 3 && m.sw == 2)
    max2d_plane(&m, &h, y, idx, idx_base, so, w, dy, dx, 3, 3, 2);
  else
    max2d_plane(&m, &h, y, idx, idx_base, so, w, dy, dx, m.kh, m.kw, m.sw);
}

#ifdef DD_AVX512_KERNELS
/* The sum of x[0 .. n) in double: eight accumulators of 8 lanes, 64 floats a step (GCC's
 * `omp simd` reduction kept two, and each step waited on the 4-cycle add before it). */
DD_TARGET_AVX512 static double plane_sum_avx512(const float *x, int64_t n) {
  __m512d acc[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      acc[j] = _mm512_add_pd(acc[j], _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * j)));
  }
  for (int j = 0; i < n; i += 8, j++) {
    __mmask8 m = (__mmask8)(n - i >= 8 ? 0xff : (1u << (n - i)) - 1);
    acc[j] = _mm512_add_pd(acc[j], _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i)));
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) acc[j] = _mm512_add_pd(acc[j], acc[j + 4]);
  acc[0] = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
  return _mm512_reduce_add_pd(acc[0]);
}
#endif

/* GlobalAveragePool's sum of one plane, in double; planes under 256 floats by GCC's loop,
 * whose two accumulators cost less to start and to add up (1152 planes of 7 x 7: 14 us
 * against 22 us). */
static double plane_sum(const float *x, int64_t n) {
#ifdef DD_AVX512_KERNELS
  if (n >= 256 && dd_kernels_avx512()) return plane_sum_avx512(x, n);
#endif
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

static void pool_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  const pool_params *p = node->params;
  pool_geom g;
  pool_geometry(p, &in[0]->shape, &g, NULL);
  const float *x = dd_f32(in[0]);
  float *y = out[0] ? dd_f32(out[0]) : NULL;
  int64_t *idx = node->n_out > 1 && out[1] ? dd_i64(out[1]) : NULL;
  if (!y && !idx) return;
#pragma omp parallel for if (g.planes * g.in_sz > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const float *xp = x + pl * g.in_sz;
    if (p->kind == POOL_GLOBAL_MAX) {
      float m = xp[0];
      for (int64_t i = 1; i < g.in_sz; i++) m = xp[i] > m ? xp[i] : m;
      y[pl] = m;
    } else if (p->kind == POOL_GLOBAL_AVG) {
      y[pl] = (float)(plane_sum(xp, g.in_sz) / (double)g.in_sz);
    } else if (p->kind == POOL_MAX) {
      max_plane(p, &g.w, xp, y ? y + pl * g.out_sz : NULL, idx ? idx + pl * g.out_sz : NULL,
                pl * g.in_sz, NULL, NULL);
    } else {
      pool_plane(p, &g.w, WALK_AVG, xp, y + pl * g.out_sz, NULL, 0, NULL, NULL);
    }
  }
}

/* A GlobalAveragePool whose input's planes the convolution before it summed as it wrote them
 * (call->sums, plan_pool_sums): each mean from its sum, as pool_forward divides plane_sum. */
static void pool_forward_call(const dd_node *node, const dd_tensor *const *in,
                              dd_tensor *const *out, void *scratch, const dd_op_call *call) {
  const pool_params *p = node->params;
  if (!call->sums || !call->sums->ok || p->kind != POOL_GLOBAL_AVG || !out[0]) {
    pool_forward(node, in, out, scratch);
    return;
  }
  pool_geom g;
  pool_geometry(p, &in[0]->shape, &g, NULL);
  float *y = dd_f32(out[0]);
  for (int64_t pl = 0; pl < g.planes; pl++)
    y[pl] = (float)(call->sums->sum[pl] / (double)g.in_sz);
}

/* call->fresh bit 0 (DD_OP_GRAD_FRESH): dx holds garbage and is overwritten. */
static void pool_backward_call(const dd_node *node, const dd_tensor *const *in,
                               const dd_tensor *const *out, const dd_tensor *const *dout,
                               dd_tensor *const *din, void *scratch, const dd_op_call *call) {
  if (!din[0] || !dout[0]) return;
  const pool_params *p = node->params;
  pool_geom g;
  pool_geometry(p, &in[0]->shape, &g, NULL);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int fresh = (int)(call->fresh & 1);
#pragma omp parallel for if (g.planes * g.in_sz > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const float *xp = x + pl * g.in_sz;
    float *dxp = dx + pl * g.in_sz;
    /* a fresh gradient is zeroed here, a plane at a time, so the adds find it in cache */
    if (fresh) memset(dxp, 0, (size_t)g.in_sz * sizeof *dxp);
    if (p->kind == POOL_GLOBAL_MAX) {
      int64_t a = 0;
      for (int64_t i = 1; i < g.in_sz; i++)
        if (xp[i] > xp[a]) a = i;
      dxp[a] += dy[pl];
    } else if (p->kind == POOL_GLOBAL_AVG) {
      float v = (float)(dy[pl] / (double)g.in_sz);
      for (int64_t i = 0; i < g.in_sz; i++) dxp[i] += v;
    } else if (p->kind == POOL_MAX) {
      max_plane(p, &g.w, xp, NULL, NULL, 0, dy + pl * g.out_sz, dxp);
    } else {
      pool_plane(p, &g.w, WALK_AVG_BACK, xp, NULL, NULL, 0, dy + pl * g.out_sz, dxp);
    }
  }
}

static void pool_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  static const dd_op_call none = {0, 0};
  pool_backward_call(node, in, out, dout, din, scratch, &none);
}

static int64_t pool_flops(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out) {
  const pool_params *p = node->params;
  pool_geom g;
  if (pool_geometry(p, &in[0]->shape, &g, NULL)) return 0;
  if (p->kind >= POOL_GLOBAL_MAX) return g.planes * g.in_sz;
  return g.planes * g.out_sz * g.w.k[0] * g.w.k[1] * g.w.k[2];
}

/* Backward reads x and dy, never y. */
#define POOL_FLAGS (DD_OP_BWD_NO_OUT | DD_OP_GRAD_FRESH)

const dd_op dd_op_MaxPool = {"MaxPool", maxpool_init, pool_infer, pool_forward, pool_backward,
                             pool_flops, POOL_FLAGS, NULL, pool_backward_call};
const dd_op dd_op_AveragePool = {"AveragePool", avgpool_init, pool_infer, pool_forward,
                                 pool_backward, pool_flops, POOL_FLAGS, NULL, pool_backward_call};
const dd_op dd_op_GlobalMaxPool = {"GlobalMaxPool", gmaxpool_init, pool_infer, pool_forward,
                                   pool_backward, pool_flops, POOL_FLAGS, NULL, pool_backward_call};
const dd_op dd_op_GlobalAveragePool = {"GlobalAveragePool", gavgpool_init, pool_infer,
                                       pool_forward, pool_backward, pool_flops, POOL_FLAGS,
                                       pool_forward_call, pool_backward_call};
