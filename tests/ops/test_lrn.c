/* LRN against a naive double-precision reference of the ONNX formula and of its Jacobian,
 * finite-difference gradient checks, and infer's errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"

typedef struct lrn_case {
  const char *what;
  int ndim;
  int64_t dims[5];
  int64_t size;
  float alpha, beta, bias, range;
  int defaults; /* leave alpha, beta, bias unset (1e-4, 0.75, 1) */
} lrn_case;

static const lrn_case cases[] = {
    {"GoogLeNet's parameters on large values", 4, {2, 7, 4, 5}, 5, 1e-4f, 0.75f, 1.f, 60.f, 1},
    {"even size (asymmetric window)", 4, {1, 6, 3, 3}, 4, 0.5f, 0.6f, 2.f, 2.f, 0},
    {"size 1", 4, {1, 3, 2, 4}, 1, 0.3f, 0.75f, 1.f, 2.f, 0},
    {"window wider than the channels", 4, {1, 4, 3, 2}, 9, 0.8f, 0.9f, 1.5f, 2.f, 0},
    {"rank 3", 3, {2, 5, 6}, 3, 0.4f, 0.5f, 1.f, 2.f, 0},
    {"rank 5", 5, {1, 5, 2, 3, 2}, 3, 0.4f, 1.2f, 1.f, 2.f, 0},
    {"spatial beyond one chunk", 4, {1, 5, 17, 19}, 3, 0.2f, 0.75f, 1.f, 2.f, 0},
    {"two images, several chunks, odd tail", 4, {2, 9, 23, 29}, 5, 1e-3f, 0.75f, 1.f, 8.f, 0},
    {"other beta over several short chunks", 4, {1, 6, 20, 21}, 3, 0.3f, 0.6f, 1.2f, 2.f, 0},
    {"even size, beta 0.75", 4, {1, 7, 5, 7}, 4, 0.5f, 0.75f, 2.f, 2.f, 0},
    {"size 2: the window is the channel and the one above", 4, {1, 5, 3, 7}, 2, 0.7f, 0.75f,
     1.f, 2.f, 0},
    {"strong normalization, scale up to 2e4", 4, {1, 8, 9, 9}, 5, 50.f, 0.75f, 1.f, 20.f, 0},
    {"small bias, scale down to 1e-3", 3, {1, 6, 40}, 3, 0.1f, 0.75f, 1e-3f, 1.f, 0},
    {"squares beyond float range (scale inf, y 0)", 4, {1, 5, 3, 7}, 3, 1.f, 0.75f, 1.f, 1e25f,
     0},
    {"window wider than the stack's ring", 4, {1, 20, 3, 3}, 17, 0.5f, 0.75f, 1.f, 2.f, 0},
    {"window wider than the ring, other beta", 4, {2, 19, 2, 3}, 18, 0.5f, 0.6f, 1.5f, 2.f, 0},
};

static void setup_node(th_node *t, const lrn_case *k) {
  th_init(t, "LRN", 1, 1);
  th_attr_int(t, "size", k->size);
  if (!k->defaults) {
    th_attr_float(t, "alpha", k->alpha);
    th_attr_float(t, "beta", k->beta);
    th_attr_float(t, "bias", k->bias);
  }
}

/* Square-sum window of channel c: [c - floor((size-1)/2), c + ceil((size-1)/2)]. */
static double naive_scale(const lrn_case *k, const float *x, int64_t n, int64_t c, int64_t s,
                          int64_t C, int64_t S) {
  double sum = 0;
  for (int64_t j = c - (k->size - 1) / 2; j <= c + (k->size - 1 + 1) / 2; j++)
    if (j >= 0 && j < C) sum += (double)x[(n * C + j) * S + s] * x[(n * C + j) * S + s];
  return k->bias + k->alpha / (double)k->size * sum;
}

/* y, and dx += J^T dy built entry by entry from dy_j/dx_i. */
static void naive_lrn(const lrn_case *k, const float *x, float *y, const float *dy, float *dx) {
  int64_t N = k->dims[0], C = k->dims[1], S = 1;
  for (int i = 2; i < k->ndim; i++) S *= k->dims[i];
  for (int64_t n = 0; n < N; n++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t j = 0; j < C; j++) {
        double sj = naive_scale(k, x, n, j, s, C, S);
        double xj = x[(n * C + j) * S + s];
        if (y) y[(n * C + j) * S + s] = (float)(xj * pow(sj, -k->beta));
        if (!dy) continue;
        double g = dy[(n * C + j) * S + s];
        for (int64_t i = 0; i < C; i++) {
          double d = i == j ? pow(sj, -k->beta) : 0;
          int in_window = i >= j - (k->size - 1) / 2 && i <= j + k->size / 2;
          if (in_window)
            d += xj * -k->beta * pow(sj, -k->beta - 1) * k->alpha / (double)k->size * 2 *
                 x[(n * C + i) * S + s];
          dx[(n * C + i) * S + s] += (float)(g * d);
        }
      }
}

