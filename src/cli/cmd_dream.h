/* dream dream: the command line of the main job, parsed by a pure function so that tests and
 * fuzzers can call it. */
#ifndef DREAM_CLI_CMD_DREAM_H
#define DREAM_CLI_CMD_DREAM_H

#include "cli/cli.h"
#include "dream/dream.h"

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
  const char *in, *out;
} cli_dream_args;

/* Parses `dream [dream] [options] IN OUT` (argv[0] is the command's name).  Pure: no I/O, no
 * exit, no allocation; resets getopt (optind = 0), and getopt may permute argv.  Returns 0,
 * or DD_EARG with a message naming the option and the reason in err. */
int cli_dream_parse(int argc, char **argv, cli_dream_args *out, dd_err *err);

#endif
