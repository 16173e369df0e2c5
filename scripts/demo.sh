#!/usr/bin/env bash
# The main demo: install dependencies, build dst, check the examples, then
# train the GPT of examples/gpt.dst on a CPU and sample from it.
# Usage (fresh Debian, as root): bash scripts/demo.sh
# The training text is built in: dst's own documentation and .dst sources
# (no download). STEPS=N changes the training length (default: the file's).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
dstc=./build/compiler/dstc

echo
echo "== dstc check: the examples, with a summary of each model"
$dstc check -v examples/*.dst
echo
echo "== the same GPT file at GPT-2 1.5B scale, laid out over 64 ranks"
$dstc check -v examples/gpt.dst \
  -D vocab=50257 -D seq=1024 -D dim=1600 -D heads=25 -D layers=48 -D batch=512 \
  -fdp=8 -ftp=4 -fpp=2 -fzero=1 -fprecision=bf16 -fmicro_batches=8
echo
echo "== a layout that cannot work is rejected before anything runs"
$dstc check examples/gpt.dst -ftp=3 -fpp=4 || echo "(dstc exited with status $?)"

echo
echo "== the memory plan of the tiny GPT"
$dstc plan examples/gpt.dst | sed -n '/memory/,$p'

echo
echo "== training examples/gpt.dst on this machine's CPU"
mkdir -p build/demo
cat README.md docs/*.md stdlib/*.dst examples/*.dst tests/models/*.dst > build/demo/all.txt
# the last tenth is held out for validation
total=$(wc -c < build/demo/all.txt)
head -c $((total * 9 / 10)) build/demo/all.txt > build/demo/train.txt
tail -c +$((total * 9 / 10 + 1)) build/demo/all.txt > build/demo/val.txt
$dstc build examples/gpt.dst -o build/demo
./build/demo/gpt --data build/demo/train.txt --val-data build/demo/val.txt \
  ${STEPS:+--steps "$STEPS"} --log-every 25 --eval-every 100 --sample 400 \
  --save build/demo/gpt.safetensors

echo
echo "== training the classifier of examples/mlp.dst (next byte after a 16-byte window)"
$dstc run examples/mlp.dst -- --data build/demo/train.txt --val-data build/demo/val.txt \
  --eval-every 200
