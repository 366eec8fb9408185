package apply

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/partition"
)

// BenchmarkApplySimpleEFI compares nixlos's apply of simple-efi with disko's
// recorded createCommands (sgdisk, mkfs) run on the same loop device, and
// reports the ratio (goal ≤ 1.1). The baseline adds `partx -u` after each
// sgdisk call: it is what partprobe does for disko on a kernel that parses
// partition tables, which this host's kernel does not.
func BenchmarkApplySimpleEFI(b *testing.B) {
	testenv.Root(b)
	data, _ := os.ReadFile(filepath.Join(corpusDir, "simple-efi.json"))
	raw, _ := os.ReadFile(filepath.Join(corpusDir, "simple-efi.expect.json"))
	var exp struct {
		CreateCommands [][]string `json:"createCommands"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(b.TempDir(), "disk.img")
	os.WriteFile(img, nil, 0o600)
	os.Truncate(img, 8<<30)
	out, err := exec.Command("losetup", "--find", "--partscan", "--show", img).Output()
	if err != nil {
		b.Fatal(err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "--detach", dev).Run()

	var nixlos, script time.Duration
	for b.Loop() {
		start := time.Now()
		d, _ := disko.Load(data)
		p, err := partition.NewPlan(d, map[string]partition.Target{"main": {Device: dev, SizeBytes: 8 << 30}}, partition.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := (&Session{Plan: p}).Apply(); err != nil {
			b.Fatal(err)
		}
		nixlos += time.Since(start)

		wipeAll(b, dev)
		start = time.Now()
		runScript(b, exp.CreateCommands, dev)
		script += time.Since(start)
		wipeAll(b, dev)
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(nixlos/n)/1e6, "ms-nixlos/op")
	b.ReportMetric(float64(script/n)/1e6, "ms-disko-cmds/op")
	b.ReportMetric(float64(nixlos)/float64(script), "ratio")
}

func wipeAll(b *testing.B, dev string) {
	parts, _ := filepath.Glob(dev + "p*")
	for _, p := range parts {
		exec.Command("wipefs", "--all", "--force", p).Run()
	}
	exec.Command("wipefs", "--all", "--force", dev).Run()
	exec.Command("partx", "--delete", dev).Run()
}

// runScript runs disko's recorded commands with its device paths replaced
// by the loop device and its partitions.
func runScript(b *testing.B, cmds [][]string, dev string) {
	r := strings.NewReplacer("/dev/disk/by-id/some-disk-id", dev,
		"/dev/disk/by-partlabel/disk-main-ESP", dev+"p1", "/dev/disk/by-partlabel/disk-main-root", dev+"p2")
	for _, c := range cmds {
		argv := make([]string, len(c))
		for i, a := range c {
			argv[i] = r.Replace(a)
		}
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%q: %v %s", argv, err, out)
		}
		if argv[0] == "sgdisk" {
			exec.Command("partx", "--update", dev).Run()
		}
	}
}
