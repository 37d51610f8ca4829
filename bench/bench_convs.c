/* bench_convs: GoogLeNet's convolutions, one by one, in dream's fp32 and bf16 kernels and in
 * oneDNN's (Debian libdnnl-dev; the oneDNN columns are left out when the build did not find
 * it), forward and data gradient, side by side.
 *
 *   bench_convs [--size WxH] [--layer L] [--iters N] [--preset P]
 *   bench_convs --peak
 *       the multiply-add rate of one core in vfmadd231ps (fp32) and in vdpbf16ps (bf16),
 *       24 independent accumulators each: what the instructions themselves allow.
 *
 * dream's times are its executor's per-node profile (dd_plan_set_profile) of the dream
 * loop's own plan -- the gradient of --layer's 1/2 sum a^2 at WxH (default 1352x900, the
 * kite.jpg job's largest octave) -- made without and with DD_PLAN_BF16, so they include
 * everything Conv does (im2col blocks, Winograd transforms, bf16 packing).  oneDNN's are one
 * primitive per node on the same shapes, in the memory layouts oneDNN prefers (format_tag
 * any, blocked), with the reorders to and from NCHW left out: that favours oneDNN.  fp32:
 * f32 everywhere; bf16: bf16 source (diff_dst), bf16 weights, f32 destination (diff_src).
 * Every time is the fastest of --iters runs after one warm-up, in ms; the runs of the
 * different kernels alternate so that a change of machine load hits them all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "dream/model.h"
#include "dream/preset.h"
#include "model_internal.h"
#include "ops/bf16.h"
#include "ops/window.h"

#ifdef HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#define MAX_CONV 128
#define MAX_ITERS 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The fastest of the runs: on a machine shared with other jobs the median measures the load
 * as much as the kernel, while the fastest run is the one the load disturbed least. */
static double best(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[0];
}

typedef struct conv_shape {
  int node;
  int64_t n, c, h, w, m, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ho, wo;
  double gflop;
  int grad; /* the plan computes its data gradient */
} conv_shape;

#ifdef HAVE_DNNL
/* One oneDNN convolution (forward, or backward data) ready to run; NULL prim when oneDNN
 * refused the configuration. */
typedef struct dnnl_conv {
  dnnl_primitive_t prim;
  dnnl_memory_t mem[4];
  dnnl_exec_arg_t args[4];
  int nargs;
} dnnl_conv;

static dnnl_memory_t alloc_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q, dnnl_engine_t eng) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q, 0);
  dnnl_memory_t m = NULL;
  if (dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success) return NULL;
  void *h = NULL;
  dnnl_memory_get_data_handle(m, &h);
  size_t bytes = dnnl_memory_desc_get_size(md);
  if (h) memset(h, 0, bytes); /* zeros: any values do for timing, and bf16 zero is 0 */
  return m;
}

