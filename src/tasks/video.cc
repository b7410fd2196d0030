#include "tasks/video.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <memory>

namespace pg::tasks {
namespace {

std::string av_error(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  if (av_strerror(code, buf, sizeof(buf)) < 0) return "error " + std::to_string(code);
  return buf;
}

struct InputCloser {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct SwsFreer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
using Input = std::unique_ptr<AVFormatContext, InputCloser>;

// Opens `path` and finds its best video stream.
Result<Input> open_video(const std::string& path, int* stream, const AVCodec** codec) {
  AVFormatContext* raw = nullptr;
  // Local files only: a "path" such as http://... or concat:a|b is not opened.
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "protocol_whitelist", "file", 0);
  const int r = avformat_open_input(&raw, path.c_str(), nullptr, &opts);
  av_dict_free(&opts);
  if (r < 0) {
    if (r == AVERROR(ENOENT)) return not_found(path + ": no such video file");
    return invalid_argument(path + ": cannot open as a video: " + av_error(r));
  }
  Input in(raw);
  const int info = avformat_find_stream_info(in.get(), nullptr);
  if (info < 0)
    return invalid_argument(path + ": cannot read the video's streams: " + av_error(info));
  const int s = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, codec, 0);
  if (s == AVERROR_STREAM_NOT_FOUND) return invalid_argument(path + ": has no video stream");
  if (s == AVERROR_DECODER_NOT_FOUND)
    return unimplemented(path + ": no decoder for its video codec");
  if (s < 0) return invalid_argument(path + ": cannot find a video stream: " + av_error(s));
  *stream = s;
  return in;
}

// Converts a decoded frame to 8-bit RGB.
Result<image::Image> to_rgb(const AVFrame* f, SwsContext** sws, const std::string& path,
                            const image::DecodeLimits& limits) {
  if (f->width < 1 || f->height < 1 || f->width > limits.max_side || f->height > limits.max_side ||
      int64_t{f->width} * f->height > limits.max_pixels) {
    return out_of_range(path + ": frame of " + std::to_string(f->width) + "x" +
                        std::to_string(f->height) + " pixels is over the limit");
  }
  *sws = sws_getCachedContext(*sws, f->width, f->height, static_cast<AVPixelFormat>(f->format),
                              f->width, f->height, AV_PIX_FMT_RGB24,
                              SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr,
                              nullptr);
  if (*sws == nullptr) return unimplemented(path + ": cannot convert its pixel format to RGB");
  image::Image img;
  img.width = f->width;
  img.height = f->height;
  img.rgb.resize(static_cast<size_t>(f->width) * f->height * 3);
  uint8_t* dst[4] = {img.rgb.data(), nullptr, nullptr, nullptr};
  int dst_stride[4] = {f->width * 3, 0, 0, 0};
  const int rows = sws_scale(*sws, f->data, f->linesize, 0, f->height, dst, dst_stride);
  if (rows != f->height) return internal_error(path + ": RGB conversion failed");
  return img;
}

}  // namespace

Result<std::vector<image::Image>> sample_video_frames(const std::string& path, int n,
                                                      const image::DecodeLimits& limits) {
  if (n < 1 || n > kMaxVideoFrames) {
    return invalid_argument(path + ": the number of frames must be 1.." +
                            std::to_string(kMaxVideoFrames) + ", got " + std::to_string(n));
  }
  av_log_set_level(AV_LOG_FATAL);
  std::unique_ptr<AVPacket, PacketFreer> pkt(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFreer> frame(av_frame_alloc());
  if (!pkt || !frame) return internal_error("out of memory for FFmpeg buffers");

  // Pass 1: count the stream's packets (one per frame), without decoding.
  int64_t total = 0;
  {
    int stream = -1;
    const AVCodec* codec = nullptr;
    PG_ASSIGN_OR_RETURN(Input in, open_video(path, &stream, &codec));
    while (av_read_frame(in.get(), pkt.get()) >= 0) {
      if (pkt->stream_index == stream) ++total;
      av_packet_unref(pkt.get());
    }
  }
  if (total == 0) return invalid_argument(path + ": the video stream has no frames");
  std::vector<int64_t> targets(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    targets[static_cast<size_t>(i)] = (2 * int64_t{i} + 1) * total / (2 * int64_t{n});

  // Pass 2: decode in order, converting the frames whose index is a target.
  int stream = -1;
  const AVCodec* codec = nullptr;
  PG_ASSIGN_OR_RETURN(Input in, open_video(path, &stream, &codec));
  std::unique_ptr<AVCodecContext, CodecFreer> dec(avcodec_alloc_context3(codec));
  if (!dec) return internal_error("out of memory for the video decoder");
  int r = avcodec_parameters_to_context(dec.get(), in->streams[stream]->codecpar);
  if (r >= 0) r = avcodec_open2(dec.get(), codec, nullptr);
  if (r < 0)
    return invalid_argument(path + ": cannot open the " + codec->name + " decoder: " + av_error(r));

  std::unique_ptr<SwsContext, SwsFreer> sws;
  std::unique_ptr<AVFrame, FrameFreer> last(av_frame_alloc());  // the latest decoded frame
  if (!last) return internal_error("out of memory for FFmpeg buffers");
  bool have_last = false;
  std::vector<image::Image> out;
  int64_t index = 0;  // frames decoded so far
  std::string last_error;
  auto convert = [&](const AVFrame* f) -> Result<image::Image> {
    SwsContext* s = sws.release();
    auto img = to_rgb(f, &s, path, limits);
    sws.reset(s);
    return img;
  };

  // Takes every frame the decoder has ready.
  auto drain = [&]() -> Status {
    while (true) {
      const int rr = avcodec_receive_frame(dec.get(), frame.get());
      if (rr == AVERROR(EAGAIN) || rr == AVERROR_EOF) return Status::Ok();
      if (rr < 0) {
        last_error = av_error(rr);
        return Status::Ok();
      }
      if (out.size() < targets.size() && targets[out.size()] == index) {
        PG_ASSIGN_OR_RETURN(image::Image img, convert(frame.get()));
        while (out.size() < targets.size() && targets[out.size()] == index) out.push_back(img);
      }
      av_frame_unref(last.get());
      av_frame_move_ref(last.get(), frame.get());
      have_last = true;
      ++index;
    }
  };

  while (out.size() < targets.size()) {
    const int rd = av_read_frame(in.get(), pkt.get());
    if (rd < 0) break;
    if (pkt->stream_index == stream) {
      const int rs = avcodec_send_packet(dec.get(), pkt.get());
      if (rs < 0 && rs != AVERROR(EAGAIN)) last_error = av_error(rs);
      av_packet_unref(pkt.get());
      PG_RETURN_IF_ERROR(drain());
    } else {
      av_packet_unref(pkt.get());
    }
  }
  if (out.size() < targets.size()) {
    avcodec_send_packet(dec.get(), nullptr);  // flush the decoder
    PG_RETURN_IF_ERROR(drain());
  }
  if (out.size() < targets.size()) {
    if (!have_last) {
      return invalid_argument(path + ": no frame could be decoded" +
                              (last_error.empty() ? "" : ": " + last_error));
    }
    // Fewer frames decoded than packets counted: the last decoded frame stands in.
    PG_ASSIGN_OR_RETURN(image::Image img, convert(last.get()));
    while (out.size() < targets.size()) out.push_back(img);
  }
  return out;
}

}  // namespace pg::tasks
