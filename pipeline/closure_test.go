package pipeline

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/image"
)

// closureFlake is testdata/closure-flake: one host, "tiny", whose toplevel
// is a builtin:buildenv derivation.
func closureFlake() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "closure-flake")
}

// TestBuildClosure builds the fixture with --closure and checks the
// contract: the cache is in the ISO's and the USB image's filesystems and
// in the PXE bundle, never in the initramfs; the manifest names the
// toplevel and the public key; inspect lists the closure and its size; the
// secret key is nowhere in the outputs; and `nix copy --from` the ISO's
// cache into a fresh store succeeds with the manifest's key and fails with
// another.
func TestBuildClosure(t *testing.T) {
	needBuild(t)
	out := t.TempDir()
	opt := testOptions(t, closureFlake(), out)
	opt.Closure = true
	res, log := build(t, opt)
	t.Logf("build:\n%s", log)
	if res.Cache == nil {
		t.Fatal("no cache in the result")
	}
	sum := res.Cache.Closures["tiny"]
	if sum.Paths != 3 || !sum.Signed || sum.NarSize == 0 || !strings.HasSuffix(sum.Toplevel, "-nixos-system-tiny") {
		t.Fatalf("closure %+v", sum)
	}
	if !strings.Contains(log, StepClosure) {
		t.Errorf("no %s step in the log", StepClosure)
	}

	// The manifest inside the initramfs: toplevel and key, no cache files.
	initrd, err := os.ReadFile(filepath.Join(out, image.PXEDir, image.PXEInitrd))
	if err != nil {
		t.Fatal(err)
	}
	c, err := image.ReadInitrd(initrd)
	if err != nil {
		t.Fatal(err)
	}
	m, err := flake.Decode(c.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cache == nil || m.Cache.PublicKey != res.Cache.PublicKey || m.Cache.Dir != closure.CacheDir || m.Hosts["tiny"].Toplevel != sum.Toplevel {
		t.Errorf("manifest cache %+v, toplevel %q", m.Cache, m.Hosts["tiny"].Toplevel)
	}
	for _, n := range c.Names {
		if strings.Contains(n, closure.CacheDir) || strings.HasSuffix(n, ".narinfo") || strings.Contains(n, "nix/store") {
			t.Errorf("the initramfs holds %s", n)
		}
	}

	// inspect on every medium lists the closure with the same sizes.
	for _, medium := range []string{image.ISOName, image.USBName, image.PXEDir} {
		info, err := image.Inspect(filepath.Join(out, medium))
		if err != nil {
			t.Fatalf("inspect %s: %v", medium, err)
		}
		got := info.Closures["tiny"]
		if info.Cache == nil || !info.Cache.Present || info.Cache.PublicKey != res.Cache.PublicKey ||
			got.Toplevel != sum.Toplevel || got.Paths != sum.Paths || got.NarSize != sum.NarSize || !got.Signed {
			t.Errorf("inspect %s: cache %+v closure %+v, want %+v", medium, info.Cache, got, sum)
		}
	}
	cmd := exec.Command("go", "run", "./cmd/mkiso", "inspect", filepath.Join(out, image.ISOName))
	cmd.Dir = filepath.Join(closureFlake(), "..", "..", "..")
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "closure:    tiny "+sum.Toplevel+": 3 paths") {
		t.Errorf("mkiso inspect: %v\n%s", err, b)
	}

	// No secret key anywhere under out (names and contents).
	filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		if strings.Contains(strings.ToLower(fi.Name()), "secret") {
			t.Errorf("%s in the outputs", p)
		}
		return nil
	})

	// Every medium carries the same cache files.
	iso, _, doneISO, err := image.OpenCache(filepath.Join(out, image.ISOName))
	if err != nil {
		t.Fatal(err)
	}
	defer doneISO()
	usb, where, doneUSB, err := image.OpenCache(filepath.Join(out, image.USBName))
	if err != nil {
		t.Fatal(err)
	}
	defer doneUSB()
	if !strings.Contains(where, closure.CachePartName) {
		t.Errorf("usb cache at %s", where)
	}
	pxeCache := filepath.Join(out, image.PXEDir, closure.CacheDir)
	n := 0
	filepath.Walk(pxeCache, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(pxeCache, p)
		want, _ := os.ReadFile(p)
		for name, fsys := range map[string]fs.FS{"iso": iso, "usb": usb} {
			if got, err := fs.ReadFile(fsys, filepath.ToSlash(rel)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s cache %s: %v (%d bytes, want %d)", name, rel, err, len(got), len(want))
			}
		}
		n++
		return nil
	})
	if n != 7 { // nix-cache-info, 3 narinfo, 3 nar
		t.Errorf("%d cache files, want 7", n)
	}

	// nix copy from the medium's cache into a fresh store: with the
	// manifest's key it succeeds, with another it fails. The installer's
	// own function (Locate: loop-mount read-only; Copy) first, when we may
	// mount and the kernel has iso9660 (this host's kernel may not: the VM
	// test covers it then).
	if fss, _ := os.ReadFile("/proc/filesystems"); os.Getuid() != 0 || !bytes.Contains(fss, []byte("iso9660")) {
		t.Log("no iso9660 in this kernel or not root: installer-side Locate on the ISO not tried here")
	} else {
		var llog bytes.Buffer
		src, err := closure.Locate(context.Background(), closure.LocateOptions{
			Toplevel: sum.Toplevel, PublicKey: m.Cache.PublicKey,
			Devices: []string{filepath.Join(out, image.ISOName)}, MountPoint: t.TempDir(), Log: &llog,
		})
		if err != nil {
			t.Fatalf("locate on the ISO: %v\n%s", err, llog.String())
		}
		defer src.Close()
		var clog bytes.Buffer
		root := t.TempDir()
		if err := src.Copy(context.Background(), root, sum.Toplevel, &clog); err != nil {
			t.Errorf("copy from the ISO: %v\n%s", err, clog.String())
		}
		if _, err := os.Stat(filepath.Join(root, sum.Toplevel, "etc", "motd")); err != nil {
			t.Errorf("copied system: %v", err)
		}
	}
	nixCopy := func(key string) (string, error) {
		store := t.TempDir()
		args := append(append([]string{}, closure.NixFlags...), "copy", "--from", "file://"+pxeCache, "--store", store,
			"--option", "trusted-public-keys", key, sum.Toplevel)
		b, err := exec.Command("nix", args...).CombinedOutput()
		if err == nil {
			if _, serr := os.Stat(filepath.Join(store, sum.Toplevel, "etc", "motd")); serr != nil {
				return string(b), serr
			}
		}
		return string(b), err
	}
	if msg, err := nixCopy(res.Cache.PublicKey); err != nil {
		t.Errorf("nix copy with the manifest's key: %v\n%s", err, msg)
	}
	other, _ := closure.GenerateKey(strings.SplitN(res.Cache.PublicKey, ":", 2)[0])
	if msg, err := nixCopy(other.Public().String()); err == nil || !strings.Contains(msg, "lacks a valid signature") {
		t.Errorf("nix copy with another key: err %v\n%s", err, msg)
	}
}
