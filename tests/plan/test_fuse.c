/* Fusion (src/plan/fuse.c): the chains torch 1.13 writes at opset 13 for nn.LayerNorm and
 * nn.GELU, built here node for node as the exporter writes them (Constant nodes for the
 * scalars, the weights as initializers), run fused (DD_PLAN_REUSE) against the same plan with
 * DD_PLAN_NO_FUSE: same outputs and input gradients within float32 rounding, fewer nodes and
 * fewer bytes.  And the chains that must not be fused: an intermediate that is a target or
 * read elsewhere, a constant that differs from the formula's.  Last, a block exported by
 * torch itself (tests/ref/fuse_torch.py) against torch autograd, fused and not. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "helper_files.h"
#include "helper_kernels.h"
#include "helper_model.h"
#include "helper_ops.h"
#include "helper_torch.h"
#include "plan/plan.h"

/* ---- a graph built node by node ---- */

/* y = op(a, b) (b NULL: one input). */
static void fg_node(th_model *g, const char *op, const char *a, const char *b, const char *y) {
  char in[100];
  snprintf(in, sizeof in, "%s%s%s", a, b ? "," : "", b ? b : "");
  th_model_node(g, op, NULL, in, y);
}

/* name = Constant(value), a float32 scalar (0 dims), as torch writes them. */
static void fg_const(th_model *g, const char *name, float v) {
  th_model_node(g, "Constant", NULL, NULL, name);
  th_model_attr_tensor_f32(g, "value", 0, NULL, &v, 1);
}

/* An initializer of n random floats in [lo, hi), shape [n]. */
static void fg_init(th_model *g, const char *name, int n, uint64_t seed, float lo, float hi) {
  float v[64];
  cr_assert(n <= 64);
  uint64_t st = seed;
  for (int k = 0; k < n; k++) v[k] = th_rand_uniform(&st, lo, hi);
  th_model_init_f32(g, name, 1, (int64_t[]){n}, v, (size_t)n);
}

/* Input "x", the outputs named in `outs`: the model, loaded; the builder is freed. */
static dd_model *fg_load(th_model *g, int n_out, const char *const *outs) {
  th_model_input(g, "x", -1, NULL);
  for (int k = 0; k < n_out; k++) th_model_output(g, outs[k]);
  dd_model *m = th_model_load(g, "fuse.onnx");
  th_model_free(g);
  return m;
}

/* Operand orders of the commutative Adds and Muls, bit by bit (torch's is 0). */
enum { SWAP_SCALE = 1, SWAP_BIAS = 2, SWAP_EPS = 4, SWAP_GELU_X = 8, SWAP_HALF = 16,
       SWAP_ONE = 32 };

/* y = Add(Mul(Div(d, Sqrt(Add(ReduceMean(Pow(d, 2)), eps))), w), b), d = x - ReduceMean(x):
 * nn.LayerNorm as torch 1.13 exports it (prefix p for the names). */
static void fg_layernorm(th_model *g, const char *p, const char *x, const char *y, int n_axes,
                         int d, float two, float eps, int swaps, uint64_t seed) {
  char nm[12][48];
  const char *suffix[] = {"mean", "sub", "two", "pow", "var", "eps", "veps", "std", "div",
                          "mul", "w", "b"};
  for (int k = 0; k < 12; k++) snprintf(nm[k], 48, "%s/%s", p, suffix[k]);
  int64_t axes[] = {-1, -2, -3};
  int64_t ax[3];
  for (int k = 0; k < n_axes; k++) ax[k] = axes[n_axes - 1 - k];
  fg_init(g, nm[10], d, seed, 0.5f, 1.5f);
  fg_init(g, nm[11], d, seed + 1, -0.5f, 0.5f);
  fg_node(g, "ReduceMean", x, NULL, nm[0]);
  th_model_attr_ints(g, "axes", n_axes, ax);
  fg_node(g, "Sub", x, nm[0], nm[1]);
  fg_const(g, nm[2], two);
  fg_node(g, "Pow", nm[1], nm[2], nm[3]);
  fg_node(g, "ReduceMean", nm[3], NULL, nm[4]);
  th_model_attr_ints(g, "axes", n_axes, ax);
  fg_const(g, nm[5], eps);
  if (swaps & SWAP_EPS) fg_node(g, "Add", nm[5], nm[4], nm[6]);
  else fg_node(g, "Add", nm[4], nm[5], nm[6]);
  fg_node(g, "Sqrt", nm[6], NULL, nm[7]);
  fg_node(g, "Div", nm[1], nm[7], nm[8]);
  if (swaps & SWAP_SCALE) fg_node(g, "Mul", nm[10], nm[8], nm[9]);
  else fg_node(g, "Mul", nm[8], nm[10], nm[9]);
  if (swaps & SWAP_BIAS) fg_node(g, "Add", nm[11], nm[9], y);
  else fg_node(g, "Add", nm[9], nm[11], y);
}

/* y = Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5): nn.GELU as torch 1.13 exports it. */
static void fg_gelu(th_model *g, const char *p, const char *x, const char *y, float sqrt2,
                    int swaps) {
  char nm[7][48];
  const char *suffix[] = {"sqrt2", "div", "erf", "one", "add", "mul", "half"};
  for (int k = 0; k < 7; k++) snprintf(nm[k], 48, "%s/%s", p, suffix[k]);
  fg_const(g, nm[0], sqrt2);
  fg_node(g, "Div", x, nm[0], nm[1]);
  fg_node(g, "Erf", nm[1], NULL, nm[2]);
  fg_const(g, nm[3], 1.f);
  if (swaps & SWAP_ONE) fg_node(g, "Add", nm[3], nm[2], nm[4]);
  else fg_node(g, "Add", nm[2], nm[3], nm[4]);
  if (swaps & SWAP_GELU_X) fg_node(g, "Mul", nm[4], x, nm[5]);
  else fg_node(g, "Mul", x, nm[4], nm[5]);
  fg_const(g, nm[6], 0.5f);
  if (swaps & SWAP_HALF) fg_node(g, "Mul", nm[6], nm[5], y);
  else fg_node(g, "Mul", nm[5], nm[6], y);
}

/* ---- running a plan ---- */

typedef struct run {
  dd_plan *p;
  int runs;     /* nodes that run */
  size_t bytes; /* dd_plan_bytes */
  dd_tensor *y[4], *dx;
} run;

/* A plan of m for x (values in [-2, 3)) to `targets`, forward, and backward from the
 * gradient of sum(w_t * y_t) with fixed random w. */
static void run_plan(const dd_model *m, const dd_shape *xs, const char *const *targets, int nt,
                     unsigned flags, run *r) {
  int tv[4];
  for (int t = 0; t < nt; t++) {
    tv[t] = dd_model_find(m, targets[t]);
    cr_assert(tv[t] >= 0, "no value %s", targets[t]);
  }
  int xv = dd_model_input(m);
  dd_binding b = {xv, *xs, NULL};
  dd_err err;
  memset(r, 0, sizeof *r);
  cr_assert_eq(dd_plan_new(m, &b, 1, tv, nt, DD_PLAN_GRAD | flags, 0, &r->p, &err), 0, "%s",
               err.msg);
  dd_tensor *x = dd_plan_tensor(r->p, xv);
  uint64_t st = 17;
  for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = th_rand_uniform(&st, -2, 3);
  dd_plan_forward(r->p);
  dd_plan_zero_grad(r->p);
  for (int t = 0; t < nt; t++) {
    dd_tensor *g = dd_plan_grad(r->p, tv[t]);
    cr_assert_not_null(g);
    for (int64_t i = 0; i < dd_tensor_numel(g); i++) dd_f32(g)[i] = th_rand_uniform(&st, -1, 1);
    cr_assert_eq(dd_tensor_clone(dd_plan_tensor(r->p, tv[t]), &r->y[t], &err), 0);
  }
  dd_plan_backward(r->p);
  cr_assert_eq(dd_tensor_clone(dd_plan_grad(r->p, xv), &r->dx, &err), 0);
  for (int i = 0; i < dd_model_num_nodes(m); i++) r->runs += dd_plan_node_runs(r->p, i);
  r->bytes = dd_plan_bytes(r->p);
}

static void run_free(run *r) {
  dd_plan_free(r->p);
  for (int t = 0; t < 4; t++) dd_tensor_free(r->y[t]);
  dd_tensor_free(r->dx);
}

/* Max |a - b| relative to max |b|. */
static double rel_diff(const dd_tensor *a, const dd_tensor *b) {
  return th_max_abs_diff(a, b) / fmax(th_max_abs(b), 1e-30);
}

