/* dd_bgemm (see bf16.h).  The AVX512-BF16 kernel is dd_sgemm's (ops/sgemm.c) in bf16: an
 * 8 x 32 register tile (16 accumulators of 16 floats), but one vdpbf16ps takes a pair of k
 * at once, so A and B are packed as pairs of bf16 in one 32-bit lane:
 *   B: per block of 32 columns, for each pair p, the 32 columns' (B[2p][j], B[2p+1][j]);
 *   A: per tile of 8 rows, for each pair p, the 8 rows' (A(i, 2p), A(i, 2p+1)), broadcast.
 * Both packs live on the stack (64 KiB each: KC = 256 values of k, 4 blocks of columns,
 * 128 rows of A), are rounded with vcvtne2ps2bf16 (nearest even) where the source is
 * contiguous, and A is packed again for each panel of 128 columns (and for each call: the
 * convolutions call with blocks of 32 columns), since there is no scratch to keep it in; the
 * cost of that was not measured apart from the whole (bench/README.md).
 *
 * The functions that use bf16 instructions carry their target attribute, so they build on
 * any x86-64 compiler setting and run only when cpuid says the CPU has them. */
#define _GNU_SOURCE /* syscall */
#include "ops/bf16.h"

#include <omp.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "ops/common.h"
#include "ops/sgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define DD_BF16_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

float dd_bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    u |= 0x00400000u; /* a quiet NaN, as the instruction makes */
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
  }
  u &= 0xffff0000u;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* ---- what the CPU has ---- */

static int has_avx512bf16, has_amx;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

#ifdef DD_BF16_X86
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static void detect(void) {
  __builtin_cpu_init();
  has_avx512bf16 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512bf16");
  unsigned a, b, c, d;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 22 & 1) /* AMX-BF16 */ &&
      (d >> 24 & 1) /* AMX-TILE */)
    /* Linux hands out the 8 KiB of tile state only to a process that asks for it. */
    has_amx = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#ifdef DD_BF16_EMULATE_AMX
  has_amx = has_avx512bf16; /* tests/ops/test_bf16_amx_emu.c: the tiles are emulated */
#endif
}
#else
static void detect(void) {}
#endif

int dd_bf16_has(dd_bf16_isa isa) {
  pthread_once(&detect_once, detect);
  switch (isa) {
    case DD_BF16_NONE: return 1;
    case DD_BF16_AVX512: return has_avx512bf16;
    case DD_BF16_AMX: return has_amx && has_avx512bf16; /* its packing is AVX-512 */
  }
  return 0;
}

/* The AMX kernel was written where no CPU had AMX: it is chosen only once it gives the
 * AVX512-BF16 kernel's bits on products of small integers (exact in bf16, and summed exactly
 * in float32 in any order), A as given and transposed, across tiles and their edges. */
static int amx_ok;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_check(void) {
  enum { M = 45, N = 70, K = 101 };
  static float a[M * K], at[K * M], b[K * N], c1[M * N], c2[M * N], c3[M * N];
  for (int i = 0; i < M * K; i++) a[i] = (float)(i * 7 % 23) - 11.f;
  for (int i = 0; i < M; i++)
    for (int q = 0; q < K; q++) at[q * M + i] = a[i * K + q];
  for (int i = 0; i < K * N; i++) b[i] = (float)(i * 5 % 19) - 9.f;
  if (dd_bgemm_on(DD_BF16_AVX512, M, N, K, a, K, 1, b, N, c1, N, 0, NULL, 0) ||
      dd_bgemm_on(DD_BF16_AMX, M, N, K, a, K, 1, b, N, c2, N, 0, NULL, 0) ||
      dd_bgemm_on(DD_BF16_AMX, M, N, K, at, 1, M, b, N, c3, N, 0, NULL, 0))
    return;
  amx_ok = !memcmp(c1, c2, sizeof c1) && !memcmp(c1, c3, sizeof c1);
}

