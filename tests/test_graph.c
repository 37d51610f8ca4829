/* The planner's memory reuse (DD_PLAN_REUSE): lifetimes, in-place and alias ops must never
 * change a result.  Each plan is checked against a plan that keeps every buffer apart (the
 * executor of the golden and gradient tests) and, on a small graph, against the formula. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "helper_model.h"
#include "helper_ops.h"

/* Writes x into p's input and runs forward and backward (seeding each target's gradient with
 * its value: the gradient of 1/2 sum y^2 + 1/2 sum w^2). */
static void run_again(dd_plan *p, const dd_model *m, const float *x, const int *targets,
                      int nt) {
  dd_tensor *in = dd_plan_tensor(p, dd_model_input(m));
  memcpy(in->data, x, (size_t)dd_tensor_numel(in) * sizeof(float));
  /* twice: the second pass must not see what the first one left in shared memory */
  for (int pass = 0; pass < 2; pass++) {
    dd_plan_forward(p);
    dd_plan_zero_grad(p);
    for (int t = 0; t < nt; t++) {
      dd_tensor *v = dd_plan_tensor(p, targets[t]), *g = dd_plan_grad(p, targets[t]);
      cr_assert(v && g);
      memcpy(g->data, v->data, (size_t)dd_tensor_numel(v) * sizeof(float));
    }
    dd_plan_backward(p);
  }
}

static dd_plan *run_plan_within(dd_plan *host, const dd_model *m, const dd_shape *shape,
                                const float *x, const int *targets, int nt, unsigned flags) {
  dd_binding b = {dd_model_input(m), *shape, NULL};
  dd_plan *p = NULL;
  dd_err err;
  cr_assert_eq(dd_plan_new_within(host, m, &b, 1, targets, nt, DD_PLAN_GRAD | flags, 0, &p, &err),
               0, "%s", err.msg);
  run_again(p, m, x, targets, nt);
  return p;
}

static dd_plan *run_plan(const dd_model *m, const dd_shape *shape, const float *x,
                         const int *targets, int nt, unsigned flags) {
  return run_plan_within(NULL, m, shape, x, targets, nt, flags);
}

static void assert_same(const dd_tensor *a, const dd_tensor *b, const char *what) {
  cr_assert(a && b && dd_shape_eq(&a->shape, &b->shape), "%s: shapes differ", what);
  int64_t n = dd_tensor_numel(a);
  for (int64_t i = 0; i < n; i++)
    cr_assert_eq(dd_f32(a)[i], dd_f32(b)[i], "%s[%lld]: %g vs %g", what, (long long)i,
                 dd_f32(a)[i], dd_f32(b)[i]);
}

/* A graph of input x (float32, its shape set at plan time) and outputs y and w, for the
 * nodes between. */
static th_model *x_to_y_and_w(void) {
  th_model *b = th_model_new("reuse");
  th_model_input(b, "x", -1, NULL);
  th_model_output(b, "y");
  th_model_output(b, "w");
  return b;
}

/* A graph of x_to_y_and_w, loaded (the builder freed) and run at 1x2x3x5 on an x drawn from
 * `seed`, forward and backward, twice: with every buffer apart and with buffers shared. */
typedef struct both_plans {
  dd_model *m;
  int targets[2]; /* y, w */
  float x[30];
  dd_plan *sep, *reu;
} both_plans;

static void run_both(both_plans *r, th_model *b, uint64_t seed) {
  r->m = th_model_load(b, "reuse.onnx");
  th_model_free(b);
  r->targets[0] = dd_model_find(r->m, "y");
  r->targets[1] = dd_model_find(r->m, "w");
  int64_t dims[] = {1, 2, 3, 5};
  dd_shape shape = dd_shape_make(4, dims);
  for (int i = 0; i < 30; i++) r->x[i] = th_rand_uniform(&seed, -1, 1);
  r->sep = run_plan(r->m, &shape, r->x, r->targets, 2, 0);
  r->reu = run_plan(r->m, &shape, r->x, r->targets, 2, DD_PLAN_REUSE);
}

