# Test "abi" (include/attn.h, "ABI"): programs built against libattn 0.1's,
# 0.2's and 0.3's headers (three consumers) run on today's libattn.so and
# get bitwise the results of the same calls through today's header; unknown
# struct sizes give ATTN_ERR_ABI; old sizes ignore the fields appended after
# them. Included from tests/CMakeLists.txt.
#
# The consumers see only tests/abi (attn_0_X.h, abi_cases.h): they link the
# shared library by file, not through the `attn` target, so that the target's
# include directory (today's attn.h) does not reach them.

set(_attn_abi_dir ${CMAKE_CURRENT_LIST_DIR})

# abi_consumer_0_1 calls the exported 0.1 entry points (attn_0_1.h);
# abi_consumer_0_2 and abi_consumer_0_3 are the same program built against
# 0.2's and 0.3's headers (attn_0_2.h, attn_0_3.h), whose inline wrappers
# pass that release's sizeof(attn_params); the 0.3 one also runs the 0.3
# cases (RoPE, T5, the KV cache).
foreach(_v 0_1 0_2 0_3 0_4)
  add_executable(abi_consumer_${_v} ${_attn_abi_dir}/consumer.c)
  target_include_directories(abi_consumer_${_v} PRIVATE ${_attn_abi_dir})
  target_link_libraries(abi_consumer_${_v} PRIVATE $<TARGET_FILE:attn>
                        Threads::Threads m)
  add_dependencies(abi_consumer_${_v} attn)
  set_target_properties(abi_consumer_${_v} PROPERTIES
    BUILD_RPATH "$<TARGET_FILE_DIR:attn>")
endforeach()
target_compile_definitions(abi_consumer_0_2 PRIVATE ABI_CONSUMER_0_2=1)
target_compile_definitions(abi_consumer_0_3 PRIVATE ABI_CONSUMER_0_3=1)
target_compile_definitions(abi_consumer_0_4 PRIVATE ABI_CONSUMER_0_4=1)

# Today's header, the same libattn.so, and the tests' double-precision oracles.
add_executable(test_abi ${_attn_abi_dir}/test_abi.c)
target_include_directories(test_abi PRIVATE ${_attn_abi_dir})
target_link_libraries(test_abi PRIVATE attn_test_oracle attn m)
add_dependencies(test_abi abi_consumer_0_1 abi_consumer_0_2 abi_consumer_0_3
                 abi_consumer_0_4)

add_test(NAME abi COMMAND test_abi $<TARGET_FILE:abi_consumer_0_1>
                                  $<TARGET_FILE:abi_consumer_0_2>
                                  $<TARGET_FILE:abi_consumer_0_3>
                                  $<TARGET_FILE:abi_consumer_0_4>)
set_tests_properties(abi PROPERTIES LABELS "abi;core" TIMEOUT 600)
