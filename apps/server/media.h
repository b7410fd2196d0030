// Image payloads as clients send them: base64, data: URLs, and a look at the image header
// (format and size) before anything is decoded, so a decompression bomb is refused cheaply.
// Pure functions over bytes: no I/O, no allocation beyond their results.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgserve {

// Decodes standard or URL-safe base64 (padding optional, ASCII whitespace ignored).
// Takes the text; returns the bytes, or nullopt on any other character or a bad length.
std::optional<std::string> base64_decode(std::string_view text);

// Encodes bytes as standard base64 with padding.
std::string base64_encode(std::string_view bytes);

// A parsed "data:<mime>;base64,<payload>" URL.
struct DataUrl {
  std::string mime;          // e.g. "image/png" (lower case; may be empty)
  std::string_view payload;  // the base64 text, a view into the URL
};

// Takes a URL string; returns its parts when it is a base64 data: URL, nullopt otherwise.
std::optional<DataUrl> parse_data_url(std::string_view url);

// What the header of an encoded image says.
struct ImageHeader {
  std::string format;  // "png" or "jpeg"
  int64_t width = 0;
  int64_t height = 0;
};

// Takes encoded image bytes; returns the format and dimensions read from the PNG IHDR chunk
// or the first JPEG SOFn marker, or nullopt when the bytes are neither (or the header is
// cut short). Reads at most the header: nothing is decoded.
std::optional<ImageHeader> probe_image(std::string_view bytes);

}  // namespace pgserve
