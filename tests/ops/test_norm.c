#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

/* X of `dims`, per-channel scale, bias, mean and var (var > 0). */
static void bn_inputs(int nd, const int64_t *dims, uint64_t seed, dd_tensor **in) {
  int64_t c[] = {dims[1]};
  in[0] = th_random(nd, dims, seed, -2, 2);
  in[1] = th_random(1, c, seed + 1, 0.5f, 2);
  in[2] = th_random(1, c, seed + 2, -1, 1);
  in[3] = th_random(1, c, seed + 3, -1, 1);
  in[4] = th_random(1, c, seed + 4, 0.1f, 3);
}

Test(batchnorm, matches_naive_reference) {
  const int64_t shapes[][5] = {{2, 3, 4, 5}, {4, 6}, {2, 3, 7}, {1, 2, 3, 2, 2}, {1, 32, 40, 40}};
  const int ranks[] = {4, 2, 3, 5, 4};
  const float eps[] = {1e-5f, 1e-3f, 0.5f, 1e-5f, 1e-5f};
  for (int k = 0; k < 5; k++) {
    th_node t;
    th_init(&t, "BatchNormalization", 5, 1);
    if (k) th_attr_float(&t, "epsilon", eps[k]);
    th_attr_float(&t, "momentum", 0.9f); /* ignored in inference */
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[5], *y[1];
    bn_inputs(ranks[k], shapes[k], 10 * k, in);
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert(dd_shape_eq(&y[0]->shape, &in[0]->shape));
    int64_t c = shapes[k][1], hw = dd_tensor_numel(in[0]) / (shapes[k][0] * c);
    for (int64_t i = 0; i < dd_tensor_numel(in[0]); i++) {
      int64_t ch = (i / hw) % c;
      double want = (dd_f32(in[0])[i] - dd_f32(in[3])[ch]) /
                        sqrt((double)dd_f32(in[4])[ch] + eps[k]) * dd_f32(in[1])[ch] +
                    dd_f32(in[2])[ch];
      cr_assert(fabs(dd_f32(y[0])[i] - want) < 1e-5 * fmax(1, fabs(want)), "case %d at %lld: %g vs %g",
                k, (long long)i, dd_f32(y[0])[i], want);
    }
    for (int j = 0; j < 5; j++) dd_tensor_free(in[j]);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(batchnorm, gradients_match_finite_differences) {
  int64_t dims[] = {2, 3, 3, 4};
  th_node t;
  th_init(&t, "BatchNormalization", 5, 1);
  th_attr_float(&t, "epsilon", 1e-2f);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[5];
  bn_inputs(4, dims, 7, in);
  /* X is what DeepDream needs; the statistics' gradients are checked too. */
  for (int w = 0; w < 5; w++) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, w, 1e-2f, 11 + w, &skipped);
    cr_assert(e >= 0 && e < 2e-3, "input %d: relative error %g", w, e);
    cr_assert_eq(skipped, 0);
  }
  for (int j = 0; j < 5; j++) dd_tensor_free(in[j]);
  free(t.node.params);
}

Test(batchnorm, refuses_training_and_per_activation_modes) {
  dd_err err;
  th_node t;
  th_init(&t, "BatchNormalization", 5, 1);
  th_attr_int(&t, "training_mode", 1);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "training_mode"), "%s", err.msg);
  th_init(&t, "BatchNormalization", 5, 1);
  th_attr_int(&t, "spatial", 0);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "spatial"), "%s", err.msg);
  th_init(&t, "BatchNormalization", 5, 1);
  th_attr_int(&t, "spatial", 1);
  th_attr_int(&t, "training_mode", 0);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  free(t.node.params);
}

Test(batchnorm, refuses_statistics_of_the_wrong_size) {
  th_node t;
  th_init(&t, "BatchNormalization", 5, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {1, 3, 2, 2}, four[] = {4};
  dd_tensor *in[5], *y[1];
  bn_inputs(4, dims, 1, in);
  dd_tensor_free(in[4]);
  in[4] = th_random(1, four, 1, 1, 2);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "var"), "%s", err.msg);
  for (int j = 0; j < 5; j++) dd_tensor_free(in[j]);
  free(t.node.params);
}

