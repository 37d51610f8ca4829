/* dream video and dream zoom as a user runs them, on clips the tests make: hallucinations
 * that follow a known pan, what OUT keeps of IN (frames, size, rate, audio), the zoom's
 * continuity, a killed job resumed into the same frames, and each bad input refused with
 * nothing written. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dream/video.h"
#include "helper_cli.h"
#include "helper_ops.h"
#include "helper_video.h"

TestSuite(video_cli, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 300);
/* the jobs that are killed and resumed: slow enough frames for the kill to land mid-job */
TestSuite(video_slow, .init = th_cli_setup, .fini = th_cli_teardown, .timeout = 300);

#define SQUEEZE "-m", "squeezenet", "-q"

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void expect_ok(th_result *r, const char *what) {
  cr_assert_eq(r->status, 0, "%s: status %d: %s", what, r->status, r->err);
}

/* Pearson correlation over the overlap of h1(x, y) and h0(x + dx, y + dy). */
static double moved_corr(const dd_image *h0, const dd_image *h1, int dx, int dy) {
  int w = h0->w, h = h0->h;
  size_t n = 0;
  float *a = malloc(sizeof(float) * 3 * w * h), *b = malloc(sizeof(float) * 3 * w * h);
  for (int y = 0; y + dy < h; y++)
    for (int x = 0; x + dx < w; x++)
      for (int c = 0; c < 3; c++, n++) {
        a[n] = h1->rgb[((size_t)y * w + x) * 3 + c];
        b[n] = h0->rgb[((size_t)(y + dy) * w + x + dx) * 3 + c];
      }
  double r = th_corr(a, b, n);
  free(a);
  free(b);
  return r;
}

/* Mean over consecutive frames of the moved correlation of hallucinations (out - raw). */
static double hallucination_corr(const char *raw_pattern, const char *out_pattern, int dx, int dy) {
  int n, m;
  dd_image **raw = th_read_all(raw_pattern, &n, NULL);
  dd_image **out = th_read_all(out_pattern, &m, NULL);
  cr_assert_eq(n, m, "%s has %d frames, %s %d", raw_pattern, n, out_pattern, m);
  for (int t = 0; t < n; t++)
    for (size_t i = 0; i < (size_t)raw[t]->w * raw[t]->h * 3; i++)
      out[t]->rgb[i] -= raw[t]->rgb[i];
  double s = 0;
  for (int t = 0; t + 1 < n; t++) s += moved_corr(out[t], out[t + 1], dx, dy);
  th_free_all(raw, n);
  th_free_all(out, m);
  return s / (n - 1);
}

Test(video_cli, hallucinations_follow_the_motion) {
  char in[256], flow[256], ind[256], plain[256];
  int dx = 3, dy = 1;
  th_pan_clip("kite.jpg", 400, 96, 64, dx, dy, 12, 12, NULL, th_tmp(in, sizeof in, "in_%04d.png"));
  th_tmp(flow, sizeof flow, "flow_%04d.png");
  th_tmp(ind, sizeof ind, "ind_%04d.png");
  th_tmp(plain, sizeof plain, "plain_%04d.png");
  th_result r = TH_RUN("video", SQUEEZE, in, flow);
  expect_ok(&r, "video");
  th_result_free(&r);
  r = TH_RUN("video", SQUEEZE, "--blend", "0", in, ind);
  expect_ok(&r, "video --blend 0");
  th_result_free(&r);
  r = TH_RUN("video", SQUEEZE, "--no-flow", in, plain);
  expect_ok(&r, "video --no-flow");
  th_result_free(&r);
  double c_flow = hallucination_corr(in, flow, dx, dy);
  double c_ind = hallucination_corr(in, ind, dx, dy);
  double c_plain = hallucination_corr(in, plain, dx, dy);
  cr_log_info("moved correlation of hallucinations: flow %.3f, independent %.3f, --no-flow %.3f",
              c_flow, c_ind, c_plain);
  cr_expect_geq(c_flow, 0.75, "flow: %.3f", c_flow);
  cr_expect_geq(c_flow, 2 * c_ind, "flow %.3f, independent frames %.3f", c_flow, c_ind);
  cr_expect_gt(c_flow, c_plain + 0.1, "flow %.3f, --no-flow %.3f", c_flow, c_plain);
}

