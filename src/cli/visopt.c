/* Helpers shared by the visualization subcommands. */
#include "cli/visopt.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util.h"

int vis_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(arg, &end, 10);
  if (errno || end == arg || *end || v < lo || v > hi)
    return cli_usage_error(cmd, "%s: expected an integer in %ld..%ld, got '%s'", opt, lo, hi, arg);
  *out = (int)v;
  return 0;
}

int vis_float(const char *cmd, const char *opt, const char *arg, double lo, double hi,
              float *out) {
  char *end;
  errno = 0;
  double v = strtod(arg, &end);
  if (errno || end == arg || *end || !(v >= lo && v <= hi))
    return cli_usage_error(cmd, "%s: expected a number in %g..%g, got '%s'", opt, lo, hi, arg);
  *out = (float)v;
  return 0;
}

int vis_seed(const char *cmd, const char *arg, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(arg, &end, 0);
  if (errno || end == arg || *end || arg[0] == '-')
    return cli_usage_error(cmd, "--seed: expected a non-negative integer, got '%s'", arg);
  *out = v;
  return 0;
}

int vis_range(const char *cmd, const char *opt, const char *arg, int *c0, int *c1) {
  char *end;
  errno = 0;
  long a = strtol(arg, &end, 10), b = a;
  if (end != arg && *end == '-') {
    const char *s = end + 1;
    b = strtol(s, &end, 10);
    if (end == s) b = -1;
  }
  if (errno || end == arg || *end || a < 0 || b < a || b > 1000000)
    return cli_usage_error(cmd, "%s: expected a channel or a range like 0-63, got '%s'", opt, arg);
  *c0 = (int)a;
  *c1 = (int)b + 1;
  return 0;
}

void vis_fv_cli_init(vis_fv_cli *o, int size) {
  memset(o, 0, sizeof *o);
  dd_fv_opts_init(&o->fv);
  o->fv.size = size;
}

int vis_fv_opt(vis_fv_cli *o, const char *cmd, int opt, const char *arg) {
  switch (opt) {
    case VIS_OPT_ITERS:
      return vis_int(cmd, "--iters", arg, 0, 100000, &o->fv.iters) ? 2 : 1;
    case VIS_OPT_SIZE:
      return vis_int(cmd, "--size", arg, 16, 2048, &o->fv.size) ? 2 : 1;
    case VIS_OPT_SEED:
      return vis_seed(cmd, arg, &o->seed) ? 2 : 1;
    case VIS_OPT_LR:
      return vis_float(cmd, "--lr", arg, 1e-6, 10, &o->fv.lr) ? 2 : 1;
    case VIS_OPT_JITTER:
      return vis_int(cmd, "--jitter", arg, 0, 1024, &o->fv.jitter) ? 2 : 1;
    case VIS_OPT_QUIET:
      o->quiet = 1;
      return 1;
    case VIS_OPT_PIXELS:
      o->fv.pixels = 1;
      return 1;
    case VIS_OPT_NO_TRANSFORMS:
      o->fv.jitter = 0;
      o->fv.scale = 0;
      o->fv.rotate = 0;
      return 1;
  }
  return 0;
}

static int print_progress(void *user, int iter, float objective) {
  const vis_fv_cli *o = user;
  int last = iter + 1 == o->fv.iters;
  if (iter % 16 == 0 || last) {
    if (o->count > 1)
      fprintf(stderr, "\r%s %d (%d/%d): step %d/%d, objective %.4g   ", o->what, o->index,
              o->index + 1, o->count, iter + 1, o->fv.iters, objective);
    else
      fprintf(stderr, "\r%s %d: step %d/%d, objective %.4g   ", o->what, o->index, iter + 1,
              o->fv.iters, objective);
    if (last && o->index + 1 >= o->count) fputc('\n', stderr);
    fflush(stderr);
  }
  return 0;
}

void vis_fv_progress(vis_fv_cli *o) {
  if (o->quiet) return;
  o->fv.progress = print_progress;
  o->fv.user = o;
}

int vis_sibling(const char *path, const char *ext, char *buf, size_t size) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - path) : strlen(path);
  if (stem + strlen(ext) + 1 > size) return cli_errorf("%s: path too long", path);
  memcpy(buf, path, stem);
  strcpy(buf + stem, ext);
  return 0;
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

void vis_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}
