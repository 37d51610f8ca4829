#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dream/preset.h"
#include "helper_files.h"
#include "helper_ops.h"

static void setup(void) {
  th_tmpdir_setup();
  /* The shared models, whether or not weights/setup.sh was run. */
  char models[512];
  cr_assert_eq(setenv("DREAM_MODEL_PATH", th_shared(models, sizeof models, "models"), 1), 0);
  unsetenv("DREAM_PRESET_PATH");
}

static void write_text(const char *name, const char *text) {
  char path[256];
  th_write_bytes(th_tmp(path, sizeof path, name), text, strlen(text));
}

TestSuite(preset, .init = setup, .fini = th_tmpdir_teardown);

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

Test(preset, googlenet_is_caffe_preprocessing) {
  dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
  dd_err err;
  cr_assert_eq(dd_preset_resolve("googlenet", &p, &err), DD_OK, "%s", err.msg);
  cr_assert_str_eq(p.name, "googlenet");
  cr_assert(ends_with(p.model_path, "/bvlc_googlenet.onnx"), "%s", p.model_path);
  cr_assert(ends_with(p.labels_path, "/imagenet_classes.txt"), "%s", p.labels_path);
  cr_assert_eq(access(p.model_path, R_OK), 0);
  cr_assert_eq(p.pre.bgr, 1);
  cr_assert_eq(p.pre.scale, 255.f);
  cr_assert_eq(p.pre.mean[0], 104.f);
  cr_assert_eq(p.pre.mean[1], 117.f);
  cr_assert_eq(p.pre.mean[2], 123.f);
  for (int c = 0; c < 3; c++) cr_assert_eq(p.pre.std[c], 1.f);
  cr_assert_str_eq(p.layer, "inception_4c/output");
  cr_assert_eq(p.size, 224);
  cr_assert(p.url[0]);
}

Test(preset, squeezenet_is_torchvision_preprocessing) {
  dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
  dd_err err;
  cr_assert_eq(dd_preset_resolve("squeezenet", &p, &err), DD_OK, "%s", err.msg);
  cr_assert(ends_with(p.model_path, "/squeezenet1.1.onnx"), "%s", p.model_path);
  cr_assert_eq(p.pre.bgr, 0);
  cr_assert_eq(p.pre.scale, 1.f);
  cr_assert_float_eq(p.pre.mean[0], 0.485f, 1e-7);
  cr_assert_float_eq(p.pre.mean[2], 0.406f, 1e-7);
  cr_assert_float_eq(p.pre.std[0], 0.229f, 1e-7);
  cr_assert_float_eq(p.pre.std[2], 0.225f, 1e-7);
  cr_assert_str_eq(p.layer, "fire6/concat");
  cr_assert(p.labels_path[0]);
}

Test(preset, any_onnx_file_gets_imagenet_defaults) {
  char path[512];
  dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
  dd_err err;
  th_shared(path, sizeof path, "models/squeezenet1.1.onnx");
  cr_assert_eq(dd_preset_resolve(path, &p, &err), DD_OK, "%s", err.msg);
  cr_assert_str_eq(p.name, "squeezenet1.1");
  cr_assert_str_eq(p.model_path, path);
  cr_assert_str_eq(p.labels_path, "");
  cr_assert_eq(p.pre.bgr, 0);
  cr_assert_eq(p.pre.scale, 1.f);
  cr_assert_float_eq(p.pre.mean[1], 0.456f, 1e-7);
  cr_assert_float_eq(p.pre.std[1], 0.224f, 1e-7);
  cr_assert_eq(p.size, 224);

  cr_assert_eq(dd_preset_resolve("/nonexistent/model.onnx", &p, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "/nonexistent/model.onnx"), "%s", err.msg);
}

Test(preset, unknown_name_lists_the_presets) {
  dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
  dd_err err;
  cr_assert_eq(dd_preset_resolve("alexnet", &p, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "alexnet"), "%s", err.msg);
  cr_assert(strstr(err.msg, "googlenet") && strstr(err.msg, "squeezenet"), "%s", err.msg);
  cr_assert_eq(dd_preset_resolve("", &p, &err), DD_EARG);
  cr_assert_eq(dd_preset_resolve("bad name!", &p, &err), DD_EARG);
}

Test(preset, missing_model_says_where_it_looked_and_what_to_do) {
  cr_assert_eq(setenv("DREAM_PRESET_PATH", th_tmpdir, 1), 0);
  cr_assert_eq(setenv("DREAM_MODEL_PATH", "/nonexistent/a:/nonexistent/b", 1), 0);
  write_text("ghost.preset", "file ghost.onnx\nurl https://example.org/ghost.onnx\n");
  dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
  dd_err err;
  cr_assert_eq(dd_preset_resolve("ghost", &p, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "ghost.onnx not found"), "%s", err.msg);
  cr_assert(strstr(err.msg, "/nonexistent/a, /nonexistent/b"), "%s", err.msg);
  cr_assert(strstr(err.msg, "weights/models"), "%s", err.msg);
  cr_assert(strstr(err.msg, "weights/setup.sh"), "%s", err.msg);
  cr_assert(strstr(err.msg, "https://example.org/ghost.onnx"), "%s", err.msg);
}

