#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>
#include <stb_image_write.h>

#include "dream/image.h"
#include "helper_ops.h"

static char tmpdir[64];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/dream_test_image.XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  cr_assert_eq(system(cmd), 0);
}

static const char *tmp_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", tmpdir, name);
  return buf;
}

static void write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

TestSuite(image, .init = make_tmpdir, .fini = remove_tmpdir);

Test(image, loads_the_shared_photos_at_their_sizes) {
  static const struct {
    const char *name;
    int w, h;
  } photos[] = {{"dog.jpg", 768, 576},    {"eagle.jpg", 773, 512}, {"giraffe.jpg", 500, 500},
                {"horses.jpg", 773, 512}, {"kite.jpg", 1352, 900}, {"person.jpg", 640, 424},
                {"scream.jpg", 352, 448}};
  for (size_t i = 0; i < sizeof photos / sizeof photos[0]; i++) {
    char rel[64], path[512];
    snprintf(rel, sizeof rel, "images/%s", photos[i].name);
    dd_image *im = NULL;
    dd_err err;
    cr_assert_eq(dd_image_load(th_shared(path, sizeof path, rel), 0, &im, &err), DD_OK, "%s",
                 err.msg);
    cr_assert_eq(im->w, photos[i].w, "%s", photos[i].name);
    cr_assert_eq(im->h, photos[i].h, "%s", photos[i].name);
    /* A photo spans most of the range in every channel and is not constant. */
    float lo[3] = {255, 255, 255}, hi[3] = {0, 0, 0};
    for (size_t p = 0; p < (size_t)im->w * im->h; p++)
      for (int c = 0; c < 3; c++) {
        float v = im->rgb[p * 3 + c];
        cr_assert(v >= 0 && v <= 255 && v == floorf(v));
        lo[c] = fminf(lo[c], v);
        hi[c] = fmaxf(hi[c], v);
      }
    for (int c = 0; c < 3; c++) cr_assert_gt(hi[c] - lo[c], 100, "%s channel %d", rel, c);
    dd_image_free(im);
  }
}

Test(image, max_pixels_is_checked) {
  char path[512];
  dd_image *im = NULL;
  dd_err err;
  int rc = dd_image_load(th_shared(path, sizeof path, "images/dog.jpg"), 768 * 576 - 1, &im, &err);
  cr_assert_eq(rc, DD_ELIMIT);
  cr_assert_null(im);
  cr_assert(strstr(err.msg, "768x576"), "%s", err.msg);
  cr_assert_eq(dd_image_load(path, 768 * 576, &im, &err), DD_OK, "%s", err.msg);
  dd_image_free(im);
}

static dd_image *random_image(int w, int h, uint64_t seed) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(w, h, &im, &err), DD_OK);
  uint64_t s = seed;
  for (size_t i = 0; i < (size_t)w * h * 3; i++) im->rgb[i] = (float)(th_rand_next(&s) % 256);
  return im;
}

Test(image, png_and_bmp_round_trip_exactly) {
  const char *names[] = {"a.png", "b.PNG", "c.bmp", "d.tga"};
  dd_image *im = random_image(37, 23, 5);
  for (int k = 0; k < 4; k++) {
    char path[128];
    dd_err err;
    cr_assert_eq(dd_image_save(tmp_path(path, sizeof path, names[k]), im, &err), DD_OK, "%s",
                 err.msg);
    dd_image *back;
    cr_assert_eq(dd_image_load(path, 0, &back, &err), DD_OK, "%s", err.msg);
    cr_assert_eq(back->w, 37);
    cr_assert_eq(back->h, 23);
    cr_assert_eq(memcmp(back->rgb, im->rgb, 37 * 23 * 3 * sizeof(float)), 0, "%s", names[k]);
    dd_image_free(back);
  }
  dd_image_free(im);
}

Test(image, save_rounds_and_clamps) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(4, 1, &im, &err), DD_OK);
  float v[12] = {-20, 0.4f, 0.6f, 254.5f, 300, NAN, 1e9f, -1e9f, 127.49f, 10, 20, 30};
  memcpy(im->rgb, v, sizeof v);
  char path[128];
  cr_assert_eq(dd_image_save(tmp_path(path, sizeof path, "clamp.png"), im, &err), DD_OK);
  dd_image *back;
  cr_assert_eq(dd_image_load(path, 0, &back, &err), DD_OK);
  float want[12] = {0, 0, 1, 254, 255, 0, 255, 0, 127, 10, 20, 30};
  for (int i = 0; i < 12; i++) cr_assert_eq(back->rgb[i], want[i], "%d: %g", i, back->rgb[i]);
  dd_image_free(back);
  dd_image_free(im);
}

