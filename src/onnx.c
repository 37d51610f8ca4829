/* ONNX reader: ModelProto (protobuf-c) -> dd_model, and TensorProto files -> dd_tensor.
 * Every count and size from the file is checked before it is used. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_internal.h"
#include "onnx.pb-c.h"
#include "ops/op.h"
#include "util.h"

enum { ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT8 = 3, ONNX_UINT16 = 4, ONNX_INT16 = 5,
       ONNX_INT32 = 6, ONNX_INT64 = 7, ONNX_BOOL = 9, ONNX_DOUBLE = 11 };

static const char *onnx_type_name(int t) {
  static const char *names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16",
                                "INT32", "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE",
                                "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  return t >= 0 && t < (int)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

/* Bytes per element of the raw_data encoding, 0 for types we do not read. */
static size_t raw_elem_size(int t) {
  switch (t) {
    case ONNX_FLOAT: case ONNX_INT32: return 4;
    case ONNX_INT64: case ONNX_DOUBLE: return 8;
    case ONNX_UINT8: case ONNX_INT8: case ONNX_BOOL: return 1;
    case ONNX_UINT16: case ONNX_INT16: return 2;
    default: return 0;
  }
}

static int64_t raw_int(const uint8_t *p, int t, int64_t i) {
  switch (t) {
    case ONNX_INT64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    case ONNX_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case ONNX_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case ONNX_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case ONNX_INT8: return (int8_t)p[i];
    default: return p[i];
  }
}

/* Converts `tp` to float32 (FLOAT, DOUBLE), bool (BOOL, one byte 0/1) or int64 (the integer
 * types).
 * `what` names the tensor in messages ("model.onnx: initializer 'conv1/7x7_s2_w'"). */
int dd_tensor_from_proto(const Onnx__TensorProto *tp, const char *what, dd_tensor **out,
                         dd_err *err) {
  char sb[160];
  int type = tp->has_data_type ? tp->data_type : 0;
  if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return dd_fail(err, DD_EUNSUPPORTED,
                   "%s: data stored in an external file is not supported; save the model "
                   "with its weights inside the .onnx file", what);
  if (tp->segment) return dd_fail(err, DD_EUNSUPPORTED, "%s: segmented tensors are not supported", what);
  size_t es = raw_elem_size(type);
  if (!es)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: element type %s (%d) is not supported", what,
                   onnx_type_name(type), type);
  if (tp->n_dims > DD_MAX_DIMS)
    return dd_fail(err, DD_ELIMIT, "%s: %zu dims, at most %d are supported", what, tp->n_dims,
                   DD_MAX_DIMS);
  dd_shape s = {.ndim = (int)tp->n_dims};
  for (size_t i = 0; i < tp->n_dims; i++) {
    if (tp->dims[i] < 0)
      return dd_fail(err, DD_EFORMAT, "%s: dim %zu is negative (%lld)", what, i,
                     (long long)tp->dims[i]);
    s.d[i] = tp->dims[i];
  }
  int64_t n = dd_shape_numel(&s);
  if (n < 0 || n > (INT64_C(1) << 40))
    return dd_fail(err, DD_ELIMIT, "%s: dims %s give too many elements", what,
                   dd_shape_str(&s, sb, sizeof sb));
  /* Check the data length against the dims before allocating anything. */
  size_t have;
  const char *field;
  if (tp->has_raw_data) {
    field = "raw_data";
    if (tp->raw_data.len % es)
      return dd_fail(err, DD_EFORMAT, "%s: raw_data has %zu bytes, not a multiple of %zu", what,
                     tp->raw_data.len, es);
    have = tp->raw_data.len / es;
  } else if (type == ONNX_FLOAT) {
    field = "float_data", have = tp->n_float_data;
  } else if (type == ONNX_INT64) {
    field = "int64_data", have = tp->n_int64_data;
  } else if (type == ONNX_DOUBLE) {
    field = "double_data", have = tp->n_double_data;
  } else {
    field = "int32_data", have = tp->n_int32_data;
  }
  if ((uint64_t)have != (uint64_t)n)
    return dd_fail(err, DD_EFORMAT, "%s: dims %s need %lld elements but %s holds %zu", what,
                   dd_shape_str(&s, sb, sizeof sb), (long long)n, field, have);
  int is_float = type == ONNX_FLOAT || type == ONNX_DOUBLE;
  dd_tensor *t;
  dd_dtype dt = is_float ? DD_F32 : type == ONNX_BOOL ? DD_BOOL : DD_I64;
  int rc = dd_tensor_new(dt, &s, 0, &t, err);
  if (rc) return dd_err_prefix(err, "%s", what);
  if (is_float && n > 0) { /* an empty tensor's data pointers may be NULL */
    float *d = dd_f32(t);
    if (type == ONNX_FLOAT && tp->has_raw_data) memcpy(d, tp->raw_data.data, (size_t)n * 4);
    else if (type == ONNX_FLOAT) memcpy(d, tp->float_data, (size_t)n * 4);
    else
      for (int64_t i = 0; i < n; i++) {
        double v;
        if (tp->has_raw_data) memcpy(&v, tp->raw_data.data + 8 * i, 8);
        else v = tp->double_data[i];
        d[i] = (float)v;
      }
  } else if (type == ONNX_BOOL) { /* any nonzero byte or int32 is true */
    uint8_t *d = dd_bool(t);
    for (int64_t i = 0; i < n; i++)
      d[i] = (tp->has_raw_data ? tp->raw_data.data[i] : tp->int32_data[i]) != 0;
  } else if (!is_float) {
    int64_t *d = dd_i64(t);
    for (int64_t i = 0; i < n; i++) {
      if (tp->has_raw_data) d[i] = raw_int(tp->raw_data.data, type, i);
      else if (type == ONNX_INT64) d[i] = tp->int64_data[i];
      else d[i] = tp->int32_data[i];
    }
  }
  *out = t;
  return DD_OK;
}

