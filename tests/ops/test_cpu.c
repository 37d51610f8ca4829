/* The fp32 kernel path (ops/cpu.c): chosen from cpuid, forced by DREAM_KERNELS, refused for
 * a path the CPU lacks.  Each test runs in its own process, so each makes its own first
 * choice. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu.h"

/* Everything the test wrote on stderr so far (cr_redirect_stderr), NUL-terminated. */
static char *stderr_text(void) {
  static char buf[4096];
  fflush(stderr);
  FILE *f = cr_get_redirected_stderr();
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  return buf;
}

/* The path the process takes by itself: AVX-512, else AVX2, else generic. */
static dd_kernels best(void) {
  return dd_kernels_has(DD_KERNELS_AVX512) ? DD_KERNELS_AVX512
         : dd_kernels_has(DD_KERNELS_AVX2) ? DD_KERNELS_AVX2
                                            : DD_KERNELS_GENERIC;
}

Test(cpu, the_default_is_the_best_path_the_cpu_has) {
  unsetenv("DREAM_KERNELS");
  dd_kernels want = best();
  cr_assert_eq(dd_kernels_chosen(), want, "chose %s", dd_kernels_name(dd_kernels_chosen()));
  cr_assert_eq(dd_kernels_chosen(), want, "the choice changed on the second call");
  cr_assert(dd_kernels_has(DD_KERNELS_GENERIC));
  cr_assert_null(dd_kernels_lack(DD_KERNELS_GENERIC));
  cr_assert_eq(dd_kernels_has(DD_KERNELS_AVX512), dd_kernels_lack(DD_KERNELS_AVX512) == NULL);
  cr_assert_eq(dd_kernels_has(DD_KERNELS_AVX2), dd_kernels_lack(DD_KERNELS_AVX2) == NULL);
  /* every CPU with AVX-512 (F, and the FMA it needs) has AVX2 */
  if (dd_kernels_has(DD_KERNELS_AVX512)) cr_assert(dd_kernels_has(DD_KERNELS_AVX2));
  cr_assert_str_eq(dd_kernels_name(DD_KERNELS_AVX2), "avx2");
  cr_assert(dd_cpu_name()[0]);
  cr_log_info("%s: %s kernels", dd_cpu_name(), dd_kernels_name(want));
}

Test(cpu, dream_kernels_generic_forces_the_generic_path, .init = cr_redirect_stderr) {
  setenv("DREAM_KERNELS", "generic", 1);
  cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_GENERIC);
  cr_assert_eq(dd_kernels_avx512(), 0);
  cr_assert_eq(dd_kernels_avx2(), 0);
  cr_assert_str_empty(stderr_text());
}

Test(cpu, dream_kernels_avx512_runs_avx512_or_says_what_the_cpu_lacks,
     .init = cr_redirect_stderr) {
  setenv("DREAM_KERNELS", "avx512", 1);
  if (dd_kernels_has(DD_KERNELS_AVX512)) {
    cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_AVX512);
    cr_assert_str_empty(stderr_text());
    return;
  }
  cr_assert_eq(dd_kernels_chosen(), best());
  const char *e = stderr_text();
  cr_assert(strstr(e, "DREAM_KERNELS=avx512") && strstr(e, dd_kernels_lack(DD_KERNELS_AVX512)),
            "%s", e);
  dd_kernels_chosen();
  cr_assert_eq(strstr(stderr_text(), "DREAM_KERNELS") == NULL, 1, "said twice");
}

Test(cpu, dream_kernels_avx2_runs_avx2_or_says_what_the_cpu_lacks, .init = cr_redirect_stderr) {
  setenv("DREAM_KERNELS", "avx2", 1);
  if (dd_kernels_has(DD_KERNELS_AVX2)) {
    cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_AVX2);
    cr_assert_eq(dd_kernels_avx2(), 1);
    cr_assert_eq(dd_kernels_avx512(), 0);
    cr_assert_str_empty(stderr_text());
    return;
  }
  cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_GENERIC);
  const char *e = stderr_text();
  cr_assert(strstr(e, "DREAM_KERNELS=avx2") && strstr(e, dd_kernels_lack(DD_KERNELS_AVX2)), "%s",
            e);
}

Test(cpu, an_unknown_dream_kernels_is_named_once_and_the_default_runs,
     .init = cr_redirect_stderr) {
  setenv("DREAM_KERNELS", "sse2", 1);
  dd_kernels want = best();
  cr_assert_eq(dd_kernels_chosen(), want);
  cr_assert_eq(dd_kernels_chosen(), want);
  const char *e = stderr_text();
  const char *at = strstr(e, "DREAM_KERNELS='sse2' is not a kernel path");
  cr_assert(at, "%s", e);
  cr_assert_null(strstr(at + 1, "DREAM_KERNELS"), "said twice: %s", e);
}

Test(cpu, force_switches_paths_and_refuses_one_the_cpu_lacks) {
  unsetenv("DREAM_KERNELS");
  cr_assert_eq(dd_kernels_force(DD_KERNELS_GENERIC), 0);
  cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_GENERIC);
  if (dd_kernels_has(DD_KERNELS_AVX2)) {
    cr_assert_eq(dd_kernels_force(DD_KERNELS_AVX2), 0);
    cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_AVX2);
    cr_assert_eq(dd_kernels_avx2(), 1);
    cr_assert_eq(dd_kernels_force(DD_KERNELS_GENERIC), 0);
  } else {
    cr_assert_neq(dd_kernels_force(DD_KERNELS_AVX2), 0);
    cr_log_info("skipped the AVX2 half: this CPU lacks %s", dd_kernels_lack(DD_KERNELS_AVX2));
    fprintf(stderr, "skipped: the AVX2 half of cpu/force_switches_paths (this CPU lacks %s)\n",
            dd_kernels_lack(DD_KERNELS_AVX2));
  }
  cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_GENERIC);
  if (!dd_kernels_has(DD_KERNELS_AVX512)) {
    cr_assert_neq(dd_kernels_force(DD_KERNELS_AVX512), 0);
    cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_GENERIC);
    /* info, not a warning (helper_kernels.c says why), and on stderr to be heard */
    cr_log_info("skipped the AVX-512 half: this CPU lacks %s", dd_kernels_lack(DD_KERNELS_AVX512));
    fprintf(stderr, "skipped: the AVX-512 half of cpu/force_switches_paths (this CPU lacks %s)\n",
            dd_kernels_lack(DD_KERNELS_AVX512));
    return;
  }
  cr_assert_eq(dd_kernels_force(DD_KERNELS_AVX512), 0);
  cr_assert_eq(dd_kernels_chosen(), DD_KERNELS_AVX512);
  cr_assert_eq(dd_kernels_avx512(), 1);
}
