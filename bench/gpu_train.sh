#!/usr/bin/env bash
# GPU training throughput: GPT-2 124M (examples/gpt.dst with the 124M -D
# overrides, seq 1024) built by dst's CUDA backend against PyTorch (eager
# and torch.compile, bf16 autocast, flash attention) on the same GPU.
#   bench/gpu_train.sh DSTC [STEPS]        (STEPS of dst's run, default 30)
# Prints tokens/s and MFU of each, the ratio dst / best PyTorch, whether the
# targets (>= 1.1x PyTorch's best, >= 50% MFU) are met, and per-kernel
# figures: dst's attention against PyTorch's flash attention, and dst's
# memory-bound kernels as a share of the GPU's measured copy bandwidth.
# Exits 77 ("SKIPPED: no GPU") where nvidia-smi lists no GPU; 0 when the
# benchmark ran, whether or not the targets are met; 1 on a failure.
#
# MFU counts 6N + 12 L T C FLOPs per token (llm.c / PaLM; see
# bench/torch_gpt_gpu.py) for both, against the dense bf16 peak of the GPU
# (989 TFLOP/s for H100 and H200 SXM).
#
# Environment:
#   PYTHON     a python with a CUDA build of PyTorch >= 2.0 (default python3)
#   OUT        keep everything (logs, programs, data) under $OUT/gpu_train;
#              otherwise a temporary directory, removed after a good run
#   PRECISION  dst's -fprecision (default bf16; fp32 is used, with a note,
#              where dstc refuses it)
#   DST_BATCH  dst's batch (default: the batch of PyTorch's best mode)
#   MAX_BATCH  where PyTorch's batch search starts (default 64)
#   PEAK       peak FLOP/s for MFU, e.g. 989e12 (default: from the GPU name)
#   ACT_BYTES  bytes per activation element in dst's kernels, for the
#              traffic of memory-bound kernels (default 4: under bf16 only
#              the matmuls' operands are 16-bit)
set -euo pipefail
usage="usage: bench/gpu_train.sh path/to/dstc [steps]"
[[ $# -ge 1 && $# -le 2 ]] || { echo "$usage" >&2; exit 2; }
dstc=$(realpath "$1")
steps=${2:-30}
[[ $steps =~ ^[0-9]+$ && $steps -ge 3 ]] || { echo "bench/gpu_train.sh: STEPS must be an integer >= 3" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
  echo "SKIPPED: no GPU"
  exit 77
fi
[[ -x $dstc ]] || { echo "bench/gpu_train.sh: $dstc is not an executable dstc" >&2; exit 2; }

if [[ -n ${OUT:-} ]]; then
  work=$OUT/gpu_train
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rc=$?; if [[ $rc -eq 0 ]]; then rm -rf "$work"; else echo "(logs kept in $work)" >&2; fi' EXIT
fi
# What PyTorch and CUDA cache goes here too, not into $HOME or /tmp.
export TORCHINDUCTOR_CACHE_DIR=$work/cache/inductor TRITON_CACHE_DIR=$work/cache/triton
export CUDA_CACHE_PATH=$work/cache/nv PYTHONDONTWRITEBYTECODE=1
py=${PYTHON:-python3}
torch_py=$here/bench/torch_gpt_gpu.py

fail() { echo "bench/gpu_train.sh: $*" >&2; exit 1; }
# mode LINE: eager or compile, from "RESULT torch-MODE ..."
mode() { local m=${1#RESULT torch-}; echo "${m%% *}"; }
# field NAME LINE: the value of NAME=VALUE in a RESULT line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }
median() { sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a + 0 > b + 0)}'; }

"$py" -c 'import sys, torch, torch.nn.functional as F
sys.exit(0 if torch.cuda.is_available() and hasattr(F, "scaled_dot_product_attention") else 1)' 2> /dev/null ||
  fail "$py has no CUDA build of PyTorch >= 2.0 (set PYTHON to one that has)"
gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)
echo "GPU: $gpu   (work directory: $work)"

# The GPT-2 124M lines of examples/gpt.dst's header.
vocab=50257 seq=1024 dim=768 heads=12 layers=12
cfg=(-D "vocab=$vocab" -D "seq=$seq" -D "dim=$dim" -D "heads=$heads" -D "layers=$layers")

# ---- PyTorch: eager and compile, each at the largest batch that fits
peak_arg=()
[[ -n ${PEAK:-} ]] && peak_arg=(--peak "$PEAK")
echo "PyTorch: eager and torch.compile, batch search from ${MAX_BATCH:-64} (compilation takes minutes)..."
# (progress lines shown; the whole of its stderr goes to torch.log)
"$py" "$torch_py" --mode both --max-batch "${MAX_BATCH:-64}" "${peak_arg[@]}" > "$work/torch.out" \
  2> >(tee "$work/torch.log" | grep --line-buffered -E 'trying batch|first step|does not fit' >&2) ||
  { tail -n 30 "$work/torch.log" >&2; fail "bench/torch_gpt_gpu.py failed (log: $work/torch.log)"; }
eager=$(grep '^RESULT torch-eager ' "$work/torch.out" | tail -n 1 || true)
compiled=$(grep '^RESULT torch-compile ' "$work/torch.out" | tail -n 1 || true)
best_label="" best_tps=0 best_batch=0 ref=""
for line in "$eager" "$compiled"; do
  [[ $(field status "$line") == ok ]] || continue
  t=$(field tokens_per_s "$line")
  if gt "$t" "$best_tps"; then
    best_tps=$t best_batch=$(field batch "$line") ref=$line
    best_label="PyTorch $(mode "$line")"
  fi
done
[[ -n $ref ]] || { cat "$work/torch.out" >&2; tail -n 30 "$work/torch.log" >&2; fail "no PyTorch mode ran"; }
fpt=$(field flops_per_token "$ref")
peak=$(field peak "$ref")
torch_params=$(field params "$ref")

# ---- dst: build for the CUDA backend
batch=${DST_BATCH:-$best_batch}
precision=${PRECISION:-bf16}
precision_note=""
build() { # BATCH PRECISION: builds into $work/dst-bBATCH-PRECISION; log beside it
  "$dstc" build "$here/examples/gpt.dst" -o "$work/dst-b$1-$2" "${cfg[@]}" -D batch="$1" \
    --backend cuda -fprecision="$2" > "$work/dst-build-b$1-$2.log" 2>&1
}
build_checked() { # BATCH: builds at $precision; to fp32 where dstc refuses it (exit 1, a message on precision)
  local rc=0
  build "$1" "$precision" || rc=$?
  if [[ $rc -eq 1 && $precision != fp32 ]] && grep -q 'precision' "$work/dst-build-b$1-$precision.log"; then
    precision_note="dstc refused -fprecision=$precision ($(grep -m1 'precision' "$work/dst-build-b$1-$precision.log" |
      sed 's/^dstc: error: //')); dst ran in fp32, PyTorch in bf16"
    echo "note: $precision_note" >&2
    precision=fp32 rc=0
    build "$1" fp32 || rc=$?
  fi
  if [[ $rc -ne 0 ]]; then
    cat "$work/dst-build-b$1-$precision.log" >&2
    fail "dstc build --backend cuda failed (exit $rc)"
  fi
}

# ---- data: an llm.c token shard of random tokens below the vocabulary
# (header: 256 int32, magic 20240520, version 1, token count; then uint16
# tokens), enough for every step without wrapping around.
ntok=$((batch * seq * (steps + 1) + 1))
"$py" - "$work/tokens.bin" "$ntok" "$vocab" <<'EOF' || fail "could not write the token shard"
import array, random, sys
path, n, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
assert sys.byteorder == "little" and array.array("i").itemsize == 4 and array.array("H").itemsize == 2
header = array.array("i", [0] * 256)
header[0], header[1], header[2] = 20240520, 1, n
tokens = array.array("H", random.Random(0).choices(range(vocab), k=n))
with open(path, "wb") as f:
    header.tofile(f)
    tokens.tofile(f)
EOF

# ---- dst: train STEPS steps; halve the batch while it runs out of memory
while :; do
  echo "dst: building (batch $batch, $precision) and training $steps steps..."
  build_checked "$batch"
  prog=$work/dst-b$batch-$precision/gpt
  [[ -x $prog ]] || fail "dstc build did not produce $prog"
  rc=0
  "$prog" --data "$work/tokens.bin" --steps "$steps" --log-every 1 --save-every 0 \
    --checkpoint-dir "$work/checkpoints" > "$work/dst-train.log" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] && break
  if [[ $batch -gt 1 ]] && grep -qi 'out of memory' "$work/dst-train.log"; then
    echo "dst: batch $batch does not fit; trying $((batch / 2))" >&2
    batch=$((batch / 2))
    continue
  fi
  tail -n 30 "$work/dst-train.log" >&2
  fail "the dst program failed (exit $rc)"
