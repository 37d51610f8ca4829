/* Dense optical flow between two frames (OpenCV's DIS, src/flow.cpp: the one C++ file) and
 * the warp that moves a picture along it (src/warp.c).  Internal to the library. */
#ifndef DREAM_FLOW_H
#define DREAM_FLOW_H

#include "dream/error.h"
#include "dream/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dd_flow dd_flow;

/* A DIS optical flow for w x h frames (OpenCV's "medium" preset, run on one thread so that
 * the result does not depend on the machine).  DD_ENOMEM, DD_EUNSUPPORTED (OpenCV failed). */
int dd_flow_new(int w, int h, dd_flow **out, dd_err *err);
void dd_flow_free(dd_flow *f);
/* Flow from `a` to `b` (both w x h, RGB 0..255, turned grey): flow (w*h*2 floats, (dx, dy)
 * per pixel) such that a(x, y) ~ b(x + dx, y + dy).  To carry a picture P made on b's frame
 * onto a's: dd_warp(P, flow). */
int dd_flow_compute(dd_flow *f, const dd_image *a, const dd_image *b, float *flow, dd_err *err);

/* dst(x, y) = src(x + dx, y + dy) by bilinear interpolation, borders replicated; src and dst
 * are w x h and distinct. */
void dd_warp(const dd_image *src, const float *flow, dd_image *dst);
/* dst = src zoomed about its centre by `zoom` (> 1 enlarges) and turned by `degrees`
 * (counter-clockwise), bilinear, borders replicated; src and dst distinct, same size. */
void dd_zoom_rotate(const dd_image *src, double zoom, double degrees, dd_image *dst);

#ifdef __cplusplus
}
#endif

#endif
