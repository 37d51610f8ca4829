/* bench_engine: the engine's side of the benchmark harness (bench/run.py runs it).
 *
 *   bench_engine sgemm   [--threads N] [--size N] [--reps N]
 *       cblas_sgemm GFLOP/s on N x N x N (the ceiling the convolutions are judged against).
 *   bench_engine forward [--preset P] [--layer L] [--size WxH] [--iters N] [--warmup N]
 *       forward pass only, from the image to the layer (one plan, reused).
 *   bench_engine grad    [... same ...] [--tile N] [--max-memory BYTES]
 *       one dream iteration's gradient (forward + backward to the pixels, through
 *       dd_dreamer_gradient, tiled when asked or when over the memory budget).
 *   bench_engine gemm    --shape MxNxK [--reps N] [--cold]
 *       OpenBLAS cblas_sgemm against dd_sgemm (src/ops/sgemm.c) on one product shape, and
 *       dd_sgemm_packed from B packed once, as a plan packs a layer's weights (--cold: caches
 *       flushed before each product, as a layer's weights come in a network).
 *   bench_engine count   [--preset P] [--layer L] [--size WxH]
 *       the forward convolution GFLOP at that size, without running anything.
 *   bench_engine pingpong [--reps N]
 *       the round trip of one cache line between two OpenMP threads, in ns
 *       (dd_threads_round_trip_ns, the probe forward-only plans take every 2 s): what every
 *       barrier and every value one thread writes and the other reads pays.  On the AMD EPYC
 *       VM of sessions 10-15 it was about 60 ns for minutes, then about 370 ns (the two vCPUs
 *       no longer sharing a cache), when every two-thread forward, ours and ONNX Runtime's,
 *       took 45-70% longer; bench/modern.py records it beside each round.
 *   bench_engine serve   [--preset P] [--layer L] [--size WxH] [--exact]
 *       forward's plan built once, then forwards and probes on request, one command per line
 *       of stdin (see serve_forward): bench/modern.py --pairs alternates it with ONNX
 *       Runtime's bench/ort_forward.js --serve run by run.
 *   --profile  also prints the time per operator type and every node's time.
 *   --exact    forward: plans with DD_PLAN_EXACT (as dd_infer does: run, classify, audit).
 *
 * Prints one line of key=value pairs per run (times in ms, the median over --iters after
 * --warmup), for the harness to parse.  Convolution GFLOP counts forward Conv work, twice
 * for `grad` (the data gradient of a convolution costs what its forward does).
 */
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "dream/image.h"
#include "dream/model.h"
#include "dream/preset.h"
#include "ops/cpu.h"
#include "ops/sgemm.h"
#include "util.h"

/* The same OpenMP spin default as the dream CLI (src/cli/omp_env.c): set GOMP_SPINCOUNT and
 * start again, unless the user chose a wait policy. */
