/* dd_write_file_atomic (src/util.c), through which every image, job file and frame is saved:
 * the new file replaces the old one whole, and a writer killed while writing leaves nothing
 * behind (it once left PATH.tmp.PID).  The kill comes from the kernel itself: a file size
 * limit (RLIMIT_FSIZE) below the file's size sends SIGXFSZ on the write that crosses it. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helper_files.h"
#include "util.h"

TestSuite(files, .init = th_tmpdir_setup, .fini = th_tmpdir_teardown);

/* The names in dir, joined by spaces (at most size bytes); returns how many. */
static int list_dir(const char *dir, char *names, size_t size) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
  int n = 0;
  names[0] = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    size_t used = strlen(names);
    snprintf(names + used, size - used, "%s%s", n ? " " : "", e->d_name);
    n++;
  }
  closedir(d);
  return n;
}

static void need_unnamed_files(const char *dir) {
  int fd = open(dir, O_TMPFILE | O_WRONLY, 0600);
  if (fd < 0) cr_skip_test("%s: no O_TMPFILE here (%s)", dir, strerror(errno));
  close(fd);
}

/* path holds exactly the len bytes of want. */
static void expect_file(const char *path, const void *want, size_t len) {
  size_t got;
  char *s = th_slurp(path, &got);
  cr_assert_not_null(s, "%s cannot be read", path);
  cr_assert(got == len && !memcmp(s, want, len), "%s: not the %zu bytes written", path, len);
  free(s);
}

Test(files, atomic_write_replaces_the_file_and_leaves_nothing_else) {
  char path[128], names[256];
  const char *dir = th_tmpdir;
  th_tmp(path, sizeof path, "out.bin");
  unsigned char a[1000], b[3000];
  memset(a, 1, sizeof a);
  for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(i * 7);
  dd_err err;
  cr_assert_eq(dd_write_file_atomic(path, a, sizeof a, &err), 0, "%s", err.msg);
  cr_assert_eq(dd_write_file_atomic(path, b, sizeof b, &err), 0, "%s", err.msg);
  expect_file(path, b, sizeof b);
  cr_assert_eq(list_dir(dir, names, sizeof names), 1, "left in the directory: %s", names);
  /* a relative path: the current directory's unnamed file */
  cr_assert_eq(chdir(dir), 0);
  cr_assert_eq(dd_write_file_atomic("rel.bin", a, sizeof a, &err), 0, "%s", err.msg);
  expect_file("rel.bin", a, sizeof a);
  cr_assert_eq(list_dir(dir, names, sizeof names), 2, "left in the directory: %s", names);
  /* a directory that cannot be written: the error names the file */
  cr_assert_neq(dd_write_file_atomic("/proc/dream-no/out.bin", a, sizeof a, &err), 0);
  cr_assert(strstr(err.msg, "/proc/dream-no/out.bin"), "%s", err.msg);
}

Test(files, a_writer_killed_while_writing_leaves_the_old_file_and_nothing_else) {
  char path[128], names[256];
  const char *dir = th_tmpdir;
  need_unnamed_files(dir);
  th_tmp(path, sizeof path, "out.bin");
  unsigned char old[100];
  memset(old, 9, sizeof old);
  dd_err err;
  cr_assert_eq(dd_write_file_atomic(path, old, sizeof old, &err), 0, "%s", err.msg);
  size_t big = (size_t)4 << 20;
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_DFL);
    struct rlimit lim = {65536, 65536};
    setrlimit(RLIMIT_FSIZE, &lim);
    unsigned char *buf = calloc(big, 1);
    if (buf) dd_write_file_atomic(path, buf, big, &err);
    _exit(3); /* not reached: SIGXFSZ ends the write */
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGXFSZ,
            "the writer was not killed by SIGXFSZ (status %#x)", st);
  cr_assert_eq(list_dir(dir, names, sizeof names), 1, "left in the directory: %s", names);
  expect_file(path, old, sizeof old); /* the old file, untouched */
}
