/* Seeing inside a network: filter grids, feature visualization, activation maps, Grad-CAM and
 * saliency.  See include/dream/visualize.h. */
#include "dream/visualize.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/layout.h"
#include "fourier.h"
#include "plan/plan.h"
#include "util.h"

#define PI 3.14159265358979323846

/* The layout of `v` in plan p, at the plan's input size. */
static void plan_layout(dd_plan *p, int v, dd_layout *l) {
  const dd_shape *is = &p->val[dd_model_input(p->m)].shape;
  int iw = is->ndim == 4 ? (int)is->d[3] : 0, ih = is->ndim == 4 ? (int)is->d[2] : 0;
  dd_value_layout(p->m, v, &p->val[v].shape, iw, ih, l);
}

/* 1 when the value has a grid Grad-CAM can draw: an N x C x H x W map, tokens with a square
 * (or input-shaped) grid, a channels-last grid. */
static int has_grid(const dd_layout *l) {
  return (l->kind == DD_LAYOUT_NCHW || l->kind == DD_LAYOUT_TOKENS || l->kind == DD_LAYOUT_SEQ ||
          l->kind == DD_LAYOUT_NHWC) && l->grid_h > 0 && l->grid_w > 0;
}


/* ---- small image helpers -------------------------------------------------------------- */

/* Bilinear resampling of a single-channel map (half-pixel centres, edges clamped), the
 * convention of Grad-CAM's upsampling. */
static void resample_map(const float *src, int sw, int sh, float *dst, int dw, int dh) {
  for (int y = 0; y < dh; y++) {
    float fy = ((float)y + 0.5f) * (float)sh / (float)dh - 0.5f;
    if (fy < 0) fy = 0;
    if (fy > (float)(sh - 1)) fy = (float)(sh - 1);
    int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
    float ay = fy - (float)y0;
    for (int x = 0; x < dw; x++) {
      float fx = ((float)x + 0.5f) * (float)sw / (float)dw - 0.5f;
      if (fx < 0) fx = 0;
      if (fx > (float)(sw - 1)) fx = (float)(sw - 1);
      int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
      float ax = fx - (float)x0;
      float top = (1 - ax) * src[(size_t)y0 * sw + x0] + ax * src[(size_t)y0 * sw + x1];
      float bot = (1 - ax) * src[(size_t)y1 * sw + x0] + ax * src[(size_t)y1 * sw + x1];
      dst[(size_t)y * dw + x] = (1 - ay) * top + ay * bot;
    }
  }
}

static void put_pixel(dd_image *im, int x, int y, const float rgb[3]) {
  if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
  float *p = im->rgb + ((size_t)y * im->w + x) * 3;
  p[0] = rgb[0];
  p[1] = rgb[1];
  p[2] = rgb[2];
}

int dd_vis_grid(const dd_image *const *tiles, int n, int gap, float bg, dd_image **out,
                dd_grid *grid, dd_err *err) {
  if (n < 1 || !tiles || !tiles[0]) return dd_fail(err, DD_EARG, "grid: no tiles");
  if (gap < 0 || gap > 64) return dd_fail(err, DD_EARG, "grid: gap %d is not in 0..64", gap);
  int tw = tiles[0]->w, th = tiles[0]->h;
  for (int i = 1; i < n; i++)
    if (!tiles[i] || tiles[i]->w != tw || tiles[i]->h != th)
      return dd_fail(err, DD_EARG, "grid: tile %d is not %dx%d like the first", i, tw, th);
  int cols = (int)ceil(sqrt((double)n));
  int rows = (n + cols - 1) / cols;
  int64_t W = (int64_t)gap + (int64_t)cols * (tw + gap), H = (int64_t)gap + (int64_t)rows * (th + gap);
  if (W > 65535 || H > 65535)
    return dd_fail(err, DD_ELIMIT, "grid: %d tiles of %dx%d make a %lldx%lld picture, too large",
                   n, tw, th, (long long)W, (long long)H);
  dd_image *im;
  int rc = dd_image_new((int)W, (int)H, &im, err);
  if (rc) return rc;
  for (size_t i = 0; i < (size_t)W * (size_t)H * 3; i++) im->rgb[i] = bg;
  for (int i = 0; i < n; i++) {
    int ox = gap + (i % cols) * (tw + gap), oy = gap + (i / cols) * (th + gap);
    for (int y = 0; y < th; y++)
      memcpy(im->rgb + ((size_t)(oy + y) * im->w + ox) * 3, tiles[i]->rgb + (size_t)y * tw * 3,
             (size_t)tw * 3 * sizeof(float));
  }
  if (grid) *grid = (dd_grid){n, cols, rows, tw, th, gap};
  *out = im;
  return DD_OK;
}

static void free_tiles(dd_image **tiles, int n) {
  if (!tiles) return;
  for (int i = 0; i < n; i++) dd_image_free(tiles[i]);
  free(tiles);
}

/* ---- finding layers ------------------------------------------------------------------- */

/* Ops that keep a Conv's channels one to one, so their output still "is" that Conv's. */
static int passes_channels(const char *op) {
  static const char *const ops[] = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "BatchNormalization",
                                    "Identity", "Dropout", NULL};
  for (int i = 0; ops[i]; i++)
    if (!strcmp(op, ops[i])) return 1;
  return 0;
}

int dd_vis_find_conv(const dd_model *m, int value, int *node, dd_err *err) {
  if (value < 0 || value >= dd_model_num_values(m)) return dd_fail(err, DD_EARG, "no value %d", value);
  int v = value;
  for (int hop = 0; hop < 16; hop++) {
    int p = dd_model_producer(m, v);
    if (p < 0) break;
    const char *op = dd_model_node_op(m, p);
    if (!strcmp(op, "Conv")) {
      *node = p;
      return DD_OK;
    }
    if (!passes_channels(op) || dd_model_node_num_inputs(m, p) < 1 ||
        dd_model_node_input(m, p, 0) < 0)
      break;
    v = dd_model_node_input(m, p, 0);
  }
  return dd_fail(err, DD_ENOTFOUND,
                 "%s: '%s' is not the output of a Conv (nor of an activation right after one)",
                 dd_model_name(m), dd_model_value_name(m, value));
}

