/* Internal layout of a loaded model, shared by the loader, the planner and the ops. */
#ifndef DREAM_MODEL_INTERNAL_H
#define DREAM_MODEL_INTERNAL_H

#include "dream/model.h"

struct dd_op;

/* AttributeProto.AttributeType numbers. */
enum { DD_ATTR_FLOAT = 1, DD_ATTR_INT = 2, DD_ATTR_STRING = 3, DD_ATTR_TENSOR = 4,
       DD_ATTR_FLOATS = 6, DD_ATTR_INTS = 7, DD_ATTR_STRINGS = 8 };

typedef struct dd_attr {
  char *name;
  int type;
  float f;
  int64_t i;
  char *s;
  dd_tensor *t;
  int n; /* length of floats or ints */
  float *floats;
  int64_t *ints;
} dd_attr;

typedef struct dd_value {
  char *name;
  dd_tensor *init; /* initializer or Constant's value, owned by the model; NULL otherwise */
  int producer;    /* node index, -1 for graph inputs and initializers */
  int is_input;    /* listed in graph.input and not an initializer */
  dd_dtype dtype;  /* declared element type of a graph input */
  dd_shape shape;  /* declared shape of a graph input, -1 for symbolic dims */
} dd_value;

typedef struct dd_node {
  const struct dd_op *op;
  char *name;    /* never NULL: the node's name or, when empty, "<op_type>_<index>" */
  char *op_type;
  int n_in, n_out;
  int *in;  /* value indices, -1 for an omitted optional input */
  int *out;
  int n_attr;
  dd_attr *attrs;
  void *params; /* parsed attributes, op-private, freed with free() */
  int64_t opset; /* the model's default-domain opset; 0 when unknown (tests) */
} dd_node;

struct dd_model {
  char *name;
  int64_t opset;
  int n_values, cap_values;
  dd_value *values;
  int n_nodes;
  dd_node *nodes;
  int n_inputs, n_outputs;
  int *inputs, *outputs;
  int64_t n_params;
  /* open-addressing hash from value name to index */
  int *hash;
  size_t hash_cap;
  /* "convN" aliases: alias_value[i] is the value of conv(i+1) */
  int n_alias;
  int *alias_value;
  char **alias_name;
};

/* Attribute access for ops' init functions.  Each returns DD_OK and leaves *out at `def`
 * when the attribute is absent, and fails (naming the node) on a wrong type. */
const dd_attr *dd_node_attr(const dd_node *n, const char *name);
int dd_attr_int(const dd_node *n, const char *name, int64_t def, int64_t *out, dd_err *err);
int dd_attr_float(const dd_node *n, const char *name, float def, float *out, dd_err *err);
int dd_attr_string(const dd_node *n, const char *name, const char *def, const char **out,
                   dd_err *err);
/* Copies up to `max` ints; *count = -1 when absent.  More than `max` is an error. */
int dd_attr_ints(const dd_node *n, const char *name, int max, int64_t *out, int *count,
                 dd_err *err);
/* Fails with DD_EUNSUPPORTED naming the first attribute not in the NULL-terminated `known`. */
int dd_node_check_attrs(const dd_node *n, const char *const *known, dd_err *err);

/* The params of ops whose one attribute is the integer `axis` (Concat, Flatten, Gather). */
typedef struct dd_axis_params {
  int64_t axis;
} dd_axis_params;
/* Init for those ops: refuses other attributes, reads `axis` (def when absent) into a new
 * dd_axis_params at node->params. */
int dd_node_axis_init(dd_node *n, int64_t def, dd_err *err);

/* Loader internals (model.c). */
int dd_model_hash_insert(dd_model *m, int value, dd_err *err);
int dd_model_build_aliases(dd_model *m, dd_err *err);

struct Onnx__TensorProto;
/* TensorProto -> float32 or int64 tensor, every length checked against the dims (onnx.c). */
int dd_tensor_from_proto(const struct Onnx__TensorProto *tp, const char *what, dd_tensor **out,
                         dd_err *err);

#endif
