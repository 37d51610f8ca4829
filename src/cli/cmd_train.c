/* dream train: a classifier trained on a labelled folder (dream/train.h), written as ONNX with
 * its preprocessing and labels in metadata_props; per-epoch snapshots of the first layer's
 * filters and the learning curves. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dream/dataset.h"
#include "dream/train.h"
#include "dream/visualize.h"
#include "util.h"
#include "dream/video.h"

static const char train_help[] =
    "usage: dream train [options] TRAIN_DIR OUT.onnx\n\n"
    "Trains a classifier with softmax cross-entropy on TRAIN_DIR, a folder with one subfolder\n"
    "of images per class (the format of `dream audit`; `dream shapes` makes one), and writes\n"
    "it to OUT.onnx with its input size, mean/std, channel order and labels in the model's\n"
    "metadata_props, which the loader reads: `dream audit --model OUT.onnx DIR`, `dream\n"
    "filters --model OUT.onnx` and dreams need no other flag.  OUT.onnx is rewritten\n"
    "atomically after every epoch: an interrupted run (Ctrl-C, SIGTERM) keeps the last\n"
    "complete epoch's model.\n\n"
    "options:\n"
    "      --arch A         perceptron (one Gemm), mlp (Gemm-Relu-Gemm, 64 hidden), cnn (two\n"
    "                       conv3x3-relu-maxpool stages of 8 and 16 channels, then a Gemm), or\n"
    "                       FILE.onnx: fine-tune that model from its own weights (default cnn)\n"
    "      --epochs E       passes over TRAIN_DIR, 1..100000 (default 10)\n"
    "      --batch B        images per step, 1..4096 (default 32)\n"
    "      --lr R           learning rate (default 0.05 for sgd, 0.001 for adam)\n"
    "      --optimizer O    sgd (torch.optim.SGD, momentum 0.9) or adam (torch.optim.Adam)\n"
    "                       (default sgd)\n"
    "      --schedule S     constant (default) or cosine: epoch e (from 0) of E runs at\n"
    "                       lr * (1 + cos(pi * e / E)) / 2\n"
    "      --momentum M     SGD momentum, 0..0.999 (default 0.9)\n"
    "      --weight-decay W L2 penalty added to the gradient (default 0)\n"
    "      --size S         input side for the built-in architectures (default: the first\n"
    "                       image's width); images of another size are resized, and said so\n"
    "      --val DIR        a labelled folder to measure held-out loss and accuracy after each\n"
    "                       epoch (its classes must be TRAIN_DIR's)\n"
    "      --snapshots DIR  before training (DIR/initial.onnx, DIR/filters_0000.png) and after\n"
    "                       each epoch: the first layer's filters (DIR/filters_EEEE.png), the\n"
    "                       first 4 channels of the last Conv visualized (DIR/channels_EEEE.png,\n"
    "                       64 steps of `dream filters --optimize`) and the\n"
    "                       curves so far (DIR/curves.png: loss above, accuracy below; train\n"
    "                       red, validation blue); at the end DIR/filters.gif, the filters\n"
    "                       forming, one frame per epoch\n" CLI_SEED_HELP CLI_COMMON_HELP;

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

/* ---- the data ---- */

typedef struct dataset {
  int n, c, s;
  float *x; /* n x c x s x s, preprocessed */
  int *y;
} dataset;

static void dataset_free(dataset *d) {
  free(d->x);
  free(d->y);
  memset(d, 0, sizeof *d);
}

/* The class of a listed file: its first path component, which must be a folder. */
static int class_of(const char *rel, char *name, size_t size) {
  const char *slash = strchr(rel, '/');
  if (!slash || (size_t)(slash - rel) >= size) return -1;
  memcpy(name, rel, (size_t)(slash - rel));
  name[slash - rel] = 0;
  return 0;
}

/* Loads a labelled folder.  With *n_classes 0 the classes are found (sorted, as listed);
 * otherwise they must be among `classes`.  size 0: the first image's width. */