int dd_tensor_parse_pb(const void *buf, size_t len, const char *what, dd_tensor **out,
                       char **name_out, dd_err *err) {
  if (len == 0) return dd_fail(err, DD_EFORMAT, "%s: empty file, expected an ONNX TensorProto", what);
  Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
  if (!tp)
    return dd_fail(err, DD_EFORMAT, "%s: not a valid ONNX TensorProto (protobuf decoding failed)",
                   what);
  dd_tensor *t = NULL;
  char *name = NULL;
  int rc = dd_tensor_from_proto(tp, what, &t, err);
  if (!rc && name_out && tp->name && tp->name[0]) {
    name = dd_strdup(tp->name);
    if (!name) rc = dd_fail(err, DD_ENOMEM, "%s: out of memory", what);
  }
  onnx__tensor_proto__free_unpacked(tp, NULL);
  if (rc) {
    dd_tensor_free(t);
    return rc;
  }
  *out = t;
  if (name_out) *name_out = name;
  return DD_OK;
}

int dd_tensor_load_pb(const char *path, dd_tensor **out, char **name_out, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(path, DD_MODEL_MAX_FILE, &buf, &len, err);
  if (rc) return rc;
  rc = dd_tensor_parse_pb(buf, len, path, out, name_out, err);
  free(buf);
  return rc;
}

int dd_tensor_save_pb(const char *path, const dd_tensor *t, const char *name, dd_err *err) {
  Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
  int64_t dims[DD_MAX_DIMS];
  for (int i = 0; i < t->shape.ndim; i++) dims[i] = t->shape.d[i];
  tp.n_dims = (size_t)t->shape.ndim;
  tp.dims = dims;
  tp.has_data_type = 1;
  tp.data_type = t->dtype == DD_I64 ? ONNX_INT64 : t->dtype == DD_BOOL ? ONNX_BOOL : ONNX_FLOAT;
  tp.name = (char *)(name ? name : "");
  tp.has_raw_data = 1;
  tp.raw_data.len = (size_t)dd_tensor_numel(t) * dd_dtype_size(t->dtype);
  tp.raw_data.data = t->data;
  size_t len = onnx__tensor_proto__get_packed_size(&tp);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return dd_fail(err, DD_ENOMEM, "%s: out of memory", path);
  onnx__tensor_proto__pack(&tp, buf);
  int rc = dd_write_file_atomic(path, buf, len, err);
  free(buf);
  return rc;
}

/* ---- model ---------------------------------------------------------------------------- */

