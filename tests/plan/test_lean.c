/* A lean forward pass: a forward-only plan holds only what is live.  The session of
 * dream/infer.h (what `dream run`, `classify` and the top-5 lists use: DD_PLAN_REUSE |
 * DD_PLAN_FORGET_INPUTS) must take no more arena than the largest sum of bytes live at one
 * step of its order -- the liveness bound, computed here from the plan's own order,
 * independently of plan/memory.c -- and give the same bits as the plan that keeps every
 * value (no DD_PLAN_REUSE). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/infer.h"
#include "helper_ops.h"
#include "plan/plan.h"

/* 1 when t's data lies in p's value arena: a value computed at run time. */
static int in_arena(const dd_plan *p, const dd_tensor *t) {
  const char *base = p->arena.base, *d = t->data;
  return d && base && d >= base && d < base + p->arena.size;
}

static size_t rounded_bytes(const dd_tensor *t) {
  size_t b = 0;
  cr_assert_eq(plan_tensor_bytes(t, &b), 0);
  return (b + DD_ARENA_ALIGN - 1) / DD_ARENA_ALIGN * DD_ARENA_ALIGN;
}

/* The liveness bound of p's forward: over the steps of its order, the largest sum of the
 * bytes of the runtime values live there.  A value lives from its producer's step (-1 for
 * inputs) to its last reader's; targets to the end (inputs too when keep_inputs).  Nothing
 * is shared here: no in-place op, no Concat join, so a plan that does those may only be
 * below it. */
static size_t liveness_bound(const dd_plan *p, const int *targets, int n_targets,
                             int keep_inputs) {
  int nv = p->nv, N = p->n_order;
  int *def = malloc(sizeof(int) * (size_t)nv), *last = malloc(sizeof(int) * (size_t)nv);
  cr_assert(def && last);
  for (int v = 0; v < nv; v++) def[v] = last[v] = -2;
  for (int v = 0; v < nv; v++)
    if (in_arena(p, &p->val[v])) def[v] = last[v] = -1;
  for (int o = 0; o < N; o++) {
    const dd_node *n = p->onode[o];
    for (int k = 0; k < n->n_out; k++)
      if (n->out[k] >= 0 && def[n->out[k]] == -1) def[n->out[k]] = last[n->out[k]] = o;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] >= 0 && def[n->in[j]] >= -1 && last[n->in[j]] < o) last[n->in[j]] = o;
  }
  for (int v = 0; v < nv; v++)
    if (def[v] == -1 && keep_inputs) last[v] = N; /* an input */
  for (int t = 0; t < n_targets; t++) last[targets[t]] = N;
  size_t bound = 0;
  for (int s = -1; s <= N; s++) {
    size_t live = 0;
    for (int v = 0; v < nv; v++)
      if (def[v] >= -1 && def[v] <= s && s <= last[v]) live += rounded_bytes(&p->val[v]);
    if (live > bound) bound = live;
  }
  free(def);
  free(last);
  return bound;
}

static int value(const dd_model *m, const char *name) {
  int v;
  dd_err err;
  cr_assert_eq(dd_model_resolve(m, name, &v, &err), 0, "%s", err.msg);
  return v;
}

/* A deterministic image-like input: values in [-128, 128). */
static void fill(float *x, int64_t n) {
  uint64_t s = 7;
  for (int64_t i = 0; i < n; i++) x[i] = th_rand_uniform(&s, -128.f, 128.f);
}

/* GoogLeNet at 320x240 to `names`: the session's plan, built as dd_infer_new builds it,
 * within the liveness bound and a fraction of the plan that keeps every value; the session's
 * outputs bit for bit those of the plan that keeps every value. */
