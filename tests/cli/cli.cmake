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
  # --dropout P --seed S of run and grad (issue 9)
  add_test(NAME cli_dropout
           COMMAND sh ${ATTN_CLI_TEST_DIR}/test_dropout.sh
                   $<TARGET_FILE:attn_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli-dropout-scratch
                   $<TARGET_FILE:gen_npy>)
  set_tests_properties(cli_dropout PROPERTIES LABELS "cli;dropout" TIMEOUT 300)
endif()

# `attn merge` against `attn run` on all the keys (tests/cli/test_merge.sh);
# npy_slice cuts the key ranges.
add_executable(npy_slice ${ATTN_CLI_TEST_DIR}/npy_slice.c)
target_link_libraries(npy_slice PRIVATE attn_static)
if(TARGET attn_cli)
  add_test(NAME cli_merge
           COMMAND sh ${ATTN_CLI_TEST_DIR}/test_merge.sh $<TARGET_FILE:attn_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli-merge-scratch
                   $<TARGET_FILE:gen_npy> $<TARGET_FILE:npy_slice>)
  set_tests_properties(cli_merge PROPERTIES LABELS "cli;merge" TIMEOUT 300)
endif()

# --kv-quant q8_0|q4_0 of run and grad (issue 9): tests/cli/test_quant.sh
if(TARGET attn_cli)
  add_test(NAME cli_quant
           COMMAND sh ${ATTN_CLI_TEST_DIR}/test_quant.sh $<TARGET_FILE:attn_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/cli-quant-scratch
                   $<TARGET_FILE:gen_npy>)
  set_tests_properties(cli_quant PROPERTIES LABELS "cli;quant" TIMEOUT 300)
endif()
