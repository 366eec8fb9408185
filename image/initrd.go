package image

import (
	"bytes"
	"fmt"

	initrd "github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/u-root/u-root/pkg/cpio"
)

// maxInitrdSize caps what one compressed segment may decompress to.
const maxInitrdSize = 1 << 30

// maxInitrdEntry caps the size of an entry InitrdContents keeps in memory.
const maxInitrdEntry = 16 << 20

// InitrdContents is what an initrd says about the installer. The age key
// itself is never read into it: only whether it is there and its mode.
type InitrdContents struct {
	Archives   int    // cpio archives found (compressed or not)
	Manifest   []byte // imagepath.Manifest, nil when absent
	AgeKey     bool   // imagepath.AgeKey present (the last archive that names it wins)
	AgeKeyMode uint32 // its permission bits
	// Names lists every entry of every archive, in order.
	Names []string
}

// ReadInitrd reads an initrd made of one or more concatenated cpio (newc)
// archives, each plain or compressed with gzip, xz, zstd or lz4, as the kernel
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
		default:
			n, err = decompressed(rest, c, depth)
		}
		if err != nil {
			return fmt.Errorf("initrd offset %d: %w", off, err)
		}
		off += n
	}
	return nil
}

// decompressed unpacks the compressed segment at the start of b and walks
// what it holds; it returns the segment's compressed length.
func decompressed(b []byte, c *InitrdContents, depth int) (int, error) {
	data, n, _, err := initrd.DecodeSegment(b, maxInitrdSize)
	if err != nil {
		return 0, fmt.Errorf("not a cpio archive or a gzip/xz/zstd/lz4 stream (bytes % x): %w", b[:min(len(b), 6)], err)
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
		c.Names = append(c.Names, rec.Name)
		switch rec.Name {
		case imagepath.Manifest:
			if rec.FileSize > maxInitrdEntry {
				return 0, fmt.Errorf("%s: %d bytes, too large", imagepath.Manifest, rec.FileSize)
			}
			c.Manifest = append([]byte(nil), b[rec.FilePos:end]...)
		case imagepath.AgeKey:
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
