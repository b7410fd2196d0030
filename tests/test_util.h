// Shared helpers for tests: paths, temp folders, comparisons that report the worst index.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace pg::testing {

inline std::string testdata(const std::string& rel) {
  return std::string(PG_TESTDATA_DIR) + "/" + rel;
}

// The golden model cases: every testdata/golden/* folder with a config.json.
inline std::vector<std::string> golden_model_cases() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(testdata("golden"))) {
    if (std::filesystem::exists(e.path() / "config.json"))
      out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// [rows, cols] of standard normal values from a seeded generator.
inline std::vector<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = d(rng);
  return w;
}

// A fresh temporary folder, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pgtest-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Asserts |got[i] - want[i]| <= tol for all i; on failure reports the worst index.
inline ::testing::AssertionResult all_close(const float* want, const float* got, int64_t n,
                                            double tol) {
  int64_t worst = -1;
  double worst_err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (!(err <= worst_err) || std::isnan(err)) {
      worst_err = std::isnan(err) ? INFINITY : err;
      worst = i;
    }
  }
  if (worst_err <= tol) return ::testing::AssertionSuccess() << "max error " << worst_err;
  return ::testing::AssertionFailure()
         << "max error " << worst_err << " > " << tol << " at index " << worst << " (want "
         << want[worst] << ", got " << got[worst] << ")";
}

inline double max_abs_error(const float* want, const float* got, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(got[i]) - want[i]));
  return m;
}

}  // namespace pg::testing
