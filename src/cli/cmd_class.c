/* dream class: an image optimized from noise to maximize one class's score. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

#define CLASS_SIZE 224

static const char class_help[] =
    "usage: dream class [--model M] --class C [options] OUT.png\n\n"
    "Optimizes an image from noise to maximize the score of class C before the softmax (the\n"
    "Gemm output feeding GoogLeNet's Softmax, SqueezeNet's logits): a Fourier-space,\n"
    "colour-decorrelated image seen through a random jitter, scale and rotation at each step.\n"
    "C is a label (\"Siberian husky\", case-insensitive, or a unique prefix) or an index.\n"
    "OUT.json beside the picture gives the class's score and the top 5 classes of the picture\n"
    "as read back from OUT (after a JPEG's compression, for .jpg).\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -c, --class C        the class (required)\n" VIS_FV_HELP
    "  -h, --help           this help\n";

static const char *label_of(const cli_model *cm, int i) {
  return cm->labels && i >= 0 && i < cm->n_labels ? cm->labels[i] : "";
}

static int write_json(const char *path, const cli_model *cm, const vis_fv_cli *vo, int cls,
                      float logit, const dd_tensor *prob) {
  const float *p = dd_f32(prob);
  int64_t n = dd_tensor_numel(prob);
  int top[DD_TOPK];
  for (int k = 0; k < DD_TOPK; k++) {
    top[k] = -1;
    for (int64_t i = 0; i < n; i++) {
      int taken = 0;
      for (int j = 0; j < k; j++) taken |= top[j] == i;
      if (!taken && (top[k] < 0 || p[i] > p[top[k]])) top[k] = (int)i;
    }
  }
  char *buf;
  size_t len;
  FILE *f = vis_text_open(&buf, &len);
  if (!f) return cli_errorf("out of memory");
  fprintf(f, "{\n  \"model\": ");
  vis_json_str(f, dd_model_name(cm->model));
  fprintf(f, ",\n  \"class\": %d,\n  \"label\": ", cls);
  vis_json_str(f, label_of(cm, cls));
  fprintf(f, ",\n  \"size\": %d,\n  \"iters\": %d,\n  \"seed\": %llu,\n  \"lr\": %g,\n",
          vo->fv.size, vo->fv.iters, (unsigned long long)vo->seed, vo->fv.lr);
  fprintf(f, "  \"logit\": %.6g,\n  \"probability\": %.6g,\n  \"top5\": [", logit, p[cls]);
  for (int k = 0; k < DD_TOPK && top[k] >= 0; k++) {
    fprintf(f, "%s\n    {\"class\": %d, \"label\": ", k ? "," : "", top[k]);
    vis_json_str(f, label_of(cm, top[k]));
    fprintf(f, ", \"probability\": %.6g}", p[top[k]]);
  }
  fprintf(f, "\n  ]\n}\n");
  return vis_text_close(f, &buf, &len, path);
}

static int parse_class(const cli_model *cm, const char *query, int *cls) {
  dd_err err;
  if (cm->labels) return dd_labels_find(cm->labels, cm->n_labels, query, cls, &err) ? cli_report(&err) : 0;
  char *end;
  errno = 0;
  long v = strtol(query, &end, 10);
  if (errno || end == query || *end || v < 0 || v > 1000000)
    return cli_errorf("%s has no labels: give the class as an index", dd_model_name(cm->model));
  *cls = (int)v;
  return 0;
}

int cmd_class(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           VIS_FV_LONGOPTS,
                                           {"class", required_argument, NULL, 'c'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  cli_model_opts mo;
  cli_model_opts_init(&mo);
  vis_fv_cli vo;
  vis_fv_cli_init(&vo, CLASS_SIZE);
  const char *query = NULL;
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":m:c:qh", longopts, NULL)) != -1) {
    int r = cli_model_opt(&mo, c, optarg);
    if (r < 0) return 2;
    if (r) continue;
    if (c == 'q') c = VIS_OPT_QUIET;
    r = vis_fv_opt(&vo, "class", c, optarg);
    if (r == 2) return 2;
    if (r) continue;
    switch (c) {
      case 'c': query = optarg; break;
      case 'h':
        printf(class_help, CLASS_SIZE);
        return 0;
      default: return cli_getopt_error("class", c, argv);
    }
  }
  if (!query) return cli_usage_error("class", "--class is required");
  if (optind + 1 != argc)
    return cli_usage_error("class", optind >= argc ? "no output file given"
                                                   : "expected one output file");
  const char *out = argv[optind];
  char json[4096];
  if (vis_sibling(out, ".json", json, sizeof json)) return 1;
  cli_model cm;
  if (cli_model_open(&mo, &cm)) return 1;
  dd_err err;
  int cls, logits, status = 0;
  dd_fv *fv = NULL;
  dd_image *im = NULL;
  dd_tensor *prob = NULL;
  float logit = 0;
  vo.fv.max_bytes = cm.max_memory;
  vo.what = "class";
  vo.count = 1;
  vis_fv_progress(&vo);
  if (parse_class(&cm, query, &cls)) status = 1;
  else if (dd_vis_logits(cm.model, &logits, &err) ||
           dd_fv_new(cm.model, &cm.preset.pre, logits, &vo.fv, &fv, &err))
    status = cli_report(&err);
  else if (cls >= dd_fv_channels(fv))
    status = cli_errorf("class %d is not in 0..%d", cls, dd_fv_channels(fv) - 1);
  else {
    vo.index = cls;
    dd_image *saved = NULL;
    /* Classified as read back from the file: a JPEG's compression can undo a pattern that
     * only fools the network pixel by pixel. */
    if (dd_fv_run(fv, cls, vo.seed, &im, &logit, &err) || dd_image_save(out, im, &err) ||
        dd_image_load(out, cli_max_pixels(cm.max_memory), &saved, &err) ||
        dd_vis_classify(cm.model, &cm.preset.pre, saved, cm.max_memory, &prob, &err))
      status = cli_report(&err);
    else
      status = write_json(json, &cm, &vo, cls, logit, prob);
    dd_image_free(saved);
  }
  if (!status)
    printf("%s: class %d%s%s, score %.4g, probability %.4f at %dx%d -> %s, %s\n",
           dd_model_name(cm.model), cls, cm.labels ? " " : "", label_of(&cm, cls), logit,
           dd_f32(prob)[cls], vo.fv.size, vo.fv.size, out, json);
  dd_tensor_free(prob);
  dd_image_free(im);
  dd_fv_free(fv);
  cli_model_close(&cm);
  return status;
}
