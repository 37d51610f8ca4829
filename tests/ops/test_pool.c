/* MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool against naive references written
 * from the ONNX definitions (output size, padding, ceil_mode, count_include_pad), their
 * adjoints, finite-difference gradient checks and infer's errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"

typedef struct pool_case {
  const char *what, *op;
  int nsp;
  int64_t n, c, in[3], k[3], s[3], d[3], pads[6];
  const char *auto_pad; /* NULL: NOTSET with pads */
  int ceil_mode, count_include_pad, dilations_attr;
} pool_case;

static const pool_case cases[] = {
    {"max 3x3 s2 ceil (GoogLeNet)", "MaxPool", 2, 2, 3, {9, 10}, {3, 3}, {2, 2}, {1, 1},
     {0, 0, 0, 0}, NULL, 1, 0, 0},
    {"max 3x3 s2 floor", "MaxPool", 2, 1, 2, {9, 10}, {3, 3}, {2, 2}, {1, 1}, {0}, NULL, 0, 0, 0},
    {"max asymmetric pads", "MaxPool", 2, 1, 3, {7, 6}, {3, 2}, {2, 1}, {1, 1}, {1, 0, 2, 1},
     NULL, 0, 0, 0},
    {"max ceil with pads: window starting in the right padding dropped", "MaxPool", 2, 1, 2,
     {6, 6}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, 1, 0, 0},
    {"max dilations", "MaxPool", 2, 1, 2, {8, 9}, {2, 3}, {1, 2}, {2, 2}, {0, 1, 0, 1}, NULL, 0, 0,
     1},
    {"max SAME_UPPER", "MaxPool", 2, 1, 2, {7, 8}, {3, 2}, {2, 2}, {1, 1}, {0}, "SAME_UPPER", 0, 0,
     0},
    {"max SAME_LOWER", "MaxPool", 2, 2, 1, {5, 6}, {2, 2}, {1, 1}, {1, 1}, {0}, "SAME_LOWER", 0, 0,
     0},
    {"max VALID", "MaxPool", 2, 1, 2, {7, 8}, {3, 3}, {2, 3}, {1, 1}, {0}, "VALID", 0, 0, 0},
    {"max 1-D", "MaxPool", 1, 2, 3, {11}, {3}, {2}, {1}, {1, 1}, NULL, 1, 0, 0},
    {"max 3x3 s1 pad 1, rows longer than a vector batch", "MaxPool", 2, 1, 3, {5, 150}, {3, 3},
     {1, 1}, {1, 1}, {1, 1, 1, 1}, NULL, 0, 0, 0},
    {"max 3x3 s2 pad 1, rows longer than a vector batch", "MaxPool", 2, 1, 2, {6, 161}, {3, 3},
     {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, 1, 0, 0},
    {"max 2x3 s(1,3), no 3x3 kernel", "MaxPool", 2, 1, 2, {6, 100}, {2, 3}, {1, 3}, {1, 1},
     {0, 1, 1, 1}, NULL, 0, 0, 0},
    {"max 3-D", "MaxPool", 3, 1, 2, {4, 5, 5}, {2, 2, 3}, {2, 1, 2}, {1, 1, 1}, {0, 1, 0, 1, 0, 1},
     NULL, 0, 0, 0},
    /* the 2-D kernel's strips (256 output columns), kernel limits and odd geometries */
    {"max 3x3 s1 pad 1, two column strips", "MaxPool", 2, 1, 2, {4, 300}, {3, 3}, {1, 1}, {1, 1},
     {1, 1, 1, 1}, NULL, 0, 0, 0},
    {"max 3x3 s2 ceil, three strips, odd sizes", "MaxPool", 2, 1, 1, {5, 1031}, {3, 3}, {2, 2},
     {1, 1}, {0}, NULL, 1, 0, 0},
    {"max 3x3 s(2,1) pads (0,2,1,0)", "MaxPool", 2, 1, 2, {7, 9}, {3, 3}, {2, 1}, {1, 1},
     {0, 2, 1, 0}, NULL, 0, 0, 0},
    {"max 3x3 s(1,2) ceil pads 1", "MaxPool", 2, 1, 2, {8, 11}, {3, 3}, {1, 2}, {1, 1},
     {1, 1, 1, 1}, NULL, 1, 0, 0},
    {"max 2x2 s2, even", "MaxPool", 2, 2, 2, {6, 8}, {2, 2}, {2, 2}, {1, 1}, {0}, NULL, 0, 0, 0},
    {"max 2x2 s3, stride past the kernel", "MaxPool", 2, 1, 2, {8, 10}, {2, 2}, {3, 3}, {1, 1},
     {0}, NULL, 1, 0, 0},
    {"max 8x8 s1 pad 3, the largest 2-D kernel", "MaxPool", 2, 1, 2, {10, 11}, {8, 8}, {1, 1},
     {1, 1}, {3, 3, 4, 4}, NULL, 0, 0, 0},
    {"max 9x9 s4, general walk", "MaxPool", 2, 1, 2, {13, 12}, {9, 9}, {4, 4}, {1, 1},
     {2, 2, 2, 2}, NULL, 1, 0, 0},
    {"max 1x5 s(1,3) on one row", "MaxPool", 2, 1, 2, {1, 23}, {1, 5}, {1, 3}, {1, 1},
     {0, 2, 0, 2}, NULL, 1, 0, 0},
    {"max 1-D 3 s1 pad 1, wider than a strip", "MaxPool", 1, 1, 2, {520}, {3}, {1}, {1}, {1, 1},
     NULL, 0, 0, 0},
    {"avg 3x3 s1 pad 1 exclude pad", "AveragePool", 2, 2, 2, {6, 7}, {3, 3}, {1, 1}, {1, 1},
     {1, 1, 1, 1}, NULL, 0, 0, 0},
    {"avg 3x3 s1 pad 1 include pad", "AveragePool", 2, 2, 2, {6, 7}, {3, 3}, {1, 1}, {1, 1},
     {1, 1, 1, 1}, NULL, 0, 1, 0},
    {"avg ceil exclude pad", "AveragePool", 2, 1, 2, {7, 8}, {3, 3}, {2, 2}, {1, 1}, {0, 1, 1, 0},
     NULL, 1, 0, 0},
    {"avg ceil include pad: divisor stops at the padding", "AveragePool", 2, 1, 2, {7, 8},
     {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 0}, NULL, 1, 1, 0},
    {"avg 5x5 s3", "AveragePool", 2, 1, 3, {11, 12}, {5, 5}, {3, 3}, {1, 1}, {0}, NULL, 0, 0, 0},
    {"avg SAME_UPPER include pad", "AveragePool", 2, 1, 2, {5, 7}, {3, 2}, {2, 2}, {1, 1}, {0},
     "SAME_UPPER", 0, 1, 0},
    {"avg SAME_LOWER", "AveragePool", 2, 1, 2, {5, 7}, {2, 2}, {1, 1}, {1, 1}, {0}, "SAME_LOWER",
     0, 0, 0},
    {"avg 1-D", "AveragePool", 1, 2, 2, {9}, {4}, {2}, {1}, {2, 1}, NULL, 1, 1, 0},
    {"avg 3-D", "AveragePool", 3, 1, 2, {4, 4, 5}, {2, 2, 2}, {1, 2, 2}, {1, 1, 1},
     {0, 0, 1, 0, 1, 1}, NULL, 0, 0, 0},
    {"avg 7x7 global-like, threads", "AveragePool", 2, 2, 40, {28, 28}, {7, 7}, {3, 3}, {1, 1},
     {0}, NULL, 0, 0, 0},
    /* Windows that tile the plane (kernel == stride, no padding): the vectorized path of
     * src/ops/pool.c; the same 2x2 s2 windows past the edge (ceil) take the general kernel */
    {"max 2x2 s2 tiling, odd sizes: last row and column in no window", "MaxPool", 2, 2, 3,
     {7, 9}, {2, 2}, {2, 2}, {1, 1}, {0}, NULL, 0, 0, 0},
    {"max 2x2 s2 ceil, odd sizes: windows past the edge, general kernel", "MaxPool", 2, 2, 3,
     {7, 9}, {2, 2}, {2, 2}, {1, 1}, {0}, NULL, 1, 0, 0},
    {"max 3x2 s(3,2) tiling, not 2x2", "MaxPool", 2, 1, 2, {9, 11}, {3, 2}, {3, 2}, {1, 1}, {0},
     NULL, 0, 0, 0},
    {"max 1-D 4 s4 tiling", "MaxPool", 1, 1, 2, {18}, {4}, {4}, {1}, {0}, NULL, 0, 0, 0},
    {"max 2x2 s2 tiling, threads (the cnn's first pool)", "MaxPool", 2, 8, 16, {32, 32}, {2, 2},
     {2, 2}, {1, 1}, {0}, NULL, 0, 0, 0},
    {"max 2x2 s2 tiling, 22 columns: one vector of 16 and 6 left", "MaxPool", 2, 1, 3, {6, 45},
     {2, 2}, {2, 2}, {1, 1}, {0}, NULL, 0, 0, 0},
};

/* Output size and padding from the ONNX definitions, independently of the library. */
static void expected_geometry(const pool_case *k, int64_t *out, int64_t *pb, int64_t *pe) {
  for (int i = 0; i < k->nsp; i++) {
    int64_t ke = (k->k[i] - 1) * k->d[i] + 1;
    if (k->auto_pad && !strncmp(k->auto_pad, "SAME", 4)) {
      out[i] = (k->in[i] + k->s[i] - 1) / k->s[i];
      int64_t total = (out[i] - 1) * k->s[i] + ke - k->in[i];
      if (total < 0) total = 0;
      pb[i] = !strcmp(k->auto_pad, "SAME_UPPER") ? total / 2 : total - total / 2;
      pe[i] = total - pb[i];
      continue;
    }
    int valid = k->auto_pad != NULL;
    pb[i] = valid ? 0 : k->pads[i];
    pe[i] = valid ? 0 : k->pads[k->nsp + i];
    double q = (double)(k->in[i] + pb[i] + pe[i] - ke) / (double)k->s[i];
    out[i] = (int64_t)(k->ceil_mode ? ceil(q) : floor(q)) + 1;
    if (k->ceil_mode && (out[i] - 1) * k->s[i] >= k->in[i] + pb[i]) out[i]--;
  }
}

static void setup_node(th_node *t, const pool_case *k) {
  th_init(t, k->op, 1, 1);
  th_attr_ints(t, "kernel_shape", k->nsp, k->k);
  th_attr_ints(t, "strides", k->nsp, k->s);
  if (k->dilations_attr) th_attr_ints(t, "dilations", k->nsp, k->d);
  if (k->auto_pad)
    th_attr_string(t, "auto_pad", k->auto_pad);
  else
    th_attr_ints(t, "pads", 2 * k->nsp, k->pads);
  if (k->ceil_mode) th_attr_int(t, "ceil_mode", 1);
  if (k->count_include_pad) th_attr_int(t, "count_include_pad", 1);
}

/* Overwrites x with a shuffled ramp: distinct values whose neighbours differ by 0.05, far
 * more than the finite-difference step, so no max moves under a perturbation. */
static void distinct_values(dd_tensor *x, uint64_t seed) {
  int64_t n = dd_tensor_numel(x);
  uint64_t st = seed;
  for (int64_t i = 0; i < n; i++) dd_f32(x)[i] = 0.05f * (float)(i - n / 2);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(dd_rng_next(&st) % (uint64_t)(i + 1));
    float tmp = dd_f32(x)[i];
    dd_f32(x)[i] = dd_f32(x)[j];
    dd_f32(x)[j] = tmp;
  }
}

