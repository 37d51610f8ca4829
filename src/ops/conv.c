/* Conv: 1-D and 2-D convolution with groups, strides, dilations, explicit or automatic
 * padding and an optional bias.  Forward and backward side by side.
 *
 * Four paths, chosen from the geometry:
 *   pointwise  1x1 kernel, stride 1, no padding: the NCHW data already is the column matrix,
 *              so each group is one sgemm with no copy.
 *   depthwise  one input channel per group: a direct loop (a gemm with one row would spend
 *              its time on im2col copies).
 *   winograd   3x3, stride 1, no dilation, one group, at least WINO_MIN_CH channels in and
 *              out: Winograd F(4x4, 3x3) (ops/winograd.c); on GoogLeNet's 3x3 layers 1.6x
 *              faster than im2col + sgemm (bench/README.md).
 *   general    im2col of one image and group into the scratch buffer, then one sgemm.
 * The products go through dd_sgemm (ops/sgemm.c), which suits their few-rows, many-columns
 * shapes better than cblas_sgemm does.
 * Backward w.r.t. the data is the transpose of each: W^T * dY then col2im (accumulating);
 * for winograd, the same algorithm on dY with the flipped, transposed kernel.
 * Gradients w.r.t. W and the bias are computed too when the plan asks for them.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "ops/common.h"
#include "ops/sgemm.h"
#include "ops/window.h"
#include "ops/winograd.h"

/* Fewer channels than this leave Winograd's transforms with too little sgemm to pay for.
 * (A build with -DWINO_MIN_CH=1000000 runs im2col everywhere, for comparison.) */
#ifndef WINO_MIN_CH
#define WINO_MIN_CH 8
#endif

typedef struct conv_params {
  dd_window_attrs win;
  int64_t group;
} conv_params;

/* The geometry of one Conv at one input shape; 1-D is a 2-D convolution of height 1. */
typedef struct conv_geom {
  int64_t n, c, m, group, cg, mg;
  int64_t h, w, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo;
  int64_t kcol; /* rows of the column matrix: cg * kh * kw */
  int64_t ocol; /* columns: ho * wo */
  int64_t block; /* output rows per im2col block */
  int pointwise, depthwise, wino;
} conv_geom;

/* The im2col buffer holds at most this many floats (or one output row): large images are
 * convolved in blocks of output rows, which bounds the scratch memory and keeps the block
 * in cache between im2col and the sgemm that reads it. */
#define CONV_COL_MAX (1 << 21)

static int conv_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"auto_pad", "dilations", "group",   "kernel_shape",
                                      "pads",     "strides",   NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  conv_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_window_parse(node, 0, &p->win, err);
  if (!rc) rc = dd_attr_int(node, "group", 1, &p->group, err);
  if (!rc && p->group < 1)
    rc = dd_fail(err, DD_EFORMAT, "group is %lld, expected at least 1", (long long)p->group);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* Validates the shapes of X, W and B against the attributes and fills *g.  err may be NULL
 * once infer has accepted the shapes. */
