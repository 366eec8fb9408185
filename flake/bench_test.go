package flake

import (
	"context"
	"testing"
	"time"
)

// bareEvalArgs is the plain nix evaluation mkiso manifest wraps (RECIPES.md):
// every host's disko.devices in one `nix eval --json`.
func bareEvalArgs(f *Flake) []string {
	return []string{"eval", "--json", f.Dir + "#nixosConfigurations", "--apply", "c: builtins.mapAttrs (n: h: h.config.disko.devices) c"}
}

func benchFlake(b *testing.B) *Flake {
	needNix(b)
	f, err := Find(example)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkExport is the manifest export of the example (what mkiso manifest runs).
func BenchmarkExport(b *testing.B) {
	f := benchFlake(b)
	for b.Loop() {
		if _, err := Export(context.Background(), f, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareNixEval is the bare nix eval of the same flake.
func BenchmarkBareNixEval(b *testing.B) {
	f := benchFlake(b)
	for b.Loop() {
		if _, err := (Nix{}).Run(context.Background(), bareEvalArgs(f)...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkManifestVsNixEval alternates both in one run and reports
// export/bare as "ratio" (goal: <= 1.2).
func BenchmarkManifestVsNixEval(b *testing.B) {
	f := benchFlake(b)
	ctx := context.Background()
	var export, bare time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := Export(ctx, f, Options{}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := (Nix{}).Run(ctx, bareEvalArgs(f)...); err != nil {
			b.Fatal(err)
		}
		export += t1.Sub(t0)
		bare += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(export.Milliseconds())/n, "export-ms")
	b.ReportMetric(float64(bare.Milliseconds())/n, "nix-eval-ms")
	b.ReportMetric(float64(export)/float64(bare), "ratio")
}
