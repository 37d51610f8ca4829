/* Element-wise functions of one tensor: the math functions (Erf, Sqrt, Exp, Log, Neg, Abs,
 * Reciprocal, Tanh) and the smooth or piecewise activations of modern networks (Softplus,
 * HardSigmoid, HardSwish, Gelu, Elu).  One kind per op, one kernel per kind; forward and
 * backward side by side.
 *
 * What backward reads decides the flags: an op whose derivative is a function of its output
 * (Exp, Sqrt, Reciprocal, Tanh) reads y only, so it may run in place (DD_OP_INPLACE) and the
 * plan may free x early (DD_OP_BWD_NO_X); Neg reads neither; the others read x only
 * (DD_OP_BWD_NO_OUT), and run in place in plans without their gradient.  Every
 * backward computes dx[i] from dy[i] at the same index, so din[0] may share dout[0]'s memory
 * (DD_OP_INPLACE_GRAD): it then overwrites instead of accumulating.
 *
 * At a kink the gradient is PyTorch's: Abs has 0 at 0; HardSigmoid passes only strictly
 * inside its linear part; HardSwish is x/3 + 1/2 on [-3, 3] (both ends included); Elu has
 * alpha at 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/act.h"
#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/fastexp.h"

enum {
  U_ERF, U_SQRT, U_EXP, U_LOG, U_NEG, U_ABS, U_RECIPROCAL, U_TANH,
  U_SOFTPLUS, U_HARDSIGMOID, U_HARDSWISH, U_GELU, U_GELU_TANH, U_ELU
};

typedef struct unary_params {
  int kind;
  float alpha, beta; /* HardSigmoid (and HardSwish's fixed 1/6, 1/2); Elu's alpha */
} unary_params;

/* Checks the attributes against `known` and parses them into a unary_params. */
static int unary_init(dd_node *node, int kind, const char *const *known, dd_err *err) {
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  if (node->n_in != 1) return dd_fail(err, DD_EFORMAT, "needs 1 input, got %d", node->n_in);
  unary_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->kind = kind;
  if (kind == U_HARDSIGMOID) {
    rc = dd_attr_float(node, "alpha", 0.2f, &p->alpha, err);
    if (!rc) rc = dd_attr_float(node, "beta", 0.5f, &p->beta, err);
  } else if (kind == U_HARDSWISH) {
    p->alpha = 1.f / 6.f;
    p->beta = 0.5f;
  } else if (kind == U_ELU) {
    rc = dd_attr_float(node, "alpha", 1.f, &p->alpha, err);
  } else if (kind == U_GELU) {
    const char *approx;
    rc = dd_attr_string(node, "approximate", "none", &approx, err);
    if (!rc && !strcmp(approx, "tanh")) p->kind = U_GELU_TANH;
    else if (!rc && strcmp(approx, "none"))
      rc = dd_fail(err, DD_EUNSUPPORTED, "Gelu approximate='%s' is not supported (only "
                   "'none' and 'tanh')", approx);
  }
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* name_init for each op: the attributes it accepts, NULL-terminated. */
#define UNARY_INIT(name, kind, ...)                                        \
  static int name##_init(dd_node *node, dd_err *err) {                     \
    static const char *const known[] = {__VA_ARGS__};                      \
    return unary_init(node, kind, known, err);                             \
  }

UNARY_INIT(erf, U_ERF, NULL)
UNARY_INIT(sqrt, U_SQRT, NULL)
UNARY_INIT(exp, U_EXP, NULL)
UNARY_INIT(log, U_LOG, NULL)
UNARY_INIT(neg, U_NEG, NULL)
UNARY_INIT(abs, U_ABS, NULL)
UNARY_INIT(reciprocal, U_RECIPROCAL, NULL)
UNARY_INIT(tanh, U_TANH, NULL)
UNARY_INIT(softplus, U_SOFTPLUS, NULL)
UNARY_INIT(hardswish, U_HARDSWISH, NULL)
UNARY_INIT(hardsigmoid, U_HARDSIGMOID, "alpha", "beta", NULL)
UNARY_INIT(elu, U_ELU, "alpha", NULL)
UNARY_INIT(gelu, U_GELU, "approximate", NULL)

/* float32 in, the same shape out; Neg and Abs also take int64 (shape arithmetic). */
static int unary_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  const unary_params *p = node->params;
  if (node->n_in < 1 || !in[0]) return dd_fail(err, DD_EFORMAT, "needs an input");
  if (node->n_out < 1) return dd_fail(err, DD_EFORMAT, "needs an output");
  int int_ok = p->kind == U_NEG || p->kind == U_ABS;
  if (in[0]->dtype != DD_F32 && !(int_ok && in[0]->dtype == DD_I64))
    return dd_fail(err, DD_EUNSUPPORTED, "%s of %s is not supported (float32%s only)",
                   node->op_type, dd_dtype_name(in[0]->dtype), int_ok ? " and int64" : "");
  if (out[0]) {
    out[0]->dtype = in[0]->dtype;
    out[0]->shape = in[0]->shape;
  }
  *scratch = 0;
  return DD_OK;
}