static dd_tensor *make_input(const pool_case *k, uint64_t seed, int distinct) {
  int64_t dims[5] = {k->n, k->c};
  for (int i = 0; i < k->nsp; i++) dims[2 + i] = k->in[i];
  dd_tensor *x = th_random(2 + k->nsp, dims, seed, -1, 1);
  if (distinct) distinct_values(x, seed);
  return x;
}

/* Naive pooling over each window tap by tap.  y and dx may be NULL; argmax (may be NULL)
 * receives the row-major plane offset of each first maximum. */
static void naive_pool(const pool_case *k, const float *x, float *y, int64_t *argmax,
                       const float *dy, float *dx) {
  int64_t out[3] = {1, 1, 1}, pb[3] = {0}, pe[3] = {0};
  expected_geometry(k, out, pb, pe);
  int64_t in3[3] = {1, 1, 1}, k3[3] = {1, 1, 1}, s3[3] = {1, 1, 1}, d3[3] = {1, 1, 1},
          o3[3] = {1, 1, 1}, b3[3] = {0, 0, 0}, e3[3] = {0, 0, 0};
  for (int i = 0; i < k->nsp; i++) {
    int j = 3 - k->nsp + i;
    in3[j] = k->in[i], k3[j] = k->k[i], s3[j] = k->s[i], d3[j] = k->d[i];
    o3[j] = out[i], b3[j] = pb[i], e3[j] = pe[i];
  }
  int64_t isz = in3[0] * in3[1] * in3[2], osz = o3[0] * o3[1] * o3[2];
  int is_max = !strcmp(k->op, "MaxPool");
  for (int64_t p = 0; p < k->n * k->c; p++)
    for (int64_t a = 0; a < o3[0]; a++)
      for (int64_t b = 0; b < o3[1]; b++)
        for (int64_t c = 0; c < o3[2]; c++) {
          int64_t yi = p * osz + (a * o3[1] + b) * o3[2] + c;
          double sum = 0;
          int64_t count = 0, best = -1;
          for (int64_t u = 0; u < k3[0]; u++)
            for (int64_t v = 0; v < k3[1]; v++)
              for (int64_t w = 0; w < k3[2]; w++) {
                int64_t pos[3] = {a * s3[0] - b3[0] + u * d3[0], b * s3[1] - b3[1] + v * d3[1],
                                  c * s3[2] - b3[2] + w * d3[2]};
                int inside = 1, padded = 1;
                for (int i = 0; i < 3; i++) {
                  inside &= pos[i] >= 0 && pos[i] < in3[i];
                  padded &= pos[i] >= -b3[i] && pos[i] < in3[i] + e3[i];
                }
                if (k->count_include_pad ? padded : inside) count++;
                if (!inside) continue;
                int64_t off = (pos[0] * in3[1] + pos[1]) * in3[2] + pos[2];
                sum += x[p * isz + off];
                if (best < 0 || x[p * isz + off] > x[p * isz + best]) best = off;
              }
          if (is_max) {
            if (y) y[yi] = x[p * isz + best];
            if (argmax) argmax[yi] = best;
            if (dx) dx[p * isz + best] += dy[yi];
            continue;
          }
          if (y) y[yi] = (float)(sum / (double)count);
          if (!dx) continue;
          for (int64_t u = 0; u < k3[0]; u++)
            for (int64_t v = 0; v < k3[1]; v++)
              for (int64_t w = 0; w < k3[2]; w++) {
                int64_t pos[3] = {a * s3[0] - b3[0] + u * d3[0], b * s3[1] - b3[1] + v * d3[1],
                                  c * s3[2] - b3[2] + w * d3[2]};
                int inside = 1;
                for (int i = 0; i < 3; i++) inside &= pos[i] >= 0 && pos[i] < in3[i];
                if (inside)
                  dx[p * isz + (pos[0] * in3[1] + pos[1]) * in3[2] + pos[2]] +=
                      dy[yi] / (float)count;
              }
        }
}

