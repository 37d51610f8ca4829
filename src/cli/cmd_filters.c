/* dream filters: a first convolution's kernels as a grid of colour tiles, or (--optimize) a
 * grid of images optimized to excite each channel of any layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

#define FILTERS_SIZE 128

static const char filters_help[] =
    "usage: dream filters [options] OUT.png\n"
    "       dream filters --optimize [--layer L] [--channels A-B] [options] OUT.png\n\n"
    "Without --optimize: the kernels of a first convolution (3 input channels), one colour\n"
    "tile per output channel, each scaled on its own around 0 (mid-grey), enlarged so small\n"
    "kernels show.  L is the Conv's output, the activation right after it, or an alias convN.\n\n"
    "With --optimize, for any layer: one image per channel, optimized from noise to maximize\n"
    "the channel's mean activation (Fourier-space, colour-decorrelated image, random jitter,\n"
    "scale and rotation at each step).  OUT.csv beside the picture lists each channel's mean\n"
    "activation on its image.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -l, --layer L        layer (default: conv1, or the preset's layer with --optimize)\n"
    "      --zoom Z         enlarge each kernel Z times (default: tiles of 32 pixels or more)\n"
    "      --gap PX         pixels between tiles (default 2)\n"
    "      --optimize       channel visualizations instead of kernels\n"
    "  -c, --channels A-B   channels to optimize (default: all)\n" VIS_FV_HELP
    CLI_QUALITY_HELP CLI_COMMON_HELP;

enum { OPT_ZOOM = 3001, OPT_GAP, OPT_OPTIMIZE };

static int draw_kernels(const cli_model *cm, const cli_common *co, int value, int zoom, int gap,
                        const char *out) {
  dd_err err;
  int node;
  dd_image *grid;
  dd_grid g;
  if (dd_vis_find_conv(cm->model, value, &node, &err) ||
      dd_vis_filters(cm->model, node, cm->preset.pre.bgr, zoom, gap, &grid, &g, &err)) {
    cli_report(&err);
    fprintf(stderr, "dream: for any layer, --optimize draws an image per channel instead\n");
    return 1;
  }
  int rc = cli_save_image(out, grid, co, NULL, &err);
  dd_image_free(grid);
  if (rc) return cli_report(&err);
  cli_summary(co, "%d kernels of '%s' of %s (%dx%d tiles, %d x %d grid) -> %s", g.n,
              dd_model_node_name(cm->model, node), dd_model_name(cm->model), g.tile_w, g.tile_h,
              g.cols, g.rows, out);
  return 0;
}

static int optimize_channels(const cli_model *cm, const cli_common *co, int value, int c0,
                             int c1, vis_fv_cli *vo, int gap, const char *out, const char *csv) {
  dd_err err;
  dd_fv *fv;
  vo->fv.max_memory = cm->max_memory;
  vo->fv.precision = cli_precision(co, 1);
  vis_fv_progress(vo, co);
  int sw = vo->size_given ? vo->fv.size : 0, sh = sw;
  if (cli_network_size(cm, &value, 1, vo->fv.size, &sw, &sh, NULL)) return 1;
  if (sw != sh)
    return cli_errorf("%s takes only %dx%d inputs; --optimize needs a square input",
                      dd_model_name(cm->model), sw, sh);
  vo->fv.size = sw;
  if (dd_fv_new(cm->model, &cm->preset.pre, value, &vo->fv, &fv, &err)) return cli_report(&err);
  int C = dd_fv_channels(fv);
  if (c1 < 0) {
    c0 = 0;
    c1 = C;
  }
  if (c1 > C) {
    dd_fv_free(fv);
    return cli_errorf("--channels: channel %d out of range 0..%d of '%s' (%s)", c1 - 1, C - 1,
                      dd_model_value_name(cm->model, value), dd_model_name(cm->model));
  }
  int n = c1 - c0, status = 0;
  dd_image **tiles = calloc((size_t)n, sizeof *tiles);
  float *obj = calloc((size_t)n, sizeof *obj);
  if (!tiles || !obj) status = cli_errorf("out of memory");
  vo->what = "channel";
  vo->count = n;
  for (int i = 0; i < n && !status; i++) {
    vo->index = c0 + i;
    /* Each channel its own seed, so a channel's picture does not depend on the range. */
    if (dd_fv_run(fv, c0 + i, co->seed.value + (uint64_t)(c0 + i), &tiles[i], &obj[i], &err))
      status = cli_report(&err);
  }
  dd_fv_free(fv);
  dd_image *grid = NULL;
  dd_grid g;
  if (!status && dd_vis_grid((const dd_image *const *)tiles, n, gap, 255, &grid, &g, &err))
    status = cli_report(&err);
  if (!status && cli_save_image(out, grid, co, NULL, &err)) status = cli_report(&err);
  if (!status) {
    char *buf;
    size_t len;
    FILE *f = vis_text_open(&buf, &len);
    if (!f) status = cli_errorf("out of memory");
    else {
      fprintf(f, "channel,mean_activation\n");
      for (int i = 0; i < n; i++) fprintf(f, "%d,%.6g\n", c0 + i, obj[i]);
      status = vis_text_close(f, &buf, &len, csv);
    }
  }
  if (!status)
    cli_summary(co, "%d channels of '%s' of %s at %dx%d, %d steps, seed %llu -> %s, %s", n,
                dd_model_value_name(cm->model, value), dd_model_name(cm->model), vo->fv.size,
                vo->fv.size, vo->fv.iters, (unsigned long long)co->seed.value, out, csv);
  dd_image_free(grid);
  if (tiles)
    for (int i = 0; i < n; i++) dd_image_free(tiles[i]);
  free(tiles);
  free(obj);
  return status;
}

