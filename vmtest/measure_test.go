package vmtest

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nixlos/nixlos/initramfs"
)

// TestMeasureCompression compares zstd, xz and gzip for the installer
// initramfs: compressed size and compression time of the whole archive,
// and power-on → ready under TCG. Opt-in: NIXLOS_MEASURE=1 (README.md in
// initramfs/ records the figures).
func TestMeasureCompression(t *testing.T) {
	if os.Getenv("NIXLOS_MEASURE") == "" {
		t.Skip("measurement: set NIXLOS_MEASURE=1")
	}
	SkipUnlessVM(t)
	ctx := context.Background()
	dir := t.TempDir()
	raw, _, err := initramfs.Build(ctx, initramfs.Spec{Output: filepath.Join(dir, "raw.cpio"), Compression: initramfs.None}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(raw)
	t.Logf("uncompressed: %.1f MiB", float64(fi.Size())/(1<<20))
	for _, c := range []initramfs.Compression{initramfs.Zstd, initramfs.XZ, initramfs.Gzip} {
		in, _ := os.Open(raw)
		out, _ := os.Create(filepath.Join(dir, "whole."+string(c)))
		start := time.Now()
		w, err := initramfs.NewCompressor(c, out)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(w, in)
		w.Close()
		ctime := time.Since(start)
		in.Close()
		size, _ := out.Seek(0, io.SeekCurrent)
		out.Close()

		initrd, rep, err := initramfs.Build(ctx, initramfs.Spec{Output: filepath.Join(dir, "initrd."+string(c)), Compression: c, Version: "measure"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		vm := StartT(t, Options{Name: "measure-" + string(c), Kernel: DefaultKernel(), Initrd: initrd, Append: "console=ttyS0"})
		if _, err := vm.Expect(ctx, regexp.MustCompile(`nixlos-installer measure ready`), 5*time.Minute); err != nil {
			t.Fatal(err)
		}
		boot := vm.Elapsed()
		vm.Kill()
		t.Logf("%-5s whole-archive %.1f MiB in %.1f s; segmented initrd %.1f MiB; power-on→ready %.1f s",
			c, float64(size)/(1<<20), ctime.Seconds(), float64(rep.Bytes)/(1<<20), boot.Seconds())
	}
}
