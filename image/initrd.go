package image

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// Paths inside the installer initrd that Inspect looks at.
const (
	ManifestPath = "etc/nixlos/manifest.json"
	AgeKeyPath   = "etc/nixlos/age.key"
)

// maxInitrdEntry caps the size of an entry InitrdContents keeps in memory.
const maxInitrdEntry = 16 << 20

// InitrdContents is what an initrd says about the installer. The age key
// itself is never read into it: only whether it is there and its mode.
type InitrdContents struct {
	Archives   int    // cpio archives found (compressed or not)
	Manifest   []byte // ManifestPath, nil when absent
	AgeKey     bool   // AgeKeyPath present (the last archive that names it wins)
	AgeKeyMode uint32 // its permission bits
}

// ReadInitrd reads an initrd made of one or more concatenated cpio (newc)
// archives, each plain or compressed with gzip, xz or zstd, as the kernel
// unpacks it: later entries override earlier ones.
func ReadInitrd(b []byte) (InitrdContents, error) {
	var c InitrdContents
	err := walkInitrd(b, &c, 0)
	return c, err
}

func walkInitrd(b []byte, c *InitrdContents, depth int) error {
	if depth > 4 {
		return fmt.Errorf("initrd: compressed archives nested too deep")
	}
	for off := 0; off < len(b); {
		if b[off] == 0 { // padding between archives
			off++
			continue
		}
		rest := b[off:]
		var n int
		var err error
		switch {
		case bytes.HasPrefix(rest, []byte("070701")), bytes.HasPrefix(rest, []byte("070702")):
			n, err = readNewc(rest, c)
			c.Archives++
		case bytes.HasPrefix(rest, []byte{0x1f, 0x8b}):
			n, err = decompressed(rest, c, depth, gunzip)
		case bytes.HasPrefix(rest, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			n, err = decompressed(rest, c, depth, unzstd)
		case bytes.HasPrefix(rest, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
			n, err = decompressed(rest, c, depth, unxz)
		default:
			return fmt.Errorf("initrd offset %d: not a cpio archive or a gzip/xz/zstd stream (bytes % x)", off, rest[:min(len(rest), 6)])
		}
		if err != nil {
			return fmt.Errorf("initrd offset %d: %w", off, err)
		}
		off += n
	}
	return nil
}

// decompressed unpacks one compressed segment with fn (which returns the
// data and the compressed length) and walks what it holds.
func decompressed(b []byte, c *InitrdContents, depth int, fn func([]byte) ([]byte, int, error)) (int, error) {
	data, n, err := fn(b)
	if err != nil {
		return 0, err
	}
	return n, walkInitrd(data, c, depth+1)
}

// readNewc reads one newc archive up to and including its trailer and
// returns its length (rounded to 4 bytes).
func readNewc(b []byte, c *InitrdContents) (int, error) {
	rr := cpio.Newc.Reader(bytes.NewReader(b))
	if eof, ok := rr.(cpio.EOFReader); ok {
		rr = eof.RecordReader // we need the trailer's position
	}
	for pos := 0; ; {
		if err := newcHeaderOK(b, pos); err != nil {
			return 0, err
		}
		rec, err := rr.ReadRecord()
		if err != nil {
			return 0, fmt.Errorf("cpio: %w", err)
		}
		end := int(rec.FilePos) + int(rec.FileSize)
		if rec.Name == cpio.Trailer {
			return (end + 3) &^ 3, nil
		}
		if end > len(b) {
			return 0, fmt.Errorf("cpio entry %s: truncated", rec.Name)
		}
		pos = (end + 3) &^ 3
		switch rec.Name {
		case ManifestPath:
			if rec.FileSize > maxInitrdEntry {
				return 0, fmt.Errorf("%s: %d bytes, too large", ManifestPath, rec.FileSize)
			}
			c.Manifest = append([]byte(nil), b[rec.FilePos:end]...)
		case AgeKeyPath:
			c.AgeKey = rec.Mode&0o170000 == 0o100000
			c.AgeKeyMode = uint32(rec.Mode & 0o7777)
		}
	}
}

// newcHeaderOK checks the newc header at pos names a path of sane length
// that fits in b, before the cpio reader allocates for it.
func newcHeaderOK(b []byte, pos int) error {
	const hdrLen, nameSizeOff = 110, 94
	if pos+hdrLen > len(b) {
		return fmt.Errorf("cpio: truncated header at %d", pos)
	}
	var n uint64
	for _, c := range b[pos+nameSizeOff : pos+nameSizeOff+8] {
		d, ok := hexDigit(c)
		if !ok {
			return fmt.Errorf("cpio: bad header at %d", pos)
		}
		n = n<<4 | d
	}
	if n == 0 || n > 4096 || pos+hdrLen+int(n) > len(b) {
		return fmt.Errorf("cpio: bad name size %d at %d", n, pos)
	}
	return nil
}

func hexDigit(c byte) (uint64, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0'), true
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}

func gunzip(b []byte) ([]byte, int, error) {
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, 0, fmt.Errorf("gzip: %w", err)
	}
	zr.Multistream(false)
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, fmt.Errorf("gzip: %w", err)
	}
	return data, len(b) - br.Len(), nil
}

