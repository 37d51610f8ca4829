/* Conv: forward and input gradient against a naive direct convolution written from the
 * ONNX definition, finite-difference gradient checks, and the errors infer must report. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"

typedef struct conv_case {
  const char *what;
  int one_d;                 /* input N,C,W (H = 1) */
  int64_t n, c, h, w, m, kh, kw, group, sh, sw, dh, dw;
  int64_t pt, pl, pb, pr;    /* explicit pads (NOTSET) */
  const char *auto_pad;      /* NULL: NOTSET with the pads above */
  int bias;
  int kernel_attr;           /* also write kernel_shape */
} conv_case;

static const conv_case cases[] = {
    {"3x3 pad 1 with bias", 0, 2, 3, 7, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 1, 0},
    {"1x1 fast path", 0, 2, 5, 6, 7, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, NULL, 1, 1},
    {"1x1 grouped", 0, 1, 4, 5, 5, 6, 1, 1, 2, 1, 1, 1, 1, 0, 0, 0, 0, NULL, 0, 0},
    {"1x1 stride 2 (im2col)", 0, 1, 3, 7, 6, 2, 1, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, NULL, 1, 0},
    {"groups, stride 2, asymmetric pads", 0, 2, 4, 9, 8, 6, 3, 3, 2, 2, 2, 1, 1, 1, 0, 2, 1,
     NULL, 1, 0},
    {"depthwise", 0, 2, 4, 6, 7, 4, 3, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 1, 0},
    {"depthwise x2, stride 2, dilation 2", 0, 1, 3, 9, 10, 6, 3, 3, 3, 2, 2, 2, 2, 2, 1, 0, 2,
     NULL, 0, 0},
    {"dilations, 5x3 kernel", 0, 1, 2, 12, 9, 3, 5, 3, 1, 1, 2, 2, 3, 3, 1, 0, 2, NULL, 1, 1},
    {"SAME_UPPER even kernel stride 2", 0, 1, 3, 7, 8, 2, 4, 4, 1, 2, 2, 1, 1, 0, 0, 0, 0,
     "SAME_UPPER", 1, 0},
    {"SAME_LOWER 2x2", 0, 2, 2, 5, 6, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0, 0, "SAME_LOWER", 0, 0},
    {"VALID stride 3", 0, 1, 3, 10, 11, 2, 3, 2, 1, 3, 3, 1, 1, 0, 0, 0, 0, "VALID", 1, 0},
    {"1-D stride 2 pads (1,2)", 1, 2, 3, 1, 11, 4, 1, 3, 1, 1, 2, 1, 1, 0, 1, 0, 2, NULL, 1, 1},
    {"1-D grouped dilated SAME_UPPER", 1, 1, 4, 1, 13, 2, 1, 3, 2, 1, 1, 1, 2, 0, 0, 0, 0,
     "SAME_UPPER", 0, 0},
    {"larger, threads", 0, 2, 16, 13, 14, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 1, 0},
    /* 576 x 4200 columns exceed the 2M-float im2col block: two blocks of output rows */
    {"blocks of output rows", 0, 1, 64, 70, 60, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 1, 0},
    /* The fused path packs 32 output columns at a time; with AVX-512, stride 1 or 2 without
     * dilation loads each input row once for all the taps of a kernel row (up to 17 taps at
     * stride 1, 33 at stride 2), other shapes take the per-tap path. */
    {"conv1-like 7x7 stride 2 pad 3, odd sizes", 0, 1, 3, 45, 67, 16, 7, 7, 1, 2, 2, 1, 1, 3, 3, 3,
     3, NULL, 1, 0},
    {"5x5 pad 2, 400 rows (chunks of 256 split a kernel row)", 0, 1, 16, 19, 37, 8, 5, 5, 1, 1,
     1, 1, 1, 2, 2, 2, 2, NULL, 1, 0},
    {"7x7 stride 2 on an input narrower than the kernel", 0, 2, 2, 6, 5, 3, 7, 7, 1, 2, 2, 1, 1,
     3, 3, 3, 3, NULL, 0, 0},
    {"one output column: blocks span 32 output rows", 0, 1, 3, 70, 3, 4, 3, 3, 1, 2, 2, 1, 1, 1,
     0, 1, 0, NULL, 1, 0},
    {"stride 2 down, 1 across, 1x17 taps (the longest stride-1 row)", 0, 1, 2, 9, 40, 3, 2, 17,
     1, 2, 1, 1, 1, 1, 8, 0, 5, NULL, 1, 0},
    {"1x18 taps at stride 1 (per-tap path)", 0, 1, 2, 5, 41, 3, 1, 18, 1, 1, 1, 1, 1, 0, 9, 0,
     4, NULL, 0, 0},
    {"1-D 33 taps stride 2 (the longest stride-2 row)", 1, 1, 3, 1, 101, 4, 1, 33, 1, 1, 2, 1,
     1, 0, 16, 0, 7, NULL, 1, 1},
    {"1-D 35 taps stride 2 (per-tap path)", 1, 1, 2, 1, 90, 3, 1, 35, 1, 1, 2, 1, 1, 0, 17, 0,
     17, NULL, 0, 1},
    {"5x5 stride 2 across, 1 down, dilation 2 down", 0, 1, 4, 23, 50, 5, 5, 5, 1, 1, 2, 2, 1, 4,
     2, 3, 1, NULL, 1, 0},
    {"5 channels, 3x3 stride 1 grouped", 0, 1, 10, 33, 41, 6, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1,
     NULL, 1, 0},
    /* 300 output channels: too many rows for the stage buffer, written in place */
    {"300 output channels, 2x3 stride 2", 0, 1, 2, 9, 70, 300, 2, 3, 1, 2, 2, 1, 1, 1, 1, 0, 1,
     NULL, 1, 0},
    /* GoogLeNet's inception_4c/5x5 and 4a/5x5 at a 224-pixel input */
    {"4c/5x5: 24 to 64 channels, 14x14, pad 2", 0, 1, 24, 14, 14, 64, 5, 5, 1, 1, 1, 1, 1, 2, 2,
     2, 2, NULL, 1, 0},
    {"4a/5x5: 16 to 48 channels, 14x14, pad 2", 0, 1, 16, 14, 14, 48, 5, 5, 1, 1, 1, 1, 1, 2, 2,
     2, 2, NULL, 1, 0},
    /* 16 x 511 x 521 floats (17 MB): streamed past the caches, planes not 64-byte aligned */
    {"large output streamed, 1x1 stride 2", 0, 1, 1, 1021, 1041, 16, 1, 1, 1, 2, 2, 1, 1, 0, 0,
     0, 0, NULL, 1, 0},
    /* Depthwise through ops/depthwise.c: channel counts that are not multiples of 16, odd
     * planes, strides 1 and 2 (and 2 down, 1 across), asymmetric pads, dilation, kernels of
     * ConvNeXt (7x7) and EfficientNet (5x5); a plane taller than one band of its stage
     * buffer; and geometries it refuses (6 stride phases, 17x17 = 289 taps), which take the
     * direct loops. */
    {"depthwise 7x7 pad 3, 17 channels, 9x19", 0, 1, 17, 9, 19, 17, 7, 7, 17, 1, 1, 1, 1, 3, 3, 3,
     3, NULL, 1, 0},
    {"depthwise 5x5 stride 2 pad 2, 5 channels, 31x29", 0, 1, 5, 31, 29, 5, 5, 5, 5, 2, 2, 1, 1,
     2, 2, 2, 2, NULL, 1, 1},
    {"depthwise 3x3 stride 2 down 1 across, pads (0,1,2,0)", 0, 1, 3, 20, 19, 3, 3, 3, 3, 2, 1,
     1, 1, 0, 1, 2, 0, NULL, 0, 0},
    {"depthwise x3 3x3 dilation 2 SAME_UPPER", 0, 1, 2, 15, 18, 6, 3, 3, 2, 1, 1, 2, 2, 0, 0, 0,
     0, "SAME_UPPER", 1, 0},
    {"depthwise 3x3 on 150 x 333: several bands", 0, 1, 2, 150, 333, 2, 3, 3, 2, 1, 1, 1, 1, 1,
     1, 1, 1, NULL, 1, 0},
    {"depthwise 3x2 stride 3x2 (6 phases: direct loops)", 0, 1, 3, 13, 14, 3, 3, 2, 3, 3, 2, 1,
     1, 1, 0, 1, 1, NULL, 1, 0},
    {"depthwise 17x17 (289 taps: direct loops)", 0, 1, 2, 20, 21, 2, 17, 17, 2, 1, 1, 1, 1, 8, 8,
     8, 8, NULL, 1, 0},
    {"1-D depthwise 5 taps stride 2", 1, 2, 4, 1, 41, 4, 1, 5, 4, 1, 2, 1, 1, 0, 2, 0, 2, NULL, 1,
     1},
    /* Batches of small images, shared among the threads image by image (batch_parallel in
     * src/ops/conv.c): the training cnn's conv2 on 8 images, and a grouped stride-2 one */
    {"batch of 8: the cnn's conv2, 8 to 16 channels, 16x16 pad 1", 0, 8, 8, 16, 16, 16, 3, 3, 1,
     1, 1, 1, 1, 1, 1, 1, 1, NULL, 1, 0},
    {"batch of 12: 2 groups, 3x3 stride 2 pad 1, 25x23", 0, 12, 6, 25, 23, 8, 3, 3, 2, 2, 2, 1, 1,
     1, 1, 1, 1, NULL, 1, 0},
    /* The direct 3x3 path (AVX-512 builds; 3x3 stride 1 pad 1, at most 16 channels in and 32
     * out): the cnn's conv1 (32 columns: two vectors), rows of 37 columns (a masked third
     * vector) with 13 channels (a partial block of 8), 16-column rows with 24 channels (blocks
     * of 16, the second partial), a 3-column row with 32 channels, and a 1x1 image (every tap
     * but the centre in the padding) */
    {"direct: the cnn's conv1, 3 to 8 channels, 32x32, batch 3", 0, 3, 3, 32, 32, 8, 3, 3, 1, 1,
     1, 1, 1, 1, 1, 1, 1, NULL, 1, 0},
    {"direct: 5 to 13 channels, 9x37, batch 2", 0, 2, 5, 9, 37, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
     1, NULL, 1, 1},
    {"direct: 16 to 24 channels, 6x16", 0, 1, 16, 6, 16, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     NULL, 0, 0},
    {"direct: 7 to 32 channels, 5x3", 0, 2, 7, 5, 3, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 1,
     0},
    {"direct: 2 to 5 channels, a 1x1 image, batch 4", 0, 4, 2, 1, 1, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1,
     1, 1, NULL, 1, 0},
    /* The direct path at stride 2 (AVX-512 builds; 3x3 stride 2 pad 1, at most 16 channels in
     * and 32 out, forward): a photo's first convolution to 32 channels (two blocks of 16) on
     * odd sizes, the bottom and right pads 0 on even ones, 20 channels (a partial second
     * block) with a second vector of output columns, and images of 2x3 */
    {"direct stride 2: 3 to 32 channels, 45x67", 0, 1, 3, 45, 67, 32, 3, 3, 1, 2, 2, 1, 1, 1, 1,
     1, 1, NULL, 1, 0},
    {"direct stride 2: 3 to 16 channels, 16x34, pads (1,1,0,0), batch 2", 0, 2, 3, 16, 34, 16, 3,
     3, 1, 2, 2, 1, 1, 1, 1, 0, 0, NULL, 0, 0},
    {"direct stride 2: 4 to 20 channels, 7x65", 0, 1, 4, 7, 65, 20, 3, 3, 1, 2, 2, 1, 1, 1, 1, 1,
     1, NULL, 1, 1},
    {"direct stride 2: 2 to 12 channels, 2x3 images, batch 2", 0, 2, 2, 2, 3, 12, 3, 3, 1, 2, 2,
     1, 1, 1, 1, 1, 1, NULL, 1, 0},
    /* Groups shared among the threads group by group (group_parallel): RegNet's 3x3, 6 groups
     * of 8 channels on one 14x14 image */
    {"one image, 6 groups of 8 channels, 3x3 pad 1, 14x14", 0, 1, 48, 14, 14, 48, 3, 3, 6, 1, 1,
     1, 1, 1, 1, 1, 1, NULL, 1, 0},
};

