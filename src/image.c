/* Image IO on Debian's libstb.  libstb.so already exports stb_image, stb_image_write and
 * stb_image_resize (stbi_load_from_memory, stbi_write_png_to_func, stbir_resize_float_generic
 * are all in `nm -D`), so no STB_*_IMPLEMENTATION is defined here: defining one would put a
 * second copy of each library in the binary. */
#include "dream/image.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "image_guard.h"
#include "image_meta.h"
#include "util.h"

/* Largest image file read; far above any photo, it only stops a stray multi-GiB file. */
#define IMAGE_MAX_FILE ((size_t)1 << 30)
#define JPEG_QUALITY 95

const char dd_image_formats[] = DD_IMAGE_FORMATS;

int dd_image_new(int w, int h, dd_image **out, dd_err *err) {
  if (w < 1 || h < 1 || (size_t)w * (size_t)h > DD_IMAGE_MAX_PIXELS)
    return dd_fail(err, DD_ELIMIT, "image size %dx%d is not in 1..%zu pixels", w, h,
                   (size_t)DD_IMAGE_MAX_PIXELS);
  dd_image *im = malloc(sizeof *im);
  float *rgb = calloc((size_t)w * (size_t)h * 3, sizeof *rgb);
  if (!im || !rgb) {
    free(im);
    free(rgb);
    return dd_fail(err, DD_ENOMEM, "out of memory for a %dx%d image", w, h);
  }
  *im = (dd_image){.w = w, .h = h, .rgb = rgb};
  *out = im;
  return DD_OK;
}

void dd_image_free(dd_image *im) {
  if (!im) return;
  free(im->rgb);
  free(im->icc);
  free(im->exif);
  free(im);
}

int dd_image_copy_meta(dd_image *dst, const dd_image *src, dd_err *err) {
  if (dst == src) return DD_OK;
  unsigned char *icc = NULL, *exif = NULL;
  if (src->icc && src->icc_len && !(icc = malloc(src->icc_len))) goto oom;
  if (src->exif && src->exif_len && !(exif = malloc(src->exif_len))) goto oom;
  if (icc) memcpy(icc, src->icc, src->icc_len);
  if (exif) memcpy(exif, src->exif, src->exif_len);
  free(dst->icc);
  free(dst->exif);
  dst->icc = icc;
  dst->icc_len = icc ? src->icc_len : 0;
  dst->exif = exif;
  dst->exif_len = exif ? src->exif_len : 0;
  return DD_OK;
oom:
  free(icc);
  return dd_fail(err, DD_ENOMEM, "out of memory copying image metadata");
}

/* stb's reasons are terse ("unknown image type"); it keeps the last one per thread. */
static const char *stb_reason(void) {
  const char *r = stbi_failure_reason();
  return r ? r : "unknown reason";
}

/* Where the stored pixel (x, y) of a w x h image is shown under EXIF orientation `o`, by the
 * spec's table of where the stored 0th row and 0th column are shown: 2-4 mirror and turn
 * within w x h; 5-8 swap the axes (the shown image is h x w). */
static void orient(int o, int w, int h, int x, int y, int *ox, int *oy) {
  switch (o) {
    case 2: *ox = w - 1 - x, *oy = y; break;         /* row 0 top, column 0 right */
    case 3: *ox = w - 1 - x, *oy = h - 1 - y; break; /* bottom, right: rotated 180 */
    case 4: *ox = x, *oy = h - 1 - y; break;         /* bottom, left */
    case 5: *ox = y, *oy = x; break;                 /* left, top: transposed */
    case 6: *ox = h - 1 - y, *oy = x; break;         /* right, top: turned 90 clockwise */
    case 7: *ox = h - 1 - y, *oy = w - 1 - x; break; /* right, bottom: transversed */
    case 8: *ox = y, *oy = w - 1 - x; break;         /* left, bottom: turned 90 anticlockwise */
    default: *ox = x, *oy = y; break;
  }
}

