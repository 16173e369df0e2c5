#!/usr/bin/env bash
# The whole test suite: a normal build (warnings are errors) and an
# ASan+UBSan build, each running every CTest test, then a short fuzzing run
# of the front end.
# Usage (fresh Debian, as root): bash scripts/test.sh
#   FUZZ_SECONDS=N   fuzzing time (default 60; 0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

echo "== normal build"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDST_WERROR=ON > /dev/null
cmake --build build-test -j"$jobs"
(cd build-test && ctest --output-on-failure -j"$jobs")

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDST_WERROR=ON -DDST_SANITIZE=ON > /dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j"$jobs")

fuzz=${FUZZ_SECONDS:-60}
if [[ "$fuzz" != 0 && -x scripts/fuzz.sh ]]; then
  echo "== fuzzing the front end for ${fuzz}s"
  scripts/fuzz.sh "$fuzz"
fi
