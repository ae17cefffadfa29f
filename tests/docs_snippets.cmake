# Every ```cpp block in README.md and docs/*.md is a complete translation unit; each is
# extracted at configure time (with a #line pointing back at the markdown) and compiled into
# crowdloss_docs_snippets, so a snippet that stops compiling fails the build. Blocks fenced
# with another language tag (```cmake, ```sh, ``` …) are not compiled.
file(GLOB _doc_files CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/docs/*.md")
list(APPEND _doc_files "${PROJECT_SOURCE_DIR}/README.md")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_doc_files})

set(_snippet_dir "${CMAKE_CURRENT_BINARY_DIR}/docs_snippets")
file(REMOVE_RECURSE "${_snippet_dir}")
file(MAKE_DIRECTORY "${_snippet_dir}")
foreach(_doc IN LISTS _doc_files)
  get_filename_component(_name "${_doc}" NAME_WE)
  execute_process(
    COMMAND awk -v dir=${_snippet_dir} -v base=${_name} -v src=${_doc} [=[
      /^```cpp[ \t]*$/ { n++; f = sprintf("%s/%s_%d.cpp", dir, base, n);
                         printf("#line %d \"%s\"\n", NR + 1, src) > f; inside = 1; next }
      /^```/           { if (inside) close(f); inside = 0; next }
      inside           { print > f }]=] "${_doc}"
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "extracting code snippets from ${_doc} failed")
  endif()
endforeach()
# The code blocks of the headers' doc comments (`/// ```cpp` … `/// ````, which doxygen renders as
# code) are compiled too: each becomes a block in a function of header_examples.cpp, with #line
# pointing at the header. The function declares the inputs examples use without defining them
# (pred, target, boxes, scores, gt_boxes, …: see tests/header_examples_prelude.hpp); an example
# may declare its own, which then shadow those.
set(_header_id 0)
file(GLOB_RECURSE _headers CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/include/crowdloss/*.hpp")
list(SORT _headers)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_headers})
set(_examples "${_snippet_dir}/header_examples.cpp")
file(WRITE "${_examples}" "#include \"${CMAKE_CURRENT_SOURCE_DIR}/header_examples_prelude.hpp\"\n")
foreach(_header IN LISTS _headers)
  execute_process(
    COMMAND awk -v src=${_header} -v id=${_header_id} [=[
      {
        is_comment = match($0, /^[ \t]*\/\/\/ ?/)
        text = is_comment ? substr($0, RSTART + RLENGTH) : ""
        if (inside && is_comment && text ~ /^```[ \t]*$/) { print "  }\n}"; inside = 0; next }
        if (inside && !is_comment) { print "unterminated ```cpp block in " src > "/dev/stderr"; exit 1 }
        if (inside) printf("#line %d \"%s\"\n%s\n", NR, src, text)
        if (!inside && is_comment && text ~ /^```cpp[ \t]*$/) {
          n++; inside = 1
          printf("void example_%d_%d() {\n  CROWDLOSS_EXAMPLE_INPUTS\n  {\n", id, n)
        }
      }
      END { if (inside) { print "unterminated ```cpp block in " src > "/dev/stderr"; exit 1 } }]=] "${_header}"
    OUTPUT_VARIABLE _functions RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "extracting the examples of ${_header} failed")
  endif()
  file(APPEND "${_examples}" "${_functions}")
  math(EXPR _header_id "${_header_id} + 1")
endforeach()

file(GLOB _snippets "${_snippet_dir}/*.cpp")
list(LENGTH _snippets _count)
message(STATUS "crowdloss: ${_count} C++ snippets from the docs are compiled")

add_library(crowdloss_docs_snippets OBJECT ${_snippets})
target_link_libraries(crowdloss_docs_snippets PRIVATE crowdloss::crowdloss crowdloss_warnings)
# The LibTorch headers that crowdloss's own headers include, precompiled once for all snippets
# (parsing them was about 40% of each snippet's compile time). crowdloss's headers stay out of it,
# so a snippet that forgets to include them still fails.
set(_torch_includes "")
foreach(_header IN LISTS _headers)
  file(STRINGS "${_header}" _lines REGEX "^#include <(torch|ATen|c10)/")
  list(APPEND _torch_includes ${_lines})
endforeach()
list(REMOVE_DUPLICATES _torch_includes)
list(SORT _torch_includes)
list(JOIN _torch_includes "\n" _torch_includes)
file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/docs_snippets_torch.hpp" CONTENT "${_torch_includes}\n")
target_precompile_headers(crowdloss_docs_snippets PRIVATE "${CMAKE_CURRENT_BINARY_DIR}/docs_snippets_torch.hpp")
# The library's own code is held to -Wsign-conversion here (and so to the casts it needs, no
# more): the examples call every public function, and the dtype dispatch of each instantiates
# every kernel. LibTorch's headers are system headers, so only crowdloss's lines are checked.
# The snippets are compiled, never run: -O0 compiles them in about half the time (the tests
# compile the same code optimised, with the optimiser's warnings).
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(crowdloss_docs_snippets PRIVATE -Wsign-conversion -O0)
endif()