/* ---- forward ---- */

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_TANH_C 0.044715f
#define SQRT_HALF 0.7071067811865476f

/* Phi(v), the standard normal CDF, = erfc(-v / sqrt 2) / 2, without a libm call so that
 * GELU's loops vectorize (libm's erff is scalar and was a quarter of ConvNeXt-T's forward).
 * erfc(z), z >= 0, by Numerical Recipes' Chebyshev fit, t exp(-z^2 + q(t)) with
 * t = 1 / (1 + z/2): fractional error below 1.2e-7 for every z (so Phi keeps its relative
 * accuracy in the far left tail, where GELU's output is tiny), exp through dd_exp_neg.  z is
 * capped at 10 (erfc(10) < 3e-44): a NaN v becomes 10 here, and GELU stays NaN through its
 * factor v. */
static inline __attribute__((always_inline)) float phi(float v) {
  float z = fabsf(v) * SQRT_HALF;
  z = z < 10.f ? z : 10.f;
  float t = 1.f / (1.f + 0.5f * z);
  float q = 0.17087277f;
  q = DD_FMAF(q, t, -0.82215223f);
  q = DD_FMAF(q, t, 1.48851587f);
  q = DD_FMAF(q, t, -1.13520398f);
  q = DD_FMAF(q, t, 0.27886807f);
  q = DD_FMAF(q, t, -0.18628806f);
  q = DD_FMAF(q, t, 0.09678418f);
  q = DD_FMAF(q, t, 0.37409196f);
  q = DD_FMAF(q, t, 1.00002368f);
  q = DD_FMAF(q, t, -1.26551223f);
  float half_erfc = 0.5f * t * dd_exp_neg(DD_FMAF(z, z, -q)); /* -q + z^2 >= -3e-8: fine for exp_neg */
  return v >= 0.f ? 1.f - half_erfc : half_erfc;
}

/* log(1 + e^x) without overflow: e^x is taken of a non-positive number only. */
static inline float softplusf(float x) {
  return x > 0.f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

static inline float sigmoidf(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  float e = expf(x);
  return e / (1.f + e);
}

/* clip(a x + b, 0, 1) as numpy.clip: NaN stays NaN (fmaxf would turn it into 0). */
static inline float hardsigmoidf(float x, float a, float b) {
  float v = a * x + b;
  return v < 0.f ? 0.f : v > 1.f ? 1.f : v;
}

/* y[i] = EXPR of v = x[i]; y may be x (in place). */
#define UNARY_FWD(EXPR)                                                              \
  do {                                                                               \
    _Pragma("omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)") \
    for (int64_t i = 0; i < n; i++) {                                                \
      const float v = x[i];                                                          \
      y[i] = (EXPR);                                                                 \
    }                                                                                \
  } while (0)

static void unary_forward_i64(int kind, const int64_t *x, int64_t *y, int64_t n) {
  /* through unsigned: -INT64_MIN wraps to INT64_MIN, as numpy, without overflow */
  for (int64_t i = 0; i < n; i++) {
    uint64_t u = (uint64_t)x[i];
    y[i] = kind == U_NEG || x[i] < 0 ? (int64_t)(0 - u) : x[i];
  }
}

void dd_gelu_rows(const float *x, float *y, int64_t n, int parallel) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512()) {
    dd_act16_rows(x, y, n, DD_ACT_GELU, parallel);
    return;
  }
  if (dd_kernels_avx2()) {
    dd_act8_rows(x, y, n, DD_ACT_GELU, parallel);
    return;
  }
#endif
  if (!parallel || n <= DD_PAR_MIN) { /* no region: see dd_silu_rows */
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * phi(x[i]);
  } else {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * phi(x[i]);
  }
}

