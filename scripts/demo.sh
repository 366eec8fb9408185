#!/usr/bin/env bash
# make demo: prepare the example flake with a fresh age key, then show what
# nixlos sees in it.
set -euo pipefail
out=${1:-build/demo}
mkdir -p "$out"
go run ./internal/cmd/demoprep --out "$out"
echo
bin/mkiso hosts "$out/flake"
