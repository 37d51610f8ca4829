/* DeepDream on BVLC GoogLeNet: the objective rises, seeds reproduce, tiles agree with the
 * whole image, the Laplacian normalization matches a naive transcription of the TensorFlow
 * tutorial, cancellation and checkpoints, and the command line refuses nonsense clearly.
 *
 * To stay fast the photos are shrunk first (224 px wide for the default-parameter run). */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "helper_cli.h"
#include "helper_ops.h"

static const dd_preproc caffe = {1, 255.f, {104.f, 117.f, 123.f}, {1.f, 1.f, 1.f}};

static dd_image *clone_image(const dd_image *im) {
  dd_image *c;
  dd_err err;
  cr_assert_eq(dd_image_new(im->w, im->h, &c, &err), 0, "%s", err.msg);
  memcpy(c->rgb, im->rgb, (size_t)im->w * im->h * 3 * sizeof(float));
  return c;
}

static void params_for(const dd_model *m, const char *layer, dd_dream_params *p) {
  dd_err err;
  dd_dream_params_init(p);
  p->n_layers = 1;
  cr_assert_eq(dd_dream_layer_resolve(m, layer, &p->layers[0], &err), 0, "%s", err.msg);
}

/* The objective of the whole image, unrolled, untiled. */
static double objective_of(const dd_model *m, const dd_dream_params *p, const dd_image *im) {
  dd_dreamer *d;
  dd_err err;
  dd_dream_params q = *p;
  q.tile = 0;
  q.max_memory = 0;
  cr_assert_eq(dd_dreamer_new(m, &caffe, &q, &d, &err), 0, "%s", err.msg);
  float *g = malloc((size_t)im->w * im->h * 3 * sizeof(float));
  double obj;
  cr_assert_eq(dd_dreamer_gradient(d, im, 0, 0, g, &obj, &err), 0, "%s", err.msg);
  free(g);
  dd_dreamer_free(d);
  return obj;
}

Test(dream, objective_rises_threefold_with_default_parameters, .timeout = 600) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("dog.jpg", 224);
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  p.seed = 1;
  double before = objective_of(m, &p, im);
  dd_err err;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, im, NULL, NULL, &err), 0, "%s", err.msg);
  double after = objective_of(m, &p, im);
  printf("dream: inception_4c/output on dog.jpg at %dx%d, default parameters: objective %.4g -> "
         "%.4g (x%.2f)\n", im->w, im->h, before, after, after / before);
  cr_assert_gt(before, 0);
  cr_assert_geq(after, 3 * before, "objective rose only %.2fx", after / before);
  for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++)
    cr_assert(im->rgb[i] >= 0.f && im->rgb[i] <= 255.f, "pixel %zu = %g", i, im->rgb[i]);
  dd_image_free(im);
  dd_model_free(m);
}

static void quick(dd_dream_params *p) {
  p->octaves = 2;
  p->iters = 3;
}

Test(dream, same_seed_same_output, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("eagle.jpg", 128);
  dd_image *a = clone_image(im), *b = clone_image(im), *c = clone_image(im);
  dd_dream_params p;
  params_for(m, "inception_3b/output", &p);
  quick(&p);
  dd_err err;
  p.seed = 42;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, a, NULL, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_dream_run(m, &caffe, &p, b, NULL, NULL, &err), 0, "%s", err.msg);
  p.seed = 43;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, c, NULL, NULL, &err), 0, "%s", err.msg);
  size_t n = (size_t)im->w * im->h * 3;
  cr_assert_eq(memcmp(a->rgb, b->rgb, n * sizeof(float)), 0, "same seed, different outputs");
  cr_assert_neq(memcmp(a->rgb, c->rgb, n * sizeof(float)), 0, "the seed changes nothing");
  cr_assert_neq(memcmp(a->rgb, im->rgb, n * sizeof(float)), 0, "the image did not change");
  dd_image_free(im);
  dd_image_free(a);
  dd_image_free(b);
  dd_image_free(c);
  dd_model_free(m);
}

/* dd_dream_run's picture of `im` with iters and seed changed (the reference). */
static dd_image *run_once(const dd_model *m, const dd_dream_params *p, const dd_image *im,
                          int iters, uint64_t seed) {
  dd_dream_params q = *p;
  q.iters = iters;
  q.seed = seed;
  dd_image *out = clone_image(im);
  dd_err err;
  cr_assert_eq(dd_dream_run(m, &caffe, &q, out, NULL, NULL, &err), 0, "%s", err.msg);
  return out;
}

/* One dreamer over a sequence of images (a movie's frames, then other sizes, with more
 * octaves than it keeps plans for, and in tiles): each picture is dd_dream_run's, bit for
 * bit, though the plans of a size seen before are not made again. */
static int dreamer_matches_run(const dd_model *m, const dd_dream_params *p, dd_image **ims,
                               int n) {
  dd_dreamer *d;
  dd_err err;
  cr_assert_eq(dd_dreamer_new(m, &caffe, p, &d, &err), 0, "%s", err.msg);
  for (int i = 0; i < n; i++) {
    int iters = 1 + i % 2;
    uint64_t seed = 7 + (uint64_t)i;
    dd_image *want = run_once(m, p, ims[i], iters, seed), *got = clone_image(ims[i]);
    cr_assert_eq(dd_dreamer_dream(d, got, iters, seed, NULL, NULL, &err), 0, "%s", err.msg);
    size_t bytes = (size_t)got->w * got->h * 3 * sizeof(float);
    cr_assert_eq(memcmp(want->rgb, got->rgb, bytes), 0, "image %d (%dx%d) differs", i, got->w,
                 got->h);
    cr_assert_neq(memcmp(ims[i]->rgb, got->rgb, bytes), 0, "image %d did not change", i);
    dd_image_free(want);
    dd_image_free(got);
  }
  int tw, th;
  dd_dreamer_tile_size(d, &tw, &th);
  dd_dreamer_free(d);
  return tw; /* the last octave's tile width */
}