Test(image, jpeg_round_trip_is_close) {
  char path[512], out[128];
  dd_image *im, *back;
  dd_err err;
  cr_assert_eq(dd_image_load(th_shared(path, sizeof path, "images/giraffe.jpg"), 0, &im, &err), 0);
  cr_assert_eq(dd_image_save(tmp_path(out, sizeof out, "g.jpeg"), im, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(dd_image_load(out, 0, &back, &err), DD_OK, "%s", err.msg);
  double sum = 0;
  size_t n = (size_t)im->w * im->h * 3;
  for (size_t i = 0; i < n; i++) sum += fabs(back->rgb[i] - im->rgb[i]);
  cr_assert_lt(sum / n, 3.0, "mean abs error %g at quality 95", sum / n);
  dd_image_free(im);
  dd_image_free(back);
}

Test(image, save_failures_leave_no_file) {
  dd_image *im = random_image(8, 8, 1);
  dd_err err;
  char path[128];
  cr_assert_eq(dd_image_save(tmp_path(path, sizeof path, "x.gif"), im, &err), DD_EARG);
  cr_assert(strstr(err.msg, "unknown image format"), "%s", err.msg);
  cr_assert_eq(dd_image_save(tmp_path(path, sizeof path, "noext"), im, &err), DD_EARG);
  cr_assert_eq(dd_image_save(tmp_path(path, sizeof path, "missing/dir/x.png"), im, &err), DD_EIO);
  cr_assert(strstr(err.msg, "missing/dir/x.png"), "%s", err.msg);
  /* The directory holds nothing: no temporary file was left behind. */
  char cmd[160];
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", tmpdir);
  cr_assert_eq(system(cmd), 0);
  dd_image_free(im);
}

Test(image, grey_and_alpha) {
  char path[128];
  unsigned char grey[6] = {0, 50, 100, 150, 200, 255};
  cr_assert(stbi_write_png(tmp_path(path, sizeof path, "grey.png"), 3, 2, 1, grey, 3));
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(im->w, 3);
  for (int i = 0; i < 6; i++)
    for (int c = 0; c < 3; c++) cr_assert_eq(im->rgb[i * 3 + c], grey[i]);
  dd_image_free(im);

  /* Opaque, fully transparent and half transparent red: composited on white. */
  unsigned char rgba[12] = {255, 0, 0, 255, 255, 0, 0, 0, 255, 0, 0, 128};
  cr_assert(stbi_write_png(tmp_path(path, sizeof path, "rgba.png"), 3, 1, 4, rgba, 12));
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
  float want[9] = {255, 0, 0, 255, 255, 255, 255, 127, 127};
  for (int i = 0; i < 9; i++) cr_assert_float_eq(im->rgb[i], want[i], 0.6f, "%d: %g", i, im->rgb[i]);
  dd_image_free(im);

  /* Grey + alpha. */
  unsigned char ga[4] = {100, 255, 100, 0};
  cr_assert(stbi_write_png(tmp_path(path, sizeof path, "ga.png"), 2, 1, 2, ga, 4));
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(im->rgb[0], 100);
  cr_assert_eq(im->rgb[5], 255);
  dd_image_free(im);
}

Test(image, refuses_files_that_are_not_images) {
  char path[128];
  dd_image *im = NULL;
  dd_err err;
  write_bytes(tmp_path(path, sizeof path, "text.jpg"), "hello, world\n", 13);
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "text.jpg: not an image (stb_image: "), "%s", err.msg);

  write_bytes(tmp_path(path, sizeof path, "empty.png"), "", 0);
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "empty.png: not an image"), "%s", err.msg);

  /* A valid JPEG cut in half: the header reads, the data does not. */
  char src[512];
  void *buf = NULL;
  FILE *f = fopen(th_shared(src, sizeof src, "images/dog.jpg"), "rb");
  cr_assert_not_null(f);
  buf = malloc(4096);
  size_t got = fread(buf, 1, 4096, f);
  fclose(f);
  write_bytes(tmp_path(path, sizeof path, "cut.jpg"), buf, got);
  free(buf);
  int rc = dd_image_load(path, 0, &im, &err);
  /* stb_image decodes what it can of a truncated JPEG; either way nothing crashes and an
   * error, when there is one, names the file. */
  if (rc) cr_assert(strstr(err.msg, "cut.jpg"), "%s", err.msg);
  else dd_image_free(im);

  cr_assert_eq(dd_image_load(tmp_path(path, sizeof path, "absent.png"), 0, &im, &err), DD_EIO);
  cr_assert(strstr(err.msg, "absent.png: cannot open"), "%s", err.msg);
  cr_assert_eq(dd_image_load(tmpdir, 0, &im, &err), DD_EIO);
  cr_assert(strstr(err.msg, "directory"), "%s", err.msg);
  cr_assert_null(im);
}