Test(video_cli, output_keeps_frames_size_rate_and_audio) {
  char wav[256], in[256], out[256];
  th_write_wav(th_tmp(wav, sizeof wav, "tone.wav"), 2.0);
  dd_movie_opts o;
  dd_movie_opts_init(&o);
  o.audio_from = wav;
  th_pan_clip("kite.jpg", 300, 96, 64, 2, 1, 20, 10, &o, th_tmp(in, sizeof in, "in.mkv"));
  th_tmp(out, sizeof out, "out.mkv");
  th_result r = TH_RUN("video", SQUEEZE, "--octaves", "2", "--iters", "2", in, out);
  expect_ok(&r, "video");
  th_result_free(&r);
  int n;
  dd_movie_info info;
  dd_image **fr = th_read_all(out, &n, &info);
  cr_expect_eq(n, 20);
  cr_expect_eq(info.w, 96);
  cr_expect_eq(info.h, 64);
  cr_expect_leq(fabs(info.fps - 10), 1e-3, "fps %g", info.fps);
  cr_expect(info.has_audio);
  double s = th_audio_seconds(out);
  cr_expect_leq(fabs(s - 2.0), 0.15, "audio of %.3f s, IN's is 2 s", s);
  th_free_all(fr, n);
  char side[300];
  snprintf(side, sizeof side, "%s.frames", out);
  cr_expect_not(file_exists(side), "the sidecar of a finished job stays");
  /* --start/--end trim frames and audio alike */
  r = TH_RUN("video", SQUEEZE, "--octaves", "2", "--iters", "2", "--start", "0.5", "--end", "1.5",
             in, out);
  expect_ok(&r, "video --start --end");
  th_result_free(&r);
  fr = th_read_all(out, &n, &info);
  cr_expect_eq(n, 10);
  s = th_audio_seconds(out);
  cr_expect_leq(fabs(s - 1.0), 0.15, "trimmed audio of %.3f s, expected 1 s", s);
  th_free_all(fr, n);
  /* an mp4 and a GIF of the same job (the GIF drops the audio, and says so) */
  r = TH_RUN("video", "-m", "squeezenet", "--octaves", "2", "--iters", "2", "--end", "0.5", in,
             th_tmp(out, sizeof out, "out.gif"));
  expect_ok(&r, "video to GIF");
  cr_expect(strstr(r.err, "dropped"), "%s", r.err);
  th_result_free(&r);
  fr = th_read_all(out, &n, &info);
  cr_expect_eq(n, 5);
  cr_expect_eq(info.w, 96);
  th_free_all(fr, n);
}

Test(video_cli, zoom_frames_predict_the_next) {
  char in[256], pat[256];
  th_photo("giraffe.jpg", 96, th_tmp(in, sizeof in, "g.png"));
  th_tmp(pat, sizeof pat, "z_%04d.png");
  th_result r = TH_RUN("zoom", SQUEEZE, "--frames", "5", "--octaves", "2", "--iters", "4", in, pat);
  expect_ok(&r, "zoom");
  th_result_free(&r);
  int n;
  dd_image **fr = th_read_all(pat, &n, NULL);
  cr_assert_eq(n, 5);
  dd_err err;
  dd_image *pred;
  cr_assert_eq(dd_image_new(fr[0]->w, fr[0]->h, &pred, &err), 0);
  /* Frame t zoomed by 1/(1 - 0.05) predicts frame t+1 up to the detail the dream adds: the
   * prediction is closer to it than frame t itself is, and correlates with it. */
  for (int t = 0; t + 1 < n; t++) {
    dd_zoom_rotate(fr[t], 1 / 0.95, 0, pred);
    size_t m = (size_t)pred->w * pred->h * 3;
    double e_pred = 0, e_same = 0;
    for (size_t i = 0; i < m; i++) {
      e_pred += fabs(pred->rgb[i] - fr[t + 1]->rgb[i]);
      e_same += fabs(fr[t]->rgb[i] - fr[t + 1]->rgb[i]);
    }
    double c = th_corr(pred->rgb, fr[t + 1]->rgb, m);
    cr_log_info("zoom frame %d: |pred - next| %.2f, |this - next| %.2f, corr %.3f", t, e_pred / m,
                e_same / m, c);
    cr_expect_lt(e_pred, 0.6 * e_same, "frame %d: zoomed %.2f, unzoomed %.2f", t, e_pred / m,
                 e_same / m);
    cr_expect_geq(c, 0.9, "frame %d: correlation %.3f", t, c);
  }
  dd_image_free(pred);
  th_free_all(fr, n);
}