/* The fused plan against the unfused one; returns the nodes the fusion saved. */
static int compare_fused(const dd_model *m, const dd_shape *xs, const char *const *targets,
                         int nt) {
  run f, u, s;
  run_plan(m, xs, targets, nt, DD_PLAN_REUSE, &f);
  run_plan(m, xs, targets, nt, DD_PLAN_REUSE | DD_PLAN_NO_FUSE, &u);
  run_plan(m, xs, targets, nt, 0, &s); /* every buffer apart: never fused */
  for (int t = 0; t < nt; t++) {
    cr_assert(rel_diff(f.y[t], u.y[t]) < 1e-5, "%s differs by %g", targets[t],
              rel_diff(f.y[t], u.y[t]));
    cr_assert_eq(th_max_abs_diff(u.y[t], s.y[t]), 0);
  }
  cr_assert(rel_diff(f.dx, u.dx) < 1e-5, "the input gradient differs by %g",
            rel_diff(f.dx, u.dx));
  cr_assert_eq(s.runs, u.runs);
  cr_log_info("fused: %d nodes, %zu bytes; unfused: %d nodes, %zu bytes", f.runs, f.bytes,
              u.runs, u.bytes);
  int saved = u.runs - f.runs;
  if (saved > 0) cr_assert(f.bytes < u.bytes, "%zu bytes fused, %zu unfused", f.bytes, u.bytes);
  run_free(&f);
  run_free(&u);
  run_free(&s);
  return saved;
}

/* ---- the tests ---- */

Test(fuse, torch_layernorm_then_gelu) {
  th_model *g = th_model_new("fuse");
  fg_layernorm(g, "ln", "x", "h", 1, 8, 2.f, 1e-5f, 0, 1);
  fg_gelu(g, "g", "h", "y", 1.41421354f, 0);
  const char *outs[] = {"y"};
  dd_model *m = fg_load(g, 1, outs);
  int64_t d[] = {2, 3, 8};
  dd_shape xs = dd_shape_make(3, d);
  /* 9 + 5 nodes become 2 (the Constants are folded in either plan) */
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 12);
  dd_model_free(m);
}

Test(fuse, every_operand_order) {
  for (int swaps = 0; swaps < 64; swaps++) {
    th_model *g = th_model_new("fuse");
    fg_layernorm(g, "ln", "x", "h", 1, 8, 2.f, 1e-3f, swaps, 3);
    fg_gelu(g, "g", "h", "y", 1.41421354f, swaps);
    const char *outs[] = {"y"};
    dd_model *m = fg_load(g, 1, outs);
    int64_t d[] = {4, 8};
    dd_shape xs = dd_shape_make(2, d);
    cr_assert_eq(compare_fused(m, &xs, outs, 1), 12, "swaps %d", swaps);
    dd_model_free(m);
  }
}

Test(fuse, layernorm_over_several_trailing_dims) {
  /* means over axes (-2, -1): LayerNormalization at axis 1 of 3x4x2, with weights of shape
   * [2] broadcast over the normalized dims [4, 2] */
  th_model *g = th_model_new("fuse");
  fg_layernorm(g, "ln", "x", "y", 2, 2, 2.f, 1e-5f, 0, 5);
  const char *outs[] = {"y"};
  dd_model *m = fg_load(g, 1, outs);
  int64_t d[] = {3, 4, 2};
  dd_shape xs = dd_shape_make(3, d);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 8);
  dd_model_free(m);
}

Test(fuse, two_layers_and_a_residual) {
  /* x -> LN -> GELU -> + x -> LN: the residual reads x and the first LN's input, which are
   * not intermediates; both chains fuse */
  th_model *g = th_model_new("fuse");
  fg_layernorm(g, "ln1", "x", "h1", 1, 16, 2.f, 1e-5f, 0, 7);
  fg_gelu(g, "g", "h1", "h2", 1.41421354f, 0);
  fg_node(g, "Add", "h2", "x", "h3");
  fg_layernorm(g, "ln2", "h3", "y", 1, 16, 2.f, 1e-6f, SWAP_SCALE, 9);
  const char *outs[] = {"y"};
  dd_model *m = fg_load(g, 1, outs);
  int64_t d[] = {1, 5, 16};
  dd_shape xs = dd_shape_make(3, d);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 8 + 4 + 8);
  dd_model_free(m);
}

Test(fuse, not_when_an_intermediate_is_a_target_or_read_elsewhere) {
  int64_t d[] = {2, 3, 8};
  dd_shape xs = dd_shape_make(3, d);
  /* the centred x (Sub) and the erf are targets too: neither chain fuses */
  th_model *g = th_model_new("fuse");
  fg_layernorm(g, "ln", "x", "h", 1, 8, 2.f, 1e-5f, 0, 1);
  fg_gelu(g, "g", "h", "y", 1.41421354f, 0);
  const char *outs[] = {"y", "ln/sub", "g/erf"};
  dd_model *m = fg_load(g, 3, outs);
  cr_assert_eq(compare_fused(m, &xs, outs, 3), 0);
  /* only one of them a target: the other chain fuses */
  cr_assert_eq(compare_fused(m, &xs, outs, 2), 4);
  dd_model_free(m);
  /* the variance and the Div by sqrt(2) are read by another node */
  g = th_model_new("fuse");
  fg_layernorm(g, "ln", "x", "h", 1, 8, 2.f, 1e-5f, 0, 1);
  fg_gelu(g, "g", "h", "y0", 1.41421354f, 0);
  fg_node(g, "Add", "ln/var", "g/div", "z");
  fg_node(g, "Add", "y0", "z", "y");
  const char *outs2[] = {"y"};
  m = fg_load(g, 1, outs2);
  cr_assert_eq(compare_fused(m, &xs, outs2, 1), 0);
  dd_model_free(m);
}

/* SiLU, y = x * Sigmoid(x) in either operand order (EfficientNet's activation): the two
 * nodes become one, the forward bit for bit the same as the unfused plan's, the gradient
 * within rounding; not fused when the sigmoid is a target or read elsewhere, nor for x *
 * Sigmoid(z) (EfficientNet's squeeze-excitation scale). */
Test(fuse, silu_either_order_and_not_otherwise) {
  int64_t d[] = {2, 3, 37};
  dd_shape xs = dd_shape_make(3, d);
  for (int swap = 0; swap < 2; swap++) {
    th_model *g = th_model_new("fuse");
    fg_node(g, "Sigmoid", "x", NULL, "s");
    fg_node(g, "Mul", swap ? "s" : "x", swap ? "x" : "s", "y");
    const char *outs[] = {"y", "s"};
    dd_model *m = fg_load(g, 2, outs);
    cr_assert_eq(compare_fused(m, &xs, outs, 1), 1, "order %d", swap);
    run f, u;
    run_plan(m, &xs, outs, 1, DD_PLAN_REUSE, &f);
    run_plan(m, &xs, outs, 1, DD_PLAN_REUSE | DD_PLAN_NO_FUSE, &u);
    cr_assert_eq(th_max_abs_diff(f.y[0], u.y[0]), 0, "the fused forward is not the same");
    cr_assert_null(dd_plan_tensor(f.p, dd_model_find(m, "s")));
    run_free(&f);
    run_free(&u);
    /* the sigmoid a target as well: nothing fuses */
    cr_assert_eq(compare_fused(m, &xs, outs, 2), 0);
    dd_model_free(m);
  }
  th_model *g = th_model_new("fuse");
  fg_node(g, "Neg", "x", NULL, "z");
  fg_node(g, "Sigmoid", "z", NULL, "s");
  fg_node(g, "Mul", "x", "s", "y");
  const char *outs[] = {"y"};
  dd_model *m = fg_load(g, 1, outs);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 0);
  dd_model_free(m);
  /* the sigmoid read by a second node */
  g = th_model_new("fuse");
  fg_node(g, "Sigmoid", "x", NULL, "s");
  fg_node(g, "Mul", "x", "s", "y0");
  fg_node(g, "Add", "y0", "s", "y");
  m = fg_load(g, 1, outs);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 0);
  dd_model_free(m);
}

/* y = Add(MatMul(x, w), b), nn.Linear on tokens, with b of shape `bd` (nb dims); x is
 * ... x 12, w 12 x n (initializers of random values). */