static int load_folder(const char *dir, char ***classes, int *n_classes, int *size,
                       const dd_preproc *pre, int c, int quiet, dataset *out) {
  dd_err err;
  dd_dataset ds;
  memset(out, 0, sizeof *out);
  if (dd_dataset_list(dir, 0, &ds, &err)) return cli_report(&err);
  int status = 1, find = *n_classes == 0, resized = 0;
  char name[1024];
  if (!ds.n) {
    cli_errorf("%s: no images in it (one subfolder of images per class)", dir);
    goto done;
  }
  for (int i = 0; i < ds.n; i++) {
    if (class_of(ds.rel[i], name, sizeof name)) {
      cli_errorf("%s/%s: an image outside a class folder (TRAIN_DIR holds one subfolder per "
                 "class)", dir, ds.rel[i]);
      goto done;
    }
    int k = -1;
    for (int j = 0; j < *n_classes; j++)
      if (!strcmp((*classes)[j], name)) k = j;
    if (k < 0 && !find) {
      cli_errorf("%s: class '%s' is not one the model was trained on", dir, name);
      goto done;
    }
    if (k < 0) {
      char **nc = realloc(*classes, sizeof(char *) * (size_t)(*n_classes + 1));
      if (!nc || !(nc[*n_classes] = dd_strdup(name))) {
        if (nc) *classes = nc;
        cli_errorf("out of memory");
        goto done;
      }
      *classes = nc;
      (*n_classes)++;
    }
  }
  if (find && *n_classes < 2) {
    cli_errorf("%s: one class only ('%s'): a classifier needs at least two class folders",
               dir, (*classes)[0]);
    goto done;
  }
  out->n = ds.n;
  out->c = c;
  out->y = malloc(sizeof(int) * (size_t)(ds.n > 0 ? ds.n : 1));
  char path[4096];
  for (int i = 0; i < ds.n; i++) {
    dd_image *im = NULL, *rs = NULL;
    snprintf(path, sizeof path, "%s/%s", ds.root, ds.rel[i]);
    if (dd_image_load(path, 0, &im, &err)) {
      cli_report(&err);
      goto done;
    }
    if (!*size) *size = im->w;
    if (!out->x) {
      out->s = *size;
      size_t per = (size_t)c * out->s * out->s;
      out->x = malloc(sizeof(float) * per * (size_t)ds.n);
      if (!out->x || !out->y) {
        dd_image_free(im);
        cli_errorf("out of memory");
        goto done;
      }
    }
    if (im->w != out->s || im->h != out->s) {
      if (dd_image_resize(im, out->s, out->s, &rs, &err)) {
        dd_image_free(im);
        cli_report(&err);
        goto done;
      }
      dd_image_free(im);
      im = rs;
      resized++;
    }
    float *tmp = malloc(sizeof(float) * 3 * (size_t)out->s * out->s);
    if (!tmp) {
      dd_image_free(im);
      cli_errorf("out of memory");
      goto done;
    }
    dd_image_to_input(im, pre, tmp);
    size_t plane = (size_t)out->s * out->s;
    float *dst = out->x + (size_t)i * c * plane;
    if (c == 3) memcpy(dst, tmp, sizeof(float) * 3 * plane);
    else
      for (size_t p = 0; p < plane; p++) { /* grey: the channels' mean */
        float g = (tmp[p] + tmp[plane + p] + tmp[2 * plane + p]) / 3;
        for (int ch = 0; ch < c; ch++) dst[ch * plane + p] = g;
      }
    free(tmp);
    dd_image_free(im);
    class_of(ds.rel[i], name, sizeof name);
    for (int j = 0; j < *n_classes; j++)
      if (!strcmp((*classes)[j], name)) out->y[i] = j;
  }
  if (resized && !quiet)
    cli_warnf("%s: %d of %d images were not %dx%d: resized", dir, resized, ds.n, out->s,
              out->s);
  status = 0;
done:
  if (status) dataset_free(out);
  dd_dataset_free(&ds);
  return status;
}

/* ---- pictures ---- */

static void put(dd_image *im, int x, int y, const float c[3]) {
  if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
  float *p = im->rgb + ((size_t)y * im->w + x) * 3;
  p[0] = c[0];
  p[1] = c[1];
  p[2] = c[2];
}

