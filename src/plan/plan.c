/* The planner (plan/plan.h): a plan from a model, its bound inputs and its targets, in
 * phases -- known values, needed nodes, shape inference and folding, memory layout
 * (plan/memory.c), arena binding -- and the search for the smallest input a model takes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"
#include "plan/plan.h"

extern const dd_op dd_op_Conv; /* ops/conv.c: it owns the plane sums */

void dd_plan_free(dd_plan *p) {
  if (!p) return;
  if (p->val)
    for (int v = 0; v < p->nv; v++)
      if (p->folded[v]) free(p->val[v].data);
  free(p->val);
  free(p->grad);
  free(p->folded);
  for (int o = 0; p->prep && o < p->n_order; o++) free(p->prep[o]);
  free(p->prep);
  for (int o = 0; p->sums && o < p->n_order; o++)
    if (p->sums[o] && p->onode[o]->op == &dd_op_Conv) free(p->sums[o]);
  free(p->sums);
  free(p->order);
  free(p->onode);
  plan_fused_free(p);
  free(p->flops);
  free(p->runs);
  dd_arena_free(&p->arena);
  dd_arena_free(&p->scratch);
  free(p->skip);
  free(p->bskip);
  free(p->relu_out);
  free(p->add_in);
  free(p->zstart);
  free(p->zlist);
  free(p->seeds);
  free(p);
}

int plan_tensor_bytes(const dd_tensor *t, size_t *bytes) {
  int64_t n = dd_shape_numel(&t->shape);
  if (n < 0 || (uint64_t)n > (UINT64_C(1) << 40)) return -1;
  *bytes = (size_t)n * dd_dtype_size(t->dtype);
  return 0;
}

/* "384 MiB", or "64 KiB" under a mebibyte, so a small budget does not read as "0 MiB". */
static const char *fmt_size(double bytes, char *buf, size_t size) {
  if (bytes < 1048576.0) snprintf(buf, size, "%.0f KiB", bytes / 1024.0);
  else snprintf(buf, size, "%.0f MiB", bytes / 1048576.0);
  return buf;
}

/* How far plan_new goes: to a plan, or only to what a plan would need. */
typedef enum plan_mode {
  PLAN_BUILD,   /* allocate and return the plan */
  PLAN_MEASURE, /* infer shapes and lay out the arena: the plan's bytes */
  PLAN_SHAPES   /* infer shapes only: does this input size work at all */
} plan_mode;

/* What a plan is asked for: plan_new's arguments. */
typedef struct plan_request {
  dd_plan *host; /* NULL, or the plan whose memory to use (dd_plan_new_within) */
  const dd_model *m;
  const dd_binding *inputs;
  int n_inputs;
  const int *targets;
  int n_targets;
  unsigned flags;
  size_t max_memory; /* 0: no limit */
  plan_mode mode;
} plan_request;

/* What the phases hand on to one another besides the plan; freed when plan_new returns. */
typedef struct plan_state {
  unsigned char *needed;    /* (nn + 1) the targets need the node */
  unsigned char *known;     /* (nv) shape known */
  unsigned char *isconst;   /* (nv) data known at plan time */
  unsigned char *onpath;    /* (nv) depends on the grad input (or on a parameter) */
  unsigned char *param;     /* (nv) a trainable initializer (DD_PLAN_PARAMS) */
  size_t *offset, *goffset; /* (nv) arena offsets of each value and of its gradient */
  unsigned char *hasgrad;   /* (nv) made once the shapes are known */
  size_t scratch;           /* the largest workspace of a node that runs */
} plan_state;

static void state_free(plan_state *s) {
  free(s->needed);
  free(s->known);
  free(s->isconst);
  free(s->onpath);
  free(s->param);
  free(s->offset);
  free(s->goffset);
  free(s->hasgrad);
}