static dd_model *fg_linear(int swap, int nb, const int64_t *bd, int y_also_read, int64_t n) {
  th_model *g = th_model_new("fuse");
  float *w = malloc(sizeof(float) * (size_t)(12 * n)), *b = malloc(sizeof(float) * (size_t)(5 * n));
  uint64_t st = 41;
  for (int64_t i = 0; i < 12 * n; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < 5 * n; i++) b[i] = th_rand_uniform(&st, -1, 1);
  int64_t nbv = 1;
  for (int d = 0; d < nb; d++) nbv *= bd[d];
  th_model_init_f32(g, "w", 2, (int64_t[]){12, n}, w, (size_t)(12 * n));
  th_model_init_f32(g, "b", nb, bd, b, (size_t)nbv);
  free(w);
  free(b);
  fg_node(g, "MatMul", "x", "w", "t");
  fg_node(g, "Add", swap ? "b" : "t", swap ? "t" : "b", y_also_read ? "y0" : "y");
  if (y_also_read) fg_node(g, "Add", "y0", "t", "y");
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

Test(fuse, matmul_bias_either_order_and_not_otherwise) {
  int64_t d[] = {2, 5, 12};
  dd_shape xs = dd_shape_make(3, d);
  const char *outs[] = {"y"};
  int64_t per_column[] = {40}, per_column3[] = {1, 1, 40}, per_row[] = {5, 1},
          per_element[] = {5, 40};
  for (int swap = 0; swap < 2; swap++) {
    dd_model *m = fg_linear(swap, 1, per_column, 0, 40);
    cr_assert_eq(compare_fused(m, &xs, outs, 1), 1, "order %d", swap);
    dd_model_free(m);
    m = fg_linear(swap, 3, per_column3, 0, 40);
    cr_assert_eq(compare_fused(m, &xs, outs, 1), 1, "order %d, bias 1x1x40", swap);
    dd_model_free(m);
  }
  /* 3 rows (the product's loop for few rows, in chunks of 256 columns) and 300 columns */
  {
    int64_t d3[] = {1, 3, 12}, wide[] = {300};
    dd_shape xs3 = dd_shape_make(3, d3);
    dd_model *mw = fg_linear(0, 1, wide, 0, 300);
    cr_assert_eq(compare_fused(mw, &xs3, outs, 1), 1, "3 rows, 300 columns");
    dd_model_free(mw);
  }
  /* a bias computed from x, so that its gradient (the sum of dy over the rows) reaches x:
   * b = ReduceMean(MatMul(x, w2)) over the two leading dims, 1 x 1 x 40 */
  {
    th_model *g = th_model_new("fuse");
    float w[12 * 40];
    uint64_t st = 43;
    for (int i = 0; i < 12 * 40; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
    th_model_init_f32(g, "w", 2, (int64_t[]){12, 40}, w, 12 * 40);
    for (int i = 0; i < 12 * 40; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
    th_model_init_f32(g, "w2", 2, (int64_t[]){12, 40}, w, 12 * 40);
    fg_node(g, "MatMul", "x", "w2", "u");
    fg_node(g, "ReduceMean", "u", NULL, "b");
    th_model_attr_ints(g, "axes", 2, (int64_t[]){0, 1});
    fg_node(g, "MatMul", "x", "w", "t");
    fg_node(g, "Add", "t", "b", "y");
    dd_model *mr = fg_load(g, 1, outs);
    cr_assert_eq(compare_fused(mr, &xs, outs, 1), 1, "bias with a gradient");
    dd_model_free(mr);
  }
  /* a bias that is not one value per column, and a product read elsewhere: nothing fuses */
  dd_model *m = fg_linear(0, 2, per_row, 0, 40);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 0);
  dd_model_free(m);
  m = fg_linear(0, 2, per_element, 0, 40);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 0);
  dd_model_free(m);
  m = fg_linear(0, 1, per_column, 1, 40);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 0);
  dd_model_free(m);
}

/* y = Conv(Mul(x, s), W, b) with s = Sigmoid(ReduceMean(x)) over H and W, per image and
 * channel (a squeeze-excitation scale), W m x 6 x 1 x 1 (stride `stride`), x n x 6 x 8 x 8. */
static dd_model *fg_se_conv(int swap, int64_t m, int stride, int per_pixel) {
  th_model *g = th_model_new("fuse");
  float w[80 * 6], b[80];
  uint64_t st = 47;
  for (int i = 0; i < 80 * 6; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int i = 0; i < 80; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 4, (int64_t[]){m, 6, 1, 1}, w, (size_t)(m * 6));
  th_model_init_f32(g, "b", 1, (int64_t[]){m}, b, (size_t)m);
  if (per_pixel) { /* Sigmoid(-x): x * Sigmoid(x) would fuse as SiLU */
    fg_node(g, "Neg", "x", NULL, "r");
    fg_node(g, "Sigmoid", "r", NULL, "s");
  } else {
    fg_node(g, "ReduceMean", "x", NULL, "r");
    th_model_attr_ints(g, "axes", 2, (int64_t[]){2, 3});
    fg_node(g, "Sigmoid", "r", NULL, "s");
  }
  fg_node(g, "Mul", swap ? "s" : "x", swap ? "x" : "s", "t");
  th_model_node(g, "Conv", NULL, "t,w,b", "y");
  th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){1, 1});
  th_model_attr_ints(g, "strides", 2, (int64_t[]){stride, stride});
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

/* Forward only, fused (DD_PLAN_REUSE) against unfused: y within float32 rounding; returns the
 * nodes the fusion saved. */
static int compare_forward(const dd_model *m, const dd_shape *xs) {
  int yv = dd_model_find(m, "y"), xv = dd_model_input(m), runs[2] = {0, 0};
  dd_tensor *y[2];
  for (int k = 0; k < 2; k++) {
    dd_binding b = {xv, *xs, NULL};
    dd_plan *p;
    dd_err err;
    cr_assert_eq(dd_plan_new(m, &b, 1, &yv, 1, DD_PLAN_REUSE | (k ? DD_PLAN_NO_FUSE : 0), 0, &p,
                             &err),
                 0, "%s", err.msg);
    dd_tensor *x = dd_plan_tensor(p, xv);
    uint64_t st = 19;
    for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = th_rand_uniform(&st, -2, 3);
    dd_plan_forward(p);
    cr_assert_eq(dd_tensor_clone(dd_plan_tensor(p, yv), &y[k], &err), 0);
    for (int i = 0; i < dd_model_num_nodes(m); i++) runs[k] += dd_plan_node_runs(p, i);
    dd_plan_free(p);
  }
  cr_assert(rel_diff(y[0], y[1]) < 1e-5, "y differs by %g", rel_diff(y[0], y[1]));
  dd_tensor_free(y[0]);
  dd_tensor_free(y[1]);
  return runs[1] - runs[0];
}

Test(fuse, se_scale_into_the_1x1_convolution_forward_only) {
  int64_t d1[] = {1, 6, 8, 8}, d2[] = {2, 6, 8, 8};
  dd_shape x1 = dd_shape_make(4, d1), x2 = dd_shape_make(4, d2);
  const char *outs[] = {"y"};
  for (int swap = 0; swap < 2; swap++) {
    dd_model *m = fg_se_conv(swap, 5, 1, 0);
    cr_assert_eq(compare_forward(m, &x1), 1, "order %d", swap);
    cr_assert_eq(compare_forward(m, &x2), 1, "order %d, two images", swap);
    /* a plan with gradients keeps the two nodes */
    cr_assert_eq(compare_fused(m, &x1, outs, 1), 0);
    dd_model_free(m);
  }
  /* as many output channels as pixels or more, a stride, a scale per pixel: not fused */
  dd_model *m = fg_se_conv(0, 64, 1, 0);
  cr_assert_eq(compare_forward(m, &x1), 0);
  dd_model_free(m);
  m = fg_se_conv(0, 5, 2, 0);
  cr_assert_eq(compare_forward(m, &x1), 0);
  dd_model_free(m);
  m = fg_se_conv(0, 5, 1, 1);
  cr_assert_eq(compare_forward(m, &x1), 0);
  dd_model_free(m);
}

Test(fuse, not_when_a_constant_differs) {
  int64_t d[] = {2, 3, 8};
  dd_shape xs = dd_shape_make(3, d);
  /* a mean of d^4 is no variance; x / 1.4142 is not x / sqrt(2) in float32 */
  th_model *g = th_model_new("fuse");
  fg_layernorm(g, "ln", "x", "h", 1, 8, 4.f, 1e-5f, 0, 1);
  fg_gelu(g, "g", "h", "y", 1.4142f, 0);
  const char *outs[] = {"y"};
  dd_model *m = fg_load(g, 1, outs);
  cr_assert_eq(compare_fused(m, &xs, outs, 1), 0);
  dd_model_free(m);
}

Test(fuse, intermediates_leave_the_plan) {
  th_model *g = th_model_new("fuse");
  fg_layernorm(g, "ln", "x", "h", 1, 8, 2.f, 1e-5f, 0, 1);
  fg_gelu(g, "g", "h", "y", 1.41421354f, 0);
  const char *outs[] = {"y"};
  dd_model *m = fg_load(g, 1, outs);
  int64_t d[] = {2, 3, 8};
  dd_shape xs = dd_shape_make(3, d);
  run f;
  run_plan(m, &xs, outs, 1, DD_PLAN_REUSE, &f);
  const char *gone[] = {"ln/mean", "ln/sub", "ln/pow", "ln/var", "ln/veps", "ln/std",
                        "ln/div", "ln/mul", "g/div", "g/erf", "g/add", "g/mul"};
  for (size_t k = 0; k < sizeof gone / sizeof gone[0]; k++) {
    int v = dd_model_find(m, gone[k]);
    cr_assert(v >= 0 && !dd_plan_tensor(f.p, v) && !dd_plan_grad(f.p, v), "%s", gone[k]);
  }
  /* the fused nodes run where the chains ended: the bias Add and the Mul by 0.5 */
  int runs = 0;
  for (int i = 0; i < dd_model_num_nodes(m); i++) runs += dd_plan_node_runs(f.p, i);
  cr_assert_eq(runs, 2);
  cr_assert(dd_plan_tensor(f.p, dd_model_find(m, "h")));
  run_free(&f);
  dd_model_free(m);
}

/* y = LN2(x + W2 GELU(W1 LN1(x))) as torch 1.13 exports it at opset 13: its three chains and
 * its two Linear layers (MatMul + Add) fuse (35 nodes, 7 Constants folded: 28 run unfused, 6
 * fused), and both plans agree with torch's float64 output and gradient of 1/2 sum(y^2). */
