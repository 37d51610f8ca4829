/* Gemm (Y = alpha * A' B' + beta * C, C broadcast to Y) and MatMul (numpy semantics: 1-D
 * operands, broadcast batch dims).  Forward and backward side by side; every product is one
 * call of product() below, and backward produces the gradients of A, B and C that the plan
 * asks for.
 */
#include <stdlib.h>
#include <string.h>

#include <limits.h>
#include <omp.h>

#include "ops/act.h"
#include "ops/common.h"
#include "ops/cpu.h"
#include "ops/sgemm.h"

/* Products with at most this many rows or columns are matrix-vector products (a classifier
 * at batch 1, and its data gradient): product() computes them itself. */
#define FEW 4
/* Columns of C one thread takes at a time in the row-by-row product (on its stack). */
#define ROW_CHUNK 256
/* At most this many rows of C for the swapped product of a transposed B (product_cb). */
#define SWAP_ROWS 32
/* At most this many rows for a MatMulBias to pack its constant B once per plan. */
#define PACK_ROWS 256
/* Rows of C per task, at least, when a product goes to dd_sgemm in row blocks. */
#define SGEMM_ROWS 64

/* sum x[q * sx] y[q * sy] over q < k, in 16 lane sums added in order at the end (strides of
 * 1 apart, so that they compile to vector loads) */
static float dot(const float *x, int64_t sx, const float *y, int64_t sy, int64_t k) {
  float lane[16] = {0};
  int64_t q = 0;
  if (sx == 1 && sy == 1) {
    for (; q + 16 <= k; q += 16)
#pragma omp simd
      for (int l = 0; l < 16; l++) lane[l] += x[q + l] * y[q + l];
  } else {
    for (; q + 16 <= k; q += 16)
#pragma omp simd
      for (int l = 0; l < 16; l++) lane[l] += x[(q + l) * sx] * y[(q + l) * sy];
  }
  float t = 0.f;
  for (; q < k; q++) t += x[q * sx] * y[q * sy];
  for (int l = 0; l < 16; l++) t += lane[l];
  return t;
}

/* Floats of scratch product() needs for op(B) alpha as a row-major k x n copy: dd_sgemm reads
 * B row-major and unscaled, so a transposed or scaled B is copied first. */
static int64_t product_tmp(int tb, int64_t m, int64_t n, int64_t k, float alpha) {
  return m > FEW && n > FEW && k > 0 && (tb || alpha != 1.f) ? k * n : 0;
}

/* t (k x n, row-major) = alpha op(B), op(B)(q, j) = b[j * ldb + q] when tb, else b[q * ldb +
 * j]; the transpose in 32 x 32 blocks, so that both sides stay in cache lines. */
static void copy_b(int tb, int64_t n, int64_t k, float alpha, const float *b, int64_t ldb,
                   float *t) {
  if (!tb) {
#pragma omp parallel for schedule(static) if (k * n > DD_PAR_MIN)
    for (int64_t q = 0; q < k; q++)
      for (int64_t j = 0; j < n; j++) t[q * n + j] = alpha * b[q * ldb + j];
    return;
  }
  int64_t qb = (k + 31) / 32;
#pragma omp parallel for schedule(static) if (k * n > DD_PAR_MIN)
  for (int64_t bq = 0; bq < qb; bq++)
    for (int64_t j0 = 0; j0 < n; j0 += 32)
      for (int64_t q = bq * 32; q < k && q < bq * 32 + 32; q++)
        for (int64_t j = j0; j < n && j < j0 + 32; j++) t[q * n + j] = alpha * b[j * ldb + q];
}

/* C = A B by dd_sgemm (B row-major, or dd_sgemm_pack's `pack` of it when not NULL), `acc`
 * and `bias` as dd_sgemm takes them, the rows in one block per thread (at least SGEMM_ROWS):
 * each block packs B again, so fewer, taller blocks pay (1 thread, 196 x 1536 x 384: 121 ->
 * 151 GFLOP/s).  Token-major products have many rows and few columns, so the threads take
 * blocks of rows (dd_sgemm itself splits columns); every element's sum runs over k in the
 * same order however the rows are split, so the result does not depend on the number of
 * threads.  With a pack, radd (C's layout, or NULL) is added last (dd_sgemm_packed); without
 * one it must be NULL. */
static void row_blocks(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars,
                       int64_t acs, const float *b, int64_t ldb, const float *pack, float *c,
                       int64_t ldc, int acc, const float *bias, const float *radd) {
  int par = m * n * k > DD_PAR_MIN;
  int64_t nt = par ? omp_get_max_threads() : 1;
  int64_t block = (m + nt - 1) / nt;
  block = block < SGEMM_ROWS ? SGEMM_ROWS : (block + 7) / 8 * 8;
  int64_t tasks = (m + block - 1) / block;
  if (tasks == 1) {
    if (pack) dd_sgemm_packed(m, n, k, a, ars, acs, pack, c, ldc, acc, bias, par, radd);
    else dd_sgemm(m, n, k, a, ars, acs, b, ldb, c, ldc, acc, bias, par);
    return;
  }
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t r0 = t * block, rows = m - r0 < block ? m - r0 : block;
    if (pack)
      dd_sgemm_packed(rows, n, k, a + r0 * ars, ars, acs, pack, c + r0 * ldc, ldc, acc, bias, 0,
                      radd ? radd + r0 * ldc : NULL);
    else
      dd_sgemm(rows, n, k, a + r0 * ars, ars, acs, b, ldb, c + r0 * ldc, ldc, acc, bias, 0);
  }
}

