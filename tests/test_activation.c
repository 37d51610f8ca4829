#include <criterion/criterion.h>
#include <math.h>

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
