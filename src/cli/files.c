/* The files a command reads and writes: outputs are checked before any work (extension,
 * directory, never an input, never each other), photos are loaded with a pixel cap that
 * names the option that set it. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dream/image.h"

void cli_files_in(cli_files *f, const char *path) {
  if (path && *path && f->n_in < CLI_MAX_FILES) f->in[f->n_in++] = path;
}

void cli_files_out(cli_files *f, const char *path, cli_out_kind kind) {
  if (!path || f->n_out >= CLI_MAX_FILES) return;
  f->kind[f->n_out] = kind;
  f->out[f->n_out++] = path;
}

static int ext_is(const char *path, const char *const *exts, int n) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  if (!dot || (slash && slash > dot)) return 0;
  for (int i = 0; i < n; i++) {
    const char *a = dot + 1, *b = exts[i];
    while (*a && *b && tolower((unsigned char)*a) == *b) a++, b++;
    if (!*a && !*b) return 1;
  }
  return 0;
}

static const char *const image_exts[] = {"jpg", "jpeg", "png", "bmp", "tga"};

int cli_has_image_ext(const char *path) { return ext_is(path, image_exts, 5); }

/* The directory part of path ("." when none), into buf. */
static void dir_of(const char *path, char *buf, size_t size) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(buf, size, ".");
  else if (slash == path) snprintf(buf, size, "/");
  else snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

/* Same file: the same inode when both exist, else the same directory inode and base name. */
static int same_path(const char *a, const char *b) {
  if (!strcmp(a, b)) return 1;
  struct stat sa, sb;
  int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea || eb) return 0;
  const char *ba = strrchr(a, '/'), *bb = strrchr(b, '/');
  ba = ba ? ba + 1 : a;
  bb = bb ? bb + 1 : b;
  if (strcmp(ba, bb)) return 0;
  char da[PATH_MAX], db[PATH_MAX];
  dir_of(a, da, sizeof da);
  dir_of(b, db, sizeof db);
  return stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

int cli_files_check(const char *cmd, const cli_files *f) {
  static const char *const kind_ext[] = {"", ".csv", ".json", ".pb", ""};
  for (int i = 0; i < f->n_out; i++) {
    const char *o = f->out[i];
    if (!*o) return cli_usage_error(cmd, "empty output file name");
    for (int k = 0; k < f->n_in; k++)
      if (same_path(o, f->in[k]))
        return cli_usage_error(cmd, "%s is the same file as the input %s: inputs are never "
                               "overwritten", o, f->in[k]);
    if (f->kind[i] == CLI_OUT_IMAGE && !cli_has_image_ext(o))
      return cli_usage_error(cmd, "%s: the output's extension must be .jpg, .jpeg, .png, .bmp or "
                             ".tga", o);
    if (f->kind[i] != CLI_OUT_IMAGE && f->kind[i] != CLI_OUT_ANY &&
        !ext_is(o, (const char *const[]){kind_ext[f->kind[i]] + 1}, 1))
      return cli_usage_error(cmd, "%s: the output's extension must be %s", o,
                             kind_ext[f->kind[i]]);
    for (int k = 0; k < i; k++)
      if (same_path(o, f->out[k]))
        return cli_usage_error(cmd, "%s and %s are the same file: give each output its own name",
                               f->out[k], o);
    struct stat st;
    if (stat(o, &st) == 0 && S_ISDIR(st.st_mode))
      return cli_errorf("%s: is a directory, not a file", o);
    char dir[PATH_MAX];
    dir_of(o, dir, sizeof dir);
    if (stat(dir, &st) != 0) return cli_errorf("%s: no directory %s: %s", o, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cli_errorf("%s: %s is not a directory", o, dir);
    if (access(dir, W_OK | X_OK) != 0)
      return cli_errorf("%s: cannot write in %s: %s", o, dir, strerror(errno));
  }
  return 0;
}

int cli_sibling(const char *path, const char *ext, char *buf, size_t size) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - path) : strlen(path);
  if (stem + strlen(ext) + 1 > size) return cli_errorf("%s: path too long", path);
  memcpy(buf, path, stem);
  strcpy(buf + stem, ext);
  return 0;
}

int cli_load_image_capped(const char *path, const cli_model *cm, size_t bytes_per_pixel,
                          dd_image **out) {
  dd_err err;
  size_t cap = cm->max_memory / bytes_per_pixel;
  if (cap > DD_IMAGE_MAX_PIXELS) cap = DD_IMAGE_MAX_PIXELS;
  if (cap < 1) cap = 1;
  int rc = dd_image_load(path, cap, out, &err);
  if (rc == DD_ELIMIT && cap < DD_IMAGE_MAX_PIXELS)
    return cli_errorf("%s (the limit is --max-memory / %zu bytes per pixel, with --max-memory "
                      "%.0f MiB%s)", err.msg, bytes_per_pixel, cm->max_memory / 1048576.0,
                      cm->memory_given ? "" : ", half of RAM by default");
  return rc ? cli_report(&err) : 0;
}

int cli_load_image(const char *path, const cli_model *cm, dd_image **out) {
  return cli_load_image_capped(path, cm, 64, out);
}

int cli_save_image(const char *path, const dd_image *im, const cli_common *co,
                   const dd_image *meta_from, dd_err *err) {
  dd_image_save_opts o;
  dd_image_save_opts_init(&o);
  if (co && co->quality) o.quality = co->quality;
  /* A view of the pixels with the metadata of meta_from: nothing is copied or owned. */
  dd_image view = *im;
  view.icc = meta_from ? meta_from->icc : NULL;
  view.icc_len = meta_from ? meta_from->icc_len : 0;
  view.exif = meta_from ? meta_from->exif : NULL;
  view.exif_len = meta_from ? meta_from->exif_len : 0;
  return dd_image_save_with(path, &view, &o, err);
}
