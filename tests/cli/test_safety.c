/* Every subcommand as safe as `dream` itself: one test per defect of the CLI-safety issue,
 * each run on the binary as a user runs it. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "dream/image.h"
#include "helper_cli.h"
#include "helper_ops.h"

TestSuite(safety, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 300);

#define RELU_MODEL "/usr/share/libonnx-testdata/data/node/test_relu/model.onnx"
#define SOFTMAX_MODEL "/usr/share/libonnx-testdata/data/node/test_softmax_example/model.onnx"
#define SIGMOID_MODEL "/usr/share/libonnx-testdata/data/node/test_sigmoid/model.onnx"

static void expect_in(const th_result *r, const char *word, const char *what) {
  cr_expect(strstr(r->err, word) || strstr(r->out, word), "%s: '%s' not in: %s%s", what, word,
            r->out, r->err);
}

/* ---- models whose input is not an image ---- */

Test(safety, commands_refuse_a_model_whose_input_is_not_an_image) {
  char in[256], out[256];
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "d.png"));
  th_tmp(out, sizeof out, "o.png");
  const char *models[] = {RELU_MODEL, SOFTMAX_MODEL, SIGMOID_MODEL};
  for (int k = 0; k < 3; k++) {
    const char *cases[][12] = {
        {"classify", "--model", models[k], in},
        {"explain", "--model", models[k], in, out},
        {"activations", "--model", models[k], "--layer", "y", in, out},
        {"class", "--model", models[k], "--class", "0", "--steps", "2", out},
        {"filters", "--optimize", "--model", models[k], "--layer", "y", "--steps", "2", out},
        {"dream", "--model", models[k], "--layer", "y", in, out},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      th_result r = th_run(cases[i]);
      cr_expect_eq(r.signal, 0, "%s %s: killed by signal %d", cases[i][0], models[k], r.signal);
      cr_expect_eq(r.status, 1, "%s %s: exit %d: %s", cases[i][0], models[k], r.status, r.err);
      expect_in(&r, "is not an image", cases[i][0]);
      th_result_free(&r);
    }
    struct stat st;
    cr_expect_neq(stat(out, &st), 0, "a picture was written for %s", models[k]);
  }
}

/* ---- inputs are never overwritten ---- */

static void expect_unchanged(const char *path, const char *before, size_t len) {
  size_t n;
  char *now = th_slurp(path, &n);
  cr_expect(now && n == len && !memcmp(now, before, len), "%s was changed", path);
  free(now);
}

Test(safety, no_command_writes_over_its_input) {
  char png[256], jpg[256], o[256];
  th_photo("dog.jpg", 64, th_tmp(png, sizeof png, "d2.png"));
  th_photo("dog.jpg", 64, th_tmp(jpg, sizeof jpg, "victim.jpg"));
  th_tmp(o, sizeof o, "o.png");
  size_t lp, lj;
  char *bp = th_slurp(png, &lp), *bj = th_slurp(jpg, &lj);
  const char *cases[][8] = {
      {"activations", png, png},
      {"explain", png, png},
      {"activations", "--stats", jpg, jpg, o},
      {"dream", "--iters", "1", png, png},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    th_result r = th_run(cases[i]);
    cr_expect_eq(r.status, 2, "case %zu: exit %d: %s", i, r.status, r.err);
    expect_in(&r, "never overwritten", cases[i][0]);
    th_result_free(&r);
    expect_unchanged(png, bp, lp);
    expect_unchanged(jpg, bj, lj);
  }
  /* The same file by another name (a hard link), and the model file itself. */
  char same[256];
  cr_assert_eq(link(png, th_tmp(same, sizeof same, "same.png")), 0);
  th_result r = TH_RUN("explain", png, same);
  cr_expect_eq(r.status, 2, "hard link: exit %d: %s", r.status, r.err);
  th_result_free(&r);
  expect_unchanged(png, bp, lp);
  char model[512];
  th_shared(model, sizeof model, "models/squeezenet1.1.onnx");
  char copy[256];
  th_tmp(copy, sizeof copy, "m.onnx");
  size_t lm;
  char *bm = th_slurp(model, &lm);
  th_write_bytes(copy, bm, lm);
  r = TH_RUN("grad", "--model", copy, "--input", png, "--layer", "conv1", "--save", copy);
  cr_expect_eq(r.status, 2, "grad over its model: exit %d: %s", r.status, r.err);
  th_result_free(&r);
  expect_unchanged(copy, bm, lm);
  free(bm);
  free(bp);
  free(bj);
}

