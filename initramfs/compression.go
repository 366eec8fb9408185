package initramfs

import (
	"fmt"
	"io"

	"github.com/nixlos/nixlos/initramfs/cpio"
)

// ZstdLZ4 is the per-segment compression profile: zstd for base and
// modules, lz4 for tools and build (the last two). Under TCG the kernel
// decodes lz4 several times faster than zstd; the big, hot tools segment
// gains most, while zstd keeps the media small. Any single cpio.Compression
// is a profile too: every segment uses it.
const ZstdLZ4 cpio.Compression = "zstd+lz4"

// DefaultCompression: see README.md in this directory for the measurements.
const DefaultCompression = ZstdLZ4

// segmentOrder is the order of the segments in the initrd ("key" only
// when an age key is embedded).
var segmentOrder = []string{"base", "modules", "key", "tools", "build"}

// SegmentCompression returns the compression of segment name (base,
// modules, key, tools, build) under profile c. The key segment is zstd
// whenever c would make it lz4, which stores the key's random characters
// as readable literals.
func SegmentCompression(c cpio.Compression, name string) cpio.Compression {
	if name == "key" && (c == cpio.LZ4 || c == ZstdLZ4) {
		return cpio.Zstd
	}
	if c != ZstdLZ4 {
		return c
	}
	if name == "tools" || name == "build" {
		return cpio.LZ4
	}
	return cpio.Zstd
}

// checkCompression accepts a profile every segment can be written with.
func checkCompression(c cpio.Compression) error {
	for _, seg := range segmentOrder {
		if _, err := cpio.NewCompressor(SegmentCompression(c, seg), io.Discard); err != nil {
			return fmt.Errorf("%w, or the profile %s", err, ZstdLZ4)
		}
	}
	return nil
}
