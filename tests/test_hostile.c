/* Hostile input: files made to crash the loaders or to make them allocate without bound, and
 * every input the fuzzers found (tests/fuzz/regressions/<target>/), replayed through the fuzz
 * targets' own code, included here, so that the normal build runs exactly the calls that
 * once failed. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb_image.h>

#include "dream/graph.h"
#include "dream/image.h"
#include "dream/model.h"
#include "dream/tensor.h"
#include "helper_cli.h"
#include "helper_model.h"
#include "helper_ops.h"
#include "util.h"
#include "onnx.pb-c.h"

#include "fuzz/fuzz.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* Caps this test process's address space a little above what it uses now, so that any
 * large allocation fails (Criterion runs each test in its own process).  Under ASan the
 * shadow memory makes RLIMIT_AS unusable, but ASan itself aborts on an allocation over
 * its maximum, which is as good a witness.  The cap is the soft limit, lifted again by the
 * suite's teardown: an OpenBLAS thread that started late, under the cap, retries its buffer's
 * mmap until then, and the process's exit waits for that thread. */
static void limit_address_space(size_t extra) {
#ifndef __SANITIZE_ADDRESS__
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  unsigned long pages = 0;
  cr_assert_eq(fscanf(f, "%lu", &pages), 1);
  fclose(f);
  struct rlimit rl;
  cr_assert_eq(getrlimit(RLIMIT_AS, &rl), 0);
  rl.rlim_cur = pages * (rlim_t)sysconf(_SC_PAGESIZE) + extra;
  cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
#else
  (void)extra;
#endif
}

static void teardown(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_AS, &rl);
  }
  th_cli_teardown();
}

/* A model of graph input "x" (float32, `n_dims` dims) and `n_relu` Relu nodes in a chain
 * (x -> r1 -> ... -> y). */
static th_model *relu_chain(const int64_t *in_dims, int n_dims, int n_relu) {
  th_model *b = th_model_new("hostile");
  th_model_input(b, "x", n_dims, in_dims);
  th_model_output(b, "y");
  char in[24] = "x", out[24];
  for (int i = 1; i <= n_relu; i++) {
    if (i == n_relu) strcpy(out, "y");
    else snprintf(out, sizeof out, "r%d", i);
    th_model_node(b, "Relu", NULL, in, out);
    strcpy(in, out);
  }
  return b;
}

/* ---- fuzzer findings ------------------------------------------------------------------ */

/* Runs `one` on every file of tests/fuzz/regressions/<target>/; returns how many. */
static int replay_dir(const char *target, int (*one)(const uint8_t *, size_t)) {
  char dir[1024], path[1400];
  snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/%s", DREAM_SOURCE_DIR, target);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t len;
    uint8_t *buf = (uint8_t *)th_slurp(path, &len);
    cr_assert_not_null(buf, "%s", path);
    double t0 = dd_now_seconds();
    one(buf, len);
    cr_log_info("%s/%s: %.3f s", target, e->d_name, dd_now_seconds() - t0);
    free(buf);
    n++;
  }
  closedir(d);
  return n;
}

/* Files go to a temporary directory of each test's own (th_tmp); the binary finds the shared
 * models whether or not weights/setup.sh was run. */
TestSuite(hostile, .init = th_cli_setup, .fini = teardown);

Test(hostile, replay_fuzz_onnx, .timeout = 120) { replay_dir("fuzz_onnx", dd_fuzz_onnx); }

Test(hostile, replay_fuzz_tensor, .timeout = 60) {
  cr_assert_gt(replay_dir("fuzz_tensor", dd_fuzz_tensor), 0);
}

Test(hostile, replay_fuzz_image, .timeout = 60) {
  cr_assert_gt(replay_dir("fuzz_image", dd_fuzz_image), 0);
}

/* fuzz_movie's findings, and a few movies that are nearly valid (kept in its regressions so
 * that the replay always decodes something). */
