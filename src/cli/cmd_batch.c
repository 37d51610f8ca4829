/* dream batch: every image of a folder dreamed with one set of options (those of `dream`,
 * parsed and run by the same code, src/cli/cmd_dream.c), one image at a time.
 *
 * The listing, the shards and the per-file seeds are dream/dataset.h's: a file's seed is
 * dd_dataset_seed(--seed, its relative path), so the result of a file does not depend on the
 * shard that dreams it nor on a resumed run.  OUT_DIR mirrors IN_DIR: IN_DIR/a/b.jpg is
 * dreamed into OUT_DIR/a/b.jpg; a format the writer lacks (GIF, PSD, PNM, HDR, PIC) gets
 * ".png" appended (a/c.gif -> a/c.gif.png).  Outputs are written atomically, so one that exists
 * is finished: it is skipped (--force redoes it). */
#define _DEFAULT_SOURCE /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cmd_dream.h"
#include "dream/dataset.h"
#include "util.h"

static const char batch_help[] =
    "usage: dream batch [dream options] [--shard I/N] [--force] [--dry-run] IN_DIR OUT_DIR\n\n"
    "Dreams every image under IN_DIR (subfolders included, names beginning with '.' left\n"
    "out; " DD_IMAGE_FORMATS ")\n"
    "with one set of options, those of `dream` with the same defaults, one image at a time.\n"
    "OUT_DIR mirrors IN_DIR: IN_DIR/a/b.jpg gives OUT_DIR/a/b.jpg; a format the writer lacks\n"
    "(GIF, PSD, PNM, HDR, PIC) gets .png appended (a/c.gif -> a/c.gif.png).  OUT_DIR is made\n"
    "if its parent exists; it may not be IN_DIR, nor lie inside it, nor hold it.\n\n"
    "Each file's seed comes from --seed and the file's path relative to IN_DIR, so that\n"
    "  dream --seed SEED [the same options] IN_DIR/a/b.jpg x.jpg\n"
    "gives the same bytes as the batch; --dry-run lists every file's seed.\n\n"
    "batch options:\n"
    "      --shard I/N      only shard I of N (1 <= I <= N): the files at positions I, I+N,\n"
    "                       I+2N... of the sorted listing; the N shards together make the\n"
    "                       unsharded run, file for file and byte for byte\n"
    "      --force          dream files whose output already exists (default: skip them, so an\n"
    "                       interrupted batch resumes where it stopped)\n"
    "      --dry-run        list the shard's files, one a line: SEED<TAB>todo|done<TAB>PATH,\n"
    "                       and do nothing else\n\n"
    "dream options (see `dream --help`; --checkpoint-every is not for batches):\n"
    CLI_DREAM_OPTIONS_HELP "\n"
    "An image that cannot be read or dreamed is reported and skipped, the rest is done, and the\n"
    "exit status is 1 at the end.  The last line sums up: done, skipped (already there), failed,\n"
    "seconds.  Ctrl-C stops between iterations without writing the image being dreamed (exit\n"
    "status 130); the next run resumes.\n";

/* The writer's formats: their outputs keep the input's extension. */
static int writable(const char *rel) {
  const char *dot = strrchr(rel, '.');
  if (!dot) return 0;
  static const char *const ext[] = {".jpg", ".jpeg", ".png", ".bmp", ".tga", NULL};
  for (int i = 0; ext[i]; i++)
    if (!strcasecmp(dot, ext[i])) return 1;
  return 0;
}

/* OUT_DIR/rel, or OUT_DIR/rel.png; 0 or 1 (too long, printed). */
static int out_path(const char *out_dir, const char *rel, char *buf, size_t size) {
  int n = snprintf(buf, size, "%s/%s%s", out_dir, rel, writable(rel) ? "" : ".png");
  if (n < 0 || (size_t)n >= size) return cli_errorf("%s/%s: path too long", out_dir, rel);
  return 0;
}

