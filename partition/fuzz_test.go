package partition

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nixlos/nixlos/disko"
)

// FuzzLoad feeds arbitrary JSON to the layout decoder, defaults, validation
// and the planner: none may panic, and a layout that loads plans or fails
// with an error.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(corpusDir, "*.sparse.json"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"disk":{"a":{"device":"/dev/sda","content":{"type":"table","format":"msdos","partitions":[{"start":"1","end":"-1s"}]}}}}`))
	f.Add([]byte(`{"zpool":{"z":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := disko.Load(data)
		if err != nil {
			return
		}
		targets := map[string]Target{}
		for k := range d.Disk {
			targets[k] = Target{SizeBytes: 64 << 20}
		}
		_, _ = NewPlan(d, targets, Options{})
	})
}

// FuzzParseSize checks ParseSize never panics and round-trips plain sizes.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"8G", "500M", "1000K", "0", "16777216s", "3TiB", "18446744073709551615", "99999999999P", "-1G", "1.5G", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && s != "" && s[0] >= '0' && s[0] <= '9' {
			num, unit := splitNumber(s)
			if unit == "" && num != "" && n == 0 && num != "0" && num[0] != '0' {
				t.Fatalf("ParseSize(%q) = 0", s)
			}
		}
	})
}

// FuzzSgdiskPlacement drives the sgdisk simulator with arbitrary start/end
// strings: it must not panic, and a placed partition lies inside the disk.
func FuzzSgdiskPlacement(f *testing.F) {
	f.Add("0", "+500M", "1M", "128M")
	f.Add("40s", "-0", "0", "-1G")
	f.Fuzz(func(t *testing.T, s1, e1, s2, e2 string) {
		sim, _ := newSgdiskSim(1 << 21)
		for _, se := range [][2]string{{s1, e1}, {s2, e2}} {
			x, err := sim.create(se[0], se[1], 0)
			if err == nil && (x.first < sim.firstUsable || x.last > sim.lastUsable || x.first > x.last) {
				t.Fatalf("placed %v outside %d-%d", x, sim.firstUsable, sim.lastUsable)
			}
		}
	})
}
