/* Tests on every fp32 kernel path this CPU has (ops/cpu.h). */
#ifndef DREAM_TEST_HELPER_KERNELS_H
#define DREAM_TEST_HELPER_KERNELS_H

#include "ops/cpu.h"

/* Runs body once per kernel path the CPU has, generic first, each with that path forced
 * (dd_kernels_force) for its whole run; a path the CPU lacks is skipped with a line on stderr
 * (and an info line in Criterion's log) that says what it lacks, never silently.  With
 * DREAM_KERNELS set (generic, avx2 or avx512), only that path; the test is skipped when the CPU
 * lacks it.  th_kernels_now names the running path.
 * A failure does not name its path: --verbose shows "on the avx512 kernels" before it, or
 * rerun with DREAM_KERNELS set. */
void th_each_kernels(void (*body)(void));
extern dd_kernels th_kernels_now;

#endif
