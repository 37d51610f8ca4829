/* dream/visualize.h - seeing inside a network.
 *
 *   filters       the kernels of a first convolution as a grid of small colour images
 *   feature vis.  an image optimized from noise to excite one channel of a layer, or one class
 *                 logit (Olah et al. 2017, "Feature Visualization"): the image is a 1/f-scaled
 *                 Fourier spectrum behind a colour-decorrelation matrix and a sigmoid, and each
 *                 step sees it through a random jitter, scale and rotation
 *   activations   the feature maps of a layer for a photo, as heat maps, with statistics
 *   explain       Grad-CAM (Selvaraju et al. 2017) and gradient saliency (Simonyan et al.
 *                 2014, SmoothGrad by Smilkov et al. 2017) for one class of a prediction
 *
 * Images are dd_image (RGB, 0..255 floats).  Nothing here prints; every fallible function
 * returns a dd_status with the reason in `err` and leaves its outputs untouched on failure.
 * Randomness comes only from the seeds given.
 */
#ifndef DREAM_VISUALIZE_H
#define DREAM_VISUALIZE_H

#include "dream/api.h"

#include <stdint.h>

#include "dream/dream.h" /* dd_precision */
#include "dream/error.h"
#include "dream/graph.h"
#include "dream/image.h"
#include "dream/model.h"
#include "dream/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- colour maps and grids ------------------------------------------------------------ */

typedef enum dd_cmap { DD_CMAP_INFERNO, DD_CMAP_VIRIDIS } dd_cmap;

/* Colour of t in [0, 1] (clamped; NaN gives the first entry) as RGB 0..255, interpolated
 * linearly between the 256 entries of the map. */
DD_API void dd_colormap(dd_cmap map, float t, float rgb[3]);

/* Geometry of a grid of equal tiles: tile i is at x = gap + (i % cols) * (tile_w + gap),
 * y = gap + (i / cols) * (tile_h + gap). */
typedef struct dd_grid {
  int n, cols, rows;
  int tile_w, tile_h, gap;
} dd_grid;

/* Lays `n` tiles of the same size out in a near-square grid (cols = ceil(sqrt(n))) on a
 * background of grey level `bg` (0..255), `gap` pixels around and between them.  The tiles
 * are borrowed.  DD_EARG when n < 1 or the tile sizes differ. */
DD_API int dd_vis_grid(const dd_image *const *tiles, int n, int gap, float bg, dd_image **out,
                dd_grid *grid, dd_err *err);

/* ---- finding layers ------------------------------------------------------------------- */

/* The Conv node whose kernels make `value`: its producer when that is a Conv, else the Conv
 * found by walking back through single-data-input nodes (Relu, LRN, BatchNormalization, ...)
 * that directly follow it.  DD_ENOTFOUND, naming the value, when there is none. */
DD_API int dd_vis_find_conv(const dd_model *m, int value, int *node, dd_err *err);

/* The class scores before any softmax: the input of the Softmax that produces the model's
 * first output when there is one (GoogLeNet's Gemm output), else that output itself
 * (SqueezeNet's logits). */
DD_API int dd_vis_logits(const dd_model *m, int *value, dd_err *err);

/* ---- filters -------------------------------------------------------------------------- */

/* The kernels of Conv node `node` (which must have 3 input channels) drawn as a grid: one
 * tile per output channel, its 3 input channels as colours (swapped to RGB when the model
 * reads BGR, `bgr` set), scaled per kernel symmetrically around 0 (0 is mid-grey, the largest
 * |weight| of the kernel is 0 or 255), enlarged `zoom` times by nearest neighbour (zoom <= 0:
 * chosen so a tile is at least 32 pixels).  DD_EUNSUPPORTED for a grouped convolution or
 * one with other than 3 input channels. */
DD_API int dd_vis_filters(const dd_model *m, int node, int bgr, int zoom, int gap, dd_image **out,
                   dd_grid *grid, dd_err *err);

/* ---- feature visualization ------------------------------------------------------------ */

/* What the progress callback sees after each step of dd_fv_run. */
typedef struct dd_fv_progress {
  int channel;      /* the channel being optimized */
  int iter, n_iters; /* 0-based step just completed, of n_iters */
  double objective; /* the channel's objective seen through this step's transform */
} dd_fv_progress;

/* As dd_dream_progress_fn: returns 0 to go on; any other value stops the run, which returns
 * that value (use a dd_status, e.g. DD_EINTR). */
typedef int (*dd_fv_progress_fn)(const dd_fv_progress *info, void *user);