/* C = alpha op(A) op(B) + beta C, plus cbias[j] in column j when cbias is not NULL (the
 * products start from it: MatMul with its bias Add fused), row-major, as cblas_sgemm (beta 0:
 * C is not read); tmp holds product_tmp() floats.  OpenBLAS's results depend on its number of
 * threads (it shares a product out differently), and on a VM that hides the CPU model it
 * picks its SSE3 kernels (30 GFLOP/s against dd_sgemm's 90-140 on one thread); so every
 * product is computed here: every element of C by one thread, its sum in an order fixed by the
 * shapes alone.  `act` (DD_SGEMM_SILU, _HARDSWISH or _GELU, or 0) is applied to the sums by
 * dd_sgemm where the path ends in it with the bias inside (beta 0): returns 1 then, 0 when
 * the caller must apply it. */
static int product_cb(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc, float *tmp,
                      const float *cbias, int act) {
  if (m <= 0 || n <= 0) return 1;
  if (beta != 0.f && beta != 1.f) {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] *= beta;
    beta = 1.f;
  }
  if (k <= 0) {
    for (int64_t i = 0; i < m && beta == 0.f; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = 0.f;
    for (int64_t i = 0; i < m && cbias; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] += cbias[j];
    return 0;
  }
  /* B^T transposed as the AVX-512 and AVX2 kernels pack it (DD_SGEMM_TRANS_B), not copied
   * first */
  const int own = dd_kernels_own_products();
  int trans_b = tb && alpha == 1.f && own;
  if (m > FEW && n > FEW && (tmp || (!tb && alpha == 1.f) || trans_b)) {
    /* dd_sgemm (the convolutions' product), which packs no A and only blocks of B, with B
     * row-major and unscaled: a transposed B (B^T of the data gradients: the weights, or the
     * other operand of an attention product) is transposed as the AVX-512 kernels pack it
     * (the copy cost Swin-T's dream iteration 7%), and a scaled one, or a transposed one on
     * the generic path, is copied to tmp first.  Without tmp (a caller that skipped infer's
     * scratch) the dot products below do it, slower. */
    if (tb && alpha == 1.f && m <= SWAP_ROWS && tmp && (int64_t)m * (k + n) <= (int64_t)k * n &&
        own) {
      /* Few rows against a transposed B (torch's Linear as Gemm transB=1 on a ViT's 17
       * tokens): C^T = B op(A)^T, with B read in place as the product's rows and only
       * op(A)^T (k x m) and C^T (n x m) copied, not B^T (k x n).  Each element is the same
       * chain of fused multiply-adds over k from the same start (C, or the bias), with the
       * bias added after when C is accumulated, so the same float as below.  On the AVX-512
       * and AVX2 paths only: cblas_sgemm's order depends on the shape it is given. */
      float *at = tmp, *ct = tmp + (int64_t)k * m;
      copy_b(!ta, m, k, 1.f, a, lda, at); /* at (k x m) = op(A)^T */
      int acc = beta != 0.f ? DD_SGEMM_ACCUMULATE : 0;
      if (acc) copy_b(1, m, n, 1.f, c, ldc, ct); /* ct (n x m) = C^T */
      dd_sgemm(n, m, k, b, ldb, 1, at, m, ct, m, acc, acc ? NULL : cbias,
               (int64_t)m * n * k > DD_PAR_MIN);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
          c[i * ldc + j] = acc && cbias ? ct[j * m + i] + cbias[j] : ct[j * m + i];
      return 0;
    }
    if ((tb || alpha != 1.f) && !trans_b) {
      copy_b(tb, n, k, alpha, b, ldb, tmp);
      b = tmp;
      ldb = n;
    }
    int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1;
    int acc = (beta != 0.f ? DD_SGEMM_ACCUMULATE : 0) | (trans_b ? DD_SGEMM_TRANS_B : 0);
    const float *bias = NULL; /* the product starts from the column bias */
    if (cbias && beta == 0.f) {
      acc |= DD_SGEMM_COL_BIAS;
      bias = cbias;
      cbias = NULL;
    }
    row_blocks(m, n, k, a, ars, acs, b, ldb, NULL, c, ldc, acc | (cbias ? 0 : act), bias, NULL);
    for (int64_t i = 0; i < m && cbias; i++) /* beta != 0: the bias after */
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] += cbias[j];
    return !cbias;
  }
  /* op(A)(i, q) = a[i * ai + q * aq], op(B)(q, j) = b[q * bq + j * bj] */
  int64_t ai = ta ? 1 : lda, aq = ta ? lda : 1, bq = tb ? 1 : ldb, bj = tb ? ldb : 1;
  int par = (int64_t)m * n * k > DD_PAR_MIN;
  if (m <= FEW && bj == 1) {
    /* few rows, B's rows contiguous: ROW_CHUNK columns of a row of C at a time, each summed
     * down the rows of B (q ascending) */
    int64_t chunks = (n + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for collapse(2) schedule(static) if (par)
    for (int64_t i = 0; i < m; i++)
      for (int64_t ch = 0; ch < chunks; ch++) {
        int64_t j0 = ch * ROW_CHUNK, w = n - j0 < ROW_CHUNK ? n - j0 : ROW_CHUNK;
        float acc[ROW_CHUNK];
        memset(acc, 0, sizeof acc);
        for (int64_t q = 0; q < k; q++) {
          float av = a[i * ai + q * aq];
          const float *br = b + q * bq + j0;
#pragma omp simd
          for (int64_t j = 0; j < w; j++) acc[j] += av * br[j];
        }
        float *cr = c + i * ldc + j0;
        for (int64_t j = 0; j < w; j++)
          cr[j] = alpha * acc[j] + (beta != 0.f ? beta * cr[j] : 0.f) +
                  (cbias ? cbias[j0 + j] : 0.f);
      }
    return 0;
  }
  /* each element one dot product */
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      float t = dot(a + i * ai, aq, b + j * bj, bq, k), *e = c + i * ldc + j;
      *e = alpha * t + (beta != 0.f ? beta * *e : 0.f) + (cbias ? cbias[j] : 0.f);
    }
  return 0;
}

