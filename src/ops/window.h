/* Sliding-window geometry shared by Conv and the pooling ops: the attributes kernel_shape,
 * strides, pads, dilations, auto_pad and ceil_mode, and their resolution against one input
 * size into per-dimension kernel, stride, dilation, padding and output extent.
 *
 * Geometry is always held for three spatial dimensions (D, H, W); an input with fewer has
 * its leading ones set to extent 1, kernel 1, stride 1, no padding, so kernels can loop over
 * three dimensions without special cases.
 */
#ifndef DREAM_OPS_WINDOW_H
#define DREAM_OPS_WINDOW_H

#include <stdint.h>

#include "ops/common.h"

#define DD_WIN_MAX 3

enum { DD_PAD_NOTSET, DD_PAD_SAME_UPPER, DD_PAD_SAME_LOWER, DD_PAD_VALID };

/* Attributes as written in the node; n_* is -1 when the attribute is absent. */
typedef struct dd_window_attrs {
  int64_t kernel[DD_WIN_MAX], strides[DD_WIN_MAX], dilations[DD_WIN_MAX];
  int64_t pads[2 * DD_WIN_MAX];
  int n_kernel, n_strides, n_dilations, n_pads;
  int auto_pad;
  int ceil_mode;
} dd_window_attrs;

/* Geometry resolved for one input shape, spatial dims right-aligned into [0, DD_WIN_MAX). */
typedef struct dd_window {
  int nsp;                                /* spatial rank of the input, 1..DD_WIN_MAX */
  int64_t in[DD_WIN_MAX], out[DD_WIN_MAX];
  int64_t k[DD_WIN_MAX], s[DD_WIN_MAX], d[DD_WIN_MAX];
  int64_t pb[DD_WIN_MAX], pe[DD_WIN_MAX]; /* padding before and after */
} dd_window;

/* Reads kernel_shape, strides, pads, dilations and auto_pad (and ceil_mode when
 * `with_ceil`), checking types, counts (at most DD_WIN_MAX dims) and ranges. */
int dd_window_parse(const dd_node *node, int with_ceil, dd_window_attrs *a, dd_err *err);

/* Resolves `a` for an input whose `nsp` spatial extents are `in_sp`, with the kernel extents
 * `kernel` (from the weights for Conv, from kernel_shape for pooling).  Checks that every
 * attribute list has nsp (pads 2*nsp) entries and that each output extent is at least 1. */
int dd_window_resolve(const dd_window_attrs *a, int nsp, const int64_t *in_sp,
                      const int64_t *kernel, dd_window *w, dd_err *err);

/* Number of output positions of the window. */
static inline int64_t dd_window_out_numel(const dd_window *w) {
  return w->out[0] * w->out[1] * w->out[2];
}

/* For output position `o` along dim `i`: the taps t in [*t0, *t1) whose input coordinate
 * o*s - pb + t*d lies inside [lo, hi); *t1 <= *t0 when none does. */
static inline void dd_window_taps(const dd_window *w, int i, int64_t o, int64_t lo, int64_t hi,
                                  int64_t *t0, int64_t *t1) {
  int64_t start = o * w->s[i] - w->pb[i], d = w->d[i];
  if (d == 1) { /* the common case, without divisions: this runs once per output */
    *t0 = start >= lo ? 0 : lo - start;
    *t1 = hi - start < w->k[i] ? hi - start : w->k[i];
    return;
  }
  int64_t a = start >= lo ? 0 : (lo - start + d - 1) / d;
  int64_t b = start >= hi ? 0 : (hi - start + d - 1) / d;
  *t0 = a;
  *t1 = b < w->k[i] ? b : w->k[i];
}

#endif
