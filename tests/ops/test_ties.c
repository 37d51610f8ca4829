/* Ties (issue #13): under DD_PLAN_EXACT (dd_op_call.exact) every kernel computes each output
 * element by the same sequence of operations wherever it lies, so a constant input gives
 * bit-equal outputs at every position its padding does not reach -- an exact tie stays a
 * tie, as in float64.  Each kernel's vector bodies against scalar tails and blocked against
 * edge paths are exercised by sizes that are multiples of nothing (and by the sgemm's 8 x 32
 * tiles and 256-long k blocks); the exact paths are checked against naive double references. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"
#include "ops/sgemm.h"

/* Infer, then forward with the call's hints (exact, relu). */
static dd_tensor *forward_call(th_node *t, dd_tensor **in, int exact, int relu) {
  dd_err err;
  dd_tensor shape, *outs[1] = {&shape};
  memset(&shape, 0, sizeof shape);
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0,
               "%s", err.msg);
  dd_tensor *y = th_tensor(shape.shape.ndim, shape.shape.d);
  for (int64_t i = 0; i < dd_tensor_numel(y); i++) dd_f32(y)[i] = NAN;
  dd_op_call call = {relu, 0, 0, exact};
  void *s = scratch ? malloc(scratch) : NULL;
  dd_op_forward(&t->node, (const dd_tensor *const *)in, &y, s, &call);
  free(s);
  return y;
}

/* Backward of out[0] with dy into a fresh zero dx, with the call's exact hint. */
static dd_tensor *backward_call(th_node *t, dd_tensor **in, dd_tensor *y, dd_tensor *dy,
                                int exact) {
  dd_err err;
  dd_tensor shape, *outs[1] = {&shape};
  memset(&shape, 0, sizeof shape);
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0,
               "%s", err.msg);
  dd_tensor *dx = th_tensor(in[0]->shape.ndim, in[0]->shape.d);
  dd_tensor *din[3] = {dx, NULL, NULL};
  const dd_tensor *dout[1] = {dy}, *out[1] = {y};
  dd_op_call call = {0, 0, 0, exact};
  void *s = scratch ? malloc(scratch) : NULL;
  dd_op_backward(&t->node, (const dd_tensor *const *)in, out, dout, din, s, &call);
  free(s);
  return dx;
}

/* NCHW with each channel the constant v[c % nv]. */
static dd_tensor *channel_constants(const int64_t *dims, const float *v, int nv) {
  dd_tensor *t = th_tensor(4, dims);
  int64_t plane = dims[2] * dims[3];
  for (int64_t i = 0; i < dd_tensor_numel(t); i++) dd_f32(t)[i] = v[i / plane % dims[1] % nv];
  return t;
}

/* Channels of y (N x C x H x W) whose positions [mh, H - mh) x [mw, W - mw) are not all
 * bit-equal to the first of them. */
static int untied_channels(const dd_tensor *y, int64_t mh, int64_t mw) {
  int64_t nc = y->shape.d[0] * y->shape.d[1], h = y->shape.d[2], w = y->shape.d[3];
  cr_assert(h > 2 * mh && w > 2 * mw, "no interior");
  int bad = 0;
  for (int64_t c = 0; c < nc; c++) {
    const float *p = dd_f32(y) + c * h * w, *first = p + mh * w + mw;
    int differs = 0;
    for (int64_t i = mh; i < h - mh; i++)
      for (int64_t j = mw; j < w - mw; j++) differs |= memcmp(p + i * w + j, first, sizeof *p) != 0;
    bad += differs;
  }
  return bad;
}

/* Weights in [-1, 1] whose products with the constants below are inexact: a sum of them
 * rounds, and rounds differently if the order of its terms changes with the position. */
static const float consts[] = {0.7316f, -1.913f, 2.4171f, 0.0931f, -0.55f, 3.3f, 1.1f};

