/* dream zoom: the original notebook's endless zoom.  Each frame is dreamed, kept, zoomed about
 * its centre by 1/(1-S) (and turned), and fed back as the next frame's start. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/movie.h"
#include "util.h"

static const char zoom_help[] =
    "usage: dream zoom [dream options] --frames N [--zoom S] [--rotate DEG] [--fps F] [--resume]\n"
    "                  IN OUT\n\n"
    "The DeepDream notebook's zoom: frame 1 is IN dreamed; every next frame is the last one\n"
    "zoomed about its centre by 1/(1-S) (and turned by DEG), dreamed again.  IN is a still\n"
    "(" DD_IMAGE_FORMATS ").\n"
    "OUT: a movie (.mp4 .mkv .mov: H.264, or MPEG-4 without libx264; .webm: VP9/VP8), a .gif,\n"
    "or numbered images such as frames/zoom_%04d.png (.png, .jpg, numbered from 1).\n\n"
    "zoom options:\n"
    "      --frames N       number of frames (required)\n"
    "      --zoom S         zoom by 1/(1-S) per frame (0.05; negative: zoom out)\n"
    "      --rotate DEG     turn by DEG degrees per frame, counter-clockwise (0)\n"
    "      --fps F          frame rate of OUT (12)\n"
    "      --resume         continue a stopped job from its last finished frame: finished\n"
    "                       frames are never dreamed again; refused when the options differ\n"
    "                       from those the frames were made with\n\n"
    "dream options (see `dream --help`; the same defaults: frame t is dreamed with seed\n"
    "--seed + t):\n" CLI_DREAM_OPTIONS_HELP "\n"
    "Frames are written as they are finished: straight into a numbered OUT, else into the\n"
    "folder OUT.frames/ (BMP), from which OUT is encoded at the end and which is then removed.\n"
    "Ctrl-C (or SIGTERM) stops after writing OUT with the frames finished so far; --resume\n"
    "continues.\n";

int cmd_zoom(int argc, char **argv) {
  cli_dream_args a;
  dd_err err;
  if (cli_zoom_parse(argc, argv, &a, &err)) return cli_usage_error("zoom", "%s", err.msg);
  if (a.help) {
    fputs(zoom_help, stdout);
    return 0;
  }
  cli_dream_warn_idle(&a);
  if (cli_movie_out_check(a.out)) return 1;
  cli_files files = {0};
  cli_files_in(&files, a.in);
  cli_files_in(&files, a.guide);
  cli_model cm;
  int status = cli_model_open_checked("zoom", &a.common.model, &files, &cm);
  if (status) return status;
  status = 1;
  cli_dream_job job;
  dd_image *img = NULL, *back = NULL;
  cli_movie_out mo;
  memset(&mo, 0, sizeof mo);
  long long t = 0;
  int began = 0;
  began = 1; /* cli_dream_end undoes a partial cli_dream_begin too */
  if (cli_dream_begin(&a, &cm, &job)) goto done;
  if (cli_load_image_capped(a.in, &cm, dd_dream_decode_bytes(1, 1), &img)) goto done;
  if (a.max_side > 0 && (img->w > a.max_side || img->h > a.max_side)) {
    int longer = img->w > img->h ? img->w : img->h;
    int w = (int)lround((double)img->w * a.max_side / longer);
    int h = (int)lround((double)img->h * a.max_side / longer);
    dd_image *r;
    if (dd_image_resize(img, w < 1 ? 1 : w, h < 1 ? 1 : h, &r, &err)) {
      cli_report(&err);
      goto done;
    }
    dd_image_free(img);
    img = r;
  }
  if (cli_movie_budget(&job, img->w, img->h)) goto done;
  if (!dd_movie_is_pattern(a.out)) { /* the encoder takes this size and rate */
    dd_movie_writer *probe = dd_movie_open(a.out, img->w, img->h, a.fps, &err);
    if (!probe) {
      cli_report(&err);
      goto done;
    }
    dd_movie_abort(probe);
  }
  mo.w = img->w;
  mo.h = img->h;
  mo.fps = a.fps;
  mo.quality = a.common.quality;
  int begun = cli_movie_out_begin(&mo, a.out, a.resume, a.common.quiet);
  if (begun == 2) status = 0;
  if (begun || cli_movie_out_job(&mo, &a, "zoom", a.resume, &a.common.seed)) goto done;
  if (mo.done > a.frames) mo.done = a.frames;
  double zoom = 1.0 / (1.0 - a.zoom);
  dd_image *next = NULL;
  if (dd_image_new(img->w, img->h, &next, &err)) {
    cli_report(&err);
    goto done;
  }
  /* Resumed: the last finished frame, as saved, starts the next. */
  t = mo.done;
  if (t > 0) {
    if (cli_movie_out_load(&mo, t - 1, &back)) goto done_next;
    dd_zoom_rotate(back, zoom, a.rotate, img);
  }
  cli_movie_progress pr = {cli_progress_shown(&a.common), 0, a.frames, t, t, dd_now_seconds()};
  for (; t < a.frames; t++) {
    pr.frame = t;
    int rc = cli_movie_dream(&job, img, a.params.iters, a.common.seed.value + (uint64_t)t, &pr);
    if (rc == DD_EINTR) break;
    if (rc) goto done_next;
    if (cli_movie_out_frame(&mo, t, img, &back)) goto done_next;
    dd_zoom_rotate(back, zoom, a.rotate, next);
    dd_image *tmp = img;
    img = next;
    next = tmp;
  }
  cli_movie_progress_end(&pr);
  if (t < a.frames) {
    status = cli_movie_out_interrupted(&mo, t, a.frames);
    goto done_next;
  }
  int fin = cli_movie_out_finish(&mo, t, 1);
  if (fin) {
    status = fin;
    goto done_next;
  }
  cli_summary(&a.common, "wrote %s (%d frames of %dx%d at %g fps)", a.out, a.frames, img->w,
              img->h, (double)a.fps);
  status = 0;
done_next:
  dd_image_free(next);
done:
  dd_image_free(img);
  dd_image_free(back);
  if (began) cli_dream_end(&job);
  cli_model_close(&cm);
  return status;
}
