/* Which fp32 kernels run: the hand-written AVX-512 ones or the generic C (with OpenBLAS for
 * the products).  Chosen once per process from cpuid, whatever -march the build used, so a
 * portable build (-DDREAM_MARCH=x86-64-v2) still runs the AVX-512 kernels on a CPU that has
 * them.
 *
 * The AVX-512 path needs AVX512F, BW, VL and DQ, FMA, and an OS that saves the zmm and
 * opmask state (XCR0 bits 1, 2, 5, 6, 7 from xgetbv).  The environment variable
 * DREAM_KERNELS=generic|avx512 forces a path; asking for avx512 on a CPU without it, or any
 * other value, prints one line on stderr (naming the variable and what the CPU lacks) and
 * the choice falls back to what cpuid gives: generic for a missing AVX-512, the automatic
 * choice for an unknown word.  That line is the one thing the library prints: the variable
 * is read before any caller could be told.
 *
 * The kernels are compiled on every x86-64 build with GCC or Clang, in functions that carry
 * DD_TARGET_AVX512; elsewhere (or with -DDD_NO_AVX512_KERNELS, which checks that the generic
 * code builds alone) DD_KERNELS_AVX512 is never chosen. */
#ifndef DREAM_OPS_CPU_H
#define DREAM_OPS_CPU_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(DD_NO_AVX512_KERNELS)
/* The AVX-512 kernels are compiled in: each function that uses their intrinsics (and each
 * static inline helper it calls) carries DD_TARGET_AVX512 and runs only when
 * dd_kernels_avx512() says so. */
#define DD_AVX512_KERNELS 1
#define DD_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#endif

typedef enum dd_kernels {
  DD_KERNELS_GENERIC = 1, /* C the compiler vectorizes for the build's -march, and OpenBLAS */
  DD_KERNELS_AVX512 = 2,  /* the hand-written AVX-512 kernels */
} dd_kernels;

/* Whether this CPU (and OS) can run path k; DD_KERNELS_GENERIC always.  Thread-safe. */
int dd_kernels_has(dd_kernels k);
/* What the CPU lacks for path k, for messages ("avx512bw"), or NULL when it has it. */
const char *dd_kernels_lack(dd_kernels k);
/* The path the fp32 kernels take in this process: decided once, thread-safe, cheap (one
 * atomic load after the first call). */
dd_kernels dd_kernels_chosen(void);
/* "generic" or "avx512". */
const char *dd_kernels_name(dd_kernels k);
/* For the tests only: makes k the chosen path from now on (set it before any plan is made;
 * plans do not record the path).  Nonzero, and nothing changed, when the CPU lacks k. */
int dd_kernels_force(dd_kernels k);
/* The CPU's brand string from cpuid ("Intel(R) Xeon(R) Processor"), or "unknown CPU". */
const char *dd_cpu_name(void);

/* Whether the AVX-512 kernels run: the branch every dispatching caller takes. */
static inline int dd_kernels_avx512(void) {
#ifdef DD_AVX512_KERNELS
  return dd_kernels_chosen() == DD_KERNELS_AVX512;
#else
  return 0;
#endif
}

#endif