static void dnnl_conv_make(const conv_shape *s, int bf16, int backward, dnnl_engine_t eng,
                           dnnl_conv *out) {
  memset(out, 0, sizeof *out);
  dnnl_dims_t src = {s->n, s->c, s->h, s->w}, wei = {s->m, s->c, s->kh, s->kw}, bia = {s->m},
              dst = {s->n, s->m, s->ho, s->wo};
  dnnl_dims_t strides = {s->sh, s->sw}, dil = {s->dh - 1, s->dw - 1}, pl = {s->pt, s->pl},
              pr = {s->pb, s->pr};
  dnnl_data_type_t lo = bf16 ? dnnl_bf16 : dnnl_f32;
  dnnl_memory_desc_t src_md, wei_md, bia_md, dst_md, dsrc_md;
  dnnl_memory_desc_init_by_tag(&src_md, 4, src, lo, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&wei_md, 4, wei, lo, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&bia_md, 1, bia, dnnl_f32, dnnl_a);
  dnnl_memory_desc_init_by_tag(&dst_md, 4, dst, dnnl_f32, dnnl_format_tag_any);
  dnnl_convolution_desc_t fd;
  if (dnnl_dilated_convolution_forward_desc_init(
          &fd, backward ? dnnl_forward_training : dnnl_forward_inference, dnnl_convolution_auto,
          &src_md, &wei_md, &bia_md, &dst_md, strides, dil, pl, pr) != dnnl_success)
    return;
  dnnl_primitive_desc_t fpd = NULL, pd = NULL;
  if (dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL) != dnnl_success) return;
  if (!backward) {
    pd = fpd;
    dnnl_primitive_create(&out->prim, pd);
    out->mem[0] = alloc_md(pd, dnnl_query_src_md, eng);
    out->mem[1] = alloc_md(pd, dnnl_query_weights_md, eng);
    out->mem[2] = alloc_md(pd, dnnl_query_dst_md, eng);
    dnnl_memory_create(&out->mem[3], &bia_md, eng, DNNL_MEMORY_ALLOCATE);
    int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    for (int i = 0; i < 4; i++) out->args[i] = (dnnl_exec_arg_t){kinds[i], out->mem[i]};
    out->nargs = 4;
    return;
  }
  /* data gradient: diff_dst in the low precision, diff_src f32 */
  dnnl_memory_desc_t ddst_md;
  dnnl_memory_desc_init_by_tag(&dsrc_md, 4, src, dnnl_f32, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&ddst_md, 4, dst, lo, dnnl_format_tag_any);
  dnnl_convolution_desc_t bd;
  if (dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_auto, &dsrc_md,
                                                       &wei_md, &ddst_md, strides, dil, pl,
                                                       pr) != dnnl_success ||
      dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd) != dnnl_success) {
    dnnl_primitive_desc_destroy(fpd);
    return;
  }
  dnnl_primitive_create(&out->prim, pd);
  out->mem[0] = alloc_md(pd, dnnl_query_diff_dst_md, eng);
  out->mem[1] = alloc_md(pd, dnnl_query_weights_md, eng);
  out->mem[2] = alloc_md(pd, dnnl_query_diff_src_md, eng);
  int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
  for (int i = 0; i < 3; i++) out->args[i] = (dnnl_exec_arg_t){kinds[i], out->mem[i]};
  out->nargs = 3;
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(pd);
}

static double dnnl_conv_run(dnnl_conv *c, dnnl_stream_t st) {
  if (!c->prim) return -1;
  double t0 = now();
  dnnl_primitive_execute(c->prim, st, c->nargs, c->args);
  dnnl_stream_wait(st);
  return now() - t0;
}