typedef struct dd_fv_opts {
  int size;       /* side of the square image the network sees, px (default 128) */
  int iters;      /* optimization steps (default 256) */
  float lr;       /* Adam step size on the spectrum (default 0.05) */
  int jitter;     /* largest random translation per step, px (default size / 16) */
  float scale;    /* random scale in [1 - scale, 1 + scale] per step (default 0.1) */
  float rotate;   /* random rotation in [-rotate, rotate] degrees per step (default 10) */
  int pixels;     /* 1: the naive baseline, one free logit per pixel (no Fourier spectrum,
                     no colour decorrelation) -- what the Fourier image is there to avoid */
  size_t max_memory; /* memory cap of the gradient plan (0: none) */
  dd_fv_progress_fn progress; /* called after each step (may be NULL) */
  void *user;                 /* passed to progress */
  dd_precision precision; /* of the gradient plan's convolutions (DD_PRECISION_AUTO),
                             resolved by dd_precision_resolve(precision, 1) (dream.h) */
} dd_fv_opts;

/* The defaults above. */
DD_API void dd_fv_opts_init(dd_fv_opts *o);

typedef struct dd_fv dd_fv;

/* Prepares feature visualization of `value` (any value computed from the model's input with
 * dims N x C [x H x W], or tokens or a channels-last grid: dream/layout.h): one gradient plan
 * at size x size, reused by every dd_fv_run.  The objective of channel c is the mean of the
 * value over every position of channel c (on the layout's channel axis) -- for a class
 * logit, the logit.
 * When the value is a Relu's output (or a channel Concat of them), the gradient is seeded on
 * the channel's pre-activation, which a dead-at-start channel still has a gradient for.
 * The model and preprocessing are borrowed and must outlive the context. */
DD_API int dd_fv_new(const dd_model *m, const dd_preproc *pp, int value, const dd_fv_opts *o,
              dd_fv **out, dd_err *err);
DD_API void dd_fv_free(dd_fv *fv);
/* Number of channels of the value (the length of its layout's channel axis). */
DD_API int dd_fv_channels(const dd_fv *fv);

/* Optimizes an image from noise (drawn from `seed`) by gradient ascent on channel
 * `channel`'s objective.  *out is the size x size image (the untransformed view of the
 * parameterization); *objective (may be NULL) its objective, measured on *out as saved
 * (rounded to 8 bits).  DD_EARG for a channel out of range; the progress callback's value
 * when it stopped the run. */
DD_API int dd_fv_run(dd_fv *fv, int channel, uint64_t seed, dd_image **out, float *objective,
              dd_err *err);

/* Class probabilities of `im` at the image's own size: the softmax of the scores
 * (dd_vis_logits).  *prob is a 1-D tensor of the classes. */
DD_API int dd_vis_classify(const dd_model *m, const dd_preproc *pp, const dd_image *im,
                    size_t max_memory, dd_tensor **prob, dd_err *err);

/* ---- activations ---------------------------------------------------------------------- */

/* Runs the model forward on `im` at the image's own size and returns a copy of `value`'s
 * first batch item as a C x H x W tensor (a 2-D value N x C gives C x 1 x 1).  Tokens and
 * channels-last grids (dream/layout.h) give C x grid_h x grid_w: the tokens put back on
 * their grid, the class token left out. */
DD_API int dd_vis_activations(const dd_model *m, const dd_preproc *pp, int value, const dd_image *im,
                       size_t max_memory, dd_tensor **out, dd_err *err);

typedef struct dd_chan_stats {
  float mean, max;
  float zeros; /* fraction of elements exactly 0 (what a ReLU switched off) */
} dd_chan_stats;

/* Statistics of each channel of a C x H x W tensor; `st` has C entries. */
DD_API void dd_vis_channel_stats(const dd_tensor *act, dd_chan_stats *st);

/* Channels c0..c1-1 of a C x H x W tensor as a grid of heat maps: each map scaled from 0 to
 * its own maximum (negative values clamp to 0; an all-zero map is the map's darkest colour),
 * enlarged `zoom` times by nearest neighbour (zoom <= 0: so a tile is at least 24 pixels). */
DD_API int dd_vis_activation_grid(const dd_tensor *act, int c0, int c1, int zoom, int gap,
                           dd_cmap map, dd_image **out, dd_grid *grid, dd_err *err);

/* ---- explanations --------------------------------------------------------------------- */

#define DD_TOPK 5

