/* dd_model: accessors, the name index, attribute helpers, layer aliases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "util.h"

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int rehash(dd_model *m, size_t cap, dd_err *err) {
  int *h = malloc(cap * sizeof *h);
  if (!h) return dd_fail(err, DD_ENOMEM, "out of memory");
  for (size_t i = 0; i < cap; i++) h[i] = -1;
  for (int v = 0; v < m->n_values; v++) {
    size_t i = hash_str(m->values[v].name) & (cap - 1);
    while (h[i] >= 0) i = (i + 1) & (cap - 1);
    h[i] = v;
  }
  free(m->hash);
  m->hash = h;
  m->hash_cap = cap;
  return DD_OK;
}

int dd_model_hash_insert(dd_model *m, int value, dd_err *err) {
  if ((size_t)(value + 1) * 2 > m->hash_cap) {
    /* rehash covers values [0, n_values); `value` is the one being added */
    int saved = m->n_values;
    m->n_values = value;
    int rc = rehash(m, m->hash_cap ? m->hash_cap * 2 : 256, err);
    m->n_values = saved;
    if (rc) return rc;
  }
  size_t i = hash_str(m->values[value].name) & (m->hash_cap - 1);
  while (m->hash[i] >= 0) i = (i + 1) & (m->hash_cap - 1);
  m->hash[i] = value;
  return DD_OK;
}

int dd_model_find(const dd_model *m, const char *name) {
  if (!m->hash_cap) return -1;
  size_t i = hash_str(name) & (m->hash_cap - 1);
  while (m->hash[i] >= 0) {
    if (strcmp(m->values[m->hash[i]].name, name) == 0) return m->hash[i];
    i = (i + 1) & (m->hash_cap - 1);
  }
  return -1;
}

void dd_model_free(dd_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_nodes; i++) {
    dd_node *n = &m->nodes[i];
    free(n->name);
    free(n->op_type);
    free(n->in);
    free(n->out);
    for (int a = 0; a < n->n_attr; a++) {
      free(n->attrs[a].name);
      free(n->attrs[a].s);
      free(n->attrs[a].floats);
      free(n->attrs[a].ints);
      dd_tensor_free(n->attrs[a].t);
    }
    free(n->attrs);
    free(n->params);
  }
  for (int v = 0; v < m->n_values; v++) {
    free(m->values[v].name);
    dd_tensor_free(m->values[v].init);
  }
  for (int i = 0; i < m->n_alias; i++) free(m->alias_name[i]);
  free(m->alias_name);
  free(m->alias_value);
  free(m->nodes);
  free(m->values);
  free(m->inputs);
  free(m->outputs);
  free(m->hash);
  free(m->name);
  free(m);
}

const char *dd_model_name(const dd_model *m) { return m->name; }
int64_t dd_model_opset(const dd_model *m) { return m->opset; }
int64_t dd_model_num_params(const dd_model *m) { return m->n_params; }
int dd_model_num_values(const dd_model *m) { return m->n_values; }
const char *dd_model_value_name(const dd_model *m, int v) { return m->values[v].name; }
int dd_model_value_is_const(const dd_model *m, int v) { return m->values[v].init != NULL; }
int dd_model_input(const dd_model *m) { return m->n_inputs ? m->inputs[0] : -1; }
dd_shape dd_model_input_shape(const dd_model *m) {
  dd_shape s = {0};
  if (m->n_inputs) s = m->values[m->inputs[0]].shape;
  return s;
}
int dd_model_image_input(const dd_model *m, int *value, dd_err *err) {
  if (!m->n_inputs) return dd_fail(err, DD_EARG, "%s: the model has no data input", m->name);
  const dd_value *v = &m->values[m->inputs[0]];
  const dd_shape *s = &v->shape;
  if (s->ndim >= 0 && (s->ndim != 4 || s->d[0] > 1 || (s->d[1] >= 0 && s->d[1] != 3))) {
    char sb[128];
    return dd_fail(err, DD_EUNSUPPORTED, "%s: input '%s' is not an image (1x3xHxW): it is %s",
                   m->name, v->name, dd_shape_str(s, sb, sizeof sb));
  }
  if (value) *value = m->inputs[0];
  return DD_OK;
}
int dd_model_num_outputs(const dd_model *m) { return m->n_outputs; }
int dd_model_output(const dd_model *m, int i) { return m->outputs[i]; }
int dd_model_num_nodes(const dd_model *m) { return m->n_nodes; }
const char *dd_model_node_name(const dd_model *m, int n) { return m->nodes[n].name; }
const char *dd_model_node_op(const dd_model *m, int n) { return m->nodes[n].op_type; }
int dd_model_node_num_outputs(const dd_model *m, int n) { return m->nodes[n].n_out; }
int dd_model_node_output(const dd_model *m, int n, int i) { return m->nodes[n].out[i]; }
int dd_model_producer(const dd_model *m, int v) { return m->values[v].producer; }
int dd_model_node_num_inputs(const dd_model *m, int n) { return m->nodes[n].n_in; }
int dd_model_node_input(const dd_model *m, int n, int i) { return m->nodes[n].in[i]; }
const dd_tensor *dd_model_value_tensor(const dd_model *m, int v) { return m->values[v].init; }

