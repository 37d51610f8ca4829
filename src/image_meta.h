/* What the file bytes say beyond the pixels: here, the formats stb_image does not read, by
 * their magic bytes.  Every reader here treats its input as hostile (it is fuzzed through
 * dd_image_load). */
#ifndef DREAM_IMAGE_META_H
#define DREAM_IMAGE_META_H

#include <stddef.h>

/* Name of a format recognised by its first bytes that stb_image does not decode ("WebP",
 * "TIFF", "HEIC/HEIF", "AVIF", "JPEG XL", "JPEG 2000"), or NULL. */
const char *dd_image_unsupported_format(const unsigned char *buf, size_t len);

#endif
