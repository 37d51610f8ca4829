/* dream audit (src/audit.c, src/cli/cmd_audit.c, src/cli/audit_html.c) on a labelled folder
 * built from ../shared/images: top5 against `dream classify`, accuracy from the labels, shards
 * merged against the unsharded run, bad inputs, and the page in a real browser. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helper_cli.h"
#include "dream/frame.h"
#include "dream/infer.h"
#include "dream/model.h"
#include "helper_ops.h"

TestSuite(audit, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 600);

static const char *tmp(const char *rel) {
  static char buf[8][512];
  static int k;
  k = (k + 1) % 8;
  return th_tmp(buf[k], sizeof buf[k], rel);
}

static void mkdir_tmp(const char *rel) {
  cr_assert_eq(mkdir(tmp(rel), 0755), 0, "cannot create %s", rel);
}

static void copy_photo(const char *name, const char *rel) {
  char src[512];
  size_t len;
  char *data = th_slurp(th_shared(src, sizeof src, name), &len);
  cr_assert(data, "cannot read %s", src);
  th_write_bytes(tmp(rel), data, len);
  free(data);
}

static int exists(const char *rel) {
  struct stat st;
  return stat(tmp(rel), &st) == 0;
}

/* The labelled folder: names with spaces and mixed case, a wnid, an index, two unlabelled
 * photos at the top, and a file that is not an image among them. */
static void make_dataset(int broken) {
  mkdir_tmp("ds");
  mkdir_tmp("ds/Bald Eagle");
  mkdir_tmp("ds/kite");
  mkdir_tmp("ds/sorrel");
  mkdir_tmp("ds/n02110185");   /* Siberian husky, by its wnid */
  mkdir_tmp("ds/293");         /* cheetah, by its index */
  copy_photo("images/eagle.jpg", "ds/Bald Eagle/eagle.jpg");
  copy_photo("images/kite.jpg", "ds/kite/kite photo.jpg");
  copy_photo("images/horses.jpg", "ds/sorrel/horses.jpg");
  copy_photo("images/dog.jpg", "ds/n02110185/dog.jpg");
  copy_photo("images/giraffe.jpg", "ds/293/giraffe.jpg");
  copy_photo("images/person.jpg", "ds/person.jpg");
  copy_photo("images/scream.jpg", "ds/scream.jpg");
  if (broken) th_write_bytes(tmp("ds/kite/broken.jpg"), "not a JPEG", 10);
}

static json_t *load_report(const char *dir) {
  char rel[512];
  snprintf(rel, sizeof rel, "%s/report.json", dir);
  json_error_t je;
  json_t *r = json_load_file(tmp(rel), 0, &je);
  cr_assert(r, "%s: %s", rel, je.text);
  return r;
}

static int get_int(const json_t *o, const char *k) {
  const json_t *v = json_object_get(o, k);
  cr_assert(json_is_integer(v), "'%s' is not an integer", k);
  return (int)json_integer_value(v);
}

static const json_t *image_of(const json_t *r, const char *path) {
  const json_t *images = json_object_get(r, "images");
  for (size_t i = 0; i < json_array_size(images); i++) {
    const json_t *im = json_array_get(images, i);
    if (!strcmp(json_string_value(json_object_get(im, "path")), path)) return im;
  }
  cr_assert_fail("%s is not in the report", path);
  return NULL;
}