/* Caps this process's address space a little above what it uses now. */
static void limit_address_space(size_t extra) {
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  unsigned long pages = 0;
  cr_assert_eq(fscanf(f, "%lu", &pages), 1);
  fclose(f);
  struct rlimit rl = {pages * (unsigned long)sysconf(_SC_PAGESIZE) + extra, RLIM_INFINITY};
  rl.rlim_max = rl.rlim_cur;
  cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
}

Test(image, refuses_a_huge_header_without_allocating) {
  /* A 20000x20000 image would take 1.2 GB to decode and 4.8 GB as floats. */
  char ppm_path[128], png_path[128];
  const char ppm[] = "P6\n20000 20000\n255\n\x01\x02\x03";
  write_bytes(tmp_path(ppm_path, sizeof ppm_path, "huge.ppm"), ppm, sizeof ppm - 1);
  /* PNG signature + IHDR chunk (CRC of "IHDR" + data) for 20000x20000 grey 8-bit, no data.
   * (Grey, because stb_image itself refuses RGB PNGs over 1 GiB before we see them.) */
  unsigned char png[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                           'I', 'H', 'D', 'R', 0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 0, 0, 0, 0};
  uint32_t crc = 0xffffffffu;
  for (int i = 12; i < 29; i++) {
    crc ^= png[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1u));
  }
  crc ^= 0xffffffffu;
  png[29] = crc >> 24;
  png[30] = crc >> 16;
  png[31] = crc >> 8;
  png[32] = crc;
  write_bytes(tmp_path(png_path, sizeof png_path, "huge.png"), png, sizeof png);

  limit_address_space((size_t)256 << 20);
  const char *paths[] = {ppm_path, png_path};
  for (int i = 0; i < 2; i++) {
    dd_image *im = NULL;
    dd_err err;
    cr_assert_eq(dd_image_load(paths[i], 0, &im, &err), DD_ELIMIT, "%s: %s", paths[i], err.msg);
    cr_assert(strstr(err.msg, "20000x20000"), "%s", err.msg);
    cr_assert_null(im);
  }
}

Test(image, new_refuses_bad_sizes) {
  dd_image *im = NULL;
  dd_err err;
  cr_assert_eq(dd_image_new(0, 5, &im, &err), DD_ELIMIT);
  cr_assert_eq(dd_image_new(5, -1, &im, &err), DD_ELIMIT);
  cr_assert_eq(dd_image_new(1 << 15, 1 << 14, &im, &err), DD_ELIMIT);
  cr_assert_null(im);
  dd_image_free(NULL);
}

