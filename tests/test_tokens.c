/* Token and channels-last layers, and fixed-size models (dream/layout.h): tiny ViT-, CLIP- and
 * Swin-like models written at test time by tests/ref/tokens_models.py (/usr/bin/python3 with
 * numpy and onnx; without them these tests fail, they do not skip).  Each takes only 1x3x32x32. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "dream/infer.h"
#include "dream/layout.h"
#include "dream/visualize.h"
#include "helper_files.h"
#include "helper_ops.h"
#include "helper_torch.h"

static void make_models(void) {
  th_tmpdir_setup();
  th_ref_script("tokens_models.py", "numpy and onnx");
}

TestSuite(tokens, .init = make_models, .fini = th_tmpdir_teardown, .timeout = 120);

static dd_model *load(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s.onnx", th_tmpdir, name);
  dd_model *m;
  dd_err err;
  cr_assert_eq(dd_model_load(path, &m, &err), 0, "%s", err.msg);
  return m;
}

static int value(const dd_model *m, const char *name) {
  int v = dd_model_find(m, name);
  cr_assert(v >= 0, "no value %s", name);
  return v;
}

/* The layout of a value at 32x32, from a plan's shapes. */
static dd_layout layout_of(const dd_model *m, const char *name) {
  int v = value(m, name);
  int64_t dims[4] = {1, 3, 32, 32};
  dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  dd_shape s;
  size_t bytes;
  dd_err err;
  cr_assert_eq(dd_plan_measure(m, &b, 1, &v, 1, 0, &bytes, &s, &err), 0, "%s", err.msg);
  dd_layout l;
  dd_value_layout(m, v, &s, 32, 32, &l);
  return l;
}

static void expect_layout(const dd_model *m, const char *name, dd_layout_kind k, int64_t C,
                          int gh, int gw, int cls) {
  dd_layout l = layout_of(m, name);
  cr_expect_eq(l.kind, k, "%s: %s, expected %s", name, dd_layout_name(l.kind), dd_layout_name(k));
  cr_expect_eq(l.channels, C, "%s: %lld channels", name, (long long)l.channels);
  cr_expect(l.grid_h == gh && l.grid_w == gw, "%s: grid %dx%d", name, l.grid_h, l.grid_w);
  cr_expect_eq(l.cls, cls, "%s: cls %d", name, l.cls);
}

Test(tokens, layouts_of_the_three_models) {
  dd_model *vit = load("vit"), *clip = load("clip"), *swin = load("swin");
  expect_layout(vit, "patches", DD_LAYOUT_NCHW, 12, 4, 4, 0);
  expect_layout(vit, "patch_tokens", DD_LAYOUT_TOKENS, 12, 4, 4, 0);
  expect_layout(vit, "tokens", DD_LAYOUT_TOKENS, 12, 4, 4, 1);
  expect_layout(vit, "block2", DD_LAYOUT_TOKENS, 12, 4, 4, 1);
  expect_layout(vit, "cls", DD_LAYOUT_VECTOR, 12, 0, 0, 0);
  expect_layout(clip, "seq_in", DD_LAYOUT_SEQ, 12, 4, 4, 1);
  expect_layout(clip, "seq", DD_LAYOUT_SEQ, 12, 4, 4, 1);
  expect_layout(swin, "grid0", DD_LAYOUT_NHWC, 16, 8, 8, 0); /* a Transpose (0, 2, 3, 1) */
  expect_layout(swin, "grid1", DD_LAYOUT_NHWC, 16, 8, 8, 0); /* by its shape alone */
  expect_layout(swin, "flat", DD_LAYOUT_TOKENS, 16, 8, 8, 0);
  dd_model_free(vit);
  dd_model_free(clip);
  dd_model_free(swin);
}

