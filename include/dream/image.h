/* dream/image.h - photos in and out (stb_image / stb_image_write, Debian's libstb), resizing
 * (stb_image_resize), and conversion to and from a model's input tensor.
 *
 * Images are 3-channel RGB, float, 0..255, row-major HWC.
 */
#ifndef DREAM_IMAGE_H
#define DREAM_IMAGE_H

#include <stddef.h>

#include "dream/error.h"

/* Formats dd_image_load decodes, for help texts and error messages. */
#define DD_IMAGE_FORMATS "JPEG, PNG, BMP, GIF, TGA, PSD, PNM (PPM/PGM), HDR, PIC (Softimage)"
/* The same list as a linkable string. */
extern const char dd_image_formats[];

typedef struct dd_image {
  int w, h;
  float *rgb; /* w*h*3 */
} dd_image;

/* Default cap on pixels decoded from a file (the header is checked before decoding). */
#define DD_IMAGE_MAX_PIXELS ((size_t)1 << 28)

/* New black image; DD_ELIMIT when w or h is < 1 or w*h > DD_IMAGE_MAX_PIXELS. */
int dd_image_new(int w, int h, dd_image **out, dd_err *err);
void dd_image_free(dd_image *im);
/* Decodes any format in DD_IMAGE_FORMATS.  The header's width x height is checked against
 * max_pixels (0: DD_IMAGE_MAX_PIXELS) before anything is decoded (DD_ELIMIT).  Grey becomes
 * RGB; an alpha channel is composited on white.
 * Errors: DD_EIO (cannot read `path`), DD_ELIMIT, DD_ENOMEM, DD_EFORMAT: "path: WebP images
 * are not supported; supported formats: ..." for WebP, TIFF, HEIC/HEIF, AVIF, JPEG XL and
 * JPEG 2000, "path: not an image (stb_image: reason); supported formats: ..." for any
 * other file stb_image cannot read. */
int dd_image_load(const char *path, size_t max_pixels, dd_image **out, dd_err *err);
/* How dd_image_save_with writes. */
typedef struct dd_image_save_opts {
  int quality; /* JPEG quality, 1..100; 0: the default, 95.  Ignored by other formats. */
} dd_image_save_opts;

/* The defaults: quality 95. */
dd_image_save_opts dd_image_save_opts_init(void);
/* Encodes by extension (.png, .jpg/.jpeg, .bmp, .tga), pixels rounded and clamped to 0..255.
 * Written to a temporary file and renamed, so a failure never leaves a partial file.
 * opts NULL means the defaults.  Errors: DD_EARG (unknown extension, invalid image, quality
 * outside 0..100), DD_ENOMEM, DD_EIO (cannot write `path`). */
int dd_image_save_with(const char *path, const dd_image *im, const dd_image_save_opts *opts,
                       dd_err *err);
/* dd_image_save_with with the defaults. */
int dd_image_save(const char *path, const dd_image *im, dd_err *err);
/* Resampled copy (stb_image_resize, Mitchell filter down / Catmull-Rom up, edges clamped).
 * Not clamped to 0..255: the cubic filters may overshoot by a few levels at sharp edges. */
int dd_image_resize(const dd_image *im, int w, int h, dd_image **out, dd_err *err);

/* A model's input preprocessing: x[c] = (p[c] / 255 * scale - mean[c]) / std[c], with p in
 * 0..255 and channels in BGR order when `bgr` is set. */
typedef struct dd_preproc {
  int bgr;
  float scale;
  float mean[3];
  float std[3];
} dd_preproc;

/* Image -> NCHW float tensor data (1x3xHxW), `out` holds 3*w*h floats. */
void dd_image_to_input(const dd_image *im, const dd_preproc *pp, float *out);
/* NCHW (1x3xHxW) model input -> image pixels (not clamped). */
void dd_input_to_image(const float *in, const dd_preproc *pp, dd_image *im);

#endif
