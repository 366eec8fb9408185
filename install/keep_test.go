package install

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/keep"
	"github.com/nixlos/nixlos/partition"
)

// TestPlanKeep: --keep / reaches the layout plan through the recorded disk
// state: the LUKS container is opened, not formatted, the ESP wiped; the
// dry run names both; on a blank disk the plan is refused (exit 2).
func TestPlanKeep(t *testing.T) {
	onFS(t, tmpfsMagic)
	f := newFixture(t, true)
	installed := func(p *partition.Plan, _ func(string) string) (*keep.State, error) {
		st := &keep.State{Tables: map[string]*keep.Table{}, Signatures: map[string]string{}, LVs: map[string]uint64{},
			Disks: map[string]keep.DiskInfo{"main": {Device: f.disk, Model: "QEMU HARDDISK", Serial: "QM1", SizeBytes: 8 << 30}}}
		tab := &keep.Table{}
		for _, pp := range p.Disks["main"].Partitions {
			tab.Partitions = append(tab.Partitions, keep.Part{Number: pp.Number, Label: pp.Label, StartSector: pp.StartSector, EndSector: pp.EndSector})
		}
		st.Tables["/dev/vda"] = tab
		st.Signatures["/dev/disk/by-partlabel/disk-main-ESP"] = "vfat"
		st.Signatures["/dev/disk/by-partlabel/disk-main-luks"] = "crypto_LUKS"
		st.Signatures["/dev/mapper/crypted"] = "ext4"
		return st, nil
	}
	o := f.opt()
	o.Keep, o.KeepProbe = []string{"/"}, installed
	p, err := NewPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Layout.Steps {
		if st.Op == "luksFormat" || (st.Op == "mkfs" && st.Target == "/dev/mapper/crypted") || st.Op == "table" {
			t.Errorf("the plan writes the kept chain: %s %s", st.Op, st.Target)
		}
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keep /, open them and wipe the rest", "model QEMU HARDDISK, serial QM1", "keep   luks crypted", "wipe   filesystem disk-main-ESP (/boot)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, buf.String())
		}
	}
	if p.keep == nil || p.keep.full.Keep != nil {
		t.Error("the install keeps no inputs to verify the kept chain after opening it")
	}

	o.KeepProbe = func(*partition.Plan, func(string) string) (*keep.State, error) { return &keep.State{}, nil }
	_, err = NewPlan(o)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "nothing was touched") {
		t.Errorf("keep on a blank disk: %v (exit %d)", err, errs.Code(err))
	}
}