/* Spawns the job, waits for `marker` to exist, sends `sig`; the job's result. */
static th_result kill_when(const char *const *args, const char *marker, int sig) {
  pid_t pid = th_spawn(args);
  struct timespec ts = {0, 2000000};
  for (int i = 0; i < 30000 && !file_exists(marker); i++) nanosleep(&ts, NULL);
  cr_assert(file_exists(marker), "%s never appeared", marker);
  kill(pid, sig);
  return th_wait(pid);
}

static void expect_same_files(const char *pa, const char *pb, int n) {
  for (int i = 1; i <= n; i++) {
    char a[300], b[300];
    dd_err err;
    cr_assert_eq(dd_movie_frame_path(pa, i, a, sizeof a, &err), 0);
    cr_assert_eq(dd_movie_frame_path(pb, i, b, sizeof b, &err), 0);
    size_t la, lb;
    char *x = th_slurp(a, &la), *y = th_slurp(b, &lb);
    cr_assert(x && y, "%s or %s missing", a, b);
    cr_expect(la == lb && !memcmp(x, y, la), "%s and %s differ", a, b);
    free(x);
    free(y);
  }
}

Test(video_slow, resume_after_a_kill_gives_the_same_frames) {
  char in[256], full[256], part[256], marker[300];
  th_pan_clip("kite.jpg", 400, 96, 64, 3, 1, 6, 12, NULL, th_tmp(in, sizeof in, "in_%04d.png"));
#define SLOW SQUEEZE, "--iters", "16"
  th_tmp(full, sizeof full, "full_%04d.png");
  th_result r = TH_RUN("video", SLOW, in, full);
  expect_ok(&r, "video");
  th_result_free(&r);
  th_tmp(part, sizeof part, "part_%04d.png");
  th_tmp(marker, sizeof marker, "part_0002.png");
  r = kill_when((const char *const[]){"video", SLOW, in, part, NULL}, marker, SIGTERM);
  cr_expect_eq(r.status, 143, "status %d: %s", r.status, r.err);
  cr_expect(strstr(r.err, "interrupted after"), "%s", r.err);
  th_result_free(&r);
  char last[300];
  th_tmp(last, sizeof last, "part_0006.png");
  cr_expect_not(file_exists(last), "the job was not interrupted");
  r = TH_RUN("video", SLOW, "--resume", in, part);
  expect_ok(&r, "video --resume");
  th_result_free(&r);
  expect_same_files(full, part, 6);

  /* a movie: SIGINT leaves a valid movie of the finished frames; --resume completes it */
  char mfull[256], mpart[256];
  r = TH_RUN("video", SLOW, in, th_tmp(mfull, sizeof mfull, "full.mkv"));
  expect_ok(&r, "video to mkv");
  th_result_free(&r);
  th_tmp(mpart, sizeof mpart, "part.mkv");
  snprintf(marker, sizeof marker, "%s.frames/000002.bmp", mpart);
  r = kill_when((const char *const[]){"video", SLOW, in, mpart, NULL}, marker, SIGINT);
  cr_expect_eq(r.status, 130, "status %d: %s", r.status, r.err);
  th_result_free(&r);
  int n, m;
  dd_image **a = th_read_all(mpart, &n, NULL);
  cr_expect(n >= 2 && n < 6, "the interrupted movie has %d frames", n);
  th_free_all(a, n);
  r = TH_RUN("video", SLOW, "--resume", in, mpart);
  expect_ok(&r, "video --resume to mkv");
  th_result_free(&r);
  a = th_read_all(mfull, &n, NULL);
  dd_image **b = th_read_all(mpart, &m, NULL);
  cr_assert_eq(n, 6);
  cr_assert_eq(m, 6);
  for (int t = 0; t < n; t++)
    cr_expect(!memcmp(a[t]->rgb, b[t]->rgb, sizeof(float) * 3 * a[t]->w * a[t]->h),
              "decoded frame %d differs", t);
  th_free_all(a, n);
  th_free_all(b, m);
  /* resuming a finished movie does nothing */
  struct stat before, after;
  cr_assert_eq(stat(mpart, &before), 0);
  r = TH_RUN("video", "-m", "squeezenet", "--iters", "16", "--resume", in, mpart);
  cr_expect_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "nothing to do"), "%s", r.err);
  th_result_free(&r);
  cr_assert_eq(stat(mpart, &after), 0);
  cr_expect(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime,
            "the finished movie was made again");
}

