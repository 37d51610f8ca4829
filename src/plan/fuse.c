/* Fusion (phase 3b of plan/plan.h): chains of elementwise ops that exporters write for one
 * layer are replaced by the one op that computes the same thing, in one pass over the data,
 * without the chain's intermediate values.  Recognized, as torch 1.13 writes them at opset 13:
 *
 *   LayerNorm  m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2));
 *              y = Add(Mul(Div(d, Sqrt(Add(v, eps))), scale), bias)
 *              -> LayerNormalization(x, scale, bias; axis, epsilon = eps), also without the
 *              bias Add; the means reduce the trailing dims of x from `axis` on, keepdims.
 *   GELU       y = Mul(Mul(x, Add(Erf(Div(x, sqrt(2))), 1)), 0.5)  -> Gelu(x) (exact)
 *   SiLU       y = Mul(x, Sigmoid(x))  -> the planner's own Silu (ops/activation.c; no ONNX
 *              op), as torch writes nn.SiLU (EfficientNet's activations)
 *   SE scale   y = Conv(Mul(x, s), W, b), W 1x1 (stride 1, no padding, one group), s one
 *              value per image and channel  -> the planner's own ConvScaled (ops/conv.c),
 *              the weights scaled instead of x; in plans without gradients only
 *   Linear     y = Add(MatMul(a, w), b), b one value per column  -> the planner's own
 *              MatMulBias (ops/gemm.c), as torch writes nn.Linear on tokens (ViT, Swin,
 *              ConvNeXt): the products start from b
 *
 * Add and Mul match in either operand order.  A chain is fused only when every node of it
 * runs at run time, every intermediate value is read by the chain alone and is no target,
 * the constants are exactly those of the formula (2, sqrt(2) as float32, 1, 0.5; eps is
 * taken from the graph), and the fused op accepts the shapes, with the chain's output shape.
 * The fused node takes the place of the chain's last node in the order (its inputs are all
 * computed by then); the intermediates are dropped from the plan (no memory, and
 * dd_plan_tensor gives NULL for them).  The matching walks from the chain's output back
 * through producers, so it needs no consumer lists: read counts and targets are enough. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"
#include "plan/plan.h"

typedef struct fuse_ctx {
  dd_plan *p;
  unsigned char *known;
  const unsigned char *isconst;
  int *nread;             /* (nv) reads by nodes that run */
  unsigned char *target;  /* (nv) */
  unsigned char *used;    /* (nn) the node is in a fused chain already */
  int *pos;               /* (nn) the node's index in p->order, -1 when it does not run */
} fuse_ctx;

/* The running node that produces v and has type `op`, not yet fused; -1 otherwise. */
static int producer(const fuse_ctx *c, int v, const char *op) {
  if (v < 0) return -1;
  int i = c->p->m->values[v].producer;
  if (i < 0 || c->pos[i] < 0 || c->used[i]) return -1;
  const dd_node *n = &c->p->m->nodes[i];
  if (strcmp(n->op_type, op) || n->n_out != 1 || n->out[0] != v) return -1;
  return i;
}

static const dd_node *node(const fuse_ctx *c, int i) { return &c->p->m->nodes[i]; }

/* v is a constant float32 with one element equal to `want` (NAN: any value, into *got). */
static int const_scalar(const fuse_ctx *c, int v, float want, float *got) {
  if (v < 0 || !c->isconst[v]) return 0;
  const dd_tensor *t = &c->p->val[v];
  if (t->dtype != DD_F32 || !t->data || dd_tensor_numel(t) != 1) return 0;
  float f = dd_f32(t)[0];
  if (got) *got = f;
  return isnan(want) || f == want;
}

/* Binary node i's inputs as (a, b) with b the operand for which `is_b` holds: tries both
 * orders when `commutative`.  Returns the other operand a, or -2 when neither order fits. */
typedef int (*operand_test)(const fuse_ctx *c, int v, void *arg);

