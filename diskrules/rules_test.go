package diskrules

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // canonical String(); "" when an error is wanted
		wantErr string
	}{
		{"match:size>=100G,bus=nvme", "match:size>=100G,bus=nvme", ""},
		{"size>=100G", "match:size>=100G", ""},
		{"match:TYPE=SSD|Hdd,bus=ata", "match:type=ssd|hdd,bus=sata", ""},
		{"match:model=Samsung_SSD_9*,serial=S5G*,id=nvme-*", "match:model=Samsung_SSD_9*,serial=S5G*,id=nvme-*", ""},
		{"match:size<2T,size>1.5TB,removable=yes", "match:size<2T,size>1.5TB,removable=yes", ""},
		{"match:", "", "no rules"},
		{"match:size>=100G,", "", "empty rule"},
		{"match:size=>100G", "", "size \">100G\": want a number"},
		{"match:colour=red", "", "unknown key"},
		{"match:vendor=x", "", "did you mean model"},
		{"match:bus=firewire", "", "not one of"},
		{"match:type>=ssd", "", "takes only ="},
		{"match:size>=100X", "", "unknown unit"},
		{"match:size>=", "", "no value"},
		{"match:model=[ab", "", "syntax error in pattern"},
		{"match:bus", "", "no operator"},
		{"match:model=Samsung SSD", "", "spaces"},
		{"match:size>=1|2", "", "no alternatives"},
		{"match:size>=99999999999999999999P", "", "too large"},
	} {
		rs, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %v, %v; want error containing %q", tc.in, rs, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := rs.String(); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"512", 512}, {"1K", 1024}, {"100G", 100 << 30}, {"100GiB", 100 << 30}, {"100GB", 100e9},
		{"1TB", 1e12}, {"2T", 2 << 40}, {"1.5T", 3 << 39}, {"0.5KB", 500}, {"1b", 1},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "G", ".5G", "1.G", "1..2G", "1e3", "-1G", "1 G"} {
		if n, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, n)
		}
	}
}