/* The attribute `name` of node `node` in *a (NULL when absent), or the failure: a node out
 * of range, or an attribute that is not of type `type` (`want` names it). */
static int public_attr(const dd_model *m, int node, const char *name, int type,
                       const char *want, const dd_attr **a, dd_err *err) {
  if (node < 0 || node >= m->n_nodes)
    return dd_fail(err, DD_EARG, "%s: no node %d (the model has %d)", m->name, node, m->n_nodes);
  const dd_node *n = &m->nodes[node];
  *a = dd_node_attr(n, name);
  if (*a && (*a)->type != type)
    return dd_fail(err, DD_EFORMAT, "%s: node '%s': attribute '%s' is not %s", m->name, n->name,
                   name, want);
  return DD_OK;
}

int dd_model_node_attr_int(const dd_model *m, int node, const char *name, int64_t def,
                           int64_t *out, dd_err *err) {
  const dd_attr *a;
  int rc = public_attr(m, node, name, DD_ATTR_INT, "an int", &a, err);
  if (!rc) *out = a ? a->i : def;
  return rc;
}

int dd_model_node_attr_float(const dd_model *m, int node, const char *name, float def,
                             float *out, dd_err *err) {
  const dd_attr *a;
  int rc = public_attr(m, node, name, DD_ATTR_FLOAT, "a float", &a, err);
  if (!rc) *out = a ? a->f : def;
  return rc;
}

int dd_model_node_attr_string(const dd_model *m, int node, const char *name, const char *def,
                              const char **out, dd_err *err) {
  const dd_attr *a;
  int rc = public_attr(m, node, name, DD_ATTR_STRING, "a string", &a, err);
  if (!rc) *out = a ? a->s : def;
  return rc;
}

int dd_model_node_attr_ints(const dd_model *m, int node, const char *name, const int64_t **vals,
                            int *count, dd_err *err) {
  const dd_attr *a;
  int rc = public_attr(m, node, name, DD_ATTR_INTS, "a list of ints", &a, err);
  if (rc) return rc;
  *vals = a ? a->ints : NULL;
  *count = a ? a->n : -1;
  return DD_OK;
}

int dd_model_node_attr_floats(const dd_model *m, int node, const char *name, const float **vals,
                              int *count, dd_err *err) {
  const dd_attr *a;
  int rc = public_attr(m, node, name, DD_ATTR_FLOATS, "a list of floats", &a, err);
  if (rc) return rc;
  *vals = a ? a->floats : NULL;
  *count = a ? a->n : -1;
  return DD_OK;
}

int dd_model_node_attr_tensor(const dd_model *m, int node, const char *name,
                              const dd_tensor **out, dd_err *err) {
  const dd_attr *a;
  int rc = public_attr(m, node, name, DD_ATTR_TENSOR, "a tensor", &a, err);
  if (!rc) *out = a ? a->t : NULL;
  return rc;
}

/* ---- attributes ---- */

const dd_attr *dd_node_attr(const dd_node *n, const char *name) {
  for (int i = 0; i < n->n_attr; i++)
    if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
  return NULL;
}

static int wrong_type(const dd_node *n, const char *name, const char *want, dd_err *err) {
  return dd_fail(err, DD_EFORMAT, "attribute '%s' should be %s", name, want);
}

