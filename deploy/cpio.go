package deploy

import (
	"bytes"

	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/u-root/u-root/pkg/cpio"
)

// KeyArchive is an uncompressed newc cpio holding the age key at
// imagepath.AgeKey (mode 0600, owner root), padded to 512 bytes, to go
// in front of the installer's initrd: the kernel unpacks it first, the
// installer finds the key as an embedded one. Written with u-root's cpio
// package, as the initramfs builder writes its segments.
func KeyArchive(key []byte) []byte {
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	recs := []cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.Directory(imagepath.Dir, 0o755),
		cpio.StaticFile(imagepath.AgeKey, string(key), 0o600),
	}
	// Writing to a bytes.Buffer cannot fail.
	cpio.WriteRecords(w, recs)
	cpio.WriteTrailer(w)
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}
