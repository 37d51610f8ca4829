/* Resize against a naive reference written from the ONNX reference implementation
 * (onnx/backend/test/case/node/resize.py): per dim, the input coordinate of each output
 * coordinate, its two nearest positions in the edge-padded input (ties to the smaller), and
 * their coefficients; the N-d value is the product over dims.  Plus finite-difference and
 * adjoint checks of the gradient, the refusals, and a network of the data-movement ops as
 * PyTorch exports it, against torch autograd. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dream/graph.h"
#include "helper_files.h"
#include "helper_ops.h"
#include "helper_torch.h"

typedef struct ref_cfg {
  const char *mode, *ctm, *nearest;
} ref_cfg;

static double ref_coord(const char *ctm, double x, double scale, int64_t n) {
  double len = scale * (double)n;
  if (!strcmp(ctm, "align_corners")) return len == 1 ? 0 : x * (double)(n - 1) / (len - 1);
  if (!strcmp(ctm, "asymmetric")) return x / scale;
  if (!strcmp(ctm, "pytorch_half_pixel")) return len == 1 ? -0.5 : (x + 0.5) / scale - 0.5;
  if (!strcmp(ctm, "tf_half_pixel_for_nn")) return (x + 0.5) / scale;
  return (x + 0.5) / scale - 0.5; /* half_pixel */
}

/* The two input positions output coordinate o reads along a dim, and their coefficients. */
static void ref_taps(const ref_cfg *c, int64_t o, double scale, int64_t n, int64_t idx[2],
                     double coef[2]) {
  double x = ref_coord(c->ctm, (double)o, scale, n);
  /* the input padded by one element at each end ('edge'): position p is x + 1 */
  double p = x + 1;
  int64_t best[2] = {-1, -1};
  for (int64_t i = 0; i < n + 2; i++) { /* the two nearest, ties to the smaller index */
    double d = fabs(p - (double)i);
    if (best[0] < 0 || d < fabs(p - (double)best[0])) {
      best[1] = best[0];
      best[0] = i;
    } else if (best[1] < 0 || d < fabs(p - (double)best[1])) {
      best[1] = i;
    }
  }
  if (best[0] > best[1]) {
    int64_t t = best[0];
    best[0] = best[1];
    best[1] = t;
  }
  for (int k = 0; k < 2; k++) {
    int64_t q = best[k] - 1;
    idx[k] = q < 0 ? 0 : q > n - 1 ? n - 1 : q;
  }
  double r = x == floor(x) ? 1 : x - floor(x);
  if (!strcmp(c->mode, "linear")) {
    coef[0] = 1 - r;
    coef[1] = r;
    return;
  }
  const char *nm = c->nearest ? c->nearest : "round_prefer_floor"; /* the default */
  int up;
  if (r == 1) up = 1;
  else if (!strcmp(nm, "round_prefer_ceil")) up = r >= 0.5;
  else if (!strcmp(nm, "floor")) up = 0;
  else if (!strcmp(nm, "ceil")) up = 1;
  else up = r > 0.5; /* round_prefer_floor */
  coef[0] = !up;
  coef[1] = up;
}

/* Reference output (float64) for x resized to `out` with per-dim scales. */
static double *ref_resize(const ref_cfg *c, const dd_tensor *x, const dd_shape *out,
                          const double *scale) {
  int nd = x->shape.ndim;
  int64_t n = dd_shape_numel(out);
  double *y = calloc((size_t)(n ? n : 1), sizeof *y);
  for (int64_t e = 0; e < n; e++) {
    int64_t oi[DD_MAX_DIMS], idx[DD_MAX_DIMS][2], rem = e;
    double coef[DD_MAX_DIMS][2];
    for (int i = nd - 1; i >= 0; i--) {
      oi[i] = rem % out->d[i];
      rem /= out->d[i];
      ref_taps(c, oi[i], scale[i], x->shape.d[i], idx[i], coef[i]);
    }
    double acc = 0;
    for (int corner = 0; corner < (1 << nd); corner++) {
      double w = 1;
      int64_t src = 0;
      for (int i = 0; i < nd; i++) {
        int b = (corner >> i) & 1;
        w *= coef[i][b];
        src = src * x->shape.d[i] + idx[i][b];
      }
      if (w != 0)
        acc += w * (x->dtype == DD_F32   ? dd_f32(x)[src]
                    : x->dtype == DD_I64 ? (double)dd_i64(x)[src]
                                         : (double)dd_bool(x)[src]);
    }
    y[e] = acc;
  }
  return y;
}

