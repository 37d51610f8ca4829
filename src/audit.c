/* A classifier audited on a folder of labelled images (dream/audit.h).  The run classifies
 * and records each image; everything else in the report (accuracy, per class, confusions,
 * names) is computed from those records by summarize(), which the merge calls too: that is
 * what makes a merged report the unsharded one. */
#include "dream/audit.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dream/dataset.h"
#include "dream/infer.h"
#include "dream/preset.h"
#include "dream/train.h"
#include "util.h"

#define TOP5 5
#define MAX_REPORT ((size_t)1 << 30)
#define MAX_CSV ((size_t)256 << 20)

void dd_audit_opts_init(dd_audit_opts *o) {
  memset(o, 0, sizeof *o);
  o->framing = DD_FRAME_CROP;
  o->size = 224;
  o->top = 5;
  o->shard_index = o->shard_count = 1;
}

int dd_file_fnv1a64(const char *path, char hex[17], long long *bytes, dd_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return dd_fail(err, DD_EIO, "%s: %s", path, strerror(errno));
  uint64_t h = 0xcbf29ce484222325ULL;
  long long total = 0;
  unsigned char buf[1 << 16];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
    for (size_t i = 0; i < got; i++) h = (h ^ buf[i]) * 0x100000001b3ULL;
    total += (long long)got;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) return dd_fail(err, DD_EIO, "%s: read error", path);
  snprintf(hex, 17, "%016" PRIx64, h);
  if (bytes) *bytes = total;
  return DD_OK;
}

/* ---- labels ---- */

typedef struct labelset {
  char **names; /* from dd_labels_load, NULL without a labels file */
  int n;
  char **wnids; /* n entries, NULL where the line has none */
} labelset;

static void labelset_free(labelset *ls) {
  dd_labels_free(ls->names, ls->n);
  if (ls->wnids)
    for (int i = 0; i < ls->n; i++) free(ls->wnids[i]);
  free(ls->wnids);
  memset(ls, 0, sizeof *ls);
}

static int is_wnid(const char *s, size_t len) {
  if (len != 9 || s[0] != 'n') return 0;
  for (size_t i = 1; i < 9; i++)
    if (!isdigit((unsigned char)s[i])) return 0;
  return 1;
}

static int labelset_load(const char *path, const char *model_path, labelset *ls, dd_err *err) {
  memset(ls, 0, sizeof *ls);
  if ((!path || !path[0]) && model_path) { /* the labels a `dream train` model carries */
    int found = 0;
    dd_preproc pre;
    int rc = dd_train_read_meta(model_path, &found, &pre, NULL, &ls->names, &ls->n, err);
    if (rc) return rc;
    if (ls->names && !ls->n) {
      free(ls->names);
      ls->names = NULL;
    }
    return DD_OK;
  }
  if (!path || !path[0]) return DD_OK;
  int rc = dd_labels_load(path, &ls->names, &ls->n, err);
  if (rc) return rc;
  /* The wnids: dd_labels_load keeps the text after them; read the lines again. */
  void *buf;
  size_t len;
  rc = dd_read_file(path, MAX_CSV, &buf, &len, err);
  if (rc) {
    labelset_free(ls);
    return rc;
  }
  ls->wnids = calloc((size_t)(ls->n > 0 ? ls->n : 1), sizeof *ls->wnids);
  if (!ls->wnids) {
    free(buf);
    labelset_free(ls);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  const char *p = buf, *end = p + len;
  for (int i = 0; i < ls->n && p < end; i++) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *sp = p;
    while (sp < eol && *sp != ' ' && *sp != '\t') sp++;
    if (is_wnid(p, (size_t)(sp - p))) {
      ls->wnids[i] = malloc(10);
      if (ls->wnids[i]) memcpy(ls->wnids[i], p, 9), ls->wnids[i][9] = 0;
    }
    p = eol + 1;
  }
  free(buf);
  return DD_OK;
}

/* A class named by a folder or a CSV field: a wnid, else dd_labels_find's rule, else (no
 * labels file) an index. */
static int labelset_find(const labelset *ls, int n_classes, const char *q, int *cls,
                         dd_err *err) {
  if (ls->wnids)
    for (int i = 0; i < ls->n; i++)
      if (ls->wnids[i] && !strcmp(ls->wnids[i], q)) {
        *cls = i;
        return DD_OK;
      }
  if (ls->names) return dd_labels_find(ls->names, ls->n, q, cls, err);
  char *e;
  errno = 0;
  long v = isdigit((unsigned char)q[0]) ? strtol(q, &e, 10) : -1;
  if (v < 0 || *e || errno || v >= n_classes)
    return dd_fail(err, DD_ENOTFOUND,
                   "'%s' is not a class index (0..%d), and the model has no labels file", q,
                   n_classes - 1);
  *cls = (int)v;
  return DD_OK;
}

/* ---- CSV (path,label) ---- */

/* One field at *p (quoted with "" escapes, or up to ',' or the end of the line) into a new
 * string; *p moves past it. */
static char *csv_field(const char **p, const char *eol, int *bad) {
  const char *s = *p;
  size_t cap = (size_t)(eol - s) + 1, n = 0;
  char *out = malloc(cap);
  if (!out) return NULL;
  if (s < eol && *s == '"') {
    s++;
    for (;;) {
      if (s >= eol) {
        *bad = 1;
        break;
      }
      if (*s == '"') {
        if (s + 1 < eol && s[1] == '"') {
          out[n++] = '"';
          s += 2;
          continue;
        }
        s++;
        break;
      }
      out[n++] = *s++;
    }
    if (s < eol && *s != ',') *bad = 1;
  } else {
    while (s < eol && *s != ',') out[n++] = *s++;
  }
  out[n] = 0;
  *p = s;
  return out;
}

static int find_rel(const dd_dataset *ds, const char *rel) {
  int lo = 0, hi = ds->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(ds->rel[mid], rel);
    if (!c) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

static int labels_from_csv(const char *csv, const dd_dataset *ds, const labelset *ls,
                           int n_classes, int *label, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(csv, MAX_CSV, &buf, &len, err);
  if (rc) return rc;
  const char *p = buf, *end = p + len;
  for (int line = 1; !rc && p < end; line++) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *next = eol ? eol + 1 : end;
    if (!eol) eol = end;
    if (eol > p && eol[-1] == '\r') eol--;
    if (eol == p) {
      p = next;
      continue;
    }
    int bad = 0;
    const char *q = p;
    char *path = csv_field(&q, eol, &bad), *name = NULL;
    if (path && !bad && q < eol && *q == ',') {
      q++;
      name = csv_field(&q, eol, &bad);
      if (q != eol) bad = 1;
    } else {
      bad = 1;
    }
    if (!path || (!bad && !name)) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
    } else if (bad) {
      rc = dd_fail(err, DD_EFORMAT, "%s:%d: expected path,label", csv, line);
    } else if (line == 1 && !strcmp(path, "path") && !strcmp(name, "label")) {
      /* the header */
    } else {
      int i = find_rel(ds, path), cls;
      if (i < 0) {
        rc = dd_fail(err, DD_ENOTFOUND, "%s:%d: '%s' is not an image of %s", csv, line, path,
                     ds->root);
      } else if ((rc = labelset_find(ls, n_classes, name, &cls, err))) {
        dd_err_prefix(err, "%s:%d", csv, line);
      } else if (label[i] >= 0 && label[i] != cls) {
        rc = dd_fail(err, DD_EFORMAT, "%s:%d: '%s' is labelled twice, differently", csv, line,
                     path);
      } else {
        label[i] = cls;
      }
    }
    free(path);
    free(name);
    p = next;
  }
  free(buf);
  return rc;
}

