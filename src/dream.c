/* DeepDream: objective, gradient through tiles, normalization, octaves (see dream/dream.h). */
#include "dream/dream.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/layout.h"
#include "ops/sgemm.h"
#include "plan/plan.h"
#include "util.h"

/* Rows of the guide's dot-product matrix computed at once: bounds its buffer. */
#define GUIDE_BLOCK 256

typedef struct guide_feat {
  float *y; /* c x m: the guide image's activations at the layer */
  int64_t c, m;
} guide_feat;

/* Plans a dreamer keeps for sizes it has seen (the octaves of a movie's frames): those in the
 * host's memory cost only their bookkeeping; the least recently used goes first. */
#define DREAM_PLANS 8

typedef struct kept_plan {
  dd_plan *plan; /* NULL: a free slot */
  int w, h;      /* its input size */
  dd_layout lay[DD_DREAM_MAX_LAYERS];
  unsigned long used; /* the dreamer's clock when last used */
} kept_plan;

struct dd_dreamer {
  const dd_model *m;
  dd_dream_params p; /* p.guide is not kept */
  int input;
  float k[3], b[3]; /* model channel c: x = pixel * k[c] - b[c] */
  int src[3];       /* model channel c reads this pixel channel */
  int targets[DD_DREAM_MAX_LAYERS], n_targets;
  dd_plan *plan;
  int pw, ph; /* the plan's input size */
  dd_plan *host; /* NULL, or the plan of the largest size to come: smaller ones use its memory */
  int rw, rh;    /* the image size the host was reserved for */
  kept_plan kept[DREAM_PLANS]; /* plans in the host's memory, the host's own among them */
  unsigned long clock;
  int iw, ih; /* the image size the tiling was chosen for */
  int tw, th; /* tile size for that image (the image's size when untiled) */
  int over_w, over_h; /* smallest whole image found over the budget (0: none yet) */
  int *mapx, *mapy, map_cap;
  guide_feat guide[DD_DREAM_MAX_LAYERS];
  float *gemm;
  int fixed, nw, nh;  /* a fixed-size model (dream/layout.h): every tile is nw x nh */
  dd_layout lay[DD_DREAM_MAX_LAYERS]; /* each layer's layout in the current plan */
};

/* ---- small helpers ---- */

static int wrap(int64_t i, int n) {
  int64_t r = i % n;
  return (int)(r < 0 ? r + n : r);
}

static float *alloc_floats(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

/* Sums are taken in at most this many chunks whose bounds depend only on n, added in order:
 * the result is the same whatever the number of threads, so a seed repeats exactly. */
#define SUM_CHUNKS 1024

enum { SUM_ABS, SUM_SQ, SUM_PLAIN };

/* The sum over v[0..n) of |v| (SUM_ABS), v^2 (SUM_SQ) or v (SUM_PLAIN): float sums of 16
 * lanes within each chunk (they vectorize), added in double across lanes and chunks. */
static double sum_of(const float *v, size_t n, int what) {
  double part[SUM_CHUNKS];
  size_t per = (n + SUM_CHUNKS - 1) / SUM_CHUNKS;
  per = per < 4096 ? 4096 : (per + 15) / 16 * 16;
  size_t chunks = (n + per - 1) / per;
#pragma omp parallel for schedule(static) if (n > DD_PAR_MIN)
  for (size_t c = 0; c < chunks; c++) {
    size_t a = c * per, b = a + per < n ? a + per : n;
    float lane[16] = {0};
    size_t i = a;
    for (; i + 16 <= b; i += 16)
#pragma omp simd
      for (int l = 0; l < 16; l++) {
        float x = v[i + l];
        lane[l] += what == SUM_ABS ? fabsf(x) : what == SUM_SQ ? x * x : x;
      }
    double t = 0;
    for (; i < b; i++) {
      double x = v[i];
      t += what == SUM_ABS ? fabs(x) : what == SUM_SQ ? x * x : x;
    }
    for (int l = 0; l < 16; l++) t += lane[l];
    part[c] = t;
  }
  double sum = 0;
  for (size_t c = 0; c < chunks; c++) sum += part[c];
  return sum;
}

static void scale_floats(float *v, size_t n, double k) {
#pragma omp parallel for schedule(static) if (n > DD_PAR_MIN)
  for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] * k);
}

/* ---- layer specs ---- */

void dd_dream_params_init(dd_dream_params *p) {
  memset(p, 0, sizeof *p);
  p->octaves = 4;
  p->octave_scale = 1.4f;
  p->iters = 10;
  p->step = 1.5f;
  p->jitter = 32;
  p->norm = DD_NORM_MEANABS;
  p->lap_levels = 4;
}

int dd_dream_layer_spec(const char *spec, char *name, size_t name_size, int *channel,
                        float *weight, dd_err *err) {
  size_t len = strlen(spec);
  float w = 1.f;
  int ch = -1;
  const char *colon = strrchr(spec, ':');
  if (colon) {
    const char *ws = colon + 1;
    char *end;
    errno = 0;
    double d = strtod(ws, &end);
    if (!*ws || end == ws || *end || errno || !isfinite(d) || isspace((unsigned char)*ws))
      return dd_fail(err, DD_EARG, "layer '%s': the weight after ':' must be a number, got '%s'",
                     spec, ws);
    w = (float)d;
    len = (size_t)(colon - spec);
  }
  const char *hash = NULL;
  for (size_t i = len; i-- > 0 && !hash;)
    if (spec[i] == '#') hash = spec + i;
  if (hash) {
    const char *cs = hash + 1;
    size_t cl = (size_t)(spec + len - cs);
    long v = 0;
    int ok = cl > 0 && cl <= 9;
    for (size_t i = 0; ok && i < cl; i++) {
      if (!isdigit((unsigned char)cs[i])) ok = 0;
      else v = v * 10 + (cs[i] - '0');
    }
    if (!ok)
      return dd_fail(err, DD_EARG,
                     "layer '%s': the channel after '#' must be a non-negative integer, got '%.*s'",
                     spec, (int)cl, cs);
    ch = (int)v;
    len = (size_t)(hash - spec);
  }
  if (len == 0) return dd_fail(err, DD_EARG, "layer '%s': no layer name", spec);
  if (len >= name_size) return dd_fail(err, DD_ELIMIT, "layer '%s': name too long", spec);
  memcpy(name, spec, len);
  name[len] = 0;
  *channel = ch;
  *weight = w;
  return DD_OK;
}

int dd_dream_layer_resolve(const dd_model *m, const char *spec, dd_dream_layer *out,
                           dd_err *err) {
  int v = dd_model_find(m, spec);
  if (v >= 0 && !dd_model_value_is_const(m, v)) {
    out->value = v;
    out->channel = -1;
    out->weight = 1.f;
    return DD_OK;
  }
  char name[512];
  int ch;
  float w;
  int rc = dd_dream_layer_spec(spec, name, sizeof name, &ch, &w, err);
  if (rc) return rc;
  rc = dd_model_resolve(m, name, &v, err);
  if (rc) return rc;
  if (dd_model_value_is_const(m, v))
    return dd_fail(err, DD_EARG, "%s: '%s' is a weight, not a layer", dd_model_name(m), name);
  out->value = v;
  out->channel = ch;
  out->weight = w;
  return DD_OK;
}

/* ---- the objective ---- */

