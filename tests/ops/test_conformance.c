/* The ONNX project's own operator conformance tests (libonnx-testdata), one Criterion test
 * per case directory whose model uses only operators of ops.def.  Criterion names every
 * parameterized instance alike, so each message starts with the case name.
 *
 * Tolerance: numpy's |ours - expected| <= atol + rtol*|expected| with the ONNX backend test
 * defaults, rtol 1e-3 and atol 1e-7 (helper_conformance.h). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dream/tensor.h"
#include "helper_conformance.h"
#include "helper_files.h"

static void free_cases(struct criterion_test_params *p) { cr_free(p->params); }

ParameterizedTestParameters(conformance, node) {
  hc_case *list = NULL;
  int n = hc_list_cases(hc_node_dir(), &list);
  /* Without the test data, one instance with an empty name fails and says why. */
  size_t count = n > 0 ? (size_t)n : 1;
  hc_case *params = cr_malloc(count * sizeof *params);
  memset(params, 0, count * sizeof *params);
  for (int i = 0; i < n; i++) params[i] = list[i];
  free(list);
  return cr_make_param_array(hc_case, params, count, free_cases);
}

ParameterizedTest(hc_case *c, conformance, node) {
  cr_assert(c->name[0], "no conformance cases under %s: install Debian's libonnx-testdata "
            "(a required test dependency, see .ci/run)", hc_node_dir());
  char dir[1024], reason[HC_REASON_MAX];
  snprintf(dir, sizeof dir, "%s/%s", hc_node_dir(), c->name);
  hc_status st = hc_run_case(dir, reason, sizeof reason);
  hc_report(c->name, st, reason);
  if (st == HC_SKIP) cr_skip_test("%s: %s", c->name, reason);
  cr_assert(st == HC_PASS, "%s: %s", c->name, reason);
  cr_log_info("%s: pass, %s", c->name, reason);
}

/* The parameter list is empty when the data is missing or unreadable; this says so. */
Test(conformance, testdata_present) {
  hc_case *list = NULL;
  int n = hc_list_cases(hc_node_dir(), &list);
  free(list);
  cr_assert(n >= 0, "%s is missing: install Debian's libonnx-testdata (required by the tests)",
            hc_node_dir());
  /* libonnx-testdata 1.12 has 217 cases made only of our operators */
  cr_assert(n >= 200, "only %d in-scope cases under %s", n, hc_node_dir());
}

/* The runner itself: a copy of test_relu passes, and the same case with one expected value
 * nudged by 1e-2 relative fails, naming the element. */
static void copy_file(const char *from, const char *to) {
  size_t n;
  char *data = th_slurp(from, &n);
  cr_assert_not_null(data, "cannot read %s", from);
  th_write_bytes(to, data, n);
  free(data);
}

Test(conformance, runner_detects_a_wrong_value, .init = th_tmpdir_setup,
     .fini = th_tmpdir_teardown) {
  char src[1024], a[1200], b[1200], reason[HC_REASON_MAX];
  const char *dir = th_tmpdir;
  snprintf(src, sizeof src, "%s/test_relu", hc_node_dir());
  snprintf(a, sizeof a, "%s/model.onnx", src);
  snprintf(b, sizeof b, "%s/model.onnx", dir);
  copy_file(a, b);
  snprintf(b, sizeof b, "%s/test_data_set_0", dir);
  cr_assert_eq(mkdir(b, 0755), 0);
  snprintf(a, sizeof a, "%s/test_data_set_0/input_0.pb", src);
  snprintf(b, sizeof b, "%s/test_data_set_0/input_0.pb", dir);
  copy_file(a, b);
  snprintf(a, sizeof a, "%s/test_data_set_0/output_0.pb", src);
  snprintf(b, sizeof b, "%s/test_data_set_0/output_0.pb", dir);
  copy_file(a, b);
  cr_assert_eq(hc_run_case(dir, reason, sizeof reason), HC_PASS, "%s", reason);

  dd_tensor *y = NULL;
  char *name = NULL;
  dd_err err = {0};
  cr_assert_eq(dd_tensor_load_pb(a, &y, &name, &err), DD_OK, "%s", err.msg);
  dd_f32(y)[7] = dd_f32(y)[7] * 1.01f + 0.01f;
  cr_assert_eq(dd_tensor_save_pb(b, y, name, &err), DD_OK, "%s", err.msg);
  hc_status st = hc_run_case(dir, reason, sizeof reason);
  cr_log_info("%s", reason);
  cr_assert_eq(st, HC_FAIL, "a wrong value went unnoticed: %s", reason);
  cr_assert(strstr(reason, "1 of 60 elements") && strstr(reason, "worst at [0,1,2]"), "%s", reason);
  dd_tensor_free(y);
  free(name);
}