/* dx starts at `initial`, or with fresh != 0 as garbage (NaN) handed over fresh
 * (dd_op_call.fresh), as the planner hands a gradient to its first writer: backward must then
 * overwrite all of it. */
static dd_tensor *run_backward(th_node *t, dd_tensor *x, dd_tensor *dy, float initial, int fresh) {
  dd_err err;
  dd_tensor shape[2], *outs[2] = {&shape[0], &shape[1]};
  memset(shape, 0, sizeof shape);
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)&x, outs, &scratch, &err), 0);
  dd_tensor *dx = th_tensor(x->shape.ndim, x->shape.d);
  for (int64_t i = 0; i < dd_tensor_numel(dx); i++) dd_f32(dx)[i] = fresh ? NAN : initial;
  dd_op_call call = {0, fresh ? 1 : 0};
  const dd_tensor *dout[2] = {dy, NULL}, *out[2] = {NULL, NULL};
  void *s = scratch ? malloc(scratch) : NULL;
  dd_op_backward(&t->node, (const dd_tensor *const *)&x, out, dout, &dx, s, &call);
  free(s);
  return dx;
}

/* Each case twice: on random values, and on rectified ones (half of them exactly 0, as after
 * a ReLU), where windows tie and the first maximum in scan order must get the gradient. */
