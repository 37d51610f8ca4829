/* Small internal helpers: strings, whole-file reading with a size cap, atomic writes. */
#ifndef DREAM_UTIL_H
#define DREAM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "dream/error.h"

char *dd_strdup(const char *s);
/* Reads all of `path` (at most `max` bytes) into a malloc'ed buffer. */
int dd_read_file(const char *path, size_t max, void **buf, size_t *len, dd_err *err);
/* Writes `len` bytes to a temporary file beside `path`, syncs it and renames it over `path`:
 * readers see the old file or the whole new one, never a part. */
int dd_write_file_atomic(const char *path, const void *buf, size_t len, dd_err *err);
/* Edit distance, for "did you mean" suggestions. */
int dd_edit_distance(const char *a, const char *b);

#endif
