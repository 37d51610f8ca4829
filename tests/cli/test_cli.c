/* The dream binary as a user runs it: exit codes, what it prints, the files it writes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb_image_write.h>

#include "dream/tensor.h"
#include "helper_cli.h"
#include "helper_model.h"
#include "helper_ops.h"

TestSuite(cli, .init = th_cli_setup, .fini = th_cli_teardown);

static void write_random(const char *path, size_t len, uint64_t seed) {
  unsigned char *b = malloc(len);
  for (size_t i = 0; i < len; i++) b[i] = (unsigned char)dd_rng_next(&seed);
  th_write_bytes(path, b, len);
  free(b);
}

/* ---- a tiny model: data -> 1x1 Conv (3 -> 4) -> Relu -> GlobalAveragePool -> Flatten ---- */

static const float tiny_w[12] = {0.5f, -1, 0.25f, 1, 1, 1, -0.5f, 0, 2, 0.1f, 0.2f, -0.3f};
static const float tiny_b[4] = {0.1f, -2, 0, 1};

static void write_tiny_model(const char *path) {
  th_model *b = th_model_new("tiny");
  th_model_input(b, "data", -1, NULL);
  th_model_output(b, "logits");
  th_model_init_f32(b, "w", 4, (int64_t[]){4, 3, 1, 1}, tiny_w, 12);
  th_model_init_f32(b, "b", 1, (int64_t[]){4}, tiny_b, 4);
  th_model_node(b, "Conv", "Conv", "data,w,b", "conv/pre");
  th_model_node(b, "Relu", "Relu", "conv/pre", "conv/out");
  th_model_node(b, "GlobalAveragePool", "GlobalAveragePool", "conv/out", "gap");
  th_model_node(b, "Flatten", "Flatten", "gap", "logits");
  th_model_write(b, path);
  th_model_free(b);
}

/* The tiny model's values, computed directly. */
static void tiny_reference(const float *x, int h, int w, float *relu, float *logits) {
  int n = h * w;
  for (int o = 0; o < 4; o++) {
    double sum = 0;
    for (int p = 0; p < n; p++) {
      float v = tiny_b[o];
      for (int c = 0; c < 3; c++) v += tiny_w[o * 3 + c] * x[c * n + p];
      v = v > 0 ? v : 0;
      relu[o * n + p] = v;
      sum += v;
    }
    logits[o] = (float)(sum / n);
  }
}

/* The line of `out` whose first word is `word`, copied into buf ("" when none). */
static const char *line_of(const char *out, const char *word, char *buf, size_t size) {
  size_t n = strlen(word);
  buf[0] = 0;
  for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (!strncmp(l, word, n) && (l[n] == ' ' || l[n] == '\n')) {
      const char *e = strchr(l, '\n');
      size_t len = e ? (size_t)(e - l) : strlen(l);
      snprintf(buf, size, "%.*s", (int)len, l);
      break;
    }
  return buf;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* ---- help and usage ---- */

Test(cli, help_for_each_subcommand) {
  const char *cmds[] = {"layers", "classify", "run"};
  for (int i = 0; i < 3; i++) {
    th_result r = TH_RUN(cmds[i], "--help");
    cr_assert_eq(r.status, 0, "%s: %s", cmds[i], r.err);
    char want[64];
    snprintf(want, sizeof want, "usage: dream %s", cmds[i]);
    cr_assert(!strncmp(r.out, want, strlen(want)), "%s", r.out);
    cr_assert(strstr(r.out, "--model"), "%s", r.out);
    cr_assert_str_empty(r.err);
    th_result_free(&r);
  }
}

Test(cli, usage_errors_exit_2) {
  th_result r = TH_RUN("classify", "--bogus", "x.jpg");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "unknown option '--bogus'"), "%s", r.err);
  cr_assert(strstr(r.err, "dream classify --help"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("classify");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "no image given"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("run", "--output", "x", "--save", "/tmp");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "--input is required"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("layers", "--size", "0x3");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "--size"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("classify", "--mean", "1,2", "x.jpg");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "--mean"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("layers", "--model");
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "'--model' needs a value"), "%s", r.err);
  th_result_free(&r);
}

/* ---- bad files ---- */

