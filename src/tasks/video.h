// Video frames for PaliGemma's video fine-tunes: N frames sampled uniformly over a file,
// decoded with FFmpeg (libavformat, libavcodec) and converted to RGB with libswscale.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "image/image.h"

namespace pg::tasks {

inline constexpr int kMaxVideoFrames = 1024;

// The video's frames are counted (F), then frame floor((i + 0.5) * F / n) is kept for
// i = 0..n-1: the middles of n equal spans. A clip with fewer than n frames repeats frames.
// Frames larger than `limits` are refused before conversion. Errors name the file: not a
// video, no video stream, no decodable frame, n outside 1..kMaxVideoFrames.
Result<std::vector<image::Image>> sample_video_frames(const std::string& path, int n,
                                                      const image::DecodeLimits& limits = {});

}  // namespace pg::tasks
