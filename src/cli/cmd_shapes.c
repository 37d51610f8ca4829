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

static const char *const all_classes[] = {"circle", "square", "triangle", "cross", "ring", "star"};
#define N_ALL 6
static const float class_colors[6][3] = {{220, 30, 30}, {30, 60, 220}, {30, 180, 40},
                                         {230, 210, 30}, {200, 40, 200}, {30, 200, 210}};

/* Inside test of class `cls` at local coordinates (u, v), the shape's radius 1. */
static int inside(int cls, float u, float v) {
  switch (cls) {
    case 0: return u * u + v * v <= 1.0f;
    case 1: return fabsf(u) <= 0.8f && fabsf(v) <= 0.8f;
    case 2: { /* equilateral, vertices on the unit circle */
      const float s = 0.8660254f;
      return v >= -0.5f && s * u - 0.5f * v >= -0.5f && -s * u - 0.5f * v >= -0.5f;
    }
    case 3: return (fabsf(u) <= 1 && fabsf(v) <= 0.3f) || (fabsf(v) <= 1 && fabsf(u) <= 0.3f);
    case 4: { float r = u * u + v * v; return r <= 1.0f && r >= 0.36f; }
    default: { /* five-pointed star */
      float a = atan2f(v, u), r = sqrtf(u * u + v * v);
      float k = fmodf(a + 10.0f * 3.14159265f, 2.0f * 3.14159265f / 5) / (2.0f * 3.14159265f / 5);
      float edge = 0.45f + 0.55f * fabsf(1.0f - 2.0f * k);
      return r <= edge;
    }
  }
}

static void random_color(uint64_t *rng, float c[3]) {
  for (int i = 0; i < 3; i++) c[i] = 255.0f * dd_rng_uniform(rng);
}

static float color_dist(const float a[3], const float b[3]) {
  float d = 0;
  for (int i = 0; i < 3; i++) d += (a[i] - b[i]) * (a[i] - b[i]);
  return sqrtf(d);
}

/* One image of class `cls`. */
static void draw_shape(dd_image *im, int cls, int slot, int n_slots, int by_class, int shift,
                       float noise, uint64_t *rng) {
  int s = im->w;
  float fg[3], bg[3];
  if (by_class) {
    int k = ((slot + shift) % n_slots + n_slots) % n_slots;
    for (int i = 0; i < 3; i++) {
      fg[i] = class_colors[k % 6][i] + 20.0f * (dd_rng_uniform(rng) - 0.5f);
      bg[i] = 0;
    }
    float g = 90 + 80 * dd_rng_uniform(rng);
    bg[0] = bg[1] = bg[2] = g;
  } else {
    random_color(rng, bg);
    do random_color(rng, fg);
    while (color_dist(fg, bg) < 120);
  }
  float r = s * (0.18f + 0.17f * dd_rng_uniform(rng));
  float cx = r + (s - 2 * r) * dd_rng_uniform(rng), cy = r + (s - 2 * r) * dd_rng_uniform(rng);
  float th = 2 * 3.14159265f * dd_rng_uniform(rng), ct = cosf(th), st = sinf(th);
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      int hits = 0;
      for (int sy = 0; sy < 4; sy++)
        for (int sx = 0; sx < 4; sx++) {
          float px = x + (sx + 0.5f) / 4 - cx, py = y + (sy + 0.5f) / 4 - cy;
          float u = (ct * px + st * py) / r, v = (-st * px + ct * py) / r;
          hits += inside(cls, u, v);
        }
      float a = hits / 16.0f;
      for (int c = 0; c < 3; c++) {
        float p = a * fg[c] + (1 - a) * bg[c] + noise * dd_rng_normal(rng);
        im->rgb[((size_t)y * s + x) * 3 + c] = p < 0 ? 0 : p > 255 ? 255 : p;
      }
    }
}

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
  int cls[N_ALL], n_cls = 4;
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
          for (int i = 0; i < N_ALL; i++)
            if (strlen(all_classes[i]) == len && !strncmp(p, all_classes[i], len)) found = i;
          if (found < 0)
            return cli_usage_error("shapes", "--classes: unknown class '%.*s' (circle, square, "
                                   "triangle, cross, ring, star)", (int)len, p);
          for (int i = 0; i < n_cls; i++)
            if (cls[i] == found)
              return cli_usage_error("shapes", "--classes: '%s' twice", all_classes[found]);
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
      if (!strcmp(all_classes[cls[i]], ovr)) ovr_cls = i;
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
  int n_folders = ovr ? 2 : n_cls;
  for (int k = 0; k < n_folders && !status; k++) {
    const char *folder = ovr ? (k ? "other" : ovr) : all_classes[cls[k]];
    snprintf(path, sizeof path, "%s/%s", out, folder);
    if (mkdir(path, 0777) && errno != EEXIST) {
      status = cli_errorf("%s: %s", path, strerror(errno));
      break;
    }
    for (int i = 0; i < count; i++) {
      /* one stream per image: any one file can be made again alone */
      uint64_t rng = co.seed.value * 0x9E3779B97F4A7C15ull +
                     (uint64_t)(ovr ? 17 + k : cls[k]) * 1000003u + (uint64_t)i;
      for (int w = 0; w < 4; w++) dd_rng_next(&rng);
      int draw = ovr ? ovr_cls : k;
      if (ovr && k) { /* a random one of the others */
        draw = (int)(dd_rng_next(&rng) % (uint64_t)(n_cls - 1));
        if (draw >= ovr_cls) draw++;
      }
      draw_shape(im, cls[draw], draw, n_cls, by_class, shift, noise, &rng);
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
  return status;
}
