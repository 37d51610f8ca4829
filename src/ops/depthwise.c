/* Depthwise convolution planes, vectorized (see depthwise.h). */
#include "ops/depthwise.h"

#include <string.h>

#include "ops/act.h"
#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/transpose16.h"

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
 * generic one in vectors of 8 floats (a ymm register on AVX2, two xmm on SSE; 16 on an AVX-512
 * build), with fused multiply-adds where the build's ISA has them (an AVX2 or AVX-512 build)
 * and a * b + c elsewhere (ISO C does not contract it); the AVX-512 one in zmm registers with
 * fused multiply-adds.  On a Zen 3 (AVX2, no AVX-512) the former 16-float vectors, pairs of
 * ymm that GCC spilled to the stack, held stencil_generic at 25% of EfficientNet-B0's forward
 * pass (perf samples, one thread); with these it takes 5%. */
#if defined(__AVX512F__)
typedef float vgen __attribute__((vector_size(64)));
#define DW_L 16
#else
typedef float vgen __attribute__((vector_size(32)));
#define DW_L 8
#endif
#ifdef __FMA__
/* a * b + c rounded once, lane by lane: GCC makes one vfmadd of each register of it. */
static inline __attribute__((always_inline)) vgen fma_gen(vgen a, vgen b, vgen c) {
  vgen r;
  for (int i = 0; i < DW_L; i++) r[i] = __builtin_fmaf(a[i], b[i], c[i]);
  return r;
}
#define DW_FMA(a, b, c) fma_gen((a), (b), (c))
#else
#define DW_FMA(a, b, c) ((a) * (b) + (c))
#endif
#define DW_NAME(f) f##_generic
#define DW_TARGET
#define DW_V vgen
#include "ops/depthwise_kernels.h"
#ifdef DD_AVX512_KERNELS
#define DW_NAME(f) f##_avx512
#define DW_TARGET DD_TARGET_AVX512
#define DW_V v16
#define DW_L 16
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

/* ---- forward, 16 channels in the vector lanes (AVX-512) ---- */

#ifdef DD_AVX512_KERNELS
/* Staged pixels of 16 floats each, on the stack: the input band (128 KiB) and its outputs
 * (64 KiB). */
#define LANES_IN 2048
#define LANES_OUT 1024
/* Output pixels per register tile. */
#define LANES_TILE 8

/* The staged layout of lanes_forward: rows of wst pixels (input column iw at pixel pw + iw),
 * hst rows for a band of `rows` output rows (input row ih at row ih - (oh0 sh - ph)). */
typedef struct lanes_plan {
  int64_t wst, rows;
} lanes_plan;

static int lanes_plan_of(const dd_dw_geom *g, lanes_plan *p) {
  int64_t reach = (g->wo - 1) * g->sw + (g->kw - 1) * g->dw + 1, own = g->pw + round16(g->w);
  p->wst = reach > own ? reach : own;
  int64_t eh = (g->kh - 1) * g->dh;
  int64_t a = LANES_OUT / g->wo, b = (LANES_IN / p->wst - eh - 1) / g->sh + 1;
  if (LANES_IN / p->wst < eh + 1) b = 0;
  p->rows = a < b ? a : b;
  if (p->rows > g->ho) p->rows = g->ho;
  return p->rows >= 1;
}

/* Input rows [ih0, ih0 + hst) of nc (<= 16) planes x (plane stride hw) into in, 16 channels
 * per pixel, zeros in the padding and the missing channels. */
DD_TARGET_AVX512 static void lanes_stage(const dd_dw_geom *g, int64_t wst, const float *x,
                                         int64_t nc, int64_t ih0, int64_t hst, float *in) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t hw = g->h * g->w, own = g->pw + round16(g->w);
  for (int64_t q = 0; q < hst; q++) {
    float *row = in + q * wst * 16;
    int64_t ih = ih0 + q;
    if (ih < 0 || ih >= g->h) {
      for (int64_t j = 0; j < wst; j++) _mm512_store_ps(row + j * 16, zero);
      continue;
    }
    for (int64_t j = 0; j < g->pw; j++) _mm512_store_ps(row + j * 16, zero);
    for (int64_t j = own; j < wst; j++) _mm512_store_ps(row + j * 16, zero);
    const float *src = x + ih * g->w;
    for (int64_t iw0 = 0; iw0 < g->w; iw0 += 16) {
      __mmask16 m = (__mmask16)(g->w - iw0 >= 16 ? 0xffff : (1u << (g->w - iw0)) - 1);
      __m512 r[16];
#pragma GCC unroll 16
      for (int c = 0; c < 16; c++)
        r[c] = c < nc ? _mm512_maskz_loadu_ps(m, src + c * hw + iw0) : zero;
      dd_transpose16(r);
      float *dst = row + (g->pw + iw0) * 16;
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++) _mm512_store_ps(dst + j * 16, r[j]);
    }
  }
}

