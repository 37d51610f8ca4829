/* Value layouts (tokens, channels-last grids, maps) and the input sizes a model accepts
 * (see dream/layout.h). */
#include "dream/layout.h"

#include <string.h>

#include "dream/graph.h"

/* 1 when n is n_in / s: exactly, or for a power-of-two s (a CNN's strides) rounded down or
 * up. */
static int strided(int64_t n, int n_in, int s) {
  if (n_in % s == 0) return n == n_in / s;
  return (s & (s - 1)) == 0 && (n == n_in / s || n == (n_in + s - 1) / s);
}

/* 1 when gh x gw is a grid of the in_w x in_h input: the same integer stride s on both axes,
 * each side the input's divided by s, rounded down or up (a strided Conv's output). */
static int input_grid(int64_t gh, int64_t gw, int in_w, int in_h) {
  if (gh < 1 || gw < 1 || in_w < 1 || in_h < 1) return 0;
  for (int s = 1; s <= in_h && s <= in_w; s++)
    if (strided(gh, in_h, s) && strided(gw, in_w, s)) return 1;
  return 0;
}

/* The grid of T tokens: T = cls + gh * gw for a grid of the input (gh * gw > 1), the class
 * token tried first.  0 when none. */
static int token_grid(int64_t T, int in_w, int in_h, int *gh, int *gw, int *cls) {
  for (int c = 1; c >= 0; c--) {
    int64_t n = T - c;
    if (n < 2) continue;
    /* the stride s with (in_h / s) * (in_w / s) = n, each rounded down or up */
    for (int s = 1; s <= in_h && s <= in_w; s++) {
      int64_t hs[2] = {in_h / s, (in_h + s - 1) / s}, ws[2] = {in_w / s, (in_w + s - 1) / s};
      if (hs[1] * ws[1] < n) break;
      for (int i = 0; i < 4; i++) {
        int64_t h = hs[i / 2], w = ws[i % 2];
        if (h * w == n && strided(h, in_h, s) && strided(w, in_w, s)) {
          *gh = (int)h;
          *gw = (int)w;
          *cls = c;
          return 1;
        }
      }
    }
  }
  return 0;
}

/* 1 when `value` is made by a Transpose with perm (0, 2, 3, 1): NCHW to NHWC. */
static int made_channels_last(const dd_model *m, int value) {
  int p = m && value >= 0 ? dd_model_producer(m, value) : -1;
  if (p < 0 || strcmp(dd_model_node_op(m, p), "Transpose")) return 0;
  const int64_t *perm;
  int n;
  if (dd_model_node_attr_ints(m, p, "perm", &perm, &n, NULL) || n != 4) return 0;
  return perm[0] == 0 && perm[1] == 2 && perm[2] == 3 && perm[3] == 1;
}

static void set_axis(dd_layout *l, const dd_shape *s, int axis) {
  l->channel_axis = axis;
  l->outer = 1;
  l->inner = 1;
  l->channels = axis >= 0 ? s->d[axis] : 1;
  for (int i = 0; i < s->ndim; i++) {
    if (i < axis) l->outer *= s->d[i];
    else if (i > axis) l->inner *= s->d[i];
  }
}

dd_layout_kind dd_value_layout(const dd_model *m, int value, const dd_shape *s, int in_w,
                               int in_h, dd_layout *out) {
  dd_layout l;
  memset(&l, 0, sizeof l);
  int64_t numel = dd_shape_numel(s);
  if (s->ndim < 1 || numel < 1) {
    set_axis(&l, s, -1);
    l.kind = DD_LAYOUT_OTHER;
    if (s->ndim >= 2 && numel >= 0) set_axis(&l, s, 1);
    *out = l;
    return l.kind;
  }
  const int64_t *d = s->d;
  int gh, gw, cls;
  if (s->ndim == 4 && d[0] == 1 &&
      ((input_grid(d[1], d[2], in_w, in_h) && !input_grid(d[2], d[3], in_w, in_h)) ||
       made_channels_last(m, value))) {
    l.kind = DD_LAYOUT_NHWC;
    set_axis(&l, s, 3);
    l.grid_h = (int)d[1];
    l.grid_w = (int)d[2];
  } else if (s->ndim == 4 && d[2] * d[3] == 1) {
    l.kind = DD_LAYOUT_VECTOR;
    set_axis(&l, s, 1);
  } else if (s->ndim == 4) {
    l.kind = DD_LAYOUT_NCHW;
    set_axis(&l, s, 1);
    l.grid_h = (int)d[2];
    l.grid_w = (int)d[3];
  } else if (s->ndim == 3 && d[0] == 1 && token_grid(d[1], in_w, in_h, &gh, &gw, &cls)) {
    l.kind = DD_LAYOUT_TOKENS;
    set_axis(&l, s, 2);
    l.grid_h = gh;
    l.grid_w = gw;
    l.cls = cls;
  } else if (s->ndim == 3 && d[1] == 1 && token_grid(d[0], in_w, in_h, &gh, &gw, &cls)) {
    l.kind = DD_LAYOUT_SEQ;
    set_axis(&l, s, 2);
    l.grid_h = gh;
    l.grid_w = gw;
    l.cls = cls;
  } else if (s->ndim == 2) {
    l.kind = DD_LAYOUT_VECTOR;
    set_axis(&l, s, 1);
  } else {
    l.kind = DD_LAYOUT_OTHER;
    set_axis(&l, s, s->ndim >= 2 ? 1 : 0);
  }
  *out = l;
  return l.kind;
}

