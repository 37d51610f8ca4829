/* Which fp32 kernels run: the hand-written AVX-512 ones, the generic C with the AVX2 path's
 * products (ops/sgemm_avx2.c), or the generic C with OpenBLAS for the products.  Chosen once
 * per process from cpuid, whatever -march the build used, so a portable build
 * (-DDREAM_MARCH=x86-64-v2) still runs the AVX-512 or AVX2 kernels on a CPU that has them.
 *
 * The AVX-512 path needs AVX512F, BW, VL and DQ, FMA, and an OS that saves the zmm and
 * opmask state (XCR0 bits 1, 2, 5, 6, 7 from xgetbv); the AVX2 path AVX2, FMA and XCR0 bits 1
 * and 2.  The best the CPU has runs.  The environment variable
 * DREAM_KERNELS=generic|avx2|avx512 forces a path; asking for one the CPU lacks, or any other
 * value, prints one line on stderr (naming the variable and what the CPU lacks) and the
 * choice falls back to what cpuid gives.  That line is the one thing the library prints: the
 * variable is read before any caller could be told.
 *
 * The kernels are compiled on every x86-64 build with GCC or Clang, in functions that carry
 * DD_TARGET_AVX512 or DD_TARGET_AVX2; elsewhere (or with -DDD_NO_AVX512_KERNELS, which checks
 * that the generic code builds alone) only DD_KERNELS_GENERIC is chosen. */
#ifndef DREAM_OPS_CPU_H
#define DREAM_OPS_CPU_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(DD_NO_AVX512_KERNELS)
/* The AVX-512 kernels are compiled in: each function that uses their intrinsics (and each
 * static inline helper it calls) carries DD_TARGET_AVX512 and runs only when
 * dd_kernels_avx512() says so. */
#define DD_AVX512_KERNELS 1
#define DD_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
/* The AVX2 path's kernels (ops/sgemm_avx2.c), compiled on the same builds. */
#define DD_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

typedef enum dd_kernels {
  DD_KERNELS_GENERIC = 1, /* C the compiler vectorizes for the build's -march, and OpenBLAS */
  DD_KERNELS_AVX512 = 2,  /* the hand-written AVX-512 kernels */
  DD_KERNELS_AVX2 = 3,    /* the generic path, its products in ops/sgemm_avx2.c's AVX2 tile */
} dd_kernels;

/* Whether this CPU (and OS) can run path k; DD_KERNELS_GENERIC always.  Thread-safe. */
int dd_kernels_has(dd_kernels k);
/* What the CPU lacks for path k, for messages ("avx512bw"), or NULL when it has it. */
const char *dd_kernels_lack(dd_kernels k);
/* The path the fp32 kernels take in this process: decided once, thread-safe, cheap (one
 * atomic load after the first call). */
dd_kernels dd_kernels_chosen(void);
/* "generic", "avx512" or "avx2". */
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

/* Whether the products are our own (the AVX-512 or AVX2 path), not OpenBLAS's: every element
 * of C then gets the same operations whatever the thread count and the split. */
static inline int dd_kernels_own_products(void) {
  return dd_kernels_chosen() != DD_KERNELS_GENERIC;
}

/* Whether the AVX2 path runs: the generic path but for its products (ops/sgemm_avx2.h). */
static inline int dd_kernels_avx2(void) {
#ifdef DD_AVX512_KERNELS
  return dd_kernels_chosen() == DD_KERNELS_AVX2;
#else
  return 0;
#endif
}

#endif
