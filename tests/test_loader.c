/* Bad model and tensor files: each gives a clear error naming the file and the problem, never
 * a crash.  The bad models are written by hand with protobuf-c, so the tests need no Python
 * at run time. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dream/model.h"
#include "dream/tensor.h"
#include "helper_ops.h"
#include "onnx.pb-c.h"

/* Writes `len` bytes to a new file under /tmp; its name goes to `path`. */
static void write_temp(const void *buf, size_t len, char *path, size_t size) {
  snprintf(path, size, "/tmp/dream_loader_XXXXXX");
  int fd = mkstemp(path);
  cr_assert(fd >= 0, "mkstemp failed");
  cr_assert_eq(write(fd, buf, len), (ssize_t)len);
  close(fd);
}

static void *read_shared(const char *rel, size_t *len) {
  char path[1024];
  th_shared(path, sizeof path, rel);
  FILE *f = fopen(path, "rb");
  cr_assert(f, "%s: missing (the shared models)", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc((size_t)n);
  cr_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* Loads `path` expecting failure with `code`; every word of the NULL-terminated `words` must
 * be in the message, and so must the file name. */
static void expect_load_error(const char *path, int code, const char *const *words) {
  dd_model *m = NULL;
  dd_err err = {0};
  int rc = dd_model_load(path, &m, &err);
  cr_assert_eq(rc, code, "%s: got %s, expected %s (%s)", path, dd_errname(rc), dd_errname(code),
               err.msg);
  cr_assert_null(m, "a failed load must leave the output untouched");
  cr_log_info("%s", err.msg);
  cr_assert(strstr(err.msg, path), "the message does not name the file: %s", err.msg);
  for (const char *const *w = words; w && *w; w++)
    cr_assert(strstr(err.msg, *w), "the message does not say '%s': %s", *w, err.msg);
}

Test(loader, missing_file) {
  const char *path = "/tmp/dream_loader_no_such_file.onnx";
  unlink(path);
  expect_load_error(path, DD_EIO, (const char *[]){"cannot open", "No such file", NULL});
}

Test(loader, directory_instead_of_file) {
  expect_load_error("/tmp", DD_EIO, (const char *[]){"directory", NULL});
}

Test(loader, empty_file) {
  char path[64];
  write_temp("", 0, path, sizeof path);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"empty", NULL});
  unlink(path);
}

Test(loader, random_bytes) {
  uint8_t buf[4096];
  uint64_t s = 12345;
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)dd_rng_next(&s);
  char path[64];
  write_temp(buf, sizeof buf, path, sizeof path);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"not a valid ONNX model", NULL});
  unlink(path);
}

Test(loader, truncated_squeezenet) {
  size_t len;
  uint8_t *buf = read_shared("models/squeezenet1.1.onnx", &len);
  /* inside the header, inside the weights, and one byte short of the end */
  size_t cuts[] = {7, 1000, len / 3, len / 2, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    char path[64];
    write_temp(buf, cuts[i], path, sizeof path);
    expect_load_error(path, DD_EFORMAT, (const char *[]){"truncated", NULL});
    unlink(path);
  }
  free(buf);
}

/* ---- hand-built models ---------------------------------------------------------------- */

#define TINY_MAX 4

/* A ModelProto of up to TINY_MAX nodes, initializers, inputs and outputs; everything lives in
 * the struct, so packing needs no allocation. */
typedef struct tiny {
  Onnx__ModelProto model;
  Onnx__GraphProto graph;
  Onnx__OperatorSetIdProto opset, *opsets[1];
  Onnx__NodeProto node[TINY_MAX], *nodes[TINY_MAX];
  Onnx__TensorProto init[TINY_MAX], *inits[TINY_MAX];
  Onnx__ValueInfoProto in[TINY_MAX], *ins[TINY_MAX], out[TINY_MAX], *outs[TINY_MAX];
} tiny;