Test(audit, top5_is_classify_and_accuracy_from_labels) {
  make_dataset(1);
  th_result r = TH_RUN("audit", "--no-panels", tmp("ds"), tmp("out"));
  cr_assert_eq(r.status, 1, "an unreadable file makes the status 1: %s", r.err);
  cr_assert(strstr(r.err, "broken.jpg"), "%s", r.err);
  th_result_free(&r);
  json_t *rep = load_report("out");
  const json_t *images = json_object_get(rep, "images");
  cr_assert_eq(json_array_size(images), 7);

  /* the unreadable file is reported, by its path, and the rest audited */
  const json_t *errs = json_object_get(rep, "errors");
  cr_assert_eq(json_array_size(errs), 1);
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 0), "path")),
                   "kite/broken.jpg");
  cr_assert(strstr(json_string_value(json_object_get(json_array_get(errs, 0), "message")),
                   "not an image"));

  /* labels from the folders: text (any case), wnid, index; none at the top */
  struct { const char *path; int label; } want[] = {
      {"Bald Eagle/eagle.jpg", 22}, {"kite/kite photo.jpg", 21}, {"sorrel/horses.jpg", 339},
      {"n02110185/dog.jpg", 250},   {"293/giraffe.jpg", 293}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert_eq(get_int(image_of(rep, want[i].path), "label"), want[i].label, "%s",
                 want[i].path);
  cr_assert(json_is_null(json_object_get(image_of(rep, "person.jpg"), "label")));
  cr_assert(json_is_null(json_object_get(image_of(rep, "scream.jpg"), "rank")));

  /* top5 == `dream classify --top 5`, image by image (classify prints p to 0.01%) */
  const char *args[16] = {"classify", "--top", "5"};
  int na = 3;
  for (size_t i = 0; i < json_array_size(images); i++) {
    char rel[512];
    snprintf(rel, sizeof rel, "ds/%s",
             json_string_value(json_object_get(json_array_get(images, i), "path")));
    args[na++] = strdup(tmp(rel));
  }
  args[na] = NULL;
  r = th_run(args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  const char *p = r.out;
  for (size_t i = 0; i < json_array_size(images); i++) {
    const json_t *top = json_object_get(json_array_get(images, i), "top5");
    cr_assert_eq(json_array_size(top), 5);
    const char *colon = strstr(p, ":\n");
    cr_assert(colon, "classify printed less than expected: %s", r.out);
    cr_assert(!strncmp(p, args[3 + i], (size_t)(colon - p)), "order: %s", p);
    p = colon + 2;
    for (int k = 0; k < 5; k++) {
      double pct;
      int cls, used;
      cr_assert_eq(sscanf(p, " %lf%% %d%n", &pct, &cls, &used), 2, "%s", p);
      const json_t *e = json_array_get(top, (size_t)k);
      cr_assert_eq(get_int(e, "class"), cls, "%s: #%d", args[3 + i], k + 1);
      char mine[32], theirs[32];
      snprintf(mine, sizeof mine, "%.2f", json_real_value(json_object_get(e, "p")) * 100);
      snprintf(theirs, sizeof theirs, "%.2f", pct);
      cr_assert_str_eq(mine, theirs, "%s: #%d", args[3 + i], k + 1);
      p = strchr(p, '\n') + 1;
    }
  }
  th_result_free(&r);
  for (int i = 3; i < na; i++) free((char *)args[i]);

  /* the accuracy, recomputed here from the labels and the lists */
  int labelled = 0, hit1 = 0, hit5 = 0;
  for (size_t i = 0; i < json_array_size(images); i++) {
    const json_t *im = json_array_get(images, i), *lab = json_object_get(im, "label");
    if (json_is_null(lab)) continue;
    labelled++;
    const json_t *top = json_object_get(im, "top5");
    hit1 += get_int(json_array_get(top, 0), "class") == json_integer_value(lab);
    for (int k = 0; k < 5; k++)
      hit5 += get_int(json_array_get(top, (size_t)k), "class") == json_integer_value(lab);
  }
  const json_t *acc = json_object_get(rep, "accuracy");
  cr_assert_eq(labelled, 5);
  cr_assert_eq(get_int(acc, "labelled"), labelled);
  cr_assert_eq(json_real_value(json_object_get(acc, "top1")), (double)hit1 / labelled);
  cr_assert_eq(json_real_value(json_object_get(acc, "top5")), (double)hit5 / labelled);
  /* GoogLeNet calls the eagle a kite (the bird), with the eagle second: a confusion 22 -> 21 */
  const json_t *eagle = image_of(rep, "Bald Eagle/eagle.jpg");
  cr_assert_eq(get_int(json_array_get(json_object_get(eagle, "top5"), 0), "class"), 21);
  cr_assert_eq(get_int(eagle, "rank"), 2);
  int found = 0;
  const json_t *conf = json_object_get(rep, "confusions");
  for (size_t i = 0; i < json_array_size(conf); i++)
    found |= get_int(json_array_get(conf, i), "true") == 22 &&
             get_int(json_array_get(conf, i), "predicted") == 21;
  cr_assert(found, "no eagle -> kite confusion");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rep, "names"), "22")),
                   "bald eagle");
  json_decref(rep);
}

static void assert_same_file(const char *a, const char *b) {
  size_t la, lb;
  char *x = th_slurp(tmp(a), &la), *y = th_slurp(tmp(b), &lb);
  cr_assert(x && y, "%s or %s missing", a, b);
  cr_assert(la == lb && !memcmp(x, y, la), "%s and %s differ", a, b);
  free(x);
  free(y);
}

