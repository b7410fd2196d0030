// Quantized weight rows dequantized to bf16 in the order their codes are stored.
#include "kernels/amx_dequant.h"

#include <algorithm>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#include "kernels/lane_masks.h"
#endif

#include "tensor/dtype.h"

namespace pg::kernels {

int64_t quant_slot_column(int64_t nb, int64_t u) {
  const int64_t g0 = u / (kQuantGroup * kQuantBlock) * kQuantGroup;
  const int64_t n = std::min<int64_t>(kQuantGroup, nb - g0);
  const int64_t within = u - g0 * kQuantBlock;  // 4n v + 4j + c
  const int64_t v = within / (4 * n), j = within % (4 * n) / 4, c = within % 4;
  return (g0 + j) * kQuantBlock + 4 * v + c;
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__)

void dequantize_slots_bf16(const MatrixView& w, int64_t row, int64_t b0, int64_t b1,
                           uint16_t* out) {
  const int64_t nb = quant_blocks(w.cols);
  const bool q4 = w.dtype == DType::kU8;
  const int64_t block_bytes = q4 ? kQuantBlock / 2 : kQuantBlock;
  const auto* bytes = static_cast<const uint8_t*>(w.data) + row * w.row_bytes();
  const float* scales = w.scales + row * nb;
  // Lane l of a run's 16 codes from code 16c belongs to the group's block 4c + l / 4.
  const __m512i quarter = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  for (int64_t g0 = b0; g0 < b1; g0 += kQuantGroup) {
    const int64_t n = std::min<int64_t>(kQuantGroup, nb - g0), run = 4 * n;
    const int64_t chunks = (run + 15) / 16;
    const __m512 group_scales = _mm512_maskz_loadu_ps(first_n16(n), scales + g0);
    __m512 s[4];
    for (int64_t c = 0; c < chunks; ++c) {
      const __m512i index = _mm512_add_epi32(quarter, _mm512_set1_epi32(static_cast<int>(4 * c)));
      s[c] = _mm512_permutexvar_ps(index, group_scales);
    }
    const uint8_t* g = bytes + g0 * block_bytes;
    uint16_t* o = out + (g0 - b0) * kQuantBlock;
    auto store = [&](uint16_t* dst, __mmask16 mask, __m512i codes, int64_t c) {
      const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(codes), s[c]);
      _mm256_mask_storeu_epi16(dst, mask, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(f)));
    };
    for (int64_t c = 0; c < chunks; ++c) {
      const __mmask16 mask = first_n16(run - 16 * c);
      if (!q4) {
        for (int64_t v = 0; v < 8; ++v) {
          const __m128i codes = _mm_maskz_loadu_epi8(mask, g + v * run + 16 * c);
          store(o + v * run + 16 * c, mask, _mm512_cvtepi8_epi32(codes), c);
        }
        continue;
      }
      const __m512i eight = _mm512_set1_epi32(8), low = _mm512_set1_epi32(0x0f);
      for (int64_t t = 0; t < 4; ++t) {  // byte run t: codes of runs t (low) and t + 4 (high)
        const __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, g + t * run + 16 * c));
        store(o + t * run + 16 * c, mask, _mm512_sub_epi32(_mm512_and_si512(b, low), eight), c);
        store(o + (t + 4) * run + 16 * c, mask, _mm512_sub_epi32(_mm512_srli_epi32(b, 4), eight),
              c);
      }
    }
  }
}

#else

void dequantize_slots_bf16(const MatrixView& w, int64_t row, int64_t b0, int64_t b1,
                           uint16_t* out) {
  const int64_t nb = quant_blocks(w.cols);
  std::vector<float> dense(static_cast<size_t>(nb * kQuantBlock), 0.0f);
  dequantize_row(w, row, dense.data());
  for (int64_t u = b0 * kQuantBlock; u < std::min(b1, nb) * kQuantBlock; ++u)
    out[u - b0 * kQuantBlock] = f32_to_bf16(dense[static_cast<size_t>(quant_slot_column(nb, u))]);
}

#endif

}  // namespace pg::kernels