/* naive double convolution, stride s, padding p, no dilation, one group */
static double conv_ref(const dd_tensor *x, const dd_tensor *w, const dd_tensor *b, int64_t s,
                       int64_t p, int64_t m, int64_t oh, int64_t ow) {
  int64_t c = x->shape.d[1], h = x->shape.d[2], wd = x->shape.d[3];
  int64_t kh = w->shape.d[2], kw = w->shape.d[3];
  double acc = b ? dd_f32(b)[m] : 0.0;
  for (int64_t ci = 0; ci < c; ci++)
    for (int64_t i = 0; i < kh; i++)
      for (int64_t j = 0; j < kw; j++) {
        int64_t ih = oh * s - p + i, iw = ow * s - p + j;
        if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
        acc += (double)dd_f32(w)[((m * c + ci) * kh + i) * kw + j] *
               dd_f32(x)[(ci * h + ih) * wd + iw];
      }
  return acc;
}

static void conv_node(th_node *t, int64_t k, int64_t s, int64_t p) {
  th_init(t, "Conv", 3, 1);
  int64_t ks[2] = {k, k}, ss[2] = {s, s}, ps[4] = {p, p, p, p};
  th_attr_ints(t, "kernel_shape", 2, ks);
  th_attr_ints(t, "strides", 2, ss);
  th_attr_ints(t, "pads", 4, ps);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s", err.msg);
}

/* A 3x3 convolution that takes Winograd by default: under exact, the direct path, whose
 * every interior output is bit-equal on a constant input, and which matches a double
 * reference to float rounding; its data gradient too (the direct col2im). */
static void ties_conv_3x3_exact_keeps_ties_on(void);
Test(ties, conv_3x3_exact_keeps_ties) { th_each_kernels(ties_conv_3x3_exact_keeps_ties_on); }
static void ties_conv_3x3_exact_keeps_ties_on(void) {
  th_node t;
  conv_node(&t, 3, 1, 1);
  int64_t xd[4] = {1, 24, 29, 45}, wd[4] = {40, 24, 3, 3}, bd[1] = {40};
  dd_tensor *x = channel_constants(xd, consts, 7);
  dd_tensor *w = th_random(4, wd, 11, -1.f, 1.f), *b = th_random(1, bd, 12, -1.f, 1.f);
  dd_tensor *in[3] = {x, w, b};
  dd_tensor *y = forward_call(&t, in, 1, 0);
  int bad = untied_channels(y, 1, 1);
  dd_tensor *yw = forward_call(&t, in, 0, 0);
  printf("3x3 conv on a constant input: %d of 40 channels untied under exact, %d on the "
         "default (Winograd) path\n", bad, untied_channels(yw, 1, 1));
  cr_expect_eq(bad, 0, "%d channels untied", bad);
  double e = 0;
  for (int64_t m = 0; m < 40; m++)
    for (int64_t i = 0; i < 29; i++)
      for (int64_t j = 0; j < 45; j++) {
        double r = conv_ref(x, w, b, 1, 1, m, i, j);
        double d = fabs(dd_f32(y)[(m * 29 + i) * 45 + j] - r) / (fabs(r) + 1.0);
        e = d > e ? d : e;
      }
  cr_expect_leq(e, 1e-5, "forward error %g", e);
  /* The data gradient (direct col2im) is not bit-equal on a constant dy: a pixel's terms
   * arrive in blocks of 32 output columns, grouped by where the pixel lies among them.  No
   * comparison reads a gradient, so ties do not depend on it; it matches double. */
  dd_tensor *dy = channel_constants(y->shape.d, consts + 2, 5);
  dd_tensor *dx = backward_call(&t, in, y, dy, 1);
  printf("3x3 conv data gradient of a constant dy: %d of 24 channels not bit-equal\n",
         untied_channels(dx, 2, 2));
  /* against the naive adjoint: dx[c][ih][iw] = sum w[m][c][i][j] dy[m][ih + 1 - i][iw + 1 - j] */
  double ge = 0;
  for (int64_t c = 0; c < 24; c++)
    for (int64_t ih = 0; ih < 29; ih++)
      for (int64_t iw = 0; iw < 45; iw++) {
        double acc = 0;
        for (int64_t m = 0; m < 40; m++)
          for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 3; j++) {
              int64_t oh = ih + 1 - i, ow = iw + 1 - j;
              if (oh < 0 || oh >= 29 || ow < 0 || ow >= 45) continue;
              acc += (double)dd_f32(w)[((m * 24 + c) * 3 + i) * 3 + j] *
                     dd_f32(dy)[(m * 29 + oh) * 45 + ow];
            }
        double d = fabs(dd_f32(dx)[(c * 29 + ih) * 45 + iw] - acc) / (fabs(acc) + 1.0);
        ge = d > ge ? d : ge;
      }
  cr_expect_leq(ge, 1e-5, "data gradient error %g", ge);
  dd_tensor *tensors[] = {x, w, b, y, yw, dy, dx};
  for (int i = 0; i < 7; i++) dd_tensor_free(tensors[i]);
}