typedef struct dd_explain_opts {
  int size;       /* the image is resized to size x size for the network (default 224) */
  int cls;        /* class to explain; -1: the top prediction */
  int layer;      /* Grad-CAM value; -1: the last value with a grid of more than one
                     position (a map, tokens, a channels-last grid: dream/layout.h) -- for
                     tokens and grids, the last whose grid receives a gradient from the
                     score (a ViT's last blocks pass the head their class token only) */
  int smoothgrad; /* noisy copies averaged for the saliency map; 0 or 1: plain gradient */
  float noise;    /* SmoothGrad sigma as a fraction of the input's range (default 0.15) */
  uint64_t seed;  /* SmoothGrad noise */
  size_t max_memory;
} dd_explain_opts;

/* The defaults above. */
DD_API void dd_explain_opts_init(dd_explain_opts *o);

typedef struct dd_explanation {
  int n_classes;
  int top[DD_TOPK];       /* class indices, best first */
  float prob[DD_TOPK];    /* their softmax probabilities */
  int cls;                /* the class explained */
  float logit, prob_cls;  /* its score and probability */
  int layer;              /* the Grad-CAM value */
  int cam_w, cam_h;       /* the layer's spatial size */
  int w, h;               /* the image's size; the maps below are w x h, row-major */
  float *cam;             /* Grad-CAM, upsampled bilinearly, >= 0, not normalized */
  float *saliency;        /* max over channels of |d score / d input|, upsampled */
  int cam_x, cam_y;       /* position of the Grad-CAM maximum in the image */
} dd_explanation;

/* Classifies `im` and explains class o->cls (or the top one): Grad-CAM on o->layer and the
 * gradient saliency map, both brought back to the image's size.  DD_EARG for a class out of
 * range or a layer the score does not depend on, DD_ESHAPE for a layer without a grid
 * (neither N x C x H x W nor tokens nor a channels-last grid). */
DD_API int dd_explain(const dd_model *m, const dd_preproc *pp, const dd_image *im,
               const dd_explain_opts *o, dd_explanation **out, dd_err *err);
DD_API void dd_explanation_free(dd_explanation *e);

/* The parts of dd_explain, for a caller with a gradient plan of its own (dd_plan_new with
 * DD_PLAN_GRAD | DD_PLAN_EXACT from the image input to the scores, as dd_explain builds
 * it): run the plan forward on the image, dd_explain_backward, then dd_gradcam and
 * dd_saliency, in that order
 * (SmoothGrad runs the plan again and overwrites every value). */

/* Zeroes the plan's gradients, seeds d scores[cls] = 1 and runs the backward pass.  DD_EARG
 * when `scores` has no gradient in the plan or cls is out of range. */
DD_API int dd_explain_backward(dd_plan *p, int scores, int cls, dd_err *err);
/* Grad-CAM (Selvaraju et al. 2017) on `layer` (N x C x H x W, batch item 0, or tokens or a
 * channels-last grid, dream/layout.h, at the plan's input size) after dd_explain_backward:
 * each channel weighted by its gradient averaged over the grid positions, summed, ReLU; `cam`
 * receives H x W floats (the grid; a class token left out).  DD_EARG when the layer has no
 * gradient in the plan, DD_ESHAPE when it has no grid. */
DD_API int dd_gradcam(dd_plan *p, int layer, float *cam, dd_err *err);
/* The saliency map of the plan's input `input` (1 x 3 x H x W) after dd_explain_backward:
 * `sal` receives H x W floats, the max over channels of |d score / d input|.  With
 * smoothgrad > 1, SmoothGrad (Smilkov et al. 2017): the gradient averaged over that many
 * copies of the input with Gaussian noise of sigma = noise * the input's range, drawn from
 * `seed`; the input is left noisy.  DD_EARG for a bad input or option, DD_ENOMEM. */
DD_API int dd_saliency(dd_plan *p, int input, int scores, int cls, int smoothgrad, float noise,
                       uint64_t seed, float *sal, dd_err *err);

/* Side by side, each `height` pixels high (<= 0: the image's height, within 64..320, and
 * a tall panel at least 64 wide): the image, the Grad-CAM heat map (inferno) blended over it
 * with its maximum marked, and the saliency map (inferno, scaled to its 99.5th percentile).
 * A panel is at most 4 times longer than wide: a more elongated image is drawn as large as
 * fits, centred on white (a 4000x2 image gives 256x64 panels, not 4000x2 ones). */
DD_API int dd_explain_picture(const dd_image *im, const dd_explanation *e, int height, dd_image **out,
                       dd_err *err);

#ifdef __cplusplus
}
#endif

#endif
