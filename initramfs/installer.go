package initramfs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/nixlos/nixlos/internal/imagepath"
)

// The per-build segments, never cached: the age key alone, and the
// installer with the flake, manifest and extra files. Both are written
// straight into the output (builder.assemble). The installer binary itself
// is cached, by the identity of the module's Go sources.

// installerResult is the installer binary the build segment gets.
type installerResult struct {
	path string
	err  error
	dur  time.Duration
	hit  bool // from the cache
}

// startInstaller gets the installer binary (given, cached or built with
// go build) concurrently with the cached segments.
func (b *builder) startInstaller(ctx context.Context) <-chan installerResult {
	ch := make(chan installerResult, 1)
	if b.spec.InstallerBinary != "" {
		ch <- installerResult{path: b.spec.InstallerBinary}
		return ch
	}
	binDir, err := b.tempDir("nixlos-installer-")
	if err != nil {
		ch <- installerResult{err: err}
		return ch
	}
	go func() {
		t := time.Now()
		p, err := cachedInstaller(ctx, b.modDir, b.spec, b.cache.dir, binDir)
		ch <- installerResult{path: p, err: err, dur: time.Since(t), hit: err == nil && strings.HasPrefix(p, b.cache.dir)}
	}()
	return ch
}

// how says where the binary came from, for the progress line.
func (r installerResult) how(s Spec) string {
	switch {
	case r.hit:
		return "cached"
	case s.InstallerBinary != "":
		return "given"
	}
	return "go build"
}

// keyTree is the segment that holds the age key alone. It is never lz4:
// lz4 keeps short random strings as literals, so the key would be readable
// in the media with strings(1).
func (s Spec) keyTree() *cpio.Tree {
	t := cpio.NewTree()
	t.Dir(imagepath.Dir, 0o755)
	t.File(imagepath.AgeKey, s.AgeKey, 0o600)
	return t
}

// buildTree fills the per-build segment.
func (s Spec) buildTree(installer string) (*cpio.Tree, error) {
	t := cpio.NewTree()
	if err := t.HostFile("bin/installer", installer); err != nil {
		return nil, fmt.Errorf("installer binary: %w", err)
	}
	t.Chmod("bin/installer", 0o755)
	if s.UinitScript != "" {
		t.File("bin/uinit", []byte("#!/bin/sh\n"+loadBootModules+s.UinitScript), 0o755)
	} else {
		t.Symlink("bin/uinit", "installer")
	}
	t.Dir(imagepath.Dir, 0o755)
	if s.FlakeDir != "" {
		if err := addDir(t, s.FlakeDir, imagepath.Flake); err != nil {
			return nil, fmt.Errorf("flake %s: %w", s.FlakeDir, err)
		}
	}
	if s.Manifest != nil {
		t.File(imagepath.Manifest, s.Manifest, 0o644)
	}
	for _, f := range s.Files {
		m := f.Mode.Perm()
		if m == 0 {
			m = 0o644
		}
		t.File(f.Path, f.Data, uint64(m))
	}
	return t, nil
}

// addDir copies a host directory tree (regular files, dirs, symlinks).
func addDir(t *cpio.Tree, src, dst string) error {
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
			t.Dir(name, uint64(fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.Symlink(name, target)
		case fi.Mode().IsRegular():
			return t.HostFile(name, p)
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
	if err := fsutil.CopyFile(out, cached, 0o755); err != nil {
		return "", err
	}
	return cached, nil
}