static void product(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc, float *tmp) {
  product_cb(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tmp, NULL, 0);
}

typedef struct gemm_params {
  float alpha, beta;
  int trans_a, trans_b;
} gemm_params;

/* ---- Gemm ---- */

static int gemm_init(dd_node *node, dd_err *err) {
  /* 'broadcast' is opset 1..6's switch for what opset 7 made the rule: accepted, ignored. */
  static const char *const known[] = {"alpha", "beta", "broadcast", "transA", "transB", NULL};
  int rc = dd_node_check_attrs(node, known, err);
  if (rc) return rc;
  gemm_params p;
  int64_t ta, tb;
  rc = dd_attr_float(node, "alpha", 1.f, &p.alpha, err);
  if (!rc) rc = dd_attr_float(node, "beta", 1.f, &p.beta, err);
  if (!rc) rc = dd_attr_int(node, "transA", 0, &ta, err);
  if (!rc) rc = dd_attr_int(node, "transB", 0, &tb, err);
  if (rc) return rc;
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1))
    return dd_fail(err, DD_EFORMAT, "transA and transB must be 0 or 1");
  p.trans_a = (int)ta;
  p.trans_b = (int)tb;
  gemm_params *q = malloc(sizeof *q);
  if (!q) return dd_fail(err, DD_ENOMEM, "out of memory");
  *q = p;
  node->params = q;
  return DD_OK;
}

/* Sizes of one Gemm, and how C's elements map onto Y (stride 0 along a broadcast dim). */
typedef struct gemm_geom {
  int64_t m, n, k;
  int64_t c_sm, c_sn;
} gemm_geom;

static const dd_tensor *gemm_c(const dd_node *node, const dd_tensor *const *in) {
  return node->n_in > 2 ? in[2] : NULL;
}

static int gemm_geometry(const gemm_params *p, const dd_tensor *a, const dd_tensor *b,
                         const dd_tensor *c, gemm_geom *g, dd_err *err) {
  if (a->shape.ndim != 2 || b->shape.ndim != 2)
    return dd_fail(err, DD_ESHAPE, "A and B must be 2-D (have %d and %d dims)", a->shape.ndim,
                   b->shape.ndim);
  g->m = p->trans_a ? a->shape.d[1] : a->shape.d[0];
  g->k = p->trans_a ? a->shape.d[0] : a->shape.d[1];
  int64_t kb = p->trans_b ? b->shape.d[1] : b->shape.d[0];
  g->n = p->trans_b ? b->shape.d[0] : b->shape.d[1];
  if (kb != g->k)
    return dd_fail(err, DD_ESHAPE, "A' is %lldx%lld but B' is %lldx%lld: inner sizes differ",
                   (long long)g->m, (long long)g->k, (long long)kb, (long long)g->n);
  if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX)
    return dd_fail(err, DD_ELIMIT, "the product is too large for the BLAS interface");
  g->c_sm = g->c_sn = 0;
  if (c) {
    const dd_shape *cs = &c->shape;
    int64_t cm = cs->ndim >= 2 ? cs->d[cs->ndim - 2] : 1;
    int64_t cn = cs->ndim >= 1 ? cs->d[cs->ndim - 1] : 1;
    if (cs->ndim > 2 || (cm != 1 && cm != g->m) || (cn != 1 && cn != g->n)) {
      char buf[96];
      return dd_fail(err, DD_ESHAPE, "C of shape %s does not broadcast to %lldx%lld",
                     dd_shape_str(cs, buf, sizeof buf), (long long)g->m, (long long)g->n);
    }
    g->c_sm = cm == 1 ? 0 : cn;
    g->c_sn = cn == 1 ? 0 : 1;
  }
  return DD_OK;
}

