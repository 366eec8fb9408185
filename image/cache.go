package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// The media's binary cache (Spec.NixCache) lives at closure.CacheDir of the
// ISO's filesystem, of the ISO 9660 filesystem in the USB image's
// closure.CachePartName partition, and of the PXE bundle.

// maxISOFile is the largest file ISO 9660 holds in one extent.
const maxISOFile = 1<<32 - 1

// linuxDataGUID is the GPT type of the USB image's cache partition.
const linuxDataGUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

// stageCache links (or copies) the cache directory src into dst, checking
// that every file fits ISO 9660.
func stageCache(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Size() > maxISOFile {
				return fmt.Errorf("cache file %s is %d bytes: ISO 9660 holds at most 4 GiB per file", rel, fi.Size())
			}
			return linkOrCopy(p, target)
		}
		return fmt.Errorf("cache %s: %s is not a regular file or directory", src, rel)
	})
}

// copyCache copies the cache directory src into dst (never hard links: the
// PXE bundle is served and must stay 0644).
func copyCache(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		os.Remove(target)
		return fsutil.CopyFile(p, target, 0o644)
	})
}

// buildCacheISO writes an ISO 9660 filesystem (Rock Ridge names, volume ID
// closure.CacheVolume, no boot records) holding the cache at
// closure.CacheDir to out, and returns its size (whole MiB).
func buildCacheISO(cache, out string, epoch int64) (int64, error) {
	stage, err := os.MkdirTemp(filepath.Dir(out), ".nixlos-cache-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(stage)
	if err := stageCache(cache, filepath.Join(stage, closure.CacheDir)); err != nil {
		return 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, isoBlock, stage)
	if err != nil {
		return 0, fmt.Errorf("cache iso create: %w", err)
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: closure.CacheVolume}); err != nil {
		return 0, fmt.Errorf("cache iso finalize: %w", err)
	}
	vol, err := readVolume(f)
	if err != nil {
		return 0, err
	}
	size := (int64(vol.Blocks)*isoBlock + mib - 1) / mib * mib
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	if err := normalizeISO(f, unixUTC(epoch)); err != nil {
		return 0, fmt.Errorf("cache iso normalize: %w", err)
	}
	return size, f.Close()
}

// writeCachePartition copies the cache filesystem image src into w at
// offset.
func writeCachePartition(w *os.File, offset int64, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(io.NewOffsetWriter(w, offset), in)
	return err
}

// CacheInfo is what Inspect reports about the medium's binary cache.
type CacheInfo struct {
	PublicKey string `json:"publicKey"`
	// Location is where the cache is on the medium: "/nix-cache" (ISO),
	// "partition 2 (NIXLOS-CACHE, iso9660 NIXLOS_CACHE):/nix-cache" (USB),
	// "nix-cache/" (PXE bundle).
	Location string `json:"location"`
	Present  bool   `json:"present"`
}

// manifestClosures reads the cache key and per-host toplevels from the
// manifest JSON.
func manifestClosures(manifest []byte) (key string, toplevels map[string]string) {
	var m struct {
		Cache *struct {
			PublicKey string `json:"publicKey"`
		} `json:"cache"`
		Hosts map[string]struct {
			Toplevel string `json:"toplevel"`
		} `json:"hosts"`
	}
	if json.Unmarshal(manifest, &m) != nil {
		return "", nil
	}
	toplevels = map[string]string{}
	for h, v := range m.Hosts {
		if v.Toplevel != "" {
			toplevels[h] = v.Toplevel
		}
	}
	if m.Cache != nil {
		key = m.Cache.PublicKey
	}
	return key, toplevels
}

// fillClosures sets info.Cache and info.Closures from the manifest and the
// cache in fsys (nil when the medium has none).
func fillClosures(info *Info, fsys fs.FS, location string) error {
	keyText, toplevels := manifestClosures(info.Manifest)
	if keyText == "" && len(toplevels) == 0 {
		return nil
	}
	info.Cache = &CacheInfo{PublicKey: keyText, Location: location}
	key, err := closure.ParsePublicKey(keyText)
	if err != nil {
		return fmt.Errorf("manifest cache key: %w", err)
	}
	if fsys == nil {
		return nil
	}
	if _, err := fs.Stat(fsys, "nix-cache-info"); err != nil {
		return nil
	}
	info.Cache.Present = true
	info.Closures = map[string]closure.Summary{}
	for h, top := range toplevels {
		s, err := closure.Summarize(fsys, top, key)
		if err != nil {
			return fmt.Errorf("closure of %s: %w", h, err)
		}
		info.Closures[h] = s
	}
	return nil
}

// isoFS reads files of an ISO 9660 filesystem (Rock Ridge names) as an
// fs.FS, caching directory listings.
type isoFS struct {
	r    io.ReaderAt
	root extent
	dirs map[string]map[string]isoEntry
}

type isoEntry struct {
	ext   extent
	isDir bool
}

func newISOFS(r io.ReaderAt, sub string) (*isoFS, error) {
	vol, err := readVolume(r)
	if err != nil {
		return nil, err
	}
	f := &isoFS{r: r, root: vol.Root, dirs: map[string]map[string]isoEntry{}}
	if sub != "" {
		e, err := f.lookup(sub)
		if err != nil {
			return nil, err
		}
		if !e.isDir {
			return nil, fmt.Errorf("%s is not a directory", sub)
		}
		f.root = e.ext
		f.dirs = map[string]map[string]isoEntry{} // keyed from the new root
	}
	return f, nil
}

