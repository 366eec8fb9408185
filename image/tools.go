package image

import (
	"fmt"
	"os"
)

// Tools are the boot loader files taken from the build host (Debian
// packages isolinux, syslinux-common, syslinux, grub-efi-amd64-bin,
// systemd-boot-efi, ipxe). Empty fields take the Debian paths.
type Tools struct {
	IsolinuxBin string // isolinux.bin (El Torito BIOS image)
	IsohdpfxBin string // isohdpfx.bin (isohybrid MBR code, 432 bytes)
	GPTMBRBin   string // gptmbr.bin (syslinux GPT MBR code, 440 bytes)
	SyslinuxMod string // directory with ldlinux.c32, menu.c32, libutil.c32, libcom32.c32
	SyslinuxCmd string // the mtools syslinux installer
	GrubEFI     string // monolithic GRUB EFI for CDs (gcdx64.efi)
	GrubNetEFI  string // monolithic GRUB EFI for network boot (grubnetx64.efi)
	SystemdBoot string // systemd-bootx64.efi
	IPXEBIOS    string // undionly.kpxe
	IPXEEFI     string // ipxe.efi
}

// DebianTools are the paths of the boot loader files on Debian 12.
var DebianTools = Tools{
	IsolinuxBin: "/usr/lib/ISOLINUX/isolinux.bin",
	IsohdpfxBin: "/usr/lib/ISOLINUX/isohdpfx.bin",
	GPTMBRBin:   "/usr/lib/syslinux/mbr/gptmbr.bin",
	SyslinuxMod: "/usr/lib/syslinux/modules/bios",
	SyslinuxCmd: "syslinux",
	GrubEFI:     "/usr/lib/grub/x86_64-efi/monolithic/gcdx64.efi",
	GrubNetEFI:  "/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi",
	SystemdBoot: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
	IPXEBIOS:    "/usr/lib/ipxe/undionly.kpxe",
	IPXEEFI:     "/usr/lib/ipxe/ipxe.efi",
}

// syslinuxModules are the syslinux BIOS modules the menus need.
var syslinuxModules = []string{"ldlinux.c32", "menu.c32", "libutil.c32", "libcom32.c32"}

func (t Tools) withDefaults() Tools {
	d := DebianTools
	pick := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	pick(&t.IsolinuxBin, d.IsolinuxBin)
	pick(&t.IsohdpfxBin, d.IsohdpfxBin)
	pick(&t.GPTMBRBin, d.GPTMBRBin)
	pick(&t.SyslinuxMod, d.SyslinuxMod)
	pick(&t.SyslinuxCmd, d.SyslinuxCmd)
	pick(&t.GrubEFI, d.GrubEFI)
	pick(&t.GrubNetEFI, d.GrubNetEFI)
	pick(&t.SystemdBoot, d.SystemdBoot)
	pick(&t.IPXEBIOS, d.IPXEBIOS)
	pick(&t.IPXEEFI, d.IPXEEFI)
	return t
}

// check reports the first missing boot loader file, naming its Debian package.
func (t Tools) check() error {
	files := []struct{ path, pkg string }{
		{t.IsolinuxBin, "isolinux"}, {t.IsohdpfxBin, "isolinux"}, {t.GPTMBRBin, "syslinux-common"},
		{t.GrubEFI, "grub-efi-amd64-bin"}, {t.GrubNetEFI, "grub-efi-amd64-bin"}, {t.SystemdBoot, "systemd-boot-efi"},
		{t.IPXEBIOS, "ipxe"}, {t.IPXEEFI, "ipxe"},
	}
	for _, m := range syslinuxModules {
		files = append(files, struct{ path, pkg string }{t.SyslinuxMod + "/" + m, "syslinux-common"})
	}
	for _, f := range files {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("boot loader file %s missing (install Debian package %s): %w", f.path, f.pkg, err)
		}
	}
	return nil
}