static int other_operand(const fuse_ctx *c, int i, int commutative, operand_test is_b,
                         void *arg) {
  const dd_node *n = node(c, i);
  if (n->n_in != 2) return -2;
  if (is_b(c, n->in[1], arg)) return n->in[0];
  if (commutative && is_b(c, n->in[0], arg)) return n->in[1];
  return -2;
}

static int is_scalar_arg(const fuse_ctx *c, int v, void *arg) {
  return const_scalar(c, v, *(const float *)arg, NULL);
}

/* An intermediate value: read only `reads` times (by the chain) and no target. */
static int inner(const fuse_ctx *c, int v, int reads) {
  return v >= 0 && c->nread[v] == reads && !c->target[v];
}

/* ---- the fused nodes ---- */

/* A new fused node of `op` at the place of the chain's last node, in the array plan_fuse
 * sized for every chain the order can hold. */
static plan_fused *new_fused(dd_plan *p, const dd_op *op, int last) {
  plan_fused *f = &p->fused[p->n_fused];
  memset(f, 0, sizeof *f);
  const dd_node *ln = &p->m->nodes[last];
  f->node.op = op;
  f->node.op_type = (char *)op->name;
  f->node.name = f->name;
  snprintf(f->name, sizeof f->name, "%s (fused into %s)", ln->name, op->name);
  f->node.in = f->in;
  f->node.out = f->out;
  f->node.attrs = f->attrs;
  f->node.opset = 0;
  f->last = last;
  return f;
}

/* Makes f the node that runs: init, then infer against the chain's output shape.  Returns 1
 * when the fused op takes it (f is then counted in p->n_fused), 0 when it does not (f is
 * dropped), -1 when out of memory. */
static int adopt(fuse_ctx *c, plan_fused *f, size_t *scratch) {
  dd_plan *p = c->p;
  dd_err err;
  if (f->node.op->init && f->node.op->init(&f->node, &err)) {
    free(f->node.params);
    return err.code == DD_ENOMEM ? -1 : 0;
  }
  const dd_tensor *in[4];
  for (int j = 0; j < f->node.n_in; j++) in[j] = f->in[j] >= 0 ? &p->val[f->in[j]] : NULL;
  dd_tensor y = {0}, *outs[1] = {&y};
  size_t need = 0;
  const dd_tensor *want = &p->val[f->out[0]];
  if (f->node.op->infer(&f->node, in, outs, &need, &err) || y.dtype != want->dtype ||
      !dd_shape_eq(&y.shape, &want->shape)) {
    free(f->node.params);
    f->node.params = NULL;
    return 0;
  }
  if (need > *scratch) *scratch = need;
  p->n_fused++;
  return 1;
}

/* The chain's nodes leave the order, its intermediates the plan; the fused node runs at the
 * last node's place, with the flops of one forward. */
static void replace_chain(fuse_ctx *c, plan_fused *f, const int *nodes, int n,
                          const int *inner_values, int n_inner) {
  dd_plan *p = c->p;
  for (int k = 0; k < n; k++) {
    c->used[nodes[k]] = 1;
    p->runs[nodes[k]] = 0;
    p->flops[nodes[k]] = 0;
    if (nodes[k] != f->last) p->onode[c->pos[nodes[k]]] = NULL;
  }
  for (int k = 0; k < n_inner; k++) c->known[inner_values[k]] = 0;
  p->onode[c->pos[f->last]] = &f->node;
  p->runs[f->last] = 1;
  const dd_tensor *in[4];
  for (int j = 0; j < f->node.n_in; j++) in[j] = f->in[j] >= 0 ? &p->val[f->in[j]] : NULL;
  const dd_tensor *outs[1] = {&p->val[f->out[0]]};
  p->flops[f->last] = f->node.op->flops ? f->node.op->flops(&f->node, in, outs) : 0;
}

/* The two-node chain `first` -> `last` (first's output `mid` read by last alone) replaced by
 * one node of `op` with the n_in inputs `ins` and last's output: 1 fused, 0 when op does not
 * take it, -1 out of memory. */
