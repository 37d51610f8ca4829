#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

/* ReduceMean, ReduceSum, ReduceMax and the references they are checked against. */
enum { K_MEAN, K_SUM, K_MAX };
static const char *const op_names[] = {"ReduceMean", "ReduceSum", "ReduceMax"};

/* Naive reduction (mean, sum or max by `kind`) of x (shape s) over the dims flagged in `red`,
 * as a dense tensor over the kept dims (in order); compared element by element with the op's
 * output, whatever keepdims.  For the max, argmax[o] receives the flat index in x of the first
 * maximal element of group o (may be NULL). */
static void naive_reduce(int kind, const dd_tensor *x, const int *red, double *out,
                         int64_t *argmax, int64_t *nout) {
  const dd_shape *s = &x->shape;
  int64_t n = dd_tensor_numel(x), cnt = 1, no = 1;
  for (int i = 0; i < s->ndim; i++) {
    if (red[i]) cnt *= s->d[i];
    else no *= s->d[i];
  }
  for (int64_t o = 0; o < no; o++) out[o] = kind == K_MAX ? -INFINITY : 0;
  for (int64_t e = 0; e < n; e++) {
    int64_t rem = e, o = 0, st = 1;
    for (int i = s->ndim - 1; i >= 0; i--) {
      int64_t c = rem % s->d[i];
      rem /= s->d[i];
      if (!red[i]) {
        o += c * st;
        st *= s->d[i];
      }
    }
    double v = dd_f32(x)[e];
    if (kind != K_MAX) out[o] += v;
    else if (v > out[o]) { /* strictly greater: the first maximal element stays */
      out[o] = v;
      if (argmax) argmax[o] = e;
    }
  }
  if (kind == K_MEAN)
    for (int64_t o = 0; o < no; o++) out[o] /= (double)cnt;
  *nout = no;
}

static void naive_mean(const dd_tensor *x, const int *red, double *out, int64_t *nout) {
  naive_reduce(K_MEAN, x, red, out, NULL, nout);
}

/* mask: bit i reduces axis i; form 0 attribute, 1 input (opset 13 for ReduceSum, 18 for the
 * others). */
static void reduce_case(int kind, int mask, int keepdims, int negative, int form, uint64_t seed) {
  int64_t dims[] = {3, 4, 5, 6};
  int red[4], n_axes = 0;
  int64_t axes[4];
  for (int i = 0; i < 4; i++) {
    red[i] = (mask >> i) & 1;
    if (red[i]) axes[n_axes++] = negative ? i - 4 : i;
  }
  if (n_axes == 0)
    for (int i = 0; i < 4; i++) red[i] = 1; /* no axes: all of them */
  th_node t;
  th_init(&t, op_names[kind], form && n_axes ? 2 : 1, 1);
  th_attr_int(&t, "keepdims", keepdims);
  if (!form && n_axes) th_attr_ints(&t, "axes", n_axes, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t na[] = {n_axes};
  dd_tensor *in[2] = {th_random(4, dims, seed, -1, 1),
                      form && n_axes ? th_tensor_i64(1, na, axes) : NULL};
  if (kind == K_MAX) { /* distinct values 0.05 apart: no tie within the gradient's step */
    float *x = dd_f32(in[0]);
    for (int i = 0; i < 360; i++) x[i] = 0.05f * (float)i - 9.f;
    uint64_t st = seed;
    for (int i = 359; i > 0; i--) {
      int j = (int)(dd_rng_next(&st) % (uint64_t)(i + 1));
      float tmp = x[i];
      x[i] = x[j];
      x[j] = tmp;
    }
  }
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  int k = 0;
  for (int i = 0; i < 4; i++) {
    if (red[i] && !keepdims) continue;
    cr_assert_eq(y[0]->shape.d[k], red[i] ? 1 : dims[i], "mask %d dim %d", mask, i);
    k++;
  }
  cr_assert_eq(y[0]->shape.ndim, k);
  double want[360];
  int64_t no;
  naive_reduce(kind, in[0], red, want, NULL, &no);
  cr_assert_eq(dd_tensor_numel(y[0]), no);
  /* float32 rounding of the result: relative to sums larger than 1 */
  for (int64_t o = 0; o < no; o++)
    cr_assert(fabs(dd_f32(y[0])[o] - want[o]) < 1e-6 * fmax(1, fabs(want[o])),
              "%s mask %d at %lld: %g vs %g", op_names[kind], mask, (long long)o,
              dd_f32(y[0])[o], want[o]);
  if (seed % 3 == 0) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, seed, &skipped);
    cr_assert(e >= 0 && e < 1e-3, "%s mask %d: relative error %g", op_names[kind], mask, e);
    cr_assert_eq(skipped, 0);
  }
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

