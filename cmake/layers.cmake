# pg_layer(NAME DIR SOURCES... [DEPS libs...] [EXTERNAL libs...])
#
# Builds one layer of the engine as a static library. The headers of a layer are
# reachable as "<dir>/<header>.h" only by targets that link the layer: each layer gets
# a private include root under the build tree holding a single link to its own
# folder, so an include of a layer that is not linked (an upward include) fails to
# compile.
function(pg_layer name dir)
  cmake_parse_arguments(L "" "" "SOURCES;DEPS;EXTERNAL" ${ARGN})
  get_filename_component(leaf ${dir} NAME)
  set(root ${CMAKE_BINARY_DIR}/layer-include/${name})
  file(MAKE_DIRECTORY ${root})
  if(NOT EXISTS ${root}/${leaf})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${dir} ${root}/${leaf} SYMBOLIC)
  endif()
  add_library(${name} STATIC ${L_SOURCES})
  target_include_directories(${name} PUBLIC ${root})
  target_link_libraries(${name} PUBLIC ${L_DEPS} PRIVATE ${L_EXTERNAL})
endfunction()
