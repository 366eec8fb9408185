package keep

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/partition"
)

// dataPart: a plain data partition beside / (a partition volume).
const dataPart = `{"disk":{"main":{"device":"/dev/vda","type":"disk","content":{"type":"gpt","partitions":{
 "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
 "root":{"size":"3G","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
 "data":{"size":"100%","content":{"type":"filesystem","format":"xfs","mountpoint":"/data"}}}}}}}`

// luksHome: /home directly in a LUKS container on its own partition.
const luksHome = `{"disk":{"main":{"device":"/dev/vda","type":"disk","content":{"type":"gpt","partitions":{
 "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
 "root":{"size":"3G","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
 "home":{"size":"100%","content":{"type":"luks","name":"home","settings":{"keyFile":"/tmp/home.key"},
   "content":{"type":"filesystem","format":"ext4","mountpoint":"/home"}}}}}}}}`

// mdData: the server with a RAID1 data filesystem beside its RAID1 root.
const mdData = `{"disk":{
 "disk1":{"device":"/dev/vda","type":"disk","content":{"type":"gpt","partitions":{
  "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
  "root":{"size":"3G","content":{"type":"mdraid","name":"root"}},
  "data":{"size":"100%","content":{"type":"mdraid","name":"data"}}}}},
 "disk2":{"device":"/dev/vdb","type":"disk","content":{"type":"gpt","partitions":{
  "ESP":{"size":"512M","type":"EF00"},
  "root":{"size":"3G","content":{"type":"mdraid","name":"root"}},
  "data":{"size":"100%","content":{"type":"mdraid","name":"data"}}}}}},
 "mdadm":{
  "root":{"type":"mdadm","level":1,"content":{"type":"filesystem","format":"ext4","mountpoint":"/"}},
  "data":{"type":"mdadm","level":1,"content":{"type":"filesystem","format":"ext4","mountpoint":"/srv"}}}}`

// swapData: a kept swap partition (named by its disko name).
const swapLayout = "swap"