static int fuse_pair(fuse_ctx *c, const dd_op *op, int first, int last, int mid, const int *ins,
                     int n_in, size_t *scratch) {
  plan_fused *f = new_fused(c->p, op, last);
  f->node.n_in = n_in;
  f->node.n_out = 1;
  for (int j = 0; j < n_in; j++) f->in[j] = ins[j];
  f->out[0] = node(c, last)->out[0];
  int rc = adopt(c, f, scratch);
  if (rc <= 0) return rc;
  int nodes[] = {first, last};
  replace_chain(c, f, nodes, 2, &mid, 1);
  return 1;
}

/* ---- LayerNorm ---- */

/* The axis from which ReduceMean's output `m` (keepdims) reduces x: dims of x larger than 1
 * are reduced exactly from there on (dims of 1 are the same either way).  -1 when the
 * reduction is not of trailing dims, or reduces nothing. */
static int trailing_axis(const dd_shape *x, const dd_shape *m) {
  if (x->ndim != m->ndim || x->ndim < 1) return -1;
  int axis = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (m->d[i] != x->d[i] && m->d[i] != 1) return -1;
    if (x->d[i] > 1 && m->d[i] == x->d[i]) axis = i + 1; /* kept */
  }
  for (int i = axis; i < x->ndim; i++)
    if (x->d[i] > 1 && m->d[i] != 1) return -1;
  return axis < x->ndim ? axis : -1;
}

/* The chain ending at node `last` (the bias Add when `with_bias`, else the scale Mul), with
 * the operand orders `order` (bit 0: the bias Add's, bit 1: the scale Mul's).  Returns 1 when
 * fused, 0 when it does not match, -1 when out of memory. */
static int fuse_layernorm_as(fuse_ctx *c, int last, int with_bias, int order, size_t *scratch) {
  dd_plan *p = c->p;
  int iadd = -1, imul = last, bias = -1, mulout = -1;
  if (with_bias) {
    iadd = last;
    const dd_node *a = node(c, iadd);
    if (a->n_in != 2) return 0;
    mulout = a->in[order & 1];
    bias = a->in[1 - (order & 1)];
    imul = producer(c, mulout, "Mul");
    if (imul < 0 || !inner(c, mulout, 1)) return 0;
  }
  const dd_node *mu = node(c, imul);
  if (mu->n_in != 2) return 0;
  int divout = mu->in[(order >> 1) & 1], scale = mu->in[1 - ((order >> 1) & 1)];
  int idiv = producer(c, divout, "Div");
  if (idiv < 0 || !inner(c, divout, 1) || node(c, idiv)->n_in != 2) return 0;
  const dd_node *dv = node(c, idiv);
  int dout = dv->in[0], qout = dv->in[1];
  int isub = producer(c, dout, "Sub"), isqrt = producer(c, qout, "Sqrt");
  if (isub < 0 || isqrt < 0 || !inner(c, dout, 2) || !inner(c, qout, 1)) return 0;
  if (node(c, isub)->n_in != 2) return 0;
  int x = node(c, isub)->in[0], r1out = node(c, isub)->in[1];
  int ir1 = producer(c, r1out, "ReduceMean");
  if (ir1 < 0 || node(c, ir1)->in[0] != x || !inner(c, r1out, 1)) return 0;
  int aout = node(c, isqrt)->in[0];
  int iaddeps = producer(c, aout, "Add");
  if (iaddeps < 0 || !inner(c, aout, 1)) return 0;
  float any = NAN, eps = NAN;
  int r2out = other_operand(c, iaddeps, 1, is_scalar_arg, &any);
  if (r2out < 0) return 0;
  const dd_node *ae = node(c, iaddeps);
  const_scalar(c, ae->in[0] == r2out ? ae->in[1] : ae->in[0], NAN, &eps);
  if (!(eps >= 0.f)) return 0;
  int ir2 = producer(c, r2out, "ReduceMean");
  if (ir2 < 0 || !inner(c, r2out, 1)) return 0;
  int powout = node(c, ir2)->in[0];
  int ipow = producer(c, powout, "Pow");
  if (ipow < 0 || !inner(c, powout, 1)) return 0;
  const dd_node *pw = node(c, ipow);
  if (pw->n_in != 2 || pw->in[0] != dout || !const_scalar(c, pw->in[1], 2.f, NULL)) return 0;
  /* shapes: the means reduce the same trailing dims of x, every step keeps x's shape */
  const dd_shape *xs = &p->val[x].shape;
  int axis = trailing_axis(xs, &p->val[r1out].shape);
  if (axis < 0 || !dd_shape_eq(&p->val[r1out].shape, &p->val[r2out].shape) ||
      !dd_shape_eq(&p->val[dout].shape, xs) || !dd_shape_eq(&p->val[powout].shape, xs) ||
      !dd_shape_eq(&p->val[aout].shape, &p->val[r1out].shape) || p->val[x].dtype != DD_F32 ||
      dd_shape_numel(xs) == 0)
    return 0;

  const dd_op *op = dd_op_find("LayerNormalization");
  if (!op) return 0;
  plan_fused *f = new_fused(p, op, last);
  f->node.n_in = with_bias ? 3 : 2;
  f->node.n_out = 1;
  f->in[0] = x;
  f->in[1] = scale;
  f->in[2] = bias;
  f->out[0] = node(c, last)->out[0];
  f->attrs[0] = (dd_attr){.name = (char *)"axis", .type = DD_ATTR_INT, .i = axis};
  f->attrs[1] = (dd_attr){.name = (char *)"epsilon", .type = DD_ATTR_FLOAT, .f = eps};
  f->node.n_attr = 2;
  int rc = adopt(c, f, scratch);
  if (rc <= 0) return rc;
  int nodes[] = {ir1, isub, ipow, ir2, iaddeps, isqrt, idiv, imul, iadd};
  int vals[] = {r1out, dout, powout, r2out, aout, qout, divout, mulout};
  replace_chain(c, f, nodes, with_bias ? 9 : 8, vals, with_bias ? 8 : 7);
  return 1;
}