/* Labels from the first folder of each path; each folder is looked up once. */
static int labels_from_folders(const dd_dataset *ds, const labelset *ls, int n_classes,
                               int *label, dd_err *err) {
  const char *last = NULL;
  size_t last_len = 0;
  int last_cls = -1;
  for (int i = 0; i < ds->n; i++) {
    const char *slash = strchr(ds->rel[i], '/');
    if (!slash) continue; /* directly in DIR: unlabelled */
    size_t len = (size_t)(slash - ds->rel[i]);
    if (!last || len != last_len || memcmp(last, ds->rel[i], len)) {
      char *folder = malloc(len + 1);
      if (!folder) return dd_fail(err, DD_ENOMEM, "out of memory");
      memcpy(folder, ds->rel[i], len);
      folder[len] = 0;
      int rc = labelset_find(ls, n_classes, folder, &last_cls, err);
      if (rc) dd_err_prefix(err, "%s/%s: the folder names no class", ds->root, folder);
      free(folder);
      if (rc) return rc;
      last = ds->rel[i];
      last_len = len;
    }
    label[i] = last_cls;
  }
  return DD_OK;
}

/* ---- the summary, computed from the records alone ---- */

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

typedef struct confusion {
  int t, p, count;
} confusion;

static int cmp_confusion(const void *a, const void *b) {
  const confusion *x = a, *y = b;
  if (x->count != y->count) return y->count - x->count;
  if (x->t != y->t) return x->t - y->t;
  return x->p - y->p;
}

static int cmp_confusion_key(const void *a, const void *b) {
  const confusion *x = a, *y = b;
  if (x->t != y->t) return x->t - y->t;
  return x->p - y->p;
}

static int int_of(const json_t *o, const char *key, int def) {
  const json_t *v = json_object_get(o, key);
  return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static void summarize_layers(json_t *r);
static int perturb_kind(const char *name, size_t len);
static int summarize_perturb(json_t *r, dd_err *err);

/* Sets accuracy, classes, confusions and names on `r` from its images.  `lookup` maps class
 * indices (as strings) to label text; NULL or missing entries give no name. */
static int summarize(json_t *r, const json_t *lookup, dd_err *err) {
  json_t *images = json_object_get(r, "images");
  size_t n = json_array_size(images);
  int *label = malloc((n ? n : 1) * sizeof *label), *rank = malloc((n ? n : 1) * sizeof *rank);
  int *pred = malloc((n ? n : 1) * sizeof *pred);
  int *mention = malloc((n * (TOP5 + 1 + DD_PERTURB_COUNT * DD_PERTURB_LEVELS) + 1) *
                       sizeof *mention);
  confusion *conf = malloc((n ? n : 1) * sizeof *conf);
  int rc = DD_OK;
  if (!label || !rank || !pred || !mention || !conf) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  int k = int_of(json_object_get(r, "options"), "top", 5);
  size_t n_mention = 0, n_conf = 0;
  int labelled = 0, hit1 = 0, hit5 = 0, hitk = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *im = json_array_get(images, i), *top = json_object_get(im, "top5");
    label[i] = int_of(im, "label", -1);
    rank[i] = int_of(im, "rank", 0);
    pred[i] = int_of(json_array_get(top, 0), "class", -1);
    for (size_t j = 0; j < json_array_size(top) && j < TOP5; j++)
      mention[n_mention++] = int_of(json_array_get(top, j), "class", -1);
    const char *kind;
    json_t *levels;
    json_object_foreach((json_t *)json_object_get(im, "perturbed"), kind, levels) {
      if (perturb_kind(kind, strlen(kind)) < 0) continue;
      for (size_t j = 0; j < json_array_size(levels) && j < DD_PERTURB_LEVELS; j++)
        if (json_is_integer(json_array_get(levels, j)))
          mention[n_mention++] = (int)json_integer_value(json_array_get(levels, j));
    }
    if (label[i] < 0) continue;
    mention[n_mention++] = label[i];
    labelled++;
    hit1 += rank[i] == 1;
    hit5 += rank[i] >= 1 && rank[i] <= 5;
    hitk += rank[i] >= 1 && rank[i] <= k;
    if (rank[i] != 1) conf[n_conf++] = (confusion){label[i], pred[i], 1};
  }
  json_t *acc = json_null();
  if (labelled)
    acc = json_pack("{s:i, s:f, s:f, s:i, s:f}", "labelled", labelled, "top1",
                    (double)hit1 / labelled, "top5", (double)hit5 / labelled, "k", k, "topk",
                    (double)hitk / labelled);

  /* per class, in class order */
  json_t *classes = json_array();
  int *order = malloc((n ? n : 1) * sizeof *order);
  size_t n_lab = 0;
  if (!order) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    json_decref(acc);
    json_decref(classes);
    goto done;
  }
  for (size_t i = 0; i < n; i++)
    if (label[i] >= 0) order[n_lab++] = label[i];
  qsort(order, n_lab, sizeof *order, cmp_int);
  for (size_t a = 0; a < n_lab;) {
    size_t b = a;
    while (b < n_lab && order[b] == order[a]) b++;
    int c = order[a], cn = 0, c1 = 0, c5 = 0;
    for (size_t i = 0; i < n; i++)
      if (label[i] == c) {
        cn++;
        c1 += rank[i] == 1;
        c5 += rank[i] >= 1 && rank[i] <= 5;
      }
    char key[24];
    snprintf(key, sizeof key, "%d", c);
    const json_t *name = lookup ? json_object_get(lookup, key) : NULL;
    json_array_append_new(classes,
                          json_pack("{s:i, s:O, s:i, s:f, s:f}", "class", c, "name",
                                    name ? name : json_null(), "images", cn,
                                    "top1", (double)c1 / cn, "top5", (double)c5 / cn));
    a = b;
  }
  free(order);

  /* confusions: (true, predicted) pairs counted, most frequent first */
  qsort(conf, n_conf, sizeof *conf, cmp_confusion_key);
  size_t m = 0;
  for (size_t i = 0; i < n_conf; i++) {
    if (m && conf[m - 1].t == conf[i].t && conf[m - 1].p == conf[i].p) conf[m - 1].count++;
    else conf[m++] = conf[i];
  }
  qsort(conf, m, sizeof *conf, cmp_confusion);
  json_t *confs = json_array();
  for (size_t i = 0; i < m && i < DD_AUDIT_MAX_CONFUSIONS; i++)
    json_array_append_new(confs, json_pack("{s:i, s:i, s:i}", "true", conf[i].t, "predicted",
                                           conf[i].p, "count", conf[i].count));

  /* names of every class mentioned, in class order */
  qsort(mention, n_mention, sizeof *mention, cmp_int);
  json_t *names = json_object();
  for (size_t i = 0; i < n_mention; i++) {
    if (mention[i] < 0 || (i && mention[i] == mention[i - 1])) continue;
    char key[24];
    snprintf(key, sizeof key, "%d", mention[i]);
    const json_t *name = lookup ? json_object_get(lookup, key) : NULL;
    if (name) json_object_set(names, key, (json_t *)name);
  }
  json_object_set_new(r, "accuracy", acc ? acc : json_null());
  json_object_set_new(r, "classes", classes);
  json_object_set_new(r, "confusions", confs);
  json_object_set_new(r, "names", names);
  summarize_layers(r);
  rc = summarize_perturb(r, err);
