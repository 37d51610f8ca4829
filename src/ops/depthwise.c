/* Depthwise convolution planes, vectorized (see depthwise.h). */
#include "ops/depthwise.h"

#include <string.h>

#include "ops/cpu.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

/* Floats of the staged input and of the band's outputs (on the stack, 64 KiB together), and
 * the vector over-read past the last one. */
#define IN_MAX 12288
#define OUT_MAX 4096
#define SLACK 64

typedef float v16 __attribute__((vector_size(64)));

static inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* The stencils and the weight gradient's dot products, once per path (ops/cpu.h): the
 * generic one in the build's vectors with a * b + c (ISO C does not contract it), the AVX-512
 * one in zmm registers with fused multiply-adds. */
#define DW_NAME(f) f##_generic
#define DW_TARGET
#define DW_FMA(a, b, c) ((a) * (b) + (c))
#include "ops/depthwise_kernels.h"
#ifdef DD_AVX512_KERNELS
#define DW_NAME(f) f##_avx512
#define DW_TARGET DD_TARGET_AVX512
#define DW_FMA(a, b, c) ((v16)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#include "ops/depthwise_kernels.h"
#endif

/* The stencil of the path that runs. */
static void stencil(int64_t n, int ntaps, const float *wt, const int64_t *off, const float *src,
                    float *out, float init) {
#ifdef DD_AVX512_KERNELS
  if (dd_kernels_avx512()) {
    stencil_avx512(n, ntaps, wt, off, src, out, init);
    return;
  }
#endif
  stencil_generic(n, ntaps, wt, off, src, out, init);
}

/* n / s rounded up, n >= 0, s >= 1: without a division for the strides that occur (a 64-bit
 * division was the largest cost of staging a small plane). */
static inline int64_t ceil_div(int64_t n, int64_t s) {
  return s == 1 ? n : s == 2 ? (n + 1) >> 1 : (n + s - 1) / s;
}

/* d[t] = row[p + t*s] where 0 <= p + t*s < w, else 0, for t < len (row NULL: all 0). */
static void gather(const float *row, int64_t p, int64_t s, int64_t w, int64_t len, float *d) {
  if (!row) {
    memset(d, 0, (size_t)len * sizeof *d);
    return;
  }
  int64_t a = p >= 0 ? 0 : ceil_div(-p, s);
  int64_t b = p >= w ? 0 : ceil_div(w - p, s);
  if (a > len) a = len;
  if (b > len) b = len;
  if (b < a) b = a;
  for (int64_t t = 0; t < a; t++) d[t] = 0.f;
  if (s == 1) {
    memcpy(d + a, row + p + a, (size_t)(b - a) * sizeof *d);
  } else if (s == 2) { /* a constant stride, which vectorizes */
    const float *r = row + p;
#pragma omp simd
    for (int64_t t = a; t < b; t++) d[t] = r[2 * t];
  } else {
    for (int64_t t = a; t < b; t++) d[t] = row[p + t * s];
  }
  for (int64_t t = b; t < len; t++) d[t] = 0.f;
}

/* ---- forward and weight gradient: the input in sh x sw stride phases ---- */

/* The forward's band layout (dd_dw_plan): staged rows of wq floats (wo outputs and the
 * kernel's reach), eh extra staged rows per phase below the band, up to rows output rows per
 * band, hq = rows + eh staged rows per phase.  Tap (ki, kj) reads phase ((ki dh) % sh,
 * (kj dw) % sw) at row (ki dh) / sh and column (kj dw) / sw of the band. */
static int fw_plan(const dd_dw_geom *g, dd_dw_plan *p) {
  p->wq = g->wo + (g->kw - 1) * g->dw / g->sw;
  p->eh = (g->kh - 1) * g->dh / g->sh;
  int64_t a = OUT_MAX / p->wq, b = IN_MAX / (g->sh * g->sw * p->wq) - p->eh;
  p->rows = a < b ? a : b;
  if (p->rows > g->ho) p->rows = g->ho;
  p->hq = p->rows + p->eh;
  if (p->rows < 1) return 0;
  int n = 0;
  for (int64_t ki = 0; ki < g->kh; ki++)
    for (int64_t kj = 0; kj < g->kw; kj++, n++) {
      int64_t ra = ki * g->dh % g->sh, ca = kj * g->dw % g->sw;
      p->off[n] = ((ra * g->sw + ca) * p->hq + ki * g->dh / g->sh) * p->wq + kj * g->dw / g->sw;
    }
  return 1;
}

/* Stage the input of output rows [oh0, oh0 + rows): phase (ra, ca), row q, column c holds
 * x[(oh0 + q) sh + ra - ph][c sw + ca - pw] (0 outside x), and zeros in the SLACK floats
 * after the last phase, where the last vector's over-read lands. */
