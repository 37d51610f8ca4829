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

static void gradcheck_ok(th_node *t, dd_tensor **in, const char *what) {
  int skipped = -1;
  double e = th_gradcheck(t, in, 0, 1e-2f, 77, &skipped);
  cr_assert(e >= 0 && e < 1e-4, "%s: relative error %g", what, e);
  cr_assert_eq(skipped, 0, "%s", what);
}

/* Runs a one-input op expected to keep the elements in order; checks the shape. */
static void same_data(th_node *t, dd_tensor **in, int nd, const int64_t *want, const char *what) {
  dd_err err;
  dd_tensor *y[2] = {0};
  cr_assert_eq(th_forward(t, in, y, &err), 0, "%s: %s", what, err.msg);
  dd_shape ws = dd_shape_make(nd, want);
  char a[64], b[64];
  cr_assert(dd_shape_eq(&y[0]->shape, &ws), "%s: shape %s, expected %s", what,
            dd_shape_str(&y[0]->shape, a, sizeof a), dd_shape_str(&ws, b, sizeof b));
  cr_assert_eq(y[0]->dtype, in[0]->dtype);
  cr_assert_eq(memcmp(y[0]->data, in[0]->data, (size_t)dd_tensor_numel(in[0]) * dd_dtype_size(in[0]->dtype)), 0);
  for (int k = 0; k < t->node.n_out; k++) dd_tensor_free(y[k]);
}

Test(flatten, every_axis) {
  int64_t dims[] = {2, 3, 4, 5};
  dd_tensor *x = th_random(4, dims, 1, -1, 1);
  for (int axis = -4; axis <= 4; axis++) {
    th_node t;
    th_init(&t, "Flatten", 1, 1);
    th_attr_int(&t, "axis", axis);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int a = axis < 0 ? axis + 4 : axis;
    int64_t want[2] = {1, 1};
    for (int i = 0; i < 4; i++) want[i < a ? 0 : 1] *= dims[i];
    same_data(&t, &x, 2, want, "flatten");
    if (axis == 2) gradcheck_ok(&t, &x, "flatten");
    free(t.node.params);
  }
  th_node t;
  th_init(&t, "Flatten", 1, 1);
  th_attr_int(&t, "axis", 5);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), DD_EFORMAT);
  free(t.node.params);
  dd_tensor_free(x);
}

typedef struct reshape_case {
  int nin;
  int64_t in[4];
  int nshape;
  int64_t shape[5];
  int allowzero;
  int nout; /* -1: must fail */
  int64_t out[5];
} reshape_case;

Test(reshape, resolves_zero_and_minus_one) {
  static const reshape_case cases[] = {
      {3, {2, 3, 4}, 2, {6, 4}, 0, 2, {6, 4}},
      {3, {2, 3, 4}, 2, {-1, 4}, 0, 2, {6, 4}},
      {3, {2, 3, 4}, 3, {0, -1, 2}, 0, 3, {2, 6, 2}},
      {3, {2, 3, 4}, 4, {0, 0, 2, 2}, 0, 4, {2, 3, 2, 2}},
      {3, {2, 3, 4}, 1, {-1}, 0, 1, {24}},
      {3, {2, 3, 4}, 5, {1, 2, 1, 12, 1}, 0, 5, {1, 2, 1, 12, 1}},
      {3, {2, 0, 4}, 3, {0, 0, 8}, 1, 3, {0, 0, 8}},    /* allowzero: literal zeros */
      {3, {2, 0, 4}, 2, {0, 4}, 0, -1, {0}},             /* 0 copies 2: 8 != 0 elements */
      {3, {2, 3, 4}, 2, {5, -1}, 0, -1, {0}},            /* 24 % 5 */
      {3, {2, 3, 4}, 2, {-1, -1}, 0, -1, {0}},
      {3, {2, 3, 4}, 2, {7, 4}, 0, -1, {0}},
      {3, {2, 3, 4}, 2, {-2, 4}, 0, -1, {0}},
      {1, {4}, 2, {0, 4}, 0, -1, {0}},                   /* 0 past the input's dims */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const reshape_case *c = &cases[k];
    th_node t;
    th_init(&t, "Reshape", 2, 1);
    if (c->allowzero) th_attr_int(&t, "allowzero", 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t ns[] = {c->nshape};
    dd_tensor *in[2] = {th_random(c->nin, c->in, k, -1, 1), th_tensor_i64(1, ns, c->shape)};
    if (c->nout < 0) {
      dd_tensor *y[1];
      cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE, "case %zu", k);
    } else {
      same_data(&t, in, c->nout, c->out, "reshape");
      if (k == 2) gradcheck_ok(&t, in, "reshape");
    }
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    free(t.node.params);
  }
}