/* The rule on shapes alone, at the sizes of the real networks (224x224). */
Test(tokens, layout_rule_on_shapes) {
  struct {
    int n;
    int64_t d[4];
    dd_layout_kind k;
    int axis, gh, cls;
  } cases[] = {
      {4, {1, 96, 56, 56}, DD_LAYOUT_NCHW, 1, 56, 0},    /* Swin's patch Conv */
      {4, {1, 56, 56, 96}, DD_LAYOUT_NHWC, 3, 56, 0},    /* its stages */
      {4, {1, 7, 7, 768}, DD_LAYOUT_NHWC, 3, 7, 0},
      {4, {1, 832, 7, 7}, DD_LAYOUT_NCHW, 1, 7, 0},      /* GoogLeNet */
      {4, {1, 112, 14, 14}, DD_LAYOUT_NCHW, 1, 14, 0},   /* 112 x 14: two strides, no grid */
      {4, {1, 56, 56, 56}, DD_LAYOUT_NCHW, 1, 56, 0},    /* the documented limit */
      {3, {1, 197, 768}, DD_LAYOUT_TOKENS, 2, 14, 1},    /* ViT-B/16 */
      {3, {1, 196, 768}, DD_LAYOUT_TOKENS, 2, 14, 0},
      {3, {197, 1, 768}, DD_LAYOUT_SEQ, 2, 14, 1},       /* CLIP */
      {3, {1, 768, 196}, DD_LAYOUT_OTHER, 1, 0, 0},      /* transposed tokens: not read */
      {2, {1, 1000}, DD_LAYOUT_VECTOR, 1, 0, 0},
      {4, {1, 1024, 1, 1}, DD_LAYOUT_VECTOR, 1, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dd_shape s = dd_shape_make(cases[i].n, cases[i].d);
    dd_layout l;
    char sb[64];
    dd_value_layout(NULL, -1, &s, 224, 224, &l);
    dd_shape_str(&s, sb, sizeof sb);
    cr_expect_eq(l.kind, cases[i].k, "%s: %s", sb, dd_layout_name(l.kind));
    cr_expect_eq(l.channel_axis, cases[i].axis, "%s: axis %d", sb, l.channel_axis);
    cr_expect_eq(l.grid_h, cases[i].gh, "%s: grid %d", sb, l.grid_h);
    cr_expect_eq(l.cls, cases[i].cls, "%s: cls %d", sb, l.cls);
  }
}

Test(tokens, accepted_sizes) {
  dd_model *vit = load("vit"), *swin = load("swin");
  dd_input_sizes sz;
  dd_err err;
  cr_assert_eq(dd_model_input_sizes(vit, NULL, 0, &sz, &err), 0, "%s", err.msg);
  cr_expect(sz.fixed && sz.native_w == 32 && sz.native_h == 32, "vit: fixed %d, %dx%d",
            sz.fixed, sz.native_w, sz.native_h);
  /* the patch Conv alone takes any size from one patch */
  int patches = value(vit, "patches");
  cr_assert_eq(dd_model_input_sizes(vit, &patches, 1, &sz, &err), 0, "%s", err.msg);
  cr_expect(!sz.fixed && sz.min_w == 8 && sz.min_h == 8, "patches: fixed %d, min %dx%d",
            sz.fixed, sz.min_w, sz.min_h);
  cr_assert_eq(dd_model_input_sizes(swin, NULL, 0, &sz, &err), 0, "%s", err.msg);
  cr_expect(sz.fixed && sz.native_w == 32, "swin: fixed %d, %dx%d", sz.fixed, sz.native_w,
            sz.native_h);
  int grid1 = value(swin, "grid1");
  cr_assert_eq(dd_model_input_sizes(swin, &grid1, 1, &sz, &err), 0, "%s", err.msg);
  cr_expect(!sz.fixed, "grid1 takes any size");
  dd_model_free(vit);
  dd_model_free(swin);
}

/* A random 1x3x32x32 input. */
static dd_tensor *random_input(uint64_t seed) {
  int64_t dims[4] = {1, 3, 32, 32};
  return th_random(4, dims, seed, -1.f, 1.f);
}

/* `name` forward on x, as a new tensor. */
static dd_tensor *forward_value(const dd_model *m, const dd_tensor *x, int v) {
  dd_infer *s;
  dd_err err;
  cr_assert_eq(dd_infer_new(m, &x->shape, &v, 1, 0, &s, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_infer_run(s, dd_f32(x), &err), 0, "%s", err.msg);
  dd_tensor *out;
  cr_assert_eq(dd_tensor_clone(dd_infer_output(s, 0), &out, &err), 0);
  dd_infer_free(s);
  return out;
}

/* `#c` on a token or grid layer: the objective is 1/2 the sum of squares of feature c at
 * every position (the class token included), read here with the layout written out by hand,
 * and the input gradient matches central differences of that objective. */
static void check_channel(const char *model, const char *layer, int c) {
  dd_model *m = load(model);
  int v = value(m, layer);
  dd_tensor *x = random_input(7);
  dd_dream_layer dl = {v, c, 1.f};
  dd_tensor *g;
  double obj;
  dd_err err;
  cr_assert_eq(dd_input_gradient(m, x, &dl, 1, 0, &g, &obj, &err), 0, "%s", err.msg);
  dd_tensor *a = forward_value(m, x, v);
  /* the channel axis is the last one in all three layouts: (1,T,C), (T,1,C), (1,H,W,C) */
  int64_t C = a->shape.d[a->shape.ndim - 1], n = dd_tensor_numel(a) / C;
  double ref = 0;
  for (int64_t p = 0; p < n; p++) ref += 0.5 * dd_f32(a)[p * C + c] * dd_f32(a)[p * C + c];
  cr_expect(fabs(obj - ref) <= 1e-5 * fmax(1, fabs(ref)), "%s %s#%d: objective %g, by hand %g",
            model, layer, c, obj, ref);
  cr_expect(ref > 0, "%s#%d is all zero on this input", layer, c);
  /* central differences at a few pixels */
  uint64_t rng = 3;
  double worst = 0;
  for (int k = 0; k < 12; k++) {
    int64_t i = (int64_t)(th_rand_uniform(&rng, 0, 1) * 3071);
    float x0 = dd_f32(x)[i];
    const float eps = 1e-2f;
    double op, om;
    dd_tensor *gt;
    dd_f32(x)[i] = x0 + eps;
    cr_assert_eq(dd_input_gradient(m, x, &dl, 1, 0, &gt, &op, &err), 0);
    dd_tensor_free(gt);
    dd_f32(x)[i] = x0 - eps;
    cr_assert_eq(dd_input_gradient(m, x, &dl, 1, 0, &gt, &om, &err), 0);
    dd_tensor_free(gt);
    dd_f32(x)[i] = x0;
    double fd = (op - om) / (2 * eps), an = dd_f32(g)[i];
    double e = fabs(fd - an) / fmax(1e-2, fabs(fd) + fabs(an));
    if (e > worst) worst = e;
  }
  /* a kink of a Relu between x - eps and x + eps is rare on 12 pixels, not impossible: the
   * bound is loose enough for float32 differences, tight enough to catch a wrong axis */
  cr_expect(worst < 2e-2, "%s %s#%d: gradient vs differences, relative error %g", model, layer,
            c, worst);
  /* a channel out of range names the count */
  dd_dream_layer bad = {v, (int)C, 1.f};
  dd_tensor *gb = NULL;
  cr_expect_eq(dd_input_gradient(m, x, &bad, 1, 0, &gb, NULL, &err), DD_EARG);
  cr_expect(strstr(err.msg, "channels"), "%s", err.msg);
  dd_tensor_free(a);
  dd_tensor_free(g);
  dd_tensor_free(x);
  dd_model_free(m);
}

Test(tokens, channel_objective_vit_tokens) { check_channel("vit", "block1", 5); }
Test(tokens, channel_objective_clip_seq_first) { check_channel("clip", "seq", 3); }
Test(tokens, channel_objective_swin_channels_last) { check_channel("swin", "grid1", 9); }

static dd_image *noise_image(int w, int h, uint64_t seed) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(w, h, &im, &err), 0);
  for (size_t i = 0; i < (size_t)w * h * 3; i++) im->rgb[i] = th_rand_uniform(&seed, 0, 255);
  return im;
}

