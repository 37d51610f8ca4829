/* libFuzzer target: TensorProto bytes -> dd_tensor_parse_pb.  What it accepts is read in
 * full and cloned, so a tensor whose data is shorter than its dims shows up under ASan. */
#define _GNU_SOURCE /* fuzz.h: memfd_create */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "dream/tensor.h"

int dd_fuzz_tensor(const uint8_t *data, size_t size) {
  dd_err err;
  dd_tensor *t = NULL;
  char *name = NULL;
  if (dd_tensor_parse_pb(data, size, "fuzz.pb", &t, &name, &err)) return 0;
  volatile double sum = 0;
  int64_t n = dd_tensor_numel(t);
  for (int64_t i = 0; i < n; i++)
    sum += t->dtype == DD_F32    ? (double)dd_f32(t)[i]
           : t->dtype == DD_BOOL ? (double)dd_bool(t)[i]
                                 : (double)dd_i64(t)[i];
  (void)sum;
  dd_tensor *c = NULL;
  if (!dd_tensor_clone(t, &c, &err)) dd_tensor_free(c);
  dd_tensor_free(t);
  free(name);
  return 0;
}

DD_FUZZ_TARGET(dd_fuzz_tensor)
