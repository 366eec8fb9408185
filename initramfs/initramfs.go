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
//  3. key (only with an age key): imagepath.AgeKey alone, 0600, never
//     cached, zstd where the profile says lz4 (lz4 would keep the key
//     readable);
//  4. tools: host tools, libraries (ELF DT_NEEDED walk; ICU's data library
//     replaced by a stub, see elfdeps.StubLibrary), /etc files, cached by
//     the tool list and the identity (size, mtime, inode) of every host
//     file read;
//  5. build: the installer (plain `go build`), the flake, the manifest,
//     extra files; rebuilt every time, never cached,
//     streamed straight into the output.
//
// Build composes them: a producer per cached segment (baseSegment,
// modulesSegment, toolsSegment) behind one cache driver (builder.cached),
// the installer built concurrently, then the output assembled from the
// cached files and the two per-build trees. The mechanisms live in
// subpackages, the policy (which tools, modules, compression) here:
//
//   - initramfs/cpio: the archive tree and writer, the codecs, segment
//     decoding and Walk, which reads an initrd back;
//   - initramfs/elfdeps: the shared libraries a program loads, stub
//     libraries, tool lookup;
//   - initramfs/kmod: the kernel's module index and dependency closure;
//   - internal/imagepath: the paths inside the image the installer reads.
//
// Compression is per segment (SegmentCompression): by default zstd for
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
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/initramfs/elfdeps"
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

	// FlakeDir is copied to imagepath.Flake (all files, as given).
	FlakeDir string
	// Manifest is written to imagepath.Manifest when not nil.
	Manifest []byte
	// AgeKey, when not nil, is written to imagepath.AgeKey, mode 0600; the
	// output file is then 0600 too.
	AgeKey []byte
	// Files are extra files for the per-build segment.
	Files []File

	// Compression of every segment (default DefaultCompression).
	Compression cpio.Compression
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
	Path          string           `json:"path"`
	Bytes         int64            `json:"bytes"`
	Compression   cpio.Compression `json:"compression"`
	KernelVersion string           `json:"kernelVersion"`
	Segments      []Segment        `json:"segments"`
	Modules       []string         `json:"modules"`      // relative .ko paths
	MissingTools  []string         `json:"missingTools"` // default tools not on this host
	MissingMods   []string         `json:"missingModules"`
	AgeKey        bool             `json:"ageKey"`
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
//
// It is a composition: the cached segments' producers run in order while
// the installer is built, then the output is assembled from them and the
// per-build segments.
func Build(ctx context.Context, spec Spec, progress io.Writer) (string, *Report, error) {
	start := time.Now()
	b, err := newBuilder(spec, progress)
	if err != nil {
		return "", nil, err
	}
	defer b.close()
	rep := &Report{Path: b.spec.Output, Compression: b.spec.Compression, AgeKey: b.spec.AgeKey != nil, KernelVersion: filepath.Base(b.spec.ModulesDir)}
	installer := b.startInstaller(ctx)
	parts, err := b.cachedParts(ctx, []producer{baseSegment{}, modulesSegment{}, toolsSegment{}}, rep)
	bin := <-installer
	if err == nil {
		err = bin.err
	}
	if err != nil {
		return "", nil, err
	}
	t := time.Now()
	if parts, err = b.perBuildParts(parts, bin.path); err != nil {
		return "", nil, err
	}
	if rep.Bytes, err = b.assemble(parts); err != nil {
		return "", nil, fmt.Errorf("write initramfs %s: %w", b.spec.Output, err)
	}
	b.finish(rep, parts, bin, time.Since(t))
	rep.Duration = time.Since(start)
	return b.spec.Output, rep, nil
}

// newBuilder checks spec, fills in its defaults and prepares the cache.
func newBuilder(spec Spec, progress io.Writer) (*builder, error) {
	if progress == nil {
		progress = io.Discard
	}
	if spec.Output == "" {
		return nil, fmt.Errorf("initramfs: no output path")
	}
	s, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &builder{spec: s, progress: progress, cache: cache{dir: s.CacheDir}}
	if s.NoCache {
		if b.cache.dir, err = b.tempDir("nixlos-initramfs-nocache-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(b.cache.dir, 0o755); err != nil {
		b.close()
		return nil, fmt.Errorf("initramfs cache: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.Output), 0o755); err != nil {
		b.close()
		return nil, fmt.Errorf("initramfs output: %w", err)
	}
	if b.modDir, err = FindModuleDir(s.GoModuleDir); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// used lists the cache entries this build used (never a given binary).
func (b *builder) used(bin installerResult, rep *Report) []string {
	var used []string
	if strings.HasPrefix(bin.path, b.cache.dir+string(filepath.Separator)) {
		used = append(used, bin.path)
	}
	for _, seg := range rep.Segments {
		if seg.Path != "" {
			used = append(used, seg.Path)
		}
	}
	return used
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
	if err := checkCompression(s.Compression); err != nil {
		return s, err
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
		if elfdeps.LookTool(t) == "" {
			return s, fmt.Errorf("tool %s: not found in %s", t, strings.Join(elfdeps.ToolPath, ":"))
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