func (f *isoFS) list(dir string, d extent) (map[string]isoEntry, error) {
	if m, ok := f.dirs[dir]; ok {
		return m, nil
	}
	if d.Size > 64*mib {
		return nil, fmt.Errorf("directory at block %d too large", d.LBA)
	}
	buf := make([]byte, d.Size)
	if _, err := f.r.ReadAt(buf, int64(d.LBA)*isoBlock); err != nil {
		return nil, err
	}
	m := map[string]isoEntry{}
	for off := 0; off < len(buf); {
		n := int(buf[off])
		if n == 0 {
			off = (off/isoBlock + 1) * isoBlock
			continue
		}
		if n < 34 || off+n > len(buf) || 33+int(buf[off+32]) > n {
			return nil, fmt.Errorf("directory at block %d: bad record", d.LBA)
		}
		rec := buf[off : off+n]
		if rec[32] != 1 || rec[33] > 1 { // not "." or ".."
			m[recordName(rec)] = isoEntry{extent{leUint32(rec[2:]), leUint32(rec[10:])}, rec[25]&2 != 0}
		}
		off += n
	}
	f.dirs[dir] = m
	return m, nil
}

func leUint32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (f *isoFS) lookup(name string) (isoEntry, error) {
	cur := isoEntry{f.root, true}
	if name == "." {
		return cur, nil
	}
	dir := ""
	for _, part := range strings.Split(name, "/") {
		if !cur.isDir {
			return isoEntry{}, fs.ErrNotExist
		}
		m, err := f.list(dir, cur.ext)
		if err != nil {
			return isoEntry{}, err
		}
		e, ok := m[part]
		if !ok {
			return isoEntry{}, fs.ErrNotExist
		}
		cur, dir = e, path.Join(dir, part)
	}
	return cur, nil
}

// Open implements fs.FS for regular files.
func (f *isoFS) Open(name string) (fs.File, error) {
	data, err := f.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return &memFile{Reader: bytes.NewReader(data), name: path.Base(name), size: int64(len(data))}, nil
}

// ReadFile implements fs.ReadFileFS.
func (f *isoFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	e, err := f.lookup(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if e.isDir {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a directory")}
	}
	data := make([]byte, e.ext.Size)
	if _, err := f.r.ReadAt(data, int64(e.ext.LBA)*isoBlock); err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

type memFile struct {
	*bytes.Reader
	name string
	size int64
}

func (m *memFile) Stat() (fs.FileInfo, error) { return memInfo{m.name, m.size}, nil }
func (m *memFile) Close() error               { return nil }

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// usbCacheFS finds the cache partition of a USB image and opens its cache.
func usbCacheFS(f *os.File, table *gpt.Table) (fs.FS, string) {
	for _, p := range table.Partitions {
		if p.Name != closure.CachePartName {
			continue
		}
		sec := io.NewSectionReader(f, int64(p.Start)*512, int64(p.End-p.Start+1)*512)
		where := fmt.Sprintf("partition %d (%s, iso9660 %s):/%s", p.Index, p.Name, closure.CacheVolume, closure.CacheDir)
		fsys, err := newISOFS(sec, closure.CacheDir)
		if err != nil {
			return nil, where
		}
		return fsys, where
	}
	return nil, "partition " + closure.CachePartName + " (missing)"
}

// ClosureHosts is the hosts of Closures in order (for printing).
func (i Info) ClosureHosts() []string {
	var out []string
	for h := range i.Closures {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// OpenCache opens the binary cache a medium carries (an ISO, a USB image or
// a PXE directory) for reading; fs.ErrNotExist when it has none. where says
// where it is on the medium. Call done when finished.
func OpenCache(path string) (fsys fs.FS, where string, done func(), err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", func() {}, err
	}
	kind := FormatPXE
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", func() {}, err
		}
		var info Info
		_, _, err = inspectFile(path, &info)
		f.Close()
		if err != nil {
			return nil, "", func() {}, err
		}
		kind = info.Kind
	}
	fsys, where, done = cacheFS(path, kind)
	if fsys == nil {
		done()
		return nil, where, func() {}, fmt.Errorf("%s: %s: %w", path, where, fs.ErrNotExist)
	}
	return fsys, where, done, nil
}

// InputInfo is one flake input of the manifest and whether the medium's
// cache holds it (its narinfo).
type InputInfo struct {
	flake.Input
	Present bool `json:"present"`
}

// fillInputs sets info.Inputs from the manifest's inputs and the cache in
// fsys (nil when the medium has none), and info.Cache when the cache holds
// only inputs (no closures: no key).
func fillInputs(info *Info, fsys fs.FS, location string) error {
	var m struct {
		Inputs []flake.Input `json:"inputs"`
	}
	if json.Unmarshal(info.Manifest, &m) != nil || len(m.Inputs) == 0 {
		return nil
	}
	if info.Cache == nil {
		info.Cache = &CacheInfo{Location: location}
		if fsys != nil {
			_, err := fs.Stat(fsys, "nix-cache-info")
			info.Cache.Present = err == nil
		}
	}
	for _, in := range m.Inputs {
		ii := InputInfo{Input: in}
		if hash, err := closure.HashPart(in.StorePath); err == nil && fsys != nil {
			_, err := fs.Stat(fsys, hash+".narinfo")
			ii.Present = err == nil
		}
		info.Inputs = append(info.Inputs, ii)
	}
	return nil
}
