package hw

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/blockdev"
	"golang.org/x/sys/unix"
)

// The buses Disk.Bus names.
const (
	BusUSB    = "usb"
	BusNVMe   = "nvme"
	BusVirtio = "virtio"
	BusMMC    = "mmc"
	BusATA    = "ata"
	BusSCSI   = "scsi"
)

// busOf names the bus a block device hangs off from its resolved sysfs
// device path (/sys/devices/…/block/sdb): the outermost transport wins, so
// a SATA disk in a USB enclosure is "usb". "" when unknown (loop, dm, md).
func busOf(devpath string) string {
	has := func(s string) bool { return strings.Contains(devpath, s) }
	switch {
	case has("/usb"):
		return BusUSB
	case has("/nvme"):
		return BusNVMe
	case has("/virtio"):
		return BusVirtio
	case has("/mmc_host/") || has("/mmc"):
		return BusMMC
	case has("/ata"):
		return BusATA
	case has("/host") && has("/target"):
		return BusSCSI
	}
	return ""
}

// diskBus is busOf the disk's /sys/block link.
func diskBus(opts Options, name string) string {
	p, err := filepath.EvalSymlinks(opts.path("sys", "block", name))
	if err != nil {
		return ""
	}
	return busOf(p)
}

// usbSerial reads a USB disk's serial number from the USB device above it
// in sysfs (the nearest ancestor with idVendor), for when udev has not
// recorded one. The root hub above has a serial too (its PCI address):
// the walk stops at the first USB device, which is the disk's own.
func usbSerial(opts Options, name string) string {
	p, err := filepath.EvalSymlinks(opts.path("sys", "block", name))
	if err != nil {
		return ""
	}
	stop := opts.path("sys", "devices")
	for dir := filepath.Dir(p); strings.HasPrefix(dir, stop+"/"); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "idVendor")); err == nil {
			return readTrim(filepath.Join(dir, "serial"))
		}
	}
	return ""
}

// DisksHolding lists the kernel names of the whole disks that hold path:
// the disk itself when path is a block device (a partition resolves to its
// disk), else the disks below the filesystem path lives on (through
// partitions, dm/md slaves and loop backing files). nil when none is found
// (tmpfs, a network filesystem).
func DisksHolding(opts Options, path string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	dev := st.Dev
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		dev = st.Rdev
	}
	if unix.Major(dev) == 0 { // btrfs and other anonymous devices: the mount's source
		if src := mountSource(opts, dev); src != 0 {
			dev = src
		}
	}
	var out []string
	for _, d := range disksBelow(opts, fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))) {
		if !contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// mountSource finds the block device a mount with the anonymous device
// number dev was mounted from (btrfs), or 0.
func mountSource(opts Options, dev uint64) uint64 {
	mounts, _ := blockdev.ReadMountinfo(opts.path("proc"))
	for _, m := range mounts {
		var st unix.Stat_t
		if m.Dev() == dev && strings.HasPrefix(m.Source, "/") && unix.Stat(opts.path(m.Source), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return st.Rdev
		}
	}
	return 0
}
