/* dream/layout.h - how a value of a network is read (its layout), and which input sizes a
 * model accepts.
 *
 * Transformers do not keep their values as N x C x H x W maps.  A layout says where a value's
 * channels are and which positions make its spatial grid:
 *
 *   DD_LAYOUT_NCHW    1 x C x H x W (or N x C x H x W): the convolutional map
 *   DD_LAYOUT_VECTOR  N x C, or 1 x C x 1 x 1: no grid
 *   DD_LAYOUT_TOKENS  1 x T x C, T = cls + gh * gw: ViT's tokens (cls = 1: the class token
 *                     first), or tokens without a class token (cls = 0)
 *   DD_LAYOUT_SEQ     T x 1 x C: the same tokens sequence-first, as CLIP's transformer keeps
 *                     them
 *   DD_LAYOUT_NHWC    1 x H x W x C: a channels-last grid (Swin)
 *   DD_LAYOUT_OTHER   anything else: channels on dim 1 when there is one, no grid
 *
 * The rule, from the value's shape at an input of in_w x in_h and the graph:
 *   - a "grid of the input" is gh x gw = in_h / s x in_w / s for one integer stride s >= 1,
 *     exact, or for a power-of-two stride each rounded down or up as a strided Conv's output
 *     is (224 x 224 gives 56 x 56, 16 x 16, 14 x 14, 7 x 7 ...; 18 x 24 gives 4 x 6 or 5 x 6
 *     at stride 4);
 *   - 1 x T x C is tokens when T = 1 + gh * gw (class token) or T = gh * gw for a grid of the
 *     input with gh * gw > 1 (the class-token reading is tried first; both cannot hold at
 *     once for square grids); T x 1 x C likewise is DD_LAYOUT_SEQ;
 *   - 1 x A x B x C is channels-last when A x B is a grid of the input and B x C is not, or
 *     when the value is made by a Transpose with perm (0, 2, 3, 1); otherwise NCHW;
 *   - N x C and N x C x 1 x 1 are vectors.
 * Limits: a channels-last value that is not made by a Transpose and whose channel count
 * happens to give a grid of the input with its width (56 x 56 x 56 at 224) is read as NCHW;
 * a token value stored transposed (1 x C x T) is not recognised (its channels are on dim 1,
 * as DD_LAYOUT_OTHER); a grid that is not a stride of the input (a Swin with padding) is
 * not one.
 *
 * Channel c of a value is every element whose index on the channel axis is c; the class
 * token counts as one more position (it is computed from the image as the others are).
 */
#ifndef DREAM_LAYOUT_H
#define DREAM_LAYOUT_H

#include "dream/api.h"

#include <stdint.h>

#include "dream/error.h"
#include "dream/model.h"
#include "dream/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dd_layout_kind {
  DD_LAYOUT_OTHER,
  DD_LAYOUT_NCHW,
  DD_LAYOUT_VECTOR,
  DD_LAYOUT_TOKENS,
  DD_LAYOUT_SEQ,
  DD_LAYOUT_NHWC
} dd_layout_kind;

typedef struct dd_layout {
  dd_layout_kind kind;
  int channel_axis;   /* the dim holding the channels (-1: the value is a scalar) */
  int64_t channels;   /* its length (1 for a scalar) */
  int64_t outer;      /* product of the dims before the channel axis */
  int64_t inner;      /* product of the dims after it: element (o, c, i) is at
                         (o * channels + c) * inner + i */
  int grid_h, grid_w; /* the spatial grid (0 x 0 when none: vectors, OTHER) */
  int cls;            /* positions before the grid (the class token: 0 or 1) */
} dd_layout;

/* The layout of `value` whose shape is `shape` when the model's input is in_w x in_h (the
 * rule above).  Fills *out and returns its kind; never fails. */
DD_API dd_layout_kind dd_value_layout(const dd_model *m, int value, const dd_shape *shape,
                                      int in_w, int in_h, dd_layout *out);
/* "NCHW", "vector", "tokens", "tokens (seq-first)", "NHWC", "other". */
DD_API const char *dd_layout_name(dd_layout_kind kind);
/* Position p (0 .. grid_h * grid_w - 1, row-major in the grid) of channel c as an element
 * index of the value; the class token is skipped.  Only for layouts with a grid. */
DD_API int64_t dd_layout_index(const dd_layout *l, int64_t c, int64_t p);
/* Copies the grid of a value laid out as `l` into `out`, C x grid_h x grid_w (the class
 * token left out).  DD_ESHAPE when the layout has no grid. */
DD_API int dd_layout_to_chw(const dd_layout *l, const float *data, float *out, dd_err *err);

/* ---- the input sizes a model accepts -------------------------------------------------- */

typedef struct dd_input_sizes {
  int fixed;              /* 1: the only size is native_w x native_h (ViT's position
                             embeddings, Swin's windows, a Gemm on a flattened map) */
  int native_w, native_h; /* fixed: that size; else the declared size when the model
                             declares one that works, else min_w x min_h */
  int min_w, min_h;       /* the smallest size that works (dd_plan_min_input) */
} dd_input_sizes;

/* Which input sizes the model's image input accepts for `targets` (NULL or n_targets < 1:
 * the model's outputs), by shape inference alone.  The smallest size that works is found by
 * dd_plan_min_input; the model is fixed-size when an input twice as large on each side does
 * not work (sizes a little larger may: a stride-16 patch Conv takes 32..47 pixels as it
 * takes 32, and the model is then called fixed at the smallest, or at its declared size when
 * that works).  Errors of dd_plan_min_input. */
DD_API int dd_model_input_sizes(const dd_model *m, const int *targets, int n_targets,
                                dd_input_sizes *out, dd_err *err);

#ifdef __cplusplus
}
#endif

#endif
