#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

int dd_write_file_atomic(const char *path, const void *buf, size_t len, dd_err *err) {
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 32);
  if (!tmp) return dd_fail(err, DD_ENOMEM, "out of memory");
  snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return dd_fail(err, DD_EIO, "%s: cannot create: %s", path, strerror(e));
  }
  const char *p = buf;
  size_t left = len;
  while (left) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(fd);
      unlink(tmp);
      free(tmp);
      return dd_fail(err, DD_EIO, "%s: write failed: %s", path, strerror(e));
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    return dd_fail(err, DD_EIO, "%s: write failed: %s", path, strerror(e));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
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

double dd_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