/* ---- LayerNormalization ---- */

typedef struct ln_case {
  int ndim;
  int64_t dims[4];
  int64_t axis;
  int has_axis, has_bias;
  float eps; /* 0: the default, 1e-5 */
  int sdim, bdim; /* ranks of Scale and B: their dims are the last of X's, or 1 where the */
  int64_t s_ones, b_ones; /* bit i of *_ones sets dim i to 1 (broadcast) */
} ln_case;

static const ln_case ln_cases[] = {
    {4, {2, 3, 4, 5}, -1, 1, 1, 0, 1, 1, 0, 0},  {4, {2, 3, 4, 5}, 1, 1, 1, 1e-3f, 3, 3, 0, 0},
    {4, {2, 3, 4, 5}, 0, 1, 0, 0, 4, 0, 0, 0},   {4, {2, 3, 4, 5}, -3, 1, 1, 0.5f, 3, 3, 0, 0},
    {2, {4, 6}, 1, 1, 1, 0, 1, 1, 0, 0},         {3, {2, 3, 7}, 2, 1, 1, 0.5f, 1, 1, 0, 0},
    {3, {2, 3, 7}, 0, 0, 1, 0, 1, 1, 0, 0},      /* default axis -1 */
    {4, {2, 3, 4, 5}, 2, 1, 1, 0, 1, 2, 0, 2},   /* Scale [5], B [4, 1] */
    {4, {2, 3, 4, 5}, 1, 1, 1, 0, 1, 3, 1, 5},   /* Scale [1], B [1, 4, 1] */
    {3, {3, 1, 200}, -1, 1, 1, 0, 1, 1, 0, 0},   /* long rows */
    {3, {2, 2, 97}, -1, 1, 1, 0, 1, 1, 0, 0},    /* three steps of 32 lanes and one left */
};

static int ln_axis(const ln_case *k) {
  int64_t a = k->has_axis ? k->axis : -1;
  return (int)(a < 0 ? a + k->ndim : a);
}

/* Scale or B of rank `nd`: the last nd dims of X, 1 where bit i of `ones` is set. */
static dd_tensor *ln_param(const ln_case *k, int nd, int64_t ones, uint64_t seed, float lo,
                           float hi) {
  int64_t d[4];
  for (int i = 0; i < nd; i++) d[i] = (ones >> i) & 1 ? 1 : k->dims[k->ndim - nd + i];
  return th_random(nd, d, seed, lo, hi);
}

/* The value of parameter t at element e of X (t aligned right, broadcast where its dim is 1). */
static double ln_param_at(const dd_tensor *t, const ln_case *k, int64_t e) {
  if (!t) return 0;
  int64_t idx[4], rem = e, off = 0, st = 1;
  for (int i = k->ndim - 1; i >= 0; i--) idx[i] = rem % k->dims[i], rem /= k->dims[i];
  for (int i = t->shape.ndim - 1; i >= 0; i--) {
    int64_t xi = idx[k->ndim - t->shape.ndim + i];
    off += (t->shape.d[i] == 1 ? 0 : xi) * st;
    st *= t->shape.d[i];
  }
  return dd_f32(t)[off];
}

static void ln_node(th_node *t, const ln_case *k, int n_out) {
  th_init(t, "LayerNormalization", k->has_bias ? 3 : 2, n_out);
  if (k->has_axis) th_attr_int(t, "axis", k->axis);
  if (k->eps) th_attr_float(t, "epsilon", k->eps);
}

static void ln_inputs(const ln_case *k, uint64_t seed, dd_tensor **in) {
  in[0] = th_random(k->ndim, k->dims, seed, -2, 3);
  in[1] = ln_param(k, k->sdim, k->s_ones, seed + 1, 0.5f, 2);
  in[2] = k->has_bias ? ln_param(k, k->bdim, k->b_ones, seed + 2, -1, 1) : NULL;
}

