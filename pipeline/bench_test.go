package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/vmtest"
)

// reportSizes reports the ISO size in MiB (goal ≤ 64 MiB).
func reportSizes(b *testing.B, res *Result) {
	for _, o := range res.Outputs {
		if o.Format == image.FormatISO {
			b.ReportMetric(float64(o.Size)/(1<<20), "iso-MiB")
		}
	}
}

// BenchmarkBuildCold is `mkiso build --no-cache` of examples/nix-los, all
// formats: u-root compiled, tools and modules walked, every segment made.
// About a minute per iteration here: run it with -benchtime 1x.
func BenchmarkBuildCold(b *testing.B) {
	needBuild(b)
	opt := testOptions(b, exampleFlake(), "")
	opt.NoCache = true
	var res *Result
	for i := 0; i < b.N; i++ {
		opt.Out = filepath.Join(b.TempDir(), "out")
		opt.CacheDir = b.TempDir() // NoCache leaves it untouched anyway
		res, _ = build(b, opt)
	}
	reportSizes(b, res)
}

// BenchmarkBuildWarm is `mkiso build` of examples/nix-los with the caches
// warm (one untimed build first), all formats.
func BenchmarkBuildWarm(b *testing.B) {
	needBuild(b)
	opt := testOptions(b, exampleFlake(), filepath.Join(b.TempDir(), "out"))
	build(b, opt)
	b.ResetTimer()
	var res *Result
	for i := 0; i < b.N; i++ {
		res, _ = build(b, opt)
	}
	b.StopTimer()
	reportSizes(b, res)
}

// bareInitrd is the closest bare u-root initramfs: u-root's base archive
// (same commands, same init), /bin/sh (dash) and one module, whose uinit
// only prints a ready line.
func bareInitrd(b *testing.B) string {
	out := filepath.Join(b.TempDir(), "bare.initrd")
	_, _, err := initramfs.Build(context.Background(), initramfs.Spec{
		Output: out, InstallerBinary: pinnedInstaller(b), Version: testVersion,
		UinitScript: "echo 'nixlos-installer bare ready'\n",
		Tools:       []string{"dash"}, ExtraLibs: []string{},
		Modules: []string{"virtio_rng"}, BootModules: []string{"virtio_rng"},
		SourceDateEpoch: MinEpoch,
	}, nil)
	if err != nil {
		b.Fatalf("bare initramfs: %v", err)
	}
	return out
}

// bootReady boots opts and returns power-on → pattern.
func bootReady(b *testing.B, opts vmtest.Options, pattern string) time.Duration {
	opts.Timeout = bootTimeout + time.Minute
	vm := vmtest.StartT(b, opts)
	defer vm.Kill()
	if _, err := vm.Expect(context.Background(), pattern, bootTimeout); err != nil {
		b.Fatalf("%s: no %q: %v\n%s", opts.Name, pattern, err, vm.Tail(30))
	}
	return vm.Elapsed()
}

// BenchmarkBootReady measures power-on → ready under TCG for the media
// built from examples/nix-los against a bare u-root initramfs with the
// same kernel, each pair on the same boot path:
//   - initrd: the PXE bundle's kernel and initrd with -kernel (SeaBIOS
//     loads both, no boot loader) against the bare initramfs the same way;
//   - iso: the ISO as a BIOS CD (firmware, isolinux, its 3 s menu
//     timeout, kernel, initramfs, installer) against an ISO that image
//     builds around the bare initramfs (same loader, menu and timeout).
//
// Reported as seconds and ratios (goal: ≤ 1.5x); iso/bare-x divides the
// ISO boot by the bare -kernel boot, the cross-path figure.
func BenchmarkBootReady(b *testing.B) {
	vmtest.SkipUnlessVM(b)
	out, _ := exampleBuild(b)
	pxe := filepath.Join(out, image.PXEDir)
	kernel := filepath.Join(pxe, image.PXEKernel)
	bare := bareInitrd(b)
	if _, err := os.Stat(kernel); err != nil {
		b.Fatal(err)
	}
	bareISO := filepath.Join(b.TempDir(), "bare.iso")
	if _, err := image.BuildISO(image.Spec{Kernel: kernel, Initrd: bare, Epoch: MinEpoch}, bareISO); err != nil {
		b.Fatalf("bare ISO: %v", err)
	}
	var iso, initrd, base, baseISO time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		base += bootReady(b, vmtest.Options{Name: "bare", Kernel: kernel, Initrd: bare, Append: image.ConsoleArgs}, "nixlos-installer bare ready")
		initrd += bootReady(b, vmtest.Options{Name: "initrd", Kernel: kernel, Initrd: filepath.Join(pxe, image.PXEInitrd),
			Append: image.ConsoleArgs + " nixlos.after=poweroff"}, readyLine)
		baseISO += bootReady(b, vmtest.Options{Name: "bare-iso", CDROM: bareISO}, "nixlos-installer bare ready")
		iso += bootReady(b, vmtest.Options{Name: "iso", CDROM: filepath.Join(out, image.ISOName)}, readyLine)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(base.Seconds()/n, "bare-s")
	b.ReportMetric(initrd.Seconds()/n, "initrd-s")
	b.ReportMetric(baseISO.Seconds()/n, "bare-iso-s")
	b.ReportMetric(iso.Seconds()/n, "iso-s")
	b.ReportMetric(initrd.Seconds()/base.Seconds(), "initrd/bare-x")
	b.ReportMetric(iso.Seconds()/baseISO.Seconds(), "iso/bare-iso-x")
	b.ReportMetric(iso.Seconds()/base.Seconds(), "iso/bare-x")
}