static int gemm_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                      size_t *scratch, dd_err *err) {
  if (node->n_in < 2 || node->n_in > 3 || !in[0] || !in[1])
    return dd_fail(err, DD_EFORMAT, "needs inputs A, B and optionally C");
  const dd_tensor *c = gemm_c(node, in);
  if (in[0]->dtype != DD_F32 || in[1]->dtype != DD_F32 || (c && c->dtype != DD_F32))
    return dd_fail(err, DD_EUNSUPPORTED, "inputs must be float32");
  gemm_geom g;
  int rc = gemm_geometry(node->params, in[0], in[1], c, &g, err);
  if (rc) return rc;
  if (node->n_out != 1) return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1", node->n_out);
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = dd_shape_make(2, (int64_t[]){g.m, g.n});
  }
  /* the copies of B product() makes, forward and backward (see gemm_backward) */
  const gemm_params *p = node->params;
  int ta = p->trans_a, tb = p->trans_b;
  float al = p->alpha;
  int64_t t[5] = {product_tmp(tb, g.m, g.n, g.k, al),
                  ta ? product_tmp(1, g.k, g.m, g.n, al) : product_tmp(!tb, g.m, g.k, g.n, al),
                  tb ? product_tmp(ta, g.n, g.k, g.m, al) : product_tmp(0, g.k, g.n, g.m, al), 0,
                  0};
  for (int i = 0; i < 3; i++) t[3] = t[i] > t[3] ? t[i] : t[3];
  *scratch = (size_t)t[3] * sizeof(float);
  return DD_OK;
}

/* Forward; with call->prep, op(B) packed by dd_gemm_pack (the plan's): the product from it,
 * each element the same chain of multiply-adds from beta C as the other paths. */
static void gemm_forward_call(const dd_node *node, const dd_tensor *const *in,
                              dd_tensor *const *out, void *scratch, const dd_op_call *call) {
  if (!out[0]) return;
  const gemm_params *p = node->params;
  const dd_tensor *ct = gemm_c(node, in);
  gemm_geom g;
  gemm_geometry(p, in[0], in[1], ct, &g, NULL);
  float *y = dd_f32(out[0]);
  if (g.m == 0 || g.n == 0) return;
  if (ct) {
    const float *c = dd_f32(ct);
    for (int64_t i = 0; i < g.m; i++)
      for (int64_t j = 0; j < g.n; j++) y[i * g.n + j] = p->beta * c[i * g.c_sm + j * g.c_sn];
  } else {
    memset(y, 0, (size_t)(g.m * g.n) * sizeof *y);
  }
  if (g.k == 0) {
    if (call->add_in) dd_add_rows(y, call->add_in, g.m * g.n);
    return;
  }
  if (call->prep) {
    int64_t lda = in[0]->shape.d[1];
    row_blocks(g.m, g.n, g.k, dd_f32(in[0]), p->trans_a ? 1 : lda, p->trans_a ? lda : 1, NULL, 0,
               call->prep, y, g.n, DD_SGEMM_ACCUMULATE, NULL, call->add_in);
    return;
  }
  product(p->trans_a, p->trans_b, (int)g.m, (int)g.n, (int)g.k, p->alpha, dd_f32(in[0]),
          (int)in[0]->shape.d[1], dd_f32(in[1]), (int)in[1]->shape.d[1], 1.f, y, (int)g.n,
          scratch);
  if (call->add_in) dd_add_rows(y, call->add_in, g.m * g.n);
}

static void gemm_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                         void *scratch) {
  static const dd_op_call none = {0};
  gemm_forward_call(node, in, out, scratch, &none);
}

/* A Gemm whose B is constant, alpha 1, with at most PACK_ROWS rows (a ViT's out-projection
 * on its tokens, a classifier): op(B) packed once by the plan (plan_pack), as MatMulBias's
 * below.  Its bytes, 0 when it takes none. */
size_t dd_gemm_pack_bytes(const dd_node *node, const dd_tensor *const *in);
float *dd_gemm_pack(const dd_node *node, const dd_tensor *const *in, int parallel);
size_t dd_gemm_pack_bytes(const dd_node *node, const dd_tensor *const *in) {
  const gemm_params *p = node->params;
  gemm_geom g;
  if (!in[0] || !in[1] || !in[1]->data || p->alpha != 1.f ||
      gemm_geometry(p, in[0], in[1], gemm_c(node, in), &g, NULL) || g.m > PACK_ROWS ||
      g.m <= FEW || g.n <= FEW || g.k <= 0)
    return 0;
  return (size_t)dd_sgemm_pack_floats(g.k, g.n) * sizeof(float);
}

float *dd_gemm_pack(const dd_node *node, const dd_tensor *const *in, int parallel) {
  const gemm_params *p = node->params;
  if (!dd_gemm_pack_bytes(node, in)) return NULL;
  int64_t k = in[1]->shape.d[p->trans_b ? 1 : 0], n = in[1]->shape.d[p->trans_b ? 0 : 1];
  return dd_sgemm_pack_new(k, n, dd_f32(in[1]), in[1]->shape.d[1], p->trans_b, parallel);
}

