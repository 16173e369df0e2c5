#!/usr/bin/env bash
# Data parallelism, gradient accumulation and ZeRO train the same trajectory
# as one rank: the tiny GPT with the same global batch under dp in {1, 2, 4}
# x grad_accum in {1, 2}, and ZeRO stages 1 and 2 (MPI ranks on this
# machine), gives the same losses to within 1e-5 relative over 10 steps
# (fp32; the sums run in another order).
# A launch that does not match the plan is refused with one message.
#   tests/dp_equivalence.sh DSTC
set -euo pipefail
dstc=$1
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Sanitizer builds: Open MPI keeps allocations past MPI_Finalize by design.
export LSAN_OPTIONS="suppressions=$here/tests/mpi/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
args=(-D batch=8 -D seq=32 -D layers=2)
# dp grad_accum zero bucket_mb (small buckets: many reductions overlapping the backward)
layouts=("1 1 0 25" "2 1 0 25" "4 1 0 25" "1 2 0 25" "2 2 0 25" "4 2 0 25" "2 1 0 0.02" "4 2 1 0.05"
         "2 1 1 25" "4 2 1 25" "2 1 2 25" "4 1 2 25" "4 2 2 25")
for l in "${layouts[@]}"; do
  set -- $l
  "$dstc" run "$here/examples/gpt.dst" "${args[@]}" -fdp=$1 -fgrad_accum=$2 -fzero=$3 -fbucket_mb=$4 -- \
    --data "$here/tests/data/tiny.txt" --steps 10 --quiet --threads 1 --loss-log "$tmp/l$1-$2-$3-$4.log" \
    > "$tmp/out" 2>&1 || { cat "$tmp/out"; echo "FAIL: dp=$1 grad_accum=$2 zero=$3 run failed"; exit 1; }
done
for l in "${layouts[@]:1}"; do
  set -- $l
  awk -v l="dp=$1 grad_accum=$2 zero=$3 bucket_mb=$4" 'NR == FNR { a[FNR] = $1; next }
    { d = $1 - a[FNR]; if (d < 0) d = -d; r = d / (a[FNR] < 0 ? -a[FNR] : a[FNR]);
      if (r > worst) worst = r; n++ }
    END { printf "%s: %d steps, worst relative difference %.2e\n", l, n, worst;
          exit !(n == 10 && worst <= 1e-5) }' "$tmp/l1-1-0-25.log" "$tmp/l$1-$2-$3-$4.log" ||
    { echo "FAIL: dp=$1 grad_accum=$2 zero=$3 bucket_mb=$4 differs from one rank";
      paste "$tmp/l1-1-0-25.log" "$tmp/l$1-$2-$3-$4.log"; exit 1; }
done
# The wrong number of ranks: a clear message, non-zero, no hang.
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -fdp=2 -o "$tmp/b" > /dev/null
if out=$(timeout 60 "$tmp/b/gpt" --data "$here/tests/data/tiny.txt" 2>&1); then
  echo "FAIL: a dp=2 program ran as one process"; exit 1
fi
grep -q "the plan needs 2 ranks (dp=2) but 1 was launched" <<< "$out" ||
  { echo "FAIL: unexpected message: $out"; exit 1; }
if out=$("$dstc" run "$here/examples/gpt.dst" "${args[@]}" -fdp=2 -np 3 -- --data x 2>&1); then
  echo "FAIL: -np 3 accepted for dp=2"; exit 1
fi
grep -q "the plan needs 2 ranks" <<< "$out" || { echo "FAIL: unexpected message: $out"; exit 1; }
echo "dp equivalence: 14 passed, 0 failed"
