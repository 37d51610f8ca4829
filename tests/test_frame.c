/* Framing a photo for the network (dream/frame.h): sizes, the part of the photo shown, and
 * exactness where no resampling is needed. */
#include <criterion/criterion.h>
#include <math.h>

#include "dream/frame.h"

static dd_image *pattern(int w, int h) {
  dd_image *im;
  dd_err err;
  cr_assert_eq(dd_image_new(w, h, &im, &err), 0, "%s", err.msg);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) im->rgb[((size_t)y * w + x) * 3 + c] = (float)((x * 7 + y * 3 + c * 50) % 256);
  return im;
}

Test(frame, sizes_and_rectangles) {
  const struct {
    int w, h, fw, fh;
    dd_framing f;
    int ow, oh;
    double rx, ry, rw, rh;
  } cases[] = {
      {768, 576, 224, 224, DD_FRAME_CROP, 224, 224, 96, 0, 576, 576},
      {576, 768, 224, 224, DD_FRAME_CROP, 224, 224, 0, 96, 576, 576},
      {768, 576, 320, 240, DD_FRAME_CROP, 320, 240, 0, 0, 768, 576},
      {1000, 500, 100, 200, DD_FRAME_CROP, 100, 200, 375, 0, 250, 500},
      {768, 576, 224, 224, DD_FRAME_SQUASH, 224, 224, 0, 0, 768, 576},
      {640, 480, 224, 224, DD_FRAME_FIT, 299, 224, 0, 0, 640, 480},
      /* a strip: the shorter side to 224, the longer stops at 4 x 224, the centre is cut */
      {2000, 20, 224, 224, DD_FRAME_FIT, 896, 224, 960, 0, 80, 20},
      {20, 2000, 224, 224, DD_FRAME_FIT, 224, 896, 0, 960, 20, 80},
      {1, 1, 224, 224, DD_FRAME_FIT, 224, 224, 0, 0, 1, 1},
      {4000, 2, 224, 224, DD_FRAME_CROP, 224, 224, 1999, 0, 2, 2},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    dd_image *im = pattern(cases[k].w, cases[k].h), *out;
    dd_frame_rect r;
    dd_err err;
    cr_assert_eq(dd_image_frame(im, cases[k].f, cases[k].fw, cases[k].fh, &out, &r, &err), 0,
                 "%s", err.msg);
    cr_expect(out->w == cases[k].ow && out->h == cases[k].oh, "case %zu: %dx%d", k, out->w,
              out->h);
    cr_expect(r.x == cases[k].rx && r.y == cases[k].ry && r.w == cases[k].rw &&
                  r.h == cases[k].rh,
              "case %zu: rect %g,%g %gx%g", k, r.x, r.y, r.w, r.h);
    dd_image_free(out);
    dd_image_free(im);
  }
}

/* The crop of a photo is its rectangle, resized: dd_image_frame is dd_image_cut then
 * dd_image_resize, bit for bit (explain relies on it to see what classify sees). */
Test(frame, crop_is_cut_then_resize) {
  dd_image *im = pattern(300, 200), *a, *cut, *b;
  dd_frame_rect r;
  dd_err err;
  cr_assert_eq(dd_image_frame(im, DD_FRAME_CROP, 64, 64, &a, &r, &err), 0);
  cr_assert_eq(dd_image_cut(im, (int)r.x, (int)r.y, (int)r.w, (int)r.h, &cut, &err), 0);
  cr_assert_eq(dd_image_resize(cut, 64, 64, &b, &err), 0);
  for (size_t i = 0; i < (size_t)64 * 64 * 3; i++)
    cr_assert_eq(a->rgb[i], b->rgb[i], "pixel value %zu differs", i);
  dd_image_free(a);
  dd_image_free(b);
  dd_image_free(cut);
  dd_image_free(im);
}

/* A photo already of the network's size is used as it is: no resampling blur. */
Test(frame, no_resampling_at_the_same_size) {
  dd_image *im = pattern(224, 224), *out;
  dd_err err;
  for (int f = DD_FRAME_CROP; f <= DD_FRAME_FIT; f++) {
    cr_assert_eq(dd_image_frame(im, (dd_framing)f, 224, 224, &out, NULL, &err), 0);
    cr_assert_eq(out->w, 224);
    for (size_t i = 0; i < (size_t)224 * 224 * 3; i++)
      cr_assert_eq(out->rgb[i], im->rgb[i], "%s: pixel value %zu changed",
                   dd_framing_name((dd_framing)f), i);
    dd_image_free(out);
  }
  dd_image_free(im);
}

Test(frame, bad_arguments) {
  dd_image *im = pattern(10, 10), *out = NULL;
  dd_err err;
  cr_expect_eq(dd_image_frame(im, DD_FRAME_CROP, 0, 10, &out, NULL, &err), DD_EARG);
  cr_expect_eq(dd_image_frame(im, (dd_framing)7, 10, 10, &out, NULL, &err), DD_EARG);
  cr_expect_eq(dd_image_cut(im, 5, 5, 6, 1, &out, &err), DD_EARG);
  cr_expect_eq(dd_image_cut(im, -1, 0, 1, 1, &out, &err), DD_EARG);
  cr_expect_null(out);
  dd_image_free(im);
}
