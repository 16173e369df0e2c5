#!/usr/bin/env bash
# Determinism: two compiles of a model give byte-identical C; two runs of the
# same binary with the same seed give bit-identical losses, whatever the
# thread count; a different seed gives different losses (so the comparison
# is not vacuous).   Usage: tests/determinism.sh DSTC
set -euo pipefail
dstc=$1
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ex in gpt llama mlp; do
  "$dstc" build "$here/examples/$ex.dst" -D batch=4 -o "$tmp/a" > /dev/null
  "$dstc" build "$here/examples/$ex.dst" -D batch=4 -o "$tmp/b" > /dev/null
  cmp "$tmp/a/"*.c "$tmp/b/"*.c || { echo "FAIL: two compiles of $ex.dst differ"; exit 1; }
  rm -rf "$tmp/a" "$tmp/b"
done
"$dstc" build "$here/examples/gpt.dst" -D batch=4 -D seq=32 -o "$tmp/g" > /dev/null
run() { "$tmp/g/gpt" --data "$here/tests/data/tiny.txt" --steps 6 --quiet "$@" > /dev/null; }
run --seed 7 --threads 2 --loss-log "$tmp/l1"
run --seed 7 --threads 2 --loss-log "$tmp/l2"
run --seed 7 --threads 1 --loss-log "$tmp/l3"
run --seed 8 --threads 2 --loss-log "$tmp/l4"
cmp "$tmp/l1" "$tmp/l2" || { echo "FAIL: same seed, different losses"; exit 1; }
cmp "$tmp/l1" "$tmp/l3" || { echo "FAIL: losses depend on the thread count"; paste "$tmp/l1" "$tmp/l3"; exit 1; }
if cmp -s "$tmp/l1" "$tmp/l4"; then echo "FAIL: the seed has no effect"; exit 1; fi
echo "determinism: identical sources, identical losses ($(wc -l < "$tmp/l1") steps, 1 and 2 threads)"
