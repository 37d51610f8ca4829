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
#include "helper_files.h"
#include "helper_ops.h"

/* Exported by libstb.so; stb_image_write.h declares it only in its implementation part. */
unsigned char *stbi_zlib_compress(unsigned char *data, int data_len, int *out_len, int quality);

TestSuite(image, .init = th_tmpdir_setup, .fini = th_tmpdir_teardown);

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
  for (size_t i = 0; i < (size_t)w * h * 3; i++) im->rgb[i] = (float)(dd_rng_next(&s) % 256);
  return im;
}

Test(image, png_and_bmp_round_trip_exactly) {
  const char *names[] = {"a.png", "b.PNG", "c.bmp", "d.tga"};
  dd_image *im = random_image(37, 23, 5);
  for (int k = 0; k < 4; k++) {
    char path[128];
    dd_err err;
    cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, names[k]), im, &err), DD_OK, "%s",
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
  cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, "clamp.png"), im, &err), DD_OK);
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
  cr_assert_eq(dd_image_save(th_tmp(out, sizeof out, "g.jpeg"), im, &err), DD_OK, "%s", err.msg);
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
  cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, "x.gif"), im, &err), DD_EARG);
  cr_assert(strstr(err.msg, "unknown image format"), "%s", err.msg);
  cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, "noext"), im, &err), DD_EARG);
  cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, "missing/dir/x.png"), im, &err), DD_EIO);
  cr_assert(strstr(err.msg, "missing/dir/x.png"), "%s", err.msg);
  /* The directory holds nothing: no temporary file was left behind. */
  char cmd[160];
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", th_tmpdir);
  cr_assert_eq(system(cmd), 0);
  dd_image_free(im);
}

Test(image, grey_and_alpha) {
  char path[128];
  unsigned char grey[6] = {0, 50, 100, 150, 200, 255};
  cr_assert(stbi_write_png(th_tmp(path, sizeof path, "grey.png"), 3, 2, 1, grey, 3));
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(im->w, 3);
  for (int i = 0; i < 6; i++)
    for (int c = 0; c < 3; c++) cr_assert_eq(im->rgb[i * 3 + c], grey[i]);
  dd_image_free(im);

  /* Opaque, fully transparent and half transparent red: composited on white. */
  unsigned char rgba[12] = {255, 0, 0, 255, 255, 0, 0, 0, 255, 0, 0, 128};
  cr_assert(stbi_write_png(th_tmp(path, sizeof path, "rgba.png"), 3, 1, 4, rgba, 12));
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
  float want[9] = {255, 0, 0, 255, 255, 255, 255, 127, 127};
  for (int i = 0; i < 9; i++) cr_assert_float_eq(im->rgb[i], want[i], 0.6f, "%d: %g", i, im->rgb[i]);
  dd_image_free(im);

  /* Grey + alpha. */
  unsigned char ga[4] = {100, 255, 100, 0};
  cr_assert(stbi_write_png(th_tmp(path, sizeof path, "ga.png"), 2, 1, 2, ga, 4));
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(im->rgb[0], 100);
  cr_assert_eq(im->rgb[5], 255);
  dd_image_free(im);
}

Test(image, refuses_files_that_are_not_images) {
  char path[128];
  dd_image *im = NULL;
  dd_err err;
  th_write_bytes(th_tmp(path, sizeof path, "text.jpg"), "hello, world\n", 13);
  cr_assert_eq(dd_image_load(path, 0, &im, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, "text.jpg: not an image (stb_image: "), "%s", err.msg);

  th_write_bytes(th_tmp(path, sizeof path, "empty.png"), "", 0);
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
  th_write_bytes(th_tmp(path, sizeof path, "cut.jpg"), buf, got);
  free(buf);
  int rc = dd_image_load(path, 0, &im, &err);
  /* stb_image decodes what it can of a truncated JPEG; either way nothing crashes and an
   * error, when there is one, names the file. */
  if (rc) cr_assert(strstr(err.msg, "cut.jpg"), "%s", err.msg);
  else dd_image_free(im);

  cr_assert_eq(dd_image_load(th_tmp(path, sizeof path, "absent.png"), 0, &im, &err), DD_EIO);
  cr_assert(strstr(err.msg, "absent.png: cannot open"), "%s", err.msg);
  cr_assert_eq(dd_image_load(th_tmpdir, 0, &im, &err), DD_EIO);
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
  th_write_bytes(th_tmp(ppm_path, sizeof ppm_path, "huge.ppm"), ppm, sizeof ppm - 1);
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
  th_write_bytes(th_tmp(png_path, sizeof png_path, "huge.png"), png, sizeof png);

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

/* ---- EXIF orientation, metadata, save options, unsupported formats ---------------------- */

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

/* A string literal's bytes, without the NUL the compiler adds. */
#define BYTES_PUT_LIT(b, lit) bytes_put(b, lit, sizeof lit - 1)

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

static uint32_t crc32_of(const unsigned char *p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1u));
  }
  return crc ^ 0xffffffffu;
}