/* The direct path (im2col blocks of 32 columns through dd_sgemm, a 5x5 kernel of stride 2:
 * no Winograd) on the default path: its interior is bit-equal too, on the AVX-512 kernels.
 * On the generic ones the default product is cblas_sgemm, whose edge blocks sum in another
 * order (sgemm.h, DD_SGEMM_EXACT: OpenBLAS's Zen 3 kernels untie channels here): there only
 * the exact plan keeps ties, and the default one is checked against double instead. */
static void ties_conv_direct_keeps_ties_on(void);
Test(ties, conv_direct_keeps_ties) { th_each_kernels(ties_conv_direct_keeps_ties_on); }
static void ties_conv_direct_keeps_ties_on(void) {
  th_node t;
  conv_node(&t, 5, 2, 2);
  int64_t xd[4] = {1, 19, 41, 67}, wd[4] = {21, 19, 5, 5}, bd[1] = {21};
  dd_tensor *x = channel_constants(xd, consts, 7);
  dd_tensor *w = th_random(4, wd, 21, -1.f, 1.f), *b = th_random(1, bd, 22, -1.f, 1.f);
  dd_tensor *in[3] = {x, w, b};
  for (int exact = 0; exact < 2; exact++) {
    dd_tensor *y = forward_call(&t, in, exact, 1);
    int bad = untied_channels(y, 1, 1);
    if (exact || th_kernels_now == DD_KERNELS_AVX512) cr_expect_eq(bad, 0, "exact %d", exact);
    else printf("5x5 stride-2 conv, generic default path: %d of 21 channels untied\n", bad);
    double e = 0;
    for (int64_t m = 0; m < 21; m++)
      for (int64_t i = 0; i < y->shape.d[2]; i++)
        for (int64_t j = 0; j < y->shape.d[3]; j++) {
          double r = fmax(0.0, conv_ref(x, w, b, 2, 2, m, i, j)); /* relu: forward_call(.., 1) */
          double v = dd_f32(y)[(m * y->shape.d[2] + i) * y->shape.d[3] + j];
          double d = fabs(v - r) / (fabs(r) + 1.0);
          e = d > e ? d : e;
        }
    cr_expect_leq(e, 1e-5, "exact %d: forward error %g", exact, e);
    dd_tensor_free(y);
  }
  dd_tensor_free(x);
  dd_tensor_free(w);
  dd_tensor_free(b);
}

/* A first layer (3 input channels, 7x7, stride 2, GoogLeNet's conv1) under exact sums in
 * double: each output is the double sum rounded once (within half an ulp of the naive double
 * reference, where the float path is several ulp off on pixels of +-128), and the interior
 * of a constant image is bit-equal.  With 3 channels (147 taps) AVX-512 builds take the
 * register-blocked kernel (4 channels x 32 columns; 19 channels and 148 columns leave edges
 * of both); with 4 channels (196 taps, more than its panel holds) the portable loop. */
