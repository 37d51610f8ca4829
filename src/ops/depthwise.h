/* Depthwise convolution planes (one input channel per group: EfficientNet's and MobileNet's
 * 3x3 and 5x5, ConvNeXt's 7x7), vectorized.  Conv (ops/conv.c) calls these per plane, in
 * parallel over planes, when dd_dw_prepare() accepts the geometry, and keeps its direct
 * loops for the rest.
 *
 * Every kernel is one stencil over a staged copy of its input: a band of output rows at a
 * time, the input rows it reads are copied (zeros in the padding) into a buffer on the stack,
 * split into stride phases, so that every tap of every output of the band is the same
 * contiguous offset from the output's index in the band: y[j] = init + sum_t w[t] * s[o[t] +
 * j].  The band is taken whole, across row ends (the staged rows are a little wider than the
 * output rows, and the extra columns are computed and dropped), which keeps the vectors full
 * on the 7x7 and 14x14 planes of the last stages.  The data gradient is the same stencil on
 * dy, one stride phase of dx at a time (the taps that reach it, the kernel flipped); the
 * weight gradient dots the staged dy with the staged input at each tap's offset.
 *
 * The vectors are GCC's generic 16-float vectors, compiled twice: on the AVX-512 path
 * (ops/cpu.h, chosen at run time) in zmm registers with fused multiply-adds, on the generic
 * path for the build's -march (pairs of AVX2 or quads of SSE, or AVX-512 when the build
 * targets it) with a separate multiply and add.  Each output element is computed by the same
 * sequence of operations wherever it lies (DD_PLAN_EXACT holds). */
#ifndef DREAM_OPS_DEPTHWISE_H
#define DREAM_OPS_DEPTHWISE_H

#include <stdint.h>

/* One plane's geometry: input h x w, output ho x wo, kernel kh x kw, strides, dilations and
 * the leading pads (the trailing ones follow from the sizes). */
typedef struct dd_dw_geom {
  int64_t h, w, ho, wo, kh, kw, sh, sw, dh, dw, ph, pw;
} dd_dw_geom;

/* At most this many taps, and stride phases (sh * sw): other geometries take Conv's direct
 * loops. */
#define DD_DW_TAPS 256
#define DD_DW_PHASES 4

/* One stride phase of the data gradient (see depthwise.c). */
typedef struct dd_dw_phase {
  int64_t hi, wi, rmin, cmin, wq, eh, rows;
  int ntaps;           /* 0: no tap reaches this phase of dx */
  int tap[DD_DW_TAPS]; /* the kernel's index of each tap */
  int64_t off[DD_DW_TAPS];
} dd_dw_phase;

/* The geometry with its band layouts and tap offsets, computed once per convolution. */
typedef struct dd_dw_plan {
  dd_dw_geom g;
  int64_t wq, eh, rows, hq; /* the forward's band (depthwise.c, fw_plan) */
  int64_t off[DD_DW_TAPS];
  dd_dw_phase phase[DD_DW_PHASES];
} dd_dw_plan;

/* Fills *p and returns 1 when the kernels below take the geometry: the taps and stride phases
 * fit the tables and one row (with the rows it reads) fits the stage buffer; else 0. */
int dd_dw_prepare(const dd_dw_geom *g, dd_dw_plan *p);

/* y (ho x wo) = bias + the convolution of x (h x w) by k (kh x kw), then max(0, .) when
 * relu. */
void dd_dw_forward(const dd_dw_plan *p, const float *x, const float *k, float bias, float *y,
                   int relu);

