#!/usr/bin/env bash
# Runs every Fuzz target in the module for a short time (FUZZTIME, default 5s):
# a smoke run for `make test`; run one target longer by hand with
#   go test -run '^$' -fuzz '^FuzzName$' -fuzztime 5m ./pkg
set -euo pipefail
t=${FUZZTIME:-3s}
n=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  dir=./$(dirname "$file")
  echo "fuzz: $name in $dir for $t"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" -fuzzminimizetime 0 "$dir" >/dev/null
  n=$((n + 1))
done < <(git grep -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go')
echo "fuzz: $n targets ran clean"
