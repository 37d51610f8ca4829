/* src/ops/unary.c: each op against its formula computed in double, its gradient against
 * finite differences (away from kinks, and at the kinks against PyTorch's convention), the
 * in-place contracts its flags declare, and the refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

/* ---- naive references, in double ---- */

typedef struct uprm {
  double alpha, beta;
} uprm;

static double r_erf(double x, const uprm *p) { return erf(x); }
static double r_sqrt(double x, const uprm *p) { return sqrt(x); }
static double r_exp(double x, const uprm *p) { return exp(x); }
static double r_log(double x, const uprm *p) { return log(x); }
static double r_neg(double x, const uprm *p) { return -x; }
static double r_abs(double x, const uprm *p) { return fabs(x); }
static double r_reciprocal(double x, const uprm *p) { return 1.0 / x; }
static double r_tanh(double x, const uprm *p) { return tanh(x); }
static double r_softplus(double x, const uprm *p) { return log1p(exp(x)); }
static double r_hardsigmoid(double x, const uprm *p) {
  return fmax(0.0, fmin(1.0, p->alpha * x + p->beta));
}
static double r_hardswish(double x, const uprm *p) {
  return x * fmax(0.0, fmin(1.0, x / 6.0 + 0.5));
}
static double r_gelu(double x, const uprm *p) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double r_gelu_tanh(double x, const uprm *p) {
  return 0.5 * x * (1.0 + tanh(sqrt(2.0 / acos(-1.0)) * (x + 0.044715 * x * x * x)));
}
static double r_elu(double x, const uprm *p) { return x > 0 ? x : p->alpha * (exp(x) - 1.0); }

typedef struct ucase {
  const char *op;
  const char *fattr[2]; /* float attributes set, with values fval */
  float fval[2];
  const char *approximate; /* Gelu's string attribute, NULL: absent */
  uprm prm;                /* the values the reference uses (defaults when absent) */
  double (*ref)(double, const uprm *);
  float lo, hi;            /* input range */
  int nk;                  /* kinks: points where the derivative jumps ... */
  float kink[2];
  int c1;                  /* ... or, when set, only the second derivative (Elu, alpha 1) */
} ucase;

