package image

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// Paths inside the ISO.
const (
	isoKernel  = "nixlos/vmlinuz"
	isoInitrd  = "nixlos/initrd.img"
	isoESP     = "boot/efiboot.img"
	isoBootBin = "isolinux/isolinux.bin"
	isoCatalog = "isolinux/boot.cat"
)

// BuildISO writes the hybrid ISO for spec to out and returns its size.
func BuildISO(spec Spec, out string) (int64, error) {
	if err := spec.check(); err != nil {
		return 0, err
	}
	seed, err := spec.seed()
	if err != nil {
		return 0, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(out), ".nixlos-iso-")
	if err != nil {
		return 0, fmt.Errorf("iso stage: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := stageISO(spec, seed, stage); err != nil {
		return 0, fmt.Errorf("iso stage: %w", err)
	}
	return assembleISO(stage, out, spec.label(), seed, spec.Epoch, spec.Tools.withDefaults().IsohdpfxBin)
}

// stageISO fills dir with the ISO tree: kernel, initrd, isolinux with its
// menu, GRUB's menu, and the ESP image (boot/efiboot.img).
func stageISO(spec Spec, seed [32]byte, dir string) error {
	tools := spec.Tools.withDefaults()
	paths := bootPaths{kernel: "/" + isoKernel, initrd: "/" + isoInitrd}
	marker := "/nixlos/" + hex.EncodeToString(seed[:6]) + ".id"
	files := map[string]string{ // destination -> source
		isoKernel: spec.Kernel, isoInitrd: spec.Initrd, isoBootBin: tools.IsolinuxBin,
	}
	for _, m := range syslinuxModules {
		files["isolinux/"+m] = filepath.Join(tools.SyslinuxMod, m)
	}
	for dst, src := range files {
		if err := linkOrCopy(src, filepath.Join(dir, dst)); err != nil {
			return err
		}
	}
	texts := map[string]string{
		"isolinux/isolinux.cfg": syslinuxConfig(spec, paths),
		"boot/grub/grub.cfg":    grubConfig(spec, paths),
		".disk/info":            "nixlos installer\n",
		marker[1:]:              "nixlos installer medium\n",
	}
	for dst, text := range texts {
		if err := writeFile(filepath.Join(dir, dst), []byte(text)); err != nil {
			return err
		}
	}
	if spec.NixCache != "" {
		if err := stageCache(spec.NixCache, filepath.Join(dir, closure.CacheDir)); err != nil {
			return err
		}
	}
	return writeESPImage(filepath.Join(dir, isoESP), spec, seed, grubESPFiles(tools, marker))
}

// writeESPImage writes a standalone FAT image holding files.
func writeESPImage(path string, spec Spec, seed [32]byte, files []fatFile) error {
	size, err := fatSize(files)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if err := writeFAT(f, 0, size, "NIXLOS-ESP", derive32(seed, "esp-serial"), spec.Epoch, files); err != nil {
		return fmt.Errorf("ESP image: %w", err)
	}
	return f.Close()
}

// assembleISO turns a staged tree into the hybrid ISO at out. go-diskfs
// consumes (deletes) the stage directory.
func assembleISO(stage, out, label string, seed [32]byte, epoch int64, mbrCode string) (int64, error) {
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, isoBlock, stage)
	if err != nil {
		return 0, fmt.Errorf("iso create: %w", err)
	}
	bios := &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation, BootFile: "/" + isoBootBin, BootTable: true}
	bios.SetLoadSize(4)
	efi := &iso9660.ElToritoEntry{Platform: iso9660.EFI, Emulation: iso9660.NoEmulation, BootFile: "/" + isoESP}
	err = fsys.Finalize(iso9660.FinalizeOptions{
		RockRidge: true, Joliet: false, VolumeIdentifier: label,
		ElTorito: &iso9660.ElTorito{BootCatalog: "/" + isoCatalog, Entries: []*iso9660.ElToritoEntry{bios, efi}},
	})
	if err != nil {
		return 0, fmt.Errorf("iso finalize: %w", err)
	}
	size, err := hybridize(f, seed, epoch, mbrCode)
	if err != nil {
		return 0, err
	}
	return size, f.Close()
}

// hybridize trims the finalized ISO to its volume size padded to
// HybridAlign, normalizes timestamps, and writes the isohybrid MBR.
func hybridize(f *os.File, seed [32]byte, epoch int64, mbrCode string) (int64, error) {
	vol, err := readVolume(f)
	if err != nil {
		return 0, err
	}
	size := HybridSize(int64(vol.Blocks) * isoBlock)
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	if err := normalizeISO(f, unixUTC(epoch)); err != nil {
		return 0, fmt.Errorf("iso normalize: %w", err)
	}
	bios, efi, err := bootImages(vol.Catalog)
	if err != nil {
		return 0, err
	}
	espBytes, err := efiImageBytes(f, efi)
	if err != nil {
		return 0, err
	}
	code, err := os.ReadFile(mbrCode)
	if err != nil {
		return 0, fmt.Errorf("isohybrid MBR code (Debian package isolinux): %w", err)
	}
	mbr, err := Hybrid{Code: code, BootLBA: bios.LBA, ImageBytes: size, ESPLBA: efi.LBA, ESPBytes: espBytes, DiskID: derive32(seed, "mbr-id")}.MBR()
	if err != nil {
		return 0, err
	}
	_, err = f.WriteAt(mbr[:], 0)
	return size, err
}

// linkOrCopy hard-links src to dst (same filesystem) or copies it.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return fsutil.CopyFile(src, dst, 0o644)
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