static void both_plans_free(both_plans *r) {
  dd_plan_free(r->sep);
  dd_plan_free(r->reu);
  dd_model_free(r->m);
}

/* c = x + x is read after the Relu that follows it, so that Relu must not run in place;
 * t aliases r (Identity) and is read at the end; u = c + t is read last by its Relu, which
 * may run in place; w = Relu(x) + x reads the graph input after a Relu of it. */
Test(graph, reuse_respects_every_reader) {
  th_model *b = x_to_y_and_w();
  th_model_node(b, "Add", NULL, "x,x", "c");
  th_model_node(b, "Relu", NULL, "c", "r");
  th_model_node(b, "Identity", NULL, "r", "t");
  th_model_node(b, "Add", NULL, "c,t", "u");
  th_model_node(b, "Relu", NULL, "u", "v");
  th_model_node(b, "Mul", NULL, "v,t", "y");
  th_model_node(b, "Relu", NULL, "x", "z");
  th_model_node(b, "Add", NULL, "z,x", "w");
  both_plans run;
  run_both(&run, b, 11);
  const dd_model *m = run.m;
  const float *x = run.x;
  const int *targets = run.targets;
  dd_plan *sep = run.sep, *reu = run.reu;
  const dd_tensor *y = dd_plan_tensor(reu, targets[0]), *w = dd_plan_tensor(reu, targets[1]);
  const dd_tensor *gx = dd_plan_grad(reu, dd_model_input(m));
  for (int i = 0; i < 30; i++) {
    /* the formula: r = relu(2x), y = relu(2x + r) * r, w = relu(x) + x */
    float c = x[i] + x[i], r = c > 0 ? c : 0, u = c + r, v = u > 0 ? u : 0;
    cr_assert_eq(dd_f32(y)[i], v * r, "y[%d]", i);
    cr_assert_eq(dd_f32(w)[i], (x[i] > 0 ? x[i] : 0) + x[i], "w[%d]", i);
    /* d/dx of 1/2 y^2 + 1/2 w^2 */
    float yv = v * r, wv = (x[i] > 0 ? x[i] : 0) + x[i];
    double dy = x[i] > 0 ? 2.0 * (4 * 2 * (double)x[i]) : 0; /* y = 8x^2 for x > 0 */
    double dw = x[i] > 0 ? 2 : 1;
    double want = yv * dy + wv * dw;
    cr_assert(fabs(dd_f32(gx)[i] - want) <= 1e-5 * (1 + fabs(want)), "dx[%d]: %g vs %g", i,
              dd_f32(gx)[i], want);
  }
  assert_same(y, dd_plan_tensor(sep, targets[0]), "y");
  assert_same(w, dd_plan_tensor(sep, targets[1]), "w");
  assert_same(gx, dd_plan_grad(sep, dd_model_input(m)), "dx");
  cr_assert_lt(dd_plan_bytes(reu), dd_plan_bytes(sep));
  /* the input and the targets keep their values */
  for (int i = 0; i < 30; i++) cr_assert_eq(dd_f32(dd_plan_tensor(reu, dd_model_input(m)))[i], x[i]);
  both_plans_free(&run);
}

/* The element-wise ops of src/ops/unary.c and binary.c under reuse: the ops whose backward
 * reads y run in place and free x early (DD_OP_INPLACE, DD_OP_BWD_NO_X), the others keep x
 * and not y (DD_OP_BWD_NO_OUT); all may write their input's gradient over their output's
 * (DD_OP_INPLACE_GRAD).  Values and the input gradient are bit for bit those of the plan that
 * keeps every buffer apart. */
