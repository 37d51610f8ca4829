/* Conv: 1-D and 2-D convolution with groups, strides, dilations, explicit or automatic
 * padding and an optional bias.  Forward and backward side by side.
 *
 * Five paths, chosen from the geometry:
 *   direct     (the AVX-512 path) 3x3, stride 1, pad 1, one group, at most 16 input and 32
 *              output channels: straight from the NCHW planes, 16 output columns and a block
 *              of output channels in registers (a small training network's layers, too
 *              narrow for the product tiles and for Winograd); not under DD_PLAN_EXACT or
 *              bf16.  Forward, data gradient and weight gradient (see "the direct path").
 *   pointwise  1x1 kernel, stride 1, no padding: the NCHW data already is the column matrix,
 *              so each group is one sgemm with no copy.
 *   depthwise  one input channel per group: the vectorized stencils of ops/depthwise.c, one
 *              plane per task (a gemm with one row would spend its time on im2col copies);
 *              direct loops for the geometries those do not take (more than 256 taps, rows
 *              too wide for their stage buffer).
 *   winograd   3x3, stride 1, no dilation, one group, at least WINO_MIN_CH channels in and
 *              out, at least WINO_MIN_TILES 4x4 output tiles: Winograd F(4x4, 3x3)
 *              (ops/winograd.c): fewer multiplications than im2col + sgemm, which pays from
 *              that many channels and tiles (bench/README.md).
 *   general    im2col fused with the product: each thread packs 32 output columns of the
 *              column matrix at a time on its stack and multiplies them at once (see "The
 *              fused path" below); the column matrix is never written to memory.
 * The products go through dd_sgemm (ops/sgemm.c), which suits their few-rows, many-columns
 * shapes better than cblas_sgemm does.
 * Backward w.r.t. the data is the transpose of each: W^T * dY then col2im (accumulating),
 * for the general path block by block as in forward; for winograd, the same algorithm on dY
 * with the flipped, transposed kernel.
 * Gradients w.r.t. W and the bias are computed too when the plan asks for them (W's by
 * dd_sgemm on transposed im2col blocks, or for 1x1 the transposed input, in the scratch
 * buffer: dreams never ask for it).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "ops/act.h"
#include "ops/bf16.h"
#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/depthwise.h"
#include "ops/sgemm.h"
#include "ops/transpose16.h"
#include "ops/window.h"
#include "ops/winograd.h"

#ifdef DD_AVX512_KERNELS /* AVX-512 kernels, and the 8x8 transposes of the weight gradient */
#include <immintrin.h>
#endif

/* Fewer channels than this leave Winograd's transforms with too little sgemm to pay for.
 * (A build with -DWINO_MIN_CH=1000000 runs im2col everywhere, for comparison.) */
#ifndef WINO_MIN_CH
#define WINO_MIN_CH 8
#endif

/* Fewer 4x4 output tiles than this leave the transform of the weights (36 floats per pair
 * of channels, written on every call) costing more than the products it saves: GoogLeNet's
 * inception_4c/3x3 on a 15x9 plane (12 tiles, the smallest octave of a 640x360 dream) took
 * 0.63 ms forward in Winograd and about half that in im2col; the whole gradient at 233x131
 * went from 13.9-15.4 to 12.4-12.7 ms (bench/README.md, "Video"). */
#ifndef WINO_MIN_TILES
#define WINO_MIN_TILES 16
#endif

typedef struct conv_params {
  dd_window_attrs win;
  int64_t group;
} conv_params;

/* The geometry of one Conv at one input shape; 1-D is a 2-D convolution of height 1. */
typedef struct conv_geom {
  int64_t n, c, m, group, cg, mg;
  int64_t h, w, kh, kw, sh, sw, dh, dw, ph, pw, ho, wo;
  int64_t kcol; /* rows of the column matrix: cg * kh * kw */
  int64_t ocol; /* columns: ho * wo */
  int64_t block; /* output rows per im2col block */
  int pointwise, depthwise, wino;
  int patch; /* kernel = stride, no padding or dilation, not 1x1: patches that do not overlap */
  int direct; /* the direct 3x3 path (AVX-512), set by each call: not under exact or bf16 */
  int avx512; /* the AVX-512 kernels run (ops/cpu.h): read once per call */
  int bf16; /* this call's products in bf16 (dd_op_call.bf16, and the CPU has a kernel) */
} conv_geom;

/* The product of the forward and data-gradient paths: dd_sgemm, or in bf16 mode dd_bgemm. */
#define conv_gemm(g, ...) ((g)->bf16 ? dd_bgemm(__VA_ARGS__) : dd_sgemm(__VA_ARGS__))

/* The im2col buffer of the weight gradient holds at most this many floats (or one output
 * row): large images are taken in blocks of output rows, which bounds the scratch memory. */
#define CONV_COL_MAX (1 << 21)
/* The weight gradient sums at most this many output pixels in one product (then adds the
 * partial sum into dW): float sums in one long run lose precision with their length. */
#define CONV_DW_K 2048
/* Batches of images this small (multiply-adds per image and group) are shared among the
 * threads image by image, rather than each image among all of them: small images (training
 * on 32x32 shapes) would otherwise open a parallel region, and wait at its barrier, for a few
 * microseconds of work per image.  Each image's result is computed as with one thread. */
#define CONV_BATCH_PAR_MAX (64 * DD_PAR_MIN)

/* Whether the per-image loops of this geometry run in parallel over the images. */
static int batch_parallel(const conv_geom *g) {
  int64_t per = g->mg * g->ocol * g->kcol;
  return g->n > 1 && per <= CONV_BATCH_PAR_MAX && g->n * g->group * per > 4 * DD_PAR_MIN;
}

static int conv_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {"auto_pad", "dilations", "group",   "kernel_shape",
                                      "pads",     "strides",   NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  conv_params *p = calloc(1, sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_window_parse(node, 0, &p->win, err);
  if (!rc) rc = dd_attr_int(node, "group", 1, &p->group, err);
  if (!rc && p->group < 1)
    rc = dd_fail(err, DD_EFORMAT, "group is %lld, expected at least 1", (long long)p->group);
  if (rc) {
    free(p);
    return rc;
  }
  node->params = p;
  return DD_OK;
}

/* Validates the shapes of X, W and B against the attributes and fills *g.  err may be NULL
 * once infer has accepted the shapes. */
static int conv_geometry(const conv_params *p, const dd_tensor *x, const dd_tensor *wt,
                         const dd_tensor *b, conv_geom *g, dd_err *err) {
  const dd_shape *xs = &x->shape, *ws = &wt->shape;
  if (xs->ndim == 5)
    return dd_fail(err, DD_EUNSUPPORTED, "3-D convolution (5-D input) is not supported");
  if (xs->ndim != 3 && xs->ndim != 4)
    return dd_fail(err, DD_ESHAPE, "input X has %d dims, expected 3 (N,C,W) or 4 (N,C,H,W)",
                   xs->ndim);
  if (ws->ndim != xs->ndim)
    return dd_fail(err, DD_ESHAPE, "weight W has %d dims, expected %d like the input", ws->ndim,
                   xs->ndim);
  memset(g, 0, sizeof *g);
  g->n = xs->d[0];
  g->c = xs->d[1];
  g->m = ws->d[0];
  g->group = p->group;
  if (g->c % g->group || g->m % g->group)
    return dd_fail(err, DD_ESHAPE,
                   "group %lld does not divide the input channels (%lld) and the output "
                   "channels (%lld)",
                   (long long)g->group, (long long)g->c, (long long)g->m);
  if (g->c < 1 || g->m < 1)
    return dd_fail(err, DD_ESHAPE, "input and output channels must be positive (have %lld, %lld)",
                   (long long)g->c, (long long)g->m);
  g->cg = g->c / g->group;
  g->mg = g->m / g->group;
  if (ws->d[1] != g->cg)
    return dd_fail(err, DD_ESHAPE,
                   "weight W has %lld input channels per group, expected %lld (input channels "
                   "%lld / group %lld)",
                   (long long)ws->d[1], (long long)g->cg, (long long)g->c, (long long)g->group);
  int nsp = xs->ndim - 2;
  const dd_window_attrs *a = &p->win;
  for (int j = 0; j < nsp && a->n_kernel == nsp; j++)
    if (a->kernel[j] != ws->d[2 + j])
      return dd_fail(err, DD_ESHAPE, "kernel_shape[%d] is %lld but the weight W has %lld", j,
                     (long long)a->kernel[j], (long long)ws->d[2 + j]);
  if (b) {
    if (b->dtype != DD_F32) return dd_fail(err, DD_EUNSUPPORTED, "bias B must be float32");
    if (b->shape.ndim != 1 || b->shape.d[0] != g->m)
      return dd_fail(err, DD_ESHAPE, "bias B must be 1-D of length %lld (the output channels)",
                     (long long)g->m);
  }
  dd_window win;
  int rc = dd_window_resolve(a, nsp, xs->d + 2, ws->d + 2, &win, err);
  if (rc) return rc;
  g->h = win.in[1], g->w = win.in[2];
  g->kh = win.k[1], g->kw = win.k[2];
  g->sh = win.s[1], g->sw = win.s[2];
  g->dh = win.d[1], g->dw = win.d[2];
  g->ph = win.pb[1], g->pw = win.pb[2];
  g->ho = win.out[1], g->wo = win.out[2];
  g->kcol = g->cg * g->kh * g->kw;
  g->ocol = g->ho * g->wo;
  g->pointwise = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 &&
                 g->pw == 0 && win.pe[1] == 0 && win.pe[2] == 0;
  if (g->kcol > INT_MAX || g->ocol > INT_MAX || g->mg > INT_MAX || g->h * g->w > INT_MAX)
    return dd_fail(err, DD_ELIMIT, "the convolution is too large for the BLAS interface");
  g->depthwise = !g->pointwise && g->cg == 1 && g->group > 1;
  g->patch = !g->pointwise && g->kh == g->sh && g->kw == g->sw && g->dh == 1 && g->dw == 1 &&
             g->ph == 0 && g->pw == 0 && g->ho * g->kh <= g->h && g->wo * g->kw <= g->w;
  g->wino = nsp == 2 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
            g->dw == 1 && g->group == 1 && g->c >= WINO_MIN_CH && g->m >= WINO_MIN_CH &&
            ((g->ho + 3) / 4) * ((g->wo + 3) / 4) >= WINO_MIN_TILES;
  g->avx512 = dd_kernels_avx512();
  g->block = CONV_COL_MAX / (g->kcol * g->wo);
  if (g->wo > 0 && g->block > CONV_DW_K / g->wo) g->block = CONV_DW_K / g->wo;
  if (g->block < 1) g->block = 1;
  if (g->block > g->ho) g->block = g->ho;
  return DD_OK;
}

#ifdef DD_AVX512_KERNELS
/* The direct path (below, "the direct path"): its geometries and its scratch. */
#define DIRECT_MAX_C 16
#define DIRECT_MAX_M 32
#define DIRECT_MB 16 /* output channels a block holds at most */

static int direct_geometry(const conv_geom *g) {
  return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
         g->ph == 1 && g->pw == 1 && g->ho == g->h && g->wo == g->w && g->group == 1 &&
         g->c <= DIRECT_MAX_C && g->m <= DIRECT_MAX_M;
}

/* The direct path at stride 2 (forward only): a network's first convolution, 3 channels of
 * a photo to 16 or 32 at half the size (EfficientNet's, MobileNet v3's), whose im2col of 27
 * rows gathered at stride 2 cost more than its products (0.56 ms against ONNX Runtime's 0.30
 * on one core at 224x224).  Any output size: rows and columns outside the input read 0. */
static int direct_s2_geometry(const conv_geom *g) {
  return g->kh == 3 && g->kw == 3 && g->sh == 2 && g->sw == 2 && g->dh == 1 && g->dw == 1 &&
         g->ph == 1 && g->pw == 1 && g->group == 1 && g->c <= DIRECT_MAX_C &&
         g->m <= DIRECT_MAX_M;
}

/* Floats of scratch the packed kernels need (forward, and the flipped one of the data
 * gradient). */
static int64_t direct_scratch(const conv_geom *g) {
  int64_t a = (g->m + DIRECT_MB - 1) / DIRECT_MB * DIRECT_MB * g->c * 9;
  int64_t b = (g->c + DIRECT_MB - 1) / DIRECT_MB * DIRECT_MB * g->m * 9;
  return a > b ? a : b;
}

#endif

/* A 1x1 convolution on a small plane (a 7x7 or 14x14 stage) computed transposed, Y^T (HW x M)
 * = X^T (HW x C) W^T (C x M), from W^T packed once by the plan (dd_conv_pack): its HW pixels
 * are the product's rows and its M channels the columns, where HW columns (49 or 196) would
 * fill dd_sgemm's 32-column tiles to 77% or 88%, and the weights stream once from the pack.
 * Each output is the same chain of fused multiply-adds over the channels from the bias, so
 * the same float.  Forward-only plans on the AVX-512 kernels (the pack is theirs).
 * A convolution in patches (g->patch: ConvNeXt's 2x2 stride-2 downsampling, 384
 * -> 768 channels to 7x7 at 224x224) takes the same path on its column matrix, gathered
 * first (im2col): its 4.7 MB of weights were packed on every call before. */
#define CONV_T_MAX_PLANE 256
#define CONV_T_MIN_M 32
/* Patches: the packed weights paid on larger planes too, at 28x28 (ConvNeXt-T's first
 * downsampling, 96 -> 192: 1.26 -> 1.15 ms on one core).  A stem of 4x4 patches of 3
 * channels (48 rows of W^T) does not: level at 56x56 (0.36 against 0.35 ms), slower at 32x32
 * (Swin-T's at 128x128, 0.136 against 0.161 ms); it and larger planes keep im2col. */
#define CONV_T_MAX_PATCHES 1024
#define CONV_T_MIN_PATCH 64

static int conv_t_geometry(const conv_geom *g) {
  /* not the AVX2 path's: with its transpose back to planes in plain C, EfficientNet-B0's
   * 14x14 expansions took 1.2x the time of the plain product (a Zen 3, one core) */
  if (!dd_kernels_avx512() || g->group != 1 || g->m < CONV_T_MIN_M) return 0;
  return (g->pointwise && g->ocol <= CONV_T_MAX_PLANE) ||
         (g->patch && g->ocol <= CONV_T_MAX_PATCHES && g->kcol >= CONV_T_MIN_PATCH);
}

/* Floats of scratch conv_t_forward takes: Y^T of one image, and a patch convolution's column
 * matrix. */
static int64_t conv_t_scratch(const conv_geom *g) {
  return g->ocol * g->m + (g->patch ? g->kcol * g->ocol : 0);
}

/* The forward convolution and the data gradient as Winograd convolutions of one image. */
static void wino_convs(const conv_geom *g, dd_wino_conv *fw, dd_wino_conv *bw) {
  *fw = (dd_wino_conv){g->c, g->h, g->w, g->m, g->ho, g->wo, g->ph, g->pw, 0, g->bf16};
  *bw = (dd_wino_conv){g->m, g->ho, g->wo, g->c, g->h, g->w, 2 - g->ph, 2 - g->pw, 1, g->bf16};
}

/* Columns of X_g that the pointwise weight gradient transposes at a time into the scratch. */
static int64_t pointwise_chunk(const conv_geom *g) {
  int64_t chunk = CONV_COL_MAX / (g->cg > 0 ? g->cg : 1);
  if (chunk > CONV_DW_K) chunk = CONV_DW_K;
  if (chunk < 1) chunk = 1;
  return chunk < g->ocol ? chunk : g->ocol;
}

static int conv_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  const conv_params *p = node->params;
  if (node->n_in < 2 || !in[0] || !in[1])
    return dd_fail(err, DD_EFORMAT, "needs the inputs X and W");
  if (node->n_in > 3) return dd_fail(err, DD_EFORMAT, "has %d inputs, expected 2 or 3", node->n_in);
  if (in[0]->dtype != DD_F32 || in[1]->dtype != DD_F32)
    return dd_fail(err, DD_EUNSUPPORTED, "X and W must be float32");
  const dd_tensor *b = node->n_in > 2 ? in[2] : NULL;
  conv_geom g;
  int rc = conv_geometry(p, in[0], in[1], b, &g, err);
  if (rc) return rc;
  /* The column buffer, counted in elements first so a huge image reports a limit, not a wrap. */
  /* (for the weight gradient: the column block, its transpose, then the partial sum) */
  int64_t col = g.depthwise   ? 0
                : g.pointwise ? g.cg * pointwise_chunk(&g) + g.mg * g.kcol
                              : 2 * g.kcol * g.block * g.wo + g.mg * g.kcol;
  if (g.wino) {
    dd_wino_conv fw, bw;
    wino_convs(&g, &fw, &bw);
    int64_t a = dd_wino_scratch(&fw), b = dd_wino_scratch(&bw);
    /* the weight gradient still takes the im2col path */
    col = col > a ? col : a;
    col = col > b ? col : b;
  }
#ifdef DD_AVX512_KERNELS
  /* whenever the CPU could take the direct path, whichever path runs now */
  if (dd_kernels_has(DD_KERNELS_AVX512) && (direct_geometry(&g) || direct_s2_geometry(&g)) &&
      col < direct_scratch(&g))
    col = direct_scratch(&g);
#endif
  /* Y^T of one image, when the plan packs W^T */
  if (dd_sgemm_pack_floats(1, 1) && conv_t_geometry(&g) && col < conv_t_scratch(&g))
    col = conv_t_scratch(&g);
  if (col < 0 || (uint64_t)col > SIZE_MAX / sizeof(float) / 2)
    return dd_fail(err, DD_ELIMIT, "the im2col buffer would be too large");
  *scratch = (size_t)col * sizeof(float);
  if (node->n_out >= 1 && out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = in[0]->shape;
    out[0]->shape.d[1] = g.m;
    if (in[0]->shape.ndim == 4) out[0]->shape.d[2] = g.ho;
    out[0]->shape.d[in[0]->shape.ndim - 1] = g.wo;
  }
  return DD_OK;
}

