// Package initramfs builds the nixlos installer initramfs: u-root's core
// commands (compiled with u-root's own builder, github.com/u-root/mkuimage,
// as a library), the nixlos installer as uinit, kernel modules with their
// dependencies, host tools with every shared library they load, and the
// embedded flake, manifest and (optionally) age key.
//
// The initrd is a concatenation of separately compressed newc cpio
// segments, which the kernel unpacks in order (a later entry replaces an
// earlier one):
//
//  1. base: u-root busybox + DefaultRamfs, cached by a hash of go.mod,
//     go.sum, the Go version and the command list (a cold build takes
//     ~40 s, so this is the segment the cache exists for);
//  2. modules: .ko files as the kernel ships them plus modules.dep etc.,
//     cached by kernel version, module list and the files' identity;
//  3. key (only with an age key): /imagepath.AgeKey alone, 0600, never cached,
//     zstd where the profile says lz4 (lz4 would keep the key readable);
//  4. tools: host tools, libraries (ELF DT_NEEDED walk; ICU's data library
//     replaced by a stub, see stublib.go), /etc files, cached by the tool
//     list and the identity (size, mtime, inode) of every host file read;
//  5. build: the installer (plain `go build`), the flake, the manifest,
//     extra files; rebuilt every time, never cached,
//     streamed straight into the output.
//
// Compression is per segment (Compression.ForSegment): by default zstd for
// base and modules and legacy lz4, which the kernel decodes fastest, for
// tools and build; lz4 segments come last because a legacy lz4 stream
// runs to the end of the initrd.
//
// Cache: os.UserCacheDir()/nixlos/initramfs (Spec.CacheDir to override,
// Spec.NoCache to bypass). Output is deterministic: sorted entries, uid/gid
// 0, every mtime = Spec.SourceDateEpoch (default $SOURCE_DATE_EPOCH or 0).
//
// Go module context: u-root's builder and `go build` of the installer run
// in a Go module that requires github.com/u-root/u-root — the nixlos
// repository. Spec.GoModuleDir names it; by default FindModuleDir looks at
// $NIXLOS_SRC, then the current directory and its parents, then the source
// directory this package was compiled from.
package initramfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/nixlos/nixlos/kernel"
)

// File is an extra file for the per-build segment.
type File struct {
	Path string      // path inside the archive
	Data []byte      // contents
	Mode fs.FileMode // permission bits (0644 when zero)
}

// Spec says what goes into an initramfs. The zero value of every field
// but Output has a working default.
type Spec struct {
	// Output is the initrd path to write (required).
	Output string
	// GoModuleDir is the Go module (the nixlos repo) to build in; see the
	// package doc for the default.
	GoModuleDir string
	// Commands are the u-root command packages (default DefaultCommands).
	Commands []string

	// InstallerPkg is the Go package of the installer (default
	// github.com/nixlos/nixlos/cmd/installer), built with `go build`.
	InstallerPkg string
	// InstallerBinary, when set, is used instead of building InstallerPkg.
	InstallerBinary string
	// Version is set into the installer as main.version with -ldflags.
	Version string
	// UinitScript, when set, makes /bin/uinit this /bin/sh script
	// instead of the installer (which is still at /bin/installer). Tests use it.
	UinitScript string

	// KernelVersion names /lib/modules/<version> (default: newest
	// /boot/vmlinuz-* with a modules directory). ModulesDir overrides the
	// directory (its base name is the version inside the image).
	KernelVersion string
	ModulesDir    string
	// Modules to include (default DefaultModules); dependencies are added.
	Modules []string
	// BootModules are loaded at boot by u-root's init (default
	// DefaultBootModules; those not in Modules are ignored).
	BootModules []string

	// Tools are host programs to copy (default DefaultTools; when set, each
	// must exist). ExtraLibs are dlopen'ed libraries (default DefaultExtraLibs).
	Tools     []string
	ExtraLibs []string

	// FlakeDir is copied to /imagepath.Flake (all files, as given).
	FlakeDir string
	// Manifest is written to /imagepath.Manifest when not nil.
	Manifest []byte
	// AgeKey, when not nil, is written to /imagepath.AgeKey, mode 0600; the
	// output file is then 0600 too.
	AgeKey []byte
	// Files are extra files for the per-build segment.
	Files []File

	// Compression of every segment (default DefaultCompression).
	Compression Compression
	// SourceDateEpoch is every mtime in the archive; 0 means
	// $SOURCE_DATE_EPOCH when set, else 0.
	SourceDateEpoch int64
	// CacheDir overrides os.UserCacheDir()/nixlos/initramfs.
	CacheDir string
	// NoCache rebuilds every segment and leaves the cache untouched.
	NoCache bool
}

