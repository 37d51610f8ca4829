/* Pooling: MaxPool, AveragePool (1-D to 3-D windows), GlobalMaxPool, GlobalAveragePool.
 * Forward and backward side by side; backward accumulates into din.
 *
 * Every kernel works on one (n, c) plane at a time, so planes are split across threads and
 * the backward passes never add into the same element from two threads.  MaxPool's backward
 * recomputes the argmax rather than storing it: it costs one more pass over the window but
 * keeps the plan free of a per-node index buffer.
 */
#include <math.h>
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
    return dd_fail(err, DD_EUNSUPPORTED, "pooling over %d spatial dims is not supported (1 to %d are)",
                   nsp, DD_WIN_MAX);
  int rc = dd_window_resolve(&p->win, nsp, xs->d + 2, p->win.kernel, &g->w, err);
  if (rc) return rc;
  g->in_sz = g->w.in[0] * g->w.in[1] * g->w.in[2];
  g->out_sz = dd_window_out_numel(&g->w);
  return DD_OK;
}

/* The taps of output (o0, o1, o2) inside [lo, hi) of each dim, as three half-open ranges. */
static inline void window_taps(const dd_window *w, const int64_t *o, const int64_t *lo,
                               const int64_t *hi, int64_t *t0, int64_t *t1) {
  for (int i = 0; i < DD_WIN_MAX; i++) dd_window_taps(w, i, o[i], lo[i], hi[i], &t0[i], &t1[i]);
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
  if (node->n_out > 2) return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1 or 2", node->n_out);
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

/* Position of the first maximum of the window of output o in plane x, as an offset into the
 * plane; -1 only for a window without input elements (refused by infer). */
static inline int64_t window_argmax(const dd_window *w, const float *x, const int64_t *o) {
  static const int64_t lo[DD_WIN_MAX] = {0, 0, 0};
  int64_t t0[DD_WIN_MAX], t1[DD_WIN_MAX];
  window_taps(w, o, lo, w->in, t0, t1);
  int64_t best = -1;
  float bv = 0.f;
  for (int64_t a = t0[0]; a < t1[0]; a++) {
    int64_t id = o[0] * w->s[0] - w->pb[0] + a * w->d[0];
    for (int64_t b = t0[1]; b < t1[1]; b++) {
      int64_t ih = o[1] * w->s[1] - w->pb[1] + b * w->d[1];
      const float *row = x + (id * w->in[1] + ih) * w->in[2];
      for (int64_t c = t0[2]; c < t1[2]; c++) {
        int64_t iw = o[2] * w->s[2] - w->pb[2] + c * w->d[2];
        /* strict >: the first maximum in scan order wins ties, as in PyTorch and Caffe */
        if (best < 0 || row[iw] > bv) {
          bv = row[iw];
          best = (id * w->in[1] + ih) * w->in[2] + iw;
        }
      }
    }
  }
  return best;
}

/* The divisor of an average window: its taps inside the input, or inside the padded input
 * with count_include_pad (never past the padding, where ceil_mode windows may reach). */
static inline int64_t window_count(const dd_window *w, const int64_t *o, int include_pad) {
  int64_t n = 1;
  for (int i = 0; i < DD_WIN_MAX; i++) {
    int64_t t0, t1;
    if (include_pad)
      dd_window_taps(w, i, o[i], -w->pb[i], w->in[i] + w->pe[i], &t0, &t1);
    else
      dd_window_taps(w, i, o[i], 0, w->in[i], &t0, &t1);
    n *= t1 > t0 ? t1 - t0 : 0;
  }
  return n;
}

static inline void unravel(const dd_window *w, int64_t j, int64_t *o) {
  o[2] = j % w->out[2];
  o[1] = j / w->out[2] % w->out[1];
  o[0] = j / (w->out[2] * w->out[1]);
}

/* Row-major plane offset -> the Indices value for storage_order 1 (column-major spatial). */
static inline int64_t column_major(const dd_window *w, int64_t off) {
  int64_t iw = off % w->in[2], ih = off / w->in[2] % w->in[1], id = off / (w->in[2] * w->in[1]);
  return id + w->in[0] * (ih + w->in[1] * iw);
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
  const dd_window *w = &g.w;
#pragma omp parallel for if (g.planes * g.in_sz > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const float *xp = x + pl * g.in_sz;
    if (p->kind == POOL_GLOBAL_MAX || p->kind == POOL_GLOBAL_AVG) {
      if (p->kind == POOL_GLOBAL_MAX) {
        float m = xp[0];
        for (int64_t i = 1; i < g.in_sz; i++) m = xp[i] > m ? xp[i] : m;
        y[pl] = m;
      } else {
        double s = 0;
        for (int64_t i = 0; i < g.in_sz; i++) s += xp[i];
        y[pl] = (float)(s / (double)g.in_sz);
      }
      continue;
    }
    for (int64_t j = 0; j < g.out_sz; j++) {
      int64_t o[DD_WIN_MAX];
      unravel(w, j, o);
      if (p->kind == POOL_MAX) {
        int64_t a = window_argmax(w, xp, o);
        if (y) y[pl * g.out_sz + j] = xp[a];
        if (idx) idx[pl * g.out_sz + j] = pl * g.in_sz + (p->storage_order ? column_major(w, a) : a);
        continue;
      }
      static const int64_t lo[DD_WIN_MAX] = {0, 0, 0};
      int64_t t0[DD_WIN_MAX], t1[DD_WIN_MAX];
      window_taps(w, o, lo, w->in, t0, t1);
      float s = 0.f;
      for (int64_t a = t0[0]; a < t1[0]; a++) {
        int64_t id = o[0] * w->s[0] - w->pb[0] + a * w->d[0];
        for (int64_t b = t0[1]; b < t1[1]; b++) {
          int64_t ih = o[1] * w->s[1] - w->pb[1] + b * w->d[1];
          const float *row = xp + (id * w->in[1] + ih) * w->in[2];
          for (int64_t c = t0[2]; c < t1[2]; c++) s += row[o[2] * w->s[2] - w->pb[2] + c * w->d[2]];
        }
      }
      int64_t n = window_count(w, o, p->count_include_pad);
      y[pl * g.out_sz + j] = n > 0 ? s / (float)n : 0.f;
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
  const dd_window *w = &g.w;
#pragma omp parallel for if (g.planes * g.in_sz > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const float *xp = x + pl * g.in_sz;
    float *dxp = dx + pl * g.in_sz;
    const float *dyp = dy + pl * g.out_sz;
    if (p->kind == POOL_GLOBAL_MAX) {
      int64_t a = 0;
      for (int64_t i = 1; i < g.in_sz; i++)
        if (xp[i] > xp[a]) a = i;
      dxp[a] += dyp[0];
      continue;
    }
    if (p->kind == POOL_GLOBAL_AVG) {
      float v = (float)(dyp[0] / (double)g.in_sz);
      for (int64_t i = 0; i < g.in_sz; i++) dxp[i] += v;
      continue;
    }
    for (int64_t j = 0; j < g.out_sz; j++) {
      int64_t o[DD_WIN_MAX];
      unravel(w, j, o);
      if (p->kind == POOL_MAX) {
        dxp[window_argmax(w, xp, o)] += dyp[j];
        continue;
      }
      int64_t n = window_count(w, o, p->count_include_pad);
      if (n <= 0) continue;
      float v = dyp[j] / (float)n;
      static const int64_t lo[DD_WIN_MAX] = {0, 0, 0};
      int64_t t0[DD_WIN_MAX], t1[DD_WIN_MAX];
      window_taps(w, o, lo, w->in, t0, t1);
      for (int64_t a = t0[0]; a < t1[0]; a++) {
        int64_t id = o[0] * w->s[0] - w->pb[0] + a * w->d[0];
        for (int64_t b = t0[1]; b < t1[1]; b++) {
          int64_t ih = o[1] * w->s[1] - w->pb[1] + b * w->d[1];
          float *row = dxp + (id * w->in[1] + ih) * w->in[2];
          for (int64_t c = t0[2]; c < t1[2]; c++) row[o[2] * w->s[2] - w->pb[2] + c * w->d[2]] += v;
        }
      }
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