Test(dream, a_kept_dreamer_gives_dd_dream_runs_pictures, .timeout = 600) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *a = th_shared_photo("eagle.jpg", 96), *b = th_shared_photo("kite.jpg", 120);
  dd_dream_params p;
  params_for(m, "inception_3b/output", &p);
  p.octaves = 3;
  dd_image *seq[] = {a, a, b, a, a};
  dreamer_matches_run(m, &p, seq, 5);
  /* 11 octaves of 1.08 from 120 px: more sizes than the dreamer keeps plans for */
  p.octaves = 11;
  p.octave_scale = 1.08f;
  dd_image *many[] = {b, b, b};
  dreamer_matches_run(m, &p, many, 3);
  /* in tiles: a budget of half the whole image's plan */
  dd_image *c = th_shared_photo("horses.jpg", 256);
  p.octaves = 2;
  p.octave_scale = 1.4f;
  int64_t dims[] = {1, 3, c->h, c->w};
  dd_binding bind = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  size_t bytes;
  dd_err err;
  cr_assert_eq(dd_plan_measure(m, &bind, 1, &p.layers[0].value, 1, DD_PLAN_GRAD | DD_PLAN_REUSE,
                               &bytes, NULL, &err), 0, "%s", err.msg);
  p.max_memory = bytes / 2;
  dd_image *tiled[] = {c, c};
  int tw = dreamer_matches_run(m, &p, tiled, 2);
  cr_assert_lt(tw, c->w, "a budget of half the plan, yet no tiles");
  dd_image_free(c);
  dd_image_free(a);
  dd_image_free(b);
  dd_model_free(m);
}

static float *gradient(const dd_model *m, const dd_dream_params *p, const dd_image *im, int dx,
                       int dy, int *tw, int *th) {
  dd_dreamer *d;
  dd_err err;
  cr_assert_eq(dd_dreamer_new(m, &caffe, p, &d, &err), 0, "%s", err.msg);
  float *g = malloc((size_t)im->w * im->h * 3 * sizeof(float));
  cr_assert_eq(dd_dreamer_gradient(d, im, dx, dy, g, NULL, &err), 0, "%s", err.msg);
  dd_dreamer_tile_size(d, tw, th);
  dd_dreamer_free(d);
  return g;
}

Test(dream, one_tile_equals_the_whole_image, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("horses.jpg", 200);
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  int tw, th;
  float *whole = gradient(m, &p, im, 13, -7, &tw, &th);
  cr_assert(tw == im->w && th == im->h);
  p.tile = 256; /* larger than the image: one tile */
  float *tiled = gradient(m, &p, im, 13, -7, &tw, &th);
  cr_assert(tw == im->w && th == im->h);
  cr_assert_eq(memcmp(whole, tiled, (size_t)im->w * im->h * 3 * sizeof(float)), 0);
  free(whole);
  free(tiled);
  dd_image_free(im);
  dd_model_free(m);
}

/* With 2x2 tiles of 96 on a 160x160 image (tiles at -8 and 72 on the torus, both multiples
 * of conv2/3x3's stride 4), pixels farther than conv2/3x3's receptive field (19 px) from any
 * tile or image border get exactly the whole image's gradient. */
Test(dream, tiles_agree_with_the_whole_image_away_from_borders, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *full = th_shared_photo("giraffe.jpg", 160);
  cr_assert_eq(full->h, 160);
  dd_dream_params p;
  params_for(m, "conv2/3x3", &p);
  int tw, th;
  float *whole = gradient(m, &p, full, 0, 0, &tw, &th);
  p.tile = 96;
  float *tiled = gradient(m, &p, full, 0, 0, &tw, &th);
  cr_assert(tw == 96 && th == 96, "tile %dx%d", tw, th);
  /* tile 0 sees rolled -8..87 and owns 0..79; tile 1 sees 72..167 and owns 80..159 */
  static const int lo[2] = {-8, 72};
  const int margin = 24;
  double maxg = 0, maxd = 0;
  int compared = 0;
  for (int y = 0; y < 160; y++)
    for (int x = 0; x < 160; x++) {
      int ok = x >= margin && x < 160 - margin && y >= margin && y < 160 - margin;
      int tx = x < 80 ? 0 : 1, ty = y < 80 ? 0 : 1;
      ok &= x - lo[tx] >= margin && x - lo[tx] < 96 - margin;
      ok &= y - lo[ty] >= margin && y - lo[ty] < 96 - margin;
      for (int c = 0; c < 3; c++) {
        size_t i = ((size_t)y * 160 + x) * 3 + c;
        if (fabs(whole[i]) > maxg) maxg = fabs(whole[i]);
        if (!ok) continue;
        compared++;
        double d = fabs(whole[i] - tiled[i]);
        if (d > maxd) maxd = d;
      }
    }
  printf("dream: tiles vs whole image: %d values compared, max |diff| %.3g (max |g| %.3g)\n",
         compared, maxd, maxg);
  cr_assert_gt(compared, 3 * 4 * 1000);
  cr_assert_leq(maxd, 1e-5 * maxg);
  free(whole);
  free(tiled);
  dd_image_free(full);
  dd_model_free(m);
}