/* Checks the layers against a built plan: each must reach the input and have its channel. */
static int check_layers(const dd_model *m, dd_plan *plan, int input, const dd_dream_layer *ls,
                        int n, dd_layout *lay, dd_err *err) {
  if (!dd_plan_grad(plan, input))
    return dd_fail(err, DD_EARG, "%s: no gradient reaches the input '%s'", dd_model_name(m),
                   dd_model_value_name(m, input));
  for (int i = 0; i < n; i++) {
    const char *name = dd_model_value_name(m, ls[i].value);
    dd_tensor *t = dd_plan_tensor(plan, ls[i].value);
    if (!t || t->dtype != DD_F32 || !dd_plan_grad(plan, ls[i].value))
      return dd_fail(err, DD_EARG, "%s: layer '%s' does not depend on the input",
                     dd_model_name(m), name);
    const dd_shape *is = &dd_plan_tensor(plan, input)->shape;
    dd_value_layout(m, ls[i].value, &t->shape, (int)is->d[is->ndim - 1],
                    (int)is->d[is->ndim >= 2 ? is->ndim - 2 : 0], &lay[i]);
    if (ls[i].channel >= 0) {
      int64_t c = lay[i].channels;
      if (lay[i].channel_axis < 0 || ls[i].channel >= c)
        return dd_fail(err, DD_EARG, "%s: layer '%s' has %lld channels; channel %d is out of "
                       "range (0..%lld)", dd_model_name(m), name, (long long)c, ls[i].channel,
                       (long long)c - 1);
    }
  }
  return DD_OK;
}

/* Objective_guide at one layer: each position's gradient is the guide feature with the
 * largest dot product; the objective is the sum of those dot products. */
static double guide_seed(const float *a, float *g, int64_t c, int64_t n, const guide_feat *gf,
                         float w, float *buf) {
  double obj = 0;
  for (int64_t i0 = 0; i0 < n; i0 += GUIDE_BLOCK) {
    int64_t nb = n - i0 < GUIDE_BLOCK ? n - i0 : GUIDE_BLOCK;
    /* buf (nb x m) = a's columns i0.. (c x nb, transposed) times the guide's features
     * (c x m); dd_sgemm's sums do not depend on the number of threads (OpenBLAS's do, and a
     * flipped argmax would change the picture) */
    dd_sgemm(nb, gf->m, c, a + i0, 1, n, gf->y, gf->m, buf, gf->m, 0, NULL, 1);
    for (int64_t r = 0; r < nb; r++) {
      const float *row = buf + r * gf->m;
      int64_t best = 0;
      for (int64_t j = 1; j < gf->m; j++)
        if (row[j] > row[best]) best = j;
      obj += (double)w * row[best];
      for (int64_t ch = 0; ch < c; ch++) g[ch * n + i0 + r] += w * gf->y[ch * gf->m + best];
    }
  }
  return obj;
}

/* Seeds the layers' gradients (after dd_plan_zero_grad) and returns the objective. */
static double seed_objective(dd_plan *plan, const dd_dream_layer *ls, const dd_layout *lay,
                             int n, const guide_feat *guide, float *gemm) {
  double obj = 0;
  for (int l = 0; l < n; l++) {
    const dd_tensor *t = dd_plan_tensor(plan, ls[l].value);
    float *g = dd_f32(dd_plan_grad(plan, ls[l].value));
    const float *a = dd_f32(t);
    int64_t total = dd_tensor_numel(t);
    float w = ls[l].weight;
    if (guide && guide[l].y) {
      int64_t c = guide[l].c;
      obj += guide_seed(a, g, c, total / c, &guide[l], w, gemm);
      continue;
    }
    /* the whole tensor, or one channel: along its channel axis (dream/layout.h), the
     * elements (o, channel, i) for every o before the axis and i after it */
    int64_t batch = 1, per = total, stride = 0, off0 = 0;
    if (ls[l].channel >= 0) {
      batch = lay[l].outer;
      per = lay[l].inner;
      stride = lay[l].channels * per;
      off0 = ls[l].channel * per;
    }
    double s = 0;
    for (int64_t bi = 0; bi < batch; bi++) {
      const float *ab = a + off0 + bi * stride;
      float *gb = g + off0 + bi * stride;
      s += sum_of(ab, (size_t)per, SUM_SQ);
#pragma omp parallel for schedule(static) if (per > DD_PAR_MIN)
      for (int64_t i = 0; i < per; i++) gb[i] += w * ab[i];
    }
    obj += 0.5 * w * s;
  }
  return obj;
}

static int unique_targets(const dd_dream_layer *ls, int n, int *targets) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    int seen = 0;
    for (int j = 0; j < k; j++) seen |= targets[j] == ls[i].value;
    if (!seen) targets[k++] = ls[i].value;
  }
  return k;
}

int dd_input_gradient(const dd_model *m, const dd_tensor *input, const dd_dream_layer *layers,
                      int n_layers, size_t max_memory, dd_tensor **grad, double *objective,
                      dd_err *err) {
  int in = dd_model_input(m);
  if (in < 0) return dd_fail(err, DD_EARG, "%s: the model has no data input", dd_model_name(m));
  if (input->dtype != DD_F32)
    return dd_fail(err, DD_EARG, "%s: input '%s' must be float32", dd_model_name(m),
                   dd_model_value_name(m, in));
  if (n_layers < 1 || n_layers > DD_DREAM_MAX_LAYERS)
    return dd_fail(err, DD_EARG, "between 1 and %d layers, not %d", DD_DREAM_MAX_LAYERS,
                   n_layers);
  for (int i = 0; i < n_layers; i++)
    if (layers[i].value < 0 || layers[i].value >= dd_model_num_values(m))
      return dd_fail(err, DD_EARG, "layer %d names no value", i);
  int targets[DD_DREAM_MAX_LAYERS];
  int nt = unique_targets(layers, n_layers, targets);
  dd_binding b = {in, input->shape, NULL};
  dd_plan *plan;
  int rc = dd_plan_new(m, &b, 1, targets, nt, DD_PLAN_GRAD | DD_PLAN_REUSE | DD_PLAN_EXACT,
                       max_memory, &plan, err);
  if (rc) return rc;
  dd_layout lay[DD_DREAM_MAX_LAYERS];
  rc = check_layers(m, plan, in, layers, n_layers, lay, err);
  dd_tensor *out = NULL;
  if (!rc) rc = dd_tensor_new(DD_F32, &input->shape, 0, &out, err);
  if (rc) {
    dd_plan_free(plan);
    return rc;
  }
  dd_tensor *x = dd_plan_tensor(plan, in);
  memcpy(x->data, input->data, (size_t)dd_tensor_numel(input) * sizeof(float));
  dd_plan_forward(plan);
  dd_plan_zero_grad(plan);
  double obj = seed_objective(plan, layers, lay, n_layers, NULL, NULL);
  dd_plan_backward(plan);
  memcpy(out->data, dd_plan_grad(plan, in)->data, (size_t)dd_tensor_numel(out) * sizeof(float));
  dd_plan_free(plan);
  *grad = out;
  if (objective) *objective = obj;
  return DD_OK;
}

/* ---- the dreamer: plans, tiles, guide ---- */