static int fuse_layernorm(fuse_ctx *c, int last, int with_bias, size_t *scratch) {
  int r = 0;
  for (int order = 0; order < (with_bias ? 4 : 2) && !r; order++)
    r = fuse_layernorm_as(c, last, with_bias, with_bias ? order : order << 1, scratch);
  return r;
}

/* ---- GELU ---- */

/* The chain ending at the Mul by 0.5 `last`, x the operand `xk` of the Mul by (1 + erf):
 * 1 fused, 0 no match, -1 out of memory. */
static int fuse_gelu_as(fuse_ctx *c, int last, int xk, size_t *scratch) {
  dd_plan *p = c->p;
  float half = 0.5f, one = 1.f, sqrt2 = (float)1.41421356237309504880; /* sqrt(2) */
  int m1out = other_operand(c, last, 1, is_scalar_arg, &half);
  int im1 = producer(c, m1out, "Mul");
  if (im1 < 0 || !inner(c, m1out, 1) || node(c, im1)->n_in != 2) return 0;
  const dd_node *m1 = node(c, im1);
  int x = m1->in[xk], addout = m1->in[1 - xk];
  int iadd = producer(c, addout, "Add");
  if (iadd < 0 || !inner(c, addout, 1)) return 0;
  int erfout = other_operand(c, iadd, 1, is_scalar_arg, &one);
  int ierf = producer(c, erfout, "Erf");
  if (ierf < 0 || !inner(c, erfout, 1)) return 0;
  int divout = node(c, ierf)->in[0];
  int idiv = producer(c, divout, "Div");
  if (idiv < 0 || !inner(c, divout, 1)) return 0;
  const dd_node *dv = node(c, idiv);
  if (dv->n_in != 2 || dv->in[0] != x || !const_scalar(c, dv->in[1], sqrt2, NULL)) return 0;
  const dd_shape *xs = &p->val[x].shape;
  if (p->val[x].dtype != DD_F32 || !dd_shape_eq(&p->val[divout].shape, xs) ||
      !dd_shape_eq(&p->val[m1out].shape, xs))
    return 0;

  const dd_op *op = dd_op_find("Gelu");
  if (!op) return 0;
  plan_fused *f = new_fused(p, op, last);
  f->node.n_in = 1;
  f->node.n_out = 1;
  f->in[0] = x;
  f->out[0] = node(c, last)->out[0];
  int rc = adopt(c, f, scratch);
  if (rc <= 0) return rc;
  int nodes[] = {idiv, ierf, iadd, im1, last};
  int vals[] = {divout, erfout, addout, m1out};
  replace_chain(c, f, nodes, 5, vals, 4);
  return 1;
}

