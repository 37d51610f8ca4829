/* dream/graph.h - execution plans: a model run forward to chosen values at one input size,
 * and backward from those values to the input.
 *
 * A plan is built once per input shape: shapes are inferred, constant sub-graphs (the int64
 * shape arithmetic exporters emit) are evaluated, every buffer is allocated in one arena,
 * and only the nodes the targets need are scheduled.  Forward and backward then run without
 * allocating.
 */
#ifndef DREAM_GRAPH_H
#define DREAM_GRAPH_H

#include "dream/api.h"

#include "dream/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dd_plan dd_plan;

/* A graph input given to the plan: its value index and shape, and optionally its data when
 * it is to be treated as a constant (folded at plan time). */
typedef struct dd_binding {
  int value;
  dd_shape shape;
  const dd_tensor *constant;
} dd_binding;

/* Prepare backward: gradients flow from the targets to the first binding. */
#define DD_PLAN_GRAD 1u
/* Share memory between values (and between gradients) whose lifetimes do not meet, and let
 * in-place ops (Relu) overwrite their input: a fraction of the memory, and warmer caches.
 * Then only the inputs and the targets hold their values after forward, and only the first
 * binding and the targets have gradients (seed only the targets' after dd_plan_zero_grad);
 * other values and gradients are overwritten as the plan runs. */
#define DD_PLAN_REUSE 2u
/* With DD_PLAN_REUSE, chains of ops that one op computes are run as that op: a LayerNorm
 * written as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add runs as
 * LayerNormalization, a GELU written with Erf as Gelu -- when no intermediate value of the
 * chain is a target or read by another node.  Their intermediate values are then not
 * computed (dd_plan_tensor gives NULL), and dd_plan_node_runs says 0 for the chain's nodes
 * but the last, which runs the fused op.  This flag turns fusion off: every node runs as
 * the model writes it (the reference the fused plan is tested against). */
#define DD_PLAN_NO_FUSE 4u
/* bf16 mode: the convolutions' matrix products (forward and the data gradient; the weight
 * gradient stays float32) round their operands to bfloat16 -- 8 significant bits -- and sum
 * the products in float32, on the CPU's bf16 dot-product instructions (AVX512-BF16, or AMX
 * tiles).  Each
 * output is then within about 2^-7 of the sum of the magnitudes of its terms, where float32
 * is within about k * 2^-24.  Ignored (float32) on a CPU without them:
 * dd_precision_has_bf16() (dream/dream.h) says which. */
#define DD_PLAN_BF16 8u
/* With DD_PLAN_REUSE, the bound inputs need not keep their values after forward: their
 * memory goes to other values once their last reader has run, as any value's does.  Write
 * every input again before each forward (dd_infer does).  A forward-only plan then holds
 * only what is live at each step. */
#define DD_PLAN_FORGET_INPUTS 16u
/* fp32-exact: every kernel computes each output element by the same sequence of operations
 * wherever the element lies (no vector body against scalar tail, no blocked against edge
 * path, no Winograd tile position), so inputs that are equal give outputs that are bit-equal
 * and an exact tie at a max-pool or a Relu stays a tie, as in float64.  It costs speed: 3x3
 * convolutions take the direct path instead of Winograd's F(4x4, 3x3), whose outputs round
 * differently at each of a tile's 16 positions (bench/README.md has the figures).
 * A first layer (at most 4 input channels) sums in double.  Always used by
 * dd_input_gradient (grad), dd_infer (run, classify, audit), dd_vis_activations and
 * dd_vis_classify (activations, the Python module's run and classify) and dd_explain
 * (explain, audit), which all agree bit for bit; by the dream loop and dd_fv when
 * DD_PRECISION_FP32 is asked for (`--precision fp32`; auto keeps Winograd).  With
 * DD_PLAN_BF16 too, this flag wins: products in float32. */
#define DD_PLAN_EXACT 32u
/* Training: the model's float32 initializers (its weights) are parameters.  Each gets a
 * gradient buffer, dd_plan_grad(p, v), that backward accumulates into after
 * dd_plan_zero_grad (every gradient is zeroed).  The plan reads them from the model's own
 * memory at every forward, so a caller that updates them in place (dream/train.h) needs no
 * new plan; nodes whose inputs are all initializers run at each forward instead of being
 * folded.  Implies gradients (the first binding's too only with DD_PLAN_GRAD); not with
 * DD_PLAN_REUSE (DD_EARG). */
#define DD_PLAN_PARAMS 64u
/* Forward, backward and dd_plan_zero_grad run every op on the calling thread (no OpenMP
 * region is opened): for callers that run several plans side by side, one per thread, as
 * the trainer does with the chunks of a batch.  Results are the same bytes as without it
 * (the ops' splits never change a result). */
#define DD_PLAN_SERIAL 128u

/* Build a plan computing `targets` from `inputs`.  max_memory (0: none) caps the memory of
 * the plan's buffers: a plan that would need more fails with DD_ELIMIT, saying how much. */