Test(fuse, torch_block_matches_autograd_fused_and_unfused, .init = th_tmpdir_setup,
     .fini = th_tmpdir_teardown, .timeout = 120) {
  th_torch_ref ref;
  th_torch_reference("fuse_torch.py", &ref);
  const dd_tensor *x = ref.x, *want_y = ref.y, *want_g = ref.grad;
  char path[256];
  dd_err err;
  dd_model *m;
  cr_assert_eq(dd_model_load(th_tmp(path, sizeof path, "block.onnx"), &m, &err), 0, "%s", err.msg);
  int xv = dd_model_input(m), yv = dd_model_find(m, "y");
  cr_assert(yv >= 0);
  dd_binding b = {xv, x->shape, NULL};
  const unsigned flags[] = {DD_PLAN_REUSE, DD_PLAN_REUSE | DD_PLAN_NO_FUSE};
  const int want_runs[] = {6, 28};
  for (int k = 0; k < 2; k++) {
    dd_plan *p;
    cr_assert_eq(dd_plan_new(m, &b, 1, &yv, 1, DD_PLAN_GRAD | flags[k], 0, &p, &err), 0, "%s",
                 err.msg);
    memcpy(dd_plan_tensor(p, xv)->data, x->data, (size_t)dd_tensor_numel(x) * sizeof(float));
    dd_plan_forward(p);
    dd_plan_zero_grad(p);
    dd_tensor *y = dd_plan_tensor(p, yv), *gy = dd_plan_grad(p, yv);
    memcpy(gy->data, y->data, (size_t)dd_tensor_numel(y) * sizeof(float));
    double fe = th_max_abs_diff(y, want_y) / th_max_abs(want_y);
    dd_plan_backward(p);
    double ge = th_rel_l2(dd_plan_grad(p, xv), want_g);
    int runs = 0;
    for (int i = 0; i < dd_model_num_nodes(m); i++) runs += dd_plan_node_runs(p, i);
    cr_log_info("%s: %d nodes, %zu bytes; forward max|d|/max|y| %.3g, input gradient relative "
                "L2 %.3g", k ? "unfused" : "fused", runs, dd_plan_bytes(p), fe, ge);
    cr_expect_eq(runs, want_runs[k], "%s: %d nodes run", k ? "unfused" : "fused", runs);
    cr_expect(fe <= 1e-5, "forward error %g", fe);
    cr_expect(ge <= 1e-5, "gradient error %g", ge);
    dd_plan_free(p);
  }
  th_torch_ref_free(&ref);
  dd_model_free(m);
}

/* y = Add(MatMul(x, w), b), w a k x n initializer, b one value per column. */
static dd_model *fg_wide_linear(int64_t k, int64_t n) {
  th_model *g = th_model_new("fuse");
  float *w = malloc(sizeof(float) * (size_t)(k * n)), *b = malloc(sizeof(float) * (size_t)n);
  uint64_t st = 53;
  for (int64_t i = 0; i < k * n; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < n; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 2, (int64_t[]){k, n}, w, (size_t)(k * n));
  th_model_init_f32(g, "b", 1, (int64_t[]){n}, b, (size_t)n);
  free(w);
  free(b);
  fg_node(g, "MatMul", "x", "w", "t");
  fg_node(g, "Add", "t", "b", "y");
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

/* What a plan did besides computing y: the bytes it packed and holds, and the activations it
 * folded (bit c set for each relu_out code c, plan/plan.h). */
typedef struct run_info {
  size_t packed, bytes;
  unsigned folded;
  int sums; /* nodes handed plane sums (plan_pool_sums): a Conv and its pool count 2 */
} run_info;

/* One forward of a plan (REUSE, so fused; `flags` besides) of y from x, with the cap `cap`, on
 * the same random x every time: y, and what the plan did. */
static void forward_run(const dd_model *m, const dd_shape *xs, unsigned flags, size_t cap,
                        dd_tensor **y, run_info *info) {
  int xv = dd_model_input(m), yv = dd_model_find(m, "y");
  dd_binding b = {xv, *xs, NULL};
  dd_plan *p;
  dd_err err;
  cr_assert_eq(dd_plan_new(m, &b, 1, &yv, 1, DD_PLAN_REUSE | flags, cap, &p, &err), 0, "%s",
               err.msg);
  dd_tensor *x = dd_plan_tensor(p, xv);
  uint64_t st = 29;
  for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = th_rand_uniform(&st, -2, 3);
  dd_plan_forward(p);
  cr_assert_eq(dd_tensor_clone(dd_plan_tensor(p, yv), y, &err), 0);
  info->packed = p->packed;
  info->bytes = dd_plan_bytes(p);
  info->folded = 0;
  for (int o = 0; o < p->n_order && p->relu_out; o++) info->folded |= 1u << p->relu_out[o];
  info->sums = 0;
  for (int o = 0; o < p->n_order && p->sums; o++) info->sums += p->sums[o] != NULL;
  dd_plan_free(p);
}

/* dd_plan_measure of the forward plan of y (REUSE). */
static size_t forward_measure(const dd_model *m, const dd_shape *xs) {
  int xv = dd_model_input(m), yv = dd_model_find(m, "y");
  dd_binding b = {xv, *xs, NULL};
  dd_err err;
  size_t need;
  cr_assert_eq(dd_plan_measure(m, &b, 1, &yv, 1, DD_PLAN_REUSE, &need, NULL, &err), 0, "%s",
               err.msg);
  return need;
}

/* A forward-only plan of a linear layer on few tokens packs its constant weights once
 * (phase 6): the same floats as the plan that packs nothing (a cap that leaves no room for
 * the pack, or DD_PLAN_GRAD, whose plans never pack), the pack counted in dd_plan_bytes and
 * left out of dd_plan_measure; more rows than PACK_ROWS (256), or the generic kernels, pack
 * nothing.  Shapes: 17 tokens (a ViT's), k = 300 over two of the kernel's passes, n = 70 in
 * three blocks the last one short; and a 4 x 4 grid of tokens, 4 rows in each of 4 batches
 * of the product but 16 stacked (Swin-T's last stage at 128 x 128, which packed nothing when
 * the rows per batch were counted). */
static void fuse_packed_weights_on(void);
Test(fuse, packed_weights_give_the_same_floats_and_count_in_the_bytes) {
  th_each_kernels(fuse_packed_weights_on);
}
static void fuse_packed_weights_on(void) {
  const int64_t k = 300, n = 70;
  dd_model *m = fg_wide_linear(k, n);
  int64_t few[] = {1, 17, k}, many[] = {2, 129, k}, grid[] = {1, 4, 4, k};
  for (int shape = 0; shape < 3; shape++) {
    dd_shape xs = shape == 2 ? dd_shape_make(4, grid) : dd_shape_make(3, shape ? many : few);
    dd_tensor *y0, *y1, *y2;
    run_info r0, r1, r2;
    forward_run(m, &xs, 0, 0, &y0, &r0);
    size_t packed0 = r0.packed, bytes0 = r0.bytes, measured = forward_measure(m, &xs);
    cr_assert_eq(measured, bytes0 - packed0, "measured %zu, built %zu with %zu packed",
                 measured, bytes0, packed0);
    /* a plan with gradients packs nothing */
    forward_run(m, &xs, DD_PLAN_GRAD, 0, &y2, &r2);
    cr_assert_eq(r2.packed, 0);
    cr_assert_eq(th_max_abs_diff(y0, y2), 0, "y differs by %g", th_max_abs_diff(y0, y2));
    int packs = shape != 1 && th_kernels_now != DD_KERNELS_GENERIC;
    if (!packs) {
      cr_assert_eq(packed0, 0, "%s kernels, shape %d: packed %zu bytes",
                   dd_kernels_name(th_kernels_now), shape, packed0);
    } else {
      const int64_t nr = th_kernels_now == DD_KERNELS_AVX512 ? 32 : 16; /* the tile's columns */
      size_t want = (size_t)((n + nr - 1) / nr * nr * k) * sizeof(float);
      cr_assert_eq(packed0, want, "packed %zu bytes, the pack is %zu", packed0, want);
      /* capped at the rest of the plan's bytes: no room for the pack */
      forward_run(m, &xs, 0, bytes0 - packed0, &y1, &r1);
      cr_assert_eq(r1.packed, 0);
      cr_assert_eq(r1.bytes, bytes0 - packed0);
      cr_assert_eq(th_max_abs_diff(y0, y1), 0, "y differs by %g", th_max_abs_diff(y0, y1));
      dd_tensor_free(y1);
    }
    dd_tensor_free(y0);
    dd_tensor_free(y2);
  }
  dd_model_free(m);
}

/* Case ci: the forward plan of m on xs packs a k x n weight matrix (its bytes in dd_sgemm's
 * layout, n padded to the tile's 32 or 16 columns) where `packs` and the kernels take packs,
 * else nothing; a plan capped at its measure packs nothing; and the two give the same
 * floats.  `avx2`: the AVX2 kernels pack it too (a Gemm's; a Conv's transposed product is the
 * AVX-512 kernels' alone). */
static void check_packed(const dd_model *m, const dd_shape *xs, int packs, int avx2, int64_t k,
                         int64_t n, size_t ci) {
  size_t need = forward_measure(m, xs), packed[2];
  dd_tensor *y[2];
  for (int i = 0; i < 2; i++) {
    run_info r;
    forward_run(m, xs, 0, i ? need : 0, &y[i], &r);
    packed[i] = r.packed;
  }
  packs = packs && (th_kernels_now == DD_KERNELS_AVX512 ||
                    (avx2 && th_kernels_now == DD_KERNELS_AVX2));
  const int64_t nr = th_kernels_now == DD_KERNELS_AVX512 ? 32 : 16;
  size_t want = (size_t)((n + nr - 1) / nr * nr * k) * sizeof(float);
  cr_assert_eq(packed[0], packs ? want : 0, "case %zu: packed %zu", ci, packed[0]);
  cr_assert_eq(packed[1], 0);
  cr_assert_eq(th_max_abs_diff(y[0], y[1]), 0, "case %zu: packed differs by %g", ci,
               th_max_abs_diff(y[0], y[1]));
  dd_tensor_free(y[0]);
  dd_tensor_free(y[1]);
}

/* y = act(t) as torch exports it (SiLU as Sigmoid and Mul), then the model loaded with output
 * y: the activations that fg_conv_act and fg_linear_act end in. */
enum { FG_GELU, FG_GELU_TANH, FG_HARDSWISH, FG_SILU };
static dd_model *fg_act_load(th_model *g, const char *t, int act) {
  if (act == FG_GELU || act == FG_GELU_TANH) {
    fg_node(g, "Gelu", t, NULL, "y");
    if (act == FG_GELU_TANH) th_model_attr_string(g, "approximate", "tanh");
  } else if (act == FG_HARDSWISH) {
    fg_node(g, "HardSwish", t, NULL, "y");
  } else {
    fg_node(g, "Sigmoid", t, NULL, "act_s");
    fg_node(g, "Mul", t, "act_s", "y");
  }
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

/* y = x * Sigmoid(x) of a Conv (kernel k x k, stride s, `group` groups, c -> m channels, a
 * bias), as torch writes nn.SiLU after a convolution; with `hardswish`, HardSwish(x) (opset
 * 14, nn.Hardswish). */
static dd_model *fg_conv_act(int64_t c, int64_t m, int64_t k, int64_t s, int64_t group,
                             int hardswish) {
  th_model *g = th_model_new("fuse");
  int64_t nw = m * (c / group) * k * k;
  float *w = malloc(sizeof(float) * (size_t)nw), *b = malloc(sizeof(float) * (size_t)m);
  uint64_t st = 59;
  for (int64_t i = 0; i < nw; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < m; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 4, (int64_t[]){m, c / group, k, k}, w, (size_t)nw);
  th_model_init_f32(g, "b", 1, (int64_t[]){m}, b, (size_t)m);
  free(w);
  free(b);
  th_model_node(g, "Conv", NULL, "x,w,b", "t");
  th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){k, k});
  th_model_attr_ints(g, "strides", 2, (int64_t[]){s, s});
  th_model_attr_ints(g, "pads", 4, (int64_t[]){k / 2, k / 2, k / 2, k / 2});
  th_model_attr_int(g, "group", group);
  return fg_act_load(g, "t", hardswish ? FG_HARDSWISH : FG_SILU);
}

