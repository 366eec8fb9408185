package cpio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Entry is one record of an initramfs read back.
type Entry struct {
	Name  string
	Mode  uint32 // type and permission bits (cpio mode)
	UID   uint32
	GID   uint32
	MTime int64
	Size  int64
	// Segment is the index of the cpio archive (0-based) the entry came from.
	Segment int
}

// Record types (cpio mode & S_IFMT).
const (
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
	ModeType    = 0o170000
)

// DetectCompression names the compression of data's first bytes.
func DetectCompression(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return XZ
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, lz4LegacyMagic):
		return LZ4
	case bytes.HasPrefix(head, []byte("070701")), bytes.HasPrefix(head, []byte("070702")):
		return None
	}
	return ""
}

// decompressAll returns a reader of the concatenated decompressed segments
// of r, each segment decoded with its own compression. Uncompressed cpio
// data runs to the end of r, as nixlos writes it (alone, or never before
// a compressed segment).
func decompressAll(r io.Reader) (io.Reader, func(), error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	var parts []io.Reader
	for off := 0; off < len(b); {
		if b[off] == 0 { // padding between segments
			off++
			continue
		}
		rest := b[off:]
		if DetectCompression(rest) == None {
			parts = append(parts, bytes.NewReader(rest))
			break
		}
		data, n, _, err := DecodeSegment(rest, maxSegment)
		if err != nil {
			if off == 0 {
				return nil, nil, fmt.Errorf("not an initramfs: %w", err)
			}
			return nil, nil, fmt.Errorf("segment at %d: %w", off, err)
		}
		parts = append(parts, bytes.NewReader(data))
		off += n
	}
	if len(parts) == 0 {
		return nil, nil, errors.New("not an initramfs: empty")
	}
	return io.MultiReader(parts...), func() {}, nil
}

// maxSegment caps what one segment may decompress to.
const maxSegment = 2 << 30

// Walk reads an initramfs (concatenated newc cpio archives, compressed or
// not) and calls fn for every record but the trailers, in order, with a
// reader of its contents (file data or symlink target). Later entries of
// the same name replace earlier ones when the kernel unpacks it.
func Walk(r io.Reader, fn func(e Entry, data io.Reader) error) error {
	dr, done, err := decompressAll(r)
	if err != nil {
		return err
	}
	defer done()
	br := bufio.NewReaderSize(dr, 1<<16)
	var off int64
	seg := 0
	skip := func(n int64) error {
		m, err := io.CopyN(io.Discard, br, n)
		off += m
		return err
	}
	for {
		// Zero padding may separate archives.
		b, err := br.Peek(1)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if b[0] == 0 {
			if err := skip(1); err != nil {
				return err
			}
			continue
		}
		var hdr [110]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("cpio header at %d: %w", off, err)
		}
		off += 110
		if m := string(hdr[:6]); m != "070701" && m != "070702" {
			return fmt.Errorf("cpio header at %d: bad magic %q", off-110, m)
		}
		field := func(i int) (uint64, error) {
			return strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		}
		var f [13]uint64
		for i := range f {
			if f[i], err = field(i); err != nil {
				return fmt.Errorf("cpio header at %d: field %d: %w", off-110, i, err)
			}
		}
		mode, uid, gid, mtime, size, namesize := f[1], f[2], f[3], f[5], f[6], f[11]
		if namesize == 0 || namesize > 4096 {
			return fmt.Errorf("cpio header at %d: bad name size %d", off-110, namesize)
		}
		name := make([]byte, namesize)
		if _, err := io.ReadFull(br, name); err != nil {
			return err
		}
		off += int64(namesize)
		n := string(bytes.TrimRight(name, "\x00"))
		if err := skip((4 - off%4) % 4); err != nil {
			if n == "TRAILER!!!" && err == io.EOF {
				return nil
			}
			return err
		}
		if n == "TRAILER!!!" {
			seg++
			continue
		}
		lr := &io.LimitedReader{R: br, N: int64(size)}
		e := Entry{Name: n, Mode: uint32(mode), UID: uint32(uid), GID: uint32(gid), MTime: int64(mtime), Size: int64(size), Segment: seg}
		if err := fn(e, lr); err != nil {
			return err
		}
		off += int64(size) - lr.N
		if err := skip(lr.N); err != nil {
			return fmt.Errorf("cpio %s: %w", n, err)
		}
		if err := skip((4 - off%4) % 4); err != nil {
			return err
		}
	}
}