/* Pads and output size as the ONNX Conv definition gives them, computed independently of
 * the library's window code. */
static void expected_geometry(const conv_case *k, int64_t *pt, int64_t *pl, int64_t *ho,
                              int64_t *wo) {
  int64_t in[2] = {k->h, k->w}, ks[2] = {k->kh, k->kw}, s[2] = {k->sh, k->sw},
          d[2] = {k->dh, k->dw}, pbeg[2] = {k->pt, k->pl}, pend[2] = {k->pb, k->pr}, out[2];
  for (int i = 0; i < 2; i++) {
    int64_t ke = (ks[i] - 1) * d[i] + 1;
    if (k->auto_pad && !strncmp(k->auto_pad, "SAME", 4)) {
      out[i] = (in[i] + s[i] - 1) / s[i];
      int64_t total = (out[i] - 1) * s[i] + ke - in[i];
      if (total < 0) total = 0;
      pbeg[i] = !strcmp(k->auto_pad, "SAME_UPPER") ? total / 2 : (total + 1) / 2;
    } else if (k->auto_pad) { /* VALID */
      pbeg[i] = 0;
      out[i] = (in[i] - ke) / s[i] + 1;
    } else {
      out[i] = (in[i] + pbeg[i] + pend[i] - ke) / s[i] + 1;
    }
  }
  *pt = pbeg[0], *pl = pbeg[1], *ho = out[0], *wo = out[1];
}

