/* BatchNormalization in inference mode: y = (x - mean) / sqrt(var + eps) * scale + bias per
 * channel (dim 1), i.e. y = x * a[c] + b[c].  Training mode (batch statistics) is refused.
 * The per-channel a and b are recomputed on each call: C divisions and square roots are
 * nothing next to the N*C*H*W multiply-adds, and infer may not write the node's params. */
#include <math.h>
#include <stdlib.h>

#include "ops/common.h"

typedef struct bn_params {
  float eps;
} bn_params;

static int bn_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"epsilon", "momentum", "spatial", "training_mode",
                                      "is_test", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  int64_t training = 0, spatial = 1;
  float eps;
  rc = dd_attr_int(node, "training_mode", 0, &training, err);
  if (!rc) rc = dd_attr_int(node, "spatial", 1, &spatial, err);
  if (!rc) rc = dd_attr_float(node, "epsilon", 1e-5f, &eps, err);
  if (rc) return rc;
  if (training)
    return dd_fail(err, DD_EUNSUPPORTED, "BatchNormalization with training_mode=1 (batch "
                   "statistics) is not supported; only inference mode is");
  if (spatial != 1)
    return dd_fail(err, DD_EUNSUPPORTED, "BatchNormalization with spatial=0 (per-activation "
                   "statistics, opset < 9) is not supported");
  if (!(eps >= 0.f)) return dd_fail(err, DD_EFORMAT, "epsilon must be >= 0, got %g", eps);
  if (node->n_in != 5)
    return dd_fail(err, DD_EFORMAT, "BatchNormalization needs 5 inputs (X, scale, B, mean, "
                   "var), got %d", node->n_in);
  bn_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->eps = eps;
  node->params = p;
  return DD_OK;
}

static int bn_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                    size_t *scratch, dd_err *err) {
  static const char *const names[] = {"X", "scale", "B", "mean", "var"};
  char sb[128];
  for (int i = 0; i < 5; i++) {
    if (!in[i]) return dd_fail(err, DD_EFORMAT, "input %s is missing", names[i]);
    if (in[i]->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "%s must be float32", names[i]);
  }
  const dd_shape *xs = &in[0]->shape;
  if (xs->ndim < 2)
    return dd_fail(err, DD_ESHAPE, "X must have at least 2 dims (N x C x ...), got %s",
                   dd_shape_str(xs, sb, sizeof sb));
  int64_t c = xs->d[1];
  for (int i = 1; i < 5; i++)
    if (in[i]->shape.ndim != 1 || in[i]->shape.d[0] != c)
      return dd_fail(err, DD_ESHAPE, "%s has shape %s, expected [%lld] (the channels of X)",
                     names[i], dd_shape_str(&in[i]->shape, sb, sizeof sb), (long long)c);
  for (int k = 1; k < node->n_out; k++)
    if (out[k])
      return dd_fail(err, DD_EUNSUPPORTED, "output %d (running or saved statistics) exists "
                     "only in training mode, which is not supported", k);
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = *xs;
  }
  *scratch = 0;
  return DD_OK;
}

/* The factor a[c] = scale / sqrt(var + eps) and the shift b[c] = bias - mean * a[c]. */
static inline void bn_coef(const dd_node *node, const dd_tensor *const *in, int64_t c,
                           float *a, float *b) {
  const bn_params *p = node->params;
  float s = dd_f32(in[1])[c], bias = dd_f32(in[2])[c];
  float mean = dd_f32(in[3])[c], var = dd_f32(in[4])[c];
  *a = s / sqrtf(var + p->eps);
  *b = bias - mean * *a;
}

/* Planes of H*W (or whatever the trailing dims hold) per (n, c). */
static void bn_dims(const dd_tensor *x, int64_t *n, int64_t *c, int64_t *hw) {
  *n = x->shape.d[0];
  *c = x->shape.d[1];
  *hw = 1;
  for (int i = 2; i < x->shape.ndim; i++) *hw *= x->shape.d[i];
}

static void bn_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       void *scratch) {
  if (!out[0]) return;
  int64_t n, c, hw;
  bn_dims(in[0], &n, &c, &hw);
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  int64_t planes = n * c;
#pragma omp parallel for if (planes * hw > DD_PAR_MIN) schedule(static)
  for (int64_t pl = 0; pl < planes; pl++) {
    float a, b;
    bn_coef(node, in, pl % c, &a, &b);
    const float *xp = x + pl * hw;
    float *yp = y + pl * hw;
    for (int64_t i = 0; i < hw; i++) yp[i] = xp[i] * a + b;
  }
}

/* dX += dY * a.  The gradients of the statistics are given too when asked for (a plan only
 * asks when they depend on the input), each reduced per channel. */
static void bn_backward(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out, const dd_tensor *const *dout,
                        dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  int64_t n, c, hw;
  bn_dims(in[0], &n, &c, &hw);
  const float *x = dd_f32(in[0]), *dy = dd_f32(dout[0]);
  int64_t planes = n * c;
  if (din[0]) {
    float *dx = dd_f32(din[0]);
#pragma omp parallel for if (planes * hw > DD_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
      float a, b;
      bn_coef(node, in, pl % c, &a, &b);
      const float *g = dy + pl * hw;
      float *d = dx + pl * hw;
      for (int64_t i = 0; i < hw; i++) d[i] += g[i] * a;
    }
  }
  if (!din[1] && !din[2] && !din[3] && !din[4]) return;
  const bn_params *p = node->params;
#pragma omp parallel for if (planes * hw > DD_PAR_MIN) schedule(static)
  for (int64_t ch = 0; ch < c; ch++) {
    double sg = 0, sgx = 0; /* sum dy, sum dy * x over the channel */
    for (int64_t b = 0; b < n; b++) {
      const float *g = dy + (b * c + ch) * hw, *xp = x + (b * c + ch) * hw;
      for (int64_t i = 0; i < hw; i++) {
        sg += g[i];
        sgx += (double)g[i] * xp[i];
      }
    }
    double s = dd_f32(in[1])[ch], mean = dd_f32(in[3])[ch], var = dd_f32(in[4])[ch];
    double inv = 1.0 / sqrt(var + p->eps);
    double sxhat = (sgx - mean * sg) * inv; /* sum dy * (x - mean) / sqrt(var + eps) */
    if (din[1]) dd_f32(din[1])[ch] += (float)sxhat;
    if (din[2]) dd_f32(din[2])[ch] += (float)sg;
    if (din[3]) dd_f32(din[3])[ch] += (float)(-sg * s * inv);
    if (din[4]) dd_f32(din[4])[ch] += (float)(-0.5 * s * sxhat / (var + p->eps));
  }
}

static int64_t bn_flops(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out) {
  return 2 * dd_tensor_numel(in[0]);
}

const dd_op dd_op_BatchNormalization = {"BatchNormalization", bn_init, bn_infer, bn_forward,
                                        bn_backward, bn_flops, 0};
