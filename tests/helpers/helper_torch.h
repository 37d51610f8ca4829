/* PyTorch references run from a test: a script of tests/ref/ exports its network and what
 * torch autograd computes for it into the test's temporary directory (helper_files.h). */
#ifndef DREAM_TEST_HELPER_TORCH_H
#define DREAM_TEST_HELPER_TORCH_H

#include "dream/tensor.h"

typedef struct th_torch_ref {
  dd_tensor *x;    /* input.pb: the input */
  dd_tensor *y;    /* output.pb: the network's output, in float64 */
  dd_tensor *grad; /* grad.pb: the input gradient of 1/2 sum(y^2), in float64 */
} th_torch_ref;

/* Runs /usr/bin/python3 tests/ref/<script> th_tmpdir, which writes there its ONNX files and
 * input.pb, output.pb and grad.pb, and loads those three into *r.  The test fails, saying
 * what is required (python3-torch, python3-onnx), when the script does not run: the reference
 * is required, these tests do not skip. */
void th_torch_reference(const char *script, th_torch_ref *r);
void th_torch_ref_free(th_torch_ref *r);

#endif
