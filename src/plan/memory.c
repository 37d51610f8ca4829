/* Memory planning (phase 4 of plan/plan.h): where each value and gradient lives in the arena.
 *
 * Without DD_PLAN_REUSE every buffer has a place of its own.  With it, buffers share memory
 * when their lifetimes do not meet, computed by passes in this order:
 *   liveness            when each value is written and last read, forward and backward;
 *   gradient liveness   which gradients exist, which backward steps run, when each gradient
 *                       is first written;
 *   value joins         alias ops (no copy), in-place ops and Concat joins: outputs in the
 *                       memory of their inputs, inputs inside a Concat's output; and a
 *                       residual Add folded into the convolution whose output it reads
 *                       (fold_add: the Add's output in that memory, the Add skipped);
 *   ReLU folding        a Relu in place on a Conv's output applied by the Conv instead;
 *   gradient joins      a Concat's input gradients inside its output's, in-place gradients;
 *   placement           one reservation per set of joined buffers, placed by the arena;
 *   zeroing schedule    each gradient zeroed before its first accumulation, or handed over
 *                       fresh to a first writer that overwrites it.
 *
 * Steps: bound inputs are written at -1, node o of the order runs forward at o (0..N-1), the
 * targets' gradients are seeded at N, and the backward of node o runs at 2N - o.  A value
 * lives from its producer's step to its last reader's: forward consumers, the backward of
 * nodes that read it (DD_OP_BWD_* say which do not), and the caller for targets, and for
 * inputs unless DD_PLAN_FORGET_INPUTS.
 * A gradient lives from its first accumulation (or the seeding) to its producer's backward.
 */
#include <stdlib.h>
#include <string.h>

#include "ops/act.h"
#include "ops/op.h"
#include "plan/plan.h"

static int runtime_value(const plan_build *b, int v) {
  return v >= 0 && b->known[v] && !b->isconst[v];
}

/* Bytes of v's data, unrounded. */
static size_t exact_bytes(const dd_plan *p, int v) {
  size_t bytes = 0;
  plan_tensor_bytes(&p->val[v], &bytes);
  return bytes;
}

/* ... and rounded up to DD_ARENA_ALIGN, as the arena places them. */
static size_t value_bytes(const dd_plan *p, int v) {
  return (exact_bytes(p, v) + DD_ARENA_ALIGN - 1) / DD_ARENA_ALIGN * DD_ARENA_ALIGN;
}

/* Every value and every gradient of a value on the input's path in a place of its own:
 * all of them stay readable after forward and backward. */
static size_t layout_separate(const dd_plan *p, plan_build *b, dd_arena *arena) {
  int *id = malloc(sizeof(int) * 2 * (size_t)(p->nv ? p->nv : 1));
  size_t size = SIZE_MAX;
  if (!id) return SIZE_MAX;
  for (int v = 0; v < p->nv; v++) {
    id[v] = id[p->nv + v] = -1;
    if (runtime_value(b, v) && (id[v] = dd_arena_reserve(arena, value_bytes(p, v), -1, 0)) < 0)
      goto done;
  }
  if (b->flags & (DD_PLAN_GRAD | DD_PLAN_PARAMS))
    for (int v = 0; v < p->nv; v++)
      if ((runtime_value(b, v) || (b->param && b->param[v])) && b->onpath[v]) {
        b->hasgrad[v] = 1;
        if ((id[p->nv + v] = dd_arena_reserve(arena, value_bytes(p, v), -1, 0)) < 0) goto done;
      }
  size = dd_arena_place(arena, DD_ARENA_STACK);
  for (int v = 0; size != SIZE_MAX && v < p->nv; v++) {
    if (id[v] >= 0) b->offset[v] = dd_arena_offset(arena, id[v]);
    if (id[p->nv + v] >= 0) b->goffset[v] = dd_arena_offset(arena, id[p->nv + v]);
  }
done:
  free(id);
  return size;
}

