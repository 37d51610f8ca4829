/* Results do not depend on the number of threads: the same seed gives the same picture, bit
 * for bit, on 1, 2 or 3 threads (OpenMP's and OpenBLAS's counts set alike), in builds with
 * the AVX-512 kernels (see need_own_kernels).
 *
 * The cause found was the Conv data gradient of the fused im2col path (the 5x5 and 7x7
 * layers): its blocks of rows of the column matrix started at each thread's first channel,
 * and its column blocks at each thread's first output row, so the partial sums that reach
 * one element of dx were grouped differently for each number of threads.  And OpenBLAS's
 * products differ with its thread count: the classifier's Gemm (a dream or a class
 * visualization through loss3/classifier).  The tests go from those ops, through every
 * gradient of a GoogLeNet plan, to whole dreams (untiled, tiled, each normalization, guided)
 * and the visualizations. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "dream/visualize.h"
#include "helper_ops.h"
#include "ops/cpu.h"
#include "plan/plan.h"
#include "util.h"

static const dd_preproc caffe = {1, 255.f, {104.f, 117.f, 123.f}, {1.f, 1.f, 1.f}};

/* The counts compared: 1 is the reference.  3 does not divide GoogLeNet's channel counts,
 * so it takes other splits than 2 does. */
static const int counts[] = {1, 2, 3};
#define N_COUNTS ((int)(sizeof counts / sizeof counts[0]))

/* OpenBLAS's thread count changes with OpenMP's, as OMP_NUM_THREADS sets both. */
static void set_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

/* On the generic kernel path (ops/cpu.h: a CPU without AVX2, or DREAM_KERNELS=generic) the
 * convolution products run in OpenBLAS, whose sums depend on its thread count and on the
 * shapes of the pieces our threads hand it: there a picture repeats only on the same numbers
 * of threads (README, "Reproducible"), and there is nothing to check.  The AVX-512 and AVX2
 * paths' products are our own. */
static void need_own_kernels(void) {
  if (dd_kernels_chosen() == DD_KERNELS_GENERIC)
    cr_skip_test("the generic kernels (%s): the convolution products run in OpenBLAS",
                 dd_kernels_has(DD_KERNELS_AVX2) ? "DREAM_KERNELS=generic"
                                                 : "this CPU has no AVX2");
}

/* Asserts that n floats are bit-identical, naming the first that is not. */
static void assert_same(const float *want, const float *got, size_t n, const char *what,
                        int threads) {
  if (!memcmp(want, got, n * sizeof *want)) return;
  size_t i = 0, diff = 0;
  double worst = 0;
  for (size_t k = 0; k < n; k++)
    if (memcmp(want + k, got + k, sizeof *want)) {
      if (!diff++) i = k;
      worst = fmax(worst, fabs((double)want[k] - got[k]));
    }
  cr_assert_fail("%s: %zu of %zu values differ between 1 and %d threads (first at %zu: %.9g vs "
                 "%.9g; largest difference %g)",
                 what, diff, n, threads, i, want[i], got[i], worst);
}

/* ---- the op: Conv's data gradient ---------------------------------------------------------- */

typedef struct conv_case {
  const char *what;
  int64_t c, h, w, m, kh, kw, s, pad, group;
} conv_case;

/* Each large enough to run in parallel.  The first five take the fused im2col path, where
 * the cause was; the others the paths that were already independent of the thread count. */
static const conv_case conv_cases[] = {
    {"conv1: 3 channels, 7x7 stride 2 (input rows shared at 2 threads)", 3, 90, 120, 64, 7, 7,
     2, 3, 1},
    {"5x5, 16 channels (400 rows: blocks of 256 split a channel)", 16, 28, 28, 48, 5, 5, 1, 2, 1},
    {"5x5, 24 channels (inception_4c/5x5)", 24, 21, 27, 64, 5, 5, 1, 2, 1},
    {"3x3, 5 channels (rows shared at 2 and 3 threads)", 5, 47, 61, 16, 3, 3, 1, 1, 1},
    {"17x17, 4 channels (more taps than a block of rows)", 4, 40, 44, 8, 17, 17, 1, 8, 1},
    {"Winograd 3x3, 32 channels", 32, 30, 34, 48, 3, 3, 1, 1, 1},
    {"1x1, 64 channels", 64, 30, 34, 32, 1, 1, 1, 0, 1},
    {"depthwise 3x3", 32, 30, 34, 32, 3, 3, 1, 1, 32},
};

