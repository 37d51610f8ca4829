/* Ops that only move data: Flatten, Reshape, Dropout (inference: the identity), Identity,
 * Transpose, Pad (constant, edge and reflect modes), Squeeze, Unsqueeze, Split, Expand, Tile.
 * Forward works on float32, int64 and bool (shape arithmetic and masks pass through them at
 * plan time); the gradient (float32 only) is the inverse movement, accumulated into din.
 *
 * Shape operands (Reshape's shape, Squeeze/Unsqueeze's axes, Pad's pads, Split's split,
 * Expand's shape, Tile's repeats) must be known at plan time: attributes, or inputs that are
 * initializers or folded from constants. */
#include <stdlib.h>
#include <string.h>

#include "ops/common.h"
#include "ops/rows.h"

/* ---- shared helpers ---- */

/* Copies the values of a constant 1-D (or scalar) int64 input into vals[0..*n-1]. */
static int const_ints(const dd_tensor *t, const char *what, int max, int64_t *vals, int *n,
                      dd_err *err) {
  if (t->dtype != DD_I64 || t->shape.ndim > 1)
    return dd_fail(err, DD_EFORMAT, "%s must be a 1-D int64 tensor", what);
  if (!t->data)
    return dd_fail(err, DD_EUNSUPPORTED, "%s must be constant (an initializer or computed from "
                   "constants), it is computed at run time", what);
  int64_t k = dd_tensor_numel(t);
  if (k > max) return dd_fail(err, DD_ELIMIT, "%s has %lld values, at most %d are supported", what,
                              (long long)k, max);
  memcpy(vals, t->data, (size_t)k * sizeof *vals);
  *n = (int)k;
  return DD_OK;
}

static int data_input_ok(const dd_node *node, const dd_tensor *const *in, dd_err *err) {
  if (node->n_in < 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  if (in[0]->dtype != DD_F32 && in[0]->dtype != DD_I64 && in[0]->dtype != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "input must be float32, int64 or bool");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  return DD_OK;
}

static int no_params_init(dd_node *node, const char *const *known, dd_err *err) {
  return dd_node_check_attrs(node, known, err);
}

static int set_out(dd_tensor *const *out, dd_dtype dt, const dd_shape *s, size_t *scratch) {
  if (out[0]) {
    out[0]->dtype = dt;
    out[0]->shape = *s;
  }
  *scratch = 0;
  return DD_OK;
}

/* Ops whose output is the input's bytes: a plan may alias them (the copy is skipped), and
 * their backward reads neither tensor. */
#define COPY_FLAGS (DD_OP_ALIAS | DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X)

/* Same elements in the same order under another shape. */
static void copy_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (!out[0]) return;
  int64_t n = dd_tensor_numel(in[0]);
  memcpy(out[0]->data, in[0]->data, (size_t)n * dd_dtype_size(in[0]->dtype));
}

static void copy_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  const float *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}

/* n elements of `es` bytes at dst, each a copy of the element at v.  The sizes the dtypes
 * have are spelled out so that each memcpy is one store. */
static void fill_elems(char *dst, const char *v, int64_t n, size_t es) {
#define FILL_ES(ES) for (int64_t i = 0; i < n; i++) memcpy(dst + i * (ES), v, (ES))
  switch (es) {
  case 1: FILL_ES(1); break;
  case 4: FILL_ES(4); break;
  case 8: FILL_ES(8); break;
  default: FILL_ES(es); break;
  }
#undef FILL_ES
}

/* Normalizes `axis` in [-rank, rank) (or [-rank, rank] when `end_ok`) into *out. */
static int norm_axis(int64_t axis, int rank, int end_ok, int *out, dd_err *err) {
  int hi = rank + (end_ok ? 1 : 0);
  if (axis < -(int64_t)rank || axis >= hi)
    return dd_fail(err, DD_EFORMAT, "axis %lld is out of range for %d dims", (long long)axis, rank);
  *out = (int)(axis < 0 ? axis + rank : axis);
  return DD_OK;
}

/* ---- Identity ---- */

static int identity_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  return no_params_init(node, known, err);
}

static int identity_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                          size_t *scratch, dd_err *err) {
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  return set_out(out, in[0]->dtype, &in[0]->shape, scratch);
}

const dd_op dd_op_Identity = {"Identity", identity_init, identity_infer, copy_forward,
                              copy_backward, NULL, COPY_FLAGS};

/* ---- Flatten: [d0..d(axis-1)] x [d(axis)..] ---- */

static int flatten_init(dd_node *node, dd_err *err) { return dd_node_axis_init(node, 1, err); }

static int flatten_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         size_t *scratch, dd_err *err) {
  const dd_axis_params *p = node->params;
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  const dd_shape *s = &in[0]->shape;
  int axis = 0;
  rc = norm_axis(p->axis, s->ndim, 1, &axis, err);
  if (rc) return rc;
  dd_shape o = {.ndim = 2, .d = {1, 1}};
  for (int i = 0; i < s->ndim; i++) o.d[i < axis ? 0 : 1] *= s->d[i];
  return set_out(out, in[0]->dtype, &o, scratch);
}

const dd_op dd_op_Flatten = {"Flatten", flatten_init, flatten_infer, copy_forward, copy_backward,
                             NULL, COPY_FLAGS};

/* ---- Reshape ----
 * The target shape is the constant second input (opset >= 5) or the `shape` attribute
 * (opset 1).  0 copies the input's dim at that position unless allowzero=1; one -1 is
 * inferred from the element count. */

typedef struct reshape_params {
  int64_t allowzero;
  int n_attr_shape; /* -1: from the input */
  int64_t attr_shape[DD_MAX_DIMS];
} reshape_params;

