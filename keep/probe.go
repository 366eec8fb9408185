package keep

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/partition"
	"github.com/nixlos/nixlos/partition/apply"
)

// Probe reads the state of the plan's disks on this machine, read-only:
// disks and partitions from package hw (sysfs and the GPT), signatures
// from blkid, LVs from lvm lvs, and the subvolumes of btrfs filesystems
// from a read-only mount. resolve maps disko paths to nodes
// (apply.Session.Resolve). Devices behind LUKS, md or LVM that is not
// open are Hidden.
func Probe(p *partition.Plan, resolve func(string) string) (*State, error) {
	st := &State{Tables: map[string]*Table{}, Signatures: map[string]string{}, Hidden: map[string]bool{},
		LVs: map[string]uint64{}, Subvolumes: map[string][]string{}, Disks: map[string]DiskInfo{}}
	disks, err := hw.Disks(hw.Options{})
	if err != nil {
		return nil, err
	}
	byDev := map[uint64]*hw.Disk{}
	for i := range disks {
		if dev, ok := rdev(disks[i].Path); ok {
			byDev[dev] = &disks[i]
		}
	}
	lookup := func(path string) *hw.Disk {
		if dev, ok := rdev(resolve(path)); ok {
			return byDev[dev]
		}
		return nil
	}
	for k, dp := range p.Disks {
		info := DiskInfo{Device: dp.Device, SizeBytes: dp.SizeBytes}
		if d := lookup(dp.LayoutDevice); d != nil {
			info.Model, info.Serial, info.SizeBytes = d.Model, d.Serial, d.SizeBytes
			st.Tables[dp.LayoutDevice] = table(d)
		}
		st.Disks[k] = info
	}
	for _, m := range p.Mdadm {
		if d := lookup(m.Device); d != nil && apply.MDRunning(resolve(m.Device)) {
			st.Tables[m.Device] = table(d)
		} else {
			st.Hidden[m.Device] = true
		}
	}
	readLVs(st)
	for _, dev := range devices(p) {
		node := resolve(dev)
		hidden := hiddenPath(p, dev)
		if _, ok := rdev(node); !ok || (hidden && !running(node)) {
			if hidden {
				st.Hidden[dev] = true // behind a closed LUKS, stopped array or inactive VG
			}
			continue
		}
		if node == dev && strings.HasPrefix(dev, "/dev/disk/") {
			continue // a partition link that did not resolve through its disk: not this plan's
		}
		st.Signatures[dev] = blkidType(node)
	}
	for vg, vp := range p.LVMVG {
		if !exists("/dev/" + vg) {
			st.Hidden["vg:"+vg] = anyHidden(st, vp.PVs)
		}
	}
	for _, fs := range p.Filesystems {
		if fs.Format == "btrfs" && st.Signatures[fs.Device] == "btrfs" {
			if subs, err := listSubvolumes(resolve(fs.Device)); err == nil {
				st.Subvolumes[fs.Device] = subs
			}
		}
	}
	return st, nil
}

// table turns hw's partitions into a Table; nil for a disk without any.
func table(d *hw.Disk) *Table {
	if len(d.Partitions) == 0 {
		return nil
	}
	t := &Table{}
	for _, p := range d.Partitions {
		t.Partitions = append(t.Partitions, Part{Number: p.Number, Label: p.PartName, StartSector: p.StartSector,
			EndSector: p.StartSector + p.SizeBytes/partition.SectorSize - 1})
	}
	return t
}

// devices lists every disko device path the plan names.
func devices(p *partition.Plan) []string {
	var out []string
	for _, d := range p.Disks {
		out = append(out, d.LayoutDevice)
		for _, pp := range d.Partitions {
			out = append(out, pp.Device)
		}
	}
	for _, m := range p.Mdadm {
		out = append(out, m.Device)
		for _, pp := range m.Partitions {
			out = append(out, pp.Device)
		}
	}
	for _, l := range p.LUKS {
		out = append(out, l.MapperDevice)
	}
	for _, vg := range p.LVMVG {
		for _, lv := range vg.LVs {
			out = append(out, lv.Device)
		}
	}
	return out
}

// hiddenPath reports whether a device that does not exist may only be
// closed: it sits on a LUKS container, md array or VG that is not open.
func hiddenPath(p *partition.Plan, dev string) bool {
	for _, l := range p.LUKS {
		if dev == l.MapperDevice || strings.HasPrefix(dev, l.MapperDevice+"-") || strings.HasPrefix(dev, l.MapperDevice+"p") {
			return true
		}
	}
	for _, m := range p.Mdadm {
		if dev == m.Device || strings.Contains(dev, "md-name-any:"+m.Name+"-part") {
			return !apply.MDRunning(m.Device)
		}
	}
	for vg := range p.LVMVG {
		if strings.HasPrefix(dev, "/dev/"+vg+"/") {
			return !exists("/dev/" + vg)
		}
	}
	return false
}

// running reports whether a device node has a size (a stopped md array's
// node stays behind with size 0).
func running(node string) bool {
	size, err := partition.DeviceSize(node)
	return err == nil && size > 0
}

func anyHidden(st *State, devs []string) bool {
	for _, d := range devs {
		if st.Hidden[d] {
			return true
		}
	}
	return false
}

func rdev(path string) (uint64, bool) {
	var s unix.Stat_t
	if path == "" || unix.Stat(path, &s) != nil || s.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return s.Rdev, true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// blkidType is blkid's TYPE of a device ("" when it has none).
func blkidType(node string) string {
	out, err := exec.Command("blkid", "-c", "/dev/null", "-p", "-o", "value", "-s", "TYPE", node).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// readLVs lists the LVs LVM sees (active or not) with their sizes.
func readLVs(st *State) {
	out, err := exec.Command("lvm", "lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", ":", "-o", "vg_name,lv_name,lv_size").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 {
			continue
		}
		size, _ := strconv.ParseUint(f[2], 10, 64)
		st.LVs[f[0]+"/"+f[1]] = size
	}
}

// listSubvolumes mounts a btrfs read-only on a temporary directory and
// lists its subvolumes (paths from the top level).
func listSubvolumes(node string) ([]string, error) {
	dir, err := os.MkdirTemp("", "nixlos-keep-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	if err := unix.Mount(node, dir, "btrfs", unix.MS_RDONLY, "subvol=/"); err != nil {
		return nil, err
	}
	defer unix.Unmount(dir, 0)
	out, err := exec.Command("btrfs", "subvolume", "list", dir).Output()
	if err != nil {
		return nil, err
	}
	subs := []string{}
	for _, line := range strings.Split(string(out), "\n") {
		if _, p, ok := strings.Cut(line, " path "); ok {
			subs = append(subs, filepath.Clean(strings.TrimSpace(p)))
		}
	}
	return subs, nil
}
