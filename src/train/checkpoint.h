// Writing what training produces:
// - the fine-tuned checkpoint as a Hugging Face folder (config.json, tokenizer files,
//   model.safetensors under the original HF key names, LoRA merged), which this engine and
//   transformers load; or, for LoRA with save_adapter, a PEFT adapter folder;
// - the training state (float32 masters of the trained parameters, AdamW moments, step,
//   and the settings that fix the run) for --resume.
// Every file is written to a temporary name, synced, then renamed: a crash while saving
// leaves the previous file intact.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "train/adamw.h"
#include "train/params.h"

namespace pg::train {

enum class SaveDType { kAuto, kF32, kBF16 };  // auto: trained tensors float32, frozen as stored
Result<SaveDType> parse_save_dtype(const std::string& name);

struct ExportOptions {
  SaveDType dtype = SaveDType::kAuto;
  bool save_adapter = false;  // LoRA: adapter_model.safetensors + adapter_config.json only
};

// Writes out_dir (created if needed) from the current parameters. source_dir supplies
// config.json (the image size updated when it changed) and the tokenizer files.
Status export_checkpoint(const ModelParams& params, const std::string& source_dir,
                         const std::string& out_dir, const ExportOptions& options);

// The file holding the training state in an output folder.
std::string state_path(const std::string& out_dir);

// Saves masters ("master.<name>"), moments ("adam_m.<name>", "adam_v.<name>") and, in the
// metadata, the step and `settings` (a JSON object text).
Status save_state(const AdamW& opt, int64_t step, const std::string& settings,
                  const std::string& path);

struct LoadedState {
  int64_t step = 0;
  std::string settings;  // as saved
};
// Restores masters and moments of opt's parameters (names and shapes must match).
Result<LoadedState> load_state(AdamW& opt, const std::string& path);

// Test hook: PG_TRAIN_CRASH_IN_SAVE=1 makes the next state save stop the process (exit
// code 99) halfway through writing its temporary file.
bool crash_in_save_requested();

}  // namespace pg::train
