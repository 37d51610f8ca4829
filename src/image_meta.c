/* EXIF and ICC metadata in JPEG and PNG files, read on load and written on save, and the
 * magic bytes of the formats stb_image cannot read.
 *
 * The layouts followed: EXIF 2.3 (CIPA DC-008) for the APP1 "Exif\0\0" segment and its TIFF
 * block; ICC.1 annex B.4 for the APP2 "ICC_PROFILE\0" chunks (1-based sequence number and
 * chunk count, at most 255 chunks); PNG 1.2 and its eXIf extension for the chunks. */
#include "image_meta.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

/* Exported by libstb.so, but stb_image_write.h declares it only in its implementation part. */
unsigned char *stbi_zlib_compress(unsigned char *data, int data_len, int *out_len, int quality);

/* Largest ICC profile decompressed from a PNG: far above real profiles (a few MiB at most);
 * it stops a zlib bomb in an iCCP chunk. */
#define ICC_MAX ((size_t)16 << 20)
/* A JPEG segment holds 65535 bytes less its 2 length bytes and the identifier. */
#define JPEG_EXIF_MAX (65535 - 2 - 6)
#define JPEG_ICC_CHUNK (65535 - 2 - 14)

static const unsigned char EXIF_ID[6] = {'E', 'x', 'i', 'f', 0, 0};
static const unsigned char ICC_ID[12] = {'I', 'C', 'C', '_', 'P', 'R', 'O', 'F', 'I', 'L', 'E', 0};
static const unsigned char PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
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

/* ---- EXIF ------------------------------------------------------------------------------ */

typedef struct tiff {
  const unsigned char *p;
  size_t len;
  int be;
} tiff;

static unsigned t_u16(const tiff *t, size_t at) {
  return t->be ? (unsigned)t->p[at] << 8 | t->p[at + 1] : (unsigned)t->p[at + 1] << 8 | t->p[at];
}

static uint32_t t_u32(const tiff *t, size_t at) {
  return t->be ? be32(t->p + at)
               : (uint32_t)t->p[at + 3] << 24 | (uint32_t)t->p[at + 2] << 16 |
                     (uint32_t)t->p[at + 1] << 8 | t->p[at];
}

/* Offset in the block of the orientation value (a SHORT), or 0 when there is no valid tag.
 * Only IFD0 is read: it is where the tag for the main image lives (IFD1 describes the
 * thumbnail), so no IFD chain is followed and a looping chain cannot matter. */
static size_t orientation_at(const unsigned char *p, size_t len) {
  if (!p || len < 8) return 0;
  tiff t = {p, len, 0};
  if (p[0] == 'M' && p[1] == 'M') t.be = 1;
  else if (!(p[0] == 'I' && p[1] == 'I')) return 0;
  if (t_u16(&t, 2) != 42) return 0;
  uint32_t ifd = t_u32(&t, 4);
  if (ifd < 8 || ifd > len - 2) return 0;
  size_t n = t_u16(&t, ifd);
  if (n > (len - ifd - 2) / 12) return 0; /* an IFD that does not fit is not trusted at all */
  for (size_t i = 0; i < n; i++) {
    size_t e = ifd + 2 + 12 * i;
    /* type 3 is SHORT; one SHORT sits in the first two bytes of the 4-byte value field */
    if (t_u16(&t, e) == 0x0112 && t_u16(&t, e + 2) == 3 && t_u32(&t, e + 4) == 1) {
      unsigned v = t_u16(&t, e + 8);
      return v >= 1 && v <= 8 ? e + 8 : 0;
    }
  }
  return 0;
}

int dd_exif_orientation(const unsigned char *p, size_t len) {
  size_t at = orientation_at(p, len);
  if (!at) return 1;
  return p[0] == 'M' ? p[at + 1] | p[at] << 8 : p[at] | p[at + 1] << 8;
}

void dd_exif_reset_orientation(unsigned char *p, size_t len) {
  size_t at = orientation_at(p, len);
  if (!at) return;
  p[at] = p[0] == 'M' ? 0 : 1;
  p[at + 1] = p[0] == 'M' ? 1 : 0;
}

