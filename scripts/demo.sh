#!/usr/bin/env bash
# The main demo: install dependencies, build dst, and run the examples.
# Usage (fresh Debian, as root): bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
echo
echo "== dstc check: the examples, with a summary of each model"
./build/compiler/dstc check -v examples/*.dst
echo
echo "== the same GPT file at GPT-2 1.5B scale, laid out over 64 ranks"
./build/compiler/dstc check -v examples/gpt.dst \
  -D vocab=50257 -D seq=1024 -D dim=1600 -D heads=25 -D layers=48 -D batch=512 \
  -fdp=8 -ftp=4 -fpp=2 -fzero=1 -fprecision=bf16 -fmicro_batches=8
echo
echo "== a layout that cannot work is rejected before anything runs"
./build/compiler/dstc check examples/gpt.dst -ftp=3 -fpp=4 || echo "(dstc exited with status $?)"
