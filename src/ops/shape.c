/* Constants and the int64 shape arithmetic exporters emit around reshapes: Constant, Shape,
 * Gather, Slice, Cast.  Constant and Shape are folded at plan time; Gather and Slice also
 * move float data and have gradients w.r.t. it. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/common.h"
#include "ops/rows.h"

static int normalize_axis(int64_t axis, int rank, int *out, dd_err *err) {
  if (axis < -(int64_t)rank || axis >= rank)
    return dd_fail(err, DD_EFORMAT, "axis %lld is out of range for %d dims", (long long)axis, rank);
  *out = (int)(axis < 0 ? axis + rank : axis);
  return DD_OK;
}

/* ---- Constant ----
 * The value is the `value` tensor attribute, or one of value_float(s) / value_int(s); the
 * latter are copied into a tensor living in params (one allocation, freed with free()). */

typedef struct const_params {
  const dd_tensor *value; /* the attribute's tensor, or `own` */
  dd_tensor own;
  int64_t data[]; /* own.data: the attribute's values as float or int64 */
} const_params;

static int constant_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"value", "value_float", "value_floats", "value_int",
                                      "value_ints", NULL};
  static const char *const unsupported[] = {"sparse_value", "value_string", "value_strings"};
  for (size_t k = 0; k < sizeof unsupported / sizeof *unsupported; k++)
    if (dd_node_attr(node, unsupported[k]))
      return dd_fail(err, DD_EUNSUPPORTED, "Constant with '%s' is not supported (only float "
                     "and integer tensors)", unsupported[k]);
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->n_attr != 1)
    return dd_fail(err, DD_EFORMAT, "Constant needs exactly one value attribute, it has %d",
                   node->n_attr);
  const dd_attr *a = &node->attrs[0];
  int64_t n = 1;
  int want;
  dd_dtype dt;
  if (!strcmp(a->name, "value")) want = DD_ATTR_TENSOR, dt = DD_F32;
  else if (!strcmp(a->name, "value_float")) want = DD_ATTR_FLOAT, dt = DD_F32;
  else if (!strcmp(a->name, "value_int")) want = DD_ATTR_INT, dt = DD_I64;
  else if (!strcmp(a->name, "value_floats")) want = DD_ATTR_FLOATS, dt = DD_F32, n = a->n;
  else want = DD_ATTR_INTS, dt = DD_I64, n = a->n;
  if (a->type != want || (want == DD_ATTR_TENSOR && !a->t))
    return dd_fail(err, DD_EFORMAT, "Constant attribute '%s' has the wrong type", a->name);
  const_params *p = calloc(1, sizeof *p + (size_t)(n ? n : 1) * 8);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  if (want == DD_ATTR_TENSOR) {
    p->value = a->t;
  } else {
    dd_shape s = {.ndim = want == DD_ATTR_FLOATS || want == DD_ATTR_INTS ? 1 : 0, .d = {n}};
    p->own = dd_tensor_wrap(dt, &s, p->data);
    float *f = dd_f32(&p->own);
    for (int64_t i = 0; i < n; i++) {
      if (want == DD_ATTR_FLOAT) f[i] = a->f;
      else if (want == DD_ATTR_FLOATS) f[i] = a->floats[i];
      else if (want == DD_ATTR_INT) p->data[i] = a->i;
      else p->data[i] = a->ints[i];
    }
    p->value = &p->own;
  }
  node->params = p;
  return DD_OK;
}

static int constant_infer(const dd_node *node, const dd_tensor *const *in,
                          dd_tensor *const *out, size_t *scratch, dd_err *err) {
  const const_params *p = node->params;
  if (node->n_in != 0) return dd_fail(err, DD_EFORMAT, "Constant takes no inputs");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (out[0]) {
    out[0]->dtype = p->value->dtype;
    out[0]->shape = p->value->shape;
  }
  *scratch = 0;
  return DD_OK;
}

