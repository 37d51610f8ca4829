/* Running the dream binary in a temporary directory; see helper_cli.h. */
#include "helper_cli.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dream/image.h"
#include "helper_ops.h"

extern char **environ;

char th_tmpdir[64];

void th_cli_setup(void) {
  snprintf(th_tmpdir, sizeof th_tmpdir, "/tmp/dream_test.XXXXXX");
  cr_assert_not_null(mkdtemp(th_tmpdir));
  char models[512];
  cr_assert_eq(setenv("DREAM_MODEL_PATH", th_shared(models, sizeof models, "models"), 1), 0);
  unsetenv("DREAM_PRESET_PATH");
  setenv("OMP_NUM_THREADS", "2", 0);
}

void th_cli_teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", th_tmpdir);
  cr_assert_eq(system(cmd), 0);
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
  s[n] = 0;
  if (len) *len = n;
  return s;
}

void th_write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "%s", path);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

th_result th_run(const char *const *args) {
  char out_path[128], err_path[128];
  th_tmp(out_path, sizeof out_path, ".stdout");
  th_tmp(err_path, sizeof err_path, ".stderr");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  /* DREAM_TEST_BINARY runs the tests against another build (an older one, to see them
   * fail on the defects they were written for). */
  const char *bin = getenv("DREAM_TEST_BINARY") ? getenv("DREAM_TEST_BINARY") : DREAM_BINARY;
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)bin;
  for (; args[n - 1] && n < 63; n++) argv[n] = (char *)args[n - 1];
  argv[n] = NULL;
  pid_t pid;
  int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  cr_assert_eq(rc, 0, "cannot run %s", bin);
  int ws;
  cr_assert_eq(waitpid(pid, &ws, 0), pid);
  th_result r = {WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, WIFSIGNALED(ws) ? WTERMSIG(ws) : 0,
                 NULL, NULL, 0, 0};
  r.out = th_slurp(out_path, &r.out_len);
  r.err = th_slurp(err_path, &r.err_len);
  cr_assert(r.out && r.err);
  return r;
}

void th_result_free(th_result *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

void th_photo(const char *name, int side, const char *path) {
  char rel[256], src[512];
  snprintf(rel, sizeof rel, "images/%s", name);
  th_shared(src, sizeof src, rel);
  dd_err err;
  dd_image *im, *r;
  cr_assert_eq(dd_image_load(src, 0, &im, &err), 0, "%s", err.msg);
  int longer = im->w > im->h ? im->w : im->h;
  int w = im->w * side / longer, h = im->h * side / longer;
  cr_assert_eq(dd_image_resize(im, w < 1 ? 1 : w, h < 1 ? 1 : h, &r, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_image_save(path, r, &err), 0, "%s", err.msg);
  dd_image_free(im);
  dd_image_free(r);
}