Test(dream, tiles_when_the_budget_is_too_small, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("kite.jpg", 400);
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  /* half of what the whole image's plan needs */
  int64_t dims[] = {1, 3, im->h, im->w};
  dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  dd_plan *whole;
  dd_err perr;
  cr_assert_eq(dd_plan_new(m, &b, 1, &p.layers[0].value, 1, DD_PLAN_GRAD | DD_PLAN_REUSE, 0,
                           &whole, &perr), 0, "%s", perr.msg);
  p.max_memory = dd_plan_bytes(whole) / 2;
  cr_log_info("budget %.1f MB for a %dx%d image\n", p.max_memory / 1e6, im->w, im->h);
  dd_plan_free(whole);
  int tw, th;
  float *g = gradient(m, &p, im, 0, 0, &tw, &th);
  cr_assert(tw < im->w, "tile %dx%d for a %dx%d image", tw, th, im->w, im->h);
  double s = 0;
  for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) s += fabs(g[i]);
  cr_assert_gt(s, 0);
  free(g);
  /* a budget that no tile fits fails cleanly (a 32x32 tile's plan needs more than 64 KiB) */
  p.max_memory = 64u << 10;
  dd_err err;
  dd_image *copy = clone_image(im);
  int rc = dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err);
  cr_assert_eq(rc, DD_ELIMIT, "%s", err.msg);
  cr_assert_eq(memcmp(copy->rgb, im->rgb, (size_t)im->w * im->h * 3 * sizeof(float)), 0);
  dd_image_free(copy);
  dd_image_free(im);
  dd_model_free(m);
}

/* ---- what a job needs ---- */

static size_t px_bytes(int w, int h) { return (size_t)w * h * 3 * sizeof(float); }

/* The image buffers of a 4096x3072 dream, added up by hand; the budget of a job, all of it:
 * at 512 MiB the default 4 octaves do not fit (562 MiB of image buffers alone) and the
 * message says the largest size that does; one octave fits, in tiles; at 1 GiB the plan is
 * given what the rest leaves. */
Test(dream, budget_of_a_large_photo, .timeout = 60) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  int ow[64], oh[64];
  cr_assert_eq(dd_dream_octaves(4096, 3072, &p, ow, oh), 4);
  cr_assert(ow[1] == 2926 && oh[1] == 2194 && ow[3] == 1493 && oh[3] == 1119);
  size_t image = 3 * px_bytes(4096, 3072) + px_bytes(2926, 2194) + px_bytes(2090, 1567) +
                 px_bytes(1493, 1119) + 2 * sizeof(int) * 4096;
  cr_assert_eq(dd_dream_image_bytes(4096, 3072, &p), image);
  size_t mib = (size_t)1 << 20, weights = (size_t)dd_model_num_params(m) * 4;
  dd_dream_budget b;
  dd_err err;
  int rc = dd_dream_check_budget(m, &p, 4096, 3072, 512 * mib, &b, &err);
  cr_log_info("%s", err.msg);
  cr_assert_eq(rc, DD_ELIMIT, "%s", rc ? err.msg : "fits");
  cr_assert_eq(b.image, image);
  cr_assert_eq(b.weights, weights);
  cr_assert_eq(b.tile, 32);
  cr_assert_eq(b.need, weights + image + b.min_plan);
  char want[160];
  snprintf(want, sizeof want, "4096x3072 image: the dream needs %.0f MiB", (double)b.need / mib);
  cr_assert(strstr(err.msg, want), "%s", err.msg);
  cr_assert(strstr(err.msg, "more than the 512 MiB limit"), "%s", err.msg);
  snprintf(want, sizeof want, "an image of at most %dx%d would fit", b.fit_w, b.fit_h);
  cr_assert(strstr(err.msg, want), "%s", err.msg);
  /* the size named fits, one pixel more of the longer side does not */
  dd_dream_budget f;
  cr_assert_eq(dd_dream_check_budget(m, &p, b.fit_w, b.fit_h, 512 * mib, &f, &err), 0, "%s",
               err.msg);
  int w1 = b.fit_w + 1, h1 = (int)lround(3072.0 * w1 / 4096);
  cr_assert_eq(dd_dream_check_budget(m, &p, w1, h1, 512 * mib, &f, &err), DD_ELIMIT);
  /* one octave at 512 MiB: in tiles, the plans given what the rest leaves */
  p.octaves = 1;
  cr_assert_eq(dd_dream_check_budget(m, &p, 4096, 3072, 512 * mib, &b, &err), 0, "%s", err.msg);
  cr_assert_eq(b.image, 3 * px_bytes(4096, 3072) + 2 * sizeof(int) * 4096);
  cr_assert_eq(b.plan_budget, 512 * mib - weights - b.image);
  cr_assert_lt(b.plan_budget, (size_t)100 * mib); /* far less than one 4096x3072 plan */
  /* four octaves at 1 GiB */
  p.octaves = 4;
  cr_assert_eq(dd_dream_check_budget(m, &p, 4096, 3072, 1024 * mib, &b, &err), 0, "%s", err.msg);
  cr_assert_eq(b.plan_budget, 1024 * mib - weights - image);
  /* a budget below the image buffers themselves */
  cr_assert_eq(dd_dream_check_budget(m, &p, 4096, 3072, 100 * mib, &b, &err), DD_ELIMIT);
  /* 2 MiB of it for the plan on 32x32 tiles: too few Winograd tiles there (WINO_MIN_TILES),
   * so no transformed weights in its scratch (7 MiB before) */
  cr_assert(strstr(err.msg, "the dream needs 590 MiB (562 MiB for the image"), "%s", err.msg);
  cr_assert(b.fit_w > 0 && b.fit_w < 2048, "fits at %dx%d", b.fit_w, b.fit_h);
  /* decoding the photo: 8-bit pixels and their float copy */
  cr_assert_eq(dd_dream_decode_bytes(4096, 3072), (size_t)4096 * 3072 * 16);
  dd_model_free(m);
}

