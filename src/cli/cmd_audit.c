/* dream audit: a classifier on a folder of labelled images (dream/audit.h), a sharded run's
 * parts merged, the report written as REPORT_DIR/report.json and REPORT_DIR/index.html. */
/* realpath is XSI */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/audit_html.h"
#include "cli/cli.h"
#include "dream/audit.h"

static const char audit_help[] =
    "usage: dream audit [options] DIR REPORT_DIR\n"
    "       dream audit --merge PART_DIR... REPORT_DIR\n\n"
    "Classifies every image under DIR (subfolders too) and writes REPORT_DIR/report.json: each\n"
    "image's top 5 (what `dream classify --top 5` prints for it), the rank of its true class,\n"
    "top-1 and top-5 accuracy, accuracy per class and the most frequent confusions; and\n"
    "REPORT_DIR/index.html, a page that works offline with sortable tables, thumbnails and,\n"
    "for every misclassified image, Grad-CAM of the predicted and of the true class with the\n"
    "saliency map (REPORT_DIR/panels/).  REPORT_DIR is created if it does not exist.\n\n"
    "Labels: the first subfolder of an image's path names its class: the label text\n"
    "(case-insensitive, e.g. 'Siberian husky'), the wnid (n02110185) or the class index.\n"
    "Images directly in DIR are unlabelled; a folder with no labels has no accuracy.  An\n"
    "unknown name stops the audit before anything is classified, with the closest labels.\n"
    "Images that cannot be read are listed in the report and the others audited; the exit\n"
    "status is then 1.\n\n"
    "Scale-out: --shard I/N audits every N-th file of the sorted listing (the same on every\n"
    "machine that sees the folder); --merge combines the N parts' REPORT_DIRs into the report an\n"
    "unsharded run writes, byte for byte, and refuses parts of different models, options or\n"
    "folders, a shard given twice and a missing one.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -l, --layer L        audit the units (channels) of layer L too (repeatable, up to 16):\n"
    "                       dead and rarely active units over the dataset, and per unit the\n"
    "                       K images where it is highest, with the spot boxed\n"
    "      --perturb LIST   the perturbation sweep: blur, noise, brightness, contrast, rotation,\n"
    "                       occlusion, framing (comma-separated) or all; each at 5 severities\n"
    "                       (framing: the other framing), accuracy per severity and the\n"
    "                       images whose top-1 flips first\n"
    "      --seed N         the noise's seed, mixed with each file's path (default 0)\n"
    "  -k, --top K          the top-K accuracy (accuracy.topk) and the images per unit\n"
    "                       (default 5)\n"
    "      --labels CSV     labels from a CSV of path,label (paths relative to DIR) instead of\n"
    "                       the folder names; images it does not name are unlabelled\n"
    "      --shard I/N      audit shard I of N only (1 <= I <= N)\n"
    "      --merge          the arguments are parts' REPORT_DIRs, then the merged REPORT_DIR\n"
    "      --no-panels      no Grad-CAM panels (report.json and index.html only)\n"
    "      --size S         side of the square the network sees (default: the preset's)\n"
    CLI_FRAMING_HELP CLI_COMMON_HELP;

enum { OPT_PERTURB = 2001, OPT_LABELS = 3001, OPT_SHARD, OPT_MERGE, OPT_NO_PANELS, OPT_SIZE };

/* 1 when `out` (existing or not) lies inside the folder `dir`: its thumbnails would be
 * listed as images by the next run. */
static int inside(const char *dir, const char *out) {
  char rd[PATH_MAX], ro[PATH_MAX + 256], parent[PATH_MAX];
  if (!realpath(dir, rd)) return 0;
  if (!realpath(out, ro)) {
    const char *slash = strrchr(out, '/');
    size_t len = slash ? (size_t)(slash - out) : 0;
    if (len >= sizeof parent) return 0;
    memcpy(parent, out, len);
    parent[len] = 0;
    char rp[PATH_MAX];
    if (!realpath(slash ? (len ? parent : "/") : ".", rp)) return 0;
    snprintf(ro, sizeof ro, "%s/%s", rp, slash ? slash + 1 : out);
  }
  size_t n = strlen(rd);
  return !strcmp(ro, rd) || (!strncmp(ro, rd, n) && (ro[n] == '/' || n == 1));
}