static dd_tensor *f32_vec(int n, const float *v) {
  int64_t d[] = {n};
  dd_tensor *t = th_tensor(1, d);
  memcpy(t->data, v, (size_t)n * sizeof *v);
  return t;
}

/* A Resize node with the given attributes (NULL: absent) and inputs X, roi, scales[, sizes]. */
static void resize_node(th_node *t, const ref_cfg *c, int n_in) {
  th_init(t, "Resize", n_in, 1);
  if (c->mode) th_attr_string(t, "mode", c->mode);
  if (c->ctm) th_attr_string(t, "coordinate_transformation_mode", c->ctm);
  if (c->nearest) th_attr_string(t, "nearest_mode", c->nearest);
}

/* For Resize, linear in X: <dy, y> = <dx, x> with backward accumulating onto a non-zero dx. */
static void adjoint_ok(th_node *t, dd_tensor **in, const char *what) {
  dd_err err;
  dd_tensor *y[1];
  cr_assert_eq(th_forward(t, in, y, &err), 0, "%s: %s", what, err.msg);
  dd_tensor *dy = th_random(y[0]->shape.ndim, y[0]->shape.d, 3, -1, 1);
  dd_tensor *dx = th_random(in[0]->shape.ndim, in[0]->shape.d, 4, -1, 1), *dx0;
  cr_assert_eq(dd_tensor_clone(dx, &dx0, &err), 0);
  dd_tensor ys = {0}, *outs[1] = {&ys}, *din[4] = {dx};
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
  void *sc = scratch ? calloc(scratch, 1) : NULL;
  const dd_tensor *dys[1] = {dy};
  t->node.op->backward(&t->node, (const dd_tensor *const *)in, (const dd_tensor *const *)y, dys,
                       din, sc);
  free(sc);
  double lhs = 0, rhs = 0, mag = 0;
  for (int64_t i = 0; i < dd_tensor_numel(dy); i++) {
    lhs += (double)dd_f32(dy)[i] * dd_f32(y[0])[i];
    mag += fabs((double)dd_f32(dy)[i] * dd_f32(y[0])[i]);
  }
  for (int64_t i = 0; i < dd_tensor_numel(dx); i++)
    rhs += ((double)dd_f32(dx)[i] - dd_f32(dx0)[i]) * dd_f32(in[0])[i];
  cr_assert(fabs(lhs - rhs) <= 1e-5 * (mag + 1e-6), "%s: <dy, y> = %.9g but <dx, x> = %.9g",
            what, lhs, rhs);
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  dd_tensor_free(dx);
  dd_tensor_free(dx0);
}

/* Runs Resize on x with `scales` (n values) or, when sizes != NULL, `sizes`, and compares
 * with the reference: nearest exactly, linear within float rounding. */
static void check_resize(const ref_cfg *c, const dd_tensor *x, const float *scales,
                         const int64_t *sizes, int grad) {
  int nd = x->shape.ndim;
  th_node t;
  resize_node(&t, c, sizes ? 4 : 3);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t nn[] = {nd};
  dd_tensor *in[4] = {(dd_tensor *)x, NULL, sizes ? NULL : f32_vec(nd, scales),
                      sizes ? th_tensor_i64(1, nn, sizes) : NULL};
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  dd_shape want = {.ndim = nd};
  double scale[DD_MAX_DIMS];
  for (int i = 0; i < nd; i++) {
    int64_t n = x->shape.d[i];
    want.d[i] = sizes ? sizes[i] : (int64_t)floor((double)scales[i] * (double)n);
    scale[i] = sizes ? (double)sizes[i] / (double)n : (double)scales[i];
  }
  char a[64], b[64];
  cr_assert(dd_shape_eq(&y[0]->shape, &want), "%s %s: shape %s, expected %s", c->mode, c->ctm,
            dd_shape_str(&y[0]->shape, a, sizeof a), dd_shape_str(&want, b, sizeof b));
  cr_assert_eq(y[0]->dtype, x->dtype);
  double *r = ref_resize(c, x, &want, scale);
  int linear = !strcmp(c->mode, "linear");
  for (int64_t e = 0; e < dd_tensor_numel(y[0]); e++) {
    double got = x->dtype == DD_F32   ? dd_f32(y[0])[e]
                 : x->dtype == DD_I64 ? (double)dd_i64(y[0])[e]
                                      : (double)dd_bool(y[0])[e];
    double tol = linear ? 1e-5 * (1 + fabs(r[e])) : 0;
    cr_assert(fabs(got - r[e]) <= tol, "%s %s %s %s: element %lld is %.9g, the reference %.9g",
              c->mode, c->ctm, c->nearest ? c->nearest : "", sizes ? "sizes" : "scales",
              (long long)e, got, r[e]);
  }
  free(r);
  if (grad) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, 77, &skipped);
    cr_assert(e >= 0 && e < 1e-4, "%s %s: gradient relative error %g", c->mode, c->ctm, e);
    cr_assert_eq(skipped, 0, "%s %s: the interpolation has no kinks in X", c->mode, c->ctm);
    adjoint_ok(&t, in, c->ctm);
  }
  dd_tensor_free(in[2]);
  dd_tensor_free(in[3]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                   "asymmetric", "tf_half_pixel_for_nn"};
