#include "text/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <fstream>

namespace pg::text {

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    return not_found(path +
                     ": cannot open the tokenizer (expected a SentencePiece tokenizer.model)");
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Tokenizer tok;
  const auto st = tok.sp_->LoadFromSerializedProto(bytes);
  if (!st.ok()) {
    return invalid_argument(path + ": not a SentencePiece model: " + st.ToString());
  }
  char buf[16];
  tok.loc_ids_.resize(1024);
  for (int k = 0; k < 1024; ++k) {
    std::snprintf(buf, sizeof(buf), "<loc%04d>", k);
    tok.loc_ids_[k] = tok.piece_to_id(buf);
  }
  tok.seg_ids_.resize(128);
  for (int k = 0; k < 128; ++k) {
    std::snprintf(buf, sizeof(buf), "<seg%03d>", k);
    tok.seg_ids_[k] = tok.piece_to_id(buf);
  }
  return tok;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::pad_id() const { return sp_->pad_id(); }
int Tokenizer::unk_id() const { return sp_->unk_id(); }

std::vector<int> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  sp_->Encode(text, &ids).IgnoreError();  // only fails for an unloaded model
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::vector<int> valid;
  valid.reserve(ids.size());
  for (int id : ids) {
    if (id >= 0 && id < vocab_size()) valid.push_back(id);
  }
  std::string text;
  sp_->Decode(valid, &text).IgnoreError();
  return text;
}

std::string Tokenizer::id_to_piece(int id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return sp_->IdToPiece(id);
}

bool Tokenizer::is_byte(int id) const { return id >= 0 && id < vocab_size() && sp_->IsByte(id); }

int Tokenizer::piece_to_id(std::string_view piece) const {
  const int id = sp_->PieceToId(piece);
  // SentencePiece maps unknown pieces to unk: tell them apart from the real <unk>.
  if (id == sp_->unk_id() && piece != sp_->IdToPiece(id)) return -1;
  return id;
}

int Tokenizer::loc_id(int k) const { return k >= 0 && k < 1024 ? loc_ids_[k] : -1; }
int Tokenizer::seg_id(int k) const { return k >= 0 && k < 128 ? seg_ids_[k] : -1; }

int Tokenizer::loc_index(int id) const {
  // The pieces are contiguous in released tokenizers but need not be: look them up.
  const std::string p = id_to_piece(id);
  if (p.size() != 9 || p.compare(0, 4, "<loc") != 0 || p.back() != '>') return -1;
  const int k = std::atoi(p.substr(4, 4).c_str());
  return loc_id(k) == id ? k : -1;
}

int Tokenizer::seg_index(int id) const {
  const std::string p = id_to_piece(id);
  if (p.size() != 8 || p.compare(0, 4, "<seg") != 0 || p.back() != '>') return -1;
  const int k = std::atoi(p.substr(4, 3).c_str());
  return seg_id(k) == id ? k : -1;
}

namespace {
// Length of the longest prefix of s that ends on a UTF-8 character boundary.
size_t complete_utf8_prefix(const std::string& s) {
  size_t n = s.size();
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4) {
    const unsigned char c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {  // a lead byte or ASCII
      size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      return (n - (i - 1) >= need) ? n : i - 1;
    }
    --i;
    ++back;
  }
  return n;
}
}  // namespace

std::string StreamingDecoder::push(int id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_);
  // Byte-fallback pieces of an unfinished character decode to U+FFFD: hold them back.
  size_t ready = complete_utf8_prefix(text);
  static const std::string kReplacement = "\xEF\xBF\xBD";
  while (ready >= kReplacement.size() &&
         text.compare(ready - kReplacement.size(), kReplacement.size(), kReplacement) == 0) {
    ready -= kReplacement.size();
  }
  std::string delta;
  if (ready > emitted_) {
    delta = text.substr(emitted_, ready - emitted_);
    emitted_ = ready;
  }
  if (emitted_ == text.size() && ids_.size() > kWindow + kContext) {
    // Nothing held back, so the text ends on a whole character: restart the window from
    // the last kContext ids. Their text is a prefix of their text with any ids after them
    // (pieces decode one after another; a context starting inside a character spelled in
    // byte pieces decodes to the same U+FFFDs either way). A context that decodes to
    // nothing (control pieces only) would let the next piece's leading space be dropped
    // as at the start of a text: the window stays then.
    const std::vector<int> context(ids_.end() - kContext, ids_.end());
    const size_t context_bytes = tok_.decode(context).size();
    if (context_bytes > 0) {
      ids_ = context;
      emitted_ = context_bytes;
    }
  }
  return delta;
}

std::string StreamingDecoder::finish() {
  const std::string text = tok_.decode(ids_);
  if (text.size() <= emitted_) return "";
  std::string delta = text.substr(emitted_);
  emitted_ = text.size();
  return delta;
}

}  // namespace pg::text
