#!/usr/bin/env bash
# Faults a generated program meets in real jobs, and what the user sees:
#  1. SIGTERM/SIGINT: the step finishes, a checkpoint is written (when
#     checkpointing is on), one line says so, the status is 143/130; a
#     resumed run continues bit for bit; with 2 ranks a signal to one rank
#     stops both after the same step, without a hang.
#  2. Logs: step lines and the loss log reach files even under SIGKILL; no
#     "\r"/escape fragments in a redirected log (mpirun included); a
#     warning never glues onto a progress line on a terminal.
#  3. Paths, token ids and numbers are refused before the first step.
#  4. A data file truncated while training: an error, not SIGBUS.
#  5. Checkpoints: an edited manifest is caught; a broken latest
#     checkpoint names the newest earlier one that verifies; a new run
#     refuses a directory holding another run's checkpoints; failed saves
#     (one rank's or all) warn and training goes on; one line per save.
#  6. --help documents statuses, signals and DST_COMM_TIMEOUT.
#   tests/faults.sh DSTC
set -uo pipefail
set -m # job control: background runs receive SIGINT as foreground ones do
dstc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done; rm -rf "$tmp"' EXIT
source "$here/tests/mpi_env.sh"
source "$here/tests/expect.sh"
data=$here/tests/data/tiny.txt
args=(-D batch=4 -D seq=32 -D layers=1 -D dim=64)
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -o "$tmp/g1" > /dev/null || { echo "FAIL: build"; exit 1; }
"$dstc" build "$here/examples/gpt.dst" "${args[@]}" -fdp=2 -fzero=1 -o "$tmp/g2" > /dev/null ||
  { echo "FAIL: build dp=2"; exit 1; }
g1=$tmp/g1/gpt g2=$tmp/g2/gpt
cd "$tmp"
run=(--data "$data" --threads 1)
# a hang in a collective fails in seconds, not at the default 300 s
export DST_COMM_TIMEOUT=10

