package apply

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/blockdev"
	"github.com/nixlos/nixlos/partition"
	"golang.org/x/sys/unix"
)

// UnsafeError says why a device must not be written. It is bad input:
// the user named the wrong device (exit 2).
type UnsafeError struct {
	Disk, Device, Reason string
}

// Error says which disk and device were refused and why.
func (e *UnsafeError) Error() string {
	return fmt.Sprintf("disk %s: refusing to touch %s: %s", e.Disk, e.Device, e.Reason)
}

// SysRoot and ProcRoot locate sysfs and procfs (tests may point them elsewhere).
var (
	SysRoot  = "/sys"
	ProcRoot = "/proc"
)

// CheckSafety refuses, before any byte is written, every target that is a
// virtual disk, not a block device, read-only, too small for the plan,
// mounted (or holds the running system), backs active swap, md or dm, or is
// the installer's boot medium. It checks every disk before returning.
func CheckSafety(p *partition.Plan) error {
	return checkSafety(p, nil)
}

// allowance lists what Preflight tolerates: mounts under root of the
// target's own stack and holders that are the plan's own devices.
type allowance struct {
	root string
	own  map[string]bool
}

func (a *allowance) mount(mp string) bool {
	return a != nil && a.root != "/" && (mp == a.root || strings.HasPrefix(mp, a.root+"/"))
}

func (a *allowance) holders(h []string) bool {
	if a == nil {
		return false
	}
	for _, n := range h {
		if !a.own[n] {
			return false
		}
	}
	return true
}

func checkSafety(p *partition.Plan, allow *allowance) error {
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	swaps := readSwaps()
	for _, k := range slices.Sorted(maps.Keys(p.Disks)) {
		d := p.Disks[k]
		if err := checkDisk(k, d, mounts, swaps, allow); err != nil {
			return err
		}
	}
	return nil
}

// CheckDevice applies CheckSafety's rules to one device outside a plan
// (mkiso flash writes a whole image over a stick): it refuses a device that
// is not a block device, is smaller than minSize, is read-only, is mounted
// (the disk, a partition or a device built on them), holds the running
// system, or backs active swap, md or dm. It does not apply the boot-medium
// rule: a stick that carries an older nixlos ISO is what flash rewrites.
// name labels the error, an *UnsafeError.
func CheckDevice(name, device string, minSize uint64) error {
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	return checkInUse(name, &partition.DiskPlan{Device: device, SizeBytes: minSize}, mounts, readSwaps(), nil)
}

func checkDisk(key string, d *partition.DiskPlan, mounts map[uint64]string, swaps map[uint64]string, allow *allowance) error {
	if err := checkInUse(key, d, mounts, swaps, allow); err != nil {
		return err
	}
	if label, ok := isBootMedium(d.Device); ok {
		return &UnsafeError{Disk: key, Device: d.Device, Reason: fmt.Sprintf("it is the installer's boot medium (ISO 9660 volume %q)", label)}
	}
	return nil
}

// checkInUse is checkDisk without the boot-medium rule.
func checkInUse(key string, d *partition.DiskPlan, mounts map[uint64]string, swaps map[uint64]string, allow *allowance) error {
	bad := func(format string, a ...any) error {
		return &UnsafeError{Disk: key, Device: d.Device, Reason: fmt.Sprintf(format, a...)}
	}
	if d.Virtual {
		return bad("it was planned as a virtual disk; give --disk %s=/dev/…", key)
	}
	bd, err := openBlockDev(d.Device)
	if err != nil {
		return bad("%v", err)
	}
	if bd.size < d.SizeBytes {
		return bad("it has %s but the plan needs %s", partition.FormatSize(bd.size), partition.FormatSize(d.SizeBytes))
	}
	if bd.readOnly {
		return bad("it is read-only")
	}
	for _, n := range bd.stack() {
		if mp, ok := mounts[n.dev]; ok && !allow.mount(mp) {
			if mp == "/" {
				return bad("it holds the running system (%s is mounted at /)", n.name)
			}
			return bad("%s is mounted at %s (unmount it first)", n.name, mp)
		}
		if sw, ok := swaps[n.dev]; ok {
			return bad("%s backs active swap %s (swapoff it first)", n.name, sw)
		}
	}
	for _, n := range bd.nodes {
		if h := sys().Holders(n.name); len(h) > 0 && !allow.holders(h) {
			return bad("%s backs active md/dm device %s (stop or close it first)", n.name, strings.Join(h, ", "))
		}
	}
	return nil
}

