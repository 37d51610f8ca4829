/* src/ops/logic.c: comparisons, logic, Where and Mod against naive references under numpy
 * broadcasting; Where's and Mod's gradients by finite differences. */
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

static dd_tensor *bool_tensor(int ndim, const int64_t *dims, uint64_t seed) {
  dd_shape s = dd_shape_make(ndim, dims);
  dd_tensor *t = NULL;
  cr_assert_eq(dd_tensor_new(DD_BOOL, &s, 0, &t, NULL), 0);
  uint64_t st = seed;
  for (int64_t i = 0; i < dd_tensor_numel(t); i++)
    dd_bool(t)[i] = th_rand_uniform(&st, 0, 1) < 0.5f;
  return t;
}

/* Random integers in [-4, 4]: small, so that comparisons meet equal values often. */
static dd_tensor *int_tensor(int ndim, const int64_t *dims, uint64_t seed) {
  dd_tensor *t = th_tensor_i64(ndim, dims, NULL);
  uint64_t st = seed;
  for (int64_t i = 0; i < dd_tensor_numel(t); i++)
    dd_i64(t)[i] = (int64_t)floorf(th_rand_uniform(&st, -4, 5));
  return t;
}

/* Floats on a coarse grid, for the same reason. */
static dd_tensor *grid_tensor(int ndim, const int64_t *dims, uint64_t seed) {
  dd_tensor *t = th_random(ndim, dims, seed, -2, 2);
  for (int64_t i = 0; i < dd_tensor_numel(t); i++) dd_f32(t)[i] = roundf(dd_f32(t)[i] * 2) / 2;
  return t;
}

typedef struct bcase {
  int na, nb;
  int64_t a[8], b[8];
} bcase;

static const bcase cases[] = {
    {4, 4, {2, 3, 4, 5}, {2, 3, 4, 5}},     /* same shape */
    {4, 4, {2, 3, 4, 5}, {1, 3, 1, 1}},     /* per-channel */
    {4, 0, {2, 3, 4, 5}, {0}},              /* scalar */
    {0, 4, {0}, {2, 3, 4, 5}},              /* scalar first */
    {2, 2, {4, 1}, {1, 5}},                 /* both broadcast */
    {3, 2, {2, 1, 4}, {3, 1}},              /* lower rank */
    {3, 3, {2, 0, 3}, {1, 1, 3}},           /* empty */
    {4, 4, {1, 64, 48, 48}, {1, 64, 1, 1}}, /* threads and blocks */
    {2, 2, {3, 50000}, {1, 50000}},         /* long rows */
};
#define N_CASES (sizeof cases / sizeof cases[0])

static dd_tensor *run1(th_node *t, dd_tensor *const *in) {
  dd_err err;
  dd_tensor *y[1];
  cr_assert_eq(th_forward(t, in, y, &err), 0, "%s: %s", t->op_type, err.msg);
  return y[0];
}

static void setup(th_node *t, const char *op, int n_in) {
  th_init(t, op, n_in, 1);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s: %s", op, err.msg);
}

static int ref_cmp(const char *op, double a, double b) {
  if (!strcmp(op, "Equal")) return a == b;
  if (!strcmp(op, "Less")) return a < b;
  if (!strcmp(op, "Greater")) return a > b;
  if (!strcmp(op, "LessOrEqual")) return a <= b;
  return a >= b;
}

static void check_shape(const dd_tensor *y, const bcase *c) {
  int nd = c->na > c->nb ? c->na : c->nb;
  cr_assert_eq(y->shape.ndim, nd);
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - c->na), ib = i - (nd - c->nb);
    int64_t da = ia >= 0 ? c->a[ia] : 1, db = ib >= 0 ? c->b[ib] : 1;
    cr_assert_eq(y->shape.d[i], da == 1 ? db : da, "dim %d", i);
  }
}