static int fuse_gelu(fuse_ctx *c, int last, size_t *scratch) {
  int r = fuse_gelu_as(c, last, 0, scratch);
  return r ? r : fuse_gelu_as(c, last, 1, scratch);
}

/* ---- SiLU ---- */

/* Not in ops.def (no ONNX op): ops/activation.c. */
extern const dd_op dd_op_FusedSilu;

/* y = Mul(x, Sigmoid(x)) ending at `last`, in either operand order: 1 fused, 0 no match, -1
 * out of memory. */
static int fuse_silu(fuse_ctx *c, int last, size_t *scratch) {
  dd_plan *p = c->p;
  const dd_node *mul = node(c, last);
  if (mul->n_in != 2 || mul->n_out != 1) return 0;
  for (int k = 0; k < 2; k++) {
    int sv = mul->in[k], x = mul->in[1 - k];
    int isig = producer(c, sv, "Sigmoid");
    if (x < 0 || isig < 0 || !inner(c, sv, 1) || node(c, isig)->n_in != 1 ||
        node(c, isig)->in[0] != x)
      continue;
    if (p->val[x].dtype != DD_F32 || !dd_shape_eq(&p->val[x].shape, &p->val[mul->out[0]].shape))
      continue;
    return fuse_pair(c, &dd_op_FusedSilu, isig, last, sv, &x, 1, scratch);
  }
  return 0;
}

/* ---- MatMul + bias ---- */

/* Not in ops.def (no ONNX op): ops/gemm.c. */
extern const dd_op dd_op_FusedMatMulBias;
size_t dd_matmul_bias_pack_bytes(const dd_node *node, const dd_tensor *a, const dd_tensor *b);
float *dd_matmul_bias_pack(const dd_node *node, const dd_tensor *a, const dd_tensor *b,
                           int parallel);
extern const dd_op dd_op_Gemm;
size_t dd_gemm_pack_bytes(const dd_node *node, const dd_tensor *const *in);
float *dd_gemm_pack(const dd_node *node, const dd_tensor *const *in, int parallel);
/* ops/conv.c */
extern const dd_op dd_op_Conv;
size_t dd_conv_pack_bytes(const dd_node *node, const dd_tensor *const *in);
float *dd_conv_pack(const dd_node *node, const dd_tensor *const *in, int parallel);
int64_t dd_conv_sums_doubles(const dd_node *node, const dd_tensor *const *in, int64_t *nparts);
/* ops/pool.c */
extern const dd_op dd_op_GlobalAveragePool;

/* y = Add(MatMul(a, b), bias) ending at `last`, in either operand order, where bias holds one
 * value per column of the product (shape [n] or [1, ..., 1, n]) and the Add does not
 * broadcast the product: 1 fused, 0 no match, -1 out of memory. */
