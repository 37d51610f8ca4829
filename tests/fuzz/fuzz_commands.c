/* libFuzzer target: the subcommands that take an image and a model, run in-process end to
 * end on real models: BVLC GoogLeNet (../shared or $DREAM_SHARED) and every small model of
 * the ONNX conformance suite (libonnx-testdata), most of which do not take an image at all.
 *
 * Input: byte 0 picks the subcommand, bytes 1-2 the model (0: GoogLeNet), the rest are argv
 * words separated by NUL bytes, where "@in" is a 64x64 photo and "@out", "@csv", "@json" are
 * outputs in a scratch directory.  Bounding options are appended after the fuzzed words (the
 * last value of an option wins), so no input asks for hours of work.  Every run must return
 * 0, 1 or 2, and the photo must never change. */
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dream/image.h"

#define MAX_WORDS 48

static char dir[] = "/tmp/dream_fuzz_commands_XXXXXX";
static char in_path[128], out_path[128], csv_path[128], json_path[128];
static char **models;
static size_t n_models;
static unsigned char *photo;
static size_t photo_len;

static void setup(void) {
  if (!mkdtemp(dir)) abort();
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
  FILE *f = fopen(in_path, "rb");
  if (!f) abort();
  photo = malloc(1 << 20);
  photo_len = fread(photo, 1, 1 << 20, f);
  fclose(f);
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
};

static const char *expand(const char *w) {
  if (!strcmp(w, "@in")) return in_path;
  if (!strcmp(w, "@out")) return out_path;
  if (!strcmp(w, "@csv")) return csv_path;
  if (!strcmp(w, "@json")) return json_path;
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
  argv[argc++] = "--model";
  argv[argc++] = (char *)model;
  for (size_t i = 0; i < size - 3 && argc < MAX_WORDS; i += strlen(text + i) + 1)
    if (text[i]) argv[argc++] = (char *)expand(text + i);
  argv[argc++] = "--max-memory";
  argv[argc++] = "512M";
  argv[argc++] = "-q";
  for (int k = 0; c->bounds[k]; k++) argv[argc++] = (char *)c->bounds[k];
  argv[argc] = NULL;
  int status = c->run(argc, argv);
  if (status < 0 || status > 2) {
    fprintf(stderr, "fuzz_commands: %s exited %d\n", c->name, status);
    abort();
  }
  /* Where the photo is an input, whatever the words said, it is unchanged.  (filters and
   * class read no image: "@in" is then just an output name, and the photo is restored.) */
  FILE *f = fopen(in_path, "rb");
  unsigned char *now = malloc(photo_len + 1);
  size_t n = f && now ? fread(now, 1, photo_len + 1, f) : 0;
  if (f) fclose(f);
  if (n != photo_len || memcmp(now, photo, photo_len)) {
    if (c->reads_image) {
      fprintf(stderr, "fuzz_commands: %s changed its input\n", c->name);
      abort();
    }
    f = fopen(in_path, "wb");
    if (!f || fwrite(photo, 1, photo_len, f) != photo_len || fclose(f)) abort();
  }
  free(now);
  free(text);
  return 0;
}
