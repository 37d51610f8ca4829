/* Input gradients of the whole network against PyTorch autograd (tests/ref/grad_torch.py runs
 * the same ONNX file through bench/onnx_torch.py in float64).  The reference is required:
 * without /usr/bin/python3 and torch these tests fail, they do not skip. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dream/dream.h"
#include "dream/graph.h"
#include "dream/infer.h"
#include "helper_cli.h"
#include "helper_ops.h"
#include "helper_torch.h"

static const char *const layers[] = {"conv2/3x3", "inception_3b/output", "inception_4c/output",
                                     "inception_5b/output"};
#define N_LAYERS (int)(sizeof layers / sizeof layers[0])

TestSuite(grad, .init = th_cli_setup, .fini = th_cli_teardown);

Test(grad, googlenet_matches_torch_autograd, .timeout = 600) {
  char mp[512], dp[512];
  th_shared(mp, sizeof mp, "models/bvlc_googlenet.onnx");
  th_shared(dp, sizeof dp, "models/bvlc_googlenet.golden/data.pb");
  char cmd[4096];
  int n = snprintf(cmd, sizeof cmd,
                   "/usr/bin/python3 '%s/tests/ref/grad_torch.py' --model '%s' --input '%s'",
                   DREAM_SOURCE_DIR, mp, dp);
  for (int i = 0; i < N_LAYERS; i++)
    n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --layer '%s' --save '%s/ref%d.pb'", layers[i],
                  th_tmpdir, i);
  int rc = system(cmd);
  cr_assert_eq(rc, 0, "the PyTorch reference failed (status %d): /usr/bin/python3 with torch and "
               "onnx is required (Debian python3-torch, python3-onnx)\n%s", rc, cmd);

  dd_err err;
  dd_model *m;
  cr_assert_eq(dd_model_load(mp, &m, &err), 0, "%s", err.msg);
  dd_tensor *x;
  cr_assert_eq(dd_tensor_load_pb(dp, &x, NULL, &err), 0, "%s", err.msg);
  for (int i = 0; i < N_LAYERS; i++) {
    dd_dream_layer l;
    cr_assert_eq(dd_dream_layer_resolve(m, layers[i], &l, &err), 0, "%s", err.msg);
    dd_tensor *g, *ref;
    double obj;
    cr_assert_eq(dd_input_gradient(m, x, &l, 1, 0, &g, &obj, &err), 0, "%s", err.msg);
    char rp[256];
    snprintf(rp, sizeof rp, "%s/ref%d.pb", th_tmpdir, i);
    char *name = NULL;
    cr_assert_eq(dd_tensor_load_pb(rp, &ref, &name, &err), 0, "%s", err.msg);
    cr_assert(dd_shape_eq(&g->shape, &ref->shape));
    double e = th_rel_l2(g, ref);
    printf("grad %-22s objective %.6g  relative L2 error vs torch %.3g\n", layers[i], obj, e);
    cr_expect(e <= 1e-3, "%s: relative L2 error %g > 1e-3", layers[i], e);
    free(name);
    dd_tensor_free(g);
    dd_tensor_free(ref);
  }
  dd_tensor_free(x);
  dd_model_free(m);
}

/* The command line writes what the library computes, named after the graph input. */
Test(grad, cli_writes_the_gradient, .timeout = 120) {
  char mp[512], dp[512], out[256];
  th_shared(mp, sizeof mp, "models/bvlc_googlenet.onnx");
  th_shared(dp, sizeof dp, "models/bvlc_googlenet.golden/data.pb");
  th_tmp(out, sizeof out, "cli.pb");
  th_result r = TH_RUN("grad", "--model", mp, "--input", dp, "--layer", "conv2/3x3#5:2", "--save",
                       out);
  cr_assert_eq(r.status, 0, "status %d, signal %d: %s", r.status, r.signal, r.err);
  th_result_free(&r);
  dd_err err;
  dd_model *m;
  cr_assert_eq(dd_model_load(mp, &m, &err), 0, "%s", err.msg);
  dd_tensor *x, *g, *file;
  char *name = NULL;
  cr_assert_eq(dd_tensor_load_pb(dp, &x, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_tensor_load_pb(out, &file, &name, &err), 0, "%s", err.msg);
  cr_assert_str_eq(name, "data");
  dd_dream_layer l;
  cr_assert_eq(dd_dream_layer_resolve(m, "conv2/3x3#5:2", &l, &err), 0, "%s", err.msg);
  cr_assert_eq(l.channel, 5);
  cr_assert_float_eq(l.weight, 2.f, 0);
  cr_assert_eq(dd_input_gradient(m, x, &l, 1, 0, &g, NULL, &err), 0, "%s", err.msg);
  cr_assert_eq(th_max_abs_diff(g, file), 0.0);
  cr_assert_gt(th_max_abs(g), 0.0);

  /* the objective is a sum over channels, so the one-channel gradients of all 192 channels
   * add up to the whole layer's */
  dd_tensor *all;
  dd_dream_layer whole = {l.value, -1, 1.f};
  cr_assert_eq(dd_input_gradient(m, x, &whole, 1, 0, &all, NULL, &err), 0, "%s", err.msg);
  dd_dream_layer per[DD_DREAM_MAX_LAYERS];
  dd_tensor *sum = NULL;
  for (int c0 = 0; c0 < 192; c0 += DD_DREAM_MAX_LAYERS) {
    for (int k = 0; k < DD_DREAM_MAX_LAYERS; k++) per[k] = (dd_dream_layer){l.value, c0 + k, 1.f};
    dd_tensor *part;
    cr_assert_eq(dd_input_gradient(m, x, per, DD_DREAM_MAX_LAYERS, 0, &part, NULL, &err), 0,
                 "%s", err.msg);
    if (!sum) sum = part;
    else {
      for (int64_t i = 0; i < dd_tensor_numel(part); i++) dd_f32(sum)[i] += dd_f32(part)[i];
      dd_tensor_free(part);
    }
  }
  cr_assert_leq(th_max_abs_diff(sum, all), 1e-4 * th_max_abs(all));
  free(name);
  dd_tensor_free(sum);
  dd_tensor_free(all);
  dd_tensor_free(x);
  dd_tensor_free(g);
  dd_tensor_free(file);
  dd_model_free(m);
}

/* The element-wise ops of modern networks (GELU as torch 1.13 writes it, hardswish and
 * hardsigmoid, PReLU, ELU, Softplus, Tanh, Max, Min, Pow, ...) in one network exported by
 * PyTorch at opsets 13, 14 and 17, and at "opset 20" with the GELU pattern fused into a Gelu
 * node (tests/ref/elementwise_torch.py): the output and the input gradient of 1/2 sum(y^2)
 * against torch autograd in float64. */
Test(grad, elementwise_network_matches_torch_autograd, .timeout = 300) {
  th_torch_ref ref;
  th_torch_reference("elementwise_torch.py", &ref);
  const dd_tensor *x = ref.x, *want_y = ref.y, *want_g = ref.grad;
  char path[256];
  dd_err err;
  const int opsets[] = {13, 14, 17, 20};
  for (int k = 0; k < 4; k++) {
    dd_model *m;
    snprintf(path, sizeof path, "%s/opset%d.onnx", th_tmpdir, opsets[k]);
    cr_assert_eq(dd_model_load(path, &m, &err), 0, "%s", err.msg);
    int y = dd_model_find(m, "y");
    cr_assert_geq(y, 0);
    /* forward */
    dd_binding b = {dd_model_input(m), x->shape, NULL};
    dd_plan *p;
    cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, 0, 0, &p, &err), 0, "%s", err.msg);
    memcpy(dd_plan_tensor(p, b.value)->data, x->data, (size_t)dd_tensor_numel(x) * sizeof(float));
    dd_plan_forward(p);
    const dd_tensor *ours = dd_plan_tensor(p, y);
    cr_assert(dd_shape_eq(&ours->shape, &want_y->shape));
    double fe = th_max_abs_diff(ours, want_y) / th_max_abs(want_y);
    dd_plan_free(p);
    /* gradient */
    dd_dream_layer l = {y, -1, 1.f};
    dd_tensor *g;
    double obj;
    cr_assert_eq(dd_input_gradient(m, x, &l, 1, 0, &g, &obj, &err), 0, "%s", err.msg);
    double ge = th_rel_l2(g, want_g);
    printf("elementwise network, opset %d: forward max|d|/max|y| %.3g, input gradient relative "
           "L2 %.3g\n", opsets[k], fe, ge);
    cr_expect(fe <= 1e-5, "opset %d: forward error %g > 1e-5", opsets[k], fe);
    cr_expect(ge <= 1e-4, "opset %d: gradient error %g > 1e-4", opsets[k], ge);
    dd_tensor_free(g);
    dd_model_free(m);
  }
  th_torch_ref_free(&ref);
}

