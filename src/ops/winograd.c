/* Winograd F(4x4, 3x3) convolution (see winograd.h).
 *
 * With the interpolation points 0, 1, -1, 2, -2 and infinity, one 4x4 output tile is
 *   Y = A^T [ (G w G^T) .* (B^T d B) ] A
 * for a 6x6 input patch d and a 3x3 kernel w.  The 36 element-wise products, summed over the
 * input channels, are 36 independent matrix products U_k (co x ci) * V_k (ci x tiles): that is
 * where the time goes, and sgemm does it.  The transforms work on 16 tiles side by side (one
 * per vector lane): on the AVX-512 path (ops/cpu.h) as whole rows and masks (borders
 * included), on the generic path in plain C that the compiler vectorizes, with a per-tile
 * path for the borders.
 */
#include "ops/winograd.h"

#include <stdint.h>
#include <string.h>

#include "ops/common.h"
#include "ops/bf16.h"
#include "ops/cpu.h"
#include "ops/sgemm.h"

#ifdef DD_AVX512_KERNELS
#include <immintrin.h>
#endif

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

/* The three transforms, written without temporaries so that they serve floats and vectors
 * alike (and round the same way in both). */

/* G applied to the 3 values g0..g2 of one column or row of a kernel: 6 results. */
#define G_ROWS(g0, g1, g2, r)                                          \
  do {                                                                 \
    r[0] = 0.25f * (g0);                                               \
    r[1] = -(((g0) + (g2)) + (g1)) * (1.f / 6);                        \
    r[2] = -(((g0) + (g2)) - (g1)) * (1.f / 6);                        \
    r[3] = (g0) * (1.f / 24) + (g1) * (1.f / 12) + (g2) * (1.f / 6); \
    r[4] = (g0) * (1.f / 24) - (g1) * (1.f / 12) + (g2) * (1.f / 6); \
    r[5] = (g2);                                                       \
  } while (0)

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

/* A^T applied to 6 values: 4 results. */
#define AT_ROWS(s0, s1, s2, s3, s4, s5, r0, r1, r2, r3)         \
  do {                                                          \
    r0 = ((s0) + ((s1) + (s2))) + ((s3) + (s4));                \
    r1 = ((s1) - (s2)) + 2.f * ((s3) - (s4));                   \
    r2 = ((s1) + (s2)) + 4.f * ((s3) + (s4));                   \
    r3 = (((s1) - (s2)) + 8.f * ((s3) - (s4))) + (s5);          \
  } while (0)

#ifdef DD_AVX512_KERNELS

/* The AVX-512 transforms.  A group is 16 consecutive tiles, one per lane.  Its patches are
 * read as whole rows (5 vectors cover the 66 columns of 16 overlapping 6-wide patches),
 * transformed down the columns while still contiguous, then split by a few permutes into the
 * 6 vectors "column j of every patch"; the output side does the reverse and writes whole rows
 * of the output with masked stores.  Padding and image borders are load and store masks, so
 * every group takes the same path.  A group that wraps onto the next row of tiles is done
 * once per row of tiles it touches, each time as if the row started `s` lanes earlier, and
 * the lanes merged. */

typedef __m512 vf;

/* Lanes [lo, hi) of 16. */
static inline DD_TARGET_AVX512 __mmask16 lane_range(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : lo > LANES ? LANES : lo;
  hi = hi < 0 ? 0 : hi > LANES ? LANES : hi;
  return hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

DD_TARGET_AVX512 static void transform_weights_avx512(const dd_wino_conv *c, const float *wt,
                                                      float *u) {
  int64_t co = c->co, ci = c->ci, groups = (ci + LANES - 1) / LANES;
  /* lane l reads input channel i0 + l: 9 floats further on, or 9 co for the flipped kernel */
  int64_t step = c->flip ? 9 * co : 9;
  int gather = step <= INT32_MAX / LANES;
  __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                     13, 14, 15),
                                   _mm512_set1_epi32(gather ? (int)step : 0));