/* The test pattern: 8x8 cells of flat colour, red by column, green by row, so that every
 * mirror and turn of it differs; flat cells survive JPEG nearly unchanged. */
#define PAT_W 40
#define PAT_H 24
static void pattern_rgb(int x, int y, float rgb[3]) {
  rgb[0] = 20.f + 50.f * (float)(x / 8);
  rgb[1] = 40.f + 80.f * (float)(y / 8);
  rgb[2] = 128.f;
}

/* The pattern as a JPEG (quality 95) or PNG in memory, as stb_image_write makes it. */
static bytes pattern_file(int png) {
  unsigned char px[PAT_W * PAT_H * 3];
  for (int y = 0; y < PAT_H; y++)
    for (int x = 0; x < PAT_W; x++) {
      float c[3];
      pattern_rgb(x, y, c);
      for (int k = 0; k < 3; k++) px[(y * PAT_W + x) * 3 + k] = (unsigned char)c[k];
    }
  bytes b = {0};
  if (png) cr_assert(stbi_write_png_to_func(bytes_write, &b, PAT_W, PAT_H, 3, px, PAT_W * 3));
  else cr_assert(stbi_write_jpg_to_func(bytes_write, &b, PAT_W, PAT_H, 3, px, 95));
  return b;
}

static void put16(bytes *b, int be, unsigned v) {
  unsigned char d[2] = {(unsigned char)(be ? v >> 8 : v), (unsigned char)(be ? v : v >> 8)};
  bytes_put(b, d, 2);
}

static void put32(bytes *b, int be, uint32_t v) {
  put16(b, be, be ? v >> 16 : v & 0xffff);
  put16(b, be, be ? v & 0xffff : v >> 16);
}

/* A TIFF block as cameras write it: IFD0 with Make (ASCII, stored after the IFD) and
 * Orientation (SHORT, `orientation`), no next IFD. */
static bytes exif_block(int be, unsigned orientation) {
  bytes t = {0};
  bytes_put(&t, be ? "MM" : "II", 2);
  put16(&t, be, 42);
  put32(&t, be, 8);
  put16(&t, be, 2);
  put16(&t, be, 0x010F), put16(&t, be, 2), put32(&t, be, 6), put32(&t, be, 8 + 2 + 24 + 4);
  put16(&t, be, 0x0112), put16(&t, be, 3), put32(&t, be, 1), put16(&t, be, orientation);
  put16(&t, be, 0);
  put32(&t, be, 0);
  BYTES_PUT_LIT(&t, "dream\0"); /* ASCII counts its NUL */
  return t;
}

/* `jpeg` with a segment (marker, payload) inserted right after SOI. */
static bytes jpeg_with_segment(const bytes *jpeg, unsigned marker, const void *payload,
                               size_t n) {
  bytes o = {0};
  bytes_put(&o, jpeg->p, 2);
  unsigned char h[4] = {0xFF, (unsigned char)marker, (unsigned char)((n + 2) >> 8),
                        (unsigned char)(n + 2)};
  bytes_put(&o, h, 4);
  bytes_put(&o, payload, n);
  bytes_put(&o, jpeg->p + 2, jpeg->len - 2);
  return o;
}

static bytes jpeg_with_exif(const bytes *jpeg, const void *tiff, size_t n) {
  bytes app1 = {0};
  BYTES_PUT_LIT(&app1, "Exif\0\0");
  bytes_put(&app1, tiff, n);
  bytes o = jpeg_with_segment(jpeg, 0xE1, app1.p, app1.len);
  free(app1.p);
  return o;
}

