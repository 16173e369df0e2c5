# mpi_env.sh: sourced by the tests that start MPI jobs (needs $here, the
# source root). Lets Open MPI run as root and oversubscribe this machine's
# cores; in sanitizer builds, suppresses the allocations Open MPI keeps past
# MPI_Finalize by design.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export LSAN_OPTIONS="suppressions=$here/tests/mpi/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
