package image

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
)

// isoVolume is what the primary volume descriptor and El Torito say.
type isoVolume struct {
	Label   string
	Blocks  uint32 // volume size in 2048-byte blocks
	Catalog []byte // El Torito boot catalog (one block), nil when absent
	Root    extent // root directory
}

// extent is a run of 2048-byte blocks: a file or a directory.
type extent struct {
	LBA  uint32
	Size uint32
}

// BootEntry is one El Torito boot catalog entry.
type BootEntry struct {
	Platform byte   // 0 BIOS, 0xEF EFI
	LBA      uint32 // 2048-byte block of the boot image
	Sectors  uint16 // load size in 512-byte sectors (0: up to the firmware)
}

// readVolume reads the volume descriptors of an ISO 9660 image.
func readVolume(r io.ReaderAt) (isoVolume, error) {
	var v isoVolume
	found := false
	for sec := int64(pvdSector); sec < pvdSector+32; sec++ {
		vd := make([]byte, isoBlock)
		if _, err := r.ReadAt(vd, sec*isoBlock); err != nil {
			return v, fmt.Errorf("not an ISO 9660 image: %w", err)
		}
		if string(vd[1:6]) != "CD001" {
			return v, fmt.Errorf("not an ISO 9660 image (no CD001 at sector %d)", sec)
		}
		switch vd[0] {
		case 0:
			if strings.HasPrefix(string(vd[7:39]), "EL TORITO SPECIFICATION") {
				cat := make([]byte, isoBlock)
				lba := binary.LittleEndian.Uint32(vd[71:])
				if _, err := r.ReadAt(cat, int64(lba)*isoBlock); err != nil {
					return v, fmt.Errorf("El Torito catalog at block %d: %w", lba, err)
				}
				v.Catalog = cat
			}
		case 1:
			v.Label = strings.TrimRight(string(vd[40:72]), " \x00")
			v.Blocks = binary.LittleEndian.Uint32(vd[80:])
			v.Root = extent{binary.LittleEndian.Uint32(vd[158:]), binary.LittleEndian.Uint32(vd[166:])}
			found = true
		case 255:
			if !found {
				return v, fmt.Errorf("ISO 9660 image without a primary volume descriptor")
			}
			return v, nil
		}
	}
	return v, fmt.Errorf("ISO 9660 volume descriptor set not terminated")
}

// parseCatalog lists the bootable entries of an El Torito boot catalog.
func parseCatalog(cat []byte) ([]BootEntry, error) {
	if len(cat) < 64 || cat[0] != 1 || cat[30] != 0x55 || cat[31] != 0xaa {
		return nil, fmt.Errorf("El Torito catalog: bad validation entry")
	}
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	if sum != 0 {
		return nil, fmt.Errorf("El Torito catalog: bad checksum")
	}
	entry := func(e []byte, platform byte) BootEntry {
		return BootEntry{Platform: platform, Sectors: binary.LittleEndian.Uint16(e[6:]), LBA: binary.LittleEndian.Uint32(e[8:])}
	}
	var out []BootEntry
	if cat[32] == 0x88 {
		out = append(out, entry(cat[32:64], cat[1]))
	}
	for off := 64; off+32 <= len(cat); {
		h := cat[off : off+32]
		if h[0] != 0x90 && h[0] != 0x91 {
			break
		}
		n := int(binary.LittleEndian.Uint16(h[2:]))
		off += 32
		for i := 0; i < n && off+32 <= len(cat); i++ {
			if cat[off] == 0x88 {
				out = append(out, entry(cat[off:off+32], h[1]))
			}
			off += 32
		}
		if h[0] == 0x91 {
			break
		}
	}
	return out, nil
}

// bootImages returns the BIOS and EFI entries of a catalog.
func bootImages(cat []byte) (bios, efi BootEntry, err error) {
	entries, err := parseCatalog(cat)
	if err != nil {
		return bios, efi, err
	}
	var hasBIOS, hasEFI bool
	for _, e := range entries {
		switch {
		case e.Platform == 0 && !hasBIOS:
			bios, hasBIOS = e, true
		case e.Platform == 0xef && !hasEFI:
			efi, hasEFI = e, true
		}
	}
	if !hasBIOS || !hasEFI {
		return bios, efi, fmt.Errorf("El Torito catalog needs a BIOS and an EFI entry (have BIOS %v, EFI %v)", hasBIOS, hasEFI)
	}
	return bios, efi, nil
}