static int add_value(dd_model *m, const char *name, int *index, dd_err *err) {
  int v = dd_model_find(m, name);
  if (v >= 0) {
    *index = v;
    return DD_OK;
  }
  if (m->n_values == m->cap_values) {
    int cap = m->cap_values ? 2 * m->cap_values : 64;
    dd_value *nv = realloc(m->values, (size_t)cap * sizeof *nv);
    if (!nv) return dd_fail(err, DD_ENOMEM, "out of memory");
    m->values = nv;
    m->cap_values = cap;
  }
  dd_value *val = &m->values[m->n_values];
  memset(val, 0, sizeof *val);
  val->name = dd_strdup(name);
  val->producer = -1;
  if (!val->name) return dd_fail(err, DD_ENOMEM, "out of memory");
  int rc = dd_model_hash_insert(m, m->n_values, err);
  if (rc) {
    free(val->name);
    return rc;
  }
  *index = m->n_values++;
  return DD_OK;
}

static int read_attr(const Onnx__AttributeProto *ap, const char *what, dd_attr *a, dd_err *err) {
  a->name = dd_strdup(ap->name ? ap->name : "");
  if (!a->name) return dd_fail(err, DD_ENOMEM, "out of memory");
  int type = ap->has_type ? (int)ap->type : 0;
  if (ap->ref_attr_name && ap->ref_attr_name[0])
    return dd_fail(err, DD_EUNSUPPORTED, "%s: attribute '%s' refers to a function attribute", what,
                   a->name);
  if (!type) { /* IR version 1 files have no type field: infer it from what is set */
    if (ap->has_f) type = DD_ATTR_FLOAT;
    else if (ap->has_i) type = DD_ATTR_INT;
    else if (ap->has_s) type = DD_ATTR_STRING;
    else if (ap->t) type = DD_ATTR_TENSOR;
    else if (ap->n_floats) type = DD_ATTR_FLOATS;
    else if (ap->n_ints) type = DD_ATTR_INTS;
    else if (ap->n_strings) type = DD_ATTR_STRINGS;
  }
  a->type = type;
  switch (type) {
    case DD_ATTR_FLOAT: a->f = ap->f; break;
    case DD_ATTR_INT: a->i = ap->i; break;
    case DD_ATTR_STRING:
      a->s = malloc(ap->s.len + 1);
      if (!a->s) return dd_fail(err, DD_ENOMEM, "out of memory");
      if (ap->s.len) memcpy(a->s, ap->s.data, ap->s.len);
      a->s[ap->s.len] = 0;
      break;
    case DD_ATTR_TENSOR: {
      if (!ap->t) return dd_fail(err, DD_EFORMAT, "%s: tensor attribute '%s' has no tensor", what, a->name);
      char w[512];
      snprintf(w, sizeof w, "%s: attribute '%s'", what, a->name);
      return dd_tensor_from_proto(ap->t, w, &a->t, err);
    }
    case DD_ATTR_FLOATS:
      if (ap->n_floats > (1u << 24)) return dd_fail(err, DD_ELIMIT, "%s: attribute '%s' too long", what, a->name);
      a->n = (int)ap->n_floats;
      a->floats = malloc((ap->n_floats ? ap->n_floats : 1) * sizeof(float));
      if (!a->floats) return dd_fail(err, DD_ENOMEM, "out of memory");
      if (a->n) memcpy(a->floats, ap->floats, ap->n_floats * sizeof(float));
      break;
    case DD_ATTR_INTS:
      if (ap->n_ints > (1u << 24)) return dd_fail(err, DD_ELIMIT, "%s: attribute '%s' too long", what, a->name);
      a->n = (int)ap->n_ints;
      a->ints = malloc((ap->n_ints ? ap->n_ints : 1) * sizeof(int64_t));
      if (!a->ints) return dd_fail(err, DD_ENOMEM, "out of memory");
      if (a->n) memcpy(a->ints, ap->ints, ap->n_ints * sizeof(int64_t));
      break;
    default:
      /* Strings, graphs and the rest are kept as "present" so an op that does not expect
       * them rejects them by name in dd_node_check_attrs. */
      break;
  }
  return DD_OK;
}