/* ---- outputs are checked before any work ---- */

Test(safety, outputs_are_checked_before_the_work) {
  char in[256], bad[256];
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "d.png"));
  th_tmp(bad, sizeof bad, "c.xyz");
  struct {
    const char *args[12];
    int status;
    const char *word;
  } cases[] = {
      {{"class", "--class", "1", "--steps", "64", bad}, 2, "extension"},
      {{"explain", in, "/nonexistent/e.png"}, 1, "/nonexistent"},
      {{"filters", "--optimize", bad}, 2, "extension"},
      {{"activations", in, "/nonexistent/a.png"}, 1, "/nonexistent"},
      {{"activations", "--stats", "/nonexistent/s.csv", in, bad}, 2, "extension"},
      {{"dream", in, "/nonexistent/o.jpg"}, 1, "/nonexistent"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    th_result r = th_run(cases[i].args);
    cr_expect_eq(r.status, cases[i].status, "case %zu: exit %d: %s", i, r.status, r.err);
    expect_in(&r, cases[i].word, cases[i].args[0]);
    /* Refused before the model was even read: nothing on stdout, no progress. */
    cr_expect_eq(r.out_len, 0, "case %zu printed: %s", i, r.out);
    th_result_free(&r);
  }
}

/* ---- one vocabulary ---- */

Test(safety, class_names_match_whole_never_by_prefix) {
  char out[256];
  th_tmp(out, sizeof out, "c.png");
  th_result r = TH_RUN("class", "--class", "dog", "--steps", "1", out);
  cr_expect_eq(r.status, 1, "exit %d: %s", r.status, r.err);
  expect_in(&r, "no class named 'dog'", "--class dog");
  expect_in(&r, "did you mean", "--class dog");
  th_result_free(&r);
  struct stat st;
  cr_expect_neq(stat(out, &st), 0, "--class dog drew a picture");
  /* Case-insensitive, whole name. */
  r = TH_RUN("class", "--class", "siberian HUSKY", "--steps", "1", "--size", "64", "-q", out);
  cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  th_result_free(&r);
  char json[256];
  char *j = th_slurp(th_tmp(json, sizeof json, "c.json"), NULL);
  cr_expect(j && strstr(j, "\"class\": 250"), "%s", j ? j : "(no json)");
  free(j);
  /* 'crane' names two ImageNet classes: refused, both listed. */
  r = TH_RUN("class", "--class", "crane", "--steps", "1", out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "(134)", "crane");
  expect_in(&r, "(517)", "crane");
  th_result_free(&r);
}

Test(safety, help_texts_are_clean_and_everywhere) {
  th_result r = TH_RUN("explain", "--help");
  cr_expect_eq(r.status, 0);
  cr_expect_null(strstr(r.out, "%%"), "explain --help prints '%%%%'");
  cr_expect(strstr(r.out, "15%"));
  th_result_free(&r);
  r = TH_RUN("help", "classify");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "usage: dream classify"), "%s", r.out);
  th_result_free(&r);
  r = TH_RUN("--version");
  cr_expect_eq(r.status, 0);
  cr_expect_eq(strncmp(r.out, "dream ", 6), 0, "%s", r.out);
  th_result_free(&r);
  r = TH_RUN("clasify", "x.jpg");
  cr_expect_eq(r.status, 2);
  expect_in(&r, "did you mean 'classify'", "clasify");
  th_result_free(&r);
  /* -q and -h in every subcommand. */
  const char *cmds[] = {"dream", "layers", "classify", "run", "grad", "filters", "class",
                        "activations", "explain", "shapes", "train"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    r = TH_RUN(cmds[i], "-q", "-h");
    cr_expect_eq(r.status, 0, "%s -q -h: exit %d: %s", cmds[i], r.status, r.err);
    cr_expect(strstr(r.out, "-q, --quiet"), "%s --help lacks -q", cmds[i]);
    th_result_free(&r);
  }
}