int dd_vis_logits(const dd_model *m, int *value, dd_err *err) {
  if (dd_model_num_outputs(m) < 1)
    return dd_fail(err, DD_ENOTFOUND, "%s: the graph has no output", dd_model_name(m));
  int v = dd_model_output(m, 0);
  int p = dd_model_producer(m, v);
  if (p >= 0 && !strcmp(dd_model_node_op(m, p), "Softmax") && dd_model_node_num_inputs(m, p) >= 1 &&
      dd_model_node_input(m, p, 0) >= 0)
    v = dd_model_node_input(m, p, 0);
  *value = v;
  return DD_OK;
}

/* ---- filters -------------------------------------------------------------------------- */

int dd_vis_filters(const dd_model *m, int node, int bgr, int zoom, int gap, dd_image **out,
                   dd_grid *grid, dd_err *err) {
  if (node < 0 || node >= dd_model_num_nodes(m)) return dd_fail(err, DD_EARG, "no node %d", node);
  const char *name = dd_model_node_name(m, node), *op = dd_model_node_op(m, node);
  if (strcmp(op, "Conv"))
    return dd_fail(err, DD_EARG, "%s: node '%s' is a %s, not a Conv", dd_model_name(m), name, op);
  int wv = dd_model_node_num_inputs(m, node) >= 2 ? dd_model_node_input(m, node, 1) : -1;
  const dd_tensor *w = wv >= 0 ? dd_model_value_tensor(m, wv) : NULL;
  if (!w || w->dtype != DD_F32 || w->shape.ndim != 4)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: node '%s': the kernels are not a constant 4-D "
                   "float tensor", dd_model_name(m), name);
  int64_t group;
  int rc = dd_model_node_attr_int(m, node, "group", 1, &group, err);
  if (rc) return rc;
  if (group != 1)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: node '%s' is a grouped convolution (group %lld); "
                   "only plain convolutions are drawn", dd_model_name(m), name, (long long)group);
  int64_t O = w->shape.d[0], I = w->shape.d[1], kh = w->shape.d[2], kw = w->shape.d[3];
  if (I != 3)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: node '%s' reads %lld channels; kernels are drawn "
                   "as colour images only for a first convolution (3 channels)", dd_model_name(m),
                   name, (long long)I);
  if (O < 1 || O > 4096 || kh < 1 || kw < 1 || kh > 64 || kw > 64)
    return dd_fail(err, DD_ELIMIT, "%s: node '%s': %lld kernels of %lldx%lld is out of range",
                   dd_model_name(m), name, (long long)O, (long long)kh, (long long)kw);
  if (zoom <= 0) zoom = (int)((32 + (kh > kw ? kh : kw) - 1) / (kh > kw ? kh : kw));
  if (zoom > 64) return dd_fail(err, DD_EARG, "zoom %d is larger than 64", zoom);
  dd_image **tiles = calloc((size_t)O, sizeof *tiles);
  if (!tiles) return dd_fail(err, DD_ENOMEM, "out of memory");
  const float *wd = dd_f32(w);
  for (int64_t o = 0; o < O && !rc; o++) {
    const float *k = wd + o * 3 * kh * kw;
    float amax = 0;
    for (int64_t i = 0; i < 3 * kh * kw; i++) amax = fmaxf(amax, fabsf(k[i]));
    /* Symmetric scaling keeps 0 at mid-grey, so the sign of each weight stays readable. */
    float s = amax > 0 ? 127.5f / amax : 0;
    rc = dd_image_new((int)(kw * zoom), (int)(kh * zoom), &tiles[o], err);
    for (int64_t y = 0; y < kh * zoom && !rc; y++)
      for (int64_t x = 0; x < kw * zoom; x++)
        for (int c = 0; c < 3; c++) {
          int ic = bgr ? 2 - c : c;
          float v = k[(ic * kh + y / zoom) * kw + x / zoom];
          tiles[o]->rgb[(y * kw * zoom + x) * 3 + c] = 127.5f + s * v;
        }
  }
  if (!rc) rc = dd_vis_grid((const dd_image *const *)tiles, (int)O, gap, 255, out, grid, err);
  free_tiles(tiles, (int)O);
  return rc;
}

/* ---- model input ---------------------------------------------------------------------- */

/* Planar RGB in 0..1 (3 x n) -> the model's input (3 x n) and the derivative of an input
 * channel with respect to its pixel channel. */
static void planar_to_input(const float *rgb01, size_t n, const dd_preproc *pp, float *x) {
  for (int c = 0; c < 3; c++) {
    int mc = pp->bgr ? 2 - c : c;
    float a = pp->scale / pp->std[mc], b = -pp->mean[mc] / pp->std[mc];
    for (size_t i = 0; i < n; i++) x[mc * n + i] = a * rgb01[c * n + i] + b;
  }
}

static int check_preproc(const dd_preproc *pp, dd_err *err) {
  for (int c = 0; c < 3; c++)
    if (!(pp->std[c] > 0) || !isfinite(pp->mean[c]))
      return dd_fail(err, DD_EARG, "preprocessing: std must be > 0 and mean finite");
  if (!(pp->scale > 0)) return dd_fail(err, DD_EARG, "preprocessing: scale must be > 0");
  return DD_OK;
}

static dd_binding input_binding(const dd_model *m, int w, int h) {
  dd_binding b = {0};
  b.value = dd_model_input(m);
  int64_t dims[4] = {1, 3, h, w};
  b.shape = dd_shape_make(4, dims);
  return b;
}

/* ---- feature visualization ------------------------------------------------------------ */

struct dd_fv {
  const dd_model *m;
  dd_preproc pp;
  dd_fv_opts o;
  int value, input;
  dd_plan *plan;
  int channels;
  int64_t per_channel; /* elements of one channel of the value: outer x inner */
  dd_layout lay;       /* the value's layout: channel c is (o, c, i) for every o and i */
  int S, P;            /* view side, canvas side (a power of two) */
  dd_fimage *canvas;
  float *spec, *gspec;    /* 6*P*P */
  float *adam_m, *adam_v; /* 6*P*P */
  float *grgb;            /* 3*P*P */
  float *view;            /* 3*S*S: the network's view, 0..1, then its gradient */
};

void dd_fv_opts_init(dd_fv_opts *o) {
  memset(o, 0, sizeof *o);
  o->size = 128;
  o->iters = 256;
  o->lr = 0.05f;
  o->jitter = -1;
  o->scale = 0.1f;
  o->rotate = 10;
}

void dd_fv_free(dd_fv *fv) {
  if (!fv) return;
  dd_plan_free(fv->plan);
  dd_fimage_free(fv->canvas);
  free(fv->spec);
  free(fv->gspec);
  free(fv->adam_m);
  free(fv->adam_v);
  free(fv->grgb);
  free(fv->view);
  free(fv);
}