done
done_line=$(grep '^done:' "$work/dst-train.log" | tail -n 1 || true)
[[ -n $done_line ]] || fail "no 'done:' line in $work/dst-train.log"
# done: loss A -> B | X ms/step | Y tok/s | Z GFLOP/s   (mean of the steps after the first)
dst_mean=$(awk -F'|' '{v=$3; gsub(/[^0-9.]/, "", v); print v}' <<< "$done_line")
# The median of the per-step figures after as many warm-up steps as
# PyTorch's (5), the statistic PyTorch's figures are: the headline.
skip=$((steps >= 15 ? 5 : steps / 3))
dst_tps=$(awk -F'|' -v skip="$skip" '/^step .*tok\/s/{n++; if (n > skip) {v=$6; gsub(/[^0-9.]/, "", v); print v}}' \
  "$work/dst-train.log" | median)
[[ -n $dst_tps ]] || dst_tps=$dst_mean
dst_params=$(sed -n 's/^model [^:]*: \([0-9]*\) parameters.*/\1/p' "$work/dst-train.log" | head -n 1)
if [[ -n $dst_params && $dst_params != "$torch_params" ]]; then
  echo "warning: dst's model has $dst_params parameters, PyTorch's $torch_params" >&2
fi

# ---- per kernel: dst's profile, PyTorch's flash attention, the copy bandwidth
# dst's profile averages over all steps, the first (allocation, library
# start-up) included: two runs, of P1 and P2 steps, and the difference of
# their totals gives the mean of steps P1+1..P2.
p1=5 p2=25
for n in $p1 $p2; do
  "$prog" --data "$work/tokens.bin" --steps "$n" --profile --quiet --save-every 0 \
    --checkpoint-dir "$work/checkpoints" > "$work/dst-profile-$n.log" 2>&1 ||
    echo "note: the dst --profile run of $n steps failed (see $work/dst-profile-$n.log)" >&2