static void constant_forward(const dd_node *node, const dd_tensor *const *in,
                             dd_tensor *const *out, void *scratch) {
  const const_params *p = node->params;
  if (!out[0]) return;
  memcpy(out[0]->data, p->value->data,
         (size_t)dd_tensor_numel(p->value) * dd_dtype_size(p->value->dtype));
}

const dd_op dd_op_Constant = {"Constant", constant_init, constant_infer, constant_forward, NULL,
                              NULL, 0};

/* ---- Shape: the input's dims [start, end) as int64 (start/end from opset 15) ---- */

typedef struct shape_params {
  int64_t start, end;
  int has_end;
} shape_params;

static int shape_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"start", "end", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  shape_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->has_end = dd_node_attr(node, "end") != NULL;
  rc = dd_attr_int(node, "start", 0, &p->start, err);
  if (!rc) rc = dd_attr_int(node, "end", 0, &p->end, err);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* ONNX clamps start and end into [0, rank] after adding rank to negative ones. */
static void shape_range(const dd_node *node, int rank, int *lo, int *hi) {
  const shape_params *p = node->params;
  int64_t s = p->start, e = p->has_end ? p->end : rank;
  if (s < 0) s += rank;
  if (e < 0) e += rank;
  s = s < 0 ? 0 : s > rank ? rank : s;
  e = e < 0 ? 0 : e > rank ? rank : e;
  *lo = (int)s;
  *hi = (int)(e > s ? e : s);
}

static int shape_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  if (node->n_in < 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  int lo, hi;
  shape_range(node, in[0]->shape.ndim, &lo, &hi);
  if (out[0]) {
    out[0]->dtype = DD_I64;
    out[0]->shape = (dd_shape){.ndim = 1, .d = {hi - lo}};
  }
  *scratch = 0;
  return DD_OK;
}

/* Reads only the input's shape: its data may not exist yet (folded at plan time). */
static void shape_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                          void *scratch) {
  if (!out[0]) return;
  int lo, hi;
  shape_range(node, in[0]->shape.ndim, &lo, &hi);
  for (int i = lo; i < hi; i++) dd_i64(out[0])[i - lo] = in[0]->shape.d[i];
}

const dd_op dd_op_Shape = {"Shape", shape_init, shape_infer, shape_forward, NULL, NULL,
                           DD_OP_SHAPE_ONLY};

/* ---- Size: the input's element count as an int64 scalar ---- */

static int size_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  return dd_node_check_attrs(node, known, err);
}

static int size_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  if (node->n_in != 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "Size needs 1 input");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (dd_shape_numel(&in[0]->shape) < 0)
    return dd_fail(err, DD_ESHAPE, "the input's element count overflows int64");
  if (out[0]) {
    out[0]->dtype = DD_I64;
    out[0]->shape = (dd_shape){.ndim = 0};
  }
  *scratch = 0;
  return DD_OK;
}

/* Reads only the input's shape, like Shape. */
static void size_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (out[0]) dd_i64(out[0])[0] = dd_shape_numel(&in[0]->shape);
}

const dd_op dd_op_Size = {"Size", size_init, size_infer, size_forward, NULL, NULL,
                          DD_OP_SHAPE_ONLY};

/* ---- Gather: out[o, j..., i] = data[o, idx[j...], i] along `axis` ---- */

static int gather_init(dd_node *node, dd_err *err) {
  if (node->n_in != 2) return dd_fail(err, DD_EFORMAT, "Gather needs 2 inputs, got %d", node->n_in);
  return dd_node_axis_init(node, 0, err);
}

