#!/usr/bin/env bash
# Data parallelism, gradient accumulation and ZeRO train the same trajectory
# as one rank: the tiny GPT with the same global batch under every layout of
# dp in {1, 2, 4} x grad_accum in {1, 2} x ZeRO stage in {0, 1, 2, 3} (MPI
# ranks on this machine) gives the same losses to within 1e-5 relative over
# 20 steps (fp32; the sums run in another order; the differences seen are
# about 1e-7). Also: small buckets and units (many reductions in flight
# during the backward), and dp = 3, whose shards need padding.
# The gradients --dump writes after the first step are the same under every
# ZeRO stage (each gathers its shards). A launch that does not match the
# plan is refused with one message.
#   tests/dp_equivalence.sh DSTC ST_COMPARE
set -euo pipefail
dstc=$1
st_compare=$2
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/mpi_env.sh"
steps=20
# batch dp grad_accum zero bucket_mb [overlap_comm]; the first of each batch size is the reference
layouts=("8 1 1 0 25")
for dp in 1 2 4; do for ga in 1 2; do for z in 0 1 2 3; do
  [[ $dp == 1 && $ga == 1 && $z == 0 ]] || layouts+=("8 $dp $ga $z 25")
done; done; done
layouts+=("8 2 1 0 0.02" "8 4 2 1 0.05" "8 2 1 2 0.02" "8 4 2 3 0.02" "12 1 1 0 25" "12 3 1 3 25" "12 3 2 2 25")
# without overlap: one all-reduce after the backward pass (zero 0), each
# unit's reduce-scatter waited for at once (zero 2, 3)
layouts+=("8 2 1 0 25 false" "8 2 2 2 0.02 false" "8 4 1 3 0.02 false")
# The sanitizer build runs a representative subset (DST_TEST_SUBSET=1):
# every ZeRO stage on 2 ranks, accumulation, 3 and 4 ranks, small buckets,
# no overlap; the normal build runs them all.
if [[ ${DST_TEST_SUBSET:-0} == 1 ]]; then
  layouts=("8 1 1 0 25" "8 2 1 0 25" "8 2 1 1 25" "8 2 2 2 0.02" "8 4 1 3 25" "12 1 1 0 25" "12 3 2 3 25"
    "8 2 1 3 0.02 false")
fi
run() { # batch dp ga zero bucket_mb [overlap_comm]
  local overlap=()
  [[ -n ${6:-} ]] && overlap=(-foverlap_comm=$6)
  "$dstc" run "$here/examples/gpt.dst" -D batch=$1 -D seq=32 -D layers=2 -fdp=$2 -fgrad_accum=$3 -fzero=$4 \
    -fbucket_mb=$5 "${overlap[@]}" -- --data "$here/tests/data/tiny.txt" --steps $steps --quiet --threads 1 \
    --loss-log "$tmp/l$1-$2-$3-$4-$5${6:-}.log" > "$tmp/out" 2>&1 ||
    { cat "$tmp/out"; echo "FAIL: batch=$1 dp=$2 grad_accum=$3 zero=$4 bucket_mb=$5 run failed"; exit 1; }
  grep -q "^memory: planned \([0-9]*\) bytes.*allocated \1 bytes" "$tmp/out" ||
    { grep memory "$tmp/out"; echo "FAIL: batch=$1 dp=$2 zero=$4: the run did not allocate what the plan says"; exit 1; }
}
passed=0
for l in "${layouts[@]}"; do
  set -- $l
  run "$@"
  ref=$(ls "$tmp"/l$1-1-1-0-25.log)
  [[ "$2 $3 $4 $5 ${6:-}" == "1 1 0 25 " ]] && continue
  awk -v l="batch=$1 dp=$2 grad_accum=$3 zero=$4 bucket_mb=$5 ${6:+overlap_comm=$6}" -v steps=$steps 'NR == FNR { a[FNR] = $1; next }
    { d = $1 - a[FNR]; if (d < 0) d = -d; r = d / (a[FNR] < 0 ? -a[FNR] : a[FNR]);
      if (r > worst) worst = r; n++ }
    END { printf "%s: %d steps, worst relative difference %.2e\n", l, n, worst;
          exit !(n == steps && worst <= 1e-5) }' "$ref" "$tmp/l$1-$2-$3-$4-$5${6:-}.log" ||
    { echo "FAIL: batch=$1 dp=$2 grad_accum=$3 zero=$4 bucket_mb=$5 ${6:-} differs from one rank";
      paste "$ref" "$tmp/l$1-$2-$3-$4-$5${6:-}.log"; exit 1; }
  passed=$((passed + 1))
done
# --dump under ZeRO 1-3 (shards gathered) against ZeRO 0 (every rank holds all)
for z in 0 1 2 3; do
  "$dstc" run "$here/examples/gpt.dst" -D batch=4 -D seq=32 -D layers=2 -fdp=2 -fzero=$z -- \
    --data "$here/tests/data/tiny.txt" --steps 1 --quiet --threads 1 --dump "$tmp/dump$z.st" > "$tmp/out" 2>&1 ||
    { cat "$tmp/out"; echo "FAIL: --dump under zero=$z"; exit 1; }
  [[ $z == 0 ]] && continue
  "$st_compare" --atol 1e-7 --rtol 1e-5 "$tmp/dump$z.st" "$tmp/dump0.st" > "$tmp/cmp" ||
    { cat "$tmp/cmp"; echo "FAIL: the gradients dumped under zero=$z differ from zero=0"; exit 1; }
  passed=$((passed + 1))
done
# The wrong number of ranks: a clear message, non-zero, no hang.
args=(-D batch=8 -D seq=32 -D layers=2)
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
echo "dp equivalence: $((passed + 2)) passed, 0 failed"
