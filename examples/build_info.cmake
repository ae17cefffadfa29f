# Writes OUT, a C++ file that defines crowdloss_examples::build_commit() (report.hpp): the commit
# of the git checkout at SOURCE_DIR, "-dirty" appended when tracked files differ from it,
# "unknown" outside a checkout. Run at every build; the file is rewritten only when its text
# changes, so a build after no new commit recompiles nothing.
cmake_minimum_required(VERSION 3.19)
execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit unknown)
else()
  execute_process(COMMAND git -C "${SOURCE_DIR}" status --porcelain --untracked-files=no
                  OUTPUT_VARIABLE changes RESULT_VARIABLE rc ERROR_QUIET)
  if(NOT rc EQUAL 0 OR NOT changes STREQUAL "")
    string(APPEND commit "-dirty")
  endif()
endif()
set(text "// Written by examples/build_info.cmake at build time.\nnamespace crowdloss_examples {\nconst char* build_commit() { return \"${commit}\"; }\n}  // namespace crowdloss_examples\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