Test(safety, one_meaning_per_option_name) {
  char in[256], out[256];
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "d.png"));
  th_tmp(out, sizeof out, "e.png");
  /* -c is --channels only; --class has no short form. */
  th_result r = TH_RUN("explain", "-c", "5", in, out);
  cr_expect_eq(r.status, 2, "explain -c: exit %d", r.status);
  expect_in(&r, "unknown option '-c'", "explain -c");
  th_result_free(&r);
  /* --iters is per octave: the visualizations take --steps. */
  r = TH_RUN("filters", "--optimize", "--iters", "4", out);
  cr_expect_eq(r.status, 2);
  expect_in(&r, "--steps", "filters --iters");
  th_result_free(&r);
  /* --seed is decimal everywhere: 010 is ten, not eight. */
  r = TH_RUN("filters", "--optimize", "--layer", "conv2/3x3", "--channels", "0", "--size", "16",
             "--steps", "1", "--seed", "010", out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "seed 10 ", "--seed 010");
  th_result_free(&r);
  /* -o is --save in run as in grad. */
  char data[512], dir[256];
  th_shared(data, sizeof data, "models/bvlc_googlenet.golden/data.pb");
  r = TH_RUN("run", "--input", data, "--output", "conv1/7x7_s2", "-o",
             th_tmp(dir, sizeof dir, "vals"));
  cr_expect_eq(r.status, 0, "run -o: exit %d: %s", r.status, r.err);
  th_result_free(&r);
  char pb[256];
  struct stat st;
  cr_expect_eq(stat(th_tmp(pb, sizeof pb, "vals/conv1_7x7_s2.pb"), &st), 0);
  /* Usage errors exit 2 in every subcommand. */
  const char *cases[][6] = {
      {"classify", "--top", "0", in}, {"layers", "--size", "0x0"},
      {"activations", "--zoom", "x", in, out}, {"explain", "--smoothgrad", "-1", in, out},
      {"grad", "--bogus"}, {"run", "--max-memory", "lots"}, {"class", "--class"},
      {"shapes", "--size", "2", "x"}, {"train", "--epochs", "0", "a", "b.onnx"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    r = th_run(cases[i]);
    cr_expect_eq(r.status, 2, "%s: exit %d: %s", cases[i][0], r.status, r.err);
    th_result_free(&r);
  }
}

Test(safety, warnings_where_an_option_does_nothing) {
  char in[256], out[256];
  th_photo("dog.jpg", 48, th_tmp(in, sizeof in, "d.png"));
  th_tmp(out, sizeof out, "o.png");
  th_result r = TH_RUN("dream", "--bgr", "--rgb", "--layer", "conv2/3x3", "--layer",
                       "inception_3a/output:0", "--lap-levels", "3", "--octaves", "1", "--iters",
                       "1", "-q", in, out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "--bgr and --rgb", "bgr rgb");
  expect_in(&r, "weight 0", ":0");
  expect_in(&r, "--lap-levels does nothing", "lap-levels");
  th_result_free(&r);
  r = TH_RUN("dream", "--layer", "data", "--octaves", "1", "--iters", "1", "-q", in, out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "model's input", "--layer data");
  th_result_free(&r);
}

/* ---- output streams ---- */