/* Valid output columns [*o0, *o1) for kernel column kj: 0 <= ow*sw - pw + kj*dw < w. */
static void col_range(const conv_geom *g, int64_t kj, int64_t *o0, int64_t *o1) {
  int64_t off = kj * g->dw - g->pw;
  int64_t a = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
  int64_t b = off >= g->w ? 0 : (g->w - off + g->sw - 1) / g->sw;
  *o0 = a < g->wo ? a : g->wo;
  *o1 = b < g->wo ? b : g->wo;
  if (*o1 < *o0) *o1 = *o0;
}

/* The fused path: the column matrix is never built whole.  Each thread takes blocks of
 * CONV_NB output columns and packs the block's rows of the column matrix, CONV_KB at a
 * time, into a buffer on its stack (32 KiB, in L1), which dd_sgemm multiplies in place (its
 * own packed layout); the data gradient computes the same block of W^T * dY into that buffer
 * and adds it into dx at once.  No scratch, and nothing written to memory but the result. */
#define CONV_NB_AVX512 32 /* dd_sgemm's column block, which it reads in place when packed */
#define CONV_NB_GENERIC 128
#define CONV_BUF 8192 /* floats of the block buffer: CONV_KB * CONV_NB */
/* CONV_NB and CONV_KB of the path that runs (g->avx512), read once per function. */
#define CONV_NB(g) ((g)->avx512 ? CONV_NB_AVX512 : CONV_NB_GENERIC)
#define CONV_KB(g) (CONV_BUF / CONV_NB(g))

/* d[t] = row[p + t*sw] for 0 <= t < len where 0 <= p + t*sw < w, else 0 (row NULL: all 0). */
static void gather(const float *row, int64_t p, int64_t sw, int64_t w, int64_t len, float *d) {
  if (!row) {
    memset(d, 0, (size_t)len * sizeof *d);
    return;
  }
  /* valid t: -p <= t*sw < w - p */
  int64_t a = p >= 0 ? 0 : (-p + sw - 1) / sw;
  int64_t b = p >= w ? 0 : (w - p + sw - 1) / sw;
  if (a > len) a = len;
  if (b > len) b = len;
  if (b < a) b = a;
  for (int64_t t = 0; t < a; t++) d[t] = 0.f;
  if (sw == 1) {
    memcpy(d + a, row + p + a, (size_t)(b - a) * sizeof *d);
  } else if (sw == 2) { /* a constant stride: two loads and a shuffle a vector, not a gather */
    const float *r = row + p;
#pragma omp simd
    for (int64_t t = a; t < b; t++) d[t] = r[2 * t];
  } else {
#pragma omp simd
    for (int64_t t = a; t < b; t++) d[t] = row[p + t * sw];
  }
  for (int64_t t = b; t < len; t++) d[t] = 0.f;
}

/* The adjoint of gather: row[p + t*sw] += s[t] where 0 <= p + t*sw < w. */
static void scatter_add(float *row, int64_t p, int64_t sw, int64_t w, int64_t len,
                        const float *s) {
  int64_t a = p >= 0 ? 0 : (-p + sw - 1) / sw;
  int64_t b = p >= w ? 0 : (w - p + sw - 1) / sw;
  if (b > len) b = len;
#pragma omp simd
  for (int64_t t = a; t < b; t++) row[p + t * sw] += s[t];
}

#ifdef DD_AVX512_KERNELS
/* The taps of one kernel row read one input row at offsets p + kj + t*sw: with stride 1 or
 * 2 and no dilation, the row is loaded once (2 or 3 windows of 16 lanes per parity) and
 * every tap is a lane shift of it, instead of loading each tap's 32 values again. */
#define TAPS_FAST(g) \
  ((g)->dw == 1 && (((g)->sw == 1 && (g)->kw <= 17) || ((g)->sw == 2 && (g)->kw <= 33)))

/* Lanes [lo, hi) of 16. */
static inline DD_TARGET_AVX512 __mmask16 lanes(int64_t lo, int64_t hi) {
  if (lo < 0) lo = 0;
  if (hi > 16) hi = 16;
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

static inline DD_TARGET_AVX512 __m512i iota_plus(int64_t k) {
  return _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                          _mm512_set1_epi32((int)k));
}

/* The mask of window q (lanes row[p + 16q + lane]) inside [0, w). */
static inline DD_TARGET_AVX512 __mmask16 window_mask(int64_t p, int64_t w, int q) {
  if (p >= 0 && p + 16 * (q + 1) <= w) return 0xffff; /* the common case, in one test */
  return lanes(-p - 16 * q, w - p - 16 * q);
}

/* v[q] = row[p + 16q + lane], 0 outside [0, w).  Masked-off lanes are never read, so the
 * windows may start before or end after the row. */
static inline DD_TARGET_AVX512 void load_windows(const float *row, int64_t p, int64_t w, int nv,
                                                 __m512 *v) {
  for (int q = 0; q < nv; q++)
    v[q] = _mm512_maskz_loadu_ps(window_mask(p, w, q), row + p + 16 * q);
}

/* row[p + 16q + lane] += v[q] inside [0, w). */
static inline DD_TARGET_AVX512 void add_windows(float *row, int64_t p, int64_t w, int nv,
                                                const __m512 *v) {
  for (int q = 0; q < nv; q++) {
    __mmask16 m = window_mask(p, w, q);
    float *d = row + p + 16 * q;
    _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v[q]));
  }
}

/* Windows of 16 lanes holding row[p + t*sw + kj] for t < 32, kj < kb (at most 3 per
 * parity). */
static inline DD_TARGET_AVX512 int windows(int64_t sw, int64_t kb) {
  return (int)((31 * sw + kb - 1) / 16 + 1);
}

/* Taps [ka, kb) of one kernel row: d[(kj - ka) * CONV_NB_AVX512 + t] = row[p + kj + t*sw] (0
 * outside the row, row NULL: all 0) for t < len, whose lanes are lm. */
static inline DD_TARGET_AVX512 void pack_taps(const conv_geom *g, const float *row, int64_t p,
                                              int64_t ka, int64_t kb, uint32_t lm, float *d) {
  __mmask16 l0 = (__mmask16)lm, l1 = (__mmask16)(lm >> 16);
  const __m512 z = _mm512_setzero_ps();
  if (!row) {
    for (int64_t kj = ka; kj < kb; kj++, d += CONV_NB_AVX512) {
      _mm512_mask_storeu_ps(d, l0, z);
      _mm512_mask_storeu_ps(d + 16, l1, z);
    }
    return;
  }
  __m512 v[6] = {z, z, z, z, z, z};
  load_windows(row, p, g->w, windows(g->sw, kb), v);
  if (g->sw == 1) {
    for (int64_t kj = ka; kj < kb; kj++, d += CONV_NB_AVX512) {
      __m512i idx = iota_plus(kj);
      _mm512_mask_storeu_ps(d, l0, _mm512_permutex2var_ps(v[0], idx, v[1]));
      _mm512_mask_storeu_ps(d + 16, l1, _mm512_permutex2var_ps(v[1], idx, v[2]));
    }
    return;
  }
  /* stride 2: even and odd elements apart; tap kj is the parity kj % 2 shifted by kj / 2 */
  __m512i even = _mm512_slli_epi32(iota_plus(0), 1);
  __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  __m512 e0 = _mm512_permutex2var_ps(v[0], even, v[1]);
  __m512 e1 = _mm512_permutex2var_ps(v[2], even, v[3]);
  __m512 e2 = _mm512_permutex2var_ps(v[4], even, v[5]);
  __m512 o0 = _mm512_permutex2var_ps(v[0], odd, v[1]);
  __m512 o1 = _mm512_permutex2var_ps(v[2], odd, v[3]);
  __m512 o2 = _mm512_permutex2var_ps(v[4], odd, v[5]);
  for (int64_t kj = ka; kj < kb; kj++, d += CONV_NB_AVX512) {
    __m512i idx = iota_plus(kj >> 1);
    __m512 lo = _mm512_permutex2var_ps(kj & 1 ? o0 : e0, idx, kj & 1 ? o1 : e1);
    __m512 hi = _mm512_permutex2var_ps(kj & 1 ? o1 : e1, idx, kj & 1 ? o2 : e2);
    _mm512_mask_storeu_ps(d, l0, lo);
    _mm512_mask_storeu_ps(d + 16, l1, hi);
  }
}

/* The adjoint of pack_taps: row[p + kj + t*sw] += s[(kj - ka) * CONV_NB_AVX512 + t] inside
 * the row. */
static inline DD_TARGET_AVX512 void unpack_taps(const conv_geom *g, float *row, int64_t p,
                                                int64_t ka, int64_t kb, uint32_t lm,
                                                const float *s) {
  __mmask16 l0 = (__mmask16)lm, l1 = (__mmask16)(lm >> 16);
  const __m512 z = _mm512_setzero_ps();
  /* windows of the even (stride 1: all) and odd positions, each tap shifted into place */
  __m512 e0 = z, e1 = z, e2 = z, o0 = z, o1 = z, o2 = z;
  for (int64_t kj = ka; kj < kb; kj++, s += CONV_NB_AVX512) {
    __m512 s0 = _mm512_maskz_loadu_ps(l0, s), s1 = _mm512_maskz_loadu_ps(l1, s + 16);
    int odd_tap = g->sw == 2 && (kj & 1);
    __m512i idx = iota_plus(16 - (g->sw == 2 ? kj >> 1 : kj)); /* lane i takes s[i - shift] */
    __m512 t0 = _mm512_permutex2var_ps(z, idx, s0), t1 = _mm512_permutex2var_ps(s0, idx, s1);
    __m512 t2 = _mm512_permutex2var_ps(s1, idx, z);
    if (odd_tap) {
      o0 = _mm512_add_ps(o0, t0), o1 = _mm512_add_ps(o1, t1), o2 = _mm512_add_ps(o2, t2);
    } else {
      e0 = _mm512_add_ps(e0, t0), e1 = _mm512_add_ps(e1, t1), e2 = _mm512_add_ps(e2, t2);
    }
  }
  if (g->sw == 1) {
    __m512 v[3] = {e0, e1, e2};
    add_windows(row, p, g->w, windows(1, kb), v);
    return;
  }
  __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(8));
  __m512 v[6] = {_mm512_permutex2var_ps(e0, ilo, o0), _mm512_permutex2var_ps(e0, ihi, o0),
                 _mm512_permutex2var_ps(e1, ilo, o1), _mm512_permutex2var_ps(e1, ihi, o1),
                 _mm512_permutex2var_ps(e2, ilo, o2), _mm512_permutex2var_ps(e2, ihi, o2)};
  add_windows(row, p, g->w, windows(2, kb), v);
}
#endif