/* The state the passes of the shared layout hand on to one another. */
typedef struct mem_ctx {
  dd_plan *p;
  plan_build *b;
  int nv, N, END;        /* values; nodes in the order; the step after the last */
  int *def, *last;       /* (nv) liveness: the step a value is written, its last read */
  int *nread;            /* (nv) nodes that read the value */
  unsigned char *target; /* (nv) the value is a target */
  unsigned char *bwd;    /* (N) the backward of order index o runs */
  int *gfirst;           /* (nv) the step of the first accumulation into a gradient */
  /* Value sets (a buffer and the values that live in it): union-find with offsets. */
  int *root;             /* (nv) */
  size_t *rel;           /* (nv) bytes from the parent's start */
  int *sdef, *slast;     /* (nv) the set's first and last steps, at its root */
  unsigned char *inplace; /* (N) order index o runs in place on its input's memory */
  /* Gradient sets, likewise. */
  int *groot;            /* (nv) */
  size_t *grel;          /* (nv) */
  int *item_of_value, *item_of; /* (nv) the arena reservation of a set's root, value, grad */
} mem_ctx;

/* Union-find with offsets: v's bytes start rel[v] bytes into root[v]'s, so that a Concat's
 * inputs can be members of its output's buffer.  Returns v's set and, in *off, v's offset in
 * that set's buffer; compresses the path. */
static int find_root(int *root, size_t *rel, int v, size_t *off) {
  size_t total = 0;
  int r = v;
  for (; root[r] != r; r = root[r]) total += rel[r];
  if (off) *off = total;
  for (size_t acc = total; root[v] != v;) {
    int next = root[v];
    size_t step = rel[v];
    root[v] = r;
    rel[v] = acc;
    acc -= step;
    v = next;
  }
  return r;
}

/* ---- liveness ---- */

/* def, last and nread from the forward order; targets (and inputs, unless
 * DD_PLAN_FORGET_INPUTS) live to the end. */
static void pass_liveness(mem_ctx *c) {
  for (int v = 0; v < c->nv; v++) {
    c->def[v] = -1;
    c->last[v] = -1;
  }
  for (int t = 0; t < c->b->n_targets; t++) c->target[c->b->targets[t]] = 1;
  for (int o = 0; o < c->N; o++) {
    const dd_node *n = c->p->onode[o];
    for (int k = 0; k < n->n_out; k++)
      if (runtime_value(c->b, n->out[k])) c->def[n->out[k]] = c->last[n->out[k]] = o;
    for (int j = 0; j < n->n_in; j++) {
      if (runtime_value(c->b, n->in[j]) && c->last[n->in[j]] < o) c->last[n->in[j]] = o;
      if (n->in[j] >= 0) c->nread[n->in[j]]++;
    }
  }
  int keep_inputs = !(c->b->flags & DD_PLAN_FORGET_INPUTS);
  for (int v = 0; v < c->nv; v++)
    if (runtime_value(c->b, v) && (c->target[v] || (c->def[v] < 0 && keep_inputs)))
      c->last[v] = c->END;
}

/* Which gradients exist (reach a target), which backward steps run, when each gradient is
 * first written; the backward steps that read a value extend its life. */
static void pass_gradient_liveness(mem_ctx *c) {
  plan_build *b = c->b;
  int N = c->N;
  for (int v = 0; v < c->nv; v++) c->gfirst[v] = c->END;
  if (!(b->flags & DD_PLAN_GRAD)) return;
  for (int v = 0; v < c->nv; v++)
    if (c->target[v] && runtime_value(b, v) && b->onpath[v]) b->hasgrad[v] = 1;
  for (int o = N - 1; o >= 0; o--) {
    const dd_node *n = c->p->onode[o];
    int any_out = 0;
    for (int k = 0; k < n->n_out; k++) any_out |= n->out[k] >= 0 && b->hasgrad[n->out[k]];
    if (!any_out || !n->op->backward) continue;
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      if (!runtime_value(b, v) || !b->onpath[v]) continue;
      b->hasgrad[v] = 1;
      c->bwd[o] = 1;
      if (c->gfirst[v] == c->END) c->gfirst[v] = 2 * N - o;
    }
  }
  for (int o = 0; o < N; o++) {
    if (!c->bwd[o]) continue;
    const dd_node *n = c->p->onode[o];
    unsigned fl = n->op->flags;
    int others = 0;
    for (int j = 1; j < n->n_in; j++) others |= n->in[j] >= 0 && b->hasgrad[n->in[j]];
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      if (!runtime_value(b, v) || (j == 0 && (fl & DD_OP_BWD_NO_X) && !others)) continue;
      if (c->last[v] < 2 * N - o) c->last[v] = 2 * N - o;
    }
    for (int k = 0; k < n->n_out && !(fl & DD_OP_BWD_NO_OUT); k++) {
      int v = n->out[k];
      if (runtime_value(b, v) && c->last[v] < 2 * N - o) c->last[v] = 2 * N - o;
    }
  }
}

