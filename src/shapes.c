/* Synthetic shapes (dream/train.h): the dataset of `dream shapes`, drawn with 4x4
 * supersampling. */
#include <math.h>
#include <stdint.h>

#include "dream/train.h"
#include "util.h"

const char *const dd_shape_names[DD_SHAPE_CLASSES] = {"circle", "square", "triangle", "cross",
                                                      "ring", "star"};
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

void dd_shape_draw(dd_image *im, int cls, int slot, int n_slots, int by_class, int shift,
                   float noise, uint64_t seed) {
  uint64_t state = seed, *rng = &state;
  if (cls < 0 || cls >= DD_SHAPE_CLASSES || n_slots < 1) return;
  int s = im->w < im->h ? im->w : im->h;
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
        im->rgb[((size_t)y * im->w + x) * 3 + c] = p < 0 ? 0 : p > 255 ? 255 : p;
      }
    }
}


int dd_shapes_folders(const dd_shapes_opts *o) { return o->one_vs_rest >= 0 ? 2 : o->n_classes; }

const char *dd_shapes_folder_name(const dd_shapes_opts *o, int folder) {
  if (o->one_vs_rest >= 0) return folder ? "other" : dd_shape_names[o->classes[o->one_vs_rest]];
  return dd_shape_names[o->classes[folder]];
}

void dd_shapes_image(dd_image *im, const dd_shapes_opts *o, int folder, int index) {
  int ovr = o->one_vs_rest, n = o->n_classes;
  /* one stream per image: any one file can be made again alone */
  uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull +
                 (uint64_t)(ovr >= 0 ? 17 + folder : o->classes[folder]) * 1000003u +
                 (uint64_t)index;
  for (int w = 0; w < 4; w++) dd_rng_next(&rng);
  int draw = ovr >= 0 ? ovr : folder;
  if (ovr >= 0 && folder) { /* a random one of the others */
    draw = (int)(dd_rng_next(&rng) % (uint64_t)(n - 1));
    if (draw >= ovr) draw++;
  }
  dd_shape_draw(im, o->classes[draw], draw, n, o->by_class, o->shift, o->noise, rng);
}
