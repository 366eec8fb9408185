package diskrules

import (
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

// laptopMedia is the example laptop's install media for the full-install
// run: the ISO carrying its closure and an installer initramfs with the
// media's manifest and the demo's age key (as the install VM tests do).
type laptopMedia struct {
	iso, initrd, keyLine string
}

// buildLaptopMedia runs demoprep into a temp dir and builds the laptop's
// ISO with its closure (mkiso build --closure --host laptop) and the
// installer initramfs.
func buildLaptopMedia(t *testing.T) laptopMedia {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "run", "./internal/tools/demoprep", "--out", filepath.Join(dir, "demo"))
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("demoprep: %v\n%s", err, out)
	}
	flakeDir := filepath.Join(dir, "demo", "flake")
	key, err := agekey.Load(filepath.Join(dir, "demo", "age.key"))
	if err != nil {
		t.Fatal(err)
	}
	var m laptopMedia
	for _, l := range strings.Split(string(key.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			m.keyLine = l
		}
	}
	prof, err := pipeline.NewProfile(pipeline.Options{Flake: flakeDir, Out: filepath.Join(dir, "out"), Formats: []image.Format{image.FormatISO},
		Version: "vmtest", Closure: true, Hosts: []string{"laptop"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Build(ctx, prof, io.Discard)
	if err != nil {
		t.Fatalf("mkiso build --closure: %v", err)
	}
	m.iso = filepath.Join(res.Out, image.ISOName)
	manifest, err := json.Marshal(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.initrd, _, err = initramfs.Build(ctx, initramfs.Spec{Output: filepath.Join(dir, "initrd"), Version: "vmtest", GoModuleDir: repoRoot(),
		FlakeDir: flakeDir, Manifest: manifest, AgeKey: key.File()}, io.Discard); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	t.Logf("demoprep, laptop ISO with closure and initramfs in %.1f s", time.Since(start).Seconds())
	return m
}

// installOn installs the laptop unattended (UEFI, closure from the ISO as
// a CD-ROM, no network) with its disk chosen by rules, to "install
// complete" (then power-off).
func installOn(t *testing.T, m laptopMedia, disks []vmtest.Disk, rules string) {
	t.Helper()
	vm := vmtest.StartT(t, vmtest.Options{
		Name: "rules-install", Kernel: vmtest.DefaultKernel(), Initrd: m.initrd, UEFI: true,
		Append:    "console=ttyS0 loglevel=3 nixlos.host=laptop nixlos.auto=1 nixlos.disk=" + rules + " nixlos.after=poweroff",
		Disks:     disks,
		MemoryMiB: 2048,
		Timeout:   20 * time.Minute,
		ExtraArgs: []string{"-drive", "file=" + m.iso + ",media=cdrom,readonly=on,if=ide"},
	})
	ctx := context.Background()
	got, err := vm.Expect(ctx, regexp.MustCompile(`nixlos: install (failed: ([^\r\n]*)\r?\n|complete host=laptop)`), 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(got[1], "failed") {
		t.Fatalf("install failed: %s\n%s", got[2], vm.Tail(40))
	}
	t.Logf("power-on → install complete in %.1f s", vm.Elapsed().Seconds())
	con := vm.Console()
	for _, want := range []string{"nixlos: host=laptop disk=/dev/disk/by-id/virtio-mid-6g", "[copy-closure] done"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q:\n%s", want, vm.Tail(40))
		}
	}
	if strings.Contains(con, m.keyLine) {
		t.Error("the age key was printed on the console")
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil && wctx.Err() != nil {
		t.Errorf("the VM did not power off after the install: %v", err)
	}
}