static const dd_preproc unit_pp = {0, 255.f, {0, 0, 0}, {1, 1, 1}};

/* A fixed-size model's gradient comes from tiles of its size: on a 64x64 image without roll,
 * four 32x32 tiles, each the gradient of its own crop. */
Test(tokens, fixed_size_tiles_are_crops) {
  dd_model *m = load("vit");
  dd_dream_params p;
  dd_dream_params_init(&p);
  p.layers[0] = (dd_dream_layer){value(m, "block1"), 2, 1.f};
  p.n_layers = 1;
  dd_dreamer *d;
  dd_err err;
  cr_assert_eq(dd_dreamer_new(m, &unit_pp, &p, &d, &err), 0, "%s", err.msg);
  dd_image *im = noise_image(64, 64, 11);
  float *g = malloc(64 * 64 * 3 * sizeof(float));
  double obj;
  cr_assert_eq(dd_dreamer_gradient(d, im, 0, 0, g, &obj, &err), 0, "%s", err.msg);
  int tw, th;
  dd_dreamer_tile_size(d, &tw, &th);
  cr_expect(tw == 32 && th == 32, "tiles %dx%d", tw, th);
  double total = 0, worst = 0;
  for (int ty = 0; ty < 2; ty++)
    for (int tx = 0; tx < 2; tx++) {
      int64_t dims[4] = {1, 3, 32, 32};
      dd_tensor *x = th_tensor(4, dims), *gx;
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < 32; y++)
          for (int xx = 0; xx < 32; xx++)
            dd_f32(x)[(c * 32 + y) * 32 + xx] =
                im->rgb[((size_t)(ty * 32 + y) * 64 + tx * 32 + xx) * 3 + c];
      double o;
      cr_assert_eq(dd_input_gradient(m, x, &p.layers[0], 1, 0, &gx, &o, &err), 0, "%s", err.msg);
      total += o;
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < 32; y++)
          for (int xx = 0; xx < 32; xx++) {
            double a = g[((size_t)(ty * 32 + y) * 64 + tx * 32 + xx) * 3 + c];
            double b = dd_f32(gx)[(c * 32 + y) * 32 + xx];
            worst = fmax(worst, fabs(a - b) / fmax(1e-3, fabs(b)));
          }
      dd_tensor_free(gx);
      dd_tensor_free(x);
    }
  cr_expect(worst < 1e-4, "tile gradient vs the crop's: relative %g", worst);
  cr_expect(fabs(total - obj) <= 1e-4 * fabs(total), "objective %g, sum of crops %g", obj, total);
  free(g);
  dd_image_free(im);
  dd_dreamer_free(d);
  dd_model_free(m);
}

