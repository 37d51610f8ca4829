/* Element-wise activations: Relu, LeakyRelu, Clip, Sigmoid.  Forward and backward side by
 * side; backward accumulates into din. */
#include <math.h>
#include <stdlib.h>

#include "ops/common.h"

typedef struct act_params {
  float alpha;        /* LeakyRelu slope */
  float lo, hi;       /* Clip bounds (attribute form, opset < 11) */
} act_params;

static int same_shape_infer(const dd_node *node, const dd_tensor *const *in,
                            dd_tensor *const *out, size_t *scratch, dd_err *err) {
  if (node->n_in < 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  if (in[0]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "input must be float32");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = in[0]->shape;
  }
  *scratch = 0;
  return DD_OK;
}

static int64_t elementwise_flops(const dd_node *node, const dd_tensor *const *in,
                                 const dd_tensor *const *out) {
  return dd_tensor_numel(in[0]);
}

/* ---- Relu ---- */

static int relu_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  return dd_node_check_attrs(node, known, err);
}

static void relu_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (!out[0]) return;
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

static void relu_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.f ? dy[i] : 0.f;
}

const dd_op dd_op_Relu = {"Relu", relu_init, same_shape_infer, relu_forward, relu_backward,
                          elementwise_flops, 0};
