#!/usr/bin/env bash
# backend.sh: the CUDA backend of dstc (`--backend cuda`).
#
#   tests/cuda/backend.sh DSTC build   the examples compile and link (no GPU
#                                      needed); the .cu is byte-stable; the
#                                      settings CUDA programs cannot run are
#                                      refused
#   tests/cuda/backend.sh DSTC run     a CUDA program trains: 50 steps match
#                                      the CPU backend's fp32 run (in fp32,
#                                      and in bf16 within bf16's tolerance),
#                                      checkpoints resume
#                                      (also on the CPU); with 2 GPUs, dp=2
#                                      under ZeRO 0-3 over NCCL; exits 77
#                                      (CTest: skipped) where no GPU is found
#                                      (nvidia-smi -L lists none)
set -uo pipefail
dstc=${1:?usage: backend.sh DSTC build|run}
mode=${2:?usage: backend.sh DSTC build|run}
here=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/expect.sh"
gpt=(build --backend cuda "$here/examples/gpt.dst" -D batch=4 -D seq=32 -D layers=2)
llama=(build --backend cuda "$here/examples/llama.dst" -D batch=4 -D seq=32)

# close A B N TOL: loss logs A and B have N lines each, within TOL relative
close() {
  awk -v n="$3" -v tol="$4" 'NR == FNR { a[FNR] = $1; next }
    { d = $1 - a[FNR]; d = d < 0 ? -d : d; r = d / a[FNR]; if (r > w) w = r; k++ }
    END { printf "%d steps: worst relative difference %.2e\n", k, w; exit !(k == n && w <= tol) }' "$1" "$2"
}

case $mode in
build)
  expect gpt 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -o "$tmp/g1"
  expect gpt-cu 0 '' -- test -s "$tmp/g1/gpt.cu" -a ! -e "$tmp/g1/gpt.c" -a ! -e "$tmp/g1/gpt.o"
  expect gpt-backend 0 'DST_BACKEND_CUDA' -- grep -F '.backend = DST_BACKEND_CUDA' "$tmp/g1/gpt.cu"
  expect gpt-again 0 'built' -- "$dstc" "${gpt[@]}" -o "$tmp/g2"
  expect gpt-same 0 '' -- cmp "$tmp/g1/gpt.cu" "$tmp/g2/gpt.cu"
  expect llama 0 'built .*/llama$' -- "$dstc" "${llama[@]}" -o "$tmp/l"
  expect dp-zero1 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -fdp=2 -fzero=1 -o "$tmp/d"
  # ZeRO-2/3: gradients (and parameters) in per-unit buffers, also inside
  # the generated kernels (KU slots filled at launch)
  expect zero2 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -fdp=2 -fzero=2 -o "$tmp/z2"
  expect zero3 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -fdp=2 -fzero=3 -o "$tmp/z3"
  expect zero3-units 0 'LAUNCH_UNITS\(node[0-9_]*, [0-9]*, r->punit\[' -- grep -E 'LAUNCH_(COLS_)?UNITS' "$tmp/z3/gpt.cu"
  expect zero3-hooks 0 'DST_ZERO_NEED' -- grep -F 'r->zero_hook(r, DST_ZERO_NEED' "$tmp/z3/gpt.cu"
  expect llama-zero3 0 'built .*/llama$' -- "$dstc" "${llama[@]}" -fdp=2 -fzero=3 -o "$tmp/l3"
  # bf16: casts and cuBLASLt's mixed GEMMs (bf16 operands, fp32 results)
  expect bf16 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -fprecision=bf16 -o "$tmp/b"
  expect bf16-gemm 0 'ab_type = KC_DT_BF16' -- grep -F 'mm_.ab_type = KC_DT_BF16' "$tmp/b/gpt.cu"
  expect bf16-cast 0 'kc_cast_f32_to_bf16' -- grep -F 'kc_cast_f32_to_bf16(H(' "$tmp/b/gpt.cu"
  expect bf16-llama-zero3 0 'built .*/llama$' -- "$dstc" "${llama[@]}" -fprecision=bf16 -fdp=2 -fzero=3 -o "$tmp/lb"
  expect fp16 1 'precision = fp16 is checked' -- "$dstc" "${gpt[@]}" -fprecision=fp16 -o "$tmp/h"
  # One fused loop reading nine parameters, each its own ZeRO-3 unit: the
  # kernel takes nine unit buffers (any number: they are its arguments)
  cat > "$tmp/nine.dst" <<'DST'
