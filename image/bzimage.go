package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// KernelVersion reads the version string of an x86 bzImage from its setup
// header (kernel_version at 0x20E points at a NUL-terminated string 0x200
// bytes further). It returns the release (e.g. "6.1.0-57-amd64") and the whole
// banner.
func KernelVersion(r io.ReaderAt) (release, banner string, err error) {
	hdr := make([]byte, 0x210)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return "", "", fmt.Errorf("kernel: %w", err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" || hdr[0x1fe] != 0x55 || hdr[0x1ff] != 0xaa {
		return "", "", fmt.Errorf("kernel: not an x86 bzImage (no HdrS setup header)")
	}
	if binary.LittleEndian.Uint16(hdr[0x206:]) < 0x200 {
		return "", "", fmt.Errorf("kernel: boot protocol too old for a version string")
	}
	ptr := int64(binary.LittleEndian.Uint16(hdr[0x20e:]))
	if ptr == 0 {
		return "", "", fmt.Errorf("kernel: no version string")
	}
	buf := make([]byte, 256)
	n, err := r.ReadAt(buf, ptr+0x200)
	if n == 0 {
		return "", "", fmt.Errorf("kernel: version string: %w", err)
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	banner = strings.TrimSpace(string(buf))
	fields := strings.Fields(banner)
	if len(fields) == 0 {
		return "", "", fmt.Errorf("kernel: empty version string")
	}
	return fields[0], banner, nil
}
