/* PyTorch references; see helper_torch.h. */
#include "helper_torch.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper_files.h"

static dd_tensor *load(const char *name) {
  char path[256];
  dd_tensor *t = NULL;
  dd_err err;
  cr_assert_eq(dd_tensor_load_pb(th_tmp(path, sizeof path, name), &t, NULL, &err), DD_OK, "%s",
               err.msg);
  return t;
}

void th_ref_script(const char *script, const char *needs) {
  char cmd[2048], log[256];
  th_tmp(log, sizeof log, "ref.log");
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/%s' '%s' >'%s' 2>&1",
           DREAM_SOURCE_DIR, script, th_tmpdir, log);
  int rc = system(cmd);
  if (rc == 0) return;
  char *out = th_slurp(log, NULL);
  size_t n = out ? strlen(out) : 0;
  cr_assert_fail("tests/ref/%s failed (status %d): /usr/bin/python3 with %s is required\n%s\n%s",
                 script, rc, needs, cmd, out ? out + (n > 2000 ? n - 2000 : 0) : "");
}

void th_torch_reference(const char *script, th_torch_ref *r) {
  th_ref_script(script, "torch and onnx (Debian python3-torch, python3-onnx)");
  r->x = load("input.pb");
  r->y = load("output.pb");
  r->grad = load("grad.pb");
}

void th_torch_ref_free(th_torch_ref *r) {
  dd_tensor_free(r->x);
  dd_tensor_free(r->y);
  dd_tensor_free(r->grad);
  r->x = r->y = r->grad = NULL;
}
