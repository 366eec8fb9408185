package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/fsutil"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	ucpio "github.com/u-root/u-root/pkg/cpio"
	"github.com/u-root/uio/llog"
)

// DefaultCommands are the u-root commands of the base archive: u-root's
// "core" set (init, gosh, the usual tools) plus modprobe.
var DefaultCommands = []string{
	"github.com/u-root/u-root/cmds/core/*",
	"github.com/u-root/u-root/cmds/exp/modprobe",
}

// nixlosModule is the Go module path of this repository.
const nixlosModule = "github.com/nixlos/nixlos"

// FindModuleDir locates the Go module directory used to compile u-root and
// the installer: a directory whose go.mod requires github.com/u-root/u-root
// (the nixlos repository itself). It tries, in order: dir (if not empty),
// $NIXLOS_SRC, the current directory and its parents, and the source
// directory this package was compiled from (unless built with -trimpath).
func FindModuleDir(dir string) (string, error) {
	if dir != "" {
		if err := checkModuleDir(dir); err != nil {
			return "", err
		}
		return filepath.Abs(dir)
	}
	var tried []string
	try := func(d string) (string, bool) {
		for d != "" {
			tried = append(tried, d)
			if checkModuleDir(d) == nil {
				return d, true
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
		return "", false
	}
	if env := os.Getenv("NIXLOS_SRC"); env != "" {
		if err := checkModuleDir(env); err != nil {
			return "", fmt.Errorf("NIXLOS_SRC: %w", err)
		}
		return filepath.Abs(env)
	}
	if wd, err := os.Getwd(); err == nil {
		if d, ok := try(wd); ok {
			return d, nil
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if d, ok := try(filepath.Dir(file)); ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("no Go module requiring github.com/u-root/u-root found (looked in %s); set Spec.GoModuleDir, $NIXLOS_SRC or run from a nixlos checkout", strings.Join(tried, ", "))
}

func checkModuleDir(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return fmt.Errorf("go module dir %s: %w", dir, err)
	}
	if !bytes.Contains(data, []byte("github.com/u-root/u-root ")) {
		return fmt.Errorf("go module dir %s: go.mod does not require github.com/u-root/u-root", dir)
	}
	return nil
}

// goVersion returns the `go version` of the toolchain that builds.
func goVersion(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w (is the Go toolchain installed and in PATH?)", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// baseSegment is u-root: the commands compiled as one busybox binary with
// u-root's builder, and u-root's DefaultRamfs. The uncompressed archive is
// cached on its own (key: baseFormat, go.mod, go.sum, the Go version, the
// commands, SourceDateEpoch); each compression of it is cached beside it,
// so a new profile does not compile u-root again.
type baseSegment struct{}

func (baseSegment) name() string { return "base" }

// rawKey names the uncompressed u-root archive.
func (baseSegment) rawKey(ctx context.Context, b *builder) (string, error) {
	gomod, err := os.ReadFile(filepath.Join(b.modDir, "go.mod"))
	if err != nil {
		return "", err
	}
	gosum, _ := os.ReadFile(filepath.Join(b.modDir, "go.sum"))
	gv, err := goVersion(ctx, b.modDir)
	if err != nil {
		return "", err
	}
	return hashKey(baseFormat, "base", string(gomod), string(gosum), gv, strings.Join(b.spec.Commands, "\n"),
		strconv.FormatInt(b.spec.SourceDateEpoch, 10)), nil
}

func (s baseSegment) key(ctx context.Context, b *builder, c cpio.Compression) (string, error) {
	raw, err := s.rawKey(ctx, b)
	if err != nil || c == cpio.None {
		return raw, err // uncompressed: the raw archive itself
	}
	return hashKey(raw, string(c)), nil
}

func (s baseSegment) make(ctx context.Context, b *builder, c cpio.Compression, dst string) ([]string, any, error) {
	rawKey, err := s.rawKey(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	raw := b.cache.path("base", rawKey, cpio.None)
	if raw == dst {
		return nil, nil, buildBase(ctx, b, raw)
	}
	if hit, _ := b.cache.lookup(raw); !hit {
		if err := buildBase(ctx, b, raw); err != nil {
			return nil, nil, err
		}
		if _, err := b.cache.store(raw, nil, nil); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, compressFile(raw, dst, c)
}

func (baseSegment) report(json.RawMessage, *Report) error { return nil }

// buildBase compiles the u-root commands as one busybox binary with u-root's
// builder (mkuimage/uimage) and writes the base archive, normalised (uid/gid
// 0, fixed mtimes), uncompressed, to dst.
func buildBase(ctx context.Context, b *builder, dst string) error {
	gv, err := goVersion(ctx, b.modDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.progress, "initramfs: base    building u-root (%d command patterns, Go %s)...\n", len(b.spec.Commands), gv)
	tmp, err := b.tempDir("nixlos-uroot-")
	if err != nil {
		return err
	}
	raw := filepath.Join(tmp, "base.cpio")
	logw := bufio.NewWriter(fsutil.NewPrefixWriter(b.progress, "  u-root: "))
	l := llog.New(slog.LevelWarn, llog.WritePrintf(logw))
	env := golang.Default(golang.WithWorkingDir(b.modDir), golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"))
	err = uimage.Create(l,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithBusyboxCommands(b.spec.Commands...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithUinitCommand(""),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(raw),
	)
	logw.Flush()
	if err != nil {
		return fmt.Errorf("u-root build (module dir %s): %w", b.modDir, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return normalise(raw, dst, b.spec.SourceDateEpoch)
}

// normalise re-writes the cpio archive src to dst reproducibly, in its
// own order: uid/gid 0, no device numbers, every mtime set to mtime.
func normalise(src, dst string, mtime int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	rr, err := ucpio.Newc.NewFileReader(f)
	if err != nil {
		return err
	}
	recs, err := ucpio.ReadAllRecords(rr)
	if err != nil {
		return fmt.Errorf("read u-root archive: %w", err)
	}
	_, err = fsutil.WriteAtomic(dst, 0o644, func(w io.Writer) error {
		rw := ucpio.Newc.Writer(w)
		for _, r := range recs {
			r = ucpio.MakeReproducible(r)
			r.MTime = uint64(mtime)
			if err := rw.WriteRecord(r); err != nil {
				return err
			}
		}
		return ucpio.WriteTrailer(rw)
	})
	return err
}

// compressFile writes src compressed with c to dst.
func compressFile(src, dst string, c cpio.Compression) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = fsutil.WriteAtomic(dst, 0o644, func(w io.Writer) error {
		cw, err := cpio.NewCompressor(c, w)
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