static int check_params(const dd_model *m, const dd_dream_params *p, dd_err *err) {
  if (p->n_layers < 1 || p->n_layers > DD_DREAM_MAX_LAYERS)
    return dd_fail(err, DD_EARG, "give between 1 and %d layers (got %d)", DD_DREAM_MAX_LAYERS,
                   p->n_layers);
  for (int i = 0; i < p->n_layers; i++) {
    if (p->layers[i].value < 0 || p->layers[i].value >= dd_model_num_values(m))
      return dd_fail(err, DD_EARG, "layer %d names no value of %s", i, dd_model_name(m));
    if (!isfinite(p->layers[i].weight))
      return dd_fail(err, DD_EARG, "layer '%s': the weight must be finite",
                     dd_model_value_name(m, p->layers[i].value));
    if (p->guide && p->layers[i].channel >= 0)
      return dd_fail(err, DD_EARG, "layer '%s': a guide image and a single channel cannot be "
                     "combined", dd_model_value_name(m, p->layers[i].value));
  }
  if (p->octaves < 1 || p->octaves > 64)
    return dd_fail(err, DD_EARG, "octaves must be 1..64 (got %d)", p->octaves);
  if (p->octaves > 1 && !(p->octave_scale > 1.f && p->octave_scale <= 16.f))
    return dd_fail(err, DD_EARG, "the octave scale must be > 1 and <= 16 (got %g)",
                   p->octave_scale);
  if (p->iters < 1 || p->iters > 1000000)
    return dd_fail(err, DD_EARG, "iterations per octave must be 1..1000000 (got %d)", p->iters);
  if (!(p->step > 0.f) || !isfinite(p->step))
    return dd_fail(err, DD_EARG, "the step must be a number > 0 (got %g)", p->step);
  if (p->jitter < 0 || p->jitter > 1 << 20)
    return dd_fail(err, DD_EARG, "the jitter must be >= 0 (got %d)", p->jitter);
  if (p->norm != DD_NORM_MEANABS && p->norm != DD_NORM_STD && p->norm != DD_NORM_LAPLACIAN)
    return dd_fail(err, DD_EARG, "unknown normalization %d", (int)p->norm);
  if (p->precision != DD_PRECISION_AUTO && p->precision != DD_PRECISION_FP32 &&
      p->precision != DD_PRECISION_BF16)
    return dd_fail(err, DD_EARG, "unknown precision %d", (int)p->precision);
  if (p->norm == DD_NORM_LAPLACIAN && (p->lap_levels < 1 || p->lap_levels > 12))
    return dd_fail(err, DD_EARG, "Laplacian levels must be 1..12 (got %d)", p->lap_levels);
  if (p->tile != 0 && (p->tile < DD_DREAM_MIN_TILE || p->tile > 1 << 16))
    return dd_fail(err, DD_EARG, "the tile size must be %d..65536 (got %d)", DD_DREAM_MIN_TILE,
                   p->tile);
  if (p->checkpoint_every < 0)
    return dd_fail(err, DD_EARG, "checkpoint interval must be >= 0 (got %d)",
                   p->checkpoint_every);
  if (p->guide && (!p->guide->rgb || p->guide->w < 1 || p->guide->h < 1))
    return dd_fail(err, DD_EARG, "the guide image is empty");
  return dd_model_image_input(m, NULL, err);
}

static dd_binding image_binding(int input, int w, int h) {
  int64_t dims[4] = {1, 3, h, w};
  dd_binding b = {input, dd_shape_make(4, dims), NULL};
  return b;
}

/* Model input (planar, model channel order) from pixels: out[c][y][x] for the rows and
 * columns of `img` listed in mapy/mapx. */
static void fill_input(const dd_dreamer *d, const dd_image *img, const int *mapy,
                       const int *mapx, int tw, int th, float *out) {
  size_t plane = (size_t)tw * th;
  for (int c = 0; c < 3; c++) {
    float k = d->k[c], b = d->b[c];
    int src = d->src[c];
    float *o = out + c * plane;
#pragma omp parallel for schedule(static) if (plane > DD_PAR_MIN)
    for (int y = 0; y < th; y++) {
      const float *row = img->rgb + (size_t)mapy[y] * img->w * 3 + src;
      float *orow = o + (size_t)y * tw;
      for (int x = 0; x < tw; x++) orow[x] = row[(size_t)mapx[x] * 3] * k - b;
    }
  }
}

static int compute_guide_at(dd_dreamer *d, const dd_image *guide, dd_err *err);

static int compute_guide(dd_dreamer *d, const dd_image *guide, dd_err *err) {
  dd_image *resized = NULL;
  if (d->fixed && (guide->w != d->nw || guide->h != d->nh)) {
    /* a fixed-size model sees the guide at its size */
    int rc = dd_image_resize(guide, d->nw, d->nh, &resized, err);
    if (rc) return rc;
    guide = resized;
  }
  int rc = compute_guide_at(d, guide, err);
  dd_image_free(resized);
  return rc;
}

