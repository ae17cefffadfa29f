# The tests of demo_table.cmake's comparison (ctest examples.demo_table.compare): results files
# written into DIR are compared with a committed one through -DRESULTS, and each case must end as
# expected: a match passes, a changed cell fails, and another machine's run, or a committed run
# that did not record the machine's signature (before the demo runs), is skipped.
cmake_minimum_required(VERSION 3.19)
set(table "| method | test MAE | train time |\n| --- | ---: | ---: |\n| pixel L2 | 230.9 | 155 s |\n")
set(this "AMD EPYC (family 25 model 1, L3 32768K), 2 cores, crowdloss kernels AVX2, LibTorch kernels AVX2")
function(results name table machine)
  file(WRITE "${DIR}/${name}.md" "${table}\nMade by `crowdloss-count demo` on 2026-12-07: ${machine}, 2 threads; "
                                 "crowdloss 0.1.0, LibTorch 1.13.0; commit 0123456789ab.\n")
endfunction()
file(MAKE_DIRECTORY "${DIR}")
results(committed "${table}" "${this}")
string(REPLACE "155 s" "171 s" slower "${table}")
results(slower "${slower}" "${this}")
string(REPLACE "230.9" "231.0" changed "${table}")
results(changed "${changed}" "${this}")
string(REPLACE "model 1," "model 17," zen4 "${this}")
results(zen4 "${table}" "${zen4}")
string(REPLACE "LibTorch kernels AVX2" "LibTorch kernels AVX512" avx512 "${this}")
results(avx512 "${table}" "${avx512}")
results(unrecorded "${table}" "AMD EPYC, 2 cores, crowdloss kernels AVX2")

# Runs the comparison of DIR/RESULTS.md with DIR/EXPECTED.md; fails unless its exit code is
# `code` and its output matches `pattern`, whose blanks also match line breaks (CMake wraps an
# error's text where the paths in it make the lines long).
function(expect results expected code pattern)
  string(REPLACE " " "[ \n]+" pattern "${pattern}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -DRESULTS=${DIR}/${results}.md -DEXPECTED=${DIR}/${expected}.md -P
                          "${CMAKE_CURRENT_LIST_DIR}/demo_table.cmake"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT rc EQUAL code OR NOT output MATCHES "${pattern}")
    message(FATAL_ERROR "${results} against ${expected}: exit code ${rc} (expected ${code}), output not matching "
                        "'${pattern}':\n${output}")
  endif()
endfunction()
expect(slower committed 0 "the table matches")
expect(changed committed 1 "differs from the committed one.*231\\.0")
expect(zen4 committed 0 "machine differs from the committed run's.*model 17")
expect(avx512 committed 0 "machine differs from the committed run's.*AVX512")
expect(committed unrecorded 0 "machine differs: the committed run .* did not record")
expect(unrecorded committed 1 "names no LibTorch kernels")
# A committed run without the key is skipped before the demo runs: a program that fails is not run.
execute_process(COMMAND "${CMAKE_COMMAND}" -DPROGRAM=${CMAKE_COMMAND}-does-not-exist -DTHREADS=2 -DOUT=${DIR}/run
                        -DEXPECTED=${DIR}/unrecorded.md -P "${CMAKE_CURRENT_LIST_DIR}/demo_table.cmake"
                RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(NOT rc EQUAL 0 OR NOT output MATCHES "machine differs: the committed run")
  message(FATAL_ERROR "an unrecorded committed run: exit code ${rc}, the demo run before the skip:\n${output}")
endif()
message(STATUS "demo_table.cmake: 7 cases as expected")