static void unary_forward(const dd_node *node, const dd_tensor *const *in,
                          dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  const unary_params *p = node->params;
  const int64_t n = dd_tensor_numel(in[0]);
  if (in[0]->dtype == DD_I64) {
    unary_forward_i64(p->kind, dd_i64(in[0]), dd_i64(out[0]), n);
    return;
  }
  const float *x = dd_f32(in[0]);
  float *y = dd_f32(out[0]);
  const float a = p->alpha, b = p->beta;
  switch (p->kind) {
    case U_ERF: UNARY_FWD(erff(v)); break;
    case U_SQRT: UNARY_FWD(sqrtf(v)); break;
    case U_EXP: UNARY_FWD(expf(v)); break;
    case U_LOG: UNARY_FWD(logf(v)); break;
    case U_NEG: UNARY_FWD(-v); break;
    case U_ABS: UNARY_FWD(fabsf(v)); break;
    case U_RECIPROCAL: UNARY_FWD(1.f / v); break;
    case U_TANH: UNARY_FWD(tanhf(v)); break;
    case U_SOFTPLUS: UNARY_FWD(softplusf(v)); break;
    case U_HARDSIGMOID: UNARY_FWD(hardsigmoidf(v, a, b)); break;
    case U_HARDSWISH: UNARY_FWD(v * hardsigmoidf(v, a, b)); break;
    case U_GELU: dd_gelu_rows(x, y, n, 1); break;
    case U_GELU_TANH:
      UNARY_FWD(0.5f * v * (1.f + tanhf(SQRT_2_OVER_PI * (v + GELU_TANH_C * v * v * v))));
      break;
    default: UNARY_FWD(v > 0.f ? v : a * expm1f(v)); break; /* U_ELU */
  }
}

/* ---- backward ----
 * dx[i] (+)= dy[i] * D, the derivative D from v = x[i] or u = y[i] (only the one the op's
 * flags allow it to read).  dx == dy: the plan gave dx the memory of dy, overwrite. */
#define UNARY_BWD(DECL, D)                                                             \
  do {                                                                                 \
    if (dx == dy) {                                                                    \
      _Pragma("omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)") \
      for (int64_t i = 0; i < n; i++) {                                                \
        DECL;                                                                          \
        dx[i] = dy[i] * (D);                                                           \
      }                                                                                \
    } else {                                                                           \
      _Pragma("omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)") \
      for (int64_t i = 0; i < n; i++) {                                                \
        DECL;                                                                          \
        dx[i] += dy[i] * (D);                                                          \
      }                                                                                \
    }                                                                                  \
  } while (0)
#define FROM_X const float v = x[i]
#define FROM_Y const float u = y[i]
#define FROM_NONE (void)0

/* d/dx of GELU's exact form: Phi(x) + x phi(x). */
static inline __attribute__((always_inline)) float gelu_grad(float v) {
  const float inv_sqrt_2pi = 0.3989422804014327f;
  float h = 0.5f * v * v;
  h = h < 88.f ? h : 88.f; /* exp(-88) is 0 in float32 anyway; a NaN v stays NaN through v */
  return phi(v) + v * inv_sqrt_2pi * dd_exp_neg(h);
}

#ifdef DD_AVX512_KERNELS
/* dx (+)= dy GELU'(x) by dd_gelu_grad16 (ops/act.h), in blocks of 4096 on the threads; dx ==
 * dy overwrites, as UNARY_BWD. */
/* One block, [i0, i1), of gelu_backward_avx512: a function of its own for Clang, as
 * activation.c's act16_block. */
DD_TARGET_AVX512 static void gelu_backward_block(const float *x, const float *dy, float *dx,
                                                 int64_t i0, int64_t i1) {
  const int add = dx != dy;
  for (int64_t i = i0; i < i1; i += 16) {
    __mmask16 m = (__mmask16)(i1 - i >= 16 ? 0xffff : (1u << (i1 - i)) - 1);
    __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i),
                             dd_gelu_grad16(_mm512_maskz_loadu_ps(m, x + i)));
    if (add) g = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), g);
    _mm512_mask_storeu_ps(dx + i, m, g);
  }
}

static void gelu_backward_avx512(const float *x, const float *dy, float *dx, int64_t n) {
  const int64_t blocks = (n + 4095) / 4096;
#pragma omp parallel for if (n > DD_PAR_MIN) schedule(static)
  for (int64_t b = 0; b < blocks; b++)
    gelu_backward_block(x, dy, dx, b * 4096, (b + 1) * 4096 < n ? (b + 1) * 4096 : n);
}
#endif

static inline __attribute__((always_inline)) float gelu_tanh_grad(float v) {
  float t = tanhf(SQRT_2_OVER_PI * (v + GELU_TANH_C * v * v * v));
  return 0.5f * (1.f + t) +
         0.5f * v * (1.f - t * t) * SQRT_2_OVER_PI * (1.f + 3.f * GELU_TANH_C * v * v);
}

