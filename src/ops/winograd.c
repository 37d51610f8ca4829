/* Winograd F(4x4, 3x3) convolution (see winograd.h).
 *
 * With the interpolation points 0, 1, -1, 2, -2 and infinity, one 4x4 output tile is
 *   Y = A^T [ (G w G^T) .* (B^T d B) ] A
 * for a 6x6 input patch d and a 3x3 kernel w.  The 36 element-wise products, summed over the
 * input channels, are 36 independent matrix products U_k (co x ci) * V_k (ci x tiles): that is
 * where the time goes, and sgemm does it.  The transforms work on 16 tiles side by side (one
 * per vector lane); a row of 16 tiles inside the image takes the fast path, the borders a
 * per-tile path that pads with zeros.
 */
#include "ops/winograd.h"

#include <stdint.h>
#include <string.h>

#include "ops/common.h"
#include "ops/sgemm.h"

#define LANES 16
/* Workspace of one chunk of tiles (transformed input + products), in floats: small enough to
 * stay near the caches, large enough that each U_k serves many column blocks in a row. */
#define CHUNK_FLOATS (3 << 19)
/* Tiles per column block of the products (dd_sgemm's register tile width). */
#define BLOCK 32

/* Tiles per chunk: a multiple of BLOCK, at most all the tiles (rounded up). */
static int64_t chunk_tiles(const dd_wino_conv *c) {
  int64_t tiles = ((c->oh + 3) / 4) * ((c->ow + 3) / 4);
  int64_t all = (tiles + BLOCK - 1) / BLOCK * BLOCK;
  int64_t tb = CHUNK_FLOATS / (36 * (c->ci + c->co)) / BLOCK * BLOCK;
  if (tb < 2 * BLOCK) tb = 2 * BLOCK;
  return tb < all ? tb : all;
}

int64_t dd_wino_scratch(const dd_wino_conv *c) {
  return 36 * c->co * c->ci + 36 * (c->ci + c->co) * chunk_tiles(c) + 16; /* + alignment */
}

/* G applied to the 3 values g0..g2 of one column or row of a kernel: 6 results. */
#define G_ROWS(g0, g1, g2, r)                        \
  do {                                               \
    float ge_ = (g0) + (g2);                         \
    r[0] = 0.25f * (g0);                             \
    r[1] = -(ge_ + (g1)) * (1.f / 6);                \
    r[2] = -(ge_ - (g1)) * (1.f / 6);                \
    r[3] = (g0) * (1.f / 24) + (g1) * (1.f / 12) + (g2) * (1.f / 6); \
    r[4] = (g0) * (1.f / 24) - (g1) * (1.f / 12) + (g2) * (1.f / 6); \
    r[5] = (g2);                                     \
  } while (0)

/* U[k][o][i] = (G w(o, i) G^T)[k]: 36 rows of co x ci, one per k.  16 input channels at a
 * time, one per lane, so that the 36 results are stored as 16 contiguous floats each.  Shares
 * the work among the threads of the enclosing parallel region. */
static void transform_weights(const dd_wino_conv *c, const float *wt, float *u) {
  int64_t co = c->co, ci = c->ci, groups = (ci + LANES - 1) / LANES;
#pragma omp for schedule(static)
  for (int64_t job = 0; job < co * groups; job++) {
    int64_t o = job / groups, i0 = job % groups * LANES;
    int n = (int)(ci - i0 < LANES ? ci - i0 : LANES);
    float g[3][3][LANES], t[3][6][LANES], r[6][LANES];
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++)
        for (int l = 0; l < LANES; l++) {
          int64_t i = i0 + (l < n ? l : 0);
          g[a][b][l] = c->flip ? wt[((i * co + o) * 3 + 2 - a) * 3 + 2 - b]
                               : wt[((o * ci + i) * 3 + a) * 3 + b];
        }
    for (int b = 0; b < 3; b++) { /* (G g)^T */
      float *q[6] = {t[b][0], t[b][1], t[b][2], t[b][3], t[b][4], t[b][5]};
#pragma omp simd
      for (int l = 0; l < LANES; l++) {
        float e[6];
        G_ROWS(g[0][b][l], g[1][b][l], g[2][b][l], e);
        for (int k = 0; k < 6; k++) q[k][l] = e[k];
      }
    }
    for (int a = 0; a < 6; a++) { /* row a of G g G^T */
#pragma omp simd
      for (int l = 0; l < LANES; l++) {
        float e[6];
        G_ROWS(t[0][a][l], t[1][a][l], t[2][a][l], e);
        for (int b = 0; b < 6; b++) r[b][l] = e[b];
      }
      for (int b = 0; b < 6; b++) {
        float *dst = u + ((int64_t)(a * 6 + b) * co + o) * ci + i0;
        for (int l = 0; l < n; l++) dst[l] = r[b][l];
      }
    }
  }
}