int dd_fv_channels(const dd_fv *fv) { return fv->channels; }

int dd_fv_new(const dd_model *m, const dd_preproc *pp, int value, const dd_fv_opts *o,
              dd_fv **out, dd_err *err) {
  int rc = check_preproc(pp, err);
  if (!rc) rc = dd_model_image_input(m, NULL, err);
  if (rc) return rc;
  if (value < 0 || value >= dd_model_num_values(m)) return dd_fail(err, DD_EARG, "no value %d", value);
  if (o->size < 16 || o->size > 2048)
    return dd_fail(err, DD_EARG, "size %d is not in 16..2048", o->size);
  if (o->iters < 0 || o->iters > 100000)
    return dd_fail(err, DD_EARG, "iterations %d is not in 0..100000", o->iters);
  if (!(o->lr > 0) || o->lr > 10) return dd_fail(err, DD_EARG, "learning rate must be in (0, 10]");
  if (!(o->scale >= 0 && o->scale < 0.5f))
    return dd_fail(err, DD_EARG, "random scale %g is not in [0, 0.5)", o->scale);
  if (!(o->rotate >= 0 && o->rotate <= 180))
    return dd_fail(err, DD_EARG, "random rotation %g is not in [0, 180] degrees", o->rotate);
  if (o->jitter > o->size / 2)
    return dd_fail(err, DD_EARG, "jitter %d is more than half the size %d", o->jitter, o->size);
  if (o->precision != DD_PRECISION_AUTO && o->precision != DD_PRECISION_FP32 &&
      o->precision != DD_PRECISION_BF16)
    return dd_fail(err, DD_EARG, "unknown precision %d", (int)o->precision);
  dd_fv *fv = calloc(1, sizeof *fv);
  if (!fv) return dd_fail(err, DD_ENOMEM, "out of memory");
  fv->m = m;
  fv->pp = *pp;
  fv->o = *o;
  if (fv->o.jitter < 0) fv->o.jitter = o->size / 16;
  fv->value = value;
  fv->input = dd_model_input(m);
  fv->S = o->size;
  /* The canvas leaves room for the jitter; the view is a (warped) crop of it. */
  fv->P = 2;
  while (fv->P < fv->S + 2 * fv->o.jitter) fv->P *= 2;
  dd_binding b = input_binding(m, fv->S, fv->S);
  /* fp32 asked for is fp32-exact (ties stay ties: no Winograd); auto keeps the fast path */
  unsigned bf16 = dd_precision_resolve(o->precision, 1) == DD_PRECISION_BF16 ? DD_PLAN_BF16
                  : o->precision == DD_PRECISION_FP32                         ? DD_PLAN_EXACT
                                                                              : 0;
  rc = dd_plan_new(m, &b, 1, &value, 1, DD_PLAN_GRAD | bf16, o->max_memory, &fv->plan, err);
  if (rc) goto fail;
  dd_tensor *t = dd_plan_tensor(fv->plan, value);
  if (t) plan_layout(fv->plan, value, &fv->lay);
  if (!t || t->shape.ndim < 2 || t->shape.d[0] < 1 || fv->lay.channels < 1) {
    rc = dd_fail(err, DD_ESHAPE, "%s: '%s' is not N x C [x H x W], so it has no channels",
                 dd_model_name(m), dd_model_value_name(m, value));
    goto fail;
  }
  if (!dd_plan_grad(fv->plan, value) || !dd_plan_grad(fv->plan, fv->input)) {
    rc = dd_fail(err, DD_EARG, "%s: '%s' does not depend on the input", dd_model_name(m),
                 dd_model_value_name(m, value));
    goto fail;
  }
  fv->channels = (int)fv->lay.channels;
  fv->per_channel = fv->lay.outer * fv->lay.inner;
  rc = dd_fimage_new(fv->P, o->pixels, &fv->canvas, err);
  if (rc) goto fail;
  size_t pp2 = (size_t)fv->P * fv->P, ss = (size_t)fv->S * fv->S;
  fv->spec = malloc(6 * pp2 * sizeof(float));
  fv->gspec = malloc(6 * pp2 * sizeof(float));
  fv->adam_m = malloc(6 * pp2 * sizeof(float));
  fv->adam_v = malloc(6 * pp2 * sizeof(float));
  fv->grgb = malloc(3 * pp2 * sizeof(float));
  fv->view = malloc(3 * ss * sizeof(float));
  if (!fv->spec || !fv->gspec || !fv->adam_m || !fv->adam_v || !fv->grgb || !fv->view) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  *out = fv;
  return DD_OK;
fail:
  dd_fv_free(fv);
  return rc;
}

/* A random view: shift, scale and rotation, the robustness transforms of lucid. */
static dd_warp fv_warp(const dd_fv *fv, uint64_t *rng) {
  float J = (float)fv->o.jitter;
  float tx = J * (2 * dd_rng_uniform(rng) - 1), ty = J * (2 * dd_rng_uniform(rng) - 1);
  float s = 1 + fv->o.scale * (2 * dd_rng_uniform(rng) - 1);
  float th = (float)(fv->o.rotate * PI / 180) * (2 * dd_rng_uniform(rng) - 1);
  return dd_warp_make(fv->P, tx, ty, s, th);
}

/* Where the gradient of channel `ch` of the value is seeded: through a Relu to its input,
 * and through a channel Concat to the input holding the channel, as lucid optimizes
 * GoogLeNet's *_pre_relu layers.  A ReLU channel that is zero everywhere on the starting
 * noise has no gradient at all; its pre-activation always has one, and raising the mean of
 * the pre-activation everywhere raises the activation's mean too. */
