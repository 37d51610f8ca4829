/* Training (dream/train.h): weight gradients of whole models against finite differences,
 * SGD and Adam steps against torch.optim (tests/ref/train_torch.py), determinism, export,
 * refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/model.h"
#include "dream/preset.h"
#include "dream/train.h"
#include "helper_files.h"
#include "helper_model.h"
#include "helper_ops.h"
#include "helper_torch.h"
#include "ops/cpu.h"

TestSuite(train, .init = th_tmpdir_setup, .fini = th_tmpdir_teardown);

static dd_trainer *make_trainer(const char *arch, int c, int size, int k, uint64_t seed,
                                const dd_train_opts *o) {
  void *onnx;
  size_t len;
  dd_err err;
  cr_assert_eq(dd_train_arch(arch, c, size, k, seed, &onnx, &len, &err), 0, "%s", err.msg);
  dd_trainer *t;
  cr_assert_eq(dd_trainer_new(onnx, len, arch, o, &t, &err), 0, "%s", err.msg);
  free(onnx);
  return t;
}

static float *random_batch(int n, int c, int s, uint64_t seed, int *labels, int k) {
  float *x = malloc(sizeof(float) * (size_t)n * c * s * s);
  for (int64_t i = 0; i < (int64_t)n * c * s * s; i++) x[i] = th_rand_uniform(&seed, -1, 1);
  for (int i = 0; i < n; i++) labels[i] = (int)(dd_rng_next(&seed) % (uint64_t)k);
  return x;
}

/* Directional finite difference of the loss along a random direction of every parameter
 * against the analytic gradient: (L(w + eps u) - L(w - eps u)) / 2 eps = g . u. */
static void check_gradients(dd_trainer *t, const float *x, const int *labels, int n,
                            uint64_t seed, const char *what) {
  dd_err err;
  int np = dd_trainer_num_params(t);
  cr_assert(np > 0);
  float **saved = calloc((size_t)np, sizeof *saved), **dir = calloc((size_t)np, sizeof *dir);
  /* analytic gradient: a step with its update undone */
  for (int i = 0; i < np; i++) {
    dd_tensor *w = dd_trainer_param(t, i);
    int64_t ne = dd_tensor_numel(w);
    saved[i] = malloc(sizeof(float) * (size_t)ne);
    dir[i] = malloc(sizeof(float) * (size_t)ne);
    memcpy(saved[i], w->data, sizeof(float) * (size_t)ne);
  }
  cr_assert_eq(dd_trainer_step(t, x, labels, n, NULL, NULL, &err), 0, "%s", err.msg);
  for (int i = 0; i < np; i++) /* undo the update */
    memcpy(dd_trainer_param(t, i)->data, saved[i],
           sizeof(float) * (size_t)dd_tensor_numel(dd_trainer_param(t, i)));
  for (int i = 0; i < np; i++) {
    const dd_tensor *g = dd_trainer_param_grad(t, i);
    cr_assert_not_null(g, "%s: no gradient for %s", what, dd_trainer_param_name(t, i));
    dd_tensor *w = dd_trainer_param(t, i);
    int64_t ne = dd_tensor_numel(w);
    /* Each parameter alone, along a random direction; a Relu or max-pool kink within the step
     * shows as quotients at eps and eps/2 that disagree: another direction is drawn then. */
    int tries = 0, ok = 0;
    double s = 0, fd = 0;
    for (; tries < 10 && !ok; tries++) {
      /* dense for small tensors; 4 random elements of a large one (fewer units move, fewer
       * kinks come within the step) */
      for (int64_t j = 0; j < ne; j++) dir[i][j] = ne <= 16 ? th_rand_uniform(&seed, -1, 1) : 0;
      for (int e = 0; ne > 16 && e < 4; e++)
        dir[i][dd_rng_next(&seed) % (uint64_t)ne] = th_rand_uniform(&seed, 0.5f, 1) *
                                                     (e % 2 ? -1.0f : 1.0f);
      s = 0;
      for (int64_t j = 0; j < ne; j++) s += (double)dd_f32(g)[j] * dir[i][j];
      double q[2];
      for (int h = 0; h < 2; h++) {
        const float eps = h ? 5e-4f : 1e-3f;
        double lp, lm;
        for (int64_t j = 0; j < ne; j++) dd_f32(w)[j] = saved[i][j] + eps * dir[i][j];
        cr_assert_eq(dd_trainer_eval(t, x, labels, n, &lp, NULL, NULL, &err), 0, "%s", err.msg);
        for (int64_t j = 0; j < ne; j++) dd_f32(w)[j] = saved[i][j] - eps * dir[i][j];
        cr_assert_eq(dd_trainer_eval(t, x, labels, n, &lm, NULL, NULL, &err), 0, "%s", err.msg);
        for (int64_t j = 0; j < ne; j++) dd_f32(w)[j] = saved[i][j];
        q[h] = (lp - lm) / (2.0 * eps);
      }
      fd = q[0];
      ok = fabs(q[0] - q[1]) <= 2e-3 * fabs(q[0]) + 2e-5;
    }
    cr_assert(ok, "%s: %s: a kink within the step in every direction tried", what,
              dd_trainer_param_name(t, i));
    cr_assert(fabs(s) > 1e-3, "%s: %s: gradient along a random direction is %g: not exercised",
              what, dd_trainer_param_name(t, i), s);
    cr_assert(fabs(fd - s) <= 2e-3 * fabs(s) + 2e-5,
              "%s: %s: finite difference %.8g, analytic %.8g",
              what, dd_trainer_param_name(t, i), fd, s);
  }
  for (int i = 0; i < np; i++) {
    free(saved[i]);
    free(dir[i]);
  }
  free(saved);
  free(dir);
}

