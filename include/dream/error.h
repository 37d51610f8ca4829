/* dream/error.h - status codes and error messages.
 *
 * Every fallible function in libdream returns an int: 0 (DD_OK) on success or one
 * of the negative DD_E* codes below.  It also takes a `dd_err *` (may be NULL) into
 * which it writes a message with context, e.g.
 *   "model.onnx: node 'inception_4c/3x3': Conv weight has 3 dims, expected 4".
 * A function that fails leaves its outputs untouched.  Only the CLI prints or exits.
 */
#ifndef DREAM_ERROR_H
#define DREAM_ERROR_H

#include "dream/api.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description): the one list the enum, dd_strerror and dd_errname come from. */
#define DD_ERRNO_MAP(X)                                                  \
  X(OK, 0, "success")                                                    \
  X(EIO, -1, "cannot read or write a file")                              \
  X(EFORMAT, -2, "malformed file")                                       \
  X(EUNSUPPORTED, -3, "unsupported operator, attribute or type")         \
  X(ESHAPE, -4, "shapes do not fit")                                     \
  X(ENOMEM, -5, "out of memory")                                         \
  X(ELIMIT, -6, "a size exceeds a limit")                                \
  X(EARG, -7, "invalid argument")                                        \
  X(ENOTFOUND, -8, "not found")                                          \
  X(EINTR, -9, "interrupted")

typedef enum dd_status {
#define DD_X_(name, value, desc) DD_##name = value,
  DD_ERRNO_MAP(DD_X_)
#undef DD_X_
} dd_status;

#define DD_ERR_MSG_MAX 1024

/* A caller-owned error record.  `code` is the last status, `msg` says why. */
typedef struct dd_err {
  int code;
  char msg[DD_ERR_MSG_MAX];
} dd_err;

/* Description of a status code ("malformed file"); never NULL. */
DD_API const char *dd_strerror(int code);
/* Name of a status code ("DD_EFORMAT"); never NULL. */
DD_API const char *dd_errname(int code);

/* Record `code` and a printf-style message in `err` (if not NULL); returns `code`,
 * so callers can write `return dd_fail(err, DD_EFORMAT, "%s: ...", path);`. */
DD_API int dd_fail(dd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in `err` with "prefix: " (e.g. a file name); returns err->code. */
DD_API int dd_err_prefix(dd_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