static void pool_matches_naive_reference_forward_and_backward_on(void);
Test(pool, matches_naive_reference_forward_and_backward) {
  th_each_kernels(pool_matches_naive_reference_forward_and_backward_on);
}
static void pool_matches_naive_reference_forward_and_backward_on(void) {
  for (size_t run = 0; run < 2 * sizeof cases / sizeof cases[0]; run++) {
    size_t ci = run / 2;
    const pool_case *k = &cases[ci];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s: %s", k->what, err.msg);
    dd_tensor *x = make_input(k, 40 + ci, 0), *y[1];
    if (run % 2)
      for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = fmaxf(dd_f32(x)[i], 0.f);
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s: %s", k->what, err.msg);
    int64_t out[3], pb[3], pe[3], dims[5] = {k->n, k->c};
    expected_geometry(k, out, pb, pe);
    for (int i = 0; i < k->nsp; i++) dims[2 + i] = out[i];
    dd_shape es = dd_shape_make(2 + k->nsp, dims);
    cr_assert(dd_shape_eq(&y[0]->shape, &es), "%s: wrong output shape", k->what);
    dd_tensor *ref = th_tensor(es.ndim, es.d);
    naive_pool(k, dd_f32(x), dd_f32(ref), NULL, NULL, NULL);
    double e = th_max_abs_diff(y[0], ref);
    cr_assert(e <= 1e-6, "%s: forward differs by %g", k->what, e);

    dd_tensor *dy = th_random(es.ndim, es.d, 70 + ci, -1, 1);
    dd_tensor *dx = run_backward(&t, x, dy, 0.25f, 0);
    dd_tensor *dref = th_tensor(x->shape.ndim, x->shape.d);
    for (int64_t i = 0; i < dd_tensor_numel(dref); i++) dd_f32(dref)[i] = 0.25f;
    naive_pool(k, dd_f32(x), NULL, NULL, dd_f32(dy), dd_f32(dref));
    double de = th_max_abs_diff(dx, dref);
    cr_assert(de <= 1e-6, "%s: backward differs by %g", k->what, de);
    dd_tensor_free(dx);
    dx = run_backward(&t, x, dy, 0.f, 1);
    for (int64_t i = 0; i < dd_tensor_numel(dref); i++) dd_f32(dref)[i] = 0.f;
    naive_pool(k, dd_f32(x), NULL, NULL, dd_f32(dy), dd_f32(dref));
    de = th_max_abs_diff(dx, dref);
    cr_assert(de <= 1e-6, "%s: backward into a fresh gradient differs by %g", k->what, de);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(ref);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    dd_tensor_free(dref);
    free(t.node.params);
  }
}