Test(train, weight_gradients_of_the_architectures_match_finite_differences) {
  static const char *const archs[] = {"perceptron", "mlp", "cnn"};
  dd_train_opts o;
  dd_train_opts_init(&o);
  for (int a = 0; a < 3; a++) {
    dd_trainer *t = make_trainer(archs[a], 3, 8, 4, 7 + a, &o);
    int labels[3];
    float *x = random_batch(3, 3, 8, 100 + a, labels, 4);
    check_gradients(t, x, labels, 3, 5 + a, archs[a]);
    free(x);
    dd_trainer_free(t);
  }
}

static void init_random(th_model *b, uint64_t *s, const char *name, int nd, const int64_t *dims,
                        int n, float lo, float hi) {
  float buf[512];
  for (int i = 0; i < n; i++) buf[i] = th_rand_uniform(s, lo, hi);
  th_model_init_f32(b, name, nd, dims, buf, (size_t)n);
}

/* Every op of ops.def that takes a weight, in one model: Conv, BatchNormalization (scale and
 * bias; its statistics are not parameters), PRelu, Mul and Add by an initializer, MatMul by
 * an initializer, LayerNormalization, Gemm. */
Test(train, weight_gradients_of_every_weighted_op_match_finite_differences) {
  th_model *b = th_model_new("weighted");
  uint64_t s = 3;
  th_model_input(b, "x", 4, (int64_t[]){-1, 2, 4, 4});
  th_model_output(b, "logits");
  init_random(b, &s, "cw", 4, (int64_t[]){3, 2, 3, 3}, 54, -0.5f, 0.5f);
  init_random(b, &s, "cb", 1, (int64_t[]){3}, 3, -0.5f, 0.5f);
  th_model_node(b, "Conv", "conv", "x,cw,cb", "c");
  th_model_attr_ints(b, "pads", 4, (int64_t[]){1, 1, 1, 1});
  init_random(b, &s, "bn_s", 1, (int64_t[]){3}, 3, 0.5f, 1.5f);
  init_random(b, &s, "bn_b", 1, (int64_t[]){3}, 3, -0.5f, 0.5f);
  init_random(b, &s, "bn_m", 1, (int64_t[]){3}, 3, -0.2f, 0.2f);
  init_random(b, &s, "bn_v", 1, (int64_t[]){3}, 3, 0.5f, 1.5f);
  th_model_node(b, "BatchNormalization", "bn", "c,bn_s,bn_b,bn_m,bn_v", "n");
  init_random(b, &s, "slope", 3, (int64_t[]){3, 1, 1}, 3, 0.1f, 0.3f);
  th_model_node(b, "PRelu", "prelu", "n,slope", "p");
  init_random(b, &s, "mul_w", 3, (int64_t[]){3, 1, 1}, 3, 0.5f, 1.5f);
  th_model_node(b, "Mul", "mul", "p,mul_w", "mw");
  init_random(b, &s, "add_b", 3, (int64_t[]){3, 4, 4}, 48, -0.5f, 0.5f);
  th_model_node(b, "Add", "add", "mw,add_b", "ab");
  th_model_node(b, "Flatten", "flat", "ab", "f");
  init_random(b, &s, "mm_w", 2, (int64_t[]){48, 6}, 288, -0.2f, 0.2f);
  th_model_node(b, "MatMul", "mm", "f,mm_w", "mm");
  init_random(b, &s, "ln_s", 1, (int64_t[]){6}, 6, 0.5f, 1.5f);
  init_random(b, &s, "ln_b", 1, (int64_t[]){6}, 6, -0.5f, 0.5f);
  th_model_node(b, "LayerNormalization", "ln", "mm,ln_s,ln_b", "l");
  init_random(b, &s, "fc_w", 2, (int64_t[]){5, 6}, 30, -0.5f, 0.5f);
  init_random(b, &s, "fc_b", 1, (int64_t[]){5}, 5, -0.5f, 0.5f);
  th_model_node(b, "Gemm", "fc", "l,fc_w,fc_b", "logits");
  th_model_attr_int(b, "transB", 1);
  size_t len;
  uint8_t *bytes = th_model_pack(b, &len);
  th_model_free(b);
  dd_train_opts o;
  dd_train_opts_init(&o);
  dd_trainer *t;
  dd_err err;
  cr_assert_eq(dd_trainer_new(bytes, len, "weighted.onnx", &o, &t, &err), 0, "%s", err.msg);
  free(bytes);
  /* the statistics are data: 12 parameters, not 14 */
  cr_assert_eq(dd_trainer_num_params(t), 12, "%d parameters", dd_trainer_num_params(t));
  for (int i = 0; i < dd_trainer_num_params(t); i++)
    cr_assert(strcmp(dd_trainer_param_name(t, i), "bn_m") &&
              strcmp(dd_trainer_param_name(t, i), "bn_v"));
  int labels[4];
  float *x = random_batch(4, 2, 4, 9, labels, 5);
  check_gradients(t, x, labels, 4, 13, "weighted");
  free(x);
  dd_trainer_free(t);
}