Test(hostile, replay_fuzz_movie, .timeout = 60) {
  cr_assert_gt(replay_dir("fuzz_movie", dd_fuzz_movie), 0);
}

/* fuzz_cli's findings: cli_dream_parse lives in the dream binary, not in the library the
 * tests link, so each input's NUL-separated words are given to the binary itself, in an
 * empty directory; it must exit (0, 1, 2 or 130), not die of a signal or hang. */
static int replay_cli(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1), *argv[66];
  cr_assert_not_null(text);
  memcpy(text, data, size);
  text[size] = 0;
  int argc = 0;
  argv[argc++] = "dream";
  for (size_t i = 0; i <= size && argc < 65; i += strlen(text + i) + 1) argv[argc++] = text + i;
  argv[argc] = NULL;
  char dir[] = "/tmp/dream_hostile_cli_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    /* dies with the test, as th_spawn's children do */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || chdir(dir) != 0 ||
        !freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
      _exit(99);
    alarm(60);
    execv(DREAM_BINARY, argv);
    _exit(98);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st), "dream died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  int code = WEXITSTATUS(st);
  cr_assert(code == 0 || code == 1 || code == 2 || code == 130, "dream exited %d", code);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
  free(text);
  return 0;
}

Test(hostile, replay_fuzz_cli, .timeout = 300) { replay_dir("fuzz_cli", replay_cli); }

/* What each image finding now gives: the JPEGs that made stb 2.27 write past its Huffman
 * tables or decode with tables never defined, and the PNG whose IDAT says 1.1 GB in 3 KB
 * (stb allocated 2 GB for it), are refused before stb sees them; the 16-bit PGMs, which
 * stb's channel conversion read past, load at their size. */
Test(hostile, image_findings_are_refused_or_decoded_safely) {
  static const struct {
    const char *file;
    int code;
    const char *says; /* in the message, or the size "WxH" when it loads */
  } cases[] = {
      {"jpeg_dht_over_256_codes", DD_EFORMAT, "Huffman table has over 256 codes"},
      {"jpeg_dht_over_256_codes_after_fill", DD_EFORMAT, "Huffman table has over 256 codes"},
      {"jpeg_undefined_huffman_table_1", DD_EFORMAT, "Huffman table that is not defined"},
      {"jpeg_undefined_huffman_table_2", DD_EFORMAT, "Huffman table that is not defined"},
      {"jpeg_undefined_huffman_table_3", DD_EFORMAT, "Huffman table that is not defined"},
      {"pgm_16bit_overread_1", DD_OK, "1x3"},
      {"pgm_16bit_overread_2", DD_OK, "13x1"},
      {"pgm_width_int_overflow", DD_ELIMIT, "more than the limit"},
      {"png_idat_length_past_the_file", DD_EFORMAT, "chunk is longer than the rest of the file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fuzz/regressions/fuzz_image/%s", DREAM_SOURCE_DIR,
             cases[i].file);
    dd_image *im = NULL;
    dd_err err = {0};
    int rc = dd_image_load(path, 0, &im, &err);
    cr_assert_eq(rc, cases[i].code, "%s: %s (%s)", cases[i].file, dd_errname(rc), err.msg);
    if (rc) {
      cr_assert(strstr(err.msg, cases[i].says) && strstr(err.msg, cases[i].file), "%s",
                err.msg);
    } else {
      char size[32];
      snprintf(size, sizeof size, "%dx%d", im->w, im->h);
      cr_assert_str_eq(size, cases[i].says);
      dd_image_free(im);
    }
  }
}

/* The JPEG checks follow stb's parsing: valid progressive, optimized and subsampled files
 * (tests/fuzz/valid/, made by PIL/libjpeg) load, pixel for pixel as stb alone decodes them. */
