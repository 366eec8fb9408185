package install_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/vmtest"
)

// BenchmarkInstallLaptop measures power-on → "install complete" of the
// laptop host (ESP + LUKS + LVM, unattended, closure copied from the ISO,
// UEFI) under TCG, then power-on → booted of the installed disk alone (the
// passphrase typed at the prompt), next to a bare boot from the same run:
// the same kernel with a minimal u-root initramfs, power-on → its first
// line in userspace. Goal for the install: ≤ 90 s.
func BenchmarkInstallLaptop(b *testing.B) {
	e := setup(b)
	ctx := context.Background()
	bare := filepath.Join(e.dir, "bare.initrd")
	if _, _, err := initramfs.Build(ctx, initramfs.Spec{
		Output: bare, Version: "vmtest", GoModuleDir: repoRoot(),
		UinitScript: "echo 'nixlos bare ready'\n",
		Tools:       []string{"dash"}, ExtraLibs: []string{},
		Modules: []string{"virtio_rng"}, BootModules: []string{"virtio_rng"},
	}, io.Discard); err != nil {
		b.Fatalf("bare initramfs: %v", err)
	}
	var bareT, inst, booted time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vm := vmtest.StartT(b, vmtest.Options{Name: "bare", Kernel: vmtest.DefaultKernel(), Initrd: bare,
			Append: "console=ttyS0 loglevel=3", Timeout: 8 * time.Minute})
		if _, err := vm.Expect(ctx, "nixlos bare ready", 6*time.Minute); err != nil {
			b.Fatalf("bare boot: %v\n%s", err, vm.Tail(20))
		}
		bareT += vm.Elapsed()
		vm.Kill()
		img := vmtest.NewDisk(b, fmt.Sprintf("laptop-%d.img", i), 8<<30)
		vm = boot(b, uefi, e.initrd, "laptop", "nixlos.host=laptop nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff", vmtest.Disk{Path: img})
		inst += expectInstalled(b, vm, "laptop")
		booted += bootInstalled(b, e, uefi, fmt.Sprintf("laptop-firstboot-%d", i), vmtest.Disk{Path: img}).Elapsed
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(bareT.Seconds()/n, "bare-boot-s")
	b.ReportMetric(inst.Seconds()/n, "install-complete-s")
	b.ReportMetric(booted.Seconds()/n, "installed-booted-s")
	b.ReportMetric(inst.Seconds()/bareT.Seconds(), "install/bare-x")
}
