# The ctest test `sanitizers`: the library's test suite and the libFuzzer harnesses, built with
# Clang under AddressSanitizer + UndefinedBehaviorSanitizer in a tree of their own (BUILD), then
# run there: every doctest case (crowdloss_tests, in one process), the SciPy comparison of
# linear_sum_assignment (lsa.scipy) and each fuzzer for CROWDLOSS_FUZZ_SECONDS plus its regression
# inputs (label `fuzz`). Any sanitizer report aborts the process it is in.
# -O1 with line tables only (reports keep file:line) compiles faster than RelWithDebInfo's -O2 -g.
# Inputs: SOURCE, BUILD, CXX (clang++), GENERATOR.
function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sanitizers: ${what} failed (${rc})")
  endif()
endfunction()

if(NOT EXISTS "${BUILD}/CMakeCache.txt")
  step(configure "${CMAKE_COMMAND}" -S "${SOURCE}" -B "${BUILD}" -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX}
       -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG"
       -DCROWDLOSS_SANITIZE=ON -DCROWDLOSS_BUILD_FUZZERS=ON -DCROWDLOSS_WERROR=ON
       -DCROWDLOSS_BUILD_BENCHMARKS=OFF -DCROWDLOSS_BUILD_DOCS=OFF -DCROWDLOSS_INSTALL=OFF)
endif()
step(build "${CMAKE_COMMAND}" --build "${BUILD}" --target crowdloss_tests lsa_solve crowdloss_fuzzers)
set(ENV{ASAN_OPTIONS} "abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:allocator_may_return_null=1")
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1")
# The doctest cases in one process: under ASan each process takes about 4 s to start (LibTorch's
# static initialisation, instrumented allocations), so one ctest test per case cost 740 core-seconds
# where one run of the executable takes 45 s (43 core-seconds). A failing case is named in its
# output all the same; the first sanitizer report ends the run.
step("library tests" "${BUILD}/tests/crowdloss_tests" WORKING_DIRECTORY "${BUILD}")
step("SciPy comparison and fuzzers" "${CMAKE_CTEST_COMMAND}" -R "^(lsa[.]scipy|fuzz[.].*)$" -j 2 --output-on-failure
     --no-tests=error
     WORKING_DIRECTORY "${BUILD}")