/* ---- Concat joins ---- */

/* A Concat whose output is its inputs end to end: every dim before the axis is 1.  The axis
 * is the first dim where the output differs from the first input (every other dim agrees). */
static int concat_is_contiguous(const dd_plan *p, const dd_node *n) {
  if (n->n_out != 1 || n->out[0] < 0 || n->n_in < 1 || n->in[0] < 0) return 0;
  const dd_shape *y = &p->val[n->out[0]].shape, *x = &p->val[n->in[0]].shape;
  if (x->ndim != y->ndim) return 0;
  for (int d = 0; d < y->ndim; d++) {
    if (y->d[d] != x->d[d]) return 1;
    if (y->d[d] != 1) return 0;
  }
  return 0;
}

/* Places the inputs of the Concat `n` inside its output's buffer (the sets of root/rel), each
 * at its offset, when that is safe: every input is read by this node only, is no target or
 * bound input, is at the start of a set of its own size, no two share a set, and every piece
 * starts aligned.  Values: sdef and slast (the sets' first and last steps) are merged too.
 * Gradients (sdef == NULL): the inputs' gradients become pieces of the output's gradient.
 * Returns 1 when done: the node's forward (or backward) then need not run. */
static int join_concat(const mem_ctx *c, const dd_node *n, int *sdef, int *slast, int *root,
                       size_t *rel) {
  const dd_plan *p = c->p;
  const plan_build *b = c->b;
  int grad = sdef == NULL, y = n->out[0];
  if (!concat_is_contiguous(p, n) || !runtime_value(b, y) || (grad && !b->hasgrad[y])) return 0;
  size_t oy, off = 0;
  int ry = find_root(root, rel, y, &oy);
  if ((oy % DD_ARENA_ALIGN) != 0) return 0;
  for (int k = 0; k < n->n_in; k++) {
    int x = n->in[k];
    size_t ox;
    if (x < 0 || !runtime_value(b, x) || c->nread[x] != 1 || c->target[x] ||
        (grad && !b->hasgrad[x]))
      return 0;
    int rx = find_root(root, rel, x, &ox);
    if (rx == ry || ox != 0 || value_bytes(p, rx) != value_bytes(p, x) || (!grad && sdef[rx] < 0))
      return 0;
    for (int j = 0; j < k; j++)
      if (find_root(root, rel, n->in[j], NULL) == rx) return 0;
    if (k < n->n_in - 1 && exact_bytes(p, x) % DD_ARENA_ALIGN) return 0;
    off += exact_bytes(p, x);
  }
  if (off != exact_bytes(p, y)) return 0;
  off = oy;
  for (int k = 0; k < n->n_in; k++) {
    int rx = find_root(root, rel, n->in[k], NULL);
    root[rx] = ry;
    rel[rx] = off;
    off += exact_bytes(p, n->in[k]);
    if (!grad) { /* the merged sets now live as one buffer */
      if (slast[rx] > slast[ry]) slast[ry] = slast[rx];
      if (sdef[rx] < sdef[ry]) sdef[ry] = sdef[rx];
    }
  }
  return 1;
}

/* ---- aliasing: in-place and alias ops ---- */

/* An in-place op (DD_OP_INPLACE) writes into its input's memory when it is the last reader
 * of that memory; an alias op (DD_OP_ALIAS) points its output at it and does not run, and so
 * does a Transpose that moves only dims of 1 (ops/layout.c). */
int dd_transpose_keeps_order(const dd_node *node, const dd_shape *x);

