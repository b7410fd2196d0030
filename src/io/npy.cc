#include "io/npy.h"

#include <bit>
#include <cassert>
#include <cstring>
#include <optional>
#include <string_view>

#include "io/mapped_file.h"

namespace pg::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              ".npy arrays are read and written little-endian; big-endian hosts are not supported");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;

// A value of the header dict, a Python literal: 'str', True/False, an int or a tuple of ints.
struct PyValue {
  enum Kind { kString, kBool, kInt, kTuple } kind = kString;
  std::string str;
  bool boolean = false;
  std::vector<uint64_t> ints;  // kInt: one element
};

// Parses the header dict, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view s) : s_(s) {}

  // Fills `out` with the dict's items; on failure returns false and error() says why.
  bool parse_dict(std::vector<std::pair<std::string, PyValue>>& out) {
    skip_ws();
    if (!eat('{')) return fail("does not start with '{'");
    while (true) {
      skip_ws();
      if (eat('}')) break;
      std::string key;
      if (!parse_string(key)) return fail("expected a quoted key");
      skip_ws();
      if (!eat(':')) return fail("expected ':' after '" + key + "'");
      skip_ws();
      PyValue value;
      if (!parse_value(key, value)) return false;
      out.emplace_back(std::move(key), std::move(value));
      skip_ws();
      if (eat('}')) break;
      if (!eat(',')) return fail("expected ',' or '}'");
    }
    skip_ws();
    if (pos_ != s_.size()) return fail("has text after the closing '}'");
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  bool fail(const std::string& why) {
    if (error_.empty()) error_ = why + " at offset " + std::to_string(pos_);
    return false;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool eat_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  // A quoted string without escapes (numpy's keys and type strings never have any).
  bool parse_string(std::string& out) {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return false;
    const char quote = s_[pos_++];
    const size_t end = s_.find(quote, pos_);
    if (end == std::string_view::npos) return false;
    out.assign(s_.substr(pos_, end - pos_));
    if (out.find('\\') != std::string::npos) return false;
    pos_ = end + 1;
    return true;
  }
  // A non-negative integer, with Python 2's optional 'L' suffix.
  bool parse_int(uint64_t& out) {
    const size_t start = pos_;
    out = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const uint64_t digit = static_cast<uint64_t>(s_[pos_] - '0');
      if (__builtin_mul_overflow(out, 10u, &out) || __builtin_add_overflow(out, digit, &out)) {
        return fail("integer too large");
      }
      ++pos_;
    }
    if (pos_ == start) return fail("expected a non-negative integer");
    eat('L');
    return true;
  }
  bool parse_value(const std::string& key, PyValue& v) {
    if (pos_ < s_.size() && (s_[pos_] == '\'' || s_[pos_] == '"')) {
      v.kind = PyValue::kString;
      return parse_string(v.str) || fail("bad string for '" + key + "'");
    }
    if (eat_word("True")) {
      v.kind = PyValue::kBool;
      v.boolean = true;
      return true;
    }
    if (eat_word("False")) {
      v.kind = PyValue::kBool;
      v.boolean = false;
      return true;
    }
    if (eat('(')) {
      v.kind = PyValue::kTuple;
      bool comma = false;  // "(5)" is an int in Python, "(5,)" a tuple
      while (true) {
        skip_ws();
        if (eat(')')) break;
        uint64_t d = 0;
        if (!parse_int(d)) return false;
        v.ints.push_back(d);
        skip_ws();
        comma = eat(',');
        if (!comma) {
          skip_ws();
          if (!eat(')')) return fail("expected ',' or ')' in '" + key + "'");
          break;
        }
      }
      if (v.ints.size() == 1 && !comma) v.kind = PyValue::kInt;
      return true;
    }
    if (pos_ < s_.size() && s_[pos_] == '[') {
      return fail("'" + key + "' is a list (structured dtypes are not supported)");
    }
    v.kind = PyValue::kInt;
    v.ints.resize(1);
    return parse_int(v.ints[0]);
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

// The dtype of a numpy type string such as '<f4'; nullopt if unsupported.
std::optional<DType> dtype_of_descr(const std::string& d) {
  if (d.size() < 3) return std::nullopt;
  const char order = d[0];
  const std::string_view code = std::string_view(d).substr(1);
  static const std::pair<std::string_view, DType> kTypes[] = {
      {"f4", DType::kF32}, {"f8", DType::kF64}, {"f2", DType::kF16},
      {"i8", DType::kI64}, {"i4", DType::kI32}, {"i2", DType::kI16},
      {"i1", DType::kI8},  {"u1", DType::kU8},  {"b1", DType::kBool}};
  for (const auto& [c, dtype] : kTypes) {
    if (code != c) continue;
    // '|' (not applicable) is what numpy writes for 1-byte types; '=' is native order.
    const bool ok = order == '<' || order == '=' || (dtype_size(dtype) == 1 && order == '|') ||
                    (dtype_size(dtype) == 1 && order == '>');
    return ok ? std::optional<DType>(dtype) : std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::string encode_npy(const float* data, const Shape& shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    assert(shape[i] >= 0);
    if (i > 0) dict += ", ";
    dict += std::to_string(shape[i]);
  }
  if (shape.size() == 1) dict += ",";
  dict += "), }";
  // Version 1.0 has a 2-byte header length; 2.0 (4 bytes) only when that does not fit.
  size_t prefix = kMagicLen + 2 + 2;
  size_t total = (prefix + dict.size() + 1 + kAlign - 1) / kAlign * kAlign;
  if (total - prefix > 0xffff) {
    prefix = kMagicLen + 2 + 4;
    total = (prefix + dict.size() + 1 + kAlign - 1) / kAlign * kAlign;
  }
  const size_t header_len = total - prefix;
  dict.append(header_len - dict.size() - 1, ' ');
  dict += '\n';

  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * sizeof(float);
  std::string out;
  out.reserve(total + nbytes);
  out.append(kMagic, kMagicLen);
  out += static_cast<char>(prefix == 10 ? 1 : 2);
  out += '\0';
  for (size_t i = 0; i < prefix - kMagicLen - 2; ++i) {
    out += static_cast<char>((header_len >> (8 * i)) & 0xff);
  }
  out += dict;
  if (nbytes > 0) out.append(reinterpret_cast<const char*>(data), nbytes);
  return out;
}

Status write_npy(const std::string& path, const float* data, const Shape& shape) {
  for (int64_t d : shape) {
    if (d < 0) return invalid_argument(path + ": invalid shape " + shape_to_string(shape));
  }
  if (shape_numel(shape) > 0 && data == nullptr) return invalid_argument(path + ": no data");
  const std::string bytes = encode_npy(data, shape);
  return write_file_atomic(path, bytes.data(), bytes.size());
}

Result<NpyArray> decode_npy(const uint8_t* bytes, size_t size, const std::string& name) {
  if (size < kMagicLen + 4 || std::memcmp(bytes, kMagic, kMagicLen) != 0) {
    return data_loss(name + ": not a .npy array (no \\x93NUMPY magic)");
  }
  const int major = bytes[6];
  const int minor = bytes[7];
  if (major < 1 || major > 3 || minor != 0) {
    return unimplemented(name + ": unsupported .npy format version " + std::to_string(major) + "." +
                         std::to_string(minor));
  }
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (size < prefix) return data_loss(name + ": truncated .npy header");
  uint64_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) header_len |= uint64_t{bytes[8 + i]} << (8 * i);
  if (header_len > size - prefix) {
    return data_loss(name + ": .npy header length " + std::to_string(header_len) + " exceeds the " +
                     std::to_string(size - prefix) + " bytes that follow; the file is truncated");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes + prefix), header_len);

  std::vector<std::pair<std::string, PyValue>> items;
  HeaderParser parser(header);
  if (!parser.parse_dict(items)) {
    return data_loss(name + ": bad .npy header: " + parser.error());
  }
  const PyValue* descr = nullptr;
  const PyValue* fortran = nullptr;
  const PyValue* shape = nullptr;
  for (const auto& [key, value] : items) {
    const PyValue** slot = key == "descr"           ? &descr
                           : key == "fortran_order" ? &fortran
                           : key == "shape"         ? &shape
                                                    : nullptr;
    if (slot == nullptr) return data_loss(name + ": .npy header has an unknown key '" + key + "'");
    if (*slot != nullptr) return data_loss(name + ": .npy header repeats '" + key + "'");
    *slot = &value;
  }
  if (descr == nullptr || fortran == nullptr || shape == nullptr) {
    return data_loss(name + ": .npy header lacks 'descr', 'fortran_order' or 'shape'");
  }
  if (descr->kind != PyValue::kString) return data_loss(name + ": 'descr' is not a string");
  if (fortran->kind != PyValue::kBool) return data_loss(name + ": 'fortran_order' is not a bool");
  if (shape->kind != PyValue::kTuple) return data_loss(name + ": 'shape' is not a tuple");

  NpyArray out;
  const auto dtype = dtype_of_descr(descr->str);
  if (!dtype) {
    return unimplemented(name + ": unsupported dtype '" + descr->str +
                         "' (supported: little-endian f4, f8, f2, i8, i4, i2, i1, u1, b1)");
  }
  out.dtype = *dtype;
  if (fortran->boolean) {
    return unimplemented(name + ": fortran_order True is not supported (save a C-order array)");
  }
  uint64_t nbytes = dtype_size(out.dtype);
  uint64_t numel = 1;
  for (uint64_t d : shape->ints) {
    if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel) ||
        numel > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(nbytes, d, &nbytes)) {
      return out_of_range(name + ": .npy shape has too many elements");
    }
    out.shape.push_back(static_cast<int64_t>(d));
  }
  const size_t data_size = size - prefix - header_len;
  if (data_size < nbytes) {
    return data_loss(name + ": " + descr->str + " array " + shape_to_string(out.shape) + " needs " +
                     std::to_string(nbytes) + " bytes of data, but only " +
                     std::to_string(data_size) + " follow the header; the file is truncated");
  }
  const uint8_t* data = bytes + prefix + header_len;
  out.data.assign(data, data + nbytes);
  return out;
}

Result<NpyArray> read_npy(const std::string& path) {
  PG_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return decode_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

}  // namespace pg::io
