/* dream/tensor.h - dense tensors of float32, int64 or bool, row-major (NCHW for images).
 *
 * A tensor owns its data unless created with dd_tensor_wrap.  Shapes have at most
 * DD_MAX_DIMS dimensions; every element count is computed with overflow checks.
 */
#ifndef DREAM_TENSOR_H
#define DREAM_TENSOR_H

#include "dream/api.h"

#include <stdint.h>
#include <stddef.h>

#include "dream/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DD_MAX_DIMS 8

/* Values are ONNX's TensorProto.DataType numbers.  A bool element is one byte, 0 or 1. */
typedef enum dd_dtype { DD_F32 = 1, DD_I64 = 7, DD_BOOL = 9 } dd_dtype;

typedef struct dd_shape {
  int ndim;
  int64_t d[DD_MAX_DIMS];
} dd_shape;

typedef struct dd_tensor {
  dd_dtype dtype;
  dd_shape shape;
  void *data; /* float *, int64_t * or uint8_t * (bool), numel elements */
  int owns;   /* data is freed with the tensor */
} dd_tensor;

/* Number of elements, or -1 when a dim is negative or the product overflows int64. */
DD_API int64_t dd_shape_numel(const dd_shape *s);
/* Size in bytes of one element of `t`. */
DD_API size_t dd_dtype_size(dd_dtype t);
/* "float32" / "int64" / "bool". */
DD_API const char *dd_dtype_name(dd_dtype t);
/* Shape from a list of dims. */
DD_API dd_shape dd_shape_make(int ndim, const int64_t *dims);
/* Writes "1x3x224x224" into buf; returns buf. */
DD_API char *dd_shape_str(const dd_shape *s, char *buf, size_t size);
DD_API int dd_shape_eq(const dd_shape *a, const dd_shape *b);

/* New zero-filled tensor.  Fails with DD_ELIMIT when the size overflows or exceeds
 * `max_memory` (0: no limit), DD_ENOMEM when allocation fails. */
DD_API int dd_tensor_new(dd_dtype dtype, const dd_shape *shape, size_t max_memory, dd_tensor **out,
                  dd_err *err);
/* A tensor header over borrowed memory (not freed by dd_tensor_free). */
DD_API dd_tensor dd_tensor_wrap(dd_dtype dtype, const dd_shape *shape, void *data);
/* Deep copy. */
DD_API int dd_tensor_clone(const dd_tensor *src, dd_tensor **out, dd_err *err);
DD_API void dd_tensor_free(dd_tensor *t);
DD_API int64_t dd_tensor_numel(const dd_tensor *t);
static inline float *dd_f32(const dd_tensor *t) { return (float *)t->data; }
static inline int64_t *dd_i64(const dd_tensor *t) { return (int64_t *)t->data; }
static inline uint8_t *dd_bool(const dd_tensor *t) { return (uint8_t *)t->data; }

/* Read one ONNX TensorProto file (as in the ONNX test sets).  `name_out` (may be NULL)
 * receives the tensor's name field, malloc'ed (NULL if empty).  Errors name `path`. */
DD_API int dd_tensor_load_pb(const char *path, dd_tensor **out, char **name_out, dd_err *err);
/* Same, from memory; `what` names the source in messages. */
DD_API int dd_tensor_parse_pb(const void *buf, size_t len, const char *what, dd_tensor **out,
                       char **name_out, dd_err *err);
/* Write `t` as a TensorProto with the given name (may be NULL).  The file is written to a
 * temporary name beside `path` and renamed, so a failure never leaves half a file. */
DD_API int dd_tensor_save_pb(const char *path, const dd_tensor *t, const char *name, dd_err *err);

#ifdef __cplusplus
}
#endif

#endif
