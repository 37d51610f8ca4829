/* dream shapes and dream train as a user runs them: the dataset, a short training whose model
 * the other commands open with no flags, the export against onnx.checker and PyTorch, the
 * snapshots, and bad input (one class, mixed sizes, no weights, divergence, interruption). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dream/image.h"
#include "dream/tensor.h"
#include "helper_cli.h"
#include "helper_model.h"
#include "helper_torch.h"
#include "ops/cpu.h"

TestSuite(train_cli, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 300);

static void expect_in(const th_result *r, const char *word, const char *what) {
  cr_expect(strstr(r->err, word) || strstr(r->out, word), "%s: '%s' not in: %s%s", what, word,
            r->out, r->err);
}

static int exists(const char *name) {
  char p[256];
  struct stat st;
  return stat(th_tmp(p, sizeof p, name), &st) == 0;
}

static int count_files(const char *name) {
  char p[256];
  DIR *d = opendir(th_tmp(p, sizeof p, name));
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void shapes(const char *dir, const char *size, const char *count, const char *seed) {
  char p[256];
  th_result r = TH_RUN("shapes", "--size", size, "--count", count, "--seed", seed,
                       th_tmp(p, sizeof p, dir));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
}

Test(train_cli, shapes_writes_one_folder_per_class_and_is_reproducible) {
  char a[256], b[256];
  shapes("a", "16", "5", "3");
  shapes("b", "16", "5", "3");
  cr_assert_eq(count_files("a"), 4);
  cr_assert_eq(count_files("a/circle"), 5);
  cr_assert_eq(count_files("a/cross"), 5);
  size_t la, lb;
  char *x = th_slurp(th_tmp(a, sizeof a, "a/triangle/triangle_00004.png"), &la);
  char *y = th_slurp(th_tmp(b, sizeof b, "b/triangle/triangle_00004.png"), &lb);
  cr_assert(x && y && la == lb && !memcmp(x, y, la));
  free(x);
  free(y);
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(a, 0, &im, &err), 0, "%s", err.msg);
  cr_assert(im->w == 16 && im->h == 16);
  dd_image_free(im);
  th_result r = TH_RUN("shapes", "--classes", "circle,blob", th_tmp(a, sizeof a, "c"));
  cr_assert_eq(r.status, 2);
  expect_in(&r, "blob", "unknown class");
  th_result_free(&r);
}

Test(train_cli, color_by_class_paints_each_class_its_colour) {
  char p[256];
  th_result r = TH_RUN("shapes", "--size", "16", "--count", "3", "--classes", "circle,square",
                       "--color-by-class", "--noise", "0", th_tmp(p, sizeof p, "f"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  /* the circle's reddest pixel is red, the square's bluest is blue */
  dd_image *c, *s;
  dd_err err;
  cr_assert_eq(dd_image_load(th_tmp(p, sizeof p, "f/circle/circle_00000.png"), 0, &c, &err), 0);
  cr_assert_eq(dd_image_load(th_tmp(p, sizeof p, "f/square/square_00000.png"), 0, &s, &err), 0);
  float red = 0, blue = 0;
  for (int i = 0; i < 16 * 16; i++) {
    float rr = c->rgb[3 * i] - c->rgb[3 * i + 2], bb = s->rgb[3 * i + 2] - s->rgb[3 * i];
    if (rr > red) red = rr;
    if (bb > blue) blue = bb;
  }
  cr_assert(red > 120 && blue > 120, "red %g blue %g", red, blue);
  dd_image_free(c);
  dd_image_free(s);
}

