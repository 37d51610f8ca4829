/* dream [dream]: DeepDream an image.  Parsing is the pure cli_dream_parse; the rest opens the
 * model, loads the pictures, runs dd_dream_run with a progress bar and writes the result. */
#include "cli/cmd_dream.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dream/image.h"

/* Without AVX-512 the convolution products run in OpenBLAS, whose sums depend on its thread
 * count and on the pieces our threads hand it (README, "Reproducible"). */
#ifdef __AVX512F__
#define SEED_HELP                                                                        \
  "                       the same seed gives the same output, byte for byte, on any\n" \
  "                       number of threads, from the same build on the same CPU\n"
#else
#define SEED_HELP                                                                        \
  "                       the same seed gives the same output, byte for byte, from the\n" \
  "                       same build on the same CPU with the same OMP_NUM_THREADS and\n" \
  "                       OPENBLAS_NUM_THREADS (this build's products run in OpenBLAS)\n"
#endif

static const char dream_help[] =
    "usage: dream [dream] [options] IN OUT\n\n"
    "DeepDream: gradient ascent on IN to amplify what the chosen layers respond to, written to\n"
    "OUT (.jpg, .jpeg, .png, .bmp or .tga).  The defaults are the original DeepDream notebook's\n"
    "on BVLC GoogLeNet: inception_4c/output, 4 octaves of scale 1.4, 10 iterations per octave,\n"
    "step 1.5, random jitter up to 32 px, gradient divided by its mean absolute value.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -l, --layer SPEC     NAME[#CHANNEL][:WEIGHT], repeatable: a value name as `dream layers`\n"
    "                       lists it or a convN alias; #CHANNEL: that channel only; :WEIGHT\n"
    "                       (default 1, may be negative).  Default: the preset's layer.\n"
    "      --octaves N      number of scales (4)\n"
    "      --octave-scale S size ratio between octaves, > 1 (1.4)\n"
    "      --iters N        iterations per octave (10)\n"
    "      --step S         step size in pixel units, after normalization (1.5)\n"
    "      --jitter N       random roll of up to N pixels each way (32)\n"
    "      --norm NORM      gradient normalization: meanabs, std or laplacian (meanabs)\n"
    "      --lap-levels N   levels of the Laplacian pyramid (4)\n"
    "      --tile N         compute gradients in N x N tiles (default: only when the whole\n"
    "                       image would exceed --max-memory)\n"
    "      --guide IMG      guided dream: the features of IMG that best match each position\n"
    "      --guide-size N   shrink the guide to N pixels on its longer side first (224; 0: no)\n"
    "      --seed N         seed of the jitter (default: from the clock, printed at the end):\n"
    SEED_HELP
    "      --checkpoint-every N  write OUT every N iterations, so an interrupted run leaves\n"
    "                       the last complete checkpoint\n"
    "      --max-side N     shrink IN first so that its longer side is at most N pixels\n"
    "      --timing         print the time of the dream itself (after loading, before\n"
    "                       writing) on stderr, for benchmarks: 'dream: loop S s'\n"
    "  -q, --quiet          no progress bar, no summary\n"
    "  -h, --help           this help\n\n"
    "Ctrl-C stops between iterations without writing OUT (a second Ctrl-C kills at once).\n";

enum {
  OPT_OCTAVES = 2001, OPT_OCTAVE_SCALE, OPT_ITERS, OPT_STEP, OPT_JITTER, OPT_NORM,
  OPT_LAP_LEVELS, OPT_TILE, OPT_GUIDE, OPT_GUIDE_SIZE, OPT_SEED, OPT_CHECKPOINT, OPT_MAX_SIDE,
  OPT_TIMING
};

/* ---- parsing (pure) ---- */

static int parse_int(const char *opt, const char *s, long lo, long hi, int *out, dd_err *err) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi || isspace((unsigned char)*s))
    return dd_fail(err, DD_EARG, "--%s: expected an integer from %ld to %ld, got '%s'", opt, lo,
                   hi, s);
  *out = (int)v;
  return DD_OK;
}

static int parse_float(const char *opt, const char *s, double lo_excl, double hi, float *out,
                       dd_err *err) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v) || !(v > lo_excl) || v > hi ||
      isspace((unsigned char)*s))
    return dd_fail(err, DD_EARG, "--%s: expected a number > %g and <= %g, got '%s'", opt,
                   lo_excl, hi, s);
  *out = (float)v;
  return DD_OK;
}

