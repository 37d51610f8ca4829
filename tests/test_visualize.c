/* Visualization: the FFT and the image parameterization against naive references and finite
 * differences, and on BVLC GoogLeNet: the filter grid, a class visualization the network
 * recognizes, a channel visualization that beats every photo, Grad-CAM on the dog. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "dream/graph.h"
#include "dream/image.h"
#include "dream/visualize.h"
#include "fourier.h"
#include "helper_cli.h"
#include "helper_ops.h"
#include "model_internal.h"

static const dd_preproc caffe = {1, 255.f, {104.f, 117.f, 123.f}, {1.f, 1.f, 1.f}};

static dd_image *load_photo(const char *name) {
  char rel[128], p[512];
  snprintf(rel, sizeof rel, "images/%s", name);
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(th_shared(p, sizeof p, rel), 0, &im, &err), 0, "%s", err.msg);
  return im;
}

/* ---- FFT and parameterization --------------------------------------------------------- */

Test(visualize, fft_matches_naive_dft) {
  const int n = 16;
  dd_fft2 *f;
  dd_err err;
  cr_assert_eq(dd_fft2_new(n, &f, &err), 0, "%s", err.msg);
  uint64_t s = 5;
  float re[256], im[256], re0[256], im0[256];
  for (int i = 0; i < n * n; i++) {
    re0[i] = re[i] = th_rand_uniform(&s, -1, 1);
    im0[i] = im[i] = th_rand_uniform(&s, -1, 1);
  }
  dd_fft2_run(f, re, im, -1);
  double worst = 0;
  for (int ky = 0; ky < n; ky++)
    for (int kx = 0; kx < n; kx++) {
      double sr = 0, si = 0;
      for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
          double a = -2 * 3.14159265358979323846 * ((double)ky * y + (double)kx * x) / n;
          sr += re0[y * n + x] * cos(a) - im0[y * n + x] * sin(a);
          si += re0[y * n + x] * sin(a) + im0[y * n + x] * cos(a);
        }
      worst = fmax(worst, fmax(fabs(sr - re[ky * n + kx]), fabs(si - im[ky * n + kx])));
    }
  cr_assert_lt(worst, 1e-4, "forward FFT vs naive DFT: %g", worst);
  dd_fft2_run(f, re, im, +1);
  for (int i = 0; i < n * n; i++) {
    cr_assert_float_eq(re[i] / (n * n), re0[i], 1e-5);
    cr_assert_float_eq(im[i] / (n * n), im0[i], 1e-5);
  }
  dd_fft2_free(f);
  cr_assert_eq(dd_fft2_new(24, &f, &err), DD_EARG);
}

Test(visualize, warp_adjoint_is_the_transpose) {
  const int P = 16, S = 11;
  dd_warp w = dd_warp_make(P, 2.3f, -1.7f, 1.08f, 0.2f);
  uint64_t s = 9;
  float x[3 * 16 * 16], y[3 * 11 * 11], ax[3 * 11 * 11], aty[3 * 16 * 16] = {0};
  for (int i = 0; i < 3 * P * P; i++) x[i] = th_rand_uniform(&s, -1, 1);
  for (int i = 0; i < 3 * S * S; i++) y[i] = th_rand_uniform(&s, -1, 1);
  dd_warp_sample(x, P, &w, ax, S);
  dd_warp_adjoint(y, S, &w, aty, P);
  double l = 0, r = 0;
  for (int i = 0; i < 3 * S * S; i++) l += (double)ax[i] * y[i];
  for (int i = 0; i < 3 * P * P; i++) r += (double)x[i] * aty[i];
  cr_assert_lt(fabs(l - r), 1e-5 * fabs(l) + 1e-6, "<Ax,y> %g vs <x,A'y> %g", l, r);
  /* The centre view of an even margin is an exact crop. */
  dd_warp c = dd_warp_center(P);
  dd_warp_sample(x, P, &c, ax, 10);
  cr_assert_eq(ax[0], x[3 * P + 3]);
  cr_assert_eq(ax[2 * 100 + 9 * 10 + 9], x[2 * P * P + 12 * P + 12]);
}

/* L(spec) = sum w * view(render(spec)): the analytic gradient against central differences
 * along random directions (everything is smooth: sigmoid, linear maps, bilinear weights). */