/* LANES_TILE output pixels whose tap-origin pixels are src[o]: out[o] = bias + sum over the
 * taps, in k's order, of kt[t] * the staged pixel src[o] + toff[t]; then the activation
 * `act` (DD_ACT_*, ops/act.h). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void lanes_tile(
    int ntaps, const float *kt, const int64_t *toff, const float *const *src, __m512 bias,
    int act, float *out) {
  __m512 acc[LANES_TILE];
  const float *s[LANES_TILE];
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++) acc[o] = bias, s[o] = src[o];
  for (int t = 0; t < ntaps; t++) {
    __m512 kv = _mm512_load_ps(kt + t * 16);
    int64_t d = toff[t];
#pragma GCC unroll 8
    for (int o = 0; o < LANES_TILE; o++)
      acc[o] = _mm512_fmadd_ps(kv, _mm512_load_ps(s[o] + d), acc[o]);
  }
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++)
    _mm512_store_ps(out + o * 16, dd_act16(acc[o], act));
}

/* LANES_TILE output pixels of one row, stride sw (a constant: 1 or 2) apart, the first's tap
 * origin s0: as lanes_tile, with one pointer and constant offsets. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void lanes_row_tile(
    const int sw, int ntaps, const float *kt, const int64_t *toff, const float *s0,
    __m512 bias, int act, float *out) {
  __m512 acc[LANES_TILE];
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++) acc[o] = bias;
  for (int t = 0; t < ntaps; t++) {
    __m512 kv = _mm512_load_ps(kt + t * 16);
    const float *s = s0 + toff[t];
#pragma GCC unroll 8
    for (int o = 0; o < LANES_TILE; o++)
      acc[o] = _mm512_fmadd_ps(kv, _mm512_load_ps(s + o * sw * 16), acc[o]);
  }
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++)
    _mm512_store_ps(out + o * 16, dd_act16(acc[o], act));
}

/* lanes_row_tile at stride 1 without dilation, the kernel kw (3, 5 or 7) wide: each kernel
 * row's LANES_TILE + kw - 1 staged pixels are loaded once and serve all kw taps from the
 * registers, instead of one load per tap and output (a 7x7 kernel: 14 loads a row for 56
 * fused multiply-adds, not 56).  The same taps in the same order: the same floats. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void lanes_row_tile_s1(
    const int kw, int64_t kh, int64_t rowstep, const float *kt, const float *s0, __m512 bias,
    int act, float *out) {
  __m512 acc[LANES_TILE];
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++) acc[o] = bias;
  for (int64_t i = 0; i < kh; i++) {
    const float *row = s0 + i * rowstep;
    __m512 in[LANES_TILE + 6];
#pragma GCC unroll 14
    for (int q = 0; q < LANES_TILE + kw - 1; q++) in[q] = _mm512_load_ps(row + q * 16);
#pragma GCC unroll 7
    for (int j = 0; j < kw; j++) {
      __m512 kv = _mm512_load_ps(kt + (i * kw + j) * 16);
#pragma GCC unroll 8
      for (int o = 0; o < LANES_TILE; o++) acc[o] = _mm512_fmadd_ps(kv, in[o + j], acc[o]);
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++)
    _mm512_store_ps(out + o * 16, dd_act16(acc[o], act));
}

/* A grouped convolution's tile (cg > 1 input channels per group, as many outputs): lane l
 * of the 16 is output channel l, of group l / cg, whose input channel c (< cg) is lane
 * l / cg * cg + c of the staged pixel, brought to lane l by a permutation.  out[o] = bias +
 * the sum over c, then the taps (the order of the im2col product's k: channel, row, column),
 * of kt[c][t] * that lane of the staged pixel src[o] + toff[t]. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void lanes_group_tile(
    int cg, int ntaps, const float *kt, const int64_t *toff, const float *const *src,
    __m512 bias, int act, float *out) {
  __m512 acc[LANES_TILE];
  const float *s[LANES_TILE];
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++) acc[o] = bias, s[o] = src[o];
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i first = _mm512_and_si512(lane, _mm512_set1_epi32(~(cg - 1))); /* cg: 2^j */
  for (int c = 0; c < cg; c++) {
    __m512i idx = _mm512_add_epi32(first, _mm512_set1_epi32(c));
    for (int t = 0; t < ntaps; t++) {
      __m512 kv = _mm512_load_ps(kt + (c * ntaps + t) * 16);
      int64_t d = toff[t];
#pragma GCC unroll 8
      for (int o = 0; o < LANES_TILE; o++)
        acc[o] = _mm512_fmadd_ps(kv, _mm512_permutexvar_ps(idx, _mm512_load_ps(s[o] + d)), acc[o]);
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < LANES_TILE; o++)
    _mm512_store_ps(out + o * 16, dd_act16(acc[o], act));
}