done
"$py" "$torch_py" --kernels --batch "$batch" > "$work/kernels.out" 2>> "$work/torch.log" ||
  echo "note: the kernel reference run failed (see $work/torch.log)" >&2
katt=$(grep '^RESULT kernel-attention ' "$work/kernels.out" | tail -n 1 || true)
kcopy=$(grep '^RESULT kernel-copy ' "$work/kernels.out" | tail -n 1 || true)
# steady MS1 MS2: per-step mean over steps P1+1..P2 from the two runs' per-step means
steady() { awk -v a="$1" -v b="$2" -v p="$p1" -v q="$p2" 'BEGIN{printf "%.4f", (q * b - p * a) / (q - p)}'; }
row_ms() { # LOG NAME: ms per step of profile row NAME
  awk -v n="$2" '$1 == n && $3 == "ms" {print $2; exit}' "$1" 2> /dev/null
}
prof() { # NAME: steady ms per step of profile row NAME, empty if absent
  local a b
  a=$(row_ms "$work/dst-profile-$p1.log" "$1") b=$(row_ms "$work/dst-profile-$p2.log" "$1")
  [[ -n $a && -n $b ]] && steady "$a" "$b"
  return 0
}
prof_rest() { # steady ms per step outside the profiled operations (optimizer, data)
  local f sa sb oa ob
  for f in $p1 $p2; do
    [[ -f $work/dst-profile-$f.log ]] || return 0
  done
  sa=$(sed -n 's/.*the rest of a \([0-9.]*\) ms step.*/\1/p' "$work/dst-profile-$p1.log")
  sb=$(sed -n 's/.*the rest of a \([0-9.]*\) ms step.*/\1/p' "$work/dst-profile-$p2.log")
  oa=$(row_ms "$work/dst-profile-$p1.log" operations) ob=$(row_ms "$work/dst-profile-$p2.log" operations)
  [[ -n $sa && -n $sb && -n $oa && -n $ob ]] || return 0
  # the step time is a mean over the steps after the first; the operations' over all
  awk -v sa="$sa" -v sb="$sb" -v oa="$oa" -v ob="$ob" -v p="$p1" -v q="$p2" \
    'BEGIN{r = ((q - 1) * sb - (p - 1) * sa - (q * ob - p * oa)) / (q - p); if (r > 0) printf "%.4f", r}'
}