static void check_parameterization(int pixels) {
  const int P = 16, S = 12;
  dd_fimage *f;
  dd_err err;
  cr_assert_eq(dd_fimage_new(P, pixels, &f, &err), 0, "%s", err.msg);
  dd_warp w = dd_warp_make(P, 1.3f, -0.6f, 0.93f, -0.15f);
  size_t n6 = 6 * P * P;
  float *spec = malloc(n6 * sizeof(float)), *gspec = malloc(n6 * sizeof(float));
  float *dir = malloc(n6 * sizeof(float)), *tmp = malloc(n6 * sizeof(float));
  float *wt = malloc(3 * S * S * sizeof(float)), *view = malloc(3 * S * S * sizeof(float));
  float *grgb = calloc(3 * P * P, sizeof(float));
  uint64_t s = 11;
  /* Large enough that the sigmoid is well into its curved part. */
  for (size_t i = 0; i < n6; i++) spec[i] = th_rand_uniform(&s, -1, 1);
  for (int i = 0; i < 3 * S * S; i++) wt[i] = th_rand_uniform(&s, -1, 1);
  dd_fimage_render(f, spec);
  dd_warp_adjoint(wt, S, &w, grgb, P);
  dd_fimage_adjoint(f, grgb, gspec);
  for (int trial = 0; trial < 4; trial++) {
    for (size_t i = 0; i < n6; i++) dir[i] = th_rand_uniform(&s, -1, 1);
    double analytic = 0, L[2];
    for (size_t i = 0; i < n6; i++) analytic += (double)gspec[i] * dir[i];
    const float eps = 1e-2f;
    for (int k = 0; k < 2; k++) {
      for (size_t i = 0; i < n6; i++) tmp[i] = spec[i] + (k ? -eps : eps) * dir[i];
      dd_fimage_render(f, tmp);
      dd_warp_sample(f->rgb, P, &w, view, S);
      L[k] = 0;
      for (int i = 0; i < 3 * S * S; i++) L[k] += (double)wt[i] * view[i];
    }
    double numeric = (L[0] - L[1]) / (2 * eps);
    cr_assert_lt(fabs(numeric - analytic), 2e-3 * fabs(analytic) + 1e-5,
                 "pixels %d: directional derivative: numeric %g, analytic %g", pixels, numeric,
                 analytic);
  }
  /* Pixels are in 0..1 whatever the spectrum. */
  for (size_t i = 0; i < n6; i++) tmp[i] = 100 * spec[i];
  dd_fimage_render(f, tmp);
  for (int i = 0; i < 3 * P * P; i++) cr_assert(f->rgb[i] >= 0 && f->rgb[i] <= 1);
  free(spec);
  free(gspec);
  free(dir);
  free(tmp);
  free(wt);
  free(view);
  free(grgb);
  dd_fimage_free(f);
}

Test(visualize, parameterization_gradient_matches_finite_differences) {
  check_parameterization(0);
  check_parameterization(1);
}

/* ---- colour maps and grids -------------------------------------------------------------- */

Test(visualize, colormaps_are_matplotlibs) {
  /* First and last entries of matplotlib's _cm_listed.py, times 255. */
  float rgb[3];
  dd_colormap(DD_CMAP_INFERNO, 0, rgb);
  cr_assert(fabsf(rgb[0] - 0.001462f * 255) < 0.5f && fabsf(rgb[2] - 0.013866f * 255) < 0.5f);
  dd_colormap(DD_CMAP_INFERNO, 1, rgb);
  cr_assert(fabsf(rgb[0] - 0.988362f * 255) < 0.5f && fabsf(rgb[1] - 0.998364f * 255) < 0.5f &&
            fabsf(rgb[2] - 0.644924f * 255) < 0.5f);
  dd_colormap(DD_CMAP_VIRIDIS, 0, rgb);
  cr_assert(fabsf(rgb[0] - 0.267004f * 255) < 0.5f && fabsf(rgb[2] - 0.329415f * 255) < 0.5f);
  dd_colormap(DD_CMAP_VIRIDIS, 1, rgb);
  cr_assert(fabsf(rgb[0] - 0.993248f * 255) < 0.5f && fabsf(rgb[1] - 0.906157f * 255) < 0.5f);
  /* Both maps were designed with lightness rising monotonically. */
  for (int m = 0; m < 2; m++) {
    float prev = -1;
    for (int i = 0; i <= 64; i++) {
      dd_colormap(m ? DD_CMAP_VIRIDIS : DD_CMAP_INFERNO, i / 64.f, rgb);
      float luma = 0.2126f * rgb[0] + 0.7152f * rgb[1] + 0.0722f * rgb[2];
      cr_assert_gt(luma, prev, "map %d, step %d", m, i);
      prev = luma;
    }
  }
  dd_colormap(DD_CMAP_INFERNO, NAN, rgb);
  cr_assert(rgb[0] < 1 && rgb[1] < 1);
}