// unzstd decodes consecutive zstd frames (a multi-threaded zstd writes
// several) and returns their joined output.
func unzstd(b []byte) ([]byte, int, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<32))
	if err != nil {
		return nil, 0, err
	}
	defer dec.Close()
	var out []byte
	off := 0
	for off < len(b) && bytes.HasPrefix(b[off:], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		n, err := zstdFrameLen(b[off:])
		if err != nil {
			return nil, 0, err
		}
		out, err = dec.DecodeAll(b[off:off+n], out)
		if err != nil {
			return nil, 0, fmt.Errorf("zstd: %w", err)
		}
		off += n
	}
	return out, off, nil
}

// zstdFrameLen returns the length of the zstd frame at the start of b by
// walking its block headers (RFC 8878 section 3.1.1).
func zstdFrameLen(b []byte) (int, error) {
	bad := errors.New("zstd: truncated or corrupt frame")
	if len(b) < 6 {
		return 0, bad
	}
	fhd := b[4]
	single := fhd>>5&1 == 1
	n := 5
	if !single {
		n++
	}
	n += []int{0, 1, 2, 4}[fhd&3]
	fcs := []int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	n += fcs
	for {
		if n+3 > len(b) {
			return 0, bad
		}
		h := uint32(b[n]) | uint32(b[n+1])<<8 | uint32(b[n+2])<<16
		n += 3
		size := int(h >> 3)
		switch h >> 1 & 3 {
		case 1: // RLE: one byte repeated
			size = 1
		case 3:
			return 0, bad
		}
		n += size
		if n > len(b) {
			return 0, bad
		}
		if h&1 == 1 {
			break
		}
	}
	if fhd>>2&1 == 1 {
		n += 4
	}
	if n > len(b) {
		return 0, bad
	}
	return n, nil
}

// unxz decodes one xz stream, finding its end by its footer: a 12-byte
// footer ending in "YZ" whose CRC32 and flags match (streams are a multiple
// of 4 bytes long).
func unxz(b []byte) ([]byte, int, error) {
	if len(b) < 24 {
		return nil, 0, errors.New("xz: truncated stream")
	}
	flags := b[6:8]
	end := -1
	for p := 24; p <= len(b); p += 4 {
		f := b[p-12 : p]
		if f[10] == 'Y' && f[11] == 'Z' && bytes.Equal(f[8:10], flags) && binary.LittleEndian.Uint32(f[0:4]) == crc32.ChecksumIEEE(f[4:10]) {
			end = p
			break
		}
	}
	if end < 0 {
		return nil, 0, errors.New("xz: no stream footer")
	}
	r, err := xz.NewReader(bytes.NewReader(b[:end]))
	if err != nil {
		return nil, 0, fmt.Errorf("xz: %w", err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("xz: %w", err)
	}
	return data, end, nil
}
