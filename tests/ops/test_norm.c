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