/* A short training, then the trained model as the other commands and PyTorch see it. */
Test(train_cli, trains_exports_and_the_model_opens_with_no_flags) {
  char p[256], out[256], snap[256], val[256];
  shapes("tr", "16", "12", "1");
  shapes("va", "16", "4", "2");
  th_result r = TH_RUN("train", "--arch", "cnn", "--epochs", "2", "--batch", "8", "--seed", "5",
                       "--val", th_tmp(val, sizeof val, "va"), "--snapshots",
                       th_tmp(snap, sizeof snap, "snap"), th_tmp(p, sizeof p, "tr"),
                       th_tmp(out, sizeof out, "out.onnx"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "epoch 2/2", "progress");
  expect_in(&r, "val acc", "summary");
  th_result_free(&r);
  cr_assert(exists("snap/filters_0001.png") && exists("snap/filters_0002.png"));
  cr_assert(exists("snap/curves.png") && exists("snap/filters.gif"));
  cr_assert(exists("snap/filters_0000.png") && exists("snap/initial.onnx"));
  cr_assert(exists("snap/channels_0000.png") && exists("snap/channels_0002.png"));
  /* classify: the labels come from the file */
  r = TH_RUN("classify", "--model", out, th_tmp(p, sizeof p, "va/cross/cross_00000.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "circle", "labels from metadata");
  expect_in(&r, "triangle", "labels from metadata");
  th_result_free(&r);
  /* audit: folder names are the model's labels */
  r = TH_RUN("audit", "--model", out, val, th_tmp(p, sizeof p, "audit"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "16 labelled", "audit");
  th_result_free(&r);
  r = TH_RUN("filters", "--model", out, th_tmp(p, sizeof p, "f.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  /* dream run on one image against PyTorch, after onnx.checker */
  dd_image *im, *rs;
  dd_err err;
  cr_assert_eq(dd_image_load(th_tmp(p, sizeof p, "va/square/square_00001.png"), 0, &im, &err), 0);
  rs = im;
  int64_t d[4] = {1, 3, 16, 16};
  dd_shape sh = dd_shape_make(4, d);
  dd_tensor *x;
  cr_assert_eq(dd_tensor_new(DD_F32, &sh, 0, &x, &err), 0);
  dd_preproc pre = {0, 1, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
  dd_image_to_input(rs, &pre, dd_f32(x));
  dd_image_free(im);
  cr_assert_eq(dd_tensor_save_pb(th_tmp(p, sizeof p, "x.pb"), x, "input", &err), 0);
  dd_tensor_free(x);
  char yd[256];
  r = TH_RUN("run", "--model", out, "--input", p, "--save", th_tmp(yd, sizeof yd, "y"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  th_ref_script("train_export.py", "torch and onnx (Debian python3-torch, python3-onnx)");
  /* fine-tuning: the trained file goes on from its own weights, preprocessing and labels */
  char tuned[256];
  r = TH_RUN("train", "--arch", out, "--epochs", "1", "--batch", "8", th_tmp(p, sizeof p, "tr"),
             th_tmp(tuned, sizeof tuned, "tuned.onnx"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("classify", "--model", tuned, th_tmp(p, sizeof p, "va/cross/cross_00000.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "triangle", "labels kept");
  th_result_free(&r);
  /* a folder whose class count is not the model's outputs */
  th_result s2 = TH_RUN("shapes", "--size", "16", "--count", "2", "--classes", "circle,square",
                        th_tmp(p, sizeof p, "two"));
  cr_assert_eq(s2.status, 0, "%s", s2.err);
  th_result_free(&s2);
  r = TH_RUN("train", "--arch", out, "--epochs", "1", p, th_tmp(tuned, sizeof tuned, "t2.onnx"));
  cr_assert_eq(r.status, 1);
  expect_in(&r, "has 4 outputs but", "class count");
  th_result_free(&r);
}

Test(train_cli, same_seed_same_bytes) {
  char p[256], a[256], b[256];
  shapes("tr", "8", "6", "1");
  for (int i = 0; i < 2; i++) {
    /* --help promises the same bytes on any number of threads with the AVX-512 kernels
     * (the child reads the same DREAM_KERNELS as this process); batches of 10 are two chunks
     * (8 + 2) that two threads share (src/train.c) */
    if (i && dd_kernels_chosen() == DD_KERNELS_AVX512) setenv("OMP_NUM_THREADS", "1", 1);
    th_result r = TH_RUN("train", "--arch", "cnn", "--epochs", "2", "--batch", "10",
                         "--optimizer", "adam", "--seed", "9", "-q", th_tmp(p, sizeof p, "tr"),
                         i ? th_tmp(b, sizeof b, "b.onnx") : th_tmp(a, sizeof a, "a.onnx"));
    setenv("OMP_NUM_THREADS", "2", 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(r.err_len, 0, "-q printed: %s", r.err);
    th_result_free(&r);
  }
  size_t la, lb;
  char *x = th_slurp(a, &la), *y = th_slurp(b, &lb);
  cr_assert(x && y && la == lb && !memcmp(x, y, la), "two runs with --seed 9 differ");
  free(x);
  free(y);
}

Test(train_cli, one_class_is_refused_and_nothing_written) {
  char p[256], o[256];
  th_result r = TH_RUN("shapes", "--size", "8", "--count", "3", "--classes", "circle",
                       th_tmp(p, sizeof p, "one"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("train", p, th_tmp(o, sizeof o, "m.onnx"));
  cr_assert_eq(r.status, 1);
  expect_in(&r, "one class only", "one class");
  expect_in(&r, "one", "the folder named");
  cr_assert(!exists("m.onnx"));
  th_result_free(&r);
}

Test(train_cli, mixed_sizes_are_resized_and_said_so) {
  char p[256], o[256];
  shapes("mix", "16", "3", "1");
  th_result r = TH_RUN("shapes", "--size", "24", "--count", "1", "--classes", "square",
                       th_tmp(p, sizeof p, "big"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  /* big/square/square_00000.png -> mix/square/square_big.png */
  char src[256], dst[256];
  cr_assert_eq(rename(th_tmp(src, sizeof src, "big/square/square_00000.png"),
                      th_tmp(dst, sizeof dst, "mix/square/square_big.png")), 0);
  r = TH_RUN("train", "--arch", "perceptron", "--epochs", "1", th_tmp(p, sizeof p, "mix"),
             th_tmp(o, sizeof o, "m.onnx"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "1 of 13 images were not 16x16: resized", "resize note");
  th_result_free(&r);
}

Test(train_cli, a_model_without_weights_is_refused) {
  char p[256], m[256], o[256];
  shapes("tr", "8", "2", "1");
  th_model *b = th_model_new("noweights");
  th_model_input(b, "x", 4, (int64_t[]){1, 3, 8, 8});
  th_model_output(b, "y");
  th_model_node(b, "Flatten", "f", "x", "y");
  th_model_write(b, th_tmp(m, sizeof m, "noweights.onnx"));
  th_model_free(b);
  th_result r = TH_RUN("train", "--arch", m, th_tmp(p, sizeof p, "tr"),
                       th_tmp(o, sizeof o, "m.onnx"));
  cr_assert_eq(r.status, 1);
  expect_in(&r, "noweights.onnx", "file named");
  expect_in(&r, "no trainable weights", "reason");
  cr_assert(!exists("m.onnx"));
  th_result_free(&r);
}

Test(train_cli, a_diverging_run_stops_and_keeps_the_last_good_epoch) {
  char p[256], o[256];
  shapes("tr", "8", "10", "1");
  th_result r = TH_RUN("train", "--arch", "mlp", "--epochs", "50", "--lr", "1000", "--momentum",
                       "0.99", th_tmp(p, sizeof p, "tr"), th_tmp(o, sizeof o, "m.onnx"));
  cr_assert_eq(r.status, 1, "%s", r.err);
  expect_in(&r, "not finite", "divergence");
  expect_in(&r, "epoch", "the epoch named");
  if (strstr(r.err, "keeps the last good")) {
    /* an earlier epoch was written: the file is a whole model */
    th_result c = TH_RUN("classify", "--model", o, th_tmp(p, sizeof p, "tr/cross/cross_00000.png"));
    cr_assert_eq(c.status, 0, "%s", c.err);
    th_result_free(&c);
  } else {
    cr_assert(!exists("m.onnx"));
  }
  th_result_free(&r);
}

Test(train_cli, sigterm_keeps_the_last_complete_epoch) {
  char p[256], o[256];
  shapes("tr", "16", "40", "1");
  pid_t pid = th_spawn((const char *const[]){"train", "--epochs", "100000", "--batch", "4",
                                             th_tmp(p, sizeof p, "tr"),
                                             th_tmp(o, sizeof o, "m.onnx"), NULL});
  struct timespec ts = {0, 20 * 1000 * 1000};
  for (int i = 0; i < 3000 && !exists("m.onnx"); i++) nanosleep(&ts, NULL);
  cr_assert(exists("m.onnx"), "no epoch finished in 60 s");
  kill(pid, SIGTERM);
  th_result r = th_wait(pid);
  cr_assert_eq(r.status, 128 + SIGTERM, "status %d: %s", r.status, r.err);
  expect_in(&r, "keeps epoch", "what is kept");
  th_result_free(&r);
  r = TH_RUN("classify", "--model", o, th_tmp(p, sizeof p, "tr/circle/circle_00000.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
}

Test(train_cli, usage_errors) {
  th_result r = TH_RUN("train", "--arch", "resnet", "a", "b.onnx");
  cr_assert_eq(r.status, 2);
  expect_in(&r, "resnet", "arch");
  th_result_free(&r);
  r = TH_RUN("train", "a", "b.pt");
  cr_assert_eq(r.status, 2);
  expect_in(&r, ".onnx", "extension");
  th_result_free(&r);
  r = TH_RUN("train", "--optimizer", "rmsprop", "a", "b.onnx");
  cr_assert_eq(r.status, 2);
  expect_in(&r, "rmsprop", "optimizer");
  th_result_free(&r);
}