/* An empty plan of m and the state to build it; DD_ENOMEM (*out NULL or to free). */
static int plan_alloc(const dd_model *m, dd_plan **out, plan_state *s, dd_err *err) {
  dd_plan *p = calloc(1, sizeof *p);
  *out = p;
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->m = m;
  p->nv = m->n_values;
  p->nn = m->n_nodes;
  p->grad_input = -1;
  dd_arena_init(&p->arena);
  dd_arena_init(&p->scratch);
  p->val = calloc((size_t)p->nv, sizeof *p->val);
  p->grad = calloc((size_t)p->nv, sizeof *p->grad);
  p->folded = calloc((size_t)p->nv, 1);
  p->order = malloc(((size_t)p->nn + 1) * sizeof(int));
  p->onode = malloc(((size_t)p->nn + 1) * sizeof *p->onode);
  p->flops = calloc((size_t)p->nn + 1, sizeof(int64_t));
  p->runs = calloc((size_t)p->nn + 1, 1);
  s->needed = calloc((size_t)p->nn + 1, 1);
  s->known = calloc((size_t)p->nv, 1);
  s->isconst = calloc((size_t)p->nv, 1);
  s->onpath = calloc((size_t)p->nv, 1);
  s->param = calloc((size_t)p->nv, 1);
  s->offset = calloc((size_t)p->nv, sizeof(size_t));
  s->goffset = calloc((size_t)p->nv, sizeof(size_t));
  if (!p->val || !p->grad || !p->folded || !p->order || !p->onode || !p->flops || !p->runs ||
      !s->needed || !s->known || !s->isconst || !s->onpath || !s->param || !s->offset ||
      !s->goffset)
    return dd_fail(err, DD_ENOMEM, "out of memory");
  return DD_OK;
}

/* ---- phase 1: the values known before any node runs ---- */

/* The file's constants, then the bound inputs (the first one the gradient's, with
 * DD_PLAN_GRAD). */
static int bind_known_values(dd_plan *p, plan_state *s, const plan_request *rq, dd_err *err) {
  const dd_model *m = p->m;
  char sb[128];
  for (int v = 0; v < p->nv; v++)
    if (m->values[v].init) {
      p->val[v] = *m->values[v].init;
      p->val[v].owns = 0;
      s->known[v] = s->isconst[v] = 1;
      if ((rq->flags & DD_PLAN_PARAMS) && p->val[v].dtype == DD_F32)
        s->param[v] = s->onpath[v] = 1;
    }
  if ((rq->flags & DD_PLAN_PARAMS) && (rq->flags & DD_PLAN_REUSE))
    return dd_fail(err, DD_EARG, "%s: a plan of parameter gradients keeps every value: "
                   "DD_PLAN_REUSE is not for it", m->name);
  for (int i = 0; i < rq->n_inputs; i++) {
    int v = rq->inputs[i].value;
    if (v < 0 || v >= p->nv)
      return dd_fail(err, DD_EARG, "%s: input binding %d names no value", m->name, i);
    const dd_shape *sh = &rq->inputs[i].shape;
    int64_t n = dd_shape_numel(sh);
    if (sh->ndim < 0 || sh->ndim > DD_MAX_DIMS || n < 0)
      return dd_fail(err, DD_ELIMIT, "%s: input '%s': invalid shape %s", m->name,
                     m->values[v].name, dd_shape_str(sh, sb, sizeof sb));
    p->val[v].shape = *sh;
    p->val[v].dtype = rq->inputs[i].constant ? rq->inputs[i].constant->dtype : m->values[v].dtype;
    s->known[v] = 1;
    if (rq->inputs[i].constant) {
      p->val[v].data = rq->inputs[i].constant->data;
      s->isconst[v] = 1;
    }
    if (i == 0 && (rq->flags & DD_PLAN_GRAD)) {
      /* gradients are float32: an int64 or bool first input has none (a fuzzed model with a
       * bool input was given a float gradient in a 1-byte-per-element buffer) */
      if (p->val[v].dtype != DD_F32)
        return dd_fail(err, DD_EUNSUPPORTED, "%s: input '%s' is %s; a gradient needs a float32 "
                       "input", m->name, m->values[v].name, dd_dtype_name(p->val[v].dtype));
      p->grad_input = v;
      s->onpath[v] = 1;
    }
  }
  return DD_OK;
}