Test(cli, bad_image_files) {
  char model[128], path[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  char img[512];
  th_shared(img, sizeof img, "images/eagle.jpg");

  th_result r = TH_RUN("classify", "--model", model, "/nonexistent/x.jpg");
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "dream: /nonexistent/x.jpg: cannot open: No such file or directory\n");
  th_result_free(&r);

  th_write_bytes(th_tmp(path, sizeof path, "empty.jpg"), "", 0);
  r = TH_RUN("classify", "--model", model, path);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "empty.jpg: not an image"), "%s", r.err);
  cr_assert(!strncmp(r.err, "dream: ", 7), "%s", r.err);
  th_result_free(&r);

  write_random(th_tmp(path, sizeof path, "random.png"), 5000, 3);
  r = TH_RUN("classify", "--model", model, path);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "random.png: not an image (stb_image: "), "%s", r.err);
  th_result_free(&r);

  /* A bad file among good ones: the good ones are still classified, the status says 1. */
  th_write_bytes(th_tmp(path, sizeof path, "notes.jpg"), "shopping list\n", 14);
  r = TH_RUN("classify", "--model", model, img, path);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "notes.jpg: not an image (stb_image: "), "%s", r.err);
  cr_assert(strstr(r.out, "eagle.jpg:"), "%s", r.out);
  th_result_free(&r);
}

Test(cli, bad_model_files) {
  char path[128], img[512];
  th_shared(img, sizeof img, "images/eagle.jpg");
  th_result r = TH_RUN("classify", "--model", "/nonexistent/m.onnx", img);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "dream: /nonexistent/m.onnx: cannot open"), "%s", r.err);
  th_result_free(&r);

  th_write_bytes(th_tmp(path, sizeof path, "empty.onnx"), "", 0);
  r = TH_RUN("layers", "--model", path);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "empty.onnx: "), "%s", r.err);
  th_result_free(&r);

  write_random(th_tmp(path, sizeof path, "random.onnx"), 3000, 9);
  r = TH_RUN("layers", "--model", path);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "random.onnx: not a valid ONNX model"), "%s", r.err);
  th_result_free(&r);

  r = TH_RUN("layers", "--model", "alexnet");
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "alexnet: no such model"), "%s", r.err);
  cr_assert(strstr(r.err, "googlenet") && strstr(r.err, "squeezenet"), "%s", r.err);
  th_result_free(&r);
}

Test(cli, missing_model_file_says_how_to_get_it) {
  char dir[128], preset[160];
  th_tmp(dir, sizeof dir, "");
  th_write_bytes(th_tmp(preset, sizeof preset, "gone.preset"), "file gone.onnx\nurl the moon\n",
                 28);
  cr_assert_eq(setenv("DREAM_PRESET_PATH", dir, 1), 0);
  th_result r = TH_RUN("layers", "--model", "gone");
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "gone.onnx not found"), "%s", r.err);
  cr_assert(strstr(r.err, "weights/setup.sh"), "%s", r.err);
  cr_assert(strstr(r.err, "the moon"), "%s", r.err);
  th_result_free(&r);
}

/* ---- run ---- */

static void write_input(const char *path, int h, int w, float *x) {
  uint64_t s = 11;
  for (int i = 0; i < 3 * h * w; i++) x[i] = th_rand_uniform(&s, -1, 1);
  int64_t dims[] = {1, 3, h, w};
  dd_shape shape = dd_shape_make(4, dims);
  dd_tensor t = dd_tensor_wrap(DD_F32, &shape, x);
  dd_err err;
  cr_assert_eq(dd_tensor_save_pb(path, &t, "data", &err), DD_OK, "%s", err.msg);
}