Test(graph, reuse_matches_for_elementwise_chains) {
  th_model *b = x_to_y_and_w();
  th_model_node(b, "Exp", NULL, "x", "a");
  th_model_node(b, "Neg", NULL, "a", "b");
  th_model_node(b, "Tanh", NULL, "b", "c");
  th_model_node(b, "Gelu", NULL, "c", "d");
  th_model_node(b, "HardSwish", NULL, "d", "e");
  th_model_node(b, "Min", NULL, "e,x", "f");
  th_model_node(b, "PRelu", NULL, "f,x", "h");
  th_model_node(b, "Exp", NULL, "h", "i");
  th_model_node(b, "Sqrt", NULL, "i", "j");
  th_model_node(b, "Reciprocal", NULL, "j", "k");
  th_model_node(b, "Softplus", NULL, "k", "y");
  th_model_node(b, "Pow", NULL, "i,x", "p");
  th_model_node(b, "Erf", NULL, "p", "q");
  th_model_node(b, "Log", NULL, "q", "r");
  th_model_node(b, "Elu", NULL, "r", "s");
  th_model_node(b, "HardSigmoid", NULL, "s", "w");
  both_plans run;
  run_both(&run, b, 12);
  const dd_model *m = run.m;
  const int *targets = run.targets;
  dd_plan *sep = run.sep, *reu = run.reu;
  assert_same(dd_plan_tensor(reu, targets[0]), dd_plan_tensor(sep, targets[0]), "y");
  assert_same(dd_plan_tensor(reu, targets[1]), dd_plan_tensor(sep, targets[1]), "w");
  const dd_tensor *gx = dd_plan_grad(reu, dd_model_input(m));
  assert_same(gx, dd_plan_grad(sep, dd_model_input(m)), "dx");
  int nonzero = 0;
  for (int i = 0; i < 30; i++) {
    cr_assert(isfinite(dd_f32(gx)[i]), "dx[%d] = %g", i, dd_f32(gx)[i]);
    nonzero += dd_f32(gx)[i] != 0.f;
  }
  cr_assert_gt(nonzero, 20);
  cr_assert_lt(dd_plan_bytes(reu), dd_plan_bytes(sep));
  both_plans_free(&run);
}

/* A plan of m at 1x2x3x5 for nt targets without gradients, with x (30 floats) in its input
 * and one forward pass run. */
static dd_plan *forward_plan(const dd_model *m, const int *targets, int nt, unsigned flags,
                             const float *x) {
  int64_t dims[] = {1, 2, 3, 5};
  dd_binding bind = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  dd_plan *p;
  dd_err err;
  cr_assert_eq(dd_plan_new(m, &bind, 1, targets, nt, flags, 0, &p, &err), 0, "%s", err.msg);
  memcpy(dd_plan_tensor(p, dd_model_input(m))->data, x, 30 * sizeof *x);
  dd_plan_forward(p);
  return p;
}

/* A chain in plans without gradients, where every op of unary.c (and Silu, Sigmoid) runs in
 * place, those whose backward reads x included: values bit for bit those of the plan that
 * keeps every buffer apart, in less than half its memory. */
