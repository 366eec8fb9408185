// Package cpio writes and reads the newc cpio segments an initrd is made
// of: Tree collects entries and writes them as one deterministic archive,
// NewCompressor compresses a segment the way the kernel can unpack it,
// DecodeSegment finds where one compressed segment ends, and Walk reads a
// whole initrd (concatenated segments, each compressed or not) back.
//
// The newc records themselves are u-root's (github.com/u-root/u-root/pkg/cpio);
// this package adds the tree, the codecs and the multi-segment reader.
package cpio

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	ucpio "github.com/u-root/u-root/pkg/cpio"
)

// entry is one file, directory or symlink of an archive being assembled.
type entry struct {
	name string // relative, clean
	mode uint64 // cpio mode (type | perm)
	data []byte // contents or symlink target (when src == "")
	src  string // host file to read contents from
}

// Tree collects the entries of one archive by path; a later add replaces
// an earlier one. Names are relative to the archive's root ("/" and ".."
// are cleaned away).
type Tree struct {
	entries map[string]*entry
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*entry{}} }

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

// Dir adds a directory with permission bits perm.
func (t *Tree) Dir(name string, perm uint64) {
	name = clean(name)
	if name == "" {
		return
	}
	t.entries[name] = &entry{name: name, mode: ucpio.S_IFDIR | perm}
}

// File adds a regular file holding data.
func (t *Tree) File(name string, data []byte, perm uint64) {
	name = clean(name)
	t.entries[name] = &entry{name: name, mode: ucpio.S_IFREG | perm, data: data}
}

// HostFile adds a host file's contents (symlinks followed) at name,
// keeping its permission bits; the file is read when the tree is written.
func (t *Tree) HostFile(name, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	name = clean(name)
	t.entries[name] = &entry{name: name, mode: ucpio.S_IFREG | uint64(fi.Mode().Perm()), src: src}
	return nil
}

// Symlink adds a symbolic link to target.
func (t *Tree) Symlink(name, target string) {
	name = clean(name)
	t.entries[name] = &entry{name: name, mode: ucpio.S_IFLNK | 0o777, data: []byte(target)}
}

// Chmod sets the permission bits of the entry name, if there is one.
func (t *Tree) Chmod(name string, perm uint64) {
	if e, ok := t.entries[clean(name)]; ok {
		e.mode = e.mode&^0o7777 | perm
	}
}

// Write writes the tree as a newc cpio to w: parent directories added
// (0755), sorted by path, uid/gid 0, every mtime set to mtime.
func (t *Tree) Write(w io.Writer, mtime int64) error {
	for name := range t.entries {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := t.entries[d]; !ok {
				t.entries[d] = &entry{name: d, mode: ucpio.S_IFDIR | 0o755}
			}
		}
	}
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	rw := ucpio.Newc.Writer(w)
	for i, n := range names {
		rec, err := t.entries[n].record(uint64(i+1), mtime)
		if err != nil {
			return err
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio %s: %w", n, err)
		}
	}
	return ucpio.WriteTrailer(rw)
}

// record is e's cpio record, its contents opened (the writer closes them).
func (e *entry) record(ino uint64, mtime int64) (ucpio.Record, error) {
	info := ucpio.Info{Name: e.name, Mode: e.mode, Ino: ino, NLink: 1, MTime: uint64(mtime)}
	if e.mode&ucpio.S_IFMT == ucpio.S_IFDIR {
		info.NLink = 2
	}
	rec := ucpio.Record{Info: info}
	switch {
	case e.src != "":
		f, err := os.Open(e.src)
		if err != nil {
			return rec, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return rec, err
		}
		rec.Info.FileSize = uint64(fi.Size())
		rec.ReaderAt = f // closed by the writer
	case e.mode&ucpio.S_IFMT != ucpio.S_IFDIR:
		rec.Info.FileSize = uint64(len(e.data))
		rec.ReaderAt = bytes.NewReader(e.data)
	}
	return rec, nil
}

// WriteCompressed writes the tree as one segment compressed with c.
func (t *Tree) WriteCompressed(w io.Writer, c Compression, mtime int64) error {
	zw, err := NewCompressor(c, w)
	if err != nil {
		return err
	}
	if err := t.Write(zw, mtime); err != nil {
		return err
	}
	return zw.Close()
}