Test(cli, run_writes_the_requested_values) {
  char model[128], in[128], dir[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  enum { H = 5, W = 7 };
  float x[3 * H * W], relu[4 * H * W], logits[4];
  write_input(th_tmp(in, sizeof in, "in.pb"), H, W, x);
  tiny_reference(x, H, W, relu, logits);
  th_tmp(dir, sizeof dir, "out");
  th_result r = TH_RUN("run", "--model", model, "--input", in, "--output", "conv/out", "--output",
                       "logits", "--save", dir);
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);

  char path[256];
  dd_tensor *t;
  char *name;
  dd_err err;
  snprintf(path, sizeof path, "%s/conv_out.pb", dir);
  cr_assert_eq(dd_tensor_load_pb(path, &t, &name, &err), DD_OK, "%s", err.msg);
  cr_assert_str_eq(name, "conv/out");
  cr_assert_eq(t->dtype, DD_F32);
  int64_t want_dims[] = {1, 4, H, W};
  dd_shape want = dd_shape_make(4, want_dims);
  cr_assert(dd_shape_eq(&t->shape, &want));
  for (int i = 0; i < 4 * H * W; i++) cr_assert_float_eq(dd_f32(t)[i], relu[i], 1e-5, "%d", i);
  dd_tensor_free(t);
  free(name);

  snprintf(path, sizeof path, "%s/logits.pb", dir);
  cr_assert_eq(dd_tensor_load_pb(path, &t, &name, &err), DD_OK, "%s", err.msg);
  cr_assert_str_eq(name, "logits");
  cr_assert_eq(t->shape.ndim, 2);
  cr_assert_eq(t->shape.d[1], 4);
  for (int i = 0; i < 4; i++) cr_assert_float_eq(dd_f32(t)[i], logits[i], 1e-5, "%d", i);
  dd_tensor_free(t);
  free(name);

  /* The convN alias works; the file is named after what was asked for. */
  r = TH_RUN("run", "--model", model, "--input", in, "--output", "conv1", "--save", dir);
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  snprintf(path, sizeof path, "%s/conv1.pb", dir);
  cr_assert_eq(dd_tensor_load_pb(path, &t, &name, &err), DD_OK, "%s", err.msg);
  cr_assert_str_eq(name, "conv/out");
  for (int i = 0; i < 4 * H * W; i++) cr_assert_float_eq(dd_f32(t)[i], relu[i], 1e-5, "%d", i);
  dd_tensor_free(t);
  free(name);
}

Test(cli, run_unknown_value_suggests_close_names) {
  char model[128], in[128], dir[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  float x[3 * 4 * 4];
  write_input(th_tmp(in, sizeof in, "in.pb"), 4, 4, x);
  th_result r = TH_RUN("run", "--model", model, "--input", in, "--output", "conv/outt", "--save",
                       th_tmp(dir, sizeof dir, "out"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "no layer named 'conv/outt'; closest: conv/out"), "%s", r.err);
  cr_assert(!strncmp(r.err, "dream: ", 7), "%s", r.err);
  th_result_free(&r);
  struct stat st;
  cr_assert_neq(stat(dir, &st), 0, "nothing is written when a name is wrong");
}

Test(cli, run_bad_input_files) {
  char model[128], path[128], dir[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  th_tmp(dir, sizeof dir, "out");
  th_write_bytes(th_tmp(path, sizeof path, "empty.pb"), "", 0);
  th_result r = TH_RUN("run", "--model", model, "--input", path, "--save", dir);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "dream: ") && strstr(r.err, "empty.pb"), "%s", r.err);
  th_result_free(&r);

  write_random(th_tmp(path, sizeof path, "random.pb"), 777, 5);
  r = TH_RUN("run", "--model", model, "--input", path, "--save", dir);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "random.pb: "), "%s", r.err);
  th_result_free(&r);

  r = TH_RUN("run", "--model", model, "--input", "/nonexistent/in.pb", "--save", dir);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "/nonexistent/in.pb: cannot open"), "%s", r.err);
  th_result_free(&r);

  /* A 2-channel input does not fit a 3-channel Conv: the planner says so. */
  float x[2 * 3 * 3] = {0};
  int64_t dims[] = {1, 2, 3, 3};
  dd_shape shape = dd_shape_make(4, dims);
  dd_tensor t = dd_tensor_wrap(DD_F32, &shape, x);
  dd_err err;
  cr_assert_eq(dd_tensor_save_pb(th_tmp(path, sizeof path, "two.pb"), &t, "data", &err), DD_OK);
  r = TH_RUN("run", "--model", model, "--input", path, "--save", dir);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "tiny.onnx: node 'Conv'"), "%s", r.err);
  th_result_free(&r);
}

