#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "train/linear.h"

namespace pg::train {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Bytes of one tensor, produced when the writer reaches it (one large buffer at a time).
struct Bytes {
  const void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> keep;  // owns data when it was made for the write
};

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::function<Bytes()> produce;
};

std::string errno_text(const std::string& what, const std::string& path) {
  return "cannot " + what + " " + path + ": " + std::strerror(errno);
}

bool write_all(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// A safetensors file written tensor by tensor into a temporary file, synced, then renamed
// over `path`. crash_midway: the test hook that stops the process halfway through.
Status write_streaming(const std::string& path, const std::vector<Entry>& entries,
                       const std::map<std::string, std::string>& metadata, bool crash_midway) {
  ojson header = ojson::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    const uint64_t n = static_cast<uint64_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
    header[e.name] = {
        {"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return internal_error(errno_text("create", tmp));
  auto fail = [&](const std::string& what) {
    const Status s = internal_error(errno_text(what, tmp));
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  if (!write_all(fd, length, sizeof(length)) || !write_all(fd, text.data(), text.size()))
    return fail("write");
  for (size_t i = 0; i < entries.size(); ++i) {
    if (crash_midway && i == entries.size() / 2) std::_Exit(99);
    const Entry& e = entries[i];
    const Bytes b = e.produce();
    const size_t want = static_cast<size_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
    if (b.size != want) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return internal_error("tensor " + e.name + ": " + std::to_string(b.size) +
                            " bytes, expected " + std::to_string(want));
    }
    if (!write_all(fd, b.data, b.size)) return fail("write");
  }
  if (::fsync(fd) != 0) return fail("sync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return internal_error(errno_text("close", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const Status s = internal_error(errno_text("rename to " + path + ":", tmp));
    ::unlink(tmp.c_str());
    return s;
  }
  const int dir = ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return Status::Ok();
}

// n float32 values as `dtype` (F32, BF16, F16).
Bytes from_f32(const float* src, int64_t n, DType dtype, std::shared_ptr<void> keep_src = nullptr) {
  if (dtype == DType::kF32)
    return {src, static_cast<size_t>(n) * sizeof(float), std::move(keep_src)};
  auto buf = std::shared_ptr<uint16_t[]>(new uint16_t[static_cast<size_t>(n)]);
  for (int64_t i = 0; i < n; ++i)
    buf[i] = dtype == DType::kBF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
  return {buf.get(), static_cast<size_t>(n) * 2, buf};
}

Bytes tensor_bytes(Tensor t, DType dtype) {
  auto owned = std::make_shared<Tensor>(std::move(t));
  return from_f32(owned->data(), owned->numel(), dtype, owned);
}

// Every Linear of the model that carries a LoRA adapter, by its base weight.
std::map<const Param*, const Linear*> lora_layers(const ModelParams& p) {
  std::map<const Param*, const Linear*> out;
  for (const GemmaLayerParams& l : p.text.layers) {
    for (const Linear* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
      if (lin->lora != nullptr) out[lin->weight] = lin;
    }
  }
  return out;
}

Status write_text(const std::string& path, const std::string& text) {
  return io::write_file_atomic(path, text.data(), text.size());
}

// config.json of the source, with the new image size when it changed.
Status write_config(const ModelParams& params, const std::string& source_dir,
                    const std::string& out_dir) {
  PG_ASSIGN_OR_RETURN(std::string text, io::read_file(source_dir + "/config.json"));
  if (params.image_size_changed()) {
    ojson j;
    try {
      j = ojson::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return invalid_argument(source_dir + "/config.json: " + e.what());
    }
    const io::VisionConfig& v = params.config().vision;
    j["vision_config"]["image_size"] = v.image_size;
    j["vision_config"]["num_image_tokens"] = v.num_patches();
    if (j.contains("text_config") && j["text_config"].contains("num_image_tokens")) {
      j["text_config"]["num_image_tokens"] = v.num_patches();
    }
    text = j.dump(2) + "\n";
  }
  return write_text(out_dir + "/config.json", text);
}

// The tokenizer and processor files HF and this engine read beside the weights.
Status copy_side_files(const std::string& source_dir, const std::string& out_dir) {
  for (const char* name :
       {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "preprocessor_config.json", "processor_config.json",
        "generation_config.json", "chat_template.json"}) {
    const std::string src = source_dir + "/" + name;
    if (!fs::is_regular_file(src)) continue;
    PG_ASSIGN_OR_RETURN(std::string bytes, io::read_file(src));
    PG_RETURN_IF_ERROR(write_text(out_dir + "/" + name, bytes));
  }
  return Status::Ok();
}

Status export_adapter(const ModelParams& params, const std::string& source_dir,
                      const std::string& out_dir) {
  std::vector<Entry> entries;
  for (const auto& a : params.adapters()) {
    for (const Param* f : {&a->a, &a->b}) {
      entries.push_back(
          {"base_model.model." + f->name, DType::kF32, f->shape, [f] {
             return Bytes{f->data(), static_cast<size_t>(f->numel()) * sizeof(float), nullptr};
           }});
    }
  }
  PG_RETURN_IF_ERROR(
      write_streaming(out_dir + "/adapter_model.safetensors", entries, {{"format", "pt"}}, false));
  const Selection& s = params.selection();
  ojson cfg = {{"peft_type", "LORA"},
               {"task_type", "CAUSAL_LM"},
               {"base_model_name_or_path", fs::absolute(source_dir).lexically_normal().string()},
               {"r", s.lora_rank},
               {"lora_alpha", s.lora_alpha},
               {"lora_dropout", 0.0},
               {"bias", "none"},
               {"fan_in_fan_out", false},
               {"inference_mode", true},
               // The decoder's projections only (SigLIP's q/k/v_proj share the names).
               {"target_modules",
                ".*language_model.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"}};
  return write_text(out_dir + "/adapter_config.json", cfg.dump(2) + "\n");
}

}  // namespace

Result<SaveDType> parse_save_dtype(const std::string& name) {
  if (name == "auto") return SaveDType::kAuto;
  if (name == "f32" || name == "float32") return SaveDType::kF32;
  if (name == "bf16" || name == "bfloat16") return SaveDType::kBF16;
  return invalid_argument("unknown save dtype '" + name + "' (expected auto, f32 or bf16)");
}

Status export_checkpoint(const ModelParams& params, const std::string& source_dir,
                         const std::string& out_dir, const ExportOptions& options) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return internal_error("cannot create " + out_dir + ": " + ec.message());
  if (options.save_adapter && !params.adapters().empty())
    return export_adapter(params, source_dir, out_dir);

  const auto lora = lora_layers(params);
  std::vector<Entry> entries;
  for (const Param* p : params.all()) {
    const bool merged = lora.count(p) > 0;
    const bool changed = p->trainable || merged ||
                         (params.image_size_changed() && p == params.vision.position_embedding);
    const DType frozen_dtype = p->matrix ? p->view.dtype : p->stored_dtype;
    DType dtype = DType::kF32;
    if (options.dtype == SaveDType::kBF16) {
      dtype = DType::kBF16;
    } else if (options.dtype == SaveDType::kAuto && !changed &&
               (frozen_dtype == DType::kBF16 || frozen_dtype == DType::kF16)) {
      dtype = frozen_dtype;
    }
    std::function<Bytes()> produce;
    if (merged) {
      const Linear* lin = lora.at(p);
      produce = [lin, dtype] { return tensor_bytes(merged_weight(*lin), dtype); };
    } else if (p->matrix && !p->trainable && p->view.dtype == dtype) {  // frozen, as stored
      produce = [p] {
        return Bytes{p->view.data, static_cast<size_t>(p->view.rows * p->view.row_bytes()),
                     nullptr};
      };
    } else if (p->matrix && !p->trainable) {
      produce = [p, dtype] { return tensor_bytes(param_f32(*p), dtype); };
    } else {  // a float32 master or vector
      produce = [p, dtype] { return from_f32(p->data(), p->numel(), dtype); };
    }
    entries.push_back({p->name, dtype, p->shape, std::move(produce)});
  }
  PG_RETURN_IF_ERROR(
      write_streaming(out_dir + "/model.safetensors", entries, {{"format", "pt"}}, false));
  // A stale index (or shards) from another checkpoint would shadow model.safetensors.
  fs::remove(out_dir + "/model.safetensors.index.json", ec);
  PG_RETURN_IF_ERROR(write_config(params, source_dir, out_dir));
  return copy_side_files(source_dir, out_dir);
}

std::string state_path(const std::string& out_dir) { return out_dir + "/train_state.safetensors"; }

bool crash_in_save_requested() {
  const char* v = std::getenv("PG_TRAIN_CRASH_IN_SAVE");
  return v != nullptr && std::string(v) == "1";
}

Status save_state(const AdamW& opt, int64_t step, const std::string& settings,
                  const std::string& path) {
  std::vector<Entry> entries;
  auto raw = [](const Tensor& t) {
    return [&t] {
      return Bytes{t.data(), static_cast<size_t>(t.numel()) * sizeof(float), nullptr};
    };
  };
  for (size_t i = 0; i < opt.params().size(); ++i) {
    const Param* p = opt.params()[i];
    entries.push_back({"master." + p->name, DType::kF32, p->shape, raw(p->value)});
    entries.push_back({"adam_m." + p->name, DType::kF32, {p->numel()}, raw(opt.m(i))});
    entries.push_back({"adam_v." + p->name, DType::kF32, {p->numel()}, raw(opt.v(i))});
  }
  const std::map<std::string, std::string> meta = {
      {"format", "pg_train_state"}, {"step", std::to_string(step)}, {"settings", settings}};
  return write_streaming(path, entries, meta, crash_in_save_requested());
}

Result<LoadedState> load_state(AdamW& opt, const std::string& path) {
  PG_ASSIGN_OR_RETURN(io::SafetensorsFile f, io::SafetensorsFile::open(path));
  auto meta = [&](const char* key) -> Result<std::string> {
    auto it = f.metadata().find(key);
    if (it == f.metadata().end()) return data_loss(path + ": no \"" + key + "\" in the metadata");
    return it->second;
  };
  LoadedState s;
  PG_ASSIGN_OR_RETURN(std::string step, meta("step"));
  PG_ASSIGN_OR_RETURN(s.settings, meta("settings"));
  s.step = std::strtoll(step.c_str(), nullptr, 10);
  auto restore = [&](const std::string& name, float* dst, int64_t n) -> Status {
    auto it = f.tensors().find(name);
    if (it == f.tensors().end())
      return data_loss(path + ": no tensor '" + name + "' (saved from another run?)");
    if (it->second.dtype != DType::kF32 || it->second.numel() != n) {
      return data_loss(path + ": tensor '" + name + "' is " + dtype_name(it->second.dtype) + " " +
                       shape_to_string(it->second.shape) + ", expected F32 with " +
                       std::to_string(n) + " values");
    }
    std::memcpy(dst, it->second.data, static_cast<size_t>(n) * sizeof(float));
    return Status::Ok();
  };
  for (size_t i = 0; i < opt.params().size(); ++i) {
    Param* p = opt.params()[i];
    PG_RETURN_IF_ERROR(restore("master." + p->name, p->value.data(), p->numel()));
    PG_RETURN_IF_ERROR(restore("adam_m." + p->name, opt.m(i).data(), p->numel()));
    PG_RETURN_IF_ERROR(restore("adam_v." + p->name, opt.v(i).data(), p->numel()));
  }
  opt.set_steps(s.step);
  return s;
}

}  // namespace pg::train
