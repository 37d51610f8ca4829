/* Helpers shared by the visualization subcommands (filters, class, activations, explain):
 * the feature-visualization options, files written beside the picture. */
#ifndef DREAM_CLI_VISOPT_H
#define DREAM_CLI_VISOPT_H

#include <stdint.h>
#include <stdio.h>

#include "cli/cli.h"
#include "dream/visualize.h"

/* The feature-visualization options every optimizing subcommand takes. */
enum { VIS_OPT_STEPS = 2001, VIS_OPT_SIZE, VIS_OPT_LR, VIS_OPT_JITTER, VIS_OPT_PIXELS,
       VIS_OPT_NO_TRANSFORMS, VIS_OPT_ITERS };
#define VIS_FV_LONGOPTS                                          \
  {"steps", required_argument, NULL, VIS_OPT_STEPS},             \
      {"iters", required_argument, NULL, VIS_OPT_ITERS},         \
      {"size", required_argument, NULL, VIS_OPT_SIZE},           \
      {"lr", required_argument, NULL, VIS_OPT_LR},               \
      {"jitter", required_argument, NULL, VIS_OPT_JITTER},       \
      {"pixels", no_argument, NULL, VIS_OPT_PIXELS},             \
      {"no-transforms", no_argument, NULL, VIS_OPT_NO_TRANSFORMS}, CLI_SEED_LONGOPT, \
      CLI_PRECISION_LONGOPT
#define VIS_FV_HELP                                                                       \
  "      --steps N        optimization steps (default 256)\n"                              \
  "      --size S         side of the optimized image, the network's input (default %d)\n"  \
  "      --lr X           Adam step size on the Fourier spectrum (default 0.05)\n"          \
  "      --jitter PX      largest random shift per step (default size/16)\n"               \
  "      --no-transforms  no random shift, scale or rotation (to see why they are there)\n" \
  "      --pixels         optimize raw pixels, not the decorrelated Fourier image (same)\n" \
  CLI_SEED_HELP CLI_PRECISION_HELP

typedef struct vis_fv_cli {
  dd_fv_opts fv;
  int jitter_given, no_transforms;
  int size_given; /* --size was given (else a fixed-size model's own size is used) */
  /* progress display */
  const char *what;
  int index, count;
} vis_fv_cli;

void vis_fv_cli_init(vis_fv_cli *o, int size);
/* Handles one VIS_OPT_* option: 1 handled, 0 not one of them, -1 bad value (err set). */
int vis_fv_opt(vis_fv_cli *o, int opt, const char *arg, dd_err *err);
/* Warnings for options that do nothing together (--jitter with --no-transforms). */
void vis_fv_warn(const vis_fv_cli *o);
/* Installs the progress line printer when progress is shown (a terminal, no -q). */
void vis_fv_progress(vis_fv_cli *o, const cli_common *co);

/* A text file built with stdio and written atomically: open, fprintf to the stream,
 * close.  vis_text_close returns 0 or 1 (error printed). */
FILE *vis_text_open(char **buf, size_t *len);
int vis_text_close(FILE *f, char **buf, size_t *len, const char *path);
/* JSON, built with jansson.  Strings from outside (file names, labels, value names) may hold
 * any bytes, and JSON holds Unicode: vis_json_text keeps valid UTF-8 as it is and turns every
 * byte that is not part of a valid UTF-8 sequence into U+FFFD, setting *lossy (when not NULL)
 * to 1; vis_json_bytes gives the exact bytes as lower-case hex ("d8ff" for "\xd8\xff"), which
 * the writers add beside a lossy file name (README, "JSON").  NULL when out of memory. */
struct json_t;
struct json_t *vis_json_text(const char *s, int *lossy);
struct json_t *vis_json_bytes(const char *s);
/* Sets key to vis_json_text(s), and key_bytes to vis_json_bytes(s) when that was lossy.
 * 0, or -1 when out of memory. */
int vis_json_set_path(struct json_t *obj, const char *key, const char *s);
/* A seed: a JSON integer up to INT64_MAX (jansson's integers are signed 64-bit), above that
 * its decimal digits as a string. */
struct json_t *vis_json_seed(uint64_t seed);
/* Writes `root` (a reference taken, also on failure; NULL: out of memory) atomically to
 * path, indented by 2, reals with 6 significant digits, ASCII only (other characters as
 * \uXXXX escapes).  0 or 1 (error printed). */
int vis_json_write(struct json_t *root, const char *path);

#endif