static int conv_geometry(const conv_params *p, const dd_tensor *x, const dd_tensor *wt,
                         const dd_tensor *b, conv_geom *g, dd_err *err) {
  const dd_shape *xs = &x->shape, *ws = &wt->shape;
  if (xs->ndim == 5)
    return dd_fail(err, DD_EUNSUPPORTED, "3-D convolution (5-D input) is not supported");
  if (xs->ndim != 3 && xs->ndim != 4)
    return dd_fail(err, DD_ESHAPE, "input X has %d dims, expected 3 (N,C,W) or 4 (N,C,H,W)",
                   xs->ndim);
  if (ws->ndim != xs->ndim)
    return dd_fail(err, DD_ESHAPE, "weight W has %d dims, expected %d like the input", ws->ndim,
                   xs->ndim);
  memset(g, 0, sizeof *g);
  g->n = xs->d[0];
  g->c = xs->d[1];
  g->m = ws->d[0];
  g->group = p->group;
  if (g->c % g->group || g->m % g->group)
    return dd_fail(err, DD_ESHAPE,
                   "group %lld does not divide the input channels (%lld) and the output "
                   "channels (%lld)",
                   (long long)g->group, (long long)g->c, (long long)g->m);
  if (g->c < 1 || g->m < 1)
    return dd_fail(err, DD_ESHAPE, "input and output channels must be positive (have %lld, %lld)",
                   (long long)g->c, (long long)g->m);
  g->cg = g->c / g->group;
  g->mg = g->m / g->group;
  if (ws->d[1] != g->cg)
    return dd_fail(err, DD_ESHAPE,
                   "weight W has %lld input channels per group, expected %lld (input channels "
                   "%lld / group %lld)",
                   (long long)ws->d[1], (long long)g->cg, (long long)g->c, (long long)g->group);
  int nsp = xs->ndim - 2;
  const dd_window_attrs *a = &p->win;
  for (int j = 0; j < nsp && a->n_kernel == nsp; j++)
    if (a->kernel[j] != ws->d[2 + j])
      return dd_fail(err, DD_ESHAPE, "kernel_shape[%d] is %lld but the weight W has %lld", j,
                     (long long)a->kernel[j], (long long)ws->d[2 + j]);
  if (b) {
    if (b->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "bias B must be float32");
    if (b->shape.ndim != 1 || b->shape.d[0] != g->m)
      return dd_fail(err, DD_ESHAPE, "bias B must be 1-D of length %lld (the output channels)",
                     (long long)g->m);
  }
  dd_window win;
  int rc = dd_window_resolve(a, nsp, xs->d + 2, ws->d + 2, &win, err);
  if (rc) return rc;
  g->h = win.in[1], g->w = win.in[2];
  g->kh = win.k[1], g->kw = win.k[2];
  g->sh = win.s[1], g->sw = win.s[2];
  g->dh = win.d[1], g->dw = win.d[2];
  g->ph = win.pb[1], g->pw = win.pb[2];
  g->ho = win.out[1], g->wo = win.out[2];
  g->kcol = g->cg * g->kh * g->kw;
  g->ocol = g->ho * g->wo;
  g->pointwise = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 &&
                 g->pw == 0 && win.pe[1] == 0 && win.pe[2] == 0;
  if (g->kcol > INT_MAX || g->ocol > INT_MAX || g->mg > INT_MAX || g->h * g->w > INT_MAX)
    return dd_fail(err, DD_ELIMIT, "the convolution is too large for the BLAS interface");
  g->depthwise = !g->pointwise && g->cg == 1 && g->group > 1;
  g->wino = nsp == 2 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
            g->dw == 1 && g->group == 1 && g->c >= WINO_MIN_CH && g->m >= WINO_MIN_CH;
  g->block = CONV_COL_MAX / (g->kcol * g->wo);
  if (g->block < 1) g->block = 1;
  if (g->block > g->ho) g->block = g->ho;
  return DD_OK;
}

/* The forward convolution and the data gradient as Winograd convolutions of one image. */
static void wino_convs(const conv_geom *g, dd_wino_conv *fw, dd_wino_conv *bw) {
  *fw = (dd_wino_conv){g->c, g->h, g->w, g->m, g->ho, g->wo, g->ph, g->pw, 0};
  *bw = (dd_wino_conv){g->m, g->ho, g->wo, g->c, g->h, g->w, 2 - g->ph, 2 - g->pw, 1};
}

static int conv_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  const conv_params *p = node->params;
  if (node->n_in < 2 || !in[0] || !in[1])
    return dd_fail(err, DD_EFORMAT, "needs the inputs X and W");
  if (node->n_in > 3) return dd_fail(err, DD_EFORMAT, "has %d inputs, expected 2 or 3", node->n_in);
  if (in[0]->dtype != DD_F32 || in[1]->dtype != DD_F32)
    return dd_fail(err, DD_EUNSUPPORTED, "X and W must be float32");
  const dd_tensor *b = node->n_in > 2 ? in[2] : NULL;
  conv_geom g;
  int rc = conv_geometry(p, in[0], in[1], b, &g, err);
  if (rc) return rc;
  /* The column buffer, counted in elements first so a huge image reports a limit, not a wrap. */
  int64_t col = (g.pointwise || g.depthwise) ? 0 : g.kcol * g.block * g.wo;
  if (g.wino) {
    dd_wino_conv fw, bw;
    wino_convs(&g, &fw, &bw);
    int64_t a = dd_wino_scratch(&fw), b = dd_wino_scratch(&bw);
    /* the weight gradient still takes the im2col path */
    col = col > a ? col : a;
    col = col > b ? col : b;
  }
  if (col < 0 || (uint64_t)col > SIZE_MAX / sizeof(float) / 2)
    return dd_fail(err, DD_ELIMIT, "the im2col buffer would be too large");
  *scratch = (size_t)col * sizeof(float);
  if (node->n_out >= 1 && out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = in[0]->shape;
    out[0]->shape.d[1] = g.m;
    if (in[0]->shape.ndim == 4) out[0]->shape.d[2] = g.ho;
    out[0]->shape.d[in[0]->shape.ndim - 1] = g.wo;
  }
  return DD_OK;
}