__attribute__((constructor)) static void omp_spin_default(int argc, char **argv, char **envp) {
  (void)envp;
  if (argc < 1 || !argv || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", "10000", 0) != 0) return;
  execv("/proc/self/exe", argv);
}

/* OpenBLAS's own thread control (declared in its cblas.h; repeated so any cblas.h works). */
void openblas_set_num_threads(int n);

typedef struct bench_opts {
  const char *preset, *layer;
  int gm, gn, gk;
  int w, h, iters, warmup, tile, profile, exact, threads, size, reps, cold;
  size_t max_memory;
} bench_opts;

/* Wall time; with BENCH_CPU_TIME set, the process's CPU time instead, which a loaded machine
 * disturbs less (for single-thread comparisons during development). */
static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(getenv("BENCH_CPU_TIME") ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

static int usage(void) {
  fputs("usage: bench_engine sgemm|forward|grad|count|gemm [--preset P] [--layer L] [--size WxH|N]\n"
        "       [--iters N] [--warmup N] [--tile N] [--max-memory BYTES] [--threads N]\n"
        "       [--reps N] [--profile] [--exact] [--shape MxNxK] [--cold]\n"
        "       bench_engine pingpong [--reps N]\n"
        "       bench_engine serve [--preset P] [--layer L] [--size WxH] [--exact]\n",
        stderr);
  return 2;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
  o->preset = "googlenet";
  o->layer = "inception_4c/output";
  o->w = 1024, o->h = 768;
  o->iters = 5, o->warmup = 1;
  o->size = 2048, o->reps = 5, o->threads = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--profile")) {
      o->profile = 1;
      continue;
    }
    if (!strcmp(a, "--cold")) {
      o->cold = 1;
      continue;
    }
    if (!strcmp(a, "--exact")) {
      o->exact = 1;
      continue;
    }
    if (!v) return -1;
    i++;
    if (!strcmp(a, "--preset")) o->preset = v;
    else if (!strcmp(a, "--layer")) o->layer = v;
    else if (!strcmp(a, "--size")) {
      if (sscanf(v, "%dx%d", &o->w, &o->h) != 2) {
        if (sscanf(v, "%d", &o->size) != 1) return -1;
      }
    } else if (!strcmp(a, "--iters")) o->iters = atoi(v);
    else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
    else if (!strcmp(a, "--tile")) o->tile = atoi(v);
    else if (!strcmp(a, "--threads")) o->threads = atoi(v);
    else if (!strcmp(a, "--reps")) o->reps = atoi(v);
    else if (!strcmp(a, "--max-memory")) o->max_memory = (size_t)strtoull(v, NULL, 10);
    else if (!strcmp(a, "--shape")) {
      if (sscanf(v, "%dx%dx%d", &o->gm, &o->gn, &o->gk) != 3) return -1;
    }
    else return -1;
  }
  if (o->w < 1 || o->h < 1 || o->iters < 1 || o->warmup < 0 || o->size < 1 || o->reps < 1)
    return -1;
  return 0;
}

static int bench_sgemm(const bench_opts *o) {
  if (o->threads > 0) openblas_set_num_threads(o->threads);
  int n = o->size;
  float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
        *c = malloc(sizeof(float) * (size_t)n * n);
  double *t = malloc(sizeof(double) * (size_t)o->reps);
  if (!a || !b || !c || !t) return 1;
  uint64_t s = 1;
  for (size_t i = 0; i < (size_t)n * n; i++) {
    a[i] = (float)(dd_rng_next(&s) >> 40) / (1 << 24) - 0.5f;
    b[i] = (float)(dd_rng_next(&s) >> 40) / (1 << 24) - 0.5f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
  for (int r = 0; r < o->reps; r++) {
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    t[r] = now_seconds() - t0;
  }
  double med = median(t, o->reps);
  printf("sgemm threads=%d size=%d median_ms=%.3f gflops=%.1f\n", o->threads, n, med * 1e3,
         2.0 * n * n * (double)n / med * 1e-9);
  free(a), free(b), free(c), free(t);
  return 0;
}

static int bench_gemm(const bench_opts *o) {
  int m = o->gm, n = o->gn, k = o->gk;
  if (m < 1 || n < 1 || k < 1) return usage();
  float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n);
  float *c = malloc(sizeof(float) * (size_t)m * n), *c2 = malloc(sizeof(float) * (size_t)m * n);
  double *t = malloc(sizeof(double) * (size_t)o->reps), *t2 = malloc(sizeof(double) * (size_t)o->reps);
  double *t3 = malloc(sizeof(double) * (size_t)o->reps);
  if (!a || !b || !c || !c2 || !t || !t2 || !t3) return 1;
  uint64_t s = 1;
  for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(dd_rng_next(&s) >> 40) / (1 << 24) - 0.5f;
  for (size_t i = 0; i < (size_t)k * n; i++) b[i] = (float)(dd_rng_next(&s) >> 40) / (1 << 24) - 0.5f;
  /* B packed once, as a plan packs a layer's weights (NULL where the kernels take no pack) */
  float *pack = dd_sgemm_pack_new(k, n, b, n, 0, 1);
  /* --cold: 64 MiB written before each product, so A and B come from memory as the weights
   * of a layer do inside a network */
  size_t flush_n = o->cold ? (size_t)16 << 20 : 0;
  float *flush = flush_n ? malloc(sizeof(float) * flush_n) : NULL;
  if (flush_n && !flush) return 1;
  for (int r = 0; r < o->reps; r++) {
    for (size_t i = 0; i < flush_n; i++) flush[i] = (float)(i + (size_t)r);
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.f, a, k, b, n, 0.f, c, n);
    t[r] = now_seconds() - t0;
    for (size_t i = 0; i < flush_n; i++) flush[i] = (float)(i + (size_t)r + 1);
    t0 = now_seconds();
    dd_sgemm(m, n, k, a, k, 1, b, n, c2, n, 0, NULL, 1);
    t2[r] = now_seconds() - t0;
    t3[r] = 0;
    if (!pack) continue;
    for (size_t i = 0; i < flush_n; i++) flush[i] = (float)(i + (size_t)r + 2);
    t0 = now_seconds();
    dd_sgemm_packed(m, n, k, a, k, 1, pack, c2, n, 0, NULL, 1, NULL);
    t3[r] = now_seconds() - t0;
  }
  double err = 0;
  for (size_t i = 0; i < (size_t)m * n; i++) {
    double d = c[i] > c2[i] ? c[i] - c2[i] : c2[i] - c[i];
    err = d > err ? d : err;
  }
  double f = 2.0 * m * n * (double)k;
  double mt = median(t, o->reps), mt2 = median(t2, o->reps), mt3 = median(t3, o->reps);
  printf("gemm shape=%dx%dx%d cblas_ms=%.3f cblas_gflops=%.1f dd_ms=%.3f dd_gflops=%.1f "
         "packed_ms=%.3f max_diff=%.2g\n", m, n, k, mt * 1e3, f / mt * 1e-9, mt2 * 1e3,
         f / mt2 * 1e-9, mt3 * 1e3, err);
  free(a), free(b), free(c), free(c2), free(t), free(t2), free(t3), free(flush), free(pack);
  return 0;
}