/* Rows [r0, r1) of the column matrix of x (one image and group) for the output columns
 * [j0, j0 + nw): buf[(r - r0) * CONV_NB + i] = col[r][j0 + i]. */
static void pack_block(const conv_geom *g, const float *x, int64_t j0, int64_t nw, int64_t r0,
                       int64_t r1, float *buf) {
  int64_t khw = g->kh * g->kw, nb = CONV_NB(g);
  int64_t c0 = r0 / khw, ki0 = r0 / g->kw % g->kh, kj0 = r0 % g->kw;
  int64_t oh = j0 / g->wo, owa = j0 % g->wo;
  for (int64_t i = 0, len; i < nw; i += len, oh++, owa = 0) { /* one output row at a time */
    len = g->wo - owa < nw - i ? g->wo - owa : nw - i;
    int64_t c = c0, ki = ki0, kj = kj0, p = owa * g->sw - g->pw;
    for (int64_t r = r0; r < r1; ki++, kj = 0) { /* one kernel row: taps [kj, kb) */
      if (ki == g->kh) ki = 0, c++;
      int64_t kb = g->kw - kj < r1 - r ? g->kw : kj + r1 - r;
      int64_t ih = oh * g->sh - g->ph + ki * g->dh;
      const float *row = ih >= 0 && ih < g->h ? x + (c * g->h + ih) * g->w : NULL;
      float *d = buf + (r - r0) * nb + i;
#ifdef DD_AVX512_KERNELS
      if (g->avx512 && TAPS_FAST(g)) {
        pack_taps(g, row, p, kj, kb, (uint32_t)(((uint64_t)1 << len) - 1), d);
        r += kb - kj;
        continue;
      }
#endif
      for (; kj < kb; kj++, r++, d += nb) gather(row, p + kj * g->dw, g->sw, g->w, len, d);
    }
  }
}

/* The adjoint of pack_block, limited to the input rows [ih0, ih1): dx[c][ih][iw] += every
 * entry of buf that pack_block would have copied from there. */
static void unpack_add_block(const conv_geom *g, const float *buf, int64_t j0, int64_t nw,
                             int64_t r0, int64_t r1, int64_t ih0, int64_t ih1, float *dx) {
  int64_t khw = g->kh * g->kw, nb = CONV_NB(g);
  int64_t c0 = r0 / khw, ki0 = r0 / g->kw % g->kh, kj0 = r0 % g->kw;
  int64_t oh = j0 / g->wo, owa = j0 % g->wo;
  for (int64_t i = 0, len; i < nw; i += len, oh++, owa = 0) {
    len = g->wo - owa < nw - i ? g->wo - owa : nw - i;
    int64_t c = c0, ki = ki0, kj = kj0, p = owa * g->sw - g->pw;
    for (int64_t r = r0; r < r1; ki++, kj = 0) {
      if (ki == g->kh) ki = 0, c++;
      int64_t kb = g->kw - kj < r1 - r ? g->kw : kj + r1 - r;
      int64_t ih = oh * g->sh - g->ph + ki * g->dh;
      const float *s = buf + (r - r0) * nb + i;
      if (ih < ih0 || ih >= ih1) {
        r += kb - kj;
        continue;
      }
      float *row = dx + (c * g->h + ih) * g->w;
#ifdef DD_AVX512_KERNELS
      if (g->avx512 && TAPS_FAST(g)) {
        unpack_taps(g, row, p, kj, kb, (uint32_t)(((uint64_t)1 << len) - 1), s);
        r += kb - kj;
        continue;
      }
#endif
      for (; kj < kb; kj++, r++, s += nb)
        scatter_add(row, p + kj * g->dw, g->sw, g->w, len, s);
    }
  }
}

/* Output columns staged together.  Y's (and dY's) rows are NCHW planes far apart: taking
 * 32 columns of 64 planes at a time keeps 64 streams of two cache lines in flight, more
 * than the hardware prefetchers follow, and conv1's backward spent a fifth of its time
 * waiting for dY.  So up to 4 blocks of columns go through a stage buffer on the stack
 * (CONV_STAGE floats), read or written a whole row of the stage at a time. */
#define CONV_STAGE 8192
/* Outputs of at least this many bytes are written past the caches (non-temporal stores):
 * they do not fit anyway, and the usual stores would read every line before writing it. */
#define CONV_STREAM_MIN (8 << 20)

/* Columns of the stage for `rows` rows: a multiple of CONV_NB, 0 when even one block does
 * not fit. */
static int64_t stage_cols(const conv_geom *g, int64_t rows) {
  const int64_t nb = CONV_NB(g);
  int64_t sc = CONV_STAGE / rows / nb * nb;
  return sc < 4 * nb ? sc : 4 * nb;
}

#ifdef DD_AVX512_KERNELS
/* The aligned part of store_row by non-temporal stores: returns how far it got. */
DD_TARGET_AVX512 static int64_t stream_row(float *dst, const float *src, int64_t n) {
  int64_t head = (int64_t)((64 - (uintptr_t)dst % 64) % 64 / sizeof *dst);
  int64_t i = head < n ? head : n;
  memcpy(dst, src, (size_t)i * sizeof *dst);
  for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
  return i;
}
#endif

/* dst[0, n) = src[0, n), with `stream` (only on the AVX-512 path) by non-temporal stores
 * where dst is aligned. */
static void store_row(float *dst, const float *src, int64_t n, int stream) {
  int64_t i = 0;
#ifdef DD_AVX512_KERNELS
  if (stream) i = stream_row(dst, src, n);
#else
  (void)stream;
#endif
  memcpy(dst + i, src + i, (size_t)(n - i) * sizeof *dst);
}

/* Under DD_PLAN_EXACT, convolutions of at most this many input channels per group (an image's
 * first layer) sum in double: there the pixels are large (0..255 less a mean) and the taps of
 * one colour cancel those of another, so a float sum loses several bits, enough to reorder two
 * outputs a few ulp apart at the max-pool after it (a float64 reference keeps their order). */
#ifndef CONV_EXACT_DOUBLE_CH
#define CONV_EXACT_DOUBLE_CH 4
#endif
/* exact_forward's block: output columns and output channels summed together (doubles on the
 * stack, 8 KiB): each tap's input row is converted to double once for all the channels. */
#define CONV_EXACT_COLS 64
#define CONV_EXACT_M 16

/* y_g = bias + W_g * col(x_g) with every sum in double, rounded once, in the same order at
 * every output position (taps outside the image are skipped, which changes nothing for the
 * positions they do not reach); relu: then max(0, .). */
/* Tap r (a row of the column matrix) for output row oh: the input row it reads (NULL when the
 * tap falls on a padding row), the column offset `off` (output column ow reads
 * row[ow * sw + off]) and the output columns [o0, o1) whose input lies inside the image. */
static const float *exact_tap(const conv_geom *g, const float *xg, int64_t oh, int64_t r,
                              int64_t *off, int64_t *o0, int64_t *o1) {
  int64_t c = r / (g->kh * g->kw), ki = r / g->kw % g->kh, kj = r % g->kw;
  int64_t ih = oh * g->sh - g->ph + ki * g->dh;
  if (ih < 0 || ih >= g->h) return NULL;
  *off = kj * g->dw - g->pw;
  col_range(g, kj, o0, o1);
  return xg + (c * g->h + ih) * g->w;
}

#ifdef DD_AVX512_KERNELS
/* exact_forward with AVX-512: a job is one output row's block of 32 columns, for every output
 * channel.  The block's inputs are converted to double once per tap into a panel (taps past
 * the image's columns hold 0, which adds an exact zero; taps on rows past the image are
 * skipped for the whole row, as in the portable loop), then 4 channels x 32 columns stay in
 * 16 registers over all the taps.  Each output is still bias + its taps in tap order, each
 * step rounded once in double: the same value as the portable loop gives (but the sign of an
 * exact zero), wherever the output lies. */
#define CONV_EXACT_VCOLS 32
#define CONV_EXACT_VTAPS 160 /* a panel of up to this many taps on the stack (40 KiB) */
/* One job of exact_forward_avx512 (a function of its own: Clang does not give an OpenMP
 * region the target of the function around it). */
DD_TARGET_AVX512 static void exact_job_avx512(const conv_geom *g, const float *xg,
                                              const float *wg, const float *bg, int relu,
                                              float *yg, int64_t chunks, int64_t job) {
  {
    int64_t oh = job / chunks, ow0 = job % chunks * CONV_EXACT_VCOLS;
    int64_t len = g->wo - ow0 < CONV_EXACT_VCOLS ? g->wo - ow0 : CONV_EXACT_VCOLS;
    double panel[CONV_EXACT_VTAPS][CONV_EXACT_VCOLS] __attribute__((aligned(64)));
    int16_t taps[CONV_EXACT_VTAPS];
    int nt = 0;
    for (int64_t r = 0; r < g->kcol; r++) {
      int64_t o0, o1, off;
      const float *row = exact_tap(g, xg, oh, r, &off, &o0, &o1);
      if (!row) continue;
      int64_t a = o0 > ow0 ? o0 - ow0 : 0, b = o1 - ow0 < len ? o1 - ow0 : len;
      if (b < a) b = a;
      double *pr = panel[nt];
      for (int64_t i = 0; i < a; i++) pr[i] = 0.0;
      for (int64_t i = a; i < b; i++) pr[i] = (double)row[(ow0 + i) * g->sw + off];
      for (int64_t i = b; i < CONV_EXACT_VCOLS; i++) pr[i] = 0.0;
      taps[nt++] = (int16_t)r;
    }
    for (int64_t m0 = 0; m0 < g->mg; m0 += 4) {
      int64_t mn = g->mg - m0 < 4 ? g->mg - m0 : 4;
      __m512d acc[4][4];
      const float *wm[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        int64_t m = m0 + (k < mn ? k : 0); /* a missing channel repeats the first, unstored */
        wm[k] = wg + m * g->kcol;
        __m512d b = _mm512_set1_pd(bg ? (double)bg[m] : 0.0);
        for (int j = 0; j < 4; j++) acc[k][j] = b;
      }
#pragma GCC unroll 1
      for (int t = 0; t < nt; t++) {
        const double *pr = panel[t];
        __m512d x0 = _mm512_load_pd(pr), x1 = _mm512_load_pd(pr + 8);
        __m512d x2 = _mm512_load_pd(pr + 16), x3 = _mm512_load_pd(pr + 24);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
          __m512d w = _mm512_set1_pd((double)wm[k][taps[t]]);
          acc[k][0] = _mm512_fmadd_pd(w, x0, acc[k][0]);
          acc[k][1] = _mm512_fmadd_pd(w, x1, acc[k][1]);
          acc[k][2] = _mm512_fmadd_pd(w, x2, acc[k][2]);
          acc[k][3] = _mm512_fmadd_pd(w, x3, acc[k][3]);
        }
      }
      for (int64_t k = 0; k < mn; k++) {
        float *d = yg + (m0 + k) * g->ocol + oh * g->wo + ow0;
        for (int j = 0; j < 4 && 8 * j < len; j++) {
          __m256 v = _mm512_cvtpd_ps(acc[k][j]);
          if (relu & DD_SGEMM_RELU) v = _mm256_max_ps(v, _mm256_setzero_ps());
          int64_t n = len - 8 * j < 8 ? len - 8 * j : 8;
          _mm256_mask_storeu_ps(d + 8 * j, (__mmask8)((1u << n) - 1u), v);
        }
      }
    }
  }
}

static int exact_forward_avx512(const conv_geom *g, const float *xg, const float *wg,
                                const float *bg, int relu, float *yg) {
  if (g->kcol > CONV_EXACT_VTAPS) return 0;
  int64_t chunks = (g->wo + CONV_EXACT_VCOLS - 1) / CONV_EXACT_VCOLS, jobs = g->ho * chunks;
#pragma omp parallel for if (g->mg * g->ocol * g->kcol > DD_PAR_MIN) schedule(static)
  for (int64_t job = 0; job < jobs; job++) exact_job_avx512(g, xg, wg, bg, relu, yg, chunks, job);
  return 1;
}
#endif

static void exact_forward(const conv_geom *g, const float *xg, const float *wg, const float *bg,
                          int relu, float *yg) {
#ifdef DD_AVX512_KERNELS
  if (g->avx512 && exact_forward_avx512(g, xg, wg, bg, relu, yg)) return;
#endif
  int64_t chunks = (g->wo + CONV_EXACT_COLS - 1) / CONV_EXACT_COLS;
  int64_t mblocks = (g->mg + CONV_EXACT_M - 1) / CONV_EXACT_M;
  int64_t jobs = mblocks * g->ho * chunks;
#pragma omp parallel for if (g->mg * g->ocol * g->kcol > DD_PAR_MIN) schedule(static)
  for (int64_t job = 0; job < jobs; job++) {
    int64_t m0 = job / (g->ho * chunks) * CONV_EXACT_M, oh = job / chunks % g->ho;
    int64_t mn = g->mg - m0 < CONV_EXACT_M ? g->mg - m0 : CONV_EXACT_M;
    int64_t ow0 = job % chunks * CONV_EXACT_COLS;
    int64_t len = g->wo - ow0 < CONV_EXACT_COLS ? g->wo - ow0 : CONV_EXACT_COLS;
    double acc[CONV_EXACT_M][CONV_EXACT_COLS]; /* (mn, len) */
    double xd[CONV_EXACT_COLS];                 /* (len) one tap's inputs */
    for (int64_t mi = 0; mi < mn; mi++) {
      double b0 = bg ? (double)bg[m0 + mi] : 0.0;
      for (int64_t i = 0; i < len; i++) acc[mi][i] = b0;
    }
    for (int64_t r = 0; r < g->kcol; r++) {
      int64_t o0, o1, off;
      const float *row = exact_tap(g, xg, oh, r, &off, &o0, &o1);
      if (!row) continue;
      if (o0 < ow0) o0 = ow0;
      if (o1 > ow0 + len) o1 = ow0 + len;
      if (o1 <= o0) continue;
      for (int64_t ow = o0; ow < o1; ow++) xd[ow - ow0] = (double)row[ow * g->sw + off];
      /* a product of two floats is exact in double, so with or without a fused multiply-add
       * (contracted or not, vector body or tail) each step rounds once, the same way */
      for (int64_t mi = 0; mi < mn; mi++) {
        double wv = (double)wg[(m0 + mi) * g->kcol + r], *am = acc[mi];
#pragma omp simd
        for (int64_t i = o0 - ow0; i < o1 - ow0; i++) am[i] += wv * xd[i];
      }
    }
    for (int64_t mi = 0; mi < mn; mi++) {
      float *d = yg + (m0 + mi) * g->ocol + oh * g->wo + ow0;
      for (int64_t i = 0; i < len; i++) {
        float v = (float)acc[mi][i];
        d[i] = (relu & DD_SGEMM_RELU) && !(v > 0.f) ? 0.f : v;
      }
    }
  }
}