static int record_octave(const dd_dream_progress *info, void *user) {
  int *sizes = user;
  sizes[2 * info->octave] = info->w;
  sizes[2 * info->octave + 1] = info->h;
  return 0;
}

/* A run with exactly the stated need works, in the smallest tiles, with one byte less it
 * does not; the octaves are those dd_dream_octaves says. */
Test(dream, a_budget_of_the_stated_need_is_enough, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("kite.jpg", 120);
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  p.iters = 1;
  p.seed = 3;
  dd_dream_budget b;
  dd_err err;
  cr_assert_eq(dd_dream_check_budget(m, &p, im->w, im->h, 0, &b, &err), 0, "%s", err.msg);
  cr_assert_eq(b.plan_budget, 0);
  size_t need = b.need;
  cr_assert_eq(dd_dream_check_budget(m, &p, im->w, im->h, need, &b, &err), 0, "%s", err.msg);
  cr_assert_eq(b.plan_budget, b.min_plan);
  dd_dream_params q = p;
  q.max_memory = b.plan_budget;
  dd_image *copy = clone_image(im);
  int sizes[128] = {0}, ow[64], oh[64], n = dd_dream_octaves(im->w, im->h, &p, ow, oh);
  cr_assert_eq(dd_dream_run(m, &caffe, &q, copy, record_octave, sizes, &err), 0, "%s", err.msg);
  cr_assert_eq(n, 3);
  for (int o = 0; o < n; o++)
    cr_assert(sizes[2 * o] == ow[n - 1 - o] && sizes[2 * o + 1] == oh[n - 1 - o],
              "octave %d: %dx%d, dd_dream_octaves says %dx%d", o, sizes[2 * o],
              sizes[2 * o + 1], ow[n - 1 - o], oh[n - 1 - o]);
  dd_image_free(copy);
  cr_assert_eq(dd_dream_check_budget(m, &p, im->w, im->h, need - 1, &b, &err), DD_ELIMIT);
  q.max_memory = b.min_plan - 1;
  copy = clone_image(im);
  cr_assert_eq(dd_dream_run(m, &caffe, &q, copy, NULL, NULL, &err), DD_ELIMIT, "%s", err.msg);
  dd_image_free(copy);
  dd_image_free(im);
  dd_model_free(m);
}

/* Images and octaves smaller than the layer's smallest input are refused in pixels. */
Test(dream, budget_refuses_images_below_the_smallest_input, .timeout = 60) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  dd_dream_budget b;
  dd_err err;
  cr_assert_eq(dd_dream_check_budget(m, &p, 20, 20, 0, &b, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "a 20x20 image is too small for 'inception_4c/output': the smallest "
                            "input this model accepts is 23x23 pixels"), "%s", err.msg);
  params_for(m, "inception_5b/output", &p);
  cr_assert_eq(dd_dream_check_budget(m, &p, 60, 60, 0, &b, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "octave 1 is 43x43, smaller than the 47x47 pixels "
                            "'inception_5b/output' needs: use at most 1 octave"), "%s", err.msg);
  p.octaves = 1;
  cr_assert_eq(dd_dream_check_budget(m, &p, 60, 60, 0, &b, &err), 0, "%s", err.msg);
  dd_model_free(m);
}

/* ---- normalization ---- */

static const float k1[5] = {1, 4, 6, 4, 1};

/* TensorFlow's SAME padding before the first tap, stride 2, 5 taps. */
static int tf_pad(int n) {
  int out = (n + 1) / 2, total = (out - 1) * 2 + 5 - n;
  return total > 0 ? total / 2 : 0;
}

/* tf.nn.conv2d(img, k5x5, [1,2,2,1], 'SAME'), k5x5 = outer(k1, k1)/256 per channel. */
static void naive_down(const float *in, int w, int h, float *out) {
  int ow = (w + 1) / 2, oh = (h + 1) / 2, px = tf_pad(w), py = tf_pad(h);
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++)
      for (int c = 0; c < 3; c++) {
        double s = 0;
        for (int a = 0; a < 5; a++)
          for (int b = 0; b < 5; b++) {
            int iy = 2 * y - py + a, ix = 2 * x - px + b;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
              s += k1[a] * k1[b] / 256.0 * in[((size_t)iy * w + ix) * 3 + c];
          }
        out[((size_t)y * ow + x) * 3 + c] = (float)s;
      }
}

