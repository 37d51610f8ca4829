/* The one inference path (dream/infer.h): sessions, their checks, the probability rule. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/infer.h"
#include "helper_ops.h"

/* A session gives what a plan of the same targets gives, run after run. */
Test(infer, matches_a_plan_and_repeats, .timeout = 120) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  char path[512];
  dd_tensor *x;
  dd_err err;
  cr_assert_eq(dd_tensor_load_pb(th_shared(path, sizeof path,
                                           "models/squeezenet1.1.test_data_set_0/input_0.pb"),
                                 &x, NULL, &err), 0, "%s", err.msg);
  int out = dd_model_output(m, 0), in = dd_model_input(m);
  dd_infer *s;
  cr_assert_eq(dd_infer_new(m, &x->shape, &out, 1, 0, &s, &err), 0, "%s", err.msg);
  dd_binding b = {in, x->shape, NULL};
  dd_plan *p;
  cr_assert_eq(dd_plan_new(m, &b, 1, &out, 1, DD_PLAN_EXACT, 0, &p, &err), 0, "%s", err.msg);
  memcpy(dd_plan_tensor(p, in)->data, x->data, (size_t)dd_tensor_numel(x) * sizeof(float));
  dd_plan_forward(p);
  const dd_tensor *ref = dd_plan_tensor(p, out);
  for (int round = 0; round < 2; round++) {
    cr_assert_eq(dd_infer_run(s, dd_f32(x), &err), 0);
    const dd_tensor *y = dd_infer_output(s, 0);
    cr_assert_eq(dd_tensor_numel(y), 1000);
    cr_assert_eq(memcmp(y->data, ref->data, 1000 * sizeof(float)), 0, "round %d differs", round);
  }
  cr_expect_null(dd_infer_output(s, 1));
  dd_plan_free(p);
  dd_infer_free(s);
  dd_tensor_free(x);
  dd_model_free(m);
}

Test(infer, refuses_what_it_cannot_run, .timeout = 120) {
  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  dd_err err;
  dd_infer *s = NULL;
  int out = dd_model_output(m, 0);
  int64_t bad[4] = {1, 4, 224, 224};
  dd_shape sh = dd_shape_make(4, bad);
  cr_expect_eq(dd_infer_new(m, &sh, &out, 1, 0, &s, &err), DD_EARG);
  cr_expect(strstr(err.msg, "does not fit"), "%s", err.msg);
  int64_t ok[4] = {1, 3, 224, 224};
  sh = dd_shape_make(4, ok);
  cr_expect_eq(dd_infer_new(m, &sh, &out, 0, 0, &s, &err), DD_EARG);
  cr_expect_null(s);
  /* An image of another size than the session's. */
  cr_assert_eq(dd_infer_new(m, &sh, &out, 1, 0, &s, &err), 0, "%s", err.msg);
  dd_image *im;
  cr_assert_eq(dd_image_new(100, 100, &im, &err), 0);
  dd_preproc pp = {1, 255.f, {104, 117, 123}, {1, 1, 1}};
  cr_expect_eq(dd_infer_image(s, im, &pp, &err), DD_EARG);
  dd_image_free(im);
  dd_infer_free(s);
  dd_model_free(m);
}

/* Probabilities are kept; anything else goes through a softmax. */
Test(infer, probabilities_rule) {
  const float probs[4] = {0.1f, 0.2f, 0.3f, 0.4f}, logits[3] = {1.f, 2.f, 3.f};
  double p[4];
  dd_probabilities(probs, 4, p);
  for (int i = 0; i < 4; i++) cr_expect_eq(p[i], (double)probs[i]);
  dd_probabilities(logits, 3, p);
  double z = exp(-2.0) + exp(-1.0) + 1.0;
  cr_expect(fabs(p[2] - 1.0 / z) < 1e-12 && fabs(p[0] - exp(-2.0) / z) < 1e-12, "%g %g", p[0],
            p[2]);
}