/* ---- phase 2: needed nodes ---- */

/* The nodes the targets need, walking back from the targets; an input they need that was not
 * given is DD_EARG. */
static int mark_needed(dd_plan *p, plan_state *s, const plan_request *rq, dd_err *err) {
  const dd_model *m = p->m;
  for (int t = 0; t < rq->n_targets; t++) {
    int v = rq->targets[t];
    if (v < 0 || v >= p->nv) return dd_fail(err, DD_EARG, "%s: target %d names no value", m->name, t);
    int prod = m->values[v].producer;
    if (prod >= 0) s->needed[prod] = 1;
    else if (!s->known[v])
      return dd_fail(err, DD_EARG, "%s: '%s' is an input that was not given", m->name,
                     m->values[v].name);
  }
  for (int i = p->nn - 1; i >= 0; i--) {
    if (!s->needed[i]) continue;
    const dd_node *n = &m->nodes[i];
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      if (v < 0) continue;
      if (m->values[v].producer >= 0) s->needed[m->values[v].producer] = 1;
      else if (!s->known[v])
        return dd_fail(err, DD_EARG, "%s: node '%s' needs input '%s', which was not given",
                       m->name, n->name, m->values[v].name);
    }
  }
  return DD_OK;
}

/* ---- phase 3: shape inference and constant folding ---- */

static int too_small_input(const dd_model *m, const dd_binding *inputs, int n_inputs,
                           const int *targets, int n_targets, const dd_node *node, dd_err *err);

/* Output k of node n, once inferred: refused when it alone is over the cap (saying how much it
 * needs, even when it is too large to be planned at all) or when its shape is invalid; its
 * size in *bytes. */
static int check_output(const dd_plan *p, const dd_node *n, int k, size_t max_memory,
                        size_t *bytes, dd_err *err) {
  const dd_model *m = p->m;
  dd_tensor *t = &p->val[n->out[k]];
  const char *name = m->values[n->out[k]].name;
  char sb[128], s1[32], s2[32];
  int64_t ne = t->shape.ndim >= 0 && t->shape.ndim <= DD_MAX_DIMS ? dd_shape_numel(&t->shape) : -1;
  double need_b = (double)ne * (double)dd_dtype_size(t->dtype);
  if (ne >= 0 && max_memory && need_b > (double)max_memory)
    return dd_fail(err, DD_ELIMIT, "%s: node '%s' (%s): output '%s' of shape %s alone needs "
                   "%s, more than the %s limit", m->name, n->name, n->op_type, name,
                   dd_shape_str(&t->shape, sb, sizeof sb), fmt_size(need_b, s1, sizeof s1),
                   fmt_size((double)max_memory, s2, sizeof s2));
  if (t->shape.ndim < 0 || t->shape.ndim > DD_MAX_DIMS || plan_tensor_bytes(t, bytes))
    return dd_fail(err, DD_ELIMIT, "%s: node '%s' (%s): output '%s' has an invalid or too "
                   "large shape %s", m->name, n->name, n->op_type, name,
                   dd_shape_str(&t->shape, sb, sizeof sb));
  return DD_OK;
}

/* Every needed node in order: its output shapes inferred; evaluated now when its inputs are
 * all constant (or it depends on shapes only), else scheduled -- p->order, flops, runs -- with
 * its workspace counted in s->scratch.  The values that depend on the grad input are marked
 * on its path; a node on it without a gradient is DD_EUNSUPPORTED. */
