/* Concat along one axis, any rank, float32, int64 or bool (exporters concatenate shapes and
 * masks).
 * Forward and backward side by side: the gradient of each input is its slice of dout.
 *
 * Viewing every tensor as outer x (extent along axis * inner), input i's block of each outer
 * row is one contiguous run in the output, so both directions are runs of memcpy / adds.
 */
#include <stdlib.h>
#include <string.h>

#include "ops/common.h"

static int concat_init(dd_node *node, dd_err *err) {
  /* Opset 1..3 had a default axis of 1; from opset 4 it is required. */
  if (!dd_node_attr(node, "axis") && !(node->opset > 0 && node->opset < 4))
    return dd_fail(err, DD_EFORMAT, "attribute 'axis' is required");
  return dd_node_axis_init(node, 1, err);
}

/* The axis in [0, ndim), and the outer and inner element counts around it. */
static void concat_layout(const dd_axis_params *p, const dd_shape *s, int *axis, int64_t *outer,
                          int64_t *inner) {
  int a = (int)(p->axis < 0 ? p->axis + s->ndim : p->axis);
  *axis = a;
  *outer = *inner = 1;
  for (int i = 0; i < a; i++) *outer *= s->d[i];
  for (int i = a + 1; i < s->ndim; i++) *inner *= s->d[i];
}

static int concat_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  const dd_axis_params *p = node->params;
  if (node->n_in < 1) return dd_fail(err, DD_EFORMAT, "needs at least one input");
  for (int i = 0; i < node->n_in; i++)
    if (!in[i]) return dd_fail(err, DD_EFORMAT, "input %d is missing", i);
  const dd_shape *s0 = &in[0]->shape;
  if (in[0]->dtype != DD_F32 && in[0]->dtype != DD_I64 && in[0]->dtype != DD_BOOL)
    return dd_fail(err, DD_EUNSUPPORTED, "inputs must be float32, int64 or bool");
  if (s0->ndim < 1) return dd_fail(err, DD_ESHAPE, "cannot concatenate scalars");
  if (p->axis < -s0->ndim || p->axis >= s0->ndim)
    return dd_fail(err, DD_ESHAPE, "axis %lld is out of range for %d dims", (long long)p->axis,
                   s0->ndim);
  int axis = (int)(p->axis < 0 ? p->axis + s0->ndim : p->axis);
  dd_shape ys = *s0;
  ys.d[axis] = 0;
  for (int i = 0; i < node->n_in; i++) {
    const dd_shape *si = &in[i]->shape;
    if (in[i]->dtype != in[0]->dtype)
      return dd_fail(err, DD_ESHAPE, "input %d is %s but input 0 is %s", i,
                     dd_dtype_name(in[i]->dtype), dd_dtype_name(in[0]->dtype));
    if (si->ndim != s0->ndim)
      return dd_fail(err, DD_ESHAPE, "input %d has %d dims but input 0 has %d", i, si->ndim,
                     s0->ndim);
    for (int d = 0; d < s0->ndim; d++)
      if (d != axis && si->d[d] != s0->d[d]) {
        char a[96], b[96];
        return dd_fail(err, DD_ESHAPE,
                       "input %d has shape %s, which differs from input 0 (%s) off axis %d", i,
                       dd_shape_str(si, a, sizeof a), dd_shape_str(s0, b, sizeof b), axis);
      }
    ys.d[axis] += si->d[axis];
  }
  if (node->n_out != 1) return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1", node->n_out);
  if (out[0]) {
    out[0]->dtype = in[0]->dtype;
    out[0]->shape = ys;
  }
  *scratch = 0;
  return DD_OK;
}

static void concat_forward(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  int axis;
  int64_t outer, inner;
  concat_layout(node->params, &out[0]->shape, &axis, &outer, &inner);
  size_t es = dd_dtype_size(out[0]->dtype);
  int64_t row = out[0]->shape.d[axis] * inner; /* elements of one output row */
  char *y = out[0]->data;
  int64_t off = 0;
  for (int i = 0; i < node->n_in; i++) {
    int64_t run = in[i]->shape.d[axis] * inner;
    const char *x = in[i]->data;
    for (int64_t o = 0; o < outer; o++)
      memcpy(y + (size_t)(o * row + off) * es, x + (size_t)(o * run) * es, (size_t)run * es);
    off += run;
  }
}

static void concat_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  int axis;
  int64_t outer, inner;
  concat_layout(node->params, &dout[0]->shape, &axis, &outer, &inner);
  int64_t row = dout[0]->shape.d[axis] * inner;
  const float *dy = dd_f32(dout[0]);
  int64_t off = 0;
  for (int i = 0; i < node->n_in; i++) {
    int64_t run = in[i]->shape.d[axis] * inner;
    if (din[i]) {
      float *dx = dd_f32(din[i]);
#pragma omp parallel for if (outer * run > DD_PAR_MIN && outer > 1) schedule(static)
      for (int64_t o = 0; o < outer; o++) {
        const float *s = dy + o * row + off;
        float *d = dx + o * run;
#pragma omp simd
        for (int64_t k = 0; k < run; k++) d[k] += s[k];
      }
    }
    off += run;
  }
}

const dd_op dd_op_Concat = {"Concat", concat_init, concat_infer, concat_forward,
                            concat_backward, NULL, DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X | DD_OP_CONCAT};