/* `png` with a chunk inserted after IHDR. */
static bytes png_with_chunk(const bytes *png, const char *type, const void *data, size_t n) {
  bytes o = {0}, c = {0};
  bytes_put(&o, png->p, 33);
  bytes_put(&c, type, 4);
  bytes_put(&c, data, n);
  put32(&o, 1, (uint32_t)n);
  bytes_put(&o, c.p, c.len);
  put32(&o, 1, crc32_of(c.p, c.len));
  bytes_put(&o, png->p + 33, png->len - 33);
  free(c.p);
  return o;
}

static dd_image *load_bytes(const bytes *b, const char *name, int *rc, dd_err *err) {
  char path[128];
  th_write_bytes(th_tmp(path, sizeof path, name), b->p, b->len);
  dd_image *im = NULL;
  *rc = dd_image_load(path, 0, &im, err);
  return im;
}

/* Where the EXIF spec shows stored pixel (x, y) of a w x h image: "the 0th row represents
 * the visual <row0> side, the 0th column the visual <col0> side", values 1 to 8. */
static void spec_position(int v, int w, int h, int x, int y, int *X, int *Y) {
  static const char row0[9][7] = {"", "top", "top", "bottom", "bottom", "left", "right", "right", "left"};
  static const char col0[9][7] = {"", "left", "right", "right", "left", "top", "top", "bottom", "bottom"};
  if (v <= 4) { /* rows stay rows */
    *Y = !strcmp(row0[v], "top") ? y : h - 1 - y;
    *X = !strcmp(col0[v], "left") ? x : w - 1 - x;
  } else { /* stored rows become columns */
    *X = !strcmp(row0[v], "left") ? y : h - 1 - y;
    *Y = !strcmp(col0[v], "top") ? x : w - 1 - x;
  }
}

Test(image, exif_orientation_is_applied_in_both_byte_orders) {
  bytes jpeg = pattern_file(0);
  for (int be = 0; be < 2; be++)
    for (int v = 1; v <= 8; v++) {
      bytes tiff = exif_block(be, (unsigned)v);
      bytes file = jpeg_with_exif(&jpeg, tiff.p, tiff.len);
      int rc;
      dd_err err;
      dd_image *im = load_bytes(&file, "oriented.jpg", &rc, &err);
      cr_assert_eq(rc, DD_OK, "%s", err.msg);
      int W = v >= 5 ? PAT_H : PAT_W, H = v >= 5 ? PAT_W : PAT_H;
      cr_assert(im->w == W && im->h == H, "orientation %d: %dx%d", v, im->w, im->h);
      /* Every stored pixel away from a cell edge is where the spec shows it. */
      for (int y = 0; y < PAT_H; y++)
        for (int x = 0; x < PAT_W; x++) {
          if (x % 8 < 2 || x % 8 > 5 || y % 8 < 2 || y % 8 > 5) continue;
          int X, Y;
          spec_position(v, PAT_W, PAT_H, x, y, &X, &Y);
          float want[3];
          pattern_rgb(x, y, want);
          for (int c = 0; c < 3; c++)
            cr_assert_float_eq(im->rgb[((size_t)Y * W + X) * 3 + c], want[c], 8.f,
                               "%s orientation %d: stored (%d,%d) shown at (%d,%d)",
                               be ? "MM" : "II", v, x, y, X, Y);
        }
      /* The pixels are upright now: the EXIF kept says so. */
      bytes upright = exif_block(be, 1);
      cr_assert_eq(im->exif_len, upright.len);
      cr_assert_eq(memcmp(im->exif, upright.p, upright.len), 0, "orientation %d", v);
      dd_image_free(im);
      free(upright.p);
      free(file.p);
      free(tiff.p);
    }
  free(jpeg.p);
}