static int gather_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  const dd_axis_params *p = node->params;
  char sb[128];
  if (!in[0] || !in[1]) return dd_fail(err, DD_EFORMAT, "needs data and indices");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  const dd_tensor *x = in[0], *idx = in[1];
  if (x->dtype != DD_F32 && x->dtype != DD_I64 && x->dtype != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "data must be float32, int64 or bool");
  if (idx->dtype != DD_I64) return dd_fail(err, DD_EFORMAT, "indices must be integers");
  int axis = 0;
  int rc = normalize_axis(p->axis, x->shape.ndim, &axis, err);
  if (rc) return rc;
  int rank = x->shape.ndim - 1 + idx->shape.ndim;
  if (rank > DD_MAX_DIMS)
    return dd_fail(err, DD_ELIMIT, "the result would have %d dims, at most %d are supported",
                   rank, DD_MAX_DIMS);
  int64_t d = x->shape.d[axis];
  if (idx->data) /* checked now when known; at run time a bad index reads zeros */
    for (int64_t i = 0; i < dd_tensor_numel(idx); i++) {
      int64_t v = dd_i64(idx)[i];
      if (v < -d || v >= d)
        return dd_fail(err, DD_EFORMAT, "index %lld is out of range for axis %d of shape %s",
                       (long long)v, axis, dd_shape_str(&x->shape, sb, sizeof sb));
    }
  dd_shape o = {.ndim = rank};
  int k = 0;
  for (int i = 0; i < axis; i++) o.d[k++] = x->shape.d[i];
  for (int i = 0; i < idx->shape.ndim; i++) o.d[k++] = idx->shape.d[i];
  for (int i = axis + 1; i < x->shape.ndim; i++) o.d[k++] = x->shape.d[i];
  if (out[0]) {
    out[0]->dtype = x->dtype;
    out[0]->shape = o;
  }
  *scratch = 0;
  return DD_OK;
}

typedef struct gather_geom {
  int64_t outer, d, inner, nidx;
} gather_geom;

static void gather_geometry(const dd_node *node, const dd_tensor *const *in, gather_geom *g) {
  const dd_axis_params *p = node->params;
  const dd_shape *s = &in[0]->shape;
  int axis = 0;
  normalize_axis(p->axis, s->ndim, &axis, NULL);
  g->outer = g->inner = 1;
  for (int i = 0; i < axis; i++) g->outer *= s->d[i];
  for (int i = axis + 1; i < s->ndim; i++) g->inner *= s->d[i];
  g->d = s->d[axis];
  g->nidx = dd_tensor_numel(in[1]);
}

static void gather_forward(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  gather_geom g;
  gather_geometry(node, in, &g);
  size_t es = dd_dtype_size(in[0]->dtype), row = (size_t)g.inner * es;
  const char *x = in[0]->data;
  char *y = out[0]->data;
  const int64_t *idx = dd_i64(in[1]);
  int64_t total = dd_tensor_numel(out[0]);
  /* Each thread copies the bytes that lie in its share of x, the share of x's bytes the op
   * that wrote x gave the same thread (the producers split their outputs in contiguous
   * shares), so the copies read what is in their own core's cache: Swin-T's q, k and v come
   * out of one tensor with one index each (one row), which one thread copied, two thirds of
   * it from the other core (its Gathers 0.67 ms on two threads against 0.31 on one). */
  const size_t xbytes = (size_t)g.outer * (size_t)g.d * row, ybytes = (size_t)total * es;
#pragma omp parallel if (total > DD_PAR_MIN)
  {
    size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    size_t lo = xbytes * t / nt, hi = xbytes * (t + 1) / nt;   /* this thread's x */
    size_t ylo = ybytes * t / nt, yhi = ybytes * (t + 1) / nt; /* and y, for the zeros */
    for (int64_t o = 0; o < g.outer; o++)
      for (int64_t j = 0; j < g.nidx; j++) {
        int64_t v = idx[j] < 0 ? idx[j] + g.d : idx[j];
        size_t d0 = (size_t)(o * g.nidx + j) * row;
        if (v < 0 || v >= g.d) {
          size_t a = d0 > ylo ? d0 : ylo, b = d0 + row < yhi ? d0 + row : yhi;
          if (a < b) memset(y + a, 0, b - a);
          continue;
        }
        size_t s0 = (size_t)(o * g.d + v) * row;
        size_t a = s0 > lo ? s0 : lo, b = s0 + row < hi ? s0 + row : hi;
        if (a < b) memcpy(y + d0 + (a - s0), x + a, b - a);
      }
  }
}

