#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

/* Index into `in` of output element `o` under numpy broadcasting, by unravelling. */
static int64_t bidx(const dd_shape *out, const dd_shape *in, int64_t o) {
  int64_t idx = 0, st = 1;
  for (int i = out->ndim - 1; i >= 0; i--) {
    int64_t c = o % out->d[i];
    o /= out->d[i];
    int j = i - (out->ndim - in->ndim);
    if (j < 0) continue;
    if (in->d[j] != 1) idx += c * st;
    st *= in->d[j];
  }
  return idx;
}

static double ref_op(const char *op, double a, double b) {
  if (!strcmp(op, "Add")) return a + b;
  if (!strcmp(op, "Sub")) return a - b;
  if (!strcmp(op, "Mul")) return a * b;
  return a / b;
}

typedef struct bcase {
  int na, nb;
  int64_t a[8], b[8];
} bcase;

static const bcase cases[] = {
    {4, 4, {2, 3, 4, 5}, {2, 3, 4, 5}},          /* same shape */
    {4, 4, {2, 3, 4, 5}, {1, 3, 1, 1}},          /* per-channel constant */
    {4, 3, {2, 3, 4, 5}, {3, 1, 1}},             /* lower rank */
    {4, 0, {2, 3, 4, 5}, {0}},                   /* scalar */
    {0, 4, {0}, {2, 3, 4, 5}},                   /* scalar first */
    {2, 2, {4, 1}, {1, 5}},                      /* both broadcast */
    {3, 2, {2, 1, 4}, {3, 1}},
    {1, 4, {5}, {2, 3, 4, 5}},                   /* last dim only */
    {4, 4, {1, 3, 1, 5}, {2, 1, 4, 1}},
    {8, 8, {2, 1, 2, 1, 2, 1, 2, 1}, {1, 2, 1, 2, 1, 2, 1, 2}}, /* DD_MAX_DIMS */
    {4, 4, {2, 3, 4, 5}, {2, 3, 1, 5}},          /* middle dim */
    {3, 3, {2, 0, 3}, {1, 1, 3}},                /* empty */
    {4, 4, {1, 64, 48, 48}, {1, 64, 1, 1}},      /* large: threads and blocks */
    {2, 2, {3, 50000}, {3, 50000}},              /* long rows cut into blocks */
    {2, 2, {3, 50000}, {1, 50000}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void check_forward(const char *op, const bcase *c, uint64_t seed) {
  th_node t;
  th_init(&t, op, 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[2] = {th_random(c->na, c->a, seed, -2, 2), th_random(c->nb, c->b, seed + 1, -2, 2)};
  if (!strcmp(op, "Div")) /* denominators away from 0 */
    for (int64_t i = 0; i < dd_tensor_numel(in[1]); i++)
      dd_f32(in[1])[i] += dd_f32(in[1])[i] >= 0 ? 0.5f : -0.5f;
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  int nd = c->na > c->nb ? c->na : c->nb;
  cr_assert_eq(y[0]->shape.ndim, nd);
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - c->na), ib = i - (nd - c->nb);
    int64_t da = ia >= 0 ? c->a[ia] : 1, db = ib >= 0 ? c->b[ib] : 1;
    cr_assert_eq(y[0]->shape.d[i], da == 1 ? db : da, "%s dim %d", op, i);
  }
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    float a = dd_f32(in[0])[bidx(&y[0]->shape, &in[0]->shape, o)];
    float b = dd_f32(in[1])[bidx(&y[0]->shape, &in[1]->shape, o)];
    float want = (float)ref_op(op, a, b);
    cr_assert(fabsf(dd_f32(y[0])[o] - want) <= 1e-6f * fmaxf(1.f, fabsf(want)),
              "%s at %lld: %g vs %g", op, (long long)o, dd_f32(y[0])[o], want);
  }
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(binary, matches_naive_reference_across_broadcasts) {
  const char *ops[] = {"Add", "Sub", "Mul", "Div"};
  for (int k = 0; k < 4; k++)
    for (size_t c = 0; c < N_CASES; c++) check_forward(ops[k], &cases[c], 100 * k + c);
}

Test(binary, gradients_match_finite_differences) {
  const char *ops[] = {"Add", "Sub", "Mul", "Div"};
  static const bcase small[] = {
      {4, 4, {2, 3, 2, 3}, {2, 3, 2, 3}}, {4, 4, {2, 3, 2, 3}, {1, 3, 1, 1}},
      {3, 0, {2, 3, 4}, {0}},             {2, 2, {4, 1}, {1, 5}},
      {1, 3, {3}, {2, 2, 3}},             {3, 2, {2, 1, 4}, {3, 1}},
  };
  for (int k = 0; k < 4; k++)
    for (size_t c = 0; c < sizeof small / sizeof small[0]; c++) {
      th_node t;
      th_init(&t, ops[k], 2, 1);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[2] = {th_random(small[c].na, small[c].a, 7 * c + k, -1, 1),
                          th_random(small[c].nb, small[c].b, 7 * c + k + 50, 0.5f, 1.5f)};
      for (int w = 0; w < 2; w++) {
        int skipped = -1;
        double e = th_gradcheck(&t, in, w, 1e-2f, 3 + c, &skipped);
        cr_assert(e >= 0 && e < 2e-3, "%s case %zu input %d: relative error %g", ops[k], c, w, e);
        cr_assert_eq(skipped, 0);
      }
      dd_tensor_free(in[0]);
      dd_tensor_free(in[1]);
      free(t.node.params);
    }
}

Test(binary, gradient_of_a_broadcast_input_sums_over_its_copies) {
  /* A large per-channel operand: the reduction over 48*48 positions, checked exactly
   * against a naive double sum. */
  th_node t;
  th_init(&t, "Mul", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t da[] = {2, 16, 48, 48}, db[] = {1, 16, 1, 1};
  dd_tensor *a = th_random(4, da, 1, -1, 1), *b = th_random(4, db, 2, -1, 1);
  dd_tensor *dy = th_random(4, da, 3, -1, 1), *ga = th_tensor(4, da), *gb = th_tensor(4, db);
  dd_f32(gb)[0] = 1.f; /* accumulates: the old value stays */
  const dd_tensor *in[2] = {a, b}, *dout[1] = {dy};
  dd_tensor *din[2] = {ga, gb};
  t.node.op->backward(&t.node, in, NULL, dout, din, NULL);
  for (int c = 0; c < 16; c++) {
    double s = 0;
    for (int n = 0; n < 2; n++)
      for (int i = 0; i < 48 * 48; i++) {
        int64_t o = (n * 16 + c) * 48 * 48 + i;
        s += (double)dd_f32(dy)[o] * dd_f32(a)[o];
        cr_assert_eq(dd_f32(ga)[o], dd_f32(dy)[o] * dd_f32(b)[c]);
      }
    cr_assert(fabs(dd_f32(gb)[c] - (s + (c == 0))) < 1e-3, "channel %d: %g vs %g", c,
              dd_f32(gb)[c], s + (c == 0));
  }
  dd_tensor_free(a);
  dd_tensor_free(b);
  dd_tensor_free(dy);
  dd_tensor_free(ga);
  dd_tensor_free(gb);
  free(t.node.params);
}

Test(binary, int64_arithmetic) {
  const char *ops[] = {"Add", "Sub", "Mul", "Div"};
  int64_t da[] = {2, 4}, db[] = {4};
  const int64_t va[] = {7, -7, 100, INT64_MIN, 0, 5, -9, 3};
  const int64_t vb[] = {2, 2, -3, -1};
  for (int k = 0; k < 4; k++) {
    th_node t;
    th_init(&t, ops[k], 2, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[2] = {th_tensor_i64(2, da, va), th_tensor_i64(1, db, vb)}, *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, DD_I64);
    for (int i = 0; i < 8; i++) {
      int64_t a = va[i], b = vb[i % 4], want;
      if (k == 0) want = (int64_t)((uint64_t)a + (uint64_t)b); /* wraps, as numpy */
      else if (k == 1) want = (int64_t)((uint64_t)a - (uint64_t)b);
      else if (k == 2) want = (int64_t)((uint64_t)a * (uint64_t)b); /* INT64_MIN * -3 wraps */
      else want = (a == INT64_MIN && b == -1) ? 0 : a / b; /* C truncation; no trap */
      cr_assert_eq(dd_i64(y[0])[i], want, "%s %lld, %lld", ops[k], (long long)a, (long long)b);
    }
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(binary, int64_division_by_zero_does_not_trap) {
  th_node t;
  th_init(&t, "Div", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t d[] = {2};
  const int64_t va[] = {5, -5}, vb[] = {0, 0};
  dd_tensor *in[2] = {th_tensor_i64(1, d, va), th_tensor_i64(1, d, vb)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_i64(y[0])[0], 0);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(binary, refuses_bad_inputs) {
  dd_err err;
  th_node t;
  th_init(&t, "Add", 2, 1);
  th_attr_int(&t, "broadcast", 1);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "opset"), "%s", err.msg);

  th_init(&t, "Add", 2, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t da[] = {2, 3}, db[] = {2, 4};
  dd_tensor *in[2] = {th_random(2, da, 1, 0, 1), th_random(2, db, 2, 0, 1)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "broadcast"), "%s", err.msg);
  dd_tensor_free(in[1]);
  in[1] = th_tensor_i64(2, da, NULL);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "types"), "%s", err.msg);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}

Test(sum, matches_naive_reference) {
  int64_t d0[] = {2, 3, 4}, d1[] = {3, 1}, d2[] = {1, 1, 4}, d3[] = {0};
  for (int n = 1; n <= 4; n++) {
    th_node t;
    th_init(&t, "Sum", n, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[4] = {th_random(3, d0, 1, -1, 1), th_random(2, d1, 2, -1, 1),
                        th_random(3, d2, 3, -1, 1), th_random(0, d3, 4, -1, 1)};
    /* rotate so the broadcast-free input is not always first */
    dd_tensor *use[4];
    for (int k = 0; k < n; k++) use[k] = in[(k + n - 1) % n];
    dd_tensor *y[1];
    cr_assert_eq(th_forward(&t, use, y, &err), 0, "%s", err.msg);
    dd_shape want = dd_shape_make(3, d0); /* every n includes in[0], the largest */
    cr_assert(dd_shape_eq(&y[0]->shape, &want), "n = %d", n);
    for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
      double s = 0;
      for (int k = 0; k < n; k++) s += dd_f32(use[k])[bidx(&y[0]->shape, &use[k]->shape, o)];
      cr_assert(fabs(dd_f32(y[0])[o] - s) < 1e-6, "n = %d at %lld", n, (long long)o);
    }
    for (int k = 0; k < n; k++) {
      int skipped = -1;
      double e = th_gradcheck(&t, use, k, 1e-2f, 5 + k, &skipped);
      cr_assert(e >= 0 && e < 1e-3, "n = %d input %d: relative error %g", n, k, e);
      cr_assert_eq(skipped, 0);
    }
    for (int k = 0; k < 4; k++) dd_tensor_free(in[k]);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}