/* The canonical path of `dir`, which may not exist yet (then its parent must). */
static int canonical(const char *dir, char *buf, int *exists) {
  *exists = 0;
  if (realpath(dir, buf)) {
    *exists = 1;
    return 0;
  }
  if (errno != ENOENT) return cli_errorf("%s: %s", dir, strerror(errno));
  char parent[PATH_MAX], pbuf[PATH_MAX];
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  if (n >= sizeof parent) return cli_errorf("%s: path too long", dir);
  memcpy(parent, dir, n);
  parent[n] = 0;
  char *slash = strrchr(parent, '/');
  const char *base = slash ? slash + 1 : parent, *up = ".";
  if (slash == parent) {
    up = "/";
  } else if (slash) {
    *slash = 0;
    up = parent;
  }
  if (!realpath(up, pbuf)) return cli_errorf("%s: its parent folder: %s", dir, strerror(errno));
  if (strlen(pbuf) + strlen(base) + 2 > PATH_MAX) return cli_errorf("%s: path too long", dir);
  snprintf(buf, PATH_MAX, "%s%s%s", pbuf, strcmp(pbuf, "/") ? "/" : "", base);
  return 0;
}

/* 1 when `a` is `b` or a folder inside it. */
static int within(const char *a, const char *b) {
  size_t n = strlen(b);
  if (!strcmp(b, "/")) return 1;
  return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '/');
}

/* Makes the folders of OUT_DIR/rel's parent below OUT_DIR; 0 or 1 (printed). */
static int make_parents(const char *path, size_t root_len) {
  char buf[PATH_MAX];
  size_t n = strlen(path);
  if (n >= sizeof buf) return cli_errorf("%s: path too long", path);
  memcpy(buf, path, n + 1);
  for (char *p = buf + root_len + 1; (p = strchr(p, '/')); p++) {
    *p = 0;
    if (mkdir(buf, 0777) && errno != EEXIST) return cli_errorf("%s: %s", buf, strerror(errno));
    *p = '/';
  }
  return 0;
}

