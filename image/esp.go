package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"sync"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
)

// fatFile is one file for a FAT image: copied from Src, or Data when Src is empty.
type fatFile struct {
	Dst  string // path inside the FAT, "/"-separated, no leading slash
	Src  string
	Data []byte
}

func (f fatFile) size() (int64, error) {
	if f.Src == "" {
		return int64(len(f.Data)), nil
	}
	fi, err := os.Stat(f.Src)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

const mib = 1 << 20

// minFATSize keeps FAT16 above its 4085-cluster minimum with room to spare.
const minFATSize = 8 * mib

// fatSize returns a FAT16 size (whole MiB) that holds files: their clusters
// (up to 4 KiB each at FAT16's sizes), directory clusters, the FATs, and slack.
func fatSize(files []fatFile) (int64, error) {
	var total int64
	for _, f := range files {
		n, err := f.size()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.Dst, err)
		}
		total += (n + 4095) / 4096 * 4096
	}
	total += int64(len(files)+8) * 4096 // directories
	total += total / 64                 // FATs and reserved sectors
	total += mib
	size := (total + mib - 1) / mib * mib
	return max(size, minFATSize), nil
}

// fatEnvMu serialises the SOURCE_DATE_EPOCH override below.
var fatEnvMu sync.Mutex

// writeFAT writes a FAT16 filesystem of size bytes at offset in w holding
// files. go-diskfs stamps directory entries with SOURCE_DATE_EPOCH (read from
// the environment) or the current time; writeFAT sets the variable to epoch
// for the duration, so the image is reproducible. serial is the volume serial.
func writeFAT(w *os.File, offset, size int64, label string, serial uint32, epoch int64, files []fatFile) error {
	epoch = fatEpoch(epoch)
	fatEnvMu.Lock()
	defer fatEnvMu.Unlock()
	old, had := os.LookupEnv("SOURCE_DATE_EPOCH")
	os.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(epoch, 10))
	defer func() {
		if had {
			os.Setenv("SOURCE_DATE_EPOCH", old)
		} else {
			os.Unsetenv("SOURCE_DATE_EPOCH")
		}
	}()
	fs, err := fat16.Create(file.New(w, false), size, offset, 512, label, true)
	if err != nil {
		return fmt.Errorf("create FAT: %w", err)
	}
	sorted := append([]fatFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Dst < sorted[j].Dst })
	made := map[string]bool{".": true, "/": true}
	for _, f := range sorted {
		if dir := path.Dir(f.Dst); !made[dir] {
			if err := fs.Mkdir("/" + dir); err != nil {
				return fmt.Errorf("FAT mkdir %s: %w", dir, err)
			}
			made[dir] = true
		}
		if err := copyIntoFAT(fs, f); err != nil {
			return fmt.Errorf("FAT file %s: %w", f.Dst, err)
		}
	}
	if err := freeCluster2(w, offset); err != nil {
		return err
	}
	return setFATSerial(w, offset, serial)
}

// freeCluster2 frees cluster 2, which go-diskfs v1.9.4 marks in use on
// FAT16 as if it held the root directory (FAT16 keeps the root in a fixed
// region), leaving a lost cluster fsck.fat complains about. go-diskfs never
// hands that cluster out, so nothing references it.
func freeCluster2(w *os.File, offset int64) error {
	bpb := make([]byte, 32)
	if _, err := w.ReadAt(bpb, offset); err != nil {
		return err
	}
	bps := int64(binary.LittleEndian.Uint16(bpb[11:]))
	reserved := int64(binary.LittleEndian.Uint16(bpb[14:]))
	fats := int64(bpb[16])
	fatSectors := int64(binary.LittleEndian.Uint16(bpb[22:]))
	if binary.LittleEndian.Uint16(bpb[17:]) == 0 || fatSectors == 0 {
		return fmt.Errorf("FAT: not FAT16 (fixed root directory expected)")
	}
	for i := int64(0); i < fats; i++ {
		pos := offset + (reserved+i*fatSectors)*bps + 2*2
		var e [2]byte
		if _, err := w.ReadAt(e[:], pos); err != nil {
			return err
		}
		if binary.LittleEndian.Uint16(e[:]) >= 0xfff8 {
			if _, err := w.WriteAt([]byte{0, 0}, pos); err != nil {
				return err
			}
		}
	}
	return nil
}

// fatEpoch clamps a timestamp to FAT's range, which starts in 1980.
func fatEpoch(epoch int64) int64 {
	const fat1980 = 315532800 // 1980-01-01T00:00:00Z
	return max(epoch, fat1980)
}

func copyIntoFAT(fs *fat16.FileSystem, f fatFile) error {
	out, err := fs.OpenFile("/"+f.Dst, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	defer out.Close()
	var in io.Reader = bytes.NewReader(f.Data)
	if f.Src != "" {
		src, err := os.Open(f.Src)
		if err != nil {
			return err
		}
		defer src.Close()
		in = src
	}
	_, err = io.Copy(out, in)
	return err
}

// setFATSerial writes the FAT12/16 volume serial (BPB offset 39).
func setFATSerial(w *os.File, offset int64, serial uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], serial)
	_, err := w.WriteAt(b[:], offset+39)
	return err
}

// espFiles are the files every ESP carries for a GRUB CD boot: GRUB as the
// removable-media loader and a fallback config that finds the ISO by its
// marker file and reads the menu from there.
func grubESPFiles(tools Tools, marker string) []fatFile {
	cfg := fmt.Sprintf("search --no-floppy --file --set=root %s\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n", marker)
	return []fatFile{
		{Dst: "EFI/BOOT/BOOTX64.EFI", Src: tools.GrubEFI},
		{Dst: "EFI/BOOT/grub.cfg", Data: []byte(cfg)},
	}
}