static void gemm_backward(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out, const dd_tensor *const *dout,
                          dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  const gemm_params *p = node->params;
  const dd_tensor *ct = gemm_c(node, in);
  gemm_geom g;
  gemm_geometry(p, in[0], in[1], ct, &g, NULL);
  if (g.m == 0 || g.n == 0) return;
  const float *a = dd_f32(in[0]), *b = dd_f32(in[1]), *dy = dd_f32(dout[0]);
  int m = (int)g.m, n = (int)g.n, k = (int)g.k;
  int lda = (int)in[0]->shape.d[1], ldb = (int)in[1]->shape.d[1];
  if (din[0] && k > 0) {
    float *da = dd_f32(din[0]);
    if (!p->trans_a) /* dA (MxK) = alpha dY B'^T */
      product(0, !p->trans_b, m, k, n, p->alpha, dy, n, b, ldb, 1.f, da, k, scratch);
    else /* dA (KxM) = alpha B' dY^T */
      product(p->trans_b, 1, k, m, n, p->alpha, b, ldb, dy, n, 1.f, da, m, scratch);
  }
  if (din[1] && k > 0) {
    float *db = dd_f32(din[1]);
    if (!p->trans_b) /* dB (KxN) = alpha A'^T dY */
      product(!p->trans_a, 0, k, n, m, p->alpha, a, lda, dy, n, 1.f, db, n, scratch);
    else /* dB (NxK) = alpha dY^T A' */
      product(1, p->trans_a, n, k, m, p->alpha, dy, n, a, lda, 1.f, db, k, scratch);
  }
  if (ct && node->n_in > 2 && din[2]) {
    float *dc = dd_f32(din[2]);
    for (int64_t i = 0; i < g.m; i++)
      for (int64_t j = 0; j < g.n; j++) dc[i * g.c_sm + j * g.c_sn] += p->beta * dy[i * g.n + j];
  }
}

static int64_t gemm_flops(const dd_node *node, const dd_tensor *const *in,
                          const dd_tensor *const *out) {
  gemm_geom g;
  if (gemm_geometry(node->params, in[0], in[1], NULL, &g, NULL)) return 0;
  return 2 * g.m * g.n * g.k;
}

const dd_op dd_op_Gemm = {"Gemm", gemm_init, gemm_infer, gemm_forward, gemm_backward,
                          gemm_flops, DD_OP_FOLD_ADD, gemm_forward_call};

/* ---- MatMul ---- */

/* A batched product: Y[b] = A[b] B[b] over the broadcast batch dims, matrices row-major. */
typedef struct mm_geom {
  int64_t m, n, k, batch;
  int nb;                                 /* batch rank of Y */
  int64_t dims[DD_MAX_DIMS];              /* batch dims of Y */
  int64_t sa[DD_MAX_DIMS], sb[DD_MAX_DIMS]; /* A's and B's stride per batch dim, in matrices */
  dd_shape y;
} mm_geom;

static int matmul_init(dd_node *node, dd_err *err) {
  static const char *const known[] = {NULL};
  return dd_node_check_attrs(node, known, err);
}

static int mm_geometry(const dd_shape *as, const dd_shape *bs, mm_geom *g, dd_err *err) {
  char sa_buf[96], sb_buf[96];
  if (as->ndim < 1 || bs->ndim < 1)
    return dd_fail(err, DD_ESHAPE, "MatMul operands must have at least 1 dim");
  memset(g, 0, sizeof *g);
  g->m = as->ndim >= 2 ? as->d[as->ndim - 2] : 1;
  g->k = as->d[as->ndim - 1];
  int64_t kb = bs->ndim >= 2 ? bs->d[bs->ndim - 2] : bs->d[0];
  g->n = bs->ndim >= 2 ? bs->d[bs->ndim - 1] : 1;
  if (kb != g->k)
    return dd_fail(err, DD_ESHAPE, "A %s and B %s: inner sizes %lld and %lld differ",
                   dd_shape_str(as, sa_buf, sizeof sa_buf), dd_shape_str(bs, sb_buf, sizeof sb_buf),
                   (long long)g->k, (long long)kb);
  if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX)
    return dd_fail(err, DD_ELIMIT, "the product is too large for the BLAS interface");
  int na = as->ndim > 2 ? as->ndim - 2 : 0, nbb = bs->ndim > 2 ? bs->ndim - 2 : 0;
  g->nb = na > nbb ? na : nbb;
  int64_t stride_a = 1, stride_b = 1;
  g->batch = 1;
  for (int i = g->nb - 1; i >= 0; i--) {
    int ia = i - (g->nb - na), ib = i - (g->nb - nbb);
    int64_t da = ia >= 0 ? as->d[ia] : 1, db = ib >= 0 ? bs->d[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return dd_fail(err, DD_ESHAPE, "A %s and B %s: batch dims do not broadcast",
                     dd_shape_str(as, sa_buf, sizeof sa_buf),
                     dd_shape_str(bs, sb_buf, sizeof sb_buf));
    g->dims[i] = da == 1 ? db : da;
    g->sa[i] = da == 1 ? 0 : stride_a;
    g->sb[i] = db == 1 ? 0 : stride_b;
    stride_a *= da;
    stride_b *= db;
    g->batch *= g->dims[i];
  }
  g->y.ndim = 0;
  for (int i = 0; i < g->nb; i++) g->y.d[g->y.ndim++] = g->dims[i];
  if (as->ndim >= 2) g->y.d[g->y.ndim++] = g->m;
  if (bs->ndim >= 2) g->y.d[g->y.ndim++] = g->n;
  return DD_OK;
}

