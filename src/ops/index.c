/* Writing by index: ScatterND.
 *
 * ScatterND(data, indices, updates): out = data, then for each index tuple i (the last dim of
 * indices, k <= rank(data) coordinates) out[indices[i]] = updates[i], a slice of the dims of
 * data after the first k.  Reduction "none": with repeated indices the last update wins (ONNX
 * leaves the order open; this is the order of the reference implementation); "add" and "mul":
 * they all add up, or multiply.  "max" and "min" are not implemented.
 *
 * Gradients ("none"): to data, the output gradient where no update landed (zero where
 * overwritten); to updates, the output gradient at the place each one landed, only for the
 * update that won.  ("add"): to data, the output gradient; to each update, the output
 * gradient where it landed.  ("mul"): y = x * u1 * u2 ... at a place, so data gets the
 * output gradient times the product of the updates, each update the output gradient times
 * x and the other updates (prefix and suffix products, no division: zeros are fine).
 *
 * Indices out of range are refused at plan time when known; at run time they are skipped
 * (forward never fails). */
#include <stdlib.h>
#include <string.h>

#include "ops/common.h"

typedef struct scatter_geom {
  int k;          /* coordinates per index tuple */
  int64_t n;      /* index tuples */
  int64_t slice;  /* elements per update slice */
  int64_t slices; /* slices in data: the product of its first k dims */
} scatter_geom;

enum { RED_NONE, RED_ADD, RED_MUL };

typedef struct scatter_params {
  int red;
} scatter_params;

static int scatternd_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"reduction", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->n_in != 3)
    return dd_fail(err, DD_EFORMAT, "ScatterND needs 3 inputs (data, indices, updates), got %d",
                   node->n_in);
  const char *red;
  if ((rc = dd_attr_string(node, "reduction", "none", &red, err))) return rc;
  if (strcmp(red, "none") && strcmp(red, "add") && strcmp(red, "mul"))
    return dd_fail(err, DD_EUNSUPPORTED, "ScatterND with reduction '%s' is not supported (only "
                   "'none', 'add' and 'mul')", red);
  scatter_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->red = !strcmp(red, "add") ? RED_ADD : !strcmp(red, "mul") ? RED_MUL : RED_NONE;
  node->params = p;
  return DD_OK;
}

static void scatter_geometry(const dd_tensor *const *in, scatter_geom *g) {
  const dd_shape *ds = &in[0]->shape, *is = &in[1]->shape;
  g->k = (int)is->d[is->ndim - 1];
  g->n = 1;
  for (int i = 0; i < is->ndim - 1; i++) g->n *= is->d[i];
  g->slice = g->slices = 1;
  for (int i = 0; i < ds->ndim; i++) {
    if (i < g->k) g->slices *= ds->d[i];
    else g->slice *= ds->d[i];
  }
}

/* The slice index in data of tuple j, or -1 when out of range. */
static int64_t scatter_target(const dd_tensor *const *in, const scatter_geom *g, int64_t j) {
  const int64_t *idx = dd_i64(in[1]) + j * g->k;
  int64_t at = 0;
  for (int c = 0; c < g->k; c++) {
    int64_t d = in[0]->shape.d[c], v = idx[c] < 0 ? idx[c] + d : idx[c];
    if (v < 0 || v >= d) return -1;
    at = at * d + v;
  }
  return at;
}