static int compute_guide_at(dd_dreamer *d, const dd_image *guide, dd_err *err) {
  dd_plan *plan;
  dd_binding b = image_binding(d->input, guide->w, guide->h);
  int rc = dd_plan_new(d->m, &b, 1, d->targets, d->n_targets, DD_PLAN_REUSE, d->p.max_memory,
                       &plan, err);
  if (rc) return dd_err_prefix(err, "guide image (%dx%d)", guide->w, guide->h);
  int *mx = malloc(sizeof(int) * (size_t)guide->w), *my = malloc(sizeof(int) * (size_t)guide->h);
  if (!mx || !my) {
    free(mx);
    free(my);
    dd_plan_free(plan);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  for (int x = 0; x < guide->w; x++) mx[x] = x;
  for (int y = 0; y < guide->h; y++) my[y] = y;
  fill_input(d, guide, my, mx, guide->w, guide->h, dd_f32(dd_plan_tensor(plan, d->input)));
  free(mx);
  free(my);
  dd_plan_forward(plan);
  int64_t max_m = 0;
  for (int l = 0; l < d->p.n_layers && !rc; l++) {
    const dd_tensor *t = dd_plan_tensor(plan, d->p.layers[l].value);
    dd_layout gl;
    if (t) dd_value_layout(d->m, d->p.layers[l].value, &t->shape, guide->w, guide->h, &gl);
    if (t && gl.kind != DD_LAYOUT_NCHW && gl.kind != DD_LAYOUT_VECTOR && gl.kind != DD_LAYOUT_OTHER) {
      rc = dd_fail(err, DD_EUNSUPPORTED, "%s: layer '%s' is %s: a guide works on N x C x H x W "
                   "maps only", dd_model_name(d->m), dd_model_value_name(d->m, d->p.layers[l].value),
                   dd_layout_name(gl.kind));
      break;
    }
    if (!t || t->dtype != DD_F32 || t->shape.ndim < 2 || t->shape.d[0] != 1) {
      rc = dd_fail(err, DD_EARG, "%s: layer '%s' cannot be guided (not a 1xCx... activation)",
                   dd_model_name(d->m), dd_model_value_name(d->m, d->p.layers[l].value));
      break;
    }
    guide_feat *gf = &d->guide[l];
    gf->c = t->shape.d[1];
    gf->m = dd_tensor_numel(t) / gf->c;
    gf->y = alloc_floats((size_t)dd_tensor_numel(t));
    if (!gf->y) rc = dd_fail(err, DD_ENOMEM, "out of memory");
    else memcpy(gf->y, t->data, (size_t)dd_tensor_numel(t) * sizeof(float));
    if (gf->m > max_m) max_m = gf->m;
  }
  dd_plan_free(plan);
  if (rc) return rc;
  d->gemm = alloc_floats((size_t)GUIDE_BLOCK * (size_t)max_m);
  if (!d->gemm) return dd_fail(err, DD_ENOMEM, "out of memory");
  return DD_OK;
}

/* Is plan `p` one of the kept ones? */
static kept_plan *kept_of(dd_dreamer *d, const dd_plan *p) {
  for (int i = 0; p && i < DREAM_PLANS; i++)
    if (d->kept[i].plan == p) return &d->kept[i];
  return NULL;
}

/* Frees the current plan unless it is kept. */
static void drop_current(dd_dreamer *d) {
  if (d->plan && !kept_of(d, d->plan)) dd_plan_free(d->plan);
  d->plan = NULL;
}

/* Frees every plan: the current one, the kept ones, the host last (the others use its memory). */
static void drop_plans(dd_dreamer *d) {
  drop_current(d);
  for (int i = 0; i < DREAM_PLANS; i++) {
    if (d->kept[i].plan != d->host) dd_plan_free(d->kept[i].plan);
    d->kept[i].plan = NULL;
  }
  dd_plan_free(d->host);
  d->host = NULL;
  d->pw = d->ph = d->rw = d->rh = 0;
  d->iw = d->ih = 0;
}

void dd_dreamer_free(dd_dreamer *d) {
  if (!d) return;
  drop_plans(d);
  free(d->mapx);
  free(d->mapy);
  for (int l = 0; l < DD_DREAM_MAX_LAYERS; l++) free(d->guide[l].y);
  free(d->gemm);
  free(d);
}

int dd_dreamer_new(const dd_model *m, const dd_preproc *pp, const dd_dream_params *p,
                   dd_dreamer **out, dd_err *err) {
  int rc = check_params(m, p, err);
  if (rc) return rc;
  for (int c = 0; c < 3; c++)
    if (!(pp->std[c] > 0) || !(pp->scale > 0) || !isfinite(pp->mean[c]))
      return dd_fail(err, DD_EARG, "invalid preprocessing (scale and std must be > 0)");
  dd_dreamer *d = calloc(1, sizeof *d);
  if (!d) return dd_fail(err, DD_ENOMEM, "out of memory");
  d->m = m;
  d->p = *p;
  d->p.guide = NULL;
  d->input = dd_model_input(m);
  for (int c = 0; c < 3; c++) {
    d->k[c] = pp->scale / 255.f / pp->std[c];
    d->b[c] = pp->mean[c] / pp->std[c];
    d->src[c] = pp->bgr ? 2 - c : c;
  }
  d->n_targets = unique_targets(p->layers, p->n_layers, d->targets);
  /* a model that takes one size only is dreamed in tiles of that size; an error here is
   * left to the plans, which say it in their own words */
  dd_input_sizes sz;
  if (!dd_model_input_sizes(m, d->targets, d->n_targets, &sz, NULL) && sz.fixed) {
    d->fixed = 1;
    d->nw = sz.native_w;
    d->nh = sz.native_h;
  }
  if (p->guide && (rc = compute_guide(d, p->guide, err))) {
    dd_dreamer_free(d);
    return rc;
  }
  *out = d;
  return DD_OK;
}

/* Whether kept plan p holds a workspace of its own (its arena is always the host's). */
static int own_scratch(const dd_dreamer *d, const dd_plan *p) {
  return p && p != d->host && p->scratch.size && p->scratch.base != d->host->scratch.base;
}

/* Keeps plan p (of size w x h, its layouts in d->lay) when it lives in the host's memory --
 * its arena, and its workspace too but for one plan at most (the budget counts one plan's own
 * buffers beside the host's) -- making room by freeing the least recently used kept plan
 * (never the host). */
static void keep(dd_dreamer *d, dd_plan *p, int w, int h) {
  if (!d->host || (p != d->host && p->arena.base != d->host->arena.base)) return;
  for (int i = 0; own_scratch(d, p) && i < DREAM_PLANS; i++)
    if (own_scratch(d, d->kept[i].plan)) return;
  kept_plan *slot = NULL;
  for (int i = 0; i < DREAM_PLANS && !slot; i++)
    if (!d->kept[i].plan) slot = &d->kept[i];
  for (int i = 0; i < DREAM_PLANS && !slot; i++) {
    kept_plan *k = &d->kept[i];
    if (k->plan == d->host || k->plan == d->plan) continue;
    if (!slot || k->used < slot->used) slot = k;
  }
  if (!slot) return;
  if (slot->plan) dd_plan_free(slot->plan);
  slot->plan = p;
  slot->w = w;
  slot->h = h;
  memcpy(slot->lay, d->lay, sizeof d->lay);
  slot->used = ++d->clock;
}

static int ensure_plan(dd_dreamer *d, int w, int h, dd_err *err) {
  if (d->plan && d->pw == w && d->ph == h) return DD_OK;
  drop_current(d);
  for (int i = 0; i < DREAM_PLANS; i++) {
    kept_plan *k = &d->kept[i];
    if (k->plan && k->w == w && k->h == h) {
      d->plan = k->plan;
      d->pw = w;
      d->ph = h;
      memcpy(d->lay, k->lay, sizeof d->lay);
      k->used = ++d->clock;
      return DD_OK;
    }
  }
  dd_binding b = image_binding(d->input, w, h);
  dd_plan *plan;
  /* fp32 asked for is fp32-exact (ties stay ties: no Winograd); auto keeps the fast path */
  unsigned bf16 =
      dd_precision_resolve(d->p.precision, 1) == DD_PRECISION_BF16 ? DD_PLAN_BF16
      : d->p.precision == DD_PRECISION_FP32                         ? DD_PLAN_EXACT
                                                                    : 0;
  int rc = dd_plan_new_within(d->host, d->m, &b, 1, d->targets, d->n_targets,
                              DD_PLAN_GRAD | DD_PLAN_REUSE | bf16, d->p.max_memory, &plan, err);
  if (rc) return rc;
  rc = check_layers(d->m, plan, d->input, d->p.layers, d->p.n_layers, d->lay, err);
  for (int l = 0; !rc && l < d->p.n_layers; l++) {
    const dd_tensor *t = dd_plan_tensor(plan, d->p.layers[l].value);
    if (d->guide[l].y && (t->shape.ndim < 2 || t->shape.d[0] != 1 || t->shape.d[1] != d->guide[l].c))
      rc = dd_fail(err, DD_EARG, "layer '%s' cannot be guided",
                   dd_model_value_name(d->m, d->p.layers[l].value));
  }
  if (rc) {
    dd_plan_free(plan);
    return rc;
  }
  d->plan = plan;
  d->pw = w;
  d->ph = h;
  keep(d, plan, w, h);
  return DD_OK;
}

/* Context each automatic tile has around the pixels it owns (the random roll moves the
 * seams anyway; the notebook's tiles have none). */
#define TILE_MARGIN 32

/* The side of tiles no longer than t that cover n in the fewest tiles, each the tiles' share
 * of n plus TILE_MARGIN on both sides. */
static int fit_tile(int n, int t) {
  if (t >= n || t <= 2 * TILE_MARGIN) return t;
  int k = (n + t - 2 * TILE_MARGIN - 1) / (t - 2 * TILE_MARGIN);
  int side = (n + k - 1) / k + 2 * TILE_MARGIN;
  return side < t ? side : t;
}

/* Chooses the tiles for a w x h image and makes their plan. */
static int prepare(dd_dreamer *d, int w, int h, dd_err *err) {
  if (d->plan && d->iw == w && d->ih == h) return DD_OK;
  static const int sizes[] = {1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, DD_DREAM_MIN_TILE};
  int tw = w, th = h, rc;
  if (d->fixed) {
    /* tiles of the model's only size; an image smaller than it is wrapped around to fill
     * the tile (the gradient is taken from its one central copy) */
    tw = d->nw;
    th = d->nh;
    rc = ensure_plan(d, tw, th, err);
  } else if (d->p.tile > 0) {
    tw = d->p.tile < w ? d->p.tile : w;
    th = d->p.tile < h ? d->p.tile : h;
    rc = ensure_plan(d, tw, th, err);
  } else {
    /* an image at least as large as one already over the budget goes straight to tiles,
     * keeping the tile plan it already has */
    int over = d->over_w && w >= d->over_w && h >= d->over_h;
    rc = over ? DD_ELIMIT : ensure_plan(d, w, h, err);
    if (rc == DD_ELIMIT && (!d->over_w || (w <= d->over_w && h <= d->over_h))) {
      d->over_w = w;
      d->over_h = h;
    }
    for (size_t i = 0; rc == DD_ELIMIT && i < sizeof sizes / sizeof sizes[0]; i++) {
      if (sizes[i] >= w && sizes[i] >= h) continue;
      tw = sizes[i] < w ? sizes[i] : w;
      th = sizes[i] < h ? sizes[i] : h;
      rc = ensure_plan(d, tw, th, err);
      if (rc == DD_OK) {
        /* The largest tile that fits the budget: now the fewest tiles of it that cover the
         * image, each shrunk to its share plus a margin of context on each side (a 2309-pixel
         * row takes 3 tiles of 834, not 3 of 1024).  No dim grows, so the plan still fits. */
        int sw = fit_tile(w, tw), sh = fit_tile(h, th);
        if (sw != tw || sh != th) {
          rc = ensure_plan(d, sw, sh, err);
          tw = sw;
          th = sh;
        }
      }
    }
  }
  if (rc) {
    d->iw = d->ih = 0;
    return dd_err_prefix(err, "%dx%d image", w, h);
  }
  int need = tw > th ? tw : th;
  if (need > d->map_cap) {
    int *mx = realloc(d->mapx, sizeof(int) * (size_t)need);
    if (mx) d->mapx = mx;
    int *my = realloc(d->mapy, sizeof(int) * (size_t)need);
    if (my) d->mapy = my;
    if (!mx || !my) return dd_fail(err, DD_ENOMEM, "out of memory");
    d->map_cap = need;
  }
  d->iw = w;
  d->ih = h;
  d->tw = tw;
  d->th = th;
  return DD_OK;
}

/* Makes the plan for the largest image size the dream will see first, and keeps it: the plans
 * of the smaller sizes (earlier octaves) then run in its memory instead of faulting in fresh
 * pages for each one. */
static int reserve(dd_dreamer *d, int w, int h, dd_err *err) {
  if (d->host && d->rw == w && d->rh == h) return DD_OK;
  drop_plans(d);
  int rc = prepare(d, w, h, err);
  if (rc) return rc;
  d->host = d->plan;
  d->rw = w;
  d->rh = h;
  keep(d, d->plan, d->pw, d->ph);
  return DD_OK;
}

void dd_dreamer_tile_size(const dd_dreamer *d, int *tw, int *th) {
  *tw = d->tw;
  *th = d->th;
}

/* Tiles along one axis of length n with tiles of t <= n: count, and the margin `lo` before the
 * part of each tile that it owns (every tile owns about n/count pixels around its center). */
static void axis_tiles(int n, int t, int *count, int *lo) {
  int k = (n + t - 1) / t;
  int maxlen = (n + k - 1) / k;
  *count = k;
  *lo = (t - maxlen) / 2;
}

int dd_dreamer_gradient(dd_dreamer *d, const dd_image *img, int dx, int dy, float *grad,
                        double *objective, dd_err *err) {
  int rc = prepare(d, img->w, img->h, err);
  if (rc) return rc;
  int W = img->w, H = img->h, tw = d->tw, th = d->th;
  int nx, ny, lox, loy;
  axis_tiles(W, tw, &nx, &lox);
  axis_tiles(H, th, &ny, &loy);
  float *x = dd_f32(dd_plan_tensor(d->plan, d->input));
  const float *gin = dd_f32(dd_plan_grad(d->plan, d->input));
  size_t plane = (size_t)tw * th;
  double obj = 0;
  for (int ty = 0; ty < ny; ty++) {
    int y0 = (int)((int64_t)ty * H / ny), y1 = (int)((int64_t)(ty + 1) * H / ny);
    for (int tx = 0; tx < nx; tx++) {
      if (d->p.cancel && *d->p.cancel) return dd_fail(err, DD_EINTR, "interrupted");
      int x0 = (int)((int64_t)tx * W / nx), x1 = (int)((int64_t)(tx + 1) * W / nx);
      /* tile pixel (lx, ly) is rolled pixel (x0 - lox + lx, y0 - loy + ly) on the torus */
      for (int l = 0; l < tw; l++) d->mapx[l] = wrap((int64_t)x0 - lox + l - dx, W);
      for (int l = 0; l < th; l++) d->mapy[l] = wrap((int64_t)y0 - loy + l - dy, H);
      fill_input(d, img, d->mapy, d->mapx, tw, th, x);
      dd_plan_forward(d->plan);
      dd_plan_zero_grad(d->plan);
      obj += seed_objective(d->plan, d->p.layers, d->lay, d->p.n_layers, d->guide, d->gemm);
      dd_plan_backward(d->plan);
      /* the rows of a tile are distinct rows of the image (tiles are no taller than it) */
      const int *mapx = d->mapx, *mapy = d->mapy;
#pragma omp parallel for schedule(static) if (plane > DD_PAR_MIN)
      for (int ly = loy; ly < loy + (y1 - y0); ly++)
        for (int c = 0; c < 3; c++) {
          const float *g = gin + c * plane + (size_t)ly * tw;
          float k = d->k[c];
          float *row = grad + (size_t)mapy[ly] * W * 3 + d->src[c];
          for (int lx = lox; lx < lox + (x1 - x0); lx++) row[(size_t)mapx[lx] * 3] = g[lx] * k;
        }
    }
  }
  if (objective) *objective = obj;
  return DD_OK;
}

/* ---- normalization ---- */

static const float binom5[5] = {1.f / 16, 4.f / 16, 6.f / 16, 4.f / 16, 1.f / 16};

/* TensorFlow's 'SAME' padding before the first sample, for a stride-2 5-tap filter on n. */
static int same_pad(int n) {
  int out = (n + 1) / 2;
  int total = (out - 1) * 2 + 5 - n;
  return total > 0 ? total / 2 : 0;
}

/* Stride-2 blur along x (dir 0) or y (dir 1) of a w x h x 3 image; out is halved (ceil). */
static void down1(const float *in, int w, int h, int dir, float *out) {
  int n = dir ? h : w, no = (n + 1) / 2, pb = same_pad(n);
  int ow = dir ? w : no, oh = dir ? no : h;
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++) {
      float s[3] = {0, 0, 0};
      int o = dir ? y : x;
      for (int k = 0; k < 5; k++) {
        int i = 2 * o - pb + k;
        if (i < 0 || i >= n) continue;
        const float *p = in + ((size_t)(dir ? i : y) * w + (dir ? x : i)) * 3;
        for (int c = 0; c < 3; c++) s[c] += binom5[k] * p[c];
      }
      float *q = out + ((size_t)y * ow + x) * 3;
      for (int c = 0; c < 3; c++) q[c] = s[c];
    }
}