done:
  free(label);
  free(rank);
  free(pred);
  free(mention);
  free(conf);
  return rc;
}

/* ---- units of chosen layers ---- */

typedef struct example {
  float value;
  int image; /* listing position */
  int x, y;  /* feature-map cell of the maximum */
} example;

typedef struct units {
  int value, c, h, w, k;
  int images;
  long long *positive; /* c */
  int *active;         /* c */
  example *ex;         /* c x k, best first */
  int *n_ex;           /* c */
} units;

static void units_free(units *u) {
  free(u->positive);
  free(u->active);
  free(u->ex);
  free(u->n_ex);
}

static int units_init(units *u, int value, const dd_tensor *t, int k, const char *name,
                      dd_err *err) {
  memset(u, 0, sizeof *u);
  const dd_shape *sh = &t->shape;
  if (sh->ndim != 4 || sh->d[0] != 1 || sh->d[1] < 1 || sh->d[2] < 1 || sh->d[3] < 1)
    return dd_fail(err, DD_ESHAPE, "layer '%s' is not 1 x C x H x W: its units cannot be "
                   "audited", name);
  u->value = value;
  u->c = (int)sh->d[1];
  u->h = (int)sh->d[2];
  u->w = (int)sh->d[3];
  u->k = k;
  size_t c = (size_t)u->c;
  u->positive = calloc(c, sizeof *u->positive);
  u->active = calloc(c, sizeof *u->active);
  u->ex = calloc(c * (size_t)k, sizeof *u->ex);
  u->n_ex = calloc(c, sizeof *u->n_ex);
  if (!u->positive || !u->active || !u->ex || !u->n_ex) {
    units_free(u);
    return dd_fail(err, DD_ENOMEM, "out of memory for the units of '%s'", name);
  }
  return DD_OK;
}

/* Keeps the k best, by value, then by listing position (images come in listing order, so
 * an equal value never displaces an earlier image). */
static void keep_example(example *ex, int *n, int k, example e) {
  int at = *n;
  while (at > 0 && ex[at - 1].value < e.value) at--;
  if (at >= k) return;
  int last = *n < k ? *n : k - 1;
  memmove(ex + at + 1, ex + at, (size_t)(last - at) * sizeof *ex);
  ex[at] = e;
  if (*n < k) (*n)++;
}

static void units_add(units *u, const dd_tensor *t, int image) {
  const float *a = dd_f32(t);
  size_t hw = (size_t)u->h * u->w;
  u->images++;
  for (int c = 0; c < u->c; c++) {
    const float *p = a + (size_t)c * hw;
    size_t best = 0;
    long long pos = 0;
    for (size_t i = 0; i < hw; i++) {
      pos += p[i] > 0;
      if (p[i] > p[best]) best = i;
    }
    u->positive[c] += pos;
    u->active[c] += pos > 0;
    keep_example(u->ex + (size_t)c * u->k, &u->n_ex[c], u->k,
                 (example){p[best], image, (int)(best % u->w), (int)(best / u->w)});
  }
}

/* The box of cell (x, y) of an h x w map in the framed size x size image. */
static json_t *cell_box(int x, int y, int w, int h, int size) {
  int x0 = (int)((long long)x * size / w), x1 = (int)(((long long)x + 1) * size / w);
  int y0 = (int)((long long)y * size / h), y1 = (int)(((long long)y + 1) * size / h);
  return json_pack("[i,i,i,i]", x0, y0, x1 - x0 > 0 ? x1 - x0 : 1, y1 - y0 > 0 ? y1 - y0 : 1);
}

/* The layer's record as the run and the merge both build it (dead and rare: summarize). */
static json_t *layer_json(const char *name, int c, int h, int w, int images, json_t *positive,
                          json_t *active, json_t *examples) {
  return json_pack("{s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:o}", "name", name, "channels", c,
                   "height", h, "width", w, "images", images, "positive", positive,
                   "active_images", active, "examples", examples);
}

static json_t *units_json(const units *u, const dd_model *m, const dd_dataset *ds, int size) {
  json_t *pos = json_array(), *act = json_array(), *exs = json_array();
  for (int c = 0; c < u->c; c++) {
    json_array_append_new(pos, json_integer(u->positive[c]));
    json_array_append_new(act, json_integer(u->active[c]));
    json_t *list = json_array();
    for (int j = 0; j < u->n_ex[c]; j++) {
      const example *e = u->ex + (size_t)c * u->k + j;
      json_array_append_new(list, json_pack("{s:s, s:f, s:o}", "path", ds->rel[e->image],
                                            "value", (double)e->value, "box",
                                            cell_box(e->x, e->y, u->w, u->h, size)));
    }
    json_array_append_new(exs, list);
  }
  return layer_json(dd_model_value_name(m, u->value), u->c, u->h, u->w, u->images, pos, act,
                    exs);
}

/* dead and rare of each layer, from its sums. */
static void summarize_layers(json_t *r) {
  json_t *layers = json_object_get(r, "layers");
  for (size_t l = 0; l < json_array_size(layers); l++) {
    json_t *L = json_array_get(layers, l);
    const json_t *pos = json_object_get(L, "positive");
    double total = (double)int_of(L, "images", 0) * int_of(L, "height", 0) *
                   int_of(L, "width", 0);
    json_t *dead = json_array(), *rare = json_array();
    for (size_t c = 0; c < json_array_size(pos); c++) {
      json_int_t p = json_integer_value(json_array_get(pos, c));
      if (p == 0) json_array_append_new(dead, json_integer((json_int_t)c));
      else if (total > 0 && (double)p < DD_AUDIT_RARE * total)
        json_array_append_new(rare, json_integer((json_int_t)c));
    }
    json_object_set_new(L, "dead", dead);
    json_object_set_new(L, "rare", rare);
  }
}

/* ---- the perturbation sweep ---- */

static const char *const perturb_names[DD_PERTURB_COUNT] = {
    "blur", "noise", "brightness", "contrast", "rotation", "occlusion", "framing"};
static const double perturb_levels[DD_PERTURB_FRAMING][DD_PERTURB_LEVELS] = {
    {1, 2, 3, 4, 6},           {8, 16, 32, 48, 64},       {0.8, 0.6, 0.4, 0.25, 0.1},
    {0.8, 0.6, 0.4, 0.25, 0.1}, {5, 10, 20, 30, 45},      {0.1, 0.2, 0.3, 0.4, 0.5}};

