#!/usr/bin/env bash
# Runs every Fuzz target in the module for a short time (FUZZTIME, default 3s):
# a smoke run for `make test`; run one target longer by hand with
#   go test -run '^$' -fuzz '^FuzzName$' -fuzztime 5m ./pkg
# A failure that leaves a new crasher in testdata/fuzz fails the run at once.
# One that leaves none is the fuzzing engine itself (a worker timing out on a
# loaded 2-core machine): its output is shown and the target is run once more.
set -euo pipefail
t=${FUZZTIME:-3s}
n=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "$t" -fuzzminimizetime 0 "$2" >"$log" 2>&1; }
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  dir=./$(dirname "$file")
  echo "fuzz: $name in $dir for $t"
  if ! fuzz "$name" "$dir"; then
    cat "$log"
    if [ -n "$(git status --porcelain -- "$dir/testdata/fuzz/$name" 2>/dev/null)" ]; then
      echo "fuzz: $name found a failing input (see $dir/testdata/fuzz/$name)"; exit 1
    fi
    echo "fuzz: $name: engine failure without a crasher; running it once more"
    fuzz "$name" "$dir" || { cat "$log"; exit 1; }
  fi
  n=$((n + 1))
done < <(git grep -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go')
echo "fuzz: $n targets ran clean"
