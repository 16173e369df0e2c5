#!/usr/bin/env bash
# Checkpoints: a resumed run continues bit for bit (also under ZeRO-3); a
# checkpoint resumes under another data-parallel layout; a sharded run
# exports the whole model to one file; a run killed with SIGKILL resumes
# from its last checkpoint; corrupt, truncated and wrong-model checkpoints
# are refused with a message naming the file; only the last K are kept.
#   tests/checkpoint.sh DSTC ST_COMPARE
set -uo pipefail
dstc=$(realpath "$1")
st_compare=$(realpath "$2")
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/mpi_env.sh"
data=$here/tests/data/tiny.txt
source "$here/tests/expect.sh"
args=(-D batch=4 -D seq=32 -D layers=2)
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -o "$tmp/b" > /dev/null || { echo "FAIL: build"; exit 1; }
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -fdp=2 -o "$tmp/b2" > /dev/null || { echo "FAIL: build dp=2"; exit 1; }
gpt=$tmp/b/gpt
cd "$tmp"

# 1. Interrupted and resumed = uninterrupted, bit for bit.
$gpt --data "$data" --steps 10 --save-every 5 --checkpoint-dir c1 --quiet --loss-log full.log > /dev/null
$gpt --data "$data" --steps 10 --resume c1/step-00000005 --quiet --loss-log resumed.log > /dev/null
if tail -n 5 full.log | cmp -s - resumed.log; then ok; else bad "resumed losses differ"; paste full.log resumed.log; fi

# 2. The same checkpoint resumes with dp = 2 (tensors are stored globally).
mpirun -np 2 "$tmp/b2/gpt" --data "$data" --steps 10 --resume c1/step-00000005 --quiet --loss-log dp2.log > /dev/null 2>&1
if tail -n 5 full.log | awk 'NR == FNR { a[FNR] = $1; next } { d = $1 - a[FNR]; d = d < 0 ? -d : d;
     if (d / a[FNR] > 1e-5) bad = 1 } END { exit bad || FNR != 5 }' - dp2.log; then ok; else
  bad "resume under dp=2 differs"; fi

# 2b. A ZeRO-2 run over 2 ranks (sharded optimizer state) saves whole
# tensors: its checkpoint resumes on one rank and matches the run continued.
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -fdp=2 -fzero=2 -o "$tmp/bz" > /dev/null
mpirun -np 2 "$tmp/bz/gpt" --data "$data" --steps 10 --save-every 5 --checkpoint-dir cz --quiet --loss-log z.log > /dev/null 2>&1
$gpt --data "$data" --steps 10 --resume cz/step-00000005 --quiet --loss-log z1.log > /dev/null
if tail -n 5 z.log | awk 'NR == FNR { a[FNR] = $1; next } { d = $1 - a[FNR]; d = d < 0 ? -d : d;
     if (d / a[FNR] > 1e-5) bad = 1 } END { exit bad || FNR != 5 }' - z1.log; then ok; else
  bad "ZeRO-2 checkpoint resumed on one rank differs"; paste z.log z1.log; fi

# 2c. ZeRO-3 over 2 ranks (every rank holds half of every parameter):
# interrupted and resumed = uninterrupted, bit for bit; each rank writes
# its shard and the manifest says which rank holds which slice; the whole
# model it exports with --save equals its last checkpoint's (loaded on one
# rank); that checkpoint resumes on one rank.
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -fdp=2 -fzero=3 -o "$tmp/b3" > /dev/null
mpirun -np 2 "$tmp/b3/gpt" --data "$data" --steps 10 --save-every 5 --checkpoint-dir c3z --quiet --loss-log z3.log \
  --save z3.safetensors > /dev/null 2>&1
mpirun -np 2 "$tmp/b3/gpt" --data "$data" --steps 10 --resume c3z/step-00000005 --quiet --loss-log z3r.log \
  > /dev/null 2>&1
if [[ -s z3r.log ]] && tail -n 5 z3.log | cmp -s - z3r.log; then ok; else bad "ZeRO-3 resumed losses differ"; paste z3.log z3r.log; fi
# each rank wrote its own shard, and the manifest says which rank holds what
man=c3z/step-00000010/manifest.json
if [[ -f c3z/step-00000010/rank-00000.safetensors && -f c3z/step-00000010/rank-00001.safetensors ]] &&
   grep -q '"name": "wte.w", "dtype": "F32", "shape": \[256, 128\], "slices": \[{"rank": 0, "start": 0, "count": [0-9]*}, {"rank": 1,' "$man" &&
   grep -q '"zero": 3' "$man"; then ok; else bad "ZeRO-3 checkpoint layout"; ls c3z/step-00000010; head -c 2000 "$man"; fi
$gpt --data "$data" --steps 10 --resume c3z --quiet --save z3c.safetensors > /dev/null 2>&1
if "$st_compare" --atol 0 --rtol 0 z3.safetensors z3c.safetensors > /dev/null; then ok; else
  bad "the model ZeRO-3 exported differs from its checkpoint"; fi
$gpt --data "$data" --steps 10 --resume c3z/step-00000005 --quiet --loss-log z31.log > /dev/null
if tail -n 5 z3.log | awk 'NR == FNR { a[FNR] = $1; next } { d = $1 - a[FNR]; d = d < 0 ? -d : d;
     if (d / a[FNR] > 1e-5) bad = 1 } END { exit bad || FNR != 5 }' - z31.log; then ok; else
  bad "ZeRO-3 checkpoint resumed on one rank differs"; paste z3.log z31.log; fi

