// Parsing detection and segmentation outputs (SPEC section 5):
//   detect:  <locY0><locX0><locY1><locX1> label ; <loc..>x4 label ...
//   segment: <loc..>x4 <seg..>x16 label ; ...
// Pieces are found by their spelling in the decoded text (never by token id). Each entry is
// parsed on its own: a malformed one (wrong token count, empty box, out-of-range number,
// stray text) carries an error and never stops the others.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace pg::tasks {

enum class ObjectTask { kDetect, kSegment };

// Number of <locNNNN> and <segNNN> values.
inline constexpr int kNumLocs = 1024;
inline constexpr int kNumSegCodes = 128;
inline constexpr int kSegCodesPerMask = 16;

struct ParsedObject {
  std::string label;   // trimmed text after the tokens
  std::string source;  // the entry as it appears in the text (trimmed)
  bool has_box = false;
  std::array<int, 4> locs{};              // y0 x0 y1 x1 in [0, 1024), when has_box
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // pixels of the image: loc / 1024 * size
  std::vector<int> seg_codes;             // 16 codes in [0, 128), or empty
  std::string error;                      // non-empty: what is wrong with this entry
};

// Parses `text` for an image of width x height pixels (both >= 1, else an error).
// Detect: each entry has 4 locs, optionally 16 seg codes (kept), and a label.
// Segment: each entry has 4 locs, then exactly 16 seg codes, and a label.
// The box is kept (has_box) whenever the 4 locs are well formed and y0 < y1, x0 < x1, even if
// another part of the entry is wrong. Text with no tokens at all (e.g. "no objects") becomes
// one entry with an error.
Result<std::vector<ParsedObject>> parse_objects(std::string_view text, ObjectTask task, int width,
                                                int height);

}  // namespace pg::tasks
