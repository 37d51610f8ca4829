/* Gemm and MatMul against naive double-precision loops (with the broadcasting done index by
 * index), their adjoints, finite-difference gradient checks and infer's errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"

/* Runs backward with dout = dy into zeroed gradients for the inputs flagged in `want`, with
 * the scratch infer asks for (the copies of B^T the products make). */
static void run_backward(th_node *t, dd_tensor **in, int n_in, dd_tensor *dy, const int *want,
                         dd_tensor **din) {
  for (int i = 0; i < n_in; i++)
    din[i] = want[i] && in[i] ? th_tensor(in[i]->shape.ndim, in[i]->shape.d) : NULL;
  const dd_tensor *dout[1] = {dy};
  dd_tensor shape, *outs[1] = {&shape};
  memset(&shape, 0, sizeof shape);
  size_t scratch = 0;
  dd_err err;
  cr_assert_eq(t->node.op->infer(&t->node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
  void *s = scratch ? malloc(scratch) : NULL;
  t->node.op->backward(&t->node, (const dd_tensor *const *)in, NULL, dout, din, s);
  free(s);
}

static double tol_for(const dd_tensor *ref) { return 1e-5 * fmax(1.0, th_max_abs(ref)); }

/* ---- Gemm ---- */

typedef struct gemm_case {
  int64_t m, n, k;
  int ta, tb;
  float alpha, beta;
  int c_ndim; /* -1: no C */
  int64_t c_dims[2];
} gemm_case;

static const gemm_case gcases[] = {
    {3, 4, 5, 0, 0, 1.f, 1.f, -1, {0}},     {3, 4, 5, 1, 0, 0.5f, 1.f, 2, {3, 4}},
    {3, 4, 5, 0, 1, 1.f, 0.25f, 1, {4}},    {3, 4, 5, 1, 1, -2.f, 3.f, 2, {3, 1}},
    {2, 6, 3, 0, 1, 1.f, 1.f, 2, {1, 6}},   {2, 6, 3, 1, 1, 1.f, 2.f, 0, {0}},
    {5, 1, 7, 0, 0, 0.7f, -1.f, 2, {1, 1}}, {1, 10, 64, 0, 1, 1.f, 1.f, 1, {10}},
    /* more than 4 rows and columns, B not transposed, alpha 1: dd_sgemm, in blocks of 64 rows
     * over the threads (70 rows: two blocks) or one block (9 rows); otherwise cblas */
    {70, 37, 19, 0, 0, 1.f, 1.f, 2, {1, 37}}, {70, 37, 19, 1, 0, 1.f, 0.5f, 1, {37}},
    {9, 40, 33, 1, 0, 1.f, 1.f, -1, {0}},      {70, 37, 19, 0, 0, 0.5f, 1.f, 2, {70, 1}},
    {70, 37, 19, 0, 1, 1.f, 1.f, -1, {0}},
    /* a transposed B against at most 32 rows: the swapped product C^T = B op(A)^T (a ViT's
     * token Linear), with a bias row, A transposed, k past one 256-deep pass, no C; and a
     * shape it declines (m (k + n) > k n) */
    {17, 192, 40, 0, 1, 1.f, 1.f, 1, {192}}, {17, 100, 64, 1, 1, 1.f, 1.f, 2, {17, 100}},
    {20, 50, 300, 0, 1, 1.f, 1.f, -1, {0}},  {30, 8, 8, 0, 1, 1.f, 1.f, 1, {8}},
};

static void gemm_setup(th_node *t, const gemm_case *k) {
  th_init(t, "Gemm", k->c_ndim >= 0 ? 3 : 2, 1);
  th_attr_float(t, "alpha", k->alpha);
  th_attr_float(t, "beta", k->beta);
  th_attr_int(t, "transA", k->ta);
  th_attr_int(t, "transB", k->tb);
}

static void gemm_inputs(const gemm_case *k, uint64_t seed, dd_tensor **in) {
  int64_t ad[2] = {k->ta ? k->k : k->m, k->ta ? k->m : k->k};
  int64_t bd[2] = {k->tb ? k->n : k->k, k->tb ? k->k : k->n};
  in[0] = th_random(2, ad, seed, -1, 1);
  in[1] = th_random(2, bd, seed + 1, -1, 1);
  in[2] = k->c_ndim >= 0 ? th_random(k->c_ndim, k->c_dims, seed + 2, -1, 1) : NULL;
}

/* Element (i, j) of C broadcast to M x N, index into C's data. */
static int64_t c_index(const gemm_case *k, int64_t i, int64_t j) {
  if (k->c_ndim == 0) return 0;
  if (k->c_ndim == 1) return k->c_dims[0] == 1 ? 0 : j;
  int64_t ci = k->c_dims[0] == 1 ? 0 : i, cj = k->c_dims[1] == 1 ? 0 : j;
  return ci * k->c_dims[1] + cj;
}

static void gemm_matches_naive_reference_forward_and_backward_on(void);
Test(gemm, matches_naive_reference_forward_and_backward) {
  th_each_kernels(gemm_matches_naive_reference_forward_and_backward_on);
}
static void gemm_matches_naive_reference_forward_and_backward_on(void) {
  for (size_t ci = 0; ci < sizeof gcases / sizeof gcases[0]; ci++) {
    const gemm_case *k = &gcases[ci];
    th_node t;
    gemm_setup(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    dd_tensor *in[3], *y[1];
    gemm_inputs(k, 10 * ci, in);
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "case %zu: %s", ci, err.msg);
    cr_assert_eq(y[0]->shape.ndim, 2);
    cr_assert_eq(y[0]->shape.d[0], k->m);
    cr_assert_eq(y[0]->shape.d[1], k->n);
    const float *a = dd_f32(in[0]), *b = dd_f32(in[1]);
    dd_tensor *ref = th_tensor(2, y[0]->shape.d), *dy = th_random(2, y[0]->shape.d, 77, -1, 1);
    dd_tensor *da = th_tensor(2, in[0]->shape.d), *db = th_tensor(2, in[1]->shape.d);
    dd_tensor *dc = in[2] ? th_tensor(in[2]->shape.ndim, in[2]->shape.d) : NULL;
    for (int64_t i = 0; i < k->m; i++)
      for (int64_t j = 0; j < k->n; j++) {
        double acc = 0, g = dd_f32(dy)[i * k->n + j];
        for (int64_t l = 0; l < k->k; l++) {
          int64_t ai = k->ta ? l * k->m + i : i * k->k + l;
          int64_t bi = k->tb ? j * k->k + l : l * k->n + j;
          acc += (double)a[ai] * b[bi];
          dd_f32(da)[ai] += (float)(k->alpha * g * b[bi]);
          dd_f32(db)[bi] += (float)(k->alpha * g * a[ai]);
        }
        double c = in[2] ? dd_f32(in[2])[c_index(k, i, j)] : 0;
        if (dc) dd_f32(dc)[c_index(k, i, j)] += (float)(k->beta * g);
        dd_f32(ref)[i * k->n + j] = (float)(k->alpha * acc + k->beta * c);
      }
    cr_assert(th_max_abs_diff(y[0], ref) <= tol_for(ref), "case %zu forward", ci);
    dd_tensor *din[3];
    run_backward(&t, in, 3, dy, (int[]){1, 1, 1}, din);
    cr_assert(th_max_abs_diff(din[0], da) <= tol_for(da), "case %zu dA", ci);
    cr_assert(th_max_abs_diff(din[1], db) <= tol_for(db), "case %zu dB", ci);
    if (dc) cr_assert(th_max_abs_diff(din[2], dc) <= tol_for(dc), "case %zu dC", ci);
    dd_tensor *all[] = {in[0], in[1], in[2], y[0], ref, dy, da, db, dc, din[0], din[1], din[2]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dd_tensor_free(all[i]);
    free(t.node.params);
  }
}

/* The swapped product (a transposed B, few rows) computes each element by the same chain of
 * multiply-adds as the product of the untransposed B it stands for: Gemm with transB=1 and
 * W, and with transB=0 and W^T written out, give the same floats, with a bias (beta 1) and
 * without C. */
static void gemm_transposed_b_with_few_rows_is_bit_identical_on(void);
Test(gemm, transposed_b_with_few_rows_is_bit_identical) {
  th_each_kernels(gemm_transposed_b_with_few_rows_is_bit_identical_on);
}
static void gemm_transposed_b_with_few_rows_is_bit_identical_on(void) {
  for (int withc = 0; withc < 2; withc++) {
    gemm_case kt = {17, 192, 300, 0, 1, 1.f, 1.f, withc ? 1 : -1, {192}}, kn = kt;
    kn.tb = 0;
    th_node t, u;
    gemm_setup(&t, &kt);
    gemm_setup(&u, &kn);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_setup(&u, &err), 0, "%s", err.msg);
    dd_tensor *in[3], *inn[3], *y[1], *yn[1];
    gemm_inputs(&kt, 5, in);
    int64_t wd[2] = {kt.k, kt.n};
    dd_tensor *w = th_tensor(2, wd);
    for (int64_t j = 0; j < kt.n; j++)
      for (int64_t q = 0; q < kt.k; q++) dd_f32(w)[q * kt.n + j] = dd_f32(in[1])[j * kt.k + q];
    inn[0] = in[0], inn[1] = w, inn[2] = in[2];
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&u, inn, yn, &err), 0, "%s", err.msg);
    cr_assert(!memcmp(dd_f32(y[0]), dd_f32(yn[0]), (size_t)(kt.m * kt.n) * sizeof(float)),
              "C %d: transB=1 and transB=0 differ (max %g)", withc, th_max_abs_diff(y[0], yn[0]));
    dd_tensor *all[] = {in[0], in[1], in[2], w, y[0], yn[0]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dd_tensor_free(all[i]);
    free(t.node.params);
    free(u.node.params);
  }
}

static void gemm_gradient_matches_finite_differences_on(void);
Test(gemm, gradient_matches_finite_differences) {
  th_each_kernels(gemm_gradient_matches_finite_differences_on);
}
static void gemm_gradient_matches_finite_differences_on(void) {
  for (size_t ci = 1; ci < 6; ci += 2) {
    const gemm_case *k = &gcases[ci];
    th_node t;
    gemm_setup(&t, k);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *in[3];
    gemm_inputs(k, 5 * ci, in);
    for (int w = 0; w < 3; w++) {
      int skipped = -1;
      double e = th_gradcheck(&t, in, w, 1e-2f, 3 + w, &skipped);
      cr_assert(e >= 0 && e < 1e-2, "case %zu input %d: relative error %g", ci, w, e);
      cr_assert_eq(skipped, 0);
    }
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    free(t.node.params);
  }
}

Test(gemm, infer_rejects_bad_shapes) {
  dd_err err;
  th_node t;
  dd_tensor *a = th_tensor(2, (int64_t[]){3, 4}), *b = th_tensor(2, (int64_t[]){5, 6});
  dd_tensor *a4 = th_tensor(4, (int64_t[]){1, 3, 1, 4}), *b2 = th_tensor(2, (int64_t[]){4, 6});
  dd_tensor *c = th_tensor(1, (int64_t[]){5});
  th_init(&t, "Gemm", 2, 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){a, b}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "inner"), "%s", err.msg);
  th_init(&t, "Gemm", 2, 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){a4, b2}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "2-D"), "%s", err.msg);
  th_init(&t, "Gemm", 3, 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){a, b2, c}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "broadcast"), "%s", err.msg);
  th_init(&t, "Gemm", 2, 1);
  th_attr_int(&t, "transA", 2);
  cr_assert_eq(th_setup(&t, &err), DD_EFORMAT);
  dd_tensor *all[] = {a, b, a4, b2, c};
  for (size_t i = 0; i < 5; i++) dd_tensor_free(all[i]);
}

