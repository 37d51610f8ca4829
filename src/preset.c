/* Model presets: small `key value` text files in weights/ (or $DREAM_PRESET_PATH) that say
 * which ONNX file a model is, how its input is preprocessed, its default layer and labels. */
#include "dream/preset.h"
#include "dream/train.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#ifndef DREAM_WEIGHTS_DIR
#define DREAM_WEIGHTS_DIR "weights"
#endif

#define PRESET_MAX_FILE ((size_t)1 << 16)
#define LABELS_MAX_FILE ((size_t)16 << 20)
#define SEARCH_LIST_MAX 1024

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int copy_str(char *dst, size_t size, const char *src) {
  size_t n = strlen(src);
  if (n >= size) return -1;
  memcpy(dst, src, n + 1);
  return 0;
}

/* Calls `visit` with each directory of a colon-separated list (empty entries skipped) until
 * it returns non-zero; returns that value or 0. */
static int each_dir(const char *list, int (*visit)(const char *dir, void *ctx), void *ctx) {
  if (!list) return 0;
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ':');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && n < PATH_MAX) {
      char dir[PATH_MAX];
      memcpy(dir, p, n);
      dir[n] = 0;
      int r = visit(dir, ctx);
      if (r) return r;
    }
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

typedef struct search {
  const char *file;  /* name looked for */
  char *found;       /* PATH_MAX buffer receiving the hit */
  char tried[SEARCH_LIST_MAX]; /* directories looked in, for the error message */
} search;

static int search_visit(const char *dir, void *ctx) {
  search *s = ctx;
  size_t used = strlen(s->tried);
  snprintf(s->tried + used, sizeof s->tried - used, "%s%s", used ? ", " : "", dir);
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, s->file) >= sizeof path) return 0;
  if (!is_file(path)) return 0;
  memcpy(s->found, path, strlen(path) + 1);
  return 1;
}

/* Finds `file` in $DREAM_MODEL_PATH, weights/models/, then `extra_dir` (may be NULL).
 * Absolute names are taken as they are.  0 when found; otherwise -1 with s->tried filled. */
static int find_model_file(const char *file, const char *extra_dir, char *found, search *s) {
  s->file = file;
  s->found = found;
  s->tried[0] = 0;
  if (file[0] == '/') {
    snprintf(s->tried, sizeof s->tried, "%s", file);
    if (!is_file(file) || copy_str(found, PATH_MAX, file)) return -1;
    return 0;
  }
  if (each_dir(getenv("DREAM_MODEL_PATH"), search_visit, s)) return 0;
  if (search_visit(DREAM_WEIGHTS_DIR "/models", s)) return 0;
  if (extra_dir && strcmp(extra_dir, DREAM_WEIGHTS_DIR) && search_visit(extra_dir, s)) return 0;
  return -1;
}

/* A preset while it is read: fixed buffers, copied into the public dd_preset's own strings
 * at the end (dd_preset_resolve). */
typedef struct preset_buf {
  char name[64];
  char model_path[PATH_MAX];
  char labels_path[PATH_MAX];
  dd_preproc pre;
  char layer[256];
  int size;
  char url[512];
} preset_buf;

static void preset_defaults(preset_buf *p) {
  memset(p, 0, sizeof *p);
  p->pre.bgr = 0;
  p->pre.scale = 1.f;
  p->pre.mean[0] = 0.485f;
  p->pre.mean[1] = 0.456f;
  p->pre.mean[2] = 0.406f;
  p->pre.std[0] = 0.229f;
  p->pre.std[1] = 0.224f;
  p->pre.std[2] = 0.225f;
  p->size = 224;
}

static int parse_floats(const char *s, float *out, int max) {
  int n = 0;
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == ',') s++;
    if (!*s) break;
    if (n == max) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno) return -1;
    out[n++] = (float)v;
    s = end;
  }
  return n;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  return s;
}