/* tf.nn.conv2d_transpose(lo, k5x5 * 4, shape of a w x h image, [1,2,2,1]): the adjoint. */
static void naive_up(const float *lo, int w, int h, float *out) {
  int ow = (w + 1) / 2, oh = (h + 1) / 2, px = tf_pad(w), py = tf_pad(h);
  memset(out, 0, (size_t)w * h * 3 * sizeof(float));
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++)
      for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) {
          int iy = 2 * y - py + a, ix = 2 * x - px + b;
          if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
          for (int c = 0; c < 3; c++)
            out[((size_t)iy * w + ix) * 3 + c] +=
                (float)(4 * k1[a] * k1[b] / 256.0) * lo[((size_t)y * ow + x) * 3 + c];
        }
}

static void naive_rms(float *v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)v[i] * v[i];
  double r = sqrt(s / n);
  if (r < 1e-10) r = 1e-10;
  for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / r);
}

/* lap_normalize of the tutorial: lap_split_n, normalize_std on each level, lap_merge. */
static void naive_lapnorm(float *g, int w, int h, int levels) {
  float *hi[8], *lo[9];
  int lw[9], lh[9];
  lo[0] = g;
  lw[0] = w;
  lh[0] = h;
  for (int i = 0; i < levels; i++) {
    lw[i + 1] = (lw[i] + 1) / 2;
    lh[i + 1] = (lh[i] + 1) / 2;
    lo[i + 1] = malloc((size_t)lw[i + 1] * lh[i + 1] * 3 * sizeof(float));
    hi[i] = malloc((size_t)lw[i] * lh[i] * 3 * sizeof(float));
    naive_down(lo[i], lw[i], lh[i], lo[i + 1]);
    naive_up(lo[i + 1], lw[i], lh[i], hi[i]);
    for (size_t j = 0; j < (size_t)lw[i] * lh[i] * 3; j++) hi[i][j] = lo[i][j] - hi[i][j];
  }
  naive_rms(lo[levels], (size_t)lw[levels] * lh[levels] * 3);
  for (int i = 0; i < levels; i++) naive_rms(hi[i], (size_t)lw[i] * lh[i] * 3);
  for (int i = levels - 1; i >= 0; i--) {
    float *up = malloc((size_t)lw[i] * lh[i] * 3 * sizeof(float));
    naive_up(lo[i + 1], lw[i], lh[i], up);
    for (size_t j = 0; j < (size_t)lw[i] * lh[i] * 3; j++) lo[i][j] = up[j] + hi[i][j];
    free(up);
  }
  for (int i = 0; i < levels; i++) {
    free(lo[i + 1]);
    free(hi[i]);
  }
}

Test(dream, laplacian_normalization_matches_naive_tensorflow_transcription) {
  static const int sizes[][3] = {{37, 23, 3}, {64, 48, 4}, {9, 5, 2}, {1, 1, 1}};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    int w = sizes[t][0], h = sizes[t][1], levels = sizes[t][2];
    size_t n = (size_t)w * h * 3;
    float *g = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
    uint64_t s = 5 + t;
    for (size_t i = 0; i < n; i++) g[i] = ref[i] = th_rand_uniform(&s, -3, 3) * (i % 7 + 1);
    float *work = malloc(dd_dream_norm_work(DD_NORM_LAPLACIAN, w, h, levels) * sizeof(float));
    dd_dream_normalize(DD_NORM_LAPLACIAN, levels, g, w, h, work);
    naive_lapnorm(ref, w, h, levels);
    double maxd = 0, maxr = 0;
    for (size_t i = 0; i < n; i++) {
      maxd = fmax(maxd, fabs(g[i] - ref[i]));
      maxr = fmax(maxr, fabs(ref[i]));
    }
    cr_assert_leq(maxd, 1e-5 * maxr, "%dx%d, %d levels: max diff %g of %g", w, h, levels, maxd,
                  maxr);
    cr_assert_gt(maxr, 0);
    free(g);
    free(ref);
    free(work);
  }
}

Test(dream, meanabs_and_std_normalization) {
  size_t n = 50 * 30 * 3;
  float *g = malloc(n * sizeof(float)), *h = malloc(n * sizeof(float));
  uint64_t s = 9;
  for (size_t i = 0; i < n; i++) g[i] = h[i] = th_rand_uniform(&s, -0.01f, 0.03f);
  dd_dream_normalize(DD_NORM_MEANABS, 0, g, 50, 30, NULL);
  dd_dream_normalize(DD_NORM_STD, 0, h, 50, 30, NULL);
  double sa = 0, mean = 0, var = 0;
  for (size_t i = 0; i < n; i++) sa += fabs(g[i]), mean += h[i];
  mean /= n;
  for (size_t i = 0; i < n; i++) var += (h[i] - mean) * (h[i] - mean);
  cr_assert_float_eq(sa / n, 1.0, 1e-5);
  cr_assert_float_eq(sqrt(var / n), 1.0, 1e-5);
  /* a dead layer's zero gradient stays zero rather than turning into NaN */
  memset(g, 0, n * sizeof(float));
  dd_dream_normalize(DD_NORM_MEANABS, 0, g, 50, 30, NULL);
  for (size_t i = 0; i < n; i++) cr_assert_eq(g[i], 0.f);
  free(g);
  free(h);
}

/* ---- guide ---- */

/* objective_guide: sum over the layer's positions of the best dot product with the guide's
 * features, computed here naively from the activations of both images. */
