/* Resize (opsets 11 and 13): nearest (float32, int64, bool) and N-linear (float32)
 * interpolation over any dims, with the gradient w.r.t. X (the adjoint of the
 * interpolation, accumulated into din).
 *
 * Along each dim, output coordinate x maps to an input coordinate by the
 * coordinate_transformation_mode (half_pixel, pytorch_half_pixel, align_corners, asymmetric,
 * tf_half_pixel_for_nn), and reads at most two input positions, lo and hi = lo + 1, with
 * weights 1 - w and w (nearest: one position, w = 0); positions outside are clamped to the
 * edge.  These per-dim taps are computed into scratch, and an output element is the weighted
 * sum over the corners of the dims whose taps interpolate.  Linear over the last two dims is
 * bilinear; over more dims, N-linear.
 *
 * The rules follow the ONNX reference (onnx/backend/test/case/node/resize.py) that made the
 * conformance data: with `scales`, an output dim is floor(in * scale) and the coordinates use
 * the scale as given, and the resized length of align_corners and pytorch_half_pixel is
 * in * scale (not the rounded output size; PyTorch's align_corners uses the rounded size, so
 * the two differ when in * scale is fractional); with `sizes`, scale = out / in.
 *
 * Not supported, refused at load: mode 'cubic', coordinate_transformation_mode
 * 'tf_crop_and_resize' (the only one that reads roi; roi is ignored otherwise), opsets
 * before 11, and the attributes of opset 18 (axes, keep_aspect_ratio_policy, antialias). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/common.h"

enum { RS_NEAREST, RS_LINEAR };
enum { CT_HALF_PIXEL, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC, CT_TF_HALF_PIXEL };
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };

typedef struct resize_params {
  int mode, ctm, nearest;
} resize_params;

/* Index of `s` in the NULL-terminated `names`, or -1. */
static int name_index(const char *s, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

static int resize_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"mode", "coordinate_transformation_mode", "nearest_mode",
                                      "cubic_coeff_a", "exclude_outside", "extrapolation_value",
                                      NULL};
  static const char *const modes[] = {"nearest", "linear", NULL};
  /* tf_half_pixel_for_nn is the spec's name; tf_half_pixel_for_nearest is also accepted */
  static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_half_pixel_for_nn", NULL};
  static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                         "ceil", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->opset > 0 && node->opset < 11)
    return dd_fail(err, DD_EUNSUPPORTED, "Resize of opset %lld is not supported (its "
                   "coordinate rules differ); opsets 11 and 13 are", (long long)node->opset);
  if (node->n_in < 2 || node->n_in > 4)
    return dd_fail(err, DD_EFORMAT, "Resize takes 2 to 4 inputs (X, roi, scales, sizes), got %d",
                   node->n_in);
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  const char *mode, *ctm, *nearest;
  rc = dd_attr_string(node, "mode", "nearest", &mode, err);
  if (!rc) rc = dd_attr_string(node, "coordinate_transformation_mode", "half_pixel", &ctm, err);
  if (!rc) rc = dd_attr_string(node, "nearest_mode", "round_prefer_floor", &nearest, err);
  if (rc) return rc;
  resize_params q = {name_index(mode, modes), name_index(ctm, ctms),
                     name_index(nearest, nearests)};
  if (!strcmp(ctm, "tf_half_pixel_for_nearest")) q.ctm = CT_TF_HALF_PIXEL;
  if (q.mode < 0)
    return dd_fail(err, DD_EUNSUPPORTED, "Resize mode '%s' is not supported (only 'nearest' and "
                   "'linear')", mode);
  if (q.ctm < 0)
    return dd_fail(err, DD_EUNSUPPORTED, "Resize coordinate_transformation_mode '%s' is not "
                   "supported (only half_pixel, pytorch_half_pixel, align_corners, asymmetric "
                   "and tf_half_pixel_for_nn)", ctm);
  if (q.nearest < 0)
    return dd_fail(err, DD_EUNSUPPORTED, "Resize nearest_mode '%s' is not supported", nearest);
  resize_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  *p = q;
  node->params = p;
  return DD_OK;
}

/* The shapes and the scale of each dim. */
typedef struct rs_geom {
  int rank;
  int64_t in_d[DD_MAX_DIMS], out_d[DD_MAX_DIMS];
  double scale[DD_MAX_DIMS];
} rs_geom;