Test(visualize, grid_places_tiles) {
  dd_image *t[5], *g;
  dd_err err;
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(dd_image_new(3, 2, &t[i], &err), 0);
    for (int j = 0; j < 18; j++) t[i]->rgb[j] = (float)(10 * i + j % 3);
  }
  dd_grid gr;
  cr_assert_eq(dd_vis_grid((const dd_image *const *)t, 5, 1, 255, &g, &gr, &err), 0, "%s", err.msg);
  cr_assert_eq(gr.cols, 3);
  cr_assert_eq(gr.rows, 2);
  cr_assert_eq(g->w, 1 + 3 * 4);
  cr_assert_eq(g->h, 1 + 2 * 3);
  /* Tile 4 is at column 1 of row 1: x = 1 + 4, y = 1 + 3. */
  cr_assert_eq(g->rgb[((size_t)4 * g->w + 5) * 3], 40.f);
  cr_assert_eq(g->rgb[0], 255.f);
  dd_image_free(g);
  dd_image *odd;
  cr_assert_eq(dd_image_new(2, 2, &odd, &err), 0);
  dd_image_free(t[4]);
  t[4] = odd;
  cr_assert_eq(dd_vis_grid((const dd_image *const *)t, 5, 1, 255, &g, &gr, &err), DD_EARG);
  for (int i = 0; i < 5; i++) dd_image_free(t[i]);
}

Test(visualize, channel_stats_match_naive) {
  int64_t dims[3] = {3, 4, 5};
  dd_tensor *t = th_random(3, dims, 3, -1, 1);
  float *a = dd_f32(t);
  for (int i = 0; i < 60; i += 3) a[i] = 0;
  dd_chan_stats st[3];
  dd_vis_channel_stats(t, st);
  for (int c = 0; c < 3; c++) {
    double sum = 0, mx = -1e30;
    int zeros = 0;
    for (int i = 0; i < 20; i++) {
      sum += a[c * 20 + i];
      mx = fmax(mx, a[c * 20 + i]);
      zeros += a[c * 20 + i] == 0;
    }
    cr_assert_float_eq(st[c].mean, sum / 20, 1e-6);
    cr_assert_eq(st[c].max, (float)mx);
    cr_assert_float_eq(st[c].zeros, zeros / 20.0, 1e-6);
  }
  dd_image *g;
  dd_err err;
  cr_assert_eq(dd_vis_activation_grid(t, 1, 3, 2, 1, DD_CMAP_VIRIDIS, &g, NULL, &err), 0);
  cr_assert_eq(g->w, 1 + 2 * (10 + 1));
  cr_assert_eq(g->h, 1 + 8 + 1);
  dd_image_free(g);
  cr_assert_eq(dd_vis_activation_grid(t, 2, 4, 2, 1, DD_CMAP_VIRIDIS, &g, NULL, &err), DD_EARG);
  dd_tensor_free(t);
}

/* ---- GoogLeNet ------------------------------------------------------------------------- */

