/* libFuzzer target: movie file bytes -> dd_movie_read_open and dd_movie_read (through a
 * memfd, since the API takes a path): libavformat probes the bytes, libavcodec decodes, and
 * our reader converts each frame with libswscale.  FFmpeg's own libraries run as Debian
 * builds them (not instrumented); what the fuzzer checks is dream's side: every context
 * freed on every path (LeakSanitizer), no read past a frame, the pixel cap honoured, and a
 * clear status for whatever the bytes are. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "dream/video.h"

/* Small caps keep each run quick: a frame of at most 2^16 pixels, at most 8 frames. */
#define FUZZ_MAX_PIXELS ((size_t)1 << 16)
#define FUZZ_MAX_FRAMES 8

int dd_fuzz_movie(const uint8_t *data, size_t size) {
  const char *path = dd_fuzz_file("fuzz_movie", data, size);

  dd_err err;
  dd_movie_reader *r = dd_movie_read_open(path, FUZZ_MAX_PIXELS, &err);
  if (!r) return 0;
  dd_movie_info info;
  dd_movie_read_info(r, &info);
  if ((size_t)info.w * (size_t)info.h > FUZZ_MAX_PIXELS) abort(); /* the cap was not honoured */
  dd_image *frame = NULL;
  for (int i = 0; i < FUZZ_MAX_FRAMES; i++) {
    int rc = dd_movie_read(r, &frame, &err);
    if (rc != 1) break;
    if ((size_t)frame->w * (size_t)frame->h > FUZZ_MAX_PIXELS) abort();
    volatile float sink = frame->rgb[0] + frame->rgb[(size_t)frame->w * frame->h * 3 - 1];
    (void)sink;
  }
  dd_image_free(frame);
  dd_movie_read_close(r);
  return 0;
}

DD_FUZZ_TARGET(dd_fuzz_movie)