Test(logic, comparisons_match_naive_reference) {
  const char *ops[] = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"};
  for (int k = 0; k < 5; k++)
    for (int dt = 0; dt < 2; dt++)
      for (size_t c = 0; c < N_CASES; c++) {
        th_node t;
        setup(&t, ops[k], 2);
        uint64_t seed = 100 * k + 10 * c + dt;
        dd_tensor *in[2];
        if (dt == 0) {
          in[0] = grid_tensor(cases[c].na, cases[c].a, seed);
          in[1] = grid_tensor(cases[c].nb, cases[c].b, seed + 1);
        } else {
          in[0] = int_tensor(cases[c].na, cases[c].a, seed);
          in[1] = int_tensor(cases[c].nb, cases[c].b, seed + 1);
        }
        dd_tensor *y = run1(&t, in);
        cr_assert_eq(y->dtype, DD_BOOL);
        check_shape(y, &cases[c]);
        int64_t trues = 0, n = dd_tensor_numel(y);
        for (int64_t o = 0; o < n; o++) {
          int64_t ia = bidx(&y->shape, &in[0]->shape, o), ib = bidx(&y->shape, &in[1]->shape, o);
          double a = dt ? (double)dd_i64(in[0])[ia] : dd_f32(in[0])[ia];
          double b = dt ? (double)dd_i64(in[1])[ib] : dd_f32(in[1])[ib];
          cr_assert_eq(dd_bool(y)[o], ref_cmp(ops[k], a, b), "%s %s case %zu at %lld", ops[k],
                       dt ? "int64" : "float", c, (long long)o);
          trues += dd_bool(y)[o];
        }
        /* the data exercise both answers (against a scalar they may not) */
        if (n > 100 && dd_tensor_numel(in[0]) > 1 && dd_tensor_numel(in[1]) > 1)
          cr_assert(trues > 0 && trues < n, "%s case %zu: %lld of %lld", ops[k], c,
                    (long long)trues, (long long)n);
        dd_tensor_free(in[0]);
        dd_tensor_free(in[1]);
        dd_tensor_free(y);
        free(t.node.params);
      }
}

Test(logic, equal_on_bool_and_nan) {
  th_node t;
  setup(&t, "Equal", 2);
  int64_t d[] = {4};
  dd_tensor *in[2] = {bool_tensor(1, d, 1), bool_tensor(1, d, 1)};
  dd_bool(in[0])[0] = 1, dd_bool(in[1])[0] = 0;
  dd_tensor *y = run1(&t, in);
  cr_assert_eq(y->dtype, DD_BOOL);
  cr_assert_eq(dd_bool(y)[0], 0);
  for (int i = 1; i < 4; i++) cr_assert_eq(dd_bool(y)[i], 1);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  dd_tensor_free(y);
  /* NaN equals nothing, itself included */
  dd_tensor *f[2] = {th_tensor(1, d), th_tensor(1, d)};
  dd_f32(f[0])[0] = dd_f32(f[1])[0] = NAN;
  y = run1(&t, f);
  cr_assert_eq(dd_bool(y)[0], 0);
  cr_assert_eq(dd_bool(y)[1], 1);
  dd_tensor_free(f[0]);
  dd_tensor_free(f[1]);
  dd_tensor_free(y);
  free(t.node.params);
}

