/* Helpers shared by the visualization subcommands. */
#include "cli/visopt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void vis_fv_cli_init(vis_fv_cli *o, int size) {
  memset(o, 0, sizeof *o);
  dd_fv_opts_init(&o->fv);
  o->fv.size = size;
}

int vis_fv_opt(vis_fv_cli *o, int opt, const char *arg, dd_err *err) {
  switch (opt) {
    case VIS_OPT_STEPS:
      return cli_parse_int("--steps", arg, 0, 100000, &o->fv.iters, err) ? -1 : 1;
    case VIS_OPT_ITERS: /* one meaning per name: --iters is per octave, in dream */
      dd_fail(err, DD_EARG, "--iters is the dream's iterations per octave; a visualization "
              "takes --steps N");
      return -1;
    case VIS_OPT_SIZE:
      o->size_given = 1;
      return cli_parse_int("--size", arg, 16, 2048, &o->fv.size, err) ? -1 : 1;
    case VIS_OPT_LR:
      return cli_parse_float("--lr", arg, 0, 10, 1, &o->fv.lr, err) ? -1 : 1;
    case VIS_OPT_JITTER:
      o->jitter_given = 1;
      return cli_parse_int("--jitter", arg, 0, 1024, &o->fv.jitter, err) ? -1 : 1;
    case VIS_OPT_PIXELS:
      o->fv.pixels = 1;
      return 1;
    case VIS_OPT_NO_TRANSFORMS:
      o->no_transforms = 1;
      return 1;
  }
  return 0;
}

void vis_fv_warn(const vis_fv_cli *o) {
  if (o->no_transforms && o->jitter_given)
    cli_warnf("--jitter does nothing with --no-transforms");
}

static int print_progress(const dd_fv_progress *info, void *user) {
  const vis_fv_cli *o = user;
  int iter = info->iter;
  double objective = info->objective;
  int last = iter + 1 == o->fv.iters;
  if (iter % 16 == 0 || last) {
    if (o->count > 1)
      fprintf(stderr, "\r\033[K%s %d (%d/%d): step %d/%d, objective %.4g", o->what, o->index,
              o->index + 1, o->count, iter + 1, o->fv.iters, objective);
    else
      fprintf(stderr, "\r\033[K%s %d: step %d/%d, objective %.4g", o->what, o->index, iter + 1,
              o->fv.iters, objective);
    if (last && o->index + 1 >= o->count) fputc('\n', stderr);
    fflush(stderr);
  }
  return 0;
}

void vis_fv_progress(vis_fv_cli *o, const cli_common *co) {
  if (o->no_transforms) {
    o->fv.jitter = 0;
    o->fv.scale = 0;
    o->fv.rotate = 0;
  }
  if (!cli_progress_shown(co)) return;
  o->fv.progress = print_progress;
  o->fv.user = o;
}

FILE *vis_text_open(char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  return open_memstream(buf, len);
}

int vis_text_close(FILE *f, char **buf, size_t *len, const char *path) {
  int bad = ferror(f);
  if (fclose(f) || bad) {
    free(*buf);
    return cli_errorf("%s: out of memory composing the file", path);
  }
  dd_err err;
  int rc = dd_write_file_atomic(path, *buf, *len, &err);
  free(*buf);
  *buf = NULL;
  return rc ? cli_report(&err) : 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *p);
/* 1 when s holds a byte that is not part of a valid UTF-8 sequence. */
static int utf8_bad(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    int n = utf8_len(p);
    if (!n) return 1;
    p += n;
  }
  return 0;
}

static int utf8_len(const unsigned char *p) {
  int n = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3
          : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
  if (!n) return 0;
  uint32_t cp = n == 1 ? p[0] : p[0] & (0x7F >> n);
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

json_t *vis_json_text(const char *s, int *lossy) {
  size_t n = strlen(s);
  if (lossy) *lossy = 0;
  if (!utf8_bad(s)) return json_stringn(s, n);
  /* Each bad byte (3 bytes of U+FFFD) at most triples the length. */
  char *t = malloc(3 * n + 1);
  if (!t) return NULL;
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    int len = utf8_len(p);
    if (!len) {
      memcpy(t + k, "\xef\xbf\xbd", 3);
      k += 3;
      p++;
    } else {
      memcpy(t + k, p, (size_t)len);
      k += (size_t)len;
      p += len;
    }
  }
  if (lossy) *lossy = 1;
  json_t *j = json_stringn(t, k);
  free(t);
  return j;
}

json_t *vis_json_bytes(const char *s) {
  size_t n = strlen(s);
  char *t = malloc(2 * n + 1);
  if (!t) return NULL;
  for (size_t i = 0; i < n; i++) snprintf(t + 2 * i, 3, "%02x", (unsigned char)s[i]);
  t[2 * n] = 0;
  json_t *j = json_string(t);
  free(t);
  return j;
}

int vis_json_set_path(json_t *obj, const char *key, const char *s) {
  int lossy;
  if (json_object_set_new(obj, key, vis_json_text(s, &lossy))) return -1;
  if (!lossy) return 0;
  char k[128];
  snprintf(k, sizeof k, "%s_bytes", key);
  return json_object_set_new(obj, k, vis_json_bytes(s));
}

json_t *vis_json_seed(uint64_t seed) {
  if (seed <= (uint64_t)INT64_MAX) return json_integer((json_int_t)seed);
  char digits[24];
  snprintf(digits, sizeof digits, "%llu", (unsigned long long)seed);
  return json_string(digits);
}

int vis_json_write(json_t *root, const char *path) {
  if (!root) return cli_errorf("%s: out of memory composing the file", path);
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9) | JSON_ENSURE_ASCII);
  json_decref(root);
  if (!text) return cli_errorf("%s: out of memory composing the file", path);
  size_t len = strlen(text);
  /* A final newline, as a text file has. */
  char *t = realloc(text, len + 2);
  if (!t) {
    free(text);
    return cli_errorf("%s: out of memory composing the file", path);
  }
  t[len] = '\n';
  t[len + 1] = 0;
  dd_err err;
  int rc = dd_write_file_atomic(path, t, len + 1, &err);
  free(t);
  return rc ? cli_report(&err) : 0;
}