# ---- report
mfu() { [[ $peak == unknown ]] && { echo n/a; return; }; awk -v t="$1" -v f="$fpt" -v p="$peak" 'BEGIN{printf "%.1f%%", 100 * t * f / p}'; }
{
  echo
  echo "GPT-2 124M (vocab $vocab, seq $seq, $torch_params parameters) on $gpu"
  echo "MFU: tokens/s x $(awk -v f="$fpt" 'BEGIN{printf "%.1f", f / 1e6}') MFLOP/token (6N + 12 L T C) / peak $peak FLOP/s (dense bf16)"
  printf '%-28s %12s %8s %6s\n' "" "tokens/s" "MFU" "batch"
  for line in "$eager" "$compiled"; do
    [[ -n $line ]] || continue
    label="PyTorch $(mode "$line")"
    if [[ $(field status "$line") == ok ]]; then
      t=$(field tokens_per_s "$line")
      printf '%-28s %12.0f %8s %6s\n' "$label (bf16)" "$t" "$(mfu "$t")" "$(field batch "$line")"
    else
      printf '%-28s %12s\n' "$label" "failed (see torch.log)"
    fi
  done
  printf '%-28s %12.0f %8s %6s\n' "dst cuda ($precision)" "$dst_tps" "$(mfu "$dst_tps")" "$batch"
  echo "(median over timed steps; dst's own mean, from its 'done:' line: $dst_mean tok/s)"
  [[ -z $precision_note ]] || echo "note: $precision_note"
  ratio=$(awk -v d="$dst_tps" -v t="$best_tps" 'BEGIN{printf "%.2f", d / t}')
  ratio_ok=$(awk -v r="$ratio" 'BEGIN{print (r >= 1.1) ? "met" : "not met"}')
  echo "dst / best PyTorch ($best_label): ${ratio}x   target >= 1.10x: $ratio_ok"
  if [[ $peak == unknown ]]; then
    echo "dst MFU: n/a (unknown GPU; set PEAK)   target >= 50%: unknown"
  else
    m=$(awk -v t="$dst_tps" -v f="$fpt" -v p="$peak" 'BEGIN{printf "%.1f", 100 * t * f / p}')
    echo "dst MFU: ${m}%   target >= 50%: $(awk -v m="$m" 'BEGIN{print (m >= 50) ? "met" : "not met"}')"
  fi

  echo
  echo "per kernel (dst: --profile, ms per step over all $layers layers, mean of steps $((p1 + 1))-$p2; batch $batch)"
  if [[ -n $katt && $(field status "$katt") != skipped ]]; then
    for dir in fwd bwd; do
      row=attention
      [[ $dir == bwd ]] && row=attention.backward
      d=$(prof "$row")
      ref_ms=$(field ${dir}_ms "$katt")
      if [[ -z $ref_ms ]]; then
        printf '  %-22s no SDPA figure\n' "$row"
      elif [[ -n $d ]]; then
        awk -v r="$row" -v d="$d" -v s="$ref_ms" -v l="$layers" 'BEGIN{
          if (d <= 0) { printf "  %-22s dst: too short to measure\n", r; exit }
          printf "  %-22s dst %8.3f ms/layer | SDPA flash %8.3f ms | dst/flash time %.2fx\n", r, d / l, s, d / l / s}'
      else
        printf '  %-22s dst: no such profile row | SDPA flash %8.3f ms\n' "$row" "$ref_ms"
      fi
    done
  else
    echo "  attention: no PyTorch flash reference"
  fi
  if [[ -n $kcopy ]]; then
    bw=$(field gb_per_s "$kcopy")
    echo "  device copy: $bw GB/s (read + write of $(($(field bytes "$kcopy") >> 20)) MiB): the bandwidth the rows below are shares of"
    s=${ACT_BYTES:-4} # bf16 rounds matmul operands only: the kernels below read and write fp32
    N=$((batch * seq))
    # Least traffic of each kernel kind per step (all instances), with
    # activations of s bytes and fp32 statistics: what it must read and write.
    while read -r row bytes what; do
      d=$(prof "$row")
      [[ -n $d ]] || { printf '  %-22s not a kernel of its own in this build (fused or absent)\n' "$row"; continue; }
      awk -v r="$row" -v d="$d" -v b="$bytes" -v bw="$bw" -v w="$what" 'BEGIN{
        if (d <= 0) { printf "  %-22s dst: too short to measure\n", r; exit }
        g = b / (d / 1e3) / 1e9; printf "  %-22s dst %8.3f ms  >= %7.1f GB/s = %5.1f%% of copy  (%s)\n", r, d, g, 100 * g / bw, w}'
    done <<EOF