/* dx of one case (a new tensor) for dy, on the current number of threads. */
static dd_tensor *conv_dx(th_node *t, dd_tensor **in, const dd_tensor *dy) {
  dd_err err;
  dd_tensor shape, *outs[1] = {&shape};
  memset(&shape, 0, sizeof shape);
  size_t scratch = 0;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err),
               0, "%s", err.msg);
  dd_tensor *dx = th_tensor(in[0]->shape.ndim, in[0]->shape.d);
  dd_tensor *din[3] = {dx, NULL, NULL}, y = shape;
  const dd_tensor *dout[1] = {dy}, *out[1] = {&y};
  void *s = scratch ? malloc(scratch) : NULL;
  t->node.op->backward(&t->node, (const dd_tensor *const *)in, out, dout, din, s);
  free(s);
  return dx;
}

Test(threads, conv_input_gradient_is_bit_identical) {
  need_own_kernels();
  for (size_t ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++) {
    const conv_case *k = &conv_cases[ci];
    th_node t;
    th_init(&t, "Conv", 3, 1);
    int64_t strides[2] = {k->s, k->s}, pads[4] = {k->pad, k->pad, k->pad, k->pad};
    th_attr_ints(&t, "strides", 2, strides);
    th_attr_ints(&t, "pads", 4, pads);
    if (k->group > 1) th_attr_int(&t, "group", k->group);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s: %s", k->what, err.msg);
    int64_t xd[4] = {1, k->c, k->h, k->w}, wd[4] = {k->m, k->c / k->group, k->kh, k->kw};
    dd_tensor *in[3] = {th_random(4, xd, 10 + ci, -1, 1), th_random(4, wd, 20 + ci, -1, 1),
                        th_random(1, &k->m, 30 + ci, -1, 1)};
    dd_tensor *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s: %s", k->what, err.msg);
    dd_tensor *dy = th_random(4, y[0]->shape.d, 40 + ci, -1, 1);
    dd_tensor *ref = NULL;
    for (int i = 0; i < N_COUNTS; i++) {
      set_threads(counts[i]);
      dd_tensor *dx = conv_dx(&t, in, dy);
      if (!ref) {
        ref = dx;
        continue;
      }
      assert_same(dd_f32(ref), dd_f32(dx), (size_t)dd_tensor_numel(dx), k->what, counts[i]);
      dd_tensor_free(dx);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    dd_tensor_free(ref);
    free(t.node.params);
  }
}

/* ---- the op: Gemm at batch 1 (a classifier), forward and data gradient ------------------- */

Test(threads, gemm_at_batch_1_is_bit_identical) {
  /* GoogLeNet's loss3/classifier: Y (1x1000) = X (1x1024) W^T + B, and the same with W
   * stored the other way round */
  for (int tb = 1; tb >= 0; tb--) {
    th_node t;
    th_init(&t, "Gemm", 3, 1);
    th_attr_int(&t, "transB", tb);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    int64_t xd[2] = {1, 1024}, wd[2] = {tb ? 1000 : 1024, tb ? 1024 : 1000}, bd = 1000;
    dd_tensor *in[3] = {th_random(2, xd, 1, -1, 1), th_random(2, wd, 2, -1, 1),
                        th_random(1, &bd, 3, -1, 1)};
    int64_t yd[2] = {1, 1000};
    dd_tensor *dy = th_random(2, yd, 4, -1, 1), *y0 = NULL, *dx0 = NULL;
    for (int i = 0; i < N_COUNTS; i++) {
      set_threads(counts[i]);
      dd_tensor *y[1];
      cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
      dd_tensor *dx = th_tensor(2, xd);
      dd_tensor *din[3] = {dx, NULL, NULL};
      const dd_tensor *dout[1] = {dy}, *out[1] = {y[0]};
      t.node.op->backward(&t.node, (const dd_tensor *const *)in, out, dout, din, NULL);
      if (!y0) {
        y0 = y[0];
        dx0 = dx;
        continue;
      }
      assert_same(dd_f32(y0), dd_f32(y[0]), 1000, tb ? "Gemm forward" : "Gemm forward (W KxN)",
                  counts[i]);
      assert_same(dd_f32(dx0), dd_f32(dx), 1024, tb ? "Gemm dX" : "Gemm dX (W KxN)", counts[i]);
      dd_tensor_free(y[0]);
      dd_tensor_free(dx);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    dd_tensor_free(dy);
    dd_tensor_free(y0);
    dd_tensor_free(dx0);
    free(t.node.params);
  }
}

/* ---- every gradient of a GoogLeNet plan ---------------------------------------------------- */

/* A plan that keeps every value and gradient, run forward and backward from
 * inception_4c/output (seeded with its own activations, as a dream does) on 1, 2 and 3
 * threads: every value and every gradient must agree.  A failure names the deepest
 * gradient that differs, where backward first diverged. */
Test(threads, googlenet_every_gradient_is_bit_identical, .timeout = 300) {
  need_own_kernels();
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int in = dd_model_input(m), target = th_value(m, "inception_4c/output");
  int64_t dims[4] = {1, 3, 150, 200};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  dd_plan *p;
  dd_err err;
  cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, DD_PLAN_GRAD, 0, &p, &err), 0, "%s", err.msg);
  int nv = dd_model_num_values(m);
  float **val = calloc((size_t)nv, sizeof *val), **grad = calloc((size_t)nv, sizeof *grad);
  dd_tensor *input = th_random(4, dims, 5, -120.f, 130.f);
  for (int i = 0; i < N_COUNTS; i++) {
    set_threads(counts[i]);
    th_plan_half_sq(p, in, target, input);
    int deepest = -1, differ = 0;
    for (int v = 0; v < nv; v++) {
      dd_tensor *t = dd_plan_tensor(p, v), *g = dd_plan_grad(p, v);
      if (!t || t->dtype != DD_F32 || !t->data) continue;
      size_t bytes = (size_t)dd_tensor_numel(t) * sizeof(float);
      if (i == 0) {
        val[v] = malloc(bytes);
        memcpy(val[v], t->data, bytes);
        if (g && g->data) {
          grad[v] = malloc(bytes);
          memcpy(grad[v], g->data, bytes);
        }
        continue;
      }
      cr_assert(!memcmp(val[v], t->data, bytes), "value '%s' differs between 1 and %d threads",
                dd_model_value_name(m, v), counts[i]);
      if (grad[v] && memcmp(grad[v], g->data, bytes)) {
        differ++;
        if (deepest < 0 || dd_model_producer(m, v) > dd_model_producer(m, deepest)) deepest = v;
      }
    }
    cr_assert_eq(differ, 0,
                 "%d gradients differ between 1 and %d threads; the deepest: '%s' (from the "
                 "backward of the node that reads it)",
                 differ, counts[i], deepest >= 0 ? dd_model_value_name(m, deepest) : "");
  }
  for (int v = 0; v < nv; v++) {
    free(val[v]);
    free(grad[v]);
  }
  free(val);
  free(grad);
  dd_tensor_free(input);
  dd_plan_free(p);
  dd_model_free(m);
}