dd_bf16_isa dd_bf16_kernel(void) {
  if (dd_bf16_has(DD_BF16_AMX)) {
    pthread_once(&amx_once, amx_check);
    if (amx_ok) return DD_BF16_AMX;
  }
  return dd_bf16_has(DD_BF16_AVX512) ? DD_BF16_AVX512 : DD_BF16_NONE;
}

/* ---- does it pay? ----
 * Decided from the CPU alone, never by timing, so that a seed gives the same picture
 * whatever the machine's load: on the AVX512-BF16 kernel, vdpbf16ps runs at 0.44-0.52x the
 * multiply-add rate of fp32 FMA on Intel (Emerald Rapids; bench/README.md), and oneDNN's
 * bf16 convolutions are about 2x slower than its fp32 ones there too; AMX tiles are what
 * make bf16 faster. */

int dd_bf16_pays(void) { return dd_bf16_kernel() == DD_BF16_AMX; }

/* ---- the AVX512-BF16 kernel ---- */
#ifdef DD_BF16_X86

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

#define MR 8
#define NR 32
#define KC 256 /* even */
#define KP (KC / 2)
#define MC 128 /* a multiple of MR and of 16 */
#define PANEL 4

enum { INIT_ZERO, INIT_BIAS, INIT_LOAD, INIT_RELU = 4 };

/* rows x w of C (masks m0, m1) from the packed A tile (kp x MR pairs) and B block (kp x NR
 * pairs). */
static inline __attribute__((always_inline)) BF16_TARGET void
tile(const int rows, int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc,
     int init, const float *bias, __mmask16 m0, __mmask16 m1) {
  __m512 c0[MR], c1[MR];
  int relu = init & INIT_RELU;
  init &= ~INIT_RELU;
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++) {
    if (init == INIT_LOAD) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    } else {
      c0[r] = c1[r] = init == INIT_BIAS ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
    }
  }
  for (int64_t p = 0; p < kp; p++) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * NR);
    __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * NR + 16);
    const uint32_t *ap = a + p * MR;
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
      __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[r]);
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
    }
  }
  if (relu) {
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
      c0[r] = _mm512_max_ps(c0[r], zero);
      c1[r] = _mm512_max_ps(c1[r], zero);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

static inline void block_masks(int64_t w, __mmask16 *m0, __mmask16 *m1) {
  *m0 = (__mmask16)(w >= 16 ? 0xffff : (1u << w) - 1);
  *m1 = (__mmask16)(w >= 32 ? 0xffff : w > 16 ? (1u << (w - 16)) - 1 : 0);
}

static inline uint16_t to_bf16(float x) {
  float r = dd_bf16_round(x);
  uint32_t u;
  memcpy(&u, &r, sizeof u);
  return (uint16_t)(u >> 16);
}

/* Lanes 0..15 of lo and hi as the pairs (lo[t], hi[t]): 16 x 32 bits. */
static inline BF16_TARGET __m512i pairs(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                       24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                       16, 0);
  return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* Rows [0, mc) and k [0, kc) of A (a at its first element) as MR-row tiles of kp pairs; rows
 * past mc and k past kc are 0. */
static BF16_TARGET void pack_a(int64_t mc, int64_t kc, const float *a, int64_t ars, int64_t acs,
                               uint32_t *dst) {
  int64_t kp = (kc + 1) / 2, tiles = (mc + MR - 1) / MR;
  memset(dst, 0, (size_t)(tiles * kp * MR) * sizeof *dst);
  if (ars == 1 && acs != 1) { /* A's columns are contiguous: 16 rows of a pair at a time */
    for (int64_t p = 0; p < kp; p++) {
      const float *k0 = a + 2 * p * acs, *k1 = k0 + acs;
      int odd = 2 * p + 1 < kc;
      for (int64_t i = 0; i < mc; i += 16) {
        __mmask16 m = (__mmask16)(mc - i >= 16 ? 0xffff : (1u << (mc - i)) - 1);
        __m512 lo = _mm512_maskz_loadu_ps(m, k0 + i);
        __m512 hi = odd ? _mm512_maskz_loadu_ps(m, k1 + i) : _mm512_setzero_ps();
        __m512i v = pairs(lo, hi);
        _mm256_storeu_si256((__m256i *)(dst + (i / MR * kp + p) * MR), _mm512_castsi512_si256(v));
        if (i + MR < mc)
          _mm256_storeu_si256((__m256i *)(dst + ((i / MR + 1) * kp + p) * MR),
                              _mm512_extracti64x4_epi64(v, 1));
      }
    }
    return;
  }
  if (acs == 1) { /* A's rows are contiguous: 32 values of k are 16 pairs in order */
    for (int64_t i = 0; i < mc; i++) {
      const float *row = a + i * ars;
      uint32_t *d = dst + i / MR * kp * MR + i % MR;
      for (int64_t q = 0; q < kc; q += 32) {
        __mmask16 m0, m1;
        block_masks(kc - q, &m0, &m1);
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, row + q + 16),
                                                 _mm512_maskz_loadu_ps(m0, row + q));
        uint32_t t[16];
        _mm512_storeu_si512(t, v);
        int64_t np = (kc - q + 1) / 2 < 16 ? (kc - q + 1) / 2 : 16;
        for (int64_t s = 0; s < np; s++) d[(q / 2 + s) * MR] = t[s];
      }
    }
    return;
  }
  for (int64_t i = 0; i < mc; i++)
    for (int64_t q = 0; q < kc; q++)
      ((uint16_t *)(dst + (i / MR * kp + q / 2) * MR + i % MR))[q & 1] =
          to_bf16(a[i * ars + q * acs]);
}