/* Dreams on images of other sizes than the model's: larger (two octaves, the third below 32
 * pixels skipped), and smaller than it (wrapped around into one tile).  The picture keeps its
 * size and changes. */
static void dream_at(const char *model, const char *spec, int w, int h) {
  dd_model *m = load(model);
  dd_dream_params p;
  dd_dream_params_init(&p);
  dd_err err;
  cr_assert_eq(dd_dream_layer_resolve(m, spec, &p.layers[0], &err), 0, "%s", err.msg);
  p.n_layers = 1;
  p.iters = 3;
  p.octaves = 3;
  dd_dream_budget b;
  cr_assert_eq(dd_dream_check_budget(m, &p, w, h, 0, &b, &err), 0, "%dx%d: %s", w, h, err.msg);
  cr_expect_eq(b.tile, 32, "budget tile %d", b.tile);
  dd_image *im = noise_image(w, h, 5), *orig = noise_image(w, h, 5);
  cr_assert_eq(dd_dream_run(m, &unit_pp, &p, im, NULL, NULL, &err), 0, "%s %dx%d: %s", model, w,
               h, err.msg);
  cr_expect(im->w == w && im->h == h);
  double diff = 0;
  for (size_t i = 0; i < (size_t)w * h * 3; i++) diff += fabs(im->rgb[i] - orig->rgb[i]);
  cr_expect(diff / ((double)w * h * 3) > 0.1, "%s %dx%d: mean change %g", model, w, h,
            diff / ((double)w * h * 3));
  dd_image_free(im);
  dd_image_free(orig);
  dd_model_free(m);
}