Test(hostile, image_guard_accepts_valid_jpegs) {
  const char *files[] = {"progressive.jpg", "progressive_grey.jpg", "optimized.jpg",
                         "subsampled_420.jpg"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fuzz/valid/%s", DREAM_SOURCE_DIR, files[i]);
    dd_image *im = NULL;
    dd_err err;
    cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
    int w, h, c;
    unsigned char *px = stbi_load(path, &w, &h, &c, 3);
    cr_assert_not_null(px);
    cr_assert(im->w == w && im->h == h && w == 24 && h == 16, "%s: %dx%d", files[i], w, h);
    for (int k = 0; k < w * h * 3; k++)
      cr_assert_eq(im->rgb[k], (float)px[k], "%s: byte %d", files[i], k);
    stbi_image_free(px);
    dd_image_free(im);
  }
  for (int k = 0; k < 7; k++) { /* and the shared photos */
    static const char *photos[] = {"dog", "eagle", "giraffe", "horses", "kite", "person",
                                   "scream"};
    char rel[64], path[1024];
    snprintf(rel, sizeof rel, "images/%s.jpg", photos[k]);
    dd_image *im = NULL;
    dd_err err;
    cr_assert_eq(dd_image_load(th_shared(path, sizeof path, rel), 0, &im, &err), DD_OK, "%s",
                 err.msg);
    dd_image_free(im);
  }
}

/* ---- sizes from the file -------------------------------------------------------------- */

/* Initializers whose dims claim 2^40 elements or more, or overflow int64, with little or no
 * data: refused from the dims alone, quickly, with nothing large allocated. */
Test(hostile, huge_initializer_is_refused_without_allocating) {
  static const struct {
    int64_t dims[3];
    int ndims;
    int raw; /* carries 4 bytes of raw_data instead of no data */
    int code;
    const char *says;
  } cases[] = {
      {{INT64_C(1) << 20, INT64_C(1) << 20}, 2, 0, DD_EFORMAT, "need 1099511627776 elements"},
      {{INT64_C(1) << 20, INT64_C(1) << 20}, 2, 1, DD_EFORMAT, "need 1099511627776 elements"},
      {{INT64_C(1) << 21, INT64_C(1) << 20}, 2, 0, DD_ELIMIT, "too many elements"},
      {{INT64_C(1) << 32, INT64_C(1) << 32, 4}, 3, 0, DD_ELIMIT, "too many elements"},
      {{3, -5}, 2, 0, DD_EFORMAT, "negative"},
  };
  int64_t in_dims[] = {1, 3, 8, 8};
  size_t lens[5];
  uint8_t *bufs[5];
  float four = 1.f;
  for (int i = 0; i < 5; i++) {
    th_model *b = relu_chain(in_dims, 4, 1);
    th_model_init_raw(b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, cases[i].ndims,
                      cases[i].dims, cases[i].raw ? &four : NULL, 4);
    bufs[i] = th_model_pack(b, &lens[i]);
    th_model_free(b);
  }
  limit_address_space((size_t)256 << 20);
  for (int i = 0; i < 5; i++) {
    dd_model *m = NULL;
    dd_err err = {0};
    double t0 = dd_now_seconds();
    int rc = dd_model_parse(bufs[i], lens[i], "huge_init.onnx", &m, &err);
    double dt = dd_now_seconds() - t0;
    cr_assert_eq(rc, cases[i].code, "case %d: %s (%s)", i, dd_errname(rc), err.msg);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, "huge_init.onnx: initializer 'w'") && strstr(err.msg, cases[i].says),
              "case %d: %s", i, err.msg);
    cr_assert_lt(dt, 1.0, "case %d took %.2f s", i, dt);
    free(bufs[i]);
  }
}

/* The same dims in a TensorProto file. */
Test(hostile, huge_tensor_file_is_refused_without_allocating) {
  int64_t dims[] = {INT64_C(1) << 20, INT64_C(1) << 20, 16};
  Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
  tp.has_data_type = 1;
  tp.data_type = 7;
  tp.n_dims = 3;
  tp.dims = dims;
  size_t len = onnx__tensor_proto__get_packed_size(&tp);
  uint8_t *buf = malloc(len);
  onnx__tensor_proto__pack(&tp, buf);
  char path[256];
  th_write_bytes(th_tmp(path, sizeof path, "huge.pb"), buf, len);
  free(buf);
  limit_address_space((size_t)256 << 20);
  dd_tensor *t = NULL;
  dd_err err;
  cr_assert_eq(dd_tensor_load_pb(path, &t, NULL, &err), DD_ELIMIT, "%s", err.msg);
  cr_assert(strstr(err.msg, path) && strstr(err.msg, "1048576x1048576x16"), "%s", err.msg);
  cr_assert_null(t);
}

