/* Element-wise activations: Relu, LeakyRelu, Clip, Sigmoid.  Forward and backward side by
 * side; backward accumulates into din.  The thread threshold is `if (parallel : ...)`: a
 * bare `if` on `parallel for simd` applies to simd too, and tensors under it ran scalar. */
#include <math.h>
#include <stdlib.h>

#include "ops/act.h"
#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/fastexp.h"

typedef struct act_params {
  float alpha;        /* LeakyRelu slope */
  float lo, hi;       /* Clip bounds (attribute form, opset < 11) */
  int has_attrs;      /* Clip: the bounds are attributes */
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
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

static void relu_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  /* y > 0 exactly where x > 0: reading y lets forward run in place (DD_OP_INPLACE) */
  const float *y = dd_f32(out[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
  if (dx == dy) { /* the plan gave dx the memory of dy (DD_OP_INPLACE_GRAD): overwrite */
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.f ? dx[i] : 0.f;
    return;
  }
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.f ? dy[i] : 0.f;
}

const dd_op dd_op_Relu = {"Relu", relu_init, same_shape_infer, relu_forward, relu_backward,
                          elementwise_flops,
                          DD_OP_INPLACE | DD_OP_INPLACE_GRAD | DD_OP_BWD_NO_X | DD_OP_RELU};

/* ---- LeakyRelu ---- */

static int leakyrelu_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"alpha", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  act_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_attr_float(node, "alpha", 0.01f, &p->alpha, err);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static void leakyrelu_forward(const dd_node *node, const dd_tensor *const *in,
                              dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const act_params *p = node->params;
  const float a = p->alpha;
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : a * x[i];
}

/* As PyTorch: the slope at exactly 0 is alpha. */
static void leakyrelu_backward(const dd_node *node, const dd_tensor *const *in,
                               const dd_tensor *const *out, const dd_tensor *const *dout,
                               dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const act_params *p = node->params;
  const float a = p->alpha;
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.f ? dy[i] : a * dy[i];
}

const dd_op dd_op_LeakyRelu = {"LeakyRelu", leakyrelu_init, same_shape_infer, leakyrelu_forward,
                               leakyrelu_backward, elementwise_flops, 0};

/* ---- Clip ----
 * Opset < 11 gives the bounds as attributes min/max; opset >= 11 as optional scalar inputs,
 * which we require to be constant so the kernel never has to fail.  Which form a node uses
 * is decided by what it carries, so a mislabelled opset does not matter. */

static int clip_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"min", "max", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  act_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->has_attrs = dd_node_attr(node, "min") || dd_node_attr(node, "max");
  rc = dd_attr_float(node, "min", -INFINITY, &p->lo, err);
  if (!rc) rc = dd_attr_float(node, "max", INFINITY, &p->hi, err);
  if (!rc && p->has_attrs && node->n_in > 1)
    rc = dd_fail(err, DD_EFORMAT, "Clip has both min/max attributes (opset < 11) and bound "
                 "inputs (opset >= 11)");
  if (!rc && node->n_in > 3) rc = dd_fail(err, DD_EFORMAT, "Clip takes at most 3 inputs, got %d", node->n_in);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

static int clip_bound_ok(const dd_tensor *b, const char *what, dd_err *err) {
  if (!b) return DD_OK;
  if (b->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "Clip %s must be float32", what);
  if (dd_tensor_numel(b) != 1)
    return dd_fail(err, DD_ESHAPE, "Clip %s must be a scalar, it has %lld elements", what,
                   (long long)dd_tensor_numel(b));
  if (!b->data)
    return dd_fail(err, DD_EUNSUPPORTED, "Clip %s must be constant (an initializer or computed "
                   "from constants), it is computed at run time", what);
  return DD_OK;
}

static int clip_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  int rc = same_shape_infer(node, in, out, scratch, err);
  if (!rc && node->n_in > 1) rc = clip_bound_ok(in[1], "min", err);
  if (!rc && node->n_in > 2) rc = clip_bound_ok(in[2], "max", err);
  return rc;
}

static void clip_bounds(const dd_node *node, const dd_tensor *const *in, float *lo, float *hi) {
  const act_params *p = node->params;
  *lo = p->lo;
  *hi = p->hi;
  if (node->n_in > 1 && in[1]) *lo = dd_f32(in[1])[0];
  if (node->n_in > 2 && in[2]) *hi = dd_f32(in[2])[0];
}

/* min(max(x, lo), hi) as numpy.clip: hi wins when lo > hi; NaN passes through. */
static void clip_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (!out[0]) return;
  float lo, hi;
  clip_bounds(node, in, &lo, &hi);
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float v = x[i] < lo ? lo : x[i];
    y[i] = v > hi ? hi : v;
  }
}