static void fv_seed_target(const dd_fv *fv, int ch, int *value, int *channel) {
  const dd_model *m = fv->m;
  int v = fv->value;
  for (int hop = 0; hop < 16; hop++) {
    int p = dd_model_producer(m, v);
    if (p < 0) break;
    const char *op = dd_model_node_op(m, p);
    int n_in = dd_model_node_num_inputs(m, p);
    int in0 = n_in >= 1 ? dd_model_node_input(m, p, 0) : -1;
    if (!strcmp(op, "Relu") && in0 >= 0 && dd_plan_grad(fv->plan, in0)) {
      v = in0;
      continue;
    }
    if (strcmp(op, "Concat")) break;
    int64_t axis;
    dd_tensor *t = dd_plan_tensor(fv->plan, v);
    if (dd_model_node_attr_int(m, p, "axis", 1, &axis, NULL) || !t ||
        (axis != 1 && axis != 1 - t->shape.ndim))
      break;
    int next = -1;
    for (int j = 0, off = 0; j < n_in; j++) {
      int vj = dd_model_node_input(m, p, j);
      dd_tensor *tj = vj >= 0 ? dd_plan_tensor(fv->plan, vj) : NULL;
      if (!tj) break;
      if (ch < off + tj->shape.d[1]) {
        if (dd_plan_grad(fv->plan, vj)) next = vj, ch -= off;
        break;
      }
      off += (int)tj->shape.d[1];
    }
    if (next < 0) break;
    v = next;
  }
  *value = v;
  *channel = ch;
}

/* Forward on the current view; returns channel `ch`'s mean. */
static float fv_forward(dd_fv *fv, int ch) {
  size_t ss = (size_t)fv->S * fv->S;
  planar_to_input(fv->view, ss, &fv->pp, dd_f32(dd_plan_tensor(fv->plan, fv->input)));
  dd_plan_forward(fv->plan);
  const float *a = dd_f32(dd_plan_tensor(fv->plan, fv->value));
  const dd_layout *l = &fv->lay;
  double s = 0;
  for (int64_t o = 0; o < l->outer; o++) {
    const float *ao = a + (o * l->channels + ch) * l->inner;
    for (int64_t i = 0; i < l->inner; i++) s += ao[i];
  }
  return (float)(s / (double)fv->per_channel);
}

/* Gradient of channel `ch`'s objective, seen through warp `w`, with respect to the spectrum,
 * into fv->gspec.  Needs fv_forward on the same view first. */
static void fv_backward(dd_fv *fv, int ch, const dd_warp *w) {
  int P = fv->P, S = fv->S;
  size_t ss = (size_t)S * S;
  int tv, tch;
  dd_plan_zero_grad(fv->plan);
  if (fv->lay.channel_axis == 1) {
    fv_seed_target(fv, ch, &tv, &tch);
    dd_tensor *g = dd_plan_grad(fv->plan, tv);
    int64_t per = dd_tensor_numel(g) / g->shape.d[1];
    float *seed = dd_f32(g) + (size_t)tch * per;
    for (int64_t i = 0; i < per; i++) seed[i] = 1.0f / (float)per;
  } else {
    /* tokens, channels-last: channel ch at every position, through the layout */
    const dd_layout *l = &fv->lay;
    float *g = dd_f32(dd_plan_grad(fv->plan, fv->value));
    for (int64_t o = 0; o < l->outer; o++)
      for (int64_t i = 0; i < l->inner; i++)
        g[(o * l->channels + ch) * l->inner + i] = 1.0f / (float)fv->per_channel;
  }
  dd_plan_backward(fv->plan);
  /* d input / d view, into the view buffer (the view itself is no longer needed). */
  const float *gx = dd_f32(dd_plan_grad(fv->plan, fv->input));
  for (int c = 0; c < 3; c++) {
    int mc = fv->pp.bgr ? 2 - c : c;
    float a = fv->pp.scale / fv->pp.std[mc];
    for (size_t i = 0; i < ss; i++) fv->view[c * ss + i] = a * gx[mc * ss + i];
  }
  memset(fv->grgb, 0, 3 * (size_t)P * P * sizeof(float));
  dd_warp_adjoint(fv->view, S, w, fv->grgb, P);
  dd_fimage_adjoint(fv->canvas, fv->grgb, fv->gspec);
}

int dd_fv_run(dd_fv *fv, int channel, uint64_t seed, dd_image **out, float *objective,
              dd_err *err) {
  if (channel < 0 || channel >= fv->channels)
    return dd_fail(err, DD_EARG, "%s: channel %d of '%s' is not in 0..%d", dd_model_name(fv->m), channel,
                   dd_model_value_name(fv->m, fv->value), fv->channels - 1);
  int S = fv->S, P = fv->P;
  size_t n6 = 6 * (size_t)P * P, ss = (size_t)S * S;
  dd_image *im;
  int rc = dd_image_new(S, S, &im, err);
  if (rc) return rc;
  uint64_t rng = seed;
  for (size_t i = 0; i < n6; i++) fv->spec[i] = 0.01f * dd_rng_normal(&rng);
  memset(fv->adam_m, 0, n6 * sizeof(float));
  memset(fv->adam_v, 0, n6 * sizeof(float));
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  double b1t = 1, b2t = 1;
  for (int it = 0; it < fv->o.iters; it++) {
    dd_fimage_render(fv->canvas, fv->spec);
    dd_warp w = fv_warp(fv, &rng);
    dd_warp_sample(fv->canvas->rgb, P, &w, fv->view, S);
    float obj = fv_forward(fv, channel);
    fv_backward(fv, channel, &w);
    b1t *= b1;
    b2t *= b2;
    float lr = fv->o.lr * (float)(sqrt(1 - b2t) / (1 - b1t));
    /* Adam, ascending: the objective is maximized. */
    for (size_t i = 0; i < n6; i++) {
      float g = fv->gspec[i];
      fv->adam_m[i] = b1 * fv->adam_m[i] + (1 - b1) * g;
      fv->adam_v[i] = b2 * fv->adam_v[i] + (1 - b2) * g * g;
      fv->spec[i] += lr * fv->adam_m[i] / (sqrtf(fv->adam_v[i]) + eps);
    }
    if (fv->o.progress) {
      dd_fv_progress info = {channel, it, fv->o.iters, obj};
      if ((rc = fv->o.progress(&info, fv->o.user)) != 0) {
        dd_image_free(im);
        return dd_fail(err, rc, "stopped at step %d by the progress callback (%s)", it,
                       dd_strerror(rc));
      }
    }
  }
  dd_fimage_render(fv->canvas, fv->spec);
  dd_warp id = dd_warp_center(P);
  dd_warp_sample(fv->canvas->rgb, P, &id, fv->view, S);
  /* Rounded to 8 bits as a file would hold it, so the objective is the saved picture's. */
  for (size_t i = 0; i < ss; i++)
    for (int c = 0; c < 3; c++) {
      float p = roundf(fv->view[c * ss + i] * 255);
      im->rgb[i * 3 + c] = p;
      fv->view[c * ss + i] = p / 255;
    }
  float obj = fv_forward(fv, channel);
  if (objective) *objective = obj;
  *out = im;
  return DD_OK;
}

