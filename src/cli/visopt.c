/* Helpers shared by the visualization subcommands. */
#include "cli/visopt.h"

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

void vis_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    int n = utf8_len(p);
    if (!n) {
      fputs("\\ufffd", f);
      p++;
    } else if (*p == '"' || *p == '\\') {
      fprintf(f, "\\%c", *p++);
    } else if (*p < 0x20 || *p == 0x7F) {
      fprintf(f, "\\u%04x", *p++);
    } else {
      fwrite(p, 1, (size_t)n, f);
      p += n;
    }
  }
  fputc('"', f);
}
