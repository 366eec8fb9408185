package wire

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/nixlos/nixlos/hw"
)

// Discovery is the body of POST /v1/discover: what `installer detect
// --json` reports, plus the machine's vendor and product from DMI.
type Discovery struct {
	MAC     string    `json:"mac"`
	Vendor  string    `json:"vendor,omitempty"`  // /sys/class/dmi/id/sys_vendor
	Product string    `json:"product,omitempty"` // /sys/class/dmi/id/product_name
	Report  hw.Report `json:"report"`
}

// DiscoveredDisk is one disk in a discovery summary.
type DiscoveredDisk struct {
	Name      string `json:"name"`
	SizeBytes uint64 `json:"sizeBytes"`
	Bus       string `json:"bus,omitempty"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
}

// DiscoverySummary is what `mkiso serve` shows of a discovered machine
// (the "discovered" field of its --json events).
type DiscoverySummary struct {
	Vendor   string           `json:"vendor,omitempty"`
	Product  string           `json:"product,omitempty"`
	Firmware string           `json:"firmware"`
	RAMBytes int64            `json:"ramBytes"`
	Disks    []DiscoveredDisk `json:"disks"`
}

// maxDiscoveryBody bounds a discovery report (a detect report of a large
// server with many disks and partitions stays far below).
const maxDiscoveryBody = 1 << 20

// DecodeDiscovery reads and checks a discovery report: a MAC, a firmware
// of uefi or bios, at most 256 disks; vendor and product lose control
// characters and are cut at 128 bytes.
func DecodeDiscovery(r io.Reader) (Discovery, error) {
	var d Discovery
	if err := json.NewDecoder(io.LimitReader(r, maxDiscoveryBody)).Decode(&d); err != nil {
		return Discovery{}, fmt.Errorf("discovery body is not JSON: %w", err)
	}
	mac, err := CanonicalMAC(d.MAC)
	if err != nil {
		return Discovery{}, err
	}
	d.MAC = mac
	if d.Report.Firmware != hw.UEFI && d.Report.Firmware != hw.BIOS {
		return Discovery{}, fmt.Errorf("firmware %q is not uefi or bios", d.Report.Firmware)
	}
	if len(d.Report.Disks) > 256 {
		return Discovery{}, fmt.Errorf("%d disks: more than 256", len(d.Report.Disks))
	}
	d.Vendor, d.Product = printable(d.Vendor, 128), printable(d.Product, 128)
	return d, nil
}

// printable cuts s at n bytes and replaces control characters with spaces.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

// Summary is what the server shows of d: vendor, firmware, RAM and the
// disks an install could use (KindDisk with a size).
func (d Discovery) Summary() DiscoverySummary {
	s := DiscoverySummary{Vendor: d.Vendor, Product: d.Product, Firmware: string(d.Report.Firmware), RAMBytes: d.Report.Memory.TotalBytes, Disks: []DiscoveredDisk{}}
	for _, k := range d.Report.Disks {
		if k.Kind != hw.KindDisk || k.SizeBytes == 0 {
			continue
		}
		s.Disks = append(s.Disks, DiscoveredDisk{Name: k.Name, SizeBytes: k.SizeBytes, Bus: k.Bus, Model: k.Model, Serial: k.Serial})
	}
	return s
}

// String is the one-line form for the status table and text lines:
// "QEMU Standard PC, uefi, RAM 2.0 GiB, disks: vda 8.0 GiB virtio serial S1; …".
func (s DiscoverySummary) String() string {
	var b strings.Builder
	who := strings.TrimSpace(s.Vendor + " " + s.Product)
	if who == "" {
		who = "unknown vendor"
	}
	fmt.Fprintf(&b, "%s, %s, RAM %s, disks:", who, s.Firmware, hw.HumanBytes(uint64(max(s.RAMBytes, 0))))
	if len(s.Disks) == 0 {
		b.WriteString(" none")
	}
	for i, d := range s.Disks {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s %s", d.Name, hw.HumanBytes(d.SizeBytes))
		if d.Bus != "" {
			b.WriteString(" " + d.Bus)
		}
		if d.Model != "" {
			b.WriteString(" " + d.Model)
		}
		if d.Serial != "" {
			b.WriteString(" serial " + d.Serial)
		}
	}
	return b.String()
}