/* Valid output columns [*o0, *o1) for kernel column kj: 0 <= ow*sw - pw + kj*dw < w. */
static void col_range(const conv_geom *g, int64_t kj, int64_t *o0, int64_t *o1) {
  int64_t off = kj * g->dw - g->pw;
  int64_t a = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
  int64_t b = off >= g->w ? 0 : (g->w - off + g->sw - 1) / g->sw;
  *o0 = a < g->wo ? a : g->wo;
  *o1 = b < g->wo ? b : g->wo;
  if (*o1 < *o0) *o1 = *o0;
}

/* col[(c*kh + ki)*kw + kj][(oh - oh0)*wo + ow] = x[c][oh*sh - ph + ki*dh][ow*sw - pw + kj*dw]
 * for the output rows oh0 <= oh < oh1, 0 in the padding.  x holds the cg channels of one
 * image and group. */
static void im2col(const conv_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col) {
  int64_t rows = g->kcol, ncols = (oh1 - oh0) * g->wo;
#pragma omp parallel for if (rows * ncols > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r / (g->kh * g->kw), ki = r / g->kw % g->kh, kj = r % g->kw;
    const float *src = x + c * g->h * g->w;
    float *dst = col + r * ncols;
    int64_t o0, o1;
    col_range(g, kj, &o0, &o1);
    int64_t off = kj * g->dw - g->pw;
    for (int64_t oh = oh0; oh < oh1; oh++) {
      float *d = dst + (oh - oh0) * g->wo;
      int64_t ih = oh * g->sh - g->ph + ki * g->dh;
      if (ih < 0 || ih >= g->h) {
        memset(d, 0, (size_t)g->wo * sizeof *d);
        continue;
      }
      const float *row = src + ih * g->w; /* ow*sw + off is inside it for o0 <= ow < o1 */
      for (int64_t ow = 0; ow < o0; ow++) d[ow] = 0.f;
      if (g->sw == 1 && o1 > o0) {
        memcpy(d + o0, row + o0 + off, (size_t)(o1 - o0) * sizeof *d);
      } else {
#pragma omp simd
        for (int64_t ow = o0; ow < o1; ow++) d[ow] = row[ow * g->sw + off];
      }
      for (int64_t ow = o1; ow < g->wo; ow++) d[ow] = 0.f;
    }
  }
}

/* The adjoint of im2col over the same output rows: dx[c][ih][iw] += every column entry that
 * im2col copied from it.  Split by channel so that no two threads add into one element. */
static void col2im_add(const conv_geom *g, const float *col, int64_t oh0, int64_t oh1,
                       float *dx) {
  int64_t ncols = (oh1 - oh0) * g->wo;
#pragma omp parallel for if (g->kcol * ncols > DD_PAR_MIN) schedule(static)
  for (int64_t c = 0; c < g->cg; c++) {
    float *dst = dx + c * g->h * g->w;
    for (int64_t ki = 0; ki < g->kh; ki++)
      for (int64_t kj = 0; kj < g->kw; kj++) {
        const float *src = col + ((c * g->kh + ki) * g->kw + kj) * ncols;
        int64_t o0, o1;
        col_range(g, kj, &o0, &o1);
        int64_t off = kj * g->dw - g->pw;
        for (int64_t oh = oh0; oh < oh1; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki * g->dh;
          if (ih < 0 || ih >= g->h) continue;
          float *row = dst + ih * g->w;
          const float *s = src + (oh - oh0) * g->wo;
          if (g->sw == 1) {
#pragma omp simd
            for (int64_t ow = o0; ow < o1; ow++) row[ow + off] += s[ow];
          } else {
#pragma omp simd
            for (int64_t ow = o0; ow < o1; ow++) row[ow * g->sw + off] += s[ow];
          }
        }
      }
  }
}

/* Depthwise forward: output channel m of image n reads input channel m / mg only. */
static void depthwise_forward(const conv_geom *g, const float *x, const float *wt,
                              const float *bias, float *y) {
#pragma omp parallel for if (g->n * g->m * g->ocol * g->kh * g->kw > DD_PAR_MIN) schedule(static)
  for (int64_t nm = 0; nm < g->n * g->m; nm++) {
    int64_t n = nm / g->m, m = nm % g->m;
    const float *src = x + (n * g->c + m / g->mg) * g->h * g->w;
    const float *k = wt + m * g->kh * g->kw;
    float *dst = y + nm * g->ocol;
    float b0 = bias ? bias[m] : 0.f;
    for (int64_t i = 0; i < g->ocol; i++) dst[i] = b0;
    for (int64_t ki = 0; ki < g->kh; ki++)
      for (int64_t kj = 0; kj < g->kw; kj++) {
        float kv = k[ki * g->kw + kj];
        int64_t o0, o1;
        col_range(g, kj, &o0, &o1);
        int64_t off = kj * g->dw - g->pw;
        for (int64_t oh = 0; oh < g->ho; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki * g->dh;
          if (ih < 0 || ih >= g->h) continue;
          const float *row = src + ih * g->w;
          float *d = dst + oh * g->wo;
#pragma omp simd
          for (int64_t ow = o0; ow < o1; ow++) d[ow] += kv * row[ow * g->sw + off];
        }
      }
  }
}