/* ---- MatMul ---- */

typedef struct mm_case {
  int na, nb;
  int64_t a[4], b[4];
  int ny;
  int64_t y[4];
} mm_case;

static const mm_case mcases[] = {
    {2, 2, {3, 4}, {4, 5}, 2, {3, 5}},
    {1, 2, {4}, {4, 5}, 1, {5}},
    {2, 1, {3, 4}, {4}, 1, {3}},
    {1, 1, {6}, {6}, 0, {0}},
    {3, 2, {2, 3, 4}, {4, 5}, 3, {2, 3, 5}},             /* stacked into one sgemm */
    {2, 3, {3, 4}, {2, 4, 5}, 3, {2, 3, 5}},             /* A broadcast over B's batch */
    {4, 3, {2, 1, 3, 4}, {3, 4, 2}, 4, {2, 3, 3, 2}},    /* both broadcast */
    {3, 3, {2, 3, 4}, {2, 4, 1}, 3, {2, 3, 1}},
    {1, 3, {4}, {3, 4, 2}, 2, {3, 2}},
    {3, 1, {2, 3, 4}, {4}, 2, {2, 3}},
    /* dd_sgemm's path (more than 4 rows and columns): stacked to 140 rows in three blocks of
     * at most 64 over the threads (its B gradient with A transposed), and per batch with 9
     * rows, dd_sgemm splitting the 40 columns */
    {3, 2, {2, 70, 19}, {19, 37}, 3, {2, 70, 37}},
    {3, 3, {2, 9, 33}, {2, 33, 40}, 3, {2, 9, 40}},
    /* batches to the threads whole (attention's per-head products): 6 of 49 x 32 x 49, and
     * 2 x 3 of 17 rows (dY B^T then on the few-rows path, without the scratch); 5 batches,
     * which 2 threads would share unevenly, one after the other */
    {3, 3, {6, 49, 32}, {6, 32, 49}, 3, {6, 49, 49}},
    {4, 4, {2, 3, 17, 24}, {2, 3, 24, 17}, 4, {2, 3, 17, 17}},
    {3, 3, {5, 9, 33}, {5, 33, 40}, 3, {5, 9, 40}},
};