/* B^T applied to the 6 values d0..d5 of one column or row of a patch. */
#define BT_ROWS(d0, d1, d2, d3, d4, d5, r0, r1, r2, r3, r4, r5) \
  do {                                                          \
    r0 = 4.f * (d0) - 5.f * (d2) + (d4);                        \
    r1 = -4.f * ((d1) + (d2)) + (d3) + (d4);                    \
    r2 = 4.f * ((d1) - (d2)) - (d3) + (d4);                     \
    r3 = 2.f * ((d3) - (d1)) - (d2) + (d4);                     \
    r4 = 2.f * ((d1) - (d3)) - (d2) + (d4);                     \
    r5 = 4.f * (d1) - 5.f * (d3) + (d5);                        \
  } while (0)

/* The transformed patches of `n` (<= LANES) consecutive tiles from tile `t` of one input
 * plane, into v[k * kstride + lane]. */
static void input_group(const dd_wino_conv *c, const float *x, int64_t tiles_w, int64_t t,
                        int n, float *v, int64_t kstride) {
  float d[6][6][LANES], m[6][6][LANES];
  int64_t ty = t / tiles_w, tx = t % tiles_w;
  int64_t y0 = ty * 4 - c->pad_y, x0 = tx * 4 - c->pad_x;
  if (tx + n <= tiles_w) { /* one row of tiles: whole rows of the patch are in or out */
    int inside = n == LANES && x0 >= 0 && x0 + 4 * (LANES - 1) + 6 <= c->iw;
    for (int i = 0; i < 6; i++) {
      int64_t yy = y0 + i;
      if (yy < 0 || yy >= c->ih) {
        memset(d[i], 0, sizeof d[i]);
        continue;
      }
      const float *row = x + yy * c->iw;
      if (inside) {
        for (int j = 0; j < 6; j++)
#pragma omp simd
          for (int l = 0; l < LANES; l++) d[i][j][l] = row[x0 + 4 * l + j];
      } else { /* the left or right border, or fewer than LANES tiles */
        for (int j = 0; j < 6; j++)
#pragma omp simd
          for (int l = 0; l < LANES; l++) {
            int64_t xx = x0 + 4 * l + j;
            int ok = l < n && xx >= 0 && xx < c->iw;
            d[i][j][l] = ok ? row[ok ? xx : 0] : 0.f;
          }
      }
    }
  } else { /* the tiles wrap to the next row: each lane on its own */
    for (int l = 0; l < LANES; l++) {
      int64_t ly = (t + l) / tiles_w * 4 - c->pad_y, lx = (t + l) % tiles_w * 4 - c->pad_x;
      for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
          int64_t yy = ly + i, xx = lx + j;
          d[i][j][l] = l < n && yy >= 0 && yy < c->ih && xx >= 0 && xx < c->iw
                           ? x[yy * c->iw + xx] : 0.f;
        }
    }
  }
  for (int j = 0; j < 6; j++)
#pragma omp simd
    for (int l = 0; l < LANES; l++)
      BT_ROWS(d[0][j][l], d[1][j][l], d[2][j][l], d[3][j][l], d[4][j][l], d[5][j][l],
              m[0][j][l], m[1][j][l], m[2][j][l], m[3][j][l], m[4][j][l], m[5][j][l]);
  for (int i = 0; i < 6; i++)
#pragma omp simd
    for (int l = 0; l < LANES; l++)
      BT_ROWS(m[i][0][l], m[i][1][l], m[i][2][l], m[i][3][l], m[i][4][l], m[i][5][l],
              d[i][0][l], d[i][1][l], d[i][2][l], d[i][3][l], d[i][4][l], d[i][5][l]);
  for (int k = 0; k < 36; k++) {
    float *dst = v + k * kstride;
    const float *src = d[k / 6][k % 6];
    if (n == LANES) {
#pragma omp simd
      for (int l = 0; l < LANES; l++) dst[l] = src[l];
    } else {
      for (int l = 0; l < n; l++) dst[l] = src[l];
    }
  }
}

/* A^T applied to 6 values: 4 results. */
#define AT_ROWS(s0, s1, s2, s3, s4, s5, r0, r1, r2, r3) \
  do {                                                  \
    float a1 = (s1) + (s2), b1 = (s1) - (s2);           \
    float a2 = (s3) + (s4), b2 = (s3) - (s4);           \
    r0 = (s0) + a1 + a2;                                \
    r1 = b1 + 2.f * b2;                                 \
    r2 = a1 + 4.f * a2;                                 \
    r3 = b1 + 8.f * b2 + (s5);                          \
  } while (0)

/* Output tiles of `n` consecutive tiles from tile `t` of output plane y (bias b0 added, or
 * accumulated), from the products p[k * kstride + lane]. */