int dd_image_load(const char *path, size_t max_pixels, dd_image **out, dd_err *err) {
  if (!max_pixels) max_pixels = DD_IMAGE_MAX_PIXELS;
  void *buf;
  size_t len;
  int rc = dd_read_file(path, IMAGE_MAX_FILE, &buf, &len, err);
  if (rc) return rc;
  if (len == 0) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: not an image (the file is empty)", path);
  }
  if (len > INT32_MAX) {
    free(buf);
    return dd_fail(err, DD_ELIMIT, "%s: file too large for the image decoder", path);
  }
  const char *unsupported = dd_image_unsupported_format(buf, len);
  if (unsupported) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: %s images are not supported; supported formats: %s",
                   path, unsupported, DD_IMAGE_FORMATS);
  }
  rc = dd_image_guard(buf, len, path, err);
  if (rc) {
    free(buf);
    return rc;
  }
  /* The header alone says how much decoding would allocate: refuse before decoding. */
  int w, h, comp;
  if (!stbi_info_from_memory(buf, (int)len, &w, &h, &comp)) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: not an image (stb_image: %s); supported formats: %s",
                   path, stb_reason(), DD_IMAGE_FORMATS);
  }
  if (w < 1 || h < 1 || (uint64_t)w * (uint64_t)h > max_pixels) {
    free(buf);
    return dd_fail(err, DD_ELIMIT, "%s: image is %dx%d, more than the limit of %zu pixels", path,
                   w, h, max_pixels);
  }
  /* Asked for the channels the header has, stb converts nothing for the formats whose own
   * conversion is unsafe (16-bit PNM: it reads past its buffer in 2.27, fixed upstream in
   * 2.28); grey and alpha are spread to RGB below. */
  int want = comp, dw, dh, dc;
  if (want < 1 || want > 4) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: image has %d channels", path, comp);
  }
  dd_image meta = {0};
  if (dd_meta_read(buf, len, &meta)) {
    free(buf);
    return dd_fail(err, DD_ENOMEM, "%s: out of memory reading the metadata", path);
  }
  unsigned char *px = stbi_load_from_memory(buf, (int)len, &dw, &dh, &dc, want);
  free(buf);
  if (!px) {
    rc = dd_fail(err, DD_EFORMAT, "%s: not an image (stb_image: %s)", path, stb_reason());
  } else if (dw != w || dh != h) {
    rc = dd_fail(err, DD_EFORMAT, "%s: header says %dx%d but the data is %dx%d", path, w, h, dw,
                 dh);
  }
  /* Viewers show a photo turned by its EXIF orientation; every command works on what they
   * show, so the pixels are turned here and the tag reset to match them. */
  int o = dd_exif_orientation(meta.exif, meta.exif_len);
  dd_exif_reset_orientation(meta.exif, meta.exif_len);
  int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
  dd_image *im = NULL;
  if (!rc && (rc = dd_image_new(ow, oh, &im, err))) dd_err_prefix(err, "%s", path);
  if (rc) {
    stbi_image_free(px);
    free(meta.icc);
    free(meta.exif);
    return rc;
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const unsigned char *p = px + ((size_t)y * (size_t)w + (size_t)x) * (size_t)want;
      int X, Y;
      orient(o, w, h, x, y, &X, &Y);
      float *q = im->rgb + ((size_t)Y * (size_t)ow + (size_t)X) * 3;
      /* Transparent pixels carry arbitrary colour; compositing on white is what a viewer
       * shows for most transparent photos and logos. */
      float a = want == 2 || want == 4 ? p[want - 1] / 255.f : 1.f;
      for (int c = 0; c < 3; c++) q[c] = p[want < 3 ? 0 : c] * a + 255.f * (1.f - a);
    }
  stbi_image_free(px);
  im->icc = meta.icc;
  im->icc_len = meta.icc_len;
  im->exif = meta.exif;
  im->exif_len = meta.exif_len;
  *out = im;
  return DD_OK;
}

typedef struct membuf {
  unsigned char *data;
  size_t len, cap;
  int failed;
} membuf;

static void membuf_write(void *ctx, void *data, int size) {
  membuf *b = ctx;
  if (b->failed || size <= 0) return;
  if (b->len + (size_t)size > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + (size_t)size) cap *= 2;
    unsigned char *d = realloc(b->data, cap);
    if (!d) {
      b->failed = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, (size_t)size);
  b->len += (size_t)size;
}

static int ext_is(const char *ext, const char *want) {
  for (; *ext && *want; ext++, want++)
    if (tolower((unsigned char)*ext) != *want) return 0;
  return !*ext && !*want;
}

static unsigned char to_byte(float v) {
  if (!(v > 0.f)) return 0; /* also NaN */
  if (v >= 255.f) return 255;
  return (unsigned char)lrintf(v);
}

void dd_image_to_bytes(const dd_image *im, unsigned char *out) {
  size_t n = (size_t)im->w * (size_t)im->h * 3;
  for (size_t i = 0; i < n; i++) out[i] = to_byte(im->rgb[i]);
}

void dd_image_round(const dd_image *im, dd_image *out) {
  size_t n = (size_t)im->w * (size_t)im->h * 3;
  for (size_t i = 0; i < n; i++) out->rgb[i] = to_byte(im->rgb[i]);
}

void dd_image_save_opts_init(dd_image_save_opts *o) {
  *o = (dd_image_save_opts){.quality = JPEG_QUALITY, .keep_meta = 1};
}

int dd_image_save(const char *path, const dd_image *im, dd_err *err) {
  dd_image_save_opts o;
  dd_image_save_opts_init(&o);
  return dd_image_save_with(path, im, &o, err);
}

