/* Runner for the ONNX project's operator conformance tests (Debian's libonnx-testdata):
 * <node dir>/test_<case>/model.onnx with test_data_set_K/input_N.pb -> output_N.pb.
 *
 * A case is in scope when every node of its model is an operator of src/ops/ops.def (decided
 * from the model's node op types, not from the directory name).  Running it loads the model
 * with dd_model_load, binds float and bool inputs as runtime inputs and int64 inputs (shapes,
 * axes, indices) as plan-time constants, plans the graph outputs, runs forward and compares
 * each output numpy-style: |ours - expected| <= atol + rtol * |expected| (bool and int64
 * exactly).  When an op refuses a runtime input that real models hold as a constant, the case
 * runs again with the inputs after the first bound as constants, then (when an op needs them
 * all at plan time, as Range does) with every input bound, and the reason says so.
 *
 * Outcomes: PASS; SKIP only when our loader or planner answers DD_EUNSUPPORTED (its message is
 * the reason) or when an expected output has an element type dream does not hold (uint8,
 * double, ...); FAIL for anything else, with what differs. */
#ifndef DREAM_TEST_HELPER_CONFORMANCE_H
#define DREAM_TEST_HELPER_CONFORMANCE_H

#include <stddef.h>

#define HC_NAME_MAX 128
#define HC_REASON_MAX 1024

/* The ONNX backend test defaults (onnx/backend/test/runner: rtol=1e-3, atol=1e-7). */
#define HC_RTOL 1e-3
#define HC_ATOL 1e-7

typedef enum hc_status { HC_PASS, HC_SKIP, HC_FAIL } hc_status;

typedef struct hc_case {
  char name[HC_NAME_MAX];
} hc_case;

/* $DREAM_ONNX_TESTDATA when set, else /usr/share/libonnx-testdata/data/node. */
const char *hc_node_dir(void);

/* The in-scope case directories under `dir`, sorted by name, in a malloc'ed array (free()).
 * Returns the count, or -1 when `dir` cannot be listed. */
int hc_list_cases(const char *dir, hc_case **cases);

/* 1 when every node of `case_dir`/model.onnx is in the default ONNX domain and listed in
 * ops.def (linked or not); 0 otherwise.  A model that does not decode is in scope, so that
 * it fails visibly rather than vanishing. */
int hc_case_in_scope(const char *case_dir);

/* Runs every test data set of `case_dir`; writes why into `reason` (never empty for SKIP
 * and FAIL; for PASS, the largest error relative to the tolerance). */
hc_status hc_run_case(const char *case_dir, char *reason, size_t size);

/* "pass", "skip", "fail". */
const char *hc_status_name(hc_status s);

/* When $DREAM_CONFORMANCE_REPORT names a file, append "case\tstatus\treason\n" to it (one
 * write, so parallel test processes do not interleave lines). */
void hc_report(const char *name, hc_status s, const char *reason);

#endif
