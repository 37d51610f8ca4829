#include "dream/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t dd_shape_numel(const dd_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) {
    int64_t d = s->d[i];
    if (d < 0) return -1;
    if (d != 0 && n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

size_t dd_dtype_size(dd_dtype t) { return t == DD_I64 ? 8 : t == DD_BOOL ? 1 : 4; }

const char *dd_dtype_name(dd_dtype t) {
  return t == DD_I64 ? "int64" : t == DD_BOOL ? "bool" : "float32";
}

dd_shape dd_shape_make(int ndim, const int64_t *dims) {
  dd_shape s = {0};
  s.ndim = ndim;
  for (int i = 0; i < ndim && i < DD_MAX_DIMS; i++) s.d[i] = dims[i];
  return s;
}

char *dd_shape_str(const dd_shape *s, char *buf, size_t size) {
  size_t used = 0;
  if (size == 0) return buf;
  buf[0] = 0;
  if (s->ndim == 0) snprintf(buf, size, "scalar");
  for (int i = 0; i < s->ndim && used < size; i++) {
    int n = snprintf(buf + used, size - used, i ? "x%lld" : "%lld", (long long)s->d[i]);
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

int dd_shape_eq(const dd_shape *a, const dd_shape *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

int dd_tensor_new(dd_dtype dtype, const dd_shape *shape, size_t max_memory, dd_tensor **out,
                  dd_err *err) {
  char sb[128];
  if (shape->ndim < 0 || shape->ndim > DD_MAX_DIMS)
    return dd_fail(err, DD_ELIMIT, "tensor has %d dims, at most %d are supported", shape->ndim,
                   DD_MAX_DIMS);
  int64_t n = dd_shape_numel(shape);
  size_t es = dd_dtype_size(dtype);
  if (n < 0 || (uint64_t)n > SIZE_MAX / es || (uint64_t)n > (UINT64_C(1) << 40))
    return dd_fail(err, DD_ELIMIT, "tensor of shape %s is too large",
                   dd_shape_str(shape, sb, sizeof sb));
  size_t bytes = (size_t)n * es;
  if (max_memory && bytes > max_memory)
    return dd_fail(err, DD_ELIMIT, "tensor of shape %s needs %.1f MiB, the limit is %.1f MiB",
                   dd_shape_str(shape, sb, sizeof sb), bytes / 1048576.0, max_memory / 1048576.0);
  dd_tensor *t = calloc(1, sizeof *t);
  void *data = calloc(bytes ? bytes : 1, 1);
  if (!t || !data) {
    free(t);
    free(data);
    return dd_fail(err, DD_ENOMEM, "out of memory allocating %zu bytes", bytes);
  }
  t->dtype = dtype;
  t->shape = *shape;
  t->data = data;
  t->owns = 1;
  *out = t;
  return DD_OK;
}

dd_tensor dd_tensor_wrap(dd_dtype dtype, const dd_shape *shape, void *data) {
  dd_tensor t = {0};
  t.dtype = dtype;
  t.shape = *shape;
  t.data = data;
  return t;
}

int dd_tensor_clone(const dd_tensor *src, dd_tensor **out, dd_err *err) {
  dd_tensor *t;
  int rc = dd_tensor_new(src->dtype, &src->shape, 0, &t, err);
  if (rc) return rc;
  memcpy(t->data, src->data, (size_t)dd_tensor_numel(src) * dd_dtype_size(src->dtype));
  *out = t;
  return DD_OK;
}

void dd_tensor_free(dd_tensor *t) {
  if (!t) return;
  if (t->owns) free(t->data);
  free(t);
}

int64_t dd_tensor_numel(const dd_tensor *t) { return dd_shape_numel(&t->shape); }