static int reshape_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"allowzero", "shape", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  reshape_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_attr_int(node, "allowzero", 0, &p->allowzero, err);
  if (!rc) rc = dd_attr_ints(node, "shape", DD_MAX_DIMS, p->attr_shape, &p->n_attr_shape, err);
  if (!rc && p->n_attr_shape < 0 && node->n_in < 2)
    rc = dd_fail(err, DD_EFORMAT, "Reshape needs a shape input");
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static int reshape_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         size_t *scratch, dd_err *err) {
  const reshape_params *p = node->params;
  char s1[128], s2[128];
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  int64_t sh[DD_MAX_DIMS];
  int n = p->n_attr_shape;
  if (n >= 0) {
    memcpy(sh, p->attr_shape, sizeof sh);
  } else {
    if (!in[1]) return dd_fail(err, DD_EFORMAT, "Reshape needs a shape input");
    rc = const_ints(in[1], "the shape input", DD_MAX_DIMS, sh, &n, err);
    if (rc) return rc;
  }
  const dd_shape *is = &in[0]->shape;
  dd_shape o = {.ndim = n};
  int infer_at = -1;
  int64_t known = 1;
  for (int i = 0; i < n; i++) {
    int64_t d = sh[i];
    if (d == 0 && !p->allowzero) {
      if (i >= is->ndim)
        return dd_fail(err, DD_ESHAPE, "shape[%d] = 0 copies input dim %d, but the input %s has "
                       "only %d dims", i, i, dd_shape_str(is, s1, sizeof s1), is->ndim);
      d = is->d[i];
    }
    if (d == -1) {
      if (infer_at >= 0) return dd_fail(err, DD_ESHAPE, "shape has more than one -1");
      infer_at = i;
      continue;
    }
    if (d < 0) return dd_fail(err, DD_ESHAPE, "shape[%d] = %lld is negative", i, (long long)d);
    o.d[i] = d;
    if (d && known > INT64_MAX / d) return dd_fail(err, DD_ELIMIT, "shape is too large");
    known *= d;
  }
  int64_t numel = dd_tensor_numel(in[0]);
  if (infer_at >= 0) {
    if (known == 0 || numel % known)
      return dd_fail(err, DD_ESHAPE, "cannot infer the -1 of the shape: %lld elements are not "
                     "a multiple of %lld", (long long)numel, (long long)known);
    o.d[infer_at] = numel / known;
    known = numel;
  }
  if (known != numel)
    return dd_fail(err, DD_ESHAPE, "cannot reshape %s (%lld elements) to %s",
                   dd_shape_str(is, s1, sizeof s1), (long long)numel,
                   dd_shape_str(&o, s2, sizeof s2));
  return set_out(out, in[0]->dtype, &o, scratch);
}

const dd_op dd_op_Reshape = {"Reshape", reshape_init, reshape_infer, copy_forward, copy_backward,
                             NULL, COPY_FLAGS};

/* ---- Dropout: inference only, so the identity (also in training mode with ratio 0) ----
 * The optional mask output is all ones ("keep"): bool since opset 10, before it the
 * input's type. */

static int dropout_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"ratio", "seed", "is_test", NULL};
  if (node->n_in < 1 || node->n_in > 3)
    return dd_fail(err, DD_EFORMAT, "Dropout takes 1 to 3 inputs, got %d", node->n_in);
  return dd_node_check_attrs(node, known, err);
}

static int dropout_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         size_t *scratch, dd_err *err) {
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  if (node->n_in > 2 && in[2]) {
    const dd_tensor *t = in[2];
    if (!t->data || dd_tensor_numel(t) != 1)
      return dd_fail(err, DD_EUNSUPPORTED, "Dropout's training_mode must be a constant scalar");
    int on = t->dtype == DD_I64    ? dd_i64(t)[0] != 0
             : t->dtype == DD_BOOL ? dd_bool(t)[0] != 0
                                   : dd_f32(t)[0] != 0.f;
    /* training with ratio 0 keeps everything: still the identity.  torchvision 0.14's
     * Swin calls F.dropout(attn, p=0.0) in its default training mode, so its exports say
     * training_mode=true with a ratio of 0. */
    float ratio = 0.5f; /* the default when the ratio input is omitted */
    if (on && node->n_in > 1 && in[1]) {
      const dd_tensor *r = in[1];
      if (!r->data || dd_tensor_numel(r) != 1 || r->dtype != DD_F32)
        return dd_fail(err, DD_EUNSUPPORTED, "Dropout in training mode needs a constant "
                       "float ratio");
      ratio = dd_f32(r)[0];
    }
    if (on && ratio != 0.f)
      return dd_fail(err, DD_EUNSUPPORTED, "Dropout with training_mode=true and ratio %g is "
                     "not supported; only inference (the identity) is", (double)ratio);
  }
  if (node->n_out > 1 && out[1]) {
    out[1]->dtype = node->opset > 0 && node->opset < 10 ? in[0]->dtype : DD_BOOL;
    out[1]->shape = in[0]->shape;
  }
  return set_out(out, in[0]->dtype, &in[0]->shape, scratch);
}

static void dropout_forward(const dd_node *node, const dd_tensor *const *in,
                            dd_tensor *const *out, void *scratch) {
  copy_forward(node, in, out, scratch);
  if (node->n_out > 1 && out[1]) {
    int64_t n = dd_tensor_numel(out[1]);
    if (out[1]->dtype == DD_F32)
      for (int64_t i = 0; i < n; i++) dd_f32(out[1])[i] = 1.f;
    else if (out[1]->dtype == DD_BOOL)
      memset(out[1]->data, 1, (size_t)n);
    else
      for (int64_t i = 0; i < n; i++) dd_i64(out[1])[i] = 1;
  }
}

const dd_op dd_op_Dropout = {"Dropout", dropout_init, dropout_infer, dropout_forward,
                             copy_backward, NULL, COPY_FLAGS};

/* ---- Squeeze / Unsqueeze ----
 * Axes are an attribute before opset 13 and a constant input from 13 on; the node's own
 * form decides. */

typedef struct axes_params {
  int n_axes; /* -1: none in the attributes */
  int64_t axes[DD_MAX_DIMS];
} axes_params;

static int axes_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"axes", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  axes_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_attr_ints(node, "axes", DD_MAX_DIMS, p->axes, &p->n_axes, err);
  if (!rc && p->n_axes >= 0 && node->n_in > 1 && node->in[1] >= 0)
    rc = dd_fail(err, DD_EFORMAT, "axes given both as attribute and as input");
  if (!rc && node->n_in > 2)
    rc = dd_fail(err, DD_EFORMAT, "takes at most 2 inputs, got %d", node->n_in);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* The axes of the node, *n = -1 when it has none. */
static int node_axes(const dd_node *node, const dd_tensor *const *in, int64_t *axes, int *n,
                     dd_err *err) {
  const axes_params *p = node->params;
  *n = p->n_axes;
  memcpy(axes, p->axes, sizeof p->axes);
  if (node->n_in > 1 && in[1]) return const_ints(in[1], "the axes input", DD_MAX_DIMS, axes, n, err);
  return DD_OK;
}

