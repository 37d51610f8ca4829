/* `dream audit`'s thumbnails, Grad-CAM panels and index.html (cli/audit_html.h). */
#include "cli/audit_html.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dream/dataset.h"
#include "dream/visualize.h"
#include "util.h"

#define THUMB 112
#define PANEL_HEIGHT 160

static void file_id(const char *rel, char id[17]) {
  snprintf(id, 17, "%016llx", (unsigned long long)dd_dataset_seed(0, rel));
}

static int make_dir(const char *path, dd_err *err) {
  if (mkdir(path, 0777) && errno != EEXIST)
    return dd_fail(err, DD_EIO, "%s: cannot create it: %s", path, strerror(errno));
  return DD_OK;
}

/* Grad-CAM of class `cls` on the part of the photo the network sees, as `explain` draws it. */
static int panel(const cli_model *cm, const dd_image *cut, int size, int cls, const char *path,
                 dd_err *err) {
  dd_explain_opts eo;
  dd_explain_opts_init(&eo);
  eo.size = size;
  eo.cls = cls;
  eo.max_memory = cm->max_memory;
  dd_explanation *e = NULL;
  dd_image *pic = NULL;
  int rc = dd_explain(cm->model, &cm->preset.pre, cut, &eo, &e, err);
  if (!rc) rc = dd_explain_picture(cut, e, PANEL_HEIGHT, &pic, err);
  if (!rc) rc = cli_save_image(path, pic, NULL, NULL, err);
  dd_explanation_free(e);
  dd_image_free(pic);
  return rc;
}

static int assets_one(json_t *rec, const cli_model *cm, const char *dir, dd_framing framing,
                      int size, int with_panels, const char *out, dd_err *err) {
  const char *rel = json_string_value(json_object_get(rec, "path"));
  char id[17], path[4096], thumb[64];
  file_id(rel, id);
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  dd_image *photo = NULL, *framed = NULL, *small = NULL, *cut = NULL;
  int rc = dd_image_load(path, cli_max_pixels(cm->max_memory), &photo, err);
  if (!rc) rc = dd_image_frame(photo, framing, size, size, &framed, NULL, err);
  if (!rc) rc = dd_image_resize(framed, THUMB, THUMB, &small, err);
  snprintf(thumb, sizeof thumb, "thumbs/%s.jpg", id);
  snprintf(path, sizeof path, "%s/%s", out, thumb);
  if (!rc) rc = cli_save_image(path, small, NULL, NULL, err);
  if (!rc) json_object_set_new(rec, "thumb", json_string(thumb));
  const json_t *rank = json_object_get(rec, "rank");
  if (!rc && with_panels && json_is_integer(rank) && json_integer_value(rank) > 1) {
    dd_frame_rect r;
    int ow, oh;
    rc = dd_frame_layout(photo->w, photo->h, framing, size, size, &r, &ow, &oh, err);
    if (!rc) rc = dd_image_cut(photo, (int)r.x, (int)r.y, (int)r.w, (int)r.h, &cut, err);
    int pred = (int)json_integer_value(
        json_object_get(json_array_get(json_object_get(rec, "top5"), 0), "class"));
    int truth = (int)json_integer_value(json_object_get(rec, "label"));
    char pp[64], tp[64];
    snprintf(pp, sizeof pp, "panels/%s-predicted.jpg", id);
    snprintf(tp, sizeof tp, "panels/%s-true.jpg", id);
    snprintf(path, sizeof path, "%s/%s", out, pp);
    if (!rc) rc = panel(cm, cut, size, pred, path, err);
    snprintf(path, sizeof path, "%s/%s", out, tp);
    if (!rc) rc = panel(cm, cut, size, truth, path, err);
    if (!rc)
      json_object_set_new(rec, "panels", json_pack("{s:s, s:s}", "predicted", pp, "true", tp));
  }
  if (rc) dd_err_prefix(err, "%s", rel);
  dd_image_free(photo);
  dd_image_free(framed);
  dd_image_free(small);
  dd_image_free(cut);
  return rc;
}

int audit_panels(json_t *report, const cli_model *cm, const char *dir, dd_framing framing,
                 int size, int with_panels, const char *out, dd_err *err) {
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/thumbs", out);
  int rc = make_dir(sub, err);
  snprintf(sub, sizeof sub, "%s/panels", out);
  if (!rc && with_panels) rc = make_dir(sub, err);
  json_t *images = json_object_get(report, "images");
  for (size_t i = 0; !rc && i < json_array_size(images); i++)
    rc = assets_one(json_array_get(images, i), cm, dir, framing, size, with_panels, out, err);
  if (!rc) json_object_set_new(json_object_get(report, "options"), "panels",
                               json_boolean(with_panels));
  return rc;
}

