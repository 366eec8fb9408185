package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pipeline"
	"github.com/nixlos/nixlos/vmtest"
)

const vmVersion = "flashtest"

// buildISO builds the real nixlos ISO of examples/nix-los (as 'mkiso build
// --format iso' does) into dir.
func buildISO(t *testing.T, mod, dir string) string {
	t.Helper()
	testenv.Tools(t, "nix")
	p, err := pipeline.NewProfile(pipeline.Options{Flake: filepath.Join(mod, "examples", "nix-los"), Out: dir,
		Formats: []image.Format{image.FormatISO}, Version: vmVersion, Cmdline: "nixlos.after=poweroff"})
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	var log bytes.Buffer
	if _, err := pipeline.Build(context.Background(), p, &log); err != nil {
		t.Fatalf("build the ISO: %v\n%s", err, log.String())
	}
	return filepath.Join(dir, image.ISOName)
}

// staticMkiso builds mkiso from the working tree with CGO_ENABLED=0.
func staticMkiso(t *testing.T, mod string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mkiso")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/mkiso")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build mkiso: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSHA256(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// flashScript runs inside the guest: the system disk /dev/vda (ext4,
// mounted at /work) holds the ISO; the QEMU usb-storage stick is /dev/sda.
const flashScript = `modprobe -a xhci_pci usb_storage sd_mod ext4 || true
i=0
while [ ! -b /dev/sda ] && [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done
mkdir -p /work
mount -t ext4 /dev/vda /work
echo "== list"
mkiso flash --json > /tmp/list.json
cat /tmp/list.json
echo "== system disk"
rc=0; mkiso flash /work/nixlos.iso /dev/vda --yes || rc=$?
echo "system-disk-rc=$rc"
echo "== no terminal, no --yes"
rc=0; mkiso flash /work/nixlos.iso /dev/sda </dev/null || rc=$?
echo "no-terminal-rc=$rc"
echo "== dry run"
mkiso flash /work/nixlos.iso /dev/sda --dry-run
echo "== stick"
rc=0; mkiso flash /work/nixlos.iso /dev/sda --yes --json > /tmp/result.json || rc=$?
cat /tmp/result.json
echo "stick-rc=$rc"
umount /work
sync
`

// TestVMFlash is the acceptance test: inside a guest with a virtio system
// disk and a QEMU usb-storage stick, 'mkiso flash' lists only the stick,
// refuses the system disk by name, writes the real nixlos ISO to the stick
// and verifies it; then a second VM boots from that stick to the
// installer's ready line.
func TestVMFlash(t *testing.T) {
	testenv.VM(t)
	testenv.Tools(t, "mkfs.ext4")
	mod, err := initramfs.FindModuleDir("")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sysDir := t.TempDir()
	iso := buildISO(t, mod, filepath.Join(t.TempDir(), "out"))
	isoInfo, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	isoSHA := fileSHA256(t, iso, isoInfo.Size())
	if err := os.Rename(iso, filepath.Join(sysDir, "nixlos.iso")); err != nil {
		t.Fatal(err)
	}
	mkiso := staticMkiso(t, mod)
	t.Logf("ISO %.1f MiB (sha256 %s) and static mkiso built in %s", float64(isoInfo.Size())/(1<<20), isoSHA, time.Since(start).Round(time.Second))

	// The system disk: ext4 holding the ISO, made without mounting anything here.
	sysImg := filepath.Join(t.TempDir(), "system.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "system", "-d", sysDir, sysImg, "256M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	// The stick: 256 MiB, old contents that must go.
	stick := filepath.Join(t.TempDir(), "stick.img")
	if err := os.WriteFile(stick, bytes.Repeat([]byte("old stick data "), 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(stick, 256<<20); err != nil {
		t.Fatal(err)
	}

	res := vmtest.RunCheck(t, vmtest.Check{
		Name:     "flash",
		Script:   flashScript,
		Files:    []initramfs.File{{Path: "usr/bin/mkiso", Data: mkiso, Mode: 0o755}},
		Disks:    []vmtest.Disk{{Path: sysImg, Serial: "system"}},
		USBDisks: []vmtest.Disk{{Path: stick, Serial: "STICK0001"}},
		Timeout:  10 * time.Minute,
	})
	t.Logf("guest (%s, rc %d):\n%s", res.Elapsed.Round(time.Second), res.ExitCode, res.Output)
	if res.ExitCode != 0 {
		t.Fatalf("guest script failed with %d", res.ExitCode)
	}
	out := res.Output
	section := func(name string) string {
		_, rest, _ := strings.Cut(out, "== "+name+"\n")
		if i := strings.Index(rest, "\n== "); i >= 0 {
			rest = rest[:i]
		}
		return rest
	}

	// The list: only the stick.
	var list struct{ Disks []ListEntry }
	if err := json.Unmarshal([]byte(section("list")), &list); err != nil {
		t.Fatalf("list JSON: %v\n%s", err, section("list"))
	}
	if len(list.Disks) != 1 || list.Disks[0].Path != "/dev/sda" || !list.Disks[0].Removable || list.Disks[0].Bus != "usb" ||
		list.Disks[0].Serial != "STICK0001" || list.Disks[0].SizeBytes != 256<<20 {
		t.Errorf("list %+v, want only the stick /dev/sda", list.Disks)
	}
	// The system disk: refused by name (exit 2), with its reasons.
	sys := section("system disk")
	for _, want := range []string{"system-disk-rc=2", "mkiso: /dev/vda", "not a removable or USB disk", "holds the image being written", "mounted at /work"} {
		if !strings.Contains(sys, want) {
			t.Errorf("system disk refusal lacks %q:\n%s", want, sys)
		}
	}
	if s := section("no terminal, no --yes"); !strings.Contains(s, "no-terminal-rc=2") || !strings.Contains(s, "stdin is not a terminal") {
		t.Errorf("without a terminal or --yes:\n%s", s)
	}
	if s := section("dry run"); !strings.Contains(s, "device: /dev/sda (QEMU") || !strings.Contains(s, "4. read") {
		t.Errorf("dry run:\n%s", s)
	}
	// The stick: written and verified, inside and from outside.
	st := section("stick")
	if !strings.Contains(st, "stick-rc=0") {
		t.Fatalf("flash to the stick failed:\n%s", st)
	}
	var r Result
	i := strings.Index(st, "{\n") // after the progress lines (stderr)
	if i < 0 {
		t.Fatalf("no result JSON:\n%s", st)
	}
	js := st[i:]
	if err := json.Unmarshal([]byte(js[:strings.LastIndex(js, "}")+1]), &r); err != nil {
		t.Fatalf("result JSON: %v\n%s", err, st)
	}
	if !r.Verified || r.SHA256 != isoSHA || r.Bytes != uint64(isoInfo.Size()) || r.Device != "/dev/sda" {
		t.Errorf("result %+v, want verified sha256 %s", r, isoSHA)
	}
	if !regexp.MustCompile(`writing /dev/sda: \d+\.\d MiB in .*/s\)`).MatchString(st) || !strings.Contains(st, "verifying /dev/sda: ") {
		t.Errorf("no progress summary lines in:\n%s", st)
	}
	if got := fileSHA256(t, stick, isoInfo.Size()); got != isoSHA {
		t.Fatalf("the stick image holds %s, the ISO is %s", got, isoSHA)
	}
	t.Logf("guest flash: write %.1fs, verify %.1fs, O_DIRECT %v", r.WriteSec, r.CheckSec, r.Direct)

	// A second VM boots from the stick (SeaBIOS, usb-storage) to the installer.
	bootStart := time.Now()
	vm := vmtest.StartT(t, vmtest.Options{Name: "stick-boot", USB: stick, Timeout: 10 * time.Minute})
	ready := "nixlos-installer " + vmVersion + " ready"
	if _, err := vm.Expect(context.Background(), ready, 8*time.Minute); err != nil {
		t.Fatalf("booting the flashed stick: no %q: %v\n%s", ready, err, vm.Tail(30))
	}
	t.Logf("flashed stick booted: %q after %.1fs (power-on → ready, TCG); whole test %s", ready, time.Since(bootStart).Seconds(), time.Since(start).Round(time.Second))
}
