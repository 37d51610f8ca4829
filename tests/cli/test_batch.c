/* dream batch as a user runs it: one dream per file with the seed --dry-run lists, shards
 * that add up to the unsharded run byte for byte, resuming, bad input, Ctrl-C, and the GNU
 * parallel script of scripts/dist/. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dream/image.h"
#include "helper_cli.h"

TestSuite(batch, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 300);

/* Small and quick, but a real dream: two octaves of three iterations at 48 pixels. */
#define QUICK "--max-side", "48", "--octaves", "2", "--iters", "3"

static void expect_in(const th_result *r, const char *word, const char *what) {
  cr_expect(strstr(r->err, word) || strstr(r->out, word), "%s: '%s' not in: %s%s", what, word,
            r->out, r->err);
}

static void mkdir_tmp(const char *name) {
  char p[256];
  cr_assert_eq(mkdir(th_tmp(p, sizeof p, name), 0777), 0, "%s", p);
}

/* in/ with four photos, one in a folder whose name has a space. */
static void make_input(void) {
  char p[256];
  mkdir_tmp("in");
  mkdir_tmp("in/sub dir");
  th_photo("dog.jpg", 64, th_tmp(p, sizeof p, "in/dog.png"));
  th_photo("kite.jpg", 64, th_tmp(p, sizeof p, "in/kite.jpg"));
  th_photo("eagle.jpg", 64, th_tmp(p, sizeof p, "in/sub dir/eagle.jpg"));
  th_photo("horses.jpg", 64, th_tmp(p, sizeof p, "in/sub dir/horses.png"));
}

static const char *const INPUTS[] = {"dog.png", "kite.jpg", "sub dir/eagle.jpg",
                                     "sub dir/horses.png"};
#define N_INPUTS 4

/* The bytes of dir/rel, which must exist. */
static char *file_of(const char *dir, const char *rel, size_t *len) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s/%s", th_tmpdir, dir, rel);
  char *s = th_slurp(p, len);
  cr_assert_not_null(s, "%s is missing", p);
  return s;
}

/* Every regular file under th_tmpdir/dir, counted (recursively). */
static int count_files(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    struct stat st;
    if (stat(p, &st)) continue;
    n += S_ISDIR(st.st_mode) ? count_files(p) : 1;
  }
  closedir(d);
  return n;
}

static int files_under(const char *dir) {
  char p[256];
  return count_files(th_tmp(p, sizeof p, dir));
}

static void expect_same_tree(const char *a, const char *b) {
  cr_expect_eq(files_under(a), N_INPUTS, "%s holds %d files", a, files_under(a));
  cr_expect_eq(files_under(b), N_INPUTS, "%s holds %d files", b, files_under(b));
  for (int i = 0; i < N_INPUTS; i++) {
    size_t na, nb;
    char *x = file_of(a, INPUTS[i], &na), *y = file_of(b, INPUTS[i], &nb);
    cr_expect(na == nb && !memcmp(x, y, na), "%s differs between %s and %s", INPUTS[i], a, b);
    free(x);
    free(y);
  }
}

/* The seed --dry-run lists for rel. */
static unsigned long long listed_seed(const char *seed_opt, const char *in, const char *out,
                                      const char *rel) {
  th_result r = TH_RUN("batch", "--seed", seed_opt, "--dry-run", in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  unsigned long long seed = 0;
  int found = 0;
  for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
    char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    cr_assert_not_null(t2, "not SEED<TAB>STATE<TAB>PATH: '%s'", line);
    if (!strcmp(t2 + 1, rel)) {
      seed = strtoull(line, NULL, 10);
      found = 1;
    }
  }
  cr_assert(found, "%s not listed", rel);
  th_result_free(&r);
  return seed;
}

