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

/* Outputs handled per vector batch of the 2-D max kernel. */
#define MAX_BATCH 64

/* The first maximum of the window starting at plane offset `origin` (top-left tap) whose
 * taps [b0, b1) x [c0, c1) are inside the input.  Branch-free: the data decides each
 * comparison, so a branch would mispredict often.  Strict > keeps the first maximum in scan
 * order (as PyTorch and Caffe), and -inf / NaN taps leave the result on the first tap. */
static inline __attribute__((always_inline)) int64_t window_first_max(
    const float *x, int64_t W, int64_t origin, int64_t b0, int64_t b1, int64_t c0, int64_t c1) {
  int64_t best = origin + b0 * W + c0;
  float bv = -INFINITY;
  for (int64_t b = b0; b < b1; b++)
    for (int64_t c = c0; c < c1; c++) {
      int64_t off = origin + b * W + c;
      float v = x[off];
      int gt = v > bv;
      best = gt ? off : best;
      bv = gt ? v : bv;
    }
  return best;
}

/* One tap of a branch-free first-maximum scan (see window_first_max). */
static inline __attribute__((always_inline)) void max_tap(float v, int32_t off, float *bv,
                                                          int32_t *best) {
  int gt = v > *bv;
  *best = gt ? off : *best;
  *bv = gt ? v : *bv;
}

/* best[i] = plane offset of the first maximum of the 3x3 window whose top-left tap is
 * xb[i * sw] (plane offset base + i * sw), for n windows wholly inside the input: one
 * window per vector lane. */
static inline __attribute__((always_inline)) void max_batch_3x3(
    const float *xb, int32_t base, int32_t W, const int64_t sw, int64_t n, int32_t *best) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float *r = xb + i * sw;
    int32_t o = base + (int32_t)(i * sw), bst = o;
    float bv = r[0];
    max_tap(r[1], o + 1, &bv, &bst);
    max_tap(r[2], o + 2, &bv, &bst);
    max_tap(r[W], o + W, &bv, &bst);
    max_tap(r[W + 1], o + W + 1, &bv, &bst);
    max_tap(r[W + 2], o + W + 2, &bv, &bst);
    max_tap(r[2 * W], o + 2 * W, &bv, &bst);
    max_tap(r[2 * W + 1], o + 2 * W + 1, &bv, &bst);
    max_tap(r[2 * W + 2], o + 2 * W + 2, &bv, &bst);
    best[i] = bst;
  }
}

/* MaxPool over a 2-D undilated window, the case of nearly every CNN, with the same results
 * as pool_plane.  The windows of an output row that lie wholly inside the input are done
 * MAX_BATCH at a time, one output per vector lane (kh, kw are constants in the 3x3
 * instantiation, so the taps unroll); their argmaxes are then applied one by one, since
 * overlapping windows can share one, which a vector scatter-add would lose.  y (forward;
 * idx may be NULL) or dy and dx (backward) are given.  Plane offsets fit in int32. */
static inline __attribute__((always_inline)) void max_plane_2d(
    const dd_window *w, int storage_order, const float *x, float *y, int64_t *idx,
    int64_t idx_base, const float *dy, float *dx, const int64_t kh, const int64_t kw,
    const int64_t sw) {
  const int64_t H = w->in[1], W = w->in[2], sh = w->s[1], pw = w->pb[2];
  const int64_t ho = w->out[1], wo = w->out[2];
  /* outputs [in0, in1) of a row have all their columns inside: w0 >= 0 and w0 + kw <= W */
  int64_t in0 = (pw + sw - 1) / sw, in1 = W + pw - kw >= 0 ? (W + pw - kw) / sw + 1 : 0;
  if (in0 > wo) in0 = wo;
  if (in1 > wo) in1 = wo;
  if (in1 < in0) in1 = in0;
  for (int64_t oh = 0; oh < ho; oh++) {
    int64_t h0 = oh * sh - w->pb[1];
    int64_t b0 = h0 < 0 ? -h0 : 0, b1 = H - h0 < kh ? H - h0 : kh;
    int full_rows = b0 == 0 && b1 == kh;
    for (int64_t ow = 0; ow < wo;) {
      int32_t best[MAX_BATCH];
      int64_t n;
      if (full_rows && ow >= in0 && ow < in1) {
        n = in1 - ow < MAX_BATCH ? in1 - ow : MAX_BATCH;
        const int64_t base = h0 * W - pw + ow * sw;
        if (kh == 3 && kw == 3)
          max_batch_3x3(x + base, (int32_t)base, (int32_t)W, sw, n, best);
        else
          for (int64_t i = 0; i < n; i++)
            best[i] = (int32_t)window_first_max(x, W, base + i * sw, 0, kh, 0, kw);
      } else {
        n = 1;
        int64_t w0 = ow * sw - pw;
        int64_t c0 = w0 < 0 ? -w0 : 0, c1 = W - w0 < kw ? W - w0 : kw;
        best[0] = (int32_t)window_first_max(x, W, h0 * W + w0, b0, b1, c0, c1);
      }
      int64_t j = oh * wo + ow;
      for (int64_t i = 0; i < n; i++) {
        if (dx) {
          dx[best[i]] += dy[j + i];
        } else {
          if (y) y[j + i] = x[best[i]];
          if (idx) idx[j + i] = idx_base + (storage_order ? column_major(w, best[i]) : best[i]);
        }
      }
      ow += n;
    }
  }
}