Test(dream, guide_objective_is_the_best_matching_dot_product, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("dog.jpg", 160), *guide = th_shared_photo("scream.jpg", 96);
  dd_dream_params p;
  params_for(m, "inception_3b/output", &p);
  p.guide = guide;
  dd_dreamer *d;
  dd_err err;
  cr_assert_eq(dd_dreamer_new(m, &caffe, &p, &d, &err), 0, "%s", err.msg);
  float *g = malloc((size_t)im->w * im->h * 3 * sizeof(float));
  double obj;
  cr_assert_eq(dd_dreamer_gradient(d, im, 0, 0, g, &obj, &err), 0, "%s", err.msg);
  dd_dreamer_free(d);

  float *feat[2];
  int64_t c = 0, n[2];
  const dd_image *ims[2] = {im, guide};
  for (int k = 0; k < 2; k++) {
    int64_t dims[4] = {1, 3, ims[k]->h, ims[k]->w};
    dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
    dd_plan *plan;
    cr_assert_eq(dd_plan_new(m, &b, 1, &p.layers[0].value, 1, 0, 0, &plan, &err), 0, "%s",
                 err.msg);
    dd_image_to_input(ims[k], &caffe, dd_f32(dd_plan_tensor(plan, dd_model_input(m))));
    dd_plan_forward(plan);
    const dd_tensor *t = dd_plan_tensor(plan, p.layers[0].value);
    c = t->shape.d[1];
    n[k] = dd_tensor_numel(t) / c;
    feat[k] = malloc((size_t)dd_tensor_numel(t) * sizeof(float));
    memcpy(feat[k], t->data, (size_t)dd_tensor_numel(t) * sizeof(float));
    dd_plan_free(plan);
  }
  double ref = 0;
  for (int64_t i = 0; i < n[0]; i++) {
    double best = -INFINITY;
    for (int64_t j = 0; j < n[1]; j++) {
      double s = 0;
      for (int64_t ch = 0; ch < c; ch++) s += (double)feat[0][ch * n[0] + i] * feat[1][ch * n[1] + j];
      if (s > best) best = s;
    }
    ref += best;
  }
  printf("dream: guide objective %.6g, naive %.6g\n", obj, ref);
  cr_assert_float_eq(obj, ref, 1e-4 * fabs(ref));
  double l1 = 0;
  for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) l1 += fabs(g[i]);
  cr_assert_gt(l1, 0);
  free(feat[0]);
  free(feat[1]);
  free(g);
  dd_image_free(im);
  dd_image_free(guide);
  dd_model_free(m);
}

/* ---- errors, cancellation, checkpoints ---- */

Test(dream, layer_specs) {
  char name[64];
  int ch;
  float w;
  dd_err err;
  cr_assert_eq(dd_dream_layer_spec("inception_4c/output#97:-0.5", name, sizeof name, &ch, &w, &err), 0);
  cr_assert_str_eq(name, "inception_4c/output");
  cr_assert_eq(ch, 97);
  cr_assert_float_eq(w, -0.5f, 0);
  cr_assert_eq(dd_dream_layer_spec("conv2/3x3", name, sizeof name, &ch, &w, &err), 0);
  cr_assert(ch == -1 && w == 1.f);
  static const char *const bad[] = {"x:abc", "x:", "x:1.5.2", "x#", "x#-1", "x#1a", ":2", "#3",
                                    "x: 2", "x:nan", "x:inf"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(dd_dream_layer_spec(bad[i], name, sizeof name, &ch, &w, &err), DD_EARG,
                 "'%s' was accepted", bad[i]);
    cr_assert(strstr(err.msg, bad[i]), "message '%s' does not quote '%s'", err.msg, bad[i]);
  }
}

Test(dream, rejects_bad_parameters_with_clear_errors, .timeout = 120) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("person.jpg", 96);
  dd_dream_layer l;
  dd_err err;
  cr_assert_eq(dd_dream_layer_resolve(m, "inception_4c/outptu", &l, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "closest") && strstr(err.msg, "inception_4c/output"), "%s", err.msg);
  cr_assert_eq(dd_dream_layer_resolve(m, "conv2", &l, &err), 0, "%s", err.msg); /* alias */
  int w = 0;
  while (!dd_model_value_is_const(m, w)) w++;
  cr_assert_eq(dd_dream_layer_resolve(m, dd_model_value_name(m, w), &l, &err), DD_EARG,
               "the weight '%s' was accepted as a layer", dd_model_value_name(m, w));

  dd_dream_params p;
  params_for(m, "inception_4c/output#600", &p);
  dd_image *copy = clone_image(im);
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert(strstr(err.msg, "512 channels") && strstr(err.msg, "out of range"), "%s", err.msg);
  cr_assert_eq(memcmp(copy->rgb, im->rgb, (size_t)im->w * im->h * 3 * sizeof(float)), 0);

  params_for(m, "inception_4c/output", &p);
  p.octaves = -2;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert(strstr(err.msg, "octaves"), "%s", err.msg);
  params_for(m, "inception_4c/output", &p);
  p.octave_scale = 0.5f;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert(strstr(err.msg, "octave scale"), "%s", err.msg);
  params_for(m, "inception_4c/output", &p);
  p.step = NAN;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert(strstr(err.msg, "step"), "%s", err.msg);
  params_for(m, "inception_4c/output", &p);
  p.tile = 5;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert(strstr(err.msg, "tile"), "%s", err.msg);
  params_for(m, "inception_4c/output#3", &p);
  p.guide = im;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert(strstr(err.msg, "guide"), "%s", err.msg);
  p.n_layers = 0;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, NULL, NULL, &err), DD_EARG);
  cr_assert_eq(memcmp(copy->rgb, im->rgb, (size_t)im->w * im->h * 3 * sizeof(float)), 0);
  dd_image_free(copy);
  dd_image_free(im);
  dd_model_free(m);
}

