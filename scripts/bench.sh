#!/usr/bin/env bash
# make bench: every benchmark, each next to its reference tool run in the same
# process (ratios are reported as b.ReportMetric columns). Slow, whole-job
# benchmarks (VM boots, cold builds, guest applies) run once; fast ones longer.
set -euo pipefail
run() { echo "== $*"; go test -run '^$' "$@"; }
run -bench 'BenchmarkPlan$' -benchtime 2000x ./partition
run -bench 'BenchmarkApplySimpleEFI|BenchmarkGuestApplyLUKSLVM' -benchtime 1x ./partition/apply
run -bench 'BenchmarkManifestVsNixEval' -benchtime 20x ./flake
run -bench . -benchtime 3x ./image ./initramfs
run -bench . -benchtime 1x ./pipeline ./vmtest
run -bench . ./pxe
if git grep -q '^func Benchmark' -- install/ 2>/dev/null; then
  run -bench . -benchtime 1x ./install
fi
