/* dream/frame.h - how a photo is framed for a network: the one rule that every
 * classification (classify, explain, class's read-back, audit) shares, so that the same
 * photo gets the same top-5 list everywhere.
 *
 *   dd_image *x;
 *   dd_frame_rect r;
 *   if (dd_image_frame(photo, DD_FRAME_CROP, 224, 224, &x, &r, &err)) ...
 *   // x is 224x224; r says which part of the photo it shows, in the photo's pixels
 *
 * Limitations: resampling is stb_image_resize's (Mitchell down, Catmull-Rom up); values are
 * not clamped (see dd_image_resize).
 */
#ifndef DREAM_FRAME_H
#define DREAM_FRAME_H

#include "dream/api.h"

#include "dream/error.h"
#include "dream/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dd_framing {
  DD_FRAME_CROP,   /* scale to cover W x H, cut out the centre (ImageNet evaluation's framing) */
  DD_FRAME_SQUASH, /* scale the whole photo to W x H, aspect not kept */
  DD_FRAME_FIT     /* shorter side to min(W, H), aspect kept; the longer side at most
                      DD_FRAME_MAX_ASPECT times the shorter (an elongated photo is cut to
                      its centre) */
} dd_framing;

#define DD_FRAME_MAX_ASPECT 4

/* The part of the photo a framed image shows, in the photo's pixel coordinates. */
typedef struct dd_frame_rect {
  double x, y, w, h;
} dd_frame_rect;

/* Frames `im` for a network input of w x h (for DD_FRAME_FIT the output size follows the
 * photo's aspect; see above).  `rect` may be NULL.  DD_EARG for w or h < 1 or an unknown
 * framing; the errors of dd_image_resize.  On failure *out is untouched. */
DD_API int dd_image_frame(const dd_image *im, dd_framing framing, int w, int h, dd_image **out,
                   dd_frame_rect *rect, dd_err *err);
/* The layout alone: which part of an iw x ih photo the framing shows (*rect, whole pixels)
 * and the size of the framed image (*ow x *oh).  dd_image_frame is dd_image_cut of *rect
 * followed by dd_image_resize to *ow x *oh. */
DD_API int dd_frame_layout(int iw, int ih, dd_framing framing, int w, int h, dd_frame_rect *rect,
                    int *ow, int *oh, dd_err *err);
/* The cw x ch rectangle at (x0, y0) of `im` as a new image; DD_EARG when it is not inside. */
DD_API int dd_image_cut(const dd_image *im, int x0, int y0, int cw, int ch, dd_image **out,
                 dd_err *err);
/* "crop", "squash" or "fit". */
DD_API const char *dd_framing_name(dd_framing framing);

#ifdef __cplusplus
}
#endif

#endif