/* Repeated indices add up; parallel over the outer dims only, whose rows are disjoint. */
static void gather_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  gather_geom g;
  gather_geometry(node, in, &g);
  const float *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  const int64_t *idx = dd_i64(in[1]);
  int64_t total = dd_tensor_numel(dout[0]);
#pragma omp parallel for if (total > DD_PAR_MIN && g.outer > 1) schedule(static)
  for (int64_t o = 0; o < g.outer; o++)
    for (int64_t j = 0; j < g.nidx; j++) {
      int64_t v = idx[j] < 0 ? idx[j] + g.d : idx[j];
      if (v < 0 || v >= g.d) continue;
      const float *src = dy + (o * g.nidx + j) * g.inner;
      float *dst = dx + (o * g.d + v) * g.inner;
      for (int64_t i = 0; i < g.inner; i++) dst[i] += src[i];
    }
}

const dd_op dd_op_Gather = {"Gather", gather_init, gather_infer, gather_forward, gather_backward,
                            NULL, 0};

/* ---- Slice ----
 * starts/ends/axes are attributes before opset 10; from 10 on they and steps are inputs,
 * which must be constant.  Out-of-range starts and ends are clamped as ONNX says: into
 * [0, d] for positive steps, [-1, d-1] (start: [0, d-1]) for negative ones. */

typedef struct slice_params {
  int n; /* -1: from the inputs */
  int n_axes;
  int64_t starts[DD_MAX_DIMS], ends[DD_MAX_DIMS], axes[DD_MAX_DIMS];
} slice_params;

static int slice_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"starts", "ends", "axes", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  slice_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  int ne;
  rc = dd_attr_ints(node, "starts", DD_MAX_DIMS, p->starts, &p->n, err);
  if (!rc) rc = dd_attr_ints(node, "ends", DD_MAX_DIMS, p->ends, &ne, err);
  if (!rc) rc = dd_attr_ints(node, "axes", DD_MAX_DIMS, p->axes, &p->n_axes, err);
  if (!rc && p->n != ne)
    rc = dd_fail(err, DD_EFORMAT, "attributes starts and ends differ in length");
  if (!rc && p->n >= 0 && node->n_in > 1)
    rc = dd_fail(err, DD_EFORMAT, "starts/ends given both as attributes and as inputs");
  if (!rc && p->n < 0 && (node->n_in < 3 || node->n_in > 5))
    rc = dd_fail(err, DD_EFORMAT, "Slice needs inputs data, starts, ends and optionally axes "
                 "and steps; got %d inputs", node->n_in);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static int slice_input(const dd_tensor *t, const char *what, int64_t *v, int *n, dd_err *err) {
  if (t->dtype != DD_I64 || t->shape.ndim != 1)
    return dd_fail(err, DD_EFORMAT, "%s must be a 1-D integer tensor", what);
  if (!t->data)
    return dd_fail(err, DD_EUNSUPPORTED, "%s must be constant (an initializer or computed from "
                   "constants), it is computed at run time", what);
  if (t->shape.d[0] > DD_MAX_DIMS)
    return dd_fail(err, DD_EFORMAT, "%s has %lld values", what, (long long)t->shape.d[0]);
  *n = (int)t->shape.d[0];
  memcpy(v, t->data, (size_t)*n * sizeof *v);
  return DD_OK;
}

/* Per input dim: first index, step and count of the slice. */
typedef struct slice_box {
  int64_t start[DD_MAX_DIMS], step[DD_MAX_DIMS], len[DD_MAX_DIMS];
} slice_box;

