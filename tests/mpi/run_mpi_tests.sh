#!/usr/bin/env bash
# run_mpi_tests.sh: runs the dst_comm / dst_mesh tests under mpirun.
#
#   tests/mpi/run_mpi_tests.sh BIN_DIR [CASE...]
#
# BIN_DIR holds dst_mpi_test. With no CASE every case runs; CTest runs one
# case per test. Each run is bounded by `timeout 60`. Prints one PASS/FAIL
# line per case (the output of a failing run follows), then
# "N passed, N failed"; the exit status is 0 only when nothing failed.
#
# Environment: DST_MPIRUN (default "mpirun --oversubscribe"). Running as
# root needs Open MPI's consent, given here through its environment.
set -u

BIN=${1:?usage: run_mpi_tests.sh BIN_DIR [CASE...]}
shift
TEST=$BIN/dst_mpi_test
[ -x "$TEST" ] || { echo "error: $TEST not found (build target dst_mpi_test)" >&2; exit 2; }
read -r -a MPIRUN <<< "${DST_MPIRUN:-mpirun --oversubscribe}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Sanitized builds: Open MPI's own allocations outlive MPI_Finalize; they
# are suppressed by library, which needs full stacks (no fast unwinding) and
# Open MPI's plugins kept loaded so their frames can be named.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export OMPI_MCA_mca_base_component_disable_dlclose=1
# Keep the comm tests off the OpenMP thread pool and away from any outer
# launcher's environment (the one-process cases must not look launched).
export OMP_NUM_THREADS=1
unset DST_COMM_TIMEOUT DST_COMM_BACKEND OMPI_COMM_WORLD_SIZE PMI_SIZE PMI_RANK PMIX_RANK \
  PMIX_SIZE MV2_COMM_WORLD_SIZE

ALL_CASES="local_collectives singleton_mpi local_mismatch bad_timeout nccl_missing
  collectives_np2 collectives_np4 nonblocking_np2 nonblocking_np4 mesh_np2 mesh_np4
  mismatch_np3 watchdog_np2 watchdog_peer_np4 kill_np2 kill_np4"

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
RC=0 SECS=0 WHY=""

# run CMD...: runs under timeout 60, output (both streams) in $OUT; sets RC
# and SECS (wall time, seconds with decimals).
run() {
  local t0 t1
  t0=$(date +%s.%N)
  timeout 60 "$@" >"$OUT" 2>&1
  RC=$?
  t1=$(date +%s.%N)
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}
mpi() { local np=$1; shift; run "${MPIRUN[@]}" -np "$np" "$TEST" "$@"; }

