package initramfs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/initramfs/kmod"
	"github.com/nixlos/nixlos/internal/imagepath"
)

// DefaultModules are the kernel modules the installer needs: disk and CD
// controllers, USB storage, filesystems, device-mapper, md RAID, the crypto
// dm-crypt and cryptsetup use, and common NICs. Dependencies come from
// modules.dep; names the kernel has built in are skipped.
var DefaultModules = []string{
	// virtio and block/SCSI/CD
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_rng", "virtio_console",
	"sd_mod", "sr_mod", "sg", "cdrom", "isofs", "ahci", "nvme", "loop",
	// PATA/IDE: QEMU's default CD drive (-cdrom) and older machines' CD drives
	"ata_piix",
	// USB storage and input
	"xhci_pci", "xhci_hcd", "ehci_pci", "ehci_hcd", "usb_storage", "uas", "usbhid", "hid_generic",
	// filesystems
	"ext4", "vfat", "nls_cp437", "nls_iso8859_1", "xfs", "btrfs", "f2fs", "efivarfs", "overlay", "squashfs",
	"crc32c_generic", "crc32c_intel",
	// device-mapper, LUKS and its crypto
	"dm_mod", "dm_crypt", "dm_thin_pool", "dm_snapshot", "dm_mirror", "dm_raid",
	"xts", "ecb", "cbc", "essiv", "aesni_intel", "algif_skcipher", "algif_hash",
	// md RAID
	"md_mod", "raid0", "raid1", "raid456", "raid10",
	// NICs
	"e1000", "e1000e", "igb", "igc", "r8169", "af_packet",
}

// DefaultBootModules are loaded at boot by the installer (listed in
// imagepath.BootModules): the disk, CD, USB and NIC drivers, so
// the installer sees the hardware. Everything else is loaded on demand by
// the kernel (request_module → /sbin/modprobe, kmod) or by the installer.
var DefaultBootModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_rng", "virtio_console",
	"ahci", "ata_piix", "nvme", "sd_mod", "sr_mod", "xhci_pci", "ehci_pci", "usb_storage", "uas", "usbhid", "hid_generic",
	"e1000", "e1000e", "igb", "igc", "r8169",
}

// modulesSegment holds Spec.Modules with their modules.dep closure, files
// as the kernel ships them, every modules.* index (so kmod's modprobe
// resolves names, aliases and softdeps) and the imagepath.BootModules list.
type modulesSegment struct{}

type modulesExtra struct {
	Modules []string `json:"modules"`
	Missing []string `json:"missing"`
}

func (modulesSegment) name() string { return "modules" }

func (modulesSegment) key(_ context.Context, b *builder, c cpio.Compression) (string, error) {
	s := b.spec
	return hashKey(formatVersion, "modules", string(c), strconv.FormatInt(s.SourceDateEpoch, 10),
		s.ModulesDir, strings.Join(s.Modules, ","), strings.Join(s.BootModules, ","),
		fileIdentity(filepath.Join(s.ModulesDir, "modules.dep"))), nil
}

func (modulesSegment) make(_ context.Context, b *builder, c cpio.Compression, dst string) ([]string, any, error) {
	s := b.spec
	idx, err := kmod.LoadModuleIndex(s.ModulesDir)
	if err != nil {
		return nil, nil, fmt.Errorf("initramfs modules: %w (set the kernel's modules directory)", err)
	}
	paths, missing := idx.Resolve(s.Modules)
	tr := cpio.NewTree()
	// Inside the image /lib may be the merged-/usr symlink the tools
	// segment makes; never replace it with a directory.
	libDir := "lib"
	if target, err := os.Readlink("/lib"); err == nil && strings.Trim(target, "/") == "usr/lib" {
		libDir = "usr/lib"
	}
	inImage := filepath.Join(libDir, "modules", filepath.Base(s.ModulesDir))
	var files []string
	for _, rel := range paths {
		src := filepath.Join(s.ModulesDir, rel)
		if err := tr.HostFile(filepath.Join(inImage, rel), src); err != nil {
			return nil, nil, fmt.Errorf("module %s: %w", rel, err)
		}
		files = append(files, src)
	}
	// Every index (text and kmod's .bin) so modprobe resolves names,
	// aliases and softdeps.
	idxFiles, _ := filepath.Glob(filepath.Join(s.ModulesDir, "modules.*"))
	for _, src := range idxFiles {
		if isFile(src) {
			if err := tr.HostFile(filepath.Join(inImage, filepath.Base(src)), src); err != nil {
				return nil, nil, err
			}
			files = append(files, src)
		}
	}
	tr.File(imagepath.BootModules, []byte(strings.Join(bootModules(paths, s.BootModules), "\n")+"\n"), 0o644)
	if err := writeSegment(tr, c, s.SourceDateEpoch, dst); err != nil {
		return nil, nil, err
	}
	return files, modulesExtra{Modules: paths, Missing: missing}, nil
}

func (modulesSegment) report(extra json.RawMessage, rep *Report) error {
	var ex modulesExtra
	if err := json.Unmarshal(extra, &ex); err != nil {
		return err
	}
	rep.Modules, rep.MissingMods = ex.Modules, ex.Missing
	return nil
}

// bootModules returns the names of boot that are in the image (paths).
func bootModules(paths, boot []string) []string {
	inImage := map[string]bool{}
	for _, p := range paths {
		inImage[kmod.ModuleName(p)] = true
	}
	var out []string
	for _, m := range boot {
		if inImage[kmod.ModuleName(m)] {
			out = append(out, kmod.ModuleName(m))
		}
	}
	return out
}
