/* dream dream: the command line of the main job, parsed by a pure function so that tests and
 * fuzzers can call it. */
#ifndef DREAM_CLI_CMD_DREAM_H
#define DREAM_CLI_CMD_DREAM_H

#include "cli/cli.h"
#include "dream/dream.h"

/* The options of a dream, shared by `dream` and `dream batch` (but --checkpoint-every). */
#define CLI_DREAM_OPTIONS_HELP \
    CLI_MODEL_HELP \
    "  -l, --layer SPEC     NAME[#CHANNEL][:WEIGHT], repeatable: a value name as `dream layers`\n" \
    "                       lists it or a convN alias; #CHANNEL: that channel only (on the\n" \
    "                       channel axis: the last one of tokens and channels-last grids);\n" \
    "                       :WEIGHT (default 1, may be negative).  Default: the preset's\n" \
    "                       layer.  A model that takes one size only is dreamed in tiles of\n" \
    "                       that size.\n" \
    "      --octaves N      number of scales (4)\n" \
    "      --octave-scale S size ratio between octaves, > 1 (1.4)\n" \
    "      --iters N        iterations per octave (10)\n" \
    "      --step S         step size in pixel units, after normalization (1.5)\n" \
    "      --jitter N       random roll of up to N pixels each way (32)\n" \
    "      --norm NORM      gradient normalization: meanabs, std or laplacian (meanabs)\n" \
    "      --lap-levels N   levels of the Laplacian pyramid (4)\n" \
    "      --tile N         compute gradients in N x N tiles (default: only when the whole\n" \
    "                       image would exceed --max-memory)\n" \
    "      --guide IMG      guided dream: the features of IMG that best match each position\n" \
    "      --guide-size N   shrink the guide to N pixels on its longer side first (224; 0: no)\n" \
    CLI_SEED_HELP CLI_PRECISION_HELP \
    "      --max-side N     shrink IN first so that its longer side is at most N pixels\n" \
    "      --timing         print the time of the dream itself (after loading, before\n" \
    "                       writing) on stderr, for benchmarks: 'dream: loop S s'\n" \
    CLI_QUALITY_HELP CLI_COMMON_HELP

typedef struct cli_dream_args {
  cli_common common; /* model options, -q, --seed, --quality */
  /* --layer specs as given (NAME[#CH][:W], syntax checked), pointing into argv; resolved
   * against the model later.  None: the preset's default layer. */
  const char *layers[DD_DREAM_MAX_LAYERS];
  int n_layers;
  dd_dream_params params; /* every knob but the layers, the cancel flag and the budget */
  const char *guide;      /* --guide image, NULL for none */
  int guide_size;         /* the guide is shrunk to this longer side first; 0: as it is */
  int max_side;           /* IN is shrunk to this longer side first; 0: as it is */
  int timing; /* --timing: print the seconds dd_dream_run took */
  int lap_levels_given; /* for the warnings of options that do nothing */
  int help; /* --help: nothing else was checked */
  const char *in, *out; /* dream batch: IN_DIR and OUT_DIR */
  /* dream batch only (cli_batch_parse): --shard I/N (1/1 when not given), --force,
   * --dry-run. */
  int shard_index, shard_count;
  int force;
  int dry_run;
  /* dream zoom only (cli_zoom_parse) */
  int frames;   /* --frames N, required */
  float zoom;   /* --zoom S: each frame is the last one zoomed by 1/(1-S) (0.05) */
  float rotate; /* --rotate DEG, counter-clockwise per frame (0) */
  float fps;    /* --fps F of the output (zoom: 12; video: the input's) */
  /* dream video only (cli_video_parse) */
  float blend;          /* --blend B: weight of the carried hallucination (0.6) */
  float blend_static;   /* --blend-static B: its weight where the flow is under the
                           threshold; < 0: --blend */
  int no_flow;          /* --no-flow: carried without warping */
  float flow_threshold; /* --flow-threshold T: pixels per frame (0: every pixel moves) */
  float start, end;     /* --start T0, --end T1 in seconds of IN (end 0: to the end) */
  int carried_iters;    /* --carried-iters N: iterations per octave of every frame but the
                           first (0: half of --iters, rounded up) */
  /* both */
  int resume; /* --resume */
} cli_dream_args;

/* Parses `dream [dream] [options] IN OUT` (argv[0] is the command's name).  Pure: no I/O, no
 * exit, no allocation; resets getopt (optind = 0), and getopt may permute argv.  Returns 0,
 * or DD_EARG with a message naming the option and the reason in err. */
int cli_dream_parse(int argc, char **argv, cli_dream_args *out, dd_err *err);
/* The same grammar for `dream batch [options] [--shard I/N] [--force] [--dry-run] IN_DIR
 * OUT_DIR` (argv[0] "batch"); --checkpoint-every is refused there (a checkpoint would pass for
 * a finished output when the batch resumes). */
int cli_batch_parse(int argc, char **argv, cli_dream_args *out, dd_err *err);
/* `dream zoom [dream options] --frames N [--zoom S] [--rotate DEG] [--fps F] [--resume] IN OUT`
 * (argv[0] "zoom"). */
int cli_zoom_parse(int argc, char **argv, cli_dream_args *out, dd_err *err);
/* `dream video [dream options] [--blend B] [--blend-static B] [--no-flow] [--flow-threshold T]
 * [--start T0] [--end T1] [--carried-iters N] [--resume] IN OUT` (argv[0] "video"). */
int cli_video_parse(int argc, char **argv, cli_dream_args *out, dd_err *err);

/* ---- running, shared by `dream` and `dream batch` ---- */

typedef struct cli_dream_job {
  const cli_dream_args *a;
  cli_model *cm;
  dd_dream_params p; /* layers resolved, the guide loaded; seed and budget set per image */
  dd_image *guide;
  dd_dreamer *dreamer; /* a movie's frames: one dreamer keeps its plans for every frame */
} cli_dream_job;

/* After the model is open: resolves the layers, checks the model takes an image, loads the
 * guide, and catches SIGINT and SIGTERM (polled between iterations).  Prints; 0 or 1; on
 * either, cli_dream_end releases what it took. */
int cli_dream_begin(const cli_dream_args *a, cli_model *cm, cli_dream_job *job);
/* One dream: loads `in` (shrunk by --max-side), checks the budget, dreams with `seed` and
 * writes `out` atomically (with `in`'s EXIF and ICC).  Returns 0, 1 (the error printed;
 * nothing written) or 128 + the signal when interrupted (nothing written but the last
 * checkpoint).  Prints the summary line "wrote OUT (WxH) in S s, seed N" unless -q. */
int cli_dream_image(cli_dream_job *job, const char *in, const char *out, uint64_t seed);
/* Warnings for options that do nothing as given. */
void cli_dream_warn_idle(const cli_dream_args *a);
/* The signal that interrupted the job, or 0. */
int cli_dream_interrupted(void);
void cli_dream_end(cli_dream_job *job);

#endif