Test(image, a_phone_photo_turned_by_exif_comes_out_as_shown) {
  /* A real photo, 768x576 as stored, tagged "turned 90 clockwise" (6): 576x768, each pixel
   * exactly where the untagged decode puts it turned. */
  char path[512];
  size_t len;
  uint8_t *raw = read_whole(th_shared(path, sizeof path, "images/dog.jpg"), &len);
  bytes jpeg = {raw, len, len};
  bytes tiff = exif_block(1, 6);
  bytes file = jpeg_with_exif(&jpeg, tiff.p, tiff.len);
  dd_image *plain, *turned;
  dd_err err;
  cr_assert_eq(dd_image_load(path, 0, &plain, &err), DD_OK, "%s", err.msg);
  int rc;
  turned = load_bytes(&file, "phone.jpg", &rc, &err);
  cr_assert_eq(rc, DD_OK, "%s", err.msg);
  cr_assert(turned->w == 576 && turned->h == 768, "%dx%d", turned->w, turned->h);
  for (int y = 0; y < 576; y++)
    for (int x = 0; x < 768; x++)
      for (int c = 0; c < 3; c++)
        cr_assert_eq(turned->rgb[((size_t)x * 576 + (575 - y)) * 3 + c],
                     plain->rgb[((size_t)y * 768 + x) * 3 + c]);
  dd_image_free(plain);
  dd_image_free(turned);

  /* The same tag in a PNG's eXIf chunk, value 8 (turned 90 anticlockwise). */
  bytes png = pattern_file(1);
  free(tiff.p);
  tiff = exif_block(0, 8);
  bytes pfile = png_with_chunk(&png, "eXIf", tiff.p, tiff.len);
  turned = load_bytes(&pfile, "phone.png", &rc, &err);
  cr_assert_eq(rc, DD_OK, "%s", err.msg);
  cr_assert(turned->w == PAT_H && turned->h == PAT_W);
  for (int y = 0; y < PAT_H; y++)
    for (int x = 0; x < PAT_W; x++) {
      float want[3];
      pattern_rgb(x, y, want);
      for (int c = 0; c < 3; c++)
        cr_assert_eq(turned->rgb[((size_t)(PAT_W - 1 - x) * PAT_H + y) * 3 + c], want[c]);
    }
  dd_image_free(turned);
  free(png.p);
  free(pfile.p);
  free(file.p);
  free(tiff.p);
  free(raw);
}

