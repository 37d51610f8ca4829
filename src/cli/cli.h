/* Shared by the subcommands: the option layer (one grammar per kind of value, the options
 * that mean the same everywhere), model opening with presets, the checks on every file a
 * command writes, error printing.  Only the CLI prints or exits; the library returns errors.
 *
 * Exit statuses: 0 success; 1 an error found in a file, the model or the machine; 2 a usage
 * error (anything wrong that the command line alone shows, found before any file is read). */
#ifndef DREAM_CLI_H
#define DREAM_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "dream/dream.h"
#include "dream/error.h"
#include "dream/frame.h"
#include "dream/model.h"
#include "dream/preset.h"

#define DD_CMD(name, summary) int cmd_##name(int argc, char **argv);
#include "cli/commands.def"
#undef DD_CMD

/* ---- grammars: each fills err ("--opt: expected ..., got '...'") and returns DD_EARG, or
 * DD_OK with *out set.  No leading blanks or signs but where a negative value is allowed. */

/* Decimal integer in lo..hi. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, int *out, dd_err *err);
/* Finite number in (lo or [lo, according to lo_open) .. hi]. */
int cli_parse_float(const char *opt, const char *s, double lo, double hi, int lo_open,
                    float *out, dd_err *err);
typedef struct cli_seed {
  uint64_t value;
  int random; /* 'random': value came from the clock */
} cli_seed;
/* Decimal unsigned 64-bit integer, or 'random' (from the clock). */
int cli_parse_seed(const char *opt, const char *s, cli_seed *out, dd_err *err);
/* "A" or "A-B" (inclusive, from 0) -> [*c0, *c1). */
int cli_parse_range(const char *opt, const char *s, int *c0, int *c1, dd_err *err);
/* "I/N": shard I of N, 1 <= I <= N <= 1000000 (dream/dataset.h says which files). */
int cli_parse_shard(const char *opt, const char *s, int *index, int *count, dd_err *err);
/* "S" (S x S) or "WxH", 1..65536. */
int cli_parse_wh(const char *opt, const char *s, int *w, int *h, dd_err *err);
/* "4G", "512M", "1.5GiB", "1000000" (bytes), > 0. */
int cli_parse_memory(const char *opt, const char *s, size_t *out, dd_err *err);
/* Three numbers "a,b,c" (or one for all three); all > 0 with `positive`. */
int cli_parse_triple(const char *opt, const char *s, int positive, float v[3], dd_err *err);
/* The memory grammar without the message: bytes, or -1. */
long long cli_parse_size(const char *s);

/* ---- options with one meaning in every subcommand ---- */

