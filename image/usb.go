package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/nixlos/nixlos/closure"
)

// Paths inside the USB image's ESP.
const (
	usbKernel      = "nixlos/vmlinuz"
	usbInitrd      = "nixlos/initrd.img"
	usbSyslinuxDir = "syslinux"
	usbESPStart    = 2048 // first sector of the ESP
	legacyBootable = 1 << 2
)

// BuildUSB writes the raw GPT disk image for spec to out and returns its
// size. One partition serves both firmwares: an ESP (FAT16) with
// systemd-boot as EFI/BOOT/BOOTX64.EFI, and syslinux installed into it with
// the GPT "legacy BIOS bootable" attribute and syslinux's gptmbr.bin as MBR
// code for BIOS. Kernel and initrd are stored once, shared by both loaders.
func BuildUSB(spec Spec, out string) (int64, error) {
	if err := spec.check(); err != nil {
		return 0, err
	}
	seed, err := spec.seed()
	if err != nil {
		return 0, err
	}
	files := usbESPFiles(spec)
	espSize, err := fatSize(files)
	if err != nil {
		return 0, err
	}
	var cache usbCache
	if spec.NixCache != "" {
		tmp, err := os.CreateTemp(filepath.Dir(out), ".nixlos-cache-*.iso")
		if err != nil {
			return 0, err
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		cache.img = tmp.Name()
		if cache.size, err = buildCacheISO(spec.NixCache, cache.img, spec.Epoch); err != nil {
			return 0, fmt.Errorf("usb cache partition: %w", err)
		}
	}
	total := int64(usbESPStart)*512 + espSize + cache.size + mib
	if err := writeUSB(spec, seed, out, total, espSize, files, cache); err != nil {
		os.Remove(out)
		return 0, err
	}
	return total, nil
}

// usbCache is the USB image's cache partition: an ISO 9660 image file of
// size bytes (whole MiB), or none when img is "".
type usbCache struct {
	img  string
	size int64
}

// usbESPFiles lists the ESP's contents.
func usbESPFiles(spec Spec) []fatFile {
	tools := spec.Tools.withDefaults()
	paths := bootPaths{kernel: "/" + usbKernel, initrd: "/" + usbInitrd}
	files := []fatFile{
		{Dst: usbKernel, Src: spec.Kernel},
		{Dst: usbInitrd, Src: spec.Initrd},
		{Dst: "EFI/BOOT/BOOTX64.EFI", Src: tools.SystemdBoot},
		{Dst: usbSyslinuxDir + "/syslinux.cfg", Data: []byte(syslinuxConfig(spec, paths))},
	}
	for _, m := range syslinuxModules[1:] { // ldlinux.c32 comes from syslinux --install
		files = append(files, fatFile{Dst: usbSyslinuxDir + "/" + m, Src: filepath.Join(tools.SyslinuxMod, m)})
	}
	for dst, text := range systemdBootFiles(spec, paths) {
		files = append(files, fatFile{Dst: dst, Data: []byte(text)})
	}
	return files
}

func writeUSB(spec Spec, seed [32]byte, out string, total, espSize int64, files []fatFile, cache usbCache) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(total); err != nil {
		return err
	}
	table := &gpt.Table{
		LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		GUID: deriveGUID(seed, "usb-disk"),
		Partitions: []*gpt.Partition{{
			Index: 1, Start: usbESPStart, End: usbESPStart + uint64(espSize/512) - 1,
			Type: gpt.EFISystemPartition, Name: "NIXLOS-ESP", GUID: deriveGUID(seed, "usb-esp"),
			Attributes: legacyBootable,
		}},
	}
	cacheStart := uint64(usbESPStart) + uint64(espSize/512)
	if cache.img != "" {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: 2, Start: cacheStart, End: cacheStart + uint64(cache.size/512) - 1,
			Type: linuxDataGUID, Name: closure.CachePartName, GUID: deriveGUID(seed, "usb-cache"),
		})
	}
	if err := table.Write(f, total); err != nil {
		return fmt.Errorf("usb GPT: %w", err)
	}
	if err := writeFAT(f, usbESPStart*512, espSize, "NIXLOS", derive32(seed, "usb-esp-serial"), spec.Epoch, files); err != nil {
		return fmt.Errorf("usb ESP: %w", err)
	}
	if cache.img != "" {
		if err := writeCachePartition(f, int64(cacheStart)*512, cache.img); err != nil {
			return fmt.Errorf("usb cache partition: %w", err)
		}
	}
	if err := writeGPTMBRCode(f, spec.Tools.withDefaults().GPTMBRBin); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return installSyslinux(spec, out, usbESPStart*512)
}

// writeGPTMBRCode puts syslinux's gptmbr.bin (boot code that chains to the
// partition with the legacy BIOS bootable attribute) before the protective
// MBR's partition table.
func writeGPTMBRCode(f *os.File, path string) error {
	code, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("gptmbr.bin (Debian package syslinux-common): %w", err)
	}
	if len(code) > 440 {
		return fmt.Errorf("%s: %d bytes, want at most 440", path, len(code))
	}
	_, err = f.WriteAt(code, 0)
	return err
}

// installSyslinux runs the mtools syslinux installer on the ESP at offset
// (no mount, no root). SOURCE_DATE_EPOCH makes mtools' timestamps stable.
func installSyslinux(spec Spec, img string, offset int64) error {
	tools := spec.Tools.withDefaults()
	cmd := exec.Command(tools.SyslinuxCmd, "--install", "--offset", strconv.FormatInt(offset, 10), "--directory", "/"+usbSyslinuxDir, img)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(fatEpoch(spec.Epoch), 10), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("syslinux --install (Debian package syslinux): %w: %s", err, out)
	}
	return nil
}
