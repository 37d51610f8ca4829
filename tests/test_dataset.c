/* The dataset listing, shards and per-file seeds (src/dataset.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dream/dataset.h"
#include "helper_cli.h"

static void touch(const char *rel) {
  char path[512];
  th_tmp(path, sizeof path, rel);
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot create %s", path);
  fputs("x", f);
  fclose(f);
}

static void mkdir_tmp(const char *rel) {
  char path[512];
  th_tmp(path, sizeof path, rel);
  cr_assert_eq(mkdir(path, 0755), 0, "cannot create %s", path);
}

/* A tree with images at three depths, names with spaces, upper-case extensions, and the
 * things a listing must leave out. */
static void make_tree(void) {
  mkdir_tmp("d");
  mkdir_tmp("d/Siberian husky");
  mkdir_tmp("d/kite");
  mkdir_tmp("d/kite/deeper");
  mkdir_tmp("d/.hidden");
  touch("d/Siberian husky/b.JPG");
  touch("d/Siberian husky/a.png");
  touch("d/kite/deeper/z.jpeg");
  touch("d/kite/notes.txt");
  touch("d/kite/.x.jpg");
  touch("d/.hidden/h.jpg");
  touch("d/top.bmp");
  touch("d/noext");
  char target[512], link[512];
  /* a link to a file counts; a link to a folder (here, a loop) is not followed */
  th_tmp(target, sizeof target, "d/top.bmp");
  cr_assert_eq(symlink(target, th_tmp(link, sizeof link, "d/kite/link.bmp")), 0);
  th_tmp(target, sizeof target, "d");
  cr_assert_eq(symlink(target, th_tmp(link, sizeof link, "d/kite/loop")), 0);
}

TestSuite(dataset, .init = th_cli_setup, .fini = th_cli_teardown);

Test(dataset, lists_images_sorted_and_skips_the_rest) {
  make_tree();
  dd_dataset ds;
  dd_err err;
  char dir[512];
  th_tmp(dir, sizeof dir, "d/");
  cr_assert_eq(dd_dataset_list(dir, 0, &ds, &err), 0, "%s", err.msg);
  static const char *const want[] = {"Siberian husky/a.png", "Siberian husky/b.JPG",
                                     "kite/deeper/z.jpeg", "kite/link.bmp", "top.bmp"};
  cr_assert_eq(ds.n, 5, "%d images", ds.n);
  for (int i = 0; i < 5; i++) cr_assert_str_eq(ds.rel[i], want[i]);
  cr_assert_eq(ds.root[strlen(ds.root) - 1], 'd', "trailing '/' dropped: %s", ds.root);
  dd_dataset_free(&ds);
  /* the cap */
  cr_assert_eq(dd_dataset_list(dir, 4, &ds, &err), DD_ELIMIT);
  cr_assert(strstr(err.msg, "more than 4 images"), "%s", err.msg);
  cr_assert_eq(ds.n, 0);
}

Test(dataset, refusals_name_the_path) {
  make_tree();
  dd_dataset ds;
  dd_err err;
  char path[512];
  cr_assert_eq(dd_dataset_list(th_tmp(path, sizeof path, "d/top.bmp"), 0, &ds, &err), DD_EARG);
  cr_assert(strstr(err.msg, "top.bmp: not a folder"), "%s", err.msg);
  cr_assert_eq(dd_dataset_list(th_tmp(path, sizeof path, "missing"), 0, &ds, &err),
               DD_ENOTFOUND);
  cr_assert(strstr(err.msg, "missing"), "%s", err.msg);
  /* an empty folder is an empty dataset, not an error (the commands decide) */
  mkdir_tmp("empty");
  cr_assert_eq(dd_dataset_list(th_tmp(path, sizeof path, "empty"), 0, &ds, &err), 0);
  cr_assert_eq(ds.n, 0);
  dd_dataset_free(&ds);
}

Test(dataset, shards_are_disjoint_balanced_and_cover) {
  for (int count = 1; count <= 5; count++)
    for (int n = 0; n <= 13; n++) {
      int seen = 0, lo = n, hi = 0;
      for (int index = 1; index <= count; index++) {
        int in = 0;
        for (int i = 0; i < n; i++) {
          int k = 0;
          for (int j = 1; j <= count; j++) k += dd_dataset_in_shard(i, j, count);
          cr_assert_eq(k, 1, "file %d of %d is in %d of %d shards", i, n, k, count);
          in += dd_dataset_in_shard(i, index, count);
        }
        seen += in;
        lo = in < lo ? in : lo;
        hi = in > hi ? in : hi;
      }
      cr_assert_eq(seen, n);
      cr_assert(n == 0 || hi - lo <= 1, "shards of %d files in %d: %d..%d", n, count, lo, hi);
    }
  cr_assert_eq(dd_dataset_in_shard(0, 0, 2), 0, "index is 1-based");
  cr_assert_eq(dd_dataset_in_shard(0, 3, 2), 0);
}

Test(dataset, seeds_depend_on_the_seed_and_the_path_only) {
  uint64_t a = dd_dataset_seed(1, "kite/a.jpg");
  cr_assert_eq(a, dd_dataset_seed(1, "kite/a.jpg"));
  cr_assert_neq(a, dd_dataset_seed(2, "kite/a.jpg"));
  cr_assert_neq(a, dd_dataset_seed(1, "kite/b.jpg"));
  cr_assert_neq(dd_dataset_seed(0, "ab"), dd_dataset_seed(0, "ba"));
}

Test(dataset, digest_changes_with_the_listing) {
  dd_dataset a = {.n = 2, .rel = (char *[]){"a.jpg", "b.jpg"}};
  dd_dataset b = {.n = 2, .rel = (char *[]){"a.jpgb", ".jpg"}};
  dd_dataset c = {.n = 1, .rel = (char *[]){"a.jpg"}};
  char ha[17], hb[17], hc[17];
  dd_dataset_digest(&a, ha);
  dd_dataset_digest(&b, hb);
  dd_dataset_digest(&c, hc);
  cr_assert_eq(strlen(ha), 16);
  cr_assert_str_neq(ha, hb, "the separator keeps path boundaries");
  cr_assert_str_neq(ha, hc);
}