// blockNode is a block device in sysfs.
type blockNode struct {
	name string
	dev  uint64 // unix.Mkdev(major, minor)
}

type blockDev struct {
	nodes    []blockNode // the disk and its partitions
	size     uint64
	readOnly bool
}

// stack is the disk, its partitions and every device built on them.
func (b *blockDev) stack() []blockNode {
	names := make([]string, len(b.nodes))
	for i, n := range b.nodes {
		names[i] = n.name
	}
	var out []blockNode
	for _, name := range sys().Above(names...) {
		if n, err := sysNode(name); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func openBlockDev(path string) (*blockDev, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, errors.New("it is not a block device")
	}
	size, err := partition.DeviceSize(path)
	if err != nil {
		return nil, err
	}
	name, err := sysName(st.Rdev)
	if err != nil {
		return nil, err
	}
	bd := &blockDev{size: size, nodes: []blockNode{{name, st.Rdev}}}
	bd.readOnly = sys().Attr(name, "ro") == "1"
	parts, _ := partitionsOf(name)
	bd.nodes = append(bd.nodes, parts...)
	return bd, nil
}

// sys is the sysfs the safety checks read.
func sys() blockdev.Sys { return blockdev.Sys(SysRoot) }

// sysName finds the sysfs name of a device number.
func sysName(dev uint64) (string, error) { return sys().Name(dev) }

func sysNode(name string) (blockNode, error) {
	d, err := sys().Dev(name)
	return blockNode{name, d}, err
}

// partitionsOf lists a disk's partitions with their numbers' nodes.
func partitionsOf(disk string) ([]blockNode, error) {
	if _, err := os.Stat(filepath.Join(SysRoot, "class/block", disk)); err != nil {
		return nil, err
	}
	var out []blockNode
	for _, p := range sys().Partitions(disk) {
		if n, err := sysNode(p); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// readMounts maps device numbers to a mountpoint (from mountinfo), the
// root mount winning.
func readMounts() (map[uint64]string, error) {
	list, err := readMountList()
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	m := map[uint64]string{}
	for _, e := range list {
		for _, dev := range e.devs {
			if _, seen := m[dev]; !seen || e.target == "/" {
				m[dev] = e.target
			}
		}
	}
	return m, nil
}

// mountEntry is one mount: its target and the device numbers behind it
// (the superblock's, and the source device's: btrfs superblocks have
// anonymous numbers).
type mountEntry struct {
	devs   []uint64
	target string
}

// readMountList lists mounts in mount order (blockdev.ReadMountinfo).
func readMountList() ([]mountEntry, error) {
	mounts, err := blockdev.ReadMountinfo(ProcRoot)
	if err != nil {
		return nil, err
	}
	out := make([]mountEntry, 0, len(mounts))
	for _, m := range mounts {
		e := mountEntry{target: m.Mountpoint}
		if m.Major != 0 {
			e.devs = append(e.devs, m.Dev())
		}
		var st unix.Stat_t
		if strings.HasPrefix(m.Source, "/") && unix.Stat(m.Source, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			e.devs = append(e.devs, st.Rdev)
		}
		out = append(out, e)
	}
	return out, nil
}

// readSwaps maps device numbers of active swap devices to their names.
func readSwaps() map[uint64]string {
	m := map[uint64]string{}
	for _, name := range blockdev.ReadSwaps(ProcRoot) {
		var st unix.Stat_t
		if unix.Stat(name, &st) == nil {
			m[st.Rdev] = name
		}
	}
	return m
}

// isBootMedium reports whether dev carries the nixlos ISO 9660 volume.
func isBootMedium(dev string) (string, bool) {
	label, ok := blockdev.ISOVolume(dev)
	return label, ok && strings.HasPrefix(label, "NIXLOS")
}