static void fw_stage(const dd_dw_plan *p, const float *x, int64_t oh0, int64_t rows, float *in) {
  const dd_dw_geom *g = &p->g;
  for (int64_t ra = 0; ra < g->sh; ra++)
    for (int64_t ca = 0; ca < g->sw; ca++) {
      float *plane = in + (ra * g->sw + ca) * p->hq * p->wq;
      for (int64_t q = 0; q < rows + p->eh; q++) {
        int64_t ih = (oh0 + q) * g->sh + ra - g->ph;
        const float *row = ih >= 0 && ih < g->h ? x + ih * g->w : NULL;
        gather(row, ca - g->pw, g->sw, g->w, p->wq, plane + q * p->wq);
      }
    }
  memset(in + g->sh * g->sw * p->hq * p->wq, 0, SLACK * sizeof *in);
}

void dd_dw_forward(const dd_dw_plan *p, const float *x, const float *k, float bias, float *y,
                   int relu) {
  const dd_dw_geom *g = &p->g;
  float in[IN_MAX + SLACK] __attribute__((aligned(64)));
  float out[OUT_MAX + SLACK] __attribute__((aligned(64)));
  for (int64_t oh0 = 0; oh0 < g->ho; oh0 += p->rows) {
    int64_t rows = g->ho - oh0 < p->rows ? g->ho - oh0 : p->rows;
    fw_stage(p, x, oh0, rows, in);
    /* the taps in k's own order */
    stencil((rows - 1) * p->wq + g->wo, (int)(g->kh * g->kw), k, p->off, in, out, bias);
    for (int64_t i = 0; i < rows; i++) {
      float *yr = y + (oh0 + i) * g->wo;
      const float *o = out + i * p->wq;
      if (relu)
        for (int64_t ow = 0; ow < g->wo; ow++) yr[ow] = o[ow] > 0.f ? o[ow] : 0.f;
      else
        memcpy(yr, o, (size_t)g->wo * sizeof *yr);
    }
  }
}

void dd_dw_backward_weights(const dd_dw_plan *p, const float *x, const float *dy, double *dk) {
  const dd_dw_geom *g = &p->g;
  float in[IN_MAX + SLACK] __attribute__((aligned(64)));
  float d[OUT_MAX + SLACK] __attribute__((aligned(64)));
  int ntaps = (int)(g->kh * g->kw);
  /* Products with the staged rows' stale or unused parts meet zeros of d; the first band is
   * the longest, so every float read has been written (or zeroed) before. */
  memset(in, 0, (size_t)(g->sh * g->sw * p->hq * p->wq) * sizeof *in);
  for (int64_t oh0 = 0; oh0 < g->ho; oh0 += p->rows) {
    int64_t rows = g->ho - oh0 < p->rows ? g->ho - oh0 : p->rows;
    fw_stage(p, x, oh0, rows, in);
    /* dy at the outputs' places in the band, 0 in the dropped columns and past the end */
    for (int64_t i = 0; i < rows; i++) {
      memcpy(d + i * p->wq, dy + (oh0 + i) * g->wo, (size_t)g->wo * sizeof *d);
      memset(d + i * p->wq + g->wo, 0, (size_t)(p->wq - g->wo) * sizeof *d);
    }
    int64_t n = (rows - 1) * p->wq + g->wo, nr = round16(n);
    memset(d + n, 0, (size_t)(nr - n) * sizeof *d);
#ifdef DD_AVX512_KERNELS
    if (dd_kernels_avx512())
      tap_dots_avx512(nr, ntaps, p->off, in, d, dk);
    else
#endif
      tap_dots_generic(nr, ntaps, p->off, in, d, dk);
  }
}

/* ---- data gradient: one stride phase of dx at a time ---- */

/* Floor division by a positive d. */
static int64_t fdiv(int64_t n, int64_t d) { return n >= 0 ? n / d : -((-n + d - 1) / d); }

/* Phase (a, b) of dx, rows a + sh i and columns b + sw jx: dx[i][jx] = sum over the taps
 * that reach it of k[ki][kj] dy[i + dro][jx + dco], where dro = (a + ph - ki dh) / sh when
 * sh divides it (dco alike).  The staged dy rows are wq = wi + the spread of dco wide.  0:
 * no tap reaches the phase (or dx has none of it), -1: a band row does not fit. */
