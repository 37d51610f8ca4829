/* Shared by the subcommands: option parsing for the model flags, model opening with presets,
 * error printing.  Only the CLI prints or exits; the library returns errors. */
#ifndef DREAM_CLI_H
#define DREAM_CLI_H

#include <getopt.h>
#include <stddef.h>

#include "dream/error.h"
#include "dream/model.h"
#include "dream/preset.h"

#define DD_CMD(name, summary) int cmd_##name(int argc, char **argv);
#include "cli/commands.def"
#undef DD_CMD

/* Model flags every model-using subcommand takes; see cli_model_opt. */
enum { CLI_OPT_MODEL = 'm', CLI_OPT_MEAN = 1001, CLI_OPT_STD, CLI_OPT_BGR, CLI_OPT_RGB,
       CLI_OPT_SCALE, CLI_OPT_MAX_MEMORY };
#define CLI_MODEL_LONGOPTS                                                           \
  {"model", required_argument, NULL, CLI_OPT_MODEL},                                 \
      {"mean", required_argument, NULL, CLI_OPT_MEAN},                               \
      {"std", required_argument, NULL, CLI_OPT_STD},                                 \
      {"bgr", no_argument, NULL, CLI_OPT_BGR}, {"rgb", no_argument, NULL, CLI_OPT_RGB}, \
      {"scale", required_argument, NULL, CLI_OPT_SCALE},                             \
      {"max-memory", required_argument, NULL, CLI_OPT_MAX_MEMORY}
#define CLI_MODEL_HELP                                                                   \
  "  -m, --model M        preset name (googlenet, squeezenet) or path to an .onnx file\n" \
  "                       (default: googlenet)\n"                                         \
  "      --mean R,G,B     input mean, in the model's channel order and input scale\n"     \
  "      --std R,G,B      input standard deviation\n"                                     \
  "      --bgr | --rgb    channel order the model expects\n"                              \
  "      --scale S        input range: pixels map to 0..S before mean and std\n"          \
  "      --max-memory B   memory budget, e.g. 4G, 512M (default: half of RAM)\n"

typedef struct cli_model_opts {
  const char *model; /* NULL: googlenet */
  const char *mean, *std;
  int bgr;     /* -1: from the preset */
  float scale; /* <= 0: from the preset */
  size_t max_memory; /* 0: cli_default_max_memory() */
} cli_model_opts;

void cli_model_opts_init(cli_model_opts *o);
/* Handles one of the CLI_OPT_* options: 1 handled, 0 not a model option, -1 bad value
 * (message printed). */
int cli_model_opt(cli_model_opts *o, int opt, const char *arg);

typedef struct cli_model {
  dd_preset preset; /* with the overrides applied */
  dd_model *model;
  char **labels; /* NULL when the preset has none */
  int n_labels;
  size_t max_memory;
} cli_model;

/* Resolves the preset, loads the model and labels.  Prints the error and returns 1 on
 * failure, 0 on success. */
int cli_model_open(const cli_model_opts *o, cli_model *out);
void cli_model_close(cli_model *m);

/* Prints "dream: <message>" to stderr; returns 1 (the exit status for errors). */
int cli_report(const dd_err *err);
/* printf-style error to stderr prefixed "dream: "; returns 1. */
int cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The shape to bind to the model's data input for a w x h image: the declared shape with
 * symbolic dims filled in (batch 1, 3 channels, h, w for NCHW).  Declared fixed H and W are
 * kept when w or h is 0.  Prints the error and returns 1 when the input cannot take it. */
int cli_input_shape(const dd_model *m, int w, int h, dd_shape *out);
/* Usage error: "dream <cmd>: <message>" and a pointer to --help on stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For getopt_long's '?' or ':' (use an optstring starting with ':' and opterr = 0): names
 * the unknown option or the one missing its value; returns 2. */
int cli_getopt_error(const char *cmd, int c, char *const *argv);
/* Half of physical memory (sysconf). */
size_t cli_default_max_memory(void);
/* Largest image (pixels) a command decodes under a memory budget: a decoded pixel costs 3
 * bytes in stb and 12 as floats, and the commands hold a few copies, so budget/64 keeps an
 * image bomb (a tiny PNG claiming 12000x12000) from taking more than the budget. */
size_t cli_max_pixels(size_t max_memory);
/* "4G", "512M", "1000000" -> bytes; -1 on error. */
long long cli_parse_size(const char *s);

#endif