enum {
  CLI_OPT_MODEL = 'm', CLI_OPT_MEAN = 1001, CLI_OPT_STD, CLI_OPT_BGR, CLI_OPT_RGB, CLI_OPT_SCALE,
  CLI_OPT_MAX_MEMORY, CLI_OPT_SEED, CLI_OPT_QUALITY, CLI_OPT_FRAMING, CLI_OPT_PRECISION
};
#define CLI_MODEL_LONGOPTS                                                           \
  {"model", required_argument, NULL, CLI_OPT_MODEL},                                 \
      {"mean", required_argument, NULL, CLI_OPT_MEAN},                               \
      {"std", required_argument, NULL, CLI_OPT_STD},                                 \
      {"bgr", no_argument, NULL, CLI_OPT_BGR}, {"rgb", no_argument, NULL, CLI_OPT_RGB}, \
      {"scale", required_argument, NULL, CLI_OPT_SCALE},                             \
      {"max-memory", required_argument, NULL, CLI_OPT_MAX_MEMORY},                   \
      {"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}
#define CLI_SEED_LONGOPT {"seed", required_argument, NULL, CLI_OPT_SEED}
#define CLI_QUALITY_LONGOPT {"quality", required_argument, NULL, CLI_OPT_QUALITY}
#define CLI_FRAMING_LONGOPT {"framing", required_argument, NULL, CLI_OPT_FRAMING}
#define CLI_PRECISION_LONGOPT {"precision", required_argument, NULL, CLI_OPT_PRECISION}

#define CLI_MODEL_HELP                                                                   \
  "  -m, --model M        preset name (googlenet, squeezenet) or path to an .onnx file\n" \
  "                       (default: googlenet)\n"                                         \
  "      --mean R,G,B     input mean, in the model's channel order and input scale\n"     \
  "      --std R,G,B      input standard deviation\n"                                     \
  "      --bgr | --rgb    channel order the model expects\n"                              \
  "      --scale S        input range: pixels map to 0..S before mean and std\n"          \
  "      --max-memory B   memory budget, e.g. 4G, 512M (default: half of RAM)\n"
#define CLI_COMMON_HELP                                                  \
  "  -q, --quiet          no progress and no summary line on stderr\n"    \
  "  -h, --help           this help\n"
/* On the generic kernel path the convolution products run in OpenBLAS, whose sums depend on
 * its thread count and on the pieces our threads hand it (README, "Reproducible"); the path
 * is chosen at run time (ops/cpu.h), so the help says both. */
#define CLI_SEED_SAME                                                                        \
  "                       byte for byte from the same build on the same kind of CPU: on\n"  \
  "                       any number of threads with the AVX-512 kernels, else with the\n"   \
  "                       same OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (products in\n"     \
  "                       OpenBLAS); 'dream --version' names the kernels that run\n"
#define CLI_SEED_HELP                                                                    \
  "      --seed N         seed of every random choice (default 0; 'random': from the\n"   \
  "                       clock, printed); the same seed gives the same output,\n"       \
  CLI_SEED_SAME
#define CLI_QUALITY_HELP                                                                 \
  "      --quality Q      JPEG quality of the output, 1..100 (default 95)\n"
/* For the gradient-ascent commands (dream, batch, filters --optimize, class), whose `auto` is bf16
 * where it is faster; run, grad, classify and explain always compute in fp32. */
#define CLI_PRECISION_HELP                                                               \
  "      --precision P    number format of the convolutions: fp32, bf16 (products of\n"  \
  "                       bfloat16 values summed in float32: each output within ~2^-7 of\n" \
  "                       its terms' magnitudes, a few percent through 3x3 Winograd\n"  \
  "                       layers; needs AVX512-BF16, else fp32 with a note) or auto\n"   \
  "                       (default: bf16 where this CPU runs it faster than fp32, else\n" \
  "                       fp32)\n"
#define CLI_FRAMING_HELP                                                                 \
  "      --framing F      how the photo is framed for the network: crop (default: shorter\n" \
  "                       side to the size, centre cut out), squash or fit (aspect kept)\n"

typedef struct cli_model_opts {
  const char *model; /* NULL: googlenet */
  const char *mean, *std;
  int bgr;            /* -1: from the preset */
  int order_conflict; /* --bgr and --rgb both given */
  float scale;        /* <= 0: from the preset */
  size_t max_memory;  /* 0: cli_default_max_memory() */
} cli_model_opts;

void cli_model_opts_init(cli_model_opts *o);

typedef struct cli_common {
  cli_model_opts model;
  int quiet;
  cli_seed seed; /* default 0 */
  int seed_given;
  int quality;   /* 0: the default */
  dd_framing framing;
  int framing_given;
  dd_precision precision; /* --precision, DD_PRECISION_AUTO when not given */
} cli_common;

void cli_common_init(cli_common *c);
/* Handles one of the shared options: 1 handled, 0 not one of them, -1 bad value (err set). */
int cli_common_opt(cli_common *c, int opt, const char *arg, dd_err *err);
/* Warnings for shared options that do nothing as given (--bgr with --rgb). */
void cli_common_warn(const cli_common *c);
/* --precision for this command's library call (dream_loop: a gradient-ascent loop, see
 * dd_precision_resolve): auto stays auto (fast fp32 unless bf16 pays), fp32 is fp32-exact;
 * `bf16` asked for on a CPU without it notes on stderr (unless -q) that fp32 is used. */
dd_precision cli_precision(const cli_common *c, int dream_loop);
/* Progress is drawn only on a terminal, and not with -q. */
int cli_progress_shown(const cli_common *c);
/* The summary line ("dream: wrote ..."): stderr, not with -q. */
void cli_summary(const cli_common *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- models ---- */

typedef struct cli_model {
  dd_preset preset; /* with the overrides applied */
  dd_model *model;
  char **labels; /* NULL when the preset has none */
  int n_labels;
  size_t max_memory;
  int memory_given; /* --max-memory was given */
} cli_model;

/* Resolves the preset and applies the overrides, without loading anything (so the model
 * and label files can be checked against the outputs first).  Prints; 0 or 1.  On success
 * *p owns strings: pass it to cli_model_load or dd_preset_clear it. */
int cli_model_resolve(const cli_model_opts *o, dd_preset *p);
/* Loads the model and labels of a resolved preset, taking its strings (*p is cleared, on
 * failure too).  Prints the error and returns 1 on failure, 0 on success. */
int cli_model_load(const cli_model_opts *o, dd_preset *p, cli_model *out);
/* Both. */
int cli_model_open(const cli_model_opts *o, cli_model *out);
/* Both, with the files checked in between (cli_files_check, the model and labels counted
 * as inputs): nothing is loaded when an output would be wrong.  Prints; 0, 1 or 2. */
struct cli_files;
int cli_model_open_checked(const char *cmd, const cli_model_opts *o, struct cli_files *files,
                           cli_model *out);
void cli_model_close(cli_model *m);

/* ---- the files a command reads and writes ---- */

typedef enum cli_out_kind {
  CLI_OUT_IMAGE, /* .jpg .jpeg .png .bmp .tga */
  CLI_OUT_CSV,
  CLI_OUT_JSON,
  CLI_OUT_PB,
  CLI_OUT_ANY
} cli_out_kind;

#define CLI_MAX_FILES 16
typedef struct cli_files {
  const char *in[CLI_MAX_FILES];
  int n_in;
  const char *out[CLI_MAX_FILES];
  cli_out_kind kind[CLI_MAX_FILES];
  int n_out;
} cli_files;

void cli_files_in(cli_files *f, const char *path);  /* NULL is ignored */
void cli_files_out(cli_files *f, const char *path, cli_out_kind kind);
/* Before anything is computed: every output has the extension its kind needs, lies in an
 * existing directory the user may write, is not a directory, and is not any input nor
 * another output (by name and by inode).  Prints; returns 0, 1 (the file system says no) or
 * 2 (the command line is wrong). */
int cli_files_check(const char *cmd, const cli_files *f);
/* 1 when path has one of the image extensions the writer knows. */
int cli_has_image_ext(const char *path);
/* `path` with its extension replaced by `ext` (".csv") into buf; 0, or 1 (printed). */
int cli_sibling(const char *path, const char *ext, char *buf, size_t size);

/* ---- messages ---- */

/* Prints "dream: <message>" to stderr; returns 1 (the exit status for errors). */
int cli_report(const dd_err *err);
/* printf-style error to stderr prefixed "dream: "; returns 1. */
int cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "dream: warning: ..." on stderr; returns 0. */
int cli_warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage error: "dream <cmd>: <message>" and a pointer to --help on stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For getopt_long's '?' or ':' (use an optstring starting with ':' and opterr = 0): names
 * the unknown option or the one missing its value; returns 2. */
int cli_getopt_error(const char *cmd, int c, char *const *argv);

/* The shape to bind to an image model's data input for a w x h image: 1x3xHxW with the
 * declared fixed dims kept when w or h is 0.  A model whose input is not an image (rank 4,
 * 3 channels, batch 1) is refused.  Prints the error and returns 1. */
int cli_input_shape(const dd_model *m, int w, int h, dd_shape *out);
/* The same for any model (`layers`): a non-image input keeps its declared shape with
 * symbolic dims set to 1. */
int cli_any_input_shape(const dd_model *m, int w, int h, dd_shape *out);
/* Half of physical memory (sysconf). */
size_t cli_default_max_memory(void);
/* Largest image (pixels) a command that frames photos for the network decodes under a
 * memory budget: a decoded pixel costs 3 bytes in stb and 12 as floats, and the framing
 * holds a few copies, so budget/64 keeps an image bomb from taking more than the budget. */
size_t cli_max_pixels(size_t max_memory);
/* A photo decoded under cli_max_pixels(cm->max_memory); a refusal names --max-memory.
 * Prints; 0 or 1. */
struct dd_image;
int cli_load_image(const char *path, const cli_model *cm, struct dd_image **out);
/* The same with the cap at --max-memory / bytes_per_pixel (dream: what decoding costs; what
 * the job then needs is checked against the whole budget). */
int cli_load_image_capped(const char *path, const cli_model *cm, size_t bytes_per_pixel,
                          struct dd_image **out);
/* Writes `im` atomically with --quality, carrying the EXIF and ICC profile of `meta_from`
 * (NULL: none) where the format holds them (JPEG, PNG).  Pictures drawn with colour maps
 * (activations, explain, filters) carry none: their colours are sRGB whatever the photo's
 * profile.  Returns a status with err set. */
int cli_save_image(const char *path, const struct dd_image *im, const cli_common *co,
                   const struct dd_image *meta_from, dd_err *err);
/* dd_model_resolve, with a warning when the name is also a convN alias that a value of the
 * same name shadows (SqueezeNet's conv10). */
int cli_resolve(const dd_model *m, const char *name, int *value, dd_err *err);
/* dd_dream_layer_resolve of a spec NAME[#CHANNEL][:WEIGHT], with the same warning. */
struct dd_dream_layer;
int cli_resolve_spec(const dd_model *m, const char *spec, struct dd_dream_layer *out,
                     dd_err *err);
/* The warning alone. */
void cli_warn_shadowed(const dd_model *m, const char *name);
/* The one classification of every subcommand: output 0 of the model on an image already
 * framed (dd_image_frame), as probabilities (dd_probabilities), through the inference path
 * (dream/infer.h).  `s` is a session from cli_classify_session for the image's size, or
 * NULL for a one-off.  *prob is malloc'ed (*n classes).  Prints; 0 or 1. */
struct dd_infer;
int cli_classify_session(const cli_model *cm, int w, int h, struct dd_infer **out);
int cli_classify(const cli_model *cm, struct dd_infer *s, const struct dd_image *framed,
                 double **prob, int64_t *n);
/* The k best classes, best first (-1 past n). */
void cli_top_k(const double *prob, int64_t n, int k, int *top);
/* A class named by the user: its index, or its label matched exactly (case-insensitive).
 * Prints the error (with the closest labels) and returns 1. */
int cli_find_class(const cli_model *cm, const char *query, int *cls);

/* ---- input sizes (src/cli/sizes.c) ---- */

/* The network input size of a command, for `targets` (NULL: the model's outputs): a given
 * *w x *h (> 0) is kept when the model can take it; with none given (0), the model's only
 * size when it takes one (dd_model_input_sizes), else dflt x dflt.  A given size a
 * fixed-size model cannot take is refused with the size it takes ("vit.onnx takes only
 * 32x32 inputs: --size 64x64 cannot work; leave --size out"), never left to fail deep in
 * the graph.  *fixed (may be NULL) says whether the model takes one size only.  Prints; 0 or
 * 1. */
int cli_network_size(const cli_model *cm, const int *targets, int n_targets, int dflt, int *w,
                     int *h, int *fixed);

#endif