Test(visualize, conv1_filter_grid) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  int node;
  cr_assert_eq(dd_vis_find_conv(m, th_value(m, "conv1"), &node, &err), 0, "%s", err.msg);
  cr_assert_str_eq(m->nodes[node].name, "conv1/7x7_s2");
  int node2;
  cr_assert_eq(dd_vis_find_conv(m, th_value(m, "conv1/7x7_s2_pre_relu"), &node2, &err), 0);
  cr_assert_eq(node2, node);
  dd_image *g;
  dd_grid gr;
  cr_assert_eq(dd_vis_filters(m, node, 1, 0, 2, &g, &gr, &err), 0, "%s", err.msg);
  /* 64 kernels of 7x7, enlarged 5 times (the first zoom giving >= 32 px), 2 px apart. */
  cr_assert_eq(gr.n, 64);
  cr_assert_eq(gr.cols * gr.rows, 64);
  cr_assert_eq(gr.tile_w, 35);
  cr_assert_eq(gr.tile_h, 35);
  cr_assert_eq(g->w, 2 + 8 * 37);
  cr_assert_eq(g->h, 2 + 8 * 37);
  /* Each tile against its kernel, from the weights: symmetric scaling, BGR shown as RGB. */
  const dd_tensor *w = m->values[m->nodes[node].in[1]].init;
  for (int k = 0; k < 64; k += 9) {
    const float *kw = dd_f32(w) + k * 3 * 49;
    float amax = 0;
    for (int i = 0; i < 147; i++) amax = fmaxf(amax, fabsf(kw[i]));
    int ox = 2 + (k % 8) * 37, oy = 2 + (k / 8) * 37;
    float extreme = 0;
    for (int y = 0; y < 35; y++)
      for (int x = 0; x < 35; x++)
        for (int c = 0; c < 3; c++) {
          float px = g->rgb[((size_t)(oy + y) * g->w + ox + x) * 3 + c];
          float want = 127.5f + 127.5f * kw[(2 - c) * 49 + (y / 5) * 7 + x / 5] / amax;
          cr_assert_float_eq(px, want, 1e-3, "kernel %d (%d,%d,%d)", k, x, y, c);
          extreme = fmaxf(extreme, fabsf(px - 127.5f));
        }
    cr_assert_float_eq(extreme, 127.5f, 1e-3);
  }
  dd_image_free(g);
  /* Not a first convolution, not a convolution. */
  cr_assert_eq(dd_vis_find_conv(m, th_value(m, "conv2/3x3"), &node, &err), 0);
  cr_assert_eq(dd_vis_filters(m, node, 1, 0, 2, &g, &gr, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "64 channels"), "%s", err.msg);
  cr_assert_eq(dd_vis_find_conv(m, th_value(m, "pool1/3x3_s2"), &node, &err), DD_ENOTFOUND);
  dd_model_free(m);
}

Test(visualize, logits_are_the_softmax_input) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int v;
  dd_err err;
  cr_assert_eq(dd_vis_logits(m, &v, &err), 0);
  cr_assert_str_eq(m->nodes[m->values[v].producer].op_type, "Gemm");
  dd_model_free(m);
}

Test(visualize, class_visualization_is_recognized, .timeout = 240) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  int logits;
  cr_assert_eq(dd_vis_logits(m, &logits, &err), 0);
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  o.size = 112;
  o.iters = 32;
  dd_fv *fv;
  cr_assert_eq(dd_fv_new(m, &caffe, logits, &o, &fv, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_fv_channels(fv), 1000);
  const int classes[] = {250 /* Siberian husky */, 1 /* goldfish */};
  for (int k = 0; k < 2; k++) {
    dd_image *im;
    float logit;
    cr_assert_eq(dd_fv_run(fv, classes[k], 7, &im, &logit, &err), 0, "%s", err.msg);
    dd_tensor *p;
    cr_assert_eq(dd_vis_classify(m, &caffe, im, 0, &p, &err), 0, "%s", err.msg);
    float pc = dd_f32(p)[classes[k]];
    cr_assert_gt(pc, 0.9f, "class %d: probability %g (logit %g)", classes[k], pc, logit);
    dd_tensor_free(p);
    dd_image_free(im);
  }
  dd_image *im;
  cr_assert_eq(dd_fv_run(fv, 1000, 7, &im, NULL, &err), DD_EARG);
  dd_fv_free(fv);
  dd_model_free(m);
}

