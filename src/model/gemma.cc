#include "model/gemma.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "model/trace.h"

namespace pg::model {
namespace {

// Rows of h the MLP takes at a time: its [rows, intermediate] buffers stay a few tens of
// MiB however long the prompt (4096+ tokens at 896 px), and GEMMs of 512 rows run at
// full speed.
constexpr int64_t kMlpRows = 512;

// A forward pass's intermediate buffers, allocated once for all its layers: each new
// tensor is zero-filled, and at 267 prompt tokens a layer's would be 39 MiB (PaliGemma
// 3B), 0.7 GiB of memset per first token.
struct LayerBuffers {
  LayerBuffers(const io::TextConfig& cfg, int64_t T, bool staged_kv)
      : q({T, cfg.num_attention_heads * cfg.head_dim}),
        attn({T, cfg.num_attention_heads * cfg.head_dim}),
        gate({std::min(T, kMlpRows), cfg.intermediate_size}) {
    if (staged_kv) {
      k = Tensor({T, cfg.num_key_value_heads * cfg.head_dim});
      v = Tensor({T, cfg.num_key_value_heads * cfg.head_dim});
    }
  }
  Tensor q, attn;  // [T, Hq*D]
  Tensor k, v;     // [T, Hkv*D] (a bf16 cache's new rows before rounding; else empty)
  Tensor gate;     // [min(T, kMlpRows), F]: the MLP's gated product
};

// h: [T, H] -> out: [T - q0, H], the attention outputs of rows [q0, T) (all of them for
// q0 = 0; the last layer of a prefill whose caller wants the last row alone skips the
// queries no later layer reads). Writes this layer's keys/values of all T rows at cache
// rows [start, start + T).
void self_attention(const GemmaLayerWeights& l, const io::TextConfig& cfg, int64_t layer,
                    const Tensor& h, int64_t q0, KvCache& cache, int64_t prefix_len,
                    LayerBuffers& buffers, Tensor& out) {
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t T = h.dim(0), start = cache.length(), n = T - q0;
  const int64_t Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;

  // q: [n, Hq*D] (rows q0..T-1); keys and values: [T, Hkv*D], straight into a float32
  // cache's rows, or (a bf16 cache) into float32 buffers rounded into the cache after RoPE.
  Tensor& q = buffers.q;
  const bool bf16_cache = cache.dtype() == DType::kBF16;
  float* k_rows = bf16_cache ? buffers.k.data() : cache.k_rows(layer, start);
  float* v_rows = bf16_cache ? buffers.v.data() : cache.v_rows(layer, start);
  const kernels::MatmulOutput qkv[3] = {
      {l.q_proj, nullptr, q.data()}, {l.k_proj, nullptr, k_rows}, {l.v_proj, nullptr, v_rows}};
  if (q0 == 0) {
    k.matmul_many(h.data(), T, qkv, 3);
  } else {
    k.matmul_many(h.data(), T, qkv + 1, 2);
    k.matmul(h.row(q0), n, l.q_proj, nullptr, q.data());
  }

  // Positions are 1-indexed: cache row j holds position j + 1.
  std::vector<int64_t> positions(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = start + t + 1;
  k.rope(q.data(), n, Hq * D, Hq, D, positions.data() + q0, cfg.rope_theta);
  k.rope(k_rows, T, Hkv * D, Hkv, D, positions.data(), cfg.rope_theta);
  if (bf16_cache) cache.store_bf16(layer, start, T, k_rows, v_rows);

  kernels::AttentionParams p;
  p.num_queries = n;
  p.num_keys = start + T;
  p.num_heads = Hq;
  p.num_kv_heads = Hkv;
  p.head_dim = D;
  p.q_stride = Hq * D;
  p.kv_stride = Hkv * D;
  p.out_stride = Hq * D;
  p.query_offset = start + q0;
  p.prefix_len = prefix_len;
  p.causal = true;
  p.sliding_window = cfg.layer_is_sliding(layer) ? cfg.sliding_window : 0;
  p.scale = cfg.attention_scale();
  p.softcap = cfg.attn_logit_softcapping;
  p.low_precision = l.q_proj.low_precision;  // bf16 products in the low-precision modes
  p.kv_bf16 = bf16_cache;
  Tensor& attn = buffers.attn;  // [n, Hq*D]
  k.attention(p, q.data(), cache.k(layer), cache.v(layer), attn.data());
  k.matmul(attn.data(), n, l.o_proj, nullptr, out.data());
}

// h: [T, H] -> out: [T, H] = down(gelu(gate(h)) * up(h)), at most kMlpRows rows at a time.
void mlp(const GemmaLayerWeights& l, const float* h, int64_t T, int64_t H, LayerBuffers& buffers,
         Tensor& out) {
  const kernels::KernelTable& k = kernels::kernels();
  Tensor& gate = buffers.gate;  // [R, F] (F = intermediate_size), R = min(T, kMlpRows)
  for (const auto& [r0, rows] : mlp_row_runs(T, gate.dim(0))) {
    // down_proj(gelu_tanh(gate_proj(h)) * up_proj(h)): [rows, H], through `gate` [rows, F]
    k.mlp(h + r0 * H, rows, l.gate_proj, l.up_proj, l.down_proj, gate.data(), out.data() + r0 * H);
  }
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> mlp_row_runs(int64_t T, int64_t most) {
  std::vector<std::pair<int64_t, int64_t>> runs;
  if (T <= 0 || most <= 0) return runs;
  if (T <= most) return {{0, T}};
  const int64_t whole = most / 16;  // tiles per run, at most
  if (whole == 0) {                 // (buffers below a tile: runs of `most`)
    for (int64_t first = 0; first < T; first += most)
      runs.emplace_back(first, std::min(most, T - first));
    return runs;
  }
  const int64_t tiles = (T + 15) / 16, count = (tiles + whole - 1) / whole;
  for (int64_t run = 0; run < count; ++run) {
    const int64_t first = tiles * run / count * 16;
    const int64_t end = run + 1 == count ? T : tiles * (run + 1) / count * 16;
    runs.emplace_back(first, end - first);
  }
  return runs;
}

Tensor gemma_embed(const GemmaWeights& w, const io::TextConfig& cfg, const std::vector<int>& ids,
                   int image_token, const Tensor* image_rows) {
  const int64_t T = static_cast<int64_t>(ids.size()), H = cfg.hidden_size;
  Tensor x({T, H});
  int64_t next_image_row = 0;
  const size_t row_bytes = static_cast<size_t>(H) * dtype_size(w.embed_tokens.dtype);
  for (int64_t t = 0; t < T; ++t) {
    const int id = ids[static_cast<size_t>(t)];
    if (image_rows != nullptr && id == image_token && next_image_row < image_rows->dim(0)) {
      std::memcpy(x.row(t), image_rows->row(next_image_row++),
                  static_cast<size_t>(H) * sizeof(float));
    } else {
      const auto* src =
          static_cast<const uint8_t*>(w.embed_tokens.data) + static_cast<size_t>(id) * row_bytes;
      convert_to_f32(w.embed_tokens.dtype, src, x.row(t), H);
    }
  }
  // Gemma scales every input row by sqrt(H), rounded to float32 as the reference does.
  const float normalizer = static_cast<float>(std::sqrt(static_cast<double>(H)));
  kernels::kernels().scale(x.data(), T * H, normalizer);
  return x;
}

Tensor gemma_forward(const GemmaWeights& w, const io::TextConfig& cfg, Tensor x, KvCache& cache,
                     int64_t prefix_len, HiddenRows rows) {
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t T = x.dim(0), H = cfg.hidden_size;
  if (T == 0) rows = HiddenRows::kAll;  // no last row: an empty [0, H]
  const std::string step = ".pos" + std::to_string(cache.length());
  trace("gemma.embeddings" + step, x);

  Tensor h({T, H}), out({T, H});
  LayerBuffers buffers(cfg, T, cache.dtype() != DType::kF32);
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    const GemmaLayerWeights& l = w.layers[static_cast<size_t>(i)];
    // Rows [r0, T) go on past attention: all of them but in the last layer of a pass
    // whose caller wants the last row alone (no later layer reads the others' outputs;
    // every row's keys and values still go into the cache). A dump traces every row.
    const bool last_only =
        rows == HiddenRows::kLast && i + 1 == cfg.num_hidden_layers && !tracing();
    const int64_t r0 = last_only ? T - 1 : 0, n = T - r0;
    float* xr = x.row(r0);  // x's rows [r0, T): [n, H]
    k.rms_norm(x.data(), T, H, l.input_layernorm.data(), cfg.rms_norm_eps, h.data());
    self_attention(l, cfg, i, h, r0, cache, prefix_len, buffers, out);
    if (cfg.is_gemma2()) {
      k.rms_norm(out.data(), n, H, l.post_attention_layernorm.data(), cfg.rms_norm_eps, out.data());
    }
    k.add(xr, out.data(), n * H);

    const Tensor& pre_mlp =
        cfg.is_gemma2() ? l.pre_feedforward_layernorm : l.post_attention_layernorm;
    k.rms_norm(xr, n, H, pre_mlp.data(), cfg.rms_norm_eps, h.data());
    mlp(l, h.data(), n, H, buffers, out);
    if (cfg.is_gemma2()) {
      k.rms_norm(out.data(), n, H, l.post_feedforward_layernorm.data(), cfg.rms_norm_eps,
                 out.data());
    }
    k.add(xr, out.data(), n * H);
    trace("gemma.layers." + std::to_string(i) + step, x);
  }
  cache.advance(T);
  // The final norm over the rows that are returned (every row while dumping).
  const int64_t r_norm = rows == HiddenRows::kLast && !tracing() ? T - 1 : 0;
  k.rms_norm(x.row(r_norm), T - r_norm, H, w.norm.data(), cfg.rms_norm_eps, x.row(r_norm));
  trace("gemma.norm" + step, x);
  if (rows == HiddenRows::kAll) return x;
  Tensor last({1, H});
  std::memcpy(last.data(), x.row(T - 1), static_cast<size_t>(H) * sizeof(float));
  return last;
}

Tensor gemma_logits(const GemmaWeights& w, const io::TextConfig& cfg, const float* hidden,
                    int64_t m) {
  const kernels::KernelTable& k = kernels::kernels();
  Tensor logits({m, w.lm_head.rows});
  k.matmul(hidden, m, w.lm_head, nullptr, logits.data());
  if (cfg.final_logit_softcapping > 0.0f) {
    k.softcap(logits.data(), logits.numel(), cfg.final_logit_softcapping);
  }
  return logits;
}

}  // namespace pg::model
