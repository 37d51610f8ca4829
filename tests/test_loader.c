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
#include "helper_files.h"
#include "helper_model.h"
#include "helper_ops.h"
#include "onnx.pb-c.h"

TestSuite(loader, .init = th_tmpdir_setup, .fini = th_tmpdir_teardown);

static void *read_shared(const char *rel, size_t *len) {
  char path[1024];
  void *buf = th_slurp(th_shared(path, sizeof path, rel), len);
  cr_assert(buf, "%s: missing (the shared models)", path);
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
  char path[128];
  th_tmp(path, sizeof path, "no_such_file.onnx");
  expect_load_error(path, DD_EIO, (const char *[]){"cannot open", "No such file", NULL});
}

Test(loader, directory_instead_of_file) {
  expect_load_error(th_tmpdir, DD_EIO, (const char *[]){"directory", NULL});
}

Test(loader, empty_file) {
  char path[128];
  th_write_bytes(th_tmp(path, sizeof path, "empty.onnx"), "", 0);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"empty", NULL});
}

Test(loader, random_bytes) {
  uint8_t buf[4096];
  uint64_t s = 12345;
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)dd_rng_next(&s);
  char path[128];
  th_write_bytes(th_tmp(path, sizeof path, "random.onnx"), buf, sizeof buf);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"not a valid ONNX model", NULL});
}

Test(loader, truncated_squeezenet) {
  size_t len;
  uint8_t *buf = read_shared("models/squeezenet1.1.onnx", &len);
  /* inside the header, inside the weights, and one byte short of the end */
  size_t cuts[] = {7, 1000, len / 3, len / 2, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    char path[128];
    th_write_bytes(th_tmp(path, sizeof path, "cut.onnx"), buf, cuts[i]);
    expect_load_error(path, DD_EFORMAT, (const char *[]){"truncated", NULL});
  }
  free(buf);
}

/* ---- hand-built models ---------------------------------------------------------------- */

/* Writes the model to th_tmpdir/<name> (its path into path) and frees the builder. */
static const char *write_model(th_model *b, const char *name, char *path, size_t size) {
  th_model_write(b, th_tmp(path, size, name));
  th_model_free(b);
  return path;
}

/* A model of input x and output y, for the nodes between. */
static th_model *x_to_y(void) {
  th_model *b = th_model_new("tiny");
  th_model_input(b, "x", -1, NULL);
  th_model_output(b, "y");
  return b;
}

Test(loader, valid_tiny_model_loads) {
  /* the builder itself is sound: a Relu graph loads */
  th_model *b = x_to_y();
  th_model_node(b, "Relu", "relu1", "x", "y");
  char path[128];
  write_model(b, "relu.onnx", path, sizeof path);
  dd_model *m = NULL;
  dd_err err = {0};
  cr_assert_eq(dd_model_load(path, &m, &err), DD_OK, "%s", err.msg);
  cr_assert_eq(dd_model_num_nodes(m), 1);
  dd_model_free(m);
}

Test(loader, initializer_length_disagrees_with_dims) {
  th_model *b = x_to_y();
  float w[10] = {0};
  th_model_init_raw(b, "conv1_w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4,
                    (int64_t[]){8, 3, 3, 3}, w, sizeof w);
  th_model_node(b, "Conv", "conv1", "x,conv1_w", "y");
  char path[128];
  write_model(b, "conv.onnx", path, sizeof path);
  /* 8x3x3x3 = 216 floats declared, 10 stored */
  expect_load_error(path, DD_EFORMAT,
                    (const char *[]){"conv1_w", "8x3x3x3", "216", "raw_data", "10", NULL});
}

Test(loader, unsupported_operator_names_node_and_type) {
  th_model *b = x_to_y();
  th_model_node(b, "Relu", "relu1", "x", "h");
  th_model_node(b, "GridSample", "warp7", "h", "y");
  char path[128];
  write_model(b, "warp.onnx", path, sizeof path);
  expect_load_error(path, DD_EUNSUPPORTED,
                    (const char *[]){"warp7", "GridSample", "not supported", NULL});
}

Test(loader, graph_cycle) {
  /* a -> relu_b -> b -> relu_a -> a: every value has a producer, none can run first */
  th_model *b = x_to_y();
  th_model_node(b, "Relu", "relu_a", "b", "a");
  th_model_node(b, "Relu", "relu_b", "a", "b");
  th_model_node(b, "Relu", "relu_y", "x", "y");
  char path[128];
  write_model(b, "cycle.onnx", path, sizeof path);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"cycle", "relu_", NULL});
}

Test(loader, node_reads_an_undefined_value) {
  th_model *b = x_to_y();
  th_model_node(b, "Relu", "relu1", "ghost", "y");
  char path[128];
  write_model(b, "ghost.onnx", path, sizeof path);
  expect_load_error(path, DD_EFORMAT, (const char *[]){"relu1", "ghost", NULL});
}

Test(loader, sequence_input_is_unsupported) {
  /* a sequence of float tensors must not be taken for a float tensor of unknown rank; the
   * types are the builder's once attached, so they are allocated */
  Onnx__TypeProto__Tensor *elem = calloc(1, sizeof *elem);
  Onnx__TypeProto *inner = calloc(1, sizeof *inner), *type = calloc(1, sizeof *type);
  Onnx__TypeProto__Sequence *seq = calloc(1, sizeof *seq);
  cr_assert(elem && inner && type && seq);
  onnx__type_proto__tensor__init(elem);
  elem->has_elem_type = 1;
  elem->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  onnx__type_proto__init(inner);
  inner->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  inner->tensor_type = elem;
  onnx__type_proto__sequence__init(seq);
  seq->elem_type = inner;
  onnx__type_proto__init(type);
  type->value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE;
  type->sequence_type = seq;
  th_model *b = th_model_new("tiny");
  th_model_input(b, "x", -1, NULL)->type = type;
  th_model_output(b, "y");
  th_model_node(b, "Identity", "id1", "x", "y");
  char path[128];
  write_model(b, "sequence.onnx", path, sizeof path);
  expect_load_error(path, DD_EUNSUPPORTED, (const char *[]){"'x'", "sequence", NULL});
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
  char path[128];
  th_write_bytes(th_tmp(path, sizeof path, "short.pb"), buf, len);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"2x3", "6", "raw_data", "4", NULL});
  /* a byte count that is not a whole number of floats */
  tp.raw_data.len = 10;
  len = onnx__tensor_proto__pack(&tp, buf);
  th_write_bytes(th_tmp(path, sizeof path, "short.pb"), buf, len);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"raw_data", "10", NULL});
}

Test(loader, tensor_pb_truncated_and_empty) {
  size_t len;
  uint8_t *buf = read_shared("models/squeezenet1.1.test_data_set_0/output_0.pb", &len);
  char path[128];
  th_write_bytes(th_tmp(path, sizeof path, "output_0.pb"), buf, len / 2);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"TensorProto", NULL});
  th_write_bytes(th_tmp(path, sizeof path, "output_0.pb"), buf, 0);
  expect_pb_error(path, DD_EFORMAT, (const char *[]){"empty", NULL});
  free(buf);
}

Test(loader, tensor_pb_missing_file) {
  char path[128];
  th_tmp(path, sizeof path, "no_such_tensor.pb");
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
