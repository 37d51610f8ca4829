/* The image parameterization of feature visualization (Olah et al. 2017, lucid): an RGB
 * canvas made from a 1/f-scaled Fourier spectrum behind a colour-decorrelation matrix and a
 * sigmoid, seen through a random affine warp; each map with its adjoint for the gradient.
 * Built on a small radix-2 complex FFT.  Internal to the library. */
#ifndef DREAM_FOURIER_H
#define DREAM_FOURIER_H

#include <stddef.h>

#include "dream/error.h"

typedef struct dd_fft2 dd_fft2;

/* Plan for n x n transforms; DD_EARG unless n is a power of two in 2..8192.  Read-only once
 * made: runs may share it. */
int dd_fft2_new(int n, dd_fft2 **out, dd_err *err);
void dd_fft2_free(dd_fft2 *f);

/* In place on re[n*n], im[n*n] (row-major): X[k] = sum_j x[j] exp(sign * 2 pi i j.k / n),
 * sign -1 the forward transform, +1 the inverse without the 1/n^2 factor. */
void dd_fft2_run(dd_fft2 *f, float *re, float *im, int sign);

/* A P x P canvas (P a power of two) parameterized by a spectrum of 6 P^2 floats: for each
 * decorrelated channel d, P^2 real then P^2 imaginary parts.
 *   t_d = Re(ifft(fscale * spec_d)) / (4 P),  rgb_c = sigmoid(sum_d color[c][d] t_d)
 * fscale = 1 / max(|f|, 1/P) gives every frequency band equal energy, as in natural images;
 * 1/(4P) is lucid's unitary normalization and its /4. */
typedef struct dd_fimage {
  int P;
  int pixels; /* the naive baseline: rgb = sigmoid(spec[0 .. 3 P^2]), one logit per pixel */
  float *rgb; /* 3 x P x P planar, 0..1: the canvas of the last render */
  dd_fft2 *fft;
  float color[3][3];
  float *fscale;   /* P x P */
  float *re, *im;  /* 3 x P x P work */
} dd_fimage;

/* pixels: the naive per-pixel parameterization instead of the Fourier one (same layout, the
 * last 3 P^2 floats unused), to show what the Fourier one is for. */
int dd_fimage_new(int P, int pixels, dd_fimage **out, dd_err *err);
void dd_fimage_free(dd_fimage *f);
/* spec -> f->rgb. */
void dd_fimage_render(dd_fimage *f, const float *spec);
/* Gradient with respect to the spectrum (6 P^2, overwritten) of an objective whose gradient
 * with respect to the canvas of the last render is grgb (3 x P x P). */
void dd_fimage_adjoint(dd_fimage *f, const float *grgb, float *gspec);

/* Where view pixel (x, y) of an S x S view samples the canvas:
 *   (cx, cy) + [a b; c d] (x - (S-1)/2, y - (S-1)/2),
 * bilinearly, wrapping around (the Fourier canvas is periodic, so the wrap is seamless). */
typedef struct dd_warp {
  float cx, cy;
  float a, b, c, d;
} dd_warp;

/* The identity view: the canvas's central S x S pixels. */
dd_warp dd_warp_center(int P);
/* A view shifted by (tx, ty), scaled by s (s > 1 magnifies) and rotated by theta radians. */
dd_warp dd_warp_make(int P, float tx, float ty, float s, float theta);
/* canvas (3 x P x P) -> view (3 x S x S). */
void dd_warp_sample(const float *canvas, int P, const dd_warp *w, float *view, int S);
/* The adjoint: ADDS the view gradient (3 x S x S) into gcanvas (3 x P x P) with the same
 * bilinear weights. */
void dd_warp_adjoint(const float *gview, int S, const dd_warp *w, float *gcanvas, int P);

#endif