layernorm $(((2 * layers + 1) * (2 * N * dim * s + 8 * N))) $((2 * layers + 1)) calls: x read, y and mean/rstd written
layernorm.backward $(((2 * layers + 1) * (3 * N * dim * s + 8 * N))) $((2 * layers + 1)) calls: x, dy, mean/rstd read, dx written
gelu $((layers * 2 * N * 4 * dim * s)) $layers calls: x read, y written
gelu.backward $((layers * 3 * N * 4 * dim * s)) $layers calls: x, dy read, dx written
cross_entropy $((N * vocab * s)) logits read once
cross_entropy.backward $((2 * N * vocab * s)) logits read, dlogits written
cast $((6 * (layers * 16 * N * dim + 2 * (12 * layers * dim * dim + vocab * dim) + N * vocab))) bf16 matmul operands (weights twice, activations, gradients): fp32 read, bf16 written
EOF
    rest=$(prof_rest)
    if [[ -n $rest && -n $torch_params ]]; then
      # grad norm (read g) + AdamW (read p g m v, write p m v), fp32
      awk -v d="$rest" -v b="$((32 * torch_params))" -v bw="$bw" 'BEGIN{
        g = b / (d / 1e3) / 1e9; printf "  %-22s dst %8.3f ms  >= %7.1f GB/s = %5.1f%% of copy  (%s)\n",
        "rest of step", d, g, 100 * g / bw, "grad norm + AdamW fp32, 32 B/param; also data, logging"}'
    fi
  else
    echo "  device copy: no measurement"
  fi
  echo "(dst's profile times per operation kind: meaningful only where the CUDA backend's --profile times on the device)"
} | tee "$work/summary.txt"
{
  echo "$eager"
  echo "$compiled"
  echo "RESULT dst-cuda status=ok tokens_per_s=$dst_tps mean_tokens_per_s=$dst_mean batch=$batch precision=$precision params=${dst_params:-unknown}"
  echo "$katt"
  echo "$kcopy"
} | grep -v '^$' > "$work/results.txt"