// Segment reports one cpio segment of the initrd.
type Segment struct {
	Name     string        `json:"name"` // base, tools, modules, build
	Key      string        `json:"key,omitempty"`
	Bytes    int64         `json:"bytes"` // compressed size
	CacheHit bool          `json:"cacheHit"`
	Duration time.Duration `json:"duration"`
	Path     string        `json:"path,omitempty"` // cache file (not for build)
}

// Report says what Build did.
type Report struct {
	Path          string      `json:"path"`
	Bytes         int64       `json:"bytes"`
	Compression   Compression `json:"compression"`
	KernelVersion string      `json:"kernelVersion"`
	Segments      []Segment   `json:"segments"`
	Modules       []string    `json:"modules"`      // relative .ko paths
	MissingTools  []string    `json:"missingTools"` // default tools not on this host
	MissingMods   []string    `json:"missingModules"`
	AgeKey        bool        `json:"ageKey"`
	// InstallerCached: the installer binary came from the cache (same
	// Go sources), not from `go build`.
	InstallerCached bool          `json:"installerCached"`
	Duration        time.Duration `json:"duration"`
}

// InstallerVersionDefault is used when Spec.Version is empty.
const InstallerVersionDefault = "dev"

// loadBootModules starts a UinitScript the way the installer starts: it
// loads the modules imagepath.BootModules lists (Spec.BootModules present
// in the image) with kmod's modprobe in one call, right after the ready
// line, rather than u-root's init loading them one by one before uinit
// starts: under TCG that took ~9 s of the ~20 s to the ready line.
const loadBootModules = "/sbin/modprobe -a $(cat /" + imagepath.BootModules + ") 2>/dev/null || true\n"

// formatVersion changes whenever segment contents change for the same
// inputs, invalidating old cache entries.
const formatVersion = "nixlos-initramfs-5"

// baseFormat versions the u-root base archive's key on its own, so that a
// change to the other segments does not recompile u-root.
const baseFormat = "nixlos-initramfs-2"