Test(layernorm, matches_naive_reference_with_statistics) {
  for (size_t ci = 0; ci < sizeof ln_cases / sizeof ln_cases[0]; ci++) {
    const ln_case *k = &ln_cases[ci];
    th_node t;
    ln_node(&t, k, 3);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[3], *out[3];
    ln_inputs(k, 10 * ci, in);
    cr_assert_eq(th_forward(&t, in, out, &err), 0, "case %zu: %s", ci, err.msg);
    int axis = ln_axis(k);
    int64_t rows = 1, d = 1;
    for (int i = 0; i < k->ndim; i++) {
      if (i < axis) rows *= k->dims[i];
      else d *= k->dims[i];
      cr_assert_eq(out[1]->shape.d[i], i < axis ? k->dims[i] : 1, "case %zu dim %d", ci, i);
      cr_assert_eq(out[2]->shape.d[i], i < axis ? k->dims[i] : 1);
    }
    cr_assert(dd_shape_eq(&out[0]->shape, &in[0]->shape));
    double eps = k->eps ? k->eps : 1e-5;
    const float *x = dd_f32(in[0]);
    for (int64_t r = 0; r < rows; r++) {
      double mean = 0, var = 0;
      for (int64_t j = 0; j < d; j++) mean += x[r * d + j];
      mean /= (double)d;
      for (int64_t j = 0; j < d; j++) var += (x[r * d + j] - mean) * (x[r * d + j] - mean);
      var /= (double)d;
      double inv = 1 / sqrt(var + eps);
      cr_assert(fabs(dd_f32(out[1])[r] - mean) < 1e-6 * fmax(1, fabs(mean)), "case %zu", ci);
      cr_assert(fabs(dd_f32(out[2])[r] - inv) < 1e-6 * inv, "case %zu: invstd %g vs %g", ci,
                dd_f32(out[2])[r], inv);
      for (int64_t j = 0; j < d; j++) {
        int64_t e = r * d + j;
        double want = (x[e] - mean) * inv * ln_param_at(in[1], k, e) + ln_param_at(in[2], k, e);
        cr_assert(fabs(dd_f32(out[0])[e] - want) < 1e-5 * fmax(1, fabs(want)),
                  "case %zu at %lld: %g vs %g", ci, (long long)e, dd_f32(out[0])[e], want);
      }
    }
    for (int j = 0; j < 3; j++) {
      dd_tensor_free(in[j]);
      dd_tensor_free(out[j]);
    }
    free(t.node.params);
  }
}

Test(layernorm, gradients_of_x_scale_and_bias_match_finite_differences) {
  static const int picks[] = {0, 1, 3, 6, 7, 8};
  for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
    const ln_case *k = &ln_cases[picks[pi]];
    th_node t;
    ln_node(&t, k, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[3];
    ln_inputs(k, 100 + pi, in);
    for (int w = 0; w < (k->has_bias ? 3 : 2); w++) {
      int skipped = -1;
      double e = th_gradcheck(&t, in, w, 1e-2f, 5 + w, &skipped);
      cr_assert(e >= 0 && e < 2e-3, "case %d input %d: relative error %g", picks[pi], w, e);
      cr_assert_eq(skipped, 0);
    }
    for (int j = 0; j < 3; j++) dd_tensor_free(in[j]);
    free(t.node.params);
  }
}

/* L = sum(w0 * Y) + sum(w1 * Mean) + sum(w2 * InvStdDev): the gradient of X through all three
 * outputs against central differences (th_gradcheck sees out[0] only). */
static double ln_objective(th_node *t, dd_tensor **in, float *const *w) {
  dd_tensor *out[3];
  dd_err err;
  cr_assert_eq(th_forward(t, in, out, &err), 0, "%s", err.msg);
  double L = 0;
  for (int k = 0; k < 3; k++) {
    for (int64_t i = 0; i < dd_tensor_numel(out[k]); i++) L += (double)w[k][i] * dd_f32(out[k])[i];
    dd_tensor_free(out[k]);
  }
  return L;
}