/* The transpose of down1 times 2 (conv2d_transpose with 4 x the 2-D kernel, split in two):
 * from the halved size back to n along the axis. */
static void up1(const float *in, int w, int h, int dir, int n, float *out) {
  int pb = same_pad(n), nin = dir ? h : w;
  int ow = dir ? w : n, oh = dir ? n : h;
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++) {
      float s[3] = {0, 0, 0};
      int i = dir ? y : x;
      for (int k = 0; k < 5; k++) {
        int t = i + pb - k;
        if (t < 0 || t & 1 || t / 2 >= nin) continue;
        const float *p = in + ((size_t)(dir ? t / 2 : y) * w + (dir ? x : t / 2)) * 3;
        for (int c = 0; c < 3; c++) s[c] += 2.f * binom5[k] * p[c];
      }
      float *q = out + ((size_t)y * ow + x) * 3;
      for (int c = 0; c < 3; c++) q[c] = s[c];
    }
}

static void scale_rms(float *v, size_t n) {
  double rms = sqrt(sum_of(v, n, SUM_SQ) / (double)(n ? n : 1));
  float inv = (float)(1.0 / (rms > 1e-10 ? rms : 1e-10));
#pragma omp parallel for schedule(static) if (n > DD_PAR_MIN)
  for (size_t i = 0; i < n; i++) v[i] *= inv;
}

size_t dd_dream_norm_work(dd_dream_norm norm, int w, int h, int levels) {
  if (norm != DD_NORM_LAPLACIAN) return 0;
  size_t total = (size_t)((w + 1) / 2) * h * 3; /* the one-axis temporary, largest at level 0 */
  int lw = w, lh = h;
  for (int i = 0; i < levels; i++) {
    total += (size_t)lw * lh * 3; /* hi_i */
    lw = (lw + 1) / 2;
    lh = (lh + 1) / 2;
    total += (size_t)lw * lh * 3; /* lo_{i+1} */
  }
  return total;
}

/* The TensorFlow DeepDream tutorial's lap_normalize: split into `levels` band-pass images and
 * the low-pass rest, scale each to unit RMS, merge. */
