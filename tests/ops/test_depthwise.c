/* ops/depthwise.c, the vectorized depthwise planes, on their own: forward, data gradient and
 * weight gradient against a direct convolution in double written from the definition, over
 * geometries that reach every part of the kernels (vector tails, stride phases, bands,
 * padding wider than the kernel, dilation); the geometries dd_dw_prepare must refuse; and
 * the DD_PLAN_EXACT promise that an output does not depend on where it lies.
 *
 * The vectors are the build's (AVX-512 with -march=native on an AVX-512 machine, AVX2 or SSE
 * halves of them otherwise): there is one vectorized variant, no run-time choice to cover.
 * The direct loops Conv keeps for refused geometries are tested through Conv (test_conv.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "ops/depthwise.h"

/* h, w, kh, kw, sh, sw, dh, dw, ph, pw, and the trailing pads pb, pr */
typedef struct dw_case {
  int64_t h, w, kh, kw, sh, sw, dh, dw, ph, pw, pb, pr;
} dw_case;

static const dw_case dcases[] = {
    {7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},         /* EfficientNet's last stage */
    {56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},       /* a full band of 56 rows */
    {112, 112, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1},     /* TF-style asymmetric stride 2 */
    {14, 14, 7, 7, 1, 1, 1, 1, 3, 3, 3, 3},       /* ConvNeXt */
    {9, 9, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2},         /* MobileNet v3 5x5 stride 2 */
    {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},         /* one pixel, every tap but the centre in padding */
    {1, 17, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1},        /* 1-D */
    {5, 33, 3, 3, 1, 2, 2, 1, 2, 1, 2, 1},        /* stride 1 down, 2 across, dilation 2 down */
    {13, 11, 3, 5, 2, 1, 1, 3, 4, 0, 0, 5},       /* pads wider than the kernel's reach */
    {300, 45, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},      /* several bands of rows */
    {20, 600, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2},      /* wide rows: bands of a few rows */
    {12, 10, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0},       /* even kernel, phases without taps in dx */
    {10, 10, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0},       /* 1x1 stride 2: 3 of 4 dx phases unreached */
};

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe) {
  return (in + pb + pe - ((k - 1) * d + 1)) / s + 1;
}

static dd_dw_geom geom_of(const dw_case *c) {
  return (dd_dw_geom){c->h,
                      c->w,
                      out_size(c->h, c->kh, c->sh, c->dh, c->ph, c->pb),
                      out_size(c->w, c->kw, c->sw, c->dw, c->pw, c->pr),
                      c->kh,
                      c->kw,
                      c->sh,
                      c->sw,
                      c->dh,
                      c->dw,
                      c->ph,
                      c->pw};
}

static uint64_t rng = 88172645463325252ull;
static float uniform(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((rng >> 40) * (1.0 / (1 << 24))) * 2.f - 1.f;
}

static float *randoms(int64_t n) {
  float *v = malloc((size_t)n * sizeof *v);
  for (int64_t i = 0; i < n; i++) v[i] = uniform();
  return v;
}

/* The input pixel under tap (ki, kj) of output (oh, ow), or -1 in the padding. */
static int64_t under(const dd_dw_geom *g, int64_t oh, int64_t ow, int64_t ki, int64_t kj) {
  int64_t ih = oh * g->sh - g->ph + ki * g->dh, iw = ow * g->sw - g->pw + kj * g->dw;
  return ih < 0 || ih >= g->h || iw < 0 || iw >= g->w ? -1 : ih * g->w + iw;
}

static double tol(double scale) { return 1e-5 * (scale > 1 ? scale : 1); }

