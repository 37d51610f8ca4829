/* Concat against an element-by-element reference (each output index mapped back to its
 * input), its backward with some gradients not requested, a gradient check, int64, errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

typedef struct concat_case {
  const char *what;
  int ndim, n_in;
  int64_t axis;
  int64_t dims[4][4]; /* per input */
} concat_case;

static const concat_case cases[] = {
    {"1-D axis 0", 1, 2, 0, {{3}, {5}}},
    {"2-D axis -1", 2, 3, -1, {{2, 3}, {2, 1}, {2, 4}}},
    {"4-D axis 1, inception-like", 4, 4, 1,
     {{2, 3, 4, 5}, {2, 1, 4, 5}, {2, 6, 4, 5}, {2, 2, 4, 5}}},
    {"3-D axis 0", 3, 2, 0, {{1, 2, 3}, {2, 2, 3}}},
    {"3-D axis -2 with an empty input", 3, 3, -2, {{2, 2, 3}, {2, 0, 3}, {2, 4, 3}}},
    {"4-D last axis", 4, 2, 3, {{1, 2, 2, 3}, {1, 2, 2, 1}}},
    {"single input", 2, 1, 0, {{3, 4}}},
};

static void setup_node(th_node *t, const concat_case *k) {
  th_init(t, "Concat", k->n_in, 1);
  th_attr_int(t, "axis", k->axis);
}

/* Value at output multi-index idx: walk the inputs along the axis. */
static double ref_value(const concat_case *k, dd_tensor *const *in, const int64_t *idx) {
  int axis = (int)(k->axis < 0 ? k->axis + k->ndim : k->axis);
  int64_t pos = idx[axis];
  for (int i = 0; i < k->n_in; i++) {
    if (pos < k->dims[i][axis]) {
      int64_t flat = 0;
      for (int d = 0; d < k->ndim; d++) flat = flat * k->dims[i][d] + (d == axis ? pos : idx[d]);
      return in[i]->dtype == DD_F32 ? dd_f32(in[i])[flat] : (double)dd_i64(in[i])[flat];
    }
    pos -= k->dims[i][axis];
  }
  return NAN;
}

static void unravel(const dd_shape *s, int64_t flat, int64_t *idx) {
  for (int d = s->ndim - 1; d >= 0; d--) {
    idx[d] = flat % s->d[d];
    flat /= s->d[d];
  }
}

Test(concat, matches_reference_float_and_int64) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    for (int as_int = 0; as_int < 2; as_int++) {
      const concat_case *k = &cases[ci];
      th_node t;
      setup_node(&t, k);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[4] = {0}, *y[1];
      for (int i = 0; i < k->n_in; i++) {
        in[i] = th_random(k->ndim, k->dims[i], 10 * ci + i, -1, 1);
        if (as_int) {
          dd_tensor *q = th_tensor_i64(k->ndim, k->dims[i], NULL);
          for (int64_t j = 0; j < dd_tensor_numel(q); j++)
            dd_i64(q)[j] = (int64_t)(dd_f32(in[i])[j] * 1e6) + ((int64_t)1 << 40);
          dd_tensor_free(in[i]);
          in[i] = q;
        }
      }
      cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s: %s", k->what, err.msg);
      cr_assert_eq(y[0]->dtype, as_int ? DD_I64 : DD_F32);
      int axis = (int)(k->axis < 0 ? k->axis + k->ndim : k->axis);
      int64_t total = 0;
      for (int i = 0; i < k->n_in; i++) total += k->dims[i][axis];
      cr_assert_eq(y[0]->shape.d[axis], total, "%s", k->what);
      for (int64_t j = 0; j < dd_tensor_numel(y[0]); j++) {
        int64_t idx[4];
        unravel(&y[0]->shape, j, idx);
        double got = as_int ? (double)dd_i64(y[0])[j] : dd_f32(y[0])[j];
        cr_assert_eq(got, ref_value(k, in, idx), "%s: element %lld", k->what, (long long)j);
      }
      for (int i = 0; i < k->n_in; i++) dd_tensor_free(in[i]);
      dd_tensor_free(y[0]);
      free(t.node.params);
    }
  }
}

