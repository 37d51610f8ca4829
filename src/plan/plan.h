/* plan/plan.h - the plan's insides, shared by the planner (plan/plan.c), its memory planning
 * (plan/memory.c) and the executor (graph.c).
 *
 * Planning runs in phases (plan/plan.c):
 *   1. values known before any node runs: the file's constants and the bound inputs;
 *   2. needed nodes: walked back from the targets;
 *   3. shape inference and constant folding, in node order: the order of the nodes that run,
 *      their flops and the scratch they need;
 *   3b. fusion (plan/fuse.c), with DD_PLAN_REUSE unless DD_PLAN_NO_FUSE: chains of ops that
 *      one op computes (a decomposed LayerNorm, GELU) replaced by that op, their
 *      intermediate values dropped;
 *   4. memory layout (plan/memory.c): every runtime value and gradient reserved in the arena
 *      (plan/arena.h), shared by lifetime under DD_PLAN_REUSE, and the executor's schedule
 *      (skipped nodes, folded Relus and residual Adds, gradients zeroed or handed over
 *      fresh);
 *   5. arena binding: one allocation, or the host plan's memory, and every tensor's data
 *      pointed into it;
 *   6. weights packed once (plan/fuse.c, plan_pack): a fused MatMulBias's constant B with few
 *      rows, in forward-only plans, in the memory the cap leaves.
 */
#ifndef DREAM_PLAN_PLAN_H
#define DREAM_PLAN_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "dream/graph.h"
#include "model_internal.h"
#include "plan/arena.h"

/* A node the plan made (fusion): it runs in place of a chain of the model's nodes. */
typedef struct plan_fused {
  dd_node node;
  int in[4], out[1];
  dd_attr attrs[2];
  char name[160];
  int last; /* the model node whose place it takes (and whose output it writes) */
} plan_fused;

struct dd_plan {
  const dd_model *m;
  unsigned flags; /* DD_PLAN_* as given */
  int nv, nn;
  dd_tensor *val;         /* (nv) shape, dtype, data (arena, constant or folded) */
  dd_tensor *grad;        /* (nv) gradient buffer, data NULL when none */
  unsigned char *folded;  /* (nv) plan-owned constant data (free it) */
  int *order, n_order;    /* (nn) nodes that run, topological: model node indices */
  const dd_node **onode;  /* (nn) the node run at each order index: the model's node, or the
                             fused node that replaces a chain ending at it */
  plan_fused *fused;      /* the fused nodes, n_fused of them (plan/fuse.c) */
  int n_fused;
  size_t packed;          /* bytes of the weights packed once for the plan (plan_pack) */
  void **prep;            /* (n_order) or NULL: what plan_pack made for the node at each order
                             index (its packed weights), handed to it as dd_op_call.prep */
  struct dd_plane_sums **sums; /* (n_order) or NULL: the plane sums a depthwise Conv writes for the
                             GlobalAveragePool that reads its output (dd_op_call.sums, both
                             nodes; plan_pool_sums), owned by the Conv's index */
  int64_t *flops;         /* (nn) */
  unsigned char *runs;    /* (nn) */
  int grad_input;
  int bf16; /* DD_PLAN_BF16 was asked for: each call carries dd_op_call.bf16 */
  dd_arena arena;   /* every runtime value and gradient */
  dd_arena scratch; /* the ops' workspace, one buffer for all */
  double *profile; /* NULL, or 2 per node: forward and backward seconds (caller's) */
  /* The executor's schedule, per order index; DD_PLAN_REUSE only (NULL otherwise): */
  unsigned char *skip;     /* (n_order) forward skipped, the output aliases the input */
  unsigned char *bskip;    /* (n_order) backward skipped (a Concat's gradients alias) */
  unsigned char *relu_out; /* (n_order) the node applies the activation after it (which is
                              skipped) to its output: DD_ACT_RELU, _SILU or _HARDSWISH
                              (ops/act.h; DD_OP_FOLD_RELU, DD_OP_FOLD_ACT) */
  int *add_in;             /* (n_order) the value the node adds to its output after everything
                              else (the Add of it, skipped), -1 none (DD_OP_FOLD_ADD) */
  int *zstart, *zlist; /* gradients zeroed before the backward of order index o:
                          zlist[zstart[o] .. zstart[o + 1]); -1 - v: v is handed over fresh */
  int *seeds, n_seeds; /* gradients dd_plan_zero_grad clears: the targets' */
  /* Forward-only plans on more than one thread, when the threads do not share a cache
   * (src/graph.c, forward_on_one_thread): the fastest forward seen on one thread [1] and on
   * all [0] since the last exploration, and how many of each were timed. */
  struct {
    double probed;   /* dd_now_seconds() of the last probe, 0 before the first */
    double explored; /* of the last time both were timed afresh */
    int apart;       /* the probe's round trip was over SPLIT_NS */
    int tried[2];
    double best[2];
  } threads;
};

/* What memory planning needs to know about the plan being built, and what it gives back. */
typedef struct plan_build {
  const int *targets;
  int n_targets;
  unsigned flags;
  const unsigned char *known, *isconst, *onpath; /* (nv) */
  size_t *offset, *goffset; /* (nv) out: arena offsets of each value and of its gradient */
  unsigned char *hasgrad;   /* (nv) out: the value has a gradient buffer */
  const unsigned char *param; /* (nv) a trainable initializer (DD_PLAN_PARAMS): constant data,
                                 but a gradient of its own */
} plan_build;

/* Bytes of t's data; -1 when its shape is invalid or too large. */
int plan_tensor_bytes(const dd_tensor *t, size_t *bytes);

/* Phase 3b: replaces the chains of p's order that one op computes by that op (plan/fuse.c):
 * values that leave the plan get known[v] = 0; *scratch grows to the fused ops' workspace.
 * Returns DD_OK or DD_ENOMEM. */
int plan_fuse(dd_plan *p, unsigned char *known, const unsigned char *isconst,
              const int *targets, int n_targets, size_t *scratch, dd_err *err);
/* Phase 6, in forward-only plans with memory of their own: constant weight matrices packed
 * once into the layout of the products' kernel (dd_sgemm_pack) into p->prep, as long as
 * p->packed, their bytes, stays within `room`: a fused MatMulBias's B and a Gemm's op(B)
 * with few rows (ops/gemm.c), a 1x1 convolution's W^T on a small plane (ops/conv.c).
 * Returns DD_OK or DD_ENOMEM. */
int plan_pack(dd_plan *p, const unsigned char *isconst, size_t room, dd_err *err);
/* In forward-only plans after plan_pack: a GlobalAveragePool that reads the output of a
 * depthwise Conv (directly, or through the activation folded into it) takes the planes' sums
 * the Conv's lanes write as they store them, instead of reading the planes again: p->sums of
 * both.  Not where the Conv also adds a residual (DD_OP_FOLD_ADD).  Returns DD_OK or
 * DD_ENOMEM. */
int plan_pool_sums(dd_plan *p, dd_err *err);
/* Frees p's fused nodes (with their params). */
void plan_fused_free(dd_plan *p);

/* Phase 4: reserves every runtime value (and gradient, with DD_PLAN_GRAD) of p in `arena`,
 * places them and fills b's offsets; with DD_PLAN_REUSE also p's schedule.  Returns the
 * arena's size, or SIZE_MAX when out of memory. */
size_t plan_memory(dd_plan *p, plan_build *b, dd_arena *arena);

#endif