/* Rows [0, kc) and columns [0, w) of B (w <= PANEL * NR) as NR-column blocks of kp pairs,
 * block q at dst + q * kstride * NR. */
static BF16_TARGET void pack_b(int64_t kc, int64_t w, const float *b, int64_t ldb,
                               int64_t kstride, uint32_t *dst) {
  int64_t kp = (kc + 1) / 2, nb = (w + NR - 1) / NR;
  for (int64_t jb = 0; jb < nb; jb++) /* rows kp..kstride (AMX's whole tiles of k) are 0 */
    memset(dst + (jb * kstride + kp) * NR, 0, (size_t)((kstride - kp) * NR) * sizeof *dst);
  for (int64_t p = 0; p < kp; p++) {
    const float *r0 = b + 2 * p * ldb, *r1 = 2 * p + 1 < kc ? r0 + ldb : NULL;
    for (int64_t jb = 0; jb < nb; jb++) {
      __mmask16 m0, m1;
      block_masks(w - jb * NR, &m0, &m1);
      const float *s0 = r0 + jb * NR;
      __m512 a0 = _mm512_maskz_loadu_ps(m0, s0), a1 = _mm512_maskz_loadu_ps(m1, s0 + 16);
      __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
      if (r1) {
        b0 = _mm512_maskz_loadu_ps(m0, r1 + jb * NR);
        b1 = _mm512_maskz_loadu_ps(m1, r1 + jb * NR + 16);
      }
      uint32_t *d = dst + (jb * kstride + p) * NR;
      _mm512_store_si512(d, pairs(a0, b0));
      _mm512_store_si512(d + 16, pairs(a1, b1));
    }
  }
}

