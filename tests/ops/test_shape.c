#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

static void unravel(const dd_shape *s, int64_t e, int64_t *idx) {
  for (int i = s->ndim - 1; i >= 0; i--) {
    idx[i] = e % s->d[i];
    e /= s->d[i];
  }
}

static int64_t ravel(const dd_shape *s, const int64_t *idx) {
  int64_t e = 0;
  for (int i = 0; i < s->ndim; i++) e = e * s->d[i] + idx[i];
  return e;
}

/* ---- Constant ---- */

Test(constant, value_tensor_and_scalar_forms) {
  int64_t dims[] = {2, 3};
  dd_tensor *v = th_random(2, dims, 1, -1, 1), *y[1];
  th_node t;
  th_init(&t, "Constant", 0, 1);
  t.attrs[0] = (dd_attr){.name = "value", .type = DD_ATTR_TENSOR, .t = v};
  t.node.n_attr = 1;
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, NULL, y, &err), 0, "%s", err.msg);
  cr_assert_eq(th_max_abs_diff(v, y[0]), 0);
  dd_tensor_free(y[0]);
  free(t.node.params);
  dd_tensor_free(v);

  th_init(&t, "Constant", 0, 1);
  th_attr_float(&t, "value_float", 2.5f);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, NULL, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->shape.ndim, 0);
  cr_assert_eq(y[0]->dtype, DD_F32);
  cr_assert_eq(dd_f32(y[0])[0], 2.5f);
  dd_tensor_free(y[0]);
  free(t.node.params);

  const int64_t ints[] = {4, -1, 7};
  th_init(&t, "Constant", 0, 1);
  th_attr_ints(&t, "value_ints", 3, ints);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, NULL, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->shape.ndim, 1);
  cr_assert_eq(y[0]->shape.d[0], 3);
  cr_assert_eq(y[0]->dtype, DD_I64);
  for (int i = 0; i < 3; i++) cr_assert_eq(dd_i64(y[0])[i], ints[i]);
  dd_tensor_free(y[0]);
  free(t.node.params);

  const float fl[] = {1.5f, -2.f};
  th_init(&t, "Constant", 0, 1);
  th_attr_floats(&t, "value_floats", 2, fl);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, NULL, y, &err), 0, "%s", err.msg);
  cr_assert(y[0]->dtype == DD_F32 && dd_f32(y[0])[0] == 1.5f && dd_f32(y[0])[1] == -2.f);
  dd_tensor_free(y[0]);
  free(t.node.params);

  th_init(&t, "Constant", 0, 1);
  th_attr_int(&t, "value_int", -3);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, NULL, y, &err), 0, "%s", err.msg);
  cr_assert(y[0]->dtype == DD_I64 && y[0]->shape.ndim == 0 && dd_i64(y[0])[0] == -3);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(constant, refuses_strings_and_ambiguity) {
  th_node t;
  dd_err err;
  th_init(&t, "Constant", 0, 1);
  th_attr_string(&t, "value_string", "x");
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "value_string"), "%s", err.msg);
  th_init(&t, "Constant", 0, 1);
  th_attr_int(&t, "value_int", 1);
  th_attr_float(&t, "value_float", 1);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  th_init(&t, "Constant", 0, 1);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
}

/* ---- Size ---- */

Test(size, counts_elements_without_reading_them) {
  static const struct {
    int ndim;
    int64_t d[4], n;
  } cases[] = {{4, {2, 3, 4, 5}, 120}, {0, {0}, 1}, {2, {7, 0}, 0}, {1, {9}, 9}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    dd_tensor x = {.dtype = DD_F32, .shape = dd_shape_make(cases[k].ndim, cases[k].d)};
    dd_tensor *xp = &x, *y[1];
    th_node t;
    th_init(&t, "Size", 1, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&t, &xp, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, DD_I64);
    cr_assert_eq(y[0]->shape.ndim, 0);
    cr_assert_eq(dd_i64(y[0])[0], cases[k].n, "case %zu: %lld", k, (long long)dd_i64(y[0])[0]);
    dd_tensor_free(y[0]);
  }
  th_node t;
  th_init(&t, "Size", 1, 1);
  th_attr_int(&t, "axis", 0);
  dd_err err;
  cr_assert_neq(th_setup(&t, &err), 0, "an unknown attribute is refused");
}