Test(safety, progress_only_on_a_terminal) {
  char out[256];
  th_tmp(out, sizeof out, "f.png");
  th_result r = TH_RUN("filters", "--optimize", "--layer", "conv2/3x3", "--channels", "0-1",
                       "--size", "16", "--steps", "20", out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_null(memchr(r.err, '\r', r.err_len), "progress lines in redirected stderr: %s",
                 r.err);
  th_result_free(&r);
  r = TH_RUN("class", "--class", "1", "--size", "64", "--steps", "20", out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect_null(memchr(r.err, '\r', r.err_len), "progress lines in redirected stderr");
  th_result_free(&r);
}

/* classify prints each image's block as soon as it is done: a run stopped while it waits for
 * the second image (a FIFO nobody writes) has already delivered the first. */
Test(safety, classify_flushes_each_image) {
  char in[256], fifo[256], outp[256];
  th_photo("dog.jpg", 96, th_tmp(in, sizeof in, "d.png"));
  cr_assert_eq(mkfifo(th_tmp(fifo, sizeof fifo, "wait.png"), 0600), 0);
  th_tmp(outp, sizeof outp, "classify.txt");
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    signal(SIGINT, SIG_DFL); /* as th_run's children: ignored in a background shell's jobs */
    freopen(outp, "w", stdout);
    freopen("/dev/null", "w", stderr);
    const char *bin = getenv("DREAM_TEST_BINARY") ? getenv("DREAM_TEST_BINARY") : DREAM_BINARY;
    execl(bin, bin, "classify", in, fifo, (char *)NULL);
    _exit(127);
  }
  /* Wait until the first block is there (or 60 s), then interrupt. */
  char *text = NULL;
  for (int i = 0; i < 600; i++) {
    free(text);
    text = th_slurp(outp, NULL);
    if (text && strstr(text, "husky")) break;
    nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  kill(pid, SIGINT);
  int ws;
  waitpid(pid, &ws, 0);
  free(text);
  text = th_slurp(outp, NULL);
  cr_expect(text && strstr(text, "d.png:") && strstr(text, "%"),
            "the finished image's lines were lost: '%s'", text ? text : "");
  free(text);
}

/* JSON is written by jansson: a file name that is not UTF-8 becomes U+FFFD in "image", with
 * its exact bytes in hex in "image_bytes"; the file parses, and is ASCII. */
Test(safety, json_stays_valid_for_any_file_name) {
  char in[256], out[256];
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "d\xff\xfe.png"));
  th_tmp(out, sizeof out, "e.png");
  th_result r = TH_RUN("explain", "-q", in, out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  char jp[256];
  size_t n;
  char *j = th_slurp(th_tmp(jp, sizeof jp, "e.json"), &n);
  cr_assert_not_null(j);
  cr_expect(strstr(j, "d\\uFFFD\\uFFFD.png"), "%s", j);
  for (size_t i = 0; i < n; i++)
    cr_expect((unsigned char)j[i] < 0x80, "a raw byte 0x%02x in the JSON", (unsigned char)j[i]);
  json_error_t jerr;
  json_t *root = json_loads(j, 0, &jerr);
  cr_assert_not_null(root, "invalid JSON: %s at line %d: %s", jerr.text, jerr.line, j);
  const char *image = json_string_value(json_object_get(root, "image"));
  const char *bytes = json_string_value(json_object_get(root, "image_bytes"));
  cr_assert_not_null(image);
  cr_assert_not_null(bytes, "no image_bytes for a name that is not UTF-8: %s", j);
  /* The hex is the name's bytes, exactly. */
  cr_expect_eq(strlen(bytes), 2 * strlen(in), "%s", bytes);
  for (size_t i = 0; i < strlen(in) && 2 * i + 1 < strlen(bytes); i++) {
    unsigned v;
    cr_assert_eq(sscanf(bytes + 2 * i, "%2x", &v), 1);
    cr_expect_eq(v, (unsigned char)in[i], "byte %zu", i);
  }
  char want[300];
  snprintf(want, sizeof want, "%s", in);
  char *bad = strstr(want, "\xff\xfe");
  cr_assert_not_null(bad);
  memmove(bad + 6, bad + 2, strlen(bad + 2) + 1);
  memcpy(bad, "\xef\xbf\xbd\xef\xbf\xbd", 6);
  cr_expect_str_eq(image, want);
  json_decref(root);
  free(j);
  /* A valid UTF-8 name (not ASCII) is kept as it is, with no image_bytes. */
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "chien \xc3\xa9t\xc3\xa9.png"));
  r = TH_RUN("explain", "-q", in, out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  j = th_slurp(jp, NULL);
  cr_assert_not_null(j);
  root = json_loads(j, 0, &jerr);
  cr_assert_not_null(root, "invalid JSON: %s", jerr.text);
  cr_expect_str_eq(json_string_value(json_object_get(root, "image")), in);
  cr_expect_null(json_object_get(root, "image_bytes"), "%s", j);
  json_decref(root);
  free(j);
}

