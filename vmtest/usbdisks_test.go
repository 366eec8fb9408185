package vmtest

import (
	"strings"
	"testing"
)

func TestUSBDiskArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"none", Options{Kernel: "k"}, ""},
		{"one stick", Options{Kernel: "k", USBDisks: []Disk{{Path: "s.img", Serial: "STICK1"}}},
			"-device qemu-xhci,id=xhci -drive if=none,id=usbdisk0,format=raw,file=s.img -device usb-storage,bus=xhci.0,drive=usbdisk0,removable=on,serial=STICK1"},
		{"beside a USB boot stick: one controller", Options{USB: "boot.img", USBDisks: []Disk{{Path: "s.qcow2", Format: "qcow2", ReadOnly: true}}},
			"-drive if=none,id=usbdisk0,format=qcow2,file=s.qcow2,readonly=on -device usb-storage,bus=xhci.0,drive=usbdisk0,removable=on"},
	} {
		if got := strings.Join(usbDiskArgs(tc.o), " "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		args, err := tc.o.Args()
		if err != nil {
			t.Fatal(err)
		}
		if all := strings.Join(args, " "); !strings.Contains(all, tc.want) || strings.Count(all, "qemu-xhci") > 1 {
			t.Errorf("%s: Args %q", tc.name, all)
		}
	}
}