/* y_g = bias + W_g * col(x_g), block by block; relu (DD_SGEMM_RELU or 0): then max(0, .);
 * relu may carry DD_SGEMM_EXACT too. */
static void fused_forward(const conv_geom *g, const float *xg, const float *wg,
                          const float *bg, int relu, float *yg) {
  const int64_t nb = CONV_NB(g), kb = CONV_KB(g);
  int64_t sc = stage_cols(g, g->mg), step = sc ? sc : nb;
  int64_t stages = (g->ocol + step - 1) / step;
  int stream = g->avx512 && sc && g->mg * g->ocol * (int64_t)sizeof(float) >= CONV_STREAM_MIN;
#pragma omp parallel if (g->mg * g->ocol * g->kcol > 4 * DD_PAR_MIN)
  {
#pragma omp for schedule(static) nowait
    for (int64_t si = 0; si < stages; si++) {
      float buf[CONV_BUF] __attribute__((aligned(64)));
      float stage[CONV_STAGE] __attribute__((aligned(64)));
      int64_t s0 = si * step, sw = g->ocol - s0 < step ? g->ocol - s0 : step;
      int64_t ldc = sc ? sc : g->ocol;
      for (int64_t j0 = s0; j0 < s0 + sw; j0 += nb) {
        int64_t nw = s0 + sw - j0 < nb ? s0 + sw - j0 : nb;
        for (int64_t r0 = 0; r0 < g->kcol; r0 += kb) {
          int64_t kc = g->kcol - r0 < kb ? g->kcol - r0 : kb;
          pack_block(g, xg, j0, nw, r0, r0 + kc, buf);
          int last = r0 + kc >= g->kcol;
          conv_gemm(g, g->mg, nw, kc, wg + r0, g->kcol, 1, buf, nb,
                    sc ? stage + (j0 - s0) : yg + j0, ldc,
                    (r0 > 0) | (relu & DD_SGEMM_EXACT) | (last ? relu : 0), bg, 0);
        }
      }
      for (int64_t m = 0; sc && m < g->mg; m++)
        store_row(yg + m * g->ocol + s0, stage + m * sc, sw, stream);
    }
#ifdef DD_AVX512_KERNELS
    if (stream) _mm_sfence(); /* the streamed stores, before the barrier that ends the region */
#endif
  }
}

/* The end of the block of rows of the column matrix that starts at row r0 (a block
 * boundary) and ends by r_hi (a channel boundary): as many whole channels as CONV_KB rows
 * hold, or, for kernels of more than CONV_KB taps, CONV_KB rows counted from the channel's
 * first.  The blocks are then the same however the rows are shared among threads, and so is
 * the order of the adds into each element of dx: unpack_add_block adds a block's entries
 * output row by output row, summing the taps of a kernel row first, so a block boundary that
 * moved with the number of threads would regroup those sums and round differently. */
static int64_t row_block_end(const conv_geom *g, int64_t r0, int64_t r_hi) {
  int64_t khw = g->kh * g->kw, kb = CONV_KB(g), end;
  if (khw <= kb) {
    end = r0 + kb / khw * khw;
  } else {
    int64_t channel_end = (r0 / khw + 1) * khw;
    end = r0 + kb < channel_end ? r0 + kb : channel_end;
  }
  return end < r_hi ? end : r_hi;
}

/* dx_g += col2im(W_g^T * dY_g), block by block.  Two threads never add into one element of
 * dx: each owns either a range of input channels (all columns) or, with too few channels to
 * share evenly, a range of input rows, for which it computes every output row that reaches
 * them (the few output rows at the seams are computed twice, once on each side).  Either
 * way each element of dx receives the same terms in the same order, whatever the number of
 * threads: the row blocks are fixed by row_block_end, and the column blocks lie on one grid
 * of CONV_NB columns from column 0 (a range of input rows starts its columns on that grid). */
static void fused_backward_data(const conv_geom *g, const float *wg, const float *dyg,
                                float *dxg) {
  int64_t khw = g->kh * g->kw, nb = CONV_NB(g);
  int64_t sc = stage_cols(g, g->mg), step = sc ? sc : nb;
  /* A = W_g^T has row stride 1; with a single row (kcol 1) that stride is never used, and
   * dd_sgemm's cblas fallback takes A for untransposed then, with the row stride as its
   * leading dimension, which must be at least mg. */
  int64_t ars = g->kcol == 1 ? g->mg : 1;
#pragma omp parallel if (g->mg * g->ocol * g->kcol > 4 * DD_PAR_MIN)
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t r_lo = 0, r_hi = g->kcol, ih0 = 0, ih1 = g->h, j_lo = 0, j_hi = g->ocol;
    if (g->cg % nt == 0 || g->cg >= 4 * nt) {
      r_lo = g->cg * t / nt * khw;
      r_hi = g->cg * (t + 1) / nt * khw;
    } else {
      ih0 = g->h * t / nt;
      ih1 = g->h * (t + 1) / nt;
      /* output rows oh with ih0 <= oh*sh - ph + ki*dh < ih1 for some tap ki */
      int64_t lo = ih0 + g->ph - (g->kh - 1) * g->dh, hi = ih1 - 1 + g->ph;
      int64_t oh_lo = lo <= 0 ? 0 : (lo + g->sh - 1) / g->sh;
      int64_t oh_hi = hi < 0 ? 0 : hi / g->sh + 1;
      if (oh_hi > g->ho) oh_hi = g->ho;
      if (oh_lo > oh_hi) oh_lo = oh_hi;
      j_lo = oh_lo * g->wo / nb * nb;
      j_hi = oh_hi * g->wo;
    }
    float buf[CONV_BUF] __attribute__((aligned(64)));
    float stage[CONV_STAGE] __attribute__((aligned(64)));
    for (int64_t s0 = j_lo; s0 < j_hi; s0 += step) {
      int64_t sw = j_hi - s0 < step ? j_hi - s0 : step;
      int64_t ldb = sc ? sc : g->ocol;
      for (int64_t m = 0; sc && m < g->mg; m++) {
        const float *src = dyg + m * g->ocol + s0;
        memcpy(stage + m * sc, src, (size_t)sw * sizeof *src);
        /* the next stage's lines, on their way while this one is computed */
        for (int64_t q = sw; q < 2 * sw && s0 + q < j_hi; q += 16)
          __builtin_prefetch(src + q, 0, 2);
      }
      for (int64_t j0 = s0; j0 < s0 + sw; j0 += nb) {
        int64_t nw = s0 + sw - j0 < nb ? s0 + sw - j0 : nb;
        for (int64_t r0 = r_lo, r1; r0 < r_hi; r0 = r1) {
          r1 = row_block_end(g, r0, r_hi);
          int64_t kc = r1 - r0;
          conv_gemm(g, kc, nw, g->mg, wg + r0, ars, g->kcol, sc ? stage + (j0 - s0) : dyg + j0,
                   ldb, buf, nb, 0, NULL, 0);
          unpack_add_block(g, buf, j0, nw, r0, r1, ih0, ih1, dxg);
        }
      }
    }
  }
}

/* The plan of ops/depthwise.c for this geometry; 0 when it does not take it. */
static int dw_prepare(const conv_geom *g, dd_dw_plan *p) {
  dd_dw_geom dg = {g->h, g->w, g->ho, g->wo, g->kh, g->kw, g->sh, g->sw, g->dh, g->dw,
                   g->ph, g->pw};
  return dd_dw_prepare(&dg, p);
}

/* Depthwise forward through ops/depthwise.c: 16 planes at a time in the vector lanes where
 * it can (no channel multiplier, AVX-512), else one plane per task; the activation `act`
 * (DD_ACT_*) folded in; the lanes also sum the output planes into `sums` (when not NULL and
 * room enough) and set sums->ok.  Returns 0 when it left a SiLU or HardSwish undone (the
 * planes do only Relu). */
/* On the generic path the lanes (8 channels a pixel) beat the planes on output planes of at
 * most this many pixels (28 x 28) and do not above: on a Zen 3, one thread (CPU time, two runs
 * each, beside a CI run), EfficientNet-B0's forward 20.4-20.7 ms with this bound, 20.7-25.0
 * with 3136 pixels (56 x 56), 21.0-26.0 with every plane (22.0 with none); MobileNet v3
 * 3.2-3.4, 3.3-4.5 and 3.3-4.3 (5.5 with none). */
#define GENERIC_LANES_PIXELS 784

static int depthwise_forward_vec(const conv_geom *g, const dd_dw_plan *dg, const float *x,
                                 const float *wt, const float *bias, int act, float *y,
                                 dd_plane_sums *sums) {
  if (g->mg == 1 && dd_dw_forward_s2(&dg->g, g->n, g->m, x, wt, bias, y, act,
                                     sums ? sums->sum : NULL)) {
    if (sums) sums->ok = 1;
    return 1;
  }
  if (sums && g->mg == 1 && sums->nparts >= dd_dw_lanes_parts(&dg->g, g->n, g->m) &&
      dd_dw_forward_lanes_sums(&dg->g, g->n, g->m, x, wt, bias, y, act, sums->sum,
                               sums->part)) {
    sums->ok = 1;
    return 1;
  }
  if (g->mg == 1 && (dd_kernels_avx512() || g->ocol <= GENERIC_LANES_PIXELS) &&
      dd_dw_forward_lanes(&dg->g, g->n, g->m, x, wt, bias, y, act, 1))
    return 1;
  int relu = act == DD_ACT_RELU;
#pragma omp parallel for if (g->n * g->m * g->ocol * g->kh * g->kw > DD_PAR_MIN) schedule(static)
  for (int64_t nm = 0; nm < g->n * g->m; nm++) {
    int64_t n = nm / g->m, m = nm % g->m;
    dd_dw_forward(dg, x + (n * g->c + m / g->mg) * g->h * g->w, wt + m * g->kh * g->kw,
                  bias ? bias[m] : 0.f, y + nm * g->ocol, relu);
  }
  return act < DD_ACT_SILU;
}

/* Depthwise data gradient through ops/depthwise.c: channel c collects its mg outputs. */
static void depthwise_backward_vec(const conv_geom *g, const dd_dw_plan *dg, const float *wt,
                                   const float *dy, float *dx) {
#pragma omp parallel for if (g->n * g->m * g->ocol * g->kh * g->kw > DD_PAR_MIN) schedule(static)
  for (int64_t nc = 0; nc < g->n * g->c; nc++) {
    int64_t n = nc / g->c, c = nc % g->c;
    for (int64_t m = c * g->mg; m < (c + 1) * g->mg; m++)
      dd_dw_backward_data(dg, wt + m * g->kh * g->kw, dy + (n * g->m + m) * g->ocol,
                          dx + nc * g->h * g->w);
  }
}

/* Depthwise weight gradient through ops/depthwise.c: one output channel per task, its taps
 * summed over the images in double. */
static void depthwise_weights_vec(const conv_geom *g, const dd_dw_plan *dg, const float *x,
                                  const float *dy, float *dw) {
  int64_t taps = g->kh * g->kw;
#pragma omp parallel for if (g->n * g->m * g->ocol * taps > DD_PAR_MIN) schedule(static)
  for (int64_t m = 0; m < g->m; m++) {
    double dk[DD_DW_TAPS] = {0};
    for (int64_t n = 0; n < g->n; n++)
      dd_dw_backward_weights(dg, x + (n * g->c + m / g->mg) * g->h * g->w,
                             dy + (n * g->m + m) * g->ocol, dk);
    for (int64_t t = 0; t < taps; t++) dw[m * taps + t] += (float)dk[t];
  }
}

/* Depthwise forward: output channel m of image n reads input channel m / mg only. */
static void depthwise_forward(const conv_geom *g, const float *x, const float *wt,
                              const float *bias, float *y) {
#pragma omp parallel for if (g->n * g->m * g->ocol * g->kh * g->kw > DD_PAR_MIN) schedule(static)
  for (int64_t nm = 0; nm < g->n * g->m; nm++) {
    int64_t n = nm / g->m, m = nm % g->m;
    const float *src = x + (n * g->c + m / g->mg) * g->h * g->w;
    const float *k = wt + m * g->kh * g->kw;
    float *dst = y + nm * g->ocol;
    float b0 = bias ? bias[m] : 0.f;
    for (int64_t i = 0; i < g->ocol; i++) dst[i] = b0;
    for (int64_t ki = 0; ki < g->kh; ki++)
      for (int64_t kj = 0; kj < g->kw; kj++) {
        float kv = k[ki * g->kw + kj];
        int64_t o0, o1;
        col_range(g, kj, &o0, &o1);
        int64_t off = kj * g->dw - g->pw;
        for (int64_t oh = 0; oh < g->ho; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki * g->dh;
          if (ih < 0 || ih >= g->h) continue;
          const float *row = src + ih * g->w;
          float *d = dst + oh * g->wo;
#pragma omp simd
          for (int64_t ow = o0; ow < o1; ow++) d[ow] += kv * row[ow * g->sw + off];
        }
      }
  }
}

