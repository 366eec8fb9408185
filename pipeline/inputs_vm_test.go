package pipeline

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

// TestInstallFromCarriedInputs (issue 15): the demo flake (demoprep), whose
// nixpkgs input is a path: tree (the stand-in) that exists only on this
// machine, built WITHOUT --closure: the ISO's cache carries the flake's
// inputs alone. A VM with no network card boots it and installs laptop
// unattended: the installer copies the input from the CD into the target's
// store and nix builds the system there from it, offline.
func TestInstallFromCarriedInputs(t *testing.T) {
	needBuild(t)
	vmtest.SkipUnlessVM(t)
	testenv.Tools(t, "git")
	demo := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command("go", "run", "./internal/tools/demoprep", "--out", demo)
	cmd.Dir = filepath.Join(closureFlake(), "..", "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("demoprep: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "out")
	opt := testOptions(t, filepath.Join(demo, "flake"), out)
	opt.Hosts, opt.AgeKey = []string{"laptop"}, filepath.Join(demo, "age.key")
	opt.Formats = []image.Format{image.FormatISO}
	opt.Cmdline = "nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff"
	res, log := build(t, opt)
	t.Logf("build:\n%s", log)
	if len(res.Inputs) != 1 || res.Inputs[0].Name != "nixpkgs" || res.Inputs[0].URL != "path:"+filepath.Join(demo, "nixpkgs-standin") || res.Cache != nil {
		t.Fatalf("inputs %+v, closure cache %+v; want the stand-in alone, no closure", res.Inputs, res.Cache)
	}

	// UEFI: the laptop boots with systemd-boot.
	vm := vmtest.StartT(t, vmtest.Options{Name: "inputs-iso-uefi", CDROM: filepath.Join(out, image.ISOName), UEFI: true, DefaultCPU: true,
		MemoryMiB: 2048, Timeout: 30 * time.Minute, Disks: []vmtest.Disk{{Path: vmtest.NewDisk(t, "disk.img", 8<<30)}}}) // no Net: no network card
	ctx := context.Background()
	if _, err := vm.Expect(ctx, readyLine, bootTimeout); err != nil {
		t.Fatal(err)
	}
	ready := vm.Elapsed()
	if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: flake inputs \(1\) from /dev/sr0 \(iso9660 NIXLOS\)`), 3*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, vm.Tail(30))
	}
	if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (complete host=laptop|failed: .*)`), 25*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, vm.Tail(40))
	}
	done := vm.Elapsed()
	console := vm.Console()
	if !strings.Contains(console, "nixlos: install complete host=laptop") {
		t.Fatalf("install failed:\n%s", vm.Tail(60))
	}
	// Built here from the carried stand-in (its path exists only on the
	// build machine), not copied: there is no closure on the medium.
	if !strings.Contains(console, "[build] done in") || strings.Contains(console, "[copy-closure]") {
		t.Errorf("the system was not built in the VM:\n%s", vm.Tail(40))
	}
	t.Logf("power-on → ready %.1f s → install complete %.1f s", ready.Seconds(), done.Seconds())
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Errorf("QEMU did not exit after nixlos.after=poweroff: %v", err)
	}
}
