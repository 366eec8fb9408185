package partition

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/partition/internal/corpus"
)

// TestGeometryMatchesRealTools runs the table commands disko would run
// (sgdisk, parted, sfdisk: the plan's step argv) on sparse image files and
// checks the partitions they create are exactly the planned ones. It covers
// the conformance corpus, the edge-case layouts in testdata/layouts, and any
// *.json in $NIXLOS_DISKO_EXAMPLES (e.g. all of disko's examples).
func TestGeometryMatchesRealTools(t *testing.T) {
	testenv.Short(t, "slow: sgdisk takes about a second per call on an image file")
	testenv.Tools(t, []string{"sgdisk", "parted", "sfdisk"}...)
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.sparse.json"))
	more, _ := filepath.Glob("testdata/layouts/*.json")
	files = append(files, more...)
	if dir := os.Getenv("NIXLOS_DISKO_EXAMPLES"); dir != "" {
		extra, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		files = append(files, extra...)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p := planFile(t, f)
			for key, dp := range p.Disks {
				if dp.Table == "" {
					continue
				}
				img := filepath.Join(t.TempDir(), "disk.img")
				if err := os.WriteFile(img, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(img, int64(dp.SizeBytes)); err != nil {
					t.Fatal(err)
				}
				runTableSteps(t, p, dp, img)
				checkTable(t, key, dp, img)
			}
		})
	}
}

// runTableSteps runs the plan's table/partition/hybrid steps of one disk
// with the disk's path replaced by img.
func runTableSteps(t *testing.T, p *Plan, dp *DiskPlan, img string) {
	t.Helper()
	for _, s := range p.Steps {
		if len(s.Argv) == 0 || !isTableOp(s.Op) {
			continue
		}
		argv := append([]string(nil), s.Argv...)
		found := false
		for i, a := range argv {
			if a == dp.LayoutDevice {
				argv[i], found = img, true
			}
		}
		if !found {
			continue
		}
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", argv, err, out)
		}
	}
}

func isTableOp(op Op) bool {
	switch op {
	case OpTable, OpPartition, OpPartitionFlag, OpHybridMBR, OpHybridType, OpHybridActive:
		return true
	}
	return false
}

func checkTable(t *testing.T, key string, dp *DiskPlan, img string) {
	t.Helper()
	d := corpus.SfdiskJSON(t, img)
	if d.PartitionTable.Label != map[string]string{"gpt": "gpt", "msdos": "dos"}[dp.Table] {
		t.Errorf("disk %s: table %q, want %s", key, d.PartitionTable.Label, dp.Table)
	}
	got := d.PartitionTable.Partitions
	if len(got) != len(dp.Partitions) {
		t.Fatalf("disk %s: %d partitions on the image, planned %d", key, len(got), len(dp.Partitions))
	}
	byNum := map[string]int{}
	for i, g := range got {
		byNum[g.Node[len(img):]] = i
	}
	for _, pp := range dp.Partitions {
		i, ok := byNum[itoa(pp.Number)]
		if !ok {
			t.Errorf("disk %s: partition %d missing on the image", key, pp.Number)
			continue
		}
		g := got[i]
		if g.Start != pp.StartSector || g.Start+g.Size-1 != pp.EndSector {
			t.Errorf("disk %s partition %d: real %d-%d, planned %d-%d", key, pp.Number, g.Start, g.Start+g.Size-1, pp.StartSector, pp.EndSector)
		}
		if dp.Table == "gpt" && (!strings.EqualFold(g.Type, pp.TypeGUID) || g.Name != pp.Label) {
			t.Errorf("disk %s partition %d: real type %s name %q, planned %s %q", key, pp.Number, g.Type, g.Name, pp.TypeGUID, pp.Label)
		}
		if dp.Table == "msdos" && (g.Type != strings.TrimLeft(hex2(pp.MBRType), "0") || g.Boot != pp.Bootable) {
			t.Errorf("disk %s partition %d: real type %s bootable %v, planned %x %v", key, pp.Number, g.Type, g.Boot, pp.MBRType, pp.Bootable)
		}
	}
	if dp.Hybrid != nil {
		checkHybrid(t, key, dp, img)
	}
}

func checkHybrid(t *testing.T, key string, dp *DiskPlan, img string) {
	t.Helper()
	d := corpus.SfdiskJSON(t, "--label-nested", "dos", img)
	got := d.PartitionTable.Partitions
	if len(got) != len(dp.Hybrid.Slots) {
		t.Fatalf("disk %s: %d hybrid MBR entries, planned %d: %+v", key, len(got), len(dp.Hybrid.Slots), got)
	}
	for i, s := range dp.Hybrid.Slots {
		g := got[i]
		if g.Node != img+itoa(s.Slot) || g.Start != s.StartSector || g.Size != s.Sectors || g.Type != strings.TrimLeft(hex2(s.Type), "0") || g.Boot != s.Bootable {
			t.Errorf("disk %s MBR slot %d: real %+v, planned %+v", key, s.Slot, g, s)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func hex2(b uint8) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}