// Build writes the initramfs Spec describes to spec.Output and returns its
// path and a report. Progress lines (one per segment) go to progress.
func Build(ctx context.Context, spec Spec, progress io.Writer) (string, *Report, error) {
	start := time.Now()
	if progress == nil {
		progress = io.Discard
	}
	if spec.Output == "" {
		return "", nil, fmt.Errorf("initramfs: no output path")
	}
	s, err := spec.withDefaults()
	if err != nil {
		return "", nil, err
	}
	rep := &Report{Path: s.Output, Compression: s.Compression, AgeKey: s.AgeKey != nil, KernelVersion: filepath.Base(s.ModulesDir)}
	cacheDir := s.CacheDir
	if s.NoCache {
		tmp, err := os.MkdirTemp("", "nixlos-initramfs-nocache-")
		if err != nil {
			return "", nil, err
		}
		defer os.RemoveAll(tmp)
		cacheDir = tmp
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("initramfs cache: %w", err)
	}

	modDir, err := FindModuleDir(s.GoModuleDir)
	if err != nil {
		return "", nil, err
	}

	// The installer build runs concurrently with the cached segments.
	type binResult struct {
		path string
		err  error
		dur  time.Duration
		hit  bool
	}
	binCh := make(chan binResult, 1)
	binDir, err := os.MkdirTemp("", "nixlos-installer-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(binDir)
	go func() {
		t := time.Now()
		if s.InstallerBinary != "" {
			binCh <- binResult{path: s.InstallerBinary}
			return
		}
		p, err := cachedInstaller(ctx, modDir, s, cacheDir, binDir)
		binCh <- binResult{path: p, err: err, dur: time.Since(t), hit: err == nil && strings.HasPrefix(p, cacheDir)}
	}()

	segs := []func() (Segment, error){
		func() (Segment, error) { return baseSegment(ctx, s, modDir, cacheDir, progress) },
		func() (Segment, error) { return modulesSegment(s, cacheDir, rep) },
		func() (Segment, error) { return toolsSegment(s, cacheDir, rep) },
	}
	for _, f := range segs {
		seg, err := f()
		if err != nil {
			<-binCh
			return "", nil, err
		}
		rep.Segments = append(rep.Segments, seg)
		fmt.Fprintf(progress, "initramfs: %-7s %s %8s  %s\n", seg.Name, hitWord(seg.CacheHit), humanBytes(seg.Bytes), seg.Duration.Round(time.Millisecond))
	}
	bin := <-binCh
	if bin.err != nil {
		return "", nil, bin.err
	}

	// Assemble: cached segments, then the per-build segment streamed in.
	t := time.Now()
	t0 := newTree()
	if err := s.buildTree(t0, bin.path); err != nil {
		return "", nil, err
	}
	mode := os.FileMode(0o644)
	if s.AgeKey != nil {
		mode = 0o600
	}
	var buildBytes, keyBytes int64
	// writeTree streams tr as one segment compressed for segment name.
	writeTree := func(w io.Writer, tr *tree, name string) (int64, error) {
		cw := &countWriter{w: w}
		zw, err := compressTo(s.Compression.ForSegment(name), cw)
		if err != nil {
			return 0, err
		}
		if err := tr.write(zw, s.SourceDateEpoch); err != nil {
			return 0, err
		}
		err = zw.Close()
		return cw.n, err
	}
	n, err := writeAtomicMode(s.Output, mode, func(w io.Writer) error {
		for _, seg := range rep.Segments {
			if seg.Name == "tools" && s.AgeKey != nil {
				var err error
				if keyBytes, err = writeTree(w, s.keyTree(), "key"); err != nil {
					return err
				}
			}
			f, err := os.Open(seg.Path)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		var err error
		buildBytes, err = writeTree(w, t0, "build")
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("write initramfs %s: %w", s.Output, err)
	}
	if s.AgeKey != nil {
		for i, seg := range rep.Segments {
			if seg.Name == "tools" {
				rep.Segments = slices.Insert(rep.Segments, i, Segment{Name: "key", Bytes: keyBytes})
				break
			}
		}
	}
	seg := Segment{Name: "build", Bytes: buildBytes, Duration: time.Since(t) + bin.dur}
	rep.Segments = append(rep.Segments, seg)
	rep.InstallerCached = bin.hit
	how := "go build"
	if bin.hit {
		how = "cached"
	} else if s.InstallerBinary != "" {
		how = "given"
	}
	fmt.Fprintf(progress, "initramfs: %-7s %s %8s  %s (installer %s %s)\n", seg.Name, "built ", humanBytes(seg.Bytes), seg.Duration.Round(time.Millisecond), how, bin.dur.Round(time.Millisecond))
	rep.Bytes = n
	rep.Duration = time.Since(start)
	if !s.NoCache {
		var used []string
		if strings.HasPrefix(bin.path, cacheDir+string(filepath.Separator)) {
			used = append(used, bin.path) // never touch a given binary
		}
		for _, seg := range rep.Segments {
			if seg.Path != "" {
				used = append(used, seg.Path)
			}
		}
		pruneCache(cacheDir, used, cacheKeep)
	}
	return s.Output, rep, nil
}

// cacheKeep is how many entries of each kind (base, tools, modules,
// installer) the cache keeps, the most recently used first.
const cacheKeep = 4

// pruneCache marks the entries used now as recently used and removes all
// but the keep most recently used entries of each kind.
func pruneCache(dir string, used []string, keep int) {
	now := time.Now()
	isUsed := map[string]bool{}
	for _, u := range used {
		isUsed[u] = true
		os.Chtimes(u, now, now)
	}
	ents, err := os.ReadDir(dir)
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
		kinds[kind] = append(kinds[kind], item{filepath.Join(dir, name), info.ModTime()})
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

func hitWord(hit bool) string {
	if hit {
		return "cached"
	}
	return "built "
}

func humanBytes(n int64) string {
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}

func (s Spec) withDefaults() (Spec, error) {
	if s.Commands == nil {
		s.Commands = DefaultCommands
	}
	if s.InstallerPkg == "" {
		s.InstallerPkg = nixlosModule + "/cmd/installer"
	}
	if s.Version == "" {
		s.Version = InstallerVersionDefault
	}
	if s.Modules == nil {
		s.Modules = DefaultModules
	}
	if s.BootModules == nil {
		s.BootModules = DefaultBootModules
	}
	if s.ExtraLibs == nil {
		s.ExtraLibs = DefaultExtraLibs
	}
	if s.Compression == "" {
		s.Compression = DefaultCompression
	}
	for _, seg := range segmentOrder {
		if _, err := compressTo(s.Compression.ForSegment(seg), io.Discard); err != nil {
			return s, err
		}
	}
	if s.SourceDateEpoch < 0 {
		return s, fmt.Errorf("SourceDateEpoch %d: must not be negative", s.SourceDateEpoch)
	}
	if s.SourceDateEpoch == 0 {
		if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return s, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a non-negative integer", v)
			}
			s.SourceDateEpoch = n
		}
	}
	if s.ModulesDir == "" {
		if s.KernelVersion == "" {
			v, err := DefaultKernelVersion()
			if err != nil {
				return s, err
			}
			s.KernelVersion = v
		}
		s.ModulesDir = filepath.Join("/lib/modules", s.KernelVersion)
	}
	if !isFile(filepath.Join(s.ModulesDir, "modules.dep")) {
		return s, fmt.Errorf("kernel modules dir %s: no modules.dep (install the kernel's modules or set ModulesDir)", s.ModulesDir)
	}
	for _, t := range s.Tools {
		if LookTool(t) == "" {
			return s, fmt.Errorf("tool %s: not found in %s", t, strings.Join(ToolPath, ":"))
		}
	}
	if s.CacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return s, fmt.Errorf("initramfs cache: %w (set Spec.CacheDir)", err)
		}
		s.CacheDir = filepath.Join(d, "nixlos", "initramfs")
	}
	if s.FlakeDir != "" {
		if fi, err := os.Stat(s.FlakeDir); err != nil || !fi.IsDir() {
			return s, fmt.Errorf("flake dir %s: not a directory", s.FlakeDir)
		}
	}
	return s, nil
}