static void setup_node(th_node *t, const conv_case *k) {
  th_init(t, "Conv", k->bias ? 3 : 2, 1);
  int nsp = k->one_d ? 1 : 2;
  int64_t strides[2] = {k->sh, k->sw}, dil[2] = {k->dh, k->dw}, ker[2] = {k->kh, k->kw};
  int64_t pads[4] = {k->pt, k->pl, k->pb, k->pr};
  int64_t pads1[2] = {k->pl, k->pr};
  int first = k->one_d ? 1 : 0;
  th_attr_ints(t, "strides", nsp, strides + first);
  th_attr_ints(t, "dilations", nsp, dil + first);
  if (k->group != 1) th_attr_int(t, "group", k->group);
  if (k->kernel_attr) th_attr_ints(t, "kernel_shape", nsp, ker + first);
  if (k->auto_pad)
    th_attr_string(t, "auto_pad", k->auto_pad);
  else
    th_attr_ints(t, "pads", 2 * nsp, k->one_d ? pads1 : pads);
}

/* The inputs X, W, B of a case (B NULL without bias). */
static void make_inputs(const conv_case *k, uint64_t seed, dd_tensor **in) {
  int64_t xd4[4] = {k->n, k->c, k->h, k->w}, xd3[3] = {k->n, k->c, k->w};
  int64_t wd4[4] = {k->m, k->c / k->group, k->kh, k->kw}, wd3[3] = {k->m, k->c / k->group, k->kw};
  in[0] = k->one_d ? th_random(3, xd3, seed, -1, 1) : th_random(4, xd4, seed, -1, 1);
  in[1] = k->one_d ? th_random(3, wd3, seed + 1, -1, 1) : th_random(4, wd4, seed + 1, -1, 1);
  in[2] = k->bias ? th_random(1, &k->m, seed + 2, -1, 1) : NULL;
}