/* A graph input declared 1x3x2^20x2^20 (12 TiB as float32), planned at its declared size:
 * refused by the planner's budget, saying how much one tensor needs, before allocating. */
Test(hostile, plan_at_a_huge_declared_input_is_refused) {
  int64_t dims[] = {1, 3, INT64_C(1) << 20, INT64_C(1) << 20};
  th_model *mb = relu_chain(dims, 4, 1);
  dd_model *m = th_model_load(mb, "huge_input.onnx");
  th_model_free(mb);
  dd_err err;
  dd_shape shape = dd_model_input_shape(m);
  cr_assert_eq(shape.d[3], INT64_C(1) << 20);
  dd_binding b = {dd_model_input(m), shape, NULL};
  int y = dd_model_find(m, "y");
  limit_address_space((size_t)256 << 20);
  dd_plan *p = NULL;
  double t0 = dd_now_seconds();
  int rc = dd_plan_new(m, &b, 1, &y, 1, DD_PLAN_GRAD, (size_t)1 << 30, &p, &err);
  cr_assert_eq(rc, DD_ELIMIT, "%s (%s)", dd_errname(rc), err.msg);
  cr_assert_null(p);
  /* 3 * 2^40 floats = 12582912 MiB */
  cr_assert(strstr(err.msg, "huge_input.onnx") && strstr(err.msg, "1x3x1048576x1048576") &&
                strstr(err.msg, "needs 12582912 MiB") && strstr(err.msg, "1024 MiB limit"),
            "%s", err.msg);
  /* Without a budget the planner's own ceiling still refuses it. */
  rc = dd_plan_new(m, &b, 1, &y, 1, DD_PLAN_GRAD, 0, &p, &err);
  cr_assert_eq(rc, DD_ELIMIT, "%s (%s)", dd_errname(rc), err.msg);
  cr_assert_lt(dd_now_seconds() - t0, 1.0);
  dd_model_free(m);
}

/* A plan whose tensors each fit but whose sum does not: the message gives the sum. */
Test(hostile, plan_over_budget_says_how_much_it_needs) {
  int64_t dims[] = {1, 3, 4096, 4096};
  th_model *mb = relu_chain(dims, 4, 1);
  dd_model *m = th_model_load(mb, "big_input.onnx");
  th_model_free(mb);
  dd_err err;
  dd_binding b = {dd_model_input(m), dd_model_input_shape(m), NULL};
  int y = dd_model_find(m, "y");
  limit_address_space((size_t)128 << 20);
  dd_plan *p = NULL;
  /* input 192 MiB + output 192 MiB, no gradients */
  cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, 0, (size_t)256 << 20, &p, &err), DD_ELIMIT, "%s",
               err.msg);
  cr_assert(strstr(err.msg, "needs 384 MiB") && strstr(err.msg, "256 MiB limit"), "%s",
            err.msg);
  /* with gradients, twice that */
  cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, DD_PLAN_GRAD, (size_t)256 << 20, &p, &err),
               DD_ELIMIT);
  cr_assert(strstr(err.msg, "needs 768 MiB"), "%s", err.msg);
  /* and a small input under the same budget plans, within it */
  b.shape = dd_shape_make(4, (int64_t[]){1, 3, 64, 64});
  cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, DD_PLAN_GRAD, (size_t)1 << 20, &p, &err), DD_OK,
               "%s", err.msg);
  cr_assert_leq(dd_plan_bytes(p), (size_t)1 << 20);
  dd_plan_free(p);
  dd_model_free(m);
}