Test(image, hostile_exif_and_icc_are_ignored) {
  bytes jpeg = pattern_file(0);
  /* Each block is malformed in one way; an orientation of 6 is there to be wrongly obeyed. */
  bytes good = exif_block(1, 6);
  bytes bad[10];
  for (int i = 0; i < 10; i++) {
    bad[i] = (bytes){0};
    bytes_put(&bad[i], good.p, good.len);
  }
  unsigned char *p;
  p = bad[0].p, p[4] = p[5] = p[6] = 0xFF, p[7] = 0xF0;        /* IFD0 past the end */
  p = bad[1].p, p[8] = p[9] = 0xFF;                              /* 65535 entries */
  p = bad[2].p, p[2] = 0, p[3] = 43;                             /* not TIFF's 42 */
  p = bad[3].p, p[0] = 'M', p[1] = 'I';                          /* no byte order */
  p = bad[4].p, p[10 + 12 + 9] = 9;                              /* orientation 9 */
  p = bad[5].p, p[10 + 12 + 3] = 4;                              /* a LONG, not a SHORT */
  p = bad[6].p, p[10 + 12 + 7] = 200;                            /* 200 values */
  bad[7].len = 10 + 12 + 6;                                      /* cut inside the tag */
  p = bad[8].p, p[4] = p[5] = p[6] = 0xFF, p[7] = 0xFE;          /* IFD0 at the last byte... */
  bad[8].len = 8;                                                /* ...of a header-only block */
  /* IFD0 whose next-IFD link points back at itself, and the Make offset past the end */
  p = bad[9].p, p[10 + 12 + 1] = 0x10, p[10 + 24 + 3] = 8, p[10 + 8 + 3] = 0xFF;
  for (int i = 0; i < 10; i++) {
    bytes file = jpeg_with_exif(&jpeg, bad[i].p, bad[i].len);
    int rc;
    dd_err err;
    dd_image *im = load_bytes(&file, "hostile.jpg", &rc, &err);
    cr_assert_eq(rc, DD_OK, "block %d: %s", i, err.msg);
    cr_assert(im->w == PAT_W && im->h == PAT_H, "block %d: %dx%d", i, im->w, im->h);
    dd_image_free(im);
    free(file.p);
    free(bad[i].p);
  }

  /* An APP1 whose length runs past the end of the file: no crash, either answer. */
  bytes cut = jpeg_with_exif(&jpeg, good.p, good.len);
  cut.p[5] = 0xFF;
  int rc;
  dd_err err;
  dd_image *im = load_bytes(&cut, "cut_app1.jpg", &rc, &err);
  if (rc == DD_OK) dd_image_free(im);
  else cr_assert_eq(rc, DD_EFORMAT, "%s", err.msg);
  free(cut.p);

  /* ICC chunks: "ICC_PROFILE\0", sequence number, count.  In the wrong order they are put
   * back in sequence; a chunk missing, repeated or numbered out of range drops the profile. */
  static const struct {
    int n;
    unsigned char seq[3], count[3];
    int kept;
  } cases[] = {{2, {2, 1}, {2, 2}, 1}, {2, {1, 1}, {2, 2}, 0}, {1, {1}, {2}, 0},
               {2, {1, 3}, {2, 2}, 0}, {2, {0, 1}, {2, 2}, 0}, {2, {1, 2}, {2, 3}, 0},
               {1, {1}, {0}, 0}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    bytes file = {0};
    bytes_put(&file, jpeg.p, jpeg.len);
    for (int c = cases[k].n - 1; c >= 0; c--) { /* each goes in front of the one before */
      unsigned char seg[14 + 3];
      memcpy(seg, "ICC_PROFILE", 12);
      seg[12] = cases[k].seq[c];
      seg[13] = cases[k].count[c];
      memset(seg + 14, 'a' + cases[k].seq[c], 3);
      bytes next = jpeg_with_segment(&file, 0xE2, seg, sizeof seg);
      free(file.p);
      file = next;
    }
    im = load_bytes(&file, "icc.jpg", &rc, &err);
    cr_assert_eq(rc, DD_OK, "case %zu: %s", k, err.msg);
    if (cases[k].kept) {
      cr_assert_eq(im->icc_len, 6, "case %zu", k);
      cr_assert_eq(memcmp(im->icc, "bbbccc", 6), 0, "case %zu: %.6s", k, (char *)im->icc);
    } else {
      cr_assert(im->icc == NULL && im->icc_len == 0, "case %zu", k);
    }
    dd_image_free(im);
    free(file.p);
  }

  /* PNG: a zlib bomb, corrupt zlib and a name without its NUL in iCCP; eXIf too short. */
  bytes png = pattern_file(1);
  size_t big = (size_t)32 << 20; /* twice the largest profile decompressed */
  unsigned char *zeros = calloc(big, 1);
  int zlen;
  unsigned char *bomb = stbi_zlib_compress(zeros, (int)big, &zlen, 8);
  cr_assert_not_null(bomb);
  free(zeros);
  bytes chunks[4] = {{0}, {0}, {0}, {0}};
  BYTES_PUT_LIT(&chunks[0], "bomb\0\0");
  bytes_put(&chunks[0], bomb, (size_t)zlen);
  BYTES_PUT_LIT(&chunks[1], "junk\0\0\x78\x9c\xff\xff\xff\xff");
  BYTES_PUT_LIT(&chunks[2], "nonul");
  BYTES_PUT_LIT(&chunks[3], "MM\0*");
  const char *types[4] = {"iCCP", "iCCP", "iCCP", "eXIf"};
  free(bomb);
  for (int i = 0; i < 4; i++) {
    bytes file = png_with_chunk(&png, types[i], chunks[i].p, chunks[i].len);
    im = load_bytes(&file, "hostile.png", &rc, &err);
    cr_assert_eq(rc, DD_OK, "chunk %d: %s", i, err.msg);
    cr_assert(!im->icc && !im->exif, "chunk %d", i);
    dd_image_free(im);
    free(file.p);
    free(chunks[i].p);
  }
  free(png.p);
  free(good.p);
  free(jpeg.p);
}

/* A stand-in ICC profile: its size is what a JPEG must split (over one 65519-byte chunk). */
static void set_meta(dd_image *im, size_t icc_len, int be, unsigned orientation) {
  uint64_t s = 42;
  im->icc = malloc(icc_len);
  cr_assert_not_null(im->icc);
  for (size_t i = 0; i < icc_len; i++) im->icc[i] = (unsigned char)(dd_rng_next(&s) % 7);
  memcpy(im->icc + 36, "acsp", 4); /* the signature a real profile has */
  im->icc_len = icc_len;
  bytes t = exif_block(be, orientation);
  im->exif = t.p;
  im->exif_len = t.len;
}

