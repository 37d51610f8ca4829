#include "helper_conformance.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dream/graph.h"
#include "dream/model.h"
#include "model_internal.h"
#include "onnx.pb-c.h"
#include "ops/op.h"
#include "util.h"

#define MAX_IO 16

const char *hc_node_dir(void) {
  const char *d = getenv("DREAM_ONNX_TESTDATA");
  return d && *d ? d : "/usr/share/libonnx-testdata/data/node";
}

const char *hc_status_name(hc_status s) {
  return s == HC_PASS ? "pass" : s == HC_SKIP ? "skip" : "fail";
}

static int in_ops_def(const char *op_type) {
  for (const char *const *n = dd_op_names(); *n; n++)
    if (!strcmp(*n, op_type)) return 1;
  return 0;
}

int hc_case_in_scope(const char *case_dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/model.onnx", case_dir);
  void *buf;
  size_t len;
  if (dd_read_file(path, DD_MODEL_MAX_FILE, &buf, &len, NULL)) return 0;
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
  free(buf);
  if (!mp) return 1;
  int ok = mp->graph && mp->graph->n_node > 0;
  for (size_t i = 0; ok && i < mp->graph->n_node; i++) {
    const Onnx__NodeProto *n = mp->graph->node[i];
    int default_domain = !n->domain || !n->domain[0] || !strcmp(n->domain, "ai.onnx");
    ok = default_domain && n->op_type && in_ops_def(n->op_type);
  }
  onnx__model_proto__free_unpacked(mp, NULL);
  return ok;
}

static int case_cmp(const void *a, const void *b) {
  return strcmp(((const hc_case *)a)->name, ((const hc_case *)b)->name);
}

int hc_list_cases(const char *dir, hc_case **cases) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  hc_case *list = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "test_", 5) || strlen(e->d_name) >= HC_NAME_MAX) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (!hc_case_in_scope(path)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 256;
      hc_case *nl = realloc(list, (size_t)cap * sizeof *nl);
      if (!nl) break;
      list = nl;
    }
    snprintf(list[n++].name, HC_NAME_MAX, "%s", e->d_name);
  }
  closedir(d);
  if (n) qsort(list, (size_t)n, sizeof *list, case_cmp);
  *cases = list;
  return n;
}

/* ---- running one case ------------------------------------------------------------------ */

