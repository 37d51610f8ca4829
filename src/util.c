#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
