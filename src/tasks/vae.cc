#include "tasks/vae.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "base/parallel.h"
#include "tasks/npz.h"
#include "tensor/dtype.h"

namespace pg::tasks {
namespace {

constexpr int kGrid = 4;  // 16 codes on a 4x4 grid (SPEC section 5)
constexpr int64_t kMaxChannels = 1 << 16;
constexpr int64_t kMaxKernel = 15;
constexpr int64_t kMaxMaskSize = 4096;
const char kEmbedding[] = "_vq_vae._embedding";

// The arrays of one .npz and its name, for lookups whose errors name both.
class Arrays {
 public:
  Arrays(const std::map<std::string, io::NpyArray>& a, const std::string& name)
      : a_(a), name_(name) {}

  bool has(const std::string& key) const { return a_.count(key) != 0; }

  // The array `key` as float32, with `rank` dimensions.
  Result<std::vector<float>> get(const std::string& key, size_t rank, Shape* shape) const {
    auto it = a_.find(key);
    if (it == a_.end()) return not_found(name_ + ": missing array '" + key + "'");
    const io::NpyArray& arr = it->second;
    if (arr.shape.size() != rank) {
      return invalid_argument(name_ + ": array '" + key + "' has shape " +
                              shape_to_string(arr.shape) + ", expected " + std::to_string(rank) +
                              " dimensions");
    }
    const int64_t n = shape_numel(arr.shape);
    std::vector<float> out(static_cast<size_t>(n));
    switch (arr.dtype) {
      case DType::kF32:
      case DType::kF16: convert_to_f32(arr.dtype, arr.data.data(), out.data(), n); break;
      case DType::kF64:
        for (int64_t i = 0; i < n; ++i) {
          double d;
          std::memcpy(&d, arr.data.data() + i * 8, 8);
          out[static_cast<size_t>(i)] = static_cast<float>(d);
        }
        break;
      default:
        return invalid_argument(name_ + ": array '" + key + "' has dtype " + dtype_name(arr.dtype) +
                                "; expected float32, float16 or float64");
    }
    *shape = arr.shape;
    return out;
  }

  const std::string& name() const { return name_; }

 private:
  const std::map<std::string, io::NpyArray>& a_;
  const std::string& name_;
};

// Rank-4 weight whose dims fit the limits.
Status check_dims(const Arrays& a, const std::string& key, const Shape& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const int64_t limit = i < 2 ? kMaxChannels : kMaxKernel;
    if (s[i] < 1 || s[i] > limit) {
      return invalid_argument(a.name() + ": array '" + key + "' has shape " + shape_to_string(s) +
                              " (each dimension must be 1.." + std::to_string(limit) + ")");
    }
  }
  if (s[2] != s[3]) {
    return invalid_argument(a.name() + ": array '" + key + "' has a non-square kernel " +
                            shape_to_string(s));
  }
  return Status::Ok();
}

}  // namespace

// Loads one convolution `prefix`.weight / .bias. Plain conv weights are [out, in, k, k] with
// odd k; transposed ones [in, out, k, k]. `in` must equal `channels` (the chain so far).
static Result<std::vector<float>> load_conv_weights(const Arrays& a, const std::string& prefix,
                                                    bool transposed, int channels, int* in,
                                                    int* out, int* k, std::vector<float>* bias) {
  Shape ws, bs;
  PG_ASSIGN_OR_RETURN(std::vector<float> w, a.get(prefix + ".weight", 4, &ws));
  PG_RETURN_IF_ERROR(check_dims(a, prefix + ".weight", ws));
  *in = static_cast<int>(transposed ? ws[0] : ws[1]);
  *out = static_cast<int>(transposed ? ws[1] : ws[0]);
  *k = static_cast<int>(ws[2]);
  if (*in != channels) {
    return invalid_argument(a.name() + ": array '" + prefix + ".weight' " + shape_to_string(ws) +
                            " takes " + std::to_string(*in) +
                            " input channels, but the layer before gives " +
                            std::to_string(channels) +
                            (transposed ? " (transposed conv layout [in, out, kh, kw])"
                                        : " (conv layout [out, in, kh, kw])"));
  }
  if (!transposed && *k % 2 == 0) {
    return invalid_argument(a.name() + ": array '" + prefix + ".weight' " + shape_to_string(ws) +
                            " has an even kernel; a stride-1 conv needs an odd one");
  }
  if (transposed && *k < 2) {
    return invalid_argument(a.name() + ": array '" + prefix + ".weight' " + shape_to_string(ws) +
                            " has a kernel under 2 (a stride-2 transposed conv with padding 1)");
  }
  PG_ASSIGN_OR_RETURN(*bias, a.get(prefix + ".bias", 1, &bs));
  if (bs[0] != *out) {
    return invalid_argument(a.name() + ": array '" + prefix + ".bias' has shape " +
                            shape_to_string(bs) + ", expected [" + std::to_string(*out) + "]");
  }
  return w;
}