static int scatternd_infer(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, size_t *scratch, dd_err *err) {
  char s1[128], s2[128], s3[128];
  if (!in[0] || !in[1] || !in[2])
    return dd_fail(err, DD_EFORMAT, "needs data, indices and updates");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  const dd_tensor *x = in[0], *idx = in[1], *u = in[2];
  const scatter_params *p = node->params;
  if (x->dtype != DD_F32 && x->dtype != DD_I64 && (x->dtype != DD_BOOL || p->red != RED_NONE))
    return dd_fail(err, DD_EUNSUPPORTED, "data is %s; ScatterND supports float32, int64%s",
                   dd_dtype_name(x->dtype),
                   p->red != RED_NONE ? " (with a reduction)" : " and bool");
  if (u->dtype != x->dtype)
    return dd_fail(err, DD_EFORMAT, "updates are %s, data %s", dd_dtype_name(u->dtype),
                   dd_dtype_name(x->dtype));
  if (idx->dtype != DD_I64) return dd_fail(err, DD_EFORMAT, "indices must be integers");
  if (idx->shape.ndim < 1) return dd_fail(err, DD_EFORMAT, "indices must have at least 1 dim");
  int64_t k = idx->shape.d[idx->shape.ndim - 1];
  if (k < 1 || k > x->shape.ndim)
    return dd_fail(err, DD_EFORMAT, "index tuples of %lld coordinates for data of %d dims",
                   (long long)k, x->shape.ndim);
  /* updates' shape: indices.shape[:-1] + data.shape[k:] */
  int urank = idx->shape.ndim - 1 + x->shape.ndim - (int)k;
  int ok = u->shape.ndim == urank;
  for (int i = 0; ok && i < urank; i++) {
    int64_t want = i < idx->shape.ndim - 1 ? idx->shape.d[i]
                                           : x->shape.d[k + i - (idx->shape.ndim - 1)];
    ok = u->shape.d[i] == want;
  }
  if (!ok)
    return dd_fail(err, DD_ESHAPE, "updates have shape %s; data %s and indices %s need "
                   "indices.shape[:-1] + data.shape[%lld:]", dd_shape_str(&u->shape, s1, sizeof s1),
                   dd_shape_str(&x->shape, s2, sizeof s2), dd_shape_str(&idx->shape, s3, sizeof s3),
                   (long long)k);
  scatter_geom g;
  scatter_geometry(in, &g);
  if (idx->data)
    for (int64_t j = 0; j < g.n; j++)
      if (scatter_target(in, &g, j) < 0)
        return dd_fail(err, DD_EFORMAT, "index tuple %lld is out of range for data of shape %s",
                       (long long)j, dd_shape_str(&x->shape, s1, sizeof s1));
  if (out[0]) {
    out[0]->dtype = x->dtype;
    out[0]->shape = x->shape;
  }
  /* backward, "none": one byte per data slice, whether an update won it; "mul": a running
   * product per data element and a prefix product per update element */
  if (p->red == RED_MUL)
    *scratch = ((size_t)dd_tensor_numel(x) + (size_t)dd_tensor_numel(u)) * sizeof(float);
  else
    *scratch = p->red == RED_NONE ? (size_t)g.slices : 0;
  return DD_OK;
}

static void scatternd_forward(const dd_node *node, const dd_tensor *const *in,
                              dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  scatter_geom g;
  scatter_geometry(in, &g);
  size_t es = dd_dtype_size(in[0]->dtype), row = (size_t)g.slice * es;
  char *y = out[0]->data;
  const char *u = in[2]->data;
  if (y != in[0]->data) memcpy(y, in[0]->data, (size_t)dd_tensor_numel(in[0]) * es);
  const scatter_params *p = node->params;
  /* in order, so that the last of repeated indices wins */
  for (int64_t j = 0; j < g.n; j++) {
    int64_t at = scatter_target(in, &g, j);
    if (at < 0) continue;
    if (p->red == RED_NONE) {
      memcpy(y + (size_t)at * row, u + (size_t)j * row, row);
    } else if (in[0]->dtype == DD_F32) {
      float *dst = dd_f32(out[0]) + at * g.slice;
      const float *src = dd_f32(in[2]) + j * g.slice;
      if (p->red == RED_ADD)
        for (int64_t i = 0; i < g.slice; i++) dst[i] += src[i];
      else
        for (int64_t i = 0; i < g.slice; i++) dst[i] *= src[i];
    } else { /* wrapping, as numpy's int64 */
      uint64_t *dst = (uint64_t *)dd_i64(out[0]) + at * g.slice;
      const uint64_t *src = (const uint64_t *)dd_i64(in[2]) + j * g.slice;
      if (p->red == RED_ADD)
        for (int64_t i = 0; i < g.slice; i++) dst[i] += src[i];
      else
        for (int64_t i = 0; i < g.slice; i++) dst[i] *= src[i];
    }
  }
}