/* dd_input_gradient (memory reused, Relus folded into the Convs) at layers from the first
 * convolution to the classifier, whose Gemm runs in OpenBLAS. */
Test(threads, input_gradient_is_bit_identical_at_every_depth, .timeout = 300) {
  need_own_kernels();
  static const char *layers[] = {"conv1/7x7_s2", "conv2/norm2", "inception_3b/output",
                                 "inception_4c/output", "inception_5b/output",
                                 "loss3/classifier"};
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int64_t dims[4] = {1, 3, 224, 224};
  dd_tensor *input = th_random(4, dims, 9, -120.f, 130.f);
  for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
    dd_dream_layer layer = {th_value(m, layers[l]), -1, 1.f};
    dd_tensor *ref = NULL;
    double ref_obj = 0;
    for (int i = 0; i < N_COUNTS; i++) {
      set_threads(counts[i]);
      dd_tensor *g;
      double obj;
      dd_err err;
      cr_assert_eq(dd_input_gradient(m, input, &layer, 1, 0, &g, &obj, &err), 0, "%s", err.msg);
      if (!ref) {
        ref = g;
        ref_obj = obj;
        continue;
      }
      cr_assert(obj == ref_obj, "%s: objective %.17g vs %.17g on %d threads", layers[l], ref_obj,
                obj, counts[i]);
      assert_same(dd_f32(ref), dd_f32(g), (size_t)dd_tensor_numel(g), layers[l], counts[i]);
      dd_tensor_free(g);
    }
    dd_tensor_free(ref);
  }
  dd_tensor_free(input);
  dd_model_free(m);
}