/* Naive batched product: operands padded to rank 4 with leading 1s, broadcasting by index. */
static void naive_matmul(const mm_case *k, const float *a, const float *b, float *y,
                         const float *dy, float *da, float *db) {
  int64_t A[4] = {1, 1, 1, 1}, B[4] = {1, 1, 1, 1};
  /* 1-D A is 1 x K, 1-D B is K x 1 */
  if (k->na == 1) A[2] = 1, A[3] = k->a[0];
  else for (int i = 0; i < k->na; i++) A[4 - k->na + i] = k->a[i];
  if (k->nb == 1) B[2] = k->b[0], B[3] = 1;
  else for (int i = 0; i < k->nb; i++) B[4 - k->nb + i] = k->b[i];
  int64_t M = A[2], K = A[3], N = B[3];
  int64_t Y0 = A[0] > B[0] ? A[0] : B[0], Y1 = A[1] > B[1] ? A[1] : B[1];
  for (int64_t p = 0; p < Y0; p++)
    for (int64_t q = 0; q < Y1; q++)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          int64_t yi = ((p * Y1 + q) * M + i) * N + j;
          double acc = 0;
          for (int64_t l = 0; l < K; l++) {
            int64_t ai = (((A[0] == 1 ? 0 : p) * A[1] + (A[1] == 1 ? 0 : q)) * M + i) * K + l;
            int64_t bi = (((B[0] == 1 ? 0 : p) * B[1] + (B[1] == 1 ? 0 : q)) * K + l) * N + j;
            acc += (double)a[ai] * b[bi];
            if (dy) {
              da[ai] += dy[yi] * b[bi];
              db[bi] += dy[yi] * a[ai];
            }
          }
          if (y) y[yi] = (float)acc;
        }
}

