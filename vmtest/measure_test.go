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
	"github.com/nixlos/nixlos/initramfs/cpio"
)

// BenchmarkMeasureCompression compares the compressions for the installer
// initramfs: compressed size and compression time of the whole archive
// (not for the per-segment zstd+lz4 profile), and power-on → ready of the
// segmented initrd under TCG. A measurement, not a test:
// `go test -run XXX -bench MeasureCompression -benchtime 1x ./vmtest`
// (README.md in initramfs/ records the figures).
func BenchmarkMeasureCompression(b *testing.B) {
	t := b
	SkipUnlessVM(t)
	ctx := context.Background()
	dir := t.TempDir()
	raw, _, err := initramfs.Build(ctx, initramfs.Spec{Output: filepath.Join(dir, "raw.cpio"), Compression: cpio.None}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(raw)
	t.Logf("uncompressed: %.1f MiB", float64(fi.Size())/(1<<20))
	for _, c := range []cpio.Compression{initramfs.ZstdLZ4, cpio.Zstd, cpio.LZ4, cpio.XZ, cpio.Gzip} {
		var size int64
		var ctime time.Duration
		if c != initramfs.ZstdLZ4 {
			size, ctime = compressWhole(t, raw, filepath.Join(dir, "whole."+string(c)), c)
		}
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
		t.Logf("%-8s whole-archive %.1f MiB in %.1f s; segmented initrd %.1f MiB; power-on→ready %.1f s",
			c, float64(size)/(1<<20), ctime.Seconds(), float64(rep.Bytes)/(1<<20), boot.Seconds())
	}
}

// compressWhole compresses the file raw to out with c and returns the
// compressed size and the time it took.
func compressWhole(t testing.TB, raw, out string, c cpio.Compression) (int64, time.Duration) {
	in, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	w, err := cpio.NewCompressor(c, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	return size, time.Since(start)
}