const char *dd_perturb_name(int kind) {
  return kind >= 0 && kind < DD_PERTURB_COUNT ? perturb_names[kind] : NULL;
}

static int perturb_kind(const char *name, size_t len) {
  for (int k = 0; k < DD_PERTURB_COUNT; k++)
    if (strlen(perturb_names[k]) == len && !strncmp(perturb_names[k], name, len)) return k;
  return -1;
}

int dd_perturb_parse(const char *list, unsigned *bits, dd_err *err) {
  if (!strcmp(list, "all")) {
    *bits = (1u << DD_PERTURB_COUNT) - 1;
    return DD_OK;
  }
  unsigned b = 0;
  const char *p = list;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    int k = perturb_kind(p, len);
    if (k < 0)
      return dd_fail(err, DD_EARG, "'%.*s' is not a perturbation: blur, noise, brightness, "
                     "contrast, rotation, occlusion, framing or all", (int)len, p);
    b |= 1u << k;
    if (!comma) break;
    p = comma + 1;
  }
  *bits = b;
  return DD_OK;
}

static int n_levels(int kind) { return kind == DD_PERTURB_FRAMING ? 1 : DD_PERTURB_LEVELS; }

static float clamp255(float v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

static void blur(dd_image *im, double sigma, float *tmp) {
  int r = (int)(3 * sigma + 0.999), w = im->w, h = im->h;
  float k[64];
  if (r > 31) r = 31;
  double sum = 0;
  for (int i = -r; i <= r; i++) sum += k[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
  for (int i = 0; i <= 2 * r; i++) k[i] = (float)(k[i] / sum);
  for (int pass = 0; pass < 2; pass++) {
    const float *src = pass ? tmp : im->rgb;
    float *dst = pass ? im->rgb : tmp;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++) {
          float acc = 0;
          for (int i = -r; i <= r; i++) {
            int xx = pass ? x : x + i, yy = pass ? y + i : y;
            xx = xx < 0 ? 0 : xx >= w ? w - 1 : xx;
            yy = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
            acc += k[i + r] * src[((size_t)yy * w + xx) * 3 + c];
          }
          dst[((size_t)y * w + x) * 3 + c] = acc;
        }
  }
}

static void rotate(dd_image *im, double deg, const float *src) {
  int w = im->w, h = im->h;
  double a = deg * 3.14159265358979323846 / 180, ca = cos(a), sa = sin(a);
  double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double u = ca * (x - cx) + sa * (y - cy) + cx, v = -sa * (x - cx) + ca * (y - cy) + cy;
      int x0 = (int)floor(u), y0 = (int)floor(v);
      double fx = u - x0, fy = v - y0;
      for (int c = 0; c < 3; c++) {
        double acc = 0;
        for (int j = 0; j < 2; j++)
          for (int i = 0; i < 2; i++) {
            int xx = x0 + i, yy = y0 + j;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            acc += (i ? fx : 1 - fx) * (j ? fy : 1 - fy) * src[((size_t)yy * w + xx) * 3 + c];
          }
        im->rgb[((size_t)y * w + x) * 3 + c] = (float)acc;
      }
    }
}

/* Level `lv` of `kind` applied to the framed image (framing: the photo framed the other
 * way), into a new image. */
static int perturbed(int kind, int lv, const dd_image *photo, const dd_image *framed,
                     const dd_audit_opts *o, uint64_t seed, dd_image **out, dd_err *err) {
  if (kind == DD_PERTURB_FRAMING)
    return dd_image_frame(photo, o->framing == DD_FRAME_CROP ? DD_FRAME_SQUASH : DD_FRAME_CROP,
                          o->size, o->size, out, NULL, err);
  dd_image *im;
  int rc = dd_image_new(framed->w, framed->h, &im, err);
  if (rc) return rc;
  size_t n = (size_t)framed->w * framed->h * 3;
  float *px = im->rgb, *tmp = NULL;
  memcpy(px, framed->rgb, n * sizeof *px);
  double v = perturb_levels[kind][lv];
  if (kind == DD_PERTURB_BLUR || kind == DD_PERTURB_ROTATION) {
    tmp = malloc(n * sizeof *tmp);
    if (!tmp) {
      dd_image_free(im);
      return dd_fail(err, DD_ENOMEM, "out of memory");
    }
    if (kind == DD_PERTURB_ROTATION) memcpy(tmp, px, n * sizeof *tmp);
  }
  uint64_t s = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(lv + 1));
  switch (kind) {
    case DD_PERTURB_BLUR: blur(im, v, tmp); break;
    case DD_PERTURB_NOISE:
      for (size_t i = 0; i < n; i++) px[i] = clamp255(px[i] + (float)v * dd_rng_normal(&s));
      break;
    case DD_PERTURB_BRIGHTNESS:
      for (size_t i = 0; i < n; i++) px[i] = px[i] * (float)v;
      break;
    case DD_PERTURB_CONTRAST:
      for (size_t i = 0; i < n; i++) px[i] = (px[i] - 128) * (float)v + 128;
      break;
    case DD_PERTURB_ROTATION: rotate(im, v, tmp); break;
    case DD_PERTURB_OCCLUSION: {
      int side = (int)(v * (im->w < im->h ? im->w : im->h) + 0.5);
      int x0 = (im->w - side) / 2, y0 = (im->h - side) / 2;
      for (int y = y0; y < y0 + side; y++)
        for (int x = x0; x < x0 + side; x++)
          for (int c = 0; c < 3; c++) px[((size_t)y * im->w + x) * 3 + c] = 128;
      break;
    }
  }
  free(tmp);
  *out = im;
  return DD_OK;
}

static int cmp_flip(const void *a, const void *b) {
  const int *x = a, *y = b; /* level, image */
  return x[0] != y[0] ? x[0] - y[0] : x[1] - y[1];
}

