/* dream class: an image optimized from noise to maximize one class's score. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

#define CLASS_SIZE 224

static const char class_help[] =
    "usage: dream class --class C [options] OUT.png\n\n"
    "Optimizes an image from noise to maximize the score of class C before the softmax (the\n"
    "Gemm output feeding GoogLeNet's Softmax, SqueezeNet's logits): a Fourier-space,\n"
    "colour-decorrelated image seen through a random jitter, scale and rotation at each step.\n"
    "C is an index or a label matched whole, case-insensitively (\"Siberian husky\"); a name\n"
    "that is no label is refused with the closest ones.  OUT.json beside the picture gives\n"
    "the class's score and the top 5 classes of the picture as read back from OUT (after a\n"
    "JPEG's compression, for .jpg), framed as `dream classify` frames photos.\n\n"
    "options:\n" CLI_MODEL_HELP
    "      --class C        the class (required)\n" VIS_FV_HELP
    CLI_QUALITY_HELP CLI_COMMON_HELP;

static const char *label_of(const cli_model *cm, int i) {
  return cm->labels && i >= 0 && i < cm->n_labels ? cm->labels[i] : "";
}

static int write_json(const char *path, const cli_model *cm, const vis_fv_cli *vo,
                      uint64_t seed, int cls, float logit, const double *p, int64_t n) {
  int top[DD_TOPK];
  cli_top_k(p, n, DD_TOPK, top);
  json_t *o = json_object(), *t = json_array();
  int bad = !o || !t;
  bad |= vis_json_set_path(o, "model", dd_model_name(cm->model));
  bad |= json_object_set_new(o, "class", json_integer(cls));
  bad |= json_object_set_new(o, "label", vis_json_text(label_of(cm, cls), NULL));
  bad |= json_object_set_new(o, "size", json_integer(vo->fv.size));
  bad |= json_object_set_new(o, "steps", json_integer(vo->fv.iters));
  bad |= json_object_set_new(o, "seed", vis_json_seed(seed));
  bad |= json_object_set_new(o, "lr", json_real(vo->fv.lr));
  bad |= json_object_set_new(o, "logit", json_real(logit));
  bad |= json_object_set_new(o, "probability", json_real(p[cls]));
  for (int k = 0; k < DD_TOPK && top[k] >= 0 && !bad; k++)
    bad |= json_array_append_new(t, json_pack("{s:i, s:o, s:f}", "class", top[k], "label",
                                              vis_json_text(label_of(cm, top[k]), NULL),
                                              "probability", p[top[k]]));
  bad |= json_object_set(o, "top5", t);
  json_decref(t);
  if (bad) {
    json_decref(o);
    o = NULL;
  }
  return vis_json_write(o, path);
}

enum { OPT_CLASS = 3001 };

/* The side of the optimized image: --size, or a fixed-size model's own. */
static int class_size(const cli_model *cm, int logits, vis_fv_cli *vo) {
  int sw = vo->size_given ? vo->fv.size : 0, sh = sw;
  if (cli_network_size(cm, &logits, 1, vo->fv.size, &sw, &sh, NULL)) return 1;
  if (sw != sh)
    return cli_errorf("%s takes only %dx%d inputs; class needs a square input",
                      dd_model_name(cm->model), sw, sh);
  vo->fv.size = sw;
  return 0;
}

int cmd_class(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           VIS_FV_LONGOPTS,
                                           CLI_QUALITY_LONGOPT,
                                           {"class", required_argument, NULL, OPT_CLASS},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  vis_fv_cli vo;
  vis_fv_cli_init(&vo, CLASS_SIZE);
  const char *query = NULL;
  int c;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (!r) r = vis_fv_opt(&vo, c, optarg, &err);
    if (r < 0) return cli_usage_error("class", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case OPT_CLASS: query = optarg; break;
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
  vis_fv_warn(&vo);
  cli_common_warn(&co);
  char json[4096];
  if (cli_sibling(out, ".json", json, sizeof json)) return 1;
  cli_files files = {0};
  cli_files_out(&files, out, CLI_OUT_IMAGE);
  cli_files_out(&files, json, CLI_OUT_JSON);
  cli_model cm;
  int status = cli_model_open_checked("class", &co.model, &files, &cm);
  if (status) return status;
  int cls, logits;
  dd_fv *fv = NULL;
  dd_image *im = NULL;
  double *prob = NULL;
  int64_t n_prob = 0;
  float logit = 0;
  vo.fv.max_memory = cm.max_memory;
  vo.fv.precision = cli_precision(&co, 1);
  vo.what = "class";
  vo.count = 1;
  vis_fv_progress(&vo, &co);
  if (cli_find_class(&cm, query, &cls)) status = 1;
  else if (dd_vis_logits(cm.model, &logits, &err)) status = cli_report(&err);
  else if (class_size(&cm, logits, &vo)) status = 1;
  else if (dd_fv_new(cm.model, &cm.preset.pre, logits, &vo.fv, &fv, &err))
    status = cli_report(&err);
  else if (cls >= dd_fv_channels(fv))
    status = cli_errorf("--class: class %d out of range 0..%d", cls, dd_fv_channels(fv) - 1);
  else {
    vo.index = cls;
    dd_image *saved = NULL, *framed = NULL;
    int cw = 0, ch = 0;
    err.msg[0] = 0;
    /* Classified as read back from the file (a JPEG's compression can undo a pattern that
     * only fools the network pixel by pixel), framed as classify frames a photo. */
    if (dd_fv_run(fv, cls, co.seed.value, &im, &logit, &err) ||
        cli_save_image(out, im, &co, NULL, &err) ||
        dd_image_load(out, 0, &saved, &err) ||
        cli_network_size(&cm, NULL, 0, cm.preset.size, &cw, &ch, NULL) ||
        dd_image_frame(saved, co.framing, cw, ch, &framed, NULL, &err))
      status = err.msg[0] ? cli_report(&err) : 1;
    else if (cli_classify(&cm, NULL, framed, &prob, &n_prob))
      status = 1;
    else if (cls >= n_prob)
      status = cli_errorf("--class: class %d is not among the model's %lld outputs", cls,
                          (long long)n_prob);
    else
      status = write_json(json, &cm, &vo, co.seed.value, cls, logit, prob, n_prob);
    dd_image_free(saved);
    dd_image_free(framed);
  }
  if (!status)
    cli_summary(&co, "class %d%s%s of %s, score %.4g, probability %.4f at %dx%d, seed %llu -> "
                "%s, %s", cls, cm.labels ? " " : "", label_of(&cm, cls), dd_model_name(cm.model),
                logit, prob[cls], vo.fv.size, vo.fv.size,
                (unsigned long long)co.seed.value, out, json);
  free(prob);
  dd_image_free(im);
  dd_fv_free(fv);
  cli_model_close(&cm);
  return status;
}
