/* Image metadata inside the file bytes: the EXIF TIFF block and the ICC profile of a JPEG
 * or PNG, the EXIF orientation tag, and the formats stb_image does not read, by their
 * magic bytes.  Every reader here treats its input as hostile (it is fuzzed through
 * dd_image_load): a malformed block is ignored, never trusted. */
#ifndef DREAM_IMAGE_META_H
#define DREAM_IMAGE_META_H

#include <stddef.h>

#include "dream/image.h"

/* Name of a format recognised by its first bytes that stb_image does not decode ("WebP",
 * "TIFF", "HEIC/HEIF", "AVIF", "JPEG XL", "JPEG 2000"), or NULL. */
const char *dd_image_unsupported_format(const unsigned char *buf, size_t len);

/* Copies the EXIF TIFF block and the ICC profile found in a JPEG (APP1 "Exif\0\0", APP2
 * "ICC_PROFILE\0" chunks) or PNG (eXIf, iCCP) into im->exif and im->icc.  Anything
 * malformed is skipped; the only failure is DD_ENOMEM. */
int dd_meta_read(const unsigned char *buf, size_t len, dd_image *im);

/* The orientation tag (0x0112) of IFD0 of a TIFF block: 1..8, or 1 when it is absent or
 * malformed. */
int dd_exif_orientation(const unsigned char *tiff, size_t len);
/* Rewrites the orientation tag, when there is a valid one, to 1 (pixels already upright). */
void dd_exif_reset_orientation(unsigned char *tiff, size_t len);

/* `enc` with im's metadata inserted: a new malloc'ed buffer in *out, or *out = NULL when im
 * has nothing the format can carry.  DD_ENOMEM, or DD_EFORMAT when `enc` is not what
 * stb_image_write makes (an internal error). */
int dd_meta_splice_jpeg(const unsigned char *enc, size_t len, const dd_image *im,
                        unsigned char **out, size_t *out_len);
int dd_meta_splice_png(const unsigned char *enc, size_t len, const dd_image *im,
                       unsigned char **out, size_t *out_len);

#endif
