#include "helper_ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/image.h"

float th_rand_uniform(uint64_t *s, float lo, float hi) {
  return lo + (hi - lo) * dd_rng_uniform(s);
}

void th_init(th_node *t, const char *op_type, int n_in, int n_out) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "test_%s", op_type);
  snprintf(t->op_type, sizeof t->op_type, "%s", op_type);
  t->node.name = t->name;
  t->node.op_type = t->op_type;
  t->node.op = dd_op_find(op_type);
  t->node.n_in = n_in;
  t->node.n_out = n_out;
  for (int i = 0; i < TH_MAX_IO; i++) t->in_ids[i] = i, t->out_ids[i] = 100 + i;
  t->node.in = t->in_ids;
  t->node.out = t->out_ids;
  t->node.attrs = t->attrs;
}

static dd_attr *new_attr(th_node *t, const char *name, int type) {
  int i = t->node.n_attr++;
  snprintf(t->attr_names[i], 64, "%s", name);
  t->attrs[i].name = t->attr_names[i];
  t->attrs[i].type = type;
  return &t->attrs[i];
}

void th_attr_int(th_node *t, const char *name, int64_t v) { new_attr(t, name, DD_ATTR_INT)->i = v; }
void th_attr_float(th_node *t, const char *name, float v) { new_attr(t, name, DD_ATTR_FLOAT)->f = v; }
void th_attr_ints(th_node *t, const char *name, int n, const int64_t *v) {
  int i = t->node.n_attr;
  dd_attr *a = new_attr(t, name, DD_ATTR_INTS);
  memcpy(t->ints[i], v, (size_t)n * sizeof *v);
  a->ints = t->ints[i];
  a->n = n;
}
void th_attr_floats(th_node *t, const char *name, int n, const float *v) {
  int i = t->node.n_attr;
  dd_attr *a = new_attr(t, name, DD_ATTR_FLOATS);
  memcpy(t->floats[i], v, (size_t)n * sizeof *v);
  a->floats = t->floats[i];
  a->n = n;
}
void th_attr_string(th_node *t, const char *name, const char *s) {
  int i = t->node.n_attr;
  dd_attr *a = new_attr(t, name, DD_ATTR_STRING);
  snprintf(t->strs[i], 64, "%s", s);
  a->s = t->strs[i];
}

int th_setup(th_node *t, dd_err *err) {
  if (!t->node.op) return dd_fail(err, DD_EUNSUPPORTED, "op %s not linked", t->op_type);
  free(t->node.params);
  t->node.params = NULL;
  return t->node.op->init ? t->node.op->init(&t->node, err) : DD_OK;
}

int th_forward(th_node *t, dd_tensor *const *in, dd_tensor **out, dd_err *err) {
  dd_tensor shapes[TH_MAX_IO];
  dd_tensor *outs[TH_MAX_IO];
  memset(shapes, 0, sizeof shapes);
  for (int k = 0; k < t->node.n_out; k++) outs[k] = &shapes[k];
  size_t scratch = 0;
  int rc = t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, err);
  if (rc) return rc;
  for (int k = 0; k < t->node.n_out; k++) {
    rc = dd_tensor_new(shapes[k].dtype ? shapes[k].dtype : DD_F32, &shapes[k].shape, 0, &out[k], err);
    if (rc) return rc;
    outs[k] = out[k];
  }
  void *s = scratch ? calloc(scratch, 1) : NULL;
  t->node.op->forward(&t->node, (const dd_tensor *const *)in, outs, s);
  free(s);
  return DD_OK;
}

static double objective(th_node *t, dd_tensor *const *in, const float *w) {
  dd_tensor *out[TH_MAX_IO] = {0};
  dd_err err;
  if (th_forward(t, in, out, &err)) return NAN;
  double L = 0;
  int64_t n = dd_tensor_numel(out[0]);
  for (int64_t i = 0; i < n; i++) L += (double)w[i] * dd_f32(out[0])[i];
  for (int k = 0; k < t->node.n_out; k++) dd_tensor_free(out[k]);
  return L;
}

double th_gradcheck(th_node *t, dd_tensor *const *in, int which, float eps, uint64_t seed,
                    int *skipped) {
  dd_tensor *out[TH_MAX_IO] = {0};
  dd_err err;
  if (th_forward(t, in, out, &err)) return -1;
  int64_t no = dd_tensor_numel(out[0]);
  float *w = malloc((size_t)(no ? no : 1) * sizeof *w);
  uint64_t st = seed;
  for (int64_t i = 0; i < no; i++) w[i] = th_rand_uniform(&st, -1.f, 1.f);
  /* analytic */
  dd_tensor *dout[TH_MAX_IO] = {0}, *din[TH_MAX_IO] = {0};
  dd_tensor wt = dd_tensor_wrap(DD_F32, &out[0]->shape, w);
  dout[0] = &wt;
  dd_tensor *g;
  dd_tensor_new(DD_F32, &in[which]->shape, 0, &g, &err);
  din[which] = g;
  dd_tensor shapes[TH_MAX_IO];
  dd_tensor *outs[TH_MAX_IO];
  memset(shapes, 0, sizeof shapes);
  for (int k = 0; k < t->node.n_out; k++) outs[k] = &shapes[k];
  size_t scratch = 0;
  t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err);
  void *s = scratch ? calloc(scratch, 1) : NULL;
  t->node.op->backward(&t->node, (const dd_tensor *const *)in, (const dd_tensor *const *)out,
                       (const dd_tensor *const *)dout, din, s);
  free(s);
  /* numeric */
  double worst = 0;
  int skip = 0;
  float *x = dd_f32(in[which]);
  int64_t n = dd_tensor_numel(in[which]);
  double scale = 0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(dd_f32(g)[i]));
  for (int64_t i = 0; i < n; i++) {
    float x0 = x[i];
    double d[2];
    for (int h = 0; h < 2; h++) {
      float e = h ? eps / 2 : eps;
      x[i] = x0 + e;
      double lp = objective(t, in, w);
      x[i] = x0 - e;
      double lm = objective(t, in, w);
      x[i] = x0;
      d[h] = (lp - lm) / (2.0 * e);
    }
    double tol = 1e-2 * fmax(scale, 1e-3);
    if (fabs(d[0] - d[1]) > tol) { /* a kink within the step */
      skip++;
      continue;
    }
    double a = dd_f32(g)[i];
    double rel = fabs(a - d[1]) / fmax(fmax(fabs(a), fabs(d[1])), fmax(scale, 1e-6));
    if (isnan(rel)) worst = INFINITY; /* a NaN gradient (or quotient) is never a pass */
    else if (rel > worst) worst = rel;
  }
  if (skipped) *skipped = skip;
  dd_tensor_free(g);
  for (int k = 0; k < t->node.n_out; k++) dd_tensor_free(out[k]);
  free(w);
  return worst;
}