/* Infer from A = in[0] and B = in[1] (MatMul, and the fused MatMulBias). */
static int mm_infer_ab(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                       size_t *scratch, dd_err *err) {
  if (!in[0] || !in[1]) return dd_fail(err, DD_EFORMAT, "needs inputs A and B");
  if (in[0]->dtype != DD_F32 || in[1]->dtype != DD_F32)
    return dd_fail(err, DD_EUNSUPPORTED, "inputs must be float32");
  mm_geom g;
  int rc = mm_geometry(&in[0]->shape, &in[1]->shape, &g, err);
  if (rc) return rc;
  if (node->n_out != 1) return dd_fail(err, DD_EFORMAT, "has %d outputs, expected 1", node->n_out);
  if (out[0]) {
    out[0]->dtype = DD_F32;
    out[0]->shape = g.y;
  }
  /* the data gradient's copy of B^T (product_tmp; at most one batch's at a time) */
  *scratch = g.k > FEW && g.n > FEW ? (size_t)(g.k * g.n) * sizeof(float) : 0;
  return DD_OK;
}

static int matmul_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        size_t *scratch, dd_err *err) {
  if (node->n_in != 2) return dd_fail(err, DD_EFORMAT, "needs inputs A and B");
  return mm_infer_ab(node, in, out, scratch, err);
}

/* Matrix offsets of A and B for batch index b of Y. */
static void mm_offsets(const mm_geom *g, int64_t b, int64_t *oa, int64_t *ob) {
  *oa = *ob = 0;
  for (int i = g->nb - 1; i >= 0; i--) {
    int64_t idx = b % g->dims[i];
    b /= g->dims[i];
    *oa += idx * g->sa[i];
    *ob += idx * g->sb[i];
  }
}

/* B shared by every batch and A not broadcast: the batches stack into one tall product. */
static int mm_stacked(const mm_geom *g) {
  for (int i = 0; i < g->nb; i++)
    if (g->sb[i] != 0 || (g->dims[i] > 1 && g->sa[i] == 0)) return 0;
  return 1;
}

/* Whether A or B is broadcast over a batch dim (its matrices then serve several batches). */
static int mm_broadcast(const mm_geom *g) {
  for (int i = 0; i < g->nb; i++)
    if (g->dims[i] > 1 && (g->sa[i] == 0 || g->sb[i] == 0)) return 1;
  return 0;
}

/* Whether the batches of a batched product go to the threads whole, each product on one
 * thread, instead of one after the other, each split across the threads: attention's
 * products (a window's 49 tokens by 32 features per head, Swin-T's 75 to 24 batches) are too
 * small to split well.  Split, each costs the threads a fork and a join and reads rows the
 * other core wrote; Swin-T's attention products took as long on two threads as on one.  A
 * thread's batches are one contiguous run, the share of the rows the op before gave it.
 * Each element's sum is the same either way (the products never split k).  Not when the
 * batches would share out unevenly (fewer than 4 per thread and not a multiple). */
static int batch_per_thread(const mm_geom *g) {
  if (dd_par_serial || g->batch < 2 || g->batch * g->m * g->n * g->k <= DD_PAR_MIN) return 0;
  int64_t nt = omp_get_max_threads();
  return nt > 1 && g->batch >= nt && (g->batch % nt == 0 || g->batch >= 4 * nt);
}

static void matmul_forward(const dd_node *node, const dd_tensor *const *in,
                           dd_tensor *const *out, void *scratch) {
  if (!out[0]) return;
  mm_geom g;
  mm_geometry(&in[0]->shape, &in[1]->shape, &g, NULL);
  const float *a = dd_f32(in[0]), *b = dd_f32(in[1]);
  float *y = dd_f32(out[0]);
  if (g.batch * g.m * g.n == 0) return;
  if (g.k == 0) {
    memset(y, 0, (size_t)(g.batch * g.m * g.n) * sizeof *y);
    return;
  }
  int m = (int)g.m, n = (int)g.n, k = (int)g.k;
  if (mm_stacked(&g) && g.batch * g.m <= INT_MAX) {
    product(0, 0, (int)(g.batch * g.m), n, k, 1.f, a, k, b, n, 0.f, y, n, NULL);
    return;
  }
  int par = batch_per_thread(&g);
#pragma omp parallel if (par)
  {
    int serial = dd_par_serial;
    if (par) dd_par_serial = 1; /* this thread's products stay on it */
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < g.batch; bi++) {
      int64_t oa, ob;
      mm_offsets(&g, bi, &oa, &ob);
      product(0, 0, m, n, k, 1.f, a + oa * g.m * g.k, k, b + ob * g.k * g.n, n, 0.f,
              y + bi * g.m * g.n, n, NULL);
    }
    dd_par_serial = serial;
  }
}