static const ucase cases[] = {
    {"Erf", {0}, {0}, NULL, {0}, r_erf, -3, 3},
    {"Sqrt", {0}, {0}, NULL, {0}, r_sqrt, 0.3f, 4},
    {"Exp", {0}, {0}, NULL, {0}, r_exp, -3, 3},
    {"Log", {0}, {0}, NULL, {0}, r_log, 0.3f, 4},
    {"Neg", {0}, {0}, NULL, {0}, r_neg, -3, 3},
    {"Abs", {0}, {0}, NULL, {0}, r_abs, -3, 3, 1, {0}},
    {"Reciprocal", {0}, {0}, NULL, {0}, r_reciprocal, 0.6f, 3},
    {"Tanh", {0}, {0}, NULL, {0}, r_tanh, -3, 3},
    {"Softplus", {0}, {0}, NULL, {0}, r_softplus, -6, 6},
    {"HardSigmoid", {0}, {0}, NULL, {0.2, 0.5}, r_hardsigmoid, -4, 4, 2, {-2.5f, 2.5f}},
    {"HardSigmoid", {"alpha", "beta"}, {0.5f, 0.6f}, NULL, {0.5f, 0.6f}, r_hardsigmoid, -3, 3,
     2, {-1.2f, 0.8f}},
    {"HardSwish", {0}, {0}, NULL, {0}, r_hardswish, -5, 5, 2, {-3, 3}},
    {"Gelu", {0}, {0}, NULL, {0}, r_gelu, -4, 4},
    {"Gelu", {0}, {0}, "none", {0}, r_gelu, -4, 4},
    {"Gelu", {0}, {0}, "tanh", {0}, r_gelu_tanh, -4, 4},
    {"Elu", {0}, {0}, NULL, {1.0}, r_elu, -3, 3, 1, {0}, 1},
    {"Elu", {"alpha"}, {0.5f}, NULL, {0.5f}, r_elu, -3, 3, 1, {0}},
    {"Elu", {"alpha"}, {2.f}, NULL, {2.f}, r_elu, -3, 3, 1, {0}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void setup(th_node *t, const ucase *c) {
  th_init(t, c->op, 1, 1);
  for (int k = 0; k < 2; k++)
    if (c->fattr[k]) th_attr_float(t, c->fattr[k], c->fval[k]);
  if (c->approximate) th_attr_string(t, "approximate", c->approximate);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s: %s", c->op, err.msg);
}

/* Moves values within `gap` of a kink away from it. */
static void away_from_kinks(dd_tensor *x, const ucase *c, float gap) {
  for (int64_t i = 0; i < dd_tensor_numel(x); i++)
    for (int k = 0; k < c->nk; k++) {
      float *v = &dd_f32(x)[i];
      if (fabsf(*v - c->kink[k]) < gap) *v = c->kink[k] + (*v >= c->kink[k] ? gap : -gap);
    }
}

Test(unary, matches_naive_reference) {
  /* small and odd, and over the threading threshold */
  int64_t shapes[][4] = {{2, 3, 5, 7}, {1, 64, 40, 40}};
  for (size_t ci = 0; ci < N_CASES; ci++)
    for (int si = 0; si < 2; si++) {
      const ucase *c = &cases[ci];
      th_node t;
      setup(&t, c);
      dd_err err;
      dd_tensor *x = th_random(4, shapes[si], 10 * ci + si, c->lo, c->hi), *y[1];
      for (int k = 0; k < c->nk; k++) dd_f32(x)[k] = c->kink[k]; /* the kinks themselves */
      cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
      cr_assert_eq(y[0]->dtype, DD_F32);
      cr_assert(dd_shape_eq(&y[0]->shape, &x->shape));
      for (int64_t i = 0; i < dd_tensor_numel(x); i++) {
        double v = dd_f32(x)[i], want = c->ref(v, &c->prm), got = dd_f32(y[0])[i];
        cr_assert(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s (case %zu) at x = %.9g: %.9g vs %.9g",
                  c->op, ci, v, got, want);
      }
      dd_tensor_free(x);
      dd_tensor_free(y[0]);
      free(t.node.params);
    }
}

Test(unary, extreme_inputs_do_not_overflow) {
  /* op, x, the exact float32 answer */
  static const struct { const char *op; float x, want; } v[] = {
      {"Softplus", 100.f, 100.f},  {"Softplus", -100.f, 0.f},  {"Softplus", 0.f, 0.69314718f},
      {"Elu", -100.f, -1.f},       {"Gelu", -100.f, -0.f},     {"Gelu", 100.f, 100.f},
      {"Tanh", 100.f, 1.f},        {"Tanh", -100.f, -1.f},     {"Exp", -200.f, 0.f},
      {"HardSwish", -100.f, -0.f}, {"HardSwish", 100.f, 100.f}, {"Erf", 10.f, 1.f},
      {"Reciprocal", 0.f, INFINITY}, {"Log", 0.f, -INFINITY},  {"Exp", 100.f, INFINITY},
  };
  for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
    th_node t;
    th_init(&t, v[k].op, 1, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t d[] = {1};
    dd_tensor *x = th_tensor(1, d), *y[1];
    dd_f32(x)[0] = v[k].x;
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    float got = dd_f32(y[0])[0];
    cr_assert(got == v[k].want || fabsf(got - v[k].want) <= 1e-6f * fabsf(v[k].want) ||
                  (v[k].want == 0.f && fabsf(got) < 1e-30f),
              "%s(%g) = %.9g, want %.9g", v[k].op, v[k].x, got, v[k].want);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
  /* NaN where the function is not real, as numpy; NaN passes through the others */
  const char *nan_ops[] = {"Sqrt", "Log", "HardSigmoid", "HardSwish", "Elu", "Softplus", "Gelu", "Abs"};
  for (int k = 0; k < 8; k++) {
    th_node t;
    th_init(&t, nan_ops[k], 1, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t d[] = {1};
    dd_tensor *x = th_tensor(1, d), *y[1];
    dd_f32(x)[0] = k < 2 ? -1.f : NAN;
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    cr_assert(isnan(dd_f32(y[0])[0]), "%s(%g) = %g", nan_ops[k], dd_f32(x)[0], dd_f32(y[0])[0]);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(unary, gradient_matches_finite_differences) {
  int64_t dims[] = {2, 3, 4, 5};
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const ucase *c = &cases[ci];
    th_node t;
    setup(&t, c);
    dd_tensor *x = th_random(4, dims, 100 + ci, c->lo, c->hi);
    away_from_kinks(x, c, 0.03f);
    int skipped = -1;
    double e = th_gradcheck(&t, &x, 0, 1e-2f, 7 + ci, &skipped);
    cr_assert(e >= 0 && e < 2e-4, "%s (case %zu): relative error %g", c->op, ci, e);
    cr_assert_eq(skipped, 0, "%s (case %zu): %d coordinates skipped", c->op, ci, skipped);
    dd_tensor_free(x);
    free(t.node.params);
  }
}

/* Values beside the kinks: 0.75 of a step above each, so that the larger step (eps)
 * straddles it and the smaller (eps/2) does not.  The checker skips such a coordinate when
 * the two quotients disagree by more than its tolerance, which depends on the random weight
 * there; when it does not skip it, the smaller step's quotient is exact.  Either way the
 * error stays small and at most one coordinate per kink is skipped.  (Right on a kink,
 * central differences see the mean of the two slopes at both steps: no checker notices.) */
Test(unary, gradient_with_values_beside_the_kinks) {
  int64_t dims[] = {4, 50};
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const ucase *c = &cases[ci];
    if (!c->nk || c->c1) continue;
    th_node t;
    setup(&t, c);
    dd_tensor *x = th_random(2, dims, 200 + ci, c->lo, c->hi);
    away_from_kinks(x, c, 0.03f);
    const float eps = 1e-2f;
    for (int k = 0; k < c->nk; k++) dd_f32(x)[k] = c->kink[k] + 0.75f * eps;
    int skipped = -1;
    double e = th_gradcheck(&t, &x, 0, eps, 30 + ci, &skipped);
    cr_assert(e >= 0 && e < 2e-4, "%s (case %zu): relative error %g", c->op, ci, e);
    cr_assert(skipped >= 0 && skipped <= c->nk, "%s (case %zu): %d skipped", c->op, ci, skipped);
    dd_tensor_free(x);
    free(t.node.params);
  }
}

/* The gradient exactly at a kink is PyTorch's (torch 1.13: hardswish, hardsigmoid with
 * alpha 1/6, elu, abs). */
Test(unary, gradient_at_the_kinks_is_pytorchs) {
  static const struct { const char *op; float alpha, x, want; } v[] = {
      {"Abs", NAN, 0.f, 0.f},           {"Abs", NAN, 1e-30f, 1.f},
      {"Abs", NAN, -1e-30f, -1.f},      {"HardSigmoid", 1.f / 6.f, -3.f, 0.f},
      {"HardSigmoid", 1.f / 6.f, 3.f, 0.f}, {"HardSigmoid", NAN, 0.f, 0.2f},
      {"HardSwish", NAN, -3.f, -0.5f},  {"HardSwish", NAN, 3.f, 1.5f},
      {"HardSwish", NAN, 3.0001f, 1.f}, {"HardSwish", NAN, -3.0001f, 0.f},
      {"Elu", 2.f, 0.f, 2.f},           {"Elu", 2.f, 1e-30f, 1.f},
      {"Sqrt", NAN, 0.f, INFINITY},
  };
  for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
    th_node t;
    th_init(&t, v[k].op, 1, 1);
    if (!isnan(v[k].alpha)) th_attr_float(&t, "alpha", v[k].alpha);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t d[] = {1};
    dd_tensor *x = th_tensor(1, d), *y[1], *dy = th_tensor(1, d), *dx = th_tensor(1, d);
    dd_f32(x)[0] = v[k].x;
    dd_f32(dy)[0] = 1.f;
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    const dd_tensor *in[1] = {x}, *out[1] = {y[0]}, *dout[1] = {dy};
    t.node.op->backward(&t.node, in, out, dout, &dx, NULL);
    cr_assert(dd_f32(dx)[0] == v[k].want || fabsf(dd_f32(dx)[0] - v[k].want) < 1e-6f,
              "%s'(%g) = %.9g, want %.9g", v[k].op, v[k].x, dd_f32(dx)[0], v[k].want);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    free(t.node.params);
  }
}

/* What the flags promise: backward accumulates, or overwrites when din[0] is dout[0]
 * (DD_OP_INPLACE_GRAD); it never reads x under DD_OP_BWD_NO_X nor y under DD_OP_BWD_NO_OUT
 * (their memory is filled with NaN); forward and backward agree with out[0] in x's memory
 * under DD_OP_INPLACE.  Small and threaded sizes. */
Test(unary, flags_hold) {
  int64_t shapes[][4] = {{2, 3, 5, 7}, {1, 64, 40, 40}};
  for (size_t ci = 0; ci < N_CASES; ci++)
    for (int si = 0; si < 2; si++) {
      const ucase *c = &cases[ci];
      th_node t;
      setup(&t, c);
      const unsigned fl = t.node.op->flags;
      dd_err err;
      dd_tensor *x = th_random(4, shapes[si], 300 + ci, c->lo, c->hi), *y[1];
      cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
      int64_t n = dd_tensor_numel(x);
      size_t bytes = (size_t)n * sizeof(float);
      dd_tensor *dy = th_random(4, shapes[si], 400 + ci, -1, 1);
      dd_tensor *ref = th_tensor(4, shapes[si]); /* backward into zeros: the gradient */
      const dd_tensor *in[1] = {x}, *out[1] = {y[0]}, *dout[1] = {dy};
      t.node.op->backward(&t.node, in, out, dout, &ref, NULL);
      double scale = th_max_abs(ref);
      cr_assert(scale > 0, "%s: zero gradient", c->op);

      /* accumulates onto what is there */
      dd_tensor *acc = th_random(4, shapes[si], 500 + ci, -1, 1), *acc0 = th_tensor(4, shapes[si]);
      memcpy(acc0->data, acc->data, bytes);
      t.node.op->backward(&t.node, in, out, dout, &acc, NULL);
      for (int64_t i = 0; i < n; i++)
        cr_assert(fabsf(dd_f32(acc)[i] - (dd_f32(acc0)[i] + dd_f32(ref)[i])) <=
                      1e-6f * (1.f + fabsf(dd_f32(ref)[i])),
                  "%s: does not accumulate at %lld", c->op, (long long)i);

      /* DD_OP_INPLACE_GRAD: dx in dy's memory is overwritten with the gradient */
      cr_assert(fl & DD_OP_INPLACE_GRAD, "%s", c->op);
      dd_tensor *g = th_tensor(4, shapes[si]);
      memcpy(g->data, dy->data, bytes);
      const dd_tensor *gout[1] = {g};
      t.node.op->backward(&t.node, in, out, gout, &g, NULL);
      cr_assert(th_max_abs_diff(g, ref) == 0, "%s: in-place gradient differs by %g", c->op,
                th_max_abs_diff(g, ref));

      /* the data backward promises not to read is garbage */
      dd_tensor *junk = th_tensor(4, shapes[si]);
      for (int64_t i = 0; i < n; i++) dd_f32(junk)[i] = NAN;
      if (fl & (DD_OP_BWD_NO_X | DD_OP_BWD_NO_OUT)) {
        const dd_tensor *jin[1] = {(fl & DD_OP_BWD_NO_X) ? junk : x};
        const dd_tensor *jout[1] = {(fl & DD_OP_BWD_NO_OUT) ? junk : y[0]};
        dd_tensor *h = th_tensor(4, shapes[si]);
        t.node.op->backward(&t.node, jin, jout, dout, &h, NULL);
        cr_assert(th_max_abs_diff(h, ref) == 0, "%s: backward read what its flags exclude",
                  c->op);
        dd_tensor_free(h);
      }
      cr_assert(fl & (DD_OP_BWD_NO_X | DD_OP_BWD_NO_OUT), "%s declares what backward reads",
                c->op);

      /* DD_OP_INPLACE: forward into x's memory; backward from there when it reads no x (an op
       * whose backward reads x runs in place only where its backward does not run, op.h) */
      if (fl & DD_OP_INPLACE) {
        dd_tensor *xy = th_tensor(4, shapes[si]), *h = th_tensor(4, shapes[si]);
        memcpy(xy->data, x->data, bytes);
        const dd_tensor *iin[1] = {xy}, *iout[1] = {xy};
        t.node.op->forward(&t.node, iin, &xy, NULL);
        cr_assert(th_max_abs_diff(xy, y[0]) == 0, "%s: in-place forward differs", c->op);
        if (fl & DD_OP_BWD_NO_X) {
          t.node.op->backward(&t.node, iin, iout, dout, &h, NULL);
          cr_assert(th_max_abs_diff(h, ref) == 0, "%s: backward after in-place forward differs",
                    c->op);
        }
        dd_tensor_free(xy);
        dd_tensor_free(h);
      }
      dd_tensor_free(x);
      dd_tensor_free(y[0]);
      dd_tensor_free(dy);
      dd_tensor_free(ref);
      dd_tensor_free(acc);
      dd_tensor_free(acc0);
      dd_tensor_free(g);
      dd_tensor_free(junk);
      free(t.node.params);
    }
}

/* Every one runs forward in place; exactly the ops whose derivative is a function of y (and
 * Neg, which reads neither) keep no x for their backward, so only they run in place where
 * their gradient is asked for. */
Test(unary, in_place_where_the_derivative_is_a_function_of_y) {
  const char *no_x[] = {"Sqrt", "Exp", "Neg", "Reciprocal", "Tanh"};
  for (size_t ci = 0; ci < N_CASES; ci++) {
    int want = 0;
    for (int k = 0; k < 5; k++) want |= !strcmp(cases[ci].op, no_x[k]);
    unsigned fl = dd_op_find(cases[ci].op)->flags;
    cr_assert(fl & DD_OP_INPLACE, "%s", cases[ci].op);
    cr_assert_eq(!!(fl & DD_OP_BWD_NO_X), want, "%s", cases[ci].op);
  }
}

Test(unary, gelu_tanh_is_an_approximation_of_gelu) {
  /* the two forms differ, by at most ~5e-4 on [-4, 4] */
  uprm p = {0};
  double worst = 0;
  for (double x = -4; x <= 4; x += 1e-3) worst = fmax(worst, fabs(r_gelu(x, &p) - r_gelu_tanh(x, &p)));
  cr_assert(worst > 1e-4 && worst < 1e-3, "%g", worst);
}

Test(unary, neg_and_abs_of_int64) {
  const char *ops[] = {"Neg", "Abs"};
  const int64_t v[] = {0, 5, -7, INT64_MAX, INT64_MIN};
  for (int k = 0; k < 2; k++) {
    th_node t;
    th_init(&t, ops[k], 1, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t d[] = {5};
    dd_tensor *x = th_tensor_i64(1, d, v), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, DD_I64);
    for (int i = 0; i < 5; i++) {
      /* INT64_MIN has no positive counterpart: it wraps to itself, as numpy */
      int64_t want = v[i] == INT64_MIN ? INT64_MIN : k == 0 ? -v[i] : (v[i] < 0 ? -v[i] : v[i]);
      cr_assert_eq(dd_i64(y[0])[i], want, "%s(%lld)", ops[k], (long long)v[i]);
    }
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(unary, refusals_name_what_is_missing) {
  dd_err err;
  th_node t;
  th_init(&t, "Gelu", 1, 1);
  th_attr_string(&t, "approximate", "fast");
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "approximate") && strstr(err.msg, "fast"), "%s", err.msg);

  th_init(&t, "Elu", 1, 1);
  th_attr_float(&t, "gamma", 1.f);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "gamma"), "%s", err.msg);

  /* int64 only where it means something (Neg, Abs) */
  th_init(&t, "Exp", 1, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t d[] = {2};
  dd_tensor *x = th_tensor_i64(1, d, NULL), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "int64"), "%s", err.msg);
  dd_tensor_free(x);
  free(t.node.params);
}