static int fuse_matmul_bias(fuse_ctx *c, int last, size_t *scratch) {
  dd_plan *p = c->p;
  const dd_node *add = node(c, last);
  if (add->n_in != 2 || add->n_out != 1 || add->in[0] == add->in[1]) return 0;
  for (int k = 0; k < 2; k++) {
    int yv = add->in[k], bias = add->in[1 - k];
    int imm = producer(c, yv, "MatMul");
    if (bias < 0 || imm < 0 || !inner(c, yv, 1) || node(c, imm)->n_in != 2) continue;
    const dd_shape *ys = &p->val[yv].shape, *bs = &p->val[bias].shape;
    if (p->val[yv].dtype != DD_F32 || p->val[bias].dtype != DD_F32 || ys->ndim < 1 ||
        bs->ndim < 1 || bs->ndim > ys->ndim || bs->d[bs->ndim - 1] != ys->d[ys->ndim - 1] ||
        dd_shape_numel(bs) != bs->d[bs->ndim - 1] ||
        !dd_shape_eq(ys, &p->val[add->out[0]].shape))
      continue;
    int ins[] = {node(c, imm)->in[0], node(c, imm)->in[1], bias};
    return fuse_pair(c, &dd_op_FusedMatMulBias, imm, last, yv, ins, 3, scratch);
  }
  return 0;
}

/* ---- a per-channel scale into a 1x1 convolution ---- */

/* Not in ops.def (no ONNX op): ops/conv.c. */
extern const dd_op dd_op_FusedConvScaled;

/* The ints attribute `name` of n all equal to `want` (absent: its default, which is `want`). */
static int ints_all(const dd_node *n, const char *name, int64_t want) {
  int64_t v[8];
  int count = 0;
  if (dd_attr_ints(n, name, 8, v, &count, NULL)) return 0;
  for (int i = 0; i < count; i++)
    if (v[i] != want) return 0;
  return 1;
}

/* y = Conv(Mul(x, s), W[, b]) ending at the Conv `last`, W a constant M x C x 1 x 1, stride 1,
 * no padding, one group, s of shape (N or 1, C, 1, 1), in either operand order of the Mul:
 * 1 fused, 0 no match, -1 out of memory.  Only in plans without gradients, not under
 * DD_PLAN_EXACT or DD_PLAN_BF16 (whose convolutions take other paths), and where M is less
 * than H x W. */
static int fuse_conv_scaled(fuse_ctx *c, int last, size_t *scratch) {
  dd_plan *p = c->p;
  if (p->flags & (DD_PLAN_GRAD | DD_PLAN_PARAMS | DD_PLAN_EXACT | DD_PLAN_BF16)) return 0;
  const dd_node *conv = node(c, last);
  if (conv->n_in < 2 || conv->n_in > 3 || conv->n_out != 1 || conv->in[1] < 0 ||
      !c->isconst[conv->in[1]] || (conv->n_in == 3 && conv->in[2] >= 0 && !c->isconst[conv->in[2]]))
    return 0;
  int64_t group = 1;
  const char *pad = NULL;
  if (dd_attr_int(conv, "group", 1, &group, NULL) || group != 1 ||
      dd_attr_string(conv, "auto_pad", "NOTSET", &pad, NULL) ||
      (strcmp(pad, "NOTSET") && strcmp(pad, "VALID")) || !ints_all(conv, "strides", 1) ||
      !ints_all(conv, "dilations", 1) || !ints_all(conv, "pads", 0))
    return 0;
  const dd_shape *ws = &p->val[conv->in[1]].shape;
  if (ws->ndim != 4 || ws->d[2] != 1 || ws->d[3] != 1) return 0;
  int tv = conv->in[0];
  int imul = producer(c, tv, "Mul");
  if (imul < 0 || !inner(c, tv, 1) || node(c, imul)->n_in != 2) return 0;
  for (int k = 0; k < 2; k++) {
    int x = node(c, imul)->in[k], sv = node(c, imul)->in[1 - k];
    if (x < 0 || sv < 0 || x == sv) continue;
    const dd_shape *xs = &p->val[x].shape, *ss = &p->val[sv].shape;
    if (p->val[x].dtype != DD_F32 || !dd_shape_eq(xs, &p->val[tv].shape) || xs->ndim != 4 ||
        ss->ndim != 4 || (ss->d[0] != 1 && ss->d[0] != xs->d[0]) || ss->d[1] != xs->d[1] ||
        ss->d[2] != 1 || ss->d[3] != 1)
      continue;
    /* scaling the M x C weights costs less than a pass over the C x H x W input only when
     * there are fewer output channels than pixels (EfficientNet's 7x7 stages have 320
     * channels and 49 pixels) */
    if (ws->d[0] >= xs->d[2] * xs->d[3]) return 0;
    int ins[] = {x, sv, conv->in[1], conv->n_in == 3 ? conv->in[2] : -1};
    return fuse_pair(c, &dd_op_FusedConvScaled, imul, last, tv, ins,
                     conv->n_in == 3 && conv->in[2] >= 0 ? 4 : 3, scratch);
  }
  return 0;
}

