/* dream explain: top-5 predictions of an image, and for one class Grad-CAM and a gradient
 * saliency map side by side with the image, with a JSON of the numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

static const char explain_help[] =
    "usage: dream explain [options] IN OUT.png\n\n"
    "Prints the top 5 classes of IN and explains the top one (or --class): OUT.png shows the\n"
    "part of the image the network saw, its Grad-CAM heat map (channels of L weighted by their mean\n"
    "gradient, ReLU, upsampled; the maximum marked) and the saliency map (max over colours of\n"
    "|d score / d pixel|).  The photo is framed as `dream classify` frames it (--framing), so\n"
    "both list the same top 5.  OUT.json beside it has the top 5, the class, the layer and the\n"
    "Grad-CAM maximum, in the pictured part's pixels and in the photo's.\n\n"
    "options:\n" CLI_MODEL_HELP
    "      --class C        class to explain: its index or its label, matched whole and\n"
    "                       case-insensitively (default: the top one)\n"
    "  -l, --layer L        Grad-CAM layer (default: the last one with a spatial extent: a map,\n"
    "                       tokens or a channels-last grid whose grid gets a gradient)\n"
    "      --smoothgrad N   average the gradient over N noisy copies (sigma 15% of the range)\n"
    CLI_SEED_HELP
    "      --size S         side of the square the network sees (default: the model's own\n"
    "                       when it takes one size only, else the preset's)\n"
    "      --height PX      height of each panel (default: the image's, at most 320)\n"
    CLI_FRAMING_HELP CLI_QUALITY_HELP CLI_COMMON_HELP;

enum { OPT_SMOOTHGRAD = 3001, OPT_SIZE, OPT_HEIGHT, OPT_CLASS };

static const char *label_of(const cli_model *cm, int i) {
  return cm->labels && i >= 0 && i < cm->n_labels ? cm->labels[i] : "";
}

static int write_json(const char *path, const cli_model *cm, const char *in,
                      const dd_explanation *e, const dd_frame_rect *r, const int *top,
                      const double *prob, int smoothgrad) {
  json_t *o = json_object(), *t = json_array();
  int bad = !o || !t;
  bad |= vis_json_set_path(o, "model", dd_model_name(cm->model));
  bad |= vis_json_set_path(o, "image", in);
  bad |= json_object_set_new(o, "width", json_integer(e->w));
  bad |= json_object_set_new(o, "height", json_integer(e->h));
  bad |= json_object_set_new(o, "frame", json_pack("{s:f, s:f, s:f, s:f}", "x", (double)r->x,
                                                   "y", (double)r->y, "width", (double)r->w,
                                                   "height", (double)r->h));
  for (int k = 0; k < DD_TOPK && top[k] >= 0 && !bad; k++)
    bad |= json_array_append_new(t, json_pack("{s:i, s:o, s:f}", "class", top[k], "label",
                                              vis_json_text(label_of(cm, top[k]), NULL),
                                              "probability", prob[top[k]]));
  bad |= json_object_set(o, "top5", t);
  json_decref(t);
  bad |= json_object_set_new(o, "class", json_integer(e->cls));
  bad |= json_object_set_new(o, "label", vis_json_text(label_of(cm, e->cls), NULL));
  bad |= json_object_set_new(o, "score", json_real(e->logit));
  bad |= json_object_set_new(o, "probability", json_real(e->prob_cls));
  /* The maximum in the framed image, and where that pixel's centre lies in the photo. */
  int px = (int)r->x + e->cam_x, py = (int)r->y + e->cam_y;
  bad |= json_object_set_new(
      o, "gradcam",
      json_pack("{s:o, s:[i, i], s:{s:i, s:i}, s:{s:i, s:i}}", "layer",
                vis_json_text(dd_model_value_name(cm->model, e->layer), NULL), "resolution",
                e->cam_w, e->cam_h, "argmax", "x", e->cam_x, "y", e->cam_y, "argmax_in_photo",
                "x", px, "y", py));
  bad |= json_object_set_new(o, "smoothgrad", json_integer(smoothgrad));
  if (bad) {
    json_decref(o);
    o = NULL;
  }
  return vis_json_write(o, path);
}