Test(reshape, shape_attribute_of_opset_1_and_runtime_shape_refused) {
  th_node t;
  th_init(&t, "Reshape", 1, 1);
  int64_t shape[] = {3, -1};
  th_attr_ints(&t, "shape", 2, shape);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3}, want[] = {3, 2};
  dd_tensor *x = th_random(2, dims, 1, -1, 1);
  same_data(&t, &x, 2, want, "reshape attr");
  free(t.node.params);

  th_init(&t, "Reshape", 2, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor s = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {2}}}; /* no data */
  const dd_tensor *in[2] = {x, &s};
  dd_tensor ys = {0}, *outs[1] = {&ys};
  size_t scratch;
  cr_assert_eq(t.node.op->infer(&t.node, in, outs, &scratch, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  free(t.node.params);
  dd_tensor_free(x);
}

Test(identity, copies_and_passes_the_gradient) {
  th_node t;
  th_init(&t, "Identity", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {3, 4};
  dd_tensor *x = th_random(2, dims, 1, -1, 1);
  same_data(&t, &x, 2, dims, "identity");
  gradcheck_ok(&t, &x, "identity");
  dd_tensor *xi = th_tensor_i64(2, dims, NULL);
  for (int i = 0; i < 12; i++) dd_i64(xi)[i] = i * 1000000007LL;
  same_data(&t, &xi, 2, dims, "identity int64");
  dd_tensor_free(x);
  dd_tensor_free(xi);
}

Test(dropout, is_the_identity_with_an_all_ones_mask) {
  for (int old = 0; old < 2; old++) {
    th_node t;
    th_init(&t, "Dropout", 1, 2);
    t.node.opset = old ? 7 : 13;
    if (old) th_attr_float(&t, "ratio", 0.5f);
    else th_attr_int(&t, "seed", 0);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t dims[] = {2, 5};
    dd_tensor *x = th_random(2, dims, 1, -1, 1), *y[2];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    cr_assert_eq(th_max_abs_diff(x, y[0]), 0);
    cr_assert_eq(y[1]->dtype, old ? DD_F32 : DD_BOOL); /* bool from opset 10 */
    for (int i = 0; i < 10; i++)
      cr_assert(old ? dd_f32(y[1])[i] == 1.f : dd_bool(y[1])[i] == 1);
    gradcheck_ok(&t, &x, "dropout");
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(y[1]);
  }
  /* training_mode = true is not inference */
  th_node t;
  th_init(&t, "Dropout", 3, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {4}, one = 1;
  dd_tensor *in[3] = {th_random(1, dims, 1, -1, 1), NULL, th_tensor_i64(0, NULL, &one)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "training_mode"), "%s", err.msg);
  dd_tensor_free(in[0]);
  dd_tensor_free(in[2]);
}

Test(squeeze, attribute_input_and_default_forms) {
  int64_t dims[] = {1, 3, 1, 4, 1};
  dd_tensor *x = th_random(5, dims, 1, -1, 1);
  /* all size-1 dims */
  th_node t;
  th_init(&t, "Squeeze", 1, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t w0[] = {3, 4};
  same_data(&t, &x, 2, w0, "squeeze all");
  free(t.node.params);
  /* attribute, opset < 13, with a negative axis */
  int64_t axes[] = {0, -1};
  th_init(&t, "Squeeze", 1, 1);
  th_attr_ints(&t, "axes", 2, axes);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t w1[] = {3, 1, 4};
  same_data(&t, &x, 3, w1, "squeeze attr");
  gradcheck_ok(&t, &x, "squeeze");
  free(t.node.params);
  /* input, opset >= 13 */
  th_init(&t, "Squeeze", 2, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t na[] = {1}, a2[] = {2};
  dd_tensor *in[2] = {x, th_tensor_i64(1, na, a2)};
  int64_t w2[] = {1, 3, 4, 1};
  same_data(&t, in, 4, w2, "squeeze input");
  /* a dim that is not 1 */
  dd_i64(in[1])[0] = 1;
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  dd_tensor_free(in[1]);
  free(t.node.params);
  dd_tensor_free(x);
}

Test(unsqueeze, attribute_and_input_forms) {
  int64_t dims[] = {3, 4};
  dd_tensor *x = th_random(2, dims, 1, -1, 1);
  static const struct {
    int n;
    int64_t axes[3];
    int64_t want[5];
  } cases[] = {
      {1, {0}, {1, 3, 4}},
      {1, {2}, {3, 4, 1}},
      {1, {-1}, {3, 4, 1}},
      {2, {1, 3}, {3, 1, 4, 1}},
      {3, {4, 0, 2}, {1, 3, 1, 4, 1}}, /* unsorted */
      {2, {-1, -4}, {1, 3, 4, 1}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int form = 0; form < 2; form++) {
      th_node t;
      th_init(&t, "Unsqueeze", form ? 2 : 1, 1);
      if (!form) th_attr_ints(&t, "axes", cases[k].n, cases[k].axes);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      int64_t na[] = {cases[k].n};
      dd_tensor *in[2] = {x, form ? th_tensor_i64(1, na, cases[k].axes) : NULL};
      same_data(&t, in, 2 + cases[k].n, cases[k].want, "unsqueeze");
      if (k == 3) gradcheck_ok(&t, in, "unsqueeze");
      dd_tensor_free(in[1]);
      free(t.node.params);
    }
  th_node t;
  int64_t rep[] = {1, 1};
  th_init(&t, "Unsqueeze", 1, 1);
  th_attr_ints(&t, "axes", 2, rep);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), DD_EFORMAT);
  free(t.node.params);
  dd_tensor_free(x);
}

/* ---- Transpose ---- */

static void check_transpose(const dd_tensor *x, const int64_t *perm, int has_perm, int grad) {
  int nd = x->shape.ndim;
  th_node t;
  th_init(&t, "Transpose", 1, 1);
  if (has_perm) th_attr_ints(&t, "perm", nd, perm);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *xx = (dd_tensor *)x, *y[1];
  cr_assert_eq(th_forward(&t, &xx, y, &err), 0, "%s", err.msg);
  int64_t p[DD_MAX_DIMS];
  for (int i = 0; i < nd; i++) p[i] = has_perm ? perm[i] : nd - 1 - i;
  for (int i = 0; i < nd; i++) cr_assert_eq(y[0]->shape.d[i], x->shape.d[p[i]]);
  int64_t oi[DD_MAX_DIMS], ii[DD_MAX_DIMS];
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    unravel(&y[0]->shape, o, oi);
    for (int i = 0; i < nd; i++) ii[p[i]] = oi[i];
    int64_t src = ravel(&x->shape, ii);
    if (x->dtype == DD_F32) cr_assert_eq(dd_f32(y[0])[o], dd_f32(x)[src]);
    else cr_assert_eq(dd_i64(y[0])[o], dd_i64(x)[src]);
  }
  if (grad) gradcheck_ok(&t, &xx, "transpose");
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(transpose, every_permutation_of_rank_4) {
  int64_t dims[] = {2, 3, 4, 5};
  dd_tensor *x = th_random(4, dims, 1, -1, 1);
  int count = 0;
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++)
      for (int c = 0; c < 4; c++)
        for (int d = 0; d < 4; d++) {
          if (a == b || a == c || a == d || b == c || b == d || c == d) continue;
          int64_t perm[] = {a, b, c, d};
          check_transpose(x, perm, 1, count % 6 == 0);
          count++;
        }
  cr_assert_eq(count, 24);
  check_transpose(x, NULL, 0, 1); /* default: reversed */
  dd_tensor_free(x);
}

Test(transpose, other_ranks_int64_and_large) {
  int64_t d1[] = {7}, p1[] = {0};
  dd_tensor *x = th_random(1, d1, 1, -1, 1);
  check_transpose(x, p1, 1, 1);
  dd_tensor_free(x);
  int64_t d6[] = {2, 1, 3, 2, 1, 4}, p6[] = {5, 2, 0, 4, 1, 3};
  x = th_random(6, d6, 2, -1, 1);
  check_transpose(x, p6, 1, 1);
  dd_tensor_free(x);
  x = th_tensor_i64(6, d6, NULL);
  for (int i = 0; i < 48; i++) dd_i64(x)[i] = i - 20;
  check_transpose(x, p6, 1, 0);
  dd_tensor_free(x);
  int64_t dl[] = {1, 64, 40, 40}, pl[] = {0, 2, 3, 1}; /* NCHW -> NHWC: threads */
  x = th_random(4, dl, 3, -1, 1);
  check_transpose(x, pl, 1, 0);
  dd_tensor_free(x);
}

Test(transpose, refuses_bad_permutations) {
  int64_t dims[] = {2, 3, 4};
  dd_tensor *x = th_random(3, dims, 1, -1, 1), *y[1];
  const int64_t bad[][3] = {{0, 1, 1}, {0, 1, 3}, {-1, 0, 1}};
  for (int k = 0; k < 3; k++) {
    th_node t;
    th_init(&t, "Transpose", 1, 1);
    th_attr_ints(&t, "perm", 3, bad[k]);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&t, &x, y, &err), DD_EFORMAT, "case %d", k);
    free(t.node.params);
  }
  th_node t;
  th_init(&t, "Transpose", 1, 1);
  th_attr_ints(&t, "perm", 2, bad[0]);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  cr_assert_eq(th_forward(&t, &x, y, &err), DD_ESHAPE);
  free(t.node.params);
  dd_tensor_free(x);
}