Test(tokens, dream_vit_larger_image) { dream_at("vit", "block1#3", 75, 50); }
Test(tokens, dream_vit_smaller_image) { dream_at("vit", "block1", 20, 13); }
Test(tokens, dream_swin_larger_image) { dream_at("swin", "flat#1", 90, 70); }
Test(tokens, dream_clip) { dream_at("clip", "seq#0", 40, 33); }

/* activations: the token grid per channel (class token left out), a channels-last grid as
 * C x H x W. */
static void check_activations(const char *model, const char *layer) {
  dd_model *m = load(model);
  int v = value(m, layer);
  dd_image *im = noise_image(32, 32, 9);
  dd_tensor *act;
  dd_err err;
  cr_assert_eq(dd_vis_activations(m, &unit_pp, v, im, 0, &act, &err), 0, "%s", err.msg);
  int64_t dims[4] = {1, 3, 32, 32};
  dd_tensor *x = th_tensor(4, dims);
  dd_image_to_input(im, &unit_pp, dd_f32(x));
  dd_tensor *a = forward_value(m, x, v);
  dd_layout l;
  dd_value_layout(m, v, &a->shape, 32, 32, &l);
  cr_assert(act->shape.ndim == 3 && act->shape.d[0] == l.channels &&
                act->shape.d[1] == l.grid_h && act->shape.d[2] == l.grid_w,
            "%s: %lldx%lldx%lld", layer, (long long)act->shape.d[0], (long long)act->shape.d[1],
            (long long)act->shape.d[2]);
  int64_t C = l.channels, hw = (int64_t)l.grid_h * l.grid_w;
  /* by hand: the channel axis is last, the class token (if any) first */
  for (int64_t c = 0; c < C; c++)
    for (int64_t p = 0; p < hw; p++)
      cr_assert_eq(dd_f32(act)[c * hw + p], dd_f32(a)[(p + l.cls) * C + c], "%s c%lld p%lld",
                   layer, (long long)c, (long long)p);
  dd_tensor_free(a);
  dd_tensor_free(x);
  dd_tensor_free(act);
  dd_image_free(im);
  dd_model_free(m);
}

Test(tokens, activations_token_grid) { check_activations("vit", "block1"); }
Test(tokens, activations_seq_first) { check_activations("clip", "seq"); }
Test(tokens, activations_channels_last) { check_activations("swin", "grid1"); }

/* Grad-CAM on the last token or grid layer whose grid gets a gradient: weights = the mean
 * gradient over the grid positions, the map = the grid. */