/* Sum of the forward FLOPs of the Conv nodes the plan runs. */
static double conv_flops(const dd_model *m, const dd_plan *p) {
  double f = 0;
  for (int i = 0; i < dd_model_num_nodes(m); i++)
    if (dd_plan_node_runs(p, i) && !strcmp(dd_model_node_op(m, i), "Conv"))
      f += (double)dd_plan_node_flops(p, i);
  return f;
}

typedef struct op_time {
  const char *op;
  double fwd, bwd;
} op_time;

static void print_profile(const dd_model *m, const dd_plan *p, const double *sec, int runs) {
  int nn = dd_model_num_nodes(m);
  op_time ops[64];
  int nops = 0;
  double total = 0;
  for (int i = 0; i < nn; i++) {
    if (!dd_plan_node_runs(p, i)) continue;
    const char *op = dd_model_node_op(m, i);
    int k = 0;
    while (k < nops && strcmp(ops[k].op, op)) k++;
    if (k == nops && nops < 64) ops[nops++] = (op_time){op, 0, 0};
    if (k < nops) {
      ops[k].fwd += sec[2 * i] / runs;
      ops[k].bwd += sec[2 * i + 1] / runs;
    }
    total += (sec[2 * i] + sec[2 * i + 1]) / runs;
  }
  printf("# per operator type (ms per run): forward backward\n");
  for (int k = 0; k < nops; k++)
    printf("#   %-20s %9.2f %9.2f  %4.1f%%\n", ops[k].op, ops[k].fwd * 1e3, ops[k].bwd * 1e3,
           100 * (ops[k].fwd + ops[k].bwd) / total);
  printf("# nodes (ms per run, forward backward, conv GFLOP/s forward backward):\n");
  for (int i = 0; i < nn; i++) {
    if (!dd_plan_node_runs(p, i)) continue;
    double f = sec[2 * i] / runs, b = sec[2 * i + 1] / runs;
    double fl = (double)dd_plan_node_flops(p, i);
    if (strcmp(dd_model_node_op(m, i), "Conv")) fl = 0;
    printf("#   %-32s %-8s %8.4f %8.4f  %6.1f %6.1f\n", dd_model_node_name(m, i),
           dd_model_node_op(m, i), f * 1e3, b * 1e3, f > 0 ? fl / f * 1e-9 : 0,
           b > 0 ? fl / b * 1e-9 : 0);
  }
}