Result<VaeDecoder> VaeDecoder::load(const std::string& npz_path) {
  auto want = [](const std::string& key) {
    return key == kEmbedding || key.rfind("decoder.", 0) == 0;
  };
  PG_ASSIGN_OR_RETURN(auto arrays, read_npz(npz_path, want));
  return from_arrays(arrays, npz_path);
}

Result<VaeDecoder> VaeDecoder::from_arrays(const std::map<std::string, io::NpyArray>& arrays,
                                           const std::string& name) {
  const Arrays a(arrays, name);
  VaeDecoder d;
  d.grid_ = kGrid;

  // codebook: [K, D]
  Shape es;
  PG_ASSIGN_OR_RETURN(d.codebook_, a.get(kEmbedding, 2, &es));
  if (es[0] < 1 || es[1] < 1 || es[0] > kMaxChannels || es[1] > kMaxChannels) {
    return invalid_argument(name + ": array '" + std::string(kEmbedding) + "' has shape " +
                            shape_to_string(es));
  }
  d.codebook_size_ = static_cast<int>(es[0]);
  d.dim_ = static_cast<int>(es[1]);

  // The layer indices of decoder.N.*, in order.
  std::set<int> indices;
  for (const auto& [key, arr] : arrays) {
    if (key.rfind("decoder.", 0) != 0) continue;
    const size_t dot = key.find('.', 8);
    const std::string num = key.substr(8, dot == std::string::npos ? std::string::npos : dot - 8);
    if (num.empty() || num.size() > 4 || num.find_first_not_of("0123456789") != std::string::npos) {
      return invalid_argument(name + ": unexpected array '" + key + "' (expected decoder.N.*)");
    }
    indices.insert(std::stoi(num));
  }
  if (indices.size() < 2 || *indices.begin() != 0) {
    return not_found(name +
                     ": missing the decoder's layers (decoder.0.weight ... decoder.N.weight)");
  }
  const int last = *indices.rbegin();

  int channels = d.dim_;
  int64_t size = kGrid;  // spatial side so far
  for (int idx : indices) {
    const std::string prefix = "decoder." + std::to_string(idx);
    Layer layer;
    if (a.has(prefix + ".net.0.weight")) {
      layer.kind = Layer::kResBlock;
      for (int j = 0; j < 3; ++j) {
        Conv& c = layer.res[j];
        PG_ASSIGN_OR_RETURN(c.w, load_conv_weights(a, prefix + ".net." + std::to_string(2 * j),
                                                   false, channels, &c.in, &c.out, &c.k, &c.b));
        if (c.out != channels) {
          return invalid_argument(name + ": residual block '" + prefix +
                                  "' changes the channel count (" + std::to_string(channels) +
                                  " -> " + std::to_string(c.out) + ")");
        }
      }
    } else {
      const bool transposed = idx != 0 && idx != last;
      Conv& c = layer.conv;
      c.transposed = transposed;
      PG_ASSIGN_OR_RETURN(
          c.w, load_conv_weights(a, prefix, transposed, channels, &c.in, &c.out, &c.k, &c.b));
      layer.relu = idx != last;
      channels = c.out;
      if (transposed) size = (size - 1) * 2 - 2 + c.k;
      if (size < 1 || size > kMaxMaskSize) {
        return invalid_argument(name + ": the decoder's output side would be " +
                                std::to_string(size) + " after '" + prefix + "'");
      }
    }
    if (idx == last && (layer.kind != Layer::kConv || layer.conv.out != 1)) {
      return invalid_argument(name + ": the last layer '" + prefix +
                              "' must be a conv to 1 channel");
    }
    d.layers_.push_back(std::move(layer));
  }
  d.mask_size_ = static_cast<int>(size);

  // Repack PyTorch layouts to [k, k, in, out].
  auto repack = [](Conv& c) {
    std::vector<float> r(c.w.size());
    const int k = c.k;
    for (int o = 0; o < c.out; ++o) {
      for (int i = 0; i < c.in; ++i) {
        for (int ky = 0; ky < k; ++ky) {
          for (int kx = 0; kx < k; ++kx) {
            const size_t src = c.transposed
                                   ? ((static_cast<size_t>(i) * c.out + o) * k + ky) * k + kx
                                   : ((static_cast<size_t>(o) * c.in + i) * k + ky) * k + kx;
            r[((static_cast<size_t>(ky) * k + kx) * c.in + i) * c.out + o] = c.w[src];
          }
        }
      }
    }
    c.w = std::move(r);
  };
  for (Layer& l : d.layers_) {
    if (l.kind == Layer::kConv) repack(l.conv);
    for (Conv& c : l.res) {
      if (!c.w.empty()) repack(c);
    }
  }
  return d;
}

