package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pxe"
	"github.com/nixlos/nixlos/pxe/wire"
)

// machine is a recorded `installer detect --json` (copies of diskrules'
// recorded machines).
func machine(t *testing.T, name string) hw.Report {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var r hw.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name, machine string
		keys          []string
		want          map[string]string
		picked        []string // disk names, in key order
		err           string
	}{
		{"virtio one disk: the largest", "virtio", []string{"main"}, map[string]string{"main": "match:bus=virtio,serial=big-b"}, []string{"vdb"}, ""},
		{"virtio two disks", "virtio", []string{"disk1", "disk2"},
			map[string]string{"disk1": "match:bus=virtio,serial=big-b", "disk2": "match:bus=virtio,serial=mid-c"}, []string{"vdb", "vdc"}, ""},
		{"three disks; the one in use as swap is not a candidate", "virtio", []string{"a", "b", "c"},
			map[string]string{"a": "match:bus=virtio,serial=big-b", "b": "match:bus=virtio,serial=mid-c", "c": "match:bus=virtio,serial=small-a"},
			[]string{"vdb", "vdc", "vda"}, ""},
		{"laptop: the internal NVMe, not the bigger USB disk or the sticks", "laptop-usb", []string{"main"},
			map[string]string{"main": "match:bus=nvme,serial=21034G801234"}, []string{"nvme0n1"}, ""},
		{"twin disks told apart by serial", "twin-sata", []string{"disk1", "disk2"},
			map[string]string{"disk1": "match:bus=sata,serial=PHYF0001000A480BGN", "disk2": "match:bus=sata,serial=PHYF0002000B480BGN"}, []string{"sda", "sdb"}, ""},
		{"too few disks", "virtio", []string{"a", "b", "c", "d"}, nil, nil, "the layout needs 4 disks (a, b, c, d), the machine has 3 that can be installed to (not: vdd: in use: [SWAP])"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := machine(t, tc.machine)
			got, picked, err := Rules(tc.keys, r)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rules = %v, want %v", got, tc.want)
			}
			for i, k := range tc.keys {
				if picked[k].Name != tc.picked[i] {
					t.Errorf("%s picked %s, want %s", k, picked[k].Name, tc.picked[i])
				}
			}
		})
	}
}

// TestRulesNoSerial: a disk without a serial is named by exact size and model.
func TestRulesNoSerial(t *testing.T) {
	r := hw.Report{Disks: []hw.Disk{
		{Name: "sda", Kind: hw.KindDisk, SizeBytes: 4 << 30, Bus: hw.BusATA, Model: "QEMU HARDDISK"},
		{Name: "sdb", Kind: hw.KindDisk, SizeBytes: 2 << 30, Bus: hw.BusATA, Model: "QEMU HARDDISK"},
	}}
	got, _, err := Rules([]string{"main"}, r)
	if err != nil || got["main"] != "match:bus=sata,size=4294967296,model=QEMU_HARDDISK" {
		t.Fatalf("rules %v, %v", got, err)
	}
}

func TestRulesIdenticalDisks(t *testing.T) {
	r := hw.Report{Disks: []hw.Disk{
		{Name: "vda", Kind: hw.KindDisk, SizeBytes: 1 << 30, Bus: hw.BusVirtio},
		{Name: "vdb", Kind: hw.KindDisk, SizeBytes: 1 << 30, Bus: hw.BusVirtio},
	}}
	if _, _, err := Rules([]string{"main"}, r); err == nil || !strings.Contains(err.Error(), "not unique on this machine") {
		t.Fatalf("two disks without serials, same size: %v", err)
	}
}

func TestModules(t *testing.T) {
	for name, want := range map[string][]string{
		"virtio":     {"virtio_blk", "virtio_net", "virtio_pci"},
		"laptop-usb": {"iwlwifi", "nvme", "sd_mod", "uas", "xhci_pci"}, // the removable sticks' usb_storage left out
		"twin-sata":  {"ahci", "igb", "nvme", "sd_mod"},
	} {
		if got := Modules(machine(t, name)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Modules = %v, want %v", name, got, want)
		}
	}
}

const mac = "52:54:00:aa:bb:03"

// fixture is a flake directory with a template host, a map file and the
// discovery report of mac on the virtio machine.
type fixture struct {
	flake, mapf, ddir string
}