/* Depthwise backward w.r.t. x, split by input channel: channel c collects from its mg
 * output channels. */
static void depthwise_backward(const conv_geom *g, const float *wt, const float *dy, float *dx) {
#pragma omp parallel for if (g->n * g->m * g->ocol * g->kh * g->kw > DD_PAR_MIN) schedule(static)
  for (int64_t nc = 0; nc < g->n * g->c; nc++) {
    int64_t n = nc / g->c, c = nc % g->c;
    float *dst = dx + nc * g->h * g->w;
    for (int64_t m = c * g->mg; m < (c + 1) * g->mg; m++) {
      const float *k = wt + m * g->kh * g->kw;
      const float *src = dy + (n * g->m + m) * g->ocol;
      for (int64_t ki = 0; ki < g->kh; ki++)
        for (int64_t kj = 0; kj < g->kw; kj++) {
          float kv = k[ki * g->kw + kj];
          int64_t o0, o1;
          col_range(g, kj, &o0, &o1);
          int64_t off = kj * g->dw - g->pw;
          for (int64_t oh = 0; oh < g->ho; oh++) {
            int64_t ih = oh * g->sh - g->ph + ki * g->dh;
            if (ih < 0 || ih >= g->h) continue;
            float *row = dst + ih * g->w;
            const float *s = src + oh * g->wo;
#pragma omp simd
            for (int64_t ow = o0; ow < o1; ow++) row[ow * g->sw + off] += kv * s[ow];
          }
        }
    }
  }
}

static void conv_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  if (!out[0]) return;
  const dd_tensor *bt = node->n_in > 2 ? in[2] : NULL;
  conv_geom g;
  conv_geometry(node->params, in[0], in[1], bt, &g, NULL);
  const float *x = dd_f32(in[0]), *wt = dd_f32(in[1]), *bias = bt ? dd_f32(bt) : NULL;
  float *y = dd_f32(out[0]), *col = scratch;
  if (g.depthwise) {
    depthwise_forward(&g, x, wt, bias, y);
    return;
  }
  if (g.wino) {
    dd_wino_conv fw, bw;
    wino_convs(&g, &fw, &bw);
    for (int64_t n = 0; n < g.n; n++)
      dd_wino_run(&fw, x + n * g.c * g.h * g.w, wt, bias, y + n * g.m * g.ocol, 0, col);
    return;
  }
  for (int64_t n = 0; n < g.n; n++) {
    for (int64_t gi = 0; gi < g.group; gi++) {
      const float *bg = bias ? bias + gi * g.mg : NULL;
      const float *xg = x + (n * g.c + gi * g.cg) * g.h * g.w;
      const float *wg = wt + gi * g.mg * g.kcol;
      float *yg = y + (n * g.m + gi * g.mg) * g.ocol;
      if (g.pointwise) {
        dd_sgemm(g.mg, g.ocol, g.kcol, wg, g.kcol, 1, xg, g.ocol, yg, g.ocol, 0, bg, 1);
        continue;
      }
      for (int64_t oh0 = 0; oh0 < g.ho; oh0 += g.block) {
        int64_t oh1 = oh0 + g.block < g.ho ? oh0 + g.block : g.ho, ncols = (oh1 - oh0) * g.wo;
        im2col(&g, xg, oh0, oh1, col);
        /* the block's columns of Y_g: a sub-matrix with row stride ocol */
        dd_sgemm(g.mg, ncols, g.kcol, wg, g.kcol, 1, col, ncols, yg + oh0 * g.wo, g.ocol, 0, bg,
                 1);
      }
    }
  }
}