/* y[n][m][oh][ow] = b[m] + sum over the group's channels and taps, straight from the
 * definition; dx and dw are the adjoints of the same loops applied to dy (when dy is not
 * NULL), summed in double (a weight's gradient sums over every output position) and then
 * added to what dx and dw hold. */
static void naive_conv(const conv_case *k, const float *x, const float *w, const float *b,
                       float *y, const float *dy, float *dx, float *dw) {
  int64_t pt, pl, ho, wo;
  expected_geometry(k, &pt, &pl, &ho, &wo);
  int64_t cg = k->c / k->group, mg = k->m / k->group;
  int64_t nx = k->n * k->c * k->h * k->w, nw = k->m * cg * k->kh * k->kw;
  double *gx = dy ? calloc((size_t)nx, sizeof *gx) : NULL;
  double *gw = dy ? calloc((size_t)nw, sizeof *gw) : NULL;
  cr_assert(!dy || (gx && gw));
  for (int64_t n = 0; n < k->n; n++)
    for (int64_t m = 0; m < k->m; m++)
      for (int64_t oh = 0; oh < ho; oh++)
        for (int64_t ow = 0; ow < wo; ow++) {
          int64_t yi = ((n * k->m + m) * ho + oh) * wo + ow;
          double acc = b ? b[m] : 0;
          for (int64_t c = 0; c < cg; c++)
            for (int64_t i = 0; i < k->kh; i++)
              for (int64_t j = 0; j < k->kw; j++) {
                int64_t ih = oh * k->sh - pt + i * k->dh, iw = ow * k->sw - pl + j * k->dw;
                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
                int64_t ci = (m / mg) * cg + c;
                int64_t xi = ((n * k->c + ci) * k->h + ih) * k->w + iw;
                int64_t wi = ((m * cg + c) * k->kh + i) * k->kw + j;
                acc += (double)x[xi] * w[wi];
                if (dy) {
                  gx[xi] += (double)w[wi] * dy[yi];
                  gw[wi] += (double)x[xi] * dy[yi];
                }
              }
          if (y) y[yi] = (float)acc;
        }
  for (int64_t i = 0; dy && i < nx; i++) dx[i] = (float)(dx[i] + gx[i]);
  for (int64_t i = 0; dy && i < nw; i++) dw[i] = (float)(dw[i] + gw[i]);
  free(gx);
  free(gw);
}

