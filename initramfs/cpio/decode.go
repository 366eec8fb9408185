package cpio

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// lz4LegacyMagic starts an lz4 stream in the legacy format, the one the
// kernel's unlz4 reads.
var lz4LegacyMagic = []byte{0x02, 0x21, 0x4c, 0x18}

// DecodeSegment decodes the compressed stream at the start of b (gzip,
// zstd, xz or legacy lz4, as DetectCompression names it) and returns the
// data and how many bytes of b it took. A legacy lz4 stream has no end
// marker, so, as for the kernel, it runs to the end of b (which is why
// nixlos writes lz4 segments last). maxOut caps the decoded size.
func DecodeSegment(b []byte, maxOut int64) (data []byte, n int, c Compression, err error) {
	c = DetectCompression(b)
	switch c {
	case Gzip:
		data, n, err = gunzip(b, maxOut)
	case Zstd:
		data, n, err = unzstd(b, maxOut)
	case XZ:
		data, n, err = unxz(b, maxOut)
	case LZ4:
		data, n, err = unlz4(b, maxOut)
	default:
		return nil, 0, c, errors.New("not a gzip, zstd, xz or lz4 stream")
	}
	return data, n, c, err
}

// readCapped reads r to its end, failing beyond max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("decompresses to more than %d bytes", max)
	}
	return data, nil
}

func unlz4(b []byte, max int64) ([]byte, int, error) {
	data, err := readCapped(lz4.NewReader(bytes.NewReader(b)), max)
	if err != nil {
		return nil, 0, fmt.Errorf("lz4: %w", err)
	}
	return data, len(b), nil
}

func gunzip(b []byte, max int64) ([]byte, int, error) {
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, 0, fmt.Errorf("gzip: %w", err)
	}
	zr.Multistream(false)
	data, err := readCapped(zr, max)
	if err != nil {
		return nil, 0, fmt.Errorf("gzip: %w", err)
	}
	return data, len(b) - br.Len(), nil
}

// unzstd decodes consecutive zstd frames (a multi-threaded zstd writes
// several) and returns their joined output. Each frame is streamed into a
// buffer capped at what is left of max: a frame's declared content size is
// not trusted (DecodeAll allocates it up front, so a 12-byte frame could
// claim most of max).
func unzstd(b []byte, max int64) ([]byte, int, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(max)), zstd.WithDecoderConcurrency(1))
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
		if err := dec.Reset(bytes.NewReader(b[off : off+n])); err != nil {
			return nil, 0, fmt.Errorf("zstd: %w", err)
		}
		part, err := readCapped(dec, max-int64(len(out)))
		if err != nil {
			return nil, 0, fmt.Errorf("zstd: %w", err)
		}
		out = append(out, part...)
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
func unxz(b []byte, max int64) ([]byte, int, error) {
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
	data, err := readCapped(r, max)
	if err != nil {
		return nil, 0, fmt.Errorf("xz: %w", err)
	}
	return data, end, nil
}
