package deploy

import (
	"bytes"
	"fmt"

	"github.com/nixlos/nixlos/initramfs"
)

// KeyArchive is an uncompressed newc cpio holding the age key at
// initramfs.AgeKeyPath (mode 0600, owner root), padded to 512 bytes, to go
// in front of the installer's initrd: the kernel unpacks it first, the
// installer finds the key as an embedded one.
func KeyArchive(key []byte) []byte {
	var b bytes.Buffer
	ino := 1
	add := func(name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		b.WriteString(name)
		b.WriteByte(0)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add("etc", 0o40755, nil)
	add("etc/nixlos", 0o40755, nil)
	add(initramfs.AgeKeyPath, 0o100600, key)
	add("TRAILER!!!", 0, nil)
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}