static void tiny_init(tiny *t) {
  memset(t, 0, sizeof *t);
  onnx__model_proto__init(&t->model);
  onnx__graph_proto__init(&t->graph);
  onnx__operator_set_id_proto__init(&t->opset);
  t->opset.has_version = 1;
  t->opset.version = 13;
  t->opsets[0] = &t->opset;
  t->model.has_ir_version = 1;
  t->model.ir_version = 8;
  t->model.n_opset_import = 1;
  t->model.opset_import = t->opsets;
  t->model.graph = &t->graph;
  t->graph.name = "tiny";
  t->graph.node = t->nodes;
  t->graph.initializer = t->inits;
  t->graph.input = t->ins;
  t->graph.output = t->outs;
}

static void tiny_node(tiny *t, const char *name, const char *op, int n_in, char **in, int n_out,
                      char **out) {
  size_t i = t->graph.n_node++;
  onnx__node_proto__init(&t->node[i]);
  t->node[i].name = (char *)name;
  t->node[i].op_type = (char *)op;
  t->node[i].n_input = (size_t)n_in;
  t->node[i].input = in;
  t->node[i].n_output = (size_t)n_out;
  t->node[i].output = out;
  t->nodes[i] = &t->node[i];
}

static void tiny_io(tiny *t, int is_output, const char *name) {
  Onnx__ValueInfoProto *v = is_output ? &t->out[t->graph.n_output] : &t->in[t->graph.n_input];
  onnx__value_info_proto__init(v);
  v->name = (char *)name;
  if (is_output) t->outs[t->graph.n_output++] = v;
  else t->ins[t->graph.n_input++] = v;
}

/* Packs the model into a temporary file; returns its bytes' length. */
static void tiny_write(tiny *t, char *path, size_t size) {
  size_t len = onnx__model_proto__get_packed_size(&t->model);
  uint8_t *buf = malloc(len);
  cr_assert(buf);
  onnx__model_proto__pack(&t->model, buf);
  write_temp(buf, len, path, size);
  free(buf);
}

Test(loader, valid_tiny_model_loads) {
  /* the builder itself is sound: a Relu graph loads */
  tiny t;
  tiny_init(&t);
  char *x[] = {"x"}, *y[] = {"y"};
  tiny_io(&t, 0, "x");
  tiny_io(&t, 1, "y");
  tiny_node(&t, "relu1", "Relu", 1, x, 1, y);
  char path[64];
  tiny_write(&t, path, sizeof path);
  dd_model *m = NULL;
  dd_err err = {0};
  cr_assert_eq(dd_model_load(path, &m, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(dd_model_num_nodes(m), 1);
  dd_model_free(m);
  unlink(path);
}

Test(loader, initializer_length_disagrees_with_dims) {
  tiny t;
  tiny_init(&t);
  float w[10] = {0};
  int64_t dims[] = {8, 3, 3, 3};
  Onnx__TensorProto *tp = &t.init[0];
  onnx__tensor_proto__init(tp);
  tp->name = "conv1_w";
  tp->n_dims = 4;
  tp->dims = dims;
  tp->has_data_type = 1;
  tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tp->has_raw_data = 1;
  tp->raw_data.len = sizeof w;
  tp->raw_data.data = (uint8_t *)w;
  t.inits[0] = tp;
  t.graph.n_initializer = 1;
  char *in[] = {"x", "conv1_w"}, *out[] = {"y"};
  tiny_io(&t, 0, "x");
  tiny_io(&t, 1, "y");
  tiny_node(&t, "conv1", "Conv", 2, in, 1, out);
  char path[64];
  tiny_write(&t, path, sizeof path);
  /* 8x3x3x3 = 216 floats declared, 10 stored */
  expect_load_error(path, DD_EFORMAT,
                    (const char *[]){"conv1_w", "8x3x3x3", "216", "raw_data", "10", NULL});
  unlink(path);
}

Test(loader, unsupported_operator_names_node_and_type) {
  tiny t;
  tiny_init(&t);
  char *x[] = {"x"}, *h[] = {"h"}, *y[] = {"y"};
  tiny_io(&t, 0, "x");
  tiny_io(&t, 1, "y");
  tiny_node(&t, "relu1", "Relu", 1, x, 1, h);
  tiny_node(&t, "warp7", "GridSample", 1, h, 1, y);
  char path[64];
  tiny_write(&t, path, sizeof path);
  expect_load_error(path, DD_EUNSUPPORTED,
                    (const char *[]){"warp7", "GridSample", "not supported", NULL});
  unlink(path);
}

Test(loader, graph_cycle) {
  /* a -> relu_b -> b -> relu_a -> a: every value has a producer, none can run first */
  tiny t;
  tiny_init(&t);
  char *a[] = {"a"}, *b[] = {"b"}, *x[] = {"x"}, *y[] = {"y"};
  tiny_io(&t, 0, "x");
  tiny_io(&t, 1, "y");
  tiny_node(&t, "relu_a", "Relu", 1, b, 1, a);
  tiny_node(&t, "relu_b", "Relu", 1, a, 1, b);
  tiny_node(&t, "relu_y", "Relu", 1, x, 1, y);
  char path[64];
  tiny_write(&t, path, sizeof path);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"cycle", "relu_", NULL});
  unlink(path);
}