static void conv_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  const dd_tensor *bt = node->n_in > 2 ? in[2] : NULL;
  conv_geom g;
  conv_geometry(node->params, in[0], in[1], bt, &g, NULL);
  const float *x = dd_f32(in[0]), *wt = dd_f32(in[1]), *dy = dd_f32(dout[0]);
  float *col = scratch;
  float *dx = din[0] ? dd_f32(din[0]) : NULL;
  float *dw = din[1] ? dd_f32(din[1]) : NULL;
  float *db = node->n_in > 2 && din[2] ? dd_f32(din[2]) : NULL;
  if (db)
    for (int64_t n = 0; n < g.n; n++)
      for (int64_t m = 0; m < g.m; m++) {
        const float *s = dy + (n * g.m + m) * g.ocol;
        double acc = 0;
        for (int64_t i = 0; i < g.ocol; i++) acc += s[i];
        db[m] += (float)acc;
      }
  if (dx && g.depthwise) {
    depthwise_backward(&g, wt, dy, dx);
    dx = NULL;
  }
  if (dx && g.wino) {
    dd_wino_conv fw, bw;
    wino_convs(&g, &fw, &bw);
    for (int64_t n = 0; n < g.n; n++)
      dd_wino_run(&bw, dy + n * g.m * g.ocol, wt, NULL, dx + n * g.c * g.h * g.w, 1, col);
    dx = NULL;
  }
  if (!dx && !dw) return;
  for (int64_t n = 0; n < g.n; n++)
    for (int64_t gi = 0; gi < g.group; gi++) {
      const float *xg = x + (n * g.c + gi * g.cg) * g.h * g.w;
      const float *wg = wt + gi * g.mg * g.kcol;
      const float *dyg = dy + (n * g.m + gi * g.mg) * g.ocol;
      if (dw && g.depthwise) { /* no column buffer: one dot product per weight */
        for (int64_t r = 0; r < g.mg * g.kcol; r++) {
          int64_t m = r / g.kcol, ki = r % g.kcol / g.kw, kj = r % g.kw;
          int64_t o0, o1;
          col_range(&g, kj, &o0, &o1);
          double acc = 0;
          for (int64_t oh = 0; oh < g.ho; oh++) {
            int64_t ih = oh * g.sh - g.ph + ki * g.dh;
            if (ih < 0 || ih >= g.h) continue;
            const float *row = xg + ih * g.w, *d = dyg + m * g.ocol + oh * g.wo;
            int64_t off = kj * g.dw - g.pw;
            for (int64_t ow = o0; ow < o1; ow++) acc += (double)d[ow] * row[ow * g.sw + off];
          }
          dw[gi * g.mg * g.kcol + r] += (float)acc;
        }
      }
      float *dxg = dx ? dx + (n * g.c + gi * g.cg) * g.h * g.w : NULL;
      float *dwg = dw ? dw + gi * g.mg * g.kcol : NULL;
      if (g.pointwise) { /* straight on the NCHW data, as in forward */
        if (dwg) /* dW_g += dY_g * X_g^T */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.mg, (int)g.cg,
                      (int)g.ocol, 1.f, dyg, (int)g.ocol, xg, (int)g.ocol, 1.f, dwg, (int)g.cg);
        if (dxg) /* dX_g += W_g^T * dY_g */
          dd_sgemm(g.cg, g.ocol, g.mg, wg, 1, g.kcol, dyg, g.ocol, dxg, g.ocol, 1, NULL, 1);
        continue;
      }
      if (g.depthwise) continue;
      for (int64_t oh0 = 0; oh0 < g.ho; oh0 += g.block) {
        int64_t oh1 = oh0 + g.block < g.ho ? oh0 + g.block : g.ho, ncols = (oh1 - oh0) * g.wo;
        const float *dyb = dyg + oh0 * g.wo; /* the block's columns of dY_g, row stride ocol */
        if (dwg) { /* dW_g += dY_g * col(X_g)^T */
          im2col(&g, xg, oh0, oh1, col);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.mg, (int)g.kcol,
                      (int)ncols, 1.f, dyb, (int)g.ocol, col, (int)ncols, 1.f, dwg,
                      (int)g.kcol);
        }
        if (dxg) { /* dX_g += col2im(W_g^T * dY_g) */
          dd_sgemm(g.kcol, ncols, g.mg, wg, 1, g.kcol, dyb, g.ocol, col, ncols, 0, NULL, 1);
          col2im_add(&g, col, oh0, oh1, dxg);
        }
      }
    }
}

static int64_t conv_flops(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out) {
  conv_geom g;
  if (conv_geometry(node->params, in[0], in[1], NULL, &g, NULL)) return 0;
  return 2 * g.n * g.m * g.ocol * g.kcol;
}

/* The data gradient reads only W and dY; X only for the gradient of W. */
const dd_op dd_op_Conv = {"Conv", conv_init, conv_infer, conv_forward, conv_backward,
                          conv_flops, DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X};