// DefaultKernelVersion returns the version of this machine's newest kernel
// that has modules (package kernel's Default).
func DefaultKernelVersion() (string, error) {
	k, err := kernel.Default()
	return k.Version, err
}

// keyTree is the segment that holds the age key alone. It is never lz4:
// lz4 keeps short random strings as literals, so the key would be readable
// in the media with strings(1).
func (s Spec) keyTree() *tree {
	t := newTree()
	t.dir(imagepath.Dir, 0o755)
	t.file(imagepath.AgeKey, s.AgeKey, 0o600)
	return t
}

// buildTree fills the per-build segment.
func (s Spec) buildTree(t *tree, installer string) error {
	if err := t.hostFile("bin/installer", installer); err != nil {
		return fmt.Errorf("installer binary: %w", err)
	}
	t.entries["bin/installer"].mode = t.entries["bin/installer"].mode&^0o777 | 0o755
	if s.UinitScript != "" {
		t.file("bin/uinit", []byte("#!/bin/sh\n"+loadBootModules+s.UinitScript), 0o755)
	} else {
		t.symlink("bin/uinit", "installer")
	}
	t.dir(imagepath.Dir, 0o755)
	if s.FlakeDir != "" {
		if err := addDir(t, s.FlakeDir, imagepath.Flake); err != nil {
			return fmt.Errorf("flake %s: %w", s.FlakeDir, err)
		}
	}
	if s.Manifest != nil {
		t.file(imagepath.Manifest, s.Manifest, 0o644)
	}
	for _, f := range s.Files {
		m := f.Mode.Perm()
		if m == 0 {
			m = 0o644
		}
		t.file(f.Path, f.Data, uint64(m))
	}
	return nil
}

