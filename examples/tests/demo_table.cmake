# Runs `PROGRAM demo --threads THREADS --out OUT` (crowdloss-count or crowdloss-detect) and
# compares the table of OUT/results.md with EXPECTED, the committed copy in docs/results/: every
# row, every column but the last (times, which vary from run to run). A difference fails with both
# tables and what to do if the change is intended. The run is deterministic for a given CPU model,
# kernel instruction set, thread count and LibTorch version (oneDNN and the crowdloss kernels pick
# their code by CPU, and a different summation order changes the training trajectory): where one
# of those differs from the committed run's, the test says so and is skipped (the test's
# SKIP_REGULAR_EXPRESSION matches "machine differs").
cmake_minimum_required(VERSION 3.19)
set(demo "${PROGRAM}" demo --threads "${THREADS}" --out "${OUT}")
execute_process(COMMAND ${demo} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the demo failed (${rc}): ${demo}")
endif()

# The table's rows of a results.md, each without its last cell.
function(table_rows file out)
  if(NOT EXISTS "${file}")
    message(FATAL_ERROR "${file} does not exist")
  endif()
  file(STRINGS "${file}" lines REGEX "^\\|" ENCODING UTF-8)
  set(rows "")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE " [^|]*\\|$" "" line "${line}")
    string(APPEND rows "${line}\n")
  endforeach()
  set(${out} "${rows}" PARENT_SCOPE)
endfunction()

# "CPU model|kernels|threads|LibTorch version" of a results.md's provenance line.
function(machine_key file out)
  file(READ "${file}" text)  # not file(STRINGS): that escapes the line's semicolons
  string(REGEX MATCH "Made by [^\n]*" made "${text}")
  if(NOT made MATCHES "on [0-9-]+: (.*), [0-9]+ cores, crowdloss kernels ([^,]+), ([0-9]+) threads; .*LibTorch ([^;]+);")
    message(FATAL_ERROR "${file}: no provenance line ('Made by ... on DATE: CPU, N cores, crowdloss kernels ISA, N threads; ... LibTorch V; commit C.')")
  endif()
  set(${out} "${CMAKE_MATCH_1}|${CMAKE_MATCH_2}|${CMAKE_MATCH_3}|${CMAKE_MATCH_4}" PARENT_SCOPE)
endfunction()

machine_key("${OUT}/results.md" this_machine)
machine_key("${EXPECTED}" committed_machine)
if(NOT this_machine STREQUAL committed_machine)
  message(STATUS "machine differs from the committed run's (CPU|kernels|threads|LibTorch): this run ${this_machine}, "
                 "committed ${committed_machine}; the tables are not comparable, the test is skipped")
  return()
endif()

table_rows("${OUT}/results.md" actual)
table_rows("${EXPECTED}" expected)
if(actual STREQUAL "")
  message(FATAL_ERROR "no table in ${OUT}/results.md")
endif()
if(NOT actual STREQUAL expected)
  message(FATAL_ERROR "The demo's table (${OUT}/results.md) differs from the committed one (${EXPECTED}), "
                      "last column left out:\n\nthis run:\n${actual}\ncommitted:\n${expected}\n"
                      "If the change is intended, commit the new results with scripts/update-results.sh.")
endif()
message(STATUS "the table matches ${EXPECTED}:\n${actual}")