#pragma omp for schedule(static)
  for (int64_t job = 0; job < co * groups; job++) {
    int64_t o = job / groups, i0 = job % groups * LANES;
    __mmask16 m = lane_range(0, ci - i0);
    const float *w0 = c->flip ? wt + (i0 * co + o) * 9 : wt + (o * ci + i0) * 9;
    vf g[3][3], t[3][6];
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++) {
        const float *src = w0 + (c->flip ? 8 - 3 * a - b : 3 * a + b);
        if (gather) {
          g[a][b] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src, 4);
        } else {
          float lane[LANES] = {0};
          for (int l = 0; l < LANES && i0 + l < ci; l++) lane[l] = src[l * step];
          g[a][b] = _mm512_loadu_ps(lane);
        }
      }
    for (int b = 0; b < 3; b++) G_ROWS(g[0][b], g[1][b], g[2][b], t[b]); /* (G g)^T */
    for (int a = 0; a < 6; a++) { /* row a of G g G^T */
      vf r[6];
      G_ROWS(t[0][a], t[1][a], t[2][a], r);
      for (int b = 0; b < 6; b++)
        _mm512_mask_storeu_ps(u + ((int64_t)(a * 6 + b) * co + o) * ci + i0, m, r[b]);
    }
  }
}

/* B^T d down the columns of the 6 x 66 block of plane x at (y0, x0), zero outside the plane,
 * split by patch column: e[r][j] lane l = (B^T d)[r][x0 + 4 l + j], the patch of lane l
 * starting at column x0 + 4 l. */
static inline DD_TARGET_AVX512 void patch_columns(const dd_wino_conv *c, const float *x, int64_t y0,
                                                  int64_t x0, vf e[6][6]) {
  vf t[6][5];
  for (int v = 0; v < 5; v++) {
    int64_t xv = x0 + 16 * v;
    __mmask16 m = lane_range(-xv, c->iw - xv);
    if (v == 4) m &= 3; /* columns 64 and 65 */
    vf d[6];
    for (int i = 0; i < 6; i++) {
      int64_t yy = y0 + i;
      /* masked lanes are not read, even outside the plane */
      d[i] = m && yy >= 0 && yy < c->ih ? _mm512_maskz_loadu_ps(m, x + yy * c->iw + xv)
                                         : _mm512_setzero_ps();
    }
    BT_ROWS(d[0], d[1], d[2], d[3], d[4], d[5], t[0][v], t[1][v], t[2][v], t[3][v], t[4][v],
            t[5][v]);
  }
  /* columns 4 m + j of two vectors: j = 0 (lanes 0-7) and 1 (8-15), or 2 and 3 */
  const __m512i even = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i odd = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  /* the next lane's column j - 4, and column 64 or 65 for the last lane */
  const __m512i next0 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
  const __m512i next1 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17);
  for (int r = 0; r < 6; r++) {
    vf a01 = _mm512_permutex2var_ps(t[r][0], even, t[r][1]);
    vf a23 = _mm512_permutex2var_ps(t[r][0], odd, t[r][1]);
    vf b01 = _mm512_permutex2var_ps(t[r][2], even, t[r][3]);
    vf b23 = _mm512_permutex2var_ps(t[r][2], odd, t[r][3]);
    e[r][0] = _mm512_shuffle_f32x4(a01, b01, 0x44);
    e[r][1] = _mm512_shuffle_f32x4(a01, b01, 0xee);
    e[r][2] = _mm512_shuffle_f32x4(a23, b23, 0x44);
    e[r][3] = _mm512_shuffle_f32x4(a23, b23, 0xee);
    e[r][4] = _mm512_permutex2var_ps(e[r][0], next0, t[r][4]);
    e[r][5] = _mm512_permutex2var_ps(e[r][1], next1, t[r][4]);
  }
}

/* The transformed patches of `n` (<= LANES) consecutive tiles from tile `t` of one input
 * plane, into v[k * kstride + lane] (all 16 lanes are written). */
DD_TARGET_AVX512 static void input_group_avx512(const dd_wino_conv *c, const float *x,
                                                int64_t tiles_w, int64_t t, int n, float *v,
                                                int64_t kstride) {
  vf e[6][6];
  int64_t ty = t / tiles_w, tx = t % tiles_w;
  int len = tiles_w - tx < n ? (int)(tiles_w - tx) : n;
  patch_columns(c, x, ty * 4 - c->pad_y, tx * 4 - c->pad_x, e);
  for (int s = len; s < n; s += len) { /* lanes s.. are on the next row of tiles */
    vf f[6][6];
    ty++;
    len = tiles_w < n - s ? (int)tiles_w : n - s;
    patch_columns(c, x, ty * 4 - c->pad_y, -4 * (int64_t)s - c->pad_x, f);
    __mmask16 m = lane_range(s, s + len);
    for (int r = 0; r < 6; r++)
      for (int j = 0; j < 6; j++) e[r][j] = _mm512_mask_blend_ps(m, e[r][j], f[r][j]);
  }
  for (int r = 0; r < 6; r++) {
    vf o[6];
    BT_ROWS(e[r][0], e[r][1], e[r][2], e[r][3], e[r][4], e[r][5], o[0], o[1], o[2], o[3], o[4],
            o[5]);
    for (int j = 0; j < 6; j++) _mm512_storeu_ps(v + (r * 6 + j) * kstride, o[j]);
  }
}

