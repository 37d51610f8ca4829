/* The executor: a plan (plan/plan.h) run forward, and backward to its input. */
#include "dream/graph.h"

#include <omp.h>
#include <string.h>

#include "model_internal.h"
#include "ops/cpu.h"
#include "ops/op.h"
#include "plan/plan.h"
#include "util.h"

void dd_plan_set_profile(dd_plan *p, double *seconds) { p->profile = seconds; }

dd_tensor *dd_plan_tensor(dd_plan *p, int v) {
  if (v < 0 || v >= p->nv || !p->val[v].data) return NULL;
  return &p->val[v];
}

dd_tensor *dd_plan_grad(dd_plan *p, int v) {
  if (v < 0 || v >= p->nv || !p->grad[v].data) return NULL;
  return &p->grad[v];
}

/* Two threads that share no cache pay for every value one writes and the other reads: on the
 * AMD EPYC VM of sessions 10-15, whose two vCPUs spend minutes sharing a cache (a cache
 * line's round trip about 60 ns) and minutes apart (about 370 ns), MobileNet v3's
 * forward took 0.9 ms on two threads in the first state, 1.8-2.1 ms in the second, and 1.42 ms
 * on one thread in either; a larger network, Swin-T, 27 and 38 ms on two, 50 on one.
 * So a forward-only plan measures the round trip every PROBE_SECONDS; when it goes over
 * SPLIT_NS, and every EXPLORE_SECONDS while it stays there, the plan times TRIES forwards on
 * all threads, then (unless those took over MAX_TRIED_SECONDS: large ops, which split well)
 * TRIES on one, and runs on the faster until the next exploration.  The floats are the same
 * either way (the ops' loops never split a sum differently by thread count on the AVX-512 and
 * AVX2 kernels, as the threads tests check; the generic path's OpenBLAS products would, so it never
 * takes this). */
#define PROBE_SECONDS 2.0
#define EXPLORE_SECONDS 30.0
#define MAX_TRIED_SECONDS 0.1
#define SPLIT_NS 150.0
#define PROBE_TRIPS 200
#define TRIES 2

/* Whether this forward of p runs on one thread: 1 yes, 0 on all, -1 no choice made (the
 * plan does not take part, or its threads share a cache). */
static int forward_on_one_thread(dd_plan *p) {
  if ((p->flags & (DD_PLAN_GRAD | DD_PLAN_PARAMS | DD_PLAN_SERIAL)) || p->profile ||
      dd_par_serial || !dd_kernels_own_products() || omp_get_max_threads() < 2)
    return -1;
  double now = dd_now_seconds();
  if (!p->threads.probed || now - p->threads.probed >= PROBE_SECONDS) {
    p->threads.probed = now;
    int apart = dd_threads_round_trip_ns(PROBE_TRIPS) > SPLIT_NS;
    if (apart && (!p->threads.apart || now - p->threads.explored >= EXPLORE_SECONDS)) {
      p->threads.explored = now;
      p->threads.tried[0] = p->threads.tried[1] = 0;
    }
    p->threads.apart = apart;
  }
  if (!p->threads.apart) return -1;
  if (p->threads.tried[0] < TRIES || p->threads.best[0] > MAX_TRIED_SECONDS) return 0;
  if (p->threads.tried[1] < TRIES) return 1;
  return p->threads.best[1] < p->threads.best[0];
}

static void forward_nodes(dd_plan *p);

void dd_plan_forward(dd_plan *p) {
  int one = forward_on_one_thread(p);
  if (one < 0) {
    forward_nodes(p);
    return;
  }
  int serial = dd_par_serial;
  dd_par_serial = one;
  double t0 = dd_now_seconds();
  forward_nodes(p);
  double t = dd_now_seconds() - t0;
  dd_par_serial = serial;
  if (p->threads.tried[one] < TRIES) {
    if (!p->threads.tried[one] || t < p->threads.best[one]) p->threads.best[one] = t;
    p->threads.tried[one]++;
  }
}

static void forward_nodes(dd_plan *p) {
  int serial = dd_par_serial;
  if (p->flags & DD_PLAN_SERIAL) dd_par_serial = 1;
  for (int o = 0; o < p->n_order; o++) {
    if (p->skip && p->skip[o]) continue;
    const dd_node *n = p->onode[o];
    const dd_tensor *in[64];
    dd_tensor *outs[64];
    for (int j = 0; j < n->n_in; j++) in[j] = n->in[j] >= 0 ? &p->val[n->in[j]] : NULL;
    for (int k = 0; k < n->n_out; k++) outs[k] = n->out[k] >= 0 ? &p->val[n->out[k]] : NULL;
    dd_op_call call = {p->relu_out && p->relu_out[o] == 1, 0, p->bf16,
                       (p->flags & DD_PLAN_EXACT) != 0,
                       p->relu_out && p->relu_out[o] >= 2 ? p->relu_out[o] : 0,
                       p->prep ? p->prep[o] : NULL,
                       p->add_in && p->add_in[o] >= 0 ? dd_f32(&p->val[p->add_in[o]]) : NULL,
                       p->sums ? p->sums[o] : NULL};
    double t0 = p->profile ? dd_now_seconds() : 0;
    dd_op_forward(n, in, outs, p->scratch.base, &call);
    if (p->profile) p->profile[2 * p->order[o]] += dd_now_seconds() - t0;
  }
  dd_par_serial = serial;
}

/* Floats per thread below which zeroing stays on one thread. */
#define ZERO_CHUNK ((int64_t)1 << 18)

static void zero_tensor(dd_tensor *t) {
  int64_t n = dd_tensor_numel(t), chunks = (n + ZERO_CHUNK - 1) / ZERO_CHUNK;
  float *d = t->data;
#pragma omp parallel for if (chunks > 1 && !dd_par_serial) schedule(static)
  for (int64_t c = 0; c < chunks; c++) {
    int64_t a = c * ZERO_CHUNK, len = n - a < ZERO_CHUNK ? n - a : ZERO_CHUNK;
    memset(d + a, 0, (size_t)len * sizeof(float));
  }
}

void dd_plan_zero_grad(dd_plan *p) {
  int serial = dd_par_serial;
  if (p->flags & DD_PLAN_SERIAL) dd_par_serial = 1;
  if (p->seeds) {
    for (int i = 0; i < p->n_seeds; i++) zero_tensor(&p->grad[p->seeds[i]]);
  } else {
    for (int v = 0; v < p->nv; v++)
      if (p->grad[v].data) zero_tensor(&p->grad[v]);
  }
  dd_par_serial = serial;
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
  int serial = dd_par_serial;
  if (p->flags & DD_PLAN_SERIAL) dd_par_serial = 1;
  for (int o = p->n_order - 1; o >= 0; o--) {
    const dd_node *n = p->onode[o];
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
    dd_op_call call = {0, 0, p->bf16, (p->flags & DD_PLAN_EXACT) != 0};
    if (p->zstart)
      for (int z = p->zstart[o]; z < p->zstart[o + 1]; z++) {
        int v = p->zlist[z];
        if (v >= 0) zero_tensor(&p->grad[v]);
        else call.fresh |= fresh_bits(n, -1 - v);
      }
    double t0 = p->profile ? dd_now_seconds() : 0;
    dd_op_backward(n, in, outs, dout, din, p->scratch.base, &call);
    if (p->profile) p->profile[2 * p->order[o] + 1] += dd_now_seconds() - t0;
  }
  dd_par_serial = serial;
}

size_t dd_plan_bytes(const dd_plan *p) {
  return p->arena.size + p->scratch.size + p->packed;
}

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