DD_API int dd_plan_new(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                int n_targets, unsigned flags, size_t max_memory, dd_plan **out, dd_err *err);
/* As dd_plan_new, but in the buffers of `host` when they are large enough, each of the two
 * (the values' arena, the ops' workspace) on its own (else in buffers of its own, and then
 * max_memory caps them and the host's together, since both are held):
 * a sequence of plans for sizes up to the host's -- a dream's octaves -- then touches no fresh
 * memory (the kernel zeroes every new page at first touch, about 0.8 s per GB here).  The
 * plan's buffers are the host's: the two must never run interleaved (run one, then the other;
 * every run rewrites what it reads), and the host must outlive the plan. */
DD_API int dd_plan_new_within(dd_plan *host, const dd_model *m, const dd_binding *inputs, int n_inputs,
                       const int *targets, int n_targets, unsigned flags, size_t max_memory,
                       dd_plan **out, dd_err *err);
DD_API void dd_plan_free(dd_plan *p);

/* The bytes dd_plan_new would allocate for these arguments (dd_plan_bytes of the plan),
 * found by shape inference and laying out the arena without allocating it, and the shape
 * of each target in target_shapes (n_targets entries; may be NULL).  Fails as dd_plan_new
 * does, except that no limit applies. */
DD_API int dd_plan_measure(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                    int n_targets, unsigned flags, size_t *bytes, dd_shape *target_shapes,
                    dd_err *err);

/* The smallest image the model's data input (N x C x H x W, bound as 1 x C x H x W when N or
 * C is symbolic, C = 3 then) may have for `targets` to be computed (NULL or n_targets < 1:
 * the model's outputs), found by shape inference alone: nothing the size of a plan is
 * allocated.  A size that works is looked for among the declared size, 224 x 224 and the
 * squares of sides 1, 2, 4 ... 8192; *w x *h is then the smallest height that works at its
 * width, and the smallest width at that height: N x N for a convolutional network, whose
 * axes do not constrain each other.  Every size below is tried, so a network that takes only
 * one size (a classifier with a fixed Gemm) is answered with its smallest.  When none works,
 * the status and reason of 224 x 224's failure (DD_ESHAPE for a size that does not fit),
 * after "no input size up to 8192x8192 works"; DD_EUNSUPPORTED when the input is not 4-D.
 *
 * dd_plan_new uses it when shape inference fails: an image smaller than this fails with
 * DD_ESHAPE and "model.onnx: a 20x20 input is too small: 'pool3/3x3_s2' would have no
 * output; the smallest input this model accepts is 23x23 pixels" (for its targets). */
DD_API int dd_plan_min_input(const dd_model *m, const int *targets, int n_targets, int *w, int *h,
                      dd_err *err);

/* The tensor holding `value` in this plan (inputs are written here before forward), or NULL
 * when the plan does not compute it.  Owned by the plan. */
DD_API dd_tensor *dd_plan_tensor(dd_plan *p, int value);
/* The gradient buffer of `value`, or NULL when no gradient reaches it.  Seed the targets'
 * gradients here (after dd_plan_zero_grad), then call dd_plan_backward. */
DD_API dd_tensor *dd_plan_grad(dd_plan *p, int value);

/* Runs the plan forward from its bound inputs.  A plan without gradients, on more than one
 * thread with the AVX-512 kernels, checks every 2 s whether its threads share a cache; while
 * they do not, it times two forwards on one thread and two on all, and runs on the faster
 * (the outputs are the same floats either way). */
DD_API void dd_plan_forward(dd_plan *p);
DD_API void dd_plan_zero_grad(dd_plan *p);
/* Propagates the seeded gradients to the first binding: dd_plan_grad(p, input). */
DD_API void dd_plan_backward(dd_plan *p);

/* Profiling: when `seconds` is not NULL (2 * dd_model_num_nodes doubles), forward adds each
 * node's wall time to seconds[2 * node] and backward to seconds[2 * node + 1].  NULL: off. */
DD_API void dd_plan_set_profile(dd_plan *p, double *seconds);

/* Bytes of all buffers the plan holds: its values, gradients and workspace, and the weight
 * matrices a forward-only plan (no DD_PLAN_GRAD, not within a host) packed once for its
 * products: a linear layer on at most 256 tokens, on CPUs whose kernels read packs, only in
 * what max_memory leaves after the rest.  dd_plan_measure leaves those packs out: it gives
 * what the plan needs. */
DD_API size_t dd_plan_bytes(const dd_plan *p);
/* FLOPs of one forward of `node` in this plan (0 when it does not run at run time). */
DD_API int64_t dd_plan_node_flops(const dd_plan *p, int node);
/* 1 when `node` runs at run time (it is needed and not constant-folded). */
DD_API int dd_plan_node_runs(const dd_plan *p, int node);
/* Parameters (initializer elements) `node` reads. */
DD_API int64_t dd_model_node_params(const dd_model *m, int node);

#ifdef __cplusplus
}
#endif

#endif
