/* dream activations: a layer's feature maps for one image as heat maps, with per-channel
 * statistics in a CSV. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

static const char activations_help[] =
    "usage: dream activations [--model M] [--layer L] [options] IN OUT.png\n\n"
    "Runs the model on IN and draws each channel of layer L as a heat map (inferno, from 0 to\n"
    "the channel's own maximum), in a grid.  The image is resized so its shorter side is the\n"
    "preset's size (224), keeping its aspect.  A CSV of per-channel statistics (channel, mean,\n"
    "max, fraction of zeros) is written beside OUT (OUT.csv) or to --stats.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -l, --layer L        layer (default: the preset's layer)\n"
    "  -c, --channels A-B   channels to draw (default: all; the CSV always has all)\n"
    "      --size S         shorter side of the image the model sees (0: as it is)\n"
    "      --zoom Z         enlarge each map Z times (default: tiles of 24 pixels or more)\n"
    "      --gap PX         pixels between maps (default 2)\n"
    "      --cmap NAME      inferno (default) or viridis\n"
    "      --stats FILE     where to write the CSV\n"
    "  -h, --help           this help\n";

enum { OPT_SIZE = 3001, OPT_ZOOM, OPT_GAP, OPT_CMAP, OPT_STATS };

static int write_stats(const char *path, const dd_tensor *act) {
  int64_t C = act->shape.d[0];
  dd_chan_stats *st = malloc((size_t)C * sizeof *st);
  if (!st) return cli_errorf("out of memory");
  dd_vis_channel_stats(act, st);
  char *buf;
  size_t len;
  FILE *f = vis_text_open(&buf, &len);
  if (!f) {
    free(st);
    return cli_errorf("out of memory");
  }
  fprintf(f, "channel,mean,max,zero_fraction\n");
  for (int64_t c = 0; c < C; c++)
    fprintf(f, "%lld,%.6g,%.6g,%.6g\n", (long long)c, st[c].mean, st[c].max, st[c].zeros);
  free(st);
  return vis_text_close(f, &buf, &len, path);
}

/* Shorter side to `size`, aspect kept; a copy of `im` when size is 0. */
static int fit(const dd_image *im, int size, dd_image **out, dd_err *err) {
  int w = im->w, h = im->h;
  if (size > 0) {
    if (w < h) {
      h = (int)((long long)h * size / w);
      w = size;
    } else {
      w = (int)((long long)w * size / h);
      h = size;
    }
  }
  return dd_image_resize(im, w, h, out, err);
}

int cmd_activations(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           {"layer", required_argument, NULL, 'l'},
                                           {"channels", required_argument, NULL, 'c'},
                                           {"size", required_argument, NULL, OPT_SIZE},
                                           {"zoom", required_argument, NULL, OPT_ZOOM},
                                           {"gap", required_argument, NULL, OPT_GAP},
                                           {"cmap", required_argument, NULL, OPT_CMAP},
                                           {"stats", required_argument, NULL, OPT_STATS},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  cli_model_opts mo;
  cli_model_opts_init(&mo);
  const char *layer = NULL, *stats = NULL;
  int c0 = 0, c1 = -1, size = -1, zoom = 0, gap = 2, c;
  dd_cmap map = DD_CMAP_INFERNO;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":m:l:c:h", longopts, NULL)) != -1) {
    int r = cli_model_opt(&mo, c, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (c) {
      case 'l': layer = optarg; break;
      case 'c':
        if (vis_range("activations", "--channels", optarg, &c0, &c1)) return 2;
        break;
      case OPT_SIZE:
        if (vis_int("activations", "--size", optarg, 0, 8192, &size)) return 2;
        break;
      case OPT_ZOOM:
        if (vis_int("activations", "--zoom", optarg, 1, 64, &zoom)) return 2;
        break;
      case OPT_GAP:
        if (vis_int("activations", "--gap", optarg, 0, 64, &gap)) return 2;
        break;
      case OPT_CMAP:
        if (!strcmp(optarg, "inferno")) map = DD_CMAP_INFERNO;
        else if (!strcmp(optarg, "viridis")) map = DD_CMAP_VIRIDIS;
        else return cli_usage_error("activations", "--cmap: expected inferno or viridis, got '%s'", optarg);
        break;
      case OPT_STATS: stats = optarg; break;
      case 'h': fputs(activations_help, stdout); return 0;
      default: return cli_getopt_error("activations", c, argv);
    }
  }
  if (argc - optind != 2)
    return cli_usage_error("activations", "expected an input image and an output picture");
  const char *in = argv[optind], *out = argv[optind + 1];
  char csv[4096];
  if (stats) {
    if (strlen(stats) >= sizeof csv) return cli_errorf("%s: path too long", stats);
    strcpy(csv, stats);
  } else if (vis_sibling(out, ".csv", csv, sizeof csv)) {
    return 1;
  }
  cli_model cm;
  if (cli_model_open(&mo, &cm)) return 1;
  if (!layer) layer = cm.preset.layer[0] ? cm.preset.layer : "conv1";
  if (size < 0) size = cm.preset.size;
  dd_err err;
  dd_image *photo = NULL, *im = NULL, *grid = NULL;
  dd_tensor *act = NULL;
  dd_grid g;
  int value, status = 0;
  if (dd_model_resolve(cm.model, layer, &value, &err) || dd_image_load(in, cli_max_pixels(cm.max_memory), &photo, &err) ||
      fit(photo, size, &im, &err) ||
      dd_vis_activations(cm.model, &cm.preset.pre, value, im, cm.max_memory, &act, &err))
    status = cli_report(&err);
  if (!status) {
    int C = (int)act->shape.d[0];
    if (c1 < 0) c1 = C;
    if (c1 > C)
      status = cli_errorf("'%s' has %d channels, not %d", layer, C, c1);
    else if (dd_vis_activation_grid(act, c0, c1, zoom, gap, map, &grid, &g, &err) ||
             dd_image_save(out, grid, &err))
      status = cli_report(&err);
    else
      status = write_stats(csv, act);
  }
  if (!status)
    printf("%s: '%s' on %s at %dx%d: %lld channels of %lldx%lld, %d drawn -> %s, %s\n",
           dd_model_name(cm.model), dd_model_value_name(cm.model, value), in, im->w, im->h,
           (long long)act->shape.d[0], (long long)act->shape.d[2], (long long)act->shape.d[1],
           g.n, out, csv);
  dd_tensor_free(act);
  dd_image_free(grid);
  dd_image_free(im);
  dd_image_free(photo);
  cli_model_close(&cm);
  return status;
}
