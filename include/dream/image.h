/* dream/image.h - photos in and out (stb_image / stb_image_write, Debian's libstb), resizing
 * (stb_image_resize), and conversion to and from a model's input tensor.
 *
 * Images are 3-channel RGB, float, 0..255, row-major HWC, upright: a photo's EXIF orientation
 * is applied on load.  A loaded image keeps its EXIF and ICC profile, to be written again:
 *
 *   dd_image *in, *out;
 *   if (dd_image_load("photo.jpg", 0, &in, &err)) return fail(&err);
 *   ... make `out` from `in` (dd_image_new, dd_image_resize) ...
 *   dd_image_copy_meta(out, in, &err);          // the input's EXIF and colour profile
 *   dd_image_save_opts o;
 *   dd_image_save_opts_init(&o);
 *   o.quality = 90;
 *   dd_image_save_with("dream.jpg", out, &o, &err);
 *
 * Limitations:
 *  - reads what Debian's stb_image 2.27 decodes (DD_IMAGE_FORMATS): baseline and progressive
 *    JPEG (no arithmetic coding, no 12-bit), BMP without RLE or 1 bit per pixel, the first
 *    frame of a GIF, the composite of a PSD, HDR tone-mapped to 8 bits;
 *  - writes PNG, JPEG, BMP and TGA, 8 bits per channel, no alpha;
 *  - metadata is read from and written to JPEG and PNG only; BMP and TGA carry none.  The
 *    EXIF block is kept as it was (thumbnail and pixel dimensions included) but for its
 *    orientation, which is set to 1 because the pixels are turned upright;
 *  - pixels are not colour-managed: the ICC profile is carried, never applied.
 */
#ifndef DREAM_IMAGE_H
#define DREAM_IMAGE_H

#include "dream/api.h"

#include <stddef.h>

#include "dream/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Formats dd_image_load decodes, for help texts and error messages. */
#define DD_IMAGE_FORMATS "JPEG, PNG, BMP, GIF, TGA, PSD, PNM (PPM/PGM), HDR, PIC (Softimage)"
/* The same list as a linkable string. */
extern DD_API const char dd_image_formats[];

typedef struct dd_image {
  int w, h;
  float *rgb; /* w*h*3 */
  /* Metadata of the file the image came from, owned (dd_image_free frees it, so a caller
   * that sets them gives malloc'ed buffers); NULL and 0 when absent.  exif is the TIFF block
   * of an EXIF segment ("II*\0" or "MM\0*" ...), icc an ICC profile, both as bytes in the
   * file. */
  unsigned char *icc;
  size_t icc_len;
  unsigned char *exif;
  size_t exif_len;
} dd_image;

/* Default cap on pixels decoded from a file (the header is checked before decoding). */
#define DD_IMAGE_MAX_PIXELS ((size_t)1 << 28)

/* New black image without metadata; DD_ELIMIT when w or h is < 1 or w*h >
 * DD_IMAGE_MAX_PIXELS, DD_ENOMEM. */
DD_API int dd_image_new(int w, int h, dd_image **out, dd_err *err);
/* Frees the pixels, the metadata and the image; accepts NULL. */
DD_API void dd_image_free(dd_image *im);
/* Replaces dst's metadata with a copy of src's (none when src has none).  DD_ENOMEM leaves
 * dst as it was. */
DD_API int dd_image_copy_meta(dd_image *dst, const dd_image *src, dd_err *err);

/* Decodes any format in DD_IMAGE_FORMATS.  The header's width x height is checked against
 * max_pixels (0: DD_IMAGE_MAX_PIXELS) before anything is decoded (DD_ELIMIT).  Grey becomes
 * RGB; an alpha channel is composited on white.  The EXIF orientation of a JPEG (APP1) or
 * PNG (eXIf) is applied: orientations 5 to 8 swap width and height.  The EXIF block (its
 * orientation rewritten to 1) and the ICC profile (JPEG APP2 chunks, PNG iCCP) are kept in
 * the image; malformed metadata is ignored, never an error.
 * Errors: DD_EIO (cannot read `path`), DD_ELIMIT, DD_ENOMEM, DD_EFORMAT: "path: WebP images
 * are not supported; supported formats: ..." for WebP, TIFF, HEIC/HEIF, AVIF, JPEG XL and
 * JPEG 2000, "path: not an image (stb_image: reason); supported formats: ..." for any
 * other file stb_image cannot read. */
DD_API int dd_image_load(const char *path, size_t max_pixels, dd_image **out, dd_err *err);

/* How dd_image_save_with writes. */
typedef struct dd_image_save_opts {
  int quality;   /* JPEG quality, 1..100; 0: the default, 95.  Ignored by other formats. */
  int keep_meta; /* nonzero: write the image's EXIF and ICC profile (JPEG and PNG only) */
} dd_image_save_opts;

/* The defaults: quality 95, keep_meta 1. */
DD_API void dd_image_save_opts_init(dd_image_save_opts *o);
/* Encodes by extension (.png, .jpg/.jpeg, .bmp, .tga), pixels rounded and clamped to 0..255.
 * Written to a temporary file and renamed, so a failure never leaves a partial file.  With
 * keep_meta, a JPEG gets the EXIF block as APP1 and the ICC profile as APP2 chunks, a PNG
 * gets iCCP and eXIf chunks; the EXIF orientation written is 1.  What a JPEG cannot hold is
 * left out: an EXIF block over 65527 bytes, an ICC profile over 255 chunks of 65519 bytes.
 * opts NULL means the defaults.  Errors: DD_EARG (unknown extension, invalid image, quality
 * outside 0..100), DD_ENOMEM, DD_EIO (cannot write `path`). */
DD_API int dd_image_save_with(const char *path, const dd_image *im, const dd_image_save_opts *opts,
                       dd_err *err);
/* dd_image_save_with with the defaults. */
DD_API int dd_image_save(const char *path, const dd_image *im, dd_err *err);
/* The byte a file stores for each of im's w*h*3 floats, as every save writes them: 0 for
 * anything not above 0 (NaN too), 255 from 255 up, else the nearest integer, ties to even. */
DD_API void dd_image_to_bytes(const dd_image *im, unsigned char *out);
/* out (the size of im; may be im) gets im's pixels as a lossless file gives them back: each
 * rounded as dd_image_to_bytes rounds it, as a float. */
DD_API void dd_image_round(const dd_image *im, dd_image *out);
/* Resampled copy without metadata (stb_image_resize, Mitchell filter down / Catmull-Rom up,
 * edges clamped).  Not clamped to 0..255: the cubic filters may overshoot by a few levels at
 * sharp edges. */
DD_API int dd_image_resize(const dd_image *im, int w, int h, dd_image **out, dd_err *err);

/* A model's input preprocessing: x[c] = (p[c] / 255 * scale - mean[c]) / std[c], with p in
 * 0..255 and channels in BGR order when `bgr` is set. */
typedef struct dd_preproc {
  int bgr;
  float scale;
  float mean[3];
  float std[3];
} dd_preproc;

/* Image -> NCHW float tensor data (1x3xHxW), `out` holds 3*w*h floats. */
DD_API void dd_image_to_input(const dd_image *im, const dd_preproc *pp, float *out);
/* NCHW (1x3xHxW) model input -> image pixels (not clamped). */
DD_API void dd_input_to_image(const float *in, const dd_preproc *pp, dd_image *im);

#ifdef __cplusplus
}
#endif

#endif
