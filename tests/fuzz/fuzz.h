/* The fuzz targets' entry points.  Each target tests/fuzz/fuzz_<name>.c defines
 * `int dd_fuzz_<name>(const uint8_t *data, size_t size)`; built as a libFuzzer target it
 * also defines LLVMFuzzerTestOneInput (DD_FUZZ_TARGET), and built into the test suite
 * (DD_FUZZ_REPLAY) it does not, so tests/test_hostile.c replays every saved finding through
 * the same code. */
#ifndef DREAM_TESTS_FUZZ_H
#define DREAM_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int dd_fuzz_onnx(const uint8_t *data, size_t size);
int dd_fuzz_tensor(const uint8_t *data, size_t size);
int dd_fuzz_image(const uint8_t *data, size_t size);
int dd_fuzz_movie(const uint8_t *data, size_t size);

#ifdef DD_FUZZ_REPLAY
#define DD_FUZZ_TARGET(fn)
#else
#define DD_FUZZ_TARGET(fn)                                              \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);        \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fn(data, size); }
#endif

#endif