/* perturbation, from the images' `perturbed` records. */
static int summarize_perturb(json_t *r, dd_err *err) {
  const json_t *opts = json_object_get(r, "options"), *kinds = json_object_get(opts, "perturb");
  if (!json_array_size(kinds)) return DD_OK;
  const json_t *images = json_object_get(r, "images");
  size_t n = json_array_size(images);
  int *flips = malloc((n ? n : 1) * 2 * sizeof *flips);
  if (!flips) return dd_fail(err, DD_ENOMEM, "out of memory");
  json_t *out = json_array();
  const char *framing = json_string_value(json_object_get(opts, "framing"));
  for (size_t q = 0; q < json_array_size(kinds); q++) {
    const char *name = json_string_value(json_array_get(kinds, q));
    int kind = name ? perturb_kind(name, strlen(name)) : -1;
    if (kind < 0) continue;
    int nl = n_levels(kind);
    json_t *levels = json_array(), *acc = json_array(), *flipped = json_array();
    for (int lv = 0; lv < nl; lv++) {
      if (kind == DD_PERTURB_FRAMING)
        json_array_append_new(levels, json_string(framing && !strcmp(framing, "crop") ? "squash"
                                                                                      : "crop"));
      else
        json_array_append_new(levels, json_real(perturb_levels[kind][lv]));
      int labelled = 0, hit = 0, flip = 0;
      for (size_t i = 0; i < n; i++) {
        const json_t *im = json_array_get(images, i);
        const json_t *cv = json_array_get(
            json_object_get(json_object_get(im, "perturbed"), name), (size_t)lv);
        int c = json_is_integer(cv) ? (int)json_integer_value(cv) : -1;
        int label = int_of(im, "label", -1);
        int clean = int_of(json_array_get(json_object_get(im, "top5"), 0), "class", -1);
        if (label >= 0) labelled++, hit += c == label;
        flip += c != clean;
      }
      json_array_append_new(acc, labelled ? json_real((double)hit / labelled) : json_null());
      json_array_append_new(flipped, json_real(n ? (double)flip / (double)n : 0));
    }
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
      const json_t *im = json_array_get(images, i);
      const json_t *pv = json_object_get(json_object_get(im, "perturbed"), name);
      int clean = int_of(json_array_get(json_object_get(im, "top5"), 0), "class", -1);
      for (int lv = 0; lv < nl; lv++) {
        const json_t *cv = json_array_get(pv, (size_t)lv);
        if (json_is_integer(cv) && json_integer_value(cv) != clean) {
          flips[2 * nf] = lv;
          flips[2 * nf + 1] = (int)i;
          nf++;
          break;
        }
      }
    }
    qsort(flips, nf, 2 * sizeof *flips, cmp_flip);
    json_t *first = json_array();
    for (size_t f = 0; f < nf && f < 20; f++) {
      const json_t *im = json_array_get(images, (size_t)flips[2 * f + 1]);
      int lv = flips[2 * f];
      json_array_append_new(
          first, json_pack("{s:O, s:O, s:i, s:O}", "path", json_object_get(im, "path"), "level",
                           json_array_get(levels, (size_t)lv), "from",
                           int_of(json_array_get(json_object_get(im, "top5"), 0), "class", -1),
                           "to", json_array_get(json_object_get(json_object_get(im, "perturbed"),
                                                                name), (size_t)lv)));
    }
    json_array_append_new(out, json_pack("{s:s, s:o, s:o, s:o, s:o}", "kind", name, "levels",
                                         levels, "accuracy", acc, "flipped", flipped,
                                         "first_flips", first));
  }
  free(flips);
  json_object_set_new(r, "perturbation", out);
  return DD_OK;
}

/* ---- the run ---- */

/* 1-based rank of class c: the classes before it have a higher probability, or the same
 * and a lower index (the order of the top-k lists). */
static int rank_of(const double *prob, int64_t n, int c) {
  int r = 1;
  for (int64_t i = 0; i < n; i++)
    if (prob[i] > prob[c] || (prob[i] == prob[c] && i < c)) r++;
  return r;
}

static void top_k(const double *prob, int64_t n, int k, int *top) {
  for (int j = 0; j < k; j++) {
    top[j] = -1;
    for (int64_t i = 0; i < n; i++) {
      int taken = 0;
      for (int q = 0; q < j; q++) taken |= top[q] == i;
      if (!taken && (top[j] < 0 || prob[i] > prob[top[j]])) top[j] = (int)i;
    }
  }
}

/* `s` with each byte that is not part of valid UTF-8 written \xNN (malloc'ed). */
static char *escaped(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * n + 1), *o = out;
  if (!out) return NULL;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
    int ok = len > 0;
    for (int k = 1; ok && k < len; k++) ok = (p[k] & 0xc0) == 0x80;
    if (ok && len > 1) { /* overlong forms and surrogates: let jansson decide */
      char tmp[5] = {0};
      memcpy(tmp, p, (size_t)len);
      json_t *t = json_string(tmp);
      ok = t != NULL;
      json_decref(t);
    }
    if (ok) {
      memcpy(o, p, (size_t)len);
      o += len;
      p += len;
    } else {
      o += sprintf(o, "\\x%02x", *p);
      p++;
    }
  }
  *o = 0;
  return out;
}

static json_t *header(const dd_model *m, const char *model_path, const dd_preproc *pp,
                      const char *csv, const dd_dataset *ds, const dd_audit_opts *o,
                      dd_err *err) {
  char hex[17], ldig[17], csvhex[17];
  long long bytes;
  if (dd_file_fnv1a64(model_path, hex, &bytes, err)) return NULL;
  if (csv && dd_file_fnv1a64(csv, csvhex, NULL, err)) return NULL;
  dd_dataset_digest(ds, ldig);
  const char *base = strrchr(model_path, '/');
  base = base ? base + 1 : model_path;
  json_t *pre = json_pack("{s:b, s:f, s:[f,f,f], s:[f,f,f]}", "bgr", pp->bgr, "scale",
                          (double)pp->scale, "mean", (double)pp->mean[0],
                          (double)pp->mean[1], (double)pp->mean[2], "std",
                          (double)pp->std[0], (double)pp->std[1], (double)pp->std[2]);
  json_t *r = json_pack(
      "{s:s, s:{s:s, s:I, s:s}, s:{s:s, s:[i,i], s:i, s:s, s:s?, s:o}, s:{s:i, s:s}}",
      "format", DD_AUDIT_FORMAT, "model", "name", base, "bytes", (json_int_t)bytes, "fnv1a64",
      hex, "options", "framing", dd_framing_name(o->framing), "size", o->size, o->size, "top",
      o->top, "labels", csv ? "csv" : "folders", "labels_fnv1a64", csv ? csvhex : NULL,
      "preprocessing", pre, "listing", "images", ds->n, "digest", ldig);
  if (!r) {
    dd_fail(err, DD_ENOMEM, "out of memory (report header)");
    return NULL;
  }
  json_t *names = json_array();
  for (int l = 0; l < o->n_layers; l++)
    json_array_append_new(names, json_string(dd_model_value_name(m, o->layers[l])));
  json_object_set_new(json_object_get(r, "options"), "layers", names);
  if (o->perturb) {
    json_t *kinds = json_array();
    for (int k = 0; k < DD_PERTURB_COUNT; k++)
      if (o->perturb & (1u << k)) json_array_append_new(kinds, json_string(perturb_names[k]));
    json_object_set_new(json_object_get(r, "options"), "perturb", kinds);
    json_object_set_new(json_object_get(r, "options"), "seed", json_integer((json_int_t)o->seed));
  }
  if (o->shard_count > 1)
    json_object_set_new(r, "shard",
                        json_pack("{s:i, s:i}", "index", o->shard_index, "count", o->shard_count));
  else
    json_object_set_new(r, "shard", json_null());
  return r;
}

