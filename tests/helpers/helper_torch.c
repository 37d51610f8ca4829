/* PyTorch references; see helper_torch.h. */
#include "helper_torch.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "helper_files.h"

static dd_tensor *load(const char *name) {
  char path[256];
  dd_tensor *t = NULL;
  dd_err err;
  cr_assert_eq(dd_tensor_load_pb(th_tmp(path, sizeof path, name), &t, NULL, &err), DD_OK, "%s",
               err.msg);
  return t;
}

void th_torch_reference(const char *script, th_torch_ref *r) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/%s' '%s' >/dev/null 2>&1",
           DREAM_SOURCE_DIR, script, th_tmpdir);
  int rc = system(cmd);
  cr_assert_eq(rc, 0, "the PyTorch reference failed (status %d): /usr/bin/python3 with torch and "
               "onnx is required (Debian python3-torch, python3-onnx)\n%s", rc, cmd);
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
