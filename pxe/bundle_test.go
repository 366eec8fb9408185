package pxe

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

// imageScript has the shape image/ writes for DIR/pxe/boot.ipxe: a menu
// whose entries share the base command line.
const imageScript = `#!ipxe
menu nixlos installer
item install Install (choose host)
item host-server Install server
choose --default install --timeout 5000 target || set target install
goto ${target}

:install
kernel vmlinuz initrd=initrd console=tty0 console=ttyS0,115200 quiet
initrd initrd
boot

:host-server
kernel vmlinuz initrd=initrd console=tty0 console=ttyS0,115200 quiet nixlos.host=server
initrd initrd
boot
`

func TestOpenBundle(t *testing.T) {
	testenv.Files(t, filepath.Join(IPXEDir, BIOSBootFile))
	build := t.TempDir()
	pxeDir := filepath.Join(build, "pxe")
	os.MkdirAll(pxeDir, 0o755)
	if _, err := OpenBundle(build, ""); err == nil {
		t.Fatal("empty build dir accepted")
	}
	os.WriteFile(filepath.Join(pxeDir, KernelFile), []byte("k"), 0o644)
	if _, err := OpenBundle(build, ""); err == nil {
		t.Fatal("bundle without initrd accepted")
	}
	os.WriteFile(filepath.Join(pxeDir, InitrdFile), []byte("i"), 0o644)
	os.WriteFile(filepath.Join(pxeDir, "boot.ipxe"), []byte(imageScript), 0o644)
	for _, dir := range []string{build, pxeDir} {
		b, err := OpenBundle(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if b.Dir != pxeDir || b.Cmdline != "console=tty0 console=ttyS0,115200 quiet" {
			t.Fatalf("OpenBundle(%s) = %+v", dir, b)
		}
	}
	for _, f := range []string{BIOSBootFile, EFIBootFile} {
		if fi, err := os.Stat(filepath.Join(pxeDir, f)); err != nil || fi.Size() < 1000 {
			t.Fatalf("%s not copied in: %v", f, err)
		}
	}
	checkLocalEFI(t, pxeDir)
	if b, _ := OpenBundle(build, "console=ttyS1"); b.Cmdline != "console=ttyS1" {
		t.Fatalf("--cmdline not used: %q", b.Cmdline)
	}
	os.Remove(filepath.Join(pxeDir, "boot.ipxe"))
	if b, _ := OpenBundle(build, ""); b.Cmdline != DefaultCmdline {
		t.Fatalf("default cmdline: %q", b.Cmdline)
	}
}

// checkLocalEFI checks the UEFI local boot image OpenBundle made: a PE
// image (MZ) holding GRUB's embedded config, which chains the disk's
// fallback loader.
func checkLocalEFI(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		return // LocalEFIErr is set; TestOpenBundleLocalEFI needs the tool
	}
	b, err := os.ReadFile(filepath.Join(dir, LocalEFIFile))
	if err != nil {
		t.Fatalf("%s not made: %v", LocalEFIFile, err)
	}
	if !bytes.HasPrefix(b, []byte("MZ")) || !bytes.Contains(b, []byte("chainloader /EFI/BOOT/BOOTX64.EFI")) {
		t.Fatalf("%s (%d bytes) is not a GRUB EFI image chaining the fallback loader", LocalEFIFile, len(b))
	}
}

func TestOpenBundleLocalEFI(t *testing.T) {
	testenv.Tools(t, "grub-mkimage")
	testenv.Files(t, filepath.Join(IPXEDir, BIOSBootFile), filepath.Join(GrubEFIModules, "chain.mod"))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, KernelFile), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(dir, InitrdFile), []byte("i"), 0o644)
	b, err := OpenBundle(dir, "")
	if err != nil || b.LocalEFIErr != nil {
		t.Fatalf("OpenBundle: %v, LocalEFIErr %v", err, b.LocalEFIErr)
	}
	checkLocalEFI(t, dir)
	// Without the modules: the bundle still opens, and says why.
	defer func(d string) { GrubEFIModules = d }(GrubEFIModules)
	GrubEFIModules = t.TempDir()
	os.Remove(filepath.Join(dir, LocalEFIFile))
	b, err = OpenBundle(dir, "")
	if err != nil || b.LocalEFIErr == nil || !strings.Contains(b.LocalEFIErr.Error(), "grub-efi-amd64-bin") {
		t.Fatalf("OpenBundle without GRUB modules: %v, LocalEFIErr %v", err, b.LocalEFIErr)
	}
}