static int check_opts(const dd_audit_opts *o, dd_err *err) {
  if (o->framing != DD_FRAME_CROP && o->framing != DD_FRAME_SQUASH)
    return dd_fail(err, DD_EUNSUPPORTED,
                   "audit frames every photo to one size: framing %s is not supported (crop or "
                   "squash)", dd_framing_name(o->framing));
  if (o->size < 16 || o->size > 4096)
    return dd_fail(err, DD_EARG, "size %d is not in 16..4096", o->size);
  if (o->top < 1 || o->top > 1000) return dd_fail(err, DD_EARG, "top %d is not in 1..1000", o->top);
  if (o->perturb >> DD_PERTURB_COUNT)
    return dd_fail(err, DD_EARG, "unknown perturbation bits 0x%x", o->perturb);
  if (o->n_layers < 0 || o->n_layers > DD_AUDIT_MAX_LAYERS || (o->n_layers && !o->layers))
    return dd_fail(err, DD_EARG, "%d layers: at most %d", o->n_layers, DD_AUDIT_MAX_LAYERS);
  if (o->shard_count < 1 || o->shard_index < 1 || o->shard_index > o->shard_count)
    return dd_fail(err, DD_EARG, "shard %d/%d: expected 1 <= I <= N", o->shard_index,
                   o->shard_count);
  return DD_OK;
}

int dd_audit_run(const dd_model *m, const char *model_path, const dd_preproc *pp,
                 const char *labels_path, const char *dir, const dd_audit_opts *o,
                 json_t **report, dd_err *err) {
  int rc = check_opts(o, err);
  if (rc) return rc;
  dd_dataset ds;
  rc = dd_dataset_list(dir, o->max_files, &ds, err);
  if (rc) return rc;
  if (ds.n == 0) {
    dd_dataset_free(&ds);
    return dd_fail(err, DD_EARG, "%s: no images (looked for %s files, in subfolders too)", dir,
                   dd_image_formats);
  }
  labelset ls;
  units u[DD_AUDIT_MAX_LAYERS];
  int n_units = 0;
  dd_infer *s = NULL;
  int *label = NULL;
  double *prob = NULL;
  json_t *r = NULL, *images = json_array(), *errors = json_array(), *lookup = json_object();
  rc = labelset_load(labels_path, model_path, &ls, err);
  if (rc) goto fail_early;

  int outv = dd_model_output(m, 0);
  if (dd_model_num_outputs(m) < 1) {
    rc = dd_fail(err, DD_EARG, "%s: the model has no output", dd_model_name(m));
    goto fail;
  }
  dd_shape shape = {4, {1, 3, o->size, o->size}};
  int targets[1 + DD_AUDIT_MAX_LAYERS];
  targets[0] = outv;
  for (int l = 0; l < o->n_layers; l++) targets[1 + l] = o->layers[l];
  rc = dd_infer_new(m, &shape, targets, 1 + o->n_layers, o->max_memory, &s, err);
  if (rc) goto fail;
  for (int l = 0; l < o->n_layers && !rc; l++) {
    rc = units_init(&u[l], o->layers[l], dd_infer_output(s, 1 + l), o->top,
                    dd_model_value_name(m, o->layers[l]), err);
    if (!rc) n_units++;
  }
  if (rc) goto fail;
  int64_t n_classes = dd_tensor_numel(dd_infer_output(s, 0));
  if (n_classes < 2 || n_classes > 1000000) {
    rc = dd_fail(err, DD_ESHAPE, "%s: %lld outputs are not the classes of a classifier",
                 dd_model_name(m), (long long)n_classes);
    goto fail;
  }
  label = malloc((size_t)ds.n * sizeof *label);
  prob = malloc((size_t)n_classes * sizeof *prob);
  if (!label || !prob || !images || !errors || !lookup) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < ds.n; i++) label[i] = -1;
  rc = o->labels_csv ? labels_from_csv(o->labels_csv, &ds, &ls, (int)n_classes, label, err)
                     : labels_from_folders(&ds, &ls, (int)n_classes, label, err);
  if (rc) goto fail;
  r = header(m, model_path, pp, o->labels_csv, &ds, o, err);
  if (!r) {
    rc = err ? err->code : DD_ENOMEM;
    goto fail;
  }
  for (int i = 0; i < ls.n && i < n_classes; i++) {
    char key[24];
    snprintf(key, sizeof key, "%d", i);
    json_object_set_new(lookup, key, json_string(ls.names[i]));
  }

  size_t max_px = o->max_pixels ? o->max_pixels : DD_IMAGE_MAX_PIXELS;
  int total = 0, done = 0;
  for (int i = 0; i < ds.n; i++) total += dd_dataset_in_shard(i, o->shard_index, o->shard_count);
  for (int i = 0; i < ds.n; i++) {
    if (!dd_dataset_in_shard(i, o->shard_index, o->shard_count)) continue;
    if (o->progress) o->progress(done++, total, o->user);
    json_t *name = json_string(ds.rel[i]);
    if (!name) { /* JSON holds text: such a file is reported under a readable name */
      char *shown = escaped(ds.rel[i]), *root = escaped(ds.root);
      char msg[DD_ERR_MSG_MAX];
      if (shown && root)
        snprintf(msg, sizeof msg, "%s/%s: the file name is not valid UTF-8: not audited", root,
                 shown);
      json_t *e = shown && root ? json_pack("{s:s, s:s}", "path", shown, "message", msg) : NULL;
      free(shown);
      free(root);
      if (!e) {
        rc = dd_fail(err, DD_ENOMEM, "out of memory");
        goto fail;
      }
      json_array_append_new(errors, e);
      continue;
    }
    json_decref(name);
    size_t plen = strlen(ds.root) + strlen(ds.rel[i]) + 2;
    char *path = malloc(plen);
    if (!path) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
      goto fail;
    }
    snprintf(path, plen, "%s/%s", ds.root, ds.rel[i]);
    dd_err e;
    dd_image *im = NULL, *framed = NULL;
    int bad = dd_image_load(path, max_px, &im, &e);
    if (!bad) bad = dd_image_frame(im, o->framing, o->size, o->size, &framed, NULL, &e);
    if (!bad) bad = dd_infer_image(s, framed, pp, &e);
    free(path);
    if (bad) {
      dd_image_free(im);
      dd_image_free(framed);
      if (e.code == DD_ENOMEM) {
        *err = e;
        rc = e.code;
        goto fail;
      }
      json_array_append_new(errors, json_pack("{s:s, s:s}", "path", ds.rel[i], "message",
                                              e.msg));
      continue;
    }
    dd_probabilities(dd_f32(dd_infer_output(s, 0)), n_classes, prob);
    for (int l = 0; l < n_units; l++) units_add(&u[l], dd_infer_output(s, 1 + l), i);
    /* a classifier of fewer than 5 classes (dream train's) lists them all */
    int top[TOP5], nk = n_classes < TOP5 ? (int)n_classes : TOP5;
    top_k(prob, n_classes, nk, top);
    json_t *t = json_array();
    for (int j = 0; j < nk; j++)
      json_array_append_new(t, json_pack("{s:i, s:f}", "class", top[j], "p", prob[top[j]]));
    int rank = label[i] >= 0 && label[i] < n_classes ? rank_of(prob, n_classes, label[i]) : 0;
    json_t *rec = json_pack("{s:s, s:o, s:o, s:o, s:o}", "path", ds.rel[i], "label",
                            label[i] >= 0 ? json_integer(label[i]) : json_null(), "top5", t,
                            "rank", rank ? json_integer(rank) : json_null(), "correct",
                            rank ? json_boolean(rank == 1) : json_null());
    if (!rec) {
      dd_image_free(im);
      dd_image_free(framed);
      rc = dd_fail(err, DD_EFORMAT, "%s/%s: the path is not valid UTF-8", ds.root, ds.rel[i]);
      goto fail;
    }
    json_array_append_new(images, rec);
    if (o->perturb) {
      json_t *pv = json_object();
      uint64_t seed = dd_dataset_seed(o->seed, ds.rel[i]);
      for (int k = 0; k < DD_PERTURB_COUNT && !rc; k++) {
        if (!(o->perturb & (1u << k))) continue;
        json_t *cls = json_array();
        for (int lv = 0; lv < n_levels(k) && !rc; lv++) {
          dd_image *pi = NULL;
          rc = perturbed(k, lv, im, framed, o, seed, &pi, err);
          if (!rc) rc = dd_infer_image(s, pi, pp, err);
          dd_image_free(pi);
          if (rc) break;
          dd_probabilities(dd_f32(dd_infer_output(s, 0)), n_classes, prob);
          int best;
          top_k(prob, n_classes, 1, &best);
          json_array_append_new(cls, json_integer(best));
        }
        json_object_set_new(pv, perturb_names[k], cls);
      }
      json_object_set_new(rec, "perturbed", pv);
      if (rc) dd_err_prefix(err, "%s/%s", ds.root, ds.rel[i]);
    }
    dd_image_free(im);
    dd_image_free(framed);
    if (rc) goto fail;
  }
  json_object_set(r, "images", images);
  json_object_set(r, "errors", errors);
  if (n_units) {
    json_t *layers = json_array();
    for (int l = 0; l < n_units; l++)
      json_array_append_new(layers, units_json(&u[l], m, &ds, o->size));
    json_object_set_new(r, "layers", layers);
  }
  rc = summarize(r, lookup, err);
  if (rc) goto fail;
  *report = r;
  r = NULL;