static int squeeze_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         size_t *scratch, dd_err *err) {
  char sb[128];
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  int64_t axes[DD_MAX_DIMS];
  int n;
  rc = node_axes(node, in, axes, &n, err);
  if (rc) return rc;
  const dd_shape *s = &in[0]->shape;
  unsigned char drop[DD_MAX_DIMS] = {0};
  if (n < 0) { /* every dim of size 1 */
    for (int i = 0; i < s->ndim; i++) drop[i] = s->d[i] == 1;
  } else {
    for (int k = 0; k < n; k++) {
      int a = 0;
      rc = norm_axis(axes[k], s->ndim, 0, &a, err);
      if (rc) return rc;
      if (s->d[a] != 1)
        return dd_fail(err, DD_ESHAPE, "cannot squeeze axis %lld of shape %s: its size is not 1",
                       (long long)axes[k], dd_shape_str(s, sb, sizeof sb));
      drop[a] = 1;
    }
  }
  dd_shape o = {0};
  for (int i = 0; i < s->ndim; i++)
    if (!drop[i]) o.d[o.ndim++] = s->d[i];
  return set_out(out, in[0]->dtype, &o, scratch);
}

static int unsqueeze_infer(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, size_t *scratch, dd_err *err) {
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  int64_t axes[DD_MAX_DIMS];
  int n;
  rc = node_axes(node, in, axes, &n, err);
  if (rc) return rc;
  if (n < 0) return dd_fail(err, DD_EFORMAT, "Unsqueeze needs axes");
  const dd_shape *s = &in[0]->shape;
  int rank = s->ndim + n;
  if (rank > DD_MAX_DIMS)
    return dd_fail(err, DD_ELIMIT, "the result would have %d dims, at most %d are supported",
                   rank, DD_MAX_DIMS);
  unsigned char ins[DD_MAX_DIMS] = {0};
  for (int k = 0; k < n; k++) {
    int a = 0;
    rc = norm_axis(axes[k], rank, 0, &a, err);
    if (rc) return rc;
    if (ins[a]) return dd_fail(err, DD_EFORMAT, "axis %lld is repeated", (long long)axes[k]);
    ins[a] = 1;
  }
  dd_shape o = {.ndim = rank};
  for (int i = 0, j = 0; i < rank; i++) o.d[i] = ins[i] ? 1 : s->d[j++];
  return set_out(out, in[0]->dtype, &o, scratch);
}

const dd_op dd_op_Squeeze = {"Squeeze", axes_init, squeeze_infer, copy_forward, copy_backward,
                             NULL, COPY_FLAGS};
const dd_op dd_op_Unsqueeze = {"Unsqueeze", axes_init, unsqueeze_infer, copy_forward,
                               copy_backward, NULL, COPY_FLAGS};

/* ---- Transpose ----
 * The output is walked in rows of its innermost dim after dropping size-1 dims and merging
 * output dims that are also neighbours, in order, in the input (ops/rows.h). */

typedef struct transpose_params {
  int n_perm; /* -1: reverse the dims */
  int64_t perm[DD_MAX_DIMS];
} transpose_params;

static int transpose_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"perm", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  transpose_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_attr_ints(node, "perm", DD_MAX_DIMS, p->perm, &p->n_perm, err);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static void node_perm(const dd_node *node, int rank, int *perm) {
  const transpose_params *p = node->params;
  for (int i = 0; i < rank; i++) perm[i] = p->n_perm < 0 ? rank - 1 - i : (int)p->perm[i];
}

static int transpose_infer(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, size_t *scratch, dd_err *err) {
  const transpose_params *p = node->params;
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  const dd_shape *s = &in[0]->shape;
  if (p->n_perm >= 0 && p->n_perm != s->ndim)
    return dd_fail(err, DD_ESHAPE, "perm has %d values but the input has %d dims", p->n_perm,
                   s->ndim);
  unsigned char seen[DD_MAX_DIMS] = {0};
  for (int i = 0; i < p->n_perm; i++) {
    if (p->perm[i] < 0 || p->perm[i] >= s->ndim || seen[p->perm[i]])
      return dd_fail(err, DD_EFORMAT, "perm is not a permutation of 0..%d", s->ndim - 1);
    seen[p->perm[i]] = 1;
  }
  int perm[DD_MAX_DIMS];
  node_perm(node, s->ndim, perm);
  dd_shape o = {.ndim = s->ndim};
  for (int i = 0; i < s->ndim; i++) o.d[i] = s->d[perm[i]];
  return set_out(out, in[0]->dtype, &o, scratch);
}

/* The output walked in rows (ops/rows.h): output dim i is input dim perm[i]. */
static void transpose_rows(const dd_node *node, const dd_shape *s, dd_rows *w) {
  int perm[DD_MAX_DIMS];
  node_perm(node, s->ndim, perm);
  int64_t st[DD_MAX_DIMS], len[DD_MAX_DIMS], xs[DD_MAX_DIMS], acc = 1;
  for (int i = s->ndim - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s->d[i];
  }
  for (int i = 0; i < s->ndim; i++) {
    len[i] = s->d[perm[i]];
    xs[i] = st[perm[i]];
  }
  dd_rows_make(w, s->ndim, len, xs, 0);
}

static void transpose_forward(const dd_node *node, const dd_tensor *const *in,
                              dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  dd_rows w;
  transpose_rows(node, &in[0]->shape, &w);
  dd_rows_gather(&w, in[0]->data, out[0]->data, dd_dtype_size(in[0]->dtype), 1);
}

/* Each output element comes from one input element: the rows write disjoint places. */
static void transpose_backward(const dd_node *node, const dd_tensor *const *in,
                               const dd_tensor *const *out, const dd_tensor *const *dout,
                               dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  dd_rows w;
  transpose_rows(node, &in[0]->shape, &w);
  dd_rows_scatter_add(&w, dd_f32(dout[0]), dd_f32(din[0]), 1);
}

const dd_op dd_op_Transpose = {"Transpose", transpose_init, transpose_infer, transpose_forward,
                               transpose_backward, NULL, 0};