/* ---- whole dreams -------------------------------------------------------------------------- */

/* dd_dream_run of dog.jpg (200 px wide) with `p` on each number of threads; the pictures must
 * be identical to the float. */
static void check_dream(const dd_model *m, const dd_dream_params *p, const char *what) {
  dd_image *src = th_shared_photo("dog.jpg", 200), *ref = NULL;
  for (int i = 0; i < N_COUNTS; i++) {
    set_threads(counts[i]);
    dd_image *im;
    dd_err err;
    cr_assert_eq(dd_image_new(src->w, src->h, &im, &err), 0, "%s", err.msg);
    memcpy(im->rgb, src->rgb, (size_t)src->w * src->h * 3 * sizeof(float));
    cr_assert_eq(dd_dream_run(m, &caffe, p, im, NULL, NULL, &err), 0, "%s: %s", what, err.msg);
    if (!ref) {
      ref = im;
      continue;
    }
    assert_same(ref->rgb, im->rgb, (size_t)im->w * im->h * 3, what, counts[i]);
    dd_image_free(im);
  }
  dd_image_free(ref);
  dd_image_free(src);
}

/* The notebook's parameters but fewer steps. */
static void dream_params(const dd_model *m, dd_dream_params *p) {
  dd_dream_params_init(p);
  p->n_layers = 1;
  p->layers[0] = (dd_dream_layer){th_value(m, "inception_4c/output"), -1, 1.f};
  p->octaves = 3;
  p->iters = 4;
  p->seed = 7;
}

Test(threads, dream_is_bit_identical_untiled_and_tiled, .timeout = 300) {
  need_own_kernels();
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_dream_params p;
  dream_params(m, &p);
  check_dream(m, &p, "untiled");
  p.tile = 96; /* 4 tiles at the largest octave, 2 at the next */
  check_dream(m, &p, "tiles of 96");
  dd_model_free(m);
}

Test(threads, dream_is_bit_identical_with_every_norm, .timeout = 300) {
  need_own_kernels();
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_dream_params p;
  dream_params(m, &p);
  p.norm = DD_NORM_STD;
  check_dream(m, &p, "--norm std");
  p.norm = DD_NORM_LAPLACIAN;
  check_dream(m, &p, "--norm laplacian");
  p.tile = 96;
  check_dream(m, &p, "--norm laplacian, tiles of 96");
  dd_model_free(m);
}

Test(threads, guided_dream_is_bit_identical, .timeout = 300) {
  need_own_kernels();
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_dream_params p;
  dream_params(m, &p);
  dd_image *guide = th_shared_photo("eagle.jpg", 112);
  p.guide = guide;
  check_dream(m, &p, "--guide eagle.jpg");
  dd_image_free(guide);
  dd_model_free(m);
}

/* ---- visualizations ------------------------------------------------------------------------ */

