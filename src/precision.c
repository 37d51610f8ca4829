/* dd_precision_resolve (dream/dream.h): what --precision means on this CPU. */
#include "dream/dream.h"
#include "ops/bf16.h"
#include "ops/cpu.h"

int dd_precision_has_bf16(void) { return dd_bf16_kernel() != DD_BF16_NONE; }

dd_precision dd_precision_resolve(dd_precision asked, int dream_loop) {
  switch (asked) {
    case DD_PRECISION_BF16: return dd_precision_has_bf16() ? DD_PRECISION_BF16 : DD_PRECISION_FP32;
    case DD_PRECISION_AUTO:
      return dream_loop && dd_bf16_pays() ? DD_PRECISION_BF16 : DD_PRECISION_FP32;
    default: return DD_PRECISION_FP32;
  }
}

void dd_system_kernels(const char **cpu, const char **fp32, const char **bf16) {
  if (cpu) *cpu = dd_cpu_name();
  if (fp32) *fp32 = dd_kernels_name(dd_kernels_chosen());
  if (bf16) {
    dd_bf16_isa b = dd_bf16_kernel();
    *bf16 = b == DD_BF16_AMX ? "amx" : b == DD_BF16_AVX512 ? "avx512-bf16" : "none";
  }
}
