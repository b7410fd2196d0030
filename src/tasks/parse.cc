#include "tasks/parse.h"

#include "tasks/prompts.h"

namespace pg::tasks {
namespace {

// One piece of the text.
struct Item {
  enum Kind { kText, kLoc, kSeg, kBad, kSep } kind = kText;
  std::string_view text;  // the characters it covers
  int value = 0;          // kLoc / kSeg: the number
  std::string why;        // kBad: what is wrong
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// If `s` starts with "<loc" or "<seg" followed by digits and '>', returns that token's length
// and fills `item`; 0 otherwise (the '<' is then ordinary text).
size_t match_token(std::string_view s, Item& item) {
  const bool loc = s.substr(0, 4) == "<loc";
  const bool seg = s.substr(0, 4) == "<seg";
  if (!loc && !seg) return 0;
  size_t i = 4;
  while (i < s.size() && i < 16 && is_digit(s[i])) ++i;
  if (i >= s.size() || s[i] != '>' || i == 4) {
    // "<loc" without digits and '>': malformed when it still closes soon, else plain text.
    const size_t close = s.find('>', 4);
    if (close == std::string_view::npos || close > 16) return 0;
    const size_t open = s.find('<', 1);
    if (open != std::string_view::npos && open < close) return 0;
    item.kind = Item::kBad;
    item.text = s.substr(0, close + 1);
    item.why = "malformed token '" + std::string(item.text) + "'";
    return close + 1;
  }
  const size_t digits = i - 4;
  item.text = s.substr(0, i + 1);
  const size_t want = loc ? 4 : 3;
  if (digits != want) {
    item.kind = Item::kBad;
    item.why = "malformed token '" + std::string(item.text) + "' (" +
               (loc ? "<locNNNN>" : "<segNNN>") + " has " + std::to_string(want) + " digits)";
    return i + 1;
  }
  int v = 0;
  for (size_t k = 4; k < i; ++k) v = v * 10 + (s[k] - '0');
  const int limit = loc ? kNumLocs : kNumSegCodes;
  if (v >= limit) {
    item.kind = Item::kBad;
    item.why = std::string(loc ? "loc" : "seg") + " value " + std::to_string(v) + " in '" +
               std::string(item.text) + "' is out of range 0.." + std::to_string(limit - 1);
    return i + 1;
  }
  item.kind = loc ? Item::kLoc : Item::kSeg;
  item.value = v;
  return i + 1;
}

// Splits the text into tokens, separators and runs of other text.
std::vector<Item> lex(std::string_view text) {
  std::vector<Item> items;
  size_t text_start = 0;
  auto flush_text = [&](size_t end) {
    if (end > text_start)
      items.push_back({Item::kText, text.substr(text_start, end - text_start), 0, {}});
  };
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ';') {
      flush_text(i);
      items.push_back({Item::kSep, text.substr(i, 1), 0, {}});
      text_start = ++i;
      continue;
    }
    if (text[i] == '<') {
      Item tok;
      const size_t n = match_token(text.substr(i), tok);
      if (n > 0) {
        flush_text(i);
        items.push_back(std::move(tok));
        text_start = i += n;
        continue;
      }
    }
    ++i;
  }
  flush_text(text.size());
  return items;
}

// The items of one entry: tokens, then the label text.
struct Entry {
  std::vector<const Item*> tokens;
  std::string label;
  const char* begin = nullptr;  // source span
  const char* end = nullptr;
};

std::string span(const Entry& e) {
  if (e.begin == nullptr) return {};
  return std::string(trim(std::string_view(e.begin, static_cast<size_t>(e.end - e.begin))));
}

// Checks an entry's tokens and label; fills the box in pixels.
ParsedObject finish(const Entry& e, ObjectTask task, int width, int height) {
  ParsedObject o;
  o.source = span(e);
  o.label = std::string(trim(e.label));
  std::vector<int> locs;
  bool seg_before_loc = false;
  for (const Item* t : e.tokens) {
    if (t->kind == Item::kBad) {
      if (o.error.empty()) o.error = t->why;
    } else if (t->kind == Item::kLoc) {
      if (!o.seg_codes.empty()) seg_before_loc = true;
      locs.push_back(t->value);
    } else if (t->kind == Item::kSeg) {
      o.seg_codes.push_back(t->value);
    }
  }
  auto set_error = [&o](std::string why) {
    if (o.error.empty()) o.error = std::move(why);
  };
  if (seg_before_loc)
    set_error("a <loc> token follows <seg> tokens (expected 4 <loc> then 16 <seg>)");
  if (locs.size() != 4) {
    set_error("expected 4 <loc> tokens (y0 x0 y1 x1), got " + std::to_string(locs.size()));
  } else {
    const int ly0 = locs[0], lx0 = locs[1], ly1 = locs[2], lx1 = locs[3];
    if (ly1 <= ly0) {
      set_error("empty box: y1 (<loc" + std::to_string(ly1) + ">) is not below y0 (<loc" +
                std::to_string(ly0) + ">)");
    } else if (lx1 <= lx0) {
      set_error("empty box: x1 (<loc" + std::to_string(lx1) + ">) is not right of x0 (<loc" +
                std::to_string(lx0) + ">)");
    } else {
      o.has_box = true;
      o.locs = {ly0, lx0, ly1, lx1};
      o.x0 = lx0 / 1024.0 * width;
      o.y0 = ly0 / 1024.0 * height;
      o.x1 = lx1 / 1024.0 * width;
      o.y1 = ly1 / 1024.0 * height;
    }
  }
  const size_t nseg = o.seg_codes.size();
  if (task == ObjectTask::kSegment && nseg != kSegCodesPerMask) {
    set_error("expected 16 <seg> tokens after the box, got " + std::to_string(nseg));
  } else if (task == ObjectTask::kDetect && nseg != 0 && nseg != kSegCodesPerMask) {
    set_error("expected 0 or 16 <seg> tokens after the box, got " + std::to_string(nseg));
  }
  if (nseg != kSegCodesPerMask) o.seg_codes.clear();
  if (o.label.empty()) set_error("the entry has no label after its tokens");
  return o;
}

}  // namespace

