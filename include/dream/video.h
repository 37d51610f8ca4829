/* dream/video.h - movies in and out, frame by frame, through FFmpeg's libraries (libavformat,
 * libavcodec, libswscale, libavutil), and numbered images through the same calls.
 *
 *   dd_movie_reader *r = dd_movie_read_open("in.mp4", 0, &err);
 *   dd_movie_info info;
 *   dd_movie_read_info(r, &info);
 *   dd_movie_writer *w = dd_movie_open("out.mkv", info.w, info.h, info.fps, &err);
 *   dd_image *frame = NULL;
 *   while ((rc = dd_movie_read(r, &frame, &err)) == 1)
 *     if (dd_movie_write(w, frame, &err)) break;
 *   rc < 0 ? dd_movie_abort(w) : dd_movie_close(w, &err);
 *   dd_image_free(frame);
 *   dd_movie_read_close(r);
 *
 * Frames are dd_image (float RGB 0..255, dream/image.h).  Both sides stream: memory holds a
 * few frames whatever the length of the movie.
 *
 * Limitations:
 *  - frames are taken in decoding order, one per decoded picture: a variable frame rate is
 *    read as the stream's average rate (info.fps), no frame is duplicated or dropped;
 *  - the writer encodes video only, 8 bits: H.264 (libx264, yuv420p, or yuv444p for odd
 *    sizes) or MPEG-4 part 2 in .mp4/.mkv/.mov, VP9 or VP8 in .webm, GIF with a palette of
 *    256 colours per frame (median cut, no dithering); audio is only stream-copied from
 *    another file;
 *  - numbered images: PNG or JPEG, written through dd_image_save (each frame atomically).
 */
#ifndef DREAM_VIDEO_H
#define DREAM_VIDEO_H

#include "dream/api.h"

#include <stddef.h>

#include "dream/error.h"
#include "dream/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- reading ---- */

typedef struct dd_movie_reader dd_movie_reader;

typedef struct dd_movie_info {
  int w, h;
  double fps;          /* the stream's average (or nominal) frame rate; 25 when unknown */
  long long frames;    /* frame count the container declares; -1 when unknown */
  int has_audio;       /* the file has an audio stream */
  double duration;     /* seconds; 0 when unknown */
} dd_movie_info;

/* Opens a movie (anything libavformat demuxes with a video stream libavcodec decodes) or a
 * printf pattern of numbered images ("frames/in_%04d.png", first number 0 to 4, as FFmpeg's
 * image2 reads them).  A resolution over max_pixels (0: DD_IMAGE_MAX_PIXELS) is refused
 * before anything is decoded.  Errors, each message naming `path`: DD_EIO (cannot read),
 * DD_EFORMAT ("not a video" with libavformat's reason, "no video stream", a codec without a
 * decoder), DD_ELIMIT, DD_ENOMEM.  NULL on error. */
DD_API dd_movie_reader *dd_movie_read_open(const char *path, size_t max_pixels, dd_err *err);
DD_API void dd_movie_read_info(const dd_movie_reader *r, dd_movie_info *info);
/* Decodes the next frame into *frame: reused when it is an image of the movie's size, else
 * (NULL, or another size) freed and replaced by a new one.  Returns 1 (a frame), 0 (the end)
 * or a negative status: DD_EFORMAT for corrupt data or a file that ends before the frames
 * its container declares ("truncated"), DD_ELIMIT, DD_ENOMEM; the message names the file
 * and the frame. */
DD_API int dd_movie_read(dd_movie_reader *r, dd_image **frame, dd_err *err);
/* Frames returned so far. */
DD_API long long dd_movie_read_count(const dd_movie_reader *r);
/* Accepts NULL. */
DD_API void dd_movie_read_close(dd_movie_reader *r);

/* ---- writing ---- */

typedef struct dd_movie_writer dd_movie_writer;

/* path's extension picks the container: .mp4 .mkv .mov (H.264 via libx264 when present, else
 * mpeg4), .webm (VP9/VP8 when present), .gif (a median-cut palette per frame), or a printf
 * pattern with %d (numbered PNG/JPEG frames, from 1).  A movie is written to a temporary
 * file beside `path` ("path.tmp-PID"), renamed on close.  fps > 0.  Errors: DD_EARG (bad
 * size, fps, pattern), DD_EUNSUPPORTED ("out.webm: no VP9 or VP8 encoder in this libavcodec",
 * an unknown extension), DD_EIO, DD_ENOMEM.  NULL on error. */
DD_API dd_movie_writer *dd_movie_open(const char *path, int w, int h, double fps, dd_err *err);
/* Encodes one frame of the size given to open (pixels rounded and clamped to 0..255). */
DD_API int dd_movie_write(dd_movie_writer *mw, const dd_image *frame, dd_err *err);
/* Flushes the encoder, finalizes the container and renames it into place; frees mw (also on
 * error, when the temporary file is removed).  Numbered images: frees. */