/* Checks a PNG's chunk layout and CRCs; returns how many chunks of `type` come before IDAT. */
static int png_chunks_before_idat(const uint8_t *p, size_t len, const char *type) {
  cr_assert(len > 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8));
  int found = 0, idat = 0;
  size_t i = 8;
  for (;;) {
    cr_assert_leq(i + 12, len);
    uint32_t n = (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 | p[i + 3];
    cr_assert_leq(i + 12 + n, len);
    const uint8_t *c = p + i + 8 + n;
    uint32_t crc = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
    cr_assert_eq(crc, crc32_of(p + i + 4, 4 + n), "chunk %.4s: bad CRC", (const char *)p + i + 4);
    if (!memcmp(p + i + 4, "IDAT", 4)) idat = 1;
    if (!memcmp(p + i + 4, type, 4) && !idat) found++;
    if (!memcmp(p + i + 4, "IEND", 4)) break;
    i += 12 + n;
  }
  cr_assert_eq(i + 12, len, "bytes after IEND");
  return found;
}

Test(image, exif_and_icc_survive_a_save_and_load) {
  const char *names[] = {"meta.jpg", "meta.png"};
  for (int f = 0; f < 2; f++)
    for (int be = 0; be < 2; be++) {
      dd_image *im = random_image(37, 23, 3);
      set_meta(im, 70000, be, 6);
      char path[128];
      dd_err err;
      cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, names[f]), im, &err), DD_OK, "%s",
                   err.msg);
      dd_image *back;
      cr_assert_eq(dd_image_load(path, 0, &back, &err), DD_OK, "%s", err.msg);
      /* written with orientation 1 (the pixels are as they are), so not turned again */
      cr_assert(back->w == 37 && back->h == 23, "%s: %dx%d", names[f], back->w, back->h);
      cr_assert_eq(back->icc_len, im->icc_len, "%s", names[f]);
      cr_assert_eq(memcmp(back->icc, im->icc, im->icc_len), 0, "%s", names[f]);
      bytes upright = exif_block(be, 1);
      cr_assert_eq(back->exif_len, upright.len, "%s", names[f]);
      cr_assert_eq(memcmp(back->exif, upright.p, upright.len), 0, "%s", names[f]);
      free(upright.p);

      /* Still a file stb_image decodes, by itself, to the same pixels. */
      size_t len;
      uint8_t *file = read_whole(path, &len);
      int w, h, c;
      unsigned char *px = stbi_load_from_memory(file, (int)len, &w, &h, &c, 3);
      cr_assert_not_null(px, "%s: %s", names[f], stbi_failure_reason());
      cr_assert(w == 37 && h == 23);
      for (int i = 0; i < 37 * 23 * 3; i++) cr_assert_eq((float)px[i], back->rgb[i]);
      stbi_image_free(px);
      if (f == 1) {
        cr_assert_eq(png_chunks_before_idat(file, len, "iCCP"), 1);
        cr_assert_eq(png_chunks_before_idat(file, len, "eXIf"), 1);
      } else {
        /* SOI, stb's JFIF APP0, then APP1 Exif and the ICC profile in two APP2 chunks */
        cr_assert(file[0] == 0xFF && file[1] == 0xD8 && file[2] == 0xFF && file[3] == 0xE0);
        size_t at = 4 + ((size_t)file[4] << 8 | file[5]);
        const unsigned markers[3] = {0xE1, 0xE2, 0xE2};
        for (int k = 0; k < 3; k++) {
          cr_assert(file[at] == 0xFF && file[at + 1] == markers[k], "segment %d", k);
          if (k) cr_assert(file[at + 16] == k && file[at + 17] == 2, "ICC chunk %d", k);
          at += 2 + ((size_t)file[at + 2] << 8 | file[at + 3]);
        }
      }
      free(file);

      /* What the commands do: a new image, the input's metadata copied onto it. */
      dd_image *small;
      cr_assert_eq(dd_image_resize(back, 20, 11, &small, &err), DD_OK);
      cr_assert(!small->icc && !small->exif);
      cr_assert_eq(dd_image_copy_meta(small, back, &err), DD_OK);
      cr_assert_eq(dd_image_copy_meta(small, back, &err), DD_OK); /* replaces, no leak */
      cr_assert_eq(dd_image_save(path, small, &err), DD_OK, "%s", err.msg);
      dd_image *again;
      cr_assert_eq(dd_image_load(path, 0, &again, &err), DD_OK, "%s", err.msg);
      cr_assert(again->icc_len == back->icc_len && !memcmp(again->icc, back->icc, back->icc_len));
      cr_assert(again->exif_len == back->exif_len &&
                !memcmp(again->exif, back->exif, back->exif_len));
      dd_image_free(again);

      /* keep_meta 0 writes none; BMP and TGA have no place for any. */
      dd_image_save_opts o;
      dd_image_save_opts_init(&o);
      o.keep_meta = 0;
      cr_assert_eq(dd_image_save_with(path, small, &o, &err), DD_OK, "%s", err.msg);
      cr_assert_eq(dd_image_load(path, 0, &again, &err), DD_OK, "%s", err.msg);
      cr_assert(!again->icc && !again->exif && again->icc_len == 0 && again->exif_len == 0);
      dd_image_free(again);
      cr_assert_eq(dd_image_save(th_tmp(path, sizeof path, "meta.bmp"), small, &err), DD_OK);
      cr_assert_eq(dd_image_load(path, 0, &again, &err), DD_OK, "%s", err.msg);
      cr_assert(!again->icc && !again->exif);
      dd_image_free(again);

      /* No metadata on the source: copying clears the destination's. */
      dd_image *bare = random_image(2, 2, 1);
      cr_assert_eq(dd_image_copy_meta(small, bare, &err), DD_OK);
      cr_assert(!small->icc && !small->exif && small->icc_len == 0 && small->exif_len == 0);
      dd_image_free(bare);
      dd_image_free(small);
      dd_image_free(back);
      dd_image_free(im);
    }
}

