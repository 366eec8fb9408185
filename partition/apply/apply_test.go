package apply

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/internal/corpus"
)

// corpusDir is the planner's disko conformance corpus, which these tests apply.
const corpusDir = "../testdata/disko"

// requireLoop skips unless the test can create loop devices and has the
// tools apply runs.
func requireLoop(t *testing.T, tools ...string) {
	t.Helper()
	testenv.Short(t, "loop-device test (skipped with -short)")
	testenv.Root(t)
	testenv.Tools(t, append([]string{"losetup", "wipefs", "sfdisk", "blkid", "findmnt"}, tools...)...)
}

// newLoop attaches a sparse image of size bytes with partition scanning and
// detaches it when the test ends.
func newLoop(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--partscan", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v %s", dev, err, out)
		}
	})
	return dev
}

// unmountUnder lazily unmounts everything below root (cleanup after a
// failed test, so the loop device can be detached).
func unmountUnder(root string) {
	out, _ := exec.Command("findmnt", "--list", "--noheadings", "--output", "TARGET").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], root) {
			exec.Command("umount", "--lazy", lines[i]).Run()
		}
	}
}

type expectContent struct {
	Type             string `json:"type"`
	Format           string `json:"format"`
	Mountpoint       string `json:"mountpoint"`
	RandomEncryption bool   `json:"randomEncryption"`
}

type expectPartition struct {
	Number           int           `json:"number"`
	GPTPartitionName string        `json:"gptPartitionName"`
	TypeGUID         string        `json:"typeGUID"`
	StartSector      uint64        `json:"startSector"`
	EndSector        uint64        `json:"endSector"`
	AttributeFlags   string        `json:"attributeFlagsHex"`
	Content          expectContent `json:"content"`
}

type expectMount struct {
	Mountpoint string   `json:"mountpoint"`
	Target     string   `json:"target"`
	FSType     string   `json:"fsType"`
	Options    []string `json:"options"`
}

type expectApply struct {
	Disks map[string]struct {
		Content struct {
			Type       string            `json:"type"`
			Partitions []expectPartition `json:"partitions"`
		} `json:"content"`
	} `json:"disks"`
	Btrfs []struct {
		Subvolumes []struct {
			Name string `json:"name"`
		} `json:"subvolumes"`
	} `json:"btrfs"`
	Mounts     []expectMount `json:"mounts"`
	MountOrder []string      `json:"mountOrder"`
}

// TestApplyLoop applies conformance examples to 8 GiB loop devices and
// reads the result back with sfdisk, blkid, lsblk, btrfs and findmnt.
func TestApplyLoop(t *testing.T) {
	requireLoop(t, "mkfs.vfat", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "mkswap", "btrfs", "lsblk")
	for _, name := range []string{"simple-efi", "btrfs-subvolumes", "legacy-table", "swap", "hybrid", "xfs-with-quota", "tmpfs", "gpt-bios-compat"} {
		t.Run(name, func(t *testing.T) { applyExample(t, name) })
	}
}

func applyExample(t *testing.T, name string) {
	data, err := os.ReadFile(filepath.Join(corpusDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectApply
	raw, _ := os.ReadFile(filepath.Join(corpusDir, name+".expect.json"))
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	dev := newLoop(t, 8<<30)
	root := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() { unmountUnder(root) })
	s := applyLayout(t, data, dev, root)
	checkPartitions(t, dev, exp.Disks["main"].Content.Partitions)
	checkFilesystems(t, s, exp.Disks["main"].Content.Partitions)
	checkMounts(t, root, exp, s.Plan)
	// Re-run on the disk that carries the layout, still mounted as after a
	// crash before unmounting: same end state.
	s = applyLayout(t, data, dev, root)
	checkPartitions(t, dev, exp.Disks["main"].Content.Partitions)
	checkFilesystems(t, s, exp.Disks["main"].Content.Partitions)
	checkMounts(t, root, exp, s.Plan)
	if err := s.Unmount(); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(root); len(left) > 0 {
		t.Errorf("still mounted after Unmount: %q", left)
	}
}

func applyLayout(t *testing.T, data []byte, dev, root string) *Session {
	t.Helper()
	d, err := disko.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := partition.ParseDiskArgs(d, []string{"main=" + dev})
	if err != nil {
		t.Fatal(err)
	}
	p, err := partition.NewPlan(d, targets, partition.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	s := &Session{Plan: p, Root: root, Log: &log}
	if err := s.Apply(); err != nil {
		t.Fatalf("apply: %v\n%s", err, log.String())
	}
	kernelMountable(t, p)
	if err := s.Mount(); err != nil {
		t.Fatalf("mount: %v", err)
	}
	return s
}

// kernelMountable drops from the plan's mounts the filesystem types this
// kernel cannot mount (the CI host kernel has no vfat), saying so; the
// QEMU guest test mounts them all.
func kernelMountable(t *testing.T, p *partition.Plan) {
	t.Helper()
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			known[f[len(f)-1]] = true
		}
	}
	var keep []*partition.MountPlan
	for _, m := range p.Mounts {
		if m.FSType == "xfs" && hasQuotaOption(m.Options) && !exists("/proc/fs/xfs/xqmstat") {
			t.Logf("not mounting %s: this kernel has no XFS quota support for %q (checked in the QEMU guest test)", m.Mountpoint, m.Options)
			continue
		}
		if known[m.FSType] || exec.Command("modprobe", m.FSType).Run() == nil {
			keep = append(keep, m)
		} else {
			t.Logf("not mounting %s: this kernel cannot mount %s (checked in the QEMU guest test)", m.Mountpoint, m.FSType)
		}
	}
	p.Mounts = keep
}