static void lap_normalize(float *g, int w, int h, int levels, float *work) {
  float *tmp = work;
  float *p = tmp + (size_t)((w + 1) / 2) * h * 3;
  float *hi[13], *lo[13];
  int lw[13], lh[13];
  lw[0] = w;
  lh[0] = h;
  lo[0] = g;
  for (int i = 0; i < levels; i++) {
    hi[i] = p;
    p += (size_t)lw[i] * lh[i] * 3;
    lw[i + 1] = (lw[i] + 1) / 2;
    lh[i + 1] = (lh[i] + 1) / 2;
    lo[i + 1] = p;
    p += (size_t)lw[i + 1] * lh[i + 1] * 3;
  }
  for (int i = 0; i < levels; i++) {
    down1(lo[i], lw[i], lh[i], 0, tmp);
    down1(tmp, lw[i + 1], lh[i], 1, lo[i + 1]);
    up1(lo[i + 1], lw[i + 1], lh[i + 1], 1, lh[i], tmp);
    up1(tmp, lw[i + 1], lh[i], 0, lw[i], hi[i]);
    size_t n = (size_t)lw[i] * lh[i] * 3;
    for (size_t j = 0; j < n; j++) hi[i][j] = lo[i][j] - hi[i][j];
  }
  scale_rms(lo[levels], (size_t)lw[levels] * lh[levels] * 3);
  for (int i = 0; i < levels; i++) scale_rms(hi[i], (size_t)lw[i] * lh[i] * 3);
  for (int i = levels - 1; i >= 0; i--) {
    up1(lo[i + 1], lw[i + 1], lh[i + 1], 1, lh[i], tmp);
    up1(tmp, lw[i + 1], lh[i], 0, lw[i], lo[i]);
    size_t n = (size_t)lw[i] * lh[i] * 3;
    for (size_t j = 0; j < n; j++) lo[i][j] += hi[i][j];
  }
}

/* The factor mean-|g| or std normalization multiplies g by. */
static double norm_scale(dd_dream_norm norm, const float *g, size_t n) {
  if (norm == DD_NORM_STD) {
    double mean = sum_of(g, n, SUM_PLAIN) / (double)n;
    double var = sum_of(g, n, SUM_SQ) / (double)n - mean * mean;
    return 1.0 / (sqrt(var > 0 ? var : 0) + 1e-8);
  }
  double mean_abs = sum_of(g, n, SUM_ABS) / (double)n;
  /* a zero gradient (a dead layer) leaves the image as it is */
  return mean_abs > 0 ? 1.0 / mean_abs : 0;
}

void dd_dream_normalize(dd_dream_norm norm, int levels, float *g, int w, int h, float *work) {
  size_t n = (size_t)w * h * 3;
  if (norm == DD_NORM_LAPLACIAN) {
    lap_normalize(g, w, h, levels, work);
    return;
  }
  scale_floats(g, n, norm_scale(norm, g, n));
}

/* ---- octaves ---- */

/* Bilinear resize of w x h x 3 with corners mapped to corners, as scipy.ndimage.zoom(order=1)
 * does in the notebook: dst = resized src, or with `add`, dst += resized src (the same
 * values added, so either way gives the same sums bit for bit). */
static void resize_bilinear_to(const float *src, int sw, int sh, float *dst, int dw, int dh,
                               int add) {
#pragma omp parallel for schedule(static) if ((size_t)dw * dh * 3 > DD_PAR_MIN)
  for (int y = 0; y < dh; y++) {
    double fy = dh > 1 ? (double)y * (sh - 1) / (dh - 1) : 0;
    int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
    float ty = (float)(fy - y0);
    for (int x = 0; x < dw; x++) {
      double fx = dw > 1 ? (double)x * (sw - 1) / (dw - 1) : 0;
      int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
      float tx = (float)(fx - x0);
      const float *a = src + ((size_t)y0 * sw + x0) * 3, *b = src + ((size_t)y0 * sw + x1) * 3;
      const float *c = src + ((size_t)y1 * sw + x0) * 3, *e = src + ((size_t)y1 * sw + x1) * 3;
      float *o = dst + ((size_t)y * dw + x) * 3;
      for (int k = 0; k < 3; k++) {
        float v = (1 - ty) * ((1 - tx) * a[k] + tx * b[k]) + ty * ((1 - tx) * c[k] + tx * e[k]);
        o[k] = add ? o[k] + v : v;
      }
    }
  }
}

static void resize_bilinear(const float *src, int sw, int sh, float *dst, int dw, int dh) {
  resize_bilinear_to(src, sw, sh, dst, dw, dh, 0);
}

static void clip255(float *v, size_t n) {
#pragma omp parallel for schedule(static) if (n > DD_PAR_MIN)
  for (size_t i = 0; i < n; i++) v[i] = v[i] < 0.f ? 0.f : v[i] > 255.f ? 255.f : v[i];
}

/* cur = clip(cur + step * grad, 0, 255) */
static void step_clip(float *cur, const float *grad, float step, size_t n) {
#pragma omp parallel for schedule(static) if (n > DD_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float v = cur[i] + step * grad[i];
    cur[i] = v < 0.f ? 0.f : v > 255.f ? 255.f : v;
  }
}

typedef struct run_bufs {
  float *base[64];  /* base[0] is the input image (borrowed) */
  float *cur, *grad, *work;
  int cur_is_img;   /* in place, largest octave: cur is the input image (borrowed) */
  dd_image ckpt;
} run_bufs;

static void free_bufs(run_bufs *b, int n) {
  for (int k = 1; k < n; k++) {
    free(b->base[k]);
    b->base[k] = NULL;
  }
  if (!b->cur_is_img) free(b->cur);
  free(b->grad);
  free(b->work);
  free(b->ckpt.rgb);
  b->cur = b->grad = b->work = b->ckpt.rgb = NULL;
}

/* The current result at full size: the base plus this octave's detail, upscaled. */
static void make_checkpoint(run_bufs *b, int k, const int *ow, const int *oh) {
  size_t n = (size_t)ow[k] * oh[k] * 3, full = (size_t)ow[0] * oh[0] * 3;
  if (k == 0) {
    memcpy(b->ckpt.rgb, b->cur, full * sizeof(float));
    return;
  }
  for (size_t i = 0; i < n; i++) b->grad[i] = b->cur[i] - b->base[k][i];
  resize_bilinear(b->grad, ow[k], oh[k], b->ckpt.rgb, ow[0], oh[0]);
  for (size_t i = 0; i < full; i++) b->ckpt.rgb[i] += b->base[0][i];
  clip255(b->ckpt.rgb, full);
}

int dd_dream_run(const dd_model *m, const dd_preproc *pp, const dd_dream_params *p,
                 dd_image *img, dd_dream_progress_fn fn, void *user, dd_err *err) {
  if (!img || !img->rgb || img->w < 1 || img->h < 1)
    return dd_fail(err, DD_EARG, "empty image");
  dd_dreamer *d;
  int rc = dd_dreamer_new(m, pp, p, &d, err);
  if (rc) return rc;
  rc = dd_dreamer_dream(d, img, p->iters, p->seed, fn, user, err);
  dd_dreamer_free(d);
  return rc;
}