static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                       "ceil"};

/* Each resize of a 4-D input: scales (up, down, mixed, N-linear over the channels too) and
 * sizes (up, down to 1, mixed). */
static const float scale4[][4] = {
    {1, 1, 2, 3}, {1, 1, 0.6f, 0.8f}, {1, 1, 1.7f, 0.5f}, {1, 2, 1.5f, 0.75f}, {2, 1, 1, 1.25f}};
static const int64_t size4[][4] = {{2, 3, 7, 3}, {2, 3, 1, 1}, {2, 3, 3, 9}, {2, 5, 2, 4}};

Test(resize, every_mode_against_the_reference) {
  int64_t dims[] = {2, 3, 5, 4};
  dd_tensor *x = th_random(4, dims, 1, -1, 1);
  for (int m = 0; m < 5; m++) /* nearest with each rounding, then linear */
    for (int k = 0; k < 5; k++) {
      ref_cfg c = {m < 4 ? "nearest" : "linear", ctms[k], m < 4 ? nearests[m] : NULL};
      for (size_t s = 0; s < sizeof scale4 / sizeof scale4[0]; s++)
        check_resize(&c, x, scale4[s], NULL, s == 3 && (m == 0 || m == 4));
      for (size_t s = 0; s < sizeof size4 / sizeof size4[0]; s++)
        check_resize(&c, x, NULL, size4[s], s == 0 && (m == 1 || m == 4));
    }
  dd_tensor_free(x);
}

