package partition

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/nixlos/nixlos/disko"
	"golang.org/x/sys/unix"
)

// ParseDiskArgs maps --disk arguments to targets: "KEY=DEV" or "KEY=SIZE"
// (an empty virtual disk), or a bare "DEV"/"SIZE" when the layout has
// exactly one disk. A layout disk without an argument is planned on its own
// device path when that exists. Errors name the argument and the fix.
func ParseDiskArgs(d *disko.Devices, args []string) (map[string]Target, error) {
	keys := sortedKeys(d.Disk)
	targets := map[string]Target{}
	for _, a := range args {
		key, val, ok := strings.Cut(a, "=")
		if !ok {
			if len(keys) != 1 {
				return nil, fmt.Errorf("--disk %s: the layout has %d disks (%s); name one as KEY=%s", a, len(keys), strings.Join(keys, ", "), a)
			}
			key, val = keys[0], a
		}
		if d.Disk[key] == nil {
			return nil, fmt.Errorf("--disk %s: the layout has no disk %q (disks: %s)", a, key, strings.Join(keys, ", "))
		}
		t, err := parseTarget(val)
		if err != nil {
			return nil, fmt.Errorf("--disk %s: %w", a, err)
		}
		targets[key] = t
	}
	for _, k := range keys {
		if _, ok := targets[k]; ok {
			continue
		}
		dev := d.Disk[k].Device
		size, err := DeviceSize(dev)
		if err != nil {
			return nil, fmt.Errorf("disk %s: no --disk %s=… given and its layout device %s is not usable here (%v); give --disk %s=/dev/… or --disk %s=8G", k, k, dev, err, k, k)
		}
		targets[k] = Target{Device: dev, SizeBytes: size}
	}
	return targets, checkDistinct(targets)
}

func parseTarget(val string) (Target, error) {
	if strings.HasPrefix(val, "/") {
		size, err := DeviceSize(val)
		if err != nil {
			return Target{}, err
		}
		return Target{Device: val, SizeBytes: size}, nil
	}
	size, err := ParseSize(val)
	if err != nil {
		return Target{}, fmt.Errorf("%w (or give a device path such as /dev/vdb)", err)
	}
	if size < 1<<20 {
		return Target{}, fmt.Errorf("size %s is smaller than 1 MiB", val)
	}
	return Target{SizeBytes: size}, nil
}

// DeviceSize returns the size in bytes of a block device or regular file.
func DeviceSize(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return uint64(fi.Size()), nil
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("%s is not a block device", path)
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("%s: reading size: %w", path, errno)
	}
	return size, nil
}

// checkDistinct refuses two layout disks on the same device.
func checkDistinct(targets map[string]Target) error {
	seen := map[string]string{}
	for _, k := range sortedKeys(targets) {
		t := targets[k]
		if t.Device == "" {
			continue
		}
		id := t.Device
		if real, err := filepath.EvalSymlinks(t.Device); err == nil {
			id = real
		}
		if other, ok := seen[id]; ok {
			return fmt.Errorf("disks %s and %s are both %s; give each layout disk its own device", other, k, t.Device)
		}
		seen[id] = k
	}
	return nil
}
