# Run at test time by spoold_discover_tests (tests/CMakeLists.txt): lists the test cases of
# a doctest executable and writes one CTest test per case. Written here rather than taken
# from doctest's own script because that one splits a case name at every ';' (a CMake list
# separator), leaving tests that match no case and pass without running anything.
# In: TEST_EXECUTABLE, TEST_PREFIX, TEST_TIMEOUT, TEST_LABELS, CTEST_FILE.
execute_process(
    COMMAND "${TEST_EXECUTABLE}" --list-test-cases --no-version
    OUTPUT_VARIABLE output
    RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "listing the test cases of ${TEST_EXECUTABLE} failed (${result}):\n${output}")
endif()
# Protect ';' before the output becomes a CMake list of lines.
string(REPLACE ";" "@SPOOLD_SEMICOLON@" output "${output}")
string(REPLACE "\n" ";" lines "${output}")
set(script "")
foreach(line IN LISTS lines)
    if(line STREQUAL "" OR line MATCHES "^=+$" OR line MATCHES "^\\[doctest\\] ")
        continue()
    endif()
    string(REPLACE "@SPOOLD_SEMICOLON@" ";" name "${line}")
    # doctest's --test-case takes a comma-separated list of patterns: escape the commas.
    string(REPLACE "," "\\," filter "${name}")
    string(APPEND script
        "add_test([==[${TEST_PREFIX}: ${name}]==] [==[${TEST_EXECUTABLE}]==] [==[--test-case=${filter}]==])\n"
        "set_tests_properties([==[${TEST_PREFIX}: ${name}]==] PROPERTIES TIMEOUT ${TEST_TIMEOUT} LABELS ${TEST_LABELS})\n")
endforeach()
file(WRITE "${CTEST_FILE}" "${script}")