/* GELU's Phi is computed without libm (src/ops/unary.c, phi): its relative error, in the
 * output and in the gradient, stays at float32's level over the whole range, the far left
 * tail included, where GELU is tiny and an absolute-error approximation of erf would be
 * wrong by orders of magnitude. */
Test(unary, gelu_keeps_relative_accuracy_in_the_tails) {
  enum { N = 24001 };
  int64_t dims[] = {N};
  dd_tensor *x = th_tensor(1, dims), *y[1];
  for (int i = 0; i < N; i++) dd_f32(x)[i] = (float)(-12.0 + i * 1e-3);
  th_node t;
  th_init(&t, "Gelu", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  /* backward with dy = 1 gives GELU' itself */
  dd_tensor *dy = th_tensor(1, dims), *dx = th_tensor(1, dims);
  for (int i = 0; i < N; i++) dd_f32(dy)[i] = 1.f;
  const dd_tensor *ins[1] = {x}, *outs[1] = {y[0]}, *douts[1] = {dy};
  dd_tensor *dins[1] = {dx};
  t.node.op->backward(&t.node, ins, outs, douts, dins, NULL);
  double worst = 0, worst_g = 0, at = 0, at_g = 0;
  for (int i = 0; i < N; i++) {
    double v = dd_f32(x)[i];
    double want = 0.5 * v * erfc(-v / sqrt(2.0));
    double want_g = 0.5 * erfc(-v / sqrt(2.0)) + v * exp(-0.5 * v * v) / sqrt(2.0 * 3.14159265358979323846);
    /* Relative to float32's own limit: v / sqrt 2 and its square are rounded before the
     * exponential, which alone costs about v^2/2 * 2^-23 of relative error in the tail
     * (torch's float32 erf(v * M_SQRT1_2) rounds the same way). */
    double limit = 1 + 0.1 * v * v;
    if (want != 0) {
      double r = fabs(dd_f32(y[0])[i] - want) / fabs(want) / limit;
      if (r > worst) worst = r, at = v;
    }
    /* GELU' = Phi(v) + v phi(v) crosses 0 near -0.75, where its two terms cancel: the error
     * is measured against the size of the terms */
    double terms = fmax(fabs(want_g), 0.5 * erfc(-v / sqrt(2.0)));
    if (terms > 1e-30) {
      double r = fabs(dd_f32(dx)[i] - want_g) / terms / limit;
      if (r > worst_g) worst_g = r, at_g = v;
    }
  }
  cr_log_info("GELU over [-12, 12]: scaled relative error %.2g (at %g), gradient %.2g (at %g)", worst,
              at, worst_g, at_g);
  cr_assert(worst < 2e-6, "GELU relative error %g at x = %g", worst, at);
  cr_assert(worst_g < 2e-6, "GELU' error %g at x = %g", worst_g, at_g);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  dd_tensor_free(dx);
  free(t.node.params);
}