/* A deterministic test picture: smooth colour ramps plus noise, 0..255. */
static void fill_image(dd_image *im) {
  uint64_t s = 7;
  for (int y = 0; y < im->h; y++)
    for (int x = 0; x < im->w; x++)
      for (int c = 0; c < 3; c++) {
        float ramp = c == 0 ? 255.f * x / im->w : c == 1 ? 255.f * y / im->h : 128.f;
        float noise = (float)(dd_rng_next(&s) >> 40) / (1 << 24) * 64.f - 32.f;
        float v = ramp + noise;
        im->rgb[((size_t)y * im->w + x) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
}

/* The preset's model and the layer --layer names in it; on failure, prints why and returns
 * 1 with nothing to free. */
static int load_model(const bench_opts *o, dd_preset *ps, dd_model **m, int *layer) {
  dd_err err;
  *m = NULL;
  if (dd_preset_resolve(o->preset, ps, &err) || dd_model_load(ps->model_path, m, &err) ||
      dd_model_resolve(*m, o->layer, layer, &err)) {
    fprintf(stderr, "bench_engine: %s\n", err.msg);
    dd_model_free(*m);
    *m = NULL;
    dd_preset_clear(ps);
    return 1;
  }
  return 0;
}

/* The forward-only plan of `forward` and `serve` (DD_PLAN_EXACT with --exact), its input set
 * from the test picture. */
static int forward_plan(const bench_opts *o, dd_model *m, int layer, const dd_preproc *pre,
                        const dd_image *im, dd_plan **p, dd_err *err) {
  int in = dd_model_input(m);
  int64_t dims[4] = {1, 3, o->h, o->w};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  unsigned flags = DD_PLAN_REUSE | (o->exact ? DD_PLAN_EXACT : 0u);
  if (dd_plan_new(m, &b, 1, &layer, 1, flags, o->max_memory, p, err)) return 1;
  dd_image_to_input(im, pre, dd_f32(dd_plan_tensor(*p, in)));
  return 0;
}

static int count_flops(const bench_opts *o) {
  dd_err err;
  dd_preset ps = {0};
  dd_model *m = NULL;
  dd_plan *p = NULL;
  int layer, in;
  if (load_model(o, &ps, &m, &layer)) return 1;
  dd_preset_clear(&ps);
  in = dd_model_input(m);
  /* The plan's buffers are allocated but never touched, so this costs address space only. */
  int64_t dims[4] = {1, 3, o->h, o->w};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  if (dd_plan_new(m, &b, 1, &layer, 1, 0, 0, &p, &err)) {
    fprintf(stderr, "bench_engine: %s\n", err.msg);
    dd_model_free(m);
    return 1;
  }
  printf("count size=%dx%d conv_gflop=%.4f\n", o->w, o->h, conv_flops(m, p) * 1e-9);
  dd_plan_free(p);
  dd_model_free(m);
  return 0;
}

static int bench_model(const bench_opts *o, int grad) {
  dd_err err;
  dd_preset ps = {0};
  dd_model *m = NULL;
  int layer;
  if (load_model(o, &ps, &m, &layer)) return 1;
  int nn = dd_model_num_nodes(m), total = o->warmup + o->iters;
  double *t = calloc((size_t)total, sizeof(double));
  double *prof = calloc(2 * (size_t)nn, sizeof(double));
  dd_image *im = NULL;
  int rc = 1, tiles = 1, tw = o->w, th = o->h;
  double flops = 0, plan_mb = 0;
  if (!t || !prof || dd_image_new(o->w, o->h, &im, &err)) goto done;
  fill_image(im);
  double t_setup = now_seconds();
  if (!grad) {
    dd_plan *p;
    if (forward_plan(o, m, layer, &ps.pre, im, &p, &err)) goto done;
    t_setup = now_seconds() - t_setup;
    for (int r = 0; r < total; r++) {
      if (o->profile && r == o->warmup) dd_plan_set_profile(p, prof);
      double t0 = now_seconds();
      dd_plan_forward(p);
      t[r] = now_seconds() - t0;
    }
    flops = conv_flops(m, p);
    plan_mb = dd_plan_bytes(p) / 1048576.0;
    if (o->profile) print_profile(m, p, prof, o->iters);
    dd_plan_free(p);
  } else {
    dd_dream_params dp;
    dd_dream_params_init(&dp);
    dp.n_layers = 1;
    dp.layers[0] = (dd_dream_layer){layer, -1, 1.f};
    dp.tile = o->tile;
    dp.max_memory = o->max_memory;
    dd_dreamer *d;
    if (dd_dreamer_new(m, &ps.pre, &dp, &d, &err)) goto done;
    float *g = malloc(sizeof(float) * (size_t)o->w * o->h * 3);
    uint64_t s = 3;
    for (int r = 0; r < total && g; r++) {
      int dx = (int)(dd_rng_next(&s) % 65) - 32, dy = (int)(dd_rng_next(&s) % 65) - 32;
      double t0 = now_seconds();
      if (dd_dreamer_gradient(d, im, dx, dy, g, NULL, &err)) {
        free(g);
        dd_dreamer_free(d);
        goto done;
      }
      t[r] = now_seconds() - t0;
      if (r == 0) t_setup = t[0];
    }
    free(g);
    dd_dreamer_tile_size(d, &tw, &th);
    dd_dreamer_free(d);
    /* Count the work with a forward plan of one tile, built after timing. */
    tiles = ((o->w + tw - 1) / tw) * ((o->h + th - 1) / th);
    int in = dd_model_input(m);
    int64_t dims[4] = {1, 3, th, tw};
    dd_binding b = {in, dd_shape_make(4, dims), NULL};
    double rss = peak_rss_mb();
    dd_plan *p;
    if (dd_plan_new(m, &b, 1, &layer, 1, DD_PLAN_GRAD | DD_PLAN_REUSE, 0, &p, &err)) goto done;
    flops = 2 * conv_flops(m, p) * tiles;
    plan_mb = dd_plan_bytes(p) / 1048576.0;
    if (o->profile) {
      dd_plan_set_profile(p, prof);
      int in_v = dd_model_input(m);
      dd_image_to_input(im, &ps.pre, dd_f32(dd_plan_tensor(p, in_v)));
      for (int r = 0; r < o->iters; r++) {
        dd_plan_forward(p);
        dd_plan_zero_grad(p);
        dd_tensor *a = dd_plan_tensor(p, layer), *ga = dd_plan_grad(p, layer);
        memcpy(ga->data, a->data, (size_t)dd_tensor_numel(a) * sizeof(float));
        dd_plan_backward(p);
      }
      print_profile(m, p, prof, o->iters);
    }
    dd_plan_free(p);
    printf("# peak RSS before the counting plan: %.1f MB\n", rss);
  }
  double med = median(t + o->warmup, o->iters), best = t[o->warmup];
  for (int r = o->warmup; r < total; r++) best = t[r] < best ? t[r] : best;
  printf("%s size=%dx%d tile=%dx%d tiles=%d iters=%d median_ms=%.2f min_ms=%.2f first_ms=%.2f "
         "conv_gflop=%.2f conv_gflops=%.1f plan_mb=%.1f peak_rss_mb=%.1f\n",
         grad ? "grad" : "forward", o->w, o->h, tw, th, tiles, o->iters, med * 1e3, best * 1e3,
         t_setup * 1e3, flops * 1e-9, flops / med * 1e-9, plan_mb, peak_rss_mb());
  rc = 0;
done:
  if (rc) fprintf(stderr, "bench_engine: %s\n", err.msg);
  dd_image_free(im);
  free(t);
  free(prof);
  dd_model_free(m);
  dd_preset_clear(&ps);
  return rc;
}

/* `serve`: the forward plan built once, then one command per line of stdin, one answer line
 * each on stdout, for a harness that alternates engines run by run (bench/modern.py --pairs):
 *   run N   N forwards: `runs ms=A,B,... cpu_ms=A,B,...`, each run's wall time and the
 *           process's CPU time (all threads) in ms;
 *   probe   `probe round_trip_ns=X` (dd_threads_round_trip_ns over 1000 trips, again while it
 *           gives up; 0 on one CPU);
 *   quit    (or end of input) exits. */
static int serve_forward(const bench_opts *o) {
  dd_err err;
  dd_preset ps = {0};
  dd_model *m = NULL;
  dd_plan *p = NULL;
  dd_image *im = NULL;
  enum { MAX_RUNS = 10000 }; /* forwards per `run` */
  double *wall = NULL, *cpu = NULL;
  int layer, rc = 1;
  if (load_model(o, &ps, &m, &layer)) return 1;
  wall = malloc(sizeof(double) * MAX_RUNS);
  cpu = malloc(sizeof(double) * MAX_RUNS);
  if (!wall || !cpu) {
    snprintf(err.msg, sizeof err.msg, "out of memory");
    goto done;
  }
  if (dd_image_new(o->w, o->h, &im, &err)) goto done;
  fill_image(im);
  if (forward_plan(o, m, layer, &ps.pre, im, &p, &err)) goto done;
  printf("ready size=%dx%d\n", o->w, o->h);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    int n;
    if (sscanf(line, "run %d", &n) == 1 && n >= 1 && n <= MAX_RUNS) {
      for (int r = 0; r < n; r++) {
        struct timespec a, b, ca, cb;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ca);
        clock_gettime(CLOCK_MONOTONIC, &a);
        dd_plan_forward(p);
        clock_gettime(CLOCK_MONOTONIC, &b);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cb);
        wall[r] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) * 1e-6;
        cpu[r] = (double)(cb.tv_sec - ca.tv_sec) * 1e3 + (cb.tv_nsec - ca.tv_nsec) * 1e-6;
      }
      printf("runs ms=");
      for (int r = 0; r < n; r++) printf("%s%.4f", r ? "," : "", wall[r]);
      printf(" cpu_ms=");
      for (int r = 0; r < n; r++) printf("%s%.4f", r ? "," : "", cpu[r]);
      printf("\n");
    } else if (!strncmp(line, "probe", 5)) {
      /* again while the probe gives up (3e6 ns and more), up to 5 times: after some ms of
       * rest, this host can take longer than that to run the other thread's vCPU again */
      double ns = 0;
      for (int k = 0; k < 5 && omp_get_num_procs() >= 2 && (!k || ns > 1e6); k++)
        ns = dd_threads_round_trip_ns(1000);
      printf("probe round_trip_ns=%.0f\n", ns);
    } else if (!strncmp(line, "quit", 4)) {
      break;
    } else {
      printf("error unknown command\n");
    }
    fflush(stdout);
  }
  rc = 0;