// addDir copies a host directory tree (regular files, dirs, symlinks).
func addDir(t *tree, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		name := filepath.ToSlash(filepath.Join(dst, rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			t.dir(name, uint64(fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.symlink(name, target)
		case fi.Mode().IsRegular():
			return t.hostFile(name, p)
		}
		return nil
	})
}

// BuildInstaller compiles pkg (a main package) in modDir into out, static
// (CGO_ENABLED=0), stripped, with main.version set to version.
func BuildInstaller(ctx context.Context, modDir, pkg, version, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out,
		"-ldflags", "-s -w -X main.version="+version, pkg)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %w\n%s", pkg, modDir, err, b)
	}
	return nil
}

// cachedInstaller returns the installer binary from the cache, or builds
// it with `go build` and caches it. The key is the Go version, the package,
// the version string and the identity of every Go source file (.go, .s,
// .c, .h, go.mod, go.sum) of the module directory; files pulled in with
// //go:embed are not part of it (use NoCache after changing one).
func cachedInstaller(ctx context.Context, modDir string, s Spec, cacheDir, tmpDir string) (string, error) {
	gv, err := goVersion(ctx, modDir)
	if err != nil {
		return "", err
	}
	parts := []string{formatVersion, "installer", gv, s.InstallerPkg, s.Version, modDir}
	err = filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if p != modDir && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".s", ".c", ".h", ".syso":
			if strings.HasSuffix(name, "_test.go") {
				return nil
			}
		default:
			if name != "go.mod" && name != "go.sum" && name != "go.work" {
				return nil
			}
		}
		parts = append(parts, p+"@"+fileIdentity(p))
		return nil
	})
	if err != nil {
		return "", err
	}
	key := hashKey(parts...)
	cached := filepath.Join(cacheDir, "installer-"+key)
	if isFile(cached) {
		return cached, nil // the report's build segment says "installer cached"
	}
	out := filepath.Join(tmpDir, "installer")
	if err := BuildInstaller(ctx, modDir, s.InstallerPkg, s.Version, out); err != nil {
		return "", err
	}
	if err := copyFileAtomic(out, cached); err != nil {
		return "", err
	}
	return cached, nil
}

// copyFileAtomic copies src to dst atomically, mode 0755.
func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = writeAtomicMode(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	return err
}

// ---- cache ----

