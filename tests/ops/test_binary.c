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

/* ---- Pow ---- */

/* Runs infer for the scratch size, then backward of L = sum(dy * out[0]) into din. */
static void run_backward(th_node *t, dd_tensor *const *in, const dd_tensor *y, const dd_tensor *dy,
                         dd_tensor *const *din) {
  dd_tensor shape = {0}, *outs[1] = {&shape};
  size_t scratch = 0;
  dd_err err;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0,
               "%s", err.msg);
  void *s = scratch ? calloc(scratch, 1) : NULL;
  const dd_tensor *out[1] = {y}, *dout[1] = {dy};
  t->node.op->backward(&t->node, (const dd_tensor *const *)in, out, dout, din, s);
  free(s);
}

Test(pow, matches_naive_reference_across_broadcasts) {
  for (size_t c = 0; c < N_CASES; c++)
    for (int neg = 0; neg < 2; neg++) {
      /* positive bases with real exponents; any sign of base with integral exponents */
      th_node t;
      th_init(&t, "Pow", 2, 1);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[2] = {th_random(cases[c].na, cases[c].a, 600 + c, neg ? -2 : 0.2f, 2),
                          th_random(cases[c].nb, cases[c].b, 700 + c, -3, 3)};
      if (neg)
        for (int64_t i = 0; i < dd_tensor_numel(in[1]); i++) dd_f32(in[1])[i] = roundf(dd_f32(in[1])[i]);
      dd_tensor *y[1];
      cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
      cr_assert_eq(y[0]->dtype, DD_F32);
      for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
        double a = dd_f32(in[0])[bidx(&y[0]->shape, &in[0]->shape, o)];
        double b = dd_f32(in[1])[bidx(&y[0]->shape, &in[1]->shape, o)];
        double want = pow(a, b), got = dd_f32(y[0])[o];
        cr_assert(fabs(got - want) <= 1e-6 * fabs(want) || (isinf(want) && got == want),
                  "case %zu: %.9g ^ %.9g = %.9g, want %.9g", c, a, b, got, want);
      }
      dd_tensor_free(in[0]);
      dd_tensor_free(in[1]);
      dd_tensor_free(y[0]);
    }
}

/* A scalar exponent of 2 takes the x*x path: the same values as powf, and the gradient 2x. */
Test(pow, square) {
  th_node t;
  th_init(&t, "Pow", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t d[] = {1, 64, 40, 40}, d1[] = {1};
  dd_tensor *in[2] = {th_random(4, d, 1, -3, 3), th_tensor(1, d1)}, *y[1];
  dd_f32(in[1])[0] = 2.f;
  dd_f32(in[0])[0] = NAN;
  dd_f32(in[0])[1] = -INFINITY;
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  for (int64_t i = 0; i < dd_tensor_numel(y[0]); i++) {
    float x = dd_f32(in[0])[i], want = powf(x, 2.f);
    cr_assert(dd_f32(y[0])[i] == want || (isnan(want) && isnan(dd_f32(y[0])[i])), "%g^2 = %g",
              x, dd_f32(y[0])[i]);
  }
  dd_tensor_free(y[0]);
  /* the base's gradient on both signs; the exponent's where the base is > 0 (elsewhere
   * x^2.001 is NaN, which the checker cannot compare) */
  int64_t ds[] = {3, 4};
  for (int w = 0; w < 2; w++) {
    dd_tensor *small[2] = {th_random(2, ds, 2, w ? 0.5f : -2.f, 2.f), in[1]};
    int skipped = -1;
    double e = th_gradcheck(&t, small, w, 1e-3f, 9, &skipped);
    cr_assert(e >= 0 && e < 5e-4, "input %d: relative error %g", w, e);
    cr_assert_eq(skipped, 0);
    dd_tensor_free(small[0]);
  }
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
}

Test(pow, int64_exponent_and_int64_base) {
  int64_t d[] = {6};
  const float fb[] = {2.f, -2.f, 0.5f, 3.f, -1.5f, 0.f};
  const int64_t ie[] = {3, 3, -2, 0, 2, 5};
  const int64_t ib[] = {2, -3, 7, 1, -1, 3};
  const int64_t ie2[] = {10, 3, -1, -5, 63, 40}; /* 3^40 wraps, as numpy */
  const float fe[] = {0.5f, 2.f, 1.5f, -1.f, 2.f, 40.f};
  th_node t;
  th_init(&t, "Pow", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *y[1];
  /* float32 ^ int64: float32 */
  dd_tensor *in[2] = {th_tensor(1, d), th_tensor_i64(1, d, ie)};
  memcpy(in[0]->data, fb, sizeof fb);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_F32);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(dd_f32(y[0])[i], (float)pow(fb[i], (double)ie[i]), "%g ^ %lld", fb[i], (long long)ie[i]);
  dd_tensor_free(y[0]);
  /* and its gradient w.r.t. the base */
  int skipped = -1;
  double e = th_gradcheck(&t, in, 0, 1e-3f, 3, &skipped);
  cr_assert(e >= 0 && e < 1e-3, "relative error %g", e);
  cr_assert_eq(skipped, 0);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  /* int64 ^ int64: int64, wrapping; negative exponents truncate 1 / x^-e */
  in[0] = th_tensor_i64(1, d, ib);
  in[1] = th_tensor_i64(1, d, ie2);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_I64);
  uint64_t w = 1;
  for (int k = 0; k < 40; k++) w *= 3;
  const int64_t want_i[] = {1024, -27, 0, 1, -1, (int64_t)w};
  for (int i = 0; i < 6; i++)
    cr_assert_eq(dd_i64(y[0])[i], want_i[i], "%lld ^ %lld = %lld", (long long)ib[i], (long long)ie2[i],
                 (long long)dd_i64(y[0])[i]);
  dd_tensor_free(y[0]);
  dd_tensor_free(in[1]);
  /* int64 ^ float32: int64, the real power truncated (saturated out of range) */
  in[1] = th_tensor(1, d);
  memcpy(in[1]->data, fe, sizeof fe);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_I64);
  const int64_t want_f[] = {1, 9, 18, 1, 1, INT64_MAX}; /* 2^0.5 = 1.41, 7^1.5 = 18.5, 3^40 > 2^63 */
  for (int i = 0; i < 6; i++)
    cr_assert_eq(dd_i64(y[0])[i], want_f[i], "%lld ^ %g = %lld", (long long)ib[i], fe[i],
                 (long long)dd_i64(y[0])[i]);
  dd_tensor_free(y[0]);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
}