/* A forward-only plan folds a SiLU (the fused Silu of Sigmoid and Mul) or a HardSwish into
 * the convolution before it (DD_OP_FOLD_ACT).  Every path of the convolution gives, bit for
 * bit, the floats of the activation's own nodes: the SiLU's Sigmoid and Mul one by one
 * (DD_PLAN_NO_FUSE), and either activation in a plan with gradients, which folds nothing.
 * Some paths apply the activation in registers (1x1 products, depthwise and grouped lanes,
 * the direct stride-2 path, im2col products), others run the op's pass after (direct stride
 * 1, Winograd, the double sums of an exact first layer). */
static void fuse_act_folds_on(void);
Test(fuse, silu_and_hardswish_fold_into_every_convolution_path_bit_for_bit) {
  th_each_kernels(fuse_act_folds_on);
}
static void fuse_act_folds_on(void) {
  static const struct {
    const char *what;
    int64_t c, m, k, s, group, h, w;
    unsigned flags;
  } cases[] = {
      {"1x1 on 14x14", 24, 40, 1, 1, 1, 14, 14, 0},
      {"depthwise 3x3 on 19x23", 40, 40, 3, 1, 40, 19, 23, 0},
      {"depthwise 5x5 stride 2", 24, 24, 5, 2, 24, 17, 16, 0},
      {"groups of 8, 3x3", 32, 32, 3, 1, 4, 11, 9, 0},
      {"first layer 3 -> 32, 3x3 stride 2", 3, 32, 3, 2, 1, 37, 45, 0},
      {"first layer, exact (double sums)", 3, 32, 3, 2, 1, 37, 45, DD_PLAN_EXACT},
      {"3x3 stride 1, 5 -> 13 (direct)", 5, 13, 3, 1, 1, 9, 37, 0},
      {"3x3, 24 -> 24 (Winograd)", 24, 24, 3, 1, 1, 20, 20, 0},
      {"3x3, 24 -> 24, exact (im2col)", 24, 24, 3, 1, 1, 20, 20, DD_PLAN_EXACT},
      {"5x5, 20 -> 36 (im2col)", 20, 36, 5, 1, 1, 15, 13, 0},
  };
  for (size_t cj = 0; cj < 2 * sizeof cases / sizeof cases[0]; cj++) {
    size_t ci = cj / 2;
    int hswish = (int)(cj % 2), code = hswish ? 3 : 2; /* DD_ACT_HARDSWISH, DD_ACT_SILU */
    dd_model *m = fg_conv_act(cases[ci].c, cases[ci].m, cases[ci].k, cases[ci].s,
                              cases[ci].group, hswish);
    int64_t d[] = {1, cases[ci].c, cases[ci].h, cases[ci].w};
    dd_shape xs = dd_shape_make(4, d);
    dd_tensor *y[3];
    int folded[3];
    const unsigned flags[3] = {0, DD_PLAN_NO_FUSE, DD_PLAN_GRAD};
    for (int k = 0; k < 3; k++) {
      run_info r;
      forward_run(m, &xs, flags[k] | cases[ci].flags, 0, &y[k], &r);
      folded[k] = (r.folded >> code) & 1;
    }
    const char *act = hswish ? "HardSwish" : "SiLU";
    /* a HardSwish is one node: folded with or without fusion, as a Relu is */
    cr_assert(folded[0] && folded[1] == hswish && !folded[2], "%s, %s: folded %d %d %d",
              cases[ci].what, act, folded[0], folded[1], folded[2]);
    cr_assert_eq(th_max_abs_diff(y[0], y[1]), 0, "%s, %s (%s kernels): folded differs by %g",
                 cases[ci].what, act, dd_kernels_name(th_kernels_now),
                 th_max_abs_diff(y[0], y[1]));
    cr_assert_eq(th_max_abs_diff(y[2], y[1]), 0, "%s, %s: the gradient plan differs",
                 cases[ci].what, act);
    for (int k = 0; k < 3; k++) dd_tensor_free(y[k]);
    dd_model_free(m);
  }
}

/* y = Conv(x, w, b) (1x1, c -> m channels), or with `scaled` the squeeze-excitation chain
 * y = Conv(Mul(x, Sigmoid(ReduceMean(x))), w, b) that fuses into ConvScaled. */
static dd_model *fg_pointwise(int64_t c, int64_t m, int scaled, int64_t k) {
  th_model *g = th_model_new("fuse");
  int64_t nw = m * c * k * k;
  float *w = malloc(sizeof(float) * (size_t)nw), *b = malloc(sizeof(float) * (size_t)m);
  uint64_t st = 67;
  for (int64_t i = 0; i < nw; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < m; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 4, (int64_t[]){m, c, k, k}, w, (size_t)nw);
  th_model_init_f32(g, "b", 1, (int64_t[]){m}, b, (size_t)m);
  free(w);
  free(b);
  if (scaled) {
    fg_node(g, "ReduceMean", "x", NULL, "r");
    th_model_attr_ints(g, "axes", 2, (int64_t[]){2, 3});
    fg_node(g, "Sigmoid", "r", NULL, "s");
    fg_node(g, "Mul", "x", "s", "t");
  }
  th_model_node(g, "Conv", NULL, scaled ? "t,w,b" : "x,w,b", "y");
  th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){k, k});
  th_model_attr_ints(g, "strides", 2, (int64_t[]){k, k});
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

/* A forward-only plan packs W^T of a 1x1 convolution on a small plane (at most 256 pixels,
 * at least 32 output channels) and computes it transposed (ops/conv.c, conv_t_forward): the
 * floats of the plan that packs nothing (capped at its measure), bit for bit.  A ConvScaled
 * (a squeeze-excitation scale fused in: fewer output channels than pixels), the generic
 * kernels, 16 output channels or a 17x17 plane pack nothing.  So do convolutions in patches
 * (kernel = stride, ConvNeXt's downsampling) up to 1024 output pixels with at least 64
 * weights per output, from their gathered column matrix: an odd plane drops its last row and
 * column, as im2col does; a stem's 4x4 patches of 3 channels pack nothing. */
