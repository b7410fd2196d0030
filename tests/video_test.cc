// Video frames: uniform sampling over a small MJPEG AVI whose frame i has red = 25 * i.
// testdata/tasks/ramp10.avi (8 KB) was made with:
//   ffmpeg -f lavfi -i "nullsrc=s=32x24:r=10:d=1,geq=r='N*25':g='128':b='255-N*25'"
//          -frames:v 10 -c:v mjpeg -q:v 2 -pix_fmt yuvj444p ramp10.avi  (one line)
#include "tasks/video.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"

namespace {

using pg::testing::TempDir;
using pg::testing::testdata;
using ::testing::HasSubstr;

const std::string kClip = testdata("tasks/ramp10.avi");

// The red level of a frame's centre pixel, as frame index * 25 (rounded to the nearest index).
int frame_index(const pg::image::Image& f) {
  const uint8_t r = f.rgb[(static_cast<size_t>(f.height / 2) * f.width + f.width / 2) * 3];
  return (r + 12) / 25;
}

std::vector<int> indices(int n) {
  auto frames = pg::tasks::sample_video_frames(kClip, n);
  EXPECT_TRUE(frames.ok()) << frames.status().message();
  std::vector<int> out;
  if (!frames.ok()) return out;
  for (const auto& f : *frames) {
    EXPECT_EQ(f.width, 32);
    EXPECT_EQ(f.height, 24);
    EXPECT_EQ(f.rgb.size(), 32u * 24u * 3u);
    out.push_back(frame_index(f));
  }
  return out;
}

TEST(Video, UniformSampling) {
  // Frame floor((i + 0.5) * 10 / n): the middles of n equal spans.
  EXPECT_EQ(indices(5), (std::vector<int>{1, 3, 5, 7, 9}));
  EXPECT_EQ(indices(1), (std::vector<int>{5}));
  EXPECT_EQ(indices(2), (std::vector<int>{2, 7}));
  EXPECT_EQ(indices(10), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Video, ColoursSurviveConversion) {
  auto frames = pg::tasks::sample_video_frames(kClip, 10);
  ASSERT_TRUE(frames.ok());
  const auto& f = (*frames)[4];
  const uint8_t* p = &f.rgb[(12 * 32 + 16) * 3];
  EXPECT_NEAR(p[0], 100, 6);
  EXPECT_NEAR(p[1], 128, 6);
  EXPECT_NEAR(p[2], 155, 6);
}

TEST(Video, MoreFramesThanTheClipRepeatsFrames) {
  const std::vector<int> got = indices(20);
  ASSERT_EQ(got.size(), 20u);
  EXPECT_EQ(got.front(), 0);
  EXPECT_EQ(got.back(), 9);
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
}

TEST(Video, Errors) {
  auto missing = pg::tasks::sample_video_frames("/nonexistent/clip.mp4", 4);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/clip.mp4"));

  const std::string cfg = testdata("golden/tiny-pg1/config.json");
  auto not_video = pg::tasks::sample_video_frames(cfg, 4);
  ASSERT_FALSE(not_video.ok());
  EXPECT_THAT(not_video.status().message(), HasSubstr(cfg + ": cannot open as a video"));

  // Only local files: no network or concat protocol behind a "path".
  for (const std::string& url :
       std::vector<std::string>{"http://127.0.0.1:9/clip.avi", "concat:" + kClip + "|" + kClip}) {
    auto remote = pg::tasks::sample_video_frames(url, 2);
    ASSERT_FALSE(remote.ok()) << url;
    EXPECT_THAT(remote.status().message(), HasSubstr(url));
  }

  for (int n : {0, -3, 100000}) {
    auto bad_n = pg::tasks::sample_video_frames(kClip, n);
    ASSERT_FALSE(bad_n.ok());
    EXPECT_THAT(bad_n.status().message(), HasSubstr("number of frames must be 1..1024"));
  }
}

TEST(Video, TruncatedFilesFailCleanlyOrGiveFrames) {
  std::ifstream in(kClip, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TempDir tmp;
  for (size_t keep : {size_t{100}, bytes.size() / 3, bytes.size() * 2 / 3, bytes.size() - 7}) {
    const std::string path = tmp.file("cut.avi");
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
    auto frames = pg::tasks::sample_video_frames(path, 4);
    if (frames.ok()) {
      EXPECT_EQ(frames->size(), 4u) << keep;
    } else {
      EXPECT_THAT(frames.status().message(), HasSubstr(path)) << keep;
    }
  }
}

}  // namespace
