package keep

import (
	"errors"
	"slices"
	"sort"
	"testing"
)

var fuzzLayouts = []string{"luks-lvm", "lvm-sizes-sort", "btrfs-subvolumes", "mdadm", "swap", "simple-efi",
	"legacy-table", "hybrid", "gpt-bios-compat", dataPart, luksHome, mdData}

var fuzzTypes = []string{"", "ext4", "xfs", "vfat", "btrfs", "swap", "crypto_LUKS", "LVM2_member", "linux_raid_member"}

// FuzzKeep plans random layouts (corpus layouts on random disk sizes)
// against random disk states with random WHATs: whenever the planner keeps
// volumes, no step of the plan it executes writes to a kept volume or
// anything it sits on, and every kept volume is in the executor's spec.
func FuzzKeep(f *testing.F) {
	f.Add(uint8(0), uint8(8), []byte{0, 1, 2}, []byte{})
	f.Add(uint8(2), uint8(8), []byte{5}, []byte{1, 0, 3, 9, 200})
	f.Add(uint8(11), uint8(6), []byte{1, 7}, []byte{0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, li, gib uint8, picks, muts []byte) {
		src := fuzzLayouts[int(li)%len(fuzzLayouts)]
		d, _ := layout(t, src)
		p, err := planOn(d, uint64(2+gib%30)<<30)
		if err != nil {
			return
		}
		st := installed(d, p)
		mutate(st, muts)
		names := newGraph(d, p).names()
		var what []string
		for _, b := range picks {
			what = append(what, names[int(b)%len(names)])
		}
		kp, err := NewPlan(d, p, st, ParseWhat(what))
		if err != nil {
			var re *RefuseError
			if errors.As(err, &re) && (re.Fix == "" || re.Volume == "") {
				t.Fatalf("refusal without volume or fix: %v", err)
			}
			return
		}
		spec := kp.Spec
		for _, v := range kp.Volumes {
			if v.Action != ActKeep {
				continue
			}
			in := spec.Kept(v.Device)
			switch v.Kind {
			case "subvolume":
				in = spec.KeptSubvolume(v.Device, v.Name)
			case "lvm_vg":
				in = slices.Contains(spec.VGs, v.Name)
			}
			if !in {
				t.Fatalf("%s %s is kept but not in the executor's spec %+v", v.Kind, v.Name, spec)
			}
		}
		q := p.WithKeep(spec)
		if v := q.KeepViolations(spec); len(v) > 0 {
			t.Fatalf("layout %s keep %q: steps write kept volumes: %v", src, what, v)
		}
	})
}

// mutate changes a recorded state by the bytes: each pair picks an item
// (signature, partition, LV, subvolume list) and what happens to it.
func mutate(st *State, muts []byte) {
	sigs := sortedKeys(st.Signatures)
	tables := sortedKeys(st.Tables)
	lvs := sortedKeys(st.LVs)
	for i := 0; i+1 < len(muts); i += 2 {
		sel, op := int(muts[i]), muts[i+1]
		switch op % 6 {
		case 0:
			if len(sigs) > 0 {
				st.Signatures[sigs[sel%len(sigs)]] = fuzzTypes[int(op/6)%len(fuzzTypes)]
			}
		case 1:
			if len(sigs) > 0 {
				delete(st.Signatures, sigs[sel%len(sigs)])
			}
		case 2, 3:
			if len(tables) == 0 {
				continue
			}
			t := st.Tables[tables[sel%len(tables)]]
			if t == nil || len(t.Partitions) == 0 {
				continue
			}
			j := int(op/6) % len(t.Partitions)
			if op%6 == 2 {
				t.Partitions[j].EndSector += uint64(op) * 2048
			} else {
				t.Partitions = slices.Delete(t.Partitions, j, j+1)
			}
		case 4:
			if len(lvs) > 0 {
				if op&64 != 0 {
					delete(st.LVs, lvs[sel%len(lvs)])
				} else {
					st.LVs[lvs[sel%len(lvs)]] += uint64(op) << 20
				}
			}
		case 5:
			for dev, subs := range st.Subvolumes {
				if len(subs) > 0 {
					st.Subvolumes[dev] = slices.Delete(subs, sel%len(subs), sel%len(subs)+1)
				}
				if op&64 != 0 {
					st.Hidden[dev] = true
				}
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