const char *dd_layout_name(dd_layout_kind kind) {
  switch (kind) {
    case DD_LAYOUT_NCHW: return "NCHW";
    case DD_LAYOUT_VECTOR: return "vector";
    case DD_LAYOUT_TOKENS: return "tokens";
    case DD_LAYOUT_SEQ: return "tokens (seq-first)";
    case DD_LAYOUT_NHWC: return "NHWC";
    default: return "other";
  }
}

int64_t dd_layout_index(const dd_layout *l, int64_t c, int64_t p) {
  switch (l->kind) {
    case DD_LAYOUT_NCHW: return c * l->inner + p; /* batch item 0 */
    case DD_LAYOUT_TOKENS:
    case DD_LAYOUT_SEQ:
    case DD_LAYOUT_NHWC: return (p + l->cls) * l->channels + c;
    default: return c * l->inner + p;
  }
}

int dd_layout_to_chw(const dd_layout *l, const float *data, float *out, dd_err *err) {
  if (l->grid_h < 1 || l->grid_w < 1)
    return dd_fail(err, DD_ESHAPE, "a %s value has no spatial grid", dd_layout_name(l->kind));
  int64_t hw = (int64_t)l->grid_h * l->grid_w;
  for (int64_t c = 0; c < l->channels; c++)
    for (int64_t p = 0; p < hw; p++) out[c * hw + p] = data[dd_layout_index(l, c, p)];
  return DD_OK;
}

/* ---- accepted sizes ---- */

static int works(const dd_model *m, const int *targets, int n_targets, int w, int h) {
  int in = dd_model_input(m);
  dd_shape decl = dd_model_input_shape(m);
  int64_t dims[4] = {decl.ndim == 4 && decl.d[0] > 0 ? decl.d[0] : 1,
                     decl.ndim == 4 && decl.d[1] > 0 ? decl.d[1] : 3, h, w};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  size_t bytes;
  return dd_plan_measure(m, &b, 1, targets, n_targets, 0, &bytes, NULL, NULL) == DD_OK;
}

int dd_model_input_sizes(const dd_model *m, const int *targets, int n_targets,
                         dd_input_sizes *out, dd_err *err) {
  int outs[64], n_outs = 0;
  if (!targets || n_targets < 1) {
    for (int i = 0; i < dd_model_num_outputs(m) && n_outs < 64; i++)
      outs[n_outs++] = dd_model_output(m, i);
    targets = outs;
    n_targets = n_outs;
  }
  int mw, mh, rc = dd_plan_min_input(m, targets, n_targets, &mw, &mh, err);
  if (rc) return rc;
  dd_input_sizes s;
  memset(&s, 0, sizeof s);
  s.min_w = mw;
  s.min_h = mh;
  s.native_w = mw;
  s.native_h = mh;
  dd_shape decl = dd_model_input_shape(m);
  if (decl.ndim == 4 && decl.d[2] > 0 && decl.d[3] > 0 && decl.d[2] <= 8192 &&
      decl.d[3] <= 8192 && works(m, targets, n_targets, (int)decl.d[3], (int)decl.d[2])) {
    s.native_w = (int)decl.d[3];
    s.native_h = (int)decl.d[2];
  }
  int bw = s.native_w > mw ? s.native_w : mw, bh = s.native_h > mh ? s.native_h : mh;
  s.fixed = !works(m, targets, n_targets, 2 * bw, 2 * bh);
  *out = s;
  return DD_OK;
}