static void unary_backward(const dd_node *node, const dd_tensor *const *in,
                           const dd_tensor *const *out, const dd_tensor *const *dout,
                           dd_tensor *const *din, void *scratch) {
  if (!din[0] || !dout[0] || in[0]->dtype != DD_F32) return;
  const unary_params *p = node->params;
  const int64_t n = dd_tensor_numel(in[0]);
  const float *x = dd_f32(in[0]), *y = out[0] ? dd_f32(out[0]) : NULL, *dy = dd_f32(dout[0]);
  float *dx = dd_f32(din[0]);
  const float a = p->alpha, b = p->beta;
  switch (p->kind) {
    case U_ERF: UNARY_BWD(FROM_X, 1.1283791670955126f * expf(-v * v)); break; /* 2/sqrt(pi) */
    case U_SQRT: UNARY_BWD(FROM_Y, 0.5f / u); break;
    case U_EXP: UNARY_BWD(FROM_Y, u); break;
    case U_LOG: UNARY_BWD(FROM_X, 1.f / v); break;
    case U_NEG: UNARY_BWD(FROM_NONE, -1.f); break;
    case U_ABS: UNARY_BWD(FROM_X, v > 0.f ? 1.f : v < 0.f ? -1.f : 0.f); break;
    case U_RECIPROCAL: UNARY_BWD(FROM_Y, -u * u); break;
    case U_TANH: UNARY_BWD(FROM_Y, 1.f - u * u); break;
    case U_SOFTPLUS: UNARY_BWD(FROM_X, sigmoidf(v)); break;
    case U_HARDSIGMOID: UNARY_BWD(FROM_X, a * v + b > 0.f && a * v + b < 1.f ? a : 0.f); break;
    case U_HARDSWISH:
      UNARY_BWD(FROM_X, v < -3.f ? 0.f : v <= 3.f ? v * (1.f / 3.f) + 0.5f : 1.f);
      break;
    case U_GELU:
#ifdef DD_AVX512_KERNELS
      if (dd_kernels_avx512()) {
        gelu_backward_avx512(x, dy, dx, n);
        break;
      }
#endif
      UNARY_BWD(FROM_X, gelu_grad(v));
      break;
    case U_GELU_TANH: UNARY_BWD(FROM_X, gelu_tanh_grad(v)); break;
    default: UNARY_BWD(FROM_X, v > 0.f ? 1.f : a * expf(v)); break; /* U_ELU */
  }
}

/* Rough operation counts per element: a transcendental function counts as a few. */
static int64_t unary_flops(const dd_node *node, const dd_tensor *const *in,
                           const dd_tensor *const *out) {
  static const int cost[] = {[U_ERF] = 8, [U_SQRT] = 2, [U_EXP] = 4, [U_LOG] = 4, [U_NEG] = 1,
                             [U_ABS] = 1, [U_RECIPROCAL] = 1, [U_TANH] = 6, [U_SOFTPLUS] = 8,
                             [U_HARDSIGMOID] = 3, [U_HARDSWISH] = 4, [U_GELU] = 11,
                             [U_GELU_TANH] = 12, [U_ELU] = 5};
  const unary_params *p = node->params;
  return cost[p->kind] * dd_tensor_numel(in[0]);
}

/* backward reads x only: forward runs in place where the gradient is not asked for (op.h) */
#define FLAGS_X (DD_OP_BWD_NO_OUT | DD_OP_INPLACE | DD_OP_INPLACE_GRAD)
/* backward reads y only: forward may run in place */
#define FLAGS_Y (DD_OP_BWD_NO_X | DD_OP_INPLACE | DD_OP_INPLACE_GRAD)

#define UNARY_OP(Name, init, flags)                                                        \
  const dd_op dd_op_##Name = {#Name, init, unary_infer, unary_forward, unary_backward,     \
                              unary_flops, flags}

UNARY_OP(Erf, erf_init, FLAGS_X);
UNARY_OP(Sqrt, sqrt_init, FLAGS_Y);
UNARY_OP(Exp, exp_init, FLAGS_Y);
UNARY_OP(Log, log_init, FLAGS_X);
UNARY_OP(Neg, neg_init, DD_OP_BWD_NO_X | DD_OP_BWD_NO_OUT | DD_OP_INPLACE | DD_OP_INPLACE_GRAD);
UNARY_OP(Abs, abs_init, FLAGS_X);
UNARY_OP(Reciprocal, reciprocal_init, FLAGS_Y);
UNARY_OP(Tanh, tanh_init, FLAGS_Y);
UNARY_OP(Softplus, softplus_init, FLAGS_X);
UNARY_OP(HardSigmoid, hardsigmoid_init, FLAGS_X);
UNARY_OP(HardSwish, hardswish_init, FLAGS_X | DD_OP_HARDSWISH);
UNARY_OP(Gelu, gelu_init, FLAGS_X | DD_OP_GELU);
UNARY_OP(Elu, elu_init, FLAGS_X);