/* class's JSON parses too, with its numbers where they were. */
Test(safety, class_json_is_valid) {
  char out[256], jp[256];
  th_result r = TH_RUN("class", "-q", "--class", "1", "--size", "64", "--steps", "2", "--seed",
                       "18446744073709551615", th_tmp(out, sizeof out, "c.png"));
  cr_expect_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  char *j = th_slurp(th_tmp(jp, sizeof jp, "c.json"), NULL);
  cr_assert_not_null(j);
  json_error_t jerr;
  json_t *root = json_loads(j, 0, &jerr);
  cr_assert_not_null(root, "invalid JSON: %s: %s", jerr.text, j);
  cr_expect_eq(json_integer_value(json_object_get(root, "class")), 1);
  cr_expect_str_eq(json_string_value(json_object_get(root, "label")), "goldfish");
  /* A seed above INT64_MAX is kept whole, as a string. */
  cr_expect_str_eq(json_string_value(json_object_get(root, "seed")), "18446744073709551615");
  cr_expect_eq(json_array_size(json_object_get(root, "top5")), 5);
  json_decref(root);
  free(j);
}

Test(safety, channel_out_of_range_names_the_range) {
  char in[256], out[256];
  th_photo("dog.jpg", 64, th_tmp(in, sizeof in, "d.png"));
  th_result r = TH_RUN("activations", "--layer", "conv2/3x3", "--channels", "0-192", in,
                       th_tmp(out, sizeof out, "a.png"));
  cr_expect_eq(r.status, 1);
  expect_in(&r, "channel 192 out of range 0..191", "activations");
  th_result_free(&r);
}

/* classify and explain frame the photo the same way, so they list the same top 5. */
Test(safety, classify_and_explain_agree) {
  char dog[512], out[256];
  th_shared(dog, sizeof dog, "images/dog.jpg");
  th_result a = TH_RUN("classify", dog);
  th_result b = TH_RUN("explain", "-q", dog, th_tmp(out, sizeof out, "e.png"));
  cr_assert_eq(a.status, 0, "%s", a.err);
  cr_assert_eq(b.status, 0, "%s", b.err);
  cr_expect_str_eq(a.out, b.out, "classify:\n%s\nexplain:\n%s", a.out, b.out);
  th_result_free(&a);
  th_result_free(&b);
}

/* A 2000x20 strip: its shorter side goes to 224, but the longer side stops at 4 x 224 (the
 * strip's centre), not 22400 pixels (3.4 GB of activations). */
Test(safety, activations_cap_the_long_side) {
  char in[256], out[256];
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(2000, 20, &im, &err), 0);
  for (int i = 0; i < 2000 * 20 * 3; i++) im->rgb[i] = (float)(i % 251);
  cr_assert_eq(dd_image_save(th_tmp(in, sizeof in, "strip.png"), im, &err), 0);
  dd_image_free(im);
  th_result r = TH_RUN("activations", "--layer", "conv2/3x3", in, th_tmp(out, sizeof out, "a.png"));
  cr_expect_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "at 896x224", "activations");
  th_result_free(&r);
}

/* The pixel cap of a command follows from --max-memory, and its message says so: a
 * 3000x3000 photo (9 M pixels) under 256 MiB (4 M pixels at 64 bytes each), where the
 * network's own buffers (51 MiB) fit. */
Test(safety, pixel_cap_names_the_option) {
  char big[256];
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(3000, 3000, &im, &err), 0);
  cr_assert_eq(dd_image_save(th_tmp(big, sizeof big, "big.png"), im, &err), 0);
  dd_image_free(im);
  th_result r = TH_RUN("classify", "--max-memory", "256M", big);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "image is 3000x3000, more than the limit of 4194304 pixels", "classify");
  expect_in(&r, "the limit is --max-memory / 64 bytes per pixel, with --max-memory 256 MiB",
            "classify");
  th_result_free(&r);
}

/* ---- EXIF, ICC, quality ---- */

