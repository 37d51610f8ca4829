/* Helpers shared by the visualization subcommands (filters, class, activations, explain):
 * option values, the feature-visualization flags, files written beside the picture. */
#ifndef DREAM_CLI_VISOPT_H
#define DREAM_CLI_VISOPT_H

#include <stdint.h>
#include <stdio.h>

#include "dream/visualize.h"

/* Integer option in lo..hi; prints a usage error and returns 2 when it is not. */
int vis_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out);
/* Float option in [lo, hi]; same. */
int vis_float(const char *cmd, const char *opt, const char *arg, double lo, double hi,
              float *out);
/* Unsigned 64-bit seed; same. */
int vis_seed(const char *cmd, const char *arg, uint64_t *out);
/* "A-B" or "A" (inclusive, from 0) -> [*c0, *c1); same. */
int vis_range(const char *cmd, const char *opt, const char *arg, int *c0, int *c1);

/* The feature-visualization options every optimizing subcommand takes. */
enum { VIS_OPT_ITERS = 2001, VIS_OPT_SIZE, VIS_OPT_SEED, VIS_OPT_LR, VIS_OPT_JITTER,
       VIS_OPT_QUIET, VIS_OPT_PIXELS, VIS_OPT_NO_TRANSFORMS };
#define VIS_FV_LONGOPTS                                          \
  {"iters", required_argument, NULL, VIS_OPT_ITERS},             \
      {"size", required_argument, NULL, VIS_OPT_SIZE},           \
      {"seed", required_argument, NULL, VIS_OPT_SEED},           \
      {"lr", required_argument, NULL, VIS_OPT_LR},               \
      {"jitter", required_argument, NULL, VIS_OPT_JITTER},       \
      {"pixels", no_argument, NULL, VIS_OPT_PIXELS},             \
      {"no-transforms", no_argument, NULL, VIS_OPT_NO_TRANSFORMS}, \
      {"quiet", no_argument, NULL, VIS_OPT_QUIET}
#define VIS_FV_HELP                                                                       \
  "      --iters N        optimization steps (default 256)\n"                              \
  "      --size S         side of the optimized image (default %d)\n"                      \
  "      --seed N         random seed of the noise and the transforms (default 0)\n"       \
  "      --lr X           Adam step size on the Fourier spectrum (default 0.05)\n"          \
  "      --jitter PX      largest random shift per step (default size/16)\n"               \
  "      --no-transforms  no random shift, scale or rotation (to see why they are there)\n" \
  "      --pixels         optimize raw pixels, not the decorrelated Fourier image (same)\n" \
  "  -q, --quiet          no progress on stderr\n"

typedef struct vis_fv_cli {
  dd_fv_opts fv;
  uint64_t seed;
  int quiet;
  /* progress display */
  const char *what;
  int index, count;
} vis_fv_cli;

void vis_fv_cli_init(vis_fv_cli *o, int size);
/* Handles one VIS_OPT_* option: 1 handled, 0 not one of them, 2 bad value (printed). */
int vis_fv_opt(vis_fv_cli *o, const char *cmd, int opt, const char *arg);
/* Installs the progress line printer (unless quiet). */
void vis_fv_progress(vis_fv_cli *o);

/* `path` with its extension replaced by `ext` (".csv"), into buf; 0, or 1 when it does not
 * fit (printed). */
int vis_sibling(const char *path, const char *ext, char *buf, size_t size);
/* A text file built with stdio and written atomically: open, fprintf to the stream,
 * close.  vis_text_close returns 0 or 1 (error printed). */
FILE *vis_text_open(char **buf, size_t *len);
int vis_text_close(FILE *f, char **buf, size_t *len, const char *path);
/* JSON string literal of s (quotes and escapes) to f. */
void vis_json_str(FILE *f, const char *s);

#endif
