# Installs bnorm.pc, the pkg-config file, into the architecture-independent
# <datadir>/pkgconfig (bnorm is header-only). Included by the top-level CMakeLists.txt when
# BNORM_INSTALL is on, after Eigen and OpenMP have been looked for.
#
# Cflags name Eigen's include directory itself rather than `Requires: eigen3`, so the file works
# where Eigen was installed without its own eigen3.pc; with OpenMP they add its flag, and Libs
# repeat it for the link. The prefix is filled in when installing, so `cmake --install build
# --prefix DIR` yields a file that points into DIR.
get_target_property(_bnorm_eigen_dirs Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)
set(BNORM_PC_CFLAGS "")
foreach(_dir IN LISTS _bnorm_eigen_dirs)
  string(APPEND BNORM_PC_CFLAGS " -I${_dir}")
endforeach()
set(BNORM_PC_LIBS "")
if(BNORM_WITH_OPENMP)
  string(APPEND BNORM_PC_CFLAGS " ${OpenMP_CXX_FLAGS}")
  set(BNORM_PC_LIBS "${OpenMP_CXX_FLAGS}")
endif()
string(STRIP "${BNORM_PC_CFLAGS}" BNORM_PC_CFLAGS)
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(BNORM_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(BNORM_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()

# Two passes: now everything but the prefix (kept as the placeholder @BNORM_PC_PREFIX@), then
# at install time the prefix the installation really uses.
set(BNORM_PC_PREFIX "@BNORM_PC_PREFIX@")
configure_file(${CMAKE_CURRENT_LIST_DIR}/bnorm.pc.in ${CMAKE_CURRENT_BINARY_DIR}/bnorm.pc.in @ONLY)
install(CODE "
  set(BNORM_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${CMAKE_CURRENT_BINARY_DIR}/bnorm.pc.in\" \"${CMAKE_CURRENT_BINARY_DIR}/bnorm.pc\" @ONLY)
")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/bnorm.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
unset(_bnorm_eigen_dirs)
unset(_dir)