/* ---- activations ---------------------------------------------------------------------- */

int dd_vis_activations(const dd_model *m, const dd_preproc *pp, int value, const dd_image *im,
                       size_t max_memory, dd_tensor **out, dd_err *err) {
  int rc = check_preproc(pp, err);
  if (!rc) rc = dd_model_image_input(m, NULL, err);
  if (rc) return rc;
  if (value < 0 || value >= dd_model_num_values(m)) return dd_fail(err, DD_EARG, "no value %d", value);
  dd_binding b = input_binding(m, im->w, im->h);
  dd_plan *p;
  rc = dd_plan_new(m, &b, 1, &value, 1, DD_PLAN_EXACT, max_memory, &p, err);
  if (rc) return rc;
  dd_tensor *t = dd_plan_tensor(p, value);
  dd_layout lay;
  if (t) dd_value_layout(m, value, &t->shape, im->w, im->h, &lay);
  int grid = t && t->dtype == DD_F32 &&
             (lay.kind == DD_LAYOUT_TOKENS || lay.kind == DD_LAYOUT_SEQ || lay.kind == DD_LAYOUT_NHWC);
  if (!grid && (!t || t->dtype != DD_F32 || t->shape.ndim < 2 || t->shape.ndim > 4 || t->shape.d[0] < 1)) {
    dd_plan_free(p);
    return dd_fail(err, DD_ESHAPE, "%s: '%s' is not a float N x C [x H [x W]] tensor", dd_model_name(m),
                   dd_model_value_name(m, value));
  }
  dd_image_to_input(im, pp, dd_f32(dd_plan_tensor(p, b.value)));
  dd_plan_forward(p);
  int64_t dims[3] = {t->shape.d[1], 1, 1};
  if (grid) { /* tokens or a channels-last grid: C x grid, the class token left out */
    dims[0] = lay.channels;
    dims[1] = lay.grid_h;
    dims[2] = lay.grid_w;
  } else {
    for (int d = 2; d < t->shape.ndim; d++) dims[d - 1] = t->shape.d[d];
  }
  dd_shape s = dd_shape_make(3, dims);
  dd_tensor *a;
  rc = dd_tensor_new(DD_F32, &s, 0, &a, err);
  if (!rc) {
    if (grid) dd_layout_to_chw(&lay, dd_f32(t), dd_f32(a), NULL);
    else memcpy(a->data, t->data, (size_t)dd_tensor_numel(a) * sizeof(float));
    *out = a;
  }
  dd_plan_free(p);
  return rc;
}

static void softmax(const float *z, int64_t n, float *p) {
  float zmax = -FLT_MAX;
  for (int64_t i = 0; i < n; i++) zmax = fmaxf(zmax, z[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += exp((double)z[i] - zmax);
  for (int64_t i = 0; i < n; i++) p[i] = (float)(exp((double)z[i] - zmax) / sum);
}

int dd_vis_classify(const dd_model *m, const dd_preproc *pp, const dd_image *im,
                    size_t max_memory, dd_tensor **prob, dd_err *err) {
  int logits;
  int rc = dd_vis_logits(m, &logits, err);
  if (rc) return rc;
  dd_tensor *z;
  rc = dd_vis_activations(m, pp, logits, im, max_memory, &z, err);
  if (rc) return rc;
  int64_t n = dd_tensor_numel(z);
  dd_shape s = dd_shape_make(1, &n);
  dd_tensor *p;
  rc = dd_tensor_new(DD_F32, &s, 0, &p, err);
  if (!rc) {
    softmax(dd_f32(z), n, dd_f32(p));
    *prob = p;
  }
  dd_tensor_free(z);
  return rc;
}

void dd_vis_channel_stats(const dd_tensor *act, dd_chan_stats *st) {
  int64_t C = act->shape.d[0], n = act->shape.d[1] * act->shape.d[2];
  for (int64_t c = 0; c < C; c++) {
    const float *a = dd_f32(act) + c * n;
    double sum = 0;
    float mx = -FLT_MAX;
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
      sum += a[i];
      mx = fmaxf(mx, a[i]);
      zeros += a[i] == 0;
    }
    st[c].mean = (float)(sum / (double)n);
    st[c].max = mx;
    st[c].zeros = (float)zeros / (float)n;
  }
}

int dd_vis_activation_grid(const dd_tensor *act, int c0, int c1, int zoom, int gap, dd_cmap map,
                           dd_image **out, dd_grid *grid, dd_err *err) {
  if (act->shape.ndim != 3) return dd_fail(err, DD_ESHAPE, "activations must be C x H x W");
  int64_t C = act->shape.d[0], H = act->shape.d[1], W = act->shape.d[2];
  if (c0 < 0 || c1 > C || c0 >= c1)
    return dd_fail(err, DD_EARG, "channels %d..%d are not within 0..%lld", c0, c1 - 1,
                   (long long)C - 1);
  if (zoom <= 0) {
    int64_t side = H > W ? H : W;
    zoom = (int)((24 + side - 1) / side);
  }
  if (zoom > 64 || H * zoom > 4096 || W * zoom > 4096)
    return dd_fail(err, DD_ELIMIT, "%lldx%lld maps enlarged %d times are too large",
                   (long long)W, (long long)H, zoom);
  int n = c1 - c0;
  dd_image **tiles = calloc((size_t)n, sizeof *tiles);
  if (!tiles) return dd_fail(err, DD_ENOMEM, "out of memory");
  int rc = DD_OK;
  for (int i = 0; i < n && !rc; i++) {
    const float *a = dd_f32(act) + (int64_t)(c0 + i) * H * W;
    float mx = 0;
    for (int64_t j = 0; j < H * W; j++) mx = fmaxf(mx, a[j]);
    rc = dd_image_new((int)(W * zoom), (int)(H * zoom), &tiles[i], err);
    for (int64_t y = 0; y < H * zoom && !rc; y++)
      for (int64_t x = 0; x < W * zoom; x++) {
        float rgb[3];
        dd_colormap(map, mx > 0 ? a[(y / zoom) * W + x / zoom] / mx : 0, rgb);
        put_pixel(tiles[i], (int)x, (int)y, rgb);
      }
  }
  if (!rc) rc = dd_vis_grid((const dd_image *const *)tiles, n, gap, 255, out, grid, err);
  free_tiles(tiles, n);
  return rc;
}

/* ---- explanations --------------------------------------------------------------------- */

void dd_explain_opts_init(dd_explain_opts *o) {
  memset(o, 0, sizeof *o);
  o->size = 224;
  o->cls = -1;
  o->layer = -1;
  o->noise = 0.15f;
}

void dd_explanation_free(dd_explanation *e) {
  if (!e) return;
  free(e->cam);
  free(e->saliency);
  free(e);
}

/* The last value the score depends on that still has a spatial extent: where Grad-CAM
 * looks, just before global pooling. */
static int last_spatial(const dd_model *m, dd_plan *p) {
  for (int i = dd_model_num_nodes(m) - 1; i >= 0; i--) {
    if (!dd_plan_node_runs(p, i)) continue;
    for (int k = 0; k < dd_model_node_num_outputs(m, i); k++) {
      int v = dd_model_node_output(m, i, k);
      dd_tensor *t = v >= 0 ? dd_plan_tensor(p, v) : NULL;
      if (!t || !dd_plan_grad(p, v)) continue;
      dd_layout l;
      plan_layout(p, v, &l);
      if (!has_grid(&l) || (int64_t)l.grid_h * l.grid_w <= 1) continue;
      if (l.kind == DD_LAYOUT_NCHW) return v;
      /* tokens or a channels-last grid: only where the grid positions get a gradient (a
       * ViT's last blocks hand the head its class token alone: their patch tokens have
       * none, and Grad-CAM there would be empty) -- needs the backward pass done */
      const float *g = dd_f32(dd_plan_grad(p, v));
      int64_t hw = (int64_t)l.grid_h * l.grid_w;
      for (int64_t c = 0; c < l.channels; c++)
        for (int64_t j = 0; j < hw; j++)
          if (g[dd_layout_index(&l, c, j)] != 0) return v;
    }
  }
  return -1;
}

static void top_k(const float *prob, int n, int *idx, float *val) {
  for (int k = 0; k < DD_TOPK; k++) {
    idx[k] = -1;
    val[k] = -1;
  }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < DD_TOPK; k++)
      if (prob[i] > val[k]) {
        for (int j = DD_TOPK - 1; j > k; j--) {
          idx[j] = idx[j - 1];
          val[j] = val[j - 1];
        }
        idx[k] = i;
        val[k] = prob[i];
        break;
      }
}

