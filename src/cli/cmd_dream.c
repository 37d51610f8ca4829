/* dream [dream]: DeepDream an image.  Parsing is the pure cli_dream_parse; the rest opens the
 * model, loads the pictures, runs dd_dream_run with a progress bar and writes the result. */
#include "cli/cmd_dream.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dream/image.h"
#include "util.h"

static const char dream_help[] =
    "usage: dream [dream] [options] IN OUT\n\n"
    "DeepDream: gradient ascent on IN to amplify what the chosen layers respond to, written to\n"
    "OUT (.jpg, .jpeg, .png, .bmp or .tga; a JPEG or PNG keeps IN's EXIF and ICC profile).\n"
    "The defaults are the original DeepDream notebook's on BVLC GoogLeNet: inception_4c/output,\n"
    "4 octaves of scale 1.4, 10 iterations per octave, step 1.5, random jitter up to 32 px,\n"
    "gradient divided by its mean absolute value.\n\n"
    "IN: " DD_IMAGE_FORMATS ";\n"
    "its EXIF orientation is applied.\n\n"
    "options:\n" CLI_DREAM_OPTIONS_HELP
    "      --checkpoint-every N  write OUT every N iterations, so an interrupted run leaves\n"
    "                       the last complete checkpoint\n"
    "\nCtrl-C stops between iterations without writing OUT (a second Ctrl-C kills at once).\n";

enum {
  OPT_OCTAVES = 2001, OPT_OCTAVE_SCALE, OPT_ITERS, OPT_STEP, OPT_JITTER, OPT_NORM,
  OPT_LAP_LEVELS, OPT_TILE, OPT_GUIDE, OPT_GUIDE_SIZE, OPT_CHECKPOINT, OPT_MAX_SIDE,
  OPT_TIMING, OPT_SHARD, OPT_FORCE, OPT_DRY_RUN, OPT_FRAMES, OPT_ZOOM, OPT_ROTATE, OPT_FPS,
  OPT_BLEND, OPT_BLEND_STATIC, OPT_NO_FLOW, OPT_FLOW_THRESHOLD, OPT_START, OPT_END,
  OPT_CARRIED_ITERS, OPT_RESUME
};

/* Which command's grammar. */
enum { MODE_DREAM, MODE_BATCH, MODE_ZOOM, MODE_VIDEO };

/* The command an option belongs to (NULL: every dream command). */
static const char *option_owner(int c) {
  switch (c) {
    case OPT_SHARD: case OPT_FORCE: case OPT_DRY_RUN: return "batch";
    case OPT_FRAMES: case OPT_ZOOM: case OPT_ROTATE: return "zoom";
    case OPT_BLEND: case OPT_BLEND_STATIC: case OPT_NO_FLOW: case OPT_FLOW_THRESHOLD:
    case OPT_START: case OPT_END: case OPT_CARRIED_ITERS: return "video";
    case OPT_FPS: return "zoom";
    case OPT_RESUME: return "zoom"; /* and video's: parse() lets it through there */
    default: return NULL;
  }
}

/* ---- parsing (pure) ---- */

static int parse_int(const char *opt, const char *s, long lo, long hi, int *out, dd_err *err) {
  return cli_parse_int(opt, s, lo, hi, out, err);
}

static int parse_float(const char *opt, const char *s, double lo_excl, double hi, float *out,
                       dd_err *err) {
  return cli_parse_float(opt, s, lo_excl, hi, 1, out, err);
}

