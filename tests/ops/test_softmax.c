/* Softmax and LogSoftmax: both ONNX semantics (opset < 13 coerces to 2-D at axis; from 13 one
 * axis) against a double-precision reference, numerical stability, the Jacobian, finite
 * differences. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

typedef struct sm_case {
  int64_t opset;
  int has_axis;
  int64_t axis;
  int ndim;
  int64_t dims[4];
  float range;
} sm_case;

static const sm_case cases[] = {
    {13, 1, 0, 3, {2, 3, 4}, 3.f},  {13, 1, 1, 3, {2, 3, 4}, 3.f},  {13, 1, 2, 3, {2, 3, 4}, 3.f},
    {13, 0, 0, 3, {2, 3, 4}, 3.f},  {13, 1, -2, 4, {2, 3, 4, 2}, 3.f},
    {11, 0, 0, 3, {2, 3, 4}, 3.f},  {11, 1, 0, 3, {2, 3, 4}, 3.f},  {11, 1, 2, 3, {2, 3, 4}, 3.f},
    {11, 1, -2, 4, {2, 3, 4, 2}, 3.f}, {1, 0, 0, 2, {3, 7}, 3.f},
    {0, 0, 0, 3, {2, 3, 4}, 3.f},   /* opset unknown: the current rule */
    {13, 1, 1, 2, {3, 5}, 1000.f},  /* large values must not overflow exp */
};

/* Normalized axis and whether the op coerces to 2-D, from the case as the spec reads. */
static void semantics(const sm_case *k, int *axis, int *coerce) {
  *coerce = k->opset > 0 && k->opset < 13;
  int64_t a = k->has_axis ? k->axis : (*coerce ? 1 : -1);
  *axis = (int)(a < 0 ? a + k->ndim : a);
}

/* Softmax by groups: two elements are in the same group when they agree on every dim that
 * is not reduced.  Computed by brute force over all pairs. */
static void naive_softmax_kind(const sm_case *k, int log_kind, const float *x, float *y,
                               const float *dy, float *dx) {
  int axis, coerce;
  semantics(k, &axis, &coerce);
  int64_t n = 1;
  for (int i = 0; i < k->ndim; i++) n *= k->dims[i];
  for (int64_t e = 0; e < n; e++) {
    int64_t ie[4], rem = e;
    for (int d = k->ndim - 1; d >= 0; d--) ie[d] = rem % k->dims[d], rem /= k->dims[d];
    double mx = -INFINITY, sum = 0, dot = 0;
    int64_t members[64], nm = 0;
    for (int64_t f = 0; f < n; f++) {
      int64_t jf[4], r2 = f;
      for (int d = k->ndim - 1; d >= 0; d--) jf[d] = r2 % k->dims[d], r2 /= k->dims[d];
      int same = 1;
      for (int d = 0; d < k->ndim; d++) {
        int reduced = coerce ? d >= axis : d == axis;
        if (!reduced && jf[d] != ie[d]) same = 0;
      }
      if (same) members[nm++] = f;
    }
    for (int64_t q = 0; q < nm; q++) mx = fmax(mx, x[members[q]]);
    for (int64_t q = 0; q < nm; q++) sum += exp((double)x[members[q]] - mx);
    double ye = exp((double)x[e] - mx) / sum;
    if (y) y[e] = (float)(log_kind ? (double)x[e] - mx - log(sum) : ye);
    if (!dy) continue;
    for (int64_t q = 0; q < nm; q++) {
      double yq = exp((double)x[members[q]] - mx) / sum;
      dot += log_kind ? dy[members[q]] : dy[members[q]] * yq;
    }
    dx[e] += (float)(log_kind ? dy[e] - ye * dot : ye * (dy[e] - dot));
  }
}

static void naive_softmax(const sm_case *k, const float *x, float *y, const float *dy,
                          float *dx) {
  naive_softmax_kind(k, 0, x, y, dy, dx);
}