/* lo += lanes 0-7 of f and hi += lanes 8-15, in double: the planes' sums of the pooling that
 * follows (dd_dw_forward_lanes_sums, dd_dw_forward_s2). */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void add_widened(__m512 f,
                                                                              __m512d *lo,
                                                                              __m512d *hi) {
  __m512d a, b;
  dd_widen16(f, &a, &b);
  *lo = _mm512_add_pd(*lo, a);
  *hi = _mm512_add_pd(*hi, b);
}

/* One band of one block of 16 channels: output rows [oh0, oh0 + rows) of the nc planes y
 * from the nc planes x, weights k (nc x cg x kh kw: cg input channels per group, whole groups
 * in the block), bias (nc or NULL); with bsum, bsum[l] = the sum of the band's outputs of
 * lane l: in groups of 16 pixels in float (the even ones, the odd ones, then the two), the
 * groups' sums in double. */
DD_TARGET_AVX512 static void lanes_band(const dd_dw_geom *g, const lanes_plan *lp, int cg,
                                        const float *x, const float *k, const float *bias,
                                        int64_t nc, int64_t oh0, int64_t rows, int act,
                                        float *y, double *bsum) {
  float in[LANES_IN * 16] __attribute__((aligned(64)));
  float out[(LANES_OUT + LANES_TILE) * 16] __attribute__((aligned(64)));
  float kt[DD_DW_TAPS * 16] __attribute__((aligned(64)));
  int64_t toff[DD_DW_TAPS];
  int ntaps = (int)(g->kh * g->kw), nk = cg * ntaps;
  __mmask16 cm = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
  /* kt[j][c] = k[c][j]: the nc x nk weights transposed, 16 of j at a time */
  for (int t0 = 0; t0 < nk; t0 += 16) {
    __mmask16 m = (__mmask16)(nk - t0 >= 16 ? 0xffff : (1u << (nk - t0)) - 1);
    __m512 r[16];
#pragma GCC unroll 16
    for (int c = 0; c < 16; c++)
      r[c] = c < nc ? _mm512_maskz_loadu_ps(m, k + c * nk + t0) : _mm512_setzero_ps();
    dd_transpose16(r);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
      if (t0 + j < nk) _mm512_store_ps(kt + (t0 + j) * 16, r[j]);
  }
  for (int t = 0; t < ntaps; t++)
    toff[t] = ((t / g->kw) * g->dh * lp->wst + (t % g->kw) * g->dw) * 16;
  __m512 bv = bias ? _mm512_maskz_loadu_ps(cm, bias) : _mm512_setzero_ps();
  int64_t hst = (rows - 1) * g->sh + (g->kh - 1) * g->dh + 1;
  lanes_stage(g, lp->wst, x, nc, oh0 * g->sh - g->ph, hst, in);
  /* the band's outputs in row-major order, LANES_TILE at a time across row ends; the last
   * tile repeats its last pixel (computed, not stored past the band) */
  int64_t np = rows * g->wo, r = 0, ow = 0, p0 = 0;
  while (p0 < np) {
    const float *s0 = in + (r * g->sh * lp->wst + ow * g->sw) * 16;
    if (cg == 1 && ow + LANES_TILE <= g->wo && g->sw <= 2) { /* within the row */
      int64_t rowstep = g->dh * lp->wst * 16;
      if (g->sw == 1 && g->dw == 1 && g->kw == 3)
        lanes_row_tile_s1(3, g->kh, rowstep, kt, s0, bv, act, out + p0 * 16);
      else if (g->sw == 1 && g->dw == 1 && g->kw == 5)
        lanes_row_tile_s1(5, g->kh, rowstep, kt, s0, bv, act, out + p0 * 16);
      else if (g->sw == 1 && g->dw == 1 && g->kw == 7)
        lanes_row_tile_s1(7, g->kh, rowstep, kt, s0, bv, act, out + p0 * 16);
      else if (g->sw == 1)
        lanes_row_tile(1, ntaps, kt, toff, s0, bv, act, out + p0 * 16);
      else
        lanes_row_tile(2, ntaps, kt, toff, s0, bv, act, out + p0 * 16);
      p0 += LANES_TILE, ow += LANES_TILE;
      if (ow == g->wo) ow = 0, r++;
      continue;
    }
    const float *src[LANES_TILE];
    for (int o = 0; o < LANES_TILE; o++) {
      src[o] = in + (r * g->sh * lp->wst + ow * g->sw) * 16;
      if (p0 + o + 1 < np && ++ow == g->wo) ow = 0, r++; /* (r, ow): pixel p0 + o + 1 */
    }
    if (cg == 1)
      lanes_tile(ntaps, kt, toff, src, bv, act, out + p0 * 16);
    else
      lanes_group_tile(cg, ntaps, kt, toff, src, bv, act, out + p0 * 16);
    p0 += LANES_TILE;
  }
  /* back to planes, 16 pixels at a time */
  int64_t plane = g->ho * g->wo;
  float *yb = y + oh0 * g->wo;
  if (bsum) { /* groups of 16 pixels summed in float (even and odd pixels, then the two), each
                 group's sum added in double: converting every pixel to double cost as much as
                 the GlobalAveragePool pass this replaces */
    __m512d slo = _mm512_setzero_pd(), shi = _mm512_setzero_pd();
    for (int64_t q0 = 0; q0 < np; q0 += 16) {
      int64_t q1 = np - q0 < 16 ? np : q0 + 16, q = q0;
      __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
      for (; q + 2 <= q1; q += 2) {
        f0 = _mm512_add_ps(f0, _mm512_load_ps(out + q * 16));
        f1 = _mm512_add_ps(f1, _mm512_load_ps(out + (q + 1) * 16));
      }
      if (q < q1) f0 = _mm512_add_ps(f0, _mm512_load_ps(out + q * 16));
      add_widened(_mm512_add_ps(f0, f1), &slo, &shi);
    }
    _mm512_storeu_pd(bsum, slo);
    _mm512_storeu_pd(bsum + 8, shi);
  }
  for (int64_t p0 = 0; p0 < np; p0 += 16) {
    int64_t n = np - p0 < 16 ? np - p0 : 16;
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(out + (p0 + (i < n ? i : 0)) * 16);
    dd_transpose16(r);
    __mmask16 m = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
#pragma GCC unroll 16
    for (int c = 0; c < 16; c++)
      if (c < nc) _mm512_mask_storeu_ps(yb + c * plane + p0, m, r[c]);
  }
}
#endif

