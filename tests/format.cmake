# ctest's `format`: every C++ source of the project is formatted as .clang-format says
# (clang-format --dry-run -Werror). Run as
#   cmake -DSOURCE=<repo> -DCLANG_FORMAT=<clang-format> -P tests/format.cmake
# The expected output depends on clang-format's major version; the project's is Debian 12's 14,
# and with another the test is skipped (ctest reads CROWDLOSS_SKIPPED), not failed.
execute_process(COMMAND "${CLANG_FORMAT}" --version OUTPUT_VARIABLE _version OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _version MATCHES "version 14\\.")
  message("CROWDLOSS_SKIPPED: the format check needs clang-format 14, found: ${_version}")
  return()
endif()
set(_files)
foreach(_dir include tests examples bench fuzz)
  file(GLOB_RECURSE _found "${SOURCE}/${_dir}/*.hpp" "${SOURCE}/${_dir}/*.cpp")
  list(APPEND _files ${_found})
endforeach()
list(FILTER _files EXCLUDE REGEX "/tests/data/")
list(LENGTH _files _count)
execute_process(COMMAND "${CLANG_FORMAT}" --dry-run -Werror --style=file ${_files}
                WORKING_DIRECTORY "${SOURCE}" RESULT_VARIABLE _result ERROR_VARIABLE _errors)
if(NOT _result EQUAL 0)
  message("${_errors}")
  message(FATAL_ERROR "format: files above differ from .clang-format's layout; fix them with\n"
                      "  clang-format -i --style=file <files>   (Debian 12's clang-format 14)")
endif()
message("format: ${_count} files match .clang-format")