/* Runs the op's backward with the given dout into gradients of X and W starting at
 * `initial`, or with `fresh` as NaN garbage handed over fresh (dd_op_call.fresh, as the
 * planner hands a gradient to its first writer); the gradient of W is left in *dw. */
static dd_tensor *run_backward(th_node *t, dd_tensor **in, dd_tensor *y, dd_tensor *dy,
                               float initial, int fresh, dd_tensor **dw) {
  dd_err err;
  dd_tensor shape, *outs[1] = {&shape};
  memset(&shape, 0, sizeof shape);
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
  dd_tensor *dx = th_tensor(in[0]->shape.ndim, in[0]->shape.d);
  if (fresh) initial = NAN;
  for (int64_t i = 0; i < dd_tensor_numel(dx); i++) dd_f32(dx)[i] = initial;
  *dw = th_tensor(in[1]->shape.ndim, in[1]->shape.d);
  for (int64_t i = 0; i < dd_tensor_numel(*dw); i++) dd_f32(*dw)[i] = initial;
  dd_op_call call = {0, fresh ? 3 : 0}; /* din[0] and din[1] */
  dd_tensor *din[3] = {dx, *dw, NULL};
  const dd_tensor *dout[1] = {dy}, *out[1] = {y};
  void *s = scratch ? malloc(scratch) : NULL;
  dd_op_backward(&t->node, (const dd_tensor *const *)in, out, dout, din, s, &call);
  free(s);
  return dx;
}

/* Forward with the Relu after it folded in (dd_op_call.relu_out, as a plan sets it):
 * y = max(0, conv). */
static dd_tensor *run_forward_relu(th_node *t, dd_tensor **in) {
  dd_err err;
  dd_tensor shape, *outs[1] = {&shape};
  memset(&shape, 0, sizeof shape);
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
  dd_tensor *y = th_tensor(shape.shape.ndim, shape.shape.d);
  for (int64_t i = 0; i < dd_tensor_numel(y); i++) dd_f32(y)[i] = NAN;
  dd_op_call call = {1, 0};
  void *s = scratch ? malloc(scratch) : NULL;
  dd_op_forward(&t->node, (const dd_tensor *const *)in, &y, s, &call);
  free(s);
  return y;
}

/* Forward (plain and with a folded Relu), data and weight gradients of one case against
 * naive_conv. */
