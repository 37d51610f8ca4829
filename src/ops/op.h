/* The operator interface.  Each operator family lives in one file of src/ops/ with its
 * forward and backward side by side, and exports `const dd_op dd_op_<OpType>`; the list of
 * operators is src/ops/ops.def, from which the lookup table is generated.
 *
 * Life of a node:
 *   init     once at load: validate attributes (dd_node_check_attrs), parse them into
 *            node->params.  Errors name what is unsupported.
 *   infer    once per plan (per input size): from the input shapes -- and the input data
 *            when it is constant, in[i]->data != NULL -- set out[i]->dtype and ->shape, and
 *            *scratch to the workspace bytes forward and backward need (0 for none).
 *            in[i] is NULL for an omitted optional input, out[k] NULL for an output the
 *            graph does not name (skip it, in infer and forward alike).
 *   forward  compute out from in.  Never fails: everything that can fail was checked by infer.
 *   backward ACCUMULATE (+=) into din[i] the gradient of the objective w.r.t. in[i], given
 *            dout (the gradient w.r.t. each output, NULL when no gradient reaches it).  din[i]
 *            is NULL for inputs that need no gradient (weights, shapes).  NULL backward: the
 *            op is not differentiable, and a plan that needs its gradient is refused.
 *   flops    optional: multiply-adds x2 of one forward, for `dream layers` and the benchmark.
 *   forward_call, backward_call
 *            optional: forward and backward with the plan's hints for one call (dd_op_call:
 *            a Relu folded into the output, gradients handed over fresh, the plan's
 *            DD_PLAN_EXACT).  The executor calls them through dd_op_forward and
 *            dd_op_backward; the hints never live in a tensor.  Under `exact` an op computes
 *            each output element by the same sequence of operations wherever it lies; ops
 *            whose only paths already do (all but Conv's Winograd) ignore it.
 *
 * Kernels may use OpenMP for the outer loops; they never allocate: scratch is given.
 */
#ifndef DREAM_OP_H
#define DREAM_OP_H

#include "dream/error.h"
#include "dream/tensor.h"
#include "model_internal.h"

/* The output depends on the input's shape only (Shape, Size): folded at plan time. */
#define DD_OP_SHAPE_ONLY 1u
/* What backward reads of the forward tensors, so that plans made with DD_PLAN_REUSE can give
 * the memory of the others to later values.  Without these flags backward may read all of
 * them.  Inputs after the first (weights and the like) always count as read. */
#define DD_OP_BWD_NO_OUT 2u /* backward never reads the outputs' data */
#define DD_OP_BWD_NO_X 4u   /* ... nor in[0]'s, unless another input's gradient is asked for */
/* Forward is correct with out[0] in the memory of in[0] (same size), and so is backward unless
 * it reads in[0] (no DD_OP_BWD_NO_X): the planner runs a node in place only as the last reader
 * of in[0], and a backward that reads it is a later reader, so such ops run in place in plans
 * without their gradient (a forward pass, or a branch no gradient goes through). */
#define DD_OP_INPLACE 8u
/* Backward is correct with din[0] in the memory of dout[0]: the planner may do so when this
 * node writes the first gradient of in[0]; backward sees din[0]->data == dout[0]->data and
 * must then overwrite it (dx = the gradient) instead of accumulating. */
#define DD_OP_INPLACE_GRAD 32u
/* out[0] is in[0]'s bytes unchanged (Identity, Reshape, ...): out[0] may simply point at
 * in[0]'s data, and forward is skipped then.  Only with no other output. */
#define DD_OP_ALIAS 16u
/* out[0] is the inputs end to end along one axis (Concat): when every dim before that axis is
 * 1, the planner may place the inputs inside out[0]'s memory (and their gradients inside its
 * gradient) and skip forward (and backward). */
#define DD_OP_CONCAT 64u
/* Backward (backward_call) handles a din[j] handed over fresh (bit j of call->fresh): its
 * data is garbage, and backward must write every element of it (= its gradient, not +=), so
 * the planner need not zero it first.  Given only to the first node to write a gradient, when
 * that input appears once among its inputs and shares no memory with its other gradients. */
#define DD_OP_GRAD_FRESH 128u
/* The op is y = max(0, x) elementwise (Relu). */
#define DD_OP_RELU 256u
/* Forward (forward_call) applies max(0, .) to out[0] when call->relu_out is set: the planner
 * then skips the Relu that runs in place on out[0] (out[0] read by that Relu alone, and no
 * target). */
#define DD_OP_FOLD_RELU 512u
/* The op is y = x * sigmoid(x) elementwise (the planner's Silu, ops/activation.c), or
 * HardSwish (ops/unary.c). */
#define DD_OP_SILU 1024u
#define DD_OP_HARDSWISH 4096u
/* The op is Gelu: foldable where the node's form is the exact one (approximate "none"). */
#define DD_OP_GELU 8192u
/* Forward (forward_call) applies call->act_out (SiLU, HardSwish or exact GELU, with the floats
 * of their ops: ops/act.h) to out[0]: the planner then skips that node, run in place on
 * out[0] (out[0] read by it alone, and no target; so only where no gradient goes through). */