static int read_value_info(dd_model *m, const Onnx__ValueInfoProto *vi, const char *what,
                           dd_err *err) {
  if (!vi->name || !vi->name[0]) return dd_fail(err, DD_EFORMAT, "%s: graph input without a name", what);
  int v;
  int rc = add_value(m, vi->name, &v, err);
  if (rc) return rc;
  dd_value *val = &m->values[v];
  if (val->init) return DD_OK; /* an initializer listed as input (IR < 4): a constant */
  val->is_input = 1;
  val->dtype = DD_F32;
  val->shape.ndim = -1; /* unknown rank */
  const Onnx__TypeProto *tp = vi->type;
  if (tp && tp->value_case != ONNX__TYPE_PROTO__VALUE__NOT_SET &&
      tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: input '%s' is of %s type, only tensors are supported",
                   what, vi->name,
                   tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE   ? "sequence"
                   : tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE ? "optional"
                   : tp->value_case == ONNX__TYPE_PROTO__VALUE_MAP_TYPE      ? "map"
                                                                             : "sparse tensor");
  if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type) {
    int et = tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : ONNX_FLOAT;
    if (et != ONNX_FLOAT && et != ONNX_INT64 && et != ONNX_INT32 && et != ONNX_DOUBLE &&
        et != ONNX_BOOL)
      return dd_fail(err, DD_EUNSUPPORTED, "%s: input '%s' has element type %s, not supported",
                     what, vi->name, onnx_type_name(et));
    val->dtype = et == ONNX_INT64 || et == ONNX_INT32 ? DD_I64
                 : et == ONNX_BOOL                    ? DD_BOOL
                                                      : DD_F32;
    const Onnx__TensorShapeProto *sp = tp->tensor_type->shape;
    if (sp) {
      if (sp->n_dim > DD_MAX_DIMS)
        return dd_fail(err, DD_ELIMIT, "%s: input '%s' has %zu dims, at most %d are supported",
                       what, vi->name, sp->n_dim, DD_MAX_DIMS);
      val->shape.ndim = (int)sp->n_dim;
      for (size_t i = 0; i < sp->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = sp->dim[i];
        val->shape.d[i] =
            d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                    d->dim_value > 0 ? d->dim_value : -1;
      }
    }
  }
  return DD_OK;
}

/* Kahn's algorithm with a min-heap on the file position: a file that is already sorted
 * keeps its order exactly, and a hostile one costs O(E log N), never a hang. */
static void heap_push(int *h, int *n, int x) {
  int i = (*n)++;
  while (i > 0 && h[(i - 1) / 2] > x) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = x;
}

static int heap_pop(int *h, int *n) {
  int top = h[0], x = h[--*n], i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (h[c] >= x) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = x;
  return top;
}

static int topo_sort(dd_model *m, dd_err *err) {
  int n = m->n_nodes, nv = m->n_values, rc = DD_OK;
  if (n <= 0 || nv < 0) return DD_OK;
  int *indeg = calloc((size_t)n, sizeof(int));
  int *order = malloc((size_t)n * sizeof(int));
  int *heap = malloc((size_t)n * sizeof(int));
  int *cstart = calloc((size_t)nv + 1, sizeof(int)); /* consumers of each value, CSR */
  int *clist = NULL;
  dd_node *sorted = malloc((size_t)n * sizeof *sorted);
  size_t edges = 0;
  for (int i = 0; i < n; i++) edges += (size_t)m->nodes[i].n_in;
  clist = malloc((edges + 1) * sizeof(int));
  if (!indeg || !order || !heap || !cstart || !clist || !sorted) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++) {
      int v = m->nodes[i].in[j];
      if (v >= 0 && m->values[v].producer >= 0) {
        indeg[i]++;
        cstart[v + 1]++;
      }
    }
  for (int v = 0; v < nv; v++) cstart[v + 1] += cstart[v];
  {
    int *fill = calloc((size_t)nv + 1, sizeof(int));
    if (!fill) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
      goto done;
    }
    for (int i = 0; i < n; i++)
      for (int j = 0; j < m->nodes[i].n_in; j++) {
        int v = m->nodes[i].in[j];
        if (v >= 0 && m->values[v].producer >= 0) clist[cstart[v] + fill[v]++] = i;
      }
    free(fill);
  }
  int hn = 0, done_n = 0;
  for (int i = 0; i < n; i++)
    if (!indeg[i]) heap_push(heap, &hn, i);
  while (hn) {
    int i = heap_pop(heap, &hn);
    order[done_n++] = i;
    for (int k = 0; k < m->nodes[i].n_out; k++) {
      int v = m->nodes[i].out[k];
      if (v < 0) continue;
      for (int c = cstart[v]; c < cstart[v + 1]; c++)
        if (--indeg[clist[c]] == 0) heap_push(heap, &hn, clist[c]);
    }
  }
  if (done_n < n) {
    int bad = 0;
    while (bad < n && !indeg[bad]) bad++;
    rc = dd_fail(err, DD_EFORMAT, "%s: the graph has a cycle through node '%s'", m->name,
                 m->nodes[bad < n ? bad : 0].name);
    goto done;
  }
  for (int i = 0; i < n; i++) sorted[i] = m->nodes[order[i]];
  memcpy(m->nodes, sorted, (size_t)n * sizeof *sorted);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < m->nodes[i].n_out; k++)
      if (m->nodes[i].out[k] >= 0) m->values[m->nodes[i].out[k]].producer = i;