static int infer_shapes(dd_plan *p, plan_state *s, const plan_request *rq, dd_err *err) {
  const dd_model *m = p->m;
  char s2[32];
  size_t folded_bytes = 0;
  for (int i = 0; i < p->nn; i++) {
    if (!s->needed[i]) continue;
    const dd_node *n = &m->nodes[i];
    const dd_tensor *in[64];
    dd_tensor *outs[64];
    if (n->n_in > 64 || n->n_out > 64)
      return dd_fail(err, DD_ELIMIT, "%s: node '%s' has too many inputs or outputs", m->name,
                     n->name);
    int all_const = 1, path = 0;
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      in[j] = v >= 0 ? &p->val[v] : NULL;
      if (v >= 0 && (!s->isconst[v] || s->param[v])) all_const = 0;
      if (v >= 0) path |= s->onpath[v];
    }
    for (int k = 0; k < n->n_out; k++) outs[k] = n->out[k] >= 0 ? &p->val[n->out[k]] : NULL;
    size_t need = 0;
    int rc = n->op->infer(n, in, outs, &need, err);
    if (rc) {
      /* A shape error deep in the network is most often an image smaller than the
       * network's windows: then say so, and how small an input may be. */
      if (rc != DD_ESHAPE || rq->mode == PLAN_SHAPES ||
          too_small_input(m, rq->inputs, rq->n_inputs, rq->targets, rq->n_targets, n, err) !=
              DD_ESHAPE)
        dd_err_prefix(err, "%s: node '%s' (%s)", m->name, n->name, n->op_type);
      return rc;
    }
    int fold = all_const || (n->op->flags & DD_OP_SHAPE_ONLY);
    if (!n->op->forward)
      return dd_fail(err, DD_EUNSUPPORTED, "%s: node '%s': %s has no implementation", m->name,
                     n->name, n->op_type);
    for (int k = 0; k < n->n_out; k++) {
      int v = n->out[k];
      if (v < 0) continue;
      size_t b = 0;
      outs[k]->dtype = outs[k]->dtype ? outs[k]->dtype : DD_F32;
      if ((rc = check_output(p, n, k, rq->max_memory, &b, err))) return rc;
      s->known[v] = 1;
      if (fold) {
        folded_bytes += b;
        if (rq->max_memory && folded_bytes > rq->max_memory)
          return dd_fail(err, DD_ELIMIT, "%s: constants need more than the %s limit", m->name,
                         fmt_size((double)rq->max_memory, s2, sizeof s2));
        outs[k]->data = calloc(b ? b : 1, 1);
        if (!outs[k]->data) return dd_fail(err, DD_ENOMEM, "out of memory");
        p->folded[v] = 1;
        s->isconst[v] = 1;
      } else {
        /* Only float values carry a gradient: an int64 or bool value (a comparison, a
         * mask, indices) is piecewise constant in the input, so the path stops there. */
        s->onpath[v] = (unsigned char)(path && outs[k]->dtype == DD_F32);
      }
    }
    if (fold) {
      void *tmp = need ? calloc(need, 1) : NULL;
      if (need && !tmp) return dd_fail(err, DD_ENOMEM, "out of memory");
      n->op->forward(n, in, outs, tmp);
      free(tmp);
    } else {
      if (need > s->scratch) s->scratch = need;
      p->onode[p->n_order] = n;
      p->order[p->n_order++] = i;
      p->runs[i] = 1;
      p->flops[i] = n->op->flops ? n->op->flops(n, in, (const dd_tensor *const *)outs) : 0;
      int out_path = 0;
      for (int k = 0; k < n->n_out; k++) out_path |= n->out[k] >= 0 && s->onpath[n->out[k]];
      if (out_path && (rq->flags & (DD_PLAN_GRAD | DD_PLAN_PARAMS)) && !n->op->backward)
        return dd_fail(err, DD_EUNSUPPORTED,
                       "%s: node '%s': the gradient of %s is not implemented", m->name, n->name,
                       n->op_type);
    }
  }
  return DD_OK;
}

/* ---- phase 3b: fusion ---- */

/* Under DD_PLAN_REUSE, where values other than the inputs and targets are not kept anyway,
 * unless DD_PLAN_NO_FUSE: plan/fuse.c. */