static void check_case(const conv_case *k, uint64_t ci) {
  th_node t;
  setup_node(&t, k);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s: %s", k->what, err.msg);
  dd_tensor *in[3], *y[1];
  make_inputs(k, 100 + ci, in);
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s: %s", k->what, err.msg);
  int64_t pt, pl, ho, wo;
  expected_geometry(k, &pt, &pl, &ho, &wo);
  int64_t e4[4] = {k->n, k->m, ho, wo}, e3[3] = {k->n, k->m, wo};
  dd_shape es = k->one_d ? dd_shape_make(3, e3) : dd_shape_make(4, e4);
  cr_assert(dd_shape_eq(&y[0]->shape, &es), "%s: wrong output shape", k->what);
  dd_tensor *ref = th_tensor(es.ndim, es.d);
  naive_conv(k, dd_f32(in[0]), dd_f32(in[1]), in[2] ? dd_f32(in[2]) : NULL, dd_f32(ref), NULL,
             NULL, NULL);
  double scale = fmax(1.0, th_max_abs(ref));
  double e = th_max_abs_diff(y[0], ref);
  cr_assert(e <= 1e-5 * scale, "%s: forward differs by %g (scale %g)", k->what, e, scale);
  dd_tensor *yr = run_forward_relu(&t, in);
  int64_t negatives = 0;
  for (int64_t i = 0; i < dd_tensor_numel(ref); i++) {
    float want = dd_f32(ref)[i] > 0.f ? dd_f32(ref)[i] : 0.f;
    negatives += dd_f32(ref)[i] < 0.f;
    cr_assert(fabs(dd_f32(yr)[i] - want) <= 1e-5 * scale && !(dd_f32(yr)[i] < 0.f),
              "%s: forward with the Relu folded in, at %lld: %g vs %g", k->what, (long long)i,
              dd_f32(yr)[i], want);
  }
  cr_assert_gt(negatives, 0, "%s: no negative output to rectify", k->what);
  dd_tensor_free(yr);

  /* Backward accumulates: start the gradient at 0.5 and expect 0.5 + the adjoint. */
  dd_tensor *dy = th_random(es.ndim, es.d, 900 + ci, -1, 1);
  dd_tensor *dw, *dx = run_backward(&t, in, y[0], dy, 0.5f, 0, &dw);
  dd_tensor *dref = th_tensor(in[0]->shape.ndim, in[0]->shape.d);
  dd_tensor *dwref = th_tensor(in[1]->shape.ndim, in[1]->shape.d);
  for (int64_t i = 0; i < dd_tensor_numel(dref); i++) dd_f32(dref)[i] = 0.5f;
  for (int64_t i = 0; i < dd_tensor_numel(dwref); i++) dd_f32(dwref)[i] = 0.5f;
  naive_conv(k, dd_f32(in[0]), dd_f32(in[1]), NULL, NULL, dd_f32(dy), dd_f32(dref),
             dd_f32(dwref));
  double de = th_max_abs_diff(dx, dref);
  cr_assert(de <= 1e-5 * fmax(1.0, th_max_abs(dref)), "%s: backward differs by %g", k->what,
            de);
  double dwe = th_max_abs_diff(dw, dwref);
  cr_assert(dwe <= 1e-5 * fmax(1.0, th_max_abs(dwref)), "%s: weight gradient differs by %g",
            k->what, dwe);
  /* Into fresh (garbage) gradients: the same, from zero. */
  dd_tensor_free(dx);
  dd_tensor_free(dw);
  dx = run_backward(&t, in, y[0], dy, 0.f, 1, &dw);
  for (int64_t i = 0; i < dd_tensor_numel(dref); i++) dd_f32(dref)[i] = 0.f;
  for (int64_t i = 0; i < dd_tensor_numel(dwref); i++) dd_f32(dwref)[i] = 0.f;
  naive_conv(k, dd_f32(in[0]), dd_f32(in[1]), NULL, NULL, dd_f32(dy), dd_f32(dref),
             dd_f32(dwref));
  de = th_max_abs_diff(dx, dref);
  cr_assert(de <= 1e-5 * fmax(1.0, th_max_abs(dref)), "%s: fresh backward differs by %g",
            k->what, de);
  dwe = th_max_abs_diff(dw, dwref);
  cr_assert(dwe <= 1e-5 * fmax(1.0, th_max_abs(dwref)),
            "%s: fresh weight gradient differs by %g", k->what, dwe);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  dd_tensor_free(y[0]);
  dd_tensor_free(ref);
  dd_tensor_free(dy);
  dd_tensor_free(dx);
  dd_tensor_free(dref);
  dd_tensor_free(dw);
  dd_tensor_free(dwref);
  free(t.node.params);
}

static void conv_matches_naive_reference_forward_and_backward_on(void);
Test(conv, matches_naive_reference_forward_and_backward) {
  th_each_kernels(conv_matches_naive_reference_forward_and_backward_on);
}
static void conv_matches_naive_reference_forward_and_backward_on(void) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) check_case(&cases[ci], ci);
}

