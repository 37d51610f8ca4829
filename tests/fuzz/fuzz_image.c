/* libFuzzer target: image file bytes -> dd_image_load (through a memfd, since the API takes a
 * path), then resize and conversion to and from a model input.
 *
 * stb_image is compiled into this harness (and only here): the executable's copy interposes
 * on libstb.so's, so the decoder runs instrumented and libFuzzer can see inside it.  The
 * product links Debian's libstb as it is. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef DD_FUZZ_REPLAY /* tests/test_hostile.c replays through libstb as the product does */
/* stb's arithmetic leans on wrap-around (shifts of negative numbers in the IDCT, header
 * numbers that overflow) and, for a PNG whose first IDAT chunk is empty, on NULL + 0
 * and memcpy(NULL, src, 0) (stb_image.h:5130 and 1663, found by CI's fuzzing): those reports are silenced inside stb so that
 * the fuzzer goes on to what can hurt, memory errors, which ASan still catches there. */
#pragma clang attribute push(__attribute__((no_sanitize("signed-integer-overflow", "shift", \
                                                        "pointer-overflow",               \
                                                        "nonnull-attribute"))),           \
                             apply_to = function)
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#pragma clang attribute pop
#endif

#include "fuzz/fuzz.h"
#include "dream/image.h"

/* A small cap keeps each run quick; the header check before it is what matters. */
#define FUZZ_MAX_PIXELS ((size_t)1 << 16)

int dd_fuzz_image(const uint8_t *data, size_t size) {
  const char *path = dd_fuzz_file("fuzz_image", data, size);

  dd_err err;
  dd_image *im = NULL;
  if (dd_image_load(path, FUZZ_MAX_PIXELS, &im, &err)) return 0;
  dd_image *small = NULL;
  if (!dd_image_resize(im, im->w / 2 + 1, im->h / 3 + 1, &small, &err)) {
    dd_preproc pp = {.bgr = 1, .scale = 255.f, .mean = {104, 117, 123}, .std = {1, 1, 1}};
    float *x = malloc((size_t)small->w * (size_t)small->h * 3 * sizeof *x);
    if (x) {
      dd_image_to_input(small, &pp, x);
      dd_input_to_image(x, &pp, small);
      free(x);
    }
    dd_image_free(small);
  }
  dd_image_free(im);
  return 0;
}

DD_FUZZ_TARGET(dd_fuzz_image)