Test(video_slow, zoom_resumes_into_the_same_frames) {
  char in[256], full[256], part[256], marker[300];
  th_photo("giraffe.jpg", 96, th_tmp(in, sizeof in, "g.png"));
  th_tmp(full, sizeof full, "full_%04d.png");
  th_tmp(part, sizeof part, "part_%04d.png");
#define ZSLOW SQUEEZE, "--iters", "12", "--frames", "6", "--rotate", "3"
  th_result r = TH_RUN("zoom", ZSLOW, in, full);
  expect_ok(&r, "zoom");
  th_result_free(&r);
  th_tmp(marker, sizeof marker, "part_0002.png");
  r = kill_when((const char *const[]){"zoom", ZSLOW, in, part, NULL}, marker, SIGTERM);
  cr_expect_eq(r.status, 143, "status %d: %s", r.status, r.err);
  th_result_free(&r);
  r = TH_RUN("zoom", ZSLOW, "--resume", in, part);
  expect_ok(&r, "zoom --resume");
  th_result_free(&r);
  expect_same_files(full, part, 6);
}

/* --resume goes on only with the options the finished frames were made with: another
 * --iters, --layer or IN is refused, naming the option, and the frames stay as they were;
 * --frames may grow; with --seed random the job's own seed is taken up again. */