/* Issue #13: a grey picture of large constant areas (tests/ref/grad_torch.py --flat) meets
 * exact ties at every max-pool; dd_input_gradient (DD_PLAN_EXACT: equal inputs, bit-equal
 * outputs) keeps them, and its gradient then stays within 1e-5 of float64 autograd where
 * Winograd's position-dependent rounding put it 0.4 away.  Times itself: it runs in CI. */
Test(grad, flat_image_matches_float64, .timeout = 600) {
  static const char *const deep[] = {"inception_4c/output", "inception_4e/output",
                                     "inception_5b/output"};
  char mp[512], dp[512], cmd[4096];
  th_shared(mp, sizeof mp, "models/bvlc_googlenet.onnx");
  snprintf(dp, sizeof dp, "%s/flat.pb", th_tmpdir);
  int n = snprintf(cmd, sizeof cmd,
                   "/usr/bin/python3 '%s/tests/ref/grad_torch.py' --model '%s' --input '%s' "
                   "--flat 320x240",
                   DREAM_SOURCE_DIR, mp, dp);
  for (int i = 0; i < 3; i++)
    n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --layer '%s' --save '%s/ref%d.pb'", deep[i],
                  th_tmpdir, i);
  int rc = system(cmd);
  cr_assert_eq(rc, 0, "the PyTorch reference failed (status %d): /usr/bin/python3 with torch and "
               "onnx is required (Debian python3-torch, python3-onnx)\n%s", rc, cmd);
  dd_err err;
  dd_model *m;
  cr_assert_eq(dd_model_load(mp, &m, &err), 0, "%s", err.msg);
  dd_tensor *x;
  cr_assert_eq(dd_tensor_load_pb(dp, &x, NULL, &err), 0, "%s", err.msg);
  for (int i = 0; i < 3; i++) {
    dd_dream_layer l;
    cr_assert_eq(dd_dream_layer_resolve(m, deep[i], &l, &err), 0, "%s", err.msg);
    dd_tensor *g, *ref;
    double t0 = dd_now_seconds();
    cr_assert_eq(dd_input_gradient(m, x, &l, 1, 0, &g, NULL, &err), 0, "%s", err.msg);
    double dt = dd_now_seconds() - t0;
    char rp[256];
    snprintf(rp, sizeof rp, "%s/ref%d.pb", th_tmpdir, i);
    cr_assert_eq(dd_tensor_load_pb(rp, &ref, NULL, &err), 0, "%s", err.msg);
    cr_assert(dd_shape_eq(&g->shape, &ref->shape));
    double e = th_rel_l2(g, ref);
    printf("flat 320x240, grad %-20s relative L2 vs float64 %.3g (%.3f s)\n", deep[i], e, dt);
    cr_expect(e <= 1e-5, "%s: relative L2 error %g > 1e-5", deep[i], e);
    dd_tensor_free(g);
    dd_tensor_free(ref);
  }
  dd_tensor_free(x);
  dd_model_free(m);
}