static int fuse(dd_plan *p, plan_state *s, const plan_request *rq, dd_err *err) {
  if (!(rq->flags & DD_PLAN_REUSE) || (rq->flags & DD_PLAN_NO_FUSE)) return DD_OK;
  return plan_fuse(p, s->known, s->isconst, rq->targets, rq->n_targets, &s->scratch, err);
}

/* ---- phase 4: memory layout ---- */

/* Reserves and places the arena (plan/memory.c) and the scratch buffer; bound runtime inputs
 * live in the arena too. */
static int layout(dd_plan *p, plan_state *s, const plan_request *rq, dd_err *err) {
  const dd_model *m = p->m;
  for (int i = 0; i < rq->n_inputs; i++) {
    int v = rq->inputs[i].value;
    size_t b;
    if (!s->isconst[v] && plan_tensor_bytes(&p->val[v], &b))
      return dd_fail(err, DD_ELIMIT, "%s: input too large", m->name);
  }
  s->hasgrad = calloc((size_t)p->nv, 1);
  if (!s->hasgrad) return dd_fail(err, DD_ENOMEM, "out of memory");
  plan_build pb = {rq->targets, rq->n_targets, rq->flags, s->known, s->isconst,
                   s->onpath,   s->offset,     s->goffset, s->hasgrad, s->param};
  if (plan_memory(p, &pb, &p->arena) == SIZE_MAX ||
      dd_arena_reserve(&p->scratch, s->scratch, 0, 0) < 0 ||
      dd_arena_place(&p->scratch, DD_ARENA_STACK) == SIZE_MAX)
    return dd_fail(err, DD_ENOMEM, "out of memory");
  return DD_OK;
}

/* The plan's buffers against the cap: alone, and beside a host's when they cannot be in it.
 * in_host bit 0: the host's arena is large enough to hold the plan's; bit 1: its scratch. */
static int check_budget(const dd_plan *p, const plan_request *rq, int *in_host, dd_err *err) {
  char sb[32], s1[32], s2[32];
  size_t total = dd_plan_bytes(p), max_memory = rq->max_memory;
  const dd_plan *host = rq->host;
  if (max_memory && total > max_memory)
    return dd_fail(err, DD_ELIMIT, "%s: this input size needs %s of buffers, more than the "
                   "%s limit", p->m->name, fmt_size((double)total, s1, sizeof s1),
                   fmt_size((double)max_memory, s2, sizeof s2));
  *in_host = !host ? 0
                   : (p->arena.size <= host->arena.size ? 1 : 0) |
                         (p->scratch.size <= host->scratch.size ? 2 : 0);
  /* Buffers of its own are held beside the host's, which stays: both count. */
  size_t own = (*in_host & 1 ? 0 : p->arena.size) + (*in_host & 2 ? 0 : p->scratch.size);
  if (host && own && max_memory && own + dd_plan_bytes(host) > max_memory)
    return dd_fail(err, DD_ELIMIT, "%s: this input size needs %s of buffers besides the %s of "
                   "the plan it would share them with, more than the %s limit", p->m->name,
                   fmt_size((double)own, s1, sizeof s1),
                   fmt_size((double)dd_plan_bytes(host), sb, sizeof sb),
                   fmt_size((double)max_memory, s2, sizeof s2));
  return DD_OK;
}

/* ---- phase 5: arena binding ---- */

/* One allocation for the arena and one for the scratch (or the host's), and every runtime
 * value and gradient pointed at its offset. */
