# ctest driver: install crowdloss into a fresh prefix, then configure, build and run the consumer
# project against that prefix. Run as: cmake -DSETTINGS=<settings.cmake> -P install_and_consume.cmake
include("${SETTINGS}")

function(step what)
  message(STATUS "consumer test: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${what}' failed (${rc})")
  endif()
endfunction()

set(prefix "${WORK_DIR}/prefix")
# A fresh prefix every time, so files left from an earlier install cannot hide a missing rule.
file(REMOVE_RECURSE "${prefix}")
step("install into ${prefix}" "${CMAKE_COMMAND}" --install "${CROWDLOSS_BUILD_DIR}" --prefix "${prefix}")
step("configure" "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
     "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
     "-DCMAKE_PREFIX_PATH=${prefix};${PARENT_PREFIX_PATH}"
     "-DEXPECTED_PREFIX=${prefix}" "-DEXPECTED_VERSION=${EXPECTED_VERSION}")
step("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
step("run" "${WORK_DIR}/build/crowdloss_consumer")
