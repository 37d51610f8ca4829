/* dream/video.h: every container written and read back (count, size, rate, pixels), audio
 * stream-copied and trimmed, numbered images, each bad input refused naming the file, and
 * the flow and warps of src/flow.h on a known motion. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dream/video.h"
#include "helper_files.h"
#include "helper_ops.h"
#include "helper_video.h"

TestSuite(video, .init = th_tmpdir_setup, .fini = th_tmpdir_teardown, .timeout = 120);

static double mean_abs_diff(const dd_image *a, const dd_image *b) {
  double s = 0;
  size_t n = (size_t)a->w * a->h * 3;
  for (size_t i = 0; i < n; i++) s += fabs(a->rgb[i] - b->rgb[i]);
  return s / n;
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* No file but `keep` in th_tmpdir whose name starts with `prefix` (no temporary left). */
static void expect_no_tmp(const char *prefix) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '^%s.*tmp' > %s/count", th_tmpdir, prefix, th_tmpdir);
  cr_assert_neq(system(cmd), -1);
  char p[256];
  char *s = th_slurp(th_tmp(p, sizeof p, "count"), NULL);
  cr_expect_eq(atoi(s), 0, "temporary files left for %s", prefix);
  free(s);
}

Test(video, every_container_round_trips) {
  static const struct {
    const char *name;
    double max_err; /* mean |written - read| in 0..255 levels */
    double fps_tol;
  } cases[] = {{"a.mp4", 6, 1e-6}, {"a.mkv", 6, 1e-3}, {"a.mov", 6, 1e-6}, {"a.webm", 8, 1e-3},
               {"a.gif", 4, 0.5}, {"a_%04d.png", 0, -1}, {"a_%03d.jpg", 6, -1}};
  dd_image *photo = th_shared_photo("kite.jpg", 200);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char path[256];
    th_tmp(path, sizeof path, cases[k].name);
    th_pan_clip("kite.jpg", 200, 96, 64, 2, 1, 10, 12, NULL, path);
    int n;
    dd_movie_info info;
    dd_image **fr = th_read_all(path, &n, &info);
    cr_expect_eq(n, 10, "%s: %d frames", path, n);
    cr_expect_eq(info.w, 96, "%s", path);
    cr_expect_eq(info.h, 64, "%s", path);
    cr_expect_eq(info.has_audio, 0, "%s", path);
    if (cases[k].fps_tol >= 0)
      cr_expect_leq(fabs(info.fps - 12), cases[k].fps_tol, "%s: fps %g", path, info.fps);
    for (int t = 0; t < n; t++) {
      dd_image *want = th_pan_frame(photo, 96, 64, 8, 8, 2, 1, t);
      /* what the writer stores: rounded to 8 bits */
      for (size_t i = 0; i < (size_t)96 * 64 * 3; i++) want->rgb[i] = roundf(want->rgb[i]);
      double e = mean_abs_diff(want, fr[t]);
      cr_expect_leq(e, cases[k].max_err, "%s frame %d: mean error %.2f", path, t, e);
      dd_image_free(want);
    }
    th_free_all(fr, n);
  }
  expect_no_tmp("a.");
  dd_image_free(photo);
}

Test(video, odd_sizes_and_the_frame_size_are_kept) {
  char path[256];
  th_pan_clip("kite.jpg", 200, 95, 63, 1, 1, 3, 10, NULL, th_tmp(path, sizeof path, "odd.mp4"));
  int n;
  dd_movie_info info;
  dd_image **fr = th_read_all(path, &n, &info);
  cr_expect_eq(n, 3);
  cr_expect_eq(info.w, 95);
  cr_expect_eq(info.h, 63);
  th_free_all(fr, n);
  /* a frame of another size is refused */
  dd_err err;
  dd_movie_writer *mw = dd_movie_open(th_tmp(path, sizeof path, "b.mkv"), 32, 32, 10, &err);
  cr_assert_not_null(mw, "%s", err.msg);
  dd_image *im;
  cr_assert_eq(dd_image_new(33, 32, &im, &err), 0);
  cr_expect_eq(dd_movie_write(mw, im, &err), DD_EARG);
  dd_movie_abort(mw);
  cr_expect_not(file_exists(path), "abort left %s", path);
  expect_no_tmp("b.");
  dd_image_free(im);
}

Test(video, audio_is_stream_copied_and_trimmed) {
  char wav[256], clip[256];
  th_write_wav(th_tmp(wav, sizeof wav, "tone.wav"), 2.0);
  cr_expect_leq(fabs(th_audio_seconds(wav) - 2.0), 0.01);
  dd_movie_opts o;
  dd_movie_opts_init(&o);
  o.audio_from = wav;
  th_pan_clip("kite.jpg", 200, 96, 64, 2, 1, 20, 10, &o, th_tmp(clip, sizeof clip, "av.mkv"));
  int n;
  dd_movie_info info;
  dd_image **fr = th_read_all(clip, &n, &info);
  cr_expect_eq(n, 20);
  cr_expect(info.has_audio);
  th_free_all(fr, n);
  double s = th_audio_seconds(clip);
  cr_expect_leq(fabs(s - 2.0), 0.15, "audio of %.3f s, the clip is 2 s", s);
  /* trimmed: 0.5 s .. 1.5 s of the tone */
  o.audio_from = clip;
  o.audio_start = 0.5;
  o.audio_end = 1.5;
  char cut[256];
  th_pan_clip("kite.jpg", 200, 96, 64, 2, 1, 10, 10, &o, th_tmp(cut, sizeof cut, "cut.mkv"));
  s = th_audio_seconds(cut);
  cr_expect_leq(fabs(s - 1.0), 0.15, "trimmed audio of %.3f s, expected 1 s", s);
}