Test(image, resize_sizes_constant_and_linear) {
  char path[512];
  dd_image *im, *r;
  dd_err err;
  cr_assert_eq(dd_image_load(th_shared(path, sizeof path, "images/dog.jpg"), 0, &im, &err), 0);
  cr_assert_eq(dd_image_resize(im, 224, 224, &r, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(r->w, 224);
  cr_assert_eq(r->h, 224);
  /* Downsampling keeps the mean brightness. */
  double m0 = 0, m1 = 0;
  for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) m0 += im->rgb[i];
  for (size_t i = 0; i < (size_t)r->w * r->h * 3; i++) m1 += r->rgb[i];
  m0 /= (double)im->w * im->h * 3;
  m1 /= (double)r->w * r->h * 3;
  cr_assert_float_eq(m1, m0, 1.0, "mean %g vs %g", m1, m0);
  dd_image_free(r);
  dd_image_free(im);

  /* A constant stays constant; a horizontal ramp stays the same ramp in pixel-centre
   * coordinates (both cubic filters reproduce linear functions). */
  cr_assert_eq(dd_image_new(40, 30, &im, &err), DD_OK);
  for (int y = 0; y < 30; y++)
    for (int x = 0; x < 40; x++) {
      im->rgb[(y * 40 + x) * 3 + 0] = 77;
      im->rgb[(y * 40 + x) * 3 + 1] = 3.f * x;
      im->rgb[(y * 40 + x) * 3 + 2] = 2.f * y;
    }
  const int sizes[][2] = {{80, 60}, {20, 15}, {40, 30}, {97, 13}};
  for (int k = 0; k < 4; k++) {
    int w = sizes[k][0], h = sizes[k][1];
    cr_assert_eq(dd_image_resize(im, w, h, &r, &err), DD_OK);
    float sx = 40.f / w, sy = 30.f / h;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        float u = (x + 0.5f) * sx - 0.5f, v = (y + 0.5f) * sy - 0.5f;
        cr_assert_float_eq(r->rgb[(y * w + x) * 3], 77, 1e-3);
        /* away from the clamped edges */
        if (u > 3 && u < 36) cr_assert_float_eq(r->rgb[(y * w + x) * 3 + 1], 3 * u, 1e-2, "%dx%d", w, h);
        if (v > 3 && v < 26) cr_assert_float_eq(r->rgb[(y * w + x) * 3 + 2], 2 * v, 1e-2, "%dx%d", w, h);
      }
    dd_image_free(r);
  }
  dd_image_free(im);
}

Test(image, to_input_follows_the_formula_and_round_trips) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(2, 1, &im, &err), DD_OK);
  float px[6] = {10, 20, 30, 255, 0, 128};
  memcpy(im->rgb, px, sizeof px);
  /* Caffe GoogLeNet: BGR, 0..255, mean (104,117,123) in BGR order. */
  dd_preproc caffe = {1, 255.f, {104, 117, 123}, {1, 1, 1}};
  float x[6];
  dd_image_to_input(im, &caffe, x);
  float want_caffe[6] = {30 - 104, 128 - 104, 20 - 117, 0 - 117, 10 - 123, 255 - 123};
  for (int i = 0; i < 6; i++) cr_assert_float_eq(x[i], want_caffe[i], 1e-4, "%d", i);
  /* torchvision: RGB, 0..1, ImageNet mean/std. */
  dd_preproc tv = {0, 1.f, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  dd_image_to_input(im, &tv, x);
  float want_tv[6] = {(10 / 255.f - 0.485f) / 0.229f, (255 / 255.f - 0.485f) / 0.229f,
                      (20 / 255.f - 0.456f) / 0.224f, (0 / 255.f - 0.456f) / 0.224f,
                      (30 / 255.f - 0.406f) / 0.225f, (128 / 255.f - 0.406f) / 0.225f};
  for (int i = 0; i < 6; i++) cr_assert_float_eq(x[i], want_tv[i], 1e-5, "%d", i);
  const dd_preproc *pps[] = {&caffe, &tv};
  for (int k = 0; k < 2; k++) {
    dd_image_to_input(im, pps[k], x);
    dd_image *back;
    cr_assert_eq(dd_image_new(2, 1, &back, &err), DD_OK);
    dd_input_to_image(x, pps[k], back);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(back->rgb[i], px[i], 1e-3, "%d", i);
    dd_image_free(back);
  }
  dd_image_free(im);
}

/* ---- formats --------------------------------------------------------------------------- */

typedef struct bytes {
  unsigned char *p;
  size_t len, cap;
} bytes;