Test(pool, ceil_mode_output_sizes_follow_onnx) {
  /* Hand-checked: 112 -> 56 for GoogLeNet's pool1 (3x3 s2 ceil), 6 with pads 1 -> 4 rather
   * than 5 (a fifth window would start in the right padding). */
  const pool_case *g = &cases[0];
  pool_case k = *g;
  k.in[0] = k.in[1] = 112;
  int64_t out[3], pb[3], pe[3];
  expected_geometry(&k, out, pb, pe);
  cr_assert_eq(out[0], 56);
  expected_geometry(&cases[3], out, pb, pe);
  cr_assert_eq(out[0], 4);
  th_node t;
  setup_node(&t, &cases[3]);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  dd_tensor *x = make_input(&cases[3], 1, 0), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert_eq(y[0]->shape.d[2], 4);
  cr_assert_eq(y[0]->shape.d[3], 4);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

static void pool_max_ties_go_to_the_first_maximum_on(void);
Test(pool, max_ties_go_to_the_first_maximum) {
  th_each_kernels(pool_max_ties_go_to_the_first_maximum_on);
}
static void pool_max_ties_go_to_the_first_maximum_on(void) {
  th_node t;
  th_init(&t, "MaxPool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  int64_t dims[4] = {1, 1, 2, 2};
  dd_tensor *x = th_tensor(4, dims);
  for (int i = 0; i < 4; i++) dd_f32(x)[i] = 1.f;
  int64_t od[4] = {1, 1, 1, 1};
  dd_tensor *dy = th_tensor(4, od);
  dd_f32(dy)[0] = 3.f;
  dd_tensor *dx = run_backward(&t, x, dy, 0.f, 0);
  cr_assert_eq(dd_f32(dx)[0], 3.f);
  for (int i = 1; i < 4; i++) cr_assert_eq(dd_f32(dx)[i], 0.f);
  dd_tensor_free(x);
  dd_tensor_free(dy);
  dd_tensor_free(dx);
  free(t.node.params);
}

/* Max pooling's values and gradients are exact: y is an input element and dx receives the
 * same additions in the same order (output order) as the naive reference, whatever kernel
 * computes them.  Checked bit for bit on every max case, on rectified inputs (ties). */
static void pool_max_is_bit_exact_against_the_naive_reference_on(void);
Test(pool, max_is_bit_exact_against_the_naive_reference) {
  th_each_kernels(pool_max_is_bit_exact_against_the_naive_reference_on);
}
static void pool_max_is_bit_exact_against_the_naive_reference_on(void) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const pool_case *k = &cases[ci];
    if (strcmp(k->op, "MaxPool")) continue;
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s: %s", k->what, err.msg);
    dd_tensor *x = make_input(k, 300 + ci, 0), *y[1];
    for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = fmaxf(dd_f32(x)[i], 0.f);
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s: %s", k->what, err.msg);
    dd_tensor *ref = th_tensor(y[0]->shape.ndim, y[0]->shape.d);
    naive_pool(k, dd_f32(x), dd_f32(ref), NULL, NULL, NULL);
    cr_assert_eq(memcmp(dd_f32(y[0]), dd_f32(ref), (size_t)dd_tensor_numel(ref) * sizeof(float)),
                 0, "%s: forward is not bit-exact", k->what);
    dd_tensor *dy = th_random(ref->shape.ndim, ref->shape.d, 400 + ci, -1, 1);
    dd_tensor *dx = run_backward(&t, x, dy, 0.3f, 0);
    dd_tensor *dref = th_tensor(x->shape.ndim, x->shape.d);
    for (int64_t i = 0; i < dd_tensor_numel(dref); i++) dd_f32(dref)[i] = 0.3f;
    naive_pool(k, dd_f32(x), NULL, NULL, dd_f32(dy), dd_f32(dref));
    for (int64_t i = 0; i < dd_tensor_numel(dref); i++)
      cr_assert_eq(dd_f32(dx)[i], dd_f32(dref)[i], "%s: dx[%lld] is %.9g, expected %.9g",
                   k->what, (long long)i, dd_f32(dx)[i], dd_f32(dref)[i]);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(ref);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    dd_tensor_free(dref);
    free(t.node.params);
  }
}