/* ---- Shape ---- */

Test(shape, start_and_end_clamped) {
  int64_t dims[] = {2, 3, 4, 5};
  /* The input's data is never read: Shape is folded while the data does not exist. */
  dd_tensor x = {.dtype = DD_F32, .shape = dd_shape_make(4, dims)};
  dd_tensor *xp = &x, *y[1];
  static const struct {
    int has_start, has_end;
    int64_t start, end, lo, hi;
  } cases[] = {
      {0, 0, 0, 0, 0, 4},   {1, 0, 1, 0, 1, 4},   {1, 0, -1, 0, 3, 4}, {0, 1, 0, 1, 0, 1},
      {0, 1, 0, -1, 0, 3},  {1, 1, 1, 2, 1, 2},   {1, 1, 1, -1, 1, 3}, {1, 0, -10, 0, 0, 4},
      {0, 1, 0, 10, 0, 4},  {1, 1, 3, 1, 3, 3},   {1, 0, 10, 0, 4, 4},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    th_node t;
    th_init(&t, "Shape", 1, 1);
    if (cases[k].has_start) th_attr_int(&t, "start", cases[k].start);
    if (cases[k].has_end) th_attr_int(&t, "end", cases[k].end);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert(t.node.op->flags & DD_OP_SHAPE_ONLY);
    cr_assert_eq(th_forward(&t, &xp, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, DD_I64);
    cr_assert_eq(y[0]->shape.d[0], cases[k].hi - cases[k].lo, "case %zu", k);
    for (int64_t i = cases[k].lo; i < cases[k].hi; i++)
      cr_assert_eq(dd_i64(y[0])[i - cases[k].lo], dims[i]);
    dd_tensor_free(y[0]);
    free(t.node.params);
  }
}

/* ---- Gather ---- */

static void check_gather(const dd_tensor *x, int64_t axis, int ni, const int64_t *idims,
                         const int64_t *idx, int grad) {
  th_node t;
  th_init(&t, "Gather", 2, 1);
  th_attr_int(&t, "axis", axis);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[2] = {(dd_tensor *)x, th_tensor_i64(ni, idims, idx)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  int r = x->shape.ndim, a = (int)(axis < 0 ? axis + r : axis);
  cr_assert_eq(y[0]->shape.ndim, r - 1 + ni);
  int64_t oi[DD_MAX_DIMS], xi[DD_MAX_DIMS];
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    unravel(&y[0]->shape, o, oi);
    for (int i = 0; i < a; i++) xi[i] = oi[i];
    int64_t v = dd_i64(in[1])[ravel(&in[1]->shape, oi + a)];
    xi[a] = v < 0 ? v + x->shape.d[a] : v;
    for (int i = a + 1; i < r; i++) xi[i] = oi[i - 1 + ni];
    int64_t src = ravel(&x->shape, xi);
    if (x->dtype == DD_F32) cr_assert_eq(dd_f32(y[0])[o], dd_f32(x)[src]);
    else cr_assert_eq(dd_i64(y[0])[o], dd_i64(x)[src]);
  }
  if (grad) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, 3, &skipped);
    cr_assert(e >= 0 && e < 1e-4, "relative error %g", e);
    cr_assert_eq(skipped, 0);
  }
  dd_tensor_free(in[1]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(gather, every_axis_negative_and_repeated_indices) {
  int64_t dims[] = {3, 4, 5};
  dd_tensor *x = th_random(3, dims, 1, -1, 1);
  int64_t i1[] = {4}, i2[] = {2, 2}, i0[] = {0};
  const int64_t v1[] = {0, -1, 2, 0}; /* repeated: gradients add up */
  const int64_t v2[] = {1, -2, 0, 1};
  const int64_t v0[] = {-1};
  for (int64_t axis = -3; axis < 3; axis++) {
    check_gather(x, axis, 1, i1, v1, axis == 0 || axis == -1);
    check_gather(x, axis, 2, i2, v2, axis == 1);
    check_gather(x, axis, 0, i0, v0, axis == 2); /* scalar index: the axis disappears */
  }
  dd_tensor *xi = th_tensor_i64(3, dims, NULL);
  for (int i = 0; i < 60; i++) dd_i64(xi)[i] = 1000 - i;
  check_gather(xi, 0, 1, i1, v1, 0);
  check_gather(xi, 2, 2, i2, v2, 0);
  dd_tensor_free(xi);
  dd_tensor_free(x);
}

/* Large enough for the threads (more than DD_PAR_MIN elements out), where each copies the
 * bytes in its share of x: one index per row of 3200 floats (Swin-T's q, k and v out of one
 * tensor), repeated and negative indices, rows split across the shares' boundary, and many
 * short rows. */
Test(gather, shares_of_x_copied_by_the_threads) {
  int64_t dims[] = {3, 50, 64}, i3[] = {3}, i1[] = {1}, i5[] = {5};
  dd_tensor *x = th_random(3, dims, 7, -1, 1);
  const int64_t v3[] = {2, 0, -1}, v1[] = {1}, v5[] = {49, 0, 25, 24, -26};
  check_gather(x, 0, 1, i3, v3, 0);
  check_gather(x, 0, 1, i1, v1, 0);
  check_gather(x, 1, 1, i5, v5, 0);
  int64_t big[] = {2, 9000}, iw[] = {2};
  dd_tensor *xb = th_random(2, big, 8, -1, 1);
  const int64_t vw[] = {1, 0};
  check_gather(xb, 0, 1, iw, vw, 0);
  dd_tensor_free(xb);
  dd_tensor_free(x);
}

Test(gather, refuses_indices_out_of_range) {
  int64_t dims[] = {3, 4}, ni[] = {1};
  const int64_t bad[] = {4, -5};
  for (int k = 0; k < 2; k++) {
    th_node t;
    th_init(&t, "Gather", 2, 1);
    th_attr_int(&t, "axis", 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[2] = {th_random(2, dims, 1, 0, 1), th_tensor_i64(1, ni, &bad[k])}, *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), DD_EFORMAT);
    cr_assert(strstr(err.msg, "out of range"), "%s", err.msg);
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    free(t.node.params);
  }
}