/* Parses the preset text; the file's `file` and `labels` names go to file_out/labels_out. */
static int parse_preset(const char *path, char *text, preset_buf *p, char *file_out,
                        char *labels_out, dd_err *err) {
  int line_no = 0;
  char *save = NULL;
  file_out[0] = labels_out[0] = 0;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    line_no++;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *s = trim(line);
    if (!*s) continue;
    char *key = s;
    while (*s && !isspace((unsigned char)*s)) s++;
    if (*s) *s++ = 0;
    char *val = trim(s);
    if (!*val) return dd_fail(err, DD_EFORMAT, "%s:%d: '%s' has no value", path, line_no, key);
    int bad = 0;
    if (!strcmp(key, "file")) bad = copy_str(file_out, PATH_MAX, val);
    else if (!strcmp(key, "labels")) bad = copy_str(labels_out, PATH_MAX, val);
    else if (!strcmp(key, "url")) bad = copy_str(p->url, sizeof p->url, val);
    else if (!strcmp(key, "layer")) bad = copy_str(p->layer, sizeof p->layer, val);
    else if (!strcmp(key, "bgr")) {
      if (!strcmp(val, "1") || !strcmp(val, "yes")) p->pre.bgr = 1;
      else if (!strcmp(val, "0") || !strcmp(val, "no")) p->pre.bgr = 0;
      else bad = 1;
    } else if (!strcmp(key, "scale")) {
      bad = parse_floats(val, &p->pre.scale, 1) != 1 || !(p->pre.scale > 0);
    } else if (!strcmp(key, "mean") || !strcmp(key, "std")) {
      float *dst = key[0] == 'm' ? p->pre.mean : p->pre.std;
      float v[3];
      int n = parse_floats(val, v, 3);
      if (n == 1) v[1] = v[2] = v[0];
      bad = n != 1 && n != 3;
      for (int c = 0; c < 3 && !bad; c++) {
        if (key[0] == 's' && !(v[c] > 0)) bad = 1;
        dst[c] = v[c];
      }
    } else if (!strcmp(key, "size")) {
      char *end;
      long v = strtol(val, &end, 10);
      bad = *end || v < 1 || v > 16384;
      if (!bad) p->size = (int)v;
    } else {
      return dd_fail(err, DD_EFORMAT,
                     "%s:%d: unknown key '%s' (known: file, url, bgr, scale, mean, std, layer, "
                     "size, labels)",
                     path, line_no, key);
    }
    if (bad) return dd_fail(err, DD_EFORMAT, "%s:%d: bad value for '%s': %s", path, line_no, key, val);
  }
  if (!file_out[0]) return dd_fail(err, DD_EFORMAT, "%s: no 'file' line naming the model", path);
  return DD_OK;
}

static int not_found(dd_err *err, const char *preset, const char *what, const search *s,
                     const char *url) {
  return dd_fail(err, DD_ENOTFOUND,
                 "%s: %s not found (looked in: %s); run weights/setup.sh, or put it in one of "
                 "those directories or in a directory of $DREAM_MODEL_PATH%s%s",
                 preset, what, s->tried[0] ? s->tried : "nowhere", url && url[0] ? "; source: " : "",
                 url && url[0] ? url : "");
}

static int load_preset_file(const char *path, const char *name, preset_buf *out, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(path, PRESET_MAX_FILE, &buf, &len, err);
  if (rc) return rc;
  char *text = realloc(buf, len + 1);
  if (!text) {
    free(buf);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  text[len] = 0;
  if (memchr(text, 0, len)) {
    free(text);
    return dd_fail(err, DD_EFORMAT, "%s: not a text file", path);
  }
  preset_buf p;
  preset_defaults(&p);
  snprintf(p.name, sizeof p.name, "%s", name);
  char file[PATH_MAX], labels[PATH_MAX];
  rc = parse_preset(path, text, &p, file, labels, err);
  free(text);
  if (rc) return rc;

  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else snprintf(dir, sizeof dir, ".");
  search s;
  if (find_model_file(file, dir, p.model_path, &s)) return not_found(err, name, file, &s, p.url);
  if (labels[0] && find_model_file(labels, dir, p.labels_path, &s))
    return not_found(err, name, labels, &s, NULL);
  *out = p;
  return DD_OK;
}

static int preset_visit(const char *dir, void *ctx) {
  search *s = ctx;
  return search_visit(dir, s);
}

/* Names of the presets in weights/, for the error message. */
static void list_presets(char *buf, size_t size) {
  buf[0] = 0;
  DIR *d = opendir(DREAM_WEIGHTS_DIR);
  if (!d) return;
  size_t used = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n <= 7 || !ends_with(e->d_name, ".preset") || used >= size) continue;
    int w = snprintf(buf + used, size - used, "%s%.*s", used ? ", " : "", (int)(n - 7), e->d_name);
    if (w > 0) used += (size_t)w;
  }
  closedir(d);
}

