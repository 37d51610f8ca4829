/* Iterative radix-2 FFT (bit reversal, then log2 n butterfly passes), rows then columns.
 * Written here instead of linking FFTW: the transforms are 256 x 256 at most three times per
 * optimization step, which costs well under a percent of the network's forward and backward,
 * and a power-of-two side is no constraint because the parameterized canvas is larger than
 * the network's view anyway (the view is a random crop of it). */
#include "fourier.h"

#include <math.h>
#include <stdlib.h>

#define PI 3.14159265358979323846

struct dd_fft2 {
  int n, log2n;
  int *rev;          /* bit reversal permutation */
  float *cos_, *sin_; /* twiddles cos/sin(2 pi k / n), k < n/2 */
  float *col_re, *col_im;
};

int dd_fft2_new(int n, dd_fft2 **out, dd_err *err) {
  int log2n = 0;
  while ((1 << log2n) < n && log2n < 14) log2n++;
  if (n < 2 || n > 8192 || (1 << log2n) != n)
    return dd_fail(err, DD_EARG, "FFT size %d is not a power of two in 2..8192", n);
  dd_fft2 *f = calloc(1, sizeof *f);
  if (!f) return dd_fail(err, DD_ENOMEM, "out of memory");
  f->n = n;
  f->log2n = log2n;
  f->rev = malloc((size_t)n * sizeof *f->rev);
  f->cos_ = malloc((size_t)n / 2 * sizeof(float));
  f->sin_ = malloc((size_t)n / 2 * sizeof(float));
  f->col_re = malloc((size_t)n * sizeof(float));
  f->col_im = malloc((size_t)n * sizeof(float));
  if (!f->rev || !f->cos_ || !f->sin_ || !f->col_re || !f->col_im) {
    dd_fft2_free(f);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    int r = 0;
    for (int b = 0; b < log2n; b++)
      if (i & (1 << b)) r |= 1 << (log2n - 1 - b);
    f->rev[i] = r;
  }
  /* Each twiddle from cos/sin directly: a recurrence would drift over 4096 steps. */
  for (int k = 0; k < n / 2; k++) {
    double a = 2.0 * PI * k / n;
    f->cos_[k] = (float)cos(a);
    f->sin_[k] = (float)sin(a);
  }
  *out = f;
  return DD_OK;
}

void dd_fft2_free(dd_fft2 *f) {
  if (!f) return;
  free(f->rev);
  free(f->cos_);
  free(f->sin_);
  free(f->col_re);
  free(f->col_im);
  free(f);
}

static void fft1(const dd_fft2 *f, float *re, float *im, int sign) {
  int n = f->n;
  for (int i = 0; i < n; i++) {
    int r = f->rev[i];
    if (r > i) {
      float t = re[i];
      re[i] = re[r];
      re[r] = t;
      t = im[i];
      im[i] = im[r];
      im[r] = t;
    }
  }
  for (int len = 2; len <= n; len <<= 1) {
    int half = len / 2, step = n / len;
    for (int s = 0; s < n; s += len)
      for (int k = 0; k < half; k++) {
        float wr = f->cos_[k * step], wi = sign * f->sin_[k * step];
        int a = s + k, b = a + half;
        float xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr;
        im[b] = im[a] - xi;
        re[a] += xr;
        im[a] += xi;
      }
  }
}

void dd_fft2_run(dd_fft2 *f, float *re, float *im, int sign) {
  int n = f->n;
  for (int y = 0; y < n; y++) fft1(f, re + (size_t)y * n, im + (size_t)y * n, sign);
  for (int x = 0; x < n; x++) {
    for (int y = 0; y < n; y++) {
      f->col_re[y] = re[(size_t)y * n + x];
      f->col_im[y] = im[(size_t)y * n + x];
    }
    fft1(f, f->col_re, f->col_im, sign);
    for (int y = 0; y < n; y++) {
      re[(size_t)y * n + x] = f->col_re[y];
      im[(size_t)y * n + x] = f->col_im[y];
    }
  }
}