fail() { WHY="${WHY:+$WHY; }$*"; }
want_rc() { [ "$RC" -eq "$1" ] || fail "exit status $RC, expected $1"; }
want_nonzero() { [ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || fail "exit status $RC, expected non-zero (not a timeout)"; }
want_line() { grep -qxF -- "$1" "$OUT" || fail "no line: $1"; }
want_text() { grep -qF -- "$1" "$OUT" || fail "no text: $1"; }
want_no_text() { ! grep -qF -- "$1" "$OUT" || fail "unexpected text: $1"; }
want_count() { local n; n=$(grep -cF -- "$2" "$OUT"); [ "$n" -eq "$1" ] || fail "$n lines with '$2', expected $1"; }
want_secs_below() { awk -v s="$SECS" -v m="$1" 'BEGIN { exit !(s < m) }' || fail "took $SECS s, limit $1 s"; }
want_secs_above() { awk -v s="$SECS" -v m="$1" 'BEGIN { exit !(s >= m) }' || fail "took $SECS s, fired before $1 s"; }

ok_run() { # MODE NP: a run that must succeed and print "ok MODE"
  want_rc 0
  want_text "ok $1 ($2 rank"
}

case_local_collectives() {
  run "$TEST" collectives
  ok_run collectives 1; want_text "backend local"
}
case_singleton_mpi() { # MPI without mpirun (singleton init): world of one
  DST_COMM_BACKEND=mpi run "$TEST" collectives
  ok_run collectives 1; want_text "backend mpi"
}
case_local_mismatch() {
  run "$TEST" mismatch
  want_rc 1
  want_line "error: the plan needs 4 ranks (dp=2 x tp=2) but 1 was launched (run it with mpirun -np 4)"
}
case_bad_timeout() {
  DST_COMM_TIMEOUT=soon run "$TEST" collectives
  want_rc 1
  want_line "error: DST_COMM_TIMEOUT='soon' is not a number of seconds (0 turns the watchdog off)"
}
case_nccl_missing() { # dst_mpi_test links libdst only, without dst_runtime_cuda
  DST_COMM_BACKEND=nccl run "$TEST" collectives
  want_rc 1
  want_line "error: DST_COMM_BACKEND=nccl, but this program was built without the NCCL backend (library dst_runtime_cuda)"
}
case_collectives_np2() { mpi 2 collectives; ok_run collectives 2; }
case_collectives_np4() { mpi 4 collectives; ok_run collectives 4; }
case_nonblocking_np2() { mpi 2 nonblocking; ok_run nonblocking 2; }
case_nonblocking_np4() { mpi 4 nonblocking; ok_run nonblocking 4; }
case_mesh_np2() { mpi 2 mesh; ok_run mesh 2; }
case_mesh_np4() { mpi 4 mesh; ok_run mesh 4; }
case_mismatch_np3() {
  mpi 3 mismatch
  want_rc 1
  want_line "error: the plan needs 4 ranks (dp=2 x tp=2) but 3 were launched (mpirun -np 3)"
  want_count 1 "error: the plan needs"
  want_no_text "[rank"
  want_no_text "returned on a mismatched world"
  want_secs_below 10
}
case_watchdog_np2() { # rank 1 skips allreduce #3 and sleeps: rank 0 fires at 2 s
  DST_COMM_TIMEOUT=2 mpi 2 watchdog
  want_nonzero
  want_text "[rank 0] error: comm watchdog: allreduce #3 ['grads.test'] on group 'dp' (2 ranks, this is rank 0) did not complete in 2."
  want_text "not arrived: rank 1 (world 1): no reply (computing outside dst_comm, hung, or dead); set DST_COMM_TIMEOUT=SECONDS to wait longer, 0 to wait forever"
  want_no_text "completed without the last rank"
  want_secs_above 2
  want_secs_below 10
}
case_watchdog_peer_np4() { # rank 3 skips it and waits in a recv: the others say where it is
  DST_COMM_TIMEOUT=2 mpi 4 watchdog_peer
  want_nonzero
  want_text "error: comm watchdog: allreduce #3 ['grads.test'] on group 'dp' (4 ranks"
  want_text "not arrived: rank 3 (world 3): issued 3 collectives on 'dp', waiting in recv #0 on group 'world'"
  want_no_text "completed without the last rank"
  want_secs_above 2
  want_secs_below 10
}
kill_case() { # rank 1 dies by SIGKILL inside allreduce #3; the watchdog is at 60 s
  mpi "$1" kill
  want_nonzero
  want_text "rank 1: SIGKILL inside allreduce #3"
  want_no_text "comm watchdog"
  want_secs_below 8
}
case_kill_np2() { kill_case 2; }
case_kill_np4() { kill_case 4; }

CASES=("$@")
[ ${#CASES[@]} -eq 0 ] && read -r -a CASES <<< "$(echo $ALL_CASES)"
passed=0 failed=0
for c in "${CASES[@]}"; do
  if ! declare -F "case_$c" >/dev/null; then
    echo "FAIL $c (no such case; cases: $(echo $ALL_CASES))"
    failed=$((failed + 1))
    continue
  fi
  WHY=""
  "case_$c"
  if [ -z "$WHY" ]; then
    echo "PASS $c (${SECS} s)"
    passed=$((passed + 1))
  else
    echo "FAIL $c (${SECS} s): $WHY"
    sed 's/^/    | /' "$OUT" | head -40
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
