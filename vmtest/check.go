package vmtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/kernel"
)

// DefaultKernel returns this machine's newest kernel image that has
// modules (package kernel), or "" when there is none.
func DefaultKernel() string {
	k, err := kernel.Default()
	if err != nil {
		return ""
	}
	return k.Image
}

// Available says why VMs cannot run here ("" when they can): no QEMU
// binary, no readable kernel.
func Available() string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86; `make deps`)"
	}
	k, err := kernel.Default()
	if err != nil {
		return err.Error()
	}
	f, err := os.Open(k.Image)
	if err != nil {
		return fmt.Sprintf("kernel %s not readable: %v", k.Image, err)
	}
	f.Close()
	return ""
}

// SkipUnlessVM marks t as a VM test (testenv.VM): skipped under -short or
// NIXLOS_SKIP_VM=1; without QEMU or a kernel it skips, or fails under CI.
func SkipUnlessVM(t testing.TB) {
	t.Helper()
	testenv.VM(t)
}

// Check is a shell script run inside a guest.
type Check struct {
	// Script is run by /bin/sh (dash) with -e, as root, after u-root's init
	// (devtmpfs, proc, sys mounted); PATH has the image's tools first
	// (/usr/sbin, /usr/bin: util-linux, lvm, cryptsetup, mdadm, kmod…), then
	// u-root's Go commands (grep, ls, cat: Go flags and regexps). For GNU
	// style flags use busybox applets: `busybox grep -E`, `busybox sort`.
	Script string
	// Files are extra files placed in the test initramfs (e.g. a layout).
	Files []initramfs.File
	// Disks are extra virtio disks (/dev/vda, /dev/vdb, … in order).
	Disks []Disk
	// USBDisks are removable USB sticks (Options.USBDisks); the script
	// loads xhci_pci and usb_storage itself.
	USBDisks []Disk
	// UEFI boots the check under OVMF (the guest sees /sys/firmware/efi).
	UEFI bool
	// ExtraArgs are appended to QEMU's command line (e.g. a CD-ROM drive).
	ExtraArgs []string
	// Append is added to the kernel command line.
	Append string
	// MemoryMiB for the guest (default 1024).
	MemoryMiB int
	// Timeout for the whole run (default 10 minutes).
	Timeout time.Duration
	// Initramfs overrides the test initramfs spec (Output, UinitScript
	// and Files are set by RunCheck).
	Initramfs initramfs.Spec
	// Name labels the VM (default "check").
	Name string
	// Kernel boots another kernel than this machine's newest (package
	// kernel's Find); its ModulesDir goes into the initramfs.
	Kernel kernel.Kernel
	// DefaultCPU: see Options.DefaultCPU.
	DefaultCPU bool
}

// CheckResult is what the guest script reported.
type CheckResult struct {
	Output   string        // script stdout+stderr, between the markers
	ExitCode int           // the script's exit status
	Elapsed  time.Duration // power-on to end marker
	Console  string        // the whole serial console
}

// checkScript wraps the user's script: markers carry a per-run nonce so
// kernel messages or echoes of the script cannot fake them.
func checkScript(nonce string) string {
	return fmt.Sprintf(`export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin
echo "@@CHECK-BEGIN-%[1]s@@"
/bin/sh -e /etc/nixlos/check.sh </dev/null 2>&1
rc=$?
echo "@@CHECK-END-%[1]s rc=$rc@@"
/bin/busybox sync
# Shut the disks down cleanly, as a real power-off would: unmount what the
# script mounted (children first), deactivate LVM, close dm devices, stop md
# arrays, so that the next boot of these disks finds every RAID member fresh.
/bin/busybox awk '$1 ~ "^/dev/" {print $2}' /proc/mounts | /bin/busybox sort -r | while read -r m; do
	/bin/busybox umount "$m" 2>/dev/null || /bin/busybox mount -o remount,ro "$m" 2>/dev/null
done
command -v vgchange >/dev/null 2>&1 && vgchange -an >/dev/null 2>&1
command -v dmsetup >/dev/null 2>&1 && dmsetup remove_all >/dev/null 2>&1
command -v mdadm >/dev/null 2>&1 && mdadm --stop --scan >/dev/null 2>&1
/bin/busybox sync
# the end marker may still sit in the tty buffer: power-off would drop it
/bin/busybox sleep 1
/bin/busybox poweroff -f
`, nonce)
}

// RunCheck builds a test initramfs (cached segments; about a second when
// warm) whose uinit runs c.Script, boots it with the default kernel and
// c.Disks, and returns the script's output and exit code. A non-zero exit
// code is not an error; failing to boot or to see the markers is.
func RunCheck(t testing.TB, c Check) CheckResult {
	t.Helper()
	k := testenv.VM(t)
	if c.Kernel.Image != "" {
		k = c.Kernel
	}
	ctx := context.Background()
	nb := make([]byte, 8)
	rand.Read(nb)
	nonce := hex.EncodeToString(nb)
	spec := c.Initramfs
	spec.Output = filepath.Join(t.TempDir(), "check-initrd")
	if spec.ModulesDir == "" {
		spec.ModulesDir = k.ModulesDir
	}
	spec.UinitScript = checkScript(nonce)
	spec.Files = append(append([]initramfs.File(nil), spec.Files...), c.Files...)
	spec.Files = append(spec.Files, initramfs.File{Path: "etc/nixlos/check.sh", Data: []byte(c.Script), Mode: 0o755})
	var progress strings.Builder
	initrd, rep, err := initramfs.Build(ctx, spec, &progress)
	if err != nil {
		t.Fatalf("vmtest: build check initramfs: %v\n%s", err, progress.String())
	}
	t.Logf("vmtest: check initramfs %s (%.1f MiB) in %s", initrd, float64(rep.Bytes)/(1<<20), rep.Duration.Round(time.Millisecond))
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	name := c.Name
	if name == "" {
		name = "check"
	}
	vm := StartT(t, Options{
		Name:       name,
		Kernel:     k.Image,
		DefaultCPU: c.DefaultCPU,
		Initrd:     initrd,
		Append:     strings.TrimSpace("console=ttyS0 loglevel=3 " + c.Append),
		Disks:      c.Disks,
		USBDisks:   c.USBDisks,
		UEFI:       c.UEFI,
		ExtraArgs:  c.ExtraArgs,
		MemoryMiB:  c.MemoryMiB,
		Timeout:    timeout + time.Minute,
	})
	if _, err := vm.Expect(ctx, "@@CHECK-BEGIN-"+nonce+"@@", timeout); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Expect(ctx, regexp.MustCompile(`@@CHECK-END-`+nonce+` rc=(\d+)@@`), timeout)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := vm.Elapsed()
	console := vm.Console()
	out := ParseCheckOutput(console, nonce)
	rc, _ := strconv.Atoi(m[1])
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Logf("vmtest: after the check: %v", err)
	}
	return CheckResult{Output: out, ExitCode: rc, Elapsed: elapsed, Console: console}
}

// ParseCheckOutput returns the text between the begin and end markers of
// run nonce in a console log ("" when either is missing), with \r removed.
func ParseCheckOutput(console, nonce string) string {
	begin := "@@CHECK-BEGIN-" + nonce + "@@"
	i := strings.Index(console, begin)
	if i < 0 {
		return ""
	}
	rest := console[i+len(begin):]
	j := strings.Index(rest, "@@CHECK-END-"+nonce+" rc=")
	if j < 0 {
		return ""
	}
	out := strings.ReplaceAll(rest[:j], "\r", "")
	return strings.TrimPrefix(out, "\n")
}
