/* Whole-network references nobody here computed: Caffe's own activations of BVLC GoogLeNet
 * and the ONNX model zoo's test sets of SqueezeNet 1.1 (both in ../shared/models). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"
#include "dream/model.h"
#include "helper_ops.h"

#define MAX_GOLDEN 32

static dd_model *load_model(const char *rel) {
  char path[1024];
  dd_model *m = NULL;
  dd_err err = {0};
  th_shared(path, sizeof path, rel);
  int rc = dd_model_load(path, &m, &err);
  cr_assert_eq(rc, DD_OK, "%s", err.msg);
  return m;
}

static dd_tensor *load_pb(const char *path, char **name) {
  dd_tensor *t = NULL;
  dd_err err = {0};
  int rc = dd_tensor_load_pb(path, &t, name, &err);
  cr_assert_eq(rc, DD_OK, "%s", err.msg);
  return t;
}

/* Plans `targets` from the model's data input bound to `x`, runs forward; returns the plan. */
static dd_plan *run(dd_model *m, const dd_tensor *x, const int *targets, int n) {
  dd_err err = {0};
  dd_binding b = {.value = dd_model_input(m), .shape = x->shape};
  cr_assert(b.value >= 0, "%s has no data input", dd_model_name(m));
  dd_plan *p = NULL;
  int rc = dd_plan_new(m, &b, 1, targets, n, 0, 0, &p, &err);
  cr_assert_eq(rc, DD_OK, "%s", err.msg);
  dd_tensor *in = dd_plan_tensor(p, b.value);
  cr_assert(in && dd_shape_eq(&in->shape, &x->shape));
  memcpy(in->data, x->data, (size_t)dd_tensor_numel(x) * sizeof(float));
  dd_plan_forward(p);
  return p;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Caffe computed these in float32 with its own summation order, and the errors of a deep
 * network grow with the magnitude of its values: we compare relative to each tensor's peak
 * (3e-5 of max|golden|, ~0.1 on conv1's values of 3400) rather than element by element. */
Test(golden, googlenet_reproduces_caffe_activations, .timeout = 120) {
  char dir[1024], path[1300];
  th_shared(dir, sizeof dir, "models/bvlc_googlenet.golden");
  DIR *d = opendir(dir);
  cr_assert(d, "%s: missing (the shared models, see ../shared/README.md)", dir);
  char *files[MAX_GOLDEN];
  int nf = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".pb") && strcmp(e->d_name, "data.pb") && nf < MAX_GOLDEN)
      files[nf++] = strdup(e->d_name);
  closedir(d);
  qsort(files, (size_t)nf, sizeof *files, by_name);
  cr_assert(nf >= 7, "%s: expected 7 golden tensors, found %d", dir, nf);

  dd_model *m = load_model("models/bvlc_googlenet.onnx");
  snprintf(path, sizeof path, "%s/data.pb", dir);
  dd_tensor *x = load_pb(path, NULL);
  dd_tensor *gold[MAX_GOLDEN];
  char *names[MAX_GOLDEN];
  int targets[MAX_GOLDEN];
  for (int i = 0; i < nf; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    gold[i] = load_pb(path, &names[i]);
    cr_assert(names[i], "%s: the tensor has no name", path);
    targets[i] = dd_model_find(m, names[i]);
    cr_assert(targets[i] >= 0, "%s: the model has no value '%s'", path, names[i]);
  }
  /* every golden tensor from one plan, so the shared trunk runs once */
  dd_plan *p = run(m, x, targets, nf);
  int bad = 0;
  for (int i = 0; i < nf; i++) {
    dd_tensor *ours = dd_plan_tensor(p, targets[i]);
    char s1[64], s2[64];
    cr_assert(ours, "%s: not computed", names[i]);
    cr_assert(dd_shape_eq(&ours->shape, &gold[i]->shape), "%s: shape %s, Caffe's %s", names[i],
              dd_shape_str(&ours->shape, s1, sizeof s1), dd_shape_str(&gold[i]->shape, s2, sizeof s2));
    double diff = th_max_abs_diff(ours, gold[i]), peak = th_max_abs(gold[i]);
    double ratio = diff / peak;
    cr_log_info("googlenet %-22s max|d| %.3g  max|golden| %.4g  ratio %.3g (limit 3e-5)",
                names[i], diff, peak, ratio);
    if (!(ratio <= 3e-5)) {
      cr_log_error("googlenet %s: max|ours - caffe| = %g is %.3g of max|caffe| = %g, above 3e-5",
                   names[i], diff, ratio, peak);
      bad++;
    }
  }
  cr_assert_eq(bad, 0, "%d of %d GoogLeNet activations differ from Caffe's (see the log)", bad, nf);
  dd_plan_free(p);
  for (int i = 0; i < nf; i++) {
    dd_tensor_free(gold[i]);
    free(names[i]);
    free(files[i]);
  }
  dd_tensor_free(x);
  dd_model_free(m);
}

/* The reference is the ONNX model zoo's own output_0.pb of each test set (its logits reach
 * ~270; ONNX Runtime agrees with them to 1.1e-4). */
Test(golden, squeezenet_reproduces_model_zoo_test_sets, .timeout = 60) {
  dd_model *m = load_model("models/squeezenet1.1.onnx");
  int out = dd_model_output(m, 0);
  for (int set = 0; set < 3; set++) {
    char dir[1024], path[1300];
    snprintf(path, sizeof path, "models/squeezenet1.1.test_data_set_%d", set);
    th_shared(dir, sizeof dir, path);
    snprintf(path, sizeof path, "%s/input_0.pb", dir);
    dd_tensor *x = load_pb(path, NULL);
    snprintf(path, sizeof path, "%s/output_0.pb", dir);
    dd_tensor *want = load_pb(path, NULL);
    dd_plan *p = run(m, x, &out, 1);
    dd_tensor *ours = dd_plan_tensor(p, out);
    cr_assert(ours && dd_shape_eq(&ours->shape, &want->shape), "set %d: output shape", set);
    double diff = th_max_abs_diff(ours, want);
    cr_log_info("squeezenet set %d: max|d| %.3g (limit 2e-4), max|logit| %.4g", set, diff,
                th_max_abs(want));
    cr_assert(diff <= 2e-4, "squeezenet test set %d: max|ours - model zoo| = %g > 2e-4", set, diff);
    dd_plan_free(p);
    dd_tensor_free(x);
    dd_tensor_free(want);
  }
  dd_model_free(m);
}