/* Channels of y (1 x C x H x W) whose positions at least `margin` from the border are not
 * all bit-equal. */
static int untied_channels(const dd_tensor *y, int64_t margin) {
  int64_t c = y->shape.d[1], h = y->shape.d[2], w = y->shape.d[3];
  cr_assert(h > 2 * margin && w > 2 * margin, "no interior");
  int bad = 0;
  for (int64_t k = 0; k < c; k++) {
    const float *p = dd_f32(y) + k * h * w, *first = p + margin * w + margin;
    int differs = 0;
    for (int64_t i = margin; i < h - margin; i++)
      for (int64_t j = margin; j < w - margin; j++)
        differs |= memcmp(p + i * w + j, first, sizeof *p) != 0;
    bad += differs;
  }
  return bad;
}

/* The whole network under DD_PLAN_EXACT on a constant image: every channel's interior (the
 * positions the padding does not reach) is bit-equal at every depth.  Without the flag,
 * Winograd's tiles break ties from conv2/3x3 on (printed, not asserted). */
Test(grad, exact_plan_keeps_ties_on_constant_input, .timeout = 300) {
  static const char *const names[] = {"conv2/3x3", "inception_3b/output", "inception_4c/output"};
  static const int64_t margin[] = {4, 10, 11};
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int in = dd_model_input(m), targets[3];
  for (int i = 0; i < 3; i++) cr_assert_geq(targets[i] = dd_model_find(m, names[i]), 0);
  int64_t dims[4] = {1, 3, 448, 448};
  const float bgr[3] = {20.25f, -3.125f, 7.7f};
  for (int exact = 1; exact >= 0; exact--) {
    dd_binding b = {in, {4, {1, 3, 448, 448}}, NULL};
    dd_plan *p;
    dd_err err;
    cr_assert_eq(dd_plan_new(m, &b, 1, targets, 3, exact ? DD_PLAN_EXACT : 0, 0, &p, &err), 0,
                 "%s", err.msg);
    float *x = dd_f32(dd_plan_tensor(p, in));
    for (int64_t i = 0; i < 3 * dims[2] * dims[3]; i++) x[i] = bgr[i / (dims[2] * dims[3])];
    dd_plan_forward(p);
    for (int i = 0; i < 3; i++) {
      const dd_tensor *y = dd_plan_tensor(p, targets[i]);
      int bad = untied_channels(y, margin[i]);
      printf("constant 448x448, %s: %-20s %d of %lld channels untied\n",
             exact ? "DD_PLAN_EXACT" : "default      ", names[i], bad, (long long)y->shape.d[1]);
      if (exact) cr_expect_eq(bad, 0, "%s: %d channels untied", names[i], bad);
    }
    dd_plan_free(p);
  }
  dd_model_free(m);
}