fail:
  labelset_free(&ls);
  for (int l = 0; l < n_units; l++) units_free(&u[l]);
fail_early:
  json_decref(r);
  json_decref(images);
  json_decref(errors);
  json_decref(lookup);
  dd_infer_free(s);
  free(label);
  free(prob);
  dd_dataset_free(&ds);
  return rc;
}

/* ---- merge ---- */

static int cmp_path(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  return strcmp(json_string_value(json_object_get(x, "path")),
                json_string_value(json_object_get(y, "path")));
}

/* The images and errors of all parts, sorted by path, into one array. */
static int gather(json_t *const *parts, int n, const char *key, json_t **out, dd_err *err) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += json_array_size(json_object_get(parts[i], key));
  json_t **all = malloc((total ? total : 1) * sizeof *all);
  if (!all) return dd_fail(err, DD_ENOMEM, "out of memory");
  size_t m = 0;
  for (int i = 0; i < n; i++) {
    json_t *a = json_object_get(parts[i], key);
    for (size_t j = 0; j < json_array_size(a); j++) all[m++] = json_array_get(a, j);
  }
  qsort(all, m, sizeof *all, cmp_path);
  *out = json_array();
  for (size_t j = 0; j < m; j++) json_array_append(*out, all[j]);
  free(all);
  return DD_OK;
}

static int check_part(const json_t *p, const char *name, dd_err *err) {
  if (!json_is_object(p) || !json_is_string(json_object_get(p, "format")) ||
      strcmp(json_string_value(json_object_get(p, "format")), DD_AUDIT_FORMAT))
    return dd_fail(err, DD_EARG, "%s: not a %s report", name, DD_AUDIT_FORMAT);
  static const char *const arrays[] = {"images", "errors"};
  for (int i = 0; i < 2; i++) {
    const json_t *a = json_object_get(p, arrays[i]);
    if (!json_is_array(a)) return dd_fail(err, DD_EARG, "%s: no '%s' list", name, arrays[i]);
    for (size_t j = 0; j < json_array_size(a); j++)
      if (!json_is_string(json_object_get(json_array_get(a, j), "path")))
        return dd_fail(err, DD_EARG, "%s: %s[%zu] has no path", name, arrays[i], j);
  }
  const json_t *sh = json_object_get(p, "shard");
  if (!json_is_object(sh) || !json_is_integer(json_object_get(sh, "index")) ||
      !json_is_integer(json_object_get(sh, "count")))
    return dd_fail(err, DD_EARG, "%s: not a part of a sharded run (its shard is %s)", name,
                   json_is_null(sh) ? "null: it is a whole report already" : "missing");
  return DD_OK;
}

static int cmp_example(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  double u = json_real_value(json_object_get(x, "value"));
  double v = json_real_value(json_object_get(y, "value"));
  if (u != v) return u > v ? -1 : 1;
  return cmp_path(a, b);
}

/* The parts' unit sums added up and their examples re-ranked: what one run over all the
 * images computes. */
static int merge_layers(json_t *const *parts, const char *const *names, int n, json_t *r,
                        dd_err *err) {
  const json_t *first = json_object_get(parts[0], "layers");
  if (!first) return DD_OK;
  int k = int_of(json_object_get(parts[0], "options"), "top", 5);
  json_t *layers = json_array();
  int rc = DD_OK;
  for (size_t l = 0; l < json_array_size(first) && !rc; l++) {
    const json_t *L0 = json_array_get(first, l);
    int c = int_of(L0, "channels", -1), images = 0;
    long long *pos = calloc((size_t)(c > 0 ? c : 1), sizeof *pos);
    long long *act = calloc((size_t)(c > 0 ? c : 1), sizeof *act);
    if (!pos || !act) rc = dd_fail(err, DD_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
      const json_t *L = json_array_get(json_object_get(parts[i], "layers"), l);
      const json_t *P = json_object_get(L, "positive"), *A = json_object_get(L, "active_images");
      if (c < 1 || !json_is_string(json_object_get(L, "name")) ||
          strcmp(json_string_value(json_object_get(L, "name")),
                 json_string_value(json_object_get(L0, "name"))) ||
          int_of(L, "channels", -2) != c || int_of(L, "height", -1) != int_of(L0, "height", -2) ||
          int_of(L, "width", -1) != int_of(L0, "width", -2) || json_array_size(P) != (size_t)c ||
          json_array_size(A) != (size_t)c ||
          json_array_size(json_object_get(L, "examples")) != (size_t)c) {
        rc = dd_fail(err, DD_EARG, "%s: layers[%zu] does not match %s's", names[i], l, names[0]);
        break;
      }
      images += int_of(L, "images", 0);
      for (int ch = 0; ch < c; ch++) {
        pos[ch] += json_integer_value(json_array_get(P, (size_t)ch));
        act[ch] += json_integer_value(json_array_get(A, (size_t)ch));
      }
    }
    json_t *P = json_array(), *A = json_array(), *E = json_array();
    for (int ch = 0; ch < c && !rc; ch++) {
      json_array_append_new(P, json_integer(pos[ch]));
      json_array_append_new(A, json_integer(act[ch]));
      size_t total = 0;
      for (int i = 0; i < n; i++)
        total += json_array_size(json_array_get(
            json_object_get(json_array_get(json_object_get(parts[i], "layers"), l), "examples"),
            (size_t)ch));
      json_t **all = malloc((total ? total : 1) * sizeof *all);
      if (!all) {
        rc = dd_fail(err, DD_ENOMEM, "out of memory");
        break;
      }
      size_t m = 0;
      for (int i = 0; i < n; i++) {
        const json_t *ex = json_array_get(
            json_object_get(json_array_get(json_object_get(parts[i], "layers"), l), "examples"),
            (size_t)ch);
        for (size_t j = 0; j < json_array_size(ex); j++) {
          json_t *e = json_array_get(ex, j);
          if (!json_is_string(json_object_get(e, "path"))) {
            rc = dd_fail(err, DD_EARG, "%s: an example has no path", names[i]);
            break;
          }
          all[m++] = e;
        }
      }
      if (!rc) {
        qsort(all, m, sizeof *all, cmp_example);
        json_t *list = json_array();
        for (size_t j = 0; j < m && j < (size_t)k; j++) json_array_append(list, all[j]);
        json_array_append_new(E, list);
      }
      free(all);
    }
    if (!rc)
      json_array_append_new(layers, layer_json(json_string_value(json_object_get(L0, "name")), c,
                                               int_of(L0, "height", 0), int_of(L0, "width", 0),
                                               images, P, A, E));
    else {
      json_decref(P);
      json_decref(A);
      json_decref(E);
    }
    free(pos);
    free(act);
  }
  if (rc) json_decref(layers);
  else json_object_set_new(r, "layers", layers);
  return rc;
}