func newFixture(t *testing.T, firmware hw.Firmware) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{flake: filepath.Join(dir, "flake"), mapf: filepath.Join(dir, "map.toml"), ddir: filepath.Join(dir, "discovered")}
	for name, text := range map[string]string{
		"flake.nix":                  "{ outputs = _: { }; }\n",
		"hosts/laptop/default.nix":   "{ ... }:\n{\n  imports = [ ./hardware.nix ./disko.nix ];\n  networking.hostName = \"laptop\";\n}\n",
		"hosts/laptop/disko.nix":     "{ disko.devices = { }; }\n",
		"hosts/laptop/hardware.nix":  "{ template hardware }\n",
		"hosts/laptop/extra/foo.nix": "{ }\n",
	} {
		p := filepath.Join(f.flake, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(f.mapf, []byte("[[machine]]\nmac = \"52:54:00:00:00:01\"\nhost = \"server\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := machine(t, "virtio")
	r.Firmware = firmware
	if err := pxe.SaveDiscovery(f.ddir, wire.Discovery{MAC: mac, Vendor: "QEMU", Product: "Standard PC", Report: r}); err != nil {
		t.Fatal(err)
	}
	return f
}

func fakeEval(bootLoader string) func(context.Context, string, string) (flake.Host, error) {
	return func(_ context.Context, _, host string) (flake.Host, error) {
		if host != "laptop" {
			return flake.Host{}, errs.BadInput("--host "+host, "name a host of the flake", "no such host")
		}
		return flake.Host{System: "x86_64-linux", Disko: json.RawMessage(`{"disk":{"main":{"device":"/dev/vda"}}}`), SopsFile: "secrets/secrets.yaml", BootLoader: bootLoader}, nil
	}
}

func (f fixture) opts(newHost string) Options {
	return Options{MAC: strings.ToUpper(mac), Host: "laptop", NewHost: newHost, Flake: f.flake, MapFile: f.mapf, Eval: fakeEval("systemd-boot"),
		Now: func() time.Time { return time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC) }}
}

func TestEnrollNewHost(t *testing.T) {
	f := newFixture(t, hw.UEFI)
	res, err := Enroll(context.Background(), f.opts("lab1"))
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"hosts/lab1/default.nix", "hosts/lab1/disko.nix", "hosts/lab1/extra/foo.nix", "hosts/lab1/facter.json", "hosts/lab1/hardware.nix"}
	if !reflect.DeepEqual(res.Files, wantFiles) || res.Host != "lab1" || res.MAC != mac {
		t.Fatalf("result %+v", res)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(f.flake, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if d := read("hosts/lab1/default.nix"); !strings.Contains(d, `networking.hostName = "lab1";`) || strings.Contains(d, `"laptop"`) {
		t.Errorf("default.nix:\n%s", d)
	}
	hwNix := read("hosts/lab1/hardware.nix")
	for _, want := range []string{`boot.initrd.availableKernelModules = [ "virtio_blk" "virtio_net" "virtio_pci" ];`,
		`main = "match:bus=virtio,serial=big-b";`, "# /dev/vdb (serial big-b", "firmware uefi", "git add hosts/lab1", "Firmware: UEFI"} {
		if !strings.Contains(hwNix, want) {
			t.Errorf("hardware.nix lacks %q:\n%s", want, hwNix)
		}
	}
	var facter struct {
		Version  int
		System   string
		Hardware struct {
			Disk []hw.Disk `json:"disk"`
		}
		Nixlos struct {
			MAC       string            `json:"mac"`
			DiskRules map[string]string `json:"diskRules"`
		}
	}
	if err := json.Unmarshal([]byte(read("hosts/lab1/facter.json")), &facter); err != nil || facter.Version != 1 || len(facter.Hardware.Disk) != 5 || facter.Nixlos.MAC != mac || facter.Nixlos.DiskRules["main"] == "" {
		t.Errorf("facter.json: %+v %v", facter, err)
	}
	// The map: the new host, no disks (its own rules choose), key for its sops secrets; the server's parser reads it.
	m, err := pxe.LoadMap(f.mapf)
	if err != nil {
		t.Fatal(err)
	}
	mc, ok := m.Lookup(mac)
	if !ok || mc.Host != "lab1" || mc.Disks != nil || mc.Disk != "" || !mc.Key || len(m.Machines) != 2 {
		t.Fatalf("map entry %+v (ok %v)\n%s", mc, ok, res.Entry)
	}
	if !strings.Contains(res.Entry, "# enrolled by mkiso enroll on 2026-12-01 20:00 UTC: QEMU Standard PC, bios") && !strings.Contains(res.Entry, "QEMU Standard PC, uefi") {
		t.Errorf("entry comment: %s", res.Entry)
	}
	if len(res.Notes) != 0 {
		t.Errorf("notes: %v", res.Notes)
	}
}

func TestEnrollExistingHost(t *testing.T) {
	f := newFixture(t, hw.BIOS)
	res, err := Enroll(context.Background(), f.opts(""))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 0 {
		t.Errorf("files written: %v", res.Files)
	}
	m, _ := pxe.LoadMap(f.mapf)
	mc, _ := m.Lookup(mac)
	if mc.Host != "laptop" || mc.Disks["main"] != "match:bus=virtio,serial=big-b" {
		t.Fatalf("map entry %+v", mc)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "BIOS firmware, but laptop uses systemd-boot") {
		t.Errorf("notes: %v", res.Notes)
	}
}

// TestEnrollErrors: each mistake is bad input (exit 2) naming the fix, and
// nothing is written.
func TestEnrollErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(f fixture, o *Options)
		want   string
	}{
		{"unknown MAC", func(_ fixture, o *Options) { o.MAC = "52:54:00:00:00:99" }, "unknown MAC: no discovery report"},
		{"bad MAC", func(_ fixture, o *Options) { o.MAC = "nope" }, "give the MAC 'mkiso serve' shows as discovered"},
		{"MAC mapped", func(_ fixture, o *Options) { o.MAC = "52:54:00:00:00:01" }, "already in the map as host server (fix: edit"},
		{"host exists", func(f fixture, o *Options) { os.MkdirAll(filepath.Join(f.flake, "hosts/lab1"), 0o755) }, "host exists"},
		{"bad flake dir", func(f fixture, o *Options) { o.Flake = filepath.Dir(f.flake) }, "no flake.nix in"},
		{"no template", func(_ fixture, o *Options) { o.Host = "desktop" }, "name a template host that has a directory under"},
		{"bad new host name", func(_ fixture, o *Options) { o.NewHost = "../x" }, "not a host name"},
		{"no map", func(f fixture, o *Options) {
			o.MapFile = filepath.Join(filepath.Dir(f.mapf), "none.toml")
			o.DiscoverDir = f.ddir
		}, "no such map file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hw.UEFI)
			o := f.opts("lab1")
			tc.mutate(f, &o)
			before, _ := os.ReadFile(f.mapf)
			_, err := Enroll(context.Background(), o)
			if errs.Code(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want %q", err, errs.Code(err), tc.want)
			}
			var ie *errs.InputError
			if !errors.As(err, &ie) || ie.Fix == "" {
				t.Errorf("no fix: %v", err)
			}
			after, _ := os.ReadFile(f.mapf)
			if string(before) != string(after) {
				t.Errorf("map changed")
			}
			if tc.name != "host exists" {
				if _, err := os.Stat(filepath.Join(f.flake, "hosts/lab1")); err == nil {
					t.Errorf("hosts/lab1 written")
				}
			}
		})
	}
}

