#define _GNU_SOURCE /* O_TMPFILE, linkat */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *dd_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int dd_read_file(const char *path, size_t max, void **buf, size_t *len, dd_err *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return dd_fail(err, DD_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return dd_fail(err, DD_EIO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return dd_fail(err, DD_EIO, "%s: is a directory, expected a file", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return dd_fail(err, DD_EIO, "%s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > max) {
    close(fd);
    return dd_fail(err, DD_ELIMIT, "%s: file is %.1f MiB, larger than the %.1f MiB limit", path,
                   st.st_size / 1048576.0, max / 1048576.0);
  }
  size_t n = (size_t)st.st_size;
  char *data = malloc(n ? n : 1);
  if (!data) {
    close(fd);
    return dd_fail(err, DD_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, data + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? errno : 0;
      free(data);
      close(fd);
      return dd_fail(err, DD_EIO, "%s: read failed: %s", path, e ? strerror(e) : "file shrank");
    }
    got += (size_t)r;
  }
  close(fd);
  *buf = data;
  *len = n;
  return DD_OK;
}

/* All len bytes of buf into fd (EINTR retried), then synced: 0, or the errno of the
 * failure. */
static int write_synced(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    len -= (size_t)w;
  }
  return fsync(fd) != 0 ? errno : 0;
}

/* An unnamed file (O_TMPFILE) in the directory of path, for writing; -1 when the filesystem
 * or the kernel has none. */
static int open_unnamed(const char *path) {
#ifdef O_TMPFILE
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  char *dir = malloc(n + 2);
  if (!dir) return -1;
  if (!slash) strcpy(dir, ".");
  else if (n == 0) strcpy(dir, "/");
  else {
    memcpy(dir, path, n);
    dir[n] = 0;
  }
  int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  free(dir);
  return fd;
#else
  (void)path;
  return -1;
#endif
}

/* The data goes first into an unnamed file in path's directory, which gets the temporary
 * name only once it is complete and synced, then is renamed over path: a writer killed while
 * writing (SIGKILL, SIGXFSZ at a file size limit) leaves nothing behind, where a named
 * temporary file used to stay as PATH.tmp.PID.  Without O_TMPFILE (some filesystems) or /proc
 * to link the file by, the named temporary file is written from the start. */
int dd_write_file_atomic(const char *path, const void *buf, size_t len, dd_err *err) {
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 32), proc[64];
  if (!tmp) return dd_fail(err, DD_ENOMEM, "out of memory");
  snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
  int e, fd = open_unnamed(path), linked = 0;
  if (fd >= 0) {
    e = write_synced(fd, buf, len);
    if (e) {
      close(fd);
      free(tmp);
      return dd_fail(err, DD_EIO, "%s: write failed: %s", path, strerror(e));
    }
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    unlink(tmp); /* a file of a dead process of the same pid */
    linked = linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0;
    if (close(fd) != 0 && linked) {
      e = errno;
      unlink(tmp);
      free(tmp);
      return dd_fail(err, DD_EIO, "%s: write failed: %s", path, strerror(e));
    }
  }
  if (!linked) {
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      e = errno;
      free(tmp);
      return dd_fail(err, DD_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    e = write_synced(fd, buf, len);
    if (close(fd) != 0 && !e) e = errno;
    if (e) {
      unlink(tmp);
      free(tmp);
      return dd_fail(err, DD_EIO, "%s: write failed: %s", path, strerror(e));
    }
  }
  if (rename(tmp, path) != 0) {
    e = errno;
    unlink(tmp);
    free(tmp);
    return dd_fail(err, DD_EIO, "%s: cannot rename into place: %s", path, strerror(e));
  }
  free(tmp);
  return DD_OK;
}

int dd_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 256 || lb > 256) return 1 << 20;
  int row[257];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      int best = diag + cost;
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

uint64_t dd_rng_next(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

float dd_rng_uniform(uint64_t *s) { return (float)(dd_rng_next(s) >> 40) * (1.0f / 16777216.0f); }

int dd_rng_range(uint64_t *s, int lo, int hi) {
  uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
  return lo + (int)(((dd_rng_next(s) >> 32) * span) >> 32);
}

float dd_rng_normal(uint64_t *s) {
  const double pi = 3.14159265358979323846;
  double u1 = ((double)(dd_rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
  double u2 = (double)(dd_rng_next(s) >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * pi * u2));
}

_Thread_local int dd_par_serial;

double dd_round_trip_fake;

#define WARM_TRIPS 16
/* A probe gives up after 2 ms and 1 us a trip (three times the slowest trip seen): with
 * more threads than processors (another program busy, or two of ours side by side) each
 * trip waits for the scheduler, milliseconds. */
#define PROBE_MAX_SECONDS(reps) (0.002 + 1e-6 * (double)(reps))

double dd_threads_round_trip_ns(int64_t reps) {
  if (dd_round_trip_fake > 0) return dd_round_trip_fake;
  if (reps < 1 || omp_in_parallel() || omp_get_num_procs() < 2 || omp_get_max_threads() < 2)
    return 0;
  /* the counter alone in its pair of cache lines, which the prefetcher fetches together (on
   * the stack, alone in one line, the trip measured 63-71 ns against 52-54), and static, so
   * one probe at a time: another caller meanwhile gets 0 */
  static struct {
    _Alignas(128) _Atomic int64_t v;
    char pad[120];
  } flag;
  static _Atomic int stop;
  static atomic_flag busy = ATOMIC_FLAG_INIT;
  if (atomic_flag_test_and_set(&busy)) return 0;
  atomic_store(&flag.v, 0);
  atomic_store(&stop, 0);
  double t0 = 0, t1 = 0;
  int64_t done = 0;
  int team = 0;
#pragma omp parallel num_threads(2)
  {
    int me = omp_get_thread_num();
    if (me == 0) team = omp_get_num_threads();
#pragma omp barrier
    int both = team == 2;
    double start = 0, deadline = dd_now_seconds() + PROBE_MAX_SECONDS(reps);
    int64_t i = 0;
    /* timed from the WARM_TRIPS-th trip: the first ones wake a thread that may be asleep */
    for (; i < WARM_TRIPS + reps && both; i++) {
      int64_t want = 2 * i + me;
      if (me == 0 && i == WARM_TRIPS) start = dd_now_seconds();
      unsigned spins = 0;
      while (atomic_load_explicit(&flag.v, memory_order_acquire) != want) {
        if (me == 0 && !(++spins & 1023) && dd_now_seconds() > deadline)
          atomic_store(&stop, 1);
        if (atomic_load_explicit(&stop, memory_order_relaxed)) break;
      }
      if (atomic_load_explicit(&stop, memory_order_relaxed)) break;
      atomic_store_explicit(&flag.v, want + 1, memory_order_release);
    }
    if (me == 0 && both) {
      if (!atomic_load(&stop)) {
        while (atomic_load_explicit(&flag.v, memory_order_acquire) != 2 * (WARM_TRIPS + reps)) {
        }
        done = reps;
      } else {
        done = i > WARM_TRIPS ? i - WARM_TRIPS : 0;
      }
      t0 = start ? start : deadline - PROBE_MAX_SECONDS(reps);
      t1 = dd_now_seconds();
    }
  }
  atomic_flag_clear(&busy);
  return team == 2 ? (t1 - t0) * 1e9 / (double)(done > 0 ? done : 1) : 0;
}

double dd_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
