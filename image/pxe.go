package image

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// Files of the PXE bundle, relative to its directory (the TFTP/HTTP root).
const (
	PXEKernel   = "vmlinuz"
	PXEInitrd   = "initrd"
	PXEScript   = "boot.ipxe"            // iPXE menu (QEMU's NIC ROMs and ipxe.efi/undionly.kpxe run it)
	PXEGrubCfg  = "grub/grub.cfg"        // GRUB netboot config (grubnetx64.efi's prefix is /grub)
	PXELinuxCfg = "pxelinux.cfg/default" // pxelinux config
	PXEGrubEFI  = "grubnetx64.efi"       // UEFI network boot loader reading grub/grub.cfg
	PXEIPXEBIOS = "undionly.kpxe"
	PXEIPXEEFI  = "ipxe.efi"
)

// BuildPXE writes the PXE bundle for spec into dir (created if needed) and
// returns the total size of its files.
func BuildPXE(spec Spec, dir string) (int64, error) {
	if err := spec.check(); err != nil {
		return 0, err
	}
	tools := spec.Tools.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	copies := map[string]string{
		PXEKernel: spec.Kernel, PXEInitrd: spec.Initrd,
		PXEIPXEBIOS: tools.IPXEBIOS, PXEIPXEEFI: tools.IPXEEFI,
		PXEGrubEFI: tools.GrubNetEFI,
	}
	rel := bootPaths{kernel: PXEKernel, initrd: PXEInitrd}
	texts := map[string]string{
		PXEScript:   ipxeScript(spec, rel),
		PXELinuxCfg: syslinuxConfig(spec, rel),
		PXEGrubCfg:  grubConfig(spec, bootPaths{kernel: "/" + PXEKernel, initrd: "/" + PXEInitrd}),
	}
	var total int64
	for dst, src := range copies {
		p := filepath.Join(dir, dst)
		os.Remove(p)
		if err := fsutil.CopyFile(src, p, 0o644); err != nil {
			return 0, fmt.Errorf("pxe %s: %w", dst, err)
		}
	}
	for dst, text := range texts {
		if err := writeFile(filepath.Join(dir, dst), []byte(text)); err != nil {
			return 0, fmt.Errorf("pxe %s: %w", dst, err)
		}
	}
	if spec.NixCache != "" {
		dst := filepath.Join(dir, closure.CacheDir)
		if err := os.RemoveAll(dst); err != nil {
			return 0, err
		}
		if err := copyCache(spec.NixCache, dst); err != nil {
			return 0, fmt.Errorf("pxe %s: %w", closure.CacheDir, err)
		}
	}
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return err
	})
	return total, err
}