# 2d. A one-rank checkpoint resumes under ZeRO-3 over 2 ranks (each rank
# reads only the slices it holds) and continues the same trajectory.
mpirun -np 2 "$tmp/b3/gpt" --data "$data" --steps 10 --resume c1/step-00000005 --quiet --loss-log z3from1.log \
  > /dev/null 2>&1
if tail -n 5 full.log | awk 'NR == FNR { a[FNR] = $1; next } { d = $1 - a[FNR]; d = d < 0 ? -d : d;
     if (d / a[FNR] > 1e-5) bad = 1 } END { exit bad || FNR != 5 }' - z3from1.log; then ok; else
  bad "one-rank checkpoint resumed under ZeRO-3 differs"; paste full.log z3from1.log; fi

# 3. SIGKILL in the middle: the last checkpoint is whole and resumes.
$gpt --data "$data" --steps 100000 --save-every 3 --checkpoint-dir c3 --quiet > /dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [[ -d c3/step-00000009 ]] && break; sleep 0.05; done
kill -9 $pid
wait $pid 2> /dev/null
last=$(ls c3 | grep '^step-' | sort | tail -n 1)
n=$((10#${last#step-}))
if [[ -n $last ]] && $gpt --data "$data" --steps $((n + 2)) --resume c3 > out3 2>&1 &&
   grep -q "resumed from c3 after step $n" out3 && grep -q "done: loss" out3; then ok; else
  bad "resume after SIGKILL (last checkpoint: ${last:-none})"; cat out3; fi

# 3b. SIGKILL of one rank of a 2-rank run: the job ends non-zero within
# seconds (not at a timeout), naming the dead process, and its last
# checkpoint loads.
mpirun -np 2 "$tmp/b2/gpt" --data "$data" --steps 100000 --save-every 3 --checkpoint-dir c6 --quiet > out6 2>&1 &
mp=$!
for _ in $(seq 300); do [[ -d c6/step-00000006 ]] && break; sleep 0.05; done
victim=$(pgrep -f "$tmp/b2/gpt" | tail -n 1)
t0=$(date +%s)
kill -9 "$victim"
wait $mp
rc=$?
t1=$(date +%s)
if [[ $rc != 0 && $((t1 - t0)) -le 10 ]] && grep -qE "rank [01] .*(signal 9|Killed)" out6; then ok; else
  bad "killed rank: status $rc after $((t1 - t0)) s"; cat out6; fi
last=$(ls c6 | grep '^step-' | sort | tail -n 1)
if [[ -n $last ]] && $gpt --data "$data" --steps $((10#${last#step-} + 1)) --resume c6 --quiet > /dev/null 2>&1; then ok; else
  bad "the last checkpoint of the killed run does not load"; fi

# 4. Corrupt, truncated and wrong-model checkpoints are refused.
cp -r c1/step-00000010 corrupt
printf '\001' | dd of=corrupt/rank-00000.safetensors bs=1 seek=50000 conv=notrunc 2> /dev/null
out=$($gpt --data "$data" --steps 12 --resume corrupt 2>&1); rc=$?
if [[ $rc == 1 ]] && grep -q "corrupt/rank-00000.safetensors is corrupt" <<< "$out"; then ok; else bad "corrupt: $rc $out"; fi
cp -r c1/step-00000010 trunc
truncate -s 40000 trunc/rank-00000.safetensors
out=$($gpt --data "$data" --steps 12 --resume trunc 2>&1); rc=$?
if [[ $rc == 1 ]] && grep -q "trunc/rank-00000.safetensors" <<< "$out"; then ok; else bad "truncated: $rc $out"; fi
cp -r c3z/step-00000010 z3corrupt
printf '\001' | dd of=z3corrupt/rank-00001.safetensors bs=1 seek=30000 conv=notrunc 2> /dev/null
out=$($gpt --data "$data" --steps 12 --resume z3corrupt 2>&1); rc=$?
if [[ $rc == 1 ]] && grep -q "z3corrupt/rank-00001.safetensors is corrupt" <<< "$out"; then ok; else
  bad "corrupt shard of rank 1: $rc $out"; fi
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -D dim=64 -o wide > /dev/null
out=$(./wide/gpt --data "$data" --steps 12 --resume c1 2>&1); rc=$?
if [[ $rc == 1 ]] && grep -q "tensor 'wte.w': shape" <<< "$out"; then ok; else bad "wrong model: $rc $out"; fi
"$dstc" build "$here/examples/llama.dst" -D batch=4 -D seq=32 -o other > /dev/null
out=$(./other/llama --data "$data" --steps 12 --resume c1 2>&1); rc=$?
if [[ $rc == 1 ]] && grep -q "checkpoint of model 'GPT', not of 'Llama'" <<< "$out"; then ok; else bad "other model: $rc $out"; fi

# 5. Only the last K checkpoints stay.
$gpt --data "$data" --steps 8 --save-every 2 --keep 2 --checkpoint-dir c5 --quiet > /dev/null
if [[ "$(ls c5 | tr '\n' ' ')" == "step-00000006 step-00000008 " ]]; then ok; else bad "keep 2: $(ls -a c5)"; fi

echo "checkpoints: $pass passed, $fail failed"
[[ $fail == 0 ]]
