/* Runs of a plan take their threads from libgomp's pool: once a plan has run, running it again,
 * or dreaming again, starts no thread.
 *
 * libgomp keeps its pool for the parallel regions opened outside any other.  A region opened
 * inside another one, even one that an `if` clause turned off, is nested: libgomp starts new
 * threads for it every time and joins them at its end.  Conv's per-image loop was such a
 * region around the products (which open their own), and every 1x1 and im2col convolution
 * of GoogLeNet started and joined a thread: at 233x131 a gradient took 26 ms instead of 14.
 *
 * The count comes from pthread_create itself, defined here: the executable's definition comes
 * first in the dynamic linker's search, so libgomp's calls (and OpenBLAS's) reach it; it
 * counts and hands the call on to the C library's (or a sanitizer's) through RTLD_NEXT. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "helper_ops.h"

static atomic_int started;

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                   void *arg) {
  static int (*next)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  if (!next) *(void **)&next = dlsym(RTLD_NEXT, "pthread_create");
  if (!next) return EAGAIN;
  atomic_fetch_add(&started, 1);
  return next(thread, attr, fn, arg);
}

/* The gradient plan of `file` to `layer` on n images of h x w: run once, then twice more,
 * which must start no thread. */
static void check_plan(const char *file, const char *layer, int64_t n, int64_t h, int64_t w,
                       int flags) {
  dd_model *m = th_shared_model(file);
  int in = dd_model_input(m), target = th_value(m, layer);
  int64_t dims[4] = {n, 3, h, w};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  dd_plan *p;
  dd_err err;
  cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, flags, 0, &p, &err), 0, "%s", err.msg);
  dd_tensor *input = th_random(4, dims, 3, -120.f, 130.f);
  th_plan_half_sq(p, in, target, input);
  int before = atomic_load(&started);
  for (int i = 0; i < 2; i++) th_plan_half_sq(p, in, target, input);
  int after = atomic_load(&started);
  cr_expect_eq(after, before,
               "%s to %s, %lld image(s) of %lldx%lld: %d threads started by two more runs of "
               "the plan (a parallel region nested in another one, see the top of this file)",
               file, layer, (long long)n, (long long)w, (long long)h, after - before);
  dd_tensor_free(input);
  dd_plan_free(p);
  dd_model_free(m);
}

Test(threadpool, googlenet_gradient_runs_start_no_thread, .timeout = 120) {
  omp_set_num_threads(2);
  /* every Conv path: 7x7 stride 2 and 5x5 (im2col), 1x1, 3x3 (Winograd), with the Relus
   * folded in (DD_PLAN_REUSE) and not */
  check_plan("models/bvlc_googlenet.onnx", "inception_4c/output", 1, 131, 233, DD_PLAN_GRAD);
  check_plan("models/bvlc_googlenet.onnx", "inception_4c/output", 1, 131, 233,
             DD_PLAN_GRAD | DD_PLAN_REUSE);
  /* the exact plan's own products */
  check_plan("models/bvlc_googlenet.onnx", "inception_3b/output", 1, 96, 128,
             DD_PLAN_GRAD | DD_PLAN_EXACT);
  /* two images: the per-image loops the batch shares among the threads */
  check_plan("models/bvlc_googlenet.onnx", "inception_3b/output", 2, 64, 64, DD_PLAN_GRAD);
}

Test(threadpool, squeezenet_gradient_runs_start_no_thread, .timeout = 120) {
  omp_set_num_threads(2);
  check_plan("models/squeezenet1.1.onnx", "fire9/concat", 1, 224, 224, DD_PLAN_GRAD);
}

Test(threadpool, a_second_dream_starts_no_thread, .timeout = 120) {
  omp_set_num_threads(2);
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  static const dd_preproc caffe = {1, 255.f, {104.f, 117.f, 123.f}, {1.f, 1.f, 1.f}};
  dd_dream_params p;
  dd_dream_params_init(&p);
  p.n_layers = 1;
  p.layers[0] = (dd_dream_layer){th_value(m, "inception_4c/output"), -1, 1.f};
  p.octaves = 3;
  p.iters = 2;
  p.seed = 7;
  dd_image *src = th_shared_photo("dog.jpg", 200);
  int before = 0;
  for (int i = 0; i < 2; i++) {
    dd_image *im;
    dd_err err;
    cr_assert_eq(dd_image_new(src->w, src->h, &im, &err), 0, "%s", err.msg);
    memcpy(im->rgb, src->rgb, (size_t)src->w * src->h * 3 * sizeof(float));
    if (i == 1) before = atomic_load(&started);
    cr_assert_eq(dd_dream_run(m, &caffe, &p, im, NULL, NULL, &err), 0, "%s", err.msg);
    dd_image_free(im);
  }
  int after = atomic_load(&started);
  cr_expect_eq(after, before, "%d threads started by a second dream of the same photo",
               after - before);
  dd_image_free(src);
  dd_model_free(m);
}