static void matmul_backward(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out, const dd_tensor *const *dout,
                            dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  mm_geom g;
  mm_geometry(&in[0]->shape, &in[1]->shape, &g, NULL);
  if (g.batch * g.m * g.n * g.k == 0) return;
  const float *a = dd_f32(in[0]), *b = dd_f32(in[1]), *dy = dd_f32(dout[0]);
  float *da = din[0] ? dd_f32(din[0]) : NULL, *db = din[1] ? dd_f32(din[1]) : NULL;
  int m = (int)g.m, n = (int)g.n, k = (int)g.k;
  if (mm_stacked(&g) && g.batch * g.m <= INT_MAX) {
    int rows = (int)(g.batch * g.m);
    if (da)
      product(0, 1, rows, k, n, 1.f, dy, n, b, n, 1.f, da, k, scratch);
    if (db)
      product(1, 0, k, n, rows, 1.f, a, k, dy, n, 1.f, db, n, NULL);
    return;
  }
  /* One batch at a time, each product split across the threads, when an operand is
   * broadcast (its gradient collects from several batches in turn); else, where
   * batch_per_thread says so, a batch per thread as forward, on the AVX-512 and AVX2 kernels
   * and without the scratch (which one batch's product at a time uses: dY B^T then takes the
   * transposed-B path, whose floats the scratch's path also gives).  Not on the generic path,
   * whose OpenBLAS products the scratch's path rounds otherwise; there each of Swin-T's
   * window products went to OpenBLAS, which keeps small ones on one thread. */
  int par = batch_per_thread(&g) && !mm_broadcast(&g) && dd_kernels_own_products();
#pragma omp parallel if (par)
  {
    int serial = dd_par_serial;
    if (par) dd_par_serial = 1;
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < g.batch; bi++) {
      int64_t oa, ob;
      mm_offsets(&g, bi, &oa, &ob);
      const float *dyb = dy + bi * g.m * g.n;
      if (da)
        product(0, 1, m, k, n, 1.f, dyb, n, b + ob * g.k * g.n, n, 1.f, da + oa * g.m * g.k, k,
                par ? NULL : scratch);
      if (db)
        product(1, 0, k, n, m, 1.f, a + oa * g.m * g.k, k, dyb, n, 1.f, db + ob * g.k * g.n, n,
                NULL);
    }
    dd_par_serial = serial;
  }
}

static int64_t matmul_flops(const dd_node *node, const dd_tensor *const *in,
                            const dd_tensor *const *out) {
  mm_geom g;
  if (mm_geometry(&in[0]->shape, &in[1]->shape, &g, NULL)) return 0;
  return 2 * g.batch * g.m * g.n * g.k;
}

const dd_op dd_op_MatMul = {"MatMul", matmul_init, matmul_infer, matmul_forward,
                            matmul_backward, matmul_flops, 0};

/* ---- MatMul with its bias: MatMul(A, B) + bias, fused by the planner (plan/fuse.c) ---- */

/* Not an ONNX op (no model can name it): the planner puts it in place of Y = MatMul(A, B) and
 * the Add(Y, bias) reading Y alone, where bias is one value per column of Y (shape [n], or
 * [1, ..., 1, n]): torch's nn.Linear on tokens (ViT, Swin, ConvNeXt's pointwise layers).  The
 * products start from the bias instead of adding it in a second pass over Y; the sums are
 * the same but for where the bias enters them (fused and unfused agree within float32
 * rounding, tests/plan/test_fuse.c). */
static int mmb_init(dd_node *node, dd_err *err) { return DD_OK; }

static int mmb_infer(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                     size_t *scratch, dd_err *err) {
  if (node->n_in != 3 || !in[2]) return dd_fail(err, DD_EFORMAT, "needs A, B and a bias");
  int rc = mm_infer_ab(node, in, out, scratch, err);
  if (rc) return rc;
  const dd_tensor *bias = in[2];
  mm_geom g;
  mm_geometry(&in[0]->shape, &in[1]->shape, &g, NULL);
  if (bias->dtype != DD_F32 || bias->shape.ndim < 1 || bias->shape.ndim > g.y.ndim ||
      dd_tensor_numel(bias) != g.n || bias->shape.d[bias->shape.ndim - 1] != g.n ||
      g.y.ndim < 1 || g.y.d[g.y.ndim - 1] != g.n)
    return dd_fail(err, DD_ESHAPE, "the bias is not one value per column of the product");
  return DD_OK;
}

