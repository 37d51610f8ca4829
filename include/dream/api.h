/* dream/api.h - DD_API marks what libdream exports.  The library is built with hidden
 * visibility, so a function without DD_API stays inside it. */
#ifndef DREAM_API_H
#define DREAM_API_H

#if defined(_WIN32)
#if defined(DREAM_BUILDING)
#define DD_API __declspec(dllexport)
#else
#define DD_API __declspec(dllimport)
#endif
#else
#define DD_API __attribute__((visibility("default")))
#endif

#endif
