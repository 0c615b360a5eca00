# Command-line tests: builds gen_npy (writes/inspects .npy files with the
# library's attn/io.h, so the tests need no Python) and registers
# tests/cli/test_cli.sh with ctest (label cli).
# Include this from tests/CMakeLists.txt:
#   include(${PROJECT_SOURCE_DIR}/tests/cli/cli.cmake)
set(ATTN_CLI_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})

add_executable(gen_npy ${ATTN_CLI_TEST_DIR}/gen_npy.c)
target_link_libraries(gen_npy PRIVATE attn_static m)

if(TARGET attn_cli)
  add_test(NAME cli
           COMMAND sh ${ATTN_CLI_TEST_DIR}/test_cli.sh $<TARGET_FILE:attn_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli-scratch
                   $<TARGET_FILE:gen_npy>)
  set_tests_properties(cli PROPERTIES LABELS cli TIMEOUT 300)
endif()