/* Whether Transpose node `node` keeps its input's elements in order on input shape x: the
 * dims larger than 1 stay in their order, only dims of 1 move (torch's MultiheadAttention
 * turns (1, N, C) tokens into (N, 1, C) and back).  The planner then aliases it as it does a
 * Reshape (plan/memory.c). */
int dd_transpose_keeps_order(const dd_node *node, const dd_shape *x);
int dd_transpose_keeps_order(const dd_node *node, const dd_shape *x) {
  if (node->op != &dd_op_Transpose || !node->params || x->ndim < 1 || x->ndim > DD_MAX_DIMS)
    return 0;
  const transpose_params *p = node->params;
  if (p->n_perm >= 0 && p->n_perm != x->ndim) return 0;
  int perm[DD_MAX_DIMS], last = -1;
  node_perm(node, x->ndim, perm);
  for (int i = 0; i < x->ndim; i++) {
    if (x->d[perm[i]] == 1) continue;
    if (perm[i] < last) return 0;
    last = perm[i];
  }
  return 1;
}

/* ---- Pad ----
 * pads = [x1_begin, x2_begin, ..., x1_end, x2_end, ...].  Before opset 11 pads and value
 * are attributes (`paddings` in opset 1); from 11 on they are inputs, pads constant, and from
 * 18 an optional axes input says which dims the pads are for.
 * Modes: constant (the value; negative pads crop), edge (the nearest element repeated) and
 * reflect (mirrored about the first and last element, without repeating them, so a pad must
 * be smaller than its dim).  Edge and reflect take no negative pads: what a crop combined
 * with a mirror means is not settled by the spec. */

enum { PAD_CONSTANT, PAD_EDGE, PAD_REFLECT };
static const char *const pad_mode_names[] = {"constant", "edge", "reflect"};

typedef struct pad_params {
  int mode;
  int n_pads; /* -1: from the input */
  int64_t pads[2 * DD_MAX_DIMS];
  float value;
} pad_params;

static int pad_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"mode", "pads", "paddings", "value", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  const char *mode;
  rc = dd_attr_string(node, "mode", "constant", &mode, err);
  if (rc) return rc;
  int m = 0;
  while (m < 3 && strcmp(mode, pad_mode_names[m]) != 0) m++;
  if (m == 3)
    return dd_fail(err, DD_EUNSUPPORTED, "Pad mode '%s' is not supported (only 'constant', "
                   "'edge' and 'reflect')", mode);
  pad_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->mode = m;
  const char *name = dd_node_attr(node, "pads") ? "pads" : "paddings";
  rc = dd_attr_ints(node, name, 2 * DD_MAX_DIMS, p->pads, &p->n_pads, err);
  if (!rc) rc = dd_attr_float(node, "value", 0.f, &p->value, err);
  if (!rc && p->n_pads < 0 && node->n_in < 2)
    rc = dd_fail(err, DD_EFORMAT, "Pad needs pads (an attribute before opset 11, an input after)");
  if (!rc && p->n_pads >= 0 && node->n_in > 1)
    rc = dd_fail(err, DD_EFORMAT, "pads given both as attribute and as input");
  if (!rc && node->n_in > 4) rc = dd_fail(err, DD_EFORMAT, "Pad takes at most 4 inputs");
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* Begin and end pads per dim of the input. */
static int pad_resolve(const dd_node *node, const dd_tensor *const *in, int64_t *begin,
                       int64_t *end, dd_err *err) {
  const pad_params *p = node->params;
  int rank = in[0]->shape.ndim;
  int64_t pads[2 * DD_MAX_DIMS];
  int n = p->n_pads;
  memcpy(pads, p->pads, sizeof pads);
  if (n < 0) {
    if (!in[1]) return dd_fail(err, DD_EFORMAT, "Pad needs pads");
    int rc = const_ints(in[1], "the pads input", 2 * DD_MAX_DIMS, pads, &n, err);
    if (rc) return rc;
  }
  int64_t axes[DD_MAX_DIMS];
  int na = rank;
  for (int i = 0; i < rank; i++) axes[i] = i;
  if (node->n_in > 3 && in[3]) {
    int rc = const_ints(in[3], "the axes input", DD_MAX_DIMS, axes, &na, err);
    if (rc) return rc;
  }
  if (n != 2 * na)
    return dd_fail(err, DD_ESHAPE, "pads has %d values, expected %d (2 per padded dim)", n, 2 * na);
  for (int i = 0; i < rank; i++) begin[i] = end[i] = 0;
  unsigned char seen[DD_MAX_DIMS] = {0};
  for (int k = 0; k < na; k++) {
    int a = 0;
    int rc = norm_axis(axes[k], rank, 0, &a, err);
    if (rc) return rc;
    if (seen[a]) return dd_fail(err, DD_EFORMAT, "axis %lld is repeated", (long long)axes[k]);
    seen[a] = 1;
    begin[a] = pads[k];
    end[a] = pads[na + k];
  }
  return DD_OK;
}

static int pad_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  int64_t begin[DD_MAX_DIMS], end[DD_MAX_DIMS];
  rc = pad_resolve(node, in, begin, end, err);
  if (rc) return rc;
  if (node->n_in > 2 && in[2]) {
    const dd_tensor *v = in[2];
    if (v->dtype != in[0]->dtype || dd_tensor_numel(v) != 1)
      return dd_fail(err, DD_EFORMAT, "constant_value must be a scalar of the input's type");
    if (!v->data)
      return dd_fail(err, DD_EUNSUPPORTED, "constant_value must be constant, it is computed at "
                     "run time");
  }
  const dd_shape *s = &in[0]->shape;
  const pad_params *p = node->params;
  for (int i = 0; p->mode != PAD_CONSTANT && i < s->ndim; i++) {
    const char *mode = pad_mode_names[p->mode];
    if (begin[i] < 0 || end[i] < 0)
      return dd_fail(err, DD_EUNSUPPORTED, "negative pads (crops) with Pad mode '%s' are not "
                     "supported, only with 'constant'", mode);
    if (!begin[i] && !end[i]) continue;
    if (s->d[i] == 0)
      return dd_fail(err, DD_ESHAPE, "Pad mode '%s' cannot pad dim %d: it is empty", mode, i);
    if (p->mode == PAD_REFLECT && (begin[i] >= s->d[i] || end[i] >= s->d[i]))
      return dd_fail(err, DD_ESHAPE, "Pad mode 'reflect' needs pads smaller than the dim: pads "
                     "%lld, %lld on dim %d of size %lld", (long long)begin[i], (long long)end[i],
                     i, (long long)s->d[i]);
  }
  dd_shape o = {.ndim = s->ndim};
  for (int i = 0; i < s->ndim; i++) {
    int64_t d = s->d[i] + begin[i] + end[i];
    if (begin[i] > INT64_MAX / 4 || end[i] > INT64_MAX / 4 || d < 0)
      return dd_fail(err, DD_ESHAPE, "pads %lld, %lld on a dim of %lld give a negative size",
                     (long long)begin[i], (long long)end[i], (long long)s->d[i]);
    o.d[i] = d;
  }
  return set_out(out, in[0]->dtype, &o, scratch);
}