static BF16_TARGET void rows_of_block(int64_t mc, int64_t w, int64_t kp, const uint32_t *ap,
                                      const uint32_t *bp, float *c, int64_t ldc, int init,
                                      const float *bias) {
  __mmask16 m0, m1;
  block_masks(w, &m0, &m1);
  for (int64_t i = 0; i < mc; i += MR) {
    const uint32_t *ai = ap + i / MR * kp * MR;
    float *ci = c + i * ldc;
    const float *bi = bias ? bias + i : NULL;
    switch (mc - i < MR ? (int)(mc - i) : MR) {
      case 8: tile(8, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      case 7: tile(7, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      case 6: tile(6, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      case 5: tile(5, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      case 4: tile(4, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      case 3: tile(3, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      case 2: tile(2, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
      default: tile(1, kp, ai, bp, ci, ldc, init, bi, m0, m1); break;
    }
  }
}

/* Column blocks [b0, b1) of C, a panel at a time. */
static BF16_TARGET void column_run(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                                   int64_t acs, const float *b, int64_t ldb, float *c,
                                   int64_t ldc, int accumulate, const float *bias, int64_t b0,
                                   int64_t b1) {
  uint32_t bpack[PANEL * KP * NR] __attribute__((aligned(64)));
  uint32_t apack[MC * KP] __attribute__((aligned(64)));
  for (int64_t jb = b0; jb < b1; jb += PANEL) {
    int64_t j = jb * NR, j1 = (jb + PANEL < b1 ? jb + PANEL : b1) * NR;
    if (j1 > n) j1 = n;
    int64_t w = j1 - j, nb = (w + NR - 1) / NR;
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
      int64_t kc = k - k0 < KC ? k - k0 : KC, kp = (kc + 1) / 2;
      int init = k0 > 0 || (accumulate & DD_SGEMM_ACCUMULATE) ? INIT_LOAD
                 : bias                                        ? INIT_BIAS
                                                               : INIT_ZERO;
      if ((accumulate & DD_SGEMM_RELU) && k0 + kc >= k) init |= INIT_RELU;
      pack_b(kc, w, b + k0 * ldb + j, ldb, kp, bpack);
      for (int64_t i0 = 0; i0 < m; i0 += MC) {
        int64_t mc = m - i0 < MC ? m - i0 : MC;
        pack_a(mc, kc, a + i0 * ars + k0 * acs, ars, acs, apack);
        for (int64_t q = 0; q < nb; q++) {
          int64_t bw = w - q * NR < NR ? w - q * NR : NR;
          rows_of_block(mc, bw, kp, apack, bpack + q * kp * NR, c + i0 * ldc + j + q * NR, ldc,
                        init, bias ? bias + i0 : NULL);
        }
      }
    }
  }
}

static void bgemm_avx512(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                         int64_t acs, const float *b, int64_t ldb, float *c, int64_t ldc,
                         int accumulate, const float *bias, int parallel) {
  int64_t blocks = (n + NR - 1) / NR;
  if (!parallel || blocks == 1 || m * n * k <= 4 * DD_PAR_MIN) {
    column_run(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, 0, blocks);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    column_run(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, blocks * t / nt,
               blocks * (t + 1) / nt);
  }
}

/* ---- the AMX kernel ----
 *
 * Tiles of 16 rows x 64 bytes: C in tmm0..3 (a 32 x 32 block of floats, 2 x 2 tiles), A in
 * tmm4..5 (16 rows x 16 pairs of k each), B in tmm6..7 (16 pairs of k x 16 columns each, the
 * pairs of B's packed block as they are).  tdpbf16ps computes
 * C[m][n] += sum over pairs p of A.bf16[m][2p] B.bf16[p][2n] + A.bf16[m][2p+1] B.bf16[p][2n+1],
 * so A is packed row by row, its k contiguous (pairs in order), and both packs are padded
 * with zeros to whole tiles: 32 rows of A, 16 pairs of k.  The tiles' sums are stored to a
 * 32 x 32 buffer and added to C's starting values (C, the bias or 0) with the Relu, as the
 * AVX512-BF16 kernel does in registers.
 *
 * No machine this was written on has AMX: the kernel runs only after dd_bf16_kernel's
 * self-check found it bit-exact with the AVX512-BF16 kernel on products that bf16 and float32
 * hold exactly, and tests/ops/test_bf16.c holds it to the bf16 bound where AMX exists. */

#define AMX_TARGET \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#define AMX_MB 32 /* rows of the C block */
#define AMX_KT 16 /* pairs of k per tile */

typedef struct amx_config {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_config;

/* Rows [0, mc) and k [0, kc) of A as rows of kstride pairs (k contiguous); rows up to a
 * multiple of AMX_MB and pairs up to kstride are 0. */
static AMX_TARGET void pack_a_rows(int64_t mc, int64_t kc, const float *a, int64_t ars,
                                   int64_t acs, int64_t kstride, uint32_t *dst) {
  int64_t rows = (mc + AMX_MB - 1) / AMX_MB * AMX_MB, kp = (kc + 1) / 2;
  memset(dst, 0, (size_t)(rows * kstride) * sizeof *dst);
  if (acs == 1) {
    for (int64_t i = 0; i < mc; i++)
      for (int64_t q = 0; q < kc; q += 32) {
        __mmask16 m0, m1;
        block_masks(kc - q, &m0, &m1);
        const float *row = a + i * ars + q;
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, row + 16),
                                                 _mm512_maskz_loadu_ps(m0, row));
        int64_t np = (kc - q + 1) / 2 < 16 ? (kc - q + 1) / 2 : 16;
        _mm512_mask_storeu_epi32(dst + i * kstride + q / 2, (__mmask16)((1u << np) - 1), v);
      }
    return;
  }
  if (ars == 1) {
    const __m512i rows16 = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32((int)kstride));
    for (int64_t p = 0; p < kp; p++) {
      const float *k0 = a + 2 * p * acs, *k1 = k0 + acs;
      int odd = 2 * p + 1 < kc;
      for (int64_t i = 0; i < mc; i += 16) {
        __mmask16 m = (__mmask16)(mc - i >= 16 ? 0xffff : (1u << (mc - i)) - 1);
        __m512 lo = _mm512_maskz_loadu_ps(m, k0 + i);
        __m512 hi = odd ? _mm512_maskz_loadu_ps(m, k1 + i) : _mm512_setzero_ps();
        _mm512_mask_i32scatter_epi32(dst + i * kstride + p, m, rows16, pairs(lo, hi), 4);
      }
    }
    return;
  }
  for (int64_t i = 0; i < mc; i++)
    for (int64_t q = 0; q < kc; q++)
      ((uint16_t *)(dst + i * kstride + q / 2))[q & 1] = to_bf16(a[i * ars + q * acs]);
}

/* C block (rows x w, rows <= 32, w <= 32) = start + the 32 x 32 sums in acc. */
static AMX_TARGET void amx_store(int64_t rows, int64_t w, const float *acc, float *c,
                                 int64_t ldc, int init, const float *bias) {
  __mmask16 m0, m1;
  block_masks(w, &m0, &m1);
  int relu = init & INIT_RELU;
  init &= ~INIT_RELU;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; r++) {
    __m512 s0 = _mm512_loadu_ps(acc + r * 32), s1 = _mm512_loadu_ps(acc + r * 32 + 16);
    if (init == INIT_LOAD) {
      s0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c + r * ldc), s0);
      s1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + r * ldc + 16), s1);
    } else if (init == INIT_BIAS) {
      s0 = _mm512_add_ps(_mm512_set1_ps(bias[r]), s0);
      s1 = _mm512_add_ps(_mm512_set1_ps(bias[r]), s1);
    }
    if (relu) {
      s0 = _mm512_max_ps(s0, zero);
      s1 = _mm512_max_ps(s1, zero);
    }
    _mm512_mask_storeu_ps(c + r * ldc, m0, s0);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, s1);
  }
}

