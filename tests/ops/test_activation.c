#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

Test(relu, matches_naive_reference) {
  th_node t;
  th_init(&t, "Relu", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3, 5, 7};
  dd_tensor *x = th_random(4, dims, 1, -1, 1), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  for (int64_t i = 0; i < dd_tensor_numel(x); i++)
    cr_assert_eq(dd_f32(y[0])[i], fmaxf(dd_f32(x)[i], 0.f));
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
}

Test(relu, gradient_matches_finite_differences) {
  th_node t;
  th_init(&t, "Relu", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {1, 4, 6, 6};
  dd_tensor *x = th_random(4, dims, 2, -1, 1);
  int skipped = 0;
  double e = th_gradcheck(&t, &x, 0, 1e-3f, 7, &skipped);
  cr_assert(e >= 0 && e < 1e-3, "relative error %g", e);
  cr_assert(skipped < 5, "skipped %d", skipped);
  dd_tensor_free(x);
}

/* Accumulating and in-place (DD_OP_INPLACE_GRAD) backward against the mask of y > 0, on
 * tensors under the threading threshold, over it, and of odd length. */
Test(relu, backward_accumulates_or_overwrites_in_place) {
  int64_t shapes[][4] = {{2, 3, 5, 7}, {1, 3, 11, 13}, {1, 64, 40, 40}};
  for (int si = 0; si < 3; si++) {
    th_node t;
    th_init(&t, "Relu", 1, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *x = th_random(4, shapes[si], 20 + si, -1, 1), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    dd_tensor *dy = th_random(4, shapes[si], 30 + si, -1, 1);
    dd_tensor *dx = th_random(4, shapes[si], 40 + si, -1, 1), *g = th_tensor(4, shapes[si]);
    dd_tensor *dx0 = th_tensor(4, shapes[si]);
    int64_t n = dd_tensor_numel(x);
    memcpy(dd_f32(dx0), dd_f32(dx), (size_t)n * sizeof(float));
    memcpy(dd_f32(g), dd_f32(dy), (size_t)n * sizeof(float));
    const dd_tensor *o[1] = {y[0]}, *dout[1] = {dy}, *gout[1] = {g};
    t.node.op->backward(&t.node, (const dd_tensor *const *)&x, o, dout, &dx, NULL);
    t.node.op->backward(&t.node, (const dd_tensor *const *)&x, o, gout, &g, NULL);
    for (int64_t i = 0; i < n; i++) {
      float want = dd_f32(x)[i] > 0.f ? dd_f32(dy)[i] : 0.f;
      cr_assert_eq(dd_f32(dx)[i], dd_f32(dx0)[i] + want, "shape %d at %lld", si, (long long)i);
      cr_assert_eq(dd_f32(g)[i], want, "in place, shape %d at %lld", si, (long long)i);
    }
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    dd_tensor_free(dx0);
    dd_tensor_free(g);
  }
}

/* Moves values within `gap` of any point in `kinks` away from it, so finite differences do
 * not straddle a kink. */
static void away_from(dd_tensor *x, const float *kinks, int nk, float gap) {
  for (int64_t i = 0; i < dd_tensor_numel(x); i++)
    for (int k = 0; k < nk; k++) {
      float *v = &dd_f32(x)[i];
      if (fabsf(*v - kinks[k]) < gap) *v = kinks[k] + (*v >= kinks[k] ? gap : -gap);
    }
}

static dd_tensor *scalar(float v) {
  dd_tensor *t = th_tensor(0, NULL);
  dd_f32(t)[0] = v;
  return t;
}

Test(leakyrelu, matches_naive_reference) {
  const float alphas[] = {0.01f, 0.1f, 0.5f, -0.3f};
  for (int a = -1; a < 4; a++) {
    th_node t;
    th_init(&t, "LeakyRelu", 1, 1);
    if (a >= 0) th_attr_float(&t, "alpha", alphas[a]);
    float alpha = a >= 0 ? alphas[a] : 0.01f; /* the ONNX default */
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t dims[] = {2, 3, 5, 7};
    dd_tensor *x = th_random(4, dims, 10 + a, -2, 2), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < dd_tensor_numel(x); i++) {
      float v = dd_f32(x)[i];
      cr_assert_eq(dd_f32(y[0])[i], v > 0 ? v : alpha * v);
    }
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(leakyrelu, gradient_matches_finite_differences) {
  th_node t;
  th_init(&t, "LeakyRelu", 1, 1);
  th_attr_float(&t, "alpha", 0.2f);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {1, 3, 5, 5};
  dd_tensor *x = th_random(4, dims, 3, -1, 1);
  const float kink = 0.f;
  away_from(x, &kink, 1, 0.01f);
  int skipped = -1;
  double e = th_gradcheck(&t, &x, 0, 1e-3f, 8, &skipped);
  cr_assert(e >= 0 && e < 1e-3, "relative error %g", e);
  cr_assert_eq(skipped, 0);
  dd_tensor_free(x);
  free(t.node.params);
}

static float clipf(float v, float lo, float hi) {
  return fminf(fmaxf(v, lo), hi);
}

/* form 0: attributes (opset < 11); 1: inputs.  Bounds absent when NAN. */
static void clip_case(int form, float lo, float hi, uint64_t seed) {
  th_node t;
  int n_in = form ? (isnan(hi) ? (isnan(lo) ? 1 : 2) : 3) : 1;
  th_init(&t, "Clip", n_in, 1);
  t.node.opset = form ? 13 : 6;
  if (!form && !isnan(lo)) th_attr_float(&t, "min", lo);
  if (!form && !isnan(hi)) th_attr_float(&t, "max", hi);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {4, 5, 6};
  dd_tensor *in[3] = {th_random(3, dims, seed, -3, 3), NULL, NULL}, *y[1];
  if (form && !isnan(lo)) in[1] = scalar(lo);
  if (form && !isnan(hi)) in[2] = scalar(hi);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  float l = isnan(lo) ? -INFINITY : lo, h = isnan(hi) ? INFINITY : hi;
  for (int64_t i = 0; i < dd_tensor_numel(in[0]); i++)
    cr_assert_eq(dd_f32(y[0])[i], clipf(dd_f32(in[0])[i], l, h), "form %d [%g, %g] at %lld",
                 form, lo, hi, (long long)i);
  dd_tensor_free(y[0]);
  /* Gradient: away from the bounds, where it is 1 inside and 0 outside. */
  const float kinks[] = {l, h};
  away_from(in[0], kinks, 2, 0.01f);
  int skipped = -1;
  double e = th_gradcheck(&t, in, 0, 1e-3f, seed + 1, &skipped);
  cr_assert(e >= 0 && e < 1e-3, "relative error %g", e);
  cr_assert_eq(skipped, 0);
  for (int k = 0; k < 3; k++) dd_tensor_free(in[k]);
  free(t.node.params);
}

Test(clip, matches_naive_reference_and_gradient) {
  for (int form = 0; form < 2; form++) {
    clip_case(form, -1.f, 1.5f, 20);
    clip_case(form, -0.5f, NAN, 21);
    clip_case(form, NAN, 0.25f, 22);
    clip_case(form, NAN, NAN, 23);
    clip_case(form, 2.f, 1.f, 24); /* min > max: everything is max, as numpy.clip */
  }
  /* only max, min omitted in the middle */
  th_node t;
  th_init(&t, "Clip", 3, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {10};
  dd_tensor *in[3] = {th_random(1, dims, 5, -3, 3), NULL, scalar(0.5f)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  for (int i = 0; i < 10; i++) cr_assert_eq(dd_f32(y[0])[i], fminf(dd_f32(in[0])[i], 0.5f));
  dd_tensor_free(in[0]);
  dd_tensor_free(in[2]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(clip, gradient_passes_at_the_bounds_as_pytorch) {
  th_node t;
  th_init(&t, "Clip", 1, 1);
  th_attr_float(&t, "min", -1.f);
  th_attr_float(&t, "max", 1.f);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {4};
  dd_tensor *x = th_tensor(1, dims), *g = th_tensor(1, dims), *dy = th_tensor(1, dims);
  const float xs[] = {-1.f, 1.f, -1.001f, 1.001f}, want[] = {1, 1, 0, 0};
  for (int i = 0; i < 4; i++) dd_f32(x)[i] = xs[i], dd_f32(dy)[i] = 1.f;
  size_t scratch;
  dd_tensor yshape = {0}, *outs[1] = {&yshape};
  cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)&x, outs, &scratch, &err), 0);
  const dd_tensor *dout[1] = {dy};
  t.node.op->backward(&t.node, (const dd_tensor *const *)&x, NULL, dout, &g, NULL);
  for (int i = 0; i < 4; i++) cr_assert_eq(dd_f32(g)[i], want[i], "x = %g", xs[i]);
  dd_tensor_free(x);
  dd_tensor_free(g);
  dd_tensor_free(dy);
  free(t.node.params);
}

Test(clip, refuses_bounds_computed_at_run_time) {
  th_node t;
  th_init(&t, "Clip", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {3};
  dd_tensor *x = th_random(1, dims, 1, -1, 1);
  dd_tensor lo = {.dtype = DD_F32}; /* shape known, no data: not constant */
  const dd_tensor *in[2] = {x, &lo};
  dd_tensor yshape = {0}, *outs[1] = {&yshape};
  size_t scratch;
  int rc = t.node.op->infer(&t.node, in, outs, &scratch, &err);
  cr_assert_eq(rc, DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  dd_tensor_free(x);
  free(t.node.params);
}

Test(clip, refuses_attributes_and_inputs_together) {
  th_node t;
  th_init(&t, "Clip", 2, 1);
  th_attr_float(&t, "min", 0.f);
  dd_err err;
  cr_assert_neq(th_setup(&t, &err), 0);
}

Test(sigmoid, matches_naive_reference) {
  th_node t;
  th_init(&t, "Sigmoid", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {3, 50};
  dd_tensor *x = th_random(2, dims, 4, -20, 20), *y[1];
  dd_f32(x)[0] = -200.f; /* exp(200) overflows float: must still give 0, not NaN */
  dd_f32(x)[1] = 200.f;
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  for (int64_t i = 0; i < dd_tensor_numel(x); i++) {
    double want = 1.0 / (1.0 + exp(-(double)dd_f32(x)[i]));
    cr_assert(fabs(dd_f32(y[0])[i] - want) <= 1e-6 * fmax(want, 1e-30) + 1e-37,
              "x = %g: %g vs %g", dd_f32(x)[i], dd_f32(y[0])[i], want);
  }
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
}

Test(sigmoid, gradient_matches_finite_differences) {
  th_node t;
  th_init(&t, "Sigmoid", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3, 4, 4};
  dd_tensor *x = th_random(4, dims, 5, -4, 4);
  int skipped = -1;
  double e = th_gradcheck(&t, &x, 0, 1e-2f, 9, &skipped);
  cr_assert(e >= 0 && e < 1e-3, "relative error %g", e);
  cr_assert_eq(skipped, 0);
  dd_tensor_free(x);
}

Test(activation, large_tensors_take_the_threaded_path) {
  const char *ops[] = {"Relu", "LeakyRelu", "Sigmoid", "Clip"};
  int64_t dims[] = {1, 64, 40, 40};
  dd_tensor *x = th_random(4, dims, 6, -3, 3);
  for (int k = 0; k < 4; k++) {
    th_node t;
    th_init(&t, ops[k], 1, 1);
    if (k == 3) th_attr_float(&t, "max", 1.f);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < dd_tensor_numel(x); i++) {
      float v = dd_f32(x)[i];
      float want = k == 0 ? fmaxf(v, 0) : k == 1 ? (v > 0 ? v : 0.01f * v)
                 : k == 2 ? 1.f / (1.f + expf(-v)) : fminf(v, 1.f);
      cr_assert(fabsf(dd_f32(y[0])[i] - want) <= 1e-6f, "%s at %lld", ops[k], (long long)i);
    }
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
  dd_tensor_free(x);
}