/* A listed file whose output name another listed file also gets (a.gif and a.gif.png). */
static int find_clash(const dd_dataset *ds) {
  for (int i = 0; i < ds->n; i++) {
    if (writable(ds->rel[i])) continue;
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s.png", ds->rel[i]);
    int lo = 0, hi = ds->n - 1;
    while (lo <= hi) { /* the listing is sorted by strcmp */
      int mid = lo + (hi - lo) / 2, c = strcmp(ds->rel[mid], name);
      if (!c) return i;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
  }
  return -1;
}

int cmd_batch(int argc, char **argv) {
  cli_dream_args a;
  dd_err err;
  if (cli_batch_parse(argc, argv, &a, &err)) return cli_usage_error("batch", "%s", err.msg);
  if (a.help) {
    fputs(batch_help, stdout);
    return 0;
  }
  cli_dream_warn_idle(&a);
  char in_real[PATH_MAX], out_real[PATH_MAX];
  int in_exists, out_exists;
  struct stat st;
  if (stat(a.in, &st)) return cli_errorf("%s: %s", a.in, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return cli_errorf("%s: not a folder", a.in);
  if (canonical(a.in, in_real, &in_exists) || canonical(a.out, out_real, &out_exists)) return 1;
  if (within(out_real, in_real))
    return cli_usage_error("batch", "OUT_DIR %s is %s IN_DIR %s: the outputs would be read "
                           "as inputs", a.out, strcmp(out_real, in_real) ? "inside" : "the same as",
                           a.in);
  if (within(in_real, out_real))
    return cli_usage_error("batch", "IN_DIR %s lies inside OUT_DIR %s: outputs could overwrite "
                           "inputs", a.in, a.out);
  if (out_exists && (stat(a.out, &st) || !S_ISDIR(st.st_mode)))
    return cli_usage_error("batch", "OUT_DIR %s is not a folder", a.out);

  dd_dataset ds;
  if (dd_dataset_list(a.in, 0, &ds, &err)) return cli_report(&err);
  int status = 1;
  cli_model cm;
  int model_open = 0;
  cli_dream_job job;
  int job_begun = 0;
  if (!ds.n) {
    cli_errorf("%s: no images in it (%s; subfolders are searched, names beginning with '.' "
               "left out)", a.in, DD_IMAGE_FORMATS);
    goto done;
  }
  int clash = find_clash(&ds);
  if (clash >= 0) {
    cli_errorf("%s/%s and %s/%s.png would both be dreamed into %s/%s.png: rename one", a.in,
               ds.rel[clash], a.in, ds.rel[clash], a.out, ds.rel[clash]);
    goto done;
  }
  int in_shard = 0;
  for (int i = 0; i < ds.n; i++) in_shard += dd_dataset_in_shard(i, a.shard_index, a.shard_count);
  uint64_t seed = a.common.seed.value;
  char path[PATH_MAX], in_path[PATH_MAX];
  if (a.dry_run) {
    for (int i = 0; i < ds.n; i++) {
      if (!dd_dataset_in_shard(i, a.shard_index, a.shard_count)) continue;
      if (out_path(a.out, ds.rel[i], path, sizeof path)) goto done;
      int there = !a.force && !stat(path, &st) && S_ISREG(st.st_mode);
      printf("%llu\t%s\t%s\n", (unsigned long long)dd_dataset_seed(seed, ds.rel[i]),
             there ? "done" : "todo", ds.rel[i]);
    }
    status = 0;
    goto done;
  }
  if (!in_shard) {
    cli_warnf("shard %d/%d of the %d images of %s is empty", a.shard_index, a.shard_count, ds.n,
              a.in);
  }
  if (!out_exists && mkdir(a.out, 0777) && errno != EEXIST) {
    cli_errorf("%s: %s", a.out, strerror(errno));
    goto done;
  }
  cli_files files = {0};
  cli_files_in(&files, a.guide);
  status = cli_model_open_checked("batch", &a.common.model, &files, &cm);
  if (status) goto done;
  model_open = 1;
  status = 1;
  job_begun = 1; /* cli_dream_end undoes a partial cli_dream_begin too */
  if (cli_dream_begin(&a, &cm, &job)) goto done;

  double start = dd_now_seconds();
  int done_n = 0, skipped = 0, failed = 0, k = 0, stopped = 0;
  size_t root_len = strlen(a.out);
  while (root_len > 1 && a.out[root_len - 1] == '/') root_len--;
  for (int i = 0; i < ds.n && !stopped; i++) {
    if (!dd_dataset_in_shard(i, a.shard_index, a.shard_count)) continue;
    k++;
    if (out_path(a.out, ds.rel[i], path, sizeof path)) {
      failed++;
      continue;
    }
    if (!stat(path, &st) && !a.force) {
      if (S_ISREG(st.st_mode)) {
        skipped++;
        continue;
      }
    }
    snprintf(in_path, sizeof in_path, "%s/%s", ds.root, ds.rel[i]);
    if (cli_progress_shown(&a.common)) fprintf(stderr, "dream: [%d/%d] %s\n", k, in_shard,
                                                ds.rel[i]);
    int rc = make_parents(path, root_len);
    if (!rc) rc = cli_dream_image(&job, in_path, path, dd_dataset_seed(seed, ds.rel[i]));
    if (rc > 1) {
      stopped = rc;
    } else if (rc) {
      cli_errorf("%s: failed, skipped (see above); the batch goes on", ds.rel[i]);
      failed++;
    } else {
      done_n++;
    }
    if (cli_dream_interrupted()) stopped = 128 + cli_dream_interrupted();
  }
  if (stopped) {
    cli_errorf("batch interrupted after %d done, %d skipped, %d failed in %.1f s; run it again "
               "to resume", done_n, skipped, failed, dd_now_seconds() - start);
    status = stopped;
    goto done;
  }
  /* The summary, even with -q when something failed: the exit status alone does not say
   * how many. */
  char seed_note[64] = "";
  if (a.common.seed.random)
    snprintf(seed_note, sizeof seed_note, ", --seed %llu", (unsigned long long)seed);
  if (failed || !a.common.quiet)
    fprintf(stderr, "dream: batch %s shard %d/%d: %d done, %d skipped (already there), %d "
            "failed in %.1f s%s\n", a.in, a.shard_index, a.shard_count, done_n, skipped, failed,
            dd_now_seconds() - start, seed_note);
  status = failed ? 1 : 0;
done:
  if (job_begun) cli_dream_end(&job);
  if (model_open) cli_model_close(&cm);
  dd_dataset_free(&ds);
  return status;
}
