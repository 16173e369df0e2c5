#!/usr/bin/env bash
# bf16 mixed precision (-fprecision=bf16), on the CPU: bf16 values stored as
# 16 bits and computed in fp32, so this is the same rounding a GPU does.
#  - the precision pass gives every matmul bf16 operands, nothing else;
#  - training follows the fp32 run within bf16's tolerance (and is not
#    secretly the fp32 run), for the GPT and the Llama examples;
#  - the first step's gradients match fp32's relative to each tensor's scale;
#  - data parallelism under ZeRO 0-3 trains the same trajectory as one rank;
#  - checkpoints hold the fp32 master weights: a bf16 run resumes bit for
#    bit, and its checkpoint continues in an fp32 program;
#  - the plan is what the run allocates, and bf16 plans less activation
#    memory than fp32 for GPT-2 124M;
#  - --check-grads refuses bf16 programs (it needs fp32), and fp16 (which
#    needs dynamic loss scaling) is refused by build.
#   tests/precision.sh DSTC ST_COMPARE
set -uo pipefail
dstc=$(realpath "$1")
st_compare=$(realpath "$2")
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/mpi_env.sh"
source "$here/tests/expect.sh"
data=$here/tests/data/tiny.txt
cd "$tmp"

# worst A B N TOL: loss logs A and B have N lines, within TOL relative
worst() {
  awk -v n="$3" -v tol="$4" 'NR == FNR { a[FNR] = $1; next }
    { d = $1 - a[FNR]; d = d < 0 ? -d : d; r = d / a[FNR]; if (r > w) w = r; k++ }
    END { printf "%d steps: worst relative difference %.2e\n", k, w; exit !(k == n && w <= tol) }' "$1" "$2"
}
run=(--data "$data" --threads 1 --quiet)

# The pass: each matmul reads two casts, and casts feed only matmuls.
"$dstc" check "$here/examples/gpt.dst" -fprecision=bf16 --dump-ir=precision > ir.txt 2>&1
mm=$(grep -c ' = matmul ' ir.txt)
if awk '/ = cast bf16/ { c[$1] = 1 }
         / = matmul / { s = $0; sub(/^[^(]*\(/, "", s); sub(/\).*/, "", s); split(s, p, ", ");
                        if (!c[p[1]] || !c[p[2]]) bad++ }
         END { exit bad > 0 }' ir.txt && ((mm > 0)); then ok; else
  bad "a matmul without bf16 operands"; grep -E ' = (matmul|cast) ' ir.txt | head; fi
"$dstc" check "$here/examples/gpt.dst" --dump-ir=precision > ir32.txt 2>&1
if ! grep -q ' = cast ' ir32.txt; then ok; else bad "fp32 has casts"; fi

for ex in gpt llama; do
  flags=(-D batch=4 -D seq=32)
  "$dstc" build "$here/examples/$ex.dst" "${flags[@]}" -o f32-$ex > /dev/null || bad "$ex: fp32 build"
  "$dstc" build "$here/examples/$ex.dst" "${flags[@]}" -fprecision=bf16 -o bf-$ex > /dev/null || bad "$ex: bf16 build"
  f32-$ex/$ex "${run[@]}" --steps 50 --loss-log f32-$ex.log > /dev/null 2>&1 || bad "$ex: fp32 run"
  expect "$ex: bf16 allocates its plan" 0 'memory: planned ([0-9]*) bytes; allocated \1 bytes' -- \
    bf-$ex/$ex "${run[@]}" --steps 50 --loss-log bf-$ex.log
  expect "$ex: bf16 follows fp32 (50 steps)" 0 'worst relative' -- worst f32-$ex.log bf-$ex.log 50 5e-3
  if ! cmp -s f32-$ex.log bf-$ex.log; then ok; else bad "$ex: bf16 losses are fp32's to the bit"; fi
  # the first step's gradients (and logits), relative to each tensor's scale
  f32-$ex/$ex "${run[@]}" --steps 1 --dump f32-$ex.st > /dev/null 2>&1
  bf-$ex/$ex "${run[@]}" --steps 1 --dump bf-$ex.st > /dev/null 2>&1
  expect "$ex: bf16 gradients" 0 '^ok: ' -- "$st_compare" --atol 1e-7 --rtol 0 --stol 2e-2 bf-$ex.st f32-$ex.st
done

# Data parallelism: the same trajectory under every ZeRO stage.
"$dstc" build "$here/examples/gpt.dst" -D batch=4 -D seq=32 -fprecision=bf16 -o dp1 > /dev/null
dp1/gpt "${run[@]}" --steps 10 --loss-log dp1.log > /dev/null 2>&1
for z in 0 1 2 3; do
  "$dstc" build "$here/examples/gpt.dst" -D batch=4 -D seq=32 -fprecision=bf16 -fdp=2 -fzero=$z -o z$z > /dev/null ||
    { bad "zero=$z: build"; continue; }
  mpirun -np 2 z$z/gpt "${run[@]}" --steps 10 --loss-log z$z.log > z$z.out 2>&1 || { cat z$z.out; bad "zero=$z: run"; }
  expect "dp=2 zero=$z against one rank" 0 'worst relative' -- worst dp1.log z$z.log 10 1e-3
done

# Checkpoints hold fp32 master weights: bit-exact resume in bf16, and the
# fp32 program continues from a bf16 checkpoint.
bf-gpt/gpt "${run[@]}" --steps 10 --save-every 5 --checkpoint-dir ck --loss-log full.log > /dev/null 2>&1
expect "bf16 resume" 0 'resumed from' -- bf-gpt/gpt --data "$data" --threads 1 --steps 10 \
  --resume ck/step-00000005 --loss-log res.log
if [[ -s res.log ]] && tail -n 5 full.log | cmp -s - res.log; then ok; else bad "bf16 resume is not bit for bit"; fi
expect "fp32 continues a bf16 checkpoint" 0 'resumed from' -- f32-gpt/gpt --data "$data" --threads 1 --steps 10 \
  --resume ck/step-00000005 --loss-log res32.log
expect "fp32 continuation close" 0 'worst relative' -- worst res.log res32.log 5 5e-3

# GPT-2 124M at seq 1024: bf16 plans less activation memory than fp32.
big=(-D vocab=50257 -D seq=1024 -D dim=768 -D heads=12 -D layers=12 -D batch=8)
act() { "$dstc" plan "$here/examples/gpt.dst" "${big[@]}" "$@" | awk '$1 == "activations" { print $2 }'; }
a32=$(act) a16=$(act -fprecision=bf16)
echo "GPT-2 124M, batch 8: activations fp32 $a32 bytes, bf16 $a16 bytes"
if [[ -n $a32 && -n $a16 ]] && ((a16 < a32)); then ok; else bad "bf16 does not plan less activation memory"; fi

# Finite differences cannot see through bf16 rounding: --check-grads says so.
expect "check-grads needs fp32" 1 'check-grads needs fp32.*-fprecision=fp32' -- \
  bf-gpt/gpt --data "$data" --check-grads
expect "banner" 0 'steps, matmuls in bf16' -- bf-gpt/gpt --data "$data" --threads 1 --steps 1

expect "fp16 refused" 1 'precision = fp16 is checked, but this version neither plans nor runs it' -- \
  "$dstc" build "$here/examples/gpt.dst" -fprecision=fp16 -o f16

echo "precision: $pass passed, $fail failed"
[[ $fail == 0 ]]