/* The data gradient splits its work so that no two threads add into one element of dx: by
 * input channel when they share evenly (or there are many), by input rows otherwise.  Cases
 * large enough to run in parallel, with thread counts that take each split. */
static void conv_parallel_splits_match_naive_reference_on(void);
Test(conv, parallel_splits_match_naive_reference) {
  th_each_kernels(conv_parallel_splits_match_naive_reference_on);
}
static void conv_parallel_splits_match_naive_reference_on(void) {
  /* 3 channels, 16, groups of 5, 24, streamed, the two batches and the groups shared out */
  static const int picks[] = {15, 16, 24, 26, 28, 37, 38, 39, 40, 44};
  static const int threads[] = {2, 3, 4};
  for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
    omp_set_num_threads(threads[ti]);
    for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++)
      check_case(&cases[picks[pi]], 40 + pi);
  }
}

/* Batches shared among the threads image by image, and groups group by group, give bit for
 * bit the output and the gradients of one thread (training's same-seed-same-weights promise
 * rests on it). */
/* a (one thread) and b (two threads) bit-equal on the AVX-512 kernels; on the generic ones,
 * whose products run in OpenBLAS with sums that depend on its thread count (README,
 * "Reproducible": OpenBLAS's Zen kernels give a stride-2 data gradient other bits on two
 * threads), equal to float rounding: every element within 1e-5 of the larger magnitude. */
static void same_or_close(const dd_tensor *a, const dd_tensor *b, const char *what,
                          const char *which) {
  size_t n = (size_t)dd_tensor_numel(a);
  cr_assert_eq((size_t)dd_tensor_numel(b), n, "%s: %s", what, which);
  const float *p = dd_f32(a), *q = dd_f32(b);
  if (th_kernels_now == DD_KERNELS_AVX512) {
    cr_assert_eq(memcmp(p, q, n * sizeof(float)), 0, "%s: %s", what, which);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    double m = fabs(p[i]) > fabs(q[i]) ? fabs(p[i]) : fabs(q[i]);
    cr_assert_leq(fabs((double)p[i] - q[i]), 1e-5 * (m > 1 ? m : 1), "%s: %s[%zu] %g vs %g",
                  what, which, i, p[i], q[i]);
  }
}

static void conv_batch_parallel_is_bit_exact_across_thread_counts_on(void);
Test(conv, batch_parallel_is_bit_exact_across_thread_counts) {
  th_each_kernels(conv_batch_parallel_is_bit_exact_across_thread_counts_on);
}
static void conv_batch_parallel_is_bit_exact_across_thread_counts_on(void) {
  static const int picks[] = {37, 38, 39, 40, 44};
  for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
    const conv_case *k = &cases[picks[pi]];
    dd_tensor *y[2], *dx[2], *dw[2], *in[3];
    make_inputs(k, 500 + pi, in);
    for (int r = 0; r < 2; r++) {
      omp_set_num_threads(r ? 2 : 1);
      th_node t;
      setup_node(&t, k);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0, "%s: %s", k->what, err.msg);
      dd_tensor *ys[1];
      cr_assert_eq(th_forward(&t, in, ys, &err), 0, "%s: %s", k->what, err.msg);
      y[r] = ys[0];
      dd_tensor *dy = th_random(y[r]->shape.ndim, y[r]->shape.d, 600 + pi, -1, 1);
      dx[r] = run_backward(&t, in, y[r], dy, 0.25f, 0, &dw[r]);
      dd_tensor_free(dy);
      free(t.node.params);
    }
    omp_set_num_threads(2);
    same_or_close(y[0], y[1], k->what, "y");
    same_or_close(dx[0], dx[1], k->what, "dx");
    same_or_close(dw[0], dw[1], k->what, "dw");
    for (int r = 0; r < 2; r++) {
      dd_tensor_free(y[r]);
      dd_tensor_free(dx[r]);
      dd_tensor_free(dw[r]);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  }
}