/* ---- Pad ---- */

/* form 0: attributes pads/value; 1: inputs pads, constant_value; 2: inputs with axes
 * (only the dims listed get pads). */
static void check_pad(const dd_tensor *x, const int64_t *pads, float value, int form, int grad) {
  int nd = x->shape.ndim;
  th_node t;
  int64_t axes[DD_MAX_DIMS], p2[2 * DD_MAX_DIMS];
  int na = 0;
  for (int i = 0; i < nd; i++)
    if (form < 2 || pads[i] || pads[nd + i]) axes[na++] = i - (i % 2 ? nd : 0); /* some negative */
  for (int k = 0; k < na; k++) {
    int a = (int)(axes[k] < 0 ? axes[k] + nd : axes[k]);
    p2[k] = pads[a];
    p2[na + k] = pads[nd + a];
  }
  th_init(&t, "Pad", form == 0 ? 1 : form == 1 ? 3 : 4, 1);
  if (form == 0) {
    th_attr_ints(&t, "pads", 2 * nd, pads);
    th_attr_float(&t, "value", value);
  }
  th_attr_string(&t, "mode", "constant");
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t np[] = {form == 2 ? 2 * na : 2 * nd}, nax[] = {na};
  dd_tensor *in[4] = {(dd_tensor *)x, NULL, NULL, NULL}, *y[1];
  if (form) {
    in[1] = th_tensor_i64(1, np, form == 2 ? p2 : pads);
    if (x->dtype == DD_F32) {
      in[2] = th_tensor(0, NULL);
      dd_f32(in[2])[0] = value;
    } else {
      int64_t v = (int64_t)value;
      in[2] = th_tensor_i64(0, NULL, &v);
    }
  }
  if (form == 2) in[3] = th_tensor_i64(1, nax, axes);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  for (int i = 0; i < nd; i++)
    cr_assert_eq(y[0]->shape.d[i], x->shape.d[i] + pads[i] + pads[nd + i]);
  int64_t oi[DD_MAX_DIMS];
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    unravel(&y[0]->shape, o, oi);
    int inside = 1;
    for (int i = 0; i < nd; i++) {
      oi[i] -= pads[i];
      inside &= oi[i] >= 0 && oi[i] < x->shape.d[i];
    }
    if (x->dtype == DD_F32)
      cr_assert_eq(dd_f32(y[0])[o], inside ? dd_f32(x)[ravel(&x->shape, oi)] : value,
                   "form %d at %lld", form, (long long)o);
    else
      cr_assert_eq(dd_i64(y[0])[o], inside ? dd_i64(x)[ravel(&x->shape, oi)] : (int64_t)value);
  }
  if (grad) gradcheck_ok(&t, in, "pad");
  for (int k = 1; k < 4; k++) dd_tensor_free(in[k]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(pad, random_pads_including_crops) {
  uint64_t st = 5;
  for (int trial = 0; trial < 40; trial++) {
    int nd = 1 + (int)(dd_rng_next(&st) % 4);
    int64_t dims[4], pads[8];
    for (int i = 0; i < nd; i++) dims[i] = 1 + (int64_t)(dd_rng_next(&st) % 4);
    for (int i = 0; i < 2 * nd; i++) {
      int64_t p = (int64_t)(dd_rng_next(&st) % 6) - 2; /* -2..3 */
      pads[i] = p;
    }
    for (int i = 0; i < nd; i++) /* keep sizes >= 0 */
      while (dims[i] + pads[i] + pads[nd + i] < 0) pads[i]++;
    dd_tensor *x = th_random(nd, dims, trial, -1, 1);
    int form = trial % 3;
    check_pad(x, pads, trial % 2 ? 0.f : -2.5f, form, trial % 4 == 0);
    if (trial % 5 == 0) {
      dd_tensor *xi = th_tensor_i64(nd, dims, NULL);
      for (int64_t i = 0; i < dd_tensor_numel(xi); i++) dd_i64(xi)[i] = 3 * i - 7;
      check_pad(xi, pads, 9.f, form, 0);
      dd_tensor_free(xi);
    }
    dd_tensor_free(x);
  }
  /* a large one for the threaded path */
  int64_t dl[] = {1, 32, 60, 60}, pl[] = {0, 0, 2, 3, 0, 0, 1, -4};
  dd_tensor *x = th_random(4, dl, 1, -1, 1);
  check_pad(x, pl, 0.5f, 1, 0);
  dd_tensor_free(x);
}

Test(pad, refuses_other_modes_and_bad_pads) {
  const char *modes[] = {"reflect", "edge", "wrap"};
  for (int k = 0; k < 3; k++) {
    th_node t;
    th_init(&t, "Pad", 2, 1);
    th_attr_string(&t, "mode", modes[k]);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
    cr_assert(strstr(err.msg, modes[k]), "%s", err.msg);
  }
  th_node t;
  th_init(&t, "Pad", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3}, n3[] = {3}, n4[] = {4};
  const int64_t p3[] = {1, 1, 1}, p4[] = {0, -3, 0, -1};
  dd_tensor *in[2] = {th_random(2, dims, 1, -1, 1), th_tensor_i64(1, n3, p3)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE); /* 3 pads for 2 dims */
  dd_tensor_free(in[1]);
  in[1] = th_tensor_i64(1, n4, p4);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE); /* cropped below 0 */
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}

Test(pad, begin_pad_beyond_a_cropped_row) {
  /* [a, b] with pads begin 3, end -4: the output is [v], all padding; the row must not be
   * written past its end (ASan caught this once). */
  int64_t dims[] = {2, 2}, pads[] = {0, 3, 0, -4};
  dd_tensor *x = th_random(2, dims, 1, -1, 1);
  check_pad(x, pads, 7.f, 0, 0);
  check_pad(x, pads, 7.f, 1, 0);
  int64_t pads2[] = {0, -3, 0, 2}; /* crop past the start: the row is all padding */
  check_pad(x, pads2, 7.f, 1, 0);
  dd_tensor_free(x);
}
