# crowdloss_label_discovered_tests(<target> <labels> [GPU_MATCHING <regex>])
#
# Gives every ctest test that doctest_discover_tests(<target>) registers the labels <labels> (a
# list), and also `gpu` to those whose name matches <regex>. doctest's PROPERTIES cannot carry a
# list (its generated set_tests_properties call flattens it, shifting every later property), and
# the names are known only when ctest reads the directory, so this appends a file to the
# directory's TEST_INCLUDE_FILES that ctest reads after the discovery's own.
function(crowdloss_label_discovered_tests target labels)
  cmake_parse_arguments(PARSE_ARGV 2 _arg "" "GPU_MATCHING" "")
  set(_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake")
  set(_gpu "")
  if(_arg_GPU_MATCHING)
    set(_gpu "  if(_test MATCHES [=[${_arg_GPU_MATCHING}]=])\n    set(_labels \"${labels};gpu\")\n  endif()\n")
  endif()
  file(WRITE "${_file}"
       "foreach(_test IN LISTS ${target}_TESTS)\n  set(_labels \"${labels}\")\n${_gpu}"
       "  set_tests_properties(\"\${_test}\" PROPERTIES LABELS \"\${_labels}\")\nendforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_file}")
endfunction()