static void every_axis_set(int kind) {
  uint64_t seed = 1;
  for (int mask = 0; mask < 16; mask++)
    for (int keep = 0; keep < 2; keep++)
      for (int neg = 0; neg < 2; neg++)
        for (int form = 0; form < 2; form++) reduce_case(kind, mask, keep, neg, form, seed++);
}

Test(reduce_mean, matches_naive_reference_for_every_axis_set) { every_axis_set(K_MEAN); }
Test(reduce_sum, matches_naive_reference_for_every_axis_set) { every_axis_set(K_SUM); }
Test(reduce_max, matches_naive_reference_for_every_axis_set) { every_axis_set(K_MAX); }

Test(reduce_mean, global_average_of_a_large_map) {
  th_node t;
  th_init(&t, "ReduceMean", 1, 1);
  int64_t axes[] = {2, 3};
  th_attr_ints(&t, "axes", 2, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 64, 33, 31};
  dd_tensor *x = th_random(4, dims, 3, -1, 1), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  int red[] = {0, 0, 1, 1};
  double want[128];
  int64_t no;
  naive_mean(x, red, want, &no);
  for (int64_t o = 0; o < no; o++) cr_assert(fabs(dd_f32(y[0])[o] - want[o]) < 1e-6);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(reduce_mean, noop_with_empty_axes_is_the_identity) {
  th_node t;
  th_init(&t, "ReduceMean", 1, 1);
  th_attr_int(&t, "noop_with_empty_axes", 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3};
  dd_tensor *x = th_random(2, dims, 3, -1, 1), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert_eq(th_max_abs_diff(x, y[0]), 0);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(reduce_mean, refuses_bad_axes) {
  dd_err err;
  int64_t dims[] = {2, 3};
  dd_tensor *x = th_random(2, dims, 3, -1, 1), *y[1];
  const int64_t bad[][2] = {{0, -2}, {2, 0}, {-3, 0}};
  for (int k = 0; k < 3; k++) {
    th_node t;
    th_init(&t, "ReduceMean", 1, 1);
    th_attr_ints(&t, "axes", 2, bad[k]);
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&t, &x, y, &err), DD_EFORMAT, "case %d", k);
    free(t.node.params);
  }
  /* axes computed at run time */
  th_node t;
  th_init(&t, "ReduceMean", 2, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor axes = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {1}}};
  const dd_tensor *in[2] = {x, &axes};
  dd_tensor ys = {0}, *outs[1] = {&ys};
  size_t scratch;
  cr_assert_eq(t.node.op->infer(&t.node, in, outs, &scratch, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  free(t.node.params);
  dd_tensor_free(x);
}

Test(reduce_sum, empty_axes_input_reduces_all_or_is_the_identity) {
  /* opset 13: axes as an empty input; all axes without noop_with_empty_axes, none with it */
  for (int noop = 0; noop < 2; noop++) {
    th_node t;
    th_init(&t, "ReduceSum", 2, 1);
    th_attr_int(&t, "noop_with_empty_axes", noop);
    th_attr_int(&t, "keepdims", 0);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t dims[] = {3, 4}, na[] = {0};
    dd_tensor *in[2] = {th_random(2, dims, 5, -1, 1), th_tensor_i64(1, na, NULL)}, *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    if (noop) {
      cr_assert_eq(th_max_abs_diff(in[0], y[0]), 0);
    } else {
      double s = 0;
      for (int i = 0; i < 12; i++) s += dd_f32(in[0])[i];
      cr_assert_eq(y[0]->shape.ndim, 0);
      cr_assert(fabs(dd_f32(y[0])[0] - s) < 1e-6, "%g vs %g", dd_f32(y[0])[0], s);
    }
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, 9, &skipped);
    cr_assert(e >= 0 && e < 1e-3 && skipped == 0, "noop %d: relative error %g", noop, e);
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

Test(reduce_max, gradient_goes_to_the_first_maximal_element) {
  /* rows of 2x6 with ties: each row's gradient lands on its first maximum, all of it */
  th_node t;
  th_init(&t, "ReduceMax", 1, 1);
  int64_t axes[] = {1};
  th_attr_ints(&t, "axes", 1, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {3, 6};
  dd_tensor *x = th_tensor(2, dims), *y[1];
  const float v[] = {1, 5, 2, 5, 5, 0, /* */ -3, -3, -3, -3, -3, -3, /* */ 0, 1, 2, 3, 4, 9};
  memcpy(x->data, v, sizeof v);
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert(dd_f32(y[0])[0] == 5 && dd_f32(y[0])[1] == -3 && dd_f32(y[0])[2] == 9);
  int64_t od[] = {3, 1};
  dd_tensor *dy = th_tensor(2, od), *dx = th_tensor(2, dims);
  dd_f32(dy)[0] = 2, dd_f32(dy)[1] = -1, dd_f32(dy)[2] = 0.5f;
  for (int i = 0; i < 18; i++) dd_f32(dx)[i] = 0.25f; /* backward accumulates */
  const dd_tensor *dout[1] = {dy};
  t.node.op->backward(&t.node, (const dd_tensor *const *)&x, (const dd_tensor *const *)y, dout,
                      &dx, NULL);
  for (int i = 0; i < 18; i++) {
    float want = 0.25f + (i == 1 ? 2.f : i == 6 ? -1.f : i == 17 ? 0.5f : 0.f);
    cr_assert_eq(dd_f32(dx)[i], want, "at %d: %g vs %g", i, dd_f32(dx)[i], want);
  }
  /* and it agrees with the naive reference's argmax on random data over two axes */
  int64_t d3[] = {4, 5, 6};
  dd_tensor *r = th_random(3, d3, 21, -1, 1), *ry[1];
  th_node t2;
  th_init(&t2, "ReduceMax", 1, 1);
  int64_t ax2[] = {0, 2};
  th_attr_ints(&t2, "axes", 2, ax2);
  cr_assert_eq(th_setup(&t2, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t2, &r, ry, &err), 0, "%s", err.msg);
  int red[] = {1, 0, 1};
  double want[5];
  int64_t am[5], no;
  naive_reduce(K_MAX, r, red, want, am, &no);
  dd_tensor *g = th_tensor(3, d3), *ones = th_tensor(ry[0]->shape.ndim, ry[0]->shape.d);
  for (int64_t o = 0; o < no; o++) dd_f32(ones)[o] = 1.f + (float)o;
  const dd_tensor *dout2[1] = {ones};
  t2.node.op->backward(&t2.node, (const dd_tensor *const *)&r, (const dd_tensor *const *)ry,
                       dout2, &g, NULL);
  for (int64_t i = 0; i < 120; i++) {
    float w = 0.f;
    for (int64_t o = 0; o < no; o++)
      if (am[o] == i) w = 1.f + (float)o;
    cr_assert_eq(dd_f32(g)[i], w, "at %lld", (long long)i);
  }
  dd_tensor *all[] = {x, y[0], dy, dx, r, ry[0], g, ones};
  for (size_t i = 0; i < 8; i++) dd_tensor_free(all[i]);
  free(t.node.params);
  free(t2.node.params);
}

Test(reduce_max, nan_propagates_and_empty_group_is_minus_infinity) {
  th_node t;
  th_init(&t, "ReduceMax", 1, 1);
  int64_t axes[] = {1};
  th_attr_ints(&t, "axes", 1, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3};
  dd_tensor *x = th_tensor(2, dims), *y[1];
  const float v[] = {1, NAN, 7, 3, 2, 1};
  memcpy(x->data, v, sizeof v);
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert(isnan(dd_f32(y[0])[0]) && dd_f32(y[0])[1] == 3);
  dd_tensor_free(y[0]);
  int64_t empty[] = {2, 0};
  dd_tensor *e = th_tensor(2, empty);
  cr_assert_eq(th_forward(&t, &e, y, &err), 0, "%s", err.msg);
  cr_assert(isinf(dd_f32(y[0])[0]) && dd_f32(y[0])[0] < 0 && isinf(dd_f32(y[0])[1]));
  dd_tensor_free(y[0]);
  dd_tensor_free(e);
  dd_tensor_free(x);
  free(t.node.params);
}

Test(reduce_sum, refuses_axes_both_as_attribute_and_input) {
  th_node t;
  th_init(&t, "ReduceSum", 2, 1);
  t.in_ids[1] = 1;
  int64_t axes[] = {0};
  th_attr_ints(&t, "axes", 1, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "both"), "%s", err.msg);
  free(t.node.params);
}
