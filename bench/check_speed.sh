#!/usr/bin/env bash
# Front-end speed: wall time of `dstc check` on GPT-2 1.5B (48 layers) and
# GPT-2 124M, whole process (start-up, imports, parse, sema, lowering).
# Prints the median and min of N runs.   Usage: bench/check_speed.sh DSTC [N]
set -euo pipefail
dstc=${1:?usage: bench/check_speed.sh path/to/dstc [runs]}
runs=${2:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
measure() {
  local label=$1; shift
  local t=()
  for ((i = 0; i < runs; i++)); do
    local s e
    s=$(date +%s%N)
    "$dstc" check "$@" > /dev/null
    e=$(date +%s%N)
    t+=($(( (e - s) / 1000 )))
  done
  sorted=($(printf '%s\n' "${t[@]}" | sort -n))
  printf '%-28s median %6.2f ms   min %6.2f ms   (%d runs)\n' "$label" \
    "$(awk "BEGIN{print ${sorted[$((runs / 2))]} / 1000}")" "$(awk "BEGIN{print ${sorted[0]} / 1000}")" "$runs"
}
measure "gpt2-1.5B (48 layers)" "$here/examples/gpt.dst" -D vocab=50257 -D seq=1024 -D dim=1600 -D heads=25 -D layers=48
measure "gpt2-124M (12 layers)" "$here/examples/gpt.dst" -D vocab=50257 -D seq=1024 -D dim=768 -D heads=12 -D layers=12
measure "llama-7B shape (32 layers)" "$here/examples/llama.dst" -D vocab=32000 -D seq=4096 -D dim=4096 -D heads=32 -D kv_heads=32 -D hidden=11008 -D layers=32