Test(logic, and_or_xor_not_match_truth_tables) {
  const char *ops[] = {"And", "Or", "Xor"};
  for (int k = 0; k < 3; k++)
    for (size_t c = 0; c < N_CASES; c++) {
      th_node t;
      setup(&t, ops[k], 2);
      dd_tensor *in[2] = {bool_tensor(cases[c].na, cases[c].a, 3 * c + k),
                          bool_tensor(cases[c].nb, cases[c].b, 3 * c + k + 50)};
      dd_tensor *y = run1(&t, in);
      cr_assert_eq(y->dtype, DD_BOOL);
      check_shape(y, &cases[c]);
      for (int64_t o = 0; o < dd_tensor_numel(y); o++) {
        int a = dd_bool(in[0])[bidx(&y->shape, &in[0]->shape, o)];
        int b = dd_bool(in[1])[bidx(&y->shape, &in[1]->shape, o)];
        int want = k == 0 ? a && b : k == 1 ? a || b : a != b;
        cr_assert_eq(dd_bool(y)[o], want, "%s case %zu at %lld", ops[k], c, (long long)o);
      }
      dd_tensor_free(in[0]);
      dd_tensor_free(in[1]);
      dd_tensor_free(y);
      free(t.node.params);
    }
  th_node t;
  setup(&t, "Not", 1);
  int64_t d[] = {3, 50000};
  dd_tensor *x = bool_tensor(2, d, 9), *y = run1(&t, &x);
  for (int64_t i = 0; i < dd_tensor_numel(x); i++) cr_assert_eq(dd_bool(y)[i], !dd_bool(x)[i]);
  dd_tensor_free(x);
  dd_tensor_free(y);
}

Test(logic, refuses_mixed_and_wrong_types) {
  int64_t d[] = {3};
  dd_err err;
  dd_tensor *f = th_tensor(1, d), *i = th_tensor_i64(1, d, NULL), *b = bool_tensor(1, d, 1);
  dd_tensor *y[1];
  struct {
    const char *op;
    dd_tensor *a, *c;
  } bad[] = {{"Equal", f, i}, {"Less", b, b}, {"And", f, f}, {"Or", b, i}, {"Mod", b, b},
             {"Greater", i, f}};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    th_node t;
    setup(&t, bad[k].op, 2);
    dd_tensor *in[2] = {bad[k].a, bad[k].c};
    int rc = th_forward(&t, in, y, &err);
    cr_assert(rc == DD_EUNSUPPORTED || rc == DD_EFORMAT, "%s: %d", bad[k].op, rc);
    cr_assert(strstr(err.msg, "bool") || strstr(err.msg, "types"), "%s: %s", bad[k].op, err.msg);
    free(t.node.params);
  }
  th_node t;
  setup(&t, "Not", 1);
  cr_assert_eq(th_forward(&t, &f, y, &err), DD_EUNSUPPORTED);
  /* Where: the condition must be bool, X and Y of one type */
  setup(&t, "Where", 3);
  dd_tensor *w1[3] = {f, f, f}, *w2[3] = {b, f, i};
  cr_assert_eq(th_forward(&t, w1, y, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "condition"), "%s", err.msg);
  cr_assert_eq(th_forward(&t, w2, y, &err), DD_EFORMAT);
  /* shapes that do not broadcast */
  int64_t d4[] = {4};
  dd_tensor *f4 = th_tensor(1, d4), *in[2] = {f, f4};
  setup(&t, "Less", 2);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  free(t.node.params);
  dd_tensor_free(f);
  dd_tensor_free(f4);
  dd_tensor_free(i);
  dd_tensor_free(b);
}

/* ---- Where ---- */

typedef struct wcase {
  int nc, nx, ny;
  int64_t c[4], x[4], y[4];
} wcase;

static const wcase wcases[] = {
    {2, 2, 2, {3, 4}, {3, 4}, {3, 4}},
    {2, 2, 0, {3, 4}, {1, 4}, {0}},          /* masked_fill: Y a scalar */
    {1, 2, 2, {4}, {3, 1}, {1, 4}},          /* all three broadcast */
    {3, 2, 1, {2, 1, 4}, {3, 4}, {1}},
    {4, 4, 0, {1, 1, 64, 64}, {2, 8, 64, 64}, {0}}, /* an attention mask over heads */
    {2, 1, 2, {3, 0}, {1}, {1, 1}},          /* empty */
};

