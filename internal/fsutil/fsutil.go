// Package fsutil holds the small file helpers every package shares: an
// atomic file write (temporary file in the target's directory, mode set
// before the first byte, rename on success), an atomic file copy built on
// it, and a writer that prefixes every line. It imports only the standard
// library, so any package may use it.
package fsutil

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteAtomic writes dst through a temporary file in dst's directory: the
// temporary gets mode before fill writes a byte (a 0600 file is never
// readable by others, not even briefly), and replaces dst by rename only
// when fill and the close succeed; on failure dst is untouched and the
// temporary removed. The data reach the disk (fsync) before the rename, so
// a power cut leaves the old file or the new one. It returns the number of
// bytes fill wrote. dst's directory must exist.
func WriteAtomic(dst string, mode fs.FileMode, fill func(io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return 0, err
	}
	cw := &countWriter{w: tmp}
	if err := fill(cw); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return cw.n, os.Rename(tmp.Name(), dst)
}

// CopyFile copies the contents of src (symlinks followed) to dst with
// WriteAtomic: dst gets exactly mode (no umask), and is never seen half
// written. dst is a new file, never a hard link to src.
func CopyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = WriteAtomic(dst, mode, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	return err
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewPrefixWriter returns a writer that writes prefix to w before every
// line written through it (a line split across writes gets it once). Each
// Write is one Write to w.
func NewPrefixWriter(w io.Writer, prefix string) io.Writer {
	return &prefixWriter{w: w, prefix: []byte(prefix)}
}

type prefixWriter struct {
	w      io.Writer
	prefix []byte
	mid    bool // the last write ended inside a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !p.mid {
			out.Write(p.prefix)
		}
		out.Write(line)
		p.mid = line[len(line)-1] != '\n'
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
