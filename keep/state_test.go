package keep

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/partition"
)

const corpusDir = "../partition/testdata/disko"

// layout loads a corpus example (by name) or inline sparse JSON and plans
// it on 8 GiB virtual disks.
func layout(t testing.TB, src string) (*disko.Devices, *partition.Plan) {
	t.Helper()
	data := []byte(src)
	if !strings.HasPrefix(src, "{") {
		var err error
		if data, err = os.ReadFile(filepath.Join(corpusDir, src+".sparse.json")); err != nil {
			t.Fatal(err)
		}
	}
	d, err := disko.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planOn(d, 8<<30)
	if err != nil {
		t.Fatal(err)
	}
	return d, p
}

func planOn(d *disko.Devices, size uint64) (*partition.Plan, error) {
	targets := map[string]partition.Target{}
	for k := range d.Disk {
		targets[k] = partition.Target{SizeBytes: size}
	}
	return partition.NewPlan(d, targets, partition.Options{})
}

// installed is the state an install of the layout leaves behind, with
// every container open.
func installed(d *disko.Devices, p *partition.Plan) *State {
	st := &State{Tables: map[string]*Table{}, Signatures: map[string]string{}, Hidden: map[string]bool{},
		LVs: map[string]uint64{}, Subvolumes: map[string][]string{}, Disks: map[string]DiskInfo{}}
	g := newGraph(d, p)
	for k, dp := range p.Disks {
		st.Disks[k] = DiskInfo{Device: dp.Device, Model: "QEMU HARDDISK", Serial: "s-" + k, SizeBytes: dp.SizeBytes}
		st.Signatures[dp.LayoutDevice] = ""
		if dp.Table != "" {
			st.Tables[dp.LayoutDevice] = tableOf(dp.Partitions)
		}
	}
	for _, m := range p.Mdadm {
		st.Signatures[m.Device] = ""
		if m.Table != "" {
			st.Tables[m.Device] = tableOf(m.Partitions)
		}
	}
	for _, v := range g.vols {
		switch v.Kind {
		case "partition":
			if _, ok := st.Signatures[v.Device]; !ok {
				st.Signatures[v.Device] = ""
			}
		case "luks":
			st.Signatures[v.Device] = "crypto_LUKS"
			st.Signatures["/dev/mapper/"+v.Name] = ""
		case "lvm_pv":
			st.Signatures[v.Device] = "LVM2_member"
		case "mdraid":
			st.Signatures[v.Device] = "linux_raid_member"
		case "filesystem", "btrfs", "swap":
			st.Signatures[v.Device] = v.Format
		case "lvm_lv":
			size, err := partition.ParseSize(v.lvSize)
			if err != nil || strings.Contains(v.lvSize, "%") {
				size = 1 << 30
			}
			st.LVs[v.Name] = (size + 4<<20 - 1) / (4 << 20) * (4 << 20)
		case "subvolume":
			st.Subvolumes[v.Device] = append(st.Subvolumes[v.Device], strings.Trim(v.Name, "/"))
		}
	}
	return st
}

func tableOf(parts []*partition.PartPlan) *Table {
	t := &Table{}
	for _, pp := range parts {
		t.Partitions = append(t.Partitions, Part{Number: pp.Number, Label: pp.Label, StartSector: pp.StartSector, EndSector: pp.EndSector})
	}
	return t
}

// blank is the state of empty disks.
func blank(p *partition.Plan) *State {
	st := &State{Signatures: map[string]string{}, Tables: map[string]*Table{}, Disks: map[string]DiskInfo{}}
	for k, dp := range p.Disks {
		st.Signatures[dp.LayoutDevice] = ""
		st.Disks[k] = DiskInfo{Device: dp.Device, SizeBytes: dp.SizeBytes}
	}
	return st
}