static int preset_exists(const char *name) {
  char file[PATH_MAX], found[PATH_MAX];
  snprintf(file, sizeof file, "%s.preset", name);
  search s = {file, found, {0}};
  return each_dir(getenv("DREAM_PRESET_PATH"), preset_visit, &s) ||
         preset_visit(DREAM_WEIGHTS_DIR, &s);
}

static int resolve(const char *spec, preset_buf *out, dd_err *err) {
  if (!spec || !*spec) return dd_fail(err, DD_EARG, "empty model name");
  if (strlen(spec) >= PATH_MAX) return dd_fail(err, DD_EARG, "model name too long");
  const char *base = strrchr(spec, '/');
  base = base ? base + 1 : spec;

  if (ends_with(spec, ".preset")) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(strlen(base) - 7), base);
    return load_preset_file(spec, name, out, err);
  }
  /* A path, or the name of a file here that no preset claims. */
  if (ends_with(spec, ".onnx") || strchr(spec, '/') || (is_file(spec) && !preset_exists(spec))) {
    /* Any ONNX file: torchvision's preprocessing, the common convention of exported models. */
    struct stat st;
    if (stat(spec, &st) != 0)
      return dd_fail(err, DD_ENOTFOUND, "%s: cannot open: %s", spec, strerror(errno));
    if (!S_ISREG(st.st_mode)) return dd_fail(err, DD_EIO, "%s: not a regular file", spec);
    preset_buf p;
    preset_defaults(&p);
    size_t n = strlen(base);
    if (ends_with(base, ".onnx")) n -= 5;
    snprintf(p.name, sizeof p.name, "%.*s", (int)n, base);
    snprintf(p.model_path, sizeof p.model_path, "%s", spec);
    /* A model `dream train` wrote says how it reads its input (dream/train.h). */
    int found = 0, size = 0;
    dd_preproc pre;
    int rc = dd_train_read_meta(spec, &found, &pre, &size, NULL, NULL, err);
    if (rc) return rc;
    if (found) {
      p.pre = pre;
      if (size > 0) p.size = size;
    }
    *out = p;
    return DD_OK;
  }
  for (const char *c = spec; *c; c++)
    if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.')
      return dd_fail(err, DD_EARG, "'%s' is not a preset name nor an .onnx file", spec);

  char file[PATH_MAX], found[PATH_MAX];
  snprintf(file, sizeof file, "%s.preset", spec);
  search s;
  s.file = file;
  s.found = found;
  s.tried[0] = 0;
  if (each_dir(getenv("DREAM_PRESET_PATH"), preset_visit, &s) || preset_visit(DREAM_WEIGHTS_DIR, &s))
    return load_preset_file(found, spec, out, err);
  char names[256];
  list_presets(names, sizeof names);
  return dd_fail(err, DD_ENOTFOUND,
                 "%s: no such model: not a preset (looked for %s in %s; presets: %s) nor an "
                 ".onnx file",
                 spec, file, s.tried, names[0] ? names : "none");
}

/* ---- labels ---- */

/* "n02110185" : an ImageNet WordNet id, dropped from the label. */
static int is_wnid(const char *s, size_t n) {
  if (n != 9 || s[0] != 'n') return 0;
  for (size_t i = 1; i < 9; i++)
    if (!isdigit((unsigned char)s[i])) return 0;
  return 1;
}

void dd_preset_clear(dd_preset *p) {
  if (!p) return;
  free(p->name);
  free(p->model_path);
  free(p->labels_path);
  free(p->layer);
  free(p->url);
  memset(p, 0, sizeof *p);
}