import "nn.dst";
config { batch = 2; seq = 4; dim = 512; }
model Nine {
  input tokens: i32[batch, seq];
  input targets: i32[batch, seq];
  layer emb = Embedding(256, dim, std = 0.5);
  param a: f32[1, seq, dim] = normal(0.1);
  param b: f32[1, seq, dim] = normal(0.1);
  param c: f32[1, seq, dim] = normal(0.1);
  param d: f32[1, seq, dim] = normal(0.1);
  param e: f32[1, seq, dim] = normal(0.1);
  param f: f32[1, seq, dim] = normal(0.1);
  param g: f32[1, seq, dim] = normal(0.1);
  param h: f32[1, seq, dim] = normal(0.1);
  param i: f32[1, seq, dim] = normal(0.1);
  layer head = Linear(dim, 256);
  forward {
    y = ((emb(tokens) + a) + (b + c)) + ((d + e) + (f + g)) + (h + i);
    minimize cross_entropy(head(y), targets);
  }
}
DST
  expect nine-units 0 'built .*/nine$' -- "$dstc" build --backend cuda "$tmp/nine.dst" -fdp=2 -fzero=3 -fbucket_mb=0.001 \
    -o "$tmp/n9"
  expect nine-units-args 0 'char \*u8\)' -- grep -E '__global__ void node[0-9_]*\(Slabs rs(, char \*u[0-9]+)+\)' \
    "$tmp/n9/nine.cu"
  echo "backend.sh build: $pass passed, $fail failed"
  ;;
run)
  if ! nvidia-smi -L 2> /dev/null | grep -q '^GPU'; then
    echo "SKIPPED: no GPU (nvidia-smi -L lists none)"
    exit 77
  fi
  expect build 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -o "$tmp/g"
  expect train 0 'done: loss' -- "$tmp/g/gpt" --data "$here/tests/data/tiny.txt" --steps 5
  # 50 steps on the GPU against the CPU backend's fp32 run: the same
  # trajectory (both fp32; sums in another order)
  expect build-cpu 0 'built .*/gpt$' -- "$dstc" build "$here/examples/gpt.dst" -D batch=4 -D seq=32 -D layers=2 \
    -o "$tmp/c"
  expect train-cpu 0 'done: loss' -- "$tmp/c/gpt" --data "$here/tests/data/tiny.txt" --steps 50 --loss-log "$tmp/cpu.log"
  expect train-gpu 0 'memory: planned ([0-9]*) bytes.*allocated \1 bytes' -- \
    "$tmp/g/gpt" --data "$here/tests/data/tiny.txt" --steps 50 --loss-log "$tmp/gpu.log"
  expect losses 0 'worst relative difference' -- close "$tmp/cpu.log" "$tmp/gpu.log" 50 2e-3
  # bf16 on the GPU against the CPU backend's fp32 run, within bf16's
  # tolerance (the CPU's own bf16 run stays within 6e-4 of it)
  expect build-bf16 0 'built .*/gpt$' -- "$dstc" "${gpt[@]}" -fprecision=bf16 -o "$tmp/gb"
  expect train-bf16 0 'memory: planned ([0-9]*) bytes.*allocated \1 bytes' -- \
    "$tmp/gb/gpt" --data "$here/tests/data/tiny.txt" --steps 50 --loss-log "$tmp/gpu-bf16.log"
  expect losses-bf16 0 'worst relative difference' -- close "$tmp/cpu.log" "$tmp/gpu-bf16.log" 50 5e-3
  # checkpoints: a GPU run resumes bit for bit, and its checkpoint loads on the CPU
  expect ckpt 0 'done: loss' -- "$tmp/g/gpt" --data "$here/tests/data/tiny.txt" --steps 10 --save-every 5 \
    --checkpoint-dir "$tmp/ck" --loss-log "$tmp/full.log"
  expect resume 0 'resumed from' -- "$tmp/g/gpt" --data "$here/tests/data/tiny.txt" --steps 10 \
    --resume "$tmp/ck/step-00000005" --loss-log "$tmp/res.log"
  expect resume-same 0 '' -- bash -c "tail -n 5 '$tmp/full.log' | cmp - '$tmp/res.log'"
  expect resume-cpu 0 'resumed from' -- "$tmp/c/gpt" --data "$here/tests/data/tiny.txt" --steps 10 \
    --resume "$tmp/ck/step-00000005"
  # ZeRO over NCCL needs a GPU per rank
  ngpu=$(nvidia-smi -L | grep -c '^GPU')
  if (( ngpu >= 2 )); then
    for z in 0 1 2 3; do
      expect dp2-zero$z-build 0 'built' -- "$dstc" "${gpt[@]}" -fdp=2 -fzero=$z -o "$tmp/d$z"
      expect dp2-zero$z 0 'done: loss' -- mpirun --oversubscribe -np 2 "$tmp/d$z/gpt" \
        --data "$here/tests/data/tiny.txt" --steps 20 --loss-log "$tmp/d$z.log"
    done
    for z in 1 2 3; do
      expect dp2-zero$z-same 0 'worst relative difference' -- close "$tmp/d0.log" "$tmp/d$z.log" 20 1e-5
    done
  else
    echo "note: $ngpu GPU: the data-parallel NCCL runs need 2"
  fi
  echo "backend.sh run: $pass passed, $fail failed"
  ;;
*)
  echo "usage: backend.sh DSTC build|run" >&2
  exit 2
  ;;
esac
[[ $fail == 0 ]]
