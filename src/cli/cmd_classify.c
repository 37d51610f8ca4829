/* dream classify: the top classes of images, with probabilities and labels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dream/graph.h"
#include "dream/image.h"

static const char classify_help[] =
    "usage: dream classify [--model M] [--top K] IMAGE...\n\n"
    "Prints the top classes of each image with their probabilities and labels.  Each image is\n"
    "cropped to its central square and resized to the preset's size (224x224): the same as\n"
    "resizing the shorter side to 224 and cutting out the middle, the common ImageNet\n"
    "evaluation.  Outputs that are not probabilities already (SqueezeNet's logits) go through a\n"
    "softmax.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -k, --top K          how many classes to print (default 5)\n"
    "  -h, --help           this help\n";

/* Probabilities from the model's output: kept when they already are (in [0,1], summing to
 * 1), otherwise a softmax of them as logits. */
static void to_probabilities(const float *x, int64_t n, double *p) {
  int is_prob = 1;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!(x[i] >= 0.f && x[i] <= 1.f)) is_prob = 0;
    sum += x[i];
  }
  if (is_prob && fabs(sum - 1.0) < 1e-3) {
    for (int64_t i = 0; i < n; i++) p[i] = x[i];
    return;
  }
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (x[i] > mx) mx = x[i];
  sum = 0;
  for (int64_t i = 0; i < n; i++) sum += p[i] = exp(x[i] - mx);
  for (int64_t i = 0; i < n; i++) p[i] /= sum;
}

/* The central square of `im` resized to size x size. */
static int crop_resize(const dd_image *im, int size, dd_image **out, dd_err *err) {
  int s = im->w < im->h ? im->w : im->h;
  int x0 = (im->w - s) / 2, y0 = (im->h - s) / 2;
  dd_image *sq;
  int rc = dd_image_new(s, s, &sq, err);
  if (rc) return rc;
  for (int y = 0; y < s; y++)
    memcpy(sq->rgb + (size_t)y * s * 3, im->rgb + ((size_t)(y + y0) * im->w + x0) * 3,
           (size_t)s * 3 * sizeof(float));
  rc = dd_image_resize(sq, size, size, out, err);
  dd_image_free(sq);
  return rc;
}

static int classify_one(const char *path, const cli_model *cm, dd_plan *plan, int in, int outv,
                        int top, double *prob) {
  dd_err err;
  dd_image *im, *sq;
  if (dd_image_load(path, cli_max_pixels(cm->max_memory), &im, &err)) return cli_report(&err);
  int rc = crop_resize(im, cm->preset.size, &sq, &err);
  dd_image_free(im);
  if (rc) {
    dd_err_prefix(&err, "%s", path);
    return cli_report(&err);
  }
  dd_image_to_input(sq, &cm->preset.pre, dd_f32(dd_plan_tensor(plan, in)));
  dd_image_free(sq);
  dd_plan_forward(plan);
  const dd_tensor *y = dd_plan_tensor(plan, outv);
  int64_t n = dd_tensor_numel(y);
  to_probabilities(dd_f32(y), n, prob);
  printf("%s:\n", path);
  for (int k = 0; k < top && k < n; k++) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
      if (prob[i] >= 0 && (best < 0 || prob[i] > prob[best])) best = i;
    const char *label = cm->labels && best < cm->n_labels ? cm->labels[best] : NULL;
    printf("  %6.2f%%  %4lld%s%s\n", prob[best] * 100, (long long)best, label ? "  " : "",
           label ? label : "");
    prob[best] = -1; /* taken */
  }
  return 0;
}

int cmd_classify(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           {"top", required_argument, NULL, 'k'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  cli_model_opts mo;
  cli_model_opts_init(&mo);
  int top = 5, c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":m:k:h", longopts, NULL)) != -1) {
    int r = cli_model_opt(&mo, c, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (c) {
      case 'k': {
        char *end;
        long v = strtol(optarg, &end, 10);
        if (*end || end == optarg || v < 1 || v > 100000)
          return cli_usage_error("classify", "--top: expected a count >= 1, got '%s'", optarg);
        top = (int)v;
        break;
      }
      case 'h':
        fputs(classify_help, stdout);
        return 0;
      default:
        return cli_getopt_error("classify", c, argv);
    }
  }
  if (optind >= argc) return cli_usage_error("classify", "no image given");

  cli_model cm;
  if (cli_model_open(&mo, &cm)) return 1;
  const dd_model *m = cm.model;
  dd_shape shape;
  if (cli_input_shape(m, cm.preset.size, cm.preset.size, &shape)) {
    cli_model_close(&cm);
    return 1;
  }
  if (dd_model_num_outputs(m) < 1) {
    cli_errorf("%s: the model has no output", dd_model_name(m));
    cli_model_close(&cm);
    return 1;
  }
  int in = dd_model_input(m), outv = dd_model_output(m, 0);
  dd_binding bind = {in, shape, NULL};
  dd_plan *plan;
  dd_err err;
  if (dd_plan_new(m, &bind, 1, &outv, 1, 0, cm.max_memory, &plan, &err)) {
    cli_model_close(&cm);
    return cli_report(&err);
  }
  int64_t n = dd_tensor_numel(dd_plan_tensor(plan, outv));
  double *prob = malloc((size_t)(n > 0 ? n : 1) * sizeof *prob);
  int status = 0;
  if (!prob) status = cli_errorf("out of memory");
  else if (cm.labels && n != cm.n_labels)
    fprintf(stderr, "dream: warning: %s gives %lld classes but %s has %d labels\n",
            dd_model_name(m), (long long)n, cm.preset.labels_path, cm.n_labels);
  /* One bad file does not stop the others; the exit status says something failed. */
  for (int i = optind; i < argc && prob; i++)
    if (classify_one(argv[i], &cm, plan, in, outv, top, prob)) status = 1;
  free(prob);
  dd_plan_free(plan);
  cli_model_close(&cm);
  return status;
}
