# Writes OUT: a C++ source defining pg::runtime::builtin_presets() from the JSON files
# in DIR (name = file name without .json). Run with cmake -DDIR=... -DOUT=... -P.
file(GLOB files "${DIR}/*.json")
list(SORT files)
set(body "")
foreach(f ${files})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} text)
  string(APPEND body "      {\"${name}\", R\"PGJSON(${text})PGJSON\"},\n")
endforeach()
file(WRITE ${OUT}.tmp "// Generated from bench/presets by cmake/embed_presets.cmake. Do not edit.\n#include \"runtime/bench.h\"\n\nnamespace pg::runtime {\n\nconst std::vector<std::pair<std::string, std::string>>& builtin_presets() {\n  static const std::vector<std::pair<std::string, std::string>> presets = {\n${body}  };\n  return presets;\n}\n\n}  // namespace pg::runtime\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