/* Depthwise backward w.r.t. x, split by input channel: channel c collects from its mg
 * output channels. */
static void depthwise_backward(const conv_geom *g, const float *wt, const float *dy, float *dx) {
#pragma omp parallel for if (g->n * g->m * g->ocol * g->kh * g->kw > DD_PAR_MIN) schedule(static)
  for (int64_t nc = 0; nc < g->n * g->c; nc++) {
    int64_t n = nc / g->c, c = nc % g->c;
    float *dst = dx + nc * g->h * g->w;
    for (int64_t m = c * g->mg; m < (c + 1) * g->mg; m++) {
      const float *k = wt + m * g->kh * g->kw;
      const float *src = dy + (n * g->m + m) * g->ocol;
      for (int64_t ki = 0; ki < g->kh; ki++)
        for (int64_t kj = 0; kj < g->kw; kj++) {
          float kv = k[ki * g->kw + kj];
          int64_t o0, o1;
          col_range(g, kj, &o0, &o1);
          int64_t off = kj * g->dw - g->pw;
          for (int64_t oh = 0; oh < g->ho; oh++) {
            int64_t ih = oh * g->sh - g->ph + ki * g->dh;
            if (ih < 0 || ih >= g->h) continue;
            float *row = dst + ih * g->w;
            const float *s = src + oh * g->wo;
#pragma omp simd
            for (int64_t ow = o0; ow < o1; ow++) row[ow * g->sw + off] += kv * s[ow];
          }
        }
    }
  }
}

#ifdef DD_AVX512_KERNELS
/* ---- the direct path: 3x3, stride 1, pad 1, few channels (AVX-512) ----------------------
 * The training cnn's convolutions (3 -> 8 channels on 32x32, 8 -> 16 on 16x16) are too
 * narrow for im2col and 8-row product tiles (a third to a half of each tile's work is
 * padding, and the column matrix is copied and transposed for a few dozen products per
 * pixel) and too narrow for Winograd's transforms to pay.  Here the convolution is computed
 * straight from the NCHW planes: 16 output columns a vector, a block of output channels in
 * registers, every tap a masked load of the input row shifted by -1, 0 or +1 (the masks
 * give the zero padding) and one broadcast weight per channel.  The data gradient is the
 * same kernel on dY with the flipped, transposed kernel; the weight gradient keeps 8
 * channels x 3 taps of 16-lane partial sums in registers, added into doubles every
 * CONV_DW_K pixels (a fixed grid: the same sums on any thread count). */
/* wp[((b * ci + c) * 9 + t) * mb + k] = the weight of output channel b*mb + k, input channel
 * c, tap t (0 for channels past m), from wt (m, ci, 3, 3); flip: from the data gradient's
 * kernel instead, wt (ci, m, 3, 3) read as w'[k][c][t] = wt[c][k][8 - t]. */
static void direct_pack(const float *wt, int64_t m, int64_t ci, int mb, int flip, float *wp) {
  int64_t blocks = (m + mb - 1) / mb;
  for (int64_t b = 0; b < blocks; b++)
    for (int64_t c = 0; c < ci; c++)
      for (int t = 0; t < 9; t++)
        for (int k = 0; k < mb; k++) {
          int64_t o = b * mb + k;
          float v = 0.f;
          if (o < m) v = flip ? wt[(c * m + o) * 9 + 8 - t] : wt[(o * ci + c) * 9 + t];
          wp[((b * ci + c) * 9 + t) * mb + k] = v;
        }
}

/* The accumulators are named variables, not an array: GCC keeps an array of vectors on the
 * stack (a load and a store around every multiply-add) even when its loops are unrolled. */
#define DR_REP8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define DR_REP16(X) DR_REP8(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

/* One output row oh of one image: y (m, h, w) row oh = (accumulate ? y : bias) + the 3x3
 * convolution of x (ci, h, w) with the packed kernel wp; relu: then max(0, .).  NV (1 or 2)
 * vectors of 16 columns and MB (8 or 16) channels at a time. */
static inline __attribute__((always_inline)) DD_TARGET_AVX512 void direct_row(
    const float *x, const float *wp, const float *bias, int64_t ci, int64_t m, int64_t h,
    int64_t w, int64_t oh, int accumulate, int relu, float *y, const int NV, const int MB) {
  const int64_t hw = h * w;
  for (int64_t j0 = 0; j0 < w; j0 += 16 * NV) {
    /* masks: tap column kj reads columns j0 + 16v + lane + kj - 1, inside [0, w) */
    const __mmask16 k00 = lanes(1 - j0, w + 1 - j0), k01 = lanes(-15 - j0, w - 15 - j0);
    const __mmask16 k10 = lanes(-j0, w - j0), k11 = lanes(-16 - j0, w - 16 - j0);
    const __mmask16 k20 = lanes(-1 - j0, w - 1 - j0), k21 = lanes(-17 - j0, w - 17 - j0);
    const __mmask16 mo0 = lanes(0, w - j0), mo1 = lanes(0, w - j0 - 16);
    for (int64_t m0 = 0; m0 < m; m0 += MB) {
#define DR_INIT(k)                                                                          \
  __m512 a##k##_0 = _mm512_setzero_ps(), a##k##_1 = _mm512_setzero_ps();                    \
  if (k < MB) {                                                                             \
    int64_t o = m0 + k < m ? m0 + k : m - 1; /* past m: computed, not stored */             \
    const float *yo = y + o * hw + oh * w + j0;                                             \
    a##k##_0 = accumulate ? _mm512_maskz_loadu_ps(mo0, yo) : _mm512_set1_ps(bias ? bias[o] : 0.f); \
    if (NV > 1) a##k##_1 = accumulate ? _mm512_maskz_loadu_ps(mo1, yo + 16) : a##k##_0;      \
  }
      DR_REP16(DR_INIT)
#undef DR_INIT
      const float *wb = wp + m0 / MB * ci * 9 * MB;
      for (int64_t c = 0; c < ci; c++)
        for (int ki = 0; ki < 3; ki++) {
          int64_t ih = oh + ki - 1;
          if (ih < 0 || ih >= h) continue;
          const float *row = x + (c * h + ih) * w + j0 - 1; /* masked: never read outside */
          const float *wt = wb + (c * 9 + ki * 3) * MB;
#define DR_FMA(k)                                                        \
  if (k < MB) {                                                          \
    __m512 wv = _mm512_set1_ps(wt[k]);                                   \
    a##k##_0 = _mm512_fmadd_ps(wv, x0, a##k##_0);                        \
    if (NV > 1) a##k##_1 = _mm512_fmadd_ps(wv, x1, a##k##_1);            \
  }
#define DR_TAP(kj, m0_, m1_)                                                             \
  {                                                                                      \
    __m512 x0 = _mm512_maskz_loadu_ps(m0_, row + kj);                                    \
    __m512 x1 = NV > 1 ? _mm512_maskz_loadu_ps(m1_, row + kj + 16) : _mm512_setzero_ps(); \
    DR_REP16(DR_FMA)                                                                     \
    wt += MB;                                                                            \
  }
          DR_TAP(0, k00, k01)
          DR_TAP(1, k10, k11)
          DR_TAP(2, k20, k21)
#undef DR_TAP
#undef DR_FMA
        }
#define DR_STORE(k)                                                          \
  if (k < MB && m0 + k < m) {                                                \
    float *yo = y + (m0 + k) * hw + oh * w + j0;                             \
    __m512 r0 = a##k##_0, r1 = a##k##_1;                                     \
    if (relu) {                                                              \
      r0 = _mm512_max_ps(r0, _mm512_setzero_ps());                           \
      r1 = _mm512_max_ps(r1, _mm512_setzero_ps());                           \
    }                                                                        \
    _mm512_mask_storeu_ps(yo, mo0, r0);                                      \
    if (NV > 1) _mm512_mask_storeu_ps(yo + 16, mo1, r1);                     \
  }
      DR_REP16(DR_STORE)
#undef DR_STORE
    }
  }
}

/* Output row oh of one image at stride 2: y (m, ho, wo) row oh = bias + the 3x3 convolution
 * at stride 2, pad 1, of x (ci, h, w) with the packed kernel wp (blocks of 16 channels);
 * 16 output columns a vector: output column j reads input columns
 * 2j - 1, 2j and 2j + 1, the even and odd lanes of two 16-lane loads at 2 j0 - 1 and 2 j0
 * (masked to [0, w): the padding), picked by one permutation each.  Each output is the
 * bias plus its taps in the order c, ki, kj by fused multiply-adds, as the im2col product
 * sums them; then the activation `act` (DD_ACT_*, ops/act.h). */