static int slice_resolve(const dd_node *node, const dd_tensor *const *in, slice_box *b,
                         dd_err *err) {
  const slice_params *p = node->params;
  const dd_shape *s = &in[0]->shape;
  int64_t starts[DD_MAX_DIMS], ends[DD_MAX_DIMS], axes[DD_MAX_DIMS], steps[DD_MAX_DIMS];
  int n = p->n, ne = p->n, na = p->n_axes, ns = -1, rc;
  memcpy(starts, p->starts, sizeof starts);
  memcpy(ends, p->ends, sizeof ends);
  memcpy(axes, p->axes, sizeof axes);
  if (n < 0) {
    na = -1;
    if (!in[1] || !in[2]) return dd_fail(err, DD_EFORMAT, "Slice needs starts and ends");
    if ((rc = slice_input(in[1], "starts", starts, &n, err))) return rc;
    if ((rc = slice_input(in[2], "ends", ends, &ne, err))) return rc;
    if (node->n_in > 3 && in[3] && (rc = slice_input(in[3], "axes", axes, &na, err))) return rc;
    if (node->n_in > 4 && in[4] && (rc = slice_input(in[4], "steps", steps, &ns, err))) return rc;
  }
  if (ne != n || (na >= 0 && na != n) || (ns >= 0 && ns != n))
    return dd_fail(err, DD_EFORMAT, "starts, ends, axes and steps differ in length");
  if (n > s->ndim)
    return dd_fail(err, DD_EFORMAT, "%d starts for %d dims", n, s->ndim);
  for (int i = 0; i < s->ndim; i++) {
    b->start[i] = 0;
    b->step[i] = 1;
    b->len[i] = s->d[i];
  }
  unsigned char seen[DD_MAX_DIMS] = {0};
  for (int k = 0; k < n; k++) {
    int a = k;
    if (na >= 0 && (rc = normalize_axis(axes[k], s->ndim, &a, err))) return rc;
    if (seen[a]) return dd_fail(err, DD_EFORMAT, "axis %d is repeated", a);
    seen[a] = 1;
    int64_t d = s->d[a], st = ns >= 0 ? steps[k] : 1, lo = starts[k], hi = ends[k];
    if (st == 0) return dd_fail(err, DD_EFORMAT, "step 0 on axis %d", a);
    if (lo < 0) lo += d;
    if (hi < 0) hi += d;
    int64_t len;
    if (st > 0) {
      lo = lo < 0 ? 0 : lo > d ? d : lo;
      hi = hi < 0 ? 0 : hi > d ? d : hi;
      len = hi > lo ? (hi - lo - 1) / st + 1 : 0;
    } else {
      lo = lo < 0 ? 0 : lo > d - 1 ? d - 1 : lo;
      hi = hi < -1 ? -1 : hi > d - 1 ? d - 1 : hi;
      if (lo <= hi) len = 0;
      else if (st == INT64_MIN) len = 1; /* -st would overflow */
      else len = (lo - hi - 1) / -st + 1;
    }
    b->start[a] = len ? lo : 0;
    b->step[a] = len > 1 ? st : 1; /* a step never taken must not overflow the offsets */
    b->len[a] = len;
  }
  return DD_OK;
}

static int slice_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  if (!in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  if (in[0]->dtype != DD_F32 && in[0]->dtype != DD_I64 && in[0]->dtype != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "input must be float32, int64 or bool");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  slice_box b;
  int rc = slice_resolve(node, in, &b, err);
  if (rc) return rc;
  if (out[0]) {
    out[0]->dtype = in[0]->dtype;
    out[0]->shape.ndim = in[0]->shape.ndim;
    for (int i = 0; i < in[0]->shape.ndim; i++) out[0]->shape.d[i] = b.len[i];
  }
  *scratch = 0;
  return DD_OK;
}

