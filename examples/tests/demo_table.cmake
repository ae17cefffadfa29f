# Runs `PROGRAM demo --threads THREADS --out OUT` (crowdloss-count or crowdloss-detect) and
# compares the table of OUT/results.md with EXPECTED, the committed copy in docs/results/: every
# row, every column but the last (times, which vary from run to run). A difference fails with both
# tables and what to do if the change is intended. The run is deterministic for a given CPU type,
# kernel instruction sets, thread count and LibTorch version (oneDNN picks its code and blocking
# by CPU family, model and cache, LibTorch and crowdloss their kernels by instruction set, and a
# different summation order changes the training trajectory): where one of those differs from the
# committed run's, or the committed run did not record them (then before the demo runs), the test
# says so and is skipped (the test's SKIP_REGULAR_EXPRESSION matches "machine differs"). With
# -DRESULTS=FILE instead of PROGRAM, FILE is compared without a run (the script's own tests).
cmake_minimum_required(VERSION 3.19)
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

# "CPU|crowdloss kernels|LibTorch kernels|threads|LibTorch version" of a results.md's provenance
# line ("" where the line predates the LibTorch kernels' field, and with it the CPU's signature).
function(machine_key file out)
  file(READ "${file}" text)  # not file(STRINGS): that escapes the line's semicolons
  string(REGEX MATCH "Made by [^\n]*" made "${text}")
  set(cores "on [0-9-]+: (.*), [0-9]+ cores, crowdloss kernels ([^,]+), ")
  if(made MATCHES "${cores}LibTorch kernels ([^,]+), ([0-9]+) threads; .*LibTorch ([^;]+);")
    set(${out} "${CMAKE_MATCH_1}|${CMAKE_MATCH_2}|${CMAKE_MATCH_3}|${CMAKE_MATCH_4}|${CMAKE_MATCH_5}" PARENT_SCOPE)
  elseif(made MATCHES "${cores}([0-9]+) threads; .*LibTorch ([^;]+);")
    set(${out} "" PARENT_SCOPE)
  else()
    message(FATAL_ERROR "${file}: no provenance line ('Made by ... on DATE: CPU (SIGNATURE), N cores, crowdloss "
                        "kernels ISA, LibTorch kernels ISA, N threads; ... LibTorch V; commit C.')")
  endif()
endfunction()

# A committed run without the full key cannot be compared: skipped before the demo runs.
machine_key("${EXPECTED}" committed_machine)
if(committed_machine STREQUAL "")
  message(STATUS "machine differs: the committed run (${EXPECTED}) did not record the CPU's signature and the "
                 "LibTorch kernels, so the tables are not comparable; the test is skipped")
  return()
endif()

if(DEFINED RESULTS)
  set(results "${RESULTS}")
else()
  set(demo "${PROGRAM}" demo --threads "${THREADS}" --out "${OUT}")
  execute_process(COMMAND ${demo} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the demo failed (${rc}): ${demo}")
  endif()
  set(results "${OUT}/results.md")
endif()

machine_key("${results}" this_machine)
if(this_machine STREQUAL "")
  message(FATAL_ERROR "${results}: the provenance line names no LibTorch kernels")
endif()
if(NOT this_machine STREQUAL committed_machine)
  message(STATUS "machine differs from the committed run's (CPU|crowdloss kernels|LibTorch kernels|threads|"
                 "LibTorch): this run ${this_machine}, committed ${committed_machine}; the tables are not "
                 "comparable, the test is skipped")
  return()
endif()

table_rows("${results}" actual)
table_rows("${EXPECTED}" expected)
if(actual STREQUAL "")
  message(FATAL_ERROR "no table in ${results}")
endif()
if(NOT actual STREQUAL expected)
  message(FATAL_ERROR "The demo's table (${results}) differs from the committed one (${EXPECTED}), "
                      "last column left out:\n\nthis run:\n${actual}\ncommitted:\n${expected}\n"
                      "If the change is intended, commit the new results with scripts/update-results.sh.")
endif()
message(STATUS "the table matches ${EXPECTED}:\n${actual}")