static int resize_geometry(const dd_node *node, const dd_tensor *const *in, rs_geom *g,
                           dd_err *err) {
  const dd_shape *s = &in[0]->shape;
  const dd_tensor *sc = node->n_in > 2 ? in[2] : NULL, *sz = node->n_in > 3 ? in[3] : NULL;
  /* an empty tensor stands for an omitted input (the opset 11 form) */
  if (sc && sc->shape.ndim == 1 && sc->shape.d[0] == 0) sc = NULL;
  if (sz && sz->shape.ndim == 1 && sz->shape.d[0] == 0) sz = NULL;
  if (s->ndim < 1) return dd_fail(err, DD_ESHAPE, "Resize needs an input of at least 1 dim");
  if (!sc && !sz) return dd_fail(err, DD_EFORMAT, "Resize needs scales or sizes");
  if (sc && sz) return dd_fail(err, DD_EFORMAT, "Resize takes scales or sizes, not both");
  const dd_tensor *t = sc ? sc : sz;
  const char *what = sc ? "scales" : "sizes";
  if (t->dtype != (sc ? DD_F32 : DD_I64) || t->shape.ndim != 1)
    return dd_fail(err, DD_EFORMAT, "%s must be a 1-D %s tensor", what, sc ? "float32" : "int64");
  if (!t->data)
    return dd_fail(err, DD_EUNSUPPORTED, "Resize's %s must be constant (an initializer or "
                   "computed from constants), it is computed at run time", what);
  if (t->shape.d[0] != s->ndim)
    return dd_fail(err, DD_ESHAPE, "%s has %lld values but the input has %d dims", what,
                   (long long)t->shape.d[0], s->ndim);
  g->rank = s->ndim;
  for (int i = 0; i < s->ndim; i++) {
    int64_t n = s->d[i], m;
    g->in_d[i] = n;
    if (sc) {
      double f = dd_f32(sc)[i];
      if (!(f > 0) || !isfinite(f))
        return dd_fail(err, DD_EFORMAT, "scales[%d] = %g is not a positive number", i, f);
      double want = floor(f * (double)n);
      if (want > (double)(INT64_MAX / 4))
        return dd_fail(err, DD_ELIMIT, "scales[%d] = %g makes dim %d too large", i, f, i);
      m = (int64_t)want;
      g->scale[i] = f;
    } else {
      m = dd_i64(sz)[i];
      if (m < 0) return dd_fail(err, DD_ESHAPE, "sizes[%d] = %lld is negative", i, (long long)m);
      g->scale[i] = n ? (double)m / (double)n : 0;
    }
    if (n == 0 && m > 0)
      return dd_fail(err, DD_ESHAPE, "cannot resize dim %d from 0 to %lld elements", i,
                     (long long)m);
    g->out_d[i] = m;
  }
  return DD_OK;
}

/* One output position along a dim: input positions lo and hi, weight w of hi. */
typedef struct rs_tap {
  int64_t lo, hi;
  float w;
} rs_tap;

/* The input coordinate of output coordinate x along a dim of n resized by `scale`. */
static double rs_coord(int ctm, double x, double scale, int64_t n) {
  double len = scale * (double)n; /* the reference's resized length, not rounded */
  switch (ctm) {
  case CT_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
  case CT_PYTORCH_HALF_PIXEL: return len == 1 ? 0 : (x + 0.5) / scale - 0.5;
  case CT_ALIGN_CORNERS: return len == 1 ? 0 : x * (double)(n - 1) / (len - 1);
  case CT_ASYMMETRIC: return x / scale;
  default: return (x + 0.5) / scale; /* tf_half_pixel_for_nn */
  }
}

static void rs_taps(const resize_params *p, int64_t n, int64_t m, double scale, rs_tap *t) {
  for (int64_t o = 0; o < m; o++) {
    double x = rs_coord(p->ctm, (double)o, scale, n), f = floor(x), frac = x - f;
    if (f < -2) f = -2, frac = 0; /* far outside: clamped below anyway */
    if (f > (double)n) f = (double)n, frac = 0;
    int64_t lo = (int64_t)f, hi = lo + 1;
    double w = frac;
    if (p->mode == RS_NEAREST) {
      int up = p->nearest == NM_ROUND_PREFER_FLOOR ? frac > 0.5
             : p->nearest == NM_ROUND_PREFER_CEIL  ? frac >= 0.5
             : p->nearest == NM_CEIL               ? frac > 0
                                                   : 0;
      lo = hi = lo + up;
      w = 0;
    }
    lo = lo < 0 ? 0 : lo >= n ? n - 1 : lo;
    hi = hi < 0 ? 0 : hi >= n ? n - 1 : hi;
    float wf = lo == hi ? 0.f : (float)w;
    /* a weight of 0 reads lo alone: 0 * an infinite x[hi] would be NaN */
    t[o] = (rs_tap){lo, wf == 0.f ? lo : hi, wf};
  }
}