static void check_case(const dw_case *c, size_t ci) {
  dd_dw_geom g = geom_of(c);
  dd_dw_plan *p = malloc(sizeof *p);
  cr_assert(dd_dw_prepare(&g, p), "case %zu: refused", ci);
  int64_t nx = g.h * g.w, ny = g.ho * g.wo, nk = g.kh * g.kw;
  float *x = randoms(nx), *k = randoms(nk), *dy = randoms(ny);
  float *y = malloc((size_t)ny * sizeof *y), *dx = malloc((size_t)nx * sizeof *dx);
  double *ry = calloc((size_t)ny, sizeof *ry), *rdx = calloc((size_t)nx, sizeof *rdx);
  double *rdk = calloc((size_t)nk, sizeof *rdk), *dk = calloc((size_t)nk, sizeof *dk);
  for (int64_t o = 0; o < ny; o++) {
    ry[o] = 0.25;
    for (int64_t t = 0; t < nk; t++) {
      int64_t i = under(&g, o / g.wo, o % g.wo, t / g.kw, t % g.kw);
      if (i < 0) continue;
      ry[o] += (double)k[t] * x[i];
      rdx[i] += (double)k[t] * dy[o];
      rdk[t] += (double)x[i] * dy[o];
    }
  }
  for (int relu = 0; relu < 2; relu++) {
    for (int64_t o = 0; o < ny; o++) y[o] = NAN;
    dd_dw_forward(p, x, k, 0.25f, y, relu);
    for (int64_t o = 0; o < ny; o++) {
      double want = relu && ry[o] < 0 ? 0 : ry[o];
      cr_assert(fabs(y[o] - want) <= tol(fabs(want)), "case %zu relu %d: y[%lld] = %g, want %g",
                ci, relu, (long long)o, y[o], want);
    }
  }
  /* accumulates: dx starts at 0.5, dk at 2 */
  for (int64_t i = 0; i < nx; i++) dx[i] = 0.5f;
  for (int64_t t = 0; t < nk; t++) dk[t] = 2;
  dd_dw_backward_data(p, k, dy, dx);
  dd_dw_backward_weights(p, x, dy, dk);
  for (int64_t i = 0; i < nx; i++)
    cr_assert(fabs(dx[i] - 0.5 - rdx[i]) <= tol(fabs(rdx[i])), "case %zu: dx[%lld] = %g, want %g",
              ci, (long long)i, dx[i] - 0.5, rdx[i]);
  for (int64_t t = 0; t < nk; t++)
    cr_assert(fabs(dk[t] - 2 - rdk[t]) <= tol(fabs(rdk[t])), "case %zu: dk[%lld] = %g, want %g",
              ci, (long long)t, dk[t] - 2, rdk[t]);
  free(p), free(x), free(k), free(dy), free(y), free(dx), free(ry), free(rdx), free(rdk), free(dk);
}

static void depthwise_planes_match_direct_convolution_on(void);
Test(depthwise, planes_match_direct_convolution) {
  th_each_kernels(depthwise_planes_match_direct_convolution_on);
}
static void depthwise_planes_match_direct_convolution_on(void) {
  for (size_t ci = 0; ci < sizeof dcases / sizeof dcases[0]; ci++) check_case(&dcases[ci], ci);
}

/* Every geometry whose output rows are 1 to 40 wide, 3x3 and 5x5, strides 1 and 2: the
 * vector tails (n mod 16) and the staged rows' dropped columns at each width. */
static void depthwise_every_width_to_40_on(void);
Test(depthwise, every_width_to_40) { th_each_kernels(depthwise_every_width_to_40_on); }
static void depthwise_every_width_to_40_on(void) {
  for (int64_t w = 1; w <= 40; w++)
    for (int64_t s = 1; s <= 2; s++)
      for (int64_t kk = 3; kk <= 5; kk += 2) {
        dw_case c = {6, w, kk, kk, s, s, 1, 1, kk / 2, kk / 2, kk / 2, kk / 2};
        check_case(&c, (size_t)(w * 10 + s * 3 + kk));
      }
}

