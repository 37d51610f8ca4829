/* Framing a photo for a network: crop, squash or fit (dream/frame.h). */
#include "dream/frame.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *dd_framing_name(dd_framing framing) {
  switch (framing) {
    case DD_FRAME_CROP: return "crop";
    case DD_FRAME_SQUASH: return "squash";
    case DD_FRAME_FIT: return "fit";
  }
  return "?";
}

int dd_image_cut(const dd_image *im, int x0, int y0, int cw, int ch, dd_image **out,
                 dd_err *err) {
  if (x0 < 0 || y0 < 0 || cw < 1 || ch < 1 || x0 > im->w - cw || y0 > im->h - ch)
    return dd_fail(err, DD_EARG, "rectangle %dx%d at (%d, %d) is not inside the %dx%d image", cw,
                   ch, x0, y0, im->w, im->h);
  dd_image *c;
  int rc = dd_image_new(cw, ch, &c, err);
  if (rc) return rc;
  for (int y = 0; y < ch; y++)
    memcpy(c->rgb + (size_t)y * cw * 3, im->rgb + ((size_t)(y + y0) * im->w + x0) * 3,
           (size_t)cw * 3 * sizeof(float));
  *out = c;
  return DD_OK;
}

int dd_frame_layout(int iw, int ih, dd_framing framing, int w, int h, dd_frame_rect *rect,
                    int *ow, int *oh, dd_err *err) {
  if (iw < 1 || ih < 1) return dd_fail(err, DD_EARG, "framing an empty image");
  if (w < 1 || h < 1) return dd_fail(err, DD_EARG, "framing to %dx%d: sizes must be >= 1", w, h);
  int cw = iw, ch = ih;
  *ow = w;
  *oh = h;
  switch (framing) {
    case DD_FRAME_SQUASH: break;
    case DD_FRAME_CROP: {
      /* The largest centred rectangle of the output's aspect. */
      double a = (double)w / h;
      if ((double)iw / ih > a) cw = (int)fmax(1, lround(ih * a));
      else ch = (int)fmax(1, lround(iw / a));
      break;
    }
    case DD_FRAME_FIT: {
      int s = w < h ? w : h, longer_max = s * DD_FRAME_MAX_ASPECT;
      int wide = iw >= ih;
      int sh = wide ? ih : iw, lo = wide ? iw : ih;
      double ol = (double)lo * s / sh;
      if (ol > longer_max) { /* cut the centre: the longer side keeps at most 4x the shorter */
        lo = (int)fmax(1, lround((double)sh * DD_FRAME_MAX_ASPECT));
        ol = longer_max;
        if (wide) cw = lo;
        else ch = lo;
      }
      int o = (int)fmax(1, lround(ol));
      *ow = wide ? o : s;
      *oh = wide ? s : o;
      break;
    }
    default: return dd_fail(err, DD_EARG, "unknown framing %d", (int)framing);
  }
  *rect = (dd_frame_rect){(iw - cw) / 2, (ih - ch) / 2, cw, ch};
  return DD_OK;
}

int dd_image_frame(const dd_image *im, dd_framing framing, int w, int h, dd_image **out,
                   dd_frame_rect *rect, dd_err *err) {
  if (!im || !im->rgb) return dd_fail(err, DD_EARG, "framing an empty image");
  dd_frame_rect r;
  int ow, oh;
  int rc = dd_frame_layout(im->w, im->h, framing, w, h, &r, &ow, &oh, err);
  if (rc) return rc;
  dd_image *src = NULL;
  if ((int)r.w != im->w || (int)r.h != im->h)
    rc = dd_image_cut(im, (int)r.x, (int)r.y, (int)r.w, (int)r.h, &src, err);
  if (rc) return rc;
  const dd_image *from = src ? src : im;
  if (from->w == ow && from->h == oh) { /* a resample at scale 1 would still filter */
    if (src) {
      *out = src;
      src = NULL;
    } else {
      rc = dd_image_cut(im, 0, 0, ow, oh, out, err);
    }
  } else {
    rc = dd_image_resize(from, ow, oh, out, err);
  }
  dd_image_free(src);
  if (rc) return rc;
  if (rect) *rect = r;
  return DD_OK;
}
