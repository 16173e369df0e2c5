#!/usr/bin/env bash
# Data-parallel scaling on this machine: the 10.8M-parameter GPT (vocab 256,
# seq 256, dim 384, 6 layers, global batch 8) trained by 1 rank x 1 thread
# and by 2 ranks x 1 thread on the same global batch. Prints tokens/s of
# each (median of steps), the speed-up, and the time the 2-rank run waits
# in its gradient collectives per step.
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
"$dstc" build "$here/examples/gpt.dst" "${cfg[@]}" -fdp=2 -o "$tmp/two" > /dev/null
one=$("$tmp/one/gpt" --data "$tmp/data.txt" --steps $((steps + 2)) --log-every 1 --threads 1 | tps)
out=$(mpirun -np 2 --bind-to core "$tmp/two/gpt" --data "$tmp/data.txt" --steps $((steps + 2)) --log-every 1 --threads 1)
two=$(tps <<< "$out")
echo "1 rank  x 1 thread: $one tok/s"
echo "2 ranks x 1 thread: $two tok/s   speed-up $(awk -v a="$two" -v b="$one" 'BEGIN{printf "%.2f", a/b}')x"
sed 's/\r//g; s/\x1b\[K//g' <<< "$out" | grep -E '^communication' || true
grep -E '^done' <<< "$out" | sed 's/^/2 ranks: /'
