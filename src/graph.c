/* Planner and executor. */
#define _DEFAULT_SOURCE /* madvise */
#include "dream/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
  int borrowed; /* arena and scratch are a host plan's (dd_plan_new_within): not freed here */
  double *profile; /* NULL, or 2 per node: forward and backward seconds (caller's) */
  /* DD_PLAN_REUSE only (NULL otherwise): */
  unsigned char *skip;  /* per order index: forward skipped, the output aliases the input */
  unsigned char *bskip; /* per order index: backward skipped (a Concat's gradients alias) */
  unsigned char *relu_out; /* per order index: the node applies the Relu after it (which is
                              skipped) to its output: DD_OP_FOLD_RELU */
  int *zstart, *zlist; /* gradients zeroed before the backward of order index o:
                          zlist[zstart[o] .. zstart[o + 1]); -1 - v: v is handed over fresh */
  int *seeds, n_seeds; /* gradients dd_plan_zero_grad clears: the targets' */
};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void dd_plan_set_profile(dd_plan *p, double *seconds) { p->profile = seconds; }

static size_t round_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Buffers of at least this size are aligned to it and asked to be backed by huge pages:
 * a kernel walking a column of a wide image touches a new 4 KiB page at every row. */
#define HUGE_PAGE ((size_t)2 << 20)

static void *alloc_buffer(size_t bytes) {
  if (bytes < 2 * HUGE_PAGE) return aligned_alloc(ALIGN, round_up(bytes ? bytes : 1));
  size_t n = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  void *b = aligned_alloc(HUGE_PAGE, n);
#ifdef MADV_HUGEPAGE
  if (b) madvise(b, n, MADV_HUGEPAGE); /* advice only: no huge pages is no error */
#endif
  return b;
}

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
  if (!p->borrowed) {
    free(p->arena);
    free(p->scratch);
  }
  free(p->skip);
  free(p->bskip);
  free(p->relu_out);
  free(p->zstart);
  free(p->zlist);
  free(p->seeds);
  free(p);
}

static int tensor_bytes(const dd_tensor *t, size_t *bytes) {
  int64_t n = dd_shape_numel(&t->shape);
  if (n < 0 || (uint64_t)n > (UINT64_C(1) << 40)) return -1;
  *bytes = (size_t)n * dd_dtype_size(t->dtype);
  return 0;
}

/* What the layout of the arena needs to know about the plan being built. */
typedef struct plan_build {
  const int *targets;
  int n_targets;
  unsigned flags;
  const unsigned char *known, *isconst, *onpath;
  size_t *offset, *goffset;  /* out: arena offsets of each value and of its gradient */
  unsigned char *hasgrad;    /* out: the value has a gradient buffer */
} plan_build;

static int runtime_value(const plan_build *b, int v) {
  return v >= 0 && b->known[v] && !b->isconst[v];
}
/* Bytes of v's data, unrounded. */
static size_t exact_bytes(const dd_plan *p, int v) {
  size_t bytes = 0;
  tensor_bytes(&p->val[v], &bytes);
  return bytes;
}

/* ... and rounded up to ALIGN, as the arena places them. */
static size_t value_bytes(const dd_plan *p, int v) { return round_up(exact_bytes(p, v)); }




/* Every value and every gradient of a value on the input's path in a place of its own:
 * all of them stay readable after forward and backward. */
static size_t layout_separate(const dd_plan *p, plan_build *b) {
  size_t arena = 0;
  for (int v = 0; v < p->nv; v++)
    if (runtime_value(b, v)) {
      b->offset[v] = arena;
      arena += value_bytes(p, v);
    }
  if (b->flags & DD_PLAN_GRAD)
    for (int v = 0; v < p->nv; v++)
      if (runtime_value(b, v) && b->onpath[v]) {
        b->hasgrad[v] = 1;
        b->goffset[v] = arena;
        arena += value_bytes(p, v);
      }
  return arena;
}

/* A buffer to place: live from step `start` to step `end` (inclusive). */
typedef struct buf_item {
  size_t size, off;
  int start, end;
} buf_item;

static int cmp_item_size(const void *a, const void *b) {
  const buf_item *x = *(buf_item *const *)a, *y = *(buf_item *const *)b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return (x->start > y->start) - (x->start < y->start);
}