int dd_dreamer_dream(dd_dreamer *d, dd_image *img, int iters, uint64_t seed,
                     dd_dream_progress_fn fn, void *user, dd_err *err) {
  if (!img || !img->rgb || img->w < 1 || img->h < 1)
    return dd_fail(err, DD_EARG, "empty image");
  if (iters < 1 || iters > 1000000)
    return dd_fail(err, DD_EARG, "iterations per octave must be 1..1000000 (got %d)", iters);
  dd_dream_params params = d->p;
  params.iters = iters;
  params.seed = seed;
  const dd_dream_params *p = &params;
  int rc = 0;
  /* Octave sizes, largest first, each the previous one divided by the scale. */
  int ow[64], oh[64], n = 1;
  ow[0] = img->w;
  oh[0] = img->h;
  while (n < p->octaves) {
    int w = (int)lround(ow[n - 1] / p->octave_scale), h = (int)lround(oh[n - 1] / p->octave_scale);
    if ((w < h ? w : h) < DD_DREAM_MIN_SIDE) break;
    /* a fixed-size model: octaves smaller than its size are skipped */
    if (d->fixed && (w < d->nw || h < d->nh)) break;
    ow[n] = w;
    oh[n] = h;
    n++;
  }
  size_t full = (size_t)img->w * img->h * 3;
  /* In place, the smaller octaves need buffers of the second octave's size only, and the
   * largest works in img itself with a full-size gradient allocated when it starts. */
  size_t small = n > 1 ? (size_t)ow[1] * oh[1] * 3 : 0, first = p->in_place ? small : full;
  run_bufs b;
  memset(&b, 0, sizeof b);
  b.base[0] = img->rgb;
  int ok = 1;
  for (int k = 1; k < n; k++) ok &= (b.base[k] = alloc_floats((size_t)ow[k] * oh[k] * 3)) != NULL;
  if (p->in_place && n == 1) {
    b.cur = img->rgb;
    b.cur_is_img = 1;
    first = full;
  } else {
    b.cur = alloc_floats(first);
  }
  b.grad = alloc_floats(first);
  size_t nw = dd_dream_norm_work(p->norm, img->w, img->h, p->lap_levels);
  if (nw) b.work = alloc_floats(nw);
  if (p->checkpoint_every > 0) {
    b.ckpt.w = img->w;
    b.ckpt.h = img->h;
    b.ckpt.rgb = alloc_floats(full);
    ok &= b.ckpt.rgb != NULL;
  }
  if (!ok || !b.cur || !b.grad || (nw && !b.work)) {
    free_bufs(&b, n);
    return dd_fail(err, DD_ENOMEM, "out of memory for a %dx%d image", img->w, img->h);
  }
  for (int k = 1; k < n; k++)
    resize_bilinear(b.base[k - 1], ow[k - 1], oh[k - 1], b.base[k], ow[k], oh[k]);
  double total = 0, done = 0;
  for (int k = 0; k < n; k++) total += (double)ow[k] * oh[k] * p->iters;
  if (b.cur != b.base[n - 1])
    memcpy(b.cur, b.base[n - 1], (size_t)ow[n - 1] * oh[n - 1] * 3 * sizeof(float));
  if (n > 1) rc = reserve(d, ow[0], oh[0], err);
  uint64_t rng = p->seed;
  long it_total = 0;
  for (int o = 0; o < n && !rc; o++) {
    int k = n - 1 - o, w = ow[k], h = oh[k];
    size_t sz = (size_t)w * h * 3;
    if (o > 0) {
      /* carry the detail dreamed at the smaller octave up to this one */
      size_t prev = (size_t)ow[k + 1] * oh[k + 1] * 3;
      const float *lo = b.base[k + 1], *hi = b.base[k];
#pragma omp parallel for schedule(static) if (prev > DD_PAR_MIN)
      for (size_t i = 0; i < prev; i++) b.grad[i] = b.cur[i] - lo[i];
      if (p->in_place && k == 0) {
        /* img += the detail, upscaled; then the small buffers give way to a full gradient */
        resize_bilinear_to(b.grad, ow[1], oh[1], img->rgb, w, h, 1);
        for (int j = 1; j < n; j++) {
          free(b.base[j]);
          b.base[j] = NULL;
        }
        free(b.cur);
        free(b.grad);
        b.cur = img->rgb;
        b.cur_is_img = 1;
        if (!(b.grad = alloc_floats(full))) {
          rc = dd_fail(err, DD_ENOMEM, "out of memory for a %dx%d image", w, h);
          break;
        }
      } else {
        resize_bilinear(b.grad, ow[k + 1], oh[k + 1], b.cur, w, h);
#pragma omp parallel for schedule(static) if (sz > DD_PAR_MIN)
        for (size_t i = 0; i < sz; i++) b.cur[i] += hi[i];
      }
    }
    rc = prepare(d, w, h, err);
    dd_image view = {.w = w, .h = h, .rgb = b.cur};
    for (int it = 0; it < p->iters && !rc; it++) {
      if (p->cancel && *p->cancel) {
        rc = dd_fail(err, DD_EINTR, "interrupted");
        break;
      }
      int dx = dd_rng_range(&rng, -p->jitter, p->jitter), dy = dd_rng_range(&rng, -p->jitter, p->jitter);
      /* with tiles, move the tile borders anywhere so no seam stays in one place */
      if (d->tw < w) dx += dd_rng_range(&rng, 0, w - 1);
      if (d->th < h) dy += dd_rng_range(&rng, 0, h - 1);
      double obj;
      rc = dd_dreamer_gradient(d, &view, dx, dy, b.grad, &obj, err);
      if (rc) break;
      /* mean-|g| and std scale g by one factor: it goes into the step, saving a pass */
      float step = p->step;
      if (p->norm == DD_NORM_LAPLACIAN)
        dd_dream_normalize(p->norm, p->lap_levels, b.grad, w, h, b.work);
      else
        step = (float)(step * norm_scale(p->norm, b.grad, sz));
      step_clip(b.cur, b.grad, step, sz);
      done += (double)w * h;
      it_total++;
      dd_dream_progress info = {o, n, it, p->iters, w, h, 0, obj, done / total, NULL};
      int nx, ny, lo;
      axis_tiles(w, d->tw, &nx, &lo);
      axis_tiles(h, d->th, &ny, &lo);
      info.tiles = nx * ny;
      if (p->checkpoint_every > 0 && it_total % p->checkpoint_every == 0) {
        make_checkpoint(&b, k, ow, oh);
        info.checkpoint = &b.ckpt;
      }
      if (fn && (rc = fn(&info, user)) != 0)
        dd_fail(err, rc, "stopped by the progress callback (%s)", dd_strerror(rc));
    }
  }
  if (!rc && !b.cur_is_img) memcpy(img->rgb, b.cur, full * sizeof(float));
  free_bufs(&b, n);
  return rc;
}

/* ---- what a job needs ---- */

int dd_dream_octaves(int w, int h, const dd_dream_params *p, int *ow, int *oh) {
  /* as dd_dream_run makes them: each the previous one divided by the scale, rounded */
  int n = 1;
  ow[0] = w;
  oh[0] = h;
  while (n < p->octaves && n < 64) {
    int ww = (int)lround(ow[n - 1] / p->octave_scale), hh = (int)lround(oh[n - 1] / p->octave_scale);
    if ((ww < hh ? ww : hh) < DD_DREAM_MIN_SIDE) break;
    ow[n] = ww;
    oh[n] = hh;
    n++;
  }
  return n;
}

/* Bytes of a w x h picture of floats. */
static size_t picture_bytes(int w, int h) { return (size_t)w * (size_t)h * 3 * sizeof(float); }

size_t dd_dream_image_bytes(int w, int h, const dd_dream_params *p) {
  int ow[64], oh[64], n = dd_dream_octaves(w, h, p, ow, oh);
  size_t bases = 0; /* the smaller octaves */
  for (int k = 1; k < n; k++) bases += picture_bytes(ow[k], oh[k]);
  size_t bytes;
  if (p->in_place) {
    /* the image always; then either the smaller octaves with a current result and a
     * gradient of the second octave's size, or a full-size gradient */
    size_t small = n > 1 ? 2 * picture_bytes(ow[1], oh[1]) + bases : 0;
    size_t last = picture_bytes(w, h);
    bytes = picture_bytes(w, h) + (small > last ? small : last);
  } else {
    bytes = 3 * picture_bytes(w, h) + bases; /* the image, the current result, the gradient */
  }
  bytes += dd_dream_norm_work(p->norm, w, h, p->lap_levels) * sizeof(float);
  if (p->checkpoint_every > 0) bytes += picture_bytes(w, h);
  bytes += 2 * sizeof(int) * (size_t)(w > h ? w : h); /* the tiles' row and column maps */
  return bytes;
}

size_t dd_dream_decode_bytes(int w, int h) {
  /* stb's 8-bit pixels (up to 4 channels) and the float copy made from them */
  return (size_t)w * (size_t)h * (4 + 3 * sizeof(float));
}

/* Tile sides the automatic tiling tries, largest first: the list of prepare(), which the
 * budget must follow (a test runs a dream at exactly the budget's smallest tile). */
static const int budget_tile_sides[] = {1024, 768, 512, 384, 256, 192, 128, 96, 64, 48,
                                        DD_DREAM_MIN_TILE};

