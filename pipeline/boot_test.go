package pipeline

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/vmtest"
)

// bootTimeout bounds power-on → ready for one boot (OVMF under TCG on the
// loaded 2-core machine has taken over 2 minutes).
const bootTimeout = 8 * time.Minute

// bootCase is one way of booting the media built from examples/nix-los.
type bootCase struct {
	mode string
	opts func(t *testing.T, out string) vmtest.Options
}

// privateCopy copies a disk image so a VM may open it read-write without
// touching (or locking) the build output shared by the other boots.
func privateCopy(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

var bootCases = []bootCase{
	{"iso-bios-cd", func(t *testing.T, out string) vmtest.Options {
		return vmtest.Options{CDROM: filepath.Join(out, image.ISOName)}
	}},
	{"iso-uefi-cd", func(t *testing.T, out string) vmtest.Options {
		return vmtest.Options{CDROM: filepath.Join(out, image.ISOName), UEFI: true}
	}},
	{"iso-bios-usb", func(t *testing.T, out string) vmtest.Options {
		return vmtest.Options{USB: privateCopy(t, filepath.Join(out, image.ISOName))}
	}},
	{"iso-uefi-usb", func(t *testing.T, out string) vmtest.Options {
		return vmtest.Options{USB: privateCopy(t, filepath.Join(out, image.ISOName)), UEFI: true}
	}},
	{"usbimg-bios", func(t *testing.T, out string) vmtest.Options {
		return vmtest.Options{USB: privateCopy(t, filepath.Join(out, image.USBName))}
	}},
	{"usbimg-uefi", func(t *testing.T, out string) vmtest.Options {
		return vmtest.Options{USB: privateCopy(t, filepath.Join(out, image.USBName)), UEFI: true}
	}},
	{"pxe-kernel-initrd", func(t *testing.T, out string) vmtest.Options {
		pxe := filepath.Join(out, image.PXEDir)
		return vmtest.Options{Kernel: filepath.Join(pxe, image.PXEKernel), Initrd: filepath.Join(pxe, image.PXEInitrd),
			Append: pxeCmdline(t, pxe)}
	}},
	{"pxe-ipxe-tftp", func(t *testing.T, out string) vmtest.Options {
		// SeaBIOS runs the e1000's iPXE ROM, which DHCPs from QEMU's user
		// net, fetches boot.ipxe over TFTP and boots vmlinuz + initrd.
		return vmtest.Options{Net: &vmtest.Net{TFTP: filepath.Join(out, image.PXEDir), BootFile: image.PXEScript, PXE: true}}
	}},
}

// pxeCmdline is the default (first) menu entry's kernel command line, as
// the PXE bundle's boot.ipxe carries it.
func pxeCmdline(t *testing.T, pxe string) string {
	t.Helper()
	spec := image.Spec{Kernel: filepath.Join(pxe, image.PXEKernel), Initrd: filepath.Join(pxe, image.PXEInitrd),
		Cmdline: "nixlos.after=poweroff", Hosts: []string{"laptop", "server"}}
	return image.Menu(spec)[0].Cmdline
}

// TestBootExampleMedia is the acceptance boot: the media built from
// examples/nix-los (real initramfs, real installer) reach the installer's
// ready line on the serial console in every boot mode. Two VMs run at a
// time (t.Parallel under -parallel, default GOMAXPROCS).
func TestBootExampleMedia(t *testing.T) {
	vmtest.SkipUnlessVM(t)
	out, res := exampleBuild(t)
	for _, o := range res.Outputs {
		t.Logf("%s: %s, %.1f MiB", o.Format, o.Path, float64(o.Size)/(1<<20))
	}
	for _, bc := range bootCases {
		t.Run(bc.mode, func(t *testing.T) {
			t.Parallel()
			opts := bc.opts(t, out)
			opts.Name = bc.mode
			if opts.UEFI {
				testenv.Files(t, vmtest.DefaultOVMF)
			}
			opts.Timeout = bootTimeout + time.Minute
			vm := vmtest.StartT(t, opts)
			if _, err := vm.Expect(context.Background(), readyLine, bootTimeout); err != nil {
				t.Fatalf("%s: no %q: %v\n%s", bc.mode, readyLine, err, vm.Tail(30))
			}
			t.Logf("%s: %q after %.1f s (power-on → ready, TCG)", bc.mode, readyLine, vm.Elapsed().Seconds())
		})
	}
}