static void dnnl_conv_free(dnnl_conv *c) {
  if (c->prim) dnnl_primitive_destroy(c->prim);
  for (int i = 0; i < 4; i++)
    if (c->mem[i]) dnnl_memory_destroy(c->mem[i]);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define N_ACC 24
/* GMAC/s of one core: fp32 FMA (16 per instruction) or bf16 dot products (32). */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static double peak(int bf16) {
  __m512 acc[N_ACC];
  for (int i = 0; i < N_ACC; i++) acc[i] = _mm512_set1_ps((float)i * 1e-9f);
  __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  __m512bh xb = _mm512_cvtne2ps_pbh(x, x), yb = _mm512_cvtne2ps_pbh(y, y);
  long n = 4000000;
  double t0 = now();
  for (long i = 0; i < n; i++) {
    if (bf16) {
#pragma GCC unroll 24
      for (int r = 0; r < N_ACC; r++) acc[r] = _mm512_dpbf16_ps(acc[r], xb, yb);
      __asm__ volatile("" : "+v"(xb), "+v"(yb));
    } else {
#pragma GCC unroll 24
      for (int r = 0; r < N_ACC; r++) acc[r] = _mm512_fmadd_ps(x, y, acc[r]);
      __asm__ volatile("" : "+v"(x), "+v"(y));
    }
  }
  double t = now() - t0;
  float sink = 0;
  for (int i = 0; i < N_ACC; i++) sink += _mm512_reduce_add_ps(acc[i]);
  __asm__ volatile("" : : "x"(sink));
  return (double)n * N_ACC * (bf16 ? 32 : 16) / t * 1e-9;
}

static int peak_main(void) {
  if (dd_bf16_kernel() == DD_BF16_NONE) {
    fprintf(stderr, "bench_convs: this CPU lacks AVX512-BF16\n");
    return 1;
  }
  double best[2] = {0, 0};
  for (int r = 0; r < 5; r++)
    for (int v = 0; v < 2; v++) {
      double g = peak(v);
      if (g > best[v]) best[v] = g;
    }
  printf("peak one core, best of 5: fp32 vfmadd231ps %.1f GMAC/s, bf16 vdpbf16ps %.1f GMAC/s "
         "(%.2fx)\n", best[0], best[1], best[1] / best[0]);
  return 0;
}
#else
static int peak_main(void) {
  fprintf(stderr, "bench_convs: --peak needs x86-64\n");
  return 1;
}
#endif

/* The Conv nodes of the plan with their geometry (from the plan's shapes and the node's
 * window attributes). */
static int find_convs(const dd_model *m, dd_plan *p, conv_shape *out) {
  int n = 0;
  for (int i = 0; i < m->n_nodes && n < MAX_CONV; i++) {
    const dd_node *nd = &m->nodes[i];
    if (strcmp(nd->op_type, "Conv") || !dd_plan_node_runs(p, i)) continue;
    const dd_tensor *x = dd_plan_tensor(p, nd->in[0]), *w = m->values[nd->in[1]].init;
    int64_t group = 1;
    if (!x || !w || x->shape.ndim != 4 ||
        dd_model_node_attr_int(m, i, "group", 1, &group, NULL) || group != 1)
      continue;
    dd_window_attrs a;
    dd_window win;
    if (dd_window_parse(nd, 0, &a, NULL) ||
        dd_window_resolve(&a, 2, x->shape.d + 2, w->shape.d + 2, &win, NULL))
      continue;
    conv_shape *s = &out[n++];
    *s = (conv_shape){i,          x->shape.d[0], x->shape.d[1], x->shape.d[2], x->shape.d[3],
                      w->shape.d[0], win.k[1],    win.k[2],      win.s[1],      win.s[2],
                      win.d[1],   win.d[2],      win.pb[1],     win.pb[2],     win.pe[1],
                      win.pe[2],  win.out[1],    win.out[2],    0,             0};
    s->gflop = 2e-9 * (double)(s->n * s->m * s->ho * s->wo * s->c * s->kh * s->kw);
    s->grad = dd_plan_grad(p, nd->in[0]) != NULL;
  }
  return n;
}

int main(int argc, char **argv) {
  const char *preset = "googlenet", *layer_name = "inception_4c/output";
  int w = 1352, h = 900, iters = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      if (sscanf(argv[++i], "%dx%d", &w, &h) != 2) return 2;
    } else if (!strcmp(argv[i], "--layer") && i + 1 < argc) {
      layer_name = argv[++i];
    } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
      iters = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--peak")) {
      return peak_main();
    } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
      preset = argv[++i];
    } else {
      fprintf(stderr,
              "usage: bench_convs [--size WxH] [--layer L] [--iters N] [--preset P] | --peak\n");
      return 2;
    }
  }
  if (iters < 1 || iters > MAX_ITERS) iters = 5;
  dd_err err;
  dd_preset ps = {0};
  dd_model *m = NULL;
  int layer;
  if (dd_preset_resolve(preset, &ps, &err) || dd_model_load(ps.model_path, &m, &err) ||
      dd_model_resolve(m, layer_name, &layer, &err)) {
    fprintf(stderr, "bench_convs: %s\n", err.msg);
    return 1;
  }
  int in = dd_model_input(m), nn = dd_model_num_nodes(m);
  int64_t dims[4] = {1, 3, h, w};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  dd_plan *plan[2];
  double *prof[2];
  for (int v = 0; v < 2; v++) {
    /* no DD_PLAN_REUSE: every Conv input stays readable for find_convs */
    if (dd_plan_new(m, &b, 1, &layer, 1, DD_PLAN_GRAD | (v ? DD_PLAN_BF16 : 0), 0, &plan[v],
                    &err)) {
      fprintf(stderr, "bench_convs: %s\n", err.msg);
      return 1;
    }
    prof[v] = calloc((size_t)(2 * nn * MAX_ITERS), sizeof(double));
    float *x = dd_f32(dd_plan_tensor(plan[v], in));
    uint64_t st = 1;
    for (int64_t i = 0; i < 3 * (int64_t)w * h; i++)
      x[i] = (float)((st = st * 6364136223846793005ull + 1) >> 40) / (1 << 24) * 100.f - 50.f;
  }
  conv_shape cs[MAX_CONV];
  int nc = find_convs(m, plan[0], cs);
  /* dream's two plans, alternating; each run profiled into its own slot */
  double *scratch = calloc((size_t)(2 * nn), sizeof(double));
  for (int r = -1; r < iters; r++)
    for (int v = 0; v < 2; v++) {
      memset(scratch, 0, (size_t)(2 * nn) * sizeof(double));
      dd_plan_set_profile(plan[v], scratch);
      dd_plan_forward(plan[v]);
      dd_plan_zero_grad(plan[v]);
      dd_tensor *a = dd_plan_tensor(plan[v], layer), *ga = dd_plan_grad(plan[v], layer);
      memcpy(ga->data, a->data, (size_t)dd_tensor_numel(a) * sizeof(float));
      dd_plan_backward(plan[v]);
      if (r >= 0)
        for (int i = 0; i < 2 * nn; i++) prof[v][(size_t)i * MAX_ITERS + r] = scratch[i];
    }
  double ours[MAX_CONV][4]; /* fwd fp32, fwd bf16, bwd fp32, bwd bf16 */
  for (int k = 0; k < nc; k++)
    for (int v = 0; v < 2; v++)
      for (int d = 0; d < 2; d++)
        ours[k][2 * d + v] = best(prof[v] + (size_t)(2 * cs[k].node + d) * MAX_ITERS, iters);
  double dn[MAX_CONV][4];
  for (int k = 0; k < nc; k++)
    for (int j = 0; j < 4; j++) dn[k][j] = -1;
