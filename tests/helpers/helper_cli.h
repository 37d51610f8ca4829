/* Running the dream binary as a user does, in a temporary directory: one fixture and one
 * runner for every test of the command line. */
#ifndef DREAM_TEST_HELPER_CLI_H
#define DREAM_TEST_HELPER_CLI_H

#include <stddef.h>

typedef struct th_result {
  int status; /* exit status, or -1 when killed by a signal */
  int signal; /* the signal that killed it, or 0 */
  char *out, *err;
  size_t out_len, err_len;
} th_result;

/* Fixture: a fresh temporary directory (th_tmpdir), DREAM_MODEL_PATH at ../shared/models,
 * OMP_NUM_THREADS=2 unless set.  th_cli_teardown removes the directory. */
void th_cli_setup(void);
void th_cli_teardown(void);
extern char th_tmpdir[64];
/* th_tmpdir/name into buf. */
const char *th_tmp(char *buf, size_t size, const char *name);
/* Runs DREAM_BINARY with the NULL-terminated arguments, stdin from /dev/null, stdout and
 * stderr captured. */
th_result th_run(const char *const *args);
#define TH_RUN(...) th_run((const char *const[]){__VA_ARGS__, NULL})
void th_result_free(th_result *r);
/* The whole file (NUL-terminated; *len may be NULL); NULL when it cannot be read. */
char *th_slurp(const char *path, size_t *len);
void th_write_bytes(const char *path, const void *data, size_t len);
/* A copy of ../shared/images/<name> resized so its longer side is `side`, written to path
 * (format by extension). */
void th_photo(const char *name, int side, const char *path);

#endif