/* ---- Slice ---- */

/* Naive: the python range(start, end, step) of each axis after ONNX's clamping. */
static int64_t naive_range(int64_t d, int64_t s, int64_t e, int64_t st, int64_t *first) {
  if (s < 0) s += d;
  if (e < 0) e += d;
  if (st > 0) {
    s = s < 0 ? 0 : s > d ? d : s;
    e = e < 0 ? 0 : e > d ? d : e;
  } else {
    s = s < 0 ? 0 : s > d - 1 ? d - 1 : s;
    e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
  }
  int64_t n = 0;
  for (int64_t i = s; st > 0 ? i < e : i > e; i += st) n++;
  *first = s;
  return n;
}

/* form 0: attributes (no steps); 1: inputs, all of them; 2: inputs without axes/steps. */
static void check_slice(const dd_tensor *x, int n, const int64_t *starts, const int64_t *ends,
                        const int64_t *axes, const int64_t *steps, int form, int grad) {
  int r = x->shape.ndim;
  th_node t;
  th_init(&t, "Slice", form == 0 ? 1 : form == 1 ? 5 : 3, 1);
  if (form == 0) {
    th_attr_ints(&t, "starts", n, starts);
    th_attr_ints(&t, "ends", n, ends);
    if (axes) th_attr_ints(&t, "axes", n, axes);
  }
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {n};
  dd_tensor *in[5] = {(dd_tensor *)x, NULL, NULL, NULL, NULL}, *y[1];
  if (form) {
    in[1] = th_tensor_i64(1, nn, starts);
    in[2] = th_tensor_i64(1, nn, ends);
  }
  if (form == 1) {
    in[3] = axes ? th_tensor_i64(1, nn, axes) : NULL;
    in[4] = steps ? th_tensor_i64(1, nn, steps) : NULL;
  }
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  int64_t first[DD_MAX_DIMS], step[DD_MAX_DIMS];
  for (int i = 0; i < r; i++) {
    first[i] = 0;
    step[i] = 1;
  }
  int64_t len[DD_MAX_DIMS];
  for (int i = 0; i < r; i++) len[i] = x->shape.d[i];
  for (int k = 0; k < n; k++) {
    int a = axes ? (int)(axes[k] < 0 ? axes[k] + r : axes[k]) : k;
    step[a] = steps && form == 1 ? steps[k] : 1;
    len[a] = naive_range(x->shape.d[a], starts[k], ends[k], step[a], &first[a]);
  }
  for (int i = 0; i < r; i++) cr_assert_eq(y[0]->shape.d[i], len[i], "dim %d", i);
  int64_t oi[DD_MAX_DIMS];
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    unravel(&y[0]->shape, o, oi);
    for (int i = 0; i < r; i++) oi[i] = first[i] + oi[i] * step[i];
    int64_t src = ravel(&x->shape, oi);
    if (x->dtype == DD_F32) cr_assert_eq(dd_f32(y[0])[o], dd_f32(x)[src]);
    else cr_assert_eq(dd_i64(y[0])[o], dd_i64(x)[src]);
  }
  if (grad && dd_tensor_numel(y[0])) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, 3, &skipped);
    cr_assert(e >= 0 && e < 1e-4, "relative error %g", e);
    cr_assert_eq(skipped, 0);
  }
  for (int k = 1; k < 5; k++) dd_tensor_free(in[k]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(slice, random_starts_ends_steps_and_clamping) {
  int64_t dims[] = {5, 6, 7};
  dd_tensor *x = th_random(3, dims, 1, -1, 1);
  dd_tensor *xi = th_tensor_i64(3, dims, NULL);
  for (int i = 0; i < 210; i++) dd_i64(xi)[i] = i * 3 - 100;
  uint64_t st = 9;
  for (int trial = 0; trial < 200; trial++) {
    int n = 1 + (int)(dd_rng_next(&st) % 3);
    int64_t starts[3], ends[3], axes[3], steps[3];
    int perm[3] = {0, 1, 2};
    for (int i = 2; i > 0; i--) { /* distinct axes in random order */
      int j = (int)(dd_rng_next(&st) % (uint64_t)(i + 1)), tmp = perm[i];
      perm[i] = perm[j];
      perm[j] = tmp;
    }
    for (int k = 0; k < n; k++) {
      axes[k] = perm[k] - (dd_rng_next(&st) % 2 ? 3 : 0);
      starts[k] = (int64_t)(dd_rng_next(&st) % 21) - 10;
      ends[k] = (int64_t)(dd_rng_next(&st) % 21) - 10;
      steps[k] = (int64_t)(dd_rng_next(&st) % 7) - 3;
      if (steps[k] == 0) steps[k] = 1;
      if (dd_rng_next(&st) % 8 == 0) ends[k] = steps[k] > 0 ? INT64_MAX : INT64_MIN;
      if (dd_rng_next(&st) % 8 == 0) starts[k] = steps[k] > 0 ? INT64_MIN : INT64_MAX;
    }
    int form = trial % 3;
    if (form == 2) for (int k = 0; k < n; k++) axes[k] = k;
    check_slice(trial % 7 == 3 ? xi : x, n, starts, ends, form == 2 ? NULL : axes,
                form == 1 ? steps : NULL, form, trial % 10 == 0 && trial % 7 != 3);
  }
  dd_tensor_free(x);
  dd_tensor_free(xi);
}

Test(slice, large_negative_step_takes_the_threaded_path) {
  int64_t dims[] = {1, 16, 64, 64};
  dd_tensor *x = th_random(4, dims, 1, -1, 1);
  const int64_t starts[] = {-1, 60}, ends[] = {INT64_MIN, 2}, axes[] = {3, 2}, steps[] = {-1, -2};
  check_slice(x, 2, starts, ends, axes, steps, 1, 0);
  dd_tensor_free(x);
}

Test(slice, refuses_zero_steps_and_runtime_starts) {
  int64_t dims[] = {4}, n1[] = {1};
  const int64_t z = 0, one = 1;
  th_node t;
  th_init(&t, "Slice", 5, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[5] = {th_random(1, dims, 1, 0, 1), th_tensor_i64(1, n1, &z), th_tensor_i64(1, n1, &one),
                      NULL, th_tensor_i64(1, n1, &z)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "step"), "%s", err.msg);
  dd_tensor runtime = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {1}}};
  const dd_tensor *cin[3] = {in[0], &runtime, in[2]};
  dd_tensor ys = {0}, *outs[1] = {&ys};
  size_t scratch;
  free(t.node.params);
  th_init(&t, "Slice", 3, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(t.node.op->infer(&t.node, cin, outs, &scratch, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  for (int k = 0; k < 5; k++) dd_tensor_free(in[k]);
  free(t.node.params);
}

/* ---- Cast ---- */

Test(cast, float_and_int64_both_ways) {
  int64_t dims[] = {8};
  dd_tensor *x = th_tensor(1, dims), *y[1];
  const float xs[] = {1.9f, -1.9f, 0.f, -0.5f, 1e20f, -1e20f, NAN, 123456.f};
  const int64_t want[] = {1, -1, 0, 0, INT64_MAX, INT64_MIN, 0, 123456};
  memcpy(x->data, xs, sizeof xs);
  th_node t;
  th_init(&t, "Cast", 1, 1);
  th_attr_int(&t, "to", 7);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_I64);
  for (int i = 0; i < 8; i++) cr_assert_eq(dd_i64(y[0])[i], want[i], "%g", xs[i]);
  free(t.node.params);

  th_init(&t, "Cast", 1, 1);
  th_attr_int(&t, "to", 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *z[1];
  cr_assert_eq(th_forward(&t, y, z, &err), 0, "%s", err.msg);
  cr_assert_eq(z[0]->dtype, DD_F32);
  for (int i = 0; i < 8; i++) cr_assert_eq(dd_f32(z[0])[i], (float)want[i]);
  dd_tensor_free(z[0]);
  /* float -> float: a copy, and the gradient passes */
  dd_tensor *xr = th_random(1, dims, 3, -1, 1);
  cr_assert_eq(th_forward(&t, &xr, z, &err), 0, "%s", err.msg);
  cr_assert_eq(th_max_abs_diff(xr, z[0]), 0);
  int skipped = -1;
  double e = th_gradcheck(&t, &xr, 0, 1e-2f, 3, &skipped);
  cr_assert(e >= 0 && e < 1e-4, "relative error %g", e);
  dd_tensor_free(z[0]);
  dd_tensor_free(xr);
  dd_tensor_free(y[0]);
  dd_tensor_free(x);
  free(t.node.params);
}

Test(cast, refuses_other_types) {
  const int64_t types[] = {10, 11, 6, 2, 8};
  for (int k = 0; k < 5; k++) {
    th_node t;
    th_init(&t, "Cast", 1, 1);
    th_attr_int(&t, "to", types[k]);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED, "to = %lld", (long long)types[k]);
  }
}

/* ---- in a graph: the shape arithmetic PyTorch emits for x.view(x.size(0), -1) ----
 * Shape -> Gather -> Unsqueeze -> Concat(-1) -> Reshape, after a per-channel Mul, then a
 * Transpose.  Through the real loader and planner: the int64 chain is folded at plan time,
 * and the gradient reaches x through Transpose, Reshape and Mul. */

#include "dream/graph.h"
#include "helper_model.h"

Test(shape, folded_in_a_graph_with_gradient) {
  float scale[] = {0.5f, -2.f, 3.f};
  th_model *mb = th_model_new("flatten_export");
  th_model_input(mb, "x", -1, NULL);
  th_model_output(mb, "z");
  th_model_init_i64(mb, "idx0", 0, NULL, (int64_t[]){0}, 1);
  th_model_init_i64(mb, "axes0", 1, (int64_t[]){1}, (int64_t[]){0}, 1);
  th_model_init_i64(mb, "minus1", 1, (int64_t[]){1}, (int64_t[]){-1}, 1);
  th_model_init_f32(mb, "scale", 4, (int64_t[]){1, 3, 1, 1}, scale, 3);
  th_model_node(mb, "Shape", NULL, "x", "s");
  th_model_node(mb, "Gather", NULL, "s,idx0", "n");
  th_model_node(mb, "Unsqueeze", NULL, "n,axes0", "n1");
  th_model_node(mb, "Concat", NULL, "n1,minus1", "shp");
  th_model_attr_int(mb, "axis", 0);
  th_model_node(mb, "Mul", NULL, "x,scale", "xs");
  th_model_node(mb, "Reshape", NULL, "xs,shp", "y");
  th_model_node(mb, "Transpose", NULL, "y", "z");
  dd_model *m = th_model_load(mb, "flatten_export");
  th_model_free(mb);

  dd_err err;
  int64_t dims[] = {2, 3, 4, 5};
  int vx = dd_model_find(m, "x"), vz = dd_model_find(m, "z");
  dd_binding b = {.value = vx, .shape = dd_shape_make(4, dims)};
  dd_plan *p = NULL;
  cr_assert_eq(dd_plan_new(m, &b, 1, &vz, 1, DD_PLAN_GRAD, 0, &p, &err), 0, "%s", err.msg);
  for (int i = 0; i < 7; i++)
    cr_assert_eq(dd_plan_node_runs(p, i), i >= 4, "%s", dd_model_node_op(m, i));
  dd_tensor *x = dd_plan_tensor(p, vx), *z;
  uint64_t st = 3;
  for (int i = 0; i < 120; i++) dd_f32(x)[i] = th_rand_uniform(&st, -1, 1);
  dd_plan_forward(p);
  z = dd_plan_tensor(p, vz);
  cr_assert(z && z->shape.ndim == 2 && z->shape.d[0] == 60 && z->shape.d[1] == 2);
  for (int n = 0; n < 2; n++)
    for (int j = 0; j < 60; j++)
      cr_assert_eq(dd_f32(z)[j * 2 + n], dd_f32(x)[n * 60 + j] * scale[j / 20]);
  dd_plan_zero_grad(p);
  dd_tensor *gz = dd_plan_grad(p, vz), *gx = dd_plan_grad(p, vx);
  cr_assert(gz && gx);
  for (int i = 0; i < 120; i++) dd_f32(gz)[i] = th_rand_uniform(&st, -1, 1);
  dd_plan_backward(p);
  for (int n = 0; n < 2; n++)
    for (int j = 0; j < 60; j++)
      cr_assert_eq(dd_f32(gx)[n * 60 + j], dd_f32(gz)[j * 2 + n] * scale[j / 20]);
  dd_plan_free(p);
  dd_model_free(m);
}

/* ---- Cast with bool ---- */

Test(cast, to_and_from_bool) {
  int64_t d[] = {6};
  const float fv[] = {0.f, -0.f, 2.5f, -1e-30f, NAN, INFINITY};
  const int64_t iv[] = {0, 1, -1, INT64_MIN, 7, 0};
  const uint8_t fb[] = {0, 0, 1, 1, 1, 1}, ib[] = {0, 1, 1, 1, 1, 0};
  dd_tensor *f = th_tensor(1, d), *i = th_tensor_i64(1, d, iv), *y[1];
  memcpy(f->data, fv, sizeof fv);
  dd_err err;
  th_node t;
  th_init(&t, "Cast", 1, 1);
  th_attr_int(&t, "to", 9);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, &f, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_BOOL);
  for (int k = 0; k < 6; k++) cr_assert_eq(dd_bool(y[0])[k], fb[k], "float %g", fv[k]);
  dd_tensor *b = y[0];
  cr_assert_eq(th_forward(&t, &i, y, &err), 0, "%s", err.msg);
  for (int k = 0; k < 6; k++) cr_assert_eq(dd_bool(y[0])[k], ib[k], "int64 %lld", (long long)iv[k]);
  dd_tensor_free(y[0]);
  /* bool -> float32, int64, bool */
  const int64_t tos[] = {1, 7, 9};
  for (int k = 0; k < 3; k++) {
    free(t.node.params);
    th_init(&t, "Cast", 1, 1);
    th_attr_int(&t, "to", tos[k]);
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&t, &b, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, (dd_dtype)tos[k]);
    for (int j = 0; j < 6; j++) {
      double v = k == 0 ? dd_f32(y[0])[j] : k == 1 ? (double)dd_i64(y[0])[j] : dd_bool(y[0])[j];
      cr_assert_eq(v, fb[j]);
    }
    dd_tensor_free(y[0]);
  }
  free(t.node.params);
  dd_tensor_free(b);
  dd_tensor_free(f);
  dd_tensor_free(i);
}

