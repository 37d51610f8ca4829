/* A small radix-2 complex FFT over square n x n arrays (n a power of two), for the Fourier
 * image parameterization of feature visualization.  Internal to the library. */
#ifndef DREAM_FOURIER_H
#define DREAM_FOURIER_H

#include "dream/error.h"

typedef struct dd_fft2 dd_fft2;

/* Plan for n x n transforms; DD_EARG unless n is a power of two in 2..8192.  A plan owns a
 * work buffer, so one plan must not run in two threads at once. */
int dd_fft2_new(int n, dd_fft2 **out, dd_err *err);
void dd_fft2_free(dd_fft2 *f);

/* In place on re[n*n], im[n*n] (row-major): X[k] = sum_j x[j] exp(sign * 2 pi i j.k / n),
 * sign -1 the forward transform, +1 the inverse without the 1/n^2 factor.  Unnormalized
 * both ways, so each is the other's adjoint up to conjugation. */
void dd_fft2_run(dd_fft2 *f, float *re, float *im, int sign);

#endif
