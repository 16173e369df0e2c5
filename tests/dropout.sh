#!/usr/bin/env bash
# Dropout masks: each data-parallel rank and each accumulation micro-step
# draws its own, so a batch split over ranks or micro-steps trains the
# trajectory of the same batch on one rank; a resumed run draws the masks it
# would have drawn; renumbering the graph changes no mask; and dropout is
# really on (p = 0 trains differently).
#   tests/dropout.sh DSTC
set -uo pipefail
dstc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/mpi_env.sh"
source "$here/tests/expect.sh"
model=$here/tests/models/dropout.dst
data=$here/tests/data/tiny.txt
cd "$tmp"

# worst A B TOL: the loss logs agree within TOL relative, and have 6 lines
worst() {
  awk -v tol="$3" 'NR == FNR { a[FNR] = $1; next }
    { d = $1 - a[FNR]; d = d < 0 ? -d : d; r = d / a[FNR]; if (r > w) w = r; k++ }
    END { printf "%d steps: worst relative difference %.2e\n", k, w; exit !(k == 6 && w <= tol) }' "$1" "$2"
}
build() { # NAME FLAGS...
  local name=$1
  shift
  "$dstc" build "$model" "$@" -o "$name" > /dev/null || bad "build $name"
}
train() { # NP NAME LOG ARGS...
  local np=$1 name=$2 log=$3
  shift 3
  if [[ $np == 1 ]]; then "$name/dropgpt" --data "$data" --threads 1 --quiet --loss-log "$log" "$@" > "$log.out" 2>&1
  else mpirun -np "$np" "$name/dropgpt" --data "$data" --threads 1 --quiet --loss-log "$log" "$@" > "$log.out" 2>&1; fi ||
    { bad "$name run"; cat "$log.out"; }
}

build one
build dp2 -fdp=2
build ga2 -fgrad_accum=2
build dp2ga2 -fdp=2 -fgrad_accum=2 -D batch=16
build one16 -D batch=16
build extra -D extra=true
build nodrop -D p=0.0
train 1 one one.log
train 2 dp2 dp2.log
train 1 ga2 ga2.log
train 2 dp2ga2 dp2ga2.log
train 1 one16 one16.log
train 1 extra extra.log
train 1 nodrop nodrop.log

# the same global batch on one rank, over two ranks, over two micro-steps
if out=$(worst one.log dp2.log 1e-5); then ok; else bad "dp = 2 does not follow one rank: $out"; fi
if out=$(worst one.log ga2.log 1e-5); then ok; else bad "grad_accum = 2 does not follow one step: $out"; fi
if out=$(worst one16.log dp2ga2.log 1e-5); then ok; else bad "dp = 2 x grad_accum = 2 does not follow one rank: $out"; fi
# renumbered nodes draw the same masks: bit for bit
if cmp -s one.log extra.log; then ok; else bad "an unused value before the dropouts changed the masks"; paste one.log extra.log; fi
# dropout is on: without it the losses differ
if cmp -s one.log nodrop.log; then bad "p = 0.1 trains like p = 0"; else ok; fi
# resume: steps 4-6 of a run resumed after step 3 are those of the whole run
train 1 one ck.log --save-every 3 --checkpoint-dir ck
train 1 one res.log --resume ck/step-00000003 --checkpoint-dir ck2
if tail -n 3 ck.log | cmp -s - res.log && cmp -s ck.log one.log; then ok; else
  bad "a resumed run draws other masks"; paste one.log ck.log res.log; fi
train 2 dp2 dpck.log --save-every 3 --checkpoint-dir dpck
train 2 dp2 dpres.log --resume dpck/step-00000003 --checkpoint-dir dpck2
if tail -n 3 dpck.log | cmp -s - dpres.log; then ok; else
  bad "a resumed 2-rank run draws other masks"; paste dpck.log dpres.log; fi

echo "dropout: $pass passed, $fail failed"
[[ $fail == 0 ]]
