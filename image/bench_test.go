package image

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
)

// BenchmarkISOAssembly times the ISO assembly step — staged tree and boot
// images in, hybrid ISO out — with our go-diskfs path and with
// `xorriso -as mkisofs` on the same staged tree, in the same run, and
// reports go/xorriso as "ratio" (goal ≤ 1.0). Staging is not timed.
// NIXLOS_BENCH_INITRD picks the initrd; by default a 32 MiB stand-in.
func BenchmarkISOAssembly(b *testing.B) {
	testenv.Tools(b, "xorriso")
	requireFile(b, testKernel)
	initrd := os.Getenv("NIXLOS_BENCH_INITRD")
	if initrd == "" {
		initrd = filepath.Join(b.TempDir(), "initrd")
		data := make([]byte, 32<<20)
		rand.New(rand.NewSource(1)).Read(data)
		if err := os.WriteFile(initrd, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	spec := Spec{Kernel: testKernel, Initrd: initrd, Hosts: []string{"server"}, Epoch: 1}
	seed, err := spec.seed()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	stage := filepath.Join(dir, "stage")
	if err := stageISO(spec, seed, stage); err != nil {
		b.Fatal(err)
	}
	var goTime, xTime time.Duration
	var size int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		work := filepath.Join(dir, "work")
		os.RemoveAll(work)
		if out, err := exec.Command("cp", "-al", stage, work).CombinedOutput(); err != nil {
			b.Fatalf("cp -al: %v %s", err, out)
		}
		b.StartTimer()
		start := time.Now()
		size, err = assembleISO(work, filepath.Join(dir, "go.iso"), spec.label(), seed, spec.Epoch, DebianTools.IsohdpfxBin)
		if err != nil {
			b.Fatal(err)
		}
		goTime += time.Since(start)
		start = time.Now()
		xorrisoISO(b, stage, filepath.Join(dir, "xorriso.iso"), spec.label())
		xTime += time.Since(start)
	}
	fi, _ := os.Stat(filepath.Join(dir, "xorriso.iso"))
	b.ReportMetric(float64(goTime)/float64(xTime), "ratio")
	b.ReportMetric(goTime.Seconds()*1000/float64(b.N), "go-ms/op")
	b.ReportMetric(xTime.Seconds()*1000/float64(b.N), "xorriso-ms/op")
	b.ReportMetric(float64(size)/(1<<20), "go-MiB")
	b.ReportMetric(float64(fi.Size())/(1<<20), "xorriso-MiB")
}