static int copy_file(const char *from, const char *to, dd_err *err) {
  void *buf;
  size_t len;
  int rc = dd_read_file(from, (size_t)1 << 30, &buf, &len, err);
  if (rc) return rc;
  rc = dd_write_file_atomic(to, buf, len, err);
  free(buf);
  return rc;
}

/* The names audit_panels gives: thumbs/<16 hex>.jpg, panels/<16 hex>-predicted.jpg or
 * -true.jpg.  A part's report is a file like any other: nothing else is copied (no "../"). */
static int asset_name(const char *rel) {
  const char *id;
  if (!strncmp(rel, "thumbs/", 7)) id = rel + 7;
  else if (!strncmp(rel, "panels/", 7)) id = rel + 7;
  else return 0;
  for (int i = 0; i < 16; i++)
    if (!strchr("0123456789abcdef", id[i]) || !id[i]) return 0;
  const char *rest = id + 16;
  if (rel[0] == 't') return !strcmp(rest, ".jpg");
  return !strcmp(rest, "-predicted.jpg") || !strcmp(rest, "-true.jpg");
}

static int copy_from_parts(const char *rel, const char *const *parts, int n, const char *out,
                           dd_err *err) {
  char from[4096], to[4096];
  if (!rel || !asset_name(rel))
    return dd_fail(err, DD_EFORMAT, "a part's report names '%s' as a thumbnail or panel",
                   rel ? rel : "(not a string)");
  snprintf(to, sizeof to, "%s/%s", out, rel);
  for (int i = 0; i < n; i++) {
    snprintf(from, sizeof from, "%s/%s", parts[i], rel);
    if (!access(from, R_OK)) return copy_file(from, to, err);
  }
  return dd_fail(err, DD_ENOTFOUND, "%s: in none of the parts", rel);
}

int audit_panels_copy(const json_t *report, const char *const *parts, int n, const char *out,
                      dd_err *err) {
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/thumbs", out);
  int rc = make_dir(sub, err);
  snprintf(sub, sizeof sub, "%s/panels", out);
  if (!rc) rc = make_dir(sub, err);
  const json_t *images = json_object_get(report, "images");
  for (size_t i = 0; !rc && i < json_array_size(images); i++) {
    const json_t *rec = json_array_get(images, i), *p = json_object_get(rec, "panels");
    const json_t *t = json_object_get(rec, "thumb");
    if (json_is_string(t)) rc = copy_from_parts(json_string_value(t), parts, n, out, err);
    if (!rc && json_is_object(p))
      rc = copy_from_parts(json_string_value(json_object_get(p, "predicted")), parts, n, out,
                           err);
    if (!rc && json_is_object(p))
      rc = copy_from_parts(json_string_value(json_object_get(p, "true")), parts, n, out, err);
  }
  return rc;
}

static void remove_all(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
  closedir(d);
  rmdir(dir);
}

void audit_dir_remove(const char *out) {
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/thumbs", out);
  remove_all(sub);
  snprintf(sub, sizeof sub, "%s/panels", out);
  remove_all(sub);
  snprintf(sub, sizeof sub, "%s/report.json", out);
  unlink(sub);
  snprintf(sub, sizeof sub, "%s/index.html", out);
  unlink(sub);
  rmdir(out);
}

/* The page: the report as JSON in a script element (every '/' escaped, so no "</script>"
 * can end it early), drawn by a small script; nothing is fetched. */
