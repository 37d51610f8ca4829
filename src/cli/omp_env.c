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
 * alone. */
#include <stdlib.h>
#include <unistd.h>

#define DREAM_SPINCOUNT "10000"

/* glibc passes argc, argv and envp to the constructors of the executable. */
__attribute__((constructor)) static void omp_spin_default(int argc, char **argv, char **envp) {
  (void)envp;
  if (argc < 1 || !argv || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", DREAM_SPINCOUNT, 0) != 0) return;
  execv("/proc/self/exe", argv);
}