/* dd_fv_run of `channel` of `layer` (size 96, 16 steps) on each number of threads. */
static void check_fv(const dd_model *m, int value, int channel, const char *what) {
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  o.size = 96;
  o.iters = 16;
  dd_image *ref = NULL;
  float ref_obj = 0;
  for (int i = 0; i < N_COUNTS; i++) {
    set_threads(counts[i]);
    dd_fv *fv;
    dd_image *im;
    float obj;
    dd_err err;
    cr_assert_eq(dd_fv_new(m, &caffe, value, &o, &fv, &err), 0, "%s", err.msg);
    cr_assert_eq(dd_fv_run(fv, channel, 3, &im, &obj, &err), 0, "%s", err.msg);
    dd_fv_free(fv);
    if (!ref) {
      ref = im;
      ref_obj = obj;
      continue;
    }
    cr_assert(obj == ref_obj, "%s: objective %.9g vs %.9g on %d threads", what, ref_obj, obj,
              counts[i]);
    assert_same(ref->rgb, im->rgb, (size_t)im->w * im->h * 3, what, counts[i]);
    dd_image_free(im);
  }
  dd_image_free(ref);
}

Test(threads, filter_and_class_visualizations_are_bit_identical, .timeout = 300) {
  need_own_kernels();
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  check_fv(m, th_value(m, "inception_4a/output"), 100, "filters --optimize inception_4a#100");
  int logits;
  dd_err err;
  cr_assert_eq(dd_vis_logits(m, &logits, &err), 0, "%s", err.msg);
  check_fv(m, logits, 250, "class 250");
  dd_model_free(m);
}

Test(threads, smoothgrad_explanation_is_bit_identical, .timeout = 300) {
  need_own_kernels();
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("dog.jpg", 320);
  dd_explain_opts o;
  dd_explain_opts_init(&o);
  o.smoothgrad = 4;
  dd_explanation *ref = NULL;
  for (int i = 0; i < N_COUNTS; i++) {
    set_threads(counts[i]);
    dd_explanation *e;
    dd_err err;
    cr_assert_eq(dd_explain(m, &caffe, im, &o, &e, &err), 0, "%s", err.msg);
    if (!ref) {
      ref = e;
      continue;
    }
    size_t n = (size_t)e->w * e->h;
    assert_same(ref->cam, e->cam, n, "Grad-CAM", counts[i]);
    assert_same(ref->saliency, e->saliency, n, "SmoothGrad saliency", counts[i]);
    dd_explanation_free(e);
  }
  dd_explanation_free(ref);
  dd_image_free(im);
  dd_model_free(m);
}

/* ---- forward-only plans on threads that share no cache ----------------------------------- */

/* The probe: a round trip between the two threads, none on one thread or inside a team. */
Test(threads, round_trip_is_measured_on_two_threads_only) {
  set_threads(1);
  cr_assert_eq(dd_threads_round_trip_ns(100), 0);
  if (omp_get_num_procs() < 2) {
    set_threads(2);
    cr_skip_test("one processor: no round trip to measure");
  }
  set_threads(2);
  double ns = dd_threads_round_trip_ns(1000);
  cr_assert(ns > 0 && isfinite(ns), "round trip %g ns", ns);
  double inside = -1;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    inside = dd_threads_round_trip_ns(100);
  }
  cr_assert_eq(inside, 0);
}

/* A forward-only SqueezeNet plan on two threads: while the probe says the threads share a
 * cache it never times a forward; told they do not (dd_round_trip_fake), it times TRIES (2)
 * forwards on both threads and 2 on one, then keeps the faster, every output bit for bit the
 * first's; not on one when a forward on both took long; a plan with gradients never probes. */
