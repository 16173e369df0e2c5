#!/usr/bin/env bash
# Every operation of compiler/ops.def that a .dst file can reach appears in
# the generated every-op model, so the gradient-check suite exercises each
# one's forward and backward (passes add cast, aux, grad and backward).
#   tests/op_coverage.sh DSTC OPS_DEF MODEL
set -euo pipefail
dstc=$1 ops_def=$2 model=$3
have=$("$dstc" check --dump-ir=lower "$model" | grep -o ' = [a-z_]*' | sed 's/ = //' | sort -u)
missing=0
for op in $(sed -n 's/^OP([A-Z_0-9]*, "\([a-z_0-9]*\)".*/\1/p' "$ops_def"); do
  case $op in cast | aux | grad | backward) continue ;; esac
  if ! grep -qx "$op" <<< "$have"; then
    echo "FAIL: operation '$op' is not in $model (add it to tests/models/generate.sh)"
    missing=$((missing + 1))
  fi
done
[[ $missing == 0 ]] && echo "op coverage: every operation is in $(basename "$model")"
[[ $missing == 0 ]]