Test(graph, reuse_in_place_forward_only_chains) {
  th_model *b = x_to_y_and_w();
  th_model_node(b, "Gelu", NULL, "x", "a");
  th_model_node(b, "HardSwish", NULL, "a", "c");
  th_model_node(b, "Sigmoid", NULL, "c", "d");
  th_model_node(b, "Erf", NULL, "d", "e");
  th_model_node(b, "Softplus", NULL, "e", "y");
  th_model_node(b, "Elu", NULL, "x", "f");
  th_model_node(b, "HardSigmoid", NULL, "f", "w");
  dd_model *m = th_model_load(b, "reuse.onnx");
  th_model_free(b);
  int targets[2] = {dd_model_find(m, "y"), dd_model_find(m, "w")};
  float x[30];
  uint64_t seed = 31;
  for (int i = 0; i < 30; i++) x[i] = th_rand_uniform(&seed, -3, 3);
  dd_plan *p[2];
  for (int r = 0; r < 2; r++) p[r] = forward_plan(m, targets, 2, r ? DD_PLAN_REUSE : 0, x);
  assert_same(dd_plan_tensor(p[1], targets[0]), dd_plan_tensor(p[0], targets[0]), "y");
  assert_same(dd_plan_tensor(p[1], targets[1]), dd_plan_tensor(p[0], targets[1]), "w");
  /* the input keeps its value: only values the plan owns are overwritten */
  for (int i = 0; i < 30; i++) cr_assert_eq(dd_f32(dd_plan_tensor(p[1], dd_model_input(m)))[i], x[i]);
  /* x, y and w, and one buffer for the chains between: 4 of 30 floats (8 values apart) */
  cr_assert_lt(dd_plan_bytes(p[1]), dd_plan_bytes(p[0]) / 2, "%zu vs %zu bytes",
               dd_plan_bytes(p[1]), dd_plan_bytes(p[0]));
  dd_plan_free(p[0]);
  dd_plan_free(p[1]);
  dd_model_free(m);
}

/* Dropout (the identity at inference) is an alias, and does not run, when nothing reads its
 * mask output (Swin-T's attention: the mask is named and never read): its output is its
 * input's memory.  With the mask a target it runs, and the mask is all ones. */
Test(graph, dropout_with_an_unread_mask_is_an_alias) {
  for (int masked = 0; masked < 2; masked++) {
    th_model *b = th_model_new("dropout");
    th_model_input(b, "x", -1, NULL);
    th_model_output(b, "y");
    if (masked) th_model_output(b, "mask");
    th_model_node(b, "Relu", NULL, "x", "r");
    th_model_node(b, "Dropout", NULL, "r", "d,mask");
    th_model_node(b, "Relu", NULL, "d", "y");
    dd_model *m = th_model_load(b, "dropout.onnx");
    th_model_free(b);
    int targets[2] = {dd_model_find(m, "y"), dd_model_find(m, "mask")};
    float x[30];
    uint64_t seed = 5;
    for (int i = 0; i < 30; i++) x[i] = th_rand_uniform(&seed, -1, 1);
    dd_plan *p = forward_plan(m, targets, masked ? 2 : 1, DD_PLAN_REUSE, x);
    for (int i = 0; i < 30; i++)
      cr_assert_eq(dd_f32(dd_plan_tensor(p, targets[0]))[i], x[i] > 0 ? x[i] : 0.f);
    const dd_tensor *r = dd_plan_tensor(p, dd_model_find(m, "r"));
    const dd_tensor *d = dd_plan_tensor(p, dd_model_find(m, "d"));
    cr_assert(r && d);
    if (!masked) {
      cr_assert_eq(d->data, r->data, "Dropout with an unread mask did not alias its input");
    } else {
      cr_assert_neq(d->data, r->data, "Dropout whose mask is read was skipped");
      const dd_tensor *mk = dd_plan_tensor(p, targets[1]);
      for (int i = 0; i < 30; i++) cr_assert(dd_bool(mk)[i], "mask[%d] is not 1", i);
    }
    dd_plan_free(p);
    dd_model_free(m);
  }
}

/* A Transpose that moves only dims of 1 keeps the elements in order and is aliased like a
 * Reshape (no copy, its output in its input's memory; torch's MultiheadAttention writes
 * (1, N, C) -> (N, 1, C) and back); one that reorders dims larger than 1 runs.  Either way
 * the values and the input gradient are those of the plan that keeps every buffer apart. */