/* dd_infer (run, classify, audit) plans fp32-exact as dd_input_gradient does: on a constant
 * image every channel's interior is bit-equal at every depth, so a tie stays a tie in the
 * scores that classify and audit rank. */
Test(grad, infer_keeps_ties_on_constant_input, .timeout = 300) {
  static const char *const names[] = {"conv2/3x3", "inception_4c/output"};
  static const int64_t margin[] = {4, 11};
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int targets[2];
  for (int i = 0; i < 2; i++) cr_assert_geq(targets[i] = dd_model_find(m, names[i]), 0);
  dd_shape s = {4, {1, 3, 448, 448}};
  dd_infer *inf;
  dd_err err;
  cr_assert_eq(dd_infer_new(m, &s, targets, 2, 0, &inf, &err), 0, "%s", err.msg);
  float *x = malloc(3 * 448 * 448 * sizeof *x);
  cr_assert(x);
  const float bgr[3] = {20.25f, -3.125f, 7.7f};
  for (int64_t i = 0; i < 3 * 448 * 448; i++) x[i] = bgr[i / (448 * 448)];
  cr_assert_eq(dd_infer_run(inf, x, &err), 0, "%s", err.msg);
  for (int i = 0; i < 2; i++) {
    int bad = untied_channels(dd_infer_output(inf, i), margin[i]);
    cr_expect_eq(bad, 0, "dd_infer, %s: %d channels untied", names[i], bad);
  }
  free(x);
  dd_infer_free(inf);
  dd_model_free(m);
}
