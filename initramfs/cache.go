package initramfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/fsutil"
)

// cache is the directory of cached segments and installer binaries: each
// entry <kind>-<key>[.cpio.<compression>] with its metadata beside it in
// <entry>.json (cacheMeta).
type cache struct{ dir string }

// cacheKeep is how many entries of each kind (base, tools, modules,
// installer) the cache keeps, the most recently used first.
const cacheKeep = 4

// cacheMeta is stored beside a cached segment: the host files it was made
// from and their identity, checked on every hit.
type cacheMeta struct {
	Format string            `json:"format"`
	Files  map[string]string `json:"files"` // host path → identity
	Extra  json.RawMessage   `json:"extra,omitempty"`
}

// path is where segment name with key, compressed with c, is cached.
func (c cache) path(name, key string, comp cpio.Compression) string {
	return filepath.Join(c.dir, name+"-"+key+".cpio."+string(comp))
}

// lookup returns whether the entry at path is present and its recorded
// host files are unchanged, with the extra metadata.
func (cache) lookup(path string) (bool, json.RawMessage) {
	if !isFile(path) {
		return false, nil
	}
	b, err := os.ReadFile(path + ".json")
	if err != nil {
		return false, nil
	}
	var m cacheMeta
	if json.Unmarshal(b, &m) != nil {
		return false, nil
	}
	for f, id := range m.Files {
		if fileIdentity(f) != id {
			return false, nil
		}
	}
	return true, m.Extra
}

// store records the metadata of the entry at path: the identity of files
// and extra (JSON), which it returns.
func (cache) store(path string, files []string, extra any) (json.RawMessage, error) {
	m := cacheMeta{Format: formatVersion, Files: map[string]string{}}
	for _, f := range files {
		m.Files[f] = fileIdentity(f)
	}
	if extra != nil {
		b, err := json.Marshal(extra)
		if err != nil {
			return nil, err
		}
		m.Extra = b
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	_, err = fsutil.WriteAtomic(path+".json", 0o644, func(w io.Writer) error { _, err := w.Write(b); return err })
	return m.Extra, err
}

// prune marks the entries used now as recently used and removes all but
// the keep most recently used entries of each kind.
func (c cache) prune(used []string, keep int) {
	now := time.Now()
	isUsed := map[string]bool{}
	for _, u := range used {
		isUsed[u] = true
		os.Chtimes(u, now, now)
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type item struct {
		path string
		mod  time.Time
	}
	kinds := map[string][]item{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		kind, _, ok := strings.Cut(name, "-")
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		kinds[kind] = append(kinds[kind], item{filepath.Join(c.dir, name), info.ModTime()})
	}
	for _, items := range kinds {
		sort.Slice(items, func(i, j int) bool { return items[i].mod.After(items[j].mod) })
		for i, it := range items {
			if i >= keep && !isUsed[it.path] {
				os.Remove(it.path)
				os.Remove(it.path + ".json")
			}
		}
	}
}

// fileIdentity is size, mtime and inode: changes when a package upgrade
// replaces the file.
func fileIdentity(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return "missing"
	}
	ino := uint64(0)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%d:%d:%d", fi.Size(), fi.ModTime().UnixNano(), ino)
}

// hashKey is a cache key of its parts (length-prefixed, so no two lists
// share one).
func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
