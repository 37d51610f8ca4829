/* Small internal helpers: strings, whole-file reading with a size cap, atomic writes, the
 * random generator, the clock and the threading threshold that every module shares. */
#ifndef DREAM_UTIL_H
#define DREAM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "dream/error.h"

char *dd_strdup(const char *s);
/* Reads all of `path` (at most `max` bytes) into a malloc'ed buffer. */
int dd_read_file(const char *path, size_t max, void **buf, size_t *len, dd_err *err);
/* Writes `len` bytes to a temporary file beside `path` (unnamed while it is written, where the
 * filesystem allows), syncs it and renames it over `path`: readers see the old file or the
 * whole new one, never a part, and a writer killed while writing leaves no file behind. */
int dd_write_file_atomic(const char *path, const void *buf, size_t len, dd_err *err);
/* Edit distance, for "did you mean" suggestions. */
int dd_edit_distance(const char *a, const char *b);

/* ---- random numbers ----
 * splitmix64: the whole state is one word carried by the caller (seeded from the
 * parameters), so a run repeats exactly from its seed and no state is global. */
uint64_t dd_rng_next(uint64_t *s);
/* Uniform in [0, 1), 24 bits. */
float dd_rng_uniform(uint64_t *s);
/* Uniform integer in lo..hi (inclusive). */
int dd_rng_range(uint64_t *s, int lo, int hi);
/* Standard normal (Box-Muller on two draws; the first kept away from 0 for the log). */
float dd_rng_normal(uint64_t *s);

/* Seconds on the monotonic clock, for durations. */
double dd_now_seconds(void);

/* Nonzero (on this thread) while a plan made with DD_PLAN_SERIAL runs (src/graph.c): every
 * loop of the ops then stays on the calling thread, which is itself one of several running
 * plans side by side (the trainer's chunks of a batch, src/train.c). */
extern _Thread_local int dd_par_serial;
/* A threshold no loop reaches (with room for the multiples of DD_PAR_MIN the ops use). */
#define DD_PAR_NEVER (INT64_MAX / 1024)
/* Element counts below which a loop is not worth splitting across threads: under it the
 * cost of waking the second core is more than the work.  8192, not more: a loop left on one
 * thread reads the half of its input that the other core wrote, line by line from that
 * core's cache (MobileNet v3's squeeze-excitation products, 28K floats after a depthwise
 * convolution split over both cores, took 0.014 ms on one thread and 0.05 ms on the first of
 * two); split, each thread mostly reads what it wrote.  32768 before: MobileNet v3's 2-thread
 * forward 5% slower (median of 12 alternated pairs), the others level.  The split never
 * changes results (loops are element-wise, or sum in chunks fixed by the count).  Under
 * dd_par_serial no loop is split. */
#define DD_PAR_MIN (dd_par_serial ? DD_PAR_NEVER : INT64_C(8192))

/* The round trip of one cache line between two OpenMP threads handing a counter back and
 * forth `reps` times, in ns per trip: what every barrier and every value one thread writes
 * and the other reads pays.  On the AMD EPYC VM of sessions 10-15 it is about 60 ns for
 * minutes (the two vCPUs sharing a cache), then about 370 ns.  0 when there are fewer than
 * two threads or processors.  (dd_round_trip_fake, when above 0, is returned instead: for
 * tests.) */
double dd_threads_round_trip_ns(int64_t reps);
extern double dd_round_trip_fake;

#endif