Test(pow, gradients_match_finite_differences) {
  static const bcase small[] = {
      {4, 4, {2, 3, 2, 3}, {2, 3, 2, 3}}, {4, 4, {2, 3, 2, 3}, {1, 3, 1, 1}},
      {3, 0, {2, 3, 4}, {0}},             {2, 2, {4, 1}, {1, 5}},
      {1, 3, {3}, {2, 2, 3}},             {3, 2, {2, 1, 4}, {3, 1}},
  };
  for (size_t c = 0; c < sizeof small / sizeof small[0]; c++)
    for (int neg = 0; neg < 2; neg++) {
      th_node t;
      th_init(&t, "Pow", 2, 1);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[2] = {th_random(small[c].na, small[c].a, 11 * c + neg, 0.5f, 2.f),
                          th_random(small[c].nb, small[c].b, 11 * c + 50, -2.f, 2.f)};
      if (neg) { /* negative bases, integral exponents: only the base has a gradient */
        for (int64_t i = 0; i < dd_tensor_numel(in[0]); i++) dd_f32(in[0])[i] *= -1.f;
        for (int64_t i = 0; i < dd_tensor_numel(in[1]); i++) dd_f32(in[1])[i] = roundf(dd_f32(in[1])[i] * 1.5f);
      }
      for (int w = 0; w < 2 - neg; w++) {
        int skipped = -1;
        double e = th_gradcheck(&t, in, w, 1e-3f, 3 + c, &skipped);
        cr_assert(e >= 0 && e < 5e-4, "case %zu neg %d input %d: relative error %g", c, neg, w, e);
        cr_assert_eq(skipped, 0);
      }
      dd_tensor_free(in[0]);
      dd_tensor_free(in[1]);
    }
}

/* The conventions where the calculus gives no answer: as PyTorch for the base (0 where the
 * exponent is 0); for the exponent 0 where the base is <= 0 (PyTorch: NaN below 0). */
