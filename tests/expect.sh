# expect.sh: sourced by the shell tests. Counts into $pass and $fail.
#   expect NAME STATUS PATTERN -- command...
# passes when the command exits with STATUS and its output (stdout and
# stderr) matches the extended regular expression PATTERN.
pass=0 fail=0
# ok / bad MESSAGE: count a check the script made itself
ok() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*"
}
expect() {
  local name=$1 want=$2 pat=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc == "$want" ]] && grep -qE -- "$pat" <<< "$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL %s: status %s (want %s), output:\n%s\n' "$name" "$rc" "$want" "$out"
  fi
}
