#!/usr/bin/env bash
# Data-parallel scaling on this machine: the 10.8M-parameter GPT (vocab 256,
# seq 256, dim 384, 6 layers, global batch 8) trained by 1 rank x 1 thread
# and by 2 ranks x 1 thread on the same global batch, at ZeRO stages 0-3.
# Prints tokens/s (median of steps), the speed-up over one rank, the time
# each 2-rank run waits in collectives per step and its share of the step,
# and the bytes per rank per step the runtime sent next to what `dstc plan`
# predicts (both as ring volume: (N-1)/N of each collective's buffer).
#   bench/dp_scaling.sh DSTC [STEPS]
set -euo pipefail
dstc=$(realpath "${1:?usage: bench/dp_scaling.sh path/to/dstc [steps]}")
steps=${2:-12}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
head -c 200000 /dev/urandom > "$tmp/data.txt"
cfg=(-D vocab=256 -D seq=256 -D dim=384 -D heads=6 -D layers=6 -D batch=8)
median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
# (the progress escapes a terminal gets are dropped first: mpirun gives ranks a pty)
tps() { sed 's/\r//g; s/\x1b\[K//g' | awk -F'|' '/^step .*tok\/s/{n++; if (n > 2) {v=$6; gsub(/[^0-9.]/,"",v); print v}}' | median; }
"$dstc" build "$here/examples/gpt.dst" "${cfg[@]}" -o "$tmp/one" > /dev/null
one=$("$tmp/one/gpt" --data "$tmp/data.txt" --steps $((steps + 2)) --log-every 1 --threads 1 | tps)
echo "1 rank  x 1 thread: $one tok/s"
printf '%-6s %10s %9s %12s %12s %14s %14s\n' zero "tok/s" speed-up "wait ms/step" "wait share" "sent MiB/step" "plan MiB/step"
for z in 0 1 2 3; do
  "$dstc" build "$here/examples/gpt.dst" "${cfg[@]}" -fdp=2 -fzero=$z -o "$tmp/z$z" > /dev/null
  plan=$("$dstc" plan "$here/examples/gpt.dst" "${cfg[@]}" -fdp=2 -fzero=$z | sed -n 's/^communication per rank per step: \([0-9.]*\) MiB.*/\1/p')
  out=$(mpirun -np 2 --bind-to core "$tmp/z$z/gpt" --data "$tmp/data.txt" --steps $((steps + 2)) --log-every 1 --threads 1 |
        sed 's/\r//g; s/\x1b\[K//g')
  two=$(tps <<< "$out")
  sent=$(sed -n 's/^communication: \([0-9.]*\) MiB.*/\1/p' <<< "$out")
  wait=$(sed -n 's/^communication: .*; \([0-9.]*\) ms per step waiting.*/\1/p' <<< "$out")
  ms=$(sed -n 's/^done: .*| \([0-9.]*\) ms\/step.*/\1/p' <<< "$out")
  printf '%-6s %10s %8.2fx %12s %11.1f%% %14s %14s\n' "$z" "$two" "$(awk -v a="$two" -v b="$one" 'BEGIN{print a/b}')" \
    "$wait" "$(awk -v w="$wait" -v s="$ms" 'BEGIN{print 100*w/s}')" "$sent" "$plan"
done
