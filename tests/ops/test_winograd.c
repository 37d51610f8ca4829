/* Winograd F(4x4, 3x3) (Conv picks it for 3x3 stride-1 kernels with >= 8 channels in and
 * out) against a naive double-precision reference written from the definition, on shapes
 * that reach every border case: tiles cut by the image edge, rows of 16 tiles inside and
 * outside it, padding larger than 1 and asymmetric, several chunks of tiles, groups of 16
 * tiles that wrap onto the next rows of tiles (one to sixteen of them), channel counts that
 * fill 16 lanes partly.  dd_sgemm's tests are in test_sgemm.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_kernels.h"
#include "helper_ops.h"

typedef struct wcase {
  const char *what;
  int64_t n, c, h, w, m;
  int64_t pt, pl, pb, pr;
  int bias;
} wcase;

static const wcase wcases[] = {
    {"pad 1, fast and border rows of tiles", 2, 8, 37, 70, 9, 1, 1, 1, 1, 1},
    {"no padding, wide", 1, 12, 9, 150, 8, 0, 0, 0, 0, 0},
    {"pads 2 and asymmetric", 1, 8, 21, 23, 16, 2, 1, 0, 2, 1},
    {"image smaller than a tile", 1, 9, 3, 5, 8, 1, 1, 1, 1, 1},
    {"several chunks of tiles", 1, 8, 212, 244, 8, 1, 1, 1, 1, 1},
    {"one tile wide: a group of 16 tiles spans 16 rows of tiles", 1, 8, 70, 3, 8, 1, 1, 1, 1, 1},
    {"rows of exactly 16 tiles", 1, 8, 10, 64, 8, 1, 1, 1, 1, 0},
    {"rows of 17 tiles, the last one column wide", 1, 8, 9, 65, 8, 1, 1, 1, 1, 1},
    {"channels not a multiple of 16, pads only left and bottom", 2, 17, 13, 29, 23, 0, 2, 2, 0, 1},
};

static void naive(const wcase *k, const float *x, const float *w, const float *b, double *y,
                  const float *dy, double *dx) {
  int64_t ho = k->h + k->pt + k->pb - 2, wo = k->w + k->pl + k->pr - 2;
  for (int64_t n = 0; n < k->n; n++)
    for (int64_t m = 0; m < k->m; m++)
      for (int64_t oh = 0; oh < ho; oh++)
        for (int64_t ow = 0; ow < wo; ow++) {
          int64_t yi = ((n * k->m + m) * ho + oh) * wo + ow;
          double acc = b ? b[m] : 0;
          for (int64_t c = 0; c < k->c; c++)
            for (int64_t i = 0; i < 3; i++)
              for (int64_t j = 0; j < 3; j++) {
                int64_t ih = oh - k->pt + i, iw = ow - k->pl + j;
                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
                int64_t xi = ((n * k->c + c) * k->h + ih) * k->w + iw;
                double wv = w[((m * k->c + c) * 3 + i) * 3 + j];
                acc += wv * x[xi];
                if (dx) dx[xi] += wv * dy[yi];
              }
          if (y) y[yi] = acc;
        }
}

static void setup(th_node *t, const wcase *k) {
  th_init(t, "Conv", k->bias ? 3 : 2, 1);
  int64_t pads[4] = {k->pt, k->pl, k->pb, k->pr};
  th_attr_ints(t, "pads", 4, pads);
  dd_err err;
  cr_assert_eq(th_setup(t, &err), 0, "%s", err.msg);
}

static void winograd_conv_matches_naive_reference_on(void);
Test(winograd, conv_matches_naive_reference) {
  th_each_kernels(winograd_conv_matches_naive_reference_on);
}
static void winograd_conv_matches_naive_reference_on(void) {
  for (size_t ci = 0; ci < sizeof wcases / sizeof wcases[0]; ci++) {
    const wcase *k = &wcases[ci];
    th_node t;
    setup(&t, k);
    int64_t xd[4] = {k->n, k->c, k->h, k->w}, wd[4] = {k->m, k->c, 3, 3};
    dd_tensor *in[3] = {th_random(4, xd, 10 + ci, -1, 1), th_random(4, wd, 20 + ci, -1, 1),
                        k->bias ? th_random(1, &k->m, 30 + ci, -1, 1) : NULL};
    dd_tensor *y[1];
    dd_err err;
    cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s: %s", k->what, err.msg);
    int64_t ho = k->h + k->pt + k->pb - 2, wo = k->w + k->pl + k->pr - 2;
    int64_t ny = k->n * k->m * ho * wo, nx = k->n * k->c * k->h * k->w;
    cr_assert_eq(dd_tensor_numel(y[0]), ny, "%s: output size", k->what);
    double *ref = calloc((size_t)ny, sizeof(double)), *dref = calloc((size_t)nx, sizeof(double));
    naive(k, dd_f32(in[0]), dd_f32(in[1]), in[2] ? dd_f32(in[2]) : NULL, ref, NULL, NULL);
    double scale = 1, e = 0;
    for (int64_t i = 0; i < ny; i++) scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < ny; i++) e = fmax(e, fabs(dd_f32(y[0])[i] - ref[i]));
    cr_assert(e <= 1e-5 * scale, "%s: forward differs by %g (scale %g)", k->what, e, scale);

    /* the data gradient accumulates into what is there */
    dd_tensor *dy = th_random(4, y[0]->shape.d, 40 + ci, -1, 1);
    dd_tensor *dx = th_tensor(4, xd);
    for (int64_t i = 0; i < nx; i++) dd_f32(dx)[i] = 0.25f, dref[i] = 0.25;
    naive(k, dd_f32(in[0]), dd_f32(in[1]), NULL, NULL, dd_f32(dy), dref);
    size_t scratch = 0;
    dd_tensor shape, *outs[1] = {&shape};
    cr_assert_eq(t.node.op->infer(&t.node, (const dd_tensor *const *)in, outs, &scratch, &err), 0);
    void *s = malloc(scratch ? scratch : 1);
    dd_tensor *din[3] = {dx, NULL, NULL};
    const dd_tensor *dout[1] = {dy}, *out[1] = {y[0]};
    t.node.op->backward(&t.node, (const dd_tensor *const *)in, out, dout, din, s);
    double dscale = 1, de = 0;
    for (int64_t i = 0; i < nx; i++) dscale = fmax(dscale, fabs(dref[i]));
    for (int64_t i = 0; i < nx; i++) de = fmax(de, fabs(dd_f32(dx)[i] - dref[i]));
    cr_assert(de <= 1e-5 * dscale, "%s: data gradient differs by %g (scale %g)", k->what, de,
              dscale);
    free(s);
    free(ref);
    free(dref);
    for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
    dd_tensor_free(y[0]);
    dd_tensor_free(dy);
    dd_tensor_free(dx);
    free(t.node.params);
  }
}

static void winograd_gradient_matches_finite_differences_on(void);
Test(winograd, gradient_matches_finite_differences) {
  th_each_kernels(winograd_gradient_matches_finite_differences_on);
}
static void winograd_gradient_matches_finite_differences_on(void) {
  const wcase k = {"small", 1, 8, 6, 7, 8, 1, 1, 1, 1, 1};
  th_node t;
  setup(&t, &k);
  int64_t xd[4] = {1, 8, 6, 7}, wd[4] = {8, 8, 3, 3}, m = 8;
  dd_tensor *in[3] = {th_random(4, xd, 5, -1, 1), th_random(4, wd, 6, -1, 1),
                      th_random(1, &m, 7, -1, 1)};
  int skipped = -1;
  double e = th_gradcheck(&t, in, 0, 1e-2f, 9, &skipped);
  cr_assert(e >= 0 && e < 1e-2, "relative error %g", e);
  cr_assert_eq(skipped, 0);
  for (int i = 0; i < 3; i++) dd_tensor_free(in[i]);
  free(t.node.params);
}