/* One output row (innermost dim): where its input row starts (-1: all padding) and which
 * output positions [lo, hi) come from it. */
typedef struct pad_geom {
  int rank;
  int64_t begin[DD_MAX_DIMS], in_d[DD_MAX_DIMS], out_d[DD_MAX_DIMS], xs[DD_MAX_DIMS];
  int64_t rows, inner, lo, hi;
} pad_geom;

static void pad_geometry(const dd_node *node, const dd_tensor *const *in, const dd_shape *os,
                         pad_geom *g) {
  int64_t end[DD_MAX_DIMS];
  pad_resolve(node, in, g->begin, end, NULL);
  const dd_shape *s = &in[0]->shape;
  g->rank = s->ndim;
  int64_t acc = 1;
  for (int i = s->ndim - 1; i >= 0; i--) {
    g->in_d[i] = s->d[i];
    g->out_d[i] = os->d[i];
    g->xs[i] = acc;
    acc *= s->d[i];
  }
  if (s->ndim == 0) { /* a scalar: one row of one element, nothing padded */
    g->inner = 1, g->rows = 1, g->lo = 0, g->hi = 1;
    return;
  }
  int last = s->ndim - 1;
  g->inner = os->d[last];
  g->rows = g->inner ? dd_shape_numel(os) / g->inner : 0;
  /* A begin pad may exceed a row that the end pad crops: clamp both ends into the row. */
  int64_t b = g->begin[last], lo = b > 0 ? b : 0, hi = b + s->d[last];
  if (lo > g->inner) lo = g->inner;
  if (hi > g->inner) hi = g->inner;
  if (hi < lo) hi = lo;
  g->lo = lo;
  g->hi = hi;
}

/* 0 when output row `row` lies in the padding; else 1 and *src such that output position j
 * of the row reads input element *src + j (for j in [lo, hi)). */
static inline int pad_row_src(const pad_geom *g, int64_t row, int64_t *src) {
  int64_t off = 0;
  for (int i = g->rank - 2; i >= 0; i--) {
    int64_t o = row % g->out_d[i], s = o - g->begin[i];
    row /= g->out_d[i];
    if (s < 0 || s >= g->in_d[i]) return 0;
    off += s * g->xs[i];
  }
  *src = g->rank ? off - g->begin[g->rank - 1] : 0;
  return 1;
}

/* ---- Pad's edge and reflect modes ----
 * Along each dim output position o reads input position pad_src(o); pads are >= 0 here and,
 * for reflect, smaller than the dim, so one mirror suffices. */

static inline int64_t pad_src(int mode, int64_t o, int64_t b, int64_t n) {
  int64_t s = o - b;
  if (s >= 0 && s < n) return s;
  if (mode == PAD_EDGE) return s < 0 ? 0 : n - 1;
  return s < 0 ? -s : 2 * (n - 1) - s; /* reflect */
}

/* The output positions of a dim of n (padded to m, begin pad b) that read input position i:
 * up to 3 ranges [r[k][0], r[k][1]).  Returns how many. */
static int pad_preimage(int mode, int64_t i, int64_t b, int64_t n, int64_t m, int64_t r[3][2]) {
  int k = 0;
  int64_t lo[3], hi[3], nr = 0;
  if (mode == PAD_EDGE) { /* the first and last element also fill the pads */
    lo[nr] = i == 0 ? 0 : i + b;
    hi[nr++] = i == n - 1 ? m : i + b + 1;
  } else {
    lo[nr] = i + b, hi[nr] = i + b + 1, nr++;
    if (i > 0) lo[nr] = b - i, hi[nr] = b - i + 1, nr++; /* mirrored into the begin pad */
    if (i < n - 1) lo[nr] = b + 2 * (n - 1) - i, hi[nr] = lo[nr] + 1, nr++; /* the end pad */
  }
  for (int j = 0; j < nr; j++) {
    int64_t l = lo[j] < 0 ? 0 : lo[j], h = hi[j] > m ? m : hi[j];
    if (l < h) r[k][0] = l, r[k][1] = h, k++;
  }
  return k;
}

static void pad_mirror_forward(const pad_geom *g, int mode, const char *x, char *y, size_t es,
                               int64_t total) {
  if (g->rank == 0) {
    memcpy(y, x, es);
    return;
  }
  int last = g->rank - 1;
  int64_t n = g->in_d[last], b = g->begin[last], inner = g->inner;
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < g->rows; r++) {
    /* where the input row starts: each outer dim mapped on its own */
    int64_t rr = r, off = 0;
    for (int i = last - 1; i >= 0; i--) {
      int64_t o = rr % g->out_d[i];
      rr /= g->out_d[i];
      off += pad_src(mode, o, g->begin[i], g->in_d[i]) * g->xs[i];
    }
    const char *xr = x + off * (int64_t)es;
    char *yr = y + r * inner * (int64_t)es;
    for (int64_t j = 0; j < b; j++) memcpy(yr + j * es, xr + pad_src(mode, j, b, n) * es, es);
    memcpy(yr + b * es, xr, (size_t)n * es);
    for (int64_t j = b + n; j < inner; j++)
      memcpy(yr + j * es, xr + pad_src(mode, j, b, n) * es, es);
  }
}

/* Each input row gathers the output rows that read it (the product of its outer dims'
 * preimages), so the rows write disjoint places. */