Test(image, jpeg_quality_is_an_option) {
  char src[512], lo[128], hi[128], def[128];
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(th_shared(src, sizeof src, "images/giraffe.jpg"), 0, &im, &err), 0);
  dd_image_save_opts o;
  dd_image_save_opts_init(&o);
  cr_assert(o.quality == 95 && o.keep_meta == 1);
  o.quality = 20;
  cr_assert_eq(dd_image_save_with(th_tmp(lo, sizeof lo, "q20.jpg"), im, &o, &err), DD_OK, "%s",
               err.msg);
  o.quality = 95;
  cr_assert_eq(dd_image_save_with(th_tmp(hi, sizeof hi, "q95.jpg"), im, &o, &err), DD_OK);
  o.quality = 0; /* the default */
  cr_assert_eq(dd_image_save_with(th_tmp(def, sizeof def, "q0.jpg"), im, &o, &err), DD_OK);
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
    cr_assert_eq(dd_image_save_with(th_tmp(path, sizeof path, "bad.jpg"), im, &o, &err), DD_EARG);
    cr_assert(strstr(err.msg, "bad.jpg") && strstr(err.msg, "quality"), "%s", err.msg);
    cr_assert_neq(access(path, F_OK), 0, "a file was left");
  }
  /* NULL options are the defaults; quality 1 and 100 are in range. */
  cr_assert_eq(dd_image_save_with(th_tmp(def, sizeof def, "null.jpg"), im, NULL, &err), DD_OK);
  o.quality = 1;
  cr_assert_eq(dd_image_save_with(th_tmp(def, sizeof def, "q1.jpg"), im, &o, &err), DD_OK);
  o.quality = 100;
  cr_assert_eq(dd_image_save_with(th_tmp(def, sizeof def, "q100.jpg"), im, &o, &err), DD_OK);
  dd_image_free(im);
}

