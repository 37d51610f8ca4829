/* dream/model.h - a neural network loaded from an ONNX file.
 *
 * dd_model_load reads an ONNX ModelProto (protobuf-c, the schema of Debian's libonnx-dev),
 * checks every tensor against its dims, resolves every operator against the op table and
 * validates its attributes, and sorts the nodes topologically.  The model is immutable
 * afterwards; run it with a dd_plan (dream/graph.h).
 */
#ifndef DREAM_MODEL_H
#define DREAM_MODEL_H

#include "dream/api.h"

#include "dream/error.h"
#include "dream/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dd_model dd_model;

/* Largest ONNX file read (protobuf's own limit is 2 GiB). */
#define DD_MODEL_MAX_FILE ((size_t)2 << 30)

/* Load `path`.  On failure *out is untouched and err says which file, node or tensor is
 * wrong and why. */
DD_API int dd_model_load(const char *path, dd_model **out, dd_err *err);
/* Same from a buffer; `what` names it in messages. */
DD_API int dd_model_parse(const void *buf, size_t len, const char *what, dd_model **out, dd_err *err);
DD_API void dd_model_free(dd_model *m);

/* The path or name the model was loaded from. */
DD_API const char *dd_model_name(const dd_model *m);
DD_API int64_t dd_model_opset(const dd_model *m);
/* Total number of float parameters (initializer elements). */
DD_API int64_t dd_model_num_params(const dd_model *m);

/* Values (every named tensor of the graph: inputs, initializers, node outputs). */
DD_API int dd_model_num_values(const dd_model *m);
DD_API const char *dd_model_value_name(const dd_model *m, int value);
/* Index of the value called `name`, or -1. */
DD_API int dd_model_find(const dd_model *m, const char *name);
/* 1 when `value` is an initializer or folded constant of the file. */
DD_API int dd_model_value_is_const(const dd_model *m, int value);

/* The graph's data input: the first graph input that is not an initializer.  Its declared
 * shape has -1 for symbolic or unknown dims. */
DD_API int dd_model_input(const dd_model *m);
DD_API dd_shape dd_model_input_shape(const dd_model *m);
/* The data input, when it can take an image: rank 4 (or undeclared), batch 1, 3 channels.
 * DD_EUNSUPPORTED "model: input 'x' is not an image (1x3xHxW): it is 3x4x5" otherwise;
 * DD_EARG when the model has no input.  `value` may be NULL. */
DD_API int dd_model_image_input(const dd_model *m, int *value, dd_err *err);
DD_API int dd_model_num_outputs(const dd_model *m);
DD_API int dd_model_output(const dd_model *m, int i);

/* Nodes, in topological order. */
DD_API int dd_model_num_nodes(const dd_model *m);
DD_API const char *dd_model_node_name(const dd_model *m, int node);
DD_API const char *dd_model_node_op(const dd_model *m, int node);
DD_API int dd_model_node_num_outputs(const dd_model *m, int node);
DD_API int dd_model_node_output(const dd_model *m, int node, int i);
/* Node that produces `value`, or -1 for inputs and initializers. */
DD_API int dd_model_producer(const dd_model *m, int value);
/* Inputs of a node: value indices, -1 for an omitted optional input. */
DD_API int dd_model_node_num_inputs(const dd_model *m, int node);
DD_API int dd_model_node_input(const dd_model *m, int node, int i);
/* The constant tensor of `value` (an initializer or a folded Constant), owned by the model;
 * NULL for a value computed at run time. */
DD_API const dd_tensor *dd_model_value_tensor(const dd_model *m, int value);

/* ---- node attributes ------------------------------------------------------------------
 * By name, as the file gives them (the ONNX defaults are not filled in).  Each returns DD_OK
 * and gives `def` (or NULL and a count of -1) when the node has no attribute of that name;
 * DD_EFORMAT, naming the node, when it has one of another type; DD_EARG for a node out of
 * range.  The outputs are untouched on failure.  Arrays, strings and tensors are borrowed
 * from the model. */
DD_API int dd_model_node_attr_int(const dd_model *m, int node, const char *name, int64_t def,
                                  int64_t *out, dd_err *err);
DD_API int dd_model_node_attr_float(const dd_model *m, int node, const char *name, float def,
                                    float *out, dd_err *err);
DD_API int dd_model_node_attr_string(const dd_model *m, int node, const char *name,
                                     const char *def, const char **out, dd_err *err);
DD_API int dd_model_node_attr_ints(const dd_model *m, int node, const char *name,
                                   const int64_t **vals, int *count, dd_err *err);
DD_API int dd_model_node_attr_floats(const dd_model *m, int node, const char *name,
                                     const float **vals, int *count, dd_err *err);
DD_API int dd_model_node_attr_tensor(const dd_model *m, int node, const char *name,
                                     const dd_tensor **out, dd_err *err);

/* Resolve a layer name for the CLI: a value name, or the alias "convN" (N from 1): the
 * N-th Conv in graph order, taken after the activation that directly follows it when
 * there is one.  A value's own name wins over an alias spelled the same: SqueezeNet's
 * "conv10" is its value conv10 (the 26th Conv), never the 10th Conv (fire4/expand3x3).
 * Returns the value index, or DD_ENOTFOUND with the closest names in err. */
DD_API int dd_model_resolve(const dd_model *m, const char *name, int *value, dd_err *err);
/* Alias of a value ("conv3"), or NULL, shadowed or not. Valid while the model lives. */
DD_API const char *dd_model_alias(const dd_model *m, int value);
/* The same, and *shadowed (may be NULL) is 1 when another value has the alias's name, so
 * that the alias cannot be used: dd_model_resolve gives that value instead. */
DD_API const char *dd_model_conv_alias(const dd_model *m, int value, int *shadowed);
/* 1 when `name` is a convN alias shadowed by a value of the same name (see
 * dd_model_conv_alias), with the value the alias stands for in *alias_value (may be NULL);
 * 0 otherwise (not an alias, or the alias names the value called so, like conv1). */
DD_API int dd_model_alias_shadowed(const dd_model *m, const char *name, int *alias_value);
/* Write up to `n` value names closest to `name` (edit distance) into buf, comma separated. */
DD_API void dd_model_suggest(const dd_model *m, const char *name, int n, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
