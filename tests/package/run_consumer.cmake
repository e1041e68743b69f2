# Builds and runs the consumer project (consumer/main.cpp) with one of the four recipes by which
# users bring bnorm in. Run with cmake -P and
#   -DRECIPE=find_package|add_subdirectory|fetchcontent|pkg_config
#   -DBNORM_SOURCE_DIR=<bnorm's source tree>  -DWORK_DIR=<scratch directory, emptied first>
#   -DCMAKE_CXX_COMPILER=<compiler>  [-DPKG_CONFIG_EXECUTABLE=<pkg-config>, for pkg_config]
#   [-DBNORM_VERSION=<expected version>]
# find_package and pkg_config install bnorm into WORK_DIR/prefix first; fetchcontent packs the
# source files of a release into WORK_DIR/bnorm-src.tar.gz and fetches that through a file:// URL
# (no network); add_subdirectory uses the source tree as it is.
foreach(var RECIPE BNORM_SOURCE_DIR WORK_DIR CMAKE_CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake needs -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
set(consumer_src ${CMAKE_CURRENT_LIST_DIR}/consumer)
set(consumer_build ${WORK_DIR}/consumer-build)

# Runs a command, fails with its output if it fails; its output goes to out_var if given.
function(run)
  cmake_parse_arguments(arg "" "OUTPUT" "" ${ARGN})
  execute_process(COMMAND ${arg_UNPARSED_ARGUMENTS} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${arg_UNPARSED_ARGUMENTS}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}")
  endif()
  message(STATUS "${out}")
  if(arg_OUTPUT)
    set(${arg_OUTPUT} "${out}" PARENT_SCOPE)
  endif()
endfunction()

function(install_bnorm)
  run(${CMAKE_COMMAND} -S ${BNORM_SOURCE_DIR} -B ${WORK_DIR}/bnorm-build
      -DCMAKE_INSTALL_PREFIX=${prefix} -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
      -DBNORM_BUILD_TESTS=OFF -DBNORM_BUILD_EXAMPLES=OFF -DBNORM_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/bnorm-build)
endfunction()

function(build_consumer)
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${consumer_build}
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} ${ARGN})
  run(${CMAKE_COMMAND} --build ${consumer_build})
endfunction()

if(RECIPE STREQUAL "find_package")
  install_bnorm()
  build_consumer(-DBNORM_RECIPE=find_package -DCMAKE_PREFIX_PATH=${prefix})
elseif(RECIPE STREQUAL "add_subdirectory")
  build_consumer(-DBNORM_RECIPE=add_subdirectory -DBNORM_SOURCE_DIR=${BNORM_SOURCE_DIR})
elseif(RECIPE STREQUAL "fetchcontent")
  # What a source release holds: enough to configure bnorm as a subproject and nothing more.
  set(release ${WORK_DIR}/bnorm-src)
  file(MAKE_DIRECTORY ${release})
  file(COPY ${BNORM_SOURCE_DIR}/CMakeLists.txt ${BNORM_SOURCE_DIR}/LICENSE
            ${BNORM_SOURCE_DIR}/README.md ${BNORM_SOURCE_DIR}/cmake ${BNORM_SOURCE_DIR}/include
       DESTINATION ${release})
  execute_process(COMMAND ${CMAKE_COMMAND} -E tar czf ${WORK_DIR}/bnorm-src.tar.gz bnorm-src
                  WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not pack ${release}")
  endif()
  file(REMOVE_RECURSE ${release})
  file(SHA256 ${WORK_DIR}/bnorm-src.tar.gz sha256)
  build_consumer(-DBNORM_RECIPE=fetchcontent -DBNORM_URL=file://${WORK_DIR}/bnorm-src.tar.gz
                 -DBNORM_URL_SHA256=${sha256} -DFETCHCONTENT_FULLY_DISCONNECTED=OFF)
elseif(RECIPE STREQUAL "pkg_config")
  if(NOT PKG_CONFIG_EXECUTABLE)
    message(FATAL_ERROR "the pkg_config recipe needs -DPKG_CONFIG_EXECUTABLE=...")
  endif()
  install_bnorm()
  set(pc_dir ${prefix}/share/pkgconfig)
  if(NOT EXISTS ${pc_dir}/bnorm.pc)
    message(FATAL_ERROR "bnorm.pc was not installed into ${pc_dir}")
  endif()
  set(env ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir})
  run(${env} ${PKG_CONFIG_EXECUTABLE} --modversion bnorm OUTPUT version)
  string(STRIP "${version}" version)
  if(BNORM_VERSION AND NOT version STREQUAL BNORM_VERSION)
    message(FATAL_ERROR "pkg-config says bnorm ${version}, expected ${BNORM_VERSION}")
  endif()
  run(${env} ${PKG_CONFIG_EXECUTABLE} --cflags bnorm OUTPUT cflags)
  if(NOT cflags MATCHES "-I${prefix}/include")
    message(FATAL_ERROR "pkg-config --cflags bnorm does not name ${prefix}/include: ${cflags}")
  endif()
  # The recipe exactly as a user types it, through a shell.
  file(MAKE_DIRECTORY ${consumer_build})
  run(${env} sh -c "\"${CMAKE_CXX_COMPILER}\" -std=c++17 -O2 $(\"${PKG_CONFIG_EXECUTABLE}\" --cflags bnorm) \"${consumer_src}/main.cpp\" -o \"${consumer_build}/consumer\" $(\"${PKG_CONFIG_EXECUTABLE}\" --libs bnorm)")
else()
  message(FATAL_ERROR "unknown RECIPE '${RECIPE}'")
endif()

run(${consumer_build}/consumer)