static void matmul_matches_naive_reference_forward_and_backward_on(void);
Test(matmul, matches_naive_reference_forward_and_backward) {
  th_each_kernels(matmul_matches_naive_reference_forward_and_backward_on);
}
static void matmul_matches_naive_reference_forward_and_backward_on(void) {
  for (size_t ci = 0; ci < sizeof mcases / sizeof mcases[0]; ci++) {
    const mm_case *k = &mcases[ci];
    th_node t;
    th_init(&t, "MatMul", 2, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *in[2] = {th_random(k->na, k->a, ci, -1, 1), th_random(k->nb, k->b, ci + 50, -1, 1)};
    dd_tensor *y[1];
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "case %zu: %s", ci, err.msg);
    dd_shape es = dd_shape_make(k->ny, k->y);
    cr_assert(dd_shape_eq(&y[0]->shape, &es), "case %zu: wrong output shape", ci);
    dd_tensor *ref = th_tensor(k->ny, k->y), *dy = th_random(k->ny, k->y, 99, -1, 1);
    dd_tensor *da = th_tensor(k->na, k->a), *db = th_tensor(k->nb, k->b);
    naive_matmul(k, dd_f32(in[0]), dd_f32(in[1]), dd_f32(ref), dd_f32(dy), dd_f32(da),
                 dd_f32(db));
    cr_assert(th_max_abs_diff(y[0], ref) <= tol_for(ref), "case %zu forward", ci);
    dd_tensor *din[2];
    run_backward(&t, in, 2, dy, (int[]){1, 1}, din);
    cr_assert(th_max_abs_diff(din[0], da) <= tol_for(da), "case %zu dA", ci);
    cr_assert(th_max_abs_diff(din[1], db) <= tol_for(db), "case %zu dB", ci);
    dd_tensor *all[] = {in[0], in[1], y[0], ref, dy, da, db, din[0], din[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dd_tensor_free(all[i]);
  }
}

/* A batched product, its dA and dB on 1, 2 and 3 threads: the same floats, whether the
 * batches go to the threads whole or each product is split (each element's sum runs over k
 * in one order). */
static void matmul_batches_give_the_same_floats_on_any_threads_on(void);
Test(matmul, batches_give_the_same_floats_on_any_threads) {
  th_each_kernels(matmul_batches_give_the_same_floats_on_any_threads_on);
}
static void matmul_batches_give_the_same_floats_on_any_threads_on(void) {
  static const int picks[] = {12, 13, 14};
  int saved = omp_get_max_threads();
  for (size_t pi = 0; pi < 3; pi++) {
    const mm_case *k = &mcases[picks[pi]];
    dd_tensor *in[2] = {th_random(k->na, k->a, pi, -1, 1), th_random(k->nb, k->b, pi + 9, -1, 1)};
    dd_tensor *dy = th_random(k->ny, k->y, 77, -1, 1), *want[3] = {NULL};
    for (int nt = 1; nt <= 3; nt++) {
      omp_set_num_threads(nt);
      th_node t;
      th_init(&t, "MatMul", 2, 1);
      dd_err err;
      cr_assert_eq(th_setup(&t, &err), 0);
      dd_tensor *y[1], *din[2];
      cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
      run_backward(&t, in, 2, dy, (int[]){1, 1}, din);
      dd_tensor *got[3] = {y[0], din[0], din[1]};
      for (int j = 0; j < 3; j++) {
        if (nt == 1) {
          want[j] = got[j];
          continue;
        }
        cr_assert(!memcmp(dd_f32(want[j]), dd_f32(got[j]),
                          (size_t)dd_tensor_numel(got[j]) * sizeof(float)),
                  "case %d, %d threads: %s differs from one thread's", picks[pi], nt,
                  j ? j == 1 ? "dA" : "dB" : "Y");
        dd_tensor_free(got[j]);
      }
    }
    omp_set_num_threads(saved);
    for (int j = 0; j < 3; j++) dd_tensor_free(want[j]);
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
    dd_tensor_free(dy);
  }
}

static void matmul_gradient_matches_finite_differences_on(void);
Test(matmul, gradient_matches_finite_differences) {
  th_each_kernels(matmul_gradient_matches_finite_differences_on);
}
static void matmul_gradient_matches_finite_differences_on(void) {
  static const int picks[] = {1, 4, 6};
  for (size_t pi = 0; pi < 3; pi++) {
    const mm_case *k = &mcases[picks[pi]];
    th_node t;
    th_init(&t, "MatMul", 2, 1);
    dd_err err;
    cr_assert_eq(th_setup(&t, &err), 0);
    dd_tensor *in[2] = {th_random(k->na, k->a, pi, -1, 1), th_random(k->nb, k->b, pi + 9, -1, 1)};
    for (int w = 0; w < 2; w++) {
      int skipped = -1;
      double e = th_gradcheck(&t, in, w, 1e-2f, 5 + w, &skipped);
      cr_assert(e >= 0 && e < 1e-2, "case %d input %d: relative error %g", picks[pi], w, e);
      cr_assert_eq(skipped, 0);
    }
    dd_tensor_free(in[0]);
    dd_tensor_free(in[1]);
  }
}

Test(matmul, infer_rejects_mismatches) {
  dd_err err;
  th_node t;
  dd_tensor *a = th_tensor(3, (int64_t[]){2, 3, 4}), *b = th_tensor(3, (int64_t[]){3, 4, 5});
  dd_tensor *c = th_tensor(2, (int64_t[]){5, 6});
  th_init(&t, "MatMul", 2, 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){a, b}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "batch"), "%s", err.msg);
  th_init(&t, "MatMul", 2, 1);
  cr_assert_eq(th_infer_status(&t, (dd_tensor *[]){a, c}, &err), DD_ESHAPE);
  cr_assert(strstr(err.msg, "inner"), "%s", err.msg);
  dd_tensor_free(a);
  dd_tensor_free(b);
  dd_tensor_free(c);
}