Test(batch, each_file_equals_dream_with_its_listed_seed) {
  make_input();
  char in[256], out[256];
  th_tmp(in, sizeof in, "in");
  th_tmp(out, sizeof out, "out");
  th_result r = TH_RUN("batch", QUICK, "--seed", "7", in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "4 done, 0 skipped (already there), 0 failed", "summary");
  th_result_free(&r);
  /* Different files get different seeds, and a different --seed changes them. */
  unsigned long long s1 = listed_seed("7", in, out, "sub dir/eagle.jpg");
  cr_expect_neq(s1, listed_seed("7", in, out, "dog.png"));
  cr_expect_neq(s1, listed_seed("8", in, out, "sub dir/eagle.jpg"));
  for (int i = 0; i < N_INPUTS; i++) {
    char src[512], seed[32], single[256];
    snprintf(src, sizeof src, "%s/%s", in, INPUTS[i]);
    snprintf(seed, sizeof seed, "%llu", listed_seed("7", in, out, INPUTS[i]));
    th_tmp(single, sizeof single, strstr(INPUTS[i], ".png") ? "single.png" : "single.jpg");
    /* The seed is the one dream itself would print for the file. */
    r = TH_RUN("dream", QUICK, "--seed", seed, src, single);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_result_free(&r);
    size_t na, nb;
    char *a = th_slurp(single, &na), *b = file_of("out", INPUTS[i], &nb);
    cr_assert_not_null(a);
    cr_expect(na == nb && !memcmp(a, b, na), "%s: batch and `dream --seed %s` differ",
              INPUTS[i], seed);
    free(a);
    free(b);
    /* The seed is not --seed itself (nor the same for every file). */
    cr_expect_neq(strcmp(seed, "7"), 0);
  }
}

Test(batch, two_shards_make_the_unsharded_run) {
  make_input();
  char in[256], one[256], two[256];
  th_tmp(in, sizeof in, "in");
  th_result r = TH_RUN("batch", QUICK, in, th_tmp(one, sizeof one, "one"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  th_tmp(two, sizeof two, "two");
  r = TH_RUN("batch", QUICK, "--shard", "1/2", in, two);
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "2 done", "shard 1/2");
  th_result_free(&r);
  cr_expect_eq(files_under("two"), 2, "shard 1 of 2 wrote %d files", files_under("two"));
  r = TH_RUN("batch", QUICK, "--shard", "2/2", in, two);
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "2 done, 0 skipped", "shard 2/2 (does not count shard 1's files)");
  th_result_free(&r);
  expect_same_tree("one", "two");
  /* Shards of 3 (one of them a single file) too. */
  char three[256];
  th_tmp(three, sizeof three, "three");
  for (int s = 1; s <= 3; s++) {
    char spec[8];
    snprintf(spec, sizeof spec, "%d/3", s);
    r = TH_RUN("batch", QUICK, "-q", "--shard", spec, in, three);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_result_free(&r);
  }
  expect_same_tree("one", "three");
}

