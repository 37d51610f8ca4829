/* dream/version.h - the library's version.  CMake reads these three numbers for the
 * project's version and the shared library's soname. */
#ifndef DREAM_VERSION_H
#define DREAM_VERSION_H

#define DD_VERSION_MAJOR 0
#define DD_VERSION_MINOR 4
#define DD_VERSION_PATCH 0

#define DD_VERSION_STR_(a, b, c) #a "." #b "." #c
#define DD_VERSION_STR(a, b, c) DD_VERSION_STR_(a, b, c)
#define DD_VERSION_STRING DD_VERSION_STR(DD_VERSION_MAJOR, DD_VERSION_MINOR, DD_VERSION_PATCH)

#endif
