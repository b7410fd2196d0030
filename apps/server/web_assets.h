// The web page's files (apps/server/web/*), compiled into the binary by
// apps/server/embed.cmake so that the page needs nothing from outside.
#pragma once

#include <cstddef>
#include <string_view>

namespace pgserve {

struct WebAsset {
  const char* path;          // URL path: "/", "/app.js", ...
  const char* content_type;  // "text/html; charset=utf-8", ...
  const unsigned char* data;
  size_t size;
};

// Takes a URL path; returns its file, or nullptr when there is none.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace pgserve
