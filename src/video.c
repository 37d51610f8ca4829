/* Movies through FFmpeg's libraries (dream/video.h).  Reading: libavformat demuxes (image2
 * for numbered images), libavcodec decodes, libswscale converts to RGB24, then floats.
 * Writing: floats -> RGB24 -> the encoder's format (swscale) -> libavcodec -> libavformat,
 * into a temporary file renamed on close.  Audio is stream-copied packet by packet,
 * interleaved with the video as frames are written. */
#include "dream/video.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "util.h"

/* FFmpeg's own log would print over our messages: its errors reach the caller as statuses. */
static void quiet_av(void) {
  if (!getenv("DREAM_AV_LOG")) av_log_set_level(AV_LOG_QUIET);
}

static const char *av_reason(int e, char *buf, size_t size) {
  av_strerror(e, buf, size);
  return buf;
}

/* ---- patterns ---- */

/* Position and length of the one %d / %0Nd conversion, or -1. */
static int pattern_conv(const char *p, size_t *at, size_t *len) {
  int found = 0;
  for (size_t i = 0; p[i]; i++) {
    if (p[i] != '%') continue;
    if (p[i + 1] == '%') {
      i++;
      continue;
    }
    size_t j = i + 1;
    if (p[j] == '0') j++;
    while (p[j] >= '0' && p[j] <= '9') j++;
    if (p[j] != 'd' || j - i > 4 || found) return -1;
    found = 1;
    *at = i;
    *len = j + 1 - i;
    i = j;
  }
  return found ? 0 : -1;
}

int dd_movie_is_pattern(const char *path) {
  size_t at, len;
  return path && pattern_conv(path, &at, &len) == 0;
}

int dd_movie_frame_path(const char *pattern, long long number, char *buf, size_t size,
                        dd_err *err) {
  size_t at, len;
  if (pattern_conv(pattern, &at, &len))
    return dd_fail(err, DD_EARG, "%s: not a pattern with one %%d", pattern);
  char conv[8];
  memcpy(conv, pattern + at, len - 1);
  conv[len - 1] = 0;
  char num[48];
  snprintf(num, sizeof num, "%slld", conv); /* %04 -> %04lld */
  char digits[32];
  snprintf(digits, sizeof digits, num, number);
  /* The text around the conversion, with %% made %. */
  size_t o = 0;
  for (size_t i = 0; pattern[i]; i++) {
    if (i == at) {
      size_t n = strlen(digits);
      if (o + n >= size) goto too_long;
      memcpy(buf + o, digits, n);
      o += n;
      i += len - 1;
      continue;
    }
    if (pattern[i] == '%' && pattern[i + 1] == '%') i++;
    if (o + 1 >= size) goto too_long;
    buf[o++] = pattern[i];
  }
  buf[o] = 0;
  return DD_OK;
too_long:
  return dd_fail(err, DD_EARG, "%s: frame %lld: path too long", pattern, number);
}

static const char *ext_of(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  return dot && (!slash || dot > slash) ? dot : "";
}

/* ---- reading ---- */

struct dd_movie_reader {
  char *path;
  AVFormatContext *ic;
  AVCodecContext *dec;
  int vi;
  AVPacket *pkt;
  AVFrame *fr;
  struct SwsContext *sws;
  uint8_t *rgb; /* w*h*3 */
  int flushing, ended;
  long long n;
  size_t max_pixels;
  dd_movie_info info;
};

void dd_movie_read_close(dd_movie_reader *r) {
  if (!r) return;
  sws_freeContext(r->sws);
  av_frame_free(&r->fr);
  av_packet_free(&r->pkt);
  avcodec_free_context(&r->dec);
  avformat_close_input(&r->ic);
  free(r->rgb);
  free(r->path);
  free(r);
}

