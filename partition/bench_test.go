package partition

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nixlos/nixlos/disko"
)

// BenchmarkPlan decodes, normalizes and plans the largest conformance
// examples (goal: well under 1 ms per plan).
func BenchmarkPlan(b *testing.B) {
	for _, name := range []string{"btrfs-subvolumes", "luks-lvm", "mdadm"} {
		data, err := os.ReadFile(filepath.Join(corpusDir, name+".json"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				d, err := disko.Load(data)
				if err != nil {
					b.Fatal(err)
				}
				targets := map[string]Target{}
				for k := range d.Disk {
					targets[k] = Target{SizeBytes: 8 << 30}
				}
				if _, err := NewPlan(d, targets, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