static void where_ref_check(const wcase *w, const dd_tensor *const *in, const dd_tensor *y) {
  for (int64_t o = 0; o < dd_tensor_numel(y); o++) {
    int c = dd_bool(in[0])[bidx(&y->shape, &in[0]->shape, o)];
    float x = dd_f32(in[1])[bidx(&y->shape, &in[1]->shape, o)];
    float z = dd_f32(in[2])[bidx(&y->shape, &in[2]->shape, o)];
    cr_assert_eq(dd_f32(y)[o], c ? x : z, "at %lld", (long long)o);
  }
}

Test(where, matches_naive_reference_and_broadcasts) {
  for (size_t k = 0; k < sizeof wcases / sizeof wcases[0]; k++) {
    const wcase *w = &wcases[k];
    th_node t;
    setup(&t, "Where", 3);
    dd_tensor *in[3] = {bool_tensor(w->nc, w->c, k), th_random(w->nx, w->x, k + 10, -1, 1),
                        th_random(w->ny, w->y, k + 20, -1, 1)};
    dd_tensor *y = run1(&t, in);
    int nd = w->nc > w->nx ? w->nc : w->nx;
    nd = nd > w->ny ? nd : w->ny;
    cr_assert_eq(y->shape.ndim, nd, "case %zu", k);
    cr_assert_eq(y->dtype, DD_F32);
    where_ref_check(w, (const dd_tensor *const *)in, y);
    dd_tensor_free(y);
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  }
  /* int64 and bool values */
  th_node t;
  setup(&t, "Where", 3);
  int64_t d[] = {5};
  const int64_t xv[] = {1, 2, 3, 4, 5}, yv[] = {-1, -2, -3, -4, -5};
  dd_tensor *in[3] = {bool_tensor(1, d, 4), th_tensor_i64(1, d, xv), th_tensor_i64(1, d, yv)};
  dd_tensor *y = run1(&t, in);
  cr_assert_eq(y->dtype, DD_I64);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(dd_i64(y)[i], dd_bool(in[0])[i] ? xv[i] : yv[i]);
  dd_tensor_free(y);
  dd_tensor *bin[3] = {in[0], bool_tensor(1, d, 5), bool_tensor(1, d, 6)};
  y = run1(&t, bin);
  cr_assert_eq(y->dtype, DD_BOOL);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(dd_bool(y)[i], dd_bool(in[0])[i] ? dd_bool(bin[1])[i] : dd_bool(bin[2])[i]);
  dd_tensor_free(y);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  dd_tensor_free(bin[1]);
  dd_tensor_free(bin[2]);
}