/* Bytes of the dream's gradient plan for a w x h input. */
static int grad_plan_bytes(const dd_model *m, const int *targets, int nt, int w, int h,
                           size_t *bytes, dd_err *err) {
  dd_binding b = image_binding(dd_model_input(m), w, h);
  return dd_plan_measure(m, &b, 1, targets, nt, DD_PLAN_GRAD | DD_PLAN_REUSE, bytes, NULL, err);
}

/* The parts of a budget that depend on the image size: fills b->image, b->min_plan, b->tile
 * and b->need (the guide's part and the weights already in b). */
static int budget_at(const dd_model *m, const dd_dream_params *p, const int *targets, int nt,
                     int min_side, const dd_input_sizes *sz, size_t guide_plan, int w, int h,
                     dd_dream_budget *b, dd_err *err) {
  int t = p->tile;
  for (size_t i = sizeof budget_tile_sides / sizeof budget_tile_sides[0]; !t && i-- > 0;)
    if (budget_tile_sides[i] >= min_side || i == 0) t = budget_tile_sides[i];
  int tw = t < w ? t : w, th = t < h ? t : h;
  if (sz->fixed) { /* the model's own size, whatever the image's */
    t = sz->native_w > sz->native_h ? sz->native_w : sz->native_h;
    tw = sz->native_w;
    th = sz->native_h;
  }
  size_t plan;
  int rc = grad_plan_bytes(m, targets, nt, tw, th, &plan, err);
  if (rc) return rc;
  b->tile = t;
  b->image = dd_dream_image_bytes(w, h, p);
  b->min_plan = plan;
  b->need = b->weights + b->image + b->guide + (plan > guide_plan ? plan : guide_plan);
  return DD_OK;
}

/* "384 MiB", or "64 KiB" under a mebibyte. */
static const char *budget_size(size_t bytes, char *buf, size_t size) {
  if (bytes < 1048576) snprintf(buf, size, "%.0f KiB", bytes / 1024.0);
  else snprintf(buf, size, "%.0f MiB", bytes / 1048576.0);
  return buf;
}

int dd_dream_check_budget(const dd_model *m, const dd_dream_params *p, int w, int h,
                          size_t max_memory, dd_dream_budget *out, dd_err *err) {
  int rc = check_params(m, p, err);
  if (rc) return rc;
  if (w < 1 || h < 1 || (size_t)w * (size_t)h > DD_IMAGE_MAX_PIXELS)
    return dd_fail(err, DD_EARG, "image size %dx%d is not in 1..%zu pixels", w, h,
                   (size_t)DD_IMAGE_MAX_PIXELS);
  const char *mname = dd_model_name(m), *layer = dd_model_value_name(m, p->layers[0].value);
  int targets[DD_DREAM_MAX_LAYERS], nt = unique_targets(p->layers, p->n_layers, targets);
  /* the image and every octave must be at least the smallest input of the layers */
  int mw, mh, ow[64], oh[64], n = dd_dream_octaves(w, h, p, ow, oh);
  dd_input_sizes sz;
  rc = dd_model_input_sizes(m, targets, nt, &sz, err);
  if (rc) return rc;
  mw = sz.min_w;
  mh = sz.min_h;
  if (sz.fixed) {
    /* tiles of the model's size: any image works, octaves below it are skipped */
    mw = mh = 1;
    while (n > 1 && (ow[n - 1] < sz.native_w || oh[n - 1] < sz.native_h)) n--;
  }
  if (w < mw || h < mh)
    return dd_fail(err, DD_ESHAPE, "%s: a %dx%d image is too small for '%s': the smallest "
                   "input this model accepts is %dx%d pixels", mname, w, h, layer, mw, mh);
  int usable = 0;
  while (usable < n && ow[usable] >= mw && oh[usable] >= mh) usable++;
  if (usable < n)
    return dd_fail(err, DD_ESHAPE, "%s: the %dx%d image's octave %d is %dx%d, smaller than the "
                   "%dx%d pixels '%s' needs: use at most %d octave%s", mname, w, h, n - usable,
                   ow[n - 1], oh[n - 1], mw, mh, layer, usable, usable > 1 ? "s" : "");
  dd_dream_budget b;
  memset(&b, 0, sizeof b);
  b.weights = (size_t)dd_model_num_params(m) * sizeof(float);
  size_t guide_plan = 0;
  if (p->guide) {
    /* the guide's picture, its features at each layer and their dot products; its
     * forward-only plan is held while the features are computed, before the dream's */
    dd_shape shapes[DD_DREAM_MAX_LAYERS];
    dd_binding gb = sz.fixed ? image_binding(dd_model_input(m), sz.native_w, sz.native_h)
                             : image_binding(dd_model_input(m), p->guide->w, p->guide->h);
    rc = dd_plan_measure(m, &gb, 1, targets, nt, DD_PLAN_REUSE, &guide_plan, shapes, err);
    if (rc) return dd_err_prefix(err, "guide image (%dx%d)", p->guide->w, p->guide->h);
    size_t feats = 0, max_m = 0;
    for (int l = 0; l < p->n_layers; l++) {
      int t = 0;
      while (targets[t] != p->layers[l].value) t++;
      int64_t numel = dd_shape_numel(&shapes[t]), c = shapes[t].ndim >= 2 ? shapes[t].d[1] : 1;
      feats += (size_t)numel * sizeof(float);
      if (c > 0 && (size_t)(numel / c) > max_m) max_m = (size_t)(numel / c);
    }
    b.guide = picture_bytes(p->guide->w, p->guide->h) + feats + GUIDE_BLOCK * max_m * sizeof(float);
  }
  rc = budget_at(m, p, targets, nt, mw > mh ? mw : mh, &sz, guide_plan, w, h, &b, err);
  if (rc) return rc;
  /* what is left for the plans; 0 would mean no limit to dd_dream_run */
  size_t fixed = b.weights + b.image + b.guide;
  b.plan_budget = !max_memory ? 0 : max_memory > fixed ? max_memory - fixed : 1;
  b.fit_w = w;
  b.fit_h = h;
  if (max_memory && b.need > max_memory) {
    /* the largest size of this aspect whose job fits: the need grows with the size */
    int longer = w > h ? w : h, lo = 0, hi = longer;
    dd_dream_budget t = b;
    while (lo < hi) {
      int mid = lo + (hi - lo + 1) / 2;
      int sw = (int)lround((double)w * mid / longer), sh = (int)lround((double)h * mid / longer);
      int ok = sw >= mw && sh >= mh &&
               !budget_at(m, p, targets, nt, mw > mh ? mw : mh, &sz, guide_plan, sw, sh, &t, NULL) &&
               t.need <= max_memory;
      if (ok) lo = mid;
      else hi = mid - 1;
    }
    b.fit_w = lo ? (int)lround((double)w * lo / longer) : 0;
    b.fit_h = lo ? (int)lround((double)h * lo / longer) : 0;
    char s[6][32], fit[96];
    if (lo) snprintf(fit, sizeof fit, "an image of at most %dx%d would fit", b.fit_w, b.fit_h);
    else snprintf(fit, sizeof fit, "no image size fits");
    rc = dd_fail(err, DD_ELIMIT, "%dx%d image: the dream needs %s (%s for the image, its "
                 "octaves and gradient, %s for the model's weights, %s for the network on the "
                 "smallest tiles of %dx%d%s%s), more than the %s limit; %s", w, h,
                 budget_size(b.need, s[0], sizeof s[0]), budget_size(b.image, s[1], sizeof s[1]),
                 budget_size(b.weights, s[2], sizeof s[2]),
                 budget_size(b.min_plan > guide_plan ? b.min_plan : guide_plan, s[3], sizeof s[3]),
                 b.tile < w ? b.tile : w, b.tile < h ? b.tile : h, p->guide ? ", and the guide " : "",
                 p->guide ? budget_size(b.guide, s[4], sizeof s[4]) : "",
                 budget_size(max_memory, s[5], sizeof s[5]), fit);
  }
  *out = b;
  return rc;
}