int dd_explain_backward(dd_plan *p, int scores, int cls, dd_err *err) {
  dd_tensor *g = dd_plan_grad(p, scores);
  if (!g)
    return dd_fail(err, DD_EARG, "the scores (value %d) have no gradient in this plan", scores);
  if (cls < 0 || cls >= dd_tensor_numel(g))
    return dd_fail(err, DD_EARG, "class %d is not in 0..%lld", cls,
                   (long long)dd_tensor_numel(g) - 1);
  dd_plan_zero_grad(p);
  dd_f32(g)[cls] = 1;
  dd_plan_backward(p);
  return DD_OK;
}

int dd_gradcam(dd_plan *p, int layer, float *cam, dd_err *err) {
  dd_tensor *A = dd_plan_tensor(p, layer), *gA = dd_plan_grad(p, layer);
  if (!A || !gA)
    return dd_fail(err, DD_EARG, "value %d has no gradient in this plan", layer);
  dd_layout l;
  plan_layout(p, layer, &l);
  if (!has_grid(&l)) {
    char sb[128];
    return dd_fail(err, DD_ESHAPE, "Grad-CAM: value %d is %s, neither N x C x H x W nor tokens "
                   "nor a channels-last grid", layer, dd_shape_str(&A->shape, sb, sizeof sb));
  }
  /* channel k at grid position i of batch item 0 (the class token left out) */
  int64_t K = l.channels, hw = (int64_t)l.grid_h * l.grid_w;
  const float *a = dd_f32(A), *ga = dd_f32(gA);
  for (int64_t i = 0; i < hw; i++) cam[i] = 0;
  for (int64_t k = 0; k < K; k++) {
    double alpha = 0;
    for (int64_t i = 0; i < hw; i++) alpha += ga[dd_layout_index(&l, k, i)];
    alpha /= (double)hw;
    for (int64_t i = 0; i < hw; i++) cam[i] += (float)alpha * a[dd_layout_index(&l, k, i)];
  }
  for (int64_t i = 0; i < hw; i++) cam[i] = fmaxf(cam[i], 0);
  return DD_OK;
}