static void line(dd_image *im, int x0, int y0, int x1, int y1, const float c[3]) {
  int n = abs(x1 - x0) > abs(y1 - y0) ? abs(x1 - x0) : abs(y1 - y0);
  for (int i = 0; i <= n; i++) {
    float t = n ? (float)i / n : 0;
    int x = (int)lroundf(x0 + t * (x1 - x0)), y = (int)lroundf(y0 + t * (y1 - y0));
    put(im, x, y, c);
    put(im, x, y + 1, c);
  }
}

/* 3x5 digits for the tick labels. */
static const unsigned short digits[11] = {0x7B6F, 0x2C97, 0x73E7, 0x73CF, 0x5BC9, 0x79CF,
                                          0x79EF, 0x7249, 0x7BEF, 0x7BCF, 0x0002};
static void text(dd_image *im, int x, int y, const char *s, const float c[3]) {
  for (; *s; s++, x += 4) {
    int g = *s == '.' ? 10 : *s >= '0' && *s <= '9' ? *s - '0' : -1;
    if (g < 0) continue;
    for (int r = 0; r < 5; r++)
      for (int q = 0; q < 3; q++)
        if (digits[g] >> (14 - (r * 3 + q)) & 1) put(im, x + q, y + r, c);
  }
}

/* One panel: curves a (red) and b (blue, may be NULL) over epochs, y from 0 to ymax. */
static void panel(dd_image *im, int top, int height, const double *a, const double *b, int n,
                  double ymax) {
  const float axis[3] = {40, 40, 40}, grid[3] = {215, 215, 215}, red[3] = {210, 40, 40},
              blue[3] = {40, 80, 210};
  int x0 = 40, x1 = im->w - 12, y0 = top + height - 16, y1 = top + 10;
  char lab[32];
  for (int t = 0; t <= 4; t++) {
    int y = y0 + (y1 - y0) * t / 4;
    line(im, x0, y, x1, y, grid);
    snprintf(lab, sizeof lab, "%.2f", ymax * t / 4);
    text(im, 4, y - 2, lab, axis);
  }
  int nt = n < 10 ? n : 10;
  for (int t = 1; t <= nt; t++) {
    int e = (int)((long)n * t / nt), x = x0 + (x1 - x0) * e / (n > 1 ? n : 1);
    line(im, x, y0, x, y0 + 3, axis);
    snprintf(lab, sizeof lab, "%d", e);
    text(im, x - 2 * (int)strlen(lab), y0 + 6, lab, axis);
  }
  line(im, x0, y0, x1, y0, axis);
  line(im, x0, y0, x0, y1, axis);
  for (int k = 0; k < 2; k++) {
    const double *v = k ? b : a;
    if (!v) continue;
    for (int e = 0; e < n; e++) {
      double c0 = e ? v[e - 1] : v[e], c1 = v[e];
      if (!isfinite(c0) || !isfinite(c1)) continue;
      int xa = x0 + (x1 - x0) * (e ? e : 0) / (n > 1 ? n : 1);
      int xb = x0 + (x1 - x0) * (e + 1) / (n > 1 ? n : 1);
      int ya = y0 - (int)lround((y0 - y1) * fmin(c0, ymax) / ymax);
      int yb = y0 - (int)lround((y0 - y1) * fmin(c1, ymax) / ymax);
      line(im, xa, ya, xb, yb, k ? blue : red);
    }
  }
}

/* Loss (above) and accuracy (below) per epoch: train red, validation blue. */
static int plot_curves(const char *path, const double *tl, const double *ta, const double *vl,
                       const double *va, int n, dd_err *err) {
  dd_image *im;
  int rc = dd_image_new(480, 360, &im, err);
  if (rc) return rc;
  for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) im->rgb[i] = 255;
  double lmax = 0.5;
  for (int e = 0; e < n; e++) {
    if (isfinite(tl[e]) && tl[e] > lmax) lmax = tl[e];
    if (vl && isfinite(vl[e]) && vl[e] > lmax) lmax = vl[e];
  }
  lmax = ceil(lmax * 2) / 2;
  panel(im, 0, 180, tl, vl, n, lmax);
  panel(im, 180, 180, ta, va, n, 1.0);
  rc = dd_image_save(path, im, err);
  dd_image_free(im);
  return rc;
}