/* ---- ConstantOfShape ---- */

Test(constantofshape, fills_each_dtype) {
  const int64_t shape[] = {2, 0, 3}, shape2[] = {2, 3, 4};
  int64_t one = 1, three = 3;
  dd_err err;
  dd_tensor *y[1];
  /* no value: float 0 */
  th_node t;
  th_init(&t, "ConstantOfShape", 1, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *s = th_tensor_i64(1, &three, shape2);
  cr_assert_eq(th_forward(&t, &s, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->dtype, DD_F32);
  cr_assert_eq(y[0]->shape.ndim, 3);
  for (int i = 0; i < 3; i++) cr_assert_eq(y[0]->shape.d[i], shape2[i]);
  for (int i = 0; i < 24; i++) cr_assert_eq(dd_f32(y[0])[i], 0.f);
  dd_tensor_free(y[0]);
  free(t.node.params);
  /* a value of each type, over a shape with a 0 and over [] (a scalar) */
  float fv = -1.5f;
  int64_t iv = -7;
  uint8_t bv = 1;
  dd_shape s1 = dd_shape_make(1, &one);
  dd_tensor vals[3] = {dd_tensor_wrap(DD_F32, &s1, &fv), dd_tensor_wrap(DD_I64, &s1, &iv),
                       dd_tensor_wrap(DD_BOOL, &s1, &bv)};
  for (int k = 0; k < 3; k++) {
    th_init(&t, "ConstantOfShape", 1, 1);
    t.attrs[0] = (dd_attr){.name = "value", .type = DD_ATTR_TENSOR, .t = &vals[k]};
    t.node.n_attr = 1;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&t, &s, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, vals[k].dtype);
    for (int i = 0; i < 24; i++) {
      double v = k == 0 ? dd_f32(y[0])[i] : k == 1 ? (double)dd_i64(y[0])[i] : dd_bool(y[0])[i];
      cr_assert_eq(v, k == 0 ? fv : k == 1 ? iv : 1);
    }
    dd_tensor_free(y[0]);
    dd_tensor *e = th_tensor_i64(1, &three, shape);
    cr_assert_eq(th_forward(&t, &e, y, &err), 0, "%s", err.msg);
    cr_assert_eq(dd_tensor_numel(y[0]), 0);
    dd_tensor_free(y[0]);
    dd_tensor_free(e);
    int64_t zero = 0;
    e = th_tensor_i64(1, &zero, NULL);
    cr_assert_eq(th_forward(&t, &e, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->shape.ndim, 0);
    double v = k == 0 ? dd_f32(y[0])[0] : k == 1 ? (double)dd_i64(y[0])[0] : dd_bool(y[0])[0];
    cr_assert_eq(v, k == 0 ? fv : k == 1 ? iv : 1);
    dd_tensor_free(y[0]);
    dd_tensor_free(e);
    free(t.node.params);
  }
  dd_tensor_free(s);
}

Test(constantofshape, refuses_runtime_negative_and_huge_shapes) {
  dd_err err;
  dd_tensor *y[1];
  th_node t;
  th_init(&t, "ConstantOfShape", 1, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t two = 2, nine = 9;
  dd_shape s2 = dd_shape_make(1, &two);
  dd_tensor runtime = dd_tensor_wrap(DD_I64, &s2, NULL), *in = &runtime;
  cr_assert_eq(th_forward(&t, &in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  const int64_t neg[] = {3, -1}, huge[] = {INT64_MAX, 4}, many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  in = th_tensor_i64(1, &two, neg);
  cr_assert_eq(th_forward(&t, &in, y, &err), DD_EFORMAT);
  dd_tensor_free(in);
  in = th_tensor_i64(1, &two, huge);
  cr_assert_eq(th_forward(&t, &in, y, &err), DD_ELIMIT);
  dd_tensor_free(in);
  in = th_tensor_i64(1, &nine, many);
  cr_assert_eq(th_forward(&t, &in, y, &err), DD_ELIMIT);
  dd_tensor_free(in);
  free(t.node.params);
  /* a value that is not one element */
  float v2[2] = {1, 2};
  dd_tensor vt = dd_tensor_wrap(DD_F32, &s2, v2);
  th_init(&t, "ConstantOfShape", 1, 1);
  t.attrs[0] = (dd_attr){.name = "value", .type = DD_ATTR_TENSOR, .t = &vt};
  t.node.n_attr = 1;
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
}

/* ---- Range ---- */

static dd_tensor *range_run(dd_tensor *const *in, dd_err *err, int *rc) {
  th_node t;
  th_init(&t, "Range", 3, 1);
  cr_assert_eq(th_setup(&t, err), 0, "%s", err->msg);
  dd_tensor *y[1] = {NULL};
  *rc = th_forward(&t, in, y, err);
  return y[0];
}

Test(range, int64_and_float_both_directions) {
  static const int64_t ic[][3] = {{0, 10, 3}, {10, 0, -3}, {5, 5, 1}, {5, 1, 1}, {-3, 4, 1},
                                  {INT64_MIN, INT64_MIN + 5, 2}, {INT64_MAX - 1, INT64_MAX, 7}};
  for (size_t k = 0; k < sizeof ic / sizeof ic[0]; k++) {
    dd_tensor *in[3];
    for (int j = 0; j < 3; j++) in[j] = th_tensor_i64(0, NULL, &ic[k][j]);
    dd_err err;
    int rc;
    dd_tensor *y = range_run(in, &err, &rc);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(y->dtype, DD_I64);
    /* naive: count by stepping (in __int128, no overflow) */
    int64_t n = 0;
    for (__int128 v = ic[k][0]; ic[k][2] > 0 ? v < ic[k][1] : v > ic[k][1]; v += ic[k][2]) {
      cr_assert(n < y->shape.d[0], "case %zu: too few elements (%lld)", k,
                (long long)y->shape.d[0]);
      cr_assert_eq(dd_i64(y)[n], (int64_t)v);
      n++;
    }
    cr_assert_eq(y->shape.d[0], n, "case %zu", k);
    dd_tensor_free(y);
    for (int j = 0; j < 3; j++) dd_tensor_free(in[j]);
  }
  static const float fc[][3] = {{1.f, 5.f, 0.5f}, {3.f, -1.f, -0.75f}, {0.f, 1.f, 0.3f},
                                {2.f, 2.f, 1.f}};
  static const int64_t fn[] = {8, 6, 4, 0};
  for (size_t k = 0; k < 4; k++) {
    dd_tensor *in[3];
    for (int j = 0; j < 3; j++) {
      in[j] = th_tensor(0, NULL);
      dd_f32(in[j])[0] = fc[k][j];
    }
    dd_err err;
    int rc;
    dd_tensor *y = range_run(in, &err, &rc);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(y->dtype, DD_F32);
    cr_assert_eq(y->shape.d[0], fn[k], "case %zu: %lld", k, (long long)y->shape.d[0]);
    for (int64_t i = 0; i < fn[k]; i++)
      cr_assert(fabsf(dd_f32(y)[i] - (fc[k][0] + i * fc[k][2])) < 1e-6f);
    dd_tensor_free(y);
    for (int j = 0; j < 3; j++) dd_tensor_free(in[j]);
  }
}

Test(range, refuses_zero_delta_mixed_types_runtime_and_huge) {
  const int64_t z = 0, one = 1, big = INT64_MAX;
  dd_err err;
  int rc;
  dd_tensor *in[3] = {th_tensor_i64(0, NULL, &z), th_tensor_i64(0, NULL, &one),
                      th_tensor_i64(0, NULL, &z)};
  cr_assert_null(range_run(in, &err, &rc));
  cr_assert_eq(rc, DD_EFORMAT);
  cr_assert(strstr(err.msg, "delta"), "%s", err.msg);
  dd_i64(in[2])[0] = 1;
  dd_i64(in[1])[0] = big;
  cr_assert_null(range_run(in, &err, &rc));
  cr_assert_eq(rc, DD_ELIMIT);
  dd_tensor *f = th_tensor(0, NULL), *mixed[3] = {in[0], f, in[2]};
  cr_assert_null(range_run(mixed, &err, &rc));
  cr_assert_eq(rc, DD_EFORMAT);
  dd_shape s0 = {0};
  dd_tensor runtime = dd_tensor_wrap(DD_I64, &s0, NULL), *rt[3] = {&runtime, in[1], in[2]};
  cr_assert_null(range_run(rt, &err, &rc));
  cr_assert_eq(rc, DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  for (int j = 0; j < 3; j++) dd_tensor_free(in[j]);
  dd_tensor_free(f);
}