DD_TARGET_AVX512 static void direct_row_s2(const float *x, const float *wp, const float *bias,
                                           int64_t ci, int64_t m, int64_t h, int64_t w,
                                           int64_t ho, int64_t wo, int64_t oh, int act,
                                           float *y) {
  const int64_t ohw = ho * wo;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  /* the input rows of the next output row, into L1 while this one is computed: a network's
   * input comes from memory (the rest of the network evicted it), and rows a plane apart are
   * streams the hardware prefetcher takes up too late (the first load of each row was 40% of
   * this kernel's time by perf) */
  for (int64_t c = 0; c < ci; c++)
    for (int64_t ih = 2 * oh + 2; ih <= 2 * oh + 3 && ih < h; ih++)
      for (int64_t q = 0; q < w; q += 16)
        _mm_prefetch((const char *)(x + (c * h + ih) * w + q), _MM_HINT_T0);
  for (int64_t j0 = 0; j0 < wo; j0 += 16) {
    const int64_t p = 2 * j0; /* input column of tap kj = 1 at lane 0 */
    const __mmask16 u0 = lanes(1 - p, w + 1 - p), u1 = lanes(-15 - p, w - 15 - p);
    const __mmask16 v0 = lanes(-p, w - p), v1 = lanes(-16 - p, w - 16 - p);
    const __mmask16 mo = lanes(0, wo - j0);
    for (int64_t m0 = 0; m0 < m; m0 += 16) {
#define DS_INIT(k)                                                          \
  __m512 a##k##_0 = _mm512_set1_ps(bias && m0 + k < m ? bias[m0 + k] : 0.f);
      DR_REP16(DS_INIT)
#undef DS_INIT
      const float *wb = wp + m0 / 16 * ci * 9 * 16;
      for (int64_t c = 0; c < ci; c++)
        for (int ki = 0; ki < 3; ki++) {
          int64_t ih = 2 * oh + ki - 1;
          if (ih < 0 || ih >= h) continue;
          const float *row = x + (c * h + ih) * w + p; /* masked: never read outside */
          __m512 l0 = _mm512_maskz_loadu_ps(u0, row - 1), l1 = _mm512_maskz_loadu_ps(u1, row + 15);
          __m512 r0 = _mm512_maskz_loadu_ps(v0, row), r1 = _mm512_maskz_loadu_ps(v1, row + 16);
          __m512 t0 = _mm512_permutex2var_ps(l0, even, l1); /* columns 2j - 1 */
          __m512 t1 = _mm512_permutex2var_ps(r0, even, r1); /* 2j */
          __m512 t2 = _mm512_permutex2var_ps(r0, odd, r1);  /* 2j + 1 */
          const float *wt = wb + (c * 9 + ki * 3) * 16;
#define DS_FMA(k) a##k##_0 = _mm512_fmadd_ps(_mm512_set1_ps(wt[k]), xv, a##k##_0);
#define DS_TAP(tv)                                                                        \
  {                                                                                       \
    __m512 xv = tv;                                                                       \
    DR_REP16(DS_FMA)                                                                      \
    wt += 16;                                                                             \
  }
          DS_TAP(t0)
          DS_TAP(t1)
          DS_TAP(t2)
#undef DS_TAP
#undef DS_FMA
        }
#define DS_STORE(k)                                                                      \
  if (m0 + k < m) _mm512_mask_storeu_ps(y + (m0 + k) * ohw + oh * wo + j0, mo, dd_act16(a##k##_0, act));
      DR_REP16(DS_STORE)
#undef DS_STORE
    }
  }
}

/* y = conv3x3 at stride 2, pad 1 (direct_s2_geometry) of x for every image, one output row
 * of one image per job. */
static void direct_forward_s2(const conv_geom *g, const float *x, const float *wt,
                              const float *bias, int act, float *y, float *wp) {
  direct_pack(wt, g->m, g->c, 16, 0, wp);
  const int64_t jobs = g->n * g->ho;
#pragma omp parallel for if (jobs > 1 && g->n * g->m * g->ho * g->wo * g->c * 9 > 4 * DD_PAR_MIN) \
    schedule(static)
  for (int64_t j = 0; j < jobs; j++) {
    int64_t i = j / g->ho;
    direct_row_s2(x + i * g->c * g->h * g->w, wp, bias, g->c, g->m, g->h, g->w, g->ho, g->wo,
                  j % g->ho, act, y + i * g->m * g->ho * g->wo);
  }
}

/* The register blocking of a geometry: 16 columns x 16 channels for rows of at most 16
 * columns and more than 8 channels, else 32 columns x 8 channels. */
static int direct_mb(int64_t w, int64_t m) { return w <= 16 && m > 8 ? 16 : 8; }

/* Output row oh of image i (a job of direct_conv, in a function of its own: Clang does not
 * give an OpenMP region the target of the function around it). */
DD_TARGET_AVX512 static void direct_conv_row(const conv_geom *g, const float *x, int64_t ci,
                                             const float *wp, const float *bias, int64_t m,
                                             int accumulate, int relu, float *y, int mb, int64_t i,
                                             int64_t oh) {
  const int64_t h = g->h, w = g->w, hw = h * w;
  const float *xi = x + i * ci * hw;
  float *yi = y + i * m * hw;
  if (w <= 16 && mb == 16)
    direct_row(xi, wp, bias, ci, m, h, w, oh, accumulate, relu, yi, 1, 16);
  else if (w <= 16)
    direct_row(xi, wp, bias, ci, m, h, w, oh, accumulate, relu, yi, 1, 8);
  else
    direct_row(xi, wp, bias, ci, m, h, w, oh, accumulate, relu, yi, 2, 8);
}

/* y (n images of m x h x w) (+)= conv3x3(x (n, ci, h, w)) for the packed kernel wp (blocks
 * of direct_mb channels); one output row of one image per job. */
static void direct_conv(const conv_geom *g, int64_t n, const float *x, int64_t ci,
                        const float *wp, const float *bias, int64_t m, int accumulate, int relu,
                        float *y) {
  const int64_t h = g->h, hw = h * g->w, jobs = n * h;
  const int mb = direct_mb(g->w, m);
#pragma omp parallel for if (jobs > 1 && n * m * hw * ci * 9 > 4 * DD_PAR_MIN) schedule(static)
  for (int64_t j = 0; j < jobs; j++)
    direct_conv_row(g, x, ci, wp, bias, m, accumulate, relu, y, mb, j / h, j % h);
}

static void direct_forward(const conv_geom *g, const float *x, const float *wt,
                           const float *bias, int relu, float *y, float *wp) {
  direct_pack(wt, g->m, g->c, direct_mb(g->w, g->m), 0, wp);
  direct_conv(g, g->n, x, g->c, wp, bias, g->m, 0, relu, y);
}

/* dx (+)= the convolution of dy with the flipped, transposed kernel (stride 1, pad 1). */
static void direct_backward_data(const conv_geom *g, const float *wt, const float *dy,
                                 float *dx, int overwrite, float *wp) {
  direct_pack(wt, g->c, g->m, direct_mb(g->w, g->c), 1, wp);
  direct_conv(g, g->n, dy, g->m, wp, NULL, g->c, !overwrite, 0, dx);
}

/* dw (m, c, 3, 3) += sum over the images and pixels of dy[m][p] * x[c][p shifted by the
 * tap].  A job is one input channel, one kernel row and 8 output channels: 24 partial sums
 * of 16 lanes in registers, over every image in order. */
/* One job of direct_backward_weights (a function of its own: Clang does not give an OpenMP
 * region the target of the function around it). */
DD_TARGET_AVX512 static void direct_weights_job(const conv_geom *g, const float *x,
                                                const float *dy, float *dw, int64_t job) {
  const int64_t h = g->h, w = g->w, hw = h * w, c = g->c, m = g->m;
  const int64_t mblocks = (m + 7) / 8;
  {
    int64_t ci = job / (3 * mblocks), ki = job / mblocks % 3, m0 = job % mblocks * 8;
    double sum[8][3] = {{0}};
    const float *dyo[8]; /* past m: channel m - 1 again, computed, not stored */
    for (int k = 0; k < 8; k++) dyo[k] = dy + (m0 + k < m ? m0 + k : m - 1) * hw;
#define DW_DECL(k) __m512 a##k##_0 = _mm512_setzero_ps(), a##k##_1 = a##k##_0, a##k##_2 = a##k##_0;
    DR_REP8(DW_DECL)
#undef DW_DECL
    int64_t pix = 0;
    for (int64_t n = 0; n < g->n; n++) {
      const float *xc = x + (n * c + ci) * hw;
      const int64_t yoff = n * m * hw;
      for (int64_t oh = 0; oh < h; oh++) {
        int64_t ih = oh + ki - 1;
        if (ih >= 0 && ih < h) {
          const float *row = xc + ih * w;
          for (int64_t j0 = 0; j0 < w; j0 += 16) {
            const __mmask16 mo = lanes(0, w - j0);
            const __m512 x0 = _mm512_maskz_loadu_ps(lanes(1 - j0, w + 1 - j0), row + j0 - 1);
            const __m512 x1 = _mm512_maskz_loadu_ps(lanes(-j0, w - j0), row + j0);
            const __m512 x2 = _mm512_maskz_loadu_ps(lanes(-1 - j0, w - 1 - j0), row + j0 + 1);
            const int64_t at = yoff + oh * w + j0;
#define DW_FMA(k)                                                 \
  {                                                               \
    __m512 dv = _mm512_maskz_loadu_ps(mo, dyo[k] + at);           \
    a##k##_0 = _mm512_fmadd_ps(dv, x0, a##k##_0);                 \
    a##k##_1 = _mm512_fmadd_ps(dv, x1, a##k##_1);                 \
    a##k##_2 = _mm512_fmadd_ps(dv, x2, a##k##_2);                 \
  }
            DR_REP8(DW_FMA)
#undef DW_FMA
          }
        }
        pix += w;
        if (pix >= CONV_DW_K || (n == g->n - 1 && oh == h - 1)) { /* into the doubles */
#define DW_FLUSH(k)                                                \
  sum[k][0] += (double)_mm512_reduce_add_ps(a##k##_0);             \
  sum[k][1] += (double)_mm512_reduce_add_ps(a##k##_1);             \
  sum[k][2] += (double)_mm512_reduce_add_ps(a##k##_2);             \
  a##k##_0 = a##k##_1 = a##k##_2 = _mm512_setzero_ps();
          DR_REP8(DW_FLUSH)
#undef DW_FLUSH
          pix = 0;
        }
      }
    }
    for (int k = 0; k < 8 && m0 + k < m; k++)
      for (int d = 0; d < 3; d++) dw[((m0 + k) * c + ci) * 9 + ki * 3 + d] += (float)sum[k][d];
  }
}

static void direct_backward_weights(const conv_geom *g, const float *x, const float *dy,
                                    float *dw) {
  const int64_t hw = g->h * g->w, c = g->c, m = g->m;
  const int64_t mblocks = (m + 7) / 8, jobs = c * 3 * mblocks;
#pragma omp parallel for if (g->n * m * hw * c * 9 > 4 * DD_PAR_MIN) schedule(static)
  for (int64_t job = 0; job < jobs; job++) direct_weights_job(g, x, dy, dw, job);
}
#endif

/* Group gi of image n, on the im2col, 1x1 or exact paths. */
static void forward_group(const conv_geom *g, int exact, const float *x, const float *wt,
                          const float *bias, int relu, float *y, int64_t n, int64_t gi) {
  const float *bg = bias ? bias + gi * g->mg : NULL;
  const float *xg = x + (n * g->c + gi * g->cg) * g->h * g->w;
  const float *wg = wt + gi * g->mg * g->kcol;
  float *yg = y + (n * g->m + gi * g->mg) * g->ocol;
  if (exact && g->cg <= CONV_EXACT_DOUBLE_CH)
    exact_forward(g, xg, wg, bg, relu, yg);
  else if (g->pointwise)
    conv_gemm(g, g->mg, g->ocol, g->kcol, wg, g->kcol, 1, xg, g->ocol, yg, g->ocol, relu, bg, 1);
  else
    fused_forward(g, xg, wg, bg, relu, yg);
}

/* The forward of image n, all its groups. */
static void forward_image(const conv_geom *g, int exact, const float *x, const float *wt,
                          const float *bias, int relu, float *y, int64_t n) {
  for (int64_t gi = 0; gi < g->group; gi++) forward_group(g, exact, x, wt, bias, relu, y, n, gi);
}

/* Whether the groups of a grouped (not depthwise) convolution are shared among the threads
 * group by group, each computed as with one thread: RegNet's 3x3 convolutions have groups of
 * 8 channels, 6 to 55 of them, each a product of 8 rows that opened its own parallel region
 * (11-60 GFLOP/s on 2 threads). */
static int group_parallel(const conv_geom *g) {
  int64_t per = g->mg * g->ocol * g->kcol;
  return g->group > 1 && !g->depthwise && per <= CONV_BATCH_PAR_MAX &&
         g->n * g->group >= 2 * omp_get_max_threads() && g->n * g->group * per > 4 * DD_PAR_MIN;
}

#ifdef DD_AVX512_KERNELS
/* y's block of channels [m0, m0 + 16) and pixels [p0, p0 + 16) (those below m and hw) from ct
 * (hw x m), through the registers; with radd (y's layout), plus radd's block. */
DD_TARGET_AVX512 static void planes_block(const float *ct, int64_t hw, int64_t m, int64_t m0,
                                          int64_t p0, float *y, const float *radd) {
  dd_transpose16_block(ct + p0 * m + m0, m, y + m0 * hw + p0, hw, hw - p0 < 16 ? hw - p0 : 16,
                       m - m0 < 16 ? m - m0 : 16, radd ? radd + m0 * hw + p0 : NULL);
}
#endif

/* y (m x hw) = ct (hw x m) transposed, in 16 x 16 blocks through the registers (the AVX-512
 * kernels are the only ones that take this path; the loop below is for the others).  The
 * threads split the blocks the way dd_sgemm split the product that wrote ct (by rows, here
 * pixels, or by columns, here channels: dd_sgemm_splits_rows), so that each mostly reads
 * what its own core wrote: split the other way, half of ct crossed between the cores' caches
 * (MobileNet v3's 14x14 expansions gained nothing from a second thread). */
static void transpose_to_planes(const float *ct, int64_t hw, int64_t m, float *y,
                                const float *radd) {
  int by_pixels = dd_sgemm_splits_rows(hw, m, omp_get_max_threads());
  int64_t pb = (hw + 15) / 16, mb = (m + 15) / 16;
#pragma omp parallel for if (hw * m > DD_PAR_MIN) schedule(static)
  for (int64_t t = 0; t < pb * mb; t++) {
    int64_t m0 = (by_pixels ? t % mb : t / pb) * 16, p0 = (by_pixels ? t / mb : t % pb) * 16;
#ifdef DD_AVX512_KERNELS
    if (dd_kernels_avx512()) {
      planes_block(ct, hw, m, m0, p0, y, radd);
      continue;
    }
#endif
    for (int64_t o = m0; o < m0 + 16 && o < m; o++)
      for (int64_t q = p0; q < p0 + 16 && q < hw; q++)
        y[o * hw + q] = radd ? ct[q * m + o] + radd[o * hw + q] : ct[q * m + o];
  }
}

/* (below, with the weight gradient's paths) */
static void im2col(const conv_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col);

/* The n images' y (m x ocol each) = W x (+ bias, then the activation `act`, then radd when
 * not NULL: n x m x ocol) from x and pack, W^T packed (conv_t_geometry); scratch:
 * conv_t_scratch floats. */
static void conv_t_forward(const conv_geom *g, const float *x, const float *pack,
                           const float *bias, int act, float *y, float *scratch,
                           const float *radd) {
  int flags = (bias ? DD_SGEMM_COL_BIAS : 0) | dd_act_sgemm(act);
  const int64_t hw = g->ocol, m = g->m, in = g->c * g->h * g->w;
  float *ct = scratch, *col = scratch + hw * m;
  for (int64_t i = 0; i < g->n; i++) {
    const float *a = x + i * in;
    if (g->patch) { /* its column matrix: kcol x ocol */
      im2col(g, a, 0, g->ho, col);
      a = col;
    }
    dd_sgemm_packed(hw, m, g->kcol, a, 1, hw, pack, ct, m, flags, bias, 1, NULL);
    transpose_to_planes(ct, hw, m, y + i * m * hw, radd ? radd + i * m * hw : NULL);
  }
}

/* The pack plan_pack makes (plan/plan.h): W^T of a Conv on a small plane (conv_t_geometry),
 * in dd_sgemm_pack's layout; its bytes, 0 when the node takes none.  (A ConvScaled takes
 * none: scaling x instead of W, and the transposes, cost MobileNet v3 more than the tiles
 * gained, 1.76 against 1.64 ms on one core.) */
size_t dd_conv_pack_bytes(const dd_node *node, const dd_tensor *const *in);
float *dd_conv_pack(const dd_node *node, const dd_tensor *const *in, int parallel);
size_t dd_conv_pack_bytes(const dd_node *node, const dd_tensor *const *in) {
  const dd_tensor *x = in[0], *w = in[1];
  conv_geom g;
  if (!x || !w || !w->data || x->shape.ndim != 4 || w->shape.ndim != 4 ||
      conv_geometry(node->params, x, w, node->n_in > 2 ? in[2] : NULL, &g, NULL) ||
      !conv_t_geometry(&g))
    return 0;
  return (size_t)dd_sgemm_pack_floats(g.kcol, g.m) * sizeof(float);
}

/* The doubles of the dd_plane_sums of a depthwise convolution whose output a
 * GlobalAveragePool reads (plan_pool_sums): its planes' sums and the partial sums of the
 * lanes' bands; 0 when its path sums nothing (another kind of convolution, the generic
 * kernels, a row too wide for the lanes). */
int64_t dd_conv_sums_doubles(const dd_node *node, const dd_tensor *const *in, int64_t *nparts);
int64_t dd_conv_sums_doubles(const dd_node *node, const dd_tensor *const *in, int64_t *nparts) {
  const dd_tensor *x = in[0], *w = in[1];
  conv_geom g;
  dd_dw_plan dg;
  if (!x || !w || x->shape.ndim != 4 || w->shape.ndim != 4 ||
      conv_geometry(node->params, x, w, node->n_in > 2 ? in[2] : NULL, &g, NULL) ||
      !g.depthwise || g.mg != 1 || !dw_prepare(&g, &dg))
    return 0;
  *nparts = dd_dw_lanes_parts(&dg.g, g.n, g.m);
  return *nparts ? g.n * g.m + *nparts : 0;
}

/* W^T (kcol x m) packed: W (m x kcol) is W^T stored transposed. */
float *dd_conv_pack(const dd_node *node, const dd_tensor *const *in, int parallel) {
  const dd_tensor *w = in[1];
  if (!dd_conv_pack_bytes(node, in)) return NULL;
  int64_t kcol = dd_tensor_numel(w) / w->shape.d[0];
  return dd_sgemm_pack_new(kcol, w->shape.d[0], dd_f32(w), kcol, 1, parallel);
}

/* The forward by the path the geometry takes, with the folded activation `act` (DD_ACT_*):
 * returns 0 when the path left a SiLU or HardSwish undone (conv_forward_call then runs its
 * op's pass over y). */
static int conv_forward_paths(const conv_geom *gp, const dd_op_call *call, const float *x,
                              const float *wt, const float *bias, int act, float *y,
                              float *col) {
  conv_geom g = *gp;
  if (call->prep && conv_t_geometry(&g) && !g.bf16) { /* W^T packed by the plan */
    conv_t_forward(&g, x, call->prep, bias, act, y, col, NULL);
    return 1;
  }
#ifdef DD_AVX512_KERNELS
  if (g.avx512 && direct_geometry(&g) && !call->exact && !g.bf16) {
    direct_forward(&g, x, wt, bias, act == DD_ACT_RELU, y, col);
    return act < DD_ACT_SILU;
  }
  if (g.avx512 && direct_s2_geometry(&g) && !call->exact && !g.bf16) {
    direct_forward_s2(&g, x, wt, bias, act, y, col);
    return 1;
  }
#endif
  /* dd_sgemm's bits: the folded Relu (or SiLU, not for dd_bgemm), and every column in the
   * same order under exact */
  int relu = (act == DD_ACT_RELU || !g.bf16 ? dd_act_sgemm(act) : 0) |
             (call->exact ? DD_SGEMM_EXACT : 0);
  dd_dw_plan dg;
  if (g.depthwise && dw_prepare(&g, &dg))
    return depthwise_forward_vec(&g, &dg, x, wt, bias, act, y, call->add_in ? NULL : call->sums);
  if (g.depthwise) {
    depthwise_forward(&g, x, wt, bias, y);
    if (relu & DD_SGEMM_RELU) {
      int64_t n = g.n * g.m * g.ocol;
#pragma omp parallel for simd if (parallel : n > DD_PAR_MIN) schedule(static)
      for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0.f ? y[i] : 0.f;
    }
    return act < DD_ACT_SILU;
  }
  if (g.group > 1 && g.cg == g.mg && g.cg <= 16 && !g.bf16) {
    /* groups of up to 16 channels (RegNet's 8) with the output channels in the vector
     * lanes, as the depthwise planes are (ops/depthwise.h), when the kernels take them */
    dd_dw_geom dg = {g.h, g.w, g.ho, g.wo, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.ph, g.pw};
    if (dd_group_forward_lanes(&dg, g.n, g.m, (int)g.cg, x, wt, bias, y, act, 1)) return 1;
  }
  if (g.wino) {
    dd_wino_conv fw, bw;
    wino_convs(&g, &fw, &bw);
    for (int64_t n = 0; n < g.n; n++)
      dd_wino_run(&fw, x + n * g.c * g.h * g.w, wt, bias, y + n * g.m * g.ocol,
                  relu & DD_SGEMM_RELU, col);
    return act < DD_ACT_SILU;
  }
  /* Not `parallel for if (...)`: a region the if turns off is still a level of nesting, and
   * libgomp starts new threads for every parallel region opened inside one (the products
   * below open theirs) instead of taking them from its pool. */
  if (group_parallel(&g)) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < g.n * g.group; j++)
      forward_group(&g, call->exact, x, wt, bias, relu, y, j / g.group, j % g.group);
  } else if (batch_parallel(&g)) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < g.n; n++) forward_image(&g, call->exact, x, wt, bias, relu, y, n);
  } else {
    for (int64_t n = 0; n < g.n; n++) forward_image(&g, call->exact, x, wt, bias, relu, y, n);
  }
  /* the products applied it, but not the double sums of an exact first layer, nor dd_bgemm */
  return act < DD_ACT_SILU || (!(call->exact && g.cg <= CONV_EXACT_DOUBLE_CH) && !g.bf16);
}

/* call->relu_out (DD_OP_FOLD_RELU): the plan folded the Relu reading y into this node, and
 * y = max(0, conv); call->act_out (DD_OP_FOLD_ACT): the SiLU or HardSwish after it, in the
 * kernel's registers where the path can, else by the op's pass over y after. */
static void conv_forward_call(const dd_node *node, const dd_tensor *const *in,
                              dd_tensor *const *out, void *scratch, const dd_op_call *call) {
  if (!out[0]) return;
  const dd_tensor *bt = node->n_in > 2 ? in[2] : NULL;
  conv_geom g;
  conv_geometry(node->params, in[0], in[1], bt, &g, NULL);
  g.wino &= !call->exact;
  g.bf16 = call->bf16 && !call->exact && dd_bf16_kernel() != DD_BF16_NONE;
  const float *x = dd_f32(in[0]), *wt = dd_f32(in[1]), *bias = bt ? dd_f32(bt) : NULL;
  float *y = dd_f32(out[0]);
  int act = call->relu_out ? DD_ACT_RELU : call->act_out;
  const float *radd = call->add_in;
  if (call->sums) call->sums->ok = 0; /* until the path writes them */
  if (radd && call->prep && conv_t_geometry(&g) && !g.bf16) { /* the Add as y is transposed */
    conv_t_forward(&g, x, call->prep, bias, act, y, scratch, radd);
    return;
  }
  if (radd && g.pointwise && g.group == 1 && !call->exact && !g.bf16) { /* as tiles are stored */
    int flags = dd_act_sgemm(act), done = 1;
    for (int64_t n = 0; n < g.n && done; n++)
      done = dd_sgemm_scaled_add(g.m, g.ocol, g.c, wt, g.c, 1, x + n * g.c * g.ocol, g.ocol, NULL,
                                 y + n * g.m * g.ocol, g.ocol, flags, bias, 1,
                                 radd + n * g.m * g.ocol);
    if (done) return; /* (the generic kernels compute nothing: n == 0 then) */
  }
  if (!conv_forward_paths(&g, call, x, wt, bias, act, y, scratch))
    dd_act_rows(y, g.n * g.m * g.ocol, act, 1);
  if (radd) dd_add_rows(y, radd, g.n * g.m * g.ocol);
}

static void conv_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  static const dd_op_call none = {0, 0, 0};
  conv_forward_call(node, in, out, scratch, &none);
}