static void output_group(const dd_wino_conv *c, const float *p, int64_t kstride,
                         int64_t tiles_w, int64_t t, int n, float b0, int accumulate,
                         float *y) {
  float s[6][6][LANES], q[4][6][LANES], o[4][4][LANES];
  for (int k = 0; k < 36; k++) {
    const float *src = p + k * kstride;
    if (n == LANES) {
#pragma omp simd
      for (int l = 0; l < LANES; l++) s[k / 6][k % 6][l] = src[l];
    } else {
      for (int l = 0; l < LANES; l++) s[k / 6][k % 6][l] = l < n ? src[l] : 0.f;
    }
  }
  for (int j = 0; j < 6; j++)
#pragma omp simd
    for (int l = 0; l < LANES; l++)
      AT_ROWS(s[0][j][l], s[1][j][l], s[2][j][l], s[3][j][l], s[4][j][l], s[5][j][l],
              q[0][j][l], q[1][j][l], q[2][j][l], q[3][j][l]);
  for (int i = 0; i < 4; i++)
#pragma omp simd
    for (int l = 0; l < LANES; l++)
      AT_ROWS(q[i][0][l], q[i][1][l], q[i][2][l], q[i][3][l], q[i][4][l], q[i][5][l],
              o[i][0][l], o[i][1][l], o[i][2][l], o[i][3][l]);
  int64_t ty = t / tiles_w, tx = t % tiles_w;
  int64_t oy = ty * 4, ox = tx * 4;
  if (n == LANES && tx + LANES <= tiles_w && oy + 4 <= c->oh && ox + 4 * LANES <= c->ow) {
    for (int i = 0; i < 4; i++) {
      float *row = y + (oy + i) * c->ow + ox;
      if (accumulate) {
        for (int l = 0; l < LANES; l++)
          for (int j = 0; j < 4; j++) row[4 * l + j] += o[i][j][l];
      } else {
        for (int l = 0; l < LANES; l++)
          for (int j = 0; j < 4; j++) row[4 * l + j] = o[i][j][l] + b0;
      }
    }
    return;
  }
  for (int l = 0; l < n; l++) {
    int64_t ly = (t + l) / tiles_w * 4, lx = (t + l) % tiles_w * 4;
    for (int i = 0; i < 4 && ly + i < c->oh; i++)
      for (int j = 0; j < 4 && lx + j < c->ow; j++) {
        float *e = y + (ly + i) * c->ow + lx + j;
        *e = accumulate ? *e + o[i][j][l] : o[i][j][l] + b0;
      }
  }
}

void dd_wino_run(const dd_wino_conv *c, const float *x, const float *wt, const float *bias,
                 float *y, int accumulate, float *work) {
  int64_t ci = c->ci, co = c->co;
  int64_t tiles_w = (c->ow + 3) / 4, tiles = ((c->oh + 3) / 4) * tiles_w;
  int64_t tb = chunk_tiles(c);
  float *u = work;
  float *v = (float *)(((uintptr_t)(u + 36 * co * ci) + 63) & ~(uintptr_t)63);
  float *p = v + 36 * ci * tb;
  /* One parallel region for the whole convolution, three barriers per chunk: a team entered
   * hundreds of times per layer spends its time in the runtime when the machine is busy. */
#pragma omp parallel if (co * ci * tiles > 4 * DD_PAR_MIN)
  {
    transform_weights(c, wt, u);
    for (int64_t t0 = 0; t0 < tiles; t0 += tb) {
      int64_t nt = tiles - t0 < tb ? tiles - t0 : tb;
      int64_t groups = (nt + LANES - 1) / LANES, blocks = (nt + BLOCK - 1) / BLOCK;
#pragma omp for schedule(static)
      for (int64_t job = 0; job < ci * groups; job++) {
        int64_t i = job / groups, g = job % groups;
        int n = (int)(nt - g * LANES < LANES ? nt - g * LANES : LANES);
        input_group(c, x + i * c->ih * c->iw, tiles_w, t0 + g * LANES, n,
                    v + i * tb + g * LANES, ci * tb);
      }
      /* k-major: each thread runs one U_k over many column blocks while it is in cache */
#pragma omp for schedule(static)
      for (int64_t job = 0; job < 36 * blocks; job++) {
        int64_t k = job / blocks, j = job % blocks * BLOCK;
        int64_t w = nt - j < BLOCK ? nt - j : BLOCK;
        dd_sgemm(co, w, ci, u + k * co * ci, ci, 1, v + k * ci * tb + j, tb,
                 p + k * co * tb + j, tb, 0, NULL, 0);
      }
#pragma omp for schedule(static)
      for (int64_t job = 0; job < co * groups; job++) {
        int64_t o = job / groups, g = job % groups;
        int n = (int)(nt - g * LANES < LANES ? nt - g * LANES : LANES);
        output_group(c, p + o * tb + g * LANES, co * tb, tiles_w, t0 + g * LANES, n,
                     bias && !accumulate ? bias[o] : 0.f, accumulate, y + o * c->oh * c->ow);
      }
    }
  }
}