static void setup_node_op(th_node *t, const char *op, const sm_case *k) {
  th_init(t, op, 1, 1);
  t->node.opset = k->opset;
  if (k->has_axis) th_attr_int(t, "axis", k->axis);
}

static void setup_node(th_node *t, const sm_case *k) { setup_node_op(t, "Softmax", k); }

Test(softmax, matches_reference_in_both_opset_semantics) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const sm_case *k = &cases[ci];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *x = th_random(k->ndim, k->dims, ci, -k->range, k->range), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "case %zu: %s", ci, err.msg);
    dd_tensor *ref = th_tensor(k->ndim, k->dims);
    naive_softmax(k, dd_f32(x), dd_f32(ref), NULL, NULL);
    cr_assert(th_max_abs_diff(y[0], ref) <= 1e-6, "case %zu: forward differs by %g", ci,
              th_max_abs_diff(y[0], ref));

    dd_tensor *dy = th_random(k->ndim, k->dims, 40 + ci, -1, 1);
    dd_tensor *dx = th_tensor(k->ndim, k->dims), *dref = th_tensor(k->ndim, k->dims);
    for (int64_t i = 0; i < dd_tensor_numel(dx); i++) dd_f32(dx)[i] = dd_f32(dref)[i] = -0.5f;
    const dd_tensor *dout[1] = {dy};
    t.node.op->backward(&t.node, (const dd_tensor *const *)&x, (const dd_tensor *const *)y, dout,
                        &dx, NULL);
    naive_softmax(k, dd_f32(x), NULL, dd_f32(dy), dd_f32(dref));
    cr_assert(th_max_abs_diff(dx, dref) <= 1e-6, "case %zu: backward differs by %g", ci,
              th_max_abs_diff(dx, dref));
    dd_tensor *all[] = {x, y[0], ref, dy, dx, dref};
    for (size_t i = 0; i < 6; i++) dd_tensor_free(all[i]);
    free(t.node.params);
  }
}

Test(softmax, opset_changes_the_reduced_dims) {
  /* Same data, axis 1 of a 2x3x4 tensor: opset 11 normalizes over 12 elements per batch,
   * opset 13 over the 3 channels at each of the 4 positions. */
  for (int v = 0; v < 2; v++) {
    th_node t;
    sm_case k = {v ? 13 : 11, 1, 1, 3, {2, 3, 4}, 2.f};
    setup_node(&t, &k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *x = th_random(3, k.dims, 3, -2, 2), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0);
    double s = 0;
    if (v)
      for (int c = 0; c < 3; c++) s += dd_f32(y[0])[c * 4];
    else
      for (int i = 0; i < 12; i++) s += dd_f32(y[0])[i];
    cr_assert(fabs(s - 1) < 1e-5, "opset %lld: sum %g", (long long)k.opset, s);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(softmax, gradient_matches_finite_differences) {
  static const int picks[] = {1, 3, 7, 9};
  for (size_t pi = 0; pi < 4; pi++) {
    const sm_case *k = &cases[picks[pi]];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *x = th_random(k->ndim, k->dims, 7 + pi, -k->range, k->range);
    int skipped = -1;
    double e = th_gradcheck(&t, &x, 0, 1e-2f, 2 + pi, &skipped);
    cr_assert(e >= 0 && e < 1e-2, "case %d: relative error %g", picks[pi], e);
    cr_assert_eq(skipped, 0);
    dd_tensor_free(x);
    free(t.node.params);
  }
}

Test(softmax, infer_rejects_bad_axis) {
  th_node t;
  sm_case k = {13, 1, 3, 3, {2, 3, 4}, 1.f};
  setup_node(&t, &k);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  dd_tensor *x = th_tensor(3, k.dims), shape, *outs[1] = {&shape};
  size_t scratch;
  cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)&x, outs, &scratch, &err),
               DD_ESHAPE);
  cr_assert(strstr(err.msg, "axis"), "%s", err.msg);
  dd_tensor_free(x);
  free(t.node.params);
}