Test(depthwise, prepare_refuses_what_it_cannot_stage) {
  dd_dw_plan *p = malloc(sizeof *p);
  dw_case too_many_taps = {20, 20, 17, 17, 1, 1, 1, 1, 8, 8, 8, 8};
  dw_case six_phases = {20, 20, 3, 3, 3, 2, 1, 1, 1, 1, 1, 1};
  dw_case too_wide = {10, 20000, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}; /* one band row > 4096 floats */
  dw_case fine = {10, 4000, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
  dd_dw_geom g = geom_of(&too_many_taps);
  cr_assert_not(dd_dw_prepare(&g, p));
  g = geom_of(&six_phases);
  cr_assert_not(dd_dw_prepare(&g, p));
  g = geom_of(&too_wide);
  cr_assert_not(dd_dw_prepare(&g, p));
  g = geom_of(&fine);
  cr_assert(dd_dw_prepare(&g, p));
  free(p);
}

/* DD_PLAN_EXACT: every output by the same operations wherever it lies (vector lane, tail,
 * band, row).  A constant plane without padding must give one value, bit for bit, over a
 * plane of several bands; and the data gradient of a constant dy one value at every input
 * pixel that all taps reach. */
static void depthwise_outputs_do_not_depend_on_their_place_on(void);
Test(depthwise, outputs_do_not_depend_on_their_place) {
  th_each_kernels(depthwise_outputs_do_not_depend_on_their_place_on);
}
static void depthwise_outputs_do_not_depend_on_their_place_on(void) {
  dw_case c = {400, 37, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0};
  dd_dw_geom g = geom_of(&c);
  dd_dw_plan *p = malloc(sizeof *p);
  cr_assert(dd_dw_prepare(&g, p));
  cr_assert_lt(p->rows, g.ho, "one band: the test would not cross bands");
  int64_t nx = g.h * g.w, ny = g.ho * g.wo;
  float *x = malloc((size_t)nx * sizeof *x), *y = malloc((size_t)ny * sizeof *y);
  float *dx = calloc((size_t)nx, sizeof *dx), *dy = malloc((size_t)ny * sizeof *dy);
  float k[9];
  for (int t = 0; t < 9; t++) k[t] = uniform();
  for (int64_t i = 0; i < nx; i++) x[i] = 0.3183099f;
  for (int64_t o = 0; o < ny; o++) dy[o] = 0.7071068f;
  dd_dw_forward(p, x, k, 0.1f, y, 0);
  for (int64_t o = 1; o < ny; o++)
    cr_assert(!memcmp(&y[o], &y[0], sizeof y[0]), "y[%lld] = %.9g, y[0] = %.9g", (long long)o,
              y[o], y[0]);
  dd_dw_backward_data(p, k, dy, dx);
  float ref = dx[2 * g.w + 2];
  for (int64_t ih = 2; ih < g.h - 2; ih++)
    for (int64_t iw = 2; iw < g.w - 2; iw++)
      cr_assert(!memcmp(&dx[ih * g.w + iw], &ref, sizeof ref), "dx at (%lld, %lld): %.9g vs %.9g",
                (long long)ih, (long long)iw, dx[ih * g.w + iw], ref);
  free(p), free(x), free(y), free(dx), free(dy);
}

/* dd_dw_forward_lanes (16 channels in the vector lanes on AVX-512, 8 on the generic path)
 * against dd_dw_forward plane by plane, bit for bit: the same operations per output, so the
 * same floats, for every geometry above and channel counts around the 8- and 16-channel
 * blocks (1, 15, 17, 40: the partial last block), two images, with and without bias and
 * relu.  Where it declines (a band row too wide for its stage) it must leave y alone. */
static void depthwise_lanes_match_the_planes_bit_for_bit_on(void);
Test(depthwise, lanes_match_the_planes_bit_for_bit) {
  th_each_kernels(depthwise_lanes_match_the_planes_bit_for_bit_on);
}
static void depthwise_lanes_match_the_planes_bit_for_bit_on(void) {
  static const int64_t chans[] = {1, 15, 17, 40};
  dd_dw_plan *p = malloc(sizeof *p);
  int ran = 0;
  for (size_t ci = 0; ci < sizeof dcases / sizeof dcases[0]; ci++) {
    dd_dw_geom g = geom_of(&dcases[ci]);
    cr_assert(dd_dw_prepare(&g, p));
    int64_t nx = g.h * g.w, ny = g.ho * g.wo, nk = g.kh * g.kw, n = 2;
    for (size_t cc = 0; cc < sizeof chans / sizeof chans[0]; cc++) {
      int64_t c = chans[cc];
      float *x = randoms(n * c * nx), *k = randoms(c * nk), *b = randoms(c);
      float *want = malloc((size_t)(n * c * ny) * sizeof *want);
      float *y = malloc((size_t)(n * c * ny) * sizeof *y);
      for (int mode = 0; mode < 4; mode++) {
        int relu = mode & 1;
        const float *bias = mode & 2 ? b : NULL;
        for (int64_t i = 0; i < n * c; i++)
          dd_dw_forward(p, x + i * nx, k + i % c * nk, bias ? bias[i % c] : 0.f, want + i * ny,
                        relu);
        for (int64_t i = 0; i < n * c * ny; i++) y[i] = NAN;
        int done = dd_dw_forward_lanes(&g, n, c, x, k, bias, y, relu, 1);
        /* only the 600-wide case's band row is too wide for the AVX-512 stage (the generic
         * one, of 8-float pixels, holds twice as many) */
        if (g.w < 600 || th_kernels_now == DD_KERNELS_AVX512)
          cr_assert_eq(done, g.w < 600, "case %zu (%lld x %lld): lanes %s", ci, (long long)g.h,
                       (long long)g.w, done ? "ran" : "declined");
        if (!done) {
          for (int64_t i = 0; i < n * c * ny; i++) cr_assert(isnan(y[i]), "y written");
          continue;
        }
        ran++;
        for (int64_t i = 0; i < n * c * ny; i++)
          cr_assert(!memcmp(&y[i], &want[i], sizeof y[i]),
                    "case %zu, %lld channels, mode %d: y[%lld] = %.9g, planes %.9g", ci,
                    (long long)c, mode, (long long)i, y[i], want[i]);
      }
      free(x), free(k), free(b), free(want), free(y);
    }
  }
  cr_assert_gt(ran, 0);
  free(p);
}

/* dd_group_forward_lanes (grouped convolutions, cg input channels and as many outputs per
 * group, 16 output channels in the lanes on AVX-512, 8 on the generic path) against the same
 * arithmetic written out: each output is fmaf(w, x, acc) (w * x + acc on the generic kernels
 * of a build without FMA) from the bias over its group's channels, then the taps (x = 0 in
 * the padding), which must come out bit for bit; and against a double sum within 1e-5.
 * Groups of 2, 4, 8 and 16 channels (the generic path takes 8 alone), channel counts with a
 * short last block, strides, dilation, two images, relu. */
static void depthwise_group_lanes_match_their_arithmetic_on(void);
Test(depthwise, group_lanes_match_their_arithmetic) {
  th_each_kernels(depthwise_group_lanes_match_their_arithmetic_on);
}
static void depthwise_group_lanes_match_their_arithmetic_on(void) {
  static const struct {
    int cg;
    int64_t c;
    dw_case g;
  } cases[] = {
      {8, 40, {7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}},      /* RegNet's last stage, 5 groups */
      {8, 24, {28, 28, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}},    /* its stride-2 first block */
      {2, 18, {9, 13, 3, 5, 1, 2, 2, 1, 2, 2, 2, 2}},     /* dilation, stride across only */
      {4, 12, {20, 600, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2}},   /* too wide a band row: declined */
      {16, 32, {5, 5, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0}},     /* one group per block */
      {8, 8, {14, 14, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}},     /* 1x1, one short block */
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int cg = cases[ci].cg;
    int64_t c = cases[ci].c, n = 2;
    dd_dw_geom g = geom_of(&cases[ci].g);
    int64_t nx = g.h * g.w, ny = g.ho * g.wo, taps = g.kh * g.kw, nk = cg * taps;
    float *x = randoms(n * c * nx), *k = randoms(c * nk), *b = randoms(c);
    float *y = malloc((size_t)(n * c * ny) * sizeof *y);
    for (int relu = 0; relu < 2; relu++) {
      for (int64_t i = 0; i < n * c * ny; i++) y[i] = NAN;
      int done = dd_group_forward_lanes(&g, n, c, cg, x, k, b, y, relu, 1);
      /* the generic lanes take groups of 8 alone, and twice the AVX-512 stage's pixels (the
       * 600-wide band row fits) */
      int avx512 = th_kernels_now == DD_KERNELS_AVX512, fused = 1;
      if (avx512 || g.w < 600)
        cr_assert_eq(done, avx512 ? g.w < 600 : cg == 8, "case %zu: %s", ci,
                     done ? "ran" : "declined");
      if (!done) {
        for (int64_t i = 0; i < n * c * ny; i++) cr_assert(isnan(y[i]), "y written");
        continue;
      }
#ifndef __FMA__
      fused = avx512; /* the generic kernels of a build without FMA: a * b + c */
#endif
      for (int64_t i = 0; i < n; i++)
        for (int64_t m = 0; m < c; m++)
          for (int64_t o = 0; o < ny; o++) {
            float acc = b[m];
            double ref = b[m];
            for (int64_t j = 0; j < cg; j++)
              for (int64_t t = 0; t < taps; t++) {
                int64_t u = under(&g, o / g.wo, o % g.wo, t / g.kw, t % g.kw);
                float w = k[(m * cg + j) * taps + t];
                float xv = u < 0 ? 0.f : x[(i * c + m / cg * cg + j) * nx + u];
                acc = fused ? fmaf(w, xv, acc) : w * xv + acc;
                ref += (double)w * xv;
              }
            if (relu) acc = acc > 0.f ? acc : 0.f, ref = ref > 0 ? ref : 0;
            float got = y[(i * c + m) * ny + o];
            cr_assert(!memcmp(&got, &acc, sizeof got),
                      "case %zu image %lld channel %lld output %lld: %.9g, fmaf chain %.9g", ci,
                      (long long)i, (long long)m, (long long)o, got, acc);
            cr_assert(fabs(got - ref) <= tol(fabs(ref)), "case %zu: %g vs %g", ci, got, ref);
          }
    }
    free(x), free(k), free(b), free(y);
  }
}

/* dd_dw_forward_s2 (3x3 at stride 2, pad 1, rows at most 64 wide, 16 output columns of a
 * plane in the lanes) against dd_dw_forward_lanes: the same floats bit for bit, with every
 * activation, with and without a bias, two images, odd and even sizes, rows of 5 to 64 (one
 * column block to three, the last short) and a trailing pad of 0 or 1; its plane sums within
 * 1e-6 of the sum of the outputs' sizes from their double sum (each lane adds at most 16 rows
 * in float, 15 roundings of at most 2^-24 each, before double).  It declines 5x5, stride 1, rows of 65 and the
 * generic kernels (writing nothing). */
static void depthwise_s2_matches_the_lanes_on(void);
Test(depthwise, stride2_planes_match_the_lanes_bit_for_bit) {
  th_each_kernels(depthwise_s2_matches_the_lanes_on);
}
static void depthwise_s2_matches_the_lanes_on(void) {
  static const dw_case cases[] = {
      {56, 56, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}, {28, 28, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {9, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},   {17, 33, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {6, 64, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0},  {2, 34, 3, 3, 2, 2, 1, 1, 1, 1, 0, 1},
  };
  static const dw_case refused[] = {
      {9, 9, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2},   /* 5x5 */
      {9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* stride 1 */
      {9, 65, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},  /* rows of 65 */
      {112, 112, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1} /* padded after only */
  };
  const int avx = th_kernels_now == DD_KERNELS_AVX512;
  const int64_t n = 2, c = 17;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    dd_dw_geom g = geom_of(&cases[ci]);
    int64_t nx = g.h * g.w, ny = g.ho * g.wo;
    float *x = randoms(n * c * nx), *k = randoms(c * 9), *b = randoms(c);
    float *want = malloc((size_t)(n * c * ny) * sizeof *want);
    float *y = malloc((size_t)(n * c * ny) * sizeof *y);
    double sum[2 * 17];
    for (int mode = 0; mode < 8; mode++) {
      int act = mode & 3; /* DD_ACT_NONE, _RELU, _SILU, _HARDSWISH */
      const float *bias = mode & 4 ? b : NULL;
      for (int64_t i = 0; i < n * c * ny; i++) y[i] = NAN;
      int done = dd_dw_forward_s2(&g, n, c, x, k, bias, y, act, sum);
      cr_assert_eq(done, avx, "case %zu: s2 %s", ci, done ? "ran" : "declined");
      if (!done) {
        for (int64_t i = 0; i < n * c * ny; i++) cr_assert(isnan(y[i]), "y written");
        continue;
      }
      cr_assert(dd_dw_forward_lanes(&g, n, c, x, k, bias, want, act, 1));
      for (int64_t i = 0; i < n * c * ny; i++)
        cr_assert(!memcmp(&y[i], &want[i], sizeof y[i]),
                  "case %zu, mode %d: y[%lld] = %.9g, lanes %.9g", ci, mode, (long long)i, y[i],
                  want[i]);
      for (int64_t p = 0; p < n * c; p++) {
        double s = 0, a = 0;
        for (int64_t i = 0; i < ny; i++) s += y[p * ny + i], a += fabs(y[p * ny + i]);
        cr_assert(fabs(sum[p] - s) <= 1e-6 * a, "case %zu, plane %lld: %.17g vs %.17g",
                  ci, (long long)p, sum[p], s);
      }
    }
    free(x), free(k), free(b), free(want), free(y);
  }
  for (size_t ci = 0; ci < sizeof refused / sizeof refused[0]; ci++) {
    dd_dw_geom g = geom_of(&refused[ci]);
    float one = 1.f, out = NAN;
    /* declines before reading or writing anything */
    cr_assert_not(dd_dw_forward_s2(&g, 0, 0, &one, &one, NULL, &out, 0, NULL), "case %zu", ci);
  }
}
