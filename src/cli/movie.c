/* The frames of `dream zoom` and `dream video`: written, found again, made into a movie
 * (src/cli/movie.h). */
#define _DEFAULT_SOURCE /* DT_REG */
#include "cli/movie.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int cli_movie_out_check(const char *out) {
  dd_err err;
  if (!dd_movie_can_write(out, &err)) return cli_report(&err);
  cli_files files = {0};
  /* the folder of OUT (or of its frames) must exist and be writable */
  char probe[PATH_MAX];
  if (dd_movie_is_pattern(out)) {
    if (dd_movie_frame_path(out, 1, probe, sizeof probe, &err)) return cli_report(&err);
  } else {
    snprintf(probe, sizeof probe, "%s", out);
  }
  cli_files_out(&files, probe, CLI_OUT_ANY);
  return cli_files_check("video", &files) ? 1 : 0;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Removes the sidecar's frames and the folder. */
static void remove_sidecar(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[PATH_MAX];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

int cli_movie_out_begin(cli_movie_out *mo, const char *out, int resume, int quiet) {
  dd_err err;
  mo->out = out;
  mo->done = 0;
  mo->pattern = dd_movie_is_pattern(out);
  mo->sidecar[0] = 0;
  if (mo->pattern) {
    snprintf(mo->frames, sizeof mo->frames, "%s", out);
  } else {
    int n = snprintf(mo->sidecar, sizeof mo->sidecar, "%s.frames", out);
    if (n < 0 || (size_t)n + 16 >= sizeof mo->sidecar) return cli_errorf("%s: path too long", out);
    if (!resume) remove_sidecar(mo->sidecar);
    struct stat st;
    /* a finished job removed its sidecar: nothing to resume, and nothing is redone */
    if (resume && stat(mo->sidecar, &st) && exists(out)) {
      if (!quiet)
        fprintf(stderr, "dream: --resume: %s is finished (no %s): nothing to do; run without "
                "--resume to make it again\n", out, mo->sidecar);
      return 2;
    }
    if (mkdir(mo->sidecar, 0777) && errno != EEXIST)
      return cli_errorf("%s: %s", mo->sidecar, strerror(errno));
    /* BMP: lossless, and written in milliseconds where stb's PNG takes a tenth of a second
     * for a 1280x720 frame (the sidecar is temporary; the movie is encoded from it) */
    snprintf(mo->frames, sizeof mo->frames, "%s/%%06d.bmp", mo->sidecar);
  }
  if (!resume) return 0;
  char path[PATH_MAX];
  for (;;) {
    if (dd_movie_frame_path(mo->frames, mo->done + 1, path, sizeof path, &err))
      return cli_report(&err);
    if (!exists(path)) break;
    mo->done++;
  }
  if (!quiet)
    fprintf(stderr, "dream: --resume: %lld frame%s already finished in %s\n", mo->done,
            mo->done == 1 ? "" : "s", mo->pattern ? out : mo->sidecar);
  return 0;
}

void cli_movie_describe(const cli_dream_args *a, const char *cmd, char *buf, size_t size) {
  static const char *const norms[] = {"meanabs", "std", "laplacian"};
  static const char *const precisions[] = {"auto", "fp32", "bf16"};
  const cli_model_opts *mo = &a->common.model;
  const dd_dream_params *p = &a->params;
  size_t n = 0;
#define LINE(...)                                                     \
  do {                                                                \
    int k = snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__); \
    if (k > 0) n += (size_t)k;                                        \
  } while (0)
  LINE("dream %s\nin %s\n", cmd, a->in);
  LINE("model %s\nmean %s\nstd %s\nbgr %d\nscale %.9g\nmax-memory %zu\n",
       mo->model ? mo->model : "(default)", mo->mean ? mo->mean : "(preset)",
       mo->std ? mo->std : "(preset)", mo->bgr, (double)mo->scale, mo->max_memory);
  for (int l = 0; l < a->n_layers; l++) LINE("layer %s\n", a->layers[l]);
  LINE("octaves %d\noctave-scale %.9g\niters %d\nstep %.9g\njitter %d\n", p->octaves,
       (double)p->octave_scale, p->iters, (double)p->step, p->jitter);
  LINE("norm %s\nlap-levels %d\ntile %d\nprecision %s\n",
       (unsigned)p->norm < 3 ? norms[p->norm] : "?", p->lap_levels, p->tile,
       (unsigned)a->common.precision < 3 ? precisions[a->common.precision] : "?");
  LINE("guide %s\nguide-size %d\nmax-side %d\nquality %d\nseed %llu\n",
       a->guide ? a->guide : "(none)", a->guide_size, a->max_side, a->common.quality,
       (unsigned long long)a->common.seed.value);
  if (!strcmp(cmd, "zoom")) {
    LINE("zoom %.9g\nrotate %.9g\n", (double)a->zoom, (double)a->rotate);
  } else {
    LINE("carried-iters %d\nblend %.9g\nblend-static %.9g\nno-flow %d\nflow-threshold %.9g\n"
         "start %.9g\n", a->carried_iters, (double)a->blend, (double)a->blend_static,
         a->no_flow, (double)a->flow_threshold, (double)a->start);
  }
#undef LINE
  if (n >= size && size) buf[size - 1] = 0;
}

