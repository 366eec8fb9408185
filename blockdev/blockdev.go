// Package blockdev is the one place nixlos reads the kernel's facts about
// block devices: sysfs nodes (names, device numbers, partitions, holders and
// slaves), mountinfo, active swaps, and the ISO 9660 probe. Package hw
// (what `installer detect` reports) and package partition/apply (whether a
// disk may be written, and what to unmount) both read them here. Model:
// u-root's pkg/mount/block.
//
// Every function reads; none writes. Roots are parameters so tests can point
// them at a fixture tree.
package blockdev

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of mountinfo (proc(5)).
type Mount struct {
	Major, Minor uint32 // the superblock's device number (0:N for btrfs, tmpfs…)
	Mountpoint   string // unescaped
	FSType       string
	Source       string // the mount source, unescaped (e.g. /dev/vda2)
}

// Dev is the superblock's device number as unix.Mkdev makes it.
func (m Mount) Dev() uint64 { return unix.Mkdev(m.Major, m.Minor) }

// ParseMountinfoLine parses one mountinfo line; ok is false for a line that
// is not one (too few fields, a bad MAJ:MIN, no " - " separator).
func ParseMountinfoLine(line string) (m Mount, ok bool) {
	f := strings.Fields(line)
	if len(f) < 7 {
		return Mount{}, false
	}
	ma, mi, found := strings.Cut(f[2], ":")
	if !found {
		return Mount{}, false
	}
	major, err1 := strconv.ParseUint(ma, 10, 32)
	minor, err2 := strconv.ParseUint(mi, 10, 32)
	if err1 != nil || err2 != nil {
		return Mount{}, false
	}
	m = Mount{Major: uint32(major), Minor: uint32(minor), Mountpoint: Unescape(f[4])}
	for i := 6; i+1 < len(f); i++ {
		if f[i] == "-" {
			m.FSType = f[i+1]
			if i+2 < len(f) {
				m.Source = Unescape(f[i+2])
			}
			return m, m.Mountpoint != ""
		}
	}
	return Mount{}, false
}

// ParseMountinfo parses a whole mountinfo file, in mount order, skipping
// lines that are not mounts.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if m, ok := ParseMountinfoLine(s.Text()); ok {
			out = append(out, m)
		}
	}
	return out, s.Err()
}

// ReadMountinfo reads the calling thread's mounts under procRoot ("/proc").
// It prefers thread-self: /proc/self is the main thread's view, which is
// another mount namespace's while a locked goroutine of this process has
// entered one; a procfs without thread-self (a test fixture) gives self.
func ReadMountinfo(procRoot string) ([]Mount, error) {
	f, err := os.Open(filepath.Join(procRoot, "thread-self/mountinfo"))
	if err != nil {
		if f, err = os.Open(filepath.Join(procRoot, "self/mountinfo")); err != nil {
			return nil, err
		}
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// Unescape undoes the kernel's octal escaping (\040 for a space) in
// mountinfo and swaps fields.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ParseSwaps lists the active swap partitions (not swap files) of a
// /proc/swaps file, unescaped.
func ParseSwaps(data []byte) []string {
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 2 || f[1] != "partition" {
			continue
		}
		out = append(out, Unescape(f[0]))
	}
	return out
}

// ReadSwaps is ParseSwaps of procRoot/swaps; nil when it cannot be read.
func ReadSwaps(procRoot string) []string {
	b, err := os.ReadFile(filepath.Join(procRoot, "swaps"))
	if err != nil {
		return nil
	}
	return ParseSwaps(b)
}

// ISOVolume reports whether dev (a block device or an image file) starts
// with an ISO 9660 volume — the primary volume descriptor, "CD001", at byte
// 32768 — and its volume ID. It opens dev read-only and non-blocking and
// reads 72 bytes.
func ISOVolume(dev string) (label string, ok bool) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	return ISOVolumeAt(f)
}