/* ---- LogSoftmax: the same rows, y = x - max - log(sum(exp(x - max))) ---- */

Test(logsoftmax, matches_reference_in_both_opset_semantics) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const sm_case *k = &cases[ci];
    th_node t;
    setup_node_op(&t, "LogSoftmax", k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *x = th_random(k->ndim, k->dims, ci, -k->range, k->range), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "case %zu: %s", ci, err.msg);
    dd_tensor *ref = th_tensor(k->ndim, k->dims);
    naive_softmax_kind(k, 1, dd_f32(x), dd_f32(ref), NULL, NULL);
    /* values reach -2 * range: relative to the largest */
    double tol = 1e-6 * fmax(1, th_max_abs(ref));
    cr_assert(th_max_abs_diff(y[0], ref) <= tol, "case %zu: forward differs by %g", ci,
              th_max_abs_diff(y[0], ref));
    for (int64_t i = 0; i < dd_tensor_numel(y[0]); i++)
      cr_assert(isfinite(dd_f32(y[0])[i]), "case %zu: y[%lld] = %g", ci, (long long)i,
                dd_f32(y[0])[i]);

    dd_tensor *dy = th_random(k->ndim, k->dims, 40 + ci, -1, 1);
    dd_tensor *dx = th_tensor(k->ndim, k->dims), *dref = th_tensor(k->ndim, k->dims);
    for (int64_t i = 0; i < dd_tensor_numel(dx); i++) dd_f32(dx)[i] = dd_f32(dref)[i] = -0.5f;
    const dd_tensor *dout[1] = {dy};
    t.node.op->backward(&t.node, (const dd_tensor *const *)&x, (const dd_tensor *const *)y, dout,
                        &dx, NULL);
    naive_softmax_kind(k, 1, dd_f32(x), NULL, dd_f32(dy), dd_f32(dref));
    cr_assert(th_max_abs_diff(dx, dref) <= 1e-6, "case %zu: backward differs by %g", ci,
              th_max_abs_diff(dx, dref));
    dd_tensor *all[] = {x, y[0], ref, dy, dx, dref};
    for (size_t i = 0; i < 6; i++) dd_tensor_free(all[i]);
    free(t.node.params);
  }
}

Test(logsoftmax, stable_where_the_softmax_underflows) {
  /* exp(-200) underflows float32: log(softmax) would be -inf, LogSoftmax is not */
  th_node t;
  sm_case k = {13, 1, -1, 2, {1, 3}, 0.f};
  setup_node_op(&t, "LogSoftmax", &k);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  dd_tensor *x = th_tensor(2, k.dims), *y[1];
  dd_f32(x)[0] = 0.f, dd_f32(x)[1] = -200.f, dd_f32(x)[2] = 1000.f;
  cr_assert_eq(th_forward(&t, &x, y, &err), 0);
  cr_assert(fabs(dd_f32(y[0])[0] + 1000.f) < 1e-3 && fabs(dd_f32(y[0])[1] + 1200.f) < 1e-3 &&
                fabs(dd_f32(y[0])[2]) < 1e-6,
            "%g %g %g", dd_f32(y[0])[0], dd_f32(y[0])[1], dd_f32(y[0])[2]);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(logsoftmax, gradient_matches_finite_differences) {
  static const int picks[] = {1, 3, 7, 9, 10};
  for (size_t pi = 0; pi < 5; pi++) {
    const sm_case *k = &cases[picks[pi]];
    th_node t;
    setup_node_op(&t, "LogSoftmax", k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *x = th_random(k->ndim, k->dims, 7 + pi, -k->range, k->range);
    int skipped = -1;
    double e = th_gradcheck(&t, &x, 0, 1e-2f, 2 + pi, &skipped);
    cr_assert(e >= 0 && e < 1e-3, "case %d: relative error %g", picks[pi], e);
    cr_assert_eq(skipped, 0);
    dd_tensor_free(x);
    free(t.node.params);
  }
}