Test(visualize, channel_visualization_beats_every_photo, .timeout = 240) {
  static const char *photos[] = {"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg",
                                 "kite.jpg", "person.jpg", "scream.jpg"};
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  int v = th_value(m, "inception_4c/output");
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  o.size = 96;
  o.iters = 32;
  dd_fv *fv;
  cr_assert_eq(dd_fv_new(m, &caffe, v, &o, &fv, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_fv_channels(fv), 512);
  /* Channel 2 is zero everywhere on the starting noise: it needs the pre-ReLU gradient. */
  const int channels[] = {2, 300};
  for (int k = 0; k < 2; k++) {
    int ch = channels[k];
    dd_image *vis;
    float obj;
    cr_assert_eq(dd_fv_run(fv, ch, 3, &vis, &obj, &err), 0, "%s", err.msg);
    dd_tensor *a;
    cr_assert_eq(dd_vis_activations(m, &caffe, v, vis, 0, &a, &err), 0, "%s", err.msg);
    dd_chan_stats *st = malloc(512 * sizeof *st);
    dd_vis_channel_stats(a, st);
    float mine = st[ch].mean;
    cr_assert_float_eq(mine, obj, 1e-3 * fabsf(obj) + 1e-3, "objective %g vs measured %g", obj, mine);
    dd_tensor_free(a);
    dd_image_free(vis);
    for (size_t i = 0; i < sizeof photos / sizeof *photos; i++) {
      dd_image *ph = load_photo(photos[i]), *small;
      cr_assert_eq(dd_image_resize(ph, 96, 96, &small, &err), 0);
      cr_assert_eq(dd_vis_activations(m, &caffe, v, small, 0, &a, &err), 0, "%s", err.msg);
      dd_vis_channel_stats(a, st);
      cr_assert_gt(mine, st[ch].mean, "channel %d: visualization %g, %s %g", ch, mine, photos[i],
                   st[ch].mean);
      cr_log_info("channel %d: visualization %g, %s %g", ch, mine, photos[i], st[ch].mean);
      dd_tensor_free(a);
      dd_image_free(small);
      dd_image_free(ph);
    }
    free(st);
  }
  dd_fv_free(fv);
  dd_model_free(m);
}

Test(visualize, gradcam_finds_the_dog, .timeout = 120) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = load_photo("dog.jpg");
  dd_explain_opts o;
  dd_explain_opts_init(&o);
  o.cls = 250; /* Siberian husky */
  dd_explanation *e;
  dd_err err;
  cr_assert_eq(dd_explain(m, &caffe, im, &o, &e, &err), 0, "%s", err.msg);
  cr_assert_str_eq(m->values[e->layer].name, "inception_5b/output");
  cr_assert_eq(e->cam_w, 7);
  cr_assert_eq(e->top[0], 250);
  cr_assert_gt(e->prob[0], e->prob[1]);
  /* The dog, read off the 768x576 photo: ears at y 222, tail at x 135 and y 540, paws at
   * x 305.  The bicycle's wheels and frame reach x 565, the truck and trees fill the top. */
  cr_assert(e->cam_x >= 130 && e->cam_x <= 315 && e->cam_y >= 215 && e->cam_y <= 545,
            "Grad-CAM maximum at (%d, %d)", e->cam_x, e->cam_y);
  /* More of the map on the dog than beside it, on the bicycle's rear wheel. */
  double dog = 0, wheel = 0;
  for (int y = 300; y < 400; y++)
    for (int x = 0; x < 100; x++) {
      dog += e->cam[(size_t)y * 768 + 160 + x];
      wheel += e->cam[(size_t)y * 768 + 420 + x];
    }
  cr_assert_gt(dog, 2 * wheel, "dog %g, wheel %g", dog, wheel);
  for (size_t i = 0; i < 768 * 576; i++) cr_assert(e->cam[i] >= 0 && e->saliency[i] >= 0);
  dd_image *pic;
  cr_assert_eq(dd_explain_picture(im, e, 0, &pic, &err), 0, "%s", err.msg);
  cr_assert_eq(pic->h, 320);
  cr_assert_eq(pic->w, 3 * 427 + 2 * 4);
  dd_image_free(pic);
  dd_explanation_free(e);
  /* A class and a layer that do not fit. */
  o.cls = 1000;
  cr_assert_eq(dd_explain(m, &caffe, im, &o, &e, &err), DD_EARG);
  o.cls = -1;
  o.layer = th_value(m, "prob");
  cr_assert_neq(dd_explain(m, &caffe, im, &o, &e, &err), 0);
  dd_image_free(im);
  dd_model_free(m);
}

