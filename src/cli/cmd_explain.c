/* dream explain: top-5 predictions of an image, and for one class Grad-CAM and a gradient
 * saliency map side by side with the image, with a JSON of the numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

static const char explain_help[] =
    "usage: dream explain [--model M] [--class C] [--layer L] [options] IN OUT.png\n\n"
    "Prints the top 5 classes of IN and explains the top one (or C): OUT.png shows the image,\n"
    "its Grad-CAM heat map (channels of L weighted by their mean gradient, ReLU, upsampled;\n"
    "the maximum marked) and the saliency map (max over colours of |d score / d pixel|).  The\n"
    "whole image is resized to the preset's size (224x224) for the network, so nothing is cut\n"
    "off.  OUT.json beside it has the top 5, the class, the layer and the Grad-CAM maximum in\n"
    "image pixels.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -c, --class C        class to explain: a label or an index (default: the top one)\n"
    "  -l, --layer L        Grad-CAM layer (default: the last one with a spatial extent)\n"
    "      --smoothgrad N   average the gradient over N noisy copies (sigma 15%% of the range)\n"
    "      --seed N         SmoothGrad's noise (default 0)\n"
    "      --size S         side of the square the network sees (default: the preset's)\n"
    "      --height PX      height of each panel (default: the image's, at most 320)\n"
    "  -h, --help           this help\n";

enum { OPT_SMOOTHGRAD = 3001, OPT_SEED, OPT_SIZE, OPT_HEIGHT };

static const char *label_of(const cli_model *cm, int i) {
  return cm->labels && i >= 0 && i < cm->n_labels ? cm->labels[i] : "";
}

static int write_json(const char *path, const cli_model *cm, const char *in,
                      const dd_explanation *e, int smoothgrad) {
  char *buf;
  size_t len;
  FILE *f = vis_text_open(&buf, &len);
  if (!f) return cli_errorf("out of memory");
  fprintf(f, "{\n  \"model\": ");
  vis_json_str(f, dd_model_name(cm->model));
  fprintf(f, ",\n  \"image\": ");
  vis_json_str(f, in);
  fprintf(f, ",\n  \"width\": %d,\n  \"height\": %d,\n  \"top5\": [", e->w, e->h);
  for (int k = 0; k < DD_TOPK && e->top[k] >= 0; k++) {
    fprintf(f, "%s\n    {\"class\": %d, \"label\": ", k ? "," : "", e->top[k]);
    vis_json_str(f, label_of(cm, e->top[k]));
    fprintf(f, ", \"probability\": %.6g}", e->prob[k]);
  }
  fprintf(f, "\n  ],\n  \"class\": %d,\n  \"label\": ", e->cls);
  vis_json_str(f, label_of(cm, e->cls));
  fprintf(f, ",\n  \"score\": %.6g,\n  \"probability\": %.6g,\n", e->logit, e->prob_cls);
  fprintf(f, "  \"gradcam\": {\"layer\": ");
  vis_json_str(f, dd_model_value_name(cm->model, e->layer));
  fprintf(f, ", \"resolution\": [%d, %d], \"argmax\": {\"x\": %d, \"y\": %d}},\n", e->cam_w,
          e->cam_h, e->cam_x, e->cam_y);
  fprintf(f, "  \"smoothgrad\": %d\n}\n", smoothgrad);
  return vis_text_close(f, &buf, &len, path);
}

int cmd_explain(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           {"class", required_argument, NULL, 'c'},
                                           {"layer", required_argument, NULL, 'l'},
                                           {"smoothgrad", required_argument, NULL, OPT_SMOOTHGRAD},
                                           {"seed", required_argument, NULL, OPT_SEED},
                                           {"size", required_argument, NULL, OPT_SIZE},
                                           {"height", required_argument, NULL, OPT_HEIGHT},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  cli_model_opts mo;
  cli_model_opts_init(&mo);
  dd_explain_opts eo;
  dd_explain_opts_init(&eo);
  const char *query = NULL, *layer = NULL;
  int size = 0, height = 0, c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":m:c:l:h", longopts, NULL)) != -1) {
    int r = cli_model_opt(&mo, c, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (c) {
      case 'c': query = optarg; break;
      case 'l': layer = optarg; break;
      case OPT_SMOOTHGRAD:
        if (vis_int("explain", "--smoothgrad", optarg, 0, 1000, &eo.smoothgrad)) return 2;
        break;
      case OPT_SEED:
        if (vis_seed("explain", optarg, &eo.seed)) return 2;
        break;
      case OPT_SIZE:
        if (vis_int("explain", "--size", optarg, 16, 4096, &size)) return 2;
        break;
      case OPT_HEIGHT:
        if (vis_int("explain", "--height", optarg, 16, 4096, &height)) return 2;
        break;
      case 'h': fputs(explain_help, stdout); return 0;
      default: return cli_getopt_error("explain", c, argv);
    }
  }
  if (argc - optind != 2)
    return cli_usage_error("explain", "expected an input image and an output picture");
  const char *in = argv[optind], *out = argv[optind + 1];
  char json[4096];
  if (vis_sibling(out, ".json", json, sizeof json)) return 1;
  cli_model cm;
  if (cli_model_open(&mo, &cm)) return 1;
  eo.size = size ? size : cm.preset.size;
  eo.max_bytes = cm.max_memory;
  dd_err err;
  dd_image *im = NULL, *pic = NULL;
  dd_explanation *e = NULL;
  int status = 0;
  if (query) {
    if (cm.labels) {
      if (dd_labels_find(cm.labels, cm.n_labels, query, &eo.cls, &err)) status = cli_report(&err);
    } else if (vis_int("explain", "--class", query, 0, 1000000, &eo.cls)) {
      status = 2;
    }
  }
  if (!status && layer && dd_model_resolve(cm.model, layer, &eo.layer, &err))
    status = cli_report(&err);
  if (!status && (dd_image_load(in, cli_max_pixels(cm.max_memory), &im, &err) ||
                  dd_explain(cm.model, &cm.preset.pre, im, &eo, &e, &err) ||
                  dd_explain_picture(im, e, height, &pic, &err) || dd_image_save(out, pic, &err)))
    status = cli_report(&err);
  if (!status) status = write_json(json, &cm, in, e, eo.smoothgrad);
  if (!status) {
    printf("%s:\n", in);
    for (int k = 0; k < DD_TOPK && e->top[k] >= 0; k++)
      printf("  %6.2f%%  %4d  %s\n", e->prob[k] * 100, e->top[k], label_of(&cm, e->top[k]));
    printf("explained: %d %s (%.2f%%); Grad-CAM on '%s' (%dx%d), maximum at (%d, %d) -> %s, %s\n",
           e->cls, label_of(&cm, e->cls), e->prob_cls * 100,
           dd_model_value_name(cm.model, e->layer), e->cam_w, e->cam_h, e->cam_x, e->cam_y, out,
           json);
  }
  dd_explanation_free(e);
  dd_image_free(pic);
  dd_image_free(im);
  cli_model_close(&cm);
  return status;
}