#ifdef HAVE_DNNL
  dnnl_engine_t eng;
  dnnl_stream_t st;
  dnnl_engine_create(&eng, dnnl_cpu, 0);
  dnnl_stream_create(&st, eng, dnnl_stream_default_flags);
  for (int k = 0; k < nc; k++) {
    dnnl_conv c[4];
    double t[4][MAX_ITERS];
    for (int j = 0; j < 4; j++) dnnl_conv_make(&cs[k], j & 1, j >> 1, eng, &c[j]);
    for (int r = -1; r < iters; r++)
      for (int j = 0; j < 4; j++) {
        double s = dnnl_conv_run(&c[j], st);
        if (r >= 0) t[j][r] = s;
      }
    for (int j = 0; j < 4; j++) {
      dn[k][j] = c[j].prim ? best(t[j], iters) : -1;
      dnnl_conv_free(&c[j]);
    }
  }
  dnnl_stream_destroy(st);
  dnnl_engine_destroy(eng);
#endif
  printf("# GoogLeNet to %s at %dx%d, best of %d runs (ms); bf16 kernel: %s; oneDNN: %s\n",
         layer_name, w, h, iters,
         dd_bf16_kernel() == DD_BF16_AVX512 ? "AVX512-BF16" : "none (bf16 runs fp32)",
#ifdef HAVE_DNNL
         "yes"
#else
         "not built"
#endif
  );
  printf("%-28s %-22s %6s | %8s %8s %8s %8s | %8s %8s %8s %8s\n", "conv", "CxHxW>M kxk/s", "GFLOP",
         "fw32", "fwbf16", "dnnl32", "dnnlbf16", "bw32", "bwbf16", "dnnl32", "dnnlbf16");
  double sum[8] = {0};
  for (int k = 0; k < nc; k++) {
    const conv_shape *s = &cs[k];
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lldx%lld>%lld %lldx%lld/%lld", (long long)s->c,
             (long long)s->h, (long long)s->w, (long long)s->m, (long long)s->kh,
             (long long)s->kw, (long long)s->sh);
    double row[8] = {ours[k][0], ours[k][1], dn[k][0], dn[k][1],
                     s->grad ? ours[k][2] : -1, s->grad ? ours[k][3] : -1, s->grad ? dn[k][2] : -1,
                     s->grad ? dn[k][3] : -1};
    printf("%-28s %-22s %6.2f |", dd_model_node_name(m, s->node), shape, s->gflop);
    for (int j = 0; j < 8; j++) {
      if (row[j] < 0) printf(" %8s", "-");
      else printf(" %8.2f", row[j] * 1e3);
      if (row[j] > 0) sum[j] += row[j];
      if (j == 3) printf(" |");
    }
    printf("\n");
  }
  printf("%-28s %-22s %6s |", "total", "", "");
  for (int j = 0; j < 8; j++) {
    printf(" %8.1f", sum[j] * 1e3);
    if (j == 3) printf(" |");
  }
  printf("\n");
  for (int v = 0; v < 2; v++) {
    dd_plan_free(plan[v]);
    free(prof[v]);
  }
  free(scratch);
  dd_model_free(m);
  dd_preset_clear(&ps);
  return 0;
}
