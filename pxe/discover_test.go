package pxe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/pxe/wire"
)

const newMAC = "52:54:00:aa:bb:01"

func testDiscovery() wire.Discovery {
	return wire.Discovery{MAC: "52-54-00-AA-BB-01", Vendor: "QEMU", Product: "Standard PC\n(Q35)", Report: hw.Report{
		Firmware: hw.UEFI, Memory: hw.Memory{TotalBytes: 2 << 30},
		Disks: []hw.Disk{
			{Name: "vda", Kind: hw.KindDisk, SizeBytes: 8 << 30, Bus: hw.BusVirtio, Serial: "LAPTOP1"},
			{Name: "sda", Kind: hw.KindDisk, SizeBytes: 16 << 30, Bus: hw.BusATA, Model: "QEMU HARDDISK", Serial: "QM0001"},
			{Name: "sr0", Kind: hw.KindCDROM},
		},
	}}
}

// TestDiscoverFlow: under --discover an unknown MAC gets the discovery
// boot script, its report makes it "discovered" (table row, event with
// vendor/disks/RAM, report file for mkiso enroll), /v1/machine says unknown
// until the map has it; once the map file has it (no restart) the next
// boot script is the normal install.
func TestDiscoverFlow(t *testing.T) {
	var ddir string
	s := startTestServer(t, keyMap, func(c *Config) {
		c.Discover = true
		ddir = filepath.Join(t.TempDir(), "discovered")
		c.DiscoverDir = ddir
	})
	base := s.HTTPBase()
	code, script := get(t, base+"/boot.ipxe?mac="+newMAC)
	if code != 200 || !strings.Contains(script, " nixlos.server="+base+" nixlos.discover=1\n") || strings.Contains(script, "nixlos.host=") || strings.Contains(script, "nixlos.token=") {
		t.Fatalf("unknown MAC under --discover: %d\n%s", code, script)
	}
	// A mapped MAC still installs.
	if _, script := get(t, base+"/boot.ipxe?mac="+testMAC); strings.Contains(script, "nixlos.discover") || !strings.Contains(script, "nixlos.host=server") {
		t.Fatalf("mapped MAC:\n%s", script)
	}
	ctx := context.Background()
	if err := wire.PostDiscovery(ctx, nil, base, testDiscovery()); err != nil {
		t.Fatal(err)
	}
	var row MachineState
	for _, m := range s.Tracker().Snapshot() {
		if m.MAC == newMAC {
			row = m
		}
	}
	if row.State != wire.StateDiscovered || row.Discovered == nil || len(row.Discovered.Disks) != 2 || row.Discovered.RAMBytes != 2<<30 {
		t.Fatalf("table row: %+v", row)
	}
	for _, want := range []string{"QEMU Standard PC (Q35), uefi, RAM 2.0 GiB", "vda 8.0 GiB virtio serial LAPTOP1", "sda 16.0 GiB ata QEMU HARDDISK serial QM0001", "mkiso enroll " + newMAC} {
		if !strings.Contains(row.Message, want) {
			t.Errorf("message %q lacks %q", row.Message, want)
		}
	}
	// The --json event carries the summary.
	var ev Event
	s.events.mu.Lock()
	evs := append([]Event(nil), s.events.evs...)
	s.events.mu.Unlock()
	for _, e := range evs {
		if e.State == wire.StateDiscovered {
			ev = e
		}
	}
	var buf bytes.Buffer
	JSONSink(&buf)(ev)
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	disc, _ := back["discovered"].(map[string]any)
	if back["state"] != "discovered" || back["mac"] != newMAC || disc["vendor"] != "QEMU" || disc["ramBytes"] != float64(2<<30) || len(disc["disks"].([]any)) != 2 {
		t.Fatalf("json event: %s", buf.String())
	}
	// The report is kept for mkiso enroll.
	d, err := LoadDiscovery(ddir, newMAC)
	if err != nil || d.MAC != newMAC || len(d.Report.Disks) != 3 {
		t.Fatalf("LoadDiscovery: %+v, %v", d, err)
	}
	if _, err := wire.FetchMachine(ctx, nil, base, newMAC); !errors.Is(err, wire.ErrUnknownMachine) {
		t.Fatalf("before enroll: %v", err)
	}
	// Enroll: the map file grows; the running server picks it up.
	f, err := os.OpenFile(s.mapf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[[machine]]\nmac = %q\nhost = \"laptop\"\n", newMAC)
	f.Close()
	future := time.Now().Add(time.Second)
	os.Chtimes(s.mapf, future, future)
	mi, err := wire.FetchMachine(ctx, nil, base, newMAC)
	if err != nil || mi.Host != "laptop" || mi.Waiting != "" {
		t.Fatalf("after enroll: %+v, %v", mi, err)
	}
	if _, script := get(t, base+"/boot.ipxe?mac="+newMAC); !strings.Contains(script, "nixlos.host=laptop nixlos.auto=1") || strings.Contains(script, "nixlos.discover") {
		t.Fatalf("enrolled MAC's boot script:\n%s", script)
	}
	// Once mapped, a late discovery report is told to install instead.
	if err := wire.PostDiscovery(ctx, nil, base, testDiscovery()); !errors.Is(err, wire.ErrEnrolled) {
		t.Fatalf("discovery of a mapped MAC: %v", err)
	}
}

// TestDiscoverWaitsForBundle: a MAC mapped to a host the served bundle
// does not have yet (enrolled as a new host, bundle not rebuilt) keeps
// getting the discovery script, and /v1/machine says why it waits.
func TestDiscoverWaitsForBundle(t *testing.T) {
	s := startTestServer(t, keyMap, func(c *Config) { c.Discover = true })
	fi, err := os.Stat(filepath.Join(s.cfg.Bundle.Dir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.hosts, s.hostsKey = map[string][]string{"nokey": {"main"}}, fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	s.mu.Unlock()
	mi, err := wire.FetchMachine(context.Background(), nil, s.HTTPBase(), testMAC)
	if err != nil || !strings.Contains(mi.Waiting, "host server is not in the served bundle yet (fix: git add its files, then mkiso build FLAKE --format pxe") {
		t.Fatalf("waiting: %+v, %v", mi, err)
	}
	if _, script := get(t, s.HTTPBase()+"/boot.ipxe?mac="+testMAC); !strings.Contains(script, "nixlos.discover=1") {
		t.Fatalf("script for a host not in the bundle:\n%s", script)
	}
	if _, script := get(t, s.HTTPBase()+"/boot.ipxe?mac=52:54:00:00:00:02"); !strings.Contains(script, "nixlos.host=nokey") {
		t.Fatalf("script for a host in the bundle:\n%s", script)
	}
}

// TestDiscoverOff: without --discover the endpoint refuses and unknown MACs
// get the menu as before.
func TestDiscoverOff(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	body, _ := json.Marshal(testDiscovery())
	resp, err := http.Post(s.HTTPBase()+"/v1/discover", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /v1/discover without --discover: %s", resp.Status)
	}
	if _, script := get(t, s.HTTPBase()+"/boot.ipxe?mac="+newMAC); strings.Contains(script, "nixlos.discover") {
		t.Fatalf("menu script has discover:\n%s", script)
	}
}
