/* Running the dream binary as a user does, in a temporary directory: one fixture and one
 * runner for every test of the command line. */
#ifndef DREAM_TEST_HELPER_CLI_H
#define DREAM_TEST_HELPER_CLI_H

#include <stddef.h>
#include <sys/types.h>

#include "helper_files.h" /* th_tmpdir, th_tmp, th_slurp, th_write_bytes */

typedef struct th_result {
  int status; /* exit status, or -1 when killed by a signal */
  int signal; /* the signal that killed it, or 0 */
  char *out, *err;
  size_t out_len, err_len;
} th_result;

/* Fixture: a fresh temporary directory (th_tmpdir_setup), DREAM_MODEL_PATH at
 * ../shared/models, DREAM_PRESET_PATH unset, OMP_NUM_THREADS=2 unless set.  th_cli_teardown
 * removes the directory. */
void th_cli_setup(void);
void th_cli_teardown(void);
/* Starts DREAM_BINARY (or $DREAM_TEST_BINARY) with the NULL-terminated arguments, stdin from
 * /dev/null, stdout and stderr to files in th_tmpdir.  The child is killed when the test's
 * process ends, so a test that fails or times out leaves no dream running.  One child at a
 * time: th_wait it before the next. */
pid_t th_spawn(const char *const *args);
/* Waits for th_spawn's child; its status and what it printed. */
th_result th_wait(pid_t pid);
/* th_wait(th_spawn(args)). */
th_result th_run(const char *const *args);
#define TH_RUN(...) th_run((const char *const[]){__VA_ARGS__, NULL})
void th_result_free(th_result *r);
/* A copy of ../shared/images/<name> resized so its longer side is `side`, written to path
 * (format by extension). */
void th_photo(const char *name, int side, const char *path);

#endif
