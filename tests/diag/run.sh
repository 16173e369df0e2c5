#!/usr/bin/env bash
# Golden diagnostics: each tests/diag/*.dst is checked with dstc and its
# stderr plus exit status are compared with NAME.expected.
#   run.sh DSTC            compare (exit 1 on any difference)
#   UPDATE=1 run.sh DSTC   rewrite the .expected files
# A first line "// ARGS: ..." gives extra dstc arguments (e.g. -ftp=3).
# Files run from this directory with the stdlib at ../../stdlib, so the
# paths in messages are the same on every machine.
set -u
dstc=$(realpath "$1")
cd "$(dirname "$0")"
export DST_STDLIB=../../stdlib
fail=0 n=0
for src in *.dst; do
  n=$((n + 1))
  name=${src%.dst}
  args=$(sed -n '1s|^// ARGS: *||p' "$src")
  # shellcheck disable=SC2086
  out=$("$dstc" check --color=never $args "$src" 2>&1 >/dev/null; echo "exit: $?")
  if [[ "${UPDATE:-}" == 1 ]]; then
    printf '%s\n' "$out" > "$name.expected"
  elif ! diff -u "$name.expected" <(printf '%s\n' "$out") > /tmp/dst-diag-$$.diff 2>&1; then
    echo "FAIL: $src"
    cat /tmp/dst-diag-$$.diff
    fail=$((fail + 1))
  fi
done
rm -f /tmp/dst-diag-$$.diff
echo "diagnostics: $((n - fail)) passed, $fail failed"
[[ $fail == 0 ]]