/* The first layer drawn: a Conv's kernels (dd_vis_filters), or a Gemm reading the pixels as
 * one image per output (the perceptron's templates), each scaled around mid-grey. */
static int first_layer_picture(const dd_model *m, int c, int s, dd_image **out, dd_err *err) {
  *out = NULL;
  for (int i = 0; i < dd_model_num_nodes(m); i++) {
    const char *op = dd_model_node_op(m, i);
    if (!strcmp(op, "Conv")) {
      if (c != 3) return DD_ENOTFOUND;
      return dd_vis_filters(m, i, 0, 0, 2, out, NULL, err);
    }
    if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul")) {
      int wv = dd_model_node_input(m, i, 1);
      const dd_tensor *w = wv >= 0 ? dd_model_value_tensor(m, wv) : NULL;
      int64_t trans = 0;
      if (!strcmp(op, "Gemm") && dd_model_node_attr_int(m, i, "transB", 0, &trans, err))
        return DD_ENOTFOUND;
      int64_t plane = (int64_t)s * s, feat = plane * c;
      if (!w || w->shape.ndim != 2 || w->shape.d[trans ? 1 : 0] != feat) return DD_ENOTFOUND;
      int n = (int)w->shape.d[trans ? 0 : 1];
      if (n > 256) n = 256;
      int zoom = s >= 32 ? 2 : 64 / s;
      dd_image **tiles = calloc((size_t)n, sizeof *tiles);
      int rc = tiles ? DD_OK : dd_fail(err, DD_ENOMEM, "out of memory");
      for (int k = 0; !rc && k < n; k++) {
        if ((rc = dd_image_new(s * zoom, s * zoom, &tiles[k], err))) break;
        float mx = 1e-12f;
        for (int64_t f = 0; f < feat; f++) {
          float v = fabsf(dd_f32(w)[trans ? k * feat + f : f * w->shape.d[1] + k]);
          if (v > mx) mx = v;
        }
        for (int y = 0; y < s * zoom; y++)
          for (int x = 0; x < s * zoom; x++)
            for (int ch = 0; ch < 3; ch++) {
              int64_t f = (c == 3 ? ch : 0) * plane + (int64_t)(y / zoom) * s + x / zoom;
              float v = dd_f32(w)[trans ? k * feat + f : f * w->shape.d[1] + k];
              tiles[k]->rgb[((size_t)y * s * zoom + x) * 3 + ch] = 127.5f + 127.5f * v / mx;
            }
      }
      if (!rc) rc = dd_vis_grid((const dd_image *const *)tiles, n, 2, 255, out, NULL, err);
      for (int k = 0; tiles && k < n; k++) dd_image_free(tiles[k]);
      free(tiles);
      return rc;
    }
  }
  return DD_ENOTFOUND;
}

/* A few channel visualizations (dd_fv: 64 steps each at the input's size) of the last Conv's
 * output, the first four channels, as one grid: DD_ENOTFOUND when there is no Conv or the
 * input is not 3-channel. */
static int channel_picture(const dd_model *m, const dd_preproc *pre, int c, int s, uint64_t seed,
                           dd_image **out, dd_err *err) {
  *out = NULL;
  int value = -1;
  for (int i = 0; i < dd_model_num_nodes(m); i++)
    if (!strcmp(dd_model_node_op(m, i), "Conv")) value = dd_model_node_output(m, i, 0);
  if (value < 0 || c != 3) return DD_ENOTFOUND;
  dd_fv_opts o;
  dd_fv_opts_init(&o);
  o.size = s;
  o.iters = 64;
  o.jitter = s / 16;
  dd_fv *fv;
  int rc = dd_fv_new(m, pre, value, &o, &fv, err);
  if (rc) return rc;
  int n = dd_fv_channels(fv) < 4 ? dd_fv_channels(fv) : 4;
  dd_image *tiles[4] = {NULL, NULL, NULL, NULL};
  for (int k = 0; !rc && k < n; k++)
    rc = dd_fv_run(fv, k, seed + (uint64_t)k, &tiles[k], NULL, err);
  if (!rc) rc = dd_vis_grid((const dd_image *const *)tiles, n, 2, 255, out, NULL, err);
  for (int k = 0; k < n; k++) dd_image_free(tiles[k]);
  dd_fv_free(fv);
  return rc;
}