/* Whether node n is an alias (DD_OP_ALIAS, or a Transpose that keeps the order). */
static int is_alias(const dd_plan *p, const dd_node *n) {
  return (n->op->flags & DD_OP_ALIAS) ||
         (n->n_in >= 1 && n->in[0] >= 0 && dd_transpose_keeps_order(n, &p->val[n->in[0]].shape));
}
static void join_inplace(mem_ctx *c, int o, const dd_node *n) {
  dd_plan *p = c->p;
  unsigned fl = n->op->flags | (is_alias(p, n) ? DD_OP_ALIAS : 0u);
  if (!(fl & (DD_OP_INPLACE | DD_OP_ALIAS)) || n->n_in < 1 || n->n_out < 1) return;
  int x = n->in[0], y = n->out[0];
  if (!runtime_value(c->b, x) || !runtime_value(c->b, y) || value_bytes(p, x) != value_bytes(p, y))
    return;
  size_t ox;
  int r = find_root(c->root, c->rel, x, &ox), uses = 0, extra = 0;
  for (int j = 0; j < n->n_in; j++) uses += n->in[j] == x;
  /* other outputs nothing reads (Dropout's mask, in Swin-T's attention) do not keep an
   * alias op running: they are not written then */
  for (int k = 1; k < n->n_out; k++)
    extra |= n->out[k] >= 0 && (c->nread[n->out[k]] > 0 || c->target[n->out[k]]);
  if ((fl & DD_OP_ALIAS) && !extra) {
    p->skip[o] = 1;
  } else if (!(fl & DD_OP_INPLACE) || uses != 1 || c->slast[r] != o) {
    return;
  }
  c->root[y] = r;
  c->rel[y] = ox;
  if (c->slast[y] > c->slast[r]) c->slast[r] = c->slast[y];
  c->inplace[o] = 1;
}

/* fold_add with x the operand the producer writes, r the other.  Between the producer and
 * the Add there may be aliases (a Reshape, a Transpose of dims of 1: skipped, their output in
 * their input's memory, element for element), each value read once and no target. */
static int fold_add_into(mem_ctx *c, int o, const dd_node *n, int x, int r) {
  dd_plan *p = c->p;
  int y = n->out[0];
  if (x < 0 || r < 0 || r == x || !runtime_value(c->b, x) || !runtime_value(c->b, y) ||
      c->nread[x] != 1 || c->target[x])
    return 0;
  int w = x, q = c->def[x]; /* w: the value the producer q writes */
  while (q >= 0 && p->skip[q] && is_alias(p, p->onode[q]) && p->onode[q]->n_in >= 1) {
    int v = p->onode[q]->in[0];
    if (!runtime_value(c->b, v) || c->nread[v] != 1 || c->target[v] ||
        exact_bytes(p, v) != exact_bytes(p, x))
      return 0;
    w = v, q = c->def[v];
  }
  if (q < 0 || c->def[r] >= q) return 0;
  const dd_node *pn = p->onode[q];
  if (!(pn->op->flags & DD_OP_FOLD_ADD) || pn->n_out < 1 || pn->out[0] != w ||
      p->add_in[q] >= 0)
    return 0;
  const dd_tensor *tx = &p->val[x], *tr = &p->val[r], *ty = &p->val[y], *tw = &p->val[w];
  if (tx->dtype != DD_F32 || tr->dtype != DD_F32 || ty->dtype != DD_F32 ||
      tw->dtype != DD_F32 || !dd_shape_eq(&tx->shape, &tr->shape) ||
      !dd_shape_eq(&tx->shape, &ty->shape))
    return 0;
  size_t ox;
  int rx = find_root(c->root, c->rel, x, &ox);
  if (c->slast[rx] != o) return 0;
  c->root[y] = rx;
  c->rel[y] = ox;
  if (c->slast[y] > c->slast[rx]) c->slast[rx] = c->slast[y];
  c->inplace[o] = 1;
  p->skip[o] = 1;
  p->add_in[q] = r;
  return 1;
}

/* An Add(x, r) (in either order) whose x is the output of an op that can add r as it writes it
 * (DD_OP_FOLD_ADD) is folded there: x read by the Add alone and no target, r of x's shape
 * and computed before that op runs (or a constant or an input), no gradient through the Add.
 * The Add's output joins x's memory, the Add is skipped, and add_in[q] of x's producer q is
 * r.  (Add runs out of place otherwise: it broadcasts.)  No activation can be folded into q
 * as well: x has no other reader.  Returns 1 when folded. */