/* ---- the pass ---- */

int plan_fuse(dd_plan *p, unsigned char *known, const unsigned char *isconst,
              const int *targets, int n_targets, size_t *scratch, dd_err *err) {
  const dd_model *m = p->m;
  fuse_ctx c = {p, known, isconst};
  c.nread = calloc((size_t)p->nv + 1, sizeof(int));
  c.target = calloc((size_t)p->nv + 1, 1);
  c.used = calloc((size_t)p->nn + 1, 1);
  c.pos = malloc(((size_t)p->nn + 1) * sizeof(int));
  /* a chain has at least 2 nodes (SiLU) */
  p->fused = calloc((size_t)p->n_order / 2 + 1, sizeof *p->fused);
  int rc = DD_OK;
  if (!c.nread || !c.target || !c.used || !c.pos || !p->fused) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < p->nn; i++) c.pos[i] = -1;
  for (int o = 0; o < p->n_order; o++) {
    const dd_node *n = &m->nodes[p->order[o]];
    c.pos[p->order[o]] = o;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] >= 0) c.nread[n->in[j]]++;
  }
  for (int t = 0; t < n_targets; t++) c.target[targets[t]] = 1;
  /* from the last node back, so that a chain is matched from its true end (a LayerNorm's
   * bias Add before the scale Mul inside it) */
  int fused = 0;
  for (int o = p->n_order - 1; o >= 0; o--) {
    int i = p->order[o], r = 0;
    if (c.used[i]) continue;
    const char *t = m->nodes[i].op_type;
    if (!strcmp(t, "Add")) {
      r = fuse_layernorm(&c, i, 1, scratch);
      if (!r) r = fuse_matmul_bias(&c, i, scratch);
    } else if (!strcmp(t, "Conv")) {
      r = fuse_conv_scaled(&c, i, scratch);
    }
    else if (!strcmp(t, "Mul")) {
      r = fuse_gelu(&c, i, scratch);
      if (!r) r = fuse_layernorm(&c, i, 0, scratch);
      if (!r) r = fuse_silu(&c, i, scratch);
    }
    if (r < 0) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
      goto done;
    }
    fused += r;
  }
  if (fused) { /* close the order over the nodes that left it */
    int k = 0;
    for (int o = 0; o < p->n_order; o++)
      if (p->onode[o]) {
        p->order[k] = p->order[o];
        p->onode[k++] = p->onode[o];
      }
    p->n_order = k;
  }
done:
  free(c.nread);
  free(c.target);
  free(c.used);
  free(c.pos);
  return rc;
}

/* ---- weights packed once ---- */

