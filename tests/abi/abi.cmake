# Test "abi" (include/attn.h, "ABI"): a program built against libattn 0.1's
# header runs on today's libattn.so and gets bitwise the results of the same
# calls through today's header; unknown struct sizes give ATTN_ERR_ABI.
# Included from tests/CMakeLists.txt.
#
# abi_consumer_0_1 sees only tests/abi (attn_0_1.h, abi_cases.h): it links the
# shared library by file, not through the `attn` target, so that the target's
# include directory (today's attn.h) does not reach it.

set(_attn_abi_dir ${CMAKE_CURRENT_LIST_DIR})

add_executable(abi_consumer_0_1 ${_attn_abi_dir}/consumer_0_1.c)
target_include_directories(abi_consumer_0_1 PRIVATE ${_attn_abi_dir})
target_link_libraries(abi_consumer_0_1 PRIVATE $<TARGET_FILE:attn>
                      Threads::Threads m)
add_dependencies(abi_consumer_0_1 attn)
set_target_properties(abi_consumer_0_1 PROPERTIES
  BUILD_RPATH "$<TARGET_FILE_DIR:attn>")

# Today's header, the same libattn.so, and the tests' double-precision oracles.
add_executable(test_abi ${_attn_abi_dir}/test_abi.c)
target_include_directories(test_abi PRIVATE ${_attn_abi_dir})
target_link_libraries(test_abi PRIVATE attn_test_oracle attn m)
add_dependencies(test_abi abi_consumer_0_1)

add_test(NAME abi COMMAND test_abi $<TARGET_FILE:abi_consumer_0_1>)
set_tests_properties(abi PROPERTIES LABELS "abi;core" TIMEOUT 600)