Test(graph, transpose_of_dims_of_one_is_an_alias) {
  static const int64_t perms[3][4] = {{1, 0, 2, 3}, {1, 2, 0, 3}, {0, 2, 1, 3}};
  for (int k = 0; k < 3; k++) {
    th_model *b = x_to_y_and_w();
    th_model_node(b, "Relu", NULL, "x", "r");
    th_model_node(b, "Transpose", NULL, "r", "d");
    th_model_attr_ints(b, "perm", 4, perms[k]);
    th_model_node(b, "Sigmoid", NULL, "d", "y");
    th_model_node(b, "Neg", NULL, "x", "w");
    both_plans run;
    run_both(&run, b, 13);
    assert_same(dd_plan_tensor(run.reu, run.targets[0]), dd_plan_tensor(run.sep, run.targets[0]),
                "y");
    assert_same(dd_plan_grad(run.reu, dd_model_input(run.m)),
                dd_plan_grad(run.sep, dd_model_input(run.m)), "dx");
    /* x is 1x2x3x5: perms 0 and 1 move the dim of 1 only; perm 2 swaps 2 and 3 */
    float x[30];
    for (int i = 0; i < 30; i++) x[i] = run.x[i];
    int ty = dd_model_find(run.m, "y");
    dd_plan *p = forward_plan(run.m, &ty, 1, DD_PLAN_REUSE, x);
    const dd_tensor *r = dd_plan_tensor(p, dd_model_find(run.m, "r"));
    const dd_tensor *d = dd_plan_tensor(p, dd_model_find(run.m, "d"));
    const dd_tensor *y = dd_plan_tensor(p, ty);
    cr_assert(r && d && y);
    cr_assert_eq(d->data == r->data, k < 2, "perm %d: aliased %d", k, d->data == r->data);
    for (int i = 0; i < 30; i++) { /* y's element i: d[i] = r at the permuted index */
      int j = i;
      if (k == 2) { /* d is 1x3x2x5: d[0][a][c][e] = r[0][c][a][e] */
        int e = i % 5, c = i / 5 % 2, a = i / 10;
        j = (c * 3 + a) * 5 + e;
      }
      float rv = x[j] > 0 ? x[j] : 0.f;
      cr_assert(fabsf(dd_f32(y)[i] - 1.f / (1.f + expf(-rv))) < 1e-6f, "perm %d, y[%d]", k, i);
    }
    dd_plan_free(p);
    both_plans_free(&run);
  }
}

/* GoogLeNet with three targets at once (one feeds the next): forward values and the input
 * gradient are bit for bit those of the plan that keeps everything, in a fraction of the
 * memory. */
Test(graph, reuse_matches_on_googlenet, .timeout = 120) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  const char *names[] = {"conv2/3x3", "inception_3b/output", "inception_4c/output"};
  int targets[3];
  for (int i = 0; i < 3; i++) cr_assert_eq(dd_model_resolve(m, names[i], &targets[i], &err), 0);
  int64_t dims[] = {1, 3, 112, 144};
  dd_shape shape = dd_shape_make(4, dims);
  int64_t n = dd_shape_numel(&shape);
  float *x = malloc(sizeof(float) * (size_t)n);
  uint64_t st = 5;
  for (int64_t i = 0; i < n; i++) x[i] = th_rand_uniform(&st, -120, 130);
  dd_plan *sep = run_plan(m, &shape, x, targets, 3, 0);
  dd_plan *reu = run_plan(m, &shape, x, targets, 3, DD_PLAN_REUSE);
  for (int i = 0; i < 3; i++)
    assert_same(dd_plan_tensor(reu, targets[i]), dd_plan_tensor(sep, targets[i]), names[i]);
  assert_same(dd_plan_grad(reu, dd_model_input(m)), dd_plan_grad(sep, dd_model_input(m)),
              "input gradient");
  double ratio = (double)dd_plan_bytes(reu) / (double)dd_plan_bytes(sep);
  cr_log_info("GoogLeNet to inception_4c with gradients: %.1f MB shared vs %.1f MB apart\n",
              dd_plan_bytes(reu) / 1e6, dd_plan_bytes(sep) / 1e6);
  /* both include the same convolution workspace (Winograd's transformed weights and tiles),
   * which at this small size is a third of the shared plan */
  cr_assert_lt(ratio, 0.6, "the shared plan needs %.0f%% of the separate one", 100 * ratio);
  dd_plan_free(sep);
  dd_plan_free(reu);
  free(x);
  dd_model_free(m);
}

