/* Files for tests: a fresh temporary directory per test (the fixture), and whole files read
 * and written. */
#ifndef DREAM_TEST_HELPER_FILES_H
#define DREAM_TEST_HELPER_FILES_H

#include <stddef.h>

/* Fixture: a fresh temporary directory, th_tmpdir; th_tmpdir_teardown removes it and all it
 * holds.  Use as TestSuite(x, .init = th_tmpdir_setup, .fini = th_tmpdir_teardown). */
void th_tmpdir_setup(void);
void th_tmpdir_teardown(void);
extern char th_tmpdir[64];
/* th_tmpdir/name into buf; returns buf. */
const char *th_tmp(char *buf, size_t size, const char *name);

/* The whole file (NUL-terminated; *len may be NULL); NULL when it cannot be read. */
char *th_slurp(const char *path, size_t *len);
/* Writes len bytes to path; the test fails when it cannot. */
void th_write_bytes(const char *path, const void *data, size_t len);

#endif