static const char *onnx_type_name(int t) {
  static const char *names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16",
                                "INT32", "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE",
                                "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  return t >= 0 && t < (int)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

/* Element types whose values dream holds exactly: float32 as float32, int32/int64 as int64,
 * bool as bool. */
static int held_type(int t) {
  return t == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || t == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
         t == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || t == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
}

/* Reads a TensorProto file; *onnx_type receives its declared element type. */
static int load_pb(const char *path, dd_tensor **t, int *onnx_type, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(path, DD_MODEL_MAX_FILE, &buf, &len, err);
  if (rc) return rc;
  Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
  *onnx_type = tp && tp->has_data_type ? tp->data_type : 0;
  if (tp) onnx__tensor_proto__free_unpacked(tp, NULL);
  *t = NULL;
  rc = held_type(*onnx_type) ? dd_tensor_parse_pb(buf, len, path, t, NULL, err) : DD_OK;
  free(buf);
  return rc;
}

static void unravel(const dd_shape *s, int64_t flat, char *buf, size_t size) {
  int64_t idx[DD_MAX_DIMS];
  for (int i = s->ndim - 1; i >= 0; i--) {
    idx[i] = s->d[i] ? flat % s->d[i] : 0;
    flat = s->d[i] ? flat / s->d[i] : 0;
  }
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < s->ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "", (long long)idx[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
}

/* Compares ours with the expected tensor.  Returns 1 when they agree; otherwise writes the
 * worst element into msg.  *worst receives max |d| / tol over the elements (float only). */
static int compare(const dd_tensor *ours, const dd_tensor *want, double *worst, char *msg,
                   size_t size) {
  char s1[128], s2[128], at[128];
  if (!dd_shape_eq(&ours->shape, &want->shape)) {
    snprintf(msg, size, "shape %s, expected %s", dd_shape_str(&ours->shape, s1, sizeof s1),
             dd_shape_str(&want->shape, s2, sizeof s2));
    return 0;
  }
  if (ours->dtype != want->dtype) {
    snprintf(msg, size, "dtype %s, expected %s", dd_dtype_name(ours->dtype),
             dd_dtype_name(want->dtype));
    return 0;
  }
  int64_t n = dd_tensor_numel(want), bad = 0, first_bad = -1;
  if (want->dtype == DD_BOOL) {
    for (int64_t i = 0; i < n; i++)
      if (dd_bool(ours)[i] != dd_bool(want)[i] && !bad++) first_bad = i;
    if (!bad) return 1;
    unravel(&want->shape, first_bad, at, sizeof at);
    snprintf(msg, size, "%lld of %lld bool elements differ; at %s got %d, expected %d",
             (long long)bad, (long long)n, at, dd_bool(ours)[first_bad], dd_bool(want)[first_bad]);
    return 0;
  }
  if (want->dtype == DD_I64) {
    for (int64_t i = 0; i < n; i++)
      if (dd_i64(ours)[i] != dd_i64(want)[i] && !bad++) first_bad = i;
    if (!bad) return 1;
    unravel(&want->shape, first_bad, at, sizeof at);
    snprintf(msg, size, "%lld of %lld int64 elements differ; at %s got %lld, expected %lld",
             (long long)bad, (long long)n, at, (long long)dd_i64(ours)[first_bad],
             (long long)dd_i64(want)[first_bad]);
    return 0;
  }
  double wr = 0;
  int64_t wi = -1;
  for (int64_t i = 0; i < n; i++) {
    double a = dd_f32(ours)[i], b = dd_f32(want)[i], r;
    if (isnan(b)) r = isnan(a) ? 0 : INFINITY;
    else if (isinf(b)) r = a == b ? 0 : INFINITY;
    else if (isnan(a)) r = INFINITY;
    else r = fabs(a - b) / (HC_ATOL + HC_RTOL * fabs(b));
    if (r > 1) bad++;
    if (wi < 0 || r > wr || (isnan(r) && !isnan(wr))) wr = r, wi = i;
  }
  *worst = wr;
  if (!bad) return 1;
  unravel(&want->shape, wi, at, sizeof at);
  double a = dd_f32(ours)[wi], b = dd_f32(want)[wi];
  snprintf(msg, size,
           "%lld of %lld elements outside |d| <= %g + %g*|expected|; worst at %s: got %.9g, "
           "expected %.9g (|d| = %.3g)",
           (long long)bad, (long long)n, HC_ATOL, HC_RTOL, at, a, b, fabs(a - b));
  return 0;
}

typedef struct run_state {
  dd_model *m;
  dd_plan *p;
  dd_tensor *in[MAX_IO];
  int n_in;
} run_state;

static void run_state_clear(run_state *s) {
  dd_plan_free(s->p);
  for (int i = 0; i < s->n_in; i++) dd_tensor_free(s->in[i]);
  s->p = NULL;
  s->n_in = 0;
}

static hc_status setf(char *reason, size_t size, hc_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static hc_status setf(char *reason, size_t size, hc_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, size, fmt, ap);
  va_end(ap);
  return st;
}

/* One test_data_set directory.  Returns PASS, SKIP (an output we cannot hold) or FAIL.
 * const_rest: 0 binds int64 inputs as constants, 1 also every input after the first, 2 all. */
static hc_status run_set(run_state *s, const char *set_dir, int const_rest, double *worst,
                         char *note, size_t note_size, char *reason, size_t size) {
  const dd_model *m = s->m;
  dd_err err = {0};
  char path[1200];
  if (m->n_inputs > MAX_IO || m->n_outputs > MAX_IO)
    return setf(reason, size, HC_FAIL, "too many graph inputs or outputs for the runner");
  dd_binding bind[MAX_IO];
  for (int i = 0; i < m->n_inputs; i++) {
    /* Inputs are read as the library reads tensors (double as float32, int32 as int64),
     * matching how dd_model_load declared them. */
    snprintf(path, sizeof path, "%s/input_%d.pb", set_dir, i);
    int rc = dd_tensor_load_pb(path, &s->in[i], NULL, &err);
    if (rc) return setf(reason, size, HC_FAIL, "%s", err.msg);
    if (s->in[i]->dtype != m->values[m->inputs[i]].dtype) {
      char tmp[HC_REASON_MAX];
      snprintf(tmp, sizeof tmp, "%s: holds %s but the model declares %s", path,
               dd_dtype_name(s->in[i]->dtype), dd_dtype_name(m->values[m->inputs[i]].dtype));
      dd_tensor_free(s->in[i]);
      s->in[i] = NULL;
      return setf(reason, size, HC_FAIL, "%s", tmp);
    }
    s->n_in = i + 1;
    /* int64 inputs are shapes, axes and indices: constants folded at plan time. */
    int as_const = s->in[i]->dtype == DD_I64 || (const_rest && i > 0) || const_rest > 1;
    bind[i] = (dd_binding){.value = m->inputs[i], .shape = s->in[i]->shape,
                           .constant = as_const ? s->in[i] : NULL};
  }
  int rc = dd_plan_new(m, bind, m->n_inputs, m->outputs, m->n_outputs, 0, 0, &s->p, &err);
  if (rc == DD_EUNSUPPORTED) return setf(reason, size, HC_SKIP, "%s", err.msg);
  if (rc) return setf(reason, size, HC_FAIL, "plan: %s: %s", dd_errname(rc), err.msg);
  for (int i = 0; i < m->n_inputs; i++) {
    if (bind[i].constant) continue;
    dd_tensor *t = dd_plan_tensor(s->p, m->inputs[i]);
    if (t)
      memcpy(t->data, s->in[i]->data,
             (size_t)dd_tensor_numel(s->in[i]) * dd_dtype_size(s->in[i]->dtype));
  }
  dd_plan_forward(s->p);
  hc_status st = HC_PASS;
  for (int j = 0; j < m->n_outputs; j++) {
    const char *oname = m->values[m->outputs[j]].name;
    dd_tensor *want;
    int type;
    snprintf(path, sizeof path, "%s/output_%d.pb", set_dir, j);
    rc = load_pb(path, &want, &type, &err);
    if (rc) return setf(reason, size, HC_FAIL, "%s", err.msg);
    if (!want) {
      /* the one skip not from our loader: an expected value of a type we cannot hold */
      size_t used = strlen(note);
      snprintf(note + used, note_size - used, "%soutput '%s' has element type %s, which dream "
               "does not hold", used ? "; " : "", oname, onnx_type_name(type));
      st = HC_SKIP;
      continue;
    }
    dd_tensor *ours = dd_plan_tensor(s->p, m->outputs[j]);
    char msg[600];
    double w = 0;
    int ok = ours ? compare(ours, want, &w, msg, sizeof msg) : 0;
    if (!ours) snprintf(msg, sizeof msg, "the plan did not compute it");
    dd_tensor_free(want);
    if (!ok) return setf(reason, size, HC_FAIL, "output '%s': %s", oname, msg);
    if (w > *worst) *worst = w;
  }
  return st;
}

/* Every test_data_set of the case with one binding policy. */
static hc_status run_sets(run_state *s, const char *case_dir, int const_rest, char *reason,
                          size_t size) {
  char path[1024], note[HC_REASON_MAX] = "";
  hc_status st = HC_PASS;
  double worst = 0;
  int sets = 0;
  for (;;) {
    struct stat sb;
    snprintf(path, sizeof path, "%s/test_data_set_%d", case_dir, sets);
    if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) break;
    sets++;
    hc_status r = run_set(s, path, const_rest, &worst, note, sizeof note, reason, size);
    run_state_clear(s);
    if (r == HC_FAIL) {
      char tmp[HC_REASON_MAX];
      snprintf(tmp, sizeof tmp, "%s", reason);
      snprintf(reason, size, "test_data_set_%d: %s", sets - 1, tmp);
      return HC_FAIL;
    }
    if (r == HC_SKIP) st = HC_SKIP;
    /* an unsupported plan is the same for every data set */
    if (r == HC_SKIP && !note[0]) return HC_SKIP;
  }
  if (!sets) return setf(reason, size, HC_FAIL, "%s: no test_data_set_0", case_dir);
  if (st == HC_SKIP) /* the outputs we hold were compared and agreed */
    return setf(reason, size, HC_SKIP, "%s (the other outputs match, worst |d|/tol %.3g)",
                note, worst);
  return setf(reason, size, HC_PASS, "worst |d|/tol %.3g", worst);
}

hc_status hc_run_case(const char *case_dir, char *reason, size_t size) {
  char path[1024];
  dd_err err = {0};
  run_state s = {0};
  snprintf(path, sizeof path, "%s/model.onnx", case_dir);
  int rc = dd_model_load(path, &s.m, &err);
  if (rc == DD_EUNSUPPORTED) return setf(reason, size, HC_SKIP, "%s", err.msg);
  if (rc) return setf(reason, size, HC_FAIL, "load: %s: %s", dd_errname(rc), err.msg);
  hc_status st = run_sets(&s, case_dir, 0, reason, size);
  /* The test graphs take an op's weights and bounds (Clip's min/max, Dropout's ratio) as
   * graph inputs; in real models they are initializers.  When an op refuses them at run time,
   * run again with every input after the first bound as a constant, as in a real model, and
   * say so; a wrong result is then still a failure. */
  if (st == HC_SKIP && s.m->n_inputs > 1) {
    char first[HC_REASON_MAX], again[HC_REASON_MAX];
    snprintf(first, sizeof first, "%s", reason);
    hc_status st2 = run_sets(&s, case_dir, 1, again, sizeof again);
    if (st2 != HC_SKIP) {
      st = st2;
      snprintf(reason, size, "%s; inputs after the first bound as constants (at run time: %s)",
               again, first);
    }
  }
  /* Ops whose output shape is made of input values (Range's start, limit and delta) need
   * every input at plan time; in real models these are constants too. */
  if (st == HC_SKIP && strstr(reason, "must be constant")) {
    char first[HC_REASON_MAX], again[HC_REASON_MAX];
    snprintf(first, sizeof first, "%s", reason);
    hc_status st2 = run_sets(&s, case_dir, 2, again, sizeof again);
    if (st2 != HC_SKIP) {
      st = st2;
      snprintf(reason, size, "%s; all inputs bound as constants (at run time: %s)", again, first);
    }
  }
  dd_model_free(s.m);
  return st;
}

void hc_report(const char *name, hc_status s, const char *reason) {
  const char *path = getenv("DREAM_CONFORMANCE_REPORT");
  if (!path || !*path) return;
  char line[HC_NAME_MAX + HC_REASON_MAX + 32];
  int n = snprintf(line, sizeof line, "%s\t%s\t", name, hc_status_name(s));
  for (const char *r = reason; *r && n < (int)sizeof line - 2; r++)
    line[n++] = *r == '\n' || *r == '\t' ? ' ' : *r;
  line[n++] = '\n';
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)n);
  (void)w;
  close(fd);
}