Test(audit, two_shards_merged_are_the_unsharded_report) {
  make_dataset(1);
  th_result r = TH_RUN("audit", "-q", tmp("ds"), tmp("whole"));
  cr_assert_eq(r.status, 1, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--shard", "1/2", tmp("ds"), tmp("p1"));
  cr_assert_eq(r.status, 1, "%s", r.err); /* broken.jpg is third: in shard 1 */
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--shard", "2/2", tmp("ds"), tmp("p2"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  json_t *p1 = load_report("p1"), *p2 = load_report("p2");
  cr_assert_eq(json_array_size(json_object_get(p1, "images")), 3);
  cr_assert_eq(json_array_size(json_object_get(p1, "errors")), 1);
  cr_assert_eq(json_array_size(json_object_get(p2, "images")), 4);
  json_decref(p1);
  json_decref(p2);
  /* parts in either order */
  r = TH_RUN("audit", "-q", "--merge", tmp("p2"), tmp("p1"), tmp("merged"));
  cr_assert_eq(r.status, 1, "the merged report lists the unreadable file: %s", r.err);
  th_result_free(&r);
  /* byte for byte: the report, the page, and every thumbnail and panel it references */
  assert_same_file("whole/report.json", "merged/report.json");
  assert_same_file("whole/index.html", "merged/index.html");
  json_t *rep = load_report("whole");
  const json_t *images = json_object_get(rep, "images");
  int panels = 0;
  for (size_t i = 0; i < json_array_size(images); i++) {
    const json_t *im = json_array_get(images, i), *pn = json_object_get(im, "panels");
    char a[512], b[512];
    snprintf(a, sizeof a, "whole/%s", json_string_value(json_object_get(im, "thumb")));
    snprintf(b, sizeof b, "merged/%s", json_string_value(json_object_get(im, "thumb")));
    assert_same_file(a, b);
    const json_t *rank = json_object_get(im, "rank");
    cr_assert_eq(json_is_object(pn), json_is_integer(rank) && json_integer_value(rank) > 1,
                 "panels for exactly the misclassified images");
    if (!pn) continue;
    panels++;
    static const char *const keys[] = {"predicted", "true"};
    for (int k = 0; k < 2; k++) {
      snprintf(a, sizeof a, "whole/%s", json_string_value(json_object_get(pn, keys[k])));
      snprintf(b, sizeof b, "merged/%s", json_string_value(json_object_get(pn, keys[k])));
      assert_same_file(a, b);
    }
  }
  cr_assert_geq(panels, 1);
  json_decref(rep);
}

/* scripts/dist/parallel-audit.sh with the real binary on a folder with an unreadable file:
 * the shard that meets it exits 1, yet the merge runs, lists the file, and gives the
 * unsharded report byte for byte; the script's status is the merge's (1).  A stale part
 * from an earlier run is not taken: its report.json is removed before the shards run, so a
 * shard that fails outright leaves the merge a missing part, which it names. */
Test(audit, gnu_parallel_audit_merges_despite_an_unreadable_image, .timeout = 300) {
  make_dataset(1);
  th_result r = TH_RUN("audit", "-q", "--no-panels", tmp("ds"), tmp("whole"));
  cr_assert_eq(r.status, 1, "%s", r.err);
  th_result_free(&r);
  const char *bin = getenv("DREAM_TEST_BINARY") ? getenv("DREAM_TEST_BINARY") : DREAM_BINARY;
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "DREAM='%s' '%s/scripts/dist/parallel-audit.sh' -j 2 2 '%s' '%s' --no-panels -q "
           ">'%s' 2>&1",
           bin, DREAM_SOURCE_DIR, tmp("ds"), tmp("par"), tmp("parallel.log"));
  int rc = system(cmd);
  char *log = th_slurp(tmp("parallel.log"), NULL);
  cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "parallel-audit.sh: status %d: %s", rc,
            log ? log : "");
  cr_expect(log && strstr(log, "broken.jpg"), "the unreadable file is not named: %s",
            log ? log : "");
  free(log);
  assert_same_file("whole/report.json", "par/report.json");
  /* a shard that cannot run (a DIR that is gone) leaves no part: the merge says which, and
   * the parts of the run before are not merged in its place */
  snprintf(cmd, sizeof cmd,
           "DREAM='%s' '%s/scripts/dist/parallel-audit.sh' -j 2 2 '%s' '%s' --no-panels -q "
           ">'%s' 2>&1",
           bin, DREAM_SOURCE_DIR, tmp("no such folder"), tmp("par"), tmp("parallel2.log"));
  rc = system(cmd);
  log = th_slurp(tmp("parallel2.log"), NULL);
  cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) != 0, "status %d: %s", rc, log ? log : "");
  cr_expect(log && strstr(log, "par.parts/1"), "the missing part is not named: %s",
            log ? log : "");
  free(log);
}