done:
  free(indeg);
  free(order);
  free(heap);
  free(cstart);
  free(clist);
  free(sorted);
  return rc;
}

static int read_node(dd_model *m, const Onnx__NodeProto *np, int index, dd_err *err) {
  dd_node *node = &m->nodes[index];
  const char *type = np->op_type ? np->op_type : "";
  char fallback[96];
  snprintf(fallback, sizeof fallback, "%s_%d", type[0] ? type : "node", index);
  node->name = dd_strdup(np->name && np->name[0] ? np->name : fallback);
  node->op_type = dd_strdup(type);
  if (!node->name || !node->op_type) return dd_fail(err, DD_ENOMEM, "out of memory");
  char what[600];
  snprintf(what, sizeof what, "%s: node '%s' (%s)", m->name, node->name, type);
  if (np->domain && np->domain[0] && strcmp(np->domain, "ai.onnx") != 0)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: operator domain '%s' is not supported", what,
                   np->domain);
  if (np->n_input > 4096 || np->n_output > 4096)
    return dd_fail(err, DD_ELIMIT, "%s: too many inputs or outputs", what);
  node->in = malloc((np->n_input + 1) * sizeof(int));
  node->out = malloc((np->n_output + 1) * sizeof(int));
  node->attrs = calloc(np->n_attribute + 1, sizeof(dd_attr));
  if (!node->in || !node->out || !node->attrs) return dd_fail(err, DD_ENOMEM, "out of memory");
  for (size_t i = 0; i < np->n_input; i++) {
    node->in[i] = -1;
    node->n_in = (int)i + 1;
    if (!np->input[i] || !np->input[i][0]) continue;
    int rc = add_value(m, np->input[i], &node->in[i], err);
    if (rc) return rc;
  }
  node->n_in = (int)np->n_input;
  for (size_t i = 0; i < np->n_output; i++) {
    node->out[i] = -1;
    node->n_out = (int)i + 1;
    if (!np->output[i] || !np->output[i][0]) continue;
    int v, rc = add_value(m, np->output[i], &v, err);
    if (rc) return rc;
    if (m->values[v].producer >= 0 || m->values[v].init || m->values[v].is_input)
      return dd_fail(err, DD_EFORMAT, "%s: output '%s' is already defined elsewhere", what,
                     np->output[i]);
    m->values[v].producer = index;
    node->out[i] = v;
  }
  node->n_out = (int)np->n_output;
  for (size_t i = 0; i < np->n_attribute; i++) {
    node->n_attr = (int)i + 1;
    int rc = read_attr(np->attribute[i], what, &node->attrs[i], err);
    if (rc) return rc;
  }
  node->n_attr = (int)np->n_attribute;
  node->op = dd_op_find(type);
  if (!node->op) {
    char list[1024] = "";
    size_t used = 0;
    for (const char *const *n = dd_op_names(); *n && used < sizeof list - 40; n++)
      if (dd_op_find(*n)) used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? " " : "", *n);
    return dd_fail(err, DD_EUNSUPPORTED, "%s: operator '%s' is not supported (supported: %s)",
                   what, type, list);
  }
  node->opset = m->opset;
  if (node->op->init) {
    int rc = node->op->init(node, err);
    if (rc) return dd_err_prefix(err, "%s", what);
  }
  return DD_OK;
}

/* Builds m from the unpacked proto; each initializer's bytes in mp are freed as soon as they
 * are copied, so that the weights are not held twice while the model is built. */