static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<title>dream audit</title>\n<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}\n"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\n"
    "table{border-collapse:collapse;margin:.5em 0}\n"
    "th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}\n"
    "th{cursor:pointer;background:#f4f4f4;user-select:none}th:hover{background:#e8e8e8}\n"
    "th.asc::after{content:' \\25B2'}th.desc::after{content:' \\25BC'}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".bad{color:#b00020}.good{color:#1b7f3b}img.thumb{width:56px;height:56px}\n"
    ".ex{position:relative;display:inline-block;margin-right:4px}.ex img{width:56px;height:56px;"
    "display:block}.box{position:absolute;border:2px solid #0ff;box-sizing:border-box}\n"
    ".panel{margin:1em 0;padding:.5em;border:1px solid #ddd}.panel img{display:block;"
    "margin:.3em 0;max-width:100%}\n.meta{color:#555}\n</style>\n</head>\n<body>\n"
    "<h1>dream audit</h1>\n<div id=\"summary\"></div>\n"
    "<h2>Accuracy per class</h2><div id=\"classes\"></div>\n"
    "<h2>Most frequent confusions</h2><div id=\"confusions\"></div>\n"
    "<h2>Images</h2><div id=\"images\"></div>\n"
    "<h2>Misclassified: Grad-CAM of the predicted and of the true class</h2>"
    "<div id=\"panels\"></div>\n"
    "<h2>Perturbation sweep</h2><div id=\"perturb\"></div>\n"
    "<h2>Units of the chosen layers</h2><div id=\"units\"></div>\n"
    "<h2>Unreadable files</h2><div id=\"errors\"></div>\n"
    "<script id=\"data\" type=\"application/json\">";

static const char page_tail[] =
    "</script>\n<script>\n"
    "'use strict';\n"
    "const R = JSON.parse(document.getElementById('data').textContent);\n"
    "const N = R.names || {};\n"
    "function name(c) { return c === null || c === undefined ? '' : c + ' ' + (N[c] || ''); }\n"
    "function pct(x) { return x === null || x === undefined ? '' : (100 * x).toFixed(2) + '%'; }\n"
    "function el(tag, attrs, kids) {\n"
    "  const e = document.createElement(tag);\n"
    "  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);\n"
    "  for (const c of kids || []) e.append(c);\n"
    "  return e;\n}\n"
    "/* cols: [header, value for sorting, cell content (string or node), numeric] */\n"
    "function table(where, cols, rows) {\n"
    "  const box = document.getElementById(where);\n"
    "  if (!rows.length) { box.append(el('p', {class: 'meta'}, ['none'])); return; }\n"
    "  const body = el('tbody');\n"
    "  const heads = cols.map((c, i) => el('th', {}, [c[0]]));\n"
    "  const draw = () => { body.replaceChildren(...rows.map(r => el('tr', {}, cols.map(c => {\n"
    "    const v = c[2](r); return el('td', c[3] ? {class: 'num'} : {}, [v]); })))); };\n"
    "  heads.forEach((h, i) => h.addEventListener('click', () => {\n"
    "    const asc = !h.classList.contains('asc');\n"
    "    heads.forEach(x => x.classList.remove('asc', 'desc'));\n"
    "    h.classList.add(asc ? 'asc' : 'desc');\n"
    "    const key = cols[i][1];\n"
    "    rows.sort((a, b) => { const x = key(a), y = key(b);\n"
    "      const d = x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;\n"
    "      return asc ? d : -d; });\n"
    "    draw(); }));\n"
    "  box.append(el('table', {}, [el('thead', {}, [el('tr', {}, heads)]), body]));\n"
    "  draw();\n}\n"
    "const A = R.accuracy, M = R.model, O = R.options;\n"
    "document.getElementById('summary').append(\n"
    "  el('p', {}, [`${R.images.length} images audited, ${R.errors.length} unreadable; `,\n"
    "    A ? `top-1 ${pct(A.top1)}, top-5 ${pct(A.top5)}, `\n"
    "      + (A.k === 1 || A.k === 5 ? '' : `top-${A.k} ${pct(A.topk)}, `) + `of `\n"
    "      + `${A.labelled} labelled` : 'no labels: no accuracy']),\n"
    "  el('p', {class: 'meta'}, [`model ${M.name} (${M.bytes} bytes, FNV-1a ${M.fnv1a64}); `\n"
    "    + `framing ${O.framing} ${O.size[0]}x${O.size[1]}; labels from ${O.labels}; `\n"
    "    + `listing ${R.listing.images} files, digest ${R.listing.digest}`]));\n"
    "table('classes', [\n"
    "  ['class', r => r.class, r => name(r.class)],\n"
    "  ['images', r => r.images, r => String(r.images), 1],\n"
    "  ['top-1', r => r.top1, r => pct(r.top1), 1],\n"
    "  ['top-5', r => r.top5, r => pct(r.top5), 1]], R.classes.slice());\n"
    "table('confusions', [\n"
    "  ['true class', r => r.true, r => name(r.true)],\n"
    "  ['predicted', r => r.predicted, r => name(r.predicted)],\n"
    "  ['images', r => r.count, r => String(r.count), 1]], R.confusions.slice());\n"
    "table('images', [\n"
    "  ['', r => r.path, r => r.thumb ? el('img', {class: 'thumb', src: r.thumb, alt: r.path})"
    " : ''],\n"
    "  ['path', r => r.path, r => r.path],\n"
    "  ['label', r => r.label, r => name(r.label)],\n"
    "  ['predicted', r => r.top5[0].class, r => name(r.top5[0].class)],\n"
    "  ['p', r => r.top5[0].p, r => pct(r.top5[0].p), 1],\n"
    "  ['rank of label', r => r.rank, r => r.rank === null ? '' : el('span',\n"
    "    {class: r.rank === 1 ? 'good' : 'bad'}, [String(r.rank)]), 1]], R.images.slice());\n"
    "const P = document.getElementById('panels');\n"
    "const wrong = R.images.filter(r => r.panels);\n"
    "if (!wrong.length) P.append(el('p', {class: 'meta'}, [O.panels === false ?\n"
    "  'not drawn (--no-panels)' : 'none']));\n"
    "for (const r of wrong) P.append(el('div', {class: 'panel'}, [\n"
    "  el('b', {}, [r.path]), ` is ${name(r.label)}, predicted ${name(r.top5[0].class)} `\n"
    "    + `(${pct(r.top5[0].p)}; the true class ranks ${r.rank})`,\n"
    "  el('div', {class: 'meta'}, ['photo, Grad-CAM and saliency for the predicted class']),\n"
    "  el('img', {src: r.panels.predicted, alt: 'predicted ' + r.path}),\n"
    "  el('div', {class: 'meta'}, ['the same for the true class']),\n"
    "  el('img', {src: r.panels.true, alt: 'true ' + r.path})]));\n"
    "const PT = document.getElementById('perturb');\n"
    "if (!(R.perturbation || []).length)\n"
    "  PT.append(el('p', {class: 'meta'}, ['none (--perturb)']));\n"
    "(R.perturbation || []).forEach((K, ki) => {\n"
    "  PT.append(el('h3', {}, [K.kind]), el('div', {id: 'pt' + ki}));\n"
    "  table('pt' + ki, [\n"
    "    ['severity', r => r.l, r => String(r.v)],\n"
    "    ['top-1 accuracy', r => r.a, r => r.a === null ? 'no labels' : pct(r.a), 1],\n"
    "    ['top-1 changed', r => r.f, r => pct(r.f), 1]],\n"
    "    K.levels.map((v, l) => ({l: l, v: v, a: K.accuracy[l], f: K.flipped[l]})));\n"
    "  if (K.first_flips.length) PT.append(el('p', {}, ['first to flip: ' + K.first_flips\n"
    "    .map(f => `${f.path} at ${f.level} (${name(f.from)} \u2192 ${name(f.to)})`)\n"
    "    .join('; ')]));\n"
    "});\n"
    "const U = document.getElementById('units');\n"
    "const thumbOf = {}; for (const r of R.images) thumbOf[r.path] = r.thumb;\n"
    "if (!(R.layers || []).length)\n"
    "  U.append(el('p', {class: 'meta'}, ['none chosen (--layer)']));\n"
    "(R.layers || []).forEach((L, li) => {\n"
    "  const pos = L.images * L.height * L.width;\n"
    "  U.append(el('h3', {}, [L.name]), el('p', {}, [\n"
    "    `${L.channels} units (${L.width}x${L.height}) over ${L.images} images; `\n"
    "    + `dead (never > 0): ${L.dead.length ? L.dead.join(', ') : 'none'}; `\n"
    "    + `rarely active (> 0 at under 1% of positions): `\n"
    "    + `${L.rare.length ? L.rare.join(', ') : 'none'}`]), el('div', {id: 'units' + li}));\n"
    "  const S = O.size[0];\n"
    "  const ex = e => { const b = e.box, s = 56 / S;\n"
    "    const box = el('div', {class: 'box', style: `left:${b[0] * s}px;top:${b[1] * s}px;`\n"
    "      + `width:${Math.max(b[2] * s, 3)}px;height:${Math.max(b[3] * s, 3)}px`});\n"
    "    return el('span', {class: 'ex', title: `${e.path}: ${e.value.toPrecision(4)}`},\n"
    "      [thumbOf[e.path] ? el('img', {src: thumbOf[e.path], alt: e.path}) : e.path, box]); };\n"
    "  const rows = L.positive.map((p, c) => ({c: c, rate: p / pos, act: L.active_images[c],\n"
    "    ex: L.examples[c]}));\n"
    "  table('units' + li, [\n"
    "    ['unit', r => r.c, r => String(r.c), 1],\n"
    "    ['active positions', r => r.rate, r => pct(r.rate), 1],\n"
    "    ['images active', r => r.act, r => String(r.act), 1],\n"
    "    ['top images (max boxed)', r => r.ex.length ? r.ex[0].value : null,\n"
    "      r => el('span', {}, r.ex.map(ex))]], rows);\n"
    "});\n"
    "table('errors', [\n"
    "  ['path', r => r.path, r => r.path],\n"
    "  ['message', r => r.message, r => r.message]], R.errors.slice());\n"
    "</script>\n</body>\n</html>\n";

int audit_html_write(const json_t *report, const char *out, dd_err *err) {
  char *data = json_dumps(report, JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_ENSURE_ASCII |
                                      JSON_PRESERVE_ORDER);
  if (!data) return dd_fail(err, DD_ENOMEM, "cannot serialize the report");
  size_t a = strlen(page_head), b = strlen(data), c = strlen(page_tail);
  char *page = malloc(a + b + c + 1);
  int rc = DD_OK;
  if (!page) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
  } else {
    memcpy(page, page_head, a);
    memcpy(page + a, data, b);
    memcpy(page + a + b, page_tail, c + 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/index.html", out);
    rc = dd_write_file_atomic(path, page, a + b + c, err);
  }
  free(page);
  free(data);
  return rc;
}
