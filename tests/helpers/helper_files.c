/* Files for tests; see helper_files.h. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "helper_files.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char th_tmpdir[64];

void th_tmpdir_setup(void) {
  snprintf(th_tmpdir, sizeof th_tmpdir, "/tmp/dream_test.XXXXXX");
  cr_assert_not_null(mkdtemp(th_tmpdir));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Without a shell: a fork at the end of a test that capped its address space (test_hostile.c)
 * would have OpenBLAS restart its threads, which then cannot get their buffers. */
void th_tmpdir_teardown(void) {
  cr_assert_eq(nftw(th_tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0, "cannot remove %s",
               th_tmpdir);
}

const char *th_tmp(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", th_tmpdir, name);
  return buf;
}

char *th_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *s = NULL;
  size_t n = 0, cap = 0, got;
  char chunk[4096];
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (n + got + 1 > cap) {
      cap = (n + got + 1) * 2;
      s = realloc(s, cap);
      cr_assert_not_null(s);
    }
    memcpy(s + n, chunk, got);
    n += got;
  }
  fclose(f);
  if (!s) s = calloc(1, 1);
  cr_assert_not_null(s);
  s[n] = 0;
  if (len) *len = n;
  return s;
}

void th_write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s", path);
  cr_assert_eq(fwrite(data, 1, len, f), len, "%s", path);
  cr_assert_eq(fclose(f), 0, "%s", path);
}