/* The output walked in rows (ops/rows.h): dim i from start[i], step[i] apart. */
static void slice_rows(const dd_node *node, const dd_tensor *const *in, dd_rows *w) {
  slice_box b;
  slice_resolve(node, in, &b, NULL);
  const dd_shape *s = &in[0]->shape;
  int64_t xs[DD_MAX_DIMS], base = 0, acc = 1;
  for (int i = s->ndim - 1; i >= 0; i--) {
    base += b.start[i] * acc;
    xs[i] = b.step[i] * acc;
    acc *= s->d[i];
  }
  dd_rows_make(w, s->ndim, b.len, xs, base);
}

static void slice_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                          void *scratch) {
  if (!out[0]) return;
  dd_rows w;
  slice_rows(node, in, &w);
  dd_rows_gather(&w, in[0]->data, out[0]->data, dd_dtype_size(in[0]->dtype), 1);
}

/* Distinct output elements come from distinct input elements: rows write disjoint places. */
static void slice_backward(const dd_node *node, const dd_tensor *const *in,
                           const dd_tensor *const *out, const dd_tensor *const *dout,
                           dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  dd_rows w;
  slice_rows(node, in, &w);
  dd_rows_scatter_add(&w, dd_f32(dout[0]), dd_f32(din[0]), 1);
}

const dd_op dd_op_Slice = {"Slice", slice_init, slice_infer, slice_forward, slice_backward, NULL,
                           0};

/* ---- Cast: between float32 (1), int64 (7) and bool (9) ---- */

typedef struct cast_params {
  dd_dtype to;
} cast_params;

static int cast_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"to", "saturate", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  int64_t to;
  rc = dd_attr_int(node, "to", -1, &to, err);
  if (rc) return rc;
  if (to == -1) return dd_fail(err, DD_EFORMAT, "Cast needs the 'to' attribute");
  if (to != DD_F32 && to != DD_I64 && to != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "Cast to ONNX type %lld is not supported (only FLOAT, "
                   "1, INT64, 7, and BOOL, 9)", (long long)to);
  cast_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->to = (dd_dtype)to;
  node->params = p;
  return DD_OK;
}

static int cast_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  const cast_params *p = node->params;
  if (node->n_in != 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs one input");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (in[0]->dtype != DD_F32 && in[0]->dtype != DD_I64 && in[0]->dtype != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "input must be float32, int64 or bool");
  if (out[0]) {
    out[0]->dtype = p->to;
    out[0]->shape = in[0]->shape;
  }
  *scratch = 0;
  return DD_OK;
}

/* float -> int64 truncates toward zero; NaN gives 0 and out-of-range values saturate, where
 * a plain C conversion would be undefined. */
static inline int64_t f2i(float v) {
  if (v != v) return 0;
  if (v >= 9.2233720368547758e18f) return INT64_MAX;
  if (v < -9.2233720368547758e18f) return INT64_MIN;
  return (int64_t)v;
}

#define CAST_LOOP(TX, TY, EXPR)                                          \
  do {                                                                   \
    const TX *x = (const TX *)in[0]->data;                               \
    TY *y = (TY *)out[0]->data;                                          \
    _Pragma("omp parallel for if (n > DD_PAR_MIN) schedule(static)")     \
    for (int64_t i = 0; i < n; i++) y[i] = EXPR;                         \
  } while (0)

/* To bool: nonzero is true (NaN too, as numpy's astype(bool)); from bool: 0 or 1. */
static void cast_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (!out[0]) return;
  int64_t n = dd_tensor_numel(in[0]);
  dd_dtype from = in[0]->dtype, to = out[0]->dtype;
  if (from == to) memcpy(out[0]->data, in[0]->data, (size_t)n * dd_dtype_size(to));
  else if (from == DD_F32 && to == DD_I64) CAST_LOOP(float, int64_t, f2i(x[i]));
  else if (from == DD_F32) CAST_LOOP(float, uint8_t, x[i] != 0.f);
  else if (from == DD_I64 && to == DD_F32) CAST_LOOP(int64_t, float, (float)x[i]);
  else if (from == DD_I64) CAST_LOOP(int64_t, uint8_t, x[i] != 0);
  else if (to == DD_F32) CAST_LOOP(uint8_t, float, (float)x[i]);
  else CAST_LOOP(uint8_t, int64_t, (int64_t)x[i]);
}