static AMX_TARGET void column_run_amx(int64_t m, int64_t n, int64_t k, const float *a,
                                      int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                      float *c, int64_t ldc, int accumulate,
                                      const float *bias, int64_t b0, int64_t b1) {
  uint32_t bpack[PANEL * KP * NR] __attribute__((aligned(64)));
  uint32_t apack[MC * KP] __attribute__((aligned(64)));
  float acc[AMX_MB * 32] __attribute__((aligned(64)));
  amx_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg); /* per thread: the tile configuration is thread state */
  for (int64_t jb = b0; jb < b1; jb += PANEL) {
    int64_t j = jb * NR, j1 = (jb + PANEL < b1 ? jb + PANEL : b1) * NR;
    if (j1 > n) j1 = n;
    int64_t w = j1 - j, nb = (w + NR - 1) / NR;
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
      int64_t kc = k - k0 < KC ? k - k0 : KC, kp = (kc + 1) / 2;
      int64_t kt = (kp + AMX_KT - 1) / AMX_KT * AMX_KT; /* <= KP: KP is a multiple of 16 */
      int init = k0 > 0 || (accumulate & DD_SGEMM_ACCUMULATE) ? INIT_LOAD
                 : bias                                        ? INIT_BIAS
                                                               : INIT_ZERO;
      if ((accumulate & DD_SGEMM_RELU) && k0 + kc >= k) init |= INIT_RELU;
      pack_b(kc, w, b + k0 * ldb + j, ldb, kt, bpack);
      for (int64_t i0 = 0; i0 < m; i0 += MC) {
        int64_t mc = m - i0 < MC ? m - i0 : MC;
        pack_a_rows(mc, kc, a + i0 * ars + k0 * acs, ars, acs, kt, apack);
        __asm__ volatile("" ::: "memory"); /* the tile loads below read the packs */
        for (int64_t q = 0; q < nb; q++) {
          int64_t bw = w - q * NR < NR ? w - q * NR : NR;
          const uint32_t *bq = bpack + q * kt * NR;
          for (int64_t i = 0; i < mc; i += AMX_MB) {
            const uint32_t *ai = apack + i * kt;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t p = 0; p < kt; p += AMX_KT) {
              _tile_loadd(4, ai + p, kt * 4);
              _tile_loadd(5, ai + 16 * kt + p, kt * 4);
              _tile_loadd(6, bq + p * NR, NR * 4);
              _tile_loadd(7, bq + p * NR + 16, NR * 4);
              _tile_dpbf16ps(0, 4, 6);
              _tile_dpbf16ps(1, 4, 7);
              _tile_dpbf16ps(2, 5, 6);
              _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, acc, 32 * 4);
            _tile_stored(1, acc + 16, 32 * 4);
            _tile_stored(2, acc + 16 * 32, 32 * 4);
            _tile_stored(3, acc + 16 * 32 + 16, 32 * 4);
            int64_t rows = mc - i < AMX_MB ? mc - i : AMX_MB;
            amx_store(rows, bw, acc, c + (i0 + i) * ldc + j + q * NR, ldc, init,
                      bias ? bias + i0 + i : NULL);
          }
        }
      }
    }
  }
  _tile_release();
}