DD_API int dd_movie_close(dd_movie_writer *mw, dd_err *err);
/* Removes the temporary file (numbered images already written stay); frees; accepts NULL. */
DD_API void dd_movie_abort(dd_movie_writer *mw);

/* More ways to open a writer. */
typedef struct dd_movie_opts {
  /* Copy the audio stream of this file (NULL: none; a file without audio: none), packets
   * whose time lies in [audio_start, audio_end) seconds of it (audio_end <= 0: to its end),
   * shifted to start at 0. */
  const char *audio_from;
  double audio_start, audio_end;
  /* Numbered images only: the number of frames already there; the next one written is
   * frame first_number + start_frame.  Movies refuse a start_frame > 0 (DD_EARG). */
  long long start_frame;
  int first_number; /* number of the first numbered image (1) */
  int quality;      /* JPEG quality of numbered images, 1..100 (0: 95) */
} dd_movie_opts;

/* Defaults: no audio, start_frame 0, first_number 1, quality 0. */
DD_API void dd_movie_opts_init(dd_movie_opts *o);
/* dd_movie_open with options (NULL: the defaults).  Audio errors: DD_EIO/DD_EFORMAT naming
 * audio_from, DD_EUNSUPPORTED when the container cannot hold its codec. */
DD_API dd_movie_writer *dd_movie_open_ex(const char *path, int w, int h, double fps,
                                         const dd_movie_opts *opts, dd_err *err);
/* Frames written so far (start_frame included). */
DD_API long long dd_movie_write_count(const dd_movie_writer *mw);

/* 1 when `path` is a printf pattern with one %d (%0Nd) conversion, as the reader and writer
 * take it; 0 otherwise. */
DD_API int dd_movie_is_pattern(const char *path);
/* The file name of frame `number` of a pattern into buf; DD_EARG when it does not fit. */
DD_API int dd_movie_frame_path(const char *pattern, long long number, char *buf, size_t size,
                               dd_err *err);
/* 1 when dd_movie_open can write `path` (container and encoder present); else 0 with the
 * reason in err (DD_EUNSUPPORTED, DD_EARG). */
DD_API int dd_movie_can_write(const char *path, dd_err *err);

/* ---- the pieces of `dream video` and `dream zoom` ----------------------------------------
 *
 * Dense optical flow between two frames (OpenCV's DIS, src/flow.cpp: the one C++ file), the
 * warp that moves a picture along it, the zoom, and the carry of a hallucination to the next
 * frame (src/warp.c).  A loop of dd_dreamer_dream (dream/dream.h) and these makes the frames
 * of the two commands bit for bit (the Python module's dream.video and dream.zoom do). */

typedef struct dd_flow dd_flow;

/* A DIS optical flow for w x h frames (OpenCV's "medium" preset, run on one thread so that
 * the result does not depend on the machine).  DD_ENOMEM, DD_EUNSUPPORTED (OpenCV failed). */
DD_API int dd_flow_new(int w, int h, dd_flow **out, dd_err *err);
DD_API void dd_flow_free(dd_flow *f);
/* Flow from `a` to `b` (both w x h, RGB 0..255, turned grey): flow (w*h*2 floats, (dx, dy)
 * per pixel) such that a(x, y) ~ b(x + dx, y + dy).  To carry a picture P made on b's frame
 * onto a's: dd_flow_warp(P, flow). */
DD_API int dd_flow_compute(dd_flow *f, const dd_image *a, const dd_image *b, float *flow,
                           dd_err *err);
/* dst(x, y) = src(x + dx, y + dy) by bilinear interpolation, borders replicated; src and dst
 * are w x h and distinct. */
DD_API void dd_flow_warp(const dd_image *src, const float *flow, dd_image *dst);
/* dst = src zoomed about its centre by `zoom` (> 1 enlarges) and turned by `degrees`
 * (counter-clockwise), bilinear, borders replicated; src and dst distinct, same size. */
DD_API void dd_zoom_rotate(const dd_image *src, double zoom, double degrees, dd_image *dst);

/* The frame `dream video` dreams: out = clamp(raw + b * H, 0, 255), H the previous frame's
 * hallucination (back - raw_prev: the previous frame as dreamed, less its raw frame) warped
 * along `flow` (from raw to raw_prev, dd_flow_compute(f, raw, raw_prev, ...); NULL: not
 * warped, the plain blend).  b is `blend`, or `blend_static` (when >= 0) where the flow moves
 * less than `flow_threshold` pixels (0: everywhere blend).  All w x h; `scratch` (needed with
 * a flow, else may be NULL) is distinct from the others; out is distinct from scratch and,
 * with a flow, from raw. */
DD_API void dd_video_carry(const dd_image *raw, const dd_image *raw_prev, const dd_image *back,
                           const float *flow, float blend, float blend_static,
                           float flow_threshold, dd_image *scratch, dd_image *out);

#ifdef __cplusplus
}
#endif

#endif
