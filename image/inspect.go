package image

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/nixlos/nixlos/blockdev"
	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/internal/imagepath"
)

// Boot modes Inspect reports.
const (
	ModeBIOSCD  = "bios-cd"
	ModeUEFICD  = "uefi-cd"
	ModeBIOSUSB = "bios-usb"
	ModeUEFIUSB = "uefi-usb"
	ModePXEBIOS = "pxe-bios"
	ModePXEUEFI = "pxe-uefi"
)

// ErrNotImage is returned (wrapped) by Inspect for a path that is none of
// the outputs: not an ISO, not a GPT disk image, not a PXE bundle directory.
var ErrNotImage = errors.New("not a nixlos image (want nixlos.iso, nixlos-usb.img or a pxe/ directory)")

// Info is what Inspect reads back from an output. It never holds the age key.
type Info struct {
	Path          string          `json:"path"`
	Kind          Format          `json:"kind"`
	Size          int64           `json:"size"`
	Label         string          `json:"label,omitempty"`
	KernelVersion string          `json:"kernelVersion"`
	KernelBanner  string          `json:"kernelBanner"`
	InitrdSize    int64           `json:"initrdSize"`
	Archives      int             `json:"initrdArchives"`
	BootModes     []string        `json:"bootModes"`
	Hosts         []string        `json:"hosts"`
	Manifest      json.RawMessage `json:"manifest"`
	AgeKey        bool            `json:"ageKeyEmbedded"`
	// Cache and Closures describe the binary cache the medium carries
	// (mkiso build --closure): its key and place, and per host the
	// closure's paths and sizes read from the cache's narinfo files.
	Cache    *CacheInfo                 `json:"cache,omitempty"`
	Closures map[string]closure.Summary `json:"closures,omitempty"`
	// Inputs are the flake's inputs the manifest says the medium's cache
	// carries, each with whether the cache holds it.
	Inputs []InputInfo `json:"inputs,omitempty"`
}

// Inspect reads an ISO, USB image or PXE directory written by Build.
func Inspect(path string) (Info, error) {
	info := Info{Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return info, err
	}
	info.Size = fi.Size()
	var kernel, initrd []byte
	switch {
	case fi.IsDir():
		info.Kind = FormatPXE
		kernel, initrd, err = inspectPXE(path, &info)
	case fi.Mode().IsRegular():
		kernel, initrd, err = inspectFile(path, &info)
	default:
		err = ErrNotImage
	}
	if err != nil {
		return info, err
	}
	if err := fillFromBoot(&info, kernel, initrd); err != nil {
		return info, err
	}
	fsys, where, done := cacheFS(path, info.Kind)
	defer done()
	if err := fillClosures(&info, fsys, where); err != nil {
		return info, err
	}
	return info, fillInputs(&info, fsys, where)
}

// cacheFS opens the binary cache of the medium at path (nil when absent)
// and says where it is.
func cacheFS(path string, kind Format) (fs.FS, string, func()) {
	if kind == FormatPXE {
		dir := filepath.Join(path, closure.CacheDir)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, closure.CacheDir + "/ (missing)", func() {}
		}
		return os.DirFS(dir), closure.CacheDir + "/", func() {}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", func() {}
	}
	done := func() { f.Close() }
	if kind == FormatUSB {
		table, err := gpt.Read(f, 512, 512)
		if err != nil {
			return nil, "", done
		}
		fsys, where := usbCacheFS(f, table)
		return fsys, where, done
	}
	where := "/" + closure.CacheDir
	fsys, err := newISOFS(f, closure.CacheDir)
	if err != nil {
		return nil, where + " (missing)", done
	}
	return fsys, where, done
}

// fillFromBoot sets the kernel and initrd facts.
func fillFromBoot(info *Info, kernel, initrd []byte) error {
	rel, banner, err := KernelVersion(byteReaderAt(kernel))
	if err != nil {
		return err
	}
	info.KernelVersion, info.KernelBanner, info.InitrdSize = rel, banner, int64(len(initrd))
	c, err := ReadInitrd(initrd)
	if err != nil {
		return err
	}
	info.Archives, info.AgeKey = c.Archives, c.AgeKey
	info.Hosts = []string{}
	if c.Manifest == nil {
		return nil
	}
	var m struct {
		Hosts map[string]json.RawMessage `json:"hosts"`
	}
	if err := json.Unmarshal(c.Manifest, &m); err != nil {
		return fmt.Errorf("%s in the initrd: %w", imagepath.Manifest, err)
	}
	info.Manifest = c.Manifest
	for h := range m.Hosts {
		info.Hosts = append(info.Hosts, h)
	}
	sort.Strings(info.Hosts)
	return nil
}