Result<std::vector<ParsedObject>> parse_objects(std::string_view text, ObjectTask task, int width,
                                                int height) {
  if (width < 1 || height < 1) {
    return invalid_argument("image size " + std::to_string(width) + "x" + std::to_string(height) +
                            " must be at least 1x1");
  }
  const std::vector<Item> items = lex(text);
  std::vector<ParsedObject> out;

  // States: kStart (only whitespace so far), kGarbage (text before any token), kTokens,
  // kLabel (text after the tokens). A token after a label starts a new entry (an output
  // that forgot " ; "); stray text before tokens becomes an entry of its own, with an error.
  enum { kStart, kGarbage, kTokens, kLabel } state = kStart;
  Entry cur;
  std::string garbage;
  const char* garbage_begin = nullptr;
  const char* garbage_end = nullptr;

  auto extend = [](Entry& e, const Item& it) {
    if (e.begin == nullptr) e.begin = it.text.data();
    e.end = it.text.data() + it.text.size();
  };
  auto flush_garbage = [&] {
    ParsedObject o;
    o.source = std::string(
        trim(std::string_view(garbage_begin, static_cast<size_t>(garbage_end - garbage_begin))));
    o.error = "text without a box: '" + o.source + "'";
    out.push_back(std::move(o));
    garbage.clear();
    garbage_begin = garbage_end = nullptr;
  };
  auto flush_entry = [&] {
    out.push_back(finish(cur, task, width, height));
    cur = Entry();
  };

  for (const Item& it : items) {
    const bool blank = it.kind == Item::kText && trim(it.text).empty();
    switch (it.kind) {
      case Item::kSep:
        if (state == kGarbage) flush_garbage();
        if (state == kTokens || state == kLabel) flush_entry();
        state = kStart;
        break;
      case Item::kText:
        if (state == kStart && !blank) {
          state = kGarbage;
          garbage_begin = it.text.data();
        }
        if (state == kGarbage) garbage_end = it.text.data() + it.text.size();
        if (state == kTokens && !blank) state = kLabel;
        if (state == kLabel) {
          cur.label += it.text;
          extend(cur, it);
        }
        break;
      default:  // a token
        if (state == kGarbage) flush_garbage();
        if (state == kLabel) flush_entry();
        state = kTokens;
        cur.tokens.push_back(&it);
        extend(cur, it);
        break;
    }
  }
  if (state == kGarbage) flush_garbage();
  if (state == kTokens || state == kLabel) flush_entry();
  return out;
}

}  // namespace pg::tasks
