/* Clips for the video tests, made by the tests themselves: a pan over a photo with a known
 * motion, a WAV track with libavformat, and what a movie holds when read back. */
#ifndef DREAM_TEST_HELPER_VIDEO_H
#define DREAM_TEST_HELPER_VIDEO_H

#include "dream/image.h"
#include "dream/video.h"

/* Frame t (0-based) of a pan: the w x h window at (x0 + dx t, y0 + dy t) of ../shared photo
 * `name` resized to `side` pixels on its longer side, so that frame t+1 (x, y) is frame t
 * (x + dx, y + dy).  The caller frees. */
dd_image *th_pan_frame(const dd_image *photo, int w, int h, int x0, int y0, int dx, int dy, int t);
/* The pan's n frames written with dd_movie_open_ex (opts may be NULL) at fps to path. */
void th_pan_clip(const char *photo_name, int side, int w, int h, int dx, int dy, int n,
                 double fps, const dd_movie_opts *opts, const char *path);
/* A mono 16-bit PCM WAV of `seconds` (a 440 Hz tone), written through libavformat. */
void th_write_wav(const char *path, double seconds);
/* Every frame of a movie; *n receives the count; info may be NULL. */
dd_image **th_read_all(const char *path, int *n, dd_movie_info *info);
void th_free_all(dd_image **frames, int n);
/* Duration in seconds of the first audio stream of a file (-1: none), from its packets. */
double th_audio_seconds(const char *path);
/* Pearson correlation of two float arrays. */
double th_corr(const float *a, const float *b, size_t n);

#endif