Test(video, bad_inputs_are_refused_naming_the_file) {
  dd_err err;
  char p[256];
  /* missing */
  cr_expect_null(dd_movie_read_open(th_tmp(p, sizeof p, "none.mp4"), 0, &err));
  cr_expect_eq(err.code, DD_EIO);
  cr_expect(strstr(err.msg, p), "%s", err.msg);
  /* not a video */
  th_write_bytes(th_tmp(p, sizeof p, "text.mp4"), "hello, not a movie\n", 19);
  cr_expect_null(dd_movie_read_open(p, 0, &err));
  cr_expect_eq(err.code, DD_EFORMAT);
  cr_expect(strstr(err.msg, p) && strstr(err.msg, "not a video"), "%s", err.msg);
  /* no video stream */
  th_write_wav(th_tmp(p, sizeof p, "only.wav"), 0.5);
  cr_expect_null(dd_movie_read_open(p, 0, &err));
  cr_expect_eq(err.code, DD_EFORMAT);
  cr_expect(strstr(err.msg, p) && strstr(err.msg, "no video stream"), "%s", err.msg);
  /* too large for the cap */
  th_pan_clip("kite.jpg", 200, 96, 64, 2, 1, 3, 10, NULL, th_tmp(p, sizeof p, "big.mkv"));
  cr_expect_null(dd_movie_read_open(p, 1000, &err));
  cr_expect_eq(err.code, DD_ELIMIT);
  cr_expect(strstr(err.msg, p) && strstr(err.msg, "96x64"), "%s", err.msg);
  /* truncated: the first half of an mp4 (its index is at the end) and of an mkv */
  const char *names[] = {"cut.mp4", "cut.mkv"};
  for (int k = 0; k < 2; k++) {
    char full[256];
    snprintf(full, sizeof full, "%s/full%d%s", th_tmpdir, k, strrchr(names[k], '.'));
    th_pan_clip("kite.jpg", 200, 96, 64, 2, 1, 30, 10, NULL, full);
    size_t len;
    char *bytes = th_slurp(full, &len);
    th_write_bytes(th_tmp(p, sizeof p, names[k]), bytes, len / 2);
    free(bytes);
    dd_movie_reader *r = dd_movie_read_open(p, 0, &err);
    int rc = DD_EFORMAT;
    if (r) {
      dd_image *f = NULL;
      while ((rc = dd_movie_read(r, &f, &err)) == 1) {}
      dd_image_free(f);
      dd_movie_read_close(r);
    } else {
      rc = err.code;
    }
    cr_expect_eq(rc, DD_EFORMAT, "%s: %d", p, rc);
    cr_expect(strstr(err.msg, p), "%s", err.msg);
  }
  /* zero frames: a movie closed without any */
  dd_movie_writer *mw = dd_movie_open(th_tmp(p, sizeof p, "empty.mp4"), 32, 32, 10, &err);
  cr_assert_not_null(mw, "%s", err.msg);
  cr_assert_eq(dd_movie_close(mw, &err), 0, "%s", err.msg);
  cr_expect_null(dd_movie_read_open(p, 0, &err));
  cr_expect_eq(err.code, DD_EFORMAT);
  /* the mp4 muxer keeps no track without samples: "no video stream" is what the file holds */
  cr_expect(strstr(err.msg, p) && (strstr(err.msg, "no frames") || strstr(err.msg, "no video stream")),
            "%s", err.msg);
  /* an extension without an encoder or a muxer */
  cr_expect_null(dd_movie_open(th_tmp(p, sizeof p, "x.avi2"), 32, 32, 10, &err));
  cr_expect_eq(err.code, DD_EUNSUPPORTED);
  cr_expect(strstr(err.msg, p), "%s", err.msg);
  cr_expect_not(file_exists(p));
  cr_expect_null(dd_movie_open(th_tmp(p, sizeof p, "x_%04d.gif"), 32, 32, 10, &err));
  cr_expect_eq(err.code, DD_EUNSUPPORTED);
  cr_expect_null(dd_movie_open(th_tmp(p, sizeof p, "y.mp4"), 32, 32, 0, &err));
  cr_expect_eq(err.code, DD_EARG);
  expect_no_tmp("x");
}

