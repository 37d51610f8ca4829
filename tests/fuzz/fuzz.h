/* The fuzz targets' entry points.  Each target tests/fuzz/fuzz_<name>.c defines
 * `int dd_fuzz_<name>(const uint8_t *data, size_t size)`; built as a libFuzzer target it
 * also defines LLVMFuzzerTestOneInput (DD_FUZZ_TARGET), and built into the test suite
 * (DD_FUZZ_REPLAY) it does not, so tests/test_hostile.c replays every saved finding through
 * the same code. */
/* Includers define _GNU_SOURCE first (memfd_create). */
#ifndef DREAM_TESTS_FUZZ_H
#define DREAM_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

int dd_fuzz_onnx(const uint8_t *data, size_t size);
int dd_fuzz_tensor(const uint8_t *data, size_t size);
int dd_fuzz_image(const uint8_t *data, size_t size);
int dd_fuzz_movie(const uint8_t *data, size_t size);

/* For APIs that take a path: writes `data` into a memfd (one per target's source file, made
 * on the first call and named `name`, then rewritten) and returns its /proc/self/fd path. */
static inline const char *dd_fuzz_file(const char *name, const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create(name, 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
  return path;
}

#ifdef DD_FUZZ_REPLAY
#define DD_FUZZ_TARGET(fn)
#else
#define DD_FUZZ_TARGET(fn)                                              \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);        \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fn(data, size); }
#endif

#endif
