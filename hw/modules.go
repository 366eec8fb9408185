package hw

import (
	"os"
	"path/filepath"
	"strings"
)

// driverModules walks a device's sysfs path up to /sys/devices and names
// the kernel modules of the drivers bound along it, innermost first: the
// module a driver belongs to (driver/module), or, for a driver built into
// the running kernel, "builtin:" and the driver's name. For a virtio disk:
// virtio_blk, virtio_pci; a SATA disk: sd_mod, ahci; NVMe: nvme.
func driverModules(devPath string) []string {
	var out []string
	seen := map[string]bool{}
	for p := devPath; strings.HasPrefix(p, "/") && filepath.Base(p) != "devices" && p != "/"; p = filepath.Dir(p) {
		drv, err := filepath.EvalSymlinks(filepath.Join(p, "driver"))
		if err != nil {
			continue
		}
		name := ""
		if mod, err := os.Readlink(filepath.Join(drv, "module")); err == nil {
			name = filepath.Base(mod)
		} else {
			name = "builtin:" + filepath.Base(drv)
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// diskModules is driverModules of /sys/block/<name>/device.
func diskModules(opts Options, name string) []string {
	p, err := filepath.EvalSymlinks(opts.path("sys", "block", name, "device"))
	if err != nil {
		return nil
	}
	return driverModules(p)
}
