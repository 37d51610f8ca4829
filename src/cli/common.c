/* What the subcommands share: opening a model from a preset, printing errors, input shapes,
 * memory defaults, classes. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dream/train.h"
#include "dream/infer.h"
#include "dream/dream.h"

void cli_model_opts_init(cli_model_opts *o) {
  memset(o, 0, sizeof *o);
  o->bgr = -1;
}


int cli_model_resolve(const cli_model_opts *o, dd_preset *p) {
  dd_err err;
  memset(p, 0, sizeof *p);
  if (dd_preset_resolve(o->model ? o->model : "googlenet", p, &err)) return cli_report(&err);
  /* The values were checked when the options were parsed. */
  if (o->mean) cli_parse_triple("--mean", o->mean, 0, p->pre.mean, &err);
  if (o->std) cli_parse_triple("--std", o->std, 1, p->pre.std, &err);
  if (o->bgr >= 0) p->pre.bgr = o->bgr;
  if (o->scale > 0) p->pre.scale = o->scale;
  return 0;
}

int cli_model_load(const cli_model_opts *o, dd_preset *p, cli_model *out) {
  memset(out, 0, sizeof *out);
  dd_err err;
  dd_model *m;
  if (dd_model_load(p->model_path, &m, &err)) {
    dd_preset_clear(p);
    return cli_report(&err);
  }
  char **labels = NULL;
  int n_labels = 0;
  if (p->labels_path[0] && dd_labels_load(p->labels_path, &labels, &n_labels, &err)) {
    dd_model_free(m);
    dd_preset_clear(p);
    return cli_report(&err);
  }
  if (!p->labels_path[0]) { /* the labels a model `dream train` wrote carries */
    int found = 0;
    dd_preproc pre;
    if (dd_train_read_meta(p->model_path, &found, &pre, NULL, &labels, &n_labels, &err)) {
      dd_model_free(m);
      dd_preset_clear(p);
      return cli_report(&err);
    }
    if (labels && !n_labels) {
      free(labels);
      labels = NULL;
    }
  }
  out->preset = *p; /* the strings move to out */
  memset(p, 0, sizeof *p);
  out->model = m;
  out->labels = labels;
  out->n_labels = n_labels;
  out->max_memory = o->max_memory ? o->max_memory : cli_default_max_memory();
  out->memory_given = o->max_memory != 0;
  return 0;
}

int cli_model_open_checked(const char *cmd, const cli_model_opts *o, cli_files *files,
                           cli_model *out) {
  dd_preset p;
  memset(out, 0, sizeof *out);
  if (cli_model_resolve(o, &p)) return 1;
  cli_files_in(files, p.model_path);
  cli_files_in(files, p.labels_path);
  int status = cli_files_check(cmd, files);
  if (status) {
    dd_preset_clear(&p);
    return status;
  }
  return cli_model_load(o, &p, out);
}

int cli_model_open(const cli_model_opts *o, cli_model *out) {
  dd_preset p;
  memset(out, 0, sizeof *out);
  return cli_model_resolve(o, &p) || cli_model_load(o, &p, out);
}

void cli_model_close(cli_model *m) {
  if (!m) return;
  dd_model_free(m->model);
  dd_labels_free(m->labels, m->n_labels);
  dd_preset_clear(&m->preset);
  memset(m, 0, sizeof *m);
}

int cli_report(const dd_err *err) {
  /* The library names no option; a memory limit is --max-memory's here. */
  const char *hint = err && err->code == DD_ELIMIT &&
                             (strstr(err->msg, "iB limit") || strstr(err->msg, "B limit"))
                         ? " (--max-memory: use a smaller image or raise --max-memory)"
                         : "";
  return cli_errorf("%s%s", err && err->msg[0] ? err->msg : "unknown error", hint);
}

/* Every message the CLI prints: "dream[ CMD]: [KIND]MESSAGE\n" on stderr. */
static void vmessage(const char *cmd, const char *kind, const char *fmt, va_list ap) {
  fprintf(stderr, "dream%s%s: %s", cmd ? " " : "", cmd ? cmd : "", kind);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

int cli_errorf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(NULL, "", fmt, ap);
  va_end(ap);
  return 1;
}

int cli_warnf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(NULL, "warning: ", fmt, ap);
  va_end(ap);
  return 0;
}

void cli_summary(const cli_common *c, const char *fmt, ...) {
  if (c->quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vmessage(NULL, "", fmt, ap);
  va_end(ap);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(cmd, "", fmt, ap);
  va_end(ap);
  fprintf(stderr, "Try 'dream %s --help'.\n", cmd);
  return 2;
}

int cli_getopt_error(const char *cmd, int c, char *const *argv) {
  const char *word = optind > 0 ? argv[optind - 1] : "?";
  if (c == ':') return cli_usage_error(cmd, "option '%s' needs a value", word);
  return cli_usage_error(cmd, "unknown option '%s'", word);
}

size_t cli_max_pixels(size_t max_memory) {
  size_t px = (max_memory ? max_memory : cli_default_max_memory()) / 64;
  return px < DD_IMAGE_MAX_PIXELS ? px : DD_IMAGE_MAX_PIXELS;
}

size_t cli_default_max_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return (size_t)1 << 31; /* unknown: a conservative 2 GiB */
  return (size_t)pages * (size_t)page / 2;
}

