/* The Fourier image parameterization of feature visualization, its random views, and the
 * iterative radix-2 FFT under it (bit reversal, then log2 n butterfly passes; rows, then
 * columns).  The FFT is written here instead of linking FFTW: six P x P transforms per
 * optimization step cost a few percent of the network's forward and backward, and a
 * power-of-two side is no constraint because the canvas is larger than the network's view
 * anyway (the view is a random crop of it). */
#include "fourier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

struct dd_fft2 {
  int n, log2n;
  int *rev;          /* bit reversal permutation */
  float *cos_, *sin_; /* twiddles cos/sin(2 pi k / n), k < n/2 */
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
  if (!f->rev || !f->cos_ || !f->sin_) {
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

/* In place, in 32 x 32 blocks so both the rows read and the rows written stay in cache. */
static void transpose(float *a, int n) {
  const int B = 32;
#pragma omp parallel for schedule(dynamic)
  for (int by = 0; by < n; by += B)
    for (int bx = by; bx < n; bx += B)
      for (int y = by; y < by + B && y < n; y++)
        for (int x = bx == by ? y + 1 : bx; x < bx + B && x < n; x++) {
          float t = a[(size_t)y * n + x];
          a[(size_t)y * n + x] = a[(size_t)x * n + y];
          a[(size_t)x * n + y] = t;
        }
}

/* Rows, transpose, rows, transpose back: every pass works on contiguous rows, which are
 * independent, so the threads share nothing. */
void dd_fft2_run(dd_fft2 *f, float *re, float *im, int sign) {
  int n = f->n;
  for (int pass = 0; pass < 2; pass++) {
#pragma omp parallel for schedule(static)
    for (int y = 0; y < n; y++) fft1(f, re + (size_t)y * n, im + (size_t)y * n, sign);
    transpose(re, n);
    transpose(im, n);
  }
}

/* ---- the parameterized canvas ---------------------------------------------------------- */

/* Square root of ImageNet's colour covariance (from its SVD), as in lucid: multiplying
 * decorrelated channels by it gives natural colour statistics.  Normalized by its largest
 * column norm. */
static const float color_sqrt[3][3] = {
    {0.26f, 0.09f, 0.02f}, {0.27f, 0.00f, -0.05f}, {0.27f, -0.09f, 0.03f}};

void dd_fimage_free(dd_fimage *f) {
  if (!f) return;
  dd_fft2_free(f->fft);
  free(f->rgb);
  free(f->fscale);
  free(f->re);
  free(f->im);
  free(f);
}

int dd_fimage_new(int P, int pixels, dd_fimage **out, dd_err *err) {
  dd_fimage *f = calloc(1, sizeof *f);
  if (!f) return dd_fail(err, DD_ENOMEM, "out of memory");
  f->P = P;
  f->pixels = pixels;
  int rc = dd_fft2_new(P, &f->fft, err);
  if (rc) {
    dd_fimage_free(f);
    return rc;
  }
  size_t n = (size_t)P * P;
  f->rgb = malloc(3 * n * sizeof(float));
  f->fscale = malloc(n * sizeof(float));
  f->re = malloc(3 * n * sizeof(float));
  f->im = malloc(3 * n * sizeof(float));
  if (!f->rgb || !f->fscale || !f->re || !f->im) {
    dd_fimage_free(f);
    return dd_fail(err, DD_ENOMEM, "out of memory for a %dx%d canvas", P, P);
  }
  /* The floor at 1/P keeps the DC term finite. */
  for (int v = 0; v < P; v++)
    for (int u = 0; u < P; u++) {
      float fx = (float)(u <= P / 2 ? u : u - P) / (float)P;
      float fy = (float)(v <= P / 2 ? v : v - P) / (float)P;
      float fr = sqrtf(fx * fx + fy * fy);
      f->fscale[(size_t)v * P + u] = 1.0f / fmaxf(fr, 1.0f / (float)P);
    }
  float maxnorm = 0;
  for (int c = 0; c < 3; c++) {
    float s = 0;
    for (int r = 0; r < 3; r++) s += color_sqrt[r][c] * color_sqrt[r][c];
    maxnorm = fmaxf(maxnorm, sqrtf(s));
  }
  for (int r = 0; r < 3; r++)
    for (int c = 0; c < 3; c++) f->color[r][c] = color_sqrt[r][c] / maxnorm;
  *out = f;
  return DD_OK;
}

void dd_fimage_render(dd_fimage *f, const float *spec) {
  size_t n = (size_t)f->P * f->P;
  float k = 1.0f / (4.0f * (float)f->P);
  if (f->pixels) {
    for (size_t i = 0; i < 3 * n; i++) f->rgb[i] = 1.0f / (1.0f + expf(-spec[i]));
    return;
  }
  for (int c = 0; c < 3; c++) {
    float *re = f->re + c * n, *im = f->im + c * n;
    const float *sr = spec + 2 * c * n, *si = sr + n;
    for (size_t i = 0; i < n; i++) {
      re[i] = sr[i] * f->fscale[i];
      im[i] = si[i] * f->fscale[i];
    }
    dd_fft2_run(f->fft, re, im, +1);
  }
  for (size_t i = 0; i < n; i++) {
    float t[3] = {f->re[i] * k, f->re[n + i] * k, f->re[2 * n + i] * k};
    for (int c = 0; c < 3; c++) {
      float l = f->color[c][0] * t[0] + f->color[c][1] * t[1] + f->color[c][2] * t[2];
      f->rgb[c * n + i] = 1.0f / (1.0f + expf(-l));
    }
  }
}

void dd_fimage_adjoint(dd_fimage *f, const float *grgb, float *gspec) {
  size_t n = (size_t)f->P * f->P;
  float k = 1.0f / (4.0f * (float)f->P);
  if (f->pixels) {
    for (size_t i = 0; i < 3 * n; i++) gspec[i] = grgb[i] * f->rgb[i] * (1 - f->rgb[i]);
    memset(gspec + 3 * n, 0, 3 * n * sizeof(float));
    return;
  }
  /* Through the sigmoid and the colour matrix, transposed. */
  for (size_t i = 0; i < n; i++) {
    float gl[3];
    for (int c = 0; c < 3; c++) {
      float r = f->rgb[c * n + i];
      gl[c] = grgb[c * n + i] * r * (1 - r);
    }
    for (int d = 0; d < 3; d++) {
      f->re[d * n + i] =
          k * (f->color[0][d] * gl[0] + f->color[1][d] * gl[1] + f->color[2][d] * gl[2]);
      f->im[d * n + i] = 0;
    }
  }
  /* x = Re(sum_k z_k e^{+i..}) gives dL/dRe z + i dL/dIm z = sum_n g_n e^{-i..}: the
   * forward transform. */
  for (int d = 0; d < 3; d++) {
    float *re = f->re + d * n, *im = f->im + d * n;
    dd_fft2_run(f->fft, re, im, -1);
    float *gr = gspec + 2 * d * n, *gi = gr + n;
    for (size_t i = 0; i < n; i++) {
      gr[i] = re[i] * f->fscale[i];
      gi[i] = im[i] * f->fscale[i];
    }
  }
}

/* ---- views ------------------------------------------------------------------------------ */

dd_warp dd_warp_center(int P) {
  float c = (float)(P - 1) / 2;
  return (dd_warp){c, c, 1, 0, 0, 1};
}

dd_warp dd_warp_make(int P, float tx, float ty, float s, float theta) {
  dd_warp w = dd_warp_center(P);
  w.cx += tx;
  w.cy += ty;
  w.a = cosf(theta) / s;
  w.b = -sinf(theta) / s;
  w.c = sinf(theta) / s;
  w.d = cosf(theta) / s;
  return w;
}

/* The four canvas pixels and weights view pixel (x, y) reads. */
typedef struct tap {
  size_t i[4];
  float w[4];
} tap;

static tap warp_tap(const dd_warp *w, int P, int S, int x, int y) {
  float h = (float)(S - 1) / 2, u = (float)x - h, v = (float)y - h;
  float sx = w->cx + w->a * u + w->b * v, sy = w->cy + w->c * u + w->d * v;
  float fx0 = floorf(sx), fy0 = floorf(sy), ax = sx - fx0, ay = sy - fy0;
  int mask = P - 1; /* P is a power of two: & wraps negatives too */
  int x0 = (int)fx0 & mask, y0 = (int)fy0 & mask, x1 = (x0 + 1) & mask, y1 = (y0 + 1) & mask;
  tap t = {{(size_t)y0 * P + x0, (size_t)y0 * P + x1, (size_t)y1 * P + x0, (size_t)y1 * P + x1},
           {(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay}};
  return t;
}

void dd_warp_sample(const float *canvas, int P, const dd_warp *w, float *view, int S) {
  size_t n = (size_t)P * P, ss = (size_t)S * S;
#pragma omp parallel for schedule(static)
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      tap t = warp_tap(w, P, S, x, y);
      size_t o = (size_t)y * S + x;
      for (int c = 0; c < 3; c++) {
        const float *r = canvas + c * n;
        view[c * ss + o] =
            t.w[0] * r[t.i[0]] + t.w[1] * r[t.i[1]] + t.w[2] * r[t.i[2]] + t.w[3] * r[t.i[3]];
      }
    }
}

void dd_warp_adjoint(const float *gview, int S, const dd_warp *w, float *gcanvas, int P) {
  size_t n = (size_t)P * P, ss = (size_t)S * S;
  /* Scatters collide within a channel, never across: one channel per thread. */
#pragma omp parallel for schedule(static)
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) {
        tap t = warp_tap(w, P, S, x, y);
        float g = gview[c * ss + (size_t)y * S + x];
        float *d = gcanvas + c * n;
        for (int k = 0; k < 4; k++) d[t.i[k]] += t.w[k] * g;
      }
}
