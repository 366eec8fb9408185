package image

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
)

const ovmf = "/usr/share/ovmf/OVMF.fd"

// bootMode is one way of booting a medium: QEMU arguments on top of the
// common ones (bootQEMU).
type bootMode struct {
	mode string
	args []string
}

// bootModes boots each mode as a subtest and waits for the ready line.
func bootModes(t *testing.T, modes []bootMode) {
	t.Helper()
	for _, tc := range modes {
		t.Run(tc.mode, func(t *testing.T) {
			requireFile(t, ovmf)
			secs := bootQEMU(t, tc.args, readyLine, 4*time.Minute)
			t.Logf("%s: %q after %.1f s", tc.mode, readyLine, secs)
		})
	}
}

// usbArgs attaches img as a USB stick (xHCI), first in the boot order.
func usbArgs(img string) []string {
	return []string{"-drive", "if=none,id=u,format=raw,file=" + img, "-device", "qemu-xhci", "-device", "usb-storage,drive=u,bootindex=0"}
}

// skipShort marks a VM boot test (testenv.VM: -short or NIXLOS_SKIP_VM
// skip it; without QEMU or a kernel it fails under CI).
func skipShort(t *testing.T) {
	testenv.VM(t)
}

func TestBootISO(t *testing.T) {
	skipShort(t)
	spec := testSpec(t, false)
	iso := filepath.Join(t.TempDir(), ISOName)
	if _, err := BuildISO(spec, iso); err != nil {
		t.Fatal(err)
	}
	usb := usbArgs(iso)
	bootModes(t, []bootMode{
		{"bios-cd", []string{"-cdrom", iso}},
		{"uefi-cd", []string{"-bios", ovmf, "-cdrom", iso}},
		{"bios-usb", usb},
		{"uefi-usb", append([]string{"-bios", ovmf}, usb...)},
	})
}

func TestBootUSB(t *testing.T) {
	skipShort(t)
	spec := testSpec(t, false)
	img := filepath.Join(t.TempDir(), USBName)
	if _, err := BuildUSB(spec, img); err != nil {
		t.Fatal(err)
	}
	usb := usbArgs(img)
	bootModes(t, []bootMode{
		{"bios-usb", usb},
		{"uefi-usb", append([]string{"-bios", ovmf}, usb...)},
	})
}

func TestBootPXE(t *testing.T) {
	skipShort(t)
	spec := testSpec(t, false)
	dir := filepath.Join(t.TempDir(), PXEDir)
	if _, err := BuildPXE(spec, dir); err != nil {
		t.Fatal(err)
	}
	net := func(bootfile string) []string {
		return []string{"-netdev", "user,id=n0,tftp=" + dir + ",bootfile=" + bootfile, "-device", "e1000,netdev=n0", "-boot", "n"}
	}
	bootModes(t, []bootMode{
		// SeaBIOS runs QEMU's iPXE NIC ROM, which fetches and runs boot.ipxe.
		{"pxe-bios", net(PXEScript)},
		// OVMF's PXE loads grubnetx64.efi, which reads grub/grub.cfg over TFTP.
		{"pxe-uefi", append([]string{"-bios", ovmf}, net(PXEGrubEFI)...)},
		// -kernel/-initrd with the bundle's files (the loader-less path).
		{"pxe-direct", []string{"-kernel", filepath.Join(dir, PXEKernel), "-initrd", filepath.Join(dir, PXEInitrd), "-append", Menu(spec)[0].Cmdline}},
	})
}