// x: [h, w, in] -> y: [ho, wo, out]. Plain: stride 1, padding k/2 (ho = h). Transposed:
// stride 2, padding 1 (ho = 2h - 4 + k), written as a gather so output rows run in parallel:
// y[oy, ox] += x[iy, ix] * W[ky, kx] for oy = 2 iy - 1 + ky.
std::vector<float> VaeDecoder::apply(const Conv& c, const std::vector<float>& x, int h, int w,
                                     int* ho_out, int* wo_out) {
  const int k = c.k, in = c.in, out = c.out;
  const int ho = c.transposed ? (h - 1) * 2 - 2 + k : h;
  const int wo = c.transposed ? (w - 1) * 2 - 2 + k : w;
  std::vector<float> y(static_cast<size_t>(ho) * wo * out);
  auto row = [&](int64_t oy0, int64_t oy1) {
    for (int oy = static_cast<int>(oy0); oy < oy1; ++oy) {
      for (int ox = 0; ox < wo; ++ox) {
        float* acc = &y[(static_cast<size_t>(oy) * wo + ox) * out];
        std::copy(c.b.begin(), c.b.end(), acc);
        for (int ky = 0; ky < k; ++ky) {
          int iy;
          if (c.transposed) {
            const int t = oy + 1 - ky;  // = 2 iy
            if (t < 0 || t % 2 != 0 || t / 2 >= h) continue;
            iy = t / 2;
          } else {
            iy = oy + ky - k / 2;
            if (iy < 0 || iy >= h) continue;
          }
          for (int kx = 0; kx < k; ++kx) {
            int ix;
            if (c.transposed) {
              const int t = ox + 1 - kx;
              if (t < 0 || t % 2 != 0 || t / 2 >= w) continue;
              ix = t / 2;
            } else {
              ix = ox + kx - k / 2;
              if (ix < 0 || ix >= w) continue;
            }
            const float* xin = &x[(static_cast<size_t>(iy) * w + ix) * in];
            const float* wk = &c.w[(static_cast<size_t>(ky) * k + kx) * in * out];
            for (int i = 0; i < in; ++i) {
              const float v = xin[i];
              const float* wr = wk + static_cast<size_t>(i) * out;
              for (int o = 0; o < out; ++o) acc[o] += v * wr[o];
            }
          }
        }
      }
    }
  };
  parallel_for(ho, 1, row);
  *ho_out = ho;
  *wo_out = wo;
  return y;
}

Result<std::vector<float>> VaeDecoder::decode(const std::vector<int>& codes) const {
  const int n = num_codes();
  if (static_cast<int>(codes.size()) != n) {
    return invalid_argument("expected " + std::to_string(n) + " mask codes, got " +
                            std::to_string(codes.size()));
  }
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] < 0 || codes[i] >= codebook_size_) {
      return out_of_range("mask code " + std::to_string(codes[i]) + " (position " +
                          std::to_string(i) + ") is outside the codebook of " +
                          std::to_string(codebook_size_) + " entries");
    }
  }
  // x: [4, 4, D], codebook rows in row-major grid order
  int h = grid_, w = grid_;
  std::vector<float> x(static_cast<size_t>(n) * dim_);
  for (int i = 0; i < n; ++i) {
    std::copy_n(&codebook_[static_cast<size_t>(codes[i]) * dim_], dim_,
                &x[static_cast<size_t>(i) * dim_]);
  }
  auto relu = [](std::vector<float>& v) {
    for (float& f : v) f = f > 0.0f ? f : 0.0f;
  };
  for (const Layer& l : layers_) {
    if (l.kind == Layer::kResBlock) {
      // x + Conv1x1(ReLU(Conv3x3(ReLU(Conv3x3(x))))), x: [h, w, C]
      int ho, wo;
      std::vector<float> r = apply(l.res[0], x, h, w, &ho, &wo);
      relu(r);
      r = apply(l.res[1], r, h, w, &ho, &wo);
      relu(r);
      r = apply(l.res[2], r, h, w, &ho, &wo);
      for (size_t i = 0; i < x.size(); ++i) x[i] += r[i];
    } else {
      int ho, wo;
      x = apply(l.conv, x, h, w, &ho, &wo);  // [ho, wo, out]
      h = ho;
      w = wo;
      if (l.relu) relu(x);
    }
  }
  return x;  // [S, S, 1]
}

}  // namespace pg::tasks
