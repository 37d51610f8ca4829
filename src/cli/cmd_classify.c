/* dream classify: the top classes of images, with probabilities and labels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dream/infer.h"
#include "dream/image.h"

static const char classify_help[] =
    "usage: dream classify [options] IMAGE...\n\n"
    "Prints the top classes of each image with their probabilities and labels, one block per\n"
    "image as soon as it is done.  Each image is framed for the network as every command that\n"
    "classifies frames it (--framing; by default its shorter side is resized to the preset's\n"
    "size, 224, and the centre cut out: the common ImageNet evaluation).  Outputs that are not\n"
    "probabilities already (SqueezeNet's logits) go through a softmax.  A file that cannot be\n"
    "read is reported and the others are still classified; the exit status is then 1.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -k, --top K          how many classes to print (default 5)\n"
    "      --size S|WxH     the network's input size (default: the preset's)\n"
    CLI_FRAMING_HELP CLI_COMMON_HELP;

enum { OPT_SIZE = 3001 };

typedef struct classify_job {
  const cli_model *cm;
  const cli_common *co;
  dd_infer *session; /* planned once for the framed size */
  int top, w, h;
  int progress;      /* a progress line is on stderr */
} classify_job;

static void clear_progress(const classify_job *j) {
  if (j->progress) fputs("\r\033[K", stderr);
}

static int classify_one(const classify_job *j, const char *path) {
  dd_err err;
  dd_image *im, *framed;
  if (cli_load_image(path, j->cm, &im)) return 1;
  int rc = dd_image_frame(im, j->co->framing, j->w, j->h, &framed, NULL, &err);
  dd_image_free(im);
  if (rc) {
    dd_err_prefix(&err, "%s", path);
    return cli_report(&err);
  }
  if (framed->w != j->w || framed->h != j->h) { /* --framing fit: the plan is per size */
    dd_image_free(framed);
    return cli_errorf("%s: --framing fit gives each photo its own size; classify plans one size "
                      "(use crop or squash)", path);
  }
  double *prob;
  int64_t n;
  rc = cli_classify(j->cm, j->session, framed, &prob, &n);
  dd_image_free(framed);
  clear_progress(j);
  if (rc) return 1;
  printf("%s:\n", path);
  for (int k = 0; k < j->top && k < n; k++) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
      if (prob[i] >= 0 && (best < 0 || prob[i] > prob[best])) best = i;
    const char *label = j->cm->labels && best < j->cm->n_labels ? j->cm->labels[best] : NULL;
    printf("  %6.2f%%  %4lld%s%s\n", prob[best] * 100, (long long)best, label ? "  " : "",
           label ? label : "");
    prob[best] = -1; /* taken */
  }
  free(prob);
  /* Each finished image reaches the reader at once, even through a pipe that is then
   * interrupted. */
  fflush(stdout);
  return 0;
}

int cmd_classify(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS, CLI_FRAMING_LONGOPT,
                                           {"top", required_argument, NULL, 'k'},
                                           {"size", required_argument, NULL, OPT_SIZE},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  int top = 5, w = 0, h = 0, c;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:k:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("classify", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case 'k':
        if (cli_parse_int("--top", optarg, 1, 100000, &top, &err))
          return cli_usage_error("classify", "%s", err.msg);
        break;
      case OPT_SIZE:
        if (cli_parse_wh("--size", optarg, &w, &h, &err))
          return cli_usage_error("classify", "%s", err.msg);
        break;
      case 'h': fputs(classify_help, stdout); return 0;
      default: return cli_getopt_error("classify", c, argv);
    }
  }
  if (optind >= argc) return cli_usage_error("classify", "no image given");
  cli_common_warn(&co);

  cli_model cm;
  if (cli_model_open(&co.model, &cm)) return 1;
  const dd_model *m = cm.model;
  if (cli_network_size(&cm, NULL, 0, cm.preset.size, &w, &h, NULL)) {
    cli_model_close(&cm);
    return 1;
  }
  classify_job j = {&cm, &co, NULL, top, w, h, 0};
  if (cli_classify_session(&cm, w, h, &j.session)) {
    cli_model_close(&cm);
    return 1;
  }
  int64_t n = dd_tensor_numel(dd_infer_output(j.session, 0));
  int status = 0, n_images = argc - optind, progress = cli_progress_shown(&co) && n_images > 1;
  if (cm.labels && n != cm.n_labels)
    cli_warnf("%s gives %lld classes but %s has %d labels", dd_model_name(m), (long long)n,
              cm.preset.labels_path, cm.n_labels);
  /* One bad file does not stop the others; the exit status says something failed. */
  for (int i = optind; i < argc; i++) {
    if (progress) {
      fprintf(stderr, "\r\033[Kclassify %d/%d", i - optind + 1, n_images);
      fflush(stderr);
      j.progress = 1;
    }
    if (classify_one(&j, argv[i])) status = 1;
    clear_progress(&j);
    j.progress = 0;
  }
  dd_infer_free(j.session);
  cli_model_close(&cm);
  return status;
}