/* ---- reading --------------------------------------------------------------------------- */

static unsigned char *dup_bytes(const unsigned char *p, size_t n) {
  unsigned char *d = malloc(n ? n : 1);
  if (d) memcpy(d, p, n);
  return d;
}

static int jpeg_read(const unsigned char *p, size_t len, dd_image *im) {
  const unsigned char *chunk[256] = {0}; /* ICC chunk by sequence number, 1..count */
  size_t chunk_len[256] = {0};
  unsigned count = 0;
  int icc_bad = 0;
  const unsigned char *exif = NULL;
  size_t exif_len = 0;
  size_t i = 2;
  /* Metadata segments come before the first scan; the walk ends there or at anything that
   * is not a well-formed segment. */
  while (i + 4 <= len && p[i] == 0xFF) {
    unsigned m = p[i + 1];
    if (m == 0xFF) {
      i++; /* fill byte */
      continue;
    }
    if (m == 0xDA || m == 0xD9 || m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) break;
    size_t seg = (size_t)p[i + 2] << 8 | p[i + 3];
    if (seg < 2 || seg > len - i - 2) break;
    const unsigned char *d = p + i + 4;
    size_t n = seg - 2;
    if (m == 0xE1 && !exif && n >= 6 + 8 && !memcmp(d, EXIF_ID, 6)) {
      exif = d + 6;
      exif_len = n - 6;
    } else if (m == 0xE2 && n >= 14 && !memcmp(d, ICC_ID, 12)) {
      unsigned seq = d[12], cnt = d[13];
      if (!cnt || !seq || seq > cnt || (count && cnt != count) || chunk[seq]) icc_bad = 1;
      else {
        count = cnt;
        chunk[seq] = d + 14;
        chunk_len[seq] = n - 14;
      }
    }
    i += 2 + seg;
  }
  if (exif) {
    if (!(im->exif = dup_bytes(exif, exif_len))) return DD_ENOMEM;
    im->exif_len = exif_len;
  }
  size_t total = 0;
  for (unsigned s = 1; s <= count; s++) {
    if (!chunk[s]) icc_bad = 1;
    total += chunk_len[s];
  }
  if (count && !icc_bad && total) {
    unsigned char *icc = malloc(total);
    if (!icc) return DD_ENOMEM;
    size_t at = 0;
    for (unsigned s = 1; s <= count; s++) {
      memcpy(icc + at, chunk[s], chunk_len[s]);
      at += chunk_len[s];
    }
    im->icc = icc;
    im->icc_len = total;
  }
  return DD_OK;
}

/* zlib data of an iCCP chunk, decoded into a buffer that grows while stb reports it full,
 * up to ICC_MAX.  NULL when corrupt or too large; *oom set when memory ran out. */
static unsigned char *inflate_capped(const unsigned char *z, size_t zlen, size_t *out_len,
                                     int *oom) {
  if (zlen > INT32_MAX) return NULL;
  size_t cap = zlen * 4 > 4096 ? zlen * 4 : 4096;
  for (;;) {
    if (cap > ICC_MAX) cap = ICC_MAX;
    char *buf = malloc(cap);
    if (!buf) {
      *oom = 1;
      return NULL;
    }
    int n = stbi_zlib_decode_buffer(buf, (int)cap, (const char *)z, (int)zlen);
    if (n > 0) {
      *out_len = (size_t)n;
      return (unsigned char *)buf;
    }
    free(buf);
    if (n == 0) return NULL; /* an empty profile is no profile */
    const char *why = stbi_failure_reason();
    if (cap == ICC_MAX || !why || strcmp(why, "output buffer limit")) return NULL;
    cap *= 2;
  }
}

