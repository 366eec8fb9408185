package pxe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/hw"
)

// StateDiscovered is the state of an unknown machine that booted in
// discovery mode (mkiso serve --discover) and posted its hardware: it waits
// until `mkiso enroll` adds its MAC to the map.
const StateDiscovered = "discovered"

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

// DiscoveryFile is where a discovery report of mac is kept in dir
// (Config.DiscoverDir): MAC with hyphens, ".json".
func DiscoveryFile(dir, mac string) string {
	return filepath.Join(dir, strings.ReplaceAll(mac, ":", "-")+".json")
}

// DefaultDiscoverDir is where `mkiso serve --discover` keeps discovery
// reports for a map file, and where `mkiso enroll` reads them: a
// "discovered" directory beside the map.
func DefaultDiscoverDir(mapFile string) string {
	return filepath.Join(filepath.Dir(mapFile), "discovered")
}

// SaveDiscovery writes d to DiscoveryFile(dir, d.MAC) (atomically, 0644:
// it holds hardware facts, no secrets).
func SaveDiscovery(dir string, d Discovery) error {
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("discovery directory: %w", err)
	}
	dst := DiscoveryFile(dir, d.MAC)
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	return nil
}

// LoadDiscovery reads the discovery report of mac from dir. A missing
// report is an error wrapping os.ErrNotExist.
func LoadDiscovery(dir, mac string) (Discovery, error) {
	c, err := CanonicalMAC(mac)
	if err != nil {
		return Discovery{}, err
	}
	f, err := os.Open(DiscoveryFile(dir, c))
	if err != nil {
		return Discovery{}, err
	}
	defer f.Close()
	d, err := DecodeDiscovery(f)
	if err != nil {
		return Discovery{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if d.MAC != c {
		return Discovery{}, fmt.Errorf("%s: report is for MAC %s, not %s", f.Name(), d.MAC, c)
	}
	return d, nil
}

// serveDiscover takes a discovery report (POST /v1/discover): only with
// --discover; the machine shows as discovered and the report is kept for
// mkiso enroll. A MAC that is in the map already is told so (409): it
// should install, not wait.
func (s *Server) serveDiscover(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Discover {
		http.Error(w, "discovery is off (start mkiso serve with --discover)", http.StatusNotFound)
		return
	}
	d, err := DecodeDiscovery(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if mc, ok := s.reloadMap().Lookup(d.MAC); ok {
		http.Error(w, "MAC is in the map already, as host "+mc.Host, http.StatusConflict)
		return
	}
	if s.cfg.DiscoverDir != "" {
		if err := SaveDiscovery(s.cfg.DiscoverDir, d); err != nil {
			s.logf("discovery of %s: %v", d.MAC, err)
			http.Error(w, "cannot keep the report", http.StatusInternalServerError)
			return
		}
	}
	sum := d.Summary()
	s.cfg.Tracker.Discovered(d.MAC, sum)
	w.WriteHeader(http.StatusNoContent)
}

// PostDiscovery POSTs d to server's /v1/discover (server is the
// nixlos.server URL). client may be nil (http.DefaultClient).
func PostDiscovery(ctx context.Context, client *http.Client, server string, d Discovery) error {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/v1/discover", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("discovery report to %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusConflict {
		return ErrEnrolled
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("discovery report to %s: %s: %s", server, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// ErrEnrolled is PostDiscovery's error when the MAC is in the map already.
var ErrEnrolled = errors.New("MAC is in the server's map already")
