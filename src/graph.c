/* Planner and executor. */
#include "dream/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model_internal.h"
#include "ops/op.h"

#define ALIGN 64

struct dd_plan {
  const dd_model *m;
  int nv, nn;
  dd_tensor *val;         /* per value: shape, dtype, data (arena, constant or folded) */
  dd_tensor *grad;        /* per value: gradient buffer, data NULL when none */
  unsigned char *folded;  /* per value: plan-owned constant data (free it) */
  int *order, n_order;    /* nodes that run, topological */
  int64_t *flops;         /* per node */
  unsigned char *runs;    /* per node */
  int grad_input;
  void *arena;
  size_t arena_bytes;
  void *scratch;
  size_t scratch_bytes;
  double *profile; /* NULL, or 2 per node: forward and backward seconds (caller's) */
};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void dd_plan_set_profile(dd_plan *p, double *seconds) { p->profile = seconds; }

static size_t round_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

void dd_plan_free(dd_plan *p) {
  if (!p) return;
  if (p->val)
    for (int v = 0; v < p->nv; v++)
      if (p->folded[v]) free(p->val[v].data);
  free(p->val);
  free(p->grad);
  free(p->folded);
  free(p->order);
  free(p->flops);
  free(p->runs);
  free(p->arena);
  free(p->scratch);
  free(p);
}

static int tensor_bytes(const dd_tensor *t, size_t *bytes) {
  int64_t n = dd_shape_numel(&t->shape);
  if (n < 0 || (uint64_t)n > (UINT64_C(1) << 40)) return -1;
  *bytes = (size_t)n * dd_dtype_size(t->dtype);
  return 0;
}