static void ties_conv_first_layer_exact_in_double_on(void);
Test(ties, conv_first_layer_exact_in_double) {
  th_each_kernels(ties_conv_first_layer_exact_in_double_on);
}
static void ties_conv_first_layer_exact_in_double_on(void) {
  for (int64_t cin = 3; cin <= 4; cin++) {
    th_node t;
    conv_node(&t, 7, 2, 3);
    int64_t xd[4] = {1, cin, 37, 301}, wd[4] = {19, cin, 7, 7}, bd[1] = {19};
    dd_tensor *x = th_random(4, xd, 31, -128.f, 128.f);
    dd_tensor *w = th_random(4, wd, 32, -0.3f, 0.3f), *b = th_random(1, bd, 33, -1.f, 1.f);
    dd_tensor *in[3] = {x, w, b};
    dd_tensor *y = forward_call(&t, in, 1, 0), *yf = forward_call(&t, in, 0, 0);
    int64_t ho = y->shape.d[2], wo = y->shape.d[3];
    double worst = 0, worst_f = 0; /* in ulps of the reference */
    for (int64_t m = 0; m < 19; m++)
      for (int64_t i = 0; i < ho; i++)
        for (int64_t j = 0; j < wo; j++) {
          double r = conv_ref(x, w, b, 2, 3, m, i, j);
          double ulp = nextafterf((float)fabs(r), INFINITY) - (float)fabs(r);
          int64_t o = (m * ho + i) * wo + j;
          double d = fabs(dd_f32(y)[o] - r) / ulp, df = fabs(dd_f32(yf)[o] - r) / ulp;
          worst = d > worst ? d : worst;
          worst_f = df > worst_f ? df : worst_f;
        }
    printf("first layer, %lld channels: exact path within %.3f ulp of double, the float path "
           "%.1f ulp (at its worst, an output near 0 after cancellation)\n", (long long)cin,
           worst, worst_f);
    cr_expect_leq(worst, 0.5 + 1e-6, "%lld channels: %.3f ulp", (long long)cin, worst);
    dd_tensor_free(x);
    x = channel_constants(xd, consts, (int)cin);
    in[0] = x;
    dd_tensor *yc = forward_call(&t, in, 1, 1);
    cr_expect_eq(untied_channels(yc, 2, 2), 0, "%lld channels", (long long)cin);
    dd_tensor *tensors[] = {x, w, b, y, yf, yc};
    for (int i = 0; i < 6; i++) dd_tensor_free(tensors[i]);
  }
}

/* dd_sgemm with DD_SGEMM_EXACT: rows of 8 (and an edge of 5), columns of 32 (and an edge of
 * 11), k in blocks of 256 (and an edge of 44): with every column of B equal, every row of C
 * is bit-equal, with bias, accumulation and the folded Relu; and C matches a double product.
 * (Without AVX-512 and without the flag, cblas_sgemm's column edges round differently.) */
static void ties_sgemm_edges_keep_ties_on(void);
Test(ties, sgemm_edges_keep_ties) { th_each_kernels(ties_sgemm_edges_keep_ties_on); }
static void ties_sgemm_edges_keep_ties_on(void) {
  enum { M = 13, N = 75, K = 300 };
  int64_t ad[2] = {M, K}, bd[1] = {M};
  dd_tensor *a = th_random(2, ad, 41, -1.f, 1.f), *bias = th_random(1, bd, 42, -1.f, 1.f);
  float *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
  for (int64_t k = 0; k < K; k++)
    for (int64_t j = 0; j < N; j++) b[k * N + j] = consts[k % 7] * (1.f + (float)k / 17.f);
  for (int mode = 0; mode < 3; mode++) {
    int acc = (mode == 1 ? DD_SGEMM_ACCUMULATE : mode == 2 ? DD_SGEMM_RELU : 0) | DD_SGEMM_EXACT;
    for (int64_t i = 0; i < M * N; i++) c[i] = 0.37f * (float)(i / N);
    dd_sgemm(M, N, K, dd_f32(a), K, 1, b, N, c, N, acc, mode == 1 ? NULL : dd_f32(bias), 1);
    for (int64_t i = 0; i < M; i++) {
      double r = mode == 1 ? 0.37f * (float)i : dd_f32(bias)[i];
      for (int64_t k = 0; k < K; k++) r += (double)dd_f32(a)[i * K + k] * b[k * N];
      if (mode == 2 && r < 0) r = 0;
      cr_expect_leq(fabs(c[i * N] - r), 1e-5 * (fabs(r) + 1), "mode %d row %lld", mode,
                    (long long)i);
      for (int64_t j = 1; j < N; j++)
        cr_expect(memcmp(c + i * N + j, c + i * N, sizeof *c) == 0,
                  "mode %d: C[%lld][%lld] = %.9g, C[%lld][0] = %.9g", mode, (long long)i,
                  (long long)j, c[i * N + j], (long long)i, c[i * N]);
    }
  }
  free(b);
  free(c);
  dd_tensor_free(a);
  dd_tensor_free(bias);
}