int dd_preset_resolve(const char *spec, dd_preset *out, dd_err *err) {
  preset_buf b;
  int rc = resolve(spec, &b, err);
  if (rc) return rc;
  dd_preset p = {dd_strdup(b.name), dd_strdup(b.model_path), dd_strdup(b.labels_path), b.pre,
                 dd_strdup(b.layer), b.size, dd_strdup(b.url)};
  if (!p.name || !p.model_path || !p.labels_path || !p.layer || !p.url) {
    dd_preset_clear(&p);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  *out = p;
  return DD_OK;
}

int dd_labels_load(const char *path, char ***labels, int *n, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(path, LABELS_MAX_FILE, &buf, &len, err);
  if (rc) return rc;
  char *text = buf;
  if (memchr(text, 0, len)) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: not a text file", path);
  }
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  if (len && text[len - 1] != '\n') lines++;
  if (!lines) {
    free(buf);
    return dd_fail(err, DD_EFORMAT, "%s: no labels (the file is empty)", path);
  }
  char **out = calloc(lines, sizeof *out);
  if (!out) {
    free(buf);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  size_t k = 0, start = 0;
  for (size_t i = 0; i <= len && k < lines; i++) {
    if (i < len && text[i] != '\n') continue;
    size_t a = start, b = i;
    start = i + 1;
    if (i == len && a == b) break;
    while (a < b && isspace((unsigned char)text[a])) a++;
    while (b > a && isspace((unsigned char)text[b - 1])) b--;
    size_t w = a;
    while (w < b && !isspace((unsigned char)text[w])) w++;
    if (w < b && is_wnid(text + a, w - a)) {
      a = w;
      while (a < b && isspace((unsigned char)text[a])) a++;
    }
    out[k] = malloc(b - a + 1);
    if (!out[k]) {
      dd_labels_free(out, (int)k);
      free(buf);
      return dd_fail(err, DD_ENOMEM, "out of memory");
    }
    memcpy(out[k], text + a, b - a);
    out[k][b - a] = 0;
    k++;
  }
  free(buf);
  *labels = out;
  *n = (int)k;
  return DD_OK;
}

void dd_labels_free(char **labels, int n) {
  if (!labels) return;
  for (int i = 0; i < n; i++) free(labels[i]);
  free(labels);
}

/* Case-insensitive equality; and whether `word` occurs in `s` as a whole word. */
static int lower_eq(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return !*a && !*b;
}

static int has_word(const char *s, const char *word) {
  size_t n = strlen(word);
  for (const char *p = s; *p; p++) {
    if (p != s && isalnum((unsigned char)p[-1])) continue;
    size_t i = 0;
    while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)word[i])) i++;
    if (i == n && !isalnum((unsigned char)p[n])) return 1;
  }
  return 0;
}

static int starts_with(const char *s, const char *prefix) {
  for (; *prefix; s++, prefix++)
    if (tolower((unsigned char)*s) != tolower((unsigned char)*prefix)) return 0;
  return 1;
}

/* Appends "'label' (index)" to list. */
static void list_add(char *list, size_t size, size_t *used, const char *label, int i) {
  int w = snprintf(list + *used, size - *used, "%s'%s' (%d)", *used ? ", " : "", label, i);
  if (w > 0 && (size_t)w < size - *used) *used += (size_t)w;
}

int dd_labels_find(char *const *labels, int n, const char *query, int *index, dd_err *err) {
  if (!query || !*query) return dd_fail(err, DD_EARG, "empty class name");
  char *end;
  errno = 0;
  long v = isdigit((unsigned char)query[0]) ? strtol(query, &end, 10) : -1;
  if (v >= 0 && !*end) {
    if (errno || v >= n)
      return dd_fail(err, DD_EARG, "class %s is out of range 0..%d", query, n - 1);
    *index = (int)v;
    return DD_OK;
  }
  int hit = -1, hits = 0;
  for (int i = 0; i < n; i++)
    if (lower_eq(labels[i], query)) {
      if (!hits++) hit = i;
    }
  char list[512];
  size_t used = 0;
  list[0] = 0;
  if (hits == 1) {
    *index = hit;
    return DD_OK;
  }
  if (hits > 1) { /* ImageNet has two 'crane's and two 'maillot's */
    for (int i = 0; i < n; i++)
      if (lower_eq(labels[i], query)) list_add(list, sizeof list, &used, labels[i], i);
    return dd_fail(err, DD_EARG, "class '%s' names %d classes: %s; give the index", query, hits,
                   list);
  }
  /* No label is the query: the labels that contain it as a word, then those it begins,
   * then the closest by edit distance, three at most.  Never a silent pick. */
  int best[3] = {-1, -1, -1}, bestd[3] = {1 << 30, 1 << 30, 1 << 30};
  for (int i = 0; i < n; i++) {
    int d = has_word(labels[i], query) ? -2 : starts_with(labels[i], query) ? -1
            : dd_edit_distance(query, labels[i]);
    for (int j = 0; j < 3; j++)
      if (d < bestd[j]) {
        for (int k = 2; k > j; k--) {
          best[k] = best[k - 1];
          bestd[k] = bestd[k - 1];
        }
        best[j] = i;
        bestd[j] = d;
        break;
      }
  }
  for (int j = 0; j < 3 && best[j] >= 0; j++)
    list_add(list, sizeof list, &used, labels[best[j]], best[j]);
  return dd_fail(err, DD_ENOTFOUND, "no class named '%s'; did you mean %s?", query,
                 list[0] ? list : "none");
}
