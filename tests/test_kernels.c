/* The fp32 kernel paths (ops/cpu.h) on a real network: BVLC GoogLeNet to
 * inception_4c/output, forward and the input gradient, generic against AVX-512 and against
 * AVX2.  Within the
 * tolerances the other model tests use: the forward within 3e-5 of the output's peak (the
 * golden test's bound against Caffe), the gradient within 1e-3 relative L2 (the grad test's
 * bound against torch). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/model.h"
#include "helper_ops.h"
#include "ops/cpu.h"

/* y: inception_4c/output for x; g: the gradient of 1/2 sum y^2 with respect to x. */
static void run(dd_model *m, const dd_tensor *x, unsigned flags, dd_tensor **y, dd_tensor **g) {
  dd_err err = {0};
  dd_binding b = {.value = dd_model_input(m), .shape = x->shape};
  int target = dd_model_find(m, "inception_4c/output");
  cr_assert(b.value >= 0 && target >= 0);
  dd_plan *p = NULL;
  cr_assert_eq(dd_plan_new(m, &b, 1, &target, 1, DD_PLAN_GRAD | flags, 0, &p, &err), DD_OK,
               "%s", err.msg);
  memcpy(dd_plan_tensor(p, b.value)->data, x->data,
         (size_t)dd_tensor_numel(x) * sizeof(float));
  dd_plan_forward(p);
  const dd_tensor *out = dd_plan_tensor(p, target);
  *y = th_tensor(out->shape.ndim, out->shape.d);
  memcpy((*y)->data, out->data, (size_t)dd_tensor_numel(out) * sizeof(float));
  dd_plan_zero_grad(p);
  memcpy(dd_plan_grad(p, target)->data, out->data, (size_t)dd_tensor_numel(out) * sizeof(float));
  dd_plan_backward(p);
  const dd_tensor *gx = dd_plan_grad(p, b.value);
  *g = th_tensor(gx->shape.ndim, gx->shape.d);
  memcpy((*g)->data, gx->data, (size_t)dd_tensor_numel(gx) * sizeof(float));
  dd_plan_free(p);
}

/* GoogLeNet on the generic kernels and on path k, within the bounds above; skipped, with a
 * line on stderr, when the CPU lacks k. */
static void generic_and_agree(dd_kernels k2) {
  const char *name = dd_kernels_name(k2);
  if (!dd_kernels_has(k2)) {
    fprintf(stderr, "skipped: this CPU lacks %s (for the %s kernels)\n", dd_kernels_lack(k2),
            name);
    cr_skip_test("this CPU lacks %s (for the %s kernels)", dd_kernels_lack(k2), name);
  }
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int64_t dims[4] = {1, 3, 160, 192};
  dd_tensor *x = th_random(4, dims, 7, -110.f, 130.f); /* pixels less the mean */
  /* the default plan (Winograd) and fp32-exact (direct products, double first layer) */
  static const unsigned flags[] = {0, DD_PLAN_EXACT};
  for (int f = 0; f < 2; f++) {
    dd_tensor *y[2], *g[2];
    for (int k = 0; k < 2; k++) {
      cr_assert_eq(dd_kernels_force(k ? k2 : DD_KERNELS_GENERIC), 0);
      run(m, x, flags[f], &y[k], &g[k]);
    }
    double fe = th_max_abs_diff(y[1], y[0]) / th_max_abs(y[0]), ge = th_rel_l2(g[1], g[0]);
    cr_log_info("%s: forward max|d|/max|y| %.3g, input gradient relative L2 %.3g",
                f ? "exact" : "default", fe, ge);
    printf("kernels googlenet %s plan: %s vs generic: forward max|d|/max|y| %.3g, input "
           "gradient relative L2 %.3g\n",
           f ? "exact" : "default", name, fe, ge);
    cr_expect(fe <= 3e-5, "%s plan: forward differs by %g of the peak (> 3e-5)",
              f ? "exact" : "default", fe);
    cr_expect(ge <= 1e-3, "%s plan: input gradient differs by %g relative L2 (> 1e-3)",
              f ? "exact" : "default", ge);
    cr_expect(fe > 0 || ge > 0 || f, "the two paths gave the same bits: did both run?");
    for (int k = 0; k < 2; k++) {
      dd_tensor_free(y[k]);
      dd_tensor_free(g[k]);
    }
  }
  dd_tensor_free(x);
  dd_model_free(m);
}

Test(kernels, googlenet_generic_and_avx512_agree, .timeout = 300) {
  generic_and_agree(DD_KERNELS_AVX512);
}

Test(kernels, googlenet_generic_and_avx2_agree, .timeout = 300) {
  generic_and_agree(DD_KERNELS_AVX2);
}