Test(video_cli, resume_refuses_a_job_made_otherwise) {
  char in[256], out[256], first[300], other[256];
  th_photo("giraffe.jpg", 64, th_tmp(in, sizeof in, "g.png"));
  th_photo("kite.jpg", 64, th_tmp(other, sizeof other, "k.png"));
  th_tmp(out, sizeof out, "z_%04d.png");
  th_result r = TH_RUN("zoom", SQUEEZE, "--iters", "1", "--octaves", "2", "--frames", "2", in, out);
  expect_ok(&r, "zoom");
  th_result_free(&r);
  th_tmp(first, sizeof first, "z_0001.png");
  size_t n0;
  char *before = th_slurp(first, &n0);
  r = TH_RUN("zoom", SQUEEZE, "--iters", "2", "--octaves", "2", "--frames", "3", "--resume", in,
             out);
  cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
  cr_expect(strstr(r.err, "--iters 1") && strstr(r.err, "--iters 2"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("zoom", SQUEEZE, "-l", "fire3/concat", "--iters", "1", "--octaves", "2", "--frames",
             "3", "--resume", in, out);
  cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
  cr_expect(strstr(r.err, "--layer"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("zoom", SQUEEZE, "--iters", "1", "--octaves", "2", "--frames", "3", "--resume",
             other, out);
  cr_expect_eq(r.status, 1, "status %d: %s", r.status, r.err);
  cr_expect(strstr(r.err, "IN"), "%s", r.err);
  th_result_free(&r);
  char third[300];
  th_tmp(third, sizeof third, "z_0003.png");
  cr_expect_not(file_exists(third), "a refused job wrote a frame");
  size_t n1;
  char *after = th_slurp(first, &n1);
  cr_expect(n0 == n1 && !memcmp(before, after, n0), "a refused job changed a finished frame");
  free(before);
  free(after);
  /* the same job, one frame longer: goes on */
  r = TH_RUN("zoom", SQUEEZE, "--iters", "1", "--octaves", "2", "--frames", "3", "--resume", in,
             out);
  expect_ok(&r, "zoom --resume --frames 3");
  th_result_free(&r);
  cr_expect(file_exists(third));
  /* --seed random: a resumed job keeps the seed its frames were made with */
  char rnd[256], whole[256];
  th_tmp(rnd, sizeof rnd, "r_%04d.png");
  r = TH_RUN("zoom", SQUEEZE, "--seed", "random", "--iters", "1", "--octaves", "2", "--frames",
             "1", in, rnd);
  expect_ok(&r, "zoom --seed random");
  th_result_free(&r);
  char job[300], seed[64] = "";
  th_tmp(job, sizeof job, ".r_%04d.png.dream-job");
  size_t nj;
  char *text = th_slurp(job, &nj);
  const char *s = strstr(text, "\nseed ");
  cr_assert(s, "no seed in %s", text);
  sscanf(s + 6, "%63s", seed);
  free(text);
  r = TH_RUN("zoom", SQUEEZE, "--seed", "random", "--iters", "1", "--octaves", "2", "--frames",
             "2", "--resume", in, rnd);
  expect_ok(&r, "zoom --seed random --resume");
  th_result_free(&r);
  th_tmp(whole, sizeof whole, "w_%04d.png");
  r = TH_RUN("zoom", SQUEEZE, "--seed", seed, "--iters", "1", "--octaves", "2", "--frames", "2",
             in, whole);
  expect_ok(&r, "zoom --seed N");
  th_result_free(&r);
  expect_same_files(whole, rnd, 2);
}

/* Ctrl-C while the finished frames are encoded into a movie: the encode stops, its temporary
 * file goes, no OUT, the sidecar keeps every frame; --resume then encodes them, dreaming none
 * again, and removes the sidecar. */
Test(video_slow, a_signal_during_the_encode_leaves_no_temporary_file) {
  char in[256], out[256], tmp[320], side[300], last[320];
  th_photo("kite.jpg", 640, th_tmp(in, sizeof in, "k.png"));
  th_tmp(out, sizeof out, "z.mp4");
  snprintf(side, sizeof side, "%s.frames", out);
#define ZENC SQUEEZE, "--iters", "1", "--octaves", "1", "--frames", "48"
  pid_t pid = th_spawn((const char *const[]){"zoom", ZENC, in, out, NULL});
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)pid);
  snprintf(last, sizeof last, "%s/000048.bmp", side);
  /* the encode begins once the last frame is saved (before the frames, the job opens and
   * drops OUT's encoder once: that temporary file comes and goes at the start) */
  struct timespec ts = {0, 1000000};
  for (int i = 0; i < 240000 && !file_exists(last); i++) nanosleep(&ts, NULL);
  cr_assert(file_exists(last), "%s never appeared", last);
  for (int i = 0; i < 120000 && !file_exists(tmp); i++) nanosleep(&ts, NULL);
  cr_assert(file_exists(tmp), "%s never appeared", tmp);
  kill(pid, SIGINT);
  th_result r = th_wait(pid);
  cr_expect_eq(r.status, 130, "status %d: %s", r.status, r.err);
  cr_expect(strstr(r.err, "interrupted while encoding"), "%s", r.err);
  th_result_free(&r);
  cr_expect_not(file_exists(tmp), "%s left behind", tmp);
  cr_expect_not(file_exists(out), "%s written", out);
  cr_expect(file_exists(last), "the sidecar lost its frames");
  r = TH_RUN("zoom", ZENC, "--resume", in, out);
  expect_ok(&r, "zoom --resume");
  th_result_free(&r);
  cr_expect(file_exists(out));
  cr_expect_not(file_exists(side), "%s kept after the encode", side);
  int n;
  dd_image **fr = th_read_all(out, &n, NULL);
  cr_expect_eq(n, 48);
  th_free_all(fr, n);
}

/* The job fails with status 1, names `name`, and leaves neither OUT nor its sidecar. */
static void expect_refused(th_result *r, const char *name, const char *out) {
  cr_expect_eq(r->status, 1, "%s: status %d: %s", name, r->status, r->err);
  cr_expect(strstr(r->err, name), "the message does not name %s: %s", name, r->err);
  char side[300];
  snprintf(side, sizeof side, "%s.frames", out);
  cr_expect_not(file_exists(out), "%s written", out);
  cr_expect_not(file_exists(side), "%s made", side);
  th_result_free(r);
}

Test(video_cli, bad_inputs_write_nothing) {
  char p[256], out[256];
  th_tmp(out, sizeof out, "out.mkv");
  /* not a video */
  th_write_bytes(th_tmp(p, sizeof p, "notes.mp4"), "not a movie at all\n", 19);
  th_result r = TH_RUN("video", SQUEEZE, p, out);
  cr_expect(strstr(r.err, "not a video"), "%s", r.err);
  expect_refused(&r, "notes.mp4", out);
  /* truncated */
  char full[256];
  th_pan_clip("kite.jpg", 300, 96, 64, 2, 1, 30, 10, NULL, th_tmp(full, sizeof full, "full.mp4"));
  size_t len;
  char *bytes = th_slurp(full, &len);
  th_write_bytes(th_tmp(p, sizeof p, "cut.mp4"), bytes, len / 2);
  free(bytes);
  r = TH_RUN("video", SQUEEZE, p, out);
  expect_refused(&r, "cut.mp4", out);
  /* no video stream */
  th_write_wav(th_tmp(p, sizeof p, "tone.wav"), 0.5);
  r = TH_RUN("video", SQUEEZE, p, out);
  cr_expect(strstr(r.err, "no video stream"), "%s", r.err);
  expect_refused(&r, "tone.wav", out);
  /* zero frames */
  dd_err err;
  dd_movie_writer *mw = dd_movie_open(th_tmp(p, sizeof p, "empty.mp4"), 96, 64, 10, &err);
  cr_assert_not_null(mw, "%s", err.msg);
  cr_assert_eq(dd_movie_close(mw, &err), 0, "%s", err.msg);
  r = TH_RUN("video", SQUEEZE, p, out);
  /* the mp4 muxer keeps no track without samples: "no video stream" is what the file holds */
  cr_expect(strstr(r.err, "no frames") || strstr(r.err, "no video stream"), "%s", r.err);
  expect_refused(&r, "empty.mp4", out);
  /* over the pixel cap that --max-memory sets */
  r = TH_RUN("video", SQUEEZE, "--max-memory", "64K", full, out);
  cr_expect(strstr(r.err, "96x64"), "%s", r.err);
  expect_refused(&r, "full.mp4", out);
  /* an OUT extension without an encoder */
  char bad[256];
  r = TH_RUN("video", SQUEEZE, full, th_tmp(bad, sizeof bad, "out.avi2"));
  expect_refused(&r, "out.avi2", bad);
  r = TH_RUN("zoom", SQUEEZE, "--frames", "2", full, th_tmp(bad, sizeof bad, "z.avi2"));
  cr_expect_eq(r.status, 1);
  expect_refused(&r, "z.avi2", bad);
  /* zoom: IN must be a still */
  r = TH_RUN("zoom", SQUEEZE, "--frames", "2", full, out);
  expect_refused(&r, "full.mp4", out);
}

Test(video_cli, options_are_checked) {
  th_result r = TH_RUN("zoom", "in.png", "out.mp4");
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "--frames"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("video", "--frames", "3", "in.mp4", "out.mp4");
  cr_expect_eq(r.status, 2);
  cr_expect(strstr(r.err, "zoom"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("video", "--start", "2", "--end", "1", "in.mp4", "out.mp4");
  cr_expect_eq(r.status, 2);
  th_result_free(&r);
  r = TH_RUN("dream", "--blend", "0.5", "in.png", "out.png");
  cr_expect_eq(r.status, 2);
  th_result_free(&r);
  r = TH_RUN("video", "--help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--flow-threshold"), "%s", r.out);
  th_result_free(&r);
}