Test(visualize, smoothgrad_is_reproducible) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_image *im = load_photo("giraffe.jpg");
  dd_explain_opts o;
  dd_explain_opts_init(&o);
  o.size = 96;
  o.smoothgrad = 3;
  o.seed = 4;
  dd_explanation *a, *b;
  dd_err err;
  cr_assert_eq(dd_explain(m, &caffe, im, &o, &a, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_explain(m, &caffe, im, &o, &b, &err), 0, "%s", err.msg);
  cr_assert_eq(memcmp(a->saliency, b->saliency, 500 * 500 * sizeof(float)), 0);
  o.smoothgrad = 0;
  dd_explanation_free(b);
  cr_assert_eq(dd_explain(m, &caffe, im, &o, &b, &err), 0, "%s", err.msg);
  cr_assert_neq(memcmp(a->saliency, b->saliency, 500 * 500 * sizeof(float)), 0);
  dd_explanation_free(a);
  dd_explanation_free(b);
  dd_image_free(im);
  dd_model_free(m);
}

/* dd_explain is dd_explain_backward, dd_gradcam and dd_saliency on one plan: composed by hand
 * on an image already at the network's size, they give its saliency map bit for bit. */
Test(visualize, explain_parts_compose_to_explain) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  dd_image *photo = load_photo("dog.jpg"), *im;
  dd_err err;
  const int S = 64;
  cr_assert_eq(dd_image_resize(photo, S, S, &im, &err), 0, "%s", err.msg);
  dd_explain_opts o;
  dd_explain_opts_init(&o);
  o.size = S;
  o.smoothgrad = 3;
  o.seed = 11;
  dd_explanation *e;
  cr_assert_eq(dd_explain(m, &caffe, im, &o, &e, &err), 0, "%s", err.msg);

  int logits;
  cr_assert_eq(dd_vis_logits(m, &logits, &err), 0, "%s", err.msg);
  int64_t dims[4] = {1, 3, S, S};
  dd_binding b = {0};
  b.value = dd_model_input(m);
  b.shape = dd_shape_make(4, dims);
  dd_plan *p;
  /* as dd_explain plans it */
  cr_assert_eq(dd_plan_new(m, &b, 1, &logits, 1, DD_PLAN_GRAD | DD_PLAN_EXACT, 0, &p, &err), 0,
               "%s", err.msg);
  dd_image_to_input(im, &caffe, dd_f32(dd_plan_tensor(p, b.value)));
  dd_plan_forward(p);
  cr_assert_eq(dd_explain_backward(p, logits, 1000, &err), DD_EARG);
  cr_assert_eq(dd_explain_backward(p, logits, e->cls, &err), 0, "%s", err.msg);
  float *cam = malloc((size_t)e->cam_w * e->cam_h * sizeof(float));
  float *sal = malloc((size_t)S * S * sizeof(float));
  cr_assert(cam && sal);
  cr_assert_eq(dd_gradcam(p, logits, cam, &err), DD_ESHAPE); /* the scores are not 4-D */
  cr_assert_eq(dd_gradcam(p, e->layer, cam, &err), 0, "%s", err.msg);
  float cmax = 0;
  for (int i = 0; i < e->cam_w * e->cam_h; i++) cmax = fmaxf(cmax, cam[i]);
  cr_assert_gt(cmax, 0);
  cr_assert_eq(dd_saliency(p, b.value, logits, e->cls, 3, 0.15f, 11, sal, &err), 0, "%s",
               err.msg);
  cr_assert_eq(memcmp(sal, e->saliency, (size_t)S * S * sizeof(float)), 0);
  free(cam);
  free(sal);
  dd_plan_free(p);
  dd_explanation_free(e);
  dd_image_free(im);
  dd_image_free(photo);
  dd_model_free(m);
}

