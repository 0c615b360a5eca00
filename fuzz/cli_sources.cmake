# attn_cli_sources(TARGET SOURCE...): an executable TARGET of SOURCE... and
# the `attn` command's files (the target attn_cli, tools/CMakeLists.txt),
# with its compile definitions and libraries, its main renamed
# attn_cli_main (cli_main.c), and without `attn ring` (MPI). For the
# argument fuzzer (cli_fuzz.c) and its replay.
function(attn_cli_sources target)
  get_target_property(srcs attn_cli SOURCES)
  get_target_property(dir attn_cli SOURCE_DIR)
  set(files ${ARGN} ${PROJECT_SOURCE_DIR}/fuzz/cli_main.c)
  foreach(s ${srcs})
    if(NOT s MATCHES "(^|/)(main|cmd_ring)\\.c$")
      if(IS_ABSOLUTE "${s}")
        list(APPEND files ${s})
      else()
        list(APPEND files ${dir}/${s})
      endif()
    endif()
  endforeach()
  add_executable(${target} ${files})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tools/attn)
  get_target_property(defs attn_cli COMPILE_DEFINITIONS)
  list(FILTER defs EXCLUDE REGEX "^ATTN_HAVE_RING")
  target_compile_definitions(${target} PRIVATE ${defs})
  get_target_property(libs attn_cli LINK_LIBRARIES)
  list(FILTER libs EXCLUDE REGEX "ring")
  target_link_libraries(${target} PRIVATE ${libs} m)
endfunction()