static void conv_gradient_matches_finite_differences_on(void);
Test(conv, gradient_matches_finite_differences) {
  th_each_kernels(conv_gradient_matches_finite_differences_on);
}
static void conv_gradient_matches_finite_differences_on(void) {
  static const int picks[] = {0, 2, 4, 6, 8, 11, 29, 30, 31, 32, 34, 36, 39, 40, 41, 42, 43};
  for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
    const conv_case *k = &cases[picks[pi]];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[3];
    make_inputs(k, 300 + pi, in);
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, 11 + pi, &skipped);
    cr_assert(e >= 0 && e < 1e-2, "%s: relative error %g", k->what, e);
    cr_assert_eq(skipped, 0, "%s: %d coordinates skipped in a linear op", k->what, skipped);
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    free(t.node.params);
  }
}

/* The weight and bias gradients, for plans where W is computed rather than constant. */
static void conv_weight_and_bias_gradients_match_finite_differences_on(void);
Test(conv, weight_and_bias_gradients_match_finite_differences) {
  th_each_kernels(conv_weight_and_bias_gradients_match_finite_differences_on);
}
static void conv_weight_and_bias_gradients_match_finite_differences_on(void) {
  static const int picks[] = {0, 1, 4, 6, 29, 30, 31, 32, 36, 39, 40, 41, 42, 43};
  for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
    const conv_case *k = &cases[picks[pi]];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[3];
    make_inputs(k, 500 + pi, in);
    for (int which = 1; which < (k->bias ? 3 : 2); which++) {
      int skipped = -1;
      double e = th_gradcheck(&t, in, which, 1e-2f, 21 + pi, &skipped);
      cr_assert(e >= 0 && e < 1e-2, "%s: input %d relative error %g", k->what, which, e);
      cr_assert_eq(skipped, 0);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    free(t.node.params);
  }
}

Test(conv, infer_rejects_bad_shapes_with_clear_errors) {
  dd_err err;
  th_node t;
  int64_t xd[4] = {1, 4, 5, 5}, wd[4] = {6, 2, 3, 3}, bad_w[4] = {6, 3, 3, 3};
  dd_tensor *x = th_tensor(4, xd), *w = th_tensor(4, wd), *wb = th_tensor(4, bad_w);

  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 2);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, w}, &err), 0, "%s", err.msg);

  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 3);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, w}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "group"), "%s", err.msg);

  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 2);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, wb}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "input channels per group"), "%s", err.msg);

  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 2);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){3, 2});
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, w}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "kernel_shape"), "%s", err.msg);

  int64_t big[4] = {6, 2, 7, 7};
  dd_tensor *wbig = th_tensor(4, big);
  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 2);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, wbig}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "larger than the padded input"), "%s", err.msg);

  int64_t bd[1] = {5};
  dd_tensor *b = th_tensor(1, bd);
  th_init(&t, "Conv", 3, 1);
  th_attr_int(&t, "group", 2);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, w, b}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "bias"), "%s", err.msg);

  int64_t x5[5] = {1, 2, 4, 4, 4}, w5[5] = {2, 2, 1, 1, 1};
  dd_tensor *x3d = th_tensor(5, x5), *w3d = th_tensor(5, w5);
  th_init(&t, "Conv", 2, 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x3d, w3d}, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "3-D"), "%s", err.msg);

  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 2);
  th_attr_ints(&t, "strides", 3, (int64_t[]){1, 1, 1});
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){x, w}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "strides"), "%s", err.msg);

  th_init(&t, "Conv", 2, 1);
  th_attr_string(&t, "auto_pad", "SAME");
  cr_assert_neq(th_setup(&t, &err), 0);
  cr_assert(strstr(err.msg, "auto_pad"), "%s", err.msg);

  th_init(&t, "Conv", 2, 1);
  th_attr_int(&t, "group", 0);
  cr_assert_neq(th_setup(&t, &err), 0);

  dd_tensor *all[] = {x, w, wb, wbig, b, x3d, w3d};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dd_tensor_free(all[i]);
}

Test(conv, flops_count_multiply_adds_twice) {
  th_node t;
  setup_node(&t, &cases[4]);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  dd_tensor *in[3], *y[1];
  make_inputs(&cases[4], 1, in);
  cr_assert_eq(th_forward(&t, in, y, &err), 0);
  const conv_case *k = &cases[4];
  int64_t expect = 2 * k->n * k->m * y[0]->shape.d[2] * y[0]->shape.d[3] * (k->c / k->group) *
                   k->kh * k->kw;
  cr_assert_eq(t.node.op->flops(&t.node, (const dd_tensor *const *)in,
                                (const dd_tensor *const *)y), expect);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}
