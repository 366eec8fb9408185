package image

import (
	"path/filepath"
	"testing"
	"time"
)

const ovmf = "/usr/share/ovmf/OVMF.fd"

func TestBootISO(t *testing.T) {
	if testing.Short() {
		t.Skip("VM boot test (QEMU TCG); skipped with -short")
	}
	spec := testSpec(t, false)
	iso := filepath.Join(t.TempDir(), ISOName)
	if _, err := BuildISO(spec, iso); err != nil {
		t.Fatal(err)
	}
	usb := []string{"-drive", "if=none,id=u,format=raw,file=" + iso, "-device", "qemu-xhci", "-device", "usb-storage,drive=u,bootindex=0"}
	for _, tc := range []struct {
		mode string
		args []string
	}{
		{"bios-cd", []string{"-cdrom", iso}},
		{"uefi-cd", []string{"-bios", ovmf, "-cdrom", iso}},
		{"bios-usb", usb},
		{"uefi-usb", append([]string{"-bios", ovmf}, usb...)},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			requireFile(t, ovmf)
			secs := bootQEMU(t, tc.args, readyLine, 4*time.Minute)
			t.Logf("%s: %q after %.1f s", tc.mode, readyLine, secs)
		})
	}
}

func TestBootUSB(t *testing.T) {
	if testing.Short() {
		t.Skip("VM boot test (QEMU TCG); skipped with -short")
	}
	spec := testSpec(t, false)
	img := filepath.Join(t.TempDir(), USBName)
	if _, err := BuildUSB(spec, img); err != nil {
		t.Fatal(err)
	}
	usb := []string{"-drive", "if=none,id=u,format=raw,file=" + img, "-device", "qemu-xhci", "-device", "usb-storage,drive=u,bootindex=0"}
	for _, tc := range []struct {
		mode string
		args []string
	}{
		{"bios-usb", usb},
		{"uefi-usb", append([]string{"-bios", ovmf}, usb...)},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			requireFile(t, ovmf)
			secs := bootQEMU(t, tc.args, readyLine, 4*time.Minute)
			t.Logf("%s: %q after %.1f s", tc.mode, readyLine, secs)
		})
	}
}

func TestBootPXE(t *testing.T) {
	if testing.Short() {
		t.Skip("VM boot test (QEMU TCG); skipped with -short")
	}
	spec := testSpec(t, false)
	dir := filepath.Join(t.TempDir(), PXEDir)
	if _, err := BuildPXE(spec, dir); err != nil {
		t.Fatal(err)
	}
	net := func(bootfile string) []string {
		return []string{"-netdev", "user,id=n0,tftp=" + dir + ",bootfile=" + bootfile, "-device", "e1000,netdev=n0", "-boot", "n"}
	}
	for _, tc := range []struct {
		mode string
		args []string
	}{
		// SeaBIOS runs QEMU's iPXE NIC ROM, which fetches and runs boot.ipxe.
		{"pxe-bios", net(PXEScript)},
		// OVMF's PXE loads grubnetx64.efi, which reads grub/grub.cfg over TFTP.
		{"pxe-uefi", append([]string{"-bios", ovmf}, net(PXEGrubEFI)...)},
		// -kernel/-initrd with the bundle's files (the loader-less path).
		{"pxe-direct", []string{"-kernel", filepath.Join(dir, PXEKernel), "-initrd", filepath.Join(dir, PXEInitrd), "-append", Menu(spec)[0].Cmdline}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			requireFile(t, ovmf)
			secs := bootQEMU(t, tc.args, readyLine, 4*time.Minute)
			t.Logf("%s: %q after %.1f s", tc.mode, readyLine, secs)
		})
	}
}