# wait_for CMD...: polls CMD for up to 30 s
wait_for() { for _ in $(seq 600); do "$@" && return 0; sleep 0.05; done; return 1; }
lines_at_least() { [[ -f $1 ]] && (($(wc -l < "$1") >= $2)); }
step_dir() { printf '%s/step-%08d' "$1" "$2"; }
# flip FILE OFFSET: damages one bit of FILE
flip() { perl -e 'open(my $f, "+<", $ARGV[0]) or die; seek($f, $ARGV[1], 0); read($f, my $b, 1);
  seek($f, $ARGV[1], 0); print $f chr(ord($b) ^ 1)' "$1" "$2"; }
# the pid of rank R among the processes running PROGRAM (not mpirun's)
rank_pid() {
  local p
  for p in $(pgrep -f "$2"); do
    tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && echo "$p"
  done
}
# refuse NAME PATTERN -- CMD...: status 1, PATTERN (extended regex) matches
# a whole line, and no step ran
refuse() {
  local name=$1 pat=$2 out rc
  shift 3
  out=$(timeout 60 "$@" 2>&1)
  rc=$?
  if [[ $rc == 1 ]] && grep -qxE -- "$pat" <<< "$out" && ! grep -q '^step ' <<< "$out"; then ok; else
    bad "$name: status $rc, output:"; echo "$out"; fi
}

# ---- 1. Signals

# SIGTERM: the step finishes, its checkpoint is written, one line says so.
$g1 "${run[@]}" --steps 100000 --save-every 1000 --checkpoint-dir ck --log-every 1 --loss-log a.log > a.out 2>&1 &
pid=$!
pids+=($pid)
wait_for lines_at_least a.log 5
kill -TERM $pid
wait $pid
rc=$?
n=$(wc -l < a.log)
s=$(step_dir ck "$n")
if [[ $rc == 143 && $(grep -c '^stopped by' a.out) == 1 ]] &&
  grep -qx "stopped by SIGTERM after step $n; checkpoint written to $s" a.out &&
  grep -qE "^checkpoint: step $n saved to $s \([0-9.]+ MiB, [0-9.]+ s\)$" a.out && [[ -f $s/manifest.json ]]; then ok; else
  bad "SIGTERM: status $rc, $n steps logged"; cat a.out | tail -n 5; ls ck; fi

# The checkpoint resumes and continues bit for bit; SIGINT stops the
# resumed run (no checkpointing: it says so) with status 130.
$g1 "${run[@]}" --steps 100000 --resume ck --log-every 1 --loss-log b.log > b.out 2>&1 &
pid=$!
pids+=($pid)
wait_for lines_at_least b.log 10
kill -INT $pid
wait $pid
rc=$?
m=$((n + $(wc -l < b.log)))
if [[ $rc == 130 ]] && grep -qx "resumed from ck after step $n" b.out &&
  grep -qx "stopped by SIGINT after step $m; no checkpoint (checkpointing is off: give --save-every N or --checkpoint-dir DIR)" b.out
then ok; else bad "SIGINT after resuming: status $rc"; tail -n 5 b.out; fi
$g1 "${run[@]}" --steps 100000 --log-every 1000 --loss-log c.log > c.out 2>&1 &
pid=$!
pids+=($pid)
wait_for lines_at_least c.log "$m"
kill -TERM $pid
wait $pid
if [[ -s b.log ]] && sed -n "$((n + 1)),${m}p" c.log | cmp -s - b.log; then ok; else
  bad "the run resumed after SIGTERM differs from the uninterrupted one"; fi

# Two ranks (ZeRO-1: each writes its shard), SIGTERM to rank 1 only: both
# stop after the same step and write its checkpoint together; no hang.
mpirun -np 2 $g2 "${run[@]}" --steps 100000 --save-every 1000 --checkpoint-dir ckd --log-every 1 --loss-log d.log \
  > d.out 2>&1 &
mp=$!
pids+=($mp)
wait_for lines_at_least d.log 5
victim=$(rank_pid 1 "$g2")
t0=$(date +%s)
kill -TERM "$victim"
wait $mp
rc=$?
t1=$(date +%s)
n=$(wc -l < d.log)
s=$(step_dir ckd "$n")
if [[ -n $victim && $rc == 143 && $((t1 - t0)) -le 8 ]] &&
  grep -qx "stopped by SIGTERM after step $n; checkpoint written to $s" d.out &&
  [[ -f $s/rank-00000.safetensors && -f $s/rank-00001.safetensors ]] && grep -q "\"step\": $n," $s/manifest.json &&
  ! grep -q watchdog d.out; then ok; else
  bad "SIGTERM to one of 2 ranks: victim '$victim', status $rc after $((t1 - t0)) s"; tail -n 20 d.out; ls ckd; fi
out=$($g1 "${run[@]}" --steps $((n + 1)) --resume "$s" 2>&1)
if grep -qx "resumed from $s after step $n" <<< "$out" && grep -q "^done: loss" <<< "$out"; then ok; else
  bad "the 2-rank checkpoint written at SIGTERM does not resume: $out"; fi

# ---- 2. Logs

# SIGKILL: every step line and loss printed so far is in the files.
$g1 "${run[@]}" --steps 100000 --log-every 1 --save-every 20 --checkpoint-dir ckk --loss-log k.log > k.out 2>&1 &
pid=$!
pids+=($pid)
# (step 60's lines were printed before step 80's checkpoint was made)
wait_for test -d ckk/step-00000080
kill -9 $pid
wait $pid 2> /dev/null
if grep -q '^step    60/100000 | loss' k.out && grep -q '^checkpoint: step 60 saved to ckk/step-00000060 (' k.out &&
  lines_at_least k.log 60; then ok; else bad "SIGKILL lost log lines: $(tail -c 300 k.out)"; fi
# redirected logs, of one process and of mpirun (which gives its ranks a
# pseudo-terminal), hold no progress fragments or escape sequences
if ! grep -q $'[\r\033]' k.out a.out d.out; then ok; else bad "terminal control characters in a redirected log"; fi

# On a terminal, a warning printed while the progress line shows starts on
# its own line. (The checkpoints fail: files are limited to 200 KiB.)
script -qfec "bash -c 'trap \"\" XFSZ; ulimit -f 200; exec $g1 --data $data --threads 1 --steps 12 --save-every 5 \
  --checkpoint-dir ckp --log-every 1000'" /dev/null > p.out 2>&1
if grep -q $'\033\\[Kstep     4/12 | loss' p.out && tr '\r' '\n' < p.out | grep -q 'warning: checkpoint of step 5' &&
  ! tr '\r' '\n' < p.out | grep -a 'warning:' | grep -vq $'^\\(\033\\[K\\)\\?warning:'; then ok; else
  bad "a warning glued onto the progress line:"; cat -A p.out | head -n 20; fi

# ---- 3. Checked before the first step

refuse save-no-dir "error: --save $tmp/nope/m.safetensors: cannot write in $tmp/nope: No such file or directory" -- \
  $g1 "${run[@]}" --steps 3 --save "$tmp/nope/m.safetensors"
refuse save-is-dir "error: --save $tmp: is a directory; give a file name" -- $g1 "${run[@]}" --steps 3 --save "$tmp"
refuse loss-log-no-dir "error: --loss-log nope/l.log: cannot write in nope: No such file or directory" -- \
  $g1 "${run[@]}" --steps 3 --loss-log nope/l.log
: > afile
refuse ckpt-dir-is-file "error: --checkpoint-dir afile: exists and is not a directory" -- \
  $g1 "${run[@]}" --steps 3 --save-every 2 --checkpoint-dir afile
refuse ckpt-dir-uncreatable "error: --checkpoint-dir afile/ck: cannot create it: Not a directory" -- \
  $g1 "${run[@]}" --steps 3 --save-every 2 --checkpoint-dir afile/ck
# token ids against the vocabulary (256): a shard with one bad token late in
# the file is refused at open, with the token, its offset and the limit
perl -e 'print pack("l<3", 20240520, 1, 6000), "\0" x 1012, pack("v*", map { $_ == 5000 ? 300 : $_ % 200 } 0 .. 5999)' \
  > bad.bin
refuse bad-token "error: bad.bin: token 300 at token offset 5000 is outside the model's vocabulary: input 'tokens' takes ids below 256" -- \
  $g1 --data bad.bin --steps 100
refuse bad-val-token "error: bad.bin: token 300 at token offset 5000 is outside the model's vocabulary: input 'tokens' takes ids below 256" -- \
  $g1 "${run[@]}" --val-data bad.bin --steps 100
expect steps-overflow 2 "^error: --steps needs an integer from 0 to 1000000000000000, not '99999999999999999999'$" -- \
  timeout 60 $g1 "${run[@]}" --steps 99999999999999999999
expect seed-overflow 2 "^error: --seed needs an integer from 0 to 9223372036854775807, not '9223372036854775808'$" -- \
  timeout 60 $g1 "${run[@]}" --seed 9223372036854775808
expect seed-negative 2 "^error: --seed needs an integer from 0 to 9223372036854775807, not '-5'$" -- \
  timeout 60 $g1 "${run[@]}" --seed -5
expect log-every-zero 2 "^error: --log-every needs an integer from 1 to 1000000000000000, not '0'$" -- \
  timeout 60 $g1 "${run[@]}" --log-every 0
expect threads-huge 2 "^error: --threads needs an integer from 1 to 4096, not '100000' \(this machine has [0-9]+ cores\)$" -- \
  timeout 60 $g1 --data "$data" --threads 100000
expect timeout-overflow 1 "^error: DST_COMM_TIMEOUT='1e999' is out of range: give seconds from 0 to 1e9 \(0 turns the watchdog off\)$" -- \
  timeout 60 env DST_COMM_TIMEOUT=1e999 $g1 "${run[@]}" --steps 1
expect timeout-negative 1 "^error: DST_COMM_TIMEOUT='-3' is out of range: give seconds from 0 to 1e9 \(0 turns the watchdog off\)$" -- \
  timeout 60 env DST_COMM_TIMEOUT=-3 $g1 "${run[@]}" --steps 1
expect timeout-nan 1 "^error: DST_COMM_TIMEOUT='nan' is not a number of seconds \(0 turns the watchdog off\)$" -- \
  timeout 60 env DST_COMM_TIMEOUT=nan $g1 "${run[@]}" --steps 1

# ---- 4. A data file truncated while training

# (several pages: a mapped file would raise SIGBUS on the pages past the new end)
for _ in $(seq 40); do cat "$data"; done > shrinking.txt
size=$(stat -c %s shrinking.txt)
timeout 60 $g1 --data shrinking.txt --threads 1 --steps 100000 --log-every 1000 --loss-log t.log > t.out 2>&1 &
pid=$!
pids+=($pid)
wait_for lines_at_least t.log 3
truncate -s 100 shrinking.txt
wait $pid
rc=$?
if [[ $rc == 1 ]] && grep -qx "error: shrinking.txt: the file is now 100 bytes, it had $size when training started: it was truncated or replaced while training" t.out
then ok; else bad "truncated data: status $rc"; tail -n 3 t.out; fi

# ---- 5. Checkpoints

$g1 "${run[@]}" --steps 6 --save-every 2 --checkpoint-dir ce --quiet > e.out 2>&1 || bad "checkpoints for the tests"
# exactly one line per save
if [[ $(grep -c '^checkpoint: ' e.out) == 3 ]] && grep -qE '^checkpoint: step 4 saved to ce/step-00000004 \([0-9.]+ MiB, [0-9.]+ s\)$' e.out
then ok; else bad "one line per save:"; cat e.out; fi
# an edited step is caught by the manifest's checksum; the newest earlier
# checkpoint that verifies is named (step 4 is damaged too: verified, not guessed)
cp -r ce ce2
sed -i 's/"step": 6,/"step": 7,/' ce2/step-00000006/manifest.json
flip ce2/step-00000004/rank-00000.safetensors 30000
expect manifest-edited 1 "^error: cannot resume: checkpoint ce2/step-00000006 is broken: ce2/step-00000006/manifest.json is corrupt \(manifest_checksum [0-9a-f]{16}, its contents give [0-9a-f]{16}: it was edited or damaged\); ce2/step-00000002 verifies: resume from it with --resume ce2/step-00000002$" -- \
  $g1 "${run[@]}" --steps 8 --resume ce2
expect tensor-file-damaged 1 "^error: cannot resume: checkpoint ce2/step-00000004 is broken: ce2/step-00000004/rank-00000.safetensors is corrupt \(checksum [0-9a-f]{16} in the manifest, the data gives [0-9a-f]{16}\); ce2/step-00000002 verifies: resume from it with --resume ce2/step-00000002$" -- \
  $g1 "${run[@]}" --steps 8 --resume ce2/step-00000004
cp -r ce ce3
sed -i 's/"data_pos": \([0-9]*\),/"data_pos": 1\1,/' ce3/step-00000006/manifest.json
truncate -s 1000 ce3/step-00000002/rank-00000.safetensors
expect data-pos-edited 1 "^error: cannot resume: checkpoint ce3/step-00000006 is broken: ce3/step-00000006/manifest.json is corrupt .*; ce3/step-00000004 verifies: resume from it with --resume ce3/step-00000004$" -- \
  $g1 "${run[@]}" --steps 8 --resume ce3
rm -r ce3/step-00000004
expect none-verifies 1 "^error: cannot resume: checkpoint ce3/step-00000006 is broken: .*; no earlier checkpoint in ce3 verifies$" -- \
  $g1 "${run[@]}" --steps 8 --resume ce3
# a new run does not write among another run's checkpoints
refuse fresh-run-used-dir "error: --checkpoint-dir ce already holds 3 checkpoints of another run \(step-00000002 \.\. step-00000006\): give --resume ce to continue that run, or another --checkpoint-dir \(or remove ce\) to start a new one" -- \
  $g1 "${run[@]}" --steps 4 --save-every 2 --checkpoint-dir ce
if [[ "$(ls ce | tr '\n' ' ')" == "step-00000002 step-00000004 step-00000006 " ]]; then ok; else bad "ce changed: $(ls ce)"; fi
expect resume-same-dir 0 "checkpoint: step 8 saved to ce/step-00000008" -- \
  $g1 "${run[@]}" --steps 8 --save-every 2 --checkpoint-dir ce --resume ce

# A save that fails mid-run (its temporary directory cannot be made) warns
# and training goes on; --keep 1 does not prune the newest good checkpoint
# for it, the next save works.
mkdir cb && : > cb/.tmp-step-00000010
out=$($g1 "${run[@]}" --steps 20 --save-every 5 --keep 1 --checkpoint-dir cb --log-every 1000 --loss-log cb.log 2>&1)
rc=$?
if [[ $rc == 0 && $(grep -c '^warning: ' <<< "$out") == 1 && $(grep -c '^checkpoint: ' <<< "$out") == 3 ]] &&
  grep -qx "warning: checkpoint of step 10 not written: cannot create cb/.tmp-step-00000010: File exists; training goes on (the newest checkpoint is cb/step-00000005)" <<< "$out" &&
  [[ "$(ls cb)" == step-00000020 ]] && lines_at_least cb.log 20; then ok; else
  bad "failed save mid-run: status $rc"; echo "$out"; ls -a cb; fi
# Writes that fail (files limited to 200 KiB, as on a full disk): a warning
# each time, counted; no temporary directory left; the last step's failure
# makes the status 1.
mkdir cf
out=$(bash -c "trap '' XFSZ; ulimit -f 200; exec $g1 --data $data --threads 1 --steps 12 --save-every 5 \
  --checkpoint-dir cf --log-every 1000" 2>&1)
rc=$?
w='warning: checkpoint of step %d not written: cf/.tmp-step-%08d/rank-00000.safetensors.tmp: cannot write: File too large; %s'
if [[ $rc == 1 ]] && grep -qxF "$(printf "$w" 5 5 'training goes on (there is no checkpoint yet)')" <<< "$out" &&
  grep -qxF "$(printf "$w" 10 10 'training goes on (there is no checkpoint yet; 2 saves in a row have failed)')" <<< "$out" &&
  grep -qxF "$(printf "$w" 12 12 'training is over (there is no checkpoint yet; 3 saves in a row have failed)')" <<< "$out" &&
  grep -qx "error: the checkpoint of the last step (12) could not be written (see the warning); there is no checkpoint yet" <<< "$out" &&
  grep -q '^done: loss' <<< "$out" && [[ -z "$(ls -A cf)" ]]; then ok; else
  bad "failing writes: status $rc"; echo "$out"; ls -A cf; fi
# Only rank 1's writes fail: the ranks agree, rank 0 reports rank 1's
# reason, both go on; nobody hangs.
t0=$(date +%s)
out=$(mpirun -np 1 $g2 "${run[@]}" --steps 6 --save-every 5 --checkpoint-dir cm --log-every 1000 : \
  -np 1 bash -c "trap '' XFSZ; ulimit -f 100; exec $g2 --data $data --threads 1 --steps 6 --save-every 5 \
  --checkpoint-dir cm --log-every 1000" 2>&1)
rc=$?
t1=$(date +%s)
if [[ $rc == 1 && $((t1 - t0)) -le 20 ]] &&
  grep -qx "\[rank 0\] warning: checkpoint of step 5 not written: cm/.tmp-step-00000005/rank-00001.safetensors.tmp: cannot write: File too large; training goes on (there is no checkpoint yet)" <<< "$out" &&
  grep -q '^done: loss' <<< "$out" && [[ -z "$(ls -A cm)" ]] && ! grep -q watchdog <<< "$out"; then ok; else
  bad "one rank's failing save: status $rc after $((t1 - t0)) s"; echo "$out"; ls -A cm; fi

# ---- 6. --help

expect help 0 'DST_COMM_TIMEOUT=SECONDS' -- $g1 --help
expect help-status 0 '130 stopped by SIGINT, 143 stopped by SIGTERM' -- $g1 --help

echo "faults: $pass passed, $fail failed"
[[ $fail == 0 ]]