static size_t rs_scratch_bytes(const rs_geom *g) {
  size_t n = 0;
  for (int i = 0; i < g->rank; i++) n += (size_t)g->out_d[i];
  return n * sizeof(rs_tap);
}

static int resize_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  const resize_params *p = node->params;
  if (!in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  dd_dtype dt = in[0]->dtype;
  if (dt != DD_F32 && !(p->mode == RS_NEAREST && (dt == DD_I64 || dt == DD_BOOL)))
    return dd_fail(err, DD_EUNSUPPORTED, "Resize mode '%s' takes float32%s input, not %s",
                   p->mode == RS_NEAREST ? "nearest" : "linear",
                   p->mode == RS_NEAREST ? ", int64 or bool" : "", dd_dtype_name(dt));
  rs_geom g;
  int rc = resize_geometry(node, in, &g, err);
  if (rc) return rc;
  dd_shape o = {.ndim = g.rank};
  for (int i = 0; i < g.rank; i++) o.d[i] = g.out_d[i];
  int64_t ne = dd_shape_numel(&o);
  /* the taps take one entry per output position of each dim: bounded with the size */
  if (ne < 0 || ne > INT64_MAX / 256)
    return dd_fail(err, DD_ELIMIT, "the resized shape is too large");
  if (out[0]) {
    out[0]->dtype = in[0]->dtype;
    out[0]->shape = o;
  }
  *scratch = ne ? rs_scratch_bytes(&g) : 0;
  return DD_OK;
}

/* What forward and backward share: the taps of every dim, in scratch (dim i's out_d[i]
 * taps after those of the dims behind it). */
typedef struct rs_plan {
  rs_geom g;
  const rs_tap *tap[DD_MAX_DIMS];
  int64_t xs[DD_MAX_DIMS]; /* input strides */
  int64_t rows, inner;     /* output rows of the last dim */
} rs_plan;

static void rs_prepare(const dd_node *node, const dd_tensor *const *in, void *scratch,
                       rs_plan *r) {
  const resize_params *p = node->params;
  resize_geometry(node, in, &r->g, NULL);
  rs_tap *t = scratch;
  int rank = r->g.rank;
  int64_t acc = 1;
  r->rows = 1;
  for (int i = rank - 1; i >= 0; i--) {
    int64_t m = r->g.out_d[i];
    rs_taps(p, r->g.in_d[i], m, r->g.scale[i], t);
    r->tap[i] = t;
    t += m;
    r->xs[i] = acc;
    acc *= r->g.in_d[i];
    if (i < rank - 1) r->rows *= m;
  }
  r->inner = r->g.out_d[rank - 1];
}

/* The corners of output row `row` over the outer dims: input offsets and weights.  Returns
 * how many (1 << the number of outer dims that interpolate at this row). */
static int rs_corners(const rs_plan *r, int64_t row, int64_t *off, float *wt) {
  int nc = 1;
  off[0] = 0;
  wt[0] = 1.f;
  for (int i = r->g.rank - 2; i >= 0; i--) {
    int64_t o = row % r->g.out_d[i];
    row /= r->g.out_d[i];
    const rs_tap *t = &r->tap[i][o];
    if (t->w != 0.f) {
      for (int c = 0; c < nc; c++) {
        off[nc + c] = off[c] + t->hi * r->xs[i];
        wt[nc + c] = wt[c] * t->w;
        off[c] += t->lo * r->xs[i];
        wt[c] *= 1.f - t->w;
      }
      nc *= 2;
    } else {
      for (int c = 0; c < nc; c++) off[c] += t->lo * r->xs[i];
    }
  }
  return nc;
}

#define RS_MAX_CORNERS (1 << (DD_MAX_DIMS - 1))