func hasQuotaOption(opts []string) bool {
	for _, o := range opts {
		if strings.Contains(o, "quota") {
			return true
		}
	}
	return false
}

func checkPartitions(t *testing.T, dev string, want []expectPartition) {
	t.Helper()
	got := corpus.SfdiskJSON(t, dev).PartitionTable.Partitions
	if len(got) != len(want) {
		t.Fatalf("sfdisk shows %d partitions, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Node != partName(dev, w.Number) || g.Start != w.StartSector || g.Start+g.Size-1 != w.EndSector ||
			!strings.EqualFold(g.Type, w.TypeGUID) || g.Name != w.GPTPartitionName {
			t.Errorf("partition %d: sfdisk %+v, want %+v", w.Number, g, w)
		}
		if wantAttrs := attrsString(w.AttributeFlags); g.Attrs != wantAttrs {
			t.Errorf("partition %d: attrs %q, want %q", w.Number, g.Attrs, wantAttrs)
		}
	}
}

// attrsString is how sfdisk prints GPT attribute bits 0-2.
func attrsString(hex string) string {
	names := map[string]string{"0000000000000001": "RequiredPartition", "0000000000000004": "LegacyBIOSBootable"}
	return names[hex]
}

func partName(dev string, n int) string {
	return dev + "p" + strconv.Itoa(n)
}

func checkFilesystems(t *testing.T, s *Session, want []expectPartition) {
	t.Helper()
	for _, w := range want {
		node := partName(s.Plan.Disks["main"].Device, w.Number)
		out, _ := exec.Command("blkid", "--probe", "--output", "value", "--match-tag", "TYPE", node).Output()
		got := strings.TrimSpace(string(out))
		wantType := w.Content.Format
		switch w.Content.Type {
		case "btrfs":
			wantType = "btrfs"
		case "swap":
			wantType = "swap"
			if w.Content.RandomEncryption {
				wantType = "" // disko does not format randomEncryption swap
			}
		case "":
			wantType = ""
		}
		if got != wantType {
			t.Errorf("partition %d: blkid TYPE %q, want %q", w.Number, got, wantType)
		}
		name, _ := exec.Command("blkid", "--probe", "--output", "value", "--match-tag", "PART_ENTRY_NAME", node).Output()
		if got := strings.TrimSpace(string(name)); got != w.GPTPartitionName {
			t.Errorf("partition %d: blkid PART_ENTRY_NAME %q, want %q", w.Number, got, w.GPTPartitionName)
		}
		size, _ := exec.Command("lsblk", "--bytes", "--noheadings", "--nodeps", "--output", "SIZE", node).Output()
		if got, want := strings.TrimSpace(string(size)), strconv.Itoa(int((w.EndSector-w.StartSector+1)*partition.SectorSize)); got != want {
			t.Errorf("partition %d: lsblk SIZE %s, want %s", w.Number, got, want)
		}
	}
}

type findmntEntry struct {
	Target  string `json:"target"`
	FSType  string `json:"fstype"`
	Options string `json:"options"`
}

func mountsUnder(root string) []findmntEntry {
	out, _ := exec.Command("findmnt", "--json", "--list", "--output", "TARGET,FSTYPE,OPTIONS").Output()
	var fm struct {
		Filesystems []findmntEntry `json:"filesystems"`
	}
	json.Unmarshal(out, &fm)
	var res []findmntEntry
	for _, f := range fm.Filesystems {
		if f.Target == root || strings.HasPrefix(f.Target, root+"/") {
			res = append(res, f)
		}
	}
	return res
}

func checkMounts(t *testing.T, root string, exp expectApply, p *partition.Plan) {
	t.Helper()
	planned := map[string]bool{}
	for _, m := range p.Mounts {
		planned[m.Mountpoint] = true
	}
	var mounts []expectMount
	for _, m := range exp.Mounts {
		if planned[m.Mountpoint] {
			mounts = append(mounts, m)
		}
	}
	exp.Mounts = mounts
	got := map[string]findmntEntry{}
	for _, m := range mountsUnder(root) {
		got[m.Target] = m
	}
	if len(got) != len(exp.Mounts) {
		t.Errorf("%d mounts under %s, want %d: %+v", len(got), root, len(exp.Mounts), got)
	}
	for _, m := range exp.Mounts {
		target := filepath.Join(root, strings.TrimPrefix(m.Target, "/mnt"))
		g, ok := got[target]
		if !ok {
			t.Errorf("%s not mounted", target)
			continue
		}
		if g.FSType != m.FSType {
			t.Errorf("%s: fstype %s, want %s", target, g.FSType, m.FSType)
		}
		for _, o := range m.Options {
			if sv, ok := strings.CutPrefix(o, "subvol="); ok && !strings.Contains(g.Options, "subvol="+sv) {
				t.Errorf("%s: options %s lack subvol=%s", target, g.Options, sv)
			}
		}
	}
	for _, b := range exp.Btrfs {
		out, err := exec.Command("btrfs", "subvolume", "list", root).Output()
		if err != nil {
			t.Errorf("btrfs subvolume list %s: %v", root, err)
			continue
		}
		for _, sv := range b.Subvolumes {
			if !strings.Contains(string(out), "path "+strings.TrimPrefix(sv.Name, "/")+"\n") {
				t.Errorf("subvolume %s missing from:\n%s", sv.Name, out)
			}
		}
	}
}

// TestApplyHybridMBR applies a layout with hybrid MBR entries (EE last, a
// type override, an active flag) and btrfs swap files, then compares the
// MBR with the plan (whose slots TestGeometryMatchesRealTools checks
// against sgdisk -h and sfdisk).
func TestApplyHybridMBR(t *testing.T) {
	requireLoop(t, "mkfs.vfat", "mkfs.ext4", "mkfs.btrfs", "btrfs")
	data, err := os.ReadFile("../testdata/layouts/hybrid-mbr-ee-last.json")
	if err != nil {
		t.Fatal(err)
	}
	dev := newLoop(t, 1<<30)
	root := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() { unmountUnder(root) })
	s := applyLayout(t, data, dev, root)
	defer s.Unmount()
	h := s.Plan.Disks["main"].Hybrid
	if h == nil || len(h.Slots) != 3 || h.Slots[2].Type != 0xEE || h.Slots[0].Type != 0x0c || !h.Slots[1].Bootable {
		t.Fatalf("unexpected hybrid plan %+v", h)
	}
	got := corpus.SfdiskJSON(t, "--label-nested", "dos", dev).PartitionTable.Partitions
	if len(got) != len(h.Slots) {
		t.Fatalf("MBR has %d entries, plan %d", len(got), len(h.Slots))
	}
	for i, s := range h.Slots {
		g := got[i]
		if g.Start != s.StartSector || g.Size != s.Sectors || g.Type != strings.TrimLeft(fmt.Sprintf("%02x", s.Type), "0") || g.Boot != s.Bootable {
			t.Errorf("MBR slot %d: %+v, planned %+v", s.Slot, g, s)
		}
	}
	label, _ := exec.Command("blkid", "--probe", "--output", "value", "--match-tag", "LABEL", dev+"p3").Output()
	if strings.TrimSpace(string(label)) != "root" {
		t.Errorf("btrfs label %q, want root (extraArgs word-split)", label)
	}
	if fi, err := os.Stat(filepath.Join(root, "swap/swapfile")); err != nil || fi.Size() != 16<<20 {
		t.Errorf("swap file: %v %v", fi, err)
	}
}