static int cmp_item_off(const void *a, const void *b) {
  const buf_item *x = *(buf_item *const *)a, *y = *(buf_item *const *)b;
  return (x->off > y->off) - (x->off < y->off);
}

/* Offsets such that buffers live at the same step never overlap: largest first, each at the
 * lowest gap left by the placed buffers whose lifetimes meet its own.  Returns the arena
 * size, or SIZE_MAX when out of memory. */
static size_t place_items(buf_item *items, int n) {
  buf_item **order = malloc(sizeof *order * (size_t)(n ? n : 1));
  buf_item **meet = malloc(sizeof *meet * (size_t)(n ? n : 1));
  if (!order || !meet) {
    free(order);
    free(meet);
    return SIZE_MAX;
  }
  for (int i = 0; i < n; i++) order[i] = &items[i];
  qsort(order, (size_t)n, sizeof *order, cmp_item_size);
  size_t arena = 0;
  for (int i = 0; i < n; i++) {
    buf_item *it = order[i];
    int k = 0;
    for (int j = 0; j < i; j++)
      if (order[j]->start <= it->end && it->start <= order[j]->end) meet[k++] = order[j];
    qsort(meet, (size_t)k, sizeof *meet, cmp_item_off);
    size_t at = 0;
    for (int j = 0; j < k && meet[j]->off < at + it->size; j++)
      if (meet[j]->off + meet[j]->size > at) at = meet[j]->off + meet[j]->size;
    it->off = at;
    if (at + it->size > arena) arena = at + it->size;
  }
  free(order);
  free(meet);
  return arena;
}

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
static int join_concat(const dd_plan *p, const plan_build *b, const dd_node *n, const int *nread,
                       const unsigned char *target, int *sdef, int *slast, int *root,
                       size_t *rel) {
  int grad = sdef == NULL, y = n->out[0];
  if (!concat_is_contiguous(p, n) || !runtime_value(b, y) || (grad && !b->hasgrad[y])) return 0;
  size_t oy, off = 0;
  int ry = find_root(root, rel, y, &oy);
  if ((oy % ALIGN) != 0) return 0;
  for (int k = 0; k < n->n_in; k++) {
    int x = n->in[k];
    size_t ox;
    if (x < 0 || !runtime_value(b, x) || nread[x] != 1 || target[x] || (grad && !b->hasgrad[x]))
      return 0;
    int rx = find_root(root, rel, x, &ox);
    if (rx == ry || ox != 0 || value_bytes(p, rx) != value_bytes(p, x) || (!grad && sdef[rx] < 0))
      return 0;
    for (int j = 0; j < k; j++)
      if (find_root(root, rel, n->in[j], NULL) == rx) return 0;
    if (k < n->n_in - 1 && exact_bytes(p, x) % ALIGN) return 0;
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

/* DD_PLAN_REUSE: values and gradients share memory when their lifetimes do not meet.
 *
 * Steps: bound inputs are written at -1, node o of the order runs forward at o (0..N-1), the
 * targets' gradients are seeded at N, and the backward of node o runs at 2N - o.  A value
 * lives from its producer's step to its last reader's: forward consumers, the backward of
 * nodes that read it (DD_OP_BWD_* say which do not), and the caller for inputs and targets.
 * A gradient lives from its first accumulation (or the seeding) to its producer's backward.
 * An in-place op (DD_OP_INPLACE) writes into its input's memory when it is the last reader
 * of that memory; an alias op (DD_OP_ALIAS) points its output at it and does not run. */
/* Whether node o, the first to write the gradient of v (the root of its set), may be handed
 * it fresh: the op says it can, v is one of its inputs exactly once, and none of its other
 * gradients, in or out, lives in v's buffer. */
static int first_writer_overwrites(const dd_plan *p, const plan_build *b, int *groot, size_t *grel,
                                   int o, int v) {
  const dd_node *n = &p->m->nodes[p->order[o]];
  if (!(n->op->flags & DD_OP_GRAD_FRESH)) return 0;
  int uses = 0;
  for (int j = 0; j < n->n_in; j++) {
    int x = n->in[j];
    if (x == v) uses++;
    else if (x >= 0 && b->hasgrad[x] && find_root(groot, grel, x, NULL) == v) return 0;
  }
  for (int k = 0; k < n->n_out; k++) {
    int y = n->out[k];
    if (y >= 0 && b->hasgrad[y] && find_root(groot, grel, y, NULL) == v) return 0;
  }
  return uses == 1;
}

static size_t layout_shared(dd_plan *p, plan_build *b) {
  const dd_model *m = p->m;
  int nv = p->nv, N = p->n_order, END = 2 * N + 1;
  int *def = malloc(sizeof(int) * (size_t)nv), *last = malloc(sizeof(int) * (size_t)nv);
  int *root = malloc(sizeof(int) * (size_t)nv), *slast = malloc(sizeof(int) * (size_t)nv);
  int *gfirst = malloc(sizeof(int) * (size_t)nv), *item_of = malloc(sizeof(int) * (size_t)nv);
  int *groot = malloc(sizeof(int) * (size_t)nv);
  int *item_of_value = malloc(sizeof(int) * (size_t)nv);
  int *nread = calloc((size_t)nv, sizeof(int)), *sdef = malloc(sizeof(int) * (size_t)nv);
  size_t *rel = calloc((size_t)nv, sizeof(size_t)), *grel = calloc((size_t)nv, sizeof(size_t));
  unsigned char *bwd = calloc((size_t)N + 1, 1), *target = calloc((size_t)nv, 1);
  buf_item *items = malloc(sizeof(buf_item) * 2 * (size_t)nv);
  p->skip = calloc((size_t)N + 1, 1);
  p->bskip = calloc((size_t)N + 1, 1);
  p->relu_out = calloc((size_t)N + 1, 1);
  p->zstart = calloc((size_t)N + 2, sizeof(int));
  p->zlist = malloc(sizeof(int) * (size_t)nv);
  p->seeds = malloc(sizeof(int) * (size_t)(b->n_targets + 1));
  size_t arena = SIZE_MAX;
  if (!def || !last || !root || !slast || !gfirst || !item_of || !groot || !item_of_value ||
      !nread || !sdef || !rel || !grel || !bwd || !target || !items || !p->skip || !p->bskip ||
      !p->relu_out || !p->zstart || !p->zlist || !p->seeds)
    goto done;
  for (int v = 0; v < nv; v++) {
    def[v] = -1;
    last[v] = -1;
    root[v] = v;
    gfirst[v] = END;
  }
  for (int t = 0; t < b->n_targets; t++) target[b->targets[t]] = 1;
  for (int o = 0; o < N; o++) {
    const dd_node *n = &m->nodes[p->order[o]];
    for (int k = 0; k < n->n_out; k++)
      if (runtime_value(b, n->out[k])) def[n->out[k]] = last[n->out[k]] = o;
    for (int j = 0; j < n->n_in; j++) {
      if (runtime_value(b, n->in[j]) && last[n->in[j]] < o) last[n->in[j]] = o;
      if (n->in[j] >= 0) nread[n->in[j]]++;
    }
  }
  for (int v = 0; v < nv; v++)
    if (runtime_value(b, v) && (target[v] || def[v] < 0)) last[v] = END;

  /* Which gradients exist (reach a target) and which backward steps run. */
  if (b->flags & DD_PLAN_GRAD) {
    for (int v = 0; v < nv; v++)
      if (target[v] && runtime_value(b, v) && b->onpath[v]) b->hasgrad[v] = 1;
    for (int o = N - 1; o >= 0; o--) {
      const dd_node *n = &m->nodes[p->order[o]];
      int any_out = 0;
      for (int k = 0; k < n->n_out; k++) any_out |= n->out[k] >= 0 && b->hasgrad[n->out[k]];
      if (!any_out || !n->op->backward) continue;
      for (int j = 0; j < n->n_in; j++) {
        int v = n->in[j];
        if (!runtime_value(b, v) || !b->onpath[v]) continue;
        b->hasgrad[v] = 1;
        bwd[o] = 1;
        if (gfirst[v] == END) gfirst[v] = 2 * N - o;
      }
    }
    for (int o = 0; o < N; o++) {
      if (!bwd[o]) continue;
      const dd_node *n = &m->nodes[p->order[o]];
      unsigned fl = n->op->flags;
      int others = 0;
      for (int j = 1; j < n->n_in; j++) others |= n->in[j] >= 0 && b->hasgrad[n->in[j]];
      for (int j = 0; j < n->n_in; j++) {
        int v = n->in[j];
        if (!runtime_value(b, v) || (j == 0 && (fl & DD_OP_BWD_NO_X) && !others)) continue;
        if (last[v] < 2 * N - o) last[v] = 2 * N - o;
      }
      for (int k = 0; k < n->n_out && !(fl & DD_OP_BWD_NO_OUT); k++) {
        int v = n->out[k];
        if (runtime_value(b, v) && last[v] < 2 * N - o) last[v] = 2 * N - o;
      }
    }
  }

  /* In-place and alias ops join their output to the memory of their input; a Concat takes
   * its inputs into its output's memory. */
  for (int v = 0; v < nv; v++) {
    slast[v] = last[v];
    sdef[v] = def[v];
  }
  for (int o = 0; o < N; o++) {
    const dd_node *n = &m->nodes[p->order[o]];
    unsigned fl = n->op->flags;
    if (fl & DD_OP_CONCAT) {
      if (join_concat(p, b, n, nread, target, sdef, slast, root, rel)) p->skip[o] = 1;
      continue;
    }
    if (!(fl & (DD_OP_INPLACE | DD_OP_ALIAS)) || n->n_in < 1 || n->n_out < 1) continue;
    int x = n->in[0], y = n->out[0];
    if (!runtime_value(b, x) || !runtime_value(b, y) || value_bytes(p, x) != value_bytes(p, y))
      continue;
    size_t ox;
    int r = find_root(root, rel, x, &ox), uses = 0, extra = 0;
    for (int j = 0; j < n->n_in; j++) uses += n->in[j] == x;
    for (int k = 1; k < n->n_out; k++) extra |= n->out[k] >= 0;
    if ((fl & DD_OP_ALIAS) && !extra) {
      p->skip[o] = 1;
    } else if (!(fl & DD_OP_INPLACE) || uses != 1 || slast[r] != o) {
      continue;
    }
    root[y] = r;
    rel[y] = ox;
    if (slast[y] > slast[r]) slast[r] = slast[y];
    /* A Relu in place on the output of an op that can apply it as it writes: folded there,
     * when nothing else reads the value before the Relu (nor after: the producer's backward
     * must not read its output). */
    int q = def[x];
    if ((fl & DD_OP_RELU) && !p->skip[o] && q >= 0 && nread[x] == 1 && !target[x]) {
      const dd_node *pn = &m->nodes[p->order[q]];
      unsigned pf = pn->op->flags;
      if ((pf & DD_OP_FOLD_RELU) && (pf & DD_OP_BWD_NO_OUT) && pn->n_out >= 1 && pn->out[0] == x) {
        p->skip[o] = 1;
        p->relu_out[q] = 1;
      }
    }
  }

  int ni = 0;
  for (int v = 0; v < nv; v++) {
    item_of_value[v] = -1;
    if (!runtime_value(b, v) || find_root(root, rel, v, NULL) != v) continue;
    item_of_value[v] = ni;
    items[ni++] = (buf_item){value_bytes(p, v), 0, sdef[v], slast[v]};
  }
  /* An op with DD_OP_INPLACE_GRAD writing the first gradient of its input takes the memory
   * of its output's gradient, which its own backward reads last: no zeroing, one buffer
   * less. */
  for (int v = 0; v < nv; v++) groot[v] = v;
  for (int o = 0; o < N; o++) {
    const dd_node *n = &m->nodes[p->order[o]];
    if (bwd[o] && (n->op->flags & DD_OP_CONCAT) &&
        join_concat(p, b, n, nread, target, NULL, NULL, groot, grel)) {
      p->bskip[o] = 1;
      continue;
    }
    if (!bwd[o] || !(n->op->flags & DD_OP_INPLACE_GRAD) || n->n_in < 1 || n->n_out < 1) continue;
    int x = n->in[0], y = n->out[0], uses = 0, extra = 0;
    for (int j = 0; j < n->n_in; j++) uses += n->in[j] == x;
    for (int k = 1; k < n->n_out; k++) extra |= n->out[k] >= 0;
    if (x < 0 || y < 0 || uses != 1 || extra || !b->hasgrad[x] || !b->hasgrad[y] ||
        target[x] || target[y] || gfirst[x] != 2 * N - o || value_bytes(p, x) != value_bytes(p, y))
      continue;
    size_t oy;
    int ry = find_root(groot, grel, y, &oy);
    if (find_root(groot, grel, x, NULL) != x || ry == x) continue;
    groot[x] = ry;
    grel[x] = oy;
  }
  int gi0 = ni;
  for (int v = 0; v < nv; v++) {
    item_of[v] = -1;
    if (!b->hasgrad[v] || find_root(groot, grel, v, NULL) != v) continue;
    item_of[v] = ni;
    items[ni++] = (buf_item){value_bytes(p, v), 0, END, -1};
  }
  for (int v = 0; v < nv; v++) { /* each gradient buffer lives as long as its members */
    if (!b->hasgrad[v]) continue;
    buf_item *it = &items[item_of[find_root(groot, grel, v, NULL)]];
    int start = target[v] ? N : gfirst[v], end = def[v] < 0 ? END : 2 * N - def[v];
    if (start < it->start) it->start = start;
    if (end > it->end) it->end = end;
  }
  for (int i = gi0; i < ni; i++)
    if (items[i].end < items[i].start) items[i].end = items[i].start;
  arena = place_items(items, ni);
  if (arena == SIZE_MAX) goto done;
  for (int v = 0; v < nv; v++) {
    size_t o;
    if (runtime_value(b, v))
      b->offset[v] = items[item_of_value[find_root(root, rel, v, &o)]].off + o;
    if (b->hasgrad[v]) b->goffset[v] = items[item_of[find_root(groot, grel, v, &o)]].off + o;
  }

  /* Gradients are zeroed just before their first accumulation, the seeds by zero_grad; or
   * handed over fresh, when the first writer can overwrite them. */
  for (int v = 0; v < nv; v++)
    if (b->hasgrad[v] && !target[v] && groot[v] == v) p->zstart[2 * N - gfirst[v] + 1]++;
  for (int o = 0; o < N; o++) p->zstart[o + 1] += p->zstart[o];
  for (int v = 0; v < nv; v++)
    if (b->hasgrad[v] && !target[v] && groot[v] == v) {
      int o = 2 * N - gfirst[v];
      p->zlist[p->zstart[o]++] = first_writer_overwrites(p, b, groot, grel, o, v) ? -1 - v : v;
    }
  for (int o = N; o > 0; o--) p->zstart[o] = p->zstart[o - 1];
  p->zstart[0] = 0;
  for (int t = 0; t < b->n_targets; t++) {
    int v = b->targets[t], seen = 0;
    for (int i = 0; i < p->n_seeds; i++) seen |= p->seeds[i] == v;
    if (b->hasgrad[v] && !seen) p->seeds[p->n_seeds++] = v;
  }
done:
  free(def);
  free(last);
  free(root);
  free(slast);
  free(gfirst);
  free(item_of);
  free(groot);
  free(item_of_value);
  free(nread);
  free(sdef);
  free(rel);
  free(grel);
  free(bwd);
  free(target);
  free(items);
  return arena;
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
  PLAN_MEASURE, /* infer shapes and lay out the arena: *measured = the plan's bytes */
  PLAN_SHAPES   /* infer shapes only: does this input size work at all */
} plan_mode;

static int too_small_input(const dd_model *m, const dd_binding *inputs, int n_inputs,
                           const int *targets, int n_targets, const dd_node *node, dd_err *err);

static int plan_new(dd_plan *host, const dd_model *m, const dd_binding *inputs, int n_inputs,
                    const int *targets, int n_targets, unsigned flags, size_t max_bytes,
                    plan_mode mode, size_t *measured, dd_shape *target_shapes, dd_plan **out,
                    dd_err *err) {
  char sb[128], s1[32], s2[32];
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
  unsigned char *hasgrad = NULL; /* made once the shapes are known */
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
      /* A shape error deep in the network is most often an image smaller than the
       * network's windows: then say so, and how small an input may be. */
      if (rc != DD_ESHAPE || mode == PLAN_SHAPES ||
          too_small_input(m, inputs, n_inputs, targets, n_targets, n, err) != DD_ESHAPE)
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
                     "%s, more than the %s limit", m->name, n->name, n->op_type, m->values[v].name,
                     dd_shape_str(&outs[k]->shape, sb, sizeof sb),
                     fmt_size(need_b, s1, sizeof s1), fmt_size((double)max_bytes, s2, sizeof s2));
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
          rc = dd_fail(err, DD_ELIMIT, "%s: constants need more than the %s limit",
                       m->name, fmt_size((double)max_bytes, s2, sizeof s2));
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
  if (mode == PLAN_SHAPES) goto fail; /* rc is DD_OK: nothing more to check */
  /* Bound runtime inputs live in the arena too. */
  for (int i = 0; i < n_inputs; i++) {
    int v = inputs[i].value;
    size_t b;
    if (!isconst[v] && tensor_bytes(&p->val[v], &b)) {
      rc = dd_fail(err, DD_ELIMIT, "%s: input too large", m->name);
      goto fail;
    }
  }
  hasgrad = calloc((size_t)p->nv, 1);
  if (!hasgrad) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  plan_build pb = {targets, n_targets, flags, known, isconst, onpath, offset, goffset, hasgrad};
  arena = (flags & DD_PLAN_REUSE) ? layout_shared(p, &pb) : layout_separate(p, &pb);
  if (arena == SIZE_MAX) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  size_t total = arena + scratch;
  if (mode == PLAN_MEASURE) {
    *measured = total;
    for (int t = 0; target_shapes && t < n_targets; t++) target_shapes[t] = p->val[targets[t]].shape;
    goto fail; /* rc is DD_OK: the caller wanted the size only */
  }
  if (max_bytes && total > max_bytes) {
    rc = dd_fail(err, DD_ELIMIT, "%s: this input size needs %s of buffers, more than the "
                 "%s limit",
                 m->name, fmt_size((double)total, s1, sizeof s1),
                 fmt_size((double)max_bytes, s2, sizeof s2));
    goto fail;
  }
  int in_host = host && arena <= host->arena_bytes && scratch <= host->scratch_bytes;
  /* Buffers of its own are held beside the host's, which stays: both count. */
  if (host && !in_host && max_bytes && total + dd_plan_bytes(host) > max_bytes) {
    rc = dd_fail(err, DD_ELIMIT, "%s: this input size needs %s of buffers besides the %s of "
                 "the plan it would share them with, more than the %s limit", m->name,
                 fmt_size((double)total, s1, sizeof s1),
                 fmt_size((double)dd_plan_bytes(host), sb, sizeof sb),
                 fmt_size((double)max_bytes, s2, sizeof s2));
    goto fail;
  }
  if (in_host) {
    p->arena = host->arena;
    p->scratch = host->scratch;
    p->borrowed = 1;
  } else {
    p->arena = alloc_buffer(arena);
    p->scratch = scratch ? alloc_buffer(scratch) : NULL;
  }
  if (!p->arena || (scratch && !p->scratch)) {
    rc = dd_fail(err, DD_ENOMEM, "%s: out of memory allocating %s", m->name,
                 fmt_size((double)total, s1, sizeof s1));
    goto fail;
  }
  /* With DD_PLAN_REUSE every buffer is written before it is read (outputs by their node,
   * gradients zeroed before their first accumulation), and a buffer shared in turn by many
   * values could not stay zero anyway: the pages are left to be faulted in by first use. */
  if (!(flags & DD_PLAN_REUSE)) memset(p->arena, 0, arena);
  p->arena_bytes = arena;
  p->scratch_bytes = scratch;
  for (int v = 0; v < p->nv; v++) {
    if (known[v] && !isconst[v]) p->val[v].data = (char *)p->arena + offset[v];
    if (hasgrad[v]) {
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
  free(hasgrad);
  *out = p;
  return DD_OK;
fail:
  free(needed);
  free(known);
  free(isconst);
  free(onpath);
  free(offset);
  free(goffset);
  free(hasgrad);
  dd_plan_free(p);
  return rc;
}

int dd_plan_new(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                int n_targets, unsigned flags, size_t max_bytes, dd_plan **out, dd_err *err) {
  return plan_new(NULL, m, inputs, n_inputs, targets, n_targets, flags, max_bytes, PLAN_BUILD,
                  NULL, NULL, out, err);
}

int dd_plan_new_within(dd_plan *host, const dd_model *m, const dd_binding *inputs, int n_inputs,
                       const int *targets, int n_targets, unsigned flags, size_t max_bytes,
                       dd_plan **out, dd_err *err) {
  return plan_new(host, m, inputs, n_inputs, targets, n_targets, flags, max_bytes, PLAN_BUILD,
                  NULL, NULL, out, err);
}

int dd_plan_measure(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                    int n_targets, unsigned flags, size_t *bytes, dd_shape *target_shapes,
                    dd_err *err) {
  size_t total = 0;
  int rc = plan_new(NULL, m, inputs, n_inputs, targets, n_targets, flags, 0, PLAN_MEASURE,
                    &total, target_shapes, NULL, err);
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
  return plan_new(NULL, m, work, n_inputs, targets, n_targets, 0, 0, PLAN_SHAPES, NULL, NULL,
                  NULL, err);
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
  if (find_min_input(m, inputs, n_inputs, targets, n_targets, &mw, &mh) || (w >= mw && h >= mh))
    return DD_OK;
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
    if (p->skip && p->skip[o]) continue;
    const dd_node *n = &m->nodes[p->order[o]];
    const dd_tensor *in[64];
    dd_tensor *outs[64];
    for (int j = 0; j < n->n_in; j++) in[j] = n->in[j] >= 0 ? &p->val[n->in[j]] : NULL;
    for (int k = 0; k < n->n_out; k++) outs[k] = n->out[k] >= 0 ? &p->val[n->out[k]] : NULL;
    dd_op_call call = {p->relu_out && p->relu_out[o], 0};
    double t0 = p->profile ? now_seconds() : 0;
    dd_op_forward(n, in, outs, p->scratch, &call);
    if (p->profile) p->profile[2 * p->order[o]] += now_seconds() - t0;
  }
}

/* Floats per thread below which zeroing stays on one thread. */
#define ZERO_CHUNK ((int64_t)1 << 18)

static void zero_tensor(dd_tensor *t) {
  int64_t n = dd_tensor_numel(t), chunks = (n + ZERO_CHUNK - 1) / ZERO_CHUNK;
  float *d = t->data;
#pragma omp parallel for if (chunks > 1) schedule(static)
  for (int64_t c = 0; c < chunks; c++) {
    int64_t a = c * ZERO_CHUNK, len = n - a < ZERO_CHUNK ? n - a : ZERO_CHUNK;
    memset(d + a, 0, (size_t)len * sizeof(float));
  }
}

void dd_plan_zero_grad(dd_plan *p) {
  if (p->seeds) {
    for (int i = 0; i < p->n_seeds; i++) zero_tensor(&p->grad[p->seeds[i]]);
    return;
  }
  for (int v = 0; v < p->nv; v++)
    if (p->grad[v].data) zero_tensor(&p->grad[v]);
}

/* The bits of dd_op_call.fresh for gradient v handed over fresh to node n: those of the
 * inputs that are v (one: see first_writer_overwrites). */
static uint64_t fresh_bits(const dd_node *n, int v) {
  uint64_t bits = 0;
  for (int j = 0; j < n->n_in; j++)
    if (n->in[j] == v) bits |= UINT64_C(1) << j;
  return bits;
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
    if (!any_out || !any_in || (p->bskip && p->bskip[o])) continue;
    dd_op_call call = {0, 0};
    if (p->zstart)
      for (int z = p->zstart[o]; z < p->zstart[o + 1]; z++) {
        int v = p->zlist[z];
        if (v >= 0) zero_tensor(&p->grad[v]);
        else call.fresh |= fresh_bits(n, -1 - v);
      }
    double t0 = p->profile ? now_seconds() : 0;
    dd_op_backward(n, in, outs, dout, din, p->scratch, &call);
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
