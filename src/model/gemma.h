// The Gemma and Gemma 2 decoders over a prefix-LM attention mask, with a KV cache.
//
// Gemma:   x += Attn(input_layernorm(x));  x += MLP(post_attention_layernorm(x))
// Gemma 2: x += post_attention_layernorm(Attn(input_layernorm(x)));
//          x += post_feedforward_layernorm(MLP(pre_feedforward_layernorm(x)))
// Attention: RoPE ("rotate half") at 1-indexed positions, grouped-query heads, Gemma 2's
// score soft-capping and sliding window on even layers. MLP: down(gelu(gate(x)) * up(x)).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "tensor/tensor.h"

namespace pg::model {

// Input embeddings [T, H]: embed_tokens[id] for text ids; rows where `image_rows`
// is non-null and ids[t] == image_token come from image_rows (the image features, in
// order). Every row is then multiplied by sqrt(H), as Gemma does.
Tensor gemma_embed(const GemmaWeights& w, const io::TextConfig& cfg, const std::vector<int>& ids,
                   int image_token, const Tensor* image_rows);

// Which final hidden states a forward pass returns: every row's [T, H], or the last
// row's [1, H] alone (what choosing the next token needs: the last layer then computes
// its queries, attention outputs and MLP for that row only).
enum class HiddenRows { kAll, kLast };

// Runs every decoder layer over x [T, H] for the tokens at cache rows
// [cache.length(), cache.length() + T), appends their keys and values, and returns the
// final-normed hidden states of `rows`. Keys j < prefix_len are seen by every query
// (the bidirectional prefix); later keys only causally.
Tensor gemma_forward(const GemmaWeights& w, const io::TextConfig& cfg, Tensor x, KvCache& cache,
                     int64_t prefix_len, HiddenRows rows = HiddenRows::kAll);

// The runs of rows [first, first + count) in which the MLP takes a pass over T rows, its
// buffers holding at most `most`: one run where T <= most, else near-equal runs of whole
// tiles of 16 rows (the last run ends at T), each at most `most` rows and, for most >= 32,
// at least 16 * (most / 32) - 15 rows. So 4107 rows with most = 512 go as 9 runs of 448-464
// rows, never as 8 of 512 and a last 11 that would run as decode steps, streaming all three
// matrices for a few rows.
std::vector<std::pair<int64_t, int64_t>> mlp_row_runs(int64_t T, int64_t most);

// logits [m, V] = hidden [m, H] lm_head^T, soft-capped by final_logit_softcapping (Gemma 2).
Tensor gemma_logits(const GemmaWeights& w, const io::TextConfig& cfg, const float* hidden,
                    int64_t m);

}  // namespace pg::model
