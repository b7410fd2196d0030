// Shared by the task commands (tasks.cc) and run-batch (batch.cc): the JSON of task results.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.h"
#include "paligemma/tasks.h"

namespace cli {

enum class MaskFormat { kRle, kPng };

// One object as JSON: {"label", "box": {x0,y0,x1,y1} (pixels), "loc": [y0,x0,y1,x1],
// "codes": [16 seg codes]?, "mask": {x0,y0,width,height,area, rle: [...] | png_base64}?,
// "error"?, "text"? (the entry's source, with an error)}.
nlohmann::json object_json(const paligemma::DetectedObject& o, MaskFormat format);
nlohmann::json objects_json(const std::vector<paligemma::DetectedObject>& objects,
                            MaskFormat format);

// The generation fields shared by every task result: ids, prompt_tokens, stop_reason, timings.
void add_generation_json(nlohmann::json& j, const paligemma::Generation& g, double load_s);

// JSON text on one line; invalid UTF-8 in strings is replaced, never thrown on.
std::string dump_json(const nlohmann::json& j);

void register_batch(CLI::App& app, Runners& runners);  // run-batch (batch.cc)

}  // namespace cli