int dd_audit_merge(json_t *const *parts, const char *const *names, int n, json_t **report,
                   dd_err *err) {
  if (n < 1) return dd_fail(err, DD_EARG, "no parts to merge");
  for (int i = 0; i < n; i++) {
    int rc = check_part(parts[i], names[i], err);
    if (rc) return rc;
  }
  static const char *const same[] = {"model", "options", "listing"};
  for (int i = 1; i < n; i++)
    for (int k = 0; k < 3; k++)
      if (!json_equal(json_object_get(parts[0], same[k]), json_object_get(parts[i], same[k]))) {
        char *a = json_dumps(json_object_get(parts[0], same[k]), JSON_COMPACT);
        char *b = json_dumps(json_object_get(parts[i], same[k]), JSON_COMPACT);
        int rc = dd_fail(err, DD_EARG,
                         "%s and %s come from different runs: they differ in '%s' (%s vs %s)",
                         names[0], names[i], same[k], a ? a : "?", b ? b : "?");
        free(a);
        free(b);
        return rc;
      }
  int count = int_of(json_object_get(parts[0], "shard"), "count", 0);
  if (count < 1 || count > 1000000)
    return dd_fail(err, DD_EARG, "%s: shard count %d", names[0], count);
  char *seen = calloc((size_t)count + 1, 1);
  if (!seen) return dd_fail(err, DD_ENOMEM, "out of memory");
  int rc = DD_OK;
  for (int i = 0; i < n && !rc; i++) {
    int c = int_of(json_object_get(parts[i], "shard"), "count", 0);
    int idx = int_of(json_object_get(parts[i], "shard"), "index", 0);
    if (c != count)
      rc = dd_fail(err, DD_EARG, "%s is shard %d/%d but %s is of %d shards", names[i], idx, c,
                   names[0], count);
    else if (idx < 1 || idx > count)
      rc = dd_fail(err, DD_EARG, "%s: shard %d/%d", names[i], idx, c);
    else if (seen[idx])
      rc = dd_fail(err, DD_EARG, "shard %d/%d is given twice (%s)", idx, count, names[i]);
    else
      seen[idx] = 1;
  }
  for (int idx = 1; idx <= count && !rc; idx++)
    if (!seen[idx])
      rc = dd_fail(err, DD_EARG, "shard %d/%d is missing: %d of %d parts given", idx, count, n,
                   count);
  free(seen);
  if (rc) return rc;

  json_t *images = NULL, *errors = NULL, *lookup = json_object();
  rc = gather(parts, n, "images", &images, err);
  if (!rc) rc = gather(parts, n, "errors", &errors, err);
  json_t *r = NULL;
  if (!rc) {
    int listed = int_of(json_object_get(parts[0], "listing"), "images", -1);
    size_t got = json_array_size(images) + json_array_size(errors);
    for (size_t j = 1; j < json_array_size(images) && !rc; j++)
      if (!cmp_path(&(json_t *){json_array_get(images, j - 1)},
                    &(json_t *){json_array_get(images, j)}))
        rc = dd_fail(err, DD_EARG, "'%s' is in two parts",
                     json_string_value(json_object_get(json_array_get(images, j), "path")));
    if (!rc && (listed < 0 || got != (size_t)listed))
      rc = dd_fail(err, DD_EARG, "the parts hold %zu images but the listing has %d", got,
                   listed);
  }
  if (!rc) {
    for (int i = 0; i < n; i++) json_object_update(lookup, json_object_get(parts[i], "names"));
    r = json_object();
    static const char *const head[] = {"format", "model", "options", "listing"};
    for (int k = 0; k < 4; k++) json_object_set(r, head[k], json_object_get(parts[0], head[k]));
    json_object_set_new(r, "shard", json_null());
    json_object_set(r, "images", images);
    json_object_set(r, "errors", errors);
    rc = merge_layers(parts, names, n, r, err);
    if (!rc) rc = summarize(r, lookup, err);
  }
  json_decref(images);
  json_decref(errors);
  json_decref(lookup);
  if (rc) {
    json_decref(r);
    return rc;
  }
  *report = r;
  return DD_OK;
}

/* ---- files ---- */

char *dd_audit_dumps(const json_t *report) {
  return json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
}

void dd_audit_free(json_t *report) { json_decref(report); }

int dd_audit_write(const json_t *report, const char *dir, dd_err *err) {
  char *text = dd_audit_dumps(report);
  if (!text) return dd_fail(err, DD_ENOMEM, "cannot serialize the report");
  size_t len = strlen(text);
  char *buf = realloc(text, len + 2);
  if (!buf) {
    free(text);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  buf[len++] = '\n';
  size_t plen = strlen(dir) + 16;
  char *path = malloc(plen);
  int rc = path ? DD_OK : dd_fail(err, DD_ENOMEM, "out of memory");
  if (!rc) {
    snprintf(path, plen, "%s/report.json", dir);
    rc = dd_write_file_atomic(path, buf, len, err);
  }
  free(path);
  free(buf);
  return rc;
}

int dd_audit_read(const char *dir, json_t **report, dd_err *err) {
  size_t plen = strlen(dir) + 16;
  char *path = malloc(plen);
  if (!path) return dd_fail(err, DD_ENOMEM, "out of memory");
  snprintf(path, plen, "%s/report.json", dir);
  void *buf;
  size_t len;
  int rc = dd_read_file(path, MAX_REPORT, &buf, &len, err);
  if (!rc) {
    json_error_t je;
    json_t *r = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!r)
      rc = dd_fail(err, DD_EFORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    else
      *report = r;
  }
  free(path);
  return rc;
}
