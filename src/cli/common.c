/* What the subcommands share: the model flags, opening a model from a preset, printing
 * errors, sizes. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_model_opts_init(cli_model_opts *o) {
  memset(o, 0, sizeof *o);
  o->bgr = -1;
}

/* "a,b,c" or "a b c" or one number for all three channels. */
static int parse_triple(const char *s, float v[3]) {
  int n = 0;
  while (*s) {
    while (*s == ',' || isspace((unsigned char)*s)) s++;
    if (!*s) break;
    if (n == 3) return -1;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || errno || !isfinite(d)) return -1;
    v[n++] = (float)d;
    s = end;
  }
  if (n == 1) v[1] = v[2] = v[0];
  return n == 1 || n == 3 ? 0 : -1;
}

int cli_model_opt(cli_model_opts *o, int opt, const char *arg) {
  float v[3];
  switch (opt) {
    case CLI_OPT_MODEL:
      o->model = arg;
      return 1;
    case CLI_OPT_MEAN:
    case CLI_OPT_STD:
      if (parse_triple(arg, v) ||
          (opt == CLI_OPT_STD && (!(v[0] > 0) || !(v[1] > 0) || !(v[2] > 0)))) {
        cli_errorf("--%s: expected three numbers like 104,117,123 or one number%s, got '%s'",
                   opt == CLI_OPT_MEAN ? "mean" : "std", opt == CLI_OPT_STD ? " (all > 0)" : "",
                   arg);
        return -1;
      }
      if (opt == CLI_OPT_MEAN) o->mean = arg;
      else o->std = arg;
      return 1;
    case CLI_OPT_BGR:
      o->bgr = 1;
      return 1;
    case CLI_OPT_RGB:
      o->bgr = 0;
      return 1;
    case CLI_OPT_SCALE: {
      char *end;
      errno = 0;
      double s = strtod(arg, &end);
      if (end == arg || *end || errno || !(s > 0) || !isfinite(s)) {
        cli_errorf("--scale: expected a number > 0, got '%s'", arg);
        return -1;
      }
      o->scale = (float)s;
      return 1;
    }
    case CLI_OPT_MAX_MEMORY: {
      long long b = cli_parse_size(arg);
      if (b <= 0) {
        cli_errorf("--max-memory: expected a size like 4G, 512M or 1000000, got '%s'", arg);
        return -1;
      }
      o->max_memory = (size_t)b;
      return 1;
    }
  }
  return 0;
}

int cli_model_open(const cli_model_opts *o, cli_model *out) {
  memset(out, 0, sizeof *out);
  dd_err err;
  dd_preset p;
  if (dd_preset_resolve(o->model ? o->model : "googlenet", &p, &err)) return cli_report(&err);
  /* The values were checked by cli_model_opt. */
  if (o->mean) parse_triple(o->mean, p.pre.mean);
  if (o->std) parse_triple(o->std, p.pre.std);
  if (o->bgr >= 0) p.pre.bgr = o->bgr;
  if (o->scale > 0) p.pre.scale = o->scale;
  dd_model *m;
  if (dd_model_load(p.model_path, &m, &err)) return cli_report(&err);
  char **labels = NULL;
  int n_labels = 0;
  if (p.labels_path[0] && dd_labels_load(p.labels_path, &labels, &n_labels, &err)) {
    dd_model_free(m);
    return cli_report(&err);
  }
  out->preset = p;
  out->model = m;
  out->labels = labels;
  out->n_labels = n_labels;
  out->max_memory = o->max_memory ? o->max_memory : cli_default_max_memory();
  return 0;
}

void cli_model_close(cli_model *m) {
  if (!m) return;
  dd_model_free(m->model);
  dd_labels_free(m->labels, m->n_labels);
  memset(m, 0, sizeof *m);
}

int cli_report(const dd_err *err) {
  fprintf(stderr, "dream: %s\n", err && err->msg[0] ? err->msg : "unknown error");
  return 1;
}

int cli_errorf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("dream: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "dream %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry 'dream %s --help'.\n", cmd);
  va_end(ap);
  return 2;
}

int cli_getopt_error(const char *cmd, int c, char *const *argv) {
  const char *word = optind > 0 ? argv[optind - 1] : "?";
  if (c == ':') return cli_usage_error(cmd, "option '%s' needs a value", word);
  return cli_usage_error(cmd, "unknown option '%s'", word);
}

size_t cli_max_pixels(size_t max_memory) {
  size_t px = (max_memory ? max_memory : cli_default_max_memory()) / 64;
  return px < DD_IMAGE_MAX_PIXELS ? px : DD_IMAGE_MAX_PIXELS;
}

size_t cli_default_max_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return (size_t)1 << 31; /* unknown: a conservative 2 GiB */
  return (size_t)pages * (size_t)page / 2;
}

long long cli_parse_size(const char *s) {
  if (!s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !(v >= 0) || !isfinite(v)) return -1;
  double mult = 1;
  switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; end++; break;
    case 'M': mult = 1024.0 * 1024; end++; break;
    case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
  }
  if (mult > 1 && (*end == 'i' || *end == 'I')) end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return -1;
  v *= mult;
  if (v >= 9.2e18) return -1;
  return (long long)v;
}

int cli_input_shape(const dd_model *m, int w, int h, dd_shape *out) {
  int in = dd_model_input(m);
  if (in < 0) return cli_errorf("%s: the model has no data input", dd_model_name(m));
  dd_shape s = dd_model_input_shape(m);
  if (s.ndim < 0) { /* rank not declared: assume an image model */
    s.ndim = 4;
    for (int i = 0; i < 4; i++) s.d[i] = -1;
  }
  if (s.ndim != 4) {
    for (int i = 0; i < s.ndim; i++)
      if (s.d[i] < 0) s.d[i] = 1;
    *out = s;
    return 0;
  }
  if (s.d[0] < 0) s.d[0] = 1;
  if (s.d[1] < 0) s.d[1] = 3;
  if (s.d[1] != 3)
    return cli_errorf("%s: input '%s' has %lld channels; images have 3", dd_model_name(m),
                      dd_model_value_name(m, in), (long long)s.d[1]);
  int64_t want[2] = {h, w};
  for (int i = 0; i < 2; i++) {
    if (want[i] <= 0) {
      if (s.d[2 + i] < 0)
        return cli_errorf("%s: input '%s' has no fixed size; give one", dd_model_name(m),
                          dd_model_value_name(m, in));
      continue;
    }
    if (s.d[2 + i] >= 0 && s.d[2 + i] != want[i])
      return cli_errorf("%s: input '%s' takes %lldx%lld images only, not %dx%d", dd_model_name(m),
                        dd_model_value_name(m, in), (long long)s.d[3], (long long)s.d[2], w, h);
    s.d[2 + i] = want[i];
  }
  *out = s;
  return 0;
}