Test(image, unsupported_formats_are_named) {
  /* the length of each literal, less the NUL the compiler adds */
#define MAGIC(name, format, data) {name, format, data, sizeof data - 1}
  static const struct {
    const char *name, *format;
    const char *data;
    size_t len;
  } files[] = {
      MAGIC("photo.webp", "WebP", "RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\x10\x07\x10\x11\x11\x88\x88\xfe\x07\0"),
      MAGIC("scan.tif", "TIFF", "II*\0\x08\0\0\0\0\0\0\0\0\0"),
      MAGIC("scan_mm.tiff", "TIFF", "MM\0*\0\0\0\x08\0\0\0\0\0\0"),
      MAGIC("big.tif", "TIFF", "II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0"),
      MAGIC("phone.heic", "HEIC/HEIF", "\0\0\0\x18" "ftypheic\0\0\0\0mif1heic"),
      MAGIC("still.heif", "HEIC/HEIF", "\0\0\0\x10" "ftypmif1\0\0\0\0"),
      MAGIC("photo.avif", "AVIF", "\0\0\0\x1c" "ftypavif\0\0\0\0avifmif1miaf"),
      MAGIC("brands.avif", "AVIF", "\0\0\0\x18" "ftypmif1\0\0\0\0mif1avif"),
      MAGIC("photo.jxl", "JPEG XL", "\xff\x0a\xfa\x7f\x01\x90\x08"),
      MAGIC("box.jxl", "JPEG XL", "\0\0\0\x0cJXL \r\n\x87\n\0\0\0\x14" "ftypjxl "),
      MAGIC("photo.jp2", "JPEG 2000", "\0\0\0\x0cjP  \r\n\x87\n\0\0\0\x14" "ftypjp2 "),
      MAGIC("photo.j2k", "JPEG 2000", "\xff\x4f\xff\x51\0\x29\0\0"),
  };
#undef MAGIC
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[128], want[256];
    th_write_bytes(th_tmp(path, sizeof path, files[i].name), files[i].data, files[i].len);
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
  th_write_bytes(th_tmp(path, sizeof path, "movie.mp4"), "\0\0\0\x14" "ftypisom\0\0\0\0isom", 20);
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
  BYTES_PUT_LIT(&files[3], "GIF89a\1\0\1\0\x80\0\0\xff\xff\xff\0\0\0,\0\0\0\0\1\0\1\0\0\2\2D\1\0;");
  cr_assert(stbi_write_tga_to_func(bytes_write, &files[4], 1, 1, 3, px));
  /* PSD: 3 channels of 1x1, 8 bits, RGB; no colour data, resources or layers; raw planes */
  BYTES_PUT_LIT(&files[5], "8BPS\0\1\0\0\0\0\0\0\0\3\0\0\0\1\0\0\0\1\0\x08\0\3");
  BYTES_PUT_LIT(&files[5], "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xc8\x64\x32");
  BYTES_PUT_LIT(&files[6], "P6\n1 1\n255\n\xc8\x64\x32");
  BYTES_PUT_LIT(&files[7], "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x80");
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

/* The one rounding of floats to a file's bytes (saves, dream video's carried frames, the
 * Python module): not above 0 (NaN too) is 0, 255 and up is 255, else nearest, ties to even;
 * and what a saved PNG decodes to is dd_image_round's picture. */
Test(image, bytes_are_rounded_one_way) {
  static const float v[12] = {-3.f, NAN, 0.f, 0.5f, 1.5f, 2.5f, 2.49f, 254.5f, 254.51f, 255.f,
                              1e9f, INFINITY};
  static const unsigned char want[12] = {0, 0, 0, 0, 2, 2, 2, 254, 255, 255, 255, 255};
  dd_image *im, *r;
  dd_err err;
  cr_assert_eq(dd_image_new(2, 2, &im, &err), 0);
  cr_assert_eq(dd_image_new(2, 2, &r, &err), 0);
  memcpy(im->rgb, v, sizeof v);
  unsigned char b[12];
  dd_image_to_bytes(im, b);
  dd_image_round(im, r);
  for (int i = 0; i < 12; i++) {
    cr_expect_eq(b[i], want[i], "%g: %d, expected %d", v[i], b[i], want[i]);
    cr_expect_eq(r->rgb[i], (float)want[i], "%g rounds to %g", v[i], r->rgb[i]);
  }
  char path[256];
  snprintf(path, sizeof path, "/tmp/dream_round_%d.png", (int)getpid());
  cr_assert_eq(dd_image_save(path, im, &err), 0, "%s", err.msg);
  dd_image *back;
  cr_assert_eq(dd_image_load(path, 0, &back, &err), 0, "%s", err.msg);
  cr_expect_eq(memcmp(back->rgb, r->rgb, sizeof v), 0, "the PNG decodes to other values");
  remove(path);
  dd_image_round(im, im); /* in place */
  cr_expect_eq(memcmp(im->rgb, r->rgb, sizeof v), 0);
  dd_image_free(back);
  dd_image_free(r);
  dd_image_free(im);
}
