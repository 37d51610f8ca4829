/* dream video: every frame of a movie dreamed, each starting from the raw frame plus the
 * previous frame's hallucination (dreamed minus raw) carried along the optical flow, so that
 * the hallucinations move with the picture instead of flickering. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/movie.h"
#include "util.h"

static const char video_help[] =
    "usage: dream video [dream options] [--blend B] [--blend-static B] [--no-flow]\n"
    "                   [--flow-threshold T] [--start T0] [--end T1] [--carried-iters N]\n"
    "                   [--resume] IN OUT\n\n"
    "Dreams every frame of IN.  Frame 1 is dreamed from the raw frame; every next frame starts\n"
    "from the raw frame plus B times the previous frame's hallucination (dreamed minus raw),\n"
    "warped along the optical flow (OpenCV's DIS) from the previous raw frame to this one, and\n"
    "is dreamed with fewer iterations (--carried-iters), since it starts half-dreamed.\n"
    "IN: a movie libavformat reads (.mp4 .mkv .webm .mov ...) or numbered images such as\n"
    "frames/in_%04d.png.  OUT: a movie (.mp4 .mkv .mov: H.264, or MPEG-4 without libx264;\n"
    ".webm: VP9/VP8), a .gif, or numbered images (frames/out_%04d.png, from 1).  OUT keeps IN's\n"
    "frame count, size and frame rate, and IN's audio track, stream-copied (trimmed with\n"
    "--start/--end).\n\n"
    "video options:\n"
    "      --blend B        weight of the carried hallucination, 0..1 (0.6)\n"
    "      --blend-static B its weight where the flow moves less than --flow-threshold\n"
    "                       (default: --blend)\n"
    "      --flow-threshold T  pixels per frame under which a pixel counts as static (0)\n"
    "      --no-flow        carry the hallucination without warping it (the plain blend)\n"
    "      --start T0       begin at T0 seconds of IN (0)\n"
    "      --end T1         stop before T1 seconds of IN (default: the end)\n"
    "      --carried-iters N  iterations per octave of every frame but the first (default:\n"
    "                       half of --iters, rounded up: 5)\n"
    "      --resume         continue a stopped job from its last finished frame: finished\n"
    "                       frames are never dreamed again; refused when the options differ\n"
    "                       from those the frames were made with\n\n"
    "dream options (see `dream --help`; the same defaults, --max-side and --checkpoint-every\n"
    "excepted; frame t is dreamed with seed --seed + t):\n" CLI_DREAM_OPTIONS_HELP "\n"
    "Frames are written as they are finished: straight into a numbered OUT, else into the\n"
    "folder OUT.frames/ (BMP), from which OUT is encoded at the end and which is then removed.\n"
    "Ctrl-C (or SIGTERM) stops after writing OUT with the frames finished so far; --resume\n"
    "continues.\n";

/* The job's frames of IN: [first, first + count). */
typedef struct span {
  long long first, count;
} span;

/* Reads IN once to the end: it decodes, it has frames in the span.  Prints; 0 or 1. */
static int prescan(const char *in, size_t cap, const cli_dream_args *a, dd_movie_info *info,
                   span *sp) {
  dd_err err;
  dd_movie_reader *r = dd_movie_read_open(in, cap, &err);
  if (!r) return cli_report(&err);
  dd_movie_read_info(r, info);
  sp->first = llround(a->start * info->fps);
  long long end = a->end > 0 ? llround(a->end * info->fps) : -1;
  dd_image *f = NULL;
  int rc;
  long long n = 0;
  while ((rc = dd_movie_read(r, &f, &err)) == 1) n++;
  dd_image_free(f);
  dd_movie_read_close(r);
  if (rc < 0) return cli_report(&err);
  if (n == 0) return cli_errorf("%s: no frames", in);
  if (end < 0 || end > n) end = n;
  if (sp->first >= end)
    return cli_errorf("%s: no frames between --start %g and --end %g (it has %lld frames at "
                      "%g fps)", in, (double)a->start, (double)a->end, n, info->fps);
  sp->count = end - sp->first;
  return 0;
}