int dd_attr_int(const dd_node *n, const char *name, int64_t def, int64_t *out, dd_err *err) {
  const dd_attr *a = dd_node_attr(n, name);
  if (!a) {
    *out = def;
    return DD_OK;
  }
  if (a->type != DD_ATTR_INT) return wrong_type(n, name, "an int", err);
  *out = a->i;
  return DD_OK;
}

int dd_attr_float(const dd_node *n, const char *name, float def, float *out, dd_err *err) {
  const dd_attr *a = dd_node_attr(n, name);
  if (!a) {
    *out = def;
    return DD_OK;
  }
  if (a->type == DD_ATTR_INT) { /* some exporters write 0 for 0.0 */
    *out = (float)a->i;
    return DD_OK;
  }
  if (a->type != DD_ATTR_FLOAT) return wrong_type(n, name, "a float", err);
  *out = a->f;
  return DD_OK;
}

int dd_attr_string(const dd_node *n, const char *name, const char *def, const char **out,
                   dd_err *err) {
  const dd_attr *a = dd_node_attr(n, name);
  if (!a) {
    *out = def;
    return DD_OK;
  }
  if (a->type != DD_ATTR_STRING) return wrong_type(n, name, "a string", err);
  *out = a->s;
  return DD_OK;
}

int dd_attr_ints(const dd_node *n, const char *name, int max, int64_t *out, int *count,
                 dd_err *err) {
  const dd_attr *a = dd_node_attr(n, name);
  if (!a) {
    *count = -1;
    return DD_OK;
  }
  if (a->type != DD_ATTR_INTS) return wrong_type(n, name, "a list of ints", err);
  if (a->n > max)
    return dd_fail(err, DD_EUNSUPPORTED, "attribute '%s' has %d values, at most %d are supported",
                   name, a->n, max);
  for (int i = 0; i < a->n; i++) out[i] = a->ints[i];
  *count = a->n;
  return DD_OK;
}

int dd_node_check_attrs(const dd_node *n, const char *const *known, dd_err *err) {
  for (int i = 0; i < n->n_attr; i++) {
    int ok = 0;
    for (const char *const *k = known; *k && !ok; k++) ok = strcmp(*k, n->attrs[i].name) == 0;
    if (!ok)
      return dd_fail(err, DD_EUNSUPPORTED, "attribute '%s' is not supported", n->attrs[i].name);
  }
  return DD_OK;
}

int dd_node_axis_init(dd_node *n, int64_t def, dd_err *err) {
  static const char *const known[] = {"axis", NULL};
  int rc = dd_node_check_attrs(n, known, err);
  if (rc) return rc;
  dd_axis_params *p = malloc(sizeof *p);
  if (!p) return dd_fail(err, DD_ENOMEM, "out of memory");
  rc = dd_attr_int(n, "axis", def, &p->axis, err);
  if (rc) {
    free(p);
    return rc;
  }
  n->params = p;
  return DD_OK;
}

/* ---- layer names ---- */

static int is_activation(const char *op) {
  static const char *const acts[] = {"Relu",    "LeakyRelu",   "Clip",      "Sigmoid",
                                     "PRelu",   "Elu",         "Gelu",      "HardSigmoid",
                                     "HardSwish", "Tanh",      "Softplus",  NULL};
  for (int i = 0; acts[i]; i++)
    if (!strcmp(op, acts[i])) return 1;
  return 0;
}

