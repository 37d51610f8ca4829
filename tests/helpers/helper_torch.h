/* Reference scripts run from a test: a script of tests/ref/ writes its models (and, for the
 * PyTorch references, what torch autograd computes for them) into the test's temporary
 * directory (helper_files.h). */
#ifndef DREAM_TEST_HELPER_TORCH_H
#define DREAM_TEST_HELPER_TORCH_H

#include "dream/tensor.h"

/* Runs /usr/bin/python3 tests/ref/<script> th_tmpdir, its output to th_tmpdir/ref.log; the
 * test fails when it does not succeed, saying that python3 with `needs` (the modules the script
 * imports) is required, with the log's end: the reference is required, these tests do not
 * skip. */
void th_ref_script(const char *script, const char *needs);

typedef struct th_torch_ref {
  dd_tensor *x;    /* input.pb: the input */
  dd_tensor *y;    /* output.pb: the network's output, in float64 */
  dd_tensor *grad; /* grad.pb: the input gradient of 1/2 sum(y^2), in float64 */
} th_torch_ref;

/* th_ref_script(script) of a PyTorch reference, which writes its ONNX files and input.pb,
 * output.pb and grad.pb; those three are loaded into *r. */
void th_torch_reference(const char *script, th_torch_ref *r);
void th_torch_ref_free(th_torch_ref *r);

#endif