/* Headers claiming 20000x20000 in every format stb_image reads: refused from the header,
 * before decoding (which would take 1.2 GB, and 4.8 GB as floats). */
Test(hostile, huge_image_headers_are_refused_before_decoding) {
  /* JPEG: SOI, SOF0 (8 bit, 20000x20000, 3 components), EOI */
  const unsigned char jpeg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x4E, 0x20, 0x4E,
                                0x20, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
                                0x01, 0xFF, 0xD9};
  /* BMP: BITMAPFILEHEADER + BITMAPINFOHEADER, 24 bit, no pixels */
  unsigned char bmp[54] = {'B', 'M', 0, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0,
                           0x20, 0x4E, 0, 0, 0x20, 0x4E, 0, 0, 1, 0, 24, 0};
  /* GIF: logical screen 20000x20000 */
  const unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 0x20, 0x4E, 0x20, 0x4E, 0, 0, 0};
  /* TGA: uncompressed true colour, 24 bit */
  const unsigned char tga[18] = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x4E, 0x20, 0x4E, 24, 0};
  /* PSD: 3 channels, 8 bit, RGB */
  const unsigned char psd[26] = {'8', 'B', 'P', 'S', 0, 1, 0, 0, 0, 0, 0, 0, 0, 3,
                                 0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20, 0, 8, 0, 3};
  const char hdr[] = "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n";
  const char pgm[] = "P5\n20000 20000\n255\n";
  const struct {
    const char *name;
    const void *data;
    size_t len;
  } files[] = {{"huge.jpg", jpeg, sizeof jpeg}, {"huge.bmp", bmp, sizeof bmp},
               {"huge.gif", gif, sizeof gif},   {"huge.tga", tga, sizeof tga},
               {"huge.psd", psd, sizeof psd},   {"huge.hdr", hdr, sizeof hdr - 1},
               {"huge.pgm", pgm, sizeof pgm - 1}};
  char paths[7][256];
  for (int i = 0; i < 7; i++)
    th_write_bytes(th_tmp(paths[i], sizeof paths[i], files[i].name), files[i].data, files[i].len);
  limit_address_space((size_t)256 << 20);
  for (int i = 0; i < 7; i++) {
    dd_image *im = NULL;
    dd_err err = {0};
    double t0 = dd_now_seconds();
    int rc = dd_image_load(paths[i], 0, &im, &err);
    cr_assert_eq(rc, DD_ELIMIT, "%s: %s (%s)", files[i].name, dd_errname(rc), err.msg);
    cr_assert(strstr(err.msg, paths[i]) && strstr(err.msg, "20000x20000"), "%s", err.msg);
    cr_assert_null(im);
    cr_assert_lt(dd_now_seconds() - t0, 1.0);
  }
}

/* An image bomb under the CLI's budget: 12000x12000 passes the library's 2^28-pixel ceiling,
 * but every command caps pixels at --max-memory / 64, so the header alone refuses it. */
Test(hostile, cli_refuses_an_image_over_the_memory_budget, .timeout = 60) {
  const char pgm[] = "P5\n12000 12000\n255\n";
  char in[256], out[256];
  th_write_bytes(th_tmp(in, sizeof in, "bomb.pgm"), pgm, sizeof pgm - 1);
  th_tmp(out, sizeof out, "bomb.out.png");
  double t0 = dd_now_seconds();
  th_result r = TH_RUN("--quiet", "--max-memory", "512M", in, out);
  cr_assert(r.status == 1, "status %d, signal %d: %s", r.status, r.signal, r.err);
  cr_assert(strstr(r.err, in) && strstr(r.err, "12000x12000") && strstr(r.err, "limit"), "%s",
            r.err);
  cr_assert_lt(dd_now_seconds() - t0, 10.0);
  cr_assert_neq(access(out, F_OK), 0, "an output was written");
  th_result_free(&r);
}

/* ---- malformed files ------------------------------------------------------------------ */

