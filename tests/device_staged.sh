#!/usr/bin/env bash
# The training driver's device code paths, without a GPU: the same programs
# run on the CPU device and on the staged CPU device (DST_DEVICE=cpu-staged:
# the driver treats the slabs as device memory, so every value it reads or
# writes goes through upload, download and device copies, as with CUDA).
# The two must agree bit for bit under data parallelism and every ZeRO
# stage, allocate what the plan says, and checkpoints written on one must
# resume on the other bit for bit.
#   tests/device_staged.sh DSTC ST_COMPARE
set -uo pipefail
dstc=$(realpath "$1")
st_compare=$(realpath "$2")
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/mpi_env.sh"
data=$here/tests/data/tiny.txt
source "$here/tests/expect.sh"
cd "$tmp"

launch() { # np binary args...
  local np=$1
  shift
  if [[ $np == 1 ]]; then "$@"; else mpirun -np "$np" "$@"; fi
}

# dp grad_accum zero batch [precision]; the sanitizer build runs a
# representative subset (DST_TEST_SUBSET=1)
layouts=("1 1 0 4" "1 2 0 4" "2 1 0 4" "2 1 1 4" "2 1 2 4" "2 2 2 4" "2 1 3 4" "2 2 3 4" "3 1 3 6" "1 1 0 4 bf16"
  "2 1 3 4 bf16")
[[ ${DST_TEST_SUBSET:-0} == 1 ]] && layouts=("1 2 0 4" "2 1 1 4" "2 2 2 4" "3 1 3 6" "2 1 3 4 bf16")
for l in "${layouts[@]}"; do
  set -- $l
  prec=${5:-fp32}
  name="dp=$1 grad_accum=$2 zero=$3 $prec"
  b=b-$1-$2-$3-$prec
  "$dstc" build "$here/examples/gpt.dst" -D batch=$4 -D seq=32 -D layers=2 -fdp=$1 -fgrad_accum=$2 -fzero=$3 \
    -fprecision=$prec -o $b > /dev/null || { bad "$name: build"; continue; }
  common=(--data "$data" --steps 6 --threads 1 --quiet --save-every 3 --keep 2)
  launch $1 $b/gpt "${common[@]}" --checkpoint-dir $b.cpu --loss-log $b.cpu.log --save $b.cpu.st > $b.cpu.out 2>&1 ||
    { cat $b.cpu.out; bad "$name: CPU device run failed"; continue; }
  DST_DEVICE=cpu-staged launch $1 $b/gpt "${common[@]}" --checkpoint-dir $b.stg --loss-log $b.stg.log \
    --save $b.stg.st > $b.stg.out 2>&1 || { cat $b.stg.out; bad "$name: staged device run failed"; continue; }
  if [[ -s $b.cpu.log ]] && cmp -s $b.cpu.log $b.stg.log; then ok; else
    bad "$name: the staged device's losses differ"; paste $b.cpu.log $b.stg.log; fi
  if grep -q "^memory: planned \([0-9]*\) bytes.*allocated \1 bytes" $b.stg.out; then ok; else
    grep memory $b.stg.out; bad "$name: the staged run did not allocate what the plan says"; fi
  if "$st_compare" --atol 0 --rtol 0 $b.stg.st $b.cpu.st > /dev/null; then ok; else bad "$name: the exported models differ"; fi
  # a checkpoint of the staged run resumes on the CPU device, and one of the
  # CPU device on the staged device: both continue bit for bit
  DST_DEVICE=cpu-staged launch $1 $b/gpt "${common[@]}" --resume $b.cpu/step-00000003 --loss-log $b.r1.log \
    > $b.r1.out 2>&1
  launch $1 $b/gpt "${common[@]}" --resume $b.stg/step-00000003 --loss-log $b.r2.log > $b.r2.out 2>&1
  if [[ -s $b.r1.log ]] && tail -n 3 $b.cpu.log | cmp -s - $b.r1.log && tail -n 3 $b.cpu.log | cmp -s - $b.r2.log;
  then ok; else
    cat $b.r1.out $b.r2.out; bad "$name: resumed across devices, the losses differ"; paste $b.cpu.log $b.r1.log $b.r2.log; fi
done

# A device this program does not have is refused.
if out=$(DST_DEVICE=gpu b-1-2-0-fp32/gpt --data "$data" --steps 1 2>&1); then bad "DST_DEVICE=gpu accepted"
elif grep -q "DST_DEVICE=gpu: this program runs on the CPU" <<< "$out"; then ok; else bad "unexpected message: $out"; fi

echo "staged device: $pass passed, $fail failed"
[[ $fail == 0 ]]