static int png_read(const unsigned char *p, size_t len, dd_image *im) {
  int seen_icc = 0;
  for (size_t i = 8; i + 12 <= len;) {
    size_t n = be32(p + i);
    if (n > len - i - 12) break;
    const unsigned char *type = p + i + 4, *d = p + i + 8;
    if (!memcmp(type, "IEND", 4)) break;
    if (!memcmp(type, "eXIf", 4) && !im->exif && n >= 8) {
      if (!(im->exif = dup_bytes(d, n))) return DD_ENOMEM;
      im->exif_len = n;
    } else if (!memcmp(type, "iCCP", 4) && !seen_icc) {
      seen_icc = 1;
      /* profile name (1..79 bytes), NUL, compression method 0 (zlib), zlib data */
      size_t k = 0;
      while (k < n && k < 80 && d[k]) k++;
      if (k >= 1 && k < 80 && k + 2 < n && d[k + 1] == 0) {
        int oom = 0;
        size_t icc_len = 0;
        unsigned char *icc = inflate_capped(d + k + 2, n - k - 2, &icc_len, &oom);
        if (oom) return DD_ENOMEM;
        if (icc) {
          im->icc = icc;
          im->icc_len = icc_len;
        }
      }
    }
    i += 12 + n;
  }
  return DD_OK;
}

int dd_meta_read(const unsigned char *buf, size_t len, dd_image *im) {
  int rc = DD_OK;
  if (len >= 2 && buf[0] == 0xFF && buf[1] == 0xD8) rc = jpeg_read(buf, len, im);
  else if (len >= 8 && !memcmp(buf, PNG_SIG, 8)) rc = png_read(buf, len, im);
  if (rc) {
    free(im->exif);
    free(im->icc);
    im->exif = im->icc = NULL;
    im->exif_len = im->icc_len = 0;
  }
  return rc;
}

/* ---- writing --------------------------------------------------------------------------- */

/* `enc` with `ins` (already laid out) inserted at byte `at`. */
static int splice(const unsigned char *enc, size_t len, size_t at, const unsigned char *ins,
                  size_t ins_len, unsigned char **out, size_t *out_len) {
  unsigned char *o = malloc(len + ins_len);
  if (!o) return DD_ENOMEM;
  memcpy(o, enc, at);
  memcpy(o + at, ins, ins_len);
  memcpy(o + at + ins_len, enc + at, len - at);
  *out = o;
  *out_len = len + ins_len;
  return DD_OK;
}

int dd_meta_splice_jpeg(const unsigned char *enc, size_t len, const dd_image *im,
                        unsigned char **out, size_t *out_len) {
  *out = NULL;
  /* What cannot fit is left out: an EXIF block over one segment, an ICC profile over 255
   * chunks.  Neither has a standard way to continue in a JPEG. */
  int exif = im->exif && im->exif_len >= 8 && im->exif_len <= JPEG_EXIF_MAX;
  size_t chunks = im->icc && im->icc_len ? (im->icc_len + JPEG_ICC_CHUNK - 1) / JPEG_ICC_CHUNK : 0;
  if (chunks > 255) chunks = 0;
  if (!exif && !chunks) return DD_OK;
  if (len < 4 || enc[0] != 0xFF || enc[1] != 0xD8) return DD_EFORMAT;
  /* After SOI and the JFIF APP0 stb writes, as libjpeg orders them: JFIF readers want APP0
   * first, and EXIF readers look through the APP segments for APP1. */
  size_t at = 2;
  if (enc[2] == 0xFF && enc[3] == 0xE0) {
    if (len < 6) return DD_EFORMAT;
    size_t seg = (size_t)enc[4] << 8 | enc[5];
    if (seg < 2 || seg > len - 4) return DD_EFORMAT;
    at = 4 + seg;
  }
  size_t n = (exif ? 4 + 6 + im->exif_len : 0) + chunks * (4 + 14) + (chunks ? im->icc_len : 0);
  unsigned char *ins = malloc(n), *q = ins;
  if (!ins) return DD_ENOMEM;
  if (exif) {
    size_t seg = 2 + 6 + im->exif_len;
    *q++ = 0xFF;
    *q++ = 0xE1;
    *q++ = (unsigned char)(seg >> 8);
    *q++ = (unsigned char)seg;
    memcpy(q, EXIF_ID, 6);
    memcpy(q + 6, im->exif, im->exif_len);
    /* The pixels written are the upright ones: a viewer must not turn them again. */
    dd_exif_reset_orientation(q + 6, im->exif_len);
    q += 6 + im->exif_len;
  }
  for (size_t c = 0; c < chunks; c++) {
    size_t off = c * JPEG_ICC_CHUNK;
    size_t part = im->icc_len - off < JPEG_ICC_CHUNK ? im->icc_len - off : JPEG_ICC_CHUNK;
    size_t seg = 2 + 14 + part;
    *q++ = 0xFF;
    *q++ = 0xE2;
    *q++ = (unsigned char)(seg >> 8);
    *q++ = (unsigned char)seg;
    memcpy(q, ICC_ID, 12);
    q[12] = (unsigned char)(c + 1);
    q[13] = (unsigned char)chunks;
    memcpy(q + 14, im->icc + off, part);
    q += 14 + part;
  }
  int rc = splice(enc, len, at, ins, n, out, out_len);
  free(ins);
  return rc;
}