/* As PyTorch's clamp: the gradient passes where lo <= x <= hi, bounds included. */
static void clip_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  float lo, hi;
  clip_bounds(node, in, &lo, &hi);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += x[i] >= lo && x[i] <= hi ? dy[i] : 0.f;
}

const dd_op dd_op_Clip = {"Clip", clip_init, clip_infer, clip_forward, clip_backward,
                          elementwise_flops, 0};

/* ---- Sigmoid ---- */

static int sigmoid_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  return dd_node_check_attrs(node, known, err);
}

/* exp of a non-positive number only, so it never overflows: e = exp(-|x|), then 1 / (1 + e)
 * for x >= 0 and e / (1 + e) below.  dd_exp_neg rather than expf: the loops vectorize (it
 * made Sigmoid half of EfficientNet-B0's forward pass). */
static inline float sigmoidf(float x) {
  float e = dd_exp_neg(fabsf(x)), s = 1.f / (1.f + e);
  return x >= 0.f ? s : e * s;
}

#ifdef DD_AVX512_KERNELS
/* y[i] = act(x[i]) for i in [i0, i1).  A function of its own: the body of an OpenMP loop is
 * outlined into a function that Clang does not give the enclosing function's target, and it
 * refuses the zmm values passed to dd_act16 there (on a build without -mavx512f: the fuzzing
 * build on a CPU without AVX-512). */
DD_TARGET_AVX512 static void act16_block(const float *x, float *y, int64_t i0, int64_t i1,
                                         int act) {
  for (int64_t i = i0; i < i1; i += 16) {
    __mmask16 m = (__mmask16)(i1 - i >= 16 ? 0xffff : (1u << (i1 - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, dd_act16(_mm512_maskz_loadu_ps(m, x + i), act));
  }
}

void dd_act16_rows(const float *x, float *y, int64_t n, int act, int parallel) {
  const int64_t blocks = (n + 4095) / 4096;
#pragma omp parallel for if (parallel && n > DD_PAR_MIN) schedule(static)
  for (int64_t b = 0; b < blocks; b++)
    act16_block(x, y, b * 4096, (b + 1) * 4096 < n ? (b + 1) * 4096 : n, act);
}
#endif

static void sigmoid_forward(const dd_node *node, const dd_tensor *const *in,
                            dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512()) {
    dd_act16_rows(dd_f32(in[0]), dd_f32(out[0]), dd_tensor_numel(in[0]), DD_ACT_SIGMOID, 1);
    return;
  }
  if (dd_kernels_avx2()) {
    dd_act8_rows(dd_f32(in[0]), dd_f32(out[0]), dd_tensor_numel(in[0]), DD_ACT_SIGMOID, 1);
    return;
  }
#endif
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
}

/* Recomputed from x rather than read from the output, which the graph may not keep. */
static void sigmoid_backward(const dd_node *node, const dd_tensor *const *in,
                             const dd_tensor *const *out, const dd_tensor *const *dout,
                             dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float s = sigmoidf(x[i]);
    dx[i] += dy[i] * s * (1.f - s);
  }
}