// TestEnrolledHostEvaluates: on a git copy of the example flake, enroll
// --new-host writes a host that, once git-added, the flake evaluates
// (mkiso hosts lists it) with the generated disk rules and the template's
// layout.
func TestEnrolledHostEvaluates(t *testing.T) {
	testenv.Tools(t, "nix", "git")
	dir := t.TempDir()
	fl := filepath.Join(dir, "flake")
	if err := os.CopyFS(fl, os.DirFS("../examples/nix-los")); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", fl, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-qm", "example")
	mapf := filepath.Join(dir, "map.toml")
	os.WriteFile(mapf, nil, 0o644)
	r := machine(t, "virtio")
	r.Firmware = hw.UEFI
	if err := pxe.SaveDiscovery(pxe.DefaultDiscoverDir(mapf), wire.Discovery{MAC: mac, Vendor: "QEMU", Report: r}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := Enroll(ctx, Options{MAC: mac, Host: "laptop", NewHost: "lab1", Flake: fl, MapFile: mapf})
	if err != nil {
		t.Fatal(err)
	}
	git("add", "hosts/lab1")
	_, m, err := flake.Hosts(ctx, fl, flake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, ok := m.Hosts["lab1"]
	if !ok {
		t.Fatalf("lab1 not among the hosts %v (errors %v)", m.AllHostNames(), m.Errors)
	}
	if !reflect.DeepEqual(h.DiskRules, res.Rules) || len(h.Disks()) != 1 || h.Disks()[0].Key != "main" || h.BootLoader != m.Hosts["laptop"].BootLoader {
		t.Fatalf("lab1: rules %v (want %v), disks %v, boot loader %q", h.DiskRules, res.Rules, h.Disks(), h.BootLoader)
	}
}