Test(video, patterns_are_parsed) {
  char buf[64];
  dd_err err;
  cr_expect(dd_movie_is_pattern("f/in_%04d.png"));
  cr_expect(dd_movie_is_pattern("in_%d.png"));
  cr_expect_not(dd_movie_is_pattern("in_%%04d.png"));
  cr_expect_not(dd_movie_is_pattern("in_%s.png"));
  cr_expect_not(dd_movie_is_pattern("in_%d_%d.png"));
  cr_expect_not(dd_movie_is_pattern("in.png"));
  cr_assert_eq(dd_movie_frame_path("f/in_%04d.png", 7, buf, sizeof buf, &err), 0);
  cr_expect_str_eq(buf, "f/in_0007.png");
  cr_assert_eq(dd_movie_frame_path("100%%_%d.jpg", 12345, buf, sizeof buf, &err), 0);
  cr_expect_str_eq(buf, "100%_12345.jpg");
  cr_expect_eq(dd_movie_frame_path("%d.png", 1, buf, 3, &err), DD_EARG);
}

/* DIS finds a known pan, and warping the previous frame along it predicts the next. */
Test(video, flow_and_warp_follow_a_pan) {
  dd_image *photo = th_shared_photo("kite.jpg", 300);
  int w = 96, h = 64, dx = 3, dy = 1;
  dd_image *f0 = th_pan_frame(photo, w, h, 8, 8, dx, dy, 0);
  dd_image *f1 = th_pan_frame(photo, w, h, 8, 8, dx, dy, 1);
  dd_err err;
  dd_flow *fl;
  cr_assert_eq(dd_flow_new(w, h, &fl, &err), 0, "%s", err.msg);
  float *flow = malloc(sizeof(float) * 2 * w * h);
  /* f1(x) = f0(x + (dx, dy)) */
  cr_assert_eq(dd_flow_compute(fl, f1, f0, flow, &err), 0, "%s", err.msg);
  double sx = 0, sy = 0;
  int n = 0;
  for (int y = 8; y < h - 8; y++)
    for (int x = 8; x < w - 8; x++, n++) {
      sx += flow[2 * ((size_t)y * w + x)];
      sy += flow[2 * ((size_t)y * w + x) + 1];
    }
  cr_expect_leq(fabs(sx / n - dx), 0.3, "mean flow x %.2f, the pan is %d", sx / n, dx);
  cr_expect_leq(fabs(sy / n - dy), 0.3, "mean flow y %.2f, the pan is %d", sy / n, dy);
  dd_image *wp;
  cr_assert_eq(dd_image_new(w, h, &wp, &err), 0);
  dd_flow_warp(f0, flow, wp);
  double e_warp = 0, e_still = 0;
  for (int y = 4; y < h - 4; y++)
    for (int x = 4; x < w - 4; x++)
      for (int c = 0; c < 3; c++) {
        size_t i = ((size_t)y * w + x) * 3 + c;
        e_warp += fabs(wp->rgb[i] - f1->rgb[i]);
        e_still += fabs(f0->rgb[i] - f1->rgb[i]);
      }
  cr_expect_lt(e_warp, 0.35 * e_still, "warped error %.0f vs unmoved %.0f", e_warp, e_still);
  /* an exact integer flow warps exactly */
  for (size_t i = 0; i < (size_t)w * h; i++) flow[2 * i] = dx, flow[2 * i + 1] = dy;
  dd_flow_warp(f0, flow, wp);
  for (int y = 0; y < h - dy; y++)
    for (int x = 0; x < w - dx; x++)
      for (int c = 0; c < 3; c++)
        cr_assert_eq(wp->rgb[((size_t)y * w + x) * 3 + c], f1->rgb[((size_t)y * w + x) * 3 + c]);
  free(flow);
  dd_flow_free(fl);
  dd_image_free(wp);
  dd_image_free(f0);
  dd_image_free(f1);
  dd_image_free(photo);
}

Test(video, zoom_rotate_is_a_similarity_about_the_centre) {
  dd_err err;
  dd_image *a, *b, *c;
  int w = 41, h = 31;
  cr_assert_eq(dd_image_new(w, h, &a, &err), 0);
  cr_assert_eq(dd_image_new(w, h, &b, &err), 0);
  cr_assert_eq(dd_image_new(w, h, &c, &err), 0);
  /* a linear ramp: zooming by z about the centre scales it by z there */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < 3; k++) a->rgb[((size_t)y * w + x) * 3 + k] = 100 + 2 * (x - 20) + (y - 15);
  dd_zoom_rotate(a, 1.25, 0, b);
  for (int y = 10; y < 21; y++)
    for (int x = 12; x < 29; x++)
      cr_assert_float_eq(b->rgb[((size_t)y * w + x) * 3], 100 + (2 * (x - 20) + (y - 15)) / 1.25,
                         1e-3, "(%d, %d)", x, y);
  /* 90 degrees counter-clockwise: the point right of the centre comes from below it... */
  dd_zoom_rotate(a, 1, 90, c);
  /* dst(c + (d, 0)) = src(c + R(90)(d, 0)) = src(c + (0, d)) */
  cr_assert_float_eq(c->rgb[((size_t)15 * w + 25) * 3], a->rgb[((size_t)20 * w + 20) * 3], 1e-3);
  dd_image_free(a);
  dd_image_free(b);
  dd_image_free(c);
}