/* float -> float passes the gradient; a cast to int64 or bool is piecewise constant: zero. */
static void cast_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  const cast_params *p = node->params;
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32 || p->to != DD_F32) return;
  const float *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}

const dd_op dd_op_Cast = {"Cast", cast_init, cast_infer, cast_forward, cast_backward, NULL, 0};

/* A 1-D int64 input that must be known at plan time, since the output's shape is made of its
 * values. */
static int const_ints(const dd_tensor *t, const char *what, dd_err *err) {
  if (t->dtype != DD_I64 || t->shape.ndim != 1)
    return dd_fail(err, DD_EFORMAT, "%s must be a 1-D integer tensor", what);
  if (!t->data)
    return dd_fail(err, DD_EUNSUPPORTED, "%s must be constant (an initializer or computed from "
                   "constants), it is computed at run time", what);
  return DD_OK;
}

/* ---- ConstantOfShape: a tensor of the input's shape filled with `value` (float 0 when
 * absent; a one-element float32, int64 or bool tensor). ---- */

typedef struct cos_params {
  dd_dtype dtype;
  union {
    float f;
    int64_t i;
    uint8_t b;
  } v;
} cos_params;

static int cos_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"value", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->n_in != 1)
    return dd_fail(err, DD_EFORMAT, "ConstantOfShape needs 1 input, got %d", node->n_in);
  cos_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->dtype = DD_F32;
  const dd_attr *a = dd_node_attr(node, "value");
  if (a) {
    if (a->type != DD_ATTR_TENSOR || !a->t || dd_tensor_numel(a->t) != 1) {
      free(p);
      return dd_fail(err, DD_EFORMAT, "ConstantOfShape 'value' must be a one-element tensor");
    }
    p->dtype = a->t->dtype;
    memcpy(&p->v, a->t->data, dd_dtype_size(p->dtype));
  }
  node->params = p;
  return DD_OK;
}

static int cos_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  const cos_params *p = node->params;
  if (!in[0]) return dd_fail(err, DD_EFORMAT, "needs the shape input");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  int rc = const_ints(in[0], "the shape input", err);
  if (rc) return rc;
  int64_t nd = in[0]->shape.d[0];
  if (nd > DD_MAX_DIMS)
    return dd_fail(err, DD_ELIMIT, "the result would have %lld dims, at most %d are supported",
                   (long long)nd, DD_MAX_DIMS);
  dd_shape s = {.ndim = (int)nd};
  for (int i = 0; i < s.ndim; i++) {
    s.d[i] = dd_i64(in[0])[i];
    if (s.d[i] < 0)
      return dd_fail(err, DD_EFORMAT, "dim %d of the shape is negative (%lld)", i,
                     (long long)s.d[i]);
  }
  if (dd_shape_numel(&s) < 0) return dd_fail(err, DD_ELIMIT, "the shape's size overflows");
  if (out[0]) {
    out[0]->dtype = p->dtype;
    out[0]->shape = s;
  }
  *scratch = 0;
  return DD_OK;
}