static void bgemm_amx(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                      int64_t acs, const float *b, int64_t ldb, float *c, int64_t ldc,
                      int accumulate, const float *bias, int parallel) {
  int64_t blocks = (n + NR - 1) / NR;
  if (!parallel || blocks == 1 || m * n * k <= 4 * DD_PAR_MIN) {
    column_run_amx(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, 0, blocks);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    column_run_amx(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, blocks * t / nt,
                   blocks * (t + 1) / nt);
  }
}

#endif /* DD_BF16_X86 */

int dd_bgemm_on(dd_bf16_isa isa, int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                int64_t acs, const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
                const float *bias, int parallel) {
  if (!dd_bf16_has(isa)) return -1;
  switch (isa) {
    case DD_BF16_NONE:
      dd_sgemm(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel);
      return 0;
#ifdef DD_BF16_X86
    case DD_BF16_AMX:
      if (m <= 0 || n <= 0 || k <= 0)
        dd_sgemm(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel);
      else
        bgemm_amx(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel);
      return 0;
    case DD_BF16_AVX512:
      /* k <= 0 and empty products: dd_sgemm's handling (bias, Relu) is the same in bf16 */
      if (m <= 0 || n <= 0 || k <= 0)
        dd_sgemm(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel);
      else
        bgemm_avx512(m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias, parallel);
      return 0;
#endif
    default: return -1;
  }
}

void dd_bgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
              const float *bias, int parallel) {
  dd_bgemm_on(dd_bf16_kernel(), m, n, k, a, ars, acs, b, ldb, c, ldc, accumulate, bias,
              parallel);
}
