/* Running the dream binary in a temporary directory; see helper_cli.h. */
#define _GNU_SOURCE
#include "helper_cli.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dream/image.h"
#include "helper_ops.h"

extern char **environ;

void th_cli_setup(void) {
  th_tmpdir_setup();
  char models[512];
  cr_assert_eq(setenv("DREAM_MODEL_PATH", th_shared(models, sizeof models, "models"), 1), 0);
  unsetenv("DREAM_PRESET_PATH");
  setenv("OMP_NUM_THREADS", "2", 0);
}

void th_cli_teardown(void) { th_tmpdir_teardown(); }

pid_t th_spawn(const char *const *args) {
  char out_path[128], err_path[128];
  th_tmp(out_path, sizeof out_path, ".stdout");
  th_tmp(err_path, sizeof err_path, ".stderr");
  /* DREAM_TEST_BINARY runs the tests against another build (an older one, to see them
   * fail on the defects they were written for). */
  const char *bin = getenv("DREAM_TEST_BINARY") ? getenv("DREAM_TEST_BINARY") : DREAM_BINARY;
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)bin;
  for (; args[n - 1] && n < 63; n++) argv[n] = (char *)args[n - 1];
  argv[n] = NULL;
  /* exec's failure comes back through a pipe that a successful exec closes */
  int report[2];
  cr_assert_eq(pipe2(report, O_CLOEXEC), 0);
  pid_t parent = getpid();
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    /* Only async-signal-safe calls from here.  The parent may have died before prctl took
     * effect: then nobody waits for this child. */
    int e = 0;
    /* A shell without job control starts background jobs with SIGINT and SIGQUIT ignored,
     * which exec keeps: the tests' Ctrl-C must reach the program as it would from a terminal. */
    signal(SIGINT, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
      e = errno;
    } else if (getppid() != parent) {
      _exit(127);
    } else {
      int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
      int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (in >= 0 && out >= 0 && err >= 0 && dup2(in, 0) >= 0 && dup2(out, 1) >= 0 &&
          dup2(err, 2) >= 0)
        execve(bin, argv, environ);
      e = errno;
    }
    if (write(report[1], &e, sizeof e) < 0) _exit(126);
    _exit(127);
  }
  close(report[1]);
  int e = 0;
  ssize_t got;
  do got = read(report[0], &e, sizeof e);
  while (got < 0 && errno == EINTR);
  close(report[0]);
  if (got > 0) {
    waitpid(pid, NULL, 0);
    cr_assert_fail("cannot run %s: %s", bin, strerror(e));
  }
  return pid;
}

th_result th_wait(pid_t pid) {
  int ws;
  cr_assert_eq(waitpid(pid, &ws, 0), pid);
  th_result r = {WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, WIFSIGNALED(ws) ? WTERMSIG(ws) : 0,
                 NULL, NULL, 0, 0};
  char path[128];
  r.out = th_slurp(th_tmp(path, sizeof path, ".stdout"), &r.out_len);
  r.err = th_slurp(th_tmp(path, sizeof path, ".stderr"), &r.err_len);
  cr_assert(r.out && r.err);
  return r;
}

th_result th_run(const char *const *args) { return th_wait(th_spawn(args)); }

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
