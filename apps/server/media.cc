#include "media.h"

#include <array>
#include <cctype>

namespace pgserve {
namespace {

// Maps a base64 character (either alphabet) to its 6-bit value; -1 for anything else.
constexpr std::array<int8_t, 256> make_base64_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(alphabet[i])] = static_cast<int8_t>(i);
  t[static_cast<uint8_t>('-')] = 62;
  t[static_cast<uint8_t>('_')] = 63;
  return t;
}
constexpr std::array<int8_t, 256> kBase64 = make_base64_table();

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f'; }

uint32_t be16(const unsigned char* p) { return (uint32_t{p[0]} << 8) | p[1]; }
uint32_t be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

std::optional<ImageHeader> probe_png(std::string_view b) {
  // Signature (8), then the IHDR chunk: length (4), "IHDR", width (4), height (4).
  if (b.size() < 24) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  if (b.substr(12, 4) != "IHDR") return std::nullopt;
  return ImageHeader{"png", be32(p + 16), be32(p + 20)};
}

std::optional<ImageHeader> probe_jpeg(std::string_view b) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  size_t i = 2;  // after SOI
  while (i + 4 <= b.size()) {
    if (p[i] != 0xFF) return std::nullopt;
    const unsigned char marker = p[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      i += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) return std::nullopt;  // EOI / SOS before any SOF
    const uint32_t len = be16(p + i + 2);
    if (len < 2) return std::nullopt;
    const bool sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      // length (2), precision (1), height (2), width (2)
      if (i + 9 > b.size()) return std::nullopt;
      return ImageHeader{"jpeg", be16(p + i + 7), be16(p + i + 5)};
    }
    i += 2 + len;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  size_t symbols = 0;
  for (char c : text) {
    if (is_space(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return std::nullopt;  // data after padding
    const int v = kBase64[static_cast<uint8_t>(c)];
    if (v < 0) return std::nullopt;
    ++symbols;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (padding > 2 || symbols % 4 == 1) return std::nullopt;
  if (padding > 0 && (symbols + padding) % 4 != 0) return std::nullopt;
  return out;
}

std::string base64_encode(std::string_view bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<uint8_t>(bytes[i])} << 16) |
                       (uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(alphabet[(v >> s) & 63]);
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{static_cast<uint8_t>(bytes[i])} << 16;
    if (rest == 2) v |= uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<DataUrl> parse_data_url(std::string_view url) {
  if (url.size() < 5) return std::nullopt;
  for (size_t i = 0; i < 5; ++i) {
    if (std::tolower(static_cast<unsigned char>(url[i])) != "data:"[i]) return std::nullopt;
  }
  const size_t comma = url.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  std::string_view meta = url.substr(5, comma - 5);
  // The parameters end with ";base64" (case-insensitive); other parameters may come before.
  constexpr std::string_view kB64 = ";base64";
  if (meta.size() < kB64.size()) return std::nullopt;
  std::string_view tail = meta.substr(meta.size() - kB64.size());
  for (size_t i = 0; i < kB64.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(tail[i])) != kB64[i]) return std::nullopt;
  }
  std::string_view type = meta.substr(0, meta.size() - kB64.size());
  type = type.substr(0, type.find(';'));
  DataUrl d;
  for (char c : type)
    d.mime.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  d.payload = url.substr(comma + 1);
  return d;
}

std::optional<ImageHeader> probe_image(std::string_view bytes) {
  if (bytes.size() >= 8 && bytes.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) {
    return probe_png(bytes);
  }
  if (bytes.size() >= 3 && static_cast<uint8_t>(bytes[0]) == 0xFF &&
      static_cast<uint8_t>(bytes[1]) == 0xD8 && static_cast<uint8_t>(bytes[2]) == 0xFF) {
    return probe_jpeg(bytes);
  }
  return std::nullopt;
}

}  // namespace pgserve
