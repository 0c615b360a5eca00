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

# Long sequences, huge, denormal and non-finite values, aliased buffers,
# against the tests' oracles (issue 15; attn_test_oracle: tests/).
add_executable(params2_replay ${ATTN_FUZZ_DIR}/replay.c
                              ${ATTN_FUZZ_DIR}/params2_fuzz.c)
target_link_libraries(params2_replay PRIVATE attn_test_oracle attn_static m)
add_test(NAME fuzz_params2_replay
         COMMAND params2_replay --mutate 300 ${ATTN_FUZZ_DIR}/corpus/params2)
set_tests_properties(fuzz_params2_replay PROPERTIES LABELS fuzz TIMEOUT 300)

# The KV cache: hostile descriptions, append and attend.
add_executable(cache_replay ${ATTN_FUZZ_DIR}/replay.c
                            ${ATTN_FUZZ_DIR}/cache_fuzz.c)
target_link_libraries(cache_replay PRIVATE attn_static m)
add_test(NAME fuzz_cache_replay
         COMMAND cache_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/cache)

# attn_merge and its backward against the merge in double.
add_executable(merge_replay ${ATTN_FUZZ_DIR}/replay.c
                            ${ATTN_FUZZ_DIR}/merge_fuzz.c)
target_link_libraries(merge_replay PRIVATE attn_static m)
add_test(NAME fuzz_merge_replay
         COMMAND merge_replay --mutate 3000 ${ATTN_FUZZ_DIR}/corpus/merge)

# The position functions (RoPE, the sinusoidal table, T5 buckets) against
# an oracle in long double.
add_executable(positions_replay ${ATTN_FUZZ_DIR}/replay.c
                                ${ATTN_FUZZ_DIR}/positions_fuzz.c)
target_link_libraries(positions_replay PRIVATE attn_static m)
add_test(NAME fuzz_positions_replay
         COMMAND positions_replay --mutate 50000
                 ${ATTN_FUZZ_DIR}/corpus/positions)
set_tests_properties(fuzz_npy_replay fuzz_params_replay fuzz_cache_replay
                     fuzz_merge_replay fuzz_positions_replay
                     PROPERTIES LABELS fuzz TIMEOUT 300)

# Linear attention: forward, backward and the recurrent state against the
# quadratic form in double.
add_executable(linear_replay ${ATTN_FUZZ_DIR}/replay.c
                             ${ATTN_FUZZ_DIR}/linear_fuzz.c)
target_link_libraries(linear_replay PRIVATE attn_static m)
add_test(NAME fuzz_linear_replay
         COMMAND linear_replay --mutate 3000 ${ATTN_FUZZ_DIR}/corpus/linear)
set_tests_properties(fuzz_linear_replay PROPERTIES LABELS fuzz TIMEOUT 300)

# The multi-head attention layer against a double oracle (libattn_layer,
# OpenBLAS).
if(ATTN_HAVE_LAYER)
  add_executable(layer_replay ${ATTN_FUZZ_DIR}/replay.c
                              ${ATTN_FUZZ_DIR}/layer_fuzz.c)
  target_link_libraries(layer_replay PRIVATE attn_layer_static m)
  add_test(NAME fuzz_layer_replay
           COMMAND layer_replay --mutate 8000 ${ATTN_FUZZ_DIR}/corpus/layer)
  set_tests_properties(fuzz_layer_replay PROPERTIES LABELS fuzz TIMEOUT 300)
endif()

# Ring attention over MPI on one process (libattn_ring), against the
# oracles and single-process attn_forward. This file is included before
# tests/CMakeLists.txt defines ATTN_MPI_TEST_ENV, so the environment is
# spelled out here (the harness also sets it itself).
if(ATTN_HAVE_RING)
  add_executable(ring_replay ${ATTN_FUZZ_DIR}/replay.c
                             ${ATTN_FUZZ_DIR}/ring_fuzz.c)
  target_link_libraries(ring_replay PRIVATE attn_test_oracle attn_ring_static
                                            MPI::MPI_C m)
  add_test(NAME fuzz_ring_replay
           COMMAND ring_replay --mutate 3000 ${ATTN_FUZZ_DIR}/corpus/ring)
  set(_attn_ring_replay_env
      "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_btl_vader_single_copy_mechanism=none")
  set_tests_properties(fuzz_ring_replay PROPERTIES LABELS "fuzz;mpi"
                       TIMEOUT 300 RESOURCE_LOCK mpi
                       ENVIRONMENT "${_attn_ring_replay_env}")
endif()

# The safetensors reader (with its JSON parser) and the WordPiece
# tokenizer, when attn_model is built (issue 11).
if(ATTN_HAVE_MODEL)
  add_executable(safetensors_replay ${ATTN_FUZZ_DIR}/replay.c
                                    ${ATTN_FUZZ_DIR}/safetensors_fuzz.c)
  target_link_libraries(safetensors_replay PRIVATE attn_model)
  add_test(NAME fuzz_safetensors_replay
           COMMAND safetensors_replay --mutate 20000
                   ${ATTN_FUZZ_DIR}/corpus/safetensors)
  add_executable(wordpiece_replay ${ATTN_FUZZ_DIR}/replay.c
                                  ${ATTN_FUZZ_DIR}/wordpiece_fuzz.c)
  target_link_libraries(wordpiece_replay PRIVATE attn_model)
  add_test(NAME fuzz_wordpiece_replay
           COMMAND wordpiece_replay --mutate 20000
                   ${ATTN_FUZZ_DIR}/corpus/wordpiece)
  add_executable(plot_replay ${ATTN_FUZZ_DIR}/replay.c
                             ${ATTN_FUZZ_DIR}/plot_fuzz.c)
  target_link_libraries(plot_replay PRIVATE attn_model)
  add_test(NAME fuzz_plot_replay
           COMMAND plot_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/plot)
  set_tests_properties(fuzz_safetensors_replay fuzz_wordpiece_replay
                       fuzz_plot_replay PROPERTIES LABELS fuzz TIMEOUT 300)
endif()

# The GGUF reader and the byte-level BPE (issue 11, the decoder).
if(ATTN_HAVE_MODEL)
  add_executable(gguf_replay ${ATTN_FUZZ_DIR}/replay.c
                             ${ATTN_FUZZ_DIR}/gguf_fuzz.c)
  target_link_libraries(gguf_replay PRIVATE attn_model)
  add_test(NAME fuzz_gguf_replay
           COMMAND gguf_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/gguf)
  add_executable(bpe_replay ${ATTN_FUZZ_DIR}/replay.c
                            ${ATTN_FUZZ_DIR}/bpe_fuzz.c)
  target_link_libraries(bpe_replay PRIVATE attn_model)
  add_test(NAME fuzz_bpe_replay
           COMMAND bpe_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/bpe)
  set_tests_properties(fuzz_gguf_replay fuzz_bpe_replay
                       PROPERTIES LABELS fuzz TIMEOUT 300)
endif()

# The `attn` command's argument parsing, in its parse-only mode (cli.h).
include(${ATTN_FUZZ_DIR}/cli_sources.cmake)
if(TARGET attn_cli)
  attn_cli_sources(cli_replay ${ATTN_FUZZ_DIR}/replay.c
                   ${ATTN_FUZZ_DIR}/cli_fuzz.c)
  add_test(NAME fuzz_cli_replay
           COMMAND cli_replay --mutate 20000 ${ATTN_FUZZ_DIR}/corpus/cli)
  set_tests_properties(fuzz_cli_replay PROPERTIES LABELS fuzz TIMEOUT 300)
endif()