int plan_pack(dd_plan *p, const unsigned char *isconst, size_t room, dd_err *err) {
  p->packed = 0;
  for (int o = 0; o < p->n_order; o++) {
    const dd_node *n = p->onode[o];
    int wi = n->op == &dd_op_FusedMatMulBias || n->op == &dd_op_Conv || n->op == &dd_op_Gemm
                 ? 1
                 : -1;
    int w = wi >= 0 && wi < n->n_in ? n->in[wi] : -1;
    /* the weights of the file, or folded from them: the same for the plan's life */
    if (w < 0 || !isconst[w] || !(p->m->values[w].init || p->folded[w])) continue;
    const dd_tensor *in[4] = {NULL, NULL, NULL, NULL};
    for (int j = 0; j < n->n_in && j < 4; j++) in[j] = n->in[j] >= 0 ? &p->val[n->in[j]] : NULL;
    size_t bytes = n->op == &dd_op_FusedMatMulBias ? dd_matmul_bias_pack_bytes(n, in[0], in[1])
                   : n->op == &dd_op_Gemm          ? dd_gemm_pack_bytes(n, in)
                                                   : dd_conv_pack_bytes(n, in);
    if (!bytes || bytes > room - p->packed) continue;
    if (!p->prep && !(p->prep = calloc((size_t)p->n_order, sizeof *p->prep)))
      return dd_fail(err, DD_ENOMEM, "out of memory");
    int parallel = !(p->flags & DD_PLAN_SERIAL);
    p->prep[o] = n->op == &dd_op_FusedMatMulBias ? dd_matmul_bias_pack(n, in[0], in[1], parallel)
                 : n->op == &dd_op_Gemm          ? dd_gemm_pack(n, in, parallel)
                                                 : dd_conv_pack(n, in, parallel);
    if (!p->prep[o]) return dd_fail(err, DD_ENOMEM, "out of memory");
    p->packed += bytes;
  }
  return DD_OK;
}

/* ---- plane sums from the depthwise convolution ---- */

int plan_pool_sums(dd_plan *p, dd_err *err) {
  int *def = malloc(sizeof(int) * (size_t)(p->nv > 0 ? p->nv : 1)); /* order index */
  if (!def) return dd_fail(err, DD_ENOMEM, "out of memory");
  for (int v = 0; v < p->nv; v++) def[v] = -1;
  for (int o = 0; o < p->n_order; o++)
    for (int k = 0; k < p->onode[o]->n_out; k++)
      if (p->onode[o]->out[k] >= 0) def[p->onode[o]->out[k]] = o;
  int rc = DD_OK;
  for (int o = 0; o < p->n_order && !rc; o++) {
    const dd_node *n = p->onode[o];
    if (n->op != &dd_op_GlobalAveragePool || n->n_in < 1 || n->in[0] < 0 ||
        (p->skip && p->skip[o]))
      continue;
    int q = def[n->in[0]];
    if (q >= 0 && p->skip && p->skip[q]) { /* an activation folded into its producer */
      const dd_node *a = p->onode[q];
      int x = a->n_in >= 1 ? a->in[0] : -1, qa = x >= 0 ? def[x] : -1;
      unsigned act = DD_OP_RELU | DD_OP_SILU | DD_OP_HARDSWISH | DD_OP_GELU;
      q = (a->op->flags & act) && qa >= 0 && p->relu_out && p->relu_out[qa] ? qa : -1;
    }
    if (q < 0 || p->onode[q]->op != &dd_op_Conv || (p->skip && p->skip[q]) ||
        (p->add_in && p->add_in[q] >= 0) || (p->sums && p->sums[q]))
      continue;
    const dd_node *c = p->onode[q];
    const dd_tensor *in[3] = {NULL, NULL, NULL};
    for (int j = 0; j < c->n_in && j < 3; j++) in[j] = c->in[j] >= 0 ? &p->val[c->in[j]] : NULL;
    int64_t nparts = 0, nd = dd_conv_sums_doubles(c, in, &nparts);
    if (!nd) continue;
    if (!p->sums && !(p->sums = calloc((size_t)p->n_order, sizeof *p->sums))) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
      break;
    }
    dd_plane_sums *s = calloc(1, sizeof *s + sizeof(double) * (size_t)nd);
    if (!s) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
      break;
    }
    s->sum = (double *)(s + 1);
    s->part = s->sum + (nd - nparts);
    s->nparts = nparts;
    p->sums[q] = p->sums[o] = s;
  }
  free(def);
  return rc;
}

void plan_fused_free(dd_plan *p) {
  for (int k = 0; p->fused && k < p->n_fused; k++) free(p->fused[k].node.params);
  free(p->fused);
  p->fused = NULL;
  p->n_fused = 0;
}