/* The snapshot after `epoch` epochs (0: before training, with DIR/initial.onnx): the curves
 * so far, the first layer's picture and a frame of the GIF.  Prints; 0 or 1. */
static int snapshot(const char *dir, dd_trainer *t, const dataset *train, const char *arch,
                    int epoch, const double *hist, const dd_train_meta *meta,
                    dd_movie_writer **gif) {
  {
    dd_err e2;
    char cp[4096];
    dd_image *ch;
    int r2 = channel_picture(dd_trainer_model(t), &meta->pre, train->c, train->s,
                             (uint64_t)epoch, &ch, &e2);
    if (r2 && r2 != DD_ENOTFOUND) return cli_report(&e2);
    if (!r2) {
      snprintf(cp, sizeof cp, "%s/channels_%04d.png", dir, epoch);
      r2 = dd_image_save(cp, ch, &e2);
      dd_image_free(ch);
      if (r2) return cli_report(&e2);
    }
  }
  dd_err err;
  char path[4096];
  int rc = DD_OK;
  if (epoch == 0) {
    snprintf(path, sizeof path, "%s/initial.onnx", dir);
    if (dd_trainer_save(t, path, meta, &err)) return cli_report(&err);
  } else {
    double *cur = malloc(sizeof(double) * 4 * (size_t)epoch);
    if (!cur) return cli_errorf("out of memory");
    for (int q = 0; q < epoch; q++)
      for (int f = 0; f < 4; f++) cur[f * epoch + q] = hist[4 * q + f];
    snprintf(path, sizeof path, "%s/curves.png", dir);
    rc = plot_curves(path, cur, cur + epoch, cur + 2 * epoch, cur + 3 * epoch, epoch, &err);
    free(cur);
    if (rc) return cli_report(&err);
  }
  dd_image *fl;
  rc = first_layer_picture(dd_trainer_model(t), train->c, train->s, &fl, &err);
  if (rc == DD_ENOTFOUND) {
    if (epoch == 0) cli_warnf("--snapshots: no first layer to draw in %s", arch);
    return 0;
  }
  if (rc) return cli_report(&err);
  snprintf(path, sizeof path, "%s/filters_%04d.png", dir, epoch);
  rc = dd_image_save(path, fl, &err);
  if (!rc && !*gif) {
    snprintf(path, sizeof path, "%s/filters.gif", dir);
    *gif = dd_movie_open(path, fl->w, fl->h, 4, &err);
    if (!*gif) rc = err.code ? err.code : DD_EIO;
  }
  if (!rc) rc = dd_movie_write(*gif, fl, &err);
  dd_image_free(fl);
  return rc ? cli_report(&err) : 0;
}

/* ---- the command ---- */

static int evaluate(dd_trainer *t, const dataset *d, int batch, double *loss, double *acc,
                    dd_err *err) {
  double total = 0;
  int good = 0;
  size_t per = (size_t)d->c * d->s * d->s;
  for (int i = 0; i < d->n; i += batch) {
    int n = d->n - i < batch ? d->n - i : batch, g;
    double l;
    int rc = dd_trainer_eval(t, d->x + per * i, d->y + i, n, &l, &g, NULL, err);
    if (rc) return rc;
    total += l * n;
    good += g;
  }
  *loss = total / d->n;
  *acc = (double)good / d->n;
  return DD_OK;
}

