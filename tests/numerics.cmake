# Test "numerics" (tests/test_numerics.c, issue 6): huge finite logits,
# non-finite inputs and accuracy at long key lengths, forward and backward, on
# every ISA the CPU supports. Included from tests/CMakeLists.txt. Sources:
# test_numerics.c (main), numerics.h and numerics_*.c (one per section, plus
# the shared problem and oracle).
#
# The sanitizer build runs the long-key problems shorter (ATTN_TEST_QUICK=1:
# 262,144 keys instead of 1,048,576; MQA backward 8 heads x 512 instead of
# 32 heads x 2048).

add_executable(test_numerics
  ${CMAKE_CURRENT_LIST_DIR}/test_numerics.c
  ${CMAKE_CURRENT_LIST_DIR}/numerics_common.c
  ${CMAKE_CURRENT_LIST_DIR}/numerics_huge.c
  ${CMAKE_CURRENT_LIST_DIR}/numerics_nonfinite.c
  ${CMAKE_CURRENT_LIST_DIR}/numerics_accuracy.c)
target_include_directories(test_numerics PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(test_numerics PRIVATE attn_static Threads::Threads m)

add_test(NAME numerics COMMAND test_numerics)
set_tests_properties(numerics PROPERTIES LABELS "numerics;core" TIMEOUT 1200
  COST 44)
if(ATTN_SANITIZE)
  set_tests_properties(numerics PROPERTIES ENVIRONMENT "ATTN_TEST_QUICK=1")
endif()