int dd_plan_new(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                int n_targets, unsigned flags, size_t max_bytes, dd_plan **out, dd_err *err) {
  char sb[128];
  int rc = DD_OK;
  dd_plan *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  p->m = m;
  p->nv = m->n_values;
  p->nn = m->n_nodes;
  p->grad_input = -1;
  p->val = calloc((size_t)p->nv, sizeof *p->val);
  p->grad = calloc((size_t)p->nv, sizeof *p->grad);
  p->folded = calloc((size_t)p->nv, 1);
  p->order = malloc(((size_t)p->nn + 1) * sizeof(int));
  p->flops = calloc((size_t)p->nn + 1, sizeof(int64_t));
  p->runs = calloc((size_t)p->nn + 1, 1);
  unsigned char *needed = calloc((size_t)p->nn + 1, 1);
  unsigned char *known = calloc((size_t)p->nv, 1);  /* shape known */
  unsigned char *isconst = calloc((size_t)p->nv, 1);
  unsigned char *onpath = calloc((size_t)p->nv, 1); /* depends on the grad input */
  size_t *offset = calloc((size_t)p->nv, sizeof(size_t));
  size_t *goffset = calloc((size_t)p->nv, sizeof(size_t));
  if (!p->val || !p->grad || !p->folded || !p->order || !p->flops || !p->runs || !needed ||
      !known || !isconst || !onpath || !offset || !goffset) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }

  /* Constants of the file. */
  for (int v = 0; v < p->nv; v++)
    if (m->values[v].init) {
      p->val[v] = *m->values[v].init;
      p->val[v].owns = 0;
      known[v] = isconst[v] = 1;
    }
  /* Bound inputs. */
  for (int i = 0; i < n_inputs; i++) {
    int v = inputs[i].value;
    if (v < 0 || v >= p->nv) {
      rc = dd_fail(err, DD_EARG, "%s: input binding %d names no value", m->name, i);
      goto fail;
    }
    const dd_shape *s = &inputs[i].shape;
    int64_t n = dd_shape_numel(s);
    if (s->ndim < 0 || s->ndim > DD_MAX_DIMS || n < 0) {
      rc = dd_fail(err, DD_ELIMIT, "%s: input '%s': invalid shape %s", m->name,
                   m->values[v].name, dd_shape_str(s, sb, sizeof sb));
      goto fail;
    }
    p->val[v].shape = *s;
    p->val[v].dtype = inputs[i].constant ? inputs[i].constant->dtype : m->values[v].dtype;
    known[v] = 1;
    if (inputs[i].constant) {
      p->val[v].data = inputs[i].constant->data;
      isconst[v] = 1;
    }
    if (i == 0 && (flags & DD_PLAN_GRAD)) {
      p->grad_input = v;
      onpath[v] = 1;
    }
  }
  /* Which nodes the targets need: walk back from the targets. */
  for (int t = 0; t < n_targets; t++) {
    if (targets[t] < 0 || targets[t] >= p->nv) {
      rc = dd_fail(err, DD_EARG, "%s: target %d names no value", m->name, t);
      goto fail;
    }
    int prod = m->values[targets[t]].producer;
    if (prod >= 0) needed[prod] = 1;
    else if (!known[targets[t]]) {
      rc = dd_fail(err, DD_EARG, "%s: '%s' is an input that was not given", m->name,
                   m->values[targets[t]].name);
      goto fail;
    }
  }
  for (int i = p->nn - 1; i >= 0; i--) {
    if (!needed[i]) continue;
    const dd_node *n = &m->nodes[i];
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      if (v < 0) continue;
      if (m->values[v].producer >= 0) needed[m->values[v].producer] = 1;
      else if (!known[v]) {
        rc = dd_fail(err, DD_EARG, "%s: node '%s' needs input '%s', which was not given",
                     m->name, n->name, m->values[v].name);
        goto fail;
      }
    }
  }

  /* Shapes, in order; fold what is constant. */
  size_t arena = 0, scratch = 0, folded_bytes = 0;
  for (int i = 0; i < p->nn; i++) {
    if (!needed[i]) continue;
    const dd_node *n = &m->nodes[i];
    const dd_tensor *in[64];
    dd_tensor *outs[64];
    if (n->n_in > 64 || n->n_out > 64) {
      rc = dd_fail(err, DD_ELIMIT, "%s: node '%s' has too many inputs or outputs", m->name, n->name);
      goto fail;
    }
    int all_const = 1, path = 0;
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      in[j] = v >= 0 ? &p->val[v] : NULL;
      if (v >= 0 && !isconst[v]) all_const = 0;
      if (v >= 0) path |= onpath[v];
    }
    for (int k = 0; k < n->n_out; k++) outs[k] = n->out[k] >= 0 ? &p->val[n->out[k]] : NULL;
    size_t need = 0;
    rc = n->op->infer(n, in, outs, &need, err);
    if (rc) {
      dd_err_prefix(err, "%s: node '%s' (%s)", m->name, n->name, n->op_type);
      goto fail;
    }
    int fold = all_const || (n->op->flags & DD_OP_SHAPE_ONLY);
    if (!n->op->forward) {
      rc = dd_fail(err, DD_EUNSUPPORTED, "%s: node '%s': %s has no implementation", m->name,
                   n->name, n->op_type);
      goto fail;
    }
    for (int k = 0; k < n->n_out; k++) {
      int v = n->out[k];
      if (v < 0) continue;
      size_t b;
      outs[k]->dtype = outs[k]->dtype ? outs[k]->dtype : DD_F32;
      /* One tensor over the cap is refused here, saying how much it needs, even when it is
       * too large to be planned at all. */
      int64_t ne = outs[k]->shape.ndim >= 0 && outs[k]->shape.ndim <= DD_MAX_DIMS
                       ? dd_shape_numel(&outs[k]->shape) : -1;
      double need_b = (double)ne * (double)dd_dtype_size(outs[k]->dtype);
      if (ne >= 0 && max_bytes && need_b > (double)max_bytes) {
        rc = dd_fail(err, DD_ELIMIT, "%s: node '%s' (%s): output '%s' of shape %s alone needs "
                     "%.0f MiB, more than the %.0f MiB limit (use a smaller image or tiles, or "
                     "raise --max-memory)", m->name, n->name, n->op_type, m->values[v].name,
                     dd_shape_str(&outs[k]->shape, sb, sizeof sb), need_b / 1048576.0,
                     max_bytes / 1048576.0);
        goto fail;
      }
      if (outs[k]->shape.ndim < 0 || outs[k]->shape.ndim > DD_MAX_DIMS || tensor_bytes(outs[k], &b)) {
        rc = dd_fail(err, DD_ELIMIT, "%s: node '%s' (%s): output '%s' has an invalid or too large shape %s",
                     m->name, n->name, n->op_type, m->values[v].name,
                     dd_shape_str(&outs[k]->shape, sb, sizeof sb));
        goto fail;
      }
      known[v] = 1;
      if (fold) {
        folded_bytes += b;
        if (max_bytes && folded_bytes > max_bytes) {
          rc = dd_fail(err, DD_ELIMIT, "%s: constants need more than the %.0f MiB limit",
                       m->name, max_bytes / 1048576.0);
          goto fail;
        }
        outs[k]->data = calloc(b ? b : 1, 1);
        if (!outs[k]->data) {
          rc = dd_fail(err, DD_ENOMEM, "out of memory");
          goto fail;
        }
        p->folded[v] = 1;
        isconst[v] = 1;
      } else {
        offset[v] = arena;
        arena += round_up(b);
        onpath[v] = (unsigned char)path;
      }
    }
    if (fold) {
      void *tmp = need ? calloc(need, 1) : NULL;
      if (need && !tmp) {
        rc = dd_fail(err, DD_ENOMEM, "out of memory");
        goto fail;
      }
      n->op->forward(n, in, outs, tmp);
      free(tmp);
    } else {
      if (need > scratch) scratch = need;
      p->order[p->n_order++] = i;
      p->runs[i] = 1;
      p->flops[i] = n->op->flops ? n->op->flops(n, in, (const dd_tensor *const *)outs) : 0;
      if (path && (flags & DD_PLAN_GRAD) && !n->op->backward) {
        rc = dd_fail(err, DD_EUNSUPPORTED,
                     "%s: node '%s': the gradient of %s is not implemented", m->name, n->name,
                     n->op_type);
        goto fail;
      }
    }
  }
  /* Bound runtime inputs live in the arena too. */
  for (int i = 0; i < n_inputs; i++) {
    int v = inputs[i].value;
    if (isconst[v]) continue;
    size_t b;
    if (tensor_bytes(&p->val[v], &b)) {
      rc = dd_fail(err, DD_ELIMIT, "%s: input too large", m->name);
      goto fail;
    }
    offset[v] = arena;
    arena += round_up(b);
  }
  /* Gradient buffers: values on the input's path. */
  if (flags & DD_PLAN_GRAD)
    for (int v = 0; v < p->nv; v++)
      if (onpath[v] && known[v] && !isconst[v]) {
        size_t b = 0;
        tensor_bytes(&p->val[v], &b);
        goffset[v] = arena;
        arena += round_up(b);
      }
  size_t total = arena + scratch;
  if (max_bytes && total > max_bytes) {
    rc = dd_fail(err, DD_ELIMIT, "%s: this input size needs %.0f MiB of buffers, more than the "
                 "%.0f MiB limit (use a smaller image or tiles, or raise --max-memory)",
                 m->name, total / 1048576.0, max_bytes / 1048576.0);
    goto fail;
  }
  p->arena = aligned_alloc(ALIGN, arena ? arena : ALIGN);
  p->scratch = scratch ? aligned_alloc(ALIGN, round_up(scratch)) : NULL;
  if (!p->arena || (scratch && !p->scratch)) {
    rc = dd_fail(err, DD_ENOMEM, "%s: out of memory allocating %.0f MiB", m->name,
                 total / 1048576.0);
    goto fail;
  }
  memset(p->arena, 0, arena);
  p->arena_bytes = arena;
  p->scratch_bytes = scratch;
  for (int v = 0; v < p->nv; v++) {
    if (known[v] && !isconst[v]) p->val[v].data = (char *)p->arena + offset[v];
    if ((flags & DD_PLAN_GRAD) && onpath[v] && known[v] && !isconst[v]) {
      p->grad[v] = p->val[v];
      p->grad[v].dtype = DD_F32;
      p->grad[v].data = (char *)p->arena + goffset[v];
    }
  }
  for (int v = 0; v < p->nv; v++)
    if (!known[v]) p->val[v].data = NULL;
  free(needed);
  free(known);
  free(isconst);
  free(onpath);
  free(offset);
  free(goffset);
  *out = p;
  return DD_OK;