Test(where, gradients_to_x_and_y_match_finite_differences) {
  for (size_t k = 0; k < sizeof wcases / sizeof wcases[0]; k++) {
    const wcase *w = &wcases[k];
    if (k == 4) continue; /* large: the next test checks its sums exactly */
    th_node t;
    setup(&t, "Where", 3);
    dd_tensor *in[3] = {bool_tensor(w->nc, w->c, k), th_random(w->nx, w->x, k + 10, -1, 1),
                        th_random(w->ny, w->y, k + 20, -1, 1)};
    for (int which = 1; which < 3; which++) {
      int skipped = -1;
      double e = th_gradcheck(&t, in, which, 1e-2f, 5 + k, &skipped);
      cr_assert(e >= 0 && e < 1e-3, "case %zu input %d: relative error %g", k, which, e);
      cr_assert_eq(skipped, 0);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  }
}

Test(where, gradient_of_a_broadcast_value_sums_where_it_was_chosen) {
  /* masked_fill over 2x8 heads: X per position, Y one scalar; both gradients exact sums */
  th_node t;
  setup(&t, "Where", 3);
  int64_t dc[] = {1, 1, 64, 64}, dx[] = {2, 8, 64, 64};
  dd_tensor *c = bool_tensor(4, dc, 1), *x = th_random(4, dx, 2, -1, 1);
  dd_tensor *y = th_random(0, NULL, 3, -1, 1), *dy = th_random(4, dx, 4, -1, 1);
  dd_tensor *gx = th_tensor(4, dx), *gy = th_tensor(0, NULL);
  dd_f32(gy)[0] = 2.f; /* accumulates */
  const dd_tensor *in[3] = {c, x, y}, *dout[1] = {dy};
  dd_tensor *din[3] = {NULL, gx, gy};
  t.node.op->backward(&t.node, in, NULL, dout, din, NULL);
  double s = 2;
  for (int64_t o = 0; o < dd_tensor_numel(x); o++) {
    int on = dd_bool(c)[o % 4096];
    cr_assert_eq(dd_f32(gx)[o], on ? dd_f32(dy)[o] : 0.f);
    if (!on) s += dd_f32(dy)[o];
  }
  cr_assert(fabs(dd_f32(gy)[0] - s) < 1e-3, "%g vs %g", dd_f32(gy)[0], s);
  dd_tensor_free(c);
  dd_tensor_free(x);
  dd_tensor_free(y);
  dd_tensor_free(dy);
  dd_tensor_free(gx);
  dd_tensor_free(gy);
}

/* ---- Mod ---- */

static int64_t ref_imod(int64_t a, int64_t b, int fmod) {
  if (b == 0) return 0;
  int64_t r = a - (a / b) * b; /* truncated */
  if (!fmod && r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

Test(mod, int64_sign_rules_fmod_0_and_1) {
  /* Python's % (the divisor's sign) and C's % (the dividend's), plus a zero divisor and the
   * quotient that overflows */
  const int64_t a[] = {7, -7, 7, -7, 0, 5, INT64_MIN, 13, INT64_MIN};
  const int64_t b[] = {3, 3, -3, -3, 4, 0, -1, 13, 7};
  const int64_t want_mod[] = {1, 2, -2, -1, 0, 0, 0, 0, 6};
  const int64_t want_fmod[] = {1, -1, 1, -1, 0, 0, 0, 0, -1};
  int64_t d[] = {9};
  for (int f = 0; f < 2; f++) {
    th_node t;
    th_init(&t, "Mod", 2, 1);
    th_attr_int(&t, "fmod", f);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[2] = {th_tensor_i64(1, d, a), th_tensor_i64(1, d, b)};
    dd_tensor *y = run1(&t, in);
    cr_assert_eq(y->dtype, DD_I64);
    for (int i = 0; i < 9; i++) {
      int64_t want = f ? want_fmod[i] : want_mod[i];
      cr_assert_eq(dd_i64(y)[i], want, "fmod %d: %lld mod %lld = %lld, expected %lld", f,
                   (long long)a[i], (long long)b[i], (long long)dd_i64(y)[i], (long long)want);
      if (b[i] != -1) cr_assert_eq(want, ref_imod(a[i], b[i], f));
    }
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    dd_tensor_free(y);
    free(t.node.params);
  }
}

Test(mod, float_matches_fmod_and_floored_mod_across_broadcasts) {
  for (int f = 0; f < 2; f++)
    for (size_t c = 0; c < N_CASES; c++) {
      th_node t;
      th_init(&t, "Mod", 2, 1);
      th_attr_int(&t, "fmod", f);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[2] = {th_random(cases[c].na, cases[c].a, 31 * c + f, -10, 10),
                          th_random(cases[c].nb, cases[c].b, 31 * c + f + 7, -3, 3)};
      dd_tensor *y = run1(&t, in);
      check_shape(y, &cases[c]);
      for (int64_t o = 0; o < dd_tensor_numel(y); o++) {
        double a = dd_f32(in[0])[bidx(&y->shape, &in[0]->shape, o)];
        double b = dd_f32(in[1])[bidx(&y->shape, &in[1]->shape, o)];
        double want = f ? fmod(a, b) : a - floor(a / b) * b;
        cr_assert(fabs(dd_f32(y)[o] - want) <= 1e-5 * fmax(1, fabs(a)),
                  "fmod %d case %zu at %lld: %g mod %g = %g, expected %g", f, c, (long long)o, a,
                  b, dd_f32(y)[o], want);
        if (want != 0) cr_assert(f ? (want < 0) == (a < 0) : (want < 0) == (b < 0));
      }
      dd_tensor_free(in[0]);
      dd_tensor_free(in[1]);
      dd_tensor_free(y);
      free(t.node.params);
    }
}

Test(mod, gradients_match_finite_differences) {
  static const bcase small[] = {
      {2, 2, {3, 4}, {3, 4}}, {2, 0, {3, 4}, {0}}, {2, 2, {4, 1}, {1, 5}}, {1, 2, {3}, {2, 3}}};
  for (int f = 0; f < 2; f++)
    for (size_t c = 0; c < sizeof small / sizeof small[0]; c++) {
      th_node t;
      th_init(&t, "Mod", 2, 1);
      th_attr_int(&t, "fmod", f);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      dd_tensor *in[2] = {th_random(small[c].na, small[c].a, 17 * c + f, -6, 6),
                          th_random(small[c].nb, small[c].b, 17 * c + f + 3, 1, 2)};
      for (int64_t i = 0; i < dd_tensor_numel(in[1]); i++) /* both signs of divisor */
        if (i % 2) dd_f32(in[1])[i] = -dd_f32(in[1])[i];
      for (int w = 0; w < 2; w++) {
        int skipped = -1;
        double e = th_gradcheck(&t, in, w, 3e-3f, 11 + c, &skipped);
        cr_assert(e >= 0 && e < 2e-3, "fmod %d case %zu input %d: relative error %g", f, c, w, e);
        /* a jump of the remainder within the step is a kink; only a few may be */
        int64_t n = dd_tensor_numel(in[w]);
        cr_assert(skipped <= n / 4 + 1, "fmod %d case %zu input %d: %d kinks of %lld", f, c, w,
                  skipped, (long long)n);
      }
      dd_tensor_free(in[0]);
      dd_tensor_free(in[1]);
      free(t.node.params);
    }
}

Test(mod, refuses_bad_fmod) {
  th_node t;
  th_init(&t, "Mod", 2, 1);
  th_attr_int(&t, "fmod", 2);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "fmod"), "%s", err.msg);
}

/* ---- in a graph: ViT's class-token arithmetic ----
 * Through the real loader and planner.  The batch size is read off the image (Shape ->
 * Gather -> Unsqueeze -> Concat), turned into the class token's target shape the way
 * PyTorch exports expand(N, -1, -1) (Equal with -1 -> Where -> ConstantOfShape), the token
 * is broadcast and concatenated before the patches; position ids (Range over the sequence
 * length, Mod 2, Equal 0, Cast) add a bool-derived constant; then a runtime mask selects
 * (Greater -> Where, a leaky ReLU made of selection).  All the int64 and bool arithmetic is
 * folded at plan time, the mask runs on the image, and the gradient reaches the image. */

#include "dream/graph.h"
#include "helper_model.h"

enum { C = 4, H = 2, W = 3, N = 2, L = H * W + 1 };

Test(masks, vit_class_token_arithmetic_folds_and_runs) {
  const float cls[C] = {0.25f, -0.5f, 1.f, -2.f};
  const int64_t d1[] = {1};
  th_model *mb = th_model_new("vit_class_token");
  th_model_input(mb, "x", -1, NULL);
  th_model_output(mb, "z");
  /* constants */
  th_model_init_i64(mb, "idx0", 0, NULL, (int64_t[]){0}, 1);
  th_model_init_i64(mb, "axes0", 1, d1, (int64_t[]){0}, 1);
  th_model_init_i64(mb, "one1", 1, d1, (int64_t[]){1}, 1);
  th_model_init_i64(mb, "minus1", 1, d1, (int64_t[]){-1}, 1);
  th_model_init_i64(mb, "three", 1, d1, (int64_t[]){3}, 1);
  th_model_init_i64(mb, "rshape", 1, (int64_t[]){3}, (int64_t[]){0, 0, -1}, 3);
  th_model_init_i64(mb, "idx1", 0, NULL, (int64_t[]){1}, 1);
  th_model_init_i64(mb, "zero", 0, NULL, (int64_t[]){0}, 1);
  th_model_init_i64(mb, "one", 0, NULL, (int64_t[]){1}, 1);
  th_model_init_i64(mb, "two", 0, NULL, (int64_t[]){2}, 1);
  th_model_init_i64(mb, "axes1", 1, d1, (int64_t[]){1}, 1);
  th_model_init_f32(mb, "cls", 3, (int64_t[]){1, 1, C}, cls, C);
  th_model_init_f32(mb, "zerof", 0, NULL, (float[]){0.f}, 1);
  th_model_init_f32(mb, "tenth", 0, NULL, (float[]){0.1f}, 1);
  /* the nodes, numbered as the plan numbers them */
  th_model_node(mb, "Shape", NULL, "x", "s");                        /* 0 */
  th_model_node(mb, "Gather", NULL, "s,idx0", "n");                  /* 1 */
  th_model_node(mb, "Unsqueeze", NULL, "n,axes0", "n1");             /* 2 */
  th_model_node(mb, "Concat", NULL, "n1,one1,minus1", "shp");        /* 3: (N, 1, -1) */
  th_model_attr_int(mb, "axis", 0);
  th_model_node(mb, "Equal", NULL, "shp,minus1", "eq");              /* 4 */
  th_model_node(mb, "ConstantOfShape", NULL, "three", "ones3");      /* 5: int64 1 */
  th_model_attr_tensor_i64(mb, "value", 1, d1, (int64_t[]){1}, 1);
  th_model_node(mb, "Where", NULL, "eq,ones3,shp", "tshape");        /* 6: (N, 1, 1) */
  th_model_node(mb, "ConstantOfShape", NULL, "tshape", "onesN");     /* 7: float 1 */
  th_model_attr_tensor_f32(mb, "value", 1, d1, (float[]){1.f}, 1);
  th_model_node(mb, "Mul", NULL, "onesN,cls", "clsN");               /* 8: the token broadcast */
  th_model_node(mb, "Reshape", NULL, "x,rshape", "xr");              /* 9: (N, C, HW) */
  th_model_node(mb, "Transpose", NULL, "xr", "patches");             /* 10: (N, HW, C) */
  th_model_attr_ints(mb, "perm", 3, (int64_t[]){0, 2, 1});
  th_model_node(mb, "Concat", NULL, "clsN,patches", "tokens");       /* 11: axis 1, (N, L, C) */
  th_model_attr_int(mb, "axis", 1);
  th_model_node(mb, "Shape", NULL, "tokens", "ts");                  /* 12 */
  th_model_node(mb, "Gather", NULL, "ts,idx1", "len");               /* 13: L */
  th_model_node(mb, "Range", NULL, "zero,len,one", "pos");           /* 14 */
  th_model_node(mb, "Mod", NULL, "pos,two", "pm");                   /* 15 */
  th_model_node(mb, "Equal", NULL, "pm,zero", "even");               /* 16 */
  th_model_node(mb, "Cast", NULL, "even", "evenf");                  /* 17: to float */
  th_model_attr_int(mb, "to", 1);
  th_model_node(mb, "Unsqueeze", NULL, "evenf,axes1", "evenc");      /* 18: (L, 1) */
  th_model_node(mb, "Add", NULL, "tokens,evenc", "t2");              /* 19 */
  th_model_node(mb, "Greater", NULL, "t2,zerof", "mask");            /* 20: at run time */
  th_model_node(mb, "Mul", NULL, "t2,tenth", "t2s");                 /* 21 */
  th_model_node(mb, "Where", NULL, "mask,t2,t2s", "z");              /* 22 */
  enum { NN = 23 };
  dd_model *m = th_model_load(mb, "vit_class_token");
  th_model_free(mb);

  dd_err err;
  int64_t dims[] = {N, C, H, W};
  int vx = dd_model_find(m, "x"), vz = dd_model_find(m, "z");
  dd_binding b = {.value = vx, .shape = dd_shape_make(4, dims)};
  /* with and without buffers shared between values (the same results either way) */
  for (int reuse = 0; reuse < 2; reuse++) {
    dd_plan *p = NULL;
    cr_assert_eq(dd_plan_new(m, &b, 1, &vz, 1, DD_PLAN_GRAD | (reuse ? DD_PLAN_REUSE : 0), 0, &p,
                             &err), 0, "%s", err.msg);
    /* folded: everything but the image's own path */
    for (int i = 0; i < NN; i++) {
      int runs = i == 9 || i == 10 || i == 11 || i >= 19;
      cr_assert_eq(dd_plan_node_runs(p, i), runs, "node %d (%s)", i, dd_model_node_op(m, i));
    }
    dd_tensor *x = dd_plan_tensor(p, vx);
    uint64_t st = 5;
    for (int i = 0; i < N * C * H * W; i++) dd_f32(x)[i] = th_rand_uniform(&st, -1, 1);
    dd_plan_forward(p);
    dd_tensor *z = dd_plan_tensor(p, vz);
    cr_assert(z && z->dtype == DD_F32 && z->shape.ndim == 3 && z->shape.d[0] == N &&
              z->shape.d[1] == L && z->shape.d[2] == C);
    /* the naive reference, and the slope each output has w.r.t. its token */
    float slope[N][L][C];
    for (int n = 0; n < N; n++)
      for (int l = 0; l < L; l++)
        for (int c = 0; c < C; c++) {
          float tok = l == 0 ? cls[c] : dd_f32(x)[(n * C + c) * H * W + (l - 1)];
          float t2 = tok + (l % 2 == 0 ? 1.f : 0.f);
          float want = t2 > 0 ? t2 : t2 * 0.1f;
          slope[n][l][c] = t2 > 0 ? 1.f : 0.1f;
          cr_assert(fabsf(dd_f32(z)[(n * L + l) * C + c] - want) < 1e-6f, "z[%d,%d,%d] = %g, "
                    "expected %g", n, l, c, dd_f32(z)[(n * L + l) * C + c], want);
        }
    dd_plan_zero_grad(p);
    dd_tensor *gz = dd_plan_grad(p, vz), *gx = dd_plan_grad(p, vx);
    cr_assert(gz && gx);
    for (int i = 0; i < N * L * C; i++) dd_f32(gz)[i] = th_rand_uniform(&st, -1, 1);
    dd_plan_backward(p);
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++)
        for (int j = 0; j < H * W; j++) {
          float want = dd_f32(gz)[(n * L + j + 1) * C + c] * slope[n][j + 1][c];
          cr_assert(fabsf(dd_f32(gx)[(n * C + c) * H * W + j] - want) < 1e-6f);
        }
    dd_plan_free(p);
  }

  /* another batch size re-plans the folded shapes: N = 3 */
  dims[0] = 3;
  b.shape = dd_shape_make(4, dims);
  dd_plan *p = NULL;
  cr_assert_eq(dd_plan_new(m, &b, 1, &vz, 1, 0, 0, &p, &err), 0, "%s", err.msg);
  dd_tensor *z = dd_plan_tensor(p, vz);
  cr_assert(z->shape.d[0] == 3 && z->shape.d[1] == L);
  dd_plan_free(p);
  dd_model_free(m);
}