static void fuse_pointwise_packed_on(void);
Test(fuse, pointwise_on_small_planes_packed_bit_for_bit) {
  th_each_kernels(fuse_pointwise_packed_on);
}
static void fuse_pointwise_packed_on(void) {
  static const struct {
    int64_t n, c, m, h, w, k;
    int scaled, packs;
  } cases[] = {{1, 192, 1152, 7, 7, 1, 0, 1}, {2, 40, 72, 14, 14, 1, 0, 1},
               {1, 48, 40, 7, 7, 1, 1, 0},    {2, 36, 64, 12, 12, 1, 1, 0},
               {1, 24, 16, 7, 7, 1, 0, 0},    {1, 24, 40, 17, 17, 1, 0, 0},
               {1, 48, 96, 14, 14, 2, 0, 1},  {2, 24, 40, 15, 13, 2, 0, 1},
               {1, 16, 48, 64, 64, 2, 0, 1},  {1, 4, 32, 19, 18, 4, 0, 1},
               {1, 3, 32, 19, 18, 4, 0, 0},
               {1, 16, 48, 66, 66, 2, 0, 0},  {1, 16, 24, 14, 14, 2, 0, 0}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    dd_model *m = fg_pointwise(cases[ci].c, cases[ci].m, cases[ci].scaled, cases[ci].k);
    int64_t d[] = {cases[ci].n, cases[ci].c, cases[ci].h, cases[ci].w};
    dd_shape xs = dd_shape_make(4, d);
    check_packed(m, &xs, cases[ci].packs, 0, cases[ci].c * cases[ci].k * cases[ci].k,
                 cases[ci].m, ci);
    dd_model_free(m);
  }
}

/* y = Gemm(x, w, c) with w an initializer (n x k with transB, else k x n), c one value per
 * column; alpha, beta and the transposes as given. */
static dd_model *fg_gemm(int64_t k, int64_t n, int ta, int tb, float alpha, float beta) {
  th_model *g = th_model_new("fuse");
  float *w = malloc(sizeof(float) * (size_t)(k * n)), *c = malloc(sizeof(float) * (size_t)n);
  uint64_t st = 73;
  for (int64_t i = 0; i < k * n; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < n; i++) c[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 2, tb ? (int64_t[]){n, k} : (int64_t[]){k, n}, w, (size_t)(k * n));
  th_model_init_f32(g, "c", 1, (int64_t[]){n}, c, (size_t)n);
  free(w);
  free(c);
  th_model_node(g, "Gemm", NULL, "x,w,c", "y");
  th_model_attr_int(g, "transA", ta);
  th_model_attr_int(g, "transB", tb);
  th_model_attr_float(g, "alpha", alpha);
  th_model_attr_float(g, "beta", beta);
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

/* A forward-only plan packs a Gemm's constant op(B) when alpha is 1 and there are at most 256
 * rows (a ViT's out-projection on 17 tokens): the floats of the plan that packs nothing
 * (capped at its measure), bit for bit, with B transposed or not, A transposed, beta 0.5; 300
 * rows or alpha 2 pack nothing. */
static void fuse_gemm_packed_on(void);
Test(fuse, gemm_weights_packed_bit_for_bit) { th_each_kernels(fuse_gemm_packed_on); }
static void fuse_gemm_packed_on(void) {
  static const struct {
    int64_t m, k, n;
    int ta, tb;
    float alpha, beta;
    int packs;
  } cases[] = {{17, 192, 192, 0, 1, 1.f, 1.f, 1}, {17, 300, 70, 0, 0, 1.f, 0.5f, 1},
               {9, 40, 33, 1, 1, 1.f, 1.f, 1},    {300, 40, 33, 0, 1, 1.f, 1.f, 0},
               {17, 40, 33, 0, 1, 2.f, 1.f, 0}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    dd_model *m = fg_gemm(cases[ci].k, cases[ci].n, cases[ci].ta, cases[ci].tb,
                          cases[ci].alpha, cases[ci].beta);
    int64_t d[] = {cases[ci].ta ? cases[ci].k : cases[ci].m, cases[ci].ta ? cases[ci].m : cases[ci].k};
    dd_shape xs = dd_shape_make(2, d);
    check_packed(m, &xs, cases[ci].packs, 1, cases[ci].k, cases[ci].n, ci);
    dd_model_free(m);
  }
}

/* y = act(Add(MatMul(x, w), b)): a linear layer and its activation (FG_GELU, FG_GELU_TANH,
 * FG_HARDSWISH or FG_SILU), w 40 x 70. */
static dd_model *fg_linear_act(int act) {
  th_model *g = th_model_new("fuse");
  float w[40 * 70], b[70];
  uint64_t st = 83;
  for (int i = 0; i < 40 * 70; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int i = 0; i < 70; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 2, (int64_t[]){40, 70}, w, 40 * 70);
  th_model_init_f32(g, "b", 1, (int64_t[]){70}, b, 70);
  fg_node(g, "MatMul", "x", "w", "t");
  fg_node(g, "Add", "t", "b", "u");
  return fg_act_load(g, "u", act);
}

/* A forward-only plan folds the exact GELU, a HardSwish or a SiLU into the linear layer before
 * it (MatMulBias, DD_OP_FOLD_ACT), in the product's registers when its weights are packed
 * (17 tokens) and where the product ends in dd_sgemm (300 tokens): the floats of the plan
 * with gradients, which folds nothing, bit for bit.  The tanh form of GELU is not folded. */
static void fuse_linear_act_on(void);
Test(fuse, activations_fold_into_linear_layers_bit_for_bit) {
  th_each_kernels(fuse_linear_act_on);
}
static void fuse_linear_act_on(void) {
  for (int act = FG_GELU; act <= FG_SILU; act++)
    for (int64_t rows = 17; rows <= 300; rows += 283) {
      dd_model *m = fg_linear_act(act);
      int64_t d[] = {1, rows, 40};
      dd_shape xs = dd_shape_make(3, d);
      dd_tensor *y[2];
      int folded[2];
      for (int k = 0; k < 2; k++) {
        run_info r;
        forward_run(m, &xs, k ? DD_PLAN_GRAD : 0, 0, &y[k], &r);
        folded[k] = (r.folded & ~3u) != 0; /* a code past Relu's (1): SiLU, HardSwish, GELU */
      }
      cr_assert_eq(folded[0], act != FG_GELU_TANH, "act %d, %lld rows: folded %d", act,
                   (long long)rows, folded[0]);
      cr_assert_eq(folded[1], 0);
      cr_assert_eq(th_max_abs_diff(y[0], y[1]), 0, "act %d, %lld rows (%s kernels): differs by %g",
                   act, (long long)rows, dd_kernels_name(th_kernels_now),
                   th_max_abs_diff(y[0], y[1]));
      dd_tensor_free(y[0]);
      dd_tensor_free(y[1]);
      dd_model_free(m);
    }
}

/* ---- a residual Add folded into the convolution before it ---- */

/* Where r comes from in fg_residual; RES_SWAP: Add(r, t) instead of Add(t, r). */
enum { RES_BEFORE, RES_AFTER, RES_INPUT, RES_BROADCAST, RES_SWAP = 8 };

/* y = Add(t, r), t = Conv(x, w, b) (kernel k x k, `group` groups, c -> m channels, padding
 * k / 2), or with `scaled` t = Conv(Mul(x, Sigmoid(ReduceMean(x))), w, b) (1x1: it fuses into
 * ConvScaled); r = Conv(x, w2) 1x1 c -> m placed before t's nodes (RES_BEFORE), or
 * Neg(Conv(x, w2)) after them (RES_AFTER: neither operand's producer runs after the other's
 * and can add it), or x itself (RES_INPUT, c == m), or Conv(ReduceMean(x), w2): one value
 * per channel, broadcast over the plane (RES_BROADCAST). */
static dd_model *fg_residual(int64_t c, int64_t m, int64_t k, int64_t group, int scaled,
                             int res) {
  int swap = res & RES_SWAP;
  res &= ~RES_SWAP;
  th_model *g = th_model_new("fuse");
  int64_t nw = m * (c / group) * k * k;
  float *w = malloc(sizeof(float) * (size_t)nw), *w2 = malloc(sizeof(float) * (size_t)(m * c)),
        *b = malloc(sizeof(float) * (size_t)m);
  uint64_t st = 71;
  for (int64_t i = 0; i < nw; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < m * c; i++) w2[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < m; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 4, (int64_t[]){m, c / group, k, k}, w, (size_t)nw);
  th_model_init_f32(g, "w2", 4, (int64_t[]){m, c, 1, 1}, w2, (size_t)(m * c));
  th_model_init_f32(g, "b", 1, (int64_t[]){m}, b, (size_t)m);
  free(w);
  free(w2);
  free(b);
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0 && res == RES_BROADCAST) {
      fg_node(g, "ReduceMean", "x", NULL, "xm");
      th_model_attr_ints(g, "axes", 2, (int64_t[]){2, 3});
    }
    if ((pass == 0 && res != RES_AFTER) || (pass == 1 && res == RES_AFTER)) {
      if (res != RES_INPUT) {
        th_model_node(g, "Conv", NULL, res == RES_BROADCAST ? "xm,w2" : "x,w2",
                      res == RES_AFTER ? "r0" : "r");
        th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){1, 1});
      }
      if (res == RES_AFTER) fg_node(g, "Neg", "r0", NULL, "r");
    }
    if (pass == 1) break;
    if (scaled) {
      fg_node(g, "ReduceMean", "x", NULL, "sm");
      th_model_attr_ints(g, "axes", 2, (int64_t[]){2, 3});
      fg_node(g, "Sigmoid", "sm", NULL, "s");
      fg_node(g, "Mul", "x", "s", "u");
    }
    th_model_node(g, "Conv", NULL, scaled ? "u,w,b" : "x,w,b", "t");
    th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){k, k});
    th_model_attr_ints(g, "pads", 4, (int64_t[]){k / 2, k / 2, k / 2, k / 2});
    th_model_attr_int(g, "group", group);
  }
  const char *r = res == RES_INPUT ? "x" : "r";
  fg_node(g, "Add", swap ? r : "t", swap ? "t" : r, "y");
  const char *outs[] = {"y", "t"};
  return fg_load(g, 2, outs);
}