/* A dream's octaves: plans of smaller sizes made within the largest one's buffers give the
 * results of plans of their own, bit for bit, and so does the host when it runs again after
 * them; a plan larger than its host gets buffers of its own. */
Test(graph, plans_within_a_host_match_their_own, .timeout = 120) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  int target;
  cr_assert_eq(dd_model_resolve(m, "inception_4c/output", &target, &err), 0);
  int64_t big_dims[] = {1, 3, 160, 208}, small_dims[] = {1, 3, 112, 144},
          huge_dims[] = {1, 3, 192, 240};
  dd_shape big = dd_shape_make(4, big_dims), small = dd_shape_make(4, small_dims),
           huge = dd_shape_make(4, huge_dims);
  int64_t n = dd_shape_numel(&huge);
  float *x = malloc(sizeof(float) * (size_t)n);
  uint64_t st = 9;
  for (int64_t i = 0; i < n; i++) x[i] = th_rand_uniform(&st, -120, 130);
  unsigned f = DD_PLAN_REUSE;
  dd_plan *host = run_plan(m, &big, x, &target, 1, f);
  /* the inner plan runs in the host's memory: it overwrites what the host computed */
  const dd_tensor *hg = dd_plan_grad(host, dd_model_input(m));
  int64_t ng = dd_tensor_numel(hg);
  float *before = malloc(sizeof(float) * (size_t)ng);
  memcpy(before, hg->data, sizeof(float) * (size_t)ng);
  dd_plan *inner = run_plan_within(host, m, &small, x, &target, 1, f);
  dd_plan *own = run_plan(m, &small, x, &target, 1, f);
  cr_assert_neq(memcmp(before, hg->data, sizeof(float) * (size_t)ng), 0,
                "the inner plan did not use the host's memory");
  free(before);
  assert_same(dd_plan_tensor(inner, target), dd_plan_tensor(own, target), "small, within");
  assert_same(dd_plan_grad(inner, dd_model_input(m)), dd_plan_grad(own, dd_model_input(m)),
              "small input gradient, within");
  run_again(host, m, x, &target, 1);
  dd_plan *big_own = run_plan(m, &big, x, &target, 1, f);
  assert_same(dd_plan_tensor(host, target), dd_plan_tensor(big_own, target), "host again");
  assert_same(dd_plan_grad(host, dd_model_input(m)), dd_plan_grad(big_own, dd_model_input(m)),
              "host input gradient again");
  dd_plan *over = run_plan_within(host, m, &huge, x, &target, 1, f);
  dd_plan *over_own = run_plan(m, &huge, x, &target, 1, f);
  assert_same(dd_plan_grad(over, dd_model_input(m)), dd_plan_grad(over_own, dd_model_input(m)),
              "larger than the host");
  dd_plan_free(over_own);
  dd_plan_free(over);
  dd_plan_free(big_own);
  dd_plan_free(own);
  dd_plan_free(inner);
  dd_plan_free(host);
  free(x);
  dd_model_free(m);
}

/* ---- the smallest input ---- */

/* The smallest input of a target, by shape inference: sizes one pixel smaller fail, and a
 * plan for an image below it says so in pixels instead of naming a pooling deep inside. */
