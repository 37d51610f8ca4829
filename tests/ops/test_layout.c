#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "helper_ops.h"
#include "onnx.pb-c.h"

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
  /* ... nor with an explicit ratio of 0.5 */
  int64_t none[1] = {0};
  dd_tensor *half = th_tensor(0, none);
  dd_f32(half)[0] = 0.5f;
  in[1] = half;
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "ratio 0.5"), "%s", err.msg);
  /* ... but with ratio 0 training keeps every element: the identity (Swin's exports) */
  dd_f32(half)[0] = 0.f;
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert_eq(th_max_abs_diff(in[0], y[0]), 0);
  dd_tensor_free(y[0]);
  dd_tensor_free(half);
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
    else if (x->dtype == DD_BOOL) cr_assert_eq(dd_bool(y[0])[o], dd_bool(x)[src]);
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
  const char *modes[] = {"wrap", "symmetric"};
  for (int k = 0; k < 2; k++) {
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

/* ---- the adjoint test for ops linear in in[0] ----
 * With random output gradients dy_k for every output, backward must give dx with
 * sum_k <dy_k, y_k> = <dx, x> (y = J x, dx = J^T dy); din starts non-zero, so backward must
 * accumulate.  It checks the gradient of every output, where th_gradcheck sees out[0]. */
static void adjoint_ok(th_node *t, dd_tensor **in, uint64_t seed, const char *what) {
  dd_err err;
  int n_out = t->node.n_out;
  dd_tensor *y[TH_MAX_IO] = {0}, *dy[TH_MAX_IO] = {0};
  cr_assert_eq(th_forward(t, in, y, &err), 0, "%s: %s", what, err.msg);
  double lhs = 0, mag = 0;
  for (int k = 0; k < n_out; k++) {
    dy[k] = th_random(y[k]->shape.ndim, y[k]->shape.d, seed + (uint64_t)k, -1, 1);
    for (int64_t i = 0; i < dd_tensor_numel(y[k]); i++) {
      lhs += (double)dd_f32(dy[k])[i] * dd_f32(y[k])[i];
      mag += fabs((double)dd_f32(dy[k])[i] * dd_f32(y[k])[i]);
    }
  }
  const dd_shape *xs = &in[0]->shape;
  dd_tensor *dx = th_random(xs->ndim, xs->d, seed + 99, -1, 1), *dx0;
  cr_assert_eq(dd_tensor_clone(dx, &dx0, &err), 0);
  dd_tensor *din[TH_MAX_IO] = {dx};
  dd_tensor shapes[TH_MAX_IO];
  dd_tensor *outs[TH_MAX_IO];
  memset(shapes, 0, sizeof shapes);
  for (int k = 0; k < n_out; k++) outs[k] = &shapes[k];
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
  void *sc = scratch ? calloc(scratch, 1) : NULL;
  t->node.op->backward(&t->node, (const dd_tensor *const *)in, (const dd_tensor *const *)y,
                       (const dd_tensor *const *)dy, din, sc);
  free(sc);
  double rhs = 0;
  for (int64_t i = 0; i < dd_tensor_numel(dx); i++)
    rhs += ((double)dd_f32(dx)[i] - dd_f32(dx0)[i]) * dd_f32(in[0])[i];
  cr_assert(fabs(lhs - rhs) <= 1e-5 * (mag + 1e-6), "%s: <dy, y> = %.9g but <dx, x> = %.9g",
            what, lhs, rhs);
  for (int k = 0; k < n_out; k++) {
    dd_tensor_free(y[k]);
    dd_tensor_free(dy[k]);
  }
  dd_tensor_free(dx);
  dd_tensor_free(dx0);
}

/* Compares element o of y with element src of x (either dtype). */
static void same_elem(const dd_tensor *y, int64_t o, const dd_tensor *x, int64_t src,
                      const char *what) {
  if (x->dtype == DD_BOOL)
    cr_assert_eq(dd_bool(y)[o], dd_bool(x)[src], "%s: element %lld", what, (long long)o);
  else if (x->dtype == DD_F32)
    cr_assert_eq(dd_f32(y)[o], dd_f32(x)[src], "%s: element %lld", what, (long long)o);
  else
    cr_assert_eq(dd_i64(y)[o], dd_i64(x)[src], "%s: element %lld", what, (long long)o);
}

static dd_tensor *counting_i64(int nd, const int64_t *dims) {
  dd_tensor *x = th_tensor_i64(nd, dims, NULL);
  for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_i64(x)[i] = 1000003 * i - 7;
  return x;
}

/* A bool tensor of an irregular pattern of 0 and 1. */
static dd_tensor *pattern_bool(int nd, const int64_t *dims) {
  dd_shape s = dd_shape_make(nd, dims);
  dd_tensor *x = NULL;
  cr_assert_eq(dd_tensor_new(DD_BOOL, &s, 0, &x, NULL), 0);
  for (int64_t i = 0; i < dd_tensor_numel(x); i++)
    dd_bool(x)[i] = (uint8_t)((i * 7 + i / 3) % 3 == 0);
  return x;
}

/* ---- Split ---- */

/* form 0: `split` attribute; 1: split input; 2: none (equal parts); 3: num_outputs. */
static void check_split(const dd_tensor *x, int axis, int n, const int64_t *len, int form,
                        int grad) {
  th_node t;
  th_init(&t, "Split", form == 1 ? 2 : 1, n);
  th_attr_int(&t, "axis", axis);
  if (form == 0) th_attr_ints(&t, "split", n, len);
  if (form == 3) th_attr_int(&t, "num_outputs", n);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {n};
  dd_tensor *in[2] = {(dd_tensor *)x, form == 1 ? th_tensor_i64(1, nn, len) : NULL};
  dd_tensor *y[TH_MAX_IO] = {0};
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "form %d: %s", form, err.msg);
  int a = axis < 0 ? axis + x->shape.ndim : axis;
  int64_t off = 0, idx[DD_MAX_DIMS];
  for (int k = 0; k < n; off += len[k], k++) {
    dd_shape want = x->shape;
    want.d[a] = len[k];
    cr_assert(dd_shape_eq(&y[k]->shape, &want), "form %d: output %d has the wrong shape", form, k);
    cr_assert_eq(y[k]->dtype, x->dtype);
    for (int64_t o = 0; o < dd_tensor_numel(y[k]); o++) {
      unravel(&y[k]->shape, o, idx);
      idx[a] += off;
      same_elem(y[k], o, x, ravel(&x->shape, idx), "split");
    }
  }
  if (grad) {
    gradcheck_ok(&t, in, "split");
    adjoint_ok(&t, in, 11, "split");
  }
  for (int k = 0; k < n; k++) dd_tensor_free(y[k]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}

Test(split, every_form_axis_and_dtype) {
  int64_t dims[] = {2, 6, 3, 4};
  dd_tensor *x = th_random(4, dims, 1, -1, 1), *xi = counting_i64(4, dims);
  const int64_t v6[] = {1, 0, 2, 3}, e6[] = {2, 2, 2}, v2[] = {2}, v4[] = {1, 3};
  for (int form = 0; form < 2; form++) {
    check_split(x, 1, 4, v6, form, form == 0);
    check_split(x, -3, 4, v6, form, form == 1);
    check_split(xi, 1, 4, v6, form, 0);
    check_split(x, 0, 1, v2, form, 0);
    check_split(x, 3, 2, v4, form, 1);
    check_split(x, -1, 2, v4, form, 0);
  }
  check_split(x, 1, 3, e6, 2, 1); /* equal parts */
  check_split(xi, 1, 3, e6, 2, 0);
  check_split(x, 1, 3, e6, 3, 0); /* num_outputs dividing evenly */
  const int64_t u7[] = {3, 3, 1};  /* num_outputs 3 of 7: ceil(7/3) each, the rest last */
  int64_t d7[] = {7, 2};
  dd_tensor *x7 = th_random(2, d7, 2, -1, 1);
  check_split(x7, 0, 3, u7, 3, 1);
  /* a large one for the threads */
  int64_t dl[] = {4, 64, 30, 30}, vl[] = {10, 50, 4};
  dd_tensor *xl = th_random(4, dl, 3, -1, 1);
  check_split(xl, 1, 3, vl, 1, 0);
  th_node t;
  th_init(&t, "Split", 1, 4); /* equal parts of 16 */
  th_attr_int(&t, "axis", 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  adjoint_ok(&t, &xl, 5, "split large");
  free(t.node.params);
  dd_tensor_free(xl);
  dd_tensor_free(x7);
  dd_tensor_free(x);
  dd_tensor_free(xi);
}

/* Outputs the graph does not name are NULL in infer and forward; the gradient of the named
 * ones reaches the input, the others' part of it stays as it was. */
Test(split, unnamed_outputs_are_skipped) {
  th_node t;
  th_init(&t, "Split", 1, 3);
  th_attr_int(&t, "axis", 0);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {6, 2};
  dd_tensor *x = th_random(2, dims, 1, -1, 1);
  dd_tensor s1 = {0};
  dd_tensor *outs[3] = {NULL, &s1, NULL};
  const dd_tensor *in[1] = {x};
  size_t scratch = 1;
  cr_assert_eq(t.node.op->infer(&t.node, in, outs, &scratch, &err), 0, "%s", err.msg);
  cr_assert_eq(s1.shape.ndim, 2);
  cr_assert_eq(s1.shape.d[0], 2);
  cr_assert_eq(s1.shape.d[1], 2);
  dd_tensor *y1;
  cr_assert_eq(dd_tensor_new(DD_F32, &s1.shape, 0, &y1, &err), 0);
  outs[1] = y1;
  t.node.op->forward(&t.node, in, outs, NULL);
  for (int i = 0; i < 4; i++) cr_assert_eq(dd_f32(y1)[i], dd_f32(x)[4 + i]);
  dd_tensor *dx = th_tensor(2, dims), *din[1] = {dx};
  const dd_tensor *dout[3] = {NULL, y1, NULL}, *ys[3] = {NULL, y1, NULL};
  t.node.op->backward(&t.node, in, ys, dout, din, NULL);
  for (int i = 0; i < 12; i++)
    cr_assert_eq(dd_f32(dx)[i], i >= 4 && i < 8 ? dd_f32(x)[i] : 0.f, "at %d", i);
  dd_tensor_free(dx);
  dd_tensor_free(y1);
  dd_tensor_free(x);
  free(t.node.params);
}

Test(split, refuses_sizes_that_do_not_fit) {
  int64_t dims[] = {2, 6};
  dd_tensor *x = th_random(2, dims, 1, -1, 1), *y[3];
  dd_err err;
  static const struct {
    int n_out, n;
    int64_t axis, len[3];
    int want;
  } cases[] = {
      {2, 2, 1, {2, 3}, DD_ESHAPE},     /* adds up to 5 */
      {2, 2, 1, {7, -1}, DD_ESHAPE},    /* a negative size */
      {3, 2, 1, {2, 4}, DD_EFORMAT},    /* 2 sizes for 3 outputs */
      {3, -1, 0, {0}, DD_ESHAPE},       /* 2 into 3 equal parts */
      {2, -1, 2, {0}, DD_EFORMAT},      /* axis out of range */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    th_node t;
    th_init(&t, "Split", cases[k].n >= 0 ? 2 : 1, cases[k].n_out);
    th_attr_int(&t, "axis", cases[k].axis);
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t nn[] = {cases[k].n};
    dd_tensor *in[2] = {x, cases[k].n >= 0 ? th_tensor_i64(1, nn, cases[k].len) : NULL};
    cr_assert_eq(th_forward(&t, in, y, &err), cases[k].want, "case %zu: %s", k, err.msg);
    dd_tensor_free(in[1]);
    free(t.node.params);
  }
  /* split both as attribute and as input; num_outputs that is not the output count */
  th_node t;
  th_init(&t, "Split", 2, 2);
  int64_t two[] = {1, 1};
  th_attr_ints(&t, "split", 2, two);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  th_init(&t, "Split", 1, 2);
  th_attr_int(&t, "num_outputs", 3);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  /* a split computed at run time */
  th_init(&t, "Split", 2, 2);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor s = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {2}}}; /* no data */
  dd_tensor *in[2] = {x, &s};
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  free(t.node.params);
  dd_tensor_free(x);
}