/* y of m on xs from the forward plan (REUSE, `flags` besides) of the targets y, and t too
 * when `t_too`; *folded: the plan folded an Add into a node (add_in). */
static dd_tensor *residual_run(const dd_model *m, const dd_shape *xs, unsigned flags, int t_too,
                               int *folded) {
  int xv = dd_model_input(m), tg[2] = {dd_model_find(m, "y"), dd_model_find(m, "t")};
  dd_binding b = {xv, *xs, NULL};
  dd_plan *p;
  dd_err err;
  cr_assert_eq(dd_plan_new(m, &b, 1, tg, t_too ? 2 : 1, DD_PLAN_REUSE | flags, 0, &p, &err), 0,
               "%s", err.msg);
  dd_tensor *x = dd_plan_tensor(p, xv), *y;
  uint64_t st = 31;
  for (int64_t i = 0; i < dd_tensor_numel(x); i++) dd_f32(x)[i] = th_rand_uniform(&st, -2, 3);
  dd_plan_forward(p);
  cr_assert_eq(dd_tensor_clone(dd_plan_tensor(p, tg[0]), &y, &err), 0);
  *folded = 0;
  for (int o = 0; o < p->n_order && p->add_in; o++) *folded += p->add_in[o] >= 0;
  dd_plan_free(p);
  return y;
}

/* The forward plan of m on xs folds `folds` residual Adds, the plan that also keeps t and the
 * plan with gradients none; y is the same in the first two bit for bit, and in the third
 * within `tol` (relative; 0: bit for bit). */
static void check_residual(const dd_model *m, const dd_shape *xs, int folds, double tol,
                           const char *what) {
  int folded[3];
  dd_tensor *y0 = residual_run(m, xs, 0, 0, &folded[0]);
  dd_tensor *y1 = residual_run(m, xs, 0, 1, &folded[1]);
  dd_tensor *y2 = residual_run(m, xs, DD_PLAN_GRAD, 0, &folded[2]);
  cr_assert(folded[0] == folds && !folded[1] && !folded[2], "%s: folded %d %d %d", what,
            folded[0], folded[1], folded[2]);
  cr_assert_eq(th_max_abs_diff(y0, y1), 0, "%s (%s kernels): folded differs by %g", what,
               dd_kernels_name(th_kernels_now), th_max_abs_diff(y0, y1));
  cr_assert(rel_diff(y0, y2) <= tol, "%s (%s kernels): the gradient plan differs by %g", what,
            dd_kernels_name(th_kernels_now), rel_diff(y0, y2));
  dd_tensor_free(y0);
  dd_tensor_free(y1);
  dd_tensor_free(y2);
}

/* A forward-only plan folds y = Add(t, r) into the convolution that writes t (DD_OP_FOLD_ADD)
 * when t is read by the Add alone, is no target, and r is there before the convolution runs:
 * the 1x1 products add r as their tiles are stored (one image and two, a one-pixel plane,
 * the squeeze-excitation ConvScaled), the transposed 1x1 path as it transposes back, the
 * other paths in a pass after; t may be either operand.  Every case gives, bit for bit, the floats of the plan that
 * also keeps t (a target: nothing folds) and of the plan with gradients.  Not folded: r
 * computed after the convolution, r broadcast, a plan with gradients. */
static void fuse_residual_on(void);
Test(fuse, residual_add_folds_into_the_convolution_bit_for_bit) {
  th_each_kernels(fuse_residual_on);
}
static void fuse_residual_on(void) {
  static const struct {
    const char *what;
    int64_t n, c, m, k, group, h, w;
    int scaled, res, folds;
  } cases[] = {
      {"1x1 on 23x29, 24 -> 16", 1, 24, 16, 1, 1, 23, 29, 0, RES_BEFORE, 1},
      {"1x1 on 23x29, Add(r, t)", 1, 24, 16, 1, 1, 23, 29, 0, RES_BEFORE | RES_SWAP, 1},
      {"1x1 on 18x18, 2 images, 16 -> 40", 2, 16, 40, 1, 1, 18, 18, 0, RES_BEFORE, 1},
      {"1x1 on 7x7, 48 -> 72 (transposed)", 1, 48, 72, 1, 1, 7, 7, 0, RES_BEFORE, 1},
      {"1x1 on 14x14, 2 images, 40 -> 40, r = x (transposed)", 2, 40, 40, 1, 1, 14, 14, 0,
       RES_INPUT, 1},
      {"1x1 on one pixel, 40 -> 24", 1, 40, 24, 1, 1, 1, 1, 0, RES_BEFORE, 1},
      {"1x1 on 4x5, 80 -> 24 (rows split over threads)", 1, 80, 24, 1, 1, 4, 5, 0, RES_BEFORE,
       1},
      {"squeeze-excitation 1x1 on 14x14, 40 -> 24", 1, 40, 24, 1, 1, 14, 14, 1, RES_BEFORE, 1},
      {"squeeze-excitation, 2 images on 9x11, r = x", 2, 24, 24, 1, 1, 9, 11, 1, RES_INPUT, 1},
      {"3x3, 24 -> 24 (Winograd)", 1, 24, 24, 3, 1, 20, 20, 0, RES_BEFORE, 1},
      {"depthwise 3x3 on 19x23", 1, 40, 40, 3, 40, 19, 23, 0, RES_INPUT, 1},
      {"1x1, r after the convolution", 1, 24, 16, 1, 1, 12, 12, 0, RES_AFTER, 0},
      {"1x1, r after the convolution, Add(r, t)", 1, 24, 16, 1, 1, 12, 12, 0,
       RES_AFTER | RES_SWAP, 0},
      {"1x1, r broadcast", 1, 24, 16, 1, 1, 12, 12, 0, RES_BROADCAST, 0},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    dd_model *m = fg_residual(cases[ci].c, cases[ci].m, cases[ci].k, cases[ci].group,
                              cases[ci].scaled, cases[ci].res);
    int64_t d[] = {cases[ci].n, cases[ci].c, cases[ci].h, cases[ci].w};
    dd_shape xs = dd_shape_make(4, d);
    /* the plan with gradients does not fuse the squeeze-excitation scale, whose generic path
     * scales the weights instead of x */
    double tol = cases[ci].scaled && th_kernels_now != DD_KERNELS_AVX512 ? 1e-5 : 0;
    check_residual(m, &xs, cases[ci].folds, tol, cases[ci].what);
    dd_model_free(m);
  }
}

/* y = Add(x, t) or Add(t, x) (`swap`), t = Add(MatMul(x, w), b): a linear layer on tokens
 * (x ... x 40, w 40 x 40) and its residual, as a transformer's MLP ends. */
static dd_model *fg_linear_residual(int swap) {
  th_model *g = th_model_new("fuse");
  float w[40 * 40], b[40];
  uint64_t st = 43;
  for (int i = 0; i < 40 * 40; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int i = 0; i < 40; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 2, (int64_t[]){40, 40}, w, 40 * 40);
  th_model_init_f32(g, "b", 1, (int64_t[]){40}, b, 40);
  fg_node(g, "MatMul", "x", "w", "p");
  fg_node(g, "Add", "p", "b", "t");
  fg_node(g, "Add", swap ? "t" : "x", swap ? "x" : "t", "y");
  const char *outs[] = {"y", "t"};
  return fg_load(g, 2, outs);
}

/* The residual Add after a linear layer (the fused MatMulBias) folds into it in a
 * forward-only plan: added as the tiles are stored where the weights are packed (17 tokens),
 * in a pass after otherwise (300 tokens); the floats of the plan that keeps t, and of the plan
 * with gradients, bit for bit. */
static void fuse_linear_residual_on(void);
Test(fuse, residual_add_folds_into_linear_layers_bit_for_bit) {
  th_each_kernels(fuse_linear_residual_on);
}
static void fuse_linear_residual_on(void) {
  for (int swap = 0; swap < 2; swap++)
    for (int64_t rows = 17; rows <= 300; rows += 283) {
      dd_model *m = fg_linear_residual(swap);
      int64_t d[] = {1, rows, 40};
      dd_shape xs = dd_shape_make(3, d);
      char what[64];
      snprintf(what, sizeof what, "linear layer, %lld rows, swap %d", (long long)rows, swap);
      check_residual(m, &xs, 1, 0, what);
      dd_model_free(m);
    }
}