int cmd_video(int argc, char **argv) {
  cli_dream_args a;
  dd_err err;
  if (cli_video_parse(argc, argv, &a, &err)) return cli_usage_error("video", "%s", err.msg);
  if (a.help) {
    fputs(video_help, stdout);
    return 0;
  }
  if (a.max_side)
    return cli_usage_error("video", "--max-side: not for video, whose output keeps IN's size");
  cli_dream_warn_idle(&a);
  if (a.no_flow && (a.flow_threshold > 0 || a.blend_static >= 0))
    cli_warnf("--flow-threshold and --blend-static do nothing with --no-flow");
  if (cli_movie_out_check(a.out)) return 1;
  size_t budget = a.common.model.max_memory ? a.common.model.max_memory : cli_default_max_memory();
  size_t cap = budget / dd_dream_decode_bytes(1, 1);
  if (cap > DD_IMAGE_MAX_PIXELS) cap = DD_IMAGE_MAX_PIXELS;
  if (cap < 1) cap = 1;
  dd_movie_info info;
  span sp = {0, 0};
  if (prescan(a.in, cap, &a, &info, &sp)) return 1;
  int carried_iters = a.carried_iters ? a.carried_iters : (a.params.iters + 1) / 2;
  /* OUT opened and dropped once before any dream: the encoder takes this size and rate, the
   * container takes IN's audio (found now, not after the last frame). */
  const char *audio = NULL;
  if (info.has_audio) {
    const char *dot = strrchr(a.out, '.');
    if (dd_movie_is_pattern(a.out) || (dot && !strcasecmp(dot, ".gif")))
      cli_warnf("%s has an audio track, which %s cannot hold: dropped", a.in, a.out);
    else
      audio = a.in;
  }
  if (!dd_movie_is_pattern(a.out)) {
    dd_movie_opts o;
    dd_movie_opts_init(&o);
    o.audio_from = audio;
    dd_movie_writer *probe = dd_movie_open_ex(a.out, info.w, info.h, info.fps, &o, &err);
    if (!probe) return cli_report(&err);
    dd_movie_abort(probe);
  }

  cli_files files = {0};
  cli_files_in(&files, a.guide);
  cli_model cm;
  int status = cli_model_open_checked("video", &a.common.model, &files, &cm);
  if (status) return status;
  status = 1;
  cli_dream_job job;
  int began = 1; /* cli_dream_end undoes a partial cli_dream_begin too */
  dd_movie_reader *r = NULL;
  dd_flow *fl = NULL;
  float *flow = NULL;
  dd_image *raw = NULL, *raw_prev = NULL, *back = NULL, *img = NULL, *hall = NULL;
  cli_movie_out mo;
  memset(&mo, 0, sizeof mo);
  long long t = 0;
  int w = info.w, h = info.h;
  if (cli_dream_begin(&a, &cm, &job)) goto done;
  if (cli_movie_budget(&job, w, h)) goto done;
  if (dd_image_new(w, h, &img, &err) || dd_image_new(w, h, &raw_prev, &err)) {
    cli_report(&err);
    goto done;
  }
  if (!a.no_flow) { /* the flow, and the carry's scratch (the hallucination to warp) */
    if (dd_image_new(w, h, &hall, &err)) {
      cli_report(&err);
      goto done;
    }
    if (!(flow = malloc(sizeof(float) * 2 * (size_t)w * h))) {
      cli_errorf("out of memory");
      goto done;
    }
    if (dd_flow_new(w, h, &fl, &err)) {
      cli_report(&err);
      goto done;
    }
  }
  mo.w = w;
  mo.h = h;
  mo.fps = info.fps;
  mo.quality = a.common.quality;
  if (audio) {
    mo.audio_from = audio;
    mo.audio_start = sp.first / info.fps;
  }
  int begun = cli_movie_out_begin(&mo, a.out, a.resume, a.common.quiet);
  if (begun == 2) status = 0;
  if (begun || cli_movie_out_job(&mo, &a, "video", a.resume, &a.common.seed)) goto done;
  if (mo.done > sp.count) mo.done = sp.count;
  if (!(r = dd_movie_read_open(a.in, cap, &err))) {
    cli_report(&err);
    goto done;
  }
  /* Frames before the span, and the finished ones: only the last raw frame is kept. */
  for (long long i = 0; i < sp.first + mo.done; i++) {
    int rc = dd_movie_read(r, &raw, &err);
    if (rc != 1) {
      if (rc == 0) cli_errorf("%s: ended before frame %lld, which the first reading found", a.in, i);
      else cli_report(&err);
      goto done;
    }
  }
  t = mo.done;
  if (t > 0) {
    memcpy(raw_prev->rgb, raw->rgb, sizeof(float) * 3 * (size_t)w * h);
    if (cli_movie_out_load(&mo, t - 1, &back)) goto done;
  }
  cli_movie_progress pr = {cli_progress_shown(&a.common), 0, sp.count, t, t, dd_now_seconds()};
  for (; t < sp.count; t++) {
    int rc = dd_movie_read(r, &raw, &err);
    if (rc != 1) {
      cli_movie_progress_end(&pr);
      if (rc == 0) cli_errorf("%s: ended before frame %lld, which the first reading found", a.in,
                              sp.first + t);
      else cli_report(&err);
      goto done;
    }
    pr.frame = t;
    int iters = a.params.iters;
    if (t == 0) {
      memcpy(img->rgb, raw->rgb, sizeof(float) * 3 * (size_t)w * h);
    } else {
      if (fl && dd_flow_compute(fl, raw, raw_prev, flow, &err)) {
        cli_movie_progress_end(&pr);
        cli_report(&err);
        goto done;
      }
      dd_video_carry(raw, raw_prev, back, fl ? flow : NULL, a.blend, a.blend_static,
                     a.flow_threshold, hall, img);
      iters = carried_iters;
    }
    rc = cli_movie_dream(&job, img, iters, a.common.seed.value + (uint64_t)t, &pr);
    if (rc == DD_EINTR) break;
    if (rc) goto done;
    if (cli_movie_out_frame(&mo, t, img, &back)) goto done;
    memcpy(raw_prev->rgb, raw->rgb, sizeof(float) * 3 * (size_t)w * h);
  }
  cli_movie_progress_end(&pr);
  dd_movie_read_close(r);
  r = NULL;
  if (t < sp.count) {
    status = cli_movie_out_interrupted(&mo, t, sp.count);
    goto done;
  }
  int fin = cli_movie_out_finish(&mo, t, 1);
  if (fin) {
    status = fin;
    goto done;
  }
  cli_summary(&a.common, "wrote %s (%lld frames of %dx%d at %g fps%s)", a.out, sp.count, w, h,
              info.fps, mo.audio_from && !mo.pattern ? ", audio copied" : "");
  status = 0;
done:
  dd_movie_read_close(r);
  dd_flow_free(fl);
  free(flow);
  dd_image_free(raw);
  dd_image_free(raw_prev);
  dd_image_free(back);
  dd_image_free(img);
  dd_image_free(hall);
  if (began) cli_dream_end(&job);
  cli_model_close(&cm);
  return status;
}