Test(audit, merge_refuses_parts_of_different_runs) {
  make_dataset(0);
#define RUN_OK(...)                                                            \
  do {                                                                         \
    th_result rr = TH_RUN("audit", "-q", "--no-panels", __VA_ARGS__);          \
    cr_assert_eq(rr.status, 0, "%s", rr.err);                                  \
    th_result_free(&rr);                                                       \
  } while (0)
  RUN_OK("--shard", "1/2", tmp("ds"), tmp("p1"));
  RUN_OK("--shard", "2/2", tmp("ds"), tmp("p2"));
  RUN_OK("--shard", "2/2", "--top", "3", tmp("ds"), tmp("p2_top3"));
  RUN_OK("--shard", "2/2", "-m", "squeezenet", tmp("ds"), tmp("p2_squeeze"));
  RUN_OK("--shard", "2/3", tmp("ds"), tmp("p2_of3"));
  RUN_OK(tmp("ds"), tmp("whole"));
  struct { const char *a, *b, *msg; } bad[] = {
      {"p1", "p2_top3", "differ in 'options'"},
      {"p1", "p2_squeeze", "differ in 'model'"},
      {"p1", "p2_of3", "is shard 2/3 but"},
      {"p1", "p1", "given twice"},
      {"p1", NULL, "shard 2/2 is missing"},
      {"p1", "whole", "a whole report already"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    th_result r = bad[i].b ? TH_RUN("audit", "--merge", tmp(bad[i].a), tmp(bad[i].b), tmp("m"))
                           : TH_RUN("audit", "--merge", tmp(bad[i].a), tmp("m"));
    cr_assert_eq(r.status, 1, "%s + %s: %s", bad[i].a, bad[i].b, r.err);
    cr_assert(strstr(r.err, bad[i].msg), "%s + %s: %s", bad[i].a, bad[i].b, r.err);
    cr_assert(!exists("m"), "nothing written for a refused merge");
    th_result_free(&r);
  }
  /* a part whose report names a file outside its folder: nothing is copied */
  json_t *evil = load_report("p1");
  json_object_set_new(json_array_get(json_object_get(evil, "images"), 0), "thumb",
                      json_string("../../outside.jpg"));
  mkdir_tmp("evil");
  cr_assert_eq(json_dump_file(evil, tmp("evil/report.json"), 0), 0);
  json_decref(evil);
  th_result e = TH_RUN("audit", "--merge", tmp("evil"), tmp("p2"), tmp("m"));
  cr_assert_eq(e.status, 1);
  cr_assert(strstr(e.err, "names '../../outside.jpg'"), "%s", e.err);
  cr_assert(!exists("m"));
  th_result_free(&e);
  /* a part from another folder: its listing differs */
  mkdir_tmp("ds2");
  copy_photo("images/dog.jpg", "ds2/dog.jpg");
  th_result r = TH_RUN("audit", "-q", "--no-panels", "--shard", "2/2", tmp("ds2"), tmp("o2"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "--merge", tmp("p1"), tmp("o2"), tmp("m"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "differ in 'listing'"), "%s", r.err);
  th_result_free(&r);
}

Test(audit, empty_folder_and_unknown_label_write_nothing) {
  mkdir_tmp("empty");
  mkdir_tmp("empty/sub");
  th_result r = TH_RUN("audit", tmp("empty"), tmp("out"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "no images"), "%s", r.err);
  cr_assert(!exists("out"), "no REPORT_DIR left behind");
  th_result_free(&r);

  /* a REPORT_DIR inside DIR: its thumbnails would be audited next time */
  r = TH_RUN("audit", tmp("empty"), tmp("empty/sub/report"));
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "is inside DIR"), "%s", r.err);
  th_result_free(&r);

  make_dataset(0);
  mkdir_tmp("ds/bald eagel");
  copy_photo("images/eagle.jpg", "ds/bald eagel/e.jpg");
  r = TH_RUN("audit", tmp("ds"), tmp("out"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "bald eagel"), "%s", r.err);
  cr_assert(strstr(r.err, "bald eagle"), "the closest name is suggested: %s", r.err);
  cr_assert(!exists("out"), "no REPORT_DIR left behind");
  th_result_free(&r);
  /* an existing REPORT_DIR keeps what it had */
  mkdir_tmp("keep");
  th_write_bytes(tmp("keep/report.json"), "old", 3);
  r = TH_RUN("audit", tmp("ds"), tmp("keep"));
  cr_assert_eq(r.status, 1);
  size_t len;
  char *old = th_slurp(tmp("keep/report.json"), &len);
  cr_assert(old && len == 3 && !memcmp(old, "old", 3));
  free(old);
  th_result_free(&r);
}

