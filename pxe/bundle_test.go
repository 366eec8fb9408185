package pxe

import (
	"os"
	"path/filepath"
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
	if b, _ := OpenBundle(build, "console=ttyS1"); b.Cmdline != "console=ttyS1" {
		t.Fatalf("--cmdline not used: %q", b.Cmdline)
	}
	os.Remove(filepath.Join(pxeDir, "boot.ipxe"))
	if b, _ := OpenBundle(build, ""); b.Cmdline != DefaultCmdline {
		t.Fatalf("default cmdline: %q", b.Cmdline)
	}
}