/* ---- forward at stride 2, 16 columns of a plane in the vector lanes (AVX-512) ---- */

/* Input rows at most this wide.  One core, against the lanes: 72 channels of 56x56 0.046 ->
 * 0.038 ms, 240 of 28x28 with SiLU 0.050 -> 0.045; but 96 of 112x112 0.211 -> 0.217, and
 * 5x5 kernels (a ring of 25 tap vectors) slower everywhere (288 channels of 14x14: 0.028 ->
 * 0.049 in MobileNet v3). */
#define S2_MAX_W 64

#ifdef DD_AVX512_KERNELS
/* Lanes lo <= l < hi of 16. */
static inline DD_TARGET_AVX512 __mmask16 s2_lanes(int64_t lo, int64_t hi) {
  if (lo < 0) lo = 0;
  if (hi > 16) hi = 16;
  return hi <= lo ? 0 : (__mmask16)(((1u << (hi - lo)) - 1) << lo);
}

/* Input row ih's K tap vectors at column block j0 (input columns 2 (j0 + l) - P + kj in lane
 * l: the even lanes of two loads, one permutation), zeros outside the plane. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void s2_row(
    const int K, const dd_dw_geom *g, const float *x, int64_t ih, int64_t j0,
    const __mmask16 *ma, const __mmask16 *mb, __m512 *tv) {
  const __m512i even =
      _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  if (ih < 0 || ih >= g->h) {
#pragma GCC unroll 5
    for (int kj = 0; kj < K; kj++) tv[kj] = _mm512_setzero_ps();
    return;
  }
  const float *row = x + ih * g->w + 2 * j0 - K / 2;
#pragma GCC unroll 5
  for (int kj = 0; kj < K; kj++)
    tv[kj] = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(ma[kj], row + kj), even,
                                    _mm512_maskz_loadu_ps(mb[kj], row + kj + 16));
}

/* One plane of dd_dw_forward_s2, the kernel K x K (a constant: 3 is the one taken, see
 * S2_MAX_W), pad K / 2: column
 * block by column block, the window's K input rows of tap vectors in registers, two rows
 * shifted in per output row. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void s2_plane(
    const int K, const dd_dw_geom *g, const float *x, const float *k, float bias, int act,
    float *y, double *sum) {
  const int P = K / 2;
  const __m512 bv = _mm512_set1_ps(bias);
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  __m512 fs = _mm512_setzero_ps();
  for (int64_t j0 = 0; j0 < g->wo; j0 += 16) {
    __mmask16 ma[5], mb[5];
    const __mmask16 mo = s2_lanes(0, g->wo - j0);
#pragma GCC unroll 5
    for (int kj = 0; kj < K; kj++) {
      int64_t base = 2 * j0 - P + kj; /* input column of tap kj in lane 0 */
      ma[kj] = s2_lanes(-base, g->w - base);
      mb[kj] = s2_lanes(-base - 16, g->w - base - 16);
    }
    __m512 r[5][5]; /* r[ki]: input row 2 oh - P + ki */