Test(cli, memory_limit_is_enforced) {
  char model[128], in[128], dir[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  float x[3 * 4 * 4];
  write_input(th_tmp(in, sizeof in, "in.pb"), 4, 4, x);
  th_result r = TH_RUN("run", "--model", model, "--max-memory", "100", "--input", in, "--save",
                       th_tmp(dir, sizeof dir, "out"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "limit"), "%s", r.err);
  th_result_free(&r);
}

/* ---- layers ---- */

Test(cli, layers_of_the_tiny_model) {
  char model[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  th_result r = TH_RUN("layers", "--model", model, "--size", "7x5");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(strstr(r.out, "input 'data' 1x3x5x7"), "%s", r.out);
  /* conv/pre: 4x3 weights + 4 biases */
  const char *names[] = {"conv/pre", "conv/out", "gap", "logits"};
  const char *shapes[] = {"1x4x5x7", "1x4x5x7", "1x4x1x1", "1x4"};
  char line[256];
  for (int i = 0; i < 4; i++) {
    line_of(r.out, names[i], line, sizeof line);
    cr_assert(strstr(line, shapes[i]), "%s: %s", names[i], r.out);
  }
  line_of(r.out, "conv/pre", line, sizeof line);
  cr_assert(strstr(line, " 16 "), "params: %s", line);
  line_of(r.out, "conv/out", line, sizeof line);
  cr_assert(ends_with(line, "  conv1"), "alias: %s", line);
  cr_assert(strstr(r.out, "total: 4 nodes, 16 parameters"), "%s", r.out);
  th_result_free(&r);
}

/* ---- the real models (need Conv, LRN, MaxPool, Concat, Gemm, Softmax) ---- */

static int in_top5(const char *out, const char *label) {
  char want[128];
  snprintf(want, sizeof want, "  %s\n", label);
  return strstr(out, want) != NULL;
}

Test(cli, googlenet_sees_a_husky, .timeout = 120) {
  char img[512];
  th_result r =
      TH_RUN("classify", "--model", "googlenet", th_shared(img, sizeof img, "images/dog.jpg"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(in_top5(r.out, "Siberian husky"), "%s", r.out);
  cr_assert(in_top5(r.out, "malamute"), "%s", r.out);
  cr_assert(in_top5(r.out, "Eskimo dog"), "%s", r.out);
  th_result_free(&r);
}

/* The first `n` percentages printed after "<name>:" in classify's output. */
static void percentages(const char *out, const char *name, int n, double *v) {
  char head[128];
  snprintf(head, sizeof head, "%s:\n", name);
  const char *p = strstr(out, head);
  cr_assert(p, "%s not in %s", name, out);
  p += strlen(head);
  for (int k = 0; k < n; k++) {
    cr_assert_eq(sscanf(p, " %lf%%", &v[k]), 1, "line %d of %s", k, name);
    p = strchr(p, '\n') + 1;
  }
}

Test(cli, classify_preprocesses_and_applies_softmax) {
  /* A constant image: cropping and resizing keep it constant, so the tiny model's logits are
   * computable here from the formula of an .onnx file's default preprocessing. */
  char model[128], img[128];
  write_tiny_model(th_tmp(model, sizeof model, "tiny.onnx"));
  unsigned char px[30 * 20 * 3];
  const unsigned char rgb[3] = {200, 30, 90};
  for (int i = 0; i < 30 * 20; i++) memcpy(px + 3 * i, rgb, 3);
  cr_assert(stbi_write_png(th_tmp(img, sizeof img, "flat.png"), 30, 20, 3, px, 90));
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  float x[3], relu[4], logits[4];
  for (int c = 0; c < 3; c++) x[c] = (rgb[c] / 255.f - mean[c]) / std[c];
  tiny_reference(x, 1, 1, relu, logits);
  double mx = logits[0], e[4], sum = 0;
  for (int o = 1; o < 4; o++) mx = fmax(mx, logits[o]);
  for (int o = 0; o < 4; o++) sum += e[o] = exp(logits[o] - mx);

  th_result r = TH_RUN("classify", "--model", model, "--top", "4", img);
  cr_assert_eq(r.status, 0, "%s", r.err);
  double got[4];
  percentages(r.out, img, 4, got);
  /* Sorted, and each class's printed percentage is its softmax. */
  const char *p = strstr(r.out, ":\n") + 2;
  for (int k = 0; k < 4; k++) {
    double v;
    int cls;
    cr_assert_eq(sscanf(p, " %lf%% %d", &v, &cls), 2, "%s", r.out);
    cr_assert(cls >= 0 && cls < 4);
    cr_assert_float_eq(v, 100 * e[cls] / sum, 0.006, "class %d: %s", cls, r.out);
    if (k) cr_assert_geq(got[k - 1], got[k]);
    p = strchr(p, '\n') + 1;
  }
  th_result_free(&r);
}

Test(cli, squeezenet_classifies_photos, .timeout = 120) {
  char dog[512], eagle[512];
  th_result r = TH_RUN("classify", "--model", "squeezenet",
                       th_shared(dog, sizeof dog, "images/dog.jpg"),
                       th_shared(eagle, sizeof eagle, "images/eagle.jpg"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  /* Logits went through a softmax: probabilities, sorted. */
  double v[5], total = 0;
  percentages(r.out, dog, 5, v);
  for (int k = 0; k < 5; k++) {
    cr_assert(v[k] > 0 && v[k] <= 100 && (k == 0 || v[k] <= v[k - 1]), "%s", r.out);
    total += v[k];
  }
  cr_assert_leq(total, 100.01);
  char *eagle_part = strstr(r.out, "eagle.jpg:\n");
  cr_assert(eagle_part, "%s", r.out);
  char line[256];
  const char *first = strchr(eagle_part, '\n') + 1;
  snprintf(line, sizeof line, "%.*s", (int)(strchr(first, '\n') - first), first);
  cr_assert(ends_with(line, "  bald eagle"), "top-1: %s", r.out);
  *eagle_part = 0; /* what is left is the dog's part */
  cr_assert(in_top5(r.out, "Siberian husky") && in_top5(r.out, "malamute") &&
                in_top5(r.out, "Eskimo dog"),
            "%s", r.out);
  th_result_free(&r);
}

Test(cli, googlenet_layers_and_run, .timeout = 120) {
  th_result r = TH_RUN("layers", "--model", "googlenet");
  cr_assert_eq(r.status, 0, "%s", r.err);
  const char *total = strstr(r.out, "6,998,552 parameters, ");
  cr_assert(total, "%s", r.out);
  /* Szegedy et al. 2014: "1.5 billion multiply-adds" at 224x224, i.e. about 3 GFLOPs. */
  double mflops = atof(total + strlen("6,998,552 parameters, "));
  cr_assert(mflops > 2800 && mflops < 3400, "%g MFLOPs", mflops);
  char line[256];
  line_of(r.out, "inception_4c/output", line, sizeof line);
  cr_assert(strstr(line, " 1x512x14x14 "), "%s", r.out);
  line_of(r.out, "conv1/7x7_s2", line, sizeof line);
  cr_assert(ends_with(line, "  conv1"), "alias: %s", line);
  th_result_free(&r);

  /* Caffe's own conv1 output for the golden input. */
  char in[512], golden[512], dir[128];
  th_shared(in, sizeof in, "models/bvlc_googlenet.golden/data.pb");
  th_shared(golden, sizeof golden, "models/bvlc_googlenet.golden/conv1_7x7_s2.pb");
  r = TH_RUN("run", "--model", "googlenet", "--input", in, "--output", "conv1/7x7_s2",
             "--output", "inception_4c/outptu", "--save", th_tmp(dir, sizeof dir, "out"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "no layer named 'inception_4c/outptu'; closest: inception_4c/output"),
            "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("run", "--model", "googlenet", "--input", in, "--output", "conv1/7x7_s2", "--save",
             dir);
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  char path[256];
  snprintf(path, sizeof path, "%s/conv1_7x7_s2.pb", dir);
  dd_tensor *got, *want;
  dd_err err;
  cr_assert_eq(dd_tensor_load_pb(path, &got, NULL, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(dd_tensor_load_pb(golden, &want, NULL, &err), DD_OK, "%s", err.msg);
  /* Caffe's float32 sums in another order: ~3e-5 of the peak, as in test_golden.c. */
  double peak = th_max_abs(want);
  cr_assert_lt(th_max_abs_diff(got, want), 3e-5 * peak);
  dd_tensor_free(got);
  dd_tensor_free(want);
}
