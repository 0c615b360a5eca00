# Corpus replay drivers: the fuzz targets run over fuzz/corpus/ (plus a few
# thousand deterministic mutations) by a plain main(), no libFuzzer needed.
# Include this from tests/CMakeLists.txt:
#   include(${PROJECT_SOURCE_DIR}/fuzz/replay.cmake)
set(ATTN_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

# The .npy reader of the library (attn_npy_parse, include/attn/io.h).
add_executable(npy_replay ${ATTN_FUZZ_DIR}/replay.c ${ATTN_FUZZ_DIR}/npy_fuzz.c)
target_link_libraries(npy_replay PRIVATE attn_static)
add_test(NAME fuzz_npy_replay
         COMMAND npy_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/npy)

add_executable(params_replay ${ATTN_FUZZ_DIR}/replay.c
                             ${ATTN_FUZZ_DIR}/params_fuzz.c)
target_link_libraries(params_replay PRIVATE attn_static)
add_test(NAME fuzz_params_replay
         COMMAND params_replay --mutate 2000 ${ATTN_FUZZ_DIR}/corpus/params)

# The KV cache: hostile descriptions, append and attend.
add_executable(cache_replay ${ATTN_FUZZ_DIR}/replay.c
                            ${ATTN_FUZZ_DIR}/cache_fuzz.c)
target_link_libraries(cache_replay PRIVATE attn_static m)
add_test(NAME fuzz_cache_replay
         COMMAND cache_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/cache)
set_tests_properties(fuzz_npy_replay fuzz_params_replay fuzz_cache_replay
                     PROPERTIES LABELS fuzz TIMEOUT 300)