static dd_tensor *load_ref(const char *name) {
  char p[256];
  dd_tensor *t;
  dd_err err;
  cr_assert_eq(dd_tensor_load_pb(th_tmp(p, sizeof p, name), &t, NULL, &err), 0, "%s", err.msg);
  return t;
}

/* |a - b| <= 1e-5 |b|, measured against the tensor's largest |b| (elements near 0 have no
 * relative error to speak of) and as a whole (L2). */
static void expect_close(const dd_tensor *a, const dd_tensor *ref, const char *what) {
  cr_assert_eq(dd_tensor_numel(a), dd_tensor_numel(ref), "%s", what);
  double big = th_max_abs(ref), d = th_max_abs_diff(a, ref);
  cr_assert(d <= 1e-5 * big, "%s: max |difference| %g against max |torch| %g", what, d, big);
  cr_assert(th_rel_l2(a, ref) <= 1e-5, "%s: relative L2 error %g", what, th_rel_l2(a, ref));
}

Test(train, sgd_and_adam_steps_match_torch_optim, .timeout = 120) {
  /* 20 images: three chunks (8, 8, 4) whose gradients the trainer adds (src/train.c) */
  enum { n = 20 };
  const int c = 3, s = 8, k = 4;
  void *onnx;
  size_t len;
  dd_err err;
  char p[256];
  cr_assert_eq(dd_train_arch("cnn", c, s, k, 21, &onnx, &len, &err), 0, "%s", err.msg);
  th_write_bytes(th_tmp(p, sizeof p, "init.onnx"), onnx, len);
  int labels[n];
  float *x = random_batch(n, c, s, 77, labels, k);
  int64_t xd[4] = {n, c, s, s}, ld[1] = {n}, lv[n];
  for (int i = 0; i < n; i++) lv[i] = labels[i];
  dd_shape xs = dd_shape_make(4, xd);
  dd_tensor xt = dd_tensor_wrap(DD_F32, &xs, x);
  cr_assert_eq(dd_tensor_save_pb(th_tmp(p, sizeof p, "x.pb"), &xt, "x", &err), 0, "%s", err.msg);
  dd_tensor *lt = th_tensor_i64(1, ld, lv);
  cr_assert_eq(dd_tensor_save_pb(th_tmp(p, sizeof p, "labels.pb"), lt, "labels", &err), 0, "%s",
               err.msg);
  dd_tensor_free(lt);
  th_ref_script("train_torch.py", "torch and onnx (Debian python3-torch, python3-onnx)");
  for (int opt = 0; opt < 2; opt++) {
    dd_train_opts o;
    dd_train_opts_init(&o);
    o.weight_decay = 1e-3f;
    if (opt == 0) {
      o.lr = 0.1f;
      o.momentum = 0.9f;
    } else {
      o.optimizer = DD_OPT_ADAM;
      o.lr = 0.01f;
    }
    dd_trainer *t;
    cr_assert_eq(dd_trainer_new(onnx, len, "cnn", &o, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(dd_trainer_num_params(t), 6);
    for (int step = 0; step < 2; step++) {
      cr_assert_eq(dd_trainer_step(t, x, labels, n, NULL, NULL, &err), 0, "%s", err.msg);
      for (int i = 0; step == 0 && opt == 0 && i < dd_trainer_num_params(t); i++) {
        char name[128], what[160];
        snprintf(name, sizeof name, "grad_%s.pb", dd_trainer_param_name(t, i));
        dd_tensor *ref = load_ref(name);
        snprintf(what, sizeof what, "gradient of %s", dd_trainer_param_name(t, i));
        expect_close(dd_trainer_param_grad(t, i), ref, what);
        dd_tensor_free(ref);
      }
    }
    for (int i = 0; i < dd_trainer_num_params(t); i++) {
      char name[128], what[160];
      snprintf(name, sizeof name, "%s_%s.pb", opt ? "adam" : "sgd", dd_trainer_param_name(t, i));
      dd_tensor *ref = load_ref(name);
      snprintf(what, sizeof what, "%s: %s after 2 steps", opt ? "Adam" : "SGD",
               dd_trainer_param_name(t, i));
      expect_close(dd_trainer_param(t, i), ref, what);
      dd_tensor_free(ref);
    }
    /* the weights moved from the initial ones */
    dd_trainer *t0;
    cr_assert_eq(dd_trainer_new(onnx, len, "cnn", &o, &t0, &err), 0, "%s", err.msg);
    for (int i = 0; i < dd_trainer_num_params(t); i++)
      cr_assert(th_max_abs_diff(dd_trainer_param(t, i), dd_trainer_param(t0, i)) > 1e-4,
                "%s did not move", dd_trainer_param_name(t, i));
    dd_trainer_free(t0);
    dd_trainer_free(t);
  }
  free(x);
  free(onnx);
}

Test(train, same_seed_gives_byte_identical_weights_and_files) {
  dd_train_opts o;
  dd_train_opts_init(&o);
  o.optimizer = DD_OPT_ADAM;
  o.lr = 0.003f;
  char p1[256], p2[256];
  dd_err err;
  const char *labels_s[] = {"a", "b", "c"};
  dd_train_meta meta = {{0, 1.0f, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}}, 16, labels_s, 3};
  for (int run = 0; run < 2; run++) {
    dd_trainer *t = make_trainer("cnn", 3, 16, 3, 42, &o);
    for (int step = 0; step < 4; step++) {
      int labels[8];
      float *x = random_batch(8 - step, 3, 16, 1000 + step, labels, 3); /* batch sizes vary */
      cr_assert_eq(dd_trainer_step(t, x, labels, 8 - step, NULL, NULL, &err), 0, "%s", err.msg);
      free(x);
    }
    cr_assert_eq(dd_trainer_save(t, th_tmp(run ? p2 : p1, sizeof p1, run ? "b.onnx" : "a.onnx"),
                                 &meta, &err), 0, "%s", err.msg);
    dd_trainer_free(t);
  }
  size_t l1, l2;
  char *a = th_slurp(p1, &l1), *b = th_slurp(p2, &l2);
  cr_assert(a && b && l1 == l2 && !memcmp(a, b, l1), "two runs wrote different files");
  free(a);
  free(b);
  /* the file loads, and its metadata reads back */
  dd_model *m;
  cr_assert_eq(dd_model_load(p1, &m, &err), 0, "%s", err.msg);
  dd_model_free(m);
  int found, size, nl;
  dd_preproc pre;
  char **labels;
  cr_assert_eq(dd_train_read_meta(p1, &found, &pre, &size, &labels, &nl, &err), 0, "%s", err.msg);
  cr_assert(found && size == 16 && nl == 3 && !strcmp(labels[2], "c") && pre.mean[1] == 0.5f &&
            pre.std[2] == 0.5f && !pre.bgr);
  for (int i = 0; i < nl; i++) free(labels[i]);
  free(labels);
}

/* A batch of several chunks (src/train.c shares them among the threads): the same bytes of
 * weights and gradients on 1 and 2 threads, and the loss and gradient of the whole batch
 * (against steps taken image by image: the mean of their gradients).  n images of c x s x s
 * (n <= 37), k classes. */
static void check_chunked(const char *arch, int n, int c, int s, int k) {
  dd_train_opts o;
  dd_train_opts_init(&o);
  o.momentum = 0.9f;
  dd_err err;
  int labels[37];
  float *x = random_batch(n, c, s, 4242, labels, k);
  float *w[2][8] = {{0}};
  float *g[2][8] = {{0}};
  double loss[2];
  int np = 0;
  for (int r = 0; r < 2; r++) {
    omp_set_num_threads(r ? 2 : 1);
    dd_trainer *t = make_trainer(arch, c, s, k, 5, &o);
    np = dd_trainer_num_params(t);
    cr_assert(np <= 8);
    for (int step = 0; step < 3; step++)
      cr_assert_eq(dd_trainer_step(t, x, labels, n - step, &loss[r], NULL, &err), 0, "%s",
                   err.msg);
    for (int i = 0; i < np; i++) {
      size_t b = sizeof(float) * (size_t)dd_tensor_numel(dd_trainer_param(t, i));
      w[r][i] = malloc(b);
      g[r][i] = malloc(b);
      memcpy(w[r][i], dd_trainer_param(t, i)->data, b);
      memcpy(g[r][i], dd_trainer_param_grad(t, i)->data, b);
    }
    dd_trainer_free(t);
  }
  omp_set_num_threads(2);
  cr_assert_eq(loss[0], loss[1]);
  dd_trainer *t = make_trainer(arch, c, s, k, 5, &o);
  for (int i = 0; i < np; i++) {
    int64_t ne = dd_tensor_numel(dd_trainer_param(t, i));
    cr_assert_eq(memcmp(w[0][i], w[1][i], sizeof(float) * (size_t)ne), 0, "weights %d differ", i);
    cr_assert_eq(memcmp(g[0][i], g[1][i], sizeof(float) * (size_t)ne), 0, "gradient %d differs",
                 i);
  }
  /* the summed gradient of a batch of 37 is the mean of the 37 single images' */
  cr_assert_eq(dd_trainer_step(t, x, labels, n, NULL, NULL, &err), 0, "%s", err.msg);
  dd_trainer *t1 = make_trainer(arch, c, s, k, 5, &o);
  for (int i = 0; i < np; i++) {
    const dd_tensor *gb = dd_trainer_param_grad(t, i);
    int64_t ne = dd_tensor_numel(gb);
    double *mean = calloc((size_t)ne, sizeof *mean);
    for (int j = 0; j < n; j++) {
      float *saved[8]; /* every step from the initial weights: undone after it */
      for (int q = 0; q < np; q++) {
        size_t b = sizeof(float) * (size_t)dd_tensor_numel(dd_trainer_param(t1, q));
        saved[q] = malloc(b);
        memcpy(saved[q], dd_trainer_param(t1, q)->data, b);
      }
      cr_assert_eq(dd_trainer_step(t1, x + (size_t)j * c * s * s, labels + j, 1, NULL, NULL,
                                   &err), 0, "%s", err.msg);
      const float *gj = dd_f32(dd_trainer_param_grad(t1, i));
      for (int64_t e = 0; e < ne; e++) mean[e] += gj[e] / n;
      for (int q = 0; q < np; q++) {
        memcpy(dd_trainer_param(t1, q)->data, saved[q],
               sizeof(float) * (size_t)dd_tensor_numel(dd_trainer_param(t1, q)));
        free(saved[q]);
      }
    }
    double worst = 0, scale = 0;
    for (int64_t e = 0; e < ne; e++) {
      double d = fabs(mean[e] - dd_f32(gb)[e]);
      worst = d > worst ? d : worst;
      scale = fabs(mean[e]) > scale ? fabs(mean[e]) : scale;
    }
    cr_assert(scale > 0 && worst <= 1e-5 * scale, "%s: batch gradient off the images' mean by "
              "%g (largest %g)", dd_trainer_param_name(t, i), worst, scale);
    free(mean);
  }
  dd_trainer_free(t1);
  dd_trainer_free(t);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < np; i++) {
      free(w[r][i]);
      free(g[r][i]);
    }
  free(x);
}