Test(visualize, bad_options_are_refused) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  dd_fv *fv;
  o.size = 8;
  cr_assert_eq(dd_fv_new(m, &caffe, th_value(m, "conv1"), &o, &fv, &err), DD_EARG);
  dd_fv_opts_init(&o);
  o.lr = -1;
  cr_assert_eq(dd_fv_new(m, &caffe, th_value(m, "conv1"), &o, &fv, &err), DD_EARG);
  dd_fv_opts_init(&o);
  dd_preproc bad = caffe;
  bad.std[1] = 0;
  cr_assert_eq(dd_fv_new(m, &bad, th_value(m, "conv1"), &o, &fv, &err), DD_EARG);
  dd_model_free(m);
}

/* The progress callback of a feature visualization has the dream's shape: it sees a struct
 * of the step and the user pointer, and a nonzero value stops the run, which returns it. */
typedef struct fv_seen {
  int calls, last_iter, n_iters, channel, stop_at;
  double objective;
} fv_seen;

static int fv_progress(const dd_fv_progress *info, void *user) {
  fv_seen *s = user;
  cr_assert_eq(info->iter, s->calls);
  s->calls++;
  s->last_iter = info->iter;
  s->n_iters = info->n_iters;
  s->channel = info->channel;
  s->objective = info->objective;
  return info->iter == s->stop_at ? DD_EINTR : 0;
}

Test(visualize, fv_progress_sees_each_step_and_stops) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  dd_err err;
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  o.size = 32;
  o.iters = 4;
  fv_seen seen = {0, -1, 0, -1, -1, 0};
  o.progress = fv_progress;
  o.user = &seen;
  dd_fv *fv;
  cr_assert_eq(dd_fv_new(m, &caffe, th_value(m, "conv1"), &o, &fv, &err), 0, "%s", err.msg);
  dd_image *im = NULL;
  cr_assert_eq(dd_fv_run(fv, 2, 1, &im, NULL, &err), 0, "%s", err.msg);
  cr_assert(seen.calls == 4 && seen.last_iter == 3 && seen.n_iters == 4 && seen.channel == 2);
  cr_assert(isfinite(seen.objective));
  dd_image_free(im);
  im = NULL;
  seen = (fv_seen){0, -1, 0, -1, 1, 0};
  cr_assert_eq(dd_fv_run(fv, 0, 1, &im, NULL, &err), DD_EINTR);
  cr_assert(seen.calls == 2 && im == NULL, "%d calls", seen.calls);
  cr_assert(strstr(err.msg, "step 1"), "%s", err.msg);
  dd_fv_free(fv);
  dd_model_free(m);
}

/* ---- sizes of pictures and network inputs ---------------------------------------------- */

/* A w x h image with a horizontal ramp from 0 to 250, and an explanation of it whose maps are the ramp too,
 * the Grad-CAM maximum at the right end. */
static dd_image *ramp_image(int w, int h, dd_explanation *e) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(w, h, &im, &err), 0, "%s", err.msg);
  memset(e, 0, sizeof *e);
  e->w = w;
  e->h = h;
  e->cam = malloc(sizeof(float) * (size_t)w * h);
  e->saliency = malloc(sizeof(float) * (size_t)w * h);
  cr_assert(e->cam && e->saliency);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      for (int c = 0; c < 3; c++) im->rgb[i * 3 + c] = 250.f * (float)x / (float)(w > 1 ? w - 1 : 1);
      e->cam[i] = e->saliency[i] = (float)(x + 1);
    }
  e->cam_x = w - 1;
  e->cam_y = h / 2;
  return im;
}

/* Panels of 1x1, 2000x20 and 4000x2 images were 1x1 to 4000x2 pixels: now the shorter side is
 * at least 64, the longer at most 4 times that, and the image is drawn inside, letterboxed. */
