# Test "overlap" (tests/test_overlap.c, issue 6): outputs overlapping the
# alibi_slopes, kv_lens, cu_seqlens and position-offset arrays are
# ATTN_ERR_OVERLAP; head_dim 0 is ATTN_ERR_HEAD_DIM. Included from
# tests/CMakeLists.txt.

add_executable(test_overlap ${CMAKE_CURRENT_LIST_DIR}/test_overlap.c)
target_include_directories(test_overlap PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(test_overlap PRIVATE attn_static)

add_test(NAME overlap COMMAND test_overlap)
set_tests_properties(overlap PROPERTIES LABELS "overlap;core" TIMEOUT 120)