/* Every prefix of a valid model: protobuf decoding fails (DD_EFORMAT, naming the file) or,
 * cut exactly between fields, what remains is a smaller valid model; nothing crashes, also
 * when the remains are planned and run as the fuzz target does. */
Test(hostile, every_truncation_of_a_model, .timeout = 60) {
  int64_t dims[] = {1, 3, 8, 8};
  float w[6] = {1, 2, 3, 4, 5, 6};
  int64_t wd[] = {2, 3};
  th_model *mb = relu_chain(dims, 4, 3);
  th_model_init_f32(mb, "w", 2, wd, w, 6);
  size_t len;
  uint8_t *buf = th_model_pack(mb, &len);
  th_model_free(mb);
  int eformat = 0;
  for (size_t cut = 0; cut < len; cut++) {
    dd_model *m = NULL;
    dd_err err = {0};
    int rc = dd_model_parse(buf, cut, "cut.onnx", &m, &err);
    if (rc == DD_OK) {
      dd_model_free(m);
    } else {
      cr_assert(rc == DD_EFORMAT || rc == DD_EUNSUPPORTED, "cut at %zu: %s (%s)", cut,
                dd_errname(rc), err.msg);
      cr_assert(strncmp(err.msg, "cut.onnx: ", 10) == 0, "cut at %zu: %s", cut, err.msg);
      eformat += rc == DD_EFORMAT;
    }
    dd_fuzz_onnx(buf, cut);
  }
  /* all but the cuts that fall between top-level fields */
  cr_assert_geq(eformat, (int)len - 4, "%d of %zu cuts were DD_EFORMAT", eformat, len);
  free(buf);
}

Test(hostile, every_truncation_of_a_tensor_file) {
  float v[12];
  for (int i = 0; i < 12; i++) v[i] = (float)i;
  dd_tensor t = dd_tensor_wrap(DD_F32, &(dd_shape){2, {3, 4}}, v);
  char path[256], cut_path[256];
  dd_err err;
  cr_assert_eq(dd_tensor_save_pb(th_tmp(path, sizeof path, "t.pb"), &t, "t", &err), DD_OK);
  size_t len;
  uint8_t *buf = (uint8_t *)th_slurp(path, &len);
  cr_assert_not_null(buf);
  th_tmp(cut_path, sizeof cut_path, "cut.pb");
  for (size_t cut = 0; cut < len; cut++) {
    th_write_bytes(cut_path, buf, cut);
    dd_tensor *out = NULL;
    int rc = dd_tensor_load_pb(cut_path, &out, NULL, &err);
    if (rc == DD_OK) {
      dd_tensor_free(out);
      continue;
    }
    cr_assert(rc == DD_EFORMAT || rc == DD_EUNSUPPORTED, "cut at %zu: %s", cut, err.msg);
    cr_assert(strstr(err.msg, cut_path), "%s", err.msg);
  }
  free(buf);
}

Test(hostile, every_truncation_of_an_image, .timeout = 60) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(9, 7, &im, &err), DD_OK);
  for (int i = 0; i < 9 * 7 * 3; i++) im->rgb[i] = (float)(i * 37 % 256);
  const char *exts[] = {"png", "jpg", "bmp", "tga"};
  for (int e = 0; e < 4; e++) {
    char name[32], path[256], cut_path[256];
    snprintf(name, sizeof name, "img.%s", exts[e]);
    cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, name), im, &err), DD_OK, "%s",
                 err.msg);
    size_t len;
    uint8_t *buf = (uint8_t *)th_slurp(path, &len);
  cr_assert_not_null(buf);
    snprintf(name, sizeof name, "cut.%s", exts[e]);
    th_tmp(cut_path, sizeof cut_path, name);
    for (size_t cut = 0; cut < len; cut++) {
      th_write_bytes(cut_path, buf, cut);
      dd_image *out = NULL;
      int rc = dd_image_load(cut_path, 0, &out, &err);
      /* stb fills what is missing of a cut JPEG or BMP; what fails names the file */
      if (rc == DD_OK) {
        cr_assert(out->w == 9 && out->h == 7, "%s cut at %zu: %dx%d", exts[e], cut, out->w,
                  out->h);
        dd_image_free(out);
        continue;
      }
      cr_assert(rc == DD_EFORMAT || rc == DD_ELIMIT, "%s cut at %zu: %s", exts[e], cut, err.msg);
      cr_assert(strstr(err.msg, cut_path), "%s", err.msg);
    }
    free(buf);
  }
  dd_image_free(im);
}