static void check_gradcam(const char *model, const char *want, int side) {
  dd_model *m = load(model);
  dd_image *im = noise_image(48, 40, 13);
  dd_explain_opts o;
  dd_explain_opts_init(&o);
  o.size = 32;
  dd_explanation *e;
  dd_err err;
  cr_assert_eq(dd_explain(m, &unit_pp, im, &o, &e, &err), 0, "%s", err.msg);
  cr_expect_str_eq(dd_model_value_name(m, e->layer), want);
  cr_expect(e->cam_w == side && e->cam_h == side, "%dx%d", e->cam_w, e->cam_h);
  cr_expect(e->w == 48 && e->h == 40);
  /* the map by hand from a plan */
  int logits = dd_model_output(m, 0), in = dd_model_input(m);
  int64_t dims[4] = {1, 3, 32, 32};
  dd_binding b = {in, dd_shape_make(4, dims), NULL};
  dd_plan *p;
  cr_assert_eq(dd_plan_new(m, &b, 1, &logits, 1, DD_PLAN_GRAD, 0, &p, &err), 0, "%s", err.msg);
  dd_image *small;
  cr_assert_eq(dd_image_resize(im, 32, 32, &small, &err), 0);
  dd_image_to_input(small, &unit_pp, dd_f32(dd_plan_tensor(p, in)));
  dd_plan_forward(p);
  cr_assert_eq(dd_explain_backward(p, logits, e->cls, &err), 0);
  float cam[64];
  cr_assert_eq(dd_gradcam(p, e->layer, cam, &err), 0, "%s", err.msg);
  const dd_tensor *A = dd_plan_tensor(p, e->layer), *G = dd_plan_grad(p, e->layer);
  dd_layout l;
  dd_value_layout(m, e->layer, &A->shape, 32, 32, &l);
  int64_t C = l.channels, hw = (int64_t)side * side;
  double nonzero = 0;
  for (int64_t i = 0; i < hw; i++) {
    double s = 0;
    for (int64_t c = 0; c < C; c++) {
      double alpha = 0;
      for (int64_t j = 0; j < hw; j++) alpha += dd_f32(G)[(j + l.cls) * C + c];
      s += alpha / (double)hw * dd_f32(A)[(i + l.cls) * C + c];
    }
    s = s > 0 ? s : 0;
    nonzero += s;
    cr_expect(fabs(cam[i] - s) <= 1e-5 * fmax(1, fabs(s)), "cam[%lld] %g, by hand %g",
              (long long)i, cam[i], s);
  }
  cr_expect(nonzero > 0, "the map is empty");
  dd_image_free(small);
  dd_plan_free(p);
  dd_explanation_free(e);
  dd_image_free(im);
  dd_model_free(m);
}

/* block2's patch tokens get no gradient (the head reads the class token alone): block1 */
Test(tokens, gradcam_vit) { check_gradcam("vit", "block1", 4); }
Test(tokens, gradcam_clip) { check_gradcam("clip", "batch_first", 4); }
Test(tokens, gradcam_swin) { check_gradcam("swin", "flat", 8); }

/* Feature visualization on a ViT's channels: 12 of them, and the optimization raises the
 * channel's mean. */
Test(tokens, feature_vis_on_tokens) {
  dd_model *m = load("vit");
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  o.size = 32;
  o.iters = 0;
  dd_fv *fv;
  dd_err err;
  cr_assert_eq(dd_fv_new(m, &unit_pp, value(m, "block1"), &o, &fv, &err), 0, "%s", err.msg);
  cr_expect_eq(dd_fv_channels(fv), 12);
  dd_image *im;
  float before, after;
  cr_assert_eq(dd_fv_run(fv, 4, 1, &im, &before, &err), 0, "%s", err.msg);
  dd_image_free(im);
  dd_fv_free(fv);
  o.iters = 40;
  cr_assert_eq(dd_fv_new(m, &unit_pp, value(m, "block1"), &o, &fv, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_fv_run(fv, 4, 1, &im, &after, &err), 0, "%s", err.msg);
  cr_expect(after > before + 0.1f, "channel 4: %g before, %g after 40 steps", before, after);
  dd_image_free(im);
  dd_fv_free(fv);
  dd_model_free(m);
}

/* An input of another size than a fixed-size model's is refused with the size it takes, not
 * with the shape error of the node deep in the graph that cannot take it. */
Test(tokens, other_sizes_are_refused_plainly) {
  const char *names[] = {"vit", "clip", "swin"};
  for (int i = 0; i < 3; i++) {
    dd_model *m = load(names[i]);
    int64_t dims[4] = {1, 3, 64, 48};
    dd_tensor *x = th_random(4, dims, 1, 0, 1), *g = NULL;
    dd_dream_layer dl = {dd_model_output(m, 0), -1, 1.f};
    dd_err err;
    cr_expect_eq(dd_input_gradient(m, x, &dl, 1, 0, &g, NULL, &err), DD_ESHAPE, "%s", names[i]);
    cr_expect(strstr(err.msg, "a 48x64 input does not fit: the model takes only 32x32 inputs"),
              "%s: %s", names[i], err.msg);
    dd_tensor_free(x);
    dd_model_free(m);
  }
}
