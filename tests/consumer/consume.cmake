# ctest driver for tests/consumer. Run as
#   cmake -DSETTINGS=<settings.cmake> -DMODE=find_package|add_subdirectory -P consume.cmake
# find_package: install crowdloss into a fresh prefix, then configure, build and run the consumer
# against it. add_subdirectory: configure, build and run the consumer on the source tree.
include("${SETTINGS}")

function(step what)
  message(STATUS "consumer (${MODE}): ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): '${what}' failed (${rc})")
  endif()
endfunction()

set(work "${WORK_DIR}/${MODE}")
set(prefix "${work}/prefix")
if(MODE STREQUAL "find_package")
  # A fresh prefix every time, so files left from an earlier install cannot hide a missing rule.
  file(REMOVE_RECURSE "${prefix}")
  step("install into ${prefix}" "${CMAKE_COMMAND}" --install "${CROWDLOSS_BUILD_DIR}" --prefix "${prefix}")
endif()
step("configure" "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${work}/build" -G "${GENERATOR}"
     "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
     "-DCMAKE_PREFIX_PATH=${prefix};${PARENT_PREFIX_PATH}" "-DCROWDLOSS_CONSUME=${MODE}"
     "-DCROWDLOSS_SOURCE_DIR=${CROWDLOSS_SOURCE_DIR}"
     "-DEXPECTED_PREFIX=${prefix}" "-DEXPECTED_VERSION=${EXPECTED_VERSION}")
step("build" "${CMAKE_COMMAND}" --build "${work}/build")
step("run" "${work}/build/crowdloss_consumer")