#pragma GCC unroll 5
    for (int ki = 0; ki < K - 2; ki++) s2_row(K, g, x, ki - P, j0, ma, mb, r[ki]);
    for (int64_t oh = 0; oh < g->ho; oh++) {
      int64_t top = 2 * oh - P;
      if (oh > 0) {
#pragma GCC unroll 5
        for (int ki = 0; ki < K - 2; ki++)
#pragma GCC unroll 5
          for (int kj = 0; kj < K; kj++) r[ki][kj] = r[ki + 2][kj];
      }
      s2_row(K, g, x, top + K - 2, j0, ma, mb, r[K - 2]);
      s2_row(K, g, x, top + K - 1, j0, ma, mb, r[K - 1]);
      __m512 acc = bv;
#pragma GCC unroll 5
      for (int ki = 0; ki < K; ki++)
#pragma GCC unroll 5
        for (int kj = 0; kj < K; kj++)
          acc = _mm512_fmadd_ps(_mm512_set1_ps(k[ki * K + kj]), r[ki][kj], acc);
      acc = dd_act16(acc, act);
      _mm512_mask_storeu_ps(y + oh * g->wo + j0, mo, acc);
      if (sum) { /* 16 rows of a column block in float lanes, then into double */
        fs = _mm512_add_ps(fs, _mm512_maskz_mov_ps(mo, acc));
        if ((oh & 15) == 15 || oh == g->ho - 1) {
          add_widened(fs, &s0, &s1);
          fs = _mm512_setzero_ps();
        }
      }
    }
  }
  if (sum) *sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

DD_TARGET_AVX512 static void s2_plane3(const dd_dw_geom *g, const float *x, const float *k,
                                       float bias, int act, float *y, double *sum) {
  s2_plane(3, g, x, k, bias, act, y, sum);
}
#endif

int dd_dw_forward_s2(const dd_dw_geom *g, int64_t n, int64_t c, const float *x,
                     const float *k, const float *bias, float *y, int act, double *sum) {
#ifdef DD_AVX512_KERNELS
  if (!dd_kernels_avx512() || g->sh != 2 || g->sw != 2 || g->dh != 1 || g->dw != 1 ||
      g->kh != 3 || g->kw != 3 || g->ph != 1 || g->pw != 1 || g->w > S2_MAX_W)
    return 0;
  int64_t hw = g->h * g->w, plane = g->ho * g->wo, nk = g->kh * g->kw;
#pragma omp parallel for if (n * c * plane * nk > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n * c; i++) {
    int64_t m = i % c;
    s2_plane3(g, x + i * hw, k + m * nk, bias ? bias[m] : 0.f, act, y + i * plane,
              sum ? sum + i : NULL);
  }
  return 1;
#else
  (void)g, (void)n, (void)c, (void)x, (void)k, (void)bias, (void)y, (void)act, (void)sum;
  return 0;
#endif
}

/* ---- forward, 8 channels in the vector lanes (the generic path) ----
 * lanes_band's arithmetic in vectors of 8 floats, without the sums: a band of output rows of
 * 8 planes staged 8 channels per pixel (scalar copies: no transposes to write portably),
 * every output pixel the bias then the taps in k's order by fused multiply-adds where the
 * build has FMA (else a * b + c), as stencil_generic computes each output, so the floats of
 * dd_dw_forward on this path; then the activation over the band, and back to planes.  On the
 * small planes of a network's last stages (7 x 7, 14 x 14) it replaces dd_dw_forward's staging
 * per plane and per row, which cost more than the stencil (conv.c takes it below
 * GENERIC_LANES_PIXELS).  Groups of 8 channels too (RegNet's), as lanes_band takes them: a
 * block is one group, and output lane l is the bias, then over the group's input channels j
 * and the taps, k[l][j][t] times the staged pixel's channel j (a broadcast); where the generic
 * path otherwise packs im2col blocks of 8 rows for products too small for OpenBLAS.  (Groups
 * of 2 and 4 would need a shuffle per tap: one pixel at a time that way, RegNetY-400MF took
 * 31 ms against the im2col path's 22.5 on a Zen 3, one thread, so they are declined.) */