static void pad_mirror_backward(const pad_geom *g, int mode, const float *dy, float *dx,
                                int64_t total) {
  if (g->rank == 0) {
    dx[0] += dy[0];
    return;
  }
  int last = g->rank - 1;
  int64_t n = g->in_d[last], b = g->begin[last], inner = g->inner;
  int64_t in_rows = 1, ors[DD_MAX_DIMS]; /* ors: stride of each outer dim in output rows */
  for (int i = last - 1; i >= 0; i--) {
    ors[i] = i == last - 1 ? 1 : ors[i + 1] * g->out_d[i + 1];
    in_rows *= g->in_d[i];
  }
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t ir = 0; ir < in_rows; ir++) {
    int64_t rg[DD_MAX_DIMS][3][2], pos[DD_MAX_DIMS];
    int nr[DD_MAX_DIMS], k[DD_MAX_DIMS], empty = 0;
    int64_t rr = ir;
    for (int i = last - 1; i >= 0; i--) {
      int64_t idx = rr % g->in_d[i];
      rr /= g->in_d[i];
      nr[i] = pad_preimage(mode, idx, g->begin[i], g->in_d[i], g->out_d[i], rg[i]);
      empty |= nr[i] == 0;
      k[i] = 0;
      pos[i] = nr[i] ? rg[i][0][0] : 0;
    }
    if (empty) continue;
    float *dxr = dx + ir * n;
    for (;;) {
      int64_t orow = 0;
      for (int i = 0; i < last; i++) orow += pos[i] * ors[i];
      const float *dyr = dy + orow * inner;
      for (int64_t j = 0; j < inner; j++) dxr[pad_src(mode, j, b, n)] += dyr[j];
      /* the next output row: an odometer over each dim's ranges */
      int i = last - 1;
      for (; i >= 0; i--) {
        if (++pos[i] < rg[i][k[i]][1]) break;
        if (++k[i] < nr[i]) {
          pos[i] = rg[i][k[i]][0];
          break;
        }
        k[i] = 0;
        pos[i] = rg[i][0][0];
      }
      if (i < 0) break;
    }
  }
}

#define PAD_ROWS(T, VALUE)                                                       \
  do {                                                                           \
    const T *x = (const T *)in[0]->data;                                         \
    T *y = (T *)out[0]->data;                                                    \
    const T v = (VALUE);                                                         \
    _Pragma("omp parallel for if (total > DD_PAR_MIN) schedule(static)")         \
    for (int64_t r = 0; r < g.rows; r++) {                                       \
      T *yr = y + r * g.inner;                                                   \
      int64_t src = 0;                                                           \
      int in_ = pad_row_src(&g, r, &src);                                        \
      int64_t lo = in_ ? g.lo : g.inner, hi = in_ ? g.hi : g.inner;              \
      for (int64_t j = 0; j < lo; j++) yr[j] = v;                                \
      for (int64_t j = lo; j < hi; j++) yr[j] = x[src + j];                      \
      for (int64_t j = hi; j < g.inner; j++) yr[j] = v;                          \
    }                                                                            \
  } while (0)

static void pad_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  if (!out[0]) return;
  const pad_params *p = node->params;
  pad_geom g;
  pad_geometry(node, in, &out[0]->shape, &g);
  int64_t total = dd_tensor_numel(out[0]);
  if (p->mode != PAD_CONSTANT) {
    pad_mirror_forward(&g, p->mode, in[0]->data, out[0]->data, dd_dtype_size(in[0]->dtype),
                       total);
    return;
  }
  const dd_tensor *cv = node->n_in > 2 ? in[2] : NULL;
  if (in[0]->dtype == DD_F32) PAD_ROWS(float, cv ? dd_f32(cv)[0] : p->value);
  else if (in[0]->dtype == DD_I64) PAD_ROWS(int64_t, cv ? dd_i64(cv)[0] : (int64_t)p->value);
  else PAD_ROWS(uint8_t, cv ? dd_bool(cv)[0] != 0 : p->value != 0.f);
}

static void pad_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout,
                         dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  const pad_params *p = node->params;
  pad_geom g;
  pad_geometry(node, in, &dout[0]->shape, &g);
  int64_t total = dd_tensor_numel(dout[0]);
  const float *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  if (p->mode != PAD_CONSTANT) {
    pad_mirror_backward(&g, p->mode, dy, dx, total);
    return;
  }
  /* Every input element lands in at most one output place: rows write disjoint places. */
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < g.rows; r++) {
    int64_t src;
    if (!pad_row_src(&g, r, &src)) continue;
    const float *yr = dy + r * g.inner;
    for (int64_t j = g.lo; j < g.hi; j++) dx[src + j] += yr[j];
  }
}

const dd_op dd_op_Pad = {"Pad", pad_init, pad_infer, pad_forward, pad_backward, NULL, 0};

/* ---- Split ----
 * The sizes along `axis` come from the `split` attribute (opset < 13), the optional constant
 * split input (13 on), or else are equal: the dim divided by the number of outputs, or with
 * num_outputs (18) ceil(dim / n) each and what is left for the last. */

#define SPLIT_MAX_OUT 64

typedef struct split_params {
  int64_t axis, num_outputs; /* num_outputs 0: absent */
  int n_split;               /* -1: no split attribute */
  int64_t split[SPLIT_MAX_OUT];
} split_params;

static int split_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"axis", "split", "num_outputs", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->n_in < 1 || node->n_in > 2)
    return dd_fail(err, DD_EFORMAT, "Split takes 1 or 2 inputs, got %d", node->n_in);
  if (node->n_out < 1 || node->n_out > SPLIT_MAX_OUT)
    return dd_fail(err, DD_ELIMIT, "Split has %d outputs, 1 to %d are supported", node->n_out,
                   SPLIT_MAX_OUT);
  split_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_attr_int(node, "axis", 0, &p->axis, err);
  if (!rc) rc = dd_attr_int(node, "num_outputs", 0, &p->num_outputs, err);
  if (!rc) rc = dd_attr_ints(node, "split", SPLIT_MAX_OUT, p->split, &p->n_split, err);
  if (!rc && p->n_split >= 0 && node->n_in > 1 && node->in[1] >= 0)
    rc = dd_fail(err, DD_EFORMAT, "split given both as attribute and as input");
  if (!rc && dd_node_attr(node, "num_outputs") && p->num_outputs != node->n_out)
    rc = dd_fail(err, DD_EFORMAT, "num_outputs is %lld but the node has %d outputs",
                 (long long)p->num_outputs, node->n_out);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* The normalized axis and the size of each output along it. */
