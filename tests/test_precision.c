/* --precision (src/precision.c, DD_PLAN_BF16): what each choice resolves to, and that a bf16
 * plan reaches the bf16 kernels and still climbs the float32 objective. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "dream/image.h"
#include "helper_ops.h"
#include "ops/bf16.h"

Test(precision, resolves_per_command_kind) {
  for (int loop = 0; loop < 2; loop++) {
    cr_assert_eq(dd_precision_resolve(DD_PRECISION_FP32, loop), DD_PRECISION_FP32);
    dd_precision b = dd_precision_resolve(DD_PRECISION_BF16, loop);
    cr_assert_eq(b, dd_precision_has_bf16() ? DD_PRECISION_BF16 : DD_PRECISION_FP32);
  }
  /* run, grad, classify, explain: always fp32 */
  cr_assert_eq(dd_precision_resolve(DD_PRECISION_AUTO, 0), DD_PRECISION_FP32);
  /* a loop: bf16 exactly where the probe found it faster (and the answer does not change) */
  dd_precision a = dd_precision_resolve(DD_PRECISION_AUTO, 1);
  cr_assert_eq(a, dd_bf16_pays() ? DD_PRECISION_BF16 : DD_PRECISION_FP32);
  cr_assert_eq(dd_precision_resolve(DD_PRECISION_AUTO, 1), a);
  cr_log_info("this CPU: bf16 kernel %s, auto in a dream loop is %s",
              dd_precision_has_bf16() ? "AVX512-BF16" : "none",
              a == DD_PRECISION_BF16 ? "bf16" : "fp32 (bf16 is not faster here)");
}

Test(precision, unknown_value_is_refused) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(64, 64, &im, &err), 0);
  dd_dream_params p;
  dd_dream_params_init(&p);
  cr_assert_eq(dd_dream_layer_resolve(m, "inception_4c/output", &p.layers[0], &err), 0);
  p.n_layers = 1;
  p.precision = (dd_precision)7;
  dd_preproc pp = {1, 255.f, {104.f, 117.f, 123.f}, {1.f, 1.f, 1.f}};
  int rc = dd_dream_run(m, &pp, &p, im, NULL, NULL, &err);
  cr_assert_eq(rc, DD_EARG);
  cr_assert(strstr(err.msg, "unknown precision 7"), "%s", err.msg);
  dd_image_free(im);
  dd_model_free(m);
}

/* The gradient of 1/2 sum a^2 at inception_4c/output of a 160x120 input, in a plan of each
 * precision. */
static dd_tensor *gradient(const dd_model *m, int layer, unsigned flags, const float *x) {
  dd_err err;
  int in = dd_model_input(m);
  int64_t dims[4] = {1, 3, 120, 160};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  dd_plan *p;
  cr_assert_eq(dd_plan_new(m, &b, 1, &layer, 1, DD_PLAN_GRAD | flags, 0, &p, &err), 0, "%s",
               err.msg);
  memcpy(dd_plan_tensor(p, in)->data, x, sizeof(float) * 3 * 120 * 160);
  dd_plan_forward(p);
  dd_plan_zero_grad(p);
  dd_tensor *a = dd_plan_tensor(p, layer), *ga = dd_plan_grad(p, layer);
  memcpy(ga->data, a->data, (size_t)dd_tensor_numel(a) * sizeof(float));
  dd_plan_backward(p);
  dd_tensor *g = th_tensor(4, dims);
  memcpy(g->data, dd_plan_grad(p, in)->data, sizeof(float) * 3 * 120 * 160);
  dd_plan_free(p);
  return g;
}

/* A dream step is g / mean|g| times the step size: to first order it raises the float32
 * objective by step * <g32, g> / mean|g|.  The bar for bf16 is 0.9x fp32's gain;
 * this holds one step's first-order gain to it. */
Test(precision, bf16_plan_runs_bf16_and_climbs_the_fp32_objective, .timeout = 300) {
  if (!dd_precision_has_bf16()) cr_skip_test("this CPU has no bf16 kernel: bf16 plans run fp32");
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int layer;
  dd_err err;
  cr_assert_eq(dd_model_resolve(m, "inception_4c/output", &layer, &err), 0, "%s", err.msg);
  int64_t dims[4] = {1, 3, 120, 160};
  dd_tensor *x = th_random(4, dims, 17, -100, 100);
  dd_tensor *g32 = gradient(m, layer, 0, dd_f32(x)), *g16 = gradient(m, layer, DD_PLAN_BF16,
                                                                      dd_f32(x));
  int64_t n = dd_tensor_numel(x);
  double dot32 = 0, dot16 = 0, abs32 = 0, abs16 = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = dd_f32(g32)[i], b = dd_f32(g16)[i];
    dot32 += a * a;
    dot16 += a * b;
    abs32 += fabs(a);
    abs16 += fabs(b);
  }
  double rel = th_rel_l2(g16, g32), ratio = (dot16 / abs16) / (dot32 / abs32);
  cr_log_info("bf16 gradient: relative L2 distance %.3g from fp32's; first-order gain of a "
              "normalized step %.4f x fp32's", rel, ratio);
  cr_assert(rel > 1e-4, "the bf16 plan's gradient is %.3g from fp32's: bf16 did not run", rel);
  cr_assert(ratio >= 0.9, "a bf16 step gains %.4f x what an fp32 step does", ratio);
  dd_tensor_free(x);
  dd_tensor_free(g32);
  dd_tensor_free(g16);
  dd_model_free(m);
}