static int bind_arena(dd_plan *p, plan_state *s, const plan_request *rq, int in_host,
                      dd_err *err) {
  char s1[32];
  int failed = 0;
  /* each buffer in the host's when that one is large enough (a smaller image can need a
   * larger workspace: its own then, the arena still the host's) */
  if (in_host & 1) dd_arena_borrow(&p->arena, &rq->host->arena);
  else failed = dd_arena_alloc(&p->arena) != 0;
  if (in_host & 2) dd_arena_borrow(&p->scratch, &rq->host->scratch);
  else if (p->scratch.size) failed |= dd_arena_alloc(&p->scratch) != 0;
  if (failed)
    return dd_fail(err, DD_ENOMEM, "%s: out of memory allocating %s", p->m->name,
                   fmt_size((double)dd_plan_bytes(p), s1, sizeof s1));
  /* With DD_PLAN_REUSE every buffer is written before it is read (outputs by their node,
   * gradients zeroed before their first accumulation), and a buffer shared in turn by many
   * values could not stay zero anyway: the pages are left to be faulted in by first use. */
  if (!(rq->flags & DD_PLAN_REUSE)) memset(p->arena.base, 0, p->arena.size);
  for (int v = 0; v < p->nv; v++) {
    if (s->known[v] && !s->isconst[v]) p->val[v].data = dd_arena_at(&p->arena, s->offset[v]);
    if (s->hasgrad[v]) {
      p->grad[v] = p->val[v];
      p->grad[v].dtype = DD_F32;
      p->grad[v].data = dd_arena_at(&p->arena, s->goffset[v]);
    }
  }
  for (int v = 0; v < p->nv; v++)
    if (!s->known[v]) p->val[v].data = NULL;
  return DD_OK;
}

/* The phases in turn.  PLAN_MEASURE stops after the layout with *measured (and the targets'
 * shapes), PLAN_SHAPES after shape inference; PLAN_BUILD returns the plan in *out. */
static int plan_new(const plan_request *rq, size_t *measured, dd_shape *target_shapes,
                    dd_plan **out, dd_err *err) {
  plan_state s = {0};
  dd_plan *p;
  int rc = plan_alloc(rq->m, &p, &s, err), in_host = 0;
  if (p) p->flags = rq->flags;
  if (!rc) rc = bind_known_values(p, &s, rq, err);
  if (!rc) rc = mark_needed(p, &s, rq, err);
  if (!rc) rc = infer_shapes(p, &s, rq, err);
  if (rc || rq->mode == PLAN_SHAPES) goto done;
  rc = fuse(p, &s, rq, err);
  if (!rc) rc = layout(p, &s, rq, err);
  if (rc) goto done;
  if (rq->mode == PLAN_MEASURE) {
    *measured = dd_plan_bytes(p);
    for (int t = 0; target_shapes && t < rq->n_targets; t++)
      target_shapes[t] = p->val[rq->targets[t]].shape;
    goto done;
  }
  rc = check_budget(p, rq, &in_host, err);
  if (!rc) rc = bind_arena(p, &s, rq, in_host, err);
  if (!rc && !rq->host && !(rq->flags & (DD_PLAN_GRAD | DD_PLAN_PARAMS))) {
    /* forward-only plans of their own: the packs in what the cap leaves */
    size_t used = dd_plan_bytes(p), cap = rq->max_memory;
    rc = plan_pack(p, s.isconst, !cap ? SIZE_MAX : cap > used ? cap - used : 0, err);
    if (!rc) rc = plan_pool_sums(p, err);
  }
  if (!rc) {
    p->bf16 = (rq->flags & DD_PLAN_BF16) != 0;
    *out = p;
    p = NULL;
  }
done:
  state_free(&s);
  dd_plan_free(p);
  return rc;
}

int dd_plan_new(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                int n_targets, unsigned flags, size_t max_memory, dd_plan **out, dd_err *err) {
  plan_request rq = {NULL, m, inputs, n_inputs, targets, n_targets, flags, max_memory, PLAN_BUILD};
  return plan_new(&rq, NULL, NULL, out, err);
}

int dd_plan_new_within(dd_plan *host, const dd_model *m, const dd_binding *inputs, int n_inputs,
                       const int *targets, int n_targets, unsigned flags, size_t max_memory,
                       dd_plan **out, dd_err *err) {
  plan_request rq = {host, m, inputs, n_inputs, targets, n_targets, flags, max_memory, PLAN_BUILD};
  return plan_new(&rq, NULL, NULL, out, err);
}

