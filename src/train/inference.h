// The engine's own model (model::PaliGemma, with its KV-cache inference path) over the
// current training parameters: what the saved checkpoint will compute, without a round
// trip through disk.
#pragma once

#include <memory>

#include "model/paligemma.h"
#include "train/params.h"

namespace pg::train {

// Trained matrices are read from the float32 masters (LoRA layers as merged float32
// copies), frozen ones from the source checkpoint's mapping: the result must not outlive
// `params` nor the model it wraps.
std::unique_ptr<model::PaliGemma> inference_model(const ModelParams& params);

}  // namespace pg::train