Test(visualize, explain_panels_have_a_usable_size) {
  const int sizes[][4] = {/* w, h, expected panel w, h */
                          {1, 1, 64, 64},     {2000, 20, 256, 64}, {4000, 2, 256, 64},
                          {2, 4000, 80, 320}, {2, 100, 64, 256}, {768, 576, 427, 320}};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    int w = sizes[k][0], h = sizes[k][1], pw = sizes[k][2], ph = sizes[k][3];
    dd_explanation e;
    dd_image *im = ramp_image(w, h, &e), *pic = NULL;
    dd_err err;
    cr_assert_eq(dd_explain_picture(im, &e, 0, &pic, &err), 0, "%s", err.msg);
    cr_assert(pic->w == 3 * pw + 2 * 4 && pic->h == ph, "%dx%d: a %dx%d picture, expected %dx%d",
              w, h, pic->w, pic->h, 3 * pw + 8, ph);
    /* the image spans the first panel's whole width on some row, or its whole height on some
     * column (the background is white, the ramp darker) */
    int across = 0, down = 0;
    for (int y = 0; y < ph; y++) {
      int n = 0;
      for (int x = 0; x < pw; x++) n += pic->rgb[((size_t)y * pic->w + x) * 3] < 254.f;
      across = n > across ? n : across;
    }
    for (int x = 0; x < pw; x++) {
      int n = 0;
      for (int y = 0; y < ph; y++) n += pic->rgb[((size_t)y * pic->w + x) * 3] < 254.f;
      down = n > down ? n : down;
    }
    cr_assert(across >= pw - 1 || down == ph, "%dx%d: the image spans %d of %d columns, %d of "
              "%d rows", w, h, across, pw, down, ph);
    dd_image_free(pic);
    /* an explicit height is kept, and the width follows it within the aspect cap */
    cr_assert_eq(dd_explain_picture(im, &e, 100, &pic, &err), 0, "%s", err.msg);
    cr_assert_eq(pic->h, 100);
    cr_assert_leq(pic->w, 3 * 400 + 8);
    dd_image_free(pic);
    free(e.cam);
    free(e.saliency);
    dd_image_free(im);
  }
}

/* ---- the subcommands ------------------------------------------------------------------- */

Test(visualize, cli_filters_activations_explain, .init = th_cli_setup, .fini = th_cli_teardown,
     .timeout = 120) {
  char out[256], path[256], photo[512];
  th_shared(photo, sizeof photo, "images/dog.jpg");
  dd_err err;
  dd_image *im;

  th_result r = TH_RUN("filters", "--layer", "conv1", th_tmp(out, sizeof out, "f.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  cr_assert_eq(dd_image_load(out, 0, &im, &err), 0, "%s", err.msg);
  cr_assert_eq(im->w, 298);
  dd_image_free(im);
  r = TH_RUN("filters", "--layer", "inception_4c/output", out);
  cr_assert_eq(r.status, 1, "%s", r.err);
  cr_assert(strstr(r.err, "--optimize"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("filters", "--optimize", "--layer", "conv2/3x3", "--channels", "5-6", "--size", "32",
             "--steps", "4", "-q", th_tmp(out, sizeof out, "o.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  FILE *f = fopen(th_tmp(path, sizeof path, "o.csv"), "r");
  cr_assert_not_null(f);
  char line[256];
  cr_assert_not_null(fgets(line, sizeof line, f));
  cr_assert_str_eq(line, "channel,mean_activation\n");
  cr_assert_not_null(fgets(line, sizeof line, f));
  cr_assert_eq(strncmp(line, "5,", 2), 0, "%s", line);
  fclose(f);

  r = TH_RUN("activations", "--layer", "conv2/3x3", photo, th_tmp(out, sizeof out, "a.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  f = fopen(th_tmp(path, sizeof path, "a.csv"), "r");
  cr_assert_not_null(f);
  int lines = 0;
  while (fgets(line, sizeof line, f)) lines++;
  fclose(f);
  cr_assert_eq(lines, 1 + 192);

  r = TH_RUN("explain", "--class", "Siberian husky", photo, th_tmp(out, sizeof out, "e.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(strstr(r.err, "explained 250 Siberian husky"), "%s", r.err);
  th_result_free(&r);
  th_tmp(path, sizeof path, "e.json");
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  cr_assert_not_null(root, "%s: %s", path, jerr.text);
  cr_assert(json_is_integer(json_object_get(json_object_get(json_object_get(root, "gradcam"),
                                                            "argmax"), "x")));
  cr_assert_eq(json_integer_value(json_object_get(root, "class")), 250);
  json_decref(root);

  r = TH_RUN("class", "--class", "no such thing", th_tmp(out, sizeof out, "c.png"));
  cr_assert_eq(r.status, 1, "%s", r.err);
  th_result_free(&r);
}
