#include "dream/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *dd_strerror(int code) {
  switch (code) {
#define DD_X_(name, value, desc) \
  case value:                    \
    return desc;
    DD_ERRNO_MAP(DD_X_)
#undef DD_X_
  }
  return "unknown error";
}

const char *dd_errname(int code) {
  switch (code) {
#define DD_X_(name, value, desc) \
  case value:                    \
    return "DD_" #name;
    DD_ERRNO_MAP(DD_X_)
#undef DD_X_
  }
  return "DD_UNKNOWN";
}

int dd_fail(dd_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

int dd_err_prefix(dd_err *err, const char *fmt, ...) {
  if (!err) return DD_EARG;
  char prefix[DD_ERR_MSG_MAX], old[DD_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return err->code;
}