/* "mul": at a place p hit by updates u1..um in order, y = x * u1 * ... * um.  Forward, the
 * running product gives each update its prefix x * u1 * ... * u(j-1); backward, the running
 * product of the later updates its suffix; at the end it holds u1 * ... * um for dx. */
static void scatter_mul_backward(const dd_tensor *const *in, const scatter_geom *g,
                                 const float *dy, dd_tensor *const *din, void *scratch) {
  int64_t nx = g->slices * g->slice;
  float *run = scratch;   /* (data) the running product */
  float *pre = run + nx;  /* (updates) each update's prefix product */
  const float *u = dd_f32(in[2]);
  memcpy(run, in[0]->data, (size_t)nx * sizeof *run);
  for (int64_t j = 0; j < g->n; j++) {
    int64_t at = scatter_target(in, g, j);
    if (at < 0) continue;
    for (int64_t i = 0; i < g->slice; i++) {
      pre[j * g->slice + i] = run[at * g->slice + i];
      run[at * g->slice + i] *= u[j * g->slice + i];
    }
  }
  for (int64_t i = 0; i < nx; i++) run[i] = 1.f;
  for (int64_t j = g->n - 1; j >= 0; j--) {
    int64_t at = scatter_target(in, g, j);
    if (at < 0) continue;
    for (int64_t i = 0; i < g->slice; i++) {
      int64_t e = at * g->slice + i;
      if (din[2]) dd_f32(din[2])[j * g->slice + i] += dy[e] * pre[j * g->slice + i] * run[e];
      run[e] *= u[j * g->slice + i];
    }
  }
  if (din[0])
    for (int64_t i = 0; i < nx; i++) dd_f32(din[0])[i] += dy[i] * run[i];
}

/* The winners are found backwards: the first tuple met (the last in order) claims its slice. */
static void scatternd_backward(const dd_node *node, const dd_tensor *const *in,
                               const dd_tensor *const *out, const dd_tensor *const *dout,
                               dd_tensor *const *din, void *scratch) {
  if (!dout[0] || in[0]->dtype != DD_F32 || (!din[0] && !din[2])) return;
  scatter_geom g;
  scatter_geometry(in, &g);
  const scatter_params *p = node->params;
  const float *dy = dd_f32(dout[0]);
  if (p->red == RED_MUL) {
    scatter_mul_backward(in, &g, dy, din, scratch);
    return;
  }
  if (p->red == RED_ADD) { /* every update adds: every one gets its gradient, data all of it */
    for (int64_t j = 0; j < g.n && din[2]; j++) {
      int64_t at = scatter_target(in, &g, j);
      if (at < 0) continue;
      float *du = dd_f32(din[2]) + j * g.slice;
      for (int64_t i = 0; i < g.slice; i++) du[i] += dy[at * g.slice + i];
    }
    int64_t n = g.slices * g.slice;
    float *dx = din[0] ? dd_f32(din[0]) : NULL;
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < (dx ? n : 0); i++) dx[i] += dy[i];
    return;
  }
  uint8_t *claimed = scratch; /* (slices) */
  memset(claimed, 0, (size_t)g.slices);
  for (int64_t j = g.n - 1; j >= 0; j--) {
    int64_t at = scatter_target(in, &g, j);
    if (at < 0 || claimed[at]) continue;
    claimed[at] = 1;
    if (din[2]) {
      float *du = dd_f32(din[2]) + j * g.slice;
      const float *src = dy + at * g.slice;
      for (int64_t i = 0; i < g.slice; i++) du[i] += src[i];
    }
  }
  if (din[0]) {
    float *dx = dd_f32(din[0]);
#pragma omp parallel for if (g.slices * g.slice > DD_PAR_MIN) schedule(static)
    for (int64_t s = 0; s < g.slices; s++) {
      if (claimed[s]) continue;
      for (int64_t i = 0; i < g.slice; i++) dx[s * g.slice + i] += dy[s * g.slice + i];
    }
  }
}

const dd_op dd_op_ScatterND = {"ScatterND", scatternd_init, scatternd_infer, scatternd_forward,
                               scatternd_backward, NULL, 0};