static int is_plain_2d(const dd_window *w) {
  return w->in[0] == 1 && w->k[0] == 1 && w->out[0] == 1 && w->d[1] == 1 && w->d[2] == 1 &&
         w->in[1] * w->in[2] <= INT32_MAX;
}

/* The max walk of one plane: the 2-D kernel when it applies, else the general walk. */
static void max_plane(const pool_params *p, const dd_window *w, const float *x, float *y,
                      int64_t *idx, int64_t idx_base, const float *dy, float *dx) {
  if (!is_plain_2d(w))
    pool_plane(p, w, dx ? WALK_MAX_BACK : WALK_MAX, x, y, idx, idx_base, dy, dx);
  else if (w->k[1] == 3 && w->k[2] == 3 && w->s[2] == 1)
    max_plane_2d(w, p->storage_order, x, y, idx, idx_base, dy, dx, 3, 3, 1);
  else if (w->k[1] == 3 && w->k[2] == 3 && w->s[2] == 2)
    max_plane_2d(w, p->storage_order, x, y, idx, idx_base, dy, dx, 3, 3, 2);
  else
    max_plane_2d(w, p->storage_order, x, y, idx, idx_base, dy, dx, w->k[1], w->k[2], w->s[2]);
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
      double s = 0;
      for (int64_t i = 0; i < g.in_sz; i++) s += xp[i];
      y[pl] = (float)(s / (double)g.in_sz);
    } else if (p->kind == POOL_MAX) {
      max_plane(p, &g.w, xp, y ? y + pl * g.out_sz : NULL, idx ? idx + pl * g.out_sz : NULL,
                pl * g.in_sz, NULL, NULL);
    } else {
      pool_plane(p, &g.w, WALK_AVG, xp, y + pl * g.out_sz, NULL, 0, NULL, NULL);
    }
  }
}

static void pool_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const pool_params *p = node->params;
  pool_geom g;
  pool_geometry(p, &in[0]->shape, &g, NULL);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
#pragma omp parallel for if (g.planes * g.in_sz > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const float *xp = x + pl * g.in_sz;
    float *dxp = dx + pl * g.in_sz;
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

static int64_t pool_flops(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out) {
  const pool_params *p = node->params;
  pool_geom g;
  if (pool_geometry(p, &in[0]->shape, &g, NULL)) return 0;
  if (p->kind >= POOL_GLOBAL_MAX) return g.planes * g.in_sz;
  return g.planes * g.out_sz * g.w.k[0] * g.w.k[1] * g.w.k[2];
}

const dd_op dd_op_MaxPool = {"MaxPool", maxpool_init, pool_infer, pool_forward, pool_backward,
                             pool_flops, 0};
const dd_op dd_op_AveragePool = {"AveragePool", avgpool_init, pool_infer, pool_forward,
                                 pool_backward, pool_flops, 0};
const dd_op dd_op_GlobalMaxPool = {"GlobalMaxPool", gmaxpool_init, pool_infer, pool_forward,
                                   pool_backward, pool_flops, 0};
const dd_op dd_op_GlobalAveragePool = {"GlobalAveragePool", gavgpool_init, pool_infer,
                                       pool_forward, pool_backward, pool_flops, 0};
