package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// Compression names the compressor of the initramfs segments. Each segment
// is compressed on its own; the kernel unpacks concatenated segments.
type Compression string

// Compressions the Debian kernel decompresses (CONFIG_RD_*).
const (
	Zstd Compression = "zstd"
	XZ   Compression = "xz"
	Gzip Compression = "gzip"
	// LZ4 is lz4 in the legacy frame format (the kernel's unlz4 reads no
	// other). A legacy stream has no end marker: the kernel decodes it to
	// the end of the initrd, so lz4 segments must come last.
	LZ4  Compression = "lz4"
	None Compression = "none"
	// ZstdLZ4 is a per-segment profile: zstd for base and modules, lz4
	// for tools and build (the last two). Under TCG the kernel decodes
	// lz4 several times faster than zstd; the big, hot tools segment
	// gains most, while zstd keeps the media small.
	ZstdLZ4 Compression = "zstd+lz4"
)

// DefaultCompression: see README.md in this directory for the measurements.
const DefaultCompression = ZstdLZ4

// segmentOrder is the order of the segments in the initrd ("key" only
// when an age key is embedded).
var segmentOrder = []string{"base", "modules", "key", "tools", "build"}

// ForSegment returns the compression of segment name (base, modules, key,
// tools, build) under c. The key segment is zstd whenever c would make it
// lz4, which stores the key's random characters as readable literals.
func (c Compression) ForSegment(name string) Compression {
	if name == "key" && (c == LZ4 || c == ZstdLZ4) {
		return Zstd
	}
	if c != ZstdLZ4 {
		return c
	}
	if name == "tools" || name == "build" {
		return LZ4
	}
	return Zstd
}

// entry is one file, directory or symlink of an archive being assembled.
type entry struct {
	name string // relative, clean
	mode uint64 // cpio mode (type | perm)
	data []byte // contents or symlink target (when src == "")
	src  string // host file to read contents from
	size int64
}

// tree collects entries by archive path; a later add replaces an earlier one.
type tree struct {
	entries map[string]*entry
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func (t *tree) dir(name string, perm uint64) {
	name = clean(name)
	if name == "" {
		return
	}
	t.entries[name] = &entry{name: name, mode: cpio.S_IFDIR | perm}
}

func (t *tree) file(name string, data []byte, perm uint64) {
	name = clean(name)
	t.entries[name] = &entry{name: name, mode: cpio.S_IFREG | perm, data: data, size: int64(len(data))}
}

// hostFile adds a host file's contents (symlinks followed) at name,
// keeping its permission bits.
func (t *tree) hostFile(name, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	name = clean(name)
	t.entries[name] = &entry{name: name, mode: cpio.S_IFREG | uint64(fi.Mode().Perm()), src: src, size: fi.Size()}
	return nil
}

func (t *tree) symlink(name, target string) {
	name = clean(name)
	t.entries[name] = &entry{name: name, mode: cpio.S_IFLNK | 0o777, data: []byte(target), size: int64(len(target))}
}

// write writes the tree as a newc cpio to w: parent directories added
// (0755), sorted by path, uid/gid 0, every mtime set to mtime.
func (t *tree) write(w io.Writer, mtime int64) error {
	for name := range t.entries {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := t.entries[d]; !ok {
				t.entries[d] = &entry{name: d, mode: cpio.S_IFDIR | 0o755}
			}
		}
	}
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	rw := cpio.Newc.Writer(w)
	for i, n := range names {
		e := t.entries[n]
		info := cpio.Info{Name: n, Mode: e.mode, Ino: uint64(i + 1), NLink: 1, MTime: uint64(mtime)}
		if e.mode&cpio.S_IFMT == cpio.S_IFDIR {
			info.NLink = 2
		}
		rec := cpio.Record{Info: info}
		switch {
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return err
			}
			rec.Info.FileSize = uint64(fi.Size())
			rec.ReaderAt = f // closed by the writer
		case e.mode&cpio.S_IFMT != cpio.S_IFDIR:
			rec.Info.FileSize = uint64(len(e.data))
			rec.ReaderAt = bytes.NewReader(e.data)
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio %s: %w", n, err)
		}
	}
	return cpio.WriteTrailer(rw)
}

// compressTo wraps w with the compressor c; Close flushes it.
func compressTo(c Compression, w io.Writer) (io.WriteCloser, error) {
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
	return nil, fmt.Errorf("unknown compression %q (want zstd+lz4, zstd, lz4, xz, gzip or none)", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// writeSegment writes t as a compressed cpio file at dst (atomically).
func writeSegment(t *tree, c Compression, mtime int64, dst string) (int64, error) {
	return writeAtomic(dst, func(w io.Writer) error {
		cw, err := compressTo(c, w)
		if err != nil {
			return err
		}
		if err := t.write(cw, mtime); err != nil {
			return err
		}
		return cw.Close()
	})
}

// writeAtomic writes a file through a temporary in the same directory.
func writeAtomic(dst string, fill func(io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(path.Dir(dst), ".tmp-"+path.Base(dst)+"-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	bw := &countWriter{w: tmp}
	if err := fill(bw); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, err
	}
	return bw.n, os.Rename(tmp.Name(), dst)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewCompressor returns a writer that compresses to w with c the way the
// initramfs segments are compressed (settings the kernel can unpack).
func NewCompressor(c Compression, w io.Writer) (io.WriteCloser, error) { return compressTo(c, w) }