Test(audit, labels_from_csv_and_unlabelled) {
  mkdir_tmp("flat");
  copy_photo("images/eagle.jpg", "flat/my eagle.jpg");
  copy_photo("images/dog.jpg", "flat/dog.jpg");
  copy_photo("images/scream.jpg", "flat/scream.jpg");
  const char csv[] = "path,label\r\n\"my eagle.jpg\",Bald Eagle\r\ndog.jpg,n02110185\r\n";
  th_write_bytes(tmp("labels.csv"), csv, sizeof csv - 1);
  th_result r = TH_RUN("audit", "--no-panels", "--labels", tmp("labels.csv"), tmp("flat"),
                       tmp("out"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  json_t *rep = load_report("out");
  cr_assert_eq(get_int(image_of(rep, "my eagle.jpg"), "label"), 22);
  cr_assert_eq(get_int(image_of(rep, "dog.jpg"), "label"), 250);
  cr_assert(json_is_null(json_object_get(image_of(rep, "scream.jpg"), "label")));
  cr_assert_eq(get_int(json_object_get(rep, "accuracy"), "labelled"), 2);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rep, "options"),
                                                     "labels")), "csv");
  json_decref(rep);
  /* no labels at all: no accuracy */
  r = TH_RUN("audit", "--no-panels", tmp("flat"), tmp("out2"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  rep = load_report("out2");
  cr_assert(json_is_null(json_object_get(rep, "accuracy")));
  cr_assert_eq(json_array_size(json_object_get(rep, "classes")), 0);
  json_decref(rep);
  /* a CSV naming a file that is not there, and a malformed line */
  th_write_bytes(tmp("bad.csv"), "nothere.jpg,kite\n", 17);
  r = TH_RUN("audit", "--labels", tmp("bad.csv"), tmp("flat"), tmp("out3"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "bad.csv:1: 'nothere.jpg' is not an image of"), "%s", r.err);
  th_result_free(&r);
  th_write_bytes(tmp("bad.csv"), "dog.jpg\n", 8);
  r = TH_RUN("audit", "--labels", tmp("bad.csv"), tmp("flat"), tmp("out3"));
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "bad.csv:1: expected path,label"), "%s", r.err);
  cr_assert(!exists("out3"));
  th_result_free(&r);
}

Test(audit, usage_errors_exit_2) {
  const char *const *cases[] = {
      (const char *const[]){"audit", "--shard", "3/2", "a", "b", NULL},
      (const char *const[]){"audit", "--merge", "-m", "squeezenet", "a", "b", NULL},
      (const char *const[]){"audit", "--framing", "fit", "a", "b", NULL},
      (const char *const[]){"audit", "a", NULL},
      (const char *const[]){"audit", "--merge", "a", NULL},
      (const char *const[]){"audit", "--top", "0", "a", "b", NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    th_result r = th_run(cases[i]);
    cr_assert_eq(r.status, 2, "case %zu: %s", i, r.err);
    cr_assert(strstr(r.err, "dream audit --help"), "%s", r.err);
    th_result_free(&r);
  }
}

/* index.html in Debian's chromium, headless: a harness injected before the page's own
 * script records load errors of any element, uncaught exceptions and console.error, then
 * checks that every <img> decoded (naturalWidth > 0) and that a header click sorts. */
static const char harness[] =
    "<script>window.__e=[];"
    "addEventListener('error',e=>__e.push(e.message||('load failed: '+(e.target&&e.target.src)))"
    ",true);"
    "const __c=console.error;console.error=(...a)=>{__e.push(a.join(' '));__c(...a)};"
    "addEventListener('load',()=>{const im=[...document.images];"
    "const bad=im.filter(i=>!(i.complete&&i.naturalWidth>0)).map(i=>i.getAttribute('src'));"
    "const th=document.querySelector('#images th:nth-child(2)');th.click();th.click();"
    "const first=document.querySelector('#images tbody tr td:nth-child(2)').textContent;"
    "const p=document.createElement('pre');p.id='harness';"
    "p.textContent='RESULT images='+im.length+' broken='+bad.length+' sorted='+"
    "th.className+' first='+first+' errors='+__e.length+' '+bad.join(',')+' '+__e.join('|')"
    "+' END';document.body.append(p)});</script>";

Test(audit, page_in_headless_chromium) {
  cr_assert_eq(system("command -v chromium >/dev/null"), 0,
               "chromium is a test dependency (scripts/setup.sh installs it)");
  make_dataset(1);
  th_result r = TH_RUN("audit", "-q", "-l", "conv1/7x7_s2", tmp("ds"), tmp("out"));
  cr_assert_eq(r.status, 1, "%s", r.err);
  th_result_free(&r);
  size_t len;
  char *page = th_slurp(tmp("out/index.html"), &len);
  cr_assert(page);
  cr_assert(!strstr(page, "http://") && !strstr(page, "https://") && !strstr(page, "src=\"/"),
            "the page fetches nothing");
  char *head = strstr(page, "<head>");
  cr_assert(head);
  head += 6;
  FILE *f = fopen(tmp("out/check.html"), "wb");
  cr_assert(f);
  fwrite(page, 1, (size_t)(head - page), f);
  fputs(harness, f);
  fputs(head, f);
  fclose(f);
  free(page);
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && timeout 120 chromium --headless --disable-gpu --no-sandbox "
           "--user-data-dir='%s/profile' --enable-logging=stderr --v=0 "
           "--virtual-time-budget=10000 --dump-dom 'file://%s/out/check.html' "
           ">dom.html 2>chromium.log",
           th_tmpdir, th_tmpdir, th_tmpdir);
  cr_assert_eq(system(cmd), 0, "chromium failed: %s", th_slurp(tmp("chromium.log"), NULL));
  char *dom = th_slurp(tmp("dom.html"), NULL), *log = th_slurp(tmp("chromium.log"), NULL);
  cr_assert(dom && log);
  char *res = strstr(dom, "<pre id=\"harness\">");
  cr_assert(res, "the harness did not run: %.2000s\n%s", dom, log);
  res += strlen("<pre id=\"harness\">");
  int images = -1, broken = -1, errors = -1;
  char sorted[64] = "", first[256] = "";
  cr_assert_eq(sscanf(res, "RESULT images=%d broken=%d sorted=%63s first=%255[^=]", &images,
                      &broken, sorted, first), 4, "%.500s", res);
  char *ep = strstr(res, "errors=");
  cr_assert(ep && sscanf(ep, "errors=%d", &errors) == 1, "%.500s", res);
  /* 7 thumbnails, two panels per misclassified image, 5 examples of each of 64 units */
  cr_assert_geq(images, 7 + 2 + 64 * 5, "%.500s", res);
  cr_assert_eq(broken, 0, "%.500s", res);
  cr_assert_eq(errors, 0, "%.500s", res);
  cr_assert_str_eq(sorted, "desc", "%.500s", res);
  cr_assert(!strncmp(first, "sorrel/horses.jpg", 17), "sorted by path, descending: %.500s",
            res);
  cr_assert(!strstr(log, "Uncaught") && !strstr(log, "CONSOLE"),
            "console messages: %s", log);
  free(dom);
  free(log);
}