typedef struct watch {
  volatile sig_atomic_t flag;
  int calls, stop_after, checkpoints;
  int ckpt_w, ckpt_h;
  float *last_ckpt;
  double last_done;
} watch;

static int on_progress(const dd_dream_progress *p, void *user) {
  watch *w = user;
  w->calls++;
  cr_assert_geq(p->done, w->last_done);
  w->last_done = p->done;
  if (w->stop_after && w->calls == w->stop_after) w->flag = 1;
  if (p->checkpoint) {
    w->checkpoints++;
    w->ckpt_w = p->checkpoint->w;
    w->ckpt_h = p->checkpoint->h;
    size_t n = (size_t)p->checkpoint->w * p->checkpoint->h * 3;
    free(w->last_ckpt);
    w->last_ckpt = malloc(n * sizeof(float));
    memcpy(w->last_ckpt, p->checkpoint->rgb, n * sizeof(float));
  }
  return 0;
}

Test(dream, cancel_stops_between_iterations_and_leaves_the_image, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("horses.jpg", 128), *copy = clone_image(im);
  dd_dream_params p;
  params_for(m, "inception_3b/output", &p);
  quick(&p);
  watch w = {0};
  w.stop_after = 2;
  p.cancel = &w.flag;
  dd_err err;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, copy, on_progress, &w, &err), DD_EINTR, "%s", err.msg);
  cr_assert_eq(w.calls, 2);
  cr_assert_eq(memcmp(copy->rgb, im->rgb, (size_t)im->w * im->h * 3 * sizeof(float)), 0);
  dd_image_free(copy);
  dd_image_free(im);
  dd_model_free(m);
}

Test(dream, checkpoints_are_full_size_and_the_last_is_the_result, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("horses.jpg", 128);
  dd_dream_params p;
  params_for(m, "inception_3b/output", &p);
  quick(&p); /* 2 octaves x 3 iterations */
  p.checkpoint_every = 2;
  p.seed = 3;
  watch w = {0};
  dd_err err;
  cr_assert_eq(dd_dream_run(m, &caffe, &p, im, on_progress, &w, &err), 0, "%s", err.msg);
  cr_assert_eq(w.calls, 6);
  cr_assert_eq(w.checkpoints, 3);
  cr_assert(w.ckpt_w == im->w && w.ckpt_h == im->h);
  cr_assert_float_eq(w.last_done, 1.0, 1e-9);
  cr_assert_eq(memcmp(w.last_ckpt, im->rgb, (size_t)im->w * im->h * 3 * sizeof(float)), 0);
  free(w.last_ckpt);
  dd_image_free(im);
  dd_model_free(m);
}

/* ---- the command line ---- */

TestSuite(dream_cli, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 300);

Test(dream_cli, same_seed_gives_byte_identical_files) {
  char in[128], a[128], b[128];
  th_photo("dog.jpg", 112, th_tmp(in, sizeof in, "in.png"));
  th_tmp(a, sizeof a, "a.jpg");
  th_tmp(b, sizeof b, "b.jpg");
  th_result r = TH_RUN("--layer", "inception_3b/output", "--octaves", "2", "--iters", "2",
                       "--seed", "7", "-q", in, a);
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("dream", "--layer", "inception_3b/output", "--octaves", "2", "--iters", "2",
             "--seed", "7", "-q", in, b);
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  size_t la, lb;
  char *da = th_slurp(a, &la), *db = th_slurp(b, &lb);
  cr_assert(da && db && la > 1000);
  cr_assert((unsigned char)da[0] == 0xFF && (unsigned char)da[1] == 0xD8, "not a JPEG");
  cr_assert(la == lb && memcmp(da, db, la) == 0, "the same seed gave different files");
  free(da);
  free(db);
}