static int input_shape(const dd_model *m, int w, int h, int image_only, dd_shape *out) {
  int in = dd_model_input(m);
  if (in < 0) return cli_errorf("%s: the model has no data input", dd_model_name(m));
  dd_shape s = dd_model_input_shape(m);
  if (s.ndim < 0) { /* rank not declared: assume an image model */
    s.ndim = 4;
    for (int i = 0; i < 4; i++) s.d[i] = -1;
  }
  char sb[128];
  if (s.ndim != 4 || (s.d[1] >= 0 && s.d[1] != 3) || s.d[0] > 1) {
    if (image_only)
      return cli_errorf("%s: input '%s' is not an image (1x3xHxW): it is %s",
                        dd_model_name(m), dd_model_value_name(m, in),
                        dd_shape_str(&s, sb, sizeof sb));
    for (int i = 0; i < s.ndim; i++)
      if (s.d[i] < 0) s.d[i] = 1;
    *out = s;
    return 0;
  }
  s.d[0] = 1;
  s.d[1] = 3;
  int64_t want[2] = {h, w};
  for (int i = 0; i < 2; i++) {
    if (want[i] <= 0) {
      if (s.d[2 + i] < 0)
        return cli_errorf("%s: input '%s' has no fixed size; give one", dd_model_name(m),
                          dd_model_value_name(m, in));
      continue;
    }
    if (s.d[2 + i] >= 0 && s.d[2 + i] != want[i])
      return cli_errorf("%s: input '%s' takes %lldx%lld images only, not %dx%d", dd_model_name(m),
                        dd_model_value_name(m, in), (long long)s.d[3], (long long)s.d[2], w, h);
    s.d[2 + i] = want[i];
  }
  *out = s;
  return 0;
}

int cli_input_shape(const dd_model *m, int w, int h, dd_shape *out) {
  return input_shape(m, w, h, 1, out);
}

int cli_any_input_shape(const dd_model *m, int w, int h, dd_shape *out) {
  return input_shape(m, w, h, 0, out);
}

int cli_find_class(const cli_model *cm, const char *query, int *cls) {
  dd_err err;
  if (cm->labels)
    return dd_labels_find(cm->labels, cm->n_labels, query, cls, &err) ? cli_report(&err) : 0;
  char *end;
  long v = isdigit((unsigned char)query[0]) ? strtol(query, &end, 10) : -1;
  if (v < 0 || *end || v > 1000000)
    return cli_errorf("%s has no labels: give the class as an index", dd_model_name(cm->model));
  *cls = (int)v;
  return 0;
}

void cli_warn_shadowed(const dd_model *m, const char *name) {
  int av;
  if (dd_model_alias_shadowed(m, name, &av))
    cli_warnf("'%s' is the layer named %s; the alias %s (the Conv '%s') is shadowed by it", name,
              name, name, dd_model_value_name(m, av));
}

int cli_resolve(const dd_model *m, const char *name, int *value, dd_err *err) {
  int rc = dd_model_resolve(m, name, value, err);
  if (!rc) cli_warn_shadowed(m, name);
  return rc;
}

int cli_resolve_spec(const dd_model *m, const char *spec, dd_dream_layer *out, dd_err *err) {
  int rc = dd_dream_layer_resolve(m, spec, out, err);
  if (rc) return rc;
  char name[512];
  int ch;
  float w;
  if (!dd_dream_layer_spec(spec, name, sizeof name, &ch, &w, err)) cli_warn_shadowed(m, name);
  return DD_OK;
}

int cli_classify_session(const cli_model *cm, int w, int h, dd_infer **out) {
  const dd_model *m = cm->model;
  if (dd_model_num_outputs(m) < 1)
    return cli_errorf("%s: the model has no output", dd_model_name(m));
  dd_shape shape;
  if (cli_input_shape(m, w, h, &shape)) return 1;
  int outv = dd_model_output(m, 0);
  dd_err err;
  return dd_infer_new(m, &shape, &outv, 1, cm->max_memory, out, &err) ? cli_report(&err) : 0;
}

int cli_classify(const cli_model *cm, dd_infer *s, const struct dd_image *framed,
                 double **prob, int64_t *n) {
  dd_err err;
  dd_infer *own = NULL;
  if (!s && cli_classify_session(cm, framed->w, framed->h, &own)) return 1;
  if (!s) s = own;
  int status = 0;
  if (dd_infer_image(s, framed, &cm->preset.pre, &err)) {
    status = cli_report(&err);
  } else {
    const dd_tensor *y = dd_infer_output(s, 0);
    *n = dd_tensor_numel(y);
    *prob = malloc((size_t)(*n > 0 ? *n : 1) * sizeof **prob);
    if (!*prob) status = cli_errorf("out of memory");
    else dd_probabilities(dd_f32(y), *n, *prob);
  }
  dd_infer_free(own);
  return status;
}

void cli_top_k(const double *prob, int64_t n, int k, int *top) {
  for (int j = 0; j < k; j++) {
    top[j] = -1;
    for (int64_t i = 0; i < n; i++) {
      int taken = 0;
      for (int q = 0; q < j; q++) taken |= top[q] == i;
      if (!taken && (top[j] < 0 || prob[i] > prob[top[j]])) top[j] = (int)i;
    }
  }
}
