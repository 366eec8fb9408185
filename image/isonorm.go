package image

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// ISO 9660 layout constants.
const (
	isoBlock  = 2048
	pvdSector = 16
)

// isoRW is what normalizeISO needs: an *os.File in practice.
type isoRW interface {
	io.ReaderAt
	io.WriterAt
}

// normalizeISO makes an ISO written by go-diskfs reproducible: it sets every
// volume descriptor date, directory record date and Rock Ridge TF time to t,
// uid/gid to 0, file modes to 0644 (directories 0755) and the link count of
// files to 1 (Rock Ridge PX), so nothing depends on the build time or on how
// the staging tree was made.
func normalizeISO(f isoRW, t time.Time) error {
	for sec := int64(pvdSector); sec < pvdSector+16; sec++ {
		vd := make([]byte, isoBlock)
		if _, err := f.ReadAt(vd, sec*isoBlock); err != nil {
			return fmt.Errorf("volume descriptor %d: %w", sec, err)
		}
		if string(vd[1:6]) != "CD001" {
			return fmt.Errorf("sector %d: not an ISO 9660 volume descriptor", sec)
		}
		if vd[0] == 255 {
			return nil
		}
		if vd[0] != 1 && vd[0] != 2 {
			continue
		}
		long := longDate(t)
		for _, off := range []int{813, 830, 864} {
			copy(vd[off:off+17], long)
		}
		copy(vd[847:864], "0000000000000000\x00")
		copy(vd[156+18:156+25], shortDate(t)) // the root directory record
		if vd[0] == 1 {
			padIdentifiers(vd)
		}
		if _, err := f.WriteAt(vd, sec*isoBlock); err != nil {
			return err
		}
		root := vd[156 : 156+34]
		if err := normalizeDir(f, t, binary.LittleEndian.Uint32(root[2:]), binary.LittleEndian.Uint32(root[10:]), 0); err != nil {
			return err
		}
	}
	return fmt.Errorf("no volume descriptor set terminator")
}

// normalizeDir rewrites the records of the directory at block loc (size bytes)
// and recurses into subdirectories.
func normalizeDir(f isoRW, t time.Time, loc, size uint32, depth int) error {
	if depth > 64 || size > 64*mib {
		return fmt.Errorf("directory at block %d: too deep or too large", loc)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, int64(loc)*isoBlock); err != nil {
		return fmt.Errorf("directory at block %d: %w", loc, err)
	}
	var subdirs [][2]uint32
	for off := 0; off < len(buf); {
		n := int(buf[off])
		if n == 0 { // records do not cross blocks: skip to the next one
			off = (off/isoBlock + 1) * isoBlock
			continue
		}
		if n < 34 || off+n > len(buf) {
			return fmt.Errorf("directory at block %d: bad record at %d", loc, off)
		}
		rec := buf[off : off+n]
		copy(rec[18:25], shortDate(t))
		nameLen := int(rec[32])
		isDir := rec[25]&2 != 0
		dot := nameLen == 1 && rec[33] <= 1
		if isDir && !dot {
			subdirs = append(subdirs, [2]uint32{binary.LittleEndian.Uint32(rec[2:]), binary.LittleEndian.Uint32(rec[10:])})
		}
		su := 33 + nameLen
		if nameLen%2 == 0 {
			su++
		}
		if su < n {
			if err := normalizeSUSP(f, t, rec[su:], isDir, 0); err != nil {
				return err
			}
		}
		off += n
	}
	if _, err := f.WriteAt(buf, int64(loc)*isoBlock); err != nil {
		return err
	}
	for _, d := range subdirs {
		if err := normalizeDir(f, t, d[0], d[1], depth+1); err != nil {
			return err
		}
	}
	return nil
}

// normalizeSUSP rewrites Rock Ridge PX and TF entries in a system use area,
// following CE continuation areas.
func normalizeSUSP(f isoRW, t time.Time, su []byte, isDir bool, depth int) error {
	for len(su) >= 4 {
		sig, n := string(su[:2]), int(su[2])
		if n < 4 || n > len(su) {
			return nil
		}
		e := su[:n]
		switch {
		case sig == "PX" && n >= 36:
			mode := binary.LittleEndian.Uint32(e[4:])
			switch mode & 0o170000 {
			case 0o100000:
				putBoth32(e[4:12], 0o100644)
			case 0o040000:
				putBoth32(e[4:12], 0o040755)
			}
			if !isDir {
				putBoth32(e[12:20], 1)
			}
			putBoth32(e[20:28], 0)
			putBoth32(e[28:36], 0)
		case sig == "TF" && n >= 5:
			width := 7
			if e[4]&0x80 != 0 {
				width = 17
			}
			stamp := shortDate(t)
			if width == 17 {
				stamp = longDate(t)
			}
			for p := 5; p+width <= n; p += width {
				copy(e[p:p+width], stamp)
			}
		case sig == "CE" && n >= 28 && depth < 8:
			if err := normalizeCE(f, t, e, isDir, depth); err != nil {
				return err
			}
		case sig == "ST":
			return nil
		}
		su = su[n:]
	}
	return nil
}

// normalizeCE rewrites the continuation area a CE entry points at.
func normalizeCE(f isoRW, t time.Time, e []byte, isDir bool, depth int) error {
	block := binary.LittleEndian.Uint32(e[4:])
	off := binary.LittleEndian.Uint32(e[12:])
	n := binary.LittleEndian.Uint32(e[20:])
	if n > isoBlock {
		return fmt.Errorf("continuation area at block %d: %d bytes", block, n)
	}
	area := make([]byte, n)
	pos := int64(block)*isoBlock + int64(off)
	if _, err := f.ReadAt(area, pos); err != nil {
		return fmt.Errorf("continuation area at block %d: %w", block, err)
	}
	if err := normalizeSUSP(f, t, area, isDir, depth+1); err != nil {
		return err
	}
	_, err := f.WriteAt(area, pos)
	return err
}

// putBoth32 writes v as ISO 9660 both-endian (LE then BE).
func putBoth32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:4], v)
	binary.BigEndian.PutUint32(b[4:8], v)
}

// shortDate is the 7-byte directory record date, UTC.
func shortDate(t time.Time) []byte {
	t = t.UTC()
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// longDate is the 17-byte volume descriptor date, UTC.
func longDate(t time.Time) []byte {
	t = t.UTC()
	return append([]byte(t.Format("20060102150405")+"00"), 0)
}

// padIdentifiers replaces the NUL padding go-diskfs leaves in the primary
// volume descriptor's identifier fields with the spaces ISO 9660 requires.
func padIdentifiers(vd []byte) {
	for _, r := range [][2]int{{8, 72}, {190, 813}} {
		for i := r[0]; i < r[1]; i++ {
			if vd[i] == 0 {
				vd[i] = ' '
			}
		}
	}
}