/* `src` (a JPEG without metadata) with an APP1 Exif segment (big-endian TIFF, IFD0:
 * Orientation = value) and an APP2 ICC_PROFILE segment spliced in after SOI. */
static void tagged_jpeg(const char *src, const char *dst, int orientation, const char *icc) {
  size_t n;
  unsigned char *j = (unsigned char *)th_slurp(src, &n);
  cr_assert(j && n > 4 && j[0] == 0xFF && j[1] == 0xD8);
  static const unsigned char tiff_head[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                                            0x01, 0x12, 0, 3, 0, 0, 0, 1};
  unsigned char app1[64];
  size_t a = 0;
  app1[a++] = 0xFF, app1[a++] = 0xE1, a += 2;
  memcpy(app1 + a, "Exif\0\0", 6), a += 6;
  memcpy(app1 + a, tiff_head, sizeof tiff_head), a += sizeof tiff_head;
  app1[a++] = 0, app1[a++] = (unsigned char)orientation, app1[a++] = 0, app1[a++] = 0;
  app1[a++] = 0, app1[a++] = 0, app1[a++] = 0, app1[a++] = 0; /* no next IFD */
  app1[2] = (unsigned char)((a - 2) >> 8), app1[3] = (unsigned char)(a - 2);
  unsigned char app2[256];
  size_t b = 0, il = strlen(icc);
  app2[b++] = 0xFF, app2[b++] = 0xE2, b += 2;
  memcpy(app2 + b, "ICC_PROFILE\0", 12), b += 12;
  app2[b++] = 1, app2[b++] = 1;
  memcpy(app2 + b, icc, il), b += il;
  app2[2] = (unsigned char)((b - 2) >> 8), app2[3] = (unsigned char)(b - 2);
  FILE *f = fopen(dst, "wb");
  cr_assert_not_null(f);
  fwrite(j, 1, 2, f);
  fwrite(app1, 1, a, f);
  fwrite(app2, 1, b, f);
  fwrite(j + 2, 1, n - 2, f);
  fclose(f);
  free(j);
}

/* A phone photo: stored sideways (pixels turned 90 degrees counter-clockwise) with
 * Orientation 6, which every viewer shows upright. */