Test(batch, resumes_and_force_redoes) {
  make_input();
  char in[256], out[256], p[256];
  th_tmp(in, sizeof in, "in");
  th_tmp(out, sizeof out, "out");
  th_result r = TH_RUN("batch", QUICK, in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  size_t n0;
  char *kite = file_of("out", "kite.jpg", &n0);
  /* One output gone, one replaced by a marker: the first is redone, the second kept. */
  cr_assert_eq(unlink(th_tmp(p, sizeof p, "out/sub dir/eagle.jpg")), 0);
  th_write_bytes(th_tmp(p, sizeof p, "out/kite.jpg"), "kept", 4);
  r = TH_RUN("batch", QUICK, in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "1 done, 3 skipped (already there), 0 failed", "resume");
  th_result_free(&r);
  size_t n;
  char *k = file_of("out", "kite.jpg", &n);
  cr_expect(n == 4 && !memcmp(k, "kept", 4), "a finished output was redone");
  free(k);
  r = TH_RUN("batch", "--dry-run", in, out);
  cr_expect_eq(r.status, 0);
  cr_expect_eq(strstr(r.out, "todo"), NULL, "all done, yet listed as todo: %s", r.out);
  th_result_free(&r);
  r = TH_RUN("batch", QUICK, "--force", in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  expect_in(&r, "4 done, 0 skipped", "--force");
  th_result_free(&r);
  k = file_of("out", "kite.jpg", &n);
  cr_expect(n == n0 && !memcmp(k, kite, n), "--force did not redo kite.jpg as before");
  free(k);
  free(kite);
}

Test(batch, unreadable_images_are_reported_and_the_rest_done) {
  make_input();
  char in[256], out[256], p[256];
  th_write_bytes(th_tmp(p, sizeof p, "in/broken.jpg"), "not a JPEG at all", 17);
  th_write_bytes(th_tmp(p, sizeof p, "in/sub dir/empty.png"), "", 0);
  th_result r = TH_RUN("batch", QUICK, th_tmp(in, sizeof in, "in"), th_tmp(out, sizeof out, "out"));
  cr_expect_eq(r.status, 1, "%s", r.err);
  expect_in(&r, "broken.jpg", "the broken file named");
  expect_in(&r, "sub dir/empty.png", "the empty file named");
  expect_in(&r, "4 done, 0 skipped (already there), 2 failed", "summary");
  th_result_free(&r);
  cr_expect_eq(files_under("out"), N_INPUTS, "%d files written", files_under("out"));
  struct stat st;
  cr_expect_neq(stat(th_tmp(p, sizeof p, "out/broken.jpg"), &st), 0, "a failed output exists");
  /* Even with -q the summary says what failed. */
  r = TH_RUN("batch", QUICK, "-q", in, out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "0 done, 4 skipped (already there), 2 failed", "summary with -q");
  th_result_free(&r);
}

Test(batch, bad_folders_are_refused) {
  char in[256], out[256], p[256];
  mkdir_tmp("empty");
  mkdir_tmp("empty/sub");
  th_write_bytes(th_tmp(p, sizeof p, "empty/notes.txt"), "x", 1);
  th_result r = TH_RUN("batch", th_tmp(in, sizeof in, "empty"), th_tmp(out, sizeof out, "out"));
  cr_expect_eq(r.status, 1);
  expect_in(&r, "no images in it", "empty folder");
  th_result_free(&r);
  struct stat st;
  cr_expect_neq(stat(out, &st), 0, "OUT_DIR made for an empty folder");

  make_input();
  th_tmp(in, sizeof in, "in");
  const char *outs[] = {"in", "in/", "in/out", "in/sub dir/out", "."};
  for (int i = 0; i < 5; i++) {
    char o[256];
    if (strcmp(outs[i], ".")) th_tmp(o, sizeof o, outs[i]);
    else snprintf(o, sizeof o, "%s", th_tmpdir);
    r = TH_RUN("batch", in, o);
    cr_expect_eq(r.status, 2, "OUT_DIR %s: status %d %s", outs[i], r.status, r.err);
    expect_in(&r, "IN_DIR", outs[i]);
    th_result_free(&r);
  }
  cr_expect_neq(stat(th_tmp(p, sizeof p, "in/out"), &st), 0, "in/out was made");
  r = TH_RUN("batch", th_tmp(p, sizeof p, "nothere"), out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "nothere", "missing IN_DIR");
  th_result_free(&r);
  r = TH_RUN("batch", th_tmp(p, sizeof p, "in/dog.png"), out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "not a folder", "IN_DIR a file");
  th_result_free(&r);
  r = TH_RUN("batch", in, th_tmp(p, sizeof p, "no/such/out"));
  cr_expect_eq(r.status, 1);
  expect_in(&r, "parent", "OUT_DIR without a parent");
  th_result_free(&r);
}

/* The --shard grammar: I/N, 1 <= I <= N <= 1000000, digits only. */
Test(batch, shard_grammar) {
  make_input();
  char in[256], out[256];
  th_tmp(in, sizeof in, "in");
  th_tmp(out, sizeof out, "out");
  const char *bad[] = {"0/2", "3/2", "1/0", "0/0", "a/2", "1/b", "1/2x", "-1/2", "+1/2",
                       " 1/2", "1/", "/2", "1", "1/2/3", "", "1/1000001", "99999999999/2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    th_result r = TH_RUN("batch", "--dry-run", "--shard", bad[i], in, out);
    cr_expect_eq(r.status, 2, "--shard '%s': status %d", bad[i], r.status);
    expect_in(&r, "--shard", bad[i]);
    cr_expect_eq(r.out_len, 0, "--shard '%s' listed files", bad[i]);
    th_result_free(&r);
  }
  /* Accepted: which files each shard lists (positions I, I+N, ...). */
  const struct {
    const char *spec;
    int lines;
  } good[] = {{"1/1", 4}, {"1/2", 2}, {"2/2", 2}, {"1/3", 2}, {"3/3", 1}, {"5/5", 0},
              {"1000000/1000000", 0}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    th_result r = TH_RUN("batch", "--dry-run", "--shard", good[i].spec, in, out);
    cr_expect_eq(r.status, 0, "--shard %s: %s", good[i].spec, r.err);
    int lines = 0;
    for (size_t k = 0; k < r.out_len; k++) lines += r.out[k] == '\n';
    cr_expect_eq(lines, good[i].lines, "--shard %s: %d files", good[i].spec, lines);
    th_result_free(&r);
  }
  /* Sorted: dog.png, kite.jpg, sub dir/eagle.jpg, sub dir/horses.png; shard 1/3 is the
   * files at positions 0 and 3. */
  th_result r = TH_RUN("batch", "--dry-run", "--shard", "1/3", in, out);
  cr_expect(strstr(r.out, "\tdog.png\n") && strstr(r.out, "\tsub dir/horses.png\n") &&
            !strstr(r.out, "kite"), "shard 1/3 of the sorted listing: %s", r.out);
  th_result_free(&r);
  /* Options of one command only. */
  r = TH_RUN("dream", "--shard", "1/2", "in.png", "out.png");
  cr_expect_eq(r.status, 2);
  expect_in(&r, "batch", "--shard on dream");
  th_result_free(&r);
  r = TH_RUN("batch", "--checkpoint-every", "2", in, out);
  cr_expect_eq(r.status, 2);
  expect_in(&r, "--checkpoint-every", "--checkpoint-every in a batch");
  th_result_free(&r);
}

/* Formats the writer lacks get ".png" appended, and two inputs that would share an output
 * are refused before anything runs. */
Test(batch, output_names) {
  char in[256], out[256], p[256];
  mkdir_tmp("in");
  th_photo("dog.jpg", 48, th_tmp(p, sizeof p, "in/dog.jpg"));
  /* A PGM (stb decodes PNM, the writer does not write it). */
  FILE *f = fopen(th_tmp(p, sizeof p, "in/grey.pgm"), "wb");
  cr_assert_not_null(f);
  fprintf(f, "P5\n40 30\n255\n");
  for (int i = 0; i < 40 * 30; i++) fputc(i * 7 % 256, f);
  fclose(f);
  th_result r = TH_RUN("batch", QUICK, th_tmp(in, sizeof in, "in"), th_tmp(out, sizeof out, "out"));
  cr_expect_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  dd_image *im;
  dd_err err;
  cr_expect_eq(dd_image_load(th_tmp(p, sizeof p, "out/grey.pgm.png"), 0, &im, &err), 0, "%s",
               err.msg);
  if (im) dd_image_free(im);
  cr_expect_eq(dd_image_load(th_tmp(p, sizeof p, "out/dog.jpg"), 0, &im, &err), 0, "%s",
               err.msg);
  if (im) dd_image_free(im);
  th_photo("dog.jpg", 48, th_tmp(p, sizeof p, "in/grey.pgm.png"));
  r = TH_RUN("batch", QUICK, "--force", in, out);
  cr_expect_eq(r.status, 1);
  expect_in(&r, "would both be dreamed into", "two inputs, one output");
  th_result_free(&r);
}

/* Ctrl-C: the batch stops (130) with every output it wrote complete and no partial file,
 * and the next run finishes the rest. */
Test(batch, interrupt_leaves_no_partial_file) {
  char in[256], out[256], p[256];
  mkdir_tmp("in");
  const char *photos[] = {"dog.jpg", "kite.jpg", "eagle.jpg", "horses.jpg", "person.jpg",
                          "giraffe.jpg"};
  for (int i = 0; i < 6; i++) {
    char name[64];
    snprintf(name, sizeof name, "in/%d.png", i);
    th_photo(photos[i], 96, th_tmp(p, sizeof p, name));
  }
  th_tmp(in, sizeof in, "in");
  th_tmp(out, sizeof out, "out");
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    signal(SIGINT, SIG_DFL); /* as th_run's children: ignored in a background shell's jobs */
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    const char *bin = getenv("DREAM_TEST_BINARY") ? getenv("DREAM_TEST_BINARY") : DREAM_BINARY;
    execl(bin, bin, "batch", "--max-side", "96", "--octaves", "1", "--iters", "40", in, out,
          (char *)NULL);
    _exit(127);
  }
  /* Interrupt once the first output is there (or after 180 s: a sanitizer build is slow). */
  struct stat st;
  for (int i = 0; i < 1800 && stat(th_tmp(p, sizeof p, "out/0.png"), &st); i++)
    nanosleep(&(struct timespec){0, 100000000}, NULL);
  kill(pid, SIGINT);
  int ws;
  waitpid(pid, &ws, 0);
  cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 130, "status %d", ws);
  int n = files_under("out");
  cr_expect(n >= 1 && n < 6, "%d outputs after Ctrl-C", n);
  DIR *d = opendir(out);
  cr_assert_not_null(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    cr_expect_null(strstr(e->d_name, ".tmp"), "a partial file: %s", e->d_name);
    char q[512];
    snprintf(q, sizeof q, "%s/%s", out, e->d_name);
    dd_image *im;
    dd_err err;
    cr_expect_eq(dd_image_load(q, 0, &im, &err), 0, "%s: %s", e->d_name, err.msg);
    if (im) dd_image_free(im);
  }
  closedir(d);
  th_result r = TH_RUN("batch", "--max-side", "96", "--octaves", "1", "--iters", "2", in, out);
  cr_expect_eq(r.status, 0, "%s", r.err);
  char want[64];
  snprintf(want, sizeof want, "%d done, %d skipped", 6 - n, n);
  expect_in(&r, want, "resume after Ctrl-C");
  th_result_free(&r);
  cr_expect_eq(files_under("out"), 6);
}

