package hw

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

func TestBusOf(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		// recorded /sys/block links, resolved
		{"/sys/devices/pci0000:00/0000:00:04.0/usb3/3-1/3-1:1.0/host2/target2:0:0/2:0:0:0/block/sda", BusUSB},
		{"/sys/devices/pci0000:00/0000:00:14.0/usb2/2-2/2-2:1.0/host6/target6:0:0/6:0:0:0/block/sdc", BusUSB},
		{"/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", BusNVMe},
		{"/sys/devices/pci0000:00/0000:00:03.0/virtio0/block/vda", BusVirtio},
		{"/sys/devices/platform/fe320000.mmc/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1", BusMMC},
		{"/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda", BusATA},
		{"/sys/devices/pci0000:00/0000:00:05.0/virtio1/host0/target0:0:0/0:0:0:0/block/sda", BusVirtio}, // virtio-scsi
		{"/sys/devices/pci0000:00/0000:00:10.0/host0/target0:0:0/0:0:0:0/block/sda", BusSCSI},
		{"/sys/devices/virtual/block/loop0", ""},
		{"/sys/devices/virtual/block/dm-0", ""},
		{"/sys/devices/fake/vda", ""},
	} {
		if got := busOf(tc.path); got != tc.want {
			t.Errorf("busOf(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestDisksHolding makes an ext4 loop disk, mounts it and asks which disk
// holds a file on it, the device itself, and a loop device over an image
// stored on it (its own loop and the disk below).
func TestDisksHolding(t *testing.T) {
	testenv.Short(t, "loop-device test")
	needRootTool(t, "losetup", "mkfs.ext4", "mount", "umount")
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	dev := attach(t, img)
	name := filepath.Base(dev)
	sh(t, "mkfs.ext4", "-q", dev)
	mnt := t.TempDir()
	sh(t, "mount", dev, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	inner := filepath.Join(mnt, "image.iso")
	if err := os.WriteFile(inner, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// A loop device's list ends with itself, after the disks holding its
	// backing file (this machine's own disk, here).
	last := func(l []string) string {
		if len(l) == 0 {
			return ""
		}
		return l[len(l)-1]
	}
	got, err := DisksHolding(Options{}, inner)
	if err != nil || last(got) != name {
		t.Errorf("file on %s: %v %v, want […, %s]", dev, got, err, name)
	}
	if got, err = DisksHolding(Options{}, dev); err != nil || last(got) != name {
		t.Errorf("the device %s itself: %v %v", dev, got, err)
	}
	dev2 := attach(t, inner)
	got, err = DisksHolding(Options{}, dev2)
	if err != nil || last(got) != filepath.Base(dev2) || !contains(got, name) {
		t.Errorf("loop over a file on %s: %v %v, want [… %s %s]", dev, got, err, name, filepath.Base(dev2))
	}
	if _, err := DisksHolding(Options{}, filepath.Join(mnt, "missing")); err == nil {
		t.Error("no error for a missing path")
	}
}

// TestUSBFakeTree: a USB stick's bus and serial (from the USB device above
// it, not the root hub's) in a recorded sysfs layout without udev.
func TestUSBFakeTree(t *testing.T) {
	root := t.TempDir()
	usb := "sys/devices/pci0000:00/0000:00:04.0/usb1"
	dev := usb + "/1-1/1-1:1.0/host2/target2:0:0/2:0:0:0/block/sda"
	for p, v := range map[string]string{
		usb + "/idVendor": "1d6b", usb + "/serial": "0000:00:04.0", // the root hub
		usb + "/1-1/idVendor": "46f4", usb + "/1-1/serial": "STICK0001\n",
		dev + "/size": "524288", dev + "/removable": "1", dev + "/dev": "8:0",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "sys/block"), 0o755)
	if err := os.Symlink("../devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host2/target2:0:0/2:0:0:0/block/sda", filepath.Join(root, "sys/block/sda")); err != nil {
		t.Fatal(err)
	}
	o := Options{Root: root}
	if got := diskBus(o, "sda"); got != BusUSB {
		t.Errorf("bus %q", got)
	}
	if got := usbSerial(o, "sda"); got != "STICK0001" {
		t.Errorf("serial %q, want the stick's", got)
	}
	if got := usbSerial(o, "vda"); got != "" {
		t.Errorf("serial of a missing disk %q", got)
	}
}
