/* ONNX models written by a test; see helper_model.h.  Every part is heap-allocated, so that
 * protobuf-c's own free_unpacked releases the whole model. */
#include "helper_model.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct th_model {
  Onnx__ModelProto *model;
  size_t cap_node, cap_init, cap_in, cap_out; /* of the graph's arrays */
};

static void *alloc(size_t size) {
  void *p = calloc(1, size ? size : 1);
  cr_assert_not_null(p);
  return p;
}

static char *copy_str(const char *s) {
  char *c = strdup(s);
  cr_assert_not_null(c);
  return c;
}

static void *copy_mem(const void *v, size_t size) {
  void *c = alloc(size);
  if (size) memcpy(c, v, size);
  return c;
}

/* Makes room for one more pointer in *arr (holding n, room for *cap). */
static void grow(void *arr, size_t n, size_t *cap) {
  void ***a = arr;
  if (n < *cap) return;
  *cap = *cap ? 2 * *cap : 4;
  *a = realloc(*a, *cap * sizeof **a);
  cr_assert_not_null(*a);
}

th_model *th_model_new(const char *graph_name) {
  th_model *b = alloc(sizeof *b);
  Onnx__ModelProto *m = b->model = alloc(sizeof *m);
  onnx__model_proto__init(m);
  m->has_ir_version = 1;
  m->ir_version = 8;
  Onnx__OperatorSetIdProto *opset = alloc(sizeof *opset);
  onnx__operator_set_id_proto__init(opset);
  opset->has_version = 1;
  opset->version = 13;
  m->n_opset_import = 1;
  m->opset_import = alloc(sizeof *m->opset_import);
  m->opset_import[0] = opset;
  m->graph = alloc(sizeof *m->graph);
  onnx__graph_proto__init(m->graph);
  m->graph->name = copy_str(graph_name);
  return b;
}

void th_model_free(th_model *b) {
  if (!b) return;
  onnx__model_proto__free_unpacked(b->model, NULL);
  free(b);
}

static Onnx__ValueInfoProto *value_info(const char *name) {
  Onnx__ValueInfoProto *v = alloc(sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = copy_str(name);
  return v;
}

Onnx__ValueInfoProto *th_model_input(th_model *b, const char *name, int ndim,
                                     const int64_t *dims) {
  Onnx__GraphProto *g = b->model->graph;
  Onnx__ValueInfoProto *v = value_info(name);
  if (ndim >= 0) {
    Onnx__TensorShapeProto *shape = alloc(sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)ndim;
    shape->dim = alloc((size_t)ndim * sizeof *shape->dim);
    for (int i = 0; i < ndim; i++) {
      Onnx__TensorShapeProto__Dimension *d = shape->dim[i] = alloc(sizeof *d);
      onnx__tensor_shape_proto__dimension__init(d);
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
    }
    Onnx__TypeProto__Tensor *tt = alloc(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = shape;
    v->type = alloc(sizeof *v->type);
    onnx__type_proto__init(v->type);
    v->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type->tensor_type = tt;
  }
  grow(&g->input, g->n_input, &b->cap_in);
  g->input[g->n_input++] = v;
  return v;
}

Onnx__ValueInfoProto *th_model_output(th_model *b, const char *name) {
  Onnx__GraphProto *g = b->model->graph;
  grow(&g->output, g->n_output, &b->cap_out);
  return g->output[g->n_output++] = value_info(name);
}

/* A tensor of `data_type` and dims, named (or not: "", an attribute's value), no data yet. */
static Onnx__TensorProto *tensor(const char *name, int data_type, int ndim, const int64_t *dims) {
  Onnx__TensorProto *t = alloc(sizeof *t);
  onnx__tensor_proto__init(t);
  if (*name) t->name = copy_str(name);
  t->has_data_type = 1;
  t->data_type = data_type;
  t->n_dims = (size_t)ndim;
  t->dims = copy_mem(dims, (size_t)ndim * sizeof *dims);
  return t;
}

static Onnx__TensorProto *tensor_f32(const char *name, int ndim, const int64_t *dims,
                                     const float *v, size_t n) {
  Onnx__TensorProto *t = tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims);
  t->n_float_data = n;
  t->float_data = copy_mem(v, n * sizeof *v);
  return t;
}

static Onnx__TensorProto *tensor_i64(const char *name, int ndim, const int64_t *dims,
                                     const int64_t *v, size_t n) {
  Onnx__TensorProto *t = tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, ndim, dims);
  t->n_int64_data = n;
  t->int64_data = copy_mem(v, n * sizeof *v);
  return t;
}

static Onnx__TensorProto *initializer(th_model *b, Onnx__TensorProto *t) {
  Onnx__GraphProto *g = b->model->graph;
  grow(&g->initializer, g->n_initializer, &b->cap_init);
  g->initializer[g->n_initializer++] = t;
  return t;
}