#define GLANES_IN 4096  /* staged input pixels of 8 floats: 128 KiB */
#define GLANES_OUT 2048 /* staged output pixels: 64 KiB */
#define GLANES_TILE 8   /* output pixels per register tile */

typedef float v8 __attribute__((vector_size(32)));

static inline v8 v8_splat(float x) { return (v8){x, x, x, x, x, x, x, x}; }

/* Two-vector shuffles with constant lanes, in GCC's builtin or Clang's. */
#ifdef __clang__
#define V8_SHUF(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
  __builtin_shufflevector((a), (b), i0, i1, i2, i3, i4, i5, i6, i7)
#else
typedef int32_t v8i __attribute__((vector_size(32)));
#define V8_SHUF(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
  __builtin_shuffle((a), (b), (v8i){i0, i1, i2, i3, i4, i5, i6, i7})
#endif

/* r[i][j] becomes r[j][i]: the 8 x 8 transpose in three rounds of two-vector shuffles (the
 * compilers make unpack, shufps and permute instructions of them). */
static inline __attribute__((always_inline)) void v8_transpose(v8 r[8]) {
  v8 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = V8_SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = V8_SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = V8_SHUF(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 1] = V8_SHUF(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[i + 2] = V8_SHUF(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 3] = V8_SHUF(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = V8_SHUF(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[i + 4] = V8_SHUF(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

static inline v8 v8_load(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

#ifdef __FMA__
static inline __attribute__((always_inline)) v8 v8_fma(v8 a, v8 b, v8 c) {
  v8 r;
  for (int i = 0; i < 8; i++) r[i] = __builtin_fmaf(a[i], b[i], c[i]);
  return r;
}
#else
static inline __attribute__((always_inline)) v8 v8_fma(v8 a, v8 b, v8 c) { return a * b + c; }
#endif

static int glanes_plan_of(const dd_dw_geom *g, int64_t *wst, int64_t *rows) {
  int64_t reach = (g->wo - 1) * g->sw + (g->kw - 1) * g->dw + 1, own = g->pw + g->w;
  *wst = reach > own ? reach : own;
  int64_t eh = (g->kh - 1) * g->dh;
  if (GLANES_IN / *wst < eh + 1) return 0;
  int64_t a = GLANES_OUT / g->wo, b = (GLANES_IN / *wst - eh - 1) / g->sh + 1;
  *rows = a < b ? a : b;
  if (*rows > g->ho) *rows = g->ho;
  return *rows >= 1;
}

/* Output rows [oh0, oh0 + rows) of the nc (<= 8) planes y from the planes x (weights k, nc x
 * cg x kh kw, whole groups of cg in the block; bias nc floats or NULL), wst staged pixels a
 * row. */
static void glanes_band(const dd_dw_geom *g, int64_t wst, int cg, const float *x,
                        const float *k, const float *bias, int64_t nc, int64_t oh0,
                        int64_t rows, int act, float *y) {
  float in[GLANES_IN * 8] __attribute__((aligned(32)));
  float out[(GLANES_OUT + GLANES_TILE) * 8] __attribute__((aligned(32)));
  float kt[DD_DW_TAPS * 8] __attribute__((aligned(32)));
  int64_t toff[DD_DW_TAPS];
  int ntaps = (int)(g->kh * g->kw), nk = cg * ntaps;
  for (int j = 0; j < nk; j++) /* kt[j][l] = k[l][j] */
    for (int l = 0; l < 8; l++) kt[j * 8 + l] = l < nc ? k[l * nk + j] : 0.f;
  for (int t = 0; t < ntaps; t++)
    toff[t] = ((t / g->kw) * g->dh * wst + (t % g->kw) * g->dw) * 8;
  v8 bv = {0};
  for (int c = 0; c < nc && bias; c++) bv[c] = bias[c];
  /* stage: input rows ih0 .. ih0 + hst - 1, input column iw at pixel pw + iw */
  int64_t hst = (rows - 1) * g->sh + (g->kh - 1) * g->dh + 1, ih0 = oh0 * g->sh - g->ph;
  int64_t hw = g->h * g->w;
  for (int64_t q = 0; q < hst; q++) {
    float *row = in + q * wst * 8;
    int64_t ih = ih0 + q;
    if (ih < 0 || ih >= g->h) {
      memset(row, 0, (size_t)wst * 8 * sizeof *row);
      continue;
    }
    memset(row, 0, (size_t)g->pw * 8 * sizeof *row);
    memset(row + (g->pw + g->w) * 8, 0, (size_t)(wst - g->pw - g->w) * 8 * sizeof *row);
    const float *src = x + ih * g->w;
    float *dst = row + g->pw * 8;
    int64_t iw0 = 0;
    for (; iw0 + 8 <= g->w; iw0 += 8) { /* 8 columns of the 8 planes, transposed */
      v8 r[8];
      for (int c = 0; c < 8; c++) r[c] = c < nc ? v8_load(src + c * hw + iw0) : v8_splat(0.f);
      v8_transpose(r);
      for (int j = 0; j < 8; j++) memcpy(dst + (iw0 + j) * 8, &r[j], sizeof r[j]);
    }
    for (int64_t iw = iw0; iw < g->w; iw++)
      for (int c = 0; c < 8; c++) dst[iw * 8 + c] = c < nc ? src[c * hw + iw] : 0.f;
  }
  /* the band's output pixels in row-major order, GLANES_TILE at a time across row ends (as
   * lanes_band: a 7 x 7 plane is 6 full tiles and one short, not 7 rows of single pixels
   * whose chains of fused multiply-adds wait on each other); a short last tile repeats its
   * last pixel, computed and not stored */
  int64_t np = rows * g->wo;
  for (int64_t p0 = 0; p0 < np; p0 += GLANES_TILE) {
    const float *src[GLANES_TILE];
    for (int o = 0; o < GLANES_TILE; o++) {
      int64_t p = p0 + o < np ? p0 + o : np - 1, r = p / g->wo, ow = p % g->wo;
      src[o] = in + (r * g->sh * wst + ow * g->sw) * 8;
    }
    v8 acc[GLANES_TILE];
    for (int o = 0; o < GLANES_TILE; o++) acc[o] = bv;
    if (cg == 8) { /* the block is one group: input channel j of every lane is a broadcast */
      for (int j = 0; j < 8; j++)
        for (int t = 0; t < ntaps; t++) {
          v8 kv = v8_load(kt + (j * ntaps + t) * 8);
          int64_t d = toff[t] + j;
#pragma GCC unroll 8
          for (int o = 0; o < GLANES_TILE; o++) acc[o] = v8_fma(kv, v8_splat(src[o][d]), acc[o]);
        }
    } else {
      for (int t = 0; t < ntaps; t++) {
        v8 kv = v8_load(kt + t * 8);
        int64_t d = toff[t];
#pragma GCC unroll 8
        for (int o = 0; o < GLANES_TILE; o++) acc[o] = v8_fma(kv, v8_load(src[o] + d), acc[o]);
      }
    }
    int n = np - p0 < GLANES_TILE ? (int)(np - p0) : GLANES_TILE;
    for (int o = 0; o < n; o++) memcpy(out + (p0 + o) * 8, &acc[o], sizeof acc[o]);
  }
  if (act == DD_ACT_RELU) {
    for (int64_t i = 0; i < np * 8; i++) out[i] = out[i] > 0.f ? out[i] : 0.f;
  } else if (act != DD_ACT_NONE) {
    dd_act_rows(out, np * 8, act, 0);
  }
  int64_t plane = g->ho * g->wo;
  float *yb = y + oh0 * g->wo;
  int64_t p0 = 0;
  for (; p0 + 8 <= np; p0 += 8) { /* 8 pixels of the 8 channels, transposed back */
    v8 r[8];
    for (int j = 0; j < 8; j++) r[j] = v8_load(out + (p0 + j) * 8);
    v8_transpose(r);
    for (int64_t c = 0; c < nc; c++) memcpy(yb + c * plane + p0, &r[c], sizeof r[c]);
  }
  for (int64_t c = 0; c < nc; c++)
    for (int64_t p = p0; p < np; p++) yb[c * plane + p] = out[p * 8 + c];
}

/* lanes_forward on the generic path (no sums): tasks of 8 planes by bands, as there. */
static int glanes_forward(const dd_dw_geom *g, int64_t n, int64_t c, int cg, const float *x,
                          const float *k, const float *bias, float *y, int act, int parallel) {
  int64_t wst, rows;
  if ((cg != 1 && cg != 8) || cg * g->kh * g->kw > DD_DW_TAPS ||
      !glanes_plan_of(g, &wst, &rows))
    return 0;
  int64_t blocks = (c + 7) / 8, bands = (g->ho + rows - 1) / rows;
  int64_t tasks = n * blocks * bands, hw = g->h * g->w, plane = g->ho * g->wo;
  int64_t nk = cg * g->kh * g->kw;
#pragma omp parallel for if (parallel && n * c * plane * nk > DD_PAR_MIN) schedule(static)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t i = t / (blocks * bands), b = t / bands % blocks, band = t % bands;
    int64_t c0 = b * 8, nc = c - c0 < 8 ? c - c0 : 8, oh0 = band * rows;
    int64_t r = g->ho - oh0 < rows ? g->ho - oh0 : rows;
    glanes_band(g, wst, cg, x + (i * c + c0) * hw, k + c0 * nk, bias ? bias + c0 : NULL, nc,
                oh0, r, act, y + (i * c + c0) * plane);
  }
  return 1;
}

/* The forward of dd_dw_forward_lanes and dd_group_forward_lanes: cg input channels per group
 * (1: depthwise), as many outputs; with part (cg 1 only), each task's 16 sums of its band at
 * part + 16 t (tasks: images, then blocks of 16 channels, then bands). */
static int lanes_forward(const dd_dw_geom *g, int64_t n, int64_t c, int cg, const float *x,
                         const float *k, const float *bias, float *y, int act, int parallel,
                         double *part) {
  if (!dd_kernels_avx512())
    return !part && glanes_forward(g, n, c, cg, x, k, bias, y, act, parallel);
#ifdef DD_AVX512_KERNELS
  lanes_plan lp;
  if (cg * g->kh * g->kw > DD_DW_TAPS || !lanes_plan_of(g, &lp)) return 0;
  int64_t blocks = (c + 15) / 16, bands = (g->ho + lp.rows - 1) / lp.rows;
  int64_t tasks = n * blocks * bands, hw = g->h * g->w, plane = g->ho * g->wo;
  int64_t nk = cg * g->kh * g->kw;
#pragma omp parallel for if (parallel && n * c * plane * nk > DD_PAR_MIN) schedule(static)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t i = t / (blocks * bands), b = t / bands % blocks, band = t % bands;
    int64_t c0 = b * 16, nc = c - c0 < 16 ? c - c0 : 16, oh0 = band * lp.rows;
    int64_t rows = g->ho - oh0 < lp.rows ? g->ho - oh0 : lp.rows;
    lanes_band(g, &lp, cg, x + (i * c + c0) * hw, k + c0 * nk, bias ? bias + c0 : NULL, nc,
               oh0, rows, act, y + (i * c + c0) * plane, part ? part + 16 * t : NULL);
  }
  return 1;
#else
  (void)g, (void)n, (void)c, (void)cg, (void)x, (void)k, (void)bias, (void)y, (void)act,
      (void)parallel, (void)part;
  return 0;
#endif
}

int dd_dw_forward_lanes(const dd_dw_geom *g, int64_t n, int64_t c, const float *x,
                        const float *k, const float *bias, float *y, int act, int parallel) {
  return lanes_forward(g, n, c, 1, x, k, bias, y, act, parallel, NULL);
}

int64_t dd_dw_lanes_parts(const dd_dw_geom *g, int64_t n, int64_t c) {
#ifdef DD_AVX512_KERNELS
  lanes_plan lp;
  if (!dd_kernels_avx512() || g->kh * g->kw > DD_DW_TAPS || !lanes_plan_of(g, &lp)) return 0;
  return n * ((c + 15) / 16) * ((g->ho + lp.rows - 1) / lp.rows) * 16;
#else
  (void)g, (void)n, (void)c;
  return 0;
#endif
}

int dd_dw_forward_lanes_sums(const dd_dw_geom *g, int64_t n, int64_t c, const float *x,
                             const float *k, const float *bias, float *y, int act,
                             double *sum, double *part) {
  int64_t nparts = dd_dw_lanes_parts(g, n, c);
  if (!nparts || !lanes_forward(g, n, c, 1, x, k, bias, y, act, 1, part)) return 0;
  int64_t blocks = (c + 15) / 16, bands = nparts / 16 / (n * blocks);
  for (int64_t i = 0; i < n; i++)
    for (int64_t m = 0; m < c; m++) {
      const double *pb = part + ((i * blocks + m / 16) * bands) * 16 + m % 16;
      double s = 0;
      for (int64_t band = 0; band < bands; band++) s += pb[16 * band];
      sum[i * c + m] = s;
    }
  return 1;
}

int dd_group_forward_lanes(const dd_dw_geom *g, int64_t n, int64_t c, int cg, const float *x,
                           const float *k, const float *bias, float *y, int act,
                           int parallel) {
  if (cg < 2 || cg > 16 || 16 % cg || c % cg) return 0;
  return lanes_forward(g, n, c, cg, x, k, bias, y, act, parallel, NULL);
}