static int fold_add(mem_ctx *c, int o, const dd_node *n) {
  if (c->bwd[o] || strcmp(n->op_type, "Add") || n->n_in != 2 || n->n_out != 1) return 0;
  for (int k = 0; k < 2; k++) { /* either operand (float addition commutes) */
    int x = n->in[k], r = n->in[1 - k];
    if (fold_add_into(c, o, n, x, r)) return 1;
  }
  return 0;
}

/* Outputs join the memory of their inputs, and a Concat's inputs its output's, node by node
 * in order: each join sees the sets the earlier ones made. */
static void pass_join_values(mem_ctx *c) {
  for (int v = 0; v < c->nv; v++) {
    c->root[v] = v;
    c->slast[v] = c->last[v];
    c->sdef[v] = c->def[v];
  }
  for (int o = 0; o < c->N; o++) {
    const dd_node *n = c->p->onode[o];
    if (n->op->flags & DD_OP_CONCAT) {
      if (join_concat(c, n, c->sdef, c->slast, c->root, c->rel)) c->p->skip[o] = 1;
    } else if (!fold_add(c, o, n)) {
      join_inplace(c, o, n);
    }
  }
}

/* ---- ReLU folding ---- */

/* A Relu (a SiLU, a HardSwish) that runs in place on the output of an op that can apply it
 * as it writes (DD_OP_FOLD_RELU, DD_OP_FOLD_ACT) is folded there, when nothing else reads the
 * value before it (nor after: the producer's backward must not read its output).
 * relu_out[q] is then its DD_ACT_* code (ops/act.h): 1 Relu, 2 SiLU, 3 HardSwish, 4 GELU.
 * Those but Relu run in place only where no gradient goes through them (their backward reads
 * their input). */
static void pass_fold_relu(mem_ctx *c) {
  dd_plan *p = c->p;
  for (int o = 0; o < c->N; o++) {
    const dd_node *n = p->onode[o];
    unsigned act = n->op->flags & (DD_OP_RELU | DD_OP_SILU | DD_OP_HARDSWISH | DD_OP_GELU);
    if (!c->inplace[o] || !act || p->skip[o]) continue;
    const char *form = NULL; /* a Gelu folds in its exact form only */
    if (act == DD_OP_GELU &&
        (dd_attr_string(n, "approximate", "none", &form, NULL) || strcmp(form, "none")))
      continue;
    int x = n->in[0], q = c->def[x];
    if (q < 0 || c->nread[x] != 1 || c->target[x]) continue;
    const dd_node *pn = p->onode[q];
    unsigned pf = pn->op->flags;
    unsigned fold = act == DD_OP_RELU ? DD_OP_FOLD_RELU : DD_OP_FOLD_ACT;
    if ((pf & fold) && (pf & DD_OP_BWD_NO_OUT) && pn->n_out >= 1 && pn->out[0] == x &&
        !p->relu_out[q]) {
      p->skip[o] = 1;
      p->relu_out[q] = act == DD_OP_RELU   ? DD_ACT_RELU
                       : act == DD_OP_SILU ? DD_ACT_SILU
                       : act == DD_OP_GELU ? DD_ACT_GELU
                                           : DD_ACT_HARDSWISH;
    }
  }
}

/* ---- gradient joins ---- */

/* A Concat's input gradients become pieces of its output's gradient; an op with
 * DD_OP_INPLACE_GRAD writing the first gradient of its input takes the memory of its
 * output's gradient, which its own backward reads last: no zeroing, one buffer less. */
static void pass_join_gradients(mem_ctx *c) {
  dd_plan *p = c->p;
  plan_build *b = c->b;
  int N = c->N;
  for (int v = 0; v < c->nv; v++) c->groot[v] = v;
  for (int o = 0; o < N; o++) {
    const dd_node *n = p->onode[o];
    if (c->bwd[o] && (n->op->flags & DD_OP_CONCAT) &&
        join_concat(c, n, NULL, NULL, c->groot, c->grel)) {
      p->bskip[o] = 1;
      continue;
    }
    if (!c->bwd[o] || !(n->op->flags & DD_OP_INPLACE_GRAD) || n->n_in < 1 || n->n_out < 1)
      continue;
    int x = n->in[0], y = n->out[0], uses = 0, extra = 0;
    for (int j = 0; j < n->n_in; j++) uses += n->in[j] == x;
    for (int k = 1; k < n->n_out; k++) extra |= n->out[k] >= 0;
    if (x < 0 || y < 0 || uses != 1 || extra || !b->hasgrad[x] || !b->hasgrad[y] ||
        c->target[x] || c->target[y] || c->gfirst[x] != 2 * N - o ||
        value_bytes(p, x) != value_bytes(p, y))
      continue;
    size_t oy;
    int ry = find_root(c->groot, c->grel, y, &oy);
    if (find_root(c->groot, c->grel, x, NULL) != x || ry == x) continue;
    c->groot[x] = ry;
    c->grel[x] = oy;
  }
}