/* --layer: the report's unit statistics against a naive pass over the same activations
 * (each photo framed and run through a session of its own here), and the merge of shards. */
Test(audit, units_of_a_layer) {
  make_dataset(0);
  th_result r = TH_RUN("audit", "-q", "--no-panels", "-k", "3", "-l", "conv2/3x3", tmp("ds"),
                       tmp("whole"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--no-panels", "-k", "3", "-l", "conv2/3x3", "--shard", "1/2",
             tmp("ds"), tmp("p1"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--no-panels", "-k", "3", "-l", "conv2/3x3", "--shard", "2/2",
             tmp("ds"), tmp("p2"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--merge", tmp("p1"), tmp("p2"), tmp("merged"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  assert_same_file("whole/report.json", "merged/report.json");

  json_t *rep = load_report("whole");
  const json_t *L = json_array_get(json_object_get(rep, "layers"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(L, "name")), "conv2/3x3");
  int C = get_int(L, "channels"), H = get_int(L, "height"), W = get_int(L, "width");
  cr_assert_eq(C, 192);
  const json_t *images = json_object_get(rep, "images");
  size_t n = json_array_size(images);
  cr_assert_eq(get_int(L, "images"), (int)n);

  dd_model *m = th_shared_model("models/bvlc_googlenet.onnx");
  int out = dd_model_output(m, 0), layer;
  dd_err err;
  cr_assert_eq(dd_model_resolve(m, "conv2/3x3", &layer, &err), 0, "%s", err.msg);
  int targets[2] = {out, layer};
  dd_shape shape = {4, {1, 3, 224, 224}};
  dd_infer *s;
  cr_assert_eq(dd_infer_new(m, &shape, targets, 2, 0, &s, &err), 0, "%s", err.msg);
  dd_preproc pp = {1, 255, {104, 117, 123}, {1, 1, 1}};
  long long *pos = calloc((size_t)C, sizeof *pos);
  int *act = calloc((size_t)C, sizeof *act);
  float *mx = malloc(n * (size_t)C * sizeof *mx);
  int *arg = malloc(n * (size_t)C * sizeof *arg);
  for (size_t i = 0; i < n; i++) {
    char rel[512];
    snprintf(rel, sizeof rel, "ds/%s",
             json_string_value(json_object_get(json_array_get(images, i), "path")));
    dd_image *im, *fr;
    cr_assert_eq(dd_image_load(tmp(rel), 0, &im, &err), 0, "%s", err.msg);
    cr_assert_eq(dd_image_frame(im, DD_FRAME_CROP, 224, 224, &fr, NULL, &err), 0);
    cr_assert_eq(dd_infer_image(s, fr, &pp, &err), 0, "%s", err.msg);
    const dd_tensor *a = dd_infer_output(s, 1);
    cr_assert_eq(a->shape.d[1], C);
    cr_assert_eq(a->shape.d[2], H);
    cr_assert_eq(a->shape.d[3], W);
    for (int c = 0; c < C; c++) {
      const float *p = dd_f32(a) + (size_t)c * H * W;
      int best = 0, any = 0;
      for (int j = 0; j < H * W; j++) {
        if (p[j] > 0) pos[c]++, any = 1;
        if (p[j] > p[best]) best = j;
      }
      act[c] += any;
      mx[i * (size_t)C + (size_t)c] = p[best];
      arg[i * (size_t)C + (size_t)c] = best;
    }
    dd_image_free(im);
    dd_image_free(fr);
  }
  const json_t *P = json_object_get(L, "positive"), *A = json_object_get(L, "active_images");
  const json_t *E = json_object_get(L, "examples"), *dead = json_object_get(L, "dead");
  size_t n_dead = 0, n_rare = 0;
  for (int c = 0; c < C; c++) {
    cr_assert_eq(json_integer_value(json_array_get(P, (size_t)c)), pos[c], "unit %d", c);
    cr_assert_eq(json_integer_value(json_array_get(A, (size_t)c)), act[c], "unit %d", c);
    n_dead += pos[c] == 0;
    n_rare += pos[c] > 0 && (double)pos[c] < 0.01 * (double)n * H * W;
    /* the 3 best images, by their maximum, with the cell of the maximum boxed */
    const json_t *ex = json_array_get(E, (size_t)c);
    cr_assert_eq(json_array_size(ex), 3);
    for (size_t k = 0; k < 3; k++) {
      const json_t *e = json_array_get(ex, k);
      size_t i = 0;
      while (i < n && strcmp(json_string_value(json_object_get(json_array_get(images, i),
                                                               "path")),
                             json_string_value(json_object_get(e, "path"))))
        i++;
      cr_assert_lt(i, n);
      float v = mx[i * (size_t)C + (size_t)c];
      cr_assert_eq((float)json_real_value(json_object_get(e, "value")), v, "unit %d", c);
      int better = 0;
      for (size_t j = 0; j < n; j++) better += mx[j * (size_t)C + (size_t)c] > v;
      cr_assert_leq(better, (int)k, "unit %d: example %zu is not among the best", c, k);
      int cell = arg[i * (size_t)C + (size_t)c];
      const json_t *box = json_object_get(e, "box");
      cr_assert_eq(json_integer_value(json_array_get(box, 0)), (cell % W) * 224 / W);
      cr_assert_eq(json_integer_value(json_array_get(box, 1)), (cell / W) * 224 / H);
    }
  }
  cr_assert_eq(json_array_size(dead), n_dead);
  cr_assert_eq(json_array_size(json_object_get(L, "rare")), n_rare);
  free(pos);
  free(act);
  free(mx);
  free(arg);
  dd_infer_free(s);
  dd_model_free(m);
  json_decref(rep);
}

/* --perturb: the framing level against `dream classify --framing squash`, the summary
 * recomputed from the per-image records, noise reproducible across shards. */
Test(audit, perturbation_sweep) {
  make_dataset(0);
  th_result r = TH_RUN("audit", "-q", "--no-panels", "--perturb", "framing,noise", tmp("ds"),
                       tmp("whole"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--no-panels", "--perturb", "noise,framing", "--shard", "1/2",
             tmp("ds"), tmp("p1"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--no-panels", "--perturb", "framing,noise", "--shard", "2/2",
             tmp("ds"), tmp("p2"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("audit", "-q", "--merge", tmp("p1"), tmp("p2"), tmp("merged"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  th_result_free(&r);
  assert_same_file("whole/report.json", "merged/report.json");

  json_t *rep = load_report("whole");
  const json_t *images = json_object_get(rep, "images");
  size_t n = json_array_size(images);
  /* full frame: what classify says with --framing squash */
  const char *args[16] = {"classify", "--top", "1", "--framing", "squash"};
  int na = 5;
  for (size_t i = 0; i < n; i++) {
    char rel[512];
    snprintf(rel, sizeof rel, "ds/%s",
             json_string_value(json_object_get(json_array_get(images, i), "path")));
    args[na++] = strdup(tmp(rel));
  }
  args[na] = NULL;
  r = th_run(args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  const char *p = r.out;
  for (size_t i = 0; i < n; i++) {
    p = strstr(p, ":\n");
    cr_assert(p);
    p += 2;
    double pct;
    int cls;
    cr_assert_eq(sscanf(p, " %lf%% %d", &pct, &cls), 2);
    const json_t *pv = json_object_get(json_array_get(images, i), "perturbed");
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(pv, "framing"), 0)), cls,
                 "%s", args[5 + i]);
  }
  th_result_free(&r);
  for (int i = 5; i < na; i++) free((char *)args[i]);

  const json_t *sweep = json_object_get(rep, "perturbation");
  cr_assert_eq(json_array_size(sweep), 2);
  for (size_t q = 0; q < 2; q++) {
    const json_t *K = json_array_get(sweep, q);
    const char *kind = json_string_value(json_object_get(K, "kind"));
    cr_assert_str_eq(kind, q ? "framing" : "noise"); /* in the library's order */
    size_t nl = json_array_size(json_object_get(K, "levels"));
    cr_assert_eq(nl, q ? 1u : 5u);
    int expect_first[64];
    for (size_t i = 0; i < n; i++) expect_first[i] = -1;
    for (size_t lv = 0; lv < nl; lv++) {
      int labelled = 0, hit = 0, flip = 0;
      for (size_t i = 0; i < n; i++) {
        const json_t *im = json_array_get(images, i);
        int c = (int)json_integer_value(
            json_array_get(json_object_get(json_object_get(im, "perturbed"), kind), lv));
        int clean = get_int(json_array_get(json_object_get(im, "top5"), 0), "class");
        const json_t *lab = json_object_get(im, "label");
        if (json_is_integer(lab)) labelled++, hit += c == json_integer_value(lab);
        flip += c != clean;
        if (c != clean && expect_first[i] < 0) expect_first[i] = (int)lv;
      }
      cr_assert_eq(json_real_value(json_array_get(json_object_get(K, "accuracy"), lv)),
                   (double)hit / labelled, "%s level %zu", kind, lv);
      cr_assert_eq(json_real_value(json_array_get(json_object_get(K, "flipped"), lv)),
                   (double)flip / (double)n, "%s level %zu", kind, lv);
    }
    /* first flips: every image that flips, mildest level first, then by path */
    const json_t *ff = json_object_get(K, "first_flips");
    size_t want = 0;
    for (size_t i = 0; i < n; i++) want += expect_first[i] >= 0;
    cr_assert_eq(json_array_size(ff), want, "%s", kind);
    for (size_t f = 0; f < json_array_size(ff); f++) {
      const json_t *e = json_array_get(ff, f);
      const char *path = json_string_value(json_object_get(e, "path"));
      size_t i = 0;
      while (strcmp(json_string_value(json_object_get(json_array_get(images, i), "path")), path))
        i++;
      cr_assert(json_equal(json_object_get(e, "level"),
                           json_array_get(json_object_get(K, "levels"),
                                          (size_t)expect_first[i])), "%s: %s", kind, path);
      if (f) {
        const json_t *prev = json_array_get(ff, f - 1);
        size_t j = 0;
        while (strcmp(json_string_value(json_object_get(json_array_get(images, j), "path")),
                      json_string_value(json_object_get(prev, "path"))))
          j++;
        cr_assert(expect_first[j] < expect_first[i] ||
                      (expect_first[j] == expect_first[i] && j < i), "order of %s", kind);
      }
    }
  }
  json_decref(rep);

  r = TH_RUN("audit", "--perturb", "blurr", tmp("ds"), tmp("x"));
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "'blurr' is not a perturbation"), "%s", r.err);
  th_result_free(&r);
}

/* A file name that is not UTF-8 cannot be a JSON string: it is reported (its bytes shown as
 * \xNN) and the others are audited; the report stays valid JSON. */
Test(audit, file_name_not_utf8) {
  mkdir_tmp("d");
  copy_photo("images/dog.jpg", "d/dog.jpg");
  copy_photo("images/eagle.jpg", "d/bad\xff name.jpg");
  th_result r = TH_RUN("audit", "--no-panels", tmp("d"), tmp("out"));
  cr_assert_eq(r.status, 1, "%s", r.err);
  cr_assert(strstr(r.err, "bad\\xff name.jpg: the file name is not valid UTF-8"), "%s", r.err);
  th_result_free(&r);
  json_t *rep = load_report("out");
  cr_assert_eq(json_array_size(json_object_get(rep, "images")), 1);
  const json_t *e = json_array_get(json_object_get(rep, "errors"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(e, "path")), "bad\\xff name.jpg");
  json_decref(rep);
  size_t len;
  char *page = th_slurp(tmp("out/index.html"), &len);
  cr_assert(page && strstr(page, "bad\\\\xff name.jpg"), "the page lists it");
  free(page);
}