/* "a,b,c" or one number (the syntax cli_model_open reads). */
static int check_triple(const char *opt, const char *s, int positive, dd_err *err) {
  const char *p = s;
  int n = 0;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    if (!*p) break;
    char *end;
    errno = 0;
    double d = strtod(p, &end);
    if (end == p || errno || !isfinite(d) || (positive && !(d > 0)) || ++n > 3) n = 99;
    if (n == 99) break;
    p = end;
  }
  if (n != 1 && n != 3)
    return dd_fail(err, DD_EARG, "--%s: expected three numbers like 104,117,123 or one number%s, "
                   "got '%s'", opt, positive ? " (all > 0)" : "", s);
  return DD_OK;
}

static int has_image_ext(const char *path) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  if (!dot || (slash && slash > dot)) return 0;
  static const char *const exts[] = {"jpg", "jpeg", "png", "bmp", "tga"};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    const char *a = dot + 1, *b = exts[i];
    while (*a && *b && tolower((unsigned char)*a) == *b) a++, b++;
    if (!*a && !*b) return 1;
  }
  return 0;
}

int cli_dream_parse(int argc, char **argv, cli_dream_args *out, dd_err *err) {
  static const struct option longopts[] = {
      CLI_MODEL_LONGOPTS,
      {"layer", required_argument, NULL, 'l'},
      {"octaves", required_argument, NULL, OPT_OCTAVES},
      {"octave-scale", required_argument, NULL, OPT_OCTAVE_SCALE},
      {"iters", required_argument, NULL, OPT_ITERS},
      {"step", required_argument, NULL, OPT_STEP},
      {"jitter", required_argument, NULL, OPT_JITTER},
      {"norm", required_argument, NULL, OPT_NORM},
      {"lap-levels", required_argument, NULL, OPT_LAP_LEVELS},
      {"tile", required_argument, NULL, OPT_TILE},
      {"guide", required_argument, NULL, OPT_GUIDE},
      {"guide-size", required_argument, NULL, OPT_GUIDE_SIZE},
      {"seed", required_argument, NULL, OPT_SEED},
      {"checkpoint-every", required_argument, NULL, OPT_CHECKPOINT},
      {"max-side", required_argument, NULL, OPT_MAX_SIDE},
      {"timing", no_argument, NULL, OPT_TIMING},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  cli_dream_args a;
  memset(&a, 0, sizeof a);
  cli_model_opts_init(&a.model);
  dd_dream_params_default(&a.params);
  a.guide_size = 224;
  int c, rc = DD_OK;
  char name[512];
  opterr = 0;
  optind = 0;
  while (!rc && (c = getopt_long(argc, argv, ":m:l:qh", longopts, NULL)) != -1) {
    const char *v = optarg;
    switch (c) {
      case CLI_OPT_MODEL: a.model.model = v; break;
      case CLI_OPT_MEAN:
        if (!(rc = check_triple("mean", v, 0, err))) a.model.mean = v;
        break;
      case CLI_OPT_STD:
        if (!(rc = check_triple("std", v, 1, err))) a.model.std = v;
        break;
      case CLI_OPT_BGR: a.model.bgr = 1; break;
      case CLI_OPT_RGB: a.model.bgr = 0; break;
      case CLI_OPT_SCALE: rc = parse_float("scale", v, 0, 1e30, &a.model.scale, err); break;
      case CLI_OPT_MAX_MEMORY: {
        long long b = cli_parse_size(v);
        if (b <= 0)
          rc = dd_fail(err, DD_EARG, "--max-memory: expected a size like 4G, 512M or 1000000, "
                       "got '%s'", v);
        else a.model.max_memory = (size_t)b;
        break;
      }
      case 'l': {
        int ch;
        float w;
        if (a.n_layers == DD_DREAM_MAX_LAYERS)
          rc = dd_fail(err, DD_EARG, "--layer: at most %d layers", DD_DREAM_MAX_LAYERS);
        else if (!(rc = dd_dream_layer_spec(v, name, sizeof name, &ch, &w, err)))
          a.layers[a.n_layers++] = v;
        else
          dd_err_prefix(err, "--layer");
        break;
      }
      case OPT_OCTAVES: rc = parse_int("octaves", v, 1, 64, &a.params.octaves, err); break;
      case OPT_OCTAVE_SCALE:
        rc = parse_float("octave-scale", v, 1, 16, &a.params.octave_scale, err);
        break;
      case OPT_ITERS: rc = parse_int("iters", v, 1, 1000000, &a.params.iters, err); break;
      case OPT_STEP: rc = parse_float("step", v, 0, 1e6, &a.params.step, err); break;
      case OPT_JITTER: rc = parse_int("jitter", v, 0, 1 << 20, &a.params.jitter, err); break;
      case OPT_NORM:
        if (!strcmp(v, "meanabs")) a.params.norm = DD_NORM_MEANABS;
        else if (!strcmp(v, "std")) a.params.norm = DD_NORM_STD;
        else if (!strcmp(v, "laplacian")) a.params.norm = DD_NORM_LAPLACIAN;
        else rc = dd_fail(err, DD_EARG, "--norm: expected meanabs, std or laplacian, got '%s'", v);
        break;
      case OPT_LAP_LEVELS: rc = parse_int("lap-levels", v, 1, 12, &a.params.lap_levels, err); break;
      case OPT_TILE: rc = parse_int("tile", v, DD_DREAM_MIN_TILE, 65536, &a.params.tile, err); break;
      case OPT_GUIDE: a.guide = v; break;
      case OPT_GUIDE_SIZE: rc = parse_int("guide-size", v, 0, 65536, &a.guide_size, err); break;
      case OPT_SEED: {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (end == v || *end || errno || !isdigit((unsigned char)*v))
          rc = dd_fail(err, DD_EARG, "--seed: expected a non-negative integer, got '%s'", v);
        a.params.seed = s;
        a.seed_given = 1;
        break;
      }
      case OPT_CHECKPOINT:
        rc = parse_int("checkpoint-every", v, 1, 1 << 30, &a.params.checkpoint_every, err);
        break;
      case OPT_MAX_SIDE: rc = parse_int("max-side", v, 0, 1 << 20, &a.max_side, err); break;
      case OPT_TIMING: a.timing = 1; break;
      case 'q': a.quiet = 1; break;
      case 'h': a.help = 1; break;
      case ':':
        rc = dd_fail(err, DD_EARG, "option '%s' needs a value",
                     optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        break;
      default:
        rc = dd_fail(err, DD_EARG, "unknown option '%s'",
                     optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        break;
    }
  }
  if (rc) return rc;
  if (a.help) {
    *out = a;
    return DD_OK;
  }
  int npos = argc - optind;
  if (npos < 2) return dd_fail(err, DD_EARG, "expected IN and OUT image paths");
  if (npos > 2)
    return dd_fail(err, DD_EARG, "expected only IN and OUT, got also '%s'", argv[optind + 2]);
  a.in = argv[optind];
  a.out = argv[optind + 1];
  if (!*a.in || !*a.out) return dd_fail(err, DD_EARG, "empty file name");
  if (!has_image_ext(a.out))
    return dd_fail(err, DD_EARG, "%s: the output's extension must be .jpg, .jpeg, .png, .bmp or "
                   ".tga", a.out);
  if (!strcmp(a.in, a.out))
    return dd_fail(err, DD_EARG, "OUT is IN (%s): the input is never overwritten", a.in);
  *out = a;
  return DD_OK;
}

/* ---- running ---- */

/* Set by SIGINT/SIGTERM, polled by the library between iterations: the one global. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct progress_state {
  int bar;         /* draw the bar (stderr is a terminal and not --quiet) */
  double start;
  const char *out; /* checkpoints go here */
  int checkpoints; /* written so far */
  int drawn;       /* a bar line is on the screen */
  int failed;      /* a checkpoint could not be written (and that was reported) */
} progress_state;

static int on_progress(const dd_dream_progress *p, void *user) {
  progress_state *s = user;
  if (p->checkpoint) {
    dd_err err;
    if (dd_image_save(s->out, p->checkpoint, &err)) {
      if (s->drawn) fputc('\n', stderr);
      s->drawn = 0;
      cli_report(&err);
      s->failed = 1;
      return DD_EIO;
    }
    s->checkpoints++;
  }
  if (!s->bar) return 0;
  double el = now_seconds() - s->start;
  double left = p->done > 0 ? el * (1 - p->done) / p->done : 0;
  char bar[21];
  int fill = (int)(p->done * 20 + 0.5);
  for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
  bar[20] = 0;
  fprintf(stderr, "\r\033[Koctave %d/%d %dx%d%s iter %2d/%d [%s] %3.0f%% objective %.4g  %d:%02d left",
          p->octave + 1, p->n_octaves, p->w, p->h, p->tiles > 1 ? " (tiled)" : "", p->iter + 1,
          p->n_iters, bar, p->done * 100, p->objective, (int)left / 60, (int)left % 60);
  fflush(stderr);
  s->drawn = 1;
  return 0;
}

/* 1 when `a` and `b` name the same existing file. */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* An image, shrunk (keeping its aspect) so its longer side is at most `size` (0: any). */
static int load_shrunk(const char *path, int size, size_t max_memory, dd_image **out,
                       dd_err *err) {
  dd_image *g;
  int rc = dd_image_load(path, cli_max_pixels(max_memory), &g, err);
  if (rc) return rc;
  int longer = g->w > g->h ? g->w : g->h;
  if (size > 0 && longer > size) {
    int w = (int)lround((double)g->w * size / longer), h = (int)lround((double)g->h * size / longer);
    dd_image *r;
    rc = dd_image_resize(g, w < 1 ? 1 : w, h < 1 ? 1 : h, &r, err);
    dd_image_free(g);
    if (rc) return rc;
    g = r;
  }
  *out = g;
  return DD_OK;
}

int cmd_dream(int argc, char **argv) {
  cli_dream_args a;
  dd_err err;
  if (cli_dream_parse(argc, argv, &a, &err)) return cli_usage_error("dream", "%s", err.msg);
  if (a.help) {
    fputs(dream_help, stdout);
    return 0;
  }
  if (same_file(a.in, a.out))
    return cli_errorf("%s and %s are the same file: the input is never overwritten", a.out, a.in);
  if (a.guide && same_file(a.guide, a.out))
    return cli_errorf("%s and %s are the same file: the guide is never overwritten", a.out,
                      a.guide);
  /* find out now, not after the dream, that OUT cannot be written */
  char dir[4096];
  const char *slash = strrchr(a.out, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - a.out) + 1 : 1, slash ? a.out : ".");
  if (access(dir, W_OK) != 0)
    return cli_errorf("%s: cannot write in %s: %s", a.out, dir, strerror(errno));

  cli_model cm;
  if (cli_model_open(&a.model, &cm)) return 1;
  int status = 1;
  dd_image *img = NULL, *guide = NULL;
  dd_dream_params p = a.params;
  if (!a.n_layers) {
    if (!cm.preset.layer[0]) {
      cli_errorf("%s: the model has no default layer; give one with --layer",
                 dd_model_name(cm.model));
      goto done;
    }
    a.layers[a.n_layers++] = cm.preset.layer;
  }
  p.n_layers = a.n_layers;
  for (int i = 0; i < a.n_layers; i++)
    if (dd_dream_layer_resolve(cm.model, a.layers[i], &p.layers[i], &err)) {
      cli_report(&err);
      goto done;
    }
  if (load_shrunk(a.in, a.max_side, cm.max_memory, &img, &err)) {
    cli_report(&err);
    goto done;
  }
  if (a.guide) {
    if (load_shrunk(a.guide, a.guide_size, cm.max_memory, &guide, &err)) {
      cli_report(&err);
      goto done;
    }
    p.guide = guide;
  }
  if (!a.seed_given) p.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  p.max_memory = cm.max_memory;
  p.cancel = &interrupted;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND; /* a second signal acts as usual */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  progress_state ps = {!a.quiet && isatty(STDERR_FILENO), now_seconds(), a.out, 0, 0, 0};
  double loop_start = now_seconds();
  int rc = dd_dream_run(cm.model, &cm.preset.pre, &p, img, on_progress, &ps, &err);
  double loop_seconds = now_seconds() - loop_start;
  if (ps.drawn) fputc('\n', stderr);
  if (rc == DD_EINTR) {
    if (ps.checkpoints)
      cli_errorf("interrupted; %s holds the last checkpoint", a.out);
    else
      cli_errorf("interrupted; %s was not written", a.out);
    status = 128 + (interrupted ? (int)interrupted : SIGINT); /* 130 SIGINT, 143 SIGTERM */
    goto done;
  }
  if (rc) {
    if (!ps.failed) cli_report(&err);
    goto done;
  }
  if (dd_image_save(a.out, img, &err)) {
    cli_report(&err);
    goto done;
  }
  if (a.timing) fprintf(stderr, "dream: loop %.3f s\n", loop_seconds);
  if (!a.quiet)
    fprintf(stderr, "dream: wrote %s (%dx%d) in %.1f s, seed %llu\n", a.out, img->w, img->h,
            now_seconds() - ps.start, (unsigned long long)p.seed);
  status = 0;
done:
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  dd_image_free(img);
  dd_image_free(guide);
  cli_model_close(&cm);
  return status;
}
