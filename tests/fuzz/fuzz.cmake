# libFuzzer drivers, one per parser of untrusted input (included from CMakeLists.txt when SK_FUZZ=ON).
# Binaries go to <build>/fuzz/; scripts/fuzz.sh runs them with tests/fuzz/corpus/<driver>/ and <driver>.dict.
set(SK_FUZZ_TARGETS "")
function(sk_fuzz name)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/host ${CMAKE_SOURCE_DIR}/plugins)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${ARGN})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  set(SK_FUZZ_TARGETS ${SK_FUZZ_TARGETS} ${name} PARENT_SCOPE)
endfunction()

sk_fuzz(fuzz_access_params sk_access_lib)
sk_fuzz(fuzz_access_client sk_access_lib)
sk_fuzz(fuzz_admin_body sk_admin_lib sk_host)
sk_fuzz(fuzz_etcd_watch sk_host)
sk_fuzz(fuzz_logic_entry sk_logic_lib)
sk_fuzz(fuzz_conf sk_host)
sk_fuzz(fuzz_policy sk_host)
# common/sk_cluster.c is written on another branch; the driver builds once it is here (sk_common globs common/*.c).
if(EXISTS ${CMAKE_SOURCE_DIR}/common/sk_cluster.c)
  sk_fuzz(fuzz_cluster_redirect sk_common)
endif()
add_custom_target(fuzz DEPENDS ${SK_FUZZ_TARGETS})