/* Where a job's description is kept: in the sidecar, or beside numbered frames as a hidden
 * file named after the pattern. */
static int job_path(const cli_movie_out *mo, char *path, size_t size) {
  int n;
  if (!mo->pattern) {
    n = snprintf(path, size, "%s/job", mo->sidecar);
  } else {
    const char *slash = strrchr(mo->out, '/');
    int dir = slash ? (int)(slash - mo->out + 1) : 0;
    n = snprintf(path, size, "%.*s.%s.dream-job", dir, mo->out, mo->out + dir);
  }
  return n < 0 || (size_t)n >= size ? cli_errorf("%s: path too long", mo->out) : 0;
}

/* The value of `key` in description `d` ("" when absent), into val. */
static void job_value(const char *d, const char *key, char *val, size_t size) {
  size_t kl = strlen(key);
  val[0] = 0;
  for (const char *l = d; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (!strncmp(l, key, kl) && l[kl] == ' ') {
      const char *e = strchr(l, '\n');
      size_t n = e ? (size_t)(e - l - kl - 1) : strlen(l + kl + 1);
      snprintf(val, size, "%.*s", (int)n, l + kl + 1);
      return;
    }
}

int cli_movie_out_job(cli_movie_out *mo, const cli_dream_args *a, const char *cmd, int resume,
                      cli_seed *seed) {
  char path[PATH_MAX], want[8192], had[8192];
  if (job_path(mo, path, sizeof path)) return 1;
  if (!resume) {
    cli_movie_describe(a, cmd, want, sizeof want);
    dd_err err;
    if (dd_write_file_atomic(path, want, strlen(want), &err)) return cli_report(&err);
    return 0;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (mo->done > 0)
      cli_warnf("--resume: %s is missing: the finished frames cannot be checked against this "
                "job's options", path);
    return 0;
  }
  size_t n = fread(had, 1, sizeof had - 1, f);
  fclose(f);
  had[n] = 0;
  cli_dream_args b = *a;
  if (a->common.seed.random) {
    /* the job there drew its seed; go on with it */
    char v[64];
    job_value(had, "seed", v, sizeof v);
    char *end;
    unsigned long long s = strtoull(v, &end, 10);
    if (v[0] && !*end) seed->value = b.common.seed.value = s;
  }
  cli_movie_describe(&b, cmd, want, sizeof want);
  if (!strcmp(want, had)) return 0;
  /* the first line that differs, named */
  const char *x = had, *y = want;
  while (*x && *y) {
    const char *ex = strchr(x, '\n'), *ey = strchr(y, '\n');
    size_t lx = ex ? (size_t)(ex - x) : strlen(x), ly = ey ? (size_t)(ey - y) : strlen(y);
    if (lx != ly || memcmp(x, y, lx)) break;
    x += lx + (ex != NULL);
    y += ly + (ey != NULL);
  }
  char key[64] = "", vx[512], vy[512];
  const char *l = *y ? y : x;
  sscanf(l, "%63s", key);
  job_value(had, key, vx, sizeof vx);
  job_value(want, key, vy, sizeof vy);
  const char *opt = !strcmp(key, "in") ? "IN" : !strcmp(key, "dream") ? "dream" : key;
  const char *dash = opt == key ? "--" : "";
  return cli_errorf("--resume: %s: its finished frames were made with %s%s %s, this job has "
                    "%s%s %s; run it as it was, or without --resume to start afresh",
                    mo->pattern ? mo->out : mo->sidecar, dash, opt, vx[0] ? vx : "(none)", dash,
                    opt, vy[0] ? vy : "(none)");
}

int cli_movie_out_frame(cli_movie_out *mo, long long index, const dd_image *im, dd_image **back) {
  dd_err err;
  char path[PATH_MAX];
  if (dd_movie_frame_path(mo->frames, index + 1, path, sizeof path, &err)) return cli_report(&err);
  dd_image_save_opts o;
  dd_image_save_opts_init(&o);
  o.keep_meta = 0;
  if (mo->pattern && mo->quality) o.quality = mo->quality;
  if (dd_image_save_with(path, im, &o, &err)) return cli_report(&err);
  const char *dot = strrchr(path, '.');
  if (dot && strcasecmp(dot, ".jpg") && strcasecmp(dot, ".jpeg")) {
    /* a lossless file holds the picture rounded to bytes as dd_image_save rounds it: made
     * here, not decoded back (what a resumed job loads is the same) */
    if (!*back && dd_image_new(im->w, im->h, back, &err)) return cli_report(&err);
    dd_image_round(im, *back);
    return 0;
  }
  dd_image_free(*back);
  *back = NULL;
  if (dd_image_load(path, 0, back, &err)) return cli_report(&err);
  return 0;
}

int cli_movie_out_load(const cli_movie_out *mo, long long index, dd_image **out) {
  dd_err err;
  char path[PATH_MAX];
  if (dd_movie_frame_path(mo->frames, index + 1, path, sizeof path, &err)) return cli_report(&err);
  if (dd_image_load(path, 0, out, &err)) return cli_report(&err);
  if ((*out)->w != mo->w || (*out)->h != mo->h) {
    cli_errorf("%s: %dx%d, the job's frames are %dx%d: not this job's frame (start afresh "
               "without --resume)", path, (*out)->w, (*out)->h, mo->w, mo->h);
    dd_image_free(*out);
    *out = NULL;
    return 1;
  }
  return 0;
}

/* SIGINT or SIGTERM while a movie is encoded: the encode stops and its temporary file goes. */
static volatile sig_atomic_t encode_stop;
static void on_encode_signal(int sig) { encode_stop = sig; }

/* Encodes OUT from the first n frames with the signals caught (see cli_movie_out_finish). */
static int encode(cli_movie_out *mo, long long n) {
  dd_err err;
  dd_movie_opts o;
  dd_movie_opts_init(&o);
  o.audio_from = mo->audio_from;
  o.audio_start = mo->audio_start;
  /* the audio of the frames there are */
  o.audio_end = mo->audio_from ? mo->audio_start + n / mo->fps : 0;
  dd_movie_writer *w = dd_movie_open_ex(mo->out, mo->w, mo->h, mo->fps, &o, &err);
  if (!w) return cli_report(&err);
  for (long long i = 0; i < n; i++) {
    if (encode_stop) {
      dd_movie_abort(w);
      cli_errorf("interrupted while encoding %s: not written; %s keeps the %lld frames, and "
                 "--resume encodes them", mo->out, mo->sidecar, n);
      return 128 + encode_stop;
    }
    dd_image *f = NULL;
    int rc = cli_movie_out_load(mo, i, &f); /* prints its own errors */
    if (!rc && dd_movie_write(w, f, &err)) rc = cli_report(&err);
    dd_image_free(f);
    if (rc) {
      dd_movie_abort(w);
      return 1;
    }
  }
  return dd_movie_close(w, &err) ? cli_report(&err) : 0;
}

int cli_movie_out_finish(cli_movie_out *mo, long long n, int complete) {
  if (mo->pattern || n == 0) return 0;
  /* a signal now (a second Ctrl-C after the one that stopped the job, too) stops the encode
   * cleanly instead of killing the process with a temporary file left behind */
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_encode_signal;
  sigemptyset(&sa.sa_mask);
  encode_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  int rc = encode(mo, n);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (!rc && complete) remove_sidecar(mo->sidecar);
  return rc;
}

int cli_movie_out_interrupted(cli_movie_out *mo, long long n, long long total) {
  int sig = cli_dream_interrupted() ? cli_dream_interrupted() : SIGINT;
  int rc = cli_movie_out_finish(mo, n, 0);
  if (rc) return rc;
  if (n)
    cli_errorf("interrupted after %lld of %lld frames; %s holds them; --resume continues", n,
               total, mo->out);
  else
    cli_errorf("interrupted before the first frame was finished; %s was not written", mo->out);
  return 128 + sig;
}

int cli_movie_budget(cli_dream_job *job, int w, int h) {
  dd_err err;
  cli_model *cm = job->cm;
  dd_dream_budget b;
  int rc = dd_dream_check_budget(cm->model, &job->p, w, h, cm->max_memory, &b, &err);
  if (rc == DD_ELIMIT)
    return cli_errorf("--max-memory: %s; raise --max-memory to %.0fM", err.msg,
                      ceil(b.need / 1048576.0));
  if (rc) return cli_report(&err);
  job->p.max_memory = b.plan_budget;
  return 0;
}

static int on_progress(const dd_dream_progress *p, void *user) {
  cli_movie_progress *pr = user;
  if (!pr->shown) return 0;
  double el = dd_now_seconds() - pr->start;
  double frames_done = (double)(pr->frame - pr->first) + p->done;
  char left[32] = "--:--";
  if (pr->total > 0 && frames_done > 0) {
    double s = el / frames_done * ((double)(pr->total - pr->first) - frames_done);
    if (s < 0) s = 0;
    snprintf(left, sizeof left, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
  }
  char total[32] = "?";
  if (pr->total > 0) snprintf(total, sizeof total, "%lld", pr->total);
  fprintf(stderr, "\r\033[Kframe %lld/%s  octave %d/%d iter %2d/%d  %s left", pr->frame + 1, total,
          p->octave + 1, p->n_octaves, p->iter + 1, p->n_iters, left);
  fflush(stderr);
  pr->drawn = 1;
  return 0;
}

void cli_movie_progress_end(cli_movie_progress *pr) {
  if (pr->drawn) fputc('\n', stderr);
  pr->drawn = 0;
}

int cli_movie_dream(cli_dream_job *job, dd_image *img, int iters, uint64_t seed,
                    cli_movie_progress *pr) {
  dd_err err;
  int rc = 0;
  /* made at the first frame, when the budget is set; the frames share its plans */
  if (!job->dreamer)
    rc = dd_dreamer_new(job->cm->model, &job->cm->preset.pre, &job->p, &job->dreamer, &err);
  if (!rc) rc = dd_dreamer_dream(job->dreamer, img, iters, seed, on_progress, pr, &err);
  if (rc == DD_EINTR) return DD_EINTR;
  if (rc) {
    cli_movie_progress_end(pr);
    return cli_report(&err);
  }
  return 0;
}
