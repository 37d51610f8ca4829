/* libFuzzer target: the subcommands that take an image, a movie or a folder and a model, run
 * in-process end to end on real models: BVLC GoogLeNet (../shared or $DREAM_SHARED) and every
 * small model of the ONNX conformance suite (libonnx-testdata), most of which do not take an
 * image at all.
 *
 * Input: byte 0 picks the subcommand, bytes 1-2 the model (0: GoogLeNet), the rest are argv
 * words separated by NUL bytes, where "@in" is a 64x64 photo, "@clip" a 3-frame 32x32 GIF,
 * "@data" a labelled folder of 16x16 shapes (2 classes x 3), and "@out", "@csv", "@json",
 * "@gif" (out.gif), "@pat" (numbered PNGs), "@dir" (a folder) and "@onnx" (out.onnx) are
 * outputs in a scratch directory.  Bounding options are appended after the fuzzed words (the
 * last value of an option wins), so no input asks for hours of work.  Every run must return
 * 0, 1 or 2, and the photo and the clip must never change.  The scratch directory goes when
 * the fuzzer exits (it left one in /tmp per run before). */
#define _DEFAULT_SOURCE /* realpath, mkdtemp */
#define _XOPEN_SOURCE 700 /* nftw's FTW_DEPTH and FTW_PHYS */
#include <ftw.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dream/image.h"
#include "dream/video.h"

#define MAX_WORDS 48

static char dir[] = "/tmp/dream_fuzz_commands_XXXXXX";
static char in_path[128], out_path[128], csv_path[128], json_path[128], clip_path[128],
    data_path[128], gif_path[128], pat_path[128], dir_path[128], onnx_path[128];
static char **models;
static size_t n_models;
static unsigned char *photo, *clip;
static size_t photo_len, clip_len;

static unsigned char *read_whole(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) abort();
  unsigned char *b = malloc(1 << 20);
  if (!b) abort();
  *len = fread(b, 1, 1 << 20, f);
  fclose(f);
  return b;
}