Test(threads, forward_apart_times_one_thread_and_both_with_the_same_floats, .timeout = 120) {
  need_own_kernels();
  set_threads(2);
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  int in = dd_model_input(m), target = dd_model_output(m, 0);
  int64_t dims[4] = {1, 3, 96, 128};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  dd_plan *p, *pg;
  dd_err err;
  cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, 0, 0, &p, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, DD_PLAN_GRAD, 0, &pg, &err), 0, "%s", err.msg);
  dd_tensor *input = th_random(4, dims, 5, -2.f, 2.f);
  const dd_tensor *y = dd_plan_tensor(p, target);
  size_t bytes = (size_t)dd_tensor_numel(y) * sizeof(float);
  float *first = malloc(bytes);
  dd_round_trip_fake = 60;
  for (int r = 0; r < 7; r++) {
    if (r == 1) { /* from here on the threads are apart, from the next probe */
      dd_round_trip_fake = 400;
      p->threads.probed = 0;
    }
    memcpy(dd_plan_tensor(p, in)->data, input->data, (size_t)dd_tensor_numel(input) * 4);
    dd_plan_forward(p);
    if (r == 0) {
      memcpy(first, y->data, bytes);
      cr_assert(!p->threads.apart && !p->threads.tried[0] && !p->threads.tried[1]);
    } else {
      cr_assert(!memcmp(first, y->data, bytes), "forward %d differs from the first", r);
      cr_assert(p->threads.apart);
      /* all threads first, then one, then neither timed again */
      int all = r < 3 ? r : 2, one = r < 3 ? 0 : r < 5 ? r - 2 : 2;
      cr_assert(p->threads.tried[1] == one && p->threads.tried[0] == all,
                "forward %d: %d timed on one thread, %d on both", r, p->threads.tried[1],
                p->threads.tried[0]);
    }
  }
  cr_assert(p->threads.best[0] > 0 && p->threads.best[1] > 0);
  /* a forward that took long on all threads is not tried on one */
  p->threads.tried[1] = 0;
  p->threads.best[0] = 1.0;
  dd_plan_forward(p);
  cr_assert(!p->threads.tried[1], "a forward of 1 s tried on one thread");
  th_plan_half_sq(pg, in, target, input);
  cr_assert(!pg->threads.probed && !pg->threads.tried[1], "a plan with gradients probed");
  dd_round_trip_fake = 0;
  free(first);
  dd_tensor_free(input);
  dd_plan_free(p);
  dd_plan_free(pg);
  dd_model_free(m);
}

/* What dd_infer plans (classify's: exact, memory reused, inputs forgotten) give on one
 * thread and on two: the same floats, so that the one-thread choice above never shows in a
 * top-5 list.  SqueezeNet 1.1 and GoogLeNet at 224x224. */
Test(threads, exact_forward_gives_the_same_floats_on_one_thread_and_two, .timeout = 120) {
  need_own_kernels();
  static const char *const models[] = {"models/squeezenet1.1.onnx", "models/bvlc_googlenet.onnx"};
  for (int k = 0; k < 2; k++) {
    dd_model *m = th_shared_model(models[k]);
    int in = dd_model_input(m), target = dd_model_output(m, 0);
    int64_t dims[4] = {1, 3, 224, 224};
    dd_binding b = {in, dd_shape_make(4, dims), NULL};
    dd_plan *p;
    dd_err err;
    cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1,
                             DD_PLAN_REUSE | DD_PLAN_FORGET_INPUTS | DD_PLAN_EXACT, 0, &p, &err),
                 0, "%s", err.msg);
    dd_tensor *input = th_random(4, dims, 11, -2.f, 2.f);
    const dd_tensor *y = dd_plan_tensor(p, target);
    size_t bytes = (size_t)dd_tensor_numel(y) * sizeof(float);
    float *two = malloc(bytes);
    for (int nt = 2; nt >= 1; nt--) {
      set_threads(nt);
      memcpy(dd_plan_tensor(p, in)->data, input->data, (size_t)dd_tensor_numel(input) * 4);
      dd_plan_forward(p);
      if (nt == 2) memcpy(two, y->data, bytes);
      else assert_same(two, dd_f32(y), bytes / sizeof(float), models[k], 2);
    }
    set_threads(2);
    free(two);
    dd_tensor_free(input);
    dd_plan_free(p);
    dd_model_free(m);
  }
}
