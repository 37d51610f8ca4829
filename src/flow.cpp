// Optical flow with OpenCV's DIS (Kroeger et al. 2016), behind src/flow.h's C interface: the
// library's one C++ file.  DIS rather than Farneback: README.md, "Video and zoom".
#include "dream/video.h"

#include <new>

#include <opencv2/core.hpp>
#include <opencv2/video/tracking.hpp>

struct dd_flow {
  int w, h;
  cv::Ptr<cv::DISOpticalFlow> dis;
  cv::Mat ga, gb, fl;
};

static void grey(const dd_image *im, cv::Mat &out) {
  out.create(im->h, im->w, CV_8UC1);
  const float *p = im->rgb;
  for (int y = 0; y < im->h; y++) {
    unsigned char *row = out.ptr<unsigned char>(y);
    for (int x = 0; x < im->w; x++, p += 3) {
      float v = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
      row[x] = v >= 255.f ? 255 : v > 0.f ? (unsigned char)(v + 0.5f) : 0;
    }
  }
}

extern "C" int dd_flow_new(int w, int h, dd_flow **out, dd_err *err) {
  try {
    // DIS splits its work into as many stripes as OpenCV has threads, and the stripes
    // propagate separately: one thread, one answer on every machine.
    cv::setNumThreads(1);
    dd_flow *f = new dd_flow;
    f->w = w;
    f->h = h;
    f->dis = cv::DISOpticalFlow::create(cv::DISOpticalFlow::PRESET_MEDIUM);
    *out = f;
    return DD_OK;
  } catch (const std::bad_alloc &) {
    return dd_fail(err, DD_ENOMEM, "optical flow: out of memory");
  } catch (const cv::Exception &e) {
    return dd_fail(err, DD_EUNSUPPORTED, "optical flow: OpenCV: %s", e.what());
  }
}

extern "C" void dd_flow_free(dd_flow *f) { delete f; }

extern "C" int dd_flow_compute(dd_flow *f, const dd_image *a, const dd_image *b, float *flow,
                               dd_err *err) {
  if (a->w != f->w || a->h != f->h || b->w != f->w || b->h != f->h)
    return dd_fail(err, DD_EARG, "optical flow: frames of %dx%d and %dx%d, expected %dx%d", a->w,
                   a->h, b->w, b->h, f->w, f->h);
  try {
    grey(a, f->ga);
    grey(b, f->gb);
    // A fresh DIS each time: one kept from call to call gives (slightly) different flows for
    // the same frames, so a resumed video would not make the frames of an uninterrupted one.
    f->dis = cv::DISOpticalFlow::create(cv::DISOpticalFlow::PRESET_MEDIUM);
    f->fl.release();
    f->dis->calc(f->ga, f->gb, f->fl);
    for (int y = 0; y < f->h; y++) {
      const float *row = f->fl.ptr<float>(y);
      float *o = flow + (size_t)y * f->w * 2;
      for (int i = 0; i < f->w * 2; i++) o[i] = row[i];
    }
    return DD_OK;
  } catch (const std::bad_alloc &) {
    return dd_fail(err, DD_ENOMEM, "optical flow: out of memory");
  } catch (const cv::Exception &e) {
    return dd_fail(err, DD_EUNSUPPORTED, "optical flow: OpenCV: %s", e.what());
  }
}
