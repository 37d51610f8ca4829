/* src/ops/index.c: ScatterND against a naive reference (every k, repeated indices, negative
 * indices, each dtype), its gradients to data and updates by finite differences and exactly,
 * and its refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

static void setup(th_node *t) {
  th_init(t, "ScatterND", 3, 1);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s", err.msg);
}

/* The naive reference: copy, then for each tuple in order write its slice element by
 * element, with the coordinates unravelled by hand. */
static void ref_scatter(const dd_tensor *x, const dd_tensor *idx, const dd_tensor *u, float *y) {
  int64_t n = dd_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) y[i] = dd_f32(x)[i];
  int k = (int)idx->shape.d[idx->shape.ndim - 1];
  int64_t tuples = dd_tensor_numel(idx) / k, slice = 1;
  for (int i = k; i < x->shape.ndim; i++) slice *= x->shape.d[i];
  for (int64_t j = 0; j < tuples; j++) {
    int64_t coord[DD_MAX_DIMS] = {0};
    for (int c = 0; c < k; c++) {
      int64_t v = dd_i64(idx)[j * k + c];
      coord[c] = v < 0 ? v + x->shape.d[c] : v;
    }
    for (int64_t e = 0; e < slice; e++) {
      int64_t rest = e;
      for (int c = x->shape.ndim - 1; c >= k; c--) {
        coord[c] = rest % x->shape.d[c];
        rest /= x->shape.d[c];
      }
      int64_t flat = 0;
      for (int c = 0; c < x->shape.ndim; c++) flat = flat * x->shape.d[c] + coord[c];
      y[flat] = dd_f32(u)[j * slice + e];
    }
  }
}

typedef struct scase {
  int nx;
  int64_t x[4];
  int ni;
  int64_t i[3];
  int64_t idx[12];
} scase;

static const scase cases[] = {
    {1, {8}, 2, {4, 1}, {4, 3, 1, 7}},                        /* ONNX's 1-D example */
    {3, {4, 4, 4}, 2, {2, 1}, {0, 2}},                        /* whole matrices */
    {3, {4, 4, 4}, 2, {3, 2}, {0, 1, 3, -1, 2, 2}},           /* rows, one negative */
    {3, {2, 3, 4}, 2, {2, 3}, {1, 2, 3, 0, 0, -4}},           /* single elements */
    {2, {5, 3}, 3, {2, 2, 1}, {4, 0, 4, 1}},                  /* repeated: the last wins */
    {2, {5, 3}, 2, {0, 1}, {0}},                              /* no updates */
};

static void scase_make(const scase *c, dd_tensor **x, dd_tensor **idx, dd_tensor **u,
                       uint64_t seed) {
  *x = th_random(c->nx, c->x, seed, -1, 1);
  *idx = th_tensor_i64(c->ni, c->i, c->idx);
  int k = (int)c->i[c->ni - 1];
  int64_t ud[DD_MAX_DIMS];
  int un = 0;
  for (int i = 0; i < c->ni - 1; i++) ud[un++] = c->i[i];
  for (int i = k; i < c->nx; i++) ud[un++] = c->x[i];
  *u = th_random(un, ud, seed + 1, 2, 3); /* apart from data's range */
}
#define N_CASES (sizeof cases / sizeof cases[0])

Test(scatternd, matches_naive_reference) {
  for (size_t c = 0; c < N_CASES; c++) {
    th_node t;
    setup(&t);
    dd_tensor *in[3], *y[1];
    scase_make(&cases[c], &in[0], &in[1], &in[2], 10 * c);
    dd_err err;
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "case %zu: %s", c, err.msg);
    cr_assert(dd_shape_eq(&y[0]->shape, &in[0]->shape));
    int64_t n = dd_tensor_numel(in[0]), written = 0;
    float *want = malloc((size_t)n * sizeof *want);
    ref_scatter(in[0], in[1], in[2], want);
    for (int64_t i = 0; i < n; i++) {
      cr_assert_eq(dd_f32(y[0])[i], want[i], "case %zu at %lld", c, (long long)i);
      written += want[i] >= 2.f;
    }
    if (dd_tensor_numel(in[2])) cr_assert(written > 0, "case %zu wrote nothing", c);
    free(want);
    dd_tensor_free(y[0]);
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  }
}