Test(pow, gradient_conventions_at_zero_and_negative_bases) {
  int64_t d[] = {5};
  const float b[] = {0.f, 0.f, -2.f, 2.f, -2.f}, e[] = {0.f, 2.f, 2.f, 0.5f, 0.5f};
  const float want_db[] = {0.f, 0.f, -4.f, 0.35355339f, NAN};
  const float want_de[] = {0.f, 0.f, 0.f, 0.98025814f, 0.f};
  th_node t;
  th_init(&t, "Pow", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[2] = {th_tensor(1, d), th_tensor(1, d)}, *y[1];
  memcpy(in[0]->data, b, sizeof b);
  memcpy(in[1]->data, e, sizeof e);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  dd_tensor *dy = th_tensor(1, d), *din[2] = {th_tensor(1, d), th_tensor(1, d)};
  for (int i = 0; i < 5; i++) dd_f32(dy)[i] = 1.f;
  run_backward(&t, in, y[0], dy, din);
  for (int i = 0; i < 5; i++) {
    float gb = dd_f32(din[0])[i], ge = dd_f32(din[1])[i];
    cr_assert(isnan(want_db[i]) ? isnan(gb) : fabsf(gb - want_db[i]) < 1e-6f, "d/db at %g^%g: %g", b[i], e[i], gb);
    cr_assert(fabsf(ge - want_de[i]) < 1e-6f, "d/de at %g^%g: %g", b[i], e[i], ge);
  }
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  dd_tensor_free(din[0]);
  dd_tensor_free(din[1]);
}

/* ---- PRelu ---- */

Test(prelu, matches_naive_reference_and_gradients) {
  static const bcase pc[] = {
      {4, 3, {2, 3, 4, 5}, {3, 1, 1}},    /* per channel, as PyTorch exports it */
      {4, 0, {2, 3, 4, 5}, {0}},          /* one shared slope */
      {4, 4, {2, 3, 4, 5}, {2, 3, 4, 5}}, /* one slope per element */
      {3, 1, {3, 4, 5}, {5}},             /* the last dim (test_prelu_broadcast) */
      {4, 4, {1, 64, 40, 40}, {1, 64, 1, 1}}, /* threaded */
  };
  for (size_t c = 0; c < sizeof pc / sizeof pc[0]; c++) {
    th_node t;
    th_init(&t, "PRelu", 2, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[2] = {th_random(pc[c].na, pc[c].a, 800 + c, -2, 2),
                        th_random(pc[c].nb, pc[c].b, 900 + c, -0.5f, 0.8f)};
    for (int64_t i = 0; i < dd_tensor_numel(in[0]); i++) { /* away from the kink at 0 */
      float *v = &dd_f32(in[0])[i];
      if (fabsf(*v) < 0.01f) *v = *v < 0 ? -0.01f : 0.01f;
    }
    dd_tensor *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert(dd_shape_eq(&y[0]->shape, &in[0]->shape));
    for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
      float x = dd_f32(in[0])[o], s = dd_f32(in[1])[bidx(&y[0]->shape, &in[1]->shape, o)];
      cr_assert_eq(dd_f32(y[0])[o], x < 0 ? s * x : x, "case %zu at %lld", c, (long long)o);
    }
    if (c < 4)
      for (int w = 0; w < 2; w++) {
        int skipped = -1;
        double e = th_gradcheck(&t, in, w, 1e-3f, 5 + c, &skipped);
        cr_assert(e >= 0 && e < 1e-3, "case %zu input %d: relative error %g", c, w, e);
        cr_assert_eq(skipped, 0);
      }
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

/* At x = 0 the gradient is the slope's side, as PyTorch: dx = slope * dy, dslope = 0. */
Test(prelu, gradient_at_zero_is_pytorchs) {
  th_node t;
  th_init(&t, "PRelu", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t d[] = {3}, d1[] = {1};
  dd_tensor *in[2] = {th_tensor(1, d), th_tensor(1, d1)}, *y[1];
  const float xs[] = {-1.f, 0.f, 2.f};
  memcpy(in[0]->data, xs, sizeof xs);
  dd_f32(in[1])[0] = 0.25f;
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  dd_tensor *dy = th_tensor(1, d), *din[2] = {th_tensor(1, d), th_tensor(1, d1)};
  for (int i = 0; i < 3; i++) dd_f32(dy)[i] = 1.f;
  run_backward(&t, in, y[0], dy, din);
  cr_assert_eq(dd_f32(din[0])[0], 0.25f);
  cr_assert_eq(dd_f32(din[0])[1], 0.25f);
  cr_assert_eq(dd_f32(din[0])[2], 1.f);
  cr_assert_eq(dd_f32(din[1])[0], -1.f);
  for (int k = 0; k < 2; k++) dd_tensor_free(in[k]), dd_tensor_free(din[k]);
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  free(t.node.params);
}

Test(prelu, refuses_a_slope_that_widens_x) {
  th_node t;
  th_init(&t, "PRelu", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dx[] = {3, 1}, ds[] = {1, 4};
  dd_tensor *in[2] = {th_random(2, dx, 1, -1, 1), th_random(2, ds, 2, 0, 1)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "slope"), "%s", err.msg);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}

/* ---- Max, Min ---- */

Test(max_min, match_naive_reference_and_gradients) {
  int64_t d0[] = {2, 3, 4}, d1[] = {3, 1}, d2[] = {1, 1, 4}, d3[] = {0};
  const char *ops[] = {"Max", "Min"};
  for (int k = 0; k < 2; k++)
    for (int n = 1; n <= 4; n++) {
      th_node t;
      th_init(&t, ops[k], n, 1);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[4] = {th_random(3, d0, 1 + k, -1, 1), th_random(2, d1, 2 + k, -1, 1),
                          th_random(3, d2, 3 + k, -1, 1), th_random(0, d3, 4 + k, -1, 1)};
      dd_tensor *use[4];
      for (int j = 0; j < n; j++) use[j] = in[(j + n - 1) % n];
      dd_tensor *y[1];
      cr_assert_eq(th_forward(&t, use, y, &err), 0, "%s", err.msg);
      dd_shape want = dd_shape_make(3, d0);
      cr_assert(dd_shape_eq(&y[0]->shape, &want), "n = %d", n);
      for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
        float m = dd_f32(use[0])[bidx(&y[0]->shape, &use[0]->shape, o)];
        for (int j = 1; j < n; j++) {
          float v = dd_f32(use[j])[bidx(&y[0]->shape, &use[j]->shape, o)];
          m = k == 0 ? fmaxf(m, v) : fminf(m, v);
        }
        cr_assert_eq(dd_f32(y[0])[o], m, "%s n = %d at %lld", ops[k], n, (long long)o);
      }
      for (int j = 0; j < n; j++) {
        int skipped = -1;
        double e = th_gradcheck(&t, use, j, 1e-3f, 5 + j, &skipped);
        cr_assert(e >= 0 && e < 1e-3, "%s n = %d input %d: relative error %g", ops[k], n, j, e);
        cr_assert(skipped <= 2, "%s n = %d input %d: %d skipped", ops[k], n, j, skipped);
      }
      for (int j = 0; j < 4; j++) dd_tensor_free(in[j]);
      dd_tensor_free(y[0]);
      free(t.node.params);
    }
}

/* The broadcast inputs receive, summed, the gradient of every copy that wins: checked
 * against a naive loop on a threaded size. */
Test(max_min, gradient_of_broadcast_inputs_on_a_large_tensor) {
  th_node t;
  th_init(&t, "Max", 3, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t da[] = {1, 16, 48, 48}, db[] = {1, 16, 1, 1}, dc[] = {48};
  dd_tensor *in[3] = {th_random(4, da, 1, -1, 1), th_random(4, db, 2, -1, 1), th_random(1, dc, 3, -1, 1)};
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  dd_tensor *dy = th_random(4, da, 4, -1, 1);
  dd_tensor *din[3] = {th_tensor(4, da), th_tensor(4, db), th_tensor(1, dc)};
  run_backward(&t, in, y[0], dy, din);
  double want_b[16] = {0}, want_c[48] = {0};
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    int64_t ib = bidx(&y[0]->shape, &in[1]->shape, o), ic = bidx(&y[0]->shape, &in[2]->shape, o);
    float a = dd_f32(in[0])[o], b = dd_f32(in[1])[ib], c = dd_f32(in[2])[ic];
    int win = a >= b && a >= c ? 0 : b >= c ? 1 : 2;
    cr_assert_eq(dd_f32(din[0])[o], win == 0 ? dd_f32(dy)[o] : 0.f);
    if (win == 1) want_b[ib] += dd_f32(dy)[o];
    if (win == 2) want_c[ic] += dd_f32(dy)[o];
  }
  for (int i = 0; i < 16; i++) cr_assert(fabs(dd_f32(din[1])[i] - want_b[i]) < 1e-3, "b[%d]", i);
  for (int i = 0; i < 48; i++) cr_assert(fabs(dd_f32(din[2])[i] - want_c[i]) < 1e-3, "c[%d]", i);
  for (int k = 0; k < 3; k++) dd_tensor_free(in[k]), dd_tensor_free(din[k]);
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  free(t.node.params);
}

/* On ties the whole gradient goes to the first input holding the extreme, once per output
 * element (PyTorch's binary maximum splits it instead); an earlier input nobody asks the
 * gradient of still wins its ties; backward accumulates. */
Test(max_min, ties_go_to_the_first_extreme_input) {
  const char *ops[] = {"Max", "Min"};
  for (int k = 0; k < 2; k++) {
    th_node t;
    th_init(&t, ops[k], 3, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t d[] = {4}, d1[] = {1};
    const float a[] = {1.f, 2.f, 3.f, 1.f}, c[] = {1.f, 2.f, 3.f, 5.f};
    const float s = k == 0 ? 2.f : 1.f; /* a scalar: ties a at [1] (Max) or [0] and [3] (Min) */
    dd_tensor *in[3] = {th_tensor(1, d), th_tensor(1, d1), th_tensor(1, d)}, *y[1];
    memcpy(in[0]->data, a, sizeof a);
    dd_f32(in[1])[0] = s;
    memcpy(in[2]->data, c, sizeof c);
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    dd_tensor *dy = th_tensor(1, d), *din[3] = {th_tensor(1, d), th_tensor(1, d1), th_tensor(1, d)};
    for (int i = 0; i < 4; i++) dd_f32(dy)[i] = (float)(1 << i); /* 1 2 4 8: sums tell who won */
    for (int i = 0; i < 4; i++) dd_f32(din[0])[i] = 100.f;     /* accumulates onto this */
    run_backward(&t, in, y[0], dy, din);
    /* Max: y = 2 2 3 5, a ties at [1] (with s and c) and [2] (with c); Min: y = 1 1 1 1, a
     * ties at [0] (with s and c) and [3] (with s).  The winner: the first input equal to y. */
    float want0[4], want1 = 0, want2[4] = {0};
    for (int i = 0; i < 4; i++) {
      float m = k == 0 ? fmaxf(fmaxf(a[i], s), c[i]) : fminf(fminf(a[i], s), c[i]);
      int win = a[i] == m ? 0 : s == m ? 1 : 2;
      want0[i] = 100.f + (win == 0 ? dd_f32(dy)[i] : 0.f);
      if (win == 1) want1 += dd_f32(dy)[i];
      if (win == 2) want2[i] = dd_f32(dy)[i];
    }
    for (int i = 0; i < 4; i++) {
      cr_assert_eq(dd_f32(din[0])[i], want0[i], "%s a[%d]", ops[k], i);
      cr_assert_eq(dd_f32(din[2])[i], want2[i], "%s c[%d]", ops[k], i);
    }
    cr_assert_eq(dd_f32(din[1])[0], want1, "%s s", ops[k]);
    /* only the last input's gradient wanted: the earlier ones still win their ties */
    dd_tensor *only[3] = {NULL, NULL, th_tensor(1, d)};
    run_backward(&t, in, y[0], dy, only);
    for (int i = 0; i < 4; i++) cr_assert_eq(dd_f32(only[2])[i], want2[i], "%s only c[%d]", ops[k], i);
    dd_tensor_free(only[2]);
    for (int j = 0; j < 3; j++) dd_tensor_free(in[j]), dd_tensor_free(din[j]);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    free(t.node.params);
  }
}

Test(max_min, nan_propagates_and_int64_works) {
  const char *ops[] = {"Max", "Min"};
  for (int k = 0; k < 2; k++) {
    th_node t;
    th_init(&t, ops[k], 2, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t d[] = {3};
    dd_tensor *in[2] = {th_tensor(1, d), th_tensor(1, d)}, *y[1];
    const float a[] = {NAN, 1.f, 2.f}, b[] = {1.f, NAN, 3.f};
    memcpy(in[0]->data, a, sizeof a);
    memcpy(in[1]->data, b, sizeof b);
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert(isnan(dd_f32(y[0])[0]) && isnan(dd_f32(y[0])[1]), "%s", ops[k]);
    cr_assert_eq(dd_f32(y[0])[2], k == 0 ? 3.f : 2.f);
    dd_tensor_free(y[0]);
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    const int64_t ia[] = {INT64_MIN, 5, -7}, ib[] = {INT64_MAX, 5, -8};
    in[0] = th_tensor_i64(1, d, ia);
    in[1] = th_tensor_i64(1, d, ib);
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, DD_I64);
    for (int i = 0; i < 3; i++)
      cr_assert_eq(dd_i64(y[0])[i], k == 0 ? (ia[i] > ib[i] ? ia[i] : ib[i]) : (ia[i] < ib[i] ? ia[i] : ib[i]));
    dd_tensor_free(y[0]);
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    free(t.node.params);
  }
}

Test(max_min, refusals) {
  dd_err err;
  th_node t;
  th_init(&t, "Max", 0, 1);
  cr_assert_neq(th_setup(&t, &err), 0);
  th_init(&t, "Min", 2, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t d[] = {2};
  dd_tensor *in[2] = {th_random(1, d, 1, 0, 1), th_tensor_i64(1, d, NULL)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "types"), "%s", err.msg);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}