static int split_sizes(const dd_node *node, const dd_tensor *const *in, int *axis, int64_t *len,
                       dd_err *err) {
  const split_params *p = node->params;
  const dd_shape *s = &in[0]->shape;
  int rc = norm_axis(p->axis, s->ndim, 0, axis, err);
  if (rc) return rc;
  int64_t dim = s->d[*axis];
  int k = node->n_out, n = p->n_split;
  if (n >= 0) memcpy(len, p->split, (size_t)n * sizeof *len);
  else if (node->n_in > 1 && in[1]) {
    rc = const_ints(in[1], "the split input", SPLIT_MAX_OUT, len, &n, err);
    if (rc) return rc;
    if (n == 0) n = -1; /* an empty split input: none */
  }
  if (n >= 0) {
    if (n != k) return dd_fail(err, DD_EFORMAT, "split has %d values for %d outputs", n, k);
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
      if (len[i] < 0 || len[i] > dim - sum)
        return dd_fail(err, DD_ESHAPE, "split sizes do not add up to %lld, the size of axis %d",
                       (long long)dim, *axis);
      sum += len[i];
    }
    if (sum != dim)
      return dd_fail(err, DD_ESHAPE, "split sizes add up to %lld, not to %lld, the size of "
                     "axis %d", (long long)sum, (long long)dim, *axis);
  } else if (p->num_outputs) {
    int64_t chunk = dim / k + (dim % k != 0), left = dim;
    for (int i = 0; i < k; i++) {
      len[i] = left < chunk ? left : chunk;
      left -= len[i];
    }
  } else {
    if (dim % k)
      return dd_fail(err, DD_ESHAPE, "cannot split axis %d of size %lld into %d equal parts",
                     *axis, (long long)dim, k);
    for (int i = 0; i < k; i++) len[i] = dim / k;
  }
  return DD_OK;
}

static int split_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  int axis;
  int64_t len[SPLIT_MAX_OUT];
  rc = split_sizes(node, in, &axis, len, err);
  if (rc) return rc;
  for (int k = 0; k < node->n_out; k++) {
    if (!out[k]) continue;
    out[k]->dtype = in[0]->dtype;
    out[k]->shape = in[0]->shape;
    out[k]->shape.d[axis] = len[k];
  }
  *scratch = 0;
  return DD_OK;
}

/* Elements before and after `axis`. */
static void split_extent(const dd_shape *s, int axis, int64_t *outer, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= s->d[i];
  for (int i = axis + 1; i < s->ndim; i++) *inner *= s->d[i];
}

/* Output k is, in each of the `outer` blocks of the input, the len[k] * inner elements that
 * start at the sizes of the outputs before it. */
static void split_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                          void *scratch) {
  int axis;
  int64_t len[SPLIT_MAX_OUT], outer, inner;
  split_sizes(node, in, &axis, len, NULL);
  split_extent(&in[0]->shape, axis, &outer, &inner);
  int64_t dim = in[0]->shape.d[axis], total = dd_tensor_numel(in[0]);
  size_t es = dd_dtype_size(in[0]->dtype);
  const char *x = in[0]->data;
  int64_t off = 0;
  for (int k = 0; k < node->n_out; off += len[k], k++) {
    if (!out[k]) continue;
    char *y = out[k]->data;
    int64_t block = len[k] * inner;
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++)
      memcpy(y + o * block * (int64_t)es, x + ((o * dim + off) * inner) * (int64_t)es,
             (size_t)block * es);
  }
}

static void split_backward(const dd_node *node, const dd_tensor *const *in,
                           const dd_tensor *const *out, const dd_tensor *const *dout,
                           dd_tensor *const *din, void *scratch) {
  if (!din[0] || in[0]->dtype != DD_F32) return;
  int axis;
  int64_t len[SPLIT_MAX_OUT], outer, inner;
  split_sizes(node, in, &axis, len, NULL);
  split_extent(&in[0]->shape, axis, &outer, &inner);
  int64_t dim = in[0]->shape.d[axis], total = dd_tensor_numel(in[0]);
  float *dx = dd_f32(din[0]);
  int64_t off = 0;
  for (int k = 0; k < node->n_out; off += len[k], k++) {
    if (!dout[k]) continue;
    const float *dy = dd_f32(dout[k]);
    int64_t block = len[k] * inner;
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
      float *d = dx + (o * dim + off) * inner;
      const float *g = dy + o * block;
      for (int64_t j = 0; j < block; j++) d[j] += g[j];
    }
  }
}

const dd_op dd_op_Split = {"Split", split_init, split_infer, split_forward, split_backward, NULL,
                           DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X};

/* ---- Expand and Tile ----
 * Both repeat the input: along each dim (the input's dims aligned to the right of the
 * output's, missing ones 1) output position o reads input position o % in_d.  Expand
 * broadcasts dims of 1 to the constant shape input (numpy rules, in both directions: the
 * output has the larger rank, and a 1 in the shape keeps the input's dim); Tile repeats each
 * dim by the constant repeats input.  The gradient of an input element is the sum over its
 * copies. */

typedef struct tile_geom {
  int rank;
  int64_t in_d[DD_MAX_DIMS], out_d[DD_MAX_DIMS];
  int64_t inner, out_inner; /* the last dim, input and output */
  int64_t in_rows, out_rows; /* rows of the last dim */
} tile_geom;

static void tile_geometry(const dd_shape *is, const dd_shape *os, tile_geom *g) {
  int lead = os->ndim - is->ndim;
  g->rank = os->ndim;
  for (int i = 0; i < os->ndim; i++) {
    g->in_d[i] = i < lead ? 1 : is->d[i - lead];
    g->out_d[i] = os->d[i];
  }
  g->inner = g->out_inner = 1;
  g->in_rows = g->out_rows = 1;
  if (!g->rank) return;
  int last = g->rank - 1;
  g->inner = g->in_d[last];
  g->out_inner = g->out_d[last];
  for (int i = 0; i < last; i++) {
    g->in_rows *= g->in_d[i];
    g->out_rows *= g->out_d[i];
  }
}