fail:
  free(needed);
  free(known);
  free(isconst);
  free(onpath);
  free(offset);
  free(goffset);
  dd_plan_free(p);
  return rc;
}

dd_tensor *dd_plan_tensor(dd_plan *p, int v) {
  if (v < 0 || v >= p->nv || !p->val[v].data) return NULL;
  return &p->val[v];
}

dd_tensor *dd_plan_grad(dd_plan *p, int v) {
  if (v < 0 || v >= p->nv || !p->grad[v].data) return NULL;
  return &p->grad[v];
}

void dd_plan_forward(dd_plan *p) {
  const dd_model *m = p->m;
  for (int o = 0; o < p->n_order; o++) {
    const dd_node *n = &m->nodes[p->order[o]];
    const dd_tensor *in[64];
    dd_tensor *outs[64];
    for (int j = 0; j < n->n_in; j++) in[j] = n->in[j] >= 0 ? &p->val[n->in[j]] : NULL;
    for (int k = 0; k < n->n_out; k++) outs[k] = n->out[k] >= 0 ? &p->val[n->out[k]] : NULL;
    double t0 = p->profile ? now_seconds() : 0;
    n->op->forward(n, in, outs, p->scratch);
    if (p->profile) p->profile[2 * p->order[o]] += now_seconds() - t0;
  }
}

