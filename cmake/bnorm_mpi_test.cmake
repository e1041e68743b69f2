# bnorm_add_mpi_test(NAME <name> RANKS <n> COMMAND <target> [args...])
#
# A ctest test that runs <target> under mpiexec on <n> ranks. Open MPI refuses to run as root
# (containers, CI) and to start more ranks than cores unless told; the environment tells it
# (other MPI implementations ignore these variables). One OpenMP thread per rank: ranks times
# threads spinning on fewer cores slow the tests down many times, and bnorm's results do not
# depend on the thread count.
function(bnorm_add_mpi_test)
  cmake_parse_arguments(ARG "" "NAME;RANKS" "COMMAND" ${ARGN})
  list(POP_FRONT ARG_COMMAND target)
  add_test(NAME ${ARG_NAME}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ARG_RANKS} ${MPIEXEC_PREFLAGS}
            $<TARGET_FILE:${target}> ${MPIEXEC_POSTFLAGS} ${ARG_COMMAND})
  set_tests_properties(${ARG_NAME} PROPERTIES
    PROCESSORS ${ARG_RANKS}
    TIMEOUT 300
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1")
endfunction()