static uint32_t crc32_png(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) {
  uint32_t table[256];
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < na; i++) c = table[(c ^ a[i]) & 0xFF] ^ (c >> 8);
  for (size_t i = 0; i < nb; i++) c = table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* Lays out one chunk at q: length, type, data, CRC of type and data. */
static unsigned char *put_chunk(unsigned char *q, const char *type, const unsigned char *d,
                                size_t n) {
  put_be32(q, (uint32_t)n);
  memcpy(q + 4, type, 4);
  if (n) memcpy(q + 8, d, n);
  put_be32(q + 8 + n, crc32_png(q + 4, 4, d, n));
  return q + 12 + n;
}

int dd_meta_splice_png(const unsigned char *enc, size_t len, const dd_image *im,
                       unsigned char **out, size_t *out_len) {
  *out = NULL;
  int exif = im->exif && im->exif_len >= 8 && im->exif_len <= INT32_MAX;
  int icc = im->icc && im->icc_len && im->icc_len <= INT32_MAX / 2;
  if (!exif && !icc) return DD_OK;
  /* The chunks go right after IHDR: iCCP must precede PLTE and IDAT, and eXIf readers look
   * before IDAT. */
  if (len < 33 || memcmp(enc, PNG_SIG, 8) || be32(enc + 8) != 13 || memcmp(enc + 12, "IHDR", 4))
    return DD_EFORMAT;
  static const char name[] = "ICC profile"; /* any Latin-1 name of 1..79 bytes */
  unsigned char *iccp = NULL, *z = NULL;
  size_t iccp_len = 0;
  if (icc) {
    int zlen = 0;
    z = stbi_zlib_compress(im->icc, (int)im->icc_len, &zlen, 8);
    if (!z) return DD_ENOMEM;
    iccp_len = sizeof name + 1 + (size_t)zlen; /* name, its NUL, method 0, data */
    iccp = malloc(iccp_len);
    if (!iccp) {
      free(z);
      return DD_ENOMEM;
    }
    memcpy(iccp, name, sizeof name);
    iccp[sizeof name] = 0;
    memcpy(iccp + sizeof name + 1, z, (size_t)zlen);
    free(z);
  }
  size_t n = (icc ? 12 + iccp_len : 0) + (exif ? 12 + im->exif_len : 0);
  unsigned char *ins = malloc(n), *tiff = exif ? dup_bytes(im->exif, im->exif_len) : NULL;
  int rc = DD_ENOMEM;
  if (ins && (!exif || tiff)) {
    unsigned char *q = ins;
    if (icc) q = put_chunk(q, "iCCP", iccp, iccp_len);
    if (exif) {
      dd_exif_reset_orientation(tiff, im->exif_len);
      put_chunk(q, "eXIf", tiff, im->exif_len);
    }
    rc = splice(enc, len, 33, ins, n, out, out_len);
  }
  free(ins);
  free(tiff);
  free(iccp);
  return rc;
}
