package partition

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/partition/internal/corpus"
)

// The disko conformance corpus (copied from /work/shared/conformance/disko):
// for every example, both the evaluated and the sparse form must plan to
// disko's measured geometry, GPT names, type GUIDs and mount order.

const corpusDir = "testdata/disko"

func corpusExamples(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.expect.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance examples in %s: %v", corpusDir, err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".expect.json"))
	}
	return names
}

// planFile plans a layout file with every disk an empty 8 GiB virtual disk.
func planFile(t testing.TB, path string) *Plan {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := disko.Load(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	targets := map[string]Target{}
	for k := range d.Disk {
		targets[k] = Target{SizeBytes: 8 << 30}
	}
	p, err := NewPlan(d, targets, Options{})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

func TestConformance(t *testing.T) {
	for _, name := range corpusExamples(t) {
		exp := corpus.LoadExpect(t, corpusDir, name)
		for _, form := range []string{".json", ".sparse.json"} {
			t.Run(name+form, func(t *testing.T) {
				p := planFile(t, filepath.Join(corpusDir, name+form))
				for key, ed := range exp.Disks {
					dp := p.Disks[key]
					if dp == nil {
						t.Fatalf("disk %s missing from plan", key)
					}
					comparePartitions(t, "disk "+key, ed.Content.Partitions, dp.Partitions, 0)
				}
				for key, em := range exp.Mdadm {
					mp := p.Mdadm[key]
					if mp == nil {
						t.Fatalf("mdadm %s missing from plan", key)
					}
					comparePartitions(t, "mdadm "+key, em.Content.Partitions, mp.Partitions, mp.SizeBytes/SectorSize)
				}
				if !reflect.DeepEqual(p.MountOrder, exp.MountOrder) {
					t.Errorf("mountOrder = %q, want %q", p.MountOrder, exp.MountOrder)
				}
			})
		}
	}
}

// comparePartitions checks number, GPT name, type GUID and sectors. For an
// uncertain (md-internal) geometry it checks sgdisk's rule on the planned
// array size: start 2048, a 100% partition ends at the aligned-down end.
func comparePartitions(t *testing.T, where string, want []corpus.Part, got []*PartPlan, mdSectors uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d partitions, want %d", where, len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		id := fmt.Sprintf("%s partition %d", where, i)
		if g.Number != w.Number || g.Label != w.GPTPartitionName || g.TypeGUID != w.TypeGUID || g.Device != w.Device {
			t.Errorf("%s: got number %d label %q type %s device %s, want %d %q %s %s", id, g.Number, g.Label, g.TypeGUID, g.Device, w.Number, w.GPTPartitionName, w.TypeGUID, w.Device)
		}
		ws, okS := corpus.Sector(w.StartSector)
		we, okE := corpus.Sector(w.EndSector)
		if !okS || !okE {
			if mdSectors == 0 {
				t.Fatalf("%s: uncertain geometry outside an md array", id)
			}
			ws, we = 2048, (mdSectors-33)/2048*2048-1
			if i != len(want)-1 {
				continue // only the trailing 100% partition has a closed formula
			}
		}
		if g.StartSector != ws || g.EndSector != we {
			t.Errorf("%s (%s): sectors %d-%d, want %d-%d", id, g.Label, g.StartSector, g.EndSector, ws, we)
		}
	}
}

// TestCreateSteps compares the plan's steps with the commands disko ran
// (createCommands), leaving out the wipe nixlos adds before them.
func TestCreateSteps(t *testing.T) {
	for _, name := range corpusExamples(t) {
		exp := corpus.LoadExpect(t, corpusDir, name)
		for _, form := range []string{".json", ".sparse.json"} {
			t.Run(name+form, func(t *testing.T) {
				p := planFile(t, filepath.Join(corpusDir, name+form))
				var got [][]string
				for _, s := range p.Steps {
					if s.Op != OpWipe {
						got = append(got, s.Argv)
					}
				}
				if !reflect.DeepEqual(got, exp.CreateCommands) {
					t.Errorf("steps differ from createCommands:\n got: %q\nwant: %q", got, exp.CreateCommands)
				}
			})
		}
	}
}

// TestMountCommands compares the plan's mount argv with disko's.
func TestMountCommands(t *testing.T) {
	for _, name := range corpusExamples(t) {
		exp := corpus.LoadExpect(t, corpusDir, name)
		t.Run(name, func(t *testing.T) {
			p := planFile(t, filepath.Join(corpusDir, name+".json"))
			var got [][]string
			for _, m := range p.Mounts {
				got = append(got, m.Argv)
			}
			var want [][]string
			for _, c := range exp.MountCommands {
				if c[0] == "mount" {
					want = append(want, c)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("mounts differ:\n got: %q\nwant: %q", got, want)
			}
		})
	}
}
