# Corpus replay drivers: the fuzz targets run over fuzz/corpus/ (plus a few
# thousand deterministic mutations) by a plain main(), no libFuzzer needed.
# Include this from tests/CMakeLists.txt:
#   include(${PROJECT_SOURCE_DIR}/fuzz/replay.cmake)
set(ATTN_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(ATTN_FUZZ_TOOLS_DIR ${CMAKE_CURRENT_LIST_DIR}/../tools
                       ABSOLUTE)

add_executable(npy_replay ${ATTN_FUZZ_DIR}/replay.c ${ATTN_FUZZ_DIR}/npy_fuzz.c
                          ${ATTN_FUZZ_TOOLS_DIR}/npy.c)
target_include_directories(npy_replay PRIVATE ${ATTN_FUZZ_TOOLS_DIR})
add_test(NAME fuzz_npy_replay
         COMMAND npy_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/npy)

add_executable(params_replay ${ATTN_FUZZ_DIR}/replay.c
                             ${ATTN_FUZZ_DIR}/params_fuzz.c)
target_link_libraries(params_replay PRIVATE attn_static)
add_test(NAME fuzz_params_replay
         COMMAND params_replay --mutate 2000 ${ATTN_FUZZ_DIR}/corpus/params)
set_tests_properties(fuzz_npy_replay fuzz_params_replay PROPERTIES
                     LABELS fuzz TIMEOUT 300)