// ISOVolumeAt is ISOVolume of an open reader.
func ISOVolumeAt(r io.ReaderAt) (label string, ok bool) {
	buf := make([]byte, 72)
	if _, err := r.ReadAt(buf, 32768); err != nil {
		return "", false
	}
	if buf[0] != 1 || string(buf[1:6]) != "CD001" {
		return "", false
	}
	return strings.TrimSpace(string(buf[40:72])), true
}

// Sys is a sysfs root, "/sys" on a running system.
type Sys string

func (s Sys) block(name string, rest ...string) string {
	return filepath.Join(append([]string{string(s), "class/block", name}, rest...)...)
}

// Attr is the trimmed content of class/block/NAME/ATTR, "" when unreadable.
func (s Sys) Attr(name, attr string) string {
	b, err := os.ReadFile(s.block(name, attr))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Name is the sysfs name ("vda1", "dm-0") of a device number.
func (s Sys) Name(dev uint64) (string, error) {
	link, err := os.Readlink(filepath.Join(string(s), "dev/block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))))
	if err != nil {
		return "", fmt.Errorf("device %d:%d not in sysfs: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	return filepath.Base(link), nil
}

// Dev is the device number of the named block device.
func (s Sys) Dev(name string) (uint64, error) {
	v := s.Attr(name, "dev")
	ma, mi, ok := strings.Cut(v, ":")
	major, err1 := strconv.ParseUint(ma, 10, 32)
	minor, err2 := strconv.ParseUint(mi, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: no device number in sysfs (%q)", name, v)
	}
	return unix.Mkdev(uint32(major), uint32(minor)), nil
}

// IsPartition reports whether name is a partition of a disk.
func (s Sys) IsPartition(name string) bool {
	_, err := os.Stat(s.block(name, "partition"))
	return err == nil
}

// Disk is the whole disk a partition belongs to, or name itself.
func (s Sys) Disk(name string) string {
	if !s.IsPartition(name) {
		return name
	}
	link, err := filepath.EvalSymlinks(s.block(name))
	if err != nil {
		return name
	}
	return filepath.Base(filepath.Dir(link))
}

// Partitions lists the partitions of a disk by sysfs name.
func (s Sys) Partitions(disk string) []string {
	entries, _ := os.ReadDir(s.block(disk))
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(s.block(disk, e.Name(), "partition")); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// Holders lists the devices built directly on name (dm, md, loop…).
func (s Sys) Holders(name string) []string { return s.list(name, "holders") }

// Slaves lists the devices name is built on directly.
func (s Sys) Slaves(name string) []string { return s.list(name, "slaves") }

func (s Sys) list(name, dir string) []string {
	entries, _ := os.ReadDir(s.block(name, dir))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// Above is names and every device built on them, transitively through
// holders, each once, in walk order.
func (s Sys) Above(names ...string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
		for _, h := range s.Holders(n) {
			walk(h)
		}
	}
	for _, n := range names {
		walk(n)
	}
	return out
}

// DisksBelow resolves the device name to what holds it, down to whole
// disks: a partition's disk, a dm/md device's slaves (and the device
// itself), a loop device's backing file's disk. root is the filesystem root
// a loop device's backing_file path is resolved under ("/" normally).
func (s Sys) DisksBelow(root, name string) []string { return s.below(root, name, 0) }

func (s Sys) below(root, name string, depth int) []string {
	if depth > 8 || name == "" {
		return nil
	}
	if s.IsPartition(name) {
		return s.below(root, s.Disk(name), depth+1)
	}
	var out []string
	for _, sl := range s.Slaves(name) {
		out = append(out, s.below(root, sl, depth+1)...)
	}
	if bf := s.Attr(name, "loop/backing_file"); bf != "" {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(root, bf), &st) == nil && st.Dev != 0 {
			if n, err := s.Name(st.Dev); err == nil {
				out = append(out, s.below(root, n, depth+1)...)
			}
		}
	}
	return append(out, name)
}