static void check_min_input(const char *rel, const char *layer, int want) {
  dd_model *m = th_shared_model(rel);
  dd_err err;
  int target = -1, w = 0, h = 0;
  if (layer) cr_assert_eq(dd_model_resolve(m, layer, &target, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_plan_min_input(m, layer ? &target : NULL, layer ? 1 : 0, &w, &h, &err), 0,
               "%s", err.msg);
  cr_assert(w == want && h == want, "%s %s: smallest input %dx%d, expected %dx%d", rel,
            layer ? layer : "(outputs)", w, h, want, want);
  if (!layer) target = dd_model_output(m, 0);
  int sizes[3][2] = {{want, want}, {want - 1, want}, {want, want - 1}};
  for (int i = 0; i < 3; i++) {
    int64_t dims[4] = {1, 3, sizes[i][1], sizes[i][0]};
    dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
    dd_plan *p = NULL;
    int rc = dd_plan_new(m, &b, 1, &target, 1, DD_PLAN_GRAD | DD_PLAN_REUSE, 0, &p, &err);
    if (i == 0) {
      cr_assert_eq(rc, DD_OK, "%dx%d: %s", want, want, err.msg);
      dd_plan_free(p);
      continue;
    }
    char expect[128];
    snprintf(expect, sizeof expect, "a %dx%d input is too small", sizes[i][0], sizes[i][1]);
    cr_assert_eq(rc, DD_ESHAPE, "%s", err.msg);
    cr_assert(strstr(err.msg, expect), "%s", err.msg);
    snprintf(expect, sizeof expect, "the smallest input this model accepts is %dx%d pixels",
             want, want);
    cr_assert(strstr(err.msg, expect), "%s", err.msg);
    cr_log_info("%s", err.msg);
  }
  dd_model_free(m);
}

Test(graph, smallest_input_of_googlenet) {
  check_min_input("models/bvlc_googlenet.onnx", "inception_4c/output", 23);
  check_min_input("models/bvlc_googlenet.onnx", "inception_5b/output", 47);
  check_min_input("models/bvlc_googlenet.onnx", NULL, 47);
  check_min_input("models/bvlc_googlenet.onnx", "conv2/3x3", 5);
}

Test(graph, smallest_input_of_squeezenet) {
  check_min_input("models/squeezenet1.1.onnx", "fire5/concat", 13);
  check_min_input("models/squeezenet1.1.onnx", NULL, 25);
}

/* The message of the issue: a 20x20 image for GoogLeNet's default dream layer. */
Test(graph, too_small_input_is_said_in_pixels) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  int target;
  cr_assert_eq(dd_model_resolve(m, "inception_4c/output", &target, &err), 0);
  int64_t dims[4] = {1, 3, 20, 20};
  dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  dd_plan *p = NULL;
  cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, DD_PLAN_GRAD, 0, &p, &err), DD_ESHAPE);
  cr_assert_null(p);
  cr_assert(strstr(err.msg, "bvlc_googlenet.onnx: a 20x20 input is too small: 'pool3/3x3_s2' "
                            "would have no output; the smallest input this model accepts is "
                            "23x23 pixels"), "%s", err.msg);
  dd_model_free(m);
}

/* dd_plan_measure gives the bytes of the plan dd_plan_new makes, without making it (the
 * packs of a forward-only plan aside). */
Test(graph, measure_is_the_plan_size) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  dd_err err;
  int target = dd_model_output(m, 0);
  int64_t dims[4] = {1, 3, 96, 128};
  dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  unsigned flags[3] = {0, DD_PLAN_GRAD, DD_PLAN_GRAD | DD_PLAN_REUSE};
  for (int i = 0; i < 3; i++) {
    size_t bytes = 0;
    dd_plan *p = NULL;
    cr_assert_eq(dd_plan_measure(m, &b, 1, &target, 1, flags[i], &bytes, NULL, &err), 0, "%s",
                 err.msg);
    /* capped at the measure: what the plan needs, with no room for the weights a
     * forward-only plan packs beyond it (graph.h, dd_plan_bytes) */
    cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, flags[i], bytes, &p, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(bytes, dd_plan_bytes(p), "flags %u: measured %zu, the plan has %zu", flags[i],
                 bytes, dd_plan_bytes(p));
    dd_plan_free(p);
    cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, flags[i], 0, &p, &err), 0, "%s", err.msg);
    cr_assert_geq(dd_plan_bytes(p), bytes);
    dd_plan_free(p);
  }
  dd_model_free(m);
}