Test(dream_cli, rejects_nonsense_with_clear_errors) {
  char in[128], out[128], link[128];
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "in.png"));
  th_tmp(out, sizeof out, "out.jpg");
  th_tmp(link, sizeof link, "link.png");
  cr_assert_eq(symlink(in, link), 0);
  struct {
    const char *args[8];
    const char *words[3];
  } cases[] = {
      {{"--octaves", "-2", in, out}, {"--octaves", "-2"}},
      {{"--octaves", "many", in, out}, {"--octaves", "many"}},
      {{"--octave-scale", "0.5", in, out}, {"--octave-scale"}},
      {{"--step", "nan", in, out}, {"--step"}},
      {{"--norm", "l3", in, out}, {"--norm", "laplacian"}},
      {{"--tile", "4", in, out}, {"--tile"}},
      {{"--layer", "inception_4c/output:1.2.3", in, out}, {"--layer", "1.2.3", "number"}},
      {{"--layer", "inception_4c/output#x", in, out}, {"--layer", "channel"}},
      {{"--layer", "inception_4c/outptu", in, out}, {"inception_4c/outptu", "closest", "inception_4c/output"}},
      {{"--layer", "inception_4c/output#600", in, out}, {"512 channels", "out of range"}},
      {{"--bogus", in, out}, {"unknown option", "--bogus"}},
      {{"--iters", in, out}, {"--iters"}},
      {{in}, {"IN and OUT"}},
      {{in, out, out}, {"only IN and OUT"}},
      {{in, "out.gif"}, {"out.gif", ".jpg"}},
      {{in, in}, {"never overwritten"}},
      {{in, link}, {"same file", "never overwritten"}},
      {{"--mean", "1,2", in, out}, {"--mean"}},
      {{"--seed", "-1", in, out}, {"--seed"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    th_result r = th_run(cases[i].args);
    cr_expect_neq(r.status, 0, "case %zu was accepted", i);
    for (int k = 0; k < 3 && cases[i].words[k]; k++)
      cr_expect(strstr(r.err, cases[i].words[k]), "case %zu: '%s' not in: %s", i,
                cases[i].words[k], r.err);
    th_result_free(&r);
  }
  struct stat st;
  cr_assert_neq(stat(out, &st), 0, "an output was written");
}

/* Ctrl-C: no output, or with checkpoints the last complete one. */
Test(dream_cli, interrupt_writes_nothing_or_the_last_checkpoint) {
  char in[128], out[128], ck[128];
  th_photo("dog.jpg", 160, th_tmp(in, sizeof in, "in.png"));
  th_tmp(out, sizeof out, "out.png");
  th_tmp(ck, sizeof ck, "ck.png");
  const char *args[] = {"--layer", "inception_3b/output", "--iters", "1000", "-q", in, out, NULL};
  pid_t pid = th_spawn(args);
  struct timespec ts = {1, 500000000};
  nanosleep(&ts, NULL);
  kill(pid, SIGINT);
  th_result r = th_wait(pid);
  /* 130 when the signal came during the dream, killed by it when still loading */
  cr_assert(r.status == 130 || r.signal == SIGINT, "status %d, signal %d: %s", r.status,
            r.signal, r.err);
  struct stat sb;
  cr_assert_neq(stat(out, &sb), 0, "an interrupted run wrote its output");
  th_result_free(&r);

  const char *args2[] = {"--layer", "inception_3b/output", "--iters", "1000",
                         "--checkpoint-every", "1", "-q", in, ck, NULL};
  pid = th_spawn(args2);
  for (int i = 0; i < 600 && stat(ck, &sb) != 0; i++) {
    struct timespec t = {0, 100000000};
    nanosleep(&t, NULL);
  }
  cr_assert_eq(stat(ck, &sb), 0, "no checkpoint after a minute");
  kill(pid, SIGTERM);
  r = th_wait(pid);
  cr_assert_eq(r.status, 143, "status %d, signal %d: %s", r.status, r.signal, r.err);
  cr_assert(strstr(r.err, "checkpoint"), "%s", r.err);
  th_result_free(&r);
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(ck, 0, &im, &err), 0, "%s", err.msg);
  cr_assert(im->w == 160);
  dd_image_free(im);
}

/* In place, the largest octave works in the image itself: the same picture bit for bit, with
 * one full-size buffer less (dd_dream_image_bytes), for one octave, several, tiles and
 * checkpoints. */
Test(dream, in_place_gives_the_same_picture_with_less_memory, .timeout = 300) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = th_shared_photo("horses.jpg", 160);
  dd_dream_params p;
  params_for(m, "inception_3b/output", &p);
  p.iters = 2;
  const struct {
    int octaves, tile, checkpoint;
  } cases[] = {{1, 0, 0}, {3, 0, 0}, {3, 64, 0}, {3, 0, 2}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    p.octaves = cases[k].octaves;
    p.tile = cases[k].tile;
    p.checkpoint_every = cases[k].checkpoint;
    dd_image *a = clone_image(im), *b = clone_image(im);
    dd_err err;
    p.in_place = 0;
    cr_assert_eq(dd_dream_run(m, &caffe, &p, a, NULL, NULL, &err), 0, "%s", err.msg);
    size_t copy_bytes = dd_dream_image_bytes(im->w, im->h, &p);
    p.in_place = 1;
    cr_assert_eq(dd_dream_run(m, &caffe, &p, b, NULL, NULL, &err), 0, "%s", err.msg);
    size_t in_place_bytes = dd_dream_image_bytes(im->w, im->h, &p);
    cr_expect_eq(memcmp(a->rgb, b->rgb, (size_t)im->w * im->h * 3 * sizeof(float)), 0,
                 "case %zu: in place gave another picture", k);
    size_t picture = (size_t)im->w * im->h * 3 * sizeof(float);
    cr_expect_geq(copy_bytes - in_place_bytes, picture - (p.octaves > 1 ? picture / 2 + 8192 : 0),
                  "case %zu: %zu bytes in place, %zu with a copy", k, in_place_bytes, copy_bytes);
    dd_image_free(a);
    dd_image_free(b);
  }
  dd_image_free(im);
  dd_model_free(m);
}

/* The CLI-safety issue's case: a 4096x3072 photo under --max-memory 512M is dreamed (in tiles,
 * the largest octave in place; measured: 485 MiB peak, README), where holding a copy of the
 * image would not fit. */
Test(dream, a_12_megapixel_photo_fits_512_mib_in_place) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_dream_params p;
  params_for(m, "inception_4c/output", &p);
  dd_dream_budget b;
  dd_err err;
  p.in_place = 1;
  cr_expect_eq(dd_dream_check_budget(m, &p, 4096, 3072, (size_t)512 << 20, &b, &err), DD_OK,
               "%s", err.msg);
  cr_expect_lt(b.need, (size_t)512 << 20);
  p.in_place = 0;
  cr_expect_eq(dd_dream_check_budget(m, &p, 4096, 3072, (size_t)512 << 20, &b, &err), DD_ELIMIT);
  dd_model_free(m);
}