Test(preset, user_presets_and_files_beside_them) {
  cr_assert_eq(setenv("DREAM_PRESET_PATH", th_tmpdir, 1), 0);
  write_text("mine.onnx", "not really a model, but a file");
  write_text("mine.txt", "cat\ndog\n");
  write_text("mine.preset",
             "# a comment\n"
             "file mine.onnx   # trailing comment\n"
             "labels mine.txt\n"
             "bgr yes\nscale 255\nmean 1,2,3\nstd 2\nlayer conv3\nsize 299\n");
  dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
  dd_err err;
  cr_assert_eq(dd_preset_resolve("mine", &p, &err), DD_OK, "%s", err.msg);
  char want[256];
  th_tmp(want, sizeof want, "mine.onnx");
  cr_assert_str_eq(p.model_path, want);
  cr_assert(ends_with(p.labels_path, "/mine.txt"));
  cr_assert_eq(p.pre.bgr, 1);
  cr_assert_eq(p.pre.mean[2], 3.f);
  for (int c = 0; c < 3; c++) cr_assert_eq(p.pre.std[c], 2.f);
  cr_assert_str_eq(p.layer, "conv3");
  cr_assert_eq(p.size, 299);

  /* A path to a preset file works too. */
  char path[256];
  th_tmp(path, sizeof path, "mine.preset");
  cr_assert_eq(dd_preset_resolve(path, &p, &err), DD_OK, "%s", err.msg);
  cr_assert_str_eq(p.name, "mine");
}

Test(preset, malformed_presets_name_the_line) {
  cr_assert_eq(setenv("DREAM_PRESET_PATH", th_tmpdir, 1), 0);
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"file x.onnx\ncolour blue\n", "bad.preset:2: unknown key 'colour'"},
      {"file x.onnx\nstd 1 0 1\n", "bad.preset:2: bad value for 'std'"},
      {"file x.onnx\nmean 1 2\n", "bad.preset:2: bad value for 'mean'"},
      {"file x.onnx\nsize 0\n", "bad.preset:2: bad value for 'size'"},
      {"file x.onnx\nscale -1\n", "bad.preset:2: bad value for 'scale'"},
      {"file x.onnx\nbgr maybe\n", "bad.preset:2: bad value for 'bgr'"},
      {"file\n", "bad.preset:1: 'file' has no value"},
      {"bgr 1\n", "no 'file' line"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_text("bad.preset", cases[i].text);
    dd_preset p __attribute__((cleanup(dd_preset_clear))) = {0};
    dd_err err;
    cr_assert_eq(dd_preset_resolve("bad", &p, &err), DD_EFORMAT, "case %zu", i);
    cr_assert(strstr(err.msg, cases[i].want), "case %zu: %s", i, err.msg);
  }
}

Test(preset, imagenet_labels) {
  char path[512];
  char **labels;
  int n;
  dd_err err;
  cr_assert_eq(dd_labels_load(th_shared(path, sizeof path, "models/imagenet_classes.txt"), &labels,
                              &n, &err),
               DD_OK, "%s", err.msg);
  cr_assert_eq(n, 1000);
  cr_assert_str_eq(labels[0], "tench");
  cr_assert_str_eq(labels[250], "Siberian husky");
  cr_assert_str_eq(labels[999], "toilet tissue");
  int k;
  cr_assert_eq(dd_labels_find(labels, n, "siberian HUSKY", &k, &err), DD_OK);
  cr_assert_eq(k, 250);
  /* Never by prefix: a part of a name is refused, the names it begins suggested. */
  k = -7;
  cr_assert_eq(dd_labels_find(labels, n, "Siber", &k, &err), DD_ENOTFOUND);
  cr_assert_eq(k, -7);
  cr_assert(strstr(err.msg, "'Siberian husky' (250)"), "%s", err.msg);
  cr_assert_eq(dd_labels_find(labels, n, "dog", &k, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "did you mean"), "%s", err.msg);
  cr_assert_eq(dd_labels_find(labels, n, "tiger", &k, &err), DD_OK); /* the whole name */
  cr_assert_str_eq(labels[k], "tiger");
  cr_assert_eq(dd_labels_find(labels, n, "250", &k, &err), DD_OK);
  cr_assert_eq(k, 250);
  cr_assert_eq(dd_labels_find(labels, n, "1000", &k, &err), DD_EARG);
  cr_assert_eq(dd_labels_find(labels, n, "box", &k, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "boxer"), "%s", err.msg);
  cr_assert_eq(dd_labels_find(labels, n, "crane", &k, &err), DD_EARG); /* two classes */
  cr_assert(strstr(err.msg, "(134)") && strstr(err.msg, "(517)"), "%s", err.msg);
  cr_assert_eq(dd_labels_find(labels, n, "Siberian huskey", &k, &err), DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "'Siberian husky' (250)"), "%s", err.msg);
  dd_labels_free(labels, n);
}

Test(preset, labels_files_of_other_shapes) {
  write_text("plain.txt", "cat\r\n  dog  \r\nn01234567 wnid-prefixed\nn123 short id kept");
  write_text("empty.txt", "");
  char path[256];
  char **labels;
  int n;
  dd_err err;
  th_tmp(path, sizeof path, "plain.txt");
  cr_assert_eq(dd_labels_load(path, &labels, &n, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(n, 4);
  cr_assert_str_eq(labels[0], "cat");
  cr_assert_str_eq(labels[1], "dog");
  cr_assert_str_eq(labels[2], "wnid-prefixed");
  cr_assert_str_eq(labels[3], "n123 short id kept");
  dd_labels_free(labels, n);
  th_tmp(path, sizeof path, "empty.txt");
  cr_assert_eq(dd_labels_load(path, &labels, &n, &err), DD_EFORMAT);
  th_tmp(path, sizeof path, "absent.txt");
  cr_assert_eq(dd_labels_load(path, &labels, &n, &err), DD_EIO);
  dd_labels_free(NULL, 0);
}