// machine loads a recorded `installer detect --json` report.
func machine(t *testing.T, name string) hw.Report {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var r hw.Report
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// TestResolve runs rule sets against the recorded machines: the chosen
// device (a by-id link) per layout disk, or the errors with their reasons.
func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		machine string
		wants   map[string]string // layout disk → rules
		taken   map[string]string // disk name → layout disk named explicitly
		want    map[string]string // layout disk → device
		wantErr []string          // substrings of the joined error, in any order
	}{
		{name: "nvme by bus", machine: "nvme-sata", wants: map[string]string{"main": "bus=nvme"},
			want: map[string]string{"main": "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"}},
		{name: "nvme by type and size", machine: "nvme-sata", wants: map[string]string{"main": "type=nvme,size>=900GB"},
			want: map[string]string{"main": "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456A"}},
		{name: "ssd is sata not nvme, hdd by rotation", machine: "nvme-sata",
			wants: map[string]string{"fast": "type=ssd", "bulk": "type=hdd"},
			want: map[string]string{"fast": "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_2TB_S6PNNM0T654321B",
				"bulk": "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K1ABCDEF"}},
		{name: "model glob with underscores for spaces", machine: "nvme-sata", wants: map[string]string{"main": "model=samsung_ssd_870*"},
			want: map[string]string{"main": "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_2TB_S6PNNM0T654321B"}},
		{name: "decimal versus binary size", machine: "nvme-sata", wants: map[string]string{"main": "size>=1T,size<3T"},
			want: map[string]string{"main": "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_2TB_S6PNNM0T654321B"}},
		{name: "id glob", machine: "nvme-sata", wants: map[string]string{"main": "id=wwn-0x50014ee*"},
			want: map[string]string{"main": "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K1ABCDEF"}},
		{name: "sata matches several", machine: "nvme-sata", wants: map[string]string{"main": "bus=sata"},
			wantErr: []string{"disk main: 2 disks match", "/dev/sda (Samsung SSD 870 EVO 2TB, serial S6PNNM0T654321B",
				"/dev/sdb (WDC WD40EFRX-68N32N0", "rejected: /dev/nvme0n1", "bus=sata: bus is nvme", "/dev/sr0", "not a disk (cdrom)",
				"fix: add a rule only one of them passes, e.g. match:bus=sata,model=Samsung_SSD_870_EVO_2TB"}},
		{name: "nothing that big", machine: "nvme-sata", wants: map[string]string{"main": "size>=8T"},
			wantErr: []string{"disk main: no disk matches", "size>=8T: size 931.5 GiB (1.0 TB) < 8.0 TiB (8.8 TB)", "loosen the rules"}},
		{name: "identical twins need serials", machine: "twin-sata", wants: map[string]string{"disk1": "model=INTEL_SSDSC2KB480G8", "disk2": "model=INTEL_SSDSC2KB480G8"},
			wantErr: []string{"disk disk1: 2 disks match", "disk disk2: 2 disks match", "e.g. match:model=INTEL_SSDSC2KB480G8,serial=PHYF0001000A480BGN"}},
		{name: "twins by serial", machine: "twin-sata", wants: map[string]string{"disk1": "model=INTEL_SSDSC2KB480G8,serial=PHYF0001*", "disk2": "serial=PHYF0002*"},
			want: map[string]string{"disk1": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0001000A480BGN",
				"disk2": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0002000B480BGN"}},
		{name: "two rule sets pick one disk", machine: "twin-sata", wants: map[string]string{"a": "bus=nvme", "b": "size<300G"},
			wantErr: []string{"disk b: the rules pick /dev/nvme0n1", "the rules of disk a pick too", "make the rules of disks a and b exclusive"}},
		{name: "explicitly named disk is not a candidate", machine: "twin-sata", wants: map[string]string{"disk2": "model=INTEL_SSDSC*"},
			taken: map[string]string{"sda": "disk1"},
			want:  map[string]string{"disk2": "/dev/disk/by-id/ata-INTEL_SSDSC2KB480G8_PHYF0002000B480BGN"}},
		{name: "usb stick is never chosen by accident", machine: "laptop-usb", wants: map[string]string{"main": "size<100G"},
			wantErr: []string{"no disk matches", "/dev/sda (Ultra Fit", "the installer's boot medium", "/dev/sdb (DataTraveler 3.0", "removable (add removable=yes"}},
		{name: "usb stick when asked for", machine: "laptop-usb", wants: map[string]string{"main": "bus=usb,removable=yes,size<100G"},
			want: map[string]string{"main": "/dev/disk/by-id/usb-Kingston_DataTraveler_3.0_60A44C413C2BE3A0A9C901F2-0:0"}},
		{name: "usb hdd is not removable", machine: "laptop-usb", wants: map[string]string{"backup": "bus=usb,type=hdd"},
			want: map[string]string{"backup": "/dev/disk/by-id/usb-Seagate_Expansion_HDD_NACF1234-0:0"}},
		{name: "laptop internal disk", machine: "laptop-usb", wants: map[string]string{"main": "type=nvme"},
			want: map[string]string{"main": "/dev/disk/by-id/nvme-WDC_PC_SN530_SDBPNPZ-512G-1006_21034G801234"}},
		{name: "virtio by size", machine: "virtio", wants: map[string]string{"main": "size>=10G,size<=14G"},
			want: map[string]string{"main": "/dev/disk/by-id/virtio-mid-c"}},
		{name: "virtio by serial", machine: "virtio", wants: map[string]string{"a": "serial=small-*", "b": "serial=big-*"},
			want: map[string]string{"a": "/dev/disk/by-id/virtio-small-a", "b": "/dev/disk/by-id/virtio-big-b"}},
		{name: "virtio swap disk and cd are refused", machine: "virtio", wants: map[string]string{"main": "size<5G"},
			wantErr: []string{"/dev/vdd (4.0 GiB (4.3 GB), virtio hdd): in use ([SWAP])", "/dev/sr0 (QEMU DVD-ROM", "not a disk (cdrom)",
				"/dev/vda (serial small-a, 8.0 GiB (8.6 GB), virtio hdd): size<5G: size 8.0 GiB (8.6 GB) >= 5.0 GiB (5.4 GB)"}},
		{name: "virtio several", machine: "virtio", wants: map[string]string{"main": "bus=virtio"},
			wantErr: []string{"3 disks match", "e.g. match:bus=virtio,serial=small-a"}},
		{name: "no serial reported", machine: "virtio", wants: map[string]string{"main": "serial=*,size<5G"},
			wantErr: []string{"no disk matches"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := machine(t, tc.machine)
			var wants []Want
			for _, k := range sortedKeys(tc.wants) {
				rs, err := Parse(tc.wants[k])
				if err != nil {
					t.Fatal(err)
				}
				wants = append(wants, Want{Key: k, Rules: rs, Source: "nixlos.disk." + k + "=" + rs.String()})
			}
			got, errs := Resolve(wants, r.Disks, tc.taken)
			if tc.wantErr != nil {
				if len(errs) == 0 {
					t.Fatalf("Resolve = %+v, want errors", got)
				}
				var msgs []string
				for _, e := range errs {
					var me *MatchError
					if !errors.As(e, &me) {
						t.Fatalf("error %T is not a *MatchError", e)
					}
					msgs = append(msgs, e.Error()+" (fix: "+me.Fix()+")")
				}
				all := strings.Join(msgs, "\n")
				for _, w := range tc.wantErr {
					if !strings.Contains(all, w) {
						t.Errorf("errors lack %q:\n%s", w, all)
					}
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("Resolve: %v", errs)
			}
			gotMap := map[string]string{}
			for _, c := range got {
				gotMap[c.Key] = c.Device
			}
			if !reflect.DeepEqual(gotMap, tc.want) {
				t.Errorf("Resolve = %v, want %v", gotMap, tc.want)
			}
		})
	}
}

// TestResolvePermuted: the same rules choose the same physical disks (by
// by-id name) when the kernel names of the disks are permuted, as they
// can be between boots.
func TestResolvePermuted(t *testing.T) {
	r := machine(t, "virtio")
	rs1, _ := Parse("size>=10G,size<=14G")
	rs2, _ := Parse("serial=big-*")
	wants := []Want{{Key: "main", Rules: rs1}, {Key: "data", Rules: rs2}}
	first, errs := Resolve(wants, r.Disks, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	perm := append([]hw.Disk(nil), r.Disks...)
	names := []string{"vdc", "vda", "vdb"} // vda→vdc, vdb→vda, vdc→vdb
	j := 0
	for i := range perm {
		if strings.HasPrefix(perm[i].Name, "vd") && j < len(names) {
			perm[i].Name, perm[i].Path = names[j], "/dev/"+names[j]
			j++
		}
	}
	second, errs := Resolve(wants, perm, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	for i := range first {
		if first[i].Device != second[i].Device || first[i].Disk.Serial != second[i].Disk.Serial {
			t.Errorf("disk %s: %s (%s) then %s (%s)", first[i].Key, first[i].Device, first[i].Disk.Path, second[i].Device, second[i].Disk.Path)
		}
		if first[i].Disk.Path == second[i].Disk.Path {
			t.Errorf("disk %s: kernel name %s did not change: the permutation did not take", first[i].Key, first[i].Disk.Path)
		}
	}
}

func TestDevice(t *testing.T) {
	for _, tc := range []struct {
		ids  []string
		want string
	}{
		{nil, "/dev/sda"},
		{[]string{"/dev/disk/by-id/wwn-0x1", "/dev/disk/by-id/ata-X_Y"}, "/dev/disk/by-id/ata-X_Y"},
		{[]string{"/dev/disk/by-id/nvme-eui.1", "/dev/disk/by-id/nvme-M_S", "/dev/disk/by-id/nvme-M_S_1"}, "/dev/disk/by-id/nvme-M_S"},
		{[]string{"/dev/disk/by-id/wwn-0x1"}, "/dev/disk/by-id/wwn-0x1"},
	} {
		if got := Device(hw.Disk{Name: "sda", Path: "/dev/sda", ByID: tc.ids}); got != tc.want {
			t.Errorf("Device(%v) = %s, want %s", tc.ids, got, tc.want)
		}
	}
}

// TestLink creates the by-id link in a fake /dev (no udev) and refuses a
// link that names another disk.
func TestLink(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"vda", "vdb"} {
		if err := os.WriteFile(filepath.Join(root, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vda", "vdb"} {
		os.WriteFile(filepath.Join(root, "dev", n), nil, 0o600)
	}
	c := Choice{Key: "main", Device: "/dev/disk/by-id/virtio-a", Disk: hw.Disk{Name: "vda", Path: "/dev/vda"}}
	got, err := Link(root, c)
	if err != nil || got != c.Device {
		t.Fatalf("Link = %q, %v", got, err)
	}
	if target, _ := os.Readlink(filepath.Join(root, c.Device)); target != "../../vda" {
		t.Errorf("link target %q", target)
	}
	if _, err := Link(root, c); err != nil { // again: the link is there and right
		t.Errorf("second Link: %v", err)
	}
	c.Disk = hw.Disk{Name: "vdb", Path: "/dev/vdb"}
	if _, err := Link(root, c); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("Link to another disk: %v, want a refusal", err)
	}
	if got, err := Link(root, Choice{Device: "/dev/vdb"}); err != nil || got != "/dev/vdb" {
		t.Errorf("Link without by-id = %q, %v", got, err)
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// FuzzParse: Parse never panics; what it accepts renders (String) to a
// rule set that parses to the same rules, and rendering is stable.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"match:size>=100G,bus=nvme", "type=ssd|hdd", "model=Samsung_*,serial=S5*", "size<1.5TB,removable=yes",
		"id=/dev/disk/by-id/ata-*", "match:", "bus=ata", "size>=,", "model=[a-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := Parse(s)
		if err != nil {
			return
		}
		if len(rs) == 0 {
			t.Fatalf("Parse(%q) accepted no rules", s)
		}
		out := rs.String()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(again, rs) {
			t.Fatalf("Parse(%q) = %#v; String %q parses to %#v", s, rs, out, again)
		}
		if again.String() != out {
			t.Fatalf("String not stable: %q then %q", out, again.String())
		}
		if strings.ContainsAny(out, " \t\n\"") {
			t.Fatalf("rendered rules %q hold a space or quote", out)
		}
		d := hw.Disk{Name: "sda", Path: "/dev/sda", Kind: hw.KindDisk, SizeBytes: 1 << 30, Model: "M", Serial: "S", ByID: []string{"/dev/disk/by-id/x"}}
		_ = rs.Check(d)
	})
}
