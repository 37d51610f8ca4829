/* Checks for Debian's stb_image 2.27, found by tests/fuzz/fuzz_image.c.  JPEG:
 *  - a Huffman table (DHT) whose 16 code counts sum past 256 makes stb write past the
 *    table's arrays, in stbi_info as in decoding (fixed upstream in 2.28);
 *  - a scan (SOS) that uses a Huffman table no DHT defined makes stb decode with
 *    uninitialized memory: wild reads, a crash or garbage depending on the heap.
 * The walk mirrors stb's: fill bytes before SOI, segments by their length, and anything else
 * (entropy-coded data, stuffing, restart markers, junk) skipped up to the next marker.
 * PNG:
 *  - stb grows its buffer of IDAT data to a chunk's stated length before it reads the chunk,
 *    so an IDAT that says 1.1 GB in a 3 KB file made it allocate 2 GB.  A chunk longer than
 *    the rest of the file can only end in stb's "outofdata" error, so it is refused first. */
#include "image_guard.h"

#include <stdint.h>
#include <string.h>

static int jpeg_check(const unsigned char *p, size_t len, const char **why) {
  size_t i = 0;
  while (i < len && p[i] == 0xFF) i++;
  if (i == 0 || i == len || p[i] != 0xD8) return 1; /* not a JPEG: nothing to check */
  i++;
  unsigned defined = 0; /* bit t: DC table t; bit 4+t: AC table t */
  int progressive = 0;
  while (i + 1 < len) {
    unsigned m = p[i + 1];
    if (p[i] != 0xFF || m == 0x00 || m == 0xFF || (m >= 0xD0 && m <= 0xD8) || m == 0x01) {
      i++; /* no length follows these */
      continue;
    }
    if (m == 0xD9 || i + 3 >= len) break; /* stb reads nothing after EOI */
    size_t end = i + 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
    if (m == 0xC2) progressive = 1;
    if (m == 0xC4) {
      /* stb reads tables while the segment has bytes left, each 17 + n long */
      for (size_t q = i + 4; q < end;) {
        size_t n = 0;
        for (size_t k = q + 1; k <= q + 16; k++) n += k < len ? p[k] : 0;
        if (n > 256) {
          *why = "a Huffman table has over 256 codes";
          return 0;
        }
        if (q < len && (p[q] >> 4) <= 1 && (p[q] & 15) <= 3)
          defined |= 1u << ((p[q] >> 4) * 4 + (p[q] & 15));
        q += 17 + n;
      }
    }
    if (m == 0xDA && i + 4 < len) {
      size_t ns = p[i + 4], sp = i + 5 + 2 * ns; /* Ss, Se, Ah|Al follow the components */
      if (sp + 2 < len) {
        int ss = p[sp], ah = p[sp + 2] >> 4;
        /* Which tables stb decodes with: both in sequential scans; in progressive ones the
         * DC table for a first DC scan, the AC table for any AC scan. */
        int need_dc = !progressive || (ss == 0 && ah == 0), need_ac = !progressive || ss > 0;
        for (size_t c = 0; c < ns; c++) {
          unsigned td = p[i + 6 + 2 * c] >> 4, ta = p[i + 6 + 2 * c] & 15;
          if ((need_dc && td <= 3 && !(defined >> td & 1)) ||
              (need_ac && ta <= 3 && !(defined >> (4 + ta) & 1))) {
            *why = "a scan uses a Huffman table that is not defined";
            return 0;
          }
        }
      }
    }
    i = end;
  }
  return 1;
}

/* stb reads the chunks in order, up to IEND: each a 4-byte length, a 4-byte type, the data
 * and a 4-byte CRC. */
static int png_check(const unsigned char *p, size_t len, const char **why) {
  static const unsigned char sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (len < 8 || memcmp(p, sig, 8)) return 1; /* not a PNG: nothing to check */
  for (size_t i = 8; i + 8 <= len;) {
    size_t n = (size_t)p[i] << 24 | (size_t)p[i + 1] << 16 | (size_t)p[i + 2] << 8 | p[i + 3];
    if (n > len - i - 8) {
      *why = "a chunk is longer than the rest of the file";
      return 0;
    }
    if (!memcmp(p + i + 4, "IEND", 4)) break;
    i += 12 + n;
  }
  return 1;
}

int dd_image_guard(const void *buf, size_t len, const char *path, dd_err *err) {
  const char *why = NULL;
  if (!jpeg_check(buf, len, &why)) return dd_fail(err, DD_EFORMAT, "%s: corrupt JPEG (%s)", path, why);
  if (!png_check(buf, len, &why)) return dd_fail(err, DD_EFORMAT, "%s: corrupt PNG (%s)", path, why);
  return DD_OK;
}