/* scripts/dist/parallel-batch.sh: N shards under GNU parallel give the unsharded result. */
Test(batch, gnu_parallel_script_gives_the_unsharded_result) {
  make_input();
  char in[256], one[256], par[256], cmd[2048];
  th_tmp(in, sizeof in, "in");
  th_result r = TH_RUN("batch", QUICK, "-q", in, th_tmp(one, sizeof one, "one"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  const char *bin = getenv("DREAM_TEST_BINARY") ? getenv("DREAM_TEST_BINARY") : DREAM_BINARY;
  snprintf(cmd, sizeof cmd,
           "DREAM='%s' '%s/scripts/dist/parallel-batch.sh' -j 2 3 '%s' '%s' --max-side 48 "
           "--octaves 2 --iters 3 -q >'%s/parallel.log' 2>&1",
           bin, DREAM_SOURCE_DIR, in, th_tmp(par, sizeof par, "par"), th_tmpdir);
  int rc = system(cmd);
  char log[256];
  char *text = th_slurp(th_tmp(log, sizeof log, "parallel.log"), NULL);
  cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "parallel-batch.sh: status %d: %s", rc,
            text ? text : "");
  free(text);
  expect_same_tree("one", "par");
}

/* scripts/dist/parallel-audit.sh with a stand-in for `dream audit` that records its arguments
 * (tests/test_audit.c runs the script with the real one), so the plumbing is checked: N shard runs with
 * --shard I/N DIR REPORT.parts/I (a folder name with spaces kept whole), then one merge of the
 * N parts in order into REPORT, after every shard. */
Test(batch, gnu_parallel_audit_script_runs_the_shards_then_the_merge) {
  char stub[256], log[256], dir[256], report[256], cmd[2048];
  th_tmp(stub, sizeof stub, "fake-dream");
  th_tmp(log, sizeof log, "calls.log");
  static const char script[] =
      "#!/bin/sh\n"
      "line=\"\"\n"
      "for a in \"$@\"; do line=\"$line[$a]\"; done\n"
      "printf '%s\\n' \"$line\" >>\"$STUB_LOG\"\n";
  th_write_bytes(stub, script, sizeof script - 1);
  cr_assert_eq(chmod(stub, 0755), 0);
  mkdir_tmp("my photos");
  th_tmp(dir, sizeof dir, "my photos");
  th_tmp(report, sizeof report, "the report");
  snprintf(cmd, sizeof cmd,
           "STUB_LOG='%s' DREAM='%s' '%s/scripts/dist/parallel-audit.sh' -j 2 3 '%s' '%s' "
           "--top 5 >/dev/null 2>&1",
           log, stub, DREAM_SOURCE_DIR, dir, report);
  int rc = system(cmd);
  cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "status %d", rc);
  char *calls = th_slurp(log, NULL);
  cr_assert_not_null(calls);
  int lines = 0;
  for (char *p = calls; *p; p++) lines += *p == '\n';
  cr_expect_eq(lines, 4, "%s", calls);
  for (int i = 1; i <= 3; i++) {
    char want[1024];
    snprintf(want, sizeof want, "[audit][--top][5][--shard][%d/3][%s][%s.parts/%d]\n", i, dir,
             report, i);
    cr_expect(strstr(calls, want), "no '%s' in:\n%s", want, calls);
  }
  char merge[1024];
  snprintf(merge, sizeof merge, "[audit][--merge][%s.parts/1][%s.parts/2][%s.parts/3][%s]\n",
           report, report, report, report);
  const char *m = strstr(calls, merge);
  cr_expect(m && m[strlen(merge)] == 0, "the merge is not the last call:\n%s", calls);
  free(calls);
}