/* Nearest on elements of type T: each output element copies the one input element it reads
 * (every weight is 0, so one corner). */
#define RS_GATHER(T)                                                             \
  do {                                                                           \
    const T *x = (const T *)in[0]->data;                                         \
    T *y = (T *)out[0]->data;                                                    \
    _Pragma("omp parallel for if (total > DD_PAR_MIN) schedule(static)")         \
    for (int64_t row = 0; row < r.rows; row++) {                                 \
      int64_t off[RS_MAX_CORNERS];                                               \
      float wt[RS_MAX_CORNERS];                                                  \
      rs_corners(&r, row, off, wt);                                              \
      for (int64_t j = 0; j < r.inner; j++) y[row * r.inner + j] = x[off[0] + tl[j].lo]; \
    }                                                                            \
  } while (0)

static void resize_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                           void *scratch) {
  if (!out[0]) return;
  int64_t total = dd_tensor_numel(out[0]);
  if (!total) return;
  rs_plan r;
  rs_prepare(node, in, scratch, &r);
  const rs_tap *tl = r.tap[r.g.rank - 1];
  if (in[0]->dtype == DD_I64) { /* nearest on int64 or bool: a gather */
    RS_GATHER(int64_t);
    return;
  }
  if (in[0]->dtype == DD_BOOL) {
    RS_GATHER(uint8_t);
    return;
  }
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t row = 0; row < r.rows; row++) {
    int64_t off[RS_MAX_CORNERS];
    float wt[RS_MAX_CORNERS];
    int nc = rs_corners(&r, row, off, wt);
    float *yr = y + row * r.inner;
    for (int64_t j = 0; j < r.inner; j++) {
      const rs_tap *t = &tl[j];
      float acc = 0.f;
      for (int c = 0; c < nc; c++)
        acc += wt[c] * ((1.f - t->w) * x[off[c] + t->lo] + t->w * x[off[c] + t->hi]);
      yr[j] = acc;
    }
  }
}

/* The adjoint: every output element scatters its gradient onto the input elements it read.
 * Rows write the same input elements across the dims that resize, so the work is split only
 * over the leading dims that map each position to itself (batch and channels, as a rule). */
static void resize_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  int64_t total = dd_tensor_numel(dout[0]);
  if (!total) return;
  rs_plan r;
  rs_prepare(node, in, scratch, &r);
  int last = r.g.rank - 1, k = 0;
  for (; k < last; k++) {
    int same = r.g.in_d[k] == r.g.out_d[k];
    for (int64_t o = 0; same && o < r.g.out_d[k]; o++)
      same = r.tap[k][o].lo == o && r.tap[k][o].w == 0.f;
    if (!same) break;
  }
  int64_t slabs = 1, per = r.rows;
  for (int i = 0; i < k; i++) slabs *= r.g.out_d[i];
  per = slabs ? r.rows / slabs : 0;
  const rs_tap *tl = r.tap[last];
  const float *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
#pragma omp parallel for if (total > DD_PAR_MIN) schedule(static)
  for (int64_t s = 0; s < slabs; s++) {
    int64_t off[RS_MAX_CORNERS];
    float wt[RS_MAX_CORNERS];
    for (int64_t row = s * per; row < (s + 1) * per; row++) {
      int nc = rs_corners(&r, row, off, wt);
      const float *g = dy + row * r.inner;
      for (int64_t j = 0; j < r.inner; j++) {
        const rs_tap *t = &tl[j];
        for (int c = 0; c < nc; c++) {
          float v = wt[c] * g[j];
          dx[off[c] + t->lo] += (1.f - t->w) * v;
          dx[off[c] + t->hi] += t->w * v;
        }
      }
    }
  }
}

/* Linear: a multiply-add per corner of the dims that change size, per output element. */
static int64_t resize_flops(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out) {
  const resize_params *p = node->params;
  rs_geom g;
  if (p->mode != RS_LINEAR || resize_geometry(node, in, &g, NULL)) return 0;
  int64_t corners = 1;
  for (int i = 0; i < g.rank; i++) corners *= g.in_d[i] != g.out_d[i] ? 2 : 1;
  return 2 * corners * dd_tensor_numel(out[0]);
}

const dd_op dd_op_Resize = {"Resize", resize_init, resize_infer, resize_forward, resize_backward,
                            resize_flops, DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X};