/* Output tiles of `n` consecutive tiles from tile `t` of output plane y (bias b0 added, or
 * accumulated, then with `relu` max(0, .)), from the products p[k * kstride + lane]. */
DD_TARGET_AVX512 static void output_group_avx512(const dd_wino_conv *c, const float *p,
                                                 int64_t kstride, int64_t tiles_w, int64_t t, int n,
                                                 float b0, int accumulate, int relu, float *y) {
  vf q[4][6], w[4][4];
  for (int j = 0; j < 6; j++) {
    vf s[6];
    for (int i = 0; i < 6; i++) s[i] = _mm512_loadu_ps(p + (i * 6 + j) * kstride);
    AT_ROWS(s[0], s[1], s[2], s[3], s[4], s[5], q[0][j], q[1][j], q[2][j], q[3][j]);
  }
  /* lane 4 m + j of w[i][v]: column j of the tile 4 v + m */
  const __m512i lo = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
  const __m512i hi = _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
  for (int i = 0; i < 4; i++) {
    vf o[4];
    AT_ROWS(q[i][0], q[i][1], q[i][2], q[i][3], q[i][4], q[i][5], o[0], o[1], o[2], o[3]);
    vf a01 = _mm512_shuffle_f32x4(o[0], o[1], 0x44), b01 = _mm512_shuffle_f32x4(o[0], o[1], 0xee);
    vf a23 = _mm512_shuffle_f32x4(o[2], o[3], 0x44), b23 = _mm512_shuffle_f32x4(o[2], o[3], 0xee);
    w[i][0] = _mm512_permutex2var_ps(a01, lo, a23);
    w[i][1] = _mm512_permutex2var_ps(a01, hi, a23);
    w[i][2] = _mm512_permutex2var_ps(b01, lo, b23);
    w[i][3] = _mm512_permutex2var_ps(b01, hi, b23);
  }
  int64_t ty = t / tiles_w, tx = t % tiles_w;
  int len;
  for (int s = 0; s < n; s += len, ty++, tx = 0) { /* lanes s..s+len on one row of tiles */
    len = tiles_w - tx < n - s ? (int)(tiles_w - tx) : n - s;
    int64_t ox = (tx - s) * 4; /* where lane 0 would be */
    for (int v = 0; v < 4; v++) {
      int64_t xv = ox + 16 * v;
      __mmask16 m = lane_range(4 * s - 16 * v, 4 * (s + len) - 16 * v) &
                    lane_range(-xv, c->ow - xv);
      if (!m) continue;
      for (int i = 0; i < 4 && ty * 4 + i < c->oh; i++) {
        float *dst = y + (ty * 4 + i) * c->ow + xv; /* masked lanes are not touched */
        vf r = _mm512_add_ps(accumulate ? _mm512_maskz_loadu_ps(m, dst) : w[i][v],
                             accumulate ? w[i][v] : _mm512_set1_ps(b0));
        if (relu) r = _mm512_max_ps(r, _mm512_setzero_ps()); /* NaN and -0 give +0, as Relu */
        _mm512_mask_storeu_ps(dst, m, r);
      }
    }
  }
}

#endif

/* the portable transforms, vectorized by the compiler: the generic path */

/* U[k][o][i] = (G w(o, i) G^T)[k]: 36 rows of co x ci, one per k.  16 input channels at a
 * time, one per lane, so that the 36 results are stored as 16 contiguous floats each.  Shares
 * the work among the threads of the enclosing parallel region. */
