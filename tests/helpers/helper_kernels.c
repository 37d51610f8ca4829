#include "helper_kernels.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dd_kernels th_kernels_now = DD_KERNELS_GENERIC;

void th_each_kernels(void (*body)(void)) {
  static const dd_kernels paths[] = {DD_KERNELS_GENERIC, DD_KERNELS_AVX2, DD_KERNELS_AVX512};
  const char *only = getenv("DREAM_KERNELS");
  if (only && !*only) only = NULL;
  int ran = 0;
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    const char *name = dd_kernels_name(paths[i]);
    if (only && strcmp(only, name)) continue;
    if (!dd_kernels_has(paths[i])) {
      /* loud: on stderr as well as in Criterion's log.  The log line is info, not a warning:
       * Criterion exits non-zero after any warning (unless run with --ignore-warnings), so a
       * warning here failed every run of the suite on a CPU without AVX-512 (AMD Zen 3)
       * with every test passing. */
      cr_log_info("skipped the %s kernels: this CPU lacks %s", name, dd_kernels_lack(paths[i]));
      fprintf(stderr, "skipped: the %s kernels (this CPU lacks %s)\n", name,
              dd_kernels_lack(paths[i]));
      continue;
    }
    cr_assert_eq(dd_kernels_force(paths[i]), 0);
    th_kernels_now = paths[i];
    cr_log_info("on the %s kernels", name);
    body();
    ran++;
  }
  if (!ran) cr_skip_test("DREAM_KERNELS=%s: this CPU lacks that kernel path", only);
}