/* The cnn's chunk gradients are copied out of the plans and summed after the parallel
 * region; a perceptron on 512x512 images with 13 classes (3.4M weights, 5 chunks: more than
 * TRAIN_COPY_MAX floats together) has them summed wave by wave straight from the plans. */
Test(train, chunked_batches_are_bit_exact_across_thread_counts) {
  check_chunked("cnn", 37, 3, 16, 4);
}

Test(train, chunked_batches_of_a_large_model_are_bit_exact_across_thread_counts,
     .timeout = 120) {
  check_chunked("perceptron", 37, 1, 512, 13);
}

/* DD_PLAN_SERIAL (the trainer's per-thread plans) keeps every op on the calling thread and
 * changes no byte: the cnn at batch 16 of 64x64 images, large enough for its ops to split
 * their loops on 2 threads, forward and backward with and without it.  On the generic
 * kernels the products are OpenBLAS's, whose sums depend on the pieces they are handed and
 * on its own threads (README, "Reproducible": bytes are promised on the AVX-512 kernels only):
 * there the two agree within float32 rounding of the largest value instead. */
Test(train, serial_plans_give_the_same_bytes) {
  void *onnx;
  size_t len;
  dd_err err;
  cr_assert_eq(dd_train_arch("cnn", 3, 64, 4, 3, &onnx, &len, &err), 0, "%s", err.msg);
  dd_model *m;
  cr_assert_eq(dd_model_parse(onnx, len, "cnn", &m, &err), 0, "%s", err.msg);
  free(onnx);
  omp_set_num_threads(2);
  int in = dd_model_input(m), out = dd_model_output(m, 0), labels[16];
  int64_t dims[4] = {16, 3, 64, 64};
  float *x = random_batch(16, 3, 64, 99, labels, 4);
  static const char *const names[] = {"conv1.weight", "conv1.bias", "conv2.weight",
                                      "conv2.bias",   "fc1.weight", "fc1.bias"};
  float *res[2][7];
  size_t bytes[7];
  for (int r = 0; r < 2; r++) {
    dd_binding b = {in, dd_shape_make(4, dims), NULL};
    dd_plan *p;
    cr_assert_eq(dd_plan_new(m, &b, 1, &out, 1, DD_PLAN_PARAMS | (r ? DD_PLAN_SERIAL : 0), 0, &p,
                             &err), 0, "%s", err.msg);
    memcpy(dd_plan_tensor(p, in)->data, x, sizeof(float) * 16 * 3 * 64 * 64);
    dd_plan_forward(p);
    dd_plan_zero_grad(p);
    dd_tensor *g = dd_plan_grad(p, out);
    for (int64_t i = 0; i < dd_tensor_numel(g); i++) dd_f32(g)[i] = (float)(i % 7) - 3.0f;
    dd_plan_backward(p);
    for (int i = 0; i < 7; i++) {
      const dd_tensor *t = i ? dd_plan_grad(p, dd_model_find(m, names[i - 1]))
                             : dd_plan_tensor(p, out);
      cr_assert_not_null(t, "%s", i ? names[i - 1] : "logits");
      bytes[i] = sizeof(float) * (size_t)dd_tensor_numel(t);
      res[r][i] = malloc(bytes[i]);
      memcpy(res[r][i], t->data, bytes[i]);
    }
    dd_plan_free(p);
  }
  const int own = dd_kernels_chosen() == DD_KERNELS_AVX512;
  for (int i = 0; i < 7; i++) {
    if (own) {
      cr_assert_eq(memcmp(res[0][i], res[1][i], bytes[i]), 0, "%s differs with DD_PLAN_SERIAL",
                   i ? names[i - 1] : "the logits");
    } else {
      double worst = 0, scale = 0;
      for (size_t e = 0; e < bytes[i] / sizeof(float); e++) {
        worst = fmax(worst, fabs((double)res[0][i][e] - res[1][i][e]));
        scale = fmax(scale, fabs((double)res[0][i][e]));
      }
      cr_assert(worst <= 1e-5 * scale, "%s: %g apart with DD_PLAN_SERIAL on the generic kernels "
                "(largest %g)", i ? names[i - 1] : "the logits", worst, scale);
    }
    free(res[0][i]);
    free(res[1][i]);
  }
  free(x);
  dd_model_free(m);
}