static int64_t sigmoid_flops(const dd_node *node, const dd_tensor *const *in,
                             const dd_tensor *const *out) {
  return 4 * dd_tensor_numel(in[0]);
}

const dd_op dd_op_Sigmoid = {"Sigmoid", sigmoid_init, same_shape_infer, sigmoid_forward,
                             sigmoid_backward, sigmoid_flops,
                             DD_OP_BWD_NO_OUT | DD_OP_INPLACE};

/* ---- SiLU: x * Sigmoid(x), fused by the planner (plan/fuse.c) ---- */

/* Not an ONNX op (no model can name it): the planner puts it in place of Sigmoid(x) and the
 * Mul(x, that) reading it alone, the SiLU that torch exports for EfficientNet's activations.
 * One pass instead of two and no sigmoid tensor; the forward computes the same float
 * operations as the two nodes (sigmoidf, then the product), so the outputs are the same bit
 * for bit, and the backward the sum of their two gradients. */
static int silu_init(dd_node *node, dd_err *err) { return DD_OK; }

static void silu_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (!out[0]) return;
  dd_silu_rows(dd_f32(in[0]), dd_f32(out[0]), dd_tensor_numel(in[0]), 1);
}

void dd_act_rows(float *y, int64_t n, int act, int parallel) {
  if (act == DD_ACT_SILU) {
    dd_silu_rows(y, y, n, parallel);
    return;
  }
  if (act == DD_ACT_GELU) {
    dd_gelu_rows(y, y, n, parallel);
    return;
  }
  if (act != DD_ACT_HARDSWISH) return;
#define HARDSWISH_BODY                                                                    \
  for (int64_t i = 0; i < n; i++) {                                                       \
    float v = y[i] * DD_HARDSWISH_A + DD_HARDSWISH_B; /* ops/unary.c's hardsigmoidf */    \
    y[i] = y[i] * (v < 0.f ? 0.f : v > 1.f ? 1.f : v);                                    \
  }
  if (!parallel || n <= DD_PAR_MIN) { /* no region: see dd_silu_rows */
#pragma omp simd
    HARDSWISH_BODY
  } else {
#pragma omp parallel for simd schedule(static)
    HARDSWISH_BODY
  }
#undef HARDSWISH_BODY
}

void dd_add_rows(float *y, const float *r, int64_t n) {
#pragma omp parallel for simd if (n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] += r[i];
}

void dd_silu_rows(const float *x, float *y, int64_t n, int parallel) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512()) {
    dd_act16_rows(x, y, n, DD_ACT_SILU, parallel);
    return;
  }
  if (dd_kernels_avx2()) {
    dd_act8_rows(x, y, n, DD_ACT_SILU, parallel);
    return;
  }
#endif
  /* Not `parallel for if (...)`: called with parallel 0 from inside a parallel region (a
   * product's rows on the generic path), a region the if turns off is still a nested team,
   * which libgomp starts and ends with futex calls: 2 per row of a 32-row block, a third of
   * EfficientNet-B0's first layer on a Zen 3. */
  if (!parallel || n <= DD_PAR_MIN) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
  } else {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
  }
}

/* d/dx x s(x) = s + x s (1 - s): the Mul's gradient through its x, then the Sigmoid's. */
static void silu_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0]) return;
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  int64_t n = dd_tensor_numel(in[0]);
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float s = sigmoidf(x[i]);
    dx[i] = (dx[i] + dy[i] * s) + dy[i] * x[i] * s * (1.f - s);
  }
}

static int64_t silu_flops(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out) {
  return 5 * dd_tensor_numel(in[0]);
}

const dd_op dd_op_FusedSilu = {"Silu", silu_init, same_shape_infer, silu_forward, silu_backward,
                               silu_flops, DD_OP_BWD_NO_OUT | DD_OP_INPLACE | DD_OP_SILU};
