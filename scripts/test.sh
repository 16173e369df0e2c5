#!/usr/bin/env bash
# The whole test suite: a normal build (warnings are errors, the IR
# verifier on after every pass) and an
# ASan+UBSan build, each running every CTest test, then a short fuzzing run
# of the front end.
# Usage (fresh Debian, as root): bash scripts/test.sh
#   FUZZ_SECONDS=N   fuzzing time (default 60; 0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

passed=0 failed=0
# Runs ctest in a build directory and adds its counts to the totals.
run_ctest() {
  local dir=$1 log rc=0
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j"$jobs") 2>&1 | tee "$log" || rc=1
  local total bad
  total=$(sed -n 's/.* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  bad=$(sed -n 's/.*, \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  passed=$((passed + ${total:-0} - ${bad:-0}))
  failed=$((failed + ${bad:-0}))
  rm -f "$log"
  return $rc
}

status=0
echo "== normal build"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDST_WERROR=ON -DDST_VERIFY_IR=ON > /dev/null
cmake --build build-test -j"$jobs"
run_ctest build-test || status=1

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDST_WERROR=ON -DDST_SANITIZE=ON > /dev/null
cmake --build build-asan -j"$jobs"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_ctest build-asan || status=1

fuzz=${FUZZ_SECONDS:-60}
if [[ "$fuzz" != 0 ]]; then
  echo "== fuzzing the front end for ${fuzz}s"
  if scripts/fuzz.sh "$fuzz" > build-fuzz.log 2>&1; then
    tail -n 3 build-fuzz.log
    passed=$((passed + 1))
  else
    tail -n 40 build-fuzz.log
    failed=$((failed + 1))
    status=1
  fi
fi
echo "== summary (normal and sanitizer builds, and the fuzzing run)"
echo "$passed passed, $failed failed"
exit $status