int dd_plan_measure(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                    int n_targets, unsigned flags, size_t *bytes, dd_shape *target_shapes,
                    dd_err *err) {
  size_t total = 0;
  plan_request rq = {NULL, m, inputs, n_inputs, targets, n_targets, flags, 0, PLAN_MEASURE};
  int rc = plan_new(&rq, &total, target_shapes, NULL, err);
  if (!rc) *bytes = total;
  return rc;
}

/* ---- the smallest input ---- */

/* Largest side the search for the smallest input tries. */
#define MIN_INPUT_MAX 8192

/* The status of inferring every shape with inputs[0]'s last two dims set to h and w (the
 * other bindings as given), in `work`, a copy of the bindings. */
static int try_size(const dd_model *m, dd_binding *work, int n_inputs, const int *targets,
                    int n_targets, int w, int h, dd_err *err) {
  work[0].shape.d[2] = h;
  work[0].shape.d[3] = w;
  plan_request rq = {NULL, m, work, n_inputs, targets, n_targets, 0, 0, PLAN_SHAPES};
  return plan_new(&rq, NULL, NULL, NULL, err);
}

/* Finds the smallest size inputs[0] (N x C x H x W) may have: a size that works is looked
 * for among the declared one, 224 x 224 and the squares of sides 1, 2, 4 ... MIN_INPUT_MAX; below it,
 * the smallest height that works at its width, then the smallest width at that height.
 * Every size below the one found is tried, so a network that takes only some sizes (a
 * fixed-size classifier) is answered right too.  DD_OK with *w, *h; DD_ENOTFOUND when no
 * size tried works; DD_ENOMEM. */
static int find_min_input(const dd_model *m, const dd_binding *inputs, int n_inputs,
                          const int *targets, int n_targets, int *w, int *h) {
  dd_binding *work = malloc(sizeof *work * (size_t)n_inputs);
  if (!work) return DD_ENOMEM;
  memcpy(work, inputs, sizeof *work * (size_t)n_inputs);
  const dd_shape *decl = &m->values[inputs[0].value].shape;
  int w0 = 0, h0 = 0;
  if (decl->ndim == 4 && decl->d[2] > 0 && decl->d[3] > 0 && decl->d[2] <= MIN_INPUT_MAX &&
      decl->d[3] <= MIN_INPUT_MAX &&
      !try_size(m, work, n_inputs, targets, n_targets, (int)decl->d[3], (int)decl->d[2], NULL)) {
    w0 = (int)decl->d[3];
    h0 = (int)decl->d[2];
  }
  /* ImageNet's size first: the one fixed-size classifiers take when they declare none */
  if (!w0 && !try_size(m, work, n_inputs, targets, n_targets, 224, 224, NULL)) w0 = h0 = 224;
  for (int s = 1; !w0 && s <= MIN_INPUT_MAX; s *= 2)
    if (!try_size(m, work, n_inputs, targets, n_targets, s, s, NULL)) w0 = h0 = s;
  if (!w0) {
    free(work);
    return DD_ENOTFOUND;
  }
  int hh = 1, ww = 1;
  while (hh < h0 && try_size(m, work, n_inputs, targets, n_targets, w0, hh, NULL)) hh++;
  while (ww < w0 && try_size(m, work, n_inputs, targets, n_targets, ww, hh, NULL)) ww++;
  free(work);
  *w = ww;
  *h = hh;
  return DD_OK;
}

/* After a shape error in a plan for an image: when the image is smaller than the smallest
 * input the targets can be computed from, replaces the message by one that says so and
 * returns DD_ESHAPE; otherwise leaves err alone and returns DD_OK. */