static void cos_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  const cos_params *p = node->params;
  if (!out[0]) return;
  int64_t n = dd_tensor_numel(out[0]);
  if (p->dtype == DD_F32) {
    float *y = dd_f32(out[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = p->v.f;
  } else if (p->dtype == DD_I64) {
    int64_t *y = dd_i64(out[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = p->v.i;
  } else {
    memset(out[0]->data, p->v.b, (size_t)n);
  }
}

const dd_op dd_op_ConstantOfShape = {"ConstantOfShape", cos_init, cos_infer, cos_forward, NULL,
                                     NULL, 0};

/* ---- Range: start, start + delta, ... up to limit (excluded), n = max(ceil((limit - start)
 * / delta), 0); three scalars of one type, float32 or int64, known at plan time. ---- */

static int range_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  if (node->n_in != 3)
    return dd_fail(err, DD_EFORMAT, "Range needs 3 inputs (start, limit, delta), got %d",
                   node->n_in);
  return dd_node_check_attrs(node, known, err);
}

/* The element count, or -1 when it exceeds 2^40 (no tensor is that large). */
static int64_t range_count(const dd_tensor *const *in) {
  if (in[0]->dtype == DD_F32) {
    double st = dd_f32(in[0])[0], li = dd_f32(in[1])[0], de = dd_f32(in[2])[0];
    double n = ceil((li - st) / de);
    if (n != n || n > (double)(INT64_C(1) << 40)) return -1;
    return n > 0 ? (int64_t)n : 0;
  }
  int64_t st = dd_i64(in[0])[0], li = dd_i64(in[1])[0], de = dd_i64(in[2])[0];
  /* the distance and the step as magnitudes in uint64_t: no signed overflow */
  if ((de > 0 && li <= st) || (de < 0 && li >= st)) return 0;
  uint64_t dist = de > 0 ? (uint64_t)li - (uint64_t)st : (uint64_t)st - (uint64_t)li;
  uint64_t step = de > 0 ? (uint64_t)de : 0 - (uint64_t)de;
  uint64_t n = dist / step + (dist % step != 0);
  return n > (UINT64_C(1) << 40) ? -1 : (int64_t)n;
}

static int range_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  static const char *const names[] = {"start", "limit", "delta"};
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  for (int k = 0; k < 3; k++) {
    if (!in[k]) return dd_fail(err, DD_EFORMAT, "needs %s", names[k]);
    if (in[k]->dtype != DD_F32 && in[k]->dtype != DD_I64)
      return dd_fail(err, DD_EUNSUPPORTED, "%s is %s; Range supports float32 and int64",
                     names[k], dd_dtype_name(in[k]->dtype));
    if (in[k]->dtype != in[0]->dtype)
      return dd_fail(err, DD_EFORMAT, "start, limit and delta have different types");
    if (dd_tensor_numel(in[k]) != 1 || in[k]->shape.ndim > 1)
      return dd_fail(err, DD_EFORMAT, "%s must be a scalar", names[k]);
    if (!in[k]->data)
      return dd_fail(err, DD_EUNSUPPORTED, "%s must be constant (an initializer or computed "
                     "from constants), it is computed at run time", names[k]);
  }
  if (in[0]->dtype == DD_F32 ? dd_f32(in[2])[0] == 0.f : dd_i64(in[2])[0] == 0)
    return dd_fail(err, DD_EFORMAT, "delta is 0");
  int64_t n = range_count(in);
  if (n < 0) return dd_fail(err, DD_ELIMIT, "Range has too many elements (or a NaN bound)");
  if (out[0]) {
    out[0]->dtype = in[0]->dtype;
    out[0]->shape = (dd_shape){.ndim = 1, .d = {n}};
  }
  *scratch = 0;
  return DD_OK;
}

static void range_forward(const dd_node *node, const dd_tensor *const *in,
                          dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  int64_t n = out[0]->shape.d[0];
  if (out[0]->dtype == DD_F32) {
    float st = dd_f32(in[0])[0], de = dd_f32(in[2])[0], *y = dd_f32(out[0]);
    for (int64_t i = 0; i < n; i++) y[i] = st + (float)i * de;
  } else {
    /* wrapping via uint64_t; the last value is below limit, so nothing wraps in fact */
    uint64_t st = (uint64_t)dd_i64(in[0])[0], de = (uint64_t)dd_i64(in[2])[0];
    int64_t *y = dd_i64(out[0]);
    for (int64_t i = 0; i < n; i++) y[i] = (int64_t)(st + (uint64_t)i * de);
  }
}

const dd_op dd_op_Range = {"Range", range_init, range_infer, range_forward, NULL, NULL, 0};