Test(loader, node_reads_an_undefined_value) {
  tiny t;
  tiny_init(&t);
  char *ghost[] = {"ghost"}, *y[] = {"y"};
  tiny_io(&t, 0, "x");
  tiny_io(&t, 1, "y");
  tiny_node(&t, "relu1", "Relu", 1, ghost, 1, y);
  char path[64];
  tiny_write(&t, path, sizeof path);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"relu1", "ghost", NULL});
  unlink(path);
}

Test(loader, sequence_input_is_unsupported) {
  /* a sequence of float tensors must not be taken for a float tensor of unknown rank */
  Onnx__TypeProto__Tensor elem;
  onnx__type_proto__tensor__init(&elem);
  elem.has_elem_type = 1;
  elem.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  Onnx__TypeProto inner, type;
  onnx__type_proto__init(&inner);
  inner.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  inner.tensor_type = &elem;
  Onnx__TypeProto__Sequence seq;
  onnx__type_proto__sequence__init(&seq);
  seq.elem_type = &inner;
  onnx__type_proto__init(&type);
  type.value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE;
  type.sequence_type = &seq;
  tiny t;
  tiny_init(&t);
  char *x[] = {"x"}, *y[] = {"y"};
  tiny_io(&t, 0, "x");
  t.in[0].type = &type;
  tiny_io(&t, 1, "y");
  tiny_node(&t, "id1", "Identity", 1, x, 1, y);
  char path[64];
  tiny_write(&t, path, sizeof path);
  expect_load_error(path, DD_EUNSUPPORTED, (const char *[]){"'x'", "sequence", NULL});
  unlink(path);
}

/* ---- TensorProto files ---------------------------------------------------------------- */

static void expect_pb_error(const char *path, int code, const char *const *words) {
  dd_tensor *t = NULL;
  dd_err err = {0};
  int rc = dd_tensor_load_pb(path, &t, NULL, &err);
  cr_assert_eq(rc, code, "%s: got %s, expected %s (%s)", path, dd_errname(rc), dd_errname(code),
               err.msg);
  cr_assert_null(t);
  cr_log_info("%s", err.msg);
  cr_assert(strstr(err.msg, path), "the message does not name the file: %s", err.msg);
  for (const char *const *w = words; w && *w; w++)
    cr_assert(strstr(err.msg, *w), "the message does not say '%s': %s", *w, err.msg);
}

Test(loader, tensor_pb_with_wrong_length) {
  float v[4] = {1, 2, 3, 4};
  int64_t dims[] = {2, 3};
  Onnx__TensorProto tp;
  onnx__tensor_proto__init(&tp);
  tp.name = "short";
  tp.n_dims = 2;
  tp.dims = dims;
  tp.has_data_type = 1;
  tp.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tp.has_raw_data = 1;
  tp.raw_data.len = sizeof v;
  tp.raw_data.data = (uint8_t *)v;
  uint8_t buf[256];
  size_t len = onnx__tensor_proto__pack(&tp, buf);
  char path[64];
  write_temp(buf, len, path, sizeof path);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"2x3", "6", "raw_data", "4", NULL});
  unlink(path);
  /* a byte count that is not a whole number of floats */
  tp.raw_data.len = 10;
  len = onnx__tensor_proto__pack(&tp, buf);
  write_temp(buf, len, path, sizeof path);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"raw_data", "10", NULL});
  unlink(path);
}