dd_movie_reader *dd_movie_read_open(const char *path, size_t max_pixels, dd_err *err) {
  quiet_av();
  char why[256];
  if (!max_pixels) max_pixels = DD_IMAGE_MAX_PIXELS;
  dd_movie_reader *r = calloc(1, sizeof *r);
  if (!r || !(r->path = strdup(path))) {
    free(r);
    dd_fail(err, DD_ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  r->max_pixels = max_pixels;
  if (!dd_movie_is_pattern(path) && access(path, R_OK)) {
    dd_fail(err, DD_EIO, "%s: %s", path, strerror(errno));
    goto fail;
  }
  int e = avformat_open_input(&r->ic, path, NULL, NULL);
  if (e < 0) {
    if (e == AVERROR(ENOENT) || e == AVERROR(EACCES))
      dd_fail(err, DD_EIO, "%s: %s", path, av_reason(e, why, sizeof why));
    else
      dd_fail(err, DD_EFORMAT, "%s: not a video, or truncated (libavformat: %s)", path,
              av_reason(e, why, sizeof why));
    goto fail;
  }
  if ((e = avformat_find_stream_info(r->ic, NULL)) < 0) {
    dd_fail(err, DD_EFORMAT, "%s: not a video, or truncated (libavformat: %s)", path,
            av_reason(e, why, sizeof why));
    goto fail;
  }
  const AVCodec *codec = NULL;
  r->vi = av_find_best_stream(r->ic, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (r->vi == AVERROR_STREAM_NOT_FOUND) {
    dd_fail(err, DD_EFORMAT, "%s: no video stream", path);
    goto fail;
  }
  if (r->vi < 0 || !codec) {
    dd_fail(err, DD_EFORMAT, "%s: no decoder for its video stream in this libavcodec", path);
    goto fail;
  }
  AVStream *st = r->ic->streams[r->vi];
  AVCodecParameters *par = st->codecpar;
  if (par->width < 1 || par->height < 1) {
    dd_fail(err, DD_EFORMAT, "%s: the video stream has no size", path);
    goto fail;
  }
  if ((size_t)par->width * (size_t)par->height > max_pixels) {
    dd_fail(err, DD_ELIMIT, "%s: %dx%d frames are over the limit of %zu pixels", path,
            par->width, par->height, max_pixels);
    goto fail;
  }
  r->info.w = par->width;
  r->info.h = par->height;
  AVRational fr = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  r->info.fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 25;
  if (st->duration > 0 && st->time_base.den > 0)
    r->info.duration = st->duration * av_q2d(st->time_base);
  else if (r->ic->duration > 0)
    r->info.duration = r->ic->duration / (double)AV_TIME_BASE;
  if (st->nb_frames > 0)
    r->info.frames = st->nb_frames;
  else if (r->info.duration > 0)
    r->info.frames = llround(r->info.duration * r->info.fps);
  else
    r->info.frames = -1;
  r->info.has_audio = av_find_best_stream(r->ic, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0) >= 0;
  if (!(r->dec = avcodec_alloc_context3(codec)) || avcodec_parameters_to_context(r->dec, par) < 0 ||
      !(r->pkt = av_packet_alloc()) || !(r->fr = av_frame_alloc()) ||
      !(r->rgb = malloc((size_t)par->width * par->height * 3))) {
    dd_fail(err, DD_ENOMEM, "%s: out of memory", path);
    goto fail;
  }
  r->dec->thread_count = 1; /* frames in order, memory bounded; the dream is the cost */
  if ((e = avcodec_open2(r->dec, codec, NULL)) < 0) {
    dd_fail(err, DD_EFORMAT, "%s: cannot open the %s decoder (%s)", path, codec->name,
            av_reason(e, why, sizeof why));
    goto fail;
  }
  return r;
fail:
  dd_movie_read_close(r);
  return NULL;
}

void dd_movie_read_info(const dd_movie_reader *r, dd_movie_info *info) { *info = r->info; }

long long dd_movie_read_count(const dd_movie_reader *r) { return r->n; }

/* The decoded frame r->fr into *frame. */
static int convert_frame(dd_movie_reader *r, dd_image **frame, dd_err *err) {
  AVFrame *f = r->fr;
  if (f->width != r->info.w || f->height != r->info.h)
    return dd_fail(err, DD_EFORMAT, "%s: frame %lld is %dx%d, the stream's size is %dx%d",
                   r->path, r->n, f->width, f->height, r->info.w, r->info.h);
  int w = r->info.w, h = r->info.h;
  r->sws = sws_getCachedContext(r->sws, w, h, f->format, w, h, AV_PIX_FMT_RGB24,
                                SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL,
                                NULL, NULL);
  if (!r->sws)
    return dd_fail(err, DD_EFORMAT, "%s: frame %lld: pixel format %s cannot be converted",
                   r->path, r->n, av_get_pix_fmt_name(f->format));
  uint8_t *dst[4] = {r->rgb, NULL, NULL, NULL};
  int stride[4] = {w * 3, 0, 0, 0};
  sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, stride);
  if (!*frame || (*frame)->w != w || (*frame)->h != h) {
    dd_image *im;
    int rc = dd_image_new(w, h, &im, err);
    if (rc) return rc;
    dd_image_free(*frame);
    *frame = im;
  }
  float *o = (*frame)->rgb;
  size_t n = (size_t)w * h * 3;
  for (size_t i = 0; i < n; i++) o[i] = r->rgb[i];
  return DD_OK;
}

int dd_movie_read(dd_movie_reader *r, dd_image **frame, dd_err *err) {
  char why[256];
  if (r->ended) return 0;
  for (;;) {
    int e = avcodec_receive_frame(r->dec, r->fr);
    if (e == 0) {
      int rc = convert_frame(r, frame, err);
      av_frame_unref(r->fr);
      if (rc) return rc;
      r->n++;
      return 1;
    }
    if (e == AVERROR_EOF) {
      r->ended = 1;
      /* A container that declares its frames (or its duration) and ends well before: the
       * file was cut. */
      if (r->info.frames > 0 && r->n < r->info.frames * 9 / 10 - 1)
        return dd_fail(err, DD_EFORMAT, "%s: truncated: %lld frames decoded of the %lld its "
                       "container declares", r->path, r->n, r->info.frames);
      return 0;
    }
    if (e != AVERROR(EAGAIN))
      return dd_fail(err, DD_EFORMAT, "%s: frame %lld: corrupt data (%s)", r->path, r->n,
                     av_reason(e, why, sizeof why));
    if (r->flushing) { /* EAGAIN after the flush packet: should not happen */
      r->ended = 1;
      return 0;
    }
    e = av_read_frame(r->ic, r->pkt);
    if (e == AVERROR_EOF) {
      r->flushing = 1;
      avcodec_send_packet(r->dec, NULL);
      continue;
    }
    if (e < 0)
      return dd_fail(err, DD_EFORMAT, "%s: after frame %lld: truncated or corrupt (%s)", r->path,
                     r->n, av_reason(e, why, sizeof why));
    if (r->pkt->stream_index == r->vi) {
      e = avcodec_send_packet(r->dec, r->pkt);
      av_packet_unref(r->pkt);
      if (e < 0 && e != AVERROR(EAGAIN))
        return dd_fail(err, DD_EFORMAT, "%s: frame %lld: corrupt data (%s)", r->path, r->n,
                       av_reason(e, why, sizeof why));
    } else {
      av_packet_unref(r->pkt);
    }
  }
}

/* ---- writing ---- */

struct dd_movie_writer {
  char *path, *tmp;
  int w, h;
  double fps;
  long long n; /* frames written, start_frame included */
  /* numbered images */
  int pattern;
  int first_number;
  dd_image_save_opts save;
  /* movies */
  AVFormatContext *oc;
  AVCodecContext *enc;
  AVStream *vs;
  AVFrame *frame;
  AVPacket *pkt;
  struct SwsContext *sws;
  uint8_t *rgb; /* w*h*3 */
  int header;
  /* audio copy */
  AVFormatContext *ac;
  int ai;
  AVStream *as;
  AVPacket *apkt;
  int apkt_held; /* apkt holds the next packet, read but not yet written */
  int a_ended;
  int64_t a_start, a_end; /* in the input stream's time base; a_end < 0: none */
};

void dd_movie_opts_init(dd_movie_opts *o) {
  memset(o, 0, sizeof *o);
  o->first_number = 1;
}

static void writer_free(dd_movie_writer *mw) {
  if (!mw) return;
  sws_freeContext(mw->sws);
  av_frame_free(&mw->frame);
  av_packet_free(&mw->pkt);
  av_packet_free(&mw->apkt);
  avcodec_free_context(&mw->enc);
  if (mw->oc) {
    if (mw->oc->pb) avio_closep(&mw->oc->pb);
    avformat_free_context(mw->oc);
  }
  avformat_close_input(&mw->ac);
  free(mw->rgb);
  free(mw->path);
  free(mw->tmp);
  free(mw);
}

void dd_movie_abort(dd_movie_writer *mw) {
  if (!mw) return;
  if (mw->oc && mw->oc->pb) avio_closep(&mw->oc->pb);
  if (mw->tmp) unlink(mw->tmp);
  writer_free(mw);
}

/* The encoder for a container: H.264 (libx264) else MPEG-4 for mp4/mkv/mov, VP9 else VP8
 * for webm, GIF for gif. */
static const AVCodec *pick_encoder(const char *path, const char **what, dd_err *err) {
  const char *ext = ext_of(path);
  const AVCodec *c = NULL;
  if (!strcasecmp(ext, ".mp4") || !strcasecmp(ext, ".mkv") || !strcasecmp(ext, ".mov")) {
    *what = "H.264 (libx264) or MPEG-4";
    if (!(c = avcodec_find_encoder_by_name("libx264"))) c = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
  } else if (!strcasecmp(ext, ".webm")) {
    *what = "VP9 or VP8";
    if (!(c = avcodec_find_encoder_by_name("libvpx-vp9")))
      c = avcodec_find_encoder_by_name("libvpx");
  } else if (!strcasecmp(ext, ".gif")) {
    *what = "GIF";
    c = avcodec_find_encoder(AV_CODEC_ID_GIF);
  } else {
    dd_fail(err, DD_EUNSUPPORTED, "%s: unknown movie extension '%s'; expected .mp4, .mkv, "
            ".mov, .webm, .gif, or a numbered-image pattern such as out_%%04d.png", path, ext);
    return NULL;
  }
  if (!c)
    dd_fail(err, DD_EUNSUPPORTED, "%s: no %s encoder in this libavcodec", path, *what);
  return c;
}

int dd_movie_can_write(const char *path, dd_err *err) {
  quiet_av();
  if (dd_movie_is_pattern(path)) {
    const char *ext = ext_of(path);
    if (strcasecmp(ext, ".png") && strcasecmp(ext, ".jpg") && strcasecmp(ext, ".jpeg")) {
      dd_fail(err, DD_EUNSUPPORTED, "%s: numbered images are written as .png, .jpg or .jpeg",
              path);
      return 0;
    }
    return 1;
  }
  const char *what;
  if (!pick_encoder(path, &what, err)) return 0;
  if (!av_guess_format(NULL, path, NULL)) {
    dd_fail(err, DD_EUNSUPPORTED, "%s: no muxer for this extension in this libavformat", path);
    return 0;
  }
  return 1;
}

/* Opens the audio input and adds its stream to the output. */
static int open_audio(dd_movie_writer *mw, const dd_movie_opts *o, dd_err *err) {
  char why[256];
  int e = avformat_open_input(&mw->ac, o->audio_from, NULL, NULL);
  if (e < 0 || (e = avformat_find_stream_info(mw->ac, NULL)) < 0)
    return dd_fail(err, DD_EFORMAT, "%s: cannot read its audio (libavformat: %s)", o->audio_from,
                   av_reason(e, why, sizeof why));
  mw->ai = av_find_best_stream(mw->ac, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
  if (mw->ai < 0) { /* no audio: nothing to copy */
    avformat_close_input(&mw->ac);
    return DD_OK;
  }
  AVStream *in = mw->ac->streams[mw->ai];
  if (avformat_query_codec(mw->oc->oformat, in->codecpar->codec_id, FF_COMPLIANCE_NORMAL) != 1)
    return dd_fail(err, DD_EUNSUPPORTED, "%s: its %s audio cannot be stream-copied into %s",
                   o->audio_from, avcodec_get_name(in->codecpar->codec_id), mw->path);
  if (!(mw->as = avformat_new_stream(mw->oc, NULL)) ||
      avcodec_parameters_copy(mw->as->codecpar, in->codecpar) < 0 ||
      !(mw->apkt = av_packet_alloc()))
    return dd_fail(err, DD_ENOMEM, "%s: out of memory", mw->path);
  mw->as->codecpar->codec_tag = 0;
  mw->as->time_base = in->time_base;
  int64_t st0 = in->start_time != AV_NOPTS_VALUE ? in->start_time : 0;
  mw->a_start = st0 + av_rescale_q((int64_t)llround(o->audio_start * 1e6), AV_TIME_BASE_Q,
                                   in->time_base);
  mw->a_end = o->audio_end > 0 ? st0 + av_rescale_q((int64_t)llround(o->audio_end * 1e6),
                                                    AV_TIME_BASE_Q, in->time_base)
                               : -1;
  if (o->audio_start > 0)
    av_seek_frame(mw->ac, mw->ai, mw->a_start, AVSEEK_FLAG_BACKWARD);
  return DD_OK;
}

/* Writes the audio packets that start before `until` seconds of the output (< 0: all). */
static int copy_audio(dd_movie_writer *mw, double until, dd_err *err) {
  char why[256];
  if (!mw->ac || mw->a_ended) return DD_OK;
  AVStream *in = mw->ac->streams[mw->ai];
  for (;;) {
    if (!mw->apkt_held) {
      int e = av_read_frame(mw->ac, mw->apkt);
      if (e < 0) {
        mw->a_ended = 1;
        return DD_OK;
      }
      if (mw->apkt->stream_index != mw->ai) {
        av_packet_unref(mw->apkt);
        continue;
      }
      int64_t ts = mw->apkt->pts != AV_NOPTS_VALUE ? mw->apkt->pts : mw->apkt->dts;
      if (ts == AV_NOPTS_VALUE || ts < mw->a_start) {
        av_packet_unref(mw->apkt);
        continue;
      }
      if (mw->a_end >= 0 && ts >= mw->a_end) {
        av_packet_unref(mw->apkt);
        mw->a_ended = 1;
        return DD_OK;
      }
      mw->apkt_held = 1;
    }
    int64_t ts = mw->apkt->pts != AV_NOPTS_VALUE ? mw->apkt->pts : mw->apkt->dts;
    double t = (ts - mw->a_start) * av_q2d(in->time_base);
    if (until >= 0 && t >= until) return DD_OK;
    if (mw->apkt->pts != AV_NOPTS_VALUE) mw->apkt->pts -= mw->a_start;
    if (mw->apkt->dts != AV_NOPTS_VALUE) mw->apkt->dts -= mw->a_start;
    av_packet_rescale_ts(mw->apkt, in->time_base, mw->as->time_base);
    mw->apkt->stream_index = mw->as->index;
    mw->apkt->pos = -1;
    int e = av_interleaved_write_frame(mw->oc, mw->apkt);
    mw->apkt_held = 0;
    av_packet_unref(mw->apkt);
    if (e < 0)
      return dd_fail(err, DD_EIO, "%s: cannot write audio (%s)", mw->path,
                     av_reason(e, why, sizeof why));
  }
}

static dd_movie_writer *open_movie(dd_movie_writer *mw, const dd_movie_opts *o, dd_err *err) {
  char why[256];
  const char *what;
  const AVCodec *codec = pick_encoder(mw->path, &what, err);
  if (!codec) goto fail;
  const char *ext = ext_of(mw->path);
  int gif = !strcasecmp(ext, ".gif");
  /* The muxer is chosen by the final name; bytes go to the temporary one. */
  int e = avformat_alloc_output_context2(&mw->oc, NULL, NULL, mw->path);
  if (e < 0 || !mw->oc) {
    dd_fail(err, DD_EUNSUPPORTED, "%s: no muxer for this extension in this libavformat",
            mw->path);
    goto fail;
  }
  size_t n = strlen(mw->path) + 32;
  if (!(mw->tmp = malloc(n))) goto nomem;
  snprintf(mw->tmp, n, "%s.tmp-%ld", mw->path, (long)getpid());
  if (!(mw->vs = avformat_new_stream(mw->oc, NULL)) || !(mw->enc = avcodec_alloc_context3(codec)))
    goto nomem;
  AVCodecContext *c = mw->enc;
  c->width = mw->w;
  c->height = mw->h;
  AVRational rate = av_d2q(mw->fps, 1000000);
  c->time_base = av_inv_q(rate);
  c->framerate = rate;
  c->sample_aspect_ratio = (AVRational){1, 1};
  if (gif) {
    c->pix_fmt = AV_PIX_FMT_RGB8;
  } else if (codec->id == AV_CODEC_ID_H264) {
    /* 4:2:0 needs even sides; an odd size keeps every pixel in 4:4:4 */
    c->pix_fmt = (mw->w % 2 || mw->h % 2) ? AV_PIX_FMT_YUV444P : AV_PIX_FMT_YUV420P;
    av_opt_set(c->priv_data, "preset", "veryfast", 0);
    av_opt_set(c->priv_data, "crf", "18", 0);
  } else if (codec->id == AV_CODEC_ID_MPEG4) {
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * 3;
  } else { /* VP9 / VP8 */
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->bit_rate = 0;
    av_opt_set(c->priv_data, "crf", "24", 0);
    av_opt_set(c->priv_data, "deadline", "realtime", 0);
    av_opt_set(c->priv_data, "cpu-used", "8", 0);
    if (codec->id == AV_CODEC_ID_VP8) c->bit_rate = 4000000;
  }
  c->gop_size = 48;
  if (mw->oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if ((e = avcodec_open2(c, codec, NULL)) < 0) {
    dd_fail(err, DD_EUNSUPPORTED, "%s: the %s encoder refuses %dx%d at %g fps (%s)", mw->path,
            codec->name, mw->w, mw->h, mw->fps, av_reason(e, why, sizeof why));
    goto fail;
  }
  if (avcodec_parameters_from_context(mw->vs->codecpar, c) < 0) goto nomem;
  mw->vs->time_base = c->time_base;
  mw->vs->avg_frame_rate = rate;
  mw->vs->r_frame_rate = rate;
  if (o->audio_from && open_audio(mw, o, err)) goto fail;
  if (!(mw->frame = av_frame_alloc()) || !(mw->pkt = av_packet_alloc()) ||
      !(mw->rgb = malloc((size_t)mw->w * mw->h * 3)))
    goto nomem;
  mw->frame->format = c->pix_fmt;
  mw->frame->width = mw->w;
  mw->frame->height = mw->h;
  if (av_frame_get_buffer(mw->frame, 0) < 0) goto nomem;
  mw->sws = sws_getContext(mw->w, mw->h, AV_PIX_FMT_RGB24, mw->w, mw->h, c->pix_fmt,
                           SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP | SWS_FULL_CHR_H_INT |
                           (gif ? SWS_ERROR_DIFFUSION : 0), NULL, NULL, NULL);
  if (!mw->sws) {
    dd_fail(err, DD_EUNSUPPORTED, "%s: swscale cannot make %s", mw->path,
            av_get_pix_fmt_name(c->pix_fmt));
    goto fail;
  }
  if ((e = avio_open(&mw->oc->pb, mw->tmp, AVIO_FLAG_WRITE)) < 0) {
    dd_fail(err, DD_EIO, "%s: cannot write (%s)", mw->tmp, av_reason(e, why, sizeof why));
    goto fail;
  }
  if ((e = avformat_write_header(mw->oc, NULL)) < 0) {
    dd_fail(err, DD_EUNSUPPORTED, "%s: the muxer refuses its streams (%s)", mw->path,
            av_reason(e, why, sizeof why));
    goto fail;
  }
  mw->header = 1;
  return mw;
nomem:
  dd_fail(err, DD_ENOMEM, "%s: out of memory", mw->path);
fail:
  dd_movie_abort(mw);
  return NULL;
}

dd_movie_writer *dd_movie_open_ex(const char *path, int w, int h, double fps,
                                  const dd_movie_opts *opts, dd_err *err) {
  quiet_av();
  dd_movie_opts def;
  if (!opts) {
    dd_movie_opts_init(&def);
    opts = &def;
  }
  if (w < 1 || h < 1 || (size_t)w * (size_t)h > DD_IMAGE_MAX_PIXELS) {
    dd_fail(err, DD_EARG, "%s: bad frame size %dx%d", path, w, h);
    return NULL;
  }
  if (!(fps > 0 && fps <= 1000)) {
    dd_fail(err, DD_EARG, "%s: frame rate %g outside (0, 1000]", path, fps);
    return NULL;
  }
  if (opts->start_frame < 0 || opts->quality < 0 || opts->quality > 100) {
    dd_fail(err, DD_EARG, "%s: bad options (start_frame %lld, quality %d)", path,
            opts->start_frame, opts->quality);
    return NULL;
  }
  if (!dd_movie_can_write(path, err)) return NULL;
  dd_movie_writer *mw = calloc(1, sizeof *mw);
  if (!mw || !(mw->path = strdup(path))) {
    free(mw);
    dd_fail(err, DD_ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  mw->w = w;
  mw->h = h;
  mw->fps = fps;
  mw->first_number = opts->first_number;
  dd_image_save_opts_init(&mw->save);
  mw->save.quality = opts->quality;
  mw->save.keep_meta = 0;
  if (dd_movie_is_pattern(path)) {
    mw->pattern = 1;
    mw->n = opts->start_frame;
    return mw;
  }
  if (opts->start_frame > 0) {
    dd_fail(err, DD_EARG, "%s: a movie cannot be appended to (start_frame %lld)", path,
            opts->start_frame);
    writer_free(mw);
    return NULL;
  }
  return open_movie(mw, opts, err);
}

dd_movie_writer *dd_movie_open(const char *path, int w, int h, double fps, dd_err *err) {
  return dd_movie_open_ex(path, w, h, fps, NULL, err);
}

long long dd_movie_write_count(const dd_movie_writer *mw) { return mw->n; }

/* Sends `f` (NULL: flush) and writes what comes out. */
static int encode(dd_movie_writer *mw, AVFrame *f, dd_err *err) {
  char why[256];
  int e = avcodec_send_frame(mw->enc, f);
  if (e < 0)
    return dd_fail(err, DD_EIO, "%s: encoder: %s", mw->path, av_reason(e, why, sizeof why));
  for (;;) {
    e = avcodec_receive_packet(mw->enc, mw->pkt);
    if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) return DD_OK;
    if (e < 0)
      return dd_fail(err, DD_EIO, "%s: encoder: %s", mw->path, av_reason(e, why, sizeof why));
    av_packet_rescale_ts(mw->pkt, mw->enc->time_base, mw->vs->time_base);
    mw->pkt->stream_index = mw->vs->index;
    e = av_interleaved_write_frame(mw->oc, mw->pkt);
    av_packet_unref(mw->pkt);
    if (e < 0)
      return dd_fail(err, DD_EIO, "%s: cannot write (%s)", mw->tmp, av_reason(e, why, sizeof why));
  }
}

int dd_movie_write(dd_movie_writer *mw, const dd_image *im, dd_err *err) {
  if (!im || im->w != mw->w || im->h != mw->h)
    return dd_fail(err, DD_EARG, "%s: frame of %dx%d, the movie is %dx%d", mw->path,
                   im ? im->w : 0, im ? im->h : 0, mw->w, mw->h);
  if (mw->pattern) {
    char name[4096];
    int rc = dd_movie_frame_path(mw->path, mw->first_number + mw->n, name, sizeof name, err);
    if (!rc) rc = dd_image_save_with(name, im, &mw->save, err);
    if (!rc) mw->n++;
    return rc;
  }
  size_t n = (size_t)mw->w * mw->h * 3;
  for (size_t i = 0; i < n; i++) {
    float v = im->rgb[i];
    mw->rgb[i] = v >= 255.f ? 255 : v > 0.f ? (uint8_t)lrintf(v) : 0;
  }
  if (av_frame_make_writable(mw->frame) < 0)
    return dd_fail(err, DD_ENOMEM, "%s: out of memory", mw->path);
  const uint8_t *src[4] = {mw->rgb, NULL, NULL, NULL};
  int stride[4] = {mw->w * 3, 0, 0, 0};
  sws_scale(mw->sws, src, stride, 0, mw->h, mw->frame->data, mw->frame->linesize);
  mw->frame->pts = mw->n;
  int rc = encode(mw, mw->frame, err);
  if (rc) return rc;
  mw->n++;
  return copy_audio(mw, mw->n / mw->fps, err);
}

int dd_movie_close(dd_movie_writer *mw, dd_err *err) {
  if (!mw) return DD_OK;
  if (mw->pattern) {
    writer_free(mw);
    return DD_OK;
  }
  char why[256];
  int rc = encode(mw, NULL, err);
  if (!rc) rc = copy_audio(mw, -1, err);
  if (!rc) {
    int e = av_write_trailer(mw->oc);
    if (e < 0) rc = dd_fail(err, DD_EIO, "%s: %s", mw->tmp, av_reason(e, why, sizeof why));
  }
  if (!rc) {
    int e = avio_closep(&mw->oc->pb);
    if (e < 0) rc = dd_fail(err, DD_EIO, "%s: %s", mw->tmp, av_reason(e, why, sizeof why));
  }
  if (!rc && rename(mw->tmp, mw->path))
    rc = dd_fail(err, DD_EIO, "%s: %s", mw->path, strerror(errno));
  if (rc) {
    dd_movie_abort(mw);
    return rc;
  }
  writer_free(mw);
  return DD_OK;
}