int dd_saliency(dd_plan *p, int input, int scores, int cls, int smoothgrad, float noise,
                uint64_t seed, float *sal, dd_err *err) {
  dd_tensor *X = dd_plan_tensor(p, input), *gX = dd_plan_grad(p, input);
  if (!X || !gX || X->shape.ndim != 4 || X->shape.d[0] != 1 || X->shape.d[1] != 3)
    return dd_fail(err, DD_EARG, "saliency: value %d is not a 1 x 3 x H x W input with a "
                   "gradient in this plan", input);
  if (smoothgrad < 0 || smoothgrad > 1000)
    return dd_fail(err, DD_EARG, "smoothgrad %d is not in 0..1000", smoothgrad);
  if (!(noise >= 0 && noise <= 10)) return dd_fail(err, DD_EARG, "noise %g is not in 0..10", noise);
  size_t ss = (size_t)(X->shape.d[2] * X->shape.d[3]);
  float *x = dd_f32(X);
  const float *gx = dd_f32(gX);
  float *x0 = malloc(3 * ss * sizeof(float));   /* 3 x ss: the clean input */
  float *gsum = malloc(3 * ss * sizeof(float)); /* 3 x ss: the (averaged) gradient */
  if (!x0 || !gsum) {
    free(x0);
    free(gsum);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  memcpy(gsum, gx, 3 * ss * sizeof(float));
  int rc = DD_OK;
  if (smoothgrad > 1) {
    memcpy(x0, x, 3 * ss * sizeof(float));
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (size_t i = 0; i < 3 * ss; i++) {
      lo = fminf(lo, x0[i]);
      hi = fmaxf(hi, x0[i]);
    }
    float sigma = noise * (hi - lo);
    uint64_t rng = seed;
    memset(gsum, 0, 3 * ss * sizeof(float));
    for (int s = 0; s < smoothgrad && !rc; s++) {
      for (size_t i = 0; i < 3 * ss; i++) x[i] = x0[i] + sigma * dd_rng_normal(&rng);
      dd_plan_forward(p);
      rc = dd_explain_backward(p, scores, cls, err);
      for (size_t i = 0; i < 3 * ss; i++) gsum[i] += gx[i] / (float)smoothgrad;
    }
  }
  if (!rc)
    for (size_t i = 0; i < ss; i++)
      sal[i] = fmaxf(fabsf(gsum[i]), fmaxf(fabsf(gsum[ss + i]), fabsf(gsum[2 * ss + i])));
  free(x0);
  free(gsum);
  return rc;
}

/* The image at the network's size.  One already framed at that size is used as it is: a
 * resample at scale 1 still filters, and classify would then see other pixels than explain. */
static int explain_input(const dd_image *im, int S, dd_image **small, dd_err *err) {
  if (im->w != S || im->h != S) return dd_image_resize(im, S, S, small, err);
  int rc = dd_image_new(S, S, small, err);
  if (!rc) memcpy((*small)->rgb, im->rgb, (size_t)S * S * 3 * sizeof(float));
  return rc;
}

/* The Grad-CAM layer: o->layer, or the last spatial value the scores depend on; checked to
 * feed the scores and to be N x C x H x W. */
static int explain_layer(const dd_model *m, dd_plan *p, int logits, int want, int *layer,
                         dd_err *err) {
  int v = want >= 0 ? want : last_spatial(m, p);
  if (v < 0 || v >= dd_model_num_values(m))
    return dd_fail(err, DD_ENOTFOUND, "%s: no value with a spatial extent feeds the scores",
                   dd_model_name(m));
  dd_tensor *A = dd_plan_tensor(p, v);
  if (!A || !dd_plan_grad(p, v))
    return dd_fail(err, DD_EARG, "%s: the score '%s' does not depend on '%s'", dd_model_name(m),
                   dd_model_value_name(m, logits), dd_model_value_name(m, v));
  dd_layout l;
  plan_layout(p, v, &l);
  if (!has_grid(&l)) {
    char sb[128];
    return dd_fail(err, DD_ESHAPE, "%s: '%s' is %s, neither N x C x H x W nor tokens nor a "
                   "channels-last grid", dd_model_name(m), dd_model_value_name(m, v),
                   dd_shape_str(&A->shape, sb, sizeof sb));
  }
  *layer = v;
  return DD_OK;
}

int dd_explain(const dd_model *m, const dd_preproc *pp, const dd_image *im,
               const dd_explain_opts *o, dd_explanation **out, dd_err *err) {
  int rc = check_preproc(pp, err);
  if (!rc) rc = dd_model_image_input(m, NULL, err);
  if (rc) return rc;
  if (o->size < 16 || o->size > 4096)
    return dd_fail(err, DD_EARG, "size %d is not in 16..4096", o->size);
  if (o->smoothgrad < 0 || o->smoothgrad > 1000)
    return dd_fail(err, DD_EARG, "smoothgrad %d is not in 0..1000", o->smoothgrad);
  if (!(o->noise >= 0 && o->noise <= 10))
    return dd_fail(err, DD_EARG, "noise %g is not in 0..10", o->noise);
  int logits;
  rc = dd_vis_logits(m, &logits, err);
  if (rc) return rc;
  int S = o->size;
  size_t ss = (size_t)S * S, npix = (size_t)im->w * im->h;
  dd_image *small = NULL;
  dd_plan *p = NULL;
  dd_explanation *e = calloc(1, sizeof *e);
  float *prob = NULL, *cam = NULL, *sal = NULL;
  if (!e) return dd_fail(err, DD_ENOMEM, "out of memory");

  /* 1. one gradient plan from the S x S input to the scores, and the Grad-CAM layer */
  rc = explain_input(im, S, &small, err);
  if (rc) goto done;
  dd_binding b = input_binding(m, S, S);
  rc = dd_plan_new(m, &b, 1, &logits, 1, DD_PLAN_GRAD | DD_PLAN_EXACT, o->max_memory, &p, err);
  if (rc) goto done;
  dd_tensor *lt = dd_plan_tensor(p, logits);
  int64_t nc = dd_tensor_numel(lt);
  if (!dd_plan_grad(p, logits) || nc < 1 || nc > 1000000) {
    rc = dd_fail(err, DD_ESHAPE, "%s: the scores '%s' are not a vector computed from the input",
                 dd_model_name(m), dd_model_value_name(m, logits));
    goto done;
  }
  int layer = -1;
  if (o->layer >= 0) { /* a layer given is checked before any work */
    rc = explain_layer(m, p, logits, o->layer, &layer, err);
    if (rc) goto done;
  }
  prob = malloc((size_t)nc * sizeof(float));            /* nc */
  sal = malloc(ss * sizeof(float));                     /* S x S */
  e->cam = malloc(npix * sizeof(float));                /* h x w */
  e->saliency = malloc(npix * sizeof(float));           /* h x w */
  if (!prob || !sal || !e->cam || !e->saliency) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }

  /* 2. classify: the forward pass, the softmax, the top 5 and the class explained */
  dd_image_to_input(small, pp, dd_f32(dd_plan_tensor(p, b.value)));
  dd_plan_forward(p);
  const float *z = dd_f32(lt);
  softmax(z, nc, prob);
  e->n_classes = (int)nc;
  top_k(prob, (int)nc, e->top, e->prob);
  int cls = o->cls >= 0 ? o->cls : e->top[0];
  if (cls >= nc) {
    rc = dd_fail(err, DD_EARG, "class %d is not in 0..%lld", cls, (long long)nc - 1);
    goto done;
  }
  e->cls = cls;
  e->logit = z[cls];
  e->prob_cls = prob[cls];
  e->w = im->w;
  e->h = im->h;

  /* 3. one backward pass of the class's score serves Grad-CAM and the plain saliency;
   * Grad-CAM first, since SmoothGrad's noisy passes overwrite the layer.  The default layer
   * is chosen after the backward pass: a token layer must get a gradient on its grid. */
  rc = dd_explain_backward(p, logits, cls, err);
  if (!rc && layer < 0) rc = explain_layer(m, p, logits, -1, &layer, err);
  if (rc) goto done;
  dd_layout lay;
  plan_layout(p, layer, &lay);
  int64_t ch = lay.grid_h, cw = lay.grid_w;
  e->layer = layer;
  e->cam_w = (int)cw;
  e->cam_h = (int)ch;
  cam = malloc((size_t)(ch * cw) * sizeof(float)); /* ch x cw */
  if (!cam) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  rc = dd_gradcam(p, layer, cam, err);
  if (!rc) rc = dd_saliency(p, b.value, logits, cls, o->smoothgrad, o->noise, o->seed, sal, err);
  if (rc) goto done;

  /* 4. both maps at the image's size, and where Grad-CAM peaks */
  resample_map(cam, (int)cw, (int)ch, e->cam, im->w, im->h);
  resample_map(sal, S, S, e->saliency, im->w, im->h);
  size_t best = 0;
  for (size_t i = 1; i < npix; i++)
    if (e->cam[i] > e->cam[best]) best = i;
  e->cam_x = (int)(best % (size_t)im->w);
  e->cam_y = (int)(best / (size_t)im->w);
  *out = e;
  e = NULL;
done:
  dd_explanation_free(e);
  dd_image_free(small);
  dd_plan_free(p);
  free(prob);
  free(cam);
  free(sal);
  return rc;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Panels drawn at the image's own height are kept at least this many pixels on their shorter
 * side: a thumbnail smaller than that shows nothing. */
#define PANEL_MIN 64
/* Longest panel side at the default height. */
#define PANEL_DEFAULT_MAX 320
/* A panel is at most this many times longer than wide (or wide than long); a more elongated
 * image is letterboxed in it, so a 4000x2 image does not make a 12008x2 picture. */
#define PANEL_MAX_ASPECT 4

/* The panels' size for a w x h image and a requested height (<= 0: automatic), and the size
 * and place of the image inside a panel. */
static void panel_geometry(int w, int h, int height, int *pw, int *ph, int *iw, int *ih, int *ox,
                           int *oy) {
  double a = (double)w / h;
  double pa = a < 1.0 / PANEL_MAX_ASPECT ? 1.0 / PANEL_MAX_ASPECT
              : a > PANEL_MAX_ASPECT     ? PANEL_MAX_ASPECT
                                         : a;
  int H, W;
  if (height > 0) {
    H = height;
    W = (int)lround(H * pa);
  } else {
    H = h < PANEL_MIN ? PANEL_MIN : h > PANEL_DEFAULT_MAX ? PANEL_DEFAULT_MAX : h;
    W = (int)lround(H * pa);
    if (W < PANEL_MIN) { /* tall and narrow: widen, and lengthen to keep the aspect */
      W = PANEL_MIN;
      H = (int)lround(W / pa);
    }
  }
  if (W < 1) W = 1;
  /* the image, scaled to fit the panel, centred */
  double k = fmin((double)W / w, (double)H / h);
  int cw = (int)lround(w * k), ch = (int)lround(h * k);
  *iw = cw < 1 ? 1 : cw > W ? W : cw;
  *ih = ch < 1 ? 1 : ch > H ? H : ch;
  *pw = W;
  *ph = H;
  *ox = (W - *iw) / 2;
  *oy = (H - *ih) / 2;
}

int dd_explain_picture(const dd_image *im, const dd_explanation *e, int height, dd_image **out,
                       dd_err *err) {
  if (im->w != e->w || im->h != e->h)
    return dd_fail(err, DD_EARG, "the image is %dx%d but the explanation is of a %dx%d image",
                   im->w, im->h, e->w, e->h);
  if (height > 4096) return dd_fail(err, DD_EARG, "height %d is larger than 4096", height);
  int W, H, iw, ih, ox, oy, gap = 4;
  panel_geometry(im->w, im->h, height, &W, &H, &iw, &ih, &ox, &oy);
  dd_image *panel = NULL, *pic = NULL;
  float *cam = malloc((size_t)iw * ih * sizeof(float)), *sal = malloc((size_t)iw * ih * sizeof(float));
  float *sorted = malloc((size_t)e->w * e->h * sizeof(float));
  int rc = DD_OK;
  if (!cam || !sal || !sorted) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  rc = dd_image_resize(im, iw, ih, &panel, err);
  if (!rc) rc = dd_image_new(3 * W + 2 * gap, H, &pic, err);
  if (rc) goto done;
  resample_map(e->cam, e->w, e->h, cam, iw, ih);
  resample_map(e->saliency, e->w, e->h, sal, iw, ih);
  float cmax = 0;
  for (size_t i = 0; i < (size_t)iw * ih; i++) cmax = fmaxf(cmax, cam[i]);
  /* Saliency is spiky: scaling to the maximum would leave a black picture with a few dots. */
  memcpy(sorted, e->saliency, (size_t)e->w * e->h * sizeof(float));
  qsort(sorted, (size_t)e->w * e->h, sizeof(float), cmp_float);
  float smax = sorted[(size_t)((double)(e->w * (size_t)e->h - 1) * 0.995)];
  for (size_t i = 0; i < (size_t)pic->w * pic->h * 3; i++) pic->rgb[i] = 255;
  for (int y = 0; y < ih; y++)
    for (int x = 0; x < iw; x++) {
      size_t i = (size_t)y * iw + x;
      const float *src = panel->rgb + i * 3;
      float heat[3], sv[3], blend[3];
      dd_colormap(DD_CMAP_INFERNO, cmax > 0 ? cam[i] / cmax : 0, heat);
      dd_colormap(DD_CMAP_INFERNO, smax > 0 ? sal[i] / smax : 0, sv);
      for (int c = 0; c < 3; c++) blend[c] = 0.45f * src[c] + 0.55f * heat[c];
      put_pixel(pic, ox + x, oy + y, src);
      put_pixel(pic, W + gap + ox + x, oy + y, blend);
      put_pixel(pic, 2 * (W + gap) + ox + x, oy + y, sv);
    }
  /* A cross on the maximum, black-edged cyan so it shows on any colour. */
  int mx = W + gap + ox + (int)((e->cam_x + 0.5) * iw / e->w);
  int my = oy + (int)((e->cam_y + 0.5) * ih / e->h);
  const float black[3] = {0, 0, 0}, cyan[3] = {0, 255, 255};
  int arm = H / 30 + 3;
  for (int pass = 0; pass < 2; pass++)
    for (int d = -arm; d <= arm; d++)
      for (int t = -(2 - pass); t <= 2 - pass; t++) {
        const float *col = pass ? cyan : black;
        if (mx + d >= W + gap && mx + d < 2 * W + gap) put_pixel(pic, mx + d, my + t, col);
        if (mx + t >= W + gap && mx + t < 2 * W + gap) put_pixel(pic, mx + t, my + d, col);
      }
  *out = pic;
  pic = NULL;
done:
  dd_image_free(panel);
  dd_image_free(pic);
  free(cam);
  free(sal);
  free(sorted);
  return rc;
}
