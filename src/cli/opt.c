/* The command line's one option layer: a grammar for each kind of value (integer, number,
 * seed, range, size, memory) and the options that mean the same in every subcommand.  Every
 * parser is pure: it fills a dd_err and the caller turns it into a usage error (exit 2). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

/* Leading white space and signs are refused everywhere: strtol would take " 5" and "+5". */
static int starts_like_number(const char *s, int allow_minus) {
  return isdigit((unsigned char)s[0]) || s[0] == '.' ||
         (allow_minus && s[0] == '-' && (isdigit((unsigned char)s[1]) || s[1] == '.'));
}

int cli_parse_int(const char *opt, const char *s, long lo, long hi, int *out, dd_err *err) {
  char *end;
  errno = 0;
  long v = starts_like_number(s, lo < 0) ? strtol(s, &end, 10) : 0;
  if (!starts_like_number(s, lo < 0) || end == s || *end || errno || v < lo || v > hi)
    return dd_fail(err, DD_EARG, "%s: expected an integer from %ld to %ld, got '%s'", opt, lo, hi,
                   s);
  *out = (int)v;
  return DD_OK;
}

int cli_parse_float(const char *opt, const char *s, double lo, double hi, int lo_open,
                    float *out, dd_err *err) {
  char *end;
  errno = 0;
  double v = starts_like_number(s, lo < 0) ? strtod(s, &end) : NAN;
  int ok = starts_like_number(s, lo < 0) && end != s && !*end && !errno && isfinite(v) &&
           (lo_open ? v > lo : v >= lo) && v <= hi;
  if (!ok)
    return dd_fail(err, DD_EARG, "%s: expected a number %s %g and <= %g, got '%s'", opt,
                   lo_open ? ">" : ">=", lo, hi, s);
  *out = (float)v;
  return DD_OK;
}

int cli_parse_seed(const char *opt, const char *s, cli_seed *out, dd_err *err) {
  if (!strcmp(s, "random")) {
    out->value = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    out->random = 1;
    return DD_OK;
  }
  char *end;
  errno = 0;
  unsigned long long v = isdigit((unsigned char)s[0]) ? strtoull(s, &end, 10) : 0;
  if (!isdigit((unsigned char)s[0]) || *end || errno)
    return dd_fail(err, DD_EARG,
                   "%s: expected a non-negative integer (decimal) or 'random', got '%s'", opt, s);
  out->value = v;
  out->random = 0;
  return DD_OK;
}

int cli_parse_range(const char *opt, const char *s, int *c0, int *c1, dd_err *err) {
  char *end;
  errno = 0;
  long a = -1, b = -1;
  if (isdigit((unsigned char)s[0])) {
    a = b = strtol(s, &end, 10);
    if (*end == '-' && isdigit((unsigned char)end[1])) b = strtol(end + 1, &end, 10);
  }
  if (a < 0 || *end || errno || b < a || b >= 1000000)
    return dd_fail(err, DD_EARG, "%s: expected a channel or a range like 0-63, got '%s'", opt, s);
  *c0 = (int)a;
  *c1 = (int)b + 1;
  return DD_OK;
}

int cli_parse_shard(const char *opt, const char *s, int *index, int *count, dd_err *err) {
  char *end = (char *)s;
  long i = -1, n = -1;
  errno = 0;
  if (isdigit((unsigned char)s[0])) {
    i = strtol(s, &end, 10);
    if (*end == '/' && isdigit((unsigned char)end[1])) n = strtol(end + 1, &end, 10);
  }
  if (i < 1 || n < 1 || i > n || n > 1000000 || *end || errno)
    return dd_fail(err, DD_EARG, "%s: expected I/N with 1 <= I <= N, like 1/4 (shard 1 of 4), "
                   "got '%s'", opt, s);
  *index = (int)i;
  *count = (int)n;
  return DD_OK;
}

int cli_parse_wh(const char *opt, const char *s, int *w, int *h, dd_err *err) {
  char *end = (char *)s;
  long a = -1, b = -1;
  errno = 0;
  if (isdigit((unsigned char)s[0])) {
    a = b = strtol(s, &end, 10);
    if ((*end == 'x' || *end == 'X') && isdigit((unsigned char)end[1]))
      b = strtol(end + 1, &end, 10);
  }
  if (a < 1 || b < 1 || a > 65536 || b > 65536 || *end || errno)
    return dd_fail(err, DD_EARG, "%s: expected S or WxH in pixels (1 to 65536), like 224 or "
                   "320x240, got '%s'", opt, s);
  *w = (int)a;
  *h = (int)b;
  return DD_OK;
}

int cli_parse_memory(const char *opt, const char *s, size_t *out, dd_err *err) {
  long long b = cli_parse_size(s);
  if (b <= 0)
    return dd_fail(err, DD_EARG, "%s: expected a size like 4G, 512M or 1000000, got '%s'", opt, s);
  *out = (size_t)b;
  return DD_OK;
}

