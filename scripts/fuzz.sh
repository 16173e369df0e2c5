#!/usr/bin/env bash
# fuzz.sh SECONDS: build the front-end fuzzer and run it for SECONDS.
#
# Builds fuzz_front with clang in build-fuzz/ (DST_FUZZ=ON; only that target,
# so the runtime and kernels need not build), then fuzzes from the committed
# seed corpus and the regression inputs, with a dictionary of dst tokens.
# New interesting inputs go to build-fuzz/fuzz-corpus/ (the committed corpus
# is never written), failing inputs to build-fuzz/fuzz-artifacts/. Exits
# non-zero on a crash, leak, timeout or out-of-memory.
#
#   CC=clang-14 scripts/fuzz.sh 60        another clang
#   FUZZ_ARGS="-jobs=4 -workers=4" ...    extra libFuzzer arguments
#   FUZZ_ARGS=-detect_leaks=0 ...         ignore leaks (while one is known)
#   scripts/fuzz.sh 0 FILE...             only re-run the given inputs
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh SECONDS [INPUT...]" >&2
  exit 2
fi
secs=$1
shift
inputs=()
for f in "$@"; do inputs+=("$(realpath "$f")"); done
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DST_FUZZ_BUILD:-$root/build-fuzz}
cc=${CC:-clang}
if ! "$cc" --version 2>/dev/null | grep -q clang; then
  echo "fuzz.sh: $cc is not clang; libFuzzer needs clang (set CC)" >&2
  exit 2
fi

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDST_FUZZ=ON >/dev/null
cmake --build "$build" --target fuzz_front -j"$(nproc)"
fuzzer=$(find "$build" -type f -name fuzz_front -perm -u+x | head -n 1)
if [[ -z $fuzzer ]]; then
  echo "fuzz.sh: fuzz_front was not built (is tests/fuzz added to the build?)" >&2
  exit 1
fi

corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts
# Imports resolve relative to the working directory: run in an empty one so
# the fuzzer cannot wander into the source tree.
cwd=$build/fuzz-cwd
mkdir -p "$corpus" "$artifacts" "$cwd"
cd "$cwd"

common=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$artifacts/" -dict="$root/tests/fuzz/dst.dict")
# shellcheck disable=SC2086
if [[ ${#inputs[@]} -gt 0 ]]; then
  exec "$fuzzer" "${common[@]}" ${FUZZ_ARGS:-} "${inputs[@]}"
fi
if [[ $secs == 0 ]]; then
  echo "fuzz.sh: SECONDS must be positive (libFuzzer takes 0 as forever)" >&2
  exit 2
fi
# shellcheck disable=SC2086
exec "$fuzzer" "${common[@]}" -max_total_time="$secs" -print_final_stats=1 ${FUZZ_ARGS:-} \
  "$corpus" "$root/tests/fuzz/corpus" "$root/tests/fuzz/regressions"
