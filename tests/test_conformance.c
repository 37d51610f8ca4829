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

#include "helper_conformance.h"

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
