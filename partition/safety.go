package partition

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
func CheckSafety(p *Plan) error {
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

func checkSafety(p *Plan, allow *allowance) error {
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	swaps := readSwaps()
	for _, k := range sortedKeys(p.Disks) {
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
	return checkInUse(name, &DiskPlan{Device: device, SizeBytes: minSize}, mounts, readSwaps(), nil)
}

func checkDisk(key string, d *DiskPlan, mounts map[uint64]string, swaps map[uint64]string, allow *allowance) error {
	if err := checkInUse(key, d, mounts, swaps, allow); err != nil {
		return err
	}
	if label, ok := isBootMedium(d.Device); ok {
		return &UnsafeError{Disk: key, Device: d.Device, Reason: fmt.Sprintf("it is the installer's boot medium (ISO 9660 volume %q)", label)}
	}
	return nil
}

// checkInUse is checkDisk without the boot-medium rule.
func checkInUse(key string, d *DiskPlan, mounts map[uint64]string, swaps map[uint64]string, allow *allowance) error {
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
		return bad("it has %s but the plan needs %s", FormatSize(bd.size), FormatSize(d.SizeBytes))
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
		if h := holders(n.name); len(h) > 0 && !allow.holders(h) {
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
	var out []blockNode
	seen := map[string]bool{}
	var walk func(n blockNode)
	walk = func(n blockNode) {
		if seen[n.name] {
			return
		}
		seen[n.name] = true
		out = append(out, n)
		for _, h := range holders(n.name) {
			if dn, err := sysNode(h); err == nil {
				walk(dn)
			}
		}
	}
	for _, n := range b.nodes {
		walk(n)
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
	size, err := DeviceSize(path)
	if err != nil {
		return nil, err
	}
	name, err := sysName(st.Rdev)
	if err != nil {
		return nil, err
	}
	bd := &blockDev{size: size, nodes: []blockNode{{name, st.Rdev}}}
	ro, _ := os.ReadFile(filepath.Join(SysRoot, "class/block", name, "ro"))
	bd.readOnly = strings.TrimSpace(string(ro)) == "1"
	parts, _ := partitionsOf(name)
	bd.nodes = append(bd.nodes, parts...)
	return bd, nil
}

// sysName finds the sysfs name of a device number.
func sysName(dev uint64) (string, error) {
	link, err := os.Readlink(filepath.Join(SysRoot, "dev/block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))))
	if err != nil {
		return "", fmt.Errorf("device %d:%d not in sysfs: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	return filepath.Base(link), nil
}

func sysNode(name string) (blockNode, error) {
	b, err := os.ReadFile(filepath.Join(SysRoot, "class/block", name, "dev"))
	if err != nil {
		return blockNode{}, err
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok {
		return blockNode{}, fmt.Errorf("bad dev file for %s", name)
	}
	ma, _ := strconv.ParseUint(maj, 10, 32)
	mi, _ := strconv.ParseUint(min, 10, 32)
	return blockNode{name, unix.Mkdev(uint32(ma), uint32(mi))}, nil
}

// partitionsOf lists a disk's partitions with their numbers' nodes.
func partitionsOf(disk string) ([]blockNode, error) {
	entries, err := os.ReadDir(filepath.Join(SysRoot, "class/block", disk))
	if err != nil {
		return nil, err
	}
	var out []blockNode
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(SysRoot, "class/block", disk, e.Name(), "partition")); err != nil {
			continue
		}
		if n, err := sysNode(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

func holders(name string) []string {
	entries, _ := os.ReadDir(filepath.Join(SysRoot, "class/block", name, "holders"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
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

// openMountinfo opens the calling thread's mountinfo: /proc/self is the
// main thread's view, which is another mount namespace's while the main
// thread is in one (a locked goroutine of this process may have put it
// there); procfs without thread-self (a test's) gives self.
func openMountinfo() (*os.File, error) {
	if f, err := os.Open(filepath.Join(ProcRoot, "thread-self/mountinfo")); err == nil {
		return f, nil
	}
	return os.Open(filepath.Join(ProcRoot, "self/mountinfo"))
}

// readMountList lists mounts in mount order.
func readMountList() ([]mountEntry, error) {
	f, err := openMountinfo()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		e := mountEntry{target: unescapeMount(fields[4])}
		var ma, mi uint32
		if _, err := fmt.Sscanf(fields[2], "%d:%d", &ma, &mi); err == nil && ma != 0 {
			e.devs = append(e.devs, unix.Mkdev(ma, mi))
		}
		for i := 5; i+2 < len(fields); i++ {
			if fields[i] == "-" {
				var st unix.Stat_t
				if src := unescapeMount(fields[i+2]); strings.HasPrefix(src, "/") && unix.Stat(src, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
					e.devs = append(e.devs, st.Rdev)
				}
				break
			}
		}
		out = append(out, e)
	}
	return out, s.Err()
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// readSwaps maps device numbers of active swap devices to their names.
func readSwaps() map[uint64]string {
	m := map[uint64]string{}
	b, err := os.ReadFile(filepath.Join(ProcRoot, "swaps"))
	if err != nil {
		return m
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 2 || f[1] != "partition" {
			continue
		}
		var st unix.Stat_t
		name := unescapeMount(f[0])
		if unix.Stat(name, &st) == nil {
			m[st.Rdev] = name
		}
	}
	return m
}

// isBootMedium reports whether dev carries the nixlos ISO 9660 volume.
func isBootMedium(dev string) (string, bool) {
	f, err := os.Open(dev)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b := make([]byte, 80)
	if _, err := f.ReadAt(b, 32768); err != nil {
		return "", false
	}
	if !bytes.Equal(b[1:6], []byte("CD001")) {
		return "", false
	}
	label := strings.TrimSpace(string(b[40:72]))
	return label, strings.HasPrefix(label, "NIXLOS")
}
