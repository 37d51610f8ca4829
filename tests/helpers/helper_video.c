#include "helper_video.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>

#include "helper_ops.h"

dd_image *th_pan_frame(const dd_image *photo, int w, int h, int x0, int y0, int dx, int dy, int t) {
  dd_err err;
  dd_image *f;
  cr_assert_eq(dd_image_new(w, h, &f, &err), 0, "%s", err.msg);
  int ox = x0 + dx * t, oy = y0 + dy * t;
  cr_assert(ox >= 0 && oy >= 0 && ox + w <= photo->w && oy + h <= photo->h, "pan leaves the photo");
  for (int y = 0; y < h; y++)
    memcpy(f->rgb + (size_t)y * w * 3, photo->rgb + ((size_t)(oy + y) * photo->w + ox) * 3,
           sizeof(float) * 3 * w);
  return f;
}

void th_pan_clip(const char *photo_name, int side, int w, int h, int dx, int dy, int n,
                 double fps, const dd_movie_opts *opts, const char *path) {
  dd_image *photo = th_shared_photo(photo_name, side);
  dd_err err;
  dd_movie_writer *mw = dd_movie_open_ex(path, w, h, fps, opts, &err);
  cr_assert_not_null(mw, "%s", err.msg);
  for (int t = 0; t < n; t++) {
    dd_image *f = th_pan_frame(photo, w, h, 8, 8, dx, dy, t);
    cr_assert_eq(dd_movie_write(mw, f, &err), 0, "%s", err.msg);
    dd_image_free(f);
  }
  cr_assert_eq(dd_movie_close(mw, &err), 0, "%s", err.msg);
  dd_image_free(photo);
}

void th_write_wav(const char *path, double seconds) {
  AVFormatContext *oc = NULL;
  cr_assert_geq(avformat_alloc_output_context2(&oc, NULL, "wav", path), 0);
  AVStream *st = avformat_new_stream(oc, NULL);
  cr_assert_not_null(st);
  int rate = 8000;
  st->codecpar->codec_type = AVMEDIA_TYPE_AUDIO;
  st->codecpar->codec_id = AV_CODEC_ID_PCM_S16LE;
  st->codecpar->sample_rate = rate;
  av_channel_layout_default(&st->codecpar->ch_layout, 1);
  st->codecpar->format = AV_SAMPLE_FMT_S16;
  st->codecpar->bits_per_coded_sample = 16;
  st->codecpar->block_align = 2;
  st->time_base = (AVRational){1, rate};
  cr_assert_geq(avio_open(&oc->pb, path, AVIO_FLAG_WRITE), 0);
  cr_assert_geq(avformat_write_header(oc, NULL), 0);
  int total = (int)(seconds * rate), chunk = 800;
  AVPacket *pkt = av_packet_alloc();
  for (int s = 0; s < total; s += chunk) {
    int n = total - s < chunk ? total - s : chunk;
    cr_assert_geq(av_new_packet(pkt, n * 2), 0);
    int16_t *d = (int16_t *)pkt->data;
    for (int i = 0; i < n; i++) d[i] = (int16_t)(8000 * sin(2 * 3.14159265358979 * 440 * (s + i) / rate));
    pkt->pts = pkt->dts = s;
    pkt->duration = n;
    pkt->stream_index = 0;
    av_packet_rescale_ts(pkt, (AVRational){1, rate}, st->time_base);
    cr_assert_geq(av_interleaved_write_frame(oc, pkt), 0);
  }
  av_packet_free(&pkt);
  cr_assert_geq(av_write_trailer(oc), 0);
  avio_closep(&oc->pb);
  avformat_free_context(oc);
}

dd_image **th_read_all(const char *path, int *n, dd_movie_info *info) {
  dd_err err;
  dd_movie_reader *r = dd_movie_read_open(path, 0, &err);
  cr_assert_not_null(r, "%s", err.msg);
  if (info) dd_movie_read_info(r, info);
  int cap = 16, k = 0, rc;
  dd_image **fr = malloc(sizeof *fr * cap);
  dd_image *f = NULL;
  while ((rc = dd_movie_read(r, &f, &err)) == 1) {
    if (k == cap) fr = realloc(fr, sizeof *fr * (cap *= 2));
    fr[k++] = f;
    f = NULL;
  }
  cr_assert_eq(rc, 0, "%s", err.msg);
  dd_movie_read_close(r);
  *n = k;
  return fr;
}

void th_free_all(dd_image **frames, int n) {
  for (int i = 0; i < n; i++) dd_image_free(frames[i]);
  free(frames);
}

double th_audio_seconds(const char *path) {
  AVFormatContext *ic = NULL;
  cr_assert_geq(avformat_open_input(&ic, path, NULL, NULL), 0, "%s", path);
  cr_assert_geq(avformat_find_stream_info(ic, NULL), 0);
  int ai = av_find_best_stream(ic, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
  if (ai < 0) {
    avformat_close_input(&ic);
    return -1;
  }
  AVPacket *pkt = av_packet_alloc();
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  while (av_read_frame(ic, pkt) >= 0) {
    if (pkt->stream_index == ai && pkt->pts != AV_NOPTS_VALUE) {
      if (pkt->pts < lo) lo = pkt->pts;
      if (pkt->pts + pkt->duration > hi) hi = pkt->pts + pkt->duration;
    }
    av_packet_unref(pkt);
  }
  double s = hi > lo ? (hi - lo) * av_q2d(ic->streams[ai]->time_base) : 0;
  av_packet_free(&pkt);
  avformat_close_input(&ic);
  return s;
}

double th_corr(const float *a, const float *b, size_t n) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < n; i++) ma += a[i], mb += b[i];
  ma /= n;
  mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; i++) {
    double x = a[i] - ma, y = b[i] - mb;
    sab += x * y, saa += x * x, sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}