int cmd_explain(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS, CLI_SEED_LONGOPT,
                                           CLI_QUALITY_LONGOPT, CLI_FRAMING_LONGOPT,
                                           {"class", required_argument, NULL, OPT_CLASS},
                                           {"layer", required_argument, NULL, 'l'},
                                           {"smoothgrad", required_argument, NULL, OPT_SMOOTHGRAD},
                                           {"size", required_argument, NULL, OPT_SIZE},
                                           {"height", required_argument, NULL, OPT_HEIGHT},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  dd_explain_opts eo;
  dd_explain_opts_init(&eo);
  const char *query = NULL, *layer = NULL;
  int size = 0, height = 0, c;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:l:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("explain", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case OPT_CLASS: query = optarg; break;
      case 'l': layer = optarg; break;
      case OPT_SMOOTHGRAD:
        r = cli_parse_int("--smoothgrad", optarg, 0, 1000, &eo.smoothgrad, &err);
        break;
      case OPT_SIZE: r = cli_parse_int("--size", optarg, 16, 4096, &size, &err); break;
      case OPT_HEIGHT: r = cli_parse_int("--height", optarg, 16, 4096, &height, &err); break;
      case 'h': fputs(explain_help, stdout); return 0;
      default: return cli_getopt_error("explain", c, argv);
    }
    if (r) return cli_usage_error("explain", "%s", err.msg);
  }
  if (argc - optind != 2)
    return cli_usage_error("explain", "expected an input image and an output picture");
  if (co.framing == DD_FRAME_FIT)
    return cli_usage_error("explain", "--framing fit: Grad-CAM's network input is a square; use "
                           "crop or squash");
  const char *in = argv[optind], *out = argv[optind + 1];
  char json[4096];
  if (cli_sibling(out, ".json", json, sizeof json)) return 1;
  if (co.seed_given && eo.smoothgrad <= 1)
    cli_warnf("--seed does nothing without --smoothgrad N (N > 1)");
  cli_common_warn(&co);
  eo.seed = co.seed.value;
  cli_files files = {0};
  cli_files_in(&files, in);
  cli_files_out(&files, out, CLI_OUT_IMAGE);
  cli_files_out(&files, json, CLI_OUT_JSON);
  cli_model cm;
  int status = cli_model_open_checked("explain", &co.model, &files, &cm);
  if (status) return status;
  int sw = size, sh = size, fixed = 0;
  if (cli_network_size(&cm, NULL, 0, cm.preset.size, &sw, &sh, &fixed)) {
    cli_model_close(&cm);
    return 1;
  }
  if (sw != sh) {
    cli_errorf("%s takes only %dx%d inputs; explain needs a square input",
               dd_model_name(cm.model), sw, sh);
    cli_model_close(&cm);
    return 1;
  }
  eo.size = sw;
  eo.max_memory = cm.max_memory;
  dd_image *photo = NULL, *im = NULL, *pic = NULL;
  dd_explanation *e = NULL;
  dd_frame_rect rect;
  int ow, oh;
  if (dd_model_image_input(cm.model, NULL, &err)) status = cli_report(&err);
  else if (query && cli_find_class(&cm, query, &eo.cls)) status = 1;
  else if (layer && cli_resolve(cm.model, layer, &eo.layer, &err)) status = cli_report(&err);
  else if (cli_load_image(in, &cm, &photo)) status = 1;
  /* The part of the photo the network sees, at full resolution: dd_explain resizes it to
   * the network's square exactly as dd_image_frame would, so classify and explain see the
   * same pixels, and the picture keeps the photo's detail. */
  else if (dd_frame_layout(photo->w, photo->h, co.framing, eo.size, eo.size, &rect, &ow, &oh,
                           &err) ||
           dd_image_cut(photo, (int)rect.x, (int)rect.y, (int)rect.w, (int)rect.h, &im, &err) ||
           dd_explain(cm.model, &cm.preset.pre, im, &eo, &e, &err) ||
           dd_explain_picture(im, e, height, &pic, &err) ||
           cli_save_image(out, pic, &co, NULL, &err))
    status = cli_report(&err);
  /* The top 5 through the one classification path, on the same framing: the list classify
   * prints. */
  double *prob = NULL;
  int64_t n = 0;
  int top[DD_TOPK];
  dd_image *framed = NULL;
  if (!status && (dd_image_frame(photo, co.framing, eo.size, eo.size, &framed, NULL, &err)))
    status = cli_report(&err);
  if (!status && cli_classify(&cm, NULL, framed, &prob, &n)) status = 1;
  if (!status) {
    cli_top_k(prob, n, DD_TOPK, top);
    status = write_json(json, &cm, in, e, &rect, top, prob, eo.smoothgrad);
  }
  if (!status) {
    printf("%s:\n", in);
    for (int k = 0; k < DD_TOPK && top[k] >= 0; k++)
      printf("  %6.2f%%  %4d  %s\n", prob[top[k]] * 100, top[k], label_of(&cm, top[k]));
    cli_summary(&co, "explained %d %s (%.2f%%); Grad-CAM on '%s' (%dx%d), maximum at (%d, %d) "
                "-> %s, %s", e->cls, label_of(&cm, e->cls), e->prob_cls * 100,
                dd_model_value_name(cm.model, e->layer), e->cam_w, e->cam_h, e->cam_x, e->cam_y,
                out, json);
  }
  free(prob);
  dd_image_free(framed);
  dd_explanation_free(e);
  dd_image_free(pic);
  dd_image_free(im);
  dd_image_free(photo);
  cli_model_close(&cm);
  return status;
}