static void lrn_matches_naive_reference_forward_and_backward_on(void);
Test(lrn, matches_naive_reference_forward_and_backward) {
  th_each_kernels(lrn_matches_naive_reference_forward_and_backward_on);
}
static void lrn_matches_naive_reference_forward_and_backward_on(void) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const lrn_case *k = &cases[ci];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s: %s", k->what, err.msg);
    dd_tensor *x = th_random(k->ndim, k->dims, 10 + ci, -k->range, k->range), *y[1];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s: %s", k->what, err.msg);
    cr_assert(dd_shape_eq(&y[0]->shape, &x->shape));
    dd_tensor *ref = th_tensor(k->ndim, k->dims);
    naive_lrn(k, dd_f32(x), dd_f32(ref), NULL, NULL);
    double scale = fmax(1e-3, th_max_abs(ref));
    double e = th_max_abs_diff(y[0], ref);
    cr_assert(e <= 2e-6 * scale, "%s: forward differs by %g (scale %g)", k->what, e, scale);

    dd_tensor *dy = th_random(k->ndim, k->dims, 50 + ci, -1, 1);
    dd_tensor *dx = th_tensor(k->ndim, k->dims), *dref = th_tensor(k->ndim, k->dims);
    for (int64_t i = 0; i < dd_tensor_numel(dx); i++) dd_f32(dx)[i] = dd_f32(dref)[i] = 0.5f;
    size_t need = 0;
    dd_tensor shape, *outs[1] = {&shape};
    cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)&x, outs, &need, &err), 0);
    void *s = malloc(need ? need : 1);
    const dd_tensor *dout[1] = {dy}, *o[1] = {y[0]};
    t.node.op->backward(&t.node, (const dd_tensor *const *)&x, o, dout, &dx, s);
    free(s);
    naive_lrn(k, dd_f32(x), NULL, dd_f32(dy), dd_f32(dref));
    double de = th_max_abs_diff(dx, dref);
    cr_assert(de <= 2e-6 * fmax(1.0, th_max_abs(dref)), "%s: backward differs by %g", k->what,
              de);

    /* DD_OP_INPLACE_GRAD: with din[0] in dout[0]'s memory, dx is the gradient itself */
    cr_assert(t.node.op->flags & DD_OP_INPLACE_GRAD);
    dd_tensor *g = th_tensor(k->ndim, k->dims);
    memcpy(dd_f32(g), dd_f32(dy), (size_t)dd_tensor_numel(dy) * sizeof(float));
    for (int64_t i = 0; i < dd_tensor_numel(dref); i++) dd_f32(dref)[i] = 0.f;
    naive_lrn(k, dd_f32(x), NULL, dd_f32(dy), dd_f32(dref));
    s = malloc(need ? need : 1);
    const dd_tensor *gout[1] = {g};
    t.node.op->backward(&t.node, (const dd_tensor *const *)&x, o, gout, &g, s);
    free(s);
    de = th_max_abs_diff(g, dref);
    cr_assert(de <= 2e-6 * fmax(1.0, th_max_abs(dref)), "%s: in-place backward differs by %g",
              k->what, de);
    dd_tensor_free(g);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(ref);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    dd_tensor_free(dref);
    free(t.node.params);
  }
}

static void lrn_gradient_matches_finite_differences_on(void);
Test(lrn, gradient_matches_finite_differences) {
  th_each_kernels(lrn_gradient_matches_finite_differences_on);
}
static void lrn_gradient_matches_finite_differences_on(void) {
  for (size_t ci = 0; ci < 6; ci++) {
    const lrn_case *k = &cases[ci];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *x = th_random(k->ndim, k->dims, 30 + ci, -k->range, k->range);
    int skipped = -1;
    double e = th_gradcheck(&t, &x, 0, 1e-2f, 8 + ci, &skipped);
    cr_assert(e >= 0 && e < 1e-2, "%s: relative error %g", k->what, e);
    cr_assert_eq(skipped, 0, "%s: %d skipped in a smooth op", k->what, skipped);
    dd_tensor_free(x);
    free(t.node.params);
  }
}

Test(lrn, init_rejects_bad_attributes) {
  th_node t;
  dd_err err;
  th_init(&t, "LRN", 1, 1);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "size"), "%s", err.msg);
  th_init(&t, "LRN", 1, 1);
  th_attr_int(&t, "size", 0);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  th_init(&t, "LRN", 1, 1);
  th_attr_int(&t, "size", 3);
  th_attr_float(&t, "beta", INFINITY);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  th_init(&t, "LRN", 1, 1);
  th_attr_int(&t, "size", 3);
  th_attr_int(&t, "depth", 3);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "depth"), "%s", err.msg);
}