Test(layernorm, gradient_through_mean_and_invstddev_outputs) {
  const ln_case *k = &ln_cases[1]; /* axis 1 of 2x3x4x5, eps 1e-3 */
  th_node t;
  ln_node(&t, k, 3);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[3], *out[3];
  ln_inputs(k, 77, in);
  cr_assert_eq(th_forward(&t, in, out, &err), 0, "%s", err.msg);
  dd_tensor *dout[3];
  float *w[3];
  for (int j = 0; j < 3; j++) {
    dout[j] = th_random(out[j]->shape.ndim, out[j]->shape.d, 300 + j, -1, 1);
    w[j] = dd_f32(dout[j]);
  }
  dd_tensor *dx = th_tensor(k->ndim, k->dims);
  dd_tensor *din[3] = {dx, NULL, NULL};
  size_t need;
  dd_tensor sh[3], *outs[3] = {&sh[0], &sh[1], &sh[2]};
  cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)in, outs, &need, &err), 0);
  void *scratch = malloc(need);
  t.node.op->backward(&t.node, (const dd_tensor *const *)in, (const dd_tensor *const *)out,
                      (const dd_tensor *const *)dout, din, scratch);
  free(scratch);
  float *x = dd_f32(in[0]);
  double worst = 0, scale = th_max_abs(dx);
  const float h = 1e-2f;
  for (int64_t i = 0; i < dd_tensor_numel(in[0]); i++) {
    float x0 = x[i];
    x[i] = x0 + h;
    double lp = ln_objective(&t, in, w);
    x[i] = x0 - h;
    double lm = ln_objective(&t, in, w);
    x[i] = x0;
    double num = (lp - lm) / (2.0 * h);
    worst = fmax(worst, fabs(num - dd_f32(dx)[i]) / scale);
  }
  cr_assert(worst < 2e-3, "relative error %g", worst);
  /* and the statistics' part is there: without dMean and dInvStdDev dx differs */
  dd_tensor *dx0 = th_tensor(k->ndim, k->dims);
  dd_tensor *dout0[3] = {dout[0], NULL, NULL}, *din0[3] = {dx0, NULL, NULL};
  scratch = malloc(need);
  t.node.op->backward(&t.node, (const dd_tensor *const *)in, (const dd_tensor *const *)out,
                      (const dd_tensor *const *)dout0, din0, scratch);
  free(scratch);
  cr_assert(th_max_abs_diff(dx, dx0) > 1e-2 * scale);
  for (int j = 0; j < 3; j++) {
    dd_tensor_free(in[j]);
    dd_tensor_free(out[j]);
    dd_tensor_free(dout[j]);
  }
  dd_tensor_free(dx);
  dd_tensor_free(dx0);
  free(t.node.params);
}

Test(layernorm, refuses_other_stash_types_and_bad_shapes) {
  th_node t;
  dd_err err;
  th_init(&t, "LayerNormalization", 3, 1);
  th_attr_int(&t, "stash_type", 0);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "stash_type"), "%s", err.msg);

  const ln_case *k = &ln_cases[0];
  dd_tensor *in[3], *out[1];
  ln_inputs(k, 5, in);
  /* axis out of range */
  th_init(&t, "LayerNormalization", 3, 1);
  th_attr_int(&t, "axis", 4);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, in, out, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "axis"), "%s", err.msg);
  free(t.node.params);
  /* Scale of [4] against the normalized dims [5] */
  th_init(&t, "LayerNormalization", 3, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t four[] = {4};
  dd_tensor_free(in[1]);
  in[1] = th_random(1, four, 1, 1, 2);
  cr_assert_eq(th_forward(&t, in, out, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "Scale"), "%s", err.msg);
  free(t.node.params);
  for (int j = 0; j < 3; j++) dd_tensor_free(in[j]);
}
