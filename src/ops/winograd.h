/* Winograd F(4x4, 3x3): 3x3 stride-1 convolution in 36 multiplies per 4x4 output tile and
 * channel pair instead of 144 (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016).  Conv uses it for the forward pass and for the data gradient (itself a
 * 3x3 stride-1 convolution of dY with the flipped, transposed weights).
 *
 * The transformed weights, the transformed input tiles and the products live in a caller's
 * workspace of dd_wino_scratch floats; tiles are taken in chunks so that it stays bounded
 * whatever the image size. */
#ifndef DREAM_OPS_WINOGRAD_H
#define DREAM_OPS_WINOGRAD_H

#include <stdint.h>

/* One 3x3 stride-1 convolution: y[o][r][s] = sum over i, a, b of
 * w(o, i, a, b) * x[i][r - pad_y + a][s - pad_x + b], x zero outside its ih x iw planes.
 * w(o, i, a, b) is wt[((o * ci + i) * 3 + a) * 3 + b], or with `flip` (the data gradient of a
 * convolution whose weights are wt[i][o]) wt[((i * co + o) * 3 + 2 - a) * 3 + 2 - b]. */
typedef struct dd_wino_conv {
  int64_t ci, ih, iw; /* input planes */
  int64_t co, oh, ow; /* output planes */
  int64_t pad_y, pad_x;
  int flip;
  int bf16; /* the products in bf16 (dd_bgemm, ops/bf16.h) */
} dd_wino_conv;

/* Floats of workspace dd_wino_run needs. */
int64_t dd_wino_scratch(const dd_wino_conv *c);

/* y = bias + conv (bias may be NULL: 0), or with `accumulate` y += conv (bias ignored).
 * `accumulate` takes dd_sgemm's bits: DD_SGEMM_ACCUMULATE, and DD_SGEMM_RELU for y = max(0, y)
 * once written (ops/sgemm.h). */
void dd_wino_run(const dd_wino_conv *c, const float *x, const float *wt, const float *bias,
                 float *y, int accumulate, float *work);

#endif
