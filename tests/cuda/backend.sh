#!/usr/bin/env bash
# backend.sh: the CUDA backend of dstc (`--backend cuda`).
#
#   tests/cuda/backend.sh DSTC build   the examples compile and link (no GPU
#                                      needed); the .cu is byte-stable; the
#                                      settings CUDA programs cannot run are
#                                      refused
#   tests/cuda/backend.sh DSTC run     a CUDA program trains 5 steps; exits 77
#                                      (CTest: skipped) where no GPU is found
#                                      (nvidia-smi -L lists none)
set -uo pipefail
dstc=${1:?usage: backend.sh DSTC build|run}
mode=${2:?usage: backend.sh DSTC build|run}
here=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/expect.sh"
gpt=(build --backend cuda "$here/examples/gpt.dst" -D batch=4 -D seq=32 -D layers=2)
llama=(build --backend cuda "$here/examples/llama.dst" -D batch=4 -D seq=32)

case $mode in
build)
  expect gpt 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -o "$tmp/g1"
  expect gpt-cu 0 '' -- test -s "$tmp/g1/gpt.cu" -a ! -e "$tmp/g1/gpt.c" -a ! -e "$tmp/g1/gpt.o"
  expect gpt-backend 0 'DST_BACKEND_CUDA' -- grep -F '.backend = DST_BACKEND_CUDA' "$tmp/g1/gpt.cu"
  expect gpt-again 0 'built' -- "$dstc" "${gpt[@]}" -o "$tmp/g2"
  expect gpt-same 0 '' -- cmp "$tmp/g1/gpt.cu" "$tmp/g2/gpt.cu"
  expect llama 0 'built .*/llama$' -- "$dstc" "${llama[@]}" -o "$tmp/l"
  expect dp-zero1 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -fdp=2 -fzero=1 -o "$tmp/d"
  expect zero2 1 'zero = 2 is checked and planned, but this version.s CUDA programs' -- \
    "$dstc" "${gpt[@]}" -fdp=2 -fzero=2 -o "$tmp/z"
  expect zero2-note 1 'set by -fzero=2 on the command line' -- "$dstc" "${gpt[@]}" -fdp=2 -fzero=2 -o "$tmp/z"
  expect zero2-cpu 0 'built' -- "$dstc" build "$here/examples/gpt.dst" -D batch=4 -D seq=32 -D layers=2 \
    -fdp=2 -fzero=2 -o "$tmp/zc"
  expect bf16 1 'precision = bf16 is checked' -- "$dstc" "${gpt[@]}" -fprecision=bf16 -o "$tmp/b"
  echo "backend.sh build: $pass passed, $fail failed"
  ;;
run)
  if ! nvidia-smi -L 2> /dev/null | grep -q '^GPU'; then
    echo "SKIPPED: no GPU (nvidia-smi -L lists none)"
    exit 77
  fi
  expect build 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -o "$tmp/g"
  expect train 0 'done: loss' -- "$tmp/g/gpt" --data "$here/tests/data/tiny.txt" --steps 5
  echo "backend.sh run: $pass passed, $fail failed"
  ;;
*)
  echo "usage: backend.sh DSTC build|run" >&2
  exit 2
  ;;
esac
[[ $fail == 0 ]]
