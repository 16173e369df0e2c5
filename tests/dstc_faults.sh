#!/usr/bin/env bash
# dstc under faults and at its limits: a full disk, a file-size limit or an
# unwritable output gives the file and the reason (exit 1, never an
# internal error or a silent exit); a damaged program in run's cache is
# rebuilt, never run; the plan says which settings its figures leave out
# and compares its peak with --mem-limit and this machine's memory; a model
# too large for the compiler gets a located message.
#   tests/dstc_faults.sh DSTC
set -uo pipefail
dstc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/expect.sh"
gpt=$here/examples/gpt.dst
data=$here/tests/data/tiny.txt
small=(-D batch=2 -D seq=16 -D layers=1)
cd "$tmp"

# --- the output cannot be written
mkdir full && ln -s /dev/full full/gpt.c
expect full-disk 1 'error: cannot write full/gpt.c: No space left on device' -- "$dstc" build "$gpt" "${small[@]}" -o full
printf 'x' > afile
expect out-is-file 1 'error: cannot create directory afile/sub: Not a directory' -- "$dstc" build "$gpt" -o afile/sub
# a file-size limit hit by the linker: the reason, not an internal error
expect file-size-limit 1 'error: cannot build the program in big: File too large' -- \
  bash -c "ulimit -f 256; trap '' XFSZ; exec \"$dstc\" build \"$gpt\" ${small[*]} -o big"
# the compiler cannot be started
expect no-compiler 1 "cannot run 'no-such-cc'.*|error: cannot build .*the C compiler could not be run" -- \
  env DST_CC=no-such-cc "$dstc" build "$gpt" "${small[@]}" -o nocc

# --- run's cache: a damaged program is rebuilt, never run
export XDG_CACHE_HOME=$tmp/cache
runit() { "$dstc" run "$gpt" "${small[@]}" -- --data "$data" --steps 2 --quiet; }
expect cache-first 0 'done: loss' -- runit
prog=$(ls cache/dst/gpt-* | grep -v '\.sum$')
if [[ -x $prog && -s $prog.sum ]]; then ok; else bad "no cached program with its checksum: $(ls cache/dst)"; fi
truncate -s 4096 "$prog"
expect cache-truncated 0 'the cached program .* is damaged \(its bytes hash to .*\); building it again' -- runit
expect cache-rebuilt 0 'done: loss' -- runit
: > "$prog"
expect cache-empty 0 'is damaged.*building it again' -- runit
rm "$prog.sum"
expect cache-no-sum 0 'its checksum file .* is missing' -- runit
if runit 2>&1 | grep -q damaged; then bad "a verified program was rebuilt"; else ok; fi

# --- the plan says what it leaves out, and is never called exact then
expect plan-exact 0 'memory per rank \(static plan; the run allocates exactly this\)' -- "$dstc" plan "$gpt"
expect plan-tp-note 0 'note: tp = 2, pp = 2, micro_batches = 4 are checked but not planned yet' -- \
  "$dstc" plan "$gpt" -ftp=2 -fpp=2 -fmicro_batches=4
expect plan-tp-header 0 'memory per rank \(static plan that ignores tp = 2: not what a run of this layout needs\)' -- \
  "$dstc" plan "$gpt" -ftp=2
if "$dstc" plan "$gpt" -fcheckpoint=full -fzero=1 -foffload_optimizer=cpu 2>&1 | grep -q 'exactly this'; then
  bad "a plan that ignores checkpointing and offload calls itself exact"; else ok; fi
# --mem-limit: an error (exit 1) when the peak is over it
expect mem-limit 1 'error: the plan needs .* per rank \([0-9]+ bytes\), more than --mem-limit 1.00 MiB' -- \
  "$dstc" plan "$gpt" --mem-limit 1M
expect mem-limit-build 1 'more than --mem-limit' -- "$dstc" build "$gpt" "${small[@]}" -o lim --mem-limit 100K
expect mem-limit-ok 0 'peak' -- "$dstc" plan "$gpt" --mem-limit 1GiB
expect mem-limit-bad 2 "--mem-limit: 'lots' is not a size" -- "$dstc" plan "$gpt" --mem-limit lots
# GPT-3 175B on one rank fits no test machine: a warning, with the figures
expect machine-memory 0 'warning: the plan needs [0-9.]+ (GiB|TiB) per rank, more than this machine' -- \
  "$dstc" plan "$gpt" -D vocab=50257 -D seq=2048 -D dim=12288 -D heads=96 -D layers=96 -D batch=1

# --- overlap_comm = false is carried out, not ignored: no bucket reductions
# during the backward pass (zero 0), no reduce-scatter left in flight (zero 3)
"$dstc" build "$gpt" "${small[@]}" -fdp=2 -o ov1 > /dev/null && "$dstc" build "$gpt" "${small[@]}" -fdp=2 \
  -foverlap_comm=false -o ov0 > /dev/null && "$dstc" build "$gpt" "${small[@]}" -fdp=2 -fzero=3 \
  -foverlap_comm=false -o ov3 > /dev/null || bad "overlap builds"
if grep -q 'bucket_ready(r, ' ov1/gpt.c && ! grep -q 'bucket_ready(r, ' ov0/gpt.c &&
  grep -q '\.zero_inflight = 0,' ov3/gpt.c; then ok; else bad "overlap_comm = false was not carried out"; fi

# --- a model beyond the compiler's limits is an error at its source
cat > big.dst <<'DST'
import "nn.dst";
block B(dim: int) {
  layer l = Linear(dim, dim);
  forward(x) { return gelu(l(x)) + x * 2.0 + x; }
}
model Big {
  input tokens: i32[2, 4];
  input targets: i32[2, 4];
  layer emb = Embedding(256, 8);
  layer blocks = repeat(90000) B(8);
  layer head = Linear(8, 256);
  forward { minimize cross_entropy(head(blocks(emb(tokens))), targets); }
}
DST
expect too-many-ops 1 "big.dst:4:16: error: the model's forward pass has more than [0-9]+ operations" -- "$dstc" check big.dst

# --- no valid model reaches an internal error, on either backend, under
# any data-parallel layout (plan runs the whole back end but the C compiler)
bash "$here/tests/models/generate.sh" gen
internal=0 planned=0
for m in "$here"/examples/*.dst "$here"/tests/models/*.dst gen/*.dst; do
  for be in cpu cuda; do
    for layout in "" "-fdp=2 -fzero=1" "-fdp=2 -fzero=2 -fbucket_mb=0.001" "-fdp=2 -fzero=3 -fbucket_mb=0.001" \
      "-fdp=4 -fzero=3 -fgrad_accum=2 -fprecision=bf16 -fbucket_mb=0.001" "-fdp=2 -foverlap_comm=false"; do
      # shellcheck disable=SC2086
      "$dstc" plan --backend $be "$m" $layout > plan.out 2>&1
      rc=$?
      planned=$((planned + 1))
      if [[ $rc == 70 || $rc -gt 128 ]]; then
        internal=$((internal + 1))
        bad "dstc plan --backend $be $m $layout: status $rc"
        head -5 plan.out
      fi
    done
  done
done
if [[ $internal == 0 ]]; then ok; fi
echo "($planned plans, $internal internal errors)"

echo "dstc faults: $pass passed, $fail failed"
[[ $fail == 0 ]]