/* The input `path` still holds `want`; else abort naming the command. */
static void check_unchanged(const char *path, const unsigned char *want, size_t len,
                            const char *cmd) {
  FILE *f = fopen(path, "rb");
  unsigned char *now = malloc(len + 1);
  size_t n = f && now ? fread(now, 1, len + 1, f) : 0;
  if (f) fclose(f);
  if (n != len || memcmp(now, want, len)) {
    fprintf(stderr, "fuzz_commands: %s changed its input %s\n", cmd, path);
    abort();
  }
  free(now);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

/* At exit: the scratch directory and everything the commands wrote in it. */
static void remove_scratch(void) {
  if (chdir("/")) return;
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void) {
  if (!mkdtemp(dir)) abort();
  atexit(remove_scratch);
  snprintf(in_path, sizeof in_path, "%s/in.png", dir);
  snprintf(out_path, sizeof out_path, "%s/out.png", dir);
  snprintf(csv_path, sizeof csv_path, "%s/stats.csv", dir);
  snprintf(json_path, sizeof json_path, "%s/out.json", dir);
  /* A 64x64 photo-like gradient with some texture. */
  dd_image *im;
  dd_err err;
  if (dd_image_new(64, 64, &im, &err)) abort();
  for (int i = 0; i < 64 * 64 * 3; i++) im->rgb[i] = (float)((i * 37 + (i / 192) * 11) % 256);
  if (dd_image_save(in_path, im, &err)) abort();
  dd_image_free(im);
  photo = read_whole(in_path, &photo_len);
  /* a 3-frame clip, and a labelled folder made by `dream shapes` */
  snprintf(clip_path, sizeof clip_path, "%s/clip.gif", dir);
  snprintf(data_path, sizeof data_path, "%s/data", dir);
  snprintf(gif_path, sizeof gif_path, "%s/out.gif", dir);
  snprintf(pat_path, sizeof pat_path, "%s/f_%%03d.png", dir);
  snprintf(dir_path, sizeof dir_path, "%s/outdir", dir);
  snprintf(onnx_path, sizeof onnx_path, "%s/out.onnx", dir);
  dd_movie_writer *mw = dd_movie_open(clip_path, 32, 32, 10, &err);
  if (!mw || dd_image_new(32, 32, &im, &err)) abort();
  for (int t = 0; t < 3; t++) {
    for (int i = 0; i < 32 * 32 * 3; i++) im->rgb[i] = (float)((i * 7 + t * 40) % 256);
    if (dd_movie_write(mw, im, &err)) abort();
  }
  dd_image_free(im);
  if (dd_movie_close(mw, &err)) abort();
  clip = read_whole(clip_path, &clip_len);
  char *shapes_argv[] = {"shapes", "-q", "--size", "16", "--count", "3", "--classes",
                         "circle,square", data_path, NULL};
  if (cmd_shapes(9, shapes_argv) != 0) abort();
  /* Model 0 is GoogLeNet; then the conformance suite's models in sorted order. */
  static char googlenet[512];
  const char *shared = getenv("DREAM_SHARED");
  snprintf(googlenet, sizeof googlenet, "%s/models/bvlc_googlenet.onnx", shared ? shared : "../shared");
  glob_t g;
  int rc = glob("/usr/share/libonnx-testdata/data/node/*/model.onnx", 0, NULL, &g);
  n_models = 1 + (rc == 0 ? g.gl_pathc : 0);
  models = calloc(n_models, sizeof *models);
  models[0] = googlenet;
  for (size_t i = 1; i < n_models; i++) models[i] = strdup(g.gl_pathv[i - 1]);
  if (rc == 0) globfree(&g);
  /* Fuzzed words are paths too: relative ones land in the scratch directory, never in the
   * checkout the fuzzer runs from (GoogLeNet's path made absolute first). */
  char *abs = realpath(googlenet, NULL);
  if (abs) {
    snprintf(googlenet, sizeof googlenet, "%s", abs);
    free(abs);
  }
  if (chdir(dir)) abort();
}

typedef struct command {
  const char *name;
  int (*run)(int, char **);
  int reads_image; /* the photo is one of its inputs */
  const char *bounds[12];
} command;

static const command commands[] = {
    {"classify", cmd_classify, 1, {"--size", "64", "--top", "3"}},
    {"explain", cmd_explain, 1, {"--size", "64", "--smoothgrad", "2", "--height", "32"}},
    {"activations", cmd_activations, 1, {"--size", "64", "--zoom", "1"}},
    {"class", cmd_class, 0, {"--size", "64", "--steps", "1"}},
    {"filters", cmd_filters, 0, {"--size", "64", "--steps", "1", "--channels", "0-1"}},
    {"dream", cmd_dream, 1, {"--iters", "1", "--octaves", "1", "--max-side", "64"}},
    {"zoom", cmd_zoom, 1, {"--frames", "2", "--iters", "1", "--octaves", "1"}},
    {"video", cmd_video, 0, {"--iters", "1", "--octaves", "1", "--carried-iters", "1"}},
    {"shapes", cmd_shapes, 0, {"--count", "2", "--size", "16"}},
    {"train", cmd_train, 0, {"--epochs", "1", "--batch", "4"}},
};

static const char *expand(const char *w) {
  if (!strcmp(w, "@in")) return in_path;
  if (!strcmp(w, "@out")) return out_path;
  if (!strcmp(w, "@csv")) return csv_path;
  if (!strcmp(w, "@json")) return json_path;
  if (!strcmp(w, "@clip")) return clip_path;
  if (!strcmp(w, "@data")) return data_path;
  if (!strcmp(w, "@gif")) return gif_path;
  if (!strcmp(w, "@pat")) return pat_path;
  if (!strcmp(w, "@dir")) return dir_path;
  if (!strcmp(w, "@onnx")) return onnx_path;
  return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!models) setup();
  if (size < 3) return 0;
  const command *c = &commands[data[0] % (sizeof commands / sizeof commands[0])];
  const char *model = models[((size_t)data[1] << 8 | data[2]) % n_models];
  char *text = malloc(size - 3 + 1);
  if (!text) return 0;
  memcpy(text, data + 3, size - 3);
  text[size - 3] = 0;
  char *argv[MAX_WORDS + 24];
  int argc = 0;
  argv[argc++] = (char *)c->name;
  if (strcmp(c->name, "shapes") && strcmp(c->name, "train")) { /* they take no --model */
    argv[argc++] = "--model";
    argv[argc++] = (char *)model;
  }
  for (size_t i = 0; i < size - 3 && argc < MAX_WORDS; i += strlen(text + i) + 1)
    if (text[i]) argv[argc++] = (char *)expand(text + i);
  if (strcmp(c->name, "shapes") && strcmp(c->name, "train")) {
    argv[argc++] = "--max-memory";
    argv[argc++] = "512M";
  }
  argv[argc++] = "-q";
  for (int k = 0; c->bounds[k]; k++) argv[argc++] = (char *)c->bounds[k];
  argv[argc] = NULL;
  int status = c->run(argc, argv);
  if (status < 0 || status > 2) {
    fprintf(stderr, "fuzz_commands: %s exited %d\n", c->name, status);
    abort();
  }
  /* Where the photo (or the clip) is an input, whatever the words said, it is unchanged.
   * (Commands that do not read it may have been given "@in" as an output name: it is then
   * restored.) */
  const char *inputs[] = {in_path, clip_path};
  const unsigned char *want[] = {photo, clip};
  size_t lens[] = {photo_len, clip_len};
  int reads[] = {c->reads_image, !strcmp(c->name, "video")};
  for (int k = 0; k < 2; k++) {
    FILE *f = fopen(inputs[k], "rb");
    unsigned char *now = malloc(lens[k] + 1);
    size_t n = f && now ? fread(now, 1, lens[k] + 1, f) : 0;
    if (f) fclose(f);
    int same = n == lens[k] && !memcmp(now, want[k], lens[k]);
    free(now);
    if (same) continue;
    if (reads[k]) check_unchanged(inputs[k], want[k], lens[k], c->name); /* aborts */
    f = fopen(inputs[k], "wb");
    if (!f || fwrite(want[k], 1, lens[k], f) != lens[k] || fclose(f)) abort();
  }
  free(text);
  return 0;
}
