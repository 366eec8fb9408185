package cpio

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// TestZstdDeclaredSizeNotAllocated: a zstd frame that declares almost
// 4 GiB of content (and holds a few bytes) is refused under a 1 GiB cap
// without allocating what it declares (fuzzing found such a frame; the
// decoder's memory limit was 4 GiB, not the caller's cap).
func TestZstdDeclaredSizeNotAllocated(t *testing.T) {
	for _, declared := range []uint32{0xfa0000fa, 900 << 20} {
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x00} // magic; 4-byte content size; 1 KiB window
		frame = binary.LittleEndian.AppendUint32(frame, declared)
		frame = append(frame, 0x01, 0x00, 0x00) // last block, raw, empty
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, _, err := DecodeSegment(frame, 512<<20)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("a frame declaring %d MiB decoded under a 512 MiB cap", declared>>20)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
			t.Errorf("refusing a frame that declares %d MiB allocated %d MiB", declared>>20, got>>20)
		}
	}
}