Onnx__TensorProto *th_model_init_f32(th_model *b, const char *name, int ndim,
                                     const int64_t *dims, const float *v, size_t n) {
  return initializer(b, tensor_f32(name, ndim, dims, v, n));
}

Onnx__TensorProto *th_model_init_i64(th_model *b, const char *name, int ndim,
                                     const int64_t *dims, const int64_t *v, size_t n) {
  return initializer(b, tensor_i64(name, ndim, dims, v, n));
}

Onnx__TensorProto *th_model_init_raw(th_model *b, const char *name, int data_type, int ndim,
                                     const int64_t *dims, const void *raw, size_t len) {
  Onnx__TensorProto *t = tensor(name, data_type, ndim, dims);
  if (raw) {
    t->has_raw_data = 1;
    t->raw_data.len = len;
    t->raw_data.data = copy_mem(raw, len);
  }
  return initializer(b, t);
}

/* The comma-separated names of `list` into *n and a new array. */
static char **split_names(const char *list, size_t *n) {
  *n = 0;
  if (!list || !*list) return NULL;
  size_t count = 1;
  for (const char *p = list; *p; p++) count += *p == ',';
  char **names = alloc(count * sizeof *names);
  const char *start = list;
  for (size_t i = 0; i < count; i++) {
    const char *end = strchr(start, ',');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    names[i] = alloc(len + 1);
    memcpy(names[i], start, len);
    start += len + 1;
  }
  *n = count;
  return names;
}

Onnx__NodeProto *th_model_node(th_model *b, const char *op, const char *name,
                               const char *inputs, const char *outputs) {
  Onnx__GraphProto *g = b->model->graph;
  Onnx__NodeProto *node = alloc(sizeof *node);
  onnx__node_proto__init(node);
  node->op_type = copy_str(op);
  if (name) node->name = copy_str(name);
  node->input = split_names(inputs, &node->n_input);
  node->output = split_names(outputs, &node->n_output);
  grow(&g->node, g->n_node, &b->cap_node);
  g->node[g->n_node++] = node;
  return node;
}

static Onnx__AttributeProto *attr(th_model *b, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
  Onnx__GraphProto *g = b->model->graph;
  cr_assert_gt(g->n_node, 0, "attribute '%s' before any node", name);
  Onnx__NodeProto *node = g->node[g->n_node - 1];
  Onnx__AttributeProto *a = alloc(sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = copy_str(name);
  a->has_type = 1;
  a->type = type;
  node->attribute = realloc(node->attribute, (node->n_attribute + 1) * sizeof *node->attribute);
  cr_assert_not_null(node->attribute);
  node->attribute[node->n_attribute++] = a;
  return a;
}

void th_model_attr_int(th_model *b, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1;
  a->i = v;
}

void th_model_attr_float(th_model *b, const char *name, float v) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1;
  a->f = v;
}

void th_model_attr_ints(th_model *b, const char *name, int n, const int64_t *v) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = (size_t)n;
  a->ints = copy_mem(v, (size_t)n * sizeof *v);
}

void th_model_attr_floats(th_model *b, const char *name, int n, const float *v) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
  a->n_floats = (size_t)n;
  a->floats = copy_mem(v, (size_t)n * sizeof *v);
}

void th_model_attr_tensor_f32(th_model *b, const char *name, int ndim, const int64_t *dims,
                              const float *v, size_t n) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  a->t = tensor_f32("", ndim, dims, v, n);
}

void th_model_attr_tensor_i64(th_model *b, const char *name, int ndim, const int64_t *dims,
                              const int64_t *v, size_t n) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  a->t = tensor_i64("", ndim, dims, v, n);
}

void th_model_attr_string(th_model *b, const char *name, const char *s) {
  Onnx__AttributeProto *a = attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  a->has_s = 1;
  a->s.len = strlen(s);
  a->s.data = copy_mem(s, a->s.len);
}

uint8_t *th_model_pack(const th_model *b, size_t *len) {
  *len = onnx__model_proto__get_packed_size(b->model);
  uint8_t *buf = alloc(*len);
  cr_assert_eq(onnx__model_proto__pack(b->model, buf), *len);
  return buf;
}

void th_model_write(const th_model *b, const char *path) {
  size_t len;
  uint8_t *buf = th_model_pack(b, &len);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s", path);
  cr_assert_eq(fwrite(buf, 1, len, f), len, "%s", path);
  cr_assert_eq(fclose(f), 0, "%s", path);
  free(buf);
}

int th_model_parse(const th_model *b, const char *name, dd_model **m, dd_err *err) {
  size_t len;
  uint8_t *buf = th_model_pack(b, &len);
  int rc = dd_model_parse(buf, len, name, m, err);
  free(buf);
  return rc;
}

dd_model *th_model_load(const th_model *b, const char *name) {
  dd_model *m = NULL;
  dd_err err = {0};
  cr_assert_eq(th_model_parse(b, name, &m, &err), DD_OK, "%s", err.msg);
  return m;
}
