/* Checks, before stb_image sees a file, for the inputs that make Debian's stb_image 2.27
 * read or write out of bounds.  Each check follows stb's own parsing, so a file stb would
 * decode correctly is never refused. */
#ifndef DREAM_IMAGE_GUARD_H
#define DREAM_IMAGE_GUARD_H

#include <stddef.h>

#include "dream/error.h"

/* DD_OK, or DD_EFORMAT naming `path` and what is corrupt. */
int dd_image_guard(const void *buf, size_t len, const char *path, dd_err *err);

#endif
