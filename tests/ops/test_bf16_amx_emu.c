#define _GNU_SOURCE /* syscall, as ops/bf16.c */
/* The AMX kernel of ops/bf16.c on a machine without AMX: this file compiles ops/bf16.c again
 * with the tile instructions (ldtilecfg, tileloadd, tilestored, tilezero, tdpbf16ps) emulated
 * in C and its public names renamed, so the kernel's packing, tile addressing, edges, starting
 * values, Relu and threading are checked here, against the same bf16 bound as the real
 * kernels (tests/ops/test_bf16.c).  What it cannot check is the hardware itself: the tile
 * configuration's layout and the instructions' own behaviour, which only an AMX machine
 * tests (bf16/amx_*, skipped elsewhere). */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps

static __thread uint32_t emu_tile[8][16][16]; /* 16 rows of 64 bytes */
static __thread int emu_configured;

static void emu_loadd(int t, const void *base, long stride) {
  if (!emu_configured) abort(); /* a tile instruction before ldtilecfg faults */
  for (int r = 0; r < 16; r++) memcpy(emu_tile[t][r], (const char *)base + r * stride, 64);
}
static void emu_stored(int t, void *base, long stride) {
  if (!emu_configured) abort();
  for (int r = 0; r < 16; r++) memcpy((char *)base + r * stride, emu_tile[t][r], 64);
}
static float emu_bf16(uint32_t h) {
  uint32_t u = h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
/* C[m][n] += sum_p A.bf16[m][2p] B.bf16[p][2n] + A.bf16[m][2p+1] B.bf16[p][2n+1] */
static void emu_dpbf16ps(int c, int a, int b) {
  if (!emu_configured) abort();
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float acc;
      memcpy(&acc, &emu_tile[c][m][n], sizeof acc);
      for (int p = 0; p < 16; p++) {
        uint32_t x = emu_tile[a][m][p], y = emu_tile[b][p][n];
        acc += emu_bf16(x & 0xffffu) * emu_bf16(y & 0xffffu) +
               emu_bf16(x >> 16) * emu_bf16(y >> 16);
      }
      memcpy(&emu_tile[c][m][n], &acc, sizeof acc);
    }
}

#define _tile_loadconfig(cfg) ((void)(cfg), emu_configured = 1)
#define _tile_release() (emu_configured = 0)
#define _tile_loadd(t, base, stride) emu_loadd(t, base, stride)
#define _tile_stored(t, base, stride) emu_stored(t, base, stride)
#define _tile_zero(t) memset(emu_tile[t], 0, sizeof emu_tile[t])
#define _tile_dpbf16ps(c, a, b) emu_dpbf16ps(c, a, b)

#define DD_BF16_EMULATE_AMX 1
#define dd_bf16_has emu_bf16_has
#define dd_bf16_kernel emu_bf16_kernel
#define dd_bf16_pays emu_bf16_pays
#define dd_bgemm emu_bgemm
#define dd_bgemm_on emu_bgemm_on
#define dd_bf16_round emu_bf16_round
#include "ops/bf16.c"

#include <criterion/criterion.h>
#include <math.h>

#include "helper_ops.h"

Test(bf16_amx_emu, kernel_within_bf16_bound_and_passes_its_self_check) {
  if (!emu_bf16_has(DD_BF16_AVX512))
    cr_skip_test("this CPU lacks AVX512-BF16, which the AMX kernel's packing uses");
  /* the self-check (amx_check) ran the emulated kernel against AVX512-BF16, bit for bit */
  cr_assert_eq(emu_bf16_kernel(), DD_BF16_AMX, "the emulated AMX kernel failed its self-check");
  static const int64_t shapes[][3] = {{1, 1, 1},    {7, 33, 3},  {16, 32, 32}, {17, 31, 17},
                                      {45, 70, 101}, {130, 70, 257}, {33, 100, 600}, {260, 33, 9}};
  uint64_t st = 29;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int mode = 0; mode < 12; mode++) {
      /* A row-major, transposed, or with both strides > 1; accumulate; bias and Relu */
      int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      int layout = mode % 3, acc = (mode / 3) & 1, br = (mode / 6) & 1;
      int64_t ars = layout == 0 ? k + 1 : layout == 1 ? 1 : 2 * (k + 1);
      int64_t acs = layout == 0 ? 1 : layout == 1 ? m + 2 : 2;
      int64_t na = (m + 2) * (k + 1) * 2 + 8, ldb = n + 3, ldc = n + 5;
      float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)(k * ldb) * sizeof *b);
      float *c = malloc((size_t)(m * ldc) * sizeof *c);
      float *c0 = malloc((size_t)(m * ldc) * sizeof *c0);
      float *bias = malloc((size_t)m * sizeof *bias);
      for (int64_t i = 0; i < na; i++) a[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < k * ldb; i++) b[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m * ldc; i++) c0[i] = c[i] = th_rand_uniform(&st, -1, 1);
      for (int64_t i = 0; i < m; i++) bias[i] = th_rand_uniform(&st, -1, 1);
      int flags = (acc ? DD_SGEMM_ACCUMULATE : 0) | (br ? DD_SGEMM_RELU : 0);
      cr_assert_eq(emu_bgemm_on(DD_BF16_AMX, m, n, k, a, ars, acs, b, ldb, c, ldc, flags,
                                br ? bias : NULL, (int)(si & 1)),
                   0);
      /* the bound of tests/ops/test_bf16.c: (2u + u^2 + gamma_(k+1)) sum |terms| */
      double g = (double)(k + 1) * 0x1p-24, f = 2. / 256 + 1. / 65536 + g / (1 - g);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
          double r = acc ? c0[i * ldc + j] : br ? bias[i] : 0, mag = fabs(r);
          for (int64_t q = 0; q < k; q++) {
            double p = (double)a[i * ars + q * acs] * b[q * ldb + j];
            r += p;
            mag += fabs(p);
          }
          if (br) r = r > 0 ? r : 0;
          double e = fabs(c[i * ldc + j] - r);
          cr_assert(e <= f * mag, "%lldx%lldx%lld mode %d: C[%lld][%lld] = %.9g, exact %.9g",
                    (long long)m, (long long)n, (long long)k, mode, (long long)i, (long long)j,
                    c[i * ldc + j], r);
        }
      free(a), free(b), free(c), free(c0), free(bias);
    }
}