// cacheMeta is stored beside a cached segment: the host files it was made
// from and their identity, checked on every hit.
type cacheMeta struct {
	Format string            `json:"format"`
	Files  map[string]string `json:"files"` // host path → identity
	Extra  json.RawMessage   `json:"extra,omitempty"`
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

func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// cacheLookup returns whether dir/name.cpio.<c> is present and its
// recorded host files are unchanged, with the extra metadata.
func cacheLookup(path string) (bool, json.RawMessage) {
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

func cacheStore(path string, files []string, extra any) error {
	m := cacheMeta{Format: formatVersion, Files: map[string]string{}}
	for _, f := range files {
		m.Files[f] = fileIdentity(f)
	}
	if extra != nil {
		b, err := json.Marshal(extra)
		if err != nil {
			return err
		}
		m.Extra = b
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	_, err = writeAtomic(path+".json", func(w io.Writer) error { _, err := w.Write(b); return err })
	return err
}

func segPath(cacheDir, name, key string, c Compression) string {
	return filepath.Join(cacheDir, name+"-"+key+".cpio."+string(c))
}

func baseSegment(ctx context.Context, s Spec, modDir, cacheDir string, progress io.Writer) (Segment, error) {
	t := time.Now()
	gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return Segment{}, err
	}
	gosum, _ := os.ReadFile(filepath.Join(modDir, "go.sum"))
	gv, err := goVersion(ctx, modDir)
	if err != nil {
		return Segment{}, err
	}
	// The u-root archive itself (uncompressed, normalised) is cached once;
	// each compression of it is cached beside it.
	rawKey := hashKey(baseFormat, "base", string(gomod), string(gosum), gv, strings.Join(s.Commands, "\n"),
		strconv.FormatInt(s.SourceDateEpoch, 10))
	raw := segPath(cacheDir, "base", rawKey, None)
	c := s.Compression.ForSegment("base")
	key := hashKey(rawKey, string(c))
	p := segPath(cacheDir, "base", key, c)
	if c == None {
		p, key = raw, rawKey
	}
	seg := Segment{Name: "base", Key: key, Path: p}
	if hit, _ := cacheLookup(p); hit {
		seg.CacheHit = true
	} else {
		if hit, _ := cacheLookup(raw); !hit {
			fmt.Fprintf(progress, "initramfs: base    building u-root (%d command patterns, Go %s)...\n", len(s.Commands), gv)
			if _, err := buildBase(ctx, modDir, s.Commands, None, s.SourceDateEpoch, raw, progress); err != nil {
				return seg, err
			}
			if err := cacheStore(raw, nil, nil); err != nil {
				return seg, err
			}
		}
		if p != raw {
			if err := compressFile(raw, p, c); err != nil {
				return seg, err
			}
			if err := cacheStore(p, nil, nil); err != nil {
				return seg, err
			}
		}
	}
	seg.Bytes = fileSize(p)
	seg.Duration = time.Since(t)
	return seg, nil
}

// compressFile writes src compressed with c to dst.
func compressFile(src, dst string, c Compression) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = writeAtomic(dst, func(w io.Writer) error {
		cw, err := compressTo(c, w)
		if err != nil {
			return err
		}
		if _, err := io.Copy(cw, in); err != nil {
			return err
		}
		return cw.Close()
	})
	return err
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func toolsSegment(s Spec, cacheDir string, rep *Report) (Segment, error) {
	t := time.Now()
	names, required := s.Tools, true
	if names == nil {
		names, required = DefaultTools, false
	}
	// The key covers the inputs and the identity of each tool itself;
	// the metadata covers every library and /etc file read.
	c := s.Compression.ForSegment("tools")
	parts := []string{formatVersion, "tools", string(c), strconv.FormatInt(s.SourceDateEpoch, 10),
		strconv.FormatBool(required), strings.Join(s.ExtraLibs, ","), strings.Join(DefaultLibDirs(), ":")}
	for _, n := range names {
		p := LookTool(n)
		parts = append(parts, n+"="+p+"@"+fileIdentity(p))
	}
	key := hashKey(parts...)
	p := segPath(cacheDir, "tools", key, c)
	seg := Segment{Name: "tools", Key: key, Path: p}
	if hit, extra := cacheLookup(p); hit {
		seg.CacheHit = true
		json.Unmarshal(extra, &rep.MissingTools)
	} else {
		ts, err := resolveTools(names, required, s.ExtraLibs, LibResolver{})
		if err != nil {
			return seg, fmt.Errorf("initramfs tools: %w", err)
		}
		if _, err := writeSegment(ts.tree, c, s.SourceDateEpoch, p); err != nil {
			return seg, err
		}
		if err := cacheStore(p, ts.files, ts.missing); err != nil {
			return seg, err
		}
		rep.MissingTools = ts.missing
	}
	seg.Bytes = fileSize(p)
	seg.Duration = time.Since(t)
	return seg, nil
}

type modulesExtra struct {
	Modules []string `json:"modules"`
	Missing []string `json:"missing"`
}

func modulesSegment(s Spec, cacheDir string, rep *Report) (Segment, error) {
	t := time.Now()
	dep := filepath.Join(s.ModulesDir, "modules.dep")
	c := s.Compression.ForSegment("modules")
	key := hashKey(formatVersion, "modules", string(c), strconv.FormatInt(s.SourceDateEpoch, 10),
		s.ModulesDir, strings.Join(s.Modules, ","), strings.Join(s.BootModules, ","), fileIdentity(dep))
	p := segPath(cacheDir, "modules", key, c)
	seg := Segment{Name: "modules", Key: key, Path: p}
	var ex modulesExtra
	if hit, extra := cacheLookup(p); hit && json.Unmarshal(extra, &ex) == nil {
		seg.CacheHit = true
	} else {
		idx, err := LoadModuleIndex(s.ModulesDir)
		if err != nil {
			return seg, fmt.Errorf("initramfs modules: %w (set the kernel's modules directory)", err)
		}
		paths, missing := idx.Resolve(s.Modules)
		ex = modulesExtra{Modules: paths, Missing: missing}
		tr := newTree()
		kver := filepath.Base(s.ModulesDir)
		// Inside the image /lib may be the merged-/usr symlink the tools
		// segment makes; never replace it with a directory.
		libDir := "lib"
		if target, err := os.Readlink("/lib"); err == nil && strings.Trim(target, "/") == "usr/lib" {
			libDir = "usr/lib"
		}
		var files []string
		for _, rel := range paths {
			src := filepath.Join(s.ModulesDir, rel)
			if err := tr.hostFile(filepath.Join(libDir, "modules", kver, rel), src); err != nil {
				return seg, fmt.Errorf("module %s: %w", rel, err)
			}
			files = append(files, src)
		}
		// Every index (text and kmod's .bin) so modprobe resolves names,
		// aliases and softdeps.
		idxFiles, _ := filepath.Glob(filepath.Join(s.ModulesDir, "modules.*"))
		for _, src := range idxFiles {
			f := filepath.Base(src)
			if isFile(src) {
				if err := tr.hostFile(filepath.Join(libDir, "modules", kver, f), src); err != nil {
					return seg, err
				}
				files = append(files, src)
			}
		}
		var boot []string
		inImage := map[string]bool{}
		for _, p := range paths {
			inImage[ModuleName(p)] = true
		}
		for _, m := range s.BootModules {
			if inImage[ModuleName(m)] {
				boot = append(boot, ModuleName(m))
			}
		}
		tr.file(imagepath.BootModules, []byte(strings.Join(boot, "\n")+"\n"), 0o644)
		if _, err := writeSegment(tr, c, s.SourceDateEpoch, p); err != nil {
			return seg, err
		}
		if err := cacheStore(p, files, ex); err != nil {
			return seg, err
		}
	}
	rep.Modules, rep.MissingMods = ex.Modules, ex.Missing
	seg.Bytes = fileSize(p)
	seg.Duration = time.Since(t)
	return seg, nil
}

// writeAtomicMode is writeAtomic with a final file mode.
func writeAtomicMode(dst string, mode os.FileMode, fill func(io.Writer) error) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil { // before any byte is written
		tmp.Close()
		return 0, err
	}
	cw := &countWriter{w: tmp}
	if err := fill(cw); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return cw.n, os.Rename(tmp.Name(), dst)
}
