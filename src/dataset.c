/* A folder of images as a dataset: listing, shards, per-file seeds (dream/dataset.h). */
#include "dream/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "util.h"

/* The extensions of DD_IMAGE_FORMATS, lower case. */
static const char *const image_exts[] = {"jpg", "jpeg", "png", "bmp", "gif", "tga", "psd",
                                         "pnm", "ppm", "pgm", "hdr", "pic", NULL};

int dd_dataset_is_image_name(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot || dot == name) return 0;
  for (int i = 0; image_exts[i]; i++)
    if (!strcasecmp(dot + 1, image_exts[i])) return 1;
  return 0;
}

typedef struct lister {
  const char *root;
  int max_files;
  int n, cap;
  char **rel;
  dd_err *err;
} lister;

static int add_file(lister *l, const char *rel) {
  if (l->max_files > 0 && l->n >= l->max_files)
    return dd_fail(l->err, DD_ELIMIT, "%s: more than %d images", l->root, l->max_files);
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    char **r = realloc(l->rel, (size_t)cap * sizeof *r);
    if (!r) return dd_fail(l->err, DD_ENOMEM, "out of memory listing %s", l->root);
    l->rel = r;
    l->cap = cap;
  }
  if (!(l->rel[l->n] = dd_strdup(rel))) return dd_fail(l->err, DD_ENOMEM, "out of memory");
  l->n++;
  return DD_OK;
}

/* Walks root/sub (sub "" for the root itself). */
static int walk(lister *l, const char *sub, int depth) {
  if (depth > DD_DATASET_MAX_DEPTH)
    return dd_fail(l->err, DD_ELIMIT, "%s/%s: folders nested deeper than %d", l->root, sub,
                   DD_DATASET_MAX_DEPTH);
  size_t need = strlen(l->root) + strlen(sub) + 2;
  char *dir = malloc(need);
  if (!dir) return dd_fail(l->err, DD_ENOMEM, "out of memory");
  snprintf(dir, need, "%s%s%s", l->root, *sub ? "/" : "", sub);
  DIR *d = opendir(dir);
  if (!d) {
    int e = errno;
    int rc = dd_fail(l->err, e == ENOTDIR ? DD_EARG : DD_EIO, "%s: %s", dir,
                     e == ENOTDIR ? "not a folder" : strerror(e));
    free(dir);
    return rc;
  }
  int rc = DD_OK;
  struct dirent *e;
  while (!rc && (errno = 0, e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* ".", "..", hidden files */
    size_t rn = strlen(sub) + strlen(e->d_name) + 2;
    char *rel = malloc(rn), *full = malloc(need + strlen(e->d_name) + 1);
    if (!rel || !full) {
      free(rel);
      free(full);
      rc = dd_fail(l->err, DD_ENOMEM, "out of memory");
      break;
    }
    snprintf(rel, rn, "%s%s%s", sub, *sub ? "/" : "", e->d_name);
    snprintf(full, need + strlen(e->d_name) + 1, "%s/%s", dir, e->d_name);
    struct stat ls, st;
    if (lstat(full, &ls) == 0) {
      if (S_ISDIR(ls.st_mode)) rc = walk(l, rel, depth + 1);
      /* a link counts when it leads to a regular file; links to folders are not followed */
      else if ((S_ISREG(ls.st_mode) || (S_ISLNK(ls.st_mode) && stat(full, &st) == 0 &&
                                         S_ISREG(st.st_mode))) &&
               dd_dataset_is_image_name(e->d_name))
        rc = add_file(l, rel);
    }
    free(rel);
    free(full);
  }
  if (!rc && errno) rc = dd_fail(l->err, DD_EIO, "%s: %s", dir, strerror(errno));
  closedir(d);
  free(dir);
  return rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int dd_dataset_list(const char *dir, int max_files, dd_dataset *ds, dd_err *err) {
  memset(ds, 0, sizeof *ds);
  struct stat st;
  if (stat(dir, &st) != 0)
    return dd_fail(err, errno == ENOENT ? DD_ENOTFOUND : DD_EIO, "%s: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return dd_fail(err, DD_EARG, "%s: not a folder", dir);
  char *root = dd_strdup(dir);
  if (!root) return dd_fail(err, DD_ENOMEM, "out of memory");
  size_t len = strlen(root);
  while (len > 1 && root[len - 1] == '/') root[--len] = '\0';
  lister l = {.root = root, .max_files = max_files, .err = err};
  int rc = walk(&l, "", 0);
  if (rc) {
    for (int i = 0; i < l.n; i++) free(l.rel[i]);
    free(l.rel);
    free(root);
    return rc;
  }
  if (l.n > 1) qsort(l.rel, (size_t)l.n, sizeof *l.rel, cmp_str);
  ds->root = root;
  ds->n = l.n;
  ds->rel = l.rel;
  return DD_OK;
}

void dd_dataset_free(dd_dataset *ds) {
  if (!ds) return;
  for (int i = 0; i < ds->n; i++) free(ds->rel[i]);
  free(ds->rel);
  free(ds->root);
  memset(ds, 0, sizeof *ds);
}

int dd_dataset_in_shard(int i, int index, int count) {
  return count >= 1 && index >= 1 && index <= count && i >= 0 && i % count == index - 1;
}

/* FNV-1a over the bytes, finished with splitmix64 so nearby paths spread over all bits. */
static uint64_t path_hash(uint64_t h, const char *s) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

uint64_t dd_dataset_seed(uint64_t seed, const char *rel) {
  uint64_t s = seed ^ path_hash(0xcbf29ce484222325ull, rel);
  return dd_rng_next(&s);
}

void dd_dataset_digest(const dd_dataset *ds, char hex[17]) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < ds->n; i++) {
    h = path_hash(h, ds->rel[i]);
    h = (h ^ 0x0a) * 0x100000001b3ull; /* a separator no path contains */
  }
  snprintf(hex, 17, "%016llx", (unsigned long long)h);
}
