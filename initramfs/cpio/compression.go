package cpio

import (
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Compression names a compressor of cpio segments, one the Debian kernel
// decompresses (CONFIG_RD_*). Each segment of an initrd is compressed on
// its own; the kernel unpacks concatenated segments.
type Compression string

// Compressions NewCompressor writes and DecodeSegment reads.
const (
	Zstd Compression = "zstd"
	XZ   Compression = "xz"
	Gzip Compression = "gzip"
	// LZ4 is lz4 in the legacy frame format (the kernel's unlz4 reads no
	// other). A legacy stream has no end marker: the kernel decodes it to
	// the end of the initrd, so lz4 segments must come last.
	LZ4  Compression = "lz4"
	None Compression = "none"
)

// NewCompressor returns a writer that compresses to w with c, with
// settings the kernel can unpack; Close flushes it. None (or "") writes
// through unchanged.
func NewCompressor(c Compression, w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(8<<20), zstd.WithZeroFrames(true))
	case XZ:
		// The kernel's XZ decoder knows CRC32 and no BCJ filter here.
		return xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(w)
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case LZ4:
		zw := lz4.NewWriter(w)
		if err := zw.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4.Level9), lz4.ConcurrencyOption(1)); err != nil {
			return nil, err
		}
		return zw, nil
	case None, "":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (want zstd, lz4, xz, gzip or none)", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