Test(concat, backward_adds_slices_into_requested_inputs_only) {
  const concat_case *k = &cases[2];
  th_node t;
  setup_node(&t, k);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  dd_tensor *in[4], *y[1];
  for (int i = 0; i < 4; i++) in[i] = th_random(4, k->dims[i], 90 + i, -1, 1);
  cr_assert_eq(th_forward(&t, in, y, &err), 0);
  dd_tensor *dy = th_random(4, y[0]->shape.d, 5, -1, 1);
  dd_tensor *din[4] = {th_tensor(4, k->dims[0]), NULL, th_tensor(4, k->dims[2]), NULL};
  for (int64_t j = 0; j < dd_tensor_numel(din[0]); j++) dd_f32(din[0])[j] = 1.f;
  const dd_tensor *dout[1] = {dy};
  t.node.op->backward(&t.node, (const dd_tensor *const *)in, (const dd_tensor *const *)y, dout,
                      din, NULL);
  /* The gradient of input i at index idx is dy at the same index shifted along the axis. */
  int64_t shift[4] = {0, 3, 4, 10};
  for (int i = 0; i < 4; i += 2)
    for (int64_t j = 0; j < dd_tensor_numel(din[i]); j++) {
      int64_t idx[4];
      unravel(&din[i]->shape, j, idx);
      idx[1] += shift[i];
      int64_t flat = 0;
      for (int d = 0; d < 4; d++) flat = flat * y[0]->shape.d[d] + idx[d];
      float want = dd_f32(dy)[flat] + (i == 0 ? 1.f : 0.f);
      cr_assert_eq(dd_f32(din[i])[j], want, "input %d element %lld", i, (long long)j);
    }
  for (int i = 0; i < 4; i++) {
    dd_tensor_free(in[i]);
    dd_tensor_free(din[i]);
  }
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  free(t.node.params);
}

Test(concat, gradient_matches_finite_differences) {
  const concat_case *k = &cases[1];
  th_node t;
  setup_node(&t, k);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  dd_tensor *in[3];
  for (int i = 0; i < 3; i++) in[i] = th_random(2, k->dims[i], 60 + i, -1, 1);
  for (int i = 0; i < 3; i++) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, i, 1e-2f, 4 + i, &skipped);
    cr_assert(e >= 0 && e < 1e-3, "input %d: relative error %g", i, e);
    cr_assert_eq(skipped, 0);
  }
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  free(t.node.params);
}

Test(concat, infer_rejects_mismatches_with_clear_errors) {
  dd_err err;
  th_node t;
  int64_t a[3] = {2, 3, 4}, b[3] = {2, 5, 4}, c[3] = {2, 3, 5}, d[2] = {2, 3};
  dd_tensor *ta = th_tensor(3, a), *tb = th_tensor(3, b), *tc = th_tensor(3, c);
  dd_tensor *td = th_tensor(2, d);
  dd_tensor *ti = th_tensor_i64(3, a, NULL);

  th_init(&t, "Concat", 2, 1);
  th_attr_int(&t, "axis", 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){ta, tb}, &err), 0, "%s", err.msg);

  th_init(&t, "Concat", 2, 1);
  th_attr_int(&t, "axis", 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){ta, tc}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "2x3x5"), "%s", err.msg);

  th_init(&t, "Concat", 2, 1);
  th_attr_int(&t, "axis", 0);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){ta, td}, &err), DD_ESHAPE);

  th_init(&t, "Concat", 2, 1);
  th_attr_int(&t, "axis", 3);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){ta, ta}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "axis"), "%s", err.msg);

  th_init(&t, "Concat", 2, 1);
  th_attr_int(&t, "axis", -4);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){ta, ta}, &err), DD_ESHAPE);

  th_init(&t, "Concat", 2, 1);
  th_attr_int(&t, "axis", 0);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){ta, ti}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "int64"), "%s", err.msg);

  th_init(&t, "Concat", 2, 1);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "axis"), "%s", err.msg);

  dd_tensor *all[] = {ta, tb, tc, td, ti};
  for (size_t i = 0; i < 5; i++) dd_tensor_free(all[i]);
}