/* ---- backward: a dispatcher over the gradients of the bias, the data and the weights ---- */

/* Whether the data gradient's path writes dx outright instead of adding into it: the
 * Winograd and 1x1 products can, and do when dx is handed over fresh. */
static int backward_data_overwrites(const conv_geom *g, int dx_fresh) {
  return dx_fresh && (g->direct || g->wino || g->pointwise);
}

/* A fresh gradient (DD_OP_GRAD_FRESH) holds garbage: zeroed here, except dx when its path
 * overwrites it; every other path adds, into zeros. */
static void backward_clear_fresh(const dd_node *node, dd_tensor *const *din, uint64_t fresh,
                                 int dx_overwritten) {
  for (int j = 0; j < node->n_in && j < 3; j++)
    if (din[j] && (fresh >> j & 1) && !(j == 0 && dx_overwritten))
      memset(din[j]->data, 0, (size_t)dd_tensor_numel(din[j]) * sizeof(float));
}

/* db (M) += the sum of dy (N, M, ho*wo) over images and positions, in double: eight partial
 * sums (position i into sum i % 8, which vectorizes without reordering any sum), added in a
 * fixed order at the end of each plane. */
static void backward_bias(const conv_geom *g, const float *dy, float *db) {
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t m = 0; m < g->m; m++) {
      const float *s = dy + (n * g->m + m) * g->ocol;
      double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= g->ocol; i += 8)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) a[j] += (double)s[i + j];
      for (int j = 0; i < g->ocol; i++, j++) a[j] += (double)s[i];
      db[m] += (float)(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
    }
}

/* Winograd: dx (N, C, H, W) (+)= the same algorithm on dy with the flipped, transposed
 * kernel; col is the scratch buffer. */
static void backward_data_winograd(const conv_geom *g, const float *wt, const float *dy,
                                   float *dx, int overwrite, float *col) {
  dd_wino_conv fw, bw;
  wino_convs(g, &fw, &bw);
  for (int64_t n = 0; n < g->n; n++)
    dd_wino_run(&bw, dy + n * g->m * g->ocol, wt, NULL, dx + n * g->c * g->h * g->w, !overwrite,
                col);
}

/* 1x1: dX_g (cg, H*W) (+)= W_g^T (cg, mg) * dY_g (mg, H*W), straight on the NCHW data. */
static void backward_data_pointwise(const conv_geom *g, const float *wt, const float *dy,
                                    float *dx, int overwrite) {
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t gi = 0; gi < g->group; gi++)
      conv_gemm(g, g->cg, g->ocol, g->mg, wt + gi * g->mg * g->kcol, 1, g->kcol,
               dy + (n * g->m + gi * g->mg) * g->ocol, g->ocol,
               dx + (n * g->c + gi * g->cg) * g->h * g->w, g->ocol, !overwrite, NULL, 1);
}

/* The data gradient of image n (all its groups) on the im2col path. */
static void backward_data_image(const conv_geom *g, const float *wt, const float *dy, float *dx,
                                int64_t n) {
  for (int64_t gi = 0; gi < g->group; gi++)
    fused_backward_data(g, wt + gi * g->mg * g->kcol, dy + (n * g->m + gi * g->mg) * g->ocol,
                        dx + (n * g->c + gi * g->cg) * g->h * g->w);
}

/* General: dX_g += col2im(W_g^T * dY_g), block by block (fused_backward_data). */
static void backward_data_general(const conv_geom *g, const float *wt, const float *dy,
                                  float *dx) {
  /* as in conv_forward_call: no region the if turns off around the blocks' own regions */
  if (batch_parallel(g)) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < g->n; n++) backward_data_image(g, wt, dy, dx, n);
  } else {
    for (int64_t n = 0; n < g->n; n++) backward_data_image(g, wt, dy, dx, n);
  }
}

/* The data gradient dx (N, C, H, W) on the path of the geometry. */
static void backward_data(const conv_geom *g, const float *wt, const float *dy, float *dx,
                          int overwrite, float *col) {
  dd_dw_plan dg;
#ifdef DD_AVX512_KERNELS
  if (g->direct) {
    direct_backward_data(g, wt, dy, dx, overwrite, col);
    return;
  }
#endif
  if (g->depthwise && dw_prepare(g, &dg)) depthwise_backward_vec(g, &dg, wt, dy, dx);
  else if (g->depthwise) depthwise_backward(g, wt, dy, dx);
  else if (g->wino) backward_data_winograd(g, wt, dy, dx, overwrite, col);
  else if (g->pointwise) backward_data_pointwise(g, wt, dy, dx, overwrite);
  else backward_data_general(g, wt, dy, dx);
}

/* Depthwise: no column buffer, one dot product (in double) per weight of dW_g (mg, kh*kw). */
static void backward_weights_depthwise(const conv_geom *g, const float *x, const float *dy,
                                       float *dw) {
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t gi = 0; gi < g->group; gi++) {
      const float *xg = x + (n * g->c + gi * g->cg) * g->h * g->w;
      const float *dyg = dy + (n * g->m + gi * g->mg) * g->ocol;
      for (int64_t r = 0; r < g->mg * g->kcol; r++) {
        int64_t m = r / g->kcol, ki = r % g->kcol / g->kw, kj = r % g->kw;
        int64_t o0, o1;
        col_range(g, kj, &o0, &o1);
        double acc = 0;
        for (int64_t oh = 0; oh < g->ho; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki * g->dh;
          if (ih < 0 || ih >= g->h) continue;
          const float *row = xg + ih * g->w, *d = dyg + m * g->ocol + oh * g->wo;
          int64_t off = kj * g->dw - g->pw;
          for (int64_t ow = o0; ow < o1; ow++) acc += (double)d[ow] * row[ow * g->sw + off];
        }
        dw[gi * g->mg * g->kcol + r] += (float)acc;
      }
    }
}

/* dW_g (mg, kcol) += dY_g's columns [p0, p0 + np) (mg, np) * bt (np, kcol): the product into
 * tmp (mg x kcol), then added, so each element's sum runs over at most CONV_DW_K terms. */
static void weights_partial(const conv_geom *g, const float *dyg, int64_t p0, int64_t np,
                            const float *bt, float *dwg, float *tmp) {
  const int64_t nw = g->mg * g->kcol;
  dd_sgemm(g->mg, g->kcol, np, dyg + p0, g->ocol, 1, bt, g->kcol, tmp, g->kcol, 0, NULL, 1);
#pragma omp parallel for simd if (nw > DD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < nw; i++) dwg[i] += tmp[i];
}

/* 1x1: dW_g (mg, cg) += dY_g (mg, H*W) * X_g^T (H*W, cg), X_g^T copied a chunk of columns at
 * a time into xt, the scratch buffer (then the partial sum), for dd_sgemm's row-major B (same order of sums whatever
 * the thread count). */
static void backward_weights_pointwise(const conv_geom *g, const float *x, const float *dy,
                                       float *dw, float *xt) {
  const int64_t chunk = pointwise_chunk(g), cg = g->cg;
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t gi = 0; gi < g->group; gi++) {
      const float *xg = x + (n * g->c + gi * cg) * g->ocol;
      const float *dyg = dy + (n * g->m + gi * g->mg) * g->ocol;
      for (int64_t p0 = 0; p0 < g->ocol; p0 += chunk) {
        const int64_t np = g->ocol - p0 < chunk ? g->ocol - p0 : chunk;
#pragma omp parallel for if (np * cg > DD_PAR_MIN) schedule(static)
        for (int64_t p = 0; p < np; p++)
          for (int64_t c = 0; c < cg; c++) xt[p * cg + c] = xg[c * g->ocol + p0 + p];
        weights_partial(g, dyg, p0, np, xt, dw + gi * g->mg * g->kcol, xt + chunk * cg);
      }
    }
}

/* col[(c*kh + ki)*kw + kj][(oh - oh0)*wo + ow] = x[c][oh*sh - ph + ki*dh][ow*sw - pw + kj*dw]
 * for the output rows oh0 <= oh < oh1, 0 in the padding.  x holds the cg channels of one
 * image and group. */
