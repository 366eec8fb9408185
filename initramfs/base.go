package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/u-root/pkg/cpio"
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

// buildBase compiles the u-root commands as one busybox binary with u-root's
// builder (mkuimage/uimage) and writes the base archive, normalised (uid/gid
// 0, fixed mtimes), compressed with c, to dst.
func buildBase(ctx context.Context, modDir string, commands []string, c Compression, mtime int64, dst string, progress io.Writer) (int64, error) {
	tmp, err := os.MkdirTemp("", "nixlos-uroot-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	raw := filepath.Join(tmp, "base.cpio")
	logw := bufio.NewWriter(io.Discard)
	if progress != nil {
		logw = bufio.NewWriter(&prefixWriter{w: progress, prefix: "  u-root: "})
	}
	l := llog.New(slog.LevelWarn, llog.WritePrintf(logw))
	env := golang.Default(golang.WithWorkingDir(modDir), golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"))
	err = uimage.Create(l,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithBusyboxCommands(commands...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithUinitCommand(""),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(raw),
	)
	logw.Flush()
	if err != nil {
		return 0, fmt.Errorf("u-root build (module dir %s): %w", modDir, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Re-write the archive normalised, in its own order.
	f, err := os.Open(raw)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rr, err := cpio.Newc.NewFileReader(f)
	if err != nil {
		return 0, err
	}
	recs, err := cpio.ReadAllRecords(rr)
	if err != nil {
		return 0, fmt.Errorf("read u-root archive: %w", err)
	}
	return writeAtomic(dst, func(w io.Writer) error {
		cw, err := compressTo(c, w)
		if err != nil {
			return err
		}
		rw := cpio.Newc.Writer(cw)
		for _, r := range recs {
			r = cpio.MakeReproducible(r)
			r.MTime = uint64(mtime)
			if err := rw.WriteRecord(r); err != nil {
				return err
			}
		}
		if err := cpio.WriteTrailer(rw); err != nil {
			return err
		}
		return cw.Close()
	})
}

type prefixWriter struct {
	w      io.Writer
	prefix string
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !p.mid {
			io.WriteString(p.w, p.prefix)
		}
		p.w.Write(line)
		p.mid = line[len(line)-1] != '\n'
	}
	return len(b), nil
}