func TestNewPlan(t *testing.T) {
	const (
		pData   = "/dev/disk/by-partlabel/disk-main-data"
		pHomeLK = "/dev/disk/by-partlabel/disk-main-home"
		lvHome  = "/dev/pool/home"
		mdDev   = "/dev/md/data"
		btrfsP  = "/dev/disk/by-partlabel/disk-main-root"
		swapP   = "/dev/disk/by-partlabel/disk-main-plainSwap"
	)
	moveTable := func(label string) func(*State) {
		return func(st *State) {
			for _, t := range st.Tables {
				for i := range t.Partitions {
					if t.Partitions[i].Label == label {
						t.Partitions[i].StartSector += 2048
					}
				}
			}
		}
	}
	dropPart := func(label string) func(*State) {
		return func(st *State) {
			for _, t := range st.Tables {
				t.Partitions = slices.DeleteFunc(t.Partitions, func(p Part) bool { return p.Label == label })
			}
		}
	}
	sig := func(dev, v string) func(*State) { return func(st *State) { st.Signatures[dev] = v } }
	del := func(dev string) func(*State) { return func(st *State) { delete(st.Signatures, dev) } }
	tests := []struct {
		kind, layout, what string
		mutate             func(*State)
		err                string   // "" = plan; else a substring of the refusal
		keep, wipe         []string // volume names kept / wiped (subset checked)
	}{
		// partition
		{"partition", dataPart, "/data", nil, "", []string{"disk-main-data", "main"}, []string{"disk-main-root", "disk-main-ESP"}},
		{"partition", dataPart, "disk-main-data", dropPart("disk-main-data"), "missing", nil, nil},
		{"partition", dataPart, "/data", moveTable("disk-main-data"), "would move", nil, nil},
		{"partition", dataPart, "/data", sig(pData, "ext4"), "another type than xfs", nil, nil},
		// LUKS
		{"luks", luksHome, "/home", nil, "", []string{"home", "disk-main-home"}, []string{"disk-main-root"}},
		{"luks", luksHome, "/home", sig(pHomeLK, ""), "missing", nil, nil},
		{"luks", luksHome, "/home", moveTable("disk-main-home"), "would move", nil, nil},
		{"luks", luksHome, "/home", sig(pHomeLK, "ext4"), "another type than crypto_LUKS", nil, nil},
		{"luks", luksHome, "/home", sig("/dev/mapper/home", "btrfs"), "another type than ext4", nil, nil},
		// LV (LUKS → LVM)
		{"lv", "luks-lvm", "/home", nil, "", []string{"pool/home", "pool", "crypted", "disk-main-luks"}, []string{"pool/root", "disk-main-ESP"}},
		{"lv", "luks-lvm", "pool/home", func(st *State) { delete(st.LVs, "pool/home") }, "missing", nil, nil},
		{"lv", "lvm-sizes-sort", "pool/root", func(st *State) { st.LVs["pool/root"] += 8 << 20 }, "would be resized", nil, nil},
		{"lv", "luks-lvm", "/home", sig(lvHome, "xfs"), "another type than ext4", nil, nil},
		{"lv", "luks-lvm", "/home", moveTable("disk-main-luks"), "would move", nil, nil},
		// md
		{"md", mdData, "/srv", nil, "", []string{"data", "disk-disk1-data", "disk-disk2-data"}, []string{"root", "disk-disk1-root"}},
		{"md", mdData, "/srv", sig("/dev/disk/by-partlabel/disk-disk2-data", ""), "missing", nil, nil},
		{"md", mdData, "/srv", moveTable("disk-disk2-data"), "would move", nil, nil},
		{"md", mdData, "/srv", sig(mdDev, "btrfs"), "another type than ext4", nil, nil},
		// btrfs subvolume
		{"subvolume", "btrfs-subvolumes", "/home", nil, "", []string{"/home", "/home/user", "disk-main-root"}, []string{"/rootfs", "/nix", "/test"}},
		{"subvolume", "btrfs-subvolumes", "/home", func(st *State) { st.Subvolumes[btrfsP] = []string{"rootfs", "nix"} }, "missing", nil, nil},
		{"subvolume", "btrfs-subvolumes", "/home", moveTable("disk-main-root"), "would move", nil, nil},
		{"subvolume", "btrfs-subvolumes", "/home", sig(btrfsP, "ext4"), "another type than btrfs", nil, nil},
		// swap
		{"swap", swapLayout, "disk-main-plainSwap", nil, "", []string{"disk-main-plainSwap"}, []string{"disk-main-root"}},
		{"swap", swapLayout, "disk-main-plainSwap", del(swapP), "missing", nil, nil},
		{"swap", swapLayout, "disk-main-plainSwap", moveTable("disk-main-plainSwap"), "would move", nil, nil},
		{"swap", swapLayout, "disk-main-plainSwap", sig(swapP, "ext4"), "another type than swap", nil, nil},
	}
	for _, tc := range tests {
		name := tc.kind + "/" + tc.what + "/ok"
		if tc.err != "" {
			name = tc.kind + "/" + tc.what + "/" + strings.Fields(tc.err)[0]
		}
		t.Run(name, func(t *testing.T) {
			d, p := layout(t, tc.layout)
			st := installed(d, p)
			if tc.mutate != nil {
				tc.mutate(st)
			}
			kp, err := NewPlan(d, p, st, []string{tc.what})
			if tc.err != "" {
				var re *RefuseError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want refusal %q, got %v", tc.err, err)
				}
				if re.Fix == "" || re.Found == "" {
					t.Errorf("refusal without found/fix: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !kp.Verified() {
				t.Error("a fully recorded state left kept volumes unverified")
			}
			for _, n := range tc.keep {
				if !hasAction(kp, n, ActKeep) {
					t.Errorf("%s is not kept: %s", n, dump(kp))
				}
			}
			for _, n := range tc.wipe {
				if !hasAction(kp, n, ActWipe) {
					t.Errorf("%s is not wiped: %s", n, dump(kp))
				}
			}
			q := p.WithKeep(kp.Spec)
			if v := q.KeepViolations(kp.Spec); len(v) > 0 {
				t.Errorf("the plan writes kept volumes: %v", v)
			}
			if v := p.KeepViolations(kp.Spec); len(v) == 0 {
				t.Error("the full plan does not write any kept volume: the check cannot fail")
			}
		})
	}
}

func hasAction(kp *Plan, name string, a Action) bool {
	for _, v := range kp.Volumes {
		if v.Name == name && v.Action == a {
			return true
		}
	}
	return false
}

func dump(kp *Plan) string {
	var b strings.Builder
	for _, v := range kp.Volumes {
		b.WriteString("\n  " + v.Kind + " " + v.Name + " " + string(v.Action))
	}
	return b.String()
}

// TestBlankDisk: keep on a blank disk refuses, naming the volume.
func TestBlankDisk(t *testing.T) {
	d, p := layout(t, "luks-lvm")
	_, err := NewPlan(d, p, blank(p), []string{"/home"})
	var re *RefuseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("want a missing refusal, got %v", err)
	}
}