static int too_small_input(const dd_model *m, const dd_binding *inputs, int n_inputs,
                           const int *targets, int n_targets, const dd_node *node, dd_err *err) {
  if (!err || n_inputs < 1 || inputs[0].constant || inputs[0].shape.ndim != 4) return DD_OK;
  int w = (int)inputs[0].shape.d[3], h = (int)inputs[0].shape.d[2], mw, mh;
  if (find_min_input(m, inputs, n_inputs, targets, n_targets, &mw, &mh)) return DD_OK;
  if (w >= mw && h >= mh) {
    /* larger than the smallest: is the model one of a single size (a ViT's position
     * embeddings, a Swin's windows)?  Its size is the declared one when that works, else
     * the smallest; it takes one size when twice that does not work (dream/layout.h) */
    dd_binding *work = malloc(sizeof *work * (size_t)n_inputs);
    if (!work) return DD_OK;
    memcpy(work, inputs, sizeof *work * (size_t)n_inputs);
    const dd_shape *decl = &m->values[inputs[0].value].shape;
    int nw = mw, nh = mh;
    if (decl->ndim == 4 && decl->d[2] > 0 && decl->d[3] > 0 && decl->d[2] <= MIN_INPUT_MAX &&
        decl->d[3] <= MIN_INPUT_MAX &&
        !try_size(m, work, n_inputs, targets, n_targets, (int)decl->d[3], (int)decl->d[2], NULL)) {
      nw = (int)decl->d[3];
      nh = (int)decl->d[2];
    }
    int fixed = try_size(m, work, n_inputs, targets, n_targets, 2 * nw, 2 * nh, NULL) != DD_OK;
    free(work);
    if (!fixed || (w == nw && h == nh)) return DD_OK;
    return dd_fail(err, DD_ESHAPE, "%s: a %dx%d input does not fit: the model takes only %dx%d "
                   "inputs (a fixed size: '%s' cannot take another)", m->name, w, h, nw, nh,
                   node->name);
  }
  /* a window larger than its input is the usual case; a fixed-size Reshape or Gemm another */
  int window = !strcmp(node->op_type, "Conv") || strstr(node->op_type, "Pool") != NULL;
  return dd_fail(err, DD_ESHAPE, "%s: a %dx%d input is too small: '%s' %s; the smallest input "
                 "this model accepts is %dx%d pixels", m->name, w, h, node->name,
                 window ? "would have no output" : "cannot take it", mw, mh);
}

int dd_plan_min_input(const dd_model *m, const int *targets, int n_targets, int *w, int *h,
                      dd_err *err) {
  int in = dd_model_input(m);
  if (in < 0) return dd_fail(err, DD_EARG, "%s: the model has no data input", m->name);
  dd_shape decl = m->values[in].shape;
  if (decl.ndim > 0 && decl.ndim != 4) /* 0 or -1: not declared */
    return dd_fail(err, DD_EUNSUPPORTED, "%s: input '%s' has %d dims, not N x C x H x W",
                   m->name, m->values[in].name, decl.ndim);
  int64_t dims[4] = {decl.ndim == 4 && decl.d[0] > 0 ? decl.d[0] : 1,
                     decl.ndim == 4 && decl.d[1] > 0 ? decl.d[1] : 3, 1, 1};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  int outs[64], n_outs = 0;
  if (!targets || n_targets < 1) {
    for (int i = 0; i < m->n_outputs && n_outs < 64; i++) outs[n_outs++] = m->outputs[i];
    targets = outs;
    n_targets = n_outs;
  }
  int mw, mh, rc = find_min_input(m, &b, 1, targets, n_targets, &mw, &mh);
  if (rc == DD_ENOMEM) return dd_fail(err, DD_ENOMEM, "out of memory");
  if (rc) {
    /* the reason the usual size fails says more than "nothing works" */
    dd_binding work = b;
    rc = try_size(m, &work, 1, targets, n_targets, 224, 224, err);
    if (rc) return dd_err_prefix(err, "no input size up to %dx%d works", MIN_INPUT_MAX,
                                 MIN_INPUT_MAX);
    return dd_fail(err, DD_ESHAPE, "%s: no input size up to %dx%d works", m->name,
                   MIN_INPUT_MAX, MIN_INPUT_MAX);
  }
  *w = mw;
  *h = mh;
  return DD_OK;
}
