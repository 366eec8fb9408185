// Package testenv is the one place a nixlos test may skip. A test that
// needs a tool, a kernel, a firmware file or root asks for it here:
//
//	testenv.Tools(t, "sgdisk", "mkfs.ext4")
//	testenv.Root(t)
//	testenv.VM(t)            // QEMU + a kernel; "testenv: VM test" in the log
//	testenv.Short(t, "loop-device test")
//
// When something is missing the test skips with the reason — except in
// strict mode (CI=true, or NIXLOS_STRICT=1 as `make test` sets), where it
// FAILS, naming what is missing and the `make deps` package that provides
// it: a green run must never hide a test that did not run. Only -short and
// the opt-out variable NIXLOS_SKIP_VM=1 (VM tests only) skip in strict mode.
// TestSkipPolicy in this package keeps every other skip out of the tree.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/kernel"
)

// VMMarker is logged by every VM test that runs; `make test`'s report
// counts the tests that carry it.
const VMMarker = "testenv: VM test"

// OptOutVM is the variable that skips VM tests even in strict mode.
const OptOutVM = "NIXLOS_SKIP_VM"

// Strict reports whether a missing requirement fails the test.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("NIXLOS_STRICT") == "1"
}

// Missing skips t, or fails it in strict mode, because what is missing;
// fix says how to get it.
func Missing(t testing.TB, what, fix string) {
	t.Helper()
	msg := fmt.Sprintf("missing %s (fix: %s)", what, fix)
	if Strict() {
		t.Fatalf("%s — strict mode (CI=true or NIXLOS_STRICT=1) fails instead of skipping", msg)
	}
	t.Skip(msg)
}

// Short skips t under -short; what names the slow part.
func Short(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: skipped with -short", what)
	}
}

// packages maps a program or file to the Debian package scripts/deps.sh
// installs it from.
var packages = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
	"/usr/share/ovmf/OVMF.fd": "ovmf", "xorriso": "xorriso",
	"sgdisk": "gdisk", "parted": "parted", "sfdisk": "fdisk", "fdisk": "fdisk",
	"mkfs.ext4": "e2fsprogs", "mkfs.vfat": "dosfstools", "mkfs.btrfs": "btrfs-progs",
	"mkfs.xfs": "xfsprogs", "mkfs.f2fs": "f2fs-tools", "mtools": "mtools", "mcopy": "mtools",
	"cryptsetup": "cryptsetup-bin", "lvm": "lvm2", "mdadm": "mdadm",
	"nix": "nix-bin", "git": "git", "busybox": "busybox-static",
	"dnsmasq": "dnsmasq", "nginx": "nginx", "ip": "iproute2",
	"dropbear": "dropbear-bin", "dropbearkey": "dropbear-bin", "unshare": "util-linux",
	"grub-mkimage": "grub-common", "grub-bios-setup": "grub-pc-bin",
	"losetup": "util-linux", "lsblk": "util-linux", "blkid": "util-linux",
	"cpio": "cpio", "zstd": "zstd", "ldd": "libc-bin",
	"/usr/lib/ipxe/undionly.kpxe": "ipxe", "/usr/lib/ipxe/ipxe.efi": "ipxe",
	"/usr/lib/ISOLINUX/isolinux.bin": "isolinux", "/usr/lib/ISOLINUX/isohdpfx.bin": "isolinux",
	"/usr/lib/syslinux/modules/bios/ldlinux.c32":    "syslinux-common",
	"/usr/lib/systemd/boot/efi/systemd-bootx64.efi": "systemd-boot-efi",
}

// Fix is the fix text for a missing program or file.
func Fix(name string) string {
	if p, ok := packages[name]; ok {
		return fmt.Sprintf("`make deps` (scripts/deps.sh installs Debian package %s)", p)
	}
	return "`make deps` (add its Debian package to scripts/deps.sh)"
}

// Tools requires programs in PATH.
func Tools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Missing(t, "program "+n, Fix(n))
		}
	}
}

// Files requires files (firmware, boot loaders) to exist.
func Files(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			Missing(t, "file "+p, Fix(p))
		}
	}
}

// Root requires running as root (loop devices, mounts, namespaces).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges (loop devices, mounts, network namespaces)", "run the tests as root, as `make test` and CI do")
	}
}

// Kernel returns this machine's kernel (package kernel), or fails/skips.
func Kernel(t testing.TB) kernel.Kernel {
	t.Helper()
	k, err := kernel.Default()
	if err != nil {
		Missing(t, "a kernel with modules", "`make deps` (scripts/deps.sh installs Debian package linux-image-amd64): "+err.Error())
	}
	return k
}

// VM marks t as a VM test: skipped under -short or with NIXLOS_SKIP_VM=1,
// otherwise it needs QEMU and a kernel (strict mode fails without them).
// It logs VMMarker so the test report counts the VM tests that ran.
func VM(t testing.TB) kernel.Kernel {
	t.Helper()
	Short(t, "VM test (QEMU TCG boot)")
	if v := os.Getenv(OptOutVM); v != "" && v != "0" {
		t.Skipf("VM test: skipped because %s=%s", OptOutVM, v)
	}
	Tools(t, "qemu-system-x86_64")
	k := Kernel(t)
	if f, err := os.Open(k.Image); err != nil {
		Missing(t, "a readable kernel image", "run as root: "+strings.TrimSpace(err.Error()))
	} else {
		f.Close()
	}
	t.Log(VMMarker)
	return k
}
