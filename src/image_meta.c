/* The magic bytes of the formats stb_image cannot read. */
#include "image_meta.h"

#include <stdint.h>
#include <string.h>

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *dd_image_unsupported_format(const unsigned char *p, size_t len) {
  if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return "WebP";
  if (len >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4) || !memcmp(p, "II+\0", 4) ||
                   !memcmp(p, "MM\0+", 4)))
    return "TIFF"; /* classic and BigTIFF */
  if (len >= 12 && !memcmp(p, "\0\0\0\x0CJXL \r\n\x87\n", 12)) return "JPEG XL";
  if (len >= 2 && p[0] == 0xFF && p[1] == 0x0A) return "JPEG XL"; /* bare codestream */
  if (len >= 12 && !memcmp(p, "\0\0\0\x0CjP  \r\n\x87\n", 12)) return "JPEG 2000";
  if (len >= 4 && !memcmp(p, "\xFF\x4F\xFF\x51", 4)) return "JPEG 2000"; /* bare codestream */
  /* ISO base media file: an ftyp box whose brands say which image format it holds; AVIF is
   * looked for first because AVIF files also list the generic HEIF brand mif1. */
  if (len >= 16 && !memcmp(p + 4, "ftyp", 4)) {
    size_t box = be32(p);
    if (box < 16 || box > len) box = len < 64 ? len : 64;
    static const char *avif[] = {"avif", "avis"};
    static const char *heif[] = {"heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1"};
    const char *found = NULL;
    for (size_t b = 8; b + 4 <= box; b += 4) {
      if (b == 12) continue; /* the minor version, not a brand */
      for (size_t k = 0; k < 2; k++)
        if (!memcmp(p + b, avif[k], 4)) return "AVIF";
      for (size_t k = 0; k < 8; k++)
        if (!memcmp(p + b, heif[k], 4)) found = "HEIC/HEIF";
    }
    return found;
  }
  return NULL;
}
