#!/usr/bin/env bash
# make demo: the whole job on examples/nix-los — prepare the flake with a
# fresh age key, show its hosts, build the ISO, install host laptop in a QEMU
# VM onto a blank disk, and read the installed disk back (internal/tools/demo).
set -euo pipefail
out=${1:-build/demo}
mkdir -p "$out"
go run ./internal/tools/demoprep --out "$out"
echo
bin/mkiso hosts "$out/flake"
echo
go run ./internal/tools/demo --out "$out"
