/* dream shapes: a labelled folder of synthetic shapes (one subfolder per class), the dataset
 * of `dream train`: random position, scale, rotation, colours and noise, drawn with 4x4
 * supersampling.  --color-by-class makes the flawed set (each class its own colour). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "dream/image.h"
#include "dream/train.h"
#include "util.h"

static const char shapes_help[] =
    "usage: dream shapes [options] OUT_DIR\n\n"
    "Writes a labelled folder of synthetic shapes for `dream train` and `dream audit`:\n"
    "OUT_DIR/<class>/<class>_NNNNN.png, each shape at a random position, scale, rotation and\n"
    "colour on a random background, with Gaussian noise.  The same options and seed give the\n"
    "same files.\n\n"
    "options:\n"
    "      --size S         image side in pixels, 8..1024 (default 32)\n"
    "      --count N        images per class, 1..1000000 (default 200)\n"
    "      --classes LIST   comma-separated classes among circle, square, triangle, cross,\n"
    "                       ring, star (default circle,square,triangle,cross)\n"
    "      --noise SIGMA    noise standard deviation in levels 0..255 (default 8)\n"
    "      --color-by-class every class in one colour of its own (red, blue, green, yellow,\n"
    "                       magenta, cyan in --classes order) on a grey background: the\n"
    "                       flawed set, where colour alone tells the classes apart\n"
    "      --color-shift K  with --color-by-class, class i gets class i+K's colour: the\n"
    "                       recoloured test set on which a colour-reader fails\n"
    "      --one-vs-rest C  two folders: C, and 'other' with each image a random one of the\n"
    "                       other --classes (the perceptron's circle-versus-rest question)\n"
    "      --seed N         seed (default 0)\n" CLI_COMMON_HELP;

int cmd_shapes(int argc, char **argv) {
  enum { O_SIZE = 2001, O_COUNT, O_CLASSES, O_NOISE, O_BYCLASS, O_SHIFT, O_OVR };
  static const struct option longopts[] = {{"size", required_argument, NULL, O_SIZE},
                                           {"count", required_argument, NULL, O_COUNT},
                                           {"classes", required_argument, NULL, O_CLASSES},
                                           {"noise", required_argument, NULL, O_NOISE},
                                           {"color-by-class", no_argument, NULL, O_BYCLASS},
                                           {"color-shift", required_argument, NULL, O_SHIFT},
                                           {"one-vs-rest", required_argument, NULL, O_OVR},
                                           CLI_SEED_LONGOPT,
                                           {"quiet", no_argument, NULL, 'q'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  int size = 32, count = 200, by_class = 0, shift = 0, shift_given = 0, c;
  float noise = 8;
  const char *ovr = NULL;
  int cls[DD_SHAPE_CLASSES], n_cls = 4;
  for (int i = 0; i < 4; i++) cls[i] = i;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("shapes", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case O_SIZE:
        if (cli_parse_int("--size", optarg, 8, 1024, &size, &err))
          return cli_usage_error("shapes", "%s", err.msg);
        break;
      case O_COUNT:
        if (cli_parse_int("--count", optarg, 1, 1000000, &count, &err))
          return cli_usage_error("shapes", "%s", err.msg);
        break;
      case O_NOISE:
        if (cli_parse_float("--noise", optarg, 0, 255, 0, &noise, &err))
          return cli_usage_error("shapes", "%s", err.msg);
        break;
      case O_BYCLASS: by_class = 1; break;
      case O_OVR: ovr = optarg; break;
      case O_SHIFT:
        if (cli_parse_int("--color-shift", optarg, -100, 100, &shift, &err))
          return cli_usage_error("shapes", "%s", err.msg);
        shift_given = 1;
        break;
      case O_CLASSES: {
        n_cls = 0;
        const char *p = optarg;
        while (*p) {
          size_t len = strcspn(p, ",");
          int found = -1;
          for (int i = 0; i < DD_SHAPE_CLASSES; i++)
            if (strlen(dd_shape_names[i]) == len && !strncmp(p, dd_shape_names[i], len)) found = i;
          if (found < 0)
            return cli_usage_error("shapes", "--classes: unknown class '%.*s' (circle, square, "
                                   "triangle, cross, ring, star)", (int)len, p);
          for (int i = 0; i < n_cls; i++)
            if (cls[i] == found)
              return cli_usage_error("shapes", "--classes: '%s' twice", dd_shape_names[found]);
          cls[n_cls++] = found;
          p += len;
          if (*p == ',') p++;
        }
        if (n_cls < 1) return cli_usage_error("shapes", "--classes: no class given");
        break;
      }
      case 'h': fputs(shapes_help, stdout); return 0;
      default: return cli_getopt_error("shapes", c, argv);
    }
  }
  if (optind + 1 != argc)
    return cli_usage_error("shapes", optind == argc ? "OUT_DIR is required"
                                                    : "one OUT_DIR, got more arguments");
  int ovr_cls = -1;
  if (ovr) {
    for (int i = 0; i < n_cls; i++)
      if (!strcmp(dd_shape_names[cls[i]], ovr)) ovr_cls = i;
    if (ovr_cls < 0 || n_cls < 2)
      return cli_usage_error("shapes", "--one-vs-rest %s: not one of --classes (of which it "
                             "needs two or more)", ovr);
    if (by_class) return cli_usage_error("shapes", "--one-vs-rest with --color-by-class: not "
                                         "supported");
  }
  if (shift_given && !by_class)
    cli_warnf("--color-shift does nothing without --color-by-class");
  const char *out = argv[optind];
  if (mkdir(out, 0777) && errno != EEXIST) return cli_errorf("%s: %s", out, strerror(errno));
  struct stat st;
  if (stat(out, &st) || !S_ISDIR(st.st_mode)) return cli_errorf("%s: not a folder", out);
  dd_image *im;
  if (dd_image_new(size, size, &im, &err)) return cli_report(&err);
  char path[4096];
  int status = 0;
  dd_shapes_opts so;
  memset(&so, 0, sizeof so);
  memcpy(so.classes, cls, sizeof cls);
  so.n_classes = n_cls;
  so.one_vs_rest = ovr_cls;
  so.by_class = by_class;
  so.shift = shift;
  so.noise = noise;
  so.seed = co.seed.value;
  int n_folders = dd_shapes_folders(&so);
  for (int k = 0; k < n_folders && !status; k++) {
    const char *folder = dd_shapes_folder_name(&so, k);
    snprintf(path, sizeof path, "%s/%s", out, folder);
    if (mkdir(path, 0777) && errno != EEXIST) {
      status = cli_errorf("%s: %s", path, strerror(errno));
      break;
    }
    for (int i = 0; i < count; i++) {
      dd_shapes_image(im, &so, k, i);
      snprintf(path, sizeof path, "%s/%s/%s_%05d.png", out, folder, folder, i);
      if (dd_image_save(path, im, &err)) {
        status = cli_report(&err);
        break;
      }
    }
  }
  dd_image_free(im);
  if (!status)
    cli_summary(&co, "wrote %d x %d images of %dx%d to %s/", n_folders, count, size, size, out);
  if (!status && co.seed.random && !co.quiet)
    fprintf(stderr, "dream: --seed %llu\n", (unsigned long long)co.seed.value);
  return status;
}
