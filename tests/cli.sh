#!/usr/bin/env bash
# The dstc command line: exit codes, messages and outputs users rely on.
#   tests/cli.sh DSTC
set -uo pipefail
dstc=$1
here=$(cd "$(dirname "$0")/.." && pwd)
gpt=$here/examples/gpt.dst
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$here/tests/expect.sh"
expect version 0 '^dstc [0-9]' -- "$dstc" --version
expect help 0 'usage: dstc' -- "$dstc" --help
expect no-command 2 'no command' -- "$dstc"
expect unknown-command 2 "did you mean 'check'" -- "$dstc" chek "$gpt"
expect unknown-option 2 "unknown option '--frobnicate'" -- "$dstc" check --frobnicate "$gpt"
expect unknown-flag 2 "did you mean 'zero'" -- "$dstc" check -fzeros=1 "$gpt"
expect flag-twice 2 'given twice' -- "$dstc" check -fdp=2 -fdp=4 "$gpt"
expect bad-define 2 'expected NAME=VALUE' -- "$dstc" check -D layers "$gpt"
expect missing-file 1 'cannot read' -- "$dstc" check "$tmp/nope.dst"
expect build-needs-o 2 'build needs -o' -- "$dstc" build "$gpt"
expect dump-ir-pass 2 "unknown pass 'parse'" -- "$dstc" check --dump-ir=parse "$gpt"
expect plan 0 'activations .* bytes' -- "$dstc" plan "$gpt"
expect plan-peak 0 'peak .* bytes' -- "$dstc" plan "$gpt" -D layers=4
# A setting the generated programs cannot carry out is an error, not ignored.
expect build-unsupported 1 'tp = 2 is checked, but this version neither plans nor runs it yet' -- "$dstc" build "$gpt" -o "$tmp/b" -ftp=2
expect build-unsupported-enum 1 'precision = fp16 is checked' -- "$dstc" build "$gpt" -o "$tmp/b" -fprecision=fp16
expect build 0 'built .*/gpt$' -- "$dstc" build "$gpt" -o "$tmp/b" -D batch=2 -D seq=16
expect build-c 0 '' -- test -s "$tmp/b/gpt.c"
expect build-backend-cpu 0 'built .*/gpt$' -- "$dstc" build --backend cpu "$gpt" -o "$tmp/bc" -D batch=2 -D seq=16
expect backend-unknown 2 "--backend must be cpu or cuda, not 'gpu'" -- "$dstc" build --backend gpu "$gpt" -o "$tmp/x"
expect backend-unknown-eq 2 "--backend must be cpu or cuda, not 'tpu'" -- "$dstc" run --backend=tpu "$gpt"
expect backend-missing 2 '--backend needs cpu or cuda' -- "$dstc" build "$gpt" -o "$tmp/x" --backend
expect plan-cuda 0 'peak .* bytes' -- "$dstc" plan --backend cuda "$gpt"
# Without a CUDA compiler at configure time, --backend cuda is refused (tests/cuda/backend.sh covers it with one).
if [[ ${DST_TEST_HAVE_CUDA:-1} == 0 ]]; then
  expect backend-no-cuda 2 'built without CUDA' -- "$dstc" build --backend cuda "$gpt" -o "$tmp/x"
fi
expect program-help 0 'usage: .*--data FILE' -- "$tmp/b/gpt" --help
expect program-no-data 2 'no training data' -- "$tmp/b/gpt"
expect program-bad-option 2 "unknown option '--stepz'" -- "$tmp/b/gpt" --stepz 3
expect program-bad-count 2 'needs an integer' -- "$tmp/b/gpt" --data "$gpt" --steps -1
expect program-missing-data 1 'error: .*nope.txt' -- "$tmp/b/gpt" --data "$tmp/nope.txt"
printf 'x' > "$tmp/short.txt"
expect program-short-data 1 'error: .*short.txt' -- "$tmp/b/gpt" --data "$tmp/short.txt"
expect program-bad-init 1 'error: --init' -- "$tmp/b/gpt" --data "$gpt" --init "$gpt"
expect run 0 'done: loss' -- "$dstc" run "$gpt" -D batch=2 -D seq=16 -- --data "$gpt" --steps 3
expect run-save 0 'saved' -- "$dstc" run "$gpt" -D batch=2 -D seq=16 -- --data "$gpt" --steps 2 --save "$tmp/w.safetensors"
expect run-init 0 'done: loss' -- "$dstc" run "$gpt" -D batch=2 -D seq=16 -- --data "$gpt" --steps 2 --init "$tmp/w.safetensors"
expect init-wrong-model 1 "error: --init .*(missing tensor|shape)" -- "$dstc" run "$gpt" -D batch=2 -D seq=16 -D dim=64 -- --data "$gpt" --steps 1 --init "$tmp/w.safetensors"
# --temperature: near 0 the sample is the most likely text whatever the seed;
# at 1 the seed changes it
smp() { "$tmp/b/gpt" --data "$gpt" --init "$tmp/w.safetensors" --steps 0 --sample 40 --quiet "$@" 2>&1 | sed -n '/^--- sample/,$p'; }
if [[ -n $(smp --temperature 0.01 --seed 1) && $(smp --temperature 0.01 --seed 1) == "$(smp --temperature 0.01 --seed 2)" &&
  $(smp --seed 1) != "$(smp --seed 2)" ]]; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL temperature: the samples do not follow the temperature"; fi
expect temperature-shown 0 'sample \(40 tokens at temperature 0.5,' -- "$tmp/b/gpt" --data "$gpt" --init "$tmp/w.safetensors" --steps 0 --sample 40 --temperature 0.5
expect temperature-bad 2 "--temperature needs a number from 0.01 to 100, not '0'" -- "$tmp/b/gpt" --data "$gpt" --temperature 0
echo "cli: $pass passed, $fail failed"
[[ $fail == 0 ]]