/* Windows of -inf only still take a tap of the window (its first inside the input), never a
 * padding position, so the gradient lands inside the plane. */
static void pool_max_of_minus_infinity_goes_to_the_first_tap_inside_on(void);
Test(pool, max_of_minus_infinity_goes_to_the_first_tap_inside) {
  th_each_kernels(pool_max_of_minus_infinity_goes_to_the_first_tap_inside_on);
}
static void pool_max_of_minus_infinity_goes_to_the_first_tap_inside_on(void) {
  /* 3x3 s1 pad 1; 2x2 s2 tiling, vectorized (32x32) and with a column tail (6x45) */
  static const int picks[] = {9, 37, 38};
  for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
    const pool_case *k = &cases[picks[pi]];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *x = make_input(k, 5, 0), *y[1];
    for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = -INFINITY;
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < dd_tensor_numel(y[0]); i++)
      cr_assert(isinf(dd_f32(y[0])[i]), "%s: y[%lld]", k->what, (long long)i);
    dd_tensor *dy = th_random(y[0]->shape.ndim, y[0]->shape.d, 6, -1, 1);
    dd_tensor *dx = run_backward(&t, x, dy, 0.f, 0);
    dd_tensor *dref = th_tensor(x->shape.ndim, x->shape.d);
    naive_pool(k, dd_f32(x), NULL, NULL, dd_f32(dy), dd_f32(dref));
    cr_assert_eq(th_max_abs_diff(dx, dref), 0.0, "%s", k->what);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    dd_tensor_free(dref);
    free(t.node.params);
  }
}

/* The tiling path (2x2 s2 here) keeps the general walk's choices: on ties the first maximum
 * in scan order (rows, then columns) gets the gradient, and a window of -inf only gives -inf
 * and sends its gradient to its first tap. */
