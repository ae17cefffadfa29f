# Compiles the NVRTC sources of crowdloss's CUDA kernels as CUDA device code with Clang, for a GPU
# architecture, without CUDA: a syntax, type and warning check of the kernels on every commit,
# since NVRTC itself only runs on a GPU machine.
# -DSOURCES=<nvrtc_sources executable> -DCLANG=<clang++> -DWORK=<folder> -DBUILTINS=<nvrtc_builtins.h>
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
execute_process(COMMAND "${SOURCES}" "${WORK}" RESULT_VARIABLE rc OUTPUT_VARIABLE files)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nvrtc_sources failed (${rc})")
endif()
string(STRIP "${files}" files)
string(REPLACE "\n" ";" files "${files}")
foreach(file IN LISTS files)
  foreach(arch sm_70 sm_80)
    execute_process(
      COMMAND "${CLANG}" -x cuda --cuda-device-only --cuda-gpu-arch=${arch} -nocudainc -nocudalib -std=c++17
              -Wall -Wextra -Werror -Wno-unknown-cuda-version -include "${BUILTINS}" -S -o "${file}.${arch}.ptx" "${file}"
      RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${file} does not compile as CUDA (${arch}):\n${err}")
    endif()
    file(STRINGS "${file}.${arch}.ptx" entries REGEX "^\\.visible \\.entry")
    list(LENGTH entries count)
    if(count EQUAL 0)
      message(FATAL_ERROR "${file} (${arch}): no kernel in the PTX")
    endif()
    message(STATUS "${file} (${arch}): ${count} kernels")
  endforeach()
endforeach()
