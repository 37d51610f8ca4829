/* dream activations: a layer's feature maps for one image as heat maps, with per-channel
 * statistics in a CSV. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/visopt.h"
#include "dream/visualize.h"

static const char activations_help[] =
    "usage: dream activations [options] IN OUT.png\n\n"
    "Runs the model on IN and draws each channel of layer L as a heat map (inferno, from 0 to\n"
    "the channel's own maximum), in a grid.  The image is framed with --framing fit by\n"
    "default: its shorter side resized to the preset's size (224), the aspect kept, the\n"
    "longer side at most 4 times the shorter (a longer image is cut to its centre).  A CSV of\n"
    "per-channel statistics (channel, mean, max, fraction of zeros) is written beside OUT\n"
    "(OUT.csv) or to --stats.  Tokens (ViT's 1 x (1+N) x C, CLIP's (1+N) x 1 x C) and\n"
    "channels-last grids (Swin's 1 x H x W x C) are drawn as their grid per channel, the class\n"
    "token left out.  A model that takes one size only is fed that size, framed with crop.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -l, --layer L        layer (default: the preset's layer)\n"
    "  -c, --channels A-B   channels to draw (default: all; the CSV always has all)\n"
    "      --size S|WxH     the network's input size (default: the model's own when it takes\n"
    "                       one size only, else the preset's)\n"
    "      --framing F      crop, squash or fit (default fit, see above)\n"
    "      --zoom Z         enlarge each map Z times (default: tiles of 24 pixels or more)\n"
    "      --gap PX         pixels between maps (default 2)\n"
    "      --cmap NAME      inferno (default) or viridis\n"
    "      --stats FILE.csv where to write the CSV\n"
    CLI_QUALITY_HELP CLI_COMMON_HELP;

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

int cmd_activations(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS, CLI_QUALITY_LONGOPT,
                                           CLI_FRAMING_LONGOPT,
                                           {"layer", required_argument, NULL, 'l'},
                                           {"channels", required_argument, NULL, 'c'},
                                           {"size", required_argument, NULL, OPT_SIZE},
                                           {"zoom", required_argument, NULL, OPT_ZOOM},
                                           {"gap", required_argument, NULL, OPT_GAP},
                                           {"cmap", required_argument, NULL, OPT_CMAP},
                                           {"stats", required_argument, NULL, OPT_STATS},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  co.framing = DD_FRAME_FIT;
  const char *layer = NULL, *stats = NULL;
  int c0 = 0, c1 = -1, w = 0, h = 0, zoom = 0, gap = 2, c;
  dd_cmap map = DD_CMAP_INFERNO;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:l:c:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("activations", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case 'l': layer = optarg; break;
      case 'c': r = cli_parse_range("--channels", optarg, &c0, &c1, &err); break;
      case OPT_SIZE: r = cli_parse_wh("--size", optarg, &w, &h, &err); break;
      case OPT_ZOOM: r = cli_parse_int("--zoom", optarg, 1, 64, &zoom, &err); break;
      case OPT_GAP: r = cli_parse_int("--gap", optarg, 0, 64, &gap, &err); break;
      case OPT_CMAP:
        if (!strcmp(optarg, "inferno")) map = DD_CMAP_INFERNO;
        else if (!strcmp(optarg, "viridis")) map = DD_CMAP_VIRIDIS;
        else r = dd_fail(&err, DD_EARG, "--cmap: expected inferno or viridis, got '%s'", optarg);
        break;
      case OPT_STATS: stats = optarg; break;
      case 'h': fputs(activations_help, stdout); return 0;
      default: return cli_getopt_error("activations", c, argv);
    }
    if (r) return cli_usage_error("activations", "%s", err.msg);
  }
  if (argc - optind != 2)
    return cli_usage_error("activations", "expected an input image and an output picture");
  const char *in = argv[optind], *out = argv[optind + 1];
  char csv[4096];
  if (stats) {
    if (strlen(stats) >= sizeof csv) return cli_errorf("%s: path too long", stats);
    strcpy(csv, stats);
  } else if (cli_sibling(out, ".csv", csv, sizeof csv)) {
    return 1;
  }
  cli_common_warn(&co);
  cli_files files = {0};
  cli_files_in(&files, in);
  cli_files_out(&files, out, CLI_OUT_IMAGE);
  cli_files_out(&files, csv, CLI_OUT_CSV);
  cli_model cm;
  int status = cli_model_open_checked("activations", &co.model, &files, &cm);
  if (status) return status;
  if (!layer) layer = cm.preset.layer[0] ? cm.preset.layer : "conv1";
  int fixed = 0;
  if (cli_network_size(&cm, NULL, 0, cm.preset.size, &w, &h, &fixed)) {
    cli_model_close(&cm);
    return 1;
  }
  if (fixed && co.framing == DD_FRAME_FIT) {
    /* one size only: the photo is framed as classify frames it */
    if (co.framing_given) {
      cli_errorf("%s takes only %dx%d inputs: --framing fit cannot keep the photo's aspect; "
                 "use crop or squash", dd_model_name(cm.model), w, h);
      cli_model_close(&cm);
      return 1;
    }
    co.framing = DD_FRAME_CROP;
  }
  dd_image *photo = NULL, *im = NULL, *grid = NULL;
  dd_tensor *act = NULL;
  dd_grid g;
  int value;
  if (dd_model_image_input(cm.model, NULL, &err) ||
      cli_resolve(cm.model, layer, &value, &err))
    status = cli_report(&err);
  else if (cli_load_image(in, &cm, &photo))
    status = 1;
  else if (dd_image_frame(photo, co.framing, w, h, &im, NULL, &err) ||
           dd_vis_activations(cm.model, &cm.preset.pre, value, im, cm.max_memory, &act, &err))
    status = cli_report(&err);
  if (!status) {
    int C = (int)act->shape.d[0];
    if (c1 < 0) c1 = C;
    if (c1 > C)
      status = cli_errorf("--channels: channel %d out of range 0..%d of '%s'", c1 - 1, C - 1,
                          layer);
    else if (dd_vis_activation_grid(act, c0, c1, zoom, gap, map, &grid, &g, &err) ||
             cli_save_image(out, grid, &co, NULL, &err))
      status = cli_report(&err);
    else
      status = write_stats(csv, act);
  }
  if (!status)
    cli_summary(&co, "'%s' of %s on %s at %dx%d: %lld channels of %lldx%lld, %d drawn -> %s, %s",
                dd_model_value_name(cm.model, value), dd_model_name(cm.model), in, im->w, im->h,
                (long long)act->shape.d[0], (long long)act->shape.d[2],
                (long long)act->shape.d[1], g.n, out, csv);
  dd_tensor_free(act);
  dd_image_free(grid);
  dd_image_free(im);
  dd_image_free(photo);
  cli_model_close(&cm);
  return status;
}