Test(resize, defaults_other_ranks_and_int64) {
  /* no attributes: nearest, half_pixel, round_prefer_floor */
  ref_cfg none = {NULL, NULL, NULL}, dflt = {"nearest", "half_pixel", "round_prefer_floor"};
  int64_t d4[] = {1, 1, 4, 5};
  dd_tensor *x = th_random(4, d4, 2, -1, 1);
  const float up[] = {1, 1, 2.5f, 1.5f};
  th_node t;
  resize_node(&t, &none, 3);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor *in[3] = {x, NULL, f32_vec(4, up)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  double scale[] = {1, 1, 2.5, 1.5};
  double *r = ref_resize(&dflt, x, &y[0]->shape, scale);
  for (int64_t e = 0; e < dd_tensor_numel(y[0]); e++) cr_assert_eq(dd_f32(y[0])[e], (float)r[e]);
  free(r);
  dd_tensor_free(y[0]);
  dd_tensor_free(in[2]);
  free(t.node.params);
  dd_tensor_free(x);
  /* 1-D and 3-D, linear over every dim */
  for (int k = 0; k < 5; k++) {
    ref_cfg lin = {"linear", ctms[k], NULL}, near = {"nearest", ctms[k], "round_prefer_ceil"};
    int64_t d1[] = {6}, d3[] = {2, 3, 7};
    dd_tensor *x1 = th_random(1, d1, 3, -1, 1), *x3 = th_random(3, d3, 4, -1, 1);
    const float s1[] = {1.5f}, s3[] = {2, 0.7f, 1.3f};
    const int64_t z3[] = {3, 5, 4};
    check_resize(&lin, x1, s1, NULL, 1);
    check_resize(&near, x1, s1, NULL, 0);
    check_resize(&lin, x3, s3, NULL, k == 2);
    check_resize(&lin, x3, NULL, z3, 0);
    check_resize(&near, x3, NULL, z3, 1);
    dd_tensor_free(x1);
    dd_tensor_free(x3);
  }
  /* nearest moves int64 values exactly */
  int64_t d2[] = {3, 4};
  dd_tensor *xi = th_tensor_i64(2, d2, NULL);
  for (int i = 0; i < 12; i++) dd_i64(xi)[i] = 1000000007LL * i - 3;
  for (int m = 0; m < 4; m++) {
    ref_cfg c = {"nearest", "asymmetric", nearests[m]};
    const int64_t z[] = {5, 7};
    check_resize(&c, xi, NULL, z, 0);
  }
  dd_tensor_free(xi);
  /* ... and bool masks */
  dd_shape bs = dd_shape_make(2, d2);
  dd_tensor *xb = NULL;
  cr_assert_eq(dd_tensor_new(DD_BOOL, &bs, 0, &xb, NULL), 0);
  for (int i = 0; i < 12; i++) dd_bool(xb)[i] = (uint8_t)(i % 3 == 1 || i == 4);
  for (int m = 0; m < 4; m++) {
    ref_cfg c = {"nearest", "half_pixel", nearests[m]};
    const int64_t z[] = {7, 3};
    const float sc[] = {1.5f, 2.5f};
    check_resize(&c, xb, NULL, z, 0);
    check_resize(&c, xb, sc, NULL, 0);
  }
  dd_tensor_free(xb);
}

/* The opset 11 form: empty roi and scales tensors stand for absent inputs. */
Test(resize, empty_scales_mean_sizes) {
  ref_cfg c = {"nearest", "tf_half_pixel_for_nn", NULL}, ref = c;
  ref.nearest = "round_prefer_floor";
  th_node t;
  resize_node(&t, &c, 4);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t d[] = {1, 1, 4, 4}, d0[] = {0}, n4[] = {4}, z[] = {1, 1, 3, 2};
  dd_tensor *x = th_random(4, d, 5, -1, 1);
  dd_tensor *in[4] = {x, th_tensor(1, d0), th_tensor(1, d0), th_tensor_i64(1, n4, z)}, *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  double scale[] = {1, 1, 0.75, 0.5};
  double *r = ref_resize(&ref, x, &y[0]->shape, scale);
  cr_assert_eq(dd_tensor_numel(y[0]), 6);
  for (int e = 0; e < 6; e++) cr_assert_eq(dd_f32(y[0])[e], (float)r[e]);
  free(r);
  dd_tensor_free(y[0]);
  for (int i = 0; i < 4; i++) dd_tensor_free(in[i]);
  free(t.node.params);
}

/* Large enough for the threads: forward against the reference, backward by the adjoint
 * (split over the channels, and serial when the channels resize too). */
Test(resize, large_threaded) {
  int64_t d[] = {1, 8, 40, 40};
  dd_tensor *x = th_random(4, d, 6, -1, 1);
  const int64_t z[] = {1, 8, 75, 61}, zc[] = {1, 11, 50, 30};
  for (int k = 0; k < 2; k++) {
    ref_cfg c = {k ? "nearest" : "linear", "half_pixel", NULL};
    check_resize(&c, x, NULL, z, 0);
    check_resize(&c, x, NULL, zc, 0);
    for (int j = 0; j < 2; j++) {
      th_node t;
      resize_node(&t, &c, 4);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
      int64_t nn[] = {4};
      dd_tensor *in[4] = {x, NULL, NULL, th_tensor_i64(1, nn, j ? zc : z)};
      adjoint_ok(&t, in, c.mode);
      dd_tensor_free(in[3]);
      free(t.node.params);
    }
  }
  dd_tensor_free(x);
}

Test(resize, refuses_what_it_does_not_do) {
  dd_err err;
  th_node t;
  /* at init: cubic, tf_crop_and_resize, opset 10, opset 18's attributes */
  ref_cfg cubic = {"cubic", NULL, NULL}, crop = {"linear", "tf_crop_and_resize", NULL};
  resize_node(&t, &cubic, 3);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "cubic"), "%s", err.msg);
  resize_node(&t, &crop, 4);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "tf_crop_and_resize"), "%s", err.msg);
  ref_cfg lin = {"linear", NULL, NULL};
  resize_node(&t, &lin, 2);
  t.node.opset = 10;
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "opset 10"), "%s", err.msg);
  resize_node(&t, &lin, 3);
  int64_t ax[] = {2, 3};
  th_attr_ints(&t, "axes", 2, ax);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "axes"), "%s", err.msg);

  /* at infer: scales and sizes that do not fit, runtime scales, int64 with linear */
  int64_t d[] = {1, 1, 2, 3}, n4[] = {4}, d0[] = {0, 1, 2, 3};
  dd_tensor *x = th_random(4, d, 1, -1, 1), *x0 = th_tensor(4, d0), *y[1];
  const float s4[] = {1, 1, 2, 2}, s3[] = {1, 2, 2}, sneg[] = {1, 1, -2, 2};
  const int64_t z4[] = {1, 1, 4, 6}, zneg[] = {1, 1, -1, 6}, zfrom0[] = {2, 1, 2, 3};
  const struct {
    int scales, sizes, empty_x;
    const float *s;
    const int64_t *z;
    int want;
    const char *says;
  } cases[] = {
      {1, 1, 0, s4, z4, DD_EFORMAT, "not both"},
      {0, 0, 0, NULL, NULL, DD_EFORMAT, "scales or sizes"},
      {3, 0, 0, s3, NULL, DD_ESHAPE, "3 values"},
      {1, 0, 0, sneg, NULL, DD_EFORMAT, "positive"},
      {0, 1, 0, NULL, zneg, DD_ESHAPE, "negative"},
      {0, 1, 1, NULL, zfrom0, DD_ESHAPE, "from 0"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    resize_node(&t, &lin, 4);
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[4] = {cases[k].empty_x ? x0 : x, NULL, NULL, NULL};
    if (cases[k].scales) in[2] = f32_vec(cases[k].scales == 3 ? 3 : 4, cases[k].s);
    if (cases[k].sizes) in[3] = th_tensor_i64(1, n4, cases[k].z);
    cr_assert_eq(th_forward(&t, in, y, &err), cases[k].want, "case %zu: %s", k, err.msg);
    cr_assert(strstr(err.msg, cases[k].says), "case %zu: %s", k, err.msg);
    dd_tensor_free(in[2]);
    dd_tensor_free(in[3]);
    free(t.node.params);
  }
  resize_node(&t, &lin, 3);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor s = {.dtype = DD_F32, .shape = {.ndim = 1, .d = {4}}}; /* computed at run time */
  dd_tensor *in[3] = {x, NULL, &s};
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  dd_tensor *xi = th_tensor_i64(4, d, NULL);
  in[0] = xi;
  in[2] = f32_vec(4, s4);
  cr_assert_eq(th_forward(&t, in, y, &err), DD_EUNSUPPORTED); /* linear on int64 */
  cr_assert(strstr(err.msg, "int64"), "%s", err.msg);
  dd_tensor_free(in[2]);
  dd_tensor_free(xi);
  free(t.node.params);
  dd_tensor_free(x);
  dd_tensor_free(x0);
}

