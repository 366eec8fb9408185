package hw

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestDiskModules builds a fake sysfs: a virtio disk whose virtio_blk is a
// module and whose PCI driver is built in, and an NVMe disk.
func TestDiskModules(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(sys, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, link string) {
		if err := os.Symlink(target, filepath.Join(sys, link)); err != nil {
			t.Fatal(err)
		}
	}
	mk("devices/pci0000:00/0000:00:02.0/virtio1/block/vda")
	mk("devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1")
	mk("bus/virtio/drivers/virtio_blk")
	mk("bus/pci/drivers/virtio-pci")
	mk("bus/pci/drivers/nvme")
	mk("module/virtio_blk")
	mk("module/nvme")
	mk("block")
	ln("../../../module/virtio_blk", "bus/virtio/drivers/virtio_blk/module")
	ln("../../../module/nvme", "bus/pci/drivers/nvme/module")
	ln("../../../../bus/virtio/drivers/virtio_blk", "devices/pci0000:00/0000:00:02.0/virtio1/driver")
	ln("../../../bus/pci/drivers/virtio-pci", "devices/pci0000:00/0000:00:02.0/driver")
	ln("../../../bus/pci/drivers/nvme", "devices/pci0000:00/0000:00:04.0/driver")
	ln("../../../virtio1", "devices/pci0000:00/0000:00:02.0/virtio1/block/vda/device")
	ln("../../nvme0", "devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/device")
	ln("../devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "block/vda")
	ln("../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", "block/nvme0n1")
	opts := Options{Root: root}
	for name, want := range map[string][]string{"vda": {"virtio_blk", "builtin:virtio-pci"}, "nvme0n1": {"nvme"}, "sdz": nil} {
		if got := diskModules(opts, name); !reflect.DeepEqual(got, want) {
			t.Errorf("diskModules(%s) = %q, want %q", name, got, want)
		}
	}
}