static void check_lean(const char *const *names, int n_targets) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int targets[8], in = dd_model_input(m);
  for (int t = 0; t < n_targets; t++) targets[t] = value(m, names[t]);
  int64_t dims[4] = {1, 3, 240, 320};
  dd_shape sh = dd_shape_make(4, dims);
  dd_binding b = {in, sh, NULL};
  dd_err err;
  dd_plan *lean, *reuse, *full;
  const unsigned ex = DD_PLAN_EXACT; /* as dd_infer's, in every plan: memory is compared here */
  cr_assert_eq(dd_plan_new(m, &b, 1, targets, n_targets, ex | DD_PLAN_REUSE | DD_PLAN_FORGET_INPUTS,
                           0, &lean, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_plan_new(m, &b, 1, targets, n_targets, ex | DD_PLAN_REUSE, 0, &reuse, &err), 0,
               "%s", err.msg);
  cr_assert_eq(dd_plan_new(m, &b, 1, targets, n_targets, ex, 0, &full, &err), 0, "%s", err.msg);
  dd_infer *s;
  cr_assert_eq(dd_infer_new(m, &sh, targets, n_targets, 0, &s, &err), 0, "%s", err.msg);

  size_t bound = liveness_bound(lean, targets, n_targets, 0);
  size_t rbound = liveness_bound(reuse, targets, n_targets, 1);
  cr_log_info("arena %zu B, liveness bound %zu B; keeping the input %zu B (bound %zu B); "
              "every value kept %zu B; scratch %zu B\n", lean->arena.size, bound,
              reuse->arena.size, rbound, full->arena.size, lean->scratch.size);
  cr_expect_leq(lean->arena.size, bound, "arena %zu B over the liveness bound %zu B",
                lean->arena.size, bound);
  cr_expect_leq(reuse->arena.size, rbound, "arena %zu B over the liveness bound %zu B",
                reuse->arena.size, rbound);
  /* GoogLeNet's busiest step (conv2/norm2) comes long after the input's last reader; an
   * input that is a target is kept, and then both plans are the same. */
  int input_is_target = 0;
  for (int t = 0; t < n_targets; t++) input_is_target |= targets[t] == in;
  if (input_is_target)
    cr_expect_eq(lean->arena.size, reuse->arena.size, "a target input was forgotten");
  else
    cr_expect_lt(lean->arena.size, reuse->arena.size, "forgetting the input saves nothing");
  cr_expect_lt(lean->arena.size, full->arena.size / 3, "arena %zu B, every value %zu B",
               lean->arena.size, full->arena.size);
  /* The session is that plan: the same bytes, and well under the plan keeping everything. */
  cr_expect_eq(dd_infer_bytes(s), dd_plan_bytes(lean), "session %zu B, lean plan %zu B",
               dd_infer_bytes(s), dd_plan_bytes(lean));
  cr_expect_lt(dd_infer_bytes(s), dd_plan_bytes(full));

  int64_t n = dd_shape_numel(&sh);
  float *x = malloc(sizeof(float) * (size_t)n);
  cr_assert(x);
  fill(x, n);
  memcpy(dd_plan_tensor(full, in)->data, x, sizeof(float) * (size_t)n);
  dd_plan_forward(full);
  for (int round = 0; round < 2; round++) { /* a second run on buffers the first overwrote */
    if (round == 0) { /* from the caller's buffer */
      cr_assert_eq(dd_infer_run(s, x, &err), 0, "%s", err.msg);
    } else { /* written into the session's own input buffer, which the first run reused */
      memcpy(dd_infer_input(s), x, sizeof(float) * (size_t)n);
      cr_assert_eq(dd_infer_run(s, NULL, &err), 0, "%s", err.msg);
    }
    for (int t = 0; t < n_targets; t++) {
      const dd_tensor *y = dd_infer_output(s, t), *ref = dd_plan_tensor(full, targets[t]);
      cr_assert(y && ref);
      cr_assert_eq(dd_tensor_numel(y), dd_tensor_numel(ref));
      cr_expect_eq(memcmp(y->data, ref->data, sizeof(float) * (size_t)dd_tensor_numel(y)), 0,
                   "'%s' differs from the plan keeping every value (round %d)", names[t],
                   round);
    }
  }
  free(x);
  dd_infer_free(s);
  dd_plan_free(lean);
  dd_plan_free(reuse);
  dd_plan_free(full);
  dd_model_free(m);
}

Test(lean, one_deep_target_within_the_liveness_bound, .timeout = 120) {
  const char *names[] = {"inception_4c/output"};
  check_lean(names, 1);
}

/* Targets that other nodes read: a Concat's input (never joined into the Concat's output),
 * a Conv's output before its ReLU (never overwritten in place, never folded), the input of a
 * max-pool, the model's output, and the input itself (a target, so not forgotten). */
Test(lean, targets_read_by_later_nodes_stay_intact, .timeout = 120) {
  const char *names[] = {"inception_3a/1x1", "conv2/3x3_reduce_pre_relu", "inception_3b/output",
                         "prob", "data"};
  check_lean(names, 5);
}