/* REPORT_DIR exists or is created (its parent must exist). *made says we made it. */
static int report_dir(const char *dir, int *made) {
  struct stat st;
  *made = 0;
  if (!stat(dir, &st)) {
    if (!S_ISDIR(st.st_mode)) return cli_errorf("%s: not a folder", dir);
    return 0;
  }
  if (errno != ENOENT) return cli_errorf("%s: %s", dir, strerror(errno));
  if (mkdir(dir, 0777)) return cli_errorf("%s: cannot create it: %s", dir, strerror(errno));
  *made = 1;
  return 0;
}

static void progress(int done, int total, void *user) {
  (void)user;
  fprintf(stderr, "\r\033[Kaudit %d/%d", done + 1, total);
  fflush(stderr);
}

static void summary(const cli_common *co, const json_t *r, const char *dir) {
  const json_t *acc = json_object_get(r, "accuracy");
  size_t n = json_array_size(json_object_get(r, "images"));
  size_t bad = json_array_size(json_object_get(r, "errors"));
  char a[128] = "unlabelled";
  if (json_is_object(acc))
    snprintf(a, sizeof a, "top-1 %.2f%%, top-5 %.2f%% of %lld labelled",
             json_real_value(json_object_get(acc, "top1")) * 100,
             json_real_value(json_object_get(acc, "top5")) * 100,
             (long long)json_integer_value(json_object_get(acc, "labelled")));
  cli_summary(co, "audited %zu images (%s)%s; %s/report.json, %s/index.html", n, a,
              bad ? ", some unreadable" : "", dir, dir);
  for (size_t i = 0; i < bad; i++) {
    const json_t *e = json_array_get(json_object_get(r, "errors"), i);
    cli_warnf("%s", json_string_value(json_object_get(e, "message")));
  }
}

static int merge(const cli_common *co, int n, char **dirs, const char *out) {
  dd_err err;
  json_t **parts = calloc((size_t)n, sizeof *parts);
  if (!parts) return cli_errorf("out of memory");
  int status = 0;
  for (int i = 0; i < n && !status; i++)
    if (dd_audit_read(dirs[i], &parts[i], &err)) status = cli_report(&err);
  json_t *r = NULL;
  if (!status && dd_audit_merge(parts, (const char *const *)dirs, n, &r, &err))
    status = cli_report(&err);
  int made = 0;
  if (!status) status = report_dir(out, &made);
  if (!status && audit_panels_copy(r, (const char *const *)dirs, n, out, &err))
    status = cli_report(&err);
  if (!status && (audit_html_write(r, out, &err) || dd_audit_write(r, out, &err)))
    status = cli_report(&err);
  if (status && made) audit_dir_remove(out);
  if (!status) {
    summary(co, r, out);
    if (json_array_size(json_object_get(r, "errors"))) status = 1;
  }
  json_decref(r);
  for (int i = 0; i < n; i++) json_decref(parts[i]);
  free(parts);
  return status;
}