static int parse(int argc, char **argv, int mode, cli_dream_args *out, dd_err *err) {
  int batch = mode == MODE_BATCH;
  static const struct option longopts[] = {
      CLI_MODEL_LONGOPTS,
      {"layer", required_argument, NULL, 'l'},
      {"octaves", required_argument, NULL, OPT_OCTAVES},
      {"octave-scale", required_argument, NULL, OPT_OCTAVE_SCALE},
      {"iters", required_argument, NULL, OPT_ITERS},
      {"step", required_argument, NULL, OPT_STEP},
      {"jitter", required_argument, NULL, OPT_JITTER},
      {"norm", required_argument, NULL, OPT_NORM},
      {"lap-levels", required_argument, NULL, OPT_LAP_LEVELS},
      {"tile", required_argument, NULL, OPT_TILE},
      {"guide", required_argument, NULL, OPT_GUIDE},
      {"guide-size", required_argument, NULL, OPT_GUIDE_SIZE},
      CLI_SEED_LONGOPT,
      CLI_PRECISION_LONGOPT,
      CLI_QUALITY_LONGOPT,
      {"checkpoint-every", required_argument, NULL, OPT_CHECKPOINT},
      {"max-side", required_argument, NULL, OPT_MAX_SIDE},
      {"timing", no_argument, NULL, OPT_TIMING},
      {"shard", required_argument, NULL, OPT_SHARD}, /* these three: batch only */
      {"force", no_argument, NULL, OPT_FORCE},
      {"dry-run", no_argument, NULL, OPT_DRY_RUN},
      {"frames", required_argument, NULL, OPT_FRAMES}, /* zoom */
      {"zoom", required_argument, NULL, OPT_ZOOM},
      {"rotate", required_argument, NULL, OPT_ROTATE},
      {"fps", required_argument, NULL, OPT_FPS},       /* zoom (video keeps IN's rate) */
      {"blend", required_argument, NULL, OPT_BLEND},   /* video */
      {"blend-static", required_argument, NULL, OPT_BLEND_STATIC},
      {"no-flow", no_argument, NULL, OPT_NO_FLOW},
      {"flow-threshold", required_argument, NULL, OPT_FLOW_THRESHOLD},
      {"start", required_argument, NULL, OPT_START},
      {"end", required_argument, NULL, OPT_END},
      {"carried-iters", required_argument, NULL, OPT_CARRIED_ITERS},
      {"resume", no_argument, NULL, OPT_RESUME},       /* zoom and video */
      {NULL, 0, NULL, 0}};
  cli_dream_args a;
  memset(&a, 0, sizeof a);
  cli_common_init(&a.common);
  dd_dream_params_init(&a.params);
  a.guide_size = 224;
  a.shard_index = a.shard_count = 1;
  a.zoom = 0.05f;
  a.fps = mode == MODE_ZOOM ? 12 : 0;
  a.blend = 0.6f;
  a.blend_static = -1;
  int c, rc = DD_OK;
  char name[512];
  opterr = 0;
  optind = 0;
  while (!rc && (c = getopt_long(argc, argv, ":m:l:qh", longopts, NULL)) != -1) {
    const char *v = optarg;
    static const char *const mode_name[] = {"dream", "batch", "zoom", "video"};
    const char *owner = option_owner(c);
    int fits = !owner || !strcmp(owner, mode_name[mode]) ||
               (mode == MODE_VIDEO && c == OPT_RESUME);
    if (!fits) {
      rc = dd_fail(err, DD_EARG, "unknown option '%s' (it is `dream %s`'s)",
                   optind > 0 && optind <= argc ? argv[optind - 1] : "?", owner);
      break;
    }
    int r = cli_common_opt(&a.common, c, v, err);
    if (r) {
      if (r < 0) rc = DD_EARG;
      continue;
    }
    switch (c) {
      case 'l': {
        int ch;
        float w;
        if (a.n_layers == DD_DREAM_MAX_LAYERS)
          rc = dd_fail(err, DD_EARG, "--layer: at most %d layers", DD_DREAM_MAX_LAYERS);
        else if (!(rc = dd_dream_layer_spec(v, name, sizeof name, &ch, &w, err)))
          a.layers[a.n_layers++] = v;
        else
          dd_err_prefix(err, "--layer");
        break;
      }
      case OPT_OCTAVES: rc = parse_int("--octaves", v, 1, 64, &a.params.octaves, err); break;
      case OPT_OCTAVE_SCALE:
        rc = parse_float("--octave-scale", v, 1, 16, &a.params.octave_scale, err);
        break;
      case OPT_ITERS: rc = parse_int("--iters", v, 1, 1000000, &a.params.iters, err); break;
      case OPT_STEP: rc = parse_float("--step", v, 0, 1e6, &a.params.step, err); break;
      case OPT_JITTER: rc = parse_int("--jitter", v, 0, 1 << 20, &a.params.jitter, err); break;
      case OPT_NORM:
        if (!strcmp(v, "meanabs")) a.params.norm = DD_NORM_MEANABS;
        else if (!strcmp(v, "std")) a.params.norm = DD_NORM_STD;
        else if (!strcmp(v, "laplacian")) a.params.norm = DD_NORM_LAPLACIAN;
        else rc = dd_fail(err, DD_EARG, "--norm: expected meanabs, std or laplacian, got '%s'", v);
        break;
      case OPT_LAP_LEVELS:
        a.lap_levels_given = 1;
        rc = parse_int("--lap-levels", v, 1, 12, &a.params.lap_levels, err); break;
      case OPT_TILE: rc = parse_int("--tile", v, DD_DREAM_MIN_TILE, 65536, &a.params.tile, err); break;
      case OPT_GUIDE: a.guide = v; break;
      case OPT_GUIDE_SIZE: rc = parse_int("--guide-size", v, 0, 65536, &a.guide_size, err); break;
      case OPT_CHECKPOINT:
        if (batch) {
          rc = dd_fail(err, DD_EARG, "--checkpoint-every: not in a batch, where a checkpoint "
                       "would pass for a finished output when the batch resumes");
          break;
        }
        rc = parse_int("--checkpoint-every", v, 1, 1 << 30, &a.params.checkpoint_every, err);
        break;
      case OPT_MAX_SIDE: rc = parse_int("--max-side", v, 0, 1 << 20, &a.max_side, err); break;
      case OPT_TIMING: a.timing = 1; break;
      case OPT_SHARD:
        rc = cli_parse_shard("--shard", v, &a.shard_index, &a.shard_count, err);
        break;
      case OPT_FORCE: a.force = 1; break;
      case OPT_DRY_RUN: a.dry_run = 1; break;
      case OPT_FRAMES: rc = parse_int("--frames", v, 1, 1000000, &a.frames, err); break;
      case OPT_ZOOM: rc = cli_parse_float("--zoom", v, -1, 0.5, 1, &a.zoom, err); break;
      case OPT_ROTATE: rc = cli_parse_float("--rotate", v, -360, 360, 0, &a.rotate, err); break;
      case OPT_FPS: rc = parse_float("--fps", v, 0, 1000, &a.fps, err); break;
      case OPT_BLEND: rc = cli_parse_float("--blend", v, 0, 1, 0, &a.blend, err); break;
      case OPT_BLEND_STATIC:
        rc = cli_parse_float("--blend-static", v, 0, 1, 0, &a.blend_static, err);
        break;
      case OPT_NO_FLOW: a.no_flow = 1; break;
      case OPT_FLOW_THRESHOLD:
        rc = cli_parse_float("--flow-threshold", v, 0, 1e6, 0, &a.flow_threshold, err);
        break;
      case OPT_START: rc = cli_parse_float("--start", v, 0, 1e9, 0, &a.start, err); break;
      case OPT_END: rc = parse_float("--end", v, 0, 1e9, &a.end, err); break;
      case OPT_CARRIED_ITERS:
        rc = parse_int("--carried-iters", v, 1, 1000000, &a.carried_iters, err);
        break;
      case OPT_RESUME: a.resume = 1; break;
      case 'h': a.help = 1; break;
      case ':':
        rc = dd_fail(err, DD_EARG, "option '%s' needs a value",
                     optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        break;
      default:
        rc = dd_fail(err, DD_EARG, "unknown option '%s'",
                     optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        break;
    }
  }
  if (rc) return rc;
  if (a.help) {
    *out = a;
    return DD_OK;
  }
  int npos = argc - optind;
  if (batch) {
    if (npos < 2) return dd_fail(err, DD_EARG, "expected IN_DIR and OUT_DIR");
    if (npos > 2)
      return dd_fail(err, DD_EARG, "expected only IN_DIR and OUT_DIR, got also '%s'",
                     argv[optind + 2]);
    a.in = argv[optind];
    a.out = argv[optind + 1];
    if (!*a.in || !*a.out) return dd_fail(err, DD_EARG, "empty folder name");
    *out = a;
    return DD_OK;
  }
  if (mode == MODE_ZOOM || mode == MODE_VIDEO) {
    if (npos < 2) return dd_fail(err, DD_EARG, "expected IN and OUT");
    if (npos > 2)
      return dd_fail(err, DD_EARG, "expected only IN and OUT, got also '%s'", argv[optind + 2]);
    a.in = argv[optind];
    a.out = argv[optind + 1];
    if (!*a.in || !*a.out) return dd_fail(err, DD_EARG, "empty file name");
    if (!strcmp(a.in, a.out))
      return dd_fail(err, DD_EARG, "OUT is IN (%s): the input is never overwritten", a.in);
    if (mode == MODE_ZOOM && !a.frames)
      return dd_fail(err, DD_EARG, "--frames N is required");
    if (mode == MODE_VIDEO && a.end > 0 && a.end <= a.start)
      return dd_fail(err, DD_EARG, "--end %g is not after --start %g", a.end, a.start);
    if (a.params.checkpoint_every)
      return dd_fail(err, DD_EARG, "--checkpoint-every: not for movies, whose frames are "
                     "written as they are finished");
    *out = a;
    return DD_OK;
  }
  if (npos < 2) return dd_fail(err, DD_EARG, "expected IN and OUT image paths");
  if (npos > 2)
    return dd_fail(err, DD_EARG, "expected only IN and OUT, got also '%s'", argv[optind + 2]);
  a.in = argv[optind];
  a.out = argv[optind + 1];
  if (!*a.in || !*a.out) return dd_fail(err, DD_EARG, "empty file name");
  if (!cli_has_image_ext(a.out))
    return dd_fail(err, DD_EARG, "%s: the output's extension must be .jpg, .jpeg, .png, .bmp or "
                   ".tga", a.out);
  if (!strcmp(a.in, a.out))
    return dd_fail(err, DD_EARG, "OUT is IN (%s): the input is never overwritten", a.in);
  *out = a;
  return DD_OK;
}

int cli_dream_parse(int argc, char **argv, cli_dream_args *out, dd_err *err) {
  return parse(argc, argv, MODE_DREAM, out, err);
}

int cli_batch_parse(int argc, char **argv, cli_dream_args *out, dd_err *err) {
  return parse(argc, argv, MODE_BATCH, out, err);
}

int cli_zoom_parse(int argc, char **argv, cli_dream_args *out, dd_err *err) {
  return parse(argc, argv, MODE_ZOOM, out, err);
}

int cli_video_parse(int argc, char **argv, cli_dream_args *out, dd_err *err) {
  return parse(argc, argv, MODE_VIDEO, out, err);
}

/* ---- running ---- */

/* Set by SIGINT/SIGTERM, polled by the library between iterations: the one global. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

typedef struct progress_state {
  int bar;         /* draw the bar (stderr is a terminal and not --quiet) */
  double start;
  const char *out; /* checkpoints go here */
  const cli_common *co;
  int checkpoints; /* written so far */
  int drawn;       /* a bar line is on the screen */
  int failed;      /* a checkpoint could not be written (and that was reported) */
} progress_state;

static int on_progress(const dd_dream_progress *p, void *user) {
  progress_state *s = user;
  if (p->checkpoint) {
    dd_err err;
    if (cli_save_image(s->out, p->checkpoint, s->co, NULL, &err)) {
      if (s->drawn) fputc('\n', stderr);
      s->drawn = 0;
      cli_report(&err);
      s->failed = 1;
      return DD_EIO;
    }
    s->checkpoints++;
  }
  if (!s->bar) return 0;
  double el = dd_now_seconds() - s->start;
  double left = p->done > 0 ? el * (1 - p->done) / p->done : 0;
  char bar[21];
  int fill = (int)(p->done * 20 + 0.5);
  for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
  bar[20] = 0;
  fprintf(stderr, "\r\033[Koctave %d/%d %dx%d%s iter %2d/%d [%s] %3.0f%% objective %.4g  %d:%02d left",
          p->octave + 1, p->n_octaves, p->w, p->h, p->tiles > 1 ? " (tiled)" : "", p->iter + 1,
          p->n_iters, bar, p->done * 100, p->objective, (int)left / 60, (int)left % 60);
  fflush(stderr);
  s->drawn = 1;
  return 0;
}

/* An image, shrunk (keeping its aspect) so its longer side is at most `size` (0: any).
 * Prints; 0 or 1. */
static int load_shrunk(const char *path, int size, const cli_model *cm, dd_image **out,
                       dd_err *err) {
  dd_image *g;
  /* Decoding is all the cap covers here: whether the job then fits, in tiles if need be, is
   * dd_dream_check_budget's answer. */
  if (cli_load_image_capped(path, cm, dd_dream_decode_bytes(1, 1), &g)) return 1;
  int rc;
  int longer = g->w > g->h ? g->w : g->h;
  if (size > 0 && longer > size) {
    int w = (int)lround((double)g->w * size / longer), h = (int)lround((double)g->h * size / longer);
    dd_image *r = NULL;
    rc = dd_image_resize(g, w < 1 ? 1 : w, h < 1 ? 1 : h, &r, err);
    if (!rc) rc = dd_image_copy_meta(r, g, err); /* the photo's EXIF and ICC go to OUT */
    dd_image_free(g);
    if (rc) {
      dd_image_free(r);
      return cli_report(err);
    }
    g = r;
  }
  *out = g;
  return DD_OK;
}

/* Warnings for options that do nothing as given. */
void cli_dream_warn_idle(const cli_dream_args *a) {
  if (a->lap_levels_given && a->params.norm != DD_NORM_LAPLACIAN)
    cli_warnf("--lap-levels does nothing without --norm laplacian");
  if (a->guide_size != 224 && !a->guide) cli_warnf("--guide-size does nothing without --guide");
  if (a->params.checkpoint_every > a->params.iters * a->params.octaves)
    cli_warnf("--checkpoint-every %d is more than the %d iterations of the whole run: no "
              "checkpoint will be written", a->params.checkpoint_every,
              a->params.iters * a->params.octaves);
  for (int i = 0; i < a->n_layers; i++) {
    char name[512];
    int ch;
    float w;
    dd_err err;
    if (!dd_dream_layer_spec(a->layers[i], name, sizeof name, &ch, &w, &err) && w == 0)
      cli_warnf("--layer %s: weight 0, this layer does nothing", a->layers[i]);
  }
  cli_common_warn(&a->common);
}

int cli_dream_interrupted(void) { return (int)interrupted; }

int cli_dream_begin(const cli_dream_args *a, cli_model *cm, cli_dream_job *job) {
  dd_err err;
  memset(job, 0, sizeof *job);
  job->a = a;
  job->cm = cm;
  dd_dream_params *p = &job->p;
  *p = a->params;
  p->precision = cli_precision(&a->common, 1);
  const char *layers[DD_DREAM_MAX_LAYERS];
  int n_layers = a->n_layers;
  memcpy(layers, a->layers, sizeof layers);
  if (!n_layers) {
    if (!cm->preset.layer[0])
      return cli_errorf("%s: the model has no default layer; give one with --layer",
                        dd_model_name(cm->model));
    layers[n_layers++] = cm->preset.layer;
  }
  p->n_layers = n_layers;
  for (int i = 0; i < n_layers; i++) {
    if (cli_resolve_spec(cm->model, layers[i], &p->layers[i], &err)) return cli_report(&err);
    if (p->layers[i].value == dd_model_input(cm->model))
      cli_warnf("--layer %s is the model's input: its gradient is the image itself, so the "
                "dream only brightens what is bright", layers[i]);
  }
  if (dd_model_image_input(cm->model, NULL, &err)) return cli_report(&err);
  if (a->guide) {
    if (load_shrunk(a->guide, a->guide_size, cm, &job->guide, &err)) return 1;
    p->guide = job->guide;
  }
  p->cancel = &interrupted;
  /* An interrupted run writes nothing (or its last checkpoint, a buffer of its own), so the
   * largest octave may work in the image itself: one full-size picture less to hold. */
  p->in_place = 1;
  interrupted = 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND; /* a second signal acts as usual */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  return 0;
}

void cli_dream_end(cli_dream_job *job) {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  dd_image_free(job->guide);
  job->guide = NULL;
  dd_dreamer_free(job->dreamer);
  job->dreamer = NULL;
}

int cli_dream_image(cli_dream_job *job, const char *in, const char *out, uint64_t seed) {
  const cli_dream_args *a = job->a;
  cli_model *cm = job->cm;
  dd_err err;
  dd_image *img = NULL;
  int status = 1, rc;
  dd_dream_params p = job->p;
  p.seed = seed;
  if (load_shrunk(in, a->max_side, cm, &img, &err)) goto done;
  /* The whole job within --max-memory: the image's buffers, the weights and the plans (in
   * tiles when the whole image's would not fit); refused only when even the smallest tiles
   * would not, naming the size that would. */
  dd_dream_budget budget;
  rc = dd_dream_check_budget(cm->model, &p, img->w, img->h, cm->max_memory, &budget, &err);
  if (rc == DD_ELIMIT) {
    int side = budget.fit_w > budget.fit_h ? budget.fit_w : budget.fit_h;
    char given[32], side_hint[48] = "";
    if (cm->max_memory < ((size_t)1 << 20))
      snprintf(given, sizeof given, "%.0fK", cm->max_memory / 1024.0);
    else
      snprintf(given, sizeof given, "%.0fM", cm->max_memory / 1048576.0);
    if (side > 0) snprintf(side_hint, sizeof side_hint, "use --max-side %d or ", side);
    cli_errorf("--max-memory %s: %s; %sraise --max-memory to %.0fM", given, err.msg, side_hint,
               ceil(budget.need / 1048576.0));
    goto done;
  }
  if (rc) {
    if (a->max_side) dd_err_prefix(&err, "--max-side %d", a->max_side);
    cli_report(&err);
    goto done;
  }
  p.max_memory = budget.plan_budget;

  progress_state ps = {cli_progress_shown(&a->common), dd_now_seconds(), out, &a->common,
                       0, 0, 0};
  double loop_start = dd_now_seconds();
  rc = dd_dream_run(cm->model, &cm->preset.pre, &p, img, on_progress, &ps, &err);
  double loop_seconds = dd_now_seconds() - loop_start;
  if (ps.drawn) fputc('\n', stderr);
  if (rc == DD_EINTR) {
    if (ps.checkpoints)
      cli_errorf("interrupted; %s holds the last checkpoint", out);
    else
      cli_errorf("interrupted; %s was not written", out);
    status = 128 + (interrupted ? (int)interrupted : SIGINT); /* 130 SIGINT, 143 SIGTERM */
    goto done;
  }
  if (rc) {
    if (!ps.failed) cli_report(&err);
    goto done;
  }
  if (cli_save_image(out, img, &a->common, img, &err)) {
    cli_report(&err);
    goto done;
  }
  if (a->timing) fprintf(stderr, "dream: loop %.3f s\n", loop_seconds);
  cli_summary(&a->common, "wrote %s (%dx%d) in %.1f s, seed %llu", out, img->w, img->h,
              dd_now_seconds() - ps.start, (unsigned long long)p.seed);
  status = 0;
done:
  dd_image_free(img);
  return status;
}

int cmd_dream(int argc, char **argv) {
  cli_dream_args a;
  dd_err err;
  if (cli_dream_parse(argc, argv, &a, &err)) return cli_usage_error("dream", "%s", err.msg);
  if (a.help) {
    fputs(dream_help, stdout);
    return 0;
  }
  cli_dream_warn_idle(&a);
  cli_files files = {0};
  cli_files_in(&files, a.in);
  cli_files_in(&files, a.guide);
  cli_files_out(&files, a.out, CLI_OUT_IMAGE);
  cli_model cm;
  int status = cli_model_open_checked("dream", &a.common.model, &files, &cm);
  if (status) return status;
  cli_dream_job job;
  status = cli_dream_begin(&a, &cm, &job);
  if (!status) status = cli_dream_image(&job, a.in, a.out, a.common.seed.value);
  cli_dream_end(&job);
  cli_model_close(&cm);
  return status;
}