/* A plan too large for its host's buffers gets its own, held beside the host's: the cap
 * counts both. */
Test(graph, a_plan_beside_its_host_counts_both, .timeout = 60) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  dd_err err;
  int target = dd_model_output(m, 0);
  int64_t small_dims[4] = {1, 3, 64, 64}, big_dims[4] = {1, 3, 128, 128};
  dd_binding small = {dd_model_input(m), dd_shape_make(4, small_dims), NULL};
  dd_binding big = {dd_model_input(m), dd_shape_make(4, big_dims), NULL};
  unsigned f = DD_PLAN_GRAD | DD_PLAN_REUSE;
  dd_plan *host = NULL, *p = NULL;
  cr_assert_eq(dd_plan_new(m, &small, 1, &target, 1, f, 0, &host, &err), 0, "%s", err.msg);
  size_t need;
  cr_assert_eq(dd_plan_measure(m, &big, 1, &target, 1, f, &need, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_plan_new_within(host, m, &big, 1, &target, 1, f, need, &p, &err), DD_ELIMIT);
  cr_assert(strstr(err.msg, "besides the"), "%s", err.msg);
  cr_assert_eq(dd_plan_new_within(host, m, &big, 1, &target, 1, f, need + dd_plan_bytes(host), &p,
                                  &err), 0, "%s", err.msg);
  dd_plan_free(p);
  /* a plan that fits in the host's buffers adds nothing */
  cr_assert_eq(dd_plan_new_within(host, m, &small, 1, &target, 1, f, dd_plan_bytes(host), &p,
                                  &err), 0, "%s", err.msg);
  dd_plan_free(p);
  dd_plan_free(host);
  dd_model_free(m);
}

/* x -> Reshape(x, [1, 180]) -> y: only inputs of 60 pixels work (6x10, 10x6, 4x15 ...),
 * none of them square; `declare` gives x the declared shape 1x3x6x10. */
static dd_model *load_fixed_size(int declare) {
  th_model *b = th_model_new("fixed");
  th_model_input(b, "x", declare ? 4 : -1, (int64_t[]){1, 3, 6, 10});
  th_model_output(b, "y");
  th_model_init_i64(b, "s", 1, (int64_t[]){2}, (int64_t[]){1, 180}, 2);
  th_model_node(b, "Reshape", NULL, "x,s", "y");
  dd_model *m = th_model_load(b, "fixed.onnx");
  th_model_free(b);
  return m;
}

/* A network that takes one size only: the search starts from the declared size and answers
 * it, and a larger input that fails is not called too small. */
Test(graph, smallest_input_of_a_fixed_size_network) {
  dd_model *m = load_fixed_size(1);
  dd_err err;
  int w = 0, h = 0, y = dd_model_output(m, 0);
  cr_assert_eq(dd_plan_min_input(m, NULL, 0, &w, &h, &err), 0, "%s", err.msg);
  cr_assert(w == 10 && h == 6, "%dx%d", w, h);
  int64_t big[4] = {1, 3, 12, 12}, small[4] = {1, 3, 5, 5};
  dd_binding b = {dd_model_input(m), dd_shape_make(4, big), NULL};
  dd_plan *p = NULL;
  cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, 0, 0, &p, &err), DD_ESHAPE);
  cr_assert_null(strstr(err.msg, "too small"), "%s", err.msg);
  b.shape = dd_shape_make(4, small);
  cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, 0, 0, &p, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "a 5x5 input is too small: 'Reshape_0' cannot take it; the smallest "
                            "input this model accepts is 10x6 pixels"), "%s", err.msg);
  dd_model_free(m);
  /* undeclared, no square and not 224x224 works: the reason 224x224 fails is given */
  m = load_fixed_size(0);
  cr_assert_eq(dd_plan_min_input(m, NULL, 0, &w, &h, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "no input size up to 8192x8192 works") && strstr(err.msg, "Reshape"),
            "%s", err.msg);
  dd_model_free(m);
}
