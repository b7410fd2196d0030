// The segmentation mask decoder of PaliGemma: big_vision's VQ-VAE decoder (vae-oid.npz),
// as SPEC section 5 states. 16 codes -> codebook rows on a 4x4 grid -> Conv1x1 + ReLU ->
// residual blocks -> transposed convs (stride 2, padding 1) + ReLU -> Conv1x1 to 1 channel:
// mask logits [S, S] (S = 64 for the released file).
//
// Every size is read from the arrays (PyTorch layouts: conv [out, in, kh, kw], transposed
// conv [in, out, kh, kw]); the chain is found from the key names: decoder.0 (first conv),
// decoder.N.net.{0,2,4} (residual blocks), other decoder.N (transposed convs), and the
// highest decoder.N (final conv).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/npy.h"

namespace pg::tasks {

class VaeDecoder {
 public:
  // Reads `_vq_vae._embedding` and `decoder.*` from an .npz file; other arrays (an encoder)
  // are ignored. Errors name the file and the array.
  static Result<VaeDecoder> load(const std::string& npz_path);
  // The same from arrays already read; `name` appears in error messages.
  static Result<VaeDecoder> from_arrays(const std::map<std::string, io::NpyArray>& arrays,
                                        const std::string& name);

  int codebook_size() const { return codebook_size_; }  // codes are in [0, codebook_size)
  int num_codes() const { return grid_ * grid_; }       // codes per mask (16)
  int mask_size() const { return mask_size_; }          // S: the mask is [S, S]

  // codes [num_codes] -> mask logits [S, S], row-major. Errors: wrong count, a code outside
  // the codebook.
  Result<std::vector<float>> decode(const std::vector<int>& codes) const;

 private:
  // A convolution with its weights repacked to [kh][kw][in][out] (out contiguous).
  struct Conv {
    int in = 0, out = 0, k = 1;
    bool transposed = false;  // stride 2, padding 1; else stride 1, padding k/2
    std::vector<float> w;     // [k, k, in, out]
    std::vector<float> b;     // [out]
  };
  struct Layer {
    enum Kind { kConv, kResBlock } kind = kConv;
    Conv conv;          // kConv
    Conv res[3];        // kResBlock: 3x3, 3x3, 1x1
    bool relu = false;  // kConv: ReLU after it
  };

  // x: [H, W, in] -> [Ho, Wo, out]
  static std::vector<float> apply(const Conv& c, const std::vector<float>& x, int h, int w, int* ho,
                                  int* wo);

  int grid_ = 4;
  int codebook_size_ = 0;
  int dim_ = 0;                  // D: codebook row width
  std::vector<float> codebook_;  // [codebook_size, D]
  std::vector<Layer> layers_;
  int mask_size_ = 0;
};

}  // namespace pg::tasks