int cmd_filters(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           VIS_FV_LONGOPTS,
                                           CLI_QUALITY_LONGOPT,
                                           {"layer", required_argument, NULL, 'l'},
                                           {"zoom", required_argument, NULL, OPT_ZOOM},
                                           {"gap", required_argument, NULL, OPT_GAP},
                                           {"optimize", no_argument, NULL, OPT_OPTIMIZE},
                                           {"channels", required_argument, NULL, 'c'},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  vis_fv_cli vo;
  vis_fv_cli_init(&vo, FILTERS_SIZE);
  const char *layer = NULL;
  int zoom = 0, gap = 2, optimize = 0, c0 = 0, c1 = -1, channels_given = 0, fv_given = 0,
      zoom_given = 0, c;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:l:c:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (!r && (r = vis_fv_opt(&vo, c, optarg, &err)) > 0) fv_given = 1;
    if (r < 0) return cli_usage_error("filters", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case 'l': layer = optarg; break;
      case OPT_ZOOM:
        zoom_given = 1;
        r = cli_parse_int("--zoom", optarg, 1, 64, &zoom, &err);
        break;
      case OPT_GAP: r = cli_parse_int("--gap", optarg, 0, 64, &gap, &err); break;
      case OPT_OPTIMIZE: optimize = 1; break;
      case 'c':
        channels_given = 1;
        r = cli_parse_range("--channels", optarg, &c0, &c1, &err);
        break;
      case 'h':
        printf(filters_help, FILTERS_SIZE);
        return 0;
      default: return cli_getopt_error("filters", c, argv);
    }
    if (r) return cli_usage_error("filters", "%s", err.msg);
  }
  if (optind + 1 != argc)
    return cli_usage_error("filters", optind >= argc ? "no output file given"
                                                     : "expected one output file");
  const char *out = argv[optind];
  if (!optimize && (channels_given || fv_given || co.seed_given))
    cli_warnf("--channels, --steps, --size, --lr, --jitter, --pixels, --no-transforms and "
              "--seed only act with --optimize");
  if (optimize && zoom_given) cli_warnf("--zoom does nothing with --optimize");
  vis_fv_warn(&vo);
  cli_common_warn(&co);
  char csv[4096];
  if (cli_sibling(out, ".csv", csv, sizeof csv)) return 1;
  cli_files files = {0};
  cli_files_out(&files, out, CLI_OUT_IMAGE);
  if (optimize) cli_files_out(&files, csv, CLI_OUT_CSV);
  cli_model cm;
  int status = cli_model_open_checked("filters", &co.model, &files, &cm);
  if (status) return status;
  if (!layer) layer = optimize && cm.preset.layer[0] ? cm.preset.layer : "conv1";
  int value;
  if (cli_resolve(cm.model, layer, &value, &err)) status = cli_report(&err);
  else if (optimize) status = optimize_channels(&cm, &co, value, c0, c1, &vo, gap, out, csv);
  else status = draw_kernels(&cm, &co, value, zoom, gap, out);
  cli_model_close(&cm);
  return status;
}