done:
  if (rc) fprintf(stderr, "bench_engine: %s\n", err.msg);
  free(wall);
  free(cpu);
  dd_plan_free(p);
  dd_image_free(im);
  dd_model_free(m);
  dd_preset_clear(&ps);
  return rc;
}

/* Two threads hand a counter back and forth --reps times (at least 1000; 100000 by default): the median
 * over 5 runs of the round trip. */
static int bench_pingpong(const bench_opts *o) {
  if (omp_get_num_procs() < 2) {
    printf("pingpong skipped=one_cpu\n");
    return 0;
  }
  const int64_t n = o->reps >= 1000 ? o->reps : 100000; /* (--reps under 1000: the default) */
  double t[5];
  for (int k = 0; k < 5; k++) t[k] = dd_threads_round_trip_ns(n);
  qsort(t, 5, sizeof t[0], cmp_double);
  printf("pingpong round_trip_ns=%.0f min_ns=%.0f\n", t[2], t[0]);
  return 0;
}

int main(int argc, char **argv) {
  bench_opts o;
  memset(&o, 0, sizeof o);
  if (argc < 2 || parse_opts(argc, argv, &o)) return usage();
  /* the CPU beside every figure, and the fp32 kernels chosen at run time on it */
  printf("# cpu: %s; fp32 kernels: %s\n", dd_cpu_name(), dd_kernels_name(dd_kernels_chosen()));
  if (!strcmp(argv[1], "sgemm")) return bench_sgemm(&o);
  if (!strcmp(argv[1], "forward")) return bench_model(&o, 0);
  if (!strcmp(argv[1], "grad")) return bench_model(&o, 1);
  if (!strcmp(argv[1], "count")) return count_flops(&o);
  if (!strcmp(argv[1], "gemm")) return bench_gemm(&o);
  if (!strcmp(argv[1], "pingpong")) return bench_pingpong(&o);
  if (!strcmp(argv[1], "serve")) return serve_forward(&o);
  return usage();
}