// inspectFile tells an ISO from a GPT disk image and reads either.
func inspectFile(path string, info *Info) (kernel, initrd []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if _, ok := blockdev.ISOVolumeAt(f); ok {
		info.Kind = FormatISO
		return inspectISO(f, info)
	}
	magic := make([]byte, 8)
	if _, err := f.ReadAt(magic, 512); err == nil && string(magic) == "EFI PART" {
		info.Kind = FormatUSB
		return inspectUSB(f, info)
	}
	return nil, nil, ErrNotImage
}

func inspectISO(f *os.File, info *Info) (kernel, initrd []byte, err error) {
	vol, err := readVolume(f)
	if err != nil {
		return nil, nil, err
	}
	info.Label = vol.Label
	info.BootModes = isoBootModes(f, vol)
	var out [2][]byte
	for i, p := range []string{isoKernel, isoInitrd} {
		e, err := isoLookup(f, vol.Root, p)
		if err != nil {
			return nil, nil, err
		}
		out[i] = make([]byte, e.Size)
		if _, err := f.ReadAt(out[i], int64(e.LBA)*isoBlock); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return out[0], out[1], nil
}

// isoBootModes reports the El Torito entries and the isohybrid MBR.
func isoBootModes(f *os.File, vol isoVolume) []string {
	modes := []string{}
	entries, err := parseCatalog(vol.Catalog)
	if err != nil {
		return modes
	}
	var biosLBA uint32
	hasBIOS, hasEFI := false, false
	for _, e := range entries {
		switch e.Platform {
		case 0:
			hasBIOS, biosLBA = true, e.LBA
		case 0xef:
			hasEFI = true
		}
	}
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	hasMBR := mbr[510] == 0x55 && mbr[511] == 0xaa
	if hasBIOS {
		modes = append(modes, ModeBIOSCD)
	}
	if hasEFI {
		modes = append(modes, ModeUEFICD)
	}
	if hasMBR && hasBIOS && binary.LittleEndian.Uint32(mbr[432:]) == biosLBA*4 {
		modes = append(modes, ModeBIOSUSB)
	}
	if hasMBR && hasEFI && mbrHasType(mbr, 0xef) {
		modes = append(modes, ModeUEFIUSB)
	}
	return modes
}

func mbrHasType(mbr []byte, typ byte) bool {
	for i := 0; i < 4; i++ {
		if mbr[446+16*i+4] == typ {
			return true
		}
	}
	return false
}

func inspectUSB(f *os.File, info *Info) (kernel, initrd []byte, err error) {
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		return nil, nil, fmt.Errorf("GPT: %w", err)
	}
	var esp *gpt.Partition
	for _, p := range table.Partitions {
		if p.Type == gpt.EFISystemPartition {
			esp = p
			break
		}
	}
	if esp == nil {
		return nil, nil, fmt.Errorf("%w: GPT without an EFI system partition", ErrNotImage)
	}
	fsys, err := fat16.Read(file.New(f, true), int64(esp.End-esp.Start+1)*512, int64(esp.Start)*512, 512)
	if err != nil {
		return nil, nil, fmt.Errorf("ESP: %w", err)
	}
	info.BootModes = []string{}
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if _, err := fsys.Stat(usbSyslinuxDir + "/ldlinux.sys"); err == nil && esp.Attributes&legacyBootable != 0 && mbr[0] != 0 {
		info.BootModes = append(info.BootModes, ModeBIOSUSB)
	}
	if _, err := fsys.Stat("EFI/BOOT/BOOTX64.EFI"); err == nil {
		info.BootModes = append(info.BootModes, ModeUEFIUSB)
	}
	return readPair(fsys, "/"+usbKernel, "/"+usbInitrd)
}

// readPair reads the kernel and initrd from a filesystem.
func readPair(fsys filesystem.FileSystem, kernel, initrd string) ([]byte, []byte, error) {
	var out [2][]byte
	for i, p := range []string{kernel, initrd} {
		fh, err := fsys.OpenFile(p, os.O_RDONLY)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		out[i], err = io.ReadAll(fh)
		fh.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return out[0], out[1], nil
}

func inspectPXE(dir string, info *Info) (kernel, initrd []byte, err error) {
	kernel, err = os.ReadFile(filepath.Join(dir, PXEKernel))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	initrd, err = os.ReadFile(filepath.Join(dir, PXEInitrd))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	exists := func(names ...string) bool {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				return false
			}
		}
		return true
	}
	info.BootModes = []string{}
	if exists(PXEScript) || exists(PXELinuxCfg) {
		info.BootModes = append(info.BootModes, ModePXEBIOS)
	}
	if exists(PXEScript, PXEIPXEEFI) || exists(PXEGrubCfg, PXEGrubEFI) {
		info.BootModes = append(info.BootModes, ModePXEUEFI)
	}
	info.Size = int64(len(kernel) + len(initrd))
	return kernel, initrd, nil
}

type byteReaderAt []byte

func (b byteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
