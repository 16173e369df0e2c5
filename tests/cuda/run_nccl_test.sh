#!/usr/bin/env bash
# run_nccl_test.sh: the CTest cases of dst_nccl_test that need more than
# running it once.
#
#   tests/cuda/run_nccl_test.sh TEST NP    the checks under mpirun, NP ranks
#   tests/cuda/run_nccl_test.sh TEST init  DST_COMM_BACKEND=nccl startup alone
#
# NP: exits 77 (CTest: skipped) when this machine has fewer than NP CUDA
# devices, else with mpirun's status. init: with a device, the backend must
# start and stop; without one, dst_comm_init must fail with its one error
# line and status 1 (this case runs, and means something, on CPU-only CI).
# Each run is bounded by `timeout 120`.
#
# Environment: DST_MPIRUN (default "mpirun --oversubscribe"). Running as
# root needs Open MPI's consent, given here through its environment (as in
# tests/mpi/run_mpi_tests.sh).
set -u

TEST=${1:?usage: run_nccl_test.sh TEST NP|init}
MODE=${2:?usage: run_nccl_test.sh TEST NP|init}
[ -x "$TEST" ] || { echo "error: $TEST not found (build target dst_nccl_test)" >&2; exit 2; }
read -r -a MPIRUN <<< "${DST_MPIRUN:-mpirun --oversubscribe}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Keep an outer launcher's or the user's settings out of the job.
unset DST_COMM_TIMEOUT DST_COMM_BACKEND OMPI_COMM_WORLD_SIZE PMI_SIZE PMI_RANK PMIX_RANK \
  PMIX_SIZE MV2_COMM_WORLD_SIZE
devices=$("$TEST" --devices) || { echo "error: $TEST --devices failed" >&2; exit 1; }

if [ "$MODE" = init ]; then
  out=$(timeout 120 "$TEST" --init 2>&1)
  rc=$?
  echo "$out"
  if [ "$devices" -gt 0 ]; then
    [ "$rc" -eq 0 ] || { echo "FAIL: exit status $rc, expected 0"; exit 1; }
    echo "$out" | grep -q "^ok init (backend nccl, device " || { echo "FAIL: no 'ok init' line"; exit 1; }
    exit 0
  fi
  want="error: DST_COMM_BACKEND=nccl needs one CUDA device per rank, but no rank has one (rank 0: "
  [ "$rc" -eq 1 ] || { echo "FAIL: exit status $rc, expected 1"; exit 1; }
  case "$out" in
    "$want"*")") ;;
    *) echo "FAIL: expected exactly one line: $want...)"; exit 1 ;;
  esac
  [ "$(echo "$out" | wc -l)" -eq 1 ] || { echo "FAIL: expected exactly one line"; exit 1; }
  exit 0
fi

if [ "$devices" -lt "$MODE" ]; then
  echo "SKIPPED: $MODE ranks need $MODE CUDA devices, this machine has $devices"
  exit 77
fi
exec timeout 120 "${MPIRUN[@]}" -np "$MODE" "$TEST"