static void pool_max_tiling_ties_and_minus_infinity_take_the_first_tap_on(void);
Test(pool, max_tiling_ties_and_minus_infinity_take_the_first_tap) {
  th_each_kernels(pool_max_tiling_ties_and_minus_infinity_take_the_first_tap_on);
}
static void pool_max_tiling_ties_and_minus_infinity_take_the_first_tap_on(void) {
  th_node t;
  th_init(&t, "MaxPool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
  th_attr_ints(&t, "strides", 2, (int64_t[]){2, 2});
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0);
  int64_t dims[4] = {1, 1, 4, 4}, od[4] = {1, 1, 2, 2};
  /* windows: all tied; -inf only; tied along the second row; tied down the last column */
  static const float v[16] = {1, 1, -INFINITY, -INFINITY, 1, 1, -INFINITY, -INFINITY,
                              0, 0, 0,         2,         2, 2, 0,         2};
  dd_tensor *x = th_tensor(4, dims), *y[1];
  memcpy(dd_f32(x), v, sizeof v);
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_f32(y[0])[0], 1.f);
  cr_assert(isinf(dd_f32(y[0])[1]) && dd_f32(y[0])[1] < 0);
  cr_assert_eq(dd_f32(y[0])[2], 2.f);
  cr_assert_eq(dd_f32(y[0])[3], 2.f);
  dd_tensor *dy = th_tensor(4, od);
  for (int i = 0; i < 4; i++) dd_f32(dy)[i] = (float)(i + 1);
  dd_tensor *dx = run_backward(&t, x, dy, 0.f, 1);
  static const float want[16] = {1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0};
  for (int i = 0; i < 16; i++)
    cr_assert_eq(dd_f32(dx)[i], want[i], "dx[%d] is %g, expected %g", i, dd_f32(dx)[i], want[i]);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  dd_tensor_free(dy);
  dd_tensor_free(dx);
  free(t.node.params);
}

static void pool_max_indices_output_row_and_column_major_on(void);
Test(pool, max_indices_output_row_and_column_major) {
  th_each_kernels(pool_max_indices_output_row_and_column_major_on);
}
static void pool_max_indices_output_row_and_column_major_on(void) {
  for (int order = 0; order < 2; order++) {
    const pool_case *k = &cases[2];
    th_node t;
    setup_node(&t, k);
    th_attr_int(&t, "storage_order", order);
    t.node.n_out = 2;
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *x = make_input(k, 5, 1), *y[2];
    cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
    cr_assert_eq(y[1]->dtype, DD_I64);
    cr_assert(dd_shape_eq(&y[0]->shape, &y[1]->shape));
    int64_t n = dd_tensor_numel(y[0]);
    int64_t *ref = malloc((size_t)n * sizeof *ref);
    naive_pool(k, dd_f32(x), NULL, ref, NULL, NULL);
    int64_t h = k->in[0], w = k->in[1], osz = n / (k->n * k->c);
    for (int64_t i = 0; i < n; i++) {
      int64_t plane = i / osz, off = ref[i];
      int64_t want = plane * h * w + (order ? (off % w) * h + off / w : off);
      cr_assert_eq(dd_i64(y[1])[i], want, "order %d element %lld", order, (long long)i);
      cr_assert_eq(dd_f32(x)[plane * h * w + off], dd_f32(y[0])[i]);
    }
    free(ref);
    dd_tensor_free(x);
    dd_tensor_free(y[0]);
    dd_tensor_free(y[1]);
    free(t.node.params);
  }
}

static void pool_gradient_matches_finite_differences_on(void);
Test(pool, gradient_matches_finite_differences) {
  th_each_kernels(pool_gradient_matches_finite_differences_on);
}
static void pool_gradient_matches_finite_differences_on(void) {
  static const int picks[] = {0,  2,  4,  8,  9,  10, 12, 15, 16, 18,
                              19, 21, 24, 26, 30, 31, 33, 34, 35, 36, 38};
  for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
    const pool_case *k = &cases[picks[pi]];
    th_node t;
    setup_node(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *x = make_input(k, 200 + pi, 1);
    int skipped = -1;
    double e = th_gradcheck(&t, &x, 0, 1e-2f, 3 + pi, &skipped);
    cr_assert(e >= 0 && e < 1e-2, "%s: relative error %g", k->what, e);
    cr_assert_eq(skipped, 0, "%s: %d coordinates skipped with distinct inputs", k->what, skipped);
    dd_tensor_free(x);
    free(t.node.params);
  }
}