int dd_model_build_aliases(dd_model *m, dd_err *err) {
  int convs = 0;
  for (int i = 0; i < m->n_nodes; i++) convs += !strcmp(m->nodes[i].op_type, "Conv");
  m->alias_value = malloc(((size_t)convs + 1) * sizeof(int));
  m->alias_name = calloc((size_t)convs + 1, sizeof(char *));
  int *n_cons = calloc((size_t)m->n_values + 1, sizeof(int));
  int *last_cons = calloc((size_t)m->n_values + 1, sizeof(int));
  if (!m->alias_value || !m->alias_name || !n_cons || !last_cons) {
    free(n_cons);
    free(last_cons);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  for (int j = 0; j < m->n_nodes; j++)
    for (int k = 0; k < m->nodes[j].n_in; k++)
      if (m->nodes[j].in[k] >= 0) {
        n_cons[m->nodes[j].in[k]]++;
        last_cons[m->nodes[j].in[k]] = j;
      }
  for (int i = 0; i < m->n_nodes; i++) {
    const dd_node *n = &m->nodes[i];
    if (strcmp(n->op_type, "Conv") || n->n_out < 1 || n->out[0] < 0) continue;
    int v = n->out[0];
    const dd_node *c = &m->nodes[last_cons[v]];
    if (n_cons[v] == 1 && is_activation(c->op_type) && c->n_out >= 1 && c->out[0] >= 0)
      v = c->out[0];
    char name[32];
    snprintf(name, sizeof name, "conv%d", m->n_alias + 1);
    m->alias_name[m->n_alias] = dd_strdup(name);
    if (!m->alias_name[m->n_alias]) {
      free(n_cons);
      free(last_cons);
      return dd_fail(err, DD_ENOMEM, "out of memory");
    }
    m->alias_value[m->n_alias++] = v;
  }
  free(n_cons);
  free(last_cons);
  return DD_OK;
}

const char *dd_model_alias(const dd_model *m, int value) {
  for (int i = 0; i < m->n_alias; i++)
    if (m->alias_value[i] == value) return m->alias_name[i];
  return NULL;
}

void dd_model_suggest(const dd_model *m, const char *name, int n, char *buf, size_t size) {
  enum { MAXN = 8 };
  int best[MAXN], bestd[MAXN], k = 0;
  if (n > MAXN) n = MAXN;
  int total = m->n_values + m->n_alias;
  for (int i = 0; i < total; i++) {
    const char *cand;
    if (i < m->n_values) {
      if (m->values[i].init) continue; /* weights are not layers */
      cand = m->values[i].name;
    } else {
      cand = m->alias_name[i - m->n_values];
      if (dd_model_find(m, cand) >= 0) continue; /* the value of that name is a candidate */
    }
    int d = dd_edit_distance(name, cand);
    /* a name that contains what was typed is a good guess too */
    if (strstr(cand, name) && d > 2) d = 2;
    int pos = k < n ? k++ : n;
    if (pos == n && d >= bestd[n - 1]) continue;
    if (pos == n) pos = n - 1;
    while (pos > 0 && bestd[pos - 1] > d) {
      best[pos] = best[pos - 1];
      bestd[pos] = bestd[pos - 1];
      pos--;
    }
    best[pos] = i;
    bestd[pos] = d;
  }
  size_t used = 0;
  if (size) buf[0] = 0;
  for (int i = 0; i < k && used < size; i++) {
    const char *cand =
        best[i] < m->n_values ? m->values[best[i]].name : m->alias_name[best[i] - m->n_values];
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", cand);
    if (w < 0) break;
    used += (size_t)w;
  }
}

int dd_model_resolve(const dd_model *m, const char *name, int *value, dd_err *err) {
  /* a value's own name wins over an alias spelled the same (SqueezeNet's conv10) */
  int v = dd_model_find(m, name);
  if (v < 0)
    for (int i = 0; i < m->n_alias; i++)
      if (!strcmp(m->alias_name[i], name)) v = m->alias_value[i];
  if (v < 0) {
    char sug[512];
    dd_model_suggest(m, name, 5, sug, sizeof sug);
    return dd_fail(err, DD_ENOTFOUND, "%s: no layer named '%s'; closest: %s", m->name, name, sug);
  }
  *value = v;
  return DD_OK;
}

/* The value a real name takes from alias i, or -1 when no value of another meaning has the
 * alias's name. */
static int shadow_of(const dd_model *m, int i) {
  int v = dd_model_find(m, m->alias_name[i]);
  return v >= 0 && v != m->alias_value[i] ? v : -1;
}

const char *dd_model_conv_alias(const dd_model *m, int value, int *shadowed) {
  for (int i = 0; i < m->n_alias; i++)
    if (m->alias_value[i] == value) {
      if (shadowed) *shadowed = shadow_of(m, i) >= 0;
      return m->alias_name[i];
    }
  if (shadowed) *shadowed = 0;
  return NULL;
}

int dd_model_alias_shadowed(const dd_model *m, const char *name, int *alias_value) {
  for (int i = 0; i < m->n_alias; i++)
    if (!strcmp(m->alias_name[i], name)) {
      if (shadow_of(m, i) < 0) return 0;
      if (alias_value) *alias_value = m->alias_value[i];
      return 1;
    }
  return 0;
}
