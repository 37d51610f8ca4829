/* How long idle OpenMP threads spin before they sleep.
 *
 * libgomp's default is to spin for about 300000 iterations at every barrier.  On a machine
 * that other programs also use, the thread that spins burns the time slice its partner needs
 * to reach the barrier, and the dream loop, which passes thousands of barriers per
 * iteration, runs many times slower than alone when other processes are busy on the same
 * cores.  GOMP_SPINCOUNT=10000 (spin briefly, then sleep) recovers most of that for a small
 * cost on an idle machine (the figures are in bench/README.md).
 *
 * libgomp reads its environment once, when it is loaded, before any code of this program
 * runs; so when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, this constructor sets
 * GOMP_SPINCOUNT and executes the program again, once, before it has done anything.  If that
 * fails the program simply goes on with libgomp's defaults.  A user's own setting is left
 * alone.
 *
 * OpenBLAS's kernels, likewise.  Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its kernels
 * from the CPU models it knows; on a newer one (Emerald Rapids, family 6 model 207, which a
 * VM shows as "Intel(R) Xeon(R) Processor") it falls back to its Prescott SSE3 kernels: 30
 * GFLOP/s on one thread against 138 with its SkylakeX AVX-512 kernels (bench/README.md,
 * modern networks).  When OpenBLAS chose a core without AVX-512 kernels on a CPU that has
 * AVX-512 F, CD, BW, DQ and VL, and OPENBLAS_CORETYPE is not set, the same execution again
 * sets OPENBLAS_CORETYPE=SkylakeX.  OpenBLAS initializes in its own constructor, before this
 * executable's, so its choice can be read here.  `dream --version` names the core in use. */
#include <cblas.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#define DREAM_SPINCOUNT "10000"

/* 1 when OpenBLAS runs kernels older than the CPU's AVX-512 and the user has not chosen. */
static int blas_core_misdetected(void) {
  if (getenv("OPENBLAS_CORETYPE")) return 0;
  const char *core = openblas_get_corename();
  if (!core) return 0;
  static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
  for (int i = 0; avx512_cores[i]; i++)
    if (!strcasecmp(core, avx512_cores[i])) return 0;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}

/* glibc passes argc, argv and envp to the constructors of the executable. */
__attribute__((constructor)) static void omp_spin_default(int argc, char **argv, char **envp) {
  (void)envp;
  if (argc < 1 || !argv) return;
  int again = 0; /* after the exec both variables are set, so this runs once */
  if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT") &&
      setenv("GOMP_SPINCOUNT", DREAM_SPINCOUNT, 0) == 0)
    again = 1;
  if (blas_core_misdetected() && setenv("OPENBLAS_CORETYPE", "SkylakeX", 0) == 0) again = 1;
  if (again) execv("/proc/self/exe", argv);
}