/* LRN across channels, GoogLeNet's parameters, on a spatial size that leaves tails in its
 * chunks of 256 and vectors of 16: forward and backward bit-equal over each channel (LRN has
 * no spatial border). */
static void ties_lrn_keeps_ties_on(void);
Test(ties, lrn_keeps_ties) { th_each_kernels(ties_lrn_keeps_ties_on); }
static void ties_lrn_keeps_ties_on(void) {
  th_node t;
  th_init(&t, "LRN", 1, 1);
  th_attr_int(&t, "size", 5);
  th_attr_float(&t, "alpha", 1e-4f);
  th_attr_float(&t, "beta", 0.75f);
  th_attr_float(&t, "bias", 1.f);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t xd[4] = {2, 13, 37, 29};
  const float big[] = {73.1f, -19.13f, 241.71f, 9.31f, -55.f, 33.3f, 110.1f};
  dd_tensor *x = channel_constants(xd, big, 7), *in[1] = {x};
  for (int exact = 0; exact < 2; exact++) {
    dd_tensor *y = forward_call(&t, in, exact, 0);
    cr_expect_eq(untied_channels(y, 0, 0), 0, "forward, exact %d", exact);
    dd_tensor *dy = channel_constants(xd, consts, 5);
    dd_tensor *dx = backward_call(&t, in, y, dy, exact);
    cr_expect_eq(untied_channels(dx, 0, 0), 0, "backward, exact %d", exact);
    dd_tensor_free(y);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
  }
  dd_tensor_free(x);
}

/* Pools on a constant input: max and average (with and without the padding counted) give
 * bit-equal interiors; the max-pool's gradient of a window of ties goes to its first element
 * in row-major order (PyTorch's rule), each window's to one element. */
static void ties_pools_keep_ties_on(void);
Test(ties, pools_keep_ties) { th_each_kernels(ties_pools_keep_ties_on); }
static void ties_pools_keep_ties_on(void) {
  int64_t xd[4] = {1, 5, 23, 37};
  dd_tensor *x = channel_constants(xd, consts, 7), *in[1] = {x};
  const char *ops[] = {"MaxPool", "AveragePool", "AveragePool"};
  for (int k = 0; k < 3; k++) {
    th_node t;
    th_init(&t, ops[k], 1, 1);
    int64_t ks[2] = {3, 3}, ss[2] = {2, 2}, ps[4] = {1, 1, 1, 1};
    th_attr_ints(&t, "kernel_shape", 2, ks);
    th_attr_ints(&t, "strides", 2, ss);
    th_attr_ints(&t, "pads", 4, ps);
    th_attr_int(&t, "ceil_mode", 1);
    if (k == 2) th_attr_int(&t, "count_include_pad", 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *y = forward_call(&t, in, 1, 0);
    cr_expect_eq(untied_channels(y, 1, 1), 0, "%s", ops[k]);
    if (k == 0) {
      dd_tensor *dy = th_tensor(4, y->shape.d);
      for (int64_t i = 0; i < dd_tensor_numel(dy); i++) dd_f32(dy)[i] = 1.f;
      dd_tensor *dx = backward_call(&t, in, y, dy, 1);
      /* window (oh, ow) starts at (2oh - 1, 2ow - 1): its first element inside the image */
      dd_tensor *want = th_tensor(4, xd);
      int64_t ho = y->shape.d[2], wo = y->shape.d[3];
      for (int64_t c = 0; c < 5; c++)
        for (int64_t oh = 0; oh < ho; oh++)
          for (int64_t ow = 0; ow < wo; ow++) {
            int64_t ih = 2 * oh - 1 < 0 ? 0 : 2 * oh - 1, iw = 2 * ow - 1 < 0 ? 0 : 2 * ow - 1;
            dd_f32(want)[(c * 23 + ih) * 37 + iw] += 1.f;
          }
      cr_expect_eq(th_max_abs_diff(dx, want), 0.0, "max-pool tie gradient");
      dd_tensor_free(dy);
      dd_tensor_free(dx);
      dd_tensor_free(want);
    }
    dd_tensor_free(y);
  }
  dd_tensor_free(x);
}
