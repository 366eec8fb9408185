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

// TestInstallClosureFromMedia builds the demo flake (demoprep) with
// --closure and installs laptop unattended from the medium in a VM with
// no network card: the installer finds the closure on the boot medium,
// copies it with the manifest's key and never builds.
func TestInstallClosureFromMedia(t *testing.T) {
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
	opt.Closure, opt.Hosts, opt.AgeKey = true, []string{"laptop"}, filepath.Join(demo, "age.key")
	opt.Formats = []image.Format{image.FormatISO, image.FormatUSB}
	opt.Cmdline = "nixlos.auto=1 nixlos.disk=auto nixlos.after=poweroff"
	res, log := build(t, opt)
	t.Logf("build:\n%s", log)
	top := res.Cache.Closures["laptop"].Toplevel

	for _, tc := range []struct {
		name string
		opts vmtest.Options
		from *regexp.Regexp
	}{
		// UEFI: the laptop boots with systemd-boot, which the install's
		// pre-flight (rightly) refuses under BIOS.
		{"iso-uefi-cd", vmtest.Options{CDROM: filepath.Join(out, image.ISOName), UEFI: true, DefaultCPU: true}, regexp.MustCompile(`from /dev/sr0 \(iso9660 NIXLOS\)`)},
		{"usbimg-uefi", vmtest.Options{USB: privateCopy(t, filepath.Join(out, image.USBName)), UEFI: true}, regexp.MustCompile(`from /dev/sd[a-z]2 \(iso9660 NIXLOS_CACHE\)`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Name, o.MemoryMiB, o.Timeout = tc.name, 2048, 20*time.Minute
			o.Disks = []vmtest.Disk{{Path: vmtest.NewDisk(t, "disk.img", 8<<30)}}
			vm := vmtest.StartT(t, o) // no Net: no network card at all
			ctx := context.Background()
			if _, err := vm.Expect(ctx, readyLine, bootTimeout); err != nil {
				t.Fatal(err)
			}
			ready := vm.Elapsed()
			if _, err := vm.Expect(ctx, "nixlos: closure "+top+" from ", 3*time.Minute); err != nil {
				t.Fatalf("%v\n%s", err, vm.Tail(30))
			}
			if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (complete host=laptop|failed: .*)`), 15*time.Minute); err != nil {
				t.Fatalf("%v\n%s", err, vm.Tail(40))
			}
			done := vm.Elapsed()
			console := vm.Console()
			if !strings.Contains(console, "nixlos: install complete host=laptop") {
				t.Fatalf("install failed:\n%s", vm.Tail(40))
			}
			if !tc.from.MatchString(console) {
				t.Errorf("closure not from the medium (%s):\n%s", tc.from, vm.Tail(40))
			}
			if strings.Contains(console, "building it instead") {
				t.Errorf("the installer built the system")
			}
			t.Logf("power-on → ready %.1f s → install complete %.1f s", ready.Seconds(), done.Seconds())
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := vm.Wait(wctx); err != nil {
				t.Errorf("QEMU did not exit after nixlos.after=poweroff: %v", err)
			}
		})
	}
}