int dd_image_save_with(const char *path, const dd_image *im, const dd_image_save_opts *opts,
                       dd_err *err) {
  dd_image_save_opts o;
  if (opts)
    o = *opts;
  else
    dd_image_save_opts_init(&o);
  if (o.quality == 0) o.quality = JPEG_QUALITY;
  if (o.quality < 1 || o.quality > 100)
    return dd_fail(err, DD_EARG, "%s: JPEG quality %d is not in 1..100", path, o.quality);
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (!dot || (slash && dot < slash))
    return dd_fail(err, DD_EARG, "%s: no file extension; use .png, .jpg, .bmp or .tga", path);
  const char *ext = dot + 1;
  enum { PNG, JPG, BMP, TGA } fmt;
  if (ext_is(ext, "png")) fmt = PNG;
  else if (ext_is(ext, "jpg") || ext_is(ext, "jpeg")) fmt = JPG;
  else if (ext_is(ext, "bmp")) fmt = BMP;
  else if (ext_is(ext, "tga")) fmt = TGA;
  else
    return dd_fail(err, DD_EARG, "%s: unknown image format '.%s'; use .png, .jpg, .bmp or .tga",
                   path, ext);
  if (!im || im->w < 1 || im->h < 1 || (int64_t)im->w * 3 > INT32_MAX)
    return dd_fail(err, DD_EARG, "%s: invalid image", path);
  size_t n = (size_t)im->w * (size_t)im->h * 3;
  unsigned char *px = malloc(n);
  if (!px) return dd_fail(err, DD_ENOMEM, "%s: out of memory", path);
  dd_image_to_bytes(im, px);
  membuf b = {0};
  int ok = 0;
  switch (fmt) {
    case PNG: ok = stbi_write_png_to_func(membuf_write, &b, im->w, im->h, 3, px, im->w * 3); break;
    case JPG: ok = stbi_write_jpg_to_func(membuf_write, &b, im->w, im->h, 3, px, o.quality); break;
    case BMP: ok = stbi_write_bmp_to_func(membuf_write, &b, im->w, im->h, 3, px); break;
    case TGA: ok = stbi_write_tga_to_func(membuf_write, &b, im->w, im->h, 3, px); break;
  }
  free(px);
  if (b.failed) {
    free(b.data);
    return dd_fail(err, DD_ENOMEM, "%s: out of memory encoding the image", path);
  }
  if (!ok || !b.len) {
    free(b.data);
    return dd_fail(err, DD_EIO, "%s: stb_image_write could not encode the image", path);
  }
  /* stb_image_write knows no metadata: it is spliced into the encoded bytes.  The BMP and
   * TGA headers stb writes have no place for it. */
  unsigned char *with = NULL;
  size_t with_len = 0;
  int rc = DD_OK;
  if (o.keep_meta && fmt == JPG) rc = dd_meta_splice_jpeg(b.data, b.len, im, &with, &with_len);
  if (o.keep_meta && fmt == PNG) rc = dd_meta_splice_png(b.data, b.len, im, &with, &with_len);
  if (rc == DD_ENOMEM) rc = dd_fail(err, rc, "%s: out of memory adding the metadata", path);
  else if (rc) rc = dd_fail(err, rc, "%s: stb_image_write's output has an unexpected layout", path);
  else if (with) rc = dd_write_file_atomic(path, with, with_len, err);
  else rc = dd_write_file_atomic(path, b.data, b.len, err);
  free(with);
  free(b.data);
  return rc;
}

int dd_image_resize(const dd_image *im, int w, int h, dd_image **out, dd_err *err) {
  dd_image *r;
  int rc = dd_image_new(w, h, &r, err);
  if (rc) return rc;
  if (w == im->w && h == im->h) {
    memcpy(r->rgb, im->rgb, (size_t)w * (size_t)h * 3 * sizeof(float));
  } else if (!stbir_resize_float_generic(im->rgb, im->w, im->h, 0, r->rgb, w, h, 0, 3,
                                         STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                         STBIR_FILTER_DEFAULT, STBIR_COLORSPACE_LINEAR, NULL)) {
    dd_image_free(r);
    return dd_fail(err, DD_ENOMEM, "out of memory resizing %dx%d to %dx%d", im->w, im->h, w, h);
  }
  *out = r;
  return DD_OK;
}

void dd_image_to_input(const dd_image *im, const dd_preproc *pp, float *out) {
  size_t n = (size_t)im->w * (size_t)im->h;
  for (int c = 0; c < 3; c++) {
    int src = pp->bgr ? 2 - c : c;
    float k = pp->scale / 255.f / pp->std[c], b = pp->mean[c] / pp->std[c];
    float *o = out + (size_t)c * n;
    for (size_t i = 0; i < n; i++) o[i] = im->rgb[i * 3 + (size_t)src] * k - b;
  }
}

void dd_input_to_image(const float *in, const dd_preproc *pp, dd_image *im) {
  size_t n = (size_t)im->w * (size_t)im->h;
  for (int c = 0; c < 3; c++) {
    int dst = pp->bgr ? 2 - c : c;
    float k = 255.f / pp->scale;
    const float *x = in + (size_t)c * n;
    for (size_t i = 0; i < n; i++)
      im->rgb[i * 3 + (size_t)dst] = (x[i] * pp->std[c] + pp->mean[c]) * k;
  }
}