/* Random bytes, seeded: never a crash; every refusal names the source. */
Test(hostile, random_bytes_everywhere, .timeout = 60) {
  uint64_t state = 20240601;
  uint8_t buf[2048];
  char path[256];
  th_tmp(path, sizeof path, "random.bin");
  int model_eformat = 0, n = 200;
  for (int k = 0; k < n; k++) {
    size_t len = 1 + dd_rng_next(&state) % sizeof buf;
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)dd_rng_next(&state);
    dd_err err;
    dd_model *m = NULL;
    int rc = dd_model_parse(buf, len, "random.onnx", &m, &err);
    cr_assert_neq(rc, DD_OK);
    cr_assert(strncmp(err.msg, "random.onnx: ", 13) == 0, "%s", err.msg);
    model_eformat += rc == DD_EFORMAT;
    dd_tensor *t = NULL;
    rc = dd_tensor_parse_pb(buf, len, "random.pb", &t, NULL, &err);
    if (rc == DD_OK) dd_tensor_free(t);
    else cr_assert(strncmp(err.msg, "random.pb: ", 11) == 0, "%s", err.msg);
    th_write_bytes(path, buf, len);
    dd_image *im = NULL;
    rc = dd_image_load(path, 0, &im, &err);
    if (rc == DD_OK) dd_image_free(im); /* a few random headers pass as TGA */
    else cr_assert(strstr(err.msg, path), "%s", err.msg);
    dd_fuzz_image(buf, len);
  }
  cr_assert_eq(model_eformat, n, "random bytes are a malformed model, not another error");
}

/* A long chain is loaded, sorted and planned without recursion: no stack overflow, no
 * quadratic time. */
Test(hostile, a_chain_of_50000_nodes, .timeout = 60) {
  int64_t dims[] = {1, 1, 2, 2};
  th_model *mb = relu_chain(dims, 4, 50000);
  size_t len;
  uint8_t *buf = th_model_pack(mb, &len);
  th_model_free(mb);
  dd_model *m = NULL;
  dd_err err;
  double t0 = dd_now_seconds();
  cr_assert_eq(dd_model_parse(buf, len, "chain.onnx", &m, &err), DD_OK, "%s", err.msg);
  free(buf);
  cr_assert_eq(dd_model_num_nodes(m), 50000);
  dd_binding b = {dd_model_input(m), dd_model_input_shape(m), NULL};
  int y = dd_model_find(m, "y");
  dd_plan *p = NULL;
  cr_assert_eq(dd_plan_new(m, &b, 1, &y, 1, DD_PLAN_GRAD, 0, &p, &err), DD_OK, "%s", err.msg);
  float x[4] = {-1, 2, -3, 4};
  memcpy(dd_plan_tensor(p, b.value)->data, x, sizeof x);
  dd_plan_forward(p);
  dd_plan_zero_grad(p);
  for (int i = 0; i < 4; i++) dd_f32(dd_plan_grad(p, y))[i] = 1.f;
  dd_plan_backward(p);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(dd_f32(dd_plan_tensor(p, y))[i], x[i] > 0 ? x[i] : 0.f);
    cr_assert_eq(dd_f32(dd_plan_grad(p, b.value))[i], x[i] > 0 ? 1.f : 0.f);
  }
  cr_log_info("50000-node chain: load + plan + forward + backward in %.2f s", dd_now_seconds() - t0);
  dd_plan_free(p);
  dd_model_free(m);
}