/* ---- placement ---- */

/* One reservation per value set, then one per gradient set (living as long as its members),
 * placed by the arena; every value's and gradient's offset from its set's. */
static size_t pass_place(mem_ctx *c, dd_arena *arena) {
  dd_plan *p = c->p;
  plan_build *b = c->b;
  int N = c->N, nv = c->nv;
  for (int v = 0; v < nv; v++) {
    c->item_of_value[v] = -1;
    if (!runtime_value(b, v) || find_root(c->root, c->rel, v, NULL) != v) continue;
    c->item_of_value[v] = dd_arena_reserve(arena, value_bytes(p, v), c->sdef[v], c->slast[v]);
    if (c->item_of_value[v] < 0) return SIZE_MAX;
  }
  /* a gradient set's first and last steps, at its root: those of its members */
  int *first = malloc(sizeof(int) * 2 * (size_t)(nv ? nv : 1));
  if (!first) return SIZE_MAX;
  int *lastg = first + nv;
  for (int v = 0; v < nv; v++) {
    first[v] = c->END;
    lastg[v] = -1;
  }
  for (int v = 0; v < nv; v++) {
    if (!b->hasgrad[v]) continue;
    int r = find_root(c->groot, c->grel, v, NULL);
    int start = c->target[v] ? N : c->gfirst[v], end = c->def[v] < 0 ? c->END : 2 * N - c->def[v];
    if (start < first[r]) first[r] = start;
    if (end > lastg[r]) lastg[r] = end;
  }
  for (int v = 0; v < nv; v++) {
    c->item_of[v] = -1;
    if (!b->hasgrad[v] || find_root(c->groot, c->grel, v, NULL) != v) continue;
    c->item_of[v] = dd_arena_reserve(arena, value_bytes(p, v), first[v],
                                     lastg[v] < first[v] ? first[v] : lastg[v]);
    if (c->item_of[v] < 0) {
      free(first);
      return SIZE_MAX;
    }
  }
  free(first);
  size_t size = dd_arena_place(arena, DD_ARENA_SHARE);
  if (size == SIZE_MAX) return size;
  for (int v = 0; v < nv; v++) {
    size_t o;
    if (runtime_value(b, v))
      b->offset[v] =
          dd_arena_offset(arena, c->item_of_value[find_root(c->root, c->rel, v, &o)]) + o;
    if (b->hasgrad[v])
      b->goffset[v] = dd_arena_offset(arena, c->item_of[find_root(c->groot, c->grel, v, &o)]) + o;
  }
  return size;
}

/* ---- zeroing schedule ---- */

/* Whether node o, the first to write the gradient of v (the root of its set), may be handed
 * it fresh: the op says it can, v is one of its inputs exactly once, and none of its other
 * gradients, in or out, lives in v's buffer. */
static int first_writer_overwrites(const mem_ctx *c, int o, int v) {
  const dd_node *n = c->p->onode[o];
  if (!(n->op->flags & DD_OP_GRAD_FRESH)) return 0;
  int uses = 0;
  for (int j = 0; j < n->n_in; j++) {
    int x = n->in[j];
    if (x == v) uses++;
    else if (x >= 0 && c->b->hasgrad[x] && find_root(c->groot, c->grel, x, NULL) == v) return 0;
  }
  for (int k = 0; k < n->n_out; k++) {
    int y = n->out[k];
    if (y >= 0 && c->b->hasgrad[y] && find_root(c->groot, c->grel, y, NULL) == v) return 0;
  }
  return uses == 1;
}

/* Gradients are zeroed just before their first accumulation, the seeds by zero_grad; or
 * handed over fresh, when the first writer can overwrite them. */