Test(loader, tensor_pb_truncated_and_empty) {
  size_t len;
  uint8_t *buf = read_shared("models/squeezenet1.1.test_data_set_0/output_0.pb", &len);
  char path[64];
  write_temp(buf, len / 2, path, sizeof path);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"TensorProto", NULL});
  unlink(path);
  write_temp(buf, 0, path, sizeof path);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"empty", NULL});
  unlink(path);
  free(buf);
}

Test(loader, tensor_pb_missing_file) {
  const char *path = "/tmp/dream_loader_no_such_tensor.pb";
  unlink(path);
  expect_pb_error(path, DD_EIO, (const char *[]){"cannot open", NULL});
}

/* SqueezeNet has a value named conv10, its last Conv's Relu, while the alias conv10 stands for
 * its 10th Conv: the real name wins, and the alias is reported shadowed. */
Test(loader, conv_alias_shadowed_by_a_real_name) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  dd_err err;
  int v = -1, real = dd_model_find(m, "conv10"), tenth = dd_model_find(m, "fire4/expand3x3");
  cr_assert(real >= 0 && tenth >= 0);
  cr_assert_eq(dd_model_resolve(m, "conv10", &v, &err), 0, "%s", err.msg);
  cr_assert_eq(v, real, "conv10 resolved to '%s'", dd_model_value_name(m, v));
  int alias_value = -1, shadowed = -1;
  cr_assert_eq(dd_model_alias_shadowed(m, "conv10", &alias_value), 1);
  cr_assert_eq(alias_value, tenth, "the alias stands for '%s'",
               dd_model_value_name(m, alias_value));
  const char *a = dd_model_conv_alias(m, tenth, &shadowed);
  cr_assert(a && !strcmp(a, "conv10") && shadowed == 1, "%s %d", a ? a : "(none)", shadowed);
  /* conv1 is both the alias and the name of one value; conv26 names the real conv10 */
  cr_assert_eq(dd_model_alias_shadowed(m, "conv1", NULL), 0);
  a = dd_model_conv_alias(m, real, &shadowed);
  cr_assert(a && !strcmp(a, "conv26") && shadowed == 0, "%s %d", a ? a : "(none)", shadowed);
  cr_assert_eq(dd_model_alias_shadowed(m, "fire4/expand3x3", NULL), 0);
  /* a suggestion lists conv10 once, not once as a name and once as an alias */
  char sug[512];
  dd_model_suggest(m, "conv10x", 8, sug, sizeof sug);
  int count = 0;
  for (char *tok = strtok(sug, ", "); tok; tok = strtok(NULL, ", ")) count += !strcmp(tok, "conv10");
  cr_assert_eq(count, 1, "conv10 suggested %d times", count);
  dd_model_free(m);
}

/* The public accessors give what visualize.c reads without model_internal.h: a node's op,
 * inputs and outputs, its attributes by name (with the file's types enforced), a value's
 * constant tensor. */