static int build_model(dd_model *m, Onnx__ModelProto *mp, dd_err *err) {
  m->opset = -1;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
    if (o && (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version)
      m->opset = o->version;
  }
  if (m->opset < 0) m->opset = 1;
  const Onnx__GraphProto *g = mp->graph;
  if (!g) return dd_fail(err, DD_EFORMAT, "%s: the model has no graph", m->name);
  if (g->n_node == 0) return dd_fail(err, DD_EFORMAT, "%s: the graph has no nodes", m->name);
  if (g->n_node > (1u << 20) || g->n_input > (1u << 20) || g->n_output > (1u << 20) ||
      g->n_initializer > (1u << 24))
    return dd_fail(err, DD_ELIMIT, "%s: too many nodes, inputs or initializers", m->name);
  for (size_t i = 0; i < g->n_initializer; i++) {
    Onnx__TensorProto *tp = g->initializer[i];
    char what[600];
    snprintf(what, sizeof what, "%s: initializer '%s'", m->name, tp->name ? tp->name : "");
    if (!tp->name || !tp->name[0]) return dd_fail(err, DD_EFORMAT, "%s: an initializer has no name", m->name);
    int v, rc = add_value(m, tp->name, &v, err);
    if (rc) return rc;
    if (m->values[v].init) return dd_fail(err, DD_EFORMAT, "%s: defined twice", what);
    rc = dd_tensor_from_proto(tp, what, &m->values[v].init, err);
    if (rc) return rc;
    if (tp->has_raw_data && tp->raw_data.data) { /* protobuf-c's default allocator: malloc */
      free(tp->raw_data.data);
      tp->raw_data.data = NULL;
      tp->raw_data.len = 0;
    }
    if (m->values[v].init->dtype == DD_F32) m->n_params += dd_tensor_numel(m->values[v].init);
  }
  m->inputs = malloc((g->n_input + 1) * sizeof(int));
  m->outputs = malloc((g->n_output + 1) * sizeof(int));
  m->nodes = calloc(g->n_node, sizeof(dd_node));
  if (!m->inputs || !m->outputs || !m->nodes) return dd_fail(err, DD_ENOMEM, "out of memory");
  for (size_t i = 0; i < g->n_input; i++) {
    int rc = read_value_info(m, g->input[i], m->name, err);
    if (rc) return rc;
    int v = dd_model_find(m, g->input[i]->name);
    if (m->values[v].is_input) m->inputs[m->n_inputs++] = v;
  }
  for (size_t i = 0; i < g->n_node; i++) {
    m->n_nodes = (int)i + 1;
    int rc = read_node(m, g->node[i], (int)i, err);
    if (rc) return rc;
  }
  for (size_t i = 0; i < g->n_output; i++) {
    const char *name = g->output[i]->name;
    int v = name ? dd_model_find(m, name) : -1;
    if (v < 0) return dd_fail(err, DD_EFORMAT, "%s: graph output '%s' is not produced by any node",
                              m->name, name ? name : "");
    m->outputs[m->n_outputs++] = v;
  }
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++) {
      int v = m->nodes[i].in[j];
      if (v < 0) continue;
      const dd_value *val = &m->values[v];
      if (val->producer < 0 && !val->init && !val->is_input)
        return dd_fail(err, DD_EFORMAT,
                       "%s: node '%s' reads '%s', which no node produces and is neither an "
                       "input nor an initializer", m->name, m->nodes[i].name, val->name);
    }
  int rc = topo_sort(m, err);
  if (rc) return rc;
  return dd_model_build_aliases(m, err);
}

/* m from the unpacked proto, which is freed here whatever happens. */
static int model_from_proto(Onnx__ModelProto *mp, const char *what, dd_model **out,
                            dd_err *err) {
  if (!mp)
    return dd_fail(err, DD_EFORMAT,
                   "%s: not a valid ONNX model (protobuf decoding failed: truncated or not ONNX)",
                   what);
  dd_model *m = calloc(1, sizeof *m);
  int rc;
  if (!m || !(m->name = dd_strdup(what))) {
    free(m);
    m = NULL;
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
  } else {
    rc = build_model(m, mp, err);
  }
  onnx__model_proto__free_unpacked(mp, NULL);
  if (rc) {
    dd_model_free(m);
    return rc;
  }
  *out = m;
  return DD_OK;
}

int dd_model_parse(const void *buf, size_t len, const char *what, dd_model **out, dd_err *err) {
  if (len == 0) return dd_fail(err, DD_EFORMAT, "%s: empty file, expected an ONNX model", what);
  return model_from_proto(onnx__model_proto__unpack(NULL, len, buf), what, out, err);
}

/* The file's bytes are freed once unpacked (protobuf-c copies what it keeps), before the
 * model is built: the weights are never held three times (file, proto, model), at most
 * about twice for the largest initializer. */
int dd_model_load(const char *path, dd_model **out, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(path, DD_MODEL_MAX_FILE, &buf, &len, err);
  if (rc) return rc;
  if (len == 0) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: empty file, expected an ONNX model", path);
  }
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
  free(buf);
  return model_from_proto(mp, path, out, err);
}