static void mmb_forward_call(const dd_node *node, const dd_tensor *const *in,
                             dd_tensor *const *out, void *scratch, const dd_op_call *call) {
  if (!out[0]) return;
  mm_geom g;
  mm_geometry(&in[0]->shape, &in[1]->shape, &g, NULL);
  const float *a = dd_f32(in[0]), *b = dd_f32(in[1]), *bias = dd_f32(in[2]);
  float *y = dd_f32(out[0]);
  int m = (int)g.m, n = (int)g.n, k = (int)g.k;
  int act = dd_act_sgemm(call->act_out);
  if (call->prep) { /* B packed by dd_matmul_bias_pack: stacked, more than FEW rows */
    row_blocks(g.batch * g.m, n, k, a, k, 1, NULL, 0, call->prep, y, n,
               DD_SGEMM_COL_BIAS | act, bias, call->add_in);
    return;
  }
  int done = 1; /* the activation applied by the products */
  if (mm_stacked(&g) && g.batch * g.m <= INT_MAX) {
    done = product_cb(0, 0, (int)(g.batch * g.m), n, k, 1.f, a, k, b, n, 0.f, y, n, NULL, bias,
                      act);
  } else {
    for (int64_t bi = 0; bi < g.batch; bi++) {
      int64_t oa, ob;
      mm_offsets(&g, bi, &oa, &ob);
      done &= product_cb(0, 0, m, n, k, 1.f, a + oa * g.m * g.k, k, b + ob * g.k * g.n, n, 0.f,
                         y + bi * g.m * g.n, n, NULL, bias, act);
    }
  }
  if (act && !done) dd_act_rows(y, g.batch * g.m * g.n, call->act_out, 1);
  if (call->add_in) dd_add_rows(y, call->add_in, g.batch * g.m * g.n);
}

static void mmb_forward(const dd_node *node, const dd_tensor *const *in, dd_tensor *const *out,
                        void *scratch) {
  static const dd_op_call none = {0};
  mmb_forward_call(node, in, out, scratch, &none);
}

/* MatMul's gradients, and the bias's: the sum of dY over its rows (in double, rows in order). */
static void mmb_backward(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out, const dd_tensor *const *dout,
                         dd_tensor *const *din, void *scratch) {
  if (!dout[0]) return;
  matmul_backward(node, in, out, dout, din, scratch);
  if (!din[2]) return;
  int64_t n = dd_tensor_numel(din[2]), rows = n ? dd_tensor_numel(dout[0]) / n : 0;
  const float *dy = dd_f32(dout[0]);
  float *db = dd_f32(din[2]);
#pragma omp parallel for if (rows * n > DD_PAR_MIN) schedule(static)
  for (int64_t j = 0; j < n; j++) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++) s += dy[r * n + j];
    db[j] += (float)s;
  }
}

static int64_t mmb_flops(const dd_node *node, const dd_tensor *const *in,
                         const dd_tensor *const *out) {
  return matmul_flops(node, in, out) + dd_tensor_numel(out[0]);
}

/* A MatMulBias whose B is constant, with at most PACK_ROWS rows: B packed once by the plan
 * (plan_pack), handed to every forward as call->prep.  dd_sgemm
 * packs its blocks of B on each call, and with few rows that is a large part of the work (a
 * ViT's 17 tokens by 192 x 768 weights: a quarter of the product's time by perf); the
 * packed product gives the same floats.  The bytes the pack takes, 0 when B is not packed
 * (the plain path then: more rows, a batched product, or kernels that take no pack). */
extern const dd_op dd_op_FusedMatMulBias;
size_t dd_matmul_bias_pack_bytes(const dd_node *node, const dd_tensor *a, const dd_tensor *b);
float *dd_matmul_bias_pack(const dd_node *node, const dd_tensor *a, const dd_tensor *b,
                           int parallel);
size_t dd_matmul_bias_pack_bytes(const dd_node *node, const dd_tensor *a, const dd_tensor *b) {
  mm_geom g;
  if (node->op != &dd_op_FusedMatMulBias || !b->data ||
      mm_geometry(&a->shape, &b->shape, &g, NULL) || !mm_stacked(&g) ||
      g.batch * g.m > PACK_ROWS || g.batch * g.m <= FEW || g.n <= FEW || g.k <= 0)
    return 0;
  return (size_t)dd_sgemm_pack_floats(g.k, g.n) * sizeof(float);
}

/* B packed (on the threads when `parallel`) into a new buffer: NULL when out of memory. */
float *dd_matmul_bias_pack(const dd_node *node, const dd_tensor *a, const dd_tensor *b,
                           int parallel) {
  if (!dd_matmul_bias_pack_bytes(node, a, b)) return NULL;
  int64_t k = b->shape.d[b->shape.ndim - 2], n = b->shape.d[b->shape.ndim - 1];
  return dd_sgemm_pack_new(k, n, dd_f32(b), n, 0, parallel);
}

/* A SiLU, HardSwish or GELU after it folds in (DD_OP_FOLD_ACT): in the products' registers
 * when B is packed, else by the op's pass after them. */
const dd_op dd_op_FusedMatMulBias = {"MatMulBias", mmb_init, mmb_infer, mmb_forward,
                                     mmb_backward, mmb_flops,
                                     DD_OP_BWD_NO_OUT | DD_OP_FOLD_ACT | DD_OP_FOLD_ADD,
                                     mmb_forward_call};