Test(scatternd, int64_and_bool_data) {
  th_node t;
  setup(&t);
  int64_t dx[] = {4}, di[] = {2, 1}, du[] = {2};
  const int64_t xv[] = {1, 2, 3, 4}, iv[] = {3, 0}, uv[] = {-9, -8};
  dd_tensor *in[3] = {th_tensor_i64(1, dx, xv), th_tensor_i64(2, di, iv), th_tensor_i64(1, du, uv)};
  dd_tensor *y[1];
  dd_err err;
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  const int64_t want[] = {-8, 2, 3, -9};
  for (int i = 0; i < 4; i++) cr_assert_eq(dd_i64(y[0])[i], want[i]);
  dd_tensor_free(y[0]);
  uint8_t xb[] = {0, 1, 0, 1}, ub[] = {0, 1}; /* x[3] = 0, x[0] = 1 */
  dd_shape sx = dd_shape_make(1, dx), su = dd_shape_make(1, du);
  dd_tensor bx = dd_tensor_wrap(DD_BOOL, &sx, xb), bu = dd_tensor_wrap(DD_BOOL, &su, ub);
  dd_tensor *bin[3] = {&bx, in[1], &bu};
  cr_assert_eq(th_forward(&t, bin, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_BOOL);
  const uint8_t wb[] = {1, 1, 0, 0};
  for (int i = 0; i < 4; i++) cr_assert_eq(dd_bool(y[0])[i], wb[i], "at %d", i);
  dd_tensor_free(y[0]);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
}

Test(scatternd, gradients_to_data_and_updates) {
  for (size_t c = 0; c < N_CASES; c++) {
    th_node t;
    setup(&t);
    dd_tensor *in[3];
    scase_make(&cases[c], &in[0], &in[1], &in[2], 10 * c + 1);
    for (int w = 0; w < 3; w += 2) {
      if (!dd_tensor_numel(in[w])) continue;
      int skipped = -1;
      double e = th_gradcheck(&t, in, w, 1e-2f, 3 + c, &skipped);
      cr_assert(e >= 0 && e < 1e-3, "case %zu input %d: relative error %g", c, w, e);
      cr_assert_eq(skipped, 0);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  }
}

Test(scatternd, gradient_is_zero_where_overwritten_and_only_the_winner_gets_it) {
  /* data 5x3, rows 4, 0, 4, 1 written: row 4's first update lost to the second */
  const scase *c = &cases[4];
  th_node t;
  setup(&t);
  dd_tensor *in[3];
  scase_make(c, &in[0], &in[1], &in[2], 5);
  int64_t dx[] = {5, 3}, du[] = {2, 2, 3};
  dd_tensor *dy = th_random(2, dx, 9, -1, 1), *gx = th_tensor(2, dx), *gu = th_tensor(3, du);
  for (int i = 0; i < 15; i++) dd_f32(gx)[i] = 0.5f; /* accumulates */
  const dd_tensor *cin[3] = {in[0], in[1], in[2]}, *dout[1] = {dy};
  dd_tensor *din[3] = {gx, NULL, gu};
  void *scratch = calloc(5, 1);
  t.node.op->backward(&t.node, cin, NULL, dout, din, scratch);
  free(scratch);
  for (int r = 0; r < 5; r++)
    for (int j = 0; j < 3; j++)
      cr_assert_eq(dd_f32(gx)[r * 3 + j],
                   0.5f + (r == 0 || r == 1 || r == 4 ? 0.f : dd_f32(dy)[r * 3 + j]));
  /* updates in order: row 4 (lost), row 0, row 4 (won), row 1 */
  const int64_t *iv = dd_i64(in[1]);
  cr_assert(iv[0] == 4 && iv[1] == 0 && iv[2] == 4 && iv[3] == 1);
  for (int j = 0; j < 3; j++) {
    cr_assert_eq(dd_f32(gu)[0 * 3 + j], 0.f);
    cr_assert_eq(dd_f32(gu)[1 * 3 + j], dd_f32(dy)[0 * 3 + j]);
    cr_assert_eq(dd_f32(gu)[2 * 3 + j], dd_f32(dy)[4 * 3 + j]);
    cr_assert_eq(dd_f32(gu)[3 * 3 + j], dd_f32(dy)[1 * 3 + j]);
  }
  dd_tensor_free(dy);
  dd_tensor_free(gx);
  dd_tensor_free(gu);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
}

Test(scatternd, refuses_reductions_bad_shapes_and_indices) {
  dd_err err;
  th_node t;
  const char *reds[] = {"max", "min"};
  for (int k = 0; k < 2; k++) {
    th_init(&t, "ScatterND", 3, 1);
    th_attr_string(&t, "reduction", reds[k]);
    cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
    cr_assert(strstr(err.msg, reds[k]), "%s", err.msg);
  }
  setup(&t);
  int64_t dx[] = {4, 3}, di[] = {2, 1}, du[] = {2, 3}, dbad[] = {2, 2}, dk[] = {2, 3};
  const int64_t iv[] = {1, 4}, ok[] = {1, -4}, k3[] = {0, 0, 0, 1, 1, 1};
  dd_tensor *x = th_tensor(2, dx), *u = th_tensor(2, du), *ub = th_tensor(2, dbad), *y[1];
  dd_tensor *i_out = th_tensor_i64(2, di, iv), *i_ok = th_tensor_i64(2, di, ok);
  dd_tensor *i_k3 = th_tensor_i64(2, dk, k3);
  dd_tensor *a[3] = {x, i_out, u}, *b[3] = {x, i_ok, ub}, *c[3] = {x, i_k3, u};
  cr_assert_eq(th_forward(&t, a, y, &err), DD_EFORMAT); /* 4 is out of range for dim 4 */
  cr_assert(strstr(err.msg, "out of range"), "%s", err.msg);
  cr_assert_eq(th_forward(&t, b, y, &err), DD_ESHAPE); /* updates 2x2, need 2x3 */
  cr_assert_eq(th_forward(&t, c, y, &err), DD_EFORMAT); /* 3 coordinates for 2 dims */
  dd_tensor *i_f = th_tensor(2, di), *d[3] = {x, i_f, u};
  cr_assert_eq(th_forward(&t, d, y, &err), DD_EFORMAT);
  dd_tensor_free(x);
  dd_tensor_free(u);
  dd_tensor_free(ub);
  dd_tensor_free(i_out);
  dd_tensor_free(i_ok);
  dd_tensor_free(i_k3);
  dd_tensor_free(i_f);
}

Test(scatternd, indices_known_only_at_run_time_skip_what_is_out_of_range) {
  /* infer sees no index values (computed at run time); forward then meets 7, out of range
   * for 5 rows, and -6: those updates are skipped, the others land */
  th_node t;
  setup(&t);
  int64_t dx[] = {5, 2}, di[] = {3, 1}, du[] = {3, 2};
  const int64_t iv[] = {7, 1, -6};
  dd_tensor *x = th_random(2, dx, 1, -1, 1), *idx = th_tensor_i64(2, di, iv);
  dd_tensor *u = th_random(2, du, 2, 2, 3), *y = th_tensor(2, dx);
  dd_tensor hidden = dd_tensor_wrap(DD_I64, &idx->shape, NULL), shape_y = {0};
  const dd_tensor *at_plan[3] = {x, &hidden, u};
  dd_tensor *outs[1] = {&shape_y};
  size_t scratch = 0;
  dd_err err;
  cr_assert_eq(t.node.op->infer(&t.node, at_plan, outs, &scratch, &err), 0, "%s", err.msg);
  const dd_tensor *in[3] = {x, idx, u};
  t.node.op->forward(&t.node, in, &y, NULL);
  for (int r = 0; r < 5; r++)
    for (int j = 0; j < 2; j++)
      cr_assert_eq(dd_f32(y)[r * 2 + j], r == 1 ? dd_f32(u)[2 + j] : dd_f32(x)[r * 2 + j]);
  dd_tensor_free(x);
  dd_tensor_free(idx);
  dd_tensor_free(u);
  dd_tensor_free(y);
}

static void setup_red(th_node *t, const char *red) {
  th_init(t, "ScatterND", 3, 1);
  th_attr_string(t, "reduction", red);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s", err.msg);
}

Test(scatternd, reductions_add_and_mul_combine_repeated_indices) {
  for (int mul = 0; mul < 2; mul++) {
    for (size_t c = 0; c < N_CASES; c++) {
      th_node t;
      setup_red(&t, mul ? "mul" : "add");
      dd_tensor *in[3], *y[1];
      scase_make(&cases[c], &in[0], &in[1], &in[2], 10 * c + 3);
      dd_err err;
      cr_assert_eq(th_forward(&t, in, y, &err), 0, "case %zu: %s", c, err.msg);
      /* naive: scatter each update alone onto zeros (and ones, for where it lands), and add
       * or multiply the results into data */
      int64_t n = dd_tensor_numel(in[0]);
      double *want = malloc((size_t)n * sizeof *want);
      float *one = malloc((size_t)n * sizeof *one), *hit = malloc((size_t)n * sizeof *hit);
      for (int64_t i = 0; i < n; i++) want[i] = dd_f32(in[0])[i];
      int k = (int)cases[c].i[cases[c].ni - 1];
      int64_t tuples = dd_tensor_numel(in[1]) / k;
      int64_t slice = tuples ? dd_tensor_numel(in[2]) / tuples : 0;
      dd_tensor *zero = th_tensor(cases[c].nx, cases[c].x);
      for (int64_t j = 0; j < tuples; j++) {
        int64_t di[] = {1, k}, du[DD_MAX_DIMS];
        int nu = 1;
        du[0] = 1;
        for (int i = k; i < cases[c].nx; i++) du[nu++] = cases[c].x[i];
        dd_tensor *ij = th_tensor_i64(2, di, dd_i64(in[1]) + j * k), *uj = th_tensor(nu, du);
        for (int64_t i = 0; i < slice; i++) dd_f32(uj)[i] = 1.f;
        ref_scatter(zero, ij, uj, hit);
        memcpy(uj->data, dd_f32(in[2]) + j * slice, (size_t)slice * sizeof(float));
        ref_scatter(zero, ij, uj, one);
        for (int64_t i = 0; i < n; i++) {
          if (!mul) want[i] += one[i];
          else if (hit[i] == 1.f) want[i] *= one[i];
        }
        dd_tensor_free(ij);
        dd_tensor_free(uj);
      }
      for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(dd_f32(y[0])[i] - want[i]) < 1e-5, "%s case %zu at %lld: %g vs %g",
                  mul ? "mul" : "add", c, (long long)i, dd_f32(y[0])[i], want[i]);
      for (int w = 0; w < 3; w += 2) {
        if (!dd_tensor_numel(in[w])) continue;
        int skipped = -1;
        double e = th_gradcheck(&t, in, w, 1e-2f, 3 + c, &skipped);
        cr_assert(e >= 0 && e < 1e-3, "case %zu input %d: relative error %g", c, w, e);
        cr_assert_eq(skipped, 0);
      }
      free(want);
      free(one);
      free(hit);
      dd_tensor_free(zero);
      dd_tensor_free(y[0]);
      for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
      free(t.node.params);
    }
  }
  /* bool data cannot add */
  th_node t;
  setup_red(&t, "add");
  int64_t d[] = {2}, di[] = {1, 1};
  uint8_t b[2] = {0, 1};
  const int64_t iv[] = {0};
  dd_shape s = dd_shape_make(1, d), s1 = dd_shape_make(1, di);
  dd_tensor bx = dd_tensor_wrap(DD_BOOL, &s, b), bu = dd_tensor_wrap(DD_BOOL, &s1, b);
  dd_tensor *idx = th_tensor_i64(2, di, iv), *in[3] = {&bx, idx, &bu}, *y[1];
  dd_err err;
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  dd_tensor_free(idx);
  free(t.node.params);
}

Test(scatternd, mul_gradient_with_zero_updates_is_exact) {
  /* x = 3 at one place, hit by updates 0 then 5: y = 0, dx = 0, du1 = 15 dy, du2 = 0 */
  th_node t;
  setup_red(&t, "mul");
  int64_t dx[] = {2}, di[] = {2, 1}, du[] = {2};
  const int64_t iv[] = {1, 1};
  dd_tensor *x = th_tensor(1, dx), *idx = th_tensor_i64(2, di, iv), *u = th_tensor(1, du);
  dd_f32(x)[0] = 7.f, dd_f32(x)[1] = 3.f;
  dd_f32(u)[0] = 0.f, dd_f32(u)[1] = 5.f;
  dd_tensor *in[3] = {x, idx, u}, *y[1];
  dd_err err;
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert(dd_f32(y[0])[0] == 7.f && dd_f32(y[0])[1] == 0.f);
  dd_tensor *dy = th_tensor(1, dx), *gx = th_tensor(1, dx), *gu = th_tensor(1, du);
  dd_f32(dy)[0] = 0.5f, dd_f32(dy)[1] = 2.f;
  const dd_tensor *cin[3] = {x, idx, u}, *dout[1] = {dy};
  dd_tensor *din[3] = {gx, NULL, gu};
  dd_tensor shape_y = {0}, *outs[1] = {&shape_y};
  size_t scratch = 0;
  cr_assert_eq(t.node.op->infer(&t.node, cin, outs, &scratch, &err), 0, "%s", err.msg);
  cr_assert_eq(scratch, 4 * sizeof(float));
  void *sb = calloc(1, scratch);
  t.node.op->backward(&t.node, cin, NULL, dout, din, sb);
  free(sb);
  cr_assert(dd_f32(gx)[0] == 0.5f && dd_f32(gx)[1] == 0.f);
  cr_assert(dd_f32(gu)[0] == 30.f && dd_f32(gu)[1] == 0.f, "%g %g", dd_f32(gu)[0], dd_f32(gu)[1]);
  dd_tensor_free(y[0]);
  dd_tensor_free(x);
  dd_tensor_free(idx);
  dd_tensor_free(u);
  dd_tensor_free(dy);
  dd_tensor_free(gx);
  dd_tensor_free(gu);
  free(t.node.params);
}