static void bytes_put(bytes *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    cr_assert_not_null(b->p);
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void bytes_write(void *ctx, void *data, int size) { bytes_put(ctx, data, (size_t)size); }

static uint8_t *read_whole(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  cr_assert_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  cr_assert_geq(n, 0);
  rewind(f);
  uint8_t *buf = malloc((size_t)n + 1);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static dd_image *load_bytes(const bytes *b, const char *name, int *rc, dd_err *err) {
  char path[128];
  write_bytes(tmp_path(path, sizeof path, name), b->p, b->len);
  dd_image *im = NULL;
  *rc = dd_image_load(path, 0, &im, err);
  return im;
}

Test(image, jpeg_quality_is_an_option) {
  char src[512], lo[128], hi[128], def[128];
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(th_shared(src, sizeof src, "images/giraffe.jpg"), 0, &im, &err), 0);
  dd_image_save_opts o = dd_image_save_opts_init();
  cr_assert_eq(o.quality, 95);
  o.quality = 20;
  cr_assert_eq(dd_image_save_with(tmp_path(lo, sizeof lo, "q20.jpg"), im, &o, &err), DD_OK, "%s",
               err.msg);
  o.quality = 95;
  cr_assert_eq(dd_image_save_with(tmp_path(hi, sizeof hi, "q95.jpg"), im, &o, &err), DD_OK);
  o.quality = 0; /* the default */
  cr_assert_eq(dd_image_save_with(tmp_path(def, sizeof def, "q0.jpg"), im, &o, &err), DD_OK);
  size_t nlo, nhi, ndef;
  uint8_t *blo = read_whole(lo, &nlo), *bhi = read_whole(hi, &nhi), *bdef = read_whole(def, &ndef);
  cr_assert_lt(nlo, nhi, "quality 20: %zu bytes, 95: %zu", nlo, nhi);
  cr_assert(ndef == nhi && !memcmp(bdef, bhi, nhi), "quality 0 is not the default");
  free(blo);
  free(bhi);
  free(bdef);
  double e[2];
  const char *paths[2] = {lo, hi};
  for (int k = 0; k < 2; k++) {
    dd_image *back;
    cr_assert_eq(dd_image_load(paths[k], 0, &back, &err), DD_OK, "%s", err.msg);
    cr_assert(back->w == im->w && back->h == im->h);
    double sum = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) sum += fabs(back->rgb[i] - im->rgb[i]);
    e[k] = sum / ((double)im->w * im->h * 3);
    dd_image_free(back);
  }
  cr_assert_gt(e[0], e[1], "mean error %g at 20, %g at 95", e[0], e[1]);

  const int bad[] = {-1, 101, 1000};
  for (int k = 0; k < 3; k++) {
    char path[128];
    o.quality = bad[k];
    cr_assert_eq(dd_image_save_with(tmp_path(path, sizeof path, "bad.jpg"), im, &o, &err), DD_EARG);
    cr_assert(strstr(err.msg, "bad.jpg") && strstr(err.msg, "quality"), "%s", err.msg);
    cr_assert_neq(access(path, F_OK), 0, "a file was left");
  }
  /* NULL options are the defaults; quality 1 and 100 are in range. */
  cr_assert_eq(dd_image_save_with(tmp_path(def, sizeof def, "null.jpg"), im, NULL, &err), DD_OK);
  o.quality = 1;
  cr_assert_eq(dd_image_save_with(tmp_path(def, sizeof def, "q1.jpg"), im, &o, &err), DD_OK);
  o.quality = 100;
  cr_assert_eq(dd_image_save_with(tmp_path(def, sizeof def, "q100.jpg"), im, &o, &err), DD_OK);
  dd_image_free(im);
}