void dd_plan_zero_grad(dd_plan *p) {
  for (int v = 0; v < p->nv; v++)
    if (p->grad[v].data)
      memset(p->grad[v].data, 0, (size_t)dd_tensor_numel(&p->grad[v]) * sizeof(float));
}

void dd_plan_backward(dd_plan *p) {
  const dd_model *m = p->m;
  for (int o = p->n_order - 1; o >= 0; o--) {
    const dd_node *n = &m->nodes[p->order[o]];
    const dd_tensor *in[64], *outs[64], *dout[64];
    dd_tensor *din[64];
    int any_out = 0, any_in = 0;
    for (int k = 0; k < n->n_out; k++) {
      int v = n->out[k];
      outs[k] = v >= 0 ? &p->val[v] : NULL;
      dout[k] = v >= 0 && p->grad[v].data ? &p->grad[v] : NULL;
      any_out |= dout[k] != NULL;
    }
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      in[j] = v >= 0 ? &p->val[v] : NULL;
      din[j] = v >= 0 && p->grad[v].data ? &p->grad[v] : NULL;
      any_in |= din[j] != NULL;
    }
    if (!any_out || !any_in) continue;
    double t0 = p->profile ? now_seconds() : 0;
    n->op->backward(n, in, outs, dout, din, p->scratch);
    if (p->profile) p->profile[2 * p->order[o] + 1] += now_seconds() - t0;
  }
}

size_t dd_plan_bytes(const dd_plan *p) { return p->arena_bytes + p->scratch_bytes; }

int64_t dd_plan_node_flops(const dd_plan *p, int node) {
  return node >= 0 && node < p->nn ? p->flops[node] : 0;
}

int dd_plan_node_runs(const dd_plan *p, int node) {
  return node >= 0 && node < p->nn ? p->runs[node] : 0;
}

int64_t dd_model_node_params(const dd_model *m, int node) {
  int64_t n = 0;
  const dd_node *nd = &m->nodes[node];
  for (int j = 0; j < nd->n_in; j++)
    if (nd->in[j] >= 0 && m->values[nd->in[j]].init)
      n += dd_tensor_numel(m->values[nd->in[j]].init);
  return n;
}