static void pass_schedule_zeroing(mem_ctx *c) {
  dd_plan *p = c->p;
  plan_build *b = c->b;
  int N = c->N;
  for (int v = 0; v < c->nv; v++)
    if (b->hasgrad[v] && !c->target[v] && c->groot[v] == v) p->zstart[2 * N - c->gfirst[v] + 1]++;
  for (int o = 0; o < N; o++) p->zstart[o + 1] += p->zstart[o];
  for (int v = 0; v < c->nv; v++)
    if (b->hasgrad[v] && !c->target[v] && c->groot[v] == v) {
      int o = 2 * N - c->gfirst[v];
      p->zlist[p->zstart[o]++] = first_writer_overwrites(c, o, v) ? -1 - v : v;
    }
  for (int o = N; o > 0; o--) p->zstart[o] = p->zstart[o - 1];
  p->zstart[0] = 0;
  for (int t = 0; t < b->n_targets; t++) {
    int v = b->targets[t], seen = 0;
    for (int i = 0; i < p->n_seeds; i++) seen |= p->seeds[i] == v;
    if (b->hasgrad[v] && !seen) p->seeds[p->n_seeds++] = v;
  }
}

/* DD_PLAN_REUSE: values and gradients share memory when their lifetimes do not meet. */
static size_t layout_shared(dd_plan *p, plan_build *b, dd_arena *arena) {
  int nv = p->nv, N = p->n_order;
  size_t unv = (size_t)nv;
  mem_ctx c = {p, b, nv, N, 2 * N + 1};
  c.def = malloc(sizeof(int) * unv);
  c.last = malloc(sizeof(int) * unv);
  c.nread = calloc(unv, sizeof(int));
  c.target = calloc(unv, 1);
  c.bwd = calloc((size_t)N + 1, 1);
  c.gfirst = malloc(sizeof(int) * unv);
  c.root = malloc(sizeof(int) * unv);
  c.rel = calloc(unv, sizeof(size_t));
  c.sdef = malloc(sizeof(int) * unv);
  c.slast = malloc(sizeof(int) * unv);
  c.inplace = calloc((size_t)N + 1, 1);
  c.groot = malloc(sizeof(int) * unv);
  c.grel = calloc(unv, sizeof(size_t));
  c.item_of_value = malloc(sizeof(int) * unv);
  c.item_of = malloc(sizeof(int) * unv);
  p->skip = calloc((size_t)N + 1, 1);
  p->bskip = calloc((size_t)N + 1, 1);
  p->relu_out = calloc((size_t)N + 1, 1);
  p->add_in = malloc(sizeof(int) * ((size_t)N + 1));
  p->zstart = calloc((size_t)N + 2, sizeof(int));
  p->zlist = malloc(sizeof(int) * unv);
  p->seeds = malloc(sizeof(int) * (size_t)(b->n_targets + 1));
  size_t size = SIZE_MAX;
  if (c.def && c.last && c.nread && c.target && c.bwd && c.gfirst && c.root && c.rel && c.sdef &&
      c.slast && c.inplace && c.groot && c.grel && c.item_of_value && c.item_of && p->skip &&
      p->bskip && p->relu_out && p->add_in && p->zstart && p->zlist && p->seeds) {
    for (int o = 0; o < N; o++) p->add_in[o] = -1;
    pass_liveness(&c);
    pass_gradient_liveness(&c);
    pass_join_values(&c);
    pass_fold_relu(&c);
    pass_join_gradients(&c);
    size = pass_place(&c, arena);
    if (size != SIZE_MAX) pass_schedule_zeroing(&c);
  }
  free(c.def);
  free(c.last);
  free(c.nread);
  free(c.target);
  free(c.bwd);
  free(c.gfirst);
  free(c.root);
  free(c.rel);
  free(c.sdef);
  free(c.slast);
  free(c.inplace);
  free(c.groot);
  free(c.grel);
  free(c.item_of_value);
  free(c.item_of);
  return size;
}

size_t plan_memory(dd_plan *p, plan_build *b, dd_arena *arena) {
  return (b->flags & DD_PLAN_REUSE) ? layout_shared(p, b, arena) : layout_separate(p, b, arena);
}