Test(loader, node_accessors_and_attributes) {
  dd_model *m = th_shared_model("models/squeezenet1.1.onnx");
  dd_err err;
  int conv = -1, concat = -1;
  for (int i = 0; i < dd_model_num_nodes(m); i++) {
    if (conv < 0 && !strcmp(dd_model_node_op(m, i), "Conv")) conv = i;
    if (concat < 0 && !strcmp(dd_model_node_op(m, i), "Concat")) concat = i;
  }
  cr_assert(conv >= 0 && concat >= 0);
  cr_assert_eq(dd_model_node_num_inputs(m, conv), 3);
  cr_assert_eq(dd_model_node_input(m, conv, 0), dd_model_input(m));
  cr_assert_null(dd_model_value_tensor(m, dd_model_input(m)));
  const dd_tensor *w = dd_model_value_tensor(m, dd_model_node_input(m, conv, 1));
  cr_assert(w && w->shape.ndim == 4 && w->shape.d[0] == 64 && w->shape.d[1] == 3);
  cr_assert_eq(dd_model_producer(m, dd_model_node_output(m, conv, 0)), conv);

  const int64_t *ks = NULL;
  int n = 0;
  cr_assert_eq(dd_model_node_attr_ints(m, conv, "kernel_shape", &ks, &n, &err), DD_OK, "%s",
               err.msg);
  cr_assert(n == 2 && ks[0] == 3 && ks[1] == 3, "%d", n);
  cr_assert_eq(dd_model_node_attr_ints(m, conv, "dilations_absent", &ks, &n, &err), DD_OK);
  cr_assert(ks == NULL && n == -1);
  int64_t axis = -7;
  cr_assert_eq(dd_model_node_attr_int(m, concat, "axis", 0, &axis, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(axis, 1);
  int64_t group = 0;
  cr_assert_eq(dd_model_node_attr_int(m, conv, "group_absent", 1, &group, &err), DD_OK);
  cr_assert_eq(group, 1);
  /* another type, or a node out of range, fails and leaves the output alone */
  float f = 42;
  cr_assert_eq(dd_model_node_attr_float(m, concat, "axis", 0, &f, &err), DD_EFORMAT);
  cr_assert(strstr(err.msg, dd_model_node_name(m, concat)) && f == 42, "%s", err.msg);
  const dd_tensor *t = w;
  cr_assert_eq(dd_model_node_attr_tensor(m, concat, "axis", &t, &err), DD_EFORMAT);
  cr_assert_eq(t, w);
  cr_assert_eq(dd_model_node_attr_int(m, dd_model_num_nodes(m), "axis", 0, &axis, &err), DD_EARG);
  cr_assert_eq(dd_model_node_attr_int(m, -1, "axis", 0, &axis, &err), DD_EARG);
  cr_assert_eq(axis, 1);
  dd_model_free(m);
}

/* bool tensors (ONNX BOOL, 9): one byte per element in raw_data, or int32_data; any nonzero
 * is true; saved back as BOOL raw bytes. */
Test(loader, bool_tensors_from_raw_and_int32_data_and_back) {
  int64_t dims[] = {2, 3};
  uint8_t raw[] = {0, 1, 2, 0, 255, 1};
  int32_t i32[] = {0, 1, 0, -5, 1, 0};
  const uint8_t want_raw[] = {0, 1, 1, 0, 1, 1}, want_i32[] = {0, 1, 0, 1, 1, 0};
  for (int form = 0; form < 2; form++) {
    Onnx__TensorProto tp;
    onnx__tensor_proto__init(&tp);
    tp.n_dims = 2;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    if (form == 0) {
      tp.has_raw_data = 1;
      tp.raw_data.len = 6;
      tp.raw_data.data = raw;
    } else {
      tp.n_int32_data = 6;
      tp.int32_data = i32;
    }
    size_t len = onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *buf = malloc(len);
    onnx__tensor_proto__pack(&tp, buf);
    dd_tensor *t = NULL;
    dd_err err;
    cr_assert_eq(dd_tensor_parse_pb(buf, len, "bool", &t, NULL, &err), 0, "%s", err.msg);
    free(buf);
    cr_assert_eq(t->dtype, DD_BOOL);
    cr_assert_eq(dd_dtype_size(t->dtype), 1);
    cr_assert_str_eq(dd_dtype_name(t->dtype), "bool");
    for (int i = 0; i < 6; i++) cr_assert_eq(dd_bool(t)[i], (form ? want_i32 : want_raw)[i]);
    char path[] = "/tmp/dream_bool_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(dd_tensor_save_pb(path, t, "mask", &err), 0, "%s", err.msg);
    dd_tensor *back = NULL;
    char *name = NULL;
    cr_assert_eq(dd_tensor_load_pb(path, &back, &name, &err), 0, "%s", err.msg);
    cr_assert_eq(back->dtype, DD_BOOL);
    cr_assert_str_eq(name, "mask");
    cr_assert(dd_shape_eq(&back->shape, &t->shape));
    cr_assert_eq(memcmp(back->data, t->data, 6), 0);
    unlink(path);
    free(name);
    dd_tensor_free(t);
    dd_tensor_free(back);
  }
}
