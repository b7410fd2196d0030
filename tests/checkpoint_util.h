// Builds modified copies of the golden checkpoints for loader and bad-input tests.
#pragma once

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tensor/dtype.h"

namespace pg::testing {

struct OwnedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};

inline std::vector<OwnedTensor> read_checkpoint(const std::string& dir) {
  auto store = io::TensorStore::open_dir(dir);
  EXPECT_TRUE(store.ok()) << store.status().message();
  std::vector<OwnedTensor> out;
  for (const auto& [name, v] : store->tensors()) {
    const auto* p = static_cast<const uint8_t*>(v.data);
    out.push_back({name, v.dtype, v.shape, std::vector<uint8_t>(p, p + v.nbytes())});
  }
  return out;
}

inline void write_tensors(const std::string& path, const std::vector<OwnedTensor>& tensors) {
  std::vector<io::TensorToWrite> w;
  for (const auto& t : tensors) w.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
  auto st = io::write_safetensors(path, w);
  ASSERT_TRUE(st.ok()) << st.message();
}

// Copies config.json and tokenizer.model of `src` into `dst`, and the weights after
// `edit` as one model.safetensors.
inline void copy_checkpoint(const std::string& src, const std::string& dst,
                            const std::function<void(std::vector<OwnedTensor>&)>& edit) {
  namespace fs = std::filesystem;
  fs::create_directories(dst);
  fs::copy_file(src + "/config.json", dst + "/config.json", fs::copy_options::overwrite_existing);
  fs::copy_file(src + "/tokenizer.model", dst + "/tokenizer.model",
                fs::copy_options::overwrite_existing);
  std::vector<OwnedTensor> t = read_checkpoint(src);
  if (edit) edit(t);
  write_tensors(dst + "/model.safetensors", t);
}

inline OwnedTensor* find_tensor(std::vector<OwnedTensor>& ts, const std::string& name) {
  for (auto& t : ts) {
    if (t.name == name) return &t;
  }
  ADD_FAILURE() << "no tensor " << name;
  return nullptr;
}

}  // namespace pg::testing