static void pool_global_pools_match_reference_and_gradients_on(void);
Test(pool, global_pools_match_reference_and_gradients) {
  th_each_kernels(pool_global_pools_match_reference_and_gradients_on);
}
static void pool_global_pools_match_reference_and_gradients_on(void) {
  /* the last: planes of 323 floats, which the AVX-512 sum takes 64 at a time, then 8, then
   * the last 3 under a mask */
  int64_t shapes[4][5] = {{2, 3, 7}, {2, 3, 4, 5}, {1, 2, 3, 2, 4}, {1, 3, 17, 19}};
  for (int r = 0; r < 4; r++) {
    int nd = r < 3 ? 3 + r : 4;
    for (int op = 0; op < 2; op++) {
      th_node t;
      th_init(&t, op ? "GlobalMaxPool" : "GlobalAveragePool", 1, 1);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0);
      dd_tensor *xd = th_random(nd, shapes[r], 9 + r, -1, 1);
      if (op) distinct_values(xd, 9 + r);
      dd_tensor *y[1];
      cr_assert_eq(th_forward(&t, &xd, y, &err), 0, "%s", err.msg);
      cr_assert_eq(y[0]->shape.ndim, nd);
      cr_assert_eq(y[0]->shape.d[1], shapes[r][1]);
      for (int i = 2; i < nd; i++) cr_assert_eq(y[0]->shape.d[i], 1);
      int64_t planes = shapes[r][0] * shapes[r][1], sz = dd_tensor_numel(xd) / planes;
      for (int64_t p = 0; p < planes; p++) {
        double acc = op ? -INFINITY : 0;
        for (int64_t i = 0; i < sz; i++) {
          double v = dd_f32(xd)[p * sz + i];
          acc = op ? fmax(acc, v) : acc + v / (double)sz;
        }
        cr_assert(fabs(dd_f32(y[0])[p] - acc) < 1e-6, "%s plane %lld", t.op_type, (long long)p);
      }
      int skipped = -1;
      double e = th_gradcheck(&t, &xd, 0, 1e-2f, 4, &skipped);
      cr_assert(e >= 0 && e < 1e-2, "%s rank %d: relative error %g", t.op_type, nd, e);
      cr_assert_eq(skipped, 0);
      dd_tensor_free(xd);
      dd_tensor_free(y[0]);
      free(t.node.params);
    }
  }
}

Test(pool, infer_rejects_bad_attributes_with_clear_errors) {
  dd_err err;
  th_node t;
  int64_t dims[4] = {1, 2, 5, 5};
  dd_tensor *x = th_tensor(4, dims);

  th_init(&t, "MaxPool", 1, 1);
  cr_assert_neq(th_setup(&t, &err), 0);
  cr_assert(strstr(err.msg, "kernel_shape"), "%s", err.msg);

  th_init(&t, "MaxPool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
  th_attr_int(&t, "storage_order", 2);
  cr_assert_neq(th_setup(&t, &err), 0);
  cr_assert(strstr(err.msg, "storage_order"), "%s", err.msg);

  th_init(&t, "MaxPool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 3, (int64_t[]){2, 2, 2});
  cr_assert_eq(th_infer_status(&t, &x, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "kernel_shape"), "%s", err.msg);

  th_init(&t, "MaxPool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){6, 2});
  cr_assert_eq(th_infer_status(&t, &x, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "larger than the padded input"), "%s", err.msg);

  th_init(&t, "MaxPool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
  th_attr_ints(&t, "pads", 4, (int64_t[]){2, 0, 0, 0});
  cr_assert_eq(th_infer_status(&t, &x, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "padding only"), "%s", err.msg);

  th_init(&t, "AveragePool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
  th_attr_int(&t, "storage_order", 0);
  cr_assert_eq(th_setup(&t, &err), DD_EUNSUPPORTED);

  int64_t d6[6] = {1, 1, 2, 2, 2, 2};
  dd_tensor *x6 = th_tensor(6, d6);
  th_init(&t, "AveragePool", 1, 1);
  th_attr_ints(&t, "kernel_shape", 3, (int64_t[]){1, 1, 1});
  cr_assert_eq(th_infer_status(&t, &x6, &err), DD_EUNSUPPORTED);

  int64_t d2[2] = {2, 3};
  dd_tensor *x2 = th_tensor(2, d2);
  th_init(&t, "GlobalAveragePool", 1, 1);
  cr_assert_eq(th_infer_status(&t, &x2, &err), DD_ESHAPE);

  dd_tensor_free(x);
  dd_tensor_free(x6);
  dd_tensor_free(x2);
}
