/* What `dream zoom` and `dream video` share: where finished frames go, how an interrupted
 * job finds them again, the movie made from them, the progress bar, one frame's dream.
 *
 * Frames are finished one by one and each is written atomically as a numbered image: into
 * OUT itself when OUT is a pattern (out_%04d.png, numbered from 1), else into a sidecar folder
 * "OUT.frames/" of lossless PNGs (%06d.png, from 1), from which OUT (a movie or GIF) is encoded
 * when the job ends -- complete, or stopped by SIGINT/SIGTERM: then OUT holds the frames
 * finished so far and the sidecar stays for --resume.  A complete job removes its sidecar.
 * Whatever a later frame carries from an earlier one is read back from the saved file, in an
 * uninterrupted job too, so a resumed job makes the same frames bit for bit. */
#ifndef DREAM_CLI_MOVIE_H
#define DREAM_CLI_MOVIE_H

#include <limits.h>

#include "cli/cmd_dream.h"
#include "dream/video.h"

typedef struct cli_movie_out {
  const char *out;           /* OUT as given */
  int pattern;               /* OUT is numbered images */
  char frames[PATH_MAX];     /* the pattern finished frames are written to */
  char sidecar[PATH_MAX];    /* the sidecar folder ("" for a pattern OUT) */
  long long done;            /* finished frames there (from --resume) */
  int w, h;
  double fps;
  const char *audio_from;    /* IN, for its audio (NULL: none) */
  double audio_start, audio_end;
  int quality;               /* JPEG quality of pattern frames (0: default) */
} cli_movie_out;

/* Checks that OUT can be written (encoder, folder) before anything is computed.  Prints;
 * 0 or 1. */
int cli_movie_out_check(const char *out);
/* Sets up mo for OUT: with `resume`, counts the frames already finished (consecutive from
 * the first); without, starts afresh (an old sidecar is emptied).  Prints; 0, 1, or 2 when
 * `resume` finds a movie OUT already finished (there is nothing to do). */
int cli_movie_out_begin(cli_movie_out *mo, const char *out, int resume, int quiet);
/* What makes a job's frames, one "key value" line each (`cmd` "video" or "zoom"): IN, the
 * model and its preprocessing, every dream option, the command's own (not --frames, --end or
 * --fps, which a resumed job may change).  With --seed random, a->common.seed as drawn. */
void cli_movie_describe(const cli_dream_args *a, const char *cmd, char *buf, size_t size);
/* Keeps the job's description (cli_movie_describe) beside its frames: a fresh job writes it;
 * a resumed one compares it with the one there and refuses a job made otherwise, naming the
 * first line that differs (with --seed random, the seed of the job there is taken into
 * *seed instead).  Call after cli_movie_out_begin.  Prints; 0 or 1. */
int cli_movie_out_job(cli_movie_out *mo, const cli_dream_args *a, const char *cmd, int resume,
                      cli_seed *seed);
/* Writes frame `index` (0-based) atomically and reads it back into *back (the pixels a later
 * frame carries).  Prints; 0 or 1. */
int cli_movie_out_frame(cli_movie_out *mo, long long index, const dd_image *im, dd_image **back);
/* Reads finished frame `index` into *out.  Prints; 0 or 1. */
int cli_movie_out_load(const cli_movie_out *mo, long long index, dd_image **out);
/* The job ends with `n` frames finished: a movie OUT is encoded from them (nothing when n is
 * 0); `complete` removes the sidecar.  SIGINT or SIGTERM during the encode stop it, remove
 * its temporary file and keep the sidecar.  Prints; 0, 1, or 128 + the signal. */
int cli_movie_out_finish(cli_movie_out *mo, long long n, int complete);
/* The job was interrupted after `n` of `total` frames: encodes OUT from them, says what is
 * where and how to go on.  Returns the exit status: 128 + the signal, or 1 when OUT could not
 * be written. */
int cli_movie_out_interrupted(cli_movie_out *mo, long long n, long long total);

/* The progress of a job: drawn on stderr when it is a terminal and not -q. */
typedef struct cli_movie_progress {
  int shown;
  int drawn;
  long long total;   /* frames of the job (-1: unknown) */
  long long frame;   /* the frame being dreamed (0-based) */
  long long first;   /* the first frame this run dreams (after resumed ones) */
  double start;      /* when this run's first frame began */
} cli_movie_progress;

/* One frame: dd_dreamer_dream on img with `iters` per octave and `seed` (the dreamer, made at
 * the first frame, keeps its plans for the next), the progress bar drawn.
 * Returns 0, 1 (printed) or DD_EINTR (interrupted; nothing printed). */
int cli_movie_dream(cli_dream_job *job, dd_image *img, int iters, uint64_t seed,
                    cli_movie_progress *pr);
/* The job's memory checked once for w x h frames: job->p.max_memory set.  Prints; 0 or 1. */
int cli_movie_budget(cli_dream_job *job, int w, int h);
/* Ends the bar's line. */
void cli_movie_progress_end(cli_movie_progress *pr);

#endif