Test(image, unsupported_formats_are_named) {
  static const struct {
    const char *name, *format;
    const char *data;
    size_t len;
  } files[] = {
      {"photo.webp", "WebP", "RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\x10\x07\x10\x11\x11\x88\x88\xfe\x07\0", 38},
      {"scan.tif", "TIFF", "II*\0\x08\0\0\0\0\0\0\0\0\0", 14},
      {"scan_mm.tiff", "TIFF", "MM\0*\0\0\0\x08\0\0\0\0\0\0", 14},
      {"big.tif", "TIFF", "II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0", 16},
      {"phone.heic", "HEIC/HEIF", "\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", 24},
      {"still.heif", "HEIC/HEIF", "\0\0\0\x10" "ftypmif1\0\0\0\0", 16},
      {"photo.avif", "AVIF", "\0\0\0\x1c" "ftypavif\0\0\0\0avifmif1miaf", 28},
      {"brands.avif", "AVIF", "\0\0\0\x18" "ftypmif1\0\0\0\0mif1avif", 24},
      {"photo.jxl", "JPEG XL", "\xff\x0a\xfa\x7f\x01\x90\x08", 7},
      {"box.jxl", "JPEG XL", "\0\0\0\x0cJXL \r\n\x87\n\0\0\0\x14" "ftypjxl ", 20},
      {"photo.jp2", "JPEG 2000", "\0\0\0\x0cjP  \r\n\x87\n\0\0\0\x14" "ftypjp2 ", 20},
      {"photo.j2k", "JPEG 2000", "\xff\x4f\xff\x51\0\x29\0\0", 8},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[128], want[256];
    write_bytes(tmp_path(path, sizeof path, files[i].name), files[i].data, files[i].len);
    dd_image *im = NULL;
    dd_err err;
    cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_EFORMAT, "%s: %s", files[i].name, err.msg);
    cr_assert_null(im);
    snprintf(want, sizeof want, "%s: %s images are not supported; supported formats: %s", path,
             files[i].format, DD_IMAGE_FORMATS);
    cr_assert_str_eq(err.msg, want);
  }
  cr_assert_str_eq(dd_image_formats, DD_IMAGE_FORMATS);

  /* Anything else unknown: stb's reason, and the list. */
  char path[128];
  dd_image *im = NULL;
  dd_err err;
  write_bytes(tmp_path(path, sizeof path, "movie.mp4"), "\0\0\0\x14" "ftypisom\0\0\0\0isom", 20);
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "movie.mp4: not an image (stb_image: ") &&
            strstr(err.msg, "); supported formats: " DD_IMAGE_FORMATS), "%s", err.msg);
}

/* The list is honest: a minimal file of each format in it loads. */
Test(image, every_listed_format_loads) {
  bytes files[9] = {{0}};
  const char *names[9] = {"a.jpg", "a.png", "a.bmp", "a.gif", "a.tga", "a.psd", "a.ppm", "a.hdr", "a.pic"};
  unsigned char px[3] = {200, 100, 50};
  cr_assert(stbi_write_jpg_to_func(bytes_write, &files[0], 1, 1, 3, px, 95));
  cr_assert(stbi_write_png_to_func(bytes_write, &files[1], 1, 1, 3, px, 3));
  cr_assert(stbi_write_bmp_to_func(bytes_write, &files[2], 1, 1, 3, px));
  /* 1x1 GIF: a 2-colour palette (white, black), one LZW-coded white pixel */
  bytes_put(&files[3], "GIF89a\1\0\1\0\x80\0\0\xff\xff\xff\0\0\0,\0\0\0\0\1\0\1\0\0\2\2D\1\0;", 35);
  cr_assert(stbi_write_tga_to_func(bytes_write, &files[4], 1, 1, 3, px));
  /* PSD: 3 channels of 1x1, 8 bits, RGB; no colour data, resources or layers; raw planes */
  bytes_put(&files[5], "8BPS\0\1\0\0\0\0\0\0\0\3\0\0\0\1\0\0\0\1\0\x08\0\3", 26);
  bytes_put(&files[5], "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xc8\x64\x32", 17);
  bytes_put(&files[6], "P6\n1 1\n255\n\xc8\x64\x32", 14);
  bytes_put(&files[7], "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x80", 50);
  /* Softimage PIC: magic, "PICT" at 88, 1x1, one uncompressed RGB channel packet */
  unsigned char pic[104 + 4 + 3] = {0x53, 0x80, 0xF6, 0x34};
  memcpy(pic + 88, "PICT", 4);
  pic[93] = 1, pic[95] = 1;
  pic[105] = 8, pic[107] = 0xE0;
  pic[108] = 200, pic[109] = 100, pic[110] = 50;
  bytes_put(&files[8], pic, sizeof pic);
  for (int i = 0; i < 9; i++) {
    int rc;
    dd_err err;
    dd_image *im = load_bytes(&files[i], names[i], &rc, &err);
    cr_assert_eq(rc, DD_OK, "%s: %s", names[i], err.msg);
    cr_assert(im->w == 1 && im->h == 1, "%s", names[i]);
    dd_image_free(im);
    free(files[i].p);
  }
}