/* ---- against PyTorch ----
 * tests/ref/layout_torch.py exports a small network of Resize (nearest and bilinear, as torch
 * writes them), Pad (reflect, edge), Split, Expand and Tile at opsets 11 and 13, with the
 * output and the input gradient of 1/2 sum(y^2) by torch autograd in float64. */

Test(resize_torch, layout_network_matches_torch_autograd, .init = th_tmpdir_setup,
     .fini = th_tmpdir_teardown, .timeout = 300) {
  th_torch_ref ref;
  th_torch_reference("layout_torch.py", &ref);
  const dd_tensor *x = ref.x, *want_y = ref.y, *want_g = ref.grad;
  char path[256];
  dd_err err;
  const int opsets[] = {11, 13};
  for (int k = 0; k < 2; k++) {
    dd_model *m;
    snprintf(path, sizeof path, "%s/opset%d.onnx", th_tmpdir, opsets[k]);
    cr_assert_eq(dd_model_load(path, &m, &err), 0, "%s", err.msg);
    int y = dd_model_find(m, "y");
    cr_assert_geq(y, 0);
    for (int reuse = 0; reuse < 2; reuse++) {
      dd_binding b = {dd_model_input(m), x->shape, NULL};
      dd_plan *p;
      cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, DD_PLAN_GRAD | (reuse ? DD_PLAN_REUSE : 0), 0,
                               &p, &err), 0, "%s", err.msg);
      memcpy(dd_plan_tensor(p, b.value)->data, x->data,
             (size_t)dd_tensor_numel(x) * sizeof(float));
      dd_plan_forward(p);
      const dd_tensor *ours = dd_plan_tensor(p, y);
      cr_assert(dd_shape_eq(&ours->shape, &want_y->shape), "opset %d: output shape", opsets[k]);
      double fe = th_max_abs_diff(ours, want_y) / th_max_abs(want_y);
      dd_plan_zero_grad(p);
      dd_tensor *gy = dd_plan_grad(p, y);
      memcpy(gy->data, ours->data, (size_t)dd_tensor_numel(ours) * sizeof(float));
      dd_plan_backward(p);
      double ge = th_rel_l2(dd_plan_grad(p, b.value), want_g);
      cr_log_info("layout network, opset %d%s: forward max|d|/max|y| %.3g, input gradient "
                  "relative L2 %.3g", opsets[k], reuse ? " (memory reuse)" : "", fe, ge);
      cr_expect(fe <= 1e-5, "opset %d: forward error %g > 1e-5", opsets[k], fe);
      cr_expect(ge <= 1e-5, "opset %d: gradient error %g > 1e-5", opsets[k], ge);
      dd_plan_free(p);
    }
    dd_model_free(m);
  }
  th_torch_ref_free(&ref);
}
