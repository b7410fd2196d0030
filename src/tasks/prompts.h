// Prompts of the released PaliGemma mix / fine-tuned checkpoints (SPEC section 5):
// "caption en", "describe en", "answer en <question>", "ocr", "detect cat ; dog",
// "segment cat". Each builder checks what the user gave and names the bad field.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace pg::tasks {

// The separator between objects in detect/segment prompts and in their outputs.
inline constexpr std::string_view kObjectSeparator = " ; ";

// "cat ; dog" (or "cat;dog") -> {"cat", "dog"}: split on ';', each item trimmed. Errors: an
// empty list, an empty item, an item with '<', '>' or a line break (they would read as
// special pieces or end the prompt).
Result<std::vector<std::string>> split_objects(std::string_view list);

// "caption LANG", or "describe LANG" for a long caption. LANG: 1-16 of [A-Za-z0-9_-].
Result<std::string> caption_prompt(std::string_view lang, bool long_caption);
// "answer LANG QUESTION"; the question is one non-empty line.
Result<std::string> ask_prompt(std::string_view lang, std::string_view question);
// "ocr".
std::string ocr_prompt();
// "detect A ; B", "segment A ; B" from objects checked as split_objects checks them.
Result<std::string> detect_prompt(const std::vector<std::string>& objects);
Result<std::string> segment_prompt(const std::vector<std::string>& objects);

// `s` without leading and trailing ASCII whitespace.
std::string_view trim(std::string_view s);

}  // namespace pg::tasks