static int bw_plan(const dd_dw_geom *g, int64_t a, int64_t b, dd_dw_phase *p) {
  p->ntaps = 0;
  p->hi = (g->h - a + g->sh - 1) / g->sh;
  p->wi = (g->w - b + g->sw - 1) / g->sw;
  if (p->hi <= 0 || p->wi <= 0) return 0;
  int64_t dro[DD_DW_TAPS], dco[DD_DW_TAPS], kis[DD_DW_TAPS], kjs[DD_DW_TAPS];
  int nr = 0, nc = 0;
  for (int64_t ki = 0; ki < g->kh; ki++) {
    int64_t num = a + g->ph - ki * g->dh;
    if (num - fdiv(num, g->sh) * g->sh) continue;
    kis[nr] = ki;
    dro[nr++] = fdiv(num, g->sh);
  }
  for (int64_t kj = 0; kj < g->kw; kj++) {
    int64_t num = b + g->pw - kj * g->dw;
    if (num - fdiv(num, g->sw) * g->sw) continue;
    kjs[nc] = kj;
    dco[nc++] = fdiv(num, g->sw);
  }
  if (!nr || !nc) return 0;
  int64_t rmax = dro[0], cmax = dco[0];
  p->rmin = dro[0], p->cmin = dco[0];
  for (int i = 0; i < nr; i++) {
    if (dro[i] < p->rmin) p->rmin = dro[i];
    if (dro[i] > rmax) rmax = dro[i];
  }
  for (int i = 0; i < nc; i++) {
    if (dco[i] < p->cmin) p->cmin = dco[i];
    if (dco[i] > cmax) cmax = dco[i];
  }
  p->wq = p->wi + cmax - p->cmin;
  p->eh = rmax - p->rmin;
  int64_t ra = OUT_MAX / p->wq, rb = IN_MAX / p->wq - p->eh;
  p->rows = ra < rb ? ra : rb;
  if (p->rows > p->hi) p->rows = p->hi;
  if (p->rows < 1) return -1;
  for (int i = 0; i < nr; i++)
    for (int j = 0; j < nc; j++, p->ntaps++) {
      p->tap[p->ntaps] = (int)(kis[i] * g->kw + kjs[j]);
      p->off[p->ntaps] = (dro[i] - p->rmin) * p->wq + dco[j] - p->cmin;
    }
  return 1;
}

void dd_dw_backward_data(const dd_dw_plan *pl, const float *k, const float *dy, float *dx) {
  const dd_dw_geom *g = &pl->g;
  float in[IN_MAX + SLACK] __attribute__((aligned(64)));
  float out[OUT_MAX + SLACK] __attribute__((aligned(64)));
  float wt[DD_DW_TAPS];
  for (int64_t a = 0; a < g->sh; a++)
    for (int64_t b = 0; b < g->sw; b++) {
      const dd_dw_phase *p = &pl->phase[a * g->sw + b];
      if (!p->ntaps) continue;
      for (int t = 0; t < p->ntaps; t++) wt[t] = k[p->tap[t]];
      for (int64_t i0 = 0; i0 < p->hi; i0 += p->rows) {
        int64_t rows = p->hi - i0 < p->rows ? p->hi - i0 : p->rows;
        for (int64_t q = 0; q < rows + p->eh; q++) {
          int64_t oh = i0 + p->rmin + q;
          const float *row = oh >= 0 && oh < g->ho ? dy + oh * g->wo : NULL;
          gather(row, p->cmin, 1, g->wo, p->wq, in + q * p->wq);
        }
        /* the last vector reads up to 15 floats past the staged rows: zeros, not garbage */
        memset(in + (rows + p->eh) * p->wq, 0, SLACK * sizeof *in);
        stencil((rows - 1) * p->wq + p->wi, p->ntaps, wt, p->off, in, out, 0.f);
        for (int64_t i = 0; i < rows; i++) {
          float *dr = dx + (a + g->sh * (i0 + i)) * g->w + b;
          const float *o = out + i * p->wq;
          if (g->sw == 1) {
#pragma omp simd
            for (int64_t jx = 0; jx < p->wi; jx++) dr[jx] += o[jx];
          } else if (g->sw == 2) {
#pragma omp simd
            for (int64_t jx = 0; jx < p->wi; jx++) dr[2 * jx] += o[jx];
          } else {
            for (int64_t jx = 0; jx < p->wi; jx++) dr[jx * g->sw] += o[jx];
          }
        }
      }
    }
}

int dd_dw_prepare(const dd_dw_geom *g, dd_dw_plan *p) {
  if (g->kh < 1 || g->kw < 1 || g->kh * g->kw > DD_DW_TAPS || g->sh < 1 || g->sw < 1 ||
      g->sh * g->sw > DD_DW_PHASES || g->dh < 1 || g->dw < 1 || g->ho < 1 || g->wo < 1 ||
      g->h < 1 || g->w < 1)
    return 0;
  p->g = *g;
  if (!fw_plan(g, p)) return 0;
  for (int64_t a = 0; a < g->sh; a++)
    for (int64_t b = 0; b < g->sw; b++)
      if (bw_plan(g, a, b, &p->phase[a * g->sw + b]) < 0) return 0;
  return 1;
}