Test(train, saved_weights_are_the_trained_ones) {
  dd_train_opts o;
  dd_train_opts_init(&o);
  o.lr = 0.1f;
  dd_trainer *t = make_trainer("mlp", 3, 8, 3, 1, &o);
  int labels[5];
  float *x = random_batch(5, 3, 8, 4, labels, 3);
  dd_err err;
  cr_assert_eq(dd_trainer_step(t, x, labels, 5, NULL, NULL, &err), 0, "%s", err.msg);
  char p[256];
  cr_assert_eq(dd_trainer_save(t, th_tmp(p, sizeof p, "m.onnx"), NULL, &err), 0, "%s", err.msg);
  size_t len;
  char *bytes = th_slurp(p, &len);
  dd_trainer *u;
  cr_assert_eq(dd_trainer_new(bytes, len, "m.onnx", &o, &u, &err), 0, "%s", err.msg);
  free(bytes);
  float la[15], lb[15];
  cr_assert_eq(dd_trainer_eval(t, x, labels, 5, NULL, NULL, la, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_trainer_eval(u, x, labels, 5, NULL, NULL, lb, &err), 0, "%s", err.msg);
  cr_assert(!memcmp(la, lb, sizeof la));
  free(x);
  dd_trainer_free(t);
  dd_trainer_free(u);
}

Test(train, refuses_a_model_without_trainable_weights) {
  th_model *b = th_model_new("noweights");
  th_model_input(b, "x", 4, (int64_t[]){1, 3, 4, 4});
  th_model_output(b, "y");
  th_model_node(b, "Flatten", "f", "x", "y");
  size_t len;
  uint8_t *bytes = th_model_pack(b, &len);
  th_model_free(b);
  dd_train_opts o;
  dd_train_opts_init(&o);
  dd_trainer *t = NULL;
  dd_err err;
  cr_assert_eq(dd_trainer_new(bytes, len, "noweights.onnx", &o, &t, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "noweights.onnx") && strstr(err.msg, "no trainable weights"), "%s",
            err.msg);
  cr_assert_null(t);
  free(bytes);
}

Test(train, a_diverging_step_leaves_the_weights_and_says_so) {
  dd_train_opts o;
  dd_train_opts_init(&o);
  dd_trainer *t = make_trainer("perceptron", 3, 4, 2, 1, &o);
  int labels[2] = {0, 1};
  float x[96];
  for (int i = 0; i < 96; i++) x[i] = i == 5 ? NAN : 1.0f;
  float before[96];
  memcpy(before, dd_trainer_param(t, 0)->data, sizeof before);
  dd_err err;
  cr_assert_eq(dd_trainer_step(t, x, labels, 2, NULL, NULL, &err), DD_ELIMIT);
  cr_assert(strstr(err.msg, "not finite"), "%s", err.msg);
  cr_assert(!memcmp(before, dd_trainer_param(t, 0)->data, sizeof before));
  dd_trainer_free(t);
}

Test(train, refuses_bad_architectures_and_options) {
  void *onnx;
  size_t len;
  dd_err err;
  cr_assert_eq(dd_train_arch("resnet", 3, 8, 2, 1, &onnx, &len, &err), DD_EARG);
  cr_assert(strstr(err.msg, "resnet"), "%s", err.msg);
  cr_assert_eq(dd_train_arch("cnn", 3, 10, 2, 1, &onnx, &len, &err), DD_EARG);
  cr_assert(strstr(err.msg, "divisible by 4"), "%s", err.msg);
  cr_assert_eq(dd_train_arch("mlp", 3, 8, 1, 1, &onnx, &len, &err), DD_EARG);
  cr_assert_eq(dd_train_arch("mlp", 3, 8, 2, 1, &onnx, &len, &err), 0, "%s", err.msg);
  dd_train_opts o;
  dd_train_opts_init(&o);
  o.lr = -1;
  dd_trainer *t = NULL;
  cr_assert_eq(dd_trainer_new(onnx, len, "mlp", &o, &t, &err), DD_EARG);
  cr_assert(strstr(err.msg, "learning rate"), "%s", err.msg);
  o.lr = 0.1f;
  cr_assert_eq(dd_trainer_new(onnx, len, "mlp", &o, &t, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_trainer_set_lr(t, 0, &err), DD_EARG);
  cr_assert_eq(dd_trainer_set_lr(t, 0.5f, &err), 0);
  dd_trainer_free(t);
  free(onnx);
}

/* Writes a ModelProto holding only metadata_props (field 14) entries {key, value}: what
 * dd_train_read_meta reads, whatever else the file holds. */
static void write_meta(const char *path, const char *const *kv, int n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s", path);
  for (int i = 0; i < n; i++) {
    size_t lk = strlen(kv[2 * i]), lv = strlen(kv[2 * i + 1]);
    cr_assert(lk < 100 && lv < 100);
    fputc(14 << 3 | 2, f);
    fputc((int)(2 + lk + 2 + lv), f);
    fputc(1 << 3 | 2, f);
    fputc((int)lk, f);
    fwrite(kv[2 * i], 1, lk, f);
    fputc(2 << 3 | 2, f);
    fputc((int)lv, f);
    fwrite(kv[2 * i + 1], 1, lv, f);
  }
  fclose(f);
}

/* The metadata a trained model carries is read back; values no model could mean (a size of
 * -1, a zero std, a scale that is not a number) are refused naming the file and the key,
 * never passed on to the preprocessing. */
Test(train, metadata_read_back_and_bad_values_refused) {
  char path[256];
  snprintf(path, sizeof path, "%s/meta.onnx", th_tmpdir);
  static const char *const good[] = {"dream.size", "32", "dream.mean", "0.5,0.25,0",
                                     "dream.std", "2,2,2", "dream.labels", "circle\nsquare"};
  write_meta(path, good, 4);
  int found = 0, size = 0, n = 0;
  char **labels = NULL;
  dd_preproc pp;
  dd_err err;
  cr_assert_eq(dd_train_read_meta(path, &found, &pp, &size, &labels, &n, &err), 0, "%s",
               err.msg);
  cr_assert(found);
  cr_expect_eq(size, 32);
  cr_expect_eq(pp.mean[1], 0.25f);
  cr_expect_eq(pp.std[2], 2.f);
  cr_assert_eq(n, 2);
  cr_expect_str_eq(labels[1], "square");
  dd_labels_free(labels, n);
  static const char *const bad[][2] = {{"dream.size", "-1"},        {"dream.size", "99999999"},
                                       {"dream.size", "12abc"},     {"dream.std", "1,0,1"},
                                       {"dream.mean", "nan,0,0"},   {"dream.scale", "0"},
                                       {"dream.scale", "inf"},      {"dream.std", "1,1"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_meta(path, bad[i], 1);
    found = 0;
    cr_expect_eq(dd_train_read_meta(path, &found, &pp, &size, NULL, NULL, &err), DD_EFORMAT,
                 "%s = %s accepted", bad[i][0], bad[i][1]);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, bad[i][0]), "%s", err.msg);
  }
}

/* A conv net as torch.onnx.export writes it without a dynamic batch axis: the input is
 * 1 x 3 x 6 x 6 and the Reshape before the classifier pins the batch ([1, -1]).  It trains
 * (in chunks of one image) and its batch gradient and loss are those of the same net whose
 * Reshape takes any batch ([-1, 144]), which runs in chunks of eight. */
static uint8_t *pinned_net(int pinned, size_t *len) {
  th_model *b = th_model_new(pinned ? "pinned" : "free");
  th_model_input(b, "x", 4, (int64_t[]){pinned ? 1 : -1, 3, 6, 6});
  th_model_output(b, "logits");
  uint64_t s = 77;
  float w[720];
  for (int i = 0; i < 720; i++) w[i] = th_rand_uniform(&s, -0.3f, 0.3f);
  th_model_init_f32(b, "cw", 4, (int64_t[]){4, 3, 3, 3}, w, 108);
  th_model_init_f32(b, "cb", 1, (int64_t[]){4}, w + 108, 4);
  th_model_init_f32(b, "fw", 2, (int64_t[]){5, 144}, w, 720);
  th_model_init_f32(b, "fb", 1, (int64_t[]){5}, w + 300, 5);
  th_model_init_i64(b, "shape", 1, (int64_t[]){2},
                    (int64_t[]){pinned ? 1 : -1, pinned ? -1 : 144}, 2);
  th_model_node(b, "Conv", "conv", "x,cw,cb", "c");
  th_model_attr_ints(b, "pads", 4, (int64_t[]){1, 1, 1, 1});
  th_model_node(b, "Relu", "relu", "c", "r");
  th_model_node(b, "Reshape", "flat", "r,shape", "f");
  th_model_node(b, "Gemm", "fc", "f,fw,fb", "logits");
  th_model_attr_int(b, "transB", 1);
  uint8_t *bytes = th_model_pack(b, len);
  th_model_free(b);
  return bytes;
}

Test(train, a_model_pinned_to_one_image_trains_in_chunks_of_one) {
  dd_train_opts o;
  dd_train_opts_init(&o);
  dd_err err;
  int labels[19];
  float *x = random_batch(19, 3, 6, 31, labels, 5);
  dd_trainer *t[2];
  double loss[2];
  for (int r = 0; r < 2; r++) {
    size_t len;
    uint8_t *onnx = pinned_net(r, &len);
    cr_assert_eq(dd_trainer_new(onnx, len, r ? "pinned" : "free", &o, &t[r], &err), 0, "%s",
                 err.msg);
    free(onnx);
    cr_assert_eq(dd_trainer_step(t[r], x, labels, 19, &loss[r], NULL, &err), 0, "%s", err.msg);
  }
  cr_expect(fabs(loss[0] - loss[1]) <= 1e-6 * fabs(loss[0]), "loss %.9g against %.9g", loss[1],
            loss[0]);
  cr_assert_eq(dd_trainer_num_params(t[0]), dd_trainer_num_params(t[1]));
  for (int i = 0; i < dd_trainer_num_params(t[0]); i++) {
    const dd_tensor *g0 = dd_trainer_param_grad(t[0], i), *g1 = dd_trainer_param_grad(t[1], i);
    cr_assert(g0 && g1 && dd_tensor_numel(g0) == dd_tensor_numel(g1));
    double worst = 0, scale = 0;
    for (int64_t e = 0; e < dd_tensor_numel(g0); e++) {
      worst = fmax(worst, fabs((double)dd_f32(g0)[e] - dd_f32(g1)[e]));
      scale = fmax(scale, fabs((double)dd_f32(g0)[e]));
    }
    cr_expect(scale > 0 && worst <= 1e-5 * scale, "%s: %g apart (largest %g)",
              dd_trainer_param_name(t[0], i), worst, scale);
  }
  dd_trainer_free(t[0]);
  dd_trainer_free(t[1]);
  free(x);
}
