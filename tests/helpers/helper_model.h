/* ONNX models written by a test: a ModelProto (IR 8, opset 13) grown one input, output,
 * initializer and node at a time, then packed, written to a file or parsed by the loader.
 *
 *   th_model *b = th_model_new("tiny");
 *   th_model_input(b, "x", -1, NULL);
 *   th_model_output(b, "y");
 *   th_model_init_f32(b, "w", 2, (int64_t[]){4, 3}, w, 12);
 *   th_model_node(b, "Gemm", "fc", "x,w", "y");
 *   th_model_attr_int(b, "transB", 1);
 *   dd_model *m = th_model_load(b, "tiny.onnx");  (the test fails if it does not load)
 *   th_model_free(b);
 *
 * Everything is copied into the builder, which owns it; a proto it returns may be changed,
 * and whatever is attached to one (heap-allocated, protobuf-c's *__init) becomes the
 * builder's too and is freed with it. */
#ifndef DREAM_TEST_HELPER_MODEL_H
#define DREAM_TEST_HELPER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dream/model.h"
#include "onnx.pb-c.h"

typedef struct th_model th_model;

th_model *th_model_new(const char *graph_name);
void th_model_free(th_model *b);

/* A graph input: float32 of `ndim` dims (ndim < 0: no type declared). */
Onnx__ValueInfoProto *th_model_input(th_model *b, const char *name, int ndim,
                                     const int64_t *dims);
Onnx__ValueInfoProto *th_model_output(th_model *b, const char *name);

/* Initializers of `ndim` dims: n values in float_data, in int64_data, or `len` bytes of
 * raw_data of ONNX type `data_type` (raw may be NULL: no data at all).  The counts need not
 * agree with the dims: the loader's tests are about files where they do not. */
Onnx__TensorProto *th_model_init_f32(th_model *b, const char *name, int ndim,
                                     const int64_t *dims, const float *v, size_t n);
Onnx__TensorProto *th_model_init_i64(th_model *b, const char *name, int ndim,
                                     const int64_t *dims, const int64_t *v, size_t n);
Onnx__TensorProto *th_model_init_raw(th_model *b, const char *name, int data_type, int ndim,
                                     const int64_t *dims, const void *raw, size_t len);

/* A node; `inputs` and `outputs` are comma-separated value names ("x,w,b"; an empty name is
 * an omitted optional input; NULL or "" is none).  `name` may be NULL (the loader names it
 * OpType_index).  The th_model_attr_* calls add attributes to the last node added. */
Onnx__NodeProto *th_model_node(th_model *b, const char *op, const char *name,
                               const char *inputs, const char *outputs);
void th_model_attr_int(th_model *b, const char *name, int64_t v);
void th_model_attr_float(th_model *b, const char *name, float v);
void th_model_attr_ints(th_model *b, const char *name, int n, const int64_t *v);
void th_model_attr_floats(th_model *b, const char *name, int n, const float *v);
void th_model_attr_string(th_model *b, const char *name, const char *s);
/* A tensor attribute (ConstantOfShape's value): n values of `ndim` dims. */
void th_model_attr_tensor_f32(th_model *b, const char *name, int ndim, const int64_t *dims,
                              const float *v, size_t n);
void th_model_attr_tensor_i64(th_model *b, const char *name, int ndim, const int64_t *dims,
                              const int64_t *v, size_t n);

/* The serialized model (malloc'ed: free it) and its length. */
uint8_t *th_model_pack(const th_model *b, size_t *len);
/* Writes the serialized model to `path`; the test fails when it cannot. */
void th_model_write(const th_model *b, const char *path);
/* Parses the serialized model as dd_model_parse does a file named `name`: its status, *m and
 * err as it leaves them. */
int th_model_parse(const th_model *b, const char *name, dd_model **m, dd_err *err);
/* The parsed model; the test fails, with the loader's message, when it does not load. */
dd_model *th_model_load(const th_model *b, const char *name);

#endif