/* The forward of n images of c planes each (output plane m reads input plane m: no channel
 * multiplier), k c x kh x kw, bias c floats or NULL, with 16 channels in the vector lanes
 * instead of 16 columns: each band of output rows of 16 planes is staged transposed (16
 * channels per pixel, zeros in the padding), every output pixel is a vector of 16 channels
 * summed over the taps in k's order from the bias, and the band goes back to planes.  The
 * same operations per output as dd_dw_forward, so the same results bit for bit, without its
 * per-plane staging and per-row copies, which cost more than the stencil on 7x7 and 14x14
 * planes.  AVX-512 only: returns 0, and does nothing, on the generic path or when one row
 * of the band does not fit the stage (then dd_dw_forward per plane); 1 when done.  Parallel
 * over images, blocks of 16 planes and bands when `parallel`.  Each output then goes through
 * the activation `act` (DD_ACT_NONE, _RELU or _SILU: ops/act.h). */
int dd_dw_forward_lanes(const dd_dw_geom *g, int64_t n, int64_t c, const float *x,
                        const float *k, const float *bias, float *y, int act, int parallel);

/* dd_dw_forward_lanes that also sums each output plane (after the activation) as the band
 * is staged: sum[i c + m] for image i, plane m, groups of 16 pixels of a band in float, then
 * the groups and the bands in order in double (the same sums with any number of threads), from
 * the partial sums of the bands in part (dd_dw_lanes_parts doubles).  Returns 0, doing
 * nothing, where dd_dw_forward_lanes would. */
int dd_dw_forward_lanes_sums(const dd_dw_geom *g, int64_t n, int64_t c, const float *x,
                             const float *k, const float *bias, float *y, int act,
                             double *sum, double *part);

/* The forward of n images of c planes at stride 2, a 3x3 kernel padded by 1, rows at most
 * 64 wide (MobileNet's and EfficientNet's downsampling), with 16 output columns of one
 * plane in the vector lanes, read in place: each input row's taps are the even lanes of two
 * loads (one permutation), made once for the output rows that take them.  The lanes'
 * staging cost four times the outputs' pixels at stride 2, and more than the stencil.
 * Each output is bias + the taps in k's order by fused multiply-adds, zeros in the padding,
 * then the activation `act`: the floats of dd_dw_forward_lanes, bit for bit.  With sum (n c
 * doubles), each output plane's sum too: per column block, groups of 16 rows in float lanes,
 * each added into double lanes, then the lanes added.  Parallel over the planes.  Returns 0,
 * doing nothing, for another geometry or on the generic kernels. */
int dd_dw_forward_s2(const dd_dw_geom *g, int64_t n, int64_t c, const float *x,
                     const float *k, const float *bias, float *y, int act, double *sum);

/* The doubles of part that dd_dw_forward_lanes_sums takes for n images of c planes; 0 where
 * the lanes do not run (the generic kernels, a row that does not fit). */
int64_t dd_dw_lanes_parts(const dd_dw_geom *g, int64_t n, int64_t c);

/* The same for a grouped convolution of c channels in and out, cg (2, 4, 8 or 16) input
 * channels and as many outputs per group (RegNet's groups of 8): k is c x cg x kh x kw, and
 * lane l of a block, output channel l, reads its group's input channel j as lane l / cg * cg
 * + j of the staged pixel (a permutation).  Each output is bias + the sum over its group's
 * channels, then the taps, in fused multiply-adds: the order of the im2col product's k.
 * AVX-512 only; 0 (and nothing done) for another cg, c not a multiple of cg, more than
 * DD_DW_TAPS weights per output, or a band row that does not fit. */
int dd_group_forward_lanes(const dd_dw_geom *g, int64_t n, int64_t c, int cg, const float *x,
                           const float *k, const float *bias, float *y, int act,
                           int parallel);

/* dx (h x w) += the gradient w.r.t. x of the forward above, given dy (ho x wo). */
void dd_dw_backward_data(const dd_dw_plan *p, const float *k, const float *dy, float *dx);

/* dk[t] (kh x kw) += sum over the outputs of dy * the input under tap t, in double. */
void dd_dw_backward_weights(const dd_dw_plan *p, const float *x, const float *dy, double *dk);

#endif