/* An output with elements has every input dim > 0 (an empty input dim stays empty). */
static void tile_forward(const tile_geom *g, const char *x, char *y, size_t es, int64_t total) {
  if (total == 0) return;
  int last = g->rank - 1;
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < g->out_rows; r++) {
    int64_t rr = r, src = 0, mul = 1;
    for (int i = last - 1; i >= 0; i--) {
      int64_t o = rr % g->out_d[i];
      rr /= g->out_d[i];
      src += (o % g->in_d[i]) * mul;
      mul *= g->in_d[i];
    }
    const char *xr = x + src * g->inner * (int64_t)es;
    char *yr = y + r * g->out_inner * (int64_t)es;
    if (g->inner == 1) fill_elems(yr, xr, g->out_inner, es);
    else
      for (int64_t k = 0; k < g->out_inner; k += g->inner)
        memcpy(yr + k * (int64_t)es, xr, (size_t)g->inner * es);
  }
}

/* Each input row sums the output rows that copy it (an odometer over the repeats of the
 * outer dims), so the rows write disjoint places. */
static void tile_backward(const tile_geom *g, const float *dy, float *dx, int64_t total) {
  if (total == 0) return;
  int last = g->rank - 1;
  int64_t rep[DD_MAX_DIMS], ors[DD_MAX_DIMS]; /* ors: stride of each outer dim in output rows */
  for (int i = last - 1; i >= 0; i--) {
    rep[i] = g->out_d[i] / g->in_d[i];
    ors[i] = i == last - 1 ? 1 : ors[i + 1] * g->out_d[i + 1];
  }
  int64_t inner = g->inner, out_inner = g->out_inner;
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t ir = 0; ir < g->in_rows; ir++) {
    int64_t idx[DD_MAX_DIMS], q[DD_MAX_DIMS], rr = ir;
    for (int i = last - 1; i >= 0; i--) {
      idx[i] = rr % g->in_d[i];
      rr /= g->in_d[i];
      q[i] = 0;
    }
    float *dxr = dx + ir * inner;
    for (;;) {
      int64_t orow = 0;
      for (int i = 0; i < last; i++) orow += (q[i] * g->in_d[i] + idx[i]) * ors[i];
      const float *dyr = dy + orow * out_inner;
      if (inner == 1) {
        float s = 0.f;
        for (int64_t k = 0; k < out_inner; k++) s += dyr[k];
        dxr[0] += s;
      } else {
        for (int64_t k = 0; k < out_inner; k += inner)
          for (int64_t j = 0; j < inner; j++) dxr[j] += dyr[k + j];
      }
      int i = last - 1;
      while (i >= 0 && ++q[i] == rep[i]) q[i--] = 0;
      if (i < 0) break;
    }
  }
}

static void repeat_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                           void *scratch) {
  if (!out[0]) return;
  tile_geom g;
  tile_geometry(&in[0]->shape, &out[0]->shape, &g);
  tile_forward(&g, in[0]->data, out[0]->data, dd_dtype_size(in[0]->dtype),
               dd_tensor_numel(out[0]));
}

static void repeat_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  tile_geom g;
  tile_geometry(&in[0]->shape, &dout[0]->shape, &g);
  tile_backward(&g, dd_f32(dout[0]), dd_f32(din[0]), dd_tensor_numel(dout[0]));
}

static int repeat_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->n_in != 2 || node->in[1] < 0)
    return dd_fail(err, DD_EFORMAT, "%s takes 2 inputs (%s), got %d", node->op_type,
                   strcmp(node->op_type, "Tile") ? "input, shape" : "input, repeats", node->n_in);
  return DD_OK;
}

static int expand_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  char s1[128];
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  if (!in[1]) return dd_fail(err, DD_EFORMAT, "Expand needs a shape input");
  int64_t sh[DD_MAX_DIMS];
  int n;
  rc = const_ints(in[1], "the shape input", DD_MAX_DIMS, sh, &n, err);
  if (rc) return rc;
  const dd_shape *s = &in[0]->shape;
  dd_shape o = {.ndim = n > s->ndim ? n : s->ndim};
  for (int i = 0; i < o.ndim; i++) {
    int ia = i - (o.ndim - s->ndim), ib = i - (o.ndim - n);
    int64_t a = ia >= 0 ? s->d[ia] : 1, b = ib >= 0 ? sh[ib] : 1;
    if (b < 0) return dd_fail(err, DD_ESHAPE, "shape[%d] = %lld is negative", ib, (long long)b);
    if (a != b && a != 1 && b != 1)
      return dd_fail(err, DD_ESHAPE, "cannot expand %s: dim %d is %lld, the shape asks for %lld",
                     dd_shape_str(s, s1, sizeof s1), ia, (long long)a, (long long)b);
    o.d[i] = a == 1 ? b : a;
  }
  if (dd_shape_numel(&o) < 0) return dd_fail(err, DD_ELIMIT, "the expanded shape is too large");
  return set_out(out, in[0]->dtype, &o, scratch);
}

static int tile_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  int rc = data_input_ok(node, in, err);
  if (rc) return rc;
  if (!in[1]) return dd_fail(err, DD_EFORMAT, "Tile needs a repeats input");
  int64_t rep[DD_MAX_DIMS];
  int n;
  rc = const_ints(in[1], "the repeats input", DD_MAX_DIMS, rep, &n, err);
  if (rc) return rc;
  const dd_shape *s = &in[0]->shape;
  if (n != s->ndim)
    return dd_fail(err, DD_ESHAPE, "repeats has %d values but the input has %d dims", n,
                   s->ndim);
  dd_shape o = {.ndim = s->ndim};
  for (int i = 0; i < n; i++) {
    if (rep[i] < 0)
      return dd_fail(err, DD_ESHAPE, "repeats[%d] = %lld is negative", i, (long long)rep[i]);
    if (s->d[i] && rep[i] > INT64_MAX / s->d[i])
      return dd_fail(err, DD_ELIMIT, "the tiled shape is too large");
    o.d[i] = s->d[i] * rep[i];
  }
  if (dd_shape_numel(&o) < 0) return dd_fail(err, DD_ELIMIT, "the tiled shape is too large");
  return set_out(out, in[0]->dtype, &o, scratch);
}

const dd_op dd_op_Expand = {"Expand", repeat_init, expand_infer, repeat_forward, repeat_backward,
                            NULL, DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X};
const dd_op dd_op_Tile = {"Tile", repeat_init, tile_infer, repeat_forward, repeat_backward, NULL,
                          DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X};