static void transform_weights_generic(const dd_wino_conv *c, const float *wt, float *u) {
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

/* The transformed patches of `n` (<= LANES) consecutive tiles from tile `t` of one input
 * plane, into v[k * kstride + lane]. */
static void input_group_generic(const dd_wino_conv *c, const float *x, int64_t tiles_w, int64_t t,
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

/* Output tiles of `n` consecutive tiles from tile `t` of output plane y (bias b0 added, or
 * accumulated, then with `relu` max(0, .)), from the products p[k * kstride + lane]. */
static void output_group_generic(const dd_wino_conv *c, const float *p, int64_t kstride,
                         int64_t tiles_w, int64_t t, int n, float b0, int accumulate, int relu,
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
      for (int e = 0; relu && e < 4 * LANES; e++) row[e] = row[e] > 0.f ? row[e] : 0.f;
    }
    return;
  }
  for (int l = 0; l < n; l++) {
    int64_t ly = (t + l) / tiles_w * 4, lx = (t + l) % tiles_w * 4;
    for (int i = 0; i < 4 && ly + i < c->oh; i++)
      for (int j = 0; j < 4 && lx + j < c->ow; j++) {
        float *e = y + (ly + i) * c->ow + lx + j;
        *e = accumulate ? *e + o[i][j][l] : o[i][j][l] + b0;
        if (relu) *e = *e > 0.f ? *e : 0.f;
      }
  }
}


void dd_wino_run(const dd_wino_conv *c, const float *x, const float *wt, const float *bias,
                 float *y, int accumulate, float *work) {
  int64_t ci = c->ci, co = c->co;
  int acc = accumulate & DD_SGEMM_ACCUMULATE, relu = (accumulate & DD_SGEMM_RELU) != 0;
  int64_t tiles_w = (c->ow + 3) / 4, tiles = ((c->oh + 3) / 4) * tiles_w;
  int64_t tb = chunk_tiles(c);
  float *u = work;
  float *v = (float *)(((uintptr_t)(u + 36 * co * ci) + 63) & ~(uintptr_t)63);
  float *p = v + 36 * ci * tb;
  /* One parallel region for the whole convolution, three barriers per chunk: a team entered
   * hundreds of times per layer spends its time in the runtime when the machine is busy. */
  const int avx512 = dd_kernels_avx512();
  (void)avx512; /* (builds without the AVX-512 kernels) */
#pragma omp parallel if (co * ci * tiles > 4 * DD_PAR_MIN)
  {
#ifdef DD_AVX512_KERNELS
    if (avx512)
      transform_weights_avx512(c, wt, u);
    else
#endif
      transform_weights_generic(c, wt, u);
    for (int64_t t0 = 0; t0 < tiles; t0 += tb) {
      int64_t nt = tiles - t0 < tb ? tiles - t0 : tb;
      int64_t groups = (nt + LANES - 1) / LANES, blocks = (nt + BLOCK - 1) / BLOCK;
#pragma omp for schedule(static)
      for (int64_t job = 0; job < ci * groups; job++) {
        int64_t i = job / groups, g = job % groups;
        int n = (int)(nt - g * LANES < LANES ? nt - g * LANES : LANES);
#ifdef DD_AVX512_KERNELS
        if (avx512)
          input_group_avx512(c, x + i * c->ih * c->iw, tiles_w, t0 + g * LANES, n,
                             v + i * tb + g * LANES, ci * tb);
        else
#endif
          input_group_generic(c, x + i * c->ih * c->iw, tiles_w, t0 + g * LANES, n,
                              v + i * tb + g * LANES, ci * tb);
      }
      /* k-major: each thread runs one U_k over many column blocks while it is in cache */
#pragma omp for schedule(static)
      for (int64_t job = 0; job < 36 * blocks; job++) {
        int64_t k = job / blocks, j = job % blocks * BLOCK;
        int64_t w = nt - j < BLOCK ? nt - j : BLOCK;
        (c->bf16 ? dd_bgemm : dd_sgemm)(co, w, ci, u + k * co * ci, ci, 1, v + k * ci * tb + j,
                                         tb, p + k * co * tb + j, tb, 0, NULL, 0);
      }
#pragma omp for schedule(static)
      for (int64_t job = 0; job < co * groups; job++) {
        int64_t o = job / groups, g = job % groups;
        int n = (int)(nt - g * LANES < LANES ? nt - g * LANES : LANES);
#ifdef DD_AVX512_KERNELS
        if (avx512)
          output_group_avx512(c, p + o * tb + g * LANES, co * tb, tiles_w, t0 + g * LANES, n,
                              bias && !acc ? bias[o] : 0.f, acc, relu, y + o * c->oh * c->ow);
        else
#endif
          output_group_generic(c, p + o * tb + g * LANES, co * tb, tiles_w, t0 + g * LANES, n,
                               bias && !acc ? bias[o] : 0.f, acc, relu, y + o * c->oh * c->ow);
      }
    }
  }
}