static void im2col(const conv_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col) {
  int64_t rows = g->kcol, ncols = (oh1 - oh0) * g->wo;
#pragma omp parallel for if (rows * ncols > DD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r / (g->kh * g->kw), ki = r / g->kw % g->kh, kj = r % g->kw;
    const float *src = x + c * g->h * g->w;
    float *dst = col + r * ncols;
    int64_t o0, o1;
    col_range(g, kj, &o0, &o1);
    int64_t off = kj * g->dw - g->pw;
    for (int64_t oh = oh0; oh < oh1; oh++) {
      float *d = dst + (oh - oh0) * g->wo;
      int64_t ih = oh * g->sh - g->ph + ki * g->dh;
      if (ih < 0 || ih >= g->h) {
        memset(d, 0, (size_t)g->wo * sizeof *d);
        continue;
      }
      const float *row = src + ih * g->w; /* ow*sw + off is inside it for o0 <= ow < o1 */
      for (int64_t ow = 0; ow < o0; ow++) d[ow] = 0.f;
      if (g->sw == 1 && o1 > o0) {
        memcpy(d + o0, row + o0 + off, (size_t)(o1 - o0) * sizeof *d);
      } else {
#pragma omp simd
        for (int64_t ow = o0; ow < o1; ow++) d[ow] = row[ow * g->sw + off];
      }
      for (int64_t ow = o1; ow < g->wo; ow++) d[ow] = 0.f;
    }
  }
}

/* im2col's block (into col) transposed into colt: colt[(oh - oh0)*wo + ow][(c*kh + ki)*kw + kj]
 * (row-major, kcol columns), so that the weight gradient's product reads it as a row-major B.
 * The transpose goes by 16 x 16 tiles, which stay in L1. */
#ifdef DD_AVX512_KERNELS
/* One 16 x 16 tile of im2col_t (rows x cols of it, the edges fewer), through the registers. */
DD_TARGET_AVX512 static void im2col_t_block(const float *s, int64_t ls, float *d, int64_t ld,
                                            int64_t rows, int64_t cols) {
  dd_transpose16_block(s, ls, d, ld, rows, cols, NULL);
}
#endif

static void im2col_t(const conv_geom *g, const float *x, int64_t oh0, int64_t oh1, float *col,
                     float *colt) {
  const int64_t rows = g->kcol, cols = (oh1 - oh0) * g->wo;
  im2col(g, x, oh0, oh1, col);
  for (int64_t i0 = 0; i0 < rows; i0 += 16)
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows, j1 = j0 + 16 < cols ? j0 + 16 : cols;
#ifdef DD_AVX512_KERNELS
      if (g->avx512) {
        im2col_t_block(col + i0 * cols + j0, cols, colt + j0 * rows + i0, rows, i1 - i0, j1 - j0);
        continue;
      }
#endif
      for (int64_t j = j0; j < j1; j++)
        for (int64_t i = i0; i < i1; i++) colt[j * rows + i] = col[i * cols + j];
    }
}

/* General and Winograd: dW_g (mg, kcol) += dY_g * col(X_g)^T, through transposed im2col
 * blocks of g->block output rows in colt, the scratch buffer (block*wo, kcol; then the
 * untransposed block and the partial sum), multiplied by dd_sgemm.  Each element of dW is summed in the same order whatever the
 * thread count (the threads split dW's columns, never a sum), so training stays
 * deterministic.  Small images (batch_parallel) share the images among the threads instead:
 * each (image, group, block) product into its own partial sum, then the partial sums added
 * into dW in the same order as one thread adds them, so the result is bit for bit the same. */
static void backward_weights_im2col(const conv_geom *g, const float *x, const float *dy,
                                    float *dw, float *colt) {
  const int64_t nblk = (g->ho + g->block - 1) / g->block, nw = g->mg * g->kcol;
  const int64_t jobs = g->n * g->group * nblk, cs = 2 * g->block * g->wo * g->kcol;
  const int nt = omp_get_max_threads();
  float *parts = NULL, *cols = NULL;
  if (nt > 1 && batch_parallel(g) && jobs * nw <= (INT64_C(1) << 26)) {
    parts = malloc((size_t)(jobs * nw) * sizeof *parts);
    cols = malloc((size_t)(nt * cs) * sizeof *cols);
    if (!parts || !cols) { /* then one image at a time, as below */
      free(parts);
      free(cols);
      parts = cols = NULL;
    }
  }
  if (parts) {
#pragma omp parallel
    {
      float *ct = cols + omp_get_thread_num() * cs;
#pragma omp for schedule(static)
      for (int64_t j = 0; j < jobs; j++) {
        int64_t n = j / (g->group * nblk), gi = j / nblk % g->group, oh0 = j % nblk * g->block;
        int64_t oh1 = oh0 + g->block < g->ho ? oh0 + g->block : g->ho, ncols = (oh1 - oh0) * g->wo;
        im2col_t(g, x + (n * g->c + gi * g->cg) * g->h * g->w, oh0, oh1, ct + cs / 2, ct);
        dd_sgemm(g->mg, g->kcol, ncols, dy + (n * g->m + gi * g->mg) * g->ocol + oh0 * g->wo,
                 g->ocol, 1, ct, g->kcol, parts + j * nw, g->kcol, 0, NULL, 1);
      }
      for (int64_t gi = 0; gi < g->group; gi++) {
        float *dwg = dw + gi * nw;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nw; i++) {
          float acc = dwg[i];
          for (int64_t n = 0; n < g->n; n++)
            for (int64_t b = 0; b < nblk; b++)
              acc += parts[((n * g->group + gi) * nblk + b) * nw + i];
          dwg[i] = acc;
        }
      }
    }
    free(parts);
    free(cols);
    return;
  }
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t gi = 0; gi < g->group; gi++) {
      const float *xg = x + (n * g->c + gi * g->cg) * g->h * g->w;
      const float *dyg = dy + (n * g->m + gi * g->mg) * g->ocol;
      float *dwg = dw + gi * g->mg * g->kcol;
      for (int64_t oh0 = 0; oh0 < g->ho; oh0 += g->block) {
        int64_t oh1 = oh0 + g->block < g->ho ? oh0 + g->block : g->ho, ncols = (oh1 - oh0) * g->wo;
        im2col_t(g, xg, oh0, oh1, colt + g->block * g->wo * g->kcol, colt);
        weights_partial(g, dyg, oh0 * g->wo, ncols, colt, dwg,
                        colt + 2 * g->block * g->wo * g->kcol);
      }
    }
}

/* The weight gradient dw (M, cg, kh, kw) on the path of the geometry. */
static void backward_weights(const conv_geom *g, const float *x, const float *dy, float *dw,
                             float *col) {
  dd_dw_plan dg;
#ifdef DD_AVX512_KERNELS
  if (g->direct) {
    direct_backward_weights(g, x, dy, dw);
    return;
  }
#endif
  if (g->depthwise && dw_prepare(g, &dg)) depthwise_weights_vec(g, &dg, x, dy, dw);
  else if (g->depthwise) backward_weights_depthwise(g, x, dy, dw);
  else if (g->pointwise) backward_weights_pointwise(g, x, dy, dw, col);
  else backward_weights_im2col(g, x, dy, dw, col);
}

/* Each gradient asked for (din[j] != NULL), from dy alone (bias), W and dy (data) or X and
 * dy (weights); call->fresh (DD_OP_GRAD_FRESH): those gradients hold garbage. */
static void conv_backward_call(const dd_node *node, const dd_tensor *const *in,
                               const dd_tensor *const *out, const dd_tensor *const *dout,
                               dd_tensor *const *din, void *scratch, const dd_op_call *call) {
  if (!dout[0]) return;
  const dd_tensor *bt = node->n_in > 2 ? in[2] : NULL;
  conv_geom g;
  conv_geometry(node->params, in[0], in[1], bt, &g, NULL);
  g.wino &= !call->exact;
  g.bf16 = call->bf16 && !call->exact && dd_bf16_kernel() != DD_BF16_NONE;
#ifdef DD_AVX512_KERNELS
  g.direct = g.avx512 && direct_geometry(&g) && !call->exact && !g.bf16;
#endif
  const float *x = dd_f32(in[0]), *wt = dd_f32(in[1]), *dy = dd_f32(dout[0]);
  float *col = scratch;
  float *dx = din[0] ? dd_f32(din[0]) : NULL;
  float *dw = din[1] ? dd_f32(din[1]) : NULL;
  float *db = node->n_in > 2 && din[2] ? dd_f32(din[2]) : NULL;
  int overwrite = dx && backward_data_overwrites(&g, (int)(call->fresh & 1));
  backward_clear_fresh(node, din, call->fresh, overwrite);
  if (db) backward_bias(&g, dy, db);
  if (dx) backward_data(&g, wt, dy, dx, overwrite, col);
  if (dw) backward_weights(&g, x, dy, dw, col);
}

static void conv_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  static const dd_op_call none = {0, 0, 0};
  conv_backward_call(node, in, out, dout, din, scratch, &none);
}

static int64_t conv_flops(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out) {
  conv_geom g;
  if (conv_geometry(node->params, in[0], in[1], NULL, &g, NULL)) return 0;
  return 2 * g.n * g.m * g.ocol * g.kcol;
}

/* The data gradient reads only W and dY; X only for the gradient of W. */
const dd_op dd_op_Conv = {"Conv",
                          conv_init,
                          conv_infer,
                          conv_forward,
                          conv_backward,
                          conv_flops,
                          DD_OP_BWD_NO_OUT | DD_OP_BWD_NO_X | DD_OP_GRAD_FRESH | DD_OP_FOLD_RELU |
                              DD_OP_FOLD_ACT | DD_OP_FOLD_ADD,
                          conv_forward_call,
                          conv_backward_call};

/* ---- a 1x1 convolution of x scaled per channel, fused by the planner (plan/fuse.c) ---- */

/* Not an ONNX op (no model can name it): in plans without gradients, the planner puts it in
 * place of t = Mul(x, s), s one value per image and channel (N or 1, C, 1, 1), and the 1x1
 * convolution y = Conv(t, W, b) reading t alone: the squeeze-excitation scale of EfficientNet
 * and MobileNet v3 followed by the block's projection.  Conv(x * s) = W (diag(s) x): the
 * AVX-512 kernels scale x's rows as they pack them for the product (dd_sgemm_scaled), at no
 * cost of its own; the generic path scales a copy of the weights (M x C, per image), which
 * costs less than a pass over x (C x H x W) when M < H x W, where the planner fuses.  Inputs
 * x, s, W, optional b.  Forward only: the plan that asks for a gradient keeps the two
 * nodes. */
static int conv_scaled_init(dd_node *node, dd_err *err) { return DD_OK; }

static int conv_scaled_infer(const dd_node *node, const dd_tensor *const *in,
                             dd_tensor *const *out, size_t *scratch, dd_err *err) {
  if (node->n_in < 3 || !in[0] || !in[1] || !in[2])
    return dd_fail(err, DD_EFORMAT, "needs x, a scale and weights");
  const dd_tensor *x = in[0], *s = in[1], *w = in[2], *b = node->n_in > 3 ? in[3] : NULL;
  if (x->dtype != DD_F32 || s->dtype != DD_F32 || w->dtype != DD_F32 || (b && b->dtype != DD_F32) ||
      x->shape.ndim != 4 || s->shape.ndim != 4 || w->shape.ndim != 4)
    return dd_fail(err, DD_EUNSUPPORTED, "4-D float32 tensors only");
  int64_t n = x->shape.d[0], c = x->shape.d[1], m = w->shape.d[0];
  if ((s->shape.d[0] != 1 && s->shape.d[0] != n) || s->shape.d[1] != c || s->shape.d[2] != 1 ||
      s->shape.d[3] != 1 || w->shape.d[1] != c || w->shape.d[2] != 1 || w->shape.d[3] != 1 ||
      (b && dd_tensor_numel(b) != m) || m > INT_MAX || c > INT_MAX)
    return dd_fail(err, DD_ESHAPE, "not a per-channel scale before a 1x1 convolution");
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = x->shape;
    out[0]->shape.d[1] = m;
  }
  /* W's copy for the generic path (asked for whatever the kernels: they can be forced to the
   * generic ones between plan and run) */
  *scratch = (size_t)(m * c) * sizeof(float);
  return DD_OK;
}

static void conv_scaled_forward_call(const dd_node *node, const dd_tensor *const *in,
                                     dd_tensor *const *out, void *scratch,
                                     const dd_op_call *call) {
  if (!out[0]) return;
  const float *radd = call->add_in;
  const dd_tensor *x = in[0], *s = in[1], *w = in[2];
  const float *bias = node->n_in > 3 && in[3] ? dd_f32(in[3]) : NULL;
  int64_t n = x->shape.d[0], c = x->shape.d[1], hw = x->shape.d[2] * x->shape.d[3],
          m = w->shape.d[0];
  float *ws = scratch, *y = dd_f32(out[0]);
  const float *wt = dd_f32(w);
  for (int64_t i = 0; i < n; i++) {
    const float *si = dd_f32(s) + (s->shape.d[0] == 1 ? 0 : i) * c;
    /* the AVX-512 kernels scale x's rows as they pack them, which costs nothing; the others
     * scale a copy of W */
    if (dd_sgemm_scaled_add(m, hw, c, wt, c, 1, dd_f32(x) + i * c * hw, hw, si, y + i * m * hw,
                            hw, 0, bias, 1, radd ? radd + i * m * hw : NULL))
      continue;
    if (i == 0 || s->shape.d[0] != 1)
      for (int64_t o = 0; o < m; o++)
        for (int64_t k = 0; k < c; k++) ws[o * c + k] = wt[o * c + k] * si[k];
    dd_sgemm(m, hw, c, ws, c, 1, dd_f32(x) + i * c * hw, hw, y + i * m * hw, hw, 0, bias, 1);
    if (radd) dd_add_rows(y + i * m * hw, radd + i * m * hw, m * hw);
  }
}

static void conv_scaled_forward(const dd_node *node, const dd_tensor *const *in,
                                dd_tensor *const *out, void *scratch) {
  static const dd_op_call none = {0, 0, 0};
  conv_scaled_forward_call(node, in, out, scratch, &none);
}

static int64_t conv_scaled_flops(const dd_node *node, const dd_tensor *const *in,
                                 const dd_tensor *const *out) {
  return 2 * dd_tensor_numel(out[0]) * in[0]->shape.d[1];
}

const dd_op dd_op_FusedConvScaled = {"ConvScaled",      conv_scaled_init,
                                     conv_scaled_infer, conv_scaled_forward,
                                     NULL,              conv_scaled_flops,
                                     DD_OP_FOLD_ADD,    conv_scaled_forward_call};