dd_tensor *th_tensor(int ndim, const int64_t *dims) {
  dd_shape s = dd_shape_make(ndim, dims);
  dd_tensor *t = NULL;
  dd_tensor_new(DD_F32, &s, 0, &t, NULL);
  return t;
}

dd_tensor *th_tensor_i64(int ndim, const int64_t *dims, const int64_t *vals) {
  dd_shape s = dd_shape_make(ndim, dims);
  dd_tensor *t = NULL;
  dd_tensor_new(DD_I64, &s, 0, &t, NULL);
  if (t && vals) memcpy(t->data, vals, (size_t)dd_tensor_numel(t) * 8);
  return t;
}

dd_tensor *th_random(int ndim, const int64_t *dims, uint64_t seed, float lo, float hi) {
  dd_tensor *t = th_tensor(ndim, dims);
  uint64_t st = seed;
  for (int64_t i = 0; i < dd_tensor_numel(t); i++) dd_f32(t)[i] = th_rand_uniform(&st, lo, hi);
  return t;
}

double th_max_abs_diff(const dd_tensor *a, const dd_tensor *b) {
  if (!dd_shape_eq(&a->shape, &b->shape) || a->dtype != b->dtype) return INFINITY;
  double m = 0;
  int64_t n = dd_tensor_numel(a);
  for (int64_t i = 0; i < n; i++) {
    double d = a->dtype == DD_F32 ? fabs((double)dd_f32(a)[i] - dd_f32(b)[i])
                                  : fabs((double)(dd_i64(a)[i] - dd_i64(b)[i]));
    if (!(d <= m)) m = d; /* NaN propagates */
  }
  return m;
}

double th_max_abs(const dd_tensor *a) {
  double m = 0;
  for (int64_t i = 0; i < dd_tensor_numel(a); i++) m = fmax(m, fabs(dd_f32(a)[i]));
  return m;
}

double th_rel_l2(const dd_tensor *a, const dd_tensor *b) {
  double d = 0, n = 0;
  for (int64_t i = 0; i < dd_tensor_numel(b); i++) {
    double x = dd_f32(a)[i], y = dd_f32(b)[i];
    d += (x - y) * (x - y);
    n += y * y;
  }
  return sqrt(d) / sqrt(n);
}

dd_model *th_shared_model(const char *rel) {
  char p[512];
  dd_model *m = NULL;
  dd_err err;
  cr_assert_eq(dd_model_load(th_shared(p, sizeof p, rel), &m, &err), 0, "%s", err.msg);
  return m;
}

int th_value(const dd_model *m, const char *name) {
  int v;
  dd_err err;
  cr_assert_eq(dd_model_resolve(m, name, &v, &err), 0, "%s", err.msg);
  return v;
}

void th_plan_half_sq(dd_plan *p, int in, int target, const dd_tensor *input) {
  dd_tensor *x = dd_plan_tensor(p, in);
  memcpy(x->data, input->data, (size_t)dd_tensor_numel(x) * sizeof(float));
  dd_plan_forward(p);
  dd_plan_zero_grad(p);
  const dd_tensor *a = dd_plan_tensor(p, target);
  memcpy(dd_plan_grad(p, target)->data, a->data, (size_t)dd_tensor_numel(a) * sizeof(float));
  dd_plan_backward(p);
}

const char *th_shared(char *buf, size_t size, const char *rel) {
  const char *root = getenv("DREAM_SHARED");
  if (!root || !*root) root = DREAM_SOURCE_DIR "/../shared";
  snprintf(buf, size, "%s/%s", root, rel);
  return buf;
}

int th_infer_status(th_node *t, dd_tensor *const *in, dd_err *err) {
  dd_tensor shapes[TH_MAX_IO], *outs[TH_MAX_IO];
  memset(shapes, 0, sizeof shapes);
  for (int i = 0; i < TH_MAX_IO; i++) outs[i] = &shapes[i];
  size_t scratch = 0;
  int rc = th_setup(t, err);
  if (rc) return rc;
  rc = t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, err);
  free(t->node.params);
  t->node.params = NULL;
  return rc;
}

dd_image *th_shared_photo(const char *name, int w) {
  char p[512], rel[128];
  dd_err err;
  dd_image *im, *r;
  snprintf(rel, sizeof rel, "images/%s", name);
  cr_assert_eq(dd_image_load(th_shared(p, sizeof p, rel), 0, &im, &err), 0, "%s", err.msg);
  int h = (int)lround((double)im->h * w / im->w);
  cr_assert_eq(dd_image_resize(im, w, h, &r, &err), 0, "%s", err.msg);
  dd_image_free(im);
  return r;
}
