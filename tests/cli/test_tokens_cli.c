/* The command line on fixed-size, token and channels-last models: the tiny ViT-, CLIP- and
 * Swin-like models of tests/ref/tokens_models.py (each takes only 32x32), on photos of other
 * sizes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dream/image.h"
#include "helper_cli.h"
#include "helper_torch.h"

static void setup(void) {
  th_cli_setup();
  th_ref_script("tokens_models.py", "numpy and onnx");
}

TestSuite(tokens_cli, .init = setup, .fini = th_cli_teardown, .timeout = 120);

static const char *model(char *buf, size_t size, const char *name) {
  char file[32];
  snprintf(file, sizeof file, "%s.onnx", name);
  return th_tmp(buf, size, file);
}

/* The line of `out` that starts with `word` and a blank. */
static const char *line_of(const char *out, const char *word, char *buf, size_t size) {
  size_t n = strlen(word);
  buf[0] = 0;
  for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (!strncmp(l, word, n) && l[n] == ' ') {
      const char *e = strchr(l, '\n');
      snprintf(buf, size, "%.*s", (int)(e ? (size_t)(e - l) : strlen(l)), l);
      break;
    }
  return buf;
}

Test(tokens_cli, layers_say_sizes_and_layouts) {
  char m[128], line[512];
  th_result r = TH_RUN("layers", "-m", model(m, sizeof m, "vit"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "input 'image' 1x3x32x32, sizes: only 32x32 from "), "%s", r.out);
  cr_expect(strstr(line_of(r.out, "patches", line, sizeof line), " NCHW 4x4 "), "%s", line);
  cr_expect(strstr(line_of(r.out, "patch_tokens", line, sizeof line), " tokens 4x4 "), "%s", line);
  cr_expect(strstr(line_of(r.out, "block1", line, sizeof line), " tokens 1+4x4 "), "%s", line);
  cr_expect(strstr(line_of(r.out, "cls", line, sizeof line), " vector "), "%s", line);
  th_result_free(&r);
  r = TH_RUN("layers", "-m", model(m, sizeof m, "clip"));
  cr_expect(strstr(line_of(r.out, "seq", line, sizeof line), " seq 1+4x4 "), "%s", r.out);
  th_result_free(&r);
  r = TH_RUN("layers", "-m", model(m, sizeof m, "swin"));
  cr_expect(strstr(line_of(r.out, "grid0", line, sizeof line), " NHWC 8x8 "), "%s", r.out);
  cr_expect(strstr(line_of(r.out, "grid1", line, sizeof line), " NHWC 8x8 "), "%s", r.out);
  cr_expect(strstr(r.out, "sizes: only 32x32 from 'flat' on (the values before it take any "
                          "size from 4x4)"), "%s", r.out);
  th_result_free(&r);
  /* a size the model cannot take: said at once, with the one it takes */
  r = TH_RUN("layers", "-m", model(m, sizeof m, "vit"), "--size", "64");
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "takes only 32x32 inputs (a fixed size): --size 64x64 cannot work"),
            "%s", r.err);
  th_result_free(&r);
}

static void image_size(const char *path, int *w, int *h) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_load(path, 0, &im, &err), 0, "%s", err.msg);
  *w = im->w;
  *h = im->h;
  dd_image_free(im);
}

/* A dream keeps the photo's size, whatever the model's; a photo smaller than the model works
 * too (wrapped around into one tile). */
Test(tokens_cli, dream_any_photo_size) {
  char m[128], in[128], out[128];
  const char *cases[][2] = {{"vit", "block1#3"}, {"clip", "seq#2"}, {"swin", "grid1#7"}};
  const int sides[] = {120, 24};
  for (int c = 0; c < 3; c++)
    for (int s = 0; s < 2; s++) {
      th_photo("dog.jpg", sides[s], th_tmp(in, sizeof in, "dog.png"));
      int w0, h0, w, h;
      image_size(in, &w0, &h0);
      th_result r = TH_RUN("-q", "-m", model(m, sizeof m, cases[c][0]), "-l", cases[c][1],
                           "--iters", "2", in, th_tmp(out, sizeof out, "out.png"));
      cr_assert_eq(r.status, 0, "%s %s at %d: %s", cases[c][0], cases[c][1], sides[s], r.err);
      image_size(out, &w, &h);
      cr_expect(w == w0 && h == h0, "%s: %dx%d from %dx%d", cases[c][0], w, h, w0, h0);
      th_result_free(&r);
    }
  th_result r = TH_RUN("-m", model(m, sizeof m, "vit"), "-l", "block1#12", in, out);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "layer 'block1' has 12 channels; channel 12 is out of range (0..11)"),
            "%s", r.err);
  th_result_free(&r);
}

Test(tokens_cli, classify_resizes_and_refuses_other_sizes) {
  char m[128], in[128];
  th_photo("dog.jpg", 200, th_tmp(in, sizeof in, "dog.png"));
  th_result r = TH_RUN("classify", "-m", model(m, sizeof m, "vit"), in);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "dog.png:\n"), "%s", r.out);
  th_result_free(&r);
  r = TH_RUN("classify", "-m", model(m, sizeof m, "vit"), "--size", "224", in);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "takes only 32x32 inputs"), "%s", r.err);
  th_result_free(&r);
}

Test(tokens_cli, activations_explain_filters) {
  char m[128], in[128], out[128];
  th_photo("dog.jpg", 160, th_tmp(in, sizeof in, "dog.jpg"));
  th_result r = TH_RUN("activations", "-m", model(m, sizeof m, "vit"), "-l", "block1", in,
                       th_tmp(out, sizeof out, "act.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "at 32x32: 12 channels of 4x4, 12 drawn"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("activations", "-m", model(m, sizeof m, "swin"), "-l", "grid1", in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "16 channels of 8x8"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("activations", "-m", model(m, sizeof m, "vit"), "--framing", "fit", in, out);
  cr_expect_eq(r.status, 1);
  cr_expect(strstr(r.err, "--framing fit cannot keep"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("explain", "-m", model(m, sizeof m, "vit"), in, th_tmp(out, sizeof out, "ex.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "Grad-CAM on 'block1' (4x4)"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("explain", "-m", model(m, sizeof m, "swin"), in, out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "Grad-CAM on 'flat' (8x8)"), "%s", r.err);
  th_result_free(&r);
  r = TH_RUN("filters", "--optimize", "-m", model(m, sizeof m, "vit"), "-l", "block1", "-c",
             "0-2", "--steps", "4", th_tmp(out, sizeof out, "fv.png"));
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.err, "3 channels of 'block1'") && strstr(r.err, "at 32x32"), "%s", r.err);
  th_result_free(&r);
}
