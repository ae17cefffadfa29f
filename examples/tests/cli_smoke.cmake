# Shared by the CLI smoke-test drivers: run(<what> <args>...) runs ${EXE} with the arguments,
# fails the test with the program's output on a non-zero exit, and leaves stdout in last_output.
function(run what)
  execute_process(COMMAND "${EXE}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${EXE} ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# expect_failure(<what> <args>...): the program must exit non-zero (bad input reported, no crash).
function(expect_failure what)
  execute_process(COMMAND "${EXE}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "${EXE} ${what}: expected an error exit, got '${rc}':\n${out}\n${err}")
  endif()
endfunction()

# expect_error(<what> <regex> <args>...): the program must exit non-zero with an error message
# (stderr) matching the regex.
function(expect_error what regex)
  execute_process(COMMAND "${EXE}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT rc MATCHES "^[0-9]+$" OR NOT err MATCHES "${regex}")
    message(FATAL_ERROR "${EXE} ${what}: expected an error exit with a message matching '${regex}', got '${rc}':\n${out}\n${err}")
  endif()
endfunction()

# expect_absent(<path>): nothing was created there (a run that failed before training).
function(expect_absent path)
  if(EXISTS "${path}")
    message(FATAL_ERROR "${path} exists: a run that failed before training created it")
  endif()
endfunction()

# expect_lines(<file> <n>): the file (e.g. metrics.jsonl after a resume) has exactly n lines.
function(expect_lines file n)
  file(STRINGS "${file}" lines)
  list(LENGTH lines count)
  if(NOT count EQUAL n)
    message(FATAL_ERROR "expected ${n} lines in ${file}, found ${count}")
  endif()
endfunction()

# expect_output(<what> <regex>): the last run's stdout matches the regex.
function(expect_output what regex)
  if(NOT last_output MATCHES "${regex}")
    message(FATAL_ERROR "${what} printed: ${last_output}")
  endif()
endfunction()