/* y = Add(t, r) with t = Transpose(Reshape(Gemm(x, w, c), [T, 1, 40]), perm 1 0 2) and
 * r = Reshape(x, [1, T, 40]): a ViT's attention out-projection (torch's MultiheadAttention,
 * Gemm with transB) and its residual, x T x 40.  The Reshape and the Transpose (it moves a
 * dim of 1) are aliases, so the Add folds into the Gemm through them. */
static dd_model *fg_gemm_residual(int64_t t) {
  th_model *g = th_model_new("fuse");
  float w[40 * 40], c[40];
  uint64_t st = 79;
  for (int i = 0; i < 40 * 40; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int i = 0; i < 40; i++) c[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 2, (int64_t[]){40, 40}, w, 40 * 40);
  th_model_init_f32(g, "c", 1, (int64_t[]){40}, c, 40);
  th_model_node(g, "Constant", NULL, NULL, "s1");
  th_model_attr_tensor_i64(g, "value", 1, (int64_t[]){3}, (int64_t[]){1, t, 40}, 3);
  th_model_node(g, "Constant", NULL, NULL, "s2");
  th_model_attr_tensor_i64(g, "value", 1, (int64_t[]){3}, (int64_t[]){t, 1, 40}, 3);
  fg_node(g, "Reshape", "x", "s1", "r");
  th_model_node(g, "Gemm", NULL, "x,w,c", "p");
  th_model_attr_int(g, "transB", 1);
  fg_node(g, "Reshape", "p", "s2", "p2");
  fg_node(g, "Transpose", "p2", NULL, "t");
  th_model_attr_ints(g, "perm", 3, (int64_t[]){1, 0, 2});
  fg_node(g, "Add", "t", "r", "y");
  const char *outs[] = {"y", "t"};
  return fg_load(g, 2, outs);
}

/* The residual Add after a Gemm, through a Reshape and a Transpose of a dim of 1, folds into
 * the Gemm in a forward-only plan: added as the tiles are stored where its weights are packed
 * (17 rows), in a pass after otherwise (300 rows); bit for bit the floats of the plan that
 * keeps t (nothing folds) and of the plan with gradients. */
static void fuse_gemm_residual_on(void);
Test(fuse, residual_add_folds_into_a_gemm_through_aliases_bit_for_bit) {
  th_each_kernels(fuse_gemm_residual_on);
}
static void fuse_gemm_residual_on(void) {
  for (int64_t rows = 17; rows <= 300; rows += 283) {
    dd_model *m = fg_gemm_residual(rows);
    int64_t d[] = {rows, 40};
    dd_shape xs = dd_shape_make(2, d);
    char what[64];
    snprintf(what, sizeof what, "Gemm, %lld rows", (long long)rows);
    check_residual(m, &xs, 1, 0, what);
    dd_model_free(m);
  }
}

/* y = Add(Add(r, t), q): t = Conv(x, w) and r = Conv(x, w2) (1x1), q = Relu(x) computed first.
 * The inner Add folds into t's convolution (its output in t's memory); the outer one must
 * not fold through it into r's convolution, whose memory the inner sum is not in: one fold,
 * and the floats of the plan that keeps t. */
Test(fuse, a_folded_add_is_no_alias_for_the_next) {
  th_model *g = th_model_new("fuse");
  float w[24 * 24], w2[24 * 24];
  uint64_t st = 83;
  for (int i = 0; i < 24 * 24; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int i = 0; i < 24 * 24; i++) w2[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  th_model_init_f32(g, "w", 4, (int64_t[]){24, 24, 1, 1}, w, 24 * 24);
  th_model_init_f32(g, "w2", 4, (int64_t[]){24, 24, 1, 1}, w2, 24 * 24);
  fg_node(g, "Relu", "x", NULL, "q");
  th_model_node(g, "Conv", NULL, "x,w2", "r");
  th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){1, 1});
  th_model_node(g, "Conv", NULL, "x,w", "t");
  th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){1, 1});
  fg_node(g, "Add", "r", "t", "a");
  fg_node(g, "Add", "a", "q", "y");
  const char *outs[] = {"y", "t"};
  dd_model *m = fg_load(g, 2, outs);
  int64_t d[] = {1, 24, 12, 12};
  dd_shape xs = dd_shape_make(4, d);
  int folded[2];
  dd_tensor *y0 = residual_run(m, &xs, 0, 0, &folded[0]);
  dd_tensor *y1 = residual_run(m, &xs, 0, 1, &folded[1]);
  cr_assert(folded[0] == 1 && folded[1] == 0, "folded %d %d", folded[0], folded[1]);
  cr_assert_eq(th_max_abs_diff(y0, y1), 0, "differs by %g", th_max_abs_diff(y0, y1));
  dd_tensor_free(y0);
  dd_tensor_free(y1);
  dd_model_free(m);
}

/* y = Mul(t, GlobalAveragePool(t)), t = act(Conv(x)) depthwise (c channels, k x k, stride s,
 * pad k / 2, a bias): a squeeze-excitation's pool and the product that reads t again.  act:
 * 0 none, 1 Relu, 2 SiLU (Sigmoid and Mul), 3 HardSwish. */
static dd_model *fg_dw_pool(int64_t c, int64_t k, int64_t s, int act) {
  th_model *g = th_model_new("fuse");
  int64_t nw = c * k * k;
  float *w = malloc(sizeof(float) * (size_t)nw), *b = malloc(sizeof(float) * (size_t)c);
  uint64_t st = 83;
  for (int64_t i = 0; i < nw; i++) w[i] = th_rand_uniform(&st, -0.5f, 0.5f);
  for (int64_t i = 0; i < c; i++) b[i] = th_rand_uniform(&st, -1, 1);
  th_model_init_f32(g, "w", 4, (int64_t[]){c, 1, k, k}, w, (size_t)nw);
  th_model_init_f32(g, "b", 1, (int64_t[]){c}, b, (size_t)c);
  free(w);
  free(b);
  th_model_node(g, "Conv", NULL, "x,w,b", act ? "t0" : "t");
  th_model_attr_ints(g, "kernel_shape", 2, (int64_t[]){k, k});
  th_model_attr_ints(g, "strides", 2, (int64_t[]){s, s});
  th_model_attr_ints(g, "pads", 4, (int64_t[]){k / 2, k / 2, k / 2, k / 2});
  th_model_attr_int(g, "group", c);
  if (act == 1) fg_node(g, "Relu", "t0", NULL, "t");
  if (act == 2) {
    fg_node(g, "Sigmoid", "t0", NULL, "ts");
    fg_node(g, "Mul", "t0", "ts", "t");
  }
  if (act == 3) fg_node(g, "HardSwish", "t0", NULL, "t");
  fg_node(g, "GlobalAveragePool", "t", NULL, "m");
  fg_node(g, "Mul", "t", "m", "y");
  const char *outs[] = {"y"};
  return fg_load(g, 1, outs);
}

/* A forward-only plan hands a GlobalAveragePool the sums of its input's planes that the
 * depthwise convolution before it (with its activation folded in, or none) made as its lanes
 * stored them (plan_pool_sums, ops/depthwise.c): the pool reads no plane.  The means match
 * those the pool sums itself, in the plan with gradients (which hands over nothing), within
 * the rounding of the two orders of summation: every y within 1e-6 of its size.  Several
 * bands of rows (112 x 112), blocks of 16 channels with the last one short, stride 2, two
 * images; the generic kernels hand over nothing. */
static void fuse_pool_sums_on(void);
Test(fuse, global_average_pool_takes_the_depthwise_convolutions_sums) {
  th_each_kernels(fuse_pool_sums_on);
}
static void fuse_pool_sums_on(void) {
  static const struct {
    int64_t n, c, k, s, h, w;
    int act;
  } cases[] = {{1, 40, 3, 1, 19, 23, 2}, {2, 24, 5, 2, 28, 28, 3}, {1, 32, 3, 1, 112, 112, 2},
               {1, 16, 3, 2, 56, 56, 1}, {1, 72, 5, 1, 7, 7, 0},    {2, 17, 3, 1, 9, 30, 2}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    dd_model *m = fg_dw_pool(cases[ci].c, cases[ci].k, cases[ci].s, cases[ci].act);
    int64_t d[] = {cases[ci].n, cases[ci].c, cases[ci].h, cases[ci].w};
    dd_shape xs = dd_shape_make(4, d);
    dd_tensor *y[2];
    run_info r[2];
    forward_run(m, &xs, 0, 0, &y[0], &r[0]);
    forward_run(m, &xs, DD_PLAN_GRAD, 0, &y[1], &r[1]);
    cr_assert_eq(r[0].sums, th_kernels_now == DD_KERNELS_AVX512 ? 2 : 0, "case %zu: %d", ci,
                 r[0].sums);
    cr_assert_eq(r[1].sums, 0);
    cr_assert(dd_shape_eq(&y[0]->shape, &y[1]->shape));
    for (int64_t i = 0; i < dd_tensor_numel(y[1]); i++) {
      float a = dd_f32(y[0])[i], b = dd_f32(y[1])[i];
      cr_assert(fabsf(a - b) <= 1e-6f * fmaxf(1.f, fabsf(b)), "case %zu at %lld: %.9g vs %.9g",
                ci, (long long)i, a, b);
    }
    dd_tensor_free(y[0]);
    dd_tensor_free(y[1]);
    dd_model_free(m);
  }
}