Test(safety, exif_orientation_is_applied_and_metadata_carried) {
  char dog[512], side[256], rot[256], out[256], ref[256];
  th_shared(dog, sizeof dog, "images/dog.jpg");
  dd_image *up, *sw;
  dd_err err;
  cr_assert_eq(dd_image_load(dog, 0, &up, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_image_new(up->h, up->w, &sw, &err), 0);
  for (int y = 0; y < up->h; y++) /* stored (x', y') = (y, W-1-x) */
    for (int x = 0; x < up->w; x++)
      memcpy(sw->rgb + ((size_t)(up->w - 1 - x) * sw->w + y) * 3,
             up->rgb + ((size_t)y * up->w + x) * 3, 3 * sizeof(float));
  dd_image_save_opts o;
  dd_image_save_opts_init(&o);
  o.keep_meta = 0;
  cr_assert_eq(dd_image_save_with(th_tmp(side, sizeof side, "side.jpg"), sw, &o, &err), 0);
  dd_image_free(sw);
  dd_image_free(up);
  const char *icc = "a stand-in ICC profile, carried byte for byte";
  tagged_jpeg(side, th_tmp(rot, sizeof rot, "phone.jpg"), 6, icc);
  /* dream returns the photo as every viewer shows it: 768 wide, 576 high, with its ICC
   * profile and EXIF. */
  th_result r = TH_RUN("dream", "--octaves", "1", "--iters", "1", "--layer", "conv2/3x3", rot,
                       th_tmp(out, sizeof out, "out.jpg"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  dd_image *im;
  cr_assert_eq(dd_image_load(out, 0, &im, &err), 0, "%s", err.msg);
  cr_expect_eq(im->w, 768);
  cr_expect_eq(im->h, 576);
  cr_expect(im->icc && im->icc_len == strlen(icc) && !memcmp(im->icc, icc, im->icc_len),
            "the ICC profile was not carried");
  cr_expect(im->exif != NULL, "the EXIF block was not carried");
  dd_image_free(im);
  /* classify sees the upright pixels: the same output as for a lossless copy of them. */
  cr_assert_eq(dd_image_load(rot, 0, &im, &err), 0, "%s", err.msg);
  cr_assert_eq(im->w, 768);
  cr_assert_eq(dd_image_save(th_tmp(ref, sizeof ref, "upright.png"), im, &err), 0);
  dd_image_free(im);
  th_result a = TH_RUN("classify", ref);
  th_result b = TH_RUN("classify", rot);
  cr_assert_eq(a.status, 0);
  cr_assert_eq(b.status, 0);
  const char *la = strchr(a.out, '\n'), *lb = strchr(b.out, '\n');
  cr_expect(la && lb && !strcmp(la, lb), "upright: %s phone: %s", a.out, b.out);
  th_result_free(&a);
  th_result_free(&b);
}

Test(safety, quality_sets_the_jpeg_quality) {
  char in[256], lo[256], hi[256];
  th_photo("dog.jpg", 160, th_tmp(in, sizeof in, "d.png"));
  const char *common[] = {"--octaves", "1", "--iters", "1", "--layer", "conv2/3x3", "-q"};
  th_result r = TH_RUN("dream", common[0], common[1], common[2], common[3], common[4], common[5],
                       common[6], "--quality", "20", in, th_tmp(lo, sizeof lo, "lo.jpg"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("dream", common[0], common[1], common[2], common[3], common[4], common[5],
             common[6], in, th_tmp(hi, sizeof hi, "hi.jpg"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  size_t nl, nh;
  free(th_slurp(lo, &nl));
  free(th_slurp(hi, &nh));
  cr_expect_lt(nl * 2, nh, "--quality 20: %zu bytes, default: %zu", nl, nh);
  r = TH_RUN("dream", "--quality", "101", in, lo);
  cr_expect_eq(r.status, 2);
  th_result_free(&r);
}

/* ---- limits in pixels and bytes ---- */

Test(safety, too_small_images_say_the_smallest_size) {
  char in[256], out[256];
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(20, 20, &im, &err), 0);
  cr_assert_eq(dd_image_save(th_tmp(in, sizeof in, "tiny.png"), im, &err), 0);
  dd_image_free(im);
  th_result r = TH_RUN("dream", in, th_tmp(out, sizeof out, "o.png"));
  cr_expect_eq(r.status, 1);
  expect_in(&r, "the smallest input this model accepts is 23x23 pixels", "20x20");
  th_result_free(&r);
  char dog[512];
  r = TH_RUN("dream", "--max-side", "1", th_shared(dog, sizeof dog, "images/dog.jpg"), out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "--max-side 1", "--max-side 1");
  expect_in(&r, "23x23 pixels", "--max-side 1");
  th_result_free(&r);
}

/* A budget the whole image's plan exceeds is dreamed in tiles; one the job cannot fit even
 * in tiles is refused naming --max-memory, the size that fits and the budget that would. */
Test(safety, memory_budget_means_tiles_or_a_size_that_fits) {
  char dog[512], out[256];
  th_shared(dog, sizeof dog, "images/dog.jpg");
  th_result r = TH_RUN("dream", "--max-memory", "60M", "--octaves", "1", "--iters", "1", "-q",
                       dog, th_tmp(out, sizeof out, "o.jpg"));
  cr_expect_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("dream", "--max-memory", "40M", dog, out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "--max-memory 40M", "40M");
  expect_in(&r, "use --max-side", "40M");
  th_result_free(&r);
}

Test(safety, shadowed_aliases_are_reported) {
  th_result r = TH_RUN("layers", "-m", "squeezenet");
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "conv10 (shadowed)", "layers");
  th_result_free(&r);
  char in[256], out[256];
  th_photo("dog.jpg", 96, th_tmp(in, sizeof in, "d.png"));
  r = TH_RUN("activations", "-m", "squeezenet", "--layer", "conv10", in,
             th_tmp(out, sizeof out, "a.png"));
  cr_expect_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "shadowed", "--layer conv10");
  expect_in(&r, "1000 channels", "--layer conv10 is the real conv10");
  th_result_free(&r);
}
