// Gemma's SentencePiece tokenizer (tokenizer.model), with PaliGemma's extra pieces
// <loc0000>..<loc1023> and <seg000>..<seg127> found by piece, never by id.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace pg::text {

class Tokenizer {
 public:
  static Result<Tokenizer> load(const std::string& path);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Pieces of the SentencePiece model; ids at or beyond it (the <image> token, padding
  // rows of the embedding) are never produced by encode() nor sampled.
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  int unk_id() const;

  std::vector<int> encode(std::string_view text) const;
  // Ids outside [0, vocab_size) are skipped. Control pieces (BOS, EOS, PAD) decode to "".
  std::string decode(const std::vector<int>& ids) const;
  std::string id_to_piece(int id) const;
  // A byte-fallback piece (<0xNN>): one byte of a UTF-8 character the vocabulary lacks.
  bool is_byte(int id) const;
  // -1 when the piece is not in the model.
  int piece_to_id(std::string_view piece) const;

  // Id of <locNNNN> (0 <= k < 1024) or <segNNN> (0 <= k < 128); -1 if absent.
  int loc_id(int k) const;
  int seg_id(int k) const;
  // If `id` is a <locNNNN> / <segNNN> piece, its number; else -1.
  int loc_index(int id) const;
  int seg_index(int id) const;

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<int> loc_ids_;  // k -> id
  std::vector<int> seg_ids_;
};

// Turns a growing list of ids into text deltas for streaming: each call returns the
// new text since the last call, holding back an incomplete UTF-8 sequence. The deltas
// concatenate to the decoding of all the ids. Each call decodes a window of the latest
// ids (at most kWindow + kContext), not all of them: once everything decoded has been
// returned, the window restarts from its last few ids, kept as context so that the next
// piece's leading space decodes as it does in the whole text.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int id);
  // Whatever is still held back.
  std::string finish();

  static constexpr size_t kWindow = 64, kContext = 8;

 private:
  const Tokenizer& tok_;
  std::vector<int> ids_;  // the window
  size_t emitted_ = 0;    // bytes of decode(ids_) already returned (or the context's)
};

}  // namespace pg::text
