/* Moving pictures along a flow field or a zoom, and the carry of `dream video`
 * (dream/video.h): bilinear, borders replicated. */
#include <math.h>
#include <stddef.h>

#include "dream/video.h"
#include "util.h"

/* src sampled at (x, y) into out[3], borders replicated. */
static void sample(const dd_image *src, float x, float y, float *out) {
  int w = src->w, h = src->h;
  if (x < 0) x = 0;
  if (y < 0) y = 0;
  if (x > w - 1) x = (float)(w - 1);
  if (y > h - 1) y = (float)(h - 1);
  int x0 = (int)x, y0 = (int)y;
  int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
  float fx = x - x0, fy = y - y0;
  const float *p00 = src->rgb + ((size_t)y0 * w + x0) * 3, *p01 = src->rgb + ((size_t)y0 * w + x1) * 3;
  const float *p10 = src->rgb + ((size_t)y1 * w + x0) * 3, *p11 = src->rgb + ((size_t)y1 * w + x1) * 3;
  for (int c = 0; c < 3; c++) {
    float top = p00[c] + fx * (p01[c] - p00[c]);
    float bot = p10[c] + fx * (p11[c] - p10[c]);
    out[c] = top + fy * (bot - top);
  }
}

void dd_flow_warp(const dd_image *src, const float *flow, dd_image *dst) {
  int w = src->w, h = src->h;
#pragma omp parallel for schedule(static) if (parallel : (size_t)w * h > DD_PAR_MIN)
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      sample(src, x + flow[2 * i], y + flow[2 * i + 1], dst->rgb + 3 * i);
    }
}

void dd_zoom_rotate(const dd_image *src, double zoom, double degrees, dd_image *dst) {
  int w = src->w, h = src->h;
  double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0;
  double a = degrees * 3.14159265358979323846 / 180.0;
  /* dst(p) = src(c + R(a) (p - c) / zoom): what was at q shows at c + zoom R(-a) (q - c),
   * and with y growing downwards R(-a) turns counter-clockwise on the screen */
  double ca = cos(a) / zoom, sa = sin(a) / zoom;
#pragma omp parallel for schedule(static) if (parallel : (size_t)w * h > DD_PAR_MIN)
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double dx = x - cx, dy = y - cy;
      double sx = cx + ca * dx - sa * dy, sy = cy + sa * dx + ca * dy;
      sample(src, (float)sx, (float)sy, dst->rgb + 3 * ((size_t)y * w + x));
    }
}

void dd_video_carry(const dd_image *raw, const dd_image *raw_prev, const dd_image *back,
                    const float *flow, float blend, float blend_static, float flow_threshold,
                    dd_image *scratch, dd_image *out) {
  size_t n = (size_t)raw->w * raw->h;
  float bs = blend_static >= 0 ? blend_static : blend;
  float t2 = flow_threshold * flow_threshold;
  if (!flow) {
    for (size_t i = 0; i < 3 * n; i++) {
      float v = raw->rgb[i] + blend * (back->rgb[i] - raw_prev->rgb[i]);
      out->rgb[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return;
  }
  for (size_t i = 0; i < 3 * n; i++) scratch->rgb[i] = back->rgb[i] - raw_prev->rgb[i];
  dd_flow_warp(scratch, flow, out);
  for (size_t i = 0; i < n; i++) {
    float b = blend;
    if (flow_threshold > 0 && flow[2 * i] * flow[2 * i] + flow[2 * i + 1] * flow[2 * i + 1] < t2)
      b = bs;
    for (int c = 0; c < 3; c++) {
      float v = raw->rgb[3 * i + c] + b * out->rgb[3 * i + c];
      out->rgb[3 * i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
}
