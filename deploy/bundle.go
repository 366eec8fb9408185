package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/initramfs/cpio"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/imagepath"
	"github.com/nixlos/nixlos/pxe"
)

// buildInfo is what deploy reads from a `mkiso build` output.
type buildInfo struct {
	Dir       string // the PXE bundle directory (vmlinuz, initrd, nix-cache/)
	Kernel    string
	Initrd    string
	Manifest  []byte
	Parsed    *flake.Manifest
	Installer []byte // bin/installer of the initrd (static)
	Sops      map[string][]byte
	KeyInside bool // the build embedded an age key
	Closure   bool // the bundle carries a closure cache
}

// readBuild opens DIR/pxe (or DIR) and reads the manifest, the installer
// and the hosts' sops files from the initrd.
func readBuild(dir string) (*buildInfo, error) {
	fix := "build it first: mkiso build FLAKE --format pxe [--closure] --host NAME --out DIR, then --build DIR (or give --flake FLAKE)"
	if dir == "" {
		return nil, errs.BadInput("--build", fix, "no build directory given")
	}
	b, err := pxe.OpenBundle(dir, "")
	if err != nil {
		return nil, errs.BadInput(dir, fix, "%v", err)
	}
	bi := &buildInfo{Dir: b.Dir, Kernel: filepath.Join(b.Dir, pxe.KernelFile), Initrd: filepath.Join(b.Dir, pxe.InitrdFile), Sops: map[string][]byte{}}
	if fi, err := os.Stat(filepath.Join(b.Dir, pxe.CacheDir, "nix-cache-info")); err == nil && fi.Mode().IsRegular() {
		bi.Closure = true
	}
	f, err := os.Open(bi.Initrd)
	if err != nil {
		return nil, errs.BadInput(bi.Initrd, fix, "%v", err)
	}
	defer f.Close()
	files := map[string][]byte{}
	flakePrefix := imagepath.Flake + "/"
	err = cpio.Walk(f, func(e cpio.Entry, data io.Reader) error {
		name := strings.TrimPrefix(path.Clean("/"+e.Name), "/")
		switch {
		case name == imagepath.Manifest, name == "bin/installer", strings.HasPrefix(name, flakePrefix) && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".json")):
			d, err := io.ReadAll(data)
			if err != nil {
				return err
			}
			files[name] = d
		case name == imagepath.AgeKey:
			bi.KeyInside = true
		}
		return nil
	})
	if err != nil {
		return nil, errs.BadInput(bi.Initrd, fix, "cannot read the initrd: %v", err)
	}
	bi.Manifest, bi.Installer = files[imagepath.Manifest], files["bin/installer"]
	if bi.Manifest == nil || bi.Installer == nil {
		return nil, errs.BadInput(bi.Initrd, fix, "not a nixlos installer initrd (no manifest or installer)")
	}
	var m flake.Manifest
	if err := json.Unmarshal(bi.Manifest, &m); err != nil {
		return nil, errs.BadInput(bi.Initrd, fix, "manifest: %v", err)
	}
	bi.Parsed = &m
	for name, d := range files {
		if rel, ok := strings.CutPrefix(name, flakePrefix); ok {
			bi.Sops[rel] = d
		}
	}
	return bi, nil
}

func (bi *buildInfo) hosts() []string {
	var hs []string
	for h := range bi.Parsed.Hosts {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	return hs
}

// kexecBinary builds u-root's kexec statically (cached by the Go build cache).
func kexecBinary(ctx context.Context, dir string) (string, error) {
	mod, err := initramfs.FindModuleDir("")
	if err != nil {
		return "", fmt.Errorf("kexec: %w (fix: run mkiso from the nixlos source tree or set NIXLOS_SRC)", err)
	}
	out := filepath.Join(dir, "kexec")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/u-root/u-root/cmds/core/kexec")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build u-root kexec: %w\n%s", err, b.String())
	}
	return out, nil
}