/* ---- Expand and Tile ---- */

/* y[o] = x[o % x_dims] with x's dims aligned to the right of y's (missing ones 1). */
static void check_repeated(const dd_tensor *x, const dd_tensor *y, const char *what) {
  int64_t oi[DD_MAX_DIMS], ii[DD_MAX_DIMS];
  int lead = y->shape.ndim - x->shape.ndim;
  for (int64_t o = 0; o < dd_tensor_numel(y); o++) {
    unravel(&y->shape, o, oi);
    for (int i = 0; i < x->shape.ndim; i++) ii[i] = oi[lead + i] % x->shape.d[i];
    same_elem(y, o, x, ravel(&x->shape, ii), what);
  }
}

static void check_expand(const dd_tensor *x, int n, const int64_t *shape, int nd_want,
                         const int64_t *want, int grad) {
  th_node t;
  th_init(&t, "Expand", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {n};
  dd_tensor *in[2] = {(dd_tensor *)x, th_tensor_i64(1, nn, shape)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  dd_shape ws = dd_shape_make(nd_want, want);
  char a[64], b[64];
  cr_assert(dd_shape_eq(&y[0]->shape, &ws), "expand: shape %s, expected %s",
            dd_shape_str(&y[0]->shape, a, sizeof a), dd_shape_str(&ws, b, sizeof b));
  check_repeated(x, y[0], "expand");
  if (grad) {
    gradcheck_ok(&t, in, "expand");
    adjoint_ok(&t, in, 3, "expand");
  }
  dd_tensor_free(y[0]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}

Test(expand, bidirectional_broadcast) {
  int64_t d31[] = {3, 1}, d1[] = {1}, d234[] = {2, 1, 4};
  dd_tensor *x = th_random(2, d31, 1, -1, 1);
  const int64_t s216[] = {2, 1, 6}, w236[] = {2, 3, 6};
  check_expand(x, 3, s216, 3, w236, 1);       /* the conformance example: rank grows */
  const int64_t s34[] = {3, 4}, w34[] = {3, 4};
  check_expand(x, 2, s34, 2, w34, 1);
  const int64_t s1[] = {1}, w31[] = {3, 1};
  check_expand(x, 1, s1, 2, w31, 1);          /* a 1 in the shape keeps the input's dim */
  const int64_t s11[] = {1, 1, 1}, w131[] = {1, 3, 1};
  check_expand(x, 3, s11, 3, w131, 0);
  const int64_t s0[] = {0}, w30[] = {3, 0};
  check_expand(x, 1, s0, 2, w30, 1);          /* broadcast to an empty dim */
  dd_tensor *xs = th_random(1, d1, 2, -1, 1); /* a scalar-like [1] to a volume */
  const int64_t s345[] = {3, 4, 5};
  check_expand(xs, 3, s345, 3, s345, 1);
  dd_tensor *x3 = th_random(3, d234, 3, -1, 1);
  const int64_t s2534[] = {2, 1, 5, 1}, w2254[] = {2, 2, 5, 4};
  check_expand(x3, 4, s2534, 4, w2254, 1);
  dd_tensor *xi = counting_i64(3, d234);      /* shape arithmetic at plan time */
  check_expand(xi, 4, s2534, 4, w2254, 0);
  dd_tensor *s0d = th_tensor(0, NULL);        /* a rank-0 input */
  dd_f32(s0d)[0] = 2.5f;
  const int64_t s23[] = {2, 3};
  check_expand(s0d, 2, s23, 2, s23, 1);
  int64_t dl[] = {1, 32, 1, 40}; /* large: the threads */
  dd_tensor *xl = th_random(4, dl, 4, -1, 1);
  const int64_t sl[] = {2, 32, 30, 40};
  check_expand(xl, 4, sl, 4, sl, 0);
  th_node t;
  th_init(&t, "Expand", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {4};
  dd_tensor *in[2] = {xl, th_tensor_i64(1, nn, sl)};
  adjoint_ok(&t, in, 9, "expand large");
  dd_tensor_free(in[1]);
  free(t.node.params);
  dd_tensor_free(xl);
  dd_tensor_free(s0d);
  dd_tensor_free(xi);
  dd_tensor_free(x3);
  dd_tensor_free(xs);
  dd_tensor_free(x);
}

Test(expand, refuses_incompatible_and_runtime_shapes) {
  int64_t d31[] = {3, 1}, n2[] = {2};
  dd_tensor *x = th_random(2, d31, 1, -1, 1), *y[1];
  th_node t;
  th_init(&t, "Expand", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  const int64_t bad[][2] = {{2, 4}, {3, -2}};
  for (int k = 0; k < 2; k++) {
    dd_tensor *in[2] = {x, th_tensor_i64(1, n2, bad[k])};
    cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE, "case %d", k);
    dd_tensor_free(in[1]);
  }
  dd_tensor s = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {2}}}; /* no data */
  dd_tensor *in[2] = {x, &s};
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  free(t.node.params);
  th_init(&t, "Expand", 1, 1);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  dd_tensor_free(x);
}

static void check_tile(const dd_tensor *x, const int64_t *rep, int grad) {
  int nd = x->shape.ndim;
  th_node t;
  th_init(&t, "Tile", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {nd};
  dd_tensor *in[2] = {(dd_tensor *)x, th_tensor_i64(1, nn, rep)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->shape.ndim, nd);
  for (int i = 0; i < nd; i++) cr_assert_eq(y[0]->shape.d[i], x->shape.d[i] * rep[i]);
  check_repeated(x, y[0], "tile");
  if (grad) {
    gradcheck_ok(&t, in, "tile");
    adjoint_ok(&t, in, 4, "tile");
  }
  dd_tensor_free(y[0]);
  dd_tensor_free(in[1]);
  free(t.node.params);
}

Test(tile, random_repeats_and_int64) {
  uint64_t st = 9;
  for (int trial = 0; trial < 30; trial++) {
    int nd = 1 + (int)(dd_rng_next(&st) % 4);
    int64_t dims[4], rep[4];
    for (int i = 0; i < nd; i++) {
      dims[i] = 1 + (int64_t)(dd_rng_next(&st) % 3);
      rep[i] = (int64_t)(dd_rng_next(&st) % 3) + (trial % 7 ? 1 : 0); /* some 0 */
    }
    dd_tensor *x = th_random(nd, dims, trial, -1, 1);
    check_tile(x, rep, trial % 3 == 0);
    dd_tensor_free(x);
    if (trial % 4 == 0) {
      dd_tensor *xi = counting_i64(nd, dims);
      check_tile(xi, rep, 0);
      dd_tensor_free(xi);
    }
  }
  int64_t d[] = {2, 3, 4, 5}, r[] = {7, 6, 4, 2}; /* the conformance example, with threads */
  dd_tensor *x = th_random(4, d, 1, -1, 1);
  check_tile(x, r, 0);
  th_node t;
  th_init(&t, "Tile", 2, 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {4};
  dd_tensor *in[2] = {x, th_tensor_i64(1, nn, r)};
  adjoint_ok(&t, in, 8, "tile large");
  /* wrong count, negative repeats, a runtime repeats input */
  const int64_t r3[] = {1, 1, 1}, rneg[] = {1, -1, 1, 1};
  dd_tensor *y[1];
  dd_tensor_free(in[1]);
  int64_t n3[] = {3};
  in[1] = th_tensor_i64(1, n3, r3);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  dd_tensor_free(in[1]);
  in[1] = th_tensor_i64(1, nn, rneg);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_ESHAPE);
  dd_tensor_free(in[1]);
  dd_tensor s = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {4}}};
  in[1] = &s;
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  free(t.node.params);
  dd_tensor_free(x);
}

/* ---- Pad, edge and reflect ---- */

/* form 0: pads attribute; 1: pads input; 2: pads and axes inputs (the padded dims only). */
static void check_pad_mode(const dd_tensor *x, const int64_t *pads, const char *mode, int form,
                           int grad) {
  int nd = x->shape.ndim, reflect = !strcmp(mode, "reflect");
  int64_t axes[DD_MAX_DIMS], p2[2 * DD_MAX_DIMS];
  int na = 0;
  for (int i = 0; i < nd; i++)
    if (form < 2 || pads[i] || pads[nd + i]) axes[na++] = i;
  for (int k = 0; k < na; k++) {
    p2[k] = pads[axes[k]];
    p2[na + k] = pads[nd + axes[k]];
  }
  th_node t;
  th_init(&t, "Pad", form == 0 ? 1 : form == 1 ? 2 : 4, 1);
  if (form == 0) th_attr_ints(&t, "pads", 2 * nd, pads);
  th_attr_string(&t, "mode", mode);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t np[] = {form == 2 ? 2 * na : 2 * nd}, nax[] = {na};
  dd_tensor *in[4] = {(dd_tensor *)x, NULL, NULL, NULL}, *y[1];
  if (form) in[1] = th_tensor_i64(1, np, form == 2 ? p2 : pads);
  if (form == 2) in[3] = th_tensor_i64(1, nax, axes);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  int64_t oi[DD_MAX_DIMS];
  for (int i = 0; i < nd; i++)
    cr_assert_eq(y[0]->shape.d[i], x->shape.d[i] + pads[i] + pads[nd + i]);
  for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
    unravel(&y[0]->shape, o, oi);
    for (int i = 0; i < nd; i++) {
      int64_t s = oi[i] - pads[i], n = x->shape.d[i];
      if (reflect) { /* numpy's 'reflect': mirrored about the end elements */
        if (s < 0) s = -s;
        if (s > n - 1) s = 2 * (n - 1) - s;
      } else {
        s = s < 0 ? 0 : s > n - 1 ? n - 1 : s;
      }
      oi[i] = s;
    }
    same_elem(y[0], o, x, ravel(&x->shape, oi), mode);
  }
  if (grad) {
    gradcheck_ok(&t, in, mode);
    adjoint_ok(&t, in, 6, mode);
  }
  for (int k = 1; k < 4; k++) dd_tensor_free(in[k]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(pad, edge_and_reflect_random) {
  uint64_t st = 17;
  for (int trial = 0; trial < 48; trial++) {
    int reflect = trial % 2, nd = 1 + (int)(dd_rng_next(&st) % 4);
    int64_t dims[4], pads[8];
    for (int i = 0; i < nd; i++) dims[i] = 1 + (int64_t)(dd_rng_next(&st) % 4);
    for (int i = 0; i < 2 * nd; i++) {
      int64_t n = dims[i % nd], p = (int64_t)(dd_rng_next(&st) % 5);
      pads[i] = reflect ? p % n : p; /* reflect: smaller than the dim */
    }
    dd_tensor *x = th_random(nd, dims, trial, -1, 1);
    const char *mode = reflect ? "reflect" : "edge";
    check_pad_mode(x, pads, mode, (trial / 2) % 3, trial % 3 == 0);
    if (trial % 5 == 0) {
      dd_tensor *xi = counting_i64(nd, dims);
      check_pad_mode(xi, pads, mode, trial % 3, 0);
      dd_tensor_free(xi);
    }
    dd_tensor_free(x);
  }
  /* the conformance example's shape, and a large one for the threads */
  int64_t d[] = {1, 3, 4, 5}, p[] = {0, 0, 1, 1, 0, 0, 1, 1};
  dd_tensor *x = th_random(4, d, 1, -1, 1);
  check_pad_mode(x, p, "edge", 1, 1);
  check_pad_mode(x, p, "reflect", 1, 1);
  dd_tensor_free(x);
  int64_t dl[] = {1, 16, 60, 60}, pl[] = {0, 2, 3, 5, 0, 1, 4, 2};
  x = th_random(4, dl, 2, -1, 1);
  for (int m = 0; m < 2; m++) {
    const char *mode = m ? "reflect" : "edge";
    check_pad_mode(x, pl, mode, 1, 0);
    th_node t;
    th_init(&t, "Pad", 1, 1);
    th_attr_ints(&t, "pads", 8, pl);
    th_attr_string(&t, "mode", mode);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    adjoint_ok(&t, &x, 12, mode);
    free(t.node.params);
  }
  dd_tensor_free(x);
}

Test(pad, edge_and_reflect_refuse_what_they_cannot_do) {
  static const struct {
    const char *mode;
    int64_t dims[2], pads[4];
    int want;
    const char *says;
  } cases[] = {
      {"reflect", {2, 3}, {0, 3, 0, 0}, DD_ESHAPE, "smaller"}, /* pad = dim */
      {"reflect", {2, 3}, {0, 0, 2, 0}, DD_ESHAPE, "smaller"},
      {"reflect", {2, 3}, {0, -1, 0, 1}, DD_EUNSUPPORTED, "negative"},
      {"edge", {2, 3}, {0, 0, 0, -1}, DD_EUNSUPPORTED, "negative"},
      {"edge", {0, 3}, {1, 0, 0, 0}, DD_ESHAPE, "empty"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    th_node t;
    th_init(&t, "Pad", 2, 1);
    th_attr_string(&t, "mode", cases[k].mode);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t n4[] = {4};
    dd_tensor *in[2] = {th_random(2, cases[k].dims, 1, -1, 1), th_tensor_i64(1, n4, cases[k].pads)};
    dd_tensor *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), cases[k].want, "case %zu: %s", k, err.msg);
    cr_assert(strstr(err.msg, cases[k].says) && strstr(err.msg, cases[k].mode), "%s", err.msg);
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    free(t.node.params);
  }
}

/* ---- the new ops in a plan ----
 * x -> Pad(reflect) -> Split into a, b and an unnamed third part; y = Resize(a) (linear),
 * w = Expand(Tile(b)).  The shape operands are initializers (opset 13).  Everything is linear
 * in x, so with each target's gradient seeded with its value, backward must give dx with
 * <dx, x> = |y|^2 + |w|^2; and plans that reuse memory must give the same dx. */

typedef struct pb_node {
  const char *op;
  const char *in[4], *out[3];
  int n_in, n_out;
  const char *attr_name, *attr_s; /* one string attribute, or none */
  int64_t attr_i;                 /* ... or one int attribute when attr_s is NULL */
} pb_node;

static dd_model *chain_model(void) {
  static const int64_t pads[] = {0, 0, 1, 2, 0, 0, 2, 1}, split[] = {3, 4, 1},
                       sizes[] = {1, 2, 5, 7}, reps[] = {1, 1, 2, 1}, shape[] = {2, 1, 1, 1};
  static const struct {
    const char *name;
    const int64_t *v;
    int64_t n;
  } inits[] = {{"pads", pads, 8}, {"split", split, 3}, {"sizes", sizes, 4}, {"reps", reps, 4},
               {"shape", shape, 4}};
  static const pb_node nodes[] = {
      {"Pad", {"x", "pads"}, {"p"}, 2, 1, "mode", "reflect", 0},
      {"Split", {"p", "split"}, {"a", "b", ""}, 2, 3, "axis", NULL, 2},
      {"Resize", {"a", "", "", "sizes"}, {"y"}, 4, 1, "mode", "linear", 0},
      {"Tile", {"b", "reps"}, {"t"}, 2, 1, NULL, NULL, 0},
      {"Expand", {"t", "shape"}, {"w"}, 2, 1, NULL, NULL, 0},
  };
  enum { NN = sizeof nodes / sizeof nodes[0], NI = sizeof inits / sizeof inits[0] };
  Onnx__ModelProto model;
  Onnx__GraphProto graph;
  Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
  Onnx__NodeProto node[NN], *np[NN];
  Onnx__AttributeProto attr[NN], *ap[NN][1];
  Onnx__TensorProto tp[NI], *tps[NI];
  int64_t dims[NI][1];
  Onnx__ValueInfoProto vin, vy, vw, *vins[1] = {&vin}, *vouts[2] = {&vy, &vw};
  onnx__model_proto__init(&model);
  onnx__graph_proto__init(&graph);
  onnx__operator_set_id_proto__init(&opset);
  opset.has_version = 1;
  opset.version = 13;
  model.has_ir_version = 1;
  model.ir_version = 8;
  model.n_opset_import = 1;
  model.opset_import = opsets;
  model.graph = &graph;
  graph.name = "layout_chain";
  onnx__value_info_proto__init(&vin);
  onnx__value_info_proto__init(&vy);
  onnx__value_info_proto__init(&vw);
  vin.name = "x";
  vy.name = "y";
  vw.name = "w";
  graph.n_input = 1;
  graph.input = vins;
  graph.n_output = 2;
  graph.output = vouts;
  for (int i = 0; i < NI; i++) {
    onnx__tensor_proto__init(&tp[i]);
    tp[i].name = (char *)inits[i].name;
    tp[i].has_data_type = 1;
    tp[i].data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    dims[i][0] = inits[i].n;
    tp[i].n_dims = 1;
    tp[i].dims = dims[i];
    tp[i].n_int64_data = (size_t)inits[i].n;
    tp[i].int64_data = (int64_t *)inits[i].v;
    tps[i] = &tp[i];
  }
  graph.n_initializer = NI;
  graph.initializer = tps;
  for (int i = 0; i < NN; i++) {
    onnx__node_proto__init(&node[i]);
    node[i].op_type = (char *)nodes[i].op;
    node[i].n_input = (size_t)nodes[i].n_in;
    node[i].input = (char **)nodes[i].in;
    node[i].n_output = (size_t)nodes[i].n_out;
    node[i].output = (char **)nodes[i].out;
    if (nodes[i].attr_name) {
      onnx__attribute_proto__init(&attr[i]);
      attr[i].name = (char *)nodes[i].attr_name;
      attr[i].has_type = 1;
      if (nodes[i].attr_s) {
        attr[i].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        attr[i].has_s = 1;
        attr[i].s.data = (uint8_t *)nodes[i].attr_s;
        attr[i].s.len = strlen(nodes[i].attr_s);
      } else {
        attr[i].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        attr[i].has_i = 1;
        attr[i].i = nodes[i].attr_i;
      }
      ap[i][0] = &attr[i];
      node[i].n_attribute = 1;
      node[i].attribute = ap[i];
    }
    np[i] = &node[i];
  }
  graph.n_node = NN;
  graph.node = np;
  size_t len = onnx__model_proto__get_packed_size(&model);
  uint8_t *buf = malloc(len);
  cr_assert_not_null(buf);
  onnx__model_proto__pack(&model, buf);
  dd_model *m = NULL;
  dd_err err = {0};
  cr_assert_eq(dd_model_parse(buf, len, "layout_chain.onnx", &m, &err), 0, "%s", err.msg);
  free(buf);
  return m;
}

Test(layout_plan, split_pad_resize_tile_expand_gradient) {
  dd_model *m = chain_model();
  int64_t xd[] = {1, 2, 5, 6};
  dd_tensor *x = th_random(4, xd, 21, -1, 1), *dx_first = NULL;
  int targets[] = {dd_model_find(m, "y"), dd_model_find(m, "w")};
  cr_assert(targets[0] >= 0 && targets[1] >= 0);
  for (int reuse = 0; reuse < 2; reuse++) {
    dd_binding b = {dd_model_input(m), x->shape, NULL};
    dd_plan *p = NULL;
    dd_err err;
    cr_assert_eq(dd_plan_new(m, &b, 1, targets, 2, DD_PLAN_GRAD | (reuse ? DD_PLAN_REUSE : 0), 0,
                             &p, &err), 0, "%s", err.msg);
    dd_tensor *in = dd_plan_tensor(p, dd_model_input(m));
    memcpy(in->data, x->data, (size_t)dd_tensor_numel(x) * sizeof(float));
    dd_plan_forward(p);
    dd_plan_zero_grad(p);
    double sq = 0;
    for (int t = 0; t < 2; t++) {
      dd_tensor *v = dd_plan_tensor(p, targets[t]), *g = dd_plan_grad(p, targets[t]);
      cr_assert(v && g);
      static const int64_t want[2][4] = {{1, 2, 5, 7}, {2, 2, 8, 9}};
      dd_shape ws = dd_shape_make(4, want[t]);
      cr_assert(dd_shape_eq(&v->shape, &ws), "target %d has the wrong shape", t);
      memcpy(g->data, v->data, (size_t)dd_tensor_numel(v) * sizeof(float));
      for (int64_t i = 0; i < dd_tensor_numel(v); i++) sq += (double)dd_f32(v)[i] * dd_f32(v)[i];
    }
    dd_plan_backward(p);
    dd_tensor *dx = dd_plan_grad(p, dd_model_input(m));
    cr_assert_not_null(dx);
    double dot = 0;
    for (int64_t i = 0; i < dd_tensor_numel(x); i++) dot += (double)dd_f32(dx)[i] * dd_f32(x)[i];
    cr_assert(fabs(dot - sq) <= 1e-5 * sq, "reuse %d: <dx, x> = %.9g but |y|^2 + |w|^2 = %.9g",
              reuse, dot, sq);
    if (!reuse) cr_assert_eq(dd_tensor_clone(dx, &dx_first, &err), 0);
    else cr_assert_eq(th_max_abs_diff(dx, dx_first), 0, "memory reuse changed the gradient");
    dd_plan_free(p);
  }
  dd_tensor_free(dx_first);
  dd_tensor_free(x);
  dd_model_free(m);
}

/* ---- bool ----
 * Masks pass through the layout ops at plan time: every one moves one-byte elements. */
Test(layout_bool, every_op_moves_bool_elements) {
  int64_t dims[] = {2, 6, 3};
  dd_tensor *x = pattern_bool(3, dims);
  dd_err err;
  /* the copies */
  const char *copies[] = {"Identity", "Flatten", "Dropout"};
  for (int k = 0; k < 3; k++) {
    th_node t;
    th_init(&t, copies[k], 1, 1);
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t flat[] = {2, 18};
    same_data(&t, &x, k == 1 ? 2 : 3, k == 1 ? flat : dims, copies[k]);
    free(t.node.params);
  }
  const int64_t perm[] = {2, 0, 1};
  check_transpose(x, perm, 1, 0);
  const int64_t v6[] = {1, 0, 2, 3}, e6[] = {2, 2, 2};
  check_split(x, 1, 4, v6, 1, 0);
  check_split(x, -2, 3, e6, 2, 0);
  const int64_t s4[] = {2, 2, 6, 3}, reps[] = {2, 1, 3};
  check_expand(x, 4, s4, 4, s4, 0);
  check_tile(x, reps, 0);
  const int64_t pads[] = {1, 2, 0, 0, 3, 2};
  check_pad_mode(x, pads, "edge", 1, 0);
  check_pad_mode(x, pads, "reflect", 0, 0);
  /* constant: the value is true where it is non-zero, as attribute and as bool input */
  for (int form = 0; form < 2; form++) {
    th_node t;
    th_init(&t, "Pad", form ? 3 : 1, 1);
    if (!form) {
      th_attr_ints(&t, "pads", 6, pads);
      th_attr_float(&t, "value", 2.f);
    }
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t n6[] = {6};
    dd_tensor *in[3] = {x, form ? th_tensor_i64(1, n6, pads) : NULL, NULL}, *y[1];
    if (form) {
      dd_shape s0 = {0};
      cr_assert_eq(dd_tensor_new(DD_BOOL, &s0, 0, &in[2], &err), 0);
      dd_bool(in[2])[0] = 1;
    }
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[0]->dtype, DD_BOOL);
    int64_t oi[3];
    for (int64_t o = 0; o < dd_tensor_numel(y[0]); o++) {
      unravel(&y[0]->shape, o, oi);
      int inside = 1;
      for (int i = 0; i < 3; i++) {
        oi[i] -= pads[i];
        inside &= oi[i] >= 0 && oi[i] < dims[i];
      }
      cr_assert_eq(dd_bool(y[0])[o], inside ? dd_bool(x)[ravel(&x->shape, oi)] : 1);
    }
    dd_tensor_free(y[0]);
    dd_tensor_free(in[1]);
    dd_tensor_free(in[2]);
    free(t.node.params);
  }
  dd_tensor_free(x);
}
