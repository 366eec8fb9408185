package vmtest

import "fmt"

// usbDiskArgs attaches Options.USBDisks as removable usb-storage devices
// on the xhci controller (added here unless the USB boot stick added it).
func usbDiskArgs(o Options) []string {
	if len(o.USBDisks) == 0 {
		return nil
	}
	var args []string
	if o.USB == "" {
		args = append(args, "-device", "qemu-xhci,id=xhci")
	}
	for i, d := range o.USBDisks {
		f := d.Format
		if f == "" {
			f = "raw"
		}
		drive := fmt.Sprintf("if=none,id=usbdisk%d,format=%s,file=%s", i, f, d.Path)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		dev := fmt.Sprintf("usb-storage,bus=xhci.0,drive=usbdisk%d,removable=on", i)
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args, "-drive", drive, "-device", dev)
	}
	return args
}