#define DD_OP_FOLD_ACT 2048u
/* Forward (forward_call) adds call->add_in (a float32 value of out[0]'s shape) to out[0]
 * once out[0] is complete, each element y + r as Add computes it: the planner then skips the
 * Add(y, r) that runs in place on out[0] (out[0] read by that Add alone, no target, no
 * gradient through it, r computed before this node). */
#define DD_OP_FOLD_ADD 16384u

/* The sums of a convolution's output planes, which a GlobalAveragePool reading that output
 * takes instead of summing the planes again (plan_pool_sums, plan/plan.h): the convolution
 * writes them as its output leaves the registers, when its path can (the depthwise lanes,
 * ops/depthwise.h), and says so in `ok`; the pool sums the planes itself otherwise. */
typedef struct dd_plane_sums {
  int ok;         /* the convolution wrote `sum` in this forward */
  double *sum;    /* (images x channels) each output plane's sum */
  double *part;   /* (nparts) the convolution's partial sums, per band of rows */
  int64_t nparts;
} dd_plane_sums;

/* What the plan tells one call of forward or backward beyond its tensors: hints that hold
 * for this call only, so they travel with the call and not with the tensors.  All zero: no
 * hint, the plain forward and backward. */
typedef struct dd_op_call {
  int relu_out;   /* forward (DD_OP_FOLD_RELU): write max(0, y) to out[0] */
  uint64_t fresh; /* backward (DD_OP_GRAD_FRESH): bit j, din[j] is handed over fresh */
  int bf16;       /* the plan is in bf16 mode (DD_PLAN_BF16): matrix products may round their
                     operands to bfloat16 and sum in float32 (ops/bf16.h) */
  int exact;      /* the plan's DD_PLAN_EXACT: every output element by the same sequence of
                   * operations wherever it lies (no Winograd), so ties stay ties */
  int act_out;    /* forward (DD_OP_FOLD_ACT): DD_ACT_SILU, _HARDSWISH or _GELU (ops/act.h)
                     of y to out[0], 0 none */
  const void *prep; /* forward: what the plan prepared once for this node (its weights packed
                       by plan_pack, plan/plan.h), or NULL */
  const float *add_in; /* forward (DD_OP_FOLD_ADD): add this to out[0] at the end, or NULL */
  dd_plane_sums *sums; /* forward: a Conv writes its planes' sums here when it can; the
                          GlobalAveragePool reading its output takes them (or NULL) */
} dd_op_call;

/* The op tables of src/ops/ are positional initializers that end at `flags`: the hooks after
 * it are optional, and left out means NULL. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef struct dd_op {
  const char *name;
  int (*init)(dd_node *node, dd_err *err);
  int (*infer)(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
               size_t *scratch, dd_err *err);
  void (*forward)(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                  void *scratch);
  void (*backward)(const dd_node *node, const dd_tensor *const *in, const dd_tensor *const *out,
                   const dd_tensor *const *dout, dd_tensor *const *din, void *scratch);
  int64_t (*flops)(const dd_node *node, const dd_tensor *const *in,
                   const dd_tensor *const *out);
  unsigned flags;
  /* Ops that take hints (DD_OP_FOLD_RELU, DD_OP_GRAD_FRESH): forward and backward with the
   * hints of this call; forward and backward above are these with none.  NULL otherwise. */
  void (*forward_call)(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       void *scratch, const dd_op_call *call);
  void (*backward_call)(const dd_node *node, const dd_tensor *const *in,
                        const dd_tensor *const *out, const dd_tensor *const *dout,
                        dd_tensor *const *din, void *scratch, const dd_op_call *call);
} dd_op;

/* One call of node's forward (backward) with the plan's hints: through forward_call
 * (backward_call) when the op takes hints, else the plain one, which needs none. */
static inline void dd_op_forward(const dd_node *node, const dd_tensor *const *in,
                                 dd_tensor *const *out, void *scratch, const dd_op_call *call) {
  if (node->op->forward_call) node->op->forward_call(node, in, out, scratch, call);
  else node->op->forward(node, in, out, scratch);
}
static inline void dd_op_backward(const dd_node *node, const dd_tensor *const *in,
                                  const dd_tensor *const *out, const dd_tensor *const *dout,
                                  dd_tensor *const *din, void *scratch, const dd_op_call *call) {
  if (node->op->backward_call) node->op->backward_call(node, in, out, dout, din, scratch, call);
  else node->op->backward(node, in, out, dout, din, scratch);
}

/* The op called `op_type` in the default ONNX domain, or NULL. */
const dd_op *dd_op_find(const char *op_type);
/* Names of all supported ops, NULL-terminated. */
const char *const *dd_op_names(void);

#endif