int cmd_train(int argc, char **argv) {
  enum { O_ARCH = 2101, O_EPOCHS, O_BATCH, O_LR, O_OPT, O_MOM, O_WD, O_SNAP, O_VAL, O_SIZE,
         O_SCHED };
  static const struct option longopts[] = {{"arch", required_argument, NULL, O_ARCH},
                                           {"epochs", required_argument, NULL, O_EPOCHS},
                                           {"batch", required_argument, NULL, O_BATCH},
                                           {"lr", required_argument, NULL, O_LR},
                                           {"optimizer", required_argument, NULL, O_OPT},
                                           {"momentum", required_argument, NULL, O_MOM},
                                           {"weight-decay", required_argument, NULL, O_WD},
                                           {"snapshots", required_argument, NULL, O_SNAP},
                                           {"val", required_argument, NULL, O_VAL},
                                           {"size", required_argument, NULL, O_SIZE},
                                           {"schedule", required_argument, NULL, O_SCHED},
                                           CLI_SEED_LONGOPT,
                                           {"quiet", no_argument, NULL, 'q'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  const char *arch = "cnn", *snap = NULL, *val_dir = NULL;
  int epochs = 10, batch = 32, size = 0, c, lr_given = 0, cosine = 0;
  dd_train_opts o;
  dd_train_opts_init(&o);
  o.momentum = 0.9f;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("train", "%s", err.msg);
    if (r) continue;
    int bad = 0;
    switch (c) {
      case O_ARCH: arch = optarg; break;
      case O_EPOCHS: bad = cli_parse_int("--epochs", optarg, 1, 100000, &epochs, &err); break;
      case O_BATCH: bad = cli_parse_int("--batch", optarg, 1, 4096, &batch, &err); break;
      case O_SIZE: bad = cli_parse_int("--size", optarg, 4, 1024, &size, &err); break;
      case O_LR:
        bad = cli_parse_float("--lr", optarg, 0, 1000, 1, &o.lr, &err);
        lr_given = 1;
        break;
      case O_MOM:
        bad = cli_parse_float("--momentum", optarg, 0, 0.999, 0, &o.momentum, &err);
        break;
      case O_WD:
        bad = cli_parse_float("--weight-decay", optarg, 0, 1, 0, &o.weight_decay, &err);
        break;
      case O_OPT:
        if (!strcmp(optarg, "sgd")) o.optimizer = DD_OPT_SGD;
        else if (!strcmp(optarg, "adam")) o.optimizer = DD_OPT_ADAM;
        else return cli_usage_error("train", "--optimizer: sgd or adam, not '%s'", optarg);
        break;
      case O_SCHED:
        if (!strcmp(optarg, "cosine")) cosine = 1;
        else if (!strcmp(optarg, "constant")) cosine = 0;
        else return cli_usage_error("train", "--schedule: constant or cosine, not '%s'", optarg);
        break;
      case O_SNAP: snap = optarg; break;
      case O_VAL: val_dir = optarg; break;
      case 'h': fputs(train_help, stdout); return 0;
      default: return cli_getopt_error("train", c, argv);
    }
    if (bad) return cli_usage_error("train", "%s", err.msg);
  }
  if (argc - optind != 2)
    return cli_usage_error("train", argc - optind < 2 ? "TRAIN_DIR and OUT.onnx are required"
                                                      : "unexpected argument '%s'",
                           argv[optind + 2 < argc ? optind + 2 : optind]);
  const char *train_dir = argv[optind], *out_path = argv[optind + 1];
  size_t olen = strlen(out_path);
  if (olen < 5 || strcmp(out_path + olen - 5, ".onnx"))
    return cli_usage_error("train", "OUT %s: the model is written as ONNX, name it .onnx",
                           out_path);
  if (!lr_given) o.lr = o.optimizer == DD_OPT_ADAM ? 0.001f : 0.05f;
  int builtin = !strcmp(arch, "perceptron") || !strcmp(arch, "mlp") || !strcmp(arch, "cnn");
  if (!builtin && !strchr(arch, '.') && !strchr(arch, '/'))
    return cli_usage_error("train", "--arch: perceptron, mlp, cnn or a .onnx file, not '%s'",
                           arch);
  if (!strcmp(arch, out_path))
    return cli_usage_error("train", "OUT.onnx is the model being fine-tuned: write elsewhere");
  if (snap && mkdir(snap, 0777) && errno != EEXIST)
    return cli_errorf("%s: %s", snap, strerror(errno));

  /* preprocessing: built-ins map 0..255 to -1..1; a file keeps its own (its dream.*
   * metadata, else what its preset says) */
  dd_preproc pre = {0, 1.0f, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
  void *onnx = NULL;
  size_t len = 0;
  char **classes = NULL, **file_labels = NULL;
  int n_classes = 0, n_file_labels = 0, status = 1, in_c = 3, found = 0, meta_size = 0;
  dataset train = {0}, val = {0};
  dd_trainer *t = NULL;
  double *hist = NULL;
  if (!builtin) {
    if (dd_read_file(arch, DD_MODEL_MAX_FILE, &onnx, &len, &err)) return cli_report(&err);
    if (dd_train_read_meta(arch, &found, &pre, &meta_size, &file_labels, &n_file_labels, &err)) {
      free(onnx);
      return cli_report(&err);
    }
    if (!found) {
      dd_preset ps;
      if (dd_preset_resolve(arch, &ps, &err)) {
        free(onnx);
        return cli_report(&err);
      }
      pre = ps.pre;
      dd_preset_clear(&ps);
    }
    dd_trainer *probe;
    if (dd_trainer_new(onnx, len, arch, &o, &probe, &err)) {
      cli_report(&err);
      goto done;
    }
    int h, w, k;
    dd_trainer_geometry(probe, &in_c, &h, &w, &k);
    dd_trainer_free(probe);
    if (h != w) {
      cli_errorf("%s: input %dx%d: only square inputs are trained", arch, w, h);
      goto done;
    }
    if (size && size != h)
      cli_warnf("--size %d: %s takes %dx%d inputs; images are resized to that", size, arch, h, h);
    size = h;
  }
  if (load_folder(train_dir, &classes, &n_classes, &size, &pre, in_c, co.quiet, &train)) goto done;
  if (val_dir && load_folder(val_dir, &classes, &n_classes, &size, &pre, in_c, co.quiet, &val))
    goto done;
  if (builtin) {
    if (dd_train_arch(arch, in_c, size, n_classes, co.seed.value, &onnx, &len, &err)) {
      cli_report(&err);
      goto done;
    }
  }
  if (dd_trainer_new(onnx, len, arch, &o, &t, &err)) {
    cli_report(&err);
    goto done;
  }
  int k;
  dd_trainer_geometry(t, NULL, NULL, NULL, &k);
  if (k != n_classes) {
    cli_errorf("%s has %d outputs but %s has %d classes: they must be equal", arch, k,
               train_dir, n_classes);
    goto done;
  }
  if (!co.quiet && n_file_labels == n_classes)
    for (int i = 0; i < n_classes; i++)
      if (strcmp(file_labels[i], classes[i]))
        cli_warnf("class %d is '%s' in %s but '%s' in %s: the folder's names are used", i,
                  file_labels[i], arch, classes[i], train_dir);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  stop_signal = 0;

  hist = calloc((size_t)epochs * 4, sizeof *hist);
  int *order = malloc(sizeof(int) * (size_t)train.n);
  if (!hist || !order) {
    free(order);
    cli_errorf("out of memory");
    goto restore;
  }
  for (int i = 0; i < train.n; i++) order[i] = i;
  size_t per = (size_t)train.c * train.s * train.s;
  float *bx = malloc(sizeof(float) * per * (size_t)batch);
  int *by = malloc(sizeof(int) * (size_t)batch);
  uint64_t rng = co.seed.value ^ 0x73687566666c65ull;
  const char *const *labels = (const char *const *)classes;
  dd_train_meta meta = {pre, size, labels, n_classes};
  int shown = cli_progress_shown(&co), done_epochs = 0;
  double start = dd_now_seconds();
  dd_movie_writer *gif = NULL;
  if (!bx || !by) {
    cli_errorf("out of memory");
    goto free_loop;
  }
  if (snap && snapshot(snap, t, &train, arch, 0, hist, &meta, &gif)) goto free_loop;
  for (int e = 0; e < epochs && !stop_signal; e++) {
    for (int i = train.n - 1; i > 0; i--) { /* Fisher-Yates */
      int j = (int)(dd_rng_next(&rng) % (uint64_t)(i + 1)), tmp = order[i];
      order[i] = order[j];
      order[j] = tmp;
    }
    if (cosine && dd_trainer_set_lr(t, (float)(o.lr * (1 + cos(3.14159265358979 * e / epochs)) / 2),
                                    &err)) {
      cli_report(&err);
      goto free_loop;
    }
    double total = 0;
    int good = 0, seen = 0, steps = (train.n + batch - 1) / batch;
    for (int s = 0; s < steps && !stop_signal; s++) {
      int n = train.n - s * batch < batch ? train.n - s * batch : batch, g;
      for (int i = 0; i < n; i++) {
        int src = order[s * batch + i];
        memcpy(bx + per * i, train.x + per * src, sizeof(float) * per);
        by[i] = train.y[src];
      }
      double l;
      if (dd_trainer_step(t, bx, by, n, &l, &g, &err)) {
        if (!isfinite(l) || strstr(err.msg, "not finite")) {
          if (shown) fputc('\n', stderr);
          cli_errorf("epoch %d, step %d: the loss is not finite (%g): training diverged; %s "
                     "try a smaller --lr", e + 1, s + 1, l,
                     done_epochs ? "OUT.onnx keeps the last good epoch's model;" :
                                   "nothing was written;");
          if (done_epochs) cli_errorf("%s holds epoch %d", out_path, done_epochs);
        } else {
          cli_report(&err);
        }
        goto free_loop;
      }
      total += l * n;
      good += g;
      seen += n;
      if (shown) {
        int bar = 30 * (s + 1) / steps;
        fprintf(stderr, "\repoch %d/%d [%.*s%*s] loss %.4f acc %5.1f%%", e + 1, epochs, bar,
                "==============================", 30 - bar, "", total / seen, 100.0 * good / seen);
      }
    }
    if (stop_signal) break;
    double *h = hist + 4 * e;
    h[0] = total / train.n;
    h[1] = (double)good / train.n;
    h[2] = h[3] = NAN;
    if (val.n && evaluate(t, &val, batch, &h[2], &h[3], &err)) {
      if (shown) fputc('\n', stderr);
      cli_report(&err);
      goto free_loop;
    }
    if (dd_trainer_save(t, out_path, &meta, &err)) {
      if (shown) fputc('\n', stderr);
      cli_report(&err);
      goto free_loop;
    }
    done_epochs = e + 1;
    if (shown) fputc('\r', stderr);
    if (!co.quiet) {
      fprintf(stderr, "epoch %d/%d loss %.4f acc %5.1f%%", e + 1, epochs, h[0], 100 * h[1]);
      if (val.n) fprintf(stderr, "  val loss %.4f acc %5.1f%%", h[2], 100 * h[3]);
      fprintf(stderr, "  %.1f s%*s\n", dd_now_seconds() - start, shown ? 10 : 0, "");
    }
    if (snap && snapshot(snap, t, &train, arch, e + 1, hist, &meta, &gif)) goto free_loop;
  }
  if (stop_signal) {
    if (shown) fputc('\n', stderr);
    if (done_epochs)
      cli_errorf("interrupted in epoch %d: %s keeps epoch %d's model", done_epochs + 1,
                 out_path, done_epochs);
    else
      cli_errorf("interrupted in the first epoch: nothing was written");
    status = 128 + stop_signal;
    goto free_loop;
  }
  if (gif) {
    dd_movie_writer *g = gif;
    gif = NULL;
    if (dd_movie_close(g, &err)) {
      cli_report(&err);
      goto free_loop;
    }
  }
  {
    double *last = hist + 4 * (done_epochs - 1);
    if (val.n)
      cli_summary(&co, "trained %s for %d epochs: train acc %.1f%%, val acc %.1f%% -> %s", arch,
                  done_epochs, 100 * last[1], 100 * last[3], out_path);
    else
      cli_summary(&co, "trained %s for %d epochs: train acc %.1f%% -> %s", arch, done_epochs,
                  100 * last[1], out_path);
  }
  if (co.seed.random && !co.quiet)
    fprintf(stderr, "dream: --seed %llu\n", (unsigned long long)co.seed.value);
  status = 0;
free_loop:
  if (gif) dd_movie_abort(gif);
  free(bx);
  free(by);
  free(order);
restore:
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
done:
  free(hist);
  dd_trainer_free(t);
  dataset_free(&train);
  dataset_free(&val);
  free(onnx);
  if (classes) dd_labels_free(classes, n_classes);
  if (file_labels) dd_labels_free(file_labels, n_file_labels);
  return status;
}