// TestHidden: behind a closed LUKS container the kept LV is unverified,
// and verified once the state shows it.
func TestHidden(t *testing.T) {
	d, p := layout(t, "luks-lvm")
	st := installed(d, p)
	delete(st.Signatures, "/dev/mapper/crypted")
	delete(st.Signatures, "/dev/pool/home")
	delete(st.Signatures, "/dev/pool/root")
	st.Hidden = map[string]bool{"/dev/mapper/crypted": true, "/dev/pool/home": true, "/dev/pool/root": true, "vg:pool": true}
	st.LVs = map[string]uint64{}
	kp, err := NewPlan(d, p, st, []string{"/home"})
	if err != nil {
		t.Fatal(err)
	}
	if kp.Verified() {
		t.Error("a kept LV behind a closed LUKS container counts as verified")
	}
}

func TestWhat(t *testing.T) {
	d, p := layout(t, "btrfs-subvolumes")
	st := installed(d, p)
	if _, err := NewPlan(d, p, st, []string{"/nowhere"}); err == nil || !strings.Contains(err.Error(), "no volume") {
		t.Errorf("unknown WHAT: %v", err)
	}
	kp, err := NewPlan(d, p, st, []string{AllData})
	if err != nil {
		t.Fatal(err)
	}
	// all-data: /home (and /home/user in it), /partition-root is the btrfs
	// itself: keeping it keeps every subvolume
	for _, n := range []string{"/home", "/home/user"} {
		if !hasAction(kp, n, ActKeep) {
			t.Errorf("all-data does not keep %s:%s", n, dump(kp))
		}
	}
	d2, p2 := layout(t, "luks-lvm")
	kp, err = NewPlan(d2, p2, installed(d2, p2), []string{AllData})
	if err != nil {
		t.Fatal(err)
	}
	if !hasAction(kp, "pool/home", ActKeep) || !hasAction(kp, "pool/root", ActWipe) {
		t.Errorf("all-data on luks-lvm:%s", dump(kp))
	}
	if _, err := NewPlan(d2, p2, installed(d2, p2), []string{"/home/user"}); err == nil {
		t.Error("a WHAT naming nothing planned")
	}
	if got := ParseWhat([]string{"/home,all-data", " /home ", ""}); !slices.Equal(got, []string{"/home", "all-data"}) {
		t.Errorf("ParseWhat = %q", got)
	}
}

// TestNestedSubvolume: keeping /home/user alone would delete /home that
// holds it: refused.
func TestNestedSubvolume(t *testing.T) {
	d, p := layout(t, "btrfs-subvolumes")
	_, err := NewPlan(d, p, installed(d, p), []string{"/home/user"})
	var re *RefuseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "deletes the kept subvolume") {
		t.Fatalf("got %v", err)
	}
}

// TestStepsLUKSLVM: the laptop's reinstall keeping /home, step by step.
func TestStepsLUKSLVM(t *testing.T) {
	d, p := layout(t, "luks-lvm")
	kp, err := NewPlan(d, p, installed(d, p), []string{"/home"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range p.WithKeep(kp.Spec).Steps {
		if st.Op != partition.OpModprobe {
			got = append(got, string(st.Op)+" "+st.Target)
		}
	}
	want := []string{
		"wipe-part /dev/disk/by-partlabel/disk-main-ESP",
		"luksOpen /dev/disk/by-partlabel/disk-main-luks",
		"vg-activate pool",
		"lvremove /dev/pool/root",
		"lvremove /dev/pool/raw",
		"lvcreate /dev/pool/root",
		"lvcreate /dev/pool/raw",
		"mkfs /dev/disk/by-partlabel/disk-main-ESP",
		"mkfs /dev/pool/root",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
