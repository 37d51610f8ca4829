/* The fp32 kernel path (see cpu.h): cpuid and xgetbv read once, DREAM_KERNELS applied once. */
#include "ops/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DD_AVX512_KERNELS
#include <cpuid.h>
#endif

static const char *avx512_lack; /* NULL: the CPU runs the AVX-512 kernels */
static const char *avx2_lack;   /* NULL: the CPU runs the AVX2 kernels */
static char cpu_name[49] = "unknown CPU";
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

#ifdef DD_AVX512_KERNELS
static void detect(void) {
  unsigned a, b, c, d;
  unsigned brand[12];
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
    for (unsigned i = 0; i < 3; i++)
      __get_cpuid(0x80000002u + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2],
                  &brand[4 * i + 3]);
    memcpy(cpu_name, brand, 48);
    cpu_name[48] = '\0';
    char *s = cpu_name; /* Intel pads the string with leading spaces */
    while (*s == ' ') s++;
    memmove(cpu_name, s, strlen(s) + 1);
    for (size_t n = strlen(cpu_name); n > 0 && cpu_name[n - 1] == ' '; n--) cpu_name[n - 1] = 0;
    if (!cpu_name[0]) strcpy(cpu_name, "unknown CPU");
  }
  if (!__get_cpuid(1, &a, &b, &c, &d)) {
    avx512_lack = avx2_lack = "cpuid leaf 1";
    return;
  }
  int fma = c >> 12 & 1, osxsave = c >> 27 & 1;
  /* the instructions first, then the OS's support for their registers: a CPU without
   * AVX-512 is named for that ("avx512f"), not for the XCR0 bits its OS has no reason to set */
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    avx512_lack = "avx512f";
    avx2_lack = "avx2";
    return;
  }
  avx2_lack = !(b >> 5 & 1) ? "avx2" : !fma ? "fma" : NULL;
  unsigned lo = 0, hi;
  if (osxsave) __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  /* XCR0: SSE (1), AVX (2) */
  if (!avx2_lack && (!osxsave || (lo & 0x6u) != 0x6u))
    avx2_lack = "OS support for the AVX state (XCR0)";
  avx512_lack = !(b >> 16 & 1) ? "avx512f"
                : !(b >> 30 & 1) ? "avx512bw"
                : !(b >> 31 & 1) ? "avx512vl"
                : !(b >> 17 & 1) ? "avx512dq"
                : !fma           ? "fma"
                                 : NULL;
  if (avx512_lack) return;
  if (!osxsave) {
    avx512_lack = "OS support for the AVX state (OSXSAVE)";
    return;
  }
  /* XCR0: SSE (1), AVX (2), opmask (5), upper halves of zmm0-15 (6), zmm16-31 (7) */
  if ((lo & 0xe6u) != 0xe6u) avx512_lack = "OS support for the zmm and opmask registers (XCR0)";
}
#else
static void detect(void) {
  avx512_lack = "an x86-64 build (this one has no AVX-512 kernels)";
  avx2_lack = "an x86-64 build (this one has no AVX2 kernels)";
}
#endif

int dd_kernels_has(dd_kernels k) { return dd_kernels_lack(k) == NULL; }

const char *dd_kernels_lack(dd_kernels k) {
  pthread_once(&detect_once, detect);
  return k == DD_KERNELS_AVX512 ? avx512_lack : k == DD_KERNELS_AVX2 ? avx2_lack : NULL;
}

const char *dd_kernels_name(dd_kernels k) {
  return k == DD_KERNELS_AVX512 ? "avx512" : k == DD_KERNELS_AVX2 ? "avx2" : "generic";
}

const char *dd_cpu_name(void) {
  pthread_once(&detect_once, detect);
  return cpu_name;
}

/* 0 until decided; then a dd_kernels. */
static atomic_int chosen;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static void choose(void) {
  dd_kernels best = dd_kernels_has(DD_KERNELS_AVX512) ? DD_KERNELS_AVX512
                    : dd_kernels_has(DD_KERNELS_AVX2) ? DD_KERNELS_AVX2
                                                       : DD_KERNELS_GENERIC;
  dd_kernels k = best;
  const char *env = getenv("DREAM_KERNELS");
  if (env && *env) {
    if (!strcmp(env, "generic")) {
      k = DD_KERNELS_GENERIC;
    } else if (!strcmp(env, "avx512") || !strcmp(env, "avx2")) {
      dd_kernels want = !strcmp(env, "avx512") ? DD_KERNELS_AVX512 : DD_KERNELS_AVX2;
      if (dd_kernels_has(want))
        k = want;
      else
        fprintf(stderr,
                "dream: DREAM_KERNELS=%s, but this CPU (%s) lacks %s: the %s kernels run\n",
                env, dd_cpu_name(), dd_kernels_lack(want), dd_kernels_name(best));
    } else {
      fprintf(stderr,
              "dream: DREAM_KERNELS='%s' is not a kernel path (expected generic, avx2 or "
              "avx512): the %s kernels run\n",
              env, dd_kernels_name(best));
    }
  }
  int none = 0; /* a dd_kernels_force before the first call wins */
  atomic_compare_exchange_strong(&chosen, &none, (int)k);
}

dd_kernels dd_kernels_chosen(void) {
  int k = atomic_load_explicit(&chosen, memory_order_acquire);
  if (k) return (dd_kernels)k;
  pthread_once(&choose_once, choose);
  return (dd_kernels)atomic_load_explicit(&chosen, memory_order_acquire);
}

int dd_kernels_force(dd_kernels k) {
  if (!dd_kernels_has(k)) return 1;
  atomic_store_explicit(&chosen, (int)k, memory_order_release);
  return 0;
}