int cmd_audit(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS, CLI_FRAMING_LONGOPT,
                                           {"top", required_argument, NULL, 'k'},
                                           {"layer", required_argument, NULL, 'l'},
                                           {"perturb", required_argument, NULL, OPT_PERTURB},
                                           CLI_SEED_LONGOPT,
                                           {"labels", required_argument, NULL, OPT_LABELS},
                                           {"shard", required_argument, NULL, OPT_SHARD},
                                           {"merge", no_argument, NULL, OPT_MERGE},
                                           {"no-panels", no_argument, NULL, OPT_NO_PANELS},
                                           {"size", required_argument, NULL, OPT_SIZE},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  dd_audit_opts o;
  dd_audit_opts_init(&o);
  int c, merging = 0, panels = 1, size = 0, model_opts = 0, n_layers = 0;
  const char *layer_names[DD_AUDIT_MAX_LAYERS];
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:k:l:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("audit", "%s", err.msg);
    if (r) {
      if (c != 'q') model_opts = 1;
      continue;
    }
    model_opts = 1;
    switch (c) {
      case 'k': r = cli_parse_int("--top", optarg, 1, 1000, &o.top, &err); break;
      case OPT_LABELS: o.labels_csv = optarg; break;
      case OPT_PERTURB:
        r = dd_perturb_parse(optarg, &o.perturb, &err);
        if (r) dd_err_prefix(&err, "--perturb");
        break;
      case 'l':
        if (n_layers == DD_AUDIT_MAX_LAYERS)
          return cli_usage_error("audit", "--layer: at most %d layers", DD_AUDIT_MAX_LAYERS);
        layer_names[n_layers++] = optarg;
        break;
      case OPT_SHARD:
        r = cli_parse_shard("--shard", optarg, &o.shard_index, &o.shard_count, &err);
        break;
      case OPT_MERGE: merging = 1; model_opts--; break;
      case OPT_NO_PANELS: panels = 0; break;
      case OPT_SIZE: r = cli_parse_int("--size", optarg, 16, 4096, &size, &err); break;
      case 'h': fputs(audit_help, stdout); return 0;
      default: return cli_getopt_error("audit", c, argv);
    }
    if (r) return cli_usage_error("audit", "%s", err.msg);
  }
  int n_args = argc - optind;
  if (merging) {
    if (model_opts)
      return cli_usage_error("audit", "--merge takes the parts' options from their reports: "
                             "give no other option but -q");
    if (n_args < 2)
      return cli_usage_error("audit", "--merge: expected PART_DIR... REPORT_DIR");
    const char *out = argv[argc - 1];
    for (int i = optind; i < argc - 1; i++)
      if (!strcmp(argv[i], out))
        return cli_usage_error("audit", "--merge: the output %s is also a part", out);
    return merge(&co, n_args - 1, argv + optind, out);
  }
  if (n_args != 2) return cli_usage_error("audit", "expected DIR and REPORT_DIR");
  if (co.framing == DD_FRAME_FIT)
    return cli_usage_error("audit", "--framing fit gives each photo its own size; audit plans "
                           "one size (use crop or squash)");
  cli_common_warn(&co);
  o.framing = co.framing;
  o.seed = co.seed.value;
  if (co.seed_given && !(o.perturb & (1u << DD_PERTURB_NOISE)))
    cli_warnf("--seed does nothing without --perturb noise");
  const char *dir = argv[optind], *out = argv[optind + 1];
  if (inside(dir, out))
    return cli_usage_error("audit", "REPORT_DIR %s is inside DIR %s: its pictures would be "
                           "audited next time", out, dir);

  int made = 0, status = report_dir(out, &made);
  if (status) return status;
  char json[4096], html[4096];
  snprintf(json, sizeof json, "%s/report.json", out);
  snprintf(html, sizeof html, "%s/index.html", out);
  cli_files files = {0};
  cli_files_in(&files, o.labels_csv);
  cli_files_out(&files, json, CLI_OUT_JSON);
  cli_files_out(&files, html, CLI_OUT_ANY);
  cli_model cm;
  status = cli_model_open_checked("audit", &co.model, &files, &cm);
  if (status) {
    if (made) audit_dir_remove(out);
    return status;
  }
  int layers[DD_AUDIT_MAX_LAYERS];
  for (int l = 0; l < n_layers && !status; l++)
    if (cli_resolve(cm.model, layer_names[l], &layers[l], &err)) status = cli_report(&err);
  if (status) {
    if (made) audit_dir_remove(out);
    cli_model_close(&cm);
    return status;
  }
  o.layers = layers;
  o.n_layers = n_layers;
  o.size = size ? size : cm.preset.size;
  o.max_memory = cm.max_memory;
  o.max_pixels = cli_max_pixels(cm.max_memory);
  if (cli_progress_shown(&co)) o.progress = progress;
  json_t *r = NULL;
  int rc = dd_audit_run(cm.model, cm.preset.model_path, &cm.preset.pre, cm.preset.labels_path,
                        dir, &o, &r, &err);
  if (o.progress) fputs("\r\033[K", stderr);
  if (rc) status = cli_report(&err);
  if (!status && audit_panels(r, &cm, dir, o.framing, o.size, panels, out, &err))
    status = cli_report(&err);
  if (!status && (audit_html_write(r, out, &err) || dd_audit_write(r, out, &err)))
    status = cli_report(&err);
  if (status && made) audit_dir_remove(out);
  if (!status) {
    summary(&co, r, out);
    if (json_array_size(json_object_get(r, "errors"))) status = 1;
  }
  json_decref(r);
  cli_model_close(&cm);
  return status;
}