long long cli_parse_size(const char *s) {
  if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.')) return -1;
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

/* "a,b,c" or "a b c" or one number for all three channels. */
int cli_parse_triple(const char *opt, const char *s, int positive, float v[3], dd_err *err) {
  int n = 0;
  const char *p = s;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    if (!*p) break;
    char *end;
    errno = 0;
    double d = n < 3 ? strtod(p, &end) : NAN;
    if (n == 3 || end == p || errno || !isfinite(d) || (positive && !(d > 0))) {
      n = -1;
      break;
    }
    v[n++] = (float)d;
    p = end;
  }
  if (n != 1 && n != 3)
    return dd_fail(err, DD_EARG, "%s: expected three numbers like 104,117,123 or one number%s, "
                   "got '%s'", opt, positive ? " (all > 0)" : "", s);
  if (n == 1) v[1] = v[2] = v[0];
  return DD_OK;
}

void cli_common_init(cli_common *c) {
  memset(c, 0, sizeof *c);
  cli_model_opts_init(&c->model);
  c->framing = DD_FRAME_CROP;
}

int cli_common_opt(cli_common *c, int opt, const char *arg, dd_err *err) {
  float v[3];
  int rc;
  switch (opt) {
    case CLI_OPT_MODEL: c->model.model = arg; return 1;
    case CLI_OPT_MEAN:
    case CLI_OPT_STD:
      rc = cli_parse_triple(opt == CLI_OPT_MEAN ? "--mean" : "--std", arg, opt == CLI_OPT_STD, v,
                            err);
      if (rc) return -1;
      if (opt == CLI_OPT_MEAN) c->model.mean = arg;
      else c->model.std = arg;
      return 1;
    case CLI_OPT_BGR:
    case CLI_OPT_RGB: {
      int bgr = opt == CLI_OPT_BGR;
      if (c->model.bgr >= 0 && c->model.bgr != bgr) c->model.order_conflict = 1;
      c->model.bgr = bgr;
      return 1;
    }
    case CLI_OPT_SCALE:
      return cli_parse_float("--scale", arg, 0, 1e30, 1, &c->model.scale, err) ? -1 : 1;
    case CLI_OPT_MAX_MEMORY:
      return cli_parse_memory("--max-memory", arg, &c->model.max_memory, err) ? -1 : 1;
    case 'q': c->quiet = 1; return 1;
    case CLI_OPT_SEED:
      if (cli_parse_seed("--seed", arg, &c->seed, err)) return -1;
      c->seed_given = 1;
      return 1;
    case CLI_OPT_QUALITY:
      return cli_parse_int("--quality", arg, 1, 100, &c->quality, err) ? -1 : 1;
    case CLI_OPT_FRAMING:
      if (!strcmp(arg, "crop")) c->framing = DD_FRAME_CROP;
      else if (!strcmp(arg, "squash")) c->framing = DD_FRAME_SQUASH;
      else if (!strcmp(arg, "fit")) c->framing = DD_FRAME_FIT;
      else {
        dd_fail(err, DD_EARG, "--framing: expected crop, squash or fit, got '%s'", arg);
        return -1;
      }
      c->framing_given = 1;
      return 1;
    case CLI_OPT_PRECISION:
      if (!strcmp(arg, "auto")) c->precision = DD_PRECISION_AUTO;
      else if (!strcmp(arg, "fp32")) c->precision = DD_PRECISION_FP32;
      else if (!strcmp(arg, "bf16")) c->precision = DD_PRECISION_BF16;
      else {
        dd_fail(err, DD_EARG, "--precision: expected bf16, fp32 or auto, got '%s'", arg);
        return -1;
      }
      return 1;
  }
  return 0;
}

dd_precision cli_precision(const cli_common *c, int dream_loop) {
  dd_precision p = dd_precision_resolve(c->precision, dream_loop);
  if (c->precision == DD_PRECISION_BF16 && p != DD_PRECISION_BF16 && !c->quiet)
    fprintf(stderr, "dream: note: this CPU has no bf16 instructions (AVX512-BF16): "
            "--precision bf16 runs in fp32\n");
  /* auto stays auto: the library resolves it the same way, and its fp32 keeps the fast
   * kernels (Winograd), where fp32 asked for is fp32-exact */
  return c->precision == DD_PRECISION_AUTO ? DD_PRECISION_AUTO : p;
}

void cli_common_warn(const cli_common *c) {
  if (c->model.order_conflict)
    cli_warnf("--bgr and --rgb both given: the last one (%s) is used", c->model.bgr ? "--bgr"
                                                                                    : "--rgb");
}

int cli_progress_shown(const cli_common *c) { return !c->quiet && isatty(STDERR_FILENO); }