// efiImageBytes returns the size of the FAT image of an EFI boot entry,
// read from its boot sector (the catalog's sector count may be 0 or capped).
func efiImageBytes(r io.ReaderAt, e BootEntry) (int64, error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, int64(e.LBA)*isoBlock); err != nil {
		return 0, fmt.Errorf("EFI boot image: %w", err)
	}
	return fatBytes(bs)
}

// fatBytes returns a FAT filesystem's size from its boot sector.
func fatBytes(bs []byte) (int64, error) {
	if len(bs) < 512 || bs[510] != 0x55 || bs[511] != 0xaa {
		return 0, fmt.Errorf("not a FAT boot sector")
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	sectors := int64(binary.LittleEndian.Uint16(bs[19:]))
	if sectors == 0 {
		sectors = int64(binary.LittleEndian.Uint32(bs[32:]))
	}
	if bps < 512 || bps > 4096 || sectors == 0 {
		return 0, fmt.Errorf("FAT boot sector: bad geometry")
	}
	return bps * sectors, nil
}

func unixUTC(epoch int64) time.Time { return time.Unix(epoch, 0).UTC() }

// isoLookup finds a file by path ("nixlos/vmlinuz") under the root
// directory, matching Rock Ridge names, or ISO 9660 names without ";1".
func isoLookup(r io.ReaderAt, root extent, p string) (extent, error) {
	cur := root
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i, name := range parts {
		next, isDir, err := isoDirFind(r, cur, name)
		if err != nil {
			return extent{}, fmt.Errorf("%s: %w", p, err)
		}
		if (i < len(parts)-1) != isDir {
			return extent{}, fmt.Errorf("%s: %s is not a %s", p, name, map[bool]string{true: "directory", false: "file"}[i < len(parts)-1])
		}
		cur = next
	}
	return cur, nil
}

// isoDirFind looks name up in the directory at d.
func isoDirFind(r io.ReaderAt, d extent, name string) (extent, bool, error) {
	if d.Size > 16*mib {
		return extent{}, false, fmt.Errorf("directory at block %d too large", d.LBA)
	}
	buf := make([]byte, d.Size)
	if _, err := r.ReadAt(buf, int64(d.LBA)*isoBlock); err != nil {
		return extent{}, false, err
	}
	for off := 0; off < len(buf); {
		n := int(buf[off])
		if n == 0 {
			off = (off/isoBlock + 1) * isoBlock
			continue
		}
		if n < 34 || off+n > len(buf) || 33+int(buf[off+32]) > n {
			return extent{}, false, fmt.Errorf("directory at block %d: bad record", d.LBA)
		}
		rec := buf[off : off+n]
		if recordName(rec) == name {
			return extent{binary.LittleEndian.Uint32(rec[2:]), binary.LittleEndian.Uint32(rec[10:])}, rec[25]&2 != 0, nil
		}
		off += n
	}
	return extent{}, false, fmt.Errorf("%s not found", name)
}

// recordName is a directory record's Rock Ridge NM name (single entry, in
// the record itself) or its ISO 9660 name, lowercased, without version.
func recordName(rec []byte) string {
	nameLen := int(rec[32])
	su := 33 + nameLen
	if nameLen%2 == 0 {
		su++
	}
	for su+4 <= len(rec) {
		sig, n := string(rec[su:su+2]), int(rec[su+2])
		if n < 4 || su+n > len(rec) {
			break
		}
		if sig == "NM" && n >= 5 && rec[su+4]&^1 == 0 {
			return string(rec[su+5 : su+n])
		}
		su += n
	}
	iso := string(rec[33 : 33+nameLen])
	if i := strings.IndexByte(iso, ';'); i >= 0 {
		iso = iso[:i]
	}
	return strings.ToLower(strings.TrimSuffix(iso, "."))
}
